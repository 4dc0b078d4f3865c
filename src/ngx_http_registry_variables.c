
/*
 * ngx_http_registry_module: what a request did, as log variables.
 *
 *     log_format registry '... $registry_action $registry_repository '
 *                         '$registry_reference $registry_digest ...';
 *
 * Each variable reads the request's context, as the router and the
 * handlers left it (ngx_http_registry_ctx_t: operation, route, digest,
 * error, user), so they are meant for the access log; evaluated earlier
 * (a map in the access phase) they say what is known by then, and are
 * never cached.  A request the registry never saw has none of them
 * ("-" in a log line), one it answered without an endpoint (an unknown
 * route, an invalid name, nginx's own error in a registry location) only
 * $registry_operation ("other"), $registry_error and $registry_user.
 *
 *   $registry_operation   the metrics' operation label: blob_pull,
 *                         blob_push, mount, manifest_push, tags, token...
 *   $registry_action      pull, push, mount, delete, list, check (GET
 *                         /v2/) or token (the issuer)
 *   $registry_repository  the repository named in the path
 *   $registry_reference   the tag, digest or upload id in the path
 *   $registry_digest      the digest the request named (path, ?digest=,
 *                         ?mount=) or, for a manifest push or a pull by
 *                         tag, the one it stored or served
 *   $registry_error       the spec's code of the error it answered
 *   $registry_user        who it was decided for (registry_user, a
 *                         token's subject); empty: anonymous
 */


#include "ngx_http_registry.h"


typedef enum {
    NGX_HTTP_REGISTRY_VAR_OPERATION = 0,
    NGX_HTTP_REGISTRY_VAR_ACTION,
    NGX_HTTP_REGISTRY_VAR_REPOSITORY,
    NGX_HTTP_REGISTRY_VAR_REFERENCE,
    NGX_HTTP_REGISTRY_VAR_DIGEST,
    NGX_HTTP_REGISTRY_VAR_ERROR,
    NGX_HTTP_REGISTRY_VAR_USER
} ngx_http_registry_var_e;


typedef struct {
    ngx_str_t                  name;     /* the metrics' label */
    ngx_str_t                  action;   /* $registry_action */
} ngx_http_registry_operation_t;


static ngx_int_t ngx_http_registry_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_str_t *ngx_http_registry_variable_value(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_http_registry_var_e var);
static ngx_str_t *ngx_http_registry_variable_user(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx);


/* indexed by ngx_http_registry_operation_e */

static ngx_http_registry_operation_t  ngx_http_registry_operations[] = {
    { ngx_null_string, ngx_null_string },
    { ngx_string("other"), ngx_null_string },
    { ngx_string("base"), ngx_string("check") },
    { ngx_string("blob_pull"), ngx_string("pull") },
    { ngx_string("blob_push"), ngx_string("push") },
    { ngx_string("blob_delete"), ngx_string("delete") },
    { ngx_string("mount"), ngx_string("mount") },
    { ngx_string("manifest_pull"), ngx_string("pull") },
    { ngx_string("manifest_push"), ngx_string("push") },
    { ngx_string("manifest_delete"), ngx_string("delete") },
    { ngx_string("tags"), ngx_string("list") },
    { ngx_string("catalog"), ngx_string("list") },
    { ngx_string("referrers"), ngx_string("list") },
    { ngx_string("token"), ngx_string("token") },
};


static ngx_http_variable_t  ngx_http_registry_vars[] = {

    { ngx_string("registry_operation"), NULL, ngx_http_registry_variable,
      NGX_HTTP_REGISTRY_VAR_OPERATION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("registry_action"), NULL, ngx_http_registry_variable,
      NGX_HTTP_REGISTRY_VAR_ACTION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("registry_repository"), NULL, ngx_http_registry_variable,
      NGX_HTTP_REGISTRY_VAR_REPOSITORY, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("registry_reference"), NULL, ngx_http_registry_variable,
      NGX_HTTP_REGISTRY_VAR_REFERENCE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("registry_digest"), NULL, ngx_http_registry_variable,
      NGX_HTTP_REGISTRY_VAR_DIGEST, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("registry_error"), NULL, ngx_http_registry_variable,
      NGX_HTTP_REGISTRY_VAR_ERROR, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("registry_user"), NULL, ngx_http_registry_variable,
      NGX_HTTP_REGISTRY_VAR_USER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/* preconfiguration: the variables exist before any directive names them */

ngx_int_t
ngx_http_registry_variables_add(ngx_conf_t *cf)
{
    return ngx_http_registry_variables_register(cf, ngx_http_registry_vars);
}


/* a table of variables ending with ngx_http_null_variable (mirror.c's too) */

ngx_int_t
ngx_http_registry_variables_register(ngx_conf_t *cf,
    ngx_http_variable_t *vars)
{
    ngx_http_variable_t  *var, *v;

    for (v = vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* a getter's answer: the value, never cached; none or empty: not found */

void
ngx_http_registry_variable_set(ngx_http_variable_value_t *v,
    ngx_str_t *value)
{
    if (value == NULL || value->len == 0) {
        v->not_found = 1;
        return;
    }

    v->len = value->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = value->data;
}


/*
 * The operation of the endpoint the router found for the route's kind and
 * the method; a POST with ?mount= is a mount, even one refused or answered
 * with a session.
 */

ngx_http_registry_operation_e
ngx_http_registry_operation(ngx_http_request_t *r,
    ngx_http_registry_route_e kind)
{
    ngx_str_t   mount;
    ngx_uint_t  method;

    method = r->method;

    switch (kind) {

    case NGX_HTTP_REGISTRY_ROUTE_BASE:
        return NGX_HTTP_REGISTRY_OPERATION_BASE;

    case NGX_HTTP_REGISTRY_ROUTE_CATALOG:
        return NGX_HTTP_REGISTRY_OPERATION_CATALOG;

    case NGX_HTTP_REGISTRY_ROUTE_TAGS:
        return NGX_HTTP_REGISTRY_OPERATION_TAGS;

    case NGX_HTTP_REGISTRY_ROUTE_REFERRERS:
        return NGX_HTTP_REGISTRY_OPERATION_REFERRERS;

    case NGX_HTTP_REGISTRY_ROUTE_MANIFEST:
        if (method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
            return NGX_HTTP_REGISTRY_OPERATION_MANIFEST_PULL;
        }

        return (method == NGX_HTTP_PUT)
               ? NGX_HTTP_REGISTRY_OPERATION_MANIFEST_PUSH
               : NGX_HTTP_REGISTRY_OPERATION_MANIFEST_DELETE;

    case NGX_HTTP_REGISTRY_ROUTE_BLOB:
        return (method == NGX_HTTP_DELETE)
               ? NGX_HTTP_REGISTRY_OPERATION_BLOB_DELETE
               : NGX_HTTP_REGISTRY_OPERATION_BLOB_PULL;

    case NGX_HTTP_REGISTRY_ROUTE_UPLOADS:
        return (ngx_http_registry_arg(r, "mount", &mount) == NGX_OK)
               ? NGX_HTTP_REGISTRY_OPERATION_MOUNT
               : NGX_HTTP_REGISTRY_OPERATION_BLOB_PUSH;

    default:
        return NGX_HTTP_REGISTRY_OPERATION_BLOB_PUSH;
    }
}


ngx_str_t *
ngx_http_registry_operation_name(ngx_http_registry_operation_e operation)
{
    return &ngx_http_registry_operations[operation].name;
}


static ngx_int_t
ngx_http_registry_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                *value;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    value = (ctx == NULL
             || ctx->operation == NGX_HTTP_REGISTRY_OPERATION_NONE)
            ? NULL
            : ngx_http_registry_variable_value(r, ctx,
                                               (ngx_http_registry_var_e) data);

    ngx_http_registry_variable_set(v, value);

    return NGX_OK;
}


/* NULL: the request has no such value */

static ngx_str_t *
ngx_http_registry_variable_value(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_http_registry_var_e var)
{
    ngx_uint_t  routed;

    routed = (ctx->operation != NGX_HTTP_REGISTRY_OPERATION_OTHER);

    switch (var) {

    case NGX_HTTP_REGISTRY_VAR_OPERATION:
        return &ngx_http_registry_operations[ctx->operation].name;

    case NGX_HTTP_REGISTRY_VAR_ACTION:
        return &ngx_http_registry_operations[ctx->operation].action;

    case NGX_HTTP_REGISTRY_VAR_REPOSITORY:
        return routed ? &ctx->route.name : NULL;

    case NGX_HTTP_REGISTRY_VAR_REFERENCE:
        return routed ? &ctx->route.reference : NULL;

    case NGX_HTTP_REGISTRY_VAR_DIGEST:
        if (!routed) {
            return NULL;
        }

        if (ctx->digest.len) {
            return &ctx->digest;
        }

        return ctx->route.by_digest ? &ctx->route.digest.text : NULL;

    case NGX_HTTP_REGISTRY_VAR_ERROR:
        return ctx->failed ? ngx_http_registry_error_code(ctx->error) : NULL;

    default: /* NGX_HTTP_REGISTRY_VAR_USER */
        return ngx_http_registry_variable_user(r, ctx);
    }
}


/*
 * The user access.c decided for, or the token's subject.  Where access
 * asked nothing (a location without rules or tokens, a request refused
 * before the decision) registry_user names the user, as the rules would
 * have seen it; never for a token location, where it is the token's.
 */

static ngx_str_t *
ngx_http_registry_variable_user(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx)
{
    ngx_str_t  *user;

    if (ctx->user.len || ctx->conf == NULL
        || ngx_http_registry_token_enabled(r))
    {
        return &ctx->user;
    }

    user = ngx_palloc(r->pool, sizeof(ngx_str_t));
    if (user == NULL) {
        return NULL;
    }

    if (ngx_http_complex_value(r, ctx->conf->user, user) != NGX_OK) {
        return NULL;
    }

    return user;
}
