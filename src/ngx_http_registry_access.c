
/*
 * ngx_http_registry_module: who may do what, decided once per request.
 *
 *     registry_user   $ssl_client_s_dn;          # default $remote_user
 *
 * The router asks ngx_http_registry_access_check() before a handler runs,
 * so before any body is read.  The user is registry_user's value, or the
 * "sub" of a verified token under token authentication (token.c); the
 * registry_access rules (rules.c) decide, and the token's "access" claim
 * under token authentication.
 */


#include "ngx_http_registry.h"


static ngx_int_t ngx_http_registry_access_needs(ngx_http_request_t *r,
    ngx_uint_t actions, ngx_http_registry_needs_t *needs);
static ngx_int_t ngx_http_registry_access_rules(ngx_http_request_t *r,
    ngx_http_registry_needs_t *needs);
static ngx_int_t ngx_http_registry_access_token(ngx_http_request_t *r,
    ngx_http_registry_needs_t *needs);
static ngx_uint_t ngx_http_registry_access_all(ngx_http_request_t *r,
    ngx_http_registry_needs_t *needs);
static ngx_int_t ngx_http_registry_access_refuse(ngx_http_request_t *r);


/*
 * NGX_OK: the request may go on.  NGX_DECLINED: it is refused, and
 * ctx->fault is the answer (its challenge set).  The user it was decided
 * for is ctx->user after.
 */

ngx_int_t
ngx_http_registry_access_check(ngx_http_request_t *r, ngx_uint_t actions)
{
    ngx_http_registry_needs_t      needs;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    if (rlcf->rules == NULL && !ngx_http_registry_token_enabled(r)) {
        return NGX_OK;
    }

    if (ngx_http_registry_access_needs(r, actions, &needs) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_registry_token_enabled(r)) {
        return ngx_http_registry_access_token(r, &needs);
    }

    return ngx_http_registry_access_rules(r, &needs);
}


/*
 * Under token authentication the token's "access" claim decides, for the
 * user its "sub" names; rules of the location, if any, must allow it too.
 */

static ngx_int_t
ngx_http_registry_access_token(ngx_http_request_t *r,
    ngx_http_registry_needs_t *needs)
{
    ngx_int_t                      rc;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_loc_conf_t  *rlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    rc = ngx_http_registry_token_check(r, needs, &ctx->user);

    if (rc == NGX_DECLINED) {
        ctx->fault.code = NGX_HTTP_REGISTRY_UNAUTHORIZED;
        ctx->fault.errnum = 0;
        ctx->fault.detail = "a valid token that grants this is needed";
        return NGX_DECLINED;
    }

    if (rc != NGX_OK || rlcf->rules == NULL) {
        return rc;
    }

    return ngx_http_registry_access_all(r, needs)
           ? NGX_OK : ngx_http_registry_access_refuse(r);
}


/* whether the rules allow ctx->user every need */

static ngx_uint_t
ngx_http_registry_access_all(ngx_http_request_t *r,
    ngx_http_registry_needs_t *needs)
{
    ngx_uint_t                 i;
    ngx_http_registry_ctx_t   *ctx;
    ngx_http_registry_need_t  *need;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    for (i = 0; i < needs->n; i++) {
        need = &needs->need[i];

        if (ngx_http_registry_access_allowed(r, &ctx->user, &need->name,
                                             need->actions)
            != need->actions)
        {
            return 0;
        }
    }

    return 1;
}


/*
 * The route's repository with the endpoint's actions; a mount's "from"
 * needs pull (an invalid one is refused by the upload later, and never
 * read).
 */

static ngx_int_t
ngx_http_registry_access_needs(ngx_http_request_t *r, ngx_uint_t actions,
    ngx_http_registry_needs_t *needs)
{
    ngx_int_t                 rc;
    ngx_str_t                 from, mount;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    needs->n = 0;

    if (actions == 0) {
        return NGX_OK;
    }

    needs->need[0].name = ctx->route.name;
    needs->need[0].actions = actions;
    needs->n = 1;

    if (ctx->route.kind != NGX_HTTP_REGISTRY_ROUTE_UPLOADS) {
        return NGX_OK;
    }

    rc = ngx_http_registry_arg(r, "mount", &mount);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    rc = ngx_http_registry_arg(r, "from", &from);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    if (ngx_http_registry_valid_name(&from) == NGX_OK) {
        needs->need[1].name = from;
        needs->need[1].actions = NGX_HTTP_REGISTRY_PULL;
        needs->n = 2;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_access_rules(ngx_http_request_t *r,
    ngx_http_registry_needs_t *needs)
{
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_loc_conf_t  *rlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    if (ngx_http_complex_value(r, rlcf->user, &ctx->user) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!ngx_http_registry_access_all(r, needs)) {
        return ngx_http_registry_access_refuse(r);
    }

    if (needs->n || ctx->user.len) {
        return NGX_OK;
    }

    /*
     * /v2/ is where clients learn that credentials are taken: docker,
     * podman and skopeo send theirs only after its challenge, and a 200
     * makes "login" succeed with any password.  So an anonymous client is
     * challenged as soon as some rule grants users anything; only rules
     * for nobody but anonymous (a public mirror) answer it 200.
     */

    return ngx_http_registry_rules_for_users(r)
           ? ngx_http_registry_access_refuse(r) : NGX_OK;
}


/*
 * 403 DENIED for a known user; 401 UNAUTHORIZED with a challenge for an
 * anonymous one, for clients to come back with credentials.
 */

static ngx_int_t
ngx_http_registry_access_refuse(ngx_http_request_t *r)
{
    ngx_table_elt_t          *h;
    ngx_http_registry_ctx_t  *ctx;

    static ngx_str_t  challenge = ngx_string("Basic realm=\"registry\"");

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    ctx->fault.errnum = 0;

    if (ctx->user.len) {
        ctx->fault.code = NGX_HTTP_REGISTRY_DENIED;
        ctx->fault.detail = "no rule allows this user this";
        return NGX_DECLINED;
    }

    ctx->fault.code = NGX_HTTP_REGISTRY_UNAUTHORIZED;
    ctx->fault.detail = "no rule allows anonymous clients this";

    h = ngx_http_registry_add_header(r, "WWW-Authenticate", &challenge);
    if (h == NULL) {
        return NGX_ERROR;
    }

    r->headers_out.www_authenticate = h;

    return NGX_DECLINED;
}


/*
 * The user may pull every repository, as auto mount must know.  Never
 * under token authentication, whose tokens name their repositories.
 */

ngx_uint_t
ngx_http_registry_access_pulls_all(ngx_http_request_t *r)
{
    ngx_http_registry_ctx_t  *ctx;

    if (ngx_http_registry_token_enabled(r)) {
        return 0;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    return ngx_http_registry_rules_pull_all(r, &ctx->user);
}
