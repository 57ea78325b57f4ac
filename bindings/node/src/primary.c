/* libcluster for Node.js: the primary's calls. setupPrimary's settings, fork, kill and
 * disconnect, and the queries behind cluster.workers and each Worker object. */
#include "addon.h"

#include <stdlib.h>

INT_FN2(lc_Kill, cluster_kill)
INT_FN1(lc_DisconnectWorker, cluster_disconnect_worker)
INT_FN1(lc_WorkerState, cluster_worker_get_state)
INT_FN1(lc_WorkerIsConnected, cluster_worker_is_connected)
INT_FN1(lc_WorkerIsDead, cluster_worker_is_dead)
INT_FN1(lc_WorkerExitedAfterDisconnect, cluster_worker_exited_after_disconnect)
INT_FN1(lc_WorkerPid, cluster_worker_pid)
INT_FN2(lc_WorkerStdio, cluster_worker_stdio)

napi_value lc_WorkerCount(napi_env env, napi_callback_info info) {
    (void)info;
    return lc_js_int(env, cluster_worker_count());
}

/* workers(): the ids in cluster.workers, or a negative code. */
napi_value lc_Workers(napi_env env, napi_callback_info info) {
    (void)info;
    int n = cluster_workers(NULL, 0);
    for (;;) {
        if (n < 0)
            return lc_js_int(env, n);
        int *ids = calloc((size_t)n + 1, sizeof *ids);
        if (!ids) {
            napi_throw_error(env, NULL, "libcluster addon: out of memory");
            return NULL;
        }
        int m = cluster_workers(ids, (size_t)n + 1);
        if (m > n + 1) { /* grew meanwhile */
            free(ids);
            n = m;
            continue;
        }
        napi_value arr;
        if (m < 0 || napi_create_array_with_length(env, (size_t)m, &arr) != napi_ok) {
            free(ids);
            return m < 0 ? lc_js_int(env, m) : NULL;
        }
        for (int i = 0; i < m; i++)
            napi_set_element(env, arr, (uint32_t)i, lc_js_int(env, ids[i]));
        free(ids);
        return arr;
    }
}

/* fork(envArray | null) -> id or a negative code. */
napi_value lc_Fork(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1] = {NULL};
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    bool ok;
    char **envv = lc_dup_strv(env, argc ? argv[0] : NULL, &ok);
    if (!ok)
        return NULL;
    int r = cluster_fork((const char *const *)envv);
    lc_free_strv(envv);
    return lc_js_int(env, r);
}

/* disconnectAll() -> how many workers were told, or a negative code. A "drained"
 * pseudo-event (kind -1) follows once cluster.workers is empty. */
napi_value lc_DisconnectAll(napi_env env, napi_callback_info info) {
    (void)info;
    return lc_js_int(env, cluster_disconnect(lc_on_drained, NULL));
}

/* setupPrimary({exec, args, cwd, env, silent, stdio, uid, gid, serialization, sched}):
 * absent or null fields keep their value. */
napi_value lc_SetupPrimary(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    napi_value o = argv[0];
    cluster_settings st;
    cluster_settings_init(&st, sizeof st);
    char *exec = NULL, *cwd = NULL, *serialization = NULL, **args = NULL, **envv = NULL;
    int stdio[64];
    napi_value v;
    bool ok = true;
    int r = 0;
#define FIELD(name) (napi_get_named_property(env, o, name, &v) == napi_ok && !lc_is_nullish(env, v))
    if (FIELD("exec") && !(st.exec = exec = lc_dup_string(env, v)))
        goto fail;
    if (FIELD("cwd") && !(st.cwd = cwd = lc_dup_string(env, v)))
        goto fail;
    if (FIELD("serialization") && !(st.serialization = serialization = lc_dup_string(env, v)))
        goto fail;
    if (FIELD("args")) {
        args = lc_dup_strv(env, v, &ok);
        if (!ok)
            goto fail;
        st.args = (const char *const *)args;
    }
    if (FIELD("env")) {
        envv = lc_dup_strv(env, v, &ok);
        if (!ok)
            goto fail;
        st.env = (const char *const *)envv;
    }
    if (FIELD("silent") && !lc_arg_int(env, v, &st.silent))
        goto fail;
    if (FIELD("uid") && !lc_arg_int(env, v, &st.uid))
        goto fail;
    if (FIELD("gid") && !lc_arg_int(env, v, &st.gid))
        goto fail;
    if (FIELD("sched") && !lc_arg_int(env, v, &st.sched_policy))
        goto fail;
    if (FIELD("stdio")) {
        /* 3 entries, or more with CLUSTER_STDIO_IPC at index 3 (fds 4, 5, ... after it). */
        uint32_t n = 0;
        if (napi_get_array_length(env, v, &n) != napi_ok || n < 3 || n > 64) {
            napi_throw_range_error(env, NULL, "libcluster addon: stdio needs 3 to 64 entries");
            goto fail;
        }
        for (uint32_t i = 0; i < n; i++) {
            napi_value el;
            if (napi_get_element(env, v, i, &el) != napi_ok || !lc_arg_int(env, el, &stdio[i]))
                goto fail;
        }
        st.stdio = stdio;
        st.stdio_count = (int)n;
    }
#undef FIELD
    r = cluster_setup_primary(&st);
    free(exec);
    free(cwd);
    free(serialization);
    lc_free_strv(args);
    lc_free_strv(envv);
    return lc_js_int(env, r);
fail:
    free(exec);
    free(cwd);
    free(serialization);
    lc_free_strv(args);
    lc_free_strv(envv);
    return NULL;
}
