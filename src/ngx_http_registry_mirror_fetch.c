
/*
 * ngx_http_registry_module: the pull-through cache's requests to the
 * upstream (mirror.c routes the pull and handles manifests, mirror_blob.c
 * blobs).
 *
 * The upstream is reached through nginx's own proxy: subrequests to the
 * internal location named by registry_upstream_location, whose
 * proxy_pass, Authorization and Accept come from the mirror's variables
 * ($registry_upstream_url, ...).  A subrequest's answer never reaches the
 * client by itself: the filters here sit first in nginx's chains and
 * either capture it (manifests, tokens, errors) or, for a blob that comes
 * with 200, hand its buffers to the fetch's stream callbacks
 * (mirror_blob.c's), which pass them on to the client.  The subrequest's
 * end wakes the main request, which runs the next step (401: the token
 * dance and one retry; a redirect: followed without Authorization; then
 * the step the fetch was asked for).
 */


#include "ngx_http_registry_mirror_cache.h"


#define NGX_HTTP_REGISTRY_REDIRECTS      3
#define NGX_HTTP_REGISTRY_TOKEN_MAX      (64 * 1024)
#define NGX_HTTP_REGISTRY_TOKEN_SLOTS    32

#define NGX_HTTP_REGISTRY_MANIFEST_TYPES                                     \
    "application/vnd.oci.image.index.v1+json, "                              \
    "application/vnd.oci.image.manifest.v1+json, "                           \
    "application/vnd.docker.distribution.manifest.list.v2+json, "            \
    "application/vnd.docker.distribution.manifest.v2+json"


static ngx_int_t ngx_http_registry_fetch_url(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_str_t *url,
    ngx_str_t *authorization, ngx_uint_t head, ngx_uint_t stream, size_t max);
static ngx_int_t ngx_http_registry_fetch_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static void ngx_http_registry_mirror_wake(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_mirror_answered(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_mirror_authenticate(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_mirror_token(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_mirror_retry(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_str_t *authorization);
static ngx_http_registry_token_slot_t *ngx_http_registry_token_slot(
    ngx_http_registry_upstream_t *up, ngx_str_t *remote, ngx_log_t *log);
static ngx_int_t ngx_http_registry_cached_token(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_str_t *authorization);
static ngx_int_t ngx_http_registry_mirror_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_mirror_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_registry_capture(ngx_http_request_t *r,
    ngx_http_registry_fetch_t *f, ngx_chain_t *in);
static ngx_str_t *ngx_http_registry_header_value(ngx_list_t *headers,
    const char *name);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* the filters: first in both chains, they see the subrequests' answers */

ngx_int_t
ngx_http_registry_fetch_filters(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_registry_mirror_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_registry_mirror_body_filter;

    return NGX_OK;
}


/* ---- requests ---- */

/* <url>/v2/<remote>/<path>, with the token this worker has, if any */

ngx_int_t
ngx_http_registry_fetch(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_uint_t head, ngx_uint_t stream,
    ngx_str_t *path, ngx_http_registry_step_pt step)
{
    u_char                        *p;
    ngx_str_t                      authorization;
    ngx_http_registry_upstream_t  *up;

    up = mctx->upstream;

    mctx->url.len = up->url.len + sizeof("/v2/") - 1 + mctx->remote.len + 1
                    + path->len;
    mctx->url.data = ngx_pnalloc(r->pool, mctx->url.len);
    if (mctx->url.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(mctx->url.data, up->url.data, up->url.len);
    p = ngx_cpymem(p, "/v2/", sizeof("/v2/") - 1);
    p = ngx_cpymem(p, mctx->remote.data, mctx->remote.len);
    *p++ = '/';
    ngx_memcpy(p, path->data, path->len);

    mctx->head = head;
    mctx->stream = stream;
    mctx->step = step;
    mctx->authorized = 0;
    mctx->redirects = 0;

    if (ngx_http_registry_cached_token(r, mctx, &authorization) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_fetch_url(r, mctx, &mctx->url, &authorization,
                                       head, stream, 0);
}


/*
 * One subrequest to the upstream location; returns as a content handler
 * does.  max: bytes of the answer kept (0: the manifest limit).
 */

static ngx_int_t
ngx_http_registry_fetch_url(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_str_t *url,
    ngx_str_t *authorization, ngx_uint_t head, ngx_uint_t stream,
    size_t max)
{
    ngx_str_t                         u, a;
    ngx_http_request_t               *sr;
    ngx_http_registry_fetch_t        *f;
    ngx_http_post_subrequest_t       *ps;
    ngx_http_registry_loc_conf_t     *rlcf;
    ngx_http_registry_mirror_conf_t  *mcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);
    mcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_mirror_module);

    /* url may be the last answer's Location: taken before it is cleared */
    f = &mctx->fetch;
    u = *url;
    a = *authorization;
    ngx_memzero(f, sizeof(ngx_http_registry_fetch_t));

    f->url = u;
    f->authorization = a;
    f->head = head;
    f->stream = stream;
    f->max = max ? max : rlcf->manifest_max_size;
    f->length = -1;

    if (stream) {
        ngx_str_set(&f->accept, "*/*");

    } else if (max) {
        ngx_str_set(&f->accept, "application/json");

    } else {
        ngx_str_set(&f->accept, NGX_HTTP_REGISTRY_MANIFEST_TYPES);
    }

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ps->handler = ngx_http_registry_fetch_done;
    ps->data = mctx;

    if (ngx_http_subrequest(r, &mcf->location, NULL, &sr, ps, 0) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(sr, f, ngx_http_registry_mirror_module);

    if (head) {
        sr->method = NGX_HTTP_HEAD;
        ngx_str_set(&sr->method_name, "HEAD");
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "registry upstream: %s %V", head ? "HEAD" : "GET", &u);

    mctx->upstream_requests++;          /* for the metrics */

    r->write_event_handler = ngx_http_registry_mirror_wake;

    /* one more reference until the subrequest is done, as a task holds */
    r->main->count++;

    return NGX_DONE;
}


/*
 * The subrequest ends: its status and headers are kept for the next step,
 * which runs when nginx wakes the main request.  A blob that failed its
 * hash ends the client's connection (NGX_ERROR): its bytes went out.
 */

static ngx_int_t
ngx_http_registry_fetch_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_str_t                  *v;
    ngx_http_registry_fetch_t  *f;

    f = ngx_http_get_module_ctx(sr, ngx_http_registry_mirror_module);

    f->done = 1;
    f->rc = rc;
    f->status = (rc >= NGX_HTTP_SPECIAL_RESPONSE || rc == NGX_ERROR)
                ? 0 : sr->headers_out.status;
    f->length = sr->headers_out.content_length_n;
    f->type = sr->headers_out.content_type;

    v = ngx_http_registry_header_value(&sr->headers_out.headers,
                                       "WWW-Authenticate");
    if (v) {
        f->challenge = *v;
    }

    v = ngx_http_registry_header_value(&sr->headers_out.headers,
                                       "Docker-Content-Digest");
    if (v) {
        f->digest = *v;
    }

    v = ngx_http_registry_header_value(&sr->headers_out.headers, "Location");
    if (v) {
        f->location = *v;
    }

    if (f->streaming && (rc == NGX_ERROR || !f->verified)) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "registry upstream: blob from \"%V\" %s, "
                      "not published", &f->url,
                      f->verified ? "cut short" : "failed its digest");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_registry_mirror_wake(ngx_http_request_t *r)
{
    ngx_http_registry_mirror_ctx_t  *mctx;

    mctx = ngx_http_get_module_ctx(r, ngx_http_registry_mirror_module);

    if (!mctx->fetch.done) {
        return;                 /* an event before the subrequest's end */
    }

    mctx->fetch.done = 0;
    r->write_event_handler = ngx_http_request_empty_handler;

    ngx_http_finalize_request(r, ngx_http_registry_mirror_answered(r, mctx));
}


/* the dance on 401, redirects, then the step that asked */

static ngx_int_t
ngx_http_registry_mirror_answered(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    ngx_str_t                   none;
    ngx_http_registry_fetch_t  *f;

    f = &mctx->fetch;

    if (f->status == NGX_HTTP_UNAUTHORIZED && !mctx->authorized) {
        mctx->authorized = 1;
        return ngx_http_registry_mirror_authenticate(r, mctx);
    }

    if ((f->status == NGX_HTTP_MOVED_PERMANENTLY
         || f->status == NGX_HTTP_MOVED_TEMPORARILY
         || f->status == NGX_HTTP_SEE_OTHER
         || f->status == NGX_HTTP_TEMPORARY_REDIRECT
         || f->status == NGX_HTTP_PERMANENT_REDIRECT)
        && f->location.len > 8
        && (ngx_strncmp(f->location.data, "http://", 7) == 0
            || ngx_strncmp(f->location.data, "https://", 8) == 0)
        && mctx->redirects++ < NGX_HTTP_REGISTRY_REDIRECTS)
    {
        /* a CDN's signed URL: the registry's credentials stay home */
        ngx_str_null(&none);
        return ngx_http_registry_fetch_url(r, mctx, &f->location, &none,
                                           mctx->head, mctx->stream, 0);
    }

    if (f->status == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "registry upstream: \"%V\" failed: %i", &f->url, f->rc);
    }

    return mctx->step(r, mctx);
}


/*
 * 401: Bearer asks for a token at its realm (with the credentials, if
 * any), Basic for the credentials; either retries once.
 */

static ngx_int_t
ngx_http_registry_mirror_authenticate(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    u_char                         *p;
    size_t                          len;
    ngx_str_t                       url;
    uintptr_t                       service, scope;
    ngx_http_registry_fetch_t      *f;
    ngx_http_registry_upstream_t   *up;
    ngx_http_registry_challenge_t   ch;

    f = &mctx->fetch;
    up = mctx->upstream;

    if (ngx_http_registry_parse_challenge(f->challenge.data, f->challenge.len,
                                          &ch)
        != NGX_OK)
    {
        return mctx->step(r, mctx);
    }

    if (ch.scheme == NGX_HTTP_REGISTRY_CHALLENGE_BASIC) {
        if (up->basic.len == 0) {
            return mctx->step(r, mctx);
        }

        return ngx_http_registry_mirror_retry(r, mctx, &up->basic);
    }

    service = ngx_escape_uri(NULL, ch.service.data, ch.service.len,
                             NGX_ESCAPE_ARGS);
    scope = ngx_escape_uri(NULL, ch.scope.data, ch.scope.len,
                           NGX_ESCAPE_ARGS);

    len = ch.realm.len + sizeof("?service=&scope=") - 1
          + ch.service.len + 2 * service + ch.scope.len + 2 * scope;

    url.data = ngx_pnalloc(r->pool, len);
    if (url.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(url.data, ch.realm.data, ch.realm.len);
    p = ngx_cpymem(p, "?service=", sizeof("?service=") - 1);
    p = (u_char *) ngx_escape_uri(p, ch.service.data, ch.service.len,
                                  NGX_ESCAPE_ARGS);

    if (ch.scope.len) {
        p = ngx_cpymem(p, "&scope=", sizeof("&scope=") - 1);
        p = (u_char *) ngx_escape_uri(p, ch.scope.data, ch.scope.len,
                                      NGX_ESCAPE_ARGS);
    }

    url.len = p - url.data;

    mctx->step_saved = mctx->step;
    mctx->step = ngx_http_registry_mirror_token;

    return ngx_http_registry_fetch_url(r, mctx, &url, &up->basic, 0, 0,
                                       NGX_HTTP_REGISTRY_TOKEN_MAX);
}


/* the token endpoint answered: remember its token, retry with it */

static ngx_int_t
ngx_http_registry_mirror_token(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    u_char                          *p;
    time_t                           expires_in;
    ngx_str_t                        token, authorization;
    ngx_http_registry_fetch_t       *f;
    ngx_http_registry_token_slot_t  *slot;

    f = &mctx->fetch;
    mctx->step = mctx->step_saved;

    if (f->status != NGX_HTTP_OK || f->body == NULL || f->too_big
        || ngx_http_registry_parse_token(r->pool, f->body->pos,
                                         f->body->last - f->body->pos,
                                         &token, &expires_in)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "registry upstream: no token from \"%V\" (status %ui)",
                      &f->url, f->status);

        /* the step sees the fetch's 401 as it was */
        f->status = NGX_HTTP_UNAUTHORIZED;
        return mctx->step(r, mctx);
    }

    authorization.len = sizeof("Bearer ") - 1 + token.len;
    authorization.data = ngx_pnalloc(r->pool, authorization.len);
    if (authorization.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(authorization.data, "Bearer ", sizeof("Bearer ") - 1);
    ngx_memcpy(p, token.data, token.len);

    slot = ngx_http_registry_token_slot(mctx->upstream, &mctx->remote,
                                        r->connection->log);

    /* a token expires a little before it says: clocks differ */

    if (slot && authorization.len <= NGX_HTTP_REGISTRY_TOKEN_LEN
        && expires_in > 10)
    {
        slot->key_len = (u_char) mctx->remote.len;
        ngx_memcpy(slot->key, mctx->remote.data, mctx->remote.len);
        slot->len = authorization.len;
        ngx_memcpy(slot->value, authorization.data, authorization.len);
        slot->expires = ngx_time() + expires_in - 10;
    }

    return ngx_http_registry_mirror_retry(r, mctx, &authorization);
}


static ngx_int_t
ngx_http_registry_mirror_retry(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_str_t *authorization)
{
    return ngx_http_registry_fetch_url(r, mctx, &mctx->url, authorization,
                                       mctx->head, mctx->stream, 0);
}


/*
 * This worker's tokens of an upstream, one slot per repository hash
 * (direct-mapped: a collision costs one token request).  NULL: no memory.
 */

static ngx_http_registry_token_slot_t *
ngx_http_registry_token_slot(ngx_http_registry_upstream_t *up,
    ngx_str_t *remote, ngx_log_t *log)
{
    if (remote->len > NGX_HTTP_REGISTRY_NAME_MAX) {
        return NULL;
    }

    if (up->tokens == NULL) {
        up->tokens = ngx_calloc(NGX_HTTP_REGISTRY_TOKEN_SLOTS
                                * sizeof(ngx_http_registry_token_slot_t), log);
        if (up->tokens == NULL) {
            return NULL;
        }
    }

    return &up->tokens[ngx_hash_key(remote->data, remote->len)
                       % NGX_HTTP_REGISTRY_TOKEN_SLOTS];
}


static ngx_int_t
ngx_http_registry_cached_token(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_str_t *authorization)
{
    ngx_http_registry_token_slot_t  *slot;

    ngx_str_null(authorization);

    slot = ngx_http_registry_token_slot(mctx->upstream, &mctx->remote,
                                        r->connection->log);

    if (slot == NULL || slot->expires <= ngx_time()
        || slot->key_len != mctx->remote.len
        || ngx_memcmp(slot->key, mctx->remote.data, mctx->remote.len) != 0)
    {
        return NGX_OK;
    }

    authorization->data = ngx_pnalloc(r->pool, slot->len);
    if (authorization->data == NULL) {
        return NGX_ERROR;
    }

    authorization->len = slot->len;
    ngx_memcpy(authorization->data, slot->value, slot->len);

    return NGX_OK;
}


/* 404 upstream is the client's 404; anything else a 503 */

ngx_int_t
ngx_http_registry_upstream_failed(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_http_registry_err_e not_found)
{
    if (mctx->fetch.status == NGX_HTTP_NOT_FOUND) {
        return ngx_http_registry_error(r, not_found, "not found upstream");
    }

    mctx->cache = NGX_HTTP_REGISTRY_CACHE_UPSTREAM_ERROR;

    if (mctx->fetch.status == NGX_HTTP_TOO_MANY_REQUESTS) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_TOOMANYREQUESTS,
                                       "the upstream is rate limiting");
    }

    if (mctx->fetch.status == NGX_HTTP_UNAUTHORIZED
        || mctx->fetch.status == NGX_HTTP_FORBIDDEN)
    {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_UNAVAILABLE,
                                       "the upstream refused the mirror");
    }

    if (mctx->fetch.too_big) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_UNAVAILABLE,
                                       "the upstream's manifest is too large");
    }

    return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_UNAVAILABLE,
                                   "the upstream did not answer");
}


/* ---- the filters ---- */

static ngx_int_t
ngx_http_registry_mirror_header_filter(ngx_http_request_t *r)
{
    ngx_http_registry_fetch_t       *f;
    ngx_http_registry_mirror_ctx_t  *mctx;

    if (r == r->main) {
        return ngx_http_next_header_filter(r);
    }

    f = ngx_http_get_module_ctx(r, ngx_http_registry_mirror_module);

    if (f == NULL) {
        return ngx_http_next_header_filter(r);
    }

    f->length = r->headers_out.content_length_n;

    if (f->stream && r->headers_out.status == NGX_HTTP_OK) {
        mctx = ngx_http_get_module_ctx(r->main,
                                       ngx_http_registry_mirror_module);

        if (mctx->stream_start(r->main, mctx, f) == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    /* nothing of the subrequest's own header is sent */
    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_mirror_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t                        rc;
    ngx_chain_t                     *out, *cl;
    ngx_http_registry_fetch_t       *f;
    ngx_http_registry_mirror_ctx_t  *mctx;

    if (r == r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    f = ngx_http_get_module_ctx(r, ngx_http_registry_mirror_module);

    if (f == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    if (!f->streaming) {
        return ngx_http_registry_capture(r, f, in);
    }

    mctx = ngx_http_get_module_ctx(r->main, ngx_http_registry_mirror_module);

    if (mctx->stream_body(r, mctx, in, &out) != NGX_OK) {
        return NGX_ERROR;
    }

    /* a call without buffers flushes what the client did not take yet */

    if (out == NULL && in != NULL) {
        return NGX_OK;
    }

    rc = ngx_http_next_body_filter(r, out);

    /* the filters below keep links of their own */
    while (out) {
        cl = out->next;
        ngx_free_chain(r->pool, out);
        out = cl;
    }

    return rc;
}


/*
 * An answer kept in memory, at most f->max bytes of it (more: too_big),
 * in a buffer of its Content-Length, or grown as it comes.  Nothing of it
 * goes on to the client.
 */

static ngx_int_t
ngx_http_registry_capture(ngx_http_request_t *r,
    ngx_http_registry_fetch_t *f, ngx_chain_t *in)
{
    size_t      len, size;
    ngx_buf_t  *b;

    for ( /* void */ ; in; in = in->next) {

        len = in->buf->last - in->buf->pos;

        if (len == 0 || f->too_big) {
            in->buf->pos = in->buf->last;
            continue;
        }

        if (in->buf->in_file
            || (f->body ? (size_t) (f->body->last - f->body->pos) : 0) + len
               > f->max)
        {
            f->too_big = 1;
            in->buf->pos = in->buf->last;
            continue;
        }

        if (f->body == NULL || (size_t) (f->body->end - f->body->last) < len) {
            size = (f->length >= 0 && (size_t) f->length <= f->max)
                   ? (size_t) f->length : 16384;

            if (f->body) {
                size = ngx_max(size, 2 * (size_t) (f->body->end
                                                   - f->body->start));
            }

            size = ngx_min(ngx_max(size, len + (f->body
                                   ? (size_t) (f->body->last - f->body->pos)
                                   : 0)),
                           f->max);

            b = ngx_create_temp_buf(r->pool, size);
            if (b == NULL) {
                return NGX_ERROR;
            }

            if (f->body) {
                b->last = ngx_cpymem(b->last, f->body->pos,
                                     f->body->last - f->body->pos);
            }

            f->body = b;
        }

        f->body->last = ngx_cpymem(f->body->last, in->buf->pos, len);
        in->buf->pos = in->buf->last;
    }

    return NGX_OK;
}


static ngx_str_t *
ngx_http_registry_header_value(ngx_list_t *headers, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &headers->part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash && h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i].value;
        }
    }
}
