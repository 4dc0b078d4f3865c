
/*
 * ngx_http_registry_module: who may do what, in a build without
 * registry_access rules.
 *
 * The token branch's stand-in for the access module of main (which adds
 * registry_user and the registry_access rules behind these same
 * prototypes of ngx_http_registry_auth.h): with no rules anywhere, every
 * location allows everything, as a location without rules does there.
 * Main's file replaces this one when the branches are merged.
 */


#include "ngx_http_registry.h"
#include "ngx_http_registry_auth.h"


ngx_uint_t
ngx_http_registry_access_allowed(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *repository, ngx_uint_t wanted)
{
    if (repository == NULL || repository->len == 0) {
        return wanted & NGX_HTTP_REGISTRY_CATALOG;
    }

    return wanted;
}


ngx_uint_t
ngx_http_registry_access_limited(ngx_http_request_t *r)
{
    return 0;
}


/* "pull,push,delete,catalog" for the actions set */

u_char *
ngx_http_registry_access_format(u_char *p, ngx_uint_t actions)
{
    u_char      *start;
    ngx_uint_t   i;

    static ngx_str_t  names[] = {          /* bit i: names[i] */
        ngx_string("pull"), ngx_string("push"), ngx_string("delete"),
        ngx_string("catalog")
    };

    start = p;

    for (i = 0; i < sizeof(names) / sizeof(ngx_str_t); i++) {
        if (!(actions & ((ngx_uint_t) 1 << i))) {
            continue;
        }

        if (p != start) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, names[i].data, names[i].len);
    }

    return p;
}
