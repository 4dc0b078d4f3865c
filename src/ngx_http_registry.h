
/*
 * ngx_http_registry_module: an OCI Distribution registry inside nginx.
 *
 * Declarations of the HTTP layer, which sits on the store (the domain
 * layer, ngx_http_registry_store.h) and is the only one that knows
 * requests.  Its files: module (directives), router (URI parsing,
 * validation, dispatch), the handlers blob, upload, manifest and list
 * (tags, catalog, referrers), each of which parses, calls the store and
 * sends one response; access (the one decision before a handler runs)
 * and rules (registry_access); below them response (headers, Location,
 * bodies), error (the spec's JSON errors), body (streaming a request
 * body) and task (store operations in a thread pool, the request resumed
 * after).  The admin location (admin.c) starts and reports maintenance
 * jobs, which jobs.c runs, one per store, in the thread pool.
 */


#ifndef _NGX_HTTP_REGISTRY_H_INCLUDED_
#define _NGX_HTTP_REGISTRY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_registry_store.h"
#include "ngx_http_registry_auth.h"


/* ---- configuration ---- */

/* registry_gc: the store's collection, scheduled */

typedef struct {
    time_t                     interval;
    time_t                     grace;
    ngx_flag_t                 delete_untagged;
} ngx_http_registry_gc_conf_t;

typedef struct ngx_http_registry_health_s  ngx_http_registry_health_t;

typedef struct {
    ngx_flag_t                 enable;
    ngx_flag_t                 admin;         /* registry_admin */
    ngx_flag_t                 delete;
    ngx_flag_t                 read_only;   /* maintenance: reads only */
    ngx_str_t                  root;     /* registry_root as configured */
    ngx_http_registry_store_t *store;
    size_t                     manifest_max_size;
    size_t                     chunk_min_length;
    ngx_uint_t                 auto_mount;
    time_t                     upload_expire;
    ngx_msec_t                 catalog_refresh;
    ngx_http_registry_link_cache_t  *link_cache;  /* NULL: off */
    ngx_thread_pool_t         *thread_pool;   /* NULL: in the event loop */
    ngx_http_complex_value_t  *user;          /* registry_user */
    ngx_array_t               *rules;         /* registry_access; NULL */
    ngx_http_registry_gc_conf_t  *gc;         /* registry_gc; NULL */
    ngx_http_registry_health_t  *health;      /* registry_health; NULL */
    unsigned                   json_errors:1; /* nginx's own errors too */
} ngx_http_registry_loc_conf_t;


#define NGX_HTTP_REGISTRY_AUTO_MOUNT_OFF        0
#define NGX_HTTP_REGISTRY_AUTO_MOUNT_ON         1
#define NGX_HTTP_REGISTRY_AUTO_MOUNT_ANONYMOUS  2


/*
 * A store, the thread pool of the first location serving it, and the
 * most frequent registry_gc of its locations
 */

typedef struct {
    ngx_http_registry_store_t *store;
    ngx_thread_pool_t         *thread_pool;
    ngx_http_registry_gc_conf_t  *gc;
} ngx_http_registry_served_t;


typedef struct {
    ngx_array_t                stores;   /* of ngx_http_registry_served_t */
    ngx_shm_zone_t            *zone;     /* ngx_http_registry_shared_t */
    ngx_shm_zone_t            *metrics;  /* ngx_http_registry_metrics_t */
} ngx_http_registry_main_conf_t;


/* ---- routes and the request context ---- */

typedef enum {
    NGX_HTTP_REGISTRY_ROUTE_BASE = 0,
    NGX_HTTP_REGISTRY_ROUTE_CATALOG,
    NGX_HTTP_REGISTRY_ROUTE_TAGS,
    NGX_HTTP_REGISTRY_ROUTE_MANIFEST,
    NGX_HTTP_REGISTRY_ROUTE_BLOB,
    NGX_HTTP_REGISTRY_ROUTE_UPLOADS,     /* .../blobs/uploads/ */
    NGX_HTTP_REGISTRY_ROUTE_UPLOAD,      /* .../blobs/uploads/<id> */
    NGX_HTTP_REGISTRY_ROUTE_REFERRERS    /* .../referrers/<digest> */
} ngx_http_registry_route_e;


/*
 * What a request does, for the log variables and the metrics
 * (variables.c, metrics.c): the router names it from the endpoint and,
 * where one endpoint does two things, its arguments (a POST with ?mount=
 * is a mount).  An upload session's requests (POST, PATCH, PUT, its GET
 * and DELETE) are all a blob push.  NONE is a request the
 * registry never saw; OTHER one it answered without an endpoint (an
 * unknown route, an invalid name, nginx's own error in its location).
 */

typedef enum {
    NGX_HTTP_REGISTRY_OPERATION_NONE = 0,
    NGX_HTTP_REGISTRY_OPERATION_OTHER,
    NGX_HTTP_REGISTRY_OPERATION_BASE,
    NGX_HTTP_REGISTRY_OPERATION_BLOB_PULL,
    NGX_HTTP_REGISTRY_OPERATION_BLOB_PUSH,
    NGX_HTTP_REGISTRY_OPERATION_BLOB_DELETE,
    NGX_HTTP_REGISTRY_OPERATION_MOUNT,
    NGX_HTTP_REGISTRY_OPERATION_MANIFEST_PULL,
    NGX_HTTP_REGISTRY_OPERATION_MANIFEST_PUSH,
    NGX_HTTP_REGISTRY_OPERATION_MANIFEST_DELETE,
    NGX_HTTP_REGISTRY_OPERATION_TAGS,
    NGX_HTTP_REGISTRY_OPERATION_CATALOG,
    NGX_HTTP_REGISTRY_OPERATION_REFERRERS,
    NGX_HTTP_REGISTRY_OPERATION_TOKEN,
    NGX_HTTP_REGISTRY_OPERATIONS
} ngx_http_registry_operation_e;


typedef struct {
    ngx_http_registry_route_e  kind;
    ngx_str_t                  name;
    ngx_str_t                  reference;   /* tag, digest or upload id */
    ngx_http_registry_digest_t digest;      /* when reference is a digest */
    unsigned                   by_digest:1;
} ngx_http_registry_route_t;


/*
 * A store operation off the event loop: work() runs in a thread of
 * registry_thread_pool (or at once, without one) on an op of its own and
 * returns the operation's result; resume() runs in the event loop after,
 * and returns what to finalize the request with.
 */

typedef ngx_int_t (*ngx_http_registry_work_pt)(ngx_http_registry_op_t *op,
    void *data);
typedef ngx_int_t (*ngx_http_registry_resume_pt)(ngx_http_request_t *r,
    ngx_int_t rc);


typedef struct {
    ngx_thread_task_t         *thread;
    ngx_http_registry_op_t     op;       /* the task's; op.fault says why */
    ngx_log_t                  log;
    ngx_http_registry_work_pt  work;
    void                      *data;
    ngx_int_t                  rc;
    ngx_http_registry_resume_pt  resume;
    ngx_queue_t                queue;    /* waiting for a shared task */
    ngx_http_request_t        *request;
    ngx_event_t                guard;    /* keeps an exiting worker alive */
} ngx_http_registry_task_t;


/* a task no request owns: the catalog's walk, the sweep of uploads */

typedef struct ngx_http_registry_detached_s  ngx_http_registry_detached_t;

typedef void (*ngx_http_registry_detached_pt)(
    ngx_http_registry_detached_t *d);

struct ngx_http_registry_detached_s {
    ngx_thread_task_t         *thread;
    ngx_http_registry_op_t     op;
    ngx_http_registry_work_pt  work;
    void                      *data;
    ngx_int_t                  rc;
    ngx_http_registry_detached_pt  done;
};


/*
 * A chunk callback returns NGX_OK, NGX_AGAIN when a task takes the bytes
 * (its resume calls ngx_http_registry_body_taken() once done), NGX_DONE
 * when a task of its own answers, or NGX_DECLINED to answer ctx->fault;
 * the done callback returns the last two, or what to finalize with.
 */

typedef ngx_int_t (*ngx_http_registry_chunk_pt)(ngx_http_request_t *r,
    u_char *data, size_t len);
typedef ngx_int_t (*ngx_http_registry_done_pt)(ngx_http_request_t *r);


typedef struct {
    ngx_http_registry_route_t  route;
    ngx_http_registry_loc_conf_t  *conf;
    ngx_http_registry_op_t     op;       /* the event loop's */
    ngx_http_registry_task_t   task;

    /* a streamed request body */
    ngx_http_registry_chunk_pt chunk;
    ngx_http_registry_done_pt  done;
    off_t                      received;

    /* uploads */
    ngx_http_registry_upload_t upload;
    ngx_http_registry_digest_t expected;
    off_t                      declared;    /* Content-Range length or -1 */
    u_char                    *pending;     /* the buffer a task writes */
    size_t                     pending_len;
    ngx_str_t                  from;        /* mount=&from= */
    unsigned                   finish:1;    /* PUT: commit after the body */
    unsigned                   kept:1;      /* saved or committed */

    /* manifests */
    ngx_buf_t                 *body;
    ngx_http_registry_manifest_t  manifest;
    ngx_array_t               *query_tags;  /* ?tag=, distinct */
    ngx_str_t                  content_type;

    /* listings */
    ngx_http_registry_result_t result;
    ngx_str_t                  filter;      /* ?artifactType= */
    ngx_int_t                  n;           /* ?n=, -1 when not given */
    ngx_str_t                  last;        /* ?last= */

    ngx_http_registry_fault_t  fault;       /* the answer, when an error */
    size_t                     warned;      /* bytes of Warning headers */

    ngx_str_t                  user;        /* as access decided; "": none */
    ngx_buf_t                 *nginx_error; /* JSON for nginx's own error */

    /* what the log variables and the metrics say of the request */
    ngx_http_registry_operation_e  operation;
    ngx_str_t                  digest;      /* named or stored; "": route's */
    ngx_http_registry_err_e    error;       /* the answer's, when failed */
    unsigned                   failed:1;
} ngx_http_registry_ctx_t;


extern ngx_module_t  ngx_http_registry_module;
extern ngx_module_t  ngx_http_registry_mirror_module;


/* ---- the router, and the admin location's (admin.c) ---- */

ngx_int_t ngx_http_registry_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_admin_handler(ngx_http_request_t *r);


/* ---- the parsers of what a client sends (parse.c) ---- */

/* what the token issuer grants for "*" on a repository */
#define NGX_HTTP_REGISTRY_SCOPE_REPOSITORY  (NGX_HTTP_REGISTRY_PULL          \
                                             |NGX_HTTP_REGISTRY_PUSH         \
                                             |NGX_HTTP_REGISTRY_DELETE)

typedef ngx_int_t (*ngx_http_registry_param_pt)(void *data, ngx_str_t *key,
    ngx_str_t *value);
typedef ngx_int_t (*ngx_http_registry_want_pt)(void *data, ngx_str_t *name,
    ngx_uint_t actions);

ngx_int_t ngx_http_registry_route_parse(ngx_pool_t *pool, ngx_str_t *uri,
    ngx_http_registry_route_t *route, ngx_http_registry_fault_t *fault);
ngx_int_t ngx_http_registry_content_range(ngx_str_t *value, off_t *start,
    off_t *end);
ngx_uint_t ngx_http_registry_range_none(u_char *p, off_t size,
    ngx_uint_t ranges);
ngx_int_t ngx_http_registry_query_arg(ngx_pool_t *pool, ngx_str_t *args,
    const char *name, ngx_str_t *value);
ngx_int_t ngx_http_registry_form_parse(ngx_pool_t *pool, ngx_str_t *args,
    ngx_http_registry_param_pt param, void *data);
ngx_int_t ngx_http_registry_scope_parse(ngx_str_t *scope,
    ngx_http_registry_want_pt want, void *data);


/* ---- responses (response.c) ---- */

ngx_table_elt_t *ngx_http_registry_add_header(ngx_http_request_t *r,
    const char *key, ngx_str_t *value);
ngx_int_t ngx_http_registry_api_version(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_header_in(ngx_http_request_t *r,
    const char *key, ngx_str_t *value);
ngx_int_t ngx_http_registry_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);
ngx_int_t ngx_http_registry_send_empty(ngx_http_request_t *r,
    ngx_uint_t status);
ngx_int_t ngx_http_registry_send_body(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, ngx_buf_t *b);
ngx_int_t ngx_http_registry_send_file(ngx_http_request_t *r, ngx_str_t *path,
    ngx_uint_t blob, ngx_open_file_info_t *of);
ngx_int_t ngx_http_registry_open_file(ngx_http_request_t *r, ngx_str_t *path,
    ngx_open_file_info_t *of);
ngx_int_t ngx_http_registry_digest_headers(ngx_http_request_t *r,
    ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_location(ngx_http_request_t *r,
    const char *kind, ngx_str_t *reference);
ngx_int_t ngx_http_registry_warning(ngx_http_request_t *r, const char *text);


/* ---- errors (error.c) ---- */

ngx_int_t ngx_http_registry_error(ngx_http_request_t *r,
    ngx_http_registry_err_e code, const char *detail);
ngx_int_t ngx_http_registry_send_fault(ngx_http_request_t *r,
    ngx_http_registry_fault_t *fault);
ngx_int_t ngx_http_registry_store_failed(ngx_http_request_t *r,
    ngx_http_registry_op_t *op, ngx_int_t rc,
    ngx_http_registry_err_e not_found);


ngx_int_t ngx_http_registry_error_filters(ngx_conf_t *cf);
ngx_str_t *ngx_http_registry_error_code(ngx_http_registry_err_e code);


/* ---- the decision (access.c) and the rules (rules.c) ---- */

ngx_int_t ngx_http_registry_access_check(ngx_http_request_t *r,
    ngx_uint_t actions);
ngx_uint_t ngx_http_registry_access_pulls_all(ngx_http_request_t *r);

char *ngx_http_registry_access_rule(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_uint_t ngx_http_registry_rules_pull_all(ngx_http_request_t *r,
    ngx_str_t *user);
ngx_uint_t ngx_http_registry_rules_for_users(ngx_http_request_t *r);


/* ---- streaming request bodies (body.c) ---- */

ngx_int_t ngx_http_registry_read_body(ngx_http_request_t *r,
    ngx_http_registry_chunk_pt chunk, ngx_http_registry_done_pt done);
void ngx_http_registry_body_taken(ngx_http_request_t *r);
void ngx_http_registry_body_stop(ngx_http_request_t *r, ngx_int_t rc);


/* ---- tasks (task.c) ---- */

ngx_int_t ngx_http_registry_task_init(ngx_http_request_t *r,
    ngx_http_registry_task_t *t);
ngx_int_t ngx_http_registry_task_run(ngx_http_request_t *r,
    ngx_http_registry_work_pt work, void *data,
    ngx_http_registry_resume_pt resume);
ngx_int_t ngx_http_registry_task_start(ngx_http_request_t *r,
    ngx_http_registry_work_pt work, void *data,
    ngx_http_registry_resume_pt resume);
ngx_int_t ngx_http_registry_task_wait(ngx_http_request_t *r,
    ngx_queue_t *queue, ngx_http_registry_resume_pt resume);
void ngx_http_registry_task_wake(ngx_queue_t *queue);
ngx_int_t ngx_http_registry_task_detach(ngx_http_registry_detached_t *d,
    ngx_thread_pool_t *tp, ngx_pool_t *pool);
ngx_uint_t ngx_http_registry_task_threaded(ngx_http_request_t *r);
void ngx_http_registry_guard_start(ngx_event_t *guard, ngx_log_t *log);
void ngx_http_registry_guard_stop(ngx_event_t *guard);


/* ---- maintenance jobs (jobs.c): one at a time per store ---- */

/* the options a kind of job accepts */
#define NGX_HTTP_REGISTRY_OPT_DRY_RUN          0x0001
#define NGX_HTTP_REGISTRY_OPT_DELETE_UNTAGGED  0x0002
#define NGX_HTTP_REGISTRY_OPT_GRACE            0x0004
#define NGX_HTTP_REGISTRY_OPT_REPAIR           0x0008
#define NGX_HTTP_REGISTRY_OPT_REHASH           0x0010
#define NGX_HTTP_REGISTRY_OPT_RATE             0x0020
#define NGX_HTTP_REGISTRY_OPT_OLDER_THAN       0x0040

#define NGX_HTTP_REGISTRY_JOB_GRACE            3600   /* gc's default */


typedef struct ngx_http_registry_job_start_s  ngx_http_registry_job_start_t;

typedef void (*ngx_http_registry_job_started_pt)(
    ngx_http_registry_job_start_t *s, ngx_int_t rc);


/* what to start (ngx_http_registry_job_init(), _option()), and its id */

struct ngx_http_registry_job_start_s {
    ngx_http_registry_store_t *store;
    ngx_thread_pool_t         *thread_pool;
    ngx_str_t                  kind;
    ngx_http_registry_job_t    options;
    ngx_log_t                 *log;
    ngx_http_registry_job_started_pt  started;   /* NULL: nobody waits */
    void                      *data;

    ngx_str_t                  id;      /* the job's, or the running one's */
    ngx_str_t                  host;    /* the lease's, when another's */
    u_char                     buf[NGX_HTTP_REGISTRY_JOB_ID_LEN];
    u_char                     host_buf[NGX_MAXHOSTNAMELEN];
};


/* the running job of a store, as its slot says */

typedef struct {
    u_char                     id[NGX_HTTP_REGISTRY_JOB_ID_LEN];
    u_char                     kind[NGX_HTTP_REGISTRY_JOB_KIND_LEN];
    u_char                     phase[NGX_HTTP_REGISTRY_JOB_PHASE_LEN];
    time_t                     started;
    ngx_atomic_uint_t          done;
    ngx_atomic_uint_t          total;
} ngx_http_registry_job_info_t;


ngx_int_t ngx_http_registry_job_init(ngx_http_registry_job_start_t *s,
    ngx_http_registry_store_t *st, ngx_thread_pool_t *tp, ngx_str_t *kind,
    ngx_log_t *log);
ngx_int_t ngx_http_registry_job_option(ngx_http_registry_job_start_t *s,
    ngx_str_t *name, ngx_str_t *value);
ngx_int_t ngx_http_registry_job_start(ngx_http_registry_job_start_t *s);
ngx_int_t ngx_http_registry_job_running(ngx_http_registry_store_t *st,
    ngx_http_registry_job_info_t *info);


/* ---- endpoints ---- */

ngx_int_t ngx_http_registry_blob_get(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_blob_delete(ngx_http_request_t *r);

ngx_int_t ngx_http_registry_upload_start(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_upload_status(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_upload_patch(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_upload_put(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_upload_cancel(ngx_http_request_t *r);

ngx_int_t ngx_http_registry_manifest_get(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_manifest_put(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_manifest_delete(ngx_http_request_t *r);

ngx_int_t ngx_http_registry_tags_list(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_catalog(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_referrers_list(ngx_http_request_t *r);



/* ---- operating it: log variables, metrics, health ---- */

ngx_int_t ngx_http_registry_variables_add(ngx_conf_t *cf);
ngx_int_t ngx_http_registry_variables_register(ngx_conf_t *cf,
    ngx_http_variable_t *vars);
void ngx_http_registry_variable_set(ngx_http_variable_value_t *v,
    ngx_str_t *value);
ngx_http_registry_operation_e ngx_http_registry_operation(
    ngx_http_request_t *r, ngx_http_registry_route_e kind);
ngx_str_t *ngx_http_registry_operation_name(
    ngx_http_registry_operation_e operation);

ngx_int_t ngx_http_registry_metrics_add_zone(ngx_conf_t *cf);
ngx_int_t ngx_http_registry_metrics_init(ngx_conf_t *cf);
ngx_int_t ngx_http_registry_metrics_upload(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_metrics_handler(ngx_http_request_t *r);
void ngx_http_registry_metrics_job(ngx_str_t *kind, ngx_uint_t ok,
    void *report);

ngx_http_registry_health_t *ngx_http_registry_health_create(ngx_conf_t *cf);
ngx_int_t ngx_http_registry_health_handler(ngx_http_request_t *r);

#endif /* _NGX_HTTP_REGISTRY_H_INCLUDED_ */
