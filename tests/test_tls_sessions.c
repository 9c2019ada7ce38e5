/* test_tls_sessions: TLS streams at scale and over time, both engines
 * (helpers: tls_helpers.h): 1,000 concurrent handshakes on two workers;
 * session resumption, no_tickets, a session outliving its stream;
 * certificate reload (and reloads racing handshakes); configuration and
 * stream errors; NULL handles. */
#include "tls_helpers.h"

/* ------------------------------------------------------------ 10. 1,000 concurrent handshakes */

enum { MANY = 1000 };

struct many {
    coru_tls_config *scfg, *ccfg;
    int lfd;
    uint16_t port;
    _Atomic int client_ok, server_ok, accepted;
    _Atomic int client_first_err, server_first_err;
    coru_waitgroup *wg;
};

static void many_err(_Atomic int *slot, int rc)
{
    int zero = 0;
    atomic_compare_exchange_strong(slot, &zero, rc ? rc : -EIO);
}

struct many_conn {
    struct many *m;
    int fd;
};

static void *many_server_conn(void *arg)
{
    struct many_conn mc = *(struct many_conn *)arg;
    free(arg);
    struct many *m = mc.m;
    int64_t dl = coru_now() + 120 * SEC;
    coru_tls *t;
    int rc = coru_tls_server(&t, m->scfg, mc.fd);
    if (rc < 0) {
        many_err(&m->server_first_err, rc);
        goto done;
    }
    char b[16];
    ssize_t r = tls_read_full(t, b, 16, dl);
    if (r != 16) {
        many_err(&m->server_first_err, (int)(r < 0 ? r : -EIO));
    } else if ((r = coru_tls_write(t, b, 16, dl)) != 16) {
        many_err(&m->server_first_err, (int)r);
    } else if ((r = coru_tls_read(t, b, sizeof b, dl)) != 0) {
        many_err(&m->server_first_err, (int)(r < 0 ? r : -EIO));
    } else if ((rc = coru_tls_shutdown(t, dl)) != 0) {
        many_err(&m->server_first_err, rc);
    } else {
        atomic_fetch_add(&m->server_ok, 1);
    }
    coru_tls_close(t);
done:
    coru_waitgroup_done(m->wg);
    return NULL;
}

static void *many_acceptor(void *arg)
{
    struct many *m = arg;
    while (atomic_load(&m->accepted) < MANY) {
        int fd = coru_tcp_accept_dl(m->lfd, NULL, NULL, coru_now() + 120 * SEC);
        if (fd < 0) {
            many_err(&m->server_first_err, fd);
            break;
        }
        atomic_fetch_add(&m->accepted, 1);
        coru_tcp_nodelay(fd, 1);
        struct many_conn *c = malloc(sizeof *c);
        c->m = m;
        c->fd = fd;
        coru_waitgroup_add(m->wg, 1);
        if (coru_go(many_server_conn, c, NULL) != 0) {
            many_err(&m->server_first_err, -EAGAIN);
            coru_waitgroup_done(m->wg);
        }
    }
    return NULL;
}

static void *many_client(void *arg)
{
    struct many_conn *a = arg;
    struct many *m = a->m;
    int id = a->fd; /* the client's number here */
    int64_t dl = coru_now() + 120 * SEC;
    int fd = coru_tcp_connect("127.0.0.1", m->port, dl);
    if (fd < 0) {
        many_err(&m->client_first_err, fd);
        return NULL;
    }
    coru_tcp_nodelay(fd, 1);
    coru_tls *t;
    int rc = coru_tls_client(&t, m->ccfg, fd, "localhost");
    if (rc < 0) {
        many_err(&m->client_first_err, rc);
        return NULL;
    }
    char out[17], in[16];
    snprintf(out, sizeof out, "client %08d.", id);
    ssize_t r;
    if ((rc = coru_tls_handshake(t, dl)) != 0) {
        many_err(&m->client_first_err, rc);
    } else if ((r = coru_tls_write(t, out, 16, dl)) != 16) {
        many_err(&m->client_first_err, (int)r);
    } else if ((r = tls_read_full(t, in, 16, dl)) != 16 || memcmp(in, out, 16) != 0) {
        many_err(&m->client_first_err, (int)(r < 0 ? r : -EILSEQ));
    } else if ((rc = coru_tls_shutdown(t, dl)) != 0) {
        many_err(&m->client_first_err, rc);
    } else if ((r = coru_tls_read(t, in, sizeof in, dl)) != 0) {
        many_err(&m->client_first_err, (int)(r < 0 ? r : -EIO));
    } else {
        atomic_fetch_add(&m->client_ok, 1);
    }
    coru_tls_close(t);
    return NULL;
}

static void *many_main(void *arg)
{
    struct many *m = arg;
    m->lfd = coru_tcp_listen("127.0.0.1", 0, 4096, 0);
    if (!EXPECT(m->lfd >= 0, "listen %d", m->lfd)) return NULL;
    m->port = (uint16_t)coru_local_port(m->lfd);
    coru_waitgroup_create(&m->wg);
    coru_t *acc;
    coru_spawn(&acc, many_acceptor, m, NULL);
    struct many_conn *args = calloc(MANY, sizeof *args);
    coru_t **hs = calloc(MANY, sizeof *hs);
    int64_t t0 = coru_now();
    for (int i = 0; i < MANY; i++) {
        args[i] = (struct many_conn){m, i};
        if (!EXPECT(coru_spawn(&hs[i], many_client, &args[i], NULL) == 0, "spawn client %d", i)) hs[i] = NULL;
    }
    for (int i = 0; i < MANY; i++)
        if (hs[i]) coru_join(hs[i], NULL);
    coru_join(acc, NULL);
    coru_waitgroup_wait(m->wg);
    int64_t el = coru_now() - t0;
    coru_waitgroup_destroy(m->wg);
    coru_close(m->lfd);
    free(args);
    free(hs);
    fprintf(stderr, "test_tls: %d handshakes and echoes in %lld ms\n", MANY, (long long)(el / MS));
    EXPECT(atomic_load(&m->client_ok) == MANY && atomic_load(&m->server_ok) == MANY,
           "clients ok %d (first error %d), servers ok %d (first error %d)", atomic_load(&m->client_ok),
           atomic_load(&m->client_first_err), atomic_load(&m->server_ok), atomic_load(&m->server_first_err));
    return NULL;
}

Test(tls_sessions, a_thousand_concurrent_handshakes_and_echoes_on_two_workers, .timeout = 300)
{
    certs_init();
    /* both ends of every connection at once, plus the runtime's own */
    struct rlimit rl;
    rlim_t need = 2 * MANY + 256;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    cr_assert_geq(rl.rlim_cur, need, "RLIMIT_NOFILE (hard) %llu is below the %llu this test needs",
                  (unsigned long long)rl.rlim_cur, (unsigned long long)need);
    coru_tls_config *scfg = server_cfg(C.srv, C.srv_key), *ccfg = client_cfg();
    FOR_EACH_ENGINE(io) {
        struct many m = {.scfg = scfg, .ccfg = ccfg};
        run_checked(io, 2, many_main, &m);
        cr_assert_eq(atomic_load(&m.client_ok), MANY, "%s", ename(io));
        cr_assert_eq(atomic_load(&m.server_ok), MANY, "%s", ename(io));
    }
    coru_tls_config_free(scfg);
    coru_tls_config_free(ccfg);
}

/* ------------------------------------------------------------ 11. resumption */

struct resume_case {
    coru_tls_config *scfg, *scfg2, *scfg_nt, *ccfg;
};

/* A connection that reads one message from the server (the TLS 1.3 tickets
 * come before it); returns its session (or NULL). */
static coru_tls_session *connect_for_session(coru_tls_config *scfg, coru_tls_config *ccfg, coru_tls_session *offer,
                                             int want_resumed, const char *what)
{
    struct pair p;
    coru_tls_session *got = NULL;
    if (!pair_open(&p, scfg, ccfg, "localhost")) return NULL;
    if (offer) EXPECT(coru_tls_set_session(p.c, offer) == 0, "%s: set_session", what);
    pair_handshake(&p);
    if (EXPECT(p.crc == 0 && p.src == 0, "%s: handshake %d (%s) %d (%s)", what, p.crc, coru_tls_reason(p.c), p.src,
               coru_tls_reason(p.s))) {
        EXPECT(coru_tls_resumed(p.c) == want_resumed, "%s: client resumed %d", what, coru_tls_resumed(p.c));
        EXPECT(coru_tls_resumed(p.s) == want_resumed, "%s: server resumed %d", what, coru_tls_resumed(p.s));
        EXPECT(coru_tls_set_session(p.c, offer ? offer : NULL) == -EINVAL, "%s: set_session after the handshake",
               what);
        EXPECT(coru_tls_get_session(p.s) == NULL, "%s: a server stream gave a session", what);
        send_recv(p.s, p.c, "tickets are in");
        got = coru_tls_get_session(p.c);
        send_recv(p.c, p.s, "and back");
        pair_clean_end(&p);
    }
    pair_close(&p);
    return got;
}

static void *resume_main(void *arg)
{
    struct resume_case *k = arg;
    coru_tls_session *s1 = connect_for_session(k->scfg, k->ccfg, NULL, 0, "first");
    if (!EXPECT(s1 != NULL, "no session after the first read")) return NULL;
    coru_tls_session *s2 = connect_for_session(k->scfg, k->ccfg, s1, 1, "resumed");
    /* the session can be offered again */
    coru_tls_session *s3 = connect_for_session(k->scfg, k->ccfg, s2 ? s2 : s1, 1, "resumed again");
    /* another server (other ticket keys) does a full handshake */
    coru_tls_session *s4 = connect_for_session(k->scfg2, k->ccfg, s1, 0, "other server");
    coru_tls_session_free(s1);
    coru_tls_session_free(s2);
    coru_tls_session_free(s3);
    coru_tls_session_free(s4);

    /* set_session on a server stream, or with NULL */
    struct pair p;
    if (pair_open(&p, k->scfg, k->ccfg, "localhost")) {
        EXPECT(coru_tls_set_session(p.c, NULL) == -EINVAL, "set_session(NULL)");
        EXPECT(coru_tls_set_session(NULL, NULL) == -EINVAL, "set_session(NULL, NULL)");
        pair_close(&p);
    }

    /* no tickets: nothing to resume with */
    coru_tls_session *n1 = connect_for_session(k->scfg_nt, k->ccfg, NULL, 0, "no tickets");
    EXPECT(n1 == NULL, "a no_tickets server gave a session to resume with (tls.h: NULL when not resumable)");
    if (n1) {
        coru_tls_session *n2 = connect_for_session(k->scfg_nt, k->ccfg, n1, 0, "no tickets, offered");
        coru_tls_session_free(n2);
        coru_tls_session_free(n1);
    }
    return NULL;
}

/* A session taken before a reload resumes after it: the new context
 * keeps the ticket keys. */
struct reload_resume {
    coru_tls_config *scfg, *ccfg;
};

static void *reload_resume_main(void *arg)
{
    struct reload_resume *k = arg;
    coru_tls_session *s1 = connect_for_session(k->scfg, k->ccfg, NULL, 0, "before the reload");
    if (!EXPECT(s1 != NULL, "no session after the first read")) return NULL;
    char why[256];
    int rc = coru_tls_config_reload(k->scfg, C.rsa, C.rsa_key, why, sizeof why);
    EXPECT(rc == 0, "reload: %d %s", rc, why);
    coru_tls_session *s2 = connect_for_session(k->scfg, k->ccfg, s1, 1, "after the reload");
    coru_tls_session_free(s1);
    coru_tls_session_free(s2);
    rc = coru_tls_config_reload(k->scfg, C.srv, C.srv_key, why, sizeof why); /* back, for the other engine */
    EXPECT(rc == 0, "reload back: %d %s", rc, why);
    return NULL;
}

Test(tls_sessions, sessions_taken_before_a_reload_resume_after_it, .timeout = 60)
{
    certs_init();
    struct reload_resume k = {server_cfg(C.srv, C.srv_key), client_cfg()};
    both_engines(reload_resume_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

Test(tls_sessions, sessions_resume_on_both_sides_and_not_without_tickets, .timeout = 60)
{
    certs_init();
    struct coru_tls_server_opts nt = {.cert_file = C.srv, .key_file = C.srv_key, .no_tickets = 1};
    struct resume_case k = {server_cfg(C.srv, C.srv_key), server_cfg(C.srv, C.srv_key), server_cfg_opts(&nt),
                            client_cfg()};
    both_engines(resume_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.scfg2);
    coru_tls_config_free(k.scfg_nt);
    coru_tls_config_free(k.ccfg);
}

/* A session the caller took is the caller's: it stays resumable however
 * its stream ends (here: closed without close_notify, as a pool closing an
 * idle connection does). TLS 1.1 and later allow that (RFC 5246, 7.2.1). */
static void *session_outlives_main(void *arg)
{
    struct resume_case *k = arg;
    struct pair p;
    if (!pair_connect(&p, k->scfg, k->ccfg, "localhost")) return NULL;
    coru_tls_session *s = NULL;
    if (EXPECT(p.crc == 0 && p.src == 0, "handshake %d %d", p.crc, p.src) && send_recv(p.s, p.c, "tickets")) {
        s = coru_tls_get_session(p.c);
        EXPECT(s != NULL, "no session");
    }
    pair_close(&p); /* no coru_tls_shutdown */
    if (s) {
        coru_tls_session *s2 = connect_for_session(k->scfg, k->ccfg, s, 1, "a session whose stream ended without close_notify");
        coru_tls_session_free(s2);
        coru_tls_session_free(s);
    }
    return NULL;
}

Test(tls_sessions, a_taken_session_stays_resumable_after_its_stream_closes_without_close_notify, .timeout = 60)
{
    certs_init();
    struct resume_case k = {server_cfg(C.srv, C.srv_key), NULL, NULL, client_cfg()};
    both_engines(session_outlives_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

/* ------------------------------------------------------------ 12. reload */

struct reload_case {
    coru_tls_config *scfg, *ccfg, *ccfg_wrong_ok;
};

static int handshake_result(coru_tls_config *scfg, coru_tls_config *ccfg, const char *host, char *why, size_t wl)
{
    struct pair p;
    if (!pair_connect(&p, scfg, ccfg, host)) return 1;
    snprintf(why, wl, "%s", coru_tls_reason(p.c));
    int rc = p.crc;
    if (rc == 0 && p.src == 0) send_recv(p.c, p.s, "hi");
    pair_close(&p);
    return rc;
}

static void *reload_main(void *arg)
{
    struct reload_case *k = arg;
    char why[256], r2[256];
    int rc = handshake_result(k->scfg, k->ccfg, "localhost", r2, sizeof r2);
    EXPECT(rc == 0, "before any reload: %d (%s)", rc, r2);

    /* a stream made now keeps the old pair through a reload */
    struct pair early;
    bool have_early = pair_open(&early, k->scfg, k->ccfg, "localhost");

    why[0] = '\0';
    rc = coru_tls_config_reload(k->scfg, C.wrong, C.wrong_key, why, sizeof why);
    EXPECT(rc == 0, "reload to wrong.example: %d (%s)", rc, why);
    rc = handshake_result(k->scfg, k->ccfg, "localhost", r2, sizeof r2);
    EXPECT(rc == -EKEYREJECTED, "after the reload to wrong.example: %d (%s), wanted -EKEYREJECTED", rc, r2);
    rc = handshake_result(k->scfg, k->ccfg, "wrong.example", r2, sizeof r2);
    EXPECT(rc == 0, "wrong.example after the reload: %d (%s)", rc, r2);
    if (have_early) {
        pair_handshake(&early);
        EXPECT(early.crc == 0 && early.src == 0, "a stream made before the reload: %d (%s)", early.crc,
               coru_tls_reason(early.c));
        pair_close(&early);
    }

    /* failures change nothing */
    why[0] = '\0';
    rc = coru_tls_config_reload(k->scfg, C.missing, C.srv_key, why, sizeof why);
    EXPECT(rc == -ENOENT, "reload of a missing file: %d", rc);
    EXPECT(why[0] != '\0', "no why for the missing file");
    why[0] = '\0';
    rc = coru_tls_config_reload(k->scfg, C.srv, C.wrong_key, why, sizeof why);
    EXPECT(rc == -EKEYREJECTED, "reload with a key of another certificate: %d (%s)", rc, why);
    EXPECT(why[0] != '\0', "no why for the mismatched key");
    rc = coru_tls_config_reload(k->scfg, C.junk, C.srv_key, why, sizeof why);
    EXPECT(rc == -EBADMSG, "reload of a junk certificate: %d (%s)", rc, why);
    rc = coru_tls_config_reload(k->scfg, C.srv, C.junk, why, sizeof why);
    EXPECT(rc == -EBADMSG, "reload of a junk key: %d (%s)", rc, why);
    rc = handshake_result(k->scfg, k->ccfg, "wrong.example", r2, sizeof r2);
    EXPECT(rc == 0, "the failed reloads changed the pair: %d (%s)", rc, r2);
    rc = handshake_result(k->scfg, k->ccfg, "localhost", r2, sizeof r2);
    EXPECT(rc == -EKEYREJECTED, "the failed reloads changed the pair: %d (%s)", rc, r2);

    /* NULL, NULL: the same files again (now wrong.example's) */
    rc = coru_tls_config_reload(k->scfg, NULL, NULL, why, sizeof why);
    EXPECT(rc == 0, "reload of the same files: %d (%s)", rc, why);
    rc = handshake_result(k->scfg, k->ccfg, "wrong.example", r2, sizeof r2);
    EXPECT(rc == 0, "after reloading the same files: %d (%s)", rc, r2);

    /* and back */
    rc = coru_tls_config_reload(k->scfg, C.srv, C.srv_key, why, sizeof why);
    EXPECT(rc == 0, "reload back: %d (%s)", rc, why);
    rc = handshake_result(k->scfg, k->ccfg, "localhost", r2, sizeof r2);
    EXPECT(rc == 0, "after reloading back: %d (%s)", rc, r2);

    EXPECT(coru_tls_config_reload(k->ccfg, C.srv, C.srv_key, NULL, 0) == -EINVAL, "reload of a client config");
    EXPECT(coru_tls_config_reload(NULL, C.srv, C.srv_key, NULL, 0) == -EINVAL, "reload of NULL");
    return NULL;
}

Test(tls_sessions, reload_serves_later_handshakes_with_the_new_pair_and_failed_reloads_change_nothing, .timeout = 60)
{
    certs_init();
    FOR_EACH_ENGINE(io) {
        struct reload_case k = {server_cfg(C.srv, C.srv_key), client_cfg(), NULL};
        run_checked(io, 2, reload_main, &k);
        coru_tls_config_free(k.scfg);
        coru_tls_config_free(k.ccfg);
    }
}

/* Reloads racing handshakes on the other worker: every handshake gets one
 * of the two (valid) pairs whole. */
struct race {
    coru_tls_config *scfg, *ccfg;
    _Atomic int stop, ok, bad, reloads, first_err;
};

static void *race_reloader(void *arg)
{
    struct race *r = arg;
    for (int i = 0; !atomic_load(&r->stop); i++) {
        int rc = i & 1 ? coru_tls_config_reload(r->scfg, C.srv, C.srv_key, NULL, 0)
                       : coru_tls_config_reload(r->scfg, C.rsa, C.rsa_key, NULL, 0);
        if (rc != 0) many_err(&r->first_err, rc);
        atomic_fetch_add(&r->reloads, 1);
        coru_sleep(MS);
    }
    return NULL;
}

static void *race_client(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < 10; i++) {
        struct pair p;
        if (!pair_connect(&p, r->scfg, r->ccfg, "localhost")) return NULL;
        if (p.crc == 0 && p.src == 0 && send_recv(p.c, p.s, "during reloads")) atomic_fetch_add(&r->ok, 1);
        else {
            atomic_fetch_add(&r->bad, 1);
            many_err(&r->first_err, p.crc ? p.crc : p.src);
        }
        pair_close(&p);
    }
    return NULL;
}

static void *race_main(void *arg)
{
    struct race *r = arg;
    coru_t *rl, *cl[8];
    coru_spawn(&rl, race_reloader, r, NULL);
    for (int i = 0; i < 8; i++) coru_spawn(&cl[i], race_client, r, NULL);
    for (int i = 0; i < 8; i++) coru_join(cl[i], NULL);
    atomic_store(&r->stop, 1);
    coru_join(rl, NULL);
    EXPECT(atomic_load(&r->ok) == 80 && atomic_load(&r->bad) == 0, "ok %d bad %d first error %d",
           atomic_load(&r->ok), atomic_load(&r->bad), atomic_load(&r->first_err));
    EXPECT(atomic_load(&r->reloads) > 1, "only %d reloads", atomic_load(&r->reloads));
    return NULL;
}

Test(tls_sessions, reloads_racing_handshakes_on_another_worker_give_every_handshake_a_whole_pair, .timeout = 120)
{
    certs_init();
    FOR_EACH_ENGINE(io) {
        struct race r = {.scfg = server_cfg(C.srv, C.srv_key), .ccfg = client_cfg()};
        run_checked(io, 2, race_main, &r);
        coru_tls_config_free(r.scfg);
        coru_tls_config_free(r.ccfg);
    }
}

/* ------------------------------------------------------------ 13. configuration errors */

static int srv_err(const char *cert, const char *key, const char *client_ca, int minv, char *why, size_t wl)
{
    struct coru_tls_server_opts o = {.cert_file = cert, .key_file = key, .client_ca_file = client_ca,
                                     .min_version = minv};
    coru_tls_config *cfg = (coru_tls_config *)0x1;
    if (why && wl) why[0] = '\0';
    int rc = coru_tls_server_config(&cfg, &o, why, wl);
    if (rc == 0) coru_tls_config_free(cfg);
    return rc;
}

static int cli_err(const struct coru_tls_client_opts *o, char *why, size_t wl)
{
    coru_tls_config *cfg = NULL;
    if (why && wl) why[0] = '\0';
    int rc = coru_tls_client_config(&cfg, o, why, wl);
    if (rc == 0) coru_tls_config_free(cfg);
    return rc;
}

/* A key under a pass phrase is refused at once: nothing asks the terminal
 * (stdin is a pipe nobody writes here, so a prompt would hang). */
Test(tls_sessions, an_encrypted_key_is_ebadmsg_without_asking_for_a_pass_phrase, .timeout = 30)
{
    certs_init();
    char why[256];
    coru_tls_config *cfg = NULL;
    struct coru_tls_server_opts o = {.cert_file = C.srv, .key_file = C.enc_key};
    int64_t t0 = coru_now();
    cr_assert_eq(coru_tls_server_config(&cfg, &o, why, sizeof why), -EBADMSG, "%s", why);
    cr_assert_null(cfg);
    cr_assert(strstr(why, "pass phrase"), "reason: %s", why);
    cr_assert_lt(coru_now() - t0, 5 * SEC);
    struct coru_tls_client_opts co = {.ca_file = C.ca, .cert_file = C.cli, .key_file = C.enc_key};
    cr_assert_eq(coru_tls_client_config(&cfg, &co, why, sizeof why), -EBADMSG, "%s", why);
}

Test(tls_sessions, configuration_errors_have_their_codes_and_a_reason)
{
    certs_init();
    char why[256];
    cr_assert_eq(srv_err(C.missing, C.srv_key, NULL, 0, why, sizeof why), -ENOENT);
    cr_assert(why[0], "no why for a missing certificate");
    cr_assert_eq(srv_err(C.srv, C.missing, NULL, 0, why, sizeof why), -ENOENT);
    cr_assert(why[0], "no why for a missing key");
    cr_assert_eq(srv_err(C.junk, C.srv_key, NULL, 0, why, sizeof why), -EBADMSG, "%s", why);
    cr_assert(why[0]);
    cr_assert_eq(srv_err(C.srv, C.junk, NULL, 0, why, sizeof why), -EBADMSG, "%s", why);
    /* PEM, but not of the right kind */
    cr_assert_eq(srv_err(C.srv_key, C.srv_key, NULL, 0, why, sizeof why), -EBADMSG, "a key as the certificate: %s",
                 why);
    cr_assert_eq(srv_err(C.srv, C.srv, NULL, 0, why, sizeof why), -EBADMSG, "a certificate as the key: %s", why);
    cr_assert_eq(srv_err(C.srv, C.wrong_key, NULL, 0, why, sizeof why), -EKEYREJECTED, "%s", why);
    cr_assert(why[0]);
    cr_assert_eq(srv_err(C.rsa, C.srv_key, NULL, 0, why, sizeof why), -EKEYREJECTED, "an EC key for RSA: %s", why);
    cr_assert_eq(srv_err(C.srv, C.srv_key, C.missing, 0, why, sizeof why), -ENOENT, "missing client CA: %s", why);
    cr_assert_eq(srv_err(C.srv, C.srv_key, C.junk, 0, why, sizeof why), -EBADMSG, "junk client CA: %s", why);
    cr_assert_eq(srv_err(NULL, C.srv_key, NULL, 0, why, sizeof why), -EINVAL);
    cr_assert_eq(srv_err(C.srv, NULL, NULL, 0, why, sizeof why), -EINVAL);
    cr_assert_eq(srv_err(C.srv, C.srv_key, NULL, 11, why, sizeof why), -EINVAL, "min_version 11");
    cr_assert_eq(srv_err(C.srv, C.srv_key, NULL, 14, why, sizeof why), -EINVAL, "min_version 14");
    cr_assert_eq(srv_err(C.srv, C.srv_key, NULL, 12, why, sizeof why), 0, "min_version 12: %s", why);
    cr_assert_eq(srv_err(C.missing, C.srv_key, NULL, 0, NULL, 0), -ENOENT, "why NULL");

    /* why is cut to why_len, NUL included, and nothing past it is touched */
    char small[16];
    memset(small, 'X', sizeof small);
    cr_assert_eq(srv_err(C.missing, C.srv_key, NULL, 0, small, 8), -ENOENT);
    cr_assert_lt(strnlen(small, 8), 8, "why not NUL-terminated within why_len");
    for (int i = 8; i < 16; i++) cr_assert_eq(small[i], 'X', "why written past why_len at %d", i);

    struct coru_tls_server_opts so = {.cert_file = C.srv, .key_file = C.srv_key};
    cr_assert_eq(coru_tls_server_config(NULL, &so, why, sizeof why), -EINVAL);
    coru_tls_config *cfg = NULL;
    cr_assert_eq(coru_tls_server_config(&cfg, NULL, why, sizeof why), -EINVAL, "server opts NULL");
    struct coru_tls_server_opts bad_alpn = {.cert_file = C.srv, .key_file = C.srv_key};
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    bad_alpn.alpn = longname;
    cr_assert_eq(coru_tls_server_config(&cfg, &bad_alpn, why, sizeof why), -EINVAL, "a 299-byte ALPN name");

    struct coru_tls_client_opts co = {.ca_file = C.missing};
    cr_assert_eq(cli_err(&co, why, sizeof why), -ENOENT, "missing CA file: %s", why);
    cr_assert(why[0]);
    co.ca_file = C.junk;
    cr_assert_eq(cli_err(&co, why, sizeof why), -EBADMSG, "junk CA file: %s", why);
    co = (struct coru_tls_client_opts){.ca_file = C.ca, .cert_file = C.cli, .key_file = C.srv_key};
    cr_assert_eq(cli_err(&co, why, sizeof why), -EKEYREJECTED, "client cert with another key: %s", why);
    co.key_file = C.missing;
    cr_assert_eq(cli_err(&co, why, sizeof why), -ENOENT, "client key missing: %s", why);
    co = (struct coru_tls_client_opts){.ca_file = C.ca, .min_version = 11};
    cr_assert_eq(cli_err(&co, why, sizeof why), -EINVAL, "client min_version 11");
    co = (struct coru_tls_client_opts){.ca_file = C.ca, .alpn = longname};
    cr_assert_eq(cli_err(&co, why, sizeof why), -EINVAL, "client 299-byte ALPN name");
    co = (struct coru_tls_client_opts){.ca_file = C.ca};
    cr_assert_eq(coru_tls_client_config(NULL, &co, why, sizeof why), -EINVAL);
    cr_assert_eq(cli_err(NULL, why, sizeof why), 0, "client opts NULL (system store): %s", why);
    cr_assert_eq(cli_err(&co, NULL, 0), 0);
    coru_tls_config_free(NULL);
}

/* Streams on the wrong kind of configuration, bad arguments, fd ownership. */
struct stream_err {
    coru_tls_config *scfg, *ccfg;
};

static void *stream_errors_main(void *arg)
{
    struct stream_err *k = arg;
    int cfd, sfd;
    coru_tls *t = (coru_tls *)0x1;
    if (!tcp_pair(&cfd, &sfd)) return NULL;
    int rc = coru_tls_client(&t, k->scfg, cfd, "localhost");
    EXPECT(rc == -EINVAL, "a client stream on a server config: %d", rc);
    EXPECT(fd_is_closed(cfd), "the failed coru_tls_client left its fd open");
    rc = coru_tls_server(&t, k->ccfg, sfd);
    EXPECT(rc == -EINVAL, "a server stream on a client config: %d", rc);
    EXPECT(fd_is_closed(sfd), "the failed coru_tls_server left its fd open");

    if (!tcp_pair(&cfd, &sfd)) return NULL;
    EXPECT(coru_tls_client(NULL, k->ccfg, cfd, "localhost") == -EINVAL, "client out NULL");
    EXPECT(fd_is_closed(cfd), "coru_tls_client(NULL, ...) left its fd open");
    EXPECT(coru_tls_server(&t, NULL, sfd) == -EINVAL, "server cfg NULL");
    EXPECT(fd_is_closed(sfd), "coru_tls_server(.., NULL, ..) left its fd open");
    EXPECT(coru_tls_client(&t, k->ccfg, -1, "localhost") == -EINVAL, "client fd -1");
    EXPECT(coru_tls_server(&t, k->scfg, -1) == -EINVAL, "server fd -1");
    EXPECT(coru_tls_client(&t, NULL, -1, "localhost") == -EINVAL, "client cfg NULL");

    /* a server stream offers no session and takes none */
    struct pair p;
    if (pair_open(&p, k->scfg, k->ccfg, "localhost")) {
        EXPECT(coru_tls_get_session(p.s) == NULL, "server get_session");
        pair_close(&p);
    }
    EXPECT(coru_tls_close(NULL) == -EINVAL, "coru_tls_close(NULL)");
    EXPECT(coru_tls_config_reload(NULL, NULL, NULL, NULL, 0) == -EINVAL, "reload NULL");
    return NULL;
}

Test(tls_sessions, streams_refuse_the_wrong_config_kind_and_bad_arguments_and_own_their_fd, .timeout = 60)
{
    certs_init();
    struct stream_err k = {server_cfg(C.srv, C.srv_key), client_cfg()};
    both_engines(stream_errors_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}
