
/*
 * ngx_http_registry_module: an OCI Distribution registry inside nginx.
 *
 * Declarations shared by the module's files.  Each file owns one concern:
 * module (directives), router (URI parsing, validation, dispatch), error
 * (the spec's JSON error bodies), digest (hashing), store (the on-disk
 * layout of CNCF distribution; knows nothing of HTTP), body (streaming a
 * request body), blob, upload, manifest and list (tags and catalog).
 */


#ifndef _NGX_HTTP_REGISTRY_H_INCLUDED_
#define _NGX_HTTP_REGISTRY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

/*
 * The low-level SHA256_CTX/SHA512_CTX API is deprecated in OpenSSL 3.0 but
 * still shipped, and runs the same assembly as EVP.  Unlike an EVP_MD_CTX it
 * is a plain struct, so a chunked upload can save its hash state to disk at
 * each chunk boundary and resume it in any worker, or after a restart.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>


/* ---- digests ---- */

#define NGX_HTTP_REGISTRY_SHA256  0
#define NGX_HTTP_REGISTRY_SHA512  1

#define NGX_HTTP_REGISTRY_DIGEST_MAX_LEN  (sizeof("sha512:") - 1 + 128)


typedef struct {
    ngx_uint_t                 alg;
    ngx_str_t                  text;     /* "sha256:<hex>" */
    ngx_str_t                  hex;      /* points into text */
} ngx_http_registry_digest_t;


typedef struct {
    ngx_uint_t                 alg;
    union {
        SHA256_CTX             sha256;
        SHA512_CTX             sha512;
    } u;
} ngx_http_registry_hash_t;


ngx_int_t ngx_http_registry_parse_digest(ngx_str_t *text,
    ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_alg_by_name(ngx_str_t *name);
ngx_str_t *ngx_http_registry_alg_name(ngx_uint_t alg);
void ngx_http_registry_hash_init(ngx_http_registry_hash_t *hash,
    ngx_uint_t alg);
void ngx_http_registry_hash_update(ngx_http_registry_hash_t *hash,
    u_char *data, size_t len);
ngx_int_t ngx_http_registry_hash_final(ngx_http_registry_hash_t *hash,
    ngx_pool_t *pool, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_digest_equal(ngx_http_registry_digest_t *a,
    ngx_http_registry_digest_t *b);


/* ---- the store: CNCF distribution's filesystem layout ---- */

typedef struct ngx_http_registry_link_s  ngx_http_registry_link_t;

typedef struct {
    ngx_http_registry_link_t  *links;    /* this worker's table, or NULL */
    ngx_uint_t                 max;
    ngx_msec_t                 valid;
} ngx_http_registry_link_cache_t;


typedef struct {
    ngx_str_t                  root;     /* <registry_root>/docker/registry/v2 */
    ngx_pool_t                *pool;
    ngx_log_t                 *log;

    /* the link cache; NULL: links are always read from the disk */
    ngx_http_registry_link_cache_t  *links;
    ngx_atomic_t              *generation;  /* shared by all workers */
} ngx_http_registry_store_t;


typedef struct {
    ngx_uint_t                 alg;
    uint64_t                   offset;
    ngx_http_registry_hash_t   hash;
} ngx_http_registry_upload_state_t;


u_char *ngx_http_registry_store_path(ngx_http_registry_store_t *st,
    ngx_str_t *out, const char *fmt, ...);
u_char *ngx_http_registry_store_in_dir(ngx_http_registry_store_t *st,
    ngx_str_t *out, ngx_str_t *dir, const char *file);
u_char *ngx_http_registry_store_blob_path(ngx_http_registry_store_t *st,
    ngx_str_t *out, ngx_http_registry_digest_t *digest);
u_char *ngx_http_registry_store_layer_link(ngx_http_registry_store_t *st,
    ngx_str_t *out, ngx_str_t *name, ngx_http_registry_digest_t *digest);
u_char *ngx_http_registry_store_revision_link(ngx_http_registry_store_t *st,
    ngx_str_t *out, ngx_str_t *name, ngx_http_registry_digest_t *digest);
u_char *ngx_http_registry_store_tag_link(ngx_http_registry_store_t *st,
    ngx_str_t *out, ngx_str_t *name, ngx_str_t *tag);
u_char *ngx_http_registry_store_upload_dir(ngx_http_registry_store_t *st,
    ngx_str_t *out, ngx_str_t *name, ngx_str_t *id);

ngx_int_t ngx_http_registry_store_read_link(ngx_http_registry_store_t *st,
    ngx_str_t *path, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_store_write_link(ngx_http_registry_store_t *st,
    ngx_str_t *path, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_store_write_file(ngx_http_registry_store_t *st,
    ngx_str_t *path, u_char *data, size_t len);
ngx_int_t ngx_http_registry_store_open_temp(ngx_http_registry_store_t *st,
    ngx_file_t *file);
ngx_int_t ngx_http_registry_store_publish(ngx_http_registry_store_t *st,
    ngx_str_t *from, ngx_str_t *to);
ngx_int_t ngx_http_registry_store_exists(ngx_str_t *path);
ngx_int_t ngx_http_registry_store_delete_tree(ngx_http_registry_store_t *st,
    ngx_str_t *path);
ngx_int_t ngx_http_registry_store_delete_link(ngx_http_registry_store_t *st,
    ngx_str_t *path);
ngx_int_t ngx_http_registry_store_read_small(ngx_http_registry_store_t *st,
    ngx_str_t *path, size_t max, ngx_str_t *content);
ngx_int_t ngx_http_registry_store_list_dir(ngx_http_registry_store_t *st,
    ngx_str_t *path, ngx_array_t *names);
ngx_int_t ngx_http_registry_store_is_repository(ngx_http_registry_store_t *st,
    ngx_str_t *name);
ngx_int_t ngx_http_registry_store_list_repositories(
    ngx_http_registry_store_t *st, ngx_array_t *names);
ngx_int_t ngx_http_registry_store_create_upload(ngx_http_registry_store_t *st,
    ngx_str_t *dir, ngx_http_registry_upload_state_t *state);
ngx_int_t ngx_http_registry_store_save_state(ngx_http_registry_store_t *st,
    ngx_str_t *dir, ngx_http_registry_upload_state_t *state);
ngx_int_t ngx_http_registry_store_load_state(ngx_http_registry_store_t *st,
    ngx_str_t *dir, ngx_http_registry_upload_state_t *state);
ngx_int_t ngx_http_registry_store_upload_expired(
    ngx_http_registry_store_t *st, ngx_str_t *dir, time_t expire);
ngx_int_t ngx_http_registry_store_purge_uploads(ngx_http_registry_store_t *st,
    time_t expire);
ngx_int_t ngx_http_registry_store_purge_upload(ngx_http_registry_store_t *st,
    ngx_str_t *dir);
u_char *ngx_http_registry_store_referrers_dir(ngx_http_registry_store_t *st,
    ngx_str_t *out, ngx_str_t *name, ngx_http_registry_digest_t *subject);
u_char *ngx_http_registry_store_referrer_entry(ngx_http_registry_store_t *st,
    ngx_str_t *out, ngx_str_t *name, ngx_http_registry_digest_t *subject,
    ngx_http_registry_digest_t *referrer);
ngx_int_t ngx_http_registry_store_referrers_current(
    ngx_http_registry_store_t *st, ngx_str_t *name, struct timespec *asof);
ngx_int_t ngx_http_registry_store_referrers_stamp(
    ngx_http_registry_store_t *st, ngx_str_t *name, struct timespec *asof);
ngx_int_t ngx_http_registry_store_list_revisions(ngx_http_registry_store_t *st,
    ngx_str_t *name, ngx_array_t *digests);
ngx_int_t ngx_http_registry_store_random_hex(u_char *buf, size_t bytes);
void ngx_http_registry_sort_names(ngx_array_t *names);

#define NGX_HTTP_REGISTRY_UPLOAD_DATA   "data"


/* ---- the link cache: links this worker found, until one may change ---- */

ngx_http_registry_link_cache_t *ngx_http_registry_links_create(
    ngx_pool_t *pool, ngx_uint_t max, ngx_msec_t valid);
ngx_int_t ngx_http_registry_links_exist(ngx_http_registry_store_t *st,
    ngx_str_t *path);
ngx_int_t ngx_http_registry_links_read(ngx_http_registry_store_t *st,
    ngx_str_t *path, ngx_http_registry_digest_t *digest);
void ngx_http_registry_links_changed(ngx_http_registry_store_t *st);


/* ---- configuration, routes and the request context ---- */

typedef struct {
    ngx_flag_t                 enable;
    ngx_flag_t                 delete;
    ngx_str_t                  root;     /* registry_root as configured */
    ngx_str_t                  store;    /* root + /docker/registry/v2 */
    size_t                     manifest_max_size;
    size_t                     chunk_min_length;
    ngx_uint_t                 auto_mount;
    time_t                     upload_expire;
    ngx_http_registry_link_cache_t  *link_cache;  /* NULL: off */
#if (NGX_THREADS)
    ngx_thread_pool_t         *thread_pool;   /* NULL: fsync() in the loop */
#endif
} ngx_http_registry_loc_conf_t;


#define NGX_HTTP_REGISTRY_AUTO_MOUNT_OFF        0
#define NGX_HTTP_REGISTRY_AUTO_MOUNT_ON         1
#define NGX_HTTP_REGISTRY_AUTO_MOUNT_ANONYMOUS  2


/* one per store: the periodic purge of its stale uploads */

typedef struct {
    ngx_str_t                  store;
    time_t                     expire;
    ngx_event_t                event;
} ngx_http_registry_sweep_t;


typedef struct {
    ngx_array_t                sweeps;   /* of ngx_http_registry_sweep_t */
    ngx_shm_zone_t            *generation;  /* the link cache's counter */
} ngx_http_registry_main_conf_t;


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


typedef struct {
    ngx_http_registry_route_e  kind;
    ngx_str_t                  name;
    ngx_str_t                  reference;   /* tag, digest or upload id */
    ngx_http_registry_digest_t digest;      /* when reference is a digest */
    unsigned                   by_digest:1;
} ngx_http_registry_route_t;


/*
 * A chunk callback returns NGX_OK, NGX_AGAIN when a thread takes the
 * bytes (it calls ngx_http_registry_body_taken() once done), or NGX_ABORT
 * after sending an error response whose result it leaves in ctx->rc.
 */
typedef ngx_int_t (*ngx_http_registry_chunk_pt)(ngx_http_request_t *r,
    u_char *data, size_t len);
typedef void (*ngx_http_registry_done_pt)(ngx_http_request_t *r);


typedef struct {
    ngx_http_registry_route_t  route;
    ngx_http_registry_store_t  store;

    /* streaming request body */
    ngx_http_registry_chunk_pt chunk;
    ngx_http_registry_done_pt  done;
    off_t                      received;
    ngx_int_t                  rc;

    /* uploads */
    ngx_str_t                  upload_dir;
    ngx_file_t                 upload_file;
    ngx_http_registry_upload_state_t  upload;
    ngx_http_registry_digest_t expected;
    off_t                      declared;    /* Content-Range length or -1 */
    unsigned                   finish:1;    /* PUT: publish after body */
    ngx_err_t                  sync_err;
#if (NGX_THREADS)
    ngx_thread_task_t         *chunk_task;  /* hash + write in a thread */
#endif
    unsigned                   published:1;
    unsigned                   temporary:1; /* monolithic: a _ngx_tmp file */
    unsigned                   discarded:1;

    /* manifests */
    ngx_buf_t                 *manifest;

    size_t                     warned;      /* bytes of Warning headers */
} ngx_http_registry_ctx_t;


extern ngx_module_t  ngx_http_registry_module;


/* ---- errors ---- */

typedef enum {
    NGX_HTTP_REGISTRY_BLOB_UNKNOWN = 0,
    NGX_HTTP_REGISTRY_BLOB_UPLOAD_INVALID,
    NGX_HTTP_REGISTRY_BLOB_UPLOAD_UNKNOWN,
    NGX_HTTP_REGISTRY_DIGEST_INVALID,
    NGX_HTTP_REGISTRY_MANIFEST_BLOB_UNKNOWN,
    NGX_HTTP_REGISTRY_MANIFEST_INVALID,
    NGX_HTTP_REGISTRY_MANIFEST_UNKNOWN,
    NGX_HTTP_REGISTRY_NAME_INVALID,
    NGX_HTTP_REGISTRY_NAME_UNKNOWN,
    NGX_HTTP_REGISTRY_SIZE_INVALID,
    NGX_HTTP_REGISTRY_UNAUTHORIZED,
    NGX_HTTP_REGISTRY_DENIED,
    NGX_HTTP_REGISTRY_UNSUPPORTED,
    NGX_HTTP_REGISTRY_TOOMANYREQUESTS,
    NGX_HTTP_REGISTRY_TAG_INVALID,
    NGX_HTTP_REGISTRY_PAGINATION_NUMBER_INVALID,
    NGX_HTTP_REGISTRY_RANGE_INVALID,
    NGX_HTTP_REGISTRY_RANGE_NOT_SATISFIABLE,
    NGX_HTTP_REGISTRY_NOT_FOUND,
    NGX_HTTP_REGISTRY_INTERNAL,
    NGX_HTTP_REGISTRY_STORAGE_FULL
} ngx_http_registry_err_e;


/*
 * ngx_http_registry_error() sends an error and returns the result of
 * sending, for a content handler to return or to finalize with.  A helper
 * that fails calls ngx_http_registry_fail() instead: it sends, leaves that
 * result in ctx->rc and returns NGX_ABORT, so "sent an error" can never be
 * mistaken for NGX_OK.
 */
ngx_int_t ngx_http_registry_error(ngx_http_request_t *r,
    ngx_http_registry_err_e err, const char *detail);
ngx_int_t ngx_http_registry_errno_error(ngx_http_request_t *r, ngx_err_t err);
ngx_int_t ngx_http_registry_fail(ngx_http_request_t *r,
    ngx_http_registry_err_e err, const char *detail);
ngx_int_t ngx_http_registry_fail_errno(ngx_http_request_t *r, ngx_err_t err);


/* ---- responses and headers (router) ---- */

ngx_int_t ngx_http_registry_handler(ngx_http_request_t *r);
ngx_table_elt_t *ngx_http_registry_add_header(ngx_http_request_t *r,
    const char *key, ngx_str_t *value);
ngx_int_t ngx_http_registry_header_in(ngx_http_request_t *r,
    const char *key, ngx_str_t *value);
ngx_int_t ngx_http_registry_send_empty(ngx_http_request_t *r,
    ngx_uint_t status);
ngx_int_t ngx_http_registry_send_body(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, ngx_buf_t *b);
ngx_int_t ngx_http_registry_digest_headers(ngx_http_request_t *r,
    ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_location(ngx_http_request_t *r,
    const char *kind, ngx_str_t *reference);
ngx_int_t ngx_http_registry_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);
ngx_int_t ngx_http_registry_warning(ngx_http_request_t *r, const char *text);
ngx_int_t ngx_http_registry_valid_tag(ngx_str_t *tag);
ngx_int_t ngx_http_registry_valid_name(ngx_str_t *name);


/* ---- streaming request bodies ---- */

ngx_int_t ngx_http_registry_read_body(ngx_http_request_t *r,
    ngx_http_registry_chunk_pt chunk, ngx_http_registry_done_pt done);
void ngx_http_registry_body_taken(ngx_http_request_t *r);


/* ---- endpoints ---- */

ngx_int_t ngx_http_registry_blob_get(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_blob_delete(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_blob_open(ngx_http_request_t *r, ngx_str_t *path,
    ngx_open_file_info_t *of);

ngx_int_t ngx_http_registry_upload_start(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_upload_status(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_upload_patch(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_upload_put(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_upload_cancel(ngx_http_request_t *r);
void ngx_http_registry_upload_discard(ngx_http_request_t *r);

ngx_int_t ngx_http_registry_manifest_get(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_manifest_put(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_manifest_delete(ngx_http_request_t *r);

ngx_int_t ngx_http_registry_tags_list(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_catalog(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_referrers_list(ngx_http_request_t *r);

void ngx_http_registry_json_cleanup(void *data);
ngx_int_t ngx_http_registry_referrer_descriptor(ngx_pool_t *pool,
    ngx_str_t *manifest, ngx_http_registry_digest_t *digest,
    ngx_http_registry_digest_t *subject, ngx_str_t *descriptor);
ngx_uint_t ngx_http_registry_referrers_tracked(ngx_http_registry_store_t *st,
    ngx_str_t *name);
void ngx_http_registry_referrers_restamp(ngx_http_registry_store_t *st,
    ngx_str_t *name);
ngx_int_t ngx_http_registry_referrers_add(ngx_http_registry_store_t *st,
    ngx_str_t *name, ngx_http_registry_digest_t *subject,
    ngx_http_registry_digest_t *referrer, ngx_str_t *descriptor);


#endif /* _NGX_HTTP_REGISTRY_H_INCLUDED_ */
