
/*
 * ngx_http_registry_module: request routing.
 *
 * The content handler parses the URI once into a route (kind, repository
 * name, reference), validates every part that may become a path, and
 * dispatches on kind and method through a table.
 */


#include "ngx_http_registry.h"
#include "ngx_http_registry_mirror.h"


/* what writing to a repository needs, as distribution asks a token for */
#define NGX_HTTP_REGISTRY_WRITES (NGX_HTTP_REGISTRY_PUSH|NGX_HTTP_REGISTRY_PULL)


typedef ngx_int_t (*ngx_http_registry_endpoint_pt)(ngx_http_request_t *r);


typedef struct {
    ngx_http_registry_route_e      kind;
    ngx_uint_t                     methods;
    ngx_http_registry_endpoint_pt  handler;
    ngx_uint_t                     actions;     /* on the repository */
    unsigned                       deletes:1;   /* needs registry_delete */
} ngx_http_registry_endpoint_t;


static ngx_int_t ngx_http_registry_base(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_parse_route(ngx_http_request_t *r,
    ngx_http_registry_route_t *route, ngx_http_registry_fault_t *fault);
static u_char *ngx_http_registry_unescape(u_char *dst, u_char *src,
    u_char *last);
static ngx_int_t ngx_http_registry_split_route(ngx_str_t *path,
    ngx_http_registry_route_t *route);
static ngx_int_t ngx_http_registry_validate_route(
    ngx_http_registry_route_t *route, ngx_http_registry_fault_t *fault);
static ngx_int_t ngx_http_registry_refuse(ngx_http_registry_fault_t *fault,
    ngx_http_registry_err_e code, const char *detail);
static ngx_int_t ngx_http_registry_segment_is(u_char *start, u_char *end,
    const char *word);


static ngx_http_registry_endpoint_t  ngx_http_registry_endpoints[] = {

    { NGX_HTTP_REGISTRY_ROUTE_BASE, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_http_registry_base, 0, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_CATALOG, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_http_registry_catalog, NGX_HTTP_REGISTRY_CATALOG, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_TAGS, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_http_registry_tags_list, NGX_HTTP_REGISTRY_PULL, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_MANIFEST, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_http_registry_manifest_get, NGX_HTTP_REGISTRY_PULL, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_MANIFEST, NGX_HTTP_PUT,
      ngx_http_registry_manifest_put, NGX_HTTP_REGISTRY_WRITES, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_MANIFEST, NGX_HTTP_DELETE,
      ngx_http_registry_manifest_delete, NGX_HTTP_REGISTRY_DELETE, 1 },

    { NGX_HTTP_REGISTRY_ROUTE_BLOB, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_http_registry_blob_get, NGX_HTTP_REGISTRY_PULL, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_BLOB, NGX_HTTP_DELETE,
      ngx_http_registry_blob_delete, NGX_HTTP_REGISTRY_DELETE, 1 },

    { NGX_HTTP_REGISTRY_ROUTE_REFERRERS, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_http_registry_referrers_list, NGX_HTTP_REGISTRY_PULL, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_UPLOADS, NGX_HTTP_POST,
      ngx_http_registry_upload_start, NGX_HTTP_REGISTRY_WRITES, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_UPLOAD, NGX_HTTP_GET,
      ngx_http_registry_upload_status, NGX_HTTP_REGISTRY_WRITES, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_UPLOAD, NGX_HTTP_PATCH,
      ngx_http_registry_upload_patch, NGX_HTTP_REGISTRY_WRITES, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_UPLOAD, NGX_HTTP_PUT,
      ngx_http_registry_upload_put, NGX_HTTP_REGISTRY_WRITES, 0 },

    { NGX_HTTP_REGISTRY_ROUTE_UPLOAD, NGX_HTTP_DELETE,
      ngx_http_registry_upload_cancel, NGX_HTTP_REGISTRY_WRITES, 0 },
};


ngx_int_t
ngx_http_registry_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc, mirrored;
    ngx_uint_t                     i, route_known;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_endpoint_t  *ep;
    ngx_http_registry_loc_conf_t  *rlcf;

    if (ngx_http_registry_api_version(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_registry_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_registry_module);

    ctx->operation = NGX_HTTP_REGISTRY_OPERATION_OTHER;

    if (ngx_http_registry_task_init(r, &ctx->task) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    ctx->conf = rlcf;
    ctx->op.store = rlcf->store;
    ctx->op.pool = r->pool;
    ctx->op.log = r->connection->log;
    ctx->op.links = rlcf->link_cache;

    if (rlcf->store->root_fd == NGX_INVALID_FILE) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_UNAVAILABLE,
                                       "the store could not be opened");
    }

    rc = ngx_http_registry_parse_route(r, &ctx->route, &ctx->fault);

    if (rc == NGX_DECLINED) {
        return ngx_http_registry_send_fault(r, &ctx->fault);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* before the access decision: it is on the name the store keeps */
    mirrored = ngx_http_registry_mirror_route(r, &ctx->route);

    if (mirrored == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
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

        ctx->operation = ngx_http_registry_operation(r, ep->kind);

        if (ep->deletes && !rlcf->delete) {
            return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_UNSUPPORTED,
                                           "deletes are disabled");
        }

        rc = ngx_http_registry_access_check(r, ep->actions);

        if (rc == NGX_DECLINED) {
            return ngx_http_registry_send_fault(r, &ctx->fault);
        }

        if (rc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* after access: a client refused anyway is told so, not this */
        if (rlcf->read_only && !(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_UNSUPPORTED,
                                    "the registry is read-only for "
                                    "maintenance; reads are served");
        }

        if (ngx_http_registry_metrics_upload(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (mirrored == NGX_OK) {
            return ngx_http_registry_mirror_serve(r, ep->kind, ep->handler);
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
 * valid name, where the spec wants NAME_INVALID.  NGX_DECLINED: not a
 * valid route, *fault says why.
 */

static ngx_int_t
ngx_http_registry_parse_route(ngx_http_request_t *r,
    ngx_http_registry_route_t *route, ngx_http_registry_fault_t *fault)
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
        return NGX_ERROR;
    }

    path.len = ngx_http_registry_unescape(path.data, r->unparsed_uri.data,
                                          end)
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
