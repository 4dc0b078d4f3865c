
/*
 * ngx_http_registry_module: the registry_access rules.
 *
 *     registry_access <who> <repository pattern> <actions>;
 *
 * (README.md, "Authentication and authorization", has examples: a
 * comment cannot hold the patterns.)  The first rule whose user
 * ("anonymous", "*" for any authenticated user, or a name) and pattern
 * match the repository decides; a location with rules denies what none
 * matches, a location without rules allows everything.  A "*" in a
 * pattern stays within one path component, "**" crosses them, "${user}"
 * is the user's name.  "push" brings the "pull" a push needs; "catalog"
 * is granted by any rule of the user that lists it.  Pure: a request is
 * only a way to its location's rules.  Both the registry's decision
 * (access.c) and the token issuer (token.c) ask these.
 */


#include "ngx_http_registry.h"


#define NGX_HTTP_REGISTRY_WHO_NAME       0
#define NGX_HTTP_REGISTRY_WHO_ANY_USER   1
#define NGX_HTTP_REGISTRY_WHO_ANONYMOUS  2

#define NGX_HTTP_REGISTRY_PATTERN_STARS  4


typedef struct {
    ngx_uint_t                 who;
    ngx_str_t                  user;       /* NGX_HTTP_REGISTRY_WHO_NAME */
    ngx_str_t                  pattern;
    ngx_uint_t                 actions;
} ngx_http_registry_rule_t;


typedef struct {
    ngx_str_t                  name;
    ngx_uint_t                 actions;
} ngx_http_registry_action_t;


static ngx_uint_t ngx_http_registry_parse_actions(ngx_str_t *list);
static ngx_int_t ngx_http_registry_valid_pattern(ngx_pool_t *pool,
    ngx_str_t *pattern);
static ngx_http_registry_rule_t *ngx_http_registry_first_rule(
    ngx_array_t *rules, ngx_str_t *user, ngx_str_t *repository);
static ngx_uint_t ngx_http_registry_who_matches(ngx_http_registry_rule_t *rule,
    ngx_str_t *user);
static ngx_uint_t ngx_http_registry_pattern_matches(u_char *p, u_char *pe,
    u_char *s, u_char *se, ngx_str_t *user);


static ngx_http_registry_action_t  ngx_http_registry_actions[] = {
    { ngx_string("pull"), NGX_HTTP_REGISTRY_PULL },
    { ngx_string("push"), NGX_HTTP_REGISTRY_PUSH|NGX_HTTP_REGISTRY_PULL },
    { ngx_string("delete"), NGX_HTTP_REGISTRY_DELETE },
    { ngx_string("catalog"), NGX_HTTP_REGISTRY_CATALOG },
    { ngx_string("*"), NGX_HTTP_REGISTRY_ALL },
    { ngx_null_string, 0 }
};


/* ---- configuration ---- */

/* registry_access <who> <pattern> <actions> */

char *
ngx_http_registry_access_rule(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_registry_loc_conf_t *rlcf = conf;

    ngx_str_t                 *value;
    ngx_http_registry_rule_t  *rule;

    value = cf->args->elts;

    if (rlcf->rules == NGX_CONF_UNSET_PTR) {
        rlcf->rules = ngx_array_create(cf->pool, 4,
                                       sizeof(ngx_http_registry_rule_t));
        if (rlcf->rules == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    rule = ngx_array_push(rlcf->rules);
    if (rule == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(rule, sizeof(ngx_http_registry_rule_t));

    if (ngx_strcmp(value[1].data, "*") == 0) {
        rule->who = NGX_HTTP_REGISTRY_WHO_ANY_USER;

    } else if (ngx_strcmp(value[1].data, "anonymous") == 0) {
        rule->who = NGX_HTTP_REGISTRY_WHO_ANONYMOUS;

    } else {
        rule->who = NGX_HTTP_REGISTRY_WHO_NAME;
        rule->user = value[1];
    }

    if (ngx_http_registry_valid_pattern(cf->pool, &value[2]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid repository pattern \"%V\": a name with "
                           "at most %d of \"*\", \"**\" and \"${user}\"",
                           &value[2], NGX_HTTP_REGISTRY_PATTERN_STARS);
        return NGX_CONF_ERROR;
    }

    rule->pattern = value[2];

    rule->actions = ngx_http_registry_parse_actions(&value[3]);

    if (rule->actions == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid actions \"%V\": a list of \"pull\", "
                           "\"push\", \"delete\", \"catalog\" or \"*\"",
                           &value[3]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* "pull,push": 0 when any of the list is unknown */

static ngx_uint_t
ngx_http_registry_parse_actions(ngx_str_t *list)
{
    u_char                      *p, *last, *comma;
    ngx_uint_t                   actions;
    ngx_http_registry_action_t  *a;

    if (list->len == 0) {
        return 0;
    }

    actions = 0;
    p = list->data;
    last = p + list->len;

    while (p < last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        for (a = ngx_http_registry_actions; a->name.len; a++) {
            if ((size_t) (comma - p) == a->name.len
                && ngx_strncmp(p, a->name.data, a->name.len) == 0)
            {
                break;
            }
        }

        if (a->name.len == 0) {
            return 0;
        }

        actions |= a->actions;
        p = comma + 1;
    }

    if (list->data[list->len - 1] == ',') {
        return 0;                           /* "pull," */
    }

    return actions;
}


/*
 * A repository name once "${user}" stands for a name and each run of
 * "*" for a component: that is what a pattern may be, with a few stars
 * at most, which keeps matching cheap.
 */

static ngx_int_t
ngx_http_registry_valid_pattern(ngx_pool_t *pool, ngx_str_t *pattern)
{
    u_char      *p, *last, *q, *run;
    ngx_str_t    name;
    ngx_uint_t   stars;

    name.data = ngx_pnalloc(pool, pattern->len);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    q = name.data;
    stars = 0;
    last = pattern->data + pattern->len;

    for (p = pattern->data; p < last; /* void */) {

        if (last - p >= 7 && ngx_strncmp(p, "${user}", 7) == 0) {
            p += 7;

        } else if (*p == '*') {
            for (run = p; p < last && *p == '*'; p++) { /* void */ }

            if (p - run > 2) {
                return NGX_ERROR;
            }

        } else {
            *q++ = *p++;
            continue;
        }

        *q++ = 'x';
        stars++;
    }

    name.len = q - name.data;

    if (stars > NGX_HTTP_REGISTRY_PATTERN_STARS) {
        return NGX_ERROR;
    }

    return ngx_http_registry_valid_name(&name);
}


/* ---- decisions ---- */

ngx_uint_t
ngx_http_registry_access_allowed(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *repository, ngx_uint_t wanted)
{
    ngx_str_t                      anonymous = ngx_null_string;
    ngx_uint_t                     i;
    ngx_http_registry_rule_t      *rule;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    if (rlcf->rules == NULL) {
        return wanted;
    }

    if (user == NULL) {
        user = &anonymous;
    }

    if (repository == NULL || repository->len == 0) {
        rule = rlcf->rules->elts;

        for (i = 0; i < rlcf->rules->nelts; i++) {
            if ((rule[i].actions & NGX_HTTP_REGISTRY_CATALOG)
                && ngx_http_registry_who_matches(&rule[i], user))
            {
                return wanted & NGX_HTTP_REGISTRY_CATALOG;
            }
        }

        return 0;
    }

    rule = ngx_http_registry_first_rule(rlcf->rules, user, repository);

    return rule ? wanted & rule->actions : 0;
}


static ngx_http_registry_rule_t *
ngx_http_registry_first_rule(ngx_array_t *rules, ngx_str_t *user,
    ngx_str_t *repository)
{
    ngx_uint_t                 i;
    ngx_http_registry_rule_t  *rule;

    rule = rules->elts;

    for (i = 0; i < rules->nelts; i++) {
        if (ngx_http_registry_who_matches(&rule[i], user)
            && ngx_http_registry_pattern_matches(rule[i].pattern.data,
                                   rule[i].pattern.data + rule[i].pattern.len,
                                   repository->data,
                                   repository->data + repository->len, user))
        {
            return &rule[i];
        }
    }

    return NULL;
}


static ngx_uint_t
ngx_http_registry_who_matches(ngx_http_registry_rule_t *rule, ngx_str_t *user)
{
    switch (rule->who) {

    case NGX_HTTP_REGISTRY_WHO_ANY_USER:
        return user->len > 0;

    case NGX_HTTP_REGISTRY_WHO_ANONYMOUS:
        return user->len == 0;

    default:
        return user->len == rule->user.len
               && ngx_strncmp(user->data, rule->user.data, user->len) == 0;
    }
}


/* a glob: "*" within a component, "**" across, "${user}" literally */

static ngx_uint_t
ngx_http_registry_pattern_matches(u_char *p, u_char *pe, u_char *s,
    u_char *se, ngx_str_t *user)
{
    u_char      *t;
    ngx_uint_t   deep;

    while (p < pe) {

        if (*p == '*') {
            deep = (pe - p >= 2 && p[1] == '*');
            p += deep ? 2 : 1;

            for (t = s; /* void */; t++) {
                if (ngx_http_registry_pattern_matches(p, pe, t, se, user)) {
                    return 1;
                }

                if (t == se || (!deep && *t == '/')) {
                    return 0;
                }
            }
        }

        if (pe - p >= 7 && ngx_strncmp(p, "${user}", 7) == 0) {
            if (user->len == 0
                || (size_t) (se - s) < user->len
                || ngx_strncmp(s, user->data, user->len) != 0)
            {
                return 0;
            }

            p += 7;
            s += user->len;
            continue;
        }

        if (s == se || *p != *s) {
            return 0;
        }

        p++;
        s++;
    }

    return s == se;
}


/*
 * Whether the location has rules: then a listing of repositories leaves
 * out those the user may not pull.
 */

ngx_uint_t
ngx_http_registry_access_limited(ngx_http_request_t *r)
{
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    return rlcf->rules != NULL;
}


/* the user may pull every repository: the first rule of theirs says "**" */

ngx_uint_t
ngx_http_registry_rules_pull_all(ngx_http_request_t *r, ngx_str_t *user)
{
    ngx_uint_t                     i;
    ngx_http_registry_rule_t      *rule;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    if (rlcf->rules == NULL) {
        return 1;
    }

    rule = rlcf->rules->elts;

    for (i = 0; i < rlcf->rules->nelts; i++) {
        if (ngx_http_registry_who_matches(&rule[i], user)) {
            return rule[i].pattern.len == 2
                   && ngx_strncmp(rule[i].pattern.data, "**", 2) == 0
                   && (rule[i].actions & NGX_HTTP_REGISTRY_PULL);
        }
    }

    return 0;
}


/*
 * Whether a rule grants users (a name or "*") anything: then /v2/
 * challenges anonymous clients (see access.c).
 */

ngx_uint_t
ngx_http_registry_rules_for_users(ngx_http_request_t *r)
{
    ngx_uint_t                     i;
    ngx_http_registry_rule_t      *rule;
    ngx_http_registry_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_registry_module);

    rule = rlcf->rules->elts;

    for (i = 0; i < rlcf->rules->nelts; i++) {
        if (rule[i].who != NGX_HTTP_REGISTRY_WHO_ANONYMOUS) {
            return 1;
        }
    }

    return 0;
}


/* "pull,push,delete,catalog" for the actions set */

u_char *
ngx_http_registry_access_format(u_char *p, ngx_uint_t actions)
{
    u_char      *start;
    ngx_uint_t   i;

    static ngx_str_t  names[] = {          /* bit i: names[i] */
        ngx_string("pull"), ngx_string("push"), ngx_string("delete"),
        ngx_string("catalog")
    };

    start = p;

    for (i = 0; i < sizeof(names) / sizeof(ngx_str_t); i++) {
        if (!(actions & ((ngx_uint_t) 1 << i))) {
            continue;
        }

        if (p != start) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, names[i].data, names[i].len);
    }

    return p;
}
