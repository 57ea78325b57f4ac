/* stdio entries past the first three (Node's stdio: [0, 1, 2, 'pipe', 'ipc', <fd>]): with
 * stdio_count 6, the worker gets fd 3 as a socket pair to the primary (both ways), its
 * channel on fd 4 (NODE_CHANNEL_FD), and fd 5 as a duplicate of a pipe the primary made.
 *
 * The worker echoes what it reads on fd 3 back on fd 3, writes "five" on fd 5, checks that
 * fd 4 is its channel, then exits. The primary reads cluster_worker_stdio(id, 3) both ways
 * and the pipe's read end, and checks that a list past 3 needs exactly one
 * CLUSTER_STDIO_IPC and that counts past 64 are refused. */
#include "ctest.h"

static void worker(void) {
    char buf[64];
    ssize_t n = read(3, buf, sizeof buf);
    CT_CHECK(n > 0, "worker: read fd 3: %zd (%s)", n, strerror(errno));
    CT_CHECK(write(3, buf, (size_t)n) == n, "worker: write fd 3: %s", strerror(errno));
    CT_CHECK(write(5, "five", 4) == 4, "worker: write fd 5: %s", strerror(errno));
    /* The channel works on fd 4: a message reaches the primary. */
    int type = 0;
    socklen_t len = sizeof type;
    CT_CHECK(getsockopt(4, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM,
             "worker: fd 4 is not a stream socket");
    int rc = cluster_send(0, "{\"on\":\"fd 4\"}", -1);
    CT_CHECK(rc == 0, "worker: cluster_send: %d %s", rc, cluster_last_error());
    exit(ct_done());
}

int main(void) {
    ct_init("extra_stdio");
    if (cluster_is_worker() == 1)
        worker();

    int pipefd[2];
    CT_CHECK(pipe2(pipefd, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));

    cluster_settings s;
    cluster_settings_init(&s, sizeof s);
    int bad[] = {CLUSTER_STDIO_INHERIT, CLUSTER_STDIO_INHERIT, CLUSTER_STDIO_INHERIT, CLUSTER_STDIO_PIPE, CLUSTER_STDIO_PIPE};
    s.stdio = bad;
    s.stdio_count = 5;
    CT_EXPECT_ERR(cluster_setup_primary(&s), -EINVAL); /* no channel */
    int twice[] = {CLUSTER_STDIO_INHERIT, CLUSTER_STDIO_INHERIT, CLUSTER_STDIO_INHERIT, CLUSTER_STDIO_IPC, CLUSTER_STDIO_IPC};
    s.stdio = twice;
    CT_EXPECT_ERR(cluster_setup_primary(&s), -EINVAL); /* two channels */
    s.stdio_count = 65;
    CT_EXPECT_ERR(cluster_setup_primary(&s), -EINVAL);

    int good[] = {CLUSTER_STDIO_INHERIT, CLUSTER_STDIO_INHERIT, CLUSTER_STDIO_INHERIT,
                  CLUSTER_STDIO_PIPE, CLUSTER_STDIO_IPC, pipefd[1]};
    s.stdio = good;
    s.stdio_count = 6;
    int rc = cluster_setup_primary(&s);
    CT_CHECK(rc == 0, "cluster_setup_primary: %d %s", rc, cluster_last_error());

    int id = ct_fork(NULL);
    int four = cluster_worker_stdio(id, 3);
    CT_CHECK(four >= 0, "cluster_worker_stdio(3): %d %s", four, cluster_last_error());
    CT_EXPECT_ERR(cluster_worker_stdio(id, 5), -ENOENT); /* an fd of ours, not a pipe */
    CT_EXPECT_ERR(cluster_worker_stdio(id, 4), -ENOENT); /* the channel */
    close(pipefd[1]);

    CT_CHECK(ct_write_all(four, "ping") == 0, "write to worker fd 3: %s", strerror(errno));
    char buf[16] = {0};
    size_t got = 0;
    while (got < 4) {
        ssize_t n = read(four, buf + got, sizeof buf - 1 - got);
        CT_CHECK(n > 0, "read back from worker fd 3: %zd (%s)", n, strerror(errno));
        got += (size_t)n;
    }
    CT_CHECK(strcmp(buf, "ping") == 0, "worker fd 3 echoed '%s'", buf);
    char five[16] = {0};
    got = 0;
    for (;;) {
        ssize_t n = read(pipefd[0], five + got, sizeof five - 1 - got);
        CT_CHECK(n >= 0, "read the pipe: %s", strerror(errno));
        if (n == 0)
            break; /* the worker exited: every write end is closed */
        got += (size_t)n;
    }
    CT_CHECK(strcmp(five, "five") == 0, "worker fd 5 wrote '%s'", five);

    cluster_event ev;
    int got_message = 0;
    for (;;) {
        ct_next_event(&ev);
        if (ev.kind == CLUSTER_EVENT_MESSAGE && ev.data && strstr(ev.data, "fd 4"))
            got_message = 1;
        if (ev.kind == CLUSTER_EVENT_EXIT)
            break;
    }
    CT_CHECK(got_message, "no message from the worker's channel on fd 4");
    CT_CHECK(ev.exit_code == 0 && ev.signal == 0, "worker exit %d signal %d", ev.exit_code, ev.signal);
    close(four);
    return ct_done();
}
