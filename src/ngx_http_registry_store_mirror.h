
/*
 * ngx_http_registry_module: the pull-through cache's store operations
 * (store_mirror.c, store_evict.c, store_flight.c), which mirror.c calls
 * from its thread tasks.  Store layer: no HTTP type.
 */


#ifndef _NGX_HTTP_REGISTRY_STORE_MIRROR_H_INCLUDED_
#define _NGX_HTTP_REGISTRY_STORE_MIRROR_H_INCLUDED_


#include "ngx_http_registry_store.h"


/* a fetch's followers read its temporary file (store_mirror.c) */
ngx_int_t ngx_http_registry_store_blob_follow(ngx_http_registry_op_t *op,
    ngx_str_t *id, ngx_http_registry_file_t *file);
ngx_int_t ngx_http_registry_store_blob_grown(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *file, off_t *size);
ngx_int_t ngx_http_registry_store_blob_followed(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_file_t *file,
    ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_store_blob_read(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *file, u_char *buf, size_t len, off_t offset);
void ngx_http_registry_store_blob_unfollow(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *file);

ngx_int_t ngx_http_registry_store_tag_checked(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_str_t *tag, time_t *when);
ngx_int_t ngx_http_registry_store_tag_recheck(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_str_t *tag);
ngx_int_t ngx_http_registry_store_manifest_pulled(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_store_blob_pulled(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_store_blob_adopt(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_digest_t *digest);
ngx_int_t ngx_http_registry_store_evict(ngx_http_registry_op_t *op,
    ngx_array_t *prefixes, off_t max, size_t manifest_max, off_t *freed);
ngx_int_t ngx_http_registry_store_blob_incoming(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *temp);
ngx_int_t ngx_http_registry_store_blob_append(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *temp, u_char *data, size_t len, off_t offset);
ngx_int_t ngx_http_registry_store_blob_publish(ngx_http_registry_op_t *op,
    ngx_str_t *name, ngx_http_registry_file_t *temp,
    ngx_http_registry_digest_t *digest);
void ngx_http_registry_store_blob_discard(ngx_http_registry_op_t *op,
    ngx_http_registry_file_t *temp);


/* a blob's fetch across the hosts sharing the store (store_flight.c) */

#define NGX_HTTP_REGISTRY_FLIGHT_REFRESH  2     /* seconds */
#define NGX_HTTP_REGISTRY_FLIGHT_STALE    10    /* seconds */
#define NGX_HTTP_REGISTRY_FLIGHT_ID_LEN   16

/* who fetches the blob, as its lease file says */

typedef struct {
    ngx_str_t                  host;
    ngx_pid_t                  pid;
    ngx_str_t                  id;          /* the fetch's, random */
    ngx_str_t                  temp;        /* its temporary file's id */
    off_t                      length;      /* the blob's; -1: not known */
} ngx_http_registry_flight_lease_t;


ngx_int_t ngx_http_registry_store_flight_take(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest,
    ngx_http_registry_flight_lease_t *ours,
    ngx_http_registry_flight_lease_t *holder);
ngx_int_t ngx_http_registry_store_flight_look(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest, ngx_str_t *host,
    ngx_http_registry_flight_lease_t *holder);
ngx_int_t ngx_http_registry_store_flight_refresh(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest,
    ngx_http_registry_flight_lease_t *ours, ngx_uint_t rewrite);
ngx_int_t ngx_http_registry_store_flight_drop(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest, ngx_str_t *id);


#endif /* _NGX_HTTP_REGISTRY_STORE_MIRROR_H_INCLUDED_ */
