/* Helpers shared by the C ports of Node's test/parallel/test-cluster-*.js (one program per
 * Node test, each both the primary and, re-executed by cluster_fork, its workers).
 *
 * Conventions:
 *  - np_init() first in main(): alarm(30), line-buffered stdout, remembers whether this
 *    process started as a worker (NODE_UNIQUE_ID present) without starting libcluster;
 *  - the primary forks through np_fork(), which remembers every id; np_fail() and
 *    np_finish() kill them all (cluster_kill SIGKILL, errors ignored), so no path leaves a
 *    worker behind; plain child processes (nested primaries, orphaned workers) are
 *    remembered with np_track_pid() and killed with kill(2) by pid;
 *  - no check depends on timing: waits exist only to turn a hang into a clear failure.
 *
 * Everything is static (inline) so unused helpers cost no -Wunused-function error. */
#ifndef NODE_PARALLEL_NP_H
#define NODE_PARALLEL_NP_H

#include <cluster.h>

#include <arpa/inet.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NP_MAX 64
/* How long to wait for one expected event or byte before calling it a failure. */
#define NP_TIMEOUT_MS 15000

static const char *np_name = "np";
static int np_worker_role; /* 1 if NODE_UNIQUE_ID was set when the program started */
static int np_ids[NP_MAX], np_nids;
static volatile pid_t np_pids[NP_MAX];
static volatile int np_npids;

static inline void np_kill_pids(void) {
    for (int i = 0; i < np_npids; i++)
        if (np_pids[i] > 0)
            kill(np_pids[i], SIGKILL);
}

static inline void np_on_alarm(int sig) {
    static const char msg[] = "FAIL: alarm(30) fired: the test hung (see the output above)\n";
    (void)sig;
    (void)!write(2, msg, sizeof msg - 1);
    np_kill_pids(); /* async-signal-safe; cluster workers follow their primary's death */
    _exit(124);
}

static inline void np_init(const char *name) {
    np_name = name;
    np_worker_role = getenv("NODE_UNIQUE_ID") != NULL;
    signal(SIGALRM, np_on_alarm);
    alarm(30);
    setvbuf(stdout, NULL, _IOLBF, 0);
}

static inline const char *np_role(void) {
    return np_worker_role ? "worker" : "primary";
}

/* Remembers a plain child (not a cluster worker of this process) to kill on failure. */
static inline void np_track_pid(pid_t pid) {
    if (pid > 0 && np_npids < NP_MAX)
        np_pids[np_npids++] = pid;
}

static inline void np_untrack_pid(pid_t pid) {
    for (int i = 0; i < np_npids; i++)
        if (np_pids[i] == pid)
            np_pids[i] = 0;
}

/* Kills (SIGKILL) every worker this primary forked and every tracked plain child. */
static inline void np_kill_all(void) {
    if (!np_worker_role)
        for (int i = 0; i < np_nids; i++)
            (void)cluster_kill(np_ids[i], SIGKILL);
    np_kill_pids();
}

__attribute__((noreturn, format(printf, 1, 2))) static inline void np_fail(const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "FAIL %s (%s %d): %s\n", np_name, np_role(), (int)getpid(), msg);
    fflush(NULL);
    np_kill_all();
    exit(1);
}

#define NP_CHECK(cond, ...)       \
    do {                          \
        if (!(cond))              \
            np_fail(__VA_ARGS__); \
    } while (0)

/* The successful end of a program: kills whatever is left (nothing, normally). */
static inline int np_finish(void) {
    np_kill_all();
    printf("%s (%s %d): ok\n", np_name, np_role(), (int)getpid());
    fflush(NULL);
    return 0;
}

static inline const char *np_kind_name(int kind) {
    static const char *const names[] = {"NONE",    "FORK",       "ONLINE", "LISTENING",
                                        "MESSAGE", "DISCONNECT", "EXIT",   "ERROR"};
    return kind >= 0 && kind < CLUSTER_EVENT_COUNT ? names[kind] : "?";
}

static inline const char *np_state_name(int st) {
    static const char *const names[] = {"none", "online", "listening", "disconnected", "dead"};
    return st >= 0 && st <= 4 ? names[st] : "(error)";
}

static inline void np_print_event(const cluster_event *ev) {
    printf("%s (%s %d): %s worker=%d pid=%d exit_code=%d signal=%d ead=%d port=%d "
           "address_type=%d fd=%d error=%d address=%s data=%s\n",
           np_name, np_role(), (int)getpid(), np_kind_name((int)ev->kind), ev->worker_id,
           ev->pid, ev->exit_code, ev->signal, ev->exited_after_disconnect, ev->port,
           ev->address_type, ev->fd, ev->error, ev->address ? ev->address : "(null)",
           ev->data ? ev->data : "(null)");
}

/* Forks a worker with `env` (NULL-terminated, may be NULL) and remembers it. */
static inline int np_fork(const char *const *env) {
    int id = cluster_fork(env);
    NP_CHECK(id > 0, "cluster_fork: %d %s", id, cluster_last_error());
    if (np_nids < NP_MAX)
        np_ids[np_nids++] = id;
    return id;
}

/* Takes the next event, waiting up to timeout_ms. Returns 1 (printed) or 0 on timeout. An
 * ERROR event is a failure: none of these tests provokes one. */
static inline int np_try_event(cluster_event *ev, int timeout_ms) {
    int rc = cluster_poll_event(ev, timeout_ms);
    NP_CHECK(rc >= 0, "cluster_poll_event: %d %s", rc, cluster_last_error());
    if (rc == 0)
        return 0;
    np_print_event(ev);
    NP_CHECK(ev->kind != CLUSTER_EVENT_ERROR, "unexpected ERROR event: %d %s", ev->error,
             ev->data ? ev->data : "");
    return 1;
}

/* The next event; fails if none comes within NP_TIMEOUT_MS. */
static inline void np_next_event(cluster_event *ev) {
    NP_CHECK(np_try_event(ev, NP_TIMEOUT_MS) == 1, "no event within %d ms", NP_TIMEOUT_MS);
}

/* The next event must be `kind` for worker `id` (0: any worker). */
static inline void np_expect(cluster_event *ev, int kind, int id) {
    np_next_event(ev);
    NP_CHECK((int)ev->kind == kind && (id == 0 || ev->worker_id == id),
             "expected %s of worker %d, got %s of worker %d", np_kind_name(kind), id,
             np_kind_name((int)ev->kind), ev->worker_id);
}

/* Waits until cluster_event_fd() or `fd` (if >= 0) is readable. Returns a bit set: 1 for
 * events pending, 2 for fd readable (or hung up); fails after timeout_ms. */
static inline int np_wait(int fd, int timeout_ms) {
    int efd = cluster_event_fd();
    NP_CHECK(efd >= 0, "cluster_event_fd: %d %s", efd, cluster_last_error());
    struct pollfd p[2] = {{efd, POLLIN, 0}, {fd, POLLIN, 0}};
    for (;;) {
        int n = poll(p, fd >= 0 ? 2 : 1, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        NP_CHECK(n >= 0, "poll: %s", strerror(errno));
        NP_CHECK(n > 0, "nothing happened within %d ms", timeout_ms);
        return (p[0].revents ? 1 : 0) | (fd >= 0 && p[1].revents ? 2 : 0);
    }
}

/* A TCP connection to addr:port (IPv4 or IPv6 literal), blocking, with 10 s I/O timeouts. */
static inline int np_connect(const char *addr, int port) {
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((unsigned short)port);
        len = sizeof *a4;
    } else {
        NP_CHECK(inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1, "bad address %s", addr);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((unsigned short)port);
        len = sizeof *a6;
    }
    int s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    NP_CHECK(s >= 0, "socket: %s", strerror(errno));
    struct timeval tv = {10, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    NP_CHECK(connect(s, (struct sockaddr *)&ss, len) == 0, "connect %s:%d: %s", addr, port,
             strerror(errno));
    return s;
}

/* A plain (not clustered) TCP listener on 127.0.0.1:`port` (0: any free port). */
static inline int np_plain_listener(int port, int *bound_port) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    NP_CHECK(s >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    NP_CHECK(bind(s, (struct sockaddr *)&sa, sizeof sa) == 0, "bind 127.0.0.1:%d: %s", port,
             strerror(errno));
    NP_CHECK(listen(s, 16) == 0, "listen: %s", strerror(errno));
    socklen_t len = sizeof sa;
    NP_CHECK(getsockname(s, (struct sockaddr *)&sa, &len) == 0, "getsockname: %s", strerror(errno));
    if (bound_port)
        *bound_port = ntohs(sa.sin_port);
    return s;
}

/* Reads until EOF into buf (NUL-terminated); returns the length. */
static inline size_t np_read_all(int fd, char *buf, size_t len) {
    size_t got = 0;
    for (;;) {
        NP_CHECK(got + 1 < len, "more data than expected");
        ssize_t n = read(fd, buf + got, len - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        NP_CHECK(n >= 0, "read: %s", strerror(errno));
        if (n == 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    return got;
}

static inline int np_write_all(int fd, const char *s) {
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

/* The text of string field `key` in a compact JSON object (libcluster delivers a message as
 * its sender wrote it, minus whitespace outside strings), unescaped only for plain text.
 * Returns 1 if found. */
static inline int np_json_str(const char *json, const char *key, char *out, size_t len) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = json ? strstr(json, pat) : NULL;
    if (!p)
        return 0;
    p += strlen(pat);
    size_t n = 0;
    while (*p && *p != '"' && n + 1 < len)
        out[n++] = *p++;
    out[n] = '\0';
    return *p == '"';
}

/* The value of integer field `key` in a compact JSON object. Returns 1 if found. */
static inline int np_json_int(const char *json, const char *key, long *out) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = json ? strstr(json, pat) : NULL;
    if (!p)
        return 0;
    char *end;
    *out = strtol(p + strlen(pat), &end, 10);
    return end != p + strlen(pat);
}

/* Whether pid names a live (or zombie) process, as Node's common.isAlive (kill(pid, 0)). */
static inline int np_is_alive(pid_t pid) {
    return kill(pid, 0) == 0 || errno != ESRCH;
}

/* Waits (reaping) for child `pid` of this process, up to timeout_ms; a pid that is not (yet)
 * our child (ECHILD: an orphan still on its way to us as subreaper) is waited for too.
 * Returns 1 with *status, 0 on timeout. */
static inline int np_reap(pid_t pid, int *status, int timeout_ms) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 1;
        NP_CHECK(r == 0 || errno == ECHILD || errno == EINTR, "waitpid(%d): %s", (int)pid,
                 strerror(errno));
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long ms = (now.tv_sec - start.tv_sec) * 1000LL + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (ms > timeout_ms)
            return 0;
        usleep(10000);
    }
}

/* Runs this program again as a plain child process (child_process.fork in Node's tests,
 * not a cluster worker) with MODE=`mode` added to the environment and a report pipe: the
 * child finds its write end in NP_REPORT_FD (see np_report); *report_rd gets the read end.
 * The child is tracked (killed on failure). Returns its pid. */
extern char **environ;
#define NP_REPORT_FD_NUM 10
static inline pid_t np_spawn_self(const char *mode, int *report_rd) {
    int p[2];
    NP_CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = calloc(n + 3, sizeof *envp);
    NP_CHECK(envp != NULL, "calloc");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "MODE=", 5) != 0 && strncmp(environ[i], "NP_REPORT_FD=", 13) != 0)
            envp[k++] = environ[i];
    char modevar[128], fdvar[64];
    snprintf(modevar, sizeof modevar, "MODE=%s", mode);
    snprintf(fdvar, sizeof fdvar, "NP_REPORT_FD=%d", NP_REPORT_FD_NUM);
    envp[k++] = modevar;
    envp[k++] = fdvar;
    envp[k] = NULL;
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    NP_CHECK(len > 0, "readlink /proc/self/exe: %s", strerror(errno));
    exe[len] = '\0';
    pid_t pid = fork();
    NP_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Only async-signal-safe calls here: the parent may have library threads. */
        if (dup2(p[1], NP_REPORT_FD_NUM) < 0)
            _exit(127);
        char *argv[] = {exe, NULL};
        execve(exe, argv, envp);
        _exit(127);
    }
    free(envp);
    close(p[1]);
    np_track_pid(pid);
    *report_rd = p[0];
    return pid;
}

/* In a child started by np_spawn_self: the report pipe's write end (close-on-exec, so that
 * the child's own cluster workers do not hold it). */
static inline int np_report_fd(void) {
    const char *v = getenv("NP_REPORT_FD");
    NP_CHECK(v != NULL, "NP_REPORT_FD is not set");
    int fd = atoi(v);
    NP_CHECK(fcntl(fd, F_SETFD, FD_CLOEXEC) == 0, "fcntl(%d): %s", fd, strerror(errno));
    return fd;
}

/* Reads one '\n'-terminated line from fd (without the '\n'); fails on EOF or timeout. */
static inline void np_read_line(int fd, char *buf, size_t len, int timeout_ms) {
    size_t got = 0;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int n = poll(&p, 1, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        NP_CHECK(n > 0, "no line within %d ms (got \"%.*s\")", timeout_ms, (int)got, buf);
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        NP_CHECK(r == 1, "EOF before a full line (got \"%.*s\")", (int)got, buf);
        if (c == '\n')
            break;
        NP_CHECK(got + 1 < len, "line too long");
        buf[got++] = c;
    }
    buf[got] = '\0';
}

static inline void np_describe_status(int status, char *buf, size_t len) {
    if (WIFEXITED(status))
        snprintf(buf, len, "exit code %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "status 0x%x", status);
}

#endif /* NODE_PARALLEL_NP_H */
