/* What a handler sees: the request accessors and the response writer;
 * also the server's own error responses and the connection's output
 * queue. One file because they share the response head's encoding.
 *
 * Output: responses are appended to the connection's output buffer and
 * leave in one write per batch of pipelined requests (conn.c flushes
 * before it waits for more input). A streamed body goes to the socket at
 * each coru_http_resp_write instead, after whatever was queued before it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define FLUSH_AT (64 * 1024) /* queued output that is written at once */

/* ---------------------------------------------------------------- output */

/* Room for n more bytes of output. */
static bool out_reserve(struct coru__http_conn *c, size_t n)
{
    return coru__http_reserve(&c->out, &c->ocap, c->olen, n, 4096);
}

bool coru__http_out(struct coru__http_conn *c, const void *p, size_t n)
{
    if (!out_reserve(c, n)) return false;
    memcpy(c->out + c->olen, p, n);
    c->olen += n;
    return true;
}

bool coru__http_flush(struct coru__http_conn *c)
{
    if (c->broken) return false;
    if (!c->olen) return true;
    int64_t dl = coru__http_after(c->s->o.write_timeout);
    ssize_t r = c->io.write(c->io.ctx, c->out, c->olen, dl);
    c->olen = 0;
    if (r < 0) {
        c->broken = true;
        return false;
    }
    if (c->ocap > 4 * FLUSH_AT) { /* one large batch: do not keep its buffer */
        free(c->out);
        c->out = NULL;
        c->ocap = 0;
    }
    return true;
}

struct sblock {
    struct sblock *next;
    char data[];
};

char *coru__http_scratch(struct coru__http_conn *c, size_t n)
{
    if (c->sused + n <= c->scap) {
        char *p = c->scratch + c->sused;
        c->sused += n;
        return p;
    }
    /* Past the connection's block: a block of its own until the request
     * ends (the block in use cannot move: strings point into it). */
    struct sblock *b = malloc(sizeof *b + n);
    if (!b) return NULL;
    b->next = (struct sblock *)c->scratch_extra;
    c->scratch_extra = b;
    return b->data;
}

void coru__http_scratch_reset(struct coru__http_conn *c)
{
    for (struct sblock *b = c->scratch_extra, *nx; b; b = nx) {
        nx = b->next;
        free(b);
    }
    c->scratch_extra = NULL;
    c->sused = 0;
}

/* ---------------------------------------------------------------- heads */

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 300 ? "OK" : status < 400 ? "Redirect" : status < 500 ? "Client Error" : "Server Error";
    }
}

static size_t put_u64(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
    return n;
}

/* Whether a status carries no body (and so no Content-Length). */
static bool bodiless(int status)
{
    return status == 204 || status == 304;
}

/* Appends a response head. length < 0: chunked (or, until_close, no
 * framing). extra: header lines ("N: V\r\n") or NULL. */
static bool put_head(struct coru__http_conn *c, int status, int64_t length, bool chunked, bool close, int version,
                     const char *ctype, const char *extra, size_t extra_len)
{
    const struct coru_http_server *s = c->s;
    const char *rs = reason(status);
    size_t rl = strlen(rs), cl = ctype ? strlen(ctype) : 0;
    size_t need = 9 + 4 + rl + 2 + 8 + s->name_len + 2 + 37 + (ctype ? 16 + cl : 0) + extra_len + 40 + 26 + 2;
    if (!out_reserve(c, need)) return false;
    char *p = c->out + c->olen;
    memcpy(p, "HTTP/1.1 ", 9);
    p += 9;
    *p++ = (char)('0' + status / 100);
    *p++ = (char)('0' + status / 10 % 10);
    *p++ = (char)('0' + status % 10);
    *p++ = ' ';
    memcpy(p, rs, rl);
    p += rl;
    memcpy(p, "\r\nServer: ", 10);
    p += 10;
    memcpy(p, s->o.server_name, s->name_len);
    p += s->name_len;
    *p++ = '\r';
    *p++ = '\n';
    p += coru__http_date(p);
    if (ctype) {
        memcpy(p, "Content-Type: ", 14);
        p += 14;
        memcpy(p, ctype, cl);
        p += cl;
        *p++ = '\r';
        *p++ = '\n';
    }
    if (extra_len) {
        memcpy(p, extra, extra_len);
        p += extra_len;
    }
    if (length >= 0 && !bodiless(status)) {
        memcpy(p, "Content-Length: ", 16);
        p += 16;
        p += put_u64(p, (uint64_t)length);
        *p++ = '\r';
        *p++ = '\n';
    } else if (chunked) {
        memcpy(p, "Transfer-Encoding: chunked\r\n", 28);
        p += 28;
    }
    if (close) {
        memcpy(p, "Connection: close\r\n", 19);
        p += 19;
    } else if (version == 10) {
        memcpy(p, "Connection: keep-alive\r\n", 24);
        p += 24;
    }
    *p++ = '\r';
    *p++ = '\n';
    c->olen = (size_t)(p - c->out);
    return true;
}

void coru__http_error(struct coru__http_conn *c, int status, bool close, const char *allow, int version)
{
    char body[64], extra[160];
    const char *rs = reason(status);
    int bl = snprintf(body, sizeof body, "%d %s\n", status, rs);
    size_t el = 0;
    if (allow && *allow) el = (size_t)snprintf(extra, sizeof extra, "Allow: %s\r\n", allow);
    if (el >= sizeof extra) el = 0;
    if (!put_head(c, status, bl, false, close, version, "text/plain", extra, el) ||
        !coru__http_out(c, body, (size_t)bl))
        c->broken = true; /* out of memory: no answer, close */
}

/* ---------------------------------------------------------------- requests */

const char *coru_http_req_method(const coru_http_req *r)
{
    return r ? r->msg->method : NULL;
}

const char *coru_http_req_target(const coru_http_req *r)
{
    return r ? r->msg->target : NULL;
}

const char *coru_http_req_path(const coru_http_req *r)
{
    return r ? r->path : NULL;
}

int coru_http_req_version(const coru_http_req *r)
{
    return r ? r->msg->version : 0;
}

const char *coru_http_req_header(const coru_http_req *r, const char *name)
{
    if (!r || !name) return NULL;
    for (unsigned i = 0; i < r->msg->nfields; i++)
        if (!strcasecmp(r->msg->fields[i].name, name)) return r->msg->fields[i].value;
    return NULL;
}

int coru_http_req_header_at(const coru_http_req *r, size_t i, const char **name, const char **value)
{
    if (!r || i >= r->msg->nfields) return -ENOENT;
    if (name) *name = r->msg->fields[i].name;
    if (value) *value = r->msg->fields[i].value;
    return 0;
}

const char *coru_http_req_param(const coru_http_req *r, const char *name)
{
    if (!r || !name || !r->match) return NULL;
    for (unsigned i = 0; i < r->match->nparams; i++)
        if (!strcmp(r->match->params[i].name, name)) return r->match->params[i].value;
    return NULL;
}

const char *coru_http_req_query(const coru_http_req *r, const char *name)
{
    if (!r || !name || !r->query) return NULL;
    const char *q = r->query, *end = r->query + r->query_len;
    size_t nl = strlen(name);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        const char *ke = eq ? eq : pe;
        /* compare the decoded key with name */
        char *key = coru__http_scratch(r->c, (size_t)(ke - q) + 1);
        if (!key) return NULL;
        long kl = coru__http_pct_decode(key, q, (size_t)(ke - q), true);
        if (kl == (long)nl && !memcmp(key, name, nl)) {
            const char *vs = eq ? eq + 1 : pe;
            char *v = coru__http_scratch(r->c, (size_t)(pe - vs) + 1);
            if (!v) return NULL;
            if (coru__http_pct_decode(v, vs, (size_t)(pe - vs), true) < 0) return NULL;
            return v;
        }
        q = amp ? amp + 1 : end;
    }
    return NULL;
}

const void *coru_http_req_body(const coru_http_req *r, size_t *len)
{
    if (!r) return NULL;
    if (len) *len = r->c->blen;
    return r->c->body ? r->c->body : "";
}

/* ---------------------------------------------------------------- responses */

void coru__http_resp_init(struct coru_http_resp *w, struct coru__http_conn *c, int version, bool head_only)
{
    memset(w, 0, sizeof *w);
    w->c = c;
    w->status = 200;
    w->version = version;
    w->head_only = head_only;
}

void coru__http_resp_fini(struct coru_http_resp *w)
{
    free(w->hdrs);
    w->hdrs = NULL;
}

int coru_http_resp_status(coru_http_resp *w, int status)
{
    if (!w || status < 200 || status > 599) return -EINVAL;
    if (w->head_sent || w->answered) return -EALREADY;
    w->status = status;
    return 0;
}

int coru_http_resp_header(coru_http_resp *w, const char *name, const char *value)
{
    if (!w || !name || !value || !*name) return -EINVAL;
    if (w->head_sent || w->answered) return -EALREADY;
    for (const char *p = name; *p; p++)
        if (!coru__http_is_tchar((unsigned char)*p)) return -EINVAL;
    for (const char *p = value; *p; p++)
        if (*p == '\r' || *p == '\n') return -EINVAL;
    if (!strcasecmp(name, "content-length") || !strcasecmp(name, "transfer-encoding") ||
        !strcasecmp(name, "date") || !strcasecmp(name, "server"))
        return -EINVAL;
    if (!strcasecmp(name, "connection")) {
        /* The server writes Connection itself; "close" is honoured. */
        if (strcasestr(value, "close")) w->close = true;
        return 0;
    }
    size_t nl = strlen(name), vl = strlen(value), need = nl + 2 + vl + 2;
    if (!coru__http_reserve(&w->hdrs, &w->hcap, w->hlen, need, 256)) return -ENOMEM;
    char *p = w->hdrs + w->hlen;
    memcpy(p, name, nl);
    p[nl] = ':';
    p[nl + 1] = ' ';
    memcpy(p + nl + 2, value, vl);
    p[nl + 2 + vl] = '\r';
    p[nl + 3 + vl] = '\n';
    w->hlen += need;
    return 0;
}

/* Whether the connection closes after this response: decided by conn.c
 * (the request) before the handler runs, by the handler, or by a
 * shutdown that began meanwhile. */
static bool closing(const struct coru_http_resp *w)
{
    return w->close || w->until_close || coru__http_draining(w->c->s);
}

int coru_http_resp_send(coru_http_resp *w, int status, const char *content_type, const void *body, size_t n)
{
    if (!w || status < 200 || status > 599 || (!body && n)) return -EINVAL;
    if (w->head_sent || w->answered) return -EALREADY;
    if (content_type)
        for (const char *p = content_type; *p; p++)
            if (*p == '\r' || *p == '\n') return -EINVAL;
    struct coru__http_conn *c = w->c;
    w->status = status;
    if (bodiless(status)) n = 0;
    if (!put_head(c, status, (int64_t)n, false, closing(w), w->version, content_type, w->hdrs, w->hlen)) return -ENOMEM;
    w->head_sent = w->answered = w->ended = true;
    if (n && !w->head_only && !coru__http_out(c, body, n)) return -ENOMEM;
    if (c->olen >= FLUSH_AT && !coru__http_flush(c)) return -EPIPE;
    return 0;
}

int coru_http_resp_length(coru_http_resp *w, uint64_t n)
{
    if (!w) return -EINVAL;
    if (w->head_sent || w->answered) return -EALREADY;
    w->has_length = true;
    w->length = n;
    return 0;
}

/* The head of a streamed response: Content-Length if declared, else
 * chunked on 1.1, else (1.0) no framing and a close after. */
static int stream_head(struct coru_http_resp *w)
{
    struct coru__http_conn *c = w->c;
    if (!w->has_length) {
        if (w->version >= 11)
            w->chunked = true;
        else
            w->until_close = true;
    }
    bool none = bodiless(w->status);
    if (none) w->chunked = false;
    if (!put_head(c, w->status, w->has_length ? (int64_t)w->length : -1, w->chunked && !none, closing(w), w->version,
                  NULL, w->hdrs, w->hlen))
        return -ENOMEM;
    w->head_sent = w->answered = true;
    return 0;
}

int coru_http_resp_write(coru_http_resp *w, const void *data, size_t n)
{
    if (!w || (!data && n)) return -EINVAL;
    if (w->ended) return -EALREADY;
    struct coru__http_conn *c = w->c;
    if (!w->head_sent) {
        int rc = stream_head(w);
        if (rc) return rc;
    }
    if (w->has_length && w->written + n > w->length) return -EMSGSIZE;
    w->written += n;
    if (w->head_only || bodiless(w->status) || n == 0) return coru__http_flush(c) ? 0 : -EPIPE;
    if (w->chunked) {
        char hdr[24];
        int hl = snprintf(hdr, sizeof hdr, "%zx\r\n", n);
        if (!coru__http_out(c, hdr, (size_t)hl)) return -ENOMEM;
    }
    /* Small pieces ride along with what is queued; large ones go out in
     * a write of their own after it. */
    if (n <= 16 * 1024) {
        if (!coru__http_out(c, data, n)) return -ENOMEM;
        if (w->chunked && !coru__http_out(c, "\r\n", 2)) return -ENOMEM;
        return coru__http_flush(c) ? 0 : -EPIPE;
    }
    if (!coru__http_flush(c)) return -EPIPE;
    ssize_t r = c->io.write(c->io.ctx, data, n, coru__http_after(c->s->o.write_timeout));
    if (r < 0) {
        c->broken = true;
        return (int)r;
    }
    if (w->chunked && !coru__http_out(c, "\r\n", 2)) return -ENOMEM;
    return 0;
}

int coru_http_resp_end(coru_http_resp *w)
{
    if (!w) return -EINVAL;
    if (w->ended) return -EALREADY;
    if (!w->head_sent) {
        /* nothing streamed: an empty body of the declared length (0) */
        if (!w->has_length) {
            w->has_length = true;
            w->length = 0;
        }
        int rc = stream_head(w);
        if (rc) return rc;
    }
    w->ended = true;
    if (w->has_length && w->written < w->length && !w->head_only) {
        w->close = true;
        w->c->broken = true; /* the client would wait for the rest: cut */
        return -EPROTO;
    }
    if (w->chunked && !w->head_only && !coru__http_out(w->c, "0\r\n\r\n", 5)) return -ENOMEM;
    return 0;
}

bool coru__http_resp_finish(struct coru_http_resp *w, int rc)
{
    struct coru__http_conn *c = w->c;
    if (!w->answered) {
        if (rc < 0)
            coru__http_error(c, 500, w->close, NULL, w->version);
        else if (coru_http_resp_send(w, w->status, NULL, NULL, 0) != 0)
            c->broken = true;
        return !c->broken && !closing(w);
    }
    if (!w->ended) {
        if (rc < 0) { /* a body cut short: the close tells the client */
            c->broken = true;
            return false;
        }
        if (coru_http_resp_end(w) != 0) c->broken = true;
    }
    if (rc < 0) return false; /* answered, then failed: close after it */
    return !c->broken && !closing(w);
}
