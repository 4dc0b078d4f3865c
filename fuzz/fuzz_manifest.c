
/*
 * Manifests and indexes (manifest_json.c): a pushed body validated with a
 * Content-Type (the input's first byte picks one), the referrers entry of
 * a stored one, and the media type a GET serves.  What is accepted has
 * valid digests for every reference; the media type found by the fast
 * scan is the one jansson reads, whenever jansson reads the body; and
 * what the collector's scan reads is what jansson's parse gives.
 */


#include "fuzz.h"

#include <jansson.h>


static const char  *types[] = {
    "",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.oci.artifact.manifest.v1+json",
    "text/plain",
};


static void
check_digest(ngx_http_registry_digest_t *d)
{
    ngx_http_registry_digest_t  again;

    fuzz_check(ngx_http_registry_parse_digest(&d->text, &again) == NGX_OK);
}


/*
 * The collector's scan (manifest_scan()): where it reads a body at all,
 * the references jansson's parse without a Content-Type gives, in its
 * order, and no subject.
 */

static void
check_scan(ngx_pool_t *pool, ngx_str_t *body, ngx_http_registry_digest_t *d)
{
    ngx_uint_t                     i;
    const char                    *invalid;
    ngx_str_t                      none = ngx_null_string;
    ngx_http_registry_ref_t       *fast, *slow;
    ngx_http_registry_manifest_t   scanned, parsed;

    ngx_memzero(&scanned, sizeof(scanned));
    scanned.bytes = *body;
    scanned.digest = *d;

    if (ngx_http_registry_manifest_scan(pool, &scanned) != NGX_OK) {
        return;
    }

    parsed = scanned;
    parsed.references = NULL;

    fuzz_check(ngx_http_registry_manifest_parse(pool, &parsed, &none,
                                                &invalid)
               == NGX_OK);
    fuzz_check(parsed.descriptor.len == 0);
    fuzz_check(parsed.references->nelts == scanned.references->nelts);

    fast = scanned.references->elts;
    slow = parsed.references->elts;

    for (i = 0; i < parsed.references->nelts; i++) {
        fuzz_check(fast[i].manifest == slow[i].manifest
                   && fast[i].digest.text.len == slow[i].digest.text.len
                   && ngx_memcmp(fast[i].digest.text.data,
                                 slow[i].digest.text.data,
                                 slow[i].digest.text.len)
                      == 0);
    }
}


static void
check_media_type(ngx_pool_t *pool, ngx_str_t *body)
{
    json_t     *root, *mt;
    ngx_str_t   type;

    fuzz_check(ngx_http_registry_manifest_media_type(pool, body, &type)
               == NGX_OK);

    root = json_loadb((char *) body->data, body->len, 0, NULL);
    if (root == NULL) {
        return;
    }

    mt = json_is_object(root) ? json_object_get(root, "mediaType") : NULL;

    if (json_is_string(mt)) {
        fuzz_check(type.len == json_string_length(mt)
                   && ngx_memcmp(type.data, json_string_value(mt), type.len)
                      == 0);
    }

    json_decref(root);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t                        *desc;
    ngx_int_t                      rc;
    ngx_str_t                      ct, body, descriptor;
    ngx_uint_t                     i;
    ngx_pool_t                    *pool;
    const char                    *invalid;
    ngx_http_registry_ref_t       *ref;
    ngx_http_registry_hash_t       hash;
    ngx_http_registry_digest_t     subject;
    ngx_http_registry_manifest_t   m;

    if (size < 1) {
        return 0;
    }

    ct.data = (u_char *) types[data[0] % (sizeof(types) / sizeof(types[0]))];
    ct.len = ngx_strlen(ct.data);

    body = fuzz_str(data + 1, size - 1);
    pool = fuzz_pool();

    ngx_memzero(&m, sizeof(m));
    m.bytes = body;

    ngx_http_registry_hash_init(&hash, NGX_HTTP_REGISTRY_SHA256);
    ngx_http_registry_hash_update(&hash, body.data, body.len);
    fuzz_check(ngx_http_registry_hash_final(&hash, pool, &m.digest)
               == NGX_OK);

    invalid = NULL;
    rc = ngx_http_registry_manifest_parse(pool, &m, &ct, &invalid);

    fuzz_check(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc == NGX_DECLINED) {
        fuzz_check(invalid != NULL);

    } else {
        fuzz_check(m.references != NULL);

        ref = m.references->elts;

        for (i = 0; i < m.references->nelts; i++) {
            check_digest(&ref[i].digest);
        }

        if (m.descriptor.len) {
            check_digest(&m.subject);
        }
    }

    rc = ngx_http_registry_manifest_referrer(pool, &body, &m.digest,
                                             &subject, &descriptor);

    fuzz_check(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc == NGX_OK) {
        check_digest(&subject);

        desc = json_loadb((char *) descriptor.data, descriptor.len, 0, NULL);
        fuzz_check(json_is_object(desc));
        json_decref(desc);
    }

    check_scan(pool, &body, &m.digest);
    check_media_type(pool, &body);

    ngx_destroy_pool(pool);
    free(body.data);

    return 0;
}
