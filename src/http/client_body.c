/* The HTTP client's exchanges: the request going out, the response head
 * coming in (interim 1xx skipped), redirects, the stale-connection retry,
 * bodies (Content-Length, chunked, until EOF; gzip decoded), and the
 * public response calls. See client.h; the pool is client.c's, and the
 * bytes move through the connection's stream (client_io.c), the same
 * calls for plain TCP and TLS.
 */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stddef.h>

#define FEED_MAX 16384      /* raw body bytes parsed per step */
#define DRAIN_MAX 65536     /* a redirect's body read to reuse its connection */
#define HEAD_LINE_MAX 8192  /* the status line */
#define ONE_RECORD 16384    /* TLS: a head and body up to this go in one record */
#define CHUNK_MAX 16384     /* a streamed body's chunk */
#define CHUNK_PRE 16        /* room before it for its size line */

/* ---------------------------------------------------------------- request */

struct obuf {
    char *p;
    size_t n, cap;
    bool oom;
};

static void put(struct obuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (!coru__http_reserve(&b->p, &b->cap, b->n, n + 1, 512)) {
        b->oom = true;
        return;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void puts_(struct obuf *b, const char *s) { put(b, s, strlen(s)); }

static bool value_ok(const char *v)
{
    for (; *v; v++)
        if (*v == '\r' || *v == '\n') return false;
    return true;
}

static bool token_ok(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (!coru__http_is_tchar((unsigned char)*s)) return false;
    return true;
}

static bool idempotent(const char *m)
{
    static const char *const ok[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(m, ok[i]) == 0) return true;
    return false;
}

struct send_plan {
    const char *method;
    const struct coru_http_request *req;
    const void *body;       /* NULL with body_len 0: none */
    size_t body_len;
    bool stream;            /* req->body_read */
    bool drop_auth;         /* a redirect left the origin: no Authorization,
                               Cookie or caller's Host */
    bool close;             /* the caller sent "Connection: close" */
    bool want_gzip;         /* we ask for gzip (and so decode it) */
};

/* The request head. Returns 0, -EINVAL (a bad method or header), -ENOMEM. */
/* Whether a Connection value lists "close". */
static bool has_close(const char *v)
{
    for (const char *p = v; (p = strcasestr(p, "close")); p += 5) {
        bool start = p == v || p[-1] == ',' || p[-1] == ' ' || p[-1] == '\t';
        char e = p[5];
        if (start && (e == '\0' || e == ',' || e == ' ' || e == '\t')) return true;
    }
    return false;
}

static int build_head(struct obuf *b, const struct send_plan *sp, const struct coru__url *u, bool no_gzip)
{
    if (!token_ok(sp->method)) return -EINVAL;
    bool ua = false, ae = false, host = false;
    const struct coru_http_request *req = sp->req;
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct coru_http_header *h = &req->headers[i];
        if (!h->name || !h->value || !token_ok(h->name) || !value_ok(h->value)) return -EINVAL;
        if (strcasecmp(h->name, "content-length") == 0 || strcasecmp(h->name, "transfer-encoding") == 0)
            return -EINVAL; /* the framing is ours */
        ua |= strcasecmp(h->name, "user-agent") == 0;
        ae |= strcasecmp(h->name, "accept-encoding") == 0;
        /* the caller's Host goes only to the origin it was meant for */
        host |= strcasecmp(h->name, "host") == 0 && !sp->drop_auth;
    }
    puts_(b, sp->method);
    puts_(b, " ");
    puts_(b, u->target);
    puts_(b, " HTTP/1.1\r\n");
    if (!host) {
        char hv[300];
        if (u->default_port)
            snprintf(hv, sizeof hv, "Host: %s%s%s\r\n", u->ipv6 ? "[" : "", u->host, u->ipv6 ? "]" : "");
        else
            snprintf(hv, sizeof hv, "Host: %s%s%s:%u\r\n", u->ipv6 ? "[" : "", u->host, u->ipv6 ? "]" : "",
                     u->port);
        puts_(b, hv);
    }
    if (!ua) puts_(b, "User-Agent: coru\r\n");
    if (!ae && !no_gzip) puts_(b, "Accept-Encoding: gzip\r\n");
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct coru_http_header *h = &req->headers[i];
        if (sp->drop_auth && (strcasecmp(h->name, "authorization") == 0 || strcasecmp(h->name, "cookie") == 0 ||
                              strcasecmp(h->name, "host") == 0))
            continue;
        puts_(b, h->name);
        puts_(b, ": ");
        puts_(b, h->value);
        puts_(b, "\r\n");
    }
    if (sp->stream) {
        puts_(b, "Transfer-Encoding: chunked\r\n");
    } else if (sp->body_len || strcmp(sp->method, "POST") == 0 || strcmp(sp->method, "PUT") == 0 ||
               strcmp(sp->method, "PATCH") == 0) {
        char cl[48];
        snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", sp->body_len);
        puts_(b, cl);
    }
    puts_(b, "\r\n");
    return b->oom ? -ENOMEM : 0;
}

/* Sends the head and the body (body_len bytes at body: what the head
 * does not hold already). A streamed body goes one write per chunk, its
 * size line and CRLF around it in one buffer (one TLS record each). */
static int send_request(struct coru__hconn *k, const struct obuf *head, const struct send_plan *sp,
                        const void *body, size_t body_len, int64_t deadline)
{
    if (!sp->stream) return coru__hconn_write2(k, head->p, head->n, body, body_len, deadline);
    int rc = coru__hconn_write(k, head->p, head->n, deadline);
    if (rc) return rc;
    char *tmp = malloc(CHUNK_PRE + CHUNK_MAX + 2);
    if (!tmp) return -ENOMEM;
    char *data = tmp + CHUNK_PRE;
    for (;;) {
        ssize_t n = sp->req->body_read(sp->req->body_ctx, data, CHUNK_MAX);
        if (n < 0 || n > CHUNK_MAX) {
            rc = n < 0 ? (int)n : -EINVAL; /* more than it was asked for */
            break;
        }
        if (n == 0) {
            rc = coru__hconn_write(k, "0\r\n\r\n", 5, deadline);
            break;
        }
        char sz[CHUNK_PRE];
        int sl = snprintf(sz, sizeof sz, "%zx\r\n", (size_t)n);
        memcpy(data - sl, sz, (size_t)sl);
        memcpy(data + n, "\r\n", 2);
        if ((rc = coru__hconn_write(k, data - sl, (size_t)sl + (size_t)n + 2, deadline))) break;
    }
    free(tmp);
    return rc;
}

/* ---------------------------------------------------------------- response */

/* Room for n more bytes in the pending buffer. */
static int pend_room(struct coru_http_response *r, size_t n)
{
    return coru__http_reserve(&r->pend, &r->pcap, r->plen, n, 16384) ? 0 : -ENOMEM;
}

static int append_pend(struct coru_http_response *r, const char *at, size_t n)
{
    if (pend_room(r, n)) return -ENOMEM;
    memcpy(r->pend + r->plen, at, n);
    r->plen += n;
    return 0;
}

/* llhttp's decoded body bytes: kept for read, through zlib for gzip. A
 * negative return stops llhttp; -400 there means "malformed" (EPROTO). */
static int on_body(void *ctx, const char *at, size_t n)
{
    struct coru_http_response *r = ctx;
    if (!r->gzip) return append_pend(r, at, n) ? -500 : 0;
    if (r->z_end) return n ? -400 : 0; /* bytes after the gzip stream */
    r->z.next_in = (Bytef *)(uintptr_t)at;
    r->z.avail_in = (uInt)n;
    while (r->z.avail_in) {
        /* straight into the pending buffer: no buffer on the caller's
         * stack, which may be a 16 KiB coroutine stack */
        if (pend_room(r, 16384)) return -500;
        r->z.next_out = (Bytef *)(r->pend + r->plen);
        r->z.avail_out = 16384;
        int zr = inflate(&r->z, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END) return -400;
        size_t got = 16384 - r->z.avail_out;
        r->plen += got;
        if (zr == Z_STREAM_END) {
            r->z_end = true;
            if (r->z.avail_in) return -400;
            break;
        }
        if (!got && r->z.avail_in) return -400; /* no progress */
    }
    return 0;
}

static int map_parse_error(int st)
{
    return st == -500 ? -ENOMEM : -EPROTO;
}

static const char *find_field(const struct coru_http_response *r, const char *name)
{
    for (unsigned i = 0; i < r->msg.nfields; i++)
        if (strcasecmp(r->msg.fields[i].name, name) == 0) return r->msg.fields[i].value;
    return NULL;
}

/* The message ended: its connection may be pooled if the server keeps it
 * alive and no stray bytes follow (a second, unasked response). */
static int message_done(struct coru_http_response *r)
{
    struct coru__hconn *k = r->conn;
    r->done = true;
    r->reusable = r->msg.keep_alive && !r->msg.until_eof && !r->req_close && k && k->start == k->len;
    if (r->gzip && !r->z_end) return -EPROTO; /* the gzip stream was cut */
    return 0;
}

/* Reads bytes into the connection's buffer: 0 at EOF (TLS: close_notify),
 * count, or -errno (TLS: -ECONNABORTED, an EOF without close_notify: a
 * body that ends with the connection is then an error, as it may have
 * been cut short by someone other than the server). */
static ssize_t fill(struct coru_http_client *c, struct coru__hconn *k, size_t room_max, int64_t deadline)
{
    if (k->start == k->len) k->start = k->len = 0;
    if (k->len == k->cap) {
        if (k->start) {
            memmove(k->buf, k->buf + k->start, k->len - k->start);
            k->len -= k->start;
            k->start = 0;
        } else {
            if (k->cap >= room_max) return -EMSGSIZE;
            size_t cap = k->cap * 2 > room_max ? room_max : k->cap * 2;
            char *nb = realloc(k->buf, cap);
            if (!nb) return -ENOMEM;
            k->buf = nb;
            k->cap = cap;
        }
    }
    return coru__hconn_read(k, k->buf + k->len, k->cap - k->len, coru__hclient_min_dl(deadline, c->o.read_timeout));
}

/* Reads the response head (skipping interim 1xx ones) on r->conn. *got:
 * whether any byte of a response arrived. Returns 0 or -errno. */
static int read_head(struct coru_http_response *r, bool head_request, bool *got)
{
    struct coru_http_client *c = r->c;
    struct coru__hconn *k = r->conn;
    r->lim = (struct coru__http_limits){.max_line = HEAD_LINE_MAX,
                                        .max_head = c->o.max_header_bytes,
                                        .max_fields = CORU__HMAX_FIELDS,
                                        .max_body = UINT64_MAX,
                                        .max_ext = 4096};
    size_t room_max = c->o.max_header_bytes + HEAD_LINE_MAX + 4096;
    for (;;) {
        struct coru__http_scan sc = {0};
        long n;
        for (;;) {
            n = coru__http_scan(&sc, k->buf + k->start, k->len - k->start, &r->lim);
            if (n > 0) break;
            if (n == -414 || n == -431) return -EMSGSIZE;
            if (n < 0) return -EPROTO;
            /* (fill may move the bytes to the buffer's start: the scan's
             * positions count from buf + start, so they still hold) */
            ssize_t rd = fill(c, k, room_max, r->deadline);
            if (rd == -EMSGSIZE) return -EMSGSIZE;
            if (rd < 0) return (int)rd;
            if (rd == 0) return -ECONNRESET; /* closed before a whole head */
            k->len += (size_t)rd;
            *got = true;
        }
        free(r->head);
        r->head = malloc((size_t)n + 1);
        if (!r->head) return -ENOMEM;
        memcpy(r->head, k->buf + k->start, (size_t)n);
        k->start += (size_t)n;
        coru__http_parser_init_response(&r->parser, &r->lim);
        memset(&r->msg, 0, sizeof r->msg);
        r->msg.fields = r->fields;
        r->msg.no_body = head_request;
        r->msg.on_body = on_body;
        r->msg.body_ctx = r;
        coru__http_parser_begin(&r->parser, &r->msg);
        size_t used = 0, hs = sc.head_start;
        int ev = coru__http_parse(&r->parser, r->head + hs, (size_t)n - hs, &used);
        if (ev < 0 || ev == CORU__HTTP_NEED) return -EPROTO;
        /* three digits, the first 1-9 (llhttp takes "050" as 50) */
        if (r->msg.status < 100 || r->msg.status > 999) return -EPROTO;
        coru__http_terminate(&r->msg);
        if (r->msg.status >= 100 && r->msg.status < 200 && r->msg.status != 101) continue; /* interim */
        const char *ce = find_field(r, "content-encoding");
        r->gzip = false;
        if (ev == CORU__HTTP_HEAD && ce && strcasecmp(ce, "gzip") == 0 && !c->o.no_gzip) {
            r->gzip = true;
            memset(&r->z, 0, sizeof r->z);
            if (inflateInit2(&r->z, 16 + MAX_WBITS) != Z_OK) return -ENOMEM;
            r->z_init = true;
            r->z_end = false;
        }
        r->head_only = ev == CORU__HTTP_DONE;
        r->done = r->reusable = false;
        if (r->head_only) return message_done(r);
        return 0;
    }
}

/* Makes progress on the body: parses buffered bytes, or reads more. */
static int body_step(struct coru_http_response *r, int64_t deadline)
{
    struct coru__hconn *k = r->conn;
    if (k->start < k->len) {
        size_t avail = k->len - k->start, slice = avail < FEED_MAX ? avail : FEED_MAX, used = 0;
        int ev = coru__http_parse(&r->parser, k->buf + k->start, slice, &used);
        if (ev < 0) return map_parse_error(ev);
        k->start += used;
        if (ev == CORU__HTTP_DONE) return message_done(r);
        return 0;
    }
    ssize_t rd = fill(r->c, k, k->cap, deadline);
    if (rd < 0) return (int)rd;
    if (rd == 0) {
        if (r->msg.until_eof && coru__http_parse_eof(&r->parser) == CORU__HTTP_DONE) return message_done(r);
        return -ECONNRESET; /* cut short */
    }
    k->len += (size_t)rd;
    return 0;
}

/* Ends the response's use of its connection: back to the pool when the
 * exchange finished cleanly, else closed. */
static void release_conn(struct coru_http_response *r)
{
    if (!r->conn) return;
    if (r->done && r->reusable && !r->err)
        coru__hclient_put_conn(r->c, r->conn);
    else
        coru__hclient_close_conn(r->c, r->conn);
    r->conn = NULL;
}

static void reset_body(struct coru_http_response *r)
{
    if (r->z_init) inflateEnd(&r->z);
    r->z_init = r->gzip = r->z_end = false;
    r->plen = r->ppos = 0;
    r->err = 0;
    r->done = r->reusable = r->head_only = false;
}

ssize_t coru_http_response_read(coru_http_response *r, void *buf, size_t n, int64_t deadline)
{
    if (!r || (!buf && n)) return -EINVAL;
    if (deadline == CORU_NEVER) deadline = r->deadline;
    for (;;) {
        if (r->ppos < r->plen) {
            size_t t = r->plen - r->ppos < n ? r->plen - r->ppos : n;
            memcpy(buf, r->pend + r->ppos, t);
            r->ppos += t;
            if (r->ppos == r->plen) r->ppos = r->plen = 0;
            return (ssize_t)t;
        }
        if (r->err) return r->err;
        if (r->done || !r->conn) return 0;
        if (n == 0) return 0;
        int rc = body_step(r, deadline);
        if (rc) {
            r->err = rc;
            release_conn(r); /* closes it: err is set */
        }
    }
}

int coru_http_response_read_all(coru_http_response *r, char **body, size_t *len, size_t limit, int64_t deadline)
{
    if (!r || !body) return -EINVAL;
    if (!limit) limit = r->c->o.max_body;
    size_t cap = 0, n = 0;
    char *b = NULL;
    for (;;) {
        if (!coru__http_reserve(&b, &cap, n, 2, 1024)) {
            free(b);
            return -ENOMEM;
        }
        ssize_t got = coru_http_response_read(r, b + n, cap - n - 1, deadline);
        if (got < 0) {
            free(b);
            return (int)got;
        }
        if (got == 0) break;
        n += (size_t)got;
        if (n > limit) {
            free(b);
            r->err = -EFBIG;
            release_conn(r);
            return -EFBIG;
        }
    }
    b[n] = '\0';
    *body = b;
    if (len) *len = n;
    return 0;
}

void coru_http_response_free(coru_http_response *r)
{
    if (!r) return;
    release_conn(r);
    if (r->z_init) inflateEnd(&r->z);
    free(r->head);
    free(r->pend);
    free(r);
}

int coru_http_response_status(const coru_http_response *r) { return r ? r->msg.status : -EINVAL; }

const char *coru_http_response_reason(const coru_http_response *r)
{
    return r && r->msg.reason ? r->msg.reason : "";
}

const char *coru_http_response_url(const coru_http_response *r) { return r ? r->url.full : NULL; }

/* Fields a gzip decoding made untrue are hidden, as Go's Transport does. */
static bool hidden(const coru_http_response *r, const struct coru__http_field *f)
{
    return r->gzip && (strcasecmp(f->name, "content-encoding") == 0 || strcasecmp(f->name, "content-length") == 0);
}

const char *coru_http_response_header(const coru_http_response *r, const char *name)
{
    if (!r || !name) return NULL;
    for (unsigned i = 0; i < r->msg.nfields; i++) {
        const struct coru__http_field *f = &r->msg.fields[i];
        if (strcasecmp(f->name, name) == 0 && !hidden(r, f)) return f->value;
    }
    return NULL;
}

size_t coru_http_response_header_count(const coru_http_response *r)
{
    if (!r) return 0;
    size_t n = 0;
    for (unsigned i = 0; i < r->msg.nfields; i++) n += !hidden(r, &r->msg.fields[i]);
    return n;
}

int coru_http_response_header_at(const coru_http_response *r, size_t i, const char **name, const char **value)
{
    if (!r) return -EINVAL;
    for (unsigned j = 0; j < r->msg.nfields; j++) {
        const struct coru__http_field *f = &r->msg.fields[j];
        if (hidden(r, f)) continue;
        if (i-- == 0) {
            if (name) *name = f->name;
            if (value) *value = f->value;
            return 0;
        }
    }
    return -ERANGE;
}

/* ---------------------------------------------------------------- exchange */

/* One request on one connection, with the stale-connection retry. */
static int exchange(struct coru_http_response *r, const struct send_plan *sp, int64_t deadline)
{
    struct coru_http_client *c = r->c;
    struct obuf head = {0};
    int rc = build_head(&head, sp, &r->url, c->o.no_gzip);
    if (rc) {
        free(head.p);
        return rc;
    }
    /* TLS: a small body joins the head in one buffer, so that a small
     * request is one record (plain TCP writes both with one writev) */
    const void *body = sp->body;
    size_t body_len = sp->body_len;
    if (r->url.https && !sp->stream && body_len && head.n + body_len <= ONE_RECORD) {
        put(&head, body, body_len);
        if (head.oom) {
            free(head.p);
            return -ENOMEM;
        }
        body = NULL;
        body_len = 0;
    }
    bool head_request = strcmp(sp->method, "HEAD") == 0;
    r->req_close = false;
    for (size_t i = 0; i < sp->req->nheaders; i++)
        if (strcasecmp(sp->req->headers[i].name, "connection") == 0 && has_close(sp->req->headers[i].value))
            r->req_close = true; /* servers only SHOULD echo it */
    for (int attempt = 0;; attempt++) {
        bool reused = false, got = false;
        rc = coru__hclient_get_conn(c, &r->url, attempt > 0, deadline, &r->conn, &reused);
        if (rc) break;
        r->conn->start = r->conn->len = 0;
        rc = send_request(r->conn, &head, sp, body, body_len, deadline);
        if (rc == 0) rc = read_head(r, head_request, &got);
        if (rc == 0) break;
        coru__hclient_close_conn(c, r->conn);
        r->conn = NULL;
        /* The server closed a kept-alive connection before answering
         * (its idle timeout raced our request): once more, on a new one.
         * Over TLS the end may come as close_notify (read_head's
         * -ECONNRESET) or as an EOF without it (-ECONNABORTED). */
        bool stale = rc == -ECONNRESET || rc == -EPIPE || rc == -ECONNABORTED;
        if (!(stale && reused && !got && attempt == 0 && idempotent(sp->method) && !sp->stream)) break;
    }
    free(head.p);
    return rc;
}

static bool is_redirect(int s) { return s == 301 || s == 302 || s == 303 || s == 307 || s == 308; }

int coru_http_do(coru_http_client *c, const struct coru_http_request *req, coru_http_response **out, int64_t deadline)
{
    if (!c || !req || !req->url || !out || (req->body && req->body_read) || (!req->body && req->body_len))
        return -EINVAL;
    *out = NULL;
    /* malloc, not calloc: the URL and field arrays (14 KiB) are written
     * before they are read; the rest is zeroed */
    struct coru_http_response *r = malloc(sizeof *r);
    struct coru__url *origin = NULL, *next = NULL; /* made at the first redirect */
    int rc = r ? 0 : -ENOMEM;
    if (!rc) {
        memset(r, 0, offsetof(struct coru_http_response, url));
        r->c = c;
        r->deadline = deadline;
        rc = coru__url_parse(&r->url, req->url);
    }
    if (rc) goto out;
    char method[32];
    const char *m = req->method ? req->method : "GET";
    if (strlen(m) >= sizeof method) {
        rc = -EINVAL;
        goto out;
    }
    strcpy(method, m);
    struct send_plan sp = {.method = method, .req = req, .body = req->body, .body_len = req->body_len,
                           .stream = req->body_read != NULL};
    for (unsigned hops = 0;; hops++) {
        reset_body(r);
        rc = exchange(r, &sp, deadline);
        if (rc) break;
        const char *loc = find_field(r, "location");
        if (c->o.no_redirects || !is_redirect(r->msg.status) || !loc) break;
        if (hops == c->o.max_redirects) {
            rc = -ELOOP;
            break;
        }
        if (!origin) {
            origin = malloc(sizeof *origin);
            next = malloc(sizeof *next);
            if (!origin || !next) {
                rc = -ENOMEM;
                break;
            }
            *origin = r->url;
        }
        rc = coru__url_resolve(next, &r->url, loc);
        if (rc) {
            rc = -EPROTO; /* a Location we cannot follow */
            break;
        }
        int st = r->msg.status;
        if (st == 301 || st == 302 || st == 303) {
            if (strcmp(method, "HEAD") != 0) strcpy(method, "GET");
            sp.body = NULL;
            sp.body_len = 0;
            sp.stream = false;
        } else if (sp.stream) {
            rc = -EPROTO; /* 307/308 must send the body again: a stream cannot */
            break;
        }
        /* Read a small body to the end, so the connection is reused. */
        char sink[1024];
        size_t drained = 0;
        ssize_t got;
        while (drained <= DRAIN_MAX && (got = coru_http_response_read(r, sink, sizeof sink, deadline)) > 0)
            drained += (size_t)got;
        release_conn(r);
        sp.drop_auth = sp.drop_auth || !coru__url_same_origin(origin, next);
        r->url = *next;
    }
out:
    free(origin);
    free(next);
    if (rc) {
        coru_http_response_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int coru_http_get(coru_http_client *c, const char *url, int *status, char **body, size_t *len, int64_t deadline)
{
    struct coru_http_request req = {.url = url};
    coru_http_response *r;
    int rc = coru_http_do(c, &req, &r, deadline);
    if (rc) return rc;
    if (status) *status = coru_http_response_status(r);
    char *b = NULL;
    size_t n = 0;
    rc = coru_http_response_read_all(r, &b, &n, 0, deadline);
    coru_http_response_free(r);
    if (rc) return rc;
    if (body)
        *body = b;
    else
        free(b);
    if (len) *len = n;
    return 0;
}

/* ---------------------------------------------------------------- tests */

int coru__hclient_read_one(struct coru_http_client *c, int fd, bool head_request, size_t *body_len)
{
    struct coru__hhost *h = calloc(1, sizeof *h);
    struct coru__hconn *k = calloc(1, sizeof *k);
    struct coru_http_response *r = calloc(1, sizeof *r);
    if (!h || !k || !r || !(k->buf = malloc(16384))) {
        free(h);
        if (k) free(k->buf);
        free(k);
        free(r);
        coru_close(fd);
        return -ENOMEM;
    }
    /* counted as if the pool had dialled it, so that closing it balances */
    h->nconns = 1;
    pthread_mutex_lock(&c->lock);
    c->nconns++;
    pthread_mutex_unlock(&c->lock);
    k->fd = fd;
    k->h = h;
    k->cap = 16384;
    r->c = c;
    r->conn = k;
    r->deadline = CORU_NEVER;
    bool got = false;
    int rc = read_head(r, head_request, &got);
    size_t total = 0;
    if (rc == 0) {
        char *b = malloc(4096);
        ssize_t n = b ? 0 : -ENOMEM;
        while (b && (n = coru_http_response_read(r, b, 4096, CORU_NEVER)) > 0) total += (size_t)n;
        free(b);
        rc = n < 0 ? (int)n : r->msg.status;
    }
    if (body_len) *body_len = total;
    r->reusable = false; /* never pooled: h is not the session's */
    coru_http_response_free(r);
    free(h);
    return rc;
}
