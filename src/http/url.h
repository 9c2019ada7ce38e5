/* URLs for the HTTP client: a strict parser for absolute http(s) URLs and
 * the resolution of a redirect's Location against the URL it came from
 * (RFC 3986 5.2, the forms servers send). No allocation: a parsed URL
 * lives in one fixed-size struct (about 8 KiB: keep it off coroutine
 * stacks).
 */
#ifndef CORU_HTTP_URL_H
#define CORU_HTTP_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORU__URL_MAX 4096

struct coru__url {
    bool https;
    char host[256];   /* a name or a literal, IPv6 without brackets */
    bool ipv6;        /* host is an IPv6 literal */
    uint16_t port;    /* explicit, or 80 / 443 */
    bool default_port;
    char target[CORU__URL_MAX]; /* path and query: "/" at least */
    char full[CORU__URL_MAX + 300]; /* the normalised URL, fragment dropped */
};

/* Parses an absolute URL, http or https. Returns 0, -EPROTONOSUPPORT
 * (another scheme, "ftp://..."), -EINVAL (malformed: no scheme, an empty
 * or bad host, user info, a bad port, bytes a URL may not hold, too
 * long). */
int coru__url_parse(struct coru__url *u, const char *s);
/* Resolves ref (a Location value) against base into *out: absolute,
 * scheme-relative ("//host/..."), absolute path, or relative path. Returns
 * 0 or -EINVAL. */
int coru__url_resolve(struct coru__url *out, const struct coru__url *base, const char *ref);
/* Whether a and b have the same origin (scheme, host, port). */
bool coru__url_same_origin(const struct coru__url *a, const struct coru__url *b);

#endif
