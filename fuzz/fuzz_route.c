
/*
 * The route of a request URI (parse.c), and with it repository names,
 * tags, digests and upload ids (names.c, digest.c): whatever the module
 * accepts must be what the spec's grammars accept, checked here against
 * implementations of them of our own; the input itself is also tried as
 * a name and as a tag.
 */


#include "fuzz.h"


static ngx_uint_t
ref_alnum(u_char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}


/* [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */

static ngx_uint_t
ref_component(u_char *p, size_t n)
{
    size_t  i;

    i = 0;

    for ( ;; ) {
        if (i >= n || !ref_alnum(p[i])) {
            return 0;
        }

        while (i < n && ref_alnum(p[i])) {
            i++;
        }

        if (i == n) {
            return 1;
        }

        if (p[i] == '.') {
            i++;

        } else if (p[i] == '_') {
            i++;
            if (i < n && p[i] == '_') {
                i++;
            }

        } else if (p[i] == '-') {
            while (i < n && p[i] == '-') {
                i++;
            }

        } else {
            return 0;
        }
    }
}


static ngx_uint_t
ref_name(ngx_str_t *s)
{
    size_t  i, start;

    if (s->len == 0 || s->len > 255) {
        return 0;
    }

    start = 0;

    for (i = 0; i <= s->len; i++) {
        if (i == s->len || s->data[i] == '/') {
            if (!ref_component(s->data + start, i - start)) {
                return 0;
            }

            start = i + 1;
        }
    }

    return 1;
}


/* [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} */

static ngx_uint_t
ref_tag(ngx_str_t *s)
{
    u_char  c;
    size_t  i;

    if (s->len == 0 || s->len > 128) {
        return 0;
    }

    for (i = 0; i < s->len; i++) {
        c = s->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_'
              || (i > 0 && (c == '.' || c == '-'))))
        {
            return 0;
        }
    }

    return 1;
}


static ngx_uint_t
ref_digest(ngx_str_t *s)
{
    if (s->len == 7 + 64 && ngx_strncmp(s->data, "sha256:", 7) == 0) {
        return fuzz_lower_hex(s->data + 7, 64);
    }

    if (s->len == 7 + 128 && ngx_strncmp(s->data, "sha512:", 7) == 0) {
        return fuzz_lower_hex(s->data + 7, 128);
    }

    return 0;
}


static ngx_uint_t
ref_upload_id(ngx_str_t *s)
{
    size_t  i;

    if (s->len != 36) {
        return 0;
    }

    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s->data[i] != '-') {
                return 0;
            }

        } else if (!fuzz_lower_hex(&s->data[i], 1)) {
            return 0;
        }
    }

    return 1;
}


static void
check_route(ngx_http_registry_route_t *route)
{
    switch (route->kind) {

    case NGX_HTTP_REGISTRY_ROUTE_BASE:
    case NGX_HTTP_REGISTRY_ROUTE_CATALOG:
        return;

    default:
        break;
    }

    fuzz_check(ref_name(&route->name));

    switch (route->kind) {

    case NGX_HTTP_REGISTRY_ROUTE_TAGS:
        fuzz_check(route->reference.len == 0);
        break;

    case NGX_HTTP_REGISTRY_ROUTE_MANIFEST:
        if (route->by_digest) {
            fuzz_check(ref_digest(&route->reference));

        } else {
            fuzz_check(ref_tag(&route->reference));
        }

        break;

    case NGX_HTTP_REGISTRY_ROUTE_BLOB:
    case NGX_HTTP_REGISTRY_ROUTE_REFERRERS:
        fuzz_check(route->by_digest);
        fuzz_check(ref_digest(&route->reference));
        fuzz_check(route->digest.text.data == route->reference.data
                   && route->digest.text.len == route->reference.len);
        break;

    case NGX_HTTP_REGISTRY_ROUTE_UPLOAD:
        fuzz_check(ref_upload_id(&route->reference));
        break;

    default:
        break;
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_int_t                   rc;
    ngx_str_t                   in;
    ngx_pool_t                 *pool;
    ngx_http_registry_digest_t  digest;
    ngx_http_registry_route_t   route;
    ngx_http_registry_fault_t   fault;

    in = fuzz_str(data, size);
    pool = fuzz_pool();

    ngx_memzero(&route, sizeof(route));
    ngx_memzero(&fault, sizeof(fault));

    rc = ngx_http_registry_route_parse(pool, &in, &route, &fault);

    fuzz_check(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc == NGX_OK) {
        check_route(&route);
    }

    fuzz_check((ngx_http_registry_valid_name(&in) == NGX_OK) == ref_name(&in));
    fuzz_check((ngx_http_registry_valid_tag(&in) == NGX_OK) == ref_tag(&in));
    fuzz_check((ngx_http_registry_valid_upload_id(&in) == NGX_OK)
               == ref_upload_id(&in));
    fuzz_check((ngx_http_registry_parse_digest(&in, &digest) == NGX_OK)
               == ref_digest(&in));

    ngx_destroy_pool(pool);
    free(in.data);

    return 0;
}
