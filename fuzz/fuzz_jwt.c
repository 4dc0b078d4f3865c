
/*
 * JWTs (jwt.c), verified against a test issuer key (fuzz/keys/, made for
 * these targets and nothing else) and two other public keys.  The input's
 * first byte picks what the rest is:
 *   0  a compact token, verified as the registry verifies a Bearer token;
 *   1  claims (JSON), signed with the issuer key and then verified, so
 *      that every claim reaches the checks behind the signature;
 *   2  header, NUL, payload, NUL, signature: encoded into a token, so that
 *      the header's members reach the checks before the signature;
 *   3  a file of keys (PEM or JWKS), loaded as registry_token_keys loads
 *      one.
 * What verifies is not expired and grants only well-formed access.
 * FUZZ_WRITE_SEEDS=dir writes tokens signed now, valid at the fixed time
 * the target verifies at, into dir and exits; FUZZ_VERBOSE=1 says why
 * each token verifies or not.
 */


#include "fuzz.h"
#include "ngx_http_registry_jwt.h"

#include <sys/mman.h>


#define FUZZ_NOW       1900000000
#define FUZZ_ISSUER    "fuzz-issuer"
#define FUZZ_AUDIENCE  "fuzz-registry"


static ngx_uint_t                      verbose;
static ngx_pool_t                     *keys_pool;
static ngx_http_registry_jwt_keys_t    keys;
static ngx_http_registry_jwt_signer_t  signer;


static void
load(const char *file, ngx_uint_t private)
{
    ngx_str_t    path;
    const char  *err;

    path.len = sizeof(FUZZ_KEYS) + ngx_strlen(file);
    path.data = ngx_pnalloc(keys_pool, path.len + 1);
    fuzz_check(path.data != NULL);
    ngx_sprintf(path.data, "%s/%s%Z", FUZZ_KEYS, file);

    err = private ? ngx_http_registry_jwt_signer_load(&signer, &path,
                                                      keys_pool)
                  : ngx_http_registry_jwt_keys_load(&keys, &path, keys_pool);

    if (err) {
        fprintf(stderr, "%s: %s\n", path.data, err);
        abort();
    }
}


static void
write_seeds(const char *dir)
{
    int                              i;
    char                             path[4096];
    FILE                            *f;
    json_t                          *claims;
    ngx_str_t                        token;
    ngx_pool_t                      *pool;

    static const char  *access[] = {
        "[{\"type\":\"repository\",\"name\":\"lib/app\","
        "\"actions\":[\"pull\",\"push\"]}]",
        "[{\"type\":\"registry\",\"name\":\"catalog\",\"actions\":[\"*\"]},"
        "{\"type\":\"repository\",\"name\":\"a/b\",\"actions\":[\"delete\"]}]",
        "[]",
        NULL
    };

    for (i = 0; access[i]; i++) {
        pool = fuzz_pool();

        claims = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:o}",
                           "iss", FUZZ_ISSUER, "sub", i ? "alice" : "",
                           "aud", FUZZ_AUDIENCE,
                           "exp", (json_int_t) FUZZ_NOW + 300,
                           "nbf", (json_int_t) FUZZ_NOW - 10,
                           "iat", (json_int_t) FUZZ_NOW - 10,
                           "jti", "seed",
                           "access", json_loads(access[i], 0, NULL));
        fuzz_check(claims != NULL);

        fuzz_check(ngx_http_registry_jwt_sign(&signer, claims, "JWT", pool,
                                              &token)
                   == NGX_OK);
        json_decref(claims);

        snprintf(path, sizeof(path), "%s/signed%d", dir, i + 1);
        f = fopen(path, "w");
        fuzz_check(f != NULL);
        fputc(0, f);
        fwrite(token.data, 1, token.len, f);
        fclose(f);

        ngx_destroy_pool(pool);
    }

    exit(0);
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char  *dir;

    keys_pool = fuzz_pool();

    fuzz_check(ngx_http_registry_jwt_keys_init(&keys, keys_pool) == NGX_OK);

    load("issuer.key", 1);
    load("issuer.pub", 0);
    load("rsa.pub", 0);
    load("ed25519.pub", 0);

    verbose = (getenv("FUZZ_VERBOSE") != NULL);

    dir = getenv("FUZZ_WRITE_SEEDS");
    if (dir) {
        write_seeds(dir);
    }

    return 0;
}


static void
verify(ngx_pool_t *pool, ngx_str_t *token, const char *typ)
{
    ngx_int_t                        rc;
    ngx_uint_t                       i;
    const char                      *reason;
    ngx_http_registry_need_t        *need;
    ngx_http_registry_jwt_claims_t   claims;
    ngx_http_registry_jwt_verify_t   v;

    v.keys = &keys;
    ngx_str_set(&v.issuer, FUZZ_ISSUER);
    ngx_str_set(&v.audience, FUZZ_AUDIENCE);
    v.typ = typ;
    v.now = FUZZ_NOW;

    ngx_memzero(&claims, sizeof(claims));
    reason = NULL;

    rc = ngx_http_registry_jwt_verify(&v, token, pool, &claims, &reason);

    fuzz_check(rc == NGX_OK || rc == NGX_DECLINED);

    if (verbose) {
        fprintf(stderr, "%s token: %s\n", typ,
                rc == NGX_OK ? "verified" : reason);
    }

    if (rc == NGX_DECLINED) {
        fuzz_check(reason != NULL);
        return;
    }

    fuzz_check(claims.exp + NGX_HTTP_REGISTRY_JWT_LEEWAY >= FUZZ_NOW);
    fuzz_check(claims.access != NULL);

    need = claims.access->elts;

    /*
     * A name is kept as signed, valid or not (an invalid one matches no
     * request); the catalog is granted only by "registry:catalog".
     */

    for (i = 0; i < claims.access->nelts; i++) {
        fuzz_check(need[i].actions != 0);
        fuzz_check((need[i].actions & ~NGX_HTTP_REGISTRY_ALL) == 0);
        fuzz_check(!(need[i].actions & NGX_HTTP_REGISTRY_CATALOG)
                   || (need[i].name.len == 0
                       && need[i].actions == NGX_HTTP_REGISTRY_CATALOG));
    }
}


static void
sign_and_verify(ngx_pool_t *pool, const uint8_t *data, size_t size)
{
    json_t     *claims;
    ngx_str_t   token;

    claims = json_loadb((const char *) data, size, 0, NULL);

    if (!json_is_object(claims)) {
        json_decref(claims);
        return;
    }

    if (ngx_http_registry_jwt_sign(&signer, claims, "JWT", pool, &token)
        == NGX_OK)
    {
        verify(pool, &token, "JWT");
    }

    json_decref(claims);
}


static void
encode(ngx_str_t *token, const uint8_t *data, size_t size)
{
    ngx_str_t  src, dst;

    src.data = (u_char *) data;
    src.len = size;
    dst.data = token->data + token->len;

    ngx_encode_base64url(&dst, &src);

    token->len += dst.len;
}


static void
parts_and_verify(ngx_pool_t *pool, const uint8_t *data, size_t size)
{
    size_t          i, start, n;
    ngx_str_t       token;
    const uint8_t  *part[3];
    size_t          len[3];

    start = 0;
    n = 0;

    for (i = 0; i <= size && n < 3; i++) {
        if (i == size || (data[i] == '\0' && n < 2)) {
            part[n] = data + start;
            len[n] = i - start;
            n++;
            start = i + 1;
        }
    }

    if (n < 3) {
        return;
    }

    token.data = ngx_pnalloc(pool, ngx_base64_encoded_length(size) + 2);
    fuzz_check(token.data != NULL);
    token.len = 0;

    encode(&token, part[0], len[0]);
    token.data[token.len++] = '.';
    encode(&token, part[1], len[1]);
    token.data[token.len++] = '.';
    encode(&token, part[2], len[2]);

    verify(pool, &token, (size & 1) ? "JWT" : NGX_HTTP_REGISTRY_JWT_REFRESH);
}


static void
load_keys(ngx_pool_t *pool, const uint8_t *data, size_t size)
{
    int                            fd;
    u_char                         name[64];
    ngx_str_t                      path;
    ngx_http_registry_jwt_keys_t   k;

    fd = memfd_create("keys", 0);
    fuzz_check(fd != -1);
    fuzz_check(write(fd, data, size) == (ssize_t) size);

    path.data = name;
    path.len = ngx_sprintf(name, "/proc/self/fd/%d%Z", fd) - name - 1;

    fuzz_check(ngx_http_registry_jwt_keys_init(&k, pool) == NGX_OK);

    (void) ngx_http_registry_jwt_keys_load(&k, &path, pool);

    close(fd);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_str_t    token;
    ngx_pool_t  *pool;

    if (size < 1) {
        return 0;
    }

    pool = fuzz_pool();

    switch (data[0] % 4) {

    case 0:
        token = fuzz_str(data + 1, size - 1);
        verify(pool, &token, "JWT");
        verify(pool, &token, NGX_HTTP_REGISTRY_JWT_REFRESH);
        free(token.data);
        break;

    case 1:
        sign_and_verify(pool, data + 1, size - 1);
        break;

    case 2:
        parts_and_verify(pool, data + 1, size - 1);
        break;

    default:
        load_keys(pool, data + 1, size - 1);
        break;
    }

    ngx_destroy_pool(pool);

    return 0;
}
