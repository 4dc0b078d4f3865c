
/*
 * ngx_http_registry_module: the blob upload endpoints.
 *
 * POST opens a session (or mounts a blob, or takes a whole blob with
 * ?digest=), PATCH appends a chunk, PUT appends an optional last chunk
 * and commits, GET tells where a session stands, DELETE cancels.  Each
 * parses and checks what it can before touching the store, then runs the
 * store's upload operations (store_upload.c) as tasks off the event loop,
 * and answers once: the session is saved or undone before the answer
 * goes, so a client that reads it may go on at once, on any worker.
 *
 * Bodies are streamed (body.c): each buffer is written and hashed as it
 * arrives, by a thread of registry_thread_pool when it is big enough to
 * be worth the hand-over.  A request that ends without saving, for any
 * reason (an error, a client gone), cuts the session back to its last
 * saved chunk, or drops a monolithic upload's file.
 */


#include "ngx_http_registry.h"


/*
 * Buffers smaller than this hash in less time than a hand-over to a
 * thread takes (client_body_buffer_size decides how big they get).
 */
#define NGX_HTTP_REGISTRY_THREAD_MIN   (64 * 1024)


static ngx_int_t ngx_http_registry_upload_args(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_upload_refuse(ngx_http_registry_ctx_t *ctx,
    ngx_http_registry_err_e code, const char *detail);
static ngx_int_t ngx_http_registry_upload_algorithm(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_upload_mountable(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_mount_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_create_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_upload_started(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_upload_monolithic(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_upload_expect(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_open_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_upload_opened(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_upload_range(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_upload_receive(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_upload_chunk(ngx_http_request_t *r,
    u_char *data, size_t len);
static ngx_int_t ngx_http_registry_append_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_upload_appended(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_upload_done(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_save_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_upload_saved(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_commit_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_upload_committed(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_cancel_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_upload_cancelled(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_upload_fail(ngx_http_request_t *r,
    ngx_http_registry_err_e code, const char *detail);
static ngx_int_t ngx_http_registry_abort_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_upload_aborted(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_upload_headers(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_upload_hold(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static void ngx_http_registry_upload_cleanup(void *data);
static ngx_int_t ngx_http_registry_leftover_work(ngx_http_registry_op_t *op,
    void *data);
static void ngx_http_registry_leftover_done(ngx_http_registry_detached_t *d);


/* POST /v2/<name>/blobs/uploads/[?digest=|?mount=&from=|?digest-algorithm=] */

ngx_int_t
ngx_http_registry_upload_start(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_http_registry_ctx_t    *ctx;
    ngx_http_registry_work_pt   work;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    ctx->upload.name = ctx->route.name;
    ctx->upload.data.fd = NGX_INVALID_FILE;

    rc = ngx_http_registry_upload_args(r, ctx);

    if (rc == NGX_DECLINED) {
        return ngx_http_registry_send_fault(r, &ctx->fault);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->finish) {
        return ngx_http_registry_upload_monolithic(r, ctx);
    }

    work = ngx_http_registry_upload_mountable(r, ctx)
           ? ngx_http_registry_mount_work : ngx_http_registry_create_work;

    return ngx_http_registry_task_start(r, work, ctx,
                                        ngx_http_registry_upload_started);
}


/*
 * ?mount= (with ?from=), ?digest= (a monolithic upload), and the session's
 * algorithm, all checked before the store is touched.  A mount that
 * cannot be done starts a session, as the spec asks, so ?digest= beside
 * ?mount= only matters then.  NGX_DECLINED: invalid, ctx->fault says why.
 */

static ngx_int_t
ngx_http_registry_upload_args(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    ngx_int_t  rc;
    ngx_str_t  value;

    rc = ngx_http_registry_arg(r, "mount", &value);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        if (ngx_http_registry_parse_digest(&value, &ctx->expected) != NGX_OK) {
            return ngx_http_registry_upload_refuse(ctx,
                                             NGX_HTTP_REGISTRY_DIGEST_INVALID,
                                             "invalid mount parameter");
        }

        ctx->digest = ctx->expected.text;

        rc = ngx_http_registry_arg(r, "from", &ctx->from);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK && ngx_http_registry_valid_name(&ctx->from) != NGX_OK)
        {
            return ngx_http_registry_upload_refuse(ctx,
                                               NGX_HTTP_REGISTRY_NAME_INVALID,
                                               "invalid from parameter");
        }

        if (rc == NGX_DECLINED) {
            ngx_str_null(&ctx->from);
        }

        return ngx_http_registry_upload_algorithm(r, ctx);
    }

    rc = ngx_http_registry_upload_expect(r, ctx);

    if (rc == NGX_ERROR) {
        return ngx_http_registry_upload_refuse(ctx,
                                             NGX_HTTP_REGISTRY_DIGEST_INVALID,
                                             "invalid digest parameter");
    }

    ctx->finish = (rc == NGX_OK);

    return ngx_http_registry_upload_algorithm(r, ctx);
}


/* why a request is refused before the store is touched: NGX_DECLINED */

static ngx_int_t
ngx_http_registry_upload_refuse(ngx_http_registry_ctx_t *ctx,
    ngx_http_registry_err_e code, const char *detail)
{
    ctx->fault.code = code;
    ctx->fault.errnum = 0;
    ctx->fault.detail = detail;

    return NGX_DECLINED;
}


/*
 * The algorithm the upload hashes with: the ?digest= one for a
 * monolithic upload, else ?digest-algorithm=, else sha256.
 */

static ngx_int_t
ngx_http_registry_upload_algorithm(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    ngx_int_t  rc, alg;
    ngx_str_t  value;

    ctx->upload.state.alg = NGX_HTTP_REGISTRY_SHA256;

    if (ctx->finish) {
        ctx->upload.state.alg = ctx->expected.alg;
        return NGX_OK;
    }

    rc = ngx_http_registry_arg(r, "digest-algorithm", &value);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        alg = ngx_http_registry_alg_by_name(&value);

        if (alg == NGX_ERROR) {
            return ngx_http_registry_upload_refuse(ctx,
                                             NGX_HTTP_REGISTRY_DIGEST_INVALID,
                                             "unsupported digest algorithm");
        }

        ctx->upload.state.alg = alg;
    }

    return NGX_OK;
}


/*
 * A mount is tried with ?from= (the router checked the user may pull it),
 * or without it as registry_auto_mount allows: "anonymous" only for
 * requests without credentials, where a blob of a repository a client may
 * not read cannot be at stake, and under registry_access rules only for a
 * user who may pull every repository (201 for a mount says the store
 * holds the blob).
 */

static ngx_int_t
ngx_http_registry_upload_mountable(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    ngx_http_registry_loc_conf_t  *rlcf;

    if (ctx->expected.text.len == 0 || ctx->finish) {
        return 0;
    }

    if (ctx->from.data) {
        return 1;
    }

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    return (rlcf->auto_mount == NGX_HTTP_REGISTRY_AUTO_MOUNT_ON
            || (rlcf->auto_mount == NGX_HTTP_REGISTRY_AUTO_MOUNT_ANONYMOUS
                && r->headers_in.authorization == NULL))
           && ngx_http_registry_access_pulls_all(r);
}


/* a thread: the mount, or a session when it cannot be done */

static ngx_int_t
ngx_http_registry_mount_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_ctx_t *ctx = data;

    ngx_int_t  rc;

    rc = ngx_http_registry_store_blob_mount(op, &ctx->route.name,
                                            ctx->from.data ? &ctx->from : NULL,
                                            &ctx->expected);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    ctx->expected.text.len = 0;

    return ngx_http_registry_store_upload_create(op, &ctx->upload);
}


static ngx_int_t
ngx_http_registry_create_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_ctx_t *ctx = data;

    ctx->expected.text.len = 0;

    return ngx_http_registry_store_upload_create(op, &ctx->upload);
}


/* 201 for a mount, 202 and the new session's Location otherwise */

static ngx_int_t
ngx_http_registry_upload_started(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_str_t                      value;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_loc_conf_t  *rlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    if (rc != NGX_OK) {
        return ngx_http_registry_send_fault(r, &ctx->task.op.fault);
    }

    if (ctx->expected.text.len) {
        if (ngx_http_registry_location(r, "blobs", &ctx->expected.text)
            != NGX_OK
            || ngx_http_registry_digest_headers(r, &ctx->expected) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_registry_send_empty(r, NGX_HTTP_CREATED);
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
 * POST ?digest= with the body: an upload nobody else can see, so it needs
 * no session; the body goes to a temporary file of the store, renamed
 * into blobs/ if the digest matches.
 */

static ngx_int_t
ngx_http_registry_upload_monolithic(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    if (ngx_http_registry_upload_hold(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_registry_store_upload_temp(&ctx->op, &ctx->upload)
        != NGX_OK)
    {
        return ngx_http_registry_send_fault(r, &ctx->op.fault);
    }

    ctx->declared = -1;

    return ngx_http_registry_upload_receive(r, ctx);
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

    if (ngx_http_registry_parse_digest(&value, &ctx->expected) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->digest = ctx->expected.text;

    return NGX_OK;
}


/* GET <location>: where the session stands, read without taking it */

ngx_int_t
ngx_http_registry_upload_status(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_loc_conf_t  *rlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    ctx->upload.name = ctx->route.name;
    ctx->upload.id = ctx->route.reference;

    rc = ngx_http_registry_store_upload_status(&ctx->op, &ctx->upload,
                                               rlcf->upload_expire);
    if (rc != NGX_OK) {
        return ngx_http_registry_store_failed(r, &ctx->op, rc,
                                      NGX_HTTP_REGISTRY_BLOB_UPLOAD_UNKNOWN);
    }

    if (ngx_http_registry_upload_headers(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_send_empty(r, NGX_HTTP_NO_CONTENT);
}


/* PATCH <location>: a chunk */

ngx_int_t
ngx_http_registry_upload_patch(ngx_http_request_t *r)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ngx_http_registry_upload_hold(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_task_start(r, ngx_http_registry_open_work, ctx,
                                        ngx_http_registry_upload_opened);
}


/* PUT <location>?digest=: an optional last chunk, then the commit */

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

    return ngx_http_registry_upload_patch(r);
}


static ngx_int_t
ngx_http_registry_open_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_ctx_t *ctx = data;

    return ngx_http_registry_store_upload_open(op, &ctx->upload,
                                               ctx->op.store->upload_expire);
}


/*
 * The session is this request's: the chunk must start at its offset.  A
 * commit with another algorithm than the session's: with no byte hashed
 * yet, the hash starts anew; a sha256 session (the algorithm of one
 * opened without digest-algorithm, as clients need not send it) may end
 * with a sha512 digest, and is hashed again over its file, once; any
 * other mismatch is the client's contradiction, DIGEST_INVALID.
 */

static ngx_int_t
ngx_http_registry_upload_opened(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (rc != NGX_OK) {
        return ngx_http_registry_store_failed(r, &ctx->task.op, rc,
                                      NGX_HTTP_REGISTRY_BLOB_UPLOAD_UNKNOWN);
    }

    if (ctx->finish && ctx->expected.alg != ctx->upload.state.alg) {
        if (ctx->upload.state.offset == 0) {
            ctx->upload.state.alg = ctx->expected.alg;
            ngx_http_registry_hash_init(&ctx->upload.state.hash,
                                        ctx->expected.alg);

        } else if (ctx->upload.state.alg == NGX_HTTP_REGISTRY_SHA256) {
            ctx->upload.rehash = 1;

        } else {
            ngx_http_registry_store_upload_release(&ctx->upload,
                                                   r->connection->log);
            return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_DIGEST_INVALID,
                                           "digest algorithm differs from "
                                           "the one the upload was opened "
                                           "with");
        }
    }

    rc = ngx_http_registry_upload_range(r, ctx);

    if (rc != NGX_OK) {
        /* nothing written: letting go of the session is enough */
        ngx_http_registry_store_upload_release(&ctx->upload,
                                               r->connection->log);

        if (rc == NGX_ERROR
            || (ctx->fault.code == NGX_HTTP_REGISTRY_RANGE_INVALID
                && ngx_http_registry_upload_headers(r, ctx) != NGX_OK))
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_registry_send_fault(r, &ctx->fault);
    }

    return ngx_http_registry_upload_receive(r, ctx);
}


/*
 * Content-Range (parse.c) must start at the session's offset and agree with
 * Content-Length; a range no file can have is refused like one out of
 * order.  Without it the body is simply appended.  NGX_DECLINED: refused,
 * ctx->fault says why.
 */

static ngx_int_t
ngx_http_registry_upload_range(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    off_t       start, end;
    ngx_int_t   rc;
    ngx_str_t   value;

    ctx->declared = -1;

    if (ngx_http_registry_header_in(r, "Content-Range", &value) != NGX_OK) {
        return NGX_OK;
    }

    rc = ngx_http_registry_content_range(&value, &start, &end);

    if (rc == NGX_ERROR) {
        return ngx_http_registry_upload_refuse(ctx,
                                         NGX_HTTP_REGISTRY_BLOB_UPLOAD_INVALID,
                                         "malformed Content-Range");
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_registry_upload_refuse(ctx,
                                               NGX_HTTP_REGISTRY_RANGE_INVALID,
                                               "Content-Range beyond any "
                                               "file");
    }

    if (start != (off_t) ctx->upload.state.offset || end < start) {
        return ngx_http_registry_upload_refuse(ctx,
                                               NGX_HTTP_REGISTRY_RANGE_INVALID,
                                               "chunk does not start at the "
                                               "upload's next byte");
    }

    ctx->declared = end - start + 1;

    if (r->headers_in.content_length_n >= 0
        && r->headers_in.content_length_n != ctx->declared)
    {
        return ngx_http_registry_upload_refuse(ctx,
                                         NGX_HTTP_REGISTRY_BLOB_UPLOAD_INVALID,
                                         "Content-Length disagrees with "
                                         "Content-Range");
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_upload_receive(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    return ngx_http_registry_read_body(r, ngx_http_registry_upload_chunk,
                                       ngx_http_registry_upload_done);
}


/*
 * A buffer of the body: to a thread when it is big enough (and not an
 * HTTP/2 stream's, whose buffer the connection fills as frames arrive),
 * else written and hashed here.
 */

static ngx_int_t
ngx_http_registry_upload_chunk(ngx_http_request_t *r, u_char *data,
    size_t len)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ctx->declared >= 0 && ctx->received + (off_t) len > ctx->declared) {
        return ngx_http_registry_upload_fail(r,
                                        NGX_HTTP_REGISTRY_BLOB_UPLOAD_INVALID,
                                        "body is longer than Content-Range");
    }

    if (len >= NGX_HTTP_REGISTRY_THREAD_MIN
        && ngx_http_registry_task_threaded(r)
#if (NGX_HTTP_V2)
        && r->stream == NULL
#endif
       )
    {
        ctx->pending = data;
        ctx->pending_len = len;
        ctx->upload.writeback = 1;

        if (ngx_http_registry_task_run(r, ngx_http_registry_append_work, ctx,
                                       ngx_http_registry_upload_appended)
            != NGX_OK)
        {
            return ngx_http_registry_upload_fail(r,
                                                NGX_HTTP_REGISTRY_UNAVAILABLE,
                                                "no thread for the upload");
        }

        return NGX_AGAIN;
    }

    ctx->upload.writeback = 0;

    if (ngx_http_registry_store_upload_append(&ctx->op, &ctx->upload, data,
                                              len)
        != NGX_OK)
    {
        ctx->fault = ctx->op.fault;
        return ngx_http_registry_upload_fail(r, ctx->fault.code,
                                             ctx->fault.detail);
    }

    return NGX_OK;
}


/* in a thread: the buffer written and hashed */

static ngx_int_t
ngx_http_registry_append_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_ctx_t *ctx = data;

    return ngx_http_registry_store_upload_append(op, &ctx->upload,
                                                 ctx->pending,
                                                 ctx->pending_len);
}


/* back from the thread: reading goes on, or ends with the error */

static ngx_int_t
ngx_http_registry_upload_appended(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (rc == NGX_OK) {
        ngx_http_registry_body_taken(r);
        return NGX_DONE;
    }

    ctx->fault = ctx->task.op.fault;

    ngx_http_registry_body_stop(r, ngx_http_registry_upload_fail(r,
                                                         ctx->fault.code,
                                                         ctx->fault.detail));
    return NGX_DONE;
}


/* the whole body is in: a chunk is saved, a last one committed */

static ngx_int_t
ngx_http_registry_upload_done(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_http_registry_ctx_t   *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ctx->declared >= 0 && ctx->received != ctx->declared) {
        return ngx_http_registry_upload_fail(r,
                                        NGX_HTTP_REGISTRY_BLOB_UPLOAD_INVALID,
                                        "body is shorter than Content-Range");
    }

    rc = ctx->finish
         ? ngx_http_registry_task_run(r, ngx_http_registry_commit_work, ctx,
                                      ngx_http_registry_upload_committed)
         : ngx_http_registry_task_run(r, ngx_http_registry_save_work, ctx,
                                      ngx_http_registry_upload_saved);

    if (rc != NGX_OK) {
        return ngx_http_registry_upload_fail(r, NGX_HTTP_REGISTRY_UNAVAILABLE,
                                             "no thread for the upload");
    }

    return NGX_DONE;
}


static ngx_int_t
ngx_http_registry_save_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_ctx_t *ctx = data;

    return ngx_http_registry_store_upload_save(op, &ctx->upload);
}


static ngx_int_t
ngx_http_registry_upload_saved(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (rc != NGX_OK) {
        return ngx_http_registry_send_fault(r, &ctx->task.op.fault);
    }

    ctx->kept = 1;

    if (ngx_http_registry_upload_headers(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_send_empty(r, NGX_HTTP_ACCEPTED);
}


static ngx_int_t
ngx_http_registry_commit_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_ctx_t *ctx = data;

    return ngx_http_registry_store_upload_commit(op, &ctx->upload,
                                                 &ctx->expected);
}


static ngx_int_t
ngx_http_registry_upload_committed(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    /* published or undone: either way nothing is left to drop */
    ctx->kept = 1;

    if (rc != NGX_OK) {
        return ngx_http_registry_send_fault(r, &ctx->task.op.fault);
    }

    if (ngx_http_registry_location(r, "blobs", &ctx->expected.text) != NGX_OK
        || ngx_http_registry_digest_headers(r, &ctx->expected) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_send_empty(r, NGX_HTTP_CREATED);
}


/* DELETE <location>: cancel, under the session's lock */

ngx_int_t
ngx_http_registry_upload_cancel(ngx_http_request_t *r)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ngx_http_registry_upload_hold(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_task_start(r, ngx_http_registry_cancel_work, ctx,
                                        ngx_http_registry_upload_cancelled);
}


static ngx_int_t
ngx_http_registry_cancel_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_ctx_t *ctx = data;

    return ngx_http_registry_store_upload_cancel(op, &ctx->upload);
}


static ngx_int_t
ngx_http_registry_upload_cancelled(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    ctx->kept = 1;

    if (rc != NGX_OK) {
        return ngx_http_registry_store_failed(r, &ctx->task.op, rc,
                                      NGX_HTTP_REGISTRY_BLOB_UPLOAD_UNKNOWN);
    }

    return ngx_http_registry_send_empty(r, NGX_HTTP_NO_CONTENT);
}


/*
 * An error while the body is read: what the request wrote is dropped
 * (the session cut back to its last chunk, a monolithic file removed)
 * before the answer goes, so the space is free and the session can go on
 * the moment the client reads it.  Returns as a body callback does.
 */

static ngx_int_t
ngx_http_registry_upload_fail(ngx_http_request_t *r,
    ngx_http_registry_err_e code, const char *detail)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    ctx->fault.code = code;
    ctx->fault.detail = detail;
    ctx->kept = 1;

    if (ngx_http_registry_task_run(r, ngx_http_registry_abort_work, ctx,
                                   ngx_http_registry_upload_aborted)
        != NGX_OK)
    {
        ctx->kept = 0;          /* the cleanup drops it */
        return NGX_DECLINED;
    }

    return NGX_DONE;
}


static ngx_int_t
ngx_http_registry_abort_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_ctx_t *ctx = data;

    return ngx_http_registry_store_upload_abort(op, &ctx->upload);
}


static ngx_int_t
ngx_http_registry_upload_aborted(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ctx->fault.code == NGX_HTTP_REGISTRY_BLOB_UPLOAD_INVALID
        && ctx->upload.id.len
        && ngx_http_registry_upload_headers(r, ctx) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_send_fault(r, &ctx->fault);
}


/* Location, Docker-Upload-UUID and the Range saved so far */

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
                            ctx->upload.state.offset
                            ? ctx->upload.state.offset - 1 : 0)
                - range.data;

    if (ngx_http_registry_location(r, "blobs/uploads", &ctx->upload.id)
        != NGX_OK
        || ngx_http_registry_add_header(r, "Docker-Upload-UUID",
                                        &ctx->upload.id)
           == NULL
        || ngx_http_registry_add_header(r, "Range", &range) == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The upload this request works on, and its cleanup: the data file is
 * closed (which releases the session's lock) when the request goes, and
 * what it wrote without saving is dropped first, off the event loop.
 */

static ngx_int_t
ngx_http_registry_upload_hold(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    ctx->upload.name = ctx->route.name;
    ctx->upload.data.fd = NGX_INVALID_FILE;

    if (ctx->route.kind == NGX_HTTP_REGISTRY_ROUTE_UPLOAD) {
        ctx->upload.id = ctx->route.reference;
    }

    cln->handler = ngx_http_registry_upload_cleanup;
    cln->data = ctx;

    return NGX_OK;
}


typedef struct {
    ngx_http_registry_detached_t  task;
    ngx_http_registry_upload_t    upload;
} ngx_http_registry_leftover_t;


static void
ngx_http_registry_upload_cleanup(void *data)
{
    ngx_http_registry_ctx_t *ctx = data;

    u_char                        *p;
    ngx_pool_t                    *pool;
    ngx_http_registry_upload_t    *up;
    ngx_http_registry_leftover_t  *lo;

    up = &ctx->upload;

    if (up->data.fd == NGX_INVALID_FILE) {
        return;
    }

    if (ctx->kept || (up->id.len && up->written == 0)) {
        ngx_http_registry_store_upload_release(up, ctx->op.log);
        return;
    }

    /* the leftover outlives the request: a pool of its own */

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, ngx_cycle->log);
    lo = pool ? ngx_pcalloc(pool, sizeof(ngx_http_registry_leftover_t))
              : NULL;
    p = lo ? ngx_pnalloc(pool, up->data.path.len + 1) : NULL;

    if (p == NULL) {
        ngx_http_registry_store_upload_release(up, ctx->op.log);
        if (pool) {
            ngx_destroy_pool(pool);
        }
        return;
    }

    lo->upload = *up;
    lo->upload.data.path.data = p;
    ngx_memcpy(p, up->data.path.data, up->data.path.len + 1);

    lo->task.op.store = ctx->op.store;
    lo->task.op.pool = pool;
    lo->task.op.log = ngx_cycle->log;
    lo->task.work = ngx_http_registry_leftover_work;
    lo->task.data = lo;
    lo->task.done = ngx_http_registry_leftover_done;

    up->data.fd = NGX_INVALID_FILE;

    if (ngx_http_registry_task_detach(&lo->task, ctx->conf->thread_pool, pool)
        != NGX_OK)
    {
        (void) ngx_http_registry_leftover_work(&lo->task.op, lo);
        ngx_http_registry_leftover_done(&lo->task);
    }
}


static ngx_int_t
ngx_http_registry_leftover_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_leftover_t *lo = data;

    (void) ngx_http_registry_store_upload_abort(op, &lo->upload);

    ngx_http_registry_store_upload_release(&lo->upload, op->log);

    return NGX_OK;
}


static void
ngx_http_registry_leftover_done(ngx_http_registry_detached_t *d)
{
    ngx_destroy_pool(d->op.pool);
}
