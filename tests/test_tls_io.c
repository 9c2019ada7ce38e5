/* test_tls_io: TLS streams at their I/O edges, both engines (helpers:
 * tls_helpers.h): what the ClientHello carries (SNI, ALPN); garbage and
 * closed peers on both sides; deadlines and cancels of handshakes, reads
 * (also mid-record, through a proxy that holds back half a record) and
 * writes; a past deadline still reads what is there; one-byte reads; EOF
 * without close_notify; 64 MiB each way in odd pieces. */
#include "tls_helpers.h"

/* ------------------------------------------------------------ raw peers */

/* What a ClientHello carried. */
struct hello {
    bool ok, has_sni, has_alpn;
    char sni[256], alpn[256]; /* alpn: the offered names joined by ',' */
};

static void parse_hello(const unsigned char *b, size_t n, struct hello *h)
{
    memset(h, 0, sizeof *h);
    if (n < 5 || b[0] != 22) return;
    size_t rl = (size_t)b[3] << 8 | b[4];
    if (n < 5 + rl) return;
    const unsigned char *p = b + 5, *e = b + 5 + rl;
    if (e - p < 4 || p[0] != 1) return;
    size_t hl = (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    p += 4;
    if (hl > (size_t)(e - p)) return;
    e = p + hl;
    if (e - p < 34) return; /* version, random */
    p += 34;
    size_t l;
#define SKIP8()                                  \
    do {                                         \
        if (e - p < 1) return;                   \
        l = p[0];                                \
        p++;                                     \
        if ((size_t)(e - p) < l) return;         \
        p += l;                                  \
    } while (0)
    SKIP8(); /* session id */
    if (e - p < 2) return;
    l = (size_t)p[0] << 8 | p[1];
    p += 2;
    if ((size_t)(e - p) < l) return;
    p += l;  /* cipher suites */
    SKIP8(); /* compression methods */
#undef SKIP8
    if (e - p < 2) return;
    l = (size_t)p[0] << 8 | p[1];
    p += 2;
    if ((size_t)(e - p) < l) return;
    e = p + l;
    h->ok = true;
    while (e - p >= 4) {
        unsigned type = (unsigned)p[0] << 8 | p[1];
        size_t len = (size_t)p[2] << 8 | p[3];
        p += 4;
        if ((size_t)(e - p) < len) {
            h->ok = false;
            return;
        }
        const unsigned char *d = p, *de = p + len;
        if (type == 0 && len >= 5 && d[2] == 0) { /* server_name: list, host_name */
            size_t nl = (size_t)d[3] << 8 | d[4];
            if (nl <= len - 5 && nl < sizeof h->sni) {
                memcpy(h->sni, d + 5, nl);
                h->has_sni = true;
            }
        } else if (type == 16 && len >= 2) { /* ALPN: list of length-prefixed names */
            h->has_alpn = true;
            d += 2;
            size_t o = 0;
            while (d < de && o < sizeof h->alpn - 1) {
                size_t nl = d[0];
                d++;
                if (nl > (size_t)(de - d) || o + nl + 1 >= sizeof h->alpn) break;
                if (o) h->alpn[o++] = ',';
                memcpy(h->alpn + o, d, nl);
                o += nl;
                d += nl;
            }
            h->alpn[o] = '\0';
        }
        p = de;
    }
}

enum raw_mode {
    RAW_GARBAGE, /* reads the ClientHello, answers with HTTP */
    RAW_CLOSE,   /* closes at once */
    RAW_STALL,   /* reads, never writes, until the client goes */
};

struct raw {
    int lfd;
    enum raw_mode mode;
    struct hello hello;
};

static void *raw_server(void *arg)
{
    struct raw *r = arg;
    int fd = coru_tcp_accept_dl(r->lfd, NULL, NULL, coru_now() + 10 * SEC);
    if (!EXPECT(fd >= 0, "raw accept: %d", fd)) return NULL;
    if (r->mode == RAW_CLOSE) {
        coru_close(fd);
        return NULL;
    }
    size_t cap = 32768, have = 0;
    unsigned char *buf = malloc(cap);
    while (buf && have < cap) {
        if (have >= 5 && have >= 5 + ((size_t)buf[3] << 8 | buf[4])) break;
        ssize_t n = coru_read_dl(fd, buf + have, cap - have, coru_now() + 10 * SEC);
        if (n <= 0) break;
        have += (size_t)n;
    }
    if (buf) parse_hello(buf, have, &r->hello);
    if (r->mode == RAW_GARBAGE) {
        const char resp[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
        coru_write_all(fd, resp, sizeof resp - 1, coru_now() + 10 * SEC);
    }
    /* until the client closes (its handshake ended) */
    while (buf && coru_read_dl(fd, buf, cap, coru_now() + 10 * SEC) > 0) {
    }
    free(buf);
    coru_close(fd);
    return NULL;
}

/* A raw server of mode m; returns the port, or 0. */
static uint16_t raw_start(struct raw *r, enum raw_mode m, coru_t **h)
{
    memset(r, 0, sizeof *r);
    r->mode = m;
    r->lfd = coru_tcp_listen("127.0.0.1", 0, 16, 0);
    if (!EXPECT(r->lfd >= 0, "listen %d", r->lfd)) return 0;
    if (!EXPECT(coru_spawn(h, raw_server, r, NULL) == 0, "spawn")) return 0;
    return (uint16_t)coru_local_port(r->lfd);
}

static void raw_stop(struct raw *r, coru_t *h)
{
    coru_join(h, NULL);
    coru_close(r->lfd);
}

/* A client stream to the raw server: its handshake's result. */
static int raw_client_handshake(uint16_t port, coru_tls_config *ccfg, const char *host, int64_t dl,
                                char *reason, size_t rlen)
{
    int fd = coru_tcp_connect("127.0.0.1", port, coru_now() + 10 * SEC);
    if (!EXPECT(fd >= 0, "connect %d", fd)) return 1;
    coru_tls *t;
    if (!EXPECT(coru_tls_client(&t, ccfg, fd, host) == 0, "client")) return 1;
    int rc = coru_tls_handshake(t, dl);
    snprintf(reason, rlen, "%s", coru_tls_reason(t));
    EXPECT(coru_tls_close(t) == 0, "close");
    return rc;
}

/* ------------------------------------------------------------ 6. what the ClientHello carries; garbage */

struct hello_case {
    coru_tls_config *ccfg_default, *ccfg_h2, *ccfg_none;
};

static void *client_hello_main(void *arg)
{
    struct hello_case *k = arg;
    struct {
        coru_tls_config *cfg;
        const char *host;
        const char *sni;  /* NULL: none sent */
        const char *alpn; /* NULL: no ALPN extension */
    } cases[] = {
        {k->ccfg_default, "localhost", "localhost", "http/1.1"},
        {k->ccfg_default, "127.0.0.1", NULL, "http/1.1"}, /* RFC 6066: no SNI for addresses */
        {k->ccfg_default, "::1", NULL, "http/1.1"},
        {k->ccfg_h2, "example.org", "example.org", "h2,http/1.1"},
        {k->ccfg_none, "localhost", "localhost", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct raw r;
        coru_t *h;
        uint16_t port = raw_start(&r, RAW_GARBAGE, &h);
        if (!port) return NULL;
        char reason[256];
        int rc = raw_client_handshake(port, cases[i].cfg, cases[i].host, coru_now() + 10 * SEC, reason,
                                      sizeof reason);
        raw_stop(&r, h);
        EXPECT(rc == -EPROTO, "%s: HTTP instead of a ServerHello gave %d (%s), wanted -EPROTO", cases[i].host, rc,
               reason);
        EXPECT(reason[0] != '\0', "no reason for the garbage");
        if (!EXPECT(r.hello.ok, "%s: no parsable ClientHello", cases[i].host)) continue;
        if (cases[i].sni)
            EXPECT(r.hello.has_sni && strcmp(r.hello.sni, cases[i].sni) == 0, "%s: SNI '%s' (sent %d)",
                   cases[i].host, r.hello.sni, r.hello.has_sni);
        else
            EXPECT(!r.hello.has_sni, "%s: an address sent as SNI '%s'", cases[i].host, r.hello.sni);
        if (cases[i].alpn)
            EXPECT(r.hello.has_alpn && strcmp(r.hello.alpn, cases[i].alpn) == 0, "%s: ALPN offered '%s', wanted '%s'",
                   cases[i].host, r.hello.alpn, cases[i].alpn);
        else
            EXPECT(!r.hello.has_alpn, "alpn \"\" still offered '%s'", r.hello.alpn);
    }
    return NULL;
}

Test(tls_io, client_hello_carries_sni_for_names_only_and_the_alpn_list_and_garbage_back_is_eproto, .timeout = 60)
{
    certs_init();
    struct coru_tls_client_opts h2 = {.ca_file = C.ca, .alpn = "h2,http/1.1"};
    struct coru_tls_client_opts none = {.ca_file = C.ca, .alpn = ""};
    struct hello_case k = {client_cfg(), client_cfg_opts(&h2), client_cfg_opts(&none)};
    both_engines(client_hello_main, &k);
    coru_tls_config_free(k.ccfg_default);
    coru_tls_config_free(k.ccfg_h2);
    coru_tls_config_free(k.ccfg_none);
}

static void *closing_server_main(void *arg)
{
    coru_tls_config *ccfg = arg;
    for (int i = 0; i < 5; i++) {
        struct raw r;
        coru_t *h;
        uint16_t port = raw_start(&r, RAW_CLOSE, &h);
        if (!port) return NULL;
        char reason[256];
        int rc = raw_client_handshake(port, ccfg, "localhost", coru_now() + 10 * SEC, reason, sizeof reason);
        raw_stop(&r, h);
        EXPECT(rc == -ECONNABORTED || rc == -ECONNRESET,
               "a server closing at once: %d (%s), wanted -ECONNABORTED or -ECONNRESET", rc, reason);
        EXPECT(reason[0] != '\0', "no reason");
    }
    return NULL;
}

Test(tls_io, a_server_closing_at_once_is_econnaborted_or_econnreset, .timeout = 60)
{
    certs_init();
    coru_tls_config *ccfg = client_cfg();
    both_engines(closing_server_main, ccfg);
    coru_tls_config_free(ccfg);
}

/* The server side against raw clients: HTTP instead of a ClientHello, a
 * client that closes at once, one that sends nothing (deadline). */
static void *raw_clients_main(void *arg)
{
    coru_tls_config *scfg = arg;
    for (int m = 0; m < 3; m++) {
        int cfd, sfd;
        if (!tcp_pair(&cfd, &sfd)) return NULL;
        coru_tls *s;
        if (!EXPECT(coru_tls_server(&s, scfg, sfd) == 0, "server")) return NULL;
        int64_t t0 = coru_now();
        int rc;
        if (m == 0) {
            const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
            coru_write_all(cfd, req, sizeof req - 1, coru_now() + SEC);
            rc = coru_tls_handshake(s, coru_now() + 10 * SEC);
            EXPECT(rc == -EPROTO, "HTTP instead of a ClientHello: %d (%s), wanted -EPROTO", rc, coru_tls_reason(s));
            EXPECT(coru_tls_reason(s)[0] != '\0', "no reason");
        } else if (m == 1) {
            coru_close(cfd);
            cfd = -1;
            rc = coru_tls_handshake(s, coru_now() + 10 * SEC);
            EXPECT(rc == -ECONNABORTED, "a client closing at once: %d (%s), wanted -ECONNABORTED", rc,
                   coru_tls_reason(s));
        } else {
            rc = coru_tls_handshake(s, t0 + 200 * MS);
            int64_t el = coru_now() - t0;
            EXPECT(rc == -ETIMEDOUT, "a silent client: %d (%s), wanted -ETIMEDOUT", rc, coru_tls_reason(s));
            EXPECT(el >= 200 * MS && el < 2 * SEC, "the silent client's deadline took %lld ms", (long long)(el / MS));
        }
        coru_tls_close(s);
        if (cfd >= 0) coru_close(cfd);
    }
    return NULL;
}

Test(tls_io, server_handshake_against_http_an_early_close_and_a_silent_client, .timeout = 60)
{
    certs_init();
    coru_tls_config *scfg = server_cfg(C.srv, C.srv_key);
    both_engines(raw_clients_main, scfg);
    coru_tls_config_free(scfg);
}

/* ------------------------------------------------------------ 7, 8. deadlines and cancels of handshakes */

static void *stall_deadline_main(void *arg)
{
    coru_tls_config *ccfg = arg;
    struct raw r;
    coru_t *h;
    uint16_t port = raw_start(&r, RAW_STALL, &h);
    if (!port) return NULL;
    char reason[256];
    int64_t t0 = coru_now();
    int rc = raw_client_handshake(port, ccfg, "localhost", t0 + 200 * MS, reason, sizeof reason);
    int64_t el = coru_now() - t0;
    raw_stop(&r, h);
    EXPECT(rc == -ETIMEDOUT, "a stalled server: %d (%s), wanted -ETIMEDOUT", rc, reason);
    EXPECT(el >= 200 * MS && el < 2 * SEC, "the deadline took %lld ms", (long long)(el / MS));
    EXPECT(r.hello.ok, "the stalled server got no ClientHello");

    /* a deadline already past: -ETIMEDOUT at once */
    port = raw_start(&r, RAW_STALL, &h);
    if (!port) return NULL;
    t0 = coru_now();
    rc = raw_client_handshake(port, ccfg, "localhost", t0 - 1, reason, sizeof reason);
    el = coru_now() - t0;
    raw_stop(&r, h);
    EXPECT(rc == -ETIMEDOUT, "a past deadline: %d (%s)", rc, reason);
    EXPECT(el < SEC, "a past deadline took %lld ms", (long long)(el / MS));
    return NULL;
}

Test(tls_io, a_handshake_with_a_stalled_server_ends_at_its_deadline, .timeout = 60)
{
    certs_init();
    coru_tls_config *ccfg = client_cfg();
    both_engines(stall_deadline_main, ccfg);
    coru_tls_config_free(ccfg);
}

struct parked {
    coru_tls *t;
    _Atomic int started;
    int hs; /* 1: handshake, 0: read */
    ssize_t rc;
};

static void *parked_co(void *arg)
{
    struct parked *p = arg;
    char b[64];
    atomic_store(&p->started, 1);
    p->rc = p->hs ? coru_tls_handshake(p->t, CORU_NEVER) : coru_tls_read(p->t, b, sizeof b, CORU_NEVER);
    return NULL;
}

/* Cancels a coroutine parked in p's call; true when it ended -ECANCELED. */
static bool cancel_parked(struct parked *p, const char *what)
{
    coru_t *h;
    if (!EXPECT(coru_spawn(&h, parked_co, p, NULL) == 0, "spawn")) return false;
    while (!atomic_load(&p->started)) coru_yield();
    coru_sleep(50 * MS);
    int64_t t0 = coru_now();
    EXPECT(coru_cancel(h) == 0, "cancel");
    coru_join(h, NULL);
    int64_t el = coru_now() - t0;
    EXPECT(el < SEC, "%s: the cancel took %lld ms", what, (long long)(el / MS));
    return EXPECT(p->rc == -ECANCELED, "%s: cancelled call returned %zd (%s), wanted -ECANCELED", what, p->rc,
                  coru_tls_reason(p->t));
}

struct cancel_case {
    coru_tls_config *scfg, *ccfg;
};

static void *cancel_main(void *arg)
{
    struct cancel_case *k = arg;
    /* a client handshake with a stalled server */
    struct raw r;
    coru_t *h;
    uint16_t port = raw_start(&r, RAW_STALL, &h);
    if (!port) return NULL;
    int fd = coru_tcp_connect("127.0.0.1", port, coru_now() + 10 * SEC);
    coru_tls *t = NULL;
    if (EXPECT(fd >= 0, "connect") && EXPECT(coru_tls_client(&t, k->ccfg, fd, "localhost") == 0, "client")) {
        struct parked p = {.t = t, .hs = 1};
        cancel_parked(&p, "client handshake");
        EXPECT(coru_tls_close(t) == 0, "close");
    }
    raw_stop(&r, h);

    /* a server handshake with a silent client */
    int cfd, sfd;
    if (!tcp_pair(&cfd, &sfd)) return NULL;
    if (EXPECT(coru_tls_server(&t, k->scfg, sfd) == 0, "server")) {
        struct parked p = {.t = t, .hs = 1};
        cancel_parked(&p, "server handshake");
        coru_tls_close(t);
    }
    coru_close(cfd);

    /* a read on an established stream; the stream reads on afterwards */
    struct pair pr;
    if (!pair_connect(&pr, k->scfg, k->ccfg, "localhost")) return NULL;
    if (EXPECT(pr.crc == 0 && pr.src == 0, "handshake %d %d", pr.crc, pr.src)) {
        struct parked p = {.t = pr.c, .hs = 0};
        if (cancel_parked(&p, "read")) {
            send_recv(pr.s, pr.c, "after the cancelled read");
            send_recv(pr.c, pr.s, "and the other way");
            pair_clean_end(&pr);
        }
    }
    pair_close(&pr);
    return NULL;
}

Test(tls_io, cancel_ends_parked_handshakes_and_reads_with_ecanceled, .timeout = 60)
{
    certs_init();
    struct cancel_case k = {server_cfg(C.srv, C.srv_key), client_cfg()};
    both_engines(cancel_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

/* ------------------------------------------------------------ read deadlines, mid-record too */

/* A TCP proxy between a client and a server; when `split` is set, the next
 * chunk from the server goes on in two halves 300 ms apart, so the client
 * holds half a record meanwhile. */
struct proxy {
    int lfd;
    uint16_t back_port;
    _Atomic int split;
    int cfd, sfd;
};

struct pump {
    struct proxy *px;
    int from, to;
    bool splitter;
};

static void *pump_co(void *arg)
{
    struct pump *pu = arg;
    size_t cap = 65536;
    char *buf = malloc(cap);
    ssize_t n;
    while (buf && (n = coru_read_dl(pu->from, buf, cap, coru_now() + 30 * SEC)) > 0) {
        size_t off = 0;
        if (pu->splitter && n >= 2 && atomic_exchange(&pu->px->split, 0)) {
            off = (size_t)n / 2;
            if (coru_write_all(pu->to, buf, off, coru_now() + 10 * SEC) != (ssize_t)off) break;
            coru_sleep(300 * MS);
        }
        if (coru_write_all(pu->to, buf + off, (size_t)n - off, coru_now() + 10 * SEC) != n - (ssize_t)off) break;
    }
    coru_shutdown(pu->to, SHUT_WR);
    free(buf);
    return NULL;
}

static void *proxy_co(void *arg)
{
    struct proxy *px = arg;
    px->cfd = coru_tcp_accept_dl(px->lfd, NULL, NULL, coru_now() + 10 * SEC);
    if (!EXPECT(px->cfd >= 0, "proxy accept %d", px->cfd)) return NULL;
    px->sfd = coru_tcp_connect("127.0.0.1", px->back_port, coru_now() + 10 * SEC);
    if (!EXPECT(px->sfd >= 0, "proxy connect %d", px->sfd)) {
        coru_close(px->cfd);
        return NULL;
    }
    coru_tcp_nodelay(px->cfd, 1);
    coru_tcp_nodelay(px->sfd, 1);
    struct pump up = {px, px->cfd, px->sfd, false}, down = {px, px->sfd, px->cfd, true};
    coru_t *h1, *h2;
    coru_spawn(&h1, pump_co, &up, NULL);
    coru_spawn(&h2, pump_co, &down, NULL);
    coru_join(h1, NULL);
    coru_join(h2, NULL);
    coru_close(px->cfd);
    coru_close(px->sfd);
    return NULL;
}

static void *mid_record_main(void *arg)
{
    struct cancel_case *k = arg;
    struct proxy px = {0};
    int blfd = coru_tcp_listen("127.0.0.1", 0, 16, 0);
    px.lfd = coru_tcp_listen("127.0.0.1", 0, 16, 0);
    if (!EXPECT(blfd >= 0 && px.lfd >= 0, "listen")) return NULL;
    px.back_port = (uint16_t)coru_local_port(blfd);
    coru_t *ph;
    coru_spawn(&ph, proxy_co, &px, NULL);
    struct pair p = {0};
    int cfd = coru_tcp_connect("127.0.0.1", (uint16_t)coru_local_port(px.lfd), coru_now() + 10 * SEC);
    int sfd = coru_tcp_accept_dl(blfd, NULL, NULL, coru_now() + 10 * SEC);
    if (!EXPECT(cfd >= 0 && sfd >= 0, "connect %d accept %d", cfd, sfd)) goto out;
    coru_tcp_nodelay(cfd, 1);
    coru_tcp_nodelay(sfd, 1);
    int rc = coru_tls_server(&p.s, k->scfg, sfd);
    sfd = -1; /* the stream's, even on failure */
    if (!EXPECT(rc == 0, "server %d", rc)) goto out;
    rc = coru_tls_client(&p.c, k->ccfg, cfd, "localhost");
    cfd = -1;
    if (!EXPECT(rc == 0, "client %d", rc)) goto out;
    pair_handshake(&p);
    if (!EXPECT(p.crc == 0 && p.src == 0, "handshake %d %d", p.crc, p.src)) goto out;
    /* everything the handshake sent (tickets too) is through */
    if (!send_recv(p.s, p.c, "warm up")) goto out;

    /* nothing at all to read: the deadline, and the stream goes on */
    char *msg = malloc(3000), *in = malloc(3000);
    for (int i = 0; i < 3000; i++) msg[i] = (char)('a' + i % 26);
    char b[16];
    int64_t t0 = coru_now();
    ssize_t r = coru_tls_read(p.c, b, sizeof b, t0 + 100 * MS);
    int64_t el = coru_now() - t0;
    EXPECT(r == -ETIMEDOUT, "an idle read: %zd (%s), wanted -ETIMEDOUT", r, coru_tls_reason(p.c));
    EXPECT(el >= 100 * MS && el < 2 * SEC, "an idle read's deadline took %lld ms", (long long)(el / MS));

    /* half a record in: the deadline passes; the rest comes; all of it reads */
    atomic_store(&px.split, 1);
    if (!EXPECT(coru_tls_write(p.s, msg, 3000, coru_now() + 10 * SEC) == 3000, "server write")) goto out2;
    r = coru_tls_read(p.c, in, 3000, coru_now() + 100 * MS);
    EXPECT(r == -ETIMEDOUT, "a read holding half a record: %zd (%s), wanted -ETIMEDOUT", r, coru_tls_reason(p.c));
    r = tls_read_full(p.c, in, 3000, coru_now() + 10 * SEC);
    EXPECT(r == 3000 && memcmp(in, msg, 3000) == 0, "after the timed-out read: %zd (%s)", r, coru_tls_reason(p.c));

    /* the same with a cancel */
    atomic_store(&px.split, 1);
    if (!EXPECT(coru_tls_write(p.s, msg, 3000, coru_now() + 10 * SEC) == 3000, "server write")) goto out2;
    coru_sleep(50 * MS); /* the first half is in */
    struct parked pk = {.t = p.c, .hs = 0};
    if (cancel_parked(&pk, "a read holding half a record")) {
        r = tls_read_full(p.c, in, 3000, coru_now() + 10 * SEC);
        EXPECT(r == 3000 && memcmp(in, msg, 3000) == 0, "after the cancelled read: %zd (%s)", r,
               coru_tls_reason(p.c));
    }
    send_recv(p.c, p.s, "upstream still fine");
    pair_clean_end(&p);
out2:
    free(msg);
    free(in);
out:
    if (!p.s && sfd >= 0) coru_close(sfd);
    if (!p.c && cfd >= 0) coru_close(cfd);
    pair_close(&p);
    coru_join(ph, NULL);
    coru_close(blfd);
    coru_close(px.lfd);
    return NULL;
}

Test(tls_io, a_read_timed_out_or_cancelled_mid_record_resumes_where_it_was, .timeout = 60)
{
    certs_init();
    struct cancel_case k = {server_cfg(C.srv, C.srv_key), client_cfg()};
    both_engines(mid_record_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

/* coru's "try once": a past deadline still reads what is already there. */
static void *past_deadline_main(void *arg)
{
    struct cancel_case *k = arg;
    struct pair p;
    if (!pair_connect(&p, k->scfg, k->ccfg, "localhost")) return NULL;
    if (EXPECT(p.crc == 0 && p.src == 0, "handshake %d %d", p.crc, p.src) && send_recv(p.s, p.c, "warm up")) {
        EXPECT(coru_tls_write(p.s, "ready", 5, coru_now() + SEC) == 5, "write");
        coru_sleep(50 * MS); /* on the client's socket now */
        char b[16];
        ssize_t r = coru_tls_read(p.c, b, sizeof b, coru_now() - 1);
        EXPECT(r == 5 && memcmp(b, "ready", 5) == 0, "a past deadline with data there: %zd (%s)", r,
               coru_tls_reason(p.c));
        r = coru_tls_read(p.c, b, sizeof b, coru_now() - 1);
        EXPECT(r == -ETIMEDOUT, "a past deadline with nothing there: %zd", r);
        send_recv(p.c, p.s, "still fine");
        pair_clean_end(&p);
    }
    pair_close(&p);
    return NULL;
}

Test(tls_io, a_past_deadline_still_reads_what_is_there, .timeout = 60)
{
    certs_init();
    struct cancel_case k = {server_cfg(C.srv, C.srv_key), client_cfg()};
    both_engines(past_deadline_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

/* A write the peer does not read: the deadline, and a cancel. */
struct wpark {
    coru_tls *t;
    const unsigned char *buf;
    size_t n;
    int64_t dl;
    _Atomic int started;
    ssize_t rc;
};

static void *wpark_co(void *arg)
{
    struct wpark *w = arg;
    atomic_store(&w->started, 1);
    w->rc = coru_tls_write(w->t, w->buf, w->n, w->dl);
    return NULL;
}

static void *write_deadline_main(void *arg)
{
    struct cancel_case *k = arg;
    size_t n = 64 << 20; /* far more than the socket buffers hold */
    unsigned char *buf = calloc(1, n);
    for (int m = 0; buf && m < 2; m++) {
        struct pair p;
        if (!pair_connect(&p, k->scfg, k->ccfg, "localhost")) break;
        if (EXPECT(p.crc == 0 && p.src == 0, "handshake %d %d", p.crc, p.src)) {
            int64_t t0 = coru_now();
            if (m == 0) {
                ssize_t r = coru_tls_write(p.c, buf, n, t0 + 300 * MS);
                int64_t el = coru_now() - t0;
                EXPECT(r == -ETIMEDOUT, "a write nobody reads: %zd (%s), wanted -ETIMEDOUT", r, coru_tls_reason(p.c));
                EXPECT(el >= 300 * MS && el < 3 * SEC, "the write's deadline took %lld ms", (long long)(el / MS));
            } else {
                struct wpark w = {.t = p.c, .buf = buf, .n = n, .dl = CORU_NEVER};
                coru_t *h;
                if (EXPECT(coru_spawn(&h, wpark_co, &w, NULL) == 0, "spawn")) {
                    while (!atomic_load(&w.started)) coru_yield();
                    coru_sleep(100 * MS);
                    coru_cancel(h);
                    coru_join(h, NULL);
                    int64_t el = coru_now() - t0;
                    EXPECT(w.rc == -ECANCELED, "a cancelled write: %zd (%s), wanted -ECANCELED", w.rc,
                           coru_tls_reason(p.c));
                    EXPECT(el < 3 * SEC, "the cancel took %lld ms", (long long)(el / MS));
                }
            }
        }
        pair_close(&p);
    }
    free(buf);
    return NULL;
}

Test(tls_io, a_write_nobody_reads_ends_at_its_deadline_or_cancel, .timeout = 60)
{
    certs_init();
    struct cancel_case k = {server_cfg(C.srv, C.srv_key), client_cfg()};
    both_engines(write_deadline_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

/* Reads of one byte take a record apart; reads of 100 KiB get what there is. */
static void *small_reads_main(void *arg)
{
    struct cancel_case *k = arg;
    struct pair p;
    if (!pair_connect(&p, k->scfg, k->ccfg, "localhost")) return NULL;
    if (EXPECT(p.crc == 0 && p.src == 0, "handshake %d %d", p.crc, p.src)) {
        size_t n = 20000;
        unsigned char *msg = malloc(n), *in = malloc(100 * 1024);
        uint32_t x = 7;
        for (size_t i = 0; i < n; i++) msg[i] = (unsigned char)((x = x * 1103515245u + 12345u) >> 16);
        EXPECT(coru_tls_write(p.s, msg, n, coru_now() + 5 * SEC) == (ssize_t)n, "write");
        size_t i = 0;
        for (; i < n / 2; i++) {
            ssize_t r = coru_tls_read(p.c, in + i, 1, coru_now() + 5 * SEC);
            if (!EXPECT(r == 1, "one-byte read %zu: %zd", i, r)) break;
        }
        while (i < n) {
            ssize_t r = coru_tls_read(p.c, in + i, 100 * 1024, coru_now() + 5 * SEC);
            if (!EXPECT(r > 0 && (size_t)r <= n - i, "read at %zu: %zd", i, r)) break;
            i += (size_t)r;
        }
        EXPECT(i == n && memcmp(in, msg, n) == 0, "the message came apart (%zu of %zu)", i, n);
        free(msg);
        free(in);
        pair_clean_end(&p);
    }
    pair_close(&p);
    return NULL;
}

Test(tls_io, one_byte_reads_take_records_apart_and_big_reads_get_what_there_is, .timeout = 60)
{
    certs_init();
    struct cancel_case k = {server_cfg(C.srv, C.srv_key), client_cfg()};
    both_engines(small_reads_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

/* ------------------------------------------------------------ 5. EOF without close_notify */

static void *no_close_notify_main(void *arg)
{
    struct cancel_case *k = arg;
    for (int m = 0; m < 3; m++) {
        struct pair p;
        if (!pair_connect(&p, k->scfg, k->ccfg, "localhost")) return NULL;
        if (!EXPECT(p.crc == 0 && p.src == 0, "handshake %d %d", p.crc, p.src)) {
            pair_close(&p);
            continue;
        }
        /* the victim reads "bye", then the TCP end without close_notify */
        coru_tls *from = m == 2 ? p.c : p.s, *to = m == 2 ? p.s : p.c;
        /* each side has read all there is (the client the tickets too): a
         * close with unread bytes would be a reset, not an EOF */
        send_recv(p.c, p.s, "hello");
        send_recv(p.s, p.c, "hello back");
        EXPECT(coru_tls_write(from, "bye", 3, coru_now() + SEC) == 3, "write");
        if (m == 0) {
            EXPECT(coru_shutdown(coru_tls_fd(from), SHUT_RDWR) == 0, "shutdown(2)");
        } else {
            EXPECT(coru_tls_close(from) == 0, "close");
            if (m == 2) p.c = NULL;
            else p.s = NULL;
        }
        char b[16];
        ssize_t r = tls_read_full(to, b, 3, coru_now() + 5 * SEC);
        EXPECT(r == 3 && memcmp(b, "bye", 3) == 0, "mode %d: the data before the end: %zd", m, r);
        r = coru_tls_read(to, b, sizeof b, coru_now() + 5 * SEC);
        EXPECT(r == -ECONNABORTED, "mode %d: EOF without close_notify: %zd (%s), wanted -ECONNABORTED", m, r,
               coru_tls_reason(to));
        const char *why = coru_tls_reason(to);
        EXPECT(has(why, "eof") || has(why, "close_notify") || has(why, "closed"),
               "mode %d: reason '%s' says nothing of the missing close_notify", m, why);
        pair_close(&p);
    }
    return NULL;
}

Test(tls_io, a_peer_ending_tcp_without_close_notify_gives_econnaborted, .timeout = 60)
{
    certs_init();
    struct cancel_case k = {server_cfg(C.srv, C.srv_key), client_cfg()};
    both_engines(no_close_notify_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

/* ------------------------------------------------------------ 9. 64 MiB each way */

enum { BIG = 64 << 20, WRITE_PIECE = 100003, READ_PIECE = 65521 };


struct big_side {
    coru_tls *t;
    uint64_t seed_out, seed_in; /* what it sends, what it expects */
    bool send_first;
    ssize_t err;
    size_t sent, checked;
    const char *name;
};

static void big_send(struct big_side *b)
{
    struct xs x = {b->seed_out};
    unsigned char *buf = malloc(WRITE_PIECE);
    while (buf && b->sent < BIG) {
        size_t n = BIG - b->sent < WRITE_PIECE ? BIG - b->sent : WRITE_PIECE;
        for (size_t i = 0; i < n; i++) buf[i] = xs_byte(&x);
        ssize_t w = coru_tls_write(b->t, buf, n, coru_now() + 30 * SEC);
        if (w != (ssize_t)n) {
            b->err = w < 0 ? w : -EIO;
            break;
        }
        b->sent += n;
    }
    free(buf);
}

static void big_recv(struct big_side *b)
{
    struct xs x = {b->seed_in};
    unsigned char *buf = malloc(READ_PIECE);
    while (buf && b->checked < BIG) {
        ssize_t r = coru_tls_read(b->t, buf, READ_PIECE, coru_now() + 30 * SEC);
        if (r <= 0) {
            b->err = r < 0 ? r : -EPIPE;
            break;
        }
        if (b->checked + (size_t)r > BIG) {
            b->err = -E2BIG;
            break;
        }
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != xs_byte(&x)) {
                b->err = -EILSEQ;
                b->checked += (size_t)i;
                goto done;
            }
        b->checked += (size_t)r;
    }
done:
    free(buf);
}

static void *big_side_co(void *arg)
{
    struct big_side *b = arg;
    if (b->send_first) {
        big_send(b);
        if (!b->err) big_recv(b);
    } else {
        big_recv(b);
        if (!b->err) big_send(b);
    }
    return NULL;
}

static void *big_main(void *arg)
{
    struct cancel_case *k = arg;
    struct pair p;
    if (!pair_connect(&p, k->scfg, k->ccfg, "localhost")) return NULL;
    if (!EXPECT(p.crc == 0 && p.src == 0, "handshake %d %d", p.crc, p.src)) goto out;
    struct big_side c = {p.c, 0x9e3779b97f4a7c15ull, 0xd1b54a32d192ed03ull, true, 0, 0, 0, "client"};
    struct big_side s = {p.s, 0xd1b54a32d192ed03ull, 0x9e3779b97f4a7c15ull, false, 0, 0, 0, "server"};
    coru_t *h1, *h2;
    int64_t t0 = coru_now();
    coru_spawn(&h1, big_side_co, &c, NULL);
    coru_spawn(&h2, big_side_co, &s, NULL);
    coru_join(h1, NULL);
    coru_join(h2, NULL);
    int64_t el = coru_now() - t0;
    EXPECT(c.err == 0 && s.err == 0, "client err %zd (sent %zu, checked %zu: %s), server err %zd (sent %zu, checked %zu: %s)",
           c.err, c.sent, c.checked, coru_tls_reason(p.c), s.err, s.sent, s.checked, coru_tls_reason(p.s));
    EXPECT(c.sent == BIG && s.checked == BIG && s.sent == BIG && c.checked == BIG, "short: %zu %zu %zu %zu", c.sent,
           s.checked, s.sent, c.checked);
    fprintf(stderr, "test_tls: 64 MiB each way in %lld ms\n", (long long)(el / MS));
    pair_clean_end(&p);
out:
    pair_close(&p);
    return NULL;
}

Test(tls_io, sixty_four_mib_each_way_in_odd_pieces_arrive_byte_for_byte, .timeout = 120)
{
    certs_init();
    struct cancel_case k = {server_cfg(C.srv, C.srv_key), client_cfg()};
    both_engines(big_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

/* ------------------------------------------------------------ plain threads, SIGPIPE */

/* Plain threads (no coru_run): a server thread handshakes, reads one
 * message and closes; the client then writes into the reset connection.
 * Every write fails with -EPIPE or -ECONNRESET and no SIGPIPE kills the
 * process, on coru's BIO and on the kTLS streams' socket path (meson runs
 * this program again with CORU_TLS_SOCKET_BIO=1), where OpenSSL writes
 * the socket without MSG_NOSIGNAL. */
struct plain_srv {
    coru_tls_config *cfg;
    int fd;
    int hs;
    ssize_t got;
};

static void *plain_server(void *arg)
{
    struct plain_srv *p = arg;
    coru_tls *t;
    if (coru_tls_server(&t, p->cfg, p->fd) != 0) return NULL;
    p->hs = coru_tls_handshake(t, coru_now() + 10 * SEC);
    char b[16];
    p->got = coru_tls_read(t, b, sizeof b, coru_now() + 10 * SEC);
    coru_tls_close(t); /* unread bytes behind: the kernel resets */
    return NULL;
}

Test(tls_io, plain_threads_writing_to_a_reset_peer_get_epipe_and_no_sigpipe, .timeout = 60)
{
    certs_init();
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would end the test process */
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct plain_srv p = {server_cfg(C.srv, C.srv_key), sv[1], 1, 1};
    coru_tls_config *ccfg = client_cfg();
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, plain_server, &p), 0);
    coru_tls *t;
    cr_assert_eq(coru_tls_client(&t, ccfg, sv[0], "localhost"), 0);
    int rc = coru_tls_handshake(t, coru_now() + 10 * SEC);
    cr_assert_eq(rc, 0, "handshake %d (%s)", rc, coru_tls_reason(t));
    cr_assert_eq(coru_tls_write(t, "hi", 2, coru_now() + 10 * SEC), 2);
    pthread_join(th, NULL);
    cr_assert_eq(p.hs, 0);
    cr_assert_eq(p.got, 2);
    for (int i = 0; i < 3; i++) {
        ssize_t w = coru_tls_write(t, "hello", 5, coru_now() + 10 * SEC);
        cr_assert(w == -EPIPE || w == -ECONNRESET, "write %d: %zd (%s)", i, w, coru_tls_reason(t));
    }
    sigset_t pend;
    sigpending(&pend);
    cr_assert_not(sigismember(&pend, SIGPIPE), "a SIGPIPE was left pending");
    coru_tls_close(t);
    coru_tls_config_free(p.cfg);
    coru_tls_config_free(ccfg);
}
