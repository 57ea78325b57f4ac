/* Port of Node's test/parallel/test-cluster-dgram-1.js.
 *
 * UDP in a cluster: every worker's dgram bind goes through the primary, which shares one
 * socket with all of them. Four workers bind UDP port 0; once all four listen, the primary
 * sends 40 "hello world" datagrams to that port. Each worker reads datagrams from the
 * shared socket until it has 10, then reports { received: 10 } to the primary and closes
 * its socket (so the rest go to the others); the primary then disconnects it. Checks that:
 *  - each worker's LISTENING says UDP (addressType udp4 → CLUSTER_ADDRESS_UDP4), and all
 *    four share one port;
 *  - every worker receives exactly 10 datagrams, each "hello world" (the primary checks the
 *    reported count at the worker's EXIT, as Node does);
 *  - each worker exits (code 0) after the primary's disconnect.
 *
 * Deliberate differences: Node binds every interface (bind(0)) and sends to the reported
 * address; here the workers bind 127.0.0.1:0 and the primary sends to 127.0.0.1. A worker
 * also checks each payload. The socket cluster_server_fd gives a UDP worker has O_NONBLOCK
 * set even with the default options (nonblocking = 0; the flag lives on the file
 * description the primary created and shares), so the worker polls before each recv.
 * Several workers wake for one datagram; the ones that lose the race get EAGAIN. */
#include "np.h"

#define NUM_WORKERS 4
#define PACKETS_PER_WORKER 10

static int worker(void) {
    cluster_server_options opts;
    cluster_server_options_init(&opts, sizeof opts);
    opts.udp = 1;
    cluster_server *srv = NULL;
    int rc = cluster_get_server(&srv, "127.0.0.1", 0, &opts);
    NP_CHECK(rc == 0, "UDP cluster_get_server: %d %s", rc, cluster_last_error());
    int fd = cluster_server_fd(srv);
    NP_CHECK(fd >= 0, "cluster_server_fd: %d", fd);
    int received = 0;
    while (received < PACKETS_PER_WORKER) {
        /* The shared socket comes with O_NONBLOCK set (see the note at the top): wait. */
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, -1) < 0) {
            NP_CHECK(errno == EINTR, "poll: %s", strerror(errno));
            continue;
        }
        char buf[64];
        ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) /* another worker took it */
            continue;
        NP_CHECK(n >= 0, "recv: %s", strerror(errno));
        buf[n] = '\0';
        NP_CHECK(strcmp(buf, "hello world") == 0, "got datagram \"%s\"", buf);
        received++;
    }
    char msg[64];
    snprintf(msg, sizeof msg, "{\"received\":%d}", received);
    rc = cluster_send(0, msg, -1);
    NP_CHECK(rc == 0, "cluster_send: %d %s", rc, cluster_last_error());
    cluster_server_close(srv); /* socket.close() */
    cluster_event ev;
    do
        np_next_event(&ev);
    while (ev.kind != CLUSTER_EVENT_DISCONNECT);
    return np_finish();
}

static int primary(void) {
    static const char *const env[] = {"MODE=worker", NULL};
    for (int i = 0; i < NUM_WORKERS; i++)
        np_fork(env);
    int listening = 0, port = 0, exits = 0;
    long received[NUM_WORKERS + 1];
    for (int i = 0; i <= NUM_WORKERS; i++)
        received[i] = -1;
    cluster_event ev;
    while (exits < NUM_WORKERS) {
        np_next_event(&ev);
        NP_CHECK(ev.worker_id >= 1 && ev.worker_id <= NUM_WORKERS, "event for unknown worker %d",
                 ev.worker_id);
        if (ev.kind == CLUSTER_EVENT_LISTENING) {
            NP_CHECK(ev.address_type == CLUSTER_ADDRESS_UDP4, "addressType %d, expected udp4 (%d)",
                     ev.address_type, CLUSTER_ADDRESS_UDP4);
            NP_CHECK(ev.port > 0, "LISTENING port %d", ev.port);
            NP_CHECK(port == 0 || ev.port == port, "worker %d got port %d, others %d", ev.worker_id,
                     ev.port, port);
            port = ev.port;
            if (++listening < NUM_WORKERS)
                continue;
            /* Start sending messages. */
            int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            NP_CHECK(s >= 0, "socket: %s", strerror(errno));
            struct sockaddr_in sa;
            memset(&sa, 0, sizeof sa);
            sa.sin_family = AF_INET;
            sa.sin_port = htons((unsigned short)port);
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            for (int i = 0; i < NUM_WORKERS * PACKETS_PER_WORKER; i++)
                NP_CHECK(sendto(s, "hello world", 11, 0, (struct sockaddr *)&sa, sizeof sa) == 11,
                         "sendto: %s", strerror(errno));
            close(s);
        } else if (ev.kind == CLUSTER_EVENT_MESSAGE) {
            NP_CHECK(received[ev.worker_id] < 0, "worker %d: a second message", ev.worker_id);
            NP_CHECK(np_json_int(ev.data, "received", &received[ev.worker_id]), "bad message %s", ev.data);
            int rc = cluster_disconnect_worker(ev.worker_id);
            NP_CHECK(rc == 0, "cluster_disconnect_worker(%d): %d %s", ev.worker_id, rc, cluster_last_error());
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            NP_CHECK(received[ev.worker_id] == PACKETS_PER_WORKER, "worker %d received %ld, expected %d",
                     ev.worker_id, received[ev.worker_id], PACKETS_PER_WORKER);
            NP_CHECK(ev.exit_code == 0 && ev.signal == 0, "worker %d: exit_code %d signal %d",
                     ev.worker_id, ev.exit_code, ev.signal);
            exits++;
        }
    }
    return np_finish();
}

int main(void) {
    np_init("test-cluster-dgram-1");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
