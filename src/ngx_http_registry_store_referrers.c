
/*
 * ngx_http_registry_module: the referrers index.
 *
 * repositories/<name>/_ngx_referrers/<subject alg>/<subject hex>/ holds one
 * file per referrer, "<alg>-<hex>", with its descriptor as JSON;
 * distribution skips "_" directories.  An entry is a fact about immutable
 * manifest bytes, so it is only ever missing or dangling (its revision
 * deleted), never wrong: dangling entries are not listed, and missing ones
 * come back when the index is rebuilt from the manifests.  "built" is
 * stamped with the mtime the revisions directories had when the index was
 * last complete; a later mtime means someone else (distribution) added or
 * removed revisions, and the index is rebuilt.
 *
 * Each worker keeps the bodies it served, per subject and filter, while
 * the subject's directory and the revisions directories keep their mtimes
 * (store_list.c's listing cache); a referrer pushed or deleted through any
 * worker or host changes one of them.
 */


#include "ngx_http_registry_store.h"

#include <jansson.h>


#define NGX_HTTP_REGISTRY_INDEX_HEAD                                         \
    "{\"schemaVersion\":2,\"mediaType\":"                                    \
    "\"application/vnd.oci.image.index.v1+json\",\"manifests\":["
#define NGX_HTTP_REGISTRY_INDEX_TAIL  "]}"


typedef struct {
    ngx_str_t                  artifact_type;
    ngx_str_t                  json;
} ngx_http_registry_referrer_t;


static ngx_int_t ngx_http_registry_referrers_current(ngx_http_registry_op_t *op,
    ngx_str_t *name, struct timespec *asof);
static ngx_int_t ngx_http_registry_referrers_rebuild(ngx_http_registry_op_t *op,
    ngx_str_t *name, size_t max, struct timespec *asof);
static ngx_int_t ngx_http_registry_referrers_index(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_uint_t alg, ngx_str_t *hex, size_t max);
static ngx_int_t ngx_http_registry_referrers_collect(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *subject, size_t max,
    ngx_array_t *list);
static ngx_int_t ngx_http_registry_referrers_body(ngx_pool_t *pool,
    ngx_array_t *list, ngx_str_t *filter, ngx_str_t *body);
static ngx_int_t ngx_http_registry_referrers_key(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *subject, ngx_str_t *filter,
    ngx_str_t *key);
static ngx_int_t ngx_http_registry_timespec_after(struct timespec *a,
    struct timespec *b);


/* the index entry of a manifest just pushed, before its revision link */

ngx_int_t
ngx_http_registry_store_referrers_add(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *subject,
    ngx_http_registry_digest_t *referrer, ngx_str_t *descriptor)
{
    ngx_str_t  path;

    if (ngx_http_registry_path_referrer(op, &path, name, subject, referrer)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * durable: the push's 201 promises the referrers listing too, and an
     * index marked complete is not rebuilt from the manifests
     */

    return ngx_http_registry_file_write(op, &path, descriptor->data,
                                        descriptor->len, 1);
}


/*
 * A deleted manifest leaves the index: its subject is read from its
 * bytes (at most max); without bytes (collected) nothing can be listed.
 */

ngx_int_t
ngx_http_registry_store_referrers_remove(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *referrer, size_t max)
{
    ngx_str_t                   path, body, descriptor;
    ngx_http_registry_digest_t  subject;

    if (ngx_http_registry_path_blob(op, &path, referrer) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_registry_file_read(op, &path, max, &body) != NGX_OK
        || ngx_http_registry_manifest_referrer(op->pool, &body, referrer,
                                               &subject, &descriptor)
           != NGX_OK)
    {
        return NGX_OK;
    }

    return ngx_http_registry_store_referrers_unlink(op, name, &subject,
                                                    referrer);
}


/* the same, for a caller that knows the subject (gc's mark parsed it) */

ngx_int_t
ngx_http_registry_store_referrers_unlink(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *subject,
    ngx_http_registry_digest_t *referrer)
{
    ngx_str_t  path;

    if (ngx_http_registry_path_referrer(op, &path, name, subject, referrer)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return (ngx_http_registry_file_unlink(op, &path, 0) == NGX_ERROR)
           ? NGX_ERROR : NGX_OK;
}


/* whether the repository's index is complete, before a revision changes */

ngx_uint_t
ngx_http_registry_store_referrers_tracked(ngx_http_registry_op_t *op,
    ngx_str_t *name)
{
    struct timespec  asof;

    return ngx_http_registry_referrers_current(op, name, &asof) == NGX_OK;
}


/* after our own revision change, a complete index is still complete */

void
ngx_http_registry_store_referrers_restamp(ngx_http_registry_op_t *op,
    ngx_str_t *name)
{
    ngx_str_t        path;
    struct timespec  asof;

    if (ngx_http_registry_referrers_current(op, name, &asof) == NGX_DECLINED
        && ngx_http_registry_path_referrers_built(op, &path, name) == NGX_OK)
    {
        (void) ngx_http_registry_file_touch(op, &path, &asof);
    }
}


/*
 * The cached answer for the subject's referrers (of one artifactType when
 * filter->len), copied into the op's pool.  NGX_AGAIN: not cached; *stamp
 * is what to read them against (store_referrers_read()).  Event loop only.
 */

ngx_int_t
ngx_http_registry_store_referrers_cached(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *subject, ngx_str_t *filter,
    ngx_str_t *body, ngx_http_registry_result_t *result)
{
    ngx_str_t   key, dirs[3], *cached;
    ngx_uint_t  alg;

    if (ngx_http_registry_referrers_key(op, name, subject, filter, &key)
        != NGX_OK
        || ngx_http_registry_path_referrers(op, &dirs[0], name, subject)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (alg = NGX_HTTP_REGISTRY_SHA256; alg <= NGX_HTTP_REGISTRY_SHA512; alg++)
    {
        if (ngx_http_registry_path_revisions(op, &dirs[1 + alg], name, alg)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_registry_listing_stamp(op, dirs, 3, &result->stamp)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cached = ngx_http_registry_listing_find(op, op->store->referrers, &key,
                                            &result->stamp);
    if (cached == NULL) {
        return ngx_http_registry_listing_result(op, &key, result);
    }

    body->len = cached->len;
    body->data = ngx_pnalloc(op->pool, body->len);
    if (body->data == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    ngx_memcpy(body->data, cached->data, body->len);

    return NGX_OK;
}


/*
 * The answer, read from the index (rebuilt first if another program
 * changed the revisions), into result->pool: a thread pool task.
 */

ngx_int_t
ngx_http_registry_store_referrers_read(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *subject, ngx_str_t *filter,
    size_t max, ngx_http_registry_result_t *result)
{
    ngx_int_t         rc;
    ngx_str_t        *body;
    ngx_array_t       list;
    struct timespec   asof;

    rc = ngx_http_registry_referrers_current(op, name, &asof);

    if (rc == NGX_DECLINED
        && ngx_http_registry_store_is_repository(op, name) == NGX_OK)
    {
        rc = ngx_http_registry_referrers_rebuild(op, name, max, &asof);
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (ngx_array_init(&list, op->pool, 16,
                       sizeof(ngx_http_registry_referrer_t))
        != NGX_OK)
    {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (ngx_http_registry_referrers_collect(op, name, subject, max, &list)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    body = ngx_palloc(result->pool, sizeof(ngx_str_t));
    if (body == NULL
        || ngx_http_registry_referrers_body(result->pool, &list, filter, body)
           != NGX_OK)
    {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    result->value = body;

    return NGX_OK;
}


/* the answer read, kept unless racy, and copied for the response */

ngx_int_t
ngx_http_registry_store_referrers_remember(ngx_http_registry_op_t *op,
    ngx_http_registry_result_t *result, ngx_str_t *body)
{
    ngx_str_t  *read;

    read = result->value;

    body->len = read->len;
    body->data = ngx_pnalloc(op->pool, read->len);
    if (body->data == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    ngx_memcpy(body->data, read->data, read->len);

    ngx_http_registry_listing_keep(op, op->store->referrers, result);

    return NGX_OK;
}


/*
 * NGX_OK: the index covers every revision; NGX_DECLINED: it must be
 * rebuilt, and *asof is what to stamp it with before the rebuild reads
 * the revisions.
 */

static ngx_int_t
ngx_http_registry_referrers_current(ngx_http_registry_op_t *op,
    ngx_str_t *name, struct timespec *asof)
{
    ngx_int_t         rc;
    ngx_str_t         path;
    ngx_uint_t        alg;
    ngx_file_info_t   fi;

    asof->tv_sec = 0;
    asof->tv_nsec = 0;

    for (alg = NGX_HTTP_REGISTRY_SHA256; alg <= NGX_HTTP_REGISTRY_SHA512; alg++)
    {
        if (ngx_http_registry_path_revisions(op, &path, name, alg) != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_file_stat(op, &path, &fi);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK
            && ngx_http_registry_timespec_after(&fi.st_mtim, asof))
        {
            *asof = fi.st_mtim;
        }
    }

    if (ngx_http_registry_path_referrers_built(op, &path, name) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_stat(op, &path, &fi);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED
        || ngx_http_registry_timespec_after(asof, &fi.st_mtim))
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * Reads every manifest of the repository and adds the index entries that
 * are missing, then stamps the index with the revisions' state read
 * before (a revision added meanwhile makes it stale again).  Runs once
 * per repository, and again only after another program changed it.
 */

static ngx_int_t
ngx_http_registry_referrers_rebuild(ngx_http_registry_op_t *op,
    ngx_str_t *name, size_t max, struct timespec *asof)
{
    ngx_int_t    rc;
    ngx_str_t    dir, path, *hex;
    ngx_uint_t   alg, i;
    ngx_array_t  revisions;

    ngx_log_error(NGX_LOG_INFO, op->log, 0,
                  "registry: rebuilding the referrers index of \"%V\"", name);

    for (alg = NGX_HTTP_REGISTRY_SHA256; alg <= NGX_HTTP_REGISTRY_SHA512; alg++)
    {
        if (ngx_array_init(&revisions, op->pool, 64, sizeof(ngx_str_t))
            != NGX_OK)
        {
            return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
        }

        if (ngx_http_registry_path_revisions(op, &dir, name, alg) != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_file_list(op, &dir, NGX_HTTP_REGISTRY_LIST_DIRS,
                                         &revisions);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        hex = revisions.elts;

        for (i = 0; i < revisions.nelts; i++) {
            if (ngx_http_registry_referrers_index(op, name, alg, &hex[i], max)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    if (ngx_http_registry_path_referrers_built(op, &path, name) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_registry_file_touch(op, &path, asof);
}


/*
 * The index entry of one revision, if it is a manifest with a subject
 * and the entry is missing.  A revision whose bytes are gone, or that is
 * no such manifest, has none.
 */

static ngx_int_t
ngx_http_registry_referrers_index(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_uint_t alg, ngx_str_t *hex, size_t max)
{
    ngx_int_t                   rc;
    ngx_str_t                   path, body, descriptor;
    ngx_http_registry_digest_t  digest, subject;

    rc = ngx_http_registry_digest_of(op->pool, alg, hex, &digest);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK
                                    : ngx_http_registry_op_syserr(op,
                                                                  NGX_ENOMEM);
    }

    if (ngx_http_registry_path_blob(op, &path, &digest) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_registry_file_read(op, &path, max, &body) != NGX_OK
        || ngx_http_registry_manifest_referrer(op->pool, &body, &digest,
                                               &subject, &descriptor)
           != NGX_OK)
    {
        return NGX_OK;
    }

    if (ngx_http_registry_path_referrer(op, &path, name, &subject, &digest)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_registry_file_exists(op, &path) != NGX_DECLINED) {
        return NGX_OK;
    }

    return ngx_http_registry_file_write(op, &path, descriptor.data,
                                        descriptor.len, 0);
}


/* the subject's entries whose revision still exists, by digest order */

static ngx_int_t
ngx_http_registry_referrers_collect(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *subject, size_t max,
    ngx_array_t *list)
{
    json_t                        *desc, *type;
    ngx_int_t                      rc;
    ngx_str_t                      dir, path, content, *entry;
    ngx_uint_t                     i;
    ngx_array_t                    entries;
    ngx_http_registry_digest_t     referrer;
    ngx_http_registry_referrer_t  *ref;

    if (ngx_array_init(&entries, op->pool, 16, sizeof(ngx_str_t)) != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (ngx_http_registry_path_referrers(op, &dir, name, subject) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_list(op, &dir, NGX_HTTP_REGISTRY_LIST_FILES,
                                     &entries);
    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    ngx_http_registry_sort_names(&entries);

    entry = entries.elts;

    for (i = 0; i < entries.nelts; i++) {

        if (ngx_http_registry_path_parse_referrer(op, &entry[i], &referrer)
            != NGX_OK
            || ngx_http_registry_path_revision_link(op, &path, name, &referrer)
               != NGX_OK
            || ngx_http_registry_file_exists(op, &path) != NGX_OK
            || ngx_http_registry_path_referrer(op, &path, name, subject,
                                               &referrer)
               != NGX_OK
            || ngx_http_registry_file_read(op, &path, max, &content) != NGX_OK)
        {
            continue;
        }

        desc = json_loadb((char *) content.data, content.len, 0, NULL);

        if (!json_is_object(desc)) {
            json_decref(desc);
            continue;
        }

        ref = ngx_array_push(list);
        if (ref == NULL) {
            json_decref(desc);
            return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
        }

        ref->json = content;
        ngx_str_null(&ref->artifact_type);

        type = json_object_get(desc, "artifactType");

        if (json_is_string(type)) {
            ref->artifact_type.len = json_string_length(type);
            ref->artifact_type.data = ngx_pnalloc(op->pool,
                                                  ref->artifact_type.len + 1);
            if (ref->artifact_type.data == NULL) {
                json_decref(desc);
                return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
            }

            ngx_memcpy(ref->artifact_type.data, json_string_value(type),
                       ref->artifact_type.len + 1);
        }

        json_decref(desc);
    }

    return NGX_OK;
}


/* an OCI image index of the entries, of one artifactType if filter->len */

static ngx_int_t
ngx_http_registry_referrers_body(ngx_pool_t *pool, ngx_array_t *list,
    ngx_str_t *filter, ngx_str_t *body)
{
    u_char                        *p;
    size_t                         len;
    ngx_uint_t                     i, n;
    ngx_http_registry_referrer_t  *ref;

    ref = list->elts;
    len = sizeof(NGX_HTTP_REGISTRY_INDEX_HEAD NGX_HTTP_REGISTRY_INDEX_TAIL);

    for (i = 0; i < list->nelts; i++) {
        len += ref[i].json.len + 1;
    }

    body->data = ngx_pnalloc(pool, len);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(body->data, NGX_HTTP_REGISTRY_INDEX_HEAD,
                   sizeof(NGX_HTTP_REGISTRY_INDEX_HEAD) - 1);

    for (i = 0, n = 0; i < list->nelts; i++) {
        if (filter->len
            && (ref[i].artifact_type.len != filter->len
                || ngx_strncmp(ref[i].artifact_type.data, filter->data,
                               filter->len) != 0))
        {
            continue;
        }

        if (n++) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, ref[i].json.data, ref[i].json.len);
    }

    p = ngx_cpymem(p, NGX_HTTP_REGISTRY_INDEX_TAIL,
                   sizeof(NGX_HTTP_REGISTRY_INDEX_TAIL) - 1);

    body->len = p - body->data;

    return NGX_OK;
}


/* "<name> <subject> <filter>": a space is in none of them */

static ngx_int_t
ngx_http_registry_referrers_key(ngx_http_registry_op_t *op, ngx_str_t *name,
    ngx_http_registry_digest_t *subject, ngx_str_t *filter, ngx_str_t *key)
{
    key->len = name->len + 1 + subject->text.len + 1 + filter->len;
    key->data = ngx_pnalloc(op->pool, key->len);
    if (key->data == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    ngx_sprintf(key->data, "%V %V %V", name, &subject->text, filter);

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_timespec_after(struct timespec *a, struct timespec *b)
{
    return a->tv_sec > b->tv_sec
           || (a->tv_sec == b->tv_sec && a->tv_nsec > b->tv_nsec);
}
