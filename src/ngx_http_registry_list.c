
/*
 * ngx_http_registry_module: listings, tags/list, _catalog and referrers.
 *
 * Tags and the catalog are sorted byte-wise and paginated with n and last;
 * when more entries remain, an RFC 8288 Link header names the next page.
 * Referrers come from an index kept beside the repository (see store.c),
 * so a listing is one directory read, not a scan of the manifests.
 */


#include "ngx_http_registry.h"

#include <jansson.h>


typedef ngx_int_t (*ngx_http_registry_valid_pt)(ngx_str_t *entry);


/*
 * A worker's cache of sorted tag lists, keyed by the tags directory and
 * its mtime, which adding or removing a tag changes.  A directory changed
 * less than NGX_HTTP_REGISTRY_RACY seconds ago is not cached: file system
 * timestamps are coarse, and a second change within the same tick would
 * not show (what git calls a racy entry).
 */

#define NGX_HTTP_REGISTRY_TAG_CACHE  32
#define NGX_HTTP_REGISTRY_RACY       2


typedef struct {
    ngx_pool_t       *pool;      /* NULL: a free slot */
    ngx_str_t         dir;
    struct timespec   mtime;
    ngx_array_t       tags;      /* valid and sorted */
} ngx_http_registry_tag_cache_t;


static ngx_http_registry_tag_cache_t
    ngx_http_registry_tag_cache[NGX_HTTP_REGISTRY_TAG_CACHE];
static ngx_uint_t  ngx_http_registry_tag_cache_next;


typedef struct {
    ngx_str_t   *first;
    ngx_uint_t   count;
    ngx_uint_t   more;
    ngx_int_t    n;          /* -1: no n given */
} ngx_http_registry_page_t;


static void ngx_http_registry_keep_valid(ngx_array_t *names,
    ngx_http_registry_valid_pt valid);
static ngx_int_t ngx_http_registry_tag_names(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_array_t *tags);
static ngx_int_t ngx_http_registry_cached_tags(ngx_str_t *dir,
    struct timespec *mtime, ngx_array_t *tags);
static void ngx_http_registry_cache_tags(ngx_str_t *dir,
    struct timespec *mtime, ngx_array_t *tags, ngx_log_t *log);
static ngx_int_t ngx_http_registry_paginate(ngx_http_request_t *r,
    ngx_array_t *names, ngx_http_registry_page_t *page);
static ngx_int_t ngx_http_registry_send_list(ngx_http_request_t *r,
    ngx_str_t *head, ngx_http_registry_page_t *page, ngx_str_t *next);
static ngx_int_t ngx_http_registry_referrers_rebuild(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, struct timespec *asof);
static ngx_int_t ngx_http_registry_referrers_collect(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_str_t *filter, json_t *list);
static ngx_int_t ngx_http_registry_referrers_send(ngx_http_request_t *r,
    json_t *list, ngx_uint_t filtered);


ngx_int_t
ngx_http_registry_tags_list(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_str_t                  head, next;
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
        || ngx_http_registry_tag_names(r, ctx, &tags) != NGX_OK)
    {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    if (ngx_http_registry_paginate(r, &tags, &page) != NGX_OK) {
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

    ngx_http_registry_keep_valid(&repos, ngx_http_registry_valid_name);

    if (ngx_http_registry_paginate(r, &repos, &page) != NGX_OK) {
        return ctx->rc;
    }

    return ngx_http_registry_send_list(r, &head, &page, &next);
}


/*
 * Keeps the entries that are valid names (a foreign directory must not
 * reach the JSON), sorts them, and picks the page that n and last ask for.
 */

/*
 * The repository's tags, valid and sorted: from the worker's cache while
 * the tags directory is unchanged, else read (and cached when settled).
 */

static ngx_int_t
ngx_http_registry_tag_names(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_array_t *tags)
{
    ngx_str_t         dir;
    ngx_file_info_t   fi;

    if (ngx_array_init(tags, r->pool, 64, sizeof(ngx_str_t)) != NGX_OK
        || ngx_http_registry_store_path(&ctx->store, &dir,
                                        "repositories/%V/_manifests/tags",
                                        &ctx->route.name) == NULL)
    {
        return NGX_ERROR;
    }

    if (ngx_file_info(dir.data, &fi) == NGX_FILE_ERROR) {
        return (ngx_errno == NGX_ENOENT) ? NGX_OK : NGX_ERROR;
    }

    if (ngx_http_registry_cached_tags(&dir, &fi.st_mtim, tags) == NGX_OK) {
        return NGX_OK;
    }

    if (ngx_http_registry_store_list_dir(&ctx->store, &dir, tags)
        == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    ngx_http_registry_keep_valid(tags, ngx_http_registry_valid_tag);

    if (ngx_time() - fi.st_mtim.tv_sec >= NGX_HTTP_REGISTRY_RACY) {
        ngx_http_registry_cache_tags(&dir, &fi.st_mtim, tags,
                                     r->connection->log);
    }

    return NGX_OK;
}


/* NGX_OK: *tags is the cached list, read-only */

static ngx_int_t
ngx_http_registry_cached_tags(ngx_str_t *dir, struct timespec *mtime,
    ngx_array_t *tags)
{
    ngx_uint_t                      i;
    ngx_http_registry_tag_cache_t  *c;

    for (i = 0; i < NGX_HTTP_REGISTRY_TAG_CACHE; i++) {
        c = &ngx_http_registry_tag_cache[i];

        if (c->pool
            && c->mtime.tv_sec == mtime->tv_sec
            && c->mtime.tv_nsec == mtime->tv_nsec
            && c->dir.len == dir->len
            && ngx_strncmp(c->dir.data, dir->data, dir->len) == 0)
        {
            *tags = c->tags;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* a copy of the list in a pool of its own, replacing the oldest entry */

static void
ngx_http_registry_cache_tags(ngx_str_t *dir, struct timespec *mtime,
    ngx_array_t *tags, ngx_log_t *log)
{
    u_char                         *copy;
    ngx_str_t                      *src, *dst;
    ngx_uint_t                      i;
    ngx_pool_t                     *pool;
    ngx_http_registry_tag_cache_t  *c;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, log);
    if (pool == NULL) {
        return;
    }

    dst = ngx_palloc(pool, ngx_max(tags->nelts, 1) * sizeof(ngx_str_t));
    copy = ngx_pstrdup(pool, dir);

    if (dst == NULL || copy == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    src = tags->elts;

    for (i = 0; i < tags->nelts; i++) {
        dst[i].len = src[i].len;
        dst[i].data = ngx_pstrdup(pool, &src[i]);

        if (dst[i].data == NULL) {
            ngx_destroy_pool(pool);
            return;
        }
    }

    c = &ngx_http_registry_tag_cache[ngx_http_registry_tag_cache_next];

    if (c->pool) {
        ngx_destroy_pool(c->pool);
    }

    c->pool = pool;
    c->dir.data = copy;
    c->dir.len = dir->len;
    c->mtime = *mtime;
    c->tags.elts = dst;
    c->tags.nelts = tags->nelts;
    c->tags.size = sizeof(ngx_str_t);
    c->tags.nalloc = ngx_max(tags->nelts, 1);
    c->tags.pool = pool;

    ngx_http_registry_tag_cache_next = (ngx_http_registry_tag_cache_next + 1)
                                       % NGX_HTTP_REGISTRY_TAG_CACHE;
}


/* drops the names the spec's grammar does not allow, and sorts the rest */

static void
ngx_http_registry_keep_valid(ngx_array_t *names,
    ngx_http_registry_valid_pt valid)
{
    ngx_str_t   *name;
    ngx_uint_t   i, kept;

    name = names->elts;
    kept = 0;

    for (i = 0; i < names->nelts; i++) {
        if (valid(&name[i]) == NGX_OK) {
            name[kept++] = name[i];
        }
    }

    names->nelts = kept;
    ngx_http_registry_sort_names(names);
}


/* n and last over a valid, sorted list, which is left as it is */

static ngx_int_t
ngx_http_registry_paginate(ngx_http_request_t *r, ngx_array_t *names,
    ngx_http_registry_page_t *page)
{
    ngx_str_t   *name, last, n;
    ngx_uint_t   start, kept;

    name = names->elts;
    kept = names->nelts;

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


/* ---- referrers ---- */

/*
 * GET /v2/<name>/referrers/<digest>[?artifactType=]: an image index of
 * the repository's manifests whose subject is <digest>; never a 404, an
 * unknown subject or repository has no referrers.
 */

ngx_int_t
ngx_http_registry_referrers_list(ngx_http_request_t *r)
{
    json_t                   *list;
    ngx_int_t                 rc;
    ngx_str_t                 filter;
    struct timespec           asof;
    ngx_pool_cleanup_t       *cln;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    rc = ngx_http_registry_arg(r, "artifactType", &filter);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_str_null(&filter);
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    list = json_array();

    if (cln == NULL || list == NULL) {
        json_decref(list);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_registry_json_cleanup;
    cln->data = list;

    rc = ngx_http_registry_store_referrers_current(&ctx->store,
                                                   &ctx->route.name, &asof);

    if (rc == NGX_DECLINED
        && ngx_http_registry_store_is_repository(&ctx->store,
                                                 &ctx->route.name) == NGX_OK)
    {
        rc = ngx_http_registry_referrers_rebuild(r, ctx, &asof);
    }

    if (rc == NGX_ERROR
        || ngx_http_registry_referrers_collect(r, ctx, &filter, list)
           != NGX_OK)
    {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_INTERNAL, NULL);
    }

    return ngx_http_registry_referrers_send(r, list, filter.data != NULL);
}


/*
 * Reads every manifest of the repository and adds the index entries that
 * are missing, then stamps the index with the revisions' state read
 * before (a revision added meanwhile makes it stale again).  Runs once
 * per repository, and again only after another program changed it.
 */

static ngx_int_t
ngx_http_registry_referrers_rebuild(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, struct timespec *asof)
{
    ngx_str_t                      path, body, descriptor;
    ngx_uint_t                     i;
    ngx_array_t                    revisions;
    ngx_http_registry_digest_t    *digest, subject;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "registry: rebuilding the referrers index of \"%V\"",
                  &ctx->route.name);

    if (ngx_array_init(&revisions, r->pool, 64,
                       sizeof(ngx_http_registry_digest_t))
        != NGX_OK
        || ngx_http_registry_store_list_revisions(&ctx->store,
                                                  &ctx->route.name,
                                                  &revisions)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    digest = revisions.elts;

    for (i = 0; i < revisions.nelts; i++) {
        if (ngx_http_registry_store_blob_path(&ctx->store, &path, &digest[i])
            == NULL)
        {
            return NGX_ERROR;
        }

        if (ngx_http_registry_store_read_small(&ctx->store, &path,
                                               rlcf->manifest_max_size, &body)
            != NGX_OK
            || ngx_http_registry_referrer_descriptor(r->pool, &body,
                                                     &digest[i], &subject,
                                                     &descriptor)
               != NGX_OK)
        {
            continue;
        }

        if (ngx_http_registry_store_referrer_entry(&ctx->store, &path,
                                                   &ctx->route.name, &subject,
                                                   &digest[i])
            == NULL)
        {
            return NGX_ERROR;
        }

        if (ngx_http_registry_store_exists(&path) == NGX_DECLINED
            && ngx_http_registry_store_write_file(&ctx->store, &path,
                                                  descriptor.data,
                                                  descriptor.len)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_registry_store_referrers_stamp(&ctx->store,
                                                   &ctx->route.name, asof);
}


/* the subject's entries whose revision still exists, by digest order */

static ngx_int_t
ngx_http_registry_referrers_collect(ngx_http_request_t *r,
    ngx_http_registry_ctx_t *ctx, ngx_str_t *filter, json_t *list)
{
    u_char                        *dash;
    json_t                        *desc, *type;
    ngx_str_t                      dir, path, text, content, *entry;
    ngx_uint_t                     i;
    ngx_array_t                    entries;
    ngx_http_registry_digest_t     referrer;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    if (ngx_array_init(&entries, r->pool, 16, sizeof(ngx_str_t)) != NGX_OK
        || ngx_http_registry_store_referrers_dir(&ctx->store, &dir,
                                                 &ctx->route.name,
                                                 &ctx->route.digest)
           == NULL
        || ngx_http_registry_store_list_dir(&ctx->store, &dir, &entries)
           == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    ngx_http_registry_sort_names(&entries);

    entry = entries.elts;

    for (i = 0; i < entries.nelts; i++) {

        /* "<alg>-<hex>" names the referrer "<alg>:<hex>" */

        dash = ngx_strlchr(entry[i].data, entry[i].data + entry[i].len, '-');
        if (dash == NULL) {
            continue;
        }

        text.len = entry[i].len;
        text.data = ngx_pnalloc(r->pool, text.len);
        if (text.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(text.data, entry[i].data, text.len);
        text.data[dash - entry[i].data] = ':';

        if (ngx_http_registry_parse_digest(&text, &referrer) != NGX_OK
            || ngx_http_registry_store_revision_link(&ctx->store, &path,
                                                     &ctx->route.name,
                                                     &referrer)
               == NULL
            || ngx_http_registry_store_exists(&path) != NGX_OK
            || ngx_http_registry_store_referrer_entry(&ctx->store, &path,
                                                      &ctx->route.name,
                                                      &ctx->route.digest,
                                                      &referrer)
               == NULL
            || ngx_http_registry_store_read_small(&ctx->store, &path,
                                                  rlcf->manifest_max_size,
                                                  &content)
               != NGX_OK)
        {
            continue;
        }

        desc = json_loadb((char *) content.data, content.len, 0, NULL);
        if (desc == NULL) {
            continue;
        }

        type = json_object_get(desc, "artifactType");

        if (filter->data
            && (!json_is_string(type)
                || json_string_length(type) != filter->len
                || ngx_strncmp(json_string_value(type), filter->data,
                               filter->len) != 0))
        {
            json_decref(desc);
            continue;
        }

        if (json_array_append_new(list, desc) != 0) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_referrers_send(ngx_http_request_t *r, json_t *list,
    ngx_uint_t filtered)
{
    char        *dump;
    json_t      *index;
    ngx_buf_t   *b;
    ngx_str_t    applied;

    index = json_pack("{s:i, s:s, s:O}", "schemaVersion", 2,
                      "mediaType", "application/vnd.oci.image.index.v1+json",
                      "manifests", list);
    if (index == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    dump = json_dumps(index, JSON_COMPACT);
    json_decref(index);

    if (dump == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b = ngx_create_temp_buf(r->pool, ngx_strlen(dump));
    if (b == NULL) {
        free(dump);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, dump, b->end - b->start);
    free(dump);

    if (filtered) {
        ngx_str_set(&applied, "artifactType");

        if (ngx_http_registry_add_header(r, "OCI-Filters-Applied", &applied)
            == NULL)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_registry_send_body(r, NGX_HTTP_OK,
                                       "application/vnd.oci.image.index.v1+json",
                                       b);
}


/* the index entry of a manifest just pushed */

ngx_int_t
ngx_http_registry_referrers_add(ngx_http_registry_store_t *st,
    ngx_str_t *name, ngx_http_registry_digest_t *subject,
    ngx_http_registry_digest_t *referrer, ngx_str_t *descriptor)
{
    ngx_str_t  path;

    if (ngx_http_registry_store_referrer_entry(st, &path, name, subject,
                                               referrer)
        == NULL)
    {
        return NGX_ERROR;
    }

    return ngx_http_registry_store_write_file(st, &path, descriptor->data,
                                              descriptor->len);
}


/* whether the repository's index is complete, before a revision changes */

ngx_uint_t
ngx_http_registry_referrers_tracked(ngx_http_registry_store_t *st,
    ngx_str_t *name)
{
    struct timespec  asof;

    return ngx_http_registry_store_referrers_current(st, name, &asof)
           == NGX_OK;
}


/* after our own revision change, a complete index is still complete */

void
ngx_http_registry_referrers_restamp(ngx_http_registry_store_t *st,
    ngx_str_t *name)
{
    struct timespec  asof;

    if (ngx_http_registry_store_referrers_current(st, name, &asof)
        == NGX_DECLINED)
    {
        (void) ngx_http_registry_store_referrers_stamp(st, name, &asof);
    }
}
