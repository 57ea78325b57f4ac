/* Supervision through the C API, with real workers.
 *
 * The primary supervises 2 workers with explicit readiness (CLUSTER_READY_EXPLICIT): each
 * worker listens on 127.0.0.1:0 and calls cluster_worker_ready() only when the primary's
 * message "go" arrives, so no READY may come before the primary sent it, and both come
 * after. The primary then connects CONNECTIONS times (each worker answers "<pid>\n" and
 * closes) and checks the stats: per worker handed = received + queued + rerouted + lost,
 * lost 0, and the received sum equals the connections served. It drains worker 1
 * (cluster_drain_worker): DRAINING (disconnect, reason USER) comes, the worker sees
 * cluster_worker_draining() == 1 once its server closed and exits 7 to say so, and the
 * supervisor forks a replacement at once, which becomes ready in turn. Finally
 * cluster_control(CLUSTER_ACT_STOP_GRACEFUL): every worker drains, cluster_run returns, and the
 * port is closed (no server kept for a replacement).
 * LIBCLUSTER_FAST_LANE=0 in the environment runs the same over Node's newconn path. */
#include "ctest.h"

#define CONNECTIONS 40

static int worker_main(void) {
    cluster_server *s = NULL;
    int rc = cluster_get_server(&s, "127.0.0.1", 0, NULL);
    CT_CHECK(rc == 0 && s != NULL, "cluster_get_server: %d %s", rc, cluster_last_error());
    CT_CHECK(cluster_worker_draining() == 0, "draining before any drain");
    char line[32];
    snprintf(line, sizeof line, "%d\n", (int)getpid());
    struct pollfd p[2] = {{cluster_event_fd(), POLLIN, 0}, {cluster_server_fd(s), POLLIN, 0}};
    for (;;) {
        if (poll(p, 2, -1) < 0 && errno == EINTR)
            continue;
        cluster_event ev;
        while (cluster_poll_event(&ev, 0) == 1) {
            if (ev.kind == CLUSTER_EVENT_MESSAGE && ev.data && strstr(ev.data, "go"))
                CT_CHECK(cluster_worker_ready() == 0, "cluster_worker_ready: %s", cluster_last_error());
            if (ev.kind == CLUSTER_EVENT_DISCONNECT)
                return cluster_worker_draining() == 1 ? 7 : 8;
        }
        if (p[1].revents) {
            int c = cluster_accept(s);
            if (c == -EBADF) /* drained: the server is closed */
                return cluster_worker_draining() == 1 ? 7 : 8;
            if (c >= 0) {
                ct_write_all(c, line);
                close(c);
            }
        }
    }
}

struct w {
    int id, pid, listening, ready, exit_code, draining_seen;
};

static struct w ws[8];
static int nws;

static struct w *get(int id) {
    for (int i = 0; i < nws; i++)
        if (ws[i].id == id)
            return &ws[i];
    CT_CHECK(nws < 8, "too many workers");
    ws[nws].id = id;
    ws[nws].exit_code = -100;
    return &ws[nws++];
}

static int port;

/* Takes events until `done` says so; READY before `go_sent` is a failure. */
static void until(int (*done)(void), int go_sent) {
    while (!done()) {
        cluster_event ev;
        ct_next_event(&ev);
        struct w *w = ev.worker_id > 0 ? get(ev.worker_id) : NULL;
        switch (ev.kind) {
        case CLUSTER_EVENT_FORK:
            ct_track(ev.worker_id);
            w->pid = ev.pid;
            break;
        case CLUSTER_EVENT_LISTENING:
            w->listening = 1;
            port = ev.port;
            break;
        case CLUSTER_EVENT_READY:
            CT_CHECK(go_sent, "READY for worker %d before it was told to be ready", ev.worker_id);
            CT_CHECK(w->listening, "READY for worker %d before its LISTENING", ev.worker_id);
            w->ready = 1;
            break;
        case CLUSTER_EVENT_DRAINING:
            CT_CHECK(ev.state == CLUSTER_DRAIN_DISCONNECT || ev.state == CLUSTER_DRAIN_TERM,
                     "DRAINING state %d", ev.state);
            w->draining_seen = ev.reason;
            break;
        case CLUSTER_EVENT_EXIT:
            w->exit_code = ev.exit_code;
            break;
        default:
            break;
        }
    }
}

static int both_listening(void) {
    return nws >= 2 && ws[0].listening && ws[1].listening;
}
static int both_ready(void) {
    return nws >= 2 && ws[0].ready && ws[1].ready;
}
static int drained_and_replaced(void) {
    return ws[0].exit_code != -100 && nws >= 3 && ws[2].listening;
}
static int replacement_ready(void) {
    return nws >= 3 && ws[2].ready;
}
static int all_gone(void) {
    return cluster_worker_count() == 0 && ws[1].exit_code != -100 && ws[2].exit_code != -100;
}

static void check_identity(int expect_received) {
    unsigned long long received = 0;
    for (int i = 0; i < nws; i++) {
        cluster_worker_stats st;
        CT_CHECK(cluster_worker_stats_get(ws[i].id, &st, sizeof st) == 0, "stats of %d: %s", ws[i].id,
                 cluster_last_error());
        printf("supervision: worker %d handed %llu received %llu queued %llu rerouted %llu lost %llu\n",
               ws[i].id, (unsigned long long)st.handed, (unsigned long long)st.received,
               (unsigned long long)st.queued, (unsigned long long)st.rerouted, (unsigned long long)st.lost);
        CT_CHECK(st.handed == st.received + st.queued + st.rerouted + st.lost && st.lost == 0,
                 "worker %d breaks handed = received + queued + rerouted + lost", ws[i].id);
        received += st.received;
    }
    if (expect_received >= 0)
        CT_CHECK(received == (unsigned long long)expect_received, "received %llu in all, %d connections served",
                 received, expect_received);
}

int main(void) {
    ct_init("supervision");
    if (cluster_is_worker())
        return worker_main();

    cluster_supervisor sup;
    CT_CHECK(cluster_supervisor_init(&sup, sizeof sup) == 0, "init: %s", cluster_last_error());
    sup.workers = 2;
    sup.ready_on = CLUSTER_READY_EXPLICIT;
    sup.drain_timeout_ms = 5000;
    sup.seed = 1;
    CT_CHECK(cluster_supervise(&sup) == 0, "cluster_supervise: %s", cluster_last_error());
    until(both_listening, 0);
    /* Listening, not yet ready: nothing is READY until the workers say so. */
    cluster_stats cs;
    CT_CHECK(cluster_stats_get(&cs, sizeof cs) == 0 && cs.target == 2 && cs.ready == 0, "ready %d before go",
             cs.ready);
    for (int i = 0; i < 2; i++)
        CT_CHECK(cluster_send(ws[i].id, "\"go\"", -1) == 0, "send go: %s", cluster_last_error());
    until(both_ready, 1);
    CT_CHECK(cluster_stats_get(&cs, sizeof cs) == 0 && cs.ready == 2, "ready %d after go", cs.ready);

    int served[2] = {0, 0};
    for (int i = 0; i < CONNECTIONS; i++) {
        char buf[64];
        ct_fetch(port, NULL, buf, sizeof buf);
        int pid = atoi(buf);
        for (int k = 0; k < 2; k++)
            served[k] += ws[k].pid == pid;
    }
    CT_CHECK(served[0] + served[1] == CONNECTIONS && served[0] > 0 && served[1] > 0, "served %d and %d",
             served[0], served[1]);
    check_identity(CONNECTIONS);

    CT_CHECK(cluster_drain_worker(ws[0].id) == 0, "cluster_drain_worker: %s", cluster_last_error());
    CT_EXPECT_ERR(cluster_drain_worker(ws[0].id), CLUSTER_E_CLOSED);
    until(drained_and_replaced, 1);
    CT_CHECK(ws[0].draining_seen == CLUSTER_REASON_USER, "DRAINING reason %d", ws[0].draining_seen);
    CT_CHECK(ws[0].exit_code == 7, "the drained worker exited %d (7: it saw cluster_worker_draining() == 1)",
             ws[0].exit_code);
    CT_CHECK(cluster_send(ws[2].id, "\"go\"", -1) == 0, "send go: %s", cluster_last_error());
    until(replacement_ready, 1);
    check_identity(CONNECTIONS);

    CT_CHECK(cluster_control(CLUSTER_ACT_STOP_GRACEFUL) == 0, "stop: %s", cluster_last_error());
    until(all_gone, 1);
    CT_CHECK(cluster_stats_get(&cs, sizeof cs) == 0 && cs.stopping == 1 && cs.workers == 0, "after stop: %d %d",
             cs.stopping, cs.workers);
    CT_CHECK(cluster_run() == 0, "cluster_run after the stop: %s", cluster_last_error());
    check_identity(CONNECTIONS);
    /* Stopped: the server is not kept for a replacement, its port is closed. */
    {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons((unsigned short)port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int rc = connect(c, (struct sockaddr *)&sa, sizeof sa);
        CT_CHECK(rc < 0 && errno == ECONNREFUSED, "the port is still open after the stop (connect = %d)", rc);
        close(c);
    }
    return ct_done();
}
