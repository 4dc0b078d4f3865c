
/*
 * ngx_http_registry_module: who may do what.
 *
 * The router asks one question before any body is read: may this request
 * do these actions on these repositories?  access.c answers it from the
 * registry_access rules of the location (rules.c; the user named by
 * registry_user), or asks the token module (token.c: Docker token
 * authentication, JWTs verified with jwt.c) when the location has
 * registry_token_realm.  The token module's issuer (registry_token_server)
 * grants what the registry_access rules of its own location allow.
 */


#ifndef _NGX_HTTP_REGISTRY_AUTH_H_INCLUDED_
#define _NGX_HTTP_REGISTRY_AUTH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* actions on a repository; "catalog" is on the registry as a whole */

#define NGX_HTTP_REGISTRY_PULL     0x01
#define NGX_HTTP_REGISTRY_PUSH     0x02
#define NGX_HTTP_REGISTRY_DELETE   0x04
#define NGX_HTTP_REGISTRY_CATALOG  0x08
#define NGX_HTTP_REGISTRY_ALL      0x0f


/* what a request needs: an empty name is the registry (the catalog) */

typedef struct {
    ngx_str_t                  name;
    ngx_uint_t                 actions;
} ngx_http_registry_need_t;


/* at most two: a mount's target and its "from" */

typedef struct {
    ngx_http_registry_need_t   need[2];
    ngx_uint_t                 n;
} ngx_http_registry_needs_t;


/*
 * rules.c: the actions of "wanted" that the location's registry_access
 * rules allow user (NULL or empty: anonymous) on repository (NULL: the
 * registry, where only NGX_HTTP_REGISTRY_CATALOG applies).  A location
 * without rules allows everything.
 */

ngx_uint_t ngx_http_registry_access_allowed(ngx_http_request_t *r,
    ngx_str_t *user, ngx_str_t *repository, ngx_uint_t wanted);

/* rules.c: whether the location has registry_access rules */

ngx_uint_t ngx_http_registry_access_limited(ngx_http_request_t *r);

/* rules.c: actions as "pull,push" names them */

u_char *ngx_http_registry_access_format(u_char *p, ngx_uint_t actions);


/*
 * token.c, for locations with registry_token_realm (enabled() says so):
 * check() verifies the request's Bearer token and whether its "access"
 * claim covers needs.  NGX_OK: it does, *user is the token's "sub".
 * NGX_DECLINED: the request is refused; check() has set the 401's
 * WWW-Authenticate challenge (realm, service, the scope needs names, and
 * error="invalid_token" or "insufficient_scope" when a token was sent).
 * NGX_ERROR: a server error.
 */

ngx_uint_t ngx_http_registry_token_enabled(ngx_http_request_t *r);
ngx_int_t ngx_http_registry_token_check(ngx_http_request_t *r,
    ngx_http_registry_needs_t *needs, ngx_str_t *user);


#endif /* _NGX_HTTP_REGISTRY_AUTH_H_INCLUDED_ */
