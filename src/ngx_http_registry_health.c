
/*
 * ngx_http_registry_module: the health check.
 *
 *     location = /health { registry_health; }     # registry_root inherited
 *
 * 200 {"status":"ok"} when the location's store can be written and read
 * back, 503 {"status":"unhealthy","reason":"..."} otherwise, for a load
 * balancer or an orchestrator to take the instance out.  The answer comes
 * from the store's probe (store_probe.c), run off the event loop in the
 * location's thread pool, and holds for a second in each worker: health
 * checks from many balancers cost one probe a second, and those that
 * arrive while a probe runs wait for it together.
 */


#include "ngx_http_registry.h"

#include <jansson.h>


#define NGX_HTTP_REGISTRY_HEALTH_VALID  1000
#define NGX_HTTP_REGISTRY_REASON_MAX    256


/* each worker's: the last probe of the location's store */

struct ngx_http_registry_health_s {
    ngx_http_registry_detached_t   task;
    ngx_queue_t                    waiters;
    ngx_msec_t                     checked;
    ngx_str_t                      reason;   /* empty: healthy */
    u_char                         text[NGX_HTTP_REGISTRY_REASON_MAX];
    unsigned                       known:1;
    unsigned                       probing:1;
};


static ngx_int_t ngx_http_registry_health_probe(ngx_http_request_t *r,
    ngx_http_registry_health_t *h);
static ngx_int_t ngx_http_registry_health_work(ngx_http_registry_op_t *op,
    void *data);
static void ngx_http_registry_health_done(ngx_http_registry_detached_t *d);
static void ngx_http_registry_health_failed(ngx_http_registry_health_t *h,
    ngx_http_registry_fault_t *fault);
static ngx_int_t ngx_http_registry_health_wait(ngx_http_request_t *r,
    ngx_http_registry_health_t *h);
static ngx_int_t ngx_http_registry_health_answer(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_health_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *reason);


/* "registry_health": the state, copied into each worker as it forks */

ngx_http_registry_health_t *
ngx_http_registry_health_create(ngx_conf_t *cf)
{
    ngx_http_registry_health_t  *h;

    h = ngx_pcalloc(cf->pool, sizeof(ngx_http_registry_health_t));
    if (h == NULL) {
        return NULL;
    }

    ngx_queue_init(&h->waiters);

    h->task.work = ngx_http_registry_health_work;
    h->task.data = h;
    h->task.done = ngx_http_registry_health_done;

    return h;
}


ngx_int_t
ngx_http_registry_health_handler(ngx_http_request_t *r)
{
    ngx_str_t                      reason;
    ngx_http_registry_health_t    *h;
    ngx_http_registry_loc_conf_t  *rlcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);
    h = rlcf->health;

    if (h->probing) {
        return ngx_http_registry_health_wait(r, h);
    }

    if (h->known
        && ngx_current_msec - h->checked < NGX_HTTP_REGISTRY_HEALTH_VALID)
    {
        return ngx_http_registry_health_answer(r, NGX_OK);
    }

    if (ngx_http_registry_health_probe(r, h) != NGX_OK) {
        ngx_str_set(&reason, "no thread for the probe");
        return ngx_http_registry_health_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             &reason);
    }

    /* without a thread pool the probe has run already */

    if (h->probing) {
        return ngx_http_registry_health_wait(r, h);
    }

    return ngx_http_registry_health_answer(r, NGX_OK);
}


/* a task no request owns: every request waiting shares its answer */

static ngx_int_t
ngx_http_registry_health_probe(ngx_http_request_t *r,
    ngx_http_registry_health_t *h)
{
    ngx_http_registry_fault_t      fault;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    if (rlcf->store->root_fd == NGX_INVALID_FILE) {
        fault.code = NGX_HTTP_REGISTRY_UNAVAILABLE;
        fault.errnum = 0;
        fault.detail = "the store could not be opened";

        ngx_http_registry_health_failed(h, &fault);
        return NGX_OK;
    }

    h->task.op.store = rlcf->store;
    h->task.op.log = ngx_cycle->log;
    ngx_memzero(&h->task.op.fault, sizeof(ngx_http_registry_fault_t));

    h->task.op.pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, ngx_cycle->log);
    if (h->task.op.pool == NULL) {
        return NGX_ERROR;
    }

    h->probing = 1;

    if (ngx_http_registry_task_detach(&h->task, rlcf->thread_pool,
                                      ngx_cycle->pool)
        != NGX_OK)
    {
        h->probing = 0;
        ngx_destroy_pool(h->task.op.pool);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_health_work(ngx_http_registry_op_t *op, void *data)
{
    return ngx_http_registry_store_probe(op);
}


static void
ngx_http_registry_health_done(ngx_http_registry_detached_t *d)
{
    ngx_http_registry_health_t *h = d->data;

    if (d->rc == NGX_OK) {
        h->reason.len = 0;
        h->known = 1;
        h->checked = ngx_current_msec;

    } else {
        ngx_http_registry_health_failed(h, &d->op.fault);
    }

    ngx_destroy_pool(d->op.pool);
    h->probing = 0;

    ngx_http_registry_task_wake(&h->waiters);
}


/* the reason: the step that failed, and the system's word for why */

static void
ngx_http_registry_health_failed(ngx_http_registry_health_t *h,
    ngx_http_registry_fault_t *fault)
{
    u_char  *p, *last;

    p = h->text;
    last = h->text + NGX_HTTP_REGISTRY_REASON_MAX;

    p = ngx_slprintf(p, last, "%s",
                     fault->detail ? fault->detail : "the store failed");

    if (fault->errnum) {
        p = ngx_slprintf(p, last, ": ");
        p = ngx_strerror(fault->errnum, p, last - p);
    }

    h->reason.data = h->text;
    h->reason.len = p - h->text;
    h->known = 1;
    h->checked = ngx_current_msec;

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "registry: unhealthy: %V", &h->reason);
}


/* held as for a task of its own, answered when the probe is back */

static ngx_int_t
ngx_http_registry_health_wait(ngx_http_request_t *r,
    ngx_http_registry_health_t *h)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_registry_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_registry_module);

    (void) ngx_http_registry_task_wait(r, &h->waiters,
                                       ngx_http_registry_health_answer);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_registry_health_answer(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_health_t    *h;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);
    h = rlcf->health;

    return ngx_http_registry_health_send(r, h->reason.len
                                            ? NGX_HTTP_SERVICE_UNAVAILABLE
                                            : NGX_HTTP_OK,
                                         &h->reason);
}


static ngx_int_t
ngx_http_registry_health_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *reason)
{
    size_t      len;
    json_t     *json;
    ngx_buf_t  *b;

    static ngx_str_t  no_store = ngx_string("no-store");

    json = (status == NGX_HTTP_OK)
           ? json_pack("{s:s}", "status", "ok")
           : json_pack("{s:s, s:s%}", "status", "unhealthy", "reason",
                       reason->data, reason->len);
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = json_dumpb(json, NULL, 0, JSON_COMPACT);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        json_decref(json);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last += json_dumpb(json, (char *) b->last, len, JSON_COMPACT);
    *b->last++ = '\n';

    json_decref(json);

    if (ngx_http_registry_add_header(r, "Cache-Control", &no_store) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_send_body(r, status, "application/json", b);
}
