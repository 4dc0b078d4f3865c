
/*
 * ngx_http_registry_module: lease files, the jobs' (store_jobs.c) and a
 * mirrored blob fetch's (store_flight.c): one holder at a time among the
 * nginx hosts sharing a store.
 *
 * A lease is a small JSON record (host, pid, an id, what its kind adds)
 * created with O_EXCL; its holder keeps its mtime fresh and removes it
 * when done.  One left behind is stale by the rule of lease_stale(), and
 * taken over by lease_file_steal(): renamed aside, removed only if it is
 * still the stale file that was read (a rival may have taken it over and
 * made a fresh one meanwhile, which is then put back, never replacing
 * another), then created anew by the caller.
 *
 * Every function here runs in a thread pool task.
 */


#include "ngx_http_registry_store.h"

#include <jansson.h>


static ngx_uint_t ngx_http_registry_lease_file_same(ngx_http_registry_op_t *op,
    ngx_fd_t dir, char *name, ngx_file_info_t *stale, ngx_str_t *stale_id);


/* NGX_DECLINED: there is a lease already */

ngx_int_t
ngx_http_registry_lease_file_create(ngx_http_registry_op_t *op, ngx_fd_t dir,
    char *name, json_t *doc)
{
    ngx_fd_t   fd;
    ngx_err_t  err;
    ngx_int_t  rc;

    fd = openat(dir, name, O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC,
                NGX_FILE_DEFAULT_ACCESS);

    if (fd == -1) {
        err = ngx_errno;

        if (err == NGX_EEXIST) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      "creating the lease \"%s\" failed", name);
        return ngx_http_registry_op_syserr(op, err);
    }

    rc = ngx_http_registry_lease_file_write(op, fd, doc);

    (void) close(fd);

    if (rc != NGX_OK) {
        (void) unlinkat(dir, name, 0);
    }

    return rc;
}


/* the record, compact JSON, over what the file held */

ngx_int_t
ngx_http_registry_lease_file_write(ngx_http_registry_op_t *op, ngx_fd_t fd,
    json_t *doc)
{
    char      *text;
    size_t     len;
    ssize_t    n;
    ngx_err_t  err;

    text = (doc == NULL) ? NULL : json_dumps(doc, JSON_COMPACT);

    if (text == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    len = ngx_strlen(text);

    n = pwrite(fd, text, len, 0);
    err = (n == -1) ? ngx_errno : NGX_ENOSPC;

    free(text);

    if (n == (ssize_t) len) {
        if (ftruncate(fd, len) == 0) {
            return NGX_OK;
        }

        err = ngx_errno;
    }

    ngx_log_error(NGX_LOG_CRIT, op->log, err, "writing a lease failed");

    return ngx_http_registry_op_syserr(op, err);
}


/*
 * A lease file's bytes (the jobs', or a blob fetch's: store_flight.c),
 * at most size of them into buf, *n how many, *fi its information.
 * NGX_DECLINED: no such file, or one replaced or removed by another host
 * meanwhile (ESTALE, see store_files.c), as good as gone: the caller
 * looks again.
 */

ngx_int_t
ngx_http_registry_lease_file_read(ngx_http_registry_op_t *op, ngx_fd_t dir,
    char *name, u_char *buf, size_t size, size_t *n, ngx_file_info_t *fi)
{
    ssize_t    got;
    ngx_fd_t   fd;
    ngx_err_t  err;

    *n = 0;

    fd = openat(dir, name, O_RDONLY|O_NOFOLLOW|O_CLOEXEC);

    if (fd == -1) {
        err = ngx_errno;

        if (err == NGX_ENOENT || err == ESTALE) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      "opening the lease \"%s\" failed", name);
        return ngx_http_registry_op_syserr(op, err);
    }

    if (ngx_fd_info(fd, fi) == NGX_FILE_ERROR) {
        err = ngx_errno;
        (void) close(fd);

        if (err == ESTALE) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_fd_info_n " of the lease \"%s\" failed", name);
        return ngx_http_registry_op_syserr(op, err);
    }

    got = read(fd, buf, size);

    (void) close(fd);

    *n = (got > 0) ? (size_t) got : 0;

    return NGX_OK;
}


/*
 * The lease rule, for the jobs' lease and a blob fetch's: untouched for
 * stale seconds, or of this host with a pid no process has.
 */

ngx_uint_t
ngx_http_registry_lease_stale(ngx_file_info_t *fi, time_t stale,
    ngx_str_t *holder, ngx_pid_t pid, ngx_str_t *host)
{
    if (ngx_time() - ngx_file_mtime(fi) > stale) {
        return 1;
    }

    return pid > 0
           && holder->len == host->len
           && ngx_strncmp(holder->data, host->data, host->len) == 0
           && kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH;
}


/*
 * Moves the stale lease "name" aside (to "aside", a name of the same
 * directory no one else uses); NGX_OK: it was that one, and it is gone.
 * NGX_BUSY: a rival's fresh lease was moved, and is put back (unless yet
 * another one is in place: then that one stays).
 */

ngx_int_t
ngx_http_registry_lease_file_steal(ngx_http_registry_op_t *op, ngx_fd_t dir,
    char *name, char *aside, ngx_file_info_t *stale, ngx_str_t *stale_id)
{
    ngx_err_t  err;

    if (renameat(dir, name, dir, aside) == -1) {
        err = ngx_errno;

        if (err == NGX_ENOENT) {
            return NGX_OK;                  /* taken over by a rival */
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      "renaming the stale lease \"%s\" failed", name);
        return ngx_http_registry_op_syserr(op, err);
    }

    if (ngx_http_registry_lease_file_same(op, dir, aside, stale, stale_id)) {
        (void) unlinkat(dir, aside, 0);
        return NGX_OK;
    }

    if (renameat2(dir, aside, dir, name, RENAME_NOREPLACE) == -1) {
        (void) unlinkat(dir, aside, 0);
    }

    return NGX_BUSY;
}


/*
 * Whether the file is the stale lease that was read.  The inode alone is
 * not enough (a rival's new lease may get the number of the stale one it
 * removed), nor is an mtime in seconds (a lease found stale because its
 * pid is dead may be a second old): the mtime to the nanosecond and the
 * holder's id too.
 */

static ngx_uint_t
ngx_http_registry_lease_file_same(ngx_http_registry_op_t *op, ngx_fd_t dir,
    char *name, ngx_file_info_t *stale, ngx_str_t *stale_id)
{
    size_t           n;
    json_t          *doc, *id;
    ngx_uint_t       same;
    ngx_file_info_t  fi;
    u_char           buf[NGX_HTTP_REGISTRY_LEASE_MAX];

    if (ngx_http_registry_lease_file_read(op, dir, name, buf, sizeof(buf),
                                          &n, &fi)
        != NGX_OK
        || fi.st_ino != stale->st_ino || fi.st_dev != stale->st_dev
        || fi.st_mtim.tv_sec != stale->st_mtim.tv_sec
        || fi.st_mtim.tv_nsec != stale->st_mtim.tv_nsec)
    {
        return 0;
    }

    /* a lease that could not be parsed had an empty id */

    doc = json_loadb((char *) buf, n, 0, NULL);
    id = json_is_object(doc) ? json_object_get(doc, "id") : NULL;

    if (json_is_string(id)) {
        same = json_string_length(id) == stale_id->len
               && ngx_strncmp(json_string_value(id), stale_id->data,
                              stale_id->len) == 0;

    } else {
        same = (stale_id->len == 0);
    }

    json_decref(doc);

    return same;
}
