
/*
 * ngx_http_registry_module: the runner of maintenance jobs.
 *
 * A job (gc, fsck, purge-uploads: the table of kinds below) is one store
 * operation run as a detached task of the thread pool, never in the event
 * loop, and at most one runs on a store at a time.  Among the workers of
 * this nginx, the store's slot in the shared zone decides: it holds the
 * running job's id, kind, start, phase names and progress counters, and
 * the pid of the worker that runs it, so that any worker answers for it;
 * a slot whose pid no process has any more (a worker killed) is free.
 * Among the nginx hosts sharing the store, its lease file decides
 * (store_jobs.c), taken in a thread before the job starts.
 *
 * While the job runs, a timer of its worker ticks every second: it copies
 * the job's phase names into the slot, asks a thread to refresh the lease
 * every NGX_HTTP_REGISTRY_LEASE_REFRESH seconds, and sets the progress'
 * cancel flag once the worker is exiting (a reload, a quit), which the job
 * checks between its items.  The timer is not cancelable: an exiting
 * worker waits for its job, which stops soon.  At the end the thread
 * writes the report and drops the lease.
 */


#include "ngx_http_registry.h"

#include <jansson.h>


#define NGX_HTTP_REGISTRY_JOB_TICK  1000


typedef struct {
    ngx_str_t                        name;
    ngx_http_registry_job_pt         work;
    ngx_uint_t                       options;   /* NGX_HTTP_REGISTRY_OPT_* */
    ngx_http_registry_job_phases_pt  phases;
} ngx_http_registry_job_kind_t;


typedef struct {
    ngx_str_t                  name;
    ngx_uint_t                 option;
} ngx_http_registry_job_option_t;


typedef enum {
    NGX_HTTP_REGISTRY_JOB_RUNNING = 0,
    NGX_HTTP_REGISTRY_JOB_DONE,
    NGX_HTTP_REGISTRY_JOB_FAILED,
    NGX_HTTP_REGISTRY_JOB_CANCELLED
} ngx_http_registry_job_state_e;


/* one running job, in the worker that runs it */

typedef struct {
    ngx_pool_t                    *pool;      /* of this; event loop only */
    ngx_http_registry_store_t     *store;
    ngx_thread_pool_t             *thread_pool;
    ngx_http_registry_job_kind_t  *kind;
    ngx_http_registry_job_slot_t  *slot;
    ngx_http_registry_job_t        job;
    ngx_http_registry_lease_t      lease;     /* ours */
    ngx_http_registry_lease_t      holder;    /* who has it, if not us */
    ngx_http_registry_job_start_t *start;     /* until it is told */
    ngx_http_registry_detached_t   task;      /* the lease, then the job */
    ngx_http_registry_detached_t   refresh;
    ngx_event_t                    tick;
    ngx_uint_t                     ticks;
    ngx_http_registry_job_state_e  state;
    u_char                         id[NGX_HTTP_REGISTRY_JOB_ID_LEN];
    unsigned                       leased:1;
    unsigned                       refreshing:1;
    unsigned                       finished:1;
} ngx_http_registry_runner_t;


static ngx_http_registry_job_kind_t *ngx_http_registry_job_kind(
    ngx_str_t *name);
static ngx_int_t ngx_http_registry_job_flag(ngx_str_t *value);
static ngx_int_t ngx_http_registry_job_claim(ngx_http_registry_runner_t *rn,
    ngx_http_registry_job_start_t *s);
static ngx_http_registry_job_slot_t *ngx_http_registry_job_slot(
    ngx_http_registry_store_t *st, ngx_uint_t claim);
static ngx_uint_t ngx_http_registry_job_alive(ngx_pid_t pid);
static void ngx_http_registry_job_phases(ngx_http_registry_runner_t *rn,
    const char **phases);
static void ngx_http_registry_job_release(ngx_http_registry_runner_t *rn);
static ngx_http_registry_runner_t *ngx_http_registry_job_create(
    ngx_http_registry_job_start_t *s, ngx_http_registry_job_kind_t *kind);
static void ngx_http_registry_job_free(ngx_http_registry_runner_t *rn);
static ngx_int_t ngx_http_registry_job_lease_work(ngx_http_registry_op_t *op,
    void *data);
static void ngx_http_registry_job_leased(ngx_http_registry_detached_t *d);
static void ngx_http_registry_job_tell(ngx_http_registry_runner_t *rn,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_job_work(ngx_http_registry_op_t *op,
    void *data);
static void ngx_http_registry_job_done(ngx_http_registry_detached_t *d);
static json_t *ngx_http_registry_job_document(ngx_http_registry_runner_t *rn,
    ngx_http_registry_op_t *op);
static void ngx_http_registry_job_tick(ngx_event_t *ev);
static ngx_int_t ngx_http_registry_job_refresh_work(
    ngx_http_registry_op_t *op, void *data);
static void ngx_http_registry_job_refreshed(ngx_http_registry_detached_t *d);


/*
 * The kinds of jobs: a row is the name (POST <admin>/<name>), the store
 * operation, the options it accepts, and the names of its phases.
 */

static ngx_http_registry_job_kind_t  ngx_http_registry_job_kinds[] = {

    { ngx_string("purge-uploads"), ngx_http_registry_store_purge_job,
      NGX_HTTP_REGISTRY_OPT_OLDER_THAN, ngx_http_registry_store_purge_phases },

    { ngx_string("gc"), ngx_http_registry_store_gc,
      NGX_HTTP_REGISTRY_OPT_DRY_RUN | NGX_HTTP_REGISTRY_OPT_DELETE_UNTAGGED
      | NGX_HTTP_REGISTRY_OPT_GRACE, ngx_http_registry_store_gc_phases },
    { ngx_string("fsck"), ngx_http_registry_store_fsck,
      NGX_HTTP_REGISTRY_OPT_REPAIR | NGX_HTTP_REGISTRY_OPT_REHASH
      | NGX_HTTP_REGISTRY_OPT_RATE, ngx_http_registry_store_fsck_phases },

    { ngx_null_string, NULL, 0, NULL }
};


static ngx_http_registry_job_option_t  ngx_http_registry_job_options[] = {
    { ngx_string("dry_run"), NGX_HTTP_REGISTRY_OPT_DRY_RUN },
    { ngx_string("delete_untagged"), NGX_HTTP_REGISTRY_OPT_DELETE_UNTAGGED },
    { ngx_string("grace"), NGX_HTTP_REGISTRY_OPT_GRACE },
    { ngx_string("repair"), NGX_HTTP_REGISTRY_OPT_REPAIR },
    { ngx_string("rehash"), NGX_HTTP_REGISTRY_OPT_REHASH },
    { ngx_string("rate"), NGX_HTTP_REGISTRY_OPT_RATE },
    { ngx_string("older_than"), NGX_HTTP_REGISTRY_OPT_OLDER_THAN },
    { ngx_null_string, 0 }
};


static const char  *ngx_http_registry_job_states[] = {
    "running", "done", "failed", "cancelled"
};


/* ---- starting ---- */

/*
 * Prepares s for a job of this kind, with the default options: gc's grace
 * is an hour, purge-uploads takes the store's registry_upload_expire.
 * NGX_DECLINED: no such kind.
 */

ngx_int_t
ngx_http_registry_job_init(ngx_http_registry_job_start_t *s,
    ngx_http_registry_store_t *st, ngx_thread_pool_t *tp, ngx_str_t *kind,
    ngx_log_t *log)
{
    ngx_memzero(s, sizeof(ngx_http_registry_job_start_t));

    if (ngx_http_registry_job_kind(kind) == NULL) {
        return NGX_DECLINED;
    }

    s->store = st;
    s->thread_pool = tp;
    s->kind = *kind;
    s->log = log;

    s->options.grace = NGX_HTTP_REGISTRY_JOB_GRACE;
    s->options.older_than = st->upload_expire;

    return NGX_OK;
}


/*
 * One option, "name=value": flags take 1, 0, on, off, true, false, yes,
 * no, or nothing (on); times are nginx's ("2h", "90s", "3600"); a rate is
 * a size per second ("50m", 0: no limit).  NGX_DECLINED: the kind has no
 * such option; NGX_ERROR: the value is malformed.
 */

ngx_int_t
ngx_http_registry_job_option(ngx_http_registry_job_start_t *s,
    ngx_str_t *name, ngx_str_t *value)
{
    off_t                            size;
    time_t                           t;
    ngx_int_t                        flag;
    ngx_http_registry_job_t         *job;
    ngx_http_registry_job_option_t  *o;

    for (o = ngx_http_registry_job_options; o->name.len; o++) {
        if (o->name.len == name->len
            && ngx_strncmp(o->name.data, name->data, name->len) == 0)
        {
            break;
        }
    }

    if (o->name.len == 0
        || !(ngx_http_registry_job_kind(&s->kind)->options & o->option))
    {
        return NGX_DECLINED;
    }

    job = &s->options;

    switch (o->option) {

    case NGX_HTTP_REGISTRY_OPT_GRACE:
    case NGX_HTTP_REGISTRY_OPT_OLDER_THAN:
        t = value->len ? ngx_parse_time(value, 1) : NGX_ERROR;
        if (t == (time_t) NGX_ERROR) {
            return NGX_ERROR;
        }

        if (o->option == NGX_HTTP_REGISTRY_OPT_GRACE) {
            job->grace = t;

        } else {
            job->older_than = t;
        }

        return NGX_OK;

    case NGX_HTTP_REGISTRY_OPT_RATE:
        size = value->len ? ngx_parse_offset(value) : NGX_ERROR;
        if (size == NGX_ERROR) {
            return NGX_ERROR;
        }

        job->rehash_rate = size;
        return NGX_OK;
    }

    flag = ngx_http_registry_job_flag(value);
    if (flag == NGX_ERROR) {
        return NGX_ERROR;
    }

    switch (o->option) {

    case NGX_HTTP_REGISTRY_OPT_DRY_RUN:
        job->dry_run = flag;
        break;

    case NGX_HTTP_REGISTRY_OPT_DELETE_UNTAGGED:
        job->delete_untagged = flag;
        break;

    case NGX_HTTP_REGISTRY_OPT_REPAIR:
        job->repair = flag;
        break;

    default: /* NGX_HTTP_REGISTRY_OPT_REHASH */
        job->rehash = flag;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_job_flag(ngx_str_t *value)
{
    ngx_uint_t  i;

    static ngx_str_t  on[] = { ngx_string(""), ngx_string("1"),
                               ngx_string("on"), ngx_string("true"),
                               ngx_string("yes"), ngx_null_string };
    static ngx_str_t  off[] = { ngx_string("0"), ngx_string("off"),
                                ngx_string("false"), ngx_string("no"),
                                ngx_null_string };

    for (i = 0; on[i].data; i++) {
        if (on[i].len == value->len
            && ngx_strncmp(on[i].data, value->data, value->len) == 0)
        {
            return 1;
        }
    }

    for (i = 0; off[i].data; i++) {
        if (off[i].len == value->len
            && ngx_strncmp(off[i].data, value->data, value->len) == 0)
        {
            return 0;
        }
    }

    return NGX_ERROR;
}


static ngx_http_registry_job_kind_t *
ngx_http_registry_job_kind(ngx_str_t *name)
{
    ngx_http_registry_job_kind_t  *k;

    for (k = ngx_http_registry_job_kinds; k->name.len; k++) {
        if (k->name.len == name->len
            && ngx_strncmp(k->name.data, name->data, name->len) == 0)
        {
            return k;
        }
    }

    return NULL;
}


/*
 * Starts the job s describes (event loop).  NGX_OK: under way, s->id is
 * its id; s->started(s, rc), when set, is called once this nginx holds
 * the store's lease (rc NGX_OK), or could not take it: NGX_BUSY, another
 * nginx runs s->id on host s->host; NGX_ERROR.  s lives until then;
 * without s->started, it may go when this returns.  NGX_BUSY: a job of
 * this nginx runs, s->id is its id; NGX_DECLINED: unknown kind, or no
 * thread pool to run it in; NGX_ERROR: nothing was started.
 */

ngx_int_t
ngx_http_registry_job_start(ngx_http_registry_job_start_t *s)
{
    ngx_int_t                      rc;
    ngx_http_registry_runner_t    *rn;
    ngx_http_registry_job_kind_t  *kind;

    kind = ngx_http_registry_job_kind(&s->kind);

    if (kind == NULL || s->thread_pool == NULL) {
        return NGX_DECLINED;
    }

    if (s->store->root_fd == NGX_INVALID_FILE || s->store->shared == NULL) {
        return NGX_ERROR;
    }

    rn = ngx_http_registry_job_create(s, kind);
    if (rn == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_job_claim(rn, s);

    if (rc != NGX_OK) {
        ngx_http_registry_job_free(rn);
        return rc;
    }

    if (ngx_http_registry_task_detach(&rn->task, rn->thread_pool, rn->pool)
        != NGX_OK)
    {
        ngx_http_registry_job_release(rn);
        ngx_http_registry_job_free(rn);
        return NGX_ERROR;
    }

    ngx_memcpy(s->buf, rn->id, NGX_HTTP_REGISTRY_JOB_ID_LEN);
    s->id.data = s->buf;
    s->id.len = NGX_HTTP_REGISTRY_JOB_ID_LEN;

    ngx_add_timer(&rn->tick, NGX_HTTP_REGISTRY_JOB_TICK);

    return NGX_OK;
}


static ngx_http_registry_runner_t *
ngx_http_registry_job_create(ngx_http_registry_job_start_t *s,
    ngx_http_registry_job_kind_t *kind)
{
    ngx_pool_t                  *pool;
    ngx_http_registry_runner_t  *rn;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    rn = ngx_pcalloc(pool, sizeof(ngx_http_registry_runner_t));
    if (rn == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    rn->pool = pool;
    rn->store = s->store;
    rn->thread_pool = s->thread_pool;
    rn->kind = kind;
    rn->job = s->options;
    rn->start = s->started ? s : NULL;

    rn->task.op.store = s->store;
    rn->task.op.log = ngx_cycle->log;
    rn->task.op.pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE,
                                       ngx_cycle->log);
    rn->task.work = ngx_http_registry_job_lease_work;
    rn->task.data = rn;
    rn->task.done = ngx_http_registry_job_leased;

    rn->refresh.op.store = s->store;
    rn->refresh.op.log = ngx_cycle->log;
    rn->refresh.work = ngx_http_registry_job_refresh_work;
    rn->refresh.data = rn;
    rn->refresh.done = ngx_http_registry_job_refreshed;

    rn->tick.handler = ngx_http_registry_job_tick;
    rn->tick.data = rn;
    rn->tick.log = ngx_cycle->log;

    rn->job.report = json_object();

    if (rn->task.op.pool == NULL || rn->job.report == NULL) {
        ngx_http_registry_job_free(rn);
        return NULL;
    }

    rn->lease.host = ngx_cycle->hostname;
    rn->lease.pid = ngx_pid;
    rn->lease.kind = kind->name;
    rn->lease.started = ngx_time();
    rn->lease.id.data = rn->id;
    rn->lease.id.len = NGX_HTTP_REGISTRY_JOB_ID_LEN;

    if (ngx_http_registry_job_new_id(rn->id, rn->lease.started) != NGX_OK) {
        ngx_http_registry_job_free(rn);
        return NULL;
    }

    return rn;
}


static void
ngx_http_registry_job_free(ngx_http_registry_runner_t *rn)
{
    if (rn->tick.timer_set) {
        ngx_del_timer(&rn->tick);
    }

    if (rn->task.op.pool) {
        ngx_destroy_pool(rn->task.op.pool);
    }

    json_decref(rn->job.report);

    ngx_destroy_pool(rn->pool);
}


/* ---- the slot ---- */

static ngx_int_t
ngx_http_registry_job_claim(ngx_http_registry_runner_t *rn,
    ngx_http_registry_job_start_t *s)
{
    ngx_slab_pool_t               *shpool;
    ngx_http_registry_job_slot_t  *slot;

    shpool = rn->store->shpool;

    ngx_shmtx_lock(&shpool->mutex);

    slot = ngx_http_registry_job_slot(rn->store, 1);

    if (slot == NULL) {
        ngx_shmtx_unlock(&shpool->mutex);
        ngx_log_error(NGX_LOG_ERR, s->log, 0,
                      "registry: jobs run on at most %d stores at a time",
                      NGX_HTTP_REGISTRY_JOB_SLOTS);
        return NGX_ERROR;
    }

    if (ngx_http_registry_job_alive(slot->pid)) {
        ngx_memcpy(s->buf, slot->id, NGX_HTTP_REGISTRY_JOB_ID_LEN);
        ngx_shmtx_unlock(&shpool->mutex);

        s->id.data = s->buf;
        s->id.len = NGX_HTTP_REGISTRY_JOB_ID_LEN;
        return NGX_BUSY;
    }

    if (slot->pid) {
        ngx_log_error(NGX_LOG_WARN, s->log, 0,
                      "registry: job \"%*s\" was left by worker %P, which "
                      "is gone", (size_t) NGX_HTTP_REGISTRY_JOB_ID_LEN,
                      slot->id, slot->pid);
    }

    ngx_memzero(slot->phases, sizeof(slot->phases));
    ngx_memzero(&slot->progress, sizeof(ngx_http_registry_progress_t));

    slot->pid = ngx_pid;
    slot->started = rn->lease.started;
    ngx_memcpy(slot->id, rn->id, NGX_HTTP_REGISTRY_JOB_ID_LEN);
    (void) ngx_cpystrn(slot->kind, rn->kind->name.data,
                       NGX_HTTP_REGISTRY_JOB_KIND_LEN);

    rn->slot = slot;
    rn->job.progress = &slot->progress;

    ngx_http_registry_job_phases(rn, rn->kind->phases(&rn->job));

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


/* under the mutex: the store's slot, or with claim a free one for it */

static ngx_http_registry_job_slot_t *
ngx_http_registry_job_slot(ngx_http_registry_store_t *st, ngx_uint_t claim)
{
    ngx_uint_t                     i;
    ngx_http_registry_job_slot_t  *slot, *free;

    slot = st->shared->jobs;
    free = NULL;

    for (i = 0; i < NGX_HTTP_REGISTRY_JOB_SLOTS; i++) {
        if (slot[i].store == st->id) {
            return &slot[i];
        }

        if (free == NULL && slot[i].store == 0) {
            free = &slot[i];
        }
    }

    if (!claim || free == NULL) {
        return NULL;
    }

    free->store = st->id;
    free->pid = 0;

    return free;
}


/* a worker killed on the way leaves its pid in the slot */

static ngx_uint_t
ngx_http_registry_job_alive(ngx_pid_t pid)
{
    if (pid == 0) {
        return 0;
    }

    return pid == ngx_pid || kill(pid, 0) == 0 || ngx_errno != NGX_ESRCH;
}


/* under the mutex: the names of the job's phases, for other workers */

static void
ngx_http_registry_job_phases(ngx_http_registry_runner_t *rn,
    const char **phases)
{
    ngx_uint_t  i;

    ngx_memzero(rn->slot->phases, sizeof(rn->slot->phases));

    for (i = 0; phases && phases[i] && i < NGX_HTTP_REGISTRY_JOB_PHASES; i++)
    {
        (void) ngx_cpystrn(rn->slot->phases[i], (u_char *) phases[i],
                           NGX_HTTP_REGISTRY_JOB_PHASE_LEN);
    }
}


static void
ngx_http_registry_job_release(ngx_http_registry_runner_t *rn)
{
    ngx_shmtx_lock(&rn->store->shpool->mutex);
    rn->slot->pid = 0;
    ngx_shmtx_unlock(&rn->store->shpool->mutex);
}


/*
 * What the store's slot says of its running job, for any worker.
 * NGX_DECLINED: no job runs on the store in this nginx.
 */

ngx_int_t
ngx_http_registry_job_running(ngx_http_registry_store_t *st,
    ngx_http_registry_job_info_t *info)
{
    ngx_uint_t                     phase;
    ngx_slab_pool_t               *shpool;
    ngx_http_registry_job_slot_t  *slot;

    if (st->shared == NULL) {
        return NGX_DECLINED;
    }

    shpool = st->shpool;

    ngx_shmtx_lock(&shpool->mutex);

    slot = ngx_http_registry_job_slot(st, 0);

    if (slot == NULL || !ngx_http_registry_job_alive(slot->pid)) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_DECLINED;
    }

    ngx_memcpy(info->id, slot->id, NGX_HTTP_REGISTRY_JOB_ID_LEN);
    ngx_memcpy(info->kind, slot->kind, NGX_HTTP_REGISTRY_JOB_KIND_LEN);

    info->started = slot->started;
    info->done = slot->progress.done;
    info->total = slot->progress.total;

    phase = slot->progress.phase;

    if (phase < NGX_HTTP_REGISTRY_JOB_PHASES) {
        ngx_memcpy(info->phase, slot->phases[phase],
                   NGX_HTTP_REGISTRY_JOB_PHASE_LEN);

    } else {
        info->phase[0] = '\0';
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


/* ---- the lease, in a thread ---- */

static ngx_int_t
ngx_http_registry_job_lease_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_runner_t *rn = data;

    json_t     *doc;
    ngx_int_t   rc;

    rc = ngx_http_registry_store_lease_take(op, &rn->lease, &rn->holder);

    if (rc != NGX_OK) {
        return rc;
    }

    /* a report at once: other hosts see the job runs, and where */

    doc = ngx_http_registry_job_document(rn, op);

    if (doc == NULL
        || ngx_http_registry_store_job_save(op, &rn->lease.id, doc, 0)
           != NGX_OK)
    {
        json_decref(doc);
        (void) ngx_http_registry_store_lease_drop(op, &rn->lease.id);
        return NGX_ERROR;
    }

    json_decref(doc);

    return NGX_OK;
}


static void
ngx_http_registry_job_leased(ngx_http_registry_detached_t *d)
{
    ngx_http_registry_runner_t *rn = d->data;

    if (d->rc != NGX_OK) {
        if (d->rc == NGX_BUSY) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "registry: job \"%V\" not started: job \"%V\" "
                          "runs on host \"%V\"", &rn->lease.id,
                          &rn->holder.id, &rn->holder.host);
        }

        ngx_http_registry_job_release(rn);
        ngx_http_registry_job_tell(rn, d->rc);
        ngx_http_registry_job_free(rn);
        return;
    }

    rn->leased = 1;

    d->work = ngx_http_registry_job_work;
    d->done = ngx_http_registry_job_done;

    if (ngx_http_registry_task_detach(d, rn->thread_pool, rn->pool)
        != NGX_OK)
    {
        /* the lease is left to go stale: no thread would drop it */

        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "registry: job \"%V\" could not be started",
                      &rn->lease.id);

        ngx_http_registry_job_release(rn);
        ngx_http_registry_job_tell(rn, NGX_ERROR);
        ngx_http_registry_job_free(rn);
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "registry: job \"%V\" (%V) started", &rn->lease.id,
                  &rn->kind->name);

    ngx_http_registry_job_tell(rn, NGX_OK);
}


/* the starter learns whether the job runs */

static void
ngx_http_registry_job_tell(ngx_http_registry_runner_t *rn, ngx_int_t rc)
{
    size_t                          len;
    ngx_http_registry_job_start_t  *s;

    s = rn->start;

    if (s == NULL) {
        return;
    }

    rn->start = NULL;

    if (rc == NGX_BUSY) {
        if (rn->holder.id.len == NGX_HTTP_REGISTRY_JOB_ID_LEN) {
            ngx_memcpy(s->buf, rn->holder.id.data,
                       NGX_HTTP_REGISTRY_JOB_ID_LEN);
            s->id.len = NGX_HTTP_REGISTRY_JOB_ID_LEN;

        } else {
            s->id.len = 0;
        }

        len = ngx_min(rn->holder.host.len, sizeof(s->host_buf));
        ngx_memcpy(s->host_buf, rn->holder.host.data, len);
        s->host.data = s->host_buf;
        s->host.len = len;
    }

    s->started(s, rc);
}


/* ---- the job, in a thread ---- */

static ngx_int_t
ngx_http_registry_job_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_runner_t *rn = data;

    json_t     *doc;
    ngx_int_t   rc;

    rc = rn->kind->work(op, &rn->job);

    if (rn->job.progress->cancel) {
        rn->state = NGX_HTTP_REGISTRY_JOB_CANCELLED;

    } else if (rc == NGX_OK) {
        rn->state = NGX_HTTP_REGISTRY_JOB_DONE;

    } else {
        rn->state = NGX_HTTP_REGISTRY_JOB_FAILED;
    }

    doc = ngx_http_registry_job_document(rn, op);

    if (doc == NULL
        || ngx_http_registry_store_job_save(op, &rn->lease.id, doc, 1)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, op->log, 0,
                      "registry: the report of job \"%V\" could not be "
                      "saved", &rn->lease.id);
    }

    json_decref(doc);

    (void) ngx_http_registry_store_lease_drop(op, &rn->lease.id);

    return rc;
}


static void
ngx_http_registry_job_done(ngx_http_registry_detached_t *d)
{
    ngx_http_registry_runner_t *rn = d->data;

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "registry: job \"%V\" (%V) %s", &rn->lease.id,
                  &rn->kind->name, ngx_http_registry_job_states[rn->state]);

    rn->finished = 1;

    ngx_http_registry_metrics_job(&rn->kind->name,
                                  rn->state == NGX_HTTP_REGISTRY_JOB_DONE,
                                  rn->job.report);

    ngx_http_registry_job_release(rn);

    if (rn->tick.timer_set) {
        ngx_del_timer(&rn->tick);
    }

    if (!rn->refreshing) {
        ngx_http_registry_job_free(rn);
    }
}


/*
 * {"id","kind","state","started"} and, while it runs, "host" and "pid";
 * at the end "finished", "error" when it failed, and "report".
 */

static json_t *
ngx_http_registry_job_document(ngx_http_registry_runner_t *rn,
    ngx_http_registry_op_t *op)
{
    u_char       *p;
    json_t       *doc;
    const char   *error;
    ngx_int_t     rc;
    u_char        started[NGX_HTTP_REGISTRY_RFC3339_LEN];
    u_char        finished[NGX_HTTP_REGISTRY_RFC3339_LEN];
    u_char        text[NGX_MAX_ERROR_STR];

    p = ngx_http_registry_rfc3339(started, rn->lease.started);

    doc = json_pack("{s:s%,s:s%,s:s,s:s%}",
                    "id", rn->id, (size_t) NGX_HTTP_REGISTRY_JOB_ID_LEN,
                    "kind", rn->kind->name.data, rn->kind->name.len,
                    "state", ngx_http_registry_job_states[rn->state],
                    "started", started, (size_t) (p - started));
    if (doc == NULL) {
        return NULL;
    }

    if (rn->state == NGX_HTTP_REGISTRY_JOB_RUNNING) {
        rc = json_object_set_new(doc, "host",
                                 json_stringn((char *) rn->lease.host.data,
                                              rn->lease.host.len))
             | json_object_set_new(doc, "pid", json_integer(rn->lease.pid));

        goto done;
    }

    p = ngx_http_registry_rfc3339(finished, ngx_time());

    rc = json_object_set_new(doc, "finished",
                             json_stringn((char *) finished, p - finished))
         | json_object_set(doc, "report", rn->job.report);

    if (rn->state == NGX_HTTP_REGISTRY_JOB_FAILED) {
        error = op->fault.detail;

        if (error == NULL && op->fault.errnum) {
            p = ngx_strerror(op->fault.errnum, text, sizeof(text) - 1);
            *p = '\0';
            error = (const char *) text;
        }

        rc |= json_object_set_new(doc, "error",
                                  json_string(error ? error
                                                    : "the job failed"));
    }

done:

    if (rc != 0) {
        json_decref(doc);
        return NULL;
    }

    return doc;
}


/* ---- while it runs ---- */

static void
ngx_http_registry_job_tick(ngx_event_t *ev)
{
    ngx_http_registry_runner_t *rn = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        rn->job.progress->cancel = 1;
    }

    if (++rn->ticks % NGX_HTTP_REGISTRY_LEASE_REFRESH == 0
        && rn->leased && !rn->refreshing)
    {
        rn->refresh.op.pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE,
                                              ngx_cycle->log);

        if (rn->refresh.op.pool) {
            rn->refreshing = 1;

            if (ngx_http_registry_task_detach(&rn->refresh, rn->thread_pool,
                                              rn->pool)
                != NGX_OK)
            {
                rn->refreshing = 0;
                ngx_destroy_pool(rn->refresh.op.pool);
            }
        }
    }

    ngx_add_timer(ev, NGX_HTTP_REGISTRY_JOB_TICK);
}


static ngx_int_t
ngx_http_registry_job_refresh_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_runner_t *rn = data;

    return ngx_http_registry_store_lease_refresh(op, &rn->lease.id);
}


/* a lease taken over meanwhile (this nginx seemed gone): the job stops */

static void
ngx_http_registry_job_refreshed(ngx_http_registry_detached_t *d)
{
    ngx_http_registry_runner_t *rn = d->data;

    rn->refreshing = 0;
    ngx_destroy_pool(d->op.pool);

    if (rn->finished) {
        ngx_http_registry_job_free(rn);
        return;
    }

    if (d->rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "registry: job \"%V\" lost its lease, cancelled",
                      &rn->lease.id);
        rn->job.progress->cancel = 1;
    }
}
