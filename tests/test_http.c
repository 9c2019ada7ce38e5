/* test_http: the HTTP/1.1 server (include/coru/http.h) over real sockets
 * on both engines: routing, keep-alive and pipelining, bodies both ways,
 * 100-continue, the error statuses, limits and timeouts, shutdown. The
 * hostile-client tests (smuggling, slow clients, many idle connections)
 * are in test_http_hostile.c. */
#include "http_helpers.h"

#define BOTH(fn) FOR_EACH_ENGINE(io) cr_assert_eq(run_on(io, 2, fn, NULL), 0)

static void expect(uint16_t port, const char *req, int status, const char *body)
{
    struct resp r;
    one(port, req, &r, NULL);
    cr_assert_eq(r.status, status, "%s-> %d (%s)", req, r.status, r.body);
    if (body) cr_assert_str_eq(r.body, body, "%s", req);
    resp_free(&r);
}

/* ------------------------------------------------------------ routing */

static void *routing_main(void *arg)
{
    struct fx f;
    fx_start(&f, NULL);
    uint16_t p = f.port;
    expect(p, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200, "root");
    expect(p, "GET /hello/alice HTTP/1.1\r\nHost: x\r\n\r\n", 200, "hello alice");
    expect(p, "GET /hello/a%20b HTTP/1.1\r\nHost: x\r\n\r\n", 200, "hello a b");
    expect(p, "GET /hello/alice?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", 200, "hello alice");
    expect(p, "GET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n", 404, NULL);
    expect(p, "GET /hello/a/b HTTP/1.1\r\nHost: x\r\n\r\n", 404, NULL);
    /* catch-all, and a literal segment winning over it */
    expect(p, "GET /files/a/b/c.txt HTTP/1.1\r\nHost: x\r\n\r\n", 200, "files a/b/c.txt");
    expect(p, "GET /files/special HTTP/1.1\r\nHost: x\r\n\r\n", 200, "special");
    expect(p, "GET /files/specialx HTTP/1.1\r\nHost: x\r\n\r\n", 200, "files specialx");
    expect(p, "GET /files/ HTTP/1.1\r\nHost: x\r\n\r\n", 404, NULL);
    /* exact first, then back up: /a/{x}/c against /{y}/b/d */
    expect(p, "GET /a/z/c HTTP/1.1\r\nHost: x\r\n\r\n", 200, "axc z");
    expect(p, "GET /a/b/d HTTP/1.1\r\nHost: x\r\n\r\n", 200, "ybd a");
    expect(p, "GET /q/b/d HTTP/1.1\r\nHost: x\r\n\r\n", 200, "ybd q");
    /* absolute-form target */
    expect(p, "GET http://x/hello/abs HTTP/1.1\r\nHost: x\r\n\r\n", 200, "hello abs");
    /* any method */
    expect(p, "PATCH /any HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 200, "method PATCH");
    expect(p, "BREW /any HTTP/1.1\r\nHost: x\r\n\r\n", 400, NULL); /* not a method llhttp knows */
    /* 404, and 405 with Allow */
    expect(p, "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404, "404 Not Found\n");
    struct resp r;
    char v[128];
    one(p, "POST /hello/bob HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", &r, NULL);
    cr_assert_eq(r.status, 405);
    cr_assert_str_eq(hdr(&r, "Allow", v, sizeof v), "GET, HEAD, DELETE");
    resp_free(&r);
    expect(p, "DELETE /hello/bob HTTP/1.1\r\nHost: x\r\n\r\n", 200, "hello bob");
    /* HEAD: the GET route's headers, no body */
    struct cl *c = cl_open(p);
    cl_sends(c, "HEAD /hello/carol HTTP/1.1\r\nHost: x\r\n\r\nGET /hello/carol HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_resp(c, &r, true));
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(hdr(&r, "Content-Length", v, sizeof v), "11");
    resp_free(&r);
    cr_assert(cl_resp(c, &r, false)); /* the next response starts right after the head */
    cr_assert_str_eq(r.body, "hello carol");
    resp_free(&r);
    cl_close(c);
    /* query, path decoding, headers */
    expect(p, "GET /query?q=a+b%21&r=&q=2 HTTP/1.1\r\nHost: x\r\n\r\n", 200, "q=a b!,r=,path=/query");
    expect(p, "GET /query HTTP/1.1\r\nHost: x\r\n\r\n", 200, "q=(null),r=(null),path=/query");
    one(p, "GET /headers HTTP/1.1\r\nHost: x\r\nX-Test:  one \r\nx-test: two\r\n\r\n", &r, NULL);
    cr_assert_str_eq(r.body, "[one][two] first=one");
    cr_assert_str_eq(hdr(&r, "X-Reply", v, sizeof v), "yes");
    cr_assert_not_null(hdr(&r, "Date", v, sizeof v));
    cr_assert_str_eq(hdr(&r, "Server", v, sizeof v), "coru");
    resp_free(&r);
    /* handler failures */
    expect(p, "GET /fail HTTP/1.1\r\nHost: x\r\n\r\n", 500, NULL);
    expect(p, "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", 200, "");
    fx_stop(&f, SEC);
    return NULL;
}

Test(http, routes_match_params_catch_all_and_precedence_with_404_405_and_head, .timeout = 60)
{
    BOTH(routing_main);
}

static void *route_errors_main(void *arg)
{
    coru_http_server *s;
    cr_assert_eq(coru_http_server_create(&s, "127.0.0.1", 0, NULL), 0);
    cr_assert_eq(coru_http_route(s, "GET", "/x", h_root, NULL), 0);
    cr_assert_eq(coru_http_route(s, "GET", "/x", h_root, NULL), -EEXIST);
    cr_assert_eq(coru_http_route(s, "GET", "x", h_root, NULL), -EINVAL);
    cr_assert_eq(coru_http_route(s, "GET", "/{a...}/b", h_root, NULL), -EINVAL);
    cr_assert_eq(coru_http_route(s, "GET", "/{}", h_root, NULL), -EINVAL);
    cr_assert_eq(coru_http_route(s, "GE T", "/y", h_root, NULL), -EINVAL);
    cr_assert_eq(coru_http_route(s, "GET", "//y", h_root, NULL), -EINVAL);
    cr_assert_eq(coru_http_route(s, "GET", "/{a}", NULL, NULL), -EINVAL);
    cr_assert_eq(coru_http_route(NULL, "GET", "/y", h_root, NULL), -EINVAL);
    cr_assert_eq(coru_http_route(s, "GET", "/p/{a}", h_root, NULL), 0);
    cr_assert_eq(coru_http_route(s, "GET", "/p/{b}/q", h_root, NULL), -EINVAL, "another name at the same place");
    cr_assert_eq(coru_http_server_shutdown(s, coru_now()), 0);
    cr_assert_eq(coru_http_server_serve(s), 0, "shut down before serving: returns at once");
    cr_assert_eq(coru_http_route(s, "GET", "/z", h_root, NULL), -EBUSY);
    coru_http_server_destroy(s);
    struct coru_http_opts bad = {.header_timeout = -5};
    cr_assert_eq(coru_http_server_create(&s, "127.0.0.1", 0, &bad), -EINVAL);
    cr_assert_eq(coru_http_server_create(&s, "not-an-address", 0, NULL), -EINVAL);
    cr_assert_eq(coru_http_server_create(NULL, "127.0.0.1", 0, NULL), -EINVAL);
    cr_assert_eq(coru_http_server_serve(NULL), -EINVAL);
    return NULL;
}

Test(http, bad_routes_and_options_are_refused_with_codes, .timeout = 30)
{
    cr_assert_eq(run_on(CORU_IO_AUTO, 2, route_errors_main, NULL), 0);
    coru_http_server *s;
    cr_assert_eq(coru_http_server_create(&s, "127.0.0.1", 0, NULL), 0);
    cr_assert_eq(coru_http_server_serve(s), -EPERM, "not from a coroutine");
    coru_http_server_destroy(s);
}

/* ------------------------------------------------------------ keep-alive, pipelining */

static void *pipeline_main(void *arg)
{
    struct fx f;
    fx_start(&f, NULL);
    /* 16 requests in one write, answered in order on one connection */
    struct cl *c = cl_open(f.port);
    char batch[16 * 64];
    size_t bl = 0;
    for (int i = 0; i < 16; i++)
        bl += (size_t)snprintf(batch + bl, sizeof batch - bl, "GET /hello/n%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
    cl_send(c, batch, bl);
    for (int i = 0; i < 16; i++) {
        struct resp r;
        cr_assert(cl_resp(c, &r, false), "response %d", i);
        char want[32];
        snprintf(want, sizeof want, "hello n%d", i);
        cr_assert_str_eq(r.body, want);
        resp_free(&r);
    }
    /* the same connection goes on (keep-alive) */
    cl_sends(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    struct resp r;
    cr_assert(cl_resp(c, &r, false));
    cr_assert_str_eq(r.body, "root");
    resp_free(&r);
    /* one request split byte by byte */
    const char *req = "GET /hello/slowly HTTP/1.1\r\nHost: x\r\n\r\n";
    for (const char *p = req; *p; p++) {
        cl_send(c, p, 1);
        coru_sleep(MS / 2);
    }
    cr_assert(cl_resp(c, &r, false));
    cr_assert_str_eq(r.body, "hello slowly");
    resp_free(&r);
    /* a body split byte by byte, and a pipelined request behind it */
    const char *post = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    for (const char *p = post; *p; p++) cl_send(c, p, 1);
    cr_assert(cl_resp(c, &r, false));
    cr_assert_str_eq(r.body, "hello");
    resp_free(&r);
    cr_assert(cl_resp(c, &r, false));
    cr_assert_str_eq(r.body, "root");
    resp_free(&r);
    /* Connection: close from the client, then the server closes */
    cl_sends(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    cr_assert(cl_resp(c, &r, false));
    char v[64];
    cr_assert_str_eq(hdr(&r, "Connection", v, sizeof v), "close");
    resp_free(&r);
    cr_assert(cl_closed(c));
    cl_close(c);
    /* Connection: close from the handler */
    bool closed;
    one(f.port, "GET /close HTTP/1.1\r\nHost: x\r\n\r\n", &r, &closed);
    cr_assert_str_eq(hdr(&r, "Connection", v, sizeof v), "close");
    cr_assert(closed);
    resp_free(&r);
    /* HTTP/1.0: close by default, keep-alive when asked */
    one(f.port, "GET / HTTP/1.0\r\n\r\n", &r, &closed);
    cr_assert_eq(r.status, 200);
    cr_assert(closed);
    resp_free(&r);
    c = cl_open(f.port);
    cl_sends(c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    cr_assert(cl_resp(c, &r, false));
    cr_assert_str_eq(hdr(&r, "Connection", v, sizeof v), "keep-alive");
    resp_free(&r);
    cl_sends(c, "GET /hello/again HTTP/1.0\r\n\r\n");
    cr_assert(cl_resp(c, &r, false));
    cr_assert_str_eq(r.body, "hello again");
    resp_free(&r);
    cr_assert(cl_closed(c));
    cl_close(c);
    /* a big response, pipelined behind a small one */
    c = cl_open(f.port);
    cl_sends(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /big HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_resp(c, &r, false));
    resp_free(&r);
    cr_assert(cl_resp(c, &r, false));
    cr_assert_eq(r.blen, 256 * 1024);
    for (size_t i = 0; i < r.blen; i++) cr_assert_eq(r.body[i], (char)('a' + i % 26), "byte %zu", i);
    resp_free(&r);
    cr_assert(cl_resp(c, &r, false));
    cr_assert_str_eq(r.body, "root");
    resp_free(&r);
    cl_close(c);
    fx_stop(&f, SEC);
    return NULL;
}

Test(http, keep_alive_pipelining_and_byte_by_byte_requests_are_answered_in_order, .timeout = 60)
{
    BOTH(pipeline_main);
}

/* ------------------------------------------------------------ bodies */

static void *bodies_main(void *arg)
{
    struct fx f;
    fx_start(&f, NULL);
    struct resp r;
    /* chunked request body, with extensions and a trailer */
    const char *chunked = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: t\r\n\r\n";
    one(f.port, chunked, &r, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "hello world!");
    resp_free(&r);
    /* a 600 KiB body by Content-Length, in pieces */
    size_t n = 600 * 1024;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++) big[i] = (char)(i * 7 + 3);
    struct cl *c = cl_open(f.port);
    char head[128];
    int hl = snprintf(head, sizeof head, "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
    cl_send(c, head, (size_t)hl);
    for (size_t o = 0; o < n; o += 70000) cl_send(c, big + o, n - o < 70000 ? n - o : 70000);
    cr_assert(cl_resp(c, &r, false));
    cr_assert_eq(r.blen, n, "status %d, %zu bytes: %.100s", r.status, r.blen, r.body);
    cr_assert(memcmp(r.body, big, n) == 0);
    resp_free(&r);
    /* the same as chunked, 10 KiB chunks */
    cl_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t o = 0; o < n; o += 10240) {
        size_t k = n - o < 10240 ? n - o : 10240;
        char sz[32];
        int sl = snprintf(sz, sizeof sz, "%zx\r\n", k);
        cl_send(c, sz, (size_t)sl);
        cl_send(c, big + o, k);
        cl_sends(c, "\r\n");
    }
    cl_sends(c, "0\r\n\r\n");
    cr_assert(cl_resp(c, &r, false));
    cr_assert_eq(r.blen, n);
    cr_assert(memcmp(r.body, big, n) == 0);
    resp_free(&r);
    cl_close(c);
    free(big);
    /* streamed responses: chunked, and a declared length */
    one(f.port, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", &r, NULL);
    cr_assert(r.chunked);
    cr_assert_str_eq(r.body, "one,two,three");
    resp_free(&r);
    one(f.port, "GET /stream-len HTTP/1.1\r\nHost: x\r\n\r\n", &r, NULL);
    cr_assert(!r.chunked);
    cr_assert_str_eq(r.body, "0123456789");
    resp_free(&r);
    /* HTTP/1.0 gets the stream unframed, then a close */
    bool closed;
    one(f.port, "GET /stream HTTP/1.0\r\n\r\n", &r, &closed);
    cr_assert_str_eq(r.body, "one,two,three");
    resp_free(&r);
    /* HEAD of a streamed GET: no body bytes at all */
    c = cl_open(f.port);
    cl_sends(c, "HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_resp(c, &r, true));
    resp_free(&r);
    cr_assert(cl_resp(c, &r, false));
    cr_assert_str_eq(r.body, "root");
    resp_free(&r);
    cl_close(c);
    fx_stop(&f, SEC);
    return NULL;
}

Test(http, chunked_and_long_bodies_arrive_whole_both_ways, .timeout = 60)
{
    BOTH(bodies_main);
}

static void *continue_main(void *arg)
{
    struct fx f;
    fx_start(&f, NULL);
    struct cl *c = cl_open(f.port);
    cl_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    struct resp r;
    cr_assert(cl_resp(c, &r, false));
    cr_assert_eq(r.status, 100, "100 Continue before the body is sent");
    resp_free(&r);
    cl_sends(c, "data");
    cr_assert(cl_resp(c, &r, false));
    cr_assert_eq(r.status, 200, "%d %s", r.status, r.body);
    cr_assert_str_eq(r.body, "data");
    resp_free(&r);
    /* the body sent along anyway: no 100 */
    cl_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok");
    cr_assert(cl_resp(c, &r, false));
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ok");
    resp_free(&r);
    cl_close(c);
    /* too large: 413 at once, no 100, nothing read, closed */
    bool closed;
    one(f.port, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n", &r,
        &closed);
    cr_assert_eq(r.status, 413);
    cr_assert(closed);
    resp_free(&r);
    /* another expectation */
    one(f.port, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: coffee\r\nContent-Length: 1\r\n\r\n", &r, &closed);
    cr_assert_eq(r.status, 417);
    resp_free(&r);
    cr_assert_eq(atomic_load(&handled), 2);
    fx_stop(&f, SEC);
    return NULL;
}

Test(http, expect_100_continue_is_answered_before_the_body, .timeout = 30)
{
    BOTH(continue_main);
}

/* ------------------------------------------------------------ errors and limits */

/* One raw request: its status, and whether the server closed after it. */
static void expect_close(uint16_t port, const char *req, size_t n, int status)
{
    struct cl *c = cl_open(port);
    cl_send(c, req, n);
    struct resp r;
    cr_assert(cl_resp(c, &r, false), "no response to %.60s", req);
    cr_assert_eq(r.status, status, "%.60s... -> %d, want %d", req, r.status, status);
    char v[32];
    cr_assert_str_eq(hdr(&r, "Connection", v, sizeof v), "close");
    resp_free(&r);
    cr_assert(cl_closed(c), "the server did not close after %d", status);
    cl_close(c);
}

static void *limits_main(void *arg)
{
    struct fx f;
    fx_start(&f, NULL);
    uint16_t p = f.port;
    char *big = malloc(64 * 1024);
    /* request line: 8 KiB is allowed, one more byte is 414 */
    size_t path = 8192 - strlen("GET / HTTP/1.1") - 6;
    int n = snprintf(big, 64 * 1024, "GET /files/%.*s HTTP/1.1\r\nHost: x\r\n\r\n", (int)path,
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    (void)n;
    static char line[20000];
    memset(line, 'x', sizeof line);
    size_t base = strlen("GET /files/ HTTP/1.1");
    n = snprintf(big, 64 * 1024, "GET /files/%.*s HTTP/1.1\r\nHost: x\r\n\r\n", (int)(8192 - base), line);
    struct resp r;
    one(p, big, &r, NULL);
    cr_assert_eq(r.status, 200, "a request line of exactly 8 KiB");
    resp_free(&r);
    n = snprintf(big, 64 * 1024, "GET /files/%.*s HTTP/1.1\r\nHost: x\r\n\r\n", (int)(8193 - base), line);
    expect_close(p, big, (size_t)n, 414);
    /* header block: 16 KiB is fine, more is 431; 100 fields fine, 101 not */
    n = snprintf(big, 64 * 1024, "GET / HTTP/1.1\r\nX: %.*s\r\n\r\n", 16384 - 5, line);
    one(p, big, &r, NULL);
    cr_assert_eq(r.status, 200, "a header block of exactly 16 KiB: %d", r.status);
    resp_free(&r);
    n = snprintf(big, 64 * 1024, "GET / HTTP/1.1\r\nX: %.*s\r\n\r\n", 16384 - 4, line);
    expect_close(p, big, (size_t)n, 431);
    size_t o = (size_t)snprintf(big, 64 * 1024, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 100; i++) o += (size_t)snprintf(big + o, 64 * 1024 - o, "H%d: v\r\n", i);
    memcpy(big + o, "\r\n", 3);
    one(p, big, &r, NULL);
    cr_assert_eq(r.status, 200, "100 fields");
    resp_free(&r);
    o += (size_t)snprintf(big + o, 64 * 1024 - o, "H100: v\r\n\r\n");
    expect_close(p, big, o, 431);
    /* body: 1 MiB by length is 413 before it is read; chunked past it too */
    expect_close(p, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n", 58, 413);
    struct cl *c = cl_open(p);
    cl_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    memset(big, 'b', 64 * 1024);
    for (int i = 0; i < 17; i++) { /* 17 x 64 KiB */
        cl_sends(c, "10000\r\n");
        if (coru_write_all(c->fd, big, 64 * 1024, coru_now() + 10 * SEC) < 0) break; /* closed early: fine */
        if (coru_write_all(c->fd, "\r\n", 2, coru_now() + 10 * SEC) < 0) break;
    }
    cr_assert(cl_resp(c, &r, false));
    cr_assert_eq(r.status, 413);
    resp_free(&r);
    cl_close(c);
    /* statuses for what cannot be served */
    const char *te = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    expect_close(p, te, strlen(te), 501);
    const char *v2 = "GET / HTTP/2.0\r\nHost: x\r\n\r\n";
    expect_close(p, v2, strlen(v2), 505);
    const char *v3 = "GET / HTTP/1.2\r\nHost: x\r\n\r\n";
    expect_close(p, v3, strlen(v3), 505);
    const char *garbage = "hello there\r\n\r\n";
    expect_close(p, garbage, strlen(garbage), 400);
    const char *nover = "GET /\r\n\r\n";
    expect_close(p, nover, strlen(nover), 400);
    free(big);
    cr_assert_eq(atomic_load(&handled), 3, "only the three good requests reached a handler");
    fx_stop(&f, SEC);
    return NULL;
}

Test(http, limits_give_414_431_413_and_bad_requests_501_505_400, .timeout = 60)
{
    BOTH(limits_main);
}

static void *timeouts_main(void *arg)
{
    struct coru_http_opts o = {
        .header_timeout = 200 * MS,
        .body_timeout = 200 * MS,
        .idle_timeout = 300 * MS,
    };
    struct fx f;
    fx_start(&f, &o);
    /* header timeout: a head that never ends gets 408 and a close */
    struct cl *c = cl_open(f.port);
    cl_sends(c, "GET / HTTP/1.1\r\nHost: x\r\n");
    int64_t t0 = coru_now();
    struct resp r;
    cr_assert(cl_resp(c, &r, false));
    cr_assert_eq(r.status, 408);
    cr_assert_geq(coru_now() - t0, 150 * MS);
    resp_free(&r);
    cr_assert(cl_closed(c));
    cl_close(c);
    /* body timeout */
    c = cl_open(f.port);
    cl_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    cr_assert(cl_resp(c, &r, false));
    cr_assert_eq(r.status, 408);
    resp_free(&r);
    cr_assert(cl_closed(c));
    cl_close(c);
    /* idle timeout: served, then closed without a response */
    c = cl_open(f.port);
    cl_sends(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_resp(c, &r, false));
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    t0 = coru_now();
    cr_assert(cl_closed(c), "idle keep-alive connection not closed");
    cr_assert_geq(coru_now() - t0, 200 * MS);
    cl_close(c);
    /* a connection that never sends anything is idle too */
    c = cl_open(f.port);
    cr_assert(cl_closed(c));
    cl_close(c);
    fx_stop(&f, SEC);
    return NULL;
}

Test(http, header_body_and_idle_timeouts_close_with_408_or_silently, .timeout = 60)
{
    BOTH(timeouts_main);
}

/* A client that stops reading a response: the write that cannot finish
 * in write_timeout fails with -ETIMEDOUT and the connection is closed. */
static void *write_timeout_main(void *arg)
{
    struct coru_http_opts o = {.write_timeout = 200 * MS};
    struct fx f;
    fx_start(&f, &o);
    atomic_store(&huge_rc, 1);
    struct cl *c = cl_open(f.port);
    cl_sends(c, "GET /huge HTTP/1.1\r\nHost: x\r\n\r\n");
    int64_t t0 = coru_now();
    while (atomic_load(&huge_rc) == 1 && coru_now() - t0 < 10 * SEC) coru_sleep(10 * MS);
    cr_assert_eq(atomic_load(&huge_rc), -ETIMEDOUT, "the stalled write: %d", atomic_load(&huge_rc));
    /* what the socket holds, then the end */
    static char buf[65536]; /* not on the coroutine's 64 KiB stack */
    ssize_t n;
    size_t got = 0;
    while ((n = coru_read_dl(c->fd, buf, sizeof buf, coru_now() + 5 * SEC)) > 0) got += (size_t)n;
    cr_assert(n == 0 || n == -ECONNRESET, "read %zd after %zu bytes", n, got);
    cr_assert_lt(got, (size_t)64 << 20, "the whole body came: no timeout");
    cl_close(c);
    fx_stop(&f, SEC);
    return NULL;
}

Test(http, a_stalled_write_times_out_and_closes_the_connection, .timeout = 60)
{
    BOTH(write_timeout_main);
}

static void *maxconns_main(void *arg)
{
    struct coru_http_opts o = {.max_conns = 2, .listeners = 1};
    struct fx f;
    fx_start(&f, &o);
    struct cl *a = cl_open(f.port), *b = cl_open(f.port);
    struct resp r;
    cl_sends(a, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_resp(a, &r, false));
    resp_free(&r);
    cl_sends(b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_resp(b, &r, false));
    resp_free(&r);
    /* the third waits in the backlog (or, multishot, accepted ahead) */
    struct cl *c3 = cl_open(f.port);
    cl_sends(c3, "GET /hello/third HTTP/1.1\r\nHost: x\r\n\r\n");
    char buf[16];
    cr_assert_eq(coru_read_dl(c3->fd, buf, sizeof buf, coru_now() + 200 * MS), -ETIMEDOUT,
                 "served above max_conns");
    cl_close(a); /* one slot frees: the third is served */
    cr_assert(cl_resp(c3, &r, false));
    cr_assert_str_eq(r.body, "hello third");
    resp_free(&r);
    cl_close(b);
    cl_close(c3);
    fx_stop(&f, SEC);
    return NULL;
}

Test(http, above_max_conns_new_connections_wait_until_one_closes, .timeout = 30)
{
    BOTH(maxconns_main);
}

/* ------------------------------------------------------------ shutdown */

struct inflight {
    uint16_t port;
    const char *req;
    struct resp r;
    bool got, closed;
};

static void *inflight_client(void *arg)
{
    struct inflight *x = arg;
    struct cl *c = cl_open(x->port);
    cl_sends(c, x->req);
    x->got = cl_resp(c, &x->r, false);
    x->closed = cl_closed(c);
    cl_close(c);
    return NULL;
}

static void *shutdown_main(void *arg)
{
    struct fx f;
    fx_start(&f, NULL);
    /* an idle keep-alive connection, and a request in flight */
    struct cl *idle = cl_open(f.port);
    struct resp r;
    cl_sends(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_resp(idle, &r, false));
    resp_free(&r);
    struct inflight x = {.port = f.port, .req = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"};
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, inflight_client, &x, NULL), 0);
    while (atomic_load(&handled) < 2) coru_sleep(MS);
    int64_t t0 = coru_now();
    cr_assert_eq(coru_http_server_shutdown(f.srv, coru_now() + 5 * SEC), 0);
    cr_assert_eq(coru_http_server_shutdown(f.srv, coru_now() + 5 * SEC), -EALREADY);
    cr_assert(cl_closed(idle), "the idle connection is closed at once");
    cr_assert_lt(coru_now() - t0, 200 * MS);
    cl_close(idle);
    /* new connections are refused */
    cr_assert_eq(coru_join(h, NULL), 0);
    cr_assert(x.got, "the request in flight finished");
    cr_assert_eq(x.r.status, 200);
    cr_assert_str_eq(x.r.body, "slow");
    char v[32];
    cr_assert_str_eq(hdr(&x.r, "Connection", v, sizeof v), "close");
    cr_assert(x.closed);
    resp_free(&x.r);
    cr_assert_eq(coru_join_dl(f.serve, NULL, coru_now() + 5 * SEC), 0);
    cr_assert_eq(f.serve_rc, 0);
    int fd = coru_tcp_connect("127.0.0.1", f.port, coru_now() + SEC);
    cr_assert_lt(fd, 0, "still accepting after shutdown");
    coru_http_server_destroy(f.srv);

    /* the deadline cuts what is left */
    fx_start(&f, NULL);
    struct inflight y = {.port = f.port, .req = "GET /forever HTTP/1.1\r\nHost: x\r\n\r\n"};
    cr_assert_eq(coru_spawn(&h, inflight_client, &y, NULL), 0);
    while (atomic_load(&handled) < 1) coru_sleep(MS);
    t0 = coru_now();
    cr_assert_eq(coru_http_server_shutdown(f.srv, coru_now() + 200 * MS), 0);
    cr_assert_eq(coru_join_dl(f.serve, NULL, coru_now() + 5 * SEC), 0);
    int64_t took = coru_now() - t0;
    cr_assert_geq(took, 150 * MS);
    cr_assert_lt(took, 3 * SEC);
    cr_assert_eq(atomic_load(&cut_handlers), 1, "the handler saw -ECANCELED");
    cr_assert_eq(coru_join(h, NULL), 0);
    cr_assert(y.got, "a cut handler still gets a 500 out");
    cr_assert_eq(y.r.status, 500);
    resp_free(&y.r);
    coru_http_server_destroy(f.srv);
    return NULL;
}

Test(http, shutdown_closes_idle_connections_finishes_requests_and_cuts_at_the_deadline, .timeout = 60)
{
    BOTH(shutdown_main);
}
