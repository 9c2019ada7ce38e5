/* fuzz_http: a libFuzzer target for the whole server-side request path:
 * the head scanner, llhttp, the router, body decoding (length, chunked),
 * the handlers' response writer and the server's own error responses.
 *
 * Input: 4 bytes that seed the split points, then the byte stream a
 * client would send. The connection loop (src/http/conn.c) reads it from
 * memory in pieces of pseudo-random sizes (1 byte up to all of it), so
 * every way a request can be cut across reads is reachable, and writes
 * into memory. Then the output is checked: it must be a sequence of
 * well-formed HTTP/1.1 responses (status line, CRLF-terminated fields,
 * a body framed by Content-Length or chunked, or running to the end),
 * else the target aborts: that is a finding.
 *
 * No runtime is started: the loop parks only in its stream's calls, and
 * these do not park here. Built by tools/test in a clang build with
 * -Dfuzz=true and run for about a minute on tests/fuzz/corpus. */
#include <coru.h>
#include <coru/http.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../src/http/internal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static coru_http_server *srv;

static int h_text(coru_http_resp *rs, const char *a, const char *b)
{
    char buf[8192];
    int n = snprintf(buf, sizeof buf, "%s%s", a, b ? b : "(null)");
    return coru_http_resp_send(rs, 200, "text/plain", buf, (size_t)(n < (int)sizeof buf ? n : (int)sizeof buf - 1));
}

static int h_hello(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    const char *q = coru_http_req_query(rq, "x");
    (void)q;
    return h_text(rs, "hello ", coru_http_req_param(rq, "name"));
}

static int h_files(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    return h_text(rs, coru_http_req_path(rq), coru_http_req_param(rq, "path"));
}

static int h_echo(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    size_t n;
    const void *b = coru_http_req_body(rq, &n);
    const char *v;
    const char *name;
    for (size_t i = 0; coru_http_req_header_at(rq, i, &name, &v) == 0; i++) {
    }
    return coru_http_resp_send(rs, 200, NULL, b, n);
}

static int h_stream(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    size_t n;
    const char *b = coru_http_req_body(rq, &n);
    int rc = coru_http_resp_header(rs, "X-Stream", coru_http_req_target(rq));
    (void)rc; /* a target can hold bytes a header value may not */
    rc = coru_http_resp_write(rs, "part1", 5);
    if (!rc) rc = coru_http_resp_write(rs, b, n);
    if (!rc) rc = coru_http_resp_end(rs);
    return rc;
}

static int h_fail(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    return -5;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct coru_http_opts o = {.max_body = 64 * 1024, .max_header_bytes = 4096, .max_request_line = 2048,
                               .max_headers = 32};
    if (coru_http_server_create(&srv, "127.0.0.1", 0, &o)) abort();
    if (coru_http_route(srv, "GET", "/", h_echo, NULL) || coru_http_route(srv, "GET", "/hello/{name}", h_hello, NULL) ||
        coru_http_route(srv, "GET", "/files/{path...}", h_files, NULL) ||
        coru_http_route(srv, "POST", "/echo", h_echo, NULL) || coru_http_route(srv, "*", "/any", h_echo, NULL) ||
        coru_http_route(srv, "GET", "/stream", h_stream, NULL) ||
        coru_http_route(srv, "POST", "/stream", h_stream, NULL) || coru_http_route(srv, "GET", "/fail", h_fail, NULL) ||
        coru_http_route(srv, "DELETE", "/a/{x}/b", h_hello, NULL))
        abort();
    return 0;
}

struct mem {
    const uint8_t *in;
    size_t len, pos;
    uint32_t rng;
    char *out;
    size_t olen, ocap;
};

static ssize_t mem_read(void *ctx, void *buf, size_t n, int64_t dl)
{
    struct mem *m = ctx;
    if (m->pos == m->len) return 0;
    m->rng = m->rng * 1103515245u + 12345u;
    size_t k = 1 + (m->rng >> 8) % (m->rng & 1 ? 8 : m->len);
    if (k > n) k = n;
    if (k > m->len - m->pos) k = m->len - m->pos;
    memcpy(buf, m->in + m->pos, k);
    m->pos += k;
    return (ssize_t)k;
}

static ssize_t mem_write(void *ctx, const void *buf, size_t n, int64_t dl)
{
    struct mem *m = ctx;
    if (m->olen + n > m->ocap) {
        size_t cap = m->ocap ? m->ocap : 4096;
        while (cap < m->olen + n) cap *= 2;
        m->out = realloc(m->out, cap);
        if (!m->out) abort();
        m->ocap = cap;
    }
    memcpy(m->out + m->olen, buf, n);
    m->olen += n;
    return (ssize_t)n;
}

/* ---------------------------------------------------------------- the oracle */

static void bad(const char *why, const char *at, const struct mem *m)
{
    fprintf(stderr, "fuzz_http: bad output (%s) at byte %zd of %zu\n", why, at ? at - m->out : -1, m->olen);
    if (getenv("FUZZ_DUMP")) fwrite(m->out, 1, m->olen, stderr);
    abort();
}

static const char *line_end(const char *p, const char *end)
{
    const char *e = memmem(p, (size_t)(end - p), "\r\n", 2);
    return e;
}

/* Walks the output response by response. */
static void check_output(const struct mem *m)
{
    if (!m->out) return; /* nothing written (EOF before any request) */
    const char *p = m->out, *end = m->out + m->olen;
    while (p < end) {
        if (end - p < 13 || memcmp(p, "HTTP/1.1 ", 9) != 0) bad("status line", p, m);
        int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
        if (status < 100 || status > 599 || p[12] != ' ') bad("status code", p, m);
        const char *e = line_end(p, end);
        if (!e) bad("unterminated status line", p, m);
        p = e + 2;
        long long clen = -1;
        int chunked = 0;
        for (;;) {
            e = line_end(p, end);
            if (!e) bad("unterminated head", p, m);
            if (e == p) {
                p += 2;
                break;
            }
            const char *colon = memchr(p, ':', (size_t)(e - p));
            if (!colon || colon == p) bad("field without a name", p, m);
            for (const char *q = p; q < e; q++)
                if (*q == '\r' || *q == '\n' || *q == '\0') bad("control byte in a field", q, m);
            if ((size_t)(colon - p) == 14 && !strncasecmp(p, "content-length", 14)) {
                if (clen >= 0) bad("two Content-Lengths", p, m);
                clen = strtoll(colon + 1, NULL, 10);
            }
            if ((size_t)(colon - p) == 17 && !strncasecmp(p, "transfer-encoding", 17)) chunked = 1;
            p = e + 2;
        }
        if (clen >= 0 && chunked) bad("Content-Length and chunked", p, m);
        if (status == 100) continue;
        if (clen >= 0) {
            /* A HEAD response carries the length of a body it does not
             * send: the next bytes are then the next status line. The
             * body reading wins only when a status line (or the end)
             * follows the body exactly; else, if a status line starts
             * right here, it was HEAD (the fuzzer found an output where
             * a HEAD's length ran into the middle of the next response,
             * fewer than 9 bytes short of the end); a body followed by
             * the start of a response cut short comes last. */
            bool after_body = end - p == clen || (end - p >= clen + 9 && !memcmp(p + clen, "HTTP/1.1 ", 9));
            bool head = p == end || (end - p >= 9 && !memcmp(p, "HTTP/1.1 ", 9));
            if (after_body) {
                p += clen;
                continue;
            }
            if (head) continue;
            if (end - p >= clen && end - p < 9 + clen) {
                p += clen;
                continue;
            }
            bad("body shorter than Content-Length", p, m);
        }
        if (chunked) {
            if (end - p >= 9 && !memcmp(p, "HTTP/1.1 ", 9)) continue; /* HEAD */
            for (;;) {
                e = line_end(p, end);
                if (!e) {
                    if (p == end) break; /* cut: the connection ended mid-stream */
                    bad("unterminated chunk size", p, m);
                }
                char *stop;
                unsigned long long n = strtoull(p, &stop, 16);
                if (stop != e) bad("chunk size", p, m);
                p = e + 2;
                if (n == 0) {
                    if (end - p < 2 || memcmp(p, "\r\n", 2)) bad("last chunk", p, m);
                    p += 2;
                    break;
                }
                if ((unsigned long long)(end - p) < n + 2) {
                    p = end; /* cut mid-stream */
                    break;
                }
                p += n;
                if (memcmp(p, "\r\n", 2)) bad("chunk data CRLF", p, m);
                p += 2;
            }
            continue;
        }
        /* no framing: the body runs to the end (HTTP/1.0 streams) */
        p = end;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    struct mem m = {.in = data + 4, .len = size - 4};
    memcpy(&m.rng, data, 4);
    struct coru__http_conn c;
    memset(&c, 0, sizeof c);
    c.s = srv;
    c.fd = -1;
    c.io = (struct coru__http_io){mem_read, mem_write, &m};
    coru__http_conn_run(&c);
    check_output(&m);
    free(m.out);
    return 0;
}
