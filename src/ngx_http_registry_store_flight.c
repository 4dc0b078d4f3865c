
/*
 * ngx_http_registry_module: the lease of a mirrored blob's fetch, across
 * the nginx hosts sharing a store.
 *
 * Within one nginx a table in shared memory makes a blob's concurrent
 * misses one upstream fetch (mirror.c).  Across hosts the table's leader
 * also holds _ngx_flights/<alg>/<hex>, created with O_EXCL: a JSON record
 * of its host, pid and a random id of the fetch, and once the upstream
 * has answered, the temporary file's id and the blob's length (so that
 * a follower on another host may read the file as it grows, the store's
 * _ngx_tmp being shared).  Its owner sets its mtime every
 * NGX_HTTP_REGISTRY_FLIGHT_REFRESH seconds while the fetch runs and
 * removes it once the blob is published (after the rename: a follower
 * that finds no lease finds the blob) or the fetch has failed.
 *
 * The jobs' lease rule (store_jobs.c) for one left behind: untouched for
 * NGX_HTTP_REGISTRY_FLIGHT_STALE seconds (a dead host), or of this host
 * with a pid no process has (a killed worker), it is stale, and taken
 * over as the jobs' one is: renamed aside, removed only if it is still
 * the stale file that was read (else put back: a rival took it over
 * first), created anew.  A record that cannot be parsed (being written)
 * counts by its mtime alone.
 *
 * Every function here runs in a thread pool task.
 */


#include "ngx_http_registry_store_mirror.h"

#include <jansson.h>


static ngx_fd_t ngx_http_registry_flight_dir(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest, ngx_uint_t create);
static char *ngx_http_registry_flight_base(ngx_str_t *path);
static ngx_int_t ngx_http_registry_flight_create(ngx_http_registry_op_t *op,
    ngx_fd_t dir, char *name, ngx_http_registry_flight_lease_t *lease);
static json_t *ngx_http_registry_flight_record(
    ngx_http_registry_flight_lease_t *lease);
static ngx_int_t ngx_http_registry_flight_write(ngx_http_registry_op_t *op,
    ngx_fd_t fd, ngx_http_registry_flight_lease_t *lease);
static ngx_int_t ngx_http_registry_flight_read(ngx_http_registry_op_t *op,
    ngx_fd_t dir, char *name, ngx_http_registry_flight_lease_t *lease,
    ngx_file_info_t *fi);
static ngx_int_t ngx_http_registry_flight_parse(ngx_http_registry_op_t *op,
    u_char *data, size_t len, ngx_http_registry_flight_lease_t *lease);
static ngx_uint_t ngx_http_registry_flight_stale(
    ngx_http_registry_flight_lease_t *lease, ngx_file_info_t *fi,
    ngx_str_t *host);
static ngx_int_t ngx_http_registry_flight_steal(ngx_http_registry_op_t *op,
    ngx_fd_t dir, char *name, ngx_http_registry_digest_t *digest,
    ngx_http_registry_flight_lease_t *stale, ngx_file_info_t *fi);
static ngx_int_t ngx_http_registry_flight_mine(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest, ngx_str_t *id, ngx_fd_t *dir,
    char **name);


/*
 * NGX_OK: the lease is ours, and the blob not in the store.  NGX_BUSY: a
 * live lease of another fetch, *holder says whose.  NGX_DONE: the blob
 * is in the store (published just before its lease went), nothing taken.
 */

ngx_int_t
ngx_http_registry_store_flight_take(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest,
    ngx_http_registry_flight_lease_t *ours,
    ngx_http_registry_flight_lease_t *holder)
{
    char             *name;
    ngx_fd_t          dir;
    ngx_int_t         rc;
    ngx_str_t         path;
    ngx_uint_t        try;
    ngx_file_info_t   fi;

    if (ngx_http_registry_path_flight(op, &path, 0, digest, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    name = ngx_http_registry_flight_base(&path);

    dir = ngx_http_registry_flight_dir(op, digest, 1);
    if (dir == NGX_INVALID_FILE) {
        return NGX_ERROR;
    }

    /* a stale lease is taken over, and a rival may do so at once too */

    for (try = 0; try < 3; try++) {

        rc = ngx_http_registry_flight_create(op, dir, name, ours);

        if (rc != NGX_DECLINED) {
            break;
        }

        rc = ngx_http_registry_flight_read(op, dir, name, holder, &fi);

        if (rc == NGX_DECLINED) {
            continue;                           /* gone meanwhile */
        }

        if (rc != NGX_OK) {
            break;
        }

        if (!ngx_http_registry_flight_stale(holder, &fi, &ours->host)) {
            rc = NGX_BUSY;
            break;
        }

        rc = ngx_http_registry_flight_steal(op, dir, name, digest, holder,
                                            &fi);

        if (rc == NGX_ERROR) {
            break;
        }

        if (rc == NGX_OK) {
            ngx_log_error(NGX_LOG_WARN, op->log, 0,
                          "registry upstream: the lease of the fetch of "
                          "blob %V (host \"%V\", pid %P) is stale, taken "
                          "over", &digest->text, &holder->host, holder->pid);
        }

        /* after the last try, never the stale fetch's file to follow */

        holder->temp.len = 0;
        rc = NGX_BUSY;
    }

    /* rivals took it and dropped it three times: it is looked at later */

    if (rc == NGX_DECLINED) {
        rc = NGX_BUSY;
    }

    /*
     * Ours: the lease before was dropped, maybe once its blob was
     * published; then there is nothing to fetch.
     */

    if (rc == NGX_OK) {
        rc = ngx_http_registry_store_blob_exists(op, digest);

        if (rc == NGX_OK || rc == NGX_ERROR) {
            (void) unlinkat(dir, name, 0);
            rc = (rc == NGX_OK) ? NGX_DONE : NGX_ERROR;

        } else {
            rc = NGX_OK;
        }
    }

    (void) close(dir);

    return rc;
}


/*
 * What a request on another host than the lease's holder finds: NGX_BUSY,
 * a live lease (*holder); NGX_DONE, none, and the blob is in the store;
 * NGX_DECLINED, neither (the fetch failed, or its host died): it may
 * fetch the blob.  The lease first: its holder drops it only after the
 * publish, so once it is gone the blob is there if it ever will be.
 */

ngx_int_t
ngx_http_registry_store_flight_look(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest, ngx_str_t *host,
    ngx_http_registry_flight_lease_t *holder)
{
    char             *name;
    ngx_fd_t          dir;
    ngx_int_t         rc;
    ngx_str_t         path;
    ngx_file_info_t   fi;

    if (ngx_http_registry_path_flight(op, &path, 0, digest, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    name = ngx_http_registry_flight_base(&path);

    dir = ngx_http_registry_flight_dir(op, digest, 0);

    if (dir != NGX_INVALID_FILE) {
        rc = ngx_http_registry_flight_read(op, dir, name, holder, &fi);

        (void) close(dir);

        if (rc == NGX_OK && !ngx_http_registry_flight_stale(holder, &fi, host))
        {
            return NGX_BUSY;
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

    } else if (op->fault.errnum != NGX_ENOENT) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_store_blob_exists(op, digest);

    return (rc == NGX_OK) ? NGX_DONE : rc;
}


/*
 * While the fetch runs: the lease's mtime is now, and with rewrite its
 * record is ours as it stands (the temporary file named).  NGX_BUSY: the
 * lease is another fetch's (ours was taken over as stale); NGX_DECLINED:
 * there is none (maybe only for a moment: a rival that found ours stale
 * too moves it aside, then back).
 */

ngx_int_t
ngx_http_registry_store_flight_refresh(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest,
    ngx_http_registry_flight_lease_t *ours, ngx_uint_t rewrite)
{
    char       *name;
    ngx_fd_t    dir, fd;
    ngx_int_t   rc;

    rc = ngx_http_registry_flight_mine(op, digest, &ours->id, &dir, &name);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!rewrite) {
        if (utimensat(dir, name, NULL, AT_SYMLINK_NOFOLLOW) == -1) {
            ngx_log_error(NGX_LOG_CRIT, op->log, ngx_errno,
                          "refreshing the lease of blob %V failed",
                          &digest->text);
            rc = ngx_http_registry_op_syserr(op, ngx_errno);
        }

        (void) close(dir);
        return rc;
    }

    fd = openat(dir, name, O_WRONLY|O_NOFOLLOW|O_CLOEXEC);

    if (fd == -1) {
        ngx_log_error(NGX_LOG_CRIT, op->log, ngx_errno,
                      "opening the lease of blob %V failed", &digest->text);
        rc = ngx_http_registry_op_syserr(op, ngx_errno);

    } else {
        rc = ngx_http_registry_flight_write(op, fd, ours);
        (void) close(fd);
    }

    (void) close(dir);

    return rc;
}


/* the fetch is over: its lease goes, if it is still its own */

ngx_int_t
ngx_http_registry_store_flight_drop(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest, ngx_str_t *id)
{
    char       *name;
    ngx_fd_t    dir;
    ngx_int_t   rc;

    rc = ngx_http_registry_flight_mine(op, digest, id, &dir, &name);
    if (rc != NGX_OK) {
        return rc;
    }

    if (unlinkat(dir, name, 0) == -1 && ngx_errno != NGX_ENOENT) {
        ngx_log_error(NGX_LOG_CRIT, op->log, ngx_errno,
                      "removing the lease of blob %V failed", &digest->text);
        rc = ngx_http_registry_op_syserr(op, ngx_errno);
    }

    (void) close(dir);

    return rc;
}


/* _ngx_flights/<alg>, open; NGX_INVALID_FILE with op's fault set */

static ngx_fd_t
ngx_http_registry_flight_dir(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest, ngx_uint_t create)
{
    ngx_fd_t   fd;
    ngx_err_t  err;
    ngx_str_t  dir;

    if (ngx_http_registry_path_flight(op, &dir, digest->alg, NULL, NULL)
        != NGX_OK)
    {
        return NGX_INVALID_FILE;
    }

    if (create && ngx_http_registry_file_mkdirs(op, &dir, 0) != NGX_OK) {
        return NGX_INVALID_FILE;
    }

    fd = ngx_http_registry_file_open(op, &dir, O_RDONLY|O_DIRECTORY, 0);

    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;

        if (err != NGX_ENOENT) {
            ngx_log_error(NGX_LOG_CRIT, op->log, err,
                          ngx_open_file_n " \"%V\" failed", &dir);
        }

        (void) ngx_http_registry_op_syserr(op, err);
    }

    return fd;
}


/* the name within its directory (the path is NUL-terminated) */

static char *
ngx_http_registry_flight_base(ngx_str_t *path)
{
    u_char  *p;

    for (p = path->data + path->len; p > path->data; p--) {
        if (p[-1] == '/') {
            break;
        }
    }

    return (char *) p;
}


/* NGX_DECLINED: there is a lease already */

static ngx_int_t
ngx_http_registry_flight_create(ngx_http_registry_op_t *op, ngx_fd_t dir,
    char *name, ngx_http_registry_flight_lease_t *lease)
{
    json_t     *doc;
    ngx_int_t   rc;

    doc = ngx_http_registry_flight_record(lease);

    rc = ngx_http_registry_lease_file_create(op, dir, name, doc);

    json_decref(doc);

    return rc;
}


/* the record, over what the file held */

static ngx_int_t
ngx_http_registry_flight_write(ngx_http_registry_op_t *op, ngx_fd_t fd,
    ngx_http_registry_flight_lease_t *lease)
{
    json_t     *doc;
    ngx_int_t   rc;

    doc = ngx_http_registry_flight_record(lease);

    rc = ngx_http_registry_lease_file_write(op, fd, doc);

    json_decref(doc);

    return rc;
}


/* NULL: no memory (lease_file_write() says so) */

static json_t *
ngx_http_registry_flight_record(ngx_http_registry_flight_lease_t *lease)
{
    /* jansson refuses a NULL string, even of length 0 */

    return json_pack("{s:s%,s:I,s:s%,s:s%,s:I}",
                     "host", lease->host.data, lease->host.len,
                     "pid", (json_int_t) lease->pid,
                     "id", lease->id.data, lease->id.len,
                     "temp", lease->temp.len ? (char *) lease->temp.data : "",
                     lease->temp.len,
                     "length", (json_int_t) lease->length);
}


/*
 * NGX_DECLINED: no such file.  A lease that cannot be parsed (being
 * written, or damaged) is read with empty fields: only its mtime counts.
 */

static ngx_int_t
ngx_http_registry_flight_read(ngx_http_registry_op_t *op, ngx_fd_t dir,
    char *name, ngx_http_registry_flight_lease_t *lease, ngx_file_info_t *fi)
{
    size_t     n;
    ngx_int_t  rc;
    u_char     buf[NGX_HTTP_REGISTRY_LEASE_MAX];

    ngx_memzero(lease, sizeof(ngx_http_registry_flight_lease_t));
    lease->length = -1;

    rc = ngx_http_registry_lease_file_read(op, dir, name, buf, sizeof(buf),
                                           &n, fi);

    if (rc == NGX_OK && n > 0) {
        rc = ngx_http_registry_flight_parse(op, buf, n, lease);
    }

    return rc;
}


static ngx_int_t
ngx_http_registry_flight_parse(ngx_http_registry_op_t *op, u_char *data,
    size_t len, ngx_http_registry_flight_lease_t *lease)
{
    json_t     *doc, *pid, *length;
    ngx_int_t   rc;

    doc = json_loadb((char *) data, len, 0, NULL);

    if (!json_is_object(doc)) {
        json_decref(doc);
        return NGX_OK;
    }

    pid = json_object_get(doc, "pid");
    length = json_object_get(doc, "length");

    lease->pid = json_is_integer(pid) ? (ngx_pid_t) json_integer_value(pid)
                                      : 0;
    lease->length = json_is_integer(length)
                    ? (off_t) json_integer_value(length) : -1;

    rc = NGX_OK;

    if (ngx_http_registry_json_string(op, doc, "host", &lease->host)
        != NGX_OK
        || ngx_http_registry_json_string(op, doc, "id", &lease->id)
           != NGX_OK
        || ngx_http_registry_json_string(op, doc, "temp", &lease->temp)
           != NGX_OK)
    {
        rc = ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    json_decref(doc);

    return rc;
}


/* the rule (see the top of the file) */

static ngx_uint_t
ngx_http_registry_flight_stale(ngx_http_registry_flight_lease_t *lease,
    ngx_file_info_t *fi, ngx_str_t *host)
{
    return ngx_http_registry_lease_stale(fi, NGX_HTTP_REGISTRY_FLIGHT_STALE,
                                         &lease->host, lease->pid, host);
}


/*
 * Moves the stale lease aside (lease_file_steal()); NGX_OK: it was that
 * one, and it is gone.  NGX_BUSY: a rival's fresh lease holds it.
 */

static ngx_int_t
ngx_http_registry_flight_steal(ngx_http_registry_op_t *op, ngx_fd_t dir,
    char *name, ngx_http_registry_digest_t *digest,
    ngx_http_registry_flight_lease_t *stale, ngx_file_info_t *stale_fi)
{
    ngx_str_t  path, suffix;
    u_char     hex[16];

    suffix.data = hex;
    suffix.len = sizeof(hex);

    if (ngx_http_registry_random_hex(hex, sizeof(hex) / 2) != NGX_OK
        || ngx_http_registry_path_flight(op, &path, 0, digest, &suffix)
           != NGX_OK)
    {
        return ngx_http_registry_op_fail(op, NGX_HTTP_REGISTRY_INTERNAL,
                                         "no name for the stale lease");
    }

    return ngx_http_registry_lease_file_steal(op, dir, name,
                                          ngx_http_registry_flight_base(&path),
                                          stale_fi, &stale->id);
}


/*
 * NGX_OK: the lease is the fetch "id"'s, *dir is open; NGX_BUSY: another
 * fetch's; NGX_DECLINED: there is none.
 */

static ngx_int_t
ngx_http_registry_flight_mine(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest, ngx_str_t *id, ngx_fd_t *dir,
    char **name)
{
    ngx_int_t                         rc;
    ngx_str_t                         path;
    ngx_file_info_t                   fi;
    ngx_http_registry_flight_lease_t  lease;

    if (ngx_http_registry_path_flight(op, &path, 0, digest, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    *name = ngx_http_registry_flight_base(&path);

    *dir = ngx_http_registry_flight_dir(op, digest, 0);
    if (*dir == NGX_INVALID_FILE) {
        return (op->fault.errnum == NGX_ENOENT) ? NGX_DECLINED : NGX_ERROR;
    }

    rc = ngx_http_registry_flight_read(op, *dir, *name, &lease, &fi);

    if (rc == NGX_OK
        && (lease.id.len != id->len
            || ngx_strncmp(lease.id.data, id->data, id->len) != 0))
    {
        rc = NGX_BUSY;
    }

    if (rc != NGX_OK) {
        (void) close(*dir);
    }

    return rc;
}
