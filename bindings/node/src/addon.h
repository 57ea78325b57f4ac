/* libcluster for Node.js: what the addon's C files share (not installed, not exported).
 *
 * Every file of src/ includes this first (it sets _GNU_SOURCE and NAPI_VERSION before any
 * system or Node header). What one file defines for another is named lc_* and declared
 * below with hidden visibility, so the .node exports only what NAPI_MODULE defines
 * (napi_register_module_v1, node_api_module_get_api_version_v1); all else is static.
 *
 *   addon.c        module init: loads once, the table of JS functions (native.*)
 *   constants.c    native.constants: cluster.h's values by name
 *   convert.c      JS values to and from C (numbers, strings, string arrays), N-API errors
 *   process.c      this process: the environment at load, a worker's exit, role, errors
 *   events.c       the event pump: cluster_event_fd() polled on the loop, events to JS
 *   primary.c      the primary's calls: settings, fork, kill, disconnect, worker queries
 *   channel.c      the IPC channel: messages, the fds that come with them, keep/close it
 *   server.c       a worker's server handle: polled fd, accepts, connection budget
 *   async_work.c   the two blocking calls (getServer, workerDisconnect) on libuv's pool
 *   supervision.c  supervision, hot upgrade and stats (primary), ready/draining (worker) */
#ifndef LIBCLUSTER_NODE_ADDON_H
#define LIBCLUSTER_NODE_ADDON_H

#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <cluster.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns NULL from the calling function (a JS entry point) when an N-API call fails,
 * with a JS error thrown unless one is already pending. */
#define NAPI_CALL(env, call)                                                        \
    do {                                                                            \
        if ((call) != napi_ok) {                                                    \
            lc_fail_napi((env), #call);                                             \
            return NULL;                                                            \
        }                                                                           \
    } while (0)

/* The functions of one or two int arguments that return an int. */
#define INT_FN1(Name, call)                                                          \
    napi_value Name(napi_env env, napi_callback_info info) {                         \
        size_t argc = 1;                                                             \
        napi_value argv[1];                                                          \
        int32_t a;                                                                   \
        NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));        \
        if (argc < 1 || !lc_arg_int(env, argv[0], &a))                               \
            return NULL;                                                             \
        return lc_js_int(env, call(a));                                              \
    }
#define INT_FN2(Name, call)                                                          \
    napi_value Name(napi_env env, napi_callback_info info) {                         \
        size_t argc = 2;                                                             \
        napi_value argv[2];                                                          \
        int32_t a, b;                                                                \
        NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));        \
        if (argc < 2 || !lc_arg_int(env, argv[0], &a) || !lc_arg_int(env, argv[1], &b)) \
            return NULL;                                                             \
        return lc_js_int(env, call(a, b));                                           \
    }

/* The "drained" pseudo-event's kind: not a cluster_event_type (this addon's own). */
#define ADDON_EVENT_DRAINED -1

/* A JS entry point (a function of `native`, listed in addon.c's Init). */
#define LC_JS_FN(name) napi_value name(napi_env env, napi_callback_info info)

#pragma GCC visibility push(hidden)

/* convert.c */
void lc_fail_napi(napi_env env, const char *what);
napi_value lc_js_int(napi_env env, int64_t v);
napi_value lc_js_bool(napi_env env, bool v);
napi_value lc_js_str_or_null(napi_env env, const char *s);
void lc_set_prop(napi_env env, napi_value obj, const char *name, napi_value v);
bool lc_arg_int(napi_env env, napi_value v, int32_t *out);
char *lc_dup_string(napi_env env, napi_value v);
bool lc_is_nullish(napi_env env, napi_value v);
void lc_free_strv(char **v);
char **lc_dup_strv(napi_env env, napi_value arr, bool *ok);

/* constants.c */
napi_value lc_constants_object(napi_env env);

/* process.c */
void lc_process_start(void);
LC_JS_FN(lc_IsPrimary);
LC_JS_FN(lc_IsWorker);
LC_JS_FN(lc_WorkerId);
LC_JS_FN(lc_LastError);
LC_JS_FN(lc_StrError);

/* events.c */
void lc_make_callback(napi_env env, napi_async_context ctx, napi_ref fn_ref, size_t argc,
                      napi_value *argv);
void lc_on_drained(const cluster_event *e, void *ud);
LC_JS_FN(lc_EventsStart);
LC_JS_FN(lc_EventsRef);
LC_JS_FN(lc_EventsStop);

/* primary.c */
LC_JS_FN(lc_Fork);
LC_JS_FN(lc_SetupPrimary);
LC_JS_FN(lc_Kill);
LC_JS_FN(lc_DisconnectWorker);
LC_JS_FN(lc_DisconnectAll);
LC_JS_FN(lc_WorkerState);
LC_JS_FN(lc_WorkerIsConnected);
LC_JS_FN(lc_WorkerIsDead);
LC_JS_FN(lc_WorkerExitedAfterDisconnect);
LC_JS_FN(lc_WorkerCount);
LC_JS_FN(lc_Workers);
LC_JS_FN(lc_WorkerPid);
LC_JS_FN(lc_WorkerStdio);

/* channel.c */
LC_JS_FN(lc_Send);
LC_JS_FN(lc_KeepChannel);
LC_JS_FN(lc_CloseChannel);
LC_JS_FN(lc_FdInfo);
LC_JS_FN(lc_CloseFd);

/* server.c */
bool lc_server_wrap(napi_env env, cluster_server *srv, napi_value *handle);
LC_JS_FN(lc_ServerStart);
LC_JS_FN(lc_ServerRef);
LC_JS_FN(lc_ServerClose);
LC_JS_FN(lc_ServerPort);
LC_JS_FN(lc_ServerDupFd);
LC_JS_FN(lc_ServerLimit);

/* async_work.c */
LC_JS_FN(lc_GetServer);
LC_JS_FN(lc_WorkerDisconnect);

/* supervision.c */
LC_JS_FN(lc_Supervise);
LC_JS_FN(lc_RollingRestart);
LC_JS_FN(lc_Scale);
LC_JS_FN(lc_DrainWorker);
LC_JS_FN(lc_BreakerReset);
LC_JS_FN(lc_Upgrade);
LC_JS_FN(lc_IsUpgrade);
LC_JS_FN(lc_Control);
LC_JS_FN(lc_StatsJson);
LC_JS_FN(lc_HandleSignal);
LC_JS_FN(lc_SignalMap);
LC_JS_FN(lc_WorkerReady);
LC_JS_FN(lc_WorkerDraining);

#pragma GCC visibility pop

#endif
