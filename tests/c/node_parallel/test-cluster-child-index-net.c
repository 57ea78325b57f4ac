/* Port of Node's test/parallel/test-cluster-child-index-net.js.
 *
 * The edge case of listen(0) in a worker when servers on the same (address, port 0) are
 * opened and closed in an interleaved way (the listen index bookkeeping of Node's
 * cluster: each listen(0) in a worker takes the next index, closes release it). The worker,
 * twice: opens a server on port 0, and once it listens, closes it and opens a second one
 * on port 0, which it closes once that listens; after the four closes it exits with 0.
 * Checks that:
 *  - every one of the four listens succeeds, and the primary sees four LISTENING events;
 *  - the two servers open at the same time (indexes 0 and 1) got different ports, as
 *    Node's index rule gives them different handles;
 *  - the worker exits with code 0.
 *
 * Deliberate differences: Node opens the two first servers before either has finished
 * listening and reacts in callbacks; cluster_get_server blocks until the primary replies,
 * so the port does the same steps in the order Node's callbacks run:
 * A0, A1 listen; A0 closes, B0 listens; A1 closes, B1 listens; B0 and B1 close. Node listens
 * on every interface; here 127.0.0.1. */
#include "np.h"

static cluster_server *listen0(void) {
    cluster_server *srv = NULL;
    int rc = cluster_get_server(&srv, "127.0.0.1", 0, NULL);
    NP_CHECK(rc == 0, "cluster_get_server(127.0.0.1, 0): %d %s", rc, cluster_last_error());
    int port = cluster_server_port(srv);
    NP_CHECK(port > 0, "server port %d", port);
    return srv;
}

static int worker(void) {
    int closes = 0;
    cluster_server *a0 = listen0();
    cluster_server *a1 = listen0();
    NP_CHECK(cluster_server_port(a0) != cluster_server_port(a1),
             "two open listen(0) servers share port %d", cluster_server_port(a0));
    cluster_server_close(a0);
    closes++;
    cluster_server *b0 = listen0();
    cluster_server_close(a1);
    closes++;
    cluster_server *b1 = listen0();
    cluster_server_close(b0);
    closes++;
    cluster_server_close(b1);
    closes++;
    NP_CHECK(closes == 4, "countdown");
    return np_finish();
}

static int primary(void) {
    static const char *const env[] = {"MODE=worker", NULL};
    int id = np_fork(env);
    cluster_event ev;
    int listening = 0, ports[4] = {0};
    for (;;) {
        np_next_event(&ev);
        NP_CHECK(ev.worker_id == id, "event for unknown worker %d", ev.worker_id);
        if (ev.kind == CLUSTER_EVENT_LISTENING) {
            NP_CHECK(listening < 4, "more than 4 LISTENING events");
            NP_CHECK(ev.port > 0, "LISTENING port %d", ev.port);
            ports[listening++] = ev.port;
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            NP_CHECK(ev.exit_code == 0 && ev.signal == 0, "worker exit_code %d signal %d",
                     ev.exit_code, ev.signal);
            break;
        }
    }
    NP_CHECK(listening == 4, "%d LISTENING events, expected 4", listening);
    NP_CHECK(ports[0] != ports[1], "servers with index 0 and 1 share port %d", ports[0]);
    return np_finish();
}

int main(void) {
    np_init("test-cluster-child-index-net");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
