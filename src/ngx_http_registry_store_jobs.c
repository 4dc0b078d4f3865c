
/*
 * ngx_http_registry_module: the files of maintenance jobs.
 *
 * _ngx_jobs/ beside the store's data holds one report per job,
 * <id>.json, written when the job starts (its state "running") and
 * replaced when it ends, so that any worker of any nginx sharing the
 * store can answer for it; the last NGX_HTTP_REGISTRY_JOBS_KEEP are kept.
 * Ids begin with their start time, so that their order is the jobs'.
 *
 * And the lease, _ngx_jobs/lease: one job at a time runs on a store,
 * whichever nginx shares it.  The nginx that creates the file (O_EXCL)
 * runs its job; the file names it (host, pid, id, kind) and its owner
 * sets its mtime every NGX_HTTP_REGISTRY_LEASE_REFRESH seconds while the
 * job runs, and removes it at the end.  The rule for a lease left behind:
 * one untouched for NGX_HTTP_REGISTRY_LEASE_STALE seconds (several
 * refresh periods) is stale, and so is one of this host whose pid no
 * process has (a worker killed).  A stale lease is taken over
 * (store_lease.c): renamed aside, and removed only if it is still the
 * stale file that was read (a rival may have taken it over and made a
 * fresh one meanwhile, which is then put back, never replacing another),
 * then created anew; the stale job's report, if it still says "running",
 * becomes "failed".  Hosts
 * sharing a store need clocks within a few seconds of each other.
 *
 * Every function here runs in a thread pool task.
 */


#include "ngx_http_registry_store.h"

#include <stdio.h>
#include <jansson.h>


#define NGX_HTTP_REGISTRY_JOBS_KEEP     50
#define NGX_HTTP_REGISTRY_REPORT_MAX    (64 * 1024 * 1024)


static ngx_fd_t ngx_http_registry_jobs_dir(ngx_http_registry_op_t *op,
    ngx_uint_t create);
static char *ngx_http_registry_jobs_base(ngx_str_t *path);
static ngx_int_t ngx_http_registry_lease_create(ngx_http_registry_op_t *op,
    ngx_fd_t dir, char *name, ngx_http_registry_lease_t *lease);
static ngx_int_t ngx_http_registry_lease_read(ngx_http_registry_op_t *op,
    ngx_fd_t dir, char *name, ngx_http_registry_lease_t *lease,
    ngx_file_info_t *fi);
static ngx_int_t ngx_http_registry_lease_parse(ngx_http_registry_op_t *op,
    u_char *data, size_t len, ngx_http_registry_lease_t *lease);
static ngx_int_t ngx_http_registry_lease_steal(ngx_http_registry_op_t *op,
    ngx_fd_t dir, char *name, ngx_file_info_t *stale,
    ngx_http_registry_lease_t *holder);
static ngx_int_t ngx_http_registry_lease_mine(ngx_http_registry_op_t *op,
    ngx_fd_t *dir, char **name, ngx_str_t *id);
static void ngx_http_registry_job_abandon(ngx_http_registry_op_t *op,
    ngx_http_registry_lease_t *lease);
static ngx_int_t ngx_http_registry_job_reports(ngx_http_registry_op_t *op,
    ngx_array_t *ids);
static void ngx_http_registry_job_prune(ngx_http_registry_op_t *op);
static json_t *ngx_http_registry_job_load(ngx_http_registry_op_t *op,
    ngx_str_t *id);
static ngx_int_t ngx_http_registry_job_dump(ngx_http_registry_op_t *op,
    json_t *doc, ngx_str_t *out);


/* ---- ids and times ---- */

/*
 * "20261202T022300Z-1a2b3c4d": the start's second, its millisecond in
 * three hex digits, then 20 random bits, so that ids sort by start even
 * for jobs started within one second (event loop only: the time).
 */

ngx_int_t
ngx_http_registry_job_new_id(u_char *id, time_t now)
{
    u_char      *p;
    ngx_tm_t     tm;
    ngx_uint_t   msec;
    ngx_time_t  *tp;
    u_char       random[6];

    tp = ngx_timeofday();
    msec = (tp->sec == now) ? tp->msec : 0;

    ngx_gmtime(now, &tm);

    p = ngx_sprintf(id, "%4d%02d%02dT%02d%02d%02dZ-%03xui",
                    tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                    tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec, msec);

    if (ngx_http_registry_random_hex(random, 3) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, random, 5);

    return NGX_OK;
}


ngx_int_t
ngx_http_registry_job_valid_id(ngx_str_t *id)
{
    u_char      c;
    ngx_uint_t  i;

    static u_char  shape[] = "99999999T999999Z-ffffffff";

    if (id->len != NGX_HTTP_REGISTRY_JOB_ID_LEN) {
        return NGX_DECLINED;
    }

    for (i = 0; i < id->len; i++) {
        c = id->data[i];

        switch (shape[i]) {

        case '9':
            if (c < '0' || c > '9') {
                return NGX_DECLINED;
            }
            break;

        case 'f':
            if ((c < '0' || c > '9') && (c < 'a' || c > 'f')) {
                return NGX_DECLINED;
            }
            break;

        default:
            if (c != shape[i]) {
                return NGX_DECLINED;
            }
        }
    }

    return NGX_OK;
}


/* "2026-12-02T02:23:00Z" (NGX_HTTP_REGISTRY_RFC3339_LEN bytes) */

u_char *
ngx_http_registry_rfc3339(u_char *buf, time_t t)
{
    ngx_tm_t  tm;

    ngx_gmtime(t, &tm);

    return ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
}


/* ---- the lease ---- */

/*
 * NGX_OK: the lease is ours.  NGX_BUSY: a live one holds it, *holder
 * says which (its fields empty if it could not be read).
 */

ngx_int_t
ngx_http_registry_store_lease_take(ngx_http_registry_op_t *op,
    ngx_http_registry_lease_t *ours, ngx_http_registry_lease_t *holder)
{
    char             *name;
    ngx_fd_t          dir;
    ngx_int_t         rc;
    ngx_str_t         path;
    ngx_uint_t        try;
    ngx_file_info_t   fi;

    if (ngx_http_registry_path_job_lease(op, &path, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    name = ngx_http_registry_jobs_base(&path);

    dir = ngx_http_registry_jobs_dir(op, 1);
    if (dir == NGX_INVALID_FILE) {
        return NGX_ERROR;
    }

    ngx_memzero(holder, sizeof(ngx_http_registry_lease_t));

    /* a stale lease is taken over, and a rival may do so at once too */

    for (try = 0; try < 3; try++) {

        rc = ngx_http_registry_lease_create(op, dir, name, ours);

        if (rc != NGX_DECLINED) {
            break;
        }

        rc = ngx_http_registry_lease_read(op, dir, name, holder, &fi);

        if (rc == NGX_DECLINED) {
            continue;                           /* gone meanwhile */
        }

        if (rc != NGX_OK) {
            break;
        }

        if (!ngx_http_registry_lease_stale(&fi, NGX_HTTP_REGISTRY_LEASE_STALE,
                                           &holder->host, holder->pid,
                                           &ours->host))
        {
            rc = NGX_BUSY;
            break;
        }

        rc = ngx_http_registry_lease_steal(op, dir, name, &fi, holder);

        if (rc != NGX_OK) {
            break;
        }

        ngx_log_error(NGX_LOG_WARN, op->log, 0,
                      "registry: the lease of job \"%V\" (host \"%V\", pid "
                      "%P) is stale, taken over", &holder->id, &holder->host,
                      holder->pid);

        ngx_http_registry_job_abandon(op, holder);

        rc = NGX_BUSY;
    }

    (void) close(dir);

    return rc;
}


/* NGX_DECLINED: there is a lease already */

static ngx_int_t
ngx_http_registry_lease_create(ngx_http_registry_op_t *op, ngx_fd_t dir,
    char *name, ngx_http_registry_lease_t *lease)
{
    json_t     *doc;
    ngx_int_t   rc;

    doc = json_pack("{s:s%,s:I,s:s%,s:s%,s:I}",
                    "host", lease->host.data, lease->host.len,
                    "pid", (json_int_t) lease->pid,
                    "id", lease->id.data, lease->id.len,
                    "kind", lease->kind.data, lease->kind.len,
                    "started", (json_int_t) lease->started);

    rc = ngx_http_registry_lease_file_create(op, dir, name, doc);

    json_decref(doc);

    return rc;
}


/*
 * NGX_DECLINED: no such file.  A lease that cannot be parsed (being
 * written, or damaged) is read with empty fields: only its mtime counts.
 */

static ngx_int_t
ngx_http_registry_lease_read(ngx_http_registry_op_t *op, ngx_fd_t dir,
    char *name, ngx_http_registry_lease_t *lease, ngx_file_info_t *fi)
{
    size_t     n;
    ngx_int_t  rc;
    u_char     buf[NGX_HTTP_REGISTRY_LEASE_MAX];

    ngx_memzero(lease, sizeof(ngx_http_registry_lease_t));

    rc = ngx_http_registry_lease_file_read(op, dir, name, buf, sizeof(buf),
                                           &n, fi);

    if (rc == NGX_OK && n > 0) {
        rc = ngx_http_registry_lease_parse(op, buf, n, lease);
    }

    return rc;
}


static ngx_int_t
ngx_http_registry_lease_parse(ngx_http_registry_op_t *op, u_char *data,
    size_t len, ngx_http_registry_lease_t *lease)
{
    json_t     *doc, *pid, *started;
    ngx_int_t   rc;

    doc = json_loadb((char *) data, len, 0, NULL);

    if (!json_is_object(doc)) {
        json_decref(doc);
        return NGX_OK;
    }

    pid = json_object_get(doc, "pid");
    started = json_object_get(doc, "started");

    lease->pid = json_is_integer(pid) ? (ngx_pid_t) json_integer_value(pid)
                                      : 0;
    lease->started = json_is_integer(started)
                     ? (time_t) json_integer_value(started) : 0;

    rc = NGX_OK;

    if (ngx_http_registry_json_string(op, doc, "host", &lease->host) != NGX_OK
        || ngx_http_registry_json_string(op, doc, "id", &lease->id) != NGX_OK
        || ngx_http_registry_json_string(op, doc, "kind", &lease->kind)
           != NGX_OK)
    {
        rc = ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    json_decref(doc);

    return rc;
}


/*
 * Moves the stale lease aside (lease_file_steal()); NGX_OK: it was that
 * one, and it is gone.  NGX_BUSY: a rival's fresh lease holds it,
 * *holder says whose.
 */

static ngx_int_t
ngx_http_registry_lease_steal(ngx_http_registry_op_t *op, ngx_fd_t dir,
    char *name, ngx_file_info_t *stale, ngx_http_registry_lease_t *holder)
{
    ngx_int_t        rc;
    ngx_str_t        path, suffix;
    ngx_file_info_t  fi;
    u_char           hex[16];

    suffix.data = hex;
    suffix.len = sizeof(hex);

    if (ngx_http_registry_random_hex(hex, sizeof(hex) / 2) != NGX_OK
        || ngx_http_registry_path_job_lease(op, &path, &suffix) != NGX_OK)
    {
        return ngx_http_registry_op_fail(op, NGX_HTTP_REGISTRY_INTERNAL,
                                         "no name for the stale lease");
    }

    rc = ngx_http_registry_lease_file_steal(op, dir, name,
                                            ngx_http_registry_jobs_base(&path),
                                            stale, &holder->id);

    if (rc == NGX_BUSY) {
        (void) ngx_http_registry_lease_read(op, dir, name, holder, &fi);
    }

    return rc;
}


/* while the job runs: NGX_DECLINED when the lease is no longer its own */

ngx_int_t
ngx_http_registry_store_lease_refresh(ngx_http_registry_op_t *op,
    ngx_str_t *id)
{
    char       *name;
    ngx_fd_t    dir;
    ngx_int_t   rc;

    rc = ngx_http_registry_lease_mine(op, &dir, &name, id);
    if (rc != NGX_OK) {
        return rc;
    }

    if (utimensat(dir, name, NULL, AT_SYMLINK_NOFOLLOW) == -1) {
        ngx_log_error(NGX_LOG_CRIT, op->log, ngx_errno,
                      "refreshing the jobs' lease failed");
        rc = ngx_http_registry_op_syserr(op, ngx_errno);
    }

    (void) close(dir);

    return rc;
}


ngx_int_t
ngx_http_registry_store_lease_drop(ngx_http_registry_op_t *op, ngx_str_t *id)
{
    char       *name;
    ngx_fd_t    dir;
    ngx_int_t   rc;

    rc = ngx_http_registry_lease_mine(op, &dir, &name, id);
    if (rc != NGX_OK) {
        return rc;
    }

    if (unlinkat(dir, name, 0) == -1) {
        ngx_log_error(NGX_LOG_CRIT, op->log, ngx_errno,
                      "removing the jobs' lease failed");
        rc = ngx_http_registry_op_syserr(op, ngx_errno);
    }

    (void) close(dir);

    return rc;
}


/* NGX_OK: the lease names job "id", *dir is open; NGX_DECLINED: it does not */

static ngx_int_t
ngx_http_registry_lease_mine(ngx_http_registry_op_t *op, ngx_fd_t *dir,
    char **name, ngx_str_t *id)
{
    ngx_int_t                  rc;
    ngx_str_t                  path;
    ngx_file_info_t            fi;
    ngx_http_registry_lease_t  lease;

    if (ngx_http_registry_path_job_lease(op, &path, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    *name = ngx_http_registry_jobs_base(&path);

    *dir = ngx_http_registry_jobs_dir(op, 0);
    if (*dir == NGX_INVALID_FILE) {
        return (op->fault.errnum == NGX_ENOENT) ? NGX_DECLINED : NGX_ERROR;
    }

    rc = ngx_http_registry_lease_read(op, *dir, *name, &lease, &fi);

    if (rc == NGX_OK
        && (lease.id.len != id->len
            || ngx_strncmp(lease.id.data, id->data, id->len) != 0))
    {
        rc = NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        (void) close(*dir);
    }

    return rc;
}


/* a job whose lease was taken over never ends by itself */

static void
ngx_http_registry_job_abandon(ngx_http_registry_op_t *op,
    ngx_http_registry_lease_t *lease)
{
    u_char     *p;
    json_t     *doc;
    ngx_str_t   state;
    u_char      finished[NGX_HTTP_REGISTRY_RFC3339_LEN];

    if (ngx_http_registry_job_valid_id(&lease->id) != NGX_OK) {
        return;
    }

    doc = ngx_http_registry_job_load(op, &lease->id);
    if (doc == NULL) {
        return;
    }

    if (ngx_http_registry_json_string(op, doc, "state", &state) == NGX_OK
        && state.len == sizeof("running") - 1
        && ngx_strncmp(state.data, "running", state.len) == 0)
    {
        p = ngx_http_registry_rfc3339(finished, ngx_time());

        if (json_object_set_new(doc, "state", json_string("failed")) == 0
            && json_object_set_new(doc, "finished",
                                   json_stringn((char *) finished,
                                                p - finished))
               == 0
            && json_object_set_new(doc, "error",
                                   json_string("abandoned: its nginx "
                                               "stopped holding the "
                                               "lease"))
               == 0)
        {
            (void) ngx_http_registry_store_job_save(op, &lease->id, doc, 0);
        }
    }

    json_decref(doc);
}


/* ---- reports ---- */

/*
 * Writes the job's document (a json_t), replacing the one before; a final
 * one makes older reports beyond the last NGX_HTTP_REGISTRY_JOBS_KEEP go.
 */

ngx_int_t
ngx_http_registry_store_job_save(ngx_http_registry_op_t *op, ngx_str_t *id,
    void *doc, ngx_uint_t final)
{
    ngx_str_t  path, text;

    if (ngx_http_registry_path_job_report(op, &path, id) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_registry_job_dump(op, doc, &text) != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (ngx_http_registry_file_write(op, &path, text.data, text.len, 0)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (final) {
        ngx_http_registry_job_prune(op);
    }

    return NGX_OK;
}


/* the report's full path, for a send as a file; no system call */

ngx_int_t
ngx_http_registry_store_job_report_file(ngx_http_registry_op_t *op,
    ngx_str_t *id, ngx_str_t *out)
{
    ngx_str_t  path;

    if (ngx_http_registry_path_job_report(op, &path, id) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_registry_path_absolute(op, out, &path);
}


/*
 * The recent jobs, newest first, as {"jobs":[{"id","kind","state",
 * "started","finished"},...]}, into out (the op's pool).
 */

ngx_int_t
ngx_http_registry_store_jobs_list(ngx_http_registry_op_t *op, ngx_str_t *out)
{
    json_t      *jobs, *doc, *entry, *v;
    ngx_int_t    rc;
    ngx_str_t   *id;
    ngx_uint_t   i, k;
    ngx_array_t  ids;

    static const char  *keys[] = { "id", "kind", "state", "started",
                                   "finished", NULL };

    if (ngx_array_init(&ids, op->pool, 16, sizeof(ngx_str_t)) != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (ngx_http_registry_job_reports(op, &ids) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the newest first: ids begin with the time of their start */

    jobs = json_array();
    if (jobs == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    id = ids.elts;
    rc = NGX_OK;

    for (i = ids.nelts; i-- > 0; /* void */) {
        doc = ngx_http_registry_job_load(op, &id[i]);
        if (doc == NULL) {
            continue;
        }

        entry = json_object();

        for (k = 0; entry && keys[k]; k++) {
            v = json_object_get(doc, keys[k]);

            if (v && json_object_set(entry, keys[k], v) != 0) {
                json_decref(entry);
                entry = NULL;
            }
        }

        json_decref(doc);

        if (entry == NULL || json_array_append_new(jobs, entry) != 0) {
            json_decref(jobs);
            return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
        }
    }

    doc = json_pack("{s:o}", "jobs", jobs);

    if (doc == NULL || ngx_http_registry_job_dump(op, doc, out) != NGX_OK) {
        rc = ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    json_decref(doc);

    return rc;
}


/* the ids of the reports in _ngx_jobs, oldest first */

static ngx_int_t
ngx_http_registry_job_reports(ngx_http_registry_op_t *op, ngx_array_t *ids)
{
    ngx_int_t     rc;
    ngx_str_t     dir, *name, *id;
    ngx_uint_t    i;
    ngx_array_t   names;

    if (ngx_array_init(&names, op->pool, 16, sizeof(ngx_str_t)) != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (ngx_http_registry_path_jobs(op, &dir) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_list(op, &dir, NGX_HTTP_REGISTRY_LIST_FILES,
                                     &names);
    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    name = names.elts;

    for (i = 0; i < names.nelts; i++) {
        if (name[i].len != NGX_HTTP_REGISTRY_JOB_ID_LEN + sizeof(".json") - 1
            || ngx_strncmp(name[i].data + NGX_HTTP_REGISTRY_JOB_ID_LEN,
                           ".json", sizeof(".json") - 1)
               != 0)
        {
            continue;
        }

        name[i].len = NGX_HTTP_REGISTRY_JOB_ID_LEN;

        if (ngx_http_registry_job_valid_id(&name[i]) != NGX_OK) {
            continue;
        }

        id = ngx_array_push(ids);
        if (id == NULL) {
            return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
        }

        *id = name[i];
    }

    ngx_http_registry_sort_names(ids);

    return NGX_OK;
}


static void
ngx_http_registry_job_prune(ngx_http_registry_op_t *op)
{
    ngx_str_t    *id, path;
    ngx_uint_t    i;
    ngx_array_t   ids;

    if (ngx_array_init(&ids, op->pool, 16, sizeof(ngx_str_t)) != NGX_OK
        || ngx_http_registry_job_reports(op, &ids) != NGX_OK)
    {
        return;
    }

    id = ids.elts;

    for (i = 0; i + NGX_HTTP_REGISTRY_JOBS_KEEP < ids.nelts; i++) {
        if (ngx_http_registry_path_job_report(op, &path, &id[i]) == NGX_OK) {
            (void) ngx_http_registry_file_unlink(op, &path, 0);
        }
    }
}


/* a report as a JSON object, or NULL (logged unless it is just gone) */

static json_t *
ngx_http_registry_job_load(ngx_http_registry_op_t *op, ngx_str_t *id)
{
    json_t        *doc;
    ngx_str_t      path, content;
    json_error_t   err;

    if (ngx_http_registry_path_job_report(op, &path, id) != NGX_OK
        || ngx_http_registry_file_read(op, &path,
                                       NGX_HTTP_REGISTRY_REPORT_MAX, &content)
           != NGX_OK)
    {
        return NULL;
    }

    doc = json_loadb((char *) content.data, content.len, 0, &err);

    if (!json_is_object(doc)) {
        ngx_log_error(NGX_LOG_ERR, op->log, 0,
                      "registry: job report \"%V\" is not a JSON object: %s",
                      &path, err.text);
        json_decref(doc);
        return NULL;
    }

    return doc;
}


/* compact JSON and a newline, into the op's pool */

static ngx_int_t
ngx_http_registry_job_dump(ngx_http_registry_op_t *op, json_t *doc,
    ngx_str_t *out)
{
    char    *text;
    size_t   len;

    text = json_dumps(doc, JSON_COMPACT);
    if (text == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(text);

    out->data = ngx_pnalloc(op->pool, len + 1);
    if (out->data == NULL) {
        free(text);
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, text, len);
    out->data[len] = '\n';
    out->len = len + 1;

    free(text);

    return NGX_OK;
}


/* a string member, copied into the op's pool; empty when not a string */

ngx_int_t
ngx_http_registry_json_string(ngx_http_registry_op_t *op, json_t *obj,
    const char *key, ngx_str_t *s)
{
    json_t  *v;

    v = json_object_get(obj, key);

    s->len = 0;
    s->data = NULL;

    if (!json_is_string(v)) {
        return NGX_OK;
    }

    s->len = json_string_length(v);
    s->data = ngx_pnalloc(op->pool, s->len + 1);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->data, json_string_value(v), s->len);
    s->data[s->len] = '\0';

    return NGX_OK;
}


/* ---- the directory ---- */

/* _ngx_jobs, open for *at() calls; NGX_INVALID_FILE with op->fault set */

static ngx_fd_t
ngx_http_registry_jobs_dir(ngx_http_registry_op_t *op, ngx_uint_t create)
{
    ngx_fd_t   fd;
    ngx_err_t  err;
    ngx_str_t  dir;

    if (ngx_http_registry_path_jobs(op, &dir) != NGX_OK) {
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


/* the last name of a path of the table, for *at() calls in _ngx_jobs */

static char *
ngx_http_registry_jobs_base(ngx_str_t *path)
{
    u_char  *p;

    for (p = path->data + path->len; p > path->data && p[-1] != '/'; p--) {
        /* void */
    }

    return (char *) p;
}
