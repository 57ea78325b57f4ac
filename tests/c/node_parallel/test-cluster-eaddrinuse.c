/* Port of Node's test/parallel/test-cluster-eaddrinuse.js.
 *
 * A worker that tries to listen on a port that is already taken must not leave the
 * primary in a confused state: once the port is released, trying again just works. The
 * primary holds a plain server on 127.0.0.1:0 and gives its port to the worker. Checks
 * that:
 *  - the worker's first listen on that port fails with EADDRINUSE;
 *  - the worker says "stop-listening"; the primary closes its server and answers
 *    "stopped-listening";
 *  - the worker's second listen on the same port succeeds (the failed bind was not cached
 *    by the primary), the primary sees LISTENING on that port, and the worker closes the
 *    server and exits with code 0.
 *
 * Deliberate differences: Node's current test uses child_process.fork (the child is not a
 * cluster worker and binds by itself). With libcluster, the point of the test is the
 * cluster path: the worker's listen goes through the primary (round-robin), so a failed
 * bind in the primary, then a good one, is what is checked. Messages are JSON strings; the
 * port goes to the worker in its environment (PORT=...). */
#include "np.h"

static int worker(void) {
    const char *p = getenv("PORT");
    NP_CHECK(p != NULL, "PORT is not set");
    int port = atoi(p);
    cluster_server *srv = NULL;
    int rc = cluster_get_server(&srv, "127.0.0.1", port, NULL);
    NP_CHECK(rc == -EADDRINUSE, "first listen on %d returned %d (%s), expected -EADDRINUSE", port,
             rc, rc < 0 ? cluster_last_error() : "it should have failed");
    rc = cluster_send(0, "\"stop-listening\"", -1);
    NP_CHECK(rc == 0, "cluster_send: %d %s", rc, cluster_last_error());
    cluster_event ev;
    do
        np_next_event(&ev);
    while (!(ev.kind == CLUSTER_EVENT_MESSAGE && ev.data && strcmp(ev.data, "\"stopped-listening\"") == 0));
    rc = cluster_get_server(&srv, "127.0.0.1", port, NULL);
    NP_CHECK(rc == 0, "second listen on %d: %d %s", port, rc, cluster_last_error());
    NP_CHECK(cluster_server_port(srv) == port, "server port %d, expected %d",
             cluster_server_port(srv), port);
    cluster_server_close(srv);
    return np_finish();
}

static int primary(void) {
    int port;
    int hog = np_plain_listener(0, &port);
    char portvar[32];
    snprintf(portvar, sizeof portvar, "PORT=%d", port);
    const char *const env[] = {"MODE=worker", portvar, NULL};
    int id = np_fork(env);
    int stopped = 0, listening = 0;
    cluster_event ev;
    for (;;) {
        np_next_event(&ev);
        NP_CHECK(ev.worker_id == id, "event for unknown worker %d", ev.worker_id);
        if (ev.kind == CLUSTER_EVENT_MESSAGE) {
            NP_CHECK(ev.data && strcmp(ev.data, "\"stop-listening\"") == 0, "unexpected message %s", ev.data);
            NP_CHECK(!stopped, "a second stop-listening");
            close(hog);
            stopped = 1;
            int rc = cluster_send(id, "\"stopped-listening\"", -1);
            NP_CHECK(rc == 0, "cluster_send: %d %s", rc, cluster_last_error());
        } else if (ev.kind == CLUSTER_EVENT_LISTENING) {
            NP_CHECK(stopped, "the worker listened while the port was taken");
            NP_CHECK(ev.port == port, "LISTENING port %d, expected %d", ev.port, port);
            listening++;
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            NP_CHECK(ev.exit_code == 0 && ev.signal == 0, "worker exit_code %d signal %d",
                     ev.exit_code, ev.signal);
            break;
        }
    }
    NP_CHECK(listening == 1, "%d LISTENING events, expected 1", listening);
    return np_finish();
}

int main(void) {
    np_init("test-cluster-eaddrinuse");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
