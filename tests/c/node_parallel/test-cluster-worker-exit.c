/* Port of Node's test/parallel/test-cluster-worker-exit.js.
 *
 * A worker listens on 127.0.0.1:0 and, once listening, ends itself with exit(42)
 * (Node: process.exit(EXIT_CODE) from the server's 'listening' callback). Checks that:
 *  - the primary gets exactly one DISCONNECT and exactly one EXIT for it (in either order,
 *    as Node's test allows; none after);
 *  - EXIT carries exit code 42 and no signal (Node: exitCode 42, signalCode null);
 *  - at the DISCONNECT, exitedAfterDisconnect is false (event field and
 *    cluster_worker_exited_after_disconnect) and the state is 'disconnected';
 *  - at the EXIT, the worker process is really gone (kill(pid, 0) fails with ESRCH, Node's
 *    common.isAlive) and cluster_worker_is_dead() is 1.
 *
 * Deliberate differences:
 *  - Node reads `worker.state` inside the 'disconnect' handler, where it is exactly
 *    'disconnected'. libcluster's state is live (the library thread may already have
 *    processed the exit when the queued DISCONNECT is taken), so 'dead' is also accepted
 *    there; after the EXIT it must be 'dead'.
 *  - An http.Server becomes a plain cluster server. */
#include "np.h"

static int worker(void) {
    cluster_server *srv = NULL;
    int rc = cluster_get_server(&srv, "127.0.0.1", 0, NULL);
    NP_CHECK(rc == 0, "cluster_get_server: %d %s", rc, cluster_last_error());
    exit(42);
}

static int primary(void) {
    static const char *const env[] = {"MODE=worker", NULL};
    int id = np_fork(env);
    int pid = 0; /* from FORK: the worker may be gone (out of the table) before we ask */
    int disconnects = 0, exits = 0, listening = 0;
    cluster_event ev;
    for (;;) {
        if (disconnects && exits) {
            if (!np_try_event(&ev, 200)) /* anything now would be a duplicate */
                break;
        } else {
            np_next_event(&ev);
        }
        NP_CHECK(ev.worker_id == id, "event for unknown worker %d", ev.worker_id);
        switch (ev.kind) {
        case CLUSTER_EVENT_FORK:
            pid = ev.pid;
            break;
        case CLUSTER_EVENT_LISTENING:
            listening++;
            break;
        case CLUSTER_EVENT_DISCONNECT: {
            NP_CHECK(++disconnects == 1, "the cluster emitted 'disconnect' twice");
            NP_CHECK(ev.exited_after_disconnect == 0, "DISCONNECT exited_after_disconnect = %d",
                     ev.exited_after_disconnect);
            int ead = cluster_worker_exited_after_disconnect(id);
            NP_CHECK(ead == 0, "cluster_worker_exited_after_disconnect = %d at DISCONNECT", ead);
            int st = cluster_worker_get_state(id);
            NP_CHECK(st == CLUSTER_WORKER_DISCONNECTED || (exits == 0 && st == CLUSTER_WORKER_DEAD),
                     "state at DISCONNECT is %s", np_state_name(st));
            NP_CHECK(cluster_worker_is_connected(id) == 0, "still connected at DISCONNECT");
            break;
        }
        case CLUSTER_EVENT_EXIT:
            NP_CHECK(++exits == 1, "the cluster emitted 'exit' twice");
            NP_CHECK(ev.exit_code == 42, "exit_code %d, expected 42", ev.exit_code);
            NP_CHECK(ev.signal == 0, "signal %d, expected 0 (null)", ev.signal);
            NP_CHECK(ev.exited_after_disconnect == 0, "EXIT exited_after_disconnect = %d",
                     ev.exited_after_disconnect);
            NP_CHECK(pid > 0 && ev.pid == pid, "EXIT pid %d, FORK said %d", ev.pid, pid);
            NP_CHECK(!np_is_alive(pid), "the worker (pid %d) is still running", pid);
            NP_CHECK(cluster_worker_is_dead(id) == 1, "cluster_worker_is_dead != 1 at EXIT");
            break;
        default:
            break;
        }
    }
    NP_CHECK(listening <= 1, "%d LISTENING events, expected at most 1", listening);
    int st = cluster_worker_get_state(id);
    NP_CHECK(st == CLUSTER_WORKER_DEAD, "final state is %s, expected dead", np_state_name(st));
    NP_CHECK(cluster_worker_exited_after_disconnect(id) == 0, "exitedAfterDisconnect became true");
    return np_finish();
}

int main(void) {
    np_init("test-cluster-worker-exit");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
