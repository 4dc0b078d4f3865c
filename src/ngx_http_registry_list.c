
/*
 * ngx_http_registry_module: the listing endpoints, tags/list, _catalog
 * and referrers.
 *
 * Tags and the catalog are sorted byte-wise and paginated with n and
 * last; when more entries remain, an RFC 8288 Link header names the next
 * page.  Every answer comes from the worker's lists (store_list.c,
 * store_referrers.c), read off the event loop when they are missing or
 * stale, so a page costs the same whatever the store's size.  Requests
 * that need a catalog walk wait for one walk together.
 */


#include "ngx_http_registry.h"


/* the HTTP layer's walk of a store's catalog, one at a time */

typedef struct {
    ngx_http_registry_detached_t  task;
    ngx_http_registry_walk_t      walk;
} ngx_http_registry_walker_t;


static ngx_int_t ngx_http_registry_page_args(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_tags_read_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_tags_ready(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_tags_send(ngx_http_request_t *r,
    ngx_array_t *tags);
static ngx_int_t ngx_http_registry_catalog_walk(ngx_http_request_t *r,
    ngx_http_registry_store_t *st);
static ngx_int_t ngx_http_registry_walk_work(ngx_http_registry_op_t *op,
    void *data);
static void ngx_http_registry_walk_done(ngx_http_registry_detached_t *d);
static ngx_int_t ngx_http_registry_catalog_ready(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_catalog_send(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_catalog_visible(ngx_http_request_t *r,
    ngx_array_t *names, ngx_array_t *visible);
static ngx_int_t ngx_http_registry_referrers_read_work(
    ngx_http_registry_op_t *op, void *data);
static ngx_int_t ngx_http_registry_referrers_ready(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_referrers_send(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_registry_hold_result(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_send_page(ngx_http_request_t *r,
    ngx_str_t *head, ngx_array_t *names, ngx_str_t *next);


/* ---- tags ---- */

ngx_int_t
ngx_http_registry_tags_list(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_array_t              *tags, none;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    rc = ngx_http_registry_page_args(r, ctx);

    if (rc == NGX_DECLINED) {
        return ngx_http_registry_send_fault(r, &ctx->fault);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_registry_hold_result(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_registry_store_tags_cached(&ctx->op, &ctx->route.name,
                                             &tags, &ctx->result);

    switch (rc) {

    case NGX_OK:
        return ngx_http_registry_tags_send(r, tags);

    case NGX_AGAIN:
        return ngx_http_registry_task_start(r,
                                            ngx_http_registry_tags_read_work,
                                            ctx, ngx_http_registry_tags_ready);

    case NGX_DECLINED:

        /* no tags directory: a repository without tags, or none */

        rc = ngx_http_registry_store_is_repository(&ctx->op,
                                                   &ctx->route.name);
        if (rc != NGX_OK) {
            return ngx_http_registry_store_failed(r, &ctx->op, rc,
                                              NGX_HTTP_REGISTRY_NAME_UNKNOWN);
        }

        ngx_memzero(&none, sizeof(ngx_array_t));

        return ngx_http_registry_tags_send(r, &none);

    default:
        return ngx_http_registry_send_fault(r, &ctx->op.fault);
    }
}


static ngx_int_t
ngx_http_registry_tags_read_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_ctx_t *ctx = data;

    return ngx_http_registry_store_tags_read(op, &ctx->route.name,
                                             &ctx->result);
}


static ngx_int_t
ngx_http_registry_tags_ready(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (rc != NGX_OK) {
        return ngx_http_registry_send_fault(r, &ctx->task.op.fault);
    }

    return ngx_http_registry_tags_send(r,
                ngx_http_registry_store_tags_remember(&ctx->op, &ctx->result));
}


static ngx_int_t
ngx_http_registry_tags_send(ngx_http_request_t *r, ngx_array_t *tags)
{
    ngx_str_t                 head, next;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    head.len = sizeof("{\"name\":\"\",\"tags\":") - 1 + ctx->route.name.len;
    head.data = ngx_pnalloc(r->pool, head.len);
    if (head.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(head.data, "{\"name\":\"%V\",\"tags\":", &ctx->route.name);

    next.len = sizeof("/v2//tags/list") - 1 + ctx->route.name.len;
    next.data = ngx_pnalloc(r->pool, next.len);
    if (next.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(next.data, "/v2/%V/tags/list", &ctx->route.name);

    return ngx_http_registry_send_page(r, &head, tags, &next);
}


/*
 * n and last, into ctx->n (-1 when not given) and ctx->last (data NULL
 * when not given).  NGX_DECLINED: n is not a non-negative integer.
 */

static ngx_int_t
ngx_http_registry_page_args(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    ngx_int_t  rc;
    ngx_str_t  value;

    ctx->n = -1;

    rc = ngx_http_registry_arg(r, "n", &value);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        ctx->n = ngx_atoi(value.data, value.len);

        if (ctx->n == NGX_ERROR) {
            ctx->fault.code = NGX_HTTP_REGISTRY_PAGINATION_NUMBER_INVALID;
            ctx->fault.detail = "n must be a non-negative integer";
            return NGX_DECLINED;
        }
    }

    rc = ngx_http_registry_arg(r, "last", &ctx->last);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_str_null(&ctx->last);
    }

    return NGX_OK;
}


/* ---- the catalog ---- */

ngx_int_t
ngx_http_registry_catalog(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_http_registry_ctx_t      *ctx;
    ngx_http_registry_store_t    *st;
    ngx_http_registry_catalog_t  *catalog;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    st = ctx->op.store;
    catalog = st->catalog;

    rc = ngx_http_registry_page_args(r, ctx);

    if (rc == NGX_DECLINED) {
        return ngx_http_registry_send_fault(r, &ctx->fault);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_registry_store_catalog_state(&ctx->op);

    if (rc != NGX_OK && !catalog->walking
        && ngx_http_registry_catalog_walk(r, st) != NGX_OK)
    {
        return ngx_http_registry_send_fault(r, &ctx->op.fault);
    }

    if (rc != NGX_AGAIN || !catalog->walking) {
        return ngx_http_registry_catalog_send(r);
    }

    (void) ngx_http_registry_task_wait(r, &catalog->waiters,
                                       ngx_http_registry_catalog_ready);

    return NGX_DONE;
}


/* a walk of the store for a new index, no request's own */

static ngx_int_t
ngx_http_registry_catalog_walk(ngx_http_request_t *r,
    ngx_http_registry_store_t *st)
{
    ngx_http_registry_ctx_t     *ctx;
    ngx_http_registry_walker_t  *w;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    w = st->catalog->walker;

    if (w == NULL) {
        w = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_http_registry_walker_t));
        if (w == NULL) {
            return ngx_http_registry_op_syserr(&ctx->op, NGX_ENOMEM);
        }

        w->task.work = ngx_http_registry_walk_work;
        w->task.data = w;
        w->task.done = ngx_http_registry_walk_done;
        w->task.op.store = st;
        w->task.op.log = ngx_cycle->log;

        st->catalog->walker = w;
    }

    if (ngx_http_registry_store_catalog_prepare(&ctx->op, &w->walk)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    w->task.op.pool = w->walk.pool;
    st->catalog->walking = 1;

    if (ngx_http_registry_task_detach(&w->task, ctx->conf->thread_pool,
                                      ngx_cycle->pool)
        != NGX_OK)
    {
        st->catalog->walking = 0;
        ngx_destroy_pool(w->walk.pool);
        return ngx_http_registry_op_fail(&ctx->op,
                                         NGX_HTTP_REGISTRY_UNAVAILABLE,
                                         "no thread for the catalog");
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_walk_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_walker_t *w = data;

    return ngx_http_registry_store_catalog_walk(op, &w->walk);
}


/* the walk is back: the new index, and the requests waiting for it */

static void
ngx_http_registry_walk_done(ngx_http_registry_detached_t *d)
{
    ngx_http_registry_walker_t   *w;
    ngx_http_registry_catalog_t  *catalog;

    w = (ngx_http_registry_walker_t *) d;
    catalog = d->op.store->catalog;

    if (d->rc == NGX_OK) {
        ngx_http_registry_store_catalog_install(&d->op, &w->walk);

    } else {
        ngx_log_error(NGX_LOG_ERR, d->op.log, 0,
                      "registry: the catalog walk of \"%V\" failed",
                      &d->op.store->root);
        ngx_destroy_pool(w->walk.pool);
    }

    catalog->walking = 0;

    ngx_http_registry_task_wake(&catalog->waiters);
}


static ngx_int_t
ngx_http_registry_catalog_ready(ngx_http_request_t *r, ngx_int_t rc)
{
    return ngx_http_registry_catalog_send(r);
}


static ngx_int_t
ngx_http_registry_catalog_send(ngx_http_request_t *r)
{
    ngx_array_t                   visible;
    ngx_http_registry_ctx_t      *ctx;
    ngx_http_registry_catalog_t  *catalog;

    static ngx_str_t  head = ngx_string("{\"repositories\":");
    static ngx_str_t  next = ngx_string("/v2/_catalog");

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    catalog = ctx->op.store->catalog;

    if (catalog->pool == NULL) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_INTERNAL,
                                       "the catalog could not be read");
    }

    if (!ngx_http_registry_access_limited(r)) {
        return ngx_http_registry_send_page(r, &head, &catalog->names, &next);
    }

    if (ngx_http_registry_catalog_visible(r, &catalog->names, &visible)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_send_page(r, &head, &visible, &next);
}


/*
 * The page's part of the repositories the user may pull: from after
 * ?last=, n of them and one more (for the Link header to say so).  Each
 * is a match against the rules; a user who may pull few of many makes
 * this walk the whole index, a few microseconds per thousand.
 */

static ngx_int_t
ngx_http_registry_catalog_visible(ngx_http_request_t *r, ngx_array_t *names,
    ngx_array_t *visible)
{
    ngx_str_t                 *v;
    ngx_uint_t                 i;
    ngx_http_registry_ctx_t   *ctx;
    ngx_http_registry_page_t   rest;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ngx_array_init(visible, r->pool, ctx->n >= 0 ? ctx->n + 1 : 16,
                       sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* every name after ?last= */

    ngx_http_registry_store_page(names, ctx->last.data ? &ctx->last : NULL,
                                 -1, &rest);

    for (i = 0; i < rest.count; i++) {

        if (ctx->n >= 0 && visible->nelts > (ngx_uint_t) ctx->n) {
            break;
        }

        if (ngx_http_registry_access_allowed(r, &ctx->user, &rest.first[i],
                                             NGX_HTTP_REGISTRY_PULL)
            == 0)
        {
            continue;
        }

        v = ngx_array_push(visible);
        if (v == NULL) {
            return NGX_ERROR;
        }

        *v = rest.first[i];
    }

    return NGX_OK;
}


/* ---- referrers ---- */

/*
 * GET /v2/<name>/referrers/<digest>[?artifactType=]: an image index of
 * the repository's manifests whose subject is <digest>; never a 404, an
 * unknown subject or repository has no referrers.
 */

ngx_int_t
ngx_http_registry_referrers_list(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_str_t                 body;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    rc = ngx_http_registry_arg(r, "artifactType", &ctx->filter);

    if (rc == NGX_ERROR || ngx_http_registry_hold_result(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_str_null(&ctx->filter);
    }

    rc = ngx_http_registry_store_referrers_cached(&ctx->op, &ctx->route.name,
                                                  &ctx->route.digest,
                                                  &ctx->filter, &body,
                                                  &ctx->result);
    switch (rc) {

    case NGX_OK:
        return ngx_http_registry_referrers_send(r, &body);

    case NGX_AGAIN:
        return ngx_http_registry_task_start(r,
                                        ngx_http_registry_referrers_read_work,
                                        ctx, ngx_http_registry_referrers_ready);

    default:
        return ngx_http_registry_send_fault(r, &ctx->op.fault);
    }
}


static ngx_int_t
ngx_http_registry_referrers_read_work(ngx_http_registry_op_t *op,
    void *data)
{
    ngx_http_registry_ctx_t *ctx = data;

    return ngx_http_registry_store_referrers_read(op, &ctx->route.name,
                                                  &ctx->route.digest,
                                                  &ctx->filter,
                                                  ctx->conf->manifest_max_size,
                                                  &ctx->result);
}


static ngx_int_t
ngx_http_registry_referrers_ready(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_str_t                 body;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (rc != NGX_OK) {
        return ngx_http_registry_send_fault(r, &ctx->task.op.fault);
    }

    if (ngx_http_registry_store_referrers_remember(&ctx->op, &ctx->result,
                                                   &body)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_referrers_send(r, &body);
}


static ngx_int_t
ngx_http_registry_referrers_send(ngx_http_request_t *r, ngx_str_t *body)
{
    ngx_buf_t                *b;
    ngx_str_t                 applied;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = 1;

    if (ctx->filter.data) {
        ngx_str_set(&applied, "artifactType");

        if (ngx_http_registry_add_header(r, "OCI-Filters-Applied", &applied)
            == NULL)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_registry_send_body(r, NGX_HTTP_OK,
                                 "application/vnd.oci.image.index.v1+json", b);
}


/* a listing read for this request: dropped with it unless a cache took it */

static ngx_int_t
ngx_http_registry_hold_result(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_registry_result_drop;
    cln->data = &ctx->result;

    return NGX_OK;
}


/*
 * The page of a sorted list that n and last ask for (ctx->n, ctx->last),
 * as {<head>[...]}, with a Link to the next page when there is one
 */

static ngx_int_t
ngx_http_registry_send_page(ngx_http_request_t *r, ngx_str_t *head,
    ngx_array_t *names, ngx_str_t *next)
{
    size_t                     len;
    ngx_buf_t                 *b;
    ngx_str_t                  link, *last;
    ngx_uint_t                 i;
    ngx_http_registry_ctx_t   *ctx;
    ngx_http_registry_page_t   page;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    ngx_http_registry_store_page(names, ctx->last.data ? &ctx->last : NULL,
                                 ctx->n, &page);

    len = head->len + sizeof("[]}\n") - 1;

    for (i = 0; i < page.count; i++) {
        len += page.first[i].len + sizeof("\"\",") - 1;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, head->data, head->len);
    *b->last++ = '[';

    /* names and tags are of the grammar's characters: nothing to escape */

    for (i = 0; i < page.count; i++) {
        if (i) {
            *b->last++ = ',';
        }

        *b->last++ = '"';
        b->last = ngx_cpymem(b->last, page.first[i].data, page.first[i].len);
        *b->last++ = '"';
    }

    b->last = ngx_cpymem(b->last, "]}\n", 3);

    if (page.more && page.count) {
        last = &page.first[page.count - 1];

        link.len = next->len + last->len + NGX_INT_T_LEN
                   + sizeof("<?last=&n=>; rel=\"next\"") - 1;
        link.data = ngx_pnalloc(r->pool, link.len);
        if (link.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        link.len = ngx_sprintf(link.data, "<%V?last=%V&n=%i>; rel=\"next\"",
                               next, last, ctx->n)
                   - link.data;

        if (ngx_http_registry_add_header(r, "Link", &link) == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_registry_send_body(r, NGX_HTTP_OK, "application/json", b);
}
