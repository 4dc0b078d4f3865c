
/*
 * ngx_http_registry_module: the admin location (registry_admin on).
 *
 * Starts and reports the maintenance jobs of the location's store, as
 * JSON, at paths below the location's prefix:
 *     POST <prefix><kind>?<options>   202 {"id","kind","state"}, Location
 *     GET  <prefix>jobs/<id>          the job: running, or its report
 *     GET  <prefix>jobs               the recent jobs, newest first
 * Who may is nginx's business (allow, deny, auth_basic in the location).
 * The runner is jobs.c; a running job is answered from its slot in shared
 * memory, a finished one from its report, sent as a file; errors have the
 * shape of the registry's, {"errors":[{"code","message","detail"}]}.
 */


#include "ngx_http_registry.h"

#include <jansson.h>


typedef struct {
    ngx_http_registry_job_start_t  start;
    ngx_queue_t                    waiting;   /* the request, until told */
    ngx_int_t                      rc;
    ngx_str_t                      prefix;    /* the location's, with '/' */
    ngx_str_t                      list;      /* GET jobs */
} ngx_http_registry_admin_t;


static ngx_int_t ngx_http_registry_admin_path(ngx_http_request_t *r,
    ngx_http_registry_admin_t *adm, ngx_str_t *path);
static ngx_int_t ngx_http_registry_admin_start(ngx_http_request_t *r,
    ngx_http_registry_admin_t *adm, ngx_str_t *kind);
static ngx_int_t ngx_http_registry_admin_options(ngx_http_request_t *r,
    ngx_http_registry_admin_t *adm, ngx_str_t *name, ngx_str_t *value);
static ngx_int_t ngx_http_registry_admin_bad_option(ngx_http_request_t *r,
    ngx_int_t rc, ngx_str_t *name, ngx_str_t *value);
static void ngx_http_registry_admin_started(ngx_http_registry_job_start_t *s,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_admin_accepted(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_admin_busy(ngx_http_request_t *r,
    ngx_http_registry_job_start_t *s);
static ngx_int_t ngx_http_registry_admin_job(ngx_http_request_t *r,
    ngx_str_t *id);
static ngx_int_t ngx_http_registry_admin_running(ngx_http_request_t *r,
    ngx_http_registry_job_info_t *info);
static ngx_int_t ngx_http_registry_admin_report(ngx_http_request_t *r,
    ngx_str_t *id);
static ngx_int_t ngx_http_registry_admin_list_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_admin_listed(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_admin_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message,
    json_t *detail);
static ngx_int_t ngx_http_registry_admin_send(ngx_http_request_t *r,
    ngx_uint_t status, json_t *doc);


ngx_int_t
ngx_http_registry_admin_handler(ngx_http_request_t *r)
{
    ngx_str_t                      path;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_admin_t     *adm;
    ngx_http_registry_loc_conf_t  *rlcf;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_registry_ctx_t));
    adm = ngx_pcalloc(r->pool, sizeof(ngx_http_registry_admin_t));

    if (ctx == NULL || adm == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_registry_module);

    if (ngx_http_registry_task_init(r, &ctx->task) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    ctx->conf = rlcf;
    ctx->op.store = rlcf->store;
    ctx->op.pool = r->pool;
    ctx->op.log = r->connection->log;
    ctx->task.data = adm;

    ngx_queue_init(&adm->waiting);

    if (rlcf->store->root_fd == NGX_INVALID_FILE) {
        return ngx_http_registry_admin_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "UNAVAILABLE",
                                             "the store could not be opened",
                                             NULL);
    }

    if (ngx_http_registry_admin_path(r, adm, &path) != NGX_OK) {
        return ngx_http_registry_admin_error(r, NGX_HTTP_NOT_FOUND,
                                             "NOT_FOUND", "no such endpoint",
                                             NULL);
    }

    if (path.len > sizeof("jobs/") - 1
        && ngx_strncmp(path.data, "jobs/", sizeof("jobs/") - 1) == 0)
    {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            goto not_allowed;
        }

        path.data += sizeof("jobs/") - 1;
        path.len -= sizeof("jobs/") - 1;

        return ngx_http_registry_admin_job(r, &path);
    }

    if (path.len == sizeof("jobs") - 1
        && ngx_strncmp(path.data, "jobs", path.len) == 0)
    {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            goto not_allowed;
        }

        return ngx_http_registry_task_start(r,
                                            ngx_http_registry_admin_list_work,
                                            adm,
                                            ngx_http_registry_admin_listed);
    }

    if (r->method != NGX_HTTP_POST) {
        goto not_allowed;
    }

    return ngx_http_registry_admin_start(r, adm, &path);

not_allowed:

    return ngx_http_registry_admin_error(r, NGX_HTTP_NOT_ALLOWED,
                                         "UNSUPPORTED",
                                         "the method is not allowed here",
                                         NULL);
}


/*
 * The URI below the location's prefix (a prefix location: "/_registry/"
 * or "/_registry"), and the prefix for Location, ending in '/'.
 */

static ngx_int_t
ngx_http_registry_admin_path(ngx_http_request_t *r,
    ngx_http_registry_admin_t *adm, ngx_str_t *path)
{
    u_char                    *p;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (r->uri.len < clcf->name.len
        || ngx_strncmp(r->uri.data, clcf->name.data, clcf->name.len) != 0)
    {
        return NGX_DECLINED;
    }

    path->data = r->uri.data + clcf->name.len;
    path->len = r->uri.len - clcf->name.len;

    adm->prefix = clcf->name;

    if (clcf->name.len && clcf->name.data[clcf->name.len - 1] == '/') {
        return NGX_OK;
    }

    if (path->len == 0 || path->data[0] != '/') {
        return NGX_DECLINED;
    }

    path->data++;
    path->len--;

    p = ngx_pnalloc(r->pool, clcf->name.len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, clcf->name.data, clcf->name.len);
    p[clcf->name.len] = '/';

    adm->prefix.data = p;
    adm->prefix.len = clcf->name.len + 1;

    return NGX_OK;
}


/* ---- POST <kind> ---- */

static ngx_int_t
ngx_http_registry_admin_start(ngx_http_request_t *r,
    ngx_http_registry_admin_t *adm, ngx_str_t *kind)
{
    ngx_int_t                      rc;
    ngx_str_t                      name, value;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_loc_conf_t  *rlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    rlcf = ctx->conf;

    if (ngx_http_registry_job_init(&adm->start, rlcf->store,
                                   rlcf->thread_pool, kind,
                                   r->connection->log)
        != NGX_OK)
    {
        return ngx_http_registry_admin_error(r, NGX_HTTP_NOT_FOUND,
                                             "NOT_FOUND",
                                             "no such kind of job", NULL);
    }

    rc = ngx_http_registry_admin_options(r, adm, &name, &value);
    if (rc != NGX_OK) {
        return ngx_http_registry_admin_bad_option(r, rc, &name, &value);
    }

    adm->start.started = ngx_http_registry_admin_started;
    adm->start.data = r;

    rc = ngx_http_registry_job_start(&adm->start);

    if (rc == NGX_BUSY) {
        return ngx_http_registry_admin_busy(r, &adm->start);
    }

    if (rc != NGX_OK) {
        return ngx_http_registry_admin_error(r,
                                         NGX_HTTP_INTERNAL_SERVER_ERROR,
                                         "UNKNOWN", "the job could not be "
                                         "started (see the error log)",
                                         NULL);
    }

    /* answered once this nginx holds the store's lease, or cannot */

    if (ngx_http_registry_task_wait(r, &adm->waiting,
                                    ngx_http_registry_admin_accepted)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


/*
 * The query's arguments, each an option of the kind: "name=value", or
 * "name" alone for a flag.  As ngx_http_registry_job_option() for the
 * first that is refused, *name and *value set (NGX_ERROR and no name:
 * no memory).
 */

static ngx_int_t
ngx_http_registry_admin_options(ngx_http_request_t *r,
    ngx_http_registry_admin_t *adm, ngx_str_t *name, ngx_str_t *value)
{
    u_char     *p, *last, *amp, *eq, *dst;
    ngx_int_t   rc;

    p = r->args.data;
    last = p + r->args.len;

    for ( /* void */ ; p < last; p = amp + 1) {

        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        if (amp == p) {
            continue;
        }

        eq = ngx_strlchr(p, amp, '=');

        name->data = p;
        name->len = (eq ? eq : amp) - p;

        value->len = 0;
        value->data = (u_char *) "";

        if (eq) {
            value->data = ngx_pnalloc(r->pool, amp - eq);
            if (value->data == NULL) {
                name->data = NULL;
                return NGX_ERROR;
            }

            dst = value->data;
            eq++;
            ngx_unescape_uri(&dst, &eq, amp - eq, 0);
            value->len = dst - value->data;
        }

        rc = ngx_http_registry_job_option(&adm->start, name, value);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_admin_bad_option(ngx_http_request_t *r, ngx_int_t rc,
    ngx_str_t *name, ngx_str_t *value)
{
    if (rc == NGX_DECLINED) {
        return ngx_http_registry_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                       "OPTION_UNKNOWN",
                                       "this kind of job has no such option",
                                       json_pack("{s:s%}", "option",
                                                 name->data, name->len));
    }

    if (rc == NGX_ERROR && name->data) {
        return ngx_http_registry_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                       "OPTION_INVALID",
                                       "the option's value is malformed",
                                       json_pack("{s:s%,s:s%}",
                                                 "option", name->data,
                                                 name->len, "value",
                                                 value->data, value->len));
    }

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


static void
ngx_http_registry_admin_started(ngx_http_registry_job_start_t *s,
    ngx_int_t rc)
{
    ngx_queue_t                 waiting;
    ngx_http_request_t         *r;
    ngx_http_registry_ctx_t    *ctx;
    ngx_http_registry_admin_t  *adm;

    r = s->data;
    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    adm = ctx->task.data;

    adm->rc = rc;

    /* the request, freed once answered, takes its queue with it */

    ngx_queue_init(&waiting);

    if (!ngx_queue_empty(&adm->waiting)) {
        ngx_queue_add(&waiting, &adm->waiting);
        ngx_queue_init(&adm->waiting);
    }

    ngx_http_registry_task_wake(&waiting);
}


static ngx_int_t
ngx_http_registry_admin_accepted(ngx_http_request_t *r, ngx_int_t rc)
{
    u_char                     *p;
    json_t                     *doc;
    ngx_str_t                   location;
    ngx_http_registry_ctx_t    *ctx;
    ngx_http_registry_admin_t  *adm;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    adm = ctx->task.data;

    if (adm->rc == NGX_BUSY) {
        return ngx_http_registry_admin_busy(r, &adm->start);
    }

    if (adm->rc != NGX_OK) {
        return ngx_http_registry_admin_error(r,
                                         NGX_HTTP_INTERNAL_SERVER_ERROR,
                                         "UNKNOWN", "the job could not "
                                         "take the store's lease (see the "
                                         "error log)", NULL);
    }

    location.len = adm->prefix.len + sizeof("jobs/") - 1 + adm->start.id.len;
    location.data = ngx_pnalloc(r->pool, location.len);
    if (location.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(location.data, adm->prefix.data, adm->prefix.len);
    p = ngx_cpymem(p, "jobs/", sizeof("jobs/") - 1);
    ngx_memcpy(p, adm->start.id.data, adm->start.id.len);

    if (ngx_http_registry_add_header(r, "Location", &location) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    doc = json_pack("{s:s%,s:s%,s:s}",
                    "id", adm->start.id.data, adm->start.id.len,
                    "kind", adm->start.kind.data, adm->start.kind.len,
                    "state", "running");

    return ngx_http_registry_admin_send(r, NGX_HTTP_ACCEPTED, doc);
}


/* 409: a job runs, in this nginx or (its lease says) in another */

static ngx_int_t
ngx_http_registry_admin_busy(ngx_http_request_t *r,
    ngx_http_registry_job_start_t *s)
{
    json_t  *detail;

    detail = json_pack("{s:s%}", "id", s->id.data, s->id.len);

    if (detail && s->host.len
        && json_object_set_new(detail, "host",
                               json_stringn((char *) s->host.data,
                                            s->host.len))
           != 0)
    {
        json_decref(detail);
        detail = NULL;
    }

    return ngx_http_registry_admin_error(r, NGX_HTTP_CONFLICT, "JOB_RUNNING",
                                         "a job runs on this store", detail);
}


/* ---- GET jobs/<id> ---- */

static ngx_int_t
ngx_http_registry_admin_job(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_job_info_t   info;

    if (ngx_http_registry_job_valid_id(id) != NGX_OK) {
        return ngx_http_registry_admin_error(r, NGX_HTTP_NOT_FOUND,
                                             "JOB_UNKNOWN", "no such job",
                                             NULL);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ngx_http_registry_job_running(ctx->op.store, &info) == NGX_OK
        && ngx_strncmp(info.id, id->data, id->len) == 0)
    {
        return ngx_http_registry_admin_running(r, &info);
    }

    return ngx_http_registry_admin_report(r, id);
}


static ngx_int_t
ngx_http_registry_admin_running(ngx_http_request_t *r,
    ngx_http_registry_job_info_t *info)
{
    u_char  *p;
    json_t  *doc;
    u_char   started[NGX_HTTP_REGISTRY_RFC3339_LEN];

    p = ngx_http_registry_rfc3339(started, info->started);

    doc = json_pack("{s:s%,s:s,s:s,s:s,s:I,s:I,s:s%}",
                    "id", info->id, (size_t) NGX_HTTP_REGISTRY_JOB_ID_LEN,
                    "kind", info->kind,
                    "state", "running",
                    "phase", info->phase,
                    "done", (json_int_t) info->done,
                    "total", (json_int_t) info->total,
                    "started", started, (size_t) (p - started));

    return ngx_http_registry_admin_send(r, NGX_HTTP_OK, doc);
}


/*
 * The report, sent as a file as nginx's static module does (an open in
 * the event loop), but never from open_file_cache: the report of a
 * running job is replaced when it ends.
 */

static ngx_int_t
ngx_http_registry_admin_report(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_str_t                  path;
    ngx_open_file_info_t       of;
    ngx_http_registry_ctx_t   *ctx;
    ngx_http_core_loc_conf_t  *clcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (ngx_http_registry_store_job_report_file(&ctx->op, id, &path)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&of, sizeof(ngx_open_file_info_t));

    of.read_ahead = clcf->read_ahead;
    of.directio = clcf->directio;

#if (NGX_HAVE_OPENAT)
    of.disable_symlinks = NGX_DISABLE_SYMLINKS_ON;
    of.disable_symlinks_from = ctx->op.store->root.len;
#endif

    if (ngx_open_cached_file(NULL, &path, &of, r->pool) != NGX_OK) {
        if (of.err == NGX_ENOENT || of.err == NGX_ENOTDIR) {
            return ngx_http_registry_admin_error(r, NGX_HTTP_NOT_FOUND,
                                                 "JOB_UNKNOWN", "no such job",
                                                 NULL);
        }

        ngx_log_error(NGX_LOG_CRIT, r->connection->log, of.err,
                      "%s \"%s\" failed", of.failed, path.data);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!of.is_file) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    return ngx_http_registry_send_file(r, &path, 0, &of);
}


/* ---- GET jobs ---- */

static ngx_int_t
ngx_http_registry_admin_list_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_admin_t *adm = data;

    return ngx_http_registry_store_jobs_list(op, &adm->list);
}


static ngx_int_t
ngx_http_registry_admin_listed(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_buf_t                  *b;
    ngx_http_registry_ctx_t    *ctx;
    ngx_http_registry_admin_t  *adm;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    adm = ctx->task.data;

    if (rc != NGX_OK) {
        return ngx_http_registry_send_fault(r, &ctx->task.op.fault);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = adm->list.data;
    b->last = adm->list.data + adm->list.len;
    b->memory = 1;

    return ngx_http_registry_send_body(r, NGX_HTTP_OK, "application/json", b);
}


/* ---- JSON answers ---- */

/* {"errors":[{"code","message","detail"}]}; takes detail (may be NULL) */

static ngx_int_t
ngx_http_registry_admin_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, json_t *detail)
{
    json_t  *doc;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "registry admin: %s %s", code, message);

    doc = json_pack("{s:[{s:s,s:s,s:o}]}", "errors", "code", code,
                    "message", message,
                    "detail", detail ? detail : json_object());

    return ngx_http_registry_admin_send(r, status, doc);
}


/* sends doc (taken; NULL: it could not be made) */

static ngx_int_t
ngx_http_registry_admin_send(ngx_http_request_t *r, ngx_uint_t status,
    json_t *doc)
{
    char       *text;
    size_t      len;
    ngx_buf_t  *b;

    if (doc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(text);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, text, len);
    *b->last++ = '\n';

    free(text);

    return ngx_http_registry_send_body(r, status, "application/json", b);
}
