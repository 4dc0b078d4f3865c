
/*
 * ngx_http_registry_module: the manifest endpoints, GET, HEAD, PUT and
 * DELETE.
 *
 * A manifest's digest is the hash of the exact bytes received; those
 * bytes are stored as a blob and served unchanged, never re-serialised,
 * as a static file is (open_file_cache, sendfile).  Its media type is
 * read from the manifest itself, as distribution does, and each worker
 * remembers it.  A PUT checks its ?tag= arguments before reading the
 * body, then hashes, validates (manifest_json.c) and stores it
 * (store_manifest.c) in one task off the event loop.
 */


#include "ngx_http_registry.h"


static ngx_int_t ngx_http_registry_manifest_tags(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_push_tag(ngx_array_t *tags,
    ngx_str_t *tag);
static void ngx_http_registry_manifest_content_type(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static ngx_int_t ngx_http_registry_manifest_chunk(ngx_http_request_t *r,
    u_char *data, size_t len);
static ngx_int_t ngx_http_registry_manifest_done(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_put_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_manifest_stored(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_delete_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_manifest_deleted(ngx_http_request_t *r,
    ngx_int_t rc);


/* ---- GET and HEAD ---- */

ngx_int_t
ngx_http_registry_manifest_get(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_str_t                      path, type;
    ngx_open_file_info_t           of;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_digest_t     digest;
    ngx_http_registry_loc_conf_t  *rlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    digest = ctx->route.digest;

    rc = ngx_http_registry_store_manifest_resolve(&ctx->op, &ctx->route.name,
                                          ctx->route.by_digest
                                          ? NULL : &ctx->route.reference,
                                          &digest, &path);

    if (rc == NGX_OK) {
        rc = ngx_http_registry_store_manifest_type(&ctx->op, &digest,
                                                   rlcf->manifest_max_size,
                                                   &type);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_registry_open_file(r, &path, &of);

        if (rc == NGX_ERROR) {
            return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_INTERNAL,
                                           NULL);
        }
    }

    if (rc != NGX_OK) {
        return ngx_http_registry_store_failed(r, &ctx->op, rc,
                                          NGX_HTTP_REGISTRY_MANIFEST_UNKNOWN);
    }

    ctx->digest = digest.text;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = type;
    r->headers_out.content_type_len = type.len;

    if (ngx_http_registry_digest_headers(r, &digest) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_registry_manifest_deprecated(&type)
        && ngx_http_registry_warning(r, "Docker schema1 manifests are "
                                     "deprecated; this one is served read-only"
                                     ", push it again as schema2 or OCI")
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_send_file(r, &path, 0, &of);
}


/* ---- PUT ---- */

ngx_int_t
ngx_http_registry_manifest_put(ngx_http_request_t *r)
{
    size_t                         size;
    ngx_int_t                      rc;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_loc_conf_t  *rlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    if (r->headers_in.content_length_n > (off_t) rlcf->manifest_max_size) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_SIZE_INVALID,
                                       "manifest is too large");
    }

    rc = ngx_http_registry_manifest_tags(r, ctx);

    if (rc == NGX_DECLINED) {
        return ngx_http_registry_send_fault(r, &ctx->fault);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_registry_manifest_content_type(r, ctx);

    size = (r->headers_in.content_length_n >= 0)
           ? (size_t) r->headers_in.content_length_n : 16384;

    ctx->body = ngx_create_temp_buf(r->pool, ngx_max(size, 1));
    if (ctx->body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_read_body(r, ngx_http_registry_manifest_chunk,
                                       ngx_http_registry_manifest_done);
}


/*
 * The tags to write: the one in the path, and the "tag" query arguments
 * (OCI 1.1), distinct, all valid or none taken, at most
 * NGX_HTTP_REGISTRY_QUERY_TAGS_MAX of them.  nginx's ngx_http_arg() finds
 * only the first of a repeated argument.  NGX_DECLINED: refused,
 * ctx->fault says why.
 */

static ngx_int_t
ngx_http_registry_manifest_tags(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    u_char     *p, *last, *amp, *src, *dst;
    ngx_int_t   rc;
    ngx_str_t   tag;

    ctx->query_tags = ngx_array_create(r->pool, 4, sizeof(ngx_str_t));
    ctx->manifest.tags = ngx_array_create(r->pool, 4, sizeof(ngx_str_t));

    if (ctx->query_tags == NULL || ctx->manifest.tags == NULL) {
        return NGX_ERROR;
    }

    if (!ctx->route.by_digest
        && ngx_http_registry_push_tag(ctx->manifest.tags,
                                      &ctx->route.reference)
           == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    ctx->fault.code = NGX_HTTP_REGISTRY_TAG_INVALID;

    p = r->args.data;
    last = r->args.data + r->args.len;

    for ( /* void */ ; p < last; p = amp + 1) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        if (amp - p < 4 || ngx_strncmp(p, "tag=", 4) != 0) {
            continue;
        }

        tag.data = ngx_pnalloc(r->pool, amp - p);
        if (tag.data == NULL) {
            return NGX_ERROR;
        }

        src = p + 4;
        dst = tag.data;
        ngx_unescape_uri(&dst, &src, amp - p - 4, 0);
        tag.len = dst - tag.data;

        if (ngx_http_registry_valid_tag(&tag) != NGX_OK) {
            ctx->fault.detail = "invalid tag argument";
            return NGX_DECLINED;
        }

        rc = ngx_http_registry_push_tag(ctx->query_tags, &tag);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (ctx->query_tags->nelts > NGX_HTTP_REGISTRY_QUERY_TAGS_MAX) {
            ctx->fault.detail = "at most 32 distinct tag arguments per push";
            return NGX_DECLINED;
        }

        if (rc == NGX_OK
            && ngx_http_registry_push_tag(ctx->manifest.tags, &tag)
               == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* NGX_OK: added; NGX_DECLINED: the list has it already */

static ngx_int_t
ngx_http_registry_push_tag(ngx_array_t *tags, ngx_str_t *tag)
{
    ngx_str_t   *t;
    ngx_uint_t   i;

    t = tags->elts;

    for (i = 0; i < tags->nelts; i++) {
        if (t[i].len == tag->len
            && ngx_strncmp(t[i].data, tag->data, tag->len) == 0)
        {
            return NGX_DECLINED;
        }
    }

    t = ngx_array_push(tags);
    if (t == NULL) {
        return NGX_ERROR;
    }

    *t = *tag;

    return NGX_OK;
}


/*
 * The Content-Type the manifest came with, less its parameters and the
 * spaces before them (RFC 9110's OWS); "application/json" or none says
 * nothing about the kind of manifest, and becomes "".
 */

static void
ngx_http_registry_manifest_content_type(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    u_char     *semicolon;
    ngx_str_t  *ct;

    ct = &ctx->content_type;
    ngx_str_null(ct);

    if (r->headers_in.content_type == NULL) {
        return;
    }

    *ct = r->headers_in.content_type->value;
    semicolon = ngx_strlchr(ct->data, ct->data + ct->len, ';');

    if (semicolon) {
        ct->len = semicolon - ct->data;
    }

    while (ct->len && (ct->data[ct->len - 1] == ' '
                       || ct->data[ct->len - 1] == '\t'))
    {
        ct->len--;
    }

    if (ct->len == sizeof("application/json") - 1
        && ngx_strncasecmp(ct->data, (u_char *) "application/json", ct->len)
           == 0)
    {
        ct->len = 0;
    }
}


/* collects the body in memory, up to registry_manifest_max_size */

static ngx_int_t
ngx_http_registry_manifest_chunk(ngx_http_request_t *r, u_char *data,
    size_t len)
{
    size_t                         used, size;
    ngx_buf_t                     *b, *nb;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_loc_conf_t  *rlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    b = ctx->body;
    used = b->last - b->pos;

    if (used + len > rlcf->manifest_max_size) {
        ctx->fault.code = NGX_HTTP_REGISTRY_SIZE_INVALID;
        ctx->fault.detail = "manifest is too large";
        return NGX_DECLINED;
    }

    if ((size_t) (b->end - b->last) < len) {
        size = ngx_min(ngx_max(2 * (size_t) (b->end - b->start), used + len),
                       rlcf->manifest_max_size);

        nb = ngx_create_temp_buf(r->pool, size);
        if (nb == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        nb->last = ngx_cpymem(nb->last, b->pos, used);
        ctx->body = nb;
        b = nb;
    }

    b->last = ngx_cpymem(b->last, data, len);

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_manifest_done(ngx_http_request_t *r)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    ctx->manifest.name = ctx->route.name;
    ctx->manifest.bytes.data = ctx->body->pos;
    ctx->manifest.bytes.len = ctx->body->last - ctx->body->pos;

    if (ngx_http_registry_task_run(r, ngx_http_registry_put_work, ctx,
                                   ngx_http_registry_manifest_stored)
        != NGX_OK)
    {
        ctx->fault.code = NGX_HTTP_REGISTRY_UNAVAILABLE;
        ctx->fault.detail = "no thread for the manifest";
        return NGX_DECLINED;
    }

    return NGX_DONE;
}


/*
 * In a thread: the bytes hash to the digest (the one in the path, or a
 * sha256), are a valid manifest, and are stored with their tags.
 */

static ngx_int_t
ngx_http_registry_put_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_ctx_t *ctx = data;

    ngx_int_t                      rc;
    const char                    *invalid;
    ngx_http_registry_hash_t       hash;
    ngx_http_registry_manifest_t  *m;

    m = &ctx->manifest;

    ngx_http_registry_hash_init(&hash, ctx->route.by_digest
                                       ? ctx->route.digest.alg
                                       : NGX_HTTP_REGISTRY_SHA256);
    ngx_http_registry_hash_update(&hash, m->bytes.data, m->bytes.len);

    if (ngx_http_registry_hash_final(&hash, op->pool, &m->digest) != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (ctx->route.by_digest
        && !ngx_http_registry_digest_equal(&m->digest, &ctx->route.digest))
    {
        return ngx_http_registry_op_fail(op, NGX_HTTP_REGISTRY_DIGEST_INVALID,
                                         "manifest bytes hash differently");
    }

    rc = ngx_http_registry_manifest_parse(op->pool, m, &ctx->content_type,
                                          &invalid);

    if (rc == NGX_DECLINED) {
        return ngx_http_registry_op_fail(op, NGX_HTTP_REGISTRY_MANIFEST_INVALID,
                                         invalid);
    }

    if (rc != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    return ngx_http_registry_store_manifest_put(op, m);
}


/* 201: Location, the digest, an OCI-Tag per tag argument, OCI-Subject */

static ngx_int_t
ngx_http_registry_manifest_stored(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_str_t                     *tag;
    ngx_uint_t                     i;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_manifest_t  *m;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    m = &ctx->manifest;

    if (rc != NGX_OK) {
        return ngx_http_registry_send_fault(r, &ctx->task.op.fault);
    }

    ctx->digest = m->digest.text;

    tag = ctx->query_tags->elts;

    for (i = 0; i < ctx->query_tags->nelts; i++) {
        if (ngx_http_registry_add_header(r, "OCI-Tag", &tag[i]) == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if ((m->descriptor.len
         && ngx_http_registry_add_header(r, "OCI-Subject", &m->subject.text)
            == NULL)
        || ngx_http_registry_location(r, "manifests", &m->digest.text)
           != NGX_OK
        || ngx_http_registry_digest_headers(r, &m->digest) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_send_empty(r, NGX_HTTP_CREATED);
}


/* ---- DELETE ---- */

/*
 * By digest: the revision goes, with every tag pointing at it.  By tag:
 * only the tag.  Blob bytes stay until garbage collection, as in
 * distribution.
 */

ngx_int_t
ngx_http_registry_manifest_delete(ngx_http_request_t *r)
{
    return ngx_http_registry_task_start(r, ngx_http_registry_delete_work,
                                        ngx_http_get_module_ctx(r,
                                                    ngx_http_registry_module),
                                        ngx_http_registry_manifest_deleted);
}


static ngx_int_t
ngx_http_registry_delete_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_ctx_t *ctx = data;

    if (ctx->route.by_digest) {
        return ngx_http_registry_store_manifest_delete(op, &ctx->route.name,
                                                &ctx->route.digest,
                                                ctx->conf->manifest_max_size);
    }

    return ngx_http_registry_store_tag_delete(op, &ctx->route.name,
                                              &ctx->route.reference);
}


static ngx_int_t
ngx_http_registry_manifest_deleted(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (rc != NGX_OK) {
        return ngx_http_registry_store_failed(r, &ctx->task.op, rc,
                                          NGX_HTTP_REGISTRY_MANIFEST_UNKNOWN);
    }

    return ngx_http_registry_send_empty(r, NGX_HTTP_ACCEPTED);
}
