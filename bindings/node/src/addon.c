/* libcluster for Node.js: the native half of require('libcluster-node').
 *
 * A thin layer over include/cluster.h; lib/ builds node:cluster's API on top of it.
 *
 * Threads: every function here runs on the JS thread, except the `execute` halves of the
 * two async works (cluster_get_server and cluster_worker_disconnect block until the
 * primary answers, so they run on libuv's thread pool and touch no JS value). Events reach
 * JS through uv_poll handles on the main loop: one on cluster_event_fd(), one per server
 * fd; their callbacks call cluster_poll_event/cluster_accept and then JS, on the JS thread.
 * No JS is ever called from another thread.
 *
 * Lifetimes: a server is a JS object wrapping a server_t (napi_wrap, with a finalizer).
 * close() stops and closes its uv_poll and frees the cluster_server at once; the server_t
 * itself is freed once both the finalizer and the uv close callback have run. While a
 * server is polled its JS callback is held by a strong reference; close() drops it.
 * Return values follow cluster.h: >= 0 on success, a negative code on failure (then JS
 * calls lastError() at once, on the same thread). */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <cluster.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---------------------------------------------------------------- helpers */

#define NAPI_CALL(env, call)                                                        \
    do {                                                                            \
        if ((call) != napi_ok) {                                                    \
            fail_napi((env), #call);                                                \
            return NULL;                                                            \
        }                                                                           \
    } while (0)

static void fail_napi(napi_env env, const char *what) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending)
        return;
    const napi_extended_error_info *info = NULL;
    napi_get_last_error_info(env, &info);
    char msg[256];
    snprintf(msg, sizeof msg, "libcluster addon: %s failed: %s", what,
             info && info->error_message ? info->error_message : "unknown N-API error");
    napi_throw_error(env, NULL, msg);
}

static napi_value js_int(napi_env env, int64_t v) {
    napi_value out;
    if (napi_create_int64(env, v, &out) != napi_ok)
        return NULL;
    return out;
}

static napi_value js_bool(napi_env env, bool v) {
    napi_value out;
    if (napi_get_boolean(env, v, &out) != napi_ok)
        return NULL;
    return out;
}

static napi_value js_str_or_null(napi_env env, const char *s) {
    napi_value out;
    if (s) {
        if (napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out) != napi_ok)
            return NULL;
    } else if (napi_get_null(env, &out) != napi_ok) {
        return NULL;
    }
    return out;
}

static void set_prop(napi_env env, napi_value obj, const char *name, napi_value v) {
    if (v)
        napi_set_named_property(env, obj, name, v);
}

/* Reads argument `i` as an int32; the JS layer has already validated it. */
static bool arg_int(napi_env env, napi_value v, int32_t *out) {
    if (napi_get_value_int32(env, v, out) != napi_ok) {
        napi_throw_type_error(env, NULL, "libcluster addon: expected a number");
        return false;
    }
    return true;
}

/* A malloc'd UTF-8 copy of a JS string, or NULL (with a TypeError thrown). */
static char *dup_string(napi_env env, napi_value v) {
    size_t len = 0;
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
        napi_throw_type_error(env, NULL, "libcluster addon: expected a string");
        return NULL;
    }
    char *s = malloc(len + 1);
    if (!s) {
        napi_throw_error(env, NULL, "libcluster addon: out of memory");
        return NULL;
    }
    napi_get_value_string_utf8(env, v, s, len + 1, &len);
    return s;
}

static bool is_nullish(napi_env env, napi_value v) {
    napi_valuetype t;
    if (!v || napi_typeof(env, v, &t) != napi_ok)
        return true;
    return t == napi_undefined || t == napi_null;
}

static void free_strv(char **v) {
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* A NULL-terminated malloc'd copy of a JS array of strings. Sets *ok = false on error. */
static char **dup_strv(napi_env env, napi_value arr, bool *ok) {
    *ok = true;
    if (is_nullish(env, arr))
        return NULL;
    uint32_t n = 0;
    if (napi_get_array_length(env, arr, &n) != napi_ok) {
        napi_throw_type_error(env, NULL, "libcluster addon: expected an array of strings");
        *ok = false;
        return NULL;
    }
    char **v = calloc((size_t)n + 1, sizeof *v);
    if (!v) {
        napi_throw_error(env, NULL, "libcluster addon: out of memory");
        *ok = false;
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++) {
        napi_value el;
        if (napi_get_element(env, arr, i, &el) != napi_ok || !(v[i] = dup_string(env, el))) {
            free_strv(v);
            *ok = false;
            return NULL;
        }
    }
    return v;
}

/* Calls `fn` from a libuv callback (no JS on the stack), with async-hooks context, and
 * turns an exception it throws into an uncaught exception, as Node's own callbacks do. */
static void make_callback(napi_env env, napi_async_context ctx, napi_ref fn_ref, size_t argc,
                          napi_value *argv) {
    napi_value fn, recv, result;
    if (napi_get_reference_value(env, fn_ref, &fn) != napi_ok || !fn)
        return;
    napi_get_global(env, &recv); /* napi_make_callback wants an object */
    napi_status st = napi_make_callback(env, ctx, recv, fn, argc, argv, &result);
    if (st != napi_ok) {
        bool pending = false;
        napi_is_exception_pending(env, &pending);
        if (pending) {
            napi_value err;
            napi_get_and_clear_last_exception(env, &err);
            napi_fatal_exception(env, err);
        }
    }
}

/* ------------------------------------------------------ worker start-up */

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

/* ------------------------------------------------------------- events */

static struct {
    napi_env env;
    uv_poll_t poll;
    int state; /* 0: none, 1: polling, 2: closing/closed */
    int refed;
    napi_ref cb;
    napi_async_context actx;
    unsigned drained; /* cluster_disconnect callbacks run so far */
} ev;

static void on_drained(const cluster_event *e, void *ud) {
    (void)e;
    (void)ud;
    ev.drained++;
}

static napi_value event_object(napi_env env, const cluster_event *e) {
    napi_value o;
    if (napi_create_object(env, &o) != napi_ok)
        return NULL;
    set_prop(env, o, "kind", js_int(env, e->kind));
    set_prop(env, o, "id", js_int(env, e->worker_id));
    set_prop(env, o, "pid", js_int(env, e->pid));
    switch (e->kind) {
    case CLUSTER_EVENT_LISTENING:
        set_prop(env, o, "address", js_str_or_null(env, e->address));
        set_prop(env, o, "port", js_int(env, e->port));
        set_prop(env, o, "addressType", js_int(env, e->address_type));
        set_prop(env, o, "fd", js_int(env, e->listening_fd));
        break;
    case CLUSTER_EVENT_MESSAGE:
        set_prop(env, o, "data", js_str_or_null(env, e->data));
        set_prop(env, o, "fd", js_int(env, e->fd));
        break;
    case CLUSTER_EVENT_DISCONNECT:
        set_prop(env, o, "exitedAfterDisconnect", js_bool(env, e->exited_after_disconnect != 0));
        break;
    case CLUSTER_EVENT_EXIT:
        set_prop(env, o, "exitCode", js_int(env, e->exit_code));
        set_prop(env, o, "signal", js_int(env, e->signal));
        set_prop(env, o, "exitedAfterDisconnect", js_bool(env, e->exited_after_disconnect != 0));
        break;
    case CLUSTER_EVENT_ERROR:
        set_prop(env, o, "error", js_int(env, e->error));
        set_prop(env, o, "data", js_str_or_null(env, e->data));
        break;
    /* Supervision: the fields the header gives each kind (the others are 0). */
    case CLUSTER_EVENT_READY:
        break;
    case CLUSTER_EVENT_DRAINING:
        set_prop(env, o, "state", js_int(env, e->state));
        set_prop(env, o, "reason", js_int(env, e->reason));
        break;
    case CLUSTER_EVENT_RESPAWN:
        set_prop(env, o, "delayMs", js_int(env, e->delay_ms));
        set_prop(env, o, "count", js_int(env, e->count));
        break;
    case CLUSTER_EVENT_BREAKER:
        set_prop(env, o, "state", js_int(env, e->state));
        set_prop(env, o, "count", js_int(env, e->count));
        break;
    case CLUSTER_EVENT_ROLLOUT:
        set_prop(env, o, "state", js_int(env, e->state));
        set_prop(env, o, "generation", js_int(env, e->generation));
        set_prop(env, o, "count", js_int(env, e->count));
        break;
    case CLUSTER_EVENT_STUCK:
        set_prop(env, o, "delayMs", js_int(env, e->delay_ms));
        break;
    case CLUSTER_EVENT_RECYCLE:
        set_prop(env, o, "reason", js_int(env, e->reason));
        break;
    case CLUSTER_EVENT_CONTROL:
        set_prop(env, o, "state", js_int(env, e->state));
        set_prop(env, o, "signal", js_int(env, e->signal));
        break;
    case CLUSTER_EVENT_UPGRADE:
        set_prop(env, o, "state", js_int(env, e->state));
        set_prop(env, o, "error", js_int(env, e->error));
        break;
    default:
        break;
    }
    return o;
}

/* The "drained" pseudo-event's kind: not a cluster_event_type (this addon's own). */
#define ADDON_EVENT_DRAINED -1

/* The "drained" pseudo-event: a cluster.disconnect() callback is due. */
static napi_value drained_object(napi_env env) {
    napi_value o;
    if (napi_create_object(env, &o) != napi_ok)
        return NULL;
    set_prop(env, o, "kind", js_int(env, ADDON_EVENT_DRAINED));
    return o;
}

#define EVENTS_PER_CALLBACK 256

static void on_event_fd(uv_poll_t *p, int status, int events) {
    (void)p;
    (void)events;
    (void)status; /* an error on an eventfd cannot happen; drain anyway */
    napi_env env = ev.env;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok)
        return;
    napi_value arr;
    if (napi_create_array(env, &arr) != napi_ok) {
        napi_close_handle_scope(env, scope);
        return;
    }
    uint32_t n = 0;
    while (n < EVENTS_PER_CALLBACK) {
        cluster_event e;
        unsigned before = ev.drained;
        int r = cluster_poll_event(&e, 0);
        if (ev.drained != before)
            napi_set_element(env, arr, n++, drained_object(env));
        if (r <= 0)
            break;
        napi_value o = event_object(env, &e);
        if (o) {
            napi_set_element(env, arr, n++, o);
        } else if (e.kind == CLUSTER_EVENT_MESSAGE && e.fd >= 0) {
            close(e.fd);
        }
    }
    if (n > 0 && ev.cb) {
        napi_value argv[1] = {arr};
        make_callback(env, ev.actx, ev.cb, 1, argv);
    }
    napi_close_handle_scope(env, scope);
}

/* eventsStart(callback): starts polling cluster_event_fd() (unref'd: see eventsRef). */
static napi_value EventsStart(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (ev.state != 0)
        return js_int(env, 0);
    int fd = cluster_event_fd();
    if (fd < 0)
        return js_int(env, fd);
    uv_loop_t *loop;
    NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
    int r = uv_poll_init(loop, &ev.poll, fd);
    if (r < 0)
        return js_int(env, r);
    ev.env = env;
    NAPI_CALL(env, napi_create_reference(env, argv[0], 1, &ev.cb));
    napi_value name;
    NAPI_CALL(env, napi_create_string_utf8(env, "libcluster:events", NAPI_AUTO_LENGTH, &name));
    NAPI_CALL(env, napi_async_init(env, NULL, name, &ev.actx));
    r = uv_poll_start(&ev.poll, UV_READABLE, on_event_fd);
    if (r < 0)
        return js_int(env, r);
    uv_unref((uv_handle_t *)&ev.poll);
    ev.refed = 0;
    ev.state = 1;
    return js_int(env, 0);
}

/* eventsRef(bool): whether pending lifecycle events keep the process alive. */
static napi_value EventsRef(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    bool on = false;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    NAPI_CALL(env, napi_get_value_bool(env, argv[0], &on));
    if (ev.state == 1 && on != (ev.refed != 0)) {
        if (on)
            uv_ref((uv_handle_t *)&ev.poll);
        else
            uv_unref((uv_handle_t *)&ev.poll);
        ev.refed = on;
    }
    return NULL;
}

static void on_events_closed(uv_handle_t *h) {
    (void)h;
}

/* eventsStop(): no more events will be delivered (a worker whose channel closed). */
static napi_value EventsStop(napi_env env, napi_callback_info info) {
    (void)info;
    if (ev.state == 1) {
        ev.state = 2;
        uv_close((uv_handle_t *)&ev.poll, on_events_closed);
        if (ev.cb) {
            napi_delete_reference(env, ev.cb);
            ev.cb = NULL;
        }
        napi_async_destroy(env, ev.actx);
    }
    return NULL;
}

/* -------------------------------------------------------- simple calls */

static napi_value IsPrimary(napi_env env, napi_callback_info info) {
    (void)info;
    return js_bool(env, cluster_is_primary() == 1);
}

static napi_value IsWorker(napi_env env, napi_callback_info info) {
    (void)info;
    return js_bool(env, cluster_is_worker() == 1);
}

static napi_value WorkerId(napi_env env, napi_callback_info info) {
    (void)info;
    return js_int(env, cluster_worker_id());
}

static napi_value LastError(napi_env env, napi_callback_info info) {
    (void)info;
    return js_str_or_null(env, cluster_last_error());
}

static napi_value StrError(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    int32_t code;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (!arg_int(env, argv[0], &code))
        return NULL;
    return js_str_or_null(env, cluster_strerror(code));
}

/* The functions of one or two int arguments that return an int. */
#define INT_FN1(Name, call)                                                          \
    static napi_value Name(napi_env env, napi_callback_info info) {                  \
        size_t argc = 1;                                                             \
        napi_value argv[1];                                                          \
        int32_t a;                                                                   \
        NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));        \
        if (argc < 1 || !arg_int(env, argv[0], &a))                                  \
            return NULL;                                                             \
        return js_int(env, call(a));                                                 \
    }
#define INT_FN2(Name, call)                                                          \
    static napi_value Name(napi_env env, napi_callback_info info) {                  \
        size_t argc = 2;                                                             \
        napi_value argv[2];                                                          \
        int32_t a, b;                                                                \
        NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));        \
        if (argc < 2 || !arg_int(env, argv[0], &a) || !arg_int(env, argv[1], &b))    \
            return NULL;                                                             \
        return js_int(env, call(a, b));                                              \
    }

INT_FN2(Kill, cluster_kill)
INT_FN1(DisconnectWorker, cluster_disconnect_worker)
INT_FN1(WorkerState, cluster_worker_get_state)
INT_FN1(WorkerIsConnected, cluster_worker_is_connected)
INT_FN1(WorkerIsDead, cluster_worker_is_dead)
INT_FN1(WorkerExitedAfterDisconnect, cluster_worker_exited_after_disconnect)
INT_FN1(WorkerPid, cluster_worker_pid)
INT_FN2(WorkerStdio, cluster_worker_stdio)
/* Supervision (primary). */
INT_FN1(RollingRestart, cluster_rolling_restart)
INT_FN1(Scale, cluster_scale)
INT_FN1(DrainWorker, cluster_drain_worker)
INT_FN1(Control, cluster_control)
INT_FN1(HandleSignal, cluster_handle_signal)
INT_FN2(SignalMap, cluster_signal_map)

static napi_value BreakerReset(napi_env env, napi_callback_info info) {
    (void)info;
    return js_int(env, cluster_breaker_reset());
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
INT_FN1(Upgrade, upgrade_with_timeout)

static napi_value IsUpgrade(napi_env env, napi_callback_info info) {
    (void)info;
    return js_int(env, cluster_is_upgrade());
}

/* Supervision (worker). */
static napi_value WorkerReady(napi_env env, napi_callback_info info) {
    (void)info;
    return js_int(env, cluster_worker_ready());
}

static napi_value WorkerDraining(napi_env env, napi_callback_info info) {
    (void)info;
    return js_int(env, cluster_worker_draining());
}

/* statsJson() -> the cluster's figures as JSON text, or a negative code. */
static napi_value StatsJson(napi_env env, napi_callback_info info) {
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
            return js_int(env, n);
        }
        if ((size_t)n < cap) {
            napi_value out = js_str_or_null(env, buf);
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
static napi_value Supervise(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 1 || is_nullish(env, argv[0])) {
        napi_throw_type_error(env, NULL, "libcluster addon: supervise needs an object");
        return NULL;
    }
    napi_value o = argv[0], v;
    cluster_supervisor sup;
    int r = cluster_supervisor_init(&sup, sizeof sup);
    if (r < 0)
        return js_int(env, r);
#define FIELD(name) (napi_get_named_property(env, o, name, &v) == napi_ok && !is_nullish(env, v))
#define INT(name, field)                                                             \
    if (FIELD(name) && !arg_int(env, v, &sup.field))                                 \
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
    return js_int(env, cluster_supervise(&sup));
}

static napi_value WorkerCount(napi_env env, napi_callback_info info) {
    (void)info;
    return js_int(env, cluster_worker_count());
}

/* workers(): the ids in cluster.workers, or a negative code. */
static napi_value Workers(napi_env env, napi_callback_info info) {
    (void)info;
    int n = cluster_workers(NULL, 0);
    for (;;) {
        if (n < 0)
            return js_int(env, n);
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
            return m < 0 ? js_int(env, m) : NULL;
        }
        for (int i = 0; i < m; i++)
            napi_set_element(env, arr, (uint32_t)i, js_int(env, ids[i]));
        free(ids);
        return arr;
    }
}

/* fork(envArray | null) -> id or a negative code. */
static napi_value Fork(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1] = {NULL};
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    bool ok;
    char **envv = dup_strv(env, argc ? argv[0] : NULL, &ok);
    if (!ok)
        return NULL;
    int r = cluster_fork((const char *const *)envv);
    free_strv(envv);
    return js_int(env, r);
}

/* send(id, json, fd) -> 0 or a negative code. */
static napi_value Send(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    int32_t id, fd;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 3 || !arg_int(env, argv[0], &id) || !arg_int(env, argv[2], &fd))
        return NULL;
    char *json = dup_string(env, argv[1]);
    if (!json)
        return NULL;
    int r = cluster_send(id, json, fd);
    free(json);
    return js_int(env, r);
}

/* disconnectAll() -> how many workers were told, or a negative code. A "drained"
 * pseudo-event (kind -1) follows once cluster.workers is empty. */
static napi_value DisconnectAll(napi_env env, napi_callback_info info) {
    (void)info;
    return js_int(env, cluster_disconnect(on_drained, NULL));
}

/* keepChannel(bool) -> 0 or a negative code: in a worker, a primary's disconnect leaves the
 * channel open until workerDisconnect() (DISCONNECT_REQUESTED comes first). */
static napi_value KeepChannel(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    bool on = false;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 1 || napi_get_value_bool(env, argv[0], &on) != napi_ok)
        return NULL;
    return js_int(env, cluster_worker_keep_channel(on ? 1 : 0));
}

/* closeChannel(id) -> 0 or a negative code: worker.process.disconnect(). */
static napi_value CloseChannel(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    int32_t id;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 1 || !arg_int(env, argv[0], &id))
        return NULL;
    return js_int(env, cluster_close_channel(id));
}

/* setupPrimary({exec, args, cwd, env, silent, stdio, uid, gid, serialization, sched}):
 * absent or null fields keep their value. */
static napi_value SetupPrimary(napi_env env, napi_callback_info info) {
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
#define FIELD(name) (napi_get_named_property(env, o, name, &v) == napi_ok && !is_nullish(env, v))
    if (FIELD("exec") && !(st.exec = exec = dup_string(env, v)))
        goto fail;
    if (FIELD("cwd") && !(st.cwd = cwd = dup_string(env, v)))
        goto fail;
    if (FIELD("serialization") && !(st.serialization = serialization = dup_string(env, v)))
        goto fail;
    if (FIELD("args")) {
        args = dup_strv(env, v, &ok);
        if (!ok)
            goto fail;
        st.args = (const char *const *)args;
    }
    if (FIELD("env")) {
        envv = dup_strv(env, v, &ok);
        if (!ok)
            goto fail;
        st.env = (const char *const *)envv;
    }
    if (FIELD("silent") && !arg_int(env, v, &st.silent))
        goto fail;
    if (FIELD("uid") && !arg_int(env, v, &st.uid))
        goto fail;
    if (FIELD("gid") && !arg_int(env, v, &st.gid))
        goto fail;
    if (FIELD("sched") && !arg_int(env, v, &st.sched_policy))
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
            if (napi_get_element(env, v, i, &el) != napi_ok || !arg_int(env, el, &stdio[i]))
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
    free_strv(args);
    free_strv(envv);
    return js_int(env, r);
fail:
    free(exec);
    free(cwd);
    free(serialization);
    free_strv(args);
    free_strv(envv);
    return NULL;
}

/* fdInfo(fd) -> {domain, type, listening} for a socket that came with a message. */
static napi_value FdInfo(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    int32_t fd;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (!arg_int(env, argv[0], &fd))
        return NULL;
    int domain = -1, type = -1, listening = 0;
    socklen_t len = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
        domain = -1;
    len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        type = -1;
    len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0)
        listening = 0;
    napi_value o;
    NAPI_CALL(env, napi_create_object(env, &o));
    set_prop(env, o, "domain", js_str_or_null(env, domain == AF_INET ? "inet" : domain == AF_INET6 ? "inet6" : domain == AF_UNIX ? "unix" : NULL));
    set_prop(env, o, "type", js_str_or_null(env, type == SOCK_STREAM ? "stream" : type == SOCK_DGRAM ? "dgram" : NULL));
    set_prop(env, o, "listening", js_bool(env, listening != 0));
    return o;
}

static napi_value CloseFd(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    int32_t fd;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (!arg_int(env, argv[0], &fd))
        return NULL;
    return js_int(env, fd >= 0 ? close(fd) : 0);
}

/* ------------------------------------------------------------ servers */

typedef struct {
    napi_env env;
    cluster_server *srv; /* NULL once closed */
    int port;
    uv_poll_t poll;
    int poll_state; /* 0: none, 1: initialised, 2: closing, 3: closed */
    int finalized;
    napi_ref cb;
    napi_async_context actx;
    int has_actx;
    /* How many more connections JS takes (server.maxConnections); -1: no limit. At 0,
     * waiting connections go back to the primary (cluster_server_refuse) or, where that is
     * not how they come, the poll pauses until JS raises it. */
    int32_t budget;
    int paused;
} server_t;

static void server_maybe_free(server_t *s) {
    if (s->finalized && (s->poll_state == 0 || s->poll_state == 3))
        free(s);
}

static void on_server_poll_closed(uv_handle_t *h) {
    server_t *s = h->data;
    s->poll_state = 3;
    server_maybe_free(s);
}

/* Stops polling and frees the cluster_server (the primary hands pending connections on). */
static void server_close(napi_env env, server_t *s) {
    if (s->poll_state == 1) {
        s->poll_state = 2;
        uv_close((uv_handle_t *)&s->poll, on_server_poll_closed); /* leaves epoll now */
    }
    if (s->srv) {
        cluster_server_close(s->srv);
        s->srv = NULL;
    }
    if (s->cb && env) {
        napi_delete_reference(env, s->cb);
        s->cb = NULL;
    }
    if (s->has_actx && env) {
        napi_async_destroy(env, s->actx);
        s->has_actx = 0;
    }
}

static void server_finalize(napi_env env, void *data, void *hint) {
    (void)hint;
    server_t *s = data;
    server_close(env, s);
    s->finalized = 1;
    server_maybe_free(s);
}

static server_t *unwrap_server(napi_env env, napi_value obj) {
    void *p = NULL;
    if (napi_unwrap(env, obj, &p) != napi_ok || !p) {
        napi_throw_type_error(env, NULL, "libcluster addon: not a server handle");
        return NULL;
    }
    return p;
}

#define ACCEPTS_PER_CALLBACK 64

/* The server's fd is readable: a connection waits, or a disconnect closed the server.
 * Calls JS with (fds[], code): code 0, or -EBADF once closed (polling stops), or
 * another accept error. */
static void on_server_fd(uv_poll_t *p, int status, int events) {
    (void)events;
    server_t *s = p->data;
    napi_env env = s->env;
    if (!s->srv || s->poll_state != 1)
        return;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok)
        return;
    napi_value arr;
    napi_create_array(env, &arr);
    uint32_t n = 0;
    int code = status < 0 ? status : 0;
    while (code == 0 && n < ACCEPTS_PER_CALLBACK) {
        if (s->budget == 0) {
            int r = cluster_server_refuse(s->srv);
            if (r == 1)
                continue;
            if (r == -EOPNOTSUPP) {
                uv_poll_stop(&s->poll);
                s->paused = 1;
            } else if (r < 0) {
                code = r;
            }
            break;
        }
        int fd = cluster_accept(s->srv);
        if (fd >= 0) {
            napi_set_element(env, arr, n++, js_int(env, fd));
            if (s->budget > 0)
                s->budget--;
        } else if (fd != -EINTR) {
            if (fd != -EAGAIN)
                code = fd;
            break;
        }
    }
    if (code == -EBADF)
        uv_poll_stop(&s->poll);
    if ((n > 0 || code != 0) && s->cb) {
        napi_value argv[2] = {arr, js_int(env, code)};
        make_callback(env, s->actx, s->cb, 2, argv);
    }
    napi_close_handle_scope(env, scope);
}

/* serverStart(handle, callback) -> 0 or a negative code. */
static napi_value ServerStart(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    server_t *s = unwrap_server(env, argv[0]);
    if (!s)
        return NULL;
    if (!s->srv)
        return js_int(env, -EBADF);
    if (s->poll_state != 0)
        return js_int(env, -EALREADY);
    int fd = cluster_server_fd(s->srv);
    if (fd < 0)
        return js_int(env, fd);
    uv_loop_t *loop;
    NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
    int r = uv_poll_init(loop, &s->poll, fd);
    if (r < 0)
        return js_int(env, r);
    s->poll.data = s;
    s->poll_state = 1;
    NAPI_CALL(env, napi_create_reference(env, argv[1], 1, &s->cb));
    napi_value name;
    NAPI_CALL(env, napi_create_string_utf8(env, "libcluster:server", NAPI_AUTO_LENGTH, &name));
    NAPI_CALL(env, napi_async_init(env, argv[0], name, &s->actx));
    s->has_actx = 1;
    r = uv_poll_start(&s->poll, UV_READABLE, on_server_fd);
    return js_int(env, r);
}

/* serverDupFd(handle) -> a close-on-exec duplicate of the server's fd (for a UDP server:
 * the bound datagram socket, which dgram adopts), or a negative code. */
static napi_value ServerDupFd(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    server_t *s = unwrap_server(env, argv[0]);
    if (!s)
        return NULL;
    if (!s->srv)
        return js_int(env, -EBADF);
    int fd = cluster_server_fd(s->srv);
    if (fd < 0)
        return js_int(env, fd);
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    return js_int(env, dup < 0 ? -errno : dup);
}

/* serverLimit(handle, n): JS takes at most n more connections (-1: any number). */
static napi_value ServerLimit(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    int32_t n;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    server_t *s = unwrap_server(env, argv[0]);
    if (!s || !arg_int(env, argv[1], &n))
        return NULL;
    s->budget = n < 0 ? -1 : n;
    if (s->budget != 0 && s->paused && s->poll_state == 1 && s->srv) {
        s->paused = 0;
        uv_poll_start(&s->poll, UV_READABLE, on_server_fd);
    }
    return js_int(env, 0);
}

/* serverRef(handle, bool): whether a listening server keeps the process alive. */
static napi_value ServerRef(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    bool on;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    server_t *s = unwrap_server(env, argv[0]);
    if (!s)
        return NULL;
    NAPI_CALL(env, napi_get_value_bool(env, argv[1], &on));
    if (s->poll_state == 1) {
        if (on)
            uv_ref((uv_handle_t *)&s->poll);
        else
            uv_unref((uv_handle_t *)&s->poll);
    }
    return NULL;
}

static napi_value ServerClose(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    server_t *s = unwrap_server(env, argv[0]);
    if (!s)
        return NULL;
    server_close(env, s);
    return NULL;
}

static napi_value ServerPort(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    server_t *s = unwrap_server(env, argv[0]);
    if (!s)
        return NULL;
    return js_int(env, s->port);
}

/* ---------------------------------------------------------- async work */

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
        fail_napi(env, name);
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
        server_t *s = calloc(1, sizeof *s);
        if (s && napi_create_object(env, &handle) == napi_ok &&
            napi_wrap(env, handle, s, server_finalize, NULL, NULL) == napi_ok) {
            s->env = env;
            s->budget = -1;
            s->srv = j->srv;
            s->port = cluster_server_port(j->srv);
            j->srv = NULL;
        } else {
            free(s);
            cluster_server_close(j->srv);
            j->srv = NULL;
            j->rc = -ENOMEM;
            snprintf(j->message, sizeof j->message, "out of memory");
            napi_get_null(env, &handle);
        }
    }
    argv[0] = js_int(env, j->rc);
    argv[1] = js_str_or_null(env, j->rc < 0 ? j->message : NULL);
    argv[2] = handle;
    finish_job(env, j, 3, argv);
    napi_close_handle_scope(env, scope);
}

/* getServer(address|null, port, backlog, ipv6Only, exclusive, callback). */
static napi_value GetServer(napi_env env, napi_callback_info info) {
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
    if ((!is_nullish(env, argv[0]) && !(j->address = dup_string(env, argv[0]))) ||
        !arg_int(env, argv[1], &j->port) || !arg_int(env, argv[2], &j->opts.backlog) ||
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
    if (argc > 6 && !is_nullish(env, argv[6]) && !arg_int(env, argv[6], &udp)) {
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
    argv[0] = js_int(env, j->rc);
    argv[1] = js_str_or_null(env, j->rc < 0 ? j->message : NULL);
    finish_job(env, j, 2, argv);
    napi_close_handle_scope(env, scope);
}

/* workerDisconnect(callback): cluster.worker.disconnect(), off the JS thread (it waits for
 * the primary's ack). */
static napi_value WorkerDisconnect(napi_env env, napi_callback_info info) {
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

/* ---------------------------------------------------------------- init */

/* `native.constants`: the header's values under their names without "CLUSTER_", so
 * lib/*.js never copies a number from cluster.h (this file is compiled against it). */
static napi_value constants_object(napi_env env) {
    static const struct {
        const char *name;
        int value;
    } table[] = {
#define K(name) {#name + sizeof "CLUSTER_" - 1, (int)(name)}
        K(CLUSTER_EVENT_NONE), K(CLUSTER_EVENT_FORK), K(CLUSTER_EVENT_ONLINE),
        K(CLUSTER_EVENT_LISTENING), K(CLUSTER_EVENT_MESSAGE), K(CLUSTER_EVENT_DISCONNECT),
        K(CLUSTER_EVENT_EXIT), K(CLUSTER_EVENT_ERROR), K(CLUSTER_EVENT_DISCONNECT_REQUESTED),
        K(CLUSTER_EVENT_COUNT),
        K(CLUSTER_SCHED_NONE), K(CLUSTER_SCHED_RR), K(CLUSTER_SCHED_REUSEPORT),
        K(CLUSTER_STDIO_INHERIT), K(CLUSTER_STDIO_PIPE), K(CLUSTER_STDIO_IGNORE), K(CLUSTER_STDIO_IPC),
        K(CLUSTER_ADDRESS_IPV4), K(CLUSTER_ADDRESS_IPV6), K(CLUSTER_ADDRESS_PIPE),
        K(CLUSTER_ADDRESS_UDP4), K(CLUSTER_ADDRESS_UDP6),
        K(CLUSTER_WORKER_NONE), K(CLUSTER_WORKER_ONLINE), K(CLUSTER_WORKER_LISTENING),
        K(CLUSTER_WORKER_DISCONNECTED), K(CLUSTER_WORKER_DEAD),
        K(CLUSTER_E_PANIC), K(CLUSTER_E_WRONG_ROLE), K(CLUSTER_E_PROTOCOL), K(CLUSTER_E_FORKED),
        K(CLUSTER_E_CLOSED), K(CLUSTER_E_UNSUPPORTED), K(CLUSTER_E_BREAKER_OPEN), K(CLUSTER_E_BUSY),
        /* Supervision. */
        K(CLUSTER_EVENT_READY), K(CLUSTER_EVENT_DRAINING), K(CLUSTER_EVENT_RESPAWN),
        K(CLUSTER_EVENT_BREAKER), K(CLUSTER_EVENT_ROLLOUT), K(CLUSTER_EVENT_STUCK),
        K(CLUSTER_EVENT_RECYCLE), K(CLUSTER_EVENT_CONTROL),
        K(CLUSTER_DRAIN_DISCONNECT), K(CLUSTER_DRAIN_TERM), K(CLUSTER_DRAIN_KILL),
        K(CLUSTER_REASON_USER), K(CLUSTER_REASON_ROLLOUT), K(CLUSTER_REASON_RECYCLE),
        K(CLUSTER_REASON_STUCK), K(CLUSTER_REASON_SCALE_DOWN), K(CLUSTER_REASON_STOP),
        K(CLUSTER_REASON_BOOT_TIMEOUT), K(CLUSTER_REASON_ABORTED),
        K(CLUSTER_RECYCLE_CONNECTIONS), K(CLUSTER_RECYCLE_RSS), K(CLUSTER_RECYCLE_AGE),
        K(CLUSTER_BREAKER_CLOSED), K(CLUSTER_BREAKER_OPEN), K(CLUSTER_BREAKER_HALF_OPEN),
        K(CLUSTER_ROLLOUT_STARTED), K(CLUSTER_ROLLOUT_STEP), K(CLUSTER_ROLLOUT_DONE),
        K(CLUSTER_ROLLOUT_ABORTED),
        K(CLUSTER_ACT_NONE), K(CLUSTER_ACT_RELOAD), K(CLUSTER_ACT_SCALE_UP),
        K(CLUSTER_ACT_SCALE_DOWN), K(CLUSTER_ACT_STOP_GRACEFUL), K(CLUSTER_ACT_STOP_FAST),
        K(CLUSTER_READY_LISTENING), K(CLUSTER_READY_EXPLICIT), K(CLUSTER_READY_ONLINE),
        K(CLUSTER_EXIT_NONE), K(CLUSTER_EXIT_ASKED), K(CLUSTER_EXIT_CRASH),
        K(CLUSTER_EXIT_BOOT_FAILURE),
        /* Around the primary: hot upgrade, systemd. */
        K(CLUSTER_EVENT_UPGRADE), K(CLUSTER_ACT_UPGRADE),
        K(CLUSTER_UPGRADE_STARTED), K(CLUSTER_UPGRADE_READY), K(CLUSTER_UPGRADE_DONE),
        K(CLUSTER_UPGRADE_ABORTED),
        K(CLUSTER_SYSTEMD_NOTIFY), K(CLUSTER_SYSTEMD_WATCHDOG), K(CLUSTER_SYSTEMD_FDSTORE),
        K(CLUSTER_SYSTEMD_ALL),
#undef K
        {"EVENT_DRAINED", ADDON_EVENT_DRAINED},
    };
    napi_value o;
    if (napi_create_object(env, &o) != napi_ok)
        return NULL;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        set_prop(env, o, table[i].name, js_int(env, table[i].value));
    return o;
}

static napi_value Init(napi_env env, napi_value exports) {
    static int loaded;
    if (loaded++) {
        /* libcluster is per process: one JS environment (the main thread) drives it. */
        napi_throw_error(env, "ERR_LIBCLUSTER_MAIN_THREAD",
                         "libcluster can only be loaded in the main thread of a process");
        return NULL;
    }
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

    napi_property_descriptor props[] = {
#define FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}
        FN("isPrimary", IsPrimary),
        FN("isWorker", IsWorker),
        FN("workerId", WorkerId),
        FN("lastError", LastError),
        FN("strerror", StrError),
        FN("eventsStart", EventsStart),
        FN("eventsRef", EventsRef),
        FN("eventsStop", EventsStop),
        FN("fork", Fork),
        FN("setupPrimary", SetupPrimary),
        FN("kill", Kill),
        FN("send", Send),
        FN("disconnectWorker", DisconnectWorker),
        FN("disconnectAll", DisconnectAll),
        FN("closeChannel", CloseChannel),
        FN("keepChannel", KeepChannel),
        FN("workerState", WorkerState),
        FN("workerIsConnected", WorkerIsConnected),
        FN("workerIsDead", WorkerIsDead),
        FN("workerExitedAfterDisconnect", WorkerExitedAfterDisconnect),
        FN("workerCount", WorkerCount),
        FN("workers", Workers),
        FN("workerPid", WorkerPid),
        FN("workerStdio", WorkerStdio),
        FN("workerDisconnect", WorkerDisconnect),
        FN("getServer", GetServer),
        FN("serverStart", ServerStart),
        FN("serverRef", ServerRef),
        FN("serverClose", ServerClose),
        FN("serverPort", ServerPort),
        FN("serverDupFd", ServerDupFd),
        FN("serverLimit", ServerLimit),
        FN("fdInfo", FdInfo),
        FN("closeFd", CloseFd),
        FN("supervise", Supervise),
        FN("rollingRestart", RollingRestart),
        FN("scale", Scale),
        FN("drainWorker", DrainWorker),
        FN("breakerReset", BreakerReset),
        FN("upgrade", Upgrade),
        FN("isUpgrade", IsUpgrade),
        FN("control", Control),
        FN("statsJson", StatsJson),
        FN("handleSignal", HandleSignal),
        FN("signalMap", SignalMap),
        FN("workerReady", WorkerReady),
        FN("workerDraining", WorkerDraining),
#undef FN
    };
    NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
    napi_value constants = constants_object(env);
    if (!constants)
        return NULL;
    NAPI_CALL(env, napi_set_named_property(env, exports, "constants", constants));
    return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
