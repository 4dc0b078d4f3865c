
/*
 * ngx_http_registry_module: eviction of the pull-through cache under
 * registry_cache_max_size, in a thread.
 *
 * The unit is a cached manifest (a revision of a mirrored repository),
 * whose last pull is its revision link's mtime (the mirror's pulls are
 * flushed there periodically, mirror.c), or a blob of a mirrored
 * repository that no cached manifest references (a client pulled it by
 * digest alone), whose last pull is its layer link's (the latest of the
 * repositories linking it), flushed the same way.  The mirrored bytes
 * are summed from the listings and a stat of each blob; only when they
 * are over the bound are the cached manifests read.  Then the least
 * recently pulled unit goes: a manifest (its revision and the tags
 * naming it, as a DELETE does), then every blob it referenced that
 * nothing kept references: no kept manifest of a mirrored repository
 * (an index's children included) and no local repository (its layer
 * links and revisions are never touched, and protect their blobs); or a
 * blob alone.  A manifest a kept index references is kept with it, and
 * goes as soon as that index goes, being older.  A blob goes by the
 * garbage collector's protocol (store_blob_evict(), store_gc.c): one
 * that a push, mount or manifest put referenced again since this
 * eviction began (before it read who references what) is kept.  A blob
 * a pull is sending stays readable: the client's descriptor keeps the
 * unlinked file.
 */


#include "ngx_http_registry_store_mirror.h"


typedef struct {
    ngx_str_t                  name;
    ngx_http_registry_digest_t digest;
    time_t                     pulled;
    ngx_array_t               *references;   /* ngx_http_registry_ref_t */
    unsigned                   blob:1;       /* a blob alone */
    unsigned                   passed:1;     /* kept by a kept index */
} ngx_http_registry_evict_unit_t;


/* a layer link of a mirrored repository */

typedef struct {
    ngx_str_t                  name;
    ngx_http_registry_digest_t digest;
} ngx_http_registry_evict_link_t;


typedef struct {
    ngx_http_registry_op_t    *op;
    ngx_array_t               *prefixes;
    ngx_array_t                local;        /* ngx_str_t digests, sorted */
    ngx_array_t                units;     /* ngx_http_registry_evict_unit_t */
    ngx_array_t                held;         /* ngx_str_t digests, sorted */
    ngx_uint_t                *held_refs;    /* kept manifests naming each */
    ngx_uint_t                *held_units;   /* kept manifests that are it */
    ngx_array_t                links;     /* ngx_http_registry_evict_link_t */
    off_t                      total;
    size_t                     manifest_max;
    time_t                     started;      /* before the references read */
} ngx_http_registry_evict_t;


static ngx_int_t ngx_http_registry_evict_manifest(
    ngx_http_registry_evict_t *e, ngx_http_registry_evict_unit_t *u,
    off_t *freed);
static ngx_int_t ngx_http_registry_evict_passed(ngx_http_registry_evict_t *e,
    ngx_uint_t n, off_t max, off_t *freed);
static ngx_int_t ngx_http_registry_evict_collect(ngx_http_registry_evict_t *e,
    ngx_str_t *name);
static ngx_int_t ngx_http_registry_evict_links(ngx_http_registry_evict_t *e,
    ngx_str_t *name);
static ngx_int_t ngx_http_registry_evict_local(ngx_http_registry_evict_t *e,
    ngx_str_t *name);
static ngx_int_t ngx_http_registry_evict_listed(ngx_http_registry_evict_t *e,
    ngx_str_t *name, ngx_uint_t revisions, ngx_array_t *digests);
static ngx_int_t ngx_http_registry_evict_hexes(ngx_http_registry_op_t *op,
    ngx_str_t *dir, ngx_uint_t alg, ngx_array_t *digests);
static ngx_int_t ngx_http_registry_evict_unit(ngx_http_registry_evict_t *e,
    ngx_str_t *name, ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_evict_references(
    ngx_http_registry_evict_t *e);
static ngx_int_t ngx_http_registry_evict_hold(ngx_http_registry_evict_t *e);
static void ngx_http_registry_evict_release(ngx_http_registry_evict_t *e,
    ngx_http_registry_evict_unit_t *u);
static ngx_uint_t *ngx_http_registry_evict_count(ngx_http_registry_evict_t *e,
    ngx_uint_t *counts, ngx_http_registry_digest_t *digest);
static ngx_uint_t ngx_http_registry_evict_holding(
    ngx_http_registry_evict_t *e, ngx_uint_t *counts,
    ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_evict_strays(ngx_http_registry_evict_t *e);
static ngx_int_t ngx_http_registry_evict_stray(ngx_http_registry_evict_t *e,
    ngx_array_t *strays, ngx_str_t *name, ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_evict_size(ngx_http_registry_evict_t *e);
static ngx_uint_t ngx_http_registry_evict_kept(ngx_http_registry_evict_t *e,
    ngx_http_registry_digest_t *digest);
static int ngx_libc_cdecl ngx_http_registry_evict_by_digest(const void *a,
    const void *b);
static int ngx_libc_cdecl ngx_http_registry_evict_unit_by_digest(
    const void *a, const void *b);
static ngx_int_t ngx_http_registry_evict_blob(ngx_http_registry_evict_t *e,
    ngx_http_registry_digest_t *digest, off_t *freed);
static int ngx_libc_cdecl ngx_http_registry_evict_older(const void *a,
    const void *b);


/*
 * Evicts until the mirrored repositories' bytes are at most max; prefixes
 * (ngx_str_t, "docker.io/") name them.  *freed: the bytes removed.
 */

ngx_int_t
ngx_http_registry_store_evict(ngx_http_registry_op_t *op,
    ngx_array_t *prefixes, off_t max, size_t manifest_max, off_t *freed)
{
    ngx_str_t                       *name;
    ngx_uint_t                       i;
    ngx_array_t                      names;
    ngx_http_registry_evict_t        e;
    ngx_http_registry_evict_unit_t  *u;

    *freed = 0;

    ngx_memzero(&e, sizeof(ngx_http_registry_evict_t));
    e.op = op;
    e.prefixes = prefixes;
    e.manifest_max = manifest_max;
    e.started = time(NULL);

    if (ngx_array_init(&names, op->pool, 64, sizeof(ngx_str_t)) != NGX_OK
        || ngx_array_init(&e.local, op->pool, 256, sizeof(ngx_str_t))
           != NGX_OK
        || ngx_array_init(&e.links, op->pool, 256,
                          sizeof(ngx_http_registry_evict_link_t))
           != NGX_OK
        || ngx_array_init(&e.units, op->pool, 64,
                          sizeof(ngx_http_registry_evict_unit_t))
           != NGX_OK)
    {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (ngx_http_registry_store_list_repositories(op, &names) == NGX_ERROR) {
        return NGX_ERROR;
    }

    name = names.elts;

    for (i = 0; i < names.nelts; i++) {
        if (ngx_http_registry_evict_collect(&e, &name[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    ngx_http_registry_sort_names(&e.local);

    if (ngx_http_registry_evict_size(&e) != NGX_OK) {
        return NGX_ERROR;
    }

    if (e.total <= max) {
        return NGX_OK;
    }

    if (ngx_http_registry_evict_references(&e) != NGX_OK
        || ngx_http_registry_evict_hold(&e) != NGX_OK
        || ngx_http_registry_evict_strays(&e) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_qsort(e.units.elts, e.units.nelts,
              sizeof(ngx_http_registry_evict_unit_t),
              ngx_http_registry_evict_older);

    u = e.units.elts;

    for (i = 0; i < e.units.nelts && e.total > max; i++) {

        if (u[i].blob) {
            ngx_log_error(NGX_LOG_INFO, op->log, 0,
                          "registry cache: evicted blob %V of %V",
                          &u[i].digest.text, &u[i].name);

            if (ngx_http_registry_evict_blob(&e, &u[i].digest, freed)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_http_registry_evict_kept(&e, &u[i].digest)) {
            u[i].passed = 1;     /* a kept index's child */
            continue;
        }

        if (ngx_http_registry_evict_manifest(&e, &u[i], freed) != NGX_OK
            || ngx_http_registry_evict_passed(&e, i, max, freed) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the manifest, its revision and tags, then what only it referenced */

static ngx_int_t
ngx_http_registry_evict_manifest(ngx_http_registry_evict_t *e,
    ngx_http_registry_evict_unit_t *u, off_t *freed)
{
    ngx_uint_t                j;
    ngx_http_registry_ref_t  *ref;

    if (ngx_http_registry_store_manifest_delete(e->op, &u->name, &u->digest,
                                                e->manifest_max)
        == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    ngx_http_registry_evict_release(e, u);

    ngx_log_error(NGX_LOG_INFO, e->op->log, 0,
                  "registry cache: evicted %V@%V", &u->name, &u->digest.text);

    if (ngx_http_registry_evict_blob(e, &u->digest, freed) != NGX_OK) {
        return NGX_ERROR;
    }

    ref = u->references ? u->references->elts : NULL;

    for (j = 0; ref && j < u->references->nelts; j++) {
        if (ngx_http_registry_evict_blob(e, &ref[j].digest, freed)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The units before the n-th (pulled less recently) that a kept index
 * kept, and that no kept index references any more: they go now, while
 * the bytes are over max.  From the start again after each: an index
 * among them frees its own children.
 */

static ngx_int_t
ngx_http_registry_evict_passed(ngx_http_registry_evict_t *e, ngx_uint_t n,
    off_t max, off_t *freed)
{
    ngx_uint_t                       i;
    ngx_http_registry_evict_unit_t  *u;

    u = e->units.elts;

    for (i = 0; i < n && e->total > max; i++) {
        if (!u[i].passed || ngx_http_registry_evict_kept(e, &u[i].digest)) {
            continue;
        }

        u[i].passed = 0;

        if (ngx_http_registry_evict_manifest(e, &u[i], freed) != NGX_OK) {
            return NGX_ERROR;
        }

        i = (ngx_uint_t) -1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_evict_collect(ngx_http_registry_evict_t *e, ngx_str_t *name)
{
    ngx_str_t                   *prefix;
    ngx_uint_t                   i;
    ngx_array_t                  digests;
    ngx_http_registry_digest_t  *d;

    prefix = e->prefixes->elts;

    for (i = 0; i < e->prefixes->nelts; i++) {
        if (name->len > prefix[i].len
            && ngx_strncmp(name->data, prefix[i].data, prefix[i].len) == 0)
        {
            break;
        }
    }

    if (i == e->prefixes->nelts) {
        return ngx_http_registry_evict_local(e, name);
    }

    if (ngx_http_registry_evict_links(e, name) != NGX_OK
        || ngx_http_registry_evict_listed(e, name, 1, &digests) != NGX_OK)
    {
        return NGX_ERROR;
    }

    d = digests.elts;

    for (i = 0; i < digests.nelts; i++) {
        if (ngx_http_registry_evict_unit(e, name, &d[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the mirrored repository's layer links */

static ngx_int_t
ngx_http_registry_evict_links(ngx_http_registry_evict_t *e, ngx_str_t *name)
{
    ngx_uint_t                       i;
    ngx_array_t                      digests;
    ngx_http_registry_digest_t      *d;
    ngx_http_registry_evict_link_t  *link;

    if (ngx_http_registry_evict_listed(e, name, 0, &digests) != NGX_OK) {
        return NGX_ERROR;
    }

    d = digests.elts;

    for (i = 0; i < digests.nelts; i++) {
        link = ngx_array_push(&e->links);
        if (link == NULL) {
            return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
        }

        link->name = *name;
        link->digest = d[i];
    }

    return NGX_OK;
}


/* a local repository's blobs and manifests are never evicted */

static ngx_int_t
ngx_http_registry_evict_local(ngx_http_registry_evict_t *e, ngx_str_t *name)
{
    ngx_str_t                   *s;
    ngx_uint_t                   i, revisions;
    ngx_array_t                  digests;
    ngx_http_registry_digest_t  *d;

    for (revisions = 0; revisions < 2; revisions++) {
        if (ngx_http_registry_evict_listed(e, name, revisions, &digests)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        d = digests.elts;

        for (i = 0; i < digests.nelts; i++) {
            s = ngx_array_push(&e->local);
            if (s == NULL) {
                return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
            }

            *s = d[i].text;
        }
    }

    return NGX_OK;
}


/* the digests of the repository's revisions, or its layer links */

static ngx_int_t
ngx_http_registry_evict_listed(ngx_http_registry_evict_t *e, ngx_str_t *name,
    ngx_uint_t revisions, ngx_array_t *digests)
{
    ngx_int_t   rc;
    ngx_str_t   dir;
    ngx_uint_t  alg;

    if (ngx_array_init(digests, e->op->pool, 16,
                       sizeof(ngx_http_registry_digest_t))
        != NGX_OK)
    {
        return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
    }

    for (alg = NGX_HTTP_REGISTRY_SHA256; alg <= NGX_HTTP_REGISTRY_SHA512; alg++)
    {
        rc = revisions
             ? ngx_http_registry_path_revisions(e->op, &dir, name, alg)
             : ngx_http_registry_path_layers(e->op, &dir, name, alg);

        if (rc != NGX_OK
            || ngx_http_registry_evict_hexes(e->op, &dir, alg, digests)
               != NGX_OK)
        {
            return NGX_ERROR;
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


/* a cached manifest: when it was last pulled */

static ngx_int_t
ngx_http_registry_evict_unit(ngx_http_registry_evict_t *e, ngx_str_t *name,
    ngx_http_registry_digest_t *digest)
{
    ngx_int_t                        rc;
    ngx_str_t                        link;
    ngx_file_info_t                  fi;
    ngx_http_registry_evict_unit_t  *u;

    if (ngx_http_registry_path_revision_link(e->op, &link, name, digest)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_stat(e->op, &link, &fi);

    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    u = ngx_array_push(&e->units);
    if (u == NULL) {
        return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
    }

    ngx_memzero(u, sizeof(ngx_http_registry_evict_unit_t));
    u->name = *name;
    u->digest = *digest;
    u->pulled = ngx_file_mtime(&fi);

    return NGX_OK;
}


/*
 * What each cached manifest references, read once the bytes are known to
 * be over the bound (and after e->started: see store_blob_evict()).
 */

static ngx_int_t
ngx_http_registry_evict_references(ngx_http_registry_evict_t *e)
{
    ngx_int_t                        rc;
    ngx_str_t                        path, none = ngx_null_string;
    ngx_uint_t                       i;
    const char                      *invalid;
    ngx_http_registry_manifest_t     m;
    ngx_http_registry_evict_unit_t  *u;

    u = e->units.elts;

    for (i = 0; i < e->units.nelts; i++) {
        if (ngx_http_registry_path_blob(e->op, &path, &u[i].digest)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_memzero(&m, sizeof(ngx_http_registry_manifest_t));
        m.digest = u[i].digest;

        rc = ngx_http_registry_file_read(e->op, &path, e->manifest_max,
                                         &m.bytes);

        if (rc == NGX_OK) {
            rc = ngx_http_registry_manifest_parse(e->op->pool, &m, &none,
                                                  &invalid);
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        /* bytes gone or not a manifest: it keeps nothing alive */
        u[i].references = (rc == NGX_OK) ? m.references : NULL;
    }

    return NGX_OK;
}


/*
 * What the kept manifests hold: every manifest unit's digest and the
 * digests it references, once each, with how many kept manifests are it
 * and name it (an eviction releases them: evict_release()).
 */

static ngx_int_t
ngx_http_registry_evict_hold(ngx_http_registry_evict_t *e)
{
    ngx_str_t                       *s, *held;
    ngx_uint_t                       i, j, n;
    ngx_http_registry_ref_t         *ref;
    ngx_http_registry_evict_unit_t  *u;

    if (ngx_array_init(&e->held, e->op->pool, 256, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
    }

    u = e->units.elts;

    for (i = 0; i < e->units.nelts; i++) {
        ref = u[i].references ? u[i].references->elts : NULL;
        n = u[i].references ? u[i].references->nelts : 0;

        for (j = 0; j <= n; j++) {
            s = ngx_array_push(&e->held);
            if (s == NULL) {
                return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
            }

            *s = (j == n) ? u[i].digest.text : ref[j].digest.text;
        }
    }

    ngx_http_registry_sort_names(&e->held);

    held = e->held.elts;
    n = 0;

    for (i = 0; i < e->held.nelts; i++) {
        if (n == 0 || held[i].len != held[n - 1].len
            || ngx_memcmp(held[i].data, held[n - 1].data, held[i].len) != 0)
        {
            held[n++] = held[i];
        }
    }

    e->held.nelts = n;
    e->held_refs = ngx_pcalloc(e->op->pool, n * sizeof(ngx_uint_t));
    e->held_units = ngx_pcalloc(e->op->pool, n * sizeof(ngx_uint_t));

    if (e->held_refs == NULL || e->held_units == NULL) {
        return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
    }

    /* every digest counted here is in the table: no count is NULL */

    for (i = 0; i < e->units.nelts; i++) {
        ref = u[i].references ? u[i].references->elts : NULL;

        for (j = 0; ref && j < u[i].references->nelts; j++) {
            (*ngx_http_registry_evict_count(e, e->held_refs,
                                            &ref[j].digest))++;
        }

        (*ngx_http_registry_evict_count(e, e->held_units, &u[i].digest))++;
    }

    return NGX_OK;
}


/* an evicted manifest holds nothing any more */

static void
ngx_http_registry_evict_release(ngx_http_registry_evict_t *e,
    ngx_http_registry_evict_unit_t *u)
{
    ngx_uint_t                *count;
    ngx_uint_t                 j;
    ngx_http_registry_ref_t   *ref;

    ref = u->references ? u->references->elts : NULL;

    for (j = 0; ref && j < u->references->nelts; j++) {
        count = ngx_http_registry_evict_count(e, e->held_refs,
                                              &ref[j].digest);
        (*count)--;
    }

    count = ngx_http_registry_evict_count(e, e->held_units, &u->digest);
    (*count)--;
}


/* the digest's count in counts (held_refs or held_units); NULL: not held */

static ngx_uint_t *
ngx_http_registry_evict_count(ngx_http_registry_evict_t *e,
    ngx_uint_t *counts, ngx_http_registry_digest_t *digest)
{
    ngx_uint_t  at;

    if (ngx_http_registry_find_name(&e->held, &digest->text, &at) != NGX_OK) {
        return NULL;
    }

    return &counts[at];
}


/* how many kept manifests the count says hold the digest */

static ngx_uint_t
ngx_http_registry_evict_holding(ngx_http_registry_evict_t *e,
    ngx_uint_t *counts, ngx_http_registry_digest_t *digest)
{
    ngx_uint_t  *count;

    count = ngx_http_registry_evict_count(e, counts, digest);

    return count ? *count : 0;
}


/*
 * The blobs linked in mirrored repositories that neither a local
 * repository nor any cached manifest holds: units of their own, one a
 * blob however many repositories link it (its last pull the latest).
 */

static ngx_int_t
ngx_http_registry_evict_strays(ngx_http_registry_evict_t *e)
{
    ngx_uint_t                       i, at;
    ngx_array_t                      strays;
    ngx_http_registry_evict_link_t  *link;
    ngx_http_registry_evict_unit_t  *s, *u;

    if (ngx_array_init(&strays, e->op->pool, 16,
                       sizeof(ngx_http_registry_evict_unit_t))
        != NGX_OK)
    {
        return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
    }

    link = e->links.elts;

    for (i = 0; i < e->links.nelts; i++) {
        if (ngx_http_registry_find_name(&e->local, &link[i].digest.text, &at)
            == NGX_OK
            || ngx_http_registry_find_name(&e->held, &link[i].digest.text,
                                           &at)
               == NGX_OK)
        {
            continue;
        }

        if (ngx_http_registry_evict_stray(e, &strays, &link[i].name,
                                          &link[i].digest)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ngx_qsort(strays.elts, strays.nelts,
              sizeof(ngx_http_registry_evict_unit_t),
              ngx_http_registry_evict_unit_by_digest);

    s = strays.elts;
    u = NULL;

    for (i = 0; i < strays.nelts; i++) {
        if (u && ngx_http_registry_digest_equal(&u->digest, &s[i].digest)) {
            u->pulled = ngx_max(u->pulled, s[i].pulled);
            continue;
        }

        u = ngx_array_push(&e->units);
        if (u == NULL) {
            return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
        }

        *u = s[i];
    }

    return NGX_OK;
}


/* a stray blob linked in the repository, last pulled at its link's time */

static ngx_int_t
ngx_http_registry_evict_stray(ngx_http_registry_evict_t *e,
    ngx_array_t *strays, ngx_str_t *name, ngx_http_registry_digest_t *digest)
{
    ngx_int_t                        rc;
    ngx_str_t                        link;
    ngx_file_info_t                  fi;
    ngx_http_registry_evict_unit_t  *u;

    if (ngx_http_registry_path_layer_link(e->op, &link, name, digest)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_stat(e->op, &link, &fi);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    u = ngx_array_push(strays);
    if (u == NULL) {
        return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
    }

    ngx_memzero(u, sizeof(ngx_http_registry_evict_unit_t));
    u->name = *name;
    u->digest = *digest;
    u->pulled = ngx_file_mtime(&fi);
    u->blob = 1;

    return NGX_OK;
}


/*
 * The bytes of the mirrored repositories' blobs (their layer links, and
 * the manifests) no local repository holds, each blob once.
 */

static ngx_int_t
ngx_http_registry_evict_size(ngx_http_registry_evict_t *e)
{
    ngx_int_t                        rc;
    ngx_str_t                        path;
    ngx_uint_t                       i, at;
    ngx_array_t                      digests;
    ngx_file_info_t                  fi;
    ngx_http_registry_digest_t      *d;
    ngx_http_registry_evict_link_t  *link;
    ngx_http_registry_evict_unit_t  *u;

    if (ngx_array_init(&digests, e->op->pool,
                       e->links.nelts + e->units.nelts + 1,
                       sizeof(ngx_http_registry_digest_t))
        != NGX_OK)
    {
        return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
    }

    link = e->links.elts;

    for (i = 0; i < e->links.nelts; i++) {
        d = ngx_array_push(&digests);
        if (d == NULL) {
            return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
        }

        *d = link[i].digest;
    }

    u = e->units.elts;

    for (i = 0; i < e->units.nelts; i++) {
        d = ngx_array_push(&digests);
        if (d == NULL) {
            return ngx_http_registry_op_syserr(e->op, NGX_ENOMEM);
        }

        *d = u[i].digest;
    }

    ngx_qsort(digests.elts, digests.nelts,
              sizeof(ngx_http_registry_digest_t),
              ngx_http_registry_evict_by_digest);

    d = digests.elts;

    for (i = 0; i < digests.nelts; i++) {
        if ((i > 0 && ngx_http_registry_digest_equal(&d[i - 1], &d[i]))
            || ngx_http_registry_find_name(&e->local, &d[i].text, &at)
               == NGX_OK)
        {
            continue;
        }

        if (ngx_http_registry_path_blob(e->op, &path, &d[i]) != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_file_stat(e->op, &path, &fi);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK) {
            e->total += ngx_file_size(&fi);
        }
    }

    return NGX_OK;
}


/* a kept manifest references the digest */

static ngx_uint_t
ngx_http_registry_evict_kept(ngx_http_registry_evict_t *e,
    ngx_http_registry_digest_t *digest)
{
    return ngx_http_registry_evict_holding(e, e->held_refs, digest) > 0;
}


/*
 * A blob of an evicted manifest: unless a kept manifest or a local
 * repository holds it, its layer links in the mirrored repositories and
 * its bytes go.
 */

static ngx_int_t
ngx_http_registry_evict_blob(ngx_http_registry_evict_t *e,
    ngx_http_registry_digest_t *digest, off_t *freed)
{
    off_t                            size;
    ngx_int_t                        rc;
    ngx_uint_t                       i, at;
    ngx_http_registry_evict_link_t  *link;

    if (ngx_http_registry_find_name(&e->local, &digest->text, &at) == NGX_OK
        || ngx_http_registry_evict_kept(e, digest))
    {
        return NGX_OK;
    }

    if (ngx_http_registry_evict_holding(e, e->held_units, digest)) {
        return NGX_OK;           /* the same manifest, kept elsewhere */
    }

    link = e->links.elts;

    for (i = 0; i < e->links.nelts; i++) {
        if (ngx_http_registry_digest_equal(&link[i].digest, digest)
            && ngx_http_registry_store_blob_unlink(e->op, &link[i].name,
                                                   digest)
               == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    rc = ngx_http_registry_store_blob_evict(e->op, digest, e->started,
                                            &size);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    *freed += size;
    e->total -= size;

    return NGX_OK;
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


static int ngx_libc_cdecl
ngx_http_registry_evict_unit_by_digest(const void *a, const void *b)
{
    const ngx_http_registry_evict_unit_t  *ua = a, *ub = b;

    return ngx_http_registry_evict_by_digest(&ua->digest, &ub->digest);
}


static int ngx_libc_cdecl
ngx_http_registry_evict_older(const void *a, const void *b)
{
    const ngx_http_registry_evict_unit_t  *ua = a, *ub = b;

    return (ua->pulled > ub->pulled) - (ua->pulled < ub->pulled);
}
