
/*
 * ngx_http_registry_module: responses.
 *
 * The small pieces every handler's one answer is made of: headers in and
 * out, query arguments, Location, the digest headers, and sending an
 * empty answer, a memory body or a file of the store through
 * open_file_cache (sendfile, ranges and conditional requests are then
 * nginx's own, as in ngx_http_static_module).
 */


#include "ngx_http_registry.h"


/* the spec's cap on the Warning headers of one response */
#define NGX_HTTP_REGISTRY_WARNING_MAX  4096


static void ngx_http_registry_end_body(ngx_http_request_t *r);



ngx_table_elt_t *
ngx_http_registry_add_header(ngx_http_request_t *r, const char *key,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NULL;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value = *value;

    return h;
}


/* Docker-Distribution-Api-Version, on every answer of the registry */

ngx_int_t
ngx_http_registry_api_version(ngx_http_request_t *r)
{
    static ngx_str_t  version = ngx_string("registry/2.0");

    if (ngx_http_registry_add_header(r, "Docker-Distribution-Api-Version",
                                     &version)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a request header nginx does not parse for us; NGX_DECLINED if absent */

ngx_int_t
ngx_http_registry_header_in(ngx_http_request_t *r, const char *key,
    ngx_str_t *value)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(key);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_DECLINED;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) key, len) == 0)
        {
            *value = h[i].value;
            return NGX_OK;
        }
    }
}


/*
 * Warning: 299 - "<text>", the only form the spec allows; the spec also
 * caps all Warning headers of a response at 4096 bytes, so a warning that
 * would overflow is dropped (and logged).
 */

ngx_int_t
ngx_http_registry_warning(ngx_http_request_t *r, const char *text)
{
    ngx_str_t                 value;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    value.len = sizeof("299 - \"\"") - 1 + ngx_strlen(text);

    if (ctx->warned + value.len > NGX_HTTP_REGISTRY_WARNING_MAX) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "registry: warning not sent, over the spec's limit: %s",
                      text);
        return NGX_OK;
    }

    value.data = ngx_pnalloc(r->pool, value.len);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(value.data, "299 - \"%s\"", text);

    if (ngx_http_registry_add_header(r, "Warning", &value) == NULL) {
        return NGX_ERROR;
    }

    ctx->warned += value.len;

    return NGX_OK;
}


/* Docker-Content-Digest, and the digest as ETag for If-None-Match/If-Range */

ngx_int_t
ngx_http_registry_digest_headers(ngx_http_request_t *r,
    ngx_http_registry_digest_t *digest)
{
    ngx_str_t  etag;

    if (ngx_http_registry_add_header(r, "Docker-Content-Digest",
                                     &digest->text)
        == NULL)
    {
        return NGX_ERROR;
    }

    etag.len = digest->text.len + 2;
    etag.data = ngx_pnalloc(r->pool, etag.len);
    if (etag.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(etag.data, "\"%V\"", &digest->text);

    r->headers_out.etag = ngx_http_registry_add_header(r, "ETag", &etag);

    return r->headers_out.etag ? NGX_OK : NGX_ERROR;
}


/*
 * Location of a resource, relative to the host, which clients resolve
 * against the request URL; it is added as a plain header so that nginx
 * does not rewrite it into an absolute URL with its own idea of the host.
 */

ngx_int_t
ngx_http_registry_location(ngx_http_request_t *r, const char *kind,
    ngx_str_t *reference)
{
    ngx_str_t                 value;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    value.len = sizeof("/v2///") - 1 + ctx->route.name.len + ngx_strlen(kind)
                + reference->len;
    value.data = ngx_pnalloc(r->pool, value.len);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(value.data, "/v2/%V/%s/%V", &ctx->route.name, kind,
                reference);

    return ngx_http_registry_add_header(r, "Location", &value) ? NGX_OK
                                                               : NGX_ERROR;
}


/* a query argument, percent-decoded; NGX_DECLINED if absent */

ngx_int_t
ngx_http_registry_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    return ngx_http_registry_query_arg(r->pool, &r->args, name, value);
}


/*
 * Before any answer: a body nobody read is discarded, so the connection
 * may be kept alive; one whose reading was cut short by an error is not
 * read further, and the connection closes after the answer (nginx lingers
 * on it long enough for the client to read the answer).
 */

static void
ngx_http_registry_end_body(ngx_http_request_t *r)
{
    if (r->reading_body || ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }
}


/* a bodiless response; returns what a content handler returns */

ngx_int_t
ngx_http_registry_send_empty(ngx_http_request_t *r, ngx_uint_t status)
{
    ngx_http_registry_end_body(r);

    r->headers_out.status = status;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    return ngx_http_send_header(r);
}


ngx_int_t
ngx_http_registry_send_body(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, ngx_buf_t *b)
{
    ngx_int_t    rc;
    ngx_chain_t  out;

    ngx_http_registry_end_body(r);

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * A blob's (or manifest's) data file, through open_file_cache: blobs never
 * change once published (their name is their digest), so a cached
 * descriptor cannot go stale.  Below the store's root no symbolic link
 * is followed (disable_symlinks on from there, whatever the location
 * says).  NGX_DECLINED: linked, but collected or never completed.
 */

ngx_int_t
ngx_http_registry_open_file(ngx_http_request_t *r, ngx_str_t *path,
    ngx_open_file_info_t *of)
{
    ngx_http_core_loc_conf_t      *clcf;
#if (NGX_HAVE_OPENAT)
    ngx_http_registry_loc_conf_t  *rlcf;
#endif

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    ngx_memzero(of, sizeof(ngx_open_file_info_t));

    of->read_ahead = clcf->read_ahead;
    of->directio = clcf->directio;
    of->valid = clcf->open_file_cache_valid;
    of->min_uses = clcf->open_file_cache_min_uses;
    of->errors = clcf->open_file_cache_errors;
    of->events = clcf->open_file_cache_events;

#if (NGX_HAVE_OPENAT)
    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    of->disable_symlinks = NGX_DISABLE_SYMLINKS_ON;
    of->disable_symlinks_from = rlcf->store->root.len;
#endif

    if (ngx_open_cached_file(clcf->open_file_cache, path, of, r->pool)
        != NGX_OK)
    {
        if (of->err == NGX_ENOENT || of->err == NGX_ENOTDIR) {
            return NGX_DECLINED;
        }

        if (of->err == NGX_ELOOP || of->err == NGX_EMLINK) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "registry: \"%s\" leads through a symbolic link, "
                          "which the store never follows", path->data);
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, r->connection->log, of->err,
                      "%s \"%s\" failed", of->failed, path->data);
        return NGX_ERROR;
    }

    if (!of->is_file) {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, 0,
                      "\"%s\" is not a regular file", path->data);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Sends an open data file as the body (status and headers set by the
 * caller).  A blob is sent as a static file is, with Last-Modified and
 * Range answered by nginx's filters; a manifest has neither.
 */

ngx_int_t
ngx_http_registry_send_file(ngx_http_request_t *r, ngx_str_t *path,
    ngx_uint_t blob, ngx_open_file_info_t *of)
{
    ngx_int_t    rc;
    ngx_buf_t   *b;
    ngx_chain_t  out;

    ngx_http_registry_end_body(r);

    r->headers_out.content_length_n = of->size;

    if (blob) {
        r->headers_out.last_modified_time = of->mtime;
        r->allow_ranges = 1;
    }

    /* we need to allocate all before the header would be sent */

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->file = ngx_pcalloc(r->pool, sizeof(ngx_file_t));
    if (b->file == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->file_pos = 0;
    b->file_last = of->size;

    b->in_file = b->file_last ? 1 : 0;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    b->sync = (b->last_buf || b->in_file) ? 0 : 1;

    b->file->fd = of->fd;
    b->file->name = *path;
    b->file->log = r->connection->log;
    b->file->directio = of->is_directio;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
