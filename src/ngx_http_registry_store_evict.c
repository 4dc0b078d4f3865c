
/*
 * ngx_http_registry_module: eviction of the pull-through cache under
 * registry_cache_max_size, in a thread.
 *
 * The measure first, cheap: the bytes of the blobs the mirrored
 * repositories link (their layer links and revisions), each once, less
 * those a local repository links too, from the listings and a stat of
 * each blob.  Only when they are over the bound is the store marked, by
 * the garbage collector's mark (store_gc_pulls(), store_gc.c): what the
 * local repositories hold, through their tags, revisions, manifests
 * and layer links, is never evicted; every other blob the mirrored
 * repositories link comes back with its last pull (the mtime of its
 * links, where the cache flushes its pulls, mirror.c) and, a manifest,
 * the blobs it references.
 *
 * Then the least recently pulled first, while the bytes are over the
 * bound: a cached manifest that no kept manifest references (its
 * revisions and the tags naming them go, as a DELETE does, then its
 * bytes), with the blobs that only it held; or a blob that no cached
 * manifest references (a client pulled it by digest alone), by its own
 * last pull.  A manifest an index references waits for that index, and
 * is queued by its own last pull when the index goes.  Bytes go by the
 * collector's protocol (store_blob_evict()): a blob a push, mount or
 * manifest put referenced again since this eviction began (before the
 * mark read who references what) is kept.  A blob a pull is sending
 * stays readable: the client's descriptor keeps the unlinked file.
 */


#include "ngx_http_registry_store_mirror.h"


typedef struct {
    ngx_rbtree_node_t             node;      /* first: the queue's */
    ngx_http_registry_cached_t   *cached;
    off_t                         size;
    ngx_uint_t                    holders;   /* kept manifests naming it */
} ngx_http_registry_evict_item_t;


typedef struct {
    ngx_http_registry_op_t       *op;
    ngx_array_t                  *prefixes;
    ngx_array_t                   local;     /* ngx_str_t digests, sorted */
    ngx_array_t                   cached;    /* the mark's answer */
    ngx_http_registry_evict_item_t  *items;  /* one a cached blob */
    ngx_rbtree_t                  queue;     /* what nothing kept holds */
    ngx_rbtree_node_t             sentinel;
    off_t                         total;
    off_t                        *freed;
    size_t                        manifest_max;
    time_t                        started;   /* before the mark */
} ngx_http_registry_evict_t;


static ngx_int_t ngx_http_registry_evict_measure(ngx_http_registry_evict_t *e);
static ngx_int_t ngx_http_registry_evict_listed(ngx_http_registry_evict_t *e,
    ngx_str_t *name, ngx_array_t *digests);
static ngx_int_t ngx_http_registry_evict_hexes(ngx_http_registry_op_t *op,
    ngx_str_t *dir, ngx_uint_t alg, ngx_array_t *digests);
static ngx_int_t ngx_http_registry_evict_size(ngx_http_registry_evict_t *e,
    ngx_http_registry_digest_t *digest, off_t *size);
static ngx_int_t ngx_http_registry_evict_queue(ngx_http_registry_evict_t *e);
static ngx_int_t ngx_http_registry_evict_item(ngx_http_registry_evict_t *e,
    ngx_http_registry_evict_item_t *item);
static ngx_int_t ngx_http_registry_evict_links(ngx_http_registry_evict_t *e,
    ngx_http_registry_cached_t *c);
static ngx_int_t ngx_http_registry_evict_release(ngx_http_registry_evict_t *e,
    ngx_http_registry_cached_t *c);
static void ngx_http_registry_evict_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static int ngx_libc_cdecl ngx_http_registry_evict_by_digest(const void *a,
    const void *b);


/*
 * Evicts until the mirrored repositories' bytes are at most max; prefixes
 * (ngx_str_t, "docker.io/") name them.  *freed: the bytes removed.
 */

ngx_int_t
ngx_http_registry_store_evict(ngx_http_registry_op_t *op,
    ngx_array_t *prefixes, off_t max, size_t manifest_max, off_t *freed)
{
    ngx_int_t                   rc;
    ngx_rbtree_node_t          *node;
    ngx_http_registry_evict_t   e;

    *freed = 0;

    ngx_memzero(&e, sizeof(ngx_http_registry_evict_t));
    e.op = op;
    e.prefixes = prefixes;
    e.freed = freed;
    e.manifest_max = manifest_max;
    e.started = time(NULL);

    if (ngx_http_registry_evict_measure(&e) != NGX_OK) {
        return NGX_ERROR;
    }

    if (e.total <= max) {
        return NGX_OK;
    }

    rc = ngx_http_registry_store_gc_pulls(op, prefixes, &e.cached);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_WARN, op->log, 0,
                      "registry cache: a local manifest or tag is "
                      "unreadable (see fsck), nothing evicted");
        return NGX_OK;
    }

    if (rc != NGX_OK || ngx_http_registry_evict_queue(&e) != NGX_OK) {
        return NGX_ERROR;
    }

    while (e.total > max && e.queue.root != e.queue.sentinel) {
        node = ngx_rbtree_min(e.queue.root, e.queue.sentinel);
        ngx_rbtree_delete(&e.queue, node);

        if (ngx_http_registry_evict_item(&e,
                                      (ngx_http_registry_evict_item_t *) node)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * e->total: the bytes of the blobs the mirrored repositories link, each
 * once, that no local repository links.
 */

static ngx_int_t
ngx_http_registry_evict_measure(ngx_http_registry_evict_t *e)
{
    off_t                        size;
    ngx_str_t                   *name, *s;
    ngx_uint_t                   i, at;
    ngx_array_t                  names, local, mirrored;
    ngx_http_registry_digest_t  *d;

    if (ngx_array_init(&names, e->op->pool, 64, sizeof(ngx_str_t)) != NGX_OK
        || ngx_array_init(&local, e->op->pool, 256,
                          sizeof(ngx_http_registry_digest_t))
           != NGX_OK
        || ngx_array_init(&mirrored, e->op->pool, 256,
                          sizeof(ngx_http_registry_digest_t))
           != NGX_OK
        || ngx_array_init(&e->local, e->op->pool, 256, sizeof(ngx_str_t))
           != NGX_OK)
    {
        return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
    }

    if (ngx_http_registry_store_list_repositories(e->op, &names) == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    name = names.elts;

    for (i = 0; i < names.nelts; i++) {
        if (ngx_http_registry_evict_listed(e, &name[i],
                          ngx_http_registry_name_under(e->prefixes, &name[i])
                          ? &mirrored : &local)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    d = local.elts;

    for (i = 0; i < local.nelts; i++) {
        s = ngx_array_push(&e->local);
        if (s == NULL) {
            return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
        }

        *s = d[i].text;
    }

    ngx_http_registry_sort_names(&e->local);

    ngx_qsort(mirrored.elts, mirrored.nelts,
              sizeof(ngx_http_registry_digest_t),
              ngx_http_registry_evict_by_digest);

    d = mirrored.elts;

    for (i = 0; i < mirrored.nelts; i++) {
        if ((i && ngx_http_registry_digest_equal(&d[i - 1], &d[i]))
            || ngx_http_registry_find_name(&e->local, &d[i].text, &at)
               == NGX_OK)
        {
            continue;
        }

        if (ngx_http_registry_evict_size(e, &d[i], &size) != NGX_OK) {
            return NGX_ERROR;
        }

        e->total += size;
    }

    return NGX_OK;
}


/* the digests of the repository's revisions and layer links, appended */

static ngx_int_t
ngx_http_registry_evict_listed(ngx_http_registry_evict_t *e, ngx_str_t *name,
    ngx_array_t *digests)
{
    ngx_str_t   dir;
    ngx_uint_t  alg, layers;

    for (layers = 0; layers < 2; layers++) {
        for (alg = NGX_HTTP_REGISTRY_SHA256;
             alg <= NGX_HTTP_REGISTRY_SHA512;
             alg++)
        {
            if ((layers
                 ? ngx_http_registry_path_layers(e->op, &dir, name, alg)
                 : ngx_http_registry_path_revisions(e->op, &dir, name, alg))
                != NGX_OK
                || ngx_http_registry_evict_hexes(e->op, &dir, alg, digests)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/* the digests a directory of <hex> entries names (absent: none) */

static ngx_int_t
ngx_http_registry_evict_hexes(ngx_http_registry_op_t *op, ngx_str_t *dir,
    ngx_uint_t alg, ngx_array_t *digests)
{
    ngx_int_t                    rc;
    ngx_str_t                   *hex;
    ngx_uint_t                   i;
    ngx_array_t                  hexes;
    ngx_http_registry_digest_t  *d;

    if (ngx_array_init(&hexes, op->pool, 16, sizeof(ngx_str_t)) != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    rc = ngx_http_registry_file_list(op, dir, NGX_HTTP_REGISTRY_LIST_DIRS,
                                     &hexes);
    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    hex = hexes.elts;

    for (i = 0; i < hexes.nelts; i++) {
        d = ngx_array_push(digests);
        if (d == NULL) {
            return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
        }

        rc = ngx_http_registry_digest_of(op->pool, alg, &hex[i], d);

        if (rc == NGX_ERROR) {
            return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
        }

        if (rc != NGX_OK) {
            digests->nelts--;       /* not a digest: not ours to judge */
        }
    }

    return NGX_OK;
}


/* the blob's bytes in the store; 0: not there */

static ngx_int_t
ngx_http_registry_evict_size(ngx_http_registry_evict_t *e,
    ngx_http_registry_digest_t *digest, off_t *size)
{
    ngx_int_t        rc;
    ngx_str_t        path;
    ngx_file_info_t  fi;

    *size = 0;

    if (ngx_http_registry_path_blob(e->op, &path, digest) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_stat(e->op, &path, &fi);

    if (rc == NGX_OK) {
        *size = ngx_file_size(&fi);
    }

    return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}


/*
 * An item a cached blob, its holders counted, e->total their bytes now;
 * queued: those no cached manifest references.
 */

static ngx_int_t
ngx_http_registry_evict_queue(ngx_http_registry_evict_t *e)
{
    ngx_uint_t                       i, j;
    ngx_http_registry_cached_t      *c;
    ngx_http_registry_evict_item_t  *item;

    c = e->cached.elts;
    e->total = 0;

    e->items = ngx_pcalloc(e->op->pool, e->cached.nelts
                                  * sizeof(ngx_http_registry_evict_item_t));
    if (e->items == NULL && e->cached.nelts) {
        return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
    }

    for (i = 0; i < e->cached.nelts; i++) {
        item = &e->items[i];
        item->cached = &c[i];

        if (ngx_http_registry_evict_size(e, &c[i].digest, &item->size)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        e->total += item->size;

        for (j = 0; j < c[i].nrefs; j++) {
            e->items[c[i].refs[j]].holders++;
        }
    }

    ngx_rbtree_init(&e->queue, &e->sentinel, ngx_http_registry_evict_insert);

    for (i = 0; i < e->cached.nelts; i++) {
        if (e->items[i].holders == 0) {
            ngx_rbtree_insert(&e->queue, &e->items[i].node);
        }
    }

    return NGX_OK;
}


/*
 * The item's links, then its bytes, then (a manifest) what it held:
 * blobs no other kept manifest references go with it, manifests are
 * queued.
 */

static ngx_int_t
ngx_http_registry_evict_item(ngx_http_registry_evict_t *e,
    ngx_http_registry_evict_item_t *item)
{
    off_t                        size;
    ngx_http_registry_cached_t  *c;

    c = item->cached;

    if (ngx_http_registry_evict_links(e, c) != NGX_OK
        || ngx_http_registry_store_blob_evict(e->op, &c->digest, e->started,
                                              &size)
           == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    /* its links gone, its bytes are no longer the cache's, even if kept */

    *e->freed += size;
    e->total -= item->size;

    return ngx_http_registry_evict_release(e, c);
}


/* a manifest's revisions (and tags), or a blob's layer links */

static ngx_int_t
ngx_http_registry_evict_links(ngx_http_registry_evict_t *e,
    ngx_http_registry_cached_t *c)
{
    ngx_int_t                         rc;
    ngx_uint_t                        i;
    ngx_http_registry_cached_link_t  *link;

    link = c->links.elts;

    for (i = 0; i < c->links.nelts; i++) {
        if (link[i].revision) {
            rc = ngx_http_registry_store_manifest_delete(e->op, &link[i].name,
                                                         &c->digest,
                                                         e->manifest_max);
            ngx_log_error(NGX_LOG_INFO, e->op->log, 0,
                          "registry cache: evicted %V@%V", &link[i].name,
                          &c->digest.text);

        } else {
            rc = ngx_http_registry_store_blob_unlink(e->op, &link[i].name,
                                                     &c->digest);
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    if (!c->manifest) {
        ngx_log_error(NGX_LOG_INFO, e->op->log, 0,
                      "registry cache: evicted blob %V", &c->digest.text);
    }

    return NGX_OK;
}


/* what an evicted manifest was the last kept one to reference */

static ngx_int_t
ngx_http_registry_evict_release(ngx_http_registry_evict_t *e,
    ngx_http_registry_cached_t *c)
{
    ngx_uint_t                       i;
    ngx_http_registry_evict_item_t  *held;

    for (i = 0; i < c->nrefs; i++) {
        held = &e->items[c->refs[i]];

        if (--held->holders) {
            continue;
        }

        if (held->cached->manifest) {
            ngx_rbtree_insert(&e->queue, &held->node);
            continue;
        }

        if (ngx_http_registry_evict_item(e, held) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the queue: the least recently pulled first, equals in their order */

static void
ngx_http_registry_evict_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    uint64_t             pulled;
    ngx_rbtree_node_t  **p;

    pulled = ((ngx_http_registry_evict_item_t *) node)->cached->pulled;

    for ( ;; ) {
        p = (pulled < ((ngx_http_registry_evict_item_t *) temp)->cached->pulled)
            ? &temp->left : &temp->right;

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static int ngx_libc_cdecl
ngx_http_registry_evict_by_digest(const void *a, const void *b)
{
    ngx_int_t                          rc;
    const ngx_http_registry_digest_t  *da = a, *db = b;

    rc = ngx_memn2cmp(da->text.data, db->text.data, da->text.len,
                      db->text.len);

    return (rc < 0) ? -1 : (rc > 0);
}
