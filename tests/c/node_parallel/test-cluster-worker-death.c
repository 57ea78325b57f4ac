/* Port of Node's test/parallel/test-cluster-worker-death.js.
 *
 * Checks that a worker that ends itself with process.exit(42) (exit(42) here) is reported
 * by the primary with exit code 42 and no signal (Node: exitCode 42, signalCode null;
 * here exit_code 42, signal 0), exactly once, for the worker that was forked (Node
 * compares the Worker object; here the worker id and pid).
 *
 * Deliberate differences: none beyond the C API's shape (one event stream instead of the
 * worker's and the cluster's 'exit' listeners). */
#include "np.h"

int main(void) {
    np_init("test-cluster-worker-death");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0) {
        NP_CHECK(cluster_is_worker() == 1, "not a worker");
        exit(42);
    }

    static const char *const env[] = {"MODE=worker", NULL};
    int id = np_fork(env);
    int pid = 0; /* from FORK: the worker may be gone (out of the table) before we ask */
    cluster_event ev;
    int exits = 0;
    for (;;) {
        if (exits) {
            /* Anything after the EXIT would be a duplicate. */
            if (!np_try_event(&ev, 200))
                break;
        } else {
            np_next_event(&ev);
        }
        NP_CHECK(ev.worker_id == id, "event for unknown worker %d", ev.worker_id);
        if (ev.kind == CLUSTER_EVENT_FORK)
            pid = ev.pid;
        if (ev.kind != CLUSTER_EVENT_EXIT)
            continue;
        NP_CHECK(++exits == 1, "a second EXIT event");
        NP_CHECK(ev.pid == pid, "EXIT pid %d, expected %d", ev.pid, pid);
        NP_CHECK(ev.exit_code == 42, "exit_code %d, expected 42", ev.exit_code);
        NP_CHECK(ev.signal == 0, "signal %d, expected 0 (null)", ev.signal);
    }
    return np_finish();
}
