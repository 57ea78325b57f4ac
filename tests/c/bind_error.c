/* A bind error in the primary reaches the worker as a negative errno.
 *
 * The primary binds and listens on 127.0.0.1:P itself with plain socket()/bind()/listen()
 * (P picked by binding port 0), then forks a worker with BE_PORT=P. The worker's
 * cluster_get_server(&s, "127.0.0.1", P) makes the primary's library try to bind P, which
 * fails: the worker must get -EADDRINUSE, *out == NULL and a non-empty cluster_last_error().
 * The same request with `exclusive` (bound in the worker) must fail the same way. After
 * those failures the worker's channel must still work: cluster_get_server on port 0
 * succeeds and serves a connection. The worker reports through that connection ("ok" or
 * the reason) and the primary checks it; a worker that fails a check exits 1 early.
 * The primary also checks its own cluster_get_server on P (bound in the primary). */
#include "ctest.h"

static char verdict[512] = "ok";

static void worker_check(int ok, const char *what, int rc) {
    if (!ok && strcmp(verdict, "ok") == 0)
        snprintf(verdict, sizeof verdict, "%s: rc %d, last error \"%s\"", what, rc, cluster_last_error());
}

static int worker_main(void) {
    const char *ps = getenv("BE_PORT");
    CT_CHECK(ps && atoi(ps) > 0, "BE_PORT not set");
    int port = atoi(ps);

    /* Through the primary. */
    cluster_server *s = (cluster_server *)(void *)&verdict; /* not NULL: must be reset */
    int rc = cluster_get_server(&s, "127.0.0.1", port, NULL);
    printf("bind_error: worker got %d (%s) \"%s\"\n", rc, cluster_strerror(rc), cluster_last_error());
    worker_check(rc == -EADDRINUSE, "cluster_get_server(port in use) != -EADDRINUSE", rc);
    worker_check(s == NULL, "cluster_get_server failed but left *out set", rc);
    worker_check(cluster_last_error()[0] != '\0', "cluster_get_server failed without a message", rc);
    if (s != NULL && s != (cluster_server *)(void *)&verdict)
        cluster_server_close(s);

    /* Exclusive: bound in this process. */
    cluster_server_options opts;
    cluster_server_options_init(&opts, sizeof opts);
    opts.exclusive = 1;
    s = NULL;
    rc = cluster_get_server(&s, "127.0.0.1", port, &opts);
    worker_check(rc == -EADDRINUSE, "cluster_get_server(exclusive, port in use) != -EADDRINUSE", rc);
    worker_check(rc >= 0 || cluster_last_error()[0] != '\0', "exclusive failure without a message", rc);
    if (s)
        cluster_server_close(s);

    /* The channel still works: serve the verdict on a fresh port-0 server. */
    s = NULL;
    rc = cluster_get_server(&s, "127.0.0.1", 0, NULL);
    CT_CHECK(rc == 0 && s, "cluster_get_server(port 0) after the bind error: %d %s (verdict so far: %s)", rc,
             cluster_last_error(), verdict);
    CT_CHECK(cluster_server_port(s) > 0 && cluster_server_port(s) != port, "server port %d",
             cluster_server_port(s));
    for (;;) {
        int c = cluster_accept(s);
        CT_CHECK(c >= 0, "cluster_accept: %d %s", c, cluster_last_error());
        ct_write_all(c, verdict);
        close(c);
    }
}

int main(void) {
    ct_init("bind_error");
    if (!cluster_is_primary())
        return worker_main();

    /* Occupy 127.0.0.1:P. */
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CT_CHECK(lfd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CT_CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0, "bind: %s", strerror(errno));
    CT_CHECK(listen(lfd, 16) == 0, "listen: %s", strerror(errno));
    socklen_t sl = sizeof sa;
    CT_CHECK(getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0, "getsockname: %s", strerror(errno));
    int port = ntohs(sa.sin_port);
    printf("bind_error: primary holds 127.0.0.1:%d\n", port);

    /* The primary's own server on P (bound here): the same error. */
    cluster_server *s = NULL;
    CT_EXPECT_ERR(cluster_get_server(&s, "127.0.0.1", port, NULL), -EADDRINUSE);
    CT_CHECK(s == NULL, "failed cluster_get_server left *out set");

    char env_port[32];
    snprintf(env_port, sizeof env_port, "BE_PORT=%d", port);
    const char *const env[] = {env_port, NULL};
    int id = ct_fork(env);

    cluster_event ev;
    int wport = 0;
    while (!wport) {
        ct_next_event(&ev);
        CT_CHECK(ev.worker_id == id, "event for unknown worker %d", ev.worker_id);
        CT_CHECK(ev.kind != CLUSTER_EVENT_EXIT && ev.kind != CLUSTER_EVENT_DISCONNECT,
                 "the worker quit (exit code %d) before serving its verdict: see its stderr", ev.exit_code);
        if (ev.kind == CLUSTER_EVENT_LISTENING) {
            /* Only the successful port-0 server reports LISTENING, never the failed P. */
            CT_CHECK(ev.port != port, "LISTENING reported for the port that failed to bind");
            wport = ev.port;
        }
    }
    char buf[600];
    ct_fetch(wport, NULL, buf, sizeof buf);
    CT_CHECK(strcmp(buf, "ok") == 0, "worker: %s", buf);

    /* The occupied port is still ours and still works. */
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CT_CHECK(c >= 0 && connect(c, (struct sockaddr *)&sa, sizeof sa) == 0, "connect to own port: %s",
             strerror(errno));
    int a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    CT_CHECK(a >= 0, "accept on own port: %s", strerror(errno));
    close(a);
    close(c);

    CT_CHECK(cluster_kill(id, SIGKILL) == 0, "cluster_kill: %s", cluster_last_error());
    do
        ct_next_event(&ev);
    while (ev.kind != CLUSTER_EVENT_EXIT);
    CT_CHECK(ev.signal == SIGKILL, "worker EXIT signal %d exit_code %d", ev.signal, ev.exit_code);
    close(lfd);
    return ct_done();
}
