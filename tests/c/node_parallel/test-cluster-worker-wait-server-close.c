/* Port of Node's test/parallel/test-cluster-worker-wait-server-close.js.
 *
 * A worker's server is closed before the worker's channel disconnects. The worker listens
 * on 127.0.0.1:0, writes "." to each connection and keeps it open until the client ends
 * it. The primary connects, and once it has the "." (so the connection is surely the
 * worker's) it disconnects the worker (worker.disconnect() → cluster_disconnect_worker)
 * and ends its side of the connection (socket.end() → shutdown(SHUT_WR)). Checks that:
 *  - when the worker gets its DISCONNECT event, its server is already closed
 *    (cluster_accept says -EBADF; Node: the server's 'close' fired before 'disconnect');
 *  - the worker can still finish its open connection after that (the client's end reaches
 *    it, it closes, the client sees EOF);
 *  - the primary sees DISCONNECT and EXIT (code 0) with exitedAfterDisconnect.
 *
 * Deliberate difference: in Node, a server's 'close' waits for its open connections to
 * end, so the worker's channel only closes after the client's end. libcluster hands
 * accepted connections to the program and closes servers and channel at once (the header
 * says so: the worker finishes open connections itself), so the port checks that the
 * server is closed at DISCONNECT and that the open connection still works afterwards, not
 * that the channel waited for it. */
#include "np.h"

static int worker(void) {
    cluster_server_options opts;
    cluster_server_options_init(&opts, sizeof opts);
    opts.nonblocking = 1;
    cluster_server *srv = NULL;
    int rc = cluster_get_server(&srv, "127.0.0.1", 0, &opts);
    NP_CHECK(rc == 0, "cluster_get_server: %d %s", rc, cluster_last_error());
    int conn = -1, had_conn = 0, server_closed = 0, disconnected = 0;
    cluster_event ev;
    while (!(disconnected && had_conn && conn < 0)) {
        struct pollfd p[3] = {{cluster_event_fd(), POLLIN, 0},
                              {server_closed ? -1 : cluster_server_fd(srv), POLLIN, 0},
                              {conn, POLLIN, 0}};
        if (poll(p, 3, -1) < 0) {
            NP_CHECK(errno == EINTR, "poll: %s", strerror(errno));
            continue;
        }
        if (p[1].revents) {
            int fd;
            while ((fd = cluster_accept(srv)) >= 0) {
                NP_CHECK(conn < 0 && !had_conn, "a second connection");
                conn = fd;
                had_conn = 1;
                NP_CHECK(np_write_all(conn, ".") == 0, "write: %s", strerror(errno));
            }
            if (fd == -EBADF)
                server_closed = 1;
            else
                NP_CHECK(fd == -EAGAIN, "cluster_accept: %d %s", fd, cluster_last_error());
        }
        if (conn >= 0 && p[2].revents) {
            char buf[64];
            ssize_t n = read(conn, buf, sizeof buf);
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
                close(conn); /* the client ended: end ours too */
                conn = -1;
            }
        }
        while (np_try_event(&ev, 0)) {
            if (ev.kind != CLUSTER_EVENT_DISCONNECT)
                continue;
            /* Disconnect should occur after the server closed. */
            rc = cluster_accept(srv);
            NP_CHECK(rc == -EBADF, "server not closed at DISCONNECT: cluster_accept = %d", rc);
            disconnected = 1;
        }
    }
    cluster_server_close(srv);
    return np_finish();
}

static int primary(void) {
    static const char *const env[] = {"MODE=worker", NULL};
    int id = np_fork(env);
    cluster_event ev;
    int s = -1, got_disconnect = 0;
    for (;;) {
        np_next_event(&ev);
        NP_CHECK(ev.worker_id == id, "event for unknown worker %d", ev.worker_id);
        if (ev.kind == CLUSTER_EVENT_LISTENING) {
            s = np_connect("127.0.0.1", ev.port);
            char c;
            NP_CHECK(read(s, &c, 1) == 1 && c == '.', "no data from the worker: %s", strerror(errno));
            printf("test-cluster-worker-wait-server-close: got data from client\n");
            int rc = cluster_disconnect_worker(id);
            NP_CHECK(rc == 0, "cluster_disconnect_worker: %d %s", rc, cluster_last_error());
            NP_CHECK(shutdown(s, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
            char rest[16];
            NP_CHECK(np_read_all(s, rest, sizeof rest) == 0, "unexpected data \"%s\"", rest);
            close(s);
        } else if (ev.kind == CLUSTER_EVENT_DISCONNECT) {
            NP_CHECK(s >= 0, "DISCONNECT before the client connected");
            NP_CHECK(ev.exited_after_disconnect == 1, "DISCONNECT exited_after_disconnect %d",
                     ev.exited_after_disconnect);
            got_disconnect = 1;
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            NP_CHECK(got_disconnect, "EXIT without DISCONNECT");
            NP_CHECK(ev.exit_code == 0 && ev.signal == 0, "worker exit_code %d signal %d",
                     ev.exit_code, ev.signal);
            NP_CHECK(ev.exited_after_disconnect == 1, "EXIT exited_after_disconnect %d",
                     ev.exited_after_disconnect);
            break;
        }
    }
    return np_finish();
}

int main(void) {
    np_init("test-cluster-worker-wait-server-close");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
