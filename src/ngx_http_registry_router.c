
/*
 * ngx_http_registry_module: request routing.
 *
 * The content handler parses the URI once into a route (kind, repository
 * name, reference), validates every part that may become a path, and
 * dispatches on kind and method through a table.  It also holds the small
 * response helpers all endpoints share.
 */


#include "ngx_http_registry.h"


#define NGX_HTTP_REGISTRY_NAME_MAX  255
#define NGX_HTTP_REGISTRY_TAG_MAX   128

/* the spec's cap on the Warning headers of one response */
#define NGX_HTTP_REGISTRY_WARNING_MAX  4096


typedef ngx_int_t (*ngx_http_registry_endpoint_pt)(ngx_http_request_t *r);


typedef struct {
    ngx_http_registry_route_e      kind;
    ngx_uint_t                     methods;
    ngx_http_registry_endpoint_pt  handler;
    unsigned                       deletes:1;   /* needs registry_delete */
} ngx_http_registry_endpoint_t;


static ngx_int_t ngx_http_registry_base(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_parse_route(ngx_http_request_t *r,
    ngx_http_registry_route_t *route);
static u_char *ngx_http_registry_unescape(u_char *dst, u_char *src,
    u_char *last);
static ngx_int_t ngx_http_registry_split_route(ngx_str_t *path,
    ngx_http_registry_route_t *route);
static ngx_int_t ngx_http_registry_validate_route(ngx_http_request_t *r,
    ngx_http_registry_route_t *route);
static ngx_int_t ngx_http_registry_valid_component(u_char *p, u_char *last);
static ngx_int_t ngx_http_registry_valid_upload_id(ngx_str_t *id);
static void ngx_http_registry_end_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_segment_is(u_char *start, u_char *end,
    const char *word);


static ngx_http_registry_endpoint_t  ngx_http_registry_endpoints[] = {

    { NGX_HTTP_REGISTRY_ROUTE_BASE, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_http_registry_base, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_CATALOG, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_http_registry_catalog, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_TAGS, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_http_registry_tags_list, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_MANIFEST, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_http_registry_manifest_get, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_MANIFEST, NGX_HTTP_PUT,
      ngx_http_registry_manifest_put, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_MANIFEST, NGX_HTTP_DELETE,
      ngx_http_registry_manifest_delete, 1 },

    { NGX_HTTP_REGISTRY_ROUTE_BLOB, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_http_registry_blob_get, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_BLOB, NGX_HTTP_DELETE,
      ngx_http_registry_blob_delete, 1 },

    { NGX_HTTP_REGISTRY_ROUTE_REFERRERS, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_http_registry_referrers_list, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_UPLOADS, NGX_HTTP_POST,
      ngx_http_registry_upload_start, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_UPLOAD, NGX_HTTP_GET,
      ngx_http_registry_upload_status, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_UPLOAD, NGX_HTTP_PATCH,
      ngx_http_registry_upload_patch, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_UPLOAD, NGX_HTTP_PUT,
      ngx_http_registry_upload_put, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_UPLOAD, NGX_HTTP_DELETE,
      ngx_http_registry_upload_cancel, 0 },
};


static ngx_str_t  ngx_http_registry_api_version = ngx_string("registry/2.0");


ngx_int_t
ngx_http_registry_handler(ngx_http_request_t *r)
{
    ngx_uint_t                      i, route_known;
    ngx_http_registry_ctx_t        *ctx;
    ngx_http_registry_endpoint_t   *ep;
    ngx_http_registry_loc_conf_t   *rlcf;
    ngx_http_registry_main_conf_t  *rmcf;

    if (ngx_http_registry_add_header(r, "Docker-Distribution-Api-Version",
                                     &ngx_http_registry_api_version)
        == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_registry_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_registry_module);

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    ctx->store.root = rlcf->store;
    ctx->store.pool = r->pool;
    ctx->store.log = r->connection->log;
    ctx->store.links = rlcf->link_cache;

    rmcf = ngx_http_get_module_main_conf(r, ngx_http_registry_module);
    ctx->store.generation = rmcf->generation->data;

    if (ngx_http_registry_parse_route(r, &ctx->route) != NGX_OK) {
        return ctx->rc;
    }

    route_known = 0;

    for (i = 0; i < sizeof(ngx_http_registry_endpoints)
                    / sizeof(ngx_http_registry_endpoint_t); i++)
    {
        ep = &ngx_http_registry_endpoints[i];

        if (ep->kind != ctx->route.kind) {
            continue;
        }

        route_known = 1;

        if (!(ep->methods & r->method)) {
            continue;
        }

        if (ep->deletes && !rlcf->delete) {
            return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_UNSUPPORTED,
                                           "deletes are disabled");
        }

        return ep->handler(r);
    }

    if (!route_known) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_NOT_FOUND, NULL);
    }

    return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_UNSUPPORTED,
                                   "method not allowed here");
}


static ngx_int_t
ngx_http_registry_base(ngx_http_request_t *r)
{
    ngx_buf_t  *b;

    b = ngx_create_temp_buf(r->pool, 2);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, "{}", 2);

    return ngx_http_registry_send_body(r, NGX_HTTP_OK, "application/json", b);
}


/* ---- parsing ---- */

/*
 * The path is taken raw from the request line and only percent-decoded:
 * nginx's normalised r->uri would turn "a/../b" or "a//b" into another,
 * valid name, where the spec wants NAME_INVALID.
 */

static ngx_int_t
ngx_http_registry_parse_route(ngx_http_request_t *r,
    ngx_http_registry_route_t *route)
{
    u_char     *end;
    ngx_str_t   path;

    end = ngx_strlchr(r->unparsed_uri.data,
                      r->unparsed_uri.data + r->unparsed_uri.len, '?');
    if (end == NULL) {
        end = r->unparsed_uri.data + r->unparsed_uri.len;
    }

    path.data = ngx_pnalloc(r->pool, end - r->unparsed_uri.data);
    if (path.data == NULL) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    path.len = ngx_http_registry_unescape(path.data, r->unparsed_uri.data,
                                          end)
               - path.data;

    if (path.len < 4 || ngx_strncmp(path.data, "/v2/", 4) != 0) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_NOT_FOUND, NULL);
    }

    path.data += 4;
    path.len -= 4;

    if (ngx_http_registry_split_route(&path, route) != NGX_OK) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_NOT_FOUND, NULL);
    }

    return ngx_http_registry_validate_route(r, route);
}


/*
 * Percent-decodes a path, except "%2F" and "%00": an escaped "/" must not
 * become a separator, and stays "%2F", which no name, tag or digest allows.
 */

static u_char *
ngx_http_registry_unescape(u_char *dst, u_char *src, u_char *last)
{
    ngx_int_t  hi, lo;

    while (src < last) {
        if (*src == '%' && last - src >= 3) {
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
    u_char  *p, *last, *seg[3];
    ngx_int_t   n;

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

    for (p = last - 1; p >= path->data && n < 3; p--) {
        if (*p == '/') {
            seg[n++] = p;
        }
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
ngx_http_registry_validate_route(ngx_http_request_t *r,
    ngx_http_registry_route_t *route)
{
    switch (route->kind) {

    case NGX_HTTP_REGISTRY_ROUTE_BASE:
    case NGX_HTTP_REGISTRY_ROUTE_CATALOG:
        return NGX_OK;

    default:
        break;
    }

    if (ngx_http_registry_valid_name(&route->name) != NGX_OK) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_NAME_INVALID,
                                       NULL);
    }

    switch (route->kind) {

    case NGX_HTTP_REGISTRY_ROUTE_MANIFEST:
        if (ngx_strlchr(route->reference.data,
                        route->reference.data + route->reference.len, ':')
            == NULL)
        {
            if (ngx_http_registry_valid_tag(&route->reference) != NGX_OK) {
                return ngx_http_registry_fail(r,
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
            return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_DIGEST_INVALID,
                                           "invalid digest");
        }

        route->by_digest = 1;
        return NGX_OK;

    case NGX_HTTP_REGISTRY_ROUTE_UPLOAD:
        if (ngx_http_registry_valid_upload_id(&route->reference) != NGX_OK) {
            return ngx_http_registry_fail(r,
                                          NGX_HTTP_REGISTRY_BLOB_UPLOAD_UNKNOWN,
                                          NULL);
        }

        return NGX_OK;

    default:
        return NGX_OK;
    }
}


/*
 * The spec's name grammar: components separated by "/", each
 * [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*, the whole at most 255 bytes.
 */

ngx_int_t
ngx_http_registry_valid_name(ngx_str_t *name)
{
    u_char  *p, *start, *last;

    if (name->len == 0 || name->len > NGX_HTTP_REGISTRY_NAME_MAX) {
        return NGX_ERROR;
    }

    last = name->data + name->len;
    start = name->data;

    for (p = start; p <= last; p++) {
        if (p == last || *p == '/') {
            if (ngx_http_registry_valid_component(start, p) != NGX_OK) {
                return NGX_ERROR;
            }

            start = p + 1;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_valid_component(u_char *p, u_char *last)
{
    ngx_uint_t  after_alnum;

    after_alnum = 0;

    while (p < last) {

        if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')) {
            after_alnum = 1;
            p++;
            continue;
        }

        if (!after_alnum) {
            return NGX_ERROR;
        }

        switch (*p) {

        case '.':
            p++;
            break;

        case '_':
            p++;
            if (p < last && *p == '_') {
                p++;
            }
            break;

        case '-':
            while (p < last && *p == '-') {
                p++;
            }
            break;

        default:
            return NGX_ERROR;
        }

        after_alnum = 0;
    }

    return after_alnum ? NGX_OK : NGX_ERROR;
}


/* [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} */

ngx_int_t
ngx_http_registry_valid_tag(ngx_str_t *tag)
{
    u_char      c;
    ngx_uint_t  i;

    if (tag->len == 0 || tag->len > NGX_HTTP_REGISTRY_TAG_MAX) {
        return NGX_ERROR;
    }

    for (i = 0; i < tag->len; i++) {
        c = tag->data[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '_')
        {
            continue;
        }

        if (i > 0 && (c == '.' || c == '-')) {
            continue;
        }

        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the UUID form the upload module hands out: 8-4-4-4-12 lowercase hex */

static ngx_int_t
ngx_http_registry_valid_upload_id(ngx_str_t *id)
{
    u_char      c;
    ngx_uint_t  i;

    if (id->len != 36) {
        return NGX_ERROR;
    }

    for (i = 0; i < 36; i++) {
        c = id->data[i];

        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') {
                return NGX_ERROR;
            }

            continue;
        }

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* ---- response helpers ---- */

ngx_table_elt_t *
ngx_http_registry_add_header(ngx_http_request_t *r, const char *key,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NULL;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value = *value;

    return h;
}


/* a request header nginx does not parse for us; NGX_DECLINED if absent */

ngx_int_t
ngx_http_registry_header_in(ngx_http_request_t *r, const char *key,
    ngx_str_t *value)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(key);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_DECLINED;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) key, len) == 0)
        {
            *value = h[i].value;
            return NGX_OK;
        }
    }
}


/*
 * Warning: 299 - "<text>", the only form the spec allows; the spec also
 * caps all Warning headers of a response at 4096 bytes, so a warning that
 * would overflow is dropped (and logged).
 */

ngx_int_t
ngx_http_registry_warning(ngx_http_request_t *r, const char *text)
{
    ngx_str_t                 value;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    value.len = sizeof("299 - \"\"") - 1 + ngx_strlen(text);

    if (ctx->warned + value.len > NGX_HTTP_REGISTRY_WARNING_MAX) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "registry: warning not sent, over the spec's limit: %s",
                      text);
        return NGX_OK;
    }

    value.data = ngx_pnalloc(r->pool, value.len);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(value.data, "299 - \"%s\"", text);

    if (ngx_http_registry_add_header(r, "Warning", &value) == NULL) {
        return NGX_ERROR;
    }

    ctx->warned += value.len;

    return NGX_OK;
}


/* Docker-Content-Digest, and the digest as ETag for If-None-Match/If-Range */

ngx_int_t
ngx_http_registry_digest_headers(ngx_http_request_t *r,
    ngx_http_registry_digest_t *digest)
{
    ngx_str_t  etag;

    if (ngx_http_registry_add_header(r, "Docker-Content-Digest",
                                     &digest->text)
        == NULL)
    {
        return NGX_ERROR;
    }

    etag.len = digest->text.len + 2;
    etag.data = ngx_pnalloc(r->pool, etag.len);
    if (etag.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(etag.data, "\"%V\"", &digest->text);

    r->headers_out.etag = ngx_http_registry_add_header(r, "ETag", &etag);

    return r->headers_out.etag ? NGX_OK : NGX_ERROR;
}


/*
 * Location of a resource, relative to the host, which clients resolve
 * against the request URL; it is added as a plain header so that nginx
 * does not rewrite it into an absolute URL with its own idea of the host.
 */

ngx_int_t
ngx_http_registry_location(ngx_http_request_t *r, const char *kind,
    ngx_str_t *reference)
{
    ngx_str_t                 value;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    value.len = sizeof("/v2///") - 1 + ctx->route.name.len + ngx_strlen(kind)
                + reference->len;
    value.data = ngx_pnalloc(r->pool, value.len);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(value.data, "/v2/%V/%s/%V", &ctx->route.name, kind,
                reference);

    return ngx_http_registry_add_header(r, "Location", &value) ? NGX_OK
                                                               : NGX_ERROR;
}


/* a query argument, percent-decoded; NGX_DECLINED if absent */

ngx_int_t
ngx_http_registry_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    u_char     *src, *dst;
    ngx_str_t   raw;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &raw) != NGX_OK) {
        return NGX_DECLINED;
    }

    value->data = ngx_pnalloc(r->pool, raw.len);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    src = raw.data;
    dst = value->data;
    ngx_unescape_uri(&dst, &src, raw.len, 0);
    value->len = dst - value->data;

    return NGX_OK;
}


/*
 * Before any answer: a body nobody read is discarded, so the connection
 * may be kept alive; one whose reading was cut short by an error is not
 * read further, and the connection closes after the answer (nginx lingers
 * on it long enough for the client to read the answer).
 */

static void
ngx_http_registry_end_body(ngx_http_request_t *r)
{
    if (r->reading_body || ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }
}


/* a bodiless response; returns what a content handler returns */

ngx_int_t
ngx_http_registry_send_empty(ngx_http_request_t *r, ngx_uint_t status)
{
    ngx_http_registry_end_body(r);

    r->headers_out.status = status;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    return ngx_http_send_header(r);
}


ngx_int_t
ngx_http_registry_send_body(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, ngx_buf_t *b)
{
    ngx_int_t    rc;
    ngx_chain_t  out;

    ngx_http_registry_end_body(r);

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
