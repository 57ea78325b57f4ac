/* The NULL sweep (house style 16 i and iii): every function declared in include/cluster.h
 * is called with NULL pointers and invalid arguments, in the primary and in a worker, and
 * must return a negative code with a non-empty cluster_last_error() instead of crashing.
 * The few calls documented to accept NULL (cluster_server_close, a NULL callback) must
 * return 0. cluster_debug_panic() must come back as CLUSTER_E_PANIC and leave the library
 * usable.
 *
 * tests/c_api.rs checks that every function name the header declares appears in this file,
 * so a new export without a sweep entry fails the suite.
 *
 * The primary sweeps, forks one worker (which sweeps the worker side, then serves one
 * connection whose text is its verdict), checks the bad-signal cases against that live
 * worker, reads the verdict and kills it. */
#include "ctest.h"

/* Exported for this test, not declared in cluster.h: panics inside the library on purpose. */
int cluster_debug_panic(void);
#include <stddef.h>

#include <limits.h>
#include <sys/wait.h>

/* A pointer that is not NULL, to check that failing calls reset `*out` to NULL. */
static int sentinel_storage;
#define SENTINEL ((cluster_server *)(void *)&sentinel_storage)

static void noop_cb(const cluster_event *ev, void *userdata) {
    (void)ev;
    (void)userdata;
}

static int disconnect_cb_ran;

static void on_disconnected(const cluster_event *ev, void *userdata) {
    if (ev == NULL && userdata == &disconnect_cb_ran)
        disconnect_cb_ran++;
    else
        disconnect_cb_ran += 100;
}

/* Any negative code, with a message (for calls where two arguments are wrong at once). */
static void expect_negative(const char *what, int rc) {
    const char *msg = cluster_last_error();
    CT_CHECK(rc < 0, "%s returned %d, expected a negative code", what, rc);
    CT_CHECK(msg && msg[0], "%s failed (%d) without a message", what, rc);
}

static void check_text(const char *what, const char *s) {
    CT_CHECK(s != NULL, "%s returned NULL", what);
    CT_CHECK(s[0] != '\0', "%s returned an empty string", what);
}

/* Error reporting, strerror and the panic boundary: valid in any role. */
static void sweep_errors(void) {
    int codes[] = {0,
                   -EINVAL,
                   -ESRCH,
                   -EADDRINUSE,
                   -EAGAIN,
                   CLUSTER_E_PANIC,
                   CLUSTER_E_WRONG_ROLE,
                   CLUSTER_E_PROTOCOL,
                   CLUSTER_E_FORKED,
                   CLUSTER_E_CLOSED,
                   CLUSTER_E_UNSUPPORTED,
                   1,
                   12345,
                   -4095,
                   -4096,
                   -9999,
                   -99999,
                   INT_MIN,
                   INT_MAX};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "cluster_strerror(%d)", codes[i]);
        check_text(what, cluster_strerror(codes[i]));
    }
    CT_CHECK(strcmp(cluster_strerror(12345), "unknown error code") == 0,
             "cluster_strerror(12345) = \"%s\", documented \"unknown error code\"",
             cluster_strerror(12345));
    CT_CHECK(strcmp(cluster_strerror(-EINVAL), cluster_strerror(-ESRCH)) != 0,
             "cluster_strerror gives the same text for -EINVAL and -ESRCH");

    /* No arguments to get wrong: the library is the version of the header it was built with. */
    CT_CHECK(cluster_version() == CLUSTER_VERSION, "cluster_version() = %d, the header's CLUSTER_VERSION is %d",
             cluster_version(), CLUSTER_VERSION);

    /* The panic boundary (house style 16 iii). */
    for (int round = 0; round < 3; round++) {
        int rc = cluster_debug_panic();
        const char *msg = cluster_last_error();
        CT_CHECK(rc == CLUSTER_E_PANIC, "cluster_debug_panic() = %d, expected CLUSTER_E_PANIC", rc);
        CT_CHECK(msg != NULL && strncmp(msg, "panic:", 6) == 0,
                 "after cluster_debug_panic, cluster_last_error() = \"%s\", expected \"panic:...\"",
                 msg ? msg : "(NULL)");
        /* ... and the library still works afterwards. */
        check_text("cluster_strerror(CLUSTER_E_PANIC) after a panic", cluster_strerror(CLUSTER_E_PANIC));
        CT_EXPECT_ERR(cluster_poll_event(NULL, 0), -EINVAL);
        CT_CHECK(strncmp(cluster_last_error(), "panic:", 6) != 0,
                 "a later failure did not replace the panic message");
    }
}

/* Calls valid in both roles, with bad arguments. */
static void sweep_common(void) {
    /* cluster_notify: NULL and empty states; without NOTIFY_SOCKET (unset here) nothing is
     * sent and the call returns 0. */
    CT_EXPECT_ERR(cluster_notify(NULL), -EINVAL);
    CT_EXPECT_ERR(cluster_notify(""), -EINVAL);
    CT_EXPECT_ERR(cluster_notify("STATUS=\xff"), -EINVAL);
    {
        char *saved = getenv("NOTIFY_SOCKET") ? strdup(getenv("NOTIFY_SOCKET")) : NULL;
        unsetenv("NOTIFY_SOCKET");
        CT_CHECK(cluster_notify("STATUS=sweep") == 0, "cluster_notify without NOTIFY_SOCKET: %s", cluster_last_error());
        setenv("NOTIFY_SOCKET", "relative/path", 1);
        CT_EXPECT_ERR(cluster_notify("STATUS=sweep"), -EINVAL);
        if (saved) {
            setenv("NOTIFY_SOCKET", saved, 1);
            free(saved);
        } else {
            unsetenv("NOTIFY_SOCKET");
        }
    }
    /* cluster_on: unknown event types. */
    CT_EXPECT_ERR(cluster_on(CLUSTER_EVENT_NONE, noop_cb, NULL), -EINVAL);
    CT_EXPECT_ERR(cluster_on(0, NULL, NULL), -EINVAL);
    CT_EXPECT_ERR(cluster_on(99, noop_cb, NULL), -EINVAL);
    CT_EXPECT_ERR(cluster_on(-1, noop_cb, NULL), -EINVAL);
    CT_EXPECT_ERR(cluster_on(CLUSTER_EVENT_COUNT, noop_cb, NULL), -EINVAL);
    CT_EXPECT_ERR(cluster_on(INT_MIN, noop_cb, NULL), -EINVAL);
    CT_EXPECT_ERR(cluster_on(INT_MAX, noop_cb, NULL), -EINVAL);
    /* A NULL callback is documented to remove the registration: success. */
    CT_CHECK(cluster_on(CLUSTER_EVENT_MESSAGE, NULL, NULL) == 0, "cluster_on(MESSAGE, NULL) failed: %s",
             cluster_last_error());
    CT_CHECK(cluster_on_fork(NULL, NULL) == 0, "cluster_on_fork(NULL) failed: %s", cluster_last_error());
    CT_CHECK(cluster_on_online(NULL, NULL) == 0, "cluster_on_online(NULL) failed: %s", cluster_last_error());
    CT_CHECK(cluster_on_listening(NULL, NULL) == 0, "cluster_on_listening(NULL) failed: %s",
             cluster_last_error());
    CT_CHECK(cluster_on_exit(NULL, NULL) == 0, "cluster_on_exit(NULL) failed: %s", cluster_last_error());

    /* The pull API. */
    CT_EXPECT_ERR(cluster_poll_event(NULL, 0), -EINVAL);
    CT_EXPECT_ERR(cluster_poll_event(NULL, -1), -EINVAL); /* must not block first */
    CT_EXPECT_ERR(cluster_poll_event(NULL, 1000), -EINVAL);
    int efd = cluster_event_fd();
    CT_CHECK(efd > 2, "cluster_event_fd() = %d: %s", efd, cluster_last_error());
    CT_CHECK(cluster_event_fd() == efd, "cluster_event_fd() changed");

    /* The message cap: 1 KiB to 1 GiB. */
    size_t bad_caps[] = {0, 1, 1023, ((size_t)1 << 30) + 1, (size_t)-1};
    for (size_t i = 0; i < sizeof bad_caps / sizeof bad_caps[0]; i++)
        CT_EXPECT_ERR(cluster_set_max_message(bad_caps[i]), -EINVAL);
    CT_CHECK(cluster_set_max_message((size_t)16 << 20) == 0, "cluster_set_max_message(16 MiB, the default): %s",
             cluster_last_error());

    /* Options and settings initialisers. */
    CT_EXPECT_ERR(cluster_server_options_init(NULL, 0), -EINVAL);
    CT_EXPECT_ERR(cluster_settings_init(NULL, 0), -EINVAL);
    {
        /* A caller built against the first, shorter cluster_settings (exec, args, cwd) is
         * never written past its end: the bytes after `size` keep their canary. */
        unsigned char buf[sizeof(cluster_settings) + 16];
        size_t v1 = offsetof(cluster_settings, env);
        memset(buf, 0xab, sizeof buf);
        CT_CHECK(cluster_settings_init((cluster_settings *)(void *)buf, v1) == 0, "init v1: %s", cluster_last_error());
        for (size_t i = v1; i < sizeof buf; i++)
            CT_CHECK(buf[i] == 0xab, "cluster_settings_init wrote byte %zu past size %zu", i, v1);
        CT_EXPECT_ERR(cluster_settings_init((cluster_settings *)(void *)buf, 4), -EINVAL);
        size_t o1 = offsetof(cluster_server_options, udp);
        memset(buf, 0xab, sizeof buf);
        CT_CHECK(cluster_server_options_init((cluster_server_options *)(void *)buf, o1) == 0, "opts init: %s", cluster_last_error());
        for (size_t i = o1; i < sizeof buf; i++)
            CT_CHECK(buf[i] == 0xab, "cluster_server_options_init wrote byte %zu past size %zu", i, o1);
    }

    /* cluster_get_server: NULL out, bad ports, bad addresses, bad options. `*out` must be
     * NULL after every failure. */
    cluster_server *s = SENTINEL;
    CT_EXPECT_ERR(cluster_get_server(NULL, "127.0.0.1", 0, NULL), -EINVAL);
    CT_EXPECT_ERR(cluster_get_server(NULL, NULL, 0, NULL), -EINVAL);
    int bad_ports[] = {-1, 65536, 100000, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof bad_ports / sizeof bad_ports[0]; i++) {
        s = SENTINEL;
        CT_EXPECT_ERR(cluster_get_server(&s, "127.0.0.1", bad_ports[i], NULL), -EINVAL);
        CT_CHECK(s == NULL, "cluster_get_server(port %d) failed but left *out set", bad_ports[i]);
        s = SENTINEL;
        CT_EXPECT_ERR(cluster_get_server(&s, NULL, bad_ports[i], NULL), -EINVAL);
        CT_CHECK(s == NULL, "cluster_get_server(NULL, port %d) failed but left *out set", bad_ports[i]);
    }
    s = SENTINEL;
    CT_EXPECT_ERR(cluster_get_server(&s, "\xff\xfe not utf-8", 0, NULL), -EINVAL);
    CT_CHECK(s == NULL, "cluster_get_server(bad UTF-8) left *out set");
    char long_path[300];
    memset(long_path, 'x', sizeof long_path - 1);
    long_path[0] = '/';
    long_path[sizeof long_path - 1] = '\0';
    s = SENTINEL;
    /* Longer than a socket address holds, and no shorter relative form: the bind says so. */
    CT_EXPECT_ERR(cluster_get_server(&s, long_path, 0, NULL), -ENAMETOOLONG);
    CT_CHECK(s == NULL, "cluster_get_server(300-byte socket path) left *out set");

    cluster_server_options opts;
    memset(&opts, 0, sizeof opts); /* size 0: not initialised */
    s = SENTINEL;
    CT_EXPECT_ERR(cluster_get_server(&s, "127.0.0.1", 0, &opts), -EINVAL);
    CT_CHECK(s == NULL, "cluster_get_server(opts.size 0) left *out set");
    CT_CHECK(cluster_server_options_init(&opts, sizeof opts) == 0, "cluster_server_options_init: %s", cluster_last_error());
    CT_CHECK(opts.size == sizeof opts, "cluster_server_options_init set size %zu, expected %zu", opts.size,
             sizeof opts);
    opts.size = (size_t)1 << 30; /* absurd: not a real struct size */
    CT_EXPECT_ERR(cluster_get_server(&s, "127.0.0.1", 0, &opts), -EINVAL);
    CT_CHECK(cluster_server_options_init(&opts, sizeof opts) == 0, "cluster_server_options_init: %s", cluster_last_error());
    opts.backlog = -1;
    s = SENTINEL;
    CT_EXPECT_ERR(cluster_get_server(&s, "127.0.0.1", 0, &opts), -EINVAL);
    CT_CHECK(s == NULL, "cluster_get_server(backlog -1) left *out set");

    /* Server calls on NULL. */
    CT_EXPECT_ERR(cluster_server_fd(NULL), -EINVAL);
    CT_EXPECT_ERR(cluster_server_port(NULL), -EINVAL);
    CT_EXPECT_ERR(cluster_accept(NULL), -EINVAL);
    CT_EXPECT_ERR(cluster_server_refuse(NULL), -EINVAL);
    CT_CHECK(cluster_server_close(NULL) == 0, "cluster_server_close(NULL) must do nothing and return 0");

    /* The message of a failure stays valid until the next failing call on this thread
     * (successful calls in between must not free it; valgrind runs check the reads). */
    CT_EXPECT_ERR(cluster_server_port(NULL), -EINVAL);
    const char *first = cluster_last_error();
    char copy[256];
    snprintf(copy, sizeof copy, "%s", first);
    (void)cluster_is_worker();
    (void)cluster_strerror(-EINVAL);
    (void)cluster_event_fd();
    CT_CHECK(strcmp(first, copy) == 0, "successful calls changed the last error \"%s\"", copy);
}

/* Primary-only calls with bad arguments, and worker-only calls in the primary. */
static void sweep_primary(void) {
    CT_CHECK(cluster_is_primary() == 1, "cluster_is_primary() = %d in the primary", cluster_is_primary());
    CT_CHECK(cluster_is_worker() == 0, "cluster_is_worker() = %d in the primary", cluster_is_worker());
    CT_EXPECT_ERR(cluster_worker_id(), CLUSTER_E_WRONG_ROLE);

    /* cluster_fork: env entries that are empty or have an empty key ("KEY" alone unsets
     * KEY). Nothing may be forked. */
    const char *const env_empty_key[] = {"=value", NULL};
    const char *const env_second_bad[] = {"GOOD=1", "", NULL};
    const char *const *bad_envs[] = {env_empty_key, env_second_bad};
    for (size_t i = 0; i < sizeof bad_envs / sizeof bad_envs[0]; i++) {
        int id = cluster_fork(bad_envs[i]);
        if (id > 0)
            ct_track(id);
        CT_CHECK(id == -EINVAL, "cluster_fork(bad env #%zu) = %d, expected -EINVAL", i, id);
        check_text("cluster_last_error() after cluster_fork(bad env)", cluster_last_error());
    }

    /* Unknown worker ids. */
    int bad_ids[] = {0, -1, 1, 2, 9999, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        CT_EXPECT_ERR(cluster_kill(bad_ids[i], SIGTERM), -ESRCH);
        CT_EXPECT_ERR(cluster_kill(bad_ids[i], 0), -ESRCH);
        CT_EXPECT_ERR(cluster_worker_pid(bad_ids[i]), -ESRCH);
        int rc = cluster_kill(bad_ids[i], 99); /* unknown id and bad signal: either error */
        CT_CHECK(rc == -ESRCH || rc == -EINVAL, "cluster_kill(%d, 99) = %d", bad_ids[i], rc);
        check_text("cluster_last_error() after cluster_kill(bad, 99)", cluster_last_error());
    }

    /* The per-worker calls on ids that were never forked. */
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        int bid = bad_ids[i];
        CT_EXPECT_ERR(cluster_worker_get_state(bid), -ESRCH);
        CT_EXPECT_ERR(cluster_worker_is_connected(bid), -ESRCH);
        CT_EXPECT_ERR(cluster_worker_is_dead(bid), -ESRCH);
        CT_EXPECT_ERR(cluster_worker_exited_after_disconnect(bid), -ESRCH);
        CT_EXPECT_ERR(cluster_disconnect_worker(bid), -ESRCH);
        CT_EXPECT_ERR(cluster_close_channel(bid), -ESRCH);
        CT_EXPECT_ERR(cluster_worker_stdio(bid, 1), -ESRCH);
        CT_EXPECT_ERR(cluster_send(bid, "{}", -1), -ESRCH);
        /* Two things wrong at once: either error will do. */
        expect_negative("cluster_worker_stdio(bad id, -1)", cluster_worker_stdio(bid, -1));
        expect_negative("cluster_worker_stdio(bad id, 3)", cluster_worker_stdio(bid, 3));
        expect_negative("cluster_send(bad id, NULL, -1)", cluster_send(bid, NULL, -1));
    }
    CT_EXPECT_ERR(cluster_worker_disconnect(), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_worker_destroy(), CLUSTER_E_WRONG_ROLE);

    /* The bind allowlist: ports out of range (-2 is "any", -1 a pipe's). No valid entry is
     * added: one would restrict the worker round below. */
    int bad_allow_ports[] = {-3, 65536, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof bad_allow_ports / sizeof bad_allow_ports[0]; i++) {
        CT_EXPECT_ERR(cluster_allow_bind("127.0.0.1", bad_allow_ports[i]), -EINVAL);
        CT_EXPECT_ERR(cluster_allow_bind(NULL, bad_allow_ports[i]), -EINVAL);
    }
    expect_negative("cluster_allow_bind(invalid UTF-8, 80)", cluster_allow_bind("\xff\xfe", 80));

    /* The worker table, empty. */
    CT_CHECK(cluster_worker_count() == 0, "cluster_worker_count() = %d before any fork", cluster_worker_count());
    CT_EXPECT_ERR(cluster_workers(NULL, 1), -EINVAL);
    CT_EXPECT_ERR(cluster_workers(NULL, (size_t)-1), -EINVAL);
    CT_CHECK(cluster_workers(NULL, 0) == 0, "cluster_workers(NULL, 0) = %d", cluster_workers(NULL, 0));

    /* cluster_setup_primary: NULL, size not set, empty exec, invalid UTF-8 cwd. */
    CT_EXPECT_ERR(cluster_setup_primary(NULL), -EINVAL);
    cluster_settings st;
    memset(&st, 0, sizeof st);
    CT_EXPECT_ERR(cluster_setup_primary(&st), -EINVAL);
    CT_CHECK(cluster_settings_init(&st, sizeof st) == 0, "cluster_settings_init: %s", cluster_last_error());
    CT_CHECK(st.size == sizeof st && !st.exec && !st.args && !st.cwd, "cluster_settings_init left fields set");
    st.exec = "";
    CT_EXPECT_ERR(cluster_setup_primary(&st), -EINVAL);
    CT_CHECK(cluster_settings_init(&st, sizeof st) == 0, "cluster_settings_init: %s", cluster_last_error());
    st.size = 0;
    st.exec = "/bin/false"; /* would break the worker round below if it were applied */
    CT_EXPECT_ERR(cluster_setup_primary(&st), -EINVAL);
    CT_CHECK(cluster_settings_init(&st, sizeof st) == 0, "cluster_settings_init: %s", cluster_last_error());
    st.cwd = "\xff\xfe";
    CT_EXPECT_ERR(cluster_setup_primary(&st), -EINVAL);
    /* The fields added later: bad env entries, serialization, scheduling policy, stdio. */
    const char *const settings_env_bad[] = {"NOEQUALS", NULL};
    const char *const settings_env_empty_key[] = {"=x", NULL};
    CT_CHECK(cluster_settings_init(&st, sizeof st) == 0, "cluster_settings_init: %s", cluster_last_error());
    st.env = settings_env_bad;
    CT_EXPECT_ERR(cluster_setup_primary(&st), -EINVAL);
    st.env = settings_env_empty_key;
    CT_EXPECT_ERR(cluster_setup_primary(&st), -EINVAL);
    CT_CHECK(cluster_settings_init(&st, sizeof st) == 0, "cluster_settings_init: %s", cluster_last_error());
    st.serialization = "advanced";
    CT_EXPECT_ERR(cluster_setup_primary(&st), CLUSTER_E_UNSUPPORTED);
    st.serialization = "bogus";
    expect_negative("cluster_setup_primary(serialization \"bogus\")", cluster_setup_primary(&st));
    CT_CHECK(cluster_settings_init(&st, sizeof st) == 0, "cluster_settings_init: %s", cluster_last_error());
    st.sched_policy = 99;
    expect_negative("cluster_setup_primary(sched_policy 99)", cluster_setup_primary(&st));
    st.sched_policy = -1;
    expect_negative("cluster_setup_primary(sched_policy -1)", cluster_setup_primary(&st));
    CT_CHECK(cluster_settings_init(&st, sizeof st) == 0, "cluster_settings_init: %s", cluster_last_error());
    const int stdio_bad[3] = {-4, CLUSTER_STDIO_INHERIT, CLUSTER_STDIO_INHERIT};
    st.stdio = stdio_bad;
    expect_negative("cluster_setup_primary(stdio[0] = -4)", cluster_setup_primary(&st));
    CT_CHECK(cluster_settings_init(&st, sizeof st) == 0, "cluster_settings_init: %s", cluster_last_error());
    st.size = 1; /* smaller than the size field itself */
    CT_EXPECT_ERR(cluster_setup_primary(&st), -EINVAL);

    /* A valid call that changes nothing. */
    CT_CHECK(cluster_settings_init(&st, sizeof st) == 0 && cluster_setup_primary(&st) == 0,
             "cluster_setup_primary(all NULL) failed: %s", cluster_last_error());

    /* The loop calls with nothing to do: no worker, no event. */
    CT_CHECK(cluster_dispatch() == 0, "cluster_dispatch() with no events = %d", cluster_dispatch());
    CT_CHECK(cluster_stop() == 0, "cluster_stop() failed: %s", cluster_last_error());
    CT_CHECK(cluster_run() == 0, "cluster_run() with no workers must return 0 at once");
    cluster_event ev;
    memset(&ev, 0xab, sizeof ev);
    int rc = cluster_poll_event(&ev, 0);
    CT_CHECK(rc == 0, "cluster_poll_event(&ev, 0) with nothing pending = %d", rc);
    /* The header documents CLUSTER_EVENT_NONE as "No event (cluster_poll_event timed out)". */
    CT_BUG_CHECK(ev.kind == CLUSTER_EVENT_NONE,
             "cluster_poll_event timed out but left ev.kind = %d, not CLUSTER_EVENT_NONE", (int)ev.kind);

    /* cluster_disconnect with no worker: returns 0, its callback runs from dispatch with a
     * NULL event. */
    disconnect_cb_ran = 0;
    CT_CHECK(cluster_disconnect(on_disconnected, &disconnect_cb_ran) == 0, "cluster_disconnect(): %s",
             cluster_last_error());
    CT_CHECK(cluster_dispatch() >= 0, "cluster_dispatch: %s", cluster_last_error());
    CT_CHECK(disconnect_cb_ran == 1, "cluster_disconnect's callback ran %d times (expected once, with a "
             "NULL event)", disconnect_cb_ran);
    CT_CHECK(cluster_disconnect(NULL, NULL) == 0, "cluster_disconnect(NULL, NULL): %s", cluster_last_error());
    CT_CHECK(cluster_dispatch() >= 0, "cluster_dispatch: %s", cluster_last_error());

    /* A UDP server cannot accept. */
    cluster_server_options uopts;
    cluster_server_options_init(&uopts, sizeof uopts);
    uopts.udp = 1;
    cluster_server *us = NULL;
    CT_CHECK(cluster_get_server(&us, "127.0.0.1", 0, &uopts) == 0 && us, "UDP cluster_get_server in the primary: %s",
             cluster_last_error());
    CT_EXPECT_ERR(cluster_accept(us), -EOPNOTSUPP);
    CT_CHECK(cluster_server_close(us) == 0, "cluster_server_close(udp) failed");

    /* A server in the primary itself (bound here): non-blocking accept with nothing waiting. */
    cluster_server_options opts;
    cluster_server_options_init(&opts, sizeof opts);
    opts.nonblocking = 1;
    cluster_server *s = NULL;
    CT_CHECK(cluster_get_server(&s, "127.0.0.1", 0, &opts) == 0 && s, "cluster_get_server in the primary: %s",
             cluster_last_error());
    CT_CHECK(cluster_server_port(s) > 0, "cluster_server_port = %d", cluster_server_port(s));
    CT_CHECK(cluster_server_fd(s) > 2, "cluster_server_fd = %d", cluster_server_fd(s));
    CT_EXPECT_ERR(cluster_accept(s), -EAGAIN);
    CT_CHECK(cluster_server_close(s) == 0, "cluster_server_close failed");

    /* A plain fork() of the primary: every call must refuse with CLUSTER_E_FORKED
     * (house style P2). Done before any worker exists, while we have no other thread. */
    pid_t child = fork();
    CT_CHECK(child >= 0, "fork: %s", strerror(errno));
    if (child == 0) {
        int a = cluster_worker_count(), b = cluster_fork(NULL), c = cluster_event_fd();
        if (a != CLUSTER_E_FORKED || b != CLUSTER_E_FORKED || c != CLUSTER_E_FORKED) {
            fprintf(stderr, "FAIL null_sweep (forked child): worker_count=%d fork=%d event_fd=%d, "
                            "expected CLUSTER_E_FORKED (%d)\n", a, b, c, CLUSTER_E_FORKED);
            _exit(1);
        }
        _exit(cluster_last_error()[0] ? 0 : 2);
    }
    int status = 0;
    CT_CHECK(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
    CT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "in a plain fork() of the primary, cluster calls did not all fail with CLUSTER_E_FORKED "
             "and a message (status 0x%x)", status);
}

/* Primary-only calls in a worker, and worker calls with bad arguments. The worker's verdict
 * (its failed bug checks) is the text of the connection it serves afterwards. */
static void sweep_worker(void) {
    CT_CHECK(cluster_is_worker() == 1, "cluster_is_worker() = %d in a worker", cluster_is_worker());
    CT_CHECK(cluster_is_primary() == 0, "cluster_is_primary() = %d in a worker", cluster_is_primary());
    CT_CHECK(cluster_worker_id() == 1, "cluster_worker_id() = %d, expected 1", cluster_worker_id());

    /* Keep a buggy cluster_fork from recursing: a grandchild would see this and exit. */
    setenv("NS_ROLE", "grandchild", 1);
    int id = cluster_fork(NULL);
    CT_CHECK(id == CLUSTER_E_WRONG_ROLE, "cluster_fork in a worker = %d, expected CLUSTER_E_WRONG_ROLE", id);
    check_text("cluster_last_error() after cluster_fork in a worker", cluster_last_error());
    CT_EXPECT_ERR(cluster_kill(1, 0), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_worker_count(), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_workers(NULL, 0), CLUSTER_E_WRONG_ROLE);
    int ids[4];
    CT_EXPECT_ERR(cluster_workers(ids, 4), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_worker_pid(1), CLUSTER_E_WRONG_ROLE);
    cluster_settings st;
    cluster_settings_init(&st, sizeof st);
    CT_EXPECT_ERR(cluster_setup_primary(&st), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_setup_primary(NULL), -EINVAL);
    CT_EXPECT_ERR(cluster_disconnect_worker(1), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_close_channel(1), CLUSTER_E_WRONG_ROLE);
    int kc = cluster_worker_keep_channel(0); /* a worker may choose (0: the default) */
    CT_CHECK(kc == 0, "cluster_worker_keep_channel(0) in a worker: %d", kc);
    CT_EXPECT_ERR(cluster_allow_bind(NULL, -2), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_disconnect(NULL, NULL), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_worker_get_state(1), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_worker_is_dead(1), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_worker_exited_after_disconnect(1), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_worker_stdio(1, 1), CLUSTER_E_WRONG_ROLE);
    expect_negative("cluster_worker_is_connected(1) in a worker", cluster_worker_is_connected(1));
    CT_CHECK(cluster_worker_is_connected(0) == 1, "cluster_worker_is_connected(0) in a worker = %d",
             cluster_worker_is_connected(0));
    /* cluster_send from a worker: only to 0 (the primary), only valid, unreserved JSON. */
    expect_negative("cluster_send(1, ...) in a worker", cluster_send(1, "{}", -1));
    expect_negative("cluster_send(-1, ...) in a worker", cluster_send(-1, "{}", -1));
    CT_EXPECT_ERR(cluster_send(0, NULL, -1), -EINVAL);
    CT_EXPECT_ERR(cluster_send(0, "{not json", -1), -EINVAL);
    CT_EXPECT_ERR(cluster_send(0, "", -1), -EINVAL);
    CT_EXPECT_ERR(cluster_send(0, "{\"cmd\":\"NODE_CLUSTER\"}", -1), -EINVAL);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int rc = cluster_send(0, "{}", devnull);
    expect_negative("cluster_send(0, \"{}\", /dev/null fd)", rc);
    CT_BUG_CHECK(rc == -EINVAL, "cluster_send(0, \"{}\", fd of /dev/null) = %d (%s), header documents -EINVAL "
                 "for \"an fd that is not such a socket\"", rc, cluster_strerror(rc));
    close(devnull);
    /* Supervision in a worker: readiness and draining are its calls; the primary's fail. */
    CT_CHECK(cluster_worker_ready() == 0, "cluster_worker_ready in a worker: %s", cluster_last_error());
    CT_CHECK(cluster_worker_draining() == 0, "cluster_worker_draining before any drain = %d", cluster_worker_draining());
    CT_CHECK(cluster_handle_signal(SIGHUP) == CLUSTER_E_WRONG_ROLE, "cluster_handle_signal in a worker");
    CT_EXPECT_ERR(cluster_install_signal_handlers(), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_systemd(CLUSTER_SYSTEMD_NOTIFY), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_systemd(99), -EINVAL);
    CT_EXPECT_ERR(cluster_listen_fds(), CLUSTER_E_WRONG_ROLE);
    CT_CHECK(cluster_set_quick_exit(0) == 0, "cluster_set_quick_exit(0) in a worker");
    CT_EXPECT_ERR(cluster_agent_listen(NULL, 0), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_agent_listen("127.0.0.1", 0), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_upgrade(NULL), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_is_upgrade(), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_upgrade_options_init(NULL, 0), -EINVAL);
    CT_EXPECT_ERR(cluster_rolling_restart(0), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_stats_json(NULL, 0), CLUSTER_E_WRONG_ROLE);
    CT_CHECK(cluster_dispatch() >= 0, "cluster_dispatch() in a worker failed: %s", cluster_last_error());
}

static int worker_main(void) {
    if (strcmp(getenv("NS_ROLE") ? getenv("NS_ROLE") : "", "grandchild") == 0)
        return 0; /* only reached if cluster_fork wrongly worked in a worker */
    sweep_errors();
    sweep_common();
    sweep_worker();

    /* The failures above must not have broken the channel: a real server works. */
    cluster_server *s = NULL;
    int rc = cluster_get_server(&s, "127.0.0.1", 0, NULL);
    CT_CHECK(rc == 0 && s != NULL, "cluster_get_server after the sweep = %d: %s", rc, cluster_last_error());
    for (;;) {
        int c = cluster_accept(s);
        CT_CHECK(c >= 0, "cluster_accept: %d %s", c, cluster_last_error());
        /* Failed hard checks exit early; failed bug checks are counted and reported. */
        char verdict[64];
        snprintf(verdict, sizeof verdict, ct_bugs ? "%d library bug check(s) failed\n" : "ok\n", ct_bugs);
        ct_write_all(c, verdict);
        close(c);
    }
}

int main(void) {
    ct_init("null_sweep");
    /* Before anything failed, the last error is an empty string, never NULL. */
    const char *le = cluster_last_error();
    CT_CHECK(le != NULL && le[0] == '\0', "cluster_last_error() before any failure = \"%s\"", le ? le : "(NULL)");
    if (!cluster_is_primary())
        return worker_main();

    sweep_errors();
    sweep_common();
    sweep_primary();

    /* The worker round: the worker sweeps its side, then listens and answers "ok". */
    const char *const env[] = {"NS_ROLE=worker", NULL};
    int id = ct_fork(env);
    CT_CHECK(id == 1, "first worker id = %d, expected 1", id);
    int port = -1;
    cluster_event ev;
    while (port < 0) {
        ct_next_event(&ev);
        CT_CHECK(ev.kind != CLUSTER_EVENT_EXIT && ev.kind != CLUSTER_EVENT_DISCONNECT,
                 "the worker quit before listening (%s event): its sweep failed, see its stderr",
                 ct_kind_name((int)ev.kind));
        if (ev.kind == CLUSTER_EVENT_LISTENING)
            port = ev.port;
    }
    /* Bad signal numbers against a live worker: -EINVAL. */
    int bad_signals[] = {-1, 65, 99, 1000, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof bad_signals / sizeof bad_signals[0]; i++)
        CT_EXPECT_ERR(cluster_kill(id, bad_signals[i]), -EINVAL);
    CT_CHECK(cluster_kill(id, 0) == 0, "cluster_kill(live, 0) failed: %s", cluster_last_error());
    /* cluster_send to a live worker: NULL, invalid or reserved JSON, an fd that is no socket. */
    CT_EXPECT_ERR(cluster_send(id, NULL, -1), -EINVAL);
    CT_EXPECT_ERR(cluster_send(id, "{not json", -1), -EINVAL);
    CT_EXPECT_ERR(cluster_send(id, "", -1), -EINVAL);
    CT_EXPECT_ERR(cluster_send(id, "{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\"}", -1), -EINVAL);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int rc = cluster_send(id, "{}", devnull);
    expect_negative("cluster_send(live, \"{}\", /dev/null fd)", rc);
    CT_BUG_CHECK(rc == -EINVAL, "cluster_send(%d, \"{}\", fd of /dev/null) = %d (%s), header documents -EINVAL "
                 "for \"an fd that is not such a socket\"", id, rc, cluster_strerror(rc));
    close(devnull);
    expect_negative("cluster_send(live, \"{}\", closed fd)", cluster_send(id, "{}", 1000000));
    /* Its stdio is inherited, so there is no pipe to hand out; bad stream numbers. */
    CT_EXPECT_ERR(cluster_worker_stdio(id, 1), -ENOENT);
    CT_EXPECT_ERR(cluster_worker_stdio(id, -1), -EINVAL);
    CT_EXPECT_ERR(cluster_worker_stdio(id, 3), -ENOENT);
    CT_EXPECT_ERR(cluster_worker_stdio(id, 64), -EINVAL);
    CT_CHECK(cluster_worker_get_state(id) == CLUSTER_WORKER_LISTENING, "cluster_worker_get_state(live) = %d",
             cluster_worker_get_state(id));
    CT_CHECK(cluster_worker_is_connected(id) == 1 && cluster_worker_is_dead(id) == 0 &&
                 cluster_worker_exited_after_disconnect(id) == 0,
             "live worker: is_connected %d is_dead %d exited_after_disconnect %d", cluster_worker_is_connected(id),
             cluster_worker_is_dead(id), cluster_worker_exited_after_disconnect(id));
    CT_CHECK(cluster_worker_pid(id) > 0, "cluster_worker_pid(live) failed: %s", cluster_last_error());
    int ids[4] = {0};
    CT_CHECK(cluster_workers(ids, 0) == 1, "cluster_workers(ids, 0) must count the one worker");
    CT_CHECK(ids[0] == 0, "cluster_workers(ids, 0) wrote to ids");

    char buf[256];
    ct_fetch(port, NULL, buf, sizeof buf);
    CT_BUG_CHECK(strcmp(buf, "ok\n") == 0, "the worker's sweep: %s", buf);

    CT_CHECK(cluster_kill(id, SIGKILL) == 0, "cluster_kill(SIGKILL): %s", cluster_last_error());
    for (;;) {
        ct_next_event(&ev);
        if (ev.kind == CLUSTER_EVENT_EXIT)
            break;
    }
    CT_CHECK(ev.signal == SIGKILL, "worker exit: signal %d, code %d", ev.signal, ev.exit_code);
    /* Dead and gone: its id is unknown again. */
    CT_EXPECT_ERR(cluster_kill(id, SIGTERM), -ESRCH);
    rc = cluster_kill(id, 99); /* dead worker and bad signal: either error */
    CT_CHECK(rc == -ESRCH || rc == -EINVAL, "cluster_kill(dead, 99) = %d", rc);
    check_text("cluster_last_error() after cluster_kill(dead, 99)", cluster_last_error());
    rc = cluster_worker_pid(id);
    CT_BUG_CHECK(rc == -ESRCH, "cluster_worker_pid(%d) of a dead worker = %d, expected -ESRCH (header: "
                 "\"-ESRCH (not in the table)\"; cluster_worker_count() is %d)", id, rc, cluster_worker_count());
    CT_EXPECT_ERR(cluster_send(id, "{}", -1), -ESRCH);
    CT_EXPECT_ERR(cluster_disconnect_worker(id), -ESRCH);
    CT_EXPECT_ERR(cluster_close_channel(id), -ESRCH);
    CT_EXPECT_ERR(cluster_worker_keep_channel(1), CLUSTER_E_WRONG_ROLE);
    /* Gone, and its stdout never was a pipe: -ESRCH or -ENOENT. */
    expect_negative("cluster_worker_stdio(dead, 1)", cluster_worker_stdio(id, 1));
    /* Its state stays queryable: dead. */
    CT_CHECK(cluster_worker_get_state(id) == CLUSTER_WORKER_DEAD && cluster_worker_is_dead(id) == 1 &&
                 cluster_worker_is_connected(id) == 0,
             "dead worker: state %d is_dead %d is_connected %d", cluster_worker_get_state(id),
             cluster_worker_is_dead(id), cluster_worker_is_connected(id));
    CT_CHECK(cluster_worker_count() == 0, "cluster_worker_count() = %d at the end", cluster_worker_count());

    /* Supervision: bad structs, ids, actions and signals; the worker-only calls. */
    CT_EXPECT_ERR(cluster_supervisor_init(NULL, 0), -EINVAL);
    {
        cluster_supervisor sup;
        CT_EXPECT_ERR(cluster_supervisor_init(&sup, 4), -EINVAL);
        CT_EXPECT_ERR(cluster_supervise(NULL), -EINVAL);
        CT_CHECK(cluster_supervisor_init(&sup, sizeof sup) == 0, "cluster_supervisor_init: %s", cluster_last_error());
        CT_CHECK(sup.size == sizeof sup && sup.workers == 0 && sup.drain_timeout_ms > 0 && sup.max_surge == 1,
                 "cluster_supervisor_init: size %zu workers %d drain %d surge %d", sup.size, sup.workers,
                 sup.drain_timeout_ms, sup.max_surge);
        cluster_supervisor bad = sup;
        bad.size = 0;
        CT_EXPECT_ERR(cluster_supervise(&bad), -EINVAL);
        bad = sup;
        bad.max_surge = 0;
        CT_EXPECT_ERR(cluster_supervise(&bad), -EINVAL);
        bad = sup;
        bad.ready_on = 99;
        CT_EXPECT_ERR(cluster_supervise(&bad), -EINVAL);
        bad = sup;
        bad.workers = -1;
        CT_EXPECT_ERR(cluster_supervise(&bad), -EINVAL);
        bad = sup;
        bad.backoff_base_ms = 0;
        CT_EXPECT_ERR(cluster_supervise(&bad), -EINVAL);
        bad = sup;
        bad.drain_delay_ms = -1;
        CT_EXPECT_ERR(cluster_supervise(&bad), -EINVAL);
        CT_CHECK(sup.drain_delay_ms == 0, "cluster_supervisor_init: drain_delay_ms %d", sup.drain_delay_ms);
        /* A caller compiled before drain_delay_ms (a smaller size) is still accepted. */
        cluster_supervisor old;
        CT_CHECK(cluster_supervisor_init(&old, offsetof(cluster_supervisor, drain_delay_ms)) == 0,
                 "cluster_supervisor_init with the first version's size: %s", cluster_last_error());
    }
    /* The agent check: bad addresses and ports; a good one gives its port. */
    CT_EXPECT_ERR(cluster_agent_listen("not an ip", 0), -EINVAL);
    CT_EXPECT_ERR(cluster_agent_listen("\xff\xfe", 0), -EINVAL);
    CT_EXPECT_ERR(cluster_agent_listen(NULL, -1), -EINVAL);
    CT_EXPECT_ERR(cluster_agent_listen("127.0.0.1", 65536), -EINVAL);
    CT_EXPECT_ERR(cluster_agent_listen("127.0.0.1", INT_MIN), -EINVAL);
    rc = cluster_agent_listen("127.0.0.1", 0);
    CT_CHECK(rc > 0 && rc <= 65535, "cluster_agent_listen(127.0.0.1, 0) = %d: %s", rc, cluster_last_error());
    expect_negative("cluster_agent_listen on a port in use", cluster_agent_listen("127.0.0.1", rc));
    CT_CHECK(cluster_listen_fds() == 0, "cluster_listen_fds without LISTEN_PID: %s", cluster_last_error());
    CT_CHECK(cluster_set_quick_exit(0) == 0, "cluster_set_quick_exit(0)");
    CT_EXPECT_ERR(cluster_systemd(-1), -EINVAL);
    CT_EXPECT_ERR(cluster_systemd(CLUSTER_SYSTEMD_ALL + 1), -EINVAL);
    if (!getenv("NOTIFY_SOCKET"))
        CT_CHECK(cluster_systemd(CLUSTER_SYSTEMD_ALL) == 0, "cluster_systemd without NOTIFY_SOCKET: %s", cluster_last_error());
    CT_CHECK(cluster_systemd(0) == 0, "cluster_systemd(0): %s", cluster_last_error());
    /* Hot upgrade: bad options are refused before anything starts (a valid call would start
     * this program again as a new primary). */
    CT_CHECK(cluster_is_upgrade() == 0, "cluster_is_upgrade in a primary nobody upgraded = %d", cluster_is_upgrade());
    CT_EXPECT_ERR(cluster_upgrade_options_init(NULL, 0), -EINVAL);
    {
        cluster_upgrade_options uo;
        CT_EXPECT_ERR(cluster_upgrade_options_init(&uo, 1), -EINVAL);
        CT_CHECK(cluster_upgrade_options_init(&uo, sizeof uo) == 0, "cluster_upgrade_options_init: %s", cluster_last_error());
        CT_CHECK(uo.size == sizeof uo && uo.ready_timeout_ms == 60000, "upgrade defaults: size %zu timeout %d", uo.size,
                 uo.ready_timeout_ms);
        cluster_upgrade_options bad = uo;
        bad.size = 0;
        CT_EXPECT_ERR(cluster_upgrade(&bad), -EINVAL);
        bad = uo;
        bad.ready_timeout_ms = -1;
        CT_EXPECT_ERR(cluster_upgrade(&bad), -EINVAL);
    }
    CT_EXPECT_ERR(cluster_rolling_restart(-1), -EINVAL);
    CT_EXPECT_ERR(cluster_scale(0), -EINVAL);
    CT_EXPECT_ERR(cluster_scale(-5), -EINVAL);
    CT_EXPECT_ERR(cluster_drain_worker(0), -ESRCH);
    CT_EXPECT_ERR(cluster_drain_worker(id), -ESRCH);
    CT_EXPECT_ERR(cluster_control(99), -EINVAL);
    CT_EXPECT_ERR(cluster_control(-1), -EINVAL);
    CT_CHECK(cluster_breaker_reset() == 0, "cluster_breaker_reset: %s", cluster_last_error());
    {
        cluster_worker_stats ws;
        cluster_stats cs;
        CT_EXPECT_ERR(cluster_worker_stats_get(1, NULL, sizeof ws), -EINVAL);
        CT_EXPECT_ERR(cluster_worker_stats_get(1, &ws, 4), -EINVAL);
        CT_EXPECT_ERR(cluster_worker_stats_get(0, &ws, sizeof ws), -ESRCH);
        CT_EXPECT_ERR(cluster_worker_stats_get(9999, &ws, sizeof ws), -ESRCH);
        /* The gone worker keeps its figures: alive 0, nothing handed or lost. */
        CT_CHECK(cluster_worker_stats_get(id, &ws, sizeof ws) == 0 && ws.alive == 0 && ws.worker_id == id &&
                     ws.handed == ws.received + ws.queued + ws.rerouted + ws.lost && ws.lost == 0,
                 "stats of the dead worker: %s", cluster_last_error());
        CT_EXPECT_ERR(cluster_stats_get(NULL, sizeof cs), -EINVAL);
        CT_EXPECT_ERR(cluster_stats_get(&cs, 4), -EINVAL);
        CT_CHECK(cluster_stats_get(&cs, sizeof cs) == 0 && cs.workers == 0 && cs.target == 0 && cs.generation == 1,
                 "cluster_stats_get: workers %d target %d generation %d", cs.workers, cs.target, cs.generation);
    }
    CT_EXPECT_ERR(cluster_stats_json(NULL, 16), -EINVAL);
    {
        int need = cluster_stats_json(NULL, 0);
        char small[8], big[65536];
        CT_CHECK(need > 10, "cluster_stats_json(NULL, 0) = %d", need);
        CT_CHECK(cluster_stats_json(small, sizeof small) == need && small[7] == '\0' && small[0] == '{',
                 "cluster_stats_json into 8 bytes");
        CT_CHECK(cluster_stats_json(big, sizeof big) == need && (int)strlen(big) == need, "cluster_stats_json whole");
    }
    CT_EXPECT_ERR(cluster_worker_ready(), CLUSTER_E_WRONG_ROLE);
    CT_EXPECT_ERR(cluster_worker_draining(), CLUSTER_E_WRONG_ROLE);
    /* No last error from the handler-safe call: only its result. */
    CT_CHECK(cluster_handle_signal(0) == -EINVAL, "cluster_handle_signal(0)");
    CT_CHECK(cluster_handle_signal(64) == -EINVAL, "cluster_handle_signal(64)");
    CT_CHECK(cluster_handle_signal(-1) == -EINVAL, "cluster_handle_signal(-1)");
    CT_EXPECT_ERR(cluster_signal_map(0, CLUSTER_ACT_RELOAD), -EINVAL);
    CT_EXPECT_ERR(cluster_signal_map(SIGHUP, 99), -EINVAL);
    CT_CHECK(cluster_signal_map(SIGUSR1, CLUSTER_ACT_NONE) == 0 && cluster_signal_map(SIGUSR1, -1) == 0,
             "cluster_signal_map: %s", cluster_last_error());
    {
        struct sigaction before, during, after;
        sigaction(SIGHUP, NULL, &before);
        CT_CHECK(cluster_install_signal_handlers() == 0, "install: %s", cluster_last_error());
        sigaction(SIGHUP, NULL, &during);
        CT_CHECK(cluster_restore_signal_handlers() == 0, "restore: %s", cluster_last_error());
        sigaction(SIGHUP, NULL, &after);
        CT_CHECK(during.sa_handler != before.sa_handler && after.sa_handler == before.sa_handler,
                 "the HUP handler was not installed then restored");
    }

    return ct_done();
}
