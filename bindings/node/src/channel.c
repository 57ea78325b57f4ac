/* libcluster for Node.js: the IPC channel between a primary and a worker. Messages (JSON
 * text, maybe with an fd), what a received fd is, closing one, and keeping or closing the
 * channel around a disconnect. */
#include "addon.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* send(id, json, fd) -> 0 or a negative code. */
napi_value lc_Send(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    int32_t id, fd;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 3 || !lc_arg_int(env, argv[0], &id) || !lc_arg_int(env, argv[2], &fd))
        return NULL;
    char *json = lc_dup_string(env, argv[1]);
    if (!json)
        return NULL;
    int r = cluster_send(id, json, fd);
    free(json);
    return lc_js_int(env, r);
}

/* keepChannel(bool) -> 0 or a negative code: in a worker, a primary's disconnect leaves the
 * channel open until workerDisconnect() (DISCONNECT_REQUESTED comes first). */
napi_value lc_KeepChannel(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    bool on = false;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 1 || napi_get_value_bool(env, argv[0], &on) != napi_ok)
        return NULL;
    return lc_js_int(env, cluster_worker_keep_channel(on ? 1 : 0));
}

/* closeChannel(id) -> 0 or a negative code: worker.process.disconnect(). */
napi_value lc_CloseChannel(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    int32_t id;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 1 || !lc_arg_int(env, argv[0], &id))
        return NULL;
    return lc_js_int(env, cluster_close_channel(id));
}

/* fdInfo(fd) -> {domain, type, listening} for a socket that came with a message. */
napi_value lc_FdInfo(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    int32_t fd;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (!lc_arg_int(env, argv[0], &fd))
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
    lc_set_prop(env, o, "domain", lc_js_str_or_null(env, domain == AF_INET ? "inet" : domain == AF_INET6 ? "inet6" : domain == AF_UNIX ? "unix" : NULL));
    lc_set_prop(env, o, "type", lc_js_str_or_null(env, type == SOCK_STREAM ? "stream" : type == SOCK_DGRAM ? "dgram" : NULL));
    lc_set_prop(env, o, "listening", lc_js_bool(env, listening != 0));
    return o;
}

napi_value lc_CloseFd(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    int32_t fd;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (!lc_arg_int(env, argv[0], &fd))
        return NULL;
    return lc_js_int(env, fd >= 0 ? close(fd) : 0);
}
