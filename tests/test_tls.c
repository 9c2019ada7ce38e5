/* test_tls: TLS streams (src/tls, include/coru/tls.h), both engines, two
 * workers, over loopback TCP (helpers and certificates: tls_helpers.h).
 * Covered here: handshake, echo and close_notify both ways (EC and RSA
 * keys, explicit or run by the first read/write, min_version 13); configs
 * freed before their streams; interop with openssl s_server / s_client
 * over TLS 1.2 (and TLS 1.2 resumption) and a TLS 1.3 KeyUpdate s_client
 * asks an answer to; every verification failure with its code and
 * reason, on both sides; no host; insecure_skip_verify; IP literals and
 * name case; client certificates; ALPN; kTLS (skipped without the tls
 * module). The I/O edges are in test_tls_io.c, sessions, reload, errors
 * and scale in test_tls_sessions.c. tests/meson.build runs all three
 * again with CORU_TLS_SOCKET_BIO=1 (the kTLS streams' socket path). */
#include "tls_helpers.h"

/* ------------------------------------------------------------ 1. handshake, echo, close */

struct hs_case {
    coru_tls_config *scfg, *ccfg;
    const char *host;
    bool implicit; /* no coru_tls_handshake: the first write / read runs it */
};

static void *handshake_echo_main(void *arg)
{
    struct hs_case *k = arg;
    struct pair p;
    if (!pair_open(&p, k->scfg, k->ccfg, k->host)) return NULL;
    if (!k->implicit) {
        pair_handshake(&p);
        if (!EXPECT(p.crc == 0 && p.src == 0, "handshake: client %d (%s), server %d (%s)", p.crc,
                    coru_tls_reason(p.c), p.src, coru_tls_reason(p.s)))
            goto out;
        expect_params(p.c, "client", "TLSv1.3", "http/1.1");
        expect_params(p.s, "server", "TLSv1.3", "http/1.1");
        EXPECT(coru_tls_handshake(p.c, coru_now() + SEC) == 0, "a second handshake is a no-op");
        EXPECT(strcmp(coru_tls_cipher(p.c), coru_tls_cipher(p.s)) == 0, "ciphers %s / %s", coru_tls_cipher(p.c),
               coru_tls_cipher(p.s));
    }
    char b[4];
    if (!k->implicit) EXPECT(coru_tls_read(p.c, b, 0, coru_now() + SEC) == 0, "a read of 0 bytes returns 0");

    struct echo e = {.t = p.s};
    coru_t *h;
    if (!EXPECT(coru_spawn(&h, echo_co, &e, NULL) == 0, "spawn")) goto out;
    static const size_t sizes[] = {1, 5, 100, 16384, 16385, 40000, 65536};
    size_t total = 0;
    unsigned char *out = malloc(65536), *in = malloc(65536);
    for (size_t i = 0; out && in && i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        for (size_t j = 0; j < n; j++) out[j] = (unsigned char)(j * 7 + i * 13 + 1);
        ssize_t w = coru_tls_write(p.c, out, n, coru_now() + 10 * SEC);
        if (!EXPECT(w == (ssize_t)n, "write %zu: %zd (%s)", n, w, coru_tls_reason(p.c))) break;
        memset(in, 0, n);
        ssize_t r = tls_read_full(p.c, in, n, coru_now() + 10 * SEC);
        if (!EXPECT(r == (ssize_t)n, "echo of %zu: %zd (%s)", n, r, coru_tls_reason(p.c))) break;
        if (!EXPECT(memcmp(in, out, n) == 0, "echo of %zu bytes differs", n)) break;
        total += n;
    }
    free(out);
    free(in);
    if (k->implicit) {
        expect_params(p.c, "client", "TLSv1.3", "http/1.1");
        expect_params(p.s, "server", "TLSv1.3", "http/1.1");
    }
    EXPECT(coru_tls_shutdown(p.c, coru_now() + 10 * SEC) == 0, "client shutdown (%s)", coru_tls_reason(p.c));
    EXPECT(coru_tls_shutdown(p.c, coru_now() + 10 * SEC) == 0, "a second shutdown returns 0");
    ssize_t r = coru_tls_read(p.c, b, sizeof b, coru_now() + 10 * SEC);
    EXPECT(r == 0, "client read after the server's close_notify: %zd (%s)", r, coru_tls_reason(p.c));
    r = coru_tls_read(p.c, b, sizeof b, coru_now() + 10 * SEC);
    EXPECT(r == 0, "and again: %zd", r);
    coru_join(h, NULL);
    EXPECT(e.last == 0, "server read after close_notify: %zd (%s)", e.last, coru_tls_reason(p.s));
    EXPECT(e.shut == 0, "server shutdown: %d", e.shut);
    EXPECT(e.bytes == (long)total, "server echoed %ld of %zu", e.bytes, total);
out:
    pair_close(&p);
    return NULL;
}

Test(tls, handshake_echo_and_close_notify_both_ways_ec_p256, .timeout = 60)
{
    certs_init();
    struct hs_case k = {server_cfg(C.srv, C.srv_key), client_cfg(), "localhost", false};
    both_engines(handshake_echo_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

Test(tls, handshake_echo_and_close_notify_with_an_rsa_2048_key, .timeout = 60)
{
    certs_init();
    struct hs_case k = {server_cfg(C.rsa, C.rsa_key), client_cfg(), "localhost", false};
    both_engines(handshake_echo_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

Test(tls, the_first_write_and_read_run_the_handshake, .timeout = 60)
{
    certs_init();
    struct hs_case k = {server_cfg(C.srv, C.srv_key), client_cfg(), "localhost", true};
    both_engines(handshake_echo_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

Test(tls, min_version_13_on_both_sides_negotiates_tls13, .timeout = 60)
{
    certs_init();
    struct coru_tls_server_opts so = {.cert_file = C.srv, .key_file = C.srv_key, .min_version = 13};
    struct coru_tls_client_opts co = {.ca_file = C.ca, .min_version = 13};
    struct hs_case k = {server_cfg_opts(&so), client_cfg_opts(&co), "localhost", false};
    both_engines(handshake_echo_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

/* The configurations' last references go with the streams. */
struct early_free {
    coru_tls_config *scfg, *ccfg;
};

static void *early_free_main(void *arg)
{
    (void)arg;
    struct coru_tls_server_opts so = {.cert_file = C.srv, .key_file = C.srv_key};
    struct coru_tls_client_opts co = {.ca_file = C.ca};
    coru_tls_config *scfg = NULL, *ccfg = NULL;
    if (!EXPECT(coru_tls_server_config(&scfg, &so, NULL, 0) == 0, "server config")) return NULL;
    if (!EXPECT(coru_tls_client_config(&ccfg, &co, NULL, 0) == 0, "client config")) return NULL;
    struct pair p;
    bool ok = pair_open(&p, scfg, ccfg, "localhost");
    coru_tls_config_free(scfg); /* the streams hold them now */
    coru_tls_config_free(ccfg);
    if (!ok) return NULL;
    pair_handshake(&p);
    if (EXPECT(p.crc == 0 && p.src == 0, "handshake %d %d", p.crc, p.src)) {
        send_recv(p.c, p.s, "after the configs were freed");
        send_recv(p.s, p.c, "and back");
        pair_clean_end(&p);
    }
    pair_close(&p);
    return NULL;
}

Test(tls, a_freed_config_lives_until_its_last_stream_is_closed, .timeout = 60)
{
    certs_init();
    both_engines(early_free_main, NULL);
}

/* ------------------------------------------------------------ TLS 1.2, against openssl's own tools */

static pid_t spawn_openssl(char *const argv[], const char *in, const char *out)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, in ? in : "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, "openssl", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawnp openssl: %s", strerror(rc));
    return pid;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return strdup("");
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* The port openssl s_server printed ("ACCEPT 127.0.0.1:port"). */
static int s_server_port(const char *out, pid_t pid)
{
    for (int i = 0; i < 1000; i++) {
        char *s = slurp(out);
        char *a = strstr(s, "ACCEPT ");
        int port = 0;
        if (a && strchr(a, '\n')) {
            char *colon = strrchr(strtok(a, "\n"), ':');
            if (colon) port = atoi(colon + 1);
        }
        free(s);
        if (port > 0) return port;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) cr_assert_fail("openssl s_server exited: see %s", out);
        usleep(10000);
    }
    cr_assert_fail("openssl s_server printed no port: see %s", out);
    return -1;
}

static void reap(pid_t pid)
{
    int st;
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid) return;
        usleep(10000);
    }
    kill(pid, SIGTERM);
    waitpid(pid, &st, 0);
}

struct tls12 {
    uint16_t port;
    coru_tls_config *ccfg, *ccfg13;
};

/* GET / from s_server -www: the status page, then close_notify. */
static bool www_get(coru_tls *t, const char *what)
{
    const char req[] = "GET / HTTP/1.0\r\n\r\n";
    ssize_t w = coru_tls_write(t, req, sizeof req - 1, coru_now() + 10 * SEC);
    if (!EXPECT(w == (ssize_t)sizeof req - 1, "%s: write %zd (%s)", what, w, coru_tls_reason(t))) return false;
    size_t cap = 1 << 20, have = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while ((r = coru_tls_read(t, buf + have, cap - 1 - have, coru_now() + 10 * SEC)) > 0) have += (size_t)r;
    buf[have] = '\0';
    bool ok = EXPECT(r == 0, "%s: the page ended with %zd (%s), not close_notify", what, r, coru_tls_reason(t)) &&
              EXPECT(strncmp(buf, "HTTP/1.0 200 ok", 15) == 0, "%s: page '%.40s'", what, buf);
    free(buf);
    return ok;
}

static void *tls12_client_main(void *arg)
{
    struct tls12 *k = arg;
    coru_tls_session *sess = NULL;
    for (int round = 0; round < 2; round++) {
        int fd = coru_tcp_connect("127.0.0.1", k->port, coru_now() + 10 * SEC);
        if (!EXPECT(fd >= 0, "connect s_server: %d", fd)) return NULL;
        coru_tls *t;
        if (!EXPECT(coru_tls_client(&t, k->ccfg, fd, "localhost") == 0, "client")) return NULL;
        if (sess) EXPECT(coru_tls_set_session(t, sess) == 0, "set_session");
        int rc = coru_tls_handshake(t, coru_now() + 10 * SEC);
        if (EXPECT(rc == 0, "round %d: handshake with s_server -tls1_2: %d (%s)", round, rc, coru_tls_reason(t))) {
            EXPECT(strcmp(coru_tls_version(t), "TLSv1.2") == 0, "version %s", coru_tls_version(t));
            EXPECT(strcmp(coru_tls_alpn(t), "") == 0, "alpn '%s' from a server without ALPN", coru_tls_alpn(t));
            EXPECT(coru_tls_cipher(t)[0] != '\0', "no cipher");
            EXPECT(coru_tls_resumed(t) == round, "round %d: resumed %d", round, coru_tls_resumed(t));
            if (round == 0) {
                /* TLS 1.2: the session exists right after the handshake */
                sess = coru_tls_get_session(t);
                EXPECT(sess != NULL, "no TLS 1.2 session after the handshake");
            }
            /* the clean end: OpenSSL drops the session of a stream freed
             * without close_notify sent (ssl_clear_bad_session) */
            if (www_get(t, round ? "resumed" : "full"))
                EXPECT(coru_tls_shutdown(t, coru_now() + 5 * SEC) == 0, "shutdown (%s)", coru_tls_reason(t));
        }
        EXPECT(coru_tls_close(t) == 0, "close");
        if (!sess) break;
    }
    coru_tls_session_free(sess);

    /* A client that wants TLS 1.3 at least, against a TLS 1.2 server. */
    int fd = coru_tcp_connect("127.0.0.1", k->port, coru_now() + 10 * SEC);
    if (!EXPECT(fd >= 0, "connect s_server: %d", fd)) return NULL;
    coru_tls *t;
    if (!EXPECT(coru_tls_client(&t, k->ccfg13, fd, "localhost") == 0, "client")) return NULL;
    int rc = coru_tls_handshake(t, coru_now() + 10 * SEC);
    EXPECT(rc == -EPROTO, "min_version 13 against a TLS 1.2 server: %d (%s), wanted -EPROTO", rc,
           coru_tls_reason(t));
    EXPECT(coru_tls_reason(t)[0] != '\0', "no reason");
    coru_tls_close(t);
    return NULL;
}

Test(tls, tls12_client_against_openssl_s_server_resumes_and_min_version_13_refuses, .timeout = 60)
{
    certs_init();
    struct coru_tls_client_opts co13 = {.ca_file = C.ca, .min_version = 13};
    struct tls12 k = {.ccfg = client_cfg(), .ccfg13 = client_cfg_opts(&co13)};
    FOR_EACH_ENGINE(io) {
        char out[300];
        snprintf(out, sizeof out, "%s/s_server-%d.out", C.dir, (int)getpid());
        char *argv[] = {"openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", C.srv, "-key", C.srv_key,
                        "-tls1_2", "-www", "-naccept", "3", NULL};
        pid_t pid = spawn_openssl(argv, NULL, out);
        k.port = (uint16_t)s_server_port(out, pid);
        run_checked(io, 2, tls12_client_main, &k);
        kill(pid, SIGTERM);
        reap(pid);
        unlink(out);
    }
    coru_tls_config_free(k.ccfg);
    coru_tls_config_free(k.ccfg13);
}

struct s_client_case {
    int lfd;
    coru_tls_config *scfg;
    char got[256];
    ssize_t end;
};

static void *s_client_server_main(void *arg)
{
    struct s_client_case *k = arg;
    int fd = coru_tcp_accept_dl(k->lfd, NULL, NULL, coru_now() + 10 * SEC);
    if (!EXPECT(fd >= 0, "accept s_client: %d", fd)) return NULL;
    coru_tls *t;
    if (!EXPECT(coru_tls_server(&t, k->scfg, fd) == 0, "server")) return NULL;
    int rc = coru_tls_handshake(t, coru_now() + 10 * SEC);
    if (EXPECT(rc == 0, "handshake with s_client -tls1_2: %d (%s)", rc, coru_tls_reason(t))) {
        EXPECT(strcmp(coru_tls_version(t), "TLSv1.2") == 0, "version %s", coru_tls_version(t));
        EXPECT(strcmp(coru_tls_alpn(t), "http/1.1") == 0, "alpn '%s'", coru_tls_alpn(t));
        ssize_t r = tls_read_full(t, k->got, sizeof k->got - 1, coru_now() + 10 * SEC);
        k->end = r;
        if (r >= 0) k->got[r] = '\0';
    }
    coru_tls_close(t);
    return NULL;
}

Test(tls, tls12_openssl_s_client_against_a_coru_server, .timeout = 60)
{
    certs_init();
    struct s_client_case k = {.scfg = server_cfg(C.srv, C.srv_key)};
    char in[300], out[300];
    snprintf(in, sizeof in, "%s/s_client-%d.in", C.dir, (int)getpid());
    snprintf(out, sizeof out, "%s/s_client-%d.out", C.dir, (int)getpid());
    FILE *f = fopen(in, "w");
    cr_assert_not_null(f);
    fputs("hello from s_client\n", f);
    fclose(f);
    FOR_EACH_ENGINE(io) {
        /* the listener first (outside the run), so that s_client can connect */
        k.lfd = coru_tcp_listen("127.0.0.1", 0, 16, 0);
        cr_assert_geq(k.lfd, 0);
        char hostport[64];
        snprintf(hostport, sizeof hostport, "127.0.0.1:%d", coru_local_port(k.lfd));
        char *argv[] = {"openssl", "s_client", "-connect", hostport, "-tls1_2", "-CAfile", C.ca, "-servername",
                        "localhost", "-verify_hostname", "localhost", "-verify_return_error", "-alpn", "http/1.1",
                        "-no_ign_eof", NULL};
        pid_t pid = spawn_openssl(argv, in, out);
        memset(k.got, 0, sizeof k.got);
        k.end = -1;
        run_checked(io, 2, s_client_server_main, &k);
        coru_close(k.lfd);
        reap(pid);
        char *o = slurp(out);
        cr_assert(strstr(o, "Verify return code: 0 (ok)"), "%s: s_client did not verify us:\n%s", ename(io), o);
        free(o);
        /* s_client sends the line, then close_notify at the end of its input */
        cr_assert_eq(k.end, (ssize_t)strlen("hello from s_client\n"), "%s: read %zd", ename(io), k.end);
        cr_assert_str_eq(k.got, "hello from s_client\n");
    }
    unlink(in);
    unlink(out);
    coru_tls_config_free(k.scfg);
}

/* A TLS 1.3 KeyUpdate from the peer (openssl s_client's "K" command asks
 * for one back): the read that meets it has to write our own KeyUpdate,
 * and data flows under the new keys both ways. s_client's input is a pipe
 * the coroutine writes to, one line at a time. */
struct keyupdate {
    int lfd, pipe_w;
    coru_tls_config *scfg;
    const char *out; /* s_client's output */
};

static bool out_has(const char *path, const char *what)
{
    char *s = slurp(path);
    bool yes = strstr(s, what) != NULL;
    free(s);
    return yes;
}

static bool tls_read_line(coru_tls *t, const char *want)
{
    char b[128];
    size_t n = strlen(want);
    ssize_t r = tls_read_full(t, b, n, coru_now() + 10 * SEC);
    return EXPECT(r == (ssize_t)n && memcmp(b, want, n) == 0, "read '%.*s': %zd (%s)", (int)(n - 1), want, r,
                  coru_tls_reason(t));
}

static void *keyupdate_main(void *arg)
{
    struct keyupdate *k = arg;
    int fd = coru_tcp_accept_dl(k->lfd, NULL, NULL, coru_now() + 10 * SEC);
    if (!EXPECT(fd >= 0, "accept s_client: %d", fd)) return NULL;
    coru_tls *t;
    if (!EXPECT(coru_tls_server(&t, k->scfg, fd) == 0, "server")) return NULL;
    int rc = coru_tls_handshake(t, coru_now() + 10 * SEC);
    if (EXPECT(rc == 0, "handshake with s_client: %d (%s)", rc, coru_tls_reason(t)) &&
        EXPECT(strcmp(coru_tls_version(t), "TLSv1.3") == 0, "version %s", coru_tls_version(t))) {
        const char l1[] = "before\n", ku[] = "K\n", l2[] = "after\n";
        coru_write_all(k->pipe_w, l1, sizeof l1 - 1, coru_now() + SEC);
        if (tls_read_line(t, "before\n")) {
            coru_write_all(k->pipe_w, ku, sizeof ku - 1, coru_now() + SEC);
            /* s_client drops the rest of an input read that held a command:
             * the next line only once it has acted on this one */
            for (int i = 0; i < 500 && !out_has(k->out, "KEYUPDATE"); i++) coru_sleep(10 * MS);
            coru_write_all(k->pipe_w, l2, sizeof l2 - 1, coru_now() + SEC);
            if (tls_read_line(t, "after\n")) {
                const char reply[] = "reply under new keys\n";
                EXPECT(coru_tls_write(t, reply, sizeof reply - 1, coru_now() + 5 * SEC) == (ssize_t)sizeof reply - 1,
                       "write (%s)", coru_tls_reason(t));
                int i = 0;
                while (i++ < 500 && !out_has(k->out, "reply under new keys")) coru_sleep(10 * MS);
                EXPECT(out_has(k->out, "reply under new keys"), "s_client never printed our reply");
            }
        }
    }
    coru_close(k->pipe_w); /* s_client's input ends: it sends close_notify */
    k->pipe_w = -1;
    if (!t) return NULL;
    char b[16];
    ssize_t r = coru_tls_read(t, b, sizeof b, coru_now() + 10 * SEC);
    EXPECT(r == 0, "s_client's end: %zd (%s)", r, coru_tls_reason(t));
    coru_tls_close(t);
    return NULL;
}

Test(tls, a_tls13_key_update_from_openssl_s_client_is_answered_and_data_flows_on, .timeout = 60)
{
    certs_init();
    struct keyupdate k = {.scfg = server_cfg(C.srv, C.srv_key)};
    char out[300];
    snprintf(out, sizeof out, "%s/s_client-ku-%d.out", C.dir, (int)getpid());
    k.out = out;
    FOR_EACH_ENGINE(io) {
        int pfd[2];
        cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
        cr_assert_eq(fcntl(pfd[1], F_SETFL, O_NONBLOCK), 0);
        k.pipe_w = pfd[1];
        k.lfd = coru_tcp_listen("127.0.0.1", 0, 16, 0);
        cr_assert_geq(k.lfd, 0);
        char hostport[64];
        snprintf(hostport, sizeof hostport, "127.0.0.1:%d", coru_local_port(k.lfd));
        char *argv[] = {"openssl", "s_client", "-connect", hostport, "-tls1_3", "-CAfile", C.ca, "-servername",
                        "localhost", "-verify_return_error", "-no_ign_eof", NULL};
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, pfd[0], 0);
        posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        posix_spawn_file_actions_addclose(&fa, pfd[1]);
        pid_t pid;
        int src = posix_spawnp(&pid, "openssl", &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        cr_assert_eq(src, 0, "posix_spawnp: %s", strerror(src));
        close(pfd[0]);
        run_checked(io, 2, keyupdate_main, &k);
        if (k.pipe_w >= 0) coru_close(k.pipe_w);
        coru_close(k.lfd);
        reap(pid);
        char *o = slurp(out);
        cr_assert(strstr(o, "KEYUPDATE"), "%s: s_client sent no KeyUpdate:\n%s", ename(io), o);
        cr_assert(!strstr(o, ":error:"), "%s: s_client saw an error:\n%s", ename(io), o);
        free(o);
    }
    unlink(out);
    coru_tls_config_free(k.scfg);
}

/* ------------------------------------------------------------ 2. verification failures */

struct vcase {
    const char *cert, *key, *host;
    int want;           /* the client's handshake */
    const char *reason; /* a substring of the client's reason */
};

struct vfail {
    struct vcase *cases;
    size_t n;
    coru_tls_config *ccfg;
    coru_tls_config **scfg;
};

static void *verify_fail_main(void *arg)
{
    struct vfail *k = arg;
    for (size_t i = 0; i < k->n; i++) {
        struct vcase *v = &k->cases[i];
        struct pair p;
        if (!pair_connect(&p, k->scfg[i], k->ccfg, v->host)) continue;
        const char *cr = coru_tls_reason(p.c), *sr = coru_tls_reason(p.s);
        EXPECT(p.crc == v->want, "%s as %s: client got %d (%s), wanted %d", v->cert, v->host, p.crc, cr, v->want);
        EXPECT(has(cr, v->reason), "%s as %s: client reason '%s' lacks '%s'", v->cert, v->host, cr, v->reason);
        /* the server gets the client's alert */
        EXPECT(p.src == -EPROTO, "%s as %s: server got %d (%s), wanted -EPROTO", v->cert, v->host, p.src, sr);
        EXPECT(has(sr, "alert"), "%s as %s: server reason '%s' mentions no alert", v->cert, v->host, sr);
        pair_close(&p);
    }
    return NULL;
}

Test(tls, verification_failures_each_have_their_code_and_reason_on_both_sides, .timeout = 60)
{
    certs_init();
    struct vcase cases[] = {
        {C.exp, C.exp_key, "localhost", -EKEYEXPIRED, "expired"},
        {C.future, C.future_key, "localhost", -EKEYEXPIRED, "not yet valid"},
        {C.wrong, C.wrong_key, "localhost", -EKEYREJECTED, "mismatch"},
        {C.srv, C.srv_key, "wrong.example", -EKEYREJECTED, "mismatch"},
        {C.srv, C.srv_key, "127.0.0.2", -EKEYREJECTED, "mismatch"},  /* the SAN holds 127.0.0.1 only */
        {C.wrong, C.wrong_key, "127.0.0.1", -EKEYREJECTED, "mismatch"}, /* no IP SAN */
        {C.cli, C.cli_key, "localhost", -EKEYREJECTED, "purpose"},      /* clientAuth only */
        {C.self, C.self_key, "localhost", -ENOKEY, "self"},
        {C.other, C.other_key, "localhost", -ENOKEY, "issuer"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    coru_tls_config *scfg[sizeof cases / sizeof cases[0]];
    for (size_t i = 0; i < n; i++) scfg[i] = server_cfg(cases[i].cert, cases[i].key);
    struct vfail k = {cases, n, client_cfg(), scfg};
    both_engines(verify_fail_main, &k);
    for (size_t i = 0; i < n; i++) coru_tls_config_free(scfg[i]);
    coru_tls_config_free(k.ccfg);
}

/* host NULL or "": no name to check a certificate against, so only an
 * insecure client may have one (tls.h: -EINVAL, fd closed). */
struct nullhost {
    coru_tls_config *scfg, *ccfg, *insecure;
};

static void *null_host_main(void *arg)
{
    struct nullhost *k = arg;
    static const char *const hosts[] = {NULL, ""};
    for (int i = 0; i < 2; i++) {
        const char *hn = hosts[i] ? "\"\"" : "NULL";
        int cfd, sfd;
        if (!tcp_pair(&cfd, &sfd)) return NULL;
        coru_tls *t = (coru_tls *)0x1;
        int rc = coru_tls_client(&t, k->ccfg, cfd, hosts[i]);
        EXPECT(rc == -EINVAL, "host %s while verifying: %d, wanted -EINVAL", hn, rc);
        EXPECT(fd_is_closed(cfd), "host %s: the refused stream left its fd open", hn);
        if (rc == 0) coru_tls_close(t);
        coru_close(sfd);

        struct pair p;
        if (pair_connect(&p, k->scfg, k->insecure, hosts[i])) {
            EXPECT(p.crc == 0 && p.src == 0, "host %s, insecure: %d %d (%s)", hn, p.crc, p.src, coru_tls_reason(p.c));
            if (p.crc == 0 && p.src == 0) send_recv(p.c, p.s, "no name");
            pair_close(&p);
        }
    }
    return NULL;
}

Test(tls, no_host_is_einval_unless_insecure_and_then_connects, .timeout = 60)
{
    certs_init();
    struct coru_tls_client_opts io = {.insecure_skip_verify = 1};
    struct nullhost k = {server_cfg(C.srv, C.srv_key), client_cfg(), client_cfg_opts(&io)};
    both_engines(null_host_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
    coru_tls_config_free(k.insecure);
}

/* Where the trusted CAs come from: ca_dir (a hashed directory), and the
 * system store, which honours SSL_CERT_FILE. */
struct ca_source {
    coru_tls_config *scfg, *by_dir, *system_before, *system_env;
};

static void *ca_source_main(void *arg)
{
    struct ca_source *k = arg;
    struct pair p;
    if (pair_connect(&p, k->scfg, k->by_dir, "localhost")) {
        EXPECT(p.crc == 0 && p.src == 0, "ca_dir: %d (%s)", p.crc, coru_tls_reason(p.c));
        pair_close(&p);
    }
    if (pair_connect(&p, k->scfg, k->system_before, "localhost")) {
        EXPECT(p.crc == -ENOKEY, "the system store trusting our test CA: %d (%s), wanted -ENOKEY", p.crc,
               coru_tls_reason(p.c));
        pair_close(&p);
    }
    if (pair_connect(&p, k->scfg, k->system_env, "localhost")) {
        EXPECT(p.crc == 0 && p.src == 0, "SSL_CERT_FILE: %d (%s)", p.crc, coru_tls_reason(p.c));
        pair_close(&p);
    }
    return NULL;
}

Test(tls, trusted_cas_come_from_ca_dir_or_the_system_store_which_honours_ssl_cert_file, .timeout = 60)
{
    certs_init();
    unsetenv("SSL_CERT_FILE");
    unsetenv("SSL_CERT_DIR");
    struct coru_tls_client_opts dir = {.ca_dir = C.cadir};
    struct ca_source k = {server_cfg(C.srv, C.srv_key), client_cfg_opts(&dir), client_cfg_opts(NULL), NULL};
    cr_assert_eq(setenv("SSL_CERT_FILE", C.ca, 1), 0); /* this test's process only */
    k.system_env = client_cfg_opts(NULL);
    both_engines(ca_source_main, &k);
    struct coru_tls_client_opts nodir = {.ca_dir = C.missing};
    coru_tls_config *cfg = NULL;
    char why[256];
    cr_assert_eq(coru_tls_client_config(&cfg, &nodir, why, sizeof why), -ENOENT, "a missing ca_dir: %s", why);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.by_dir);
    coru_tls_config_free(k.system_before);
    coru_tls_config_free(k.system_env);
}

/* ------------------------------------------------------------ 3. insecure_skip_verify */

static void *insecure_main(void *arg)
{
    struct vfail *k = arg;
    for (size_t i = 0; i < k->n; i++) {
        struct pair p;
        if (!pair_connect(&p, k->scfg[i], k->ccfg, k->cases[i].host)) continue;
        if (EXPECT(p.crc == 0 && p.src == 0, "insecure, %s as %s: client %d (%s) server %d (%s)", k->cases[i].cert,
                   k->cases[i].host, p.crc, coru_tls_reason(p.c), p.src, coru_tls_reason(p.s))) {
            send_recv(p.c, p.s, "accepted anyway");
            pair_clean_end(&p);
        }
        pair_close(&p);
    }
    return NULL;
}

Test(tls, insecure_skip_verify_accepts_wrong_names_self_signed_expired_and_unknown_ca, .timeout = 60)
{
    certs_init();
    struct vcase cases[] = {
        {C.wrong, C.wrong_key, "localhost", 0, NULL},
        {C.self, C.self_key, "localhost", 0, NULL},
        {C.exp, C.exp_key, "localhost", 0, NULL},
        {C.other, C.other_key, "somewhere.else", 0, NULL},
    };
    size_t n = sizeof cases / sizeof cases[0];
    coru_tls_config *scfg[sizeof cases / sizeof cases[0]];
    for (size_t i = 0; i < n; i++) scfg[i] = server_cfg(cases[i].cert, cases[i].key);
    struct coru_tls_client_opts o = {.insecure_skip_verify = 1}; /* no CA at all */
    struct vfail k = {cases, n, client_cfg_opts(&o), scfg};
    both_engines(insecure_main, &k);
    for (size_t i = 0; i < n; i++) coru_tls_config_free(scfg[i]);
    coru_tls_config_free(k.ccfg);
}

/* ------------------------------------------------------------ 4. IP literal */

static void *ip_literal_main(void *arg)
{
    struct hs_case *k = arg;
    /* an address against the IP SAN; a name in another case (DNS names
     * compare case-insensitively) */
    static const char *const hosts[] = {"127.0.0.1", "LocalHost"};
    for (int i = 0; i < 2; i++) {
        struct pair p;
        if (!pair_connect(&p, k->scfg, k->ccfg, hosts[i])) return NULL;
        if (EXPECT(p.crc == 0 && p.src == 0, "%s against the localhost certificate: client %d (%s) server %d (%s)",
                   hosts[i], p.crc, coru_tls_reason(p.c), p.src, coru_tls_reason(p.s))) {
            send_recv(p.c, p.s, "by address");
            pair_clean_end(&p);
        }
        pair_close(&p);
    }
    return NULL;
}

Test(tls, an_ip_literal_host_is_checked_against_the_ip_san_and_names_ignore_case, .timeout = 60)
{
    certs_init();
    struct hs_case k = {server_cfg(C.srv, C.srv_key), client_cfg(), NULL, false};
    both_engines(ip_literal_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

/* ------------------------------------------------------------ 14. client certificates */

struct ccert_case {
    coru_tls_config *scfg, *anon, *good, *other, *srvcert;
};

static void *client_cert_main(void *arg)
{
    struct ccert_case *k = arg;
    struct pair p;
    /* a certificate from the CA: both ends succeed */
    if (pair_connect(&p, k->scfg, k->good, "localhost")) {
        if (EXPECT(p.crc == 0 && p.src == 0, "a good client certificate: client %d (%s) server %d (%s)", p.crc,
                   coru_tls_reason(p.c), p.src, coru_tls_reason(p.s))) {
            send_recv(p.c, p.s, "with my certificate");
            send_recv(p.s, p.c, "welcome");
            pair_clean_end(&p);
        }
        pair_close(&p);
    }
    struct {
        coru_tls_config *cfg;
        int want_server;
        const char *what;
    } bad[] = {
        {k->anon, -ENOKEY, "no client certificate"},
        {k->other, -ENOKEY, "a client certificate of another CA"},
        {k->srvcert, -EKEYREJECTED, "a serverAuth-only certificate as a client's"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!pair_connect(&p, k->scfg, bad[i].cfg, "localhost")) continue;
        EXPECT(p.src == bad[i].want_server, "%s: server got %d (%s), wanted %d", bad[i].what, p.src,
               coru_tls_reason(p.s), bad[i].want_server);
        EXPECT(coru_tls_reason(p.s)[0] != '\0', "%s: no server reason", bad[i].what);
        /* TLS 1.3: the client's handshake ends before the server judges
         * it; the alert comes to its first read */
        int crc = p.crc;
        if (crc == 0) {
            char b[8];
            crc = (int)coru_tls_read(p.c, b, sizeof b, coru_now() + 5 * SEC);
        }
        EXPECT(crc == -EPROTO, "%s: the client got %d (%s), wanted -EPROTO (at the handshake or first read)",
               bad[i].what, crc, coru_tls_reason(p.c));
        EXPECT(has(coru_tls_reason(p.c), "alert"), "%s: client reason '%s'", bad[i].what, coru_tls_reason(p.c));
        pair_close(&p);
    }
    return NULL;
}

Test(tls, client_certificates_are_required_and_verified_when_client_ca_file_is_set, .timeout = 60)
{
    certs_init();
    struct coru_tls_server_opts so = {.cert_file = C.srv, .key_file = C.srv_key, .client_ca_file = C.ca};
    struct coru_tls_client_opts good = {.ca_file = C.ca, .cert_file = C.cli, .key_file = C.cli_key};
    struct coru_tls_client_opts other = {.ca_file = C.ca, .cert_file = C.cli_other, .key_file = C.cli_other_key};
    struct coru_tls_client_opts srvc = {.ca_file = C.ca, .cert_file = C.srv, .key_file = C.srv_key};
    struct ccert_case k = {server_cfg_opts(&so), client_cfg(), client_cfg_opts(&good), client_cfg_opts(&other),
                           client_cfg_opts(&srvc)};
    both_engines(client_cert_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.anon);
    coru_tls_config_free(k.good);
    coru_tls_config_free(k.other);
    coru_tls_config_free(k.srvcert);
}

/* A client certificate is only sent when asked: a server without
 * client_ca_file serves a client that has one. */
static void *unasked_cert_main(void *arg)
{
    struct ccert_case *k = arg;
    struct pair p;
    if (pair_connect(&p, k->scfg, k->good, "localhost")) {
        EXPECT(p.crc == 0 && p.src == 0, "%d %d", p.crc, p.src);
        if (p.crc == 0 && p.src == 0) send_recv(p.c, p.s, "unasked");
        pair_close(&p);
    }
    return NULL;
}

Test(tls, a_client_certificate_nobody_asked_for_is_harmless, .timeout = 60)
{
    certs_init();
    struct coru_tls_client_opts good = {.ca_file = C.ca, .cert_file = C.cli, .key_file = C.cli_key};
    struct ccert_case k = {server_cfg(C.srv, C.srv_key), NULL, client_cfg_opts(&good), NULL, NULL};
    both_engines(unasked_cert_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.good);
}

/* ------------------------------------------------------------ 15. ALPN */

struct alpn_case {
    const char *server, *client; /* NULL: the default ("http/1.1") */
    const char *want;            /* the protocol both see; NULL: the handshake fails */
};

struct alpn_run {
    struct alpn_case *cases;
    size_t n;
    coru_tls_config **scfg, **ccfg;
};

static void *alpn_main(void *arg)
{
    struct alpn_run *k = arg;
    for (size_t i = 0; i < k->n; i++) {
        struct alpn_case *a = &k->cases[i];
        struct pair p;
        if (!pair_connect(&p, k->scfg[i], k->ccfg[i], "localhost")) continue;
        const char *sv = a->server ? a->server : "(default)", *cl = a->client ? a->client : "(default)";
        if (a->want) {
            if (EXPECT(p.crc == 0 && p.src == 0, "server '%s' client '%s': %d (%s) %d (%s)", sv, cl, p.crc,
                       coru_tls_reason(p.c), p.src, coru_tls_reason(p.s))) {
                EXPECT(strcmp(coru_tls_alpn(p.c), a->want) == 0, "server '%s' client '%s': client alpn '%s', wanted '%s'",
                       sv, cl, coru_tls_alpn(p.c), a->want);
                EXPECT(strcmp(coru_tls_alpn(p.s), a->want) == 0, "server '%s' client '%s': server alpn '%s', wanted '%s'",
                       sv, cl, coru_tls_alpn(p.s), a->want);
                send_recv(p.c, p.s, "alpn");
            }
        } else {
            EXPECT(p.crc == -EPROTO, "server '%s' client '%s': client %d (%s), wanted -EPROTO", sv, cl, p.crc,
                   coru_tls_reason(p.c));
            EXPECT(p.src == -EPROTO, "server '%s' client '%s': server %d (%s), wanted -EPROTO", sv, cl, p.src,
                   coru_tls_reason(p.s));
            EXPECT(has(coru_tls_reason(p.c), "application protocol") || has(coru_tls_reason(p.c), "alpn"),
                   "client reason '%s'", coru_tls_reason(p.c));
        }
        pair_close(&p);
    }
    return NULL;
}

Test(tls, alpn_picks_by_server_preference_fails_without_overlap_and_serves_clients_without_alpn, .timeout = 60)
{
    certs_init();
    struct alpn_case cases[] = {
        {"h2,http/1.1", "h2", "h2"},
        {"h2,http/1.1", "http/1.1,h2", "h2"}, /* the server's order wins */
        {"h2,http/1.1", NULL, "http/1.1"},
        {NULL, NULL, "http/1.1"},
        {"http/1.1", "h2", NULL},             /* no_application_protocol */
        {"http/1.1", "", ""},                 /* a client without ALPN is served */
        {"", "h2", ""},                       /* a server without ALPN ignores the offer */
        {"", "", ""},
    };
    size_t n = sizeof cases / sizeof cases[0];
    coru_tls_config *scfg[sizeof cases / sizeof cases[0]], *ccfg[sizeof cases / sizeof cases[0]];
    for (size_t i = 0; i < n; i++) {
        struct coru_tls_server_opts so = {.cert_file = C.srv, .key_file = C.srv_key, .alpn = cases[i].server};
        struct coru_tls_client_opts co = {.ca_file = C.ca, .alpn = cases[i].client};
        scfg[i] = server_cfg_opts(&so);
        ccfg[i] = client_cfg_opts(&co);
    }
    struct alpn_run k = {cases, n, scfg, ccfg};
    both_engines(alpn_main, &k);
    for (size_t i = 0; i < n; i++) {
        coru_tls_config_free(scfg[i]);
        coru_tls_config_free(ccfg[i]);
    }
}

/* ------------------------------------------------------------ 16. kTLS */

struct ktls_case {
    coru_tls_config *scfg, *ccfg;
    int want; /* 1: both sides must use kTLS; 0: neither may */
};

static void *ktls_main(void *arg)
{
    struct ktls_case *k = arg;
    struct pair p;
    if (!pair_connect(&p, k->scfg, k->ccfg, "localhost")) return NULL;
    if (!EXPECT(p.crc == 0 && p.src == 0, "handshake %d (%s) %d (%s)", p.crc, coru_tls_reason(p.c), p.src,
                coru_tls_reason(p.s)))
        goto out;
    struct echo e = {.t = p.s};
    coru_t *h;
    coru_spawn(&h, echo_co, &e, NULL);
    size_t n = 200000;
    unsigned char *out = malloc(n), *in = malloc(n);
    struct xs x = {12345};
    for (size_t i = 0; i < n; i++) out[i] = xs_byte(&x);
    for (size_t off = 0; off < n; off += 40000) {
        ssize_t w = coru_tls_write(p.c, out + off, 40000, coru_now() + 10 * SEC);
        ssize_t r = tls_read_full(p.c, in + off, 40000, coru_now() + 10 * SEC);
        if (!EXPECT(w == 40000 && r == 40000, "write %zd read %zd (%s)", w, r, coru_tls_reason(p.c))) break;
    }
    EXPECT(memcmp(in, out, n) == 0, "the echo differs");
    free(out);
    free(in);
    if (k->want) {
        EXPECT(coru_tls_ktls(p.c) != 0, "client ktls %d", coru_tls_ktls(p.c));
        EXPECT(coru_tls_ktls(p.s) != 0, "server ktls %d", coru_tls_ktls(p.s));
    } else {
        EXPECT(coru_tls_ktls(p.c) == 0, "no_ktls, yet client ktls %d", coru_tls_ktls(p.c));
        EXPECT(coru_tls_ktls(p.s) == 0, "no_ktls, yet server ktls %d", coru_tls_ktls(p.s));
    }
    EXPECT(coru_tls_shutdown(p.c, coru_now() + 5 * SEC) == 0, "shutdown");
    char b[8];
    EXPECT(coru_tls_read(p.c, b, sizeof b, coru_now() + 5 * SEC) == 0, "close_notify back");
    coru_join(h, NULL);
    EXPECT(e.last == 0 && e.shut == 0, "server end %zd %d", e.last, e.shut);
out:
    pair_close(&p);
    return NULL;
}

Test(tls, ktls_streams_echo_byte_for_byte_when_the_kernel_has_it, .timeout = 60)
{
    certs_init();
    int avail = coru_tls_ktls_available();
    cr_assert(avail == 0 || avail == 1, "coru_tls_ktls_available: %d", avail);
    cr_assert_eq(coru_tls_ktls_available(), avail, "probed once, the same answer");
    if (!avail) {
        fprintf(stderr, "test_tls: kTLS not available on this kernel (no tls module): kTLS path skipped\n");
        cr_skip_test("kTLS not available on this kernel");
    }
    struct ktls_case k = {server_cfg(C.srv, C.srv_key), client_cfg(), 1};
    both_engines(ktls_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

Test(tls, no_ktls_streams_never_use_ktls, .timeout = 60)
{
    certs_init();
    struct coru_tls_server_opts so = {.cert_file = C.srv, .key_file = C.srv_key, .no_ktls = 1};
    struct coru_tls_client_opts co = {.ca_file = C.ca, .no_ktls = 1};
    struct ktls_case k = {server_cfg_opts(&so), client_cfg_opts(&co), 0};
    both_engines(ktls_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}
