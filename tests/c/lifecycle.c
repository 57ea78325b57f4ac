/* Worker lifecycle and callbacks through the C API.
 *
 * Worker behaviour is chosen by LC_MODE, passed through cluster_fork's env array:
 *   exit7     checks its role and cluster_worker_id() (== LC_EXPECT_ID), that the NODE_*
 *             variables are gone from its environment, then exits with code 7;
 *   forkfail  calls cluster_fork(), which must fail with CLUSTER_E_WRONG_ROLE, and reports
 *             success by exiting with code 42;
 *   serve     listens on 127.0.0.1:0 and answers each connection with "<pid>\n";
 *   idle      starts (online) and waits to be killed.
 * Any failed check in a worker exits 1 with a message on stderr.
 *
 * Phase A (own poll loop + cluster_dispatch): workers 1 (exit7) and 2 (forkfail). Checks the
 * EXIT payloads (7 / 42, signal 0), DISCONNECT before EXIT, that callbacks run only inside
 * cluster_dispatch, on the calling thread, with their userdata, that cluster_on replaces an
 * earlier callback, and that cluster_poll_event does not run callbacks.
 * Phase B (cluster_run): workers 3 (serve) and 4 (idle). The LISTENING callback fetches from
 * the port; once worker 3 listens and worker 4 is online, a callback calls cluster_stop(),
 * which must make cluster_run() return while both workers are still alive. Then both are killed and cluster_run() must return by itself once no
 * worker is left, having run every EXIT callback (signal 15 / 9, exit_code -1).
 * Phase C: the same guarantee, repeated: CYCLES times, fork a worker that exits at once and
 * call cluster_run(); its EXIT callback must have run when cluster_run() returns. (A single
 * round hit a race in 0.1% to 3% of runs: cluster_run saw an empty worker table before the
 * EXIT event was queued, and returned without it.) */
#include "ctest.h"

#define MAXW 8
#define CYCLES 3000

struct wstate {
    int pid;
    int fork_at, online_at, listening_at, disconnect_at, exit_at; /* order stamps, 0 = not seen */
    int exit_code, signal, ead, port, fetched_pid;
};

struct state {
    pid_t main_tid;
    int seq;                    /* order stamp of the last callback */
    int calls[CLUSTER_EVENT_COUNT];
    int wrong_thread, wrong_userdata, replaced_cb_ran;
    int stop_when_ready; /* phase B: cluster_stop() once worker 3 listens and 4 is online */
    struct wstate w[MAXW + 1];  /* by worker id */
};

static struct state st;

static struct wstate *ws_of(const cluster_event *ev) {
    CT_CHECK(ev->worker_id >= 1 && ev->worker_id <= MAXW, "event for unexpected worker id %d", ev->worker_id);
    return &st.w[ev->worker_id];
}

/* Common prologue of every callback: thread, userdata, counting. */
static struct wstate *enter(const cluster_event *ev, void *userdata, cluster_event_type kind) {
    ct_print_event(ev);
    if (gettid() != st.main_tid)
        st.wrong_thread++;
    if (userdata != &st)
        st.wrong_userdata++;
    CT_CHECK(ev->kind == kind, "callback for %s got a %s event", ct_kind_name((int)kind),
             ct_kind_name((int)ev->kind));
    st.calls[kind]++;
    st.seq++;
    struct wstate *w = ws_of(ev);
    CT_CHECK(w->pid == 0 || w->pid == ev->pid, "worker %d: pid %d, earlier %d", ev->worker_id, ev->pid, w->pid);
    w->pid = ev->pid;
    return w;
}

static void on_fork_replaced(const cluster_event *ev, void *userdata) {
    (void)ev;
    (void)userdata;
    st.replaced_cb_ran++;
}

static void on_fork(const cluster_event *ev, void *userdata) {
    struct wstate *w = enter(ev, userdata, CLUSTER_EVENT_FORK);
    CT_CHECK(!w->fork_at, "worker %d forked twice", ev->worker_id);
    w->fork_at = st.seq;
}

/* Phase B: stop cluster_run from inside a callback once both workers are up. */
static void maybe_stop(void) {
    if (st.stop_when_ready && st.w[3].listening_at && st.w[4].online_at) {
        st.stop_when_ready = 0;
        CT_CHECK(cluster_stop() == 0, "cluster_stop in a callback failed: %s", cluster_last_error());
    }
}

static void on_online(const cluster_event *ev, void *userdata) {
    struct wstate *w = enter(ev, userdata, CLUSTER_EVENT_ONLINE);
    CT_CHECK(!w->online_at, "worker %d online twice", ev->worker_id);
    w->online_at = st.seq;
    maybe_stop();
}

static void on_listening(const cluster_event *ev, void *userdata) {
    struct wstate *w = enter(ev, userdata, CLUSTER_EVENT_LISTENING);
    CT_CHECK(!w->listening_at, "worker %d listening twice", ev->worker_id);
    w->listening_at = st.seq;
    w->port = ev->port;
    /* A callback may call into the library and block on its own I/O. */
    char buf[64];
    ct_fetch(ev->port, NULL, buf, sizeof buf);
    w->fetched_pid = atoi(buf);
    maybe_stop();
}

static void on_disconnect(const cluster_event *ev, void *userdata) {
    struct wstate *w = enter(ev, userdata, CLUSTER_EVENT_DISCONNECT);
    CT_CHECK(!w->disconnect_at, "worker %d disconnected twice", ev->worker_id);
    w->disconnect_at = st.seq;
}

static void on_exit_cb(const cluster_event *ev, void *userdata) {
    struct wstate *w = enter(ev, userdata, CLUSTER_EVENT_EXIT);
    CT_CHECK(!w->exit_at, "worker %d exited twice", ev->worker_id);
    w->exit_at = st.seq;
    w->exit_code = ev->exit_code;
    w->signal = ev->signal;
    w->ead = ev->exited_after_disconnect;
}

static void on_error(const cluster_event *ev, void *userdata) {
    (void)userdata;
    ct_print_event(ev);
    ct_fail("unexpected ERROR event: %d %s", ev->error, ev->data ? ev->data : "");
}

static int quick_exits, quick_bad;

static void on_quick_exit(const cluster_event *ev, void *userdata) {
    if (gettid() != st.main_tid || userdata != &st)
        st.wrong_thread++;
    if (ev->kind != CLUSTER_EVENT_EXIT || ev->exit_code != 3 || ev->signal != 0)
        quick_bad++;
    quick_exits++;
}

/* ---- workers ---- */

static int worker_main(void) {
    const char *mode = getenv("LC_MODE");
    mode = mode ? mode : "";
    if (strcmp(mode, "grandchild") == 0)
        return 0; /* only reached if cluster_fork wrongly worked in a worker */
    CT_CHECK(cluster_is_worker() == 1 && cluster_is_primary() == 0, "worker role: is_worker %d, is_primary %d",
             cluster_is_worker(), cluster_is_primary());
    int id = cluster_worker_id();
    CT_CHECK(id >= 1, "cluster_worker_id() in a worker = %d: %s", id, cluster_last_error());
    if (strcmp(mode, "exit7") == 0) {
        const char *want = getenv("LC_EXPECT_ID");
        CT_CHECK(want && id == atoi(want), "cluster_worker_id() = %d, expected %s", id, want ? want : "?");
        CT_CHECK(cluster_worker_id() == id, "cluster_worker_id() changed");
        CT_CHECK(!getenv("NODE_UNIQUE_ID") && !getenv("NODE_CHANNEL_FD"),
                 "NODE_UNIQUE_ID / NODE_CHANNEL_FD still in the worker's environment after start-up");
        exit(7);
    }
    if (strcmp(mode, "forkfail") == 0) {
        setenv("LC_MODE", "grandchild", 1); /* a wrongly forked grandchild exits at once */
        int rc = cluster_fork(NULL);
        CT_CHECK(rc == CLUSTER_E_WRONG_ROLE, "cluster_fork() in a worker = %d, expected CLUSTER_E_WRONG_ROLE",
                 rc);
        CT_CHECK(cluster_last_error()[0] != '\0', "cluster_fork() in a worker failed without a message");
        exit(42);
    }
    if (strcmp(mode, "serve") == 0) {
        cluster_server *s = NULL;
        int rc = cluster_get_server(&s, "127.0.0.1", 0, NULL);
        CT_CHECK(rc == 0 && s, "cluster_get_server: %d %s", rc, cluster_last_error());
        char line[32];
        snprintf(line, sizeof line, "%d\n", (int)getpid());
        for (;;) {
            int c = cluster_accept(s);
            CT_CHECK(c >= 0, "cluster_accept: %d %s", c, cluster_last_error());
            ct_write_all(c, line);
            close(c);
        }
    }
    if (strcmp(mode, "quick") == 0)
        exit(3);
    if (strcmp(mode, "idle") == 0)
        for (;;)
            pause();
    ct_fail("unknown LC_MODE \"%s\"", mode);
}

/* ---- primary ---- */

static void check_order(int id, int want_online, int want_listening) {
    struct wstate *w = &st.w[id];
    CT_CHECK(w->fork_at > 0, "worker %d: no FORK callback", id);
    if (want_online)
        CT_CHECK(w->online_at > w->fork_at, "worker %d: ONLINE missing or before FORK", id);
    if (want_listening)
        CT_CHECK(w->listening_at > w->online_at, "worker %d: LISTENING missing or before ONLINE", id);
    else
        CT_CHECK(w->listening_at == 0, "worker %d: unexpected LISTENING", id);
    CT_CHECK(w->disconnect_at > w->online_at, "worker %d: DISCONNECT missing or before ONLINE", id);
    CT_CHECK(w->exit_at > w->disconnect_at, "worker %d: EXIT missing or before DISCONNECT (%d, %d)", id,
             w->exit_at, w->disconnect_at);
}

int main(void) {
    ct_init("lifecycle");
    if (!cluster_is_primary())
        return worker_main();

    memset(&st, 0, sizeof st);
    st.main_tid = gettid();
    CT_EXPECT_ERR(cluster_worker_id(), CLUSTER_E_WRONG_ROLE);

    CT_CHECK(cluster_on_fork(on_fork_replaced, &st) == 0, "cluster_on_fork: %s", cluster_last_error());
    CT_CHECK(cluster_on_fork(on_fork, &st) == 0, "cluster_on_fork: %s", cluster_last_error());
    CT_CHECK(cluster_on_online(on_online, &st) == 0, "cluster_on_online: %s", cluster_last_error());
    CT_CHECK(cluster_on_listening(on_listening, &st) == 0, "cluster_on_listening: %s", cluster_last_error());
    CT_CHECK(cluster_on_exit(on_exit_cb, &st) == 0, "cluster_on_exit: %s", cluster_last_error());
    CT_CHECK(cluster_on(CLUSTER_EVENT_DISCONNECT, on_disconnect, &st) == 0, "cluster_on(DISCONNECT): %s",
             cluster_last_error());
    CT_CHECK(cluster_on(CLUSTER_EVENT_ERROR, on_error, &st) == 0, "cluster_on(ERROR): %s", cluster_last_error());

    /* ---- Phase A: cluster_dispatch from our own poll loop ---- */
    const char *const env_exit7[] = {"LC_MODE=exit7", "LC_EXPECT_ID=1", NULL};
    int a = ct_fork(env_exit7);
    CT_CHECK(a == 1, "first worker id = %d", a);

    /* The pull API takes an event without running its callback. */
    cluster_event ev;
    ct_next_event(&ev);
    CT_CHECK(ev.kind == CLUSTER_EVENT_FORK && ev.worker_id == 1, "first event is not worker 1's FORK");
    CT_CHECK(st.calls[CLUSTER_EVENT_FORK] == 0, "cluster_poll_event ran the FORK callback");
    st.w[1].pid = ev.pid;
    st.w[1].fork_at = ++st.seq;

    const char *const env_forkfail[] = {"LC_MODE=forkfail", NULL};
    int b = ct_fork(env_forkfail);
    CT_CHECK(b == 2, "second worker id = %d", b);

    /* Callbacks never run on a library thread: wait until events are pending, then check
     * that nothing ran before we dispatch. */
    int efd = cluster_event_fd();
    CT_CHECK(efd >= 0, "cluster_event_fd: %s", cluster_last_error());
    struct pollfd p = {efd, POLLIN, 0};
    CT_CHECK(poll(&p, 1, CT_EVENT_TIMEOUT_MS) == 1, "event fd not readable after a fork");
    for (int k = 0; k < CLUSTER_EVENT_COUNT; k++)
        CT_CHECK(st.calls[k] == 0, "a %s callback ran before cluster_dispatch", ct_kind_name(k));

    long long deadline = ct_now_ms() + 2 * CT_EVENT_TIMEOUT_MS;
    while (!st.w[1].exit_at || !st.w[2].exit_at) {
        CT_CHECK(ct_now_ms() < deadline, "phase A: workers 1 and 2 did not both exit");
        p.revents = 0;
        if (poll(&p, 1, 1000) < 0 && errno != EINTR)
            ct_fail("poll: %s", strerror(errno));
        int n = cluster_dispatch();
        CT_CHECK(n >= 0, "cluster_dispatch: %d %s", n, cluster_last_error());
    }
    CT_CHECK(st.replaced_cb_ran == 0, "a replaced FORK callback still ran");
    CT_CHECK(!st.wrong_thread, "%d callbacks ran on another thread", st.wrong_thread);
    CT_CHECK(!st.wrong_userdata, "%d callbacks got the wrong userdata", st.wrong_userdata);
    check_order(1, 1, 0);
    check_order(2, 1, 0);
    CT_CHECK(st.w[1].exit_code == 7 && st.w[1].signal == 0,
             "worker 1 (exit7): EXIT exit_code %d signal %d, expected 7 and 0 (exit code 1: see its stderr)",
             st.w[1].exit_code, st.w[1].signal);
    CT_CHECK(st.w[1].ead == 0, "worker 1: exited_after_disconnect %d", st.w[1].ead);
    CT_CHECK(st.w[2].exit_code == 42 && st.w[2].signal == 0,
             "worker 2 (forkfail): EXIT exit_code %d signal %d, expected 42 (cluster_fork in a worker "
             "returned CLUSTER_E_WRONG_ROLE) and 0; exit code 1: see its stderr",
             st.w[2].exit_code, st.w[2].signal);
    CT_CHECK(cluster_worker_count() == 0, "cluster_worker_count() = %d after phase A", cluster_worker_count());

    /* ---- Phase B: cluster_run, stopped from a callback ---- */
    const char *const env_serve[] = {"LC_MODE=serve", NULL};
    const char *const env_idle[] = {"LC_MODE=idle", NULL};
    st.stop_when_ready = 1;
    int c = ct_fork(env_serve);
    int d = ct_fork(env_idle);
    CT_CHECK(c == 3 && d == 4, "worker ids %d, %d, expected 3, 4", c, d);
    int rc = cluster_run();
    CT_CHECK(rc == 0, "cluster_run() = %d: %s", rc, cluster_last_error());
    CT_CHECK(st.w[3].listening_at && st.w[4].online_at,
             "cluster_run() returned before worker 3's LISTENING or worker 4's ONLINE callback");
    CT_CHECK(st.w[3].fetched_pid == st.w[3].pid, "worker 3 answered pid %d, its FORK said %d",
             st.w[3].fetched_pid, st.w[3].pid);
    CT_CHECK(!st.w[3].exit_at && !st.w[4].exit_at, "a phase B worker exited early");
    CT_CHECK(cluster_worker_count() == 2, "cluster_worker_count() = %d after cluster_stop, expected 2",
             cluster_worker_count());
    CT_CHECK(cluster_kill(c, 0) == 0 && cluster_kill(d, 0) == 0, "phase B workers not alive after cluster_stop");

    /* Kill both; cluster_run must now return by itself, after running every callback. */
    CT_CHECK(cluster_kill(c, SIGTERM) == 0, "cluster_kill(%d, SIGTERM): %s", c, cluster_last_error());
    CT_CHECK(cluster_kill(d, SIGKILL) == 0, "cluster_kill(%d, SIGKILL): %s", d, cluster_last_error());
    rc = cluster_run();
    CT_CHECK(rc == 0, "cluster_run() = %d: %s", rc, cluster_last_error());
    CT_BUG_CHECK(st.w[3].exit_at && st.w[4].exit_at,
                 "cluster_run() returned with no worker left before running the EXIT callbacks "
                 "(worker 3: %d, worker 4: %d)", st.w[3].exit_at, st.w[4].exit_at);
    /* Collect what cluster_run left behind, if anything, to check the payloads anyway. */
    while (!st.w[3].exit_at || !st.w[4].exit_at) {
        p.revents = 0;
        CT_CHECK(poll(&p, 1, CT_EVENT_TIMEOUT_MS) == 1, "phase B: EXIT events never came");
        cluster_dispatch();
    }
    check_order(3, 1, 1);
    check_order(4, 1, 0);
    CT_CHECK(st.w[3].signal == SIGTERM && st.w[3].exit_code == -1, "worker 3: EXIT exit_code %d signal %d",
             st.w[3].exit_code, st.w[3].signal);
    CT_CHECK(st.w[4].signal == SIGKILL && st.w[4].exit_code == -1, "worker 4: EXIT exit_code %d signal %d",
             st.w[4].exit_code, st.w[4].signal);
    CT_CHECK(!st.wrong_thread && !st.wrong_userdata, "callbacks on another thread (%d) or bad userdata (%d)",
             st.wrong_thread, st.wrong_userdata);
    CT_CHECK(st.calls[CLUSTER_EVENT_FORK] == 3 && st.calls[CLUSTER_EVENT_ONLINE] == 4 &&
                 st.calls[CLUSTER_EVENT_LISTENING] == 1 && st.calls[CLUSTER_EVENT_DISCONNECT] == 4 &&
                 st.calls[CLUSTER_EVENT_EXIT] == 4,
             "callback counts fork %d online %d listening %d disconnect %d exit %d", st.calls[CLUSTER_EVENT_FORK],
             st.calls[CLUSTER_EVENT_ONLINE], st.calls[CLUSTER_EVENT_LISTENING], st.calls[CLUSTER_EVENT_DISCONNECT],
             st.calls[CLUSTER_EVENT_EXIT]);
    CT_CHECK(cluster_worker_count() == 0, "cluster_worker_count() = %d after phase B", cluster_worker_count());

    /* ---- Phase C: cluster_run returns only after the last EXIT callback, every time ---- */
    cluster_on_fork(NULL, NULL);
    cluster_on_online(NULL, NULL);
    cluster_on_listening(NULL, NULL);
    cluster_on(CLUSTER_EVENT_DISCONNECT, NULL, NULL);
    CT_CHECK(cluster_on_exit(on_quick_exit, &st) == 0, "cluster_on_exit: %s", cluster_last_error());
    const char *const env_quick[] = {"LC_MODE=quick", NULL};
    int early = 0;
    int cycles = getenv("LC_CYCLES") ? atoi(getenv("LC_CYCLES")) : CYCLES;
    for (int i = 0; i < cycles; i++) {
        int before = quick_exits;
        int id = cluster_fork(env_quick);
        CT_CHECK(id > 0, "cluster_fork (cycle %d): %d %s", i, id, cluster_last_error());
        rc = cluster_run();
        CT_CHECK(rc == 0, "cluster_run() = %d: %s", rc, cluster_last_error());
        if (quick_exits == before) {
            early++;
            /* Let the late EXIT arrive, so the next round starts clean. */
            long long until = ct_now_ms() + CT_EVENT_TIMEOUT_MS;
            while (quick_exits == before && ct_now_ms() < until) {
                p.revents = 0;
                poll(&p, 1, 100);
                cluster_dispatch();
            }
            CT_CHECK(quick_exits == before + 1, "cycle %d: the EXIT event never came", i);
        }
    }
    CT_CHECK(!quick_bad, "%d quick workers did not report EXIT code 3", quick_bad);
    CT_CHECK(!st.wrong_thread, "EXIT callbacks ran on another thread");
    CT_BUG_CHECK(early == 0,
                 "in %d of %d cycles, cluster_run() returned (no worker left) before the worker's EXIT "
                 "event was dispatched; the event was still pending afterwards", early, cycles);
    CT_CHECK(cluster_worker_count() == 0, "cluster_worker_count() = %d at the end", cluster_worker_count());
    return ct_done();
}
