
/*
 * ngx_http_registry_module: blobs, the repository's view of the global
 * blob store (distribution's linkedblobstore.go).
 *
 * A blob's bytes are stored once, under blobs/, and a repository holds it
 * when it has the blob's layer link.  Finding a blob is a read of that
 * link through the link cache; linking, unlinking and mounting write or
 * remove the link, durably, and unlinking tells every worker's link cache.
 */


#include "ngx_http_registry_store.h"


/*
 * The blob's data file, as a full path for open_file_cache, if the
 * repository links it as a layer or, as a convenience distribution does
 * not offer, as a manifest revision.  NGX_DECLINED: it does not.  Event
 * loop only.
 */

ngx_int_t
ngx_http_registry_store_blob_find(ngx_http_registry_op_t *op, ngx_str_t *name,
    ngx_http_registry_digest_t *digest, ngx_str_t *data)
{
    ngx_int_t  rc;
    ngx_str_t  link;

    if (ngx_http_registry_path_layer_link(op, &link, name, digest) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_links_exist(op, &link);

    if (rc == NGX_DECLINED) {
        if (ngx_http_registry_path_revision_link(op, &link, name, digest)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_links_exist(op, &link);
    }

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_registry_path_blob_file(op, data, digest);
}


/* NGX_OK: the blob's bytes are in the store */

ngx_int_t
ngx_http_registry_store_blob_exists(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest)
{
    ngx_str_t  path;

    if (ngx_http_registry_path_blob(op, &path, digest) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_registry_file_exists(op, &path);
}


/*
 * The blob is referenced again (a layer link written, a mount, a manifest
 * naming it): its time is refreshed, so that garbage collection's grace
 * starts over (store_gc.c), and bytes it moved aside as a tombstone come
 * back.  NGX_DECLINED: the bytes are gone.
 */

ngx_int_t
ngx_http_registry_store_blob_refresh(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest)
{
    ngx_int_t  rc;
    ngx_str_t  path, tomb;

    if (ngx_http_registry_path_blob(op, &path, digest) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_retime(op, &path);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (ngx_http_registry_path_tombstone(op, &tomb, digest->alg, digest)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * declined: none, or another op brought it back first.  Durable: the
     * 201 of the push or manifest that refreshes it promises the bytes
     */

    rc = ngx_http_registry_file_move(op, &tomb, &path, 1);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    return ngx_http_registry_file_retime(op, &path);
}


/*
 * The repository's layer link, written if missing, its time and the
 * blob's refreshed.  NGX_DECLINED: the blob's bytes are gone.
 */

ngx_int_t
ngx_http_registry_store_blob_link(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *digest)
{
    ngx_int_t  rc, existed;
    ngx_str_t  link;

    rc = ngx_http_registry_store_blob_refresh(op, digest);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_registry_path_layer_link(op, &link, name, digest) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_retime(op, &link);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    existed = ngx_http_registry_store_is_repository(op, name);
    if (existed == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (ngx_http_registry_file_write_link(op, &link, digest) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_registry_store_created(op, name, existed == NGX_OK);

    return NGX_OK;
}


/*
 * Removes the repository's layer link; the bytes stay until garbage
 * collection.  NGX_DECLINED: the repository has no such layer.
 */

ngx_int_t
ngx_http_registry_store_blob_unlink(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *digest)
{
    ngx_int_t  rc;
    ngx_str_t  link;

    if (ngx_http_registry_path_layer_link(op, &link, name, digest) != NGX_OK) {
        return NGX_ERROR;
    }

    /* durable: an acknowledged DELETE stays done after a power cut */

    rc = ngx_http_registry_file_unlink(op, &link,
                                       NGX_HTTP_REGISTRY_UNLINK_PARENT
                                       |NGX_HTTP_REGISTRY_UNLINK_DURABLE);

    if (rc == NGX_OK) {
        ngx_http_registry_links_changed(op);
    }

    return rc;
}


/*
 * Links a blob another repository holds ("from"), or without "from" any
 * blob of the store, into the repository, without copying a byte.
 * NGX_DECLINED: it cannot be mounted (from does not link it, or its bytes
 * were collected).
 */

ngx_int_t
ngx_http_registry_store_blob_mount(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_str_t *from, ngx_http_registry_digest_t *digest)
{
    ngx_int_t  rc;
    ngx_str_t  link;

    if (from) {
        if (ngx_http_registry_path_layer_link(op, &link, from, digest)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_file_exists(op, &link);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return ngx_http_registry_store_blob_link(op, name, digest);
}
