/* Port of Node's test/parallel/test-cluster-worker-forced-exit.js.
 *
 * Workers are forced to exit when their control channel goes away without a disconnect
 * (exitedAfterDisconnect not set), and are not forced when the primary disconnects them.
 * Every worker here handles its own DISCONNECT event by exiting with a sentinel (42, after
 * 10 ms as in Node). Checks that:
 *  - unforced: a worker that the primary disconnects (worker.disconnect() →
 *    cluster_disconnect_worker, on ONLINE) gets to run that handler: EXIT code 42;
 *  - forced: a worker whose channel is simply closed exits with code 0, without running the
 *    handler (no sentinel).
 *
 * Deliberate differences:
 *  - Node closes the channel of a live primary with worker.process.disconnect(). The C API
 *    has no way to close a worker's channel outside the disconnect protocol, so the nearest
 *    equivalent is used: a nested primary (this program run with MODE=middle, a plain child
 *    of the test process) forks the worker, reports its pid and, once the worker is online,
 *    ends (_exit(0)) without disconnecting or killing it. Its end closes the channel exactly
 *    as process.disconnect() would, from the worker's point of view. The test process is a
 *    child subreaper (PR_SET_CHILD_SUBREAPER), so the orphaned worker becomes its child and
 *    its exit status can be read with waitpid.
 *  - The workers ignore SIGTERM: libcluster also arms PR_SET_PDEATHSIG(SIGTERM) in workers
 *    as a backstop, which would race with the channel EOF when the nested primary dies;
 *    ignoring it isolates the channel-loss rule this test is about. */
#include "np.h"

#include <sys/prctl.h>

#define SENTINEL 42

static int worker(void) {
    signal(SIGTERM, SIG_IGN);
    NP_CHECK(cluster_is_worker() == 1, "not a worker");
    cluster_event ev;
    for (;;) {
        if (cluster_poll_event(&ev, -1) != 1)
            continue;
        np_print_event(&ev);
        if (ev.kind == CLUSTER_EVENT_DISCONNECT) {
            usleep(10000);
            exit(SENTINEL);
        }
    }
}

/* The nested primary of the forced case. */
static int middle(void) {
    int report = np_report_fd();
    static const char *const env[] = {"MODE=worker", NULL};
    int id = np_fork(env);
    cluster_event ev;
    do
        np_next_event(&ev);
    while (!(ev.kind == CLUSTER_EVENT_ONLINE && ev.worker_id == id));
    char line[64];
    snprintf(line, sizeof line, "%d\n", cluster_worker_pid(id));
    NP_CHECK(np_write_all(report, line) == 0, "report: %s", strerror(errno));
    printf("test-cluster-worker-forced-exit (middle %d): leaving worker %d behind\n",
           (int)getpid(), id);
    fflush(NULL);
    _exit(0); /* closes the worker's channel without a disconnect */
}

static int primary(void) {
    NP_CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, "PR_SET_CHILD_SUBREAPER: %s",
             strerror(errno));

    /* Forced: the nested primary goes away. */
    int rd;
    pid_t mid = np_spawn_self("middle", &rd);
    char line[64];
    np_read_line(rd, line, sizeof line, NP_TIMEOUT_MS);
    close(rd);
    pid_t wpid = (pid_t)atoi(line);
    NP_CHECK(wpid > 0, "bad worker pid \"%s\" from the nested primary", line);
    np_track_pid(wpid);
    int status;
    char desc[128];
    NP_CHECK(np_reap(mid, &status, NP_TIMEOUT_MS), "nested primary did not exit");
    np_untrack_pid(mid);
    np_describe_status(status, desc, sizeof desc);
    NP_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "nested primary: %s", desc);
    NP_CHECK(np_reap(wpid, &status, NP_TIMEOUT_MS), "forced worker %d did not exit after its "
             "channel closed", (int)wpid);
    np_untrack_pid(wpid);
    np_describe_status(status, desc, sizeof desc);
    printf("test-cluster-worker-forced-exit: forced worker %d: %s\n", (int)wpid, desc);
    NP_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "forced worker: %s, expected exit code 0%s", desc,
             WIFEXITED(status) && WEXITSTATUS(status) == SENTINEL ? " (its disconnect handler ran)" : "");

    /* Unforced: the primary disconnects the worker. */
    static const char *const env[] = {"MODE=worker", NULL};
    int id = np_fork(env);
    cluster_event ev;
    for (;;) {
        np_next_event(&ev);
        NP_CHECK(ev.worker_id == id, "event for unknown worker %d", ev.worker_id);
        if (ev.kind == CLUSTER_EVENT_ONLINE) {
            int rc = cluster_disconnect_worker(id);
            NP_CHECK(rc == 0, "cluster_disconnect_worker: %d %s", rc, cluster_last_error());
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            NP_CHECK(ev.exit_code == SENTINEL && ev.signal == 0,
                     "unforced worker: exit_code %d signal %d, expected %d", ev.exit_code,
                     ev.signal, SENTINEL);
            NP_CHECK(ev.exited_after_disconnect == 1, "EXIT exited_after_disconnect = %d",
                     ev.exited_after_disconnect);
            break;
        }
    }
    return np_finish();
}

int main(void) {
    np_init("test-cluster-worker-forced-exit");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    if (mode && strcmp(mode, "middle") == 0)
        return middle();
    return primary();
}
