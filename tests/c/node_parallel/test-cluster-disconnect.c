/* Port of Node's test/parallel/test-cluster-disconnect.js.
 *
 * Eight workers each open two TCP servers on 127.0.0.1:0 that answer "echo" and close.
 * Checks that:
 *  - each worker reports LISTENING twice (16 in all), and the servers use two ports (each
 *    worker's first listen(0) shares one handle, each second listen(0) another);
 *  - a client of each port gets "echo";
 *  - cluster.disconnect(cb) (cluster_disconnect) disconnects all eight and runs cb once,
 *    with no worker left in cluster.workers;
 *  - then the whole thing works again (start, test, disconnect), confirming cleanup;
 *  - every worker of both rounds exits by itself with code 0 and exitedAfterDisconnect.
 *
 * Deliberate differences: Node's worker exits when its servers are closed and nothing is
 * left; the C worker exits once both its servers report closed (cluster_accept → -EBADF)
 * and its DISCONNECT event came. The exit checks are extra (Node's test ends when the
 * workers are gone, without looking at their codes). */
#include "np.h"

#define WORKERS 8
#define SERVERS 2
#define MAXID (2 * WORKERS)

static int worker(void) {
    cluster_server_options opts;
    cluster_server_options_init(&opts, sizeof opts);
    opts.nonblocking = 1;
    cluster_server *srv[SERVERS];
    int closed[SERVERS] = {0}, disconnected = 0;
    for (int i = 0; i < SERVERS; i++) {
        int rc = cluster_get_server(&srv[i], "127.0.0.1", 0, &opts);
        NP_CHECK(rc == 0, "cluster_get_server #%d: %d %s", i, rc, cluster_last_error());
    }
    cluster_event ev;
    for (;;) {
        int open = 0;
        for (int i = 0; i < SERVERS; i++)
            open += !closed[i];
        if (!open && disconnected)
            break;
        struct pollfd p[SERVERS + 1];
        p[0].fd = cluster_event_fd();
        p[0].events = POLLIN;
        for (int i = 0; i < SERVERS; i++) {
            p[i + 1].fd = closed[i] ? -1 : cluster_server_fd(srv[i]);
            p[i + 1].events = POLLIN;
        }
        if (poll(p, SERVERS + 1, -1) < 0) {
            NP_CHECK(errno == EINTR, "poll: %s", strerror(errno));
            continue;
        }
        for (int i = 0; i < SERVERS; i++) {
            if (closed[i] || !p[i + 1].revents)
                continue;
            int fd;
            while ((fd = cluster_accept(srv[i])) >= 0) {
                (void)np_write_all(fd, "echo");
                close(fd);
            }
            if (fd == -EBADF)
                closed[i] = 1;
            else
                NP_CHECK(fd == -EAGAIN, "cluster_accept: %d %s", fd, cluster_last_error());
        }
        while (np_try_event(&ev, 0))
            if (ev.kind == CLUSTER_EVENT_DISCONNECT)
                disconnected = 1;
    }
    for (int i = 0; i < SERVERS; i++)
        cluster_server_close(srv[i]);
    return np_finish();
}

static int listening_of[MAXID + 1], exited[MAXID + 1];
static int total_exits;

static void on_all_disconnected(const cluster_event *ev, void *userdata) {
    NP_CHECK(ev == NULL, "the cluster_disconnect callback got an event");
    int *runs = userdata;
    (*runs)++;
    int n = cluster_worker_count();
    NP_CHECK(n == 0, "%d worker(s) left in cluster.workers when the disconnect callback ran", n);
}

/* Handles the events every phase shares: EXIT (any worker, checked) and the rest. */
static void common_event(const cluster_event *ev) {
    if (ev->kind == CLUSTER_EVENT_EXIT) {
        NP_CHECK(ev->worker_id >= 1 && ev->worker_id <= MAXID, "EXIT of unknown worker %d", ev->worker_id);
        NP_CHECK(!exited[ev->worker_id]++, "second EXIT of worker %d", ev->worker_id);
        NP_CHECK(ev->exit_code == 0 && ev->signal == 0, "worker %d: exit_code %d signal %d",
                 ev->worker_id, ev->exit_code, ev->signal);
        NP_CHECK(ev->exited_after_disconnect == 1, "worker %d: EXIT exited_after_disconnect %d",
                 ev->worker_id, ev->exited_after_disconnect);
        total_exits++;
    }
}

static void test_round(int round) {
    static const char *const env[] = {"MODE=worker", NULL};
    int ids[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        ids[i] = np_fork(env);
    /* 1. start the cluster: every worker listening twice */
    int ports[SERVERS] = {0}, nports = 0, listening = 0;
    cluster_event ev;
    while (listening < WORKERS * SERVERS) {
        np_next_event(&ev);
        common_event(&ev);
        if (ev.kind == CLUSTER_EVENT_LISTENING) {
            NP_CHECK(ev.worker_id >= ids[0] && ev.worker_id <= ids[WORKERS - 1],
                     "LISTENING of worker %d in round %d", ev.worker_id, round);
            NP_CHECK(++listening_of[ev.worker_id] <= SERVERS, "worker %d listened more than %d times",
                     ev.worker_id, SERVERS);
            listening++;
            int known = 0;
            for (int i = 0; i < nports; i++)
                known |= ports[i] == ev.port;
            if (!known) {
                NP_CHECK(nports < SERVERS, "more than %d distinct ports (got %d)", SERVERS, ev.port);
                ports[nports++] = ev.port;
            }
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            NP_CHECK(ev.worker_id < ids[0], "worker %d of round %d exited early", ev.worker_id, round);
        }
    }
    NP_CHECK(nports == SERVERS, "%d distinct ports, expected %d", nports, SERVERS);
    /* 2. test the cluster */
    for (int i = 0; i < SERVERS; i++) {
        char buf[16];
        int s = np_connect("127.0.0.1", ports[i]);
        np_read_all(s, buf, sizeof buf);
        close(s);
        NP_CHECK(strcmp(buf, "echo") == 0, "port %d answered \"%s\"", ports[i], buf);
    }
    /* 3. disconnect the cluster */
    int runs = 0;
    int n = cluster_disconnect(on_all_disconnected, &runs);
    NP_CHECK(n == WORKERS, "cluster_disconnect: %d %s", n, n < 0 ? cluster_last_error() : "");
    /* cb runs from inside cluster_poll_event, which then goes on to return the next event. */
    while (runs == 0) {
        if (np_try_event(&ev, NP_TIMEOUT_MS))
            common_event(&ev);
        else
            NP_CHECK(runs, "the disconnect callback did not run");
    }
    NP_CHECK(runs == 1, "the disconnect callback ran %d times", runs);
    printf("test-cluster-disconnect: round %d disconnected\n", round);
}

static int primary(void) {
    test_round(1);
    test_round(2); /* again, to confirm cleanup */
    cluster_event ev;
    while (total_exits < MAXID) {
        np_next_event(&ev);
        common_event(&ev);
    }
    for (int id = 1; id <= MAXID; id++)
        NP_CHECK(listening_of[id] == SERVERS, "worker %d listened %d times", id, listening_of[id]);
    return np_finish();
}

int main(void) {
    np_init("test-cluster-disconnect");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
