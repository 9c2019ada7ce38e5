/* Shared by the HTTP server tests: a server fixture with a set of routes,
 * and a raw HTTP/1.1 client (plain bytes over a coru socket) that reads
 * responses one after another, pipelined or not, so that tests can say
 * exactly what goes on the wire. */
#ifndef CORU_TEST_HTTP_HELPERS_H
#define CORU_TEST_HTTP_HELPERS_H

#include <coru/http.h>
#include <coru/tls.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "coru.h"
#include "helpers.h"

#define MS (1000 * 1000LL)
#define SEC (1000 * MS)

/* ------------------------------------------------------------ routes */

static _Atomic int handled; /* requests that reached a handler */

static int h_text(coru_http_resp *rs, const char *s)
{
    return coru_http_resp_send(rs, 200, "text/plain", s, strlen(s));
}

static int h_root(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    atomic_fetch_add(&handled, 1);
    return h_text(rs, "root");
}

/* "<what> <a>" */
static int h_fmt(coru_http_resp *rs, const char *what, const char *a)
{
    char b[4096];
    snprintf(b, sizeof b, "%s %s", what, a ? a : "(null)");
    return h_text(rs, b);
}

static int h_hello(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    atomic_fetch_add(&handled, 1);
    return h_fmt(rs, "hello", coru_http_req_param(rq, "name"));
}

static int h_files(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    atomic_fetch_add(&handled, 1);
    return h_fmt(rs, "files", coru_http_req_param(rq, "path"));
}

static int h_special(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    atomic_fetch_add(&handled, 1);
    return h_text(rs, "special");
}

static int h_axc(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    return h_fmt(rs, "axc", coru_http_req_param(rq, "x"));
}

static int h_ybd(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    return h_fmt(rs, "ybd", coru_http_req_param(rq, "y"));
}

static int h_echo(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    atomic_fetch_add(&handled, 1);
    size_t n;
    const void *b = coru_http_req_body(rq, &n);
    return coru_http_resp_send(rs, 200, "application/octet-stream", b, n);
}

static int h_method(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    atomic_fetch_add(&handled, 1);
    return h_fmt(rs, "method", coru_http_req_method(rq));
}

static int h_stream(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    atomic_fetch_add(&handled, 1);
    int rc = coru_http_resp_header(rs, "Content-Type", "text/plain");
    if (!rc) rc = coru_http_resp_write(rs, "one,", 4);
    if (!rc) rc = coru_http_resp_write(rs, "two,", 4);
    if (!rc) rc = coru_http_resp_write(rs, "three", 5);
    if (!rc) rc = coru_http_resp_end(rs);
    return rc;
}

static int h_stream_len(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    int rc = coru_http_resp_length(rs, 10);
    if (!rc) rc = coru_http_resp_write(rs, "01234", 5);
    if (!rc) rc = coru_http_resp_write(rs, "56789", 5);
    if (!rc) rc = coru_http_resp_write(rs, "x", 1) == -EMSGSIZE ? 0 : -EIO;
    if (!rc) rc = coru_http_resp_end(rs);
    return rc;
}

static int h_query(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    char b[512];
    const char *q = coru_http_req_query(rq, "q"), *r = coru_http_req_query(rq, "r");
    snprintf(b, sizeof b, "q=%s,r=%s,path=%s", q ? q : "(null)", r ? r : "(null)", coru_http_req_path(rq));
    return h_text(rs, b);
}

static int h_headers(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    char b[1024];
    size_t o = 0;
    const char *n, *v;
    for (size_t i = 0; coru_http_req_header_at(rq, i, &n, &v) == 0; i++)
        if (!strcasecmp(n, "x-test")) o += (size_t)snprintf(b + o, sizeof b - o, "[%s]", v);
    const char *one = coru_http_req_header(rq, "X-TEST");
    snprintf(b + o, sizeof b - o, " first=%s", one ? one : "(null)");
    coru_http_resp_header(rs, "X-Reply", "yes");
    return h_text(rs, b);
}

static int h_slow(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    atomic_fetch_add(&handled, 1);
    int rc = coru_sleep(300 * MS);
    if (rc) return rc;
    return h_text(rs, "slow");
}

static _Atomic int cut_handlers;

static int h_forever(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    atomic_fetch_add(&handled, 1);
    int rc = coru_sleep(30 * SEC);
    if (rc == -ECANCELED) atomic_fetch_add(&cut_handlers, 1);
    return rc ? rc : h_text(rs, "late");
}

static int h_fail(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    return -EIO;
}

static int h_nothing(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    return 0;
}

static int h_close(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    coru_http_resp_header(rs, "Connection", "close");
    return h_text(rs, "bye");
}

static int h_big(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    static char big[256 * 1024];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + i % 26);
    return coru_http_resp_send(rs, 200, "text/plain", big, sizeof big);
}

/* Streams 64 MiB in 64 KiB writes; the last write's result is kept. */
static _Atomic int huge_rc = 1;

static int h_huge(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    static char chunk[64 * 1024];
    int rc = coru_http_resp_length(rs, (uint64_t)1024 * sizeof chunk);
    for (int i = 0; !rc && i < 1024; i++) rc = coru_http_resp_write(rs, chunk, sizeof chunk);
    if (!rc) rc = coru_http_resp_end(rs);
    atomic_store(&huge_rc, rc);
    return rc;
}

/* ------------------------------------------------------------ the fixture */

struct fx {
    coru_http_server *srv;
    uint16_t port;
    coru_t *serve;
    int serve_rc;
};

static void *fx_serve(void *arg)
{
    struct fx *f = arg;
    f->serve_rc = coru_http_server_serve(f->srv);
    return NULL;
}

/* From a coroutine: a server on 127.0.0.1:<free port> with every test
 * route, serving. */
__attribute__((unused)) static void fx_start(struct fx *f, const struct coru_http_opts *o)
{
    memset(f, 0, sizeof *f);
    atomic_store(&handled, 0);
    atomic_store(&cut_handlers, 0);
    cr_assert_eq(coru_http_server_create(&f->srv, "127.0.0.1", 0, o), 0);
    f->port = (uint16_t)coru_http_server_port(f->srv);
    struct {
        const char *m, *p;
        coru_http_handler h;
    } routes[] = {
        {"GET", "/", h_root},
        {"GET", "/hello/{name}", h_hello},
        {"GET", "/files/{path...}", h_files},
        {"GET", "/files/special", h_special},
        {"GET", "/a/{x}/c", h_axc},
        {"GET", "/{y}/b/d", h_ybd},
        {"POST", "/echo", h_echo},
        {"PUT", "/echo", h_echo},
        {"*", "/any", h_method},
        {"GET", "/stream", h_stream},
        {"GET", "/stream-len", h_stream_len},
        {"GET", "/query", h_query},
        {"GET", "/headers", h_headers},
        {"GET", "/slow", h_slow},
        {"GET", "/forever", h_forever},
        {"GET", "/fail", h_fail},
        {"GET", "/nothing", h_nothing},
        {"GET", "/close", h_close},
        {"GET", "/big", h_big},
        {"DELETE", "/hello/{name}", h_hello},
        {"GET", "/huge", h_huge},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        cr_assert_eq(coru_http_route(f->srv, routes[i].m, routes[i].p, routes[i].h, NULL), 0, "%s %s", routes[i].m,
                     routes[i].p);
    cr_assert_eq(coru_spawn(&f->serve, fx_serve, f, NULL), 0);
}

/* Shuts the server down (deadline `grace` from now) and waits for serve. */
__attribute__((unused)) static void fx_stop(struct fx *f, int64_t grace)
{
    cr_assert_eq(coru_http_server_shutdown(f->srv, coru_now() + grace), 0);
    cr_assert_eq(coru_join_dl(f->serve, NULL, coru_now() + grace + 10 * SEC), 0, "serve did not return");
    cr_assert_eq(f->serve_rc, 0);
    coru_http_server_destroy(f->srv);
}

/* ------------------------------------------------------------ a raw client */

struct cl {
    int fd;
    coru_tls *tls;      /* HTTPS (cl_open_tls): every byte goes through it */
    char buf[512 * 1024];
    size_t len, pos;
    bool eof;
};

struct resp {
    int status;
    char head[4096];    /* the header lines, "\r\n"-separated */
    char *body;         /* malloc'd, NUL-terminated */
    size_t blen;
    bool chunked;
};

static void resp_free(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

__attribute__((unused)) static struct cl *cl_open(uint16_t port)
{
    struct cl *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    c->fd = coru_tcp_connect("127.0.0.1", port, coru_now() + 10 * SEC);
    cr_assert_geq(c->fd, 0, "connect: %s", strerror(-c->fd));
    return c;
}

/* A client over TLS: cfg is a client configuration, host the name to
 * verify. The handshake is done before it returns. */
__attribute__((unused)) static struct cl *cl_open_tls(uint16_t port, coru_tls_config *cfg, const char *host)
{
    struct cl *c = cl_open(port);
    cr_assert_eq(coru_tls_client(&c->tls, cfg, c->fd, host), 0);
    int rc = coru_tls_handshake(c->tls, coru_now() + 10 * SEC);
    cr_assert_eq(rc, 0, "handshake: %s (%s)", strerror(-rc), coru_tls_reason(c->tls));
    return c;
}

__attribute__((unused)) static void cl_close(struct cl *c)
{
    if (c->tls)
        coru_tls_close(c->tls);
    else
        coru_close(c->fd);
    free(c);
}

__attribute__((unused)) static void cl_send(struct cl *c, const char *s, size_t n)
{
    int64_t dl = coru_now() + 10 * SEC;
    cr_assert_eq(c->tls ? coru_tls_write(c->tls, s, n, dl) : coru_write_all(c->fd, s, n, dl), (ssize_t)n);
}

__attribute__((unused)) static void cl_sends(struct cl *c, const char *s)
{
    cl_send(c, s, strlen(s));
}

/* More bytes; false at EOF (or a reset: the server closed). */
static bool cl_fill(struct cl *c, int64_t dl)
{
    if (c->pos == c->len) c->pos = c->len = 0;
    if (c->len == sizeof c->buf) {
        memmove(c->buf, c->buf + c->pos, c->len - c->pos);
        c->len -= c->pos;
        c->pos = 0;
    }
    ssize_t n = c->tls ? coru_tls_read(c->tls, c->buf + c->len, sizeof c->buf - c->len, dl)
                       : coru_read_dl(c->fd, c->buf + c->len, sizeof c->buf - c->len, dl);
    if (n == -ETIMEDOUT) cr_assert_fail("no answer from the server in time");
    if (n <= 0) {
        c->eof = true;
        return false;
    }
    c->len += (size_t)n;
    return true;
}

/* A line without its CRLF into out; false at EOF. */
static bool cl_line(struct cl *c, char *out, size_t cap, int64_t dl)
{
    for (;;) {
        char *nl = memchr(c->buf + c->pos, '\n', c->len - c->pos);
        if (nl) {
            size_t n = (size_t)(nl - (c->buf + c->pos));
            cr_assert(n >= 1 && nl[-1] == '\r', "a response line without CRLF");
            cr_assert_lt(n - 1, cap);
            memcpy(out, c->buf + c->pos, n - 1);
            out[n - 1] = '\0';
            c->pos += n + 1;
            return true;
        }
        if (!cl_fill(c, dl)) return false;
    }
}

static bool cl_bytes(struct cl *c, char *out, size_t n, int64_t dl)
{
    while (c->len - c->pos < n) {
        size_t have = c->len - c->pos;
        memcpy(out, c->buf + c->pos, have);
        out += have;
        n -= have;
        c->pos = c->len;
        if (!cl_fill(c, dl)) return false;
    }
    memcpy(out, c->buf + c->pos, n);
    c->pos += n;
    return true;
}

/* The value of a header in r (first, case-insensitive), or NULL. */
__attribute__((unused)) static const char *hdr(const struct resp *r, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = r->head; *p;) {
        const char *e = strstr(p, "\r\n");
        if (!e) e = p + strlen(p);
        if ((size_t)(e - p) > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            size_t vl = (size_t)(e - v);
            if (vl >= cap) vl = cap - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return out;
        }
        p = *e ? e + 2 : e;
    }
    return NULL;
}

/* Reads one response. head_only: a response to HEAD (no body whatever its
 * headers say). Returns false at EOF before the status line. */
__attribute__((unused)) static bool cl_resp(struct cl *c, struct resp *r, bool head_only)
{
    int64_t dl = coru_now() + 10 * SEC;
    memset(r, 0, sizeof *r);
    char line[4096];
    if (!cl_line(c, line, sizeof line, dl)) return false;
    cr_assert_eq(strncmp(line, "HTTP/1.1 ", 9), 0, "status line: %s", line);
    r->status = atoi(line + 9);
    size_t ho = 0;
    for (;;) {
        cr_assert(cl_line(c, line, sizeof line, dl), "EOF in the head");
        if (!line[0]) break;
        size_t l = strlen(line);
        cr_assert_lt(ho + l + 3, sizeof r->head);
        memcpy(r->head + ho, line, l);
        memcpy(r->head + ho + l, "\r\n", 3);
        ho += l + 2;
    }
    char v[64];
    r->body = malloc(1);
    r->body[0] = '\0';
    if (head_only || r->status == 204 || r->status == 304 || r->status / 100 == 1) return true;
    if (hdr(r, "Content-Length", v, sizeof v)) {
        size_t n = (size_t)atoll(v);
        r->body = realloc(r->body, n + 1);
        cr_assert(cl_bytes(c, r->body, n, dl), "EOF in the body");
        r->body[n] = '\0';
        r->blen = n;
    } else if (hdr(r, "Transfer-Encoding", v, sizeof v)) {
        cr_assert_str_eq(v, "chunked");
        r->chunked = true;
        for (;;) {
            cr_assert(cl_line(c, line, sizeof line, dl), "EOF in a chunk size");
            size_t n = (size_t)strtoul(line, NULL, 16);
            if (n == 0) {
                cr_assert(cl_line(c, line, sizeof line, dl));
                cr_assert_str_eq(line, "", "trailers are not sent");
                break;
            }
            r->body = realloc(r->body, r->blen + n + 1);
            cr_assert(cl_bytes(c, r->body + r->blen, n, dl));
            r->blen += n;
            r->body[r->blen] = '\0';
            cr_assert(cl_line(c, line, sizeof line, dl));
            cr_assert_str_eq(line, "");
        }
    } else {
        /* until close */
        while (cl_fill(c, dl)) {
        }
        size_t n = c->len - c->pos;
        r->body = realloc(r->body, n + 1);
        memcpy(r->body, c->buf + c->pos, n);
        r->body[n] = '\0';
        r->blen = n;
        c->pos = c->len;
    }
    return true;
}

/* Whether the server closes the connection next (EOF within 5 s; over
 * TLS: a clean close, close_notify first). */
__attribute__((unused)) static bool cl_closed(struct cl *c)
{
    if (c->pos < c->len) return false;
    char b[64];
    if (c->tls) return coru_tls_read(c->tls, b, sizeof b, coru_now() + 5 * SEC) == 0;
    ssize_t n = coru_read_dl(c->fd, b, sizeof b, coru_now() + 5 * SEC);
    return n == 0 || n == -ECONNRESET;
}

/* One request on a new connection: its response (and whether the server
 * then closed). */
__attribute__((unused)) static void one(uint16_t port, const char *req, struct resp *r, bool *closed)
{
    struct cl *c = cl_open(port);
    cl_sends(c, req);
    cr_assert(cl_resp(c, r, !strncmp(req, "HEAD ", 5)), "no response to: %s", req);
    if (closed) *closed = cl_closed(c);
    cl_close(c);
}

#endif
