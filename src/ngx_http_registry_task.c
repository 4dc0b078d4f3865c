
/*
 * ngx_http_registry_module: store operations off the event loop.
 *
 * Anything that may block for more than a moment (fsync(), renames into
 * new directories, walks, rebuilds) runs as a task of registry_thread_pool
 * while the worker goes on serving; without a pool it runs at once.  A
 * request waiting for its task is held as nginx holds one waiting for a
 * thread read (ngx_http_copy_filter_module.c): one more reference
 * (count), "blocked" so that a client gone meanwhile only marks it, and
 * its write handler replaced until the task is back.  Then the resume
 * callback builds the one answer, and the request is finalized with it.
 *
 * The thread side sees only the task: its op (a pool of the request's
 * own, a log without the request's context, no link cache) and the data
 * the handler set aside for it; never the request, nor the caches of
 * this worker, which only the event loop touches.
 */


#include "ngx_http_registry.h"

#include <sys/resource.h>
#include <openssl/crypto.h>


#define NGX_HTTP_REGISTRY_THREAD_NICE  19
#define NGX_HTTP_REGISTRY_GUARD_TIME   60000


static ngx_int_t ngx_http_registry_task_prepare(ngx_http_request_t *r,
    ngx_http_registry_task_t *t);
#if (NGX_THREADS)
static void ngx_http_registry_task_yield(void);
static void ngx_http_registry_task_crypto_done(void);
#endif
static void ngx_http_registry_task_pool_cleanup(void *data);
static void ngx_http_registry_task_hold(ngx_http_request_t *r);
static void ngx_http_registry_task_back(ngx_http_request_t *r);
static void ngx_http_registry_task_resume(ngx_http_request_t *r);
static void ngx_http_registry_task_guard(ngx_event_t *ev);
#if (NGX_THREADS)
static void ngx_http_registry_task_handler(void *data, ngx_log_t *log);
static void ngx_http_registry_task_event(ngx_event_t *ev);
static void ngx_http_registry_detached_handler(void *data, ngx_log_t *log);
static void ngx_http_registry_detached_event(ngx_event_t *ev);
#endif


/*
 * Runs work(op, data) off the event loop, then resume(r, rc) in it, and
 * finalizes the request with what resume returns.  NGX_OK: under way (or
 * done already); the caller lets go of the request as usual (a content
 * handler returns NGX_DONE, a callback finalizes with NGX_DONE).
 * NGX_ERROR: nothing was started.
 */

ngx_int_t
ngx_http_registry_task_run(ngx_http_request_t *r,
    ngx_http_registry_work_pt work, void *data,
    ngx_http_registry_resume_pt resume)
{
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_task_t      *t;
    ngx_http_registry_loc_conf_t  *rlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    t = &ctx->task;

    if (ngx_http_registry_task_prepare(r, t) != NGX_OK) {
        return NGX_ERROR;
    }

    t->work = work;
    t->data = data;
    t->resume = resume;

    if (rlcf->thread_pool == NULL) {
        t->rc = work(&t->op, data);
        r->main->count++;
        ngx_http_registry_task_resume(r);
        return NGX_OK;
    }

#if (NGX_THREADS)

    if (t->thread == NULL) {
        t->thread = ngx_thread_task_alloc(r->pool, 0);
        if (t->thread == NULL) {
            return NGX_ERROR;
        }

        t->thread->ctx = t;
        t->thread->handler = ngx_http_registry_task_handler;
        t->thread->event.handler = ngx_http_registry_task_event;
        t->thread->event.data = r;
    }

    if (ngx_thread_task_post(rlcf->thread_pool, t->thread) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_registry_task_hold(r);

    return NGX_OK;

#else

    return NGX_ERROR;

#endif
}


/*
 * The same from a content handler, which returns what this returns:
 * NGX_DONE, or the 503 answer when no task could be posted (a full
 * thread pool queue).
 */

ngx_int_t
ngx_http_registry_task_start(ngx_http_request_t *r,
    ngx_http_registry_work_pt work, void *data,
    ngx_http_registry_resume_pt resume)
{
    if (ngx_http_registry_task_run(r, work, data, resume) != NGX_OK) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_UNAVAILABLE,
                                       "no thread for the request");
    }

    return NGX_DONE;
}


/*
 * The task's own op: a copy of the request's, with a pool the thread may
 * use while the task runs (destroyed with the request, so what the work
 * left there lasts as long as the request), a log without the request's
 * context (a thread must not format it), and no link cache.
 */

static ngx_int_t
ngx_http_registry_task_prepare(ngx_http_request_t *r,
    ngx_http_registry_task_t *t)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    t->log = *r->connection->log;
    t->log.handler = NULL;
    t->log.data = NULL;

    if (t->op.pool == NULL) {
        t->op.pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, &t->log);
        if (t->op.pool == NULL) {
            return NGX_ERROR;
        }
    }

    t->op.store = ctx->op.store;
    t->op.log = &t->log;
    t->op.links = NULL;
    ngx_memzero(&t->op.fault, sizeof(ngx_http_registry_fault_t));

    t->request = r;

    return NGX_OK;
}


/*
 * What tasks leave in their pool (paths, listings, details) is used until
 * the request's very end, by the other cleanups too: so the pool goes
 * last, its cleanup being the request's first (cleanups run in reverse).
 */

ngx_int_t
ngx_http_registry_task_init(ngx_http_request_t *r,
    ngx_http_registry_task_t *t)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_registry_task_pool_cleanup;
    cln->data = t;

    return NGX_OK;
}


static void
ngx_http_registry_task_pool_cleanup(void *data)
{
    ngx_http_registry_task_t *t = data;

    if (t->op.pool) {
        ngx_destroy_pool(t->op.pool);
    }
}


/*
 * One more reference for the resume to finalize, and blocked: a request
 * terminated meanwhile is only marked (its write handler becomes nginx's
 * finalizer), and lives on until the task is back.
 */

static void
ngx_http_registry_task_hold(ngx_http_request_t *r)
{
    ngx_http_registry_ctx_t  *ctx;

    r->main->count++;
    r->main->blocked++;
    r->aio = 1;

    r->write_event_handler = ngx_http_registry_task_resume;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    ngx_http_registry_guard_start(&ctx->task.guard, r->connection->log);
}


/*
 * A worker told to quit gracefully exits as soon as no timer but
 * cancelable ones is left, and a request whose task runs may have none
 * (its body timer is off while the body waits for the task, a blob's
 * upstream may have sent all): a guard keeps the worker, and the
 * connection, until the task is back and stops it.
 */

void
ngx_http_registry_guard_start(ngx_event_t *guard, ngx_log_t *log)
{
    guard->handler = ngx_http_registry_task_guard;
    guard->log = log;

    ngx_add_timer(guard, NGX_HTTP_REGISTRY_GUARD_TIME);
}


void
ngx_http_registry_guard_stop(ngx_event_t *guard)
{
    if (guard->timer_set) {
        ngx_del_timer(guard);
    }
}


static void
ngx_http_registry_task_guard(ngx_event_t *ev)
{
    ngx_add_timer(ev, NGX_HTTP_REGISTRY_GUARD_TIME);
}


#if (NGX_THREADS)

/* in a thread: the work only */

static void
ngx_http_registry_task_handler(void *data, ngx_log_t *log)
{
    ngx_http_registry_task_t *t = data;

    ngx_http_registry_task_yield();

    t->rc = t->work(&t->op, t->data);

    ngx_http_registry_task_crypto_done();
}


/*
 * A task is bulk work beside the event loops' pulls (hashing, fsync(),
 * walks, manifest parsing): its thread takes the lowest CPU priority, so
 * on a busy machine pulls go first and pushes get what they leave.  Linux
 * keeps a nice value per thread; an unprivileged worker cannot raise it
 * back, so the pool's threads stay at it (give "aio threads" a pool of
 * its own).
 */

static void
ngx_http_registry_task_yield(void)
{
    (void) setpriority(PRIO_PROCESS, 0, NGX_HTTP_REGISTRY_THREAD_NICE);
}


/*
 * A thread that hashed has OpenSSL state of its own, which OpenSSL frees
 * when the thread exits.  nginx's pool threads exit as the worker does,
 * without being joined: their cleanup would race OpenSSL's own at exit()
 * (a double free, seen as a worker killed by SIGABRT or SIGSEGV when it
 * quits).  So the state goes with each task, while the worker waits.
 */

static void
ngx_http_registry_task_crypto_done(void)
{
    OPENSSL_thread_stop();
}


static void
ngx_http_registry_task_event(ngx_event_t *ev)
{
    ngx_http_registry_task_back(ev->data);
}

#endif


/*
 * Back in the event loop, the way ngx_http_copy_thread_event_handler()
 * comes back: the connection is taken first, because the write handler
 * may finalize, and free, the request.
 */

static void
ngx_http_registry_task_back(ngx_http_request_t *r)
{
    ngx_connection_t         *c;
    ngx_http_registry_ctx_t  *ctx;

    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    ngx_http_registry_guard_stop(&ctx->task.guard);

    r->main->blocked--;
    r->aio = 0;

    r->write_event_handler(r);

    ngx_http_run_posted_requests(c);
}


/*
 * The request's write handler while its task runs (a write event then is
 * ignored) and after: the answer, built by the resume callback.  A
 * request terminated meanwhile has nginx's finalizer here instead, and
 * its task's result is dropped: the store operation itself was complete
 * or undone, never half done.
 */

static void
ngx_http_registry_task_resume(ngx_http_request_t *r)
{
    ngx_http_registry_ctx_t  *ctx;

    if (r->aio) {
        return;
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    ngx_http_finalize_request(r, ctx->task.resume(r, ctx->task.rc));
}


/*
 * Waits, held as for a task, until ngx_http_registry_task_wake() is
 * called for the queue: then resume(r, NGX_OK) answers.
 */

ngx_int_t
ngx_http_registry_task_wait(ngx_http_request_t *r, ngx_queue_t *queue,
    ngx_http_registry_resume_pt resume)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    ctx->task.resume = resume;
    ctx->task.rc = NGX_OK;
    ctx->task.request = r;

    ngx_queue_insert_tail(queue, &ctx->task.queue);

    ngx_http_registry_task_hold(r);

    return NGX_OK;
}


void
ngx_http_registry_task_wake(ngx_queue_t *queue)
{
    ngx_queue_t                woken, *q;
    ngx_http_registry_task_t  *t;

    /*
     * Taken off the queue first: it may live in a request that is
     * finalized, and freed, when it is woken (the admin location's).
     */

    ngx_queue_init(&woken);

    if (!ngx_queue_empty(queue)) {
        ngx_queue_add(&woken, queue);
        ngx_queue_init(queue);
    }

    while (!ngx_queue_empty(&woken)) {
        q = ngx_queue_head(&woken);
        ngx_queue_remove(q);

        t = ngx_queue_data(q, ngx_http_registry_task_t, queue);

        ngx_http_registry_task_back(t->request);
    }
}


/*
 * A task no request owns: d->work(d->op, d->data) off the event loop,
 * then d->done(d) in it.  The caller keeps d alive until then and gives
 * it a pool (d->op.pool); without a thread pool it all runs at once.
 */

ngx_int_t
ngx_http_registry_task_detach(ngx_http_registry_detached_t *d,
    ngx_thread_pool_t *tp, ngx_pool_t *pool)
{
    if (tp == NULL) {
        d->rc = d->work(&d->op, d->data);
        d->done(d);
        return NGX_OK;
    }

#if (NGX_THREADS)

    if (d->thread == NULL) {
        d->thread = ngx_thread_task_alloc(pool, 0);
        if (d->thread == NULL) {
            return NGX_ERROR;
        }

        d->thread->ctx = d;
        d->thread->handler = ngx_http_registry_detached_handler;
        d->thread->event.handler = ngx_http_registry_detached_event;
        d->thread->event.data = d;
    }

    return ngx_thread_task_post(tp, d->thread);

#else

    return NGX_ERROR;

#endif
}


#if (NGX_THREADS)

static void
ngx_http_registry_detached_handler(void *data, ngx_log_t *log)
{
    ngx_http_registry_detached_t *d = data;

    ngx_http_registry_task_yield();

    d->rc = d->work(&d->op, d->data);

    ngx_http_registry_task_crypto_done();
}


static void
ngx_http_registry_detached_event(ngx_event_t *ev)
{
    ngx_http_registry_detached_t *d = ev->data;

    d->done(d);
}

#endif


/* whether this request's tasks go to a thread pool */

ngx_uint_t
ngx_http_registry_task_threaded(ngx_http_request_t *r)
{
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    return rlcf->thread_pool != NULL;
}
