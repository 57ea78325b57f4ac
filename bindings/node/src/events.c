/* libcluster for Node.js: the event pump. cluster_event_fd() is watched with a uv_poll on
 * the main loop; its callback drains cluster_poll_event into an array of plain objects (plus
 * the "drained" pseudo-event of cluster.disconnect()) and calls JS with it, on the JS thread.
 * Also lc_make_callback, which server.c uses for its own uv_poll callbacks. */
#include "addon.h"

#include <unistd.h>

/* Calls `fn` from a libuv callback (no JS on the stack), with async-hooks context, and
 * turns an exception it throws into an uncaught exception, as Node's own callbacks do. */
void lc_make_callback(napi_env env, napi_async_context ctx, napi_ref fn_ref, size_t argc,
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

void lc_on_drained(const cluster_event *e, void *ud) {
    (void)e;
    (void)ud;
    ev.drained++;
}

static napi_value event_object(napi_env env, const cluster_event *e) {
    napi_value o;
    if (napi_create_object(env, &o) != napi_ok)
        return NULL;
    lc_set_prop(env, o, "kind", lc_js_int(env, e->kind));
    lc_set_prop(env, o, "id", lc_js_int(env, e->worker_id));
    lc_set_prop(env, o, "pid", lc_js_int(env, e->pid));
    switch (e->kind) {
    case CLUSTER_EVENT_LISTENING:
        lc_set_prop(env, o, "address", lc_js_str_or_null(env, e->address));
        lc_set_prop(env, o, "port", lc_js_int(env, e->port));
        lc_set_prop(env, o, "addressType", lc_js_int(env, e->address_type));
        lc_set_prop(env, o, "fd", lc_js_int(env, e->listening_fd));
        break;
    case CLUSTER_EVENT_MESSAGE:
        lc_set_prop(env, o, "data", lc_js_str_or_null(env, e->data));
        lc_set_prop(env, o, "fd", lc_js_int(env, e->fd));
        break;
    case CLUSTER_EVENT_DISCONNECT:
        lc_set_prop(env, o, "exitedAfterDisconnect", lc_js_bool(env, e->exited_after_disconnect != 0));
        break;
    case CLUSTER_EVENT_EXIT:
        lc_set_prop(env, o, "exitCode", lc_js_int(env, e->exit_code));
        lc_set_prop(env, o, "signal", lc_js_int(env, e->signal));
        lc_set_prop(env, o, "exitedAfterDisconnect", lc_js_bool(env, e->exited_after_disconnect != 0));
        break;
    case CLUSTER_EVENT_ERROR:
        lc_set_prop(env, o, "error", lc_js_int(env, e->error));
        lc_set_prop(env, o, "data", lc_js_str_or_null(env, e->data));
        break;
    /* Supervision: the fields the header gives each kind (the others are 0). */
    case CLUSTER_EVENT_READY:
        break;
    case CLUSTER_EVENT_DRAINING:
        lc_set_prop(env, o, "state", lc_js_int(env, e->state));
        lc_set_prop(env, o, "reason", lc_js_int(env, e->reason));
        break;
    case CLUSTER_EVENT_RESPAWN:
        lc_set_prop(env, o, "delayMs", lc_js_int(env, e->delay_ms));
        lc_set_prop(env, o, "count", lc_js_int(env, e->count));
        break;
    case CLUSTER_EVENT_BREAKER:
        lc_set_prop(env, o, "state", lc_js_int(env, e->state));
        lc_set_prop(env, o, "count", lc_js_int(env, e->count));
        break;
    case CLUSTER_EVENT_ROLLOUT:
        lc_set_prop(env, o, "state", lc_js_int(env, e->state));
        lc_set_prop(env, o, "generation", lc_js_int(env, e->generation));
        lc_set_prop(env, o, "count", lc_js_int(env, e->count));
        break;
    case CLUSTER_EVENT_STUCK:
        lc_set_prop(env, o, "delayMs", lc_js_int(env, e->delay_ms));
        break;
    case CLUSTER_EVENT_RECYCLE:
        lc_set_prop(env, o, "reason", lc_js_int(env, e->reason));
        break;
    case CLUSTER_EVENT_CONTROL:
        lc_set_prop(env, o, "state", lc_js_int(env, e->state));
        lc_set_prop(env, o, "signal", lc_js_int(env, e->signal));
        break;
    case CLUSTER_EVENT_UPGRADE:
        lc_set_prop(env, o, "state", lc_js_int(env, e->state));
        lc_set_prop(env, o, "error", lc_js_int(env, e->error));
        break;
    default:
        break;
    }
    return o;
}


/* The "drained" pseudo-event: a cluster.disconnect() callback is due. */
static napi_value drained_object(napi_env env) {
    napi_value o;
    if (napi_create_object(env, &o) != napi_ok)
        return NULL;
    lc_set_prop(env, o, "kind", lc_js_int(env, ADDON_EVENT_DRAINED));
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
        lc_make_callback(env, ev.actx, ev.cb, 1, argv);
    }
    napi_close_handle_scope(env, scope);
}

/* eventsStart(callback): starts polling cluster_event_fd() (unref'd: see eventsRef). */
napi_value lc_EventsStart(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (ev.state != 0)
        return lc_js_int(env, 0);
    int fd = cluster_event_fd();
    if (fd < 0)
        return lc_js_int(env, fd);
    uv_loop_t *loop;
    NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
    int r = uv_poll_init(loop, &ev.poll, fd);
    if (r < 0)
        return lc_js_int(env, r);
    ev.env = env;
    NAPI_CALL(env, napi_create_reference(env, argv[0], 1, &ev.cb));
    napi_value name;
    NAPI_CALL(env, napi_create_string_utf8(env, "libcluster:events", NAPI_AUTO_LENGTH, &name));
    NAPI_CALL(env, napi_async_init(env, NULL, name, &ev.actx));
    r = uv_poll_start(&ev.poll, UV_READABLE, on_event_fd);
    if (r < 0)
        return lc_js_int(env, r);
    uv_unref((uv_handle_t *)&ev.poll);
    ev.refed = 0;
    ev.state = 1;
    return lc_js_int(env, 0);
}

/* eventsRef(bool): whether pending lifecycle events keep the process alive. */
napi_value lc_EventsRef(napi_env env, napi_callback_info info) {
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
napi_value lc_EventsStop(napi_env env, napi_callback_info info) {
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
