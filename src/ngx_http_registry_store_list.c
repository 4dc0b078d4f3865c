
/*
 * ngx_http_registry_module: repositories and listings (distribution's
 * catalog.go and the tag listing of tagstore.go).
 *
 * A page of tags or of the catalog costs the same at 100 entries and at
 * a million: each worker keeps sorted lists, read off the event loop, and
 * a page is a binary search plus its own entries.
 *
 * Tags: a worker's list of a repository's tags is good while the tags
 * directory keeps its mtime (adding or removing a tag changes it, from
 * any worker, host or program).  The same listing cache keeps the
 * referrers' answers (store_referrers.c).
 *
 * The catalog: each worker's index of the store's repositories comes from
 * a walk of repositories/.  The repositories this nginx creates reach
 * every worker's index at once through a short list in shared memory;
 * those another program (distribution, a second nginx) creates show up
 * when the index is walked again, registry_catalog_refresh after the
 * last walk at the earliest (and answers wait for a walk once the index
 * is twice that old).
 */


#include "ngx_http_registry_store.h"


#define NGX_HTTP_REGISTRY_TAG_LISTINGS       32
#define NGX_HTTP_REGISTRY_REFERRER_LISTINGS  64


typedef struct {
    ngx_pool_t                *pool;     /* NULL: a free slot */
    ngx_str_t                  key;
    ngx_http_registry_stamp_t  stamp;
    void                      *value;
} ngx_http_registry_entry_t;


struct ngx_http_registry_listing_s {
    ngx_uint_t                 n;
    ngx_uint_t                 next;     /* the slot to replace next */
    ngx_http_registry_entry_t  entries[1];
};


static ngx_http_registry_listing_t *ngx_http_registry_listing_create(
    ngx_uint_t n, ngx_log_t *log);
static void ngx_http_registry_op_into(ngx_http_registry_op_t *op,
    ngx_pool_t *pool, ngx_http_registry_op_t *into);
static ngx_int_t ngx_http_registry_catalog_visit(ngx_http_registry_op_t *op,
    void *data, ngx_str_t *sub, ngx_array_t *dirs);
static void ngx_http_registry_catalog_learn(ngx_http_registry_op_t *op,
    ngx_http_registry_catalog_t *catalog);
static void ngx_http_registry_catalog_insert(
    ngx_http_registry_catalog_t *catalog, u_char *name, size_t len);
static void ngx_http_registry_keep_valid(ngx_array_t *names,
    ngx_int_t (*valid)(ngx_str_t *entry));


/* a worker's own part of the store: the root's descriptor and caches */

ngx_int_t
ngx_http_registry_store_init_worker(ngx_http_registry_store_t *st,
    ngx_log_t *log)
{
    if (ngx_http_registry_files_open_root(st, log) != NGX_OK) {
        return NGX_ERROR;
    }

    st->catalog = ngx_calloc(sizeof(ngx_http_registry_catalog_t), log);
    st->tags = ngx_http_registry_listing_create(NGX_HTTP_REGISTRY_TAG_LISTINGS,
                                                log);
    st->referrers = ngx_http_registry_listing_create(
                                   NGX_HTTP_REGISTRY_REFERRER_LISTINGS, log);

    if (st->catalog == NULL || st->tags == NULL || st->referrers == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_init(&st->catalog->waiters);

    return NGX_OK;
}


/* ---- repositories ---- */

/*
 * A directory under repositories/ is a repository when it holds _layers,
 * _manifests or _uploads; a mere parent ("a" of "a/b") is not.
 */

ngx_int_t
ngx_http_registry_store_is_repository(ngx_http_registry_op_t *op,
    ngx_str_t *name)
{
    ngx_int_t   rc;
    ngx_str_t   path;
    ngx_uint_t  mark;

    for (mark = 0; mark < NGX_HTTP_REGISTRY_MARKS; mark++) {
        if (ngx_http_registry_path_repository(op, &path, name, mark)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_file_exists(op, &path);

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    return NGX_DECLINED;
}


/*
 * Called after a write that made name a repository, unless it was one
 * before: every worker's catalog learns of it (any thread may call it).
 */

void
ngx_http_registry_store_created(ngx_http_registry_op_t *op, ngx_str_t *name,
    ngx_uint_t existed)
{
    ngx_http_registry_store_t    *st;
    ngx_http_registry_created_t  *c;

    st = op->store;

    if (existed || name->len > NGX_HTTP_REGISTRY_NAME_MAX) {
        return;
    }

    ngx_shmtx_lock(&st->shpool->mutex);

    c = &st->shared->recent[st->shared->created
                            % NGX_HTTP_REGISTRY_CREATED_MAX];
    c->store = st->id;
    c->len = (u_char) name->len;
    ngx_memcpy(c->name, name->data, name->len);

    st->shared->created++;

    ngx_shmtx_unlock(&st->shpool->mutex);
}


/* ---- the catalog ---- */

/*
 * Event loop only.  NGX_OK: the index may be served; NGX_DECLINED: it may
 * be served, but should be walked again; NGX_AGAIN: it must be walked
 * before it is served (never walked, too old, or too many repositories
 * created since for the shared list to tell).
 */

ngx_int_t
ngx_http_registry_store_catalog_state(ngx_http_registry_op_t *op)
{
    ngx_msec_t                    age, refresh;
    ngx_http_registry_catalog_t  *catalog;

    catalog = op->store->catalog;

    if (catalog->pool == NULL) {
        return NGX_AGAIN;
    }

    if (op->store->shared->created - catalog->created
        > NGX_HTTP_REGISTRY_CREATED_MAX)
    {
        return NGX_AGAIN;
    }

    ngx_http_registry_catalog_learn(op, catalog);

    age = ngx_current_msec - catalog->walked;
    refresh = op->store->catalog_refresh;

    if (age >= 2 * refresh) {
        return NGX_AGAIN;
    }

    return (age >= refresh) ? NGX_DECLINED : NGX_OK;
}


/* what a walk starts from, taken in the event loop before it is posted */

ngx_int_t
ngx_http_registry_store_catalog_prepare(ngx_http_registry_op_t *op,
    ngx_http_registry_walk_t *walk)
{
    walk->pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, op->log);
    if (walk->pool == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    walk->names = ngx_array_create(walk->pool, 1024, sizeof(ngx_str_t));
    if (walk->names == NULL) {
        ngx_destroy_pool(walk->pool);
        walk->pool = NULL;
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    walk->created = op->store->shared->created;

    return NGX_OK;
}


/* the walk itself, into walk->pool: a thread pool task */

ngx_int_t
ngx_http_registry_store_catalog_walk(ngx_http_registry_op_t *op,
    ngx_http_registry_walk_t *walk)
{
    ngx_http_registry_op_t  into;

    ngx_http_registry_op_into(op, walk->pool, &into);

    if (ngx_http_registry_store_list_repositories(&into, walk->names)
        != NGX_OK)
    {
        op->fault = into.fault;
        return NGX_ERROR;
    }

    /* a foreign directory must not reach the JSON */
    ngx_http_registry_keep_valid(walk->names, ngx_http_registry_valid_name);

    return NGX_OK;
}


/*
 * The op that reads a listing someone keeps: what it reads goes into that
 * pool (the walk's, the result's), not into the op's own, which goes with
 * the request.
 */

static void
ngx_http_registry_op_into(ngx_http_registry_op_t *op, ngx_pool_t *pool,
    ngx_http_registry_op_t *into)
{
    *into = *op;
    into->pool = pool;
}


/*
 * The walk replaces the index, which is as old as of now: a walk that
 * takes longer than the refresh must not leave the index stale at once.
 * Event loop only.
 */

void
ngx_http_registry_store_catalog_install(ngx_http_registry_op_t *op,
    ngx_http_registry_walk_t *walk)
{
    ngx_http_registry_catalog_t  *catalog;

    catalog = op->store->catalog;

    if (catalog->pool) {
        ngx_destroy_pool(catalog->pool);
    }

    catalog->pool = walk->pool;
    catalog->names = *walk->names;
    catalog->walked = ngx_current_msec;
    catalog->created = walk->created;

    walk->pool = NULL;

    ngx_http_registry_catalog_learn(op, catalog);
}


/*
 * The store's repository names, unsorted: a walk of repositories/ (the
 * "_" directories are skipped: no name component can start with one).
 */

ngx_int_t
ngx_http_registry_store_list_repositories(ngx_http_registry_op_t *op,
    ngx_array_t *names)
{
    ngx_str_t  dir;

    if (ngx_http_registry_path_repositories(op, &dir) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_registry_file_walk(op, &dir,
                                       ngx_http_registry_catalog_visit, names);
}


static ngx_int_t
ngx_http_registry_catalog_visit(ngx_http_registry_op_t *op, void *data,
    ngx_str_t *sub, ngx_array_t *dirs)
{
    ngx_array_t *names = data;

    ngx_str_t   *dir, *name;
    ngx_uint_t   i, kept, repository;

    dir = dirs->elts;
    kept = 0;
    repository = 0;

    for (i = 0; i < dirs->nelts; i++) {
        if (dir[i].data[0] != '_') {
            dir[kept++] = dir[i];

        } else if (ngx_http_registry_path_is_mark(dir[i].data, dir[i].len)
                   == NGX_OK)
        {
            repository = 1;
        }
    }

    dirs->nelts = kept;

    if (!repository || sub->len == 0) {
        return NGX_OK;
    }

    name = ngx_array_push(names);
    if (name == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    name->len = sub->len;
    name->data = ngx_pnalloc(op->pool, sub->len);
    if (name->data == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    ngx_memcpy(name->data, sub->data, sub->len);

    return NGX_OK;
}


/* the repositories created through this nginx since the index knew */

static void
ngx_http_registry_catalog_learn(ngx_http_registry_op_t *op,
    ngx_http_registry_catalog_t *catalog)
{
    ngx_atomic_uint_t             n, last;
    ngx_http_registry_store_t    *st;
    ngx_http_registry_created_t  *c;

    st = op->store;
    last = st->shared->created;

    if (catalog->created == last) {
        return;
    }

    ngx_shmtx_lock(&st->shpool->mutex);

    last = st->shared->created;

    for (n = catalog->created; n != last; n++) {
        c = &st->shared->recent[n % NGX_HTTP_REGISTRY_CREATED_MAX];

        if (c->store == st->id) {
            ngx_http_registry_catalog_insert(catalog, c->name, c->len);
        }
    }

    ngx_shmtx_unlock(&st->shpool->mutex);

    catalog->created = last;
}


static void
ngx_http_registry_catalog_insert(ngx_http_registry_catalog_t *catalog,
    u_char *name, size_t len)
{
    ngx_str_t    key, *names;
    ngx_uint_t   at;

    key.data = name;
    key.len = len;

    if (ngx_http_registry_valid_name(&key) != NGX_OK
        || ngx_http_registry_find_name(&catalog->names, &key, &at) == NGX_OK
        || ngx_array_push(&catalog->names) == NULL)
    {
        return;
    }

    names = catalog->names.elts;

    ngx_memmove(&names[at + 1], &names[at],
                (catalog->names.nelts - 1 - at) * sizeof(ngx_str_t));

    names[at].len = len;
    names[at].data = ngx_pnalloc(catalog->pool, len);

    if (names[at].data == NULL) {
        ngx_memmove(&names[at], &names[at + 1],
                    (catalog->names.nelts - 1 - at) * sizeof(ngx_str_t));
        catalog->names.nelts--;
        return;
    }

    ngx_memcpy(names[at].data, name, len);
}


/* ---- pages ---- */

/* the n names (all for n < 0) after "last" (from the first if NULL) */

void
ngx_http_registry_store_page(ngx_array_t *names, ngx_str_t *last,
    ngx_int_t n, ngx_http_registry_page_t *page)
{
    ngx_uint_t  start;

    start = 0;

    if (last && ngx_http_registry_find_name(names, last, &start) == NGX_OK) {
        start++;
    }

    page->first = (ngx_str_t *) names->elts + start;
    page->count = names->nelts - start;
    page->more = 0;

    if (n >= 0 && page->count > (ngx_uint_t) n) {
        page->count = n;
        page->more = 1;
    }
}


/* drops the names the grammar does not allow, and sorts the rest */

static void
ngx_http_registry_keep_valid(ngx_array_t *names,
    ngx_int_t (*valid)(ngx_str_t *entry))
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


/* ---- tags ---- */

/*
 * Event loop only.  NGX_OK: *tags is the cached list (valid, sorted;
 * read-only); NGX_AGAIN: not cached, result is ready for
 * store_tags_read(); NGX_DECLINED: the repository has no tags directory.
 */

ngx_int_t
ngx_http_registry_store_tags_cached(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_array_t **tags, ngx_http_registry_result_t *result)
{
    ngx_int_t        rc;
    ngx_str_t        dir;
    ngx_file_info_t  fi;

    if (ngx_http_registry_path_tags(op, &dir, name) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_stat(op, &dir, &fi);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_registry_listing_stamp(op, &dir, 1, &result->stamp)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    *tags = ngx_http_registry_listing_find(op, op->store->tags, &dir,
                                           &result->stamp);
    if (*tags) {
        return NGX_OK;
    }

    return ngx_http_registry_listing_result(op, &dir, result);
}


/* the tags, valid and sorted, into result->pool: a thread pool task */

ngx_int_t
ngx_http_registry_store_tags_read(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_result_t *result)
{
    ngx_int_t                rc;
    ngx_array_t             *tags;
    ngx_http_registry_op_t   into;

    tags = ngx_array_create(result->pool, 64, sizeof(ngx_str_t));
    if (tags == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    ngx_http_registry_op_into(op, result->pool, &into);

    rc = ngx_http_registry_file_list(&into, &result->key,
                                     NGX_HTTP_REGISTRY_LIST_DIRS, tags);
    if (rc == NGX_ERROR) {
        op->fault = into.fault;
        return NGX_ERROR;
    }

    ngx_http_registry_keep_valid(tags, ngx_http_registry_valid_tag);

    result->value = tags;

    return NGX_OK;
}


/* the list read, kept unless racy; event loop only */

ngx_array_t *
ngx_http_registry_store_tags_remember(ngx_http_registry_op_t *op,
    ngx_http_registry_result_t *result)
{
    ngx_http_registry_listing_keep(op, op->store->tags, result);

    return result->value;
}


/* ---- the listing cache ---- */

static ngx_http_registry_listing_t *
ngx_http_registry_listing_create(ngx_uint_t n, ngx_log_t *log)
{
    ngx_http_registry_listing_t  *listing;

    listing = ngx_calloc(sizeof(ngx_http_registry_listing_t)
                         + (n - 1) * sizeof(ngx_http_registry_entry_t), log);
    if (listing == NULL) {
        return NULL;
    }

    listing->n = n;

    return listing;
}


/*
 * The mtimes of up to NGX_HTTP_REGISTRY_STAMPS directories (zero for one
 * that does not exist), and whether any changed too recently to be
 * trusted again.
 */

ngx_int_t
ngx_http_registry_listing_stamp(ngx_http_registry_op_t *op, ngx_str_t *dirs,
    ngx_uint_t n, ngx_http_registry_stamp_t *stamp)
{
    ngx_int_t        rc;
    ngx_uint_t       i;
    ngx_file_info_t  fi;

    ngx_memzero(stamp, sizeof(ngx_http_registry_stamp_t));

    for (i = 0; i < n; i++) {
        rc = ngx_http_registry_file_stat(op, &dirs[i], &fi);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            continue;
        }

        stamp->mtime[i] = fi.st_mtim;

        if (ngx_time() - fi.st_mtim.tv_sec < NGX_HTTP_REGISTRY_RACY) {
            stamp->racy = 1;
        }
    }

    return NGX_OK;
}


/* the cached value read against the same stamp, or NULL */

void *
ngx_http_registry_listing_find(ngx_http_registry_op_t *op,
    ngx_http_registry_listing_t *listing, ngx_str_t *key,
    ngx_http_registry_stamp_t *stamp)
{
    ngx_uint_t                  i;
    ngx_http_registry_entry_t  *e;

    if (listing == NULL || stamp->racy) {
        return NULL;
    }

    for (i = 0; i < listing->n; i++) {
        e = &listing->entries[i];

        if (e->pool
            && e->key.len == key->len
            && ngx_memcmp(e->key.data, key->data, key->len) == 0
            && ngx_memcmp(e->stamp.mtime, stamp->mtime, sizeof(stamp->mtime))
               == 0)
        {
            return e->value;
        }
    }

    return NULL;
}


/* a result to read a listing into, keyed (its pool holds the key) */

ngx_int_t
ngx_http_registry_listing_result(ngx_http_registry_op_t *op, ngx_str_t *key,
    ngx_http_registry_result_t *result)
{
    result->pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, op->log);
    if (result->pool == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    result->key.len = key->len;
    result->key.data = ngx_pnalloc(result->pool, key->len + 1);
    if (result->key.data == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    ngx_memcpy(result->key.data, key->data, key->len);
    result->key.data[key->len] = '\0';

    result->value = NULL;

    return NGX_AGAIN;
}


/* the cache adopts the result's pool, replacing the oldest entry */

void
ngx_http_registry_listing_keep(ngx_http_registry_op_t *op,
    ngx_http_registry_listing_t *listing, ngx_http_registry_result_t *result)
{
    ngx_uint_t                  i;
    ngx_http_registry_entry_t  *e;

    if (listing == NULL || result->stamp.racy || result->value == NULL) {
        return;
    }

    e = NULL;

    for (i = 0; i < listing->n; i++) {
        if (listing->entries[i].pool
            && listing->entries[i].key.len == result->key.len
            && ngx_memcmp(listing->entries[i].key.data, result->key.data,
                          result->key.len) == 0)
        {
            e = &listing->entries[i];
            break;
        }
    }

    if (e == NULL) {
        e = &listing->entries[listing->next];
        listing->next = (listing->next + 1) % listing->n;
    }

    if (e->pool) {
        ngx_destroy_pool(e->pool);
    }

    e->pool = result->pool;
    e->key = result->key;
    e->stamp = result->stamp;
    e->value = result->value;

    result->pool = NULL;
}


/* a pool cleanup: a result no cache adopted */

void
ngx_http_registry_result_drop(void *data)
{
    ngx_http_registry_result_t *result = data;

    if (result->pool) {
        ngx_destroy_pool(result->pool);
        result->pool = NULL;
    }
}
