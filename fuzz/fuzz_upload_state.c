
/*
 * An upload session's saved state (digest.c), read back from a file that
 * may be corrupt, truncated or another build's: a record accepted is one
 * whose hash state OpenSSL can go on from, so more bytes are hashed into
 * it and finished, and encoding it again gives a record accepted the
 * same.  FUZZ_WRITE_SEEDS=dir writes valid records of both algorithms at
 * offsets around the block sizes into dir and exits.
 */


#include "fuzz.h"


static void
write_seeds(const char *dir)
{
    char                              path[4096];
    FILE                             *f;
    u_char                            buf[1000];
    ngx_uint_t                        alg, i;
    ngx_http_registry_upload_state_t  state;
    ngx_http_registry_state_record_t  record;

    static size_t  offsets[] = { 0, 1, 63, 64, 65, 127, 128, 129, 1000 };

    ngx_memset(buf, 'x', sizeof(buf));

    for (alg = NGX_HTTP_REGISTRY_SHA256; alg <= NGX_HTTP_REGISTRY_SHA512;
         alg++)
    {
        for (i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
            ngx_memzero(&state, sizeof(state));
            state.alg = alg;
            state.offset = offsets[i];
            ngx_http_registry_hash_init(&state.hash, alg);
            ngx_http_registry_hash_update(&state.hash, buf, offsets[i]);

            ngx_http_registry_state_encode(&state, &record);

            snprintf(path, sizeof(path), "%s/%s-%zu", dir,
                     alg == NGX_HTTP_REGISTRY_SHA256 ? "sha256" : "sha512",
                     offsets[i]);
            f = fopen(path, "w");
            fuzz_check(f != NULL);
            fwrite(&record, 1, sizeof(record), f);
            fclose(f);
        }
    }

    exit(0);
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char  *dir;

    dir = getenv("FUZZ_WRITE_SEEDS");
    if (dir) {
        write_seeds(dir);
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_int_t                         rc;
    ngx_str_t                         in;
    ngx_pool_t                       *pool;
    ngx_http_registry_digest_t        digest;
    ngx_http_registry_upload_state_t  state, again;
    ngx_http_registry_state_record_t  record;

    in = fuzz_str(data, size);

    rc = ngx_http_registry_state_decode(in.data, in.len, &state);

    fuzz_check(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc == NGX_OK) {
        fuzz_check(size == sizeof(ngx_http_registry_state_record_t));
        fuzz_check(state.alg == NGX_HTTP_REGISTRY_SHA256
                   || state.alg == NGX_HTTP_REGISTRY_SHA512);

        ngx_http_registry_state_encode(&state, &record);
        fuzz_check(ngx_http_registry_state_decode((u_char *) &record,
                                                  sizeof(record), &again)
                   == NGX_OK);
        fuzz_check(ngx_memcmp(&again, &state, sizeof(state)) == 0);

        pool = fuzz_pool();

        ngx_http_registry_hash_update(&state.hash, in.data, in.len);
        fuzz_check(ngx_http_registry_hash_valid(&state.hash,
                                                state.offset + in.len)
                   == NGX_OK);
        fuzz_check(ngx_http_registry_hash_final(&state.hash, pool, &digest)
                   == NGX_OK);
        fuzz_check(ngx_http_registry_parse_digest(&digest.text, &digest)
                   == NGX_OK);

        ngx_destroy_pool(pool);
    }

    free(in.data);

    return 0;
}
