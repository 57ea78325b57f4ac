/* Port of Node's test/parallel/test-cluster-disconnect-idle-worker.js.
 *
 * cluster.disconnect(cb) right after forking two idle workers (that have not even come
 * online). Checks that:
 *  - cluster_disconnect tells both workers (returns 2);
 *  - cb runs once, with cluster.workers empty (cluster_worker_count() == 0 and
 *    cluster_workers() lists none; Node: Object.keys(cluster.workers) deep-equals []);
 *  - both idle workers then exit by themselves with code 0 and exitedAfterDisconnect.
 *
 * Deliberate differences: Node calls `fork` unbound to check that cluster.fork does not
 * depend on `this`; C functions have no `this`, so there is nothing to check there. An idle
 * Node worker stays alive while its channel is open; the C worker waits for its DISCONNECT
 * event and then returns 0. The exit checks are extra (Node's test ends when the workers
 * are gone). Node's start-up is slow next to cluster.disconnect(), so a Node worker boots
 * with the disconnect already waiting in its channel; the C worker reproduces that by
 * polling its channel fd (NODE_CHANNEL_FD, without reading) before its first libcluster
 * call.
 *
 * This once failed 5-30% of runs: the worker's channel reader could handle the waiting
 * disconnect before start-up had sent `online`, and start-up then failed for good. Fixed by
 * sending `online` before the reader starts; this test guards it. */
#include "np.h"

static int worker(void) {
    /* Start like a Node worker usually does here: after the primary's disconnect is already
     * waiting in the channel (Node's start-up is slow next to cluster.disconnect()). Only a
     * poll: nothing is read before libcluster starts. */
    const char *chan = getenv("NODE_CHANNEL_FD");
    NP_CHECK(chan != NULL, "NODE_CHANNEL_FD is not set");
    struct pollfd p = {atoi(chan), POLLIN, 0};
    NP_CHECK(poll(&p, 1, NP_TIMEOUT_MS) == 1, "nothing arrived on the channel");
    cluster_event ev;
    do
        np_next_event(&ev);
    while (ev.kind != CLUSTER_EVENT_DISCONNECT);
    return np_finish();
}

static void on_disconnected(const cluster_event *ev, void *userdata) {
    NP_CHECK(ev == NULL, "the cluster_disconnect callback got an event");
    int *runs = userdata;
    (*runs)++;
    int n = cluster_worker_count();
    NP_CHECK(n == 0, "cluster_worker_count() = %d in the disconnect callback", n);
    int ids[4];
    n = cluster_workers(ids, 4);
    NP_CHECK(n == 0, "cluster_workers() = %d in the disconnect callback", n);
}

static int primary(void) {
    static const char *const env[] = {"MODE=worker", NULL};
    int a = np_fork(env);
    int b = np_fork(env);
    int runs = 0;
    int n = cluster_disconnect(on_disconnected, &runs);
    NP_CHECK(n == 2, "cluster_disconnect returned %d (%s), expected 2", n,
             n < 0 ? cluster_last_error() : "");
    int exits = 0;
    cluster_event ev;
    while (exits < 2) {
        np_next_event(&ev); /* the callback runs inside cluster_poll_event */
        NP_CHECK(ev.worker_id == a || ev.worker_id == b, "event for unknown worker %d", ev.worker_id);
        if (ev.kind == CLUSTER_EVENT_EXIT) {
            exits++;
            NP_CHECK(ev.exit_code == 0 && ev.signal == 0, "worker %d: exit_code %d signal %d",
                     ev.worker_id, ev.exit_code, ev.signal);
            NP_CHECK(ev.exited_after_disconnect == 1, "worker %d: exited_after_disconnect %d",
                     ev.worker_id, ev.exited_after_disconnect);
        }
    }
    /* cb may still be pending if no event followed it: run it through dispatch. */
    cluster_dispatch();
    NP_CHECK(runs == 1, "the disconnect callback ran %d times, expected once", runs);
    return np_finish();
}

int main(void) {
    np_init("test-cluster-disconnect-idle-worker");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
