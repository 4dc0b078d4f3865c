
/*
 * ngx_http_registry_module: digests, parsed and computed incrementally.
 */


#include "ngx_http_registry_store.h"


typedef struct {
    ngx_str_t    name;
    size_t       hex_len;
} ngx_http_registry_alg_t;


/* indexed by NGX_HTTP_REGISTRY_SHA256 and NGX_HTTP_REGISTRY_SHA512 */

static ngx_http_registry_alg_t  ngx_http_registry_algs[] = {
    { ngx_string("sha256"), SHA256_DIGEST_LENGTH * 2 },
    { ngx_string("sha512"), SHA512_DIGEST_LENGTH * 2 },
};


/* the first bytes of an upload's saved state */

static u_char  ngx_http_registry_state_magic[8] = "NGXREG1\n";


/* 0-9 and a-f: every pull checks a digest's 64 or 128 of them */

static u_char  ngx_http_registry_lower_hex[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
    ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1
};


ngx_int_t
ngx_http_registry_alg_by_name(ngx_str_t *name)
{
    ngx_uint_t  i;

    for (i = 0; i < sizeof(ngx_http_registry_algs)
                    / sizeof(ngx_http_registry_alg_t); i++)
    {
        if (name->len == ngx_http_registry_algs[i].name.len
            && ngx_strncmp(name->data, ngx_http_registry_algs[i].name.data,
                           name->len) == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


ngx_str_t *
ngx_http_registry_alg_name(ngx_uint_t alg)
{
    return &ngx_http_registry_algs[alg].name;
}


/*
 * Accepts "<alg>:<hex>" with a supported algorithm and exactly its length
 * of lowercase hex, the only form that may become part of a path.
 */

ngx_int_t
ngx_http_registry_parse_digest(ngx_str_t *text,
    ngx_http_registry_digest_t *digest)
{
    u_char     *colon, *p, *last;
    ngx_str_t   name;
    ngx_int_t   alg;

    colon = ngx_strlchr(text->data, text->data + text->len, ':');
    if (colon == NULL) {
        return NGX_ERROR;
    }

    name.data = text->data;
    name.len = colon - text->data;

    alg = ngx_http_registry_alg_by_name(&name);
    if (alg == NGX_ERROR) {
        return NGX_ERROR;
    }

    p = colon + 1;
    last = text->data + text->len;

    if ((size_t) (last - p) != ngx_http_registry_algs[alg].hex_len) {
        return NGX_ERROR;
    }

    for ( /* void */ ; p < last; p++) {
        if (!ngx_http_registry_lower_hex[*p]) {
            return NGX_ERROR;
        }
    }

    digest->alg = alg;
    digest->text = *text;
    digest->hex.data = colon + 1;
    digest->hex.len = last - (colon + 1);

    return NGX_OK;
}


ngx_int_t
ngx_http_registry_digest_equal(ngx_http_registry_digest_t *a,
    ngx_http_registry_digest_t *b)
{
    return a->text.len == b->text.len
           && ngx_strncmp(a->text.data, b->text.data, a->text.len) == 0;
}


void
ngx_http_registry_hash_init(ngx_http_registry_hash_t *hash, ngx_uint_t alg)
{
    hash->alg = alg;

    if (alg == NGX_HTTP_REGISTRY_SHA512) {
        SHA512_Init(&hash->u.sha512);

    } else {
        SHA256_Init(&hash->u.sha256);
    }
}


void
ngx_http_registry_hash_update(ngx_http_registry_hash_t *hash, u_char *data,
    size_t len)
{
    if (hash->alg == NGX_HTTP_REGISTRY_SHA512) {
        SHA512_Update(&hash->u.sha512, data, len);

    } else {
        SHA256_Update(&hash->u.sha256, data, len);
    }
}


/*
 * Finishes the hash into a digest whose text is allocated in the pool,
 * NUL-terminated too: a commit's DIGEST_INVALID has it as its detail
 */

ngx_int_t
ngx_http_registry_hash_final(ngx_http_registry_hash_t *hash, ngx_pool_t *pool,
    ngx_http_registry_digest_t *digest)
{
    u_char      *p;
    size_t       len;
    ngx_str_t   *name;
    u_char       md[SHA512_DIGEST_LENGTH];

    if (hash->alg == NGX_HTTP_REGISTRY_SHA512) {
        SHA512_Final(md, &hash->u.sha512);
        len = SHA512_DIGEST_LENGTH;

    } else {
        SHA256_Final(md, &hash->u.sha256);
        len = SHA256_DIGEST_LENGTH;
    }

    name = &ngx_http_registry_algs[hash->alg].name;

    p = ngx_pnalloc(pool, name->len + 1 + 2 * len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    digest->alg = hash->alg;
    digest->text.data = p;

    p = ngx_cpymem(p, name->data, name->len);
    *p++ = ':';
    digest->hex.data = p;
    p = ngx_hex_dump(p, md, len);

    digest->hex.len = p - digest->hex.data;
    digest->text.len = p - digest->text.data;
    *p = '\0';

    return NGX_OK;
}


/*
 * A hash state read back from disk must be one that hashing exactly
 * "length" bytes leaves: OpenSSL trusts its byte counts (num indexes its
 * block buffer), so a state corrupted on disk must never reach an update.
 */

ngx_int_t
ngx_http_registry_hash_valid(ngx_http_registry_hash_t *hash, uint64_t length)
{
    if (length > ((uint64_t) 1 << 60)) {
        return NGX_ERROR;
    }

    if (hash->alg == NGX_HTTP_REGISTRY_SHA256) {
        return (hash->u.sha256.md_len == SHA256_DIGEST_LENGTH
                && hash->u.sha256.num == length % SHA256_CBLOCK
                && hash->u.sha256.Nl == (SHA_LONG) (length << 3)
                && hash->u.sha256.Nh == (SHA_LONG) (length >> 29))
               ? NGX_OK : NGX_ERROR;
    }

    if (hash->alg == NGX_HTTP_REGISTRY_SHA512) {
        return (hash->u.sha512.md_len == SHA512_DIGEST_LENGTH
                && hash->u.sha512.num == length % SHA512_CBLOCK
                && hash->u.sha512.Nl == (SHA_LONG64) (length << 3)
                && hash->u.sha512.Nh == (SHA_LONG64) (length >> 61))
               ? NGX_OK : NGX_ERROR;
    }

    return NGX_ERROR;
}


/* a digest parsed from bytes that are not ours to keep: copied first */

ngx_int_t
ngx_http_registry_digest_copy(ngx_pool_t *pool, u_char *data, size_t len,
    ngx_http_registry_digest_t *digest)
{
    ngx_str_t  text;

    if (len > NGX_HTTP_REGISTRY_DIGEST_MAX_LEN) {
        return NGX_DECLINED;
    }

    text.len = len;
    text.data = ngx_pnalloc(pool, len + 1);
    if (text.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(text.data, data, len);
    text.data[len] = '\0';

    return (ngx_http_registry_parse_digest(&text, digest) == NGX_OK)
           ? NGX_OK : NGX_DECLINED;
}


/* "<alg>:<hex>" from its parts (a directory name); NGX_DECLINED: invalid */

ngx_int_t
ngx_http_registry_digest_of(ngx_pool_t *pool, ngx_uint_t alg, ngx_str_t *hex,
    ngx_http_registry_digest_t *digest)
{
    u_char     *p;
    ngx_str_t   text;

    if (hex->len > ngx_http_registry_algs[alg].hex_len) {
        return NGX_DECLINED;
    }

    text.data = ngx_pnalloc(pool, NGX_HTTP_REGISTRY_DIGEST_MAX_LEN);
    if (text.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(text.data, ngx_http_registry_algs[alg].name.data,
                   ngx_http_registry_algs[alg].name.len);
    *p++ = ':';
    p = ngx_cpymem(p, hex->data, hex->len);

    text.len = p - text.data;

    return (ngx_http_registry_parse_digest(&text, digest) == NGX_OK)
           ? NGX_OK : NGX_DECLINED;
}


/*
 * A copy of a digest parsed before (a worker's cache keeps its text):
 * rebuilt without checking it again.  Its algorithm is the one its name
 * starts with.
 */

ngx_int_t
ngx_http_registry_digest_known(ngx_pool_t *pool, u_char *data, size_t len,
    ngx_http_registry_digest_t *digest)
{
    ngx_uint_t  alg;

    digest->text.data = ngx_pnalloc(pool, len);
    if (digest->text.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(digest->text.data, data, len);
    digest->text.len = len;

    alg = (data[3] == '5') ? NGX_HTTP_REGISTRY_SHA512
                           : NGX_HTTP_REGISTRY_SHA256;

    digest->alg = alg;
    digest->hex.data = digest->text.data + ngx_http_registry_algs[alg].name.len
                       + 1;
    digest->hex.len = ngx_http_registry_algs[alg].hex_len;

    return NGX_OK;
}


/* an upload's state as saved to its session's state file */

void
ngx_http_registry_state_encode(ngx_http_registry_upload_state_t *state,
    ngx_http_registry_state_record_t *record)
{
    ngx_memzero(record, sizeof(ngx_http_registry_state_record_t));
    ngx_memcpy(record->magic, ngx_http_registry_state_magic,
               sizeof(record->magic));
    record->state = *state;
}


/*
 * A state file's bytes: NGX_OK, *state is one to resume from; NGX_DECLINED:
 * another format, or a hash state that is not the one of its offset (a
 * corrupted file must never reach the hash code).
 */

ngx_int_t
ngx_http_registry_state_decode(u_char *data, size_t len,
    ngx_http_registry_upload_state_t *state)
{
    ngx_http_registry_state_record_t  record;

    if (len != sizeof(record)) {
        return NGX_DECLINED;
    }

    ngx_memcpy(&record, data, sizeof(record));

    if (ngx_memcmp(record.magic, ngx_http_registry_state_magic,
                   sizeof(record.magic))
        != 0
        || record.state.alg > NGX_HTTP_REGISTRY_SHA512
        || record.state.hash.alg != record.state.alg
        || ngx_http_registry_hash_valid(&record.state.hash,
                                        record.state.offset)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    *state = record.state;

    return NGX_OK;
}
