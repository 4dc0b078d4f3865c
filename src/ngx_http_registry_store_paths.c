
/*
 * ngx_http_registry_module: the path table.
 *
 * Every path of the store is formatted here and nowhere else, as in
 * distribution's registry/storage/paths.go (see
 * shared/design/store-layout.md).  Paths are relative to the store's root
 * (<registry_root>/docker/registry/v2) and NUL-terminated; store_files.c
 * resolves them beneath the root without following symbolic links.
 * Names and digests reaching this file have been validated.
 */


#include "ngx_http_registry_store.h"


#define NGX_HTTP_REGISTRY_PATH_MAX  1024
#define NGX_HTTP_REGISTRY_TMP_DIR   "_ngx_tmp"
#define NGX_HTTP_REGISTRY_JOBS_DIR  "_ngx_jobs"
#define NGX_HTTP_REGISTRY_TOMBS_DIR "_ngx_tombstones"
#define NGX_HTTP_REGISTRY_QUARANTINE_DIR  "_ngx_quarantine"
#define NGX_HTTP_REGISTRY_LOCKS_DIR "_ngx_locks"
#define NGX_HTTP_REGISTRY_FLIGHTS_DIR "_ngx_flights"


static ngx_int_t ngx_http_registry_path(ngx_http_registry_op_t *op,
    ngx_str_t *out, const char *fmt, ...);


/* the directories that make a directory a repository */

static ngx_str_t  ngx_http_registry_marks[NGX_HTTP_REGISTRY_MARKS] = {
    ngx_string("_manifests"),
    ngx_string("_layers"),
    ngx_string("_uploads")
};


ngx_int_t
ngx_http_registry_path_blob(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_http_registry_digest_t *digest)
{
    return ngx_http_registry_path(op, out, "blobs/%V/%*s/%V/data",
                                  ngx_http_registry_alg_name(digest->alg),
                                  (size_t) 2, digest->hex.data, &digest->hex);
}


/* the same, in full, for nginx's open_file_cache */

ngx_int_t
ngx_http_registry_path_blob_file(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_http_registry_digest_t *digest)
{
    ngx_str_t  path;

    if (ngx_http_registry_path_blob(op, &path, digest) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_registry_path_absolute(op, out, &path);
}


/* blobs/<alg>, or one of its two-digit prefix directories */

ngx_int_t
ngx_http_registry_path_blobs(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_uint_t alg, ngx_str_t *prefix)
{
    if (prefix == NULL) {
        return ngx_http_registry_path(op, out, "blobs/%V",
                                      ngx_http_registry_alg_name(alg));
    }

    return ngx_http_registry_path(op, out, "blobs/%V/%V",
                                  ngx_http_registry_alg_name(alg), prefix);
}


/*
 * Where fsck moves a blob whose bytes do not hash to its name, out of
 * distribution's sight (a "_" directory beside blobs/), for the operator.
 */

ngx_int_t
ngx_http_registry_path_quarantine(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_http_registry_digest_t *digest)
{
    return ngx_http_registry_path(op, out, NGX_HTTP_REGISTRY_QUARANTINE_DIR
                                  "/%V/%V",
                                  ngx_http_registry_alg_name(digest->alg),
                                  &digest->hex);
}


/* _layers/<alg>: its entries are the hex of the blobs of that alg */

ngx_int_t
ngx_http_registry_path_layers(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *name, ngx_uint_t alg)
{
    return ngx_http_registry_path(op, out, "repositories/%V/_layers/%V",
                                  name, ngx_http_registry_alg_name(alg));
}


ngx_int_t
ngx_http_registry_path_layer_link(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *name, ngx_http_registry_digest_t *digest)
{
    return ngx_http_registry_path(op, out, "repositories/%V/_layers/%V/%V/link",
                                  name,
                                  ngx_http_registry_alg_name(digest->alg),
                                  &digest->hex);
}


ngx_int_t
ngx_http_registry_path_revision_link(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name, ngx_http_registry_digest_t *digest)
{
    return ngx_http_registry_path(op, out,
                                  "repositories/%V/_manifests/revisions/%V/%V"
                                  "/link", name,
                                  ngx_http_registry_alg_name(digest->alg),
                                  &digest->hex);
}


/* revisions/<alg>: its entries are the hex of the manifests of that alg */

ngx_int_t
ngx_http_registry_path_revisions(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *name, ngx_uint_t alg)
{
    return ngx_http_registry_path(op, out,
                                  "repositories/%V/_manifests/revisions/%V",
                                  name, ngx_http_registry_alg_name(alg));
}


/* tags/: one directory per tag */

ngx_int_t
ngx_http_registry_path_tags(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *name)
{
    return ngx_http_registry_path(op, out, "repositories/%V/_manifests/tags",
                                  name);
}


ngx_int_t
ngx_http_registry_path_tag(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *name, ngx_str_t *tag)
{
    return ngx_http_registry_path(op, out,
                                  "repositories/%V/_manifests/tags/%V",
                                  name, tag);
}


/* the link naming the manifest a tag points at */

ngx_int_t
ngx_http_registry_path_tag_link(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *name, ngx_str_t *tag)
{
    return ngx_http_registry_path(op, out,
                                  "repositories/%V/_manifests/tags/%V/"
                                  "current/link", name, tag);
}


/*
 * The same three files named beneath a directory held open (see
 * ngx_http_registry_dir_open()), for an entry its listing gave: a tag's
 * current link beneath path_tags(), a revision's or a layer's link
 * beneath path_revisions() or path_layers(), a blob's bytes beneath its
 * path_blobs() prefix directory.
 */

ngx_int_t
ngx_http_registry_path_in_tags(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *tag)
{
    return ngx_http_registry_path(op, out, "%V/current/link", tag);
}


ngx_int_t
ngx_http_registry_path_in_links(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *hex)
{
    return ngx_http_registry_path(op, out, "%V/link", hex);
}


ngx_int_t
ngx_http_registry_path_in_blobs(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *hex)
{
    return ngx_http_registry_path(op, out, "%V/data", hex);
}


/* the tag's history: one link per manifest it ever pointed at */

ngx_int_t
ngx_http_registry_path_tag_index(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *name, ngx_str_t *tag, ngx_http_registry_digest_t *digest)
{
    return ngx_http_registry_path(op, out,
                                  "repositories/%V/_manifests/tags/%V/"
                                  "index/%V/%V/link", name, tag,
                                  ngx_http_registry_alg_name(digest->alg),
                                  &digest->hex);
}


ngx_int_t
ngx_http_registry_path_uploads(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *name)
{
    return ngx_http_registry_path(op, out, "repositories/%V/_uploads", name);
}


/* _uploads/<id>, or a file in it: data, startedat, the module's state */

ngx_int_t
ngx_http_registry_path_upload(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *name, ngx_str_t *id, const char *file)
{
    if (file == NULL) {
        return ngx_http_registry_path(op, out, "repositories/%V/_uploads/%V",
                                      name, id);
    }

    return ngx_http_registry_path(op, out, "repositories/%V/_uploads/%V/%s",
                                  name, id, file);
}


/*
 * The module's referrers index, which distribution skips (a "_"
 * directory): _ngx_referrers/<subject alg>/<subject hex>/ holds one file
 * per referrer, "<alg>-<hex>", with its descriptor as JSON.
 */

ngx_int_t
ngx_http_registry_path_referrers(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *name, ngx_http_registry_digest_t *subject)
{
    return ngx_http_registry_path(op, out,
                                  "repositories/%V/_ngx_referrers/%V/%V", name,
                                  ngx_http_registry_alg_name(subject->alg),
                                  &subject->hex);
}


ngx_int_t
ngx_http_registry_path_referrer(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *name, ngx_http_registry_digest_t *subject,
    ngx_http_registry_digest_t *referrer)
{
    return ngx_http_registry_path(op, out,
                                  "repositories/%V/_ngx_referrers/%V/%V/%V-%V",
                                  name,
                                  ngx_http_registry_alg_name(subject->alg),
                                  &subject->hex,
                                  ngx_http_registry_alg_name(referrer->alg),
                                  &referrer->hex);
}


/* _ngx_referrers/<alg>: one directory per subject of that alg */

ngx_int_t
ngx_http_registry_path_referrer_subjects(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name, ngx_uint_t alg)
{
    return ngx_http_registry_path(op, out,
                                  "repositories/%V/_ngx_referrers/%V", name,
                                  ngx_http_registry_alg_name(alg));
}


/* an entry's name "<alg>-<hex>" back to the referrer's digest */

ngx_int_t
ngx_http_registry_path_parse_referrer(ngx_http_registry_op_t *op,
    ngx_str_t *entry, ngx_http_registry_digest_t *referrer)
{
    u_char     *dash;
    ngx_str_t   text;

    dash = ngx_strlchr(entry->data, entry->data + entry->len, '-');

    if (dash == NULL || entry->len > NGX_HTTP_REGISTRY_DIGEST_MAX_LEN) {
        return NGX_DECLINED;
    }

    text.len = entry->len;
    text.data = ngx_pnalloc(op->pool, text.len);
    if (text.data == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    ngx_memcpy(text.data, entry->data, text.len);
    text.data[dash - entry->data] = ':';

    return (ngx_http_registry_parse_digest(&text, referrer) == NGX_OK)
           ? NGX_OK : NGX_DECLINED;
}


/* stamped with the revisions' state when the index was last complete */

ngx_int_t
ngx_http_registry_path_referrers_built(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name)
{
    return ngx_http_registry_path(op, out,
                                  "repositories/%V/_ngx_referrers/built",
                                  name);
}


/* repositories/<name>, or one of the directories that make it one */

ngx_int_t
ngx_http_registry_path_repository(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *name, ngx_uint_t mark)
{
    if (mark >= NGX_HTTP_REGISTRY_MARKS) {
        return ngx_http_registry_path(op, out, "repositories/%V", name);
    }

    return ngx_http_registry_path(op, out, "repositories/%V/%V", name,
                                  &ngx_http_registry_marks[mark]);
}


ngx_int_t
ngx_http_registry_path_repositories(ngx_http_registry_op_t *op,
    ngx_str_t *out)
{
    return ngx_http_registry_path(op, out, "repositories");
}


/* NGX_OK: a directory of this name makes its parent a repository */

ngx_int_t
ngx_http_registry_path_is_mark(u_char *name, size_t len)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_REGISTRY_MARKS; i++) {
        if (len == ngx_http_registry_marks[i].len
            && ngx_strncmp(name, ngx_http_registry_marks[i].data, len) == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * Blobs garbage collection moved aside, <alg>/<hex> (no data file of
 * their own: the file is the blob).  Distribution never looks at a "_"
 * directory beside blobs/ and repositories/.  alg's directory when
 * digest is NULL.
 */

ngx_int_t
ngx_http_registry_path_tombstone(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_uint_t alg, ngx_http_registry_digest_t *digest)
{
    if (digest == NULL) {
        return ngx_http_registry_path(op, out, NGX_HTTP_REGISTRY_TOMBS_DIR
                                      "/%V", ngx_http_registry_alg_name(alg));
    }

    return ngx_http_registry_path(op, out, NGX_HTTP_REGISTRY_TOMBS_DIR "/%V/%V",
                                  ngx_http_registry_alg_name(digest->alg),
                                  &digest->hex);
}


/*
 * What a garbage collection run moved aside, one digest a line: the
 * file's time is when their second grace starts (store_gc.c).  The
 * directory when name is NULL.
 */

ngx_int_t
ngx_http_registry_path_tomb_record(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *name)
{
    if (name == NULL) {
        return ngx_http_registry_path(op, out,
                                      NGX_HTTP_REGISTRY_TOMBS_DIR "/moved");
    }

    return ngx_http_registry_path(op, out, NGX_HTTP_REGISTRY_TOMBS_DIR
                                  "/moved/%V", name);
}


/*
 * The module's temporary files, on the store's file system so that
 * publishing is a rename(2); distribution never looks at _ngx_tmp.  An
 * empty id names the directory.
 */

ngx_int_t
ngx_http_registry_path_temp(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *id)
{
    if (id == NULL) {
        return ngx_http_registry_path(op, out, NGX_HTTP_REGISTRY_TMP_DIR);
    }

    return ngx_http_registry_path(op, out, NGX_HTTP_REGISTRY_TMP_DIR "/%V", id);
}


/* the id of a temporary file's path, for ngx_http_registry_path_temp() */

void
ngx_http_registry_path_temp_id(ngx_str_t *path, ngx_str_t *id)
{
    id->data = path->data + sizeof(NGX_HTTP_REGISTRY_TMP_DIR "/") - 1;
    id->len = path->len - (sizeof(NGX_HTTP_REGISTRY_TMP_DIR "/") - 1);
}


/*
 * A repository's lock file (store_manifest.c), which distribution never
 * looks at: _ngx_locks/<sha256 hex of the name>, so that it is one name
 * whatever slashes the repository's has.  Lock files stay: removing one
 * another writer has open would let two writers hold "the" lock.
 */

ngx_int_t
ngx_http_registry_path_repository_lock(ngx_http_registry_op_t *op,
    ngx_str_t *out, ngx_str_t *name)
{
    u_char  md[SHA256_DIGEST_LENGTH];
    u_char  hex[2 * SHA256_DIGEST_LENGTH];

    (void) SHA256(name->data, name->len, md);
    (void) ngx_hex_dump(hex, md, sizeof(md));

    return ngx_http_registry_path(op, out, NGX_HTTP_REGISTRY_LOCKS_DIR "/%*s",
                                  sizeof(hex), hex);
}


/*
 * The maintenance jobs' directory (jobs.c, store_jobs.c), which
 * distribution never looks at: _ngx_jobs/<id>.json, the report of each
 * job, and _ngx_jobs/lease, held by the nginx running a job on the store
 * (a suffix names the lease for a moment while it is taken over).
 */

ngx_int_t
ngx_http_registry_path_jobs(ngx_http_registry_op_t *op, ngx_str_t *out)
{
    return ngx_http_registry_path(op, out, NGX_HTTP_REGISTRY_JOBS_DIR);
}


ngx_int_t
ngx_http_registry_path_job_report(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *id)
{
    return ngx_http_registry_path(op, out,
                                  NGX_HTTP_REGISTRY_JOBS_DIR "/%V.json", id);
}


ngx_int_t
ngx_http_registry_path_job_lease(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *suffix)
{
    if (suffix == NULL) {
        return ngx_http_registry_path(op, out,
                                      NGX_HTTP_REGISTRY_JOBS_DIR "/lease");
    }

    return ngx_http_registry_path(op, out, NGX_HTTP_REGISTRY_JOBS_DIR
                                  "/lease.%V", suffix);
}


/*
 * The leases of the mirror's blob fetches (store_flight.c), which
 * distribution never looks at: _ngx_flights/<alg>/<hex>, held by the
 * nginx fetching that blob (a suffix names one for a moment while it is
 * taken over); alg's directory when digest is NULL.
 */

ngx_int_t
ngx_http_registry_path_flight(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_uint_t alg, ngx_http_registry_digest_t *digest, ngx_str_t *suffix)
{
    if (digest == NULL) {
        return ngx_http_registry_path(op, out, NGX_HTTP_REGISTRY_FLIGHTS_DIR
                                      "/%V", ngx_http_registry_alg_name(alg));
    }

    if (suffix == NULL) {
        return ngx_http_registry_path(op, out, NGX_HTTP_REGISTRY_FLIGHTS_DIR
                                      "/%V/%V",
                                      ngx_http_registry_alg_name(digest->alg),
                                      &digest->hex);
    }

    return ngx_http_registry_path(op, out, NGX_HTTP_REGISTRY_FLIGHTS_DIR
                                  "/%V/%V.%V",
                                  ngx_http_registry_alg_name(digest->alg),
                                  &digest->hex, suffix);
}


/*
 * A directory a walk of the whole store found, by its path below the
 * root ("." for an empty sub, the root itself), and an entry a listing
 * of such a directory found.
 */

ngx_int_t
ngx_http_registry_path_store(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *sub)
{
    if (sub->len == 0) {
        return ngx_http_registry_path(op, out, ".");
    }

    return ngx_http_registry_path(op, out, "%V", sub);
}


ngx_int_t
ngx_http_registry_path_entry(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *dir, ngx_str_t *name)
{
    if (dir->len == 1 && dir->data[0] == '.') {
        return ngx_http_registry_path(op, out, "%V", name);
    }

    return ngx_http_registry_path(op, out, "%V/%V", dir, name);
}


/* "<root>/<path>": for nginx's open_file_cache, which takes full paths */

ngx_int_t
ngx_http_registry_path_absolute(ngx_http_registry_op_t *op, ngx_str_t *out,
    ngx_str_t *path)
{
    u_char                     *p;
    ngx_http_registry_store_t  *st;

    st = op->store;

    out->len = st->root.len + 1 + path->len;
    out->data = ngx_pnalloc(op->pool, out->len + 1);
    if (out->data == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    p = ngx_cpymem(out->data, st->root.data, st->root.len);
    *p++ = '/';
    p = ngx_cpymem(p, path->data, path->len);
    *p = '\0';

    return NGX_OK;
}


/*
 * Formats on the stack first, so that the pool gets only the bytes
 * needed.  Only %V, %s and %*s occur in the table: a formatter of its own
 * costs a pull a fifth of what ngx_vslprintf() does.
 */

static ngx_int_t
ngx_http_registry_path(ngx_http_registry_op_t *op, ngx_str_t *out,
    const char *fmt, ...)
{
    u_char      *p, *last, *s;
    size_t       len;
    va_list      args;
    ngx_str_t   *v;
    u_char       buf[NGX_HTTP_REGISTRY_PATH_MAX];

    p = buf;
    last = buf + sizeof(buf);

    va_start(args, fmt);

    for ( /* void */ ; *fmt; fmt++) {

        if (*fmt != '%') {
            s = (u_char *) fmt;

            while (fmt[1] != '%' && fmt[1] != '\0') {
                fmt++;
            }

            len = (u_char *) fmt + 1 - s;

        } else if (fmt[1] == 'V') {
            v = va_arg(args, ngx_str_t *);
            s = v->data;
            len = v->len;
            fmt++;

        } else if (fmt[1] == 's') {
            s = va_arg(args, u_char *);
            len = ngx_strlen(s);
            fmt++;

        } else {                                 /* "%*s" */
            len = va_arg(args, size_t);
            s = va_arg(args, u_char *);
            fmt += 2;
        }

        if ((size_t) (last - p) <= len) {
            va_end(args);
            return ngx_http_registry_op_fail(op, NGX_HTTP_REGISTRY_INTERNAL,
                                             "path too long");
        }

        p = ngx_cpymem(p, s, len);
    }

    va_end(args);

    out->len = p - buf;
    out->data = ngx_pnalloc(op->pool, out->len + 1);
    if (out->data == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    ngx_memcpy(out->data, buf, out->len);
    out->data[out->len] = '\0';

    return NGX_OK;
}
