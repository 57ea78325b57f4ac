/* Port of Node's test/parallel/test-cluster-worker-no-exit.js.
 *
 * Workers do not exit because of a disconnect: they exit when nothing keeps them alive.
 * The primary runs a plain (not clustered) TCP server on 127.0.0.1:0 and sends its port to
 * the worker once it is online; the worker connects to it and keeps the connection. When
 * the connection arrives, the primary closes its server and disconnects the worker
 * (worker.disconnect() → cluster_disconnect_worker). Checks that:
 *  - the DISCONNECT comes, and the worker is still alive after it: no EXIT for a while
 *    (Node waits 1 s; here 500 ms of no EXIT event), cluster_worker_is_dead() is 0 and
 *    kill(pid, 0) succeeds;
 *  - once the primary destroys the connection, the worker exits (code 0,
 *    exitedAfterDisconnect true), and only then (Node: "worker exited before connection
 *    destroyed").
 *
 * Deliberate differences: a Node worker stays alive because its event loop holds the
 * socket; a C worker decides that itself. The worker here follows Node's rule in its own
 * loop (it exits once it is disconnected and its connection is closed), so what this
 * checks of libcluster is that a primary-initiated disconnect does not end the worker
 * process, delivers DISCONNECT to it, and reports the later exit correctly. */
#include "np.h"

static int worker(void) {
    cluster_event ev;
    int conn = -1, disconnected = 0, conn_closed = 0;
    for (;;) {
        if (disconnected && conn_closed)
            return np_finish(); /* nothing keeps us alive any more */
        int r = np_wait(conn_closed ? -1 : conn, NP_TIMEOUT_MS);
        if (r & 2) {
            char buf[64];
            ssize_t n = read(conn, buf, sizeof buf);
            if (n <= 0) {
                close(conn);
                conn = -1;
                conn_closed = 1;
            }
        }
        while (np_try_event(&ev, 0)) {
            if (ev.kind == CLUSTER_EVENT_MESSAGE) {
                long port;
                NP_CHECK(conn < 0 && !conn_closed, "a second message");
                NP_CHECK(np_json_int(ev.data, "port", &port), "no port in %s", ev.data);
                conn = np_connect("127.0.0.1", (int)port);
            } else if (ev.kind == CLUSTER_EVENT_DISCONNECT) {
                disconnected = 1;
            }
        }
    }
}

static int primary(void) {
    int port;
    int lsock = np_plain_listener(0, &port);
    static const char *const env[] = {"MODE=worker", NULL};
    int id = np_fork(env);
    int pid = cluster_worker_pid(id);
    NP_CHECK(pid > 0, "cluster_worker_pid: %d %s", pid, cluster_last_error());
    cluster_event ev;
    int conn = -1, destroyed = 0, got_disconnect = 0;
    for (;;) {
        int r = np_wait(lsock, NP_TIMEOUT_MS);
        if ((r & 2) && lsock >= 0) {
            conn = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
            NP_CHECK(conn >= 0, "accept: %s", strerror(errno));
            close(lsock); /* server.close() */
            lsock = -1;
            int rc = cluster_disconnect_worker(id);
            NP_CHECK(rc == 0, "cluster_disconnect_worker: %d %s", rc, cluster_last_error());
        }
        if (!(r & 1))
            continue;
        if (!np_try_event(&ev, 0))
            continue;
        NP_CHECK(ev.worker_id == id, "event for unknown worker %d", ev.worker_id);
        if (ev.kind == CLUSTER_EVENT_ONLINE) {
            char msg[64];
            snprintf(msg, sizeof msg, "{\"port\":%d}", port);
            int rc = cluster_send(id, msg, -1);
            NP_CHECK(rc == 0, "cluster_send: %d %s", rc, cluster_last_error());
        } else if (ev.kind == CLUSTER_EVENT_DISCONNECT) {
            NP_CHECK(conn >= 0, "DISCONNECT before the worker connected");
            NP_CHECK(ev.exited_after_disconnect == 1, "DISCONNECT exited_after_disconnect = %d",
                     ev.exited_after_disconnect);
            got_disconnect = 1;
            break;
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            np_fail("worker exited (code %d, signal %d) before its DISCONNECT", ev.exit_code, ev.signal);
        }
    }
    /* The worker must not exit while it has a connection. */
    while (np_try_event(&ev, 500))
        NP_CHECK(ev.kind != CLUSTER_EVENT_EXIT, "worker exited before connection destroyed");
    NP_CHECK(cluster_worker_is_dead(id) == 0, "cluster_worker_is_dead != 0 while connected");
    NP_CHECK(np_is_alive(pid), "worker process %d is gone while its connection is open", pid);

    close(conn); /* conn.destroy() */
    destroyed = 1;
    for (;;) {
        np_next_event(&ev);
        if (ev.kind != CLUSTER_EVENT_EXIT)
            continue;
        NP_CHECK(ev.worker_id == id, "EXIT of unknown worker %d", ev.worker_id);
        NP_CHECK(destroyed && got_disconnect, "worker exited before connection destroyed");
        NP_CHECK(ev.exit_code == 0 && ev.signal == 0, "worker exit_code %d signal %d, expected 0",
                 ev.exit_code, ev.signal);
        NP_CHECK(ev.exited_after_disconnect == 1, "EXIT exited_after_disconnect = %d",
                 ev.exited_after_disconnect);
        break;
    }
    return np_finish();
}

int main(void) {
    np_init("test-cluster-worker-no-exit");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
