/* test_tls: TLS streams (src/tls, include/coru/tls.h), both engines, two
 * workers, over loopback TCP. Certificates are made once per test run by
 * the openssl command line (a CA, leaves it signed: localhost, RSA-2048
 * localhost, expired, not yet valid, wrong.example, a client certificate;
 * plus a self-signed leaf and leaves of another CA), in a mkdtemp
 * directory the runner process makes before any test starts.
 * Covered: handshake, echo and close_notify both ways (EC and RSA keys,
 * explicit or run by the first read/write, min_version 13); configs freed
 * before their streams; interop with openssl s_server / s_client over
 * TLS 1.2 (and TLS 1.2 resumption) and a TLS 1.3 KeyUpdate s_client asks
 * an answer to; every verification failure with its code and reason, on
 * both sides; no host; insecure_skip_verify; IP literals and name case;
 * what the ClientHello carries (SNI, ALPN); EOF without close_notify;
 * garbage and closed peers on both sides; deadlines and cancels of
 * handshakes, reads (also mid-record, through a proxy that holds back
 * half a record) and writes; a past deadline still reads what is there;
 * one-byte reads; 64 MiB each way; 1,000 concurrent handshakes; session
 * resumption, no_tickets, a session outliving its stream; certificate
 * reload (and reloads racing handshakes); configuration and stream
 * errors; client certificates; ALPN; kTLS (skipped without the tls
 * module); NULL handles. tests/meson.build runs it again with
 * CORU_TLS_SOCKET_BIO=1 (the kTLS streams' socket path). */
#include <coru/tls.h>
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coru.h"
#include "helpers.h"

#define MS (1000 * 1000LL)
#define SEC (1000 * MS)

/* Every coroutine here gets a generous stack: OpenSSL's handshake code is
 * deep (and deeper under the sanitizers). */
enum { TLS_STACK = 256 * 1024 };

static const char *ename(enum coru_io io)
{
    return io == CORU_IO_URING ? "io_uring" : "epoll";
}

/* ------------------------------------------------------------ failures */

/* The first failure inside a coroutine, asserted after the run (a Criterion
 * assert inside a coroutine would unwind across its stack). Coroutines on
 * both workers record, hence the lock. EXPECT is an expression: false when
 * the condition failed, so a caller can bail out. */
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static char fail_msg[4096];
static int fail_count;

static void fail_at(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_at(int line, const char *fmt, ...)
{
    pthread_mutex_lock(&fail_lock);
    if (fail_count++ == 0) {
        int n = snprintf(fail_msg, sizeof fail_msg, "line %d: ", line);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(fail_msg + n, sizeof fail_msg - (size_t)n, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&fail_lock);
}

#define EXPECT(cond, ...) ((cond) ? true : (fail_at(__LINE__, __VA_ARGS__), false))

/* fn(arg) as the main coroutine of a run on engine io with `workers`
 * workers; then: the run succeeded and nothing failed inside. */
static void run_checked(enum coru_io io, unsigned workers, coru_fn fn, void *arg)
{
    pthread_mutex_lock(&fail_lock);
    fail_msg[0] = '\0';
    fail_count = 0;
    pthread_mutex_unlock(&fail_lock);
    struct coru_opts o = {.workers = workers, .io = io, .stack_size = TLS_STACK};
    int rc = coru_run(fn, arg, &o);
    cr_assert_eq(rc, 0, "%s: coru_run: %d", ename(io), rc);
    pthread_mutex_lock(&fail_lock);
    int n = fail_count;
    pthread_mutex_unlock(&fail_lock);
    cr_assert_eq(n, 0, "%s: %d failures, the first: %s", ename(io), n, fail_msg);
}

/* Both engines, two workers. */
static void both_engines(coru_fn fn, void *arg)
{
    FOR_EACH_ENGINE(io) run_checked(io, 2, fn, arg);
}

/* ------------------------------------------------------------ certificates */

struct certs {
    char dir[160];
    char ca[200], ca_key[200];         /* the CA */
    char srv[200], srv_key[200];       /* localhost, 127.0.0.1 (EC P-256) */
    char rsa[200], rsa_key[200];       /* the same names, RSA-2048 */
    char exp[200], exp_key[200];       /* localhost, expired in 2020 */
    char future[200], future_key[200]; /* localhost, valid from 2090 */
    char wrong[200], wrong_key[200];   /* wrong.example */
    char self[200], self_key[200];     /* localhost, self-signed */
    char other[200], other_key[200];   /* localhost, by another CA */
    char cli[200], cli_key[200];       /* clientAuth only (SAN localhost too) */
    char cli_other[200], cli_other_key[200]; /* a client of the other CA */
    char cadir[200];                   /* a hashed directory holding the CA */
    char junk[200];                    /* not PEM at all */
    char missing[200];                 /* no such file */
};
static struct certs C;

#define CERT_ENV "CORU_TLS_TEST_CERTS"

static const char gen_script[] =
    "set -e\n"
    "cat > cnf <<'EOF'\n"
    "[req]\n"
    "distinguished_name = dn\n"
    "prompt = no\n"
    "[dn]\n"
    "CN = unused\n"
    "[v3_ca]\n"
    "basicConstraints = critical,CA:true\n"
    "keyUsage = critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "[srv]\n"
    "basicConstraints = critical,CA:false\n"
    "keyUsage = critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:localhost,IP:127.0.0.1\n"
    "subjectKeyIdentifier = hash\n"
    "authorityKeyIdentifier = keyid\n"
    "[wrong]\n"
    "basicConstraints = critical,CA:false\n"
    "keyUsage = critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:wrong.example\n"
    "[self]\n"
    "basicConstraints = critical,CA:false\n"
    "keyUsage = critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:localhost,IP:127.0.0.1\n"
    "[cli]\n"
    "basicConstraints = critical,CA:false\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = clientAuth\n"
    "subjectAltName = DNS:localhost,IP:127.0.0.1\n"
    "[ca]\n"
    "default_ca = myca\n"
    "[myca]\n"
    "database = index.txt\n"
    "new_certs_dir = newcerts\n"
    "serial = serial\n"
    "certificate = ca.pem\n"
    "private_key = ca.key\n"
    "default_md = sha256\n"
    "policy = pol\n"
    "unique_subject = no\n"
    "[pol]\n"
    "commonName = supplied\n"
    "EOF\n"
    "EC='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1'\n"
    "openssl req -config cnf -x509 $EC -nodes -keyout ca.key -out ca.pem -days 3650 "
    "-subj '/CN=coru test CA' -extensions v3_ca\n"
    "openssl req -config cnf -x509 $EC -nodes -keyout other_ca.key -out other_ca.pem -days 3650 "
    "-subj '/CN=coru other CA' -extensions v3_ca\n"
    "N=10\n"
    /* leaf name subject extensions ca keyspec... */
    "leaf() {\n"
    "  n=$1 subj=$2 ext=$3 ca=$4; shift 4\n"
    "  N=$((N + 1))\n"
    "  openssl req -config cnf -new \"$@\" -nodes -keyout $n.key -out $n.csr -subj \"$subj\"\n"
    "  openssl x509 -req -in $n.csr -CA $ca.pem -CAkey $ca.key -set_serial $N -days 825 "
    "-extfile cnf -extensions $ext -out $n.pem\n"
    "}\n"
    "leaf srv /CN=localhost srv ca $EC\n"
    "leaf rsa /CN=localhost srv ca -newkey rsa:2048\n"
    "leaf wrong /CN=wrong.example wrong ca $EC\n"
    "leaf other /CN=localhost srv other_ca $EC\n"
    "leaf cli '/CN=coru client' cli ca $EC\n"
    "leaf cli_other '/CN=coru other client' cli other_ca $EC\n"
    "openssl req -config cnf -x509 $EC -nodes -keyout self.key -out self.pem -days 825 "
    "-subj /CN=localhost -extensions self\n"
    "mkdir -p newcerts; : > index.txt; echo 1000 > serial\n"
    "openssl req -config cnf -new $EC -nodes -keyout exp.key -out exp.csr -subj /CN=localhost\n"
    "openssl ca -batch -config cnf -name myca -extensions srv -notext "
    "-startdate 20200101000000Z -enddate 20200102000000Z -in exp.csr -out exp.pem\n"
    "openssl req -config cnf -new $EC -nodes -keyout future.key -out future.csr -subj /CN=localhost\n"
    "openssl ca -batch -config cnf -name myca -extensions srv -notext "
    "-startdate 20900101000000Z -enddate 20910101000000Z -in future.csr -out future.pem\n"
    "mkdir -p cadir && cp ca.pem cadir/ && openssl rehash cadir\n"
    "printf 'this is not a PEM file\\n' > junk.txt\n"
    "echo ok > done\n";

static void certs_paths(const char *dir)
{
    snprintf(C.dir, sizeof C.dir, "%s", dir);
#define CP(f, name) snprintf(C.f, sizeof C.f, "%s/%s", dir, name)
    CP(ca, "ca.pem");
    CP(ca_key, "ca.key");
    CP(srv, "srv.pem");
    CP(srv_key, "srv.key");
    CP(rsa, "rsa.pem");
    CP(rsa_key, "rsa.key");
    CP(exp, "exp.pem");
    CP(exp_key, "exp.key");
    CP(future, "future.pem");
    CP(future_key, "future.key");
    CP(wrong, "wrong.pem");
    CP(wrong_key, "wrong.key");
    CP(self, "self.pem");
    CP(self_key, "self.key");
    CP(other, "other.pem");
    CP(other_key, "other.key");
    CP(cli, "cli.pem");
    CP(cli_key, "cli.key");
    CP(cli_other, "cli_other.pem");
    CP(cli_other_key, "cli_other.key");
    CP(cadir, "cadir");
    CP(junk, "junk.txt");
    CP(missing, "no-such-file.pem");
#undef CP
}

/* Makes the certificates in dir; 0 or -1 (gen.log says why). Runs a shell
 * with system(): only from a thread with no runtime running. */
static int certs_make(const char *dir)
{
    char path[300], cmd[700];
    snprintf(path, sizeof path, "%s/gen.sh", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(gen_script, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cd '%s' && sh -e gen.sh > gen.log 2>&1", dir);
    int rc = system(cmd);
    snprintf(path, sizeof path, "%s/done", dir);
    return rc == 0 && access(path, F_OK) == 0 ? 0 : -1;
}

static char own_dir[160]; /* made by this process (no runner's directory) */

static void own_dir_remove(void)
{
    if (own_dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", own_dir);
        if (system(cmd) != 0) fprintf(stderr, "test_tls: could not remove %s\n", own_dir);
    }
}

/* Once per run, in Criterion's runner process before any test: the test
 * processes inherit the directory's name through the environment. */
static char runner_dir[160];

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    char tmpl[] = "/tmp/coru-tls-test.XXXXXX";
    if (!mkdtemp(tmpl)) return;
    snprintf(runner_dir, sizeof runner_dir, "%s", tmpl);
    if (certs_make(runner_dir) == 0) setenv(CERT_ENV, runner_dir, 1);
    else fprintf(stderr, "test_tls: making certificates in %s failed (see gen.log there)\n", runner_dir);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    if (runner_dir[0] && getenv(CERT_ENV)) { /* kept when the making failed, for its log */
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", runner_dir);
        if (system(cmd) != 0) fprintf(stderr, "test_tls: could not remove %s\n", runner_dir);
    }
}

/* In a test, before coru_run: the certificates' paths (made here if the
 * runner did not make them). */
static void certs_init(void)
{
    if (C.dir[0]) return;
    const char *d = getenv(CERT_ENV);
    if (d) {
        certs_paths(d);
        if (access(C.future, R_OK) == 0) return;
    }
    char tmpl[] = "/tmp/coru-tls-test.XXXXXX";
    cr_assert_not_null(mkdtemp(tmpl));
    snprintf(own_dir, sizeof own_dir, "%s", tmpl);
    cr_assert_eq(certs_make(own_dir), 0, "making certificates with openssl failed: see %s/gen.log", own_dir);
    atexit(own_dir_remove);
    certs_paths(own_dir);
}

/* ------------------------------------------------------------ configurations */

static coru_tls_config *server_cfg_opts(const struct coru_tls_server_opts *o)
{
    coru_tls_config *cfg = NULL;
    char why[256] = "";
    int rc = coru_tls_server_config(&cfg, o, why, sizeof why);
    cr_assert_eq(rc, 0, "server config (%s): %d %s", o->cert_file, rc, why);
    cr_assert_not_null(cfg);
    return cfg;
}

static coru_tls_config *server_cfg(const char *cert, const char *key)
{
    struct coru_tls_server_opts o = {.cert_file = cert, .key_file = key};
    return server_cfg_opts(&o);
}

static coru_tls_config *client_cfg_opts(const struct coru_tls_client_opts *o)
{
    coru_tls_config *cfg = NULL;
    char why[256] = "";
    int rc = coru_tls_client_config(&cfg, o, why, sizeof why);
    cr_assert_eq(rc, 0, "client config: %d %s", rc, why);
    cr_assert_not_null(cfg);
    return cfg;
}

/* Verifying against the test CA. */
static coru_tls_config *client_cfg(void)
{
    struct coru_tls_client_opts o = {.ca_file = C.ca};
    return client_cfg_opts(&o);
}

/* ------------------------------------------------------------ stream helpers */

static bool fd_is_closed(int fd)
{
    return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}


/* A TLS connection over loopback: the client stream c, the server stream s,
 * and their handshake results. */
struct pair {
    coru_tls *c, *s;
    int crc, src;
};

/* Connected TCP fds on 127.0.0.1 (no TLS yet). */
static bool tcp_pair(int *cfd, int *sfd)
{
    *cfd = *sfd = -1;
    int lfd = coru_tcp_listen("127.0.0.1", 0, 16, 0);
    if (!EXPECT(lfd >= 0, "listen: %d", lfd)) return false;
    int port = coru_local_port(lfd);
    *cfd = coru_tcp_connect("127.0.0.1", (uint16_t)port, coru_now() + 10 * SEC);
    if (*cfd >= 0) *sfd = coru_tcp_accept_dl(lfd, NULL, NULL, coru_now() + 10 * SEC);
    coru_close(lfd);
    if (!EXPECT(*cfd >= 0 && *sfd >= 0, "connect %d accept %d", *cfd, *sfd)) {
        if (*cfd >= 0) coru_close(*cfd);
        return false;
    }
    coru_tcp_nodelay(*cfd, 1);
    coru_tcp_nodelay(*sfd, 1);
    return true;
}

/* The streams of a fresh connection, not yet handshaken. */
static bool pair_open(struct pair *p, coru_tls_config *scfg, coru_tls_config *ccfg, const char *host)
{
    memset(p, 0, sizeof *p);
    int cfd, sfd;
    if (!tcp_pair(&cfd, &sfd)) return false;
    int rc = coru_tls_server(&p->s, scfg, sfd);
    if (!EXPECT(rc == 0 && p->s, "coru_tls_server: %d", rc)) {
        p->s = NULL;
        coru_close(cfd);
        return false;
    }
    EXPECT(coru_tls_fd(p->s) == sfd, "coru_tls_fd %d, not %d", coru_tls_fd(p->s), sfd);
    rc = coru_tls_client(&p->c, ccfg, cfd, host);
    if (!EXPECT(rc == 0 && p->c, "coru_tls_client: %d", rc)) {
        p->c = NULL;
        coru_tls_close(p->s);
        p->s = NULL;
        return false;
    }
    EXPECT(coru_tls_fd(p->c) == cfd, "coru_tls_fd %d, not %d", coru_tls_fd(p->c), cfd);
    EXPECT(strcmp(coru_tls_reason(p->c), "") == 0, "fresh reason '%s'", coru_tls_reason(p->c));
    return true;
}

static void *server_hs_co(void *arg)
{
    struct pair *p = arg;
    p->src = coru_tls_handshake(p->s, coru_now() + 10 * SEC);
    return NULL;
}

/* Both handshakes at once (the server's in a coroutine of its own). The
 * client stream stays open until the server's handshake has ended, so
 * the server sees whatever alert the client sent. */
static void pair_handshake(struct pair *p)
{
    coru_t *h;
    if (!EXPECT(coru_spawn(&h, server_hs_co, p, NULL) == 0, "spawn")) return;
    p->crc = coru_tls_handshake(p->c, coru_now() + 10 * SEC);
    EXPECT(coru_join(h, NULL) == 0, "join");
}

static bool pair_connect(struct pair *p, coru_tls_config *scfg, coru_tls_config *ccfg, const char *host)
{
    if (!pair_open(p, scfg, ccfg, host)) return false;
    pair_handshake(p);
    return true;
}

static void pair_close(struct pair *p)
{
    if (p->c) EXPECT(coru_tls_close(p->c) == 0, "close client");
    if (p->s) EXPECT(coru_tls_close(p->s) == 0, "close server");
    p->c = p->s = NULL;
}

static ssize_t tls_read_full(coru_tls *t, void *buf, size_t n, int64_t dl)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = coru_tls_read(t, (char *)buf + got, n - got, dl);
        if (r < 0) return r;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* msg from `from` to `to`, in one coroutine: small messages only (the
 * socket buffers hold them while nobody reads). */
static bool send_recv(coru_tls *from, coru_tls *to, const char *msg)
{
    size_t n = strlen(msg);
    char buf[512];
    if (n > sizeof buf) return EXPECT(false, "message too long");
    ssize_t w = coru_tls_write(from, msg, n, coru_now() + 10 * SEC);
    if (!EXPECT(w == (ssize_t)n, "write '%s': %zd (%s)", msg, w, coru_tls_reason(from))) return false;
    ssize_t r = tls_read_full(to, buf, n, coru_now() + 10 * SEC);
    if (!EXPECT(r == (ssize_t)n, "read '%s': %zd (%s)", msg, r, coru_tls_reason(to))) return false;
    return EXPECT(memcmp(buf, msg, n) == 0, "'%s' came back as '%.*s'", msg, (int)n, buf);
}

/* The clean end: client close_notify, server reads 0, server close_notify,
 * client reads 0. */
static void pair_clean_end(struct pair *p)
{
    char b[16];
    int64_t dl = coru_now() + 10 * SEC;
    EXPECT(coru_tls_shutdown(p->c, dl) == 0, "client shutdown (%s)", coru_tls_reason(p->c));
    ssize_t r = coru_tls_read(p->s, b, sizeof b, dl);
    EXPECT(r == 0, "server read after close_notify: %zd (%s)", r, coru_tls_reason(p->s));
    EXPECT(coru_tls_shutdown(p->s, dl) == 0, "server shutdown (%s)", coru_tls_reason(p->s));
    r = coru_tls_read(p->c, b, sizeof b, dl);
    EXPECT(r == 0, "client read after close_notify: %zd (%s)", r, coru_tls_reason(p->c));
}

/* Negotiated parameters of a stream after a fresh full handshake. */
static void expect_params(coru_tls *t, const char *side, const char *version, const char *alpn)
{
    const char *v = coru_tls_version(t), *a = coru_tls_alpn(t), *ci = coru_tls_cipher(t);
    EXPECT(v && strcmp(v, version) == 0, "%s version '%s', wanted %s", side, v ? v : "(null)", version);
    EXPECT(a && strcmp(a, alpn) == 0, "%s alpn '%s', wanted '%s'", side, a ? a : "(null)", alpn);
    EXPECT(ci && ci[0], "%s: no cipher name", side);
    EXPECT(coru_tls_resumed(t) == 0, "%s: resumed %d on a full handshake", side, coru_tls_resumed(t));
    EXPECT(strcmp(coru_tls_reason(t), "") == 0, "%s: reason '%s' after a success", side, coru_tls_reason(t));
    if (!coru_tls_ktls_available())
        EXPECT(coru_tls_ktls(t) == 0, "%s: ktls %d without kTLS in the kernel", side, coru_tls_ktls(t));
}

static bool has(const char *s, const char *sub)
{
    return s && strcasestr(s, sub) != NULL;
}

/* An echo server on a stream: echoes until read returns 0 or fails, then
 * (at 0) answers close_notify. */
struct echo {
    coru_tls *t;
    ssize_t last;  /* the read that ended it */
    int shut;      /* its shutdown */
    long bytes;
};

static void *echo_co(void *arg)
{
    struct echo *e = arg;
    size_t cap = 20011;
    char *buf = malloc(cap);
    e->last = -ENOMEM;
    e->shut = 1;
    while (buf) {
        ssize_t n = coru_tls_read(e->t, buf, cap, coru_now() + 20 * SEC);
        if (n <= 0) {
            e->last = n;
            break;
        }
        ssize_t w = coru_tls_write(e->t, buf, (size_t)n, coru_now() + 20 * SEC);
        if (w != n) {
            e->last = w < 0 ? w : -EIO;
            break;
        }
        e->bytes += n;
    }
    if (e->last == 0) e->shut = coru_tls_shutdown(e->t, coru_now() + 10 * SEC);
    free(buf);
    return NULL;
}

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

Test(tls, client_hello_carries_sni_for_names_only_and_the_alpn_list_and_garbage_back_is_eproto, .timeout = 60)
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

Test(tls, a_server_closing_at_once_is_econnaborted_or_econnreset, .timeout = 60)
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

Test(tls, server_handshake_against_http_an_early_close_and_a_silent_client, .timeout = 60)
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

Test(tls, a_handshake_with_a_stalled_server_ends_at_its_deadline, .timeout = 60)
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

Test(tls, cancel_ends_parked_handshakes_and_reads_with_ecanceled, .timeout = 60)
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

Test(tls, a_read_timed_out_or_cancelled_mid_record_resumes_where_it_was, .timeout = 60)
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

Test(tls, a_past_deadline_still_reads_what_is_there, .timeout = 60)
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

Test(tls, a_write_nobody_reads_ends_at_its_deadline_or_cancel, .timeout = 60)
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

Test(tls, one_byte_reads_take_records_apart_and_big_reads_get_what_there_is, .timeout = 60)
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

Test(tls, a_peer_ending_tcp_without_close_notify_gives_econnaborted, .timeout = 60)
{
    certs_init();
    struct cancel_case k = {server_cfg(C.srv, C.srv_key), client_cfg()};
    both_engines(no_close_notify_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

/* ------------------------------------------------------------ 9. 64 MiB each way */

enum { BIG = 64 << 20, WRITE_PIECE = 100003, READ_PIECE = 65521 };

struct xs {
    uint64_t s;
};

static uint8_t xs_byte(struct xs *x)
{
    x->s ^= x->s << 13;
    x->s ^= x->s >> 7;
    x->s ^= x->s << 17;
    return (uint8_t)(x->s >> 29);
}

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

Test(tls, sixty_four_mib_each_way_in_odd_pieces_arrive_byte_for_byte, .timeout = 120)
{
    certs_init();
    struct cancel_case k = {server_cfg(C.srv, C.srv_key), client_cfg()};
    both_engines(big_main, &k);
    coru_tls_config_free(k.scfg);
    coru_tls_config_free(k.ccfg);
}

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

Test(tls, a_thousand_concurrent_handshakes_and_echoes_on_two_workers, .timeout = 300)
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

Test(tls, sessions_resume_on_both_sides_and_not_without_tickets, .timeout = 60)
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

Test(tls, a_taken_session_stays_resumable_after_its_stream_closes_without_close_notify, .timeout = 60)
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

Test(tls, reload_serves_later_handshakes_with_the_new_pair_and_failed_reloads_change_nothing, .timeout = 60)
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

Test(tls, reloads_racing_handshakes_on_another_worker_give_every_handshake_a_whole_pair, .timeout = 120)
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

Test(tls, configuration_errors_have_their_codes_and_a_reason)
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

Test(tls, streams_refuse_the_wrong_config_kind_and_bad_arguments_and_own_their_fd, .timeout = 60)
{
    certs_init();
    struct stream_err k = {server_cfg(C.srv, C.srv_key), client_cfg()};
    both_engines(stream_errors_main, &k);
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
