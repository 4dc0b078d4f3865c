
/*
 * ngx_http_registry_module: the pull-through cache (issue 17).
 *
 * Repositories under a registry_upstream's prefix are mirrored: a pull of
 * what the store lacks is fetched from the upstream and kept as an
 * ordinary repository of the store.  This file has the directives, the
 * routing (which repository is mirrored, from which upstream), the
 * manifests, the pulls recorded for eviction and the variables;
 * mirror_fetch.c makes the requests to the upstream (subrequests through
 * nginx's proxy, the filters that see their answers), mirror_blob.c
 * streams blobs.
 *
 * Each step of a pull behaves as a content handler: it answers, or starts
 * a subrequest or a task and returns NGX_DONE; the subrequest's end wakes
 * the main request, which runs the next step.
 */


#include "ngx_http_registry_mirror_cache.h"


/* a store with mirrored repositories: its flush and eviction, worker 0 */

typedef struct {
    ngx_http_registry_store_t *store;
    ngx_thread_pool_t         *thread_pool;
    ngx_shm_zone_t            *flights;
    ngx_array_t                prefixes;    /* ngx_str_t */
    off_t                      max_size;    /* 0: no eviction */
    size_t                     manifest_max;
    ngx_array_t               *pulled;      /* ngx_http_registry_pull_t */
    off_t                      freed;
    ngx_event_t                event;
    ngx_http_registry_detached_t  task;
    unsigned                   running:1;
} ngx_http_registry_cache_t;


typedef struct {
    ngx_array_t                caches;      /* ngx_http_registry_cache_t */
} ngx_http_registry_mirror_main_conf_t;


static void *ngx_http_registry_mirror_create_main_conf(ngx_conf_t *cf);
static ngx_int_t ngx_http_registry_mirror_cache_add(ngx_conf_t *cf,
    ngx_http_registry_mirror_conf_t *conf);
static ngx_int_t ngx_http_registry_mirror_init_process(ngx_cycle_t *cycle);
static void ngx_http_registry_cache_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_registry_cache_work(ngx_http_registry_op_t *op,
    void *data);
static void ngx_http_registry_cache_done(ngx_http_registry_detached_t *d);
static void *ngx_http_registry_mirror_create_conf(ngx_conf_t *cf);
static char *ngx_http_registry_mirror_merge_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_registry_upstream(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_registry_upstream_credentials(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_registry_local_prefix(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_registry_prefix_valid(ngx_str_t *prefix);
static ngx_int_t ngx_http_registry_mirror_check_locals(ngx_conf_t *cf,
    ngx_http_registry_mirror_conf_t *conf);
static ngx_int_t ngx_http_registry_flights_init(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_registry_mirror_preconf(ngx_conf_t *cf);
static ngx_int_t ngx_http_registry_mirror_init(ngx_conf_t *cf);
static ngx_http_registry_upstream_t *ngx_http_registry_mirror_find(
    ngx_http_registry_mirror_conf_t *mcf, ngx_str_t *name, ngx_str_t *ns,
    ngx_str_t *rest);
static ngx_http_registry_upstream_t *ngx_http_registry_mirror_fallback(
    ngx_http_registry_mirror_conf_t *mcf);
static ngx_uint_t ngx_http_registry_mirror_local(
    ngx_http_registry_mirror_conf_t *mcf, ngx_str_t *name);
static ngx_int_t ngx_http_registry_mirror_library(ngx_pool_t *pool,
    ngx_http_registry_upstream_t *up, ngx_str_t *rest, ngx_str_t *remote);
static ngx_int_t ngx_http_registry_mirror_manifest(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_manifest_revalidated(
    ngx_http_request_t *r, ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_manifest_fetched(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_manifest_store_work(
    ngx_http_registry_op_t *op, void *data);
static ngx_int_t ngx_http_registry_manifest_recheck_work(
    ngx_http_registry_op_t *op, void *data);
static ngx_int_t ngx_http_registry_manifest_cached(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_manifest_stale(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
static ngx_int_t ngx_http_registry_upstream_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_registry_cache_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_command_t  ngx_http_registry_mirror_commands[] = {

    { ngx_string("registry_upstream"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_registry_upstream,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("registry_upstream_credentials"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_registry_upstream_credentials,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("registry_local_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_registry_local_prefix,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("registry_upstream_location"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_mirror_conf_t, location),
      NULL },

    { ngx_string("registry_upstream_tag_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_mirror_conf_t, tag_ttl),
      NULL },

    { ngx_string("registry_cache_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_mirror_conf_t, max_size),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_registry_mirror_module_ctx = {
    ngx_http_registry_mirror_preconf,      /* preconfiguration */
    ngx_http_registry_mirror_init,         /* postconfiguration */

    ngx_http_registry_mirror_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_registry_mirror_create_conf,  /* create location configuration */
    ngx_http_registry_mirror_merge_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_registry_mirror_module = {
    NGX_MODULE_V1,
    &ngx_http_registry_mirror_module_ctx,  /* module context */
    ngx_http_registry_mirror_commands,     /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_registry_mirror_init_process, /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};




#define NGX_HTTP_REGISTRY_VAR_URL            0
#define NGX_HTTP_REGISTRY_VAR_AUTHORIZATION  1
#define NGX_HTTP_REGISTRY_VAR_ACCEPT         2


static ngx_http_variable_t  ngx_http_registry_mirror_vars[] = {

    { ngx_string("registry_upstream_url"), NULL,
      ngx_http_registry_upstream_variable,
      NGX_HTTP_REGISTRY_VAR_URL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("registry_upstream_authorization"), NULL,
      ngx_http_registry_upstream_variable,
      NGX_HTTP_REGISTRY_VAR_AUTHORIZATION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("registry_upstream_accept"), NULL,
      ngx_http_registry_upstream_variable,
      NGX_HTTP_REGISTRY_VAR_ACCEPT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("registry_cache"), NULL,
      ngx_http_registry_cache_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_registry_cache_names[] = {
    ngx_string(""),
    ngx_string("hit"),
    ngx_string("miss"),
    ngx_string("revalidated"),
    ngx_string("stale"),
    ngx_string("upstream_error")
};


/* ---- configuration ---- */

static void *
ngx_http_registry_mirror_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_registry_mirror_main_conf_t  *mmcf;

    mmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_registry_mirror_main_conf_t));
    if (mmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&mmcf->caches, cf->pool, 1,
                       sizeof(ngx_http_registry_cache_t))
        != NGX_OK)
    {
        return NULL;
    }

    return mmcf;
}


static void *
ngx_http_registry_mirror_create_conf(ngx_conf_t *cf)
{
    ngx_http_registry_mirror_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_registry_mirror_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->upstreams = NGX_CONF_UNSET_PTR;
    conf->locals = NGX_CONF_UNSET_PTR;
    conf->tag_ttl = NGX_CONF_UNSET;
    conf->max_size = NGX_CONF_UNSET;
    conf->flights = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_registry_mirror_merge_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_registry_mirror_conf_t *prev = parent;
    ngx_http_registry_mirror_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->upstreams, prev->upstreams, NULL);
    ngx_conf_merge_ptr_value(conf->locals, prev->locals, NULL);
    ngx_conf_merge_str_value(conf->location, prev->location,
                             "/_registry_upstream/");
    ngx_conf_merge_sec_value(conf->tag_ttl, prev->tag_ttl, 300);
    ngx_conf_merge_off_value(conf->max_size, prev->max_size, 0);
    ngx_conf_merge_ptr_value(conf->flights, prev->flights, NULL);

    if (ngx_http_registry_mirror_check_locals(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (conf->upstreams
        && ngx_http_registry_mirror_cache_add(cf, conf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * registry_local_prefix means something only beside a default upstream,
 * and never for an upstream's own prefix (the upstream would win): such
 * a configuration is refused.  Checked in registry locations only: a
 * server may set the prefixes for the locations that set the upstreams.
 */

static ngx_int_t
ngx_http_registry_mirror_check_locals(ngx_conf_t *cf,
    ngx_http_registry_mirror_conf_t *conf)
{
    ngx_str_t                     *local;
    ngx_uint_t                     i, j;
    ngx_http_registry_upstream_t  *up;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_registry_module);

    if (conf->locals == NULL || !rlcf->enable) {
        return NGX_OK;
    }

    if (conf->upstreams == NULL
        || ngx_http_registry_mirror_fallback(conf) == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "registry_local_prefix needs a registry_upstream "
                           "with default=on in the same location");
        return NGX_ERROR;
    }

    local = conf->locals->elts;
    up = conf->upstreams->elts;

    for (i = 0; i < conf->upstreams->nelts; i++) {
        for (j = 0; j < conf->locals->nelts; j++) {
            if (local[j].len == up[i].prefix.len
                && ngx_strncmp(local[j].data, up[i].prefix.data,
                               local[j].len) == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "registry_local_prefix \"%V\" is the "
                                   "prefix of registry_upstream \"%V\"",
                                   &local[j], &up[i].name);
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/*
 * A registry location with upstreams: its store gets a periodic flush of
 * pull times and, under registry_cache_max_size (the smallest of its
 * locations'), eviction.  The registry module's configuration of the
 * location is merged already (it comes first among the modules).
 */

static ngx_int_t
ngx_http_registry_mirror_cache_add(ngx_conf_t *cf,
    ngx_http_registry_mirror_conf_t *conf)
{
    ngx_str_t                             *prefix;
    ngx_uint_t                             i, j;
    ngx_http_registry_cache_t             *cache;
    ngx_http_registry_upstream_t          *up;
    ngx_http_registry_loc_conf_t          *rlcf;
    ngx_http_registry_mirror_main_conf_t  *mmcf;

    rlcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_registry_module);

    if (!rlcf->enable || rlcf->store == NULL) {
        return NGX_OK;
    }

    mmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_registry_mirror_module);

    cache = mmcf->caches.elts;

    for (i = 0; i < mmcf->caches.nelts; i++) {
        if (cache[i].store == rlcf->store) {
            break;
        }
    }

    if (i == mmcf->caches.nelts) {
        cache = ngx_array_push(&mmcf->caches);
        if (cache == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(cache, sizeof(ngx_http_registry_cache_t));

        if (ngx_array_init(&cache->prefixes, cf->pool, 2, sizeof(ngx_str_t))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        cache->store = rlcf->store;
        cache->thread_pool = rlcf->thread_pool;
        cache->flights = conf->flights;
        cache->manifest_max = rlcf->manifest_max_size;

    } else {
        cache = &cache[i];
    }

    if (conf->max_size
        && (cache->max_size == 0 || conf->max_size < cache->max_size))
    {
        cache->max_size = conf->max_size;
    }

    up = conf->upstreams->elts;

    for (i = 0; i < conf->upstreams->nelts; i++) {
        prefix = cache->prefixes.elts;

        for (j = 0; j < cache->prefixes.nelts; j++) {
            if (prefix[j].len == up[i].prefix.len
                && ngx_strncmp(prefix[j].data, up[i].prefix.data,
                               prefix[j].len) == 0)
            {
                break;
            }
        }

        if (j < cache->prefixes.nelts) {
            continue;
        }

        prefix = ngx_array_push(&cache->prefixes);
        if (prefix == NULL) {
            return NGX_ERROR;
        }

        *prefix = up[i].prefix;
    }

    return NGX_OK;
}


/* worker 0 flushes the pull times and evicts, each store in turn */

static ngx_int_t
ngx_http_registry_mirror_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                             i;
    ngx_http_registry_cache_t             *cache;
    ngx_http_registry_mirror_main_conf_t  *mmcf;

    if ((ngx_process != NGX_PROCESS_WORKER
         && ngx_process != NGX_PROCESS_SINGLE)
        || ngx_worker != 0)
    {
        return NGX_OK;
    }

    mmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                            ngx_http_registry_mirror_module);
    if (mmcf == NULL) {
        return NGX_OK;
    }

    cache = mmcf->caches.elts;

    for (i = 0; i < mmcf->caches.nelts; i++) {
        cache[i].task.op.store = cache[i].store;
        cache[i].task.op.log = cycle->log;
        cache[i].task.work = ngx_http_registry_cache_work;
        cache[i].task.data = &cache[i];
        cache[i].task.done = ngx_http_registry_cache_done;

        cache[i].event.handler = ngx_http_registry_cache_handler;
        cache[i].event.data = &cache[i];
        cache[i].event.log = cycle->log;
        cache[i].event.cancelable = 1;

        ngx_add_timer(&cache[i].event, NGX_HTTP_REGISTRY_EVICT_TICK);
    }

    return NGX_OK;
}


/* the pulls recorded for this store are taken, for a thread to flush */

static void
ngx_http_registry_cache_handler(ngx_event_t *ev)
{
    ngx_uint_t                    i, kind, kept;
    ngx_http_registry_pull_t     *p;
    ngx_http_registry_pulls_t    *list;
    ngx_http_registry_cache_t    *cache;
    ngx_http_registry_flights_t  *flights;

    cache = ev->data;

    if (cache->running || cache->store->root_fd == NGX_INVALID_FILE
        || cache->flights == NULL || cache->flights->data == NULL)
    {
        goto again;
    }

    cache->task.op.pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, ev->log);
    if (cache->task.op.pool == NULL) {
        goto again;
    }

    cache->pulled = ngx_array_create(cache->task.op.pool, 16,
                                     sizeof(ngx_http_registry_pull_t));
    if (cache->pulled == NULL) {
        ngx_destroy_pool(cache->task.op.pool);
        goto again;
    }

    flights = cache->flights->data;

    ngx_shmtx_lock(&flights->shpool->mutex);

    for (kind = 0; kind < 2; kind++) {
        list = &flights->pulls[kind];
        kept = 0;

        for (i = 0; i < list->n; i++) {
            if (list->pull[i].store != cache->store->id) {
                list->pull[kept++] = list->pull[i];
                continue;
            }

            p = ngx_array_push(cache->pulled);
            if (p) {
                *p = list->pull[i];
            }
        }

        list->n = kept;
    }

    ngx_shmtx_unlock(&flights->shpool->mutex);

    cache->running = 1;

    if (ngx_http_registry_task_detach(&cache->task, cache->thread_pool,
                                      ngx_cycle->pool)
        != NGX_OK)
    {
        cache->running = 0;
        ngx_destroy_pool(cache->task.op.pool);
    }

again:

    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_HTTP_REGISTRY_EVICT_TICK);
    }
}


/*
 * In a thread: the link of each manifest (its revision's) and blob (its
 * layer's) pulled retimed, then evict.
 */

static ngx_int_t
ngx_http_registry_cache_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_cache_t *cache = data;

    ngx_int_t                    rc;
    ngx_str_t                    name;
    ngx_uint_t                   i;
    ngx_http_registry_pull_t    *p;
    ngx_http_registry_digest_t   digest;

    p = cache->pulled->elts;

    for (i = 0; i < cache->pulled->nelts; i++) {
        name.data = p[i].name;
        name.len = p[i].name_len;

        if (ngx_http_registry_digest_copy(op->pool, p[i].digest,
                                          p[i].digest_len, &digest)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        rc = (p[i].kind == NGX_HTTP_REGISTRY_PULL_BLOB)
             ? ngx_http_registry_store_blob_pulled(op, &name, &digest)
             : ngx_http_registry_store_manifest_pulled(op, &name, &digest);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    cache->freed = 0;

    if (cache->max_size == 0) {
        return NGX_OK;
    }

    return ngx_http_registry_store_evict(op, &cache->prefixes,
                                         cache->max_size, cache->manifest_max,
                                         &cache->freed);
}


static void
ngx_http_registry_cache_done(ngx_http_registry_detached_t *d)
{
    ngx_http_registry_cache_t *cache = d->data;

    if (d->rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, d->op.log, 0,
                      "registry cache: flush or eviction failed");

    } else if (cache->freed) {
        ngx_log_error(NGX_LOG_NOTICE, d->op.log, 0,
                      "registry cache: eviction freed %O bytes",
                      cache->freed);
    }

    ngx_destroy_pool(d->op.pool);
    cache->running = 0;
}


/* registry_upstream NAME URL prefix=P [library=on] [default=on] */

static char *
ngx_http_registry_upstream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_registry_mirror_conf_t *mcf = conf;

    ngx_str_t                     *value;
    ngx_uint_t                     i;
    ngx_http_registry_upstream_t  *up;

    static ngx_str_t  flights = ngx_string("ngx_http_registry_flights");

    if (mcf->upstreams == NGX_CONF_UNSET_PTR) {
        mcf->upstreams = ngx_array_create(cf->pool, 2,
                                        sizeof(ngx_http_registry_upstream_t));
        if (mcf->upstreams == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    up = ngx_array_push(mcf->upstreams);
    if (up == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(up, sizeof(ngx_http_registry_upstream_t));

    if (mcf->flights == NGX_CONF_UNSET_PTR) {
        mcf->flights = ngx_shared_memory_add(cf, &flights,
                           ngx_align(sizeof(ngx_http_registry_flights_t),
                                     ngx_pagesize)
                           + 8 * ngx_pagesize,
                           &ngx_http_registry_mirror_module);
        if (mcf->flights == NULL) {
            return NGX_CONF_ERROR;
        }

        mcf->flights->init = ngx_http_registry_flights_init;
    }

    up->name = value[1];
    up->url = value[2];

    while (up->url.len && up->url.data[up->url.len - 1] == '/') {
        up->url.len--;
    }

    if (up->url.len > 7 && ngx_strncmp(up->url.data, "http://", 7) == 0) {
        up->host.data = up->url.data + 7;

    } else if (up->url.len > 8
               && ngx_strncmp(up->url.data, "https://", 8) == 0)
    {
        up->host.data = up->url.data + 8;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "registry_upstream \"%V\": the URL must be "
                           "http:// or https://", &up->name);
        return NGX_CONF_ERROR;
    }

    up->host.len = up->url.data + up->url.len - up->host.data;

    if (ngx_strlchr(up->host.data, up->host.data + up->host.len, '/')) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "registry_upstream \"%V\": the URL has no path",
                           &up->name);
        return NGX_CONF_ERROR;
    }

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            up->prefix.len = value[i].len - 7;
            up->prefix.data = value[i].data + 7;
            continue;
        }

        if (ngx_strcmp(value[i].data, "library=on") == 0) {
            up->library = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "library=off") == 0
            || ngx_strcmp(value[i].data, "default=off") == 0)
        {
            continue;
        }

        if (ngx_strcmp(value[i].data, "default=on") == 0) {
            if (ngx_http_registry_mirror_fallback(mcf) != NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "registry_upstream \"%V\": another "
                                   "upstream is the default already",
                                   &up->name);
                return NGX_CONF_ERROR;
            }

            up->fallback = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_registry_prefix_valid(&up->prefix) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "registry_upstream \"%V\" needs prefix=NAME/",
                           &up->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* registry_local_prefix P/ ...: names the default upstream leaves alone */

static char *
ngx_http_registry_local_prefix(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_registry_mirror_conf_t *mcf = conf;

    ngx_str_t   *value, *local;
    ngx_uint_t   i;

    if (mcf->locals != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    mcf->locals = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                   sizeof(ngx_str_t));
    if (mcf->locals == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_http_registry_prefix_valid(&value[i]) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid local prefix \"%V\": NAME/ needed",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        local = ngx_array_push(mcf->locals);
        if (local == NULL) {
            return NGX_CONF_ERROR;
        }

        *local = value[i];
    }

    return NGX_CONF_OK;
}


/* a prefix is whole path components of a name: "docker.io/", "team/" */

static ngx_int_t
ngx_http_registry_prefix_valid(ngx_str_t *prefix)
{
    if (prefix->len < 2 || prefix->data[0] == '/'
        || prefix->data[prefix->len - 1] != '/')
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* registry_upstream_credentials NAME FILE: "user:password", read now */

static char *
ngx_http_registry_upstream_credentials(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_registry_mirror_conf_t *mcf = conf;

    u_char                        *last;
    ssize_t                        n;
    ngx_fd_t                       fd;
    ngx_str_t                     *value, file, plain;
    ngx_uint_t                     i;
    ngx_http_registry_upstream_t  *up;
    u_char                         buf[1024];

    value = cf->args->elts;

    up = NULL;

    if (mcf->upstreams != NGX_CONF_UNSET_PTR) {
        up = mcf->upstreams->elts;

        for (i = 0; i < mcf->upstreams->nelts; i++) {
            if (up[i].name.len == value[1].len
                && ngx_strncmp(up[i].name.data, value[1].data, value[1].len)
                   == 0)
            {
                break;
            }
        }

        up = (i < mcf->upstreams->nelts) ? &up[i] : NULL;
    }

    if (up == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no registry_upstream \"%V\" before this",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    file = value[2];

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(file.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &file);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, buf, sizeof(buf));
    (void) ngx_close_file(fd);

    last = buf + (n > 0 ? n : 0);

    while (last > buf && (last[-1] == '\n' || last[-1] == '\r')) {
        last--;
    }

    if (n <= 0 || (size_t) n == sizeof(buf)
        || ngx_strlchr(buf, last, ':') == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must hold one line \"user:password\"",
                           &file);
        return NGX_CONF_ERROR;
    }

    plain.data = buf;
    plain.len = last - buf;

    up->basic.len = sizeof("Basic ") - 1 + ngx_base64_encoded_length(plain.len);
    up->basic.data = ngx_pnalloc(cf->pool, up->basic.len);
    if (up->basic.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(up->basic.data, "Basic ", sizeof("Basic ") - 1);

    file.data = up->basic.data + sizeof("Basic ") - 1;
    ngx_encode_base64(&file, &plain);

    ngx_explicit_memzero(buf, sizeof(buf));

    return NGX_CONF_OK;
}


/* the table, kept across reloads: a fetch under way stays one */

static ngx_int_t
ngx_http_registry_flights_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t              *shpool;
    ngx_http_registry_flights_t  *flights;

    if (data) {
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    flights = ngx_slab_calloc(shpool, sizeof(ngx_http_registry_flights_t));
    if (flights == NULL) {
        return NGX_ERROR;
    }

    flights->shpool = shpool;
    shm_zone->data = flights;

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_mirror_preconf(ngx_conf_t *cf)
{
    return ngx_http_registry_variables_register(cf,
                                                ngx_http_registry_mirror_vars);
}


static ngx_int_t
ngx_http_registry_mirror_init(ngx_conf_t *cf)
{
    return ngx_http_registry_fetch_filters(cf);
}


/* ---- routing ---- */

/*
 * Whether the route's repository is mirrored: NGX_OK, with route->name
 * made the store's (containerd's "?ns=docker.io" and the default
 * upstream put the prefix in front, library=on maps "busybox" to
 * "library/busybox"), NGX_DECLINED: a local repository, NGX_ERROR.  The
 * router then authorizes the client for that name before anything is
 * fetched.
 */

ngx_int_t
ngx_http_registry_mirror_route(ngx_http_request_t *r,
    ngx_http_registry_route_t *route)
{
    u_char                           *p;
    ngx_str_t                         ns, rest, name;
    ngx_http_registry_upstream_t     *up;
    ngx_http_registry_mirror_ctx_t   *mctx;
    ngx_http_registry_mirror_conf_t  *mcf;

    mcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_mirror_module);

    if (mcf->upstreams == NULL || route->name.len == 0) {
        return NGX_DECLINED;
    }

    if (ngx_http_registry_arg(r, "ns", &ns) != NGX_OK) {
        ns.len = 0;
    }

    up = ngx_http_registry_mirror_find(mcf, &route->name, &ns, &rest);
    if (up == NULL) {
        return NGX_DECLINED;
    }

    mctx = ngx_pcalloc(r->pool, sizeof(ngx_http_registry_mirror_ctx_t));
    if (mctx == NULL) {
        return NGX_ERROR;
    }

    mctx->upstream = up;
    mctx->owner = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    mctx->conf = mcf;
    mctx->temp.fd = NGX_INVALID_FILE;

    if (ngx_http_registry_mirror_library(r->pool, up, &rest, &mctx->remote)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    name.len = up->prefix.len + mctx->remote.len;

    if (name.len > NGX_HTTP_REGISTRY_NAME_MAX) {
        return NGX_DECLINED;      /* too long for the store: never served */
    }

    name.data = ngx_pnalloc(r->pool, name.len);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(name.data, up->prefix.data, up->prefix.len);
    ngx_memcpy(p, mctx->remote.data, mctx->remote.len);

    route->name = name;

    ngx_http_set_ctx(r, mctx, ngx_http_registry_mirror_module);

    return NGX_OK;
}


/*
 * The upstream of a name, and *rest, the name without the upstream's
 * prefix: by prefix, or with ns= by the upstream's name, prefix (without
 * its "/") or URL host.  A name of neither form is the default
 * upstream's (docker's registry-mirrors send "library/busybox" so),
 * unless a local prefix keeps it in the store; an ns= naming no upstream
 * is a local name, never the default's (another registry's).
 */

static ngx_http_registry_upstream_t *
ngx_http_registry_mirror_find(ngx_http_registry_mirror_conf_t *mcf,
    ngx_str_t *name, ngx_str_t *ns, ngx_str_t *rest)
{
    ngx_uint_t                     i;
    ngx_http_registry_upstream_t  *up;

    *rest = *name;
    up = mcf->upstreams->elts;

    for (i = 0; i < mcf->upstreams->nelts; i++) {

        if (ns->len == 0) {
            if (name->len > up[i].prefix.len
                && ngx_strncmp(name->data, up[i].prefix.data,
                               up[i].prefix.len)
                   == 0)
            {
                rest->data += up[i].prefix.len;
                rest->len -= up[i].prefix.len;
                return &up[i];
            }

            continue;
        }

        if ((ns->len == up[i].name.len
             && ngx_strncmp(ns->data, up[i].name.data, ns->len) == 0)
            || (ns->len == up[i].prefix.len - 1
                && ngx_strncmp(ns->data, up[i].prefix.data, ns->len) == 0)
            || (ns->len == up[i].host.len
                && ngx_strncmp(ns->data, up[i].host.data, ns->len) == 0))
        {
            return &up[i];
        }
    }

    if (ns->len || ngx_http_registry_mirror_local(mcf, name)) {
        return NULL;
    }

    return ngx_http_registry_mirror_fallback(mcf);
}


/* the upstream with default=on, or NULL */

static ngx_http_registry_upstream_t *
ngx_http_registry_mirror_fallback(ngx_http_registry_mirror_conf_t *mcf)
{
    ngx_uint_t                     i;
    ngx_http_registry_upstream_t  *up;

    up = mcf->upstreams->elts;

    for (i = 0; i < mcf->upstreams->nelts; i++) {
        if (up[i].fallback) {
            return &up[i];
        }
    }

    return NULL;
}


/* whether a name is under a registry_local_prefix */

static ngx_uint_t
ngx_http_registry_mirror_local(ngx_http_registry_mirror_conf_t *mcf,
    ngx_str_t *name)
{
    ngx_str_t   *local;
    ngx_uint_t   i;

    if (mcf->locals == NULL) {
        return 0;
    }

    local = mcf->locals->elts;

    for (i = 0; i < mcf->locals->nelts; i++) {
        if (name->len > local[i].len
            && ngx_strncmp(name->data, local[i].data, local[i].len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* Docker Hub's official images: "busybox" is "library/busybox" there */

static ngx_int_t
ngx_http_registry_mirror_library(ngx_pool_t *pool,
    ngx_http_registry_upstream_t *up, ngx_str_t *rest, ngx_str_t *remote)
{
    if (!up->library
        || ngx_strlchr(rest->data, rest->data + rest->len, '/') != NULL)
    {
        *remote = *rest;
        return NGX_OK;
    }

    remote->len = sizeof("library/") - 1 + rest->len;
    remote->data = ngx_pnalloc(pool, remote->len);
    if (remote->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(remote->data, "library/", sizeof("library/") - 1),
               rest->data, rest->len);

    return NGX_OK;
}


/*
 * A mirrored repository's endpoint, once the client is authorized: pulls
 * of manifests and blobs go through the cache, listings are the store's
 * (what was pulled), writes are refused.
 */

ngx_int_t
ngx_http_registry_mirror_serve(ngx_http_request_t *r,
    ngx_http_registry_route_e kind, ngx_http_handler_pt local)
{
    ngx_http_registry_mirror_ctx_t  *mctx;

    mctx = ngx_http_get_module_ctx(r, ngx_http_registry_mirror_module);

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_UNSUPPORTED,
                                       "a mirrored repository is read-only");
    }

    switch (kind) {

    case NGX_HTTP_REGISTRY_ROUTE_MANIFEST:
        return ngx_http_registry_mirror_manifest(r, mctx);

    case NGX_HTTP_REGISTRY_ROUTE_BLOB:
        return ngx_http_registry_mirror_blob(r, mctx);

    default:
        return local(r);
    }
}


/* ---- manifests ---- */

/*
 * By digest: the store's copy, or fetched once.  By tag: the store's
 * copy while the tag was checked within registry_upstream_tag_ttl, else
 * a HEAD upstream says whether it moved.
 */

static ngx_int_t
ngx_http_registry_mirror_manifest(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    time_t                            checked;
    ngx_int_t                         rc;
    ngx_str_t                         path, data;
    ngx_http_registry_ctx_t          *ctx;
    ngx_http_registry_mirror_conf_t  *mcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    mcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_mirror_module);

    mctx->local = ctx->route.digest;

    rc = ngx_http_registry_store_manifest_resolve(&ctx->op, &ctx->route.name,
                                          ctx->route.by_digest
                                          ? NULL : &ctx->route.reference,
                                          &mctx->local, &data);

    if (rc == NGX_OK && !ctx->route.by_digest) {
        rc = ngx_http_registry_store_tag_checked(&ctx->op, &ctx->route.name,
                                                 &ctx->route.reference,
                                                 &checked);
        if (rc == NGX_OK && ngx_time() - checked >= mcf->tag_ttl) {
            mctx->cached = 1;
            rc = NGX_DECLINED;
        }
    }

    if (rc == NGX_OK) {
        mctx->cache = NGX_HTTP_REGISTRY_CACHE_HIT;
        ngx_http_registry_mirror_pulled(mctx, &mctx->local,
                                        NGX_HTTP_REGISTRY_PULL_MANIFEST);
        return ngx_http_registry_manifest_get(r);
    }

    if (rc == NGX_ERROR) {
        return ngx_http_registry_store_failed(r, &ctx->op, rc,
                                          NGX_HTTP_REGISTRY_MANIFEST_UNKNOWN);
    }

    path.len = sizeof("manifests/") - 1 + ctx->route.reference.len;
    path.data = ngx_pnalloc(r->pool, path.len);
    if (path.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ngx_cpymem(path.data, "manifests/", sizeof("manifests/") - 1),
               ctx->route.reference.data, ctx->route.reference.len);

    if (mctx->cached) {
        return ngx_http_registry_fetch(r, mctx, 1, 0, &path,
                                       ngx_http_registry_manifest_revalidated);
    }

    mctx->cache = NGX_HTTP_REGISTRY_CACHE_MISS;

    if (ctx->route.by_digest) {
        mctx->expected = ctx->route.digest;
    }

    return ngx_http_registry_fetch(r, mctx, 0, 0, &path,
                                   ngx_http_registry_manifest_fetched);
}


/* the HEAD of a cached tag: unchanged, moved, gone, or no answer */

static ngx_int_t
ngx_http_registry_manifest_revalidated(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    ngx_str_t                   path;
    ngx_http_registry_fetch_t  *f;

    f = &mctx->fetch;

    if (f->status == NGX_HTTP_NOT_FOUND) {
        mctx->cache = NGX_HTTP_REGISTRY_CACHE_MISS;
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_MANIFEST_UNKNOWN,
                                       "the tag is gone upstream");
    }

    if (f->status != NGX_HTTP_OK
        || ngx_http_registry_digest_known(r->pool, f->digest.data,
                                          f->digest.len, &mctx->expected)
           != NGX_OK)
    {
        return ngx_http_registry_manifest_stale(r, mctx);
    }

    if (ngx_http_registry_digest_equal(&mctx->expected, &mctx->local)) {
        mctx->cache = NGX_HTTP_REGISTRY_CACHE_REVALIDATED;
        ngx_http_registry_mirror_pulled(mctx, &mctx->local,
                                        NGX_HTTP_REGISTRY_PULL_MANIFEST);
        return ngx_http_registry_task_start(r,
                                      ngx_http_registry_manifest_recheck_work,
                                      mctx,
                                      ngx_http_registry_manifest_cached);
    }

    /* moved: fetched by the digest HEAD named */

    mctx->cache = NGX_HTTP_REGISTRY_CACHE_MISS;

    path.len = sizeof("manifests/") - 1 + mctx->expected.text.len;
    path.data = ngx_pnalloc(r->pool, path.len);
    if (path.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ngx_cpymem(path.data, "manifests/", sizeof("manifests/") - 1),
               mctx->expected.text.data, mctx->expected.text.len);

    return ngx_http_registry_fetch(r, mctx, 0, 0, &path,
                                   ngx_http_registry_manifest_fetched);
}


static ngx_int_t
ngx_http_registry_manifest_fetched(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    ngx_str_t                     *tag;
    ngx_http_registry_ctx_t       *ctx;
    ngx_http_registry_fetch_t     *f;
    ngx_http_registry_manifest_t  *m;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    f = &mctx->fetch;

    if (f->status != NGX_HTTP_OK || f->body == NULL || f->too_big) {
        if (mctx->cached && f->status != NGX_HTTP_NOT_FOUND) {
            return ngx_http_registry_manifest_stale(r, mctx);
        }

        return ngx_http_registry_upstream_failed(r, mctx,
                                          NGX_HTTP_REGISTRY_MANIFEST_UNKNOWN);
    }

    if (mctx->expected.text.len == 0
        && ngx_http_registry_digest_known(r->pool, f->digest.data,
                                          f->digest.len, &mctx->expected)
           != NGX_OK)
    {
        mctx->expected.text.len = 0;     /* the sha256 of the bytes */
    }

    m = &mctx->manifest;
    m->name = ctx->route.name;
    m->bytes.data = f->body->pos;
    m->bytes.len = f->body->last - f->body->pos;
    m->mirrored = 1;
    mctx->type = f->type;

    m->tags = ngx_array_create(r->pool, 1, sizeof(ngx_str_t));
    if (m->tags == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!ctx->route.by_digest) {
        tag = ngx_array_push(m->tags);
        if (tag == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *tag = ctx->route.reference;
    }

    return ngx_http_registry_task_start(r,
                                        ngx_http_registry_manifest_store_work,
                                        mctx,
                                        ngx_http_registry_manifest_cached);
}


/*
 * In a thread: the bytes hash to the digest asked for (or the one the
 * upstream named), are a manifest, and are stored, the tag checked now.
 */

static ngx_int_t
ngx_http_registry_manifest_store_work(ngx_http_registry_op_t *op,
    void *data)
{
    ngx_http_registry_mirror_ctx_t *mctx = data;

    ngx_int_t                      rc;
    ngx_str_t                     *tag;
    const char                    *invalid;
    ngx_http_registry_hash_t       hash;
    ngx_http_registry_manifest_t  *m;

    m = &mctx->manifest;

    ngx_http_registry_hash_init(&hash, mctx->expected.text.len
                                       ? mctx->expected.alg
                                       : NGX_HTTP_REGISTRY_SHA256);
    ngx_http_registry_hash_update(&hash, m->bytes.data, m->bytes.len);

    if (ngx_http_registry_hash_final(&hash, op->pool, &m->digest) != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (mctx->expected.text.len
        && !ngx_http_registry_digest_equal(&m->digest, &mctx->expected))
    {
        ngx_log_error(NGX_LOG_ERR, op->log, 0,
                      "registry upstream: manifest %V hashes to %V, "
                      "not stored", &mctx->expected.text, &m->digest.text);
        return ngx_http_registry_op_fail(op, NGX_HTTP_REGISTRY_UNAVAILABLE,
                                         "the upstream's manifest does not "
                                         "match its digest");
    }

    rc = ngx_http_registry_manifest_parse(op->pool, m, &mctx->type, &invalid);

    if (rc == NGX_DECLINED) {
        return ngx_http_registry_op_fail(op, NGX_HTTP_REGISTRY_UNAVAILABLE,
                                         invalid);
    }

    if (rc != NGX_OK || ngx_http_registry_store_manifest_put(op, m) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* a tag that named this manifest already is not rewritten: retimed */

    tag = m->tags->elts;

    if (m->tags->nelts) {
        return ngx_http_registry_store_tag_recheck(op, &m->name, &tag[0]);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_manifest_recheck_work(ngx_http_registry_op_t *op,
    void *data)
{
    ngx_http_registry_mirror_ctx_t *mctx = data;

    return ngx_http_registry_store_tag_recheck(op, &mctx->owner->route.name,
                                            &mctx->owner->route.reference);
}


/* the store has it now: served as a local manifest is */

static ngx_int_t
ngx_http_registry_manifest_cached(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);

    if (rc != NGX_OK) {
        return ngx_http_registry_send_fault(r, &ctx->task.op.fault);
    }

    return ngx_http_registry_manifest_get(r);
}


/* the upstream did not answer: the cached copy, said to be stale */

static ngx_int_t
ngx_http_registry_manifest_stale(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx)
{
    static ngx_str_t  stale = ngx_string("110 - \"Response is Stale\"");

    mctx->cache = NGX_HTTP_REGISTRY_CACHE_STALE;
    ngx_http_registry_mirror_pulled(mctx, &mctx->local,
                                    NGX_HTTP_REGISTRY_PULL_MANIFEST);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "registry upstream: \"%V\" answered %ui, "
                  "the cached manifest is served", &mctx->fetch.url,
                  mctx->fetch.status);

    if (ngx_http_registry_add_header(r, "Warning", &stale) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_manifest_get(r);
}


/* ---- variables ---- */

static ngx_int_t
ngx_http_registry_upstream_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                  *s;
    ngx_http_registry_fetch_t  *f;

    f = (r == r->main) ? NULL
        : ngx_http_get_module_ctx(r, ngx_http_registry_mirror_module);

    if (f == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    /* an empty Authorization is not found: proxy_set_header sends none */

    switch (data) {

    case NGX_HTTP_REGISTRY_VAR_URL:
        s = &f->url;
        break;

    case NGX_HTTP_REGISTRY_VAR_AUTHORIZATION:
        s = &f->authorization;
        break;

    default:
        s = &f->accept;
        break;
    }

    ngx_http_registry_variable_set(v, s);

    return NGX_OK;
}


ngx_uint_t
ngx_http_registry_mirror_result(ngx_http_request_t *r)
{
    ngx_http_registry_mirror_ctx_t  *mctx;

    mctx = ngx_http_get_module_ctx(r->main, ngx_http_registry_mirror_module);

    return mctx ? mctx->cache : NGX_HTTP_REGISTRY_CACHE_NONE;
}


/* the requests the cache sent upstream for r */

ngx_uint_t
ngx_http_registry_mirror_upstream_requests(ngx_http_request_t *r)
{
    ngx_http_registry_mirror_ctx_t  *mctx;

    mctx = ngx_http_get_module_ctx(r->main, ngx_http_registry_mirror_module);

    return mctx ? mctx->upstream_requests : 0;
}


ngx_str_t *
ngx_http_registry_mirror_result_name(ngx_uint_t result)
{
    return &ngx_http_registry_cache_names[result];
}


static ngx_int_t
ngx_http_registry_cache_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_registry_mirror_ctx_t  *mctx;

    mctx = ngx_http_get_module_ctx(r->main, ngx_http_registry_mirror_module);

    /* NGX_HTTP_REGISTRY_CACHE_NONE's name is empty: not found */

    ngx_http_registry_variable_set(v, mctx
                                   ? &ngx_http_registry_cache_names[mctx->cache]
                                   : NULL);

    return NGX_OK;
}
