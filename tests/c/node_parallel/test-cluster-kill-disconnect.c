/* Port of Node's test/parallel/test-cluster-kill-disconnect.js.
 *
 * A worker that leaves on its own, by cluster.worker.disconnect() or by
 * cluster.worker.kill(), is seen by the primary as exitedAfterDisconnect (voluntary), at
 * its 'disconnect' and at its 'exit' event, whichever comes first (nodejs/node#3238).
 * Two workers, forked with action=disconnect and action=kill. Checks, for each: one
 * DISCONNECT and one EXIT, in either order, and at both exitedAfterDisconnect is true (the
 * event field and cluster_worker_exited_after_disconnect); also each exits with code 0.
 *
 * Deliberate differences: the C API has cluster_worker_disconnect() for
 * cluster.worker.disconnect() but no worker-side kill(). Node's cluster.worker.kill() in a
 * worker tells the primary the exit is voluntary, waits for its ack, closes the channel and
 * exits with 0; the nearest C equivalent is cluster_worker_disconnect() (which does the
 * same handshake) followed at once by exit(0), without waiting for the DISCONNECT event.
 * The "disconnect" worker waits for its DISCONNECT event and then returns 0, as a Node
 * worker with nothing left to do exits. */
#include "np.h"

static int worker(const char *action) {
    int rc = cluster_worker_disconnect();
    NP_CHECK(rc == 0, "cluster_worker_disconnect (%s): %d %s", action, rc, cluster_last_error());
    if (strcmp(action, "kill") == 0)
        exit(0);
    NP_CHECK(strcmp(action, "disconnect") == 0, "unknown action %s", action);
    cluster_event ev;
    do
        np_next_event(&ev);
    while (ev.kind != CLUSTER_EVENT_DISCONNECT);
    NP_CHECK(cluster_worker_is_connected(0) == 0, "still connected after DISCONNECT");
    return np_finish();
}

static int primary(void) {
    static const char *const env_disconnect[] = {"MODE=worker", "action=disconnect", NULL};
    static const char *const env_kill[] = {"MODE=worker", "action=kill", NULL};
    int ids[2];
    ids[0] = np_fork(env_disconnect);
    ids[1] = np_fork(env_kill);
    int disconnects[2] = {0}, exits[2] = {0};
    cluster_event ev;
    while (exits[0] + exits[1] + disconnects[0] + disconnects[1] < 4) {
        np_next_event(&ev);
        int i = ev.worker_id == ids[0] ? 0 : ev.worker_id == ids[1] ? 1 : -1;
        NP_CHECK(i >= 0, "event for unknown worker %d", ev.worker_id);
        const char *what = i == 0 ? "disconnect" : "kill";
        if (ev.kind == CLUSTER_EVENT_DISCONNECT) {
            NP_CHECK(!disconnects[i]++, "%s worker: a second DISCONNECT", what);
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            NP_CHECK(!exits[i]++, "%s worker: a second EXIT", what);
            NP_CHECK(ev.exit_code == 0 && ev.signal == 0, "%s worker: exit_code %d signal %d",
                     what, ev.exit_code, ev.signal);
        } else {
            continue;
        }
        NP_CHECK(ev.exited_after_disconnect == 1, "%s worker: %s exited_after_disconnect = %d",
                 what, np_kind_name((int)ev.kind), ev.exited_after_disconnect);
        int ead = cluster_worker_exited_after_disconnect(ev.worker_id);
        NP_CHECK(ead == 1, "%s worker: cluster_worker_exited_after_disconnect = %d at %s", what,
                 ead, np_kind_name((int)ev.kind));
    }
    return np_finish();
}

int main(void) {
    np_init("test-cluster-kill-disconnect");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker(getenv("action") ? getenv("action") : "(unset)");
    return primary();
}
