/* Shared by the TLS stream tests (test_tls.c, test_tls_io.c,
 * test_tls_sessions.c): failures recorded inside coroutines (EXPECT),
 * both engines, the certificates (made once per run by the openssl
 * command line: a CA, leaves it signed: localhost, RSA-2048 localhost,
 * expired, not yet valid, wrong.example, a client certificate; plus a
 * self-signed leaf and leaves of another CA, in a mkdtemp directory the
 * runner process makes before any test starts), configurations, and
 * stream pairs over loopback TCP. */
#ifndef CORU_TEST_TLS_HELPERS_H
#define CORU_TEST_TLS_HELPERS_H

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

__attribute__((unused)) static const char *ename(enum coru_io io)
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
__attribute__((unused)) static void fail_at(int line, const char *fmt, ...)
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
__attribute__((unused)) static void run_checked(enum coru_io io, unsigned workers, coru_fn fn, void *arg)
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
__attribute__((unused)) static void both_engines(coru_fn fn, void *arg)
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
    char enc_key[200];                 /* srv.key under a pass phrase */
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
    "openssl pkey -in srv.key -aes256 -passout pass:secret -out srv_enc.key\n"
    "echo ok > done\n";

__attribute__((unused)) static void certs_paths(const char *dir)
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
    CP(enc_key, "srv_enc.key");
    CP(missing, "no-such-file.pem");
#undef CP
}

/* Makes the certificates in dir; 0 or -1 (gen.log says why). Runs a shell
 * with system(): only from a thread with no runtime running. */
__attribute__((unused)) static int certs_make(const char *dir)
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

__attribute__((unused)) static void own_dir_remove(void)
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
__attribute__((unused)) static void certs_init(void)
{
    if (C.dir[0]) return;
    const char *d = getenv(CERT_ENV);
    if (d) {
        certs_paths(d);
        if (access(C.enc_key, R_OK) == 0) return;
    }
    char tmpl[] = "/tmp/coru-tls-test.XXXXXX";
    cr_assert_not_null(mkdtemp(tmpl));
    snprintf(own_dir, sizeof own_dir, "%s", tmpl);
    cr_assert_eq(certs_make(own_dir), 0, "making certificates with openssl failed: see %s/gen.log", own_dir);
    atexit(own_dir_remove);
    certs_paths(own_dir);
}

/* ------------------------------------------------------------ configurations */

__attribute__((unused)) static coru_tls_config *server_cfg_opts(const struct coru_tls_server_opts *o)
{
    coru_tls_config *cfg = NULL;
    char why[256] = "";
    int rc = coru_tls_server_config(&cfg, o, why, sizeof why);
    cr_assert_eq(rc, 0, "server config (%s): %d %s", o->cert_file, rc, why);
    cr_assert_not_null(cfg);
    return cfg;
}

__attribute__((unused)) static coru_tls_config *server_cfg(const char *cert, const char *key)
{
    struct coru_tls_server_opts o = {.cert_file = cert, .key_file = key};
    return server_cfg_opts(&o);
}

__attribute__((unused)) static coru_tls_config *client_cfg_opts(const struct coru_tls_client_opts *o)
{
    coru_tls_config *cfg = NULL;
    char why[256] = "";
    int rc = coru_tls_client_config(&cfg, o, why, sizeof why);
    cr_assert_eq(rc, 0, "client config: %d %s", rc, why);
    cr_assert_not_null(cfg);
    return cfg;
}

/* Verifying against the test CA. */
__attribute__((unused)) static coru_tls_config *client_cfg(void)
{
    struct coru_tls_client_opts o = {.ca_file = C.ca};
    return client_cfg_opts(&o);
}

/* ------------------------------------------------------------ stream helpers */

__attribute__((unused)) static bool fd_is_closed(int fd)
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
__attribute__((unused)) static bool tcp_pair(int *cfd, int *sfd)
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
__attribute__((unused)) static bool pair_open(struct pair *p, coru_tls_config *scfg, coru_tls_config *ccfg, const char *host)
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

__attribute__((unused)) static void *server_hs_co(void *arg)
{
    struct pair *p = arg;
    p->src = coru_tls_handshake(p->s, coru_now() + 10 * SEC);
    return NULL;
}

/* Both handshakes at once (the server's in a coroutine of its own). The
 * client stream stays open until the server's handshake has ended, so
 * the server sees whatever alert the client sent. */
__attribute__((unused)) static void pair_handshake(struct pair *p)
{
    coru_t *h;
    if (!EXPECT(coru_spawn(&h, server_hs_co, p, NULL) == 0, "spawn")) return;
    p->crc = coru_tls_handshake(p->c, coru_now() + 10 * SEC);
    EXPECT(coru_join(h, NULL) == 0, "join");
}

__attribute__((unused)) static bool pair_connect(struct pair *p, coru_tls_config *scfg, coru_tls_config *ccfg, const char *host)
{
    if (!pair_open(p, scfg, ccfg, host)) return false;
    pair_handshake(p);
    return true;
}

__attribute__((unused)) static void pair_close(struct pair *p)
{
    if (p->c) EXPECT(coru_tls_close(p->c) == 0, "close client");
    if (p->s) EXPECT(coru_tls_close(p->s) == 0, "close server");
    p->c = p->s = NULL;
}

__attribute__((unused)) static ssize_t tls_read_full(coru_tls *t, void *buf, size_t n, int64_t dl)
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
__attribute__((unused)) static bool send_recv(coru_tls *from, coru_tls *to, const char *msg)
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
__attribute__((unused)) static void pair_clean_end(struct pair *p)
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
__attribute__((unused)) static void expect_params(coru_tls *t, const char *side, const char *version, const char *alpn)
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

__attribute__((unused)) static bool has(const char *s, const char *sub)
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

__attribute__((unused)) static void *echo_co(void *arg)
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


struct xs {
    uint64_t s;
};

__attribute__((unused)) static uint8_t xs_byte(struct xs *x)
{
    x->s ^= x->s << 13;
    x->s ^= x->s >> 7;
    x->s ^= x->s << 17;
    return (uint8_t)(x->s >> 29);
}

#endif
