/* The connection loop: read a request, dispatch it, queue the response,
 * decide keep-alive; in the style of Go's (*conn).serve, but batched as in
 * h2o: every complete request already received is answered before the
 * queued responses are written, in one write, and only then does the loop
 * wait for more bytes.
 *
 * Buffer: buf[0..len) holds what was received; the current request starts
 * at `start`. While a head is incomplete the buffer may be compacted
 * (moved to the front) or grown: no span points into it yet. Once llhttp
 * has parsed a head, its spans point into buf, so nothing before the end
 * of the head moves until the handler has returned; body bytes are copied
 * out as they are decoded, and the space after the head is reused for the
 * next body read.
 *
 * Idle and shutdown (server.c holds the other half): between requests the
 * loop publishes CONN_IDLE (seq_cst) and then reads the server's phase
 * (seq_cst); shutdown publishes DRAINING and then reads each connection's
 * state. So either the loop sees DRAINING and closes, or shutdown sees
 * IDLE, moves it to CLOSING by CAS and cancels the coroutine's read. When
 * bytes arrive the loop moves IDLE to BUSY by CAS; if that fails, shutdown
 * won, and the loop closes without serving them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define BUF_INIT 4096
#define SCRATCH_INIT 1024
#define BODY_ROOM 4096 /* at least this much room for each body read */

/* The most the input buffer grows to: a head at its limits (with empty
 * lines before it) and room for a body read after it. */
static size_t max_buf(const struct coru_http_server *s)
{
    return 2 * s->lim.max_line + s->lim.max_head + 8 + 64 * 1024;
}

static bool grow(struct coru__http_conn *c, size_t want)
{
    size_t cap = c->cap ? c->cap : BUF_INIT;
    while (cap < want) cap *= 2;
    if (cap > max_buf(c->s)) cap = max_buf(c->s);
    if (cap < want) return false;
    char *b = realloc(c->buf, cap);
    if (!b) return false;
    c->buf = b;
    c->cap = cap;
    return true;
}

/* Reads more bytes after buf[len], with at least min_room bytes of room
 * (made by compacting, if allowed, or growing; both move buf, so only
 * while no span points into it: min_room 0 never moves it). compact: the
 * current request's bytes may move to the front. Returns the count, 0 at
 * EOF, or -errno (-ETIMEDOUT, -ECANCELED, -ENOBUFS for a full buffer). */
static ssize_t fill(struct coru__http_conn *c, bool compact, size_t min_room, int64_t deadline)
{
    if (c->cap - c->len < min_room) {
        if (compact && c->start > 0) {
            memmove(c->buf, c->buf + c->start, c->len - c->start);
            c->len -= c->start;
            c->start = 0;
        }
        if (c->cap - c->len < min_room && !grow(c, c->len + min_room)) {
            if (c->cap == c->len) return -ENOBUFS;
        }
    }
    ssize_t n = c->io.read(c->io.ctx, c->buf + c->len, c->cap - c->len, deadline);
    if (n > 0) c->len += (size_t)n;
    return n;
}

static int body_sink(void *ctx, const char *at, size_t n)
{
    struct coru__http_conn *c = ctx;
    if (c->blen + n > c->s->lim.max_body) return -413;
    if (!coru__http_reserve(&c->body, &c->bcap, c->blen, n, 4096)) return -500;
    memcpy(c->body + c->blen, at, n);
    c->blen += n;
    return 0;
}

/* Between requests: true if the connection must close (draining). */
static bool enter_idle(struct coru__http_conn *c)
{
    atomic_store_explicit(&c->state, CONN_IDLE, memory_order_seq_cst); /* pairs with shutdown's
                                                                          phase store, see top */
    return coru__http_draining(c->s);
}

/* Bytes arrived (or the read ended): false if shutdown claimed us. */
static bool leave_idle(struct coru__http_conn *c)
{
    int idle = CONN_IDLE;
    return atomic_compare_exchange_strong_explicit(&c->state, &idle, CONN_BUSY, memory_order_seq_cst,
                                                   memory_order_seq_cst);
}

/* The path part of a target: origin-form "/p?q", absolute-form
 * "http://host/p?q" (its path), else the target itself ("*"). */
static void split_target(const char *t, size_t tl, const char **path, size_t *plen, const char **q, size_t *ql)
{
    const char *p = t, *end = t + tl;
    if (tl && t[0] != '/') {
        const char *scheme = NULL;
        if (tl > 7 && !strncasecmp(t, "http://", 7)) scheme = t + 7;
        if (tl > 8 && !strncasecmp(t, "https://", 8)) scheme = t + 8;
        if (scheme) {
            p = memchr(scheme, '/', (size_t)(end - scheme));
            if (!p) p = end;
        }
    }
    const char *qm = memchr(p, '?', (size_t)(end - p));
    const char *pe = qm ? qm : end;
    if (p == end) { /* "http://host" alone */
        *path = "/";
        *plen = 1;
    } else {
        *path = p;
        *plen = (size_t)(pe - p);
    }
    *q = qm ? qm + 1 : NULL;
    *ql = qm ? (size_t)(end - qm - 1) : 0;
}

/* Routes and answers one complete request. Returns whether the connection
 * may stay open. */
static bool dispatch(struct coru__http_conn *c, struct coru__http_msg *m)
{
    struct coru_http_server *s = c->s;
    bool keep = m->keep_alive && !m->upgrade && !coru__http_draining(s);
    const char *path;
    size_t plen;
    struct coru_http_req req = {.c = c, .msg = m};
    split_target(m->target, m->target_len, &path, &plen, &req.query, &req.query_len);
    char *dpath = coru__http_scratch(c, plen + 1);
    char *rscratch = coru__http_scratch(c, 2 * plen + 2);
    if (!dpath || !rscratch) {
        coru__http_error(c, 500, true, NULL, m->version);
        return false;
    }
    if (coru__http_pct_decode(dpath, path, plen, false) < 0) {
        coru__http_error(c, 400, !keep, NULL, m->version);
        return keep;
    }
    req.path = dpath;
    struct coru__route_match match;
    int rc = coru__router_match(&s->router, m->method, path, plen, rscratch, &match);
    if (rc < 0) {
        coru__http_error(c, -rc, !keep, rc == -405 ? match.allow : NULL, m->version);
        return keep;
    }
    req.match = &match;
    struct coru_http_resp w;
    coru__http_resp_init(&w, c, m->version, !strcmp(m->method, "HEAD"));
    w.close = !keep;
    rc = match.h(&req, &w, match.arg);
    bool ok = coru__http_resp_finish(&w, rc);
    coru__http_resp_fini(&w);
    return ok && keep;
}

void coru__http_conn_run(struct coru__http_conn *c)
{
    struct coru_http_server *s = c->s;
    const struct coru__http_limits *lim = &s->lim;
    c->fields = calloc(lim->max_fields ? lim->max_fields : 1, sizeof *c->fields);
    c->scratch = malloc(SCRATCH_INIT);
    c->scap = c->scratch ? SCRATCH_INIT : 0;
    if (!c->fields || !grow(c, BUF_INIT)) goto out;
    coru__http_parser_init(&c->parser, lim);

    for (;;) {
        if (c->start == c->len) c->start = c->len = 0;
        /* ---- the head: scan what is here, read until it is complete */
        struct coru__http_scan sc = {0};
        int64_t head_dl = 0;
        long hl;
        int version = 11; /* for error responses before the version is known */
        for (;;) {
            hl = coru__http_scan(&sc, c->buf + c->start, c->len - c->start, lim);
            if (hl != 0) break;
            if (!coru__http_flush(c)) goto out; /* the batch is answered */
            ssize_t n;
            if (c->len == c->start) {
                if (enter_idle(c)) goto out;
                n = fill(c, true, 1024, coru__http_after(s->o.idle_timeout));
                if (!leave_idle(c)) goto out;
                if (n <= 0) goto out; /* EOF, idle timeout, error: close quietly */
                head_dl = coru__http_after(s->o.header_timeout);
            } else {
                if (!head_dl) head_dl = coru__http_after(s->o.header_timeout);
                n = fill(c, true, 1024, head_dl);
                if (n == -ETIMEDOUT) {
                    coru__http_error(c, 408, true, NULL, version);
                    goto out_flush;
                }
                if (n <= 0) goto out;
            }
        }
        if (hl < 0) {
            coru__http_error(c, (int)-hl, true, NULL, version);
            goto out_flush;
        }
        /* Room for body reads after the head, made now: once llhttp has
         * parsed the head, the buffer must not move. */
        if (c->cap - (c->start + (size_t)hl) < BODY_ROOM && !grow(c, c->start + (size_t)hl + BODY_ROOM)) goto out;
        size_t head_at = c->start + sc.head_start;
        int vrc = coru__http_check_version(c->buf + head_at, sc.line_len);
        if (vrc < 0) {
            coru__http_error(c, -vrc, true, NULL, version);
            goto out_flush;
        }

        /* ---- llhttp over the head, then over the body */
        struct coru__http_msg m = {.fields = c->fields, .on_body = body_sink, .body_ctx = c};
        c->blen = 0;
        coru__http_parser_begin(&c->parser, &m);
        size_t used;
        int ev = coru__http_parse(&c->parser, c->buf + head_at, c->len - head_at, &used);
        if (ev < 0) {
            coru__http_error(c, -ev, true, NULL, version);
            goto out_flush;
        }
        if (ev == CORU__HTTP_NEED) { /* the scanner saw a whole head: cannot happen */
            coru__http_error(c, 400, true, NULL, version);
            goto out_flush;
        }
        version = m.version;
        size_t pos = head_at + used;
        coru__http_terminate(&m);
        if (ev == CORU__HTTP_HEAD) {
            if (m.version >= 11 && m.expect_other) {
                coru__http_error(c, 417, true, NULL, version);
                goto out_flush;
            }
            /* 100 Continue only when the client is waiting for it: no
             * body byte has come yet. */
            if (m.version >= 11 && m.expect_continue && pos == c->len) {
                if (!coru__http_out(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) || !coru__http_flush(c)) goto out;
            }
            int64_t body_dl = coru__http_after(s->o.body_timeout);
            size_t keep = pos; /* the head ends here and stays */
            for (;;) {
                if (pos < c->len) {
                    ev = coru__http_parse(&c->parser, c->buf + pos, c->len - pos, &used);
                    if (ev < 0) {
                        coru__http_error(c, -ev, true, NULL, version);
                        goto out_flush;
                    }
                    pos += used;
                    if (ev == CORU__HTTP_DONE) break;
                }
                /* every byte after the head is decoded into c->body */
                c->len = pos = keep;
                ssize_t n = fill(c, false, 0, body_dl); /* never moves buf */
                if (n == -ETIMEDOUT) {
                    coru__http_error(c, 408, true, NULL, version);
                    goto out_flush;
                }
                if (n <= 0) goto out;
            }
        }

        /* ---- the request is complete */
        bool keep_open = dispatch(c, &m);
        coru__http_scratch_reset(c);
        c->start = pos;
        if (c->broken) goto out;
        if (!keep_open) goto out_flush;
    }
out_flush:
    coru__http_flush(c);
out:
    free(c->buf);
    free(c->out);
    free(c->body);
    free(c->scratch);
    free(c->fields);
    c->buf = c->out = c->body = c->scratch = NULL;
    c->fields = NULL;
}
