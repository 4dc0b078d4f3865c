
/*
 * ngx_http_registry_module: JSON Web Tokens (compact JWS) as Docker's
 * token authentication uses them (docker-auth-jwt.md).
 *
 * Pure: no request.  Keys are loaded at configuration time; a token is
 * verified against them (each key bound to the algorithms its type can
 * do, "kid" matched as an RFC 7638 thumbprint or in libtrust's form, or
 * an "x5c" chain verified to a configured certificate) and its claims
 * checked (iss, aud, exp and nbf with a leeway, access).  The issuer signs
 * with ES256 or EdDSA.
 */


#ifndef _NGX_HTTP_REGISTRY_JWT_H_INCLUDED_
#define _NGX_HTTP_REGISTRY_JWT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_registry_auth.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <jansson.h>


#define NGX_HTTP_REGISTRY_JWT_MAX      8192   /* bytes of a token */
#define NGX_HTTP_REGISTRY_JWT_LEEWAY   60     /* seconds, exp and nbf */

/* the "typ" of the issuer's refresh tokens, never taken for access */
#define NGX_HTTP_REGISTRY_JWT_REFRESH  "refresh+jwt"


/* key types, as a mask of what an algorithm accepts */

#define NGX_HTTP_REGISTRY_JWT_RSA      0x01
#define NGX_HTTP_REGISTRY_JWT_P256     0x02
#define NGX_HTTP_REGISTRY_JWT_P384     0x04
#define NGX_HTTP_REGISTRY_JWT_P521     0x08
#define NGX_HTTP_REGISTRY_JWT_ED25519  0x10


typedef struct {
    EVP_PKEY                  *pkey;
    ngx_uint_t                 type;        /* NGX_HTTP_REGISTRY_JWT_RSA... */
    ngx_str_t                  kid;         /* a JWKS entry's own, or "" */
    ngx_str_t                  alg;         /* a JWKS entry's "alg", or "" */
    ngx_str_t                  thumbprint;  /* RFC 7638, base64url */
    ngx_str_t                  libtrust;    /* "ABCD:EFGH:...", 12 groups */
} ngx_http_registry_jwt_key_t;


typedef struct {
    ngx_array_t                keys;        /* ngx_http_registry_jwt_key_t */
    X509_STORE                *roots;       /* certificates for x5c, NULL */
} ngx_http_registry_jwt_keys_t;


/* what a token is checked against */

typedef struct {
    ngx_http_registry_jwt_keys_t  *keys;
    ngx_str_t                  issuer;
    ngx_str_t                  audience;
    const char                *typ;         /* "JWT" (or none) or refresh */
    time_t                     now;
} ngx_http_registry_jwt_verify_t;


/* what a verified token says */

typedef struct {
    ngx_str_t                  sub;         /* "" when anonymous */
    time_t                     exp;
    ngx_str_t                  key;         /* which key verified it */
    ngx_array_t               *access;      /* ngx_http_registry_need_t */
} ngx_http_registry_jwt_claims_t;


typedef struct {
    ngx_http_registry_jwt_key_t    key;
    ngx_str_t                  alg;         /* "ES256" or "EdDSA" */
    ngx_http_registry_jwt_keys_t   own;     /* key alone, to verify */
} ngx_http_registry_jwt_signer_t;


ngx_int_t ngx_http_registry_jwt_keys_init(ngx_http_registry_jwt_keys_t *keys,
    ngx_pool_t *pool);
const char *ngx_http_registry_jwt_keys_load(
    ngx_http_registry_jwt_keys_t *keys, ngx_str_t *file, ngx_pool_t *pool);
const char *ngx_http_registry_jwt_signer_load(
    ngx_http_registry_jwt_signer_t *signer, ngx_str_t *file,
    ngx_pool_t *pool);

ngx_int_t ngx_http_registry_jwt_verify(ngx_http_registry_jwt_verify_t *v,
    ngx_str_t *token, ngx_pool_t *pool, ngx_http_registry_jwt_claims_t *claims,
    const char **reason);
ngx_int_t ngx_http_registry_jwt_sign(ngx_http_registry_jwt_signer_t *signer,
    json_t *claims, const char *typ, ngx_pool_t *pool, ngx_str_t *token);

ngx_int_t ngx_http_registry_jwt_random(ngx_pool_t *pool, size_t bytes,
    ngx_str_t *text);


#endif /* _NGX_HTTP_REGISTRY_JWT_H_INCLUDED_ */
