
/*
 * ngx_http_registry_module: the pull-through cache's parsers, pure
 * functions of their input (fuzzed by issue 18's harness).
 */


#include "ngx_http_registry_mirror.h"

#include <jansson.h>


static u_char *ngx_http_registry_challenge_param(u_char *p, u_char *last,
    ngx_str_t *key, ngx_str_t *value);


/*
 * WWW-Authenticate: Bearer realm="...",service="...",scope="..." (RFC
 * 7235's auth-param list, values quoted or tokens) or Basic realm="...".
 * Only the first challenge is read.  NGX_DECLINED: neither scheme, or a
 * list that does not parse; a Bearer challenge needs its realm.  Quoted
 * values with a backslash escape are refused rather than unescaped: no
 * registry sends them in a URL.  Control characters are refused in
 * either form, quotes and backslashes in an unquoted value too; RFC
 * 7230's token grammar is not checked further, since a realm is a URL,
 * which some registries send unquoted.
 */

ngx_int_t
ngx_http_registry_parse_challenge(u_char *p, size_t len,
    ngx_http_registry_challenge_t *ch)
{
    u_char     *last;
    ngx_str_t   key, value;

    ngx_memzero(ch, sizeof(ngx_http_registry_challenge_t));

    last = p + len;

    while (p < last && *p == ' ') {
        p++;
    }

    if (last - p >= 6 && ngx_strncasecmp(p, (u_char *) "Bearer", 6) == 0
        && (last - p == 6 || p[6] == ' '))
    {
        ch->scheme = NGX_HTTP_REGISTRY_CHALLENGE_BEARER;
        p += 6;

    } else if (last - p >= 5
               && ngx_strncasecmp(p, (u_char *) "Basic", 5) == 0
               && (last - p == 5 || p[5] == ' '))
    {
        ch->scheme = NGX_HTTP_REGISTRY_CHALLENGE_BASIC;
        return NGX_OK;

    } else {
        return NGX_DECLINED;
    }

    while (p < last) {
        p = ngx_http_registry_challenge_param(p, last, &key, &value);
        if (p == NULL) {
            return NGX_DECLINED;
        }

        if (key.len == 0) {
            break;        /* the next challenge begins */
        }

        if (key.len == 5 && ngx_strncasecmp(key.data, (u_char *) "realm", 5)
                            == 0)
        {
            ch->realm = value;

        } else if (key.len == 7
                   && ngx_strncasecmp(key.data, (u_char *) "service", 7)
                      == 0)
        {
            ch->service = value;

        } else if (key.len == 5
                   && ngx_strncasecmp(key.data, (u_char *) "scope", 5) == 0)
        {
            ch->scope = value;
        }
    }

    return ch->realm.len ? NGX_OK : NGX_DECLINED;
}


/*
 * One "key=value" of the list and the comma after it; the position after
 * it, or NULL when it does not parse.  A key with no "=" (a new scheme)
 * ends the list: key->len is 0 then.
 */

static u_char *
ngx_http_registry_challenge_param(u_char *p, u_char *last, ngx_str_t *key,
    ngx_str_t *value)
{
    u_char  *start;

    while (p < last && (*p == ' ' || *p == ',')) {
        p++;
    }

    key->len = 0;

    if (p == last) {
        return p;
    }

    start = p;

    while (p < last && *p != '=' && *p != ' ' && *p != ',' && *p != '"') {
        p++;
    }

    if (p == last || *p != '=' || p == start) {
        return (p == start) ? NULL : last;
    }

    key->data = start;
    key->len = p - start;
    p++;

    if (p < last && *p == '"') {
        start = ++p;

        while (p < last && *p != '"') {
            if (*p == '\\' || *p < 0x20 || *p == 0x7f) {
                return NULL;
            }

            p++;
        }

        if (p == last) {
            return NULL;
        }

        value->data = start;
        value->len = p - start;
        return p + 1;
    }

    start = p;

    while (p < last && *p != ',' && *p != ' ') {
        if (*p == '"' || *p == '\\' || *p < 0x20 || *p == 0x7f) {
            return NULL;
        }

        p++;
    }

    value->data = start;
    value->len = p - start;

    return p;
}


/*
 * A token endpoint's answer: {"token": "...", "access_token": "...",
 * "expires_in": 300} (distribution's token spec; either name of the
 * token).  *expires_in is 60 when absent, as the spec says.  The token
 * is copied into pool.  NGX_DECLINED: not such an answer.
 */

ngx_int_t
ngx_http_registry_parse_token(ngx_pool_t *pool, u_char *p, size_t len,
    ngx_str_t *token, time_t *expires_in)
{
    json_t        *root, *v;
    const char    *s;
    ngx_int_t      rc;
    json_error_t   error;

    root = json_loadb((const char *) p, len, JSON_REJECT_DUPLICATES, &error);
    if (root == NULL) {
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;

    if (!json_is_object(root)) {
        goto done;
    }

    v = json_object_get(root, "token");
    if (!json_is_string(v) || json_string_length(v) == 0) {
        v = json_object_get(root, "access_token");
    }

    if (!json_is_string(v) || json_string_length(v) == 0) {
        goto done;
    }

    s = json_string_value(v);
    token->len = json_string_length(v);

    /* it becomes a header value */
    if (ngx_strlchr((u_char *) s, (u_char *) s + token->len, '\n')
        || ngx_strlchr((u_char *) s, (u_char *) s + token->len, '\r')
        || ngx_strlen(s) != token->len)
    {
        goto done;
    }

    token->data = ngx_pnalloc(pool, token->len);
    if (token->data == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(token->data, s, token->len);

    v = json_object_get(root, "expires_in");
    *expires_in = (json_is_integer(v) && json_integer_value(v) > 0
                   && json_integer_value(v) < 86400 * 365)
                  ? (time_t) json_integer_value(v) : 60;

    rc = NGX_OK;

done:

    json_decref(root);

    return rc;
}
