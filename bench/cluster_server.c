/* The libcluster twin of bench/reuseport.c: the same worker shape (blocking accept, read the
 * request, write the response, close: one connection at a time), so that a row compares the
 * library's way of getting connections to workers, not two server designs.
 *
 *   WORKERS=2 PORT=8000 cluster_server
 *
 * The primary forks WORKERS workers; the policy comes from NODE_CLUSTER_SCHED_POLICY and
 * LIBCLUSTER_FAST_LANE as for any libcluster program. BENCH_SLOW_MS=N: worker 1 sleeps N ms
 * before each response (the slow-worker scenario). BENCH_SUPERVISE=1: the workers are kept by
 * libcluster's supervision (cluster_supervise, its production defaults: stuck detection on)
 * instead of this program's own re-fork, to measure what supervision costs the primary. */
#define _GNU_SOURCE
#include <cluster.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    return (v && *v) ? atoi(v) : fallback;
}

static int worker(void) {
    cluster_server *server = NULL;
    if (cluster_get_server(&server, "127.0.0.1", env_int("PORT", 8000), NULL) < 0) {
        fprintf(stderr, "worker %d: %s\n", (int)getpid(), cluster_last_error());
        return 1;
    }
    int slow_ms = cluster_worker_id() == 1 ? env_int("BENCH_SLOW_MS", 0) : 0;
    char resp[256], body[64], buf[4096];
    int blen = snprintf(body, sizeof body, "hello from worker %d\n", (int)getpid());
    int rlen = snprintf(resp, sizeof resp,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                        "Connection: close\r\n\r\n%s",
                        blen, body);
    for (;;) {
        int c = cluster_accept(server);
        if (c < 0) {
            if (c == -EBADF)
                return 0; /* disconnected */
            continue;
        }
        size_t len = 0;
        while (len < sizeof buf - 1) {
            ssize_t r = read(c, buf + len, sizeof buf - 1 - len);
            if (r <= 0)
                break;
            len += (size_t)r;
            buf[len] = '\0';
            if (strstr(buf, "\r\n\r\n"))
                break;
        }
        if (slow_ms > 0) {
            struct timespec ts = {slow_ms / 1000, (slow_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (write(c, resp, (size_t)rlen) < 0) { /* client gone */ }
        close(c);
    }
}

static void on_exit_cb(const cluster_event *ev, void *userdata) {
    (void)ev;
    (void)userdata;
    cluster_fork(NULL);
}

int main(void) {
    if (!cluster_is_primary())
        return worker();
    if (env_int("BENCH_SUPERVISE", 0)) {
        cluster_supervisor sup;
        cluster_supervisor_init(&sup, sizeof sup);
        sup.workers = env_int("WORKERS", 2);
        if (cluster_supervise(&sup) < 0) {
            fprintf(stderr, "supervise: %s\n", cluster_last_error());
            return 1;
        }
        printf("cluster_server %d workers (supervised)\n", sup.workers);
        fflush(stdout);
        return cluster_run() < 0 ? 1 : 0;
    }
    cluster_on_exit(on_exit_cb, NULL);
    for (int i = 0; i < env_int("WORKERS", 2); i++) {
        if (cluster_fork(NULL) < 0) {
            fprintf(stderr, "fork failed: %s\n", cluster_last_error());
            return 1;
        }
    }
    printf("cluster_server %d workers\n", env_int("WORKERS", 2));
    fflush(stdout);
    return cluster_run() < 0 ? 1 : 0;
}
