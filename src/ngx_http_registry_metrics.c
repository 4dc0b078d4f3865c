
/*
 * ngx_http_registry_module: metrics, in the Prometheus text format.
 *
 *     location = /metrics { registry_metrics; }
 *
 * One shared memory zone per nginx holds every counter, so all workers
 * (and, across a reload, the old ones still serving) count together, and
 * a scrape on any worker sees the totals.  A log phase handler records
 * each request the registry answered, once, after its last byte: its
 * operation (ngx_http_registry_operation_e) and status, the bytes sent
 * (headers and body, as $bytes_sent) and received (request line, headers
 * and body, as $request_length), the spec's code of an error answer, the
 * bytes of blob bodies received, and the time two operations took, in
 * fixed buckets.  Each is an atomic add to the zone: no lock, a few
 * instructions per request beside what the access log costs.
 *
 *   registry_http_requests_total{operation,code}  by status code
 *   registry_http_sent_bytes_total{operation}
 *   registry_http_received_bytes_total{operation}
 *   registry_errors_total{code}         answers with the spec's code
 *   registry_uploads_in_progress        upload requests being served now
 *                                       (POST, PATCH, PUT of blob uploads;
 *                                       not mounts): not sessions, which
 *                                       may wait on disk for days
 *   registry_upload_bytes_total         bytes of blob bodies received
 *   registry_manifest_get_duration_seconds   manifest GETs (HEADs have
 *                                       no body and would hide the cost)
 *   registry_blob_put_duration_seconds  requests that finish a blob (PUT
 *                                       of a session, POST with ?digest=)
 *   registry_gc_*, registry_fsck_*      maintenance jobs' results, as the
 *                                       job runner reports them
 *   registry_cache_requests_total{result}  pulls of mirrored repositories
 *                                       by what the cache did ($registry_cache)
 *   registry_upstream_requests_total    requests the mirror sent upstream
 *
 * A request nginx redirects elsewhere (error_page) loses the registry's
 * context, and is counted by nothing: it left the registry.  The scrape
 * reads the zone in the event loop, a few kilobytes.
 */


#include "ngx_http_registry.h"
#include "ngx_http_registry_mirror.h"

#include <jansson.h>


/* status codes 0 (none sent) to 599, each counted by itself */
#define NGX_HTTP_REGISTRY_STATUSES  600

/* the codes of ngx_http_registry_err_e, STORAGE_FULL the last */
#define NGX_HTTP_REGISTRY_ERRORS    (NGX_HTTP_REGISTRY_STORAGE_FULL + 1)

#define NGX_HTTP_REGISTRY_BUCKETS   15


/* a histogram's buckets, not cumulative; the last is +Inf */

typedef struct {
    ngx_atomic_t               bucket[NGX_HTTP_REGISTRY_BUCKETS + 1];
    ngx_atomic_t               sum;      /* milliseconds */
} ngx_http_registry_histogram_t;


typedef struct {
    ngx_atomic_t               requests[NGX_HTTP_REGISTRY_OPERATIONS]
                                       [NGX_HTTP_REGISTRY_STATUSES];
    ngx_atomic_t               sent[NGX_HTTP_REGISTRY_OPERATIONS];
    ngx_atomic_t               received[NGX_HTTP_REGISTRY_OPERATIONS];
    ngx_atomic_t               errors[NGX_HTTP_REGISTRY_ERRORS];

    ngx_atomic_t               uploads;
    ngx_atomic_t               upload_bytes;

    ngx_http_registry_histogram_t  manifest_get;
    ngx_http_registry_histogram_t  blob_put;

    ngx_atomic_t               gc_runs[2];       /* failed, ok */
    ngx_atomic_t               gc_blobs_removed;
    ngx_atomic_t               gc_bytes_freed;
    ngx_atomic_t               fsck_runs[2];     /* failed, ok */
    ngx_atomic_t               fsck_problems;    /* of the last good run */

    ngx_atomic_t               cache[NGX_HTTP_REGISTRY_CACHE_RESULTS];
    ngx_atomic_t               upstream;
} ngx_http_registry_metrics_t;


static ngx_int_t ngx_http_registry_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_registry_metrics_t *ngx_http_registry_metrics_get(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_metrics_log(ngx_http_request_t *r);
static void ngx_http_registry_metrics_observe(
    ngx_http_registry_histogram_t *h, ngx_msec_int_t ms);
static void ngx_http_registry_metrics_upload_done(void *data);
static size_t ngx_http_registry_metrics_size(ngx_http_registry_metrics_t *m);
static u_char *ngx_http_registry_metrics_requests(u_char *p, u_char *last,
    ngx_http_registry_metrics_t *m);
static u_char *ngx_http_registry_metrics_bytes(u_char *p, u_char *last,
    ngx_http_registry_metrics_t *m);
static u_char *ngx_http_registry_metrics_errors(u_char *p, u_char *last,
    ngx_http_registry_metrics_t *m);
static u_char *ngx_http_registry_metrics_histogram(u_char *p, u_char *last,
    const char *name, const char *help, ngx_http_registry_histogram_t *h);
static u_char *ngx_http_registry_metrics_jobs(u_char *p, u_char *last,
    ngx_http_registry_metrics_t *m);
static ngx_atomic_uint_t ngx_http_registry_metrics_number(json_t *report,
    const char *field);
static u_char *ngx_http_registry_metrics_cache(u_char *p, u_char *last,
    ngx_http_registry_metrics_t *m);


/* the buckets' upper bounds, in milliseconds and as Prometheus writes them */

static ngx_msec_int_t  ngx_http_registry_bounds[] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    120000, 300000
};

static char  *ngx_http_registry_les[] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10", "30", "60", "120", "300", "+Inf"
};


/* the zone: every counter, zeroed once, kept across reloads */

ngx_int_t
ngx_http_registry_metrics_add_zone(ngx_conf_t *cf)
{
    size_t                          size;
    ngx_http_registry_main_conf_t  *rmcf;

    static ngx_str_t  name = ngx_string("ngx_http_registry_metrics");

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_registry_module);

    if (rmcf->metrics) {
        return NGX_OK;
    }

    /* the counters, and room for the slab pool's own pages */

    size = ngx_align(sizeof(ngx_http_registry_metrics_t), ngx_pagesize)
           + 8 * ngx_pagesize;

    rmcf->metrics = ngx_shared_memory_add(cf, &name, size,
                                          &ngx_http_registry_module);
    if (rmcf->metrics == NULL) {
        return NGX_ERROR;
    }

    rmcf->metrics->init = ngx_http_registry_metrics_init_zone;

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t  *shpool;

    if (data) {
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    shm_zone->data = ngx_slab_calloc(shpool,
                                     sizeof(ngx_http_registry_metrics_t));

    return shm_zone->data ? NGX_OK : NGX_ERROR;
}


/* postconfiguration: the log handler, where the zone exists */

ngx_int_t
ngx_http_registry_metrics_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt            *h;
    ngx_http_core_main_conf_t      *cmcf;
    ngx_http_registry_main_conf_t  *rmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_registry_module);

    if (rmcf->metrics == NULL) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_registry_metrics_log;

    return NGX_OK;
}


static ngx_http_registry_metrics_t *
ngx_http_registry_metrics_get(ngx_http_request_t *r)
{
    ngx_http_registry_main_conf_t  *rmcf;

    rmcf = ngx_http_get_module_main_conf(r, ngx_http_registry_module);

    return rmcf->metrics ? rmcf->metrics->data : NULL;
}


/* ---- counting ---- */

static ngx_int_t
ngx_http_registry_metrics_log(ngx_http_request_t *r)
{
    ngx_uint_t                    status;
    ngx_time_t                   *tp;
    ngx_msec_int_t                ms;
    ngx_http_registry_ctx_t      *ctx;
    ngx_http_registry_metrics_t  *m;
    ngx_http_registry_operation_e  op;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ctx == NULL || ctx->operation == NGX_HTTP_REGISTRY_OPERATION_NONE) {
        return NGX_OK;
    }

    m = ngx_http_registry_metrics_get(r);
    op = ctx->operation;

    /* the status as $status says it */

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (status >= NGX_HTTP_REGISTRY_STATUSES) {
        status = 0;
    }

    (void) ngx_atomic_fetch_add(&m->requests[op][status], 1);
    (void) ngx_atomic_fetch_add(&m->sent[op], r->connection->sent);
    (void) ngx_atomic_fetch_add(&m->received[op], r->request_length);

    if (ctx->failed && ctx->error < NGX_HTTP_REGISTRY_ERRORS) {
        (void) ngx_atomic_fetch_add(&m->errors[ctx->error], 1);
    }

    (void) ngx_atomic_fetch_add(&m->cache[ngx_http_registry_mirror_result(r)],
                                1);
    (void) ngx_atomic_fetch_add(&m->upstream,
                                ngx_http_registry_mirror_upstream_requests(r));

    if (op == NGX_HTTP_REGISTRY_OPERATION_BLOB_PUSH
        || op == NGX_HTTP_REGISTRY_OPERATION_MOUNT)
    {
        (void) ngx_atomic_fetch_add(&m->upload_bytes, ctx->received);
    }

    /* as $request_time measures it */

    tp = ngx_timeofday();
    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));
    ms = ngx_max(ms, 0);

    if (op == NGX_HTTP_REGISTRY_OPERATION_MANIFEST_PULL
        && r->method == NGX_HTTP_GET)
    {
        ngx_http_registry_metrics_observe(&m->manifest_get, ms);

    } else if (op == NGX_HTTP_REGISTRY_OPERATION_BLOB_PUSH && ctx->finish) {
        ngx_http_registry_metrics_observe(&m->blob_put, ms);
    }

    return NGX_OK;
}


static void
ngx_http_registry_metrics_observe(ngx_http_registry_histogram_t *h,
    ngx_msec_int_t ms)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_REGISTRY_BUCKETS; i++) {
        if (ms <= ngx_http_registry_bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&h->bucket[i], 1);
    (void) ngx_atomic_fetch_add(&h->sum, ms);
}


/*
 * The router, before an endpoint runs: an upload request is in progress
 * from here until its pool goes, which no way of ending a request skips
 * (an error_page redirect, a client gone, a worker quitting gracefully).
 */

ngx_int_t
ngx_http_registry_metrics_upload(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t           *cln;
    ngx_http_registry_ctx_t      *ctx;
    ngx_http_registry_metrics_t  *m;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ctx->operation != NGX_HTTP_REGISTRY_OPERATION_BLOB_PUSH
        || !(r->method & (NGX_HTTP_POST|NGX_HTTP_PATCH|NGX_HTTP_PUT)))
    {
        return NGX_OK;
    }

    m = ngx_http_registry_metrics_get(r);

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_registry_metrics_upload_done;
    cln->data = m;

    (void) ngx_atomic_fetch_add(&m->uploads, 1);

    return NGX_OK;
}


static void
ngx_http_registry_metrics_upload_done(void *data)
{
    ngx_http_registry_metrics_t *m = data;

    (void) ngx_atomic_fetch_add(&m->uploads, -1);
}


/*
 * The job runner, when a gc or fsck job has ended (ok: it finished);
 * report is its JSON object, whose top-level numbers count: gc's
 * "blobs_removed" and "bytes_freed" (not for a "dry_run", which removed
 * nothing), fsck's "problems" (a number, or the length of a list).
 */

void
ngx_http_registry_metrics_job(ngx_str_t *kind, ngx_uint_t ok, void *report)
{
    json_t                         *dry;
    ngx_http_registry_metrics_t    *m;
    ngx_http_registry_main_conf_t  *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_registry_module);

    if (rmcf == NULL || rmcf->metrics == NULL) {
        return;
    }

    m = rmcf->metrics->data;
    ok = ok ? 1 : 0;

    if (kind->len == 2 && ngx_strncmp(kind->data, "gc", 2) == 0) {
        (void) ngx_atomic_fetch_add(&m->gc_runs[ok], 1);

        dry = report ? json_object_get(report, "dry_run") : NULL;

        if (ok && report && !json_is_true(dry)) {
            (void) ngx_atomic_fetch_add(&m->gc_blobs_removed,
                      ngx_http_registry_metrics_number(report,
                                                       "blobs_removed"));
            (void) ngx_atomic_fetch_add(&m->gc_bytes_freed,
                      ngx_http_registry_metrics_number(report,
                                                       "bytes_freed"));
        }

        return;
    }

    if (kind->len == 4 && ngx_strncmp(kind->data, "fsck", 4) == 0) {
        (void) ngx_atomic_fetch_add(&m->fsck_runs[ok], 1);

        if (!ok || report == NULL) {
            return;
        }

        /* the report lists the first problems, and counts them all */
        m->fsck_problems = ngx_http_registry_metrics_number(report,
                                                            "problems_total");
    }
}


static ngx_atomic_uint_t
ngx_http_registry_metrics_number(json_t *report, const char *field)
{
    json_int_t   n;
    json_t      *v;

    v = json_object_get(report, field);

    if (!json_is_integer(v)) {
        return 0;
    }

    n = json_integer_value(v);

    return n > 0 ? (ngx_atomic_uint_t) n : 0;
}


/* ---- the scrape ---- */

ngx_int_t
ngx_http_registry_metrics_handler(ngx_http_request_t *r)
{
    u_char                       *last;
    ngx_buf_t                    *b;
    ngx_http_registry_metrics_t  *m;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    m = ngx_http_registry_metrics_get(r);

    b = ngx_create_temp_buf(r->pool, ngx_http_registry_metrics_size(m));
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    last = b->end;

    b->last = ngx_http_registry_metrics_requests(b->last, last, m);
    b->last = ngx_http_registry_metrics_bytes(b->last, last, m);
    b->last = ngx_http_registry_metrics_errors(b->last, last, m);

    b->last = ngx_slprintf(b->last, last,
        "# HELP registry_uploads_in_progress Blob upload requests (POST, "
        "PATCH, PUT) being served.\n"
        "# TYPE registry_uploads_in_progress gauge\n"
        "registry_uploads_in_progress %A\n"
        "# HELP registry_upload_bytes_total Bytes of blob upload bodies "
        "received.\n"
        "# TYPE registry_upload_bytes_total counter\n"
        "registry_upload_bytes_total %uA\n",
        (ngx_atomic_int_t) m->uploads, m->upload_bytes);

    b->last = ngx_http_registry_metrics_histogram(b->last, last,
                  "registry_manifest_get_duration_seconds",
                  "Time to answer manifest GET requests.", &m->manifest_get);
    b->last = ngx_http_registry_metrics_histogram(b->last, last,
                  "registry_blob_put_duration_seconds",
                  "Time to answer requests that finish a blob upload (PUT, "
                  "or POST with a digest).", &m->blob_put);
    b->last = ngx_http_registry_metrics_jobs(b->last, last, m);
    b->last = ngx_http_registry_metrics_cache(b->last, last, m);

    return ngx_http_registry_send_body(r, NGX_HTTP_OK,
                                       "text/plain; version=0.0.4", b);
}


/* room for everything: fixed text, and a line per request counter used */

static size_t
ngx_http_registry_metrics_size(ngx_http_registry_metrics_t *m)
{
    ngx_uint_t  op, status, n;

    n = 0;

    for (op = 0; op < NGX_HTTP_REGISTRY_OPERATIONS; op++) {
        for (status = 0; status < NGX_HTTP_REGISTRY_STATUSES; status++) {
            n += (m->requests[op][status] != 0);
        }
    }

    return 16384 + n * 128;
}


static u_char *
ngx_http_registry_metrics_requests(u_char *p, u_char *last,
    ngx_http_registry_metrics_t *m)
{
    ngx_uint_t          op, status;
    ngx_atomic_uint_t   n;

    p = ngx_slprintf(p, last,
        "# HELP registry_http_requests_total Requests the registry "
        "answered, by operation and status.\n"
        "# TYPE registry_http_requests_total counter\n");

    for (op = 1; op < NGX_HTTP_REGISTRY_OPERATIONS; op++) {
        for (status = 0; status < NGX_HTTP_REGISTRY_STATUSES; status++) {
            n = m->requests[op][status];

            if (n == 0) {
                continue;
            }

            p = ngx_slprintf(p, last,
                    "registry_http_requests_total{operation=\"%V\","
                    "code=\"%03ui\"} %uA\n",
                    ngx_http_registry_operation_name(op), status, n);
        }
    }

    return p;
}


static u_char *
ngx_http_registry_metrics_bytes(u_char *p, u_char *last,
    ngx_http_registry_metrics_t *m)
{
    ngx_uint_t  op;

    p = ngx_slprintf(p, last,
        "# HELP registry_http_sent_bytes_total Bytes sent, headers "
        "included, by operation.\n"
        "# TYPE registry_http_sent_bytes_total counter\n");

    for (op = 1; op < NGX_HTTP_REGISTRY_OPERATIONS; op++) {
        p = ngx_slprintf(p, last,
                         "registry_http_sent_bytes_total{operation=\"%V\"} "
                         "%uA\n",
                         ngx_http_registry_operation_name(op), m->sent[op]);
    }

    p = ngx_slprintf(p, last,
        "# HELP registry_http_received_bytes_total Bytes received (request "
        "lines, headers and bodies), by operation.\n"
        "# TYPE registry_http_received_bytes_total counter\n");

    for (op = 1; op < NGX_HTTP_REGISTRY_OPERATIONS; op++) {
        p = ngx_slprintf(p, last,
                         "registry_http_received_bytes_total"
                         "{operation=\"%V\"} %uA\n",
                         ngx_http_registry_operation_name(op),
                         m->received[op]);
    }

    return p;
}


/* by the spec's code: some codes are sent with two statuses */

static u_char *
ngx_http_registry_metrics_errors(u_char *p, u_char *last,
    ngx_http_registry_metrics_t *m)
{
    ngx_str_t          *code, *other;
    ngx_uint_t          i, j, seen;
    ngx_atomic_uint_t   n;

    p = ngx_slprintf(p, last,
        "# HELP registry_errors_total Error answers, by the code of the "
        "distribution spec.\n"
        "# TYPE registry_errors_total counter\n");

    for (i = 0; i < NGX_HTTP_REGISTRY_ERRORS; i++) {
        code = ngx_http_registry_error_code(i);
        seen = 0;

        for (j = 0; j < i; j++) {
            other = ngx_http_registry_error_code(j);

            if (other->len == code->len
                && ngx_strncmp(other->data, code->data, code->len) == 0)
            {
                seen = 1;
                break;
            }
        }

        if (seen) {
            continue;
        }

        n = 0;

        for (j = i; j < NGX_HTTP_REGISTRY_ERRORS; j++) {
            other = ngx_http_registry_error_code(j);

            if (other->len == code->len
                && ngx_strncmp(other->data, code->data, code->len) == 0)
            {
                n += m->errors[j];
            }
        }

        p = ngx_slprintf(p, last, "registry_errors_total{code=\"%V\"} %uA\n",
                         code, n);
    }

    return p;
}


/* cumulative buckets; the count is the +Inf bucket, read once */

static u_char *
ngx_http_registry_metrics_histogram(u_char *p, u_char *last,
    const char *name, const char *help, ngx_http_registry_histogram_t *h)
{
    ngx_uint_t          i;
    ngx_atomic_uint_t   n, sum;

    p = ngx_slprintf(p, last, "# HELP %s %s\n# TYPE %s histogram\n",
                     name, help, name);

    n = 0;

    for (i = 0; i <= NGX_HTTP_REGISTRY_BUCKETS; i++) {
        n += h->bucket[i];
        p = ngx_slprintf(p, last, "%s_bucket{le=\"%s\"} %uA\n",
                         name, ngx_http_registry_les[i], n);
    }

    sum = h->sum;

    return ngx_slprintf(p, last, "%s_sum %uA.%03uA\n%s_count %uA\n",
                        name, sum / 1000, sum % 1000, name, n);
}


static u_char *
ngx_http_registry_metrics_jobs(u_char *p, u_char *last,
    ngx_http_registry_metrics_t *m)
{
    return ngx_slprintf(p, last,
        "# HELP registry_gc_runs_total Garbage collections run, by result.\n"
        "# TYPE registry_gc_runs_total counter\n"
        "registry_gc_runs_total{result=\"ok\"} %uA\n"
        "registry_gc_runs_total{result=\"failed\"} %uA\n"
        "# HELP registry_gc_blobs_removed_total Blobs garbage collection "
        "removed.\n"
        "# TYPE registry_gc_blobs_removed_total counter\n"
        "registry_gc_blobs_removed_total %uA\n"
        "# HELP registry_gc_bytes_freed_total Bytes garbage collection "
        "freed.\n"
        "# TYPE registry_gc_bytes_freed_total counter\n"
        "registry_gc_bytes_freed_total %uA\n"
        "# HELP registry_fsck_runs_total Store checks run, by result.\n"
        "# TYPE registry_fsck_runs_total counter\n"
        "registry_fsck_runs_total{result=\"ok\"} %uA\n"
        "registry_fsck_runs_total{result=\"failed\"} %uA\n"
        "# HELP registry_fsck_problems Problems the last store check "
        "found.\n"
        "# TYPE registry_fsck_problems gauge\n"
        "registry_fsck_problems %uA\n",
        m->gc_runs[1], m->gc_runs[0], m->gc_blobs_removed, m->gc_bytes_freed,
        m->fsck_runs[1], m->fsck_runs[0], m->fsck_problems);
}


/* the pull-through cache; result 0 counts the pulls it had no part in */

static u_char *
ngx_http_registry_metrics_cache(u_char *p, u_char *last,
    ngx_http_registry_metrics_t *m)
{
    ngx_uint_t  i;

    p = ngx_slprintf(p, last,
        "# HELP registry_cache_requests_total Requests for mirrored "
        "repositories, by what the cache did.\n"
        "# TYPE registry_cache_requests_total counter\n");

    for (i = 1; i < NGX_HTTP_REGISTRY_CACHE_RESULTS; i++) {
        p = ngx_slprintf(p, last,
                         "registry_cache_requests_total{result=\"%V\"} %uA\n",
                         ngx_http_registry_mirror_result_name(i),
                         m->cache[i]);
    }

    return ngx_slprintf(p, last,
        "# HELP registry_upstream_requests_total Requests the mirror sent "
        "to its upstreams (tokens and redirects included).\n"
        "# TYPE registry_upstream_requests_total counter\n"
        "registry_upstream_requests_total %uA\n", m->upstream);
}
