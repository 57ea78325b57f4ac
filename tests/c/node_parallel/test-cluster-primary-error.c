/* Port of Node's test/parallel/test-cluster-primary-error.js.
 *
 * Workers die when their primary dies of an error. Three processes, as in Node: the test
 * case (this program without MODE) starts a cluster primary (MODE=cluster, a plain child,
 * Node's child_process.fork), which reports the pid of each worker at its FORK event, forks
 * two workers that listen on 127.0.0.1:0, and fails with an "accidental error" (exit code
 * 1, as an uncaught exception ends Node) once both listen. Checks that:
 *  - the primary's FORK events carry the two workers' pids (two reports);
 *  - the primary exits with code 1;
 *  - both workers then end by themselves, through their normal exit path: exit code 0, and
 *    each ran its exit handler (Node: process.on('exit') writes a "done" file; here an
 *    atexit() handler writes one, which the test case finds).
 *
 * Deliberate differences:
 *  - An uncaught exception becomes an explicit exit(1) after printing "accidental error".
 *  - Pids go over a pipe instead of Node's IPC messages; done files live in a fresh
 *    mkdtemp directory (Node's tmpdir), removed at the end.
 *  - The test case is a child subreaper (PR_SET_CHILD_SUBREAPER) and reaps the orphaned
 *    workers with waitpid, so their exit codes are checked too.
 *  - The workers ignore SIGTERM: libcluster also arms PR_SET_PDEATHSIG(SIGTERM) as a
 *    backstop, which races with the channel EOF when the primary dies; ignoring it checks
 *    the Node rule itself (channel lost without a disconnect → exit with code 0, running
 *    exit handlers). test-cluster-primary-kill covers workers with default SIGTERM. */
#include "np.h"

#include <sys/prctl.h>
#include <sys/stat.h>

#define TOTAL_WORKERS 2

static void write_done_file(void) {
    const char *dir = getenv("NP_DONE_DIR");
    if (!dir)
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s/done-%d", dir, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        (void)!write(fd, "done", 4);
        close(fd);
    }
}

static int worker(void) {
    signal(SIGTERM, SIG_IGN);
    NP_CHECK(atexit(write_done_file) == 0, "atexit");
    cluster_server *srv = NULL;
    int rc = cluster_get_server(&srv, "127.0.0.1", 0, NULL);
    NP_CHECK(rc == 0, "cluster_get_server: %d %s", rc, cluster_last_error());
    for (;;)
        pause();
}

static int cluster_primary(void) {
    int report = np_report_fd();
    static const char *const env[] = {"MODE=worker", NULL};
    np_fork(env);
    np_fork(env);
    int forks = 0, listening = 0;
    cluster_event ev;
    while (listening < TOTAL_WORKERS) {
        np_next_event(&ev);
        if (ev.kind == CLUSTER_EVENT_FORK) {
            NP_CHECK(++forks <= TOTAL_WORKERS, "too many FORK events");
            char line[64];
            snprintf(line, sizeof line, "%d\n", ev.pid);
            NP_CHECK(np_write_all(report, line) == 0, "report: %s", strerror(errno));
        } else if (ev.kind == CLUSTER_EVENT_LISTENING) {
            listening++;
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            np_fail("worker %d exited early (code %d, signal %d)", ev.worker_id, ev.exit_code, ev.signal);
        }
    }
    fprintf(stderr, "test-cluster-primary-error (cluster %d): accidental error (on purpose)\n",
            (int)getpid());
    fflush(NULL);
    exit(1);
}

static int testcase(void) {
    NP_CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, "PR_SET_CHILD_SUBREAPER: %s",
             strerror(errno));
    char dir[] = "/tmp/np-primary-error-XXXXXX";
    NP_CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    NP_CHECK(setenv("NP_DONE_DIR", dir, 1) == 0, "setenv: %s", strerror(errno));

    int rd;
    pid_t prim = np_spawn_self("cluster", &rd);
    pid_t workers[TOTAL_WORKERS];
    for (int i = 0; i < TOTAL_WORKERS; i++) {
        char line[64];
        np_read_line(rd, line, sizeof line, NP_TIMEOUT_MS);
        workers[i] = (pid_t)atoi(line);
        NP_CHECK(workers[i] > 0, "got \"%s\" instead of a worker pid", line);
        np_track_pid(workers[i]);
    }
    close(rd);

    int status;
    char desc[128];
    NP_CHECK(np_reap(prim, &status, NP_TIMEOUT_MS), "the primary did not exit");
    np_untrack_pid(prim);
    np_describe_status(status, desc, sizeof desc);
    NP_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1,
             "primary: %s, expected exit code 1 (died accidentally)", desc);

    int bad = 0;
    for (int i = 0; i < TOTAL_WORKERS; i++) {
        if (!np_reap(workers[i], &status, NP_TIMEOUT_MS)) {
            fprintf(stderr, "worker %d is still alive after its primary died\n", (int)workers[i]);
            bad++;
            continue;
        }
        np_untrack_pid(workers[i]);
        np_describe_status(status, desc, sizeof desc);
        printf("test-cluster-primary-error: worker %d ended: %s\n", (int)workers[i], desc);
        char path[4096];
        snprintf(path, sizeof path, "%s/done-%d", dir, (int)workers[i]);
        int done = access(path, F_OK) == 0;
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
            fprintf(stderr, "worker %d: %s, expected exit code 0\n", (int)workers[i], desc);
            bad++;
        } else if (!done) {
            fprintf(stderr, "worker %d: no done file (its exit handlers did not run)\n",
                    (int)workers[i]);
            bad++;
        }
        unlink(path);
    }
    rmdir(dir);
    NP_CHECK(bad == 0, "%d worker(s) did not end properly with their primary", bad);
    return np_finish();
}

int main(void) {
    np_init("test-cluster-primary-error");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    if (mode && strcmp(mode, "cluster") == 0)
        return cluster_primary();
    return testcase();
}
