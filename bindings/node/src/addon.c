/* libcluster for Node.js: the native half of require('libcluster-node').
 *
 * A thin layer over include/cluster.h; lib/ builds node:cluster's API on top of it.
 *
 * The C files of src/ each hold one concept (listed in addon.h); this one is the module's
 * init: it refuses a second load, starts the process's side (process.c), and defines the
 * functions and constants of `native`.
 *
 * Threads: every function of the addon runs on the JS thread, except the `execute` halves
 * of the two async works (cluster_get_server and cluster_worker_disconnect block until the
 * primary answers, so they run on libuv's thread pool and touch no JS value: async_work.c).
 * Events reach JS through uv_poll handles on the main loop: one on cluster_event_fd()
 * (events.c), one per server fd (server.c); their callbacks call
 * cluster_poll_event/cluster_accept and then JS, on the JS thread. No JS is ever called
 * from another thread.
 *
 * Return values follow cluster.h: >= 0 on success, a negative code on failure (then JS
 * calls lastError() at once, on the same thread). */
#include "addon.h"

static napi_value Init(napi_env env, napi_value exports) {
    static int loaded;
    if (loaded++) {
        /* libcluster is per process: one JS environment (the main thread) drives it. */
        napi_throw_error(env, "ERR_LIBCLUSTER_MAIN_THREAD",
                         "libcluster can only be loaded in the main thread of a process");
        return NULL;
    }
    lc_process_start();

    napi_property_descriptor props[] = {
#define FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}
        FN("isPrimary", lc_IsPrimary),
        FN("isWorker", lc_IsWorker),
        FN("workerId", lc_WorkerId),
        FN("lastError", lc_LastError),
        FN("strerror", lc_StrError),
        FN("eventsStart", lc_EventsStart),
        FN("eventsRef", lc_EventsRef),
        FN("eventsStop", lc_EventsStop),
        FN("fork", lc_Fork),
        FN("setupPrimary", lc_SetupPrimary),
        FN("kill", lc_Kill),
        FN("send", lc_Send),
        FN("disconnectWorker", lc_DisconnectWorker),
        FN("disconnectAll", lc_DisconnectAll),
        FN("closeChannel", lc_CloseChannel),
        FN("keepChannel", lc_KeepChannel),
        FN("workerState", lc_WorkerState),
        FN("workerIsConnected", lc_WorkerIsConnected),
        FN("workerIsDead", lc_WorkerIsDead),
        FN("workerExitedAfterDisconnect", lc_WorkerExitedAfterDisconnect),
        FN("workerCount", lc_WorkerCount),
        FN("workers", lc_Workers),
        FN("workerPid", lc_WorkerPid),
        FN("workerStdio", lc_WorkerStdio),
        FN("workerDisconnect", lc_WorkerDisconnect),
        FN("getServer", lc_GetServer),
        FN("serverStart", lc_ServerStart),
        FN("serverRef", lc_ServerRef),
        FN("serverClose", lc_ServerClose),
        FN("serverPort", lc_ServerPort),
        FN("serverDupFd", lc_ServerDupFd),
        FN("serverLimit", lc_ServerLimit),
        FN("fdInfo", lc_FdInfo),
        FN("closeFd", lc_CloseFd),
        FN("supervise", lc_Supervise),
        FN("rollingRestart", lc_RollingRestart),
        FN("scale", lc_Scale),
        FN("drainWorker", lc_DrainWorker),
        FN("breakerReset", lc_BreakerReset),
        FN("upgrade", lc_Upgrade),
        FN("isUpgrade", lc_IsUpgrade),
        FN("control", lc_Control),
        FN("statsJson", lc_StatsJson),
        FN("handleSignal", lc_HandleSignal),
        FN("signalMap", lc_SignalMap),
        FN("workerReady", lc_WorkerReady),
        FN("workerDraining", lc_WorkerDraining),
#undef FN
    };
    NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
    napi_value constants = lc_constants_object(env);
    if (!constants)
        return NULL;
    NAPI_CALL(env, napi_set_named_property(env, exports, "constants", constants));
    return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
