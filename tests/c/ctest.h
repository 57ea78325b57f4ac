/* Helpers shared by the C tests in tests/c (each test is one standalone program that is
 * both the primary and, re-executed by cluster_fork, its workers).
 *
 * Rules every test follows:
 *  - alarm(30) first, so no test can hang (the Rust harness also kills it after 60 s);
 *  - the primary records every worker it forks (ct_track) and ct_fail() kills them all
 *    (cluster_kill SIGKILL) before exiting non-zero, so failure paths leave nothing behind;
 *  - listen on 127.0.0.1 port 0 only; no assertion depends on timing, only on order and
 *    counts (timeouts exist only to turn a hang into a clear failure).
 *
 * Everything is `static inline` so a test that does not use a helper gets no
 * -Wunused-function error under -Wall -Werror. */
#ifndef LIBCLUSTER_CTEST_H
#define LIBCLUSTER_CTEST_H

#include <cluster.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CT_MAX_IDS 64
#define CT_MAX_FDS 1024
/* How long a test waits for one expected event before it calls it a failure. */
#define CT_EVENT_TIMEOUT_MS 15000

static const char *ct_name = "ctest";
static int ct_ids[CT_MAX_IDS];
static int ct_nids;

static inline void ct_on_alarm(int sig) {
    static const char msg[] = "FAIL: alarm(30) fired: the test hung (see the last output above)\n";
    (void)sig;
    (void)!write(2, msg, sizeof msg - 1);
    _exit(124); /* workers follow through the channel EOF and PR_SET_PDEATHSIG */
}

/* Names the test in failure messages; call first in main(). Arms alarm(30), with a handler
 * that says so on stderr. */
static inline void ct_init(const char *name) {
    ct_name = name;
    signal(SIGALRM, ct_on_alarm);
    alarm(30);
    setvbuf(stdout, NULL, _IOLBF, 0);
}

static inline const char *ct_role(void) {
    return cluster_is_primary() ? "primary" : "worker";
}

/* Remembers a worker id so ct_fail() kills it. */
static inline void ct_track(int id) {
    if (id > 0 && ct_nids < CT_MAX_IDS)
        ct_ids[ct_nids++] = id;
}

/* Kills (SIGKILL) every worker this primary forked; errors (already dead) are ignored. */
static inline void ct_kill_all(void) {
    if (!cluster_is_primary())
        return;
    for (int i = 0; i < ct_nids; i++)
        (void)cluster_kill(ct_ids[i], SIGKILL);
}

__attribute__((noreturn, format(printf, 1, 2))) static inline void ct_fail(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "FAIL %s (%s %d): %s\n", ct_name, ct_role(), (int)getpid(), msg);
    fflush(NULL);
    ct_kill_all();
    exit(1);
}

/* A check that found a library bug (reported, with a reproduction, in the commit that added
 * it): printed at once, and the program still runs its other checks but exits 1 at the end
 * (ct_done), so the test keeps failing until the bug is fixed. */
static int ct_bugs;
#define CT_BUG_CHECK(cond, ...)                                          \
    do {                                                                 \
        if (!(cond)) {                                                   \
            fprintf(stderr, "FAIL %s (%s %d), library bug: ", ct_name,   \
                    ct_role(), (int)getpid());                           \
            fprintf(stderr, __VA_ARGS__);                                \
            fputc('\n', stderr);                                         \
            ct_bugs++;                                                   \
        }                                                                \
    } while (0)

/* The end of a test (primary or worker): 0 unless a CT_BUG_CHECK failed. */
static inline int ct_done(void) {
    if (ct_bugs) {
        fprintf(stderr, "FAIL %s (%s %d): %d library bug check(s) failed, see above\n", ct_name,
                ct_role(), (int)getpid(), ct_bugs);
        return 1;
    }
    printf("%s (%s): ok\n", ct_name, ct_role());
    return 0;
}

#define CT_CHECK(cond, ...)          \
    do {                             \
        if (!(cond))                 \
            ct_fail(__VA_ARGS__);    \
    } while (0)

/* A negative return code with a non-empty cluster_last_error(); `what` names the call. */
#define CT_EXPECT_ERR(call, want)                                                           \
    do {                                                                                    \
        int ct_rc_ = (call);                                                                \
        const char *ct_msg_ = cluster_last_error();                                         \
        CT_CHECK(ct_rc_ == (want), "%s returned %d, expected %d (%s); last error: %s", #call, \
                 ct_rc_, (int)(want), #want, ct_msg_ ? ct_msg_ : "(NULL)");                 \
        CT_CHECK(ct_msg_ != NULL && ct_msg_[0] != '\0',                                     \
                 "%s failed (%d) but cluster_last_error() is empty", #call, ct_rc_);        \
    } while (0)

static inline long long ct_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline const char *ct_kind_name(int kind) {
    static const char *const names[] = {"NONE",       "FORK",      "ONLINE",  "LISTENING", "MESSAGE",
                                        "DISCONNECT", "EXIT",      "ERROR",   "DISCONNECT_REQUESTED",
                                        "READY",      "DRAINING",  "RESPAWN", "BREAKER",   "ROLLOUT",
                                        "STUCK",      "RECYCLE",   "CONTROL", "UPGRADE"};
    return kind >= 0 && kind < (int)(sizeof names / sizeof names[0]) ? names[kind] : "?";
}

static inline void ct_print_event(const cluster_event *ev) {
    printf("%s: event %s worker=%d pid=%d exit_code=%d signal=%d ead=%d port=%d "
           "address_type=%d fd=%d error=%d address=%s data=%s\n",
           ct_name, ct_kind_name((int)ev->kind), ev->worker_id, ev->pid, ev->exit_code,
           ev->signal, ev->exited_after_disconnect, ev->port, ev->address_type, ev->fd,
           ev->error, ev->address ? ev->address : "(null)", ev->data ? ev->data : "(null)");
}

/* The next event (printed to stdout); fails after CT_EVENT_TIMEOUT_MS. An ERROR event is
 * always a failure: none of the tests provokes one. */
static inline void ct_next_event(cluster_event *ev) {
    int rc = cluster_poll_event(ev, CT_EVENT_TIMEOUT_MS);
    CT_CHECK(rc >= 0, "cluster_poll_event: %d %s", rc, cluster_last_error());
    CT_CHECK(rc == 1, "no event within %d ms", CT_EVENT_TIMEOUT_MS);
    ct_print_event(ev);
    CT_CHECK(ev->kind != CLUSTER_EVENT_ERROR, "unexpected ERROR event: %d %s", ev->error,
             ev->data ? ev->data : "");
    for (size_t i = 0; i < sizeof ev->reserved / sizeof ev->reserved[0]; i++)
        CT_CHECK(ev->reserved[i] == 0, "event reserved[%zu] = %d, documented as always 0", i, ev->reserved[i]);
}

/* Forks a worker with `env` (NULL-terminated, may be NULL) and tracks it. */
static inline int ct_fork(const char *const *env) {
    int id = cluster_fork(env);
    CT_CHECK(id > 0, "cluster_fork: %d %s", id, cluster_last_error());
    ct_track(id);
    return id;
}

/* Connects to 127.0.0.1:port, sends `req` (may be NULL), reads until EOF into buf
 * (NUL-terminated). Returns the length; fails on any error. */
static inline size_t ct_fetch(int port, const char *req, char *buf, size_t len) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CT_CHECK(s >= 0, "socket: %s", strerror(errno));
    struct timeval tv = {10, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CT_CHECK(connect(s, (struct sockaddr *)&sa, sizeof sa) == 0, "connect 127.0.0.1:%d: %s", port,
             strerror(errno));
    if (req) {
        size_t n = strlen(req);
        CT_CHECK(write(s, req, n) == (ssize_t)n, "write request: %s", strerror(errno));
    }
    size_t got = 0;
    for (;;) {
        CT_CHECK(got + 1 < len, "response too long");
        ssize_t n = read(s, buf + got, len - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        CT_CHECK(n >= 0, "read from 127.0.0.1:%d: %s", port, strerror(errno));
        if (n == 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    close(s);
    return got;
}

/* Writes all of `s` to fd; returns 0 or -1. */
static inline int ct_write_all(int fd, const char *s) {
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t n = write(fd, s + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

static inline int ct_cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The fds open in this process (sorted), without the directory fd used to list them. */
static inline int ct_list_fds(int *out, int max) {
    DIR *d = opendir("/proc/self/fd");
    CT_CHECK(d != NULL, "opendir /proc/self/fd: %s", strerror(errno));
    int self = dirfd(d), n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        int fd = atoi(e->d_name);
        if (fd == self)
            continue;
        CT_CHECK(n < max, "more than %d fds open", max);
        out[n++] = fd;
    }
    closedir(d);
    qsort(out, (size_t)n, sizeof *out, ct_cmp_int);
    return n;
}

static inline int ct_contains(const int *set, int n, int fd) {
    for (int i = 0; i < n; i++)
        if (set[i] == fd)
            return 1;
    return 0;
}

/* 1 if FD_CLOEXEC is set, 0 if not, -1 if fd is not open. */
static inline int ct_is_cloexec(int fd) {
    int f = fcntl(fd, F_GETFD);
    return f < 0 ? -1 : (f & FD_CLOEXEC) != 0;
}

/* What /proc/self/fd/<fd> points at ("socket:[123]", "anon_inode:[eventfd]", ...). */
static inline void ct_fd_target(int fd, char *buf, size_t len) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, buf, len - 1);
    buf[n < 0 ? 0 : n] = '\0';
    if (n < 0)
        snprintf(buf, len, "(readlink: %s)", strerror(errno));
}

#endif /* LIBCLUSTER_CTEST_H */
