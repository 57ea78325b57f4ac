/* cluster_run() in a supervised primary returns only once the supervision has stopped, never
 * while cluster_supervise()'s command still waits for the distributor thread.
 *
 * A regression test for a race seen in CI: a primary that first turned on systemd
 * notifications (a command the distributor answers, then goes on with a supervision pass)
 * and then called cluster_supervise() and cluster_run() could see cluster_run() return at
 * once, with no worker yet in the table and the "supervising" flag just cleared by that
 * pass; the primary exited while its first workers were being forked (a hot upgrade's new
 * primary died that way, and demo workers "never became ready").
 *
 * The race lives in a primary's first milliseconds, so this program starts ROUNDS fresh
 * primaries (plain fork + exec of itself, not the library's fork: each must be a new
 * process). Each subject turns on systemd notifications (to a datagram socket of its own),
 * supervises one worker (ready when online) and runs cluster_run(); its READY callback
 * asks for a fast stop. A subject whose cluster_run() returned before any READY exits 3. */
#include "ctest.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#define ROUNDS 400

static int ready_seen;

static void on_ready(const cluster_event *ev, void *ud) {
    (void)ev;
    (void)ud;
    ready_seen = 1;
    cluster_control(CLUSTER_ACT_STOP_FAST);
}

/* One fresh primary: 0 when cluster_run() returned after the worker was ready, 3 when before. */
static int subject(void) {
    char path[108];
    snprintf(path, sizeof path, "/tmp/libcluster-supervise-run-%d", (int)getpid());
    unlink(path);
    int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (sock < 0 || bind(sock, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("notify socket");
        return 4;
    }
    setenv("NOTIFY_SOCKET", path, 1);
    cluster_on(CLUSTER_EVENT_READY, on_ready, NULL);
    if (cluster_systemd(CLUSTER_SYSTEMD_NOTIFY) < 0) {
        fprintf(stderr, "cluster_systemd: %s\n", cluster_last_error());
        return 4;
    }
    cluster_supervisor sup;
    cluster_supervisor_init(&sup, sizeof sup);
    sup.workers = 1;
    sup.ready_on = CLUSTER_READY_ONLINE;
    if (cluster_supervise(&sup) < 0) {
        fprintf(stderr, "cluster_supervise: %s\n", cluster_last_error());
        return 4;
    }
    int rc = cluster_run();
    unlink(path);
    if (rc < 0) {
        fprintf(stderr, "cluster_run: %s\n", cluster_last_error());
        return 4;
    }
    return ready_seen ? 0 : 3;
}

int main(int argc, char **argv) {
    if (cluster_is_worker() == 1) {
        /* Stays until the primary's fast stop (SIGTERM) ends it. */
        cluster_run();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "subject") == 0)
        return subject();
    ct_init("supervise_run");
    int early = 0;
    for (int i = 0; i < ROUNDS; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            execl("/proc/self/exe", argv[0], "subject", (char *)NULL);
            _exit(5);
        }
        CT_CHECK(pid > 0, "fork: %s", strerror(errno));
        int status = 0;
        CT_CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
        CT_CHECK(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 3),
                 "round %d: the subject ended with status %#x", i, status);
        if (WEXITSTATUS(status) == 3)
            early++;
    }
    printf("%d of %d primaries returned from cluster_run() before their worker was ready\n", early, ROUNDS);
    CT_CHECK(early == 0, "cluster_run() returned early in %d of %d primaries", early, ROUNDS);
    return ct_done();
}
