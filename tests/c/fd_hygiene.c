/* fd hygiene (house style 16 ii, P3; tokio#3809, node#43650): no fd leaks into workers,
 * every library fd is close-on-exec, and a scenario leaves no fd behind.
 *
 * Primary: records /proc/self/fd before its first cluster call (S0). Scenario 1 forks one
 * worker, serves a connection, kills it and waits for its EXIT; the fds then (S1) minus S0
 * are the library's long-lived set. Scenario 2 forks two more workers, serves six
 * connections, kills both and waits for both EXITs; the fd set (S2) must equal S1 exactly.
 * While workers run and after each scenario, every fd not in S0 must be close-on-exec.
 *
 * Which fds may outlive a scenario (S1 \ S0): those the library creates once per process
 * and keeps on purpose, all anonymous inodes, never per worker:
 *   - the event queue's eventfd (cluster_event_fd), created on the first cluster call;
 *   - the distributor's wake-up eventfd and its epoll fd, created with the first fork.
 * Everything per worker (its channel socket, its pidfd, the round-robin listening socket,
 * connections in flight) must be closed by the time its EXIT event is delivered, because
 * the worker is gone from the table by then. So S1 \ S0 may hold only eventfds and epoll
 * fds, and S2 == S1: a leak per worker or per connection shows up as a difference.
 *
 * Worker: before its first cluster call, it may hold only 0, 1, 2, the channel on 3 and
 * what the primary itself inherited without close-on-exec (FH_INHERITED, e.g. a jobserver
 * pipe from the test runner): anything else leaked from the primary through exec. After
 * start-up and on every accepted connection, every fd except 0, 1, 2 and the inherited ones
 * is close-on-exec (the channel on fd 3 included: the library sets it), the connection fd
 * is close-on-exec and blocking, and the worker's fd set does not grow from one connection
 * to the next. The worker answers each connection with "ok" or "FAIL: <reasons>". */
#include "ctest.h"

#define CONNS_SCENARIO2 6

static int s0[CT_MAX_FDS], ns0;

/* ---- worker ---- */

static char reasons[2048];

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...) {
    size_t len = strlen(reasons);
    if (len + 4 >= sizeof reasons)
        return;
    if (len)
        strcat(reasons, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reasons + strlen(reasons), sizeof reasons - strlen(reasons), fmt, ap);
    va_end(ap);
}

static int inherited[64], ninherited;

static void parse_inherited(void) {
    const char *s = getenv("FH_INHERITED");
    while (s && *s && ninherited < 64) {
        inherited[ninherited++] = atoi(s);
        s = strchr(s, ',');
        if (s)
            s++;
    }
}

/* Every fd except 0-2, the inherited ones and `except` must be close-on-exec. */
static void check_all_cloexec(const char *when, int except) {
    int fds[CT_MAX_FDS];
    int n = ct_list_fds(fds, CT_MAX_FDS);
    for (int i = 0; i < n; i++) {
        int fd = fds[i];
        if (fd <= 2 || fd == except || ct_contains(inherited, ninherited, fd))
            continue;
        if (ct_is_cloexec(fd) == 0) {
            char t[128];
            ct_fd_target(fd, t, sizeof t);
            note("%s: fd %d (%s) is not close-on-exec", when, fd, t);
        }
    }
}

static int worker_main(void) {
    parse_inherited();
    /* s0 was listed before the first cluster call: what exec gave us. */
    int have3 = 0;
    for (int i = 0; i < ns0; i++) {
        int fd = s0[i];
        if (fd == 3)
            have3 = 1;
        if (fd <= 3 || ct_contains(inherited, ninherited, fd))
            continue;
        char t[128];
        ct_fd_target(fd, t, sizeof t);
        note("fd %d (%s) leaked from the primary into the worker through exec", fd, t);
    }
    if (!have3)
        note("the channel fd 3 was not open at start-up");

    CT_CHECK(cluster_worker_id() > 0, "cluster_worker_id: %s", cluster_last_error());
    check_all_cloexec("after start-up", -1);

    cluster_server *s = NULL;
    int rc = cluster_get_server(&s, "127.0.0.1", 0, NULL);
    CT_CHECK(rc == 0 && s, "cluster_get_server: %d %s", rc, cluster_last_error());
    check_all_cloexec("after cluster_get_server", -1);

    int first[CT_MAX_FDS], nfirst = -1;
    for (int conn = 0;; conn++) {
        int c = cluster_accept(s);
        CT_CHECK(c >= 0, "cluster_accept: %d %s", c, cluster_last_error());
        if (ct_is_cloexec(c) != 1)
            note("connection %d: accepted fd %d is not close-on-exec", conn, c);
        int fl = fcntl(c, F_GETFL);
        if (fl < 0 || (fl & O_NONBLOCK))
            note("connection %d: accepted fd is non-blocking (flags 0x%x) on a blocking server", conn, fl);
        check_all_cloexec("with a connection open", c);

        /* The fd set, without the connection, must not change between connections. */
        int fds[CT_MAX_FDS], n = ct_list_fds(fds, CT_MAX_FDS), m = 0;
        for (int i = 0; i < n; i++)
            if (fds[i] != c)
                fds[m++] = fds[i];
        if (nfirst < 0) {
            memcpy(first, fds, sizeof(int) * (size_t)m);
            nfirst = m;
        } else if (m != nfirst || memcmp(first, fds, sizeof(int) * (size_t)m) != 0) {
            note("connection %d: the worker holds %d fds besides the connection, %d at the first one", conn, m,
                 nfirst);
        }

        char out[sizeof reasons + 16];
        snprintf(out, sizeof out, "%s", reasons[0] ? "FAIL: " : "ok");
        if (reasons[0])
            strcat(out, reasons);
        ct_write_all(c, out);
        close(c);
    }
}

/* ---- primary ---- */

/* Every fd not in S0 must be close-on-exec. */
static void primary_check_cloexec(const char *when) {
    int fds[CT_MAX_FDS];
    int n = ct_list_fds(fds, CT_MAX_FDS);
    for (int i = 0; i < n; i++) {
        if (ct_contains(s0, ns0, fds[i]))
            continue;
        char t[128];
        ct_fd_target(fds[i], t, sizeof t);
        CT_CHECK(ct_is_cloexec(fds[i]) == 1, "%s: primary fd %d (%s) is not close-on-exec", when, fds[i], t);
    }
}

static void print_fds(const char *label, const int *fds, int n) {
    printf("fd_hygiene: %s:", label);
    for (int i = 0; i < n; i++) {
        char t[128];
        ct_fd_target(fds[i], t, sizeof t);
        printf(" %d=%s", fds[i], t);
    }
    printf("\n");
}

/* Forks `n` workers, waits until all listen; returns the shared port. */
static int start_workers(const char *const *env, int n, int *ids) {
    for (int i = 0; i < n; i++)
        ids[i] = ct_fork(env);
    int listening = 0, port = 0;
    cluster_event ev;
    while (listening < n) {
        ct_next_event(&ev);
        CT_CHECK(ev.kind != CLUSTER_EVENT_EXIT && ev.kind != CLUSTER_EVENT_DISCONNECT,
                 "worker %d quit (exit code %d) before listening: see its stderr", ev.worker_id, ev.exit_code);
        if (ev.kind == CLUSTER_EVENT_LISTENING) {
            CT_CHECK(!port || port == ev.port, "workers listen on different ports");
            port = ev.port;
            listening++;
        }
    }
    return port;
}

static void kill_and_wait(const int *ids, int n) {
    for (int i = 0; i < n; i++)
        CT_CHECK(cluster_kill(ids[i], SIGKILL) == 0, "cluster_kill(%d): %s", ids[i], cluster_last_error());
    int exited = 0;
    cluster_event ev;
    while (exited < n) {
        ct_next_event(&ev);
        if (ev.kind == CLUSTER_EVENT_EXIT)
            exited++;
    }
    CT_CHECK(cluster_worker_count() == 0, "cluster_worker_count() = %d after every EXIT", cluster_worker_count());
}

static void fetch_ok(int port, int n) {
    char buf[4096];
    ct_fetch(port, NULL, buf, sizeof buf);
    CT_CHECK(strncmp(buf, "ok", 2) == 0, "connection %d, worker says: %s", n, buf);
}

int main(void) {
    /* Before anything else, and before the first cluster call. */
    ns0 = ct_list_fds(s0, CT_MAX_FDS);
    ct_init("fd_hygiene");
    if (!cluster_is_primary())
        return worker_main();

    print_fds("before the first cluster call (S0)", s0, ns0);
    /* What our workers inherit besides 0-2 and the channel: our own non-close-on-exec fds. */
    char env_inh[512] = "FH_INHERITED=";
    for (int i = 0; i < ns0; i++)
        if (s0[i] > 2 && ct_is_cloexec(s0[i]) == 0)
            snprintf(env_inh + strlen(env_inh), sizeof env_inh - strlen(env_inh), "%d,", s0[i]);
    const char *const env[] = {env_inh, NULL};

    /* Scenario 1: one worker, one connection. */
    int ids[3];
    int port = start_workers(env, 1, ids);
    primary_check_cloexec("scenario 1, worker listening");
    fetch_ok(port, 0);
    kill_and_wait(ids, 1);

    int s1[CT_MAX_FDS], ns1 = ct_list_fds(s1, CT_MAX_FDS);
    print_fds("after scenario 1 (S1)", s1, ns1);
    primary_check_cloexec("after scenario 1");
    for (int i = 0; i < ns1; i++) {
        if (ct_contains(s0, ns0, s1[i]))
            continue;
        char t[128];
        ct_fd_target(s1[i], t, sizeof t);
        CT_CHECK(strcmp(t, "anon_inode:[eventfd]") == 0 || strcmp(t, "anon_inode:[eventpoll]") == 0,
                 "after its worker is gone, the primary still holds fd %d (%s): only the library's eventfds "
                 "and epoll fd may stay", s1[i], t);
    }

    /* Scenario 2: two workers, several connections. */
    port = start_workers(env, 2, ids + 1);
    primary_check_cloexec("scenario 2, workers listening");
    for (int n = 0; n < CONNS_SCENARIO2; n++)
        fetch_ok(port, n);
    primary_check_cloexec("scenario 2, after the connections");
    kill_and_wait(ids + 1, 2);

    int s2[CT_MAX_FDS], ns2 = ct_list_fds(s2, CT_MAX_FDS);
    print_fds("after scenario 2 (S2)", s2, ns2);
    primary_check_cloexec("after scenario 2");
    CT_CHECK(ns2 == ns1 && memcmp(s1, s2, sizeof(int) * (size_t)ns1) == 0,
             "the primary's fds changed across scenario 2: %d fds after scenario 1, %d after (see the lists "
             "above)", ns1, ns2);
    return ct_done();
}
