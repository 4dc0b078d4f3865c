
/*
 * The pull-through cache's answers from an upstream (mirror_parse.c): a
 * WWW-Authenticate challenge, and a token endpoint's JSON answer.  The
 * input is both.
 *
 * A challenge accepted is Basic, or Bearer with a realm; its values lie
 * inside the header and hold no quote, backslash or control character
 * (a realm becomes a URL fetched), so written back as
 * quoted values they parse to the same.  A token accepted is non-empty,
 * without CR, LF or NUL (it becomes a header), with a lifetime in
 * (0, 1 year); and the input itself, as the "token" of an answer, is
 * accepted exactly when it has those properties, and comes back unchanged.
 */


#include "fuzz.h"

#include "ngx_http_registry_mirror.h"

#include <jansson.h>


static void
check_value(ngx_str_t *in, ngx_str_t *v)
{
    size_t  i;

    if (v->len == 0) {
        return;
    }

    fuzz_check(v->data >= in->data && v->data + v->len <= in->data + in->len);
    fuzz_check(memchr(v->data, '"', v->len) == NULL);
    fuzz_check(memchr(v->data, '\\', v->len) == NULL);

    for (i = 0; i < v->len; i++) {
        fuzz_check(v->data[i] >= 0x20 && v->data[i] != 0x7f);
    }
}


static void
check_same(ngx_str_t *a, ngx_str_t *b)
{
    fuzz_check(a->len == b->len
               && (a->len == 0 || ngx_memcmp(a->data, b->data, a->len) == 0));
}


/* a Bearer challenge written back from what was parsed parses the same */

static void
check_rewritten(ngx_pool_t *pool, ngx_http_registry_challenge_t *ch)
{
    u_char                         *p, *buf;
    size_t                          len;
    ngx_http_registry_challenge_t   again;

    len = sizeof("Bearer realm=\"\",service=\"\",scope=\"\"") - 1
          + ch->realm.len + ch->service.len + ch->scope.len;

    buf = ngx_pnalloc(pool, len);
    fuzz_check(buf != NULL);

    /* (absent values have no data: memcpy() may not be given NULL) */
    if (ch->service.len == 0) {
        ngx_str_set(&ch->service, "");
    }

    if (ch->scope.len == 0) {
        ngx_str_set(&ch->scope, "");
    }

    p = ngx_sprintf(buf, "Bearer realm=\"%V\",service=\"%V\",scope=\"%V\"",
                    &ch->realm, &ch->service, &ch->scope);

    fuzz_check(ngx_http_registry_parse_challenge(buf, p - buf, &again)
               == NGX_OK);
    fuzz_check(again.scheme == NGX_HTTP_REGISTRY_CHALLENGE_BEARER);
    check_same(&again.realm, &ch->realm);
    check_same(&again.service, &ch->service);
    check_same(&again.scope, &ch->scope);
}


static void
fuzz_challenge(ngx_pool_t *pool, ngx_str_t *in)
{
    ngx_int_t                       rc;
    ngx_http_registry_challenge_t   ch;

    rc = ngx_http_registry_parse_challenge(in->data, in->len, &ch);

    fuzz_check(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc != NGX_OK) {
        return;
    }

    fuzz_check(ch.scheme == NGX_HTTP_REGISTRY_CHALLENGE_BASIC
               || ch.scheme == NGX_HTTP_REGISTRY_CHALLENGE_BEARER);

    if (ch.scheme == NGX_HTTP_REGISTRY_CHALLENGE_BASIC) {
        return;
    }

    fuzz_check(ch.realm.len > 0);
    check_value(in, &ch.realm);
    check_value(in, &ch.service);
    check_value(in, &ch.scope);

    check_rewritten(pool, &ch);
}


static ngx_uint_t
header_safe(ngx_str_t *s)
{
    return s->len > 0
           && memchr(s->data, '\r', s->len) == NULL
           && memchr(s->data, '\n', s->len) == NULL
           && memchr(s->data, '\0', s->len) == NULL;
}


static void
fuzz_token_answer(ngx_pool_t *pool, ngx_str_t *in)
{
    ngx_int_t  rc;
    ngx_str_t  token;
    time_t     expires_in;

    rc = ngx_http_registry_parse_token(pool, in->data, in->len, &token,
                                       &expires_in);

    fuzz_check(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc == NGX_OK) {
        fuzz_check(header_safe(&token));
        fuzz_check(expires_in > 0 && expires_in < 86400 * 365);
    }
}


/* the input as the token of an answer jansson writes (if it is UTF-8) */

static void
fuzz_token_wrapped(ngx_pool_t *pool, ngx_str_t *in)
{
    char       *text;
    time_t      expires_in;
    json_t     *answer;
    ngx_int_t   rc;
    ngx_str_t   token;

    answer = json_pack("{s:s%,s:i}", "token", (char *) in->data, in->len,
                       "expires_in", 300);
    if (answer == NULL) {
        return;
    }

    text = json_dumps(answer, 0);
    json_decref(answer);
    fuzz_check(text != NULL);

    rc = ngx_http_registry_parse_token(pool, (u_char *) text, strlen(text),
                                       &token, &expires_in);
    free(text);

    fuzz_check(rc == (header_safe(in) ? NGX_OK : NGX_DECLINED));

    if (rc == NGX_OK) {
        check_same(&token, in);
        fuzz_check(expires_in == 300);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_str_t    in;
    ngx_pool_t  *pool;

    in = fuzz_str(data, size);
    pool = fuzz_pool();

    fuzz_challenge(pool, &in);
    fuzz_token_answer(pool, &in);
    fuzz_token_wrapped(pool, &in);

    ngx_destroy_pool(pool);
    free(in.data);

    return 0;
}
