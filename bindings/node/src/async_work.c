/* libcluster for Node.js: the two blocking calls. cluster_get_server and
 * cluster_worker_disconnect wait for the primary's answer, so they run as async work on
 * libuv's thread pool (the `execute` halves touch no JS value); the `complete` halves call
 * JS back on the JS thread. */
#include "addon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    napi_async_work work;
    napi_ref cb;
    /* get_server */
    char *address;
    int port;
    cluster_server_options opts;
    cluster_server *srv;
    /* both */
    int rc;
    char message[512];
} job_t;

static void job_error(job_t *j) {
    snprintf(j->message, sizeof j->message, "%s", cluster_last_error());
}

static void get_server_execute(napi_env env, void *data) {
    (void)env;
    job_t *j = data;
    j->rc = cluster_get_server(&j->srv, j->address, j->port, &j->opts);
    if (j->rc < 0)
        job_error(j);
}

static void job_free(napi_env env, job_t *j) {
    if (j->cb)
        napi_delete_reference(env, j->cb);
    if (j->work)
        napi_delete_async_work(env, j->work);
    free(j->address);
    free(j);
}

/* Queues `j` on libuv's thread pool with `cb` as its JS callback. On failure frees `j`,
 * throws, and returns false. */
static bool queue_job(napi_env env, job_t *j, napi_value cb, const char *name,
                      napi_async_execute_callback execute, napi_async_complete_callback complete) {
    napi_value n;
    if (napi_create_reference(env, cb, 1, &j->cb) != napi_ok ||
        napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &n) != napi_ok ||
        napi_create_async_work(env, NULL, n, execute, complete, j, &j->work) != napi_ok ||
        napi_queue_async_work(env, j->work) != napi_ok) {
        job_free(env, j);
        lc_fail_napi(env, name);
        return false;
    }
    return true;
}

/* Frees `j`, then calls its callback with `argc` arguments (inside a handle scope the
 * caller opened). */
static void finish_job(napi_env env, job_t *j, size_t argc, napi_value *argv) {
    napi_value cb, recv, result;
    napi_get_reference_value(env, j->cb, &cb);
    napi_get_undefined(env, &recv);
    job_free(env, j);
    napi_call_function(env, recv, cb, argc, argv, &result);
}

/* Calls cb(code, message|null, handle|null) on the JS thread. */
static void get_server_complete(napi_env env, napi_status status, void *data) {
    job_t *j = data;
    napi_handle_scope scope;
    napi_open_handle_scope(env, &scope);
    napi_value handle, argv[3];
    napi_get_null(env, &handle);
    if (status != napi_ok && j->rc >= 0) {
        j->rc = -ECANCELED;
        snprintf(j->message, sizeof j->message, "cancelled");
    }
    if (j->rc >= 0 && j->srv) {
        if (lc_server_wrap(env, j->srv, &handle)) {
            j->srv = NULL;
        } else {
            cluster_server_close(j->srv);
            j->srv = NULL;
            j->rc = -ENOMEM;
            snprintf(j->message, sizeof j->message, "out of memory");
            napi_get_null(env, &handle);
        }
    }
    argv[0] = lc_js_int(env, j->rc);
    argv[1] = lc_js_str_or_null(env, j->rc < 0 ? j->message : NULL);
    argv[2] = handle;
    finish_job(env, j, 3, argv);
    napi_close_handle_scope(env, scope);
}

/* getServer(address|null, port, backlog, ipv6Only, exclusive, callback). */
napi_value lc_GetServer(napi_env env, napi_callback_info info) {
    size_t argc = 7;
    napi_value argv[7];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 6) {
        napi_throw_type_error(env, NULL, "libcluster addon: getServer needs 6 arguments");
        return NULL;
    }
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
        napi_throw_error(env, NULL, "libcluster addon: out of memory");
        return NULL;
    }
    cluster_server_options_init(&j->opts, sizeof j->opts);
    j->opts.nonblocking = 1;
    bool ipv6_only = false, exclusive = false;
    if ((!lc_is_nullish(env, argv[0]) && !(j->address = lc_dup_string(env, argv[0]))) ||
        !lc_arg_int(env, argv[1], &j->port) || !lc_arg_int(env, argv[2], &j->opts.backlog) ||
        napi_get_value_bool(env, argv[3], &ipv6_only) != napi_ok ||
        napi_get_value_bool(env, argv[4], &exclusive) != napi_ok) {
        free(j->address);
        free(j);
        bool pending = false;
        napi_is_exception_pending(env, &pending);
        if (!pending)
            napi_throw_type_error(env, NULL, "libcluster addon: bad getServer arguments");
        return NULL;
    }
    j->opts.ipv6_only = ipv6_only;
    j->opts.exclusive = exclusive;
    /* Optional 7th argument, bits: 1 UDP (a dgram bind), 2 SO_REUSEADDR (UDP), 4 readableAll,
     * 8 writableAll (a Unix socket path). */
    int32_t udp = 0;
    if (argc > 6 && !lc_is_nullish(env, argv[6]) && !lc_arg_int(env, argv[6], &udp)) {
        free(j->address);
        free(j);
        return NULL;
    }
    j->opts.udp = udp & 1;
    j->opts.reuse_addr = (udp & 2) ? 1 : 0;
    j->opts.readable_all = (udp & 4) ? 1 : 0;
    j->opts.writable_all = (udp & 8) ? 1 : 0;
    queue_job(env, j, argv[5], "libcluster:getServer", get_server_execute, get_server_complete);
    return NULL;
}

static void worker_disconnect_execute(napi_env env, void *data) {
    (void)env;
    job_t *j = data;
    j->rc = cluster_worker_disconnect();
    if (j->rc < 0)
        job_error(j);
}

/* Calls cb(code, message|null). */
static void worker_disconnect_complete(napi_env env, napi_status status, void *data) {
    (void)status;
    job_t *j = data;
    napi_handle_scope scope;
    napi_open_handle_scope(env, &scope);
    napi_value argv[2];
    argv[0] = lc_js_int(env, j->rc);
    argv[1] = lc_js_str_or_null(env, j->rc < 0 ? j->message : NULL);
    finish_job(env, j, 2, argv);
    napi_close_handle_scope(env, scope);
}

/* workerDisconnect(callback): cluster.worker.disconnect(), off the JS thread (it waits for
 * the primary's ack). */
napi_value lc_WorkerDisconnect(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
        napi_throw_error(env, NULL, "libcluster addon: out of memory");
        return NULL;
    }
    queue_job(env, j, argv[0], "libcluster:disconnect", worker_disconnect_execute, worker_disconnect_complete);
    return NULL;
}
