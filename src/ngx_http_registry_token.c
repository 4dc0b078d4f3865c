
/*
 * ngx_http_registry_token_module: Docker token authentication
 * (docker-auth-token.md), the second module of the registry's .so.
 *
 * The registry's side: where registry_token_realm is set, a request
 * needs a Bearer token signed by a registry_token_keys key, for this
 * registry_token_service from registry_token_issuer, whose "access"
 * claim covers what the request needs; else it gets a 401 challenge that
 * names the realm, the service and the scope to ask for.  What a token
 * grants is cached in shared memory, keyed by the SHA-256 of the token,
 * until it expires: the 50 requests of a pull verify one signature.
 *
 * The issuer: "registry_token_server on" makes a location answer
 * GET ?service=&scope= (Basic credentials optional) and the OAuth2 POST
 * form (password and refresh_token grants) with a token signed by
 * registry_token_signing_key.  Credentials are checked against a
 * registry_token_users htpasswd file (crypt() in a thread of the
 * registry's thread pool: bcrypt costs tens of milliseconds), or taken
 * from registry_token_user when the location's access phase
 * (auth_request, auth_basic, a client certificate) has authenticated the
 * request.  The grant is the scopes asked for that the registry_access
 * rules of the issuer's location allow the user.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_crypt.h>

#include "ngx_http_registry.h"
#include "ngx_http_registry_auth.h"
#include "ngx_http_registry_jwt.h"

#include <openssl/rand.h>


#define NGX_HTTP_REGISTRY_TOKEN_ID_LEN      16
#define NGX_HTTP_REGISTRY_TOKEN_CACHE_SIZE  (1024 * 1024)
#define NGX_HTTP_REGISTRY_TOKEN_FORM_MAX    16384
#define NGX_HTTP_REGISTRY_TOKEN_USERS_MAX   (64 * 1024 * 1024)

/* resources in one token: what keeps a token within the verifier's 8 KiB */
#define NGX_HTTP_REGISTRY_TOKEN_SCOPES_MAX  16


typedef struct {
    /* the registry's side */
    ngx_str_t                  realm;
    ngx_str_t                  service;
    ngx_str_t                  issuer;
    ngx_http_registry_jwt_keys_t  *keys;
    u_char                     id[NGX_HTTP_REGISTRY_TOKEN_ID_LEN];

    /* the issuer */
    ngx_flag_t                 server;
    ngx_http_registry_jwt_signer_t  *signer;
    time_t                     expire;
    time_t                     refresh_expire;
    ngx_str_t                  users;        /* htpasswd file */
    ngx_http_complex_value_t  *user;         /* authenticated before */
} ngx_http_registry_token_loc_conf_t;


typedef struct {
    ngx_shm_zone_t            *zone;         /* the cache */
} ngx_http_registry_token_main_conf_t;


/* the cache: verified tokens by hash, least recently used last */

typedef struct {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                queue;
} ngx_http_registry_token_shctx_t;


typedef struct {
    ngx_rbtree_node_t          node;         /* key: the hash's first bytes */
    ngx_queue_t                queue;
    u_char                     hash[32];
    time_t                     until;        /* exp + leeway */
    u_short                    sub_len;
    u_short                    n;            /* grants */
    u_char                     data[1];      /* sub, grants */
} ngx_http_registry_token_node_t;


/* the issuer's request */

typedef struct {
    ngx_str_t                  service;
    ngx_array_t                scopes;       /* ngx_str_t, as asked */
    ngx_str_t                  grant_type;
    ngx_str_t                  username;
    ngx_str_t                  password;     /* NUL-terminated */
    ngx_str_t                  refresh_token;
    ngx_str_t                  user;         /* the token's subject */
    ngx_array_t                grants;       /* ngx_http_registry_need_t */
    unsigned                   post:1;
    unsigned                   offline:1;    /* a refresh token wanted */
    unsigned                   refreshed:1;  /* by the refresh grant */
} ngx_http_registry_token_req_t;


/* what a thread checks in the htpasswd file */

typedef struct {
    u_char                    *file;
    ngx_str_t                  user;
    u_char                    *password;
} ngx_http_registry_token_login_t;


static ngx_int_t ngx_http_registry_token_bearer(ngx_http_request_t *r,
    ngx_str_t *token);
static ngx_int_t ngx_http_registry_token_verified(ngx_http_request_t *r,
    ngx_http_registry_token_loc_conf_t *tlcf, ngx_str_t *token,
    ngx_http_registry_jwt_claims_t *claims, const char **reason);
static ngx_uint_t ngx_http_registry_token_covers(
    ngx_http_registry_jwt_claims_t *claims, ngx_http_registry_needs_t *needs);
static ngx_uint_t ngx_http_registry_token_same(ngx_str_t *a, ngx_str_t *b);
static ngx_int_t ngx_http_registry_token_challenge(ngx_http_request_t *r,
    ngx_http_registry_token_loc_conf_t *tlcf,
    ngx_http_registry_needs_t *needs, const char *error);
static u_char *ngx_http_registry_token_scope(u_char *p,
    ngx_http_registry_need_t *need);
static ngx_int_t ngx_http_registry_token_hash(
    ngx_http_registry_token_loc_conf_t *tlcf, ngx_str_t *token, u_char *hash);
static ngx_http_registry_token_node_t *ngx_http_registry_token_lookup(
    ngx_http_registry_token_shctx_t *sh, u_char *hash);
static ngx_int_t ngx_http_registry_token_cached(ngx_shm_zone_t *zone,
    u_char *hash, ngx_pool_t *pool, ngx_http_registry_jwt_claims_t *claims);
static void ngx_http_registry_token_cache(ngx_shm_zone_t *zone, u_char *hash,
    ngx_http_registry_jwt_claims_t *claims, ngx_log_t *log);
static void ngx_http_registry_token_expire(ngx_http_registry_token_shctx_t *sh,
    ngx_slab_pool_t *shpool, ngx_uint_t all);
static void ngx_http_registry_token_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);

static ngx_int_t ngx_http_registry_token_handler(ngx_http_request_t *r);
static void ngx_http_registry_token_form(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_token_params(ngx_http_request_t *r,
    ngx_str_t *args);
static ngx_int_t ngx_http_registry_token_param(void *data,
    ngx_str_t *key, ngx_str_t *value);
static ngx_int_t ngx_http_registry_token_authenticate(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_token_refresh(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_token_login(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_token_htpasswd(ngx_http_registry_op_t *op,
    void *data);
static ngx_int_t ngx_http_registry_token_read(ngx_http_registry_op_t *op,
    u_char *file, ngx_str_t *text);
static ngx_int_t ngx_http_registry_token_logged_in(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_token_unauthorized(ngx_http_request_t *r,
    const char *detail);
static ngx_int_t ngx_http_registry_token_grant(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_token_want(void *data,
    ngx_str_t *name, ngx_uint_t actions);
static ngx_uint_t ngx_http_registry_token_allowed(ngx_http_request_t *r,
    ngx_http_registry_need_t *want);
static json_t *ngx_http_registry_token_access(ngx_http_request_t *r);
static ngx_int_t ngx_http_registry_token_sign(ngx_http_request_t *r,
    json_t *access, const char *typ, time_t expire, ngx_str_t *token);
static ngx_int_t ngx_http_registry_token_answer(ngx_http_request_t *r,
    ngx_str_t *token, ngx_str_t *refresh);
static ngx_int_t ngx_http_registry_token_granted_scope(ngx_http_request_t *r,
    ngx_str_t *scope);

static void *ngx_http_registry_token_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_registry_token_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_registry_token_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_registry_token_merge_server(ngx_conf_t *cf,
    ngx_http_registry_token_loc_conf_t *conf);
static char *ngx_http_registry_token_realm(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_registry_token_keys(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_registry_token_server(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_registry_token_signing_key(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_registry_token_quoted(ngx_conf_t *cf, void *post,
    void *data);
static ngx_int_t ngx_http_registry_token_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


static ngx_conf_post_handler_pt  ngx_http_registry_token_quoted_p =
    ngx_http_registry_token_quoted;


static ngx_command_t  ngx_http_registry_token_commands[] = {

    { ngx_string("registry_token_realm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_registry_token_realm,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_token_loc_conf_t, realm),
      &ngx_http_registry_token_quoted_p },

    { ngx_string("registry_token_service"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_token_loc_conf_t, service),
      &ngx_http_registry_token_quoted_p },

    { ngx_string("registry_token_issuer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_token_loc_conf_t, issuer),
      NULL },

    { ngx_string("registry_token_keys"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_registry_token_keys,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("registry_token_server"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_registry_token_server,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_token_loc_conf_t, server),
      NULL },

    { ngx_string("registry_token_signing_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_registry_token_signing_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("registry_token_expire"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_token_loc_conf_t, expire),
      NULL },

    { ngx_string("registry_token_refresh_expire"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_token_loc_conf_t, refresh_expire),
      NULL },

    { ngx_string("registry_token_users"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_token_loc_conf_t, users),
      NULL },

    { ngx_string("registry_token_user"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_registry_token_loc_conf_t, user),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_registry_token_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_registry_token_create_main_conf,
                                           /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_registry_token_create_loc_conf,
                                           /* create location configuration */
    ngx_http_registry_token_merge_loc_conf /* merge location configuration */
};


ngx_module_t  ngx_http_registry_token_module = {
    NGX_MODULE_V1,
    &ngx_http_registry_token_module_ctx,   /* module context */
    ngx_http_registry_token_commands,      /* module directives */
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


/* ---- the registry's side (ngx_http_registry_auth.h) ---- */

ngx_uint_t
ngx_http_registry_token_enabled(ngx_http_request_t *r)
{
    ngx_http_registry_token_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_token_module);

    return tlcf->realm.len != 0 && tlcf->keys != NULL;
}


ngx_int_t
ngx_http_registry_token_check(ngx_http_request_t *r,
    ngx_http_registry_needs_t *needs, ngx_str_t *user)
{
    ngx_int_t                            rc;
    ngx_str_t                            token;
    const char                          *reason;
    ngx_http_registry_jwt_claims_t       claims;
    ngx_http_registry_token_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_token_module);

    if (ngx_http_registry_token_bearer(r, &token) != NGX_OK) {
        return ngx_http_registry_token_challenge(r, tlcf, needs, NULL);
    }

    rc = ngx_http_registry_token_verified(r, tlcf, &token, &claims, &reason);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "registry token: refused: %s", reason);

        return ngx_http_registry_token_challenge(r, tlcf, needs,
                                                 "invalid_token");
    }

    if (!ngx_http_registry_token_covers(&claims, needs)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "registry token: the token of \"%V\" does not grant "
                      "what the request needs", &claims.sub);

        return ngx_http_registry_token_challenge(r, tlcf, needs,
                                                 "insufficient_scope");
    }

    *user = claims.sub;

    return NGX_OK;
}


/* "Authorization: Bearer <token>"; NGX_DECLINED: no token sent */

static ngx_int_t
ngx_http_registry_token_bearer(ngx_http_request_t *r, ngx_str_t *token)
{
    u_char     *p, *last;
    ngx_str_t  *value;

    if (r->headers_in.authorization == NULL) {
        return NGX_DECLINED;
    }

    value = &r->headers_in.authorization->value;

    if (value->len < sizeof("Bearer ") - 1
        || ngx_strncasecmp(value->data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1)
           != 0)
    {
        return NGX_DECLINED;
    }

    p = value->data + sizeof("Bearer ") - 1;
    last = value->data + value->len;

    while (p < last && *p == ' ') {
        p++;
    }

    while (last > p && last[-1] == ' ') {
        last--;
    }

    token->data = p;
    token->len = last - p;

    return NGX_OK;
}


/*
 * What the token grants: from the cache, or verified (and cached).  Every
 * verification is logged, so that the log tells how often one happens.
 */

static ngx_int_t
ngx_http_registry_token_verified(ngx_http_request_t *r,
    ngx_http_registry_token_loc_conf_t *tlcf, ngx_str_t *token,
    ngx_http_registry_jwt_claims_t *claims, const char **reason)
{
    u_char                                hash[32];
    ngx_int_t                             rc;
    ngx_http_registry_jwt_verify_t        v;
    ngx_http_registry_token_main_conf_t  *tmcf;

    if (token->len > NGX_HTTP_REGISTRY_JWT_MAX) {
        *reason = "larger than 8 KiB";
        return NGX_DECLINED;
    }

    tmcf = ngx_http_get_module_main_conf(r, ngx_http_registry_token_module);

    if (ngx_http_registry_token_hash(tlcf, token, hash) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_token_cached(tmcf->zone, hash, r->pool, claims);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    v.keys = tlcf->keys;
    v.issuer = tlcf->issuer;
    v.audience = tlcf->service;
    v.typ = "JWT";
    v.now = ngx_time();

    rc = ngx_http_registry_jwt_verify(&v, token, r->pool, claims, reason);

    if (rc != NGX_OK) {
        return rc;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "registry token: verified a token of \"%V\" signed by %V",
                  &claims->sub, &claims->key);

    ngx_http_registry_token_cache(tmcf->zone, hash, claims,
                                  r->connection->log);

    return NGX_OK;
}


/* every action of every need is in some grant of the same resource */

static ngx_uint_t
ngx_http_registry_token_covers(ngx_http_registry_jwt_claims_t *claims,
    ngx_http_registry_needs_t *needs)
{
    ngx_uint_t                 i, j, granted;
    ngx_http_registry_need_t  *need, *grant;

    grant = claims->access->elts;

    for (i = 0; i < needs->n; i++) {
        need = &needs->need[i];
        granted = 0;

        for (j = 0; j < claims->access->nelts; j++) {
            if (ngx_http_registry_token_same(&grant[j].name, &need->name)) {
                granted |= grant[j].actions;
            }
        }

        if ((granted & need->actions) != need->actions) {
            return 0;
        }
    }

    return 1;
}


/* the same resource: names equal, the registry's own (the catalog) empty */

static ngx_uint_t
ngx_http_registry_token_same(ngx_str_t *a, ngx_str_t *b)
{
    return a->len == b->len
           && (a->len == 0 || ngx_strncmp(a->data, b->data, a->len) == 0);
}


/*
 * WWW-Authenticate: Bearer realm="...",service="...",scope="..." (one
 * scope per resource, space-separated) [,error="..."]; NGX_DECLINED.
 */

static ngx_int_t
ngx_http_registry_token_challenge(ngx_http_request_t *r,
    ngx_http_registry_token_loc_conf_t *tlcf,
    ngx_http_registry_needs_t *needs, const char *error)
{
    u_char           *p;
    size_t            len;
    ngx_uint_t        i;
    ngx_str_t         value;
    ngx_table_elt_t  *h;

    len = sizeof("Bearer realm=\"\",service=\"\",scope=\"\",error=\"\"")
          + tlcf->realm.len + tlcf->service.len
          + (error ? ngx_strlen(error) : 0);

    for (i = 0; i < needs->n; i++) {
        len += sizeof(" repository::pull,push,delete")
               + needs->need[i].name.len;
    }

    value.data = ngx_pnalloc(r->pool, len);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(value.data, "Bearer realm=\"%V\",service=\"%V\"",
                    &tlcf->realm, &tlcf->service);

    for (i = 0; i < needs->n; i++) {
        if (i == 0) {
            p = ngx_cpymem(p, ",scope=\"", sizeof(",scope=\"") - 1);

        } else {
            *p++ = ' ';
        }

        p = ngx_http_registry_token_scope(p, &needs->need[i]);
    }

    if (needs->n) {
        *p++ = '"';
    }

    if (error) {
        p = ngx_sprintf(p, ",error=\"%s\"", error);
    }

    value.len = p - value.data;

    h = ngx_http_registry_add_header(r, "WWW-Authenticate", &value);
    if (h == NULL) {
        return NGX_ERROR;
    }

    r->headers_out.www_authenticate = h;

    return NGX_DECLINED;
}


static u_char *
ngx_http_registry_token_scope(u_char *p, ngx_http_registry_need_t *need)
{
    if (need->name.len == 0) {
        return ngx_cpymem(p, "registry:catalog:*", 18);
    }

    p = ngx_sprintf(p, "repository:%V:", &need->name);

    return ngx_http_registry_access_format(p,
                                need->actions & ~NGX_HTTP_REGISTRY_CATALOG);
}


/* ---- the cache ---- */

/*
 * The key is the token's hash with this configuration's random id: a
 * token verified against other keys, issuer or service (another
 * location, or before a reload) is never found.
 */

static ngx_int_t
ngx_http_registry_token_hash(ngx_http_registry_token_loc_conf_t *tlcf,
    ngx_str_t *token, u_char *hash)
{
    ngx_int_t    rc;
    EVP_MD_CTX  *md;

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return NGX_ERROR;
    }

    rc = (EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1
          && EVP_DigestUpdate(md, tlcf->id, sizeof(tlcf->id)) == 1
          && EVP_DigestUpdate(md, token->data, token->len) == 1
          && EVP_DigestFinal_ex(md, hash, NULL) == 1)
         ? NGX_OK : NGX_ERROR;

    EVP_MD_CTX_free(md);

    return rc;
}


static ngx_http_registry_token_node_t *
ngx_http_registry_token_lookup(ngx_http_registry_token_shctx_t *sh,
    u_char *hash)
{
    ngx_int_t                        rc;
    ngx_rbtree_key_t                 key;
    ngx_rbtree_node_t               *node, *sentinel;
    ngx_http_registry_token_node_t  *tn;

    ngx_memcpy(&key, hash, sizeof(ngx_rbtree_key_t));

    node = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    while (node != sentinel) {

        if (key != node->key) {
            node = (key < node->key) ? node->left : node->right;
            continue;
        }

        tn = (ngx_http_registry_token_node_t *) node;

        rc = ngx_memcmp(hash, tn->hash, 32);

        if (rc == 0) {
            return tn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* NGX_OK: found and still valid, *claims copied out; NGX_DECLINED: not */

static ngx_int_t
ngx_http_registry_token_cached(ngx_shm_zone_t *zone, u_char *hash,
    ngx_pool_t *pool, ngx_http_registry_jwt_claims_t *claims)
{
    u_char                           *p;
    ngx_int_t                         rc;
    ngx_uint_t                        i;
    ngx_slab_pool_t                  *shpool;
    ngx_http_registry_need_t         *grant;
    ngx_http_registry_token_node_t   *tn;
    ngx_http_registry_token_shctx_t  *sh;

    sh = zone->data;
    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    ngx_shmtx_lock(&shpool->mutex);

    tn = ngx_http_registry_token_lookup(sh, hash);

    if (tn == NULL || tn->until < ngx_time()) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_DECLINED;
    }

    ngx_queue_remove(&tn->queue);
    ngx_queue_insert_head(&sh->queue, &tn->queue);

    rc = NGX_ERROR;

    claims->exp = tn->until - NGX_HTTP_REGISTRY_JWT_LEEWAY;
    ngx_str_set(&claims->key, "the cache");
    claims->sub.len = tn->sub_len;
    claims->sub.data = ngx_pnalloc(pool, tn->sub_len);
    claims->access = ngx_array_create(pool, ngx_max(tn->n, 1),
                                      sizeof(ngx_http_registry_need_t));

    if (claims->sub.data == NULL || claims->access == NULL) {
        goto done;
    }

    ngx_memcpy(claims->sub.data, tn->data, tn->sub_len);
    p = tn->data + tn->sub_len;

    for (i = 0; i < tn->n; i++) {
        grant = ngx_array_push(claims->access);
        if (grant == NULL) {
            goto done;
        }

        grant->actions = p[0];
        grant->name.len = (p[1] << 8) | p[2];
        p += 3;

        grant->name.data = ngx_pnalloc(pool, grant->name.len);
        if (grant->name.data == NULL) {
            goto done;
        }

        ngx_memcpy(grant->name.data, p, grant->name.len);
        p += grant->name.len;
    }

    rc = NGX_OK;

done:

    ngx_shmtx_unlock(&shpool->mutex);

    return rc;
}


/*
 * Remembers a verified token until it expires.  A full zone first drops
 * what has expired, then the least recently used; a token that still
 * does not fit is just not cached.
 */

static void
ngx_http_registry_token_cache(ngx_shm_zone_t *zone, u_char *hash,
    ngx_http_registry_jwt_claims_t *claims, ngx_log_t *log)
{
    u_char                           *p;
    size_t                            size;
    ngx_uint_t                        i;
    ngx_slab_pool_t                  *shpool;
    ngx_http_registry_need_t         *grant;
    ngx_http_registry_token_node_t   *tn;
    ngx_http_registry_token_shctx_t  *sh;

    grant = claims->access->elts;
    size = offsetof(ngx_http_registry_token_node_t, data) + claims->sub.len;

    for (i = 0; i < claims->access->nelts; i++) {
        size += 3 + grant[i].name.len;
    }

    if (claims->sub.len > 0xffff || claims->access->nelts > 0xffff) {
        return;
    }

    sh = zone->data;
    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    ngx_shmtx_lock(&shpool->mutex);

    if (ngx_http_registry_token_lookup(sh, hash)) {
        ngx_shmtx_unlock(&shpool->mutex);
        return;
    }

    ngx_http_registry_token_expire(sh, shpool, 0);

    tn = ngx_slab_alloc_locked(shpool, size);

    if (tn == NULL) {
        ngx_http_registry_token_expire(sh, shpool, 1);
        tn = ngx_slab_alloc_locked(shpool, size);
    }

    if (tn == NULL) {
        ngx_shmtx_unlock(&shpool->mutex);
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "registry token: the cache is full");
        return;
    }

    ngx_memcpy(&tn->node.key, hash, sizeof(ngx_rbtree_key_t));
    ngx_memcpy(tn->hash, hash, 32);

    tn->until = claims->exp + NGX_HTTP_REGISTRY_JWT_LEEWAY;
    tn->sub_len = (u_short) claims->sub.len;
    tn->n = (u_short) claims->access->nelts;

    p = ngx_cpymem(tn->data, claims->sub.data, claims->sub.len);

    for (i = 0; i < claims->access->nelts; i++) {
        *p++ = (u_char) grant[i].actions;
        *p++ = (u_char) (grant[i].name.len >> 8);
        *p++ = (u_char) grant[i].name.len;
        p = ngx_cpymem(p, grant[i].name.data, grant[i].name.len);
    }

    ngx_rbtree_insert(&sh->rbtree, &tn->node);
    ngx_queue_insert_head(&sh->queue, &tn->queue);

    ngx_shmtx_unlock(&shpool->mutex);
}


/* drops expired entries from the tail, or (all) every entry to make room */

static void
ngx_http_registry_token_expire(ngx_http_registry_token_shctx_t *sh,
    ngx_slab_pool_t *shpool, ngx_uint_t all)
{
    time_t                           now;
    ngx_uint_t                       n;
    ngx_queue_t                     *q;
    ngx_http_registry_token_node_t  *tn;

    now = ngx_time();

    /* a bounded number per call: a lock holder never walks the whole zone */

    for (n = 0; n < (all ? 64 : 2) && !ngx_queue_empty(&sh->queue); n++) {
        q = ngx_queue_last(&sh->queue);
        tn = ngx_queue_data(q, ngx_http_registry_token_node_t, queue);

        if (!all && tn->until >= now) {
            return;
        }

        ngx_queue_remove(q);
        ngx_rbtree_delete(&sh->rbtree, &tn->node);
        ngx_slab_free_locked(shpool, tn);
    }
}


static void
ngx_http_registry_token_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t              **p;
    ngx_http_registry_token_node_t  *tn, *tt;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            tn = (ngx_http_registry_token_node_t *) node;
            tt = (ngx_http_registry_token_node_t *) temp;

            p = (ngx_memcmp(tn->hash, tt->hash, 32) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* ---- the issuer ---- */

static ngx_int_t
ngx_http_registry_token_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_http_registry_ctx_t        *ctx;
    ngx_http_registry_token_req_t  *tr;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    tr = ngx_pcalloc(r->pool, sizeof(ngx_http_registry_token_req_t));
    if (tr == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_array_init(&tr->scopes, r->pool, 2, sizeof(ngx_str_t)) != NGX_OK
        || ngx_array_init(&tr->grants, r->pool, 2,
                          sizeof(ngx_http_registry_need_t))
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, tr, ngx_http_registry_token_module);

    /* the registry's request context, for a task of its thread pool */

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_registry_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_registry_module);

    ctx->op.pool = r->pool;
    ctx->op.log = r->connection->log;
    ctx->operation = NGX_HTTP_REGISTRY_OPERATION_TOKEN;

    if (ngx_http_registry_task_init(r, &ctx->task) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_registry_token_params(r, &r->args);
    if (rc != NGX_OK) {
        return rc;
    }

    if (r->method != NGX_HTTP_POST) {
        return ngx_http_registry_token_authenticate(r);
    }

    tr->post = 1;

    if (r->headers_in.content_length_n > NGX_HTTP_REGISTRY_TOKEN_FORM_MAX) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_SIZE_INVALID,
                                       "the form is too large");
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_registry_token_form);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* the POST's form, all read: its parameters, then as a GET goes on */

static void
ngx_http_registry_token_form(ngx_http_request_t *r)
{
    ngx_int_t   rc;
    ngx_str_t   form;
    ngx_buf_t  *b;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        ngx_str_null(&form);

    } else if (r->request_body->temp_file
               || r->request_body->bufs->next
               || r->request_body->bufs->buf->in_file)
    {
        ngx_http_finalize_request(r,
            ngx_http_registry_error(r, NGX_HTTP_REGISTRY_SIZE_INVALID,
                                    "the form is too large"));
        return;

    } else {
        b = r->request_body->bufs->buf;
        form.data = b->pos;
        form.len = b->last - b->pos;
    }

    rc = ngx_http_registry_token_params(r, &form);

    if (rc == NGX_OK) {
        rc = ngx_http_registry_token_authenticate(r);
    }

    ngx_http_finalize_request(r, rc);
}


/* "a=b&c=d", from the query or the form; NGX_OK or an answer's code */

static ngx_int_t
ngx_http_registry_token_params(ngx_http_request_t *r, ngx_str_t *args)
{
    ngx_int_t  rc;

    rc = ngx_http_registry_form_parse(r->pool, args,
                                      ngx_http_registry_token_param, r);

    return (rc == NGX_ERROR) ? NGX_HTTP_INTERNAL_SERVER_ERROR : rc;
}


static ngx_int_t
ngx_http_registry_token_param(void *data, ngx_str_t *key, ngx_str_t *value)
{
    ngx_str_t                      *s;
    ngx_http_request_t             *r;
    ngx_http_registry_token_req_t  *tr;

    r = data;
    tr = ngx_http_get_module_ctx(r, ngx_http_registry_token_module);

#define ngx_http_registry_token_key(name)                                     \
    (key->len == sizeof(name) - 1                                             \
     && ngx_strncmp(key->data, name, sizeof(name) - 1) == 0)

    if (ngx_http_registry_token_key("scope")) {
        s = ngx_array_push(&tr->scopes);
        if (s == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *s = *value;

    } else if (ngx_http_registry_token_key("service")) {
        tr->service = *value;

    } else if (ngx_http_registry_token_key("grant_type")) {
        tr->grant_type = *value;

    } else if (ngx_http_registry_token_key("username")) {
        tr->username = *value;

    } else if (ngx_http_registry_token_key("password")) {
        tr->password = *value;

    } else if (ngx_http_registry_token_key("refresh_token")) {
        tr->refresh_token = *value;

    } else if (ngx_http_registry_token_key("offline_token")) {
        tr->offline = (value->len == 4
                       && ngx_strncasecmp(value->data, (u_char *) "true", 4)
                          == 0);

    } else if (ngx_http_registry_token_key("access_type")) {
        tr->offline = (value->len == 7
                       && ngx_strncmp(value->data, "offline", 7) == 0);
    }

#undef ngx_http_registry_token_key

    return NGX_OK;
}


/*
 * Who asks: a refresh token's subject, a user of the htpasswd file (in a
 * thread), the user the access phase authenticated, or anonymous.
 */

static ngx_int_t
ngx_http_registry_token_authenticate(ngx_http_request_t *r)
{
    ngx_http_registry_token_req_t       *tr;
    ngx_http_registry_token_loc_conf_t  *tlcf;

    tr = ngx_http_get_module_ctx(r, ngx_http_registry_token_module);
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_token_module);

    if (tr->service.len == 0) {
        tr->service = tlcf->service;
    }

    if (tr->service.len == 0
        || (tlcf->service.len
            && (tr->service.len != tlcf->service.len
                || ngx_strncmp(tr->service.data, tlcf->service.data,
                               tlcf->service.len)
                   != 0)))
    {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_DENIED,
                                       "no tokens for this service");
    }

    if (tr->post) {
        if (tr->grant_type.len == 13
            && ngx_strncmp(tr->grant_type.data, "refresh_token", 13) == 0)
        {
            return ngx_http_registry_token_refresh(r);
        }

        if (tr->grant_type.len != 8
            || ngx_strncmp(tr->grant_type.data, "password", 8) != 0)
        {
            return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_UNSUPPORTED,
                                           "grant_type is not password nor "
                                           "refresh_token");
        }

    } else if (ngx_http_auth_basic_user(r) == NGX_OK) {
        tr->username = r->headers_in.user;
        tr->password = r->headers_in.passwd;
    }

    if (tlcf->user) {
        if (ngx_http_complex_value(r, tlcf->user, &tr->user) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_registry_token_grant(r);
    }

    if (tr->username.len == 0) {
        return tr->post ? ngx_http_registry_token_unauthorized(r,
                                              "the password grant needs a "
                                              "username")
                        : ngx_http_registry_token_grant(r);
    }

    if (tlcf->users.len == 0) {
        return ngx_http_registry_token_unauthorized(r,
                                              "this issuer knows no users");
    }

    return ngx_http_registry_token_login(r);
}


/* grant_type=refresh_token: a refresh token of this issuer, for this service */

static ngx_int_t
ngx_http_registry_token_refresh(ngx_http_request_t *r)
{
    ngx_int_t                            rc;
    const char                          *reason;
    ngx_http_registry_jwt_claims_t       claims;
    ngx_http_registry_jwt_verify_t       v;
    ngx_http_registry_token_req_t       *tr;
    ngx_http_registry_token_loc_conf_t  *tlcf;

    tr = ngx_http_get_module_ctx(r, ngx_http_registry_token_module);
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_token_module);

    v.keys = &tlcf->signer->own;
    v.issuer = tlcf->issuer;
    v.audience = tr->service;
    v.typ = NGX_HTTP_REGISTRY_JWT_REFRESH;
    v.now = ngx_time();

    rc = ngx_http_registry_jwt_verify(&v, &tr->refresh_token, r->pool, &claims,
                                      &reason);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED || claims.sub.len == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "registry token: refresh token refused: %s",
                      rc == NGX_DECLINED ? reason : "no subject");

        return ngx_http_registry_token_unauthorized(r,
                                                "invalid refresh token");
    }

    tr->user = claims.sub;
    tr->refreshed = 1;

    return ngx_http_registry_token_grant(r);
}


/* the htpasswd check, as a task of the registry's thread pool */

static ngx_int_t
ngx_http_registry_token_login(ngx_http_request_t *r)
{
    ngx_http_registry_token_req_t       *tr;
    ngx_http_registry_token_login_t     *login;
    ngx_http_registry_token_loc_conf_t  *tlcf;

    tr = ngx_http_get_module_ctx(r, ngx_http_registry_token_module);
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_token_module);

    login = ngx_palloc(r->pool, sizeof(ngx_http_registry_token_login_t));
    if (login == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    login->file = tlcf->users.data;
    login->user = tr->username;
    login->password = tr->password.data ? tr->password.data : (u_char *) "";

    return ngx_http_registry_task_start(r, ngx_http_registry_token_htpasswd,
                                        login,
                                        ngx_http_registry_token_logged_in);
}


/*
 * In a thread: NGX_OK when the file has the user with this password
 * (every format of auth_basic: ngx_crypt()), NGX_DECLINED when not,
 * NGX_ERROR when the file cannot be read.
 */

static ngx_int_t
ngx_http_registry_token_htpasswd(ngx_http_registry_op_t *op, void *data)
{
    ngx_http_registry_token_login_t *login = data;

    u_char     *p, *line, *colon, *end, *hash, *encrypted;
    ngx_int_t   rc;
    ngx_str_t   text;

    if (ngx_http_registry_token_read(op, login->file, &text) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = NGX_DECLINED;

    for (line = text.data; line < text.data + text.len; line = end + 1) {
        /* the '\n' after the file's end stops every line */
        end = memchr(line, '\n', text.data + text.len + 1 - line);

        colon = ngx_strlchr(line, end, ':');

        if (*line == '#' || colon == NULL
            || (size_t) (colon - line) != login->user.len
            || ngx_strncmp(line, login->user.data, login->user.len) != 0)
        {
            continue;
        }

        hash = colon + 1;

        for (p = hash; p < end && *p != ':' && *p != '\r'; p++) {
            /* void */
        }

        *p = '\0';

        if (ngx_crypt(op->pool, login->password, hash, &encrypted) != NGX_OK) {
            rc = NGX_ERROR;

        } else if (ngx_strcmp(encrypted, hash) == 0) {
            rc = NGX_OK;
        }

        break;
    }

    ngx_explicit_memzero(text.data, text.len);

    return rc;
}


/* the whole file, with a "\n" after its end for the parser */

static ngx_int_t
ngx_http_registry_token_read(ngx_http_registry_op_t *op, u_char *file,
    ngx_str_t *text)
{
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    fd = ngx_open_file(file, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, op->log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", file);
        return NGX_ERROR;
    }

    n = NGX_ERROR;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > NGX_HTTP_REGISTRY_TOKEN_USERS_MAX)
    {
        ngx_log_error(NGX_LOG_CRIT, op->log, ngx_errno,
                      "\"%s\" cannot be read, or is larger than 64 MiB", file);
        goto done;
    }

    text->len = (size_t) ngx_file_size(&fi);
    text->data = ngx_pnalloc(op->pool, text->len + 2);
    if (text->data == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, text->data, text->len);

    if (n != (ssize_t) text->len) {
        ngx_log_error(NGX_LOG_CRIT, op->log, ngx_errno,
                      ngx_read_fd_n " \"%s\" failed", file);
        n = NGX_ERROR;
        goto done;
    }

    text->data[text->len] = '\n';
    text->data[text->len + 1] = '\0';

done:

    (void) ngx_close_file(fd);

    return n == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


static ngx_int_t
ngx_http_registry_token_logged_in(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_registry_token_req_t  *tr;

    tr = ngx_http_get_module_ctx(r, ngx_http_registry_token_module);

    if (rc == NGX_ERROR) {
        return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_INTERNAL,
                                       "the user file cannot be read");
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "registry token: wrong password, or no user \"%V\"",
                      &tr->username);

        return ngx_http_registry_token_unauthorized(r,
                                                "wrong username or password");
    }

    tr->user = tr->username;

    return ngx_http_registry_token_grant(r);
}


static ngx_int_t
ngx_http_registry_token_unauthorized(ngx_http_request_t *r,
    const char *detail)
{
    ngx_table_elt_t  *h;

    static ngx_str_t  challenge = ngx_string("Basic realm=\"registry token\"");

    h = ngx_http_registry_add_header(r, "WWW-Authenticate", &challenge);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.www_authenticate = h;

    return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_UNAUTHORIZED, detail);
}


/*
 * The token: what was asked that the rules allow, never an error (the
 * spec wants a smaller grant, not a refusal); a refresh token too when
 * one was asked for by a known user.
 */

static ngx_int_t
ngx_http_registry_token_grant(ngx_http_request_t *r)
{
    json_t                              *access;
    ngx_int_t                            rc;
    ngx_str_t                            token, refresh, *scope;
    ngx_uint_t                           i;
    ngx_http_registry_ctx_t             *ctx;
    ngx_http_registry_token_req_t       *tr;
    ngx_http_registry_token_loc_conf_t  *tlcf;

    tr = ngx_http_get_module_ctx(r, ngx_http_registry_token_module);
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_token_module);

    scope = tr->scopes.elts;

    for (i = 0; i < tr->scopes.nelts; i++) {
        rc = ngx_http_registry_scope_parse(&scope[i],
                                           ngx_http_registry_token_want, r);

        if (rc == NGX_DECLINED) {
            return ngx_http_registry_error(r, NGX_HTTP_REGISTRY_DENIED,
                                           "too many scopes");
        }

        if (rc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    access = ngx_http_registry_token_access(r);
    if (access == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_registry_token_sign(r, access, "JWT", tlcf->expire, &token)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_null(&refresh);

    if (tr->refreshed) {
        refresh = tr->refresh_token;

    } else if (tr->offline && tr->user.len) {
        if (ngx_http_registry_token_sign(r, NULL,
                                         NGX_HTTP_REGISTRY_JWT_REFRESH,
                                         tlcf->refresh_expire, &refresh)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "registry token: issued a token to \"%V\" for \"%V\"",
                  &tr->user, &tr->service);

    /* $registry_user: whom the token is for */
    ctx = ngx_http_get_module_ctx(r, ngx_http_registry_module);
    ctx->user = tr->user;

    return ngx_http_registry_token_answer(r, &token, &refresh);
}


/* adds what is allowed of a resource's actions to the grants */

static ngx_int_t
ngx_http_registry_token_want(void *data, ngx_str_t *name, ngx_uint_t actions)
{
    ngx_uint_t                      i;
    ngx_http_request_t             *r;
    ngx_http_registry_need_t       *grant, want;
    ngx_http_registry_token_req_t  *tr;

    r = data;
    tr = ngx_http_get_module_ctx(r, ngx_http_registry_token_module);

    want.name = *name;
    want.actions = actions;

    actions = ngx_http_registry_token_allowed(r, &want);

    grant = tr->grants.elts;

    for (i = 0; i < tr->grants.nelts; i++) {
        if (ngx_http_registry_token_same(&grant[i].name, name)) {
            grant[i].actions |= actions;
            return NGX_OK;
        }
    }

    if (tr->grants.nelts == NGX_HTTP_REGISTRY_TOKEN_SCOPES_MAX) {
        return NGX_DECLINED;
    }

    grant = ngx_array_push(&tr->grants);
    if (grant == NULL) {
        return NGX_ERROR;
    }

    grant->name = *name;
    grant->actions = actions;

    return NGX_OK;
}


/*
 * What the rules of this location allow the user.  A location without
 * registry_access rules gives a known user all it asks for and anonymous
 * nothing: an issuer that hands out tokens to anyone for anything would
 * protect nothing.
 */

static ngx_uint_t
ngx_http_registry_token_allowed(ngx_http_request_t *r,
    ngx_http_registry_need_t *want)
{
    ngx_http_registry_token_req_t  *tr;

    tr = ngx_http_get_module_ctx(r, ngx_http_registry_token_module);

    if (!ngx_http_registry_access_limited(r)) {
        return tr->user.len ? want->actions : 0;
    }

    return ngx_http_registry_access_allowed(r, &tr->user,
                                            want->name.len ? &want->name
                                                           : NULL,
                                            want->actions);
}


/* the "access" claim: [{"type","name","actions"}], granted actions only */

static json_t *
ngx_http_registry_token_access(ngx_http_request_t *r)
{
    json_t                         *access, *actions, *entry;
    ngx_uint_t                      i, j;
    ngx_http_registry_need_t       *grant;
    ngx_http_registry_token_req_t  *tr;

    static const char  *names[] = { "pull", "push", "delete" };

    tr = ngx_http_get_module_ctx(r, ngx_http_registry_token_module);

    access = json_array();
    if (access == NULL) {
        return NULL;
    }

    grant = tr->grants.elts;

    for (i = 0; i < tr->grants.nelts; i++) {
        if (grant[i].actions == 0) {
            continue;
        }

        if (grant[i].name.len == 0) {
            entry = json_pack("{s:s,s:s,s:[s]}", "type", "registry",
                              "name", "catalog", "actions", "*");

        } else {
            actions = json_array();

            for (j = 0; actions && j < 3; j++) {
                if ((grant[i].actions & ((ngx_uint_t) 1 << j))
                    && json_array_append_new(actions, json_string(names[j]))
                       != 0)
                {
                    json_decref(actions);
                    actions = NULL;
                }
            }

            entry = actions ? json_pack("{s:s,s:s%,s:o}", "type", "repository",
                                        "name", (char *) grant[i].name.data,
                                        grant[i].name.len, "actions", actions)
                            : NULL;
        }

        if (entry == NULL || json_array_append_new(access, entry) != 0) {
            json_decref(access);
            return NULL;
        }
    }

    return access;
}


/*
 * A token of this issuer for the request's user and service; takes
 * access over.  Without access: a refresh token.
 */

static ngx_int_t
ngx_http_registry_token_sign(ngx_http_request_t *r, json_t *access,
    const char *typ, time_t expire, ngx_str_t *token)
{
    char                                *sub;
    time_t                               now;
    json_t                              *claims;
    ngx_int_t                            rc;
    ngx_str_t                            jti;
    ngx_http_registry_token_req_t       *tr;
    ngx_http_registry_token_loc_conf_t  *tlcf;

    tr = ngx_http_get_module_ctx(r, ngx_http_registry_token_module);
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_token_module);

    if (ngx_http_registry_jwt_random(r->pool, 16, &jti) != NGX_OK) {
        json_decref(access);
        return NGX_ERROR;
    }

    now = ngx_time();

    /* jansson refuses a NULL string, even an empty one */
    sub = tr->user.len ? (char *) tr->user.data : "";

    claims = json_pack("{s:s%,s:s%,s:s%,s:I,s:I,s:I,s:s%}",
                       "iss", (char *) tlcf->issuer.data, tlcf->issuer.len,
                       "sub", sub, tr->user.len,
                       "aud", (char *) tr->service.data, tr->service.len,
                       "exp", (json_int_t) (now + expire),
                       "nbf", (json_int_t) now,
                       "iat", (json_int_t) now,
                       "jti", (char *) jti.data, jti.len);

    if (claims == NULL
        || (access && json_object_set_new(claims, "access", access) != 0))
    {
        json_decref(claims);
        return NGX_ERROR;
    }

    rc = ngx_http_registry_jwt_sign(tlcf->signer, claims, typ, r->pool, token);

    json_decref(claims);

    return rc;
}


/*
 * {"token", "access_token", "expires_in", "issued_at"} for the GET (both
 * token names, as the spec asks for older clients), with "scope" for the
 * OAuth2 POST, and "refresh_token" when there is one.
 */

static ngx_int_t
ngx_http_registry_token_answer(ngx_http_request_t *r, ngx_str_t *token,
    ngx_str_t *refresh)
{
    char                                *text;
    u_char                               issued[sizeof("1970-01-01T00:00:00Z")];
    json_t                              *body;
    ngx_tm_t                             tm;
    ngx_buf_t                           *b;
    ngx_str_t                            scope, nocache;
    ngx_http_registry_token_req_t       *tr;
    ngx_http_registry_token_loc_conf_t  *tlcf;

    tr = ngx_http_get_module_ctx(r, ngx_http_registry_token_module);
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_token_module);

    ngx_gmtime(ngx_time(), &tm);

    ngx_sprintf(issued, "%4d-%02d-%02dT%02d:%02d:%02dZ%Z",
                tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);

    body = json_pack("{s:s%,s:s%,s:I,s:s}",
                     "token", (char *) token->data, token->len,
                     "access_token", (char *) token->data, token->len,
                     "expires_in", (json_int_t) tlcf->expire,
                     "issued_at", (char *) issued);

    if (body && refresh->len
        && json_object_set_new(body, "refresh_token",
                               json_stringn((char *) refresh->data,
                                            refresh->len))
           != 0)
    {
        json_decref(body);
        body = NULL;
    }

    if (body && tr->post
        && (ngx_http_registry_token_granted_scope(r, &scope) != NGX_OK
            || json_object_set_new(body, "scope",
                                   json_stringn((char *) scope.data,
                                                scope.len))
               != 0))
    {
        json_decref(body);
        body = NULL;
    }

    text = body ? json_dumps(body, JSON_COMPACT) : NULL;

    json_decref(body);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b = ngx_create_temp_buf(r->pool, ngx_strlen(text) + 1);

    if (b) {
        b->last = ngx_cpymem(b->last, text, ngx_strlen(text));
        *b->last++ = '\n';
    }

    free(text);

    ngx_str_set(&nocache, "no-store");

    if (b == NULL
        || ngx_http_registry_add_header(r, "Cache-Control", &nocache) == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_registry_send_body(r, NGX_HTTP_OK, "application/json", b);
}


/* "repository:a:pull,push registry:catalog:*": what the token grants */

static ngx_int_t
ngx_http_registry_token_granted_scope(ngx_http_request_t *r, ngx_str_t *scope)
{
    u_char                         *p;
    size_t                          len;
    ngx_uint_t                      i;
    ngx_http_registry_need_t       *grant;
    ngx_http_registry_token_req_t  *tr;

    tr = ngx_http_get_module_ctx(r, ngx_http_registry_token_module);

    grant = tr->grants.elts;
    len = 0;

    for (i = 0; i < tr->grants.nelts; i++) {
        len += sizeof(" repository::pull,push,delete") + grant[i].name.len;
    }

    scope->data = ngx_pnalloc(r->pool, len);
    if (scope->data == NULL) {
        return NGX_ERROR;
    }

    p = scope->data;

    for (i = 0; i < tr->grants.nelts; i++) {
        if (grant[i].actions == 0) {
            continue;
        }

        if (p != scope->data) {
            *p++ = ' ';
        }

        p = ngx_http_registry_token_scope(p, &grant[i]);
    }

    scope->len = p - scope->data;

    return NGX_OK;
}


/* ---- configuration ---- */

static void *
ngx_http_registry_token_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_registry_token_main_conf_t));
}


static void *
ngx_http_registry_token_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_registry_token_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_registry_token_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->realm = { 0, NULL };
     *     conf->service = { 0, NULL };
     *     conf->issuer = { 0, NULL };
     *     conf->users = { 0, NULL };
     *     conf->id = { 0 };
     */

    conf->keys = NGX_CONF_UNSET_PTR;
    conf->server = NGX_CONF_UNSET;
    conf->signer = NGX_CONF_UNSET_PTR;
    conf->expire = NGX_CONF_UNSET;
    conf->refresh_expire = NGX_CONF_UNSET;
    conf->user = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_registry_token_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_registry_token_loc_conf_t *prev = parent;
    ngx_http_registry_token_loc_conf_t *conf = child;

    ngx_http_registry_loc_conf_t  *rlcf;

    ngx_conf_merge_str_value(conf->realm, prev->realm, "");
    ngx_conf_merge_str_value(conf->service, prev->service, "");
    ngx_conf_merge_str_value(conf->issuer, prev->issuer, "");
    ngx_conf_merge_ptr_value(conf->keys, prev->keys, NULL);
    ngx_conf_merge_value(conf->server, prev->server, 0);
    ngx_conf_merge_ptr_value(conf->signer, prev->signer, NULL);
    ngx_conf_merge_sec_value(conf->expire, prev->expire, 300);
    ngx_conf_merge_sec_value(conf->refresh_expire, prev->refresh_expire,
                             30 * 86400);
    ngx_conf_merge_str_value(conf->users, prev->users, "");
    ngx_conf_merge_ptr_value(conf->user, prev->user, NULL);

    /*
     * Only the registry checks tokens: a realm inherited by other
     * locations (the issuer's, one that says 404) needs nothing else.
     */

    rlcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_registry_module);

    if (conf->realm.len && rlcf->enable) {
        if (conf->service.len == 0 || conf->issuer.len == 0
            || conf->keys == NULL)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"registry_token_realm\" needs "
                               "\"registry_token_service\", "
                               "\"registry_token_issuer\" and "
                               "\"registry_token_keys\"");
            return NGX_CONF_ERROR;
        }

        if (RAND_bytes(conf->id, sizeof(conf->id)) != 1) {
            return NGX_CONF_ERROR;
        }
    }

    if (conf->server) {
        return ngx_http_registry_token_merge_server(cf, conf);
    }

    return NGX_CONF_OK;
}


/*
 * The issuer's location.  The htpasswd check runs as a registry task, in
 * registry_thread_pool: the registry module (merged before this one, the
 * first of the .so) leaves it unset where "registry" is off, so it is
 * resolved here as the registry resolves it.
 */

static char *
ngx_http_registry_token_merge_server(ngx_conf_t *cf,
    ngx_http_registry_token_loc_conf_t *conf)
{
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_registry_module);

    if (rlcf->enable) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"registry_token_server\" and \"registry\" "
                           "cannot serve one location");
        return NGX_CONF_ERROR;
    }

    if (conf->signer == NULL || conf->issuer.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"registry_token_server\" needs "
                           "\"registry_token_signing_key\" and "
                           "\"registry_token_issuer\"");
        return NGX_CONF_ERROR;
    }

    if (conf->users.len && conf->user) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"registry_token_users\" and "
                           "\"registry_token_user\" exclude each other");
        return NGX_CONF_ERROR;
    }

    if (conf->expire < 60) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"registry_token_expire\" must be at least 60s, "
                           "as clients expect");
        return NGX_CONF_ERROR;
    }

    if (conf->users.len
        && ngx_conf_full_name(cf->cycle, &conf->users, 1) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (rlcf->thread_pool == NGX_CONF_UNSET_PTR) {
#if (NGX_THREADS)
        rlcf->thread_pool = ngx_thread_pool_add(cf, NULL);
        if (rlcf->thread_pool == NULL) {
            return NGX_CONF_ERROR;
        }
#else
        rlcf->thread_pool = NULL;
#endif
    }

    return NGX_CONF_OK;
}


/* the realm, and the cache every location with a realm shares */

static char *
ngx_http_registry_token_realm(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                                 *rv;
    ngx_str_t                             name;
    ngx_http_registry_token_main_conf_t  *tmcf;

    rv = ngx_conf_set_str_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    tmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_registry_token_module);

    if (tmcf->zone) {
        return NGX_CONF_OK;
    }

    ngx_str_set(&name, "ngx_http_registry_token");

    tmcf->zone = ngx_shared_memory_add(cf, &name,
                                       NGX_HTTP_REGISTRY_TOKEN_CACHE_SIZE,
                                       &ngx_http_registry_token_module);
    if (tmcf->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    tmcf->zone->init = ngx_http_registry_token_init_zone;

    return NGX_CONF_OK;
}


/* registry_token_keys <file>...: read now, so nginx -t reports a bad one */

static char *
ngx_http_registry_token_keys(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_registry_token_loc_conf_t *tlcf = conf;

    ngx_str_t   *value, file;
    ngx_uint_t   i;
    const char  *err;

    if (tlcf->keys != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    tlcf->keys = ngx_palloc(cf->pool, sizeof(ngx_http_registry_jwt_keys_t));
    if (tlcf->keys == NULL
        || ngx_http_registry_jwt_keys_init(tlcf->keys, cf->pool) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        file = value[i];

        if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        err = ngx_http_registry_jwt_keys_load(tlcf->keys, &file, cf->pool);

        if (err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "registry_token_keys \"%V\" %s", &file, err);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* "registry_token_server on" makes the issuer this location's handler */

static char *
ngx_http_registry_token_server(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_registry_token_loc_conf_t *tlcf = conf;

    char                      *rv;
    ngx_http_core_loc_conf_t  *clcf;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (tlcf->server) {
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
        clcf->handler = ngx_http_registry_token_handler;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_registry_token_signing_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_registry_token_loc_conf_t *tlcf = conf;

    ngx_str_t   *value, file;
    const char  *err;

    if (tlcf->signer != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;
    file = value[1];

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    tlcf->signer = ngx_pcalloc(cf->pool,
                               sizeof(ngx_http_registry_jwt_signer_t));
    if (tlcf->signer == NULL) {
        return NGX_CONF_ERROR;
    }

    err = ngx_http_registry_jwt_signer_load(tlcf->signer, &file, cf->pool);

    if (err) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "registry_token_signing_key \"%V\" %s", &file, err);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the realm and the service go inside quotes of the challenge */

static char *
ngx_http_registry_token_quoted(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *value = data;

    if (value->len == 0
        || ngx_strlchr(value->data, value->data + value->len, '"')
        || ngx_strlchr(value->data, value->data + value->len, '\\'))
    {
        return "must be non-empty, without quotes or backslashes";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_registry_token_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t                  *shpool;
    ngx_http_registry_token_shctx_t  *sh;

    if (data) {
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    sh = ngx_slab_alloc(shpool, sizeof(ngx_http_registry_token_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    ngx_rbtree_init(&sh->rbtree, &sh->sentinel,
                    ngx_http_registry_token_rbtree_insert);
    ngx_queue_init(&sh->queue);

    shm_zone->data = sh;

    return NGX_OK;
}
