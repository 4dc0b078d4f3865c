
/*
 * Range of a blob GET (parse.c): whether nginx's range filter would find
 * no range it can serve.  The input's first 8 bytes are the file's size
 * (below 2^48), the next one max_ranges; the rest is the value after
 * "bytes=", NUL-terminated as nginx keeps header values.  A suffix range
 * "-N" with N > 0 of a non-empty file, or "0-", is always satisfiable.
 */


#include "fuzz.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    off_t       fsize;
    uint64_t    n;
    ngx_str_t   in;
    ngx_uint_t  ranges, none;

    if (size < 9) {
        return 0;
    }

    ngx_memcpy(&n, data, 8);
    fsize = (off_t) (n & (((uint64_t) 1 << 48) - 1));
    ranges = data[8] % 8;

    in = fuzz_cstr(data + 9, size - 9);

    none = ngx_http_registry_range_none(in.data, fsize, ranges);

    fuzz_check(none == 0 || none == 1);

    if (in.len == 2 && ngx_strncmp(in.data, "0-", 2) == 0 && fsize > 0) {
        fuzz_check(none == 0);
    }

    if (in.len == 2 && in.data[0] == '-' && in.data[1] > '0'
        && in.data[1] <= '9' && fsize > 0)
    {
        fuzz_check(none == 0);
    }

    free(in.data);

    return 0;
}
