/* Tests for the HTTP client (src/http/client*.c, url.c), both engines:
 * URL parsing and redirect resolution; against a scripted raw server (our
 * own bytes on the wire, so each test says exactly what the server sends
 * and counts the connections it accepted): keep-alive reuse, pool limits
 * and FIFO waiting, the stale-connection retry, chunked, until-close,
 * HEAD, 1xx and gzip bodies, every redirect rule, deadlines and
 * cancellation mid-response, malformed responses; and against coru's own
 * server (a streamed request body). https: test_http_client_tls.c. The
 * scripted server is in http_client_helpers.h. Real servers
 * nobody here wrote (aiohttp, Python's http.server and ssl, openssl
 * s_server) are in test_http_crawler.py. */
#include <coru/http.h>
#include <coru/tls.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <zlib.h>

#include "coru.h"
#include "helpers.h"
#include "http/url.h"

#include "http_client_helpers.h"

/* ------------------------------------------------------------ URLs */

Test(http_client, urls_parse_strictly)
{
    struct coru__url *u = malloc(sizeof *u);
    cr_assert_eq(coru__url_parse(u, "http://Example.COM/a/b?x=1#frag"), 0);
    cr_assert_str_eq(u->host, "example.com");
    cr_assert_eq(u->port, 80);
    cr_assert_str_eq(u->target, "/a/b?x=1");
    cr_assert_str_eq(u->full, "http://example.com/a/b?x=1");
    cr_assert_eq(coru__url_parse(u, "http://127.0.0.1:8080"), 0);
    cr_assert_str_eq(u->target, "/");
    cr_assert_eq(u->port, 8080);
    cr_assert_eq(coru__url_parse(u, "http://[::1]:9/p"), 0);
    cr_assert(u->ipv6);
    cr_assert_str_eq(u->host, "::1");
    cr_assert_str_eq(u->full, "http://[::1]:9/p");
    cr_assert_eq(coru__url_parse(u, "https://h/"), 0);
    cr_assert(u->https);
    cr_assert_eq(u->port, 443);
    cr_assert_eq(coru__url_parse(u, "http://h?q"), 0);
    cr_assert_str_eq(u->target, "/?q");
    cr_assert_eq(coru__url_parse(u, "HTTPS://[::1]/x"), 0);
    cr_assert(u->https && u->ipv6 && u->default_port);
    cr_assert_str_eq(u->full, "https://[::1]/x");
    cr_assert_eq(coru__url_parse(u, "https://h:443/"), 0);
    cr_assert(u->default_port);
    cr_assert_str_eq(u->full, "https://h/");
    cr_assert_eq(coru__url_parse(u, "https://h:80/"), 0);
    cr_assert_str_eq(u->full, "https://h:80/");
    /* well-formed, another scheme: not ours */
    cr_assert_eq(coru__url_parse(u, "ftp://h/"), -EPROTONOSUPPORT);
    cr_assert_eq(coru__url_parse(u, "svn+ssh://h/"), -EPROTONOSUPPORT);
    const char *bad[] = {"", "h/x", "1ftp://h/", "ftp:/h", "http://", "http:///x", "http://u:p@h/", "http://h:0/",
                         "http://h:65536/", "http://h:/", "http://h:8x/", "http://h/a b", "http://h/\x01",
                         "http://[::1/", "http://[zz]/", "http://h/%zz", "http://h\\x/", "http://h/\xc3\xa9",
                         "http://[1:2]/", "http://[1:2:3:4:5:6:7:8:9]/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(coru__url_parse(u, bad[i]), -EINVAL, "accepted %s", bad[i]);
    free(u);
}

Test(http_client, redirect_locations_resolve_against_the_base)
{
    struct coru__url *b = malloc(sizeof *b), *o = malloc(sizeof *o);
    cr_assert_eq(coru__url_parse(b, "http://h:81/a/b/c?q=1"), 0);
    struct {
        const char *ref, *want;
    } cases[] = {
        {"http://x/y", "http://x/y"},     {"//x:82/y", "http://x:82/y"},    {"/z", "http://h:81/z"},
        {"d", "http://h:81/a/b/d"},       {"../d", "http://h:81/a/d"},      {"./d?e", "http://h:81/a/b/d?e"},
        {"?r", "http://h:81/a/b/c?r"},    {"../../../d", "http://h:81/d"},  {"#f", "http://h:81/a/b/c?q=1"},
        {"/a/./b/../c", "http://h:81/a/c"}, {"?t=10:30", "http://h:81/a/b/c?t=10:30"},
        {"search?q=a:b", "http://h:81/a/b/search?q=a:b"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(coru__url_resolve(o, b, cases[i].ref), 0, "%s", cases[i].ref);
        cr_assert_str_eq(o->full, cases[i].want, "%s", cases[i].ref);
    }
    cr_assert_eq(coru__url_resolve(o, b, "mailto:x@y"), -EINVAL);
    cr_assert_eq(coru__url_resolve(o, b, ""), -EINVAL);
    cr_assert(coru__url_same_origin(b, b));
    cr_assert_eq(coru__url_resolve(o, b, "http://h:82/"), 0);
    cr_assert_not(coru__url_same_origin(b, o));
    /* https bases: scheme-relative keeps https; http and https of one
     * host and port are two origins */
    cr_assert_eq(coru__url_parse(b, "https://h/a"), 0);
    cr_assert_eq(coru__url_resolve(o, b, "//x/y"), 0);
    cr_assert_str_eq(o->full, "https://x/y");
    cr_assert(o->https && o->port == 443);
    cr_assert_eq(coru__url_resolve(o, b, "http://h:443/a"), 0);
    cr_assert_not(coru__url_same_origin(b, o));
    cr_assert_eq(coru__url_resolve(o, b, "/z"), 0);
    cr_assert(coru__url_same_origin(b, o));
    cr_assert_eq(coru__url_resolve(o, b, "ftp://h/"), -EINVAL);
    free(b);
    free(o);
}

/* ------------------------------------------------------------ keep-alive */


static void keepalive_case(void)
{
    struct rsrv s;
    rsrv_start(&s, s_hello);
    coru_http_client *cl;
    EXPECT(coru_http_client_create(&cl, NULL) == 0, "create");
    char url[128], body[512];
    url_of(url, sizeof url, &s, "/k");
    for (int i = 1; i <= 20; i++) {
        int st = 0;
        int rc = get(cl, url, &st, body, sizeof body);
        char want[64];
        snprintf(want, sizeof want, "conn 1 req %d /k", i);
        EXPECT(rc == 0 && st == 200 && strcmp(body, want) == 0, "request %d: rc %d status %d body %s", i, rc, st, body);
    }
    EXPECT(atomic_load(&s.accepts) == 1, "%d connections for 20 sequential requests", atomic_load(&s.accepts));
    coru_http_response *r;
    EXPECT(coru_http_do(cl, &(struct coru_http_request){.url = url}, &r, coru_now() + 5 * SEC) == 0, "do");
    EXPECT(strcmp(coru_http_response_header(r, "X-a"), "1") == 0, "first X-A");
    EXPECT(coru_http_response_header_count(r) == 3, "%zu fields", coru_http_response_header_count(r));
    const char *nm, *v;
    EXPECT(coru_http_response_header_at(r, 2, &nm, &v) == 0 && strcmp(nm, "x-a") == 0 && strcmp(v, "2") == 0,
           "repeated field kept");
    EXPECT(coru_http_response_header_at(r, 3, &nm, &v) == -ERANGE, "past the end");
    EXPECT(strcmp(coru_http_response_reason(r), "OK") == 0, "reason");
    EXPECT(strcmp(coru_http_response_url(r), url) == 0, "url %s", coru_http_response_url(r));
    EXPECT(strstr(s.last_head, "\r\nHost: 127.0.0.1:") && strstr(s.last_head, "\r\nUser-Agent: coru\r\n") &&
               strstr(s.last_head, "\r\nAccept-Encoding: gzip\r\n"),
           "request head: %.300s", s.last_head);
    coru_http_response_free(r); /* body unread: the connection is closed */
    {
        int before = atomic_load(&s.accepts);
        struct coru_http_header close_h[] = {{"Connection", "close"}};
        char *b2;
        size_t n2;
        coru_http_response *cr;
        EXPECT(coru_http_do(cl, &(struct coru_http_request){.url = url, .headers = close_h, .nheaders = 1}, &cr,
                            coru_now() + 5 * SEC) == 0 &&
                   coru_http_response_read_all(cr, &b2, &n2, 0, CORU_NEVER) == 0,
               "Connection: close request");
        free(b2);
        coru_http_response_free(cr);
        EXPECT(get(cl, url, NULL, body, sizeof body) == 0 && atomic_load(&s.accepts) == before + 2,
               "the connection of a Connection: close request was pooled (%d accepts)", atomic_load(&s.accepts) - before);
    }
    /* a name: resolved (and cached), each address tried in turn ("localhost"
     * may give ::1 first, where nothing listens) */
    char named[128];
    snprintf(named, sizeof named, "http://localhost:%u/n", s.port);
    for (int i = 0; i < 2; i++) {
        int st = 0;
        int rc = get(cl, named, &st, body, sizeof body);
        EXPECT(rc == 0 && st == 200 && strstr(body, " /n"), "localhost #%d: rc %d status %d", i, rc, st);
    }
    EXPECT(get(cl, "http://no-such-host.invalid/", NULL, body, sizeof body) < 0, "a name that does not resolve");
    EXPECT(get(cl, url, NULL, body, sizeof body) == 0 && strncmp(body, "conn ", 5) == 0, "at the end: %s", body);
    coru_http_client_destroy(cl);
    rsrv_stop(&s);
}

Test(http_client, keep_alive_reuses_one_connection, .timeout = 60)
{
    both_engines(keepalive_case);
}

/* ------------------------------------------------------------ pool limits */

static _Atomic int order_next;
static int finish_order[16];

struct pool_task {
    coru_http_client *cl;
    char url[128];
    int id;
    coru_waitgroup *wg;
};

static void *pool_task(void *arg)
{
    struct pool_task *t = arg;
    char body[256];
    int st = 0;
    int rc = get(t->cl, t->url, &st, body, sizeof body);
    EXPECT(rc == 0 && st == 200, "task %d: rc %d status %d", t->id, rc, st);
    finish_order[atomic_fetch_add(&order_next, 1)] = t->id;
    coru_waitgroup_done(t->wg);
    return NULL;
}

static void run_tasks(coru_http_client *cl, struct rsrv *s, int n, int64_t gap)
{
    struct pool_task t[16];
    coru_waitgroup *wg;
    coru_waitgroup_create(&wg);
    coru_waitgroup_add(wg, n);
    atomic_store(&order_next, 0);
    for (int i = 0; i < n; i++) {
        t[i] = (struct pool_task){cl, "", i, wg};
        url_of(t[i].url, sizeof t[i].url, s, "/p");
        coru_go(pool_task, &t[i], NULL);
        if (gap) coru_sleep(gap);
    }
    coru_waitgroup_wait(wg);
    coru_waitgroup_destroy(wg);
}

static void pool_case(void)
{
    struct rsrv s;
    rsrv_start(&s, s_hello);
    atomic_store(&s.delay_ms, 20);
    coru_http_client *cl;
    coru_http_client_create(&cl, &(struct coru_http_client_opts){.max_conns = 2});
    run_tasks(cl, &s, 10, 0);
    EXPECT(atomic_load(&s.max_active) <= 2, "%d connections open at once, limit 2", atomic_load(&s.max_active));
    EXPECT(atomic_load(&s.accepts) == 2, "%d connections made", atomic_load(&s.accepts));
    coru_http_client_destroy(cl);
    /* one connection: the waiters are served in the order they came */
    coru_http_client_create(&cl, &(struct coru_http_client_opts){.max_conns = 1});
    run_tasks(cl, &s, 8, 3 * MS);
    for (int i = 0; i < 8; i++) EXPECT(finish_order[i] == i, "finish #%d was task %d: not FIFO", i, finish_order[i]);
    coru_http_client_destroy(cl);
    /* the total is full with host a's connection: a waiter for host b goes
     * on once a's connection is back (it is closed to make room) */
    {
        struct rsrv s2;
        rsrv_start(&s2, s_hello);
        coru_http_client_create(&cl, &(struct coru_http_client_opts){.max_conns = 1});
        struct pool_task ta = {cl, "", 0, NULL}, tb = {cl, "", 1, NULL};
        coru_waitgroup *wg;
        coru_waitgroup_create(&wg);
        coru_waitgroup_add(wg, 2);
        ta.wg = tb.wg = wg;
        url_of(ta.url, sizeof ta.url, &s, "/a");
        url_of(tb.url, sizeof tb.url, &s2, "/b");
        atomic_store(&order_next, 0);
        coru_go(pool_task, &ta, NULL);
        coru_sleep(5 * MS);
        coru_go(pool_task, &tb, NULL);
        coru_waitgroup_wait(wg);
        coru_waitgroup_destroy(wg);
        EXPECT(atomic_load(&order_next) == 2, "both hosts served");
        coru_http_client_destroy(cl);
        rsrv_stop(&s2);
    }
    rsrv_stop(&s);
    /* per host: one at a time, however many in total */
    rsrv_start(&s, s_hello);
    atomic_store(&s.delay_ms, 10);
    coru_http_client_create(&cl, &(struct coru_http_client_opts){.max_conns = 50, .max_conns_per_host = 1});
    run_tasks(cl, &s, 6, 0);
    EXPECT(atomic_load(&s.max_active) == 1, "%d connections to one host, per-host limit 1", atomic_load(&s.max_active));
    coru_http_client_destroy(cl);
    rsrv_stop(&s);
}

Test(http_client, pool_limits_hold_and_waiters_go_in_fifo_order, .timeout = 60)
{
    both_engines(pool_case);
}

/* ------------------------------------------------------------ stale connections */



static void stale_case(void)
{
    struct rsrv s;
    rsrv_start(&s, s_drop_second);
    coru_http_client *cl;
    coru_http_client_create(&cl, NULL);
    char url[128], body[256];
    url_of(url, sizeof url, &s, "/s");
    int st = 0;
    EXPECT(get(cl, url, &st, body, sizeof body) == 0 && strcmp(body, "conn 1 req 1 /s") == 0, "first");
    /* reuses connection 1; the server drops it unanswered: retried once */
    EXPECT(get(cl, url, &st, body, sizeof body) == 0 && strcmp(body, "conn 2 req 1 /s") == 0, "retried GET: %s", body);
    EXPECT(atomic_load(&s.accepts) == 2, "%d connections", atomic_load(&s.accepts));
    /* not idempotent: not retried */
    coru_http_response *r = NULL;
    int rc = coru_http_do(cl, &(struct coru_http_request){.method = "POST", .url = url, .body = "x", .body_len = 1}, &r,
                          coru_now() + 5 * SEC);
    EXPECT(rc == -ECONNRESET || rc == -EPIPE, "POST on a dropped connection: %d", rc);
    EXPECT(atomic_load(&s.accepts) == 2, "the POST was sent again");
    coru_http_client_destroy(cl);
    /* retries under a per-host limit of 1: a retry that wants a new
     * connection gets one once the other caller's is back */
    coru_http_client_create(&cl, &(struct coru_http_client_opts){.max_conns_per_host = 1});
    EXPECT(get(cl, url, &st, body, sizeof body) == 0, "warm-up");
    run_tasks(cl, &s, 4, 0);
    coru_http_client_destroy(cl);
    rsrv_stop(&s);
    /* a server that closes after each answer: the pool sees the EOF and
     * dials afresh, nothing fails */
    rsrv_start(&s, s_close_after);
    coru_http_client_create(&cl, NULL);
    url_of(url, sizeof url, &s, "/c");
    for (int i = 1; i <= 5; i++) {
        rc = get(cl, url, &st, body, sizeof body);
        EXPECT(rc == 0 && st == 200, "request %d after a silent close: %d", i, rc);
        coru_sleep(2 * MS); /* let the FIN arrive */
    }
    EXPECT(atomic_load(&s.accepts) == 5, "%d connections", atomic_load(&s.accepts));
    coru_http_client_destroy(cl);
    rsrv_stop(&s);
}

Test(http_client, a_connection_the_server_dropped_is_retried_once_for_idempotent_requests, .timeout = 60)
{
    both_engines(stale_case);
}

/* ------------------------------------------------------------ bodies */

static char gz_plain[100000];
static unsigned char gz_data[120000];
static size_t gz_len;

static void make_gzip(void)
{
    for (size_t i = 0; i < sizeof gz_plain; i++) gz_plain[i] = (char)('a' + (i * 7) % 26);
    z_stream z = {0};
    deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    z.next_in = (Bytef *)gz_plain;
    z.avail_in = sizeof gz_plain;
    z.next_out = gz_data;
    z.avail_out = sizeof gz_data;
    deflate(&z, Z_FINISH);
    gz_len = sizeof gz_data - z.avail_out;
    deflateEnd(&z);
}

static int s_bodies(struct rsrv *s, const struct rreq *rq, char *out, size_t *n)
{
    (void)s;
    char p[256];
    path_of(rq, p, sizeof p);
    if (strcmp(p, "/chunked") == 0) {
        *n = fmt(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n,\r\n"
                      "6\r\n world\r\n0\r\nTrailer: x\r\n\r\n");
    } else if (strcmp(p, "/gzip") == 0) {
        *n = fmt(out, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n", gz_len);
        memcpy(out + *n, gz_data, gz_len);
        *n += gz_len;
    } else if (strcmp(p, "/close") == 0) {
        *n = fmt(out, "HTTP/1.1 200 OK\r\n\r\nuntil the end");
        return ACT_CLOSE;
    } else if (strcmp(p, "/head") == 0) {
        *n = fmt(out, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"); /* HEAD: no body follows */
    } else if (strcmp(p, "/204") == 0) {
        *n = fmt(out, "HTTP/1.1 204 No Content\r\n\r\n");
    } else if (strcmp(p, "/304") == 0) {
        *n = fmt(out, "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n");
    } else if (strcmp(p, "/interim") == 0) {
        *n = fmt(out, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
                      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    } else if (strcmp(p, "/big") == 0) {
        *n = fmt(out, "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n");
        memset(out + *n, 'b', 5000);
        *n += 5000;
    } else if (strcmp(p, "/echo") == 0) {
        *n = fmt(out, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", rq->blen);
        memcpy(out + *n, rq->body, rq->blen);
        *n += rq->blen;
    } else {
        *n = fmt(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    }
    return ACT_KEEP;
}

static int read_body(coru_http_client *cl, const char *method, const char *url, char **body, size_t *len)
{
    coru_http_response *r;
    int rc = coru_http_do(cl, &(struct coru_http_request){.method = method, .url = url}, &r, coru_now() + 5 * SEC);
    if (rc) return rc;
    rc = coru_http_response_read_all(r, body, len, 0, CORU_NEVER);
    int st = coru_http_response_status(r);
    coru_http_response_free(r);
    return rc ? rc : st;
}


static void bodies_case(void)
{
    struct rsrv s;
    rsrv_start(&s, s_bodies);
    coru_http_client *cl;
    coru_http_client_create(&cl, NULL);
    char url[128], *b;
    size_t n;
    url_of(url, sizeof url, &s, "/chunked");
    EXPECT(read_body(cl, NULL, url, &b, &n) == 200 && n == 12 && strcmp(b, "hello, world") == 0, "chunked: %s", b);
    free(b);
    {
        coru_http_response *tr;
        EXPECT(coru_http_do(cl, &(struct coru_http_request){.url = url}, &tr, coru_now() + 5 * SEC) == 0, "chunked do");
        EXPECT(coru_http_response_read_all(tr, &b, &n, 0, CORU_NEVER) == 0, "chunked read");
        free(b);
        /* the trailer is parsed and dropped, not made a header field */
        EXPECT(coru_http_response_header(tr, "trailer") == NULL && coru_http_response_header_count(tr) == 1,
               "%zu fields after a trailer", coru_http_response_header_count(tr));
        coru_http_response_free(tr);
    }
    url_of(url, sizeof url, &s, "/gzip");
    coru_http_response *r;
    EXPECT(coru_http_do(cl, &(struct coru_http_request){.url = url}, &r, coru_now() + 5 * SEC) == 0, "gzip do");
    EXPECT(coru_http_response_header(r, "content-encoding") == NULL, "Content-Encoding shown after decoding");
    EXPECT(coru_http_response_read_all(r, &b, &n, 0, CORU_NEVER) == 0 && n == sizeof gz_plain &&
               memcmp(b, gz_plain, n) == 0,
           "gzip body: %zu bytes", n);
    free(b);
    coru_http_response_free(r);
    url_of(url, sizeof url, &s, "/head");
    EXPECT(read_body(cl, "HEAD", url, &b, &n) == 200 && n == 0, "HEAD: %zu bytes", n);
    free(b);
    int before = atomic_load(&s.accepts);
    url_of(url, sizeof url, &s, "/204");
    EXPECT(read_body(cl, NULL, url, &b, &n) == 204 && n == 0, "204");
    free(b);
    url_of(url, sizeof url, &s, "/304");
    EXPECT(read_body(cl, NULL, url, &b, &n) == 304 && n == 0, "304");
    free(b);
    url_of(url, sizeof url, &s, "/interim");
    EXPECT(read_body(cl, NULL, url, &b, &n) == 200 && strcmp(b, "ok") == 0, "after 100 and 103: %s", b);
    free(b);
    EXPECT(atomic_load(&s.accepts) == before, "HEAD, 204, 304, 1xx: the connection was not reused");
    url_of(url, sizeof url, &s, "/close");
    EXPECT(read_body(cl, NULL, url, &b, &n) == 200 && strcmp(b, "until the end") == 0, "until close: %s", b);
    free(b);
    url_of(url, sizeof url, &s, "/big");
    EXPECT(coru_http_do(cl, &(struct coru_http_request){.url = url}, &r, coru_now() + 5 * SEC) == 0, "big do");
    EXPECT(coru_http_response_read_all(r, &b, &n, 4000, CORU_NEVER) == -EFBIG, "over the limit");
    coru_http_response_free(r);
    int left = 3;
    url_of(url, sizeof url, &s, "/echo");
    EXPECT(coru_http_do(cl,
                        &(struct coru_http_request){.method = "POST", .url = url, .body_read = pieces, .body_ctx = &left},
                        &r, coru_now() + 5 * SEC) == 0,
           "streamed POST");
    EXPECT(coru_http_response_read_all(r, &b, &n, 0, CORU_NEVER) == 0 && strcmp(b, "piece;piece;piece;") == 0,
           "streamed body echoed: %s", b);
    free(b);
    coru_http_response_free(r);
    coru_http_client_destroy(cl);
    /* no gzip: not asked for, not decoded */
    coru_http_client_create(&cl, &(struct coru_http_client_opts){.no_gzip = 1});
    url_of(url, sizeof url, &s, "/gzip");
    EXPECT(coru_http_do(cl, &(struct coru_http_request){.url = url}, &r, coru_now() + 5 * SEC) == 0, "raw gzip");
    EXPECT(!strstr(s.last_head, "Accept-Encoding"), "no_gzip still sent Accept-Encoding");
    EXPECT(coru_http_response_header(r, "content-encoding") != NULL, "raw: Content-Encoding hidden");
    EXPECT(coru_http_response_read_all(r, &b, &n, 0, CORU_NEVER) == 0 && n == gz_len, "raw gzip bytes: %zu", n);
    free(b);
    coru_http_response_free(r);
    coru_http_client_destroy(cl);
    rsrv_stop(&s);
}

Test(http_client, chunked_gzip_until_close_head_and_interim_bodies, .timeout = 60)
{
    make_gzip();
    both_engines(bodies_case);
}

/* ------------------------------------------------------------ redirects */




static void redirect_case(void)
{
    struct rsrv s, s2;
    rsrv_start(&s, s_redirects);
    rsrv_start(&s2, s_redirects);
    other = &s2;
    coru_http_client *cl;
    coru_http_client_create(&cl, NULL);
    char url[128], body[256], final[600], want[128];
    struct coru_http_header creds[] = {{"Authorization", "Basic eDp5"}, {"Cookie", "a=b"}};
    int codes[] = {301, 302, 303, 307, 308};
    for (int i = 0; i < 5; i++) {
        char path[32];
        snprintf(path, sizeof path, "/to/%d", codes[i]);
        url_of(url, sizeof url, &s, path);
        int st = do_body(cl,
                         &(struct coru_http_request){.method = "POST", .url = url, .body = "data", .body_len = 4,
                                                     .headers = creds, .nheaders = 2},
                         body, sizeof body, final, sizeof final);
        const char *w = codes[i] >= 307 ? "POST body=data auth=1 cookie=1" : "GET body= auth=1 cookie=1";
        EXPECT(st == 200 && strcmp(body, w) == 0, "%d: %d %s", codes[i], st, body);
        url_of(want, sizeof want, &s, "/dest");
        EXPECT(strcmp(final, want) == 0, "%d: final URL %s", codes[i], final);
    }
    url_of(url, sizeof url, &s, "/to/302");
    EXPECT(do_body(cl, &(struct coru_http_request){.method = "HEAD", .url = url}, body, sizeof body, NULL, 0) == 200,
           "HEAD through a 302");
    EXPECT(strncmp(s.last_head, "HEAD ", 5) == 0, "302 turned HEAD into %.8s", s.last_head);
    /* leaving the origin drops the credentials */
    url_of(url, sizeof url, &s, "/away");
    int st = do_body(cl, &(struct coru_http_request){.url = url, .headers = creds, .nheaders = 2}, body, sizeof body,
                     final, sizeof final);
    EXPECT(st == 200 && strcmp(body, "GET body= auth=0 cookie=0") == 0, "cross-origin: %d %s", st, body);
    url_of(want, sizeof want, &s2, "/dest");
    EXPECT(strcmp(final, want) == 0, "cross-origin final URL %s", final);
    struct coru_http_header host_h[] = {{"Host", "api.internal"}};
    url_of(url, sizeof url, &s, "/away");
    st = do_body(cl, &(struct coru_http_request){.url = url, .headers = host_h, .nheaders = 1}, body, sizeof body,
                 NULL, 0);
    char host_want[64];
    snprintf(host_want, sizeof host_want, "\r\nHost: 127.0.0.1:%u\r\n", s2.port);
    EXPECT(st == 200 && strstr(s2.last_head, host_want) && !strstr(s2.last_head, "api.internal"),
           "the caller's Host went on to another origin: %.300s", s2.last_head);
    url_of(url, sizeof url, &s, "/rel");
    st = do_body(cl, &(struct coru_http_request){.url = url}, body, sizeof body, final, sizeof final);
    url_of(want, sizeof want, &s, "/dest?x");
    EXPECT(st == 200 && strcmp(final, want) == 0, "relative Location: %d %s", st, final);
    url_of(url, sizeof url, &s, "/loop");
    EXPECT(do_body(cl, &(struct coru_http_request){.url = url}, body, sizeof body, NULL, 0) == -ELOOP, "loop");
    url_of(url, sizeof url, &s, "/nolocation");
    EXPECT(do_body(cl, &(struct coru_http_request){.url = url}, body, sizeof body, NULL, 0) == 302, "no Location");
    coru_http_client_destroy(cl);
    /* switched off: the 302 itself; and a limit of 2 */
    coru_http_client_create(&cl, &(struct coru_http_client_opts){.no_redirects = 1});
    url_of(url, sizeof url, &s, "/to/302");
    EXPECT(do_body(cl, &(struct coru_http_request){.url = url}, body, sizeof body, NULL, 0) == 302 &&
               strcmp(body, "move") == 0,
           "no_redirects");
    coru_http_client_destroy(cl);
    coru_http_client_create(&cl, &(struct coru_http_client_opts){.max_redirects = 2});
    int before = atomic_load(&s.requests);
    url_of(url, sizeof url, &s, "/loop");
    EXPECT(do_body(cl, &(struct coru_http_request){.url = url}, body, sizeof body, NULL, 0) == -ELOOP, "loop, 2");
    EXPECT(atomic_load(&s.requests) - before == 3, "%d requests for max_redirects 2", atomic_load(&s.requests) - before);
    coru_http_client_destroy(cl);
    rsrv_stop(&s);
    rsrv_stop(&s2);
}

Test(http_client, redirects_follow_the_method_and_credential_rules, .timeout = 60)
{
    both_engines(redirect_case);
}

/* ------------------------------------------------------------ errors, deadlines, cancel */

static int s_errors(struct rsrv *s, const struct rreq *rq, char *out, size_t *n)
{
    (void)s;
    char p[256];
    path_of(rq, p, sizeof p);
    if (strcmp(p, "/badstatus") == 0) {
        *n = fmt(out, "HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n");
    } else if (strcmp(p, "/status050") == 0) { /* the fuzzer's first find: llhttp takes it as 50 */
        *n = fmt(out, "HTTP/1.1 050 Odd\r\nContent-Length: 0\r\n\r\n");
    } else if (strcmp(p, "/badchunk") == 0) {
        *n = fmt(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n");
    } else if (strcmp(p, "/clte") == 0) {
        *n = fmt(out, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    } else if (strcmp(p, "/barelf") == 0) {
        *n = fmt(out, "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n");
    } else if (strcmp(p, "/hugehead") == 0) {
        *n = fmt(out, "HTTP/1.1 200 OK\r\n");
        for (int i = 0; i < 200; i++) *n += fmt(out + *n, "X-Filler-%d: %0500d\r\n", i, 0);
        *n += fmt(out + *n, "Content-Length: 0\r\n\r\n");
    } else if (strcmp(p, "/cut") == 0) {
        *n = fmt(out, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
        return ACT_CLOSE;
    } else if (strcmp(p, "/stallhead") == 0) {
        *n = 0;
        return ACT_STALL;
    } else if (strcmp(p, "/stallbody") == 0) {
        *n = fmt(out, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome");
        return ACT_STALL;
    } else {
        *n = fmt(out, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
    return ACT_KEEP;
}

struct cancel_arg {
    coru_http_client *cl;
    char url[128];
    int rc;
};

static void *blocked_get(void *arg)
{
    struct cancel_arg *a = arg;
    char body[64];
    a->rc = get(a->cl, a->url, NULL, body, sizeof body);
    return NULL;
}

static void errors_case(void)
{
    struct rsrv s;
    rsrv_start(&s, s_errors);
    coru_http_client *cl;
    coru_http_client_create(&cl, &(struct coru_http_client_opts){.max_header_bytes = 16384});
    char url[128], ok_url[128], body[64];
    url_of(ok_url, sizeof ok_url, &s, "/ok");
    struct {
        const char *path;
        int rc;
    } cases[] = {{"/badstatus", -EPROTO}, {"/status050", -EPROTO}, {"/badchunk", -EPROTO}, {"/clte", -EPROTO},
                 {"/barelf", -EPROTO},    {"/hugehead", -EMSGSIZE}, {"/cut", -ECONNRESET}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        url_of(url, sizeof url, &s, cases[i].path);
        int rc = get(cl, url, NULL, body, sizeof body);
        EXPECT(rc == cases[i].rc, "%s: %d, want %d", cases[i].path, rc, cases[i].rc);
        int st = 0;
        rc = get(cl, ok_url, &st, body, sizeof body);
        EXPECT(rc == 0 && st == 200, "after %s the session failed: %d", cases[i].path, rc);
    }
    EXPECT(get(cl, "ftp://127.0.0.1:1/", NULL, body, sizeof body) == -EPROTONOSUPPORT, "ftp");
    EXPECT(get(cl, "https://127.0.0.1:1/", NULL, body, sizeof body) == -ECONNREFUSED, "https, nothing listening");
    int before = atomic_load(&s.accepts);
    EXPECT(get(cl, "http://127.0.0.1:99999/", NULL, body, sizeof body) == -EINVAL, "bad port");
    EXPECT(atomic_load(&s.accepts) == before, "a bad URL made a connection");
    /* deadlines: before the head, and in the body */
    url_of(url, sizeof url, &s, "/stallhead");
    int64_t t0 = coru_now();
    coru_http_response *r;
    int rc = coru_http_do(cl, &(struct coru_http_request){.url = url}, &r, t0 + 100 * MS);
    EXPECT(rc == -ETIMEDOUT && coru_now() - t0 >= 100 * MS, "stalled head: %d", rc);
    url_of(url, sizeof url, &s, "/stallbody");
    EXPECT(coru_http_do(cl, &(struct coru_http_request){.url = url}, &r, coru_now() + 5 * SEC) == 0, "stalled body head");
    char b[200];
    ssize_t got = coru_http_response_read(r, b, sizeof b, coru_now() + 5 * SEC);
    EXPECT(got == 4, "first bytes: %zd", got);
    got = coru_http_response_read(r, b, sizeof b, coru_now() + 50 * MS);
    EXPECT(got == -ETIMEDOUT, "stalled body: %zd", got);
    coru_http_response_free(r);
    /* the read timeout of the session */
    coru_http_client *cl2;
    coru_http_client_create(&cl2, &(struct coru_http_client_opts){.read_timeout = 50 * MS});
    url_of(url, sizeof url, &s, "/stallhead");
    EXPECT(get(cl2, url, NULL, body, sizeof body) == -ETIMEDOUT, "read_timeout");
    coru_http_client_destroy(cl2);
    /* cancel mid-response */
    struct cancel_arg a = {cl, "", 1};
    url_of(a.url, sizeof a.url, &s, "/stallbody");
    coru_t *h;
    coru_spawn(&h, blocked_get, &a, NULL);
    coru_sleep(30 * MS);
    coru_cancel(h);
    coru_join(h, NULL);
    EXPECT(a.rc == -ECANCELED, "cancelled get: %d", a.rc);
    int st = 0;
    rc = get(cl, ok_url, &st, body, sizeof body);
    EXPECT(rc == 0 && st == 200, "after the cancel: %d", rc);
    coru_http_client_destroy(cl);
    rsrv_stop(&s);
}

Test(http_client, malformed_responses_deadlines_and_cancel_fail_cleanly, .timeout = 60)
{
    both_engines(errors_case);
}
