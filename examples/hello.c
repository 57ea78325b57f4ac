/* The C twin of Node's cluster example: a clustered HTTP server on 127.0.0.1.
 *
 *   PORT=8000 WORKERS=4 target/examples/hello
 *
 * The primary forks WORKERS workers (default: CPU count) and re-forks any that dies; every
 * worker serves "hello from worker <pid>\n" on 127.0.0.1:PORT (default 8000; 0 = random,
 * shared by all workers). Also runs as a worker under a real Node primary (extra argv is
 * ignored). For the benchmark's slow-worker scenario, BENCH_SLOW_MS=N makes worker 1 sleep
 * N ms before each response (unset: no delay). */
#define _GNU_SOURCE
#include <cluster.h>

#include <errno.h>
#include <poll.h>
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
    char buf[BUF_SIZE];
};

static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    return (v && *v) ? atoi(v) : fallback;
}

static void on_exit_cb(const cluster_event *ev, void *userdata) {
    (void)userdata;
    printf("worker %d died (%s %d)\n", ev->pid, ev->signal ? "signal" : "code",
           ev->signal ? ev->signal : ev->exit_code);
    fflush(stdout);
    if (cluster_fork(NULL) < 0)
        fprintf(stderr, "fork failed: %s\n", cluster_last_error());
}

static void on_listening_cb(const cluster_event *ev, void *userdata) {
    (void)userdata;
    printf("worker %d listening on %s:%d\n", ev->pid, ev->address ? ev->address : "*", ev->port);
    fflush(stdout);
}

static void on_error_cb(const cluster_event *ev, void *userdata) {
    (void)userdata;
    fprintf(stderr, "worker %d: %s\n", ev->pid, ev->data);
}

static int primary(void) {
    int workers = env_int("WORKERS", (int)sysconf(_SC_NPROCESSORS_ONLN));
    printf("Primary %d is running\n", (int)getpid());
    fflush(stdout);
    cluster_on_exit(on_exit_cb, NULL);
    cluster_on_listening(on_listening_cb, NULL);
    cluster_on(CLUSTER_EVENT_ERROR, on_error_cb, NULL);
    for (int i = 0; i < workers; i++) {
        if (cluster_fork(NULL) < 0) {
            fprintf(stderr, "fork failed: %s\n", cluster_last_error());
            return 1;
        }
    }
    return cluster_run() < 0 ? 1 : 0;
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
        close_it |= closing;
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
        memmove(c->buf, c->buf + head, c->len - head);
        c->len -= head;
        if (close_it)
            return -1;
    }
}

static int worker(void) {
    int port = env_int("PORT", 8000);
    cluster_server_options opts;
    cluster_server_options_init(&opts, sizeof opts);
    opts.nonblocking = 1;
    cluster_server *server = NULL;
    if (cluster_get_server(&server, "127.0.0.1", port, &opts) < 0) {
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
                n++;
            }
            if (fd == -EBADF) {
                /* The primary disconnected us (or the channel closed): stop accepting, close
                 * idle keep-alive connections, finish the others. */
                closing = 1;
                for (int i = n - 1; i >= 0; i--) {
                    if (conns[i].len == 0) {
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
