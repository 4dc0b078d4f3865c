
/*
 * Digests (digest.c): "<alg>:<hex>" parsed, copied and rebuilt from a
 * directory name's parts; a digest accepted anywhere is one of the two
 * algorithms with exactly its length of lowercase hex, and the same text
 * parses the same way every time.
 */


#include "fuzz.h"


static void
check_digest(ngx_http_registry_digest_t *d)
{
    size_t  hex;

    fuzz_check(d->alg == NGX_HTTP_REGISTRY_SHA256
               || d->alg == NGX_HTTP_REGISTRY_SHA512);

    hex = (d->alg == NGX_HTTP_REGISTRY_SHA256) ? 64 : 128;

    fuzz_check(d->text.len == 7 + hex);
    fuzz_check(ngx_strncmp(d->text.data,
                           d->alg == NGX_HTTP_REGISTRY_SHA256
                           ? "sha256:" : "sha512:", 7) == 0);
    fuzz_check(d->hex.data == d->text.data + 7 && d->hex.len == hex);
    fuzz_check(fuzz_lower_hex(d->hex.data, d->hex.len));
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_int_t                   rc, alg;
    ngx_str_t                   in, name, hex;
    ngx_uint_t                  i;
    ngx_pool_t                 *pool;
    ngx_http_registry_digest_t  d, copy, of;

    in = fuzz_str(data, size);
    pool = fuzz_pool();

    rc = ngx_http_registry_parse_digest(&in, &d);

    if (rc == NGX_OK) {
        check_digest(&d);
    }

    rc = ngx_http_registry_digest_copy(pool, in.data, in.len, &copy);

    fuzz_check(rc == NGX_OK || rc == NGX_DECLINED);
    fuzz_check((rc == NGX_OK)
               == (ngx_http_registry_parse_digest(&in, &d) == NGX_OK));

    if (rc == NGX_OK) {
        check_digest(&copy);
        fuzz_check(ngx_http_registry_digest_equal(&copy, &d));
        fuzz_check(copy.text.data[copy.text.len] == '\0');
    }

    /* the input as the hex of a directory name, in both algorithms */

    for (i = NGX_HTTP_REGISTRY_SHA256; i <= NGX_HTTP_REGISTRY_SHA512; i++) {
        rc = ngx_http_registry_digest_of(pool, i, &in, &of);

        fuzz_check(rc == NGX_OK || rc == NGX_DECLINED);

        if (rc == NGX_OK) {
            check_digest(&of);
            fuzz_check(of.alg == i);
            fuzz_check(of.hex.len == in.len
                       && ngx_memcmp(of.hex.data, in.data, in.len) == 0);
        }
    }

    /* the part before a ":" as an algorithm's name */

    name.data = in.data;
    name.len = in.len;

    hex.data = memchr(in.data, ':', in.len);
    if (hex.data) {
        name.len = hex.data - in.data;
    }

    alg = ngx_http_registry_alg_by_name(&name);

    fuzz_check(alg == NGX_ERROR
               || (alg == NGX_HTTP_REGISTRY_SHA256 && name.len == 6
                   && ngx_strncmp(name.data, "sha256", 6) == 0)
               || (alg == NGX_HTTP_REGISTRY_SHA512 && name.len == 6
                   && ngx_strncmp(name.data, "sha512", 6) == 0));

    ngx_destroy_pool(pool);
    free(in.data);

    return 0;
}
