/* A C peer for the message round-trip tests (tests/message_roundtrip.rs and
 * bindings/node/test/roundtrip.test.js), either role, peers in any language.
 *
 * Primary:  msg_peer EXEC [ARG...] with RT_MESSAGES=<file>
 *   forks one worker running EXEC ARG... (any language), sends it each line of the file as
 *   one message (the line's text as it is, whitespace included), prints every message that
 *   comes back as "GOT <text>" (the text as received), and once as many came back as were
 *   sent, kills the worker and exits 0. Exits 1 on any error, 124 when alarm(30) fires.
 * Worker (started by any primary; NODE_UNIQUE_ID set):
 *   prints each message as "RECV <text>" and sends the same text back, byte for byte.
 *
 * Not a test by itself: it is one not built by tests/c_api.rs. */
#include <cluster.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_MSGS 64

static char *msgs[MAX_MSGS];
static int nmsgs, got, failed;

static void fail(const char *what, int code) {
    fprintf(stderr, "msg_peer %s: %s: %d (%s)\n", cluster_is_primary() ? "primary" : "worker", what, code,
            cluster_last_error());
    failed = 1;
}

static void on_online(const cluster_event *ev, void *ud) {
    (void)ud;
    for (int i = 0; i < nmsgs; i++) {
        int r = cluster_send(ev->worker_id, msgs[i], -1);
        if (r < 0)
            fail("cluster_send", r);
    }
    if (failed)
        cluster_kill(ev->worker_id, SIGKILL);
}

static void on_message(const cluster_event *ev, void *ud) {
    (void)ud;
    printf("GOT %s\n", ev->data);
    fflush(stdout);
    if (ev->fd >= 0)
        fail("a message came with an fd", ev->fd);
    if (++got == nmsgs)
        cluster_kill(ev->worker_id, SIGKILL);
}

static void on_exit_cb(const cluster_event *ev, void *ud) {
    (void)ud;
    if (got != nmsgs)
        fail("the worker exited before echoing every message", ev->exit_code);
    cluster_stop();
}

static int read_messages(const char *path) {
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) {
        fprintf(stderr, "msg_peer: set RT_MESSAGES to a readable file\n");
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0 && nmsgs < MAX_MSGS) {
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        if (n == 0)
            continue;
        msgs[nmsgs++] = strdup(line);
    }
    free(line);
    fclose(f);
    return nmsgs > 0 ? 0 : -1;
}

static int primary(int argc, char **argv) {
    if (argc < 2 || read_messages(getenv("RT_MESSAGES")) < 0) {
        fprintf(stderr, "usage: RT_MESSAGES=file msg_peer EXEC [ARG...]\n");
        return 1;
    }
    cluster_settings s;
    cluster_settings_init(&s, sizeof s);
    s.exec = argv[1];
    s.args = (const char *const *)(argv + 2);
    int r = cluster_setup_primary(&s);
    if (r < 0) {
        fail("cluster_setup_primary", r);
        return 1;
    }
    cluster_on_online(on_online, NULL);
    cluster_on(CLUSTER_EVENT_MESSAGE, on_message, NULL);
    cluster_on_exit(on_exit_cb, NULL);
    r = cluster_fork(NULL);
    if (r < 0) {
        fail("cluster_fork", r);
        return 1;
    }
    cluster_run();
    for (int i = 0; i < nmsgs; i++)
        free(msgs[i]);
    return failed || got != nmsgs;
}

static int worker(void) {
    cluster_event ev;
    for (;;) {
        int r = cluster_poll_event(&ev, -1);
        if (r < 0) {
            fail("cluster_poll_event", r);
            return 1;
        }
        if (ev.kind == CLUSTER_EVENT_DISCONNECT)
            return 0;
        if (ev.kind != CLUSTER_EVENT_MESSAGE)
            continue;
        printf("RECV %s\n", ev.data);
        fflush(stdout);
        r = cluster_send(0, ev.data, -1);
        if (r < 0) {
            fail("cluster_send", r);
            return 1;
        }
    }
}

int main(int argc, char **argv) {
    alarm(30);
    return cluster_is_primary() ? primary(argc, argv) : worker();
}
