
/*
 * Query arguments (parse.c), as the listings (n, last), uploads (mount,
 * from, digest, digest-algorithm) and referrers (artifactType) read them:
 * the value found is the one of the first "&"-separated argument whose
 * name matches case-insensitively, as found here by a parser of our own,
 * percent-decoded; n is a non-negative number or refused.
 */


#include "fuzz.h"


static const char  *names[] = {
    "n", "last", "mount", "from", "digest", "digest-algorithm",
    "artifactType", NULL
};


/* the raw value of the first argument "name", or data NULL */

static ngx_str_t
ref_arg(ngx_str_t *args, const char *name)
{
    u_char     *p, *last, *amp;
    size_t      len;
    ngx_str_t   raw;

    len = ngx_strlen(name);
    p = args->data;
    last = p + args->len;

    raw.data = NULL;
    raw.len = 0;

    while (p < last) {
        amp = memchr(p, '&', last - p);
        if (amp == NULL) {
            amp = last;
        }

        if ((size_t) (amp - p) > len && p[len] == '='
            && ngx_strncasecmp(p, (u_char *) name, len) == 0)
        {
            raw.data = p + len + 1;
            raw.len = amp - raw.data;
            return raw;
        }

        p = amp + 1;
    }

    return raw;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_int_t    rc, n;
    ngx_str_t    in, value, raw;
    ngx_uint_t   i;
    ngx_pool_t  *pool;

    in = fuzz_str(data, size);
    pool = fuzz_pool();

    for (i = 0; names[i]; i++) {
        rc = ngx_http_registry_query_arg(pool, &in, names[i], &value);
        raw = ref_arg(&in, names[i]);

        fuzz_check(rc == NGX_OK || rc == NGX_DECLINED);
        fuzz_check((rc == NGX_OK) == (raw.data != NULL));

        if (rc != NGX_OK) {
            continue;
        }

        fuzz_check(value.len <= raw.len);

        if (memchr(raw.data, '%', raw.len) == NULL) {
            fuzz_check(value.len == raw.len
                       && ngx_memcmp(value.data, raw.data, raw.len) == 0);
        }

        if (i == 0) {
            n = ngx_atoi(value.data, value.len);
            fuzz_check(n == NGX_ERROR || n >= 0);
        }
    }

    ngx_destroy_pool(pool);
    free(in.data);

    return 0;
}
