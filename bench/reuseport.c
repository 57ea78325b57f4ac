/* The kernel's own balancing, our reference limit: a prefork HTTP server whose N workers
 * each bind 127.0.0.1:PORT with SO_REUSEPORT and accept on their own socket.
 *
 *   WORKERS=2 PORT=8000 reuseport
 *
 * Same response as the libcluster demo ("hello from worker <pid>\n", Connection: close).
 * BENCH_SLOW_MS=N (the slow-worker scenario): the first worker sleeps N ms before each
 * response, like the demo's worker 1; it names itself "reuseport-slow" (/proc/PID/comm) so
 * bench/run.py can tell it apart. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void serve(int port, int slow_ms) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 511) < 0) {
        perror("bind/listen");
        exit(1);
    }
    char resp[256], body[64], buf[4096];
    int blen = snprintf(body, sizeof body, "hello from worker %d\n", (int)getpid());
    int rlen = snprintf(resp, sizeof resp,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                        "Connection: close\r\n\r\n%s",
                        blen, body);
    for (;;) {
        int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
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

int main(void) {
    int n = getenv("WORKERS") ? atoi(getenv("WORKERS")) : 2;
    int port = getenv("PORT") ? atoi(getenv("PORT")) : 8000;
    int slow_ms = getenv("BENCH_SLOW_MS") ? atoi(getenv("BENCH_SLOW_MS")) : 0;
    pid_t parent = getpid();
    for (int i = 0; i < n; i++) {
        if (fork() == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(0);
            if (i == 0 && slow_ms > 0)
                prctl(PR_SET_NAME, "reuseport-slow");
            serve(port, i == 0 ? slow_ms : 0);
        }
    }
    printf("reuseport %d workers on %d\n", n, port);
    fflush(stdout);
    while (wait(NULL) > 0) {
    }
    return 0;
}
