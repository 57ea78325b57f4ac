/* Port of Node's test/parallel/test-cluster-listening-port.js.
 *
 * A worker listens on port 0. Checks that the primary's LISTENING event reports the real
 * bound port (Node: address.port is a number and not 0), that it matches what the worker
 * got (cluster_server_port, sent to the primary in a message) and that a connection to it
 * reaches the worker; then worker.kill() (cluster_kill SIGTERM) ends the worker.
 *
 * Deliberate differences:
 *  - Node listens on every interface (listen(0)); here 127.0.0.1:0.
 *  - Node's server must never get a connection (mustNotCall); here the primary connects
 *    once, to show the reported port is the real one, and the worker answers "ok".
 *  - The primary also waits for the worker's EXIT (SIGTERM) before finishing. */
#include "np.h"

static int worker(void) {
    cluster_server *srv = NULL;
    int rc = cluster_get_server(&srv, "127.0.0.1", 0, NULL);
    NP_CHECK(rc == 0, "cluster_get_server: %d %s", rc, cluster_last_error());
    int port = cluster_server_port(srv);
    char msg[64];
    snprintf(msg, sizeof msg, "{\"port\":%d}", port);
    rc = cluster_send(0, msg, -1);
    NP_CHECK(rc == 0, "cluster_send: %d %s", rc, cluster_last_error());
    for (;;) {
        int fd = cluster_accept(srv);
        if (fd == -EBADF)
            pause(); /* closed: wait to be killed */
        NP_CHECK(fd >= 0, "cluster_accept: %d %s", fd, cluster_last_error());
        (void)np_write_all(fd, "ok");
        close(fd);
    }
}

static int primary(void) {
    static const char *const env[] = {"MODE=worker", NULL};
    int id = np_fork(env);
    cluster_event ev;
    int port = 0, reported = 0, killed = 0;
    for (;;) {
        np_next_event(&ev);
        NP_CHECK(ev.worker_id == id, "event for unknown worker %d", ev.worker_id);
        if (ev.kind == CLUSTER_EVENT_LISTENING) {
            NP_CHECK(port == 0, "a second LISTENING event");
            port = ev.port;
            NP_CHECK(port > 0 && port <= 65535, "LISTENING port %d is not a real port", port);
        } else if (ev.kind == CLUSTER_EVENT_MESSAGE) {
            long p;
            NP_CHECK(np_json_int(ev.data, "port", &p), "no port in %s", ev.data);
            reported = (int)p;
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            NP_CHECK(killed, "worker exited before it was killed");
            NP_CHECK(ev.exit_code == -1 && ev.signal == SIGTERM, "EXIT exit_code %d signal %d",
                     ev.exit_code, ev.signal);
            break;
        }
        if (port && reported && !killed) {
            NP_CHECK(reported == port, "the worker's server has port %d, LISTENING said %d",
                     reported, port);
            char buf[16];
            int s = np_connect("127.0.0.1", port);
            np_read_all(s, buf, sizeof buf);
            close(s);
            NP_CHECK(strcmp(buf, "ok") == 0, "the worker answered \"%s\"", buf);
            int rc = cluster_kill(id, SIGTERM);
            NP_CHECK(rc == 0, "cluster_kill: %d %s", rc, cluster_last_error());
            killed = 1;
        }
    }
    return np_finish();
}

int main(void) {
    np_init("test-cluster-listening-port");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
