/* cluster_run() in a worker returns once the channel to the primary has closed and its
 * DISCONNECT event has been dispatched (nothing can follow), so a worker whose main loop is
 * cluster_run() ends when its primary disconnects it.
 *
 * The worker registers a DISCONNECT callback, calls cluster_run() and, when it returns,
 * exits 42 if the callback ran (41 if not). The primary waits for ONLINE, disconnects the
 * worker and expects EXIT with code 42. */
#include "ctest.h"

static int disconnected;

static void on_disconnect(const cluster_event *ev, void *ud) {
    (void)ev;
    (void)ud;
    disconnected = 1;
}

int main(void) {
    ct_init("worker_run");
    if (cluster_is_worker() == 1) {
        CT_CHECK(cluster_on(CLUSTER_EVENT_DISCONNECT, on_disconnect, NULL) == 0, "cluster_on: %s", cluster_last_error());
        int rc = cluster_run();
        CT_CHECK(rc == 0, "worker: cluster_run() = %d: %s", rc, cluster_last_error());
        exit(disconnected ? 42 : 41);
    }
    int id = ct_fork(NULL);
    cluster_event ev;
    do
        ct_next_event(&ev);
    while (ev.kind != CLUSTER_EVENT_ONLINE);
    int rc = cluster_disconnect_worker(id);
    CT_CHECK(rc == 0, "cluster_disconnect_worker: %d %s", rc, cluster_last_error());
    do
        ct_next_event(&ev);
    while (ev.kind != CLUSTER_EVENT_EXIT);
    CT_CHECK(ev.exit_code == 42 && ev.signal == 0,
             "worker exit %d signal %d: expected 42 (cluster_run returned after its DISCONNECT callback)",
             ev.exit_code, ev.signal);
    return ct_done();
}
