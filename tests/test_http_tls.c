/* The HTTP server over TLS (coru_http_opts.tls), on both engines: the
 * routes, keep-alive and pipelining through TLS records, close_notify on
 * Connection: close and at shutdown, the handshake timeout against a
 * client that says nothing or half a ClientHello, plain HTTP on the TLS
 * port, and a certificate reload while serving. Certificates are made by
 * `openssl req` before each run. (The TLS streams themselves: test_tls.c;
 * real clients: test_https_server.py.) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_helpers.h"

static char dir[64];

/* Two self-signed EC certificates for localhost and 127.0.0.1: a and b. */
static void make_certs(void)
{
    if (dir[0]) return;
    strcpy(dir, "/tmp/coru-http-tls.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    for (int i = 0; i < 2; i++) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
                 "-keyout %s/%c.key -out %s/%c.pem -subj /CN=cert-%c "
                 "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null",
                 dir, 'a' + i, dir, 'a' + i, 'a' + i);
        cr_assert_eq(system(cmd), 0, "openssl req failed");
    }
}

static void remove_certs(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (dir[0] && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    dir[0] = '\0';
}

static const char *path(const char *name)
{
    static _Thread_local char p[8][128];
    static _Thread_local int k;
    char *b = p[k++ % 8];
    snprintf(b, 128, "%s/%s", dir, name);
    return b;
}

static coru_tls_config *server_cfg(const char *cert, const char *key)
{
    coru_tls_config *cfg;
    char why[256];
    struct coru_tls_server_opts o = {.cert_file = path(cert), .key_file = path(key)};
    int rc = coru_tls_server_config(&cfg, &o, why, sizeof why);
    cr_assert_eq(rc, 0, "server config: %s", why);
    return cfg;
}

static coru_tls_config *client_cfg(const char *ca)
{
    coru_tls_config *cfg;
    char why[256];
    struct coru_tls_client_opts o = {.ca_file = path(ca)};
    int rc = coru_tls_client_config(&cfg, &o, why, sizeof why);
    cr_assert_eq(rc, 0, "client config: %s", why);
    return cfg;
}

#define BOTH(fn)                                                          \
    do {                                                                  \
        make_certs();                                                     \
        FOR_EACH_ENGINE(io) cr_assert_eq(run_on(io, 2, fn, NULL), 0);     \
        remove_certs();                                                   \
    } while (0)

/* ------------------------------------------------------------ routes over TLS */

static void *routes_main(void *arg)
{
    coru_tls_config *scfg = server_cfg("a.pem", "a.key"), *ccfg = client_cfg("a.pem");
    struct coru_http_opts o = {.tls = scfg};
    struct fx f;
    fx_start(&f, &o);
    struct cl *c = cl_open_tls(f.port, ccfg, "localhost");
    cr_assert_str_eq(coru_tls_alpn(c->tls), "http/1.1");
    /* three requests in one record, answered in order */
    cl_sends(c, "GET /hello/one HTTP/1.1\r\nHost: x\r\n\r\n"
                "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
                "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde");
    struct resp r;
    cr_assert(cl_resp(c, &r, false));
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "hello one");
    resp_free(&r);
    cr_assert(cl_resp(c, &r, false));
    cr_assert(r.chunked);
    cr_assert_str_eq(r.body, "one,two,three");
    resp_free(&r);
    cr_assert(cl_resp(c, &r, false));
    cr_assert_str_eq(r.body, "abcde");
    resp_free(&r);
    /* a body of 256 KiB: many records, byte for byte */
    cl_sends(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_resp(c, &r, false));
    cr_assert_eq(r.blen, 256 * 1024);
    for (size_t i = 0; i < r.blen; i++)
        if (r.body[i] != (char)('a' + i % 26)) cr_assert_fail("byte %zu of /big differs", i);
    resp_free(&r);
    /* 404 and Connection: close, which ends with close_notify */
    cl_sends(c, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /close HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_resp(c, &r, false));
    cr_assert_eq(r.status, 404);
    resp_free(&r);
    cr_assert(cl_resp(c, &r, false));
    cr_assert_str_eq(r.body, "bye");
    resp_free(&r);
    cr_assert(cl_closed(c), "no close_notify after Connection: close");
    cl_close(c);
    /* an idle keep-alive connection is closed cleanly by the shutdown */
    c = cl_open_tls(f.port, ccfg, "127.0.0.1");
    cl_sends(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_resp(c, &r, false));
    cr_assert_str_eq(r.body, "root");
    resp_free(&r);
    cr_assert_eq(coru_http_server_shutdown(f.srv, coru_now() + SEC), 0);
    cr_assert(cl_closed(c), "shutdown did not end the idle TLS connection with close_notify");
    cl_close(c);
    cr_assert_eq(coru_join(f.serve, NULL), 0);
    cr_assert_eq(f.serve_rc, 0);
    coru_http_server_destroy(f.srv);
    coru_tls_config_free(scfg);
    coru_tls_config_free(ccfg);
    return NULL;
}

Test(http_tls, routes_pipelining_bodies_and_clean_closes_over_tls, .timeout = 60)
{
    BOTH(routes_main);
}

/* ------------------------------------------------------------ hostile handshakes */

/* Whether the server closes c's socket within `within` ns; *bytes gets
 * what it sent before. */
static bool closed_within(int fd, int64_t within, char *bytes, size_t cap, size_t *n)
{
    int64_t dl = coru_now() + within;
    *n = 0;
    for (;;) {
        char b[512];
        ssize_t r = coru_read_dl(fd, b, sizeof b, dl);
        if (r == 0 || r == -ECONNRESET) return true;
        if (r < 0) return false;
        size_t k = (size_t)r < cap - *n ? (size_t)r : cap - *n;
        memcpy(bytes + *n, b, k);
        *n += k;
    }
}

static void *handshake_timeout_main(void *arg)
{
    coru_tls_config *scfg = server_cfg("a.pem", "a.key"), *ccfg = client_cfg("a.pem");
    struct coru_http_opts o = {.tls = scfg, .tls_handshake_timeout = 200 * MS};
    struct fx f;
    fx_start(&f, &o);
    char got[1024];
    size_t n;
    /* says nothing at all */
    int fd = coru_tcp_connect("127.0.0.1", f.port, coru_now() + SEC);
    cr_assert_geq(fd, 0);
    int64_t t0 = coru_now();
    cr_assert(closed_within(fd, 3 * SEC, got, sizeof got, &n), "a silent client was not closed");
    cr_assert_geq(coru_now() - t0, 150 * MS);
    coru_close(fd);
    /* half a ClientHello: a record header promising 512 bytes, then 10 */
    fd = coru_tcp_connect("127.0.0.1", f.port, coru_now() + SEC);
    cr_assert_eq(coru_write_all(fd, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\x00\x00\x00", 15,
                                coru_now() + SEC), 15);
    t0 = coru_now();
    cr_assert(closed_within(fd, 3 * SEC, got, sizeof got, &n), "a stalled ClientHello was not closed");
    cr_assert_geq(coru_now() - t0, 150 * MS);
    coru_close(fd);
    /* plain HTTP on the TLS port: closed, never answered in clear */
    fd = coru_tcp_connect("127.0.0.1", f.port, coru_now() + SEC);
    cr_assert_eq(coru_write_all(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, coru_now() + SEC), 27);
    cr_assert(closed_within(fd, 3 * SEC, got, sizeof got, &n), "plain HTTP on the TLS port was not closed");
    cr_assert(n == 0 || (unsigned char)got[0] == 0x15, "answered with something other than an alert");
    cr_assert_eq(atomic_load(&handled), 0);
    coru_close(fd);
    /* and a real client is still served */
    struct cl *c = cl_open_tls(f.port, ccfg, "localhost");
    struct resp r;
    cl_sends(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_resp(c, &r, false));
    cr_assert_str_eq(r.body, "root");
    resp_free(&r);
    cl_close(c);
    fx_stop(&f, SEC);
    coru_tls_config_free(scfg);
    coru_tls_config_free(ccfg);
    return NULL;
}

Test(http_tls, slow_or_broken_handshakes_are_closed_at_the_handshake_timeout, .timeout = 60)
{
    BOTH(handshake_timeout_main);
}

/* ------------------------------------------------------------ reload */

static void *reload_main(void *arg)
{
    coru_tls_config *scfg = server_cfg("a.pem", "a.key");
    coru_tls_config *trust_a = client_cfg("a.pem"), *trust_b = client_cfg("b.pem");
    struct coru_http_opts o = {.tls = scfg};
    struct fx f;
    fx_start(&f, &o);
    struct cl *old = cl_open_tls(f.port, trust_a, "localhost");
    char why[256];
    cr_assert_eq(coru_tls_config_reload(scfg, path("b.pem"), path("b.key"), why, sizeof why), 0, "%s", why);
    /* new connections get b: trusted by b's client, refused by a's */
    struct cl *c = cl_open_tls(f.port, trust_b, "localhost");
    struct resp r;
    cl_sends(c, "GET /hello/b HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_resp(c, &r, false));
    cr_assert_str_eq(r.body, "hello b");
    resp_free(&r);
    cl_close(c);
    c = cl_open(f.port);
    cr_assert_eq(coru_tls_client(&c->tls, trust_a, c->fd, "localhost"), 0);
    cr_assert_eq(coru_tls_handshake(c->tls, coru_now() + 5 * SEC), -ENOKEY, "%s", coru_tls_reason(c->tls));
    cl_close(c);
    /* a bad pair changes nothing */
    cr_assert_eq(coru_tls_config_reload(scfg, path("b.pem"), path("a.key"), why, sizeof why), -EKEYREJECTED);
    cr_assert_eq(coru_tls_config_reload(scfg, path("missing.pem"), NULL, why, sizeof why), -ENOENT);
    c = cl_open_tls(f.port, trust_b, "localhost");
    cl_close(c);
    /* the connection made before the reload goes on with a's session */
    cl_sends(old, "GET /hello/old HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cl_resp(old, &r, false));
    cr_assert_str_eq(r.body, "hello old");
    resp_free(&r);
    cl_close(old);
    fx_stop(&f, SEC);
    coru_tls_config_free(scfg);
    coru_tls_config_free(trust_a);
    coru_tls_config_free(trust_b);
    return NULL;
}

Test(http_tls, a_reloaded_certificate_serves_new_connections_and_spares_open_ones, .timeout = 60)
{
    BOTH(reload_main);
}
