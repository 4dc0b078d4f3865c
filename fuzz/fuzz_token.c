
/*
 * The token issuer's request (parse.c): its query or form, and each scope
 * value in it.  Every key is a piece of the input and every value a
 * NUL-terminated string no longer than its raw form; every resource a
 * scope names is the catalog (empty name, catalog action at most) or a
 * repository of a valid name with repository actions.
 */


#include "fuzz.h"


typedef struct {
    ngx_str_t   *in;
    ngx_pool_t  *pool;
    ngx_uint_t   params;
    ngx_uint_t   wants;
} fuzz_token_t;


static ngx_int_t
want(void *data, ngx_str_t *name, ngx_uint_t actions)
{
    fuzz_token_t  *ft = data;

    ft->wants++;

    if (name->len == 0) {
        fuzz_check((actions & ~NGX_HTTP_REGISTRY_CATALOG) == 0);

    } else {
        fuzz_check(ngx_http_registry_valid_name(name) == NGX_OK);
        fuzz_check((actions & ~NGX_HTTP_REGISTRY_SCOPE_REPOSITORY) == 0);
    }

    /* the issuer refuses a scope past its 16th resource */

    return (ft->wants > 16) ? NGX_DECLINED : NGX_OK;
}


static ngx_int_t
param(void *data, ngx_str_t *key, ngx_str_t *value)
{
    fuzz_token_t  *ft = data;

    ft->params++;

    fuzz_check(key->data >= ft->in->data
               && key->data + key->len <= ft->in->data + ft->in->len);
    fuzz_check(memchr(key->data, '&', key->len) == NULL);
    fuzz_check(memchr(key->data, '=', key->len) == NULL);
    fuzz_check(value->len <= ft->in->len);
    fuzz_check(value->data[value->len] == '\0');

    if (key->len == 5 && ngx_strncmp(key->data, "scope", 5) == 0) {
        fuzz_check(ngx_http_registry_scope_parse(value, want, ft)
                   != NGX_ERROR);
        ft->wants = 0;
    }

    return NGX_OK;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_int_t     rc;
    ngx_str_t     in;
    fuzz_token_t  ft;

    in = fuzz_str(data, size);

    ft.in = &in;
    ft.pool = fuzz_pool();
    ft.params = 0;
    ft.wants = 0;

    rc = ngx_http_registry_form_parse(ft.pool, &in, param, &ft);

    fuzz_check(rc == NGX_OK);
    fuzz_check(ft.params <= in.len);

    /* the whole input as one scope value */

    rc = ngx_http_registry_scope_parse(&in, want, &ft);

    fuzz_check(rc == NGX_OK || rc == NGX_DECLINED);

    ngx_destroy_pool(ft.pool);
    free(in.data);

    return 0;
}
