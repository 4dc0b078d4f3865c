
/*
 * ngx_http_registry_module: the pull-through cache (mirror.c) and its
 * parsers (mirror_parse.c: pure functions, no request, no pool but the
 * one given for copies); its store operations are in
 * ngx_http_registry_store_mirror.h.
 */


#ifndef _NGX_HTTP_REGISTRY_MIRROR_H_INCLUDED_
#define _NGX_HTTP_REGISTRY_MIRROR_H_INCLUDED_


#include "ngx_http_registry.h"
#include "ngx_http_registry_store_mirror.h"


/* ---- routing (mirror.c), called by the router ---- */

ngx_int_t ngx_http_registry_mirror_route(ngx_http_request_t *r,
    ngx_http_registry_route_t *route);
ngx_int_t ngx_http_registry_mirror_serve(ngx_http_request_t *r,
    ngx_http_registry_route_e kind, ngx_http_handler_pt local);


/* $registry_cache, for the metrics: 0 when the cache had no part */

#define NGX_HTTP_REGISTRY_CACHE_RESULTS  6

ngx_uint_t ngx_http_registry_mirror_result(ngx_http_request_t *r);
ngx_str_t *ngx_http_registry_mirror_result_name(ngx_uint_t result);
ngx_uint_t ngx_http_registry_mirror_upstream_requests(ngx_http_request_t *r);


/* ---- parsers (mirror_parse.c) ---- */

#define NGX_HTTP_REGISTRY_CHALLENGE_BASIC   1
#define NGX_HTTP_REGISTRY_CHALLENGE_BEARER  2


/* a WWW-Authenticate challenge; the strings point into the header */

typedef struct {
    ngx_uint_t                 scheme;
    ngx_str_t                  realm;
    ngx_str_t                  service;
    ngx_str_t                  scope;
} ngx_http_registry_challenge_t;


ngx_int_t ngx_http_registry_parse_challenge(u_char *p, size_t len,
    ngx_http_registry_challenge_t *ch);
ngx_int_t ngx_http_registry_parse_token(ngx_pool_t *pool, u_char *p,
    size_t len, ngx_str_t *token, time_t *expires_in);


#endif /* _NGX_HTTP_REGISTRY_MIRROR_H_INCLUDED_ */
