
/*
 * ngx_http_registry_module: uploads (distribution's blobwriter.go).
 *
 * A session lives on disk under _uploads/<id>/: its data file, startedat
 * and the module's state, the offset and the hash state at the end of the
 * last complete chunk.  So its chunks may reach any worker, any nginx
 * sharing the store, or an nginx restarted since.  A request takes the
 * session by an flock() of the data file, held until it saves, aborts or
 * releases; what it wrote beyond the saved offset is cut off again when
 * it ends any other way (abort), so a failed or interrupted chunk frees
 * its space at once and the session resumes where it was.
 *
 * The state is replaced by rename(2) but not synced, so a chunk costs no
 * journal commit: after a power cut a session may have lost its latest
 * chunks, and one whose data file is shorter than its state is unknown,
 * never published wrong.  A monolithic upload is a temporary file that
 * nobody else can see.  Committing checks the digest, syncs the bytes and
 * renames them into blobs/.
 */


#include "ngx_http_registry_store.h"

#include <sys/file.h>
#include <jansson.h>


#define NGX_HTTP_REGISTRY_REHASH_BUF   (1024 * 1024)

/*
 * Writeback of an upload's bytes is started every WRITEBACK bytes, and
 * the bytes older than DIRTY_MAX are waited for, so that the final
 * fsync() finds at most that much to write, however big the blob.
 */
#define NGX_HTTP_REGISTRY_WRITEBACK    (8 * 1024 * 1024)
#define NGX_HTTP_REGISTRY_DIRTY_MAX    (256 * 1024 * 1024)


/*
 * What a purge removed: counted for a job (purge-uploads), which reports
 * it; the periodic sweep has no job and counts nothing.
 */

typedef struct {
    ngx_http_registry_job_t   *job;       /* NULL: the sweep */
    json_t                    *uploads;   /* [{repository, id, bytes}] */
    uint64_t                   bytes;
    uint64_t                   temp;      /* temporary files removed */
    uint64_t                   temp_bytes;
} ngx_http_registry_purge_t;


/* the phases of purge-uploads, as the jobs' runner names them */

static const char  *ngx_http_registry_purge_phases[] = {
    "repositories", "uploads", "temporary files", NULL
};


const char **
ngx_http_registry_store_purge_phases(ngx_http_registry_job_t *job)
{
    return ngx_http_registry_purge_phases;
}


static ngx_int_t ngx_http_registry_upload_path(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, const char *file, ngx_str_t *path);
static ngx_int_t ngx_http_registry_upload_expired(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, time_t expire);
static ngx_int_t ngx_http_registry_upload_load(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up);
static ngx_int_t ngx_http_registry_upload_store_state(
    ngx_http_registry_op_t *op, ngx_http_registry_upload_t *up,
    ngx_http_registry_upload_state_t *state);
static ngx_int_t ngx_http_registry_upload_lock(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up);
static void ngx_http_registry_upload_unlock(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up);
static void ngx_http_registry_upload_writeback(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up);
static ngx_int_t ngx_http_registry_upload_digest(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, ngx_uint_t alg,
    ngx_http_registry_digest_t *actual);
static ngx_int_t ngx_http_registry_upload_remove(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up);
static ngx_int_t ngx_http_registry_purge(ngx_http_registry_op_t *op,
    time_t expire, ngx_http_registry_purge_t *purge);
static ngx_int_t ngx_http_registry_purge_repository(ngx_http_registry_op_t *op,
    ngx_str_t *name, time_t expire, ngx_http_registry_purge_t *purge);
static ngx_int_t ngx_http_registry_purge_upload(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, ngx_http_registry_purge_t *purge);
static ngx_int_t ngx_http_registry_purge_temp(ngx_http_registry_op_t *op,
    time_t expire, ngx_http_registry_purge_t *purge);
static ngx_int_t ngx_http_registry_purge_report(ngx_http_registry_op_t *op,
    ngx_http_registry_purge_t *purge);


/*
 * A new session: its directory with an empty data file, startedat
 * (distribution's upload purge reads it) and the initial state, written
 * last: a session exists for this module once its state does.  The id is
 * chosen here; up->state.alg is the session's algorithm.
 */

ngx_int_t
ngx_http_registry_store_upload_create(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up)
{
    u_char     *p;
    ngx_fd_t    fd;
    ngx_err_t   err;
    ngx_int_t   existed;
    ngx_str_t   dir, path;
    ngx_tm_t    tm;
    u_char      startedat[sizeof("1970-01-01T00:00:00Z")];

    if (ngx_http_registry_new_upload_id(op->pool, &up->id) != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    existed = ngx_http_registry_store_is_repository(op, &up->name);

    if (existed == NGX_ERROR
        || ngx_http_registry_upload_path(op, up, NULL, &dir) != NGX_OK
        || ngx_http_registry_file_mkdirs(op, &dir, 0) != NGX_OK
        || ngx_http_registry_upload_path(op, up, NGX_HTTP_REGISTRY_UPLOAD_DATA,
                                         &path)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    fd = ngx_http_registry_file_open(op, &path, O_WRONLY|O_CREAT|O_EXCL,
                                     NGX_FILE_DEFAULT_ACCESS);
    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_open_file_n " \"%V\" failed", &path);
        return ngx_http_registry_op_syserr(op, err);
    }

    (void) close(fd);

    ngx_gmtime(ngx_time(), &tm);
    p = ngx_sprintf(startedat, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                    tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                    tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);

    up->state.offset = 0;
    ngx_http_registry_hash_init(&up->state.hash, up->state.alg);

    if (ngx_http_registry_upload_path(op, up, NGX_HTTP_REGISTRY_UPLOAD_START,
                                      &path)
        != NGX_OK
        || ngx_http_registry_file_write(op, &path, startedat, p - startedat, 0)
           != NGX_OK
        || ngx_http_registry_upload_store_state(op, up, &up->state) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_registry_store_created(op, &up->name, existed == NGX_OK);

    return NGX_OK;
}


/*
 * Where a session stands, without taking it: NGX_DECLINED when it is
 * unknown, expired or unreadable (op->fault.detail says which).
 */

ngx_int_t
ngx_http_registry_store_upload_status(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, time_t expire)
{
    ngx_int_t  rc;

    rc = ngx_http_registry_upload_expired(op, up, expire);

    if (rc == NGX_OK) {
        op->fault.detail = "upload expired";
        return NGX_DECLINED;
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    return ngx_http_registry_upload_load(op, up);
}


/*
 * Takes a session for this request: its data file locked (a second
 * request for the same session, in any worker or host, is refused while
 * this one holds it), its state read under the lock, so it is the latest,
 * and bytes a crash left beyond the state cut off.  An expired session is
 * removed.  NGX_DECLINED: no such session.
 */

ngx_int_t
ngx_http_registry_store_upload_open(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, time_t expire)
{
    ngx_int_t        rc;
    ngx_err_t        err;
    ngx_file_info_t  fi;

    rc = ngx_http_registry_upload_lock(op, up);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_registry_upload_expired(op, up, expire);

    if (rc == NGX_OK) {
        (void) ngx_http_registry_upload_remove(op, up);
        op->fault.detail = "upload expired";
        return NGX_DECLINED;
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_upload_load(op, up);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_fd_info(up->data.fd, &fi) == NGX_FILE_ERROR) {
        err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_fd_info_n " \"%V\" failed", &up->data.path);
        return ngx_http_registry_op_syserr(op, err);
    }

    if (ngx_file_size(&fi) > (off_t) up->state.offset
        && ftruncate(up->data.fd, up->state.offset) == -1)
    {
        err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      "ftruncate() \"%V\" failed", &up->data.path);
        return ngx_http_registry_op_syserr(op, err);
    }

    up->written = 0;
    up->synced = up->state.offset;

    return NGX_OK;
}


/* a monolithic upload: a temporary file, hashed with up->state.alg */

ngx_int_t
ngx_http_registry_store_upload_temp(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up)
{
    ngx_str_null(&up->id);

    up->state.offset = 0;
    up->written = 0;
    up->synced = 0;
    ngx_http_registry_hash_init(&up->state.hash, up->state.alg);

    return ngx_http_registry_file_temp(op, &up->data);
}


/* the next bytes of the body: written after the ones before, and hashed */

ngx_int_t
ngx_http_registry_store_upload_append(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, u_char *data, size_t len)
{
    if (ngx_http_registry_file_write_all(op, &up->data, data, len,
                                         up->state.offset + up->written)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!up->rehash) {
        ngx_http_registry_hash_update(&up->state.hash, data, len);
    }

    up->written += len;

    ngx_http_registry_upload_writeback(op, up);

    return NGX_OK;
}


/*
 * Starts the disk writing the bytes that came since the last call, and
 * waits for bytes more than DIRTY_MAX behind, so that the push goes at
 * the disk's pace and its final fsync() has little left to do.  Only in
 * a thread (up->writeback): the wait blocks.
 */

static void
ngx_http_registry_upload_writeback(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up)
{
#if (NGX_LINUX)
    off_t  end;

    end = up->state.offset + up->written;

    if (!up->writeback || end - up->synced < NGX_HTTP_REGISTRY_WRITEBACK) {
        return;
    }

    (void) sync_file_range(up->data.fd, up->synced, end - up->synced,
                           SYNC_FILE_RANGE_WRITE);

    if (up->synced > NGX_HTTP_REGISTRY_DIRTY_MAX) {
        (void) sync_file_range(up->data.fd, 0,
                               up->synced - NGX_HTTP_REGISTRY_DIRTY_MAX,
                               SYNC_FILE_RANGE_WAIT_BEFORE
                               |SYNC_FILE_RANGE_WRITE
                               |SYNC_FILE_RANGE_WAIT_AFTER);
    }

    up->synced = end;
#endif
}


/*
 * The chunk is complete: its end is the session's new state, and the
 * session is released before the answer goes (a client may send its next
 * chunk the moment it reads it).
 */

ngx_int_t
ngx_http_registry_store_upload_save(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up)
{
    ngx_http_registry_upload_state_t  state;

    state = up->state;
    state.offset += up->written;

    if (ngx_http_registry_upload_store_state(op, up, &state) != NGX_OK) {
        (void) ngx_http_registry_store_upload_abort(op, up);
        return NGX_ERROR;
    }

    up->state = state;
    up->written = 0;

    ngx_http_registry_upload_unlock(op, up);

    return NGX_OK;
}


/*
 * The request ends without saving: what it wrote goes (a monolithic
 * upload's file, a session's bytes past its state), so the space is free
 * at once, and the session is released where it was.
 */

ngx_int_t
ngx_http_registry_store_upload_abort(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up)
{
    ngx_err_t  err;

    if (up->id.len == 0) {
        (void) ngx_http_registry_file_close(op, &up->data);
        (void) ngx_http_registry_file_unlink(op, &up->data.path, 0);
        return NGX_OK;
    }

    if (!up->locked) {
        return NGX_OK;
    }

    up->written = 0;

    if (ftruncate(up->data.fd, up->state.offset) == -1) {
        err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      "ftruncate() \"%V\" failed", &up->data.path);
        ngx_http_registry_upload_unlock(op, up);
        return ngx_http_registry_op_syserr(op, err);
    }

    ngx_http_registry_upload_unlock(op, up);

    return NGX_OK;
}


/*
 * The last byte is in: the bytes must hash to the expected digest, then
 * they are synced, renamed into blobs/ (identical bytes if another push
 * got there first) and linked into the repository, and the session goes.
 * A mismatch removes the upload and fails with DIGEST_INVALID, the actual
 * digest as detail.  A session hashed with another algorithm than the
 * expected digest's (opened without digest-algorithm) is hashed again.
 */

ngx_int_t
ngx_http_registry_store_upload_commit(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, ngx_http_registry_digest_t *expected)
{
    ngx_str_t                   blob;
    ngx_http_registry_digest_t  actual;

    if (ngx_http_registry_upload_digest(op, up, expected->alg, &actual)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!ngx_http_registry_digest_equal(&actual, expected)) {
        (void) ngx_http_registry_upload_remove(op, up);

        return ngx_http_registry_op_fail(op, NGX_HTTP_REGISTRY_DIGEST_INVALID,
                                         (char *) actual.text.data);
    }

    /*
     * The power-cut promise of a 201 (README, "Durability"): the bytes are
     * synced before their rename (else the name could survive with fewer
     * bytes), the rename is made durable by syncing blobs/ directories it
     * needed (publish), then comes the layer link, itself durable
     * (file_write_link); all before the response.
     */

    if (ngx_http_registry_file_sync(op, &up->data) != NGX_OK
        || ngx_http_registry_path_blob(op, &blob, expected) != NGX_OK
        || ngx_http_registry_file_publish(op, &up->data.path, &blob, 1)
           != NGX_OK
        || ngx_http_registry_store_blob_link(op, &up->name, expected)
           != NGX_OK)
    {
        (void) ngx_http_registry_store_upload_abort(op, up);
        return NGX_ERROR;
    }

    if (up->id.len) {
        (void) ngx_http_registry_upload_remove(op, up);
    }

    up->state.offset += up->written;
    up->written = 0;

    return NGX_OK;
}


/* the digest of all the upload's bytes, NUL-terminated */

static ngx_int_t
ngx_http_registry_upload_digest(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, ngx_uint_t alg,
    ngx_http_registry_digest_t *actual)
{
    off_t                      offset, total;
    u_char                    *buf;
    ssize_t                    n;
    ngx_err_t                  err;
    ngx_http_registry_hash_t   hash;

    if (!up->rehash && up->state.hash.alg == alg) {
        hash = up->state.hash;
        goto final;
    }

    /* the one case where bytes are read again: see the comment above */

    buf = ngx_alloc(NGX_HTTP_REGISTRY_REHASH_BUF, op->log);
    if (buf == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    ngx_http_registry_hash_init(&hash, alg);

    total = up->state.offset + up->written;

    for (offset = 0; offset < total; offset += n) {
        n = pread(up->data.fd, buf,
                  ngx_min(total - offset, NGX_HTTP_REGISTRY_REHASH_BUF),
                  offset);

        if (n <= 0) {
            err = (n == 0) ? EIO : ngx_errno;
            ngx_free(buf);
            ngx_log_error(NGX_LOG_CRIT, op->log, err,
                          "pread() \"%V\" failed", &up->data.path);
            return ngx_http_registry_op_syserr(op, err);
        }

        ngx_http_registry_hash_update(&hash, buf, n);
    }

    ngx_free(buf);

final:

    if (ngx_http_registry_hash_final(&hash, op->pool, actual) != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    return NGX_OK;
}


/*
 * Cancels a session, under its lock: a request writing to it is never
 * pulled from under.  NGX_DECLINED: no such session.
 */

ngx_int_t
ngx_http_registry_store_upload_cancel(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up)
{
    ngx_int_t  rc;

    rc = ngx_http_registry_upload_lock(op, up);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_registry_upload_remove(op, up);
}


/* closes the data file, which releases the lock (a pool cleanup) */

void
ngx_http_registry_store_upload_release(ngx_http_registry_upload_t *up,
    ngx_log_t *log)
{
    if (up->data.fd != NGX_INVALID_FILE && close(up->data.fd) == -1) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", &up->data.path);
    }

    up->data.fd = NGX_INVALID_FILE;
    up->locked = 0;
}


/* ---- the session's files ---- */

static ngx_int_t
ngx_http_registry_upload_path(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, const char *file, ngx_str_t *path)
{
    return ngx_http_registry_path_upload(op, path, &up->name, &up->id, file);
}


/*
 * Opens the data file and takes its lock.  NGX_DECLINED: no such
 * session; a session another request holds fails with
 * BLOB_UPLOAD_INVALID.
 */

static ngx_int_t
ngx_http_registry_upload_lock(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up)
{
    ngx_err_t  err;

    if (ngx_http_registry_upload_path(op, up, NGX_HTTP_REGISTRY_UPLOAD_DATA,
                                      &up->data.path)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    up->data.fd = ngx_http_registry_file_open(op, &up->data.path, O_RDWR, 0);

    if (up->data.fd == NGX_INVALID_FILE) {
        err = ngx_errno;

        /*
         * ESTALE: another host committed or removed the session since
         * this one looked it up (the data file is never replaced)
         */

        if (err == NGX_ENOENT || err == NGX_ENOTDIR || err == NGX_ELOOP
            || err == ESTALE)
        {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      ngx_open_file_n " \"%V\" failed", &up->data.path);
        return ngx_http_registry_op_syserr(op, err);
    }

    if (flock(up->data.fd, LOCK_EX | LOCK_NB) == -1) {
        err = ngx_errno;

        if (err == NGX_EAGAIN) {
            return ngx_http_registry_op_fail(op,
                                        NGX_HTTP_REGISTRY_BLOB_UPLOAD_INVALID,
                                        "another request is writing to this "
                                        "upload");
        }

        ngx_log_error(NGX_LOG_CRIT, op->log, err,
                      "flock(\"%V\") failed", &up->data.path);
        return ngx_http_registry_op_syserr(op, err);
    }

    up->locked = 1;

    return NGX_OK;
}


static void
ngx_http_registry_upload_unlock(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up)
{
    if (!up->locked) {
        return;
    }

    if (flock(up->data.fd, LOCK_UN) == -1) {
        ngx_log_error(NGX_LOG_ALERT, op->log, ngx_errno,
                      "flock(\"%V\", LOCK_UN) failed", &up->data.path);
    }

    up->locked = 0;
}


/*
 * A session is stale when nothing touched it for "expire" seconds: no
 * byte written to its data, no state saved (distribution's own sessions
 * have only data and startedat).  NGX_OK: stale; NGX_DECLINED: not, or
 * no such session.
 */

static ngx_int_t
ngx_http_registry_upload_expired(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, time_t expire)
{
    time_t           latest;
    ngx_int_t        rc;
    ngx_str_t        path;
    ngx_uint_t       i;
    ngx_file_info_t  fi;

    static const char  *files[] = { NGX_HTTP_REGISTRY_UPLOAD_DATA,
                                    NGX_HTTP_REGISTRY_UPLOAD_STATE,
                                    NGX_HTTP_REGISTRY_UPLOAD_START, NULL };

    latest = 0;

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {

        /* with no file left, half created or half deleted: the directory */

        if (files[i] == NULL && latest) {
            break;
        }

        if (ngx_http_registry_upload_path(op, up, files[i], &path) != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_file_stat(op, &path, &fi);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK) {
            latest = ngx_max(latest, ngx_file_mtime(&fi));
        }
    }

    if (latest == 0) {
        return NGX_DECLINED;
    }

    return (ngx_time() - latest > expire) ? NGX_OK : NGX_DECLINED;
}


/*
 * Reads and checks the state.  NGX_DECLINED: no session, or one this
 * build cannot resume: another format, a hash state that is not the one
 * of its offset (a corrupted file must never reach the hash code), or a
 * data file shorter than its state (the state is not synced: after a
 * crash it may be ahead of the data).
 */

static ngx_int_t
ngx_http_registry_upload_load(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up)
{
    ngx_int_t                          rc;
    ngx_str_t                          path, content;
    ngx_file_info_t                    fi;
    ngx_http_registry_upload_state_t   state;

    if (ngx_http_registry_upload_path(op, up, NGX_HTTP_REGISTRY_UPLOAD_STATE,
                                      &path)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_read(op, &path,
                                     sizeof(ngx_http_registry_state_record_t),
                                     &content);

    if (rc == NGX_ERROR && op->fault.errnum == 0) {
        rc = NGX_DECLINED;      /* not a file of the size of a state */
    }

    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_registry_state_decode(content.data, content.len, &state)
        != NGX_OK)
    {
        goto invalid;
    }

    if (ngx_http_registry_upload_path(op, up, NGX_HTTP_REGISTRY_UPLOAD_DATA,
                                      &path)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_stat(op, &path, &fi);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_file_size(&fi) < (off_t) state.offset) {
        ngx_log_error(NGX_LOG_WARN, op->log, 0,
                      "registry: upload \"%V\" of \"%V\": data shorter than "
                      "its state (a crash?), dropped", &up->id, &up->name);
        return NGX_DECLINED;
    }

    up->state = state;

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_ERR, op->log, 0,
                  "registry: upload \"%V\" of \"%V\" has an invalid state "
                  "file, treated as unknown", &up->id, &up->name);

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_registry_upload_store_state(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, ngx_http_registry_upload_state_t *state)
{
    ngx_str_t                          path;
    ngx_http_registry_state_record_t   record;

    if (ngx_http_registry_upload_path(op, up, NGX_HTTP_REGISTRY_UPLOAD_STATE,
                                      &path)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_registry_state_encode(state, &record);

    return ngx_http_registry_file_write(op, &path, (u_char *) &record,
                                        sizeof(record), 0);
}


/* the session's directory, or a monolithic upload's file, goes */

static ngx_int_t
ngx_http_registry_upload_remove(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up)
{
    ngx_str_t  dir;

    if (up->id.len == 0) {
        return ngx_http_registry_store_upload_abort(op, up);
    }

    if (ngx_http_registry_upload_path(op, up, NULL, &dir) != NGX_OK) {
        return NGX_ERROR;
    }

    return (ngx_http_registry_file_remove_tree(op, &dir) == NGX_ERROR)
           ? NGX_ERROR : NGX_OK;
}


/* ---- stale uploads ---- */

/*
 * Deletes every stale session of the store, and temporary files a crash
 * left behind.  A session a request holds (its data file locked) is left
 * alone.  Walks the store: a thread pool task.
 */

ngx_int_t
ngx_http_registry_store_purge_uploads(ngx_http_registry_op_t *op,
    time_t expire)
{
    ngx_http_registry_purge_t  purge;

    ngx_memzero(&purge, sizeof(ngx_http_registry_purge_t));

    return ngx_http_registry_purge(op, expire, &purge);
}


/*
 * The job "purge-uploads": the same for sessions untouched for
 * job->older_than, with progress (the repositories are listed, then
 * purged one at a time, then the temporary files) and a report of each
 * session removed and of the bytes freed.
 */

ngx_int_t
ngx_http_registry_store_purge_job(ngx_http_registry_op_t *op,
    ngx_http_registry_job_t *job)
{
    ngx_int_t                  rc;
    ngx_http_registry_purge_t  purge;

    ngx_memzero(&purge, sizeof(ngx_http_registry_purge_t));

    purge.job = job;
    purge.uploads = json_array();
    if (purge.uploads == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    rc = ngx_http_registry_purge(op, job->older_than, &purge);

    if (ngx_http_registry_purge_report(op, &purge) != NGX_OK) {
        return NGX_ERROR;
    }

    return rc;
}


static ngx_int_t
ngx_http_registry_purge(ngx_http_registry_op_t *op, time_t expire,
    ngx_http_registry_purge_t *purge)
{
    ngx_str_t                     *name;
    ngx_uint_t                     i;
    ngx_array_t                    names;
    ngx_http_registry_progress_t  *progress;

    if (ngx_array_init(&names, op->pool, 64, sizeof(ngx_str_t)) != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (ngx_http_registry_store_list_repositories(op, &names) != NGX_OK) {
        return NGX_ERROR;
    }

    progress = purge->job ? purge->job->progress : NULL;

    if (progress) {
        progress->total = names.nelts;
        progress->phase = 1;
    }

    name = names.elts;

    for (i = 0; i < names.nelts; i++) {

        if (progress && progress->cancel) {
            return NGX_OK;
        }

        if (ngx_http_registry_purge_repository(op, &name[i], expire, purge)
            == NGX_ERROR)
        {
            return NGX_ERROR;
        }

        if (progress) {
            progress->done = i + 1;
        }
    }

    return ngx_http_registry_purge_temp(op, expire, purge);
}


static ngx_int_t
ngx_http_registry_purge_repository(ngx_http_registry_op_t *op,
    ngx_str_t *name, time_t expire, ngx_http_registry_purge_t *purge)
{
    ngx_int_t                    rc;
    ngx_str_t                    dir, *id;
    ngx_uint_t                   i;
    ngx_array_t                  ids;
    ngx_http_registry_upload_t   up;

    if (ngx_array_init(&ids, op->pool, 4, sizeof(ngx_str_t)) != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (ngx_http_registry_path_uploads(op, &dir, name) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_list(op, &dir, NGX_HTTP_REGISTRY_LIST_DIRS,
                                     &ids);
    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    id = ids.elts;

    for (i = 0; i < ids.nelts; i++) {
        ngx_memzero(&up, sizeof(ngx_http_registry_upload_t));
        up.name = *name;
        up.id = id[i];
        up.data.fd = NGX_INVALID_FILE;

        if (ngx_http_registry_upload_expired(op, &up, expire) != NGX_OK) {
            continue;
        }

        /* a session's data may be gone already (half deleted) */

        rc = ngx_http_registry_upload_lock(op, &up);

        if (rc != NGX_ERROR) {
            rc = ngx_http_registry_purge_upload(op, &up, purge);
        }

        ngx_http_registry_store_upload_release(&up, op->log);

        if (rc == NGX_ERROR && op->fault.errnum == NGX_ENOMEM) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* a stale session, locked: its bytes are counted before it goes */

static ngx_int_t
ngx_http_registry_purge_upload(ngx_http_registry_op_t *op,
    ngx_http_registry_upload_t *up, ngx_http_registry_purge_t *purge)
{
    off_t             size;
    json_t           *entry;
    ngx_file_info_t   fi;

    ngx_log_error(NGX_LOG_INFO, op->log, 0,
                  "registry: purging stale upload \"%V\" of \"%V\"",
                  &up->id, &up->name);

    size = 0;

    if (purge->job && up->data.fd != NGX_INVALID_FILE
        && ngx_fd_info(up->data.fd, &fi) != NGX_FILE_ERROR)
    {
        size = ngx_file_size(&fi);
    }

    if (ngx_http_registry_upload_remove(op, up) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (purge->job == NULL) {
        return NGX_OK;
    }

    entry = json_pack("{s:s%,s:s%,s:I}",
                      "repository", up->name.data, up->name.len,
                      "id", up->id.data, up->id.len,
                      "bytes", (json_int_t) size);

    if (entry == NULL || json_array_append_new(purge->uploads, entry) != 0) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    purge->bytes += size;

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_purge_temp(ngx_http_registry_op_t *op, time_t expire,
    ngx_http_registry_purge_t *purge)
{
    ngx_int_t                      rc;
    ngx_str_t                      dir, path, *name;
    ngx_uint_t                     i;
    ngx_array_t                    names;
    ngx_file_info_t                fi;
    ngx_http_registry_progress_t  *progress;

    if (ngx_array_init(&names, op->pool, 4, sizeof(ngx_str_t)) != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (ngx_http_registry_path_temp(op, &dir, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_list(op, &dir, NGX_HTTP_REGISTRY_LIST_FILES,
                                     &names);
    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    progress = purge->job ? purge->job->progress : NULL;

    if (progress) {
        progress->done = 0;
        progress->total = names.nelts;
        progress->phase = 2;
    }

    name = names.elts;

    for (i = 0; i < names.nelts; i++) {

        if (progress && progress->cancel) {
            return NGX_OK;
        }

        if (ngx_http_registry_path_temp(op, &path, &name[i]) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_http_registry_file_stat(op, &path, &fi) == NGX_OK
            && ngx_time() - ngx_file_mtime(&fi) > expire
            && ngx_http_registry_file_unlink(op, &path, 0) == NGX_OK)
        {
            purge->temp++;
            purge->temp_bytes += ngx_file_size(&fi);
        }

        if (progress) {
            progress->done = i + 1;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_purge_report(ngx_http_registry_op_t *op,
    ngx_http_registry_purge_t *purge)
{
    json_t  *report;

    report = purge->job->report;

    if (json_object_set_new(report, "older_than",
                            json_integer(purge->job->older_than))
        != 0
        || json_object_set_new(report, "removed",
                               json_integer(json_array_size(purge->uploads)))
           != 0
        || json_object_set_new(report, "bytes",
                               json_integer((json_int_t) purge->bytes))
           != 0
        || json_object_set_new(report, "uploads", purge->uploads) != 0
        || json_object_set_new(report, "temp_files",
                               json_integer((json_int_t) purge->temp))
           != 0
        || json_object_set_new(report, "temp_bytes",
                               json_integer((json_int_t) purge->temp_bytes))
           != 0)
    {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    return NGX_OK;
}
