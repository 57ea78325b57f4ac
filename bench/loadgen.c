/* Load generator for the libcluster benchmark: one thread, epoll, bounded in time.
 *
 *   loadgen PORT CONCURRENCY SECONDS
 *
 * Keeps CONCURRENCY connections busy against 127.0.0.1:PORT, each doing
 * connect -> "GET / HTTP/1.1" with Connection: close -> read the whole response -> close,
 * for SECONDS seconds. Prints one JSON line: conns/s, p50/p99 latency (us), errors, and the
 * number of responses per worker pid (the body ends with the serving worker's pid). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONC 1024
#define MAX_PIDS 64
#define MAX_SAMPLES (1 << 22)

struct slot {
    int fd;
    int sent;
    uint64_t start_ns;
    size_t len;
    char buf[512];
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct sockaddr_in addr;
static int ep;
static const char REQ[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
static long pids[MAX_PIDS], counts[MAX_PIDS];
static int npids;
static uint32_t *lat_us;
static size_t nlat;
static long errors;

static int start(struct slot *s, int idx) {
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return -1;
    s->sent = 0;
    s->len = 0;
    s->start_ns = now_ns();
    if (connect(s->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(s->fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)idx};
    return epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
}

static void record(struct slot *s) {
    uint64_t us = (now_ns() - s->start_ns) / 1000;
    if (nlat < MAX_SAMPLES)
        lat_us[nlat++] = (uint32_t)us;
    /* The body is "... <pid>\n": take the last number. */
    s->buf[s->len < sizeof s->buf ? s->len : sizeof s->buf - 1] = '\0';
    char *end = s->buf + strlen(s->buf);
    while (end > s->buf && (end[-1] == '\n' || end[-1] == '\r'))
        end--;
    char *p = end;
    while (p > s->buf && p[-1] >= '0' && p[-1] <= '9')
        p--;
    long pid = strtol(p, NULL, 10);
    if (strncmp(s->buf, "HTTP/1.1 200", 12) != 0 || pid <= 0) {
        errors++;
        return;
    }
    for (int i = 0; i < npids; i++)
        if (pids[i] == pid) {
            counts[i]++;
            return;
        }
    if (npids < MAX_PIDS) {
        pids[npids] = pid;
        counts[npids++] = 1;
    }
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: loadgen PORT CONCURRENCY SECONDS\n");
        return 2;
    }
    int port = atoi(argv[1]), conc = atoi(argv[2]);
    double secs = atof(argv[3]);
    if (conc < 1 || conc > MAX_CONC || secs <= 0 || secs > 600) {
        fprintf(stderr, "loadgen: bad arguments\n");
        return 2;
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lat_us = malloc(sizeof *lat_us * MAX_SAMPLES);
    static struct slot slots[MAX_CONC];
    ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < conc; i++)
        if (start(&slots[i], i) < 0)
            errors++;
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(secs * 1e9);
    long done = 0;
    int active = conc;
    struct epoll_event evs[256];
    while (active > 0) {
        uint64_t t = now_ns();
        int stopping = t >= deadline;
        int n = epoll_wait(ep, evs, 256, 100);
        if (n < 0 && errno != EINTR)
            break;
        for (int k = 0; k < n; k++) {
            struct slot *s = &slots[evs[k].data.u32];
            if (!s->sent && (evs[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                ssize_t w = send(s->fd, REQ, sizeof REQ - 1, MSG_NOSIGNAL);
                if (w != (ssize_t)(sizeof REQ - 1)) {
                    errors++;
                    goto restart;
                }
                s->sent = 1;
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[k].data.u32};
                epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
                continue;
            }
            for (;;) {
                ssize_t r = read(s->fd, s->buf + s->len, sizeof s->buf - 1 - s->len);
                if (r > 0) {
                    s->len += (size_t)r;
                    if (s->len >= sizeof s->buf - 1)
                        s->len = sizeof s->buf - 2;
                    continue;
                }
                if (r < 0 && errno == EAGAIN)
                    break;
                if (r == 0 && s->len > 0) {
                    record(s);
                    done++;
                } else {
                    errors++;
                }
                goto restart;
            }
            continue;
        restart:
            close(s->fd);
            if (stopping || now_ns() >= deadline) {
                s->fd = -1;
                active--;
            } else if (start(s, (int)evs[k].data.u32) < 0) {
                errors++;
                s->fd = -1;
                active--;
            }
        }
        if (now_ns() > deadline + 5000000000ull)
            break; /* hard stop: a server that never answers cannot hold us */
    }
    double elapsed = (double)(now_ns() - t0) / 1e9;
    qsort(lat_us, nlat, sizeof *lat_us, cmp_u32);
    uint32_t p50 = nlat ? lat_us[nlat / 2] : 0, p99 = nlat ? lat_us[(nlat * 99) / 100] : 0;
    printf("{\"conns\":%ld,\"seconds\":%.3f,\"conns_per_s\":%.1f,\"p50_us\":%u,\"p99_us\":%u,\"errors\":%ld,\"per_worker\":{",
           done, elapsed, (double)done / elapsed, p50, p99, errors);
    for (int i = 0; i < npids; i++)
        printf("%s\"%ld\":%ld", i ? "," : "", pids[i], counts[i]);
    printf("}}\n");
    return 0;
}
