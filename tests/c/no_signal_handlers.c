/* libcluster installs no signal handler and changes no signal mask unless the program asks
 * (house style P5; include/cluster.h, cluster_handle_signal).
 *
 * The primary records its disposition of every signal 1..31 (handler, flags, mask) and its
 * own signal mask, then runs a whole life cycle: cluster_fork of 2 workers (each listens on
 * 127.0.0.1:0 and serves "<pid>\n" until the primary disconnects it, then exits 0), a fetch
 * from each port, cluster_disconnect, cluster_run until no worker is left. The table and the
 * mask must be exactly as recorded, mid-life (workers running, the library's threads
 * started) and afterwards. Each worker checks the same of itself around cluster_get_server
 * and serving.
 *
 * Then the opt-in: cluster_install_signal_handlers() must change HUP, TTIN, TTOU, TERM and
 * INT (and nothing else, and not the mask), and cluster_restore_signal_handlers() must put
 * every disposition back as recorded. No signal is raised: the primary has no worker left
 * to act on. */
#include "ctest.h"

#include <pthread.h>

#define LAST_SIG 31

struct snapshot {
    struct sigaction act[LAST_SIG + 1]; /* by signal number; [0] unused */
    sigset_t mask;
};

static void take(struct snapshot *s) {
    memset(s, 0, sizeof *s);
    for (int sig = 1; sig <= LAST_SIG; sig++)
        CT_CHECK(sigaction(sig, NULL, &s->act[sig]) == 0, "sigaction(%d, NULL, &old): %s", sig, strerror(errno));
    int rc = pthread_sigmask(SIG_BLOCK, NULL, &s->mask);
    CT_CHECK(rc == 0, "pthread_sigmask: %s", strerror(rc));
}

static int same_set(const sigset_t *a, const sigset_t *b) {
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(a, sig) != sigismember(b, sig))
            return 0;
    return 1;
}

/* glibc's sigaction() adds SA_RESTORER (its return trampoline) to every disposition it
 * installs, so a disposition put back through sigaction() reads back with it even where the
 * original (the kernel's default, never installed) had none. It is libc's bookkeeping, not
 * part of what the program chose: left out of the comparison. */
#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif

static int same_action(const struct sigaction *a, const struct sigaction *b) {
    if ((a->sa_flags & ~SA_RESTORER) != (b->sa_flags & ~SA_RESTORER) || !same_set(&a->sa_mask, &b->sa_mask))
        return 0;
    if (a->sa_flags & SA_SIGINFO)
        return a->sa_sigaction == b->sa_sigaction;
    return a->sa_handler == b->sa_handler;
}

static int is_opt_in_signal(int sig) {
    return sig == SIGHUP || sig == SIGTTIN || sig == SIGTTOU || sig == SIGTERM || sig == SIGINT || sig == SIGUSR2;
}

/* Fails (naming `when`) unless `now` equals `then`: every disposition and the mask. */
static void expect_same(const struct snapshot *then, const struct snapshot *now, const char *when) {
    for (int sig = 1; sig <= LAST_SIG; sig++)
        CT_CHECK(same_action(&then->act[sig], &now->act[sig]),
                 "%s: the disposition of signal %d (%s) changed (flags %#x -> %#x)", when, sig, strsignal(sig),
                 (unsigned)then->act[sig].sa_flags, (unsigned)now->act[sig].sa_flags);
    CT_CHECK(same_set(&then->mask, &now->mask), "%s: the signal mask changed", when);
}

static int worker_main(void) {
    struct snapshot before, after;
    take(&before);
    cluster_server *s = NULL;
    int rc = cluster_get_server(&s, "127.0.0.1", 0, NULL);
    CT_CHECK(rc == 0 && s, "cluster_get_server: %d %s", rc, cluster_last_error());
    take(&after);
    expect_same(&before, &after, "worker, after cluster_get_server");
    char line[32];
    snprintf(line, sizeof line, "%d\n", (int)getpid());
    for (;;) {
        int c = cluster_accept(s);
        if (c == -EBADF)
            break; /* the primary disconnected us */
        CT_CHECK(c >= 0, "cluster_accept: %d %s", c, cluster_last_error());
        ct_write_all(c, line);
        close(c);
    }
    cluster_server_close(s);
    take(&after);
    expect_same(&before, &after, "worker, after serving and its disconnect");
    return ct_done();
}

static int ports[3];
static int listening, exits, bad_exits;

static void on_listening(const cluster_event *ev, void *userdata) {
    (void)userdata;
    ct_print_event(ev);
    if (ev->worker_id >= 1 && ev->worker_id <= 2)
        ports[ev->worker_id] = ev->port;
    listening++;
}

static void on_exit_cb(const cluster_event *ev, void *userdata) {
    (void)userdata;
    ct_print_event(ev);
    exits++;
    if (ev->exit_code != 0 || ev->signal != 0)
        bad_exits++;
}

static void on_error(const cluster_event *ev, void *userdata) {
    (void)userdata;
    ct_print_event(ev);
    ct_fail("unexpected ERROR event: %d %s", ev->error, ev->data ? ev->data : "");
}

int main(void) {
    ct_init("no_signal_handlers"); /* its SIGALRM handler is part of the recorded table */
    if (!cluster_is_primary())
        return worker_main();

    struct snapshot before, now;
    take(&before);
    int rc;

    CT_CHECK(cluster_on_listening(on_listening, NULL) == 0, "cluster_on_listening: %s", cluster_last_error());
    CT_CHECK(cluster_on_exit(on_exit_cb, NULL) == 0, "cluster_on_exit: %s", cluster_last_error());
    CT_CHECK(cluster_on(CLUSTER_EVENT_ERROR, on_error, NULL) == 0, "cluster_on(ERROR): %s", cluster_last_error());
    ct_fork(NULL);
    ct_fork(NULL);

    /* Both listen (callbacks run in cluster_dispatch, on this thread). */
    int efd = cluster_event_fd();
    CT_CHECK(efd >= 0, "cluster_event_fd: %s", cluster_last_error());
    long long deadline = ct_now_ms() + CT_EVENT_TIMEOUT_MS;
    while (listening < 2) {
        CT_CHECK(ct_now_ms() < deadline, "workers did not both listen (%d did)", listening);
        struct pollfd p = {efd, POLLIN, 0};
        if (poll(&p, 1, 1000) < 0 && errno != EINTR)
            ct_fail("poll: %s", strerror(errno));
        CT_CHECK(cluster_dispatch() >= 0, "cluster_dispatch: %s", cluster_last_error());
    }
    char buf[64];
    for (int id = 1; id <= 2; id++) {
        ct_fetch(ports[id], NULL, buf, sizeof buf);
        CT_CHECK(atoi(buf) > 0, "worker %d answered %s", id, buf);
    }
    take(&now);
    expect_same(&before, &now, "primary, with 2 workers serving");

    rc = cluster_disconnect(NULL, NULL);
    CT_CHECK(rc == 2, "cluster_disconnect() = %d, expected 2: %s", rc, cluster_last_error());
    rc = cluster_run();
    CT_CHECK(rc == 0, "cluster_run() = %d: %s", rc, cluster_last_error());
    CT_CHECK(cluster_worker_count() == 0, "cluster_worker_count() = %d after cluster_run", cluster_worker_count());
    CT_CHECK(exits == 2 && bad_exits == 0, "%d EXIT events, %d not exit code 0", exits, bad_exits);
    take(&now);
    expect_same(&before, &now, "primary, after the life cycle");

    /* The opt-in changes exactly its five signals, never the mask, and restores them all. */
    CT_CHECK(cluster_install_signal_handlers() == 0, "cluster_install_signal_handlers: %s", cluster_last_error());
    take(&now);
    for (int sig = 1; sig <= LAST_SIG; sig++) {
        if (is_opt_in_signal(sig))
            CT_CHECK(!same_action(&before.act[sig], &now.act[sig]) && now.act[sig].sa_handler != SIG_DFL &&
                         now.act[sig].sa_handler != SIG_IGN,
                     "cluster_install_signal_handlers left signal %d (%s) as it was", sig, strsignal(sig));
        else
            CT_CHECK(same_action(&before.act[sig], &now.act[sig]),
                     "cluster_install_signal_handlers changed signal %d (%s), not one of its five", sig, strsignal(sig));
    }
    CT_CHECK(same_set(&before.mask, &now.mask), "cluster_install_signal_handlers changed the signal mask");
    CT_CHECK(cluster_restore_signal_handlers() == 0, "cluster_restore_signal_handlers: %s", cluster_last_error());
    take(&now);
    expect_same(&before, &now, "primary, after cluster_restore_signal_handlers");
    return ct_done();
}
