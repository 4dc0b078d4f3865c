
/*
 * Content-Range of an upload chunk (parse.c): accepted exactly when it is
 * "[bytes=|bytes ]<digits>-<digits>" with both numbers within off_t, as
 * checked here by a parser of our own; the end is never the largest off_t
 * (end + 1 is a length).
 */


#include "fuzz.h"


/* digits [p, last) as an off_t; -1 when empty, not digits or too large */

static off_t
ref_number(u_char *p, u_char *last)
{
    off_t  n;

    if (p == last) {
        return -1;
    }

    for (n = 0; p < last; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }

        if (n > (NGX_MAX_OFF_T_VALUE - (*p - '0')) / 10) {
            return -1;
        }

        n = n * 10 + (*p - '0');
    }

    return n;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    off_t       start, end, ref_start, ref_end;
    u_char     *p, *last, *dash;
    ngx_int_t   rc;
    ngx_str_t   in;

    in = fuzz_str(data, size);

    rc = ngx_http_registry_content_range(&in, &start, &end);

    p = in.data;
    last = in.data + in.len;

    if (in.len > 6 && ngx_strncasecmp(p, (u_char *) "bytes", 5) == 0
        && (p[5] == '=' || p[5] == ' '))
    {
        p += 6;
    }

    dash = memchr(p, '-', last - p);

    ref_start = dash ? ref_number(p, dash) : -1;
    ref_end = dash ? ref_number(dash + 1, last) : -1;

    if (ref_start < 0 || ref_end < 0) {
        fuzz_check(rc == NGX_ERROR);

    } else if (ref_end == NGX_MAX_OFF_T_VALUE) {
        fuzz_check(rc == NGX_DECLINED);

    } else {
        fuzz_check(rc == NGX_OK);
        fuzz_check(start == ref_start && end == ref_end);
    }

    free(in.data);

    return 0;
}
