
/*
 * What every fuzz target shares: the module's headers, an input copied
 * into a block of exactly its size (so that AddressSanitizer catches a read
 * past it), a pool per input, and a check that aborts (libFuzzer reports
 * it as a crash, with the input).
 */


#ifndef _NGX_HTTP_REGISTRY_FUZZ_H_INCLUDED_
#define _NGX_HTTP_REGISTRY_FUZZ_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_registry.h"

#include <stdio.h>
#include <stdlib.h>


#define fuzz_check(cond)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                   \
            abort();                                                          \
        }                                                                     \
    } while (0)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* the input as an ngx_str_t of its own block; free() it after */

static inline ngx_str_t
fuzz_str(const uint8_t *data, size_t size)
{
    ngx_str_t  s;

    s.len = size;
    s.data = malloc(size ? size : 1);
    fuzz_check(s.data != NULL);

    if (size) {
        ngx_memcpy(s.data, data, size);
    }

    return s;
}


/* the input NUL-terminated, cut at its first NUL (as a header value is) */

static inline ngx_str_t
fuzz_cstr(const uint8_t *data, size_t size)
{
    ngx_str_t  s;
    u_char    *nul;

    nul = memchr(data, '\0', size);
    if (nul) {
        size = nul - data;
    }

    s.len = size;
    s.data = malloc(size + 1);
    fuzz_check(s.data != NULL);

    ngx_memcpy(s.data, data, size);
    s.data[size] = '\0';

    return s;
}


static inline ngx_pool_t *
fuzz_pool(void)
{
    ngx_pool_t  *pool;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, NULL);
    fuzz_check(pool != NULL);

    return pool;
}


static inline ngx_uint_t
fuzz_lower_hex(u_char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            return 0;
        }
    }

    return 1;
}


#endif /* _NGX_HTTP_REGISTRY_FUZZ_H_INCLUDED_ */
