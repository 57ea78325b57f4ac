/* Port of Node's test/parallel/test-cluster-message.js.
 *
 * Messages both ways between primary and worker, with a TCP connection as a second
 * channel to report what the worker received. The worker listens on 127.0.0.1:0; on a
 * connection it sends 'message from worker' over IPC (process.send → cluster_send(0, ...));
 * once it has both the connection and the primary's message it writes
 * {"code":"received message","echo":<the message>} to the connection. The primary connects
 * when the worker listens and then sends 'message from master' (worker.send →
 * cluster_send(id, ...)). Checks that:
 *  - the primary receives the worker's message, from that worker, intact (Node checks it
 *    on the worker object and on the cluster object; here the one MESSAGE event);
 *  - the worker receives the primary's message intact (echoed over TCP);
 *  - once all have arrived, the primary ends the client, the worker ends the connection,
 *    and on its end the primary kills the worker (worker.kill() → cluster_kill SIGTERM),
 *    which then exits.
 *
 * Deliberate differences: JS strings are sent as JSON text ("\"message from master\"");
 * the worker's TCP report embeds the JSON it received as is. */
#include "np.h"

#define FROM_WORKER "\"message from worker\""
#define FROM_MASTER "\"message from master\""

static int worker(void) {
    cluster_server_options opts;
    cluster_server_options_init(&opts, sizeof opts);
    opts.nonblocking = 1;
    cluster_server *srv = NULL;
    int rc = cluster_get_server(&srv, "127.0.0.1", 0, &opts);
    NP_CHECK(rc == 0, "cluster_get_server: %d %s", rc, cluster_last_error());
    int sock = -1, replied = 0, server_closed = 0;
    char message[256] = "";
    cluster_event ev;
    for (;;) {
        struct pollfd p[3] = {{cluster_event_fd(), POLLIN, 0},
                              {server_closed ? -1 : cluster_server_fd(srv), POLLIN, 0},
                              {sock, POLLIN, 0}};
        if (poll(p, 3, -1) < 0) {
            NP_CHECK(errno == EINTR, "poll: %s", strerror(errno));
            continue;
        }
        if (p[1].revents) {
            int fd;
            while ((fd = cluster_accept(srv)) >= 0) {
                NP_CHECK(sock < 0, "a second connection");
                sock = fd;
                rc = cluster_send(0, FROM_WORKER, -1);
                NP_CHECK(rc == 0, "cluster_send: %d %s", rc, cluster_last_error());
            }
            if (fd == -EBADF)
                server_closed = 1;
            else
                NP_CHECK(fd == -EAGAIN, "cluster_accept: %d %s", fd, cluster_last_error());
        }
        if (sock >= 0 && p[2].revents) {
            char buf[64];
            ssize_t n = read(sock, buf, sizeof buf);
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
                close(sock); /* the client ended: end ours too */
                sock = -1;
            }
        }
        while (np_try_event(&ev, 0)) {
            if (ev.kind == CLUSTER_EVENT_MESSAGE) {
                NP_CHECK(ev.worker_id == 0, "message from worker_id %d", ev.worker_id);
                snprintf(message, sizeof message, "%s", ev.data ? ev.data : "");
            }
        }
        if (sock >= 0 && message[0] && !replied) {
            char out[512];
            snprintf(out, sizeof out, "{\"code\":\"received message\",\"echo\":%s}", message);
            NP_CHECK(np_write_all(sock, out) == 0, "write: %s", strerror(errno));
            replied = 1;
        }
    }
}

static int primary(void) {
    static const char *const env[] = {"MODE=worker", NULL};
    int id = np_fork(env);
    int client = -1, killed = 0;
    int master_receive = 0, worker_receive = 0, ended = 0;
    char data[512];
    size_t dlen = 0;
    cluster_event ev;
    for (;;) {
        int r = np_wait(ended ? -1 : client, NP_TIMEOUT_MS);
        if (r & 2) {
            ssize_t n = read(client, data + dlen, sizeof data - 1 - dlen);
            NP_CHECK(n >= 0, "read from the worker: %s", strerror(errno));
            if (n == 0) {
                /* When the connection ends, kill the worker. */
                NP_CHECK(master_receive && worker_receive, "connection ended before every check");
                close(client);
                ended = 1;
                int rc = cluster_kill(id, SIGTERM);
                NP_CHECK(rc == 0, "cluster_kill: %d %s", rc, cluster_last_error());
                killed = 1;
            } else {
                dlen += (size_t)n;
                data[dlen] = '\0';
                if (data[dlen - 1] == '}') { /* the whole JSON report */
                    const char *want = "{\"code\":\"received message\",\"echo\":" FROM_MASTER "}";
                    NP_CHECK(strcmp(data, want) == 0, "wrong TCP message received: %s", data);
                    NP_CHECK(!worker_receive, "a second TCP report");
                    worker_receive = 1;
                }
            }
        }
        while (np_try_event(&ev, 0)) {
            NP_CHECK(ev.worker_id == id, "event for unknown worker %d", ev.worker_id);
            if (ev.kind == CLUSTER_EVENT_LISTENING) {
                client = np_connect("127.0.0.1", ev.port);
                int rc = cluster_send(id, FROM_MASTER, -1);
                NP_CHECK(rc == 0, "cluster_send: %d %s", rc, cluster_last_error());
            } else if (ev.kind == CLUSTER_EVENT_MESSAGE) {
                NP_CHECK(ev.data && strcmp(ev.data, FROM_WORKER) == 0,
                         "The master did not get the correct message: %s", ev.data);
                NP_CHECK(ev.fd == -1, "a message without a handle came with fd %d", ev.fd);
                NP_CHECK(!master_receive, "a second message");
                master_receive = 1;
            } else if (ev.kind == CLUSTER_EVENT_EXIT) {
                NP_CHECK(killed, "worker exited before it was killed (code %d, signal %d)",
                         ev.exit_code, ev.signal);
                NP_CHECK(ev.signal == SIGTERM, "worker exit signal %d, expected SIGTERM", ev.signal);
                return np_finish();
            }
        }
        if (master_receive && worker_receive && client >= 0 && !ended) {
            static int shut;
            if (!shut) {
                printf("test-cluster-message: end client\n");
                NP_CHECK(shutdown(client, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
                shut = 1;
            }
        }
    }
}

int main(void) {
    np_init("test-cluster-message");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
