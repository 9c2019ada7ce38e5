/* URL parsing and redirect resolution for the client; see url.h. */
#include "url.h"

#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Bytes allowed in a path or query as sent: RFC 3986's unreserved,
 * sub-delims, ':', '@', '/', '?', and '%' (escapes, checked below).
 * Everything else (space, controls, '"', '<', '>', '\\', '^', '`', '{',
 * '|', '}', non-ASCII) is refused rather than escaped behind the caller's
 * back. */
static bool target_byte(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c && strchr("-._~!$&'()*+,;=:@/?%[]", c) != NULL;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Checks and copies a path-and-query (up to a '#' or the end) into dst;
 * empty becomes "/". */
static int copy_target(char *dst, size_t cap, const char *s, bool must_slash)
{
    size_t n = 0;
    if (*s != '/' && must_slash) {
        if (*s && *s != '?' && *s != '#') return -EINVAL;
        dst[n++] = '/';
    }
    for (; *s && *s != '#'; s++) {
        unsigned char c = (unsigned char)*s;
        if (!target_byte(c)) return -EINVAL;
        if (c == '%' && !(is_hex(s[1]) && is_hex(s[2]))) return -EINVAL;
        if (n + 2 > cap) return -EINVAL;
        dst[n++] = (char)c;
    }
    if (n == 0) dst[n++] = '/';
    dst[n] = '\0';
    return 0;
}

static bool host_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_';
}

/* The normalised URL: built by hand, as it is made for every request. */
static void make_full(struct coru__url *u)
{
    char *p = u->full;
    memcpy(p, u->https ? "https://" : "http://", u->https ? 8 : 7);
    p += u->https ? 8 : 7;
    if (u->ipv6) *p++ = '[';
    size_t hl = strlen(u->host);
    memcpy(p, u->host, hl);
    p += hl;
    if (u->ipv6) *p++ = ']';
    if (!u->default_port) {
        char d[8];
        int n = 0;
        for (unsigned v = u->port; v; v /= 10) d[n++] = (char)('0' + v % 10);
        *p++ = ':';
        while (n) *p++ = d[--n];
    }
    size_t tl = strlen(u->target);
    memcpy(p, u->target, tl + 1); /* fits: full is target's size plus 300 */
}

int coru__url_parse(struct coru__url *u, const char *s)
{
    if (!s || strlen(s) >= CORU__URL_MAX) return -EINVAL;
    if (strncasecmp(s, "http://", 7) == 0) {
        u->https = false;
        s += 7;
    } else if (strncasecmp(s, "https://", 8) == 0) {
        u->https = true;
        s += 8;
    } else {
        /* scheme "://" (RFC 3986 3.1) of another kind: well formed, not
         * ours; anything else is not a URL */
        size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
        bool alpha = (s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z');
        return alpha && strncmp(s + n, "://", 3) == 0 ? -EPROTONOSUPPORT : -EINVAL;
    }
    /* authority: up to '/', '?', '#' or the end */
    size_t alen = strcspn(s, "/?#");
    if (memchr(s, '@', alen)) return -EINVAL; /* user info: refused */
    const char *a = s, *end = s + alen, *port = NULL;
    size_t hlen;
    u->ipv6 = false;
    if (*a == '[') {
        const char *close = memchr(a, ']', alen);
        if (!close) return -EINVAL;
        hlen = (size_t)(close - a - 1);
        if (hlen == 0 || hlen >= sizeof u->host) return -EINVAL;
        memcpy(u->host, a + 1, hlen);
        u->host[hlen] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, u->host, &a6) != 1) return -EINVAL; /* before any connection */
        u->ipv6 = true;
        if (close + 1 < end) {
            if (close[1] != ':') return -EINVAL;
            port = close + 2;
        }
    } else {
        const char *colon = memchr(a, ':', alen);
        hlen = (size_t)((colon ? colon : end) - a);
        if (hlen == 0 || hlen >= sizeof u->host) return -EINVAL;
        for (size_t i = 0; i < hlen; i++)
            if (!host_byte((unsigned char)a[i])) return -EINVAL;
        memcpy(u->host, a, hlen);
        if (colon) port = colon + 1;
    }
    u->host[hlen] = '\0';
    for (size_t i = 0; i < hlen; i++)
        if (u->host[i] >= 'A' && u->host[i] <= 'Z') u->host[i] = (char)(u->host[i] - 'A' + 'a');
    u->default_port = true;
    u->port = u->https ? 443 : 80;
    if (port) {
        if (port == end) return -EINVAL; /* "host:" */
        unsigned long v = 0;
        for (const char *p = port; p < end; p++) {
            if (*p < '0' || *p > '9') return -EINVAL;
            v = v * 10 + (unsigned long)(*p - '0');
            if (v > 65535) return -EINVAL;
        }
        if (v == 0) return -EINVAL;
        u->port = (uint16_t)v;
        u->default_port = u->port == (u->https ? 443 : 80);
    }
    int rc = copy_target(u->target, sizeof u->target, end, true);
    if (rc) return rc;
    make_full(u);
    return 0;
}

bool coru__url_same_origin(const struct coru__url *a, const struct coru__url *b)
{
    return a->https == b->https && a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* Removes "." and ".." segments of the path part of t in place (RFC 3986
 * 5.2.4), keeping the query. In place: the write index never passes the
 * read index (no buffer on the caller's stack, which may be 16 KiB). */
static void remove_dots(char *t)
{
    size_t qpos = strcspn(t, "?"), n = 0, i = 0;
    while (i < qpos) {
        size_t seg = i + 1, next = seg; /* t[i] is a '/' */
        while (next < qpos && t[next] != '/') next++;
        size_t len = next - seg;
        bool last = next >= qpos;
        if (len == 1 && t[seg] == '.') {
            if (last) t[n++] = '/';
        } else if (len == 2 && t[seg] == '.' && t[seg + 1] == '.') {
            while (n > 0 && t[n - 1] != '/') n--;
            if (n > 0) n--;
            if (last) t[n++] = '/';
        } else {
            t[n++] = '/';
            memmove(t + n, t + seg, len);
            n += len;
        }
        i = next;
    }
    if (n == 0) t[n++] = '/';
    memmove(t + n, t + qpos, strlen(t + qpos) + 1);
}

int coru__url_resolve(struct coru__url *out, const struct coru__url *base, const char *ref)
{
    if (!ref || !*ref || strlen(ref) >= CORU__URL_MAX) return -EINVAL;
    if (strncasecmp(ref, "http://", 7) == 0 || strncasecmp(ref, "https://", 8) == 0) return coru__url_parse(out, ref);
    if (ref[0] == '/' && ref[1] == '/') {
        /* scheme-relative: the base's scheme, then ref. Built in out->full,
         * which coru__url_parse reads to the end before it writes full. */
        const char *pre = base->https ? "https:" : "http:";
        if (strlen(pre) + strlen(ref) >= sizeof out->full) return -EINVAL;
        strcpy(out->full, pre);
        strcat(out->full, ref);
        return coru__url_parse(out, out->full);
    }
    if (ref[0] == '#') {
        *out = *base;
        return 0;
    }
    /* another scheme: a ':' in the first segment, before any '/', '?'
     * or '#' ("?t=10:30" is a query, not a scheme) */
    size_t first = strcspn(ref, "/?#");
    if (memchr(ref, ':', first)) return -EINVAL;
    *out = *base;
    size_t cap = sizeof out->target;
    int rc;
    if (ref[0] == '/') {
        rc = copy_target(out->target, cap, ref, true);
    } else if (ref[0] == '?') {
        size_t plen = strcspn(out->target, "?");
        rc = copy_target(out->target + plen, cap - plen, ref, false);
    } else {
        /* relative path: the base's directory, then ref */
        size_t plen = strcspn(out->target, "?"), dlen = 0;
        for (size_t i = 0; i < plen; i++)
            if (out->target[i] == '/') dlen = i + 1;
        rc = copy_target(out->target + dlen, cap - dlen, ref, false);
    }
    if (rc) return rc;
    remove_dots(out->target);
    make_full(out);
    return 0;
}
