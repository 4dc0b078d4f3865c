
/*
 * ngx_http_registry_module: the pull-through cache's store operations.
 *
 * A mirrored repository is an ordinary repository of the store (so that
 * registry:2 serves it too): its manifests are revisions, its tags tags,
 * its blobs blobs with layer links.  What the cache adds: when a tag was
 * last checked upstream is its current link's mtime (written by a fetch,
 * refreshed by a revalidation), and a fetched blob arrives as a temporary
 * file that is published by rename once its bytes hash to its digest,
 * and which the clients following that fetch read as it grows.
 */


#include "ngx_http_registry_store_mirror.h"


/* the time the tag was last checked upstream; NGX_DECLINED: no such tag */

ngx_int_t
ngx_http_registry_store_tag_checked(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_str_t *tag, time_t *when)
{
    ngx_int_t        rc;
    ngx_str_t        link;
    ngx_file_info_t  fi;

    if (ngx_http_registry_path_tag_link(op, &link, name, tag) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_stat(op, &link, &fi);
    if (rc != NGX_OK) {
        return rc;
    }

    *when = ngx_file_mtime(&fi);

    return NGX_OK;
}


/* the tag was found current upstream just now */

ngx_int_t
ngx_http_registry_store_tag_recheck(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_str_t *tag)
{
    ngx_str_t  link;

    if (ngx_http_registry_path_tag_link(op, &link, name, tag) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_registry_file_retime(op, &link);
}


/*
 * A cached manifest was pulled: its revision link's mtime, what eviction
 * takes for its last pull, is now.  NGX_DECLINED: evicted meanwhile.
 */

ngx_int_t
ngx_http_registry_store_manifest_pulled(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *digest)
{
    ngx_str_t  link;

    if (ngx_http_registry_path_revision_link(op, &link, name, digest)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_registry_file_retime(op, &link);
}


/*
 * A cached blob was pulled: its layer link's mtime, what eviction takes
 * for the last pull of a blob no cached manifest references, is now.
 * NGX_DECLINED: evicted meanwhile.
 */

ngx_int_t
ngx_http_registry_store_blob_pulled(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *digest)
{
    ngx_str_t  link;

    if (ngx_http_registry_path_layer_link(op, &link, name, digest)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_registry_file_retime(op, &link);
}


/*
 * A blob the store holds already (another repository's, a manifest's) is
 * linked into the repository instead of fetched.  NGX_DECLINED: it is
 * not in the store.
 */

ngx_int_t
ngx_http_registry_store_blob_adopt(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *digest)
{
    ngx_int_t  rc;

    rc = ngx_http_registry_store_blob_exists(op, digest);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_registry_store_blob_link(op, name, digest);
}


/*
 * A blob arriving from an upstream: a new temporary file of the store,
 * which ngx_http_registry_store_blob_publish() renames into place once
 * its bytes hashed to the digest, or ngx_http_registry_store_blob_discard()
 * removes.
 */

ngx_int_t
ngx_http_registry_store_blob_incoming(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *temp)
{
    return ngx_http_registry_file_temp(op, temp);
}


/* its next bytes, at offset: to the page cache, publish makes them durable */

ngx_int_t
ngx_http_registry_store_blob_append(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *temp, u_char *data, size_t len, off_t offset)
{
    return ngx_http_registry_file_write_all(op, temp, data, len, offset);
}


/*
 * A fetched blob, whose bytes were checked against its digest on the way
 * in: made durable, renamed into the store (a concurrent fetch of the
 * same bytes renamed over it is harmless), and linked.
 */

ngx_int_t
ngx_http_registry_store_blob_publish(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_file_t *temp,
    ngx_http_registry_digest_t *digest)
{
    ngx_str_t  path;

    if (ngx_http_registry_file_sync(op, temp) != NGX_OK
        || ngx_http_registry_file_close(op, temp) != NGX_OK
        || ngx_http_registry_path_blob(op, &path, digest) != NGX_OK
        || ngx_http_registry_file_publish(op, &temp->path, &path, 1) != NGX_OK)
    {
        return NGX_ERROR;
    }

    temp->path.len = 0;         /* published: nothing to clean up */

    return ngx_http_registry_store_blob_link(op, name, digest);
}


/*
 * One never published (a digest that did not match, a fetch cut short,
 * a client gone): closed and removed; nothing of it was ever visible.
 * Published already: nothing to do.
 */

void
ngx_http_registry_store_blob_discard(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *temp)
{
    (void) ngx_http_registry_file_close(op, temp);

    if (temp->path.len) {
        (void) ngx_http_registry_file_unlink(op, &temp->path, 0);
        temp->path.len = 0;
    }
}


/*
 * The temporary file another request's fetch is writing (the id its
 * path has, ngx_http_registry_path_temp_id()), opened to read as it
 * grows: the descriptor keeps the bytes readable after that fetch renames
 * or removes the name.  NGX_DECLINED: the name is gone already.  A
 * lookup in one directory, as open_file_cache's: event loop.
 */

ngx_int_t
ngx_http_registry_store_blob_follow(ngx_http_registry_op_t *op,
    ngx_str_t *id, ngx_http_registry_file_t *file)
{
    ngx_err_t  err;

    if (ngx_http_registry_path_temp(op, &file->path, id) != NGX_OK) {
        return NGX_ERROR;
    }

    file->fd = ngx_http_registry_file_open(op, &file->path, O_RDONLY, 0);

    if (file->fd != NGX_INVALID_FILE) {
        return NGX_OK;
    }

    err = ngx_errno;

    if (err == NGX_ENOENT) {
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_CRIT, op->log, err,
                  ngx_open_file_n " \"%V\" failed", &file->path);

    return ngx_http_registry_op_syserr(op, err);
}


/*
 * A followed fetch is over: whether the store's blob is the very file
 * the follower reads (publishing renames the temporary file, whose bytes
 * hashed to the digest), and if so the follower's repository links it.
 * NGX_DECLINED: nothing was published, or another fetch's file was.
 */

ngx_int_t
ngx_http_registry_store_blob_followed(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_file_t *file,
    ngx_http_registry_digest_t *digest)
{
    ngx_int_t        rc;
    ngx_err_t        err;
    ngx_str_t        path;
    ngx_file_info_t  blob, read;

    if (ngx_http_registry_path_blob(op, &path, digest) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_stat(op, &path, &blob);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_fd_info(file->fd, &read) == NGX_FILE_ERROR) {
        err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_fd_info_n " \"%V\" failed", &file->path);
        return ngx_http_registry_op_syserr(op, err);
    }

    if (blob.st_dev != read.st_dev || blob.st_ino != read.st_ino) {
        return NGX_DECLINED;
    }

    return ngx_http_registry_store_blob_link(op, name, digest);
}


/* the bytes the followed fetch has written so far */

ngx_int_t
ngx_http_registry_store_blob_grown(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *file, off_t *size)
{
    ngx_err_t        err;
    ngx_file_info_t  fi;

    if (ngx_fd_info(file->fd, &fi) == NGX_FILE_ERROR) {
        err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_fd_info_n " \"%V\" failed", &file->path);
        return ngx_http_registry_op_syserr(op, err);
    }

    *size = ngx_file_size(&fi);

    return NGX_OK;
}


/*
 * len bytes of the followed file at offset, to hash what is sent (the
 * bytes of another host's file, whose writes this host's page cache may
 * see late or out of order on a network file system).  A short read is
 * an error: the size said they were there.
 */

ngx_int_t
ngx_http_registry_store_blob_read(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *file, u_char *buf, size_t len, off_t offset)
{
    ssize_t    n;
    ngx_err_t  err;

    while (len) {
        n = pread(file->fd, buf, len, offset);

        if (n > 0) {
            buf += n;
            len -= n;
            offset += n;
            continue;
        }

        err = (n == 0) ? 0 : ngx_errno;

        if (err == NGX_EINTR) {
            continue;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      "pread() \"%V\" failed or ended early", &file->path);

        return ngx_http_registry_op_syserr(op, err ? err : EIO);
    }

    return NGX_OK;
}


/* the follower is done with the file */

void
ngx_http_registry_store_blob_unfollow(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *file)
{
    (void) ngx_http_registry_file_close(op, file);
}
