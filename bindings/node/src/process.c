/* libcluster for Node.js: this process. At load, a worker started by bin/libcluster-node
 * gets its channel variables back and exits cleanly when libcluster ends it from another
 * thread; then the role queries (primary, worker, id) and libcluster's error text. */
#include "addon.h"

#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* bin/libcluster-node hides the channel from Node (which would otherwise take fd 3 and
 * delete NODE_UNIQUE_ID before any user code runs) under these names; put them back for
 * libcluster, which takes the channel and removes them again at its start. */
static void restore_worker_env(void) {
    static const char *names[][2] = {
        {"LIBCLUSTER_NODE_UNIQUE_ID", "NODE_UNIQUE_ID"},
        {"LIBCLUSTER_NODE_CHANNEL_FD", "NODE_CHANNEL_FD"},
        {"LIBCLUSTER_NODE_CHANNEL_SERIALIZATION_MODE", "NODE_CHANNEL_SERIALIZATION_MODE"},
    };
    if (!getenv("LIBCLUSTER_NODE_UNIQUE_ID"))
        return;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i][0]);
        if (v && !getenv(names[i][1]))
            setenv(names[i][1], v, 1);
        unsetenv(names[i][0]);
    }
}

/* libcluster ends a worker whose primary went away by calling exit() on its channel
 * reader thread. In Node that runs the exit handlers and static destructors while the main
 * thread is still running JS, which sometimes crashes (SIGSEGV). This handler, registered
 * after Node's, runs first and ends the process at once with the same status when exit()
 * was called from a thread other than the main one. An exit() on the main thread (Node's
 * process.exit) is untouched. */
static void exit_from_other_thread(int status, void *arg) {
    (void)arg;
    if ((pid_t)syscall(SYS_gettid) != getpid())
        _exit(status);
}

/* Called once, from Init, before anything else of libcluster runs. */
void lc_process_start(void) {
    restore_worker_env();
    /* Start libcluster now: in a worker this takes the channel (fd 3), makes it
     * close-on-exec and says `online`, before this process can spawn anything. */
    if (cluster_is_worker() == 1) {
        /* libcluster ends the worker with _exit from its own thread: no exit handler or
         * static destructor (Node's, V8's, registered at any time) runs beside the main
         * thread. The on_exit handler stays for an exit() from any other thread. */
        cluster_set_quick_exit(1);
        on_exit(exit_from_other_thread, NULL);
    }
}

/* ------------------------------------------------------ role and errors */

napi_value lc_IsPrimary(napi_env env, napi_callback_info info) {
    (void)info;
    return lc_js_bool(env, cluster_is_primary() == 1);
}

napi_value lc_IsWorker(napi_env env, napi_callback_info info) {
    (void)info;
    return lc_js_bool(env, cluster_is_worker() == 1);
}

napi_value lc_WorkerId(napi_env env, napi_callback_info info) {
    (void)info;
    return lc_js_int(env, cluster_worker_id());
}

napi_value lc_LastError(napi_env env, napi_callback_info info) {
    (void)info;
    return lc_js_str_or_null(env, cluster_last_error());
}

napi_value lc_StrError(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    int32_t code;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (!lc_arg_int(env, argv[0], &code))
        return NULL;
    return lc_js_str_or_null(env, cluster_strerror(code));
}
