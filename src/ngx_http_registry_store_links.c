
/*
 * ngx_http_registry_module: the link cache.
 *
 * Every pull checks a repository link: does this repository hold that
 * digest (a stat() of its layer or revision link), which digest is this
 * tag (an open, read and close of its current link).  That walk down a
 * dozen path components is the one cost a static file send does not have,
 * so each worker remembers the links it has found.  Only positive answers
 * are kept, and an answer is used only while both hold:
 *
 *   - no DELETE and no tag write went through this nginx since it was read.
 *     Those bump a generation counter in shared memory after changing the
 *     store, and the counter is read before the link is, so any change that
 *     races the read leaves an answer that is already stale.  A change made
 *     through any worker is therefore seen by the next request to every
 *     worker, exactly as without the cache;
 *   - it is younger than "valid": the bound on how late a change made by
 *     another program on the same store (distribution, a second nginx) can
 *     be seen.
 *
 * The table is direct-mapped, one answer per slot, allocated by each worker
 * on first use; a collision only costs the system call the cache saves.
 * Event loop only: a thread's op has no link cache (op->links is NULL),
 * and only bumps the counter, which is atomic.
 */


#include "ngx_http_registry_store.h"


struct ngx_http_registry_link_s {
    ngx_http_registry_store_t *store;      /* links of several stores mix */
    u_char                    *path;       /* NULL: an empty slot */
    size_t                     len;
    size_t                     size;       /* of the path's allocation */
    ngx_atomic_uint_t          generation;
    ngx_msec_t                 read_at;
    size_t                     digest_len; /* 0: only known to exist */
    u_char                     digest[NGX_HTTP_REGISTRY_DIGEST_MAX_LEN];
};


static ngx_http_registry_link_t *ngx_http_registry_links_find(
    ngx_http_registry_op_t *op, ngx_str_t *path);
static void ngx_http_registry_links_remember(ngx_http_registry_op_t *op,
    ngx_str_t *path, ngx_atomic_uint_t generation, ngx_str_t *digest);
static ngx_http_registry_link_t *ngx_http_registry_links_slot(
    ngx_http_registry_op_t *op, ngx_str_t *path);


ngx_http_registry_link_cache_t *
ngx_http_registry_links_create(ngx_pool_t *pool, ngx_uint_t max,
    ngx_msec_t valid)
{
    ngx_http_registry_link_cache_t  *cache;

    cache = ngx_pcalloc(pool, sizeof(ngx_http_registry_link_cache_t));
    if (cache == NULL) {
        return NULL;
    }

    /* cache->links = NULL: each worker allocates its own table */

    cache->max = max;
    cache->valid = valid;

    return cache;
}


/* as ngx_http_registry_file_exists(), remembering a link that exists */

ngx_int_t
ngx_http_registry_links_exist(ngx_http_registry_op_t *op, ngx_str_t *path)
{
    ngx_int_t          rc;
    ngx_atomic_uint_t  generation;

    if (ngx_http_registry_links_find(op, path) != NULL) {
        return NGX_OK;
    }

    generation = op->store->shared->links;

    rc = ngx_http_registry_file_exists(op, path);

    if (rc == NGX_OK) {
        ngx_http_registry_links_remember(op, path, generation, NULL);
    }

    return rc;
}


/* as ngx_http_registry_file_read_link(), remembering what it read */

ngx_int_t
ngx_http_registry_links_read(ngx_http_registry_op_t *op, ngx_str_t *path,
    ngx_http_registry_digest_t *digest)
{
    ngx_int_t                  rc;
    ngx_atomic_uint_t          generation;
    ngx_http_registry_link_t  *link;

    link = ngx_http_registry_links_find(op, path);

    if (link != NULL && link->digest_len) {

        /*
         * a copy: the slot may be taken by another link of this request;
         * parsed when it was read, it needs no checking again
         */

        if (ngx_http_registry_digest_known(op->pool, link->digest,
                                           link->digest_len, digest)
            != NGX_OK)
        {
            return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
        }

        return NGX_OK;
    }

    generation = op->store->shared->links;

    rc = ngx_http_registry_file_read_link(op, path, digest);

    if (rc == NGX_OK) {
        ngx_http_registry_links_remember(op, path, generation, &digest->text);
    }

    return rc;
}


/*
 * Called after a link was removed or rewritten: every worker's answers
 * read before now are stale.  Any thread may call it.
 */

void
ngx_http_registry_links_changed(ngx_http_registry_op_t *op)
{
    (void) ngx_atomic_fetch_add(&op->store->shared->links, 1);
}


static ngx_http_registry_link_t *
ngx_http_registry_links_find(ngx_http_registry_op_t *op, ngx_str_t *path)
{
    ngx_http_registry_link_t  *link;

    link = ngx_http_registry_links_slot(op, path);

    if (link == NULL
        || link->path == NULL
        || link->store != op->store
        || link->len != path->len
        || link->generation != op->store->shared->links
        || ngx_current_msec - link->read_at >= op->links->valid
        || ngx_memcmp(link->path, path->data, path->len) != 0)
    {
        return NULL;
    }

    return link;
}


static void
ngx_http_registry_links_remember(ngx_http_registry_op_t *op,
    ngx_str_t *path, ngx_atomic_uint_t generation, ngx_str_t *digest)
{
    ngx_http_registry_link_t  *link;

    link = ngx_http_registry_links_slot(op, path);

    if (link == NULL) {
        return;
    }

    if (link->size < path->len) {
        ngx_free(link->path);

        link->path = ngx_alloc(path->len, op->log);
        if (link->path == NULL) {
            link->size = 0;
            return;
        }

        link->size = path->len;
    }

    link->store = op->store;
    link->len = ngx_cpymem(link->path, path->data, path->len) - link->path;
    link->generation = generation;
    link->read_at = ngx_current_msec;
    link->digest_len = 0;

    if (digest && digest->len <= sizeof(link->digest)) {
        link->digest_len = ngx_cpymem(link->digest, digest->data, digest->len)
                           - link->digest;
    }
}


/* NULL: the cache is off, or this worker could not allocate its table */

static ngx_http_registry_link_t *
ngx_http_registry_links_slot(ngx_http_registry_op_t *op, ngx_str_t *path)
{
    ngx_http_registry_link_cache_t  *cache;

    cache = op->links;

    if (cache == NULL) {
        return NULL;
    }

    if (cache->links == NULL) {
        cache->links = ngx_calloc(cache->max * sizeof(ngx_http_registry_link_t),
                                  op->log);
        if (cache->links == NULL) {
            return NULL;
        }
    }

    /* murmur: four bytes a step, on every pull's one or two links */
    return &cache->links[ngx_murmur_hash2(path->data, path->len) % cache->max];
}
