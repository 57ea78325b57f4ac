/* Port of Node's test/parallel/test-cluster-worker-disconnect.js.
 *
 * The primary disconnects a listening worker (worker.disconnect() →
 * cluster_disconnect_worker); the worker's own 'disconnect' handler exits with 42.
 * Checks that:
 *  - cluster_disconnect_worker succeeds (Node: returns the worker), and the worker leaves
 *    cluster.workers at once (cluster_worker_count() is 0 right after; protocol §6.6);
 *  - the worker gets its DISCONNECT event (Node: cluster.worker 'disconnect'), shown by
 *    its exit code 42;
 *  - the primary gets one DISCONNECT and one EXIT; at the DISCONNECT, exitedAfterDisconnect
 *    is true and the state is 'disconnected';
 *  - at the EXIT the worker process is gone (kill(pid, 0) → ESRCH).
 *
 * Deliberate differences:
 *  - `worker.suicide` (a deprecated alias of exitedAfterDisconnect) is JS-only; nothing to
 *    check in C. The worker side cannot read its own exitedAfterDisconnect through the C
 *    API (cluster_worker_exited_after_disconnect is primary-only), so that assert is left.
 *  - libcluster's state is live, not as of the event: 'dead' is also accepted at the
 *    DISCONNECT if the exit was already processed by then; it must be 'dead' after EXIT.
 *  - Extra: a second cluster_disconnect_worker fails with CLUSTER_E_CLOSED. */
#include "np.h"

static int worker(void) {
    cluster_server *srv = NULL;
    int rc = cluster_get_server(&srv, "127.0.0.1", 0, NULL);
    NP_CHECK(rc == 0, "cluster_get_server: %d %s", rc, cluster_last_error());
    cluster_event ev;
    for (;;) {
        np_next_event(&ev);
        if (ev.kind == CLUSTER_EVENT_DISCONNECT)
            exit(42);
    }
}

static int primary(void) {
    static const char *const env[] = {"MODE=worker", NULL};
    int id = np_fork(env);
    int pid = cluster_worker_pid(id);
    NP_CHECK(pid > 0, "cluster_worker_pid: %d %s", pid, cluster_last_error());
    cluster_event ev;
    int listening = 0, disconnects = 0, exits = 0;
    while (!(disconnects && exits)) {
        np_next_event(&ev);
        NP_CHECK(ev.worker_id == id, "event for unknown worker %d", ev.worker_id);
        if (ev.kind == CLUSTER_EVENT_LISTENING) {
            NP_CHECK(!listening++, "a second LISTENING");
            int rc = cluster_disconnect_worker(id);
            NP_CHECK(rc == 0, "cluster_disconnect_worker: %d %s", rc, cluster_last_error());
            int n = cluster_worker_count();
            NP_CHECK(n == 0, "cluster_worker_count() = %d right after disconnect", n);
            rc = cluster_disconnect_worker(id);
            NP_CHECK(rc == CLUSTER_E_CLOSED, "a second cluster_disconnect_worker returned %d", rc);
        } else if (ev.kind == CLUSTER_EVENT_DISCONNECT) {
            NP_CHECK(listening, "DISCONNECT before LISTENING");
            NP_CHECK(!disconnects++, "a second DISCONNECT");
            NP_CHECK(ev.exited_after_disconnect == 1, "DISCONNECT exited_after_disconnect %d",
                     ev.exited_after_disconnect);
            int ead = cluster_worker_exited_after_disconnect(id);
            NP_CHECK(ead == 1, "cluster_worker_exited_after_disconnect = %d", ead);
            int st = cluster_worker_get_state(id);
            NP_CHECK(st == CLUSTER_WORKER_DISCONNECTED || (!exits && st == CLUSTER_WORKER_DEAD),
                     "state at DISCONNECT is %s, expected disconnected", np_state_name(st));
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            NP_CHECK(!exits++, "a second EXIT");
            NP_CHECK(ev.exit_code == 42 && ev.signal == 0,
                     "Disconnect event did not emit inside worker (exit_code %d signal %d)",
                     ev.exit_code, ev.signal);
            NP_CHECK(ev.exited_after_disconnect == 1, "EXIT exited_after_disconnect %d",
                     ev.exited_after_disconnect);
            NP_CHECK(!np_is_alive(pid), "The worker did not die");
        }
    }
    int st = cluster_worker_get_state(id);
    NP_CHECK(st == CLUSTER_WORKER_DEAD, "final state %s, expected dead", np_state_name(st));
    return np_finish();
}

int main(void) {
    np_init("test-cluster-worker-disconnect");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
