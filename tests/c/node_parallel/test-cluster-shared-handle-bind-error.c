/* Port of Node's test/parallel/test-cluster-shared-handle-bind-error.js.
 *
 * With the shared-handle scheduling policy (cluster.schedulingPolicy = SCHED_NONE →
 * cluster_settings.sched_policy = CLUSTER_SCHED_NONE before the first fork), the primary
 * binds the socket and shares it with the worker. The primary first hogs a TCP port with
 * a plain server; the worker then asks for a server on that port. Checks that:
 *  - the worker's listen fails with EADDRINUSE (cluster_get_server → -EADDRINUSE), and
 *    gives no server;
 *  - the worker can then leave (Node: process.disconnect()) and exits with code 0, which
 *    the primary sees; the primary then closes its hog.
 *
 * Deliberate differences:
 *  - Node hogs common.PORT on every interface; here the hog listens on 127.0.0.1:0 and its
 *    port goes to the worker in its environment (PORT=...).
 *  - Node's worker calls process.disconnect() (a raw channel close); the C API's nearest
 *    call is cluster_worker_disconnect() (cluster.worker.disconnect()), after which the
 *    worker waits for its DISCONNECT event and exits 0. Node's test only checks the exit
 *    code, so exitedAfterDisconnect is not checked. */
#include "np.h"

static int worker(void) {
    const char *p = getenv("PORT");
    NP_CHECK(p != NULL, "PORT is not set");
    cluster_server *srv = (cluster_server *)&srv; /* must be reset to NULL on failure */
    int rc = cluster_get_server(&srv, "127.0.0.1", atoi(p), NULL);
    NP_CHECK(rc == -EADDRINUSE, "cluster_get_server(127.0.0.1, %s) = %d (%s), expected -EADDRINUSE",
             p, rc, rc < 0 ? cluster_last_error() : "listen should have failed");
    NP_CHECK(srv == NULL, "a failed cluster_get_server left *out set");
    rc = cluster_worker_disconnect();
    NP_CHECK(rc == 0, "cluster_worker_disconnect: %d %s", rc, cluster_last_error());
    cluster_event ev;
    do
        np_next_event(&ev);
    while (ev.kind != CLUSTER_EVENT_DISCONNECT);
    return np_finish();
}

static int primary(void) {
    cluster_settings s;
    cluster_settings_init(&s, sizeof s);
    s.sched_policy = CLUSTER_SCHED_NONE;
    int rc = cluster_setup_primary(&s);
    NP_CHECK(rc == 0, "cluster_setup_primary: %d %s", rc, cluster_last_error());

    int port;
    int hog = np_plain_listener(0, &port); /* hog the TCP port */
    char portvar[32];
    snprintf(portvar, sizeof portvar, "PORT=%d", port);
    const char *const env[] = {"MODE=worker", portvar, NULL};
    int id = np_fork(env);
    cluster_event ev;
    for (;;) {
        np_next_event(&ev);
        NP_CHECK(ev.worker_id == id, "event for unknown worker %d", ev.worker_id);
        NP_CHECK(ev.kind != CLUSTER_EVENT_LISTENING, "the worker listened on the hogged port");
        if (ev.kind == CLUSTER_EVENT_EXIT) {
            NP_CHECK(ev.exit_code == 0 && ev.signal == 0, "worker exit_code %d signal %d",
                     ev.exit_code, ev.signal);
            close(hog); /* server.close() */
            break;
        }
    }
    return np_finish();
}

int main(void) {
    np_init("test-cluster-shared-handle-bind-error");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
