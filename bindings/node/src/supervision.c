/* libcluster for Node.js: supervision (supervise, rolling restart, scale, drain, breaker,
 * control, signals), hot upgrade of the primary and stats, and a supervised worker's
 * ready/draining calls. */
#include "addon.h"

#include <stdlib.h>

/* Supervision (primary). */
INT_FN1(lc_RollingRestart, cluster_rolling_restart)
INT_FN1(lc_Scale, cluster_scale)
INT_FN1(lc_DrainWorker, cluster_drain_worker)
INT_FN1(lc_Control, cluster_control)
INT_FN1(lc_HandleSignal, cluster_handle_signal)
INT_FN2(lc_SignalMap, cluster_signal_map)

napi_value lc_BreakerReset(napi_env env, napi_callback_info info) {
    (void)info;
    return lc_js_int(env, cluster_breaker_reset());
}

/* Hot upgrade of the primary (docs/upgrade.md): `ready_timeout_ms` (validated by JS; 0:
 * the library's default), the new primary's pid or a negative code. */
static int upgrade_with_timeout(int32_t ready_timeout_ms) {
    cluster_upgrade_options o;
    int rc = cluster_upgrade_options_init(&o, sizeof o);
    if (rc < 0)
        return rc;
    if (ready_timeout_ms > 0)
        o.ready_timeout_ms = ready_timeout_ms;
    return cluster_upgrade(&o);
}
INT_FN1(lc_Upgrade, upgrade_with_timeout)

napi_value lc_IsUpgrade(napi_env env, napi_callback_info info) {
    (void)info;
    return lc_js_int(env, cluster_is_upgrade());
}

/* Supervision (worker). */
napi_value lc_WorkerReady(napi_env env, napi_callback_info info) {
    (void)info;
    return lc_js_int(env, cluster_worker_ready());
}

napi_value lc_WorkerDraining(napi_env env, napi_callback_info info) {
    (void)info;
    return lc_js_int(env, cluster_worker_draining());
}

/* statsJson() -> the cluster's figures as JSON text, or a negative code. */
napi_value lc_StatsJson(napi_env env, napi_callback_info info) {
    (void)info;
    size_t cap = 4096;
    for (;;) {
        char *buf = malloc(cap);
        if (!buf) {
            napi_throw_error(env, NULL, "libcluster addon: out of memory");
            return NULL;
        }
        int n = cluster_stats_json(buf, cap);
        if (n < 0) {
            free(buf);
            return lc_js_int(env, n);
        }
        if ((size_t)n < cap) {
            napi_value out = lc_js_str_or_null(env, buf);
            free(buf);
            return out;
        }
        free(buf);
        cap = (size_t)n + 1024; /* grew meanwhile: try again with room to spare */
    }
}

/* A field of the supervise() object as a uint64 (a number or a bigint; JS validated it). */
static bool arg_u64(napi_env env, napi_value v, uint64_t *out) {
    napi_valuetype t;
    if (napi_typeof(env, v, &t) != napi_ok)
        return false;
    if (t == napi_bigint) {
        bool lossless;
        if (napi_get_value_bigint_uint64(env, v, out, &lossless) != napi_ok || !lossless) {
            napi_throw_range_error(env, NULL, "libcluster addon: expected an unsigned 64-bit integer");
            return false;
        }
        return true;
    }
    int64_t i;
    if (napi_get_value_int64(env, v, &i) != napi_ok || i < 0) {
        napi_throw_type_error(env, NULL, "libcluster addon: expected a non-negative integer");
        return false;
    }
    *out = (uint64_t)i;
    return true;
}

/* supervise({workers, backoffBaseMs, ...}): cluster_supervisor_init's values, then the
 * fields present (named as the struct's, in camelCase); -> 0 or a negative code. */
napi_value lc_Supervise(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 1 || lc_is_nullish(env, argv[0])) {
        napi_throw_type_error(env, NULL, "libcluster addon: supervise needs an object");
        return NULL;
    }
    napi_value o = argv[0], v;
    cluster_supervisor sup;
    int r = cluster_supervisor_init(&sup, sizeof sup);
    if (r < 0)
        return lc_js_int(env, r);
#define FIELD(name) (napi_get_named_property(env, o, name, &v) == napi_ok && !lc_is_nullish(env, v))
#define INT(name, field)                                                             \
    if (FIELD(name) && !lc_arg_int(env, v, &sup.field))                                 \
        return NULL;
#define U64(name, field)                                                             \
    if (FIELD(name) && !arg_u64(env, v, &sup.field))                                 \
        return NULL;
    INT("workers", workers)
    INT("backoffBaseMs", backoff_base_ms)
    INT("backoffMaxMs", backoff_max_ms)
    INT("stableMs", stable_ms)
    INT("breakerBurst", breaker_burst)
    INT("breakerWindowMs", breaker_window_ms)
    INT("breakerCooldownMs", breaker_cooldown_ms)
    INT("readyOn", ready_on)
    INT("bootTimeoutMs", boot_timeout_ms)
    INT("drainTimeoutMs", drain_timeout_ms)
    INT("killAfterMs", kill_after_ms)
    INT("stuckTimeoutMs", stuck_timeout_ms)
    U64("maxConnections", max_connections)
    U64("maxRssBytes", max_rss_bytes)
    INT("maxAgeMs", max_age_ms)
    INT("recycleJitterPct", recycle_jitter_pct)
    INT("rssIntervalMs", rss_interval_ms)
    INT("maxSurge", max_surge)
    INT("drainDelayMs", drain_delay_ms)
    U64("seed", seed)
#undef U64
#undef INT
#undef FIELD
    return lc_js_int(env, cluster_supervise(&sup));
}
