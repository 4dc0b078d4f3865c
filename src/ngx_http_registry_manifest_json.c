
/*
 * ngx_http_registry_module: manifests as JSON.
 *
 * Pure functions of a manifest's bytes: is it a valid OCI image manifest
 * or index, Docker manifest or manifest list; what does it reference;
 * what does the referrers API list for it; which media type is it served
 * with.  No request and no store: the manifest handler's thread task and
 * the store call them.
 */


#include "ngx_http_registry_store.h"

#include <jansson.h>


#define NGX_HTTP_REGISTRY_IMAGE  1
#define NGX_HTTP_REGISTRY_INDEX  2

#define NGX_HTTP_REGISTRY_OCI_MANIFEST                                       \
    "application/vnd.oci.image.manifest.v1+json"
#define NGX_HTTP_REGISTRY_OCI_INDEX                                          \
    "application/vnd.oci.image.index.v1+json"
#define NGX_HTTP_REGISTRY_SCHEMA1                                            \
    "application/vnd.docker.distribution.manifest.v1+"


typedef struct {
    const char  *name;
    ngx_uint_t   kind;     /* 0: refused */
} ngx_http_registry_media_type_t;


static ngx_http_registry_media_type_t  ngx_http_registry_media_types[] = {
    { NGX_HTTP_REGISTRY_OCI_MANIFEST, NGX_HTTP_REGISTRY_IMAGE },
    { "application/vnd.docker.distribution.manifest.v2+json",
      NGX_HTTP_REGISTRY_IMAGE },
    { NGX_HTTP_REGISTRY_OCI_INDEX, NGX_HTTP_REGISTRY_INDEX },
    { "application/vnd.docker.distribution.manifest.list.v2+json",
      NGX_HTTP_REGISTRY_INDEX },
    { "application/vnd.docker.distribution.manifest.v1+json", 0 },
    { "application/vnd.docker.distribution.manifest.v1+prettyjws", 0 },
    { NULL, 0 }
};


/* layers that by definition are not pushed (Windows base images) */

static const char  *ngx_http_registry_nondistributable[] = {
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    NULL
};



static const char *ngx_http_registry_manifest_validate(json_t *root,
    ngx_str_t *ct, ngx_uint_t *kind);
static const char *ngx_http_registry_manifest_kind(json_t *root,
    ngx_str_t *ct, ngx_uint_t *kind);
static const char *ngx_http_registry_manifest_ambiguous(json_t *root,
    ngx_uint_t kind);
static const char *ngx_http_registry_descriptor_invalid(json_t *desc);
static ngx_int_t ngx_http_registry_annotations_invalid(json_t *annotations);
static ngx_uint_t ngx_http_registry_nondistributable_layer(json_t *desc);
static ngx_uint_t ngx_http_registry_nondistributable_type(u_char *type,
    size_t len);
static ngx_int_t ngx_http_registry_manifest_references(ngx_pool_t *pool,
    json_t *root, ngx_uint_t kind, ngx_http_registry_manifest_t *m);
static ngx_int_t ngx_http_registry_reference(ngx_pool_t *pool, json_t *desc,
    ngx_uint_t manifest, ngx_array_t *refs);
static ngx_int_t ngx_http_registry_referrer_describe(ngx_pool_t *pool,
    json_t *root, size_t size, ngx_http_registry_digest_t *digest,
    ngx_http_registry_digest_t *subject, ngx_str_t *descriptor);
static ngx_int_t ngx_http_registry_scan_media_type(ngx_str_t *body,
    ngx_str_t *type);
static u_char *ngx_http_registry_json_value_end(u_char *p, u_char *last);
static u_char *ngx_http_registry_json_string_end(u_char *p, u_char *last);
static u_char *ngx_http_registry_json_space(u_char *p, u_char *last);


/*
 * Checks a pushed manifest (m->bytes, m->digest) against the spec, with
 * the Content-Type it came with ("" for none or application/json), and
 * fills in m->references and, for a manifest with a subject, m->subject
 * and m->descriptor.  NGX_DECLINED: invalid, *invalid says why.
 */

ngx_int_t
ngx_http_registry_manifest_parse(ngx_pool_t *pool,
    ngx_http_registry_manifest_t *m, ngx_str_t *ct, const char **invalid)
{
    json_t      *root;
    ngx_int_t    rc;
    ngx_uint_t   kind;

    root = json_loadb((char *) m->bytes.data, m->bytes.len, 0, NULL);
    if (root == NULL) {
        *invalid = "manifest is not valid JSON";
        return NGX_DECLINED;
    }

    *invalid = ngx_http_registry_manifest_validate(root, ct, &kind);

    if (*invalid) {
        rc = NGX_DECLINED;
        goto done;
    }

    rc = ngx_http_registry_manifest_references(pool, root, kind, m);
    if (rc != NGX_OK) {
        goto done;
    }

    rc = ngx_http_registry_referrer_describe(pool, root, m->bytes.len,
                                             &m->digest, &m->subject,
                                             &m->descriptor);
    if (rc == NGX_DECLINED) {
        ngx_str_null(&m->descriptor);
        rc = NGX_OK;
    }

done:

    json_decref(root);

    return rc;
}


/*
 * What the referrers API lists for a stored manifest, and its subject.
 * NGX_DECLINED: it has no (valid) subject, or is not a JSON object.
 */

ngx_int_t
ngx_http_registry_manifest_referrer(ngx_pool_t *pool, ngx_str_t *bytes,
    ngx_http_registry_digest_t *digest, ngx_http_registry_digest_t *subject,
    ngx_str_t *descriptor)
{
    json_t     *root;
    ngx_int_t   rc;

    root = json_loadb((char *) bytes->data, bytes->len, 0, NULL);
    if (root == NULL) {
        return NGX_DECLINED;
    }

    rc = ngx_http_registry_referrer_describe(pool, root, bytes->len, digest,
                                             subject, descriptor);
    json_decref(root);

    return rc;
}


/* a Docker schema1 type: served read-only, with a warning */

ngx_int_t
ngx_http_registry_manifest_deprecated(ngx_str_t *type)
{
    return type->len >= sizeof(NGX_HTTP_REGISTRY_SCHEMA1) - 1
           && ngx_strncmp(type->data, NGX_HTTP_REGISTRY_SCHEMA1,
                          sizeof(NGX_HTTP_REGISTRY_SCHEMA1) - 1) == 0;
}


/*
 * Everything an image references (config and layers, but non-distributable
 * layers, which are never pushed), or an index's children.  A subject is
 * not a reference: it need not exist (OCI 1.1).
 */

static ngx_int_t
ngx_http_registry_manifest_references(ngx_pool_t *pool, json_t *root,
    ngx_uint_t kind, ngx_http_registry_manifest_t *m)
{
    size_t   i;
    json_t  *desc;

    m->references = ngx_array_create(pool, 8, sizeof(ngx_http_registry_ref_t));
    if (m->references == NULL) {
        return NGX_ERROR;
    }

    if (kind == NGX_HTTP_REGISTRY_INDEX) {
        json_array_foreach(json_object_get(root, "manifests"), i, desc) {
            if (ngx_http_registry_reference(pool, desc, 1, m->references)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        return NGX_OK;
    }

    if (ngx_http_registry_reference(pool, json_object_get(root, "config"), 0,
                                    m->references)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    json_array_foreach(json_object_get(root, "layers"), i, desc) {
        if (!ngx_http_registry_nondistributable_layer(desc)
            && ngx_http_registry_reference(pool, desc, 0, m->references)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* a validated descriptor's digest */

static ngx_int_t
ngx_http_registry_reference(ngx_pool_t *pool, json_t *desc,
    ngx_uint_t manifest, ngx_array_t *refs)
{
    json_t                   *digest;
    ngx_http_registry_ref_t  *ref;

    ref = ngx_array_push(refs);
    if (ref == NULL) {
        return NGX_ERROR;
    }

    digest = json_object_get(desc, "digest");
    ref->manifest = manifest;

    return ngx_http_registry_digest_copy(pool,
                                     (u_char *) json_string_value(digest),
                                     json_string_length(digest), &ref->digest);
}


/* NULL, or why the manifest is invalid */

static const char *
ngx_http_registry_manifest_validate(json_t *root, ngx_str_t *ct,
    ngx_uint_t *kind)
{
    size_t       i;
    json_t      *sv, *list, *desc;
    const char  *invalid, *key;

    if (!json_is_object(root)) {
        return "manifest is not a JSON object";
    }

    sv = json_object_get(root, "schemaVersion");

    if (json_is_integer(sv) && json_integer_value(sv) == 1) {
        return "Docker schema1 manifests are deprecated and not accepted: "
               "push schema2 or OCI";
    }

    if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
        return "schemaVersion must be 2";
    }

    invalid = ngx_http_registry_manifest_kind(root, ct, kind);
    if (invalid) {
        return invalid;
    }

    invalid = ngx_http_registry_manifest_ambiguous(root, *kind);
    if (invalid) {
        return invalid;
    }

    if (ngx_http_registry_annotations_invalid(
                                    json_object_get(root, "annotations")))
    {
        return "annotations must map strings to strings";
    }

    if (*kind == NGX_HTTP_REGISTRY_IMAGE) {
        invalid = ngx_http_registry_descriptor_invalid(
                                            json_object_get(root, "config"));
        if (invalid) {
            return "config is not a valid descriptor";
        }

        key = "layers";

    } else {
        key = "manifests";
    }

    list = json_object_get(root, key);

    if (!json_is_array(list)) {
        return (*kind == NGX_HTTP_REGISTRY_IMAGE) ? "layers must be an array"
                                                 : "manifests must be an "
                                                   "array";
    }

    json_array_foreach(list, i, desc) {
        if (ngx_http_registry_descriptor_invalid(desc)) {
            return (*kind == NGX_HTTP_REGISTRY_IMAGE)
                   ? "a layer is not a valid descriptor"
                   : "a child manifest is not a valid descriptor";
        }
    }

    desc = json_object_get(root, "subject");

    if (desc && ngx_http_registry_descriptor_invalid(desc)) {
        return "subject is not a valid descriptor";
    }

    return NULL;
}


/*
 * The kind of manifest: its mediaType field, else the Content-Type it was
 * pushed with ("" for none), which must agree with the field when both say
 * something specific.
 */

static const char *
ngx_http_registry_manifest_kind(json_t *root, ngx_str_t *ct,
    ngx_uint_t *kind)
{
    json_t      *mt;
    ngx_uint_t   i;
    const char  *type;

    mt = json_object_get(root, "mediaType");

    if (mt && !json_is_string(mt)) {
        return "mediaType must be a string";
    }

    /* media types are case-insensitive in headers (RFC 6838) */

    if (mt && ct->len
        && (ct->len != json_string_length(mt)
            || ngx_strncasecmp(ct->data, (u_char *) json_string_value(mt),
                               ct->len)
               != 0))
    {
        return "mediaType does not match Content-Type";
    }

    for (i = 0; ngx_http_registry_media_types[i].name; i++) {
        type = ngx_http_registry_media_types[i].name;

        if (mt ? ngx_strcmp(json_string_value(mt), type) == 0
               : (ct->len == ngx_strlen(type)
                  && ngx_strncasecmp(ct->data, (u_char *) type, ct->len)
                     == 0))
        {
            *kind = ngx_http_registry_media_types[i].kind;

            return *kind ? NULL : "Docker schema1 manifests are deprecated "
                                  "and not accepted: push schema2 or OCI";
        }
    }

    if (mt || ct->len) {
        return "unsupported manifest media type";
    }

    /* an OCI manifest or index may leave its media type out */

    if (json_object_get(root, "manifests")) {
        *kind = NGX_HTTP_REGISTRY_INDEX;
        return NULL;
    }

    if (json_object_get(root, "config")) {
        *kind = NGX_HTTP_REGISTRY_IMAGE;
        return NULL;
    }

    return "manifest has no media type";
}


/*
 * An image with an index's field or an index with an image's is refused
 * (as distribution does since CVE-2021-41190): a client that tells the
 * kinds apart by the fields would see another document than the one
 * checked here.
 */

static const char *
ngx_http_registry_manifest_ambiguous(json_t *root, ngx_uint_t kind)
{
    if (kind == NGX_HTTP_REGISTRY_IMAGE) {
        return json_object_get(root, "manifests")
               ? "an image manifest must not have manifests" : NULL;
    }

    return (json_object_get(root, "config") || json_object_get(root, "layers"))
           ? "an index must not have config or layers" : NULL;
}


/* annotations, where present, are an object of strings */

static ngx_int_t
ngx_http_registry_annotations_invalid(json_t *annotations)
{
    json_t      *value;
    const char  *key;

    if (annotations == NULL) {
        return 0;
    }

    if (!json_is_object(annotations)) {
        return 1;
    }

    json_object_foreach(annotations, key, value) {
        if (!json_is_string(value)) {
            return 1;
        }
    }

    return 0;
}


static const char *
ngx_http_registry_descriptor_invalid(json_t *desc)
{
    json_t                      *digest, *size, *mt;
    ngx_str_t                    text;
    ngx_http_registry_digest_t   parsed;

    if (!json_is_object(desc)) {
        return "not an object";
    }

    mt = json_object_get(desc, "mediaType");
    digest = json_object_get(desc, "digest");
    size = json_object_get(desc, "size");

    if (!json_is_string(mt)) {
        return "no mediaType";
    }

    if (!json_is_integer(size) || json_integer_value(size) < 0) {
        return "no valid size";
    }

    if (!json_is_string(digest)) {
        return "no digest";
    }

    text.data = (u_char *) json_string_value(digest);
    text.len = json_string_length(digest);

    if (ngx_http_registry_parse_digest(&text, &parsed) != NGX_OK) {
        return "invalid digest";
    }

    if (ngx_http_registry_annotations_invalid(
                                    json_object_get(desc, "annotations")))
    {
        return "invalid annotations";
    }

    return NULL;
}


static ngx_uint_t
ngx_http_registry_nondistributable_layer(json_t *desc)
{
    json_t  *mt;

    mt = json_object_get(desc, "mediaType");

    return ngx_http_registry_nondistributable_type(
                                    (u_char *) json_string_value(mt),
                                    json_string_length(mt));
}


/* type: a layer's media type (no NUL in it: jansson refuses one) */

static ngx_uint_t
ngx_http_registry_nondistributable_type(u_char *type, size_t len)
{
    ngx_uint_t  i;

    for (i = 0; ngx_http_registry_nondistributable[i]; i++) {
        if (len == ngx_strlen(ngx_http_registry_nondistributable[i])
            && ngx_strncmp(type, ngx_http_registry_nondistributable[i], len)
               == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* the same, from a manifest parsed already */

static ngx_int_t
ngx_http_registry_referrer_describe(ngx_pool_t *pool, json_t *root,
    size_t size, ngx_http_registry_digest_t *digest,
    ngx_http_registry_digest_t *subject, ngx_str_t *descriptor)
{
    char        *dump;
    json_t      *desc, *field, *artifact;
    ngx_int_t    rc;
    ngx_str_t    text;
    const char  *type;

    rc = NGX_DECLINED;
    desc = NULL;
    dump = NULL;

    field = json_object_get(root, "subject");

    if (!json_is_object(root)
        || ngx_http_registry_descriptor_invalid(field) != NULL)
    {
        goto done;
    }

    text.len = json_string_length(json_object_get(field, "digest"));
    text.data = ngx_pnalloc(pool, text.len);
    if (text.data == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(text.data, json_string_value(json_object_get(field, "digest")),
               text.len);

    if (ngx_http_registry_parse_digest(&text, subject) != NGX_OK) {
        goto done;
    }

    field = json_object_get(root, "mediaType");
    type = json_is_string(field)
           ? json_string_value(field)
           : json_object_get(root, "manifests")
             ? NGX_HTTP_REGISTRY_OCI_INDEX : NGX_HTTP_REGISTRY_OCI_MANIFEST;

    artifact = json_object_get(root, "artifactType");

    if (!json_is_string(artifact) || json_string_length(artifact) == 0) {
        artifact = json_object_get(json_object_get(root, "config"),
                                   "mediaType");
    }

    desc = json_pack("{s:s, s:s%, s:I}", "mediaType", type,
                     "digest", digest->text.data, digest->text.len,
                     "size", (json_int_t) size);
    if (desc == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    if (json_is_string(artifact) && json_string_length(artifact)) {
        json_object_set(desc, "artifactType", artifact);
    }

    field = json_object_get(root, "annotations");

    if (json_is_object(field)) {
        json_object_set(desc, "annotations", field);
    }

    dump = json_dumps(desc, JSON_COMPACT);
    if (dump == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    descriptor->len = ngx_strlen(dump);
    descriptor->data = ngx_pnalloc(pool, descriptor->len);
    if (descriptor->data == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(descriptor->data, dump, descriptor->len);
    rc = NGX_OK;

done:

    free(dump);
    json_decref(desc);

    return rc;
}


/*
 * The media type to serve: the manifest's own mediaType, else what its
 * shape says (an OCI manifest may leave mediaType out; schema1 has none).
 * The type may point into the body.
 */

ngx_int_t
ngx_http_registry_manifest_media_type(ngx_pool_t *pool, ngx_str_t *body,
    ngx_str_t *type)
{
    json_t      *root, *mt;
    const char  *shape;

    if (ngx_http_registry_scan_media_type(body, type) == NGX_OK) {
        return NGX_OK;
    }

    /* no plain mediaType: the slow way, from the manifest's shape */

    root = json_loadb((char *) body->data, body->len, 0, NULL);
    if (root == NULL) {
        ngx_str_set(type, "application/json");
        return NGX_OK;
    }

    mt = json_object_get(root, "mediaType");

    if (json_is_string(mt)) {
        type->len = json_string_length(mt);
        type->data = ngx_pnalloc(pool, type->len);

        if (type->data == NULL) {
            json_decref(root);
            return NGX_ERROR;
        }

        ngx_memcpy(type->data, json_string_value(mt), type->len);
        json_decref(root);

        return NGX_OK;
    }

    if (json_object_get(root, "manifests")) {
        shape = NGX_HTTP_REGISTRY_OCI_INDEX;

    } else if (json_object_get(root, "signatures")) {
        shape = NGX_HTTP_REGISTRY_SCHEMA1 "prettyjws";

    } else if (json_integer_value(json_object_get(root, "schemaVersion"))
               == 1)
    {
        shape = NGX_HTTP_REGISTRY_SCHEMA1 "json";

    } else if (json_object_get(root, "config")) {
        shape = NGX_HTTP_REGISTRY_OCI_MANIFEST;

    } else {
        shape = "application/json";
    }

    json_decref(root);

    type->data = (u_char *) shape;
    type->len = ngx_strlen(shape);

    return NGX_OK;
}


/*
 * The top-level "mediaType" string of a manifest, found without building
 * a JSON tree: the hot path of every manifest GET.  The other top-level
 * values are skipped through; the last "mediaType" wins, as in jansson
 * and Go.  NGX_DECLINED: none, a key or value with escapes, or not a JSON
 * object, which the caller leaves to jansson.
 */

static ngx_int_t
ngx_http_registry_scan_media_type(ngx_str_t *body, ngx_str_t *type)
{
    u_char     *p, *last, *key, *end;
    ngx_int_t   rc;

    p = body->data;
    last = body->data + body->len;
    rc = NGX_DECLINED;

    p = ngx_http_registry_json_space(p, last);

    if (p == last || *p != '{') {
        return NGX_DECLINED;
    }

    for ( ;; ) {
        p = ngx_http_registry_json_space(p + 1, last);

        if (p == last || *p != '"') {
            return NGX_DECLINED;
        }

        key = p + 1;
        p = ngx_http_registry_json_string_end(p, last);
        if (p == NULL) {
            return NGX_DECLINED;
        }

        end = p - 1;

        if (ngx_strlchr(key, end, '\\')) {
            return NGX_DECLINED;    /* an escaped key may spell mediaType */
        }

        p = ngx_http_registry_json_space(p, last);

        if (p == last || *p != ':') {
            return NGX_DECLINED;
        }

        p = ngx_http_registry_json_space(p + 1, last);

        if (end - key == 9 && ngx_strncmp(key, "mediaType", 9) == 0) {
            if (p == last || *p != '"') {
                return NGX_DECLINED;
            }

            type->data = p + 1;
            p = ngx_http_registry_json_string_end(p, last);
            if (p == NULL) {
                return NGX_DECLINED;
            }

            type->len = p - 1 - type->data;
            rc = ngx_strlchr(type->data, p - 1, '\\') ? NGX_DECLINED : NGX_OK;

        } else {
            p = ngx_http_registry_json_value_end(p, last);
            if (p == NULL) {
                return NGX_DECLINED;
            }
        }

        p = ngx_http_registry_json_space(p, last);

        if (p == last) {
            return NGX_DECLINED;
        }

        if (*p == '}') {
            return rc;
        }

        if (*p != ',') {
            return NGX_DECLINED;
        }
    }
}


/* past a JSON value: a string, a nested object or array, or a scalar */

static u_char *
ngx_http_registry_json_value_end(u_char *p, u_char *last)
{
    ngx_uint_t  depth;

    if (p == last) {
        return NULL;
    }

    if (*p == '"') {
        return ngx_http_registry_json_string_end(p, last);
    }

    if (*p != '{' && *p != '[') {
        while (p < last && *p != ',' && *p != '}' && *p != ']'
               && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
        {
            p++;
        }

        return p;
    }

    depth = 0;

    while (p < last) {
        switch (*p) {

        case '"':
            p = ngx_http_registry_json_string_end(p, last);
            if (p == NULL) {
                return NULL;
            }

            continue;

        case '{':
        case '[':
            depth++;
            break;

        case '}':
        case ']':
            if (--depth == 0) {
                return p + 1;
            }

            break;
        }

        p++;
    }

    return NULL;
}


/* p at a string's opening quote: just past its closing one, or NULL */

static u_char *
ngx_http_registry_json_string_end(u_char *p, u_char *last)
{
    for (p++; p < last; p++) {
        if (*p == '\\') {
            p++;
            continue;
        }

        if (*p == '"') {
            return p + 1;
        }
    }

    return NULL;
}


static u_char *
ngx_http_registry_json_space(u_char *p, u_char *last)
{
    while (p < last && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    {
        p++;
    }

    return p;
}


/* ---- the collector's scan: the common shape without jansson ---- */

/*
 * The garbage collector reads every manifest of a store, and jansson's
 * tree of each was a third of its mark.  This scan reads the common
 * shape in one pass and builds nothing but the references: strings of
 * plain ASCII without escapes, numbers that are integers of at most 18
 * digits, nesting at most NGX_HTTP_REGISTRY_SCAN_DEPTH deep, no subject,
 * and none of the fields the checks read twice in one object.  Anything
 * else (a valid manifest of another shape as much as an invalid one) is
 * NGX_DECLINED, and the caller parses it with jansson
 * (ngx_http_registry_manifest_parse(), no Content-Type), whose verdict
 * stands.  On NGX_OK the references are those that parse gives, in its
 * order, and there is no subject: fuzz_manifest checks both on every
 * input it runs.
 */

#define NGX_HTTP_REGISTRY_SCAN_DEPTH  32
#define NGX_HTTP_REGISTRY_SCAN_DIGITS 18      /* a json_int_t, always */

#define NGX_HTTP_REGISTRY_SCAN_STRING  1
#define NGX_HTTP_REGISTRY_SCAN_NUMBER  2
#define NGX_HTTP_REGISTRY_SCAN_OBJECT  3
#define NGX_HTTP_REGISTRY_SCAN_ARRAY   4
#define NGX_HTTP_REGISTRY_SCAN_LITERAL 5


typedef struct {
    u_char      *p;
    u_char      *last;
    ngx_uint_t   depth;
} ngx_http_registry_scan_t;


/* a value read: a string's characters, or the whole of anything else */

typedef struct {
    ngx_uint_t   type;        /* 0: absent */
    u_char      *start;
    u_char      *end;
} ngx_http_registry_scan_value_t;


/* the fields of a descriptor the checks read */

typedef struct {
    ngx_http_registry_scan_value_t  media_type;
    ngx_http_registry_scan_value_t  digest;
    ngx_http_registry_scan_value_t  size;
    ngx_http_registry_scan_value_t  annotations;
} ngx_http_registry_scan_desc_t;


static ngx_int_t ngx_http_registry_scan_image(ngx_pool_t *pool,
    ngx_http_registry_scan_value_t *config,
    ngx_http_registry_scan_value_t *layers, ngx_array_t *refs);
static ngx_int_t ngx_http_registry_scan_list(ngx_pool_t *pool,
    ngx_http_registry_scan_value_t *list, ngx_uint_t manifests,
    ngx_array_t *refs);
static ngx_int_t ngx_http_registry_scan_reference(ngx_pool_t *pool,
    ngx_http_registry_scan_desc_t *d, ngx_uint_t manifest, ngx_array_t *refs);
static ngx_uint_t ngx_http_registry_scan_kind(
    ngx_http_registry_scan_value_t *mt, ngx_uint_t has_manifests,
    ngx_uint_t has_config);
static ngx_int_t ngx_http_registry_scan_descriptor(
    ngx_http_registry_scan_value_t *v, ngx_http_registry_scan_desc_t *d);
static ngx_int_t ngx_http_registry_scan_strings(
    ngx_http_registry_scan_value_t *v);
static ngx_int_t ngx_http_registry_scan_field(ngx_str_t *key,
    const char *name, ngx_http_registry_scan_value_t *v,
    ngx_http_registry_scan_value_t *into);
static ngx_uint_t ngx_http_registry_scan_is(ngx_http_registry_scan_value_t *v,
    const char *s);
static void ngx_http_registry_scan_inside(ngx_http_registry_scan_t *s,
    ngx_http_registry_scan_value_t *v, ngx_uint_t depth);
static ngx_int_t ngx_http_registry_scan_member(ngx_http_registry_scan_t *s,
    ngx_uint_t *first, ngx_str_t *key, ngx_http_registry_scan_value_t *v);
static ngx_int_t ngx_http_registry_scan_element(ngx_http_registry_scan_t *s,
    ngx_uint_t *first, ngx_http_registry_scan_value_t *v);
static ngx_int_t ngx_http_registry_scan_value(ngx_http_registry_scan_t *s,
    ngx_http_registry_scan_value_t *v);
static ngx_int_t ngx_http_registry_scan_string(ngx_http_registry_scan_t *s,
    ngx_http_registry_scan_value_t *v);
static ngx_int_t ngx_http_registry_scan_number(ngx_http_registry_scan_t *s,
    ngx_http_registry_scan_value_t *v);
static ngx_int_t ngx_http_registry_scan_container(ngx_http_registry_scan_t *s,
    ngx_http_registry_scan_value_t *v);


/* m->bytes: m->references, NGX_DECLINED (parse it), or NGX_ERROR */

ngx_int_t
ngx_http_registry_manifest_scan(ngx_pool_t *pool,
    ngx_http_registry_manifest_t *m)
{
    ngx_int_t                        rc;
    ngx_str_t                        key;
    ngx_uint_t                       first, kind;
    ngx_http_registry_scan_t         s;
    ngx_http_registry_scan_value_t   v, root, sv, mt, config, layers,
                                     manifests, subject, annotations;

    s.p = m->bytes.data;
    s.last = m->bytes.data + m->bytes.len;
    s.depth = 0;

    if (ngx_http_registry_scan_value(&s, &root) != NGX_OK
        || root.type != NGX_HTTP_REGISTRY_SCAN_OBJECT
        || ngx_http_registry_json_space(s.p, s.last) != s.last)
    {
        return NGX_DECLINED;
    }

    ngx_memzero(&sv, sizeof(ngx_http_registry_scan_value_t));
    mt = sv; config = sv; layers = sv; manifests = sv; subject = sv;
    annotations = sv;

    ngx_http_registry_scan_inside(&s, &root, 1);
    first = 1;

    while ((rc = ngx_http_registry_scan_member(&s, &first, &key, &v))
           == NGX_OK)
    {
        if (ngx_http_registry_scan_field(&key, "schemaVersion", &v, &sv)
            != NGX_OK
            || ngx_http_registry_scan_field(&key, "mediaType", &v, &mt)
               != NGX_OK
            || ngx_http_registry_scan_field(&key, "config", &v, &config)
               != NGX_OK
            || ngx_http_registry_scan_field(&key, "layers", &v, &layers)
               != NGX_OK
            || ngx_http_registry_scan_field(&key, "manifests", &v,
                                            &manifests)
               != NGX_OK
            || ngx_http_registry_scan_field(&key, "subject", &v, &subject)
               != NGX_OK
            || ngx_http_registry_scan_field(&key, "annotations", &v,
                                            &annotations)
               != NGX_OK)
        {
            return NGX_DECLINED;
        }
    }

    if (rc != NGX_DONE
        || !ngx_http_registry_scan_is(&sv, "2")
        || sv.type != NGX_HTTP_REGISTRY_SCAN_NUMBER
        || subject.type
        || (annotations.type
            && ngx_http_registry_scan_strings(&annotations) != NGX_OK))
    {
        return NGX_DECLINED;
    }

    kind = ngx_http_registry_scan_kind(&mt, manifests.type != 0,
                                       config.type != 0);

    m->references = ngx_array_create(pool, 8, sizeof(ngx_http_registry_ref_t));
    if (m->references == NULL) {
        return NGX_ERROR;
    }

    /* an image with an index's field, or an index with an image's: invalid */

    if (kind == NGX_HTTP_REGISTRY_IMAGE && !manifests.type) {
        return ngx_http_registry_scan_image(pool, &config, &layers,
                                            m->references);
    }

    if (kind == NGX_HTTP_REGISTRY_INDEX && !config.type && !layers.type) {
        return ngx_http_registry_scan_list(pool, &manifests, 1,
                                           m->references);
    }

    return NGX_DECLINED;
}


/* an image's config, then its layers */

static ngx_int_t
ngx_http_registry_scan_image(ngx_pool_t *pool,
    ngx_http_registry_scan_value_t *config,
    ngx_http_registry_scan_value_t *layers, ngx_array_t *refs)
{
    ngx_int_t                      rc;
    ngx_http_registry_scan_desc_t  d;

    if (ngx_http_registry_scan_descriptor(config, &d) != NGX_OK) {
        return NGX_DECLINED;
    }

    rc = ngx_http_registry_scan_reference(pool, &d, 0, refs);

    return (rc == NGX_OK) ? ngx_http_registry_scan_list(pool, layers, 0, refs)
                          : rc;
}


/*
 * An array of descriptors: an index's children (manifests), or an
 * image's layers, less the non-distributable ones.
 */

static ngx_int_t
ngx_http_registry_scan_list(ngx_pool_t *pool,
    ngx_http_registry_scan_value_t *list, ngx_uint_t manifests,
    ngx_array_t *refs)
{
    ngx_int_t                       rc;
    ngx_uint_t                      first;
    ngx_http_registry_scan_t        s;
    ngx_http_registry_scan_desc_t   d;
    ngx_http_registry_scan_value_t  v;

    if (list->type != NGX_HTTP_REGISTRY_SCAN_ARRAY) {
        return NGX_DECLINED;
    }

    ngx_http_registry_scan_inside(&s, list, 1);
    first = 1;

    while ((rc = ngx_http_registry_scan_element(&s, &first, &v)) == NGX_OK) {
        if (ngx_http_registry_scan_descriptor(&v, &d) != NGX_OK) {
            return NGX_DECLINED;
        }

        if (!manifests
            && ngx_http_registry_nondistributable_type(d.media_type.start,
                                   d.media_type.end - d.media_type.start))
        {
            continue;
        }

        if (ngx_http_registry_scan_reference(pool, &d, manifests, refs)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return (rc == NGX_DONE) ? NGX_OK : NGX_DECLINED;
}


static ngx_int_t
ngx_http_registry_scan_reference(ngx_pool_t *pool,
    ngx_http_registry_scan_desc_t *d, ngx_uint_t manifest, ngx_array_t *refs)
{
    ngx_http_registry_ref_t  *ref;

    ref = ngx_array_push(refs);
    if (ref == NULL
        || ngx_http_registry_digest_copy(pool, d->digest.start,
                                         d->digest.end - d->digest.start,
                                         &ref->digest)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ref->manifest = manifest;

    return NGX_OK;
}


/* as ngx_http_registry_manifest_kind() without a Content-Type; 0: refused */

static ngx_uint_t
ngx_http_registry_scan_kind(ngx_http_registry_scan_value_t *mt,
    ngx_uint_t has_manifests, ngx_uint_t has_config)
{
    ngx_uint_t  i;

    if (mt->type == 0) {
        return has_manifests ? NGX_HTTP_REGISTRY_INDEX
               : has_config ? NGX_HTTP_REGISTRY_IMAGE : 0;
    }

    if (mt->type != NGX_HTTP_REGISTRY_SCAN_STRING) {
        return 0;
    }

    for (i = 0; ngx_http_registry_media_types[i].name; i++) {
        if (ngx_http_registry_scan_is(mt, ngx_http_registry_media_types[i].name))
        {
            return ngx_http_registry_media_types[i].kind;
        }
    }

    return 0;
}


/* as ngx_http_registry_descriptor_invalid(): NGX_OK when valid */

static ngx_int_t
ngx_http_registry_scan_descriptor(ngx_http_registry_scan_value_t *v,
    ngx_http_registry_scan_desc_t *d)
{
    ngx_int_t                       rc;
    ngx_str_t                       key, text;
    ngx_uint_t                      first;
    ngx_http_registry_scan_t        s;
    ngx_http_registry_digest_t      parsed;
    ngx_http_registry_scan_value_t  field;

    if (v->type != NGX_HTTP_REGISTRY_SCAN_OBJECT) {
        return NGX_DECLINED;
    }

    ngx_memzero(d, sizeof(ngx_http_registry_scan_desc_t));

    ngx_http_registry_scan_inside(&s, v, 1);
    first = 1;

    while ((rc = ngx_http_registry_scan_member(&s, &first, &key, &field))
           == NGX_OK)
    {
        if (ngx_http_registry_scan_field(&key, "mediaType", &field,
                                         &d->media_type)
            != NGX_OK
            || ngx_http_registry_scan_field(&key, "digest", &field,
                                            &d->digest)
               != NGX_OK
            || ngx_http_registry_scan_field(&key, "size", &field, &d->size)
               != NGX_OK
            || ngx_http_registry_scan_field(&key, "annotations", &field,
                                            &d->annotations)
               != NGX_OK)
        {
            return NGX_DECLINED;
        }
    }

    if (rc != NGX_DONE
        || d->media_type.type != NGX_HTTP_REGISTRY_SCAN_STRING
        || d->digest.type != NGX_HTTP_REGISTRY_SCAN_STRING
        || d->size.type != NGX_HTTP_REGISTRY_SCAN_NUMBER
        || *d->size.start == '-'
        || (d->annotations.type
            && ngx_http_registry_scan_strings(&d->annotations) != NGX_OK))
    {
        return NGX_DECLINED;
    }

    text.data = d->digest.start;
    text.len = d->digest.end - d->digest.start;

    return (ngx_http_registry_parse_digest(&text, &parsed) == NGX_OK)
           ? NGX_OK : NGX_DECLINED;
}


/* an object of strings (annotations) */

static ngx_int_t
ngx_http_registry_scan_strings(ngx_http_registry_scan_value_t *v)
{
    ngx_int_t                       rc;
    ngx_str_t                       key;
    ngx_uint_t                      first;
    ngx_http_registry_scan_t        s;
    ngx_http_registry_scan_value_t  value;

    if (v->type != NGX_HTTP_REGISTRY_SCAN_OBJECT) {
        return NGX_DECLINED;
    }

    ngx_http_registry_scan_inside(&s, v, 1);
    first = 1;

    while ((rc = ngx_http_registry_scan_member(&s, &first, &key, &value))
           == NGX_OK)
    {
        if (value.type != NGX_HTTP_REGISTRY_SCAN_STRING) {
            return NGX_DECLINED;
        }
    }

    return (rc == NGX_DONE) ? NGX_OK : NGX_DECLINED;
}


/*
 * The member key: v is the field name's value, into where it goes; a
 * second one is NGX_DECLINED (jansson keeps the last, this scan neither).
 */

static ngx_int_t
ngx_http_registry_scan_field(ngx_str_t *key, const char *name,
    ngx_http_registry_scan_value_t *v, ngx_http_registry_scan_value_t *into)
{
    if (key->len != ngx_strlen(name)
        || ngx_strncmp(key->data, name, key->len) != 0)
    {
        return NGX_OK;
    }

    if (into->type) {
        return NGX_DECLINED;
    }

    *into = *v;

    return NGX_OK;
}


/* v's characters are exactly s (a string's, or a number's) */

static ngx_uint_t
ngx_http_registry_scan_is(ngx_http_registry_scan_value_t *v, const char *s)
{
    size_t  len;

    len = ngx_strlen(s);

    return v->type != 0
           && (size_t) (v->end - v->start) == len
           && ngx_strncmp(v->start, s, len) == 0;
}


/* s over the inside of v, an object or array read before */

static void
ngx_http_registry_scan_inside(ngx_http_registry_scan_t *s,
    ngx_http_registry_scan_value_t *v, ngx_uint_t depth)
{
    s->p = v->start + 1;
    s->last = v->end;
    s->depth = depth;
}


/*
 * The next member of an object whose "{" is read: NGX_OK, NGX_DONE at its
 * end ("}" read, or the end of an inside), NGX_DECLINED.
 */

static ngx_int_t
ngx_http_registry_scan_member(ngx_http_registry_scan_t *s, ngx_uint_t *first,
    ngx_str_t *key, ngx_http_registry_scan_value_t *v)
{
    ngx_http_registry_scan_value_t  k;

    s->p = ngx_http_registry_json_space(s->p, s->last);

    if (s->p == s->last) {
        return NGX_DECLINED;
    }

    if (*s->p == '}') {
        s->p++;
        return NGX_DONE;
    }

    if (!*first) {
        if (*s->p != ',') {
            return NGX_DECLINED;
        }

        s->p = ngx_http_registry_json_space(s->p + 1, s->last);
    }

    *first = 0;

    if (ngx_http_registry_scan_value(s, &k) != NGX_OK
        || k.type != NGX_HTTP_REGISTRY_SCAN_STRING)
    {
        return NGX_DECLINED;
    }

    s->p = ngx_http_registry_json_space(s->p, s->last);

    if (s->p == s->last || *s->p != ':') {
        return NGX_DECLINED;
    }

    s->p++;

    key->data = k.start;
    key->len = k.end - k.start;

    return ngx_http_registry_scan_value(s, v);
}


/* the same for an array whose "[" is read */

static ngx_int_t
ngx_http_registry_scan_element(ngx_http_registry_scan_t *s, ngx_uint_t *first,
    ngx_http_registry_scan_value_t *v)
{
    s->p = ngx_http_registry_json_space(s->p, s->last);

    if (s->p == s->last) {
        return NGX_DECLINED;
    }

    if (*s->p == ']') {
        s->p++;
        return NGX_DONE;
    }

    if (!*first) {
        if (*s->p != ',') {
            return NGX_DECLINED;
        }

        s->p++;
    }

    *first = 0;

    return ngx_http_registry_scan_value(s, v);
}


/* any value, checked whole; s->p just past it */

static ngx_int_t
ngx_http_registry_scan_value(ngx_http_registry_scan_t *s,
    ngx_http_registry_scan_value_t *v)
{
    size_t                len;
    ngx_uint_t            i;
    static const char    *literals[] = { "true", "false", "null", NULL };

    s->p = ngx_http_registry_json_space(s->p, s->last);

    if (s->p == s->last) {
        return NGX_DECLINED;
    }

    switch (*s->p) {

    case '"':
        return ngx_http_registry_scan_string(s, v);

    case '{':
    case '[':
        return ngx_http_registry_scan_container(s, v);

    case '-':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return ngx_http_registry_scan_number(s, v);
    }

    for (i = 0; literals[i]; i++) {
        len = ngx_strlen(literals[i]);

        if ((size_t) (s->last - s->p) >= len
            && ngx_strncmp(s->p, literals[i], len) == 0)
        {
            v->type = NGX_HTTP_REGISTRY_SCAN_LITERAL;
            v->start = s->p;
            s->p += len;
            v->end = s->p;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* printable ASCII, no escape: v is what is between the quotes */

static ngx_int_t
ngx_http_registry_scan_string(ngx_http_registry_scan_t *s,
    ngx_http_registry_scan_value_t *v)
{
    u_char  *p;

    for (p = s->p + 1; p < s->last; p++) {

        if (*p == '"') {
            v->type = NGX_HTTP_REGISTRY_SCAN_STRING;
            v->start = s->p + 1;
            v->end = p;
            s->p = p + 1;
            return NGX_OK;
        }

        if (*p == '\\' || *p < 0x20 || *p >= 0x80) {
            return NGX_DECLINED;
        }
    }

    return NGX_DECLINED;
}


/*
 * -?(0|[1-9][0-9]*), no fraction, no exponent, at most 18 digits: what
 * jansson reads as an integer, and never too big for it.
 */

static ngx_int_t
ngx_http_registry_scan_number(ngx_http_registry_scan_t *s,
    ngx_http_registry_scan_value_t *v)
{
    u_char  *p, *digits;

    p = s->p;

    if (*p == '-') {
        p++;
    }

    digits = p;

    while (p < s->last && *p >= '0' && *p <= '9') {
        p++;
    }

    if (p == digits
        || (*digits == '0' && p - digits > 1)
        || p - digits > NGX_HTTP_REGISTRY_SCAN_DIGITS
        || (p < s->last && (*p == '.' || *p == 'e' || *p == 'E')))
    {
        return NGX_DECLINED;
    }

    v->type = NGX_HTTP_REGISTRY_SCAN_NUMBER;
    v->start = s->p;
    v->end = p;
    s->p = p;

    return NGX_OK;
}


/* an object or an array, every value in it checked */

static ngx_int_t
ngx_http_registry_scan_container(ngx_http_registry_scan_t *s,
    ngx_http_registry_scan_value_t *v)
{
    u_char                          *start;
    ngx_int_t                        rc;
    ngx_str_t                        key;
    ngx_uint_t                       first, object;
    ngx_http_registry_scan_value_t   inner;

    if (s->depth == NGX_HTTP_REGISTRY_SCAN_DEPTH) {
        return NGX_DECLINED;
    }

    start = s->p;
    object = (*s->p == '{');

    s->p++;
    s->depth++;
    first = 1;

    do {
        rc = object ? ngx_http_registry_scan_member(s, &first, &key, &inner)
                    : ngx_http_registry_scan_element(s, &first, &inner);
    } while (rc == NGX_OK);

    s->depth--;

    if (rc != NGX_DONE) {
        return NGX_DECLINED;
    }

    v->type = object ? NGX_HTTP_REGISTRY_SCAN_OBJECT
                     : NGX_HTTP_REGISTRY_SCAN_ARRAY;
    v->start = start;
    v->end = s->p;

    return NGX_OK;
}
