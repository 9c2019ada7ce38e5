/* The route trie: building it and matching paths against it. See
 * router.h. */
#include "router.h"

#include "parse.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct method_entry {
    char *method;                /* "GET", or "*" */
    coru_http_handler h;
    void *arg;
    struct method_entry *next;
};

struct coru__route_node {
    char *seg;                   /* literal children: the segment */
    struct coru__route_node **kids;
    size_t nkids;
    struct coru__route_node *param; /* the {name} child */
    char *param_name;
    struct coru__route_node *rest;  /* the {name...} child (a leaf) */
    char *rest_name;
    struct method_entry *methods;   /* patterns that end here */
};

static struct coru__route_node *node_new(void)
{
    return calloc(1, sizeof(struct coru__route_node));
}

static void node_free(struct coru__route_node *n)
{
    if (!n) return;
    for (size_t i = 0; i < n->nkids; i++) node_free(n->kids[i]);
    free(n->kids);
    node_free(n->param);
    node_free(n->rest);
    free(n->seg);
    free(n->param_name);
    free(n->rest_name);
    for (struct method_entry *m = n->methods, *nx; m; m = nx) {
        nx = m->next;
        free(m->method);
        free(m);
    }
    free(n);
}

void coru__router_init(struct coru__router *r)
{
    r->root = NULL;
}

void coru__router_fini(struct coru__router *r)
{
    node_free(r->root);
    r->root = NULL;
}

static bool valid_method(const char *m)
{
    if (!strcmp(m, "*")) return true;
    if (!*m) return false;
    for (const char *p = m; *p; p++)
        if (!coru__http_is_tchar((unsigned char)*p)) return false;
    return true;
}

static bool valid_name(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static struct coru__route_node *literal_child(struct coru__route_node *n, const char *seg, size_t len, bool make)
{
    for (size_t i = 0; i < n->nkids; i++)
        if (strlen(n->kids[i]->seg) == len && !memcmp(n->kids[i]->seg, seg, len)) return n->kids[i];
    if (!make) return NULL;
    struct coru__route_node **k = realloc(n->kids, (n->nkids + 1) * sizeof *k);
    if (!k) return NULL;
    n->kids = k;
    struct coru__route_node *c = node_new();
    if (!c) return NULL;
    c->seg = strndup(seg, len);
    if (!c->seg) {
        free(c);
        return NULL;
    }
    n->kids[n->nkids++] = c;
    return c;
}

/* A named child ({name} or {name...}): the same name again reuses it; a
 * different name at the same place is ambiguous. */
static struct coru__route_node *named_child(struct coru__route_node **slot, char **name_slot, const char *name,
                                            size_t len, int *err)
{
    if (*slot) {
        if (strlen(*name_slot) != len || memcmp(*name_slot, name, len)) {
            *err = -EINVAL;
            return NULL;
        }
        return *slot;
    }
    struct coru__route_node *c = node_new();
    char *nm = strndup(name, len);
    if (!c || !nm) {
        free(c);
        free(nm);
        *err = -ENOMEM;
        return NULL;
    }
    *slot = c;
    *name_slot = nm;
    return c;
}

int coru__router_add(struct coru__router *r, const char *method, const char *pattern, coru_http_handler h, void *arg)
{
    if (!method || !pattern || !h || pattern[0] != '/' || !valid_method(method)) return -EINVAL;
    if (!r->root && !(r->root = node_new())) return -ENOMEM;
    struct coru__route_node *n = r->root;
    const char *p = pattern + 1;
    unsigned params = 0;
    int err = 0;
    /* "/" alone is the root; otherwise each '/'-separated segment. */
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0) {
            if (e) return -EINVAL; /* "//" */
            break;
        }
        if (p[0] == '{') {
            if (p[len - 1] != '}' || len < 3) return -EINVAL;
            const char *name = p + 1;
            size_t nl = len - 2;
            bool rest = nl > 3 && !memcmp(name + nl - 3, "...", 3);
            if (rest) nl -= 3;
            if (!valid_name(name, nl) || ++params > CORU__HTTP_MAX_PARAMS) return -EINVAL;
            if (rest) {
                if (e) return -EINVAL; /* {rest...} must be last */
                n = named_child(&n->rest, &n->rest_name, name, nl, &err);
            } else {
                n = named_child(&n->param, &n->param_name, name, nl, &err);
            }
            if (!n) return err;
        } else {
            for (size_t i = 0; i < len; i++)
                if (p[i] == '{' || p[i] == '}') return -EINVAL;
            n = literal_child(n, p, len, true);
            if (!n) return -ENOMEM;
        }
        if (!e) break;
        p = e + 1;
    }
    /* "/a/": the trailing empty segment is a literal of its own, so "/a"
     * and "/a/" are different routes (as in aiohttp and Go). */
    size_t plen = strlen(pattern);
    if (plen > 1 && pattern[plen - 1] == '/' && !(n = literal_child(n, "", 0, true))) return -ENOMEM;
    for (struct method_entry *m = n->methods; m; m = m->next)
        if (!strcmp(m->method, method)) return -EEXIST;
    struct method_entry *m = calloc(1, sizeof *m);
    if (!m || !(m->method = strdup(method))) {
        free(m);
        return -ENOMEM;
    }
    m->h = h;
    m->arg = arg;
    /* appended, so Allow lists methods in the order they were added */
    struct method_entry **pp = &n->methods;
    while (*pp) pp = &(*pp)->next;
    *pp = m;
    return 0;
}

/* ---------------------------------------------------------------- matching */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long coru__http_pct_decode(char *dst, const char *src, size_t n, bool plus)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '%') {
            if (i + 2 >= n) return -1;
            int a = hexval(src[i + 1]), b = hexval(src[i + 2]);
            if (a < 0 || b < 0) return -1;
            c = (char)(a * 16 + b);
            if (c == '\0') return -1;
            i += 2;
        } else if (c == '+' && plus) {
            c = ' ';
        }
        dst[o++] = c;
    }
    dst[o] = '\0';
    return (long)o;
}

struct walk {
    const char *method;
    const char *end;          /* end of the path */
    struct coru__route_match *m;
    struct coru__route_node *path_only; /* first node that matched the path */
    bool bad;                 /* a malformed escape */
};

static struct method_entry *find_method(struct coru__route_node *n, const char *method)
{
    struct method_entry *any = NULL;
    for (struct method_entry *e = n->methods; e; e = e->next) {
        if (!strcmp(e->method, method)) return e;
        if (!strcmp(e->method, "*")) any = e;
    }
    if (!any && !strcmp(method, "HEAD")) return find_method(n, "GET");
    return any;
}

/* Captures [s, e) decoded as the next parameter, at *cursor. */
static bool capture(struct walk *w, const char *name, const char *s, const char *e, char **cursor)
{
    long len = coru__http_pct_decode(*cursor, s, (size_t)(e - s), false);
    if (len < 0) {
        w->bad = true;
        return false;
    }
    struct coru__route_param *p = &w->m->params[w->m->nparams++];
    p->name = name;
    p->value = *cursor;
    *cursor += len + 1;
    return true;
}

/* Matches the segments from `at` (has_seg: whether one starts there; a
 * trailing '/' is an empty last segment) against the subtree of n. cursor:
 * free scratch. */
static bool walk(struct walk *w, struct coru__route_node *n, const char *at, bool has_seg, char *cursor)
{
    if (!has_seg) {
        if (!n->methods) return false;
        struct method_entry *e = find_method(n, w->method);
        if (e) {
            w->m->h = e->h;
            w->m->arg = e->arg;
            return true;
        }
        if (!w->path_only) w->path_only = n;
        return false;
    }
    const char *slash = memchr(at, '/', (size_t)(w->end - at));
    const char *seg_end = slash ? slash : w->end;
    const char *next = slash ? slash + 1 : w->end;
    bool next_has = slash != NULL;
    if (n->nkids && (seg_end > at || !slash)) { /* empty: only a trailing '/' */
        long len = coru__http_pct_decode(cursor, at, (size_t)(seg_end - at), false);
        if (len < 0) {
            w->bad = true;
            return false;
        }
        for (size_t i = 0; i < n->nkids; i++) {
            struct coru__route_node *k = n->kids[i];
            if ((size_t)len == strlen(k->seg) && !memcmp(k->seg, cursor, (size_t)len)) {
                if (walk(w, k, next, next_has, cursor)) return true;
                break;
            }
        }
    }
    unsigned k = w->m->nparams;
    if (n->param && seg_end > at && k < CORU__HTTP_MAX_PARAMS) {
        char *cur = cursor;
        if (!capture(w, n->param_name, at, seg_end, &cur)) return false;
        if (walk(w, n->param, next, next_has, cur)) return true;
        w->m->nparams = k;
    }
    if (n->rest && w->end > at && k < CORU__HTTP_MAX_PARAMS) {
        char *cur = cursor;
        if (!capture(w, n->rest_name, at, w->end, &cur)) return false;
        if (walk(w, n->rest, w->end, false, cur)) return true;
        w->m->nparams = k;
    }
    return false;
}

/* The Allow value of a node: its methods in the order they were added,
 * HEAD after GET unless HEAD has a route of its own. */
static void build_allow(struct coru__route_node *n, char *out, size_t cap)
{
    bool head = false;
    for (struct method_entry *e = n->methods; e; e = e->next)
        if (!strcmp(e->method, "HEAD")) head = true;
    size_t o = 0;
    out[0] = '\0';
    for (struct method_entry *e = n->methods; e; e = e->next) {
        const char *names[2] = {e->method, !strcmp(e->method, "GET") && !head ? "HEAD" : NULL};
        for (int i = 0; i < 2 && names[i]; i++) {
            size_t l = strlen(names[i]);
            if (o + l + 3 > cap) return;
            if (o) {
                memcpy(out + o, ", ", 2);
                o += 2;
            }
            memcpy(out + o, names[i], l + 1);
            o += l;
        }
    }
}

int coru__router_match(const struct coru__router *r, const char *method, const char *path, size_t path_len,
                       char *scratch, struct coru__route_match *m)
{
    m->h = NULL;
    m->arg = NULL;
    m->nparams = 0;
    m->allow[0] = '\0';
    if (!r->root || path_len == 0 || path[0] != '/') return -404;
    struct walk w = {.method = method, .end = path + path_len, .m = m};
    if (walk(&w, r->root, path + 1, path_len > 1, scratch)) return 0;
    if (w.bad) return -400;
    if (w.path_only) {
        build_allow(w.path_only, m->allow, sizeof m->allow);
        return -405;
    }
    return -404;
}
