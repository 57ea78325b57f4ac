/* cluster_set_quick_exit: a worker whose primary closes its channel is ended by libcluster
 * from its reader thread, with exit() (its atexit handlers run) by default, with _exit()
 * (none runs) after cluster_set_quick_exit(1). Each worker's atexit handler creates the
 * file named by MARK; the primary forks one worker each way, closes their channels, and
 * checks the exit code (0) and which file exists. */
#include "ctest.h"

#include <sys/stat.h>

static void mark(void) {
    const char *m = getenv("MARK");
    if (m) {
        FILE *f = fopen(m, "w");
        if (f)
            fclose(f);
    }
}

static int worker_main(void) {
    atexit(mark);
    if (getenv("QUICK") && strcmp(getenv("QUICK"), "1") == 0)
        CT_CHECK(cluster_set_quick_exit(1) == 0, "cluster_set_quick_exit");
    cluster_server *s = NULL;
    CT_CHECK(cluster_get_server(&s, "127.0.0.1", 0, NULL) == 0, "get_server: %s", cluster_last_error());
    for (;;)
        pause(); /* the reader thread ends the process when the channel closes */
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

int main(void) {
    ct_init("quick_exit");
    if (cluster_is_worker())
        return worker_main();
    char slow[64], quick[64];
    snprintf(slow, sizeof slow, "/tmp/lc-quick-exit-%d-0", (int)getpid());
    snprintf(quick, sizeof quick, "/tmp/lc-quick-exit-%d-1", (int)getpid());
    unlink(slow);
    unlink(quick);
    char m0[96], m1[96];
    snprintf(m0, sizeof m0, "MARK=%s", slow);
    snprintf(m1, sizeof m1, "MARK=%s", quick);
    const char *env0[] = {"QUICK=0", m0, NULL};
    const char *env1[] = {"QUICK=1", m1, NULL};
    int ids[2] = {ct_fork(env0), ct_fork(env1)};
    int listening = 0, exited = 0, codes[2] = {-100, -100};
    while (exited < 2) {
        cluster_event ev;
        ct_next_event(&ev);
        if (ev.kind == CLUSTER_EVENT_LISTENING && ++listening == 2)
            for (int i = 0; i < 2; i++)
                CT_CHECK(cluster_close_channel(ids[i]) == 0, "close_channel: %s", cluster_last_error());
        if (ev.kind == CLUSTER_EVENT_EXIT) {
            codes[ev.worker_id == ids[0] ? 0 : 1] = ev.signal ? -ev.signal : ev.exit_code;
            exited++;
        }
    }
    CT_CHECK(codes[0] == 0 && codes[1] == 0, "exit codes %d and %d, expected 0 and 0", codes[0], codes[1]);
    CT_CHECK(exists(slow), "the default exit ran no atexit handler");
    CT_CHECK(!exists(quick), "the quick exit ran an atexit handler");
    unlink(slow);
    return ct_done();
}
