
/*
 * ngx_http_registry_module: blob uploads.
 *
 * An upload lives on disk under _uploads/<id>/: its data file and its
 * state (offset and hash state at that offset), so its chunks may reach
 * any worker, any nginx sharing the store, or an nginx restarted since.
 * Each body is written to the data file and hashed as it arrives; the
 * state is saved when a chunk is complete, so a chunk cut short leaves the
 * upload where it was (its stray bytes are truncated by the next chunk).
 * On PUT the digest is checked and the data file renamed into blobs/.
 */


#include "ngx_http_registry.h"

#include <sys/file.h>
#include <sys/resource.h>


#define NGX_HTTP_REGISTRY_THREAD_MIN  (64 * 1024)
#define NGX_HTTP_REGISTRY_THREAD_NICE  19


static ngx_int_t ngx_http_registry_upload_monolithic(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_upload_mount(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_str_t *mount);
static ngx_int_t ngx_http_registry_upload_mountable(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_upload_algorithm(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_upload_find(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_upload_open(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_upload_receive(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_upload_range(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_upload_expect(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_upload_chunk(ngx_http_request_t *r,
    u_char *data, size_t len);
static void ngx_http_registry_upload_done(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_upload_publish(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_upload_link(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
#if (NGX_THREADS)
static ngx_uint_t ngx_http_registry_upload_threaded(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_upload_chunk_in_thread(
    ngx_http_request_t *r, ngx_http_registry_ctx_t *ctx, u_char *data,
    size_t len);
static void ngx_http_registry_chunk_thread(void *data, ngx_log_t *log);
static void ngx_http_registry_chunk_event(ngx_event_t *ev);
static ngx_int_t ngx_http_registry_thread_post(ngx_http_request_t *r,
    ngx_thread_task_t *task);
static ngx_http_request_t *ngx_http_registry_thread_back(ngx_event_t *ev);
static ngx_int_t ngx_http_registry_upload_sync_in_thread(
    ngx_http_request_t *r, ngx_http_registry_ctx_t *ctx);
static void ngx_http_registry_fsync_thread(void *data, ngx_log_t *log);
static void ngx_http_registry_fsync_event(ngx_event_t *ev);
static void ngx_http_registry_upload_synced(ngx_http_request_t *r);
#endif
static ngx_int_t ngx_http_registry_upload_headers(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_upload_new_id(ngx_http_request_t *r,
    ngx_str_t *id);
static ngx_int_t ngx_http_registry_upload_dir(ngx_http_registry_ctx_t *ctx);
static void ngx_http_registry_upload_unlock(ngx_http_registry_ctx_t *ctx);
static void ngx_http_registry_upload_cleanup(void *data);


/* POST /v2/<name>/blobs/uploads/[?digest=|?mount=&from=|?digest-algorithm=] */

ngx_int_t
ngx_http_registry_upload_start(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_str_t                      value;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_loc_conf_t  *rlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    rc = ngx_http_registry_arg(r, "mount", &value);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        rc = ngx_http_registry_upload_mount(r, ctx, &value);
        if (rc != NGX_DECLINED) {
            return (rc == NGX_ABORT) ? ctx->rc : rc;
        }

        /* a mount that could not be done starts a session, as the spec asks */

    } else {
        rc = ngx_http_registry_upload_expect(r, ctx);
    }

    if (rc == NGX_ERROR) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_DIGEST_INVALID,
                                       "invalid digest parameter");
    }

    ctx->finish = (rc == NGX_OK);

    if (ngx_http_registry_upload_algorithm(r, ctx) != NGX_OK) {
        return ctx->rc;
    }

    ctx->upload.offset = 0;
    ngx_http_registry_hash_init(&ctx->upload.hash, ctx->upload.alg);

    if (ctx->finish) {
        return ngx_http_registry_upload_monolithic(r, ctx);
    }

    if (ngx_http_registry_upload_new_id(r, &ctx->route.reference) != NGX_OK
        || ngx_http_registry_upload_dir(ctx) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_registry_store_create_upload(&ctx->store, &ctx->upload_dir,
                                              &ctx->upload)
        != NGX_OK)
    {
        return ngx_http_registry_errno_error(r, ngx_errno);
    }

    if (ngx_http_registry_upload_headers(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rlcf->chunk_min_length) {
        value.data = ngx_pnalloc(r->pool, NGX_SIZE_T_LEN);
        if (value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        value.len = ngx_sprintf(value.data, "%uz", rlcf->chunk_min_length)
                    - value.data;

        if (ngx_http_registry_add_header(r, "OCI-Chunk-Min-Length", &value)
            == NULL)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_registry_send_empty(r, NGX_HTTP_ACCEPTED);
}


/*
 * POST ?digest= with the body: a session nobody else can see, so it needs
 * no bookkeeping; the body goes to a temporary file of the store, renamed
 * into blobs/ if the digest matches, deleted otherwise.
 */

static ngx_int_t
ngx_http_registry_upload_monolithic(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_registry_store_open_temp(&ctx->store, &ctx->upload_file)
        != NGX_OK)
    {
        return ngx_http_registry_errno_error(r, ngx_errno);
    }

    cln->handler = ngx_http_registry_upload_cleanup;
    cln->data = ctx;
    ctx->temporary = 1;

    return ngx_http_registry_upload_receive(r, ctx);
}


/*
 * ?mount=<digest>[&from=<name>]: links a blob another repository has (or,
 * without "from", any blob of the store, as registry_auto_mount allows)
 * and answers 201.  NGX_DECLINED: it cannot be done; NGX_ABORT: an
 * error was sent.
 */

static ngx_int_t
ngx_http_registry_upload_mount(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_str_t *mount)
{
    ngx_int_t                    rc;
    ngx_str_t                    link;
    ngx_http_registry_digest_t   digest;

    if (ngx_http_registry_parse_digest(mount, &digest) != NGX_OK) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_DIGEST_INVALID,
                                      "invalid mount parameter");
    }

    rc = ngx_http_registry_upload_mountable(r, ctx, &digest);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_registry_store_layer_link(&ctx->store, &link,
                                           &ctx->route.name, &digest)
        == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_registry_store_exists(&link) == NGX_DECLINED
        && ngx_http_registry_store_write_link(&ctx->store, &link, &digest)
           != NGX_OK)
    {
        return ngx_http_registry_errno_error(r, ngx_errno);
    }

    if (ngx_http_registry_location(r, "blobs", &digest.text) != NGX_OK
        || ngx_http_registry_digest_headers(r, &digest) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_send_empty(r, NGX_HTTP_CREATED);
}


/* NGX_OK: the blob's bytes are there and "from" (if any) links them */

static ngx_int_t
ngx_http_registry_upload_mountable(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_http_registry_digest_t *digest)
{
    ngx_int_t                      rc;
    ngx_str_t                      from, path;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    rc = ngx_http_registry_arg(r, "from", &from);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        if (ngx_http_registry_valid_name(&from) != NGX_OK) {
            return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_NAME_INVALID,
                                          "invalid from parameter");
        }

        if (ngx_http_registry_store_layer_link(&ctx->store, &path, &from,
                                               digest)
            == NULL)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_http_registry_store_exists(&path);
        if (rc != NGX_OK) {
            return (rc == NGX_DECLINED) ? NGX_DECLINED
                                        : NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else if (rlcf->auto_mount == NGX_HTTP_REGISTRY_AUTO_MOUNT_OFF
               || (rlcf->auto_mount == NGX_HTTP_REGISTRY_AUTO_MOUNT_ANONYMOUS
                   && r->headers_in.authorization))
    {
        return NGX_DECLINED;
    }

    /* a link whose blob was collected mounts nothing */

    if (ngx_http_registry_store_blob_path(&ctx->store, &path, digest) == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_registry_store_exists(&path);

    return (rc == NGX_ERROR) ? NGX_HTTP_INTERNAL_SERVER_ERROR : rc;
}


/*
 * The algorithm the session hashes with: the ?digest= one for a
 * monolithic upload, else ?digest-algorithm=, else sha256.
 */

static ngx_int_t
ngx_http_registry_upload_algorithm(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    ngx_int_t  rc, alg;
    ngx_str_t  value;

    ctx->upload.alg = NGX_HTTP_REGISTRY_SHA256;

    if (ctx->finish) {
        ctx->upload.alg = ctx->expected.alg;
        return NGX_OK;
    }

    rc = ngx_http_registry_arg(r, "digest-algorithm", &value);

    if (rc == NGX_ERROR) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    if (rc == NGX_OK) {
        alg = ngx_http_registry_alg_by_name(&value);

        if (alg == NGX_ERROR) {
            return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_DIGEST_INVALID,
                                          "unsupported digest algorithm");
        }

        ctx->upload.alg = alg;
    }

    return NGX_OK;
}


/* GET <location>: where the upload stands */

ngx_int_t
ngx_http_registry_upload_status(ngx_http_request_t *r)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ngx_http_registry_upload_find(r, ctx) != NGX_OK) {
        return ctx->rc;
    }

    if (ngx_http_registry_upload_headers(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_send_empty(r, NGX_HTTP_NO_CONTENT);
}


/* PATCH <location>: append a chunk */

ngx_int_t
ngx_http_registry_upload_patch(ngx_http_request_t *r)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ngx_http_registry_upload_open(r, ctx) != NGX_OK) {
        return ctx->rc;
    }

    return ngx_http_registry_upload_receive(r, ctx);
}


/* PUT <location>?digest=: an optional last chunk, then publish */

ngx_int_t
ngx_http_registry_upload_put(ngx_http_request_t *r)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ngx_http_registry_upload_expect(r, ctx) != NGX_OK) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_DIGEST_INVALID,
                                       "a valid digest parameter is needed");
    }

    ctx->finish = 1;

    if (ngx_http_registry_upload_open(r, ctx) != NGX_OK) {
        return ctx->rc;
    }

    if (ctx->expected.alg != ctx->upload.alg) {
        if (ctx->upload.offset != 0) {
            return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_DIGEST_INVALID,
                                   "digest algorithm differs from the one "
                                   "the upload is hashed with");
        }

        /* nothing hashed yet: hash with the algorithm the client chose */
        ctx->upload.alg = ctx->expected.alg;
        ngx_http_registry_hash_init(&ctx->upload.hash, ctx->upload.alg);
    }

    return ngx_http_registry_upload_receive(r, ctx);
}


/* DELETE <location>: cancel */

ngx_int_t
ngx_http_registry_upload_cancel(ngx_http_request_t *r)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ngx_http_registry_upload_find(r, ctx) != NGX_OK) {
        return ctx->rc;
    }

    if (ngx_http_registry_store_delete_tree(&ctx->store, &ctx->upload_dir)
        == NGX_ERROR)
    {
        return ngx_http_registry_errno_error(r, ngx_errno);
    }

    return ngx_http_registry_send_empty(r, NGX_HTTP_NO_CONTENT);
}


/* the upload's saved state, or BLOB_UPLOAD_UNKNOWN */

static ngx_int_t
ngx_http_registry_upload_find(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    ngx_int_t                      rc;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    if (ngx_http_registry_upload_dir(ctx) != NGX_OK) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    /* stale: purged now, whether or not the sweep has come by yet */

    if (ngx_http_registry_store_upload_expired(&ctx->store, &ctx->upload_dir,
                                               rlcf->upload_expire)
        == NGX_OK)
    {
        (void) ngx_http_registry_store_delete_tree(&ctx->store,
                                                   &ctx->upload_dir);

        return ngx_http_registry_fail(r,
                                      NGX_HTTP_REGISTRY_BLOB_UPLOAD_UNKNOWN,
                                      "upload expired");
    }

    rc = ngx_http_registry_store_load_state(&ctx->store, &ctx->upload_dir,
                                            &ctx->upload);

    if (rc == NGX_DECLINED) {
        return ngx_http_registry_fail(r,
                                      NGX_HTTP_REGISTRY_BLOB_UPLOAD_UNKNOWN,
                                      NULL);
    }

    if (rc != NGX_OK) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    return NGX_OK;
}


/*
 * Opens the upload's data file and takes it for this request: an flock()
 * (held until the pool closes the file) keeps two requests from writing
 * one upload at once, in one worker or across workers and hosts.  The
 * state is read under the lock, so it is the latest.
 */

static ngx_int_t
ngx_http_registry_upload_open(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    ngx_fd_t                   fd;
    ngx_err_t                  err;
    ngx_str_t                  path;
    ngx_pool_cleanup_t        *cln;
    ngx_pool_cleanup_file_t   *clnf;

    if (ngx_http_registry_upload_dir(ctx) != NGX_OK
        || ngx_http_registry_store_in_dir(&ctx->store, &path, &ctx->upload_dir,
                                          NGX_HTTP_REGISTRY_UPLOAD_DATA)
           == NULL)
    {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_pool_cleanup_file_t));
    if (cln == NULL) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    fd = ngx_open_file(path.data, NGX_FILE_WRONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;

        if (err == NGX_ENOENT || err == NGX_ENOTDIR) {
            return ngx_http_registry_fail(r,
                                       NGX_HTTP_REGISTRY_BLOB_UPLOAD_UNKNOWN,
                                       NULL);
        }

        ngx_log_error(NGX_LOG_CRIT, r->connection->log, err,
                      ngx_open_file_n " \"%s\" failed", path.data);
        return ngx_http_registry_fail_errno(r, err);
    }

    cln->handler = ngx_pool_cleanup_file;
    clnf = cln->data;
    clnf->fd = fd;
    clnf->name = path.data;
    clnf->log = r->pool->log;

    ctx->upload_file.fd = fd;
    ctx->upload_file.name = path;
    ctx->upload_file.log = r->connection->log;

    if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
        err = ngx_errno;

        if (err != NGX_EAGAIN) {
            ngx_log_error(NGX_LOG_CRIT, r->connection->log, err,
                          "flock(\"%s\") failed", path.data);
            return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL,
                                           NULL);
        }

        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_BLOB_UPLOAD_INVALID,
                                       "another request is writing to this "
                                       "upload");
    }

    return ngx_http_registry_upload_find(r, ctx);
}


/* checks the declared range, drops stray bytes, and streams the body in */

static ngx_int_t
ngx_http_registry_upload_receive(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    if (ngx_http_registry_upload_range(r, ctx) != NGX_OK) {
        return ctx->rc;
    }

    if (ftruncate(ctx->upload_file.fd, ctx->upload.offset) == -1) {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                      "ftruncate(\"%V\") failed", &ctx->upload_file.name);
        return ngx_http_registry_errno_error(r, ngx_errno);
    }

    return ngx_http_registry_read_body(r, ngx_http_registry_upload_chunk,
                                       ngx_http_registry_upload_done);
}


/*
 * Content-Range "<start>-<end>" (inclusive; "bytes=" or "bytes " may come
 * first) must start at the upload's offset and agree with Content-Length.
 * Without it the body is simply appended.
 */

static ngx_int_t
ngx_http_registry_upload_range(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    u_char     *p, *dash, *last;
    off_t       start, end;
    ngx_str_t   value;

    ctx->declared = -1;

    if (ngx_http_registry_header_in(r, "Content-Range", &value) != NGX_OK) {
        return NGX_OK;
    }

    p = value.data;
    last = value.data + value.len;

    if (value.len > 6 && ngx_strncasecmp(p, (u_char *) "bytes", 5) == 0
        && (p[5] == '=' || p[5] == ' '))
    {
        p += 6;
    }

    dash = ngx_strlchr(p, last, '-');

    start = (dash == NULL) ? NGX_ERROR : ngx_atoof(p, dash - p);
    end = (dash == NULL) ? NGX_ERROR : ngx_atoof(dash + 1, last - dash - 1);

    if (start == NGX_ERROR || end == NGX_ERROR) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_BLOB_UPLOAD_INVALID,
                                       "malformed Content-Range");
    }

    if (start != (off_t) ctx->upload.offset || end < start) {
        if (ngx_http_registry_upload_headers(r, ctx) != NGX_OK) {
            return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
        }

        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_RANGE_INVALID,
                                       "chunk does not start at the upload's "
                                       "next byte");
    }

    ctx->declared = end - start + 1;

    if (r->headers_in.content_length_n >= 0
        && r->headers_in.content_length_n != ctx->declared)
    {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_BLOB_UPLOAD_INVALID,
                                       "Content-Length disagrees with "
                                       "Content-Range");
    }

    return NGX_OK;
}


/* NGX_OK: a valid ?digest=; NGX_DECLINED: none; NGX_ERROR: invalid */

static ngx_int_t
ngx_http_registry_upload_expect(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    ngx_int_t  rc;
    ngx_str_t  value;

    rc = ngx_http_registry_arg(r, "digest", &value);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_registry_parse_digest(&value, &ctx->expected);
}


static ngx_int_t
ngx_http_registry_upload_chunk(ngx_http_request_t *r, u_char *data,
    size_t len)
{
    ssize_t                   n;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ctx->declared >= 0 && ctx->received + (off_t) len > ctx->declared) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_BLOB_UPLOAD_INVALID,
                                      "body is longer than Content-Range");
    }

#if (NGX_THREADS)
    if (len >= NGX_HTTP_REGISTRY_THREAD_MIN
        && ngx_http_registry_upload_threaded(r))
    {
        return ngx_http_registry_upload_chunk_in_thread(r, ctx, data, len);
    }
#endif

    n = ngx_write_file(&ctx->upload_file, data, len,
                       ctx->upload.offset + ctx->received);

    if (n != (ssize_t) len) {
        return ngx_http_registry_fail_errno(r, ngx_errno);
    }

    ngx_http_registry_hash_update(&ctx->upload.hash, data, len);

    return NGX_OK;
}


#if (NGX_THREADS)

/*
 * With registry_thread_pool, an HTTP/1 upload's bytes are hashed and
 * written by a thread of the pool, so the worker's event loop only moves
 * bytes and a push costs other requests no CPU-bound wait.  Only buffers
 * of NGX_HTTP_REGISTRY_THREAD_MIN bytes or more go: a smaller one hashes
 * in less time than a hand-over to a thread takes (client_body_buffer_size
 * decides how big they get).  An HTTP/2 stream's buffer is filled by the
 * connection as frames arrive, so its bytes are taken in the worker.
 */

static ngx_uint_t
ngx_http_registry_upload_threaded(ngx_http_request_t *r)
{
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

#if (NGX_HTTP_V2)
    if (r->stream) {
        return 0;
    }
#endif

    return rlcf->thread_pool != NULL;
}


typedef struct {
    ngx_http_registry_ctx_t  *ctx;
    u_char                   *data;
    size_t                    len;
    off_t                     offset;
    ngx_err_t                 err;
} ngx_http_registry_chunk_job_t;


static ngx_int_t
ngx_http_registry_upload_chunk_in_thread(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, u_char *data, size_t len)
{
    ngx_thread_task_t              *task;
    ngx_http_registry_chunk_job_t  *job;

    task = ctx->chunk_task;

    if (task == NULL) {
        task = ngx_thread_task_alloc(r->pool,
                                     sizeof(ngx_http_registry_chunk_job_t));
        if (task == NULL) {
            return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
        }

        task->handler = ngx_http_registry_chunk_thread;
        task->event.handler = ngx_http_registry_chunk_event;
        task->event.data = r;

        ctx->chunk_task = task;
    }

    job = task->ctx;
    job->ctx = ctx;
    job->data = data;
    job->len = len;
    job->offset = ctx->upload.offset + ctx->received;
    job->err = 0;

    if (ngx_http_registry_thread_post(r, task) != NGX_OK) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    return NGX_AGAIN;
}


/* in a thread: the job's bytes, the data file and the hash state only */

static void
ngx_http_registry_chunk_thread(void *data, ngx_log_t *log)
{
    ngx_http_registry_chunk_job_t  *job = data;

    u_char   *p, *last;
    off_t     offset;
    ssize_t   n;

    /*
     * Hashing is bulk work: the thread takes the lowest CPU priority, so
     * on a busy machine the event loops serving pulls go first and the
     * push gets what they leave.  Linux keeps a nice value per thread; an
     * unprivileged worker cannot raise it back, so the pool's threads stay
     * at it (give "aio threads" a pool of its own).
     */
    (void) setpriority(PRIO_PROCESS, 0, NGX_HTTP_REGISTRY_THREAD_NICE);

    p = job->data;
    last = job->data + job->len;
    offset = job->offset;

    while (p < last) {
        n = pwrite(job->ctx->upload_file.fd, p, last - p, offset);

        if (n == -1) {
            if (ngx_errno == NGX_EINTR) {
                continue;
            }

            job->err = ngx_errno;
            return;
        }

        p += n;
        offset += n;
    }

    ngx_http_registry_hash_update(&job->ctx->upload.hash, job->data,
                                  job->len);
}


/* back in the worker: the buffer is taken, reading goes on */

static void
ngx_http_registry_chunk_event(ngx_event_t *ev)
{
    ngx_connection_t               *c;
    ngx_http_request_t             *r;
    ngx_http_registry_ctx_t        *ctx;
    ngx_http_registry_chunk_job_t  *job;

    r = ngx_http_registry_thread_back(ev);
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    job = ctx->chunk_task->ctx;

    if (c->error) {
        /* terminated meanwhile: nginx left its finalizer here */
        r->write_event_handler(r);

    } else if (job->err) {
        ngx_log_error(NGX_LOG_CRIT, c->log, job->err,
                      "pwrite() \"%V\" failed", &ctx->upload_file.name);
        (void) ngx_http_registry_fail_errno(r, job->err);
        ngx_http_finalize_request(r, ctx->rc);

    } else {
        ngx_http_registry_body_taken(r);
    }

    ngx_http_run_posted_requests(c);
}

#endif


static void
ngx_http_registry_upload_done(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ctx->declared >= 0 && ctx->received != ctx->declared) {
        rc = ngx_http_registry_error(r, NGX_HTTP_REGISTRY_BLOB_UPLOAD_INVALID,
                                     "body is shorter than Content-Range");
        ngx_http_finalize_request(r, rc);
        return;
    }

    ctx->upload.offset += ctx->received;

    if (ctx->finish) {
        rc = ngx_http_registry_upload_publish(r, ctx);

        if (rc != NGX_DONE) {      /* NGX_DONE: goes on in a thread */
            ngx_http_finalize_request(r, rc);
        }

        return;
    }

    if (ngx_http_registry_store_save_state(&ctx->store, &ctx->upload_dir,
                                           &ctx->upload)
        != NGX_OK)
    {
        ngx_http_finalize_request(r,
                                  ngx_http_registry_errno_error(r, ngx_errno));
        return;
    }

    if (ngx_http_registry_upload_headers(r, ctx) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_registry_upload_unlock(ctx);

    ngx_http_finalize_request(r,
                        ngx_http_registry_send_empty(r, NGX_HTTP_ACCEPTED));
}


/*
 * The upload is complete: check the digest, make the data durable, rename
 * it into blobs/ (identical bytes if another push got there first), link
 * it into the repository, and drop what is left of the upload.  The
 * fsync() of a big blob may take seconds: with registry_thread_pool it
 * runs in a thread and the worker serves others meanwhile (NGX_DONE).
 */

static ngx_int_t
ngx_http_registry_upload_publish(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    u_char                      *detail;
    ngx_http_registry_digest_t   actual;

    if (ngx_http_registry_hash_final(&ctx->upload.hash, r->pool, &actual)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!ngx_http_registry_digest_equal(&actual, &ctx->expected)) {

        /* gone before the answer is (a monolithic one's in the error) */

        if (ctx->upload_dir.len) {
            (void) ngx_http_registry_store_delete_tree(&ctx->store,
                                                       &ctx->upload_dir);
        }

        detail = ngx_pnalloc(r->pool, actual.text.len + 1);
        if (detail == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_cpystrn(detail, actual.text.data, actual.text.len + 1);

        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_DIGEST_INVALID,
                                       (char *) detail);
    }

#if (NGX_THREADS)
    switch (ngx_http_registry_upload_sync_in_thread(r, ctx)) {

    case NGX_OK:
        return NGX_DONE;

    case NGX_ERROR:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    default: /* NGX_DECLINED: no thread pool here */
        break;
    }
#endif

    if (fsync(ctx->upload_file.fd) == -1) {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                      "fsync(\"%V\") failed", &ctx->upload_file.name);
        return ngx_http_registry_errno_error(r, ngx_errno);
    }

    return ngx_http_registry_upload_link(r, ctx);
}


/* the data is durable and is the expected digest's: publish and answer */

static ngx_int_t
ngx_http_registry_upload_link(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    ngx_str_t                    blob, link;
    ngx_http_registry_digest_t  *digest;

    digest = &ctx->expected;

    if (ngx_http_registry_store_blob_path(&ctx->store, &blob, digest) == NULL
        || ngx_http_registry_store_layer_link(&ctx->store, &link,
                                              &ctx->route.name, digest)
           == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_registry_store_publish(&ctx->store, &ctx->upload_file.name,
                                        &blob)
        != NGX_OK
        || ngx_http_registry_store_write_link(&ctx->store, &link, digest)
           != NGX_OK)
    {
        return ngx_http_registry_errno_error(r, ngx_errno);
    }

    ctx->published = 1;

    if (ctx->upload_dir.len) {
        (void) ngx_http_registry_store_delete_tree(&ctx->store,
                                                   &ctx->upload_dir);
        ngx_http_registry_upload_unlock(ctx);
    }

    if (ngx_http_registry_location(r, "blobs", &digest->text) != NGX_OK
        || ngx_http_registry_digest_headers(r, digest) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_send_empty(r, NGX_HTTP_CREATED);
}


#if (NGX_THREADS)

/*
 * NGX_OK: the fsync() is posted to registry_thread_pool and the request
 * waits, blocked as nginx's own thread reads block it; NGX_DECLINED: the
 * location has no thread pool.
 */

static ngx_int_t
ngx_http_registry_upload_sync_in_thread(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    ngx_thread_task_t             *task;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    if (rlcf->thread_pool == NULL) {
        return NGX_DECLINED;
    }

    task = ngx_thread_task_alloc(r->pool, 0);
    if (task == NULL) {
        return NGX_ERROR;
    }

    task->ctx = ctx;
    task->handler = ngx_http_registry_fsync_thread;
    task->event.data = r;
    task->event.handler = ngx_http_registry_fsync_event;

    if (ngx_http_registry_thread_post(r, task) != NGX_OK) {
        return NGX_ERROR;
    }

    r->write_event_handler = ngx_http_registry_upload_synced;

    return NGX_OK;
}


/* in a thread: touches nothing but the descriptor and an error slot */

static void
ngx_http_registry_fsync_thread(void *data, ngx_log_t *log)
{
    ngx_http_registry_ctx_t  *ctx = data;

    ctx->sync_err = (fsync(ctx->upload_file.fd) == -1) ? ngx_errno : 0;
}


/* back in the worker, the way ngx_http_copy_filter_module comes back */

static void
ngx_http_registry_fsync_event(ngx_event_t *ev)
{
    ngx_http_request_t  *r;

    r = ngx_http_registry_thread_back(ev);

    r->write_event_handler(r);
    ngx_http_run_posted_requests(r->connection);
}


/*
 * A task for registry_thread_pool: the request waits for it blocked, as
 * for nginx's own thread reads (r->aio says a task is under way).
 */

static ngx_int_t
ngx_http_registry_thread_post(ngx_http_request_t *r, ngx_thread_task_t *task)
{
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    if (ngx_thread_task_post(rlcf->thread_pool, task) != NGX_OK) {
        return NGX_ERROR;
    }

    r->main->blocked++;
    r->aio = 1;

    return NGX_OK;
}


/* a task's completion event: its request, unblocked */

static ngx_http_request_t *
ngx_http_registry_thread_back(ngx_event_t *ev)
{
    ngx_http_request_t  *r;

    r = ev->data;

    ngx_http_set_log_request(r->connection->log, r);

    r->main->blocked--;
    r->aio = 0;

    return r;
}


/*
 * The request's write handler while the fsync() runs (a write event then,
 * with r->aio still set, is ignored) and once it is done; a request terminated meanwhile has had
 * its handler replaced by nginx.
 */

static void
ngx_http_registry_upload_synced(ngx_http_request_t *r)
{
    ngx_http_registry_ctx_t  *ctx;

    if (r->aio) {
        return;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    r->write_event_handler = ngx_http_request_empty_handler;

    if (ctx->sync_err) {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ctx->sync_err,
                      "fsync(\"%V\") failed", &ctx->upload_file.name);
        ngx_http_finalize_request(r, ngx_http_registry_errno_error(r,
                                                          ctx->sync_err));
        return;
    }

    ngx_http_finalize_request(r, ngx_http_registry_upload_link(r, ctx));
}

#endif


/* Location, Docker-Upload-UUID and the Range received so far */

static ngx_int_t
ngx_http_registry_upload_headers(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    ngx_str_t  range;

    range.data = ngx_pnalloc(r->pool, sizeof("0-") - 1 + NGX_OFF_T_LEN);
    if (range.data == NULL) {
        return NGX_ERROR;
    }

    range.len = ngx_sprintf(range.data, "0-%uL",
                            ctx->upload.offset ? ctx->upload.offset - 1 : 0)
                - range.data;

    if (ngx_http_registry_location(r, "blobs/uploads", &ctx->route.reference)
        != NGX_OK
        || ngx_http_registry_add_header(r, "Docker-Upload-UUID",
                                        &ctx->route.reference)
           == NULL
        || ngx_http_registry_add_header(r, "Range", &range) == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a random (version 4) UUID, the form distribution hands out too */

static ngx_int_t
ngx_http_registry_upload_new_id(ngx_http_request_t *r, ngx_str_t *id)
{
    u_char  *p;
    u_char   hex[32];

    if (ngx_http_registry_store_random_hex(hex, 16) != NGX_OK) {
        return NGX_ERROR;
    }

    hex[12] = '4';
    hex[16] = "89ab"[hex[16] & 3];

    id->data = ngx_pnalloc(r->pool, 36);
    if (id->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(id->data, hex, 8);
    *p++ = '-';
    p = ngx_cpymem(p, hex + 8, 4);
    *p++ = '-';
    p = ngx_cpymem(p, hex + 12, 4);
    *p++ = '-';
    p = ngx_cpymem(p, hex + 16, 4);
    *p++ = '-';
    p = ngx_cpymem(p, hex + 20, 12);

    id->len = p - id->data;

    return NGX_OK;
}


/* _uploads/<id> of the route's repository, computed once */

static ngx_int_t
ngx_http_registry_upload_dir(ngx_http_registry_ctx_t *ctx)
{
    if (ctx->upload_dir.len) {
        return NGX_OK;
    }

    return ngx_http_registry_store_upload_dir(&ctx->store, &ctx->upload_dir,
                                              &ctx->route.name,
                                              &ctx->route.reference)
           ? NGX_OK : NGX_ERROR;
}


/*
 * The lock goes before the answer does: a client may send its next chunk
 * the moment it reads the answer, before this request's pool (which
 * closes the file) is gone.
 */

static void
ngx_http_registry_upload_unlock(ngx_http_registry_ctx_t *ctx)
{
    if (flock(ctx->upload_file.fd, LOCK_UN) == -1) {
        ngx_log_error(NGX_LOG_ALERT, ctx->store.log, ngx_errno,
                      "flock(\"%V\", LOCK_UN) failed",
                      &ctx->upload_file.name);
    }
}


/*
 * A failed monolithic upload's temporary file goes before the error is
 * sent, not when the pool goes, after the client may have looked.
 */

void
ngx_http_registry_upload_discard(ngx_http_request_t *r)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ctx == NULL || !ctx->temporary || ctx->published || ctx->discarded) {
        return;
    }

    if (ngx_delete_file(ctx->upload_file.name.data) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                      ngx_delete_file_n " \"%V\" failed",
                      &ctx->upload_file.name);
    }

    ctx->discarded = 1;
}


/*
 * A monolithic upload's temporary file: closed, and deleted unless it was
 * published or discarded already.  Runs before the pool's memory goes, so
 * the ctx is still there.
 */

static void
ngx_http_registry_upload_cleanup(void *data)
{
    ngx_http_registry_ctx_t  *ctx = data;

    if (ngx_close_file(ctx->upload_file.fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, ctx->store.log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed",
                      &ctx->upload_file.name);
    }

    if (!ctx->published
        && !ctx->discarded
        && ngx_delete_file(ctx->upload_file.name.data) == NGX_FILE_ERROR)
    {
        ngx_log_error(NGX_LOG_CRIT, ctx->store.log, ngx_errno,
                      ngx_delete_file_n " \"%V\" failed",
                      &ctx->upload_file.name);
    }
}
