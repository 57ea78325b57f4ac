/* libcluster for Node.js: a worker's server handle, from getServer (async_work.c). Its fd
 * is watched with a uv_poll; the callback accepts connections (within the budget JS sets
 * from server.maxConnections) and hands their fds to JS.
 *
 * Lifetimes: a server is a JS object wrapping a server_t (napi_wrap, with a finalizer).
 * close() stops and closes its uv_poll and frees the cluster_server at once; the server_t
 * itself is freed once both the finalizer and the uv close callback have run. While a
 * server is polled its JS callback is held by a strong reference; close() drops it. */
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>

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

/* A new JS object wrapping a server_t that owns `srv`, in *handle. False when that fails
 * (out of memory, or N-API): `srv` is then still the caller's. */
bool lc_server_wrap(napi_env env, cluster_server *srv, napi_value *handle) {
    server_t *s = calloc(1, sizeof *s);
    if (s && napi_create_object(env, handle) == napi_ok &&
        napi_wrap(env, *handle, s, server_finalize, NULL, NULL) == napi_ok) {
        s->env = env;
        s->budget = -1;
        s->srv = srv;
        s->port = cluster_server_port(srv);
        return true;
    }
    free(s);
    return false;
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
            napi_set_element(env, arr, n++, lc_js_int(env, fd));
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
        napi_value argv[2] = {arr, lc_js_int(env, code)};
        lc_make_callback(env, s->actx, s->cb, 2, argv);
    }
    napi_close_handle_scope(env, scope);
}

/* serverStart(handle, callback) -> 0 or a negative code. */
napi_value lc_ServerStart(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    server_t *s = unwrap_server(env, argv[0]);
    if (!s)
        return NULL;
    if (!s->srv)
        return lc_js_int(env, -EBADF);
    if (s->poll_state != 0)
        return lc_js_int(env, -EALREADY);
    int fd = cluster_server_fd(s->srv);
    if (fd < 0)
        return lc_js_int(env, fd);
    uv_loop_t *loop;
    NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
    int r = uv_poll_init(loop, &s->poll, fd);
    if (r < 0)
        return lc_js_int(env, r);
    s->poll.data = s;
    s->poll_state = 1;
    NAPI_CALL(env, napi_create_reference(env, argv[1], 1, &s->cb));
    napi_value name;
    NAPI_CALL(env, napi_create_string_utf8(env, "libcluster:server", NAPI_AUTO_LENGTH, &name));
    NAPI_CALL(env, napi_async_init(env, argv[0], name, &s->actx));
    s->has_actx = 1;
    r = uv_poll_start(&s->poll, UV_READABLE, on_server_fd);
    return lc_js_int(env, r);
}

/* serverDupFd(handle) -> a close-on-exec duplicate of the server's fd (for a UDP server:
 * the bound datagram socket, which dgram adopts), or a negative code. */
napi_value lc_ServerDupFd(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    server_t *s = unwrap_server(env, argv[0]);
    if (!s)
        return NULL;
    if (!s->srv)
        return lc_js_int(env, -EBADF);
    int fd = cluster_server_fd(s->srv);
    if (fd < 0)
        return lc_js_int(env, fd);
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    return lc_js_int(env, dup < 0 ? -errno : dup);
}

/* serverLimit(handle, n): JS takes at most n more connections (-1: any number). */
napi_value lc_ServerLimit(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    int32_t n;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    server_t *s = unwrap_server(env, argv[0]);
    if (!s || !lc_arg_int(env, argv[1], &n))
        return NULL;
    s->budget = n < 0 ? -1 : n;
    if (s->budget != 0 && s->paused && s->poll_state == 1 && s->srv) {
        s->paused = 0;
        uv_poll_start(&s->poll, UV_READABLE, on_server_fd);
    }
    return lc_js_int(env, 0);
}

/* serverRef(handle, bool): whether a listening server keeps the process alive. */
napi_value lc_ServerRef(napi_env env, napi_callback_info info) {
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

napi_value lc_ServerClose(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    server_t *s = unwrap_server(env, argv[0]);
    if (!s)
        return NULL;
    server_close(env, s);
    return NULL;
}

napi_value lc_ServerPort(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    server_t *s = unwrap_server(env, argv[0]);
    if (!s)
        return NULL;
    return lc_js_int(env, s->port);
}
