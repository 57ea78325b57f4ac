/* The floor of the fast lane's design, in plain C with no library: the primary owns the
 * listener and hands each accepted connection to a worker over a SOCK_SEQPACKET socketpair.
 *
 *   WORKERS=2 PORT=8000 handoff_model
 *
 * Primary: binds 127.0.0.1:PORT, one epoll loop (listener edge-triggered); on readiness it
 * accepts until EAGAIN, deals the connections round-robin (one message per connection:
 * 1 byte + the fd in SCM_RIGHTS), one sendmmsg per worker per wakeup, then closes its copies
 * at once (no ack, no queue accounting). Workers have reuseport.c's shape (blocking, one
 * connection at a time, same response, Connection: close), but get each connection from a
 * blocking recvmsg instead of accept. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXW 64   /* workers */
#define BATCH 32  /* most connections per sendmmsg (as the library's lane) */

typedef union { /* one control buffer per message (SCM_RIGHTS, one fd), cmsghdr-aligned */
    size_t align;
    char b[CMSG_SPACE(sizeof(int))];
} ctl_t;

static void serve(int lane) {
    char resp[256], body[64], buf[4096];
    int blen = snprintf(body, sizeof body, "hello from worker %d\n", (int)getpid());
    int rlen = snprintf(resp, sizeof resp,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                        "Connection: close\r\n\r\n%s",
                        blen, body);
    for (;;) {
        char byte;
        ctl_t ctl;
        struct iovec iov = {&byte, 1};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1,
                           .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
        ssize_t n = recvmsg(lane, &m, MSG_CMSG_CLOEXEC);
        if (n == 0 || (n < 0 && errno != EINTR))
            exit(0); /* the primary is gone */
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        int c;
        if (n < 0 || !cm || cm->cmsg_type != SCM_RIGHTS)
            continue;
        memcpy(&c, CMSG_DATA(cm), sizeof c);
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
        if (write(c, resp, (size_t)rlen) < 0) { /* client gone */ }
        close(c);
    }
}

/* Per worker: the connections dealt to it in this wakeup, and their messages. */
static int fds[MAXW][BATCH], queued[MAXW], lanes[MAXW];
static struct mmsghdr msgs[BATCH];
static struct iovec iovs[BATCH];
static ctl_t ctls[BATCH];

static void flush(int w) {
    static char byte = 'c';
    int n = queued[w];
    for (int i = 0; i < n; i++) {
        iovs[i] = (struct iovec){&byte, 1};
        msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iovs[i], .msg_iovlen = 1,
                                          .msg_control = ctls[i].b, .msg_controllen = sizeof ctls[i].b};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msgs[i].msg_hdr);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fds[w][i], sizeof(int));
    }
    for (int done = 0; done < n;) { /* blocking lane: sendmmsg stops early only on error */
        int r = sendmmsg(lanes[w], msgs + done, (unsigned)(n - done), MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* worker gone: drop its connections */
        done += r;
    }
    for (int i = 0; i < n; i++)
        close(fds[w][i]); /* the worker has its own copy now */
    queued[w] = 0;
}

int main(void) {
    int n = getenv("WORKERS") ? atoi(getenv("WORKERS")) : 2;
    int port = getenv("PORT") ? atoi(getenv("PORT")) : 8000;
    n = n < 1 ? 1 : n > MAXW ? MAXW : n;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 511) < 0) {
        perror("bind/listen");
        return 1;
    }
    int pairs[MAXW][2];
    for (int i = 0; i < n; i++) /* all pairs first, then fork */
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pairs[i]) < 0)
            return perror("socketpair"), 1;
    pid_t parent = getpid();
    for (int i = 0; i < n; i++) {
        if (fork() == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(0);
            close(s); /* a worker keeps only its own end of its own pair */
            for (int j = 0; j < n; j++) {
                close(pairs[j][0]);
                if (j != i)
                    close(pairs[j][1]);
            }
            serve(pairs[i][1]);
        }
    }
    for (int i = 0; i < n; i++) {
        close(pairs[i][1]);
        lanes[i] = pairs[i][0];
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = s};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    printf("handoff_model %d workers on %d\n", n, port);
    fflush(stdout);
    for (int next = 0;;) {
        if (epoll_wait(ep, &ev, 1, -1) < 1)
            continue;
        for (;;) { /* edge-triggered: drain the accept queue */
            int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
            if (c < 0) {
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                break; /* EAGAIN (or EMFILE: wait for the next edge) */
            }
            fds[next][queued[next]++] = c;
            if (queued[next] == BATCH)
                flush(next);
            next = (next + 1) % n;
        }
        for (int w = 0; w < n; w++)
            if (queued[w])
                flush(w);
    }
}
