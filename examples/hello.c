/* The C twin of Node's cluster example: a clustered HTTP server, supervised.
 *
 *   PORT=8000 WORKERS=4 target/examples/hello
 *
 * The primary keeps WORKERS workers (default: CPU count) with libcluster's supervision:
 * a dead worker is replaced after a jittered exponential delay, a crash loop opens the
 * breaker, a stuck worker is drained and replaced. It handles signals (opt-in, installed
 * by this program): HUP rolling restart (the program file now on disk), TTIN/TTOU one
 * worker more/less, TERM graceful stop (within 25 s, idle keep-alive clients or not), INT
 * fast stop. Every worker serves "hello from worker <pid>\n" on HOST:PORT (127.0.0.1:8000;
 * port 0 = random, shared by all workers), answering "Connection: close" once draining.
 *
 * Under systemd it notifies (READY, RELOADING on HUP, STOPPING, STATUS, WATCHDOG, FDSTORE;
 * docs/systemd.md) unless SYSTEMD=0.
 *
 * The supervisor's defaults can be changed for tests: STUCK_MS, DRAIN_MS, KILL_MS,
 * BOOT_TIMEOUT_MS, BREAKER_BURST, BREAKER_COOLDOWN_MS, BACKOFF_BASE_MS, MAX_CONNECTIONS.
 * Behind a load balancer: AGENT_PORT=N answers HAProxy's agent-check on HOST:N (`ready up
 * N%`, `drain` once stopping), DRAIN_DELAY_MS=N keeps serving N ms after TERM before the
 * workers drain (docs/deployment.md).
 * The primary prints one "stats {...}" JSON line after each exit, rollout end and at the
 * end. Also runs as a worker under a real Node primary (extra argv is ignored). For the
 * benchmark's slow-worker scenario, BENCH_SLOW_MS=N makes worker 1 sleep N ms before each
 * response (unset: no delay). */
#define _GNU_SOURCE
#include <cluster.h>

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 256
#define BUF_SIZE 8192

struct conn {
    int fd;
    size_t len;
    /* Responses sent on it: 0 for a connection whose first request is still to come. */
    unsigned long served;
    char buf[BUF_SIZE];
};

static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    return (v && *v) ? atoi(v) : fallback;
}

static void print_stats(void) {
    char buf[16384];
    int n = cluster_stats_json(buf, sizeof buf);
    if (n >= 0 && (size_t)n < sizeof buf)
        printf("stats %s\n", buf);
    fflush(stdout);
}

static const char *drain_stage[] = {"disconnect", "SIGTERM", "SIGKILL"};
static const char *rollout_state[] = {"", "started", "step", "done", "aborted"};
static const char *upgrade_state[] = {"", "started", "ready", "done", "aborted"};
static const char *breaker_state[] = {"closed", "open", "half-open"};

static void on_event(const cluster_event *ev, void *userdata) {
    (void)userdata;
    switch (ev->kind) {
    case CLUSTER_EVENT_EXIT:
        printf("worker %d died (%s %d)\n", ev->pid, ev->signal ? "signal" : "code",
               ev->signal ? ev->signal : ev->exit_code);
        print_stats();
        break;
    case CLUSTER_EVENT_LISTENING:
        printf("worker %d listening on %s:%d\n", ev->pid, ev->address ? ev->address : "*", ev->port);
        break;
    case CLUSTER_EVENT_READY:
        printf("worker %d ready\n", ev->pid);
        break;
    case CLUSTER_EVENT_DRAINING:
        printf("worker %d draining: %s (reason %d)\n", ev->pid,
               drain_stage[ev->state >= 0 && ev->state <= 2 ? ev->state : 0], ev->reason);
        break;
    case CLUSTER_EVENT_RESPAWN:
        printf("respawn in %d ms (%d deaths in a row)\n", ev->delay_ms, ev->count);
        break;
    case CLUSTER_EVENT_BREAKER:
        printf("breaker %s (%d boot failures)\n",
               breaker_state[ev->state >= 0 && ev->state <= 2 ? ev->state : 0], ev->count);
        break;
    case CLUSTER_EVENT_ROLLOUT:
        printf("rollout %s generation %d (%d replaced)\n",
               rollout_state[ev->state >= 1 && ev->state <= 4 ? ev->state : 0], ev->generation, ev->count);
        if (ev->state == CLUSTER_ROLLOUT_DONE || ev->state == CLUSTER_ROLLOUT_ABORTED)
            print_stats();
        break;
    case CLUSTER_EVENT_STUCK:
        printf("worker %d stuck (%d ms)\n", ev->pid, ev->delay_ms);
        break;
    case CLUSTER_EVENT_RECYCLE:
        printf("worker %d recycled (reason %d)\n", ev->pid, ev->reason);
        break;
    case CLUSTER_EVENT_CONTROL:
        printf("signal %d: action %d\n", ev->signal, ev->state);
        break;
    case CLUSTER_EVENT_UPGRADE:
        /* pid: the other primary (the new one in the old primary, the old one in the new). */
        printf("upgrade %s: primary %d (other primary %d, error %d)\n",
               upgrade_state[ev->state >= 1 && ev->state <= 4 ? ev->state : 0], (int)getpid(), ev->pid,
               ev->error);
        if (ev->state == CLUSTER_UPGRADE_ABORTED)
            print_stats();
        break;
    case CLUSTER_EVENT_ERROR:
        fprintf(stderr, "worker %d: %s\n", ev->pid, ev->data);
        break;
    default:
        break;
    }
    fflush(stdout);
}

static int primary(void) {
    printf("Primary %d is running%s\n", (int)getpid(), cluster_is_upgrade() == 1 ? " (started by a hot upgrade)" : "");
    fflush(stdout);
    int kinds[] = {CLUSTER_EVENT_EXIT,     CLUSTER_EVENT_LISTENING, CLUSTER_EVENT_READY,
                   CLUSTER_EVENT_DRAINING, CLUSTER_EVENT_RESPAWN,   CLUSTER_EVENT_BREAKER,
                   CLUSTER_EVENT_ROLLOUT,  CLUSTER_EVENT_STUCK,     CLUSTER_EVENT_RECYCLE,
                   CLUSTER_EVENT_CONTROL,  CLUSTER_EVENT_ERROR,     CLUSTER_EVENT_UPGRADE};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        cluster_on(kinds[i], on_event, NULL);
    cluster_supervisor sup;
    cluster_supervisor_init(&sup, sizeof sup);
    sup.workers = env_int("WORKERS", (int)sysconf(_SC_NPROCESSORS_ONLN));
    sup.stuck_timeout_ms = env_int("STUCK_MS", sup.stuck_timeout_ms);
    sup.drain_timeout_ms = env_int("DRAIN_MS", sup.drain_timeout_ms);
    sup.kill_after_ms = env_int("KILL_MS", sup.kill_after_ms);
    sup.boot_timeout_ms = env_int("BOOT_TIMEOUT_MS", sup.boot_timeout_ms);
    sup.breaker_burst = env_int("BREAKER_BURST", sup.breaker_burst);
    sup.breaker_cooldown_ms = env_int("BREAKER_COOLDOWN_MS", sup.breaker_cooldown_ms);
    sup.backoff_base_ms = env_int("BACKOFF_BASE_MS", sup.backoff_base_ms);
    sup.max_connections = (uint64_t)env_int("MAX_CONNECTIONS", 0);
    /* Past one host: TERM says "drain" to the load balancer at once, the drains begin
     * DRAIN_DELAY_MS later; AGENT_PORT answers HAProxy's agent-check on HOST. */
    sup.drain_delay_ms = env_int("DRAIN_DELAY_MS", 0);
    if (getenv("AGENT_PORT") && *getenv("AGENT_PORT")) {
        const char *host = getenv("HOST") && *getenv("HOST") ? getenv("HOST") : "127.0.0.1";
        int agent = cluster_agent_listen(host, env_int("AGENT_PORT", 0));
        if (agent < 0) {
            fprintf(stderr, "agent: %s\n", cluster_last_error());
            return 1;
        }
        printf("agent-check on %s:%d\n", host, agent);
    }
    /* Socket activation (systemd, systemd-socket-activate): the workers serve on the socket
     * systemd passed, its early clients included. 0 sockets when not activated. */
    int adopted = cluster_listen_fds();
    if (adopted < 0)
        fprintf(stderr, "LISTEN_FDS: %s\n", cluster_last_error());
    else if (adopted > 0)
        printf("adopted %d socket-activated listener(s)\n", adopted);
    /* systemd (docs/systemd.md): READY/RELOADING/STOPPING/STATUS, the watchdog and the fd
     * store, sent only when NOTIFY_SOCKET is set; SYSTEMD=0 opts out. */
    if (env_int("SYSTEMD", 1) && cluster_systemd(CLUSTER_SYSTEMD_ALL) < 0)
        fprintf(stderr, "systemd: %s\n", cluster_last_error());
    if (cluster_install_signal_handlers() < 0 || cluster_supervise(&sup) < 0) {
        fprintf(stderr, "supervise: %s\n", cluster_last_error());
        return 1;
    }
    int rc = cluster_run();
    print_stats();
    printf("primary stopped\n");
    fflush(stdout);
    return rc < 0 ? 1 : 0;
}

/* Set once a disconnect closed our server: finish open requests, then exit 0. */
static int closing;
/* BENCH_SLOW_MS in worker 1, else 0: the delay before each response. */
static int slow_ms;

/* Answers every complete request in c->buf; returns 0 to keep the connection, -1 to close. */
static int serve(struct conn *c) {
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end)
            return c->len == BUF_SIZE ? -1 : 0;
        size_t head = (size_t)(end - c->buf) + 4;
        *end = '\0';
        /* HTTP/1.1 keeps the connection unless "Connection: close"; HTTP/1.0 closes unless
         * "Connection: keep-alive". */
        int http10 = strstr(c->buf, "HTTP/1.0") != NULL;
        int close_it = http10 ? strcasestr(c->buf, "\nconnection: keep-alive") == NULL
                              : strcasestr(c->buf, "\nconnection: close") != NULL;
        close_it |= closing || cluster_worker_draining() == 1;
        char body[64], resp[256];
        int blen = snprintf(body, sizeof body, "hello from worker %d\n", (int)getpid());
        int rlen = snprintf(resp, sizeof resp,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                            "Connection: %s\r\n\r\n%s",
                            blen, close_it ? "close" : "keep-alive", body);
        if (slow_ms > 0) {
            struct timespec ts = {slow_ms / 1000, (slow_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        for (int off = 0; off < rlen;) {
            ssize_t n = write(c->fd, resp + off, (size_t)(rlen - off));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return -1;
            off += (int)n;
        }
        c->served++;
        memmove(c->buf, c->buf + head, c->len - head);
        c->len -= head;
        if (close_it)
            return -1;
    }
}

static int worker(void) {
    int port = env_int("PORT", 8000);
    const char *host = getenv("HOST") && *getenv("HOST") ? getenv("HOST") : "127.0.0.1";
    cluster_server_options opts;
    cluster_server_options_init(&opts, sizeof opts);
    opts.nonblocking = 1;
    cluster_server *server = NULL;
    if (cluster_get_server(&server, host, port, &opts) < 0) {
        fprintf(stderr, "worker %d: %s\n", (int)getpid(), cluster_last_error());
        return 1;
    }
    if (cluster_worker_id() == 1)
        slow_ms = env_int("BENCH_SLOW_MS", 0);
    printf("Worker %d started\n", (int)getpid());
    fflush(stdout);

    static struct conn conns[MAX_CONNS];
    struct pollfd pfds[MAX_CONNS + 1];
    int n = 0;
    for (;;) {
        if (closing && n == 0) {
            /* Like Node's http server after a disconnect: every request answered, so exit. */
            cluster_server_close(server);
            return 0;
        }
        pfds[0].fd = (n < MAX_CONNS && !closing) ? cluster_server_fd(server) : -1;
        pfds[0].events = POLLIN;
        for (int i = 0; i < n; i++) {
            pfds[i + 1].fd = conns[i].fd;
            pfds[i + 1].events = POLLIN;
        }
        if (poll(pfds, (nfds_t)n + 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        for (int i = n - 1; i >= 0; i--) {
            if (!pfds[i + 1].revents)
                continue;
            struct conn *c = &conns[i];
            ssize_t r = read(c->fd, c->buf + c->len, BUF_SIZE - c->len);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r > 0)
                c->len += (size_t)r;
            if (r <= 0 || serve(c) < 0) {
                close(c->fd);
                conns[i] = conns[--n];
            }
        }
        if (pfds[0].revents) {
            int fd = -EAGAIN;
            while (n < MAX_CONNS && (fd = cluster_accept(server)) >= 0) {
                conns[n].fd = fd;
                conns[n].len = 0;
                conns[n].served = 0;
                n++;
            }
            if (fd == -EBADF) {
                /* The primary disconnected us (or the channel closed): stop accepting, close
                 * idle keep-alive connections, finish the others. Idle means between two
                 * requests (served one, nothing buffered): its client resends a request that
                 * met the close. A connection not served yet was handed to us for a request
                 * that may be in flight (even accepted in this very loop): closing it would
                 * fail that client, so it is answered ("Connection: close") like the rest. */
                closing = 1;
                for (int i = n - 1; i >= 0; i--) {
                    if (conns[i].len == 0 && conns[i].served > 0) {
                        close(conns[i].fd);
                        conns[i] = conns[--n];
                    }
                }
            } else if (fd < 0 && fd != -EAGAIN && n < MAX_CONNS) {
                fprintf(stderr, "worker %d: accept: %s\n", (int)getpid(), cluster_last_error());
                return 1;
            }
        }
    }
}

int main(void) {
    return cluster_is_primary() ? primary() : worker();
}
