/* Port of Node's test/parallel/test-cluster-worker-kill.js.
 *
 * A listening worker is killed with SIGKILL from the primary. Checks that:
 *  - the primary gets exactly one DISCONNECT and one EXIT for it (none after);
 *  - EXIT has no exit code and signal SIGKILL (Node: exitCode null, signalCode 'SIGKILL';
 *    here exit_code -1, signal 9);
 *  - at the DISCONNECT, exitedAfterDisconnect is false and the state is 'disconnected';
 *  - at the EXIT the process is gone (kill(pid, 0) → ESRCH).
 *
 * Deliberate differences:
 *  - Node kills through the ChildProcess (worker.process.kill), bypassing the Worker; the
 *    C API's way to signal a worker is cluster_kill(id, SIGKILL), which in v20 semantics
 *    is the same immediate signal.
 *  - Node listens on common.PORT; here 127.0.0.1:0 (no fixed port needed).
 *  - libcluster's state is live, not as of the event: 'dead' is also accepted at the
 *    DISCONNECT if the exit was already processed by then; it must be 'dead' after EXIT. */
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
            NP_CHECK(killed, "DISCONNECT before the kill");
            NP_CHECK(++disconnects == 1, "the cluster emitted 'disconnect' twice");
            NP_CHECK(ev.exited_after_disconnect == 0, "DISCONNECT exited_after_disconnect %d",
                     ev.exited_after_disconnect);
            NP_CHECK(cluster_worker_exited_after_disconnect(id) == 0,
                     "cluster_worker_exited_after_disconnect != 0");
            int st = cluster_worker_get_state(id);
            NP_CHECK(st == CLUSTER_WORKER_DISCONNECTED || (!exits && st == CLUSTER_WORKER_DEAD),
                     "state at DISCONNECT is %s, expected disconnected", np_state_name(st));
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            NP_CHECK(killed, "EXIT before the kill");
            NP_CHECK(++exits == 1, "the cluster emitted 'exit' twice");
            NP_CHECK(ev.exit_code == -1, "exit_code %d, expected -1 (null)", ev.exit_code);
            NP_CHECK(ev.signal == SIGKILL, "signal %d, expected SIGKILL", ev.signal);
            NP_CHECK(ev.exited_after_disconnect == 0, "EXIT exited_after_disconnect %d",
                     ev.exited_after_disconnect);
            NP_CHECK(!np_is_alive(pid), "the worker is still running");
        }
    }
    int st = cluster_worker_get_state(id);
    NP_CHECK(st == CLUSTER_WORKER_DEAD, "final state %s, expected dead", np_state_name(st));
    return np_finish();
}

int main(void) {
    np_init("test-cluster-worker-kill");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
