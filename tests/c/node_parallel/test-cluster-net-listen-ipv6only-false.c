/* Port of Node's test/parallel/test-cluster-net-listen-ipv6only-false.js.
 *
 * Dual-stack listening still works in a cluster when ipv6Only is not set. Three workers
 * listen on an IPv6 address, port 0, with ipv6_only left 0 (the default). Checks that:
 *  - every worker's LISTENING has the same addressType (6), address and port (the first
 *    listen(0) of every worker shares one handle);
 *  - an IPv4 client reaches that IPv6 server (Node connects to 0.0.0.0; here to 127.0.0.1),
 *    and a worker answers it;
 *  - after worker.disconnect() of each (cluster_disconnect_worker), each exits with code 0.
 *
 * Deliberate differences: Node listens on '::' (every interface). These tests listen on
 * loopback only, so the workers listen on "::ffff:127.0.0.1", the IPv4-mapped loopback: an
 * AF_INET6 socket that accepts IPv4 connections only when IPV6_V6ONLY is off (with it on,
 * Linux refuses that bind), so it checks the same dual-stack behaviour. The worker answers
 * the connection with "dual" (Node destroys it at once) to show it was served. */
#include "np.h"

#define WORKER_COUNT 3
#define HOST "::ffff:127.0.0.1"

static int worker(void) {
    cluster_server_options opts;
    cluster_server_options_init(&opts, sizeof opts);
    NP_CHECK(opts.ipv6_only == 0, "ipv6_only defaults to %d", opts.ipv6_only);
    opts.nonblocking = 1;
    cluster_server *srv = NULL;
    int rc = cluster_get_server(&srv, HOST, 0, &opts);
    NP_CHECK(rc == 0, "cluster_get_server(%s, 0): %d %s", HOST, rc, cluster_last_error());
    int closed = 0, disconnected = 0;
    cluster_event ev;
    while (!(closed && disconnected)) {
        int r = np_wait(closed ? -1 : cluster_server_fd(srv), -1);
        if (r & 2) {
            int fd;
            while ((fd = cluster_accept(srv)) >= 0) {
                (void)np_write_all(fd, "dual");
                close(fd);
            }
            if (fd == -EBADF)
                closed = 1;
            else
                NP_CHECK(fd == -EAGAIN, "cluster_accept: %d %s", fd, cluster_last_error());
        }
        while (np_try_event(&ev, 0))
            if (ev.kind == CLUSTER_EVENT_DISCONNECT)
                disconnected = 1;
    }
    cluster_server_close(srv);
    return np_finish();
}

static int primary(void) {
    static const char *const env[] = {"MODE=worker", NULL};
    int ids[WORKER_COUNT];
    for (int i = 0; i < WORKER_COUNT; i++)
        ids[i] = np_fork(env);
    cluster_event ev;
    int listening = 0, exits = 0, type = 0, port = 0;
    char address[64] = "";
    while (exits < WORKER_COUNT) {
        np_next_event(&ev);
        if (ev.kind == CLUSTER_EVENT_LISTENING) {
            NP_CHECK(ev.address != NULL, "LISTENING without an address");
            if (listening == 0) {
                type = ev.address_type;
                port = ev.port;
                snprintf(address, sizeof address, "%s", ev.address);
                NP_CHECK(type == CLUSTER_ADDRESS_IPV6, "addressType %d, expected 6", type);
                NP_CHECK(port > 0, "port %d", port);
            } else {
                NP_CHECK(ev.address_type == type, "addressType %d differs from %d", ev.address_type, type);
                NP_CHECK(strcmp(ev.address, address) == 0, "address %s differs from %s", ev.address, address);
                NP_CHECK(ev.port == port, "port %d differs from %d", ev.port, port);
            }
            if (++listening == WORKER_COUNT) {
                char buf[16];
                int s = np_connect("127.0.0.1", port); /* IPv4 client, IPv6 server */
                np_read_all(s, buf, sizeof buf);
                close(s);
                NP_CHECK(strcmp(buf, "dual") == 0, "the IPv4 client got \"%s\"", buf);
                for (int i = 0; i < WORKER_COUNT; i++) {
                    int rc = cluster_disconnect_worker(ids[i]);
                    NP_CHECK(rc == 0, "cluster_disconnect_worker(%d): %d %s", ids[i], rc,
                             cluster_last_error());
                }
            }
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            NP_CHECK(listening == WORKER_COUNT, "worker %d exited early", ev.worker_id);
            NP_CHECK(ev.exit_code == 0 && ev.signal == 0, "worker %d: exit_code %d signal %d",
                     ev.worker_id, ev.exit_code, ev.signal);
            exits++;
        }
    }
    return np_finish();
}

int main(void) {
    np_init("test-cluster-net-listen-ipv6only-false");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
