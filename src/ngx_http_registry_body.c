
/*
 * ngx_http_registry_module: streaming request bodies.
 *
 * Bodies are read unbuffered (as proxy_request_buffering off does): every
 * buffer nginx receives is handed to the endpoint's chunk callback (which
 * hashes it and writes it where it belongs) and given back to nginx at
 * once, so a worker holds one client_body_buffer_size buffer per upload
 * whatever the body's size, and nothing is read twice.  When the body is
 * complete, the request is finalized with what the done callback returns.
 *
 * A chunk callback may also hand a buffer to a task (NGX_AGAIN); reading
 * then waits until ngx_http_registry_body_taken() says the task is done.
 * Any other result of a callback ends the reading, and the request (see
 * ngx_http_registry_body_stop()).
 *
 * A fast client keeps its socket readable: reading on until EAGAIN would
 * hash a whole blob in one go while the worker's other connections wait.
 * So a turn takes at most NGX_HTTP_REGISTRY_BODY_TURN bytes, then the read
 * goes on in the event loop's next iteration (ngx_posted_next_events).
 */


#include "ngx_http_registry.h"


#define NGX_HTTP_REGISTRY_BODY_TURN  (512 * 1024)


static void ngx_http_registry_body_post(ngx_http_request_t *r);
static void ngx_http_registry_body_read(ngx_http_request_t *r);
static void ngx_http_registry_body_consume(ngx_http_request_t *r);
static void ngx_http_registry_body_next(ngx_http_request_t *r);
static void ngx_http_registry_body_pause(ngx_http_request_t *r);


/* returns what a content handler returns */

ngx_int_t
ngx_http_registry_read_body(ngx_http_request_t *r,
    ngx_http_registry_chunk_pt chunk, ngx_http_registry_done_pt done)
{
    ngx_int_t                 rc;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    ctx->chunk = chunk;
    ctx->done = done;
    ctx->received = 0;

    r->request_body_no_buffering = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_registry_body_post);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/*
 * Called once by nginx: when the whole body has arrived, or as soon as a
 * read would block (r->reading_body is set then).
 */

static void
ngx_http_registry_body_post(ngx_http_request_t *r)
{
    r->read_event_handler = ngx_http_registry_body_read;

    ngx_http_registry_body_consume(r);
}


static void
ngx_http_registry_body_read(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_http_read_unbuffered_request_body(r);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        r->read_event_handler = ngx_http_block_reading;
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_http_registry_body_consume(r);
}


static void
ngx_http_registry_body_consume(ngx_http_request_t *r)
{
    size_t                    len, turn;
    ngx_int_t                 rc;
    ngx_buf_t                *b;
    ngx_chain_t              *cl;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    turn = 0;

    for ( ;; ) {

        while (r->request_body->bufs) {
            cl = r->request_body->bufs;
            b = cl->buf;
            len = b->last - b->pos;

            if (len) {
                rc = ctx->chunk(r, b->pos, len);

                if (rc == NGX_AGAIN) {
                    /* in a task: ngx_http_registry_body_taken() goes on */
                    r->read_event_handler = ngx_http_block_reading;
                    return;
                }

                if (rc != NGX_OK) {
                    ngx_http_registry_body_stop(r, rc);
                    return;
                }

                ctx->received += len;
                turn += len;
                b->pos = b->last;
            }

            ngx_http_registry_body_next(r);
        }

        if (!r->reading_body) {
            break;
        }

        /* HTTP/2 frames come bounded by its flow control anyway */

        if (turn >= NGX_HTTP_REGISTRY_BODY_TURN
#if (NGX_HTTP_V2)
            && r->stream == NULL
#endif
           )
        {
            ngx_http_registry_body_pause(r);
            return;
        }

        rc = ngx_http_read_unbuffered_request_body(r);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            r->read_event_handler = ngx_http_block_reading;
            ngx_http_finalize_request(r, rc);
            return;
        }

        if (r->request_body->bufs == NULL && r->reading_body) {
            return;     /* wait for the next read event */
        }
    }

    ngx_http_registry_body_stop(r, ctx->done(r));
}


/*
 * The turn ends: reading goes on in the next event loop iteration.  nginx
 * took the body timer off when its buffer filled up, and a worker told to
 * quit gracefully exits when no timer is left: the timer goes back on, so
 * the worker waits for this body (or for client_body_timeout).
 */

static void
ngx_http_registry_body_pause(ngx_http_request_t *r)
{
    ngx_connection_t          *c;
    ngx_http_core_loc_conf_t  *clcf;

    c = r->connection;

    if (!c->read->timer_set) {
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
        ngx_add_timer(c->read, clcf->client_body_timeout);
    }

    ngx_post_event(c->read, &ngx_posted_next_events);
}


/*
 * The chunk callback's task has taken the first buffer: it is consumed,
 * and reading goes on.  Nothing reads into the buffer meanwhile: only
 * this file asks nginx for more body, and reading is blocked.
 */

void
ngx_http_registry_body_taken(ngx_http_request_t *r)
{
    ngx_buf_t                *b;
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    b = r->request_body->bufs->buf;

    ctx->received += b->last - b->pos;
    b->pos = b->last;

    ngx_http_registry_body_next(r);

    r->read_event_handler = ngx_http_registry_body_read;

    ngx_http_registry_body_consume(r);
}


/*
 * Reading stops, and the body lets go of the request: rc is NGX_DONE when
 * a task of the endpoint's answers, NGX_DECLINED when ctx->fault is the
 * answer, or what to finalize the request with (a sent answer's result).
 */

void
ngx_http_registry_body_stop(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_ctx_t  *ctx;

    r->read_event_handler = ngx_http_block_reading;

    if (rc == NGX_DECLINED) {
        ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
        rc = ngx_http_registry_send_fault(r, &ctx->fault);
    }

    ngx_http_finalize_request(r, rc);
}


/* drops the first chain link, whose buffer is consumed, for reuse */

static void
ngx_http_registry_body_next(ngx_http_request_t *r)
{
    ngx_chain_t  *cl;

    cl = r->request_body->bufs;
    r->request_body->bufs = cl->next;

    ngx_free_chain(r->pool, cl);
}
