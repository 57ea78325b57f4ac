/* Port of Node's test/parallel/test-cluster-worker-kill-signal.js.
 *
 * worker.kill(signal) kills the worker with that signal. A worker listens on 127.0.0.1:0;
 * once it listens the primary calls worker.kill('SIGKILL') → cluster_kill(id, SIGKILL).
 * Checks that:
 *  - one DISCONNECT, with exitedAfterDisconnect false and state 'disconnected';
 *  - one EXIT, with no exit code and signal SIGKILL (Node: null / 'SIGKILL'; here -1 / 9),
 *    the worker process gone, and cluster.workers empty (cluster_worker_count() == 0);
 *  - the cluster-level 'exit' fires once (one EXIT event; none after).
 *
 * Deliberate difference: libcluster's state is live, not as of the event: 'dead' is also
 * accepted at the DISCONNECT if the exit was already processed by then. */
#include "np.h"

static int worker(void) {
    cluster_server *srv = NULL;
    int rc = cluster_get_server(&srv, "127.0.0.1", 0, NULL);
    NP_CHECK(rc == 0, "cluster_get_server: %d %s", rc, cluster_last_error());
    for (;;)
        pause();
}

static int primary(void) {
    static const char *const env[] = {"MODE=worker", NULL};
    int id = np_fork(env);
    int pid = cluster_worker_pid(id);
    NP_CHECK(pid > 0, "cluster_worker_pid: %d %s", pid, cluster_last_error());
    cluster_event ev;
    int killed = 0, disconnects = 0, exits = 0;
    for (;;) {
        if (disconnects && exits) {
            if (!np_try_event(&ev, 200)) /* anything now would be a duplicate */
                break;
        } else {
            np_next_event(&ev);
        }
        NP_CHECK(ev.worker_id == id, "event for unknown worker %d", ev.worker_id);
        if (ev.kind == CLUSTER_EVENT_LISTENING) {
            NP_CHECK(!killed, "a second LISTENING");
            int rc = cluster_kill(id, SIGKILL);
            NP_CHECK(rc == 0, "cluster_kill: %d %s", rc, cluster_last_error());
            killed = 1;
        } else if (ev.kind == CLUSTER_EVENT_DISCONNECT) {
            NP_CHECK(++disconnects == 1, "'disconnect' emitted twice");
            NP_CHECK(ev.exited_after_disconnect == 0 && cluster_worker_exited_after_disconnect(id) == 0,
                     "exitedAfterDisconnect is not false at DISCONNECT");
            int st = cluster_worker_get_state(id);
            NP_CHECK(st == CLUSTER_WORKER_DISCONNECTED || (!exits && st == CLUSTER_WORKER_DEAD),
                     "state at DISCONNECT is %s, expected disconnected", np_state_name(st));
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            NP_CHECK(killed, "EXIT before the kill");
            NP_CHECK(++exits == 1, "'exit' emitted twice");
            NP_CHECK(ev.exit_code == -1 && ev.signal == SIGKILL,
                     "exit_code %d signal %d, expected -1 (null) and SIGKILL", ev.exit_code, ev.signal);
            NP_CHECK(!np_is_alive(pid), "the worker process is still alive");
            int n = cluster_worker_count();
            NP_CHECK(n == 0, "%d running worker(s) at EXIT, expected 0", n);
        }
    }
    return np_finish();
}

int main(void) {
    np_init("test-cluster-worker-kill-signal");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
