
/*
 * ngx_http_registry_module: fsck, the store's checker (a maintenance job,
 * run in a thread of the pool by the admin location).
 *
 * Phases, each walking what it checks and nothing else:
 *
 *   repositories  each repository of store_list_repositories(), in order:
 *                 its _layers links (each must name its own digest, and
 *                 the blob's bytes must exist, or be the gc's tombstone),
 *                 its _manifests/revisions (the bytes must exist; each
 *                 manifest is read once and its config and layers must
 *                 be linked in the repository with their bytes present,
 *                 an index's children must be revisions of the
 *                 repository), its tags (current/link
 *                 must name a revision of the repository whose bytes
 *                 exist), its _uploads (older than registry_upload_expire
 *                 is stale) and its _ngx_referrers entries (an entry whose
 *                 revision is gone, older than an hour, is garbage: a push
 *                 writes the entry just before the revision link).
 *   temp          _ngx_tmp: a file untouched for an hour is an orphan (a
 *                 temporary file in use is written to, or renamed away,
 *                 within seconds).
 *   symlinks      every directory of the store, _ngx_tombstones and
 *                 _ngx_quarantine included: the store never follows a
 *                 symbolic link (store_files.c), so one is never data.
 *   blobs         with rehash only: every blobs/<alg>/<xx>/<hex>/data is
 *                 read and hashed with its own algorithm, at most
 *                 job->rehash_rate bytes a second (this thread sleeps), so
 *                 that pulls keep the disk's bandwidth.
 *
 * Anything else under the store (the gc's _ngx_tombstones, a foreign
 * directory, a name that is no digest) is left alone and not reported.
 * The jobs' runner runs one job per store at a time (jobs.c's lease), so
 * no gc sweeps the store while fsck reads or repairs it.
 *
 * Repair removes only what is provably garbage, with the store's own
 * operations, which tell every worker's link cache (store_links.c: the
 * shared counter, safe in a thread):
 *   - a layer link to missing bytes: a pull 404s anyway, and a blob that
 *     is pushed again is linked again (store_blob_unlink());
 *   - a revision link to missing bytes, with the tags naming it
 *     (store_manifest_delete()): its bytes can only come back by a push
 *     of the manifest, which writes the link again;
 *   - a tag whose current link names a missing revision or missing bytes
 *     (store_tag_delete()): tags are written after their revision;
 *   - a stale upload (store_upload_open() removes it under its lock, so a
 *     session a request holds is left alone);
 *   - an orphaned temporary file, an old dangling referrers entry, and a
 *     symbolic link (the link itself, never its target).
 * A blob whose bytes do not hash to its name is moved aside into
 * _ngx_quarantine/<alg>/<hex>, not deleted: serving wrong bytes under a
 * digest is worse than a 404, the next push of the blob stores good
 * bytes, and the operator keeps the evidence.  Links to it stay, and serve
 * again once the blob is pushed again; a later repair removes those whose
 * bytes are still missing.  nginx's open_file_cache may serve an open
 * descriptor of the old file for open_file_cache_valid.
 * Everything else is reported and left: a manifest naming a missing blob
 * (the blob may still be pushed), a link that names another digest, a
 * file that cannot be read.
 *
 * The report (job->report): the options, one count per kind of problem,
 * problems_total, problems_repaired, the first 1000 problems as objects
 * {kind, repository, path, digest, manifest, detail, repaired} (those that
 * apply), repositories, manifests_checked, manifests_unchecked (not
 * schema2 or OCI: Docker schema1, which distribution may hold),
 * blobs_rehashed and bytes_rehashed; "cancelled" when nginx exited first.
 */


#include "ngx_http_registry_store.h"

#include <jansson.h>


#define NGX_HTTP_REGISTRY_FSCK_LISTED        1000
#define NGX_HTTP_REGISTRY_FSCK_ORPHAN_AGE    3600
#define NGX_HTTP_REGISTRY_FSCK_MANIFEST_MAX  (16 * 1024 * 1024)
#define NGX_HTTP_REGISTRY_FSCK_BUF           (1024 * 1024)
#define NGX_HTTP_REGISTRY_FSCK_NAP           250000000    /* ns */


typedef enum {
    NGX_HTTP_REGISTRY_FSCK_LINK_TO_MISSING_BLOB = 0,
    NGX_HTTP_REGISTRY_FSCK_REVISION_TO_MISSING_BLOB,
    NGX_HTTP_REGISTRY_FSCK_MANIFEST_TO_MISSING_BLOB,
    NGX_HTTP_REGISTRY_FSCK_INDEX_TO_MISSING_MANIFEST,
    NGX_HTTP_REGISTRY_FSCK_TAG_TO_MISSING_MANIFEST,
    NGX_HTTP_REGISTRY_FSCK_INVALID_LINK,
    NGX_HTTP_REGISTRY_FSCK_STALE_UPLOAD,
    NGX_HTTP_REGISTRY_FSCK_DANGLING_REFERRER,
    NGX_HTTP_REGISTRY_FSCK_ORPHANED_TEMP_FILE,
    NGX_HTTP_REGISTRY_FSCK_SYMLINK,
    NGX_HTTP_REGISTRY_FSCK_CORRUPT_BLOB,
    NGX_HTTP_REGISTRY_FSCK_UNREADABLE,
    NGX_HTTP_REGISTRY_FSCK_KINDS
} ngx_http_registry_fsck_kind_e;


enum {
    NGX_HTTP_REGISTRY_FSCK_REPOSITORIES = 0,
    NGX_HTTP_REGISTRY_FSCK_TEMP,
    NGX_HTTP_REGISTRY_FSCK_SYMLINKS,
    NGX_HTTP_REGISTRY_FSCK_BLOBS
};


typedef struct {
    ngx_http_registry_op_t     op;       /* the job's, with a scratch pool */
    ngx_pool_t                *item;     /* one entry's, reset after it */
    ngx_http_registry_job_t   *job;
    json_t                    *problems;
    ngx_str_t                 *name;     /* the repository being checked */
    ngx_http_registry_digest_t  *manifest;   /* the manifest being checked */

    ngx_uint_t                 counts[NGX_HTTP_REGISTRY_FSCK_KINDS];
    ngx_uint_t                 total;
    ngx_uint_t                 repaired;
    ngx_uint_t                 repositories;
    ngx_uint_t                 manifests;
    ngx_uint_t                 unchecked;
    ngx_uint_t                 blob_dirs;    /* counted by the symlink walk */
    ngx_uint_t                 rehashed;
    uint64_t                   bytes;

    /* rehash: the buffer, and the start of the rate limit's clock */
    u_char                    *buf;
    size_t                     chunk;
    struct timespec            start;
} ngx_http_registry_fsck_t;


typedef ngx_int_t (*ngx_http_registry_fsck_item_pt)(
    ngx_http_registry_fsck_t *fsck, ngx_uint_t alg, ngx_str_t *entry);


static ngx_int_t ngx_http_registry_fsck_report(ngx_http_registry_fsck_t *fsck,
    ngx_int_t rc);
static void ngx_http_registry_fsck_phase(ngx_http_registry_fsck_t *fsck,
    ngx_uint_t phase, ngx_uint_t total);
static ngx_int_t ngx_http_registry_fsck_cancelled(
    ngx_http_registry_fsck_t *fsck);
static ngx_int_t ngx_http_registry_fsck_scratch(ngx_http_registry_fsck_t *fsck);
static ngx_int_t ngx_http_registry_fsck_problem(ngx_http_registry_fsck_t *fsck,
    ngx_uint_t kind, ngx_str_t *path, ngx_http_registry_digest_t *digest,
    ngx_uint_t repaired, const char *detail);
static ngx_int_t ngx_http_registry_fsck_failed(ngx_http_registry_fsck_t *fsck,
    ngx_uint_t kind, ngx_str_t *path, ngx_http_registry_digest_t *digest);
static const char *ngx_http_registry_fsck_errstr(
    ngx_http_registry_fsck_t *fsck, ngx_err_t err);
static ngx_int_t ngx_http_registry_fsck_list(ngx_http_registry_fsck_t *fsck,
    ngx_str_t *dir, ngx_uint_t what, ngx_array_t *names);
static ngx_int_t ngx_http_registry_fsck_each(ngx_http_registry_fsck_t *fsck,
    ngx_array_t *entries, ngx_uint_t alg, ngx_http_registry_fsck_item_pt item);
static ngx_int_t ngx_http_registry_fsck_dir(ngx_http_registry_fsck_t *fsck,
    ngx_str_t *dir, ngx_uint_t alg, ngx_http_registry_fsck_item_pt item);
static ngx_int_t ngx_http_registry_fsck_link(ngx_http_registry_fsck_t *fsck,
    ngx_str_t *path, ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_fsck_holds(ngx_http_registry_fsck_t *fsck,
    ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_fsck_repositories(
    ngx_http_registry_fsck_t *fsck);
static ngx_int_t ngx_http_registry_fsck_repository(
    ngx_http_registry_fsck_t *fsck);
static ngx_int_t ngx_http_registry_fsck_layer(ngx_http_registry_fsck_t *fsck,
    ngx_uint_t alg, ngx_str_t *hex);
static ngx_int_t ngx_http_registry_fsck_revision(
    ngx_http_registry_fsck_t *fsck, ngx_uint_t alg, ngx_str_t *hex);
static ngx_int_t ngx_http_registry_fsck_manifest(
    ngx_http_registry_fsck_t *fsck, ngx_str_t *link,
    ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_fsck_references(
    ngx_http_registry_fsck_t *fsck, ngx_str_t *link,
    ngx_http_registry_manifest_t *m);
static ngx_int_t ngx_http_registry_fsck_tag(ngx_http_registry_fsck_t *fsck,
    ngx_uint_t alg, ngx_str_t *tag);
static ngx_int_t ngx_http_registry_fsck_upload(ngx_http_registry_fsck_t *fsck,
    ngx_uint_t alg, ngx_str_t *id);
static time_t ngx_http_registry_fsck_upload_age(ngx_http_registry_fsck_t *fsck,
    ngx_str_t *dir);
static ngx_int_t ngx_http_registry_fsck_subject(ngx_http_registry_fsck_t *fsck,
    ngx_uint_t alg, ngx_str_t *hex);
static ngx_int_t ngx_http_registry_fsck_temp(ngx_http_registry_fsck_t *fsck);
static ngx_int_t ngx_http_registry_fsck_temp_file(
    ngx_http_registry_fsck_t *fsck, ngx_uint_t alg, ngx_str_t *name);
static ngx_int_t ngx_http_registry_fsck_symlinks(
    ngx_http_registry_fsck_t *fsck);
static ngx_int_t ngx_http_registry_fsck_visit(ngx_http_registry_op_t *op,
    void *data, ngx_str_t *sub, ngx_array_t *dirs);
static ngx_int_t ngx_http_registry_fsck_blobs(ngx_http_registry_fsck_t *fsck);
static ngx_int_t ngx_http_registry_fsck_prefix(ngx_http_registry_fsck_t *fsck,
    ngx_uint_t alg, ngx_str_t *prefix);
static ngx_int_t ngx_http_registry_fsck_blob(ngx_http_registry_fsck_t *fsck,
    ngx_uint_t alg, ngx_str_t *hex);
static ngx_int_t ngx_http_registry_fsck_rehash(ngx_http_registry_fsck_t *fsck,
    ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_fsck_hash(ngx_http_registry_fsck_t *fsck,
    ngx_fd_t fd, ngx_http_registry_hash_t *hash);
static ngx_int_t ngx_http_registry_fsck_quarantine(
    ngx_http_registry_fsck_t *fsck, ngx_str_t *path, ngx_fd_t fd,
    ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_fsck_throttle(
    ngx_http_registry_fsck_t *fsck, size_t n);


/* the report's names of the kinds, in the order of the enum */

static const char  *ngx_http_registry_fsck_kinds[] = {
    "link_to_missing_blob",
    "revision_to_missing_blob",
    "manifest_to_missing_blob",
    "index_to_missing_manifest",
    "tag_to_missing_manifest",
    "invalid_link",
    "stale_upload",
    "dangling_referrer",
    "orphaned_temp_file",
    "symlink",
    "corrupt_blob",
    "unreadable"
};


static const char  *ngx_http_registry_fsck_phases[] = {
    "repositories", "temp", "symlinks", "blobs", NULL
};

static const char  *ngx_http_registry_fsck_phases_norehash[] = {
    "repositories", "temp", "symlinks", NULL
};



const char **
ngx_http_registry_store_fsck_phases(ngx_http_registry_job_t *job)
{
    return job->rehash ? ngx_http_registry_fsck_phases
                       : ngx_http_registry_fsck_phases_norehash;
}

ngx_int_t
ngx_http_registry_store_fsck(ngx_http_registry_op_t *op,
    ngx_http_registry_job_t *job)
{
    ngx_int_t                  rc;
    ngx_http_registry_fsck_t  *fsck;

    fsck = ngx_pcalloc(op->pool, sizeof(ngx_http_registry_fsck_t));
    if (fsck == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    fsck->op = *op;
    fsck->op.pool = NULL;
    fsck->job = job;

    fsck->problems = json_array();
    if (fsck->problems == NULL
        || json_object_set_new(job->report, "problems", fsck->problems) != 0)
    {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    ngx_log_error(NGX_LOG_NOTICE, op->log, 0,
                  "registry: fsck of \"%V\"%s%s started", &op->store->root,
                  job->repair ? ", repairing" : "",
                  job->rehash ? ", rehashing" : "");

    rc = ngx_http_registry_fsck_repositories(fsck);

    if (rc == NGX_OK) {
        rc = ngx_http_registry_fsck_temp(fsck);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_registry_fsck_symlinks(fsck);
    }

    if (rc == NGX_OK && job->rehash) {
        rc = ngx_http_registry_fsck_blobs(fsck);
    }

    if (fsck->op.pool) {
        ngx_destroy_pool(fsck->op.pool);
    }

    if (fsck->item) {
        ngx_destroy_pool(fsck->item);
    }

    if (rc == NGX_ERROR) {
        op->fault = fsck->op.fault;
        return NGX_ERROR;
    }

    return ngx_http_registry_fsck_report(fsck, rc);
}


/* the counts beside the problems; NGX_DECLINED: cancelled, stopped early */

static ngx_int_t
ngx_http_registry_fsck_report(ngx_http_registry_fsck_t *fsck, ngx_int_t rc)
{
    int          err;
    json_t      *report;
    ngx_uint_t   i;

    report = fsck->job->report;

    err = json_object_set_new(report, "repair",
                              json_boolean(fsck->job->repair))
          | json_object_set_new(report, "rehash",
                                json_boolean(fsck->job->rehash))
          | json_object_set_new(report, "problems_total",
                                json_integer(fsck->total))
          | json_object_set_new(report, "problems_repaired",
                                json_integer(fsck->repaired))
          | json_object_set_new(report, "repositories",
                                json_integer(fsck->repositories))
          | json_object_set_new(report, "manifests_checked",
                                json_integer(fsck->manifests))
          | json_object_set_new(report, "manifests_unchecked",
                                json_integer(fsck->unchecked))
          | json_object_set_new(report, "blobs_rehashed",
                                json_integer(fsck->rehashed))
          | json_object_set_new(report, "bytes_rehashed",
                                json_integer(fsck->bytes));

    for (i = 0; i < NGX_HTTP_REGISTRY_FSCK_KINDS; i++) {
        err |= json_object_set_new(report, ngx_http_registry_fsck_kinds[i],
                                   json_integer(fsck->counts[i]));
    }

    if (rc == NGX_ABORT) {
        err |= json_object_set_new(report, "cancelled", json_true());
    }

    if (err) {
        return ngx_http_registry_op_syserr(&fsck->op, NGX_ENOMEM);
    }

    ngx_log_error(NGX_LOG_NOTICE, fsck->op.log, 0,
                  "registry: fsck of \"%V\" %s: %ui problems, %ui repaired",
                  &fsck->op.store->root,
                  rc == NGX_ABORT ? "cancelled" : "done",
                  fsck->total, fsck->repaired);

    return (rc == NGX_ABORT) ? NGX_DECLINED : NGX_OK;
}


static void
ngx_http_registry_fsck_phase(ngx_http_registry_fsck_t *fsck, ngx_uint_t phase,
    ngx_uint_t total)
{
    ngx_http_registry_progress_t  *progress;

    progress = fsck->job->progress;

    progress->total = total;
    progress->done = 0;
    progress->phase = phase;
}


/* NGX_ABORT: nginx is exiting, stop at once */

static ngx_int_t
ngx_http_registry_fsck_cancelled(ngx_http_registry_fsck_t *fsck)
{
    return fsck->job->progress->cancel ? NGX_ABORT : NGX_OK;
}


/*
 * A fresh scratch pool for the next item (a repository, a directory of
 * blobs): paths and manifests do not pile up over a walk of the store.
 */

static ngx_int_t
ngx_http_registry_fsck_scratch(ngx_http_registry_fsck_t *fsck)
{
    if (fsck->op.pool) {
        ngx_reset_pool(fsck->op.pool);
        return NGX_OK;
    }

    fsck->op.pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, fsck->op.log);
    if (fsck->op.pool == NULL) {
        return ngx_http_registry_op_syserr(&fsck->op, NGX_ENOMEM);
    }

    return NGX_OK;
}


/* ---- the report ---- */

static ngx_int_t
ngx_http_registry_fsck_problem(ngx_http_registry_fsck_t *fsck,
    ngx_uint_t kind, ngx_str_t *path, ngx_http_registry_digest_t *digest,
    ngx_uint_t repaired, const char *detail)
{
    int      err;
    json_t  *p;

    fsck->counts[kind]++;
    fsck->total++;
    fsck->repaired += repaired;

    ngx_log_error(NGX_LOG_WARN, fsck->op.log, 0,
                  "registry: fsck: %s \"%V\"%s%s%s",
                  ngx_http_registry_fsck_kinds[kind], path,
                  detail ? ": " : "", detail ? detail : "",
                  repaired ? ", repaired" : "");

    if (json_array_size(fsck->problems) >= NGX_HTTP_REGISTRY_FSCK_LISTED) {
        return NGX_OK;
    }

    p = json_object();
    if (p == NULL) {
        return ngx_http_registry_op_syserr(&fsck->op, NGX_ENOMEM);
    }

    err = json_object_set_new(p, "kind",
                              json_string(ngx_http_registry_fsck_kinds[kind]))
          | json_object_set_new(p, "path",
                                json_stringn((char *) path->data, path->len))
          | json_object_set_new(p, "repaired", json_boolean(repaired));

    if (fsck->name) {
        err |= json_object_set_new(p, "repository",
                                   json_stringn((char *) fsck->name->data,
                                                fsck->name->len));
    }

    if (digest) {
        err |= json_object_set_new(p, "digest",
                                   json_stringn((char *) digest->text.data,
                                                digest->text.len));
    }

    if (fsck->manifest) {
        err |= json_object_set_new(p, "manifest",
                               json_stringn((char *) fsck->manifest->text.data,
                                            fsck->manifest->text.len));
    }

    if (detail) {
        err |= json_object_set_new(p, "detail", json_string(detail));
    }

    if (err || json_array_append_new(fsck->problems, p) != 0) {
        return ngx_http_registry_op_syserr(&fsck->op, NGX_ENOMEM);
    }

    return NGX_OK;
}


/*
 * A store call failed on one item (it logged why): reported, and the walk
 * goes on, unless memory ran out.
 */

static ngx_int_t
ngx_http_registry_fsck_failed(ngx_http_registry_fsck_t *fsck, ngx_uint_t kind,
    ngx_str_t *path, ngx_http_registry_digest_t *digest)
{
    const char                 *detail;
    ngx_http_registry_fault_t  *fault;

    fault = &fsck->op.fault;

    if (fault->errnum == NGX_ENOMEM) {
        return NGX_ERROR;
    }

    detail = fault->detail;

    if (detail == NULL) {
        detail = fault->errnum
                 ? ngx_http_registry_fsck_errstr(fsck, fault->errnum)
                 : "cannot be read";
    }

    return ngx_http_registry_fsck_problem(fsck, kind, path, digest, 0, detail);
}


/* strerror() is not for threads; NULL if memory ran out */

static const char *
ngx_http_registry_fsck_errstr(ngx_http_registry_fsck_t *fsck, ngx_err_t err)
{
    u_char  *p, *last;

    p = ngx_pnalloc(fsck->op.pool, NGX_MAX_ERROR_STR);
    if (p == NULL) {
        return NULL;
    }

    last = ngx_strerror(err, p, NGX_MAX_ERROR_STR - 1);
    *last = '\0';

    return (const char *) p;
}


/*
 * A directory's entries, in the scratch pool; an absent directory has
 * none, an unreadable one is reported and has none.
 */

static ngx_int_t
ngx_http_registry_fsck_list(ngx_http_registry_fsck_t *fsck, ngx_str_t *dir,
    ngx_uint_t what, ngx_array_t *names)
{
    ngx_int_t  rc;

    if (ngx_array_init(names, fsck->op.pool, 16, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return ngx_http_registry_op_syserr(&fsck->op, NGX_ENOMEM);
    }

    rc = ngx_http_registry_file_list(&fsck->op, dir, what, names);

    if (rc == NGX_ERROR) {
        names->nelts = 0;
        return ngx_http_registry_fsck_failed(fsck,
                                             NGX_HTTP_REGISTRY_FSCK_UNREADABLE,
                                             dir, NULL);
    }

    return NGX_OK;
}


/*
 * Checks each entry of a listing, in the item pool, which is reset after
 * each: a directory of a million links costs the memory of one.  Stops
 * at a cancel.
 */

static ngx_int_t
ngx_http_registry_fsck_each(ngx_http_registry_fsck_t *fsck,
    ngx_array_t *entries, ngx_uint_t alg, ngx_http_registry_fsck_item_pt item)
{
    ngx_int_t    rc;
    ngx_str_t   *entry;
    ngx_uint_t   i;
    ngx_pool_t  *pool;

    if (fsck->item == NULL) {
        fsck->item = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, fsck->op.log);
        if (fsck->item == NULL) {
            return ngx_http_registry_op_syserr(&fsck->op, NGX_ENOMEM);
        }
    }

    pool = fsck->op.pool;
    entry = entries->elts;
    rc = NGX_OK;

    for (i = 0; rc == NGX_OK && i < entries->nelts; i++) {
        rc = ngx_http_registry_fsck_cancelled(fsck);

        if (rc == NGX_OK) {
            fsck->op.pool = fsck->item;
            rc = item(fsck, alg, &entry[i]);
            fsck->op.pool = pool;
            ngx_reset_pool(fsck->item);
        }
    }

    return rc;
}


/* each subdirectory of dir */

static ngx_int_t
ngx_http_registry_fsck_dir(ngx_http_registry_fsck_t *fsck, ngx_str_t *dir,
    ngx_uint_t alg, ngx_http_registry_fsck_item_pt item)
{
    ngx_array_t  entries;

    if (ngx_http_registry_fsck_list(fsck, dir, NGX_HTTP_REGISTRY_LIST_DIRS,
                                    &entries)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_registry_fsck_each(fsck, &entries, alg, item);
}


/*
 * A link must hold the digest its path names.  NGX_OK: it does;
 * NGX_DECLINED: no link there (a half-removed link directory, or a
 * symbolic link, which the symlinks phase reports), or a bad one,
 * reported.
 */

static ngx_int_t
ngx_http_registry_fsck_link(ngx_http_registry_fsck_t *fsck, ngx_str_t *path,
    ngx_http_registry_digest_t *digest)
{
    ngx_int_t                   rc;
    ngx_http_registry_digest_t  named;

    rc = ngx_http_registry_file_read_link(&fsck->op, path, &named);

    if (rc == NGX_DECLINED) {
        return NGX_DECLINED;
    }

    if (rc == NGX_ERROR) {
        rc = ngx_http_registry_fsck_failed(fsck,
                                           NGX_HTTP_REGISTRY_FSCK_INVALID_LINK,
                                           path, digest);

    } else if (!ngx_http_registry_digest_equal(&named, digest)) {
        rc = ngx_http_registry_fsck_problem(fsck,
                                        NGX_HTTP_REGISTRY_FSCK_INVALID_LINK,
                                        path, digest, 0,
                                        "the link names another digest");
    } else {
        return NGX_OK;
    }

    return (rc == NGX_OK) ? NGX_DECLINED : NGX_ERROR;
}


/*
 * NGX_OK: the repository holds the manifest, bytes and all; NGX_DECLINED:
 * it does not, and fsck->op.fault.detail says why.
 */

static ngx_int_t
ngx_http_registry_fsck_holds(ngx_http_registry_fsck_t *fsck,
    ngx_http_registry_digest_t *digest)
{
    ngx_int_t  rc;
    ngx_str_t  link;

    if (ngx_http_registry_path_revision_link(&fsck->op, &link, fsck->name,
                                             digest)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_exists(&fsck->op, &link);

    if (rc == NGX_DECLINED) {
        fsck->op.fault.detail = "no such revision in the repository";
        return NGX_DECLINED;
    }

    if (rc == NGX_OK) {
        rc = ngx_http_registry_store_blob_exists(&fsck->op, digest);

        if (rc == NGX_DECLINED) {
            fsck->op.fault.detail = "the manifest's bytes are missing";
        }
    }

    return rc;
}


/* ---- repositories ---- */

static ngx_int_t
ngx_http_registry_fsck_repositories(ngx_http_registry_fsck_t *fsck)
{
    ngx_int_t               rc;
    ngx_str_t              *name;
    ngx_uint_t              i;
    ngx_array_t            *names;
    ngx_http_registry_op_t  list;

    /* the names live in a pool of their own, beside the scratch pool */

    list = fsck->op;
    list.pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, fsck->op.log);
    if (list.pool == NULL) {
        return ngx_http_registry_op_syserr(&fsck->op, NGX_ENOMEM);
    }

    names = ngx_array_create(list.pool, 64, sizeof(ngx_str_t));

    if (names == NULL
        || ngx_http_registry_store_list_repositories(&list, names) != NGX_OK)
    {
        fsck->op.fault = list.fault;
        ngx_destroy_pool(list.pool);
        return NGX_ERROR;
    }

    ngx_http_registry_sort_names(names);

    ngx_http_registry_fsck_phase(fsck, NGX_HTTP_REGISTRY_FSCK_REPOSITORIES,
                                 names->nelts);

    name = names->elts;
    rc = NGX_OK;

    for (i = 0; i < names->nelts; i++) {
        rc = ngx_http_registry_fsck_cancelled(fsck);

        if (rc == NGX_OK) {
            rc = ngx_http_registry_fsck_scratch(fsck);
        }

        if (rc == NGX_OK) {
            fsck->name = &name[i];
            rc = ngx_http_registry_fsck_repository(fsck);
            fsck->name = NULL;
        }

        if (rc != NGX_OK) {
            break;
        }

        fsck->repositories++;
        fsck->job->progress->done++;
    }

    ngx_destroy_pool(list.pool);

    return rc;
}


/*
 * Layers before revisions, so that a manifest naming a layer link just
 * repaired away is reported; revisions before tags, so that a tag removed
 * with its revision is not reported twice.
 */

static ngx_int_t
ngx_http_registry_fsck_repository(ngx_http_registry_fsck_t *fsck)
{
    ngx_int_t                rc;
    ngx_str_t                dir;
    ngx_uint_t               alg;
    ngx_http_registry_op_t  *op;

    op = &fsck->op;

    for (alg = NGX_HTTP_REGISTRY_SHA256; alg <= NGX_HTTP_REGISTRY_SHA512; alg++)
    {
        if (ngx_http_registry_path_layers(op, &dir, fsck->name, alg) != NGX_OK)
        {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_fsck_dir(fsck, &dir, alg,
                                        ngx_http_registry_fsck_layer);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    for (alg = NGX_HTTP_REGISTRY_SHA256; alg <= NGX_HTTP_REGISTRY_SHA512; alg++)
    {
        if (ngx_http_registry_path_revisions(op, &dir, fsck->name, alg)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_fsck_dir(fsck, &dir, alg,
                                        ngx_http_registry_fsck_revision);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (ngx_http_registry_path_tags(op, &dir, fsck->name) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_fsck_dir(fsck, &dir, 0, ngx_http_registry_fsck_tag);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_registry_path_uploads(op, &dir, fsck->name) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_fsck_dir(fsck, &dir, 0,
                                    ngx_http_registry_fsck_upload);
    if (rc != NGX_OK) {
        return rc;
    }

    for (alg = NGX_HTTP_REGISTRY_SHA256; alg <= NGX_HTTP_REGISTRY_SHA512; alg++)
    {
        if (ngx_http_registry_path_referrer_subjects(op, &dir, fsck->name, alg)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_fsck_dir(fsck, &dir, alg,
                                        ngx_http_registry_fsck_subject);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


/* _layers/<alg>/<hex>/link: the blob's bytes must exist */

static ngx_int_t
ngx_http_registry_fsck_layer(ngx_http_registry_fsck_t *fsck, ngx_uint_t alg,
    ngx_str_t *hex)
{
    ngx_int_t                    rc;
    ngx_str_t                    link, tomb;
    ngx_uint_t                   repaired;
    ngx_http_registry_op_t      *op;
    ngx_http_registry_digest_t   digest;

    op = &fsck->op;

    rc = ngx_http_registry_digest_of(op->pool, alg, hex, &digest);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK
                                    : ngx_http_registry_op_syserr(op,
                                                                  NGX_ENOMEM);
    }

    if (ngx_http_registry_path_layer_link(op, &link, fsck->name, &digest)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_fsck_link(fsck, &link, &digest);
    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    rc = ngx_http_registry_store_blob_exists(op, &digest);

    if (rc == NGX_ERROR) {
        return ngx_http_registry_fsck_failed(fsck,
                                             NGX_HTTP_REGISTRY_FSCK_UNREADABLE,
                                             &link, &digest);
    }

    if (rc == NGX_OK) {
        return NGX_OK;
    }

    /*
     * bytes the gc moved aside keep their links until its next run
     * removes both, or a push brings the bytes back (store_gc.c): no
     * problem of the store (t/crash_loop.t found fsck reporting them)
     */

    if (ngx_http_registry_path_tombstone(op, &tomb, digest.alg, &digest)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_exists(op, &tomb);

    if (rc == NGX_OK) {
        return NGX_OK;
    }

    repaired = fsck->job->repair
               && ngx_http_registry_store_blob_unlink(op, fsck->name, &digest)
                  == NGX_OK;

    return ngx_http_registry_fsck_problem(fsck,
                                   NGX_HTTP_REGISTRY_FSCK_LINK_TO_MISSING_BLOB,
                                   &link, &digest, repaired, NULL);
}


/* _manifests/revisions/<alg>/<hex>/link: the bytes, then what they name */

static ngx_int_t
ngx_http_registry_fsck_revision(ngx_http_registry_fsck_t *fsck,
    ngx_uint_t alg, ngx_str_t *hex)
{
    ngx_int_t                    rc;
    ngx_str_t                    link;
    ngx_http_registry_op_t      *op;
    ngx_http_registry_digest_t   digest;

    op = &fsck->op;

    rc = ngx_http_registry_digest_of(op->pool, alg, hex, &digest);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK
                                    : ngx_http_registry_op_syserr(op,
                                                                  NGX_ENOMEM);
    }

    if (ngx_http_registry_path_revision_link(op, &link, fsck->name, &digest)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_fsck_link(fsck, &link, &digest);
    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    return ngx_http_registry_fsck_manifest(fsck, &link, &digest);
}


/*
 * A revision whose bytes are gone is deleted as a DELETE would (its tags
 * with it); one that reads is parsed once and its references checked.
 */

static ngx_int_t
ngx_http_registry_fsck_manifest(ngx_http_registry_fsck_t *fsck,
    ngx_str_t *link, ngx_http_registry_digest_t *digest)
{
    ngx_int_t                      rc;
    ngx_str_t                      path, ct;
    ngx_uint_t                     repaired;
    const char                    *invalid;
    ngx_http_registry_op_t        *op;
    ngx_http_registry_manifest_t   m;

    op = &fsck->op;

    if (ngx_http_registry_path_blob(op, &path, digest) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&m, sizeof(ngx_http_registry_manifest_t));

    rc = ngx_http_registry_file_read(op, &path,
                                     NGX_HTTP_REGISTRY_FSCK_MANIFEST_MAX,
                                     &m.bytes);

    if (rc == NGX_DECLINED) {
        repaired = fsck->job->repair
                   && ngx_http_registry_store_manifest_delete(op, fsck->name,
                                  digest, NGX_HTTP_REGISTRY_FSCK_MANIFEST_MAX)
                      == NGX_OK;

        return ngx_http_registry_fsck_problem(fsck,
                               NGX_HTTP_REGISTRY_FSCK_REVISION_TO_MISSING_BLOB,
                               link, digest, repaired, NULL);
    }

    if (rc == NGX_ERROR) {
        return ngx_http_registry_fsck_failed(fsck,
                                             NGX_HTTP_REGISTRY_FSCK_UNREADABLE,
                                             &path, digest);
    }

    m.name = *fsck->name;
    m.digest = *digest;
    ngx_str_null(&ct);

    rc = ngx_http_registry_manifest_parse(op->pool, &m, &ct, &invalid);

    if (rc == NGX_ERROR) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (rc == NGX_DECLINED) {
        fsck->unchecked++;
        return NGX_OK;
    }

    fsck->manifests++;

    fsck->manifest = digest;
    rc = ngx_http_registry_fsck_references(fsck, link, &m);
    fsck->manifest = NULL;

    return rc;
}


/*
 * Config and layers must be blobs of the repository, an index's children
 * revisions of it, as a push requires, and their bytes must exist.
 */

static ngx_int_t
ngx_http_registry_fsck_references(ngx_http_registry_fsck_t *fsck,
    ngx_str_t *link, ngx_http_registry_manifest_t *m)
{
    ngx_int_t                 rc;
    ngx_str_t                 path;
    ngx_uint_t                i, kind;
    ngx_http_registry_op_t   *op;
    ngx_http_registry_ref_t  *ref;

    op = &fsck->op;
    ref = m->references->elts;

    for (i = 0; i < m->references->nelts; i++) {

        if (ref[i].manifest) {
            kind = NGX_HTTP_REGISTRY_FSCK_INDEX_TO_MISSING_MANIFEST;
            rc = ngx_http_registry_fsck_holds(fsck, &ref[i].digest);

        } else {
            kind = NGX_HTTP_REGISTRY_FSCK_MANIFEST_TO_MISSING_BLOB;

            if (ngx_http_registry_path_layer_link(op, &path, fsck->name,
                                                  &ref[i].digest)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            rc = ngx_http_registry_file_exists(op, &path);

            if (rc == NGX_DECLINED) {
                op->fault.detail = "the repository does not link the blob";

            } else if (rc == NGX_OK) {
                rc = ngx_http_registry_store_blob_exists(op, &ref[i].digest);
                op->fault.detail = "the blob's bytes are missing";
            }
        }

        if (rc == NGX_DECLINED) {
            rc = ngx_http_registry_fsck_problem(fsck, kind, link,
                                                &ref[i].digest, 0,
                                                op->fault.detail);

        } else if (rc == NGX_ERROR) {
            rc = ngx_http_registry_fsck_failed(fsck,
                                             NGX_HTTP_REGISTRY_FSCK_UNREADABLE,
                                             link, &ref[i].digest);
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}



/* _manifests/tags/<tag>/current/link: a revision of the repository */

static ngx_int_t
ngx_http_registry_fsck_tag(ngx_http_registry_fsck_t *fsck, ngx_uint_t alg,
    ngx_str_t *tag)
{
    ngx_int_t                    rc;
    ngx_str_t                    link;
    ngx_uint_t                   repaired;
    const char                  *detail;
    ngx_http_registry_op_t      *op;
    ngx_http_registry_digest_t   digest;

    op = &fsck->op;

    if (ngx_http_registry_path_tag_link(op, &link, fsck->name, tag)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* no current link: a tag being written, or a link (symlinks) */

    rc = ngx_http_registry_file_read_link(op, &link, &digest);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED)
               ? NGX_OK
               : ngx_http_registry_fsck_failed(fsck,
                                           NGX_HTTP_REGISTRY_FSCK_INVALID_LINK,
                                           &link, NULL);
    }

    rc = ngx_http_registry_fsck_holds(fsck, &digest);

    if (rc == NGX_ERROR) {
        return ngx_http_registry_fsck_failed(fsck,
                                             NGX_HTTP_REGISTRY_FSCK_UNREADABLE,
                                             &link, &digest);
    }

    if (rc == NGX_OK) {
        return NGX_OK;
    }

    detail = op->fault.detail;

    repaired = fsck->job->repair
               && ngx_http_registry_store_tag_delete(op, fsck->name, tag)
                  == NGX_OK;

    return ngx_http_registry_fsck_problem(fsck,
                                NGX_HTTP_REGISTRY_FSCK_TAG_TO_MISSING_MANIFEST,
                                &link, &digest, repaired, detail);
}



/*
 * _uploads/<id>: stale when untouched for registry_upload_expire.
 * Repaired as a request for the session would: store_upload_open() takes
 * its lock and removes it if it is expired.  A session with no data file
 * left (half created or half removed, long ago) has no lock to take, and
 * goes as the periodic sweep removes it.
 */

static ngx_int_t
ngx_http_registry_fsck_upload(ngx_http_registry_fsck_t *fsck, ngx_uint_t alg,
    ngx_str_t *id)
{
    time_t                       expire;
    ngx_int_t                    rc;
    ngx_str_t                    dir;
    ngx_http_registry_op_t      *op;
    ngx_http_registry_upload_t   up;

    op = &fsck->op;
    expire = op->store->upload_expire;

    if (ngx_http_registry_path_upload(op, &dir, fsck->name, id, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_time() - ngx_http_registry_fsck_upload_age(fsck, &dir) <= expire)
    {
        return NGX_OK;
    }

    if (!fsck->job->repair) {
        return ngx_http_registry_fsck_problem(fsck,
                                          NGX_HTTP_REGISTRY_FSCK_STALE_UPLOAD,
                                          &dir, NULL, 0, NULL);
    }

    ngx_memzero(&up, sizeof(ngx_http_registry_upload_t));
    up.name = *fsck->name;
    up.id = *id;
    up.data.fd = NGX_INVALID_FILE;

    rc = ngx_http_registry_store_upload_open(op, &up, expire);

    ngx_http_registry_store_upload_release(&up, op->log);

    if (rc == NGX_DECLINED && up.data.path.len
        && ngx_http_registry_file_exists(op, &up.data.path) == NGX_DECLINED)
    {
        (void) ngx_http_registry_file_remove_tree(op, &dir);
    }

    return ngx_http_registry_fsck_problem(fsck,
                                   NGX_HTTP_REGISTRY_FSCK_STALE_UPLOAD, &dir,
                                   NULL,
                                   ngx_http_registry_file_exists(op, &dir)
                                   == NGX_DECLINED,
                                   (rc == NGX_ERROR) ? op->fault.detail : NULL);
}


/*
 * When the session was last written to: the latest mtime of its files,
 * as store_upload.c counts it, or of its directory when it has none.
 */

static time_t
ngx_http_registry_fsck_upload_age(ngx_http_registry_fsck_t *fsck,
    ngx_str_t *dir)
{
    time_t            latest;
    ngx_str_t         path, *file;
    ngx_uint_t        i;
    ngx_array_t       files;
    ngx_file_info_t   fi;

    latest = 0;

    if (ngx_http_registry_fsck_list(fsck, dir, NGX_HTTP_REGISTRY_LIST_FILES,
                                    &files)
        != NGX_OK)
    {
        return ngx_time();
    }

    file = files.elts;

    for (i = 0; i < files.nelts; i++) {
        if (ngx_http_registry_path_entry(&fsck->op, &path, dir, &file[i])
            == NGX_OK
            && ngx_http_registry_file_stat(&fsck->op, &path, &fi) == NGX_OK)
        {
            latest = ngx_max(latest, ngx_file_mtime(&fi));
        }
    }

    if (latest == 0
        && ngx_http_registry_file_stat(&fsck->op, dir, &fi) == NGX_OK)
    {
        latest = ngx_file_mtime(&fi);
    }

    /* nothing could be read: as good as new, never removed */

    return latest ? latest : ngx_time();
}



/*
 * _ngx_referrers/<alg>/<subject hex>/<referrer>: its revision must exist.
 * A push writes a referrer's entry just before its revision link, so only
 * an entry older than a push takes is dangling.
 */

static ngx_int_t
ngx_http_registry_fsck_subject(ngx_http_registry_fsck_t *fsck, ngx_uint_t alg,
    ngx_str_t *hex)
{
    ngx_int_t                    rc;
    ngx_str_t                    dir, path, link, *entry;
    ngx_uint_t                   i, repaired;
    ngx_array_t                  entries;
    ngx_file_info_t              fi;
    ngx_http_registry_op_t      *op;
    ngx_http_registry_digest_t   subject, referrer;

    op = &fsck->op;

    rc = ngx_http_registry_digest_of(op->pool, alg, hex, &subject);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK
                                    : ngx_http_registry_op_syserr(op,
                                                                  NGX_ENOMEM);
    }

    if (ngx_http_registry_path_referrers(op, &dir, fsck->name, &subject)
        != NGX_OK
        || ngx_http_registry_fsck_list(fsck, &dir,
                                       NGX_HTTP_REGISTRY_LIST_FILES, &entries)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    entry = entries.elts;

    for (i = 0; i < entries.nelts; i++) {
        rc = ngx_http_registry_path_parse_referrer(op, &entry[i], &referrer);

        if (rc == NGX_DECLINED) {
            continue;
        }

        if (rc != NGX_OK
            || ngx_http_registry_path_revision_link(op, &link, fsck->name,
                                                    &referrer)
               != NGX_OK
            || ngx_http_registry_path_referrer(op, &path, fsck->name,
                                               &subject, &referrer)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (ngx_http_registry_file_exists(op, &link) != NGX_DECLINED
            || ngx_http_registry_file_stat(op, &path, &fi) != NGX_OK
            || ngx_time() - ngx_file_mtime(&fi)
               <= NGX_HTTP_REGISTRY_FSCK_ORPHAN_AGE)
        {
            continue;
        }

        repaired = fsck->job->repair
                   && ngx_http_registry_file_unlink(op, &path, 1) == NGX_OK;

        if (ngx_http_registry_fsck_problem(fsck,
                                     NGX_HTTP_REGISTRY_FSCK_DANGLING_REFERRER,
                                     &path, &referrer, repaired,
                                     "the referrer's revision is gone")
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_fsck_temp(ngx_http_registry_fsck_t *fsck)
{
    ngx_str_t    dir;
    ngx_array_t  names;

    if (ngx_http_registry_fsck_scratch(fsck) != NGX_OK
        || ngx_http_registry_path_temp(&fsck->op, &dir, NULL) != NGX_OK
        || ngx_http_registry_fsck_list(fsck, &dir,
                                       NGX_HTTP_REGISTRY_LIST_FILES, &names)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_registry_fsck_phase(fsck, NGX_HTTP_REGISTRY_FSCK_TEMP,
                                 names.nelts);

    return ngx_http_registry_fsck_each(fsck, &names, 0,
                                       ngx_http_registry_fsck_temp_file);
}


static ngx_int_t
ngx_http_registry_fsck_temp_file(ngx_http_registry_fsck_t *fsck,
    ngx_uint_t alg, ngx_str_t *name)
{
    ngx_str_t                path;
    ngx_uint_t               repaired;
    ngx_file_info_t          fi;
    ngx_http_registry_op_t  *op;

    op = &fsck->op;
    fsck->job->progress->done++;

    if (ngx_http_registry_path_temp(op, &path, name) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_registry_file_stat(op, &path, &fi) != NGX_OK
        || ngx_time() - ngx_file_mtime(&fi)
           <= NGX_HTTP_REGISTRY_FSCK_ORPHAN_AGE)
    {
        return NGX_OK;
    }

    repaired = fsck->job->repair
               && ngx_http_registry_file_unlink(op, &path, 0) == NGX_OK;

    return ngx_http_registry_fsck_problem(fsck,
                                     NGX_HTTP_REGISTRY_FSCK_ORPHANED_TEMP_FILE,
                                     &path, NULL, repaired, NULL);
}


/* ---- symbolic links, anywhere ---- */

static ngx_int_t
ngx_http_registry_fsck_symlinks(ngx_http_registry_fsck_t *fsck)
{
    ngx_str_t  root, empty;

    ngx_str_null(&empty);

    ngx_http_registry_fsck_phase(fsck, NGX_HTTP_REGISTRY_FSCK_SYMLINKS, 0);

    if (ngx_http_registry_fsck_scratch(fsck) != NGX_OK
        || ngx_http_registry_path_store(&fsck->op, &root, &empty) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_registry_file_walk(&fsck->op, &root,
                                       ngx_http_registry_fsck_visit, fsck);
}


/*
 * Each directory of the walk, listed again for its links, with a pool of
 * its own; the blob directories it passes are counted for the blobs
 * phase's total.
 */

static ngx_int_t
ngx_http_registry_fsck_visit(ngx_http_registry_op_t *op, void *data,
    ngx_str_t *sub, ngx_array_t *dirs)
{
    ngx_http_registry_fsck_t *fsck = data;

    ngx_int_t    rc;
    ngx_str_t    dir, path, *link;
    ngx_uint_t   i, repaired;
    ngx_pool_t  *pool, *scratch;
    ngx_array_t  links;

    rc = ngx_http_registry_fsck_cancelled(fsck);
    if (rc != NGX_OK) {
        return rc;
    }

    fsck->job->progress->done++;

    /* blobs/<alg>/<xx>: its subdirectories are blobs */

    if (sub->len > sizeof("blobs/") - 1
        && ngx_strncmp(sub->data, "blobs/", sizeof("blobs/") - 1) == 0
        && ngx_strlchr(sub->data + sizeof("blobs/") - 1,
                       sub->data + sub->len, '/')
           == sub->data + sub->len - 3)
    {
        fsck->blob_dirs += dirs->nelts;
    }

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, op->log);
    if (pool == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    scratch = op->pool;
    op->pool = pool;

    rc = ngx_http_registry_path_store(op, &dir, sub);

    if (rc == NGX_OK) {
        rc = ngx_http_registry_fsck_list(fsck, &dir,
                                         NGX_HTTP_REGISTRY_LIST_LINKS, &links);
    }

    link = (rc == NGX_OK) ? links.elts : NULL;

    for (i = 0; link && i < links.nelts && rc == NGX_OK; i++) {
        rc = ngx_http_registry_path_entry(op, &path, &dir, &link[i]);

        if (rc == NGX_OK) {
            repaired = fsck->job->repair
                       && ngx_http_registry_file_unlink(op, &path, 0)
                          == NGX_OK;

            rc = ngx_http_registry_fsck_problem(fsck,
                                           NGX_HTTP_REGISTRY_FSCK_SYMLINK,
                                           &path, NULL, repaired,
                                           "a symbolic link, never followed");
        }
    }

    op->pool = scratch;
    ngx_destroy_pool(pool);

    return rc;
}


/* ---- rehash ---- */

static ngx_int_t
ngx_http_registry_fsck_blobs(ngx_http_registry_fsck_t *fsck)
{
    off_t                    rate;
    ngx_int_t                rc;
    ngx_str_t                dir, *prefix;
    ngx_uint_t               alg, i;
    ngx_pool_t              *pool;
    ngx_array_t              prefixes;
    ngx_http_registry_op_t   list;

    ngx_http_registry_fsck_phase(fsck, NGX_HTTP_REGISTRY_FSCK_BLOBS,
                                 fsck->blob_dirs);

    /* read in pieces of about a quarter second at a low rate */

    rate = fsck->job->rehash_rate;
    fsck->chunk = NGX_HTTP_REGISTRY_FSCK_BUF;

    if (rate && rate / 4 < NGX_HTTP_REGISTRY_FSCK_BUF) {
        fsck->chunk = ngx_max(rate / 4, 4096);
    }

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, fsck->op.log);
    if (pool == NULL) {
        return ngx_http_registry_op_syserr(&fsck->op, NGX_ENOMEM);
    }

    fsck->buf = ngx_palloc(pool, fsck->chunk);
    if (fsck->buf == NULL) {
        ngx_destroy_pool(pool);
        return ngx_http_registry_op_syserr(&fsck->op, NGX_ENOMEM);
    }

    (void) clock_gettime(CLOCK_MONOTONIC, &fsck->start);

    list = fsck->op;
    list.pool = pool;
    rc = NGX_OK;

    for (alg = NGX_HTTP_REGISTRY_SHA256;
         rc == NGX_OK && alg <= NGX_HTTP_REGISTRY_SHA512;
         alg++)
    {
        if (ngx_array_init(&prefixes, pool, 256, sizeof(ngx_str_t)) != NGX_OK
            || ngx_http_registry_path_blobs(&list, &dir, alg, NULL) != NGX_OK)
        {
            rc = ngx_http_registry_op_syserr(&fsck->op, NGX_ENOMEM);
            break;
        }

        rc = ngx_http_registry_file_list(&list, &dir,
                                         NGX_HTTP_REGISTRY_LIST_DIRS,
                                         &prefixes);
        if (rc == NGX_DECLINED) {
            rc = NGX_OK;
            continue;
        }

        if (rc == NGX_ERROR) {
            fsck->op.fault = list.fault;
            rc = ngx_http_registry_fsck_failed(fsck,
                                             NGX_HTTP_REGISTRY_FSCK_UNREADABLE,
                                             &dir, NULL);
            continue;
        }

        prefix = prefixes.elts;

        for (i = 0; rc == NGX_OK && i < prefixes.nelts; i++) {
            rc = ngx_http_registry_fsck_scratch(fsck);

            if (rc == NGX_OK) {
                rc = ngx_http_registry_fsck_prefix(fsck, alg, &prefix[i]);
            }
        }
    }

    ngx_destroy_pool(pool);
    fsck->buf = NULL;

    return rc;
}


/* blobs/<alg>/<xx>/<hex>/data, for each <hex> */

static ngx_int_t
ngx_http_registry_fsck_prefix(ngx_http_registry_fsck_t *fsck, ngx_uint_t alg,
    ngx_str_t *prefix)
{
    ngx_str_t  dir;

    if (ngx_http_registry_path_blobs(&fsck->op, &dir, alg, prefix) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_registry_fsck_dir(fsck, &dir, alg,
                                      ngx_http_registry_fsck_blob);
}


/* a name that is no digest, or misplaced (no such data file), is no blob */

static ngx_int_t
ngx_http_registry_fsck_blob(ngx_http_registry_fsck_t *fsck, ngx_uint_t alg,
    ngx_str_t *hex)
{
    ngx_int_t                    rc;
    ngx_http_registry_digest_t   digest;

    fsck->job->progress->done++;

    rc = ngx_http_registry_digest_of(fsck->op.pool, alg, hex, &digest);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK
                                    : ngx_http_registry_op_syserr(&fsck->op,
                                                                  NGX_ENOMEM);
    }

    return ngx_http_registry_fsck_rehash(fsck, &digest);
}


static ngx_int_t
ngx_http_registry_fsck_rehash(ngx_http_registry_fsck_t *fsck,
    ngx_http_registry_digest_t *digest)
{
    u_char                      *detail;
    ngx_fd_t                     fd;
    ngx_err_t                    err;
    ngx_int_t                    rc;
    ngx_str_t                    path;
    ngx_uint_t                   repaired;
    ngx_http_registry_hash_t     hash;
    ngx_http_registry_digest_t   actual;

    if (ngx_http_registry_path_blob(&fsck->op, &path, digest) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_http_registry_file_open(&fsck->op, &path, O_RDONLY, 0);

    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;

        /* gone since (collected), or a link, which the last phase found */

        if (err == NGX_ENOENT || err == NGX_ENOTDIR || err == NGX_ELOOP) {
            return NGX_OK;
        }

        return ngx_http_registry_fsck_problem(fsck,
                                             NGX_HTTP_REGISTRY_FSCK_UNREADABLE,
                                             &path, digest, 0,
                                    ngx_http_registry_fsck_errstr(fsck, err));
    }

    ngx_http_registry_hash_init(&hash, digest->alg);

    rc = ngx_http_registry_fsck_hash(fsck, fd, &hash);
    err = ngx_errno;

    if (rc == NGX_OK) {
        fsck->rehashed++;

        if (ngx_http_registry_hash_final(&hash, fsck->op.pool, &actual)
            != NGX_OK)
        {
            rc = NGX_ERROR;

        } else if (!ngx_http_registry_digest_equal(&actual, digest)) {
            detail = ngx_pnalloc(fsck->op.pool,
                                 sizeof("its bytes hash to ")
                                 + actual.text.len);
            if (detail == NULL) {
                rc = NGX_ERROR;

            } else {
                *ngx_sprintf(detail, "its bytes hash to %V", &actual.text) =
                    '\0';

                repaired = fsck->job->repair
                           && ngx_http_registry_fsck_quarantine(fsck, &path,
                                                                fd, digest)
                              == NGX_OK;

                rc = ngx_http_registry_fsck_problem(fsck,
                                         NGX_HTTP_REGISTRY_FSCK_CORRUPT_BLOB,
                                         &path, digest, repaired,
                                         (char *) detail);
            }
        }

    } else if (rc == NGX_DECLINED) {
        rc = ngx_http_registry_fsck_problem(fsck,
                                            NGX_HTTP_REGISTRY_FSCK_UNREADABLE,
                                            &path, digest, 0,
                                 ngx_http_registry_fsck_errstr(fsck, err));
    }

    (void) close(fd);

    return rc;
}


/* NGX_DECLINED: a read failed (errno says why); NGX_ABORT: cancelled */

static ngx_int_t
ngx_http_registry_fsck_hash(ngx_http_registry_fsck_t *fsck, ngx_fd_t fd,
    ngx_http_registry_hash_t *hash)
{
    ssize_t    n;
    ngx_int_t  rc;

    for ( ;; ) {
        n = read(fd, fsck->buf, fsck->chunk);

        if (n == -1) {
            if (ngx_errno == NGX_EINTR) {
                continue;
            }

            return NGX_DECLINED;
        }

        if (n == 0) {
            return NGX_OK;
        }

        ngx_http_registry_hash_update(hash, fsck->buf, n);
        fsck->bytes += n;

        rc = ngx_http_registry_fsck_throttle(fsck, n);
        if (rc != NGX_OK) {
            return rc;
        }
    }
}


/*
 * The corrupt bytes go aside, unless the name has meanwhile been given
 * other bytes (collected and pushed again): the file must still be the
 * one that was read.
 */

static ngx_int_t
ngx_http_registry_fsck_quarantine(ngx_http_registry_fsck_t *fsck,
    ngx_str_t *path, ngx_fd_t fd, ngx_http_registry_digest_t *digest)
{
    ngx_str_t        to;
    ngx_file_info_t  read, now;

    if (ngx_fd_info(fd, &read) == NGX_FILE_ERROR
        || ngx_http_registry_file_stat(&fsck->op, path, &now) != NGX_OK
        || read.st_ino != now.st_ino
        || read.st_dev != now.st_dev
        || ngx_http_registry_path_quarantine(&fsck->op, &to, digest)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_WARN, fsck->op.log, 0,
                  "registry: fsck: moving the corrupt blob \"%V\" to \"%V\"",
                  path, &to);

    /* durable: after a power cut the wrong bytes must not be served again */

    return ngx_http_registry_file_publish(&fsck->op, path, &to, 1);
}


/*
 * At most rehash_rate bytes a second since the phase began: the thread
 * sleeps (it is one of the pool's, never the event loop), in naps short
 * enough for a cancel to be seen.
 */

static ngx_int_t
ngx_http_registry_fsck_throttle(ngx_http_registry_fsck_t *fsck, size_t n)
{
    double           due, elapsed;
    struct timespec  now, nap;

    if (fsck->job->rehash_rate == 0) {
        return ngx_http_registry_fsck_cancelled(fsck);
    }

    due = (double) fsck->bytes / fsck->job->rehash_rate;

    for ( ;; ) {
        if (ngx_http_registry_fsck_cancelled(fsck) != NGX_OK) {
            return NGX_ABORT;
        }

        (void) clock_gettime(CLOCK_MONOTONIC, &now);

        elapsed = (now.tv_sec - fsck->start.tv_sec)
                  + (now.tv_nsec - fsck->start.tv_nsec) / 1e9;

        if (elapsed >= due) {
            return NGX_OK;
        }

        nap.tv_sec = 0;
        nap.tv_nsec = ngx_min((long) ((due - elapsed) * 1e9),
                              NGX_HTTP_REGISTRY_FSCK_NAP);

        (void) nanosleep(&nap, NULL);
    }
}
