
/*
 * ngx_http_registry_module: the module, its directives and configuration.
 */


#include "ngx_http_registry.h"


#define NGX_HTTP_REGISTRY_STORE_SUFFIX  "/docker/registry/v2"

#define NGX_HTTP_REGISTRY_LINKS_MAX     4096
#define NGX_HTTP_REGISTRY_LINKS_VALID   1000
#define NGX_HTTP_REGISTRY_CATALOG_REFRESH  60000


/* one per store: the periodic purge of its stale uploads, in one worker */

typedef struct {
    ngx_http_registry_store_t     *store;
    ngx_thread_pool_t             *thread_pool;
    ngx_event_t                    event;
    ngx_http_registry_detached_t   task;
    unsigned                       running:1;
} ngx_http_registry_sweep_t;


/* one per store with registry_gc: its collection, started in one worker */

typedef struct {
    ngx_http_registry_gc_conf_t   *conf;
    ngx_event_t                    event;
    ngx_http_registry_job_start_t  start;
} ngx_http_registry_gc_timer_t;


static ngx_int_t ngx_http_registry_init(ngx_conf_t *cf);
static void *ngx_http_registry_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_registry_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_registry_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_registry_merge_user(ngx_conf_t *cf,
    ngx_http_registry_loc_conf_t *conf, ngx_http_registry_loc_conf_t *prev);
static void ngx_http_registry_json_errors(ngx_conf_t *cf,
    ngx_http_registry_loc_conf_t *conf);
static char *ngx_http_registry_serve(ngx_conf_t *cf,
    ngx_http_handler_pt handler);
static char *ngx_http_registry(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_registry_admin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_registry_thread_pool(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_registry_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_registry_health(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_registry_link_cache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_registry_add_zone(ngx_conf_t *cf);
static ngx_int_t ngx_http_registry_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_registry_add_store(ngx_conf_t *cf,
    ngx_http_registry_loc_conf_t *rlcf);
static ngx_int_t ngx_http_registry_init_process(ngx_cycle_t *cycle);
static ngx_msec_t ngx_http_registry_sweep_interval(time_t expire);
static void ngx_http_registry_sweep_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_registry_sweep_work(ngx_http_registry_op_t *op,
    void *data);
static void ngx_http_registry_sweep_done(ngx_http_registry_detached_t *d);
static char *ngx_http_registry_gc(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_registry_gc_schedule(ngx_cycle_t *cycle,
    ngx_http_registry_served_t *served);
static ngx_msec_t ngx_http_registry_gc_delay(time_t interval);
static void ngx_http_registry_gc_handler(ngx_event_t *ev);


static ngx_conf_enum_t  ngx_http_registry_auto_mount_modes[] = {
    { ngx_string("off"), NGX_HTTP_REGISTRY_AUTO_MOUNT_OFF },
    { ngx_string("on"), NGX_HTTP_REGISTRY_AUTO_MOUNT_ON },
    { ngx_string("anonymous"), NGX_HTTP_REGISTRY_AUTO_MOUNT_ANONYMOUS },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_registry_commands[] = {

    { ngx_string("registry"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_registry,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_loc_conf_t, enable),
      NULL },

    { ngx_string("registry_admin"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_registry_admin,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_loc_conf_t, admin),
      NULL },

    { ngx_string("registry_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_registry_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("registry_health"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_registry_health,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("registry_root"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_loc_conf_t, root),
      NULL },

    { ngx_string("registry_delete"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_loc_conf_t, delete),
      NULL },

    { ngx_string("registry_read_only"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_loc_conf_t, read_only),
      NULL },

    { ngx_string("registry_manifest_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_loc_conf_t, manifest_max_size),
      NULL },

    { ngx_string("registry_chunk_min_length"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_loc_conf_t, chunk_min_length),
      NULL },

    { ngx_string("registry_auto_mount"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_loc_conf_t, auto_mount),
      &ngx_http_registry_auto_mount_modes },

    { ngx_string("registry_upload_expire"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_loc_conf_t, upload_expire),
      NULL },

    { ngx_string("registry_catalog_refresh"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_loc_conf_t, catalog_refresh),
      NULL },

    { ngx_string("registry_link_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_registry_link_cache,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("registry_user"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_loc_conf_t, user),
      NULL },

    { ngx_string("registry_access"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE3,
      ngx_http_registry_access_rule,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("registry_gc"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_registry_gc,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("registry_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_registry_thread_pool,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_registry_module_ctx = {
    ngx_http_registry_variables_add,       /* preconfiguration */
    ngx_http_registry_init,                /* postconfiguration */

    ngx_http_registry_create_main_conf,    /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_registry_create_loc_conf,     /* create location configuration */
    ngx_http_registry_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_http_registry_module = {
    NGX_MODULE_V1,
    &ngx_http_registry_module_ctx,         /* module context */
    ngx_http_registry_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_registry_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* the error filters, and the metrics' log handler */

static ngx_int_t
ngx_http_registry_init(ngx_conf_t *cf)
{
    if (ngx_http_registry_error_filters(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_registry_metrics_init(cf);
}


static void *
ngx_http_registry_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_registry_main_conf_t  *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_registry_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&rmcf->stores, cf->pool, 1,
                       sizeof(ngx_http_registry_served_t))
        != NGX_OK)
    {
        return NULL;
    }

    return rmcf;
}


static void *
ngx_http_registry_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_registry_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_registry_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->root = { 0, NULL };
     *     conf->store = NULL;
     *     conf->user = NULL;
     *     conf->health = NULL;
     *     conf->json_errors = 0;
     */

    conf->enable = NGX_CONF_UNSET;
    conf->admin = NGX_CONF_UNSET;
    conf->delete = NGX_CONF_UNSET;
    conf->read_only = NGX_CONF_UNSET;
    conf->manifest_max_size = NGX_CONF_UNSET_SIZE;
    conf->chunk_min_length = NGX_CONF_UNSET_SIZE;
    conf->auto_mount = NGX_CONF_UNSET_UINT;
    conf->upload_expire = NGX_CONF_UNSET;
    conf->catalog_refresh = NGX_CONF_UNSET_MSEC;
    conf->link_cache = NGX_CONF_UNSET_PTR;
    conf->thread_pool = NGX_CONF_UNSET_PTR;
    conf->rules = NGX_CONF_UNSET_PTR;
    conf->gc = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_registry_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_registry_loc_conf_t *prev = parent;
    ngx_http_registry_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t  *clcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_value(conf->admin, prev->admin, 0);
    ngx_conf_merge_value(conf->delete, prev->delete, 0);
    ngx_conf_merge_value(conf->read_only, prev->read_only, 0);
    ngx_conf_merge_str_value(conf->root, prev->root, "");
    ngx_conf_merge_size_value(conf->manifest_max_size,
                              prev->manifest_max_size, 4 * 1024 * 1024);
    ngx_conf_merge_size_value(conf->chunk_min_length,
                              prev->chunk_min_length, 1024 * 1024);
    ngx_conf_merge_uint_value(conf->auto_mount, prev->auto_mount,
                              NGX_HTTP_REGISTRY_AUTO_MOUNT_OFF);
    ngx_conf_merge_sec_value(conf->upload_expire, prev->upload_expire,
                             24 * 60 * 60);
    ngx_conf_merge_msec_value(conf->catalog_refresh, prev->catalog_refresh,
                              NGX_HTTP_REGISTRY_CATALOG_REFRESH);
    ngx_conf_merge_ptr_value(conf->thread_pool, prev->thread_pool,
                             NGX_CONF_UNSET_PTR);

    ngx_conf_merge_ptr_value(conf->rules, prev->rules, NULL);
    ngx_conf_merge_ptr_value(conf->gc, prev->gc, NULL);

    if (ngx_http_registry_merge_user(cf, conf, prev) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_ptr_value(conf->link_cache, prev->link_cache,
                             NGX_CONF_UNSET_PTR);

    if (conf->link_cache == NGX_CONF_UNSET_PTR) {
        conf->link_cache = ngx_http_registry_links_create(cf->pool,
                                               NGX_HTTP_REGISTRY_LINKS_MAX,
                                               NGX_HTTP_REGISTRY_LINKS_VALID);
        if (conf->link_cache == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (conf->upload_expire < 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"registry_upload_expire\" must be at least 1s");
        return NGX_CONF_ERROR;
    }

    if (conf->catalog_refresh < 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"registry_catalog_refresh\" must be at least "
                           "1ms");
        return NGX_CONF_ERROR;
    }

    /* a registry_health location probes a store as the registry uses it */

    if (!conf->enable && !conf->admin && conf->health == NULL) {
        return NGX_CONF_OK;
    }

    if (conf->enable && conf->admin) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"registry\" and \"registry_admin\" need "
                           "locations of their own");
        return NGX_CONF_ERROR;
    }

    if (conf->health == NULL) {
        ngx_http_registry_json_errors(cf, conf);
    }

    /*
     * Off the event loop by default, in nginx's "default" pool (32
     * threads unless thread_pool says otherwise); its threads that hash
     * lower their priority for good (see upload.c), so "aio threads"
     * wants a pool of its own beside it.
     */

    if (conf->thread_pool == NGX_CONF_UNSET_PTR) {
#if (NGX_THREADS)
        conf->thread_pool = ngx_thread_pool_add(cf, NULL);
        if (conf->thread_pool == NULL) {
            return NGX_CONF_ERROR;
        }
#else
        conf->thread_pool = NULL;
#endif
    }

    /*
     * limit_except is a nested location that inherits "registry on" but
     * not the content handler its directive set; proxy_pass does the same
     */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (conf->health == NULL && clcf->lmt_excpt && clcf->handler == NULL) {
        clcf->handler = conf->enable ? ngx_http_registry_handler
                                     : ngx_http_registry_admin_handler;
    }

    if (conf->root.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" needs \"registry_root\"",
                           conf->enable ? "registry"
                           : conf->admin ? "registry_admin"
                           : "registry_health");
        return NGX_CONF_ERROR;
    }

    /* a job walks the store for minutes: never in the event loop */

    if (conf->admin && conf->thread_pool == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"registry_admin\" needs a "
                           "\"registry_thread_pool\"");
        return NGX_CONF_ERROR;
    }

    if (conf->gc && conf->thread_pool == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"registry_gc\" needs a "
                           "\"registry_thread_pool\"");
        return NGX_CONF_ERROR;
    }

    if (ngx_conf_full_name(cf->cycle, &conf->root, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    while (conf->root.len > 1 && conf->root.data[conf->root.len - 1] == '/') {
        conf->root.len--;
    }

    if (ngx_http_registry_add_store(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * registry_user names the user for registry_access: $remote_user unless
 * set.  nginx fills $remote_user from whatever Basic credentials a client
 * sends; only auth_basic (or auth_request) in front makes them verified.
 */

static ngx_int_t
ngx_http_registry_merge_user(ngx_conf_t *cf,
    ngx_http_registry_loc_conf_t *conf, ngx_http_registry_loc_conf_t *prev)
{
    ngx_http_compile_complex_value_t   ccv;

    static ngx_str_t  remote_user = ngx_string("$remote_user");

    if (conf->user) {
        return NGX_OK;
    }

    if (prev->user) {
        conf->user = prev->user;
        return NGX_OK;
    }

    conf->user = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (conf->user == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &remote_user;
    ccv.complex_value = conf->user;

    return ngx_http_compile_complex_value(&ccv);
}


/*
 * nginx's own errors in a registry location get the spec's JSON bodies
 * (error.c), and so do those it makes before it knows the location (a
 * 400 or a 414 on the request line): the server's configuration, which
 * such requests have, is marked too.  A registry request then gets JSON
 * even when no location matches it.
 */

static void
ngx_http_registry_json_errors(ngx_conf_t *cf,
    ngx_http_registry_loc_conf_t *conf)
{
    ngx_http_core_srv_conf_t      *cscf;
    ngx_http_registry_loc_conf_t  *server;

    conf->json_errors = 1;

    cscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_core_module);

    server = cscf->ctx->loc_conf[ngx_http_registry_module.ctx_index];
    server->json_errors = 1;
}


/*
 * registry_link_cache off | max=N [valid=time]: how many links each worker
 * remembers, and for how long at most (see ngx_http_registry_links.c).
 */

static char *
ngx_http_registry_link_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_registry_loc_conf_t *rlcf = conf;

    ngx_int_t    max;
    ngx_str_t   *value, s;
    ngx_msec_t   valid;
    ngx_uint_t   i;

    if (rlcf->link_cache != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts != 2) {
            return "takes nothing after \"off\"";
        }

        rlcf->link_cache = NULL;
        return NGX_CONF_OK;
    }

    max = NGX_ERROR;
    valid = NGX_HTTP_REGISTRY_LINKS_VALID;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "max=", 4) == 0) {
            max = ngx_atoi(value[i].data + 4, value[i].len - 4);
            if (max <= 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "valid=", 6) == 0) {
            s.len = value[i].len - 6;
            s.data = value[i].data + 6;

            valid = ngx_parse_time(&s, 0);
            if (valid == (ngx_msec_t) NGX_ERROR || valid == 0) {
                goto invalid;
            }

            continue;
        }

        goto invalid;
    }

    if (max == NGX_ERROR) {
        return "needs \"max=\" or \"off\"";
    }

    rlcf->link_cache = ngx_http_registry_links_create(cf->pool, max, valid);

    return rlcf->link_cache ? NGX_CONF_OK : NGX_CONF_ERROR;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid \"registry_link_cache\" parameter \"%V\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}


/*
 * registry_thread_pool <name> | off: the pool the store's blocking work
 * runs in ("default" when not set, which nginx creates with 32 threads
 * unless a thread_pool directive defines it); off runs it in the event
 * loop.
 */

static char *
ngx_http_registry_thread_pool(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_registry_loc_conf_t *rlcf = conf;

    ngx_str_t  *value;

    if (rlcf->thread_pool != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        rlcf->thread_pool = NULL;
        return NGX_CONF_OK;
    }

#if (NGX_THREADS)
    rlcf->thread_pool = ngx_thread_pool_add(cf, &value[1]);

    return rlcf->thread_pool ? NGX_CONF_OK : NGX_CONF_ERROR;
#else
    return "needs nginx built with thread support";
#endif
}


/*
 * One store object per registry_root, shared by the locations serving it:
 * the upload expiry and catalog refresh are the shortest they ask for, as
 * is the interval of registry_gc; its sweep of stale uploads and its
 * collection use the thread pool of the first.
 */

static ngx_int_t
ngx_http_registry_add_store(ngx_conf_t *cf, ngx_http_registry_loc_conf_t *rlcf)
{
    u_char                         *p;
    size_t                          len;
    ngx_uint_t                      i;
    ngx_http_registry_served_t     *served;
    ngx_http_registry_store_t      *st;
    ngx_http_registry_main_conf_t  *rmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_registry_module);

    len = rlcf->root.len + sizeof(NGX_HTTP_REGISTRY_STORE_SUFFIX) - 1;
    served = rmcf->stores.elts;

    for (i = 0; i < rmcf->stores.nelts; i++) {
        st = served[i].store;

        if (st->root.len == len
            && ngx_strncmp(st->root.data, rlcf->root.data, rlcf->root.len)
               == 0)
        {
            st->upload_expire = ngx_min(st->upload_expire,
                                        rlcf->upload_expire);
            st->catalog_refresh = ngx_min(st->catalog_refresh,
                                          rlcf->catalog_refresh);

            if (rlcf->gc && (served[i].gc == NULL
                             || rlcf->gc->interval < served[i].gc->interval))
            {
                served[i].gc = rlcf->gc;
            }

            rlcf->store = st;
            return NGX_OK;
        }
    }

    st = ngx_pcalloc(cf->pool, sizeof(ngx_http_registry_store_t));
    if (st == NULL) {
        return NGX_ERROR;
    }

    st->root.len = len;
    st->root.data = ngx_pnalloc(cf->pool, len + 1);
    if (st->root.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(st->root.data, rlcf->root.data, rlcf->root.len);
    ngx_memcpy(p, NGX_HTTP_REGISTRY_STORE_SUFFIX,
               sizeof(NGX_HTTP_REGISTRY_STORE_SUFFIX));

    st->id = ngx_hash_key(st->root.data, st->root.len);
    st->upload_expire = rlcf->upload_expire;
    st->catalog_refresh = rlcf->catalog_refresh;
    st->root_fd = NGX_INVALID_FILE;

    served = ngx_array_push(&rmcf->stores);
    if (served == NULL) {
        return NGX_ERROR;
    }

    served->store = st;
    served->thread_pool = rlcf->thread_pool;
    served->gc = rlcf->gc;
    rlcf->store = st;

    return NGX_OK;
}


/*
 * Each worker opens each store's root and sets up its caches; one worker
 * sweeps stale uploads, every half expiry (at most an hour apart, at
 * least a second), and starts the store's registry_gc.  The timers are
 * cancelable: they never hold up a graceful shutdown.
 */

static ngx_int_t
ngx_http_registry_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i;
    ngx_http_registry_store_t      *st;
    ngx_http_registry_sweep_t      *sweep;
    ngx_http_registry_served_t     *served;
    ngx_http_registry_main_conf_t  *rmcf;

    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_registry_module);
    if (rmcf == NULL || rmcf->zone == NULL) {
        return NGX_OK;
    }

    served = rmcf->stores.elts;

    for (i = 0; i < rmcf->stores.nelts; i++) {
        st = served[i].store;

        st->shared = rmcf->zone->data;
        st->shpool = (ngx_slab_pool_t *) rmcf->zone->shm.addr;

        /* a store that cannot be opened answers 503, and is logged */
        (void) ngx_http_registry_store_init_worker(st, cycle->log);

        if (ngx_worker != 0) {
            continue;
        }

        sweep = ngx_pcalloc(cycle->pool, sizeof(ngx_http_registry_sweep_t));
        if (sweep == NULL) {
            return NGX_ERROR;
        }

        sweep->store = st;
        sweep->thread_pool = served[i].thread_pool;
        sweep->task.op.store = st;
        sweep->task.op.log = cycle->log;
        sweep->task.work = ngx_http_registry_sweep_work;
        sweep->task.data = sweep;
        sweep->task.done = ngx_http_registry_sweep_done;

        sweep->event.handler = ngx_http_registry_sweep_handler;
        sweep->event.data = sweep;
        sweep->event.log = cycle->log;
        sweep->event.cancelable = 1;

        ngx_add_timer(&sweep->event,
                      ngx_http_registry_sweep_interval(st->upload_expire));

        if (served[i].gc
            && ngx_http_registry_gc_schedule(cycle, &served[i]) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_msec_t
ngx_http_registry_sweep_interval(time_t expire)
{
    return (ngx_msec_t) ngx_max(ngx_min(expire / 2, 3600), 1) * 1000;
}


/* the sweep walks the store: a task of the thread pool */

static void
ngx_http_registry_sweep_handler(ngx_event_t *ev)
{
    ngx_http_registry_sweep_t  *sweep;

    sweep = ev->data;

    if (sweep->running || sweep->store->root_fd == NGX_INVALID_FILE) {
        goto again;
    }

    sweep->task.op.pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, ev->log);
    if (sweep->task.op.pool == NULL) {
        goto again;
    }

    sweep->running = 1;

    if (ngx_http_registry_task_detach(&sweep->task, sweep->thread_pool,
                                      ngx_cycle->pool)
        != NGX_OK)
    {
        sweep->running = 0;
        ngx_destroy_pool(sweep->task.op.pool);
    }

again:

    if (!ngx_exiting) {
        ngx_add_timer(ev, ngx_http_registry_sweep_interval(
                                               sweep->store->upload_expire));
    }
}


static ngx_int_t
ngx_http_registry_sweep_work(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_sweep_t *sweep = data;

    return ngx_http_registry_store_purge_uploads(op,
                                                 sweep->store->upload_expire);
}


static void
ngx_http_registry_sweep_done(ngx_http_registry_detached_t *d)
{
    ngx_http_registry_sweep_t *sweep = d->data;

    ngx_destroy_pool(d->op.pool);
    sweep->running = 0;
}


/*
 * registry_gc interval=24h [grace=1h] [delete_untagged]: the store's
 * garbage collection as a job (store_gc.c) every interval, in one worker,
 * at the multiples of the interval on the clock, so that reloads do not
 * postpone it and the hosts sharing a store try together (the job's lease
 * lets one of them run it).
 */

static char *
ngx_http_registry_gc(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_registry_loc_conf_t *rlcf = conf;

    time_t                        t;
    ngx_str_t                    *value, v;
    ngx_uint_t                    i;
    ngx_http_registry_gc_conf_t  *gc;

    if (rlcf->gc != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        rlcf->gc = NULL;
        return NGX_CONF_OK;
    }

    gc = ngx_pcalloc(cf->pool, sizeof(ngx_http_registry_gc_conf_t));
    if (gc == NULL) {
        return NGX_CONF_ERROR;
    }

    gc->grace = NGX_HTTP_REGISTRY_JOB_GRACE;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "delete_untagged") == 0) {
            gc->delete_untagged = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "interval=", 9) == 0) {
            v.data = value[i].data + 9;
            v.len = value[i].len - 9;

            t = ngx_parse_time(&v, 1);
            if (t == (time_t) NGX_ERROR || t < 1) {
                goto invalid;
            }

            gc->interval = t;
            continue;
        }

        if (ngx_strncmp(value[i].data, "grace=", 6) == 0) {
            v.data = value[i].data + 6;
            v.len = value[i].len - 6;

            t = ngx_parse_time(&v, 1);
            if (t == (time_t) NGX_ERROR) {
                goto invalid;
            }

            gc->grace = t;
            continue;
        }

        goto invalid;
    }

    if (gc->interval == 0) {
        return "needs \"interval=\"";
    }

    rlcf->gc = gc;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_registry_gc_schedule(ngx_cycle_t *cycle,
    ngx_http_registry_served_t *served)
{
    ngx_http_registry_gc_timer_t  *gt;

    gt = ngx_pcalloc(cycle->pool, sizeof(ngx_http_registry_gc_timer_t));
    if (gt == NULL) {
        return NGX_ERROR;
    }

    gt->conf = served->gc;
    gt->start.store = served->store;
    gt->start.thread_pool = served->thread_pool;

    gt->event.handler = ngx_http_registry_gc_handler;
    gt->event.data = gt;
    gt->event.log = cycle->log;
    gt->event.cancelable = 1;

    ngx_add_timer(&gt->event, ngx_http_registry_gc_delay(gt->conf->interval));

    return NGX_OK;
}


/* until the next multiple of the interval on the clock */

static ngx_msec_t
ngx_http_registry_gc_delay(time_t interval)
{
    return (ngx_msec_t) (interval - ngx_time() % interval) * 1000;
}


/* a job runs already (this one still, fsck, another host's): next time */

static void
ngx_http_registry_gc_handler(ngx_event_t *ev)
{
    ngx_int_t                      rc;
    ngx_http_registry_gc_timer_t  *gt;

    static ngx_str_t  kind = ngx_string("gc");

    gt = ev->data;

    if (ngx_http_registry_job_init(&gt->start, gt->start.store,
                                   gt->start.thread_pool, &kind, ev->log)
        == NGX_OK)
    {
        gt->start.options.grace = gt->conf->grace;
        gt->start.options.delete_untagged = gt->conf->delete_untagged;

        rc = ngx_http_registry_job_start(&gt->start);

        if (rc == NGX_BUSY) {
            ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                          "registry: scheduled gc skipped: job \"%V\" "
                          "runs", &gt->start.id);

        } else if (rc != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                          "registry: scheduled gc could not start");
        }
    }

    ngx_add_timer(ev, ngx_http_registry_gc_delay(gt->conf->interval));
}


/*
 * The location's content handler is one of the registry's: each needs
 * the shared zone (and with it the store opened in every worker).
 */

static char *
ngx_http_registry_serve(ngx_conf_t *cf, ngx_http_handler_pt handler)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = handler;

    if (ngx_http_registry_add_zone(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* "registry on" makes the registry this location's content handler */

static char *
ngx_http_registry(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_registry_loc_conf_t *rlcf = conf;

    char  *rv;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK || !rlcf->enable) {
        return rv;
    }

    return ngx_http_registry_serve(cf, ngx_http_registry_handler);
}


/* "registry_metrics": the Prometheus text of the metrics zone */

static char *
ngx_http_registry_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    return ngx_http_registry_serve(cf, ngx_http_registry_metrics_handler);
}


/* "registry_health": the probe of the location's registry_root */

static char *
ngx_http_registry_health(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_registry_loc_conf_t *rlcf = conf;

    if (rlcf->health) {
        return "is duplicate";
    }

    rlcf->health = ngx_http_registry_health_create(cf);
    if (rlcf->health == NULL) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_registry_serve(cf, ngx_http_registry_health_handler);
}


/*
 * "registry_admin on": the maintenance jobs of the location's store
 * (admin.c); its access is nginx's own (allow, deny, auth_basic).
 */

static char *
ngx_http_registry_admin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_registry_loc_conf_t *rlcf = conf;

    char  *rv;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK || !rlcf->admin) {
        return rv;
    }

    return ngx_http_registry_serve(cf, ngx_http_registry_admin_handler);
}


/*
 * What the workers share (ngx_http_registry_shared_t): the link cache's
 * counter, the repositories created lately and the stores' running jobs;
 * and the metrics, a zone of their own (metrics.c).  The zones are kept
 * across reloads, so the old workers still serving and the new ones count
 * together.
 */

static ngx_int_t
ngx_http_registry_add_zone(ngx_conf_t *cf)
{
    ngx_str_t                       name = ngx_string("ngx_http_registry");
    ngx_http_registry_main_conf_t  *rmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_registry_module);

    if (ngx_http_registry_metrics_add_zone(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (rmcf->zone) {
        return NGX_OK;
    }

    rmcf->zone = ngx_shared_memory_add(cf, &name, 16 * ngx_pagesize,
                                       &ngx_http_registry_module);
    if (rmcf->zone == NULL) {
        return NGX_ERROR;
    }

    rmcf->zone->init = ngx_http_registry_init_zone;

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t             *shpool;
    ngx_http_registry_shared_t  *shared;

    if (data) {
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    shared = ngx_slab_calloc(shpool, sizeof(ngx_http_registry_shared_t));
    if (shared == NULL) {
        return NGX_ERROR;
    }

    shared->jobs = ngx_slab_calloc(shpool,
                                   NGX_HTTP_REGISTRY_JOB_SLOTS
                                   * sizeof(ngx_http_registry_job_slot_t));
    if (shared->jobs == NULL) {
        return NGX_ERROR;
    }

    shm_zone->data = shared;

    return NGX_OK;
}
