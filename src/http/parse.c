/* The request parser: the head scanner and the llhttp driver. See parse.h.
 *
 * llhttp calls back with spans of the buffer it was given. The head is
 * always handed over complete and in one piece, so each span (method,
 * target, a field's name or value) is reported once; should llhttp split
 * one anyway, the pieces are adjacent and the span grows. The callbacks
 * that end a step return HPE_PAUSED, so that llhttp_execute stops right
 * there and the caller learns where the head ends and where the message
 * ends (llhttp_get_error_pos): that is how pipelined requests are told
 * apart in one buffer.
 */
#include "parse.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- scanner */

long coru__http_scan(struct coru__http_scan *sc, const char *buf, size_t n, const struct coru__http_limits *lim)
{
    size_t i = sc->pos;
    for (; i < n; i++) {
        char c = buf[i];
        /* The header block counts from its first field line through the
         * CRLF of its last (not the empty line that ends it): checked at
         * each byte of a field line and at its LF. */
        bool over = sc->in_fields && i + 1 - (sc->head_start + sc->line_len + 2) > lim->max_head;
        if (c == '\r') {
            if (i + 1 == n) break; /* look again once the next byte is here */
            if (buf[i + 1] != '\n') return -400; /* bare CR */
            continue;
        }
        if (c == '\0') return -400;
        if (c != '\n') {
            if (over) return -431;
            if (!sc->in_fields && i - sc->line_start >= lim->max_line) return -414;
            continue;
        }
        if (i == 0 || buf[i - 1] != '\r') return -400; /* bare LF */
        size_t len = i - 1 - sc->line_start;
        if (!sc->in_fields) {
            if (len == 0) {
                /* An empty line before the request line: skipped, but no
                 * more of them than a request line's worth. */
                if (i + 1 > lim->max_line) return -400;
                sc->line_start = sc->head_start = i + 1;
                continue;
            }
            sc->line_len = len;
            sc->in_fields = true;
        } else if (len == 0) {
            sc->pos = i + 1;
            return (long)(i + 1);
        } else {
            if (over) return -431;
            char first = buf[sc->line_start];
            if (first == ' ' || first == '\t') return -400; /* obs-fold */
            if (++sc->fields > lim->max_fields) return -431;
        }
        sc->line_start = i + 1;
    }
    sc->pos = i;
    return 0;
}

bool coru__http_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int coru__http_check_version(const char *line, size_t len)
{
    /* method SP request-target SP HTTP-version, single spaces (RFC 9112
     * 3): whitespace tricks in the request line are refused, not guessed
     * at. */
    size_t i = 0;
    while (i < len && coru__http_is_tchar((unsigned char)line[i])) i++;
    if (i == 0 || i == len || line[i] != ' ') return -400;
    size_t t = ++i;
    while (i < len && (unsigned char)line[i] > ' ' && line[i] != 0x7f) i++;
    if (i == t || i == len || line[i] != ' ') return -400;
    const char *v = line + i + 1;
    size_t vl = len - i - 1;
    if (vl != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.') return -400;
    if (v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9') return -400;
    if (v[5] == '1' && (v[7] == '0' || v[7] == '1')) return 0;
    return -505;
}

/* ---------------------------------------------------------------- llhttp */

static struct coru__http_parser *of(llhttp_t *ll)
{
    return (struct coru__http_parser *)ll;
}

static void grow(const char **start, size_t *len, const char *at, size_t n)
{
    if (!*start) {
        *start = at;
        *len = n;
    } else {
        *len = (size_t)(at + n - *start); /* an adjacent piece */
    }
}

static int on_message_begin(llhttp_t *ll)
{
    struct coru__http_msg *m = of(ll)->m;
    m->method = m->target = NULL;
    m->method_len = m->target_len = 0;
    m->reason = NULL;
    m->reason_len = 0;
    m->nfields = 0;
    of(ll)->field_state = 0;
    of(ll)->ext_bytes = 0;
    return 0;
}

static int on_method(llhttp_t *ll, const char *at, size_t n)
{
    struct coru__http_msg *m = of(ll)->m;
    grow(&m->method, &m->method_len, at, n);
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t n)
{
    struct coru__http_msg *m = of(ll)->m;
    grow(&m->target, &m->target_len, at, n);
    return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t n)
{
    struct coru__http_parser *p = of(ll);
    struct coru__http_msg *m = p->m;
    /* Trailers after a chunked body come through here too, with spans in
     * the body's buffer, which does not live as long as the head: they
     * are parsed and dropped. */
    if (ll->flags & F_TRAILING) return 0;
    if (p->field_state != 1) {
        /* The scanner counted the lines already; this is a second guard. */
        if (m->nfields >= p->lim->max_fields) {
            p->status = -431;
            return -1;
        }
        struct coru__http_field *f = &m->fields[m->nfields++];
        f->name = at;
        f->nlen = (uint32_t)n;
        f->value = NULL;
        f->vlen = 0;
        p->field_state = 1;
        return 0;
    }
    struct coru__http_field *f = &m->fields[m->nfields - 1];
    f->nlen = (uint32_t)(at + n - f->name);
    return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t n)
{
    struct coru__http_parser *p = of(ll);
    if (ll->flags & F_TRAILING) return 0; /* see on_header_field */
    struct coru__http_field *f = &p->m->fields[p->m->nfields - 1];
    if (p->field_state != 2) {
        f->value = at;
        f->vlen = (uint32_t)n;
        p->field_state = 2;
    } else {
        f->vlen = (uint32_t)(at + n - f->value);
    }
    return 0;
}

static bool token_eq(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

/* Transfer-Encoding: only "chunked", once, last; Expect: only
 * 100-continue. llhttp checks the framing; these are the answers it does
 * not give (501, 417). */
static void check_fields(struct coru__http_msg *m)
{
    for (unsigned i = 0; i < m->nfields; i++) {
        struct coru__http_field *f = &m->fields[i];
        const char *v = f->value ? f->value : "";
        size_t vl = f->vlen;
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
        while (vl && (*v == ' ' || *v == '\t')) {
            v++;
            vl--;
        }
        if (token_eq(f->name, f->nlen, "transfer-encoding")) {
            /* every coding listed must be chunked */
            size_t s = 0;
            while (s < vl) {
                size_t e = s;
                while (e < vl && v[e] != ',') e++;
                size_t a = s, b = e;
                while (a < b && (v[a] == ' ' || v[a] == '\t')) a++;
                while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t')) b--;
                if (!token_eq(v + a, b - a, "chunked")) m->te_unknown = true;
                s = e + 1;
            }
        } else if (token_eq(f->name, f->nlen, "expect")) {
            if (token_eq(v, vl, "100-continue"))
                m->expect_continue = true;
            else
                m->expect_other = true;
        }
    }
}

static int on_status(llhttp_t *ll, const char *at, size_t n)
{
    struct coru__http_msg *m = of(ll)->m;
    grow(&m->reason, &m->reason_len, at, n);
    return 0;
}

/* A response's head: no Expect, no 413; framing by llhttp (Content-Length,
 * chunked, none for 1xx/204/304, or until EOF), and none after HEAD. */
static int response_head(llhttp_t *ll, struct coru__http_parser *p, struct coru__http_msg *m)
{
    m->status = ll->status_code;
    check_fields(m);
    if (m->te_unknown) return -1; /* a coding we cannot undo: malformed for us */
    if (m->no_body || (m->status >= 100 && m->status < 200) || m->status == 204 || m->status == 304) {
        m->has_body = m->chunked = false;
        m->content_length = 0;
        return 1; /* llhttp: no body follows */
    }
    m->until_eof = !m->chunked && !(ll->flags & F_CONTENT_LENGTH);
    m->has_body = m->has_body || m->until_eof;
    if (!m->has_body) return 0;
    p->event = CORU__HTTP_HEAD;
    return HPE_PAUSED;
}

static int on_headers_complete(llhttp_t *ll)
{
    struct coru__http_parser *p = of(ll);
    struct coru__http_msg *m = p->m;
    if (ll->type == HTTP_RESPONSE) {
        m->version = ll->http_major * 10 + ll->http_minor;
        m->chunked = (ll->flags & F_CHUNKED) != 0;
        m->content_length = m->chunked ? 0 : ll->content_length;
        m->has_body = m->chunked || ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > 0);
        m->expect_continue = m->expect_other = m->te_unknown = m->until_eof = false;
        m->upgrade = false;
        return response_head(ll, p, m);
    }
    m->version = ll->http_major * 10 + ll->http_minor;
    m->chunked = (ll->flags & F_CHUNKED) != 0;
    m->content_length = m->chunked ? 0 : ll->content_length;
    m->has_body = m->chunked || ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > 0);
    m->expect_continue = m->expect_other = m->te_unknown = false;
    m->upgrade = ll->upgrade || ll->method == HTTP_CONNECT;
    check_fields(m);
    if (m->te_unknown) {
        p->status = -501;
        return -1;
    }
    if (!m->chunked && m->content_length > p->lim->max_body) {
        p->status = -413; /* known too large: refused before any of it is read */
        return -1;
    }
    if (!m->has_body) return 0; /* straight on to on_message_complete */
    p->event = CORU__HTTP_HEAD;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
    struct coru__http_parser *p = of(ll);
    int rc = p->m->on_body ? p->m->on_body(p->m->body_ctx, at, n) : 0;
    if (rc < 0) {
        p->status = rc;
        return -1;
    }
    return 0;
}

/* Chunk extensions are parsed and dropped; their bytes are counted, so a
 * stream of them cannot keep a connection busy for ever. */
static int on_ext(llhttp_t *ll, const char *at, size_t n)
{
    (void)at;
    struct coru__http_parser *p = of(ll);
    p->ext_bytes += n;
    if (p->ext_bytes > p->lim->max_ext) {
        p->status = -400;
        return -1;
    }
    return 0;
}

static int on_message_complete(llhttp_t *ll)
{
    struct coru__http_parser *p = of(ll);
    p->m->keep_alive = llhttp_should_keep_alive(ll);
    p->event = CORU__HTTP_DONE;
    return HPE_PAUSED;
}

static llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_method = on_method,
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_extension_name = on_ext,
    .on_chunk_extension_value = on_ext,
    .on_message_complete = on_message_complete,
};

void coru__http_parser_init(struct coru__http_parser *p, const struct coru__http_limits *lim)
{
    memset(p, 0, sizeof *p);
    llhttp_init(&p->ll, HTTP_REQUEST, &settings);
    p->lim = lim;
}

void coru__http_parser_init_response(struct coru__http_parser *p, const struct coru__http_limits *lim)
{
    memset(p, 0, sizeof *p);
    llhttp_init(&p->ll, HTTP_RESPONSE, &settings);
    p->lim = lim;
}

int coru__http_parse_eof(struct coru__http_parser *p)
{
    p->event = CORU__HTTP_NEED;
    llhttp_errno_t e = llhttp_finish(&p->ll);
    if ((e == HPE_OK || e == HPE_PAUSED) && p->event == CORU__HTTP_DONE) return CORU__HTTP_DONE;
    return -400;
}

void coru__http_parser_begin(struct coru__http_parser *p, struct coru__http_msg *m)
{
    p->m = m;
    p->status = 0;
}

/* The status for an llhttp error: what was decided in a callback, else 400
 * (every other llhttp error is a malformed or smuggling-shaped request). */
static int error_status(const struct coru__http_parser *p)
{
    return p->status ? p->status : -400;
}

int coru__http_parse(struct coru__http_parser *p, const char *data, size_t n, size_t *used)
{
    p->event = CORU__HTTP_NEED;
    llhttp_errno_t e = llhttp_execute(&p->ll, data, n);
    switch (e) {
    case HPE_OK:
        *used = n;
        return CORU__HTTP_NEED;
    case HPE_PAUSED: {
        /* error_pos: where the pausing callback stopped it (the first
         * body byte, or the byte after the message). */
        const char *at = llhttp_get_error_pos(&p->ll);
        *used = at ? (size_t)(at - data) : n;
        llhttp_resume(&p->ll);
        return p->event;
    }
    case HPE_PAUSED_UPGRADE: {
        /* An Upgrade or CONNECT request, complete: not supported, so it is
         * answered as a plain request and the connection closes after. */
        const char *at = llhttp_get_error_pos(&p->ll);
        *used = at ? (size_t)(at - data) : n;
        llhttp_resume_after_upgrade(&p->ll);
        p->m->keep_alive = false;
        p->m->upgrade = true;
        return CORU__HTTP_DONE;
    }
    default:
        *used = 0;
        return error_status(p);
    }
}

/* Blanks llhttp leaves around a field value (it strips the leading ones
 * already; trailing ones are ours to drop). */
static void trim(const char **v, uint32_t *len)
{
    while (*len && ((*v)[*len - 1] == ' ' || (*v)[*len - 1] == '\t')) (*len)--;
    while (*len && (**v == ' ' || **v == '\t')) {
        (*v)++;
        (*len)--;
    }
}

void coru__http_terminate(struct coru__http_msg *m)
{
    /* Each span is followed by at least one byte of the head that llhttp
     * has parsed already (a space, a colon, CR), so the NUL goes there. */
    if (m->method) ((char *)m->method)[m->method_len] = '\0';
    if (m->reason) ((char *)m->reason)[m->reason_len] = '\0';
    if (m->target) ((char *)m->target)[m->target_len] = '\0';
    for (unsigned i = 0; i < m->nfields; i++) {
        struct coru__http_field *f = &m->fields[i];
        ((char *)f->name)[f->nlen] = '\0';
        if (!f->value) {
            f->value = f->name + f->nlen; /* an empty value: point at the NUL */
            f->vlen = 0;
            continue;
        }
        trim(&f->value, &f->vlen);
        ((char *)f->value)[f->vlen] = '\0';
    }
}
