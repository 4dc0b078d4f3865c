
/*
 * ngx_http_registry_module: the spec's JSON error bodies.
 *
 * Handlers name an error, or hand over the fault a store operation
 * returned; this file owns its code, status and message, so every error
 * leaves the registry in the same shape:
 *     {"errors":[{"code":"...","message":"...","detail":"..."}]}
 */


#include "ngx_http_registry.h"


typedef struct {
    ngx_str_t    code;
    ngx_uint_t   status;
    ngx_str_t    message;
} ngx_http_registry_error_t;


static ngx_buf_t *ngx_http_registry_error_body(ngx_pool_t *pool,
    ngx_http_registry_error_t *e, const char *detail);
static ngx_http_registry_error_t *ngx_http_registry_nginx_error(
    ngx_uint_t status, const char **detail);
static ngx_uint_t ngx_http_registry_nginx_status(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_error_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_error_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static u_char *ngx_http_registry_json_escape(u_char *dst, u_char *src,
    size_t len);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* indexed by ngx_http_registry_err_e */

static ngx_http_registry_error_t  ngx_http_registry_errors[] = {

    { ngx_string("BLOB_UNKNOWN"), NGX_HTTP_NOT_FOUND,
      ngx_string("blob unknown to registry") },

    { ngx_string("BLOB_UPLOAD_INVALID"), NGX_HTTP_BAD_REQUEST,
      ngx_string("blob upload invalid") },

    { ngx_string("BLOB_UPLOAD_UNKNOWN"), NGX_HTTP_NOT_FOUND,
      ngx_string("blob upload unknown to registry") },

    { ngx_string("DIGEST_INVALID"), NGX_HTTP_BAD_REQUEST,
      ngx_string("provided digest did not match uploaded content") },

    { ngx_string("MANIFEST_BLOB_UNKNOWN"), NGX_HTTP_BAD_REQUEST,
      ngx_string("manifest references a manifest or blob unknown to "
                 "registry") },

    { ngx_string("MANIFEST_INVALID"), NGX_HTTP_BAD_REQUEST,
      ngx_string("manifest invalid") },

    { ngx_string("MANIFEST_UNKNOWN"), NGX_HTTP_NOT_FOUND,
      ngx_string("manifest unknown to registry") },

    { ngx_string("NAME_INVALID"), NGX_HTTP_BAD_REQUEST,
      ngx_string("invalid repository name") },

    { ngx_string("NAME_UNKNOWN"), NGX_HTTP_NOT_FOUND,
      ngx_string("repository name not known to registry") },

    { ngx_string("SIZE_INVALID"), NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
      ngx_string("provided length did not match content length") },

    { ngx_string("UNAUTHORIZED"), NGX_HTTP_UNAUTHORIZED,
      ngx_string("authentication required") },

    { ngx_string("DENIED"), NGX_HTTP_FORBIDDEN,
      ngx_string("requested access to the resource is denied") },

    { ngx_string("UNSUPPORTED"), NGX_HTTP_NOT_ALLOWED,
      ngx_string("the operation is unsupported") },

    { ngx_string("TOOMANYREQUESTS"), NGX_HTTP_TOO_MANY_REQUESTS,
      ngx_string("too many requests") },

    { ngx_string("TAG_INVALID"), NGX_HTTP_BAD_REQUEST,
      ngx_string("manifest tag did not match URI") },

    { ngx_string("PAGINATION_NUMBER_INVALID"), NGX_HTTP_BAD_REQUEST,
      ngx_string("invalid number of results requested") },

    { ngx_string("BLOB_UPLOAD_INVALID"), NGX_HTTP_RANGE_NOT_SATISFIABLE,
      ngx_string("requested range is not the upload's next byte") },

    { ngx_string("SIZE_INVALID"), NGX_HTTP_RANGE_NOT_SATISFIABLE,
      ngx_string("requested range not satisfiable") },

    { ngx_string("NOT_FOUND"), NGX_HTTP_NOT_FOUND,
      ngx_string("no such endpoint") },

    { ngx_string("UNAVAILABLE"), NGX_HTTP_SERVICE_UNAVAILABLE,
      ngx_string("service unavailable") },

    { ngx_string("UNKNOWN"), NGX_HTTP_INTERNAL_SERVER_ERROR,
      ngx_string("unknown error") },

    { ngx_string("UNKNOWN"), 507,
      ngx_string("insufficient storage") },
};


/*
 * Sends the error and returns the result of sending, to be returned from a
 * content handler or passed to ngx_http_finalize_request().
 */

ngx_int_t
ngx_http_registry_error(ngx_http_request_t *r, ngx_http_registry_err_e code,
    const char *detail)
{
    ngx_buf_t                  *b;
    ngx_http_registry_ctx_t    *ctx;
    ngx_http_registry_error_t  *e;

    e = &ngx_http_registry_errors[code];

    if (detail == NULL) {
        detail = "";
    }

    /* for $registry_error and the metrics */

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ctx) {
        ctx->error = code;
        ctx->failed = 1;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "registry: %V %s", &e->code, detail);

    b = ngx_http_registry_error_body(r->pool, e, detail);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_send_body(r, e->status, "application/json", b);
}


static ngx_buf_t *
ngx_http_registry_error_body(ngx_pool_t *pool, ngx_http_registry_error_t *e,
    const char *detail)
{
    size_t      len;
    ngx_buf_t  *b;

    static u_char  head[] = "{\"errors\":[{\"code\":\"";
    static u_char  msg[] = "\",\"message\":\"";
    static u_char  det[] = "\",\"detail\":\"";
    static u_char  tail[] = "\"}]}\n";

    len = sizeof(head) - 1 + e->code.len + sizeof(msg) - 1
          + e->message.len + sizeof(det) - 1 + 6 * ngx_strlen(detail)
          + sizeof(tail) - 1;

    b = ngx_create_temp_buf(pool, len);
    if (b == NULL) {
        return NULL;
    }

    b->last = ngx_cpymem(b->last, head, sizeof(head) - 1);
    b->last = ngx_cpymem(b->last, e->code.data, e->code.len);
    b->last = ngx_cpymem(b->last, msg, sizeof(msg) - 1);
    b->last = ngx_cpymem(b->last, e->message.data, e->message.len);
    b->last = ngx_cpymem(b->last, det, sizeof(det) - 1);
    b->last = ngx_http_registry_json_escape(b->last, (u_char *) detail,
                                            ngx_strlen(detail));
    b->last = ngx_cpymem(b->last, tail, sizeof(tail) - 1);

    return b;
}


/* the spec's code of an error, "BLOB_UNKNOWN" */

ngx_str_t *
ngx_http_registry_error_code(ngx_http_registry_err_e code)
{
    return &ngx_http_registry_errors[code].code;
}


/* what a failed operation's fault says, as an answer */

ngx_int_t
ngx_http_registry_send_fault(ngx_http_request_t *r,
    ngx_http_registry_fault_t *fault)
{
    const char  *detail;

    detail = fault->detail;

    if (detail == NULL && fault->code == NGX_HTTP_REGISTRY_STORAGE_FULL) {
        detail = "no space left in the store";

    } else if (detail == NULL && fault->code == NGX_HTTP_REGISTRY_INTERNAL) {
        detail = "store operation failed";
    }

    return ngx_http_registry_error(r, fault->code, detail);
}


/*
 * The answer to a store operation that did not succeed: NGX_DECLINED is
 * "not_found" (with the op's detail, if any), NGX_ERROR the op's fault.
 */

ngx_int_t
ngx_http_registry_store_failed(ngx_http_request_t *r,
    ngx_http_registry_op_t *op, ngx_int_t rc,
    ngx_http_registry_err_e not_found)
{
    if (rc == NGX_DECLINED) {
        return ngx_http_registry_error(r, not_found, op->fault.detail);
    }

    return ngx_http_registry_send_fault(r, &op->fault);
}


/* ---- nginx's own errors ---- */

/*
 * What nginx answers by itself in a registry location (auth_basic's 401,
 * deny's 403, client_max_body_size's 413, limit_req's 429 or 503, a 400
 * or 414 on the request line...) leaves with the spec's JSON body too,
 * keeping nginx's status and headers (auth_basic's challenge).  nginx's
 * error pages are what ngx_http_special_response_handler() sends, the
 * only answers with r->err_status set: a user's error_page is not one,
 * it redirects first.
 */

ngx_int_t
ngx_http_registry_error_filters(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_registry_error_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_registry_error_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_error_header_filter(ngx_http_request_t *r)
{
    const char                    *detail;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_error_t     *e;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    if (r->err_status < NGX_HTTP_BAD_REQUEST || !rlcf->json_errors
        || r != r->main)
    {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_registry_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_registry_module);

        ctx->operation = NGX_HTTP_REGISTRY_OPERATION_OTHER;

        /* the router, which adds it, has not run */

        if (ngx_http_registry_api_version(r) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    e = ngx_http_registry_nginx_error(ngx_http_registry_nginx_status(r),
                                      &detail);

    ctx->error = e - ngx_http_registry_errors;
    ctx->failed = 1;

    ctx->nginx_error = ngx_http_registry_error_body(r->pool, e, detail);
    if (ctx->nginx_error == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    r->headers_out.content_length_n = ctx->nginx_error->last
                                      - ctx->nginx_error->pos;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    return ngx_http_next_header_filter(r);
}


/*
 * The status nginx meant: its 494, 495, 496 and 497 go out as 400, and
 * ngx_http_special_response_handler() has set err_status to 400 before
 * the filters run.  A refused client certificate is told apart as
 * ngx_http_process_request() decided it: verification failed, or none was
 * sent to "ssl_verify_client on".
 */

static ngx_uint_t
ngx_http_registry_nginx_status(ngx_http_request_t *r)
{
#if (NGX_HTTP_SSL)
    long                      rc;
    X509                     *cert;
    ngx_connection_t         *c;
    ngx_http_ssl_srv_conf_t  *sscf;

    c = r->connection;

    if (r->err_status != NGX_HTTP_BAD_REQUEST || c->ssl == NULL) {
        return r->err_status;
    }

    sscf = ngx_http_get_module_srv_conf(r, ngx_http_ssl_module);

    if (sscf == NULL || !sscf->verify) {
        return r->err_status;
    }

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK
        && (sscf->verify != 3 || !ngx_ssl_verify_error_optional(rc)))
    {
        return NGX_HTTPS_CERT_ERROR;
    }

    if (sscf->verify == 1) {
        cert = SSL_get_peer_certificate(c->ssl->connection);

        if (cert == NULL) {
            return NGX_HTTPS_NO_CERT;
        }

        X509_free(cert);
    }
#endif

    return r->err_status;
}


/* the HTML page nginx sends is dropped for the JSON, sent once */

static ngx_int_t
ngx_http_registry_error_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t                *b;
    ngx_chain_t               out;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ctx == NULL || ctx->nginx_error == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    for ( /* void */ ; in; in = in->next) {
        in->buf->pos = in->buf->last;
    }

    b = ctx->nginx_error;

    if (b->last_buf) {
        return NGX_OK;                      /* sent already */
    }

    b->last_buf = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


static ngx_http_registry_error_t *
ngx_http_registry_nginx_error(ngx_uint_t status, const char **detail)
{
    ngx_http_registry_err_e  code;

    *detail = "";

    switch (status) {

    case NGX_HTTP_UNAUTHORIZED:
        code = NGX_HTTP_REGISTRY_UNAUTHORIZED;
        break;

    case NGX_HTTP_FORBIDDEN:
        code = NGX_HTTP_REGISTRY_DENIED;
        break;

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        code = NGX_HTTP_REGISTRY_SIZE_INVALID;
        *detail = "request body too large";
        break;

    case NGX_HTTP_REQUEST_URI_TOO_LARGE:
        code = NGX_HTTP_REGISTRY_NAME_INVALID;
        *detail = "request URI too long";
        break;

    case NGX_HTTP_TOO_MANY_REQUESTS:
        code = NGX_HTTP_REGISTRY_TOOMANYREQUESTS;
        break;

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        code = NGX_HTTP_REGISTRY_UNAVAILABLE;
        break;

    case NGX_HTTP_NOT_FOUND:
        code = NGX_HTTP_REGISTRY_NOT_FOUND;
        break;

    case NGX_HTTP_NOT_ALLOWED:
        code = NGX_HTTP_REGISTRY_UNSUPPORTED;
        break;

    case NGX_HTTPS_CERT_ERROR:
    case NGX_HTTPS_NO_CERT:
        code = NGX_HTTP_REGISTRY_UNAUTHORIZED;
        *detail = "no valid client certificate";
        break;

    case NGX_HTTP_REQUEST_HEADER_TOO_LARGE:
        code = NGX_HTTP_REGISTRY_INTERNAL;
        *detail = "request header too large";
        break;

    default:
        code = NGX_HTTP_REGISTRY_INTERNAL;
        *detail = status < NGX_HTTP_INTERNAL_SERVER_ERROR ? "bad request"
                                                          : "server error";
    }

    return &ngx_http_registry_errors[code];
}


static u_char *
ngx_http_registry_json_escape(u_char *dst, u_char *src, size_t len)
{
    u_char  c;

    static u_char  hex[] = "0123456789abcdef";

    while (len--) {
        c = *src++;

        if (c == '"' || c == '\\') {
            *dst++ = '\\';
            *dst++ = c;

        } else if (c < 0x20) {
            dst = ngx_cpymem(dst, "\\u00", 4);
            *dst++ = hex[c >> 4];
            *dst++ = hex[c & 0xf];

        } else {
            *dst++ = c;
        }
    }

    return dst;
}
