
/*
 * ngx_http_registry_module: manifests and tags (distribution's
 * manifeststore.go and tagstore.go).
 *
 * A manifest's bytes are a blob, its revision link says the repository
 * holds it, and a tag is a directory whose current link names a manifest,
 * beside an index of every manifest it ever named.  The ordering rules:
 * the bytes before the revision link, the revision link before any tag,
 * a tag's history before its current link, so a tag only ever points at a
 * complete manifest; a referrers index entry before the revision link (an
 * entry without its revision is not listed).  Every change to a link
 * bumps the link cache's counter afterwards.
 */


#include "ngx_http_registry_store.h"


/*
 * Each worker remembers the media type of the manifests it served: they
 * are content-addressed, so an answer never goes stale.  Direct-mapped.
 */

#define NGX_HTTP_REGISTRY_TYPES     1024
#define NGX_HTTP_REGISTRY_TYPE_MAX  128


typedef struct {
    u_char                     digest_len;  /* 0: an empty slot */
    u_char                     type_len;
    u_char                     digest[NGX_HTTP_REGISTRY_DIGEST_MAX_LEN];
    u_char                     type[NGX_HTTP_REGISTRY_TYPE_MAX];
} ngx_http_registry_type_t;


struct ngx_http_registry_type_cache_s {
    ngx_http_registry_type_t   types[NGX_HTTP_REGISTRY_TYPES];
};


static ngx_int_t ngx_http_registry_manifest_check(ngx_http_registry_op_t *op,
    ngx_http_registry_manifest_t *m);
static ngx_int_t ngx_http_registry_manifest_write(ngx_http_registry_op_t *op,
    ngx_http_registry_manifest_t *m, ngx_uint_t *created);
static ngx_int_t ngx_http_registry_manifest_hold(ngx_http_registry_op_t *op,
    ngx_http_registry_manifest_t *m);
static ngx_int_t ngx_http_registry_manifest_unwrite(
    ngx_http_registry_op_t *op, ngx_http_registry_manifest_t *m);
static ngx_int_t ngx_http_registry_tag_write(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_str_t *tag, ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_untag_all(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *digest);
static ngx_http_registry_type_t *ngx_http_registry_type_slot(
    ngx_http_registry_op_t *op, ngx_http_registry_digest_t *digest);


/*
 * The digest a tag names (tag != NULL) or *digest, if the repository
 * holds that manifest: the tag's current link, then the revision link,
 * both through the link cache; *data is the manifest's file, in full for
 * open_file_cache.  NGX_DECLINED: it does not (detail says when the tag
 * is unknown).  Event loop only.
 */

ngx_int_t
ngx_http_registry_store_manifest_resolve(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_str_t *tag, ngx_http_registry_digest_t *digest,
    ngx_str_t *data)
{
    ngx_int_t  rc;
    ngx_str_t  link;

    if (tag) {
        if (ngx_http_registry_path_tag_link(op, &link, name, tag) != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_links_read(op, &link, digest);

        if (rc == NGX_DECLINED) {
            op->fault.detail = "unknown tag";
        }

        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (ngx_http_registry_path_revision_link(op, &link, name, digest)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_links_exist(op, &link);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_registry_path_blob_file(op, data, digest);
}


/*
 * The media type a stored manifest is served with, from this worker's
 * cache or read from its bytes (at most max of them).  NGX_DECLINED: its
 * bytes are gone.  Event loop only.
 */

ngx_int_t
ngx_http_registry_store_manifest_type(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest, size_t max, ngx_str_t *type)
{
    ngx_int_t                  rc;
    ngx_str_t                  path, body, found;
    ngx_http_registry_type_t  *slot;

    slot = ngx_http_registry_type_slot(op, digest);

    if (slot
        && slot->digest_len == digest->text.len
        && ngx_memcmp(slot->digest, digest->text.data, digest->text.len) == 0)
    {
        type->len = slot->type_len;
        type->data = ngx_pnalloc(op->pool, type->len);
        if (type->data == NULL) {
            return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
        }

        ngx_memcpy(type->data, slot->type, type->len);
        return NGX_OK;
    }

    if (ngx_http_registry_path_blob(op, &path, digest) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_read(op, &path, max, &body);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_registry_manifest_media_type(op->pool, &body, &found)
        != NGX_OK)
    {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    *type = found;

    if (slot && found.len <= NGX_HTTP_REGISTRY_TYPE_MAX) {
        slot->digest_len = digest->text.len;
        ngx_memcpy(slot->digest, digest->text.data, digest->text.len);
        slot->type_len = found.len;
        ngx_memcpy(slot->type, found.data, found.len);
    }

    return NGX_OK;
}


/* NULL: this worker could not allocate its cache */

static ngx_http_registry_type_t *
ngx_http_registry_type_slot(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest)
{
    ngx_http_registry_store_t  *st;

    st = op->store;

    if (st->types == NULL) {
        st->types = ngx_calloc(sizeof(ngx_http_registry_type_cache_t),
                               op->log);
        if (st->types == NULL) {
            return NULL;
        }
    }

    /* a digest is uniformly random already: its first hex digits will do */
    return &st->types->types[ngx_hextoi(digest->hex.data, 6)
                             % NGX_HTTP_REGISTRY_TYPES];
}


/*
 * Stores a checked manifest: everything it references must be in the
 * repository already, then come its referrers entry, its bytes, its
 * revision link, everything it references held once more (manifest_hold)
 * and its tags, each durable.  The revision and the tags are written
 * under the repository's lock, which a DELETE of a manifest or a tag
 * takes too: a DELETE between our revision link and our tag would leave
 * the tag naming a revision that is gone (t/many_writers.t).
 */

ngx_int_t
ngx_http_registry_store_manifest_put(ngx_http_registry_op_t *op,
    ngx_http_registry_manifest_t *m)
{
    ngx_fd_t     fd;
    ngx_int_t    rc, existed;
    ngx_str_t   *tag, lock;
    ngx_uint_t   i, tracked, created;

    if (!m->mirrored && ngx_http_registry_manifest_check(op, m) != NGX_OK) {
        return NGX_ERROR;
    }

    existed = ngx_http_registry_store_is_repository(op, &m->name);
    if (existed == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* an index that was complete stays so: our own write is not foreign */

    tracked = ngx_http_registry_store_referrers_tracked(op, &m->name);

    if (m->descriptor.len
        && ngx_http_registry_store_referrers_add(op, &m->name, &m->subject,
                                                 &m->digest, &m->descriptor)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_registry_path_repository_lock(op, &lock, &m->name)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    fd = ngx_http_registry_file_lock(op, &lock);
    if (fd == NGX_INVALID_FILE) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_manifest_write(op, m, &created);

    if (rc == NGX_OK && !m->mirrored) {
        rc = ngx_http_registry_manifest_hold(op, m);

        if (rc == NGX_DECLINED && created) {
            (void) ngx_http_registry_manifest_unwrite(op, m);
        }
    }

    if (rc == NGX_OK) {
        if (tracked) {
            ngx_http_registry_store_referrers_restamp(op, &m->name);
        }

        ngx_http_registry_store_created(op, &m->name, existed == NGX_OK);
    }

    tag = m->tags->elts;

    for (i = 0; rc == NGX_OK && i < m->tags->nelts; i++) {
        rc = ngx_http_registry_tag_write(op, &m->name, &tag[i], &m->digest);
    }

    ngx_http_registry_file_unlock(op, fd, &lock);

    return (rc == NGX_OK) ? NGX_OK : NGX_ERROR;
}


/*
 * Config and layers as blobs, an index's children as manifests; each
 * link's time and the bytes' are refreshed (garbage collection's grace
 * starts over, a tombstoned blob comes back: store_gc.c).
 */

static ngx_int_t
ngx_http_registry_manifest_check(ngx_http_registry_op_t *op,
    ngx_http_registry_manifest_t *m)
{
    ngx_int_t                 rc;
    ngx_str_t                 link;
    ngx_uint_t                i;
    ngx_http_registry_ref_t  *ref;

    ref = m->references->elts;

    for (i = 0; i < m->references->nelts; i++) {
        rc = ref[i].manifest
             ? ngx_http_registry_path_revision_link(op, &link, &m->name,
                                                    &ref[i].digest)
             : ngx_http_registry_path_layer_link(op, &link, &m->name,
                                                 &ref[i].digest);
        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_file_retime(op, &link);

        if (rc == NGX_OK) {
            rc = ngx_http_registry_store_blob_refresh(op, &ref[i].digest);
        }

        if (rc == NGX_DECLINED) {
            return ngx_http_registry_op_fail(op,
                                       NGX_HTTP_REGISTRY_MANIFEST_BLOB_UNKNOWN,
                                       (char *) ref[i].digest.text.data);
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The bytes as a blob (unless there already: refreshed), then the
 * revision; *created: the revision link is new.
 */

static ngx_int_t
ngx_http_registry_manifest_write(ngx_http_registry_op_t *op,
    ngx_http_registry_manifest_t *m, ngx_uint_t *created)
{
    ngx_int_t  rc;
    ngx_str_t  path;

    if (ngx_http_registry_path_blob(op, &path, &m->digest) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_store_blob_refresh(op, &m->digest);

    /* durable before the revision link that names them is written */

    if (rc == NGX_DECLINED) {
        rc = ngx_http_registry_file_write(op, &path, m->bytes.data,
                                          m->bytes.len, 1);
    }

    if (rc != NGX_OK
        || ngx_http_registry_path_revision_link(op, &path, &m->name,
                                                &m->digest)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* rewritten all the same: an unacknowledged push may have left it */

    rc = ngx_http_registry_file_exists(op, &path);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    *created = (rc == NGX_DECLINED);

    return ngx_http_registry_file_write_link(op, &path, &m->digest);
}


/*
 * Once the revision link is there, a garbage collection that marks the
 * repository finds the manifest live.  One that marked it before may
 * still move aside, or delete, what the manifest names: the check
 * refreshed it before a wait (the repository's lock, the writes) that
 * can outlast the grace.  A refresh now, after the link, comes either
 * before such a run's move (the young time keeps the blob, store_gc.c)
 * or after it (and brings the blob back); a tombstone it deleted first
 * is gone for good, and the put fails.  So every blob a 201 names is in
 * blobs/.  A layer link the run removed meanwhile is written again, as
 * are the manifest's own bytes.  NGX_DECLINED: a blob is gone (the fault
 * says which).
 */

static ngx_int_t
ngx_http_registry_manifest_hold(ngx_http_registry_op_t *op,
    ngx_http_registry_manifest_t *m)
{
    ngx_int_t                 rc;
    ngx_str_t                 path;
    ngx_uint_t                i;
    ngx_http_registry_ref_t  *ref;

    rc = ngx_http_registry_store_blob_refresh(op, &m->digest);

    if (rc == NGX_DECLINED) {
        if (ngx_http_registry_path_blob(op, &path, &m->digest) != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_file_write(op, &path, m->bytes.data,
                                          m->bytes.len, 1);
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    ref = m->references->elts;

    for (i = 0; i < m->references->nelts; i++) {

        if (!ref[i].manifest) {
            rc = ngx_http_registry_store_blob_link(op, &m->name,
                                                   &ref[i].digest);

        } else if (ngx_http_registry_path_revision_link(op, &path, &m->name,
                                                        &ref[i].digest)
                   != NGX_OK)
        {
            return NGX_ERROR;

        } else {
            rc = ngx_http_registry_file_retime(op, &path);

            if (rc == NGX_OK) {
                rc = ngx_http_registry_store_blob_refresh(op,
                                                          &ref[i].digest);
            }
        }

        if (rc == NGX_DECLINED) {
            (void) ngx_http_registry_op_fail(op,
                                       NGX_HTTP_REGISTRY_MANIFEST_BLOB_UNKNOWN,
                                       (char *) ref[i].digest.text.data);
            return NGX_DECLINED;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the revision link this put wrote, removed again: it names a lost blob */

static ngx_int_t
ngx_http_registry_manifest_unwrite(ngx_http_registry_op_t *op,
    ngx_http_registry_manifest_t *m)
{
    ngx_int_t  rc;
    ngx_str_t  link;

    if (ngx_http_registry_path_revision_link(op, &link, &m->name, &m->digest)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_unlink(op, &link,
                                       NGX_HTTP_REGISTRY_UNLINK_PARENT);

    ngx_http_registry_links_changed(op);

    return rc;
}


/*
 * The tag's history entry first, then its current link; a tag that
 * already names the manifest (with its history entry) is left as it is.
 * Only the current link is durable: it is what a pull of the tag reads,
 * while the history is what distribution records and nobody needs to
 * serve the tag (a power cut may lose an entry: a push saves two fsyncs,
 * and those of the three new directories of a new entry).
 */

static ngx_int_t
ngx_http_registry_tag_write(ngx_http_registry_op_t *op, ngx_str_t *name,
    ngx_str_t *tag, ngx_http_registry_digest_t *digest)
{
    ngx_int_t                   rc;
    ngx_str_t                   history, current;
    ngx_http_registry_digest_t  now;

    if (ngx_http_registry_path_tag_index(op, &history, name, tag, digest)
        != NGX_OK
        || ngx_http_registry_path_tag_link(op, &current, name, tag) != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_read_link(op, &current, &now);

    if (rc == NGX_OK
        && ngx_http_registry_digest_equal(&now, digest)
        && ngx_http_registry_file_exists(op, &history) == NGX_OK)
    {
        return NGX_OK;
    }

    if (ngx_http_registry_file_write(op, &history, digest->text.data,
                                     digest->text.len, 0)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_write_link(op, &current, digest);

    /* the tag may have moved: what workers remember of it is stale */
    ngx_http_registry_links_changed(op);

    return rc;
}


/*
 * The revision goes, with every tag pointing at it and its referrers
 * entry, under the repository's lock (see manifest_put); the bytes stay
 * until garbage collection, as in distribution.  NGX_DECLINED: the
 * repository has no such manifest.
 */

ngx_int_t
ngx_http_registry_store_manifest_delete(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *digest, size_t max)
{
    ngx_fd_t    fd;
    ngx_int_t   rc;
    ngx_str_t   link, lock;
    ngx_uint_t  tracked;

    if (ngx_http_registry_path_revision_link(op, &link, name, digest)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_exists(op, &link);
    if (rc != NGX_OK) {
        return rc;
    }

    tracked = ngx_http_registry_store_referrers_tracked(op, name);

    if (ngx_http_registry_path_repository_lock(op, &lock, name) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_http_registry_file_lock(op, &lock);
    if (fd == NGX_INVALID_FILE) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_store_referrers_remove(op, name, digest, max);

    if (rc == NGX_OK) {
        rc = ngx_http_registry_untag_all(op, name, digest);
    }

    /*
     * durable, as the tags' removal before it (untag_all): a DELETE
     * acknowledged stays done, and no power cut leaves a tag naming the
     * revision that went
     */

    if (rc == NGX_OK) {
        rc = ngx_http_registry_file_unlink(op, &link,
                                           NGX_HTTP_REGISTRY_UNLINK_PARENT
                                           |NGX_HTTP_REGISTRY_UNLINK_DURABLE);
    }

    ngx_http_registry_file_unlock(op, fd, &lock);

    /* some tags may be gone even if something failed */
    ngx_http_registry_links_changed(op);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (tracked) {
        ngx_http_registry_store_referrers_restamp(op, name);
    }

    return NGX_OK;
}


/*
 * The tag only, under the repository's lock (a push writing the tag's
 * history and current links meanwhile would find its directories gone).
 * NGX_DECLINED: no such tag.
 */

ngx_int_t
ngx_http_registry_store_tag_delete(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_str_t *tag)
{
    ngx_fd_t   fd;
    ngx_int_t  rc;
    ngx_str_t  dir, lock;

    if (ngx_http_registry_path_tag(op, &dir, name, tag) != NGX_OK
        || ngx_http_registry_path_repository_lock(op, &lock, name) != NGX_OK)
    {
        return NGX_ERROR;
    }

    fd = ngx_http_registry_file_lock(op, &lock);
    if (fd == NGX_INVALID_FILE) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_remove_tree(op, &dir);

    /* an acknowledged DELETE stays done after a power cut */

    if (rc == NGX_OK
        && (ngx_http_registry_path_tags(op, &dir, name) != NGX_OK
            || ngx_http_registry_file_sync_dir(op, &dir) == NGX_ERROR))
    {
        rc = NGX_ERROR;
    }

    ngx_http_registry_file_unlock(op, fd, &lock);

    if (rc == NGX_OK) {
        ngx_http_registry_links_changed(op);
    }

    return rc;
}


/* every tag whose current link names the manifest */

static ngx_int_t
ngx_http_registry_untag_all(ngx_http_registry_op_t *op, ngx_str_t *name,
    ngx_http_registry_digest_t *digest)
{
    ngx_int_t                   rc;
    ngx_str_t                   dir, link, *tag;
    ngx_uint_t                  i, removed;
    ngx_array_t                 tags;
    ngx_http_registry_digest_t  current;

    if (ngx_array_init(&tags, op->pool, 16, sizeof(ngx_str_t)) != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (ngx_http_registry_path_tags(op, &dir, name) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_list(op, &dir, NGX_HTTP_REGISTRY_LIST_DIRS,
                                     &tags);
    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    tag = tags.elts;
    removed = 0;

    for (i = 0; i < tags.nelts; i++) {
        if (ngx_http_registry_path_tag_link(op, &link, name, &tag[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_file_read_link(op, &link, &current);

        if (rc != NGX_OK || !ngx_http_registry_digest_equal(&current, digest))
        {
            continue;
        }

        if (ngx_http_registry_path_tag(op, &dir, name, &tag[i]) != NGX_OK
            || ngx_http_registry_file_remove_tree(op, &dir) == NGX_ERROR)
        {
            return NGX_ERROR;
        }

        removed = 1;
    }

    /* the tags are gone for good before their revision goes */

    if (removed
        && (ngx_http_registry_path_tags(op, &dir, name) != NGX_OK
            || ngx_http_registry_file_sync_dir(op, &dir) == NGX_ERROR))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}
