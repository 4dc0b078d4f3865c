/*
 * ngx_http_registry_module: the pull-through cache's own types, shared by
 * mirror.c (directives, routing, manifests, variables), mirror_fetch.c
 * (requests to the upstream, the filters) and mirror_blob.c (streamed
 * blobs, one fetch per blob, and its lease across hosts).
 */


#ifndef _NGX_HTTP_REGISTRY_MIRROR_CACHE_H_INCLUDED_
#define _NGX_HTTP_REGISTRY_MIRROR_CACHE_H_INCLUDED_


#include "ngx_http_registry_mirror.h"


#define NGX_HTTP_REGISTRY_TOKEN_LEN      8192


/* $registry_cache */
typedef enum {
    NGX_HTTP_REGISTRY_CACHE_NONE = 0,
    NGX_HTTP_REGISTRY_CACHE_HIT,
    NGX_HTTP_REGISTRY_CACHE_MISS,
    NGX_HTTP_REGISTRY_CACHE_REVALIDATED,
    NGX_HTTP_REGISTRY_CACHE_STALE,
    NGX_HTTP_REGISTRY_CACHE_UPSTREAM_ERROR
} ngx_http_registry_cache_e;


/* a token of this worker's, for one upstream repository */
typedef struct {
    time_t                     expires;
    u_char                     key_len;
    u_char                     key[NGX_HTTP_REGISTRY_NAME_MAX];
    size_t                     len;
    u_char                     value[NGX_HTTP_REGISTRY_TOKEN_LEN];
} ngx_http_registry_token_slot_t;


typedef struct {
    ngx_str_t                  name;
    ngx_str_t                  url;       /* scheme://host[:port] */
    ngx_str_t                  host;      /* host[:port] of url */
    ngx_str_t                  prefix;    /* "docker.io/" */
    ngx_str_t                  basic;     /* "Basic ...", or empty */
    ngx_http_registry_token_slot_t  *tokens;   /* this worker's, lazily */
    unsigned                   library:1;
    unsigned                   fallback:1;  /* default=on */
} ngx_http_registry_upstream_t;


typedef struct {
    ngx_array_t               *upstreams;  /* ngx_http_registry_upstream_t */
    ngx_array_t               *locals;     /* registry_local_prefix */
    ngx_str_t                  location;   /* registry_upstream_location */
    time_t                     tag_ttl;
    off_t                      max_size;   /* registry_cache_max_size */
    ngx_shm_zone_t            *flights;    /* ngx_http_registry_flights_t */
} ngx_http_registry_mirror_conf_t;


/*
 * The blobs being fetched, in shared memory: one fetch per digest and
 * store however many clients ask.  A slot is held by the worker whose pid
 * it names (0: free); one whose worker died is free again.  Once the
 * leader has the upstream's headers, the slot names its temporary file
 * and the blob's length, and the other clients (followers) read that file
 * as it grows.  seq tells a follower whether the slot still holds the
 * fetch it follows, or has been given to another one since.
 *
 * Across the hosts sharing the store, the slot's leader also takes the
 * blob's lease file (store_flight.c).  One that finds another host's
 * lease fetches nothing: it follows that fetch, keeping its slot so that
 * this host's followers follow it.  It looks at the lease and the blob
 * every NGX_HTTP_REGISTRY_LEASE_POLL ms (in a thread), reads the other
 * leader's temporary file once the lease names it, names it in its slot
 * for this host's followers, and ends as they do: the last byte once the
 * store's blob is the file it read, and once what it read hashed to the
 * digest (all followers of another host's file hash it: see
 * ngx_http_registry_follow_hash()).  A lease gone without a blob, or
 * stale: it asks for the blob anew, and fetches it if it has not
 * answered yet, taking the lease over.
 */

#define NGX_HTTP_REGISTRY_FLIGHTS      256
#define NGX_HTTP_REGISTRY_FLIGHT_POLL  50       /* ms, for the headers */
#define NGX_HTTP_REGISTRY_FOLLOW_TICK  5        /* ms, for more bytes */
#define NGX_HTTP_REGISTRY_FOLLOW_READ  65536    /* bytes hashed at a time */
#define NGX_HTTP_REGISTRY_FOLLOW_HASH_MAX  (1024 * 1024)   /* a task */
#define NGX_HTTP_REGISTRY_SPOOL_SIZE   (256 * 1024)    /* a leader's copy */
#define NGX_HTTP_REGISTRY_SPOOL_BUFS   4               /* copies at most */

typedef struct {
    uint64_t                   store;
    ngx_uint_t                 seq;
    ngx_pid_t                  pid;
    off_t                      length;      /* the upstream's, or -1 */
    u_char                     len;
    u_char                     temp_len;    /* 0: no temporary file yet */
    u_char                     remote;      /* another host writes it */
    u_char                     digest[NGX_HTTP_REGISTRY_DIGEST_MAX_LEN];
    u_char                     temp[NGX_HTTP_REGISTRY_TEMP_ID_LEN];
} ngx_http_registry_flight_t;


/*
 * The cached manifests and blobs pulled lately, for eviction's least
 * recently pulled first: worker 0 takes them every
 * NGX_HTTP_REGISTRY_EVICT_TICK and retimes their revision and layer links
 * in a thread.  Blobs have a list of their own, so that a fleet pulling
 * layers never crowds the manifests out; a pull that finds its list full
 * is not recorded (what it pulled looks older than it is), nor one that
 * repeats the list's last.
 */

#define NGX_HTTP_REGISTRY_PULLS        512
#define NGX_HTTP_REGISTRY_EVICT_TICK   5000     /* ms */

#define NGX_HTTP_REGISTRY_PULL_MANIFEST  0
#define NGX_HTTP_REGISTRY_PULL_BLOB      1

typedef struct {
    uint64_t                   store;
    u_char                     kind;        /* NGX_HTTP_REGISTRY_PULL_* */
    u_char                     name_len;
    u_char                     digest_len;
    u_char                     name[NGX_HTTP_REGISTRY_NAME_MAX];
    u_char                     digest[NGX_HTTP_REGISTRY_DIGEST_MAX_LEN];
} ngx_http_registry_pull_t;


typedef struct {
    ngx_uint_t                 n;
    ngx_http_registry_pull_t   pull[NGX_HTTP_REGISTRY_PULLS];
} ngx_http_registry_pulls_t;


typedef struct {
    ngx_slab_pool_t           *shpool;
    ngx_uint_t                 seq;         /* of the last slot taken */
    ngx_http_registry_flight_t flight[NGX_HTTP_REGISTRY_FLIGHTS];
    ngx_http_registry_pulls_t  pulls[2];    /* by kind */
} ngx_http_registry_flights_t;


/*
 * The lease file a fetch's leader holds across hosts (store_flight.c):
 * refreshed by a timer while the fetch runs, rewritten once its
 * temporary file is known, dropped when it is over.  It has a pool of its
 * own and outlives the request if a task on it still runs then.
 */

#define NGX_HTTP_REGISTRY_LEASE_POLL   100      /* ms, another host's */

typedef struct {
    ngx_http_registry_detached_t  task;
    ngx_pool_t                *pool;
    ngx_thread_pool_t         *thread_pool;
    ngx_http_registry_digest_t digest;
    ngx_http_registry_flight_lease_t  lease;   /* what the task writes */
    ngx_event_t                refresh;
    off_t                      length;      /* the next record's */
    size_t                     temp_len;
    u_char                     temp[NGX_HTTP_REGISTRY_TEMP_ID_LEN];
    unsigned                   busy:1;      /* a task runs */
    unsigned                   dirty:1;     /* temp and length to write */
    unsigned                   rewrite:1;   /* the task writes them */
    unsigned                   lost:1;      /* taken over: not refreshed */
    unsigned                   released:1;  /* the fetch is over */
} ngx_http_registry_keeper_t;


typedef struct ngx_http_registry_mirror_ctx_s  ngx_http_registry_mirror_ctx_t;

typedef ngx_int_t (*ngx_http_registry_step_pt)(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);


/* a streamed fetch's 200 (r: the main request), and its body's buffers */

typedef struct ngx_http_registry_fetch_s  ngx_http_registry_fetch_t;

typedef ngx_int_t (*ngx_http_registry_stream_start_pt)(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_http_registry_fetch_t *f);
typedef ngx_int_t (*ngx_http_registry_stream_body_pt)(ngx_http_request_t *sr,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_chain_t *in,
    ngx_chain_t **out);


/* one request to the upstream: a subrequest's context */

struct ngx_http_registry_fetch_s {
    ngx_str_t                  url;
    ngx_str_t                  authorization;
    ngx_str_t                  accept;
    size_t                     max;         /* bytes captured at most */
    unsigned                   head:1;
    unsigned                   stream:1;    /* a blob: 200 goes on */

    /* the answer */
    ngx_int_t                  rc;
    ngx_uint_t                 status;
    off_t                      length;
    ngx_buf_t                 *body;
    ngx_str_t                  challenge;
    ngx_str_t                  digest;
    ngx_str_t                  location;
    ngx_str_t                  type;
    unsigned                   done:1;
    unsigned                   too_big:1;
    unsigned                   streaming:1;
    unsigned                   verified:1;
};


struct ngx_http_registry_mirror_ctx_s {
    ngx_http_registry_upstream_t  *upstream;
    ngx_str_t                  remote;      /* the name upstream */
    ngx_http_registry_cache_e  cache;
    ngx_uint_t                 upstream_requests;

    ngx_http_registry_fetch_t  fetch;
    ngx_http_registry_step_pt  step;        /* for the fetch's answer */
    ngx_http_registry_step_pt  step_saved;  /* while a token is fetched */
    ngx_http_registry_stream_start_pt  stream_start;   /* for stream */
    ngx_http_registry_stream_body_pt   stream_body;
    ngx_http_registry_ctx_t   *owner;       /* the registry's context */
    ngx_http_registry_mirror_conf_t  *conf;
    ngx_str_t                  path;        /* "manifests/<ref>" ... */
    ngx_str_t                  url;         /* of the fetch to retry */
    unsigned                   head:1;
    unsigned                   stream:1;
    unsigned                   authorized:1;   /* the dance was danced */
    ngx_uint_t                 redirects;

    /* manifests */
    ngx_http_registry_digest_t local;       /* the cached digest of a tag */
    ngx_http_registry_digest_t expected;    /* text.len 0: any */
    ngx_http_registry_manifest_t  manifest;
    ngx_str_t                  type;
    unsigned                   cached:1;    /* a cached copy may be served */

    /* blobs */
    ngx_http_registry_file_t   temp;
    ngx_http_registry_hash_t   hash;
    off_t                      received;    /* hashed and written */
    ngx_buf_t                 *held;        /* its last bytes */
    ngx_http_registry_op_t     op;          /* the temp file's cleanup */

    /*
     * The leader with a thread pool: the upstream's buffers are copied,
     * and a thread writes and hashes the copies (see blob_spool()).
     */
    ngx_http_request_t        *fetcher;     /* the subrequest */
    ngx_chain_t               *pending;     /* the upstream's, not passed */
    size_t                     pending_off; /* bytes of the first copied */
    ngx_chain_t               *spool;       /* copies for the next task */
    ngx_chain_t               *spool_tail;
    ngx_chain_t               *spool_free;
    ngx_chain_t               *writing;     /* copies a task writes now */
    ngx_uint_t                 spool_bufs;  /* copies allocated */
    off_t                      copied;
    ngx_http_registry_detached_t  writer;
    ngx_log_t                  writer_log;
    ngx_event_t                writer_guard;
    unsigned                   spooled:1;
    unsigned                   broken:1;    /* not written, or hashed wrong */
    ngx_http_registry_flight_t  *flight;    /* the slot led, or NULL */
    ngx_event_t                wait;        /* a follower's poll */

    /* across hosts: the lease this fetch holds, or the one it follows */
    ngx_http_registry_keeper_t  *keeper;
    ngx_http_registry_flight_lease_t  lease;
    ngx_http_registry_flight_lease_t  holder;
    u_char                     holder_temp[NGX_HTTP_REGISTRY_TEMP_ID_LEN];
    ngx_msec_t                 look_at;     /* the lease's next look */

    /* a follower: the fetch it follows, and the leader's file it reads */
    ngx_http_registry_flight_t  *followed;
    ngx_uint_t                 followed_seq;
    ngx_http_registry_file_t   follow;
    ngx_file_t                *follow_file; /* the same, for in_file bufs */
    off_t                      follow_length;
    off_t                      sent;
    ngx_http_registry_hash_t   follow_hash; /* of what it sent, if verify */
    off_t                      hashed;      /* the bytes in follow_hash */
    off_t                      hash_end;    /* what the task hashes to */
    u_char                    *scratch;     /* what it read to hash */
    unsigned                   following:1; /* its headers are sent */
    unsigned                   no_follow:1; /* waits for the publish */
    unsigned                   verify:1;    /* another host's file */
    unsigned                   hashing:1;   /* a task hashes it */
};


/* mirror_fetch.c */

ngx_int_t ngx_http_registry_fetch_filters(ngx_conf_t *cf);
ngx_int_t ngx_http_registry_fetch(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_uint_t head,
    ngx_uint_t stream, ngx_str_t *path, ngx_http_registry_step_pt step);
ngx_int_t ngx_http_registry_upstream_failed(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx, ngx_http_registry_err_e not_found);


/* mirror_blob.c */

ngx_int_t ngx_http_registry_mirror_blob(ngx_http_request_t *r,
    ngx_http_registry_mirror_ctx_t *mctx);
void ngx_http_registry_mirror_pulled(
    ngx_http_registry_mirror_ctx_t *mctx, ngx_http_registry_digest_t *digest,
    ngx_uint_t kind);


extern ngx_module_t  ngx_http_registry_mirror_module;


#endif /* _NGX_HTTP_REGISTRY_MIRROR_CACHE_H_INCLUDED_ */
