/* Tests for the HTTP client over TLS (src/http/client_io.c and the
 * https paths of client.c and client_body.c), both engines: the scripted
 * raw server of http_client_helpers.h over coru_tls_server (certificates
 * made by `openssl req` before the run): GET and bodies, keep-alive on
 * one TLS connection, session resumption, close_notify, certificate
 * failures, the handshake timeout, redirects across schemes, the
 * stale-connection retry over TLS; and coru's own HTTPS server
 * (coru_http_opts.tls). Real TLS servers nobody here wrote (aiohttp over
 * ssl, Python's ssl http.server, openssl s_server) are in
 * test_http_crawler.py. */
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

/* ------------------------------------------------------------ https */

static int s_tls(struct rsrv *s, const struct rreq *rq, char *out, size_t *n)
{
    char p[256];
    path_of(rq, p, sizeof p);
    if (strcmp(p, "/echo") == 0) {
        *n = fmt(out, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", rq->blen);
        memcpy(out + *n, rq->body, rq->blen);
        *n += rq->blen;
        return ACT_KEEP;
    }
    if (strcmp(p, "/bye") == 0) {
        *n = fmt(out, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye");
        return ACT_CLOSE;
    }
    if (strcmp(p, "/eof") == 0 || strcmp(p, "/cut") == 0) { /* the body ends with the connection */
        *n = fmt(out, "HTTP/1.1 200 OK\r\n\r\nuntil the end");
        return p[1] == 'e' ? ACT_CLOSE : ACT_CUT;
    }
    return s_hello(s, rq, out, n);
}

static void https_case(void)
{
    struct rsrv s;
    rsrv_start_on(&s, s_tls, "127.0.0.1", srv_cfg);
    coru_http_client *cl;
    EXPECT(coru_http_client_create(&cl, &(struct coru_http_client_opts){.tls = ca_cfg}) == 0, "create");
    char url[128], body[512], want[64];
    url_of(url, sizeof url, &s, "/k");
    for (int i = 1; i <= 5; i++) {
        int st = 0;
        int rc = get(cl, url, &st, body, sizeof body);
        snprintf(want, sizeof want, "conn 1 req %d /k", i);
        EXPECT(rc == 0 && st == 200 && strcmp(body, want) == 0, "https #%d: rc %d status %d body %s", i, rc, st, body);
    }
    EXPECT(atomic_load(&s.accepts) == 1, "%d TLS connections for 5 sequential requests", atomic_load(&s.accepts));
    EXPECT(atomic_load(&s.resumed[1]) == 2, "the first connection resumed a session");
    char host_want[64];
    snprintf(host_want, sizeof host_want, "\r\nHost: 127.0.0.1:%u\r\n", s.port);
    EXPECT(strstr(s.last_head, host_want), "request head: %.300s", s.last_head);
    /* bodies: small (one record with the head), large, streamed */
    static char big[40000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + i % 23);
    url_of(url, sizeof url, &s, "/echo");
    coru_http_response *r;
    char *b = NULL;
    size_t n = 0;
    EXPECT(coru_http_do(cl, &(struct coru_http_request){.method = "POST", .url = url, .body = "small", .body_len = 5},
                        &r, coru_now() + 5 * SEC) == 0 &&
               coru_http_response_read_all(r, &b, &n, 0, CORU_NEVER) == 0 && n == 5 && memcmp(b, "small", 5) == 0,
           "small POST over TLS");
    free(b);
    coru_http_response_free(r);
    b = NULL;
    EXPECT(coru_http_do(cl, &(struct coru_http_request){.method = "PUT", .url = url, .body = big, .body_len = sizeof big},
                        &r, coru_now() + 5 * SEC) == 0 &&
               coru_http_response_read_all(r, &b, &n, 0, CORU_NEVER) == 0 && n == sizeof big &&
               memcmp(b, big, n) == 0,
           "large PUT over TLS: %zu bytes back", n);
    free(b);
    coru_http_response_free(r);
    b = NULL;
    int left = 3;
    EXPECT(coru_http_do(cl,
                        &(struct coru_http_request){.method = "POST", .url = url, .body_read = pieces, .body_ctx = &left},
                        &r, coru_now() + 5 * SEC) == 0 &&
               coru_http_response_read_all(r, &b, &n, 0, CORU_NEVER) == 0 && b && strcmp(b, "piece;piece;piece;") == 0,
           "streamed POST over TLS: %s", b ? b : "(none)");
    free(b);
    coru_http_response_free(r);
    EXPECT(atomic_load(&s.accepts) == 1, "bodies: %d connections", atomic_load(&s.accepts));
    /* a body to the connection's end: close_notify ends it; a bare EOF
     * may be a cut (-ECONNABORTED) */
    url_of(url, sizeof url, &s, "/eof");
    int st = 0;
    EXPECT(get(cl, url, &st, body, sizeof body) == 0 && st == 200 && strcmp(body, "until the end") == 0,
           "until close_notify: %s", body);
    url_of(url, sizeof url, &s, "/cut");
    int rc = get(cl, url, &st, body, sizeof body);
    EXPECT(rc == -ECONNABORTED, "until an EOF without close_notify: %d", rc);
    /* by name: SNI and the name check */
    char named[128];
    snprintf(named, sizeof named, "https://localhost:%u/n", s.port);
    rc = get(cl, named, &st, body, sizeof body);
    EXPECT(rc == 0 && st == 200 && strstr(body, " /n"), "https by name: %d %d", rc, st);
    coru_http_client_destroy(cl);
    rsrv_stop(&s);
    /* an IPv6 literal: checked as an address without its brackets */
    if (rsrv_start_on(&s, s_tls, "::1", srv_cfg)) {
        coru_http_client_create(&cl, &(struct coru_http_client_opts){.tls = ca_cfg});
        snprintf(url, sizeof url, "https://[::1]:%u/v6", s.port);
        rc = get(cl, url, &st, body, sizeof body);
        EXPECT(rc == 0 && st == 200 && strcmp(body, "conn 1 req 1 /v6") == 0, "https over IPv6: %d %s", rc, body);
        coru_http_client_destroy(cl);
        rsrv_stop(&s);
    }
    /* resumption: a second connection to the host offers the session of
     * the first (which the server closed after its answer); close_notify
     * at the end of the pooled one */
    rsrv_start_on(&s, s_tls, "127.0.0.1", srv_cfg);
    coru_http_client_create(&cl, &(struct coru_http_client_opts){.tls = ca_cfg});
    url_of(url, sizeof url, &s, "/bye");
    EXPECT(get(cl, url, &st, body, sizeof body) == 0 && strcmp(body, "bye") == 0, "bye: %s", body);
    url_of(url, sizeof url, &s, "/again");
    EXPECT(get(cl, url, &st, body, sizeof body) == 0 && strcmp(body, "conn 2 req 1 /again") == 0, "again: %s", body);
    coru_http_client_destroy(cl);
    rsrv_stop(&s);
    EXPECT(atomic_load(&s.accepts) == 2, "%d connections", atomic_load(&s.accepts));
    EXPECT(atomic_load(&s.resumed[1]) == 2 && atomic_load(&s.resumed[2]) == 1,
           "resumption: first %d, second %d (1 resumed, 2 full)", atomic_load(&s.resumed[1]),
           atomic_load(&s.resumed[2]));
    EXPECT(atomic_load(&s.notified) == 1, "%d close_notify from the client", atomic_load(&s.notified));
}

Test(http_client_tls, https_gets_bodies_keep_alive_and_session_resumption, .init = tls_setup, .fini = tls_teardown, .timeout = 60)
{
    both_engines(https_case);
}

static void tls_errors_case(void)
{
    struct rsrv good, self, wrong, old, plain;
    rsrv_start_on(&good, s_tls, "127.0.0.1", srv_cfg);
    rsrv_start_on(&self, s_tls, "127.0.0.1", self_cfg);
    rsrv_start_on(&wrong, s_tls, "127.0.0.1", wrong_cfg);
    rsrv_start_on(&old, s_tls, "127.0.0.1", old_cfg);
    rsrv_start(&plain, s_hello);
    coru_http_client *cl;
    coru_http_client_create(&cl, &(struct coru_http_client_opts){.tls = ca_cfg});
    char url[128], ok_url[128], body[256];
    url_of(ok_url, sizeof ok_url, &good, "/ok");
    struct {
        struct rsrv *s;
        int rc;
    } cases[] = {{&self, -ENOKEY}, {&wrong, -EKEYREJECTED}, {&old, -EKEYEXPIRED}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        url_of(url, sizeof url, cases[i].s, "/x");
        int rc = get(cl, url, NULL, body, sizeof body);
        EXPECT(rc == cases[i].rc, "case %zu: %d, want %d", i, rc, cases[i].rc);
        EXPECT(atomic_load(&cases[i].s->requests) == 0, "case %zu: a request went to a rejected server", i);
        int st = 0;
        rc = get(cl, ok_url, &st, body, sizeof body);
        EXPECT(rc == 0 && st == 200, "after case %zu the session failed: %d", i, rc);
    }
    /* http:// to a TLS port: the server's handshake fails, no response */
    char plain_to_tls[128];
    snprintf(plain_to_tls, sizeof plain_to_tls, "http://127.0.0.1:%u/x", good.port);
    EXPECT(get(cl, plain_to_tls, NULL, body, sizeof body) < 0, "plain HTTP to a TLS server answered");
    coru_http_client_destroy(cl);
    /* the default configuration (the system store) knows not our CA */
    coru_http_client_create(&cl, NULL);
    int rc = get(cl, ok_url, NULL, body, sizeof body);
    EXPECT(rc == -ENOKEY, "default configuration: %d", rc);
    rc = get(cl, ok_url, NULL, body, sizeof body);
    EXPECT(rc == -ENOKEY, "default configuration, again: %d", rc);
    coru_http_client_destroy(cl);
    /* verification off: any certificate */
    coru_http_client_create(&cl, &(struct coru_http_client_opts){.tls = insecure_cfg});
    url_of(url, sizeof url, &self, "/x");
    int st = 0;
    rc = get(cl, url, &st, body, sizeof body);
    EXPECT(rc == 0 && st == 200, "insecure: %d", rc);
    coru_http_client_destroy(cl);
    /* https:// to a server that never answers the ClientHello */
    coru_http_client_create(&cl, &(struct coru_http_client_opts){.tls = ca_cfg, .tls_handshake_timeout = 100 * MS});
    snprintf(url, sizeof url, "https://127.0.0.1:%u/x", plain.port);
    int64_t t0 = coru_now();
    rc = get(cl, url, NULL, body, sizeof body);
    int64_t took = coru_now() - t0;
    EXPECT(rc == -ETIMEDOUT && took >= 100 * MS && took < 3 * SEC, "handshake timeout: %d after %lld ms", rc,
           (long long)(took / MS));
    coru_http_client_destroy(cl);
    struct rsrv *all[] = {&good, &self, &wrong, &old, &plain};
    for (size_t i = 0; i < 5; i++) rsrv_stop(all[i]);
    EXPECT(atomic_load(&self.hs_failed) >= 1 && atomic_load(&good.hs_failed) >= 1, "handshake failures: %d, %d",
           atomic_load(&self.hs_failed), atomic_load(&good.hs_failed));
}

Test(http_client_tls, https_certificate_failures_come_back_as_tls_codes, .init = tls_setup, .fini = tls_teardown, .timeout = 60)
{
    both_engines(tls_errors_case);
}

static void xscheme_case(void)
{
    struct rsrv p, t;
    rsrv_start(&p, s_redirects);
    rsrv_start_on(&t, s_redirects, "127.0.0.1", srv_cfg);
    pthread_mutex_lock(&p.head_lock);
    snprintf(p.location, sizeof p.location, "https://127.0.0.1:%u/dest", t.port);
    pthread_mutex_unlock(&p.head_lock);
    pthread_mutex_lock(&t.head_lock);
    snprintf(t.location, sizeof t.location, "http://127.0.0.1:%u/dest", p.port);
    pthread_mutex_unlock(&t.head_lock);
    coru_http_client *cl;
    coru_http_client_create(&cl, &(struct coru_http_client_opts){.tls = ca_cfg});
    char url[128], body[256], final[600], want[128];
    struct coru_http_header creds[] = {{"Authorization", "Basic eDp5"}, {"Cookie", "a=b"}};
    /* up: http -> https, credentials dropped (another origin) */
    url_of(url, sizeof url, &p, "/xs/302");
    int st = do_body(cl, &(struct coru_http_request){.url = url, .headers = creds, .nheaders = 2}, body, sizeof body,
                     final, sizeof final);
    url_of(want, sizeof want, &t, "/dest");
    EXPECT(st == 200 && strcmp(body, "GET body= auth=0 cookie=0") == 0 && strcmp(final, want) == 0,
           "http -> https: %d %s %s", st, body, final);
    url_of(url, sizeof url, &p, "/xs/307");
    st = do_body(cl, &(struct coru_http_request){.method = "POST", .url = url, .body = "data", .body_len = 4}, body,
                 sizeof body, final, sizeof final);
    EXPECT(st == 200 && strcmp(body, "POST body=data auth=0 cookie=0") == 0 && strcmp(final, want) == 0,
           "307 http -> https: %d %s %s", st, body, final);
    /* down: https -> http is followed too (as Go and curl do) */
    url_of(url, sizeof url, &t, "/xs/302");
    st = do_body(cl, &(struct coru_http_request){.url = url, .headers = creds, .nheaders = 2}, body, sizeof body,
                 final, sizeof final);
    url_of(want, sizeof want, &p, "/dest");
    EXPECT(st == 200 && strcmp(body, "GET body= auth=0 cookie=0") == 0 && strcmp(final, want) == 0,
           "https -> http: %d %s %s", st, body, final);
    /* within the https origin the credentials stay */
    url_of(url, sizeof url, &t, "/to/301");
    st = do_body(cl, &(struct coru_http_request){.url = url, .headers = creds, .nheaders = 2}, body, sizeof body,
                 final, sizeof final);
    url_of(want, sizeof want, &t, "/dest");
    EXPECT(st == 200 && strcmp(body, "GET body= auth=1 cookie=1") == 0 && strcmp(final, want) == 0,
           "https same origin: %d %s %s", st, body, final);
    /* a Location of another scheme cannot be followed */
    pthread_mutex_lock(&t.head_lock);
    snprintf(t.location, sizeof t.location, "ftp://127.0.0.1/x");
    pthread_mutex_unlock(&t.head_lock);
    url_of(url, sizeof url, &t, "/xs/302");
    st = do_body(cl, &(struct coru_http_request){.url = url}, body, sizeof body, NULL, 0);
    EXPECT(st == -EPROTO, "to ftp: %d", st);
    coru_http_client_destroy(cl);
    rsrv_stop(&p);
    rsrv_stop(&t);
    EXPECT(atomic_load(&t.accepts) == 1, "%d TLS connections: the pool did not keep it across redirects",
           atomic_load(&t.accepts));
}

Test(http_client_tls, redirects_cross_between_http_and_https, .init = tls_setup, .fini = tls_teardown, .timeout = 60)
{
    both_engines(xscheme_case);
}

static int s_drop_second_notify(struct rsrv *s, const struct rreq *rq, char *out, size_t *n)
{
    if (rq->nth >= 2) return ACT_DROP_NOTIFY;
    return s_hello(s, rq, out, n);
}

static int s_cut_after(struct rsrv *s, const struct rreq *rq, char *out, size_t *n)
{
    s_hello(s, rq, out, n);
    return ACT_CUT;
}

static void tls_stale_case(void)
{
    /* the server drops the pooled connection at the next request, with
     * an EOF (no close_notify) or with close_notify: retried */
    script_fn drops[] = {s_drop_second, s_drop_second_notify};
    for (int d = 0; d < 2; d++) {
        struct rsrv s;
        rsrv_start_on(&s, drops[d], "127.0.0.1", srv_cfg);
        coru_http_client *cl;
        coru_http_client_create(&cl, &(struct coru_http_client_opts){.tls = ca_cfg});
        char url[128], body[256];
        url_of(url, sizeof url, &s, "/s");
        int st = 0;
        EXPECT(get(cl, url, &st, body, sizeof body) == 0 && strcmp(body, "conn 1 req 1 /s") == 0, "%d: first", d);
        int rc = get(cl, url, &st, body, sizeof body);
        EXPECT(rc == 0 && strcmp(body, "conn 2 req 1 /s") == 0, "%d: retried GET: %d %s", d, rc, body);
        EXPECT(atomic_load(&s.accepts) == 2, "%d: %d connections", d, atomic_load(&s.accepts));
        /* Resumed after close_notify. An EOF without it is a fatal error
         * to OpenSSL, which then marks the connection's session (the
         * one the pool kept: the same object) not resumable. */
        if (d == 1)
            EXPECT(atomic_load(&s.resumed[2]) == 1, "%d: the new connection did not resume (%d)", d,
                   atomic_load(&s.resumed[2]));
        coru_http_response *r = NULL;
        rc = coru_http_do(cl, &(struct coru_http_request){.method = "POST", .url = url, .body = "x", .body_len = 1}, &r,
                          coru_now() + 5 * SEC);
        EXPECT(rc == (d == 0 ? -ECONNABORTED : -ECONNRESET), "%d: POST on a dropped connection: %d", d, rc);
        EXPECT(atomic_load(&s.accepts) == 2, "%d: the POST was sent again", d);
        coru_http_client_destroy(cl);
        rsrv_stop(&s);
    }
    /* a server that closes after each answer, with or without
     * close_notify: the pool dials afresh (resuming), nothing fails */
    script_fn closes[] = {s_close_after, s_cut_after};
    for (int d = 0; d < 2; d++) {
        struct rsrv s;
        rsrv_start_on(&s, closes[d], "127.0.0.1", srv_cfg);
        coru_http_client *cl;
        coru_http_client_create(&cl, &(struct coru_http_client_opts){.tls = ca_cfg});
        char url[128], body[256];
        url_of(url, sizeof url, &s, "/c");
        for (int i = 1; i <= 5; i++) {
            int st = 0;
            int rc = get(cl, url, &st, body, sizeof body);
            EXPECT(rc == 0 && st == 200, "%d: request %d after a close: %d", d, i, rc);
            coru_sleep(2 * MS);
        }
        coru_http_client_destroy(cl);
        rsrv_stop(&s);
        EXPECT(atomic_load(&s.accepts) == 5, "%d: %d connections", d, atomic_load(&s.accepts));
        for (int i = 2; i <= 5 && d == 0; i++) /* close_notify: see above */
            EXPECT(atomic_load(&s.resumed[i]) == 1, "%d: connection %d not resumed (%d)", d, i,
                   atomic_load(&s.resumed[i]));
    }
}

Test(http_client_tls, a_pooled_tls_connection_the_server_closed_is_retried, .init = tls_setup, .fini = tls_teardown, .timeout = 60)
{
    both_engines(tls_stale_case);
}

/* coru's own HTTPS server (coru_http_opts.tls): concurrent sessions over a
 * few pooled TLS connections, and a body of many records each way */
static int h_hi(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    (void)arg;
    char b[128];
    int n = snprintf(b, sizeof b, "hi %s", coru_http_req_param(rq, "name"));
    return coru_http_resp_send(rs, 200, "text/plain", b, (size_t)n);
}

static int h_echo(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    (void)arg;
    size_t n;
    const void *b = coru_http_req_body(rq, &n);
    return coru_http_resp_send(rs, 200, "application/octet-stream", b, n);
}

struct serve_arg {
    coru_http_server *srv;
    int rc;
};

static void *serve_main(void *arg)
{
    struct serve_arg *a = arg;
    a->rc = coru_http_server_serve(a->srv);
    return NULL;
}

struct hi_task {
    coru_http_client *cl;
    int port, id;
    coru_waitgroup *wg;
};

static void *hi_task(void *arg)
{
    struct hi_task *t = arg;
    for (int i = 0; i < 5; i++) {
        char url[96], body[64], want[32];
        snprintf(url, sizeof url, "https://localhost:%d/hi/t%d", t->port, t->id);
        snprintf(want, sizeof want, "hi t%d", t->id);
        int st = 0;
        int rc = get(t->cl, url, &st, body, sizeof body);
        EXPECT(rc == 0 && st == 200 && strcmp(body, want) == 0, "task %d #%d: %d %d %s", t->id, i, rc, st, body);
    }
    coru_waitgroup_done(t->wg);
    return NULL;
}

static void coru_server_case(void)
{
    coru_http_server *srv;
    int rc = coru_http_server_create(&srv, "127.0.0.1", 0, &(struct coru_http_opts){.tls = srv_cfg});
    EXPECT(rc == 0, "server: %d", rc);
    if (rc) return;
    coru_http_route(srv, "GET", "/hi/{name}", h_hi, NULL);
    coru_http_route(srv, "POST", "/echo", h_echo, NULL);
    struct serve_arg sa = {srv, 1};
    coru_t *h;
    coru_spawn(&h, serve_main, &sa, NULL);
    coru_http_client *cl;
    coru_http_client_create(&cl, &(struct coru_http_client_opts){.tls = ca_cfg, .max_conns = 3});
    struct hi_task t[8];
    coru_waitgroup *wg;
    coru_waitgroup_create(&wg);
    coru_waitgroup_add(wg, 8);
    for (int i = 0; i < 8; i++) {
        t[i] = (struct hi_task){cl, coru_http_server_port(srv), i, wg};
        coru_go(hi_task, &t[i], NULL);
    }
    coru_waitgroup_wait(wg);
    coru_waitgroup_destroy(wg);
    static char big[200000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('A' + i % 31);
    char url[96], *b = NULL;
    size_t n = 0;
    snprintf(url, sizeof url, "https://127.0.0.1:%d/echo", coru_http_server_port(srv));
    coru_http_response *r;
    rc = coru_http_do(cl, &(struct coru_http_request){.method = "POST", .url = url, .body = big, .body_len = sizeof big},
                      &r, coru_now() + 5 * SEC);
    EXPECT(rc == 0, "POST to coru's server: %d", rc);
    if (rc == 0) {
        rc = coru_http_response_read_all(r, &b, &n, 0, CORU_NEVER);
        EXPECT(rc == 0 && n == sizeof big && memcmp(b, big, n) == 0, "echo: %d, %zu bytes", rc, n);
        free(b);
        coru_http_response_free(r);
    }
    coru_http_client_destroy(cl);
    coru_http_server_shutdown(srv, coru_now() + SEC);
    coru_join(h, NULL);
    EXPECT(sa.rc == 0, "serve: %d", sa.rc);
    coru_http_server_destroy(srv);
}

Test(http_client_tls, https_against_coru_s_own_server, .init = tls_setup, .fini = tls_teardown, .timeout = 60)
{
    both_engines(coru_server_case);
}
