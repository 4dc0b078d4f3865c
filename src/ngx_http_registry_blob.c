
/*
 * ngx_http_registry_module: the blob endpoints, GET, HEAD and DELETE.
 *
 * A blob GET is a static file send, as in ngx_http_static_module: the
 * store finds the blob (the repository's link, through the link cache)
 * and its data file is sent through open_file_cache as an in_file buffer,
 * so sendfile, Range, If-None-Match and If-Range are nginx's own.  A
 * DELETE unlinks the blob from the repository, off the event loop.
 */


#include "ngx_http_registry.h"


static ngx_int_t ngx_http_registry_unlink_work(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_blob_unlinked(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_range_applies(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_range_unsatisfiable(ngx_http_request_t *r,
    off_t size);
static ngx_int_t ngx_http_registry_range_error(ngx_http_request_t *r,
    off_t size);


ngx_int_t
ngx_http_registry_blob_get(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_str_t                 path;
    ngx_open_file_info_t      of;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    rc = ngx_http_registry_store_blob_find(&ctx->op, &ctx->route.name,
                                           &ctx->route.digest, &path);

    if (rc == NGX_OK) {
        rc = ngx_http_registry_open_file(r, &path, &of);

        if (rc == NGX_ERROR) {
            return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_INTERNAL,
                                           NULL);
        }
    }

    if (rc != NGX_OK) {
        return ngx_http_registry_store_failed(r, &ctx->op, rc,
                                              NGX_HTTP_REGISTRY_BLOB_UNKNOWN);
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.last_modified_time = of.mtime;
    ngx_str_set(&r->headers_out.content_type, "application/octet-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    if (ngx_http_registry_digest_headers(r, &ctx->route.digest) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_registry_range_unsatisfiable(r, of.size)) {
        return ngx_http_registry_range_error(r, of.size);
    }

    return ngx_http_registry_send_file(r, &path, 1, &of);
}


ngx_int_t
ngx_http_registry_blob_delete(ngx_http_request_t *r)
{
    return ngx_http_registry_task_start(r, ngx_http_registry_unlink_work,
                                        ngx_http_get_module_ctx(r,
                                                    ngx_http_registry_module),
                                        ngx_http_registry_blob_unlinked);
}


static ngx_int_t
ngx_http_registry_unlink_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_ctx_t *ctx = data;

    return ngx_http_registry_store_blob_unlink(op, &ctx->route.name,
                                               &ctx->route.digest);
}


static ngx_int_t
ngx_http_registry_blob_unlinked(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (rc != NGX_OK) {
        return ngx_http_registry_store_failed(r, &ctx->task.op, rc,
                                              NGX_HTTP_REGISTRY_BLOB_UNKNOWN);
    }

    return ngx_http_registry_send_empty(r, NGX_HTTP_ACCEPTED);
}


/*
 * nginx's range filter answers an unsatisfiable Range with its own HTML
 * page; the registry answers it here first, with a JSON error.  This
 * function and ngx_http_registry_range_none() (parse.c) decide exactly as
 * ngx_http_range_header_filter() and ngx_http_range_parse() do, so every
 * other Range is left to the filter.
 */

static ngx_int_t
ngx_http_registry_range_unsatisfiable(ngx_http_request_t *r, off_t size)
{
    ngx_uint_t                 ranges;
    ngx_http_core_loc_conf_t  *clcf;

    if (!ngx_http_registry_range_applies(r)) {
        return 0;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    ranges = r->single_range ? 1 : clcf->max_ranges;

    return ngx_http_registry_range_none(r->headers_in.range->value.data + 6,
                                        size, ranges);
}


/* the conditions under which nginx's range filter parses Range at all */

static ngx_int_t
ngx_http_registry_range_applies(ngx_http_request_t *r)
{
    ngx_str_t                 *if_range, *etag;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (r->http_version < NGX_HTTP_VERSION_10
        || r != r->main
        || clcf->max_ranges == 0
        || r->headers_in.if_none_match       /* not_modified filter first */
        || r->headers_in.range == NULL
        || r->headers_in.range->value.len < 7
        || ngx_strncasecmp(r->headers_in.range->value.data,
                           (u_char *) "bytes=", 6) != 0)
    {
        return 0;
    }

    if (r->headers_in.if_range == NULL) {
        return 1;
    }

    if_range = &r->headers_in.if_range->value;

    if (if_range->len >= 2 && if_range->data[if_range->len - 1] == '"') {
        etag = &r->headers_out.etag->value;

        return if_range->len == etag->len
               && ngx_strncmp(if_range->data, etag->data, etag->len) == 0;
    }

    return ngx_parse_http_time(if_range->data, if_range->len)
           == r->headers_out.last_modified_time;
}


/* 416 with a JSON error and Content-Range: bytes, star, slash, size */

static ngx_int_t
ngx_http_registry_range_error(ngx_http_request_t *r, off_t size)
{
    ngx_str_t  value;

    value.data = ngx_pnalloc(r->pool, sizeof("bytes */") - 1 + NGX_OFF_T_LEN);
    if (value.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    value.len = ngx_sprintf(value.data, "bytes */%O", size) - value.data;

    r->headers_out.etag = NULL;
    r->headers_out.last_modified_time = -1;

    if (ngx_http_registry_add_header(r, "Content-Range", &value) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_RANGE_NOT_SATISFIABLE,
                                   NULL);
}
