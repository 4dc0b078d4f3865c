/*
 * ngx_http_registry_module: the pull-through cache's blobs (mirror.c
 * routes the pull, mirror_fetch.c makes the requests to the upstream).
 *
 * A blob that comes with 200 is hashed into a temporary file of the store
 * as it arrives, in a thread, and passed on to the client (mirror_fetch.c's
 * body filter calls blob_body()); the buffer that completes it goes only
 * once it hashed to its digest and was published.  However many clients
 * ask at the same moment, one request fetches it: the others follow,
 * reading the growing file, on this host through the slots of a
 * shared-memory table, across hosts through the leader's lease file
 * (store_flight.c).  The pulls of cached blobs and manifests are noted in
 * the same shared memory, for eviction (mirror_pulled()).
 */


#include "ngx_http_registry_mirror_cache.h"


static ngx_int_t ngx_http_registry_blob_adopt_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_blob_adopted(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_blob_fetched(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_blob_publish_work(
    ngx_http_registry_op_t *op, void *data);
static ngx_int_t ngx_http_registry_blob_published(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_blob_fetch(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_blob_start(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_http_registry_fetch_t *f);
static ngx_int_t ngx_http_registry_blob_body(ngx_http_request_t *sr,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_chain_t *in, ngx_chain_t **out);
static ngx_int_t ngx_http_registry_blob_inline(ngx_http_request_t *sr,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_chain_t *in, ngx_chain_t **out);
static ngx_int_t ngx_http_registry_blob_take(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_buf_t *b);
static ngx_int_t ngx_http_registry_blob_check(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_blob_hold(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_buf_t *b);
static ngx_int_t ngx_http_registry_blob_spool(ngx_http_request_t *sr,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_chain_t *in, ngx_chain_t **out);
static ngx_int_t ngx_http_registry_blob_copy(ngx_http_request_t *sr,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_chain_t **out);
static ngx_buf_t *ngx_http_registry_blob_room(ngx_http_request_t *sr,
    ngx_http_registry_mirror_ctx_t *mctx);
static void ngx_http_registry_blob_drop(ngx_http_request_t *sr,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_blob_write(ngx_http_request_t *sr,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_blob_write_work(ngx_http_registry_op_t *op,
    void *data);
static void ngx_http_registry_blob_written(ngx_http_registry_detached_t *d);
static void ngx_http_registry_blob_cleanup(void *data);
static ngx_int_t ngx_http_registry_blob_headers(ngx_http_request_t *r,
    off_t length);
static ngx_int_t ngx_http_registry_flight_join(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_uint_t ngx_http_registry_flight_alive(
    ngx_http_registry_flight_t *fl);
static void ngx_http_registry_flight_file(
    ngx_http_registry_mirror_ctx_t *mctx, ngx_str_t *id, off_t length,
    ngx_uint_t remote);
static void ngx_http_registry_flight_land(ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_flight_wait(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static void ngx_http_registry_flight_poll(ngx_event_t *ev);
static ngx_int_t ngx_http_registry_flight_look(
    ngx_http_registry_mirror_ctx_t *mctx, ngx_str_t *id);
static void ngx_http_registry_flight_cleanup(void *data);
static ngx_int_t ngx_http_registry_lease_take(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_lease_take_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_lease_taken(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_lease_wait(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static void ngx_http_registry_lease_poll(ngx_event_t *ev);
static ngx_int_t ngx_http_registry_lease_look_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_lease_looked(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_lease_follow(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_keeper_start(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static void ngx_http_registry_keeper_file(ngx_http_registry_keeper_t *k,
    ngx_str_t *id, off_t length);
static void ngx_http_registry_keeper_release(ngx_http_registry_keeper_t *k);
static void ngx_http_registry_keeper_tick(ngx_event_t *ev);
static ngx_int_t ngx_http_registry_keeper_post(ngx_http_registry_keeper_t *k,
    ngx_http_registry_work_pt work);
static ngx_int_t ngx_http_registry_keeper_refresh_work(
    ngx_http_registry_op_t *op, void *data);
static ngx_int_t ngx_http_registry_keeper_drop_work(
    ngx_http_registry_op_t *op, void *data);
static void ngx_http_registry_keeper_done(ngx_http_registry_detached_t *d);
static ngx_int_t ngx_http_registry_follow_start(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_str_t *id);
static ngx_int_t ngx_http_registry_follow_send(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_uint_t last);
static ngx_int_t ngx_http_registry_follow_hash_start(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, off_t end);
static ngx_int_t ngx_http_registry_follow_hash_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_follow_hashed(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_follow_hash(ngx_http_registry_op_t *op,
    ngx_http_registry_mirror_ctx_t *mctx, off_t end);
static ngx_int_t ngx_http_registry_follow_hash_rest(ngx_http_registry_op_t *op,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_follow_out(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, off_t end, ngx_uint_t last);
static ngx_int_t ngx_http_registry_follow_flush(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_registry_follow_write(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_follow_end(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_follow_check_work(
    ngx_http_registry_op_t *op, void *data);
static ngx_int_t ngx_http_registry_followed(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_http_registry_follow_cleanup(void *data);


/* ---- blobs ---- */

/*
 * A blob the repository holds is a local blob.  One the store holds for
 * another repository is linked; else it is fetched and streamed.
 */

ngx_int_t
ngx_http_registry_mirror_blob(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    ngx_int_t                 rc;
    ngx_str_t                 data;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    rc = ngx_http_registry_store_blob_find(&ctx->op, &ctx->route.name,
                                           &ctx->route.digest, &data);

    if (rc == NGX_OK) {
        mctx->cache = NGX_HTTP_REGISTRY_CACHE_HIT;
        ngx_http_registry_mirror_pulled(mctx, &ctx->route.digest,
                                        NGX_HTTP_REGISTRY_PULL_BLOB);
        return ngx_http_registry_blob_get(r);
    }

    if (rc == NGX_ERROR) {
        return ngx_http_registry_store_failed(r, &ctx->op, rc,
                                              NGX_HTTP_REGISTRY_BLOB_UNKNOWN);
    }

    return ngx_http_registry_task_start(r, ngx_http_registry_blob_adopt_work,
                                        ctx, ngx_http_registry_blob_adopted);
}


static ngx_int_t
ngx_http_registry_blob_adopt_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_ctx_t *ctx = data;

    return ngx_http_registry_store_blob_adopt(op, &ctx->route.name,
                                              &ctx->route.digest);
}


static ngx_int_t
ngx_http_registry_blob_adopted(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_ctx_t         *ctx;
    ngx_http_registry_mirror_ctx_t  *mctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    mctx = ngx_http_get_module_ctx(r, ngx_http_registry_mirror_module);

    /* the adoption wrote or retimed the layer link: that is the pull */

    if (rc == NGX_OK) {
        mctx->cache = NGX_HTTP_REGISTRY_CACHE_HIT;
        return ngx_http_registry_blob_get(r);
    }

    if (rc != NGX_DECLINED) {
        return ngx_http_registry_send_fault(r, &ctx->task.op.fault);
    }

    mctx->cache = NGX_HTTP_REGISTRY_CACHE_MISS;

    if (r->method == NGX_HTTP_GET) {
        if (ngx_http_registry_flight_join(r, mctx) == NGX_BUSY) {
            return ngx_http_registry_flight_wait(r, mctx);
        }

        if (mctx->flight) {
            return ngx_http_registry_lease_take(r, mctx);
        }
    }

    return ngx_http_registry_blob_fetch(r, mctx);
}


/* the blob from the upstream: a HEAD's length, or a GET's bytes */

static ngx_int_t
ngx_http_registry_blob_fetch(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    ngx_str_t                 path;
    ngx_http_registry_ctx_t  *ctx;

    ctx = mctx->owner;

    path.len = sizeof("blobs/") - 1 + ctx->route.digest.text.len;
    path.data = ngx_pnalloc(r->pool, path.len);
    if (path.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ngx_cpymem(path.data, "blobs/", sizeof("blobs/") - 1),
               ctx->route.digest.text.data, ctx->route.digest.text.len);

    mctx->stream_start = ngx_http_registry_blob_start;
    mctx->stream_body = ngx_http_registry_blob_body;

    return ngx_http_registry_fetch(r, mctx, r->method == NGX_HTTP_HEAD,
                                   r->method != NGX_HTTP_HEAD, &path,
                                   ngx_http_registry_blob_fetched);
}


/*
 * The fetch is over.  Streamed and verified: published, then the
 * client's answer ends.  A HEAD: the upstream's length.  Else an error,
 * the client's headers not sent yet.
 */

static ngx_int_t
ngx_http_registry_blob_fetched(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    ngx_int_t                   rc;
    ngx_http_registry_fetch_t  *f;

    f = &mctx->fetch;

    if (f->streaming) {
        return ngx_http_registry_task_start(r,
                                        ngx_http_registry_blob_publish_work,
                                        mctx,
                                        ngx_http_registry_blob_published);
    }

    if (f->status != NGX_HTTP_OK || !mctx->head) {
        return ngx_http_registry_upstream_failed(r, mctx,
                                               NGX_HTTP_REGISTRY_BLOB_UNKNOWN);
    }

    rc = ngx_http_registry_blob_headers(r, f->length);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    return ngx_http_send_special(r, NGX_HTTP_LAST);
}


/* a blob's 200 and its headers, its bytes to follow (length -1: chunked) */

static ngx_int_t
ngx_http_registry_blob_headers(ngx_http_request_t *r, off_t length)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = length;
    ngx_str_set(&r->headers_out.content_type, "application/octet-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    if (ngx_http_registry_digest_headers(r, &ctx->route.digest) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_send_header(r);
}


static ngx_int_t
ngx_http_registry_blob_publish_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_mirror_ctx_t *mctx = data;

    ngx_http_registry_ctx_t  *ctx;

    ctx = mctx->owner;

    return ngx_http_registry_store_blob_publish(op, &ctx->route.name,
                                                &mctx->temp,
                                                &ctx->route.digest);
}


/* published: the bytes held back, and the answer's end */

static ngx_int_t
ngx_http_registry_blob_published(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_chain_t                      out;
    ngx_http_registry_mirror_ctx_t  *mctx;

    mctx = ngx_http_get_module_ctx(r, ngx_http_registry_mirror_module);

    ngx_http_registry_flight_land(mctx);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "registry upstream: a fetched blob could not be kept");
        return NGX_ERROR;
    }

    if (mctx->held == NULL || mctx->held->last == mctx->held->pos) {
        return ngx_http_send_special(r, NGX_HTTP_LAST);
    }

    mctx->held->last_buf = 1;

    out.buf = mctx->held;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * A blob's 200 arrived: its temporary file (named in the flight's slot,
 * for the followers), its hash, and the client's headers, sent now so
 * that the bytes follow as they come.
 */

static ngx_int_t
ngx_http_registry_blob_start(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_http_registry_fetch_t *f)
{
    ngx_str_t                      id;
    ngx_pool_cleanup_t            *cln;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_loc_conf_t  *rlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    mctx->op = ctx->op;
    mctx->op.links = NULL;

    if (ngx_http_registry_store_blob_incoming(&mctx->op, &mctx->temp)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_registry_blob_cleanup;
    cln->data = mctx;

    ngx_http_registry_hash_init(&mctx->hash, ctx->route.digest.alg);
    mctx->received = 0;
    f->streaming = 1;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    mctx->spooled = (rlcf->thread_pool != NULL && f->length > 0);

    ngx_http_registry_path_temp_id(&mctx->temp.path, &id);
    ngx_http_registry_flight_file(mctx, &id, f->length, 0);

    return ngx_http_registry_blob_headers(r, f->length);
}


/*
 * The streamed blob's buffers, from the subrequest's body filter: in
 * *out what goes on to the client.  With a thread pool they are copied
 * and a thread writes and hashes the copies; without one, the event loop
 * does.  A blob whose length the upstream did not say (chunked) is done
 * in the event loop too: its end is known only as the subrequest ends,
 * too late to wait for a task.
 */

static ngx_int_t
ngx_http_registry_blob_body(ngx_http_request_t *sr,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_chain_t *in, ngx_chain_t **out)
{
    ngx_chain_t  *cl;

    *out = NULL;

    for (cl = in; cl; cl = cl->next) {
        if (cl->buf->in_file) {
            ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                          "registry upstream: a blob buffered to a file: "
                          "the upstream location needs "
                          "\"proxy_buffering off\"");
            return NGX_ERROR;
        }
    }

    if (mctx->spooled) {
        return ngx_http_registry_blob_spool(sr, mctx, in, out);
    }

    return ngx_http_registry_blob_inline(sr, mctx, in, out);
}


static ngx_int_t
ngx_http_registry_blob_inline(ngx_http_request_t *sr,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_chain_t *in, ngx_chain_t **out)
{
    ngx_int_t                   rc;
    ngx_chain_t                *cl, **ll;
    ngx_http_registry_fetch_t  *f;

    f = &mctx->fetch;
    ll = out;

    for (cl = in; cl; cl = cl->next) {

        if (f->verified) {
            cl->buf->pos = cl->buf->last;    /* nothing follows a blob */
            continue;
        }

        rc = ngx_http_registry_blob_take(sr->main, mctx, cl->buf);

        if (rc == NGX_DECLINED) {
            /* the last bytes are held back: the client sees a cut blob */
            for ( /* void */ ; cl; cl = cl->next) {
                cl->buf->pos = cl->buf->last;
            }

            return NGX_ERROR;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        if (f->verified) {
            if (ngx_http_registry_blob_hold(sr->main, mctx, cl->buf)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        *ll = ngx_alloc_chain_link(sr->pool);
        if (*ll == NULL) {
            return NGX_ERROR;
        }

        (*ll)->buf = cl->buf;
        ll = &(*ll)->next;
    }

    *ll = NULL;

    return NGX_OK;
}


/*
 * One buffer of a streamed blob, in the event loop: hashed, appended to
 * the blob's temporary file in the store (to the page cache, as nginx's
 * proxy writes its temp files), counted.  The buffer that completes the
 * blob is let through only once the hash matched: NGX_DECLINED when it
 * did not.
 */

static ngx_int_t
ngx_http_registry_blob_take(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_buf_t *b)
{
    size_t                      len;
    ngx_http_registry_fetch_t  *f;

    f = &mctx->fetch;

    len = b->last - b->pos;

    if (len) {
        ngx_http_registry_hash_update(&mctx->hash, b->pos, len);

        if (ngx_http_registry_store_blob_append(&mctx->op, &mctx->temp,
                                                b->pos, len, mctx->received)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        mctx->received += len;
    }

    if ((f->length >= 0 && mctx->received < f->length)
        || (f->length < 0 && !b->last_in_chain && !b->last_buf))
    {
        return NGX_OK;
    }

    return ngx_http_registry_blob_check(r, mctx);
}


/* all of it arrived: NGX_OK, verified; NGX_DECLINED: it hashed wrong */

static ngx_int_t
ngx_http_registry_blob_check(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    ngx_http_registry_digest_t  got;

    if (ngx_http_registry_hash_final(&mctx->hash, r->pool, &got) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!ngx_http_registry_digest_equal(&got, &mctx->owner->route.digest)) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "registry upstream: blob %V hashes to %V",
                      &mctx->owner->route.digest.text, &got.text);
        return NGX_DECLINED;
    }

    mctx->fetch.verified = 1;

    return NGX_OK;
}


/*
 * The buffer that completed a verified blob is copied and kept back: the
 * client gets its last bytes once the blob is published, so that a
 * client that has the blob finds it in the store.
 */

static ngx_int_t
ngx_http_registry_blob_hold(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_buf_t *b)
{
    size_t  len;

    len = b->last - b->pos;

    mctx->held = ngx_create_temp_buf(r->pool, ngx_max(len, 1));
    if (mctx->held == NULL) {
        return NGX_ERROR;
    }

    mctx->held->last = ngx_cpymem(mctx->held->last, b->pos, len);
    b->pos = b->last;

    return NGX_OK;
}


/* ---- the leader's writes, in a thread ---- */

/*
 * Each buffer of the upstream is copied into one of at most
 * NGX_HTTP_REGISTRY_SPOOL_BUFS buffers of our own, then goes on to the
 * client, and the upstream reuses it; a task writes and hashes the
 * copies, one task at a time, each taking all that was copied while the
 * last one ran.  With all copies taken, the upstream's buffers are held
 * (pending): nginx's upstream reads no more into a buffer not sent yet,
 * and the task's end calls the subrequest's writer, which passes them
 * here again.  The buffer holding the blob's last bytes is held until
 * the task that wrote them found the hash right (blob_check()): the
 * subrequest ends only after, with a verified blob.
 */

static ngx_int_t
ngx_http_registry_blob_spool(ngx_http_request_t *sr,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_chain_t *in, ngx_chain_t **out)
{
    ngx_chain_t  *cl, **ll;

    for (ll = &mctx->pending; *ll; ll = &(*ll)->next) { /* void */ }

    for (cl = in; cl; cl = cl->next) {
        *ll = ngx_alloc_chain_link(sr->pool);
        if (*ll == NULL) {
            return NGX_ERROR;
        }

        (*ll)->buf = cl->buf;
        ll = &(*ll)->next;
    }

    *ll = NULL;

    if (mctx->broken) {
        /* the last bytes are held back: the client sees a cut blob */
        ngx_http_registry_blob_drop(sr, mctx);
        return NGX_ERROR;
    }

    if (ngx_http_registry_blob_copy(sr, mctx, out) != NGX_OK) {
        return NGX_ERROR;
    }

    if (mctx->spool && mctx->writing == NULL) {
        return ngx_http_registry_blob_write(sr, mctx);
    }

    return NGX_OK;
}


/* the pending buffers copied, while there is room, into *out */

static ngx_int_t
ngx_http_registry_blob_copy(ngx_http_request_t *sr,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_chain_t **out)
{
    size_t       len, n;
    ngx_buf_t   *b, *s;
    ngx_chain_t *cl, **ll;

    ll = out;

    while (mctx->pending) {
        cl = mctx->pending;
        b = cl->buf;

        if (mctx->fetch.verified) {
            if (mctx->held == NULL
                && ngx_http_registry_blob_hold(sr->main, mctx, b) != NGX_OK)
            {
                return NGX_ERROR;
            }

            ngx_http_registry_blob_drop(sr, mctx);
            break;
        }

        len = b->last - b->pos;

        while (mctx->pending_off < len) {
            s = ngx_http_registry_blob_room(sr, mctx);
            if (s == NULL) {
                *ll = NULL;
                return mctx->broken ? NGX_ERROR : NGX_OK;
            }

            n = ngx_min((size_t) (s->end - s->last), len - mctx->pending_off);
            s->last = ngx_cpymem(s->last, b->pos + mctx->pending_off, n);
            mctx->pending_off += n;
            mctx->copied += n;
        }

        if (mctx->copied >= mctx->fetch.length && len) {
            break;              /* the last bytes: held until verified */
        }

        mctx->pending = cl->next;
        mctx->pending_off = 0;

        *ll = cl;
        ll = &cl->next;
    }

    *ll = NULL;

    return NGX_OK;
}


/* the copy with room left, or a new one; NULL: all are taken */

static ngx_buf_t *
ngx_http_registry_blob_room(ngx_http_request_t *sr,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    ngx_chain_t  *cl;

    cl = mctx->spool_tail;

    if (cl && cl->buf->last < cl->buf->end) {
        return cl->buf;
    }

    if (mctx->spool_free) {
        cl = mctx->spool_free;
        mctx->spool_free = cl->next;

    } else if (mctx->spool_bufs < NGX_HTTP_REGISTRY_SPOOL_BUFS) {
        cl = ngx_alloc_chain_link(sr->pool);
        if (cl == NULL) {
            mctx->broken = 1;
            return NULL;
        }

        cl->buf = ngx_create_temp_buf(sr->pool, NGX_HTTP_REGISTRY_SPOOL_SIZE);
        if (cl->buf == NULL) {
            mctx->broken = 1;
            return NULL;
        }

        mctx->spool_bufs++;

    } else {
        return NULL;
    }

    cl->next = NULL;

    if (mctx->spool_tail) {
        mctx->spool_tail->next = cl;

    } else {
        mctx->spool = cl;
    }

    mctx->spool_tail = cl;

    return cl->buf;
}


/* the pending buffers, consumed: nothing more of them goes */

static void
ngx_http_registry_blob_drop(ngx_http_request_t *sr,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    ngx_chain_t  *cl;

    while (mctx->pending) {
        cl = mctx->pending;
        mctx->pending = cl->next;

        cl->buf->pos = cl->buf->last;
        ngx_free_chain(sr->pool, cl);
    }

    mctx->pending_off = 0;
}


/*
 * The copies go to a task.  The subrequest waits for it as for nginx's
 * own thread reads (ngx_http_copy_filter_module.c): blocked, so that a
 * request ended meanwhile lives on until the task is back.
 */

static ngx_int_t
ngx_http_registry_blob_write(ngx_http_request_t *sr,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    ngx_http_registry_detached_t  *d;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(sr->main, ngx_http_registry_module);

    mctx->writing = mctx->spool;
    mctx->spool = NULL;
    mctx->spool_tail = NULL;

    d = &mctx->writer;

    d->op = mctx->op;
    d->op.log = &mctx->writer_log;
    d->work = ngx_http_registry_blob_write_work;
    d->data = mctx;
    d->done = ngx_http_registry_blob_written;

    mctx->writer_log = *sr->connection->log;
    mctx->writer_log.handler = NULL;
    mctx->writer_log.data = NULL;

    if (ngx_http_registry_task_detach(d, rlcf->thread_pool, sr->pool)
        != NGX_OK)
    {
        mctx->writing = NULL;
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "registry upstream: no thread to write a blob");
        return NGX_ERROR;
    }

    mctx->fetcher = sr;
    sr->main->blocked++;

    ngx_http_registry_guard_start(&mctx->writer_guard, sr->connection->log);

    return NGX_OK;
}


/* in a thread: the copies, hashed and appended to the temporary file */

static ngx_int_t
ngx_http_registry_blob_write_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_mirror_ctx_t *mctx = data;

    size_t        len;
    ngx_chain_t  *cl;

    for (cl = mctx->writing; cl; cl = cl->next) {
        len = cl->buf->last - cl->buf->pos;

        ngx_http_registry_hash_update(&mctx->hash, cl->buf->pos, len);

        if (ngx_http_registry_store_blob_append(op, &mctx->temp,
                                                cl->buf->pos, len,
                                                mctx->received)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        mctx->received += len;
    }

    return NGX_OK;
}


/*
 * Back in the event loop: the copies are free again, the hash checked
 * once all is written, the next copies go, and the subrequest's writer
 * passes the buffers held (ngx_http_copy_thread_event_handler() comes
 * back the same way).
 */

static void
ngx_http_registry_blob_written(ngx_http_registry_detached_t *d)
{
    ngx_http_registry_mirror_ctx_t *mctx = d->data;

    ngx_chain_t         *cl;
    ngx_connection_t    *c;
    ngx_http_request_t  *sr;

    sr = mctx->fetcher;
    c = sr->connection;

    ngx_http_set_log_request(c->log, sr);

    sr->main->blocked--;

    ngx_http_registry_guard_stop(&mctx->writer_guard);

    while (mctx->writing) {
        cl = mctx->writing;
        mctx->writing = cl->next;

        cl->buf->pos = cl->buf->start;
        cl->buf->last = cl->buf->start;
        cl->next = mctx->spool_free;
        mctx->spool_free = cl;
    }

    if (d->rc != NGX_OK) {
        mctx->broken = 1;

    } else if (mctx->received == mctx->fetch.length) {
        mctx->broken = (ngx_http_registry_blob_check(sr->main, mctx)
                        != NGX_OK);
    }

    if (sr->done) {
        c->write->handler(c->write);
        return;
    }

    if (mctx->spool && !mctx->broken
        && ngx_http_registry_blob_write(sr, mctx) != NGX_OK)
    {
        mctx->broken = 1;
    }

    sr->write_event_handler(sr);

    ngx_http_run_posted_requests(c);
}


/* the request ends: a blob not published is dropped from the store */

static void
ngx_http_registry_blob_cleanup(void *data)
{
    ngx_http_registry_mirror_ctx_t *mctx = data;

    ngx_http_registry_store_blob_discard(&mctx->op, &mctx->temp);
}


/* a cached manifest or blob was pulled: its time, for eviction */

void
ngx_http_registry_mirror_pulled(ngx_http_registry_mirror_ctx_t *mctx,
    ngx_http_registry_digest_t *digest, ngx_uint_t kind)
{
    ngx_str_t                    *name;
    ngx_http_registry_pull_t     *p;
    ngx_http_registry_pulls_t    *list;
    ngx_http_registry_flights_t  *flights;

    if (mctx->conf->flights == NULL || mctx->conf->flights->data == NULL
        || mctx->owner->route.name.len > NGX_HTTP_REGISTRY_NAME_MAX)
    {
        return;
    }

    flights = mctx->conf->flights->data;
    list = &flights->pulls[kind];
    name = &mctx->owner->route.name;

    ngx_shmtx_lock(&flights->shpool->mutex);

    p = list->n ? &list->pull[list->n - 1] : NULL;

    if (p && p->store == mctx->owner->op.store->id
        && p->digest_len == digest->text.len
        && ngx_memcmp(p->digest, digest->text.data, p->digest_len) == 0
        && p->name_len == name->len
        && ngx_memcmp(p->name, name->data, p->name_len) == 0)
    {
        p = NULL;                       /* the same pull again */

    } else if (list->n < NGX_HTTP_REGISTRY_PULLS) {
        p = &list->pull[list->n++];
        p->store = mctx->owner->op.store->id;
        p->kind = (u_char) kind;
        p->name_len = (u_char) name->len;
        ngx_memcpy(p->name, name->data, p->name_len);
        p->digest_len = (u_char) digest->text.len;
        ngx_memcpy(p->digest, digest->text.data, p->digest_len);
    }

    ngx_shmtx_unlock(&flights->shpool->mutex);
}


/* ---- one fetch per blob ---- */

/*
 * NGX_OK: this request leads the blob's fetch (or there is no room to
 * say so: it fetches anyway), NGX_BUSY: another one does, which this one
 * follows.  The slot is given back when the blob is published, or when
 * the request ends.
 */

static ngx_int_t
ngx_http_registry_flight_join(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    ngx_uint_t                        i;
    ngx_pool_cleanup_t               *cln;
    ngx_http_registry_ctx_t          *ctx;
    ngx_http_registry_flight_t       *fl, *free;
    ngx_http_registry_flights_t      *flights;
    ngx_http_registry_mirror_conf_t  *mcf;

    mcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_mirror_module);
    ctx = mctx->owner;

    if (mcf->flights == NULL || mcf->flights->data == NULL) {
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_OK;
    }

    cln->handler = ngx_http_registry_flight_cleanup;
    cln->data = mctx;

    flights = mcf->flights->data;
    free = NULL;

    ngx_shmtx_lock(&flights->shpool->mutex);

    for (i = 0; i < NGX_HTTP_REGISTRY_FLIGHTS; i++) {
        fl = &flights->flight[i];

        if (fl->pid == 0) {
            if (free == NULL) {
                free = fl;
            }

            continue;
        }

        if (fl->store != ctx->op.store->id
            || fl->len != ctx->route.digest.text.len
            || ngx_memcmp(fl->digest, ctx->route.digest.text.data, fl->len)
               != 0)
        {
            continue;
        }

        if (ngx_http_registry_flight_alive(fl)) {
            mctx->followed = fl;
            mctx->followed_seq = fl->seq;

            ngx_shmtx_unlock(&flights->shpool->mutex);
            return NGX_BUSY;
        }

        free = fl;
        break;
    }

    if (free) {
        free->store = ctx->op.store->id;
        free->seq = ++flights->seq;
        free->pid = ngx_pid;
        free->length = -1;
        free->temp_len = 0;
        free->len = (u_char) ctx->route.digest.text.len;
        ngx_memcpy(free->digest, ctx->route.digest.text.data, free->len);
        mctx->flight = free;
    }

    ngx_shmtx_unlock(&flights->shpool->mutex);

    return NGX_OK;
}


/* under the lock: a worker killed on the way leaves its pid, nobody's */

static ngx_uint_t
ngx_http_registry_flight_alive(ngx_http_registry_flight_t *fl)
{
    return fl->pid != 0
           && (fl->pid == ngx_pid || kill(fl->pid, 0) == 0
               || ngx_errno != NGX_ESRCH);
}


/*
 * The leader has its temporary file (or the one another host's leader
 * writes, which this one follows): named in its slot with the length the
 * upstream gave, the followers may read it, and in the lease, another
 * host's too.  A blob of no known length (chunked) is not followed: its
 * followers wait for the publish.
 */

static void
ngx_http_registry_flight_file(ngx_http_registry_mirror_ctx_t *mctx,
    ngx_str_t *id, off_t length, ngx_uint_t remote)
{
    ngx_http_registry_flights_t  *flights;

    if (mctx->flight == NULL || length <= 0
        || id->len > NGX_HTTP_REGISTRY_TEMP_ID_LEN)
    {
        return;
    }

    flights = mctx->conf->flights->data;

    ngx_shmtx_lock(&flights->shpool->mutex);

    mctx->flight->length = length;
    mctx->flight->remote = (u_char) remote;
    mctx->flight->temp_len = (u_char) id->len;
    ngx_memcpy(mctx->flight->temp, id->data, id->len);

    ngx_shmtx_unlock(&flights->shpool->mutex);

    if (mctx->keeper) {
        ngx_http_registry_keeper_file(mctx->keeper, id, length);
    }
}


static void
ngx_http_registry_flight_land(ngx_http_registry_mirror_ctx_t *mctx)
{
    ngx_http_registry_flights_t  *flights;

    if (mctx->keeper) {
        ngx_http_registry_keeper_release(mctx->keeper);
        mctx->keeper = NULL;
    }

    if (mctx->flight == NULL) {
        return;
    }

    flights = mctx->conf->flights->data;

    ngx_shmtx_lock(&flights->shpool->mutex);
    mctx->flight->pid = 0;
    mctx->flight->temp_len = 0;
    ngx_shmtx_unlock(&flights->shpool->mutex);

    mctx->flight = NULL;
}


/*
 * Another request fetches the blob: this one follows it.  Once the leader
 * has its headers, the follower answers 200 and sends the bytes of the
 * leader's temporary file as they arrive, all but the last one, which
 * waits until the blob is published (as the leader's last buffer does).
 * A range or a conditional request waits for the end and is served the
 * published blob as any local one; so does every follower of a fetch
 * that ended before it had sent its headers (or, if the fetch failed, it
 * fetches the blob itself).
 */

static ngx_int_t
ngx_http_registry_flight_wait(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    mctx->no_follow = (r->headers_in.range != NULL
                       || r->headers_in.if_none_match != NULL);

    mctx->wait.handler = ngx_http_registry_flight_poll;
    mctx->wait.data = r;
    mctx->wait.log = r->connection->log;

    ngx_add_timer(&mctx->wait, NGX_HTTP_REGISTRY_FLIGHT_POLL);

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_registry_flight_poll(ngx_event_t *ev)
{
    ngx_int_t                        rc;
    ngx_str_t                        id;
    ngx_connection_t                *c;
    ngx_http_request_t              *r;
    ngx_http_registry_mirror_ctx_t  *mctx;
    u_char                           temp[NGX_HTTP_REGISTRY_TEMP_ID_LEN];

    r = ev->data;
    c = r->connection;
    mctx = ngx_http_get_module_ctx(r, ngx_http_registry_mirror_module);

    /* the task that hashes what the follower sends holds the request */

    if (mctx->hashing) {
        ngx_add_timer(&mctx->wait, NGX_HTTP_REGISTRY_FOLLOW_TICK);
        return;
    }

    id.data = temp;

    if (ngx_http_registry_flight_look(mctx, &id) == NGX_DONE) {
        rc = mctx->following ? ngx_http_registry_follow_end(r, mctx)
                             : ngx_http_registry_mirror_blob(r, mctx);
        goto done;
    }

    if (id.len && ngx_http_registry_follow_start(r, mctx, &id) != NGX_OK) {
        rc = NGX_ERROR;
        goto done;
    }

    if (mctx->following
        && ngx_http_registry_follow_send(r, mctx, 0) == NGX_ERROR)
    {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_add_timer(&mctx->wait, mctx->following
                               ? NGX_HTTP_REGISTRY_FOLLOW_TICK
                               : NGX_HTTP_REGISTRY_FLIGHT_POLL);
    return;

done:

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * The followed fetch: NGX_DONE when it is over (published, failed, or
 * its worker gone), else NGX_BUSY, with id the leader's temporary file
 * the first time this follower may start reading it (else empty).
 */

static ngx_int_t
ngx_http_registry_flight_look(ngx_http_registry_mirror_ctx_t *mctx,
    ngx_str_t *id)
{
    ngx_int_t                     rc;
    ngx_http_registry_flight_t   *fl;
    ngx_http_registry_flights_t  *flights;

    flights = mctx->conf->flights->data;
    fl = mctx->followed;
    id->len = 0;

    ngx_shmtx_lock(&flights->shpool->mutex);

    if (fl->seq != mctx->followed_seq || !ngx_http_registry_flight_alive(fl)) {
        rc = NGX_DONE;

    } else {
        rc = NGX_BUSY;

        if (!mctx->following && !mctx->no_follow && fl->temp_len) {
            id->len = fl->temp_len;
            ngx_memcpy(id->data, fl->temp, id->len);
            mctx->follow_length = fl->length;
            mctx->verify = fl->remote;
        }
    }

    ngx_shmtx_unlock(&flights->shpool->mutex);

    return rc;
}


static void
ngx_http_registry_flight_cleanup(void *data)
{
    ngx_http_registry_mirror_ctx_t *mctx = data;

    if (mctx->wait.timer_set) {
        ngx_del_timer(&mctx->wait);
    }

    ngx_http_registry_flight_land(mctx);
}


/* ---- one fetch across hosts: the lease ---- */

/*
 * The leader of this host's fetch takes the blob's lease in the store
 * too, in a thread; if another host holds it, this request follows that
 * fetch instead (and this host's followers follow this request).
 */

static ngx_int_t
ngx_http_registry_lease_take(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    u_char  *id;

    id = ngx_pnalloc(r->pool, NGX_HTTP_REGISTRY_FLIGHT_ID_LEN);
    if (id == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_registry_random_hex(id, NGX_HTTP_REGISTRY_FLIGHT_ID_LEN / 2)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&mctx->lease, sizeof(ngx_http_registry_flight_lease_t));

    mctx->lease.host = ngx_cycle->hostname;
    mctx->lease.pid = ngx_pid;
    mctx->lease.id.data = id;
    mctx->lease.id.len = NGX_HTTP_REGISTRY_FLIGHT_ID_LEN;
    mctx->lease.length = -1;

    return ngx_http_registry_task_start(r, ngx_http_registry_lease_take_work,
                                        mctx, ngx_http_registry_lease_taken);
}


static ngx_int_t
ngx_http_registry_lease_take_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_mirror_ctx_t *mctx = data;

    return ngx_http_registry_store_flight_take(op, &mctx->owner->route.digest,
                                               &mctx->lease, &mctx->holder);
}


/*
 * Taken: fetched, the lease kept while the fetch runs.  Another host's:
 * followed.  The blob published meanwhile: served.  No lease to be had
 * (a store that refuses the file): fetched all the same, as a request
 * that finds no free slot in the table is.
 */

static ngx_int_t
ngx_http_registry_lease_taken(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_mirror_ctx_t  *mctx;

    mctx = ngx_http_get_module_ctx(r, ngx_http_registry_mirror_module);

    switch (rc) {

    case NGX_OK:
        if (ngx_http_registry_keeper_start(r, mctx) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        break;

    case NGX_BUSY:
        mctx->no_follow = (r->headers_in.range != NULL
                           || r->headers_in.if_none_match != NULL);
        return ngx_http_registry_lease_follow(r, mctx);

    case NGX_DONE:
        ngx_http_registry_flight_land(mctx);
        return ngx_http_registry_mirror_blob(r, mctx);

    default:
        ngx_log_error(NGX_LOG_ERR, r->connection->log,
                      mctx->owner->task.op.fault.errnum,
                      "registry upstream: no lease for the fetch of blob "
                      "%V, fetched without one",
                      &mctx->owner->route.digest.text);
    }

    return ngx_http_registry_blob_fetch(r, mctx);
}


/*
 * The fetch of another host: its lease and the blob are looked at every
 * NGX_HTTP_REGISTRY_LEASE_POLL ms, in a thread; in between, a follower
 * that reads the other host's temporary file sends what it has grown by,
 * as one of this host's followers does.
 */

static ngx_int_t
ngx_http_registry_lease_wait(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    mctx->wait.handler = ngx_http_registry_lease_poll;
    mctx->wait.data = r;
    mctx->wait.log = r->connection->log;

    mctx->look_at = ngx_current_msec + NGX_HTTP_REGISTRY_LEASE_POLL;

    ngx_add_timer(&mctx->wait, mctx->following
                               ? NGX_HTTP_REGISTRY_FOLLOW_TICK
                               : NGX_HTTP_REGISTRY_LEASE_POLL);

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_registry_lease_poll(ngx_event_t *ev)
{
    ngx_int_t                        rc;
    ngx_connection_t                *c;
    ngx_http_request_t              *r;
    ngx_http_registry_mirror_ctx_t  *mctx;

    r = ev->data;
    c = r->connection;
    mctx = ngx_http_get_module_ctx(r, ngx_http_registry_mirror_module);

    if (mctx->hashing) {
        ngx_add_timer(&mctx->wait, NGX_HTTP_REGISTRY_FOLLOW_TICK);
        return;
    }

    if (mctx->following
        && (ngx_msec_int_t) (mctx->look_at - ngx_current_msec) > 0)
    {
        if (ngx_http_registry_follow_send(r, mctx, 0) != NGX_ERROR) {
            ngx_add_timer(&mctx->wait, NGX_HTTP_REGISTRY_FOLLOW_TICK);
            return;
        }

        rc = NGX_ERROR;

    } else {
        rc = ngx_http_registry_task_start(r,
                                          ngx_http_registry_lease_look_work,
                                          mctx,
                                          ngx_http_registry_lease_looked);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * In a thread, every NGX_HTTP_REGISTRY_LEASE_POLL ms for as long as the
 * other host's fetch runs: what the look allocates goes with a pool of
 * its own, and the temporary file's id, which the event loop uses, is
 * kept in the request's context.
 */

static ngx_int_t
ngx_http_registry_lease_look_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_mirror_ctx_t *mctx = data;

    ngx_int_t                          rc;
    ngx_http_registry_op_t             look;
    ngx_http_registry_flight_lease_t  *h;

    look = *op;

    look.pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, op->log);
    if (look.pool == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    h = &mctx->holder;

    rc = ngx_http_registry_store_flight_look(&look,
                                             &mctx->owner->route.digest,
                                             &mctx->lease.host, h);

    op->fault = look.fault;

    if (h->temp.len && h->temp.len <= NGX_HTTP_REGISTRY_TEMP_ID_LEN) {
        ngx_memcpy(mctx->holder_temp, h->temp.data, h->temp.len);

    } else {
        h->temp.len = 0;
    }

    /* nothing may point into the pool that goes */

    h->temp.data = mctx->holder_temp;
    ngx_str_null(&h->host);
    ngx_str_null(&h->id);

    ngx_destroy_pool(look.pool);

    return rc;
}


/*
 * The other host's fetch goes on: followed.  Over: this host's slot is
 * given back (its followers look again too).  A follower that has
 * answered ends as this host's do, with the last byte if the store's
 * blob is the file it read, else cut short; one that has not asks for
 * the blob anew: served if it was published, else fetched by this
 * request, which then takes the lease (over, if it went stale).
 */

static ngx_int_t
ngx_http_registry_lease_looked(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_ctx_t         *ctx;
    ngx_http_registry_mirror_ctx_t  *mctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    mctx = ngx_http_get_module_ctx(r, ngx_http_registry_mirror_module);

    if (rc == NGX_BUSY) {
        return ngx_http_registry_lease_follow(r, mctx);
    }

    ngx_http_registry_flight_land(mctx);

    if (rc == NGX_ERROR) {
        return mctx->following
               ? NGX_ERROR
               : ngx_http_registry_send_fault(r, &ctx->task.op.fault);
    }

    if (!mctx->following) {
        return ngx_http_registry_mirror_blob(r, mctx);
    }

    if (rc == NGX_DONE) {
        return ngx_http_registry_follow_end(r, mctx);
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "registry upstream: the fetch of blob %V this request "
                  "followed on another host was not published",
                  &ctx->route.digest.text);

    return NGX_ERROR;
}


/*
 * Once the other host's lease names its temporary file (in the shared
 * store), this request reads it, and so do this host's followers (the
 * slot names it too); then the bytes it has so far go out.
 */

static ngx_int_t
ngx_http_registry_lease_follow(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    ngx_http_registry_flight_lease_t  *h;

    h = &mctx->holder;

    if (h->temp.len && h->length > 0) {
        ngx_http_registry_flight_file(mctx, &h->temp, h->length, 1);
    }

    if (!mctx->following && !mctx->no_follow && h->temp.len
        && h->length > 0)
    {
        mctx->follow_length = h->length;
        mctx->verify = 1;

        if (ngx_http_registry_follow_start(r, mctx, &h->temp) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (mctx->following) {
        /* the task's end took the writer over */
        r->write_event_handler = ngx_http_registry_follow_write;

        if (ngx_http_registry_follow_send(r, mctx, 0) == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    return ngx_http_registry_lease_wait(r, mctx);
}


/* the leader's lease, kept from now on in a pool of its own */

static ngx_int_t
ngx_http_registry_keeper_start(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    ngx_pool_t                    *pool;
    ngx_http_registry_keeper_t    *k;
    ngx_http_registry_digest_t    *digest;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);
    digest = &mctx->owner->route.digest;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, ngx_cycle->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    k = ngx_pcalloc(pool, sizeof(ngx_http_registry_keeper_t));

    if (k == NULL
        || ngx_http_registry_digest_copy(pool, digest->text.data,
                                         digest->text.len, &k->digest)
           != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    k->pool = pool;
    k->thread_pool = rlcf->thread_pool;

    k->lease = mctx->lease;
    k->lease.id.data = ngx_pstrdup(pool, &mctx->lease.id);
    if (k->lease.id.data == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    k->task.op.store = mctx->owner->op.store;
    k->task.op.log = ngx_cycle->log;
    k->task.data = k;
    k->task.done = ngx_http_registry_keeper_done;

    k->refresh.handler = ngx_http_registry_keeper_tick;
    k->refresh.data = k;
    k->refresh.log = ngx_cycle->log;
    k->refresh.cancelable = 1;

    ngx_add_timer(&k->refresh, NGX_HTTP_REGISTRY_FLIGHT_REFRESH * 1000);

    mctx->keeper = k;

    return NGX_OK;
}


/* the leader has its temporary file: the lease names it */

static void
ngx_http_registry_keeper_file(ngx_http_registry_keeper_t *k, ngx_str_t *id,
    off_t length)
{
    k->temp_len = id->len;
    ngx_memcpy(k->temp, id->data, id->len);
    k->length = length;
    k->dirty = 1;

    if (k->busy) {
        return;                     /* written once the task is back */
    }

    if (k->refresh.timer_set) {
        ngx_del_timer(&k->refresh);
    }

    ngx_http_registry_keeper_tick(&k->refresh);
}


/* the fetch is over: the lease goes, once a task running on it is back */

static void
ngx_http_registry_keeper_release(ngx_http_registry_keeper_t *k)
{
    k->released = 1;

    if (k->refresh.timer_set) {
        ngx_del_timer(&k->refresh);
    }

    if (k->busy) {
        return;
    }

    if (ngx_http_registry_keeper_post(k, ngx_http_registry_keeper_drop_work)
        != NGX_OK)
    {
        ngx_destroy_pool(k->pool);
    }
}


static void
ngx_http_registry_keeper_tick(ngx_event_t *ev)
{
    ngx_http_registry_keeper_t *k = ev->data;

    /* what the task writes is set here, never while it runs */

    k->rewrite = k->dirty;

    if (k->dirty) {
        k->lease.temp.data = k->temp;
        k->lease.temp.len = k->temp_len;
        k->lease.length = k->length;
        k->dirty = 0;
    }

    if (ngx_http_registry_keeper_post(k, ngx_http_registry_keeper_refresh_work)
        != NGX_OK)
    {
        k->dirty = k->rewrite;
        ngx_add_timer(&k->refresh, NGX_HTTP_REGISTRY_FLIGHT_REFRESH * 1000);
    }
}


/* without a thread pool, the task is done, and k maybe freed, on return */

static ngx_int_t
ngx_http_registry_keeper_post(ngx_http_registry_keeper_t *k,
    ngx_http_registry_work_pt work)
{
    k->task.op.pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, ngx_cycle->log);
    if (k->task.op.pool == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&k->task.op.fault, sizeof(ngx_http_registry_fault_t));

    k->task.work = work;
    k->busy = 1;

    if (ngx_http_registry_task_detach(&k->task, k->thread_pool, k->pool)
        != NGX_OK)
    {
        ngx_destroy_pool(k->task.op.pool);
        k->busy = 0;
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_keeper_refresh_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_keeper_t *k = data;

    return ngx_http_registry_store_flight_refresh(op, &k->digest, &k->lease,
                                                  k->rewrite);
}


static ngx_int_t
ngx_http_registry_keeper_drop_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_keeper_t *k = data;

    return ngx_http_registry_store_flight_drop(op, &k->digest, &k->lease.id);
}


/* the lease's task is back: the next one, or the keeper's end */

static void
ngx_http_registry_keeper_done(ngx_http_registry_detached_t *d)
{
    ngx_http_registry_keeper_t *k = d->data;

    ngx_destroy_pool(d->op.pool);
    k->busy = 0;

    if (d->work == ngx_http_registry_keeper_drop_work) {
        ngx_destroy_pool(k->pool);
        return;
    }

    if (d->rc == NGX_BUSY && !k->lost) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "registry upstream: the lease of the fetch of blob "
                      "%V was taken over by another", &k->digest.text);
        k->lost = 1;
    }

    if (k->released) {
        k->released = 0;
        ngx_http_registry_keeper_release(k);
        return;
    }

    if (k->lost) {
        return;
    }

    if (k->dirty) {
        ngx_http_registry_keeper_tick(&k->refresh);
        return;
    }

    ngx_add_timer(&k->refresh, NGX_HTTP_REGISTRY_FLIGHT_REFRESH * 1000);
}


/*
 * The follower opens the leader's file and answers 200.  The file gone
 * already (published, or failed) or unreadable: it waits for the end.
 */

static ngx_int_t
ngx_http_registry_follow_start(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_str_t *id)
{
    ngx_int_t            rc;
    ngx_file_t          *file;
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    file = ngx_pcalloc(r->pool, sizeof(ngx_file_t));

    if (cln == NULL || file == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_registry_store_blob_follow(&mctx->owner->op, id,
                                            &mctx->follow)
        != NGX_OK)
    {
        mctx->no_follow = 1;
        return NGX_OK;
    }

    cln->handler = ngx_http_registry_follow_cleanup;
    cln->data = mctx;

    if (mctx->verify) {
        mctx->scratch = ngx_pnalloc(r->pool, NGX_HTTP_REGISTRY_FOLLOW_READ);
        if (mctx->scratch == NULL) {
            return NGX_ERROR;
        }

        ngx_http_registry_hash_init(&mctx->follow_hash,
                                    mctx->owner->route.digest.alg);
    }

    file->fd = mctx->follow.fd;
    file->name = mctx->follow.path;
    file->log = r->connection->log;

    mctx->follow_file = file;
    mctx->following = 1;
    mctx->sent = 0;
    mctx->hashed = 0;

    r->write_event_handler = ngx_http_registry_follow_write;

    rc = ngx_http_registry_blob_headers(r, mctx->follow_length);

    return (rc == NGX_ERROR || rc > NGX_OK) ? NGX_ERROR : NGX_OK;
}


/*
 * What the leader wrote since the last call, as a file buffer (sendfile,
 * or nginx's output chain reading it), once the client has taken the
 * last one; all but the blob's last byte, until last: the blob is
 * published, and it all goes.  A follower of another host's file sends
 * only what it hashed (see follow_hash()), in a thread, at most
 * NGX_HTTP_REGISTRY_FOLLOW_HASH_MAX bytes a task; the last ones are
 * hashed by the task that checks the publish (follow_check_work()).
 */

static ngx_int_t
ngx_http_registry_follow_send(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_uint_t last)
{
    off_t  end, size;

    if (!last && (r->buffered || r->connection->buffered)) {
        return NGX_OK;
    }

    if (ngx_http_registry_store_blob_grown(&mctx->owner->op, &mctx->follow,
                                           &size)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    end = ngx_min(size, mctx->follow_length - (last ? 0 : 1));

    if (last && end != mctx->follow_length) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "registry upstream: a followed blob has %O bytes "
                      "of %O", end, mctx->follow_length);
        return NGX_ERROR;
    }

    if (mctx->verify && !last) {
        end = ngx_min(end, mctx->sent + NGX_HTTP_REGISTRY_FOLLOW_HASH_MAX);

        if (end > mctx->hashed) {
            if (ngx_http_registry_task_threaded(r)) {
                return ngx_http_registry_follow_hash_start(r, mctx, end);
            }

            if (ngx_http_registry_follow_hash(&mctx->owner->op, mctx, end)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return ngx_http_registry_follow_out(r, mctx, end, last);
}


/*
 * The polls that call follow_send() only look again (see
 * ngx_http_registry_flight_poll()) while the task hashes.
 */

static ngx_int_t
ngx_http_registry_follow_hash_start(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, off_t end)
{
    mctx->hash_end = end;

    if (ngx_http_registry_task_run(r, ngx_http_registry_follow_hash_work,
                                   mctx, ngx_http_registry_follow_hashed)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    mctx->hashing = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_follow_hash_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_mirror_ctx_t *mctx = data;

    return ngx_http_registry_follow_hash(op, mctx, mctx->hash_end);
}


/* what was hashed goes; the poll's next look hashes what followed */

static ngx_int_t
ngx_http_registry_follow_hashed(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_mirror_ctx_t  *mctx;

    mctx = ngx_http_get_module_ctx(r, ngx_http_registry_mirror_module);

    mctx->hashing = 0;

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    /* the task's end took the writer over */
    r->write_event_handler = ngx_http_registry_follow_write;

    if (r->buffered || r->connection->buffered) {
        return NGX_DONE;
    }

    rc = ngx_http_registry_follow_out(r, mctx, mctx->hashed, 0);

    return (rc == NGX_ERROR) ? NGX_ERROR : NGX_DONE;
}


/*
 * Another host writes the file: this host may read a part of it before
 * the bytes are there (a network file system's writes reach the server
 * out of order, its cache may lag), and a follower sends what it reads,
 * so it hashes that, and sends the blob's last byte only if the whole
 * hashed to the digest, as the leader does with what it received.  In a
 * thread (op, the task's), or in the event loop without a thread pool.
 */

static ngx_int_t
ngx_http_registry_follow_hash(ngx_http_registry_op_t *op,
    ngx_http_registry_mirror_ctx_t *mctx, off_t end)
{
    off_t   at;
    size_t  len;

    for (at = mctx->hashed; at < end; at += len) {
        len = (size_t) ngx_min(end - at, NGX_HTTP_REGISTRY_FOLLOW_READ);

        if (ngx_http_registry_store_blob_read(op, &mctx->follow,
                                              mctx->scratch, len, at)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_http_registry_hash_update(&mctx->follow_hash, mctx->scratch, len);
    }

    mctx->hashed = end;

    return NGX_OK;
}


/* the followed fetch is over: the rest, and the whole against the digest */

static ngx_int_t
ngx_http_registry_follow_hash_rest(ngx_http_registry_op_t *op,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    ngx_http_registry_digest_t  got;

    if (ngx_http_registry_follow_hash(op, mctx, mctx->follow_length)
        != NGX_OK
        || ngx_http_registry_hash_final(&mctx->follow_hash, op->pool, &got)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!ngx_http_registry_digest_equal(&got, &mctx->owner->route.digest)) {
        ngx_log_error(NGX_LOG_ERR, op->log, 0,
                      "registry upstream: blob %V read from another host's "
                      "temporary file hashes to %V",
                      &mctx->owner->route.digest.text, &got.text);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the bytes from mctx->sent to end, as a file buffer */

static ngx_int_t
ngx_http_registry_follow_out(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, off_t end, ngx_uint_t last)
{
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (end <= mctx->sent) {
        return NGX_OK;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->in_file = 1;
    b->file = mctx->follow_file;
    b->file_pos = mctx->sent;
    b->file_last = end;
    b->flush = 1;
    b->last_buf = last;
    b->last_in_chain = last;

    mctx->sent = end;

    out.buf = b;
    out.next = NULL;

    if (last) {
        /* the request is finalized with this: nginx's writer sends the rest */
        return ngx_http_output_filter(r, &out);
    }

    return ngx_http_registry_follow_flush(r, &out);
}


/*
 * Sends what it can, as ngx_http_writer() does; what the client does not
 * take yet waits for its write event, under send_timeout (which stops
 * once all is sent: then the follower waits for the leader, not it).
 */

static ngx_int_t
ngx_http_registry_follow_flush(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_event_t               *wev;
    ngx_http_core_loc_conf_t  *clcf;

    wev = r->connection->write;

    if (ngx_http_output_filter(r, in) == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (!r->buffered && !r->connection->buffered) {
        if (wev->timer_set && !wev->delayed) {
            ngx_del_timer(wev);
        }

        return NGX_OK;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (!wev->delayed) {
        ngx_add_timer(wev, clcf->send_timeout);
    }

    if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
ngx_http_registry_follow_write(ngx_http_request_t *r)
{
    ngx_connection_t  *c;

    c = r->connection;

    if (c->write->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT, "client timed out");
        c->timedout = 1;
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    if (ngx_http_registry_follow_flush(r, NULL) == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_ERROR);
    }
}


/*
 * The followed fetch is over: in a thread, whether what it published is
 * the file this follower read; then its last byte, or a cut answer.
 */

static ngx_int_t
ngx_http_registry_follow_end(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    if (ngx_http_registry_task_run(r, ngx_http_registry_follow_check_work,
                                   mctx, ngx_http_registry_followed)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_DONE;
}


static ngx_int_t
ngx_http_registry_follow_check_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_mirror_ctx_t *mctx = data;

    ngx_int_t  rc;

    rc = ngx_http_registry_store_blob_followed(op, &mctx->owner->route.name,
                                               &mctx->follow,
                                               &mctx->owner->route.digest);

    /* published: the file has all its bytes, which must hash right */

    if (rc == NGX_OK && mctx->verify) {
        rc = ngx_http_registry_follow_hash_rest(op, mctx);
    }

    return rc;
}


static ngx_int_t
ngx_http_registry_followed(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_mirror_ctx_t  *mctx;

    mctx = ngx_http_get_module_ctx(r, ngx_http_registry_mirror_module);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "registry upstream: the fetch of blob %V this "
                      "request followed was not published",
                      &mctx->owner->route.digest.text);
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;                     /* logged where it failed */
    }

    return ngx_http_registry_follow_send(r, mctx, 1);
}


static void
ngx_http_registry_follow_cleanup(void *data)
{
    ngx_http_registry_mirror_ctx_t *mctx = data;

    ngx_http_registry_store_blob_unfollow(&mctx->owner->op, &mctx->follow);
}
