/* Port of Node's test/parallel/test-cluster-primary-kill.js.
 *
 * Workers die when their primary dies. Three processes, as in Node: the test case (this
 * program without MODE) starts a cluster primary (MODE=cluster, a plain child, Node's
 * child_process.fork(file, ['cluster'])), which forks one worker that listens on
 * 127.0.0.1:0 and stays up, reports the worker's pid to the test case, and exits with code
 * 0 once the worker listens. Checks that:
 *  - the primary exits with code 0 (it died on purpose);
 *  - the worker it left behind goes away by itself afterwards (Node polls isAlive(pid)).
 *
 * Deliberate differences:
 *  - The pid goes over a pipe instead of Node's IPC message.
 *  - Node's primary waits 1 s after 'listening' before exiting; here it exits at once.
 *  - The test case is a child subreaper (PR_SET_CHILD_SUBREAPER), so the orphaned worker
 *    becomes its child and is reaped with waitpid instead of polled with kill(pid, 0)
 *    (which would see a zombie, or a recycled pid, as alive).
 *  - A Node worker exits with code 0 when its channel closes. A libcluster worker does the
 *    same, and also has PR_SET_PDEATHSIG(SIGTERM) as a backstop; which one ends it first is
 *    a race, so both "exit code 0" and "killed by SIGTERM" count as dying with the primary
 *    (test-cluster-primary-error checks the exit-code-0 path alone). */
#include "np.h"

#include <sys/prctl.h>

static int worker(void) {
    cluster_server *srv = NULL;
    int rc = cluster_get_server(&srv, "127.0.0.1", 0, NULL);
    NP_CHECK(rc == 0, "cluster_get_server: %d %s", rc, cluster_last_error());
    for (;;) /* keep the worker alive */
        pause();
}

static int cluster_primary(void) {
    int report = np_report_fd();
    static const char *const env[] = {"MODE=worker", NULL};
    int id = np_fork(env);
    char line[64];
    snprintf(line, sizeof line, "%d\n", cluster_worker_pid(id));
    NP_CHECK(np_write_all(report, line) == 0, "report: %s", strerror(errno));
    cluster_event ev;
    do
        np_next_event(&ev);
    while (!(ev.kind == CLUSTER_EVENT_LISTENING && ev.worker_id == id));
    exit(0); /* terminate the cluster process, leaving the worker behind */
}

static int testcase(void) {
    NP_CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, "PR_SET_CHILD_SUBREAPER: %s",
             strerror(errno));
    int rd;
    pid_t prim = np_spawn_self("cluster", &rd);
    char line[64];
    np_read_line(rd, line, sizeof line, NP_TIMEOUT_MS);
    close(rd);
    pid_t wpid = (pid_t)atoi(line);
    NP_CHECK(wpid > 0, "got \"%s\" instead of a worker pid", line);
    np_track_pid(wpid);

    int status;
    char desc[128];
    NP_CHECK(np_reap(prim, &status, NP_TIMEOUT_MS), "the primary did not exit");
    np_untrack_pid(prim);
    np_describe_status(status, desc, sizeof desc);
    NP_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "primary: %s, expected exit code 0", desc);

    NP_CHECK(np_reap(wpid, &status, NP_TIMEOUT_MS), "worker %d was alive after primary died",
             (int)wpid);
    np_untrack_pid(wpid);
    np_describe_status(status, desc, sizeof desc);
    printf("test-cluster-primary-kill: worker %d ended: %s\n", (int)wpid, desc);
    NP_CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
                 (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM),
             "worker: %s, expected exit code 0 (or SIGTERM from PR_SET_PDEATHSIG)", desc);
    return np_finish();
}

int main(void) {
    np_init("test-cluster-primary-kill");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    if (mode && strcmp(mode, "cluster") == 0)
        return cluster_primary();
    return testcase();
}
