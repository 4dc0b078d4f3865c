
/*
 * ngx_http_registry_module: manifests, PUT, GET, HEAD and DELETE.
 *
 * A manifest's digest is the hash of the exact bytes received; those bytes
 * are stored as a blob and served unchanged, never re-serialised.  Its
 * media type is read from the manifest itself when serving, as
 * distribution does, so stores written by either are served alike.
 */


#include "ngx_http_registry.h"

#include <jansson.h>


#define NGX_HTTP_REGISTRY_IMAGE  1
#define NGX_HTTP_REGISTRY_INDEX  2

#define NGX_HTTP_REGISTRY_OCI_MANIFEST                                       \
    "application/vnd.oci.image.manifest.v1+json"
#define NGX_HTTP_REGISTRY_OCI_INDEX                                          \
    "application/vnd.oci.image.index.v1+json"
#define NGX_HTTP_REGISTRY_SCHEMA1                                            \
    "application/vnd.docker.distribution.manifest.v1+"


typedef struct {
    const char  *name;
    ngx_uint_t   kind;     /* 0: refused */
} ngx_http_registry_media_type_t;


static ngx_http_registry_media_type_t  ngx_http_registry_media_types[] = {
    { NGX_HTTP_REGISTRY_OCI_MANIFEST, NGX_HTTP_REGISTRY_IMAGE },
    { "application/vnd.docker.distribution.manifest.v2+json",
      NGX_HTTP_REGISTRY_IMAGE },
    { NGX_HTTP_REGISTRY_OCI_INDEX, NGX_HTTP_REGISTRY_INDEX },
    { "application/vnd.docker.distribution.manifest.list.v2+json",
      NGX_HTTP_REGISTRY_INDEX },
    { "application/vnd.docker.distribution.manifest.v1+json", 0 },
    { "application/vnd.docker.distribution.manifest.v1+prettyjws", 0 },
    { NULL, 0 }
};


/* layers that by definition are not pushed (Windows base images) */

static const char  *ngx_http_registry_nondistributable[] = {
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    NULL
};


static ngx_int_t ngx_http_registry_manifest_resolve(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_manifest_read(ngx_http_request_t *r,
    ngx_str_t *path, ngx_str_t *body);
static ngx_int_t ngx_http_registry_scan_media_type(ngx_str_t *body,
    ngx_str_t *type);
static u_char *ngx_http_registry_json_value_end(u_char *p, u_char *last);
static u_char *ngx_http_registry_json_string_end(u_char *p, u_char *last);
static u_char *ngx_http_registry_json_space(u_char *p, u_char *last);
static ngx_int_t ngx_http_registry_manifest_chunk(ngx_http_request_t *r,
    u_char *data, size_t len);
static void ngx_http_registry_manifest_done(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_manifest_accept(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);
static const char *ngx_http_registry_manifest_validate(ngx_http_request_t *r,
    json_t *root, ngx_uint_t *kind);
static const char *ngx_http_registry_manifest_type(ngx_http_request_t *r,
    json_t *root, ngx_uint_t *kind);
static const char *ngx_http_registry_descriptor_invalid(json_t *desc);
static ngx_int_t ngx_http_registry_manifest_references(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, json_t *root, ngx_uint_t kind);
static ngx_int_t ngx_http_registry_manifest_linked(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, json_t *desc, ngx_uint_t manifest);
static ngx_int_t ngx_http_registry_manifest_store(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_manifest_tag(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_str_t *tag,
    ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_manifest_query_tags(ngx_http_request_t *r,
    ngx_array_t *tags);
static ngx_int_t ngx_http_registry_manifest_referrer(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, json_t *root,
    ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_referrer_describe(ngx_pool_t *pool,
    json_t *root, size_t size, ngx_http_registry_digest_t *digest,
    ngx_http_registry_digest_t *subject, ngx_str_t *descriptor);
static ngx_int_t ngx_http_registry_manifest_unrefer(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_manifest_untag_all(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_http_registry_digest_t *digest);
static const char *ngx_http_registry_served_type(ngx_pool_t *pool,
    ngx_str_t *body);
static ngx_uint_t ngx_http_registry_nondistributable_layer(json_t *desc);


/* ---- GET and HEAD ---- */

ngx_int_t
ngx_http_registry_manifest_get(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_buf_t                     *b;
    ngx_str_t                      path, body;
    const char                    *type;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_digest_t     digest;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ngx_http_registry_manifest_resolve(r, ctx, &digest) != NGX_OK) {
        return ctx->rc;
    }

    if (ngx_http_registry_store_blob_path(&ctx->store, &path, &digest)
        == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_registry_manifest_read(r, &path, &body);

    if (rc == NGX_DECLINED) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_MANIFEST_UNKNOWN,
                                       NULL);
    }

    if (rc != NGX_OK) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body.data;
    b->last = body.data + body.len;
    b->memory = 1;

    type = ngx_http_registry_served_type(r->pool, &body);

    if (ngx_http_registry_digest_headers(r, &digest) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_strncmp(type, NGX_HTTP_REGISTRY_SCHEMA1,
                    sizeof(NGX_HTTP_REGISTRY_SCHEMA1) - 1) == 0
        && ngx_http_registry_warning(r, "Docker schema1 manifests are "
                                     "deprecated; this one is served read-only"
                                     ", push it again as schema2 or OCI")
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_send_body(r, NGX_HTTP_OK, type, b);
}


/*
 * The manifest's bytes, through open_file_cache as blobs are (they are
 * immutable, named by their digest): one pread() when the descriptor is
 * cached.  NGX_DECLINED: not there.
 */

static ngx_int_t
ngx_http_registry_manifest_read(ngx_http_request_t *r, ngx_str_t *path,
    ngx_str_t *body)
{
    ssize_t                        n;
    ngx_int_t                      rc;
    ngx_open_file_info_t           of;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    rc = ngx_http_registry_blob_open(r, path, &of);
    if (rc != NGX_OK) {
        return rc;
    }

    if (of.size > (off_t) rlcf->manifest_max_size) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "manifest \"%s\" is larger than "
                      "registry_manifest_max_size", path->data);
        return NGX_ERROR;
    }

    body->len = (size_t) of.size;
    body->data = ngx_pnalloc(r->pool, ngx_max(body->len, 1));
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    n = pread(of.fd, body->data, body->len, 0);

    if (n != (ssize_t) body->len) {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                      "pread() \"%s\" failed or was short", path->data);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The digest a reference names, if the repository holds that manifest:
 * a tag's current link, then the revision link.
 */

static ngx_int_t
ngx_http_registry_manifest_resolve(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_http_registry_digest_t *digest)
{
    ngx_int_t  rc;
    ngx_str_t  link;

    if (ctx->route.by_digest) {
        *digest = ctx->route.digest;

    } else {
        if (ngx_http_registry_store_tag_link(&ctx->store, &link,
                                             &ctx->route.name,
                                             &ctx->route.reference)
            == NULL)
        {
            return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
        }

        rc = ngx_http_registry_links_read(&ctx->store, &link, digest);

        if (rc == NGX_DECLINED) {
            return ngx_http_registry_fail(r,
                                          NGX_HTTP_REGISTRY_MANIFEST_UNKNOWN,
                                          "unknown tag");
        }

        if (rc != NGX_OK) {
            return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
        }
    }

    if (ngx_http_registry_store_revision_link(&ctx->store, &link,
                                              &ctx->route.name, digest)
        == NULL)
    {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    rc = ngx_http_registry_links_exist(&ctx->store, &link);

    if (rc == NGX_DECLINED) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_MANIFEST_UNKNOWN,
                                      NULL);
    }

    if (rc != NGX_OK) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    return NGX_OK;
}


/*
 * The media type to serve: the manifest's own mediaType, else what its
 * shape says (an OCI manifest may leave mediaType out; schema1 has none).
 */

static const char *
ngx_http_registry_served_type(ngx_pool_t *pool, ngx_str_t *body)
{
    u_char      *copy;
    size_t       len;
    json_t      *root, *mt;
    ngx_str_t    scanned;
    const char  *type;

    if (ngx_http_registry_scan_media_type(body, &scanned) == NGX_OK) {
        copy = ngx_pnalloc(pool, scanned.len + 1);
        if (copy == NULL) {
            return "application/json";
        }

        (void) ngx_cpystrn(copy, scanned.data, scanned.len + 1);

        return (char *) copy;
    }

    /* no plain mediaType: the slow way, from the manifest's shape */

    root = json_loadb((char *) body->data, body->len, 0, NULL);
    if (root == NULL) {
        return "application/json";
    }

    mt = json_object_get(root, "mediaType");

    if (json_is_string(mt)) {
        len = json_string_length(mt);
        copy = ngx_pnalloc(pool, len + 1);

        if (copy) {
            ngx_memcpy(copy, json_string_value(mt), len + 1);
        }

        type = (char *) copy;

    } else if (json_object_get(root, "manifests")) {
        type = NGX_HTTP_REGISTRY_OCI_INDEX;

    } else if (json_object_get(root, "signatures")) {
        type = NGX_HTTP_REGISTRY_SCHEMA1 "prettyjws";

    } else if (json_integer_value(json_object_get(root, "schemaVersion"))
               == 1)
    {
        type = NGX_HTTP_REGISTRY_SCHEMA1 "json";

    } else if (json_object_get(root, "config")) {
        type = NGX_HTTP_REGISTRY_OCI_MANIFEST;

    } else {
        type = NULL;
    }

    json_decref(root);

    return type ? type : "application/json";
}


/*
 * The top-level "mediaType" string of a manifest, found without building
 * a JSON tree: the hot path of every manifest GET.  The other top-level
 * values are skipped through; the last "mediaType" wins, as in jansson
 * and Go.  NGX_DECLINED: none, a key or value with escapes, or not a JSON
 * object, which the caller leaves to jansson.
 */

static ngx_int_t
ngx_http_registry_scan_media_type(ngx_str_t *body, ngx_str_t *type)
{
    u_char     *p, *last, *key, *end;
    ngx_int_t   rc;

    p = body->data;
    last = body->data + body->len;
    rc = NGX_DECLINED;

    p = ngx_http_registry_json_space(p, last);

    if (p == last || *p != '{') {
        return NGX_DECLINED;
    }

    for ( ;; ) {
        p = ngx_http_registry_json_space(p + 1, last);

        if (p == last || *p != '"') {
            return NGX_DECLINED;
        }

        key = p + 1;
        p = ngx_http_registry_json_string_end(p, last);
        if (p == NULL) {
            return NGX_DECLINED;
        }

        end = p - 1;

        if (ngx_strlchr(key, end, '\\')) {
            return NGX_DECLINED;    /* an escaped key may spell mediaType */
        }

        p = ngx_http_registry_json_space(p, last);

        if (p == last || *p != ':') {
            return NGX_DECLINED;
        }

        p = ngx_http_registry_json_space(p + 1, last);

        if (end - key == 9 && ngx_strncmp(key, "mediaType", 9) == 0) {
            if (p == last || *p != '"') {
                return NGX_DECLINED;
            }

            type->data = p + 1;
            p = ngx_http_registry_json_string_end(p, last);
            if (p == NULL) {
                return NGX_DECLINED;
            }

            type->len = p - 1 - type->data;
            rc = ngx_strlchr(type->data, p - 1, '\\') ? NGX_DECLINED : NGX_OK;

        } else {
            p = ngx_http_registry_json_value_end(p, last);
            if (p == NULL) {
                return NGX_DECLINED;
            }
        }

        p = ngx_http_registry_json_space(p, last);

        if (p == last) {
            return NGX_DECLINED;
        }

        if (*p == '}') {
            return rc;
        }

        if (*p != ',') {
            return NGX_DECLINED;
        }
    }
}


/* past a JSON value: a string, a nested object or array, or a scalar */

static u_char *
ngx_http_registry_json_value_end(u_char *p, u_char *last)
{
    ngx_uint_t  depth;

    if (p == last) {
        return NULL;
    }

    if (*p == '"') {
        return ngx_http_registry_json_string_end(p, last);
    }

    if (*p != '{' && *p != '[') {
        while (p < last && *p != ',' && *p != '}' && *p != ']'
               && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
        {
            p++;
        }

        return p;
    }

    depth = 0;

    while (p < last) {
        switch (*p) {

        case '"':
            p = ngx_http_registry_json_string_end(p, last);
            if (p == NULL) {
                return NULL;
            }

            continue;

        case '{':
        case '[':
            depth++;
            break;

        case '}':
        case ']':
            if (--depth == 0) {
                return p + 1;
            }

            break;
        }

        p++;
    }

    return NULL;
}


/* p at a string's opening quote: just past its closing one, or NULL */

static u_char *
ngx_http_registry_json_string_end(u_char *p, u_char *last)
{
    for (p++; p < last; p++) {
        if (*p == '\\') {
            p++;
            continue;
        }

        if (*p == '"') {
            return p + 1;
        }
    }

    return NULL;
}


static u_char *
ngx_http_registry_json_space(u_char *p, u_char *last)
{
    while (p < last && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    {
        p++;
    }

    return p;
}


/* ---- PUT ---- */

ngx_int_t
ngx_http_registry_manifest_put(ngx_http_request_t *r)
{
    size_t                         size;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_loc_conf_t  *rlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    if (r->headers_in.content_length_n > (off_t) rlcf->manifest_max_size) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_SIZE_INVALID,
                                       "manifest is too large");
    }

    size = (r->headers_in.content_length_n >= 0)
           ? (size_t) r->headers_in.content_length_n : 16384;

    ctx->manifest = ngx_create_temp_buf(r->pool, ngx_max(size, 1));
    if (ctx->manifest == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_read_body(r, ngx_http_registry_manifest_chunk,
                                       ngx_http_registry_manifest_done);
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

    b = ctx->manifest;
    used = b->last - b->pos;

    if (used + len > rlcf->manifest_max_size) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_SIZE_INVALID,
                                      "manifest is too large");
    }

    if ((size_t) (b->end - b->last) < len) {
        size = ngx_min(ngx_max(2 * (size_t) (b->end - b->start), used + len),
                       rlcf->manifest_max_size);

        nb = ngx_create_temp_buf(r->pool, size);
        if (nb == NULL) {
            return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL,
                                          NULL);
        }

        nb->last = ngx_cpymem(nb->last, b->pos, used);
        ctx->manifest = nb;
        b = nb;
    }

    b->last = ngx_cpymem(b->last, data, len);

    return NGX_OK;
}


static void
ngx_http_registry_manifest_done(ngx_http_request_t *r)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    /* success or not, ctx->rc is the result of the response sent */
    (void) ngx_http_registry_manifest_accept(r, ctx);

    ngx_http_finalize_request(r, ctx->rc);
}


/* checks the received manifest, stores it, and answers 201 */

static ngx_int_t
ngx_http_registry_manifest_accept(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    json_t                      *root;
    ngx_str_t                    body, *tag;
    ngx_uint_t                   kind, i, tracked;
    const char                  *invalid;
    ngx_array_t                  tags;
    json_error_t                 jerr;
    ngx_pool_cleanup_t          *cln;
    ngx_http_registry_hash_t     hash;
    ngx_http_registry_digest_t   digest;

    body.data = ctx->manifest->pos;
    body.len = ctx->manifest->last - ctx->manifest->pos;

    ngx_http_registry_hash_init(&hash, ctx->route.by_digest
                                       ? ctx->route.digest.alg
                                       : NGX_HTTP_REGISTRY_SHA256);
    ngx_http_registry_hash_update(&hash, body.data, body.len);

    if (ngx_http_registry_hash_final(&hash, r->pool, &digest) != NGX_OK) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    if (ctx->route.by_digest
        && !ngx_http_registry_digest_equal(&digest, &ctx->route.digest))
    {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_DIGEST_INVALID,
                                      "manifest bytes hash differently");
    }

    if (ngx_http_registry_manifest_query_tags(r, &tags) != NGX_OK) {
        return NGX_ABORT;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    root = json_loadb((char *) body.data, body.len, 0, &jerr);
    if (root == NULL) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_MANIFEST_INVALID,
                                      "manifest is not valid JSON");
    }

    cln->handler = ngx_http_registry_json_cleanup;
    cln->data = root;

    invalid = ngx_http_registry_manifest_validate(r, root, &kind);
    if (invalid) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_MANIFEST_INVALID,
                                      invalid);
    }

    if (ngx_http_registry_manifest_references(r, ctx, root, kind) != NGX_OK) {
        return NGX_ABORT;
    }

    /*
     * A referrers index entry goes before the revision link (an entry
     * without its revision is not listed), and an index that was complete
     * is restamped after it, so our own write does not look foreign.
     */

    tracked = ngx_http_registry_referrers_tracked(&ctx->store,
                                                  &ctx->route.name);

    if (ngx_http_registry_manifest_referrer(r, ctx, root, &digest) != NGX_OK
        || ngx_http_registry_manifest_store(r, ctx, &digest) != NGX_OK)
    {
        return NGX_ABORT;
    }

    if (tracked) {
        ngx_http_registry_referrers_restamp(&ctx->store, &ctx->route.name);
    }

    tag = tags.elts;

    for (i = 0; i < tags.nelts; i++) {
        if (ngx_http_registry_manifest_tag(r, ctx, &tag[i], &digest)
            != NGX_OK)
        {
            return NGX_ABORT;
        }

        if (ngx_http_registry_add_header(r, "OCI-Tag", &tag[i]) == NULL) {
            return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL,
                                          NULL);
        }
    }

    if (ngx_http_registry_location(r, "manifests", &digest.text) != NGX_OK
        || ngx_http_registry_digest_headers(r, &digest) != NGX_OK)
    {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    ctx->rc = ngx_http_registry_send_empty(r, NGX_HTTP_CREATED);

    return NGX_OK;
}


/*
 * The "tag" query arguments of a push (OCI 1.1), all valid or none taken;
 * nginx's ngx_http_arg() finds only the first of a repeated argument.
 */

static ngx_int_t
ngx_http_registry_manifest_query_tags(ngx_http_request_t *r,
    ngx_array_t *tags)
{
    u_char     *p, *last, *amp, *src, *dst;
    ngx_str_t  *tag;

    if (ngx_array_init(tags, r->pool, 4, sizeof(ngx_str_t)) != NGX_OK) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

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

        tag = ngx_array_push(tags);
        if (tag == NULL) {
            return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
        }

        tag->data = ngx_pnalloc(r->pool, amp - p);
        if (tag->data == NULL) {
            return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
        }

        src = p + 4;
        dst = tag->data;
        ngx_unescape_uri(&dst, &src, amp - p - 4, 0);
        tag->len = dst - tag->data;

        if (ngx_http_registry_valid_tag(tag) != NGX_OK) {
            return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_TAG_INVALID,
                                          "invalid tag argument");
        }
    }

    return NGX_OK;
}


/* a manifest with a subject: OCI-Subject, and its referrers index entry */

static ngx_int_t
ngx_http_registry_manifest_referrer(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, json_t *root,
    ngx_http_registry_digest_t *digest)
{
    ngx_int_t                    rc;
    ngx_str_t                    descriptor;
    ngx_http_registry_digest_t   subject;

    rc = ngx_http_registry_referrer_describe(r->pool, root,
                                             ctx->manifest->last
                                             - ctx->manifest->pos,
                                             digest, &subject, &descriptor);
    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    if (rc != NGX_OK
        || ngx_http_registry_referrers_add(&ctx->store, &ctx->route.name,
                                           &subject, digest, &descriptor)
           != NGX_OK)
    {
        return ngx_http_registry_fail_errno(r, ngx_errno);
    }

    if (ngx_http_registry_add_header(r, "OCI-Subject", &subject.text)
        == NULL)
    {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    return NGX_OK;
}


/*
 * What the referrers API lists for a manifest with a subject: its media
 * type, digest and size, its artifactType (else, for an image manifest,
 * its config's media type) and its annotations.  NGX_DECLINED: the
 * manifest has no (valid) subject.
 */

ngx_int_t
ngx_http_registry_referrer_descriptor(ngx_pool_t *pool, ngx_str_t *manifest,
    ngx_http_registry_digest_t *digest, ngx_http_registry_digest_t *subject,
    ngx_str_t *descriptor)
{
    json_t     *root;
    ngx_int_t   rc;

    root = json_loadb((char *) manifest->data, manifest->len, 0, NULL);
    if (root == NULL) {
        return NGX_DECLINED;
    }

    rc = ngx_http_registry_referrer_describe(pool, root, manifest->len,
                                             digest, subject, descriptor);
    json_decref(root);

    return rc;
}


/* the same, from a manifest parsed already */

static ngx_int_t
ngx_http_registry_referrer_describe(ngx_pool_t *pool, json_t *root,
    size_t size, ngx_http_registry_digest_t *digest,
    ngx_http_registry_digest_t *subject, ngx_str_t *descriptor)
{
    char        *dump;
    json_t      *desc, *field, *artifact;
    ngx_int_t    rc;
    ngx_str_t    text;
    const char  *type;

    rc = NGX_DECLINED;
    desc = NULL;
    dump = NULL;

    field = json_object_get(root, "subject");

    if (!json_is_object(root)
        || ngx_http_registry_descriptor_invalid(field) != NULL)
    {
        goto done;
    }

    text.len = json_string_length(json_object_get(field, "digest"));
    text.data = ngx_pnalloc(pool, text.len);
    if (text.data == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(text.data, json_string_value(json_object_get(field, "digest")),
               text.len);

    if (ngx_http_registry_parse_digest(&text, subject) != NGX_OK) {
        goto done;
    }

    field = json_object_get(root, "mediaType");
    type = json_is_string(field)
           ? json_string_value(field)
           : (json_object_get(root, "manifests") ? NGX_HTTP_REGISTRY_OCI_INDEX
                                                 : NGX_HTTP_REGISTRY_OCI_MANIFEST);

    artifact = json_object_get(root, "artifactType");

    if (!json_is_string(artifact) || json_string_length(artifact) == 0) {
        artifact = json_object_get(json_object_get(root, "config"),
                                   "mediaType");
    }

    desc = json_pack("{s:s, s:s%, s:I}", "mediaType", type,
                     "digest", digest->text.data, digest->text.len,
                     "size", (json_int_t) size);
    if (desc == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    if (json_is_string(artifact) && json_string_length(artifact)) {
        json_object_set(desc, "artifactType", artifact);
    }

    field = json_object_get(root, "annotations");

    if (json_is_object(field)) {
        json_object_set(desc, "annotations", field);
    }

    dump = json_dumps(desc, JSON_COMPACT);
    if (dump == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    descriptor->len = ngx_strlen(dump);
    descriptor->data = ngx_pnalloc(pool, descriptor->len);
    if (descriptor->data == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(descriptor->data, dump, descriptor->len);
    rc = NGX_OK;

done:

    free(dump);
    json_decref(desc);

    return rc;
}


/* NULL, or why the manifest is invalid */

static const char *
ngx_http_registry_manifest_validate(ngx_http_request_t *r, json_t *root,
    ngx_uint_t *kind)
{
    size_t       i;
    json_t      *sv, *list, *desc;
    const char  *invalid, *key;

    if (!json_is_object(root)) {
        return "manifest is not a JSON object";
    }

    sv = json_object_get(root, "schemaVersion");

    if (json_is_integer(sv) && json_integer_value(sv) == 1) {
        return "Docker schema1 manifests are deprecated and not accepted: "
               "push schema2 or OCI";
    }

    if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
        return "schemaVersion must be 2";
    }

    invalid = ngx_http_registry_manifest_type(r, root, kind);
    if (invalid) {
        return invalid;
    }

    if (*kind == NGX_HTTP_REGISTRY_IMAGE) {
        invalid = ngx_http_registry_descriptor_invalid(
                                            json_object_get(root, "config"));
        if (invalid) {
            return "config is not a valid descriptor";
        }

        key = "layers";

    } else {
        key = "manifests";
    }

    list = json_object_get(root, key);

    if (!json_is_array(list)) {
        return (*kind == NGX_HTTP_REGISTRY_IMAGE) ? "layers must be an array"
                                                 : "manifests must be an "
                                                   "array";
    }

    json_array_foreach(list, i, desc) {
        if (ngx_http_registry_descriptor_invalid(desc)) {
            return (*kind == NGX_HTTP_REGISTRY_IMAGE)
                   ? "a layer is not a valid descriptor"
                   : "a child manifest is not a valid descriptor";
        }
    }

    desc = json_object_get(root, "subject");

    if (desc && ngx_http_registry_descriptor_invalid(desc)) {
        return "subject is not a valid descriptor";
    }

    return NULL;
}


/*
 * The kind of manifest: its mediaType field, else the Content-Type header,
 * which must agree with the field when both say something specific.
 */

static const char *
ngx_http_registry_manifest_type(ngx_http_request_t *r, json_t *root,
    ngx_uint_t *kind)
{
    u_char      *semicolon;
    json_t      *mt;
    ngx_str_t    ct;
    ngx_uint_t   i;
    const char  *type;

    ngx_str_null(&ct);

    if (r->headers_in.content_type) {
        ct = r->headers_in.content_type->value;
        semicolon = ngx_strlchr(ct.data, ct.data + ct.len, ';');

        if (semicolon) {
            ct.len = semicolon - ct.data;
        }

        while (ct.len && (ct.data[ct.len - 1] == ' '
                          || ct.data[ct.len - 1] == '\t'))
        {
            ct.len--;
        }

        if (ct.len == sizeof("application/json") - 1
            && ngx_strncasecmp(ct.data, (u_char *) "application/json",
                               ct.len) == 0)
        {
            ct.len = 0;
        }
    }

    mt = json_object_get(root, "mediaType");

    if (mt && !json_is_string(mt)) {
        return "mediaType must be a string";
    }

    if (mt && ct.len
        && (ct.len != json_string_length(mt)
            || ngx_strncmp(ct.data, json_string_value(mt), ct.len) != 0))
    {
        return "mediaType does not match Content-Type";
    }

    for (i = 0; ngx_http_registry_media_types[i].name; i++) {
        type = ngx_http_registry_media_types[i].name;

        if (mt ? ngx_strcmp(json_string_value(mt), type) == 0
               : (ct.len == ngx_strlen(type)
                  && ngx_strncmp(ct.data, type, ct.len) == 0))
        {
            *kind = ngx_http_registry_media_types[i].kind;

            return *kind ? NULL : "Docker schema1 manifests are deprecated "
                                  "and not accepted: push schema2 or OCI";
        }
    }

    if (mt || ct.len) {
        return "unsupported manifest media type";
    }

    /* an OCI manifest or index may leave its media type out */

    if (json_object_get(root, "manifests")) {
        *kind = NGX_HTTP_REGISTRY_INDEX;
        return NULL;
    }

    if (json_object_get(root, "config")) {
        *kind = NGX_HTTP_REGISTRY_IMAGE;
        return NULL;
    }

    return "manifest has no media type";
}


static const char *
ngx_http_registry_descriptor_invalid(json_t *desc)
{
    json_t                      *digest, *size, *mt;
    ngx_str_t                    text;
    ngx_http_registry_digest_t   parsed;

    if (!json_is_object(desc)) {
        return "not an object";
    }

    mt = json_object_get(desc, "mediaType");
    digest = json_object_get(desc, "digest");
    size = json_object_get(desc, "size");

    if (!json_is_string(mt)) {
        return "no mediaType";
    }

    if (!json_is_integer(size) || json_integer_value(size) < 0) {
        return "no valid size";
    }

    if (!json_is_string(digest)) {
        return "no digest";
    }

    text.data = (u_char *) json_string_value(digest);
    text.len = json_string_length(digest);

    if (ngx_http_registry_parse_digest(&text, &parsed) != NGX_OK) {
        return "invalid digest";
    }

    return NULL;
}


/*
 * Everything the manifest references must be in the repository: config
 * and layers as blobs (but non-distributable layers, never pushed), an
 * index's children as manifests.  A subject need not exist (OCI 1.1).
 */

static ngx_int_t
ngx_http_registry_manifest_references(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, json_t *root, ngx_uint_t kind)
{
    size_t   i;
    json_t  *desc;

    if (kind == NGX_HTTP_REGISTRY_INDEX) {
        json_array_foreach(json_object_get(root, "manifests"), i, desc) {
            if (ngx_http_registry_manifest_linked(r, ctx, desc, 1) != NGX_OK) {
                return NGX_ABORT;
            }
        }

        return NGX_OK;
    }

    if (ngx_http_registry_manifest_linked(r, ctx,
                                          json_object_get(root, "config"), 0)
        != NGX_OK)
    {
        return NGX_ABORT;
    }

    json_array_foreach(json_object_get(root, "layers"), i, desc) {
        if (!ngx_http_registry_nondistributable_layer(desc)
            && ngx_http_registry_manifest_linked(r, ctx, desc, 0) != NGX_OK)
        {
            return NGX_ABORT;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_manifest_linked(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, json_t *desc, ngx_uint_t manifest)
{
    u_char                      *p;
    json_t                      *digest;
    ngx_int_t                    rc;
    ngx_str_t                    text, link;
    ngx_http_registry_digest_t   parsed;

    digest = json_object_get(desc, "digest");

    text.len = json_string_length(digest);
    text.data = ngx_pnalloc(r->pool, text.len + 1);
    if (text.data == NULL) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    p = ngx_cpymem(text.data, json_string_value(digest), text.len);
    *p = '\0';

    (void) ngx_http_registry_parse_digest(&text, &parsed);

    p = manifest
        ? ngx_http_registry_store_revision_link(&ctx->store, &link,
                                                &ctx->route.name, &parsed)
        : ngx_http_registry_store_layer_link(&ctx->store, &link,
                                             &ctx->route.name, &parsed);
    if (p == NULL) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    rc = ngx_http_registry_store_exists(&link);

    if (rc == NGX_DECLINED) {
        return ngx_http_registry_fail(r,
                                      NGX_HTTP_REGISTRY_MANIFEST_BLOB_UNKNOWN,
                                      (char *) text.data);
    }

    if (rc != NGX_OK) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_registry_nondistributable_layer(json_t *desc)
{
    ngx_uint_t   i;
    const char  *mt;

    mt = json_string_value(json_object_get(desc, "mediaType"));

    for (i = 0; ngx_http_registry_nondistributable[i]; i++) {
        if (ngx_strcmp(mt, ngx_http_registry_nondistributable[i]) == 0) {
            return 1;
        }
    }

    return 0;
}


/*
 * The bytes become a blob, then the repository's revision link; a tag
 * gets its history entry, then its current link, so a tag only ever
 * points at a manifest that is complete.
 */

static ngx_int_t
ngx_http_registry_manifest_store(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_http_registry_digest_t *digest)
{
    ngx_int_t   rc;
    ngx_str_t   path;
    ngx_str_t  *name;

    name = &ctx->route.name;

    if (ngx_http_registry_store_blob_path(&ctx->store, &path, digest) == NULL) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    rc = ngx_http_registry_store_exists(&path);

    if (rc == NGX_DECLINED) {
        rc = ngx_http_registry_store_write_file(&ctx->store, &path,
                                                ctx->manifest->pos,
                                                ctx->manifest->last
                                                - ctx->manifest->pos);
    }

    if (rc != NGX_OK
        || ngx_http_registry_store_revision_link(&ctx->store, &path, name,
                                                 digest) == NULL
        || ngx_http_registry_store_write_link(&ctx->store, &path, digest)
           != NGX_OK)
    {
        return ngx_http_registry_fail_errno(r, ngx_errno);
    }

    if (ctx->route.by_digest) {
        return NGX_OK;
    }

    return ngx_http_registry_manifest_tag(r, ctx, &ctx->route.reference,
                                          digest);
}


/* the tag's history entry first, then its current link */

static ngx_int_t
ngx_http_registry_manifest_tag(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_str_t *tag,
    ngx_http_registry_digest_t *digest)
{
    ngx_int_t   rc;
    ngx_str_t   path;
    ngx_str_t  *name, *alg;

    name = &ctx->route.name;
    alg = ngx_http_registry_alg_name(digest->alg);

    if (ngx_http_registry_store_path(&ctx->store, &path,
                                     "repositories/%V/_manifests/tags/%V/"
                                     "index/%V/%V/link", name, tag, alg,
                                     &digest->hex) == NULL
        || ngx_http_registry_store_write_link(&ctx->store, &path, digest)
           != NGX_OK
        || ngx_http_registry_store_tag_link(&ctx->store, &path, name, tag)
           == NULL)
    {
        return ngx_http_registry_fail_errno(r, ngx_errno);
    }

    rc = ngx_http_registry_store_write_link(&ctx->store, &path, digest);

    /* the tag may have moved: what workers remember of it is stale */
    ngx_http_registry_links_changed(&ctx->store);

    if (rc != NGX_OK) {
        return ngx_http_registry_fail_errno(r, ngx_errno);
    }

    return NGX_OK;
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
    ngx_int_t                 rc;
    ngx_str_t                 path;
    ngx_uint_t                tracked;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ctx->route.by_digest) {
        if (ngx_http_registry_store_revision_link(&ctx->store, &path,
                                                  &ctx->route.name,
                                                  &ctx->route.digest)
            == NULL)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_http_registry_store_exists(&path);

        if (rc == NGX_OK) {
            tracked = ngx_http_registry_referrers_tracked(&ctx->store,
                                                          &ctx->route.name);

            if (ngx_http_registry_manifest_unrefer(r, ctx, &ctx->route.digest)
                != NGX_OK
                || ngx_http_registry_manifest_untag_all(r, ctx,
                                                        &ctx->route.digest)
                   != NGX_OK)
            {
                /* some tags may be gone already */
                ngx_http_registry_links_changed(&ctx->store);
                return ctx->rc;
            }

            rc = ngx_http_registry_store_delete_link(&ctx->store, &path);

            if (rc == NGX_OK && tracked) {
                ngx_http_registry_referrers_restamp(&ctx->store,
                                                    &ctx->route.name);
            }
        }

    } else {
        if (ngx_http_registry_store_path(&ctx->store, &path,
                                         "repositories/%V/_manifests/tags/%V",
                                         &ctx->route.name,
                                         &ctx->route.reference)
            == NULL)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_http_registry_store_delete_tree(&ctx->store, &path);
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_MANIFEST_UNKNOWN,
                                       NULL);
    }

    ngx_http_registry_links_changed(&ctx->store);

    if (rc != NGX_OK) {
        return ngx_http_registry_errno_error(r, ngx_errno);
    }

    return ngx_http_registry_send_empty(r, NGX_HTTP_ACCEPTED);
}


/* a deleted referrer leaves the referrers index */

static ngx_int_t
ngx_http_registry_manifest_unrefer(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_http_registry_digest_t *digest)
{
    ngx_int_t                      rc;
    ngx_str_t                      path, body, descriptor;
    ngx_http_registry_digest_t     subject;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    if (ngx_http_registry_store_blob_path(&ctx->store, &path, digest) == NULL)
    {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    rc = ngx_http_registry_store_read_small(&ctx->store, &path,
                                            rlcf->manifest_max_size, &body);
    if (rc != NGX_OK) {
        /* no bytes (collected): no entry can be listed either */
        return NGX_OK;
    }

    if (ngx_http_registry_referrer_descriptor(r->pool, &body, digest,
                                              &subject, &descriptor)
        != NGX_OK)
    {
        return NGX_OK;
    }

    if (ngx_http_registry_store_referrer_entry(&ctx->store, &path,
                                               &ctx->route.name, &subject,
                                               digest)
        == NULL)
    {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    if (ngx_delete_file(path.data) == NGX_FILE_ERROR
        && ngx_errno != NGX_ENOENT)
    {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                      ngx_delete_file_n " \"%s\" failed", path.data);
        return ngx_http_registry_fail_errno(r, ngx_errno);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_manifest_untag_all(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_http_registry_digest_t *digest)
{
    ngx_int_t                    rc;
    ngx_str_t                    dir, path, *tag;
    ngx_uint_t                   i;
    ngx_array_t                  tags;
    ngx_http_registry_digest_t   current;

    if (ngx_array_init(&tags, r->pool, 16, sizeof(ngx_str_t)) != NGX_OK
        || ngx_http_registry_store_path(&ctx->store, &dir,
                                        "repositories/%V/_manifests/tags",
                                        &ctx->route.name) == NULL)
    {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    rc = ngx_http_registry_store_list_dir(&ctx->store, &dir, &tags);

    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    tag = tags.elts;

    for (i = 0; i < tags.nelts; i++) {
        if (ngx_http_registry_store_tag_link(&ctx->store, &path,
                                             &ctx->route.name, &tag[i])
            == NULL)
        {
            return ngx_http_registry_fail(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
        }

        rc = ngx_http_registry_store_read_link(&ctx->store, &path, &current);

        if (rc != NGX_OK || !ngx_http_registry_digest_equal(&current, digest))
        {
            continue;
        }

        /* the tag's directory: the path less "/current/link" */
        path.len -= sizeof("/current/link") - 1;
        path.data[path.len] = '\0';

        if (ngx_http_registry_store_delete_tree(&ctx->store, &path)
            == NGX_ERROR)
        {
            return ngx_http_registry_fail_errno(r, ngx_errno);
        }
    }

    return NGX_OK;
}


/* a pool cleanup that frees a jansson value */

void
ngx_http_registry_json_cleanup(void *data)
{
    json_decref(data);
}
