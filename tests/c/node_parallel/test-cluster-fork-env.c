/* Port of Node's test/parallel/test-cluster-fork-env.js.
 *
 * Checks that the env given to cluster.fork(env) (cluster_fork's "KEY=VALUE" array) reaches
 * the worker: a new variable appears, and a variable that already exists in the primary's
 * environment ("old") is overridden by the fork's value ("new"). The worker reports both
 * values in a message (cluster.worker.send → cluster_send(0, json, -1)), which must be
 * accepted (Node: send() returns true; here: 0).
 *
 * Deliberate differences: Node's primary exits as soon as the message arrives (the worker
 * then dies with its channel); here the primary also waits for the worker's exit, which
 * must follow by itself (code 0) once the worker has nothing left to do, and then kills
 * whatever is left. The message is read as compact JSON (the worker writes it so, and
 * libcluster passes its text through), with both fields checked. */
#include "np.h"

static int worker(void) {
    const char *prop = getenv("cluster_test_prop");
    const char *overwrite = getenv("cluster_test_overwrite");
    char json[512];
    snprintf(json, sizeof json, "{\"prop\":\"%s\",\"overwrite\":\"%s\"}", prop ? prop : "(unset)",
             overwrite ? overwrite : "(unset)");
    int rc = cluster_send(0, json, -1);
    NP_CHECK(rc == 0, "cluster_send: %d %s", rc, cluster_last_error());
    return np_finish();
}

static int primary(void) {
    NP_CHECK(setenv("cluster_test_overwrite", "old", 1) == 0, "setenv: %s", strerror(errno));
    static const char *const env[] = {"MODE=worker", "cluster_test_prop=custom",
                                      "cluster_test_overwrite=new", NULL};
    int id = np_fork(env);
    cluster_event ev;
    int got_message = 0, got_exit = 0;
    while (!got_message || !got_exit) {
        np_next_event(&ev);
        NP_CHECK(ev.worker_id == id, "event for unknown worker %d", ev.worker_id);
        if (ev.kind == CLUSTER_EVENT_MESSAGE) {
            NP_CHECK(!got_message, "a second message");
            got_message = 1;
            char prop[64], overwrite[64];
            NP_CHECK(np_json_str(ev.data, "prop", prop, sizeof prop), "no prop in %s", ev.data);
            NP_CHECK(np_json_str(ev.data, "overwrite", overwrite, sizeof overwrite),
                     "no overwrite in %s", ev.data);
            NP_CHECK(strcmp(prop, "custom") == 0, "The worker did not receive the correct env "
                     "(prop = %s)", prop);
            NP_CHECK(strcmp(overwrite, "new") == 0, "The custom environment did not overwrite "
                     "the existing environment (overwrite = %s)", overwrite);
        } else if (ev.kind == CLUSTER_EVENT_EXIT) {
            got_exit = 1;
            NP_CHECK(got_message, "worker exited before its message arrived");
            NP_CHECK(ev.exit_code == 0 && ev.signal == 0, "worker exit_code %d signal %d",
                     ev.exit_code, ev.signal);
        }
    }
    NP_CHECK(strcmp(getenv("cluster_test_overwrite"), "old") == 0,
             "the primary's own environment changed");
    return np_finish();
}

int main(void) {
    np_init("test-cluster-fork-env");
    const char *mode = getenv("MODE");
    if (mode && strcmp(mode, "worker") == 0)
        return worker();
    return primary();
}
