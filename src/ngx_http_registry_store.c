
/*
 * ngx_http_registry_module: the store, CNCF distribution's filesystem
 * layout (see shared/design/store-layout.md).  This file maps names and
 * digests to paths and does the file work; it knows nothing of HTTP.
 *
 * Every write goes to a temporary file under <store>/_ngx_tmp, which
 * distribution never looks at, and is published with rename(2), so no
 * reader ever sees a half-written blob, link or upload state.  Names and
 * digests reaching this file have been validated by the router.
 */


#include "ngx_http_registry.h"

#include <openssl/rand.h>
#include <sys/file.h>


#define NGX_HTTP_REGISTRY_PATH_EXTRA   1024
#define NGX_HTTP_REGISTRY_TMP_DIR      "_ngx_tmp"
#define NGX_HTTP_REGISTRY_STATE_FILE   "ngx_registry_state"
#define NGX_HTTP_REGISTRY_MAX_DEPTH    128


/*
 * An upload's hash state as saved between chunks: the raw OpenSSL context,
 * so it is only readable by the same build on the same architecture; the
 * magic and the size check turn anything else into "unknown upload".
 */

typedef struct {
    u_char                            magic[8];
    ngx_http_registry_upload_state_t  state;
} ngx_http_registry_state_file_t;

static u_char  ngx_http_registry_state_magic[8] = "NGXREG1\n";



static ngx_int_t ngx_http_registry_store_sync_dirs(
    ngx_http_registry_store_t *st, ngx_str_t *path, ngx_uint_t up_to_root);
static ngx_int_t ngx_http_registry_store_write_all(ngx_file_t *file,
    u_char *data, size_t len);
static ngx_int_t ngx_http_registry_store_walk_repositories(
    ngx_http_registry_store_t *st, ngx_str_t *dir, size_t prefix,
    ngx_array_t *names, ngx_uint_t depth);
static ngx_int_t ngx_http_registry_store_is_dir(ngx_str_t *path);
static ngx_int_t ngx_http_registry_store_delete_file(ngx_tree_ctx_t *ctx,
    ngx_str_t *path);
static ngx_int_t ngx_http_registry_store_delete_dir(ngx_tree_ctx_t *ctx,
    ngx_str_t *path);
static ngx_int_t ngx_http_registry_store_noop(ngx_tree_ctx_t *ctx,
    ngx_str_t *path);
static int ngx_libc_cdecl ngx_http_registry_cmp_names(const void *one,
    const void *two);
static ngx_int_t ngx_http_registry_store_replace_file(
    ngx_http_registry_store_t *st, ngx_str_t *path, u_char *data, size_t len);
static ngx_int_t ngx_http_registry_store_purge_temp(
    ngx_http_registry_store_t *st, time_t expire);
static ngx_int_t ngx_http_registry_timespec_after(struct timespec *a,
    struct timespec *b);


/*
 * Builds "<store>/<fmt...>" NUL-terminated in the pool; out->len excludes
 * the NUL.  Formats are ngx_sprintf()'s.
 */

u_char *
ngx_http_registry_store_path(ngx_http_registry_store_t *st, ngx_str_t *out,
    const char *fmt, ...)
{
    u_char   *p;
    size_t    len;
    va_list   args;
    u_char    rel[NGX_HTTP_REGISTRY_PATH_EXTRA];

    /* formatted on the stack first: the pool gets only the bytes needed */

    va_start(args, fmt);
    p = ngx_vslprintf(rel, rel + sizeof(rel), fmt, args);
    va_end(args);

    len = p - rel;

    if (len == sizeof(rel)) {
        return NULL;
    }

    out->len = st->root.len + 1 + len;
    out->data = ngx_pnalloc(st->pool, out->len + 1);
    if (out->data == NULL) {
        return NULL;
    }

    p = ngx_cpymem(out->data, st->root.data, st->root.len);
    *p++ = '/';
    p = ngx_cpymem(p, rel, len);
    *p = '\0';

    return out->data;
}


u_char *
ngx_http_registry_store_blob_path(ngx_http_registry_store_t *st,
    ngx_str_t *out, ngx_http_registry_digest_t *digest)
{
    return ngx_http_registry_store_path(st, out, "blobs/%V/%*s/%V/data",
                                   ngx_http_registry_alg_name(digest->alg),
                                   (size_t) 2, digest->hex.data, &digest->hex);
}


u_char *
ngx_http_registry_store_layer_link(ngx_http_registry_store_t *st,
    ngx_str_t *out, ngx_str_t *name, ngx_http_registry_digest_t *digest)
{
    return ngx_http_registry_store_path(st, out,
                                   "repositories/%V/_layers/%V/%V/link", name,
                                   ngx_http_registry_alg_name(digest->alg),
                                   &digest->hex);
}


u_char *
ngx_http_registry_store_revision_link(ngx_http_registry_store_t *st,
    ngx_str_t *out, ngx_str_t *name, ngx_http_registry_digest_t *digest)
{
    return ngx_http_registry_store_path(st, out,
                                   "repositories/%V/_manifests/revisions/%V/%V"
                                   "/link", name,
                                   ngx_http_registry_alg_name(digest->alg),
                                   &digest->hex);
}


/* the link naming a tag's manifest: its directory is the tag's */

u_char *
ngx_http_registry_store_tag_link(ngx_http_registry_store_t *st,
    ngx_str_t *out, ngx_str_t *name, ngx_str_t *tag)
{
    return ngx_http_registry_store_path(st, out,
                                   "repositories/%V/_manifests/tags/%V/"
                                   "current/link", name, tag);
}


u_char *
ngx_http_registry_store_upload_dir(ngx_http_registry_store_t *st,
    ngx_str_t *out, ngx_str_t *name, ngx_str_t *id)
{
    return ngx_http_registry_store_path(st, out, "repositories/%V/_uploads/%V",
                                        name, id);
}


ngx_int_t
ngx_http_registry_store_exists(ngx_str_t *path)
{
    ngx_file_info_t  fi;

    if (ngx_file_info(path->data, &fi) == NGX_FILE_ERROR) {
        return (ngx_errno == NGX_ENOENT || ngx_errno == NGX_ENOTDIR)
               ? NGX_DECLINED : NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Reads a whole small file into the pool.  NGX_DECLINED: it does not
 * exist; NGX_ERROR: it could not be read or is larger than max.
 */

ngx_int_t
ngx_http_registry_store_read_small(ngx_http_registry_store_t *st,
    ngx_str_t *path, size_t max, ngx_str_t *content)
{
    off_t            size;
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_err_t        err;
    ngx_int_t        rc;
    ngx_file_info_t  fi;

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;

        if (err == NGX_ENOENT || err == NGX_ENOTDIR) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, st->log, err,
                      ngx_open_file_n " \"%s\" failed", path->data);
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_CRIT, st->log, ngx_errno,
                      ngx_fd_info_n " \"%s\" failed", path->data);
        goto done;
    }

    size = ngx_file_size(&fi);

    if (size > (off_t) max) {
        ngx_log_error(NGX_LOG_ERR, st->log, 0,
                      "\"%s\" is larger than %uz bytes", path->data, max);
        goto done;
    }

    content->data = ngx_pnalloc(st->pool, size + 1);
    if (content->data == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, content->data, size + 1);

    if (n == -1) {
        ngx_log_error(NGX_LOG_CRIT, st->log, ngx_errno,
                      ngx_read_fd_n " \"%s\" failed", path->data);
        goto done;
    }

    if (n != size) {
        ngx_log_error(NGX_LOG_CRIT, st->log, 0,
                      "\"%s\" changed while being read", path->data);
        goto done;
    }

    content->len = n;
    rc = NGX_OK;

done:

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, st->log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed", path->data);
    }

    return rc;
}


/* NGX_DECLINED: no such link; NGX_ERROR: unreadable or not a digest */

ngx_int_t
ngx_http_registry_store_read_link(ngx_http_registry_store_t *st,
    ngx_str_t *path, ngx_http_registry_digest_t *digest)
{
    ssize_t    n;
    ngx_fd_t   fd;
    ngx_err_t  err;
    ngx_str_t  content;

    /* a link is tiny: open, one read, close; no fstat() as read_small does */

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;

        if (err == NGX_ENOENT || err == NGX_ENOTDIR) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, st->log, err,
                      ngx_open_file_n " \"%s\" failed", path->data);
        return NGX_ERROR;
    }

    content.data = ngx_pnalloc(st->pool, NGX_HTTP_REGISTRY_DIGEST_MAX_LEN + 1);

    n = content.data ? ngx_read_fd(fd, content.data,
                                   NGX_HTTP_REGISTRY_DIGEST_MAX_LEN + 1)
                     : -1;
    err = ngx_errno;

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, st->log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed", path->data);
    }

    if (n == -1) {
        ngx_log_error(NGX_LOG_CRIT, st->log, err,
                      ngx_read_fd_n " \"%s\" failed", path->data);
        return NGX_ERROR;
    }

    content.len = n;

    if (ngx_http_registry_parse_digest(&content, digest) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, st->log, 0,
                      "link \"%s\" holds no valid digest", path->data);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_registry_store_write_link(ngx_http_registry_store_t *st,
    ngx_str_t *path, ngx_http_registry_digest_t *digest)
{
    return ngx_http_registry_store_write_file(st, path, digest->text.data,
                                              digest->text.len);
}


/* writes a small file in full, durably, then renames it into place */

ngx_int_t
ngx_http_registry_store_write_file(ngx_http_registry_store_t *st,
    ngx_str_t *path, u_char *data, size_t len)
{
    ngx_err_t   err;
    ngx_int_t   rc;
    ngx_file_t  file;

    if (ngx_http_registry_store_open_temp(st, &file) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_store_write_all(&file, data, len);

    if (rc == NGX_OK && fsync(file.fd) == -1) {
        ngx_log_error(NGX_LOG_CRIT, st->log, ngx_errno,
                      "fsync() \"%s\" failed", file.name.data);
        rc = NGX_ERROR;
    }

    if (ngx_close_file(file.fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, st->log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed", file.name.data);
        rc = NGX_ERROR;
    }

    if (rc == NGX_OK) {
        rc = ngx_http_registry_store_publish(st, &file.name, path);
    }

    if (rc != NGX_OK) {
        err = ngx_errno;
        (void) ngx_delete_file(file.name.data);
        ngx_set_errno(err);
    }

    return rc;
}


/*
 * Renames a finished file into place, creating its directories, and makes
 * the new name durable: a 201 must survive a power cut, so the directory
 * that holds the name is synced, and so is every directory above it up to
 * the store's root when some of them had to be created.
 */

ngx_int_t
ngx_http_registry_store_publish(ngx_http_registry_store_t *st,
    ngx_str_t *from, ngx_str_t *to)
{
    ngx_int_t   rc;
    ngx_err_t   err;
    ngx_uint_t  created;

    created = 0;
    rc = ngx_rename_file(from->data, to->data);

    if (rc == NGX_FILE_ERROR && ngx_errno == NGX_ENOENT) {
        if (ngx_create_full_path(to->data, 0755) != 0) {
            err = ngx_errno;
            ngx_log_error(NGX_LOG_CRIT, st->log, err,
                          ngx_create_dir_n " for \"%s\" failed", to->data);
            ngx_set_errno(err);
            return NGX_ERROR;
        }

        created = 1;
        rc = ngx_rename_file(from->data, to->data);
    }

    if (rc == NGX_FILE_ERROR) {
        err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, st->log, err,
                      ngx_rename_file_n " \"%s\" to \"%s\" failed",
                      from->data, to->data);
        ngx_set_errno(err);
        return NGX_ERROR;
    }

    return ngx_http_registry_store_sync_dirs(st, to, created);
}


/* fsync()s the directory holding path, and its parents up to the root */

static ngx_int_t
ngx_http_registry_store_sync_dirs(ngx_http_registry_store_t *st,
    ngx_str_t *path, ngx_uint_t up_to_root)
{
    u_char     *slash, *end;
    ngx_fd_t    fd;
    ngx_err_t   err;
    ngx_int_t   rc;

    rc = NGX_OK;
    end = path->data + path->len;

    for ( ;; ) {
        for (slash = end - 1; slash > path->data && *slash != '/'; slash--) {
            /* void */
        }

        if (slash < path->data + st->root.len) {
            break;
        }

        *slash = '\0';

        fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

        if (fd == NGX_INVALID_FILE || fsync(fd) == -1) {
            err = ngx_errno;
            ngx_log_error(NGX_LOG_CRIT, st->log, err,
                          "fsync() of directory \"%s\" failed", path->data);
            ngx_set_errno(err);
            rc = NGX_ERROR;
        }

        if (fd != NGX_INVALID_FILE) {
            (void) ngx_close_file(fd);
        }

        *slash = '/';

        if (rc != NGX_OK || !up_to_root) {
            break;
        }

        end = slash;
    }

    return rc;
}


/*
 * Upload bookkeeping (state, startedat): replaced atomically by rename,
 * never torn, but not synced, so a chunk costs no journal commit.  A crash
 * may lose the latest state; load_state() then finds the data file
 * shorter than the state says and the upload unknown, never corrupt.
 */

static ngx_int_t
ngx_http_registry_store_replace_file(ngx_http_registry_store_t *st,
    ngx_str_t *path, u_char *data, size_t len)
{
    ngx_err_t   err;
    ngx_int_t   rc;
    ngx_file_t  file;

    if (ngx_http_registry_store_open_temp(st, &file) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_store_write_all(&file, data, len);

    if (ngx_close_file(file.fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, st->log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed", file.name.data);
        rc = NGX_ERROR;
    }

    if (rc == NGX_OK && ngx_rename_file(file.name.data, path->data)
                        == NGX_FILE_ERROR)
    {
        ngx_log_error(NGX_LOG_CRIT, st->log, ngx_errno,
                      ngx_rename_file_n " \"%s\" to \"%s\" failed",
                      file.name.data, path->data);
        rc = NGX_ERROR;
    }

    if (rc != NGX_OK) {
        err = ngx_errno;
        (void) ngx_delete_file(file.name.data);
        ngx_set_errno(err);
    }

    return rc;
}


/* removes a link and its directory, which holds nothing else */

ngx_int_t
ngx_http_registry_store_delete_link(ngx_http_registry_store_t *st,
    ngx_str_t *path)
{
    u_char  *slash;

    if (ngx_delete_file(path->data) == NGX_FILE_ERROR) {
        if (ngx_errno == NGX_ENOENT || ngx_errno == NGX_ENOTDIR) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, st->log, ngx_errno,
                      ngx_delete_file_n " \"%s\" failed", path->data);
        return NGX_ERROR;
    }

    for (slash = path->data + path->len; slash > path->data; slash--) {
        if (*slash == '/') {
            break;
        }
    }

    *slash = '\0';
    (void) ngx_delete_dir(path->data);
    *slash = '/';

    return NGX_OK;
}


/* NGX_DECLINED: the tree did not exist */

ngx_int_t
ngx_http_registry_store_delete_tree(ngx_http_registry_store_t *st,
    ngx_str_t *path)
{
    ngx_tree_ctx_t  tree;

    if (ngx_http_registry_store_exists(path) == NGX_DECLINED) {
        return NGX_DECLINED;
    }

    tree.init_handler = NULL;
    tree.file_handler = ngx_http_registry_store_delete_file;
    tree.pre_tree_handler = ngx_http_registry_store_noop;
    tree.post_tree_handler = ngx_http_registry_store_delete_dir;
    tree.spec_handler = ngx_http_registry_store_delete_file;
    tree.data = NULL;
    tree.alloc = 0;
    tree.log = st->log;

    if (ngx_walk_tree(&tree, path) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_registry_store_delete_dir(&tree, path);
}


static ngx_int_t
ngx_http_registry_store_delete_file(ngx_tree_ctx_t *ctx, ngx_str_t *path)
{
    if (ngx_delete_file(path->data) == NGX_FILE_ERROR
        && ngx_errno != NGX_ENOENT)
    {
        ngx_log_error(NGX_LOG_CRIT, ctx->log, ngx_errno,
                      ngx_delete_file_n " \"%s\" failed", path->data);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_store_delete_dir(ngx_tree_ctx_t *ctx, ngx_str_t *path)
{
    if (ngx_delete_dir(path->data) == NGX_FILE_ERROR
        && ngx_errno != NGX_ENOENT)
    {
        ngx_log_error(NGX_LOG_CRIT, ctx->log, ngx_errno,
                      ngx_delete_dir_n " \"%s\" failed", path->data);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_store_noop(ngx_tree_ctx_t *ctx, ngx_str_t *path)
{
    return NGX_OK;
}


/*
 * Lists a directory's entries (not "." files) into an array of ngx_str_t.
 * NGX_DECLINED: the directory does not exist.
 */

ngx_int_t
ngx_http_registry_store_list_dir(ngx_http_registry_store_t *st,
    ngx_str_t *path, ngx_array_t *names)
{
    size_t      len;
    ngx_err_t   err;
    ngx_dir_t   dir;
    ngx_str_t  *name;

    if (ngx_open_dir(path, &dir) == NGX_ERROR) {
        err = ngx_errno;

        if (err == NGX_ENOENT || err == NGX_ENOTDIR) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, st->log, err,
                      ngx_open_dir_n " \"%s\" failed", path->data);
        return NGX_ERROR;
    }

    for ( ;; ) {
        ngx_set_errno(0);

        if (ngx_read_dir(&dir) == NGX_ERROR) {
            err = ngx_errno;

            if (err != NGX_ENOMOREFILES) {
                ngx_log_error(NGX_LOG_CRIT, st->log, err,
                              ngx_read_dir_n " \"%s\" failed", path->data);
                (void) ngx_close_dir(&dir);
                return NGX_ERROR;
            }

            break;
        }

        len = ngx_de_namelen(&dir);

        if (ngx_de_name(&dir)[0] == '.') {
            continue;
        }

        name = ngx_array_push(names);
        if (name == NULL) {
            (void) ngx_close_dir(&dir);
            return NGX_ERROR;
        }

        name->len = len;
        name->data = ngx_pnalloc(st->pool, len);
        if (name->data == NULL) {
            (void) ngx_close_dir(&dir);
            return NGX_ERROR;
        }

        ngx_memcpy(name->data, ngx_de_name(&dir), len);
    }

    if (ngx_close_dir(&dir) == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, st->log, ngx_errno,
                      ngx_close_dir_n " \"%s\" failed", path->data);
    }

    return NGX_OK;
}


/*
 * A directory under repositories/ is a repository when it holds _layers,
 * _manifests or _uploads; a mere parent ("a" of "a/b") is not.
 */

ngx_int_t
ngx_http_registry_store_is_repository(ngx_http_registry_store_t *st,
    ngx_str_t *name)
{
    ngx_int_t    rc;
    ngx_str_t    path;
    ngx_uint_t   i;

    static char  *marks[] = { "_manifests", "_layers", "_uploads" };

    for (i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
        if (ngx_http_registry_store_path(st, &path, "repositories/%V/%s",
                                         name, marks[i])
            == NULL)
        {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_store_exists(&path);

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    return NGX_DECLINED;
}


/*
 * Walks repositories/ for repository names: a directory is a repository
 * when it holds _layers, _manifests or _uploads, and repositories nest
 * ("a" and "a/b" may both exist), so the walk goes on below them, skipping
 * the "_" directories, which no repository name component can start with.
 */

ngx_int_t
ngx_http_registry_store_list_repositories(ngx_http_registry_store_t *st,
    ngx_array_t *names)
{
    ngx_str_t  dir;

    if (ngx_http_registry_store_path(st, &dir, "repositories") == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_registry_store_walk_repositories(st, &dir, dir.len + 1,
                                                     names, 0);
}


static ngx_int_t
ngx_http_registry_store_walk_repositories(ngx_http_registry_store_t *st,
    ngx_str_t *dir, size_t prefix, ngx_array_t *names, ngx_uint_t depth)
{
    u_char       *p;
    ngx_int_t     rc;
    ngx_str_t    *name, sub, *entry;
    ngx_uint_t    i, is_repository;
    ngx_array_t   entries;

    if (depth > NGX_HTTP_REGISTRY_MAX_DEPTH) {
        return NGX_OK;
    }

    if (ngx_array_init(&entries, st->pool, 16, sizeof(ngx_str_t)) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_store_list_dir(st, dir, &entries);
    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    entry = entries.elts;
    is_repository = 0;

    for (i = 0; i < entries.nelts; i++) {
        if (entry[i].data[0] != '_') {
            continue;
        }

        if ((entry[i].len == 7
             && ngx_strncmp(entry[i].data, "_layers", 7) == 0)
            || (entry[i].len == 10
                && ngx_strncmp(entry[i].data, "_manifests", 10) == 0)
            || (entry[i].len == 8
                && ngx_strncmp(entry[i].data, "_uploads", 8) == 0))
        {
            is_repository = 1;
        }
    }

    if (is_repository && dir->len > prefix) {
        name = ngx_array_push(names);
        if (name == NULL) {
            return NGX_ERROR;
        }

        name->data = dir->data + prefix;
        name->len = dir->len - prefix;
    }

    for (i = 0; i < entries.nelts; i++) {
        if (entry[i].data[0] == '_') {
            continue;
        }

        sub.len = dir->len + 1 + entry[i].len;
        sub.data = ngx_pnalloc(st->pool, sub.len + 1);
        if (sub.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(sub.data, dir->data, dir->len);
        *p++ = '/';
        p = ngx_cpymem(p, entry[i].data, entry[i].len);
        *p = '\0';

        rc = ngx_http_registry_store_is_dir(&sub);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            continue;
        }

        if (ngx_http_registry_store_walk_repositories(st, &sub, prefix, names,
                                                      depth + 1)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_store_is_dir(ngx_str_t *path)
{
    ngx_file_info_t  fi;

    if (ngx_file_info(path->data, &fi) == NGX_FILE_ERROR) {
        return (ngx_errno == NGX_ENOENT) ? NGX_DECLINED : NGX_ERROR;
    }

    return ngx_is_dir(&fi) ? NGX_OK : NGX_DECLINED;
}


void
ngx_http_registry_sort_names(ngx_array_t *names)
{
    ngx_qsort(names->elts, names->nelts, sizeof(ngx_str_t),
              ngx_http_registry_cmp_names);
}


static int ngx_libc_cdecl
ngx_http_registry_cmp_names(const void *one, const void *two)
{
    ngx_int_t         rc;
    const ngx_str_t  *a = one, *b = two;

    rc = ngx_memn2cmp(a->data, b->data, a->len, b->len);

    return (rc < 0) ? -1 : (rc > 0);
}


/* ---- uploads ---- */

/*
 * Creates _uploads/<id>/ with an empty data file, startedat (distribution's
 * upload purge reads it) and the initial state, written last: an upload
 * exists for this module once its state does.
 */

ngx_int_t
ngx_http_registry_store_create_upload(ngx_http_registry_store_t *st,
    ngx_str_t *dir, ngx_http_registry_upload_state_t *state)
{
    u_char     *p;
    ngx_fd_t    fd;
    ngx_str_t   path;
    ngx_tm_t    tm;
    u_char      startedat[sizeof("1970-01-01T00:00:00Z")];

    if (ngx_create_full_path(dir->data, 0755) != 0
        || (ngx_create_dir(dir->data, 0755) == NGX_FILE_ERROR
            && ngx_errno != NGX_EEXIST))
    {
        ngx_log_error(NGX_LOG_CRIT, st->log, ngx_errno,
                      ngx_create_dir_n " \"%s\" failed", dir->data);
        return NGX_ERROR;
    }

    if (ngx_http_registry_store_in_dir(st, &path, dir, NGX_HTTP_REGISTRY_UPLOAD_DATA)
        == NULL)
    {
        return NGX_ERROR;
    }

    fd = ngx_open_file(path.data, NGX_FILE_WRONLY, NGX_FILE_CREATE_OR_OPEN,
                       NGX_FILE_DEFAULT_ACCESS);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, st->log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", path.data);
        return NGX_ERROR;
    }

    (void) ngx_close_file(fd);

    ngx_gmtime(ngx_time(), &tm);
    p = ngx_sprintf(startedat, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                    tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                    tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);

    if (ngx_http_registry_store_in_dir(st, &path, dir, "startedat")
        == NULL
        || ngx_http_registry_store_replace_file(st, &path, startedat,
                                                p - startedat)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_registry_store_save_state(st, dir, state);
}


ngx_int_t
ngx_http_registry_store_save_state(ngx_http_registry_store_t *st,
    ngx_str_t *dir, ngx_http_registry_upload_state_t *state)
{
    ngx_str_t                        path;
    ngx_http_registry_state_file_t   file;

    if (ngx_http_registry_store_in_dir(st, &path, dir, NGX_HTTP_REGISTRY_STATE_FILE)
        == NULL)
    {
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_http_registry_state_file_t));
    ngx_memcpy(file.magic, ngx_http_registry_state_magic, sizeof(file.magic));
    file.state = *state;

    return ngx_http_registry_store_replace_file(st, &path, (u_char *) &file,
                                                sizeof(file));
}


/* NGX_DECLINED: no such upload, or one this build cannot resume */

ngx_int_t
ngx_http_registry_store_load_state(ngx_http_registry_store_t *st,
    ngx_str_t *dir, ngx_http_registry_upload_state_t *state)
{
    ngx_int_t                        rc;
    ngx_str_t                        path, content;
    ngx_file_info_t                  fi;
    ngx_http_registry_state_file_t   file;

    if (ngx_http_registry_store_in_dir(st, &path, dir, NGX_HTTP_REGISTRY_STATE_FILE)
        == NULL)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_store_read_small(st, &path, sizeof(file),
                                            &content);
    if (rc != NGX_OK) {
        return rc;
    }

    if (content.len != sizeof(file)) {
        return NGX_DECLINED;
    }

    ngx_memcpy(&file, content.data, sizeof(file));

    if (ngx_memcmp(file.magic, ngx_http_registry_state_magic,
                   sizeof(file.magic))
        != 0
        || file.state.alg > NGX_HTTP_REGISTRY_SHA512
        || file.state.hash.alg != file.state.alg)
    {
        return NGX_DECLINED;
    }

    /* the state was not synced: after a crash it may be ahead of the data */

    if (ngx_http_registry_store_in_dir(st, &path, dir,
                                       NGX_HTTP_REGISTRY_UPLOAD_DATA)
        == NULL)
    {
        return NGX_ERROR;
    }

    if (ngx_file_info(path.data, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) < (off_t) file.state.offset)
    {
        ngx_log_error(NGX_LOG_WARN, st->log, 0,
                      "upload \"%V\": data shorter than its state, dropped",
                      dir);
        return NGX_DECLINED;
    }

    *state = file.state;

    return NGX_OK;
}


ngx_int_t
ngx_http_registry_store_random_hex(u_char *buf, size_t bytes)
{
    u_char  raw[32];

    if (bytes > sizeof(raw) || RAND_bytes(raw, bytes) != 1) {
        return NGX_ERROR;
    }

    ngx_hex_dump(buf, raw, bytes);

    return NGX_OK;
}


/* "<dir>/<file>", NUL-terminated */

u_char *
ngx_http_registry_store_in_dir(ngx_http_registry_store_t *st, ngx_str_t *out,
    ngx_str_t *dir, const char *file)
{
    u_char  *p;
    size_t   len;

    len = ngx_strlen(file);

    out->len = dir->len + 1 + len;
    out->data = ngx_pnalloc(st->pool, out->len + 1);
    if (out->data == NULL) {
        return NULL;
    }

    p = ngx_cpymem(out->data, dir->data, dir->len);
    *p++ = '/';
    p = ngx_cpymem(p, file, len);
    *p = '\0';

    return out->data;
}


/* ---- temporary files ---- */

/* a new file under _ngx_tmp/, open for writing, for a publish by rename */

ngx_int_t
ngx_http_registry_store_open_temp(ngx_http_registry_store_t *st,
    ngx_file_t *file)
{
    ngx_err_t  err;
    u_char     id[32];

    if (ngx_http_registry_store_random_hex(id, 16) != NGX_OK
        || ngx_http_registry_store_path(st, &file->name,
                                        NGX_HTTP_REGISTRY_TMP_DIR "/%*s",
                                        sizeof(id), id)
           == NULL)
    {
        return NGX_ERROR;
    }

    file->offset = 0;
    file->sys_offset = 0;
    file->log = st->log;

    file->fd = ngx_open_file(file->name.data, NGX_FILE_WRONLY,
                             NGX_FILE_CREATE_OR_OPEN | O_EXCL,
                             NGX_FILE_DEFAULT_ACCESS);

    if (file->fd == NGX_INVALID_FILE && ngx_errno == NGX_ENOENT) {
        (void) ngx_create_full_path(file->name.data, 0755);

        file->fd = ngx_open_file(file->name.data, NGX_FILE_WRONLY,
                                 NGX_FILE_CREATE_OR_OPEN | O_EXCL,
                                 NGX_FILE_DEFAULT_ACCESS);
    }

    if (file->fd == NGX_INVALID_FILE) {
        err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, st->log, err,
                      ngx_open_file_n " \"%s\" failed", file->name.data);
        ngx_set_errno(err);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_store_write_all(ngx_file_t *file, u_char *data,
    size_t len)
{
    if (len == 0) {
        return NGX_OK;
    }

    return (ngx_write_file(file, data, len, 0) == (ssize_t) len)
           ? NGX_OK : NGX_ERROR;
}


/* ---- stale uploads ---- */

/*
 * An upload is stale when nothing touched it for "expire" seconds: no
 * byte written to its data, no state saved (distribution's own uploads
 * have only data and startedat).  NGX_OK: stale; NGX_DECLINED: not.
 */

ngx_int_t
ngx_http_registry_store_upload_expired(ngx_http_registry_store_t *st,
    ngx_str_t *dir, time_t expire)
{
    time_t            latest;
    ngx_str_t         path;
    ngx_uint_t        i;
    ngx_file_info_t   fi;

    static char      *files[] = { NGX_HTTP_REGISTRY_UPLOAD_DATA,
                                  NGX_HTTP_REGISTRY_STATE_FILE, "startedat" };

    latest = 0;

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (ngx_http_registry_store_in_dir(st, &path, dir, files[i]) == NULL) {
            return NGX_ERROR;
        }

        if (ngx_file_info(path.data, &fi) != NGX_FILE_ERROR) {
            latest = ngx_max(latest, ngx_file_mtime(&fi));
        }
    }

    if (latest == 0) {
        /* half created, or half deleted: the directory's age decides */

        if (ngx_file_info(dir->data, &fi) == NGX_FILE_ERROR) {
            return NGX_DECLINED;
        }

        latest = ngx_file_mtime(&fi);
    }

    return (ngx_time() - latest > expire) ? NGX_OK : NGX_DECLINED;
}


/*
 * Deletes every stale upload of the store, and temporary files a crash
 * left behind.  An upload a request is writing right now (its data file
 * locked) is left alone.
 */

ngx_int_t
ngx_http_registry_store_purge_uploads(ngx_http_registry_store_t *st,
    time_t expire)
{
    ngx_str_t    dir, *name, *id;
    ngx_uint_t   i, j;
    ngx_array_t  names, ids;

    if (ngx_array_init(&names, st->pool, 16, sizeof(ngx_str_t)) != NGX_OK
        || ngx_http_registry_store_list_repositories(st, &names) != NGX_OK)
    {
        return NGX_ERROR;
    }

    name = names.elts;

    for (i = 0; i < names.nelts; i++) {
        if (ngx_array_init(&ids, st->pool, 4, sizeof(ngx_str_t)) != NGX_OK
            || ngx_http_registry_store_path(st, &dir, "repositories/%V/_uploads",
                                            &name[i]) == NULL)
        {
            return NGX_ERROR;
        }

        if (ngx_http_registry_store_list_dir(st, &dir, &ids) == NGX_ERROR) {
            continue;
        }

        id = ids.elts;

        for (j = 0; j < ids.nelts; j++) {
            if (ngx_http_registry_store_upload_dir(st, &dir, &name[i], &id[j])
                == NULL)
            {
                return NGX_ERROR;
            }

            if (ngx_http_registry_store_upload_expired(st, &dir, expire)
                == NGX_OK)
            {
                (void) ngx_http_registry_store_purge_upload(st, &dir);
            }
        }
    }

    return ngx_http_registry_store_purge_temp(st, expire);
}


/* NGX_DECLINED: a request holds the upload */

ngx_int_t
ngx_http_registry_store_purge_upload(ngx_http_registry_store_t *st,
    ngx_str_t *dir)
{
    ngx_fd_t    fd;
    ngx_int_t   rc;
    ngx_str_t   data;

    if (ngx_http_registry_store_in_dir(st, &data, dir,
                                       NGX_HTTP_REGISTRY_UPLOAD_DATA)
        == NULL)
    {
        return NGX_ERROR;
    }

    fd = ngx_open_file(data.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd != NGX_INVALID_FILE && flock(fd, LOCK_EX | LOCK_NB) == -1) {
        (void) ngx_close_file(fd);
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_INFO, st->log, 0,
                  "registry: purging stale upload \"%V\"", dir);

    rc = ngx_http_registry_store_delete_tree(st, dir);

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }

    return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}


static ngx_int_t
ngx_http_registry_store_purge_temp(ngx_http_registry_store_t *st,
    time_t expire)
{
    ngx_str_t         dir, path, *name;
    ngx_uint_t        i;
    ngx_array_t       names;
    ngx_file_info_t   fi;

    if (ngx_array_init(&names, st->pool, 4, sizeof(ngx_str_t)) != NGX_OK
        || ngx_http_registry_store_path(st, &dir, NGX_HTTP_REGISTRY_TMP_DIR)
           == NULL)
    {
        return NGX_ERROR;
    }

    if (ngx_http_registry_store_list_dir(st, &dir, &names) != NGX_OK) {
        return NGX_OK;
    }

    name = names.elts;

    for (i = 0; i < names.nelts; i++) {
        if (ngx_http_registry_store_path(st, &path,
                                         NGX_HTTP_REGISTRY_TMP_DIR "/%V",
                                         &name[i])
            == NULL)
        {
            return NGX_ERROR;
        }

        if (ngx_file_info(path.data, &fi) != NGX_FILE_ERROR
            && ngx_time() - ngx_file_mtime(&fi) > expire)
        {
            (void) ngx_delete_file(path.data);
        }
    }

    return NGX_OK;
}


/* ---- the referrers index ---- */

/*
 * repositories/<name>/_ngx_referrers/<subject alg>/<subject hex>/ holds one
 * file per referrer, "<alg>-<hex>", with its descriptor as JSON; distribution
 * skips "_" directories.  An entry is a fact about immutable manifest bytes,
 * so it is only ever missing or dangling (its revision deleted), never wrong.
 * "built" is stamped with the mtime the revisions directories had when the
 * index was last complete; a later mtime means someone else (distribution)
 * added or removed revisions, and the index is rebuilt from the manifests.
 */

u_char *
ngx_http_registry_store_referrers_dir(ngx_http_registry_store_t *st,
    ngx_str_t *out, ngx_str_t *name, ngx_http_registry_digest_t *subject)
{
    return ngx_http_registry_store_path(st, out,
                                   "repositories/%V/_ngx_referrers/%V/%V", name,
                                   ngx_http_registry_alg_name(subject->alg),
                                   &subject->hex);
}


u_char *
ngx_http_registry_store_referrer_entry(ngx_http_registry_store_t *st,
    ngx_str_t *out, ngx_str_t *name, ngx_http_registry_digest_t *subject,
    ngx_http_registry_digest_t *referrer)
{
    return ngx_http_registry_store_path(st, out,
                                   "repositories/%V/_ngx_referrers/%V/%V/%V-%V",
                                   name,
                                   ngx_http_registry_alg_name(subject->alg),
                                   &subject->hex,
                                   ngx_http_registry_alg_name(referrer->alg),
                                   &referrer->hex);
}


/*
 * NGX_OK: the index covers every revision; NGX_DECLINED: it must be
 * rebuilt, and *asof is what to stamp it with before the rebuild reads
 * the revisions.
 */

ngx_int_t
ngx_http_registry_store_referrers_current(ngx_http_registry_store_t *st,
    ngx_str_t *name, struct timespec *asof)
{
    ngx_str_t         path;
    ngx_uint_t        alg;
    ngx_file_info_t   fi;

    asof->tv_sec = 0;
    asof->tv_nsec = 0;

    for (alg = NGX_HTTP_REGISTRY_SHA256; alg <= NGX_HTTP_REGISTRY_SHA512; alg++)
    {
        if (ngx_http_registry_store_path(st, &path,
                                         "repositories/%V/_manifests/"
                                         "revisions/%V", name,
                                         ngx_http_registry_alg_name(alg))
            == NULL)
        {
            return NGX_ERROR;
        }

        if (ngx_file_info(path.data, &fi) != NGX_FILE_ERROR
            && ngx_http_registry_timespec_after(&fi.st_mtim, asof))
        {
            *asof = fi.st_mtim;
        }
    }

    if (ngx_http_registry_store_path(st, &path,
                                     "repositories/%V/_ngx_referrers/built",
                                     name)
        == NULL)
    {
        return NGX_ERROR;
    }

    if (ngx_file_info(path.data, &fi) == NGX_FILE_ERROR
        || ngx_http_registry_timespec_after(asof, &fi.st_mtim))
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_registry_store_referrers_stamp(ngx_http_registry_store_t *st,
    ngx_str_t *name, struct timespec *asof)
{
    ngx_fd_t         fd;
    ngx_str_t        path;
    struct timespec  times[2];

    if (ngx_http_registry_store_path(st, &path,
                                     "repositories/%V/_ngx_referrers/built",
                                     name)
        == NULL)
    {
        return NGX_ERROR;
    }

    fd = ngx_open_file(path.data, NGX_FILE_WRONLY, NGX_FILE_CREATE_OR_OPEN,
                       NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE && ngx_errno == NGX_ENOENT) {
        (void) ngx_create_full_path(path.data, 0755);

        fd = ngx_open_file(path.data, NGX_FILE_WRONLY,
                           NGX_FILE_CREATE_OR_OPEN, NGX_FILE_DEFAULT_ACCESS);
    }

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, st->log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", path.data);
        return NGX_ERROR;
    }

    (void) ngx_close_file(fd);

    times[0] = *asof;
    times[1] = *asof;

    if (utimensat(AT_FDCWD, (char *) path.data, times, 0) == -1) {
        ngx_log_error(NGX_LOG_CRIT, st->log, ngx_errno,
                      "utimensat(\"%s\") failed", path.data);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the repository's manifest digests, as revision links name them */

ngx_int_t
ngx_http_registry_store_list_revisions(ngx_http_registry_store_t *st,
    ngx_str_t *name, ngx_array_t *digests)
{
    u_char                      *p;
    ngx_str_t                    dir, text, *hex;
    ngx_uint_t                   alg, i;
    ngx_array_t                  names;
    ngx_http_registry_digest_t  *digest;

    for (alg = NGX_HTTP_REGISTRY_SHA256; alg <= NGX_HTTP_REGISTRY_SHA512; alg++)
    {
        if (ngx_array_init(&names, st->pool, 16, sizeof(ngx_str_t)) != NGX_OK
            || ngx_http_registry_store_path(st, &dir,
                                            "repositories/%V/_manifests/"
                                            "revisions/%V", name,
                                            ngx_http_registry_alg_name(alg))
               == NULL)
        {
            return NGX_ERROR;
        }

        if (ngx_http_registry_store_list_dir(st, &dir, &names) == NGX_ERROR) {
            return NGX_ERROR;
        }

        hex = names.elts;

        for (i = 0; i < names.nelts; i++) {
            text.len = NGX_HTTP_REGISTRY_DIGEST_MAX_LEN + 1;
            text.data = ngx_pnalloc(st->pool, text.len);
            if (text.data == NULL) {
                return NGX_ERROR;
            }

            p = ngx_slprintf(text.data, text.data + text.len, "%V:%V",
                             ngx_http_registry_alg_name(alg), &hex[i]);
            text.len = p - text.data;

            digest = ngx_array_push(digests);
            if (digest == NULL) {
                return NGX_ERROR;
            }

            if (ngx_http_registry_parse_digest(&text, digest) != NGX_OK) {
                digests->nelts--;
            }
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_timespec_after(struct timespec *a, struct timespec *b)
{
    return a->tv_sec > b->tv_sec
           || (a->tv_sec == b->tv_sec && a->tv_nsec > b->tv_nsec);
}
