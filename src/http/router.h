/* Routes: a trie of path segments. Each node has literal children, at most
 * one {param} child and at most one {rest...} catch-all, and per method
 * the handler of the pattern that ends there. Matching walks the request
 * path segment by segment, trying the literal child first, then the
 * parameter, then the catch-all, and backs up when a branch leads
 * nowhere, so "exact segments win" holds segment by segment and any
 * pattern that matches is found.
 *
 * Built before serving, read-only while serving: lookups take no lock.
 */
#ifndef CORU_HTTP_ROUTER_H
#define CORU_HTTP_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "coru/http.h"

#define CORU__HTTP_MAX_PARAMS 16

struct coru__route_node;

struct coru__router {
    struct coru__route_node *root;
};

struct coru__route_param {
    const char *name;  /* the pattern's name (router memory) */
    const char *value; /* decoded (the match's scratch memory) */
};

struct coru__route_match {
    coru_http_handler h;
    void *arg;
    struct coru__route_param params[CORU__HTTP_MAX_PARAMS];
    unsigned nparams;
    char allow[128];   /* 405: the Allow header's value */
};

void coru__router_init(struct coru__router *r);
void coru__router_fini(struct coru__router *r);
/* See coru_http_route for the pattern syntax and the returns. */
int coru__router_add(struct coru__router *r, const char *method, const char *pattern, coru_http_handler h, void *arg);

/* Looks up method and the raw path (not decoded; no query). Segment
 * values are percent-decoded into scratch (2 * path_len + 2 bytes). Returns 0 (m->h set), -404, -405 (m->allow
 * set), or -400 (a malformed escape in a segment). */
int coru__router_match(const struct coru__router *r, const char *method, const char *path, size_t path_len,
                       char *scratch, struct coru__route_match *m);

/* Percent-decodes src[0..n) into dst (room for n + 1), '+' as a space
 * when plus; NUL-terminates. Returns the length, or -1 for a bad escape
 * or a decoded NUL. */
long coru__http_pct_decode(char *dst, const char *src, size_t n, bool plus);

#endif
