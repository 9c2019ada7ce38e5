/* The scripted raw server of test_http_client.c (its own bytes on the
 * wire: each test says exactly what the server sends, and counts the
 * connections it accepted and, over TLS, which of them resumed a
 * session), the EXPECT pattern for checks inside coroutines, and the
 * certificates of the https tests (made by `openssl req` before the
 * runs, from the main thread). */
#ifndef CORU_TEST_HTTP_CLIENT_HELPERS_H
#define CORU_TEST_HTTP_CLIENT_HELPERS_H

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

#include "coru.h"
#include "helpers.h"

#define MS (1000 * 1000LL)
#define SEC (1000 * MS)

/* First failure inside a coroutine, asserted after the run (a Criterion
 * assert inside a coroutine would unwind across its stack). */
static char fail_msg[2048];
#define EXPECT(cond, ...)                                                                  \
    do {                                                                                   \
        if (!(cond) && !fail_msg[0]) {                                                     \
            int n_ = snprintf(fail_msg, sizeof fail_msg, "line %d: ", __LINE__);           \
            snprintf(fail_msg + n_, sizeof fail_msg - (size_t)n_, __VA_ARGS__);            \
        }                                                                                  \
    } while (0)

/* ------------------------------------------------------------ a scripted server */

/* After a response: keep the connection; close it (TLS: close_notify
 * first); close it unanswered (TLS: no close_notify); stall until the
 * server stops; close unanswered with close_notify (TLS); answer and close
 * without close_notify (TLS: an end the client tells from close_notify). */
enum { ACT_KEEP, ACT_CLOSE, ACT_DROP, ACT_STALL, ACT_DROP_NOTIFY, ACT_CUT };
#define RSRV_CONNS 64

struct rreq {
    char head[8192];  /* request line and fields */
    char body[65536];
    size_t blen;
    int conn;         /* the connection's number, from 1 */
    int nth;          /* the request's number on it, from 1 */
};

struct rsrv;
/* Writes the response into out (*n bytes); returns an ACT_*. */
typedef int (*script_fn)(struct rsrv *s, const struct rreq *rq, char *out, size_t *n);

struct rsrv {
    int lfd;
    uint16_t port;
    script_fn script;
    _Atomic int accepts, requests, active, max_active;
    _Atomic bool stop;
    coru_waitgroup *wg;
    pthread_mutex_t head_lock;
    char last_head[8192]; /* the newest request head; head_lock (connections run on both workers) */
    _Atomic int delay_ms;
    /* TLS (rsrv_start_tls): every connection handshakes first */
    coru_tls_config *tls;
    _Atomic int hs_failed;            /* handshakes that failed */
    _Atomic int resumed[RSRV_CONNS];  /* by connection number: 1 resumed, 2 full */
    _Atomic int notified;             /* connections the client ended with close_notify */
    char location[160];               /* s_redirects' /xs: where it sends */
};

struct rconn {
    struct rsrv *s;
    int fd, no;
    coru_tls *t;                      /* TLS servers */
};

static ssize_t sread(struct rconn *c, void *buf, size_t n)
{
    if (!c->t) return coru_read(c->fd, buf, n);
    ssize_t r = coru_tls_read(c->t, buf, n, CORU_NEVER);
    if (r == 0) atomic_fetch_add(&c->s->notified, 1);
    return r;
}

/* Reads one request (Content-Length or chunked body); false at EOF. */
static bool read_req(struct rconn *c, char *buf, size_t *have, struct rreq *rq)
{
    for (;;) {
        char *end = memmem(buf, *have, "\r\n\r\n", 4);
        if (end) {
            size_t hl = (size_t)(end - buf) + 4;
            memcpy(rq->head, buf, hl < sizeof rq->head ? hl : sizeof rq->head - 1);
            rq->head[hl < sizeof rq->head ? hl : sizeof rq->head - 1] = '\0';
            size_t blen = 0;
            const char *cl = strcasestr(rq->head, "\r\ncontent-length:");
            bool chunked = strcasestr(rq->head, "\r\ntransfer-encoding: chunked") != NULL;
            if (cl) blen = strtoul(cl + 17, NULL, 10);
            size_t need = hl + blen;
            while (!chunked && *have < need) {
                ssize_t n = sread(c, buf + *have, 200000 - *have);
                if (n <= 0) return false;
                *have += (size_t)n;
            }
            if (chunked) { /* gather until the last chunk */
                while (!memmem(buf + hl, *have - hl, "0\r\n\r\n", 5)) {
                    ssize_t n = sread(c, buf + *have, 200000 - *have);
                    if (n <= 0) return false;
                    *have += (size_t)n;
                }
                const char *p = buf + hl;
                rq->blen = 0;
                for (;;) {
                    size_t sz = strtoul(p, NULL, 16);
                    p = strstr(p, "\r\n") + 2;
                    if (sz == 0) break;
                    memcpy(rq->body + rq->blen, p, sz);
                    rq->blen += sz;
                    p += sz + 2;
                }
                need = (size_t)(p + 2 - buf);
            } else {
                memcpy(rq->body, buf + hl, blen);
                rq->blen = blen;
            }
            memmove(buf, buf + need, *have - need);
            *have -= need;
            return true;
        }
        ssize_t n = sread(c, buf + *have, 200000 - *have);
        if (n <= 0) return false;
        *have += (size_t)n;
    }
}

static void *rconn_run(void *arg)
{
    struct rconn *c = arg;
    struct rsrv *s = c->s;
    int a = atomic_fetch_add(&s->active, 1) + 1, m = atomic_load(&s->max_active);
    while (a > m && !atomic_compare_exchange_weak(&s->max_active, &m, a)) {
    }
    char *buf = malloc(200000), *out = malloc(300000);
    struct rreq *rq = malloc(sizeof *rq);
    size_t have = 0;
    bool ok = true;
    if (s->tls) {
        int rc = coru_tls_server(&c->t, s->tls, c->fd);
        if (rc == 0) rc = coru_tls_handshake(c->t, coru_now() + 5 * SEC);
        if (rc == 0 && c->no < RSRV_CONNS) atomic_store(&s->resumed[c->no], coru_tls_resumed(c->t) ? 1 : 2);
        if (rc) atomic_fetch_add(&s->hs_failed, 1);
        ok = rc == 0;
    }
    int act = ACT_KEEP;
    for (int nth = 1; ok && buf && out && rq && read_req(c, buf, &have, rq); nth++) {
        rq->conn = c->no;
        rq->nth = nth;
        atomic_fetch_add(&s->requests, 1);
        pthread_mutex_lock(&s->head_lock);
        memcpy(s->last_head, rq->head, sizeof s->last_head);
        pthread_mutex_unlock(&s->head_lock);
        int d = atomic_load(&s->delay_ms);
        if (d) coru_sleep(d * MS);
        size_t n = 0;
        act = s->script(s, rq, out, &n);
        if (act == ACT_DROP || act == ACT_DROP_NOTIFY) break;
        ssize_t w = !n ? 0
                    : c->t ? coru_tls_write(c->t, out, n, coru_now() + 5 * SEC)
                           : coru_write_all(c->fd, out, n, coru_now() + 5 * SEC);
        if (w < 0) break;
        if (act == ACT_CLOSE || act == ACT_CUT) break;
        if (act == ACT_STALL) {
            while (!atomic_load(&s->stop)) coru_sleep(5 * MS);
            break;
        }
        act = ACT_KEEP;
    }
    atomic_fetch_sub(&s->active, 1);
    if (c->t) {
        if (act == ACT_CLOSE || act == ACT_DROP_NOTIFY) coru_tls_shutdown(c->t, coru_now() + SEC);
        coru_tls_close(c->t); /* and the fd (the stream owns it, even when coru_tls_server failed) */
    } else if (!s->tls) {
        coru_close(c->fd);
    }
    free(buf);
    free(out);
    free(rq);
    free(c);
    coru_waitgroup_done(s->wg);
    return NULL;
}

static void *racceptor(void *arg)
{
    struct rsrv *s = arg;
    while (!atomic_load(&s->stop)) {
        int fd = coru_tcp_accept_dl(s->lfd, NULL, NULL, coru_now() + 20 * MS);
        if (fd < 0) continue;
        struct rconn *c = malloc(sizeof *c);
        *c = (struct rconn){.s = s, .fd = fd, .no = atomic_fetch_add(&s->accepts, 1) + 1};
        coru_waitgroup_add(s->wg, 1);
        coru_go(rconn_run, c, NULL);
    }
    coru_waitgroup_done(s->wg);
    return NULL;
}

/* A scripted server on host (a numeric address), over TLS when tls is
 * not NULL (a server configuration, the caller's). Returns whether it
 * listens. */
static bool rsrv_start_on(struct rsrv *s, script_fn fn, const char *host, coru_tls_config *tls)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->head_lock, NULL);
    s->script = fn;
    s->tls = tls;
    s->lfd = coru_tcp_listen(host, 0, 128, 0);
    if (s->lfd < 0) return false;
    s->port = (uint16_t)coru_local_port(s->lfd);
    coru_waitgroup_create(&s->wg);
    coru_waitgroup_add(s->wg, 1);
    coru_go(racceptor, s, NULL);
    return true;
}

static void rsrv_start(struct rsrv *s, script_fn fn)
{
    bool ok = rsrv_start_on(s, fn, "127.0.0.1", NULL);
    EXPECT(ok, "listen: %d", s->lfd);
}

/* After the session is destroyed (its connections closed). */
static void rsrv_stop(struct rsrv *s)
{
    atomic_store(&s->stop, true);
    coru_waitgroup_wait(s->wg);
    coru_waitgroup_destroy(s->wg);
    coru_close(s->lfd);
}

static void url_of(char *u, size_t n, const struct rsrv *s, const char *path)
{
    snprintf(u, n, "%s://127.0.0.1:%u%s", s->tls ? "https" : "http", s->port, path);
}

/* The request's path ("GET /x?q HTTP/1.1" -> "/x") into p. */
static void path_of(const struct rreq *rq, char *p, size_t n)
{
    const char *sp = strchr(rq->head, ' ');
    size_t l = sp ? strcspn(sp + 1, " ?") : 0; /* without the query */
    snprintf(p, n, "%.*s", (int)l, sp ? sp + 1 : "");
}

static size_t fmt(char *out, const char *f, ...) __attribute__((format(printf, 2, 3)));
static size_t fmt(char *out, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(out, 300000, f, ap);
    va_end(ap);
    return (size_t)n;
}

/* GET url; the body into body (NUL-terminated). Returns the rc, *status. */
static int get(coru_http_client *cl, const char *url, int *status, char *body, size_t cap)
{
    char *b = NULL;
    size_t n = 0;
    int rc = coru_http_get(cl, url, status, &b, &n, coru_now() + 5 * SEC);
    if (rc == 0) {
        snprintf(body, cap, "%s", b);
        free(b);
    }
    return rc;
}

typedef void (*case_fn)(void);
static void *run_case(void *arg)
{
    ((case_fn)arg)();
    return NULL;
}

static void both_engines(case_fn f)
{
    FOR_EACH_ENGINE(io) {
        fail_msg[0] = '\0';
        cr_assert_eq(run_on(io, 2, run_case, (void *)f), 0);
        cr_assert(fail_msg[0] == '\0', "engine %d: %s", io, fail_msg);
    }
}
/* ------------------------------------------------------------ certificates */

/* Made by `openssl req` before the runs, in a temporary directory: a CA;
 * srv (localhost, 127.0.0.1, ::1), wrong (wrong.example) and old
 * (expired) signed by it, all with srv.key; self, self-signed. */
static char cdir[64];
static coru_tls_config *srv_cfg, *self_cfg, *wrong_cfg, *old_cfg; /* servers */
static coru_tls_config *ca_cfg, *insecure_cfg;                      /* clients */

static const char *cpath(const char *name)
{
    static char p[8][160];
    static int k;
    char *b = p[k++ % 8];
    snprintf(b, 160, "%s/%s", cdir, name);
    return b;
}

static coru_tls_config *server_config(const char *cert, const char *key)
{
    coru_tls_config *cfg = NULL;
    char why[256];
    int rc = coru_tls_server_config(&cfg, &(struct coru_tls_server_opts){.cert_file = cpath(cert), .key_file = cpath(key)},
                                    why, sizeof why);
    cr_assert_eq(rc, 0, "server config %s: %s", cert, why);
    return cfg;
}

__attribute__((unused)) static void tls_setup(void)
{
    strcpy(cdir, "/tmp/coru-hclient-tls.XXXXXX");
    cr_assert_not_null(mkdtemp(cdir));
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "(cd %s && E='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes' && "
             "openssl req -x509 $E -keyout ca.key -out ca.pem -days 2 -subj /CN=coru-test-ca "
             "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign && "
             "openssl req $E -keyout srv.key -out srv.csr -subj /CN=localhost && "
             "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\\n' >srv.ext && "
             "printf 'subjectAltName=DNS:wrong.example\\n' >wrong.ext && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile srv.ext "
             "-out srv.pem && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile wrong.ext "
             "-out wrong.pem && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days -1 -extfile srv.ext "
             "-out old.pem && "
             "openssl req -x509 $E -keyout self.key -out self.pem -days 2 -subj /CN=localhost "
             "-addext subjectAltName=DNS:localhost,IP:127.0.0.1) >/dev/null 2>&1",
             cdir);
    cr_assert_eq(system(cmd), 0, "openssl failed to make the certificates");
    srv_cfg = server_config("srv.pem", "srv.key");
    self_cfg = server_config("self.pem", "self.key");
    wrong_cfg = server_config("wrong.pem", "srv.key");
    old_cfg = server_config("old.pem", "srv.key");
    char why[256];
    cr_assert_eq(coru_tls_client_config(&ca_cfg, &(struct coru_tls_client_opts){.ca_file = cpath("ca.pem")}, why,
                                        sizeof why),
                 0, "client config: %s", why);
    cr_assert_eq(coru_tls_client_config(&insecure_cfg, &(struct coru_tls_client_opts){.insecure_skip_verify = 1}, why,
                                        sizeof why),
                 0, "client config: %s", why);
}

/* Test(..., .init = tls_setup, .fini = tls_teardown): the directory goes
 * even when the test fails. */
__attribute__((unused)) static void tls_teardown(void)
{
    coru_tls_config *all[] = {srv_cfg, self_cfg, wrong_cfg, old_cfg, ca_cfg, insecure_cfg};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) coru_tls_config_free(all[i]);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", cdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", cdir);
}

/* ------------------------------------------------------------ handlers and helpers of both programs */

static struct rsrv *other; /* the second origin of the redirect tests */

__attribute__((unused)) static int s_hello(struct rsrv *s, const struct rreq *rq, char *out, size_t *n)
{
    (void)s;
    char p[256];
    path_of(rq, p, sizeof p);
    char body[300];
    int bl = snprintf(body, sizeof body, "conn %d req %d %s", rq->conn, rq->nth, p);
    *n = fmt(out, "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: %d\r\nx-a: 2\r\n\r\n%s", bl, body);
    return ACT_KEEP;
}

/* Answers the first request of each connection; drops the second (closes
 * it unanswered, as a server whose idle timeout fired just then). */
__attribute__((unused)) static int s_drop_second(struct rsrv *s, const struct rreq *rq, char *out, size_t *n)
{
    if (rq->nth >= 2) return ACT_DROP;
    return s_hello(s, rq, out, n);
}

/* Answers and closes, without saying so. */
__attribute__((unused)) static int s_close_after(struct rsrv *s, const struct rreq *rq, char *out, size_t *n)
{
    s_hello(s, rq, out, n);
    return ACT_CLOSE;
}

__attribute__((unused)) static ssize_t pieces(void *ctx, void *buf, size_t n)
{
    int *left = ctx;
    if (*left == 0) return 0;
    (*left)--;
    (void)n;
    memcpy(buf, "piece;", 6);
    return 6;
}

__attribute__((unused)) static int s_redirects(struct rsrv *s, const struct rreq *rq, char *out, size_t *n)
{
    char p[256];
    path_of(rq, p, sizeof p);
    const char *m = rq->head;
    int ml = (int)strcspn(m, " ");
    bool auth = strcasestr(rq->head, "\r\nauthorization:") != NULL, cookie = strcasestr(rq->head, "\r\ncookie:") != NULL;
    if (strncmp(p, "/to/", 4) == 0) {
        int code = atoi(p + 4);
        *n = fmt(out, "HTTP/1.1 %d Moved\r\nLocation: /dest\r\nContent-Length: 4\r\n\r\nmove", code);
    } else if (strcmp(p, "/dest") == 0) {
        char b[200];
        int bl = snprintf(b, sizeof b, "%.*s body=%.*s auth=%d cookie=%d", ml, m, (int)rq->blen, rq->body, auth, cookie);
        *n = fmt(out, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", bl, b);
    } else if (strcmp(p, "/loop") == 0) {
        *n = fmt(out, "HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n");
    } else if (strcmp(p, "/away") == 0) {
        *n = fmt(out, "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%u/dest\r\nContent-Length: 0\r\n\r\n",
                 other->port);
    } else if (strcmp(p, "/rel") == 0) {
        *n = fmt(out, "HTTP/1.1 303 See Other\r\nLocation: to/../dest?x\r\nContent-Length: 0\r\n\r\n");
    } else if (strcmp(p, "/nolocation") == 0) {
        *n = fmt(out, "HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n");
    } else if (strncmp(p, "/xs/", 4) == 0) { /* to s->location (another scheme) */
        pthread_mutex_lock(&s->head_lock);
        *n = fmt(out, "HTTP/1.1 %d Moved\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n", atoi(p + 4), s->location);
        pthread_mutex_unlock(&s->head_lock);
    } else {
        *n = fmt(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    }
    return ACT_KEEP;
}

__attribute__((unused)) static int do_body(coru_http_client *cl, const struct coru_http_request *rq, char *body, size_t cap, char *final,
                   size_t fcap)
{
    coru_http_response *r;
    int rc = coru_http_do(cl, rq, &r, coru_now() + 5 * SEC);
    if (rc) return rc;
    char *b;
    size_t n;
    rc = coru_http_response_read_all(r, &b, &n, 0, CORU_NEVER);
    int st = coru_http_response_status(r);
    if (final) snprintf(final, fcap, "%s", coru_http_response_url(r));
    coru_http_response_free(r);
    if (rc) return rc;
    snprintf(body, cap, "%s", b);
    free(b);
    return st;
}

#endif
