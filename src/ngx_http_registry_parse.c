
/*
 * ngx_http_registry_module: the parsers of what a client sends, as pure
 * functions of strings (no request, so that fuzz/ drives each alone): the
 * route, Content-Range, Range, query arguments, and the token issuer's
 * form and scopes.
 */


#include "ngx_http_registry.h"


static u_char *ngx_http_registry_unescape(u_char *dst, u_char *src,
    u_char *last);
static ngx_int_t ngx_http_registry_split_route(ngx_str_t *path,
    ngx_http_registry_route_t *route);
static ngx_int_t ngx_http_registry_segment_is(u_char *start, u_char *end,
    const char *word);
static ngx_int_t ngx_http_registry_validate_route(
    ngx_http_registry_route_t *route, ngx_http_registry_fault_t *fault);
static ngx_int_t ngx_http_registry_refuse(ngx_http_registry_fault_t *fault,
    ngx_http_registry_err_e code, const char *detail);
static ngx_uint_t ngx_http_registry_scope_actions(u_char *p, u_char *last,
    ngx_uint_t catalog);


/* ---- the route ---- */

/*
 * The route of a request line's URI (r->unparsed_uri).  Its path is taken
 * raw and only percent-decoded: nginx's normalised r->uri would turn
 * "a/../b" or "a//b" into another, valid name, where the spec wants
 * NAME_INVALID.  NGX_DECLINED: not a valid route, *fault says why.
 */

ngx_int_t
ngx_http_registry_route_parse(ngx_pool_t *pool, ngx_str_t *uri,
    ngx_http_registry_route_t *route, ngx_http_registry_fault_t *fault)
{
    u_char     *end;
    ngx_str_t   path;

    end = ngx_strlchr(uri->data, uri->data + uri->len, '?');
    if (end == NULL) {
        end = uri->data + uri->len;
    }

    path.data = ngx_pnalloc(pool, end - uri->data);
    if (path.data == NULL) {
        return NGX_ERROR;
    }

    path.len = ngx_http_registry_unescape(path.data, uri->data, end)
               - path.data;

    if (path.len < 4 || ngx_strncmp(path.data, "/v2/", 4) != 0) {
        return ngx_http_registry_refuse(fault, NGX_HTTP_REGISTRY_NOT_FOUND,
                                        NULL);
    }

    path.data += 4;
    path.len -= 4;

    if (ngx_http_registry_split_route(&path, route) != NGX_OK) {
        return ngx_http_registry_refuse(fault, NGX_HTTP_REGISTRY_NOT_FOUND,
                                        NULL);
    }

    return ngx_http_registry_validate_route(route, fault);
}


/*
 * Percent-decodes a path, except "%2F" and "%00": an escaped "/" must not
 * become a separator, and stays "%2F", which no name, tag or digest allows.
 */

static u_char *
ngx_http_registry_unescape(u_char *dst, u_char *src, u_char *last)
{
    u_char     *pct;
    ngx_int_t   hi, lo;

    while (src < last) {

        /* the runs between escapes are copied whole: most paths have none */

        pct = memchr(src, '%', last - src);
        if (pct == NULL) {
            pct = last;
        }

        dst = ngx_cpymem(dst, src, pct - src);
        src = pct;

        if (src == last) {
            break;
        }

        if (last - src >= 3) {
            hi = ngx_hextoi(src + 1, 1);
            lo = ngx_hextoi(src + 2, 1);

            if (hi != NGX_ERROR && lo != NGX_ERROR
                && hi * 16 + lo != '/' && hi * 16 + lo != 0)
            {
                *dst++ = (u_char) (hi * 16 + lo);
                src += 3;
                continue;
            }
        }

        *dst++ = *src++;
    }

    return dst;
}


/*
 * Splits "<name>/<kind...>/<reference>" from the end, because a name may
 * contain "/" and even words like "manifests" or "blobs".
 */

static ngx_int_t
ngx_http_registry_split_route(ngx_str_t *path,
    ngx_http_registry_route_t *route)
{
    u_char      *p, *last, *seg[3];
    ngx_int_t    n;

    last = path->data + path->len;

    if (path->len == 0) {
        route->kind = NGX_HTTP_REGISTRY_ROUTE_BASE;
        return NGX_OK;
    }

    if (path->len == 8 && ngx_strncmp(path->data, "_catalog", 8) == 0) {
        route->kind = NGX_HTTP_REGISTRY_ROUTE_CATALOG;
        return NGX_OK;
    }

    /* seg[0] is the last "/", seg[1] the one before it, and so on */

    n = 0;

    for (p = last; n < 3; n++) {
        p = memrchr(path->data, '/', p - path->data);
        if (p == NULL) {
            break;
        }

        seg[n] = p;
    }

    if (n < 2) {
        return NGX_ERROR;
    }

    route->reference.data = seg[0] + 1;
    route->reference.len = last - (seg[0] + 1);

    if (ngx_http_registry_segment_is(seg[1] + 1, seg[0], "tags")
        && ngx_http_registry_segment_is(seg[0] + 1, last, "list"))
    {
        route->kind = NGX_HTTP_REGISTRY_ROUTE_TAGS;
        route->reference.len = 0;
        route->name.data = path->data;
        route->name.len = seg[1] - path->data;
        return NGX_OK;
    }

    if (ngx_http_registry_segment_is(seg[1] + 1, seg[0], "manifests")) {
        route->kind = NGX_HTTP_REGISTRY_ROUTE_MANIFEST;
        route->name.data = path->data;
        route->name.len = seg[1] - path->data;
        return NGX_OK;
    }

    if (ngx_http_registry_segment_is(seg[1] + 1, seg[0], "referrers")) {
        route->kind = NGX_HTTP_REGISTRY_ROUTE_REFERRERS;
        route->name.data = path->data;
        route->name.len = seg[1] - path->data;
        return NGX_OK;
    }

    if (ngx_http_registry_segment_is(seg[1] + 1, seg[0], "blobs")) {
        route->kind = ngx_http_registry_segment_is(seg[0] + 1, last, "uploads")
                      ? NGX_HTTP_REGISTRY_ROUTE_UPLOADS
                      : NGX_HTTP_REGISTRY_ROUTE_BLOB;
        route->name.data = path->data;
        route->name.len = seg[1] - path->data;
        return NGX_OK;
    }

    if (n == 3
        && ngx_http_registry_segment_is(seg[2] + 1, seg[1], "blobs")
        && ngx_http_registry_segment_is(seg[1] + 1, seg[0], "uploads"))
    {
        route->kind = (route->reference.len == 0)
                      ? NGX_HTTP_REGISTRY_ROUTE_UPLOADS
                      : NGX_HTTP_REGISTRY_ROUTE_UPLOAD;
        route->name.data = path->data;
        route->name.len = seg[2] - path->data;
        return NGX_OK;
    }

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_registry_segment_is(u_char *start, u_char *end, const char *word)
{
    size_t  len;

    len = ngx_strlen(word);

    return (size_t) (end - start) == len
           && ngx_strncmp(start, word, len) == 0;
}


static ngx_int_t
ngx_http_registry_validate_route(ngx_http_registry_route_t *route,
    ngx_http_registry_fault_t *fault)
{
    switch (route->kind) {

    case NGX_HTTP_REGISTRY_ROUTE_BASE:
    case NGX_HTTP_REGISTRY_ROUTE_CATALOG:
        return NGX_OK;

    default:
        break;
    }

    if (ngx_http_registry_valid_name(&route->name) != NGX_OK) {
        return ngx_http_registry_refuse(fault, NGX_HTTP_REGISTRY_NAME_INVALID,
                                        NULL);
    }

    switch (route->kind) {

    case NGX_HTTP_REGISTRY_ROUTE_MANIFEST:
        if (ngx_strlchr(route->reference.data,
                        route->reference.data + route->reference.len, ':')
            == NULL)
        {
            if (ngx_http_registry_valid_tag(&route->reference) != NGX_OK) {
                return ngx_http_registry_refuse(fault,
                                                NGX_HTTP_REGISTRY_TAG_INVALID,
                                                "invalid tag");
            }

            return NGX_OK;
        }

        /* fall through */

    case NGX_HTTP_REGISTRY_ROUTE_BLOB:
    case NGX_HTTP_REGISTRY_ROUTE_REFERRERS:
        if (ngx_http_registry_parse_digest(&route->reference, &route->digest)
            != NGX_OK)
        {
            return ngx_http_registry_refuse(fault,
                                            NGX_HTTP_REGISTRY_DIGEST_INVALID,
                                            "invalid digest");
        }

        route->by_digest = 1;
        return NGX_OK;

    case NGX_HTTP_REGISTRY_ROUTE_UPLOAD:
        if (ngx_http_registry_valid_upload_id(&route->reference) != NGX_OK) {
            return ngx_http_registry_refuse(fault,
                                         NGX_HTTP_REGISTRY_BLOB_UPLOAD_UNKNOWN,
                                         NULL);
        }

        return NGX_OK;

    default:
        return NGX_OK;
    }
}


static ngx_int_t
ngx_http_registry_refuse(ngx_http_registry_fault_t *fault,
    ngx_http_registry_err_e code, const char *detail)
{
    fault->code = code;
    fault->errnum = 0;
    fault->detail = detail;

    return NGX_DECLINED;
}


/* ---- Content-Range of an upload chunk ---- */

/*
 * "<start>-<end>" (inclusive; "bytes=" or "bytes " may come first).
 * NGX_ERROR: malformed; NGX_DECLINED: an end no file can have (end + 1
 * must be a length, and the largest off_t is none).
 */

ngx_int_t
ngx_http_registry_content_range(ngx_str_t *value, off_t *start, off_t *end)
{
    u_char  *p, *dash, *last;

    p = value->data;
    last = value->data + value->len;

    if (value->len > 6 && ngx_strncasecmp(p, (u_char *) "bytes", 5) == 0
        && (p[5] == '=' || p[5] == ' '))
    {
        p += 6;
    }

    dash = ngx_strlchr(p, last, '-');

    if (dash == NULL) {
        return NGX_ERROR;
    }

    *start = ngx_atoof(p, dash - p);
    *end = ngx_atoof(dash + 1, last - dash - 1);

    if (*start == NGX_ERROR || *end == NGX_ERROR) {
        return NGX_ERROR;
    }

    return (*end == NGX_MAX_OFF_T_VALUE) ? NGX_DECLINED : NGX_OK;
}


/* ---- Range of a blob GET ---- */

/*
 * Whether no range of a Range header can be satisfied for a file of this
 * size: p is the NUL-terminated value after "bytes=", ranges the most
 * that are served (max_ranges).  It decides exactly as nginx's
 * ngx_http_range_parse() does, so that every other Range is left to
 * nginx's range filter (blob.c).
 */

ngx_uint_t
ngx_http_registry_range_none(u_char *p, off_t size, ngx_uint_t ranges)
{
    off_t       start, end, total, cutoff, cutlim;
    ngx_uint_t  found, suffix;

    cutoff = NGX_MAX_OFF_T_VALUE / 10;
    cutlim = NGX_MAX_OFF_T_VALUE % 10;

    found = 0;
    total = 0;

    for ( ;; ) {
        start = 0;
        end = 0;
        suffix = 0;

        while (*p == ' ') { p++; }

        if (*p != '-') {
            if (*p < '0' || *p > '9') {
                return 1;
            }

            while (*p >= '0' && *p <= '9') {
                if (start >= cutoff && (start > cutoff || *p - '0' > cutlim)) {
                    return 1;
                }

                start = start * 10 + (*p++ - '0');
            }

            while (*p == ' ') { p++; }

            if (*p++ != '-') {
                return 1;
            }

            while (*p == ' ') { p++; }

            if (*p == ',' || *p == '\0') {
                end = size;
                goto found;
            }

        } else {
            suffix = 1;
            p++;
        }

        if (*p < '0' || *p > '9') {
            return 1;
        }

        while (*p >= '0' && *p <= '9') {
            if (end >= cutoff && (end > cutoff || *p - '0' > cutlim)) {
                return 1;
            }

            end = end * 10 + (*p++ - '0');
        }

        while (*p == ' ') { p++; }

        if (*p != ',' && *p != '\0') {
            return 1;
        }

        if (suffix) {
            start = (end < size) ? size - end : 0;
            end = size - 1;
        }

        end = (end >= size) ? size : end + 1;

    found:

        if (start < end) {
            found++;

            if (total > NGX_MAX_OFF_T_VALUE - (end - start)) {
                return 1;
            }

            total += end - start;

            if (ranges-- == 0) {
                return 0;
            }

        } else if (start == 0) {
            return 0;
        }

        if (*p++ != ',') {
            break;
        }
    }

    return found == 0;
}


/* ---- query arguments ---- */

/*
 * The first argument "name" of a query string, percent-decoded into the
 * pool; NGX_DECLINED if absent.  Found as nginx's ngx_http_arg() finds it
 * (the name case-insensitive, at the start or after "&", then "=").
 */

ngx_int_t
ngx_http_registry_query_arg(ngx_pool_t *pool, ngx_str_t *args,
    const char *name, ngx_str_t *value)
{
    u_char  *p, *last, *src, *dst, *end;
    size_t   len;

    len = ngx_strlen(name);

    if (args->len == 0 || len == 0) {
        return NGX_DECLINED;
    }

    p = args->data;
    last = p + args->len;

    for ( /* void */ ; p < last; p++) {

        /* "=" must follow the name: the name ends before the last byte */

        p = ngx_strlcasestrn(p, last - 1, (u_char *) name, len - 1);

        if (p == NULL) {
            return NGX_DECLINED;
        }

        if ((p == args->data || p[-1] == '&') && p[len] == '=') {
            break;
        }
    }

    if (p >= last) {
        return NGX_DECLINED;
    }

    src = p + len + 1;

    end = ngx_strlchr(src, last, '&');
    if (end == NULL) {
        end = last;
    }

    value->data = ngx_pnalloc(pool, end - src);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    dst = value->data;
    ngx_unescape_uri(&dst, &src, end - src, 0);
    value->len = dst - value->data;

    return NGX_OK;
}


/* ---- the token issuer's request ---- */

/*
 * "a=b&c=d", a query or a form: param() gets each key as sent and its
 * value with "+" a space, percent-decoded and NUL-terminated.  NGX_OK, or
 * what param() returned other than NGX_OK.
 */

ngx_int_t
ngx_http_registry_form_parse(ngx_pool_t *pool, ngx_str_t *args,
    ngx_http_registry_param_pt param, void *data)
{
    u_char     *p, *last, *amp, *eq, *dst, *src, *q;
    ngx_int_t   rc;
    ngx_str_t   key, value;

    p = args->data;
    last = p + args->len;

    while (p < last) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        eq = ngx_strlchr(p, amp, '=');
        if (eq == NULL) {
            eq = amp;
        }

        key.data = p;
        key.len = eq - p;

        src = (eq < amp) ? eq + 1 : amp;

        value.data = ngx_pnalloc(pool, amp - src + 1);
        if (value.data == NULL) {
            return NGX_ERROR;
        }

        for (q = value.data; src < amp; src++) {
            *q++ = (*src == '+') ? ' ' : *src;
        }

        src = value.data;
        dst = value.data;

        ngx_unescape_uri(&dst, &src, q - value.data, 0);

        *dst = '\0';
        value.len = dst - value.data;

        rc = param(data, &key, &value);
        if (rc != NGX_OK) {
            return rc;
        }

        p = amp + 1;
    }

    return NGX_OK;
}


/*
 * A scope parameter: resources "type:name:actions" separated by spaces; a
 * name may hold a ":" (a registry's port), so the type ends at the first
 * one and the actions begin after the last.  want() gets each repository
 * with a valid name, and "registry:catalog" with an empty name, with the
 * actions known of it (maybe none); other resources are left out.
 * NGX_OK, or what want() returned other than NGX_OK.
 */

ngx_int_t
ngx_http_registry_scope_parse(ngx_str_t *scope, ngx_http_registry_want_pt want,
    void *data)
{
    u_char      *p, *last, *end, *type_end, *actions;
    ngx_int_t    rc;
    ngx_str_t    type, name;
    ngx_uint_t   catalog;

    p = scope->data;
    last = p + scope->len;

    for ( /* void */ ; p < last; p = end + 1) {
        end = ngx_strlchr(p, last, ' ');
        if (end == NULL) {
            end = last;
        }

        type_end = ngx_strlchr(p, end, ':');

        for (actions = end; actions > p && actions[-1] != ':'; actions--) {
            /* void */
        }

        if (type_end == NULL || actions - 1 <= type_end) {
            continue;
        }

        type.data = p;
        type.len = type_end - p;
        name.data = type_end + 1;
        name.len = (actions - 1) - name.data;

        catalog = (type.len == 8 && ngx_strncmp(type.data, "registry", 8) == 0
                   && name.len == 7
                   && ngx_strncmp(name.data, "catalog", 7) == 0);

        if (catalog) {
            ngx_str_set(&name, "");

        } else if (!((type.len == 10
                      && ngx_strncmp(type.data, "repository", 10) == 0)
                     || (type.len > 11
                         && ngx_strncmp(type.data, "repository(", 11) == 0))
                   || ngx_http_registry_valid_name(&name) != NGX_OK)
        {
            continue;
        }

        rc = want(data, &name,
                  ngx_http_registry_scope_actions(actions, end, catalog));
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_registry_scope_actions(u_char *p, u_char *last, ngx_uint_t catalog)
{
    u_char      *comma;
    size_t       len;
    ngx_uint_t   actions;

    actions = 0;

    for ( /* void */ ; p < last; p = comma + 1) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        len = comma - p;

        if (len == 1 && *p == '*') {
            actions |= catalog ? NGX_HTTP_REGISTRY_CATALOG
                               : NGX_HTTP_REGISTRY_SCOPE_REPOSITORY;

        } else if (catalog) {
            continue;

        } else if (len == 4 && ngx_strncmp(p, "pull", 4) == 0) {
            actions |= NGX_HTTP_REGISTRY_PULL;

        } else if (len == 4 && ngx_strncmp(p, "push", 4) == 0) {
            actions |= NGX_HTTP_REGISTRY_PUSH;

        } else if (len == 6 && ngx_strncmp(p, "delete", 6) == 0) {
            actions |= NGX_HTTP_REGISTRY_DELETE;
        }
    }

    return actions;
}
