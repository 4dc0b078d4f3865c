
/*
 * ngx_http_registry_module: the module, its directives and configuration.
 */


#include "ngx_http_registry.h"


#define NGX_HTTP_REGISTRY_STORE_SUFFIX  "/docker/registry/v2"


static void *ngx_http_registry_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_registry_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_registry(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_registry_commands[] = {

    { ngx_string("registry"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_registry,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_loc_conf_t, enable),
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

    { ngx_string("registry_manifest_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_loc_conf_t, manifest_max_size),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_registry_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
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
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


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
     *     conf->store = { 0, NULL };
     */

    conf->enable = NGX_CONF_UNSET;
    conf->delete = NGX_CONF_UNSET;
    conf->manifest_max_size = NGX_CONF_UNSET_SIZE;

    return conf;
}


static char *
ngx_http_registry_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_registry_loc_conf_t *prev = parent;
    ngx_http_registry_loc_conf_t *conf = child;

    u_char                    *p;
    ngx_http_core_loc_conf_t  *clcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_value(conf->delete, prev->delete, 0);
    ngx_conf_merge_str_value(conf->root, prev->root, "");
    ngx_conf_merge_size_value(conf->manifest_max_size,
                              prev->manifest_max_size, 4 * 1024 * 1024);

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    /*
     * limit_except is a nested location that inherits "registry on" but
     * not the content handler its directive set; proxy_pass does the same
     */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->lmt_excpt && clcf->handler == NULL) {
        clcf->handler = ngx_http_registry_handler;
    }

    if (conf->root.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"registry\" needs \"registry_root\"");
        return NGX_CONF_ERROR;
    }

    if (ngx_conf_full_name(cf->cycle, &conf->root, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    while (conf->root.len > 1 && conf->root.data[conf->root.len - 1] == '/') {
        conf->root.len--;
    }

    conf->store.len = conf->root.len + sizeof(NGX_HTTP_REGISTRY_STORE_SUFFIX)
                      - 1;
    conf->store.data = ngx_pnalloc(cf->pool, conf->store.len);
    if (conf->store.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_cpymem(conf->store.data, conf->root.data, conf->root.len);
    ngx_memcpy(p, NGX_HTTP_REGISTRY_STORE_SUFFIX,
               sizeof(NGX_HTTP_REGISTRY_STORE_SUFFIX) - 1);

    return NGX_CONF_OK;
}


/* "registry on" makes the registry this location's content handler */

static char *
ngx_http_registry(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_registry_loc_conf_t *rlcf = conf;

    char                      *rv;
    ngx_http_core_loc_conf_t  *clcf;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (rlcf->enable) {
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
        clcf->handler = ngx_http_registry_handler;
    }

    return NGX_CONF_OK;
}
