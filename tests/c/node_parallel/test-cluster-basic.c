/* Port of Node's test/parallel/test-cluster-basic.js.
 *
 * Checks:
 *  - NODE_UNIQUE_ID is gone from the environment once libcluster has started (primary and
 *    worker);
 *  - the first forked worker has id 1, and cluster_worker_pid() gives its pid;
 *  - the primary sees FORK, ONLINE, LISTENING and EXIT, each once, in that order, each for
 *    that worker (Node: the event's worker argument is the forked Worker object; here:
 *    worker_id and pid match);
 *  - the worker's state at each of those events is none, online, listening and dead;
 *  - the LISTENING payload is Node's { address: '127.0.0.1', addressType: 4, fd: undefined,
 *    port: 1..65535 } (fd undefined is -1 here);
 *  - worker.kill() (cluster_kill(id, SIGTERM)) on listening ends the worker, and the EXIT
 *    payload matches the worker's end (exit_code -1 and signal SIGTERM, Node's
 *    exitCode null / signalCode 'SIGTERM').
 *
 * Deliberate differences:
 *  - Node emits each event synchronously with the state change, so `worker.state` inside a
 *    handler is the state of that event. libcluster queues events while the worker's state
 *    moves on in a library thread, so cluster_worker_get_state() tells the state *now*. To
 *    check the same thing without a race, the worker is held at two points: before it
 *    starts libcluster (it waits for a byte on its stdin, a pipe set up with
 *    cluster_settings.stdio, which the primary writes once it has seen FORK) and before it
 *    listens (it waits for a "listen" message, sent once the primary has seen ONLINE).
 *  - Node registers each event both on `cluster` and on the worker object; the C API has
 *    one event stream, checked once.
 *  - Node listens on port 0 of 127.0.0.1 with an http.Server; here a plain cluster server. */
#include "np.h"

static int worker(void) {
    char c;
    /* Held here until the primary has seen FORK: nothing of libcluster has run yet. */
    ssize_t n;
    do
        n = read(0, &c, 1);
    while (n < 0 && errno == EINTR);
    NP_CHECK(n == 1, "reading the go byte from stdin: %zd %s", n, n < 0 ? strerror(errno) : "EOF");
    NP_CHECK(cluster_is_worker() == 1, "cluster_is_worker() != 1");
    NP_CHECK(getenv("NODE_UNIQUE_ID") == NULL, "NODE_UNIQUE_ID should be removed on startup");
    NP_CHECK(cluster_worker_id() == 1, "cluster_worker_id() = %d, expected 1", cluster_worker_id());

    cluster_event ev;
    np_next_event(&ev);
    NP_CHECK(ev.kind == CLUSTER_EVENT_MESSAGE && ev.data && strcmp(ev.data, "\"listen\"") == 0,
             "expected the \"listen\" message from the primary");
    cluster_server *srv = NULL;
    int rc = cluster_get_server(&srv, "127.0.0.1", 0, NULL);
    NP_CHECK(rc == 0, "cluster_get_server: %d %s", rc, cluster_last_error());
    /* Like an idle http.Server: stay up until killed (or the primary goes away). */
    for (;;)
        pause();
}

static int primary(void) {
    NP_CHECK(getenv("NODE_UNIQUE_ID") == NULL, "NODE_UNIQUE_ID set in the primary");
    cluster_settings s;
    cluster_settings_init(&s, sizeof s);
    int stdio[3] = {CLUSTER_STDIO_PIPE, CLUSTER_STDIO_INHERIT, CLUSTER_STDIO_INHERIT};
    s.stdio = stdio;
    int rc = cluster_setup_primary(&s);
    NP_CHECK(rc == 0, "cluster_setup_primary: %d %s", rc, cluster_last_error());

    static const char *const env[] = {"MODE=worker", NULL};
    int id = np_fork(env);
    NP_CHECK(id == 1, "first worker id is %d, expected 1", id);
    int pid = cluster_worker_pid(id);
    NP_CHECK(pid > 0, "cluster_worker_pid(%d): %d %s", id, pid, cluster_last_error());
    NP_CHECK(getenv("NODE_UNIQUE_ID") == NULL, "NODE_UNIQUE_ID set in the primary after fork");

    cluster_event ev;
    int st;

    np_expect(&ev, CLUSTER_EVENT_FORK, id);
    NP_CHECK(ev.pid == pid, "FORK pid %d, expected %d", ev.pid, pid);
    st = cluster_worker_get_state(id);
    NP_CHECK(st == CLUSTER_WORKER_NONE, "state at FORK is %s, expected none", np_state_name(st));
    int in = cluster_worker_stdio(id, 0);
    NP_CHECK(in >= 0, "cluster_worker_stdio(%d, 0): %d %s", id, in, cluster_last_error());
    NP_CHECK(write(in, "g", 1) == 1, "write to the worker's stdin: %s", strerror(errno));
    close(in);

    np_expect(&ev, CLUSTER_EVENT_ONLINE, id);
    NP_CHECK(ev.pid == pid, "ONLINE pid %d, expected %d", ev.pid, pid);
    st = cluster_worker_get_state(id);
    NP_CHECK(st == CLUSTER_WORKER_ONLINE, "state at ONLINE is %s, expected online", np_state_name(st));
    rc = cluster_send(id, "\"listen\"", -1);
    NP_CHECK(rc == 0, "cluster_send: %d %s", rc, cluster_last_error());

    np_expect(&ev, CLUSTER_EVENT_LISTENING, id);
    NP_CHECK(ev.pid == pid, "LISTENING pid %d, expected %d", ev.pid, pid);
    st = cluster_worker_get_state(id);
    NP_CHECK(st == CLUSTER_WORKER_LISTENING, "state at LISTENING is %s, expected listening",
             np_state_name(st));
    NP_CHECK(ev.address && strcmp(ev.address, "127.0.0.1") == 0, "LISTENING address %s",
             ev.address ? ev.address : "(null)");
    NP_CHECK(ev.address_type == CLUSTER_ADDRESS_IPV4, "LISTENING addressType %d, expected 4",
             ev.address_type);
    NP_CHECK(ev.fd == -1 && ev.listening_fd == -1, "LISTENING fd %d / listening_fd %d, expected -1 (undefined)", ev.fd, ev.listening_fd);
    NP_CHECK(ev.port >= 1 && ev.port <= 65535, "LISTENING port %d out of range", ev.port);

    /* worker.kill(): SIGTERM by default. */
    rc = cluster_kill(id, SIGTERM);
    NP_CHECK(rc == 0, "cluster_kill: %d %s", rc, cluster_last_error());

    /* A DISCONNECT (not watched by the Node test) may come first. */
    np_next_event(&ev);
    if (ev.kind == CLUSTER_EVENT_DISCONNECT && ev.worker_id == id)
        np_next_event(&ev);
    NP_CHECK(ev.kind == CLUSTER_EVENT_EXIT && ev.worker_id == id,
             "unexpected %s event of worker %d after kill", np_kind_name((int)ev.kind), ev.worker_id);
    NP_CHECK(ev.pid == pid, "EXIT pid %d, expected %d", ev.pid, pid);
    st = cluster_worker_get_state(id);
    NP_CHECK(st == CLUSTER_WORKER_DEAD, "state at EXIT is %s, expected dead", np_state_name(st));
    NP_CHECK(ev.exit_code == -1 && ev.signal == SIGTERM,
             "EXIT exit_code %d signal %d, expected -1 and SIGTERM", ev.exit_code, ev.signal);
    NP_CHECK(cluster_worker_is_dead(id) == 1, "cluster_worker_is_dead != 1 after EXIT");

    /* Nothing else may follow: no duplicate events. */
    while (np_try_event(&ev, 200))
        NP_CHECK(0, "unexpected %s event after EXIT", np_kind_name((int)ev.kind));
    return np_finish();
}

int main(void) {
    np_init("test-cluster-basic");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
