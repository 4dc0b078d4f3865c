
/*
 * ngx_http_registry_module: the store's files.
 *
 * Every path is resolved beneath the store's root directory, opened once
 * per worker, and never through a symbolic link: openat2() with
 * RESOLVE_NO_SYMLINKS, or a walk of O_NOFOLLOW opens where the kernel has
 * no openat2().  A link found in the store is treated as absent and
 * logged, so a planted link can neither leak another repository's data
 * nor make a delete remove it, and a link loop cannot make a walk fail.
 *
 * Writes go to a temporary file under _ngx_tmp and are published with
 * rename(2), so no reader ever sees a half-written file; "durable" adds
 * the fsync() of the file and of each directory that gained a name.
 * Everything here may run in a thread: it touches only the op's pool and
 * log and the root's descriptor.
 */


#include "ngx_http_registry_store.h"

#include <dirent.h>
#include <sys/file.h>
#include <sys/syscall.h>

#if (NGX_LINUX) && defined(SYS_openat2)
#include <linux/openat2.h>
#define NGX_HTTP_REGISTRY_OPENAT2  1
#endif


#define NGX_HTTP_REGISTRY_WALK_DEPTH  128

/* lookups of a name another host keeps replacing, see file_stale() */
#define NGX_HTTP_REGISTRY_STALE_TRIES  8

/* how often a path is made again that another writer keeps removing */
#define NGX_HTTP_REGISTRY_RACE_TRIES  8


static int ngx_http_registry_openat(ngx_http_registry_store_t *st,
    u_char *path, int flags, mode_t mode);
static int ngx_http_registry_openat_in(int base, u_char *path, int flags,
    mode_t mode);
static int ngx_http_registry_openat_walk(int base, u_char *path, int flags,
    mode_t mode);
static ngx_int_t ngx_http_registry_read_link_at(ngx_http_registry_op_t *op,
    int base, ngx_str_t *dir, ngx_str_t *path,
    ngx_http_registry_digest_t *digest);
static void ngx_http_registry_file_error(ngx_http_registry_op_t *op,
    ngx_err_t err, const char *call, ngx_str_t *path);
static ngx_int_t ngx_http_registry_file_absent(ngx_http_registry_op_t *op,
    ngx_err_t err, ngx_str_t *path);
static ngx_uint_t ngx_http_registry_file_stale(ngx_http_registry_op_t *op,
    ngx_err_t err, ngx_uint_t *tries, ngx_str_t *path);
static ngx_int_t ngx_http_registry_file_link_fault(ngx_http_registry_op_t *op,
    ngx_str_t *path);
static ngx_int_t ngx_http_registry_parent(ngx_http_registry_op_t *op,
    ngx_str_t *path, ngx_fd_t *dir, u_char **base);
static ngx_fd_t ngx_http_registry_open_parent(ngx_http_registry_op_t *op,
    ngx_str_t *path, u_char **base);
static ngx_int_t ngx_http_registry_mkdirs(ngx_http_registry_op_t *op,
    ngx_str_t *dir, ngx_uint_t durable);
static ngx_int_t ngx_http_registry_create(ngx_http_registry_op_t *op,
    ngx_str_t *path, int flags, ngx_fd_t *fd);
static ngx_int_t ngx_http_registry_move(ngx_http_registry_op_t *op,
    ngx_str_t *from, ngx_str_t *to, ngx_uint_t durable);
static ngx_int_t ngx_http_registry_remove_at(ngx_http_registry_op_t *op,
    int at, const char *name, ngx_uint_t depth);
static ngx_int_t ngx_http_registry_read_entries(ngx_http_registry_op_t *op,
    int fd, ngx_str_t *path, ngx_str_t *sub, ngx_uint_t what,
    ngx_array_t *names, ngx_pool_t *pool);
static ngx_int_t ngx_http_registry_walk_dir(ngx_http_registry_op_t *op,
    int fd, ngx_str_t *path, ngx_str_t *sub, size_t size,
    ngx_http_registry_visit_pt visit, void *data, ngx_uint_t depth);
static ngx_int_t ngx_http_registry_entry_type(ngx_http_registry_op_t *op,
    int at, struct dirent64 *de);


/*
 * A full store is the client's business (ERR, 507), any other failure of
 * a call that should not fail the operator's (CRIT).
 */

static void
ngx_http_registry_file_error(ngx_http_registry_op_t *op, ngx_err_t err,
    const char *call, ngx_str_t *path)
{
    ngx_uint_t  level;

    level = (err == NGX_ENOSPC || err == EDQUOT) ? NGX_LOG_ERR : NGX_LOG_CRIT;

    ngx_log_error(level, op->log, err, "%s \"%V\" failed", call, path);
}


/* ---- resolving paths beneath the root ---- */

/*
 * The root's descriptor, in each worker before it serves: the store
 * directory is created if it is missing, as distribution does.
 */

ngx_int_t
ngx_http_registry_files_open_root(ngx_http_registry_store_t *st,
    ngx_log_t *log)
{
    u_char  *path;

    path = st->root.data;       /* NUL-terminated */

    st->root_fd = open((char *) path, O_RDONLY|O_DIRECTORY|O_CLOEXEC);

    if (st->root_fd == -1 && ngx_errno == NGX_ENOENT) {
        if (ngx_create_full_path(path, 0755) != 0
            || (mkdir((char *) path, 0755) == -1 && ngx_errno != NGX_EEXIST))
        {
            ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                          "registry: cannot create the store \"%s\"", path);
            return NGX_ERROR;
        }

        st->root_fd = open((char *) path, O_RDONLY|O_DIRECTORY|O_CLOEXEC);
    }

    if (st->root_fd == -1) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "registry: cannot open the store \"%s\"", path);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static int
ngx_http_registry_openat(ngx_http_registry_store_t *st, u_char *path,
    int flags, mode_t mode)
{
    return ngx_http_registry_openat_in(st->root_fd, path, flags, mode);
}


/* path beneath the directory open as base */

static int
ngx_http_registry_openat_in(int base, u_char *path, int flags, mode_t mode)
{
#if (NGX_HTTP_REGISTRY_OPENAT2)
    long             fd;
    struct open_how  how;

    /* a kernel without openat2() answers ENOSYS, and always will */
    static ngx_uint_t  no_openat2;

    if (!no_openat2) {
        ngx_memzero(&how, sizeof(struct open_how));
        how.flags = flags | O_NOFOLLOW | O_CLOEXEC;
        how.mode = (flags & O_CREAT) ? mode : 0;
        how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH;

        fd = syscall(SYS_openat2, base, path, &how, sizeof(how));

        if (fd != -1 || ngx_errno != NGX_ENOSYS) {
            return (int) fd;
        }

        no_openat2 = 1;
    }
#endif

    return ngx_http_registry_openat_walk(base, path, flags, mode);
}


/* one component at a time, none of them a symbolic link */

static int
ngx_http_registry_openat_walk(int base, u_char *path, int flags, mode_t mode)
{
    int           dirfd, fd;
    u_char       *p, *slash;
    ngx_err_t     err;
    struct stat   sb;
    u_char        buf[NGX_MAX_PATH];

    if (ngx_strlen(path) >= sizeof(buf)) {
        ngx_set_errno(NGX_ENAMETOOLONG);
        return -1;
    }

    (void) ngx_cpystrn(buf, path, sizeof(buf));

    dirfd = base;
    p = buf;

    for ( ;; ) {
        slash = (u_char *) ngx_strchr(p, '/');

        if (slash == NULL) {
            fd = openat(dirfd, (char *) p, flags | O_NOFOLLOW | O_CLOEXEC,
                        mode);
            break;
        }

        *slash = '\0';
        fd = openat(dirfd, (char *) p,
                    O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        /* a link on the way gives ENOTDIR here: ELOOP, as openat2() says */

        err = ngx_errno;

        if (fd == -1 && err == NGX_ENOTDIR
            && fstatat(dirfd, (char *) p, &sb, AT_SYMLINK_NOFOLLOW) == 0
            && S_ISLNK(sb.st_mode))
        {
            err = NGX_ELOOP;
        }

        if (dirfd != base) {
            (void) close(dirfd);
        }

        if (fd == -1) {
            ngx_set_errno(err);
            return -1;
        }

        dirfd = fd;
        p = slash + 1;
    }

    if (dirfd != base) {
        err = ngx_errno;
        (void) close(dirfd);
        ngx_set_errno(err);
    }

    return fd;
}


ngx_fd_t
ngx_http_registry_file_open(ngx_http_registry_op_t *op, ngx_str_t *path,
    int flags, mode_t mode)
{
    return ngx_http_registry_openat(op->store, path->data, flags, mode);
}


/*
 * Whether a failed open means "not there": no such file, or a symbolic
 * link on the way (ELOOP from O_NOFOLLOW or RESOLVE_NO_SYMLINKS), which
 * is logged and never followed.
 */

static ngx_int_t
ngx_http_registry_file_absent(ngx_http_registry_op_t *op, ngx_err_t err,
    ngx_str_t *path)
{
    if (err == NGX_ENOENT || err == NGX_ENOTDIR) {
        return 1;
    }

    if (err == NGX_ELOOP || err == EXDEV) {
        ngx_log_error(NGX_LOG_WARN, op->log, 0,
                      "registry: \"%V\" leads through a symbolic link, "
                      "which the store never follows", path);
        return 1;
    }

    return 0;
}


/*
 * Whether to open a file again after ESTALE.  On a shared file system
 * (NFS, GlusterFS, CephFS) a name may still lead to the file another host
 * has meanwhile replaced by a rename (a tag, an upload's state, a blob
 * published twice) or removed: the open, or the first fstat() or read()
 * after it, fails with ESTALE, and a new lookup of the name finds the new
 * file, or none.  Bounded, for a name replaced again and again.
 */

static ngx_uint_t
ngx_http_registry_file_stale(ngx_http_registry_op_t *op, ngx_err_t err,
    ngx_uint_t *tries, ngx_str_t *path)
{
    if (err != ESTALE || ++*tries >= NGX_HTTP_REGISTRY_STALE_TRIES) {
        return 0;
    }

    ngx_log_error(NGX_LOG_INFO, op->log, err,
                  "registry: \"%V\" went stale, looked up again", path);

    return 1;
}


/* NGX_DECLINED: absent (or reached through a symbolic link) */

ngx_int_t
ngx_http_registry_file_stat(ngx_http_registry_op_t *op, ngx_str_t *path,
    ngx_file_info_t *fi)
{
    ngx_fd_t    fd;
    ngx_err_t   err;
    ngx_uint_t  tries;

    tries = 0;

again:

    fd = ngx_http_registry_openat(op->store, path->data, O_PATH, 0);

    if (fd == -1) {
        err = ngx_errno;

        if (ngx_http_registry_file_stale(op, err, &tries, path)) {
            goto again;
        }

        if (ngx_http_registry_file_absent(op, err, path)) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      "open(\"%V\", O_PATH) failed", path);
        return ngx_http_registry_op_syserr(op, err);
    }

    if (ngx_fd_info(fd, fi) == NGX_FILE_ERROR) {
        err = ngx_errno;
        (void) close(fd);

        if (ngx_http_registry_file_stale(op, err, &tries, path)) {
            goto again;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_fd_info_n " \"%V\" failed", path);
        return ngx_http_registry_op_syserr(op, err);
    }

    (void) close(fd);

    if (S_ISLNK(fi->st_mode)) {
        return ngx_http_registry_file_absent(op, NGX_ELOOP, path)
               ? NGX_DECLINED : NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_registry_file_exists(ngx_http_registry_op_t *op, ngx_str_t *path)
{
    ngx_file_info_t  fi;

    return ngx_http_registry_file_stat(op, path, &fi);
}


/* ---- reading ---- */

/*
 * A whole small regular file into the op's pool.  NGX_DECLINED: it does
 * not exist; NGX_ERROR: unreadable, not a file, or larger than max.
 */

ngx_int_t
ngx_http_registry_file_read(ngx_http_registry_op_t *op, ngx_str_t *path,
    size_t max, ngx_str_t *content)
{
    off_t            size;
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_err_t        err;
    ngx_int_t        rc;
    ngx_uint_t       tries;
    ngx_file_info_t  fi;

    tries = 0;

again:

    fd = ngx_http_registry_openat(op->store, path->data, O_RDONLY, 0);

    if (fd == -1) {
        err = ngx_errno;

        if (ngx_http_registry_file_stale(op, err, &tries, path)) {
            goto again;
        }

        if (ngx_http_registry_file_absent(op, err, path)) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_open_file_n " \"%V\" failed", path);
        return ngx_http_registry_op_syserr(op, err);
    }

    rc = ngx_http_registry_op_fail(op, NGX_HTTP_REGISTRY_INTERNAL, NULL);

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        err = ngx_errno;

        if (ngx_http_registry_file_stale(op, err, &tries, path)) {
            (void) close(fd);
            goto again;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_fd_info_n " \"%V\" failed", path);
        goto done;
    }

    size = ngx_file_size(&fi);

    if (!ngx_is_file(&fi) || size > (off_t) max) {
        ngx_log_error(NGX_LOG_ERR, op->log, 0,
                      "\"%V\" is not a file of at most %uz bytes", path, max);
        goto done;
    }

    content->data = ngx_pnalloc(op->pool, size + 1);
    if (content->data == NULL) {
        goto done;
    }

    n = pread(fd, content->data, size + 1, 0);

    if (n == -1) {
        err = ngx_errno;

        if (ngx_http_registry_file_stale(op, err, &tries, path)) {
            (void) close(fd);
            goto again;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      "pread() \"%V\" failed", path);
        rc = ngx_http_registry_op_syserr(op, err);
        goto done;
    }

    if (n != size) {
        ngx_log_error(NGX_LOG_CRIT, op->log, 0,
                      "\"%V\" changed while being read", path);
        goto done;
    }

    content->len = n;
    rc = NGX_OK;

done:

    (void) close(fd);

    return rc;
}


/* a link: "<alg>:<hex>"; NGX_DECLINED: no such link */

ngx_int_t
ngx_http_registry_file_read_link(ngx_http_registry_op_t *op, ngx_str_t *path,
    ngx_http_registry_digest_t *digest)
{
    return ngx_http_registry_read_link_at(op, op->store->root_fd, NULL, path,
                                          digest);
}


/* path beneath base, which is dir (NULL: the root), for the log */

static ngx_int_t
ngx_http_registry_read_link_at(ngx_http_registry_op_t *op, int base,
    ngx_str_t *dir, ngx_str_t *path, ngx_http_registry_digest_t *digest)
{
    ssize_t     n;
    ngx_fd_t    fd;
    ngx_err_t   err;
    ngx_str_t   none = ngx_null_string;
    ngx_uint_t  tries;
    u_char      buf[NGX_HTTP_REGISTRY_DIGEST_MAX_LEN + 1];

    if (dir == NULL) {
        dir = &none;
    }

    tries = 0;

again:

    /* a link is tiny: open, one read, close; no fstat() */

    fd = ngx_http_registry_openat_in(base, path->data, O_RDONLY, 0);

    if (fd == -1) {
        err = ngx_errno;

        if (ngx_http_registry_file_stale(op, err, &tries, path)) {
            goto again;
        }

        if (ngx_http_registry_file_absent(op, err, path)) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_open_file_n " \"%V%s%V\" failed", dir,
                      dir->len ? "/" : "", path);
        return ngx_http_registry_op_syserr(op, err);
    }

    n = read(fd, buf, sizeof(buf));
    err = ngx_errno;

    (void) close(fd);

    if (n == -1) {
        if (ngx_http_registry_file_stale(op, err, &tries, path)) {
            goto again;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_read_fd_n " \"%V%s%V\" failed", dir,
                      dir->len ? "/" : "", path);
        return ngx_http_registry_op_syserr(op, err);
    }

    switch (ngx_http_registry_digest_copy(op->pool, buf, n, digest)) {

    case NGX_OK:
        return NGX_OK;

    case NGX_DECLINED:
        ngx_log_error(NGX_LOG_ERR, op->log, 0,
                      "link \"%V%s%V\" holds no valid digest", dir,
                      dir->len ? "/" : "", path);
        return ngx_http_registry_op_fail(op, NGX_HTTP_REGISTRY_INTERNAL,
                                         "invalid link in the store");

    default:
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }
}


/* ---- writing ---- */

/* a new file under _ngx_tmp, open for writing, for a publish by rename */

ngx_int_t
ngx_http_registry_file_temp(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *file)
{
    ngx_err_t  err;
    ngx_str_t  id, dir;
    u_char     hex[NGX_HTTP_REGISTRY_TEMP_ID_LEN];

    id.data = hex;
    id.len = sizeof(hex);

    if (ngx_http_registry_random_hex(hex, sizeof(hex) / 2) != NGX_OK) {
        return ngx_http_registry_op_fail(op, NGX_HTTP_REGISTRY_INTERNAL,
                                         "no random bytes");
    }

    if (ngx_http_registry_path_temp(op, &file->path, &id) != NGX_OK) {
        return NGX_ERROR;
    }

    file->fd = ngx_http_registry_openat(op->store, file->path.data,
                                        O_WRONLY|O_CREAT|O_EXCL,
                                        NGX_FILE_DEFAULT_ACCESS);

    if (file->fd == -1 && ngx_errno == NGX_ENOENT) {
        if (ngx_http_registry_path_temp(op, &dir, NULL) != NGX_OK
            || ngx_http_registry_file_mkdirs(op, &dir, 0) != NGX_OK)
        {
            return NGX_ERROR;
        }

        file->fd = ngx_http_registry_openat(op->store, file->path.data,
                                            O_WRONLY|O_CREAT|O_EXCL,
                                            NGX_FILE_DEFAULT_ACCESS);
    }

    if (file->fd == -1) {
        err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_open_file_n " \"%V\" failed", &file->path);
        return ngx_http_registry_op_syserr(op, err);
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_registry_file_write_all(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *file, u_char *data, size_t len, off_t offset)
{
    ssize_t    n;
    ngx_err_t  err;

    while (len) {
        n = pwrite(file->fd, data, len, offset);

        if (n == -1) {
            err = ngx_errno;

            if (err == NGX_EINTR) {
                continue;
            }

            ngx_http_registry_file_error(op, err, "pwrite()", &file->path);
            return ngx_http_registry_op_syserr(op, err);
        }

        data += n;
        len -= n;
        offset += n;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_registry_file_sync(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *file)
{
    ngx_err_t  err;

    if (fsync(file->fd) == -1) {
        err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      "fsync() \"%V\" failed", &file->path);
        return ngx_http_registry_op_syserr(op, err);
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_registry_file_close(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *file)
{
    ngx_err_t  err;

    if (file->fd == NGX_INVALID_FILE) {
        return NGX_OK;
    }

    if (close(file->fd) == -1) {
        err = ngx_errno;
        file->fd = NGX_INVALID_FILE;
        ngx_log_error(NGX_LOG_ALERT, op->log, err,
                      ngx_close_file_n " \"%V\" failed", &file->path);
        return ngx_http_registry_op_syserr(op, err);
    }

    file->fd = NGX_INVALID_FILE;

    return NGX_OK;
}


/*
 * mkdir -p beneath the root.  Durable: each new directory's parent is
 * synced, so the new name survives a power cut.  Another writer may
 * remove an empty directory of the path (a DELETE's cleanup of a link's
 * directory, a tag's tree) between our mkdir and our open of it: the path
 * is made again, a few times at most.
 */

ngx_int_t
ngx_http_registry_file_mkdirs(ngx_http_registry_op_t *op, ngx_str_t *dir,
    ngx_uint_t durable)
{
    ngx_int_t   rc;
    ngx_uint_t  tries;

    for (tries = 0; tries < NGX_HTTP_REGISTRY_RACE_TRIES; tries++) {
        rc = ngx_http_registry_mkdirs(op, dir, durable);

        if (rc != NGX_AGAIN) {
            return rc;
        }
    }

    ngx_http_registry_file_error(op, NGX_ENOENT, "mkdir", dir);

    return ngx_http_registry_op_syserr(op, NGX_ENOENT);
}


/* NGX_AGAIN: a directory of the path vanished as it was made */

static ngx_int_t
ngx_http_registry_mkdirs(ngx_http_registry_op_t *op, ngx_str_t *dir,
    ngx_uint_t durable)
{
    int           dirfd, fd;
    u_char       *p, *slash;
    ngx_err_t     err;
    struct stat   sb;
    u_char        buf[NGX_MAX_PATH];

    fd = ngx_http_registry_openat(op->store, dir->data, O_PATH|O_DIRECTORY, 0);

    if (fd != -1) {
        (void) close(fd);
        return NGX_OK;
    }

    if (dir->len >= sizeof(buf)) {
        return ngx_http_registry_op_syserr(op, NGX_ENAMETOOLONG);
    }

    (void) ngx_cpystrn(buf, dir->data, sizeof(buf));

    dirfd = op->store->root_fd;
    p = buf;

    for ( ;; ) {
        slash = (u_char *) ngx_strchr(p, '/');

        if (slash) {
            *slash = '\0';
        }

        fd = openat(dirfd, (char *) p,
                    O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC);

        if (fd == -1 && ngx_errno == NGX_ENOENT) {
            if (mkdirat(dirfd, (char *) p, 0755) == -1
                && ngx_errno != NGX_EEXIST)
            {
                goto failed;
            }

            if (durable && fsync(dirfd) == -1) {
                goto failed;
            }

            fd = openat(dirfd, (char *) p,
                        O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC);
        }

        if (fd == -1) {
            goto failed;
        }

        if (dirfd != op->store->root_fd) {
            (void) close(dirfd);
        }

        dirfd = fd;

        if (slash == NULL) {
            break;
        }

        p = slash + 1;
    }

    (void) close(dirfd);

    return NGX_OK;

failed:

    err = ngx_errno;

    if ((err == NGX_ENOTDIR || err == NGX_ELOOP)
        && fstatat(dirfd, (char *) p, &sb, AT_SYMLINK_NOFOLLOW) == 0
        && S_ISLNK(sb.st_mode))
    {
        err = NGX_ELOOP;
    }

    if (dirfd != op->store->root_fd) {
        (void) close(dirfd);
    }

    if (err == NGX_ELOOP) {
        return ngx_http_registry_file_link_fault(op, dir);
    }

    if (err == NGX_ENOENT) {
        return NGX_AGAIN;
    }

    ngx_http_registry_file_error(op, err, "mkdir", dir);

    return ngx_http_registry_op_syserr(op, err);
}


/*
 * A write whose way goes through a symbolic link: never followed, and
 * never going to be (retrying cannot help), so the request is refused as
 * DENIED; the operator gets a warning naming the path.
 */

static ngx_int_t
ngx_http_registry_file_link_fault(ngx_http_registry_op_t *op,
    ngx_str_t *path)
{
    ngx_log_error(NGX_LOG_WARN, op->log, 0,
                  "registry: \"%V\" leads through a symbolic link, "
                  "which the store never follows", path);

    return ngx_http_registry_op_fail(op, NGX_HTTP_REGISTRY_DENIED,
                                     "the store has a symbolic link on this "
                                     "path, which it never follows");
}


/*
 * The directory holding path, open as *dir for *at() calls on *base, the
 * path's last name.  NGX_DECLINED: the directory does not exist (or is
 * reached through a link).
 */

static ngx_int_t
ngx_http_registry_parent(ngx_http_registry_op_t *op, ngx_str_t *path,
    ngx_fd_t *dir, u_char **base)
{
    ngx_err_t  err;

    *dir = ngx_http_registry_open_parent(op, path, base);

    if (*dir != -1) {
        return NGX_OK;
    }

    err = ngx_errno;

    if (ngx_http_registry_file_absent(op, err, path)) {
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_CRIT, op->log, err,
                  "open the directory of \"%V\" failed", path);

    return ngx_http_registry_op_syserr(op, err);
}


static ngx_fd_t
ngx_http_registry_open_parent(ngx_http_registry_op_t *op, ngx_str_t *path,
    u_char **base)
{
    int      fd;
    u_char  *slash;

    slash = (u_char *) ngx_strlchr(path->data, path->data + path->len, '/');

    if (slash == NULL) {
        *base = path->data;
        return dup(op->store->root_fd);
    }

    for (slash = path->data + path->len - 1; *slash != '/'; slash--) {
        /* void */
    }

    *slash = '\0';
    fd = ngx_http_registry_openat(op->store, path->data,
                                  O_RDONLY|O_DIRECTORY, 0);
    *slash = '/';

    *base = slash + 1;

    return fd;
}


/*
 * Renames a finished file into place, creating its directories: a new
 * name is made durable by syncing the directory that holds it (and the
 * ones created on the way, see mkdirs).  The file to publish is ours:
 * that it is gone is an error.
 */

ngx_int_t
ngx_http_registry_file_publish(ngx_http_registry_op_t *op, ngx_str_t *from,
    ngx_str_t *to, ngx_uint_t durable)
{
    ngx_int_t  rc;

    rc = ngx_http_registry_file_move(op, from, to, durable);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_CRIT, op->log, NGX_ENOENT,
                      "rename() \"%V\" to \"%V\" failed: the file to "
                      "publish is gone", from, to);
        return ngx_http_registry_op_syserr(op, NGX_ENOENT);
    }

    return rc;
}


/*
 * Renames a file, creating the target's directory if need be (again if
 * another writer removed it, empty, before our rename: see mkdirs).
 * NGX_DECLINED, quietly: "from" is gone, as a file another process may
 * move or remove first is (a blob to its garbage collection tombstone
 * and back).
 */

ngx_int_t
ngx_http_registry_file_move(ngx_http_registry_op_t *op, ngx_str_t *from,
    ngx_str_t *to, ngx_uint_t durable)
{
    u_char      *slash;
    ngx_int_t    rc;
    ngx_str_t    dir;
    ngx_uint_t   tries;

    rc = ngx_http_registry_move(op, from, to, durable);

    for (slash = to->data + to->len - 1; *slash != '/'; slash--) {
        /* void */
    }

    dir.data = to->data;
    dir.len = slash - to->data;

    for (tries = 0;
         rc == NGX_AGAIN && tries < NGX_HTTP_REGISTRY_RACE_TRIES;
         tries++)
    {
        *slash = '\0';
        rc = ngx_http_registry_file_mkdirs(op, &dir, durable);
        *slash = '/';

        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_registry_move(op, from, to, durable);
    }

    if (rc == NGX_AGAIN) {
        ngx_log_error(NGX_LOG_CRIT, op->log, NGX_ENOENT,
                      "rename() \"%V\" to \"%V\" failed", from, to);
        return ngx_http_registry_op_syserr(op, NGX_ENOENT);
    }

    return rc;
}


/*
 * NGX_DECLINED: "from" is gone; NGX_AGAIN: the target's directory is.
 * Durable: that directory is synced after the rename, since the new name
 * is an entry of it, which no fsync() of the file makes durable.
 */

static ngx_int_t
ngx_http_registry_move(ngx_http_registry_op_t *op, ngx_str_t *from,
    ngx_str_t *to, ngx_uint_t durable)
{
    u_char       *from_base, *to_base;
    ngx_fd_t      from_dir, to_dir;
    ngx_err_t     err;
    ngx_int_t     rc;
    struct stat   sb;

    rc = ngx_http_registry_parent(op, from, &from_dir, &from_base);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_registry_parent(op, to, &to_dir, &to_base);
    if (rc != NGX_OK) {
        (void) close(from_dir);
        return (rc == NGX_DECLINED) ? NGX_AGAIN : rc;
    }

    rc = NGX_OK;

    if (renameat(from_dir, (char *) from_base, to_dir, (char *) to_base)
        == -1)
    {
        err = ngx_errno;

        if (err != NGX_ENOENT) {
            ngx_log_error(NGX_LOG_CRIT, op->log, err,
                          "rename() \"%V\" to \"%V\" failed", from, to);
            rc = ngx_http_registry_op_syserr(op, err);

        } else {
            rc = (fstatat(from_dir, (char *) from_base, &sb,
                          AT_SYMLINK_NOFOLLOW) == -1)
                 ? NGX_DECLINED : NGX_AGAIN;
        }

    } else if (durable && fsync(to_dir) == -1) {
        err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      "fsync() of the directory of \"%V\" failed", to);
        rc = ngx_http_registry_op_syserr(op, err);
    }

    (void) close(from_dir);
    (void) close(to_dir);

    return rc;
}


/* writes a small file in full, then renames it into place */

ngx_int_t
ngx_http_registry_file_write(ngx_http_registry_op_t *op, ngx_str_t *path,
    u_char *data, size_t len, ngx_uint_t durable)
{
    ngx_int_t                 rc;
    ngx_http_registry_file_t  file;

    if (ngx_http_registry_file_temp(op, &file) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_write_all(op, &file, data, len, 0);

    /* durable: the bytes first, so that the name never survives alone */

    if (rc == NGX_OK && durable) {
        rc = ngx_http_registry_file_sync(op, &file);
    }

    if (ngx_http_registry_file_close(op, &file) != NGX_OK) {
        rc = NGX_ERROR;
    }

    if (rc == NGX_OK) {
        rc = ngx_http_registry_file_publish(op, &file.path, path, durable);
    }

    if (rc != NGX_OK) {
        (void) ngx_http_registry_file_unlink(op, &file.path, 0);
    }

    return rc;
}


/*
 * A link is durable: each one written (a layer, a revision, a tag's
 * current link) is what a 201 acknowledges.  Its bytes are synced before
 * the rename, or a power cut could leave the name with no content (a
 * torn link), and its directory after, or the name could be lost.
 */

ngx_int_t
ngx_http_registry_file_write_link(ngx_http_registry_op_t *op, ngx_str_t *path,
    ngx_http_registry_digest_t *digest)
{
    return ngx_http_registry_file_write(op, path, digest->text.data,
                                        digest->text.len, 1);
}


/*
 * Opens path with O_CREAT, making its directory first when missing.
 * NGX_ERROR: the directory could not be made (op's fault says why);
 * else *fd is the descriptor, or -1 with errno set.
 */

static ngx_int_t
ngx_http_registry_create(ngx_http_registry_op_t *op, ngx_str_t *path,
    int flags, ngx_fd_t *fd)
{
    u_char     *slash;
    ngx_int_t   rc;
    ngx_str_t   dir;

    *fd = ngx_http_registry_openat(op->store, path->data, flags|O_CREAT,
                                   NGX_FILE_DEFAULT_ACCESS);

    if (*fd != -1 || ngx_errno != NGX_ENOENT) {
        return NGX_OK;
    }

    for (slash = path->data + path->len - 1; *slash != '/'; slash--) {
        /* void */
    }

    dir.data = path->data;
    dir.len = slash - path->data;

    *slash = '\0';
    rc = ngx_http_registry_file_mkdirs(op, &dir, 0);
    *slash = '/';

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    *fd = ngx_http_registry_openat(op->store, path->data, flags|O_CREAT,
                                   NGX_FILE_DEFAULT_ACCESS);

    return NGX_OK;
}


/*
 * Waits for an exclusive flock() of a lock file, created (with its
 * directory) if need be, which other hosts on the same store see too; a
 * thread may wait here, never an event loop but where the thread pool is
 * off.  The lock goes with the descriptor (ngx_http_registry_file_unlock),
 * or with the process if it dies.  NGX_INVALID_FILE: failed (logged).
 */

ngx_fd_t
ngx_http_registry_file_lock(ngx_http_registry_op_t *op, ngx_str_t *path)
{
    ngx_fd_t    fd;
    ngx_err_t   err;

    /* O_RDWR: NFS emulates flock() with fcntl() locks, which want it */

    if (ngx_http_registry_create(op, path, O_RDWR, &fd) != NGX_OK) {
        return NGX_INVALID_FILE;
    }

    if (fd == -1) {
        err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_open_file_n " \"%V\" failed", path);
        (void) ngx_http_registry_op_syserr(op, err);
        return NGX_INVALID_FILE;
    }

    while (flock(fd, LOCK_EX) == -1) {
        err = ngx_errno;

        if (err != NGX_EINTR) {
            ngx_log_error(NGX_LOG_CRIT, op->log, err,
                          "flock(\"%V\") failed", path);
            (void) close(fd);
            (void) ngx_http_registry_op_syserr(op, err);
            return NGX_INVALID_FILE;
        }
    }

    return fd;
}


void
ngx_http_registry_file_unlock(ngx_http_registry_op_t *op, ngx_fd_t fd,
    ngx_str_t *path)
{
    /* closing the descriptor drops its lock */

    if (close(fd) == -1) {
        ngx_log_error(NGX_LOG_ALERT, op->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", path);
    }
}


/* sets a file's mtime, creating it (empty) if need be */

ngx_int_t
ngx_http_registry_file_touch(ngx_http_registry_op_t *op, ngx_str_t *path,
    struct timespec *mtime)
{
    ngx_fd_t          fd;
    ngx_err_t         err;
    ngx_uint_t        tries;
    struct timespec   times[2];

    tries = 0;

again:

    if (ngx_http_registry_create(op, path, O_WRONLY, &fd) != NGX_OK) {
        return NGX_ERROR;
    }

    if (fd == -1) {
        err = ngx_errno;

        if (ngx_http_registry_file_stale(op, err, &tries, path)) {
            goto again;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_open_file_n " \"%V\" failed", path);
        return ngx_http_registry_op_syserr(op, err);
    }

    times[0] = *mtime;
    times[1] = *mtime;

    if (futimens(fd, times) == -1) {
        err = ngx_errno;
        (void) close(fd);

        if (ngx_http_registry_file_stale(op, err, &tries, path)) {
            goto again;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      "futimens() \"%V\" failed", path);
        return ngx_http_registry_op_syserr(op, err);
    }

    (void) close(fd);

    return NGX_OK;
}


/*
 * Sets a file's times to now, never creating it: a blob or a link is in
 * use again, and garbage collection's grace starts over.  NGX_DECLINED:
 * there is no such file.  A file of another owner (distribution's, on a
 * shared store) keeps its time: that only makes it look older.
 */

ngx_int_t
ngx_http_registry_file_retime(ngx_http_registry_op_t *op, ngx_str_t *path)
{
    ngx_fd_t    fd;
    ngx_err_t   err;
    ngx_uint_t  tries;

    tries = 0;

again:

    fd = ngx_http_registry_openat(op->store, path->data, O_RDONLY, 0);

    if (fd == -1) {
        err = ngx_errno;

        if (ngx_http_registry_file_stale(op, err, &tries, path)) {
            goto again;
        }

        if (ngx_http_registry_file_absent(op, err, path)) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_open_file_n " \"%V\" failed", path);
        return ngx_http_registry_op_syserr(op, err);
    }

    if (futimens(fd, NULL) == -1) {
        err = ngx_errno;

        if (err != NGX_EPERM && err != NGX_EACCES) {
            (void) close(fd);

            if (ngx_http_registry_file_stale(op, err, &tries, path)) {
                goto again;
            }

            ngx_log_error(NGX_LOG_CRIT, op->log, err,
                          "futimens() \"%V\" failed", path);
            return ngx_http_registry_op_syserr(op, err);
        }
    }

    (void) close(fd);

    return NGX_OK;
}


/* ---- removing ---- */

/*
 * Removes a file (a link never gets followed: its own name goes), and
 * with NGX_HTTP_REGISTRY_UNLINK_PARENT its directory, if that is empty
 * then (a link's directory holds only the link).  With
 * NGX_HTTP_REGISTRY_UNLINK_DURABLE the directory that lost the name is
 * synced, so that the removal survives a power cut (an acknowledged
 * DELETE).  NGX_DECLINED: it was not there.
 */

ngx_int_t
ngx_http_registry_file_unlink(ngx_http_registry_op_t *op, ngx_str_t *path,
    ngx_uint_t flags)
{
    u_char     *base;
    ngx_fd_t    dirfd, pfd;
    ngx_err_t   err;
    ngx_int_t   rc;
    ngx_str_t   parent;

    rc = ngx_http_registry_parent(op, path, &dirfd, &base);
    if (rc != NGX_OK) {
        return rc;
    }

    if (unlinkat(dirfd, (char *) base, 0) == -1) {
        err = ngx_errno;
        (void) close(dirfd);

        if (err == NGX_ENOENT) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_delete_file_n " \"%V\" failed", path);
        return ngx_http_registry_op_syserr(op, err);
    }

    pfd = -1;

    if ((flags & NGX_HTTP_REGISTRY_UNLINK_PARENT) && base != path->data) {

        /* the parent: the path less "/<base>", for a moment NUL-ended */

        parent.data = path->data;
        parent.len = base - 1 - path->data;
        path->data[parent.len] = '\0';

        pfd = ngx_http_registry_open_parent(op, &parent, &base);

        if (pfd != -1 && unlinkat(pfd, (char *) base, AT_REMOVEDIR) == -1) {
            (void) close(pfd);
            pfd = -1;
        }

        path->data[parent.len] = '/';
    }

    rc = NGX_OK;

    /* the directory gone from its parent, or the name from its directory */

    if ((flags & NGX_HTTP_REGISTRY_UNLINK_DURABLE)
        && fsync(pfd != -1 ? pfd : dirfd) == -1)
    {
        err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      "fsync() of the directory of \"%V\" failed", path);
        rc = ngx_http_registry_op_syserr(op, err);
    }

    if (pfd != -1) {
        (void) close(pfd);
    }

    (void) close(dirfd);

    return rc;
}


/*
 * The directory holding path removed, if it is empty (a blob's directory
 * once its data went elsewhere).  NGX_DECLINED: absent, or not empty.
 */

ngx_int_t
ngx_http_registry_file_rmdir_parent(ngx_http_registry_op_t *op,
    ngx_str_t *path)
{
    u_char     *base;
    ngx_fd_t    pfd;
    ngx_err_t   err;
    ngx_int_t   rc;
    ngx_str_t   parent;

    if (ngx_strlchr(path->data, path->data + path->len, '/') == NULL) {
        return NGX_DECLINED;                  /* the root's own */
    }

    /* the parent: the path less "/<base>", for a moment NUL-ended */

    for (base = path->data + path->len - 1; *base != '/'; base--) {
        /* void */
    }

    parent.data = path->data;
    parent.len = base - path->data;
    path->data[parent.len] = '\0';

    rc = ngx_http_registry_parent(op, &parent, &pfd, &base);

    if (rc == NGX_OK) {
        if (unlinkat(pfd, (char *) base, AT_REMOVEDIR) == -1) {
            err = ngx_errno;
            rc = (err == NGX_ENOENT || err == ENOTEMPTY
                  || err == NGX_EEXIST)
                 ? NGX_DECLINED : ngx_http_registry_op_syserr(op, err);
        }

        (void) close(pfd);
    }

    path->data[parent.len] = '/';

    return rc;
}


/* syncs a directory: the names it gained or lost survive a power cut */

ngx_int_t
ngx_http_registry_file_sync_dir(ngx_http_registry_op_t *op, ngx_str_t *dir)
{
    ngx_fd_t   fd;
    ngx_err_t  err;

    fd = ngx_http_registry_openat(op->store, dir->data,
                                  O_RDONLY|O_DIRECTORY, 0);

    if (fd == -1) {
        err = ngx_errno;

        if (ngx_http_registry_file_absent(op, err, dir)) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_open_file_n " \"%V\" failed", dir);
        return ngx_http_registry_op_syserr(op, err);
    }

    if (fsync(fd) == -1) {
        err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      "fsync() \"%V\" failed", dir);
        (void) close(fd);
        return ngx_http_registry_op_syserr(op, err);
    }

    (void) close(fd);

    return NGX_OK;
}


/*
 * rm -r beneath the root, never following a link: a link in the tree is
 * removed itself.  NGX_DECLINED: the tree did not exist.
 */

ngx_int_t
ngx_http_registry_file_remove_tree(ngx_http_registry_op_t *op,
    ngx_str_t *path)
{
    u_char     *base;
    ngx_fd_t    dirfd;
    ngx_int_t   rc;

    rc = ngx_http_registry_parent(op, path, &dirfd, &base);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_registry_remove_at(op, dirfd, (char *) base, 0);

    (void) close(dirfd);

    return rc;
}


static ngx_int_t
ngx_http_registry_remove_at(ngx_http_registry_op_t *op, int at,
    const char *name, ngx_uint_t depth)
{
    int              fd;
    DIR             *dir;
    ngx_err_t        err;
    ngx_int_t        rc;
    struct dirent   *de;

    if (unlinkat(at, name, 0) == 0) {
        return NGX_OK;
    }

    err = ngx_errno;

    if (err == NGX_ENOENT) {
        return NGX_DECLINED;
    }

    if (err != EISDIR && err != EPERM) {
        goto failed;
    }

    if (depth > NGX_HTTP_REGISTRY_WALK_DEPTH) {
        err = NGX_ELOOP;
        goto failed;
    }

    fd = openat(at, name, O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC);
    if (fd == -1) {
        err = ngx_errno;
        goto failed;
    }

    dir = fdopendir(fd);
    if (dir == NULL) {
        err = ngx_errno;
        (void) close(fd);
        goto failed;
    }

    rc = NGX_OK;

    for ( ;; ) {
        ngx_set_errno(0);
        de = readdir(dir);

        if (de == NULL) {
            if (ngx_errno) {
                err = ngx_errno;
                rc = NGX_ERROR;
            }

            break;
        }

        if (ngx_strcmp(de->d_name, ".") == 0
            || ngx_strcmp(de->d_name, "..") == 0)
        {
            continue;
        }

        if (ngx_http_registry_remove_at(op, dirfd(dir), de->d_name, depth + 1)
            == NGX_ERROR)
        {
            (void) closedir(dir);
            return NGX_ERROR;
        }
    }

    (void) closedir(dir);

    if (rc == NGX_OK && unlinkat(at, name, AT_REMOVEDIR) == -1) {
        err = ngx_errno;
        rc = (err == NGX_ENOENT) ? NGX_OK : NGX_ERROR;
    }

    if (rc == NGX_OK) {
        return NGX_OK;
    }

failed:

    ngx_log_error(NGX_LOG_CRIT, op->log, err, "removing \"%s\" failed", name);

    return ngx_http_registry_op_syserr(op, err);
}


/* ---- listing ---- */

/*
 * A directory's entries (not "." files) that are directories, files or
 * symbolic links as "what" asks; links not asked for are skipped and
 * logged.  NGX_DECLINED: the directory does not exist.
 */

ngx_int_t
ngx_http_registry_file_list(ngx_http_registry_op_t *op, ngx_str_t *path,
    ngx_uint_t what, ngx_array_t *names)
{
    ngx_int_t                rc;
    ngx_http_registry_dir_t  dir;

    rc = ngx_http_registry_dir_open(op, path, &dir);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_registry_dir_list(op, &dir, what, names);

    ngx_http_registry_dir_close(&dir);

    return rc;
}


/*
 * A directory held open, for many lookups beneath it: each a short walk
 * from there, not one from the root through the whole path.  The
 * collection of a large store makes hundreds of thousands of them.
 * NGX_DECLINED: absent (or reached through a symbolic link).
 */

ngx_int_t
ngx_http_registry_dir_open(ngx_http_registry_op_t *op, ngx_str_t *path,
    ngx_http_registry_dir_t *dir)
{
    ngx_err_t  err;

    dir->path = *path;
    dir->fd = ngx_http_registry_openat(op->store, path->data,
                                       O_RDONLY|O_DIRECTORY, 0);

    if (dir->fd != -1) {
        return NGX_OK;
    }

    err = ngx_errno;

    if (ngx_http_registry_file_absent(op, err, path)) {
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_CRIT, op->log, err,
                  ngx_open_dir_n " \"%V\" failed", path);
    return ngx_http_registry_op_syserr(op, err);
}


/* its entries, once: a second listing would find none */

ngx_int_t
ngx_http_registry_dir_list(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *dir, ngx_uint_t what, ngx_array_t *names)
{
    return ngx_http_registry_read_entries(op, dir->fd, &dir->path, NULL,
                                          what, names, op->pool);
}


/*
 * rel is "<entry>/<file>" for an entry the listing gave as a directory:
 * fstatat() follows no link at the end, and <entry> was no link when
 * listed.  One put there since can only mislead a stat, which changes
 * nothing: whatever acts on the answer goes through the strict paths
 * again.  NGX_DECLINED: absent, or a link.
 */

ngx_int_t
ngx_http_registry_dir_stat(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *dir, ngx_str_t *rel, ngx_file_info_t *fi)
{
    ngx_err_t  err;

    if (fstatat(dir->fd, (char *) rel->data, fi, AT_SYMLINK_NOFOLLOW) == -1) {
        err = ngx_errno;

        if (err == NGX_ENOENT || err == NGX_ENOTDIR) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      "fstatat() \"%V/%V\" failed", &dir->path, rel);
        return ngx_http_registry_op_syserr(op, err);
    }

    if (S_ISLNK(fi->st_mode)) {
        return ngx_http_registry_file_absent(op, NGX_ELOOP, rel)
               ? NGX_DECLINED : NGX_ERROR;
    }

    return NGX_OK;
}


/* a link beneath the directory, as ngx_http_registry_file_read_link() */

ngx_int_t
ngx_http_registry_dir_read_link(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *dir, ngx_str_t *rel,
    ngx_http_registry_digest_t *digest)
{
    return ngx_http_registry_read_link_at(op, dir->fd, &dir->path, rel,
                                          digest);
}


/*
 * The operations below take single names in directories held open,
 * which no symbolic link can redirect: openat() with O_NOFOLLOW, and
 * renameat(), utimensat() and unlinkat(), which act on a final link
 * itself, never on what it names.
 */

/* the directory name beneath parent; NGX_DECLINED: absent, or a link */

ngx_int_t
ngx_http_registry_dir_open_in(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *parent, ngx_str_t *name,
    ngx_http_registry_dir_t *dir)
{
    ngx_err_t  err;

    dir->path = *name;
    dir->fd = openat(parent->fd, (char *) name->data,
                     O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC);

    if (dir->fd != -1) {
        return NGX_OK;
    }

    err = ngx_errno;

    if (ngx_http_registry_file_absent(op, err, name)) {
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_CRIT, op->log, err,
                  ngx_open_dir_n " \"%V/%V\" failed", &parent->path, name);
    return ngx_http_registry_op_syserr(op, err);
}


/* NGX_DECLINED: from is absent (or to's directory) */

ngx_int_t
ngx_http_registry_dir_rename(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *from_dir, char *from,
    ngx_http_registry_dir_t *to_dir, char *to)
{
    ngx_err_t  err;

    if (renameat(from_dir->fd, from, to_dir->fd, to) == 0) {
        return NGX_OK;
    }

    err = ngx_errno;

    if (err == NGX_ENOENT) {
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_CRIT, op->log, err,
                  "renameat() \"%V/%s\" to \"%V/%s\" failed",
                  &from_dir->path, from, &to_dir->path, to);
    return ngx_http_registry_op_syserr(op, err);
}


/* the file's time now, as ngx_http_registry_file_retime() */

ngx_int_t
ngx_http_registry_dir_retime(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *dir, char *name)
{
    ngx_err_t  err;

    if (utimensat(dir->fd, name, NULL, AT_SYMLINK_NOFOLLOW) == 0) {
        return NGX_OK;
    }

    err = ngx_errno;

    if (err == NGX_ENOENT) {
        return NGX_DECLINED;
    }

    if (err == NGX_EPERM || err == NGX_EACCES) {
        return NGX_OK;                  /* as futimens() there: kept old */
    }

    ngx_log_error(NGX_LOG_CRIT, op->log, err,
                  "utimensat() \"%V/%s\" failed", &dir->path, name);
    return ngx_http_registry_op_syserr(op, err);
}


/* as ngx_http_registry_file_sync_dir(), on the directory held open */

ngx_int_t
ngx_http_registry_dir_sync(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *dir)
{
    ngx_err_t  err;

    if (fsync(dir->fd) == 0) {
        return NGX_OK;
    }

    err = ngx_errno;
    ngx_log_error(NGX_LOG_CRIT, op->log, err,
                  "fsync() \"%V\" failed", &dir->path);
    return ngx_http_registry_op_syserr(op, err);
}


/* NGX_DECLINED: absent; a directory is removed only when empty */

ngx_int_t
ngx_http_registry_dir_unlink(ngx_http_registry_op_t *op,
    ngx_http_registry_dir_t *dir, char *name, ngx_uint_t is_dir)
{
    ngx_err_t  err;

    if (unlinkat(dir->fd, name, is_dir ? AT_REMOVEDIR : 0) == 0) {
        return NGX_OK;
    }

    err = ngx_errno;

    if (err == NGX_ENOENT) {
        return NGX_DECLINED;
    }

    if (is_dir && (err == ENOTEMPTY || err == NGX_EEXIST)) {
        return NGX_DECLINED;                  /* filled again meanwhile */
    }

    ngx_log_error(NGX_LOG_CRIT, op->log, err,
                  "unlinkat() \"%V/%s\" failed", &dir->path, name);
    return ngx_http_registry_op_syserr(op, err);
}


void
ngx_http_registry_dir_close(ngx_http_registry_dir_t *dir)
{
    if (dir->fd != -1) {
        (void) close(dir->fd);
        dir->fd = -1;
    }
}


/*
 * Reads the directory open as fd (left open, its offset at the end);
 * names in the pool.  The directory is path, or path/sub in a walk (for
 * the log).  getdents64() into a buffer on the stack: readdir() would
 * cost a DIR of 32 KB from malloc() and an fcntl() per directory, which
 * a collection of a large store opens by the ten thousand.
 */

static ngx_int_t
ngx_http_registry_read_entries(ngx_http_registry_op_t *op, int fd,
    ngx_str_t *path, ngx_str_t *sub, ngx_uint_t what, ngx_array_t *names,
    ngx_pool_t *pool)
{
    size_t            len;
    ssize_t           n, off;
    ngx_err_t         err;
    ngx_int_t         type;
    ngx_str_t        *name;
    struct dirent64  *de;
    u_char            buf[16384];

    static ngx_str_t  empty = ngx_null_string;

    for ( ;; ) {
        n = getdents64(fd, buf, sizeof(buf));

        if (n == -1) {
            err = ngx_errno;
            ngx_log_error(NGX_LOG_CRIT, op->log, err,
                          ngx_read_dir_n " \"%V%s%V\" failed", path,
                          sub && sub->len ? "/" : "", sub ? sub : &empty);
            return ngx_http_registry_op_syserr(op, err);
        }

        if (n == 0) {
            return NGX_OK;
        }

        for (off = 0; off < n; off += de->d_reclen) {
            de = (struct dirent64 *) (buf + off);

            if (de->d_name[0] == '.') {
                continue;
            }

            type = ngx_http_registry_entry_type(op, fd, de);

            if (type == NGX_HTTP_REGISTRY_LIST_LINKS
                && !(what & NGX_HTTP_REGISTRY_LIST_LINKS))
            {
                ngx_log_error(NGX_LOG_WARN, op->log, 0,
                              "registry: symbolic link \"%V%s%V/%s\" "
                              "skipped: the store never follows one", path,
                              sub && sub->len ? "/" : "",
                              sub ? sub : &empty, de->d_name);
                continue;
            }

            if (!(type & what)) {
                continue;
            }

            len = ngx_strlen(de->d_name);

            name = ngx_array_push(names);
            if (name == NULL) {
                return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
            }

            name->len = len;
            name->data = ngx_pnalloc(pool, len + 1);
            if (name->data == NULL) {
                return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
            }

            ngx_memcpy(name->data, de->d_name, len + 1);
        }
    }
}


/*
 * Walks the directories under path, depth first, never through a link,
 * showing each to visit() (see the header).  A directory that cannot be
 * entered, or lies deeper than any repository name can, is skipped and
 * logged: one bad corner never hides the rest of the store.  An absent
 * path has nothing to walk.
 */

ngx_int_t
ngx_http_registry_file_walk(ngx_http_registry_op_t *op, ngx_str_t *path,
    ngx_http_registry_visit_pt visit, void *data)
{
    int         fd;
    ngx_err_t   err;
    ngx_int_t   rc;
    ngx_str_t   sub;
    u_char      buf[NGX_MAX_PATH];

    fd = ngx_http_registry_openat(op->store, path->data,
                                  O_RDONLY|O_DIRECTORY, 0);

    if (fd == -1) {
        err = ngx_errno;

        if (ngx_http_registry_file_absent(op, err, path)) {
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_open_dir_n " \"%V\" failed", path);
        return ngx_http_registry_op_syserr(op, err);
    }

    sub.data = buf;
    sub.len = 0;

    rc = ngx_http_registry_walk_dir(op, fd, path, &sub, sizeof(buf), visit,
                                    data, 0);

    (void) close(fd);

    return rc;
}


static ngx_int_t
ngx_http_registry_walk_dir(ngx_http_registry_op_t *op, int fd,
    ngx_str_t *path, ngx_str_t *sub, size_t size,
    ngx_http_registry_visit_pt visit, void *data, ngx_uint_t depth)
{
    int          child;
    size_t       len;
    ngx_int_t    rc;
    ngx_str_t   *dir;
    ngx_uint_t   i;
    ngx_pool_t  *pool;
    ngx_array_t  dirs;

    /* this directory's entries: in a pool of their own, gone after it */

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, op->log);
    if (pool == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (ngx_array_init(&dirs, pool, 8, sizeof(ngx_str_t)) != NGX_OK) {
        rc = ngx_http_registry_op_syserr(op, NGX_ENOMEM);
        goto done;
    }

    rc = ngx_http_registry_read_entries(op, fd, path, sub,
                                        NGX_HTTP_REGISTRY_LIST_DIRS, &dirs,
                                        pool);

    if (rc == NGX_OK) {
        rc = visit(op, data, sub, &dirs);
    }

    if (rc != NGX_OK) {
        goto done;
    }

    dir = dirs.elts;
    len = sub->len;

    for (i = 0; i < dirs.nelts; i++) {

        if (depth >= NGX_HTTP_REGISTRY_WALK_DEPTH
            || len + 1 + dir[i].len >= size)
        {
            ngx_log_error(NGX_LOG_WARN, op->log, 0,
                          "registry: \"%V/%V/%V\" is too deep, skipped",
                          path, sub, &dir[i]);
            continue;
        }

        child = openat(fd, (char *) dir[i].data,
                       O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC);

        if (child == -1) {
            ngx_log_error(NGX_LOG_WARN, op->log, ngx_errno,
                          "registry: \"%V/%V/%V\" skipped", path, sub,
                          &dir[i]);
            continue;
        }

        if (len) {
            sub->data[sub->len++] = '/';
        }

        sub->len = ngx_cpymem(sub->data + sub->len, dir[i].data, dir[i].len)
                   - sub->data;

        rc = ngx_http_registry_walk_dir(op, child, path, sub, size, visit,
                                        data, depth + 1);

        (void) close(child);
        sub->len = len;

        if (rc != NGX_OK) {
            break;
        }
    }

done:

    ngx_destroy_pool(pool);

    return rc;
}


/*
 * LIST_DIRS, LIST_FILES, LIST_LINKS, or 0 for anything else: d_type when
 * the file system fills it in.
 */

static ngx_int_t
ngx_http_registry_entry_type(ngx_http_registry_op_t *op, int at,
    struct dirent64 *de)
{
    struct stat  sb;

    switch (de->d_type) {

    case DT_DIR:
        return NGX_HTTP_REGISTRY_LIST_DIRS;

    case DT_REG:
        return NGX_HTTP_REGISTRY_LIST_FILES;

    case DT_LNK:
        return NGX_HTTP_REGISTRY_LIST_LINKS;

    case DT_UNKNOWN:
        break;

    default:
        return 0;
    }

    if (fstatat(at, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == -1) {
        return 0;
    }

    if (S_ISLNK(sb.st_mode)) {
        return NGX_HTTP_REGISTRY_LIST_LINKS;
    }

    return S_ISDIR(sb.st_mode) ? NGX_HTTP_REGISTRY_LIST_DIRS
           : S_ISREG(sb.st_mode) ? NGX_HTTP_REGISTRY_LIST_FILES : 0;
}
