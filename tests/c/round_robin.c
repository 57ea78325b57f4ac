/* Round-robin distribution through the C API.
 *
 * The primary forks 3 workers; each asks for 127.0.0.1:0 (all share the port the first
 * listen(0) got) and answers every connection with "<pid>\n". The primary waits for FORK,
 * ONLINE and LISTENING of all three (in any interleaving, but per worker in that order),
 * connects 30 times one after another and checks that every worker served its share
 * (each > 0, max - min <= 2). Then it SIGKILLs each worker with cluster_kill and checks the
 * DISCONNECT and EXIT events (signal 9, exit_code -1), that the worker table empties, and
 * that a dead id gives -ESRCH. */
#include "ctest.h"

#define WORKERS 3
#define CONNECTIONS 30

static int worker_main(void) {
    cluster_server *s = NULL;
    int rc = cluster_get_server(&s, "127.0.0.1", 0, NULL);
    CT_CHECK(rc == 0 && s != NULL, "cluster_get_server: %d %s", rc, cluster_last_error());
    CT_CHECK(cluster_server_port(s) > 0, "cluster_server_port = %d", cluster_server_port(s));
    char line[32];
    snprintf(line, sizeof line, "%d\n", (int)getpid());
    for (;;) {
        int c = cluster_accept(s);
        CT_CHECK(c >= 0, "cluster_accept: %d %s", c, cluster_last_error());
        ct_write_all(c, line);
        close(c);
    }
}

struct w {
    int id, pid, forked, online, listening, disconnected, exited, served;
};

static struct w *find(struct w *ws, int id) {
    for (int i = 0; i < WORKERS; i++)
        if (ws[i].id == id)
            return &ws[i];
    ct_fail("event for unknown worker id %d", id);
}

int main(void) {
    ct_init("round_robin");
    if (!cluster_is_primary())
        return worker_main();

    struct w ws[WORKERS];
    memset(ws, 0, sizeof ws);
    for (int i = 0; i < WORKERS; i++) {
        ws[i].id = ct_fork(NULL);
        CT_CHECK(ws[i].id == i + 1, "worker ids must be 1, 2, 3: got %d", ws[i].id);
    }
    CT_CHECK(cluster_worker_count() == WORKERS, "cluster_worker_count() = %d", cluster_worker_count());

    /* FORK, ONLINE, LISTENING for each worker, in that order per worker. */
    int port = 0, listening = 0;
    cluster_event ev;
    while (listening < WORKERS) {
        ct_next_event(&ev);
        struct w *w = find(ws, ev.worker_id);
        switch (ev.kind) {
        case CLUSTER_EVENT_FORK:
            CT_CHECK(!w->forked && ev.pid > 0, "bad FORK event for worker %d", w->id);
            w->forked = 1;
            w->pid = ev.pid;
            break;
        case CLUSTER_EVENT_ONLINE:
            CT_CHECK(w->forked && !w->online, "ONLINE of worker %d before its FORK or twice", w->id);
            CT_CHECK(ev.pid == w->pid, "ONLINE pid %d != FORK pid %d", ev.pid, w->pid);
            w->online = 1;
            break;
        case CLUSTER_EVENT_LISTENING:
            CT_CHECK(w->online && !w->listening, "LISTENING of worker %d before ONLINE or twice", w->id);
            CT_CHECK(ev.pid == w->pid, "LISTENING pid %d != FORK pid %d", ev.pid, w->pid);
            CT_CHECK(ev.port > 0 && ev.port < 65536, "LISTENING port %d", ev.port);
            CT_CHECK(port == 0 || ev.port == port, "workers listen on different ports: %d and %d", port,
                     ev.port);
            CT_CHECK(ev.address_type == 4, "LISTENING address_type %d, expected 4", ev.address_type);
            CT_CHECK(ev.address && strcmp(ev.address, "127.0.0.1") == 0, "LISTENING address %s",
                     ev.address ? ev.address : "(null)");
            port = ev.port;
            w->listening = 1;
            listening++;
            break;
        default:
            ct_fail("unexpected %s event for worker %d before all were listening", ct_kind_name((int)ev.kind),
                    w->id);
        }
    }

    /* The worker table. */
    int ids[8] = {0};
    CT_CHECK(cluster_workers(ids, 8) == WORKERS, "cluster_workers() = %d", cluster_workers(ids, 8));
    for (int i = 0; i < WORKERS; i++) {
        CT_CHECK(ids[i] == i + 1, "cluster_workers ids not ascending 1..3 (ids[%d] = %d)", i, ids[i]);
        CT_CHECK(cluster_worker_pid(ws[i].id) == ws[i].pid, "cluster_worker_pid(%d) = %d, FORK said %d",
                 ws[i].id, cluster_worker_pid(ws[i].id), ws[i].pid);
        CT_CHECK(cluster_kill(ws[i].id, 0) == 0, "cluster_kill(%d, 0): %s", ws[i].id, cluster_last_error());
    }

    /* 30 sequential connections: each is answered by one of the workers, in turn. */
    for (int n = 0; n < CONNECTIONS; n++) {
        char buf[64];
        ct_fetch(port, NULL, buf, sizeof buf);
        int pid = atoi(buf);
        int found = 0;
        for (int i = 0; i < WORKERS; i++)
            if (ws[i].pid == pid) {
                ws[i].served++;
                found = 1;
            }
        CT_CHECK(found, "connection %d answered \"%s\", not a worker pid", n, buf);
    }
    int min = CONNECTIONS, max = 0;
    for (int i = 0; i < WORKERS; i++) {
        printf("round_robin: worker %d (pid %d) served %d\n", ws[i].id, ws[i].pid, ws[i].served);
        if (ws[i].served < min)
            min = ws[i].served;
        if (ws[i].served > max)
            max = ws[i].served;
    }
    CT_CHECK(min > 0 && max - min <= 2, "unfair distribution: min %d, max %d over %d connections", min, max,
             CONNECTIONS);

    /* SIGKILL each worker: DISCONNECT then EXIT (signal 9, exit_code -1), table empties. */
    for (int i = 0; i < WORKERS; i++)
        CT_CHECK(cluster_kill(ws[i].id, SIGKILL) == 0, "cluster_kill(%d, SIGKILL): %s", ws[i].id,
                 cluster_last_error());
    int exited = 0;
    while (exited < WORKERS) {
        ct_next_event(&ev);
        struct w *w = find(ws, ev.worker_id);
        CT_CHECK(ev.pid == w->pid, "%s pid %d != FORK pid %d", ct_kind_name((int)ev.kind), ev.pid, w->pid);
        switch (ev.kind) {
        case CLUSTER_EVENT_DISCONNECT:
            CT_CHECK(!w->disconnected && !w->exited, "DISCONNECT of worker %d twice or after EXIT", w->id);
            CT_CHECK(ev.exited_after_disconnect == 0, "killed worker: exited_after_disconnect = %d",
                     ev.exited_after_disconnect);
            w->disconnected = 1;
            break;
        case CLUSTER_EVENT_EXIT:
            CT_CHECK(w->disconnected && !w->exited, "EXIT of worker %d before its DISCONNECT or twice", w->id);
            CT_CHECK(ev.signal == SIGKILL, "worker %d EXIT signal %d, expected 9", w->id, ev.signal);
            CT_CHECK(ev.exit_code == -1, "worker %d EXIT exit_code %d, expected -1", w->id, ev.exit_code);
            CT_CHECK(ev.exited_after_disconnect == 0, "killed worker: exited_after_disconnect = %d",
                     ev.exited_after_disconnect);
            w->exited = 1;
            exited++;
            break;
        default:
            ct_fail("unexpected %s event for worker %d after the kills", ct_kind_name((int)ev.kind), w->id);
        }
    }
    CT_CHECK(cluster_worker_count() == 0, "cluster_worker_count() = %d after every EXIT", cluster_worker_count());
    CT_CHECK(cluster_workers(ids, 8) == 0, "cluster_workers() = %d after every EXIT", cluster_workers(ids, 8));
    for (int i = 0; i < WORKERS; i++) {
        int rc = cluster_worker_pid(ws[i].id);
        CT_BUG_CHECK(rc == -ESRCH, "cluster_worker_pid(%d) of a dead worker = %d, expected -ESRCH (header: "
                     "\"-ESRCH (not in the table)\")", ws[i].id, rc);
        CT_EXPECT_ERR(cluster_kill(ws[i].id, SIGKILL), -ESRCH);
        CT_EXPECT_ERR(cluster_kill(ws[i].id, 0), -ESRCH);
    }
    return ct_done();
}
