
/*
 * ngx_http_registry_module: JSON Web Tokens (docker-auth-jwt.md).
 *
 * A token is "header.payload.signature", each part base64url without
 * padding.  Nothing in a token chooses how it is checked but what a
 * configured key allows: the key is found by "kid" (or an "x5c" chain
 * ending at a configured certificate), and the token's "alg" must be one
 * the key's type can do, so an RSA public key is never taken as an HMAC
 * secret, nor an EC key made to check an RSA signature.  "none", HMAC,
 * keys or key URLs in the header (jwk, jku, x5u) and any "crit" are
 * refused outright.  Verification runs in the event loop: one signature
 * check costs tens of microseconds, and the token module caches what it
 * verified.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_registry_jwt.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>


#define NGX_HTTP_REGISTRY_JWT_FILE_MAX   (1024 * 1024)
#define NGX_HTTP_REGISTRY_JWT_CHAIN_MAX  8
#define NGX_HTTP_REGISTRY_JWT_RSA_MIN    2048


typedef struct {
    ngx_str_t                  name;
    const EVP_MD            *(*md)(void);   /* NULL: EdDSA hashes itself */
    ngx_uint_t                 types;       /* keys that may do it */
    int                        padding;     /* RSA; 0 for the others */
    size_t                     half;        /* ECDSA: bytes of R, of S */
} ngx_http_registry_jwt_alg_t;


typedef struct {
    ngx_uint_t                 type;
    const char                *crv;        /* JWK "crv" */
    const char                *group;      /* OpenSSL's name of the curve */
    size_t                     size;       /* bytes of a coordinate */
} ngx_http_registry_jwt_curve_t;


static const char *ngx_http_registry_jwt_read(ngx_str_t *file,
    ngx_pool_t *pool, ngx_str_t *data);
static const char *ngx_http_registry_jwt_pem(ngx_http_registry_jwt_keys_t *keys,
    ngx_str_t *data, ngx_pool_t *pool);
static const char *ngx_http_registry_jwt_pem_block(
    ngx_http_registry_jwt_keys_t *keys, const char *name, u_char *der,
    long len, ngx_pool_t *pool);
static const char *ngx_http_registry_jwt_root(
    ngx_http_registry_jwt_keys_t *keys, X509 *x509, ngx_pool_t *pool);
static const char *ngx_http_registry_jwt_jwks(
    ngx_http_registry_jwt_keys_t *keys, ngx_str_t *data, ngx_pool_t *pool);
static const char *ngx_http_registry_jwt_jwk(
    ngx_http_registry_jwt_keys_t *keys, json_t *jwk, ngx_pool_t *pool);
static EVP_PKEY *ngx_http_registry_jwt_jwk_key(json_t *jwk, ngx_pool_t *pool);
static EVP_PKEY *ngx_http_registry_jwt_jwk_rsa(json_t *jwk, ngx_pool_t *pool);
static EVP_PKEY *ngx_http_registry_jwt_jwk_ec(json_t *jwk, ngx_pool_t *pool);
static EVP_PKEY *ngx_http_registry_jwt_jwk_okp(json_t *jwk, ngx_pool_t *pool);
static ngx_int_t ngx_http_registry_jwt_member(json_t *jwk, const char *name,
    ngx_pool_t *pool, ngx_str_t *raw);
static EVP_PKEY *ngx_http_registry_jwt_fromdata(const char *type,
    OSSL_PARAM_BLD *bld);
static const char *ngx_http_registry_jwt_add(ngx_http_registry_jwt_keys_t *keys,
    EVP_PKEY *pkey, ngx_pool_t *pool, ngx_http_registry_jwt_key_t **added);
static void ngx_http_registry_jwt_pkey_cleanup(void *data);
static void ngx_http_registry_jwt_roots_cleanup(void *data);
static ngx_uint_t ngx_http_registry_jwt_type(EVP_PKEY *pkey);
static ngx_http_registry_jwt_curve_t *ngx_http_registry_jwt_curve(
    ngx_uint_t type);
static ngx_int_t ngx_http_registry_jwt_libtrust(EVP_PKEY *pkey,
    ngx_pool_t *pool, ngx_str_t *kid);
static ngx_int_t ngx_http_registry_jwt_thumbprint(EVP_PKEY *pkey,
    ngx_uint_t type, ngx_pool_t *pool, ngx_str_t *thumbprint);
static ngx_int_t ngx_http_registry_jwt_bn(EVP_PKEY *pkey, const char *param,
    size_t size, ngx_pool_t *pool, ngx_str_t *b64);
static ngx_http_registry_jwt_alg_t *ngx_http_registry_jwt_alg(ngx_str_t *name);
static ngx_int_t ngx_http_registry_jwt_json(ngx_str_t *part, ngx_pool_t *pool,
    json_t **json, const char **reason);
static ngx_int_t ngx_http_registry_jwt_header(ngx_http_registry_jwt_verify_t *v,
    json_t *header, ngx_http_registry_jwt_alg_t **alg, const char **reason);
static ngx_int_t ngx_http_registry_jwt_signed(
    ngx_http_registry_jwt_verify_t *v, json_t *header,
    ngx_http_registry_jwt_alg_t *alg, ngx_str_t *input, ngx_str_t *signature,
    ngx_pool_t *pool, ngx_http_registry_jwt_claims_t *claims,
    const char **reason);
static ngx_int_t ngx_http_registry_jwt_by_kid(
    ngx_http_registry_jwt_verify_t *v, ngx_str_t *kid,
    ngx_http_registry_jwt_alg_t *alg, ngx_str_t *input, ngx_str_t *sig,
    ngx_http_registry_jwt_claims_t *claims, const char **reason);
static ngx_int_t ngx_http_registry_jwt_any_key(
    ngx_http_registry_jwt_verify_t *v, ngx_http_registry_jwt_alg_t *alg,
    ngx_str_t *input, ngx_str_t *sig, ngx_http_registry_jwt_claims_t *claims,
    const char **reason);
static ngx_uint_t ngx_http_registry_jwt_allows(ngx_http_registry_jwt_key_t *key,
    ngx_http_registry_jwt_alg_t *alg);
static ngx_int_t ngx_http_registry_jwt_x5c(ngx_http_registry_jwt_verify_t *v,
    json_t *x5c, ngx_pool_t *pool, EVP_PKEY **pkey, const char **reason);
static X509 *ngx_http_registry_jwt_x5c_cert(json_t *entry, ngx_pool_t *pool);
static ngx_int_t ngx_http_registry_jwt_check(EVP_PKEY *pkey,
    ngx_http_registry_jwt_alg_t *alg, ngx_str_t *input, ngx_str_t *sig);
static ngx_int_t ngx_http_registry_jwt_der_sig(ngx_str_t *raw, size_t half,
    u_char **der, int *len);
static ngx_int_t ngx_http_registry_jwt_claims(ngx_http_registry_jwt_verify_t *v,
    json_t *payload, ngx_pool_t *pool, ngx_http_registry_jwt_claims_t *claims,
    const char **reason);
static ngx_uint_t ngx_http_registry_jwt_audience(json_t *aud, ngx_str_t *want);
static ngx_int_t ngx_http_registry_jwt_access(json_t *access, ngx_pool_t *pool,
    ngx_array_t **list, const char **reason);
static ngx_uint_t ngx_http_registry_jwt_actions(json_t *actions,
    const char **reason);
static ngx_uint_t ngx_http_registry_jwt_is(json_t *value, ngx_str_t *s);
static ngx_int_t ngx_http_registry_jwt_copy(ngx_pool_t *pool, json_t *value,
    ngx_str_t *s);
static ngx_int_t ngx_http_registry_jwt_signature(
    ngx_http_registry_jwt_signer_t *signer, ngx_str_t *token);
static ngx_int_t ngx_http_registry_jwt_raw_sig(u_char *der, size_t len,
    size_t half, u_char *raw);
static ngx_int_t ngx_http_registry_jwt_decode(ngx_str_t *src, ngx_pool_t *pool,
    ngx_str_t *dst);
static ngx_int_t ngx_http_registry_jwt_encode(ngx_pool_t *pool, u_char *data,
    size_t len, ngx_str_t *b64);
static const char *ngx_http_registry_jwt_ssl_error(ngx_pool_t *pool,
    const char *what);


static ngx_http_registry_jwt_alg_t  ngx_http_registry_jwt_algs[] = {
    { ngx_string("RS256"), EVP_sha256, NGX_HTTP_REGISTRY_JWT_RSA,
      RSA_PKCS1_PADDING, 0 },
    { ngx_string("RS384"), EVP_sha384, NGX_HTTP_REGISTRY_JWT_RSA,
      RSA_PKCS1_PADDING, 0 },
    { ngx_string("RS512"), EVP_sha512, NGX_HTTP_REGISTRY_JWT_RSA,
      RSA_PKCS1_PADDING, 0 },
    { ngx_string("PS256"), EVP_sha256, NGX_HTTP_REGISTRY_JWT_RSA,
      RSA_PKCS1_PSS_PADDING, 0 },
    { ngx_string("PS384"), EVP_sha384, NGX_HTTP_REGISTRY_JWT_RSA,
      RSA_PKCS1_PSS_PADDING, 0 },
    { ngx_string("PS512"), EVP_sha512, NGX_HTTP_REGISTRY_JWT_RSA,
      RSA_PKCS1_PSS_PADDING, 0 },
    { ngx_string("ES256"), EVP_sha256, NGX_HTTP_REGISTRY_JWT_P256, 0, 32 },
    { ngx_string("ES384"), EVP_sha384, NGX_HTTP_REGISTRY_JWT_P384, 0, 48 },
    { ngx_string("ES512"), EVP_sha512, NGX_HTTP_REGISTRY_JWT_P521, 0, 66 },
    { ngx_string("EdDSA"), NULL, NGX_HTTP_REGISTRY_JWT_ED25519, 0, 0 },
    { ngx_null_string, NULL, 0, 0, 0 }
};


static ngx_http_registry_jwt_curve_t  ngx_http_registry_jwt_curves[] = {
    { NGX_HTTP_REGISTRY_JWT_P256, "P-256", "prime256v1", 32 },
    { NGX_HTTP_REGISTRY_JWT_P384, "P-384", "secp384r1", 48 },
    { NGX_HTTP_REGISTRY_JWT_P521, "P-521", "secp521r1", 66 },
    { NGX_HTTP_REGISTRY_JWT_ED25519, "Ed25519", "ED25519", 32 },
    { 0, NULL, NULL, 0 }
};


/* ---- keys, at configuration time ---- */

ngx_int_t
ngx_http_registry_jwt_keys_init(ngx_http_registry_jwt_keys_t *keys,
    ngx_pool_t *pool)
{
    keys->roots = NULL;

    return ngx_array_init(&keys->keys, pool, 2,
                          sizeof(ngx_http_registry_jwt_key_t));
}


/*
 * A file of PEM public keys and certificates, or a JWKS ({"keys":[...]}
 * or a single JWK).  NULL, or why it cannot be used.
 */

const char *
ngx_http_registry_jwt_keys_load(ngx_http_registry_jwt_keys_t *keys,
    ngx_str_t *file, ngx_pool_t *pool)
{
    u_char      *p;
    ngx_str_t    data;
    const char  *err;

    err = ngx_http_registry_jwt_read(file, pool, &data);
    if (err) {
        return err;
    }

    for (p = data.data; p < data.data + data.len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            break;
        }
    }

    if (p < data.data + data.len && *p == '{') {
        return ngx_http_registry_jwt_jwks(keys, &data, pool);
    }

    return ngx_http_registry_jwt_pem(keys, &data, pool);
}


static const char *
ngx_http_registry_jwt_read(ngx_str_t *file, ngx_pool_t *pool, ngx_str_t *data)
{
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    fd = ngx_open_file(file->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        return "cannot be opened";
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > NGX_HTTP_REGISTRY_JWT_FILE_MAX)
    {
        (void) ngx_close_file(fd);
        return "cannot be read, or is larger than 1 MiB";
    }

    data->len = (size_t) ngx_file_size(&fi);
    data->data = ngx_pnalloc(pool, data->len + 1);
    if (data->data == NULL) {
        (void) ngx_close_file(fd);
        return "out of memory";
    }

    n = ngx_read_fd(fd, data->data, data->len);

    (void) ngx_close_file(fd);

    if (n != (ssize_t) data->len) {
        return "cannot be read";
    }

    data->data[data->len] = '\0';

    return NULL;
}


static const char *
ngx_http_registry_jwt_pem(ngx_http_registry_jwt_keys_t *keys, ngx_str_t *data,
    ngx_pool_t *pool)
{
    BIO         *bio;
    long         len;
    char        *name, *header;
    u_char      *der;
    ngx_uint_t   found;
    const char  *err;

    bio = BIO_new_mem_buf(data->data, (int) data->len);
    if (bio == NULL) {
        return "out of memory";
    }

    found = 0;
    err = NULL;

    while (err == NULL
           && PEM_read_bio(bio, &name, &header, &der, &len) == 1)
    {
        err = ngx_http_registry_jwt_pem_block(keys, name, der, len, pool);

        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(der);

        found++;
    }

    BIO_free(bio);

    /* the end of the file is PEM_read_bio()'s error too */
    ERR_clear_error();

    if (err == NULL && found == 0) {
        err = "holds no PEM public key or certificate, nor a JWKS";
    }

    return err;
}


static const char *
ngx_http_registry_jwt_pem_block(ngx_http_registry_jwt_keys_t *keys,
    const char *name, u_char *der, long len, ngx_pool_t *pool)
{
    X509           *x509;
    EVP_PKEY       *pkey;
    const char     *err;
    const u_char   *p;

    p = der;

    if (ngx_strcmp(name, "PUBLIC KEY") == 0) {
        pkey = d2i_PUBKEY(NULL, &p, len);
        if (pkey == NULL) {
            return ngx_http_registry_jwt_ssl_error(pool, "invalid public key");
        }

        return ngx_http_registry_jwt_add(keys, pkey, pool, NULL);
    }

    if (ngx_strcmp(name, "CERTIFICATE") == 0) {
        x509 = d2i_X509(NULL, &p, len);
        if (x509 == NULL) {
            return ngx_http_registry_jwt_ssl_error(pool, "invalid certificate");
        }

        err = ngx_http_registry_jwt_root(keys, x509, pool);

        X509_free(x509);

        return err;
    }

    if (ngx_strstr(name, "PRIVATE KEY")) {
        return "holds a private key: give its public key "
               "(openssl pkey -pubout) or a certificate";
    }

    return "holds a PEM block that is neither a public key nor a "
           "certificate";
}


/*
 * A certificate is trusted twice: its key signs tokens that name it by
 * kid, and it is a root for the chains of tokens that carry "x5c".
 */

static const char *
ngx_http_registry_jwt_root(ngx_http_registry_jwt_keys_t *keys, X509 *x509,
    ngx_pool_t *pool)
{
    EVP_PKEY            *pkey;
    ngx_pool_cleanup_t  *cln;

    if (keys->roots == NULL) {
        cln = ngx_pool_cleanup_add(pool, 0);
        if (cln == NULL) {
            return "out of memory";
        }

        keys->roots = X509_STORE_new();
        if (keys->roots == NULL) {
            return "out of memory";
        }

        cln->handler = ngx_http_registry_jwt_roots_cleanup;
        cln->data = keys->roots;
    }

    if (X509_STORE_add_cert(keys->roots, x509) != 1) {
        return ngx_http_registry_jwt_ssl_error(pool, "certificate not added");
    }

    pkey = X509_get_pubkey(x509);
    if (pkey == NULL) {
        return ngx_http_registry_jwt_ssl_error(pool,
                                               "certificate without a key");
    }

    return ngx_http_registry_jwt_add(keys, pkey, pool, NULL);
}


static const char *
ngx_http_registry_jwt_jwks(ngx_http_registry_jwt_keys_t *keys, ngx_str_t *data,
    ngx_pool_t *pool)
{
    json_t      *root, *list, *jwk;
    size_t       i;
    const char  *err;

    root = json_loadb((char *) data->data, data->len, JSON_REJECT_DUPLICATES,
                      NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return "is not a JWKS: invalid JSON";
    }

    list = json_object_get(root, "keys");

    if (list == NULL) {
        err = ngx_http_registry_jwt_jwk(keys, root, pool);
        json_decref(root);
        return err;
    }

    err = json_is_array(list) && json_array_size(list)
          ? NULL : "is not a JWKS: \"keys\" is not a list of keys";

    json_array_foreach(list, i, jwk) {
        if (err) {
            break;
        }

        err = ngx_http_registry_jwt_jwk(keys, jwk, pool);
    }

    json_decref(root);

    return err;
}


/* one JWK: its own "kid" is matched too, and its "alg" binds it further */

static const char *
ngx_http_registry_jwt_jwk(ngx_http_registry_jwt_keys_t *keys, json_t *jwk,
    ngx_pool_t *pool)
{
    json_t                       *kid, *alg;
    EVP_PKEY                     *pkey;
    const char                   *err;
    ngx_http_registry_jwt_alg_t  *a;
    ngx_http_registry_jwt_key_t  *key;

    if (!json_is_object(jwk)) {
        return "holds a JWK that is not an object";
    }

    kid = json_object_get(jwk, "kid");
    alg = json_object_get(jwk, "alg");

    if ((kid && !json_is_string(kid)) || (alg && !json_is_string(alg))) {
        return "holds a JWK with a \"kid\" or \"alg\" that is not a string";
    }

    pkey = ngx_http_registry_jwt_jwk_key(jwk, pool);
    if (pkey == NULL) {
        return ngx_http_registry_jwt_ssl_error(pool,
                   "holds a JWK that is not an RSA, EC P-256, P-384, P-521 "
                   "or Ed25519 public key");
    }

    err = ngx_http_registry_jwt_add(keys, pkey, pool, &key);
    if (err) {
        return err;
    }

    if (kid && ngx_http_registry_jwt_copy(pool, kid, &key->kid) != NGX_OK) {
        return "out of memory";
    }

    if (alg == NULL) {
        return NULL;
    }

    if (ngx_http_registry_jwt_copy(pool, alg, &key->alg) != NGX_OK) {
        return "out of memory";
    }

    a = ngx_http_registry_jwt_alg(&key->alg);

    if (a == NULL || !(a->types & key->type)) {
        return "holds a JWK whose \"alg\" its key cannot do";
    }

    return NULL;
}


static EVP_PKEY *
ngx_http_registry_jwt_jwk_key(json_t *jwk, ngx_pool_t *pool)
{
    json_t  *kty;

    kty = json_object_get(jwk, "kty");

    if (!json_is_string(kty)) {
        return NULL;
    }

    if (ngx_strcmp(json_string_value(kty), "RSA") == 0) {
        return ngx_http_registry_jwt_jwk_rsa(jwk, pool);
    }

    if (ngx_strcmp(json_string_value(kty), "EC") == 0) {
        return ngx_http_registry_jwt_jwk_ec(jwk, pool);
    }

    if (ngx_strcmp(json_string_value(kty), "OKP") == 0) {
        return ngx_http_registry_jwt_jwk_okp(jwk, pool);
    }

    return NULL;
}


static EVP_PKEY *
ngx_http_registry_jwt_jwk_rsa(json_t *jwk, ngx_pool_t *pool)
{
    BIGNUM          *n, *e;
    EVP_PKEY        *pkey;
    ngx_str_t        rn, re;
    OSSL_PARAM_BLD  *bld;

    if (ngx_http_registry_jwt_member(jwk, "n", pool, &rn) != NGX_OK
        || ngx_http_registry_jwt_member(jwk, "e", pool, &re) != NGX_OK)
    {
        return NULL;
    }

    pkey = NULL;

    n = BN_bin2bn(rn.data, rn.len, NULL);
    e = BN_bin2bn(re.data, re.len, NULL);
    bld = OSSL_PARAM_BLD_new();

    if (n && e && bld
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n)
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
    {
        pkey = ngx_http_registry_jwt_fromdata("RSA", bld);
    }

    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);

    return pkey;
}


static EVP_PKEY *
ngx_http_registry_jwt_jwk_ec(json_t *jwk, ngx_pool_t *pool)
{
    u_char                         *pub;
    json_t                         *crv;
    EVP_PKEY                       *pkey;
    ngx_str_t                       x, y;
    OSSL_PARAM_BLD                 *bld;
    ngx_http_registry_jwt_curve_t  *c;

    crv = json_object_get(jwk, "crv");

    if (!json_is_string(crv)) {
        return NULL;
    }

    for (c = ngx_http_registry_jwt_curves; c->crv; c++) {
        if (c->type != NGX_HTTP_REGISTRY_JWT_ED25519
            && ngx_strcmp(json_string_value(crv), c->crv) == 0)
        {
            break;
        }
    }

    if (c->crv == NULL
        || ngx_http_registry_jwt_member(jwk, "x", pool, &x) != NGX_OK
        || ngx_http_registry_jwt_member(jwk, "y", pool, &y) != NGX_OK
        || x.len != c->size || y.len != c->size)
    {
        return NULL;
    }

    /* the uncompressed point; OpenSSL checks that it is on the curve */

    pub = ngx_pnalloc(pool, 1 + 2 * c->size);
    if (pub == NULL) {
        return NULL;
    }

    pub[0] = 0x04;
    ngx_memcpy(pub + 1, x.data, c->size);
    ngx_memcpy(pub + 1 + c->size, y.data, c->size);

    pkey = NULL;
    bld = OSSL_PARAM_BLD_new();

    if (bld
        && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                           c->group, 0)
        && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                            pub, 1 + 2 * c->size))
    {
        pkey = ngx_http_registry_jwt_fromdata("EC", bld);
    }

    OSSL_PARAM_BLD_free(bld);

    return pkey;
}


static EVP_PKEY *
ngx_http_registry_jwt_jwk_okp(json_t *jwk, ngx_pool_t *pool)
{
    json_t     *crv;
    ngx_str_t   x;

    crv = json_object_get(jwk, "crv");

    if (!json_is_string(crv)
        || ngx_strcmp(json_string_value(crv), "Ed25519") != 0
        || ngx_http_registry_jwt_member(jwk, "x", pool, &x) != NGX_OK
        || x.len != 32)
    {
        return NULL;
    }

    return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x.data, x.len);
}


/* a base64url member of a JWK, decoded */

static ngx_int_t
ngx_http_registry_jwt_member(json_t *jwk, const char *name, ngx_pool_t *pool,
    ngx_str_t *raw)
{
    json_t     *value;
    ngx_str_t   b64;

    value = json_object_get(jwk, name);

    if (!json_is_string(value)) {
        return NGX_DECLINED;
    }

    b64.data = (u_char *) json_string_value(value);
    b64.len = json_string_length(value);

    return ngx_http_registry_jwt_decode(&b64, pool, raw);
}


static EVP_PKEY *
ngx_http_registry_jwt_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY      *pkey;
    OSSL_PARAM    *params;
    EVP_PKEY_CTX  *ctx;

    pkey = NULL;
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);

    if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1) {
        (void) EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
    }

    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);

    return pkey;
}


/*
 * Takes pkey over (the pool frees it): its type, what algorithms it may
 * do, and the two forms of kid it answers to.
 */

static const char *
ngx_http_registry_jwt_add(ngx_http_registry_jwt_keys_t *keys, EVP_PKEY *pkey,
    ngx_pool_t *pool, ngx_http_registry_jwt_key_t **added)
{
    ngx_pool_cleanup_t           *cln;
    ngx_http_registry_jwt_key_t  *key;

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        EVP_PKEY_free(pkey);
        return "out of memory";
    }

    cln->handler = ngx_http_registry_jwt_pkey_cleanup;
    cln->data = pkey;

    key = ngx_array_push(&keys->keys);
    if (key == NULL) {
        return "out of memory";
    }

    ngx_memzero(key, sizeof(ngx_http_registry_jwt_key_t));

    key->pkey = pkey;
    key->type = ngx_http_registry_jwt_type(pkey);

    if (key->type == 0) {
        return "holds a key that is neither RSA of 2048 bits or more, "
               "EC P-256, P-384, P-521 nor Ed25519";
    }

    if (ngx_http_registry_jwt_libtrust(pkey, pool, &key->libtrust) != NGX_OK
        || ngx_http_registry_jwt_thumbprint(pkey, key->type, pool,
                                            &key->thumbprint)
           != NGX_OK)
    {
        return ngx_http_registry_jwt_ssl_error(pool, "key id not computed");
    }

    if (added) {
        *added = key;
    }

    return NULL;
}


static void
ngx_http_registry_jwt_pkey_cleanup(void *data)
{
    EVP_PKEY_free(data);
}


static void
ngx_http_registry_jwt_roots_cleanup(void *data)
{
    X509_STORE_free(data);
}


static ngx_uint_t
ngx_http_registry_jwt_type(EVP_PKEY *pkey)
{
    char                            group[64];
    size_t                          len;
    ngx_http_registry_jwt_curve_t  *c;

    if (EVP_PKEY_is_a(pkey, "RSA")) {
        return EVP_PKEY_get_bits(pkey) >= NGX_HTTP_REGISTRY_JWT_RSA_MIN
               ? NGX_HTTP_REGISTRY_JWT_RSA : 0;
    }

    if (EVP_PKEY_is_a(pkey, "ED25519")) {
        return NGX_HTTP_REGISTRY_JWT_ED25519;
    }

    if (!EVP_PKEY_is_a(pkey, "EC")
        || EVP_PKEY_get_group_name(pkey, group, sizeof(group), &len) != 1)
    {
        return 0;
    }

    for (c = ngx_http_registry_jwt_curves; c->crv; c++) {
        if (ngx_strcmp(group, c->group) == 0) {
            return c->type;
        }
    }

    return 0;
}


static ngx_http_registry_jwt_curve_t *
ngx_http_registry_jwt_curve(ngx_uint_t type)
{
    ngx_http_registry_jwt_curve_t  *c;

    for (c = ngx_http_registry_jwt_curves; c->crv; c++) {
        if (c->type == type) {
            return c;
        }
    }

    return NULL;
}


/*
 * libtrust's key id (docker/libtrust, what docker_auth, GitLab and
 * Keycloak put in "kid"): the SHA-256 of the DER SubjectPublicKeyInfo,
 * its first 240 bits in base32, in groups of four joined by ':'.
 */

static ngx_int_t
ngx_http_registry_jwt_libtrust(EVP_PKEY *pkey, ngx_pool_t *pool,
    ngx_str_t *kid)
{
    int          len;
    u_char      *der, *p, *q, hash[EVP_MAX_MD_SIZE];
    uint64_t     bits;
    ngx_uint_t   i, j, n;

    static u_char  base32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

    len = i2d_PUBKEY(pkey, NULL);
    if (len <= 0) {
        return NGX_ERROR;
    }

    der = ngx_pnalloc(pool, len);
    if (der == NULL) {
        return NGX_ERROR;
    }

    p = der;

    if (i2d_PUBKEY(pkey, &p) != len
        || EVP_Digest(der, len, hash, NULL, EVP_sha256(), NULL) != 1)
    {
        return NGX_ERROR;
    }

    /* 30 bytes are 48 base32 digits: 12 groups, 11 colons */

    kid->data = ngx_pnalloc(pool, 48 + 11);
    if (kid->data == NULL) {
        return NGX_ERROR;
    }

    q = kid->data;
    n = 0;

    for (i = 0; i < 30; i += 5) {
        bits = 0;

        for (j = 0; j < 5; j++) {
            bits = (bits << 8) | hash[i + j];
        }

        for (j = 0; j < 8; j++) {
            if (n && n % 4 == 0) {
                *q++ = ':';
            }

            *q++ = base32[(bits >> (35 - 5 * j)) & 0x1f];
            n++;
        }
    }

    kid->len = q - kid->data;

    return NGX_OK;
}


/*
 * RFC 7638: the SHA-256 of the key's required JWK members, in
 * lexicographic order without white space, in base64url.
 */

static ngx_int_t
ngx_http_registry_jwt_thumbprint(EVP_PKEY *pkey, ngx_uint_t type,
    ngx_pool_t *pool, ngx_str_t *thumbprint)
{
    u_char                         *json, *last, hash[EVP_MAX_MD_SIZE];
    u_char                          raw[32];
    size_t                          len;
    ngx_str_t                       a, b;
    ngx_http_registry_jwt_curve_t  *c;

    if (type == NGX_HTTP_REGISTRY_JWT_RSA) {
        if (ngx_http_registry_jwt_bn(pkey, OSSL_PKEY_PARAM_RSA_E, 0, pool, &a)
            != NGX_OK
            || ngx_http_registry_jwt_bn(pkey, OSSL_PKEY_PARAM_RSA_N, 0, pool,
                                        &b)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        len = sizeof("{\"e\":\"\",\"kty\":\"RSA\",\"n\":\"\"}") + a.len + b.len;

    } else {
        c = ngx_http_registry_jwt_curve(type);

        if (type == NGX_HTTP_REGISTRY_JWT_ED25519) {
            len = sizeof(raw);

            if (EVP_PKEY_get_raw_public_key(pkey, raw, &len) != 1
                || ngx_http_registry_jwt_encode(pool, raw, len, &a) != NGX_OK)
            {
                return NGX_ERROR;
            }

            b.len = 0;

        } else if (ngx_http_registry_jwt_bn(pkey, OSSL_PKEY_PARAM_EC_PUB_X,
                                            c->size, pool, &a)
                   != NGX_OK
                   || ngx_http_registry_jwt_bn(pkey, OSSL_PKEY_PARAM_EC_PUB_Y,
                                               c->size, pool, &b)
                      != NGX_OK)
        {
            return NGX_ERROR;
        }

        len = sizeof("{\"crv\":\"\",\"kty\":\"OKP\",\"x\":\"\",\"y\":\"\"}")
              + ngx_strlen(c->crv) + a.len + b.len;
    }

    json = ngx_pnalloc(pool, len);
    if (json == NULL) {
        return NGX_ERROR;
    }

    if (type == NGX_HTTP_REGISTRY_JWT_RSA) {
        last = ngx_sprintf(json, "{\"e\":\"%V\",\"kty\":\"RSA\",\"n\":\"%V\"}",
                           &a, &b);

    } else if (type == NGX_HTTP_REGISTRY_JWT_ED25519) {
        last = ngx_sprintf(json, "{\"crv\":\"Ed25519\",\"kty\":\"OKP\","
                           "\"x\":\"%V\"}", &a);

    } else {
        last = ngx_sprintf(json, "{\"crv\":\"%s\",\"kty\":\"EC\","
                           "\"x\":\"%V\",\"y\":\"%V\"}", c->crv, &a, &b);
    }

    if (EVP_Digest(json, last - json, hash, NULL, EVP_sha256(), NULL) != 1) {
        return NGX_ERROR;
    }

    return ngx_http_registry_jwt_encode(pool, hash, 32, thumbprint);
}


/* a big number parameter of the key, in base64url, size bytes (0: its own) */

static ngx_int_t
ngx_http_registry_jwt_bn(EVP_PKEY *pkey, const char *param, size_t size,
    ngx_pool_t *pool, ngx_str_t *b64)
{
    u_char     *bin;
    BIGNUM     *bn;
    ngx_int_t   rc;

    bn = NULL;

    if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1) {
        return NGX_ERROR;
    }

    if (size == 0) {
        size = BN_num_bytes(bn);
    }

    rc = NGX_ERROR;
    bin = ngx_pnalloc(pool, size);

    if (bin && BN_bn2binpad(bn, bin, size) == (int) size) {
        rc = ngx_http_registry_jwt_encode(pool, bin, size, b64);
    }

    BN_free(bn);

    return rc;
}


/*
 * The issuer's key: a PEM private key, EC P-256 (ES256) or Ed25519
 * (EdDSA).  Its public half verifies the issuer's own refresh tokens.
 */

const char *
ngx_http_registry_jwt_signer_load(ngx_http_registry_jwt_signer_t *signer,
    ngx_str_t *file, ngx_pool_t *pool)
{
    BIO                          *bio;
    EVP_PKEY                     *pkey;
    ngx_str_t                     data;
    const char                   *err;
    ngx_http_registry_jwt_key_t  *key;

    err = ngx_http_registry_jwt_read(file, pool, &data);
    if (err) {
        return err;
    }

    bio = BIO_new_mem_buf(data.data, (int) data.len);
    if (bio == NULL) {
        return "out of memory";
    }

    pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);

    BIO_free(bio);

    if (pkey == NULL) {
        return ngx_http_registry_jwt_ssl_error(pool,
                                               "holds no PEM private key");
    }

    if (ngx_http_registry_jwt_keys_init(&signer->own, pool) != NGX_OK) {
        EVP_PKEY_free(pkey);
        return "out of memory";
    }

    err = ngx_http_registry_jwt_add(&signer->own, pkey, pool, &key);
    if (err) {
        return err;
    }

    switch (key->type) {

    case NGX_HTTP_REGISTRY_JWT_P256:
        ngx_str_set(&signer->alg, "ES256");
        break;

    case NGX_HTTP_REGISTRY_JWT_ED25519:
        ngx_str_set(&signer->alg, "EdDSA");
        break;

    default:
        return "holds a key that is neither EC P-256 nor Ed25519";
    }

    signer->key = *key;

    return NULL;
}


/* ---- verification, in the event loop ---- */

/*
 * NGX_OK: the token is genuine and valid now, *claims says what it
 * grants.  NGX_DECLINED: it is not, *reason says why.  NGX_ERROR: out of
 * memory.
 */

ngx_int_t
ngx_http_registry_jwt_verify(ngx_http_registry_jwt_verify_t *v,
    ngx_str_t *token, ngx_pool_t *pool, ngx_http_registry_jwt_claims_t *claims,
    const char **reason)
{
    u_char                       *first, *second, *last;
    json_t                       *header, *payload;
    ngx_int_t                     rc;
    ngx_str_t                     part[3], input;
    ngx_http_registry_jwt_alg_t  *alg;

    if (token->len > NGX_HTTP_REGISTRY_JWT_MAX) {
        *reason = "larger than 8 KiB";
        return NGX_DECLINED;
    }

    last = token->data + token->len;

    first = ngx_strlchr(token->data, last, '.');
    second = first ? ngx_strlchr(first + 1, last, '.') : NULL;

    if (second == NULL || ngx_strlchr(second + 1, last, '.')) {
        *reason = "not three parts";
        return NGX_DECLINED;
    }

    part[0].data = token->data;
    part[0].len = first - token->data;
    part[1].data = first + 1;
    part[1].len = second - (first + 1);
    part[2].data = second + 1;
    part[2].len = last - (second + 1);

    input.data = token->data;
    input.len = second - token->data;

    rc = ngx_http_registry_jwt_json(&part[0], pool, &header, reason);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_registry_jwt_header(v, header, &alg, reason);

    if (rc == NGX_OK) {
        rc = ngx_http_registry_jwt_signed(v, header, alg, &input, &part[2],
                                          pool, claims, reason);
    }

    json_decref(header);

    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_registry_jwt_json(&part[1], pool, &payload, reason);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_registry_jwt_claims(v, payload, pool, claims, reason);

    json_decref(payload);

    return rc;
}


/* a part decoded and parsed: a JSON object whose members are all distinct */

static ngx_int_t
ngx_http_registry_jwt_json(ngx_str_t *part, ngx_pool_t *pool, json_t **json,
    const char **reason)
{
    ngx_int_t     rc;
    ngx_str_t     raw;
    json_error_t  err;

    rc = ngx_http_registry_jwt_decode(part, pool, &raw);

    if (rc == NGX_DECLINED) {
        *reason = "malformed base64url";
    }

    if (rc != NGX_OK) {
        return rc;
    }

    *json = json_loadb((char *) raw.data, raw.len, JSON_REJECT_DUPLICATES,
                       &err);

    if (*json == NULL) {
        *reason = (json_error_code(&err) == json_error_duplicate_key)
                  ? "duplicated member" : "invalid JSON";
        return NGX_DECLINED;
    }

    if (!json_is_object(*json)) {
        json_decref(*json);
        *reason = "not a JSON object";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_jwt_header(ngx_http_registry_jwt_verify_t *v,
    json_t *header, ngx_http_registry_jwt_alg_t **alg, const char **reason)
{
    json_t     *value;
    ngx_str_t   name;

    static const char  *refused[] = { "jwk", "jku", "x5u", "crit", NULL };
    const char        **p;

    for (p = refused; *p; p++) {
        if (json_object_get(header, *p)) {
            *reason = "header has a refused member (jwk, jku, x5u or crit)";
            return NGX_DECLINED;
        }
    }

    /* access tokens may leave "typ" out; refresh tokens say what they are */

    value = json_object_get(header, "typ");

    if (value == NULL) {
        if (ngx_strcmp(v->typ, "JWT") != 0) {
            *reason = "wrong typ";
            return NGX_DECLINED;
        }

    } else if (!json_is_string(value)
               || ngx_strcasecmp((u_char *) json_string_value(value),
                                 (u_char *) v->typ)
                  != 0)
    {
        *reason = "wrong typ";
        return NGX_DECLINED;
    }

    value = json_object_get(header, "alg");

    if (!json_is_string(value)) {
        *reason = "no alg";
        return NGX_DECLINED;
    }

    name.data = (u_char *) json_string_value(value);
    name.len = json_string_length(value);

    *alg = ngx_http_registry_jwt_alg(&name);

    if (*alg == NULL) {
        *reason = "alg not allowed (none, HMAC and unknown ones are not)";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_http_registry_jwt_alg_t *
ngx_http_registry_jwt_alg(ngx_str_t *name)
{
    ngx_http_registry_jwt_alg_t  *a;

    for (a = ngx_http_registry_jwt_algs; a->name.len; a++) {
        if (a->name.len == name->len
            && ngx_strncmp(a->name.data, name->data, name->len) == 0)
        {
            return a;
        }
    }

    return NULL;
}


/* the key that signed it, and whether it did: x5c first, as distribution */

static ngx_int_t
ngx_http_registry_jwt_signed(ngx_http_registry_jwt_verify_t *v,
    json_t *header, ngx_http_registry_jwt_alg_t *alg, ngx_str_t *input,
    ngx_str_t *signature, ngx_pool_t *pool,
    ngx_http_registry_jwt_claims_t *claims, const char **reason)
{
    json_t     *kid, *x5c;
    EVP_PKEY   *pkey;
    ngx_int_t   rc;
    ngx_str_t   sig, id;

    rc = ngx_http_registry_jwt_decode(signature, pool, &sig);

    if (rc == NGX_DECLINED) {
        *reason = "malformed base64url";
    }

    if (rc != NGX_OK) {
        return rc;
    }

    x5c = json_object_get(header, "x5c");

    if (x5c) {
        rc = ngx_http_registry_jwt_x5c(v, x5c, pool, &pkey, reason);
        if (rc != NGX_OK) {
            return rc;
        }

        if (!(alg->types & ngx_http_registry_jwt_type(pkey))) {
            EVP_PKEY_free(pkey);
            *reason = "x5c certificate's key cannot do this alg";
            return NGX_DECLINED;
        }

        rc = ngx_http_registry_jwt_check(pkey, alg, input, &sig);

        EVP_PKEY_free(pkey);

        ngx_str_set(&claims->key, "x5c chain");
        *reason = "bad signature";

        return rc;
    }

    kid = json_object_get(header, "kid");

    if (kid == NULL) {
        return ngx_http_registry_jwt_any_key(v, alg, input, &sig, claims,
                                             reason);
    }

    if (!json_is_string(kid)) {
        *reason = "kid is not a string";
        return NGX_DECLINED;
    }

    id.data = (u_char *) json_string_value(kid);
    id.len = json_string_length(kid);

    return ngx_http_registry_jwt_by_kid(v, &id, alg, input, &sig, claims,
                                        reason);
}


static ngx_int_t
ngx_http_registry_jwt_by_kid(ngx_http_registry_jwt_verify_t *v, ngx_str_t *kid,
    ngx_http_registry_jwt_alg_t *alg, ngx_str_t *input, ngx_str_t *sig,
    ngx_http_registry_jwt_claims_t *claims, const char **reason)
{
    ngx_str_t                    *ids[3];
    ngx_uint_t                    i, j;
    ngx_http_registry_jwt_key_t  *key;

    key = v->keys->keys.elts;

    for (i = 0; i < v->keys->keys.nelts; i++) {
        ids[0] = &key[i].kid;
        ids[1] = &key[i].thumbprint;
        ids[2] = &key[i].libtrust;

        for (j = 0; j < 3; j++) {
            if (ids[j]->len == kid->len && kid->len
                && ngx_strncmp(ids[j]->data, kid->data, kid->len) == 0)
            {
                goto found;
            }
        }
    }

    *reason = "unknown kid";
    return NGX_DECLINED;

found:

    if (!ngx_http_registry_jwt_allows(&key[i], alg)) {
        *reason = "the kid's key cannot do this alg";
        return NGX_DECLINED;
    }

    claims->key = key[i].libtrust;
    *reason = "bad signature";

    return ngx_http_registry_jwt_check(key[i].pkey, alg, input, sig);
}


/* no kid: any key that may do the algorithm */

static ngx_int_t
ngx_http_registry_jwt_any_key(ngx_http_registry_jwt_verify_t *v,
    ngx_http_registry_jwt_alg_t *alg, ngx_str_t *input, ngx_str_t *sig,
    ngx_http_registry_jwt_claims_t *claims, const char **reason)
{
    ngx_int_t                     rc;
    ngx_uint_t                    i;
    ngx_http_registry_jwt_key_t  *key;

    key = v->keys->keys.elts;
    *reason = "no key for this alg";

    for (i = 0; i < v->keys->keys.nelts; i++) {
        if (!ngx_http_registry_jwt_allows(&key[i], alg)) {
            continue;
        }

        *reason = "bad signature";

        rc = ngx_http_registry_jwt_check(key[i].pkey, alg, input, sig);

        if (rc != NGX_DECLINED) {
            claims->key = key[i].libtrust;
            return rc;
        }
    }

    return NGX_DECLINED;
}


static ngx_uint_t
ngx_http_registry_jwt_allows(ngx_http_registry_jwt_key_t *key,
    ngx_http_registry_jwt_alg_t *alg)
{
    if (!(alg->types & key->type)) {
        return 0;
    }

    return key->alg.len == 0
           || (key->alg.len == alg->name.len
               && ngx_strncmp(key->alg.data, alg->name.data, alg->name.len)
                  == 0);
}


/*
 * "x5c": the signer's certificate first, then intermediates; it must
 * verify to a configured certificate.  *pkey is the leaf's key.
 */

static ngx_int_t
ngx_http_registry_jwt_x5c(ngx_http_registry_jwt_verify_t *v, json_t *x5c,
    ngx_pool_t *pool, EVP_PKEY **pkey, const char **reason)
{
    X509            *leaf, *cert;
    size_t           i;
    json_t          *entry;
    ngx_int_t        rc;
    STACK_OF(X509)  *chain;
    X509_STORE_CTX  *ctx;

    if (v->keys->roots == NULL) {
        *reason = "x5c, but no certificate is configured";
        return NGX_DECLINED;
    }

    if (!json_is_array(x5c) || json_array_size(x5c) == 0
        || json_array_size(x5c) > NGX_HTTP_REGISTRY_JWT_CHAIN_MAX)
    {
        *reason = "malformed x5c";
        return NGX_DECLINED;
    }

    leaf = ngx_http_registry_jwt_x5c_cert(json_array_get(x5c, 0), pool);
    chain = sk_X509_new_null();
    ctx = X509_STORE_CTX_new();

    *pkey = NULL;
    *reason = "malformed x5c";
    rc = NGX_DECLINED;

    if (leaf == NULL || chain == NULL || ctx == NULL) {
        goto done;
    }

    json_array_foreach(x5c, i, entry) {
        if (i == 0) {
            continue;
        }

        cert = ngx_http_registry_jwt_x5c_cert(entry, pool);

        if (cert == NULL || !sk_X509_push(chain, cert)) {
            X509_free(cert);
            goto done;
        }
    }

    *reason = "x5c chain does not verify to a configured certificate";

    if (X509_STORE_CTX_init(ctx, v->keys->roots, leaf, chain) != 1
        || X509_verify_cert(ctx) != 1)
    {
        goto done;
    }

    *pkey = X509_get_pubkey(leaf);

    if (*pkey) {
        rc = NGX_OK;
    }

done:

    X509_STORE_CTX_free(ctx);
    sk_X509_pop_free(chain, X509_free);
    X509_free(leaf);
    ERR_clear_error();

    return rc;
}


/* one entry of x5c: standard base64 (with padding) of a DER certificate */

static X509 *
ngx_http_registry_jwt_x5c_cert(json_t *entry, ngx_pool_t *pool)
{
    ngx_str_t      b64, der;
    const u_char  *p;

    if (!json_is_string(entry)) {
        return NULL;
    }

    b64.data = (u_char *) json_string_value(entry);
    b64.len = json_string_length(entry);

    der.data = ngx_pnalloc(pool, ngx_base64_decoded_length(b64.len));
    if (der.data == NULL || ngx_decode_base64(&der, &b64) != NGX_OK) {
        return NULL;
    }

    p = der.data;

    return d2i_X509(NULL, &p, der.len);
}


/* NGX_OK: the signature verifies; NGX_DECLINED: it does not */

static ngx_int_t
ngx_http_registry_jwt_check(EVP_PKEY *pkey, ngx_http_registry_jwt_alg_t *alg,
    ngx_str_t *input, ngx_str_t *sig)
{
    int            ok, len;
    u_char        *der;
    EVP_MD_CTX    *md;
    EVP_PKEY_CTX  *pctx;

    der = NULL;
    len = (int) sig->len;

    if (alg->half) {
        if (sig->len != 2 * alg->half
            || ngx_http_registry_jwt_der_sig(sig, alg->half, &der, &len)
               != NGX_OK)
        {
            return NGX_DECLINED;
        }
    }

    md = EVP_MD_CTX_new();
    ok = 0;

    if (md
        && EVP_DigestVerifyInit(md, &pctx, alg->md ? alg->md() : NULL, NULL,
                                pkey)
           == 1
        && (alg->padding == 0
            || EVP_PKEY_CTX_set_rsa_padding(pctx, alg->padding) == 1)
        && (alg->padding != RSA_PKCS1_PSS_PADDING
            || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST)
               == 1))
    {
        ok = EVP_DigestVerify(md, der ? der : sig->data, len, input->data,
                              input->len);
    }

    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ERR_clear_error();

    return ok == 1 ? NGX_OK : NGX_DECLINED;
}


/* JWS's R||S, each half bytes, as the DER ECDSA-Sig-Value EVP verifies */

static ngx_int_t
ngx_http_registry_jwt_der_sig(ngx_str_t *raw, size_t half, u_char **der,
    int *len)
{
    BIGNUM     *r, *s;
    ECDSA_SIG  *sig;

    sig = ECDSA_SIG_new();
    r = BN_bin2bn(raw->data, half, NULL);
    s = BN_bin2bn(raw->data + half, half, NULL);

    if (sig == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(sig, r, s)) {
        ECDSA_SIG_free(sig);
        BN_free(r);
        BN_free(s);
        return NGX_ERROR;
    }

    *der = NULL;
    *len = i2d_ECDSA_SIG(sig, der);

    ECDSA_SIG_free(sig);

    return *len > 0 ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_registry_jwt_claims(ngx_http_registry_jwt_verify_t *v,
    json_t *payload, ngx_pool_t *pool, ngx_http_registry_jwt_claims_t *claims,
    const char **reason)
{
    json_t  *value;
    double   exp, nbf;

    if (!ngx_http_registry_jwt_is(json_object_get(payload, "iss"),
                                  &v->issuer))
    {
        *reason = "wrong iss";
        return NGX_DECLINED;
    }

    if (!ngx_http_registry_jwt_audience(json_object_get(payload, "aud"),
                                        &v->audience))
    {
        *reason = "wrong aud";
        return NGX_DECLINED;
    }

    value = json_object_get(payload, "exp");

    if (!json_is_number(value)) {
        *reason = "no exp";
        return NGX_DECLINED;
    }

    exp = json_number_value(value);

    if (!(exp + NGX_HTTP_REGISTRY_JWT_LEEWAY >= (double) v->now)) {
        *reason = "expired";
        return NGX_DECLINED;
    }

    /* what is cached lives at most a year, whatever exp says */
    claims->exp = (time_t) ngx_min(exp, (double) v->now + 365 * 86400);

    value = json_object_get(payload, "nbf");

    if (value) {
        nbf = json_is_number(value) ? json_number_value(value) : 1e300;

        if (!(nbf <= (double) v->now + NGX_HTTP_REGISTRY_JWT_LEEWAY)) {
            *reason = "not valid yet (nbf)";
            return NGX_DECLINED;
        }
    }

    value = json_object_get(payload, "sub");

    if (value == NULL) {
        ngx_str_set(&claims->sub, "");

    } else if (!json_is_string(value)) {
        *reason = "sub is not a string";
        return NGX_DECLINED;

    } else if (ngx_http_registry_jwt_copy(pool, value, &claims->sub)
               != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_registry_jwt_access(json_object_get(payload, "access"),
                                        pool, &claims->access, reason);
}


/* "aud" is the service, or a list of audiences that holds it */

static ngx_uint_t
ngx_http_registry_jwt_audience(json_t *aud, ngx_str_t *want)
{
    size_t   i;
    json_t  *one;

    if (!json_is_array(aud)) {
        return ngx_http_registry_jwt_is(aud, want);
    }

    json_array_foreach(aud, i, one) {
        if (ngx_http_registry_jwt_is(one, want)) {
            return 1;
        }
    }

    return 0;
}


/*
 * "access": [{"type", "name", "actions": [...]}] as what it grants here:
 * a repository's actions (its resource class, as in "repository(plugin)",
 * ignored as distribution does), or the catalog ("registry:catalog:*",
 * an empty name).  Other types grant nothing; a malformed entry refuses
 * the token.
 */

static ngx_int_t
ngx_http_registry_jwt_access(json_t *access, ngx_pool_t *pool,
    ngx_array_t **list, const char **reason)
{
    json_t                    *entry, *type, *name;
    size_t                     i;
    ngx_uint_t                 actions;
    const char                *t;
    ngx_http_registry_need_t  *grant;

    *list = ngx_array_create(pool, 2, sizeof(ngx_http_registry_need_t));
    if (*list == NULL) {
        return NGX_ERROR;
    }

    if (access == NULL || json_is_null(access)) {
        return NGX_OK;
    }

    *reason = "malformed access claim";

    if (!json_is_array(access)) {
        return NGX_DECLINED;
    }

    json_array_foreach(access, i, entry) {
        type = json_object_get(entry, "type");
        name = json_object_get(entry, "name");

        if (!json_is_string(type) || !json_is_string(name)) {
            return NGX_DECLINED;
        }

        actions = ngx_http_registry_jwt_actions(
                                   json_object_get(entry, "actions"), reason);

        if (actions == (ngx_uint_t) -1) {
            return NGX_DECLINED;
        }

        t = json_string_value(type);

        if (ngx_strcmp(t, "registry") == 0
            && ngx_strcmp(json_string_value(name), "catalog") == 0)
        {
            actions = (actions == NGX_HTTP_REGISTRY_ALL)
                      ? NGX_HTTP_REGISTRY_CATALOG : 0;
            name = NULL;

        } else if (ngx_strcmp(t, "repository") == 0
                   || ngx_strncmp(t, "repository(", 11) == 0)
        {
            actions &= ~NGX_HTTP_REGISTRY_CATALOG;

        } else {
            continue;
        }

        if (actions == 0) {
            continue;
        }

        grant = ngx_array_push(*list);
        if (grant == NULL) {
            return NGX_ERROR;
        }

        grant->actions = actions;
        ngx_str_set(&grant->name, "");

        if (name && ngx_http_registry_jwt_copy(pool, name, &grant->name)
                    != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the actions listed, "*" all of them; (ngx_uint_t) -1 when malformed */

static ngx_uint_t
ngx_http_registry_jwt_actions(json_t *actions, const char **reason)
{
    size_t       i;
    json_t      *a;
    ngx_uint_t   bits;
    const char  *s;

    if (!json_is_array(actions)) {
        return (ngx_uint_t) -1;
    }

    bits = 0;

    json_array_foreach(actions, i, a) {
        if (!json_is_string(a)) {
            return (ngx_uint_t) -1;
        }

        s = json_string_value(a);

        if (ngx_strcmp(s, "*") == 0) {
            bits |= NGX_HTTP_REGISTRY_ALL;

        } else if (ngx_strcmp(s, "pull") == 0) {
            bits |= NGX_HTTP_REGISTRY_PULL;

        } else if (ngx_strcmp(s, "push") == 0) {
            bits |= NGX_HTTP_REGISTRY_PUSH;

        } else if (ngx_strcmp(s, "delete") == 0) {
            bits |= NGX_HTTP_REGISTRY_DELETE;
        }
    }

    return bits;
}


static ngx_uint_t
ngx_http_registry_jwt_is(json_t *value, ngx_str_t *s)
{
    return json_is_string(value)
           && json_string_length(value) == s->len
           && ngx_strncmp(json_string_value(value), s->data, s->len) == 0;
}


static ngx_int_t
ngx_http_registry_jwt_copy(ngx_pool_t *pool, json_t *value, ngx_str_t *s)
{
    s->len = json_string_length(value);
    s->data = ngx_pnalloc(pool, s->len + 1);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->data, json_string_value(value), s->len + 1);

    return NGX_OK;
}


/* ---- signing, for the issuer ---- */

/* header {"typ","alg","kid"} and the claims, signed: a compact token */

ngx_int_t
ngx_http_registry_jwt_sign(ngx_http_registry_jwt_signer_t *signer,
    json_t *claims, const char *typ, ngx_pool_t *pool, ngx_str_t *token)
{
    char       *h, *c;
    json_t     *header;
    ngx_int_t   rc;
    ngx_str_t   src, dst;

    header = json_pack("{s:s,s:s,s:s%}", "typ", typ,
                       "alg", (char *) signer->alg.data,
                       "kid", (char *) signer->key.libtrust.data,
                       signer->key.libtrust.len);

    h = header ? json_dumps(header, JSON_COMPACT) : NULL;
    c = json_dumps(claims, JSON_COMPACT);

    json_decref(header);

    rc = NGX_ERROR;

    if (h == NULL || c == NULL) {
        goto done;
    }

    /* room for the signature too: 64 bytes for ES256 and EdDSA alike */

    token->data = ngx_pnalloc(pool,
                              ngx_base64_encoded_length(ngx_strlen(h)) + 1
                              + ngx_base64_encoded_length(ngx_strlen(c)) + 1
                              + ngx_base64_encoded_length(64));
    if (token->data == NULL) {
        goto done;
    }

    src.data = (u_char *) h;
    src.len = ngx_strlen(h);
    dst.data = token->data;
    ngx_encode_base64url(&dst, &src);

    token->len = dst.len;
    token->data[token->len++] = '.';

    src.data = (u_char *) c;
    src.len = ngx_strlen(c);
    dst.data = token->data + token->len;
    ngx_encode_base64url(&dst, &src);

    token->len += dst.len;

    rc = ngx_http_registry_jwt_signature(signer, token);

done:

    free(h);
    free(c);

    return rc;
}


/* appends ".<signature>" of what token holds */

static ngx_int_t
ngx_http_registry_jwt_signature(ngx_http_registry_jwt_signer_t *signer,
    ngx_str_t *token)
{
    u_char      *der, raw[64];
    size_t       len;
    ngx_int_t    rc, es256;
    ngx_str_t    src, dst;
    EVP_MD_CTX  *md;

    es256 = (signer->key.type == NGX_HTTP_REGISTRY_JWT_P256);

    rc = NGX_ERROR;
    der = NULL;
    md = EVP_MD_CTX_new();

    if (md == NULL
        || EVP_DigestSignInit(md, NULL, es256 ? EVP_sha256() : NULL, NULL,
                              signer->key.pkey)
           != 1
        || EVP_DigestSign(md, NULL, &len, token->data, token->len) != 1)
    {
        goto done;
    }

    der = OPENSSL_malloc(len);

    if (der == NULL
        || EVP_DigestSign(md, der, &len, token->data, token->len) != 1)
    {
        goto done;
    }

    if (es256) {
        if (ngx_http_registry_jwt_raw_sig(der, len, 32, raw) != NGX_OK) {
            goto done;
        }

        src.data = raw;
        src.len = sizeof(raw);

    } else {
        src.data = der;
        src.len = len;
    }

    if (src.len > sizeof(raw)) {
        goto done;
    }

    token->data[token->len++] = '.';

    dst.data = token->data + token->len;
    ngx_encode_base64url(&dst, &src);

    token->len += dst.len;
    rc = NGX_OK;

done:

    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ERR_clear_error();

    return rc;
}


/* the DER ECDSA-Sig-Value EVP makes, as JWS's R||S of half bytes each */

static ngx_int_t
ngx_http_registry_jwt_raw_sig(u_char *der, size_t len, size_t half,
    u_char *raw)
{
    ngx_int_t      rc;
    ECDSA_SIG     *sig;
    const u_char  *p;
    const BIGNUM  *r, *s;

    p = der;

    sig = d2i_ECDSA_SIG(NULL, &p, (long) len);
    if (sig == NULL) {
        return NGX_ERROR;
    }

    ECDSA_SIG_get0(sig, &r, &s);

    rc = (BN_bn2binpad(r, raw, half) == (int) half
          && BN_bn2binpad(s, raw + half, half) == (int) half)
         ? NGX_OK : NGX_ERROR;

    ECDSA_SIG_free(sig);

    return rc;
}


/* bytes random bytes, in base64url: jti, refresh token ids */

ngx_int_t
ngx_http_registry_jwt_random(ngx_pool_t *pool, size_t bytes, ngx_str_t *text)
{
    u_char  raw[32];

    if (bytes > sizeof(raw) || RAND_bytes(raw, bytes) != 1) {
        return NGX_ERROR;
    }

    return ngx_http_registry_jwt_encode(pool, raw, bytes, text);
}


/* ---- base64url ---- */

/*
 * Strict: the URL alphabet only, no padding, and the unused low bits of
 * the last digit zero, so that a token has one spelling (a changed
 * spelling is a changed token, never the same bytes read another way).
 */

static ngx_int_t
ngx_http_registry_jwt_decode(ngx_str_t *src, ngx_pool_t *pool, ngx_str_t *dst)
{
    u_char      c, last;
    ngx_uint_t  i;

    last = 0;

    for (i = 0; i < src->len; i++) {
        c = src->data[i];

        if (c >= 'A' && c <= 'Z') {
            last = c - 'A';

        } else if (c >= 'a' && c <= 'z') {
            last = c - 'a' + 26;

        } else if (c >= '0' && c <= '9') {
            last = c - '0' + 52;

        } else if (c == '-' || c == '_') {
            last = (c == '-') ? 62 : 63;

        } else {
            return NGX_DECLINED;
        }
    }

    if ((src->len % 4 == 1)
        || (src->len % 4 == 2 && (last & 0x0f))
        || (src->len % 4 == 3 && (last & 0x03)))
    {
        return NGX_DECLINED;
    }

    dst->data = ngx_pnalloc(pool, ngx_base64_decoded_length(src->len) + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64url(dst, src) != NGX_OK) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_jwt_encode(ngx_pool_t *pool, u_char *data, size_t len,
    ngx_str_t *b64)
{
    ngx_str_t  src;

    b64->data = ngx_pnalloc(pool, ngx_base64_encoded_length(len));
    if (b64->data == NULL) {
        return NGX_ERROR;
    }

    src.data = data;
    src.len = len;

    ngx_encode_base64url(b64, &src);

    return NGX_OK;
}


/* what + OpenSSL's last error, for a configuration error message */

static const char *
ngx_http_registry_jwt_ssl_error(ngx_pool_t *pool, const char *what)
{
    char           *text;
    u_char         *p;
    size_t          len;
    unsigned long   e;

    e = ERR_peek_last_error();

    if (e == 0) {
        return what;
    }

    text = ngx_pnalloc(pool, ngx_strlen(what) + 256);
    if (text == NULL) {
        ERR_clear_error();
        return what;
    }

    p = ngx_sprintf((u_char *) text, "%s (", what);

    ERR_error_string_n(e, (char *) p, 250);

    len = ngx_strlen(text);
    text[len] = ')';
    text[len + 1] = '\0';

    ERR_clear_error();

    return text;
}
