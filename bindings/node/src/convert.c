/* libcluster for Node.js: JS values to and from C for the addon's entry points (numbers,
 * strings, arrays of strings, objects' fields), and the error thrown when N-API fails. */
#include "addon.h"

#include <stdio.h>
#include <stdlib.h>

void lc_fail_napi(napi_env env, const char *what) {
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

napi_value lc_js_int(napi_env env, int64_t v) {
    napi_value out;
    if (napi_create_int64(env, v, &out) != napi_ok)
        return NULL;
    return out;
}

napi_value lc_js_bool(napi_env env, bool v) {
    napi_value out;
    if (napi_get_boolean(env, v, &out) != napi_ok)
        return NULL;
    return out;
}

napi_value lc_js_str_or_null(napi_env env, const char *s) {
    napi_value out;
    if (s) {
        if (napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out) != napi_ok)
            return NULL;
    } else if (napi_get_null(env, &out) != napi_ok) {
        return NULL;
    }
    return out;
}

void lc_set_prop(napi_env env, napi_value obj, const char *name, napi_value v) {
    if (v)
        napi_set_named_property(env, obj, name, v);
}

/* Reads argument `i` as an int32; the JS layer has already validated it. */
bool lc_arg_int(napi_env env, napi_value v, int32_t *out) {
    if (napi_get_value_int32(env, v, out) != napi_ok) {
        napi_throw_type_error(env, NULL, "libcluster addon: expected a number");
        return false;
    }
    return true;
}

/* A malloc'd UTF-8 copy of a JS string, or NULL (with a TypeError thrown). */
char *lc_dup_string(napi_env env, napi_value v) {
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

bool lc_is_nullish(napi_env env, napi_value v) {
    napi_valuetype t;
    if (!v || napi_typeof(env, v, &t) != napi_ok)
        return true;
    return t == napi_undefined || t == napi_null;
}

void lc_free_strv(char **v) {
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* A NULL-terminated malloc'd copy of a JS array of strings. Sets *ok = false on error. */
char **lc_dup_strv(napi_env env, napi_value arr, bool *ok) {
    *ok = true;
    if (lc_is_nullish(env, arr))
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
        if (napi_get_element(env, arr, i, &el) != napi_ok || !(v[i] = lc_dup_string(env, el))) {
            lc_free_strv(v);
            *ok = false;
            return NULL;
        }
    }
    return v;
}
