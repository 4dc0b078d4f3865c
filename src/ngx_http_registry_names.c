
/*
 * ngx_http_registry_module: the grammars of repository names, tags and
 * upload ids, and sorted lists of names.  Everything that may become part
 * of a path is checked here first.
 */


#include "ngx_http_registry_store.h"

#include <openssl/rand.h>


static ngx_int_t ngx_http_registry_valid_component(u_char *p, u_char *last);
static int ngx_libc_cdecl ngx_http_registry_cmp_names(const void *one,
    const void *two);


/*
 * The spec's name grammar: components separated by "/", each
 * [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*, the whole at most 255 bytes.
 */

ngx_int_t
ngx_http_registry_valid_name(ngx_str_t *name)
{
    u_char  *p, *start, *last;

    if (name->len == 0 || name->len > NGX_HTTP_REGISTRY_NAME_MAX) {
        return NGX_ERROR;
    }

    last = name->data + name->len;
    start = name->data;

    for (p = start; p <= last; p++) {
        if (p == last || *p == '/') {
            if (ngx_http_registry_valid_component(start, p) != NGX_OK) {
                return NGX_ERROR;
            }

            start = p + 1;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_valid_component(u_char *p, u_char *last)
{
    ngx_uint_t  after_alnum;

    after_alnum = 0;

    while (p < last) {

        if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')) {
            after_alnum = 1;
            p++;
            continue;
        }

        if (!after_alnum) {
            return NGX_ERROR;
        }

        switch (*p) {

        case '.':
            p++;
            break;

        case '_':
            p++;
            if (p < last && *p == '_') {
                p++;
            }
            break;

        case '-':
            while (p < last && *p == '-') {
                p++;
            }
            break;

        default:
            return NGX_ERROR;
        }

        after_alnum = 0;
    }

    return after_alnum ? NGX_OK : NGX_ERROR;
}


/* [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} */

ngx_int_t
ngx_http_registry_valid_tag(ngx_str_t *tag)
{
    u_char      c;
    ngx_uint_t  i;

    if (tag->len == 0 || tag->len > NGX_HTTP_REGISTRY_TAG_MAX) {
        return NGX_ERROR;
    }

    for (i = 0; i < tag->len; i++) {
        c = tag->data[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '_')
        {
            continue;
        }

        if (i > 0 && (c == '.' || c == '-')) {
            continue;
        }

        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the UUID form new_upload_id() hands out: 8-4-4-4-12 lowercase hex */

ngx_int_t
ngx_http_registry_valid_upload_id(ngx_str_t *id)
{
    u_char      c;
    ngx_uint_t  i;

    if (id->len != NGX_HTTP_REGISTRY_UPLOAD_ID_LEN) {
        return NGX_ERROR;
    }

    for (i = 0; i < NGX_HTTP_REGISTRY_UPLOAD_ID_LEN; i++) {
        c = id->data[i];

        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') {
                return NGX_ERROR;
            }

            continue;
        }

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* a random (version 4) UUID, the form distribution hands out too */

ngx_int_t
ngx_http_registry_new_upload_id(ngx_pool_t *pool, ngx_str_t *id)
{
    u_char  *p;
    u_char   hex[32];

    if (ngx_http_registry_random_hex(hex, 16) != NGX_OK) {
        return NGX_ERROR;
    }

    hex[12] = '4';
    hex[16] = "89ab"[hex[16] & 3];

    id->data = ngx_pnalloc(pool, NGX_HTTP_REGISTRY_UPLOAD_ID_LEN);
    if (id->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(id->data, hex, 8);
    *p++ = '-';
    p = ngx_cpymem(p, hex + 8, 4);
    *p++ = '-';
    p = ngx_cpymem(p, hex + 12, 4);
    *p++ = '-';
    p = ngx_cpymem(p, hex + 16, 4);
    *p++ = '-';
    p = ngx_cpymem(p, hex + 20, 12);

    id->len = p - id->data;

    return NGX_OK;
}


ngx_int_t
ngx_http_registry_random_hex(u_char *buf, size_t bytes)
{
    u_char  raw[32];

    if (bytes > sizeof(raw) || RAND_bytes(raw, bytes) != 1) {
        return NGX_ERROR;
    }

    ngx_hex_dump(buf, raw, bytes);

    return NGX_OK;
}


/* byte-wise, as distribution sorts tags and repositories */

void
ngx_http_registry_sort_names(ngx_array_t *names)
{
    ngx_qsort(names->elts, names->nelts, sizeof(ngx_str_t),
              ngx_http_registry_cmp_names);
}


static int ngx_libc_cdecl
ngx_http_registry_cmp_names(const void *one, const void *two)
{
    ngx_int_t         rc;
    const ngx_str_t  *a = one, *b = two;

    rc = ngx_memn2cmp(a->data, b->data, a->len, b->len);

    return (rc < 0) ? -1 : (rc > 0);
}


/*
 * Binary search of a sorted list: NGX_OK with *at = its index when the
 * name is there, else NGX_DECLINED with *at = where it would go.
 */

ngx_int_t
ngx_http_registry_find_name(ngx_array_t *names, ngx_str_t *name,
    ngx_uint_t *at)
{
    ngx_int_t    rc;
    ngx_str_t   *elts;
    ngx_uint_t   low, high, mid;

    elts = names->elts;
    low = 0;
    high = names->nelts;

    while (low < high) {
        mid = low + (high - low) / 2;

        rc = ngx_memn2cmp(elts[mid].data, name->data, elts[mid].len,
                          name->len);

        if (rc == 0) {
            *at = mid;
            return NGX_OK;
        }

        if (rc < 0) {
            low = mid + 1;

        } else {
            high = mid;
        }
    }

    *at = low;

    return NGX_DECLINED;
}


/* the name lies beneath one of prefixes (ngx_str_t, "docker.io/") */

ngx_uint_t
ngx_http_registry_name_under(ngx_array_t *prefixes, ngx_str_t *name)
{
    ngx_str_t   *prefix;
    ngx_uint_t   i;

    prefix = prefixes->elts;

    for (i = 0; i < prefixes->nelts; i++) {
        if (name->len > prefix[i].len
            && ngx_strncmp(name->data, prefix[i].data, prefix[i].len) == 0)
        {
            return 1;
        }
    }

    return 0;
}
