
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


static u_char *ngx_http_registry_json_escape(u_char *dst, u_char *src,
    size_t len);


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
    size_t                      len;
    ngx_buf_t                  *b;
    ngx_http_registry_error_t  *e;

    static u_char  head[] = "{\"errors\":[{\"code\":\"";
    static u_char  msg[] = "\",\"message\":\"";
    static u_char  det[] = "\",\"detail\":\"";
    static u_char  tail[] = "\"}]}\n";

    e = &ngx_http_registry_errors[code];

    if (detail == NULL) {
        detail = "";
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "registry: %V %s", &e->code, detail);

    len = sizeof(head) - 1 + e->code.len + sizeof(msg) - 1
          + e->message.len + sizeof(det) - 1 + 6 * ngx_strlen(detail)
          + sizeof(tail) - 1;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, head, sizeof(head) - 1);
    b->last = ngx_cpymem(b->last, e->code.data, e->code.len);
    b->last = ngx_cpymem(b->last, msg, sizeof(msg) - 1);
    b->last = ngx_cpymem(b->last, e->message.data, e->message.len);
    b->last = ngx_cpymem(b->last, det, sizeof(det) - 1);
    b->last = ngx_http_registry_json_escape(b->last, (u_char *) detail,
                                            ngx_strlen(detail));
    b->last = ngx_cpymem(b->last, tail, sizeof(tail) - 1);

    return ngx_http_registry_send_body(r, e->status, "application/json", b);
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
