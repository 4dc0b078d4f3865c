
/*
 * ngx_http_registry_module: listings, tags/list and _catalog.
 *
 * Both are sorted byte-wise and paginated with n and last; when more
 * entries remain, an RFC 8288 Link header names the next page.
 */


#include "ngx_http_registry.h"


typedef ngx_int_t (*ngx_http_registry_valid_pt)(ngx_str_t *entry);


typedef struct {
    ngx_str_t   *first;
    ngx_uint_t   count;
    ngx_uint_t   more;
    ngx_int_t    n;          /* -1: no n given */
} ngx_http_registry_page_t;


static ngx_int_t ngx_http_registry_paginate(ngx_http_request_t *r,
    ngx_array_t *names, ngx_http_registry_valid_pt valid,
    ngx_http_registry_page_t *page);
static ngx_int_t ngx_http_registry_send_list(ngx_http_request_t *r,
    ngx_str_t *head, ngx_http_registry_page_t *page, ngx_str_t *next);


ngx_int_t
ngx_http_registry_tags_list(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_str_t                  path, head, next;
    ngx_array_t                tags;
    ngx_http_registry_ctx_t   *ctx;
    ngx_http_registry_page_t   page;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    rc = ngx_http_registry_store_is_repository(&ctx->store,
                                               &ctx->route.name);

    if (rc == NGX_DECLINED) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_NAME_UNKNOWN,
                                       NULL);
    }

    if (rc != NGX_OK
        || ngx_array_init(&tags, r->pool, 64, sizeof(ngx_str_t)) != NGX_OK
        || ngx_http_registry_store_path(&ctx->store, &path,
                                        "repositories/%V/_manifests/tags",
                                        &ctx->route.name) == NULL)
    {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    rc = ngx_http_registry_store_list_dir(&ctx->store, &path, &tags);

    if (rc == NGX_ERROR) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    if (ngx_http_registry_paginate(r, &tags, ngx_http_registry_valid_tag,
                                   &page)
        != NGX_OK)
    {
        return ctx->rc;
    }

    head.len = sizeof("{\"name\":\"\",\"tags\":") - 1 + ctx->route.name.len;
    head.data = ngx_pnalloc(r->pool, head.len);
    if (head.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(head.data, "{\"name\":\"%V\",\"tags\":", &ctx->route.name);

    next.len = sizeof("/v2//tags/list") - 1 + ctx->route.name.len;
    next.data = ngx_pnalloc(r->pool, next.len);
    if (next.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(next.data, "/v2/%V/tags/list", &ctx->route.name);

    return ngx_http_registry_send_list(r, &head, &page, &next);
}


ngx_int_t
ngx_http_registry_catalog(ngx_http_request_t *r)
{
    ngx_array_t                repos;
    ngx_http_registry_ctx_t   *ctx;
    ngx_http_registry_page_t   page;

    static ngx_str_t  head = ngx_string("{\"repositories\":");
    static ngx_str_t  next = ngx_string("/v2/_catalog");

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (ngx_array_init(&repos, r->pool, 64, sizeof(ngx_str_t)) != NGX_OK
        || ngx_http_registry_store_list_repositories(&ctx->store, &repos)
           != NGX_OK)
    {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    if (ngx_http_registry_paginate(r, &repos, ngx_http_registry_valid_name,
                                   &page)
        != NGX_OK)
    {
        return ctx->rc;
    }

    return ngx_http_registry_send_list(r, &head, &page, &next);
}


/*
 * Keeps the entries that are valid names (a foreign directory must not
 * reach the JSON), sorts them, and picks the page that n and last ask for.
 */

static ngx_int_t
ngx_http_registry_paginate(ngx_http_request_t *r, ngx_array_t *names,
    ngx_http_registry_valid_pt valid, ngx_http_registry_page_t *page)
{
    ngx_str_t   *name, last, n;
    ngx_uint_t   i, kept, start;

    name = names->elts;
    kept = 0;

    for (i = 0; i < names->nelts; i++) {
        if (valid(&name[i]) == NGX_OK) {
            name[kept++] = name[i];
        }
    }

    names->nelts = kept;
    ngx_http_registry_sort_names(names);

    page->n = -1;

    if (ngx_http_registry_arg(r, "n", &n) == NGX_OK) {
        page->n = ngx_atoi(n.data, n.len);

        if (page->n == NGX_ERROR) {
            return ngx_http_registry_fail(r,
                                 NGX_HTTP_REGISTRY_PAGINATION_NUMBER_INVALID,
                                 "n must be a non-negative integer");
        }
    }

    start = 0;

    if (ngx_http_registry_arg(r, "last", &last) == NGX_OK) {
        while (start < kept
               && ngx_memn2cmp(name[start].data, last.data, name[start].len,
                               last.len) <= 0)
        {
            start++;
        }
    }

    page->first = name + start;
    page->count = kept - start;
    page->more = 0;

    if (page->n >= 0 && page->count > (ngx_uint_t) page->n) {
        page->count = page->n;
        page->more = 1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_send_list(ngx_http_request_t *r, ngx_str_t *head,
    ngx_http_registry_page_t *page, ngx_str_t *next)
{
    size_t       len;
    ngx_buf_t   *b;
    ngx_str_t    link, *last;
    ngx_uint_t   i;

    len = head->len + sizeof("[]}\n") - 1;

    for (i = 0; i < page->count; i++) {
        len += page->first[i].len + sizeof("\"\",") - 1;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, head->data, head->len);
    *b->last++ = '[';

    for (i = 0; i < page->count; i++) {
        b->last = ngx_sprintf(b->last, i ? ",\"%V\"" : "\"%V\"",
                              &page->first[i]);
    }

    b->last = ngx_cpymem(b->last, "]}\n", 3);

    if (page->more && page->count) {
        last = &page->first[page->count - 1];

        link.len = next->len + last->len + NGX_INT_T_LEN
                   + sizeof("<?last=&n=>; rel=\"next\"") - 1;
        link.data = ngx_pnalloc(r->pool, link.len);
        if (link.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        link.len = ngx_sprintf(link.data, "<%V?last=%V&n=%i>; rel=\"next\"",
                               next, last, page->n)
                   - link.data;

        if (ngx_http_registry_add_header(r, "Link", &link) == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_registry_send_body(r, NGX_HTTP_OK, "application/json", b);
}
