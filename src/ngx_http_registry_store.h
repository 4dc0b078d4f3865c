
/*
 * ngx_http_registry_module: the store, the registry's domain layer.
 *
 * The store keeps repositories, blobs, uploads, manifests, tags and
 * referrers in CNCF distribution's filesystem layout, and offers
 * operations on them: find a blob, mount it, open and commit an upload,
 * put a manifest, untag, list a page of tags.  Each operation owns its
 * ordering rules (write, fsync, rename, directory fsync, link cache
 * invalidation) and returns NGX_OK, NGX_DECLINED (not there) or NGX_ERROR
 * with op->fault saying why.  It knows nothing of HTTP: this header
 * includes no HTTP type, and every function may run in a thread pool
 * task unless it says "event loop only" (those touch this worker's
 * caches).
 *
 * Files: store_paths.c (every on-disk path), store_files.c (atomic files
 * and walks that never follow a symbolic link), store_links.c (the link
 * cache), store_blob.c, store_upload.c, store_manifest.c (manifests and
 * tags), store_referrers.c and store_list.c (catalog and tag listings),
 * store_jobs.c (the maintenance jobs' lease and reports); digest.c and
 * names.c hold the grammars the store relies on.
 */


#ifndef _NGX_HTTP_REGISTRY_STORE_H_INCLUDED_
#define _NGX_HTTP_REGISTRY_STORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

/*
 * The low-level SHA256_CTX/SHA512_CTX API is deprecated in OpenSSL 3.0 but
 * still shipped, and runs the same assembly as EVP.  Unlike an EVP_MD_CTX it
 * is a plain struct, so a chunked upload can save its hash state to disk at
 * each chunk boundary and resume it in any worker, or after a restart.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>


/* ---- digests (digest.c) ---- */

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
ngx_int_t ngx_http_registry_hash_valid(ngx_http_registry_hash_t *hash,
    uint64_t length);
ngx_int_t ngx_http_registry_digest_equal(ngx_http_registry_digest_t *a,
    ngx_http_registry_digest_t *b);
ngx_int_t ngx_http_registry_digest_copy(ngx_pool_t *pool, u_char *data,
    size_t len, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_digest_known(ngx_pool_t *pool, u_char *data,
    size_t len, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_digest_of(ngx_pool_t *pool, ngx_uint_t alg,
    ngx_str_t *hex, ngx_http_registry_digest_t *digest);


/* ---- names, tags and upload ids (names.c) ---- */

#define NGX_HTTP_REGISTRY_NAME_MAX       255
#define NGX_HTTP_REGISTRY_TAG_MAX        128
#define NGX_HTTP_REGISTRY_UPLOAD_ID_LEN  36

ngx_int_t ngx_http_registry_valid_name(ngx_str_t *name);
ngx_int_t ngx_http_registry_valid_tag(ngx_str_t *tag);
ngx_int_t ngx_http_registry_valid_upload_id(ngx_str_t *id);
ngx_int_t ngx_http_registry_new_upload_id(ngx_pool_t *pool, ngx_str_t *id);
ngx_int_t ngx_http_registry_random_hex(u_char *buf, size_t bytes);
void ngx_http_registry_sort_names(ngx_array_t *names);
ngx_int_t ngx_http_registry_find_name(ngx_array_t *names, ngx_str_t *name,
    ngx_uint_t *at);
ngx_uint_t ngx_http_registry_name_under(ngx_array_t *prefixes,
    ngx_str_t *name);


/* ---- why an operation failed: the spec's error codes ---- */

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
    NGX_HTTP_REGISTRY_UNAVAILABLE,
    NGX_HTTP_REGISTRY_INTERNAL,
    NGX_HTTP_REGISTRY_STORAGE_FULL
} ngx_http_registry_err_e;


typedef struct {
    ngx_http_registry_err_e    code;
    ngx_err_t                  errnum;   /* of a failed system call, or 0 */
    const char                *detail;   /* NUL-terminated, or NULL */
} ngx_http_registry_fault_t;


/* ---- what all workers share (a shared memory zone) ---- */

#define NGX_HTTP_REGISTRY_CREATED_MAX  64


typedef struct {
    uint64_t                   store;    /* ngx_http_registry_store_t.id */
    u_char                     len;
    u_char                     name[NGX_HTTP_REGISTRY_NAME_MAX];
} ngx_http_registry_created_t;


/* the stores' running jobs (jobs.c), in the zone beside this */
typedef struct ngx_http_registry_job_slot_s  ngx_http_registry_job_slot_t;


typedef struct {
    /* bumped after any link was removed or rewritten (store_links.c) */
    ngx_atomic_t               links;

    /*
     * The repositories this nginx created lately, so that each worker's
     * catalog learns of them at once (store_list.c): entry n % MAX is the
     * n-th, "created" counts them.  Under the slab pool's mutex.
     */
    ngx_atomic_t               created;
    ngx_http_registry_created_t  recent[NGX_HTTP_REGISTRY_CREATED_MAX];

    /* NGX_HTTP_REGISTRY_JOB_SLOTS, under the mutex */
    ngx_http_registry_job_slot_t  *jobs;
} ngx_http_registry_shared_t;


/* ---- the store ---- */

typedef struct ngx_http_registry_link_s        ngx_http_registry_link_t;
typedef struct ngx_http_registry_catalog_s     ngx_http_registry_catalog_t;
typedef struct ngx_http_registry_listing_s     ngx_http_registry_listing_t;
typedef struct ngx_http_registry_type_cache_s  ngx_http_registry_type_cache_t;


/* registry_link_cache: per location; entries name their store */

typedef struct {
    ngx_http_registry_link_t  *links;    /* this worker's table, or NULL */
    ngx_uint_t                 max;
    ngx_msec_t                 valid;
} ngx_http_registry_link_cache_t;


typedef struct {
    ngx_str_t                  root;     /* <registry_root>/docker/registry/v2,
                                            NUL-terminated */
    uint64_t                   id;       /* a hash of root */
    time_t                     upload_expire;   /* shortest of its locations */
    ngx_msec_t                 catalog_refresh; /* shortest of its locations */

    /* shared by the workers; set when the zone is initialized */
    ngx_http_registry_shared_t  *shared;
    ngx_slab_pool_t            *shpool;

    /* this worker's: the root's descriptor, caches (store_list.c, ...) */
    ngx_fd_t                   root_fd;
    ngx_http_registry_catalog_t     *catalog;
    ngx_http_registry_listing_t     *tags;
    ngx_http_registry_listing_t     *referrers;
    ngx_http_registry_type_cache_t  *types;
} ngx_http_registry_store_t;


/*
 * One operation's context: which store, where to allocate and log, and
 * why it failed.  An op made for a thread has no link cache.
 */

typedef struct {
    ngx_http_registry_store_t       *store;
    ngx_pool_t                      *pool;
    ngx_log_t                       *log;
    ngx_http_registry_link_cache_t  *links;
    ngx_http_registry_fault_t        fault;
} ngx_http_registry_op_t;


/*
 * An operation fails with its fault set and NGX_ERROR: every file of the
 * store says so, so these two live here, beside the op.
 */

static ngx_inline ngx_int_t
ngx_http_registry_op_fail(ngx_http_registry_op_t *op,
    ngx_http_registry_err_e code, const char *detail)
{
    op->fault.code = code;
    op->fault.errnum = 0;
    op->fault.detail = detail;

    return NGX_ERROR;
}


/* a failed system call: a full store is the client's 507, the rest 500 */

static ngx_inline ngx_int_t
ngx_http_registry_op_syserr(ngx_http_registry_op_t *op, ngx_err_t err)
{
    op->fault.code = (err == NGX_ENOSPC || err == EDQUOT)
                     ? NGX_HTTP_REGISTRY_STORAGE_FULL
                     : NGX_HTTP_REGISTRY_INTERNAL;
    op->fault.errnum = err;
    op->fault.detail = NULL;

    return NGX_ERROR;
}


/* ---- the path table (store_paths.c): store-relative, NUL-terminated ---- */

#define NGX_HTTP_REGISTRY_MARKS  3      /* _layers, _manifests, _uploads */

ngx_int_t ngx_http_registry_path_blob(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_path_blob_file(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_path_blobs(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_uint_t alg, ngx_str_t *prefix);
ngx_int_t ngx_http_registry_path_quarantine(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_path_layers(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name, ngx_uint_t alg);
ngx_int_t ngx_http_registry_path_layer_link(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_path_revision_link(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_path_revisions(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name, ngx_uint_t alg);
ngx_int_t ngx_http_registry_path_tombstone(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_uint_t alg, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_path_tomb_record(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name);
ngx_int_t ngx_http_registry_path_tags(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name);
ngx_int_t ngx_http_registry_path_tag(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name, ngx_str_t *tag);
ngx_int_t ngx_http_registry_path_in_tags(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *tag);
ngx_int_t ngx_http_registry_path_in_links(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *hex);
ngx_int_t ngx_http_registry_path_in_blobs(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *hex);
ngx_int_t ngx_http_registry_path_tag_link(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name, ngx_str_t *tag);
ngx_int_t ngx_http_registry_path_tag_index(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name, ngx_str_t *tag,
    ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_path_uploads(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name);
ngx_int_t ngx_http_registry_path_upload(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name, ngx_str_t *id, const char *file);
ngx_int_t ngx_http_registry_path_referrers(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name, ngx_http_registry_digest_t *subject);
ngx_int_t ngx_http_registry_path_referrer_subjects(
    ngx_http_registry_op_t *op, ngx_str_t *out, ngx_str_t *name,
    ngx_uint_t alg);
ngx_int_t ngx_http_registry_path_referrer(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name, ngx_http_registry_digest_t *subject,
    ngx_http_registry_digest_t *referrer);
ngx_int_t ngx_http_registry_path_referrers_built(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name);
ngx_int_t ngx_http_registry_path_repository(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name, ngx_uint_t mark);
ngx_int_t ngx_http_registry_path_repositories(ngx_http_registry_op_t *op,
    ngx_str_t *out);
ngx_int_t ngx_http_registry_path_temp(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *id);
void ngx_http_registry_path_temp_id(ngx_str_t *path, ngx_str_t *id);

/* a temporary file's id: hex digits, its name under _ngx_tmp */
#define NGX_HTTP_REGISTRY_TEMP_ID_LEN    32
ngx_int_t ngx_http_registry_path_repository_lock(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name);
ngx_int_t ngx_http_registry_path_jobs(ngx_http_registry_op_t *op,
    ngx_str_t *out);
ngx_int_t ngx_http_registry_path_job_report(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *id);
ngx_int_t ngx_http_registry_path_job_lease(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *suffix);
ngx_int_t ngx_http_registry_path_flight(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_uint_t alg, ngx_http_registry_digest_t *digest,
    ngx_str_t *suffix);
ngx_int_t ngx_http_registry_path_store(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *sub);
ngx_int_t ngx_http_registry_path_entry(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *dir, ngx_str_t *name);
ngx_int_t ngx_http_registry_path_absolute(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *path);
ngx_int_t ngx_http_registry_path_is_mark(u_char *name, size_t len);
ngx_int_t ngx_http_registry_path_parse_referrer(ngx_http_registry_op_t *op,
    ngx_str_t *entry, ngx_http_registry_digest_t *referrer);

#define NGX_HTTP_REGISTRY_UPLOAD_DATA    "data"
#define NGX_HTTP_REGISTRY_UPLOAD_STATE   "ngx_registry_state"
#define NGX_HTTP_REGISTRY_UPLOAD_START   "startedat"


/* ---- files (store_files.c): never through a symbolic link ---- */

typedef struct {
    ngx_fd_t                   fd;
    ngx_str_t                  path;
} ngx_http_registry_file_t;

/* a directory of the store held open (ngx_http_registry_dir_open()) */

typedef struct {
    int                        fd;
    ngx_str_t                  path;
} ngx_http_registry_dir_t;

/* what ngx_http_registry_file_list() keeps */
#define NGX_HTTP_REGISTRY_LIST_DIRS    1
#define NGX_HTTP_REGISTRY_LIST_FILES   2
#define NGX_HTTP_REGISTRY_LIST_LINKS   4    /* else skipped and logged */

ngx_int_t ngx_http_registry_files_open_root(ngx_http_registry_store_t *st,
    ngx_log_t *log);
ngx_fd_t ngx_http_registry_file_open(ngx_http_registry_op_t *op,
    ngx_str_t *path, int flags, mode_t mode);
ngx_int_t ngx_http_registry_file_stat(ngx_http_registry_op_t *op,
    ngx_str_t *path, ngx_file_info_t *fi);
ngx_int_t ngx_http_registry_file_exists(ngx_http_registry_op_t *op,
    ngx_str_t *path);
ngx_int_t ngx_http_registry_file_read(ngx_http_registry_op_t *op,
    ngx_str_t *path, size_t max, ngx_str_t *content);
ngx_int_t ngx_http_registry_file_read_link(ngx_http_registry_op_t *op,
    ngx_str_t *path, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_file_temp(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *file);
ngx_int_t ngx_http_registry_file_write_all(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *file, u_char *data, size_t len, off_t offset);
ngx_int_t ngx_http_registry_file_sync(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *file);
ngx_int_t ngx_http_registry_file_close(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *file);
ngx_int_t ngx_http_registry_file_mkdirs(ngx_http_registry_op_t *op,
    ngx_str_t *dir, ngx_uint_t durable);
ngx_int_t ngx_http_registry_file_publish(ngx_http_registry_op_t *op,
    ngx_str_t *from, ngx_str_t *to, ngx_uint_t durable);
ngx_fd_t ngx_http_registry_file_lock(ngx_http_registry_op_t *op,
    ngx_str_t *path);
void ngx_http_registry_file_unlock(ngx_http_registry_op_t *op, ngx_fd_t fd,
    ngx_str_t *path);
ngx_int_t ngx_http_registry_file_move(ngx_http_registry_op_t *op,
    ngx_str_t *from, ngx_str_t *to, ngx_uint_t durable);
ngx_int_t ngx_http_registry_file_write(ngx_http_registry_op_t *op,
    ngx_str_t *path, u_char *data, size_t len, ngx_uint_t durable);
ngx_int_t ngx_http_registry_file_write_link(ngx_http_registry_op_t *op,
    ngx_str_t *path, ngx_http_registry_digest_t *digest);
/* ngx_http_registry_file_unlink() flags */
#define NGX_HTTP_REGISTRY_UNLINK_PARENT   1
#define NGX_HTTP_REGISTRY_UNLINK_DURABLE  2

ngx_int_t ngx_http_registry_file_unlink(ngx_http_registry_op_t *op,
    ngx_str_t *path, ngx_uint_t flags);
ngx_int_t ngx_http_registry_file_rmdir_parent(ngx_http_registry_op_t *op,
    ngx_str_t *path);
ngx_int_t ngx_http_registry_file_sync_dir(ngx_http_registry_op_t *op,
    ngx_str_t *dir);
ngx_int_t ngx_http_registry_file_remove_tree(ngx_http_registry_op_t *op,
    ngx_str_t *path);
ngx_int_t ngx_http_registry_file_list(ngx_http_registry_op_t *op,
    ngx_str_t *dir, ngx_uint_t what, ngx_array_t *names);
ngx_int_t ngx_http_registry_dir_open(ngx_http_registry_op_t *op,
    ngx_str_t *path, ngx_http_registry_dir_t *dir);
ngx_int_t ngx_http_registry_dir_list(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *dir, ngx_uint_t what, ngx_array_t *names);
ngx_int_t ngx_http_registry_dir_stat(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *dir, ngx_str_t *rel, ngx_file_info_t *fi);
ngx_int_t ngx_http_registry_dir_read_link(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *dir, ngx_str_t *rel,
    ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_dir_open_in(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *parent, ngx_str_t *name,
    ngx_http_registry_dir_t *dir);
ngx_int_t ngx_http_registry_dir_rename(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *from_dir, char *from,
    ngx_http_registry_dir_t *to_dir, char *to);
ngx_int_t ngx_http_registry_dir_retime(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *dir, char *name);
ngx_int_t ngx_http_registry_dir_unlink(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *dir, char *name, ngx_uint_t is_dir);
ngx_int_t ngx_http_registry_dir_sync(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *dir);
void ngx_http_registry_dir_close(ngx_http_registry_dir_t *dir);
ngx_int_t ngx_http_registry_file_touch(ngx_http_registry_op_t *op,
    ngx_str_t *path, struct timespec *mtime);
ngx_int_t ngx_http_registry_file_retime(ngx_http_registry_op_t *op,
    ngx_str_t *path);

/*
 * visit() sees each directory of a walk, "sub" its path below the walk's
 * start ("" for the start), with its subdirectories, and removes from
 * dirs those not to walk into.
 */
typedef ngx_int_t (*ngx_http_registry_visit_pt)(ngx_http_registry_op_t *op,
    void *data, ngx_str_t *sub, ngx_array_t *dirs);

ngx_int_t ngx_http_registry_file_walk(ngx_http_registry_op_t *op,
    ngx_str_t *path, ngx_http_registry_visit_pt visit, void *data);


/* ---- the link cache (store_links.c): event loop only ---- */

ngx_http_registry_link_cache_t *ngx_http_registry_links_create(
    ngx_pool_t *pool, ngx_uint_t max, ngx_msec_t valid);
ngx_int_t ngx_http_registry_links_exist(ngx_http_registry_op_t *op,
    ngx_str_t *path);
ngx_int_t ngx_http_registry_links_read(ngx_http_registry_op_t *op,
    ngx_str_t *path, ngx_http_registry_digest_t *digest);
void ngx_http_registry_links_changed(ngx_http_registry_op_t *op);


/* ---- repositories (store_list.c) ---- */

ngx_int_t ngx_http_registry_store_is_repository(ngx_http_registry_op_t *op,
    ngx_str_t *name);
void ngx_http_registry_store_created(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_uint_t existed);


/* ---- blobs (store_blob.c) ---- */

ngx_int_t ngx_http_registry_store_blob_find(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *digest, ngx_str_t *data);
ngx_int_t ngx_http_registry_store_blob_unlink(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_store_blob_mount(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_str_t *from, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_store_blob_link(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_store_blob_exists(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_store_blob_refresh(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_store_blob_evict(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest, time_t since, off_t *size);


/*
 * The collector's mark for the pull-through cache's eviction
 * (store_gc_pulls(), store_evict.c): a blob the mirrored repositories
 * link, as a revision or a layer, that no local repository holds.
 */

typedef struct {
    ngx_str_t                  name;         /* a mirrored repository */
    ngx_uint_t                 revision;     /* else a layer link */
} ngx_http_registry_cached_link_t;

typedef struct {
    ngx_http_registry_digest_t digest;
    uint64_t                   pulled;       /* ns: its links' last mtime */
    ngx_array_t                links;     /* ngx_http_registry_cached_link_t */
    ngx_uint_t                *refs;         /* the answer's it references */
    ngx_uint_t                 nrefs;
    unsigned                   manifest:1;   /* a revision: its links' time
                                                is its revisions' */
} ngx_http_registry_cached_t;

ngx_int_t ngx_http_registry_store_gc_pulls(ngx_http_registry_op_t *op,
    ngx_array_t *prefixes, ngx_array_t *cached);


/* ---- uploads (store_upload.c) ---- */

typedef struct {
    ngx_uint_t                 alg;
    uint64_t                   offset;
    ngx_http_registry_hash_t   hash;
} ngx_http_registry_upload_state_t;


/*
 * The state as saved: the raw OpenSSL context, so it is only readable by
 * the same build on the same architecture; the magic, the size and the
 * checks of ngx_http_registry_hash_valid() turn anything else into
 * "unknown upload" (digest.c decodes it).
 */

typedef struct {
    u_char                            magic[8];
    ngx_http_registry_upload_state_t  state;
} ngx_http_registry_state_record_t;


void ngx_http_registry_state_encode(ngx_http_registry_upload_state_t *state,
    ngx_http_registry_state_record_t *record);
ngx_int_t ngx_http_registry_state_decode(u_char *data, size_t len,
    ngx_http_registry_upload_state_t *state);


typedef struct {
    ngx_str_t                  name;     /* repository */
    ngx_str_t                  id;       /* empty: a monolithic upload */
    ngx_http_registry_file_t   data;     /* locked while a request writes */

    /* committed: the bytes and hash of the chunks saved so far */
    ngx_http_registry_upload_state_t  state;

    /* this request's bytes beyond state.offset, hashed into state.hash */
    off_t                      written;
    off_t                      synced;   /* writeback started up to here */

    unsigned                   locked:1;
    unsigned                   rehash:1; /* finish with another algorithm */
    unsigned                   writeback:1;  /* appending in a thread */
} ngx_http_registry_upload_t;


ngx_int_t ngx_http_registry_store_upload_create(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up);
ngx_int_t ngx_http_registry_store_upload_status(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, time_t expire);
ngx_int_t ngx_http_registry_store_upload_open(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, time_t expire);
ngx_int_t ngx_http_registry_store_upload_temp(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up);
ngx_int_t ngx_http_registry_store_upload_append(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, u_char *data, size_t len);
ngx_int_t ngx_http_registry_store_upload_save(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up);
ngx_int_t ngx_http_registry_store_upload_abort(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up);
ngx_int_t ngx_http_registry_store_upload_commit(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, ngx_http_registry_digest_t *expected);
ngx_int_t ngx_http_registry_store_upload_cancel(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up);
void ngx_http_registry_store_upload_release(ngx_http_registry_upload_t *up,
    ngx_log_t *log);
ngx_int_t ngx_http_registry_store_purge_uploads(ngx_http_registry_op_t *op,
    time_t expire);


/* ---- manifests and tags (store_manifest.c) ---- */

#define NGX_HTTP_REGISTRY_QUERY_TAGS_MAX  32


typedef struct {
    ngx_str_t                  name;
    ngx_str_t                  bytes;
    ngx_http_registry_digest_t digest;
    ngx_array_t               *tags;         /* of ngx_str_t, distinct */
    ngx_array_t               *references;   /* of ngx_http_registry_ref_t */

    /* a manifest with a subject: its referrers index entry */
    ngx_http_registry_digest_t subject;
    ngx_str_t                  descriptor;   /* empty: no subject */

    /* a mirror's copy: its blobs are fetched when pulled, not before */
    unsigned                   mirrored:1;
} ngx_http_registry_manifest_t;


typedef struct {
    ngx_http_registry_digest_t digest;
    unsigned                   manifest:1;   /* an index's child */
} ngx_http_registry_ref_t;


ngx_int_t ngx_http_registry_store_manifest_resolve(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_str_t *tag, ngx_http_registry_digest_t *digest,
    ngx_str_t *data);
ngx_int_t ngx_http_registry_store_manifest_type(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest, size_t max, ngx_str_t *type);
ngx_int_t ngx_http_registry_store_manifest_put(ngx_http_registry_op_t *op,
    ngx_http_registry_manifest_t *m);
ngx_int_t ngx_http_registry_store_manifest_delete(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *digest, size_t max);
ngx_int_t ngx_http_registry_store_tag_delete(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_str_t *tag);


/* ---- manifests as JSON (manifest_json.c): pure functions ---- */

ngx_int_t ngx_http_registry_manifest_parse(ngx_pool_t *pool,
    ngx_http_registry_manifest_t *m, ngx_str_t *ct, const char **invalid);
ngx_int_t ngx_http_registry_manifest_scan(ngx_pool_t *pool,
    ngx_http_registry_manifest_t *m);
ngx_int_t ngx_http_registry_manifest_referrer(ngx_pool_t *pool,
    ngx_str_t *bytes, ngx_http_registry_digest_t *digest,
    ngx_http_registry_digest_t *subject, ngx_str_t *descriptor);
ngx_int_t ngx_http_registry_manifest_media_type(ngx_pool_t *pool,
    ngx_str_t *body, ngx_str_t *type);
ngx_int_t ngx_http_registry_manifest_deprecated(ngx_str_t *type);


/* ---- listings (store_list.c) ---- */

/*
 * What a listing was read against: the mtimes of the directories whose
 * entries it shows.  One changed within NGX_HTTP_REGISTRY_RACY seconds
 * of the reading makes it racy: timestamps are coarse, a second change
 * in the same tick would not show, so it is used once and not kept.
 */

#define NGX_HTTP_REGISTRY_STAMPS  3
#define NGX_HTTP_REGISTRY_RACY    2


typedef struct {
    struct timespec            mtime[NGX_HTTP_REGISTRY_STAMPS];
    ngx_uint_t                 racy;
} ngx_http_registry_stamp_t;


/*
 * A listing read off the event loop into a pool of its own, which the
 * worker's cache adopts (pool becomes NULL) when the stamp allows; the
 * caller destroys a pool left to it (ngx_http_registry_result_drop()).
 */

typedef struct {
    ngx_pool_t                *pool;
    ngx_str_t                  key;
    ngx_http_registry_stamp_t  stamp;
    void                      *value;
} ngx_http_registry_result_t;


typedef struct {
    ngx_str_t                 *first;
    ngx_uint_t                 count;
    ngx_uint_t                 more;     /* entries follow the page */
} ngx_http_registry_page_t;


ngx_int_t ngx_http_registry_store_init_worker(ngx_http_registry_store_t *st,
    ngx_log_t *log);
void ngx_http_registry_store_page(ngx_array_t *names, ngx_str_t *last,
    ngx_int_t n, ngx_http_registry_page_t *page);

ngx_int_t ngx_http_registry_listing_stamp(ngx_http_registry_op_t *op,
    ngx_str_t *dirs, ngx_uint_t n, ngx_http_registry_stamp_t *stamp);
void *ngx_http_registry_listing_find(ngx_http_registry_op_t *op,
    ngx_http_registry_listing_t *listing, ngx_str_t *key,
    ngx_http_registry_stamp_t *stamp);
ngx_int_t ngx_http_registry_listing_result(ngx_http_registry_op_t *op,
    ngx_str_t *key, ngx_http_registry_result_t *result);
void ngx_http_registry_listing_keep(ngx_http_registry_op_t *op,
    ngx_http_registry_listing_t *listing, ngx_http_registry_result_t *result);
void ngx_http_registry_result_drop(void *data);

ngx_int_t ngx_http_registry_store_tags_cached(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_array_t **tags, ngx_http_registry_result_t *result);
ngx_int_t ngx_http_registry_store_tags_read(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_result_t *result);
ngx_array_t *ngx_http_registry_store_tags_remember(ngx_http_registry_op_t *op,
    ngx_http_registry_result_t *result);


/*
 * Each worker's sorted index of the store's repositories: walked off the
 * event loop, told at once of the repositories this nginx creates (the
 * shared "recent" list), walked again when older than
 * registry_catalog_refresh, waited for when older than twice that.
 */

struct ngx_http_registry_catalog_s {
    ngx_pool_t                *pool;     /* of names; NULL: never walked */
    ngx_array_t                names;    /* valid, sorted */
    ngx_msec_t                 walked;   /* when that walk was installed */
    ngx_atomic_uint_t          created;  /* shared->created then */
    ngx_uint_t                 walking;  /* a walk is under way */
    ngx_queue_t                waiters;  /* requests waiting for a walk */
    void                      *walker;   /* the HTTP layer's walk task */
};


typedef struct {
    ngx_pool_t                *pool;
    ngx_array_t               *names;
    ngx_atomic_uint_t          created;  /* shared->created at its start */
} ngx_http_registry_walk_t;


ngx_int_t ngx_http_registry_store_catalog_state(ngx_http_registry_op_t *op);
ngx_int_t ngx_http_registry_store_catalog_prepare(ngx_http_registry_op_t *op,
    ngx_http_registry_walk_t *walk);
ngx_int_t ngx_http_registry_store_catalog_walk(ngx_http_registry_op_t *op,
    ngx_http_registry_walk_t *walk);
void ngx_http_registry_store_catalog_install(ngx_http_registry_op_t *op,
    ngx_http_registry_walk_t *walk);
ngx_int_t ngx_http_registry_store_list_repositories(
    ngx_http_registry_op_t *op, ngx_array_t *names);


/* ---- referrers (store_referrers.c) ---- */

ngx_int_t ngx_http_registry_store_referrers_add(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *subject,
    ngx_http_registry_digest_t *referrer, ngx_str_t *descriptor);
ngx_int_t ngx_http_registry_store_referrers_remove(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *referrer, size_t max);
ngx_int_t ngx_http_registry_store_referrers_unlink(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *subject,
    ngx_http_registry_digest_t *referrer);
ngx_uint_t ngx_http_registry_store_referrers_tracked(
    ngx_http_registry_op_t *op, ngx_str_t *name);
void ngx_http_registry_store_referrers_restamp(ngx_http_registry_op_t *op,
    ngx_str_t *name);
ngx_int_t ngx_http_registry_store_referrers_cached(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *subject, ngx_str_t *filter,
    ngx_str_t *body, ngx_http_registry_result_t *result);
ngx_int_t ngx_http_registry_store_referrers_read(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *subject, ngx_str_t *filter,
    size_t max, ngx_http_registry_result_t *result);
ngx_int_t ngx_http_registry_store_referrers_remember(
    ngx_http_registry_op_t *op, ngx_http_registry_result_t *result,
    ngx_str_t *body);


/* ---- health (store_probe.c) ---- */

ngx_int_t ngx_http_registry_store_probe(ngx_http_registry_op_t *op);


/* ---- maintenance jobs (store_gc.c, store_fsck.c): long, in a thread ---- */

/*
 * A job (gc, fsck, purge-uploads) is one store operation that may run for
 * minutes in a thread of the pool: ngx_int_t work(op, job).  It reports
 * progress through counters in shared memory, which any worker reads to
 * answer GET <admin>/jobs/<id>, and fills job->report, a JSON object the
 * admin layer saves when the job ends.  It checks progress->cancel between
 * items and stops early when it is set (nginx is exiting).
 */

typedef struct {
    ngx_atomic_t               phase;    /* the job's own numbering */
    ngx_atomic_t               done;     /* items done in this phase */
    ngx_atomic_t               total;    /* items in this phase, 0: unknown */
    ngx_atomic_t               cancel;   /* set: stop at the next item */
} ngx_http_registry_progress_t;


typedef struct {
    ngx_http_registry_progress_t  *progress;  /* never NULL */
    time_t                     grace;    /* gc: blobs younger are kept */
    off_t                      rehash_rate;   /* fsck: bytes/s, 0: no limit */
    time_t                     older_than;    /* purge-uploads: stale after */
    void                      *report;   /* a jansson json_t object */
    unsigned                   dry_run:1;
    unsigned                   delete_untagged:1;
    unsigned                   repair:1;
    unsigned                   rehash:1;
} ngx_http_registry_job_t;

typedef ngx_int_t (*ngx_http_registry_job_pt)(ngx_http_registry_op_t *op,
    ngx_http_registry_job_t *job);

/* the names of a job's phases, NULL-ended, known before it starts */
typedef const char **(*ngx_http_registry_job_phases_pt)(
    ngx_http_registry_job_t *job);

ngx_int_t ngx_http_registry_store_gc(ngx_http_registry_op_t *op,
    ngx_http_registry_job_t *job);
ngx_int_t ngx_http_registry_store_fsck(ngx_http_registry_op_t *op,
    ngx_http_registry_job_t *job);
ngx_int_t ngx_http_registry_store_purge_job(ngx_http_registry_op_t *op,
    ngx_http_registry_job_t *job);

const char **ngx_http_registry_store_gc_phases(ngx_http_registry_job_t *job);
const char **ngx_http_registry_store_fsck_phases(
    ngx_http_registry_job_t *job);
const char **ngx_http_registry_store_purge_phases(
    ngx_http_registry_job_t *job);


/* ---- the running jobs (jobs.c), in shared memory ---- */

#define NGX_HTTP_REGISTRY_JOB_SLOTS      8   /* stores with a job at once */
#define NGX_HTTP_REGISTRY_JOB_ID_LEN     25  /* 20261202T022300Z-1a2b3c4d */
#define NGX_HTTP_REGISTRY_JOB_KIND_LEN   16
#define NGX_HTTP_REGISTRY_JOB_PHASES     8
#define NGX_HTTP_REGISTRY_JOB_PHASE_LEN  24


/*
 * The job running on a store: one slot per store (by its id, 0: a free
 * slot), owned by the worker whose pid it holds (0: no job runs).  A
 * worker killed on the way leaves its pid, which nobody has any more:
 * such a slot is free again.
 */

struct ngx_http_registry_job_slot_s {
    uint64_t                   store;
    ngx_pid_t                  pid;
    time_t                     started;
    u_char                     id[NGX_HTTP_REGISTRY_JOB_ID_LEN];
    u_char                     kind[NGX_HTTP_REGISTRY_JOB_KIND_LEN];
    u_char                     phases[NGX_HTTP_REGISTRY_JOB_PHASES]
                                     [NGX_HTTP_REGISTRY_JOB_PHASE_LEN];
    ngx_http_registry_progress_t  progress;
};


/* ---- the jobs' lease and reports (store_jobs.c) ---- */

#define NGX_HTTP_REGISTRY_LEASE_REFRESH  5      /* seconds */
#define NGX_HTTP_REGISTRY_LEASE_STALE    30     /* seconds */
#define NGX_HTTP_REGISTRY_LEASE_MAX      4096   /* bytes read of a lease */
#define NGX_HTTP_REGISTRY_RFC3339_LEN    (sizeof("1970-01-01T00:00:00Z") - 1)


struct json_t;

/* store_lease.c */
ngx_int_t ngx_http_registry_lease_file_create(ngx_http_registry_op_t *op,
    ngx_fd_t dir, char *name, struct json_t *doc);
ngx_int_t ngx_http_registry_lease_file_write(ngx_http_registry_op_t *op,
    ngx_fd_t fd, struct json_t *doc);
ngx_int_t ngx_http_registry_lease_file_steal(ngx_http_registry_op_t *op,
    ngx_fd_t dir, char *name, char *aside, ngx_file_info_t *stale,
    ngx_str_t *stale_id);
ngx_int_t ngx_http_registry_lease_file_read(ngx_http_registry_op_t *op,
    ngx_fd_t dir, char *name, u_char *buf, size_t size, size_t *n,
    ngx_file_info_t *fi);
ngx_uint_t ngx_http_registry_lease_stale(ngx_file_info_t *fi, time_t stale,
    ngx_str_t *holder, ngx_pid_t pid, ngx_str_t *host);

/* store_jobs.c */
ngx_int_t ngx_http_registry_json_string(ngx_http_registry_op_t *op,
    struct json_t *obj, const char *key, ngx_str_t *s);


/* who runs a job on the store, as the lease file says */

typedef struct {
    ngx_str_t                  host;
    ngx_pid_t                  pid;
    ngx_str_t                  id;
    ngx_str_t                  kind;
    time_t                     started;
} ngx_http_registry_lease_t;


ngx_int_t ngx_http_registry_job_new_id(u_char *id, time_t now);
ngx_int_t ngx_http_registry_job_valid_id(ngx_str_t *id);
u_char *ngx_http_registry_rfc3339(u_char *buf, time_t t);

ngx_int_t ngx_http_registry_store_lease_take(ngx_http_registry_op_t *op,
    ngx_http_registry_lease_t *ours, ngx_http_registry_lease_t *holder);
ngx_int_t ngx_http_registry_store_lease_refresh(ngx_http_registry_op_t *op,
    ngx_str_t *id);
ngx_int_t ngx_http_registry_store_lease_drop(ngx_http_registry_op_t *op,
    ngx_str_t *id);
ngx_int_t ngx_http_registry_store_job_save(ngx_http_registry_op_t *op,
    ngx_str_t *id, void *doc, ngx_uint_t final);
ngx_int_t ngx_http_registry_store_job_report_file(ngx_http_registry_op_t *op,
    ngx_str_t *id, ngx_str_t *out);
ngx_int_t ngx_http_registry_store_jobs_list(ngx_http_registry_op_t *op,
    ngx_str_t *out);


#endif /* _NGX_HTTP_REGISTRY_STORE_H_INCLUDED_ */
