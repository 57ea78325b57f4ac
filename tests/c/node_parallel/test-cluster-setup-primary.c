/* Port of Node's test/parallel/test-cluster-setup-primary.js.
 *
 * cluster.setupPrimary({ args: ['custom argument'], silent: true }) changes what later
 * forks run. Two workers are forked; each sends its first argument back (Node:
 * process.send(process.argv[2])) and is killed (worker.kill() → cluster_kill SIGTERM) once
 * its message has arrived. Checks that:
 *  - both workers got 'custom argument' as their (only) argument;
 *  - the workers run this same program (Node: settings.exec is the primary's script; here
 *    the worker's /proc/self/exe equals the primary's, the default exec);
 *  - silent: true took effect: the workers' stdout and stderr are pipes to the primary
 *    (cluster_worker_stdio gives them), and what a worker prints arrives there;
 *  - both workers come online and exit after the kill (SIGTERM).
 *
 * Deliberate differences:
 *  - The C API has no `cluster.settings` object to read and no 'setup' event, so the
 *    settings are checked through their effects (above) instead of their shape.
 *  - The settings are given in two cluster_setup_primary calls (args, then silent) to also
 *    check that settings accumulate as Node documents; Node's test sets both at once.
 *  - The worker sends [argv[1], its executable] as one JSON array. */
#include "np.h"

#define TOTAL_WORKERS 2
#define CUSTOM_ARG "custom argument"

static void self_exe(char *buf, size_t len) {
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    NP_CHECK(n > 0, "readlink /proc/self/exe: %s", strerror(errno));
    buf[n] = '\0';
}

/* A JSON string literal for plain text (escapes '"' and '\\'; paths here have no control
 * characters). */
static void json_quote(const char *s, char *out, size_t len) {
    size_t n = 0;
    out[n++] = '"';
    for (; *s && n + 3 < len; s++) {
        if (*s == '"' || *s == '\\')
            out[n++] = '\\';
        out[n++] = *s;
    }
    out[n++] = '"';
    out[n] = '\0';
}

static int worker(int argc, char **argv) {
    NP_CHECK(argc == 2, "worker has %d arguments, expected 1", argc - 1);
    char exe[4096], qarg[512], qexe[8300], msg[9000];
    self_exe(exe, sizeof exe);
    json_quote(argv[1], qarg, sizeof qarg);
    json_quote(exe, qexe, sizeof qexe);
    snprintf(msg, sizeof msg, "[%s,%s]", qarg, qexe);
    printf("silent worker %d says hi\n", cluster_worker_id());
    fflush(stdout);
    int rc = cluster_send(0, msg, -1);
    NP_CHECK(rc == 0, "cluster_send: %d %s", rc, cluster_last_error());
    for (;;) /* just keep the worker alive */
        pause();
}

/* What a silent worker wrote to its stderr so far (it cannot reach ours). */
static void show_stderr(int id) {
    int fd = cluster_worker_stdio(id, 2);
    if (fd < 0)
        return;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    char buf[2048];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n > 0) {
        buf[n] = '\0';
        fprintf(stderr, "worker %d stderr: %s\n", id, buf);
    }
    close(fd);
}

static int primary(void) {
    static const char *const args[] = {CUSTOM_ARG, NULL};
    cluster_settings s;
    cluster_settings_init(&s, sizeof s);
    s.args = args;
    int rc = cluster_setup_primary(&s);
    NP_CHECK(rc == 0, "cluster_setup_primary(args): %d %s", rc, cluster_last_error());
    cluster_settings_init(&s, sizeof s);
    s.silent = 1;
    rc = cluster_setup_primary(&s);
    NP_CHECK(rc == 0, "cluster_setup_primary(silent): %d %s", rc, cluster_last_error());

    char exe[4096], qarg[512], qexe[8300], want[9000];
    self_exe(exe, sizeof exe);
    json_quote(CUSTOM_ARG, qarg, sizeof qarg);
    json_quote(exe, qexe, sizeof qexe);
    snprintf(want, sizeof want, "[%s,%s]", qarg, qexe);

    static const char *const env[] = {"MODE=worker", NULL};
    for (int i = 0; i < TOTAL_WORKERS; i++)
        np_fork(env);
    int online = 0, correct_input = 0, exits = 0;
    int killed[TOTAL_WORKERS + 1] = {0};
    cluster_event ev;
    while (exits < TOTAL_WORKERS) {
        np_next_event(&ev);
        int id = ev.worker_id;
        NP_CHECK(id >= 1 && id <= TOTAL_WORKERS, "event for unknown worker %d", id);
        if (ev.kind == CLUSTER_EVENT_ONLINE) {
            online++;
        } else if (ev.kind == CLUSTER_EVENT_MESSAGE) {
            if (!ev.data || strcmp(ev.data, want) != 0) {
                show_stderr(id);
                np_fail("worker %d sent %s, expected %s", id, ev.data, want);
            }
            correct_input++;
            /* silent: its stdout is a pipe to us, carrying what it printed */
            int out = cluster_worker_stdio(id, 1);
            NP_CHECK(out >= 0, "cluster_worker_stdio(%d, 1): %d %s (silent not applied?)", id,
                     out, cluster_last_error());
            char line[128], expect[128];
            np_read_line(out, line, sizeof line, NP_TIMEOUT_MS);
            close(out);
            snprintf(expect, sizeof expect, "silent worker %d says hi", id);
            NP_CHECK(strcmp(line, expect) == 0, "worker %d stdout: \"%s\"", id, line);
            int err = cluster_worker_stdio(id, 2);
            NP_CHECK(err >= 0, "cluster_worker_stdio(%d, 2): %d %s", id, err, cluster_last_error());
            close(err);
            rc = cluster_kill(id, SIGTERM);
            NP_CHECK(rc == 0, "cluster_kill: %d %s", rc, cluster_last_error());
            killed[id] = 1;
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            if (!killed[id])
                show_stderr(id);
            NP_CHECK(killed[id], "worker %d exited (code %d, signal %d) before it was killed", id,
                     ev.exit_code, ev.signal);
            NP_CHECK(ev.signal == SIGTERM, "worker %d exit signal %d", id, ev.signal);
            exits++;
        }
    }
    NP_CHECK(online == TOTAL_WORKERS, "%d ONLINE events", online);
    NP_CHECK(correct_input == TOTAL_WORKERS,
             "Arguments were not sent for one or more worker. %d workers received the argument, "
             "but %d were expected.", correct_input, TOTAL_WORKERS);
    return np_finish();
}

int main(int argc, char **argv) {
    np_init("test-cluster-setup-primary");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker(argc, argv);
    return primary();
}
