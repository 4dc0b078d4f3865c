
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

    rc = ngx_http_registry_route_parse(r->pool, &r->unparsed_uri,
                                       &ctx->route, &ctx->fault);

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
