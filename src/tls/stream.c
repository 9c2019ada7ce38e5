/* TLS streams: a custom BIO between OpenSSL and coru's I/O, the handshake,
 * read, write, shutdown and the mapping of OpenSSL's failures to codes and
 * reasons. Uses the runtime through coru.h only.
 *
 * The BIO (non-kTLS streams). OpenSSL reads ciphertext from t->in, which
 * coru_read_dl filled, and writes ciphertext to t->out, which grows; it
 * never sees the socket. bio_read hands out what t->in holds and asks for
 * a retry (WANT_READ) only when it is empty, so a WANT_READ always means
 * "t->in is drained: read the socket" (fill). bio_write always takes all
 * it is given, so SSL_write and SSL_do_handshake never want to write;
 * whatever an SSL call produced (records, alerts, a Finished, tickets, a
 * key update's answer) is written out by flush right after that call.
 *
 * The SSL_get_error rules (SSL_get_error(3)): each SSL call is preceded
 * by ERR_clear_error() and followed, before anything else that could
 * park, by SSL_get_error and (on failure) the reading of the error queue
 * (fatal), all on the same thread. Only then do fill, flush or coru_poll
 * park. A retried SSL_write is given the same pointer and length.
 *
 * Stickiness: a fatal TLS error, a failed flush (part of a record may be
 * on the wire) or a failed read of the socket other than a timeout or a
 * cancel sets t->err, which every later call returns. A read that timed
 * out while waiting for bytes (nothing consumed, nothing half-written)
 * can be retried.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tls.h"

/* Ciphertext read at once: one record of the largest size (16 KiB of
 * plaintext, 256 bytes of expansion at most, the 5-byte header). A
 * read parks with it, so an idle connection holds it. */
#define IN_CAP (16 * 1024 + 256 + 5)
#define WRITE_CHUNK (64 * 1024) /* plaintext per SSL_write: bounds t->out */
#define OUT_KEEP (20 * 1024)    /* a larger t->out is freed after its flush:
                                   an idle connection keeps one small
                                   response's worth at most */

struct coru_tls {
    struct coru_tls_config *cfg;
    SSL *ssl;
    int fd;
    bool server;
    bool kmode;                 /* OpenSSL does the socket I/O (kTLS) */
    bool started;               /* a handshake call was made */
    bool hs_done;
    bool shut;                  /* close_notify sent */
    bool eof;                   /* the socket reached EOF */
    bool oom;                   /* bio_write could not grow t->out */
    int err;                    /* sticky failure, or 0 */
    unsigned char *in;          /* [ipos, ilen) not yet given to OpenSSL */
    size_t ipos, ilen;
    unsigned char *out;         /* [0, olen) to be written */
    size_t olen, ocap;
    char alpn[64];
    char reason[256];
};

/* ---------------------------------------------------------------- BIO */

static int bio_read(BIO *b, char *buf, int len)
{
    struct coru_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t avail = t->ilen - t->ipos;
    if (avail == 0) {
        if (t->eof) return 0; /* OpenSSL: unexpected EOF, or after close_notify */
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = (size_t)len < avail ? (size_t)len : avail;
    memcpy(buf, t->in + t->ipos, n);
    t->ipos += n;
    return (int)n;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    struct coru_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t need = t->olen + (size_t)len;
    if (need > t->ocap) {
        /* what is needed (4 KiB steps) and at least twice as much as
         * before: a 64 KiB chunk's records grow it two or three times */
        size_t cap = (need + 4095) & ~(size_t)4095;
        if (cap < 2 * t->ocap) cap = 2 * t->ocap;
        unsigned char *p = realloc(t->out, cap);
        if (!p) {
            t->oom = true;
            return -1; /* no retry flag: a failure */
        }
        t->out = p;
        t->ocap = cap;
    }
    memcpy(t->out + t->olen, buf, (size_t)len);
    t->olen = need;
    return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct coru_tls *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH: return 1; /* flush() writes after the call */
    case BIO_CTRL_PENDING: return (long)(t->ilen - t->ipos);
    case BIO_CTRL_WPENDING: return (long)t->olen;
    case BIO_CTRL_EOF: return t->eof && t->ipos == t->ilen;
    default: return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "coru");
    if (!m) return;
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    bio_method = m;
}

/* ---------------------------------------------------------------- moving bytes */

/* Reads ciphertext into the drained t->in (a WANT_READ says it is). 0
 * (bytes arrived, or EOF: t->eof) or -errno. */
static int fill(struct coru_tls *t, int64_t deadline)
{
    if (!t->in && !(t->in = malloc(IN_CAP))) return -ENOMEM;
    /* Drained, as a WANT_READ says (bio_read asks for a retry only then);
     * should bytes be left all the same, they are kept, not dropped. */
    size_t left = t->ilen - t->ipos;
    if (left) memmove(t->in, t->in + t->ipos, left);
    t->ipos = 0;
    t->ilen = left;
    if (left == IN_CAP) return 0;
    ssize_t r = coru_read_dl(t->fd, t->in + left, IN_CAP - left, deadline);
    if (r < 0) return (int)r;
    if (r == 0) t->eof = true;
    t->ilen = left + (size_t)r;
    return 0;
}

/* Writes what the last SSL call produced. 0 or -errno. */
static int flush(struct coru_tls *t, int64_t deadline)
{
    if (t->oom) return -ENOMEM;
    if (!t->olen) return 0;
    ssize_t w = coru_write_all(t->fd, t->out, t->olen, deadline);
    t->olen = 0;
    if (t->ocap > OUT_KEEP) {
        free(t->out);
        t->out = NULL;
        t->ocap = 0;
    }
    return w < 0 ? (int)w : 0;
}

static void set_reason_errno(struct coru_tls *t, const char *what, int rc)
{
    snprintf(t->reason, sizeof t->reason, "%s: %s", what, strerror(-rc));
}

/* A failure of the socket: sticky unless it only cut a wait short. */
static int transport(struct coru_tls *t, const char *what, int rc, bool retryable)
{
    set_reason_errno(t, what, rc);
    if (!(retryable && (rc == -ETIMEDOUT || rc == -ECANCELED))) t->err = rc;
    return rc;
}

/* WANT_READ: bytes from the socket (BIO) or its readiness (kTLS). */
static int wait_read(struct coru_tls *t, int64_t deadline)
{
    if (t->kmode) {
        int r = coru_poll(t->fd, POLLIN, deadline);
        return r < 0 ? transport(t, "poll", r, true) : 0;
    }
    int r = fill(t, deadline);
    return r ? transport(t, "read", r, true) : 0;
}

/* WANT_WRITE: only kTLS streams (OpenSSL writes the socket itself). */
static int wait_write(struct coru_tls *t, int64_t deadline)
{
    int r = coru_poll(t->fd, POLLOUT, deadline);
    return r < 0 ? transport(t, "poll", r, false) : 0;
}

/* ---------------------------------------------------------------- errors */

static int verify_code(long v)
{
    switch (v) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return -EKEYEXPIRED;
    case X509_V_ERR_CERT_REVOKED:
        return -EKEYREVOKED;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
        return -ENOKEY;
    default: /* host name, IP, purpose, signature, ... */
        return -EKEYREJECTED;
    }
}

/* After an SSL call failed with SSL_ERROR_SSL or SSL_ERROR_SYSCALL, on the
 * thread that made it and before any park: the code, the reason, the
 * queue emptied; sticky. errno_now: errno right after the call (kTLS). */
static int fatal(struct coru_tls *t, int e, int errno_now)
{
    int rc = -EPROTO;
    /* The first error of the SSL library is the cause; later entries
     * are context. */
    unsigned long code = 0, first = ERR_peek_error(), c;
    while ((c = ERR_get_error())) /* to the end: the queue is empty after */
        if (!code && ERR_GET_LIB(c) == ERR_LIB_SSL) code = c;
    bool ssl_lib = code != 0; /* code is the SSL library's, or (else) the first */
    if (!code) code = first;
    int reason = ERR_GET_REASON(code);
    if (t->oom || reason == ERR_R_MALLOC_FAILURE) {
        rc = -ENOMEM;
        snprintf(t->reason, sizeof t->reason, "out of memory");
    } else if (e == SSL_ERROR_SYSCALL && !ssl_lib) {
        /* The socket's own error (kTLS streams): from the queue (OpenSSL
         * 3.2+ raises it there) or from errno. A record the kernel could
         * not decrypt (EBADMSG, EIO) is a protocol failure, as it is on
         * the BIO path. */
        int en = first && ERR_SYSTEM_ERROR(first) ? ERR_GET_REASON(first) : errno_now;
        if (t->kmode && en) {
            rc = en == EBADMSG || en == EIO || en == EINVAL ? -EPROTO : -en;
            set_reason_errno(t, "socket", -en);
        } else {
            rc = -ECONNABORTED;
            snprintf(t->reason, sizeof t->reason, "the connection ended without close_notify");
        }
    } else if (ssl_lib && reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        long v = SSL_get_verify_result(t->ssl);
        rc = verify_code(v);
        snprintf(t->reason, sizeof t->reason, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    } else if (ssl_lib && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        rc = -ECONNABORTED;
        snprintf(t->reason, sizeof t->reason, "the connection ended without close_notify (unexpected eof while reading)");
    } else if (ssl_lib && reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        rc = -ENOKEY;
        snprintf(t->reason, sizeof t->reason, "the peer sent no certificate (one is required)");
    } else {
        const char *s = code ? ERR_reason_error_string(code) : NULL;
        bool alert = ssl_lib && reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256;
        snprintf(t->reason, sizeof t->reason, "%s%s", s ? s : "TLS protocol error", alert ? " (alert from the peer)" : "");
    }
    t->err = rc;
    return rc;
}

/* ---------------------------------------------------------------- one SSL call */

/* errno through a call the compiler cannot fold: __errno_location() is
 * declared const, so its result could be kept in a register across a
 * park, and after a move to another worker it would name the old
 * thread's errno. */
static __attribute__((noinline)) void errno_clear(void)
{
    errno = 0;
}

static __attribute__((noinline)) int errno_get(void)
{
    return errno;
}

/* SIGPIPE. On kTLS streams OpenSSL writes the socket with write(2) and
 * sendmsg(2) without MSG_NOSIGNAL: to a reset peer that raises SIGPIPE on
 * the calling thread. Workers block it (coru's convention); a plain
 * thread blocks it around the SSL call and takes back a SIGPIPE the
 * call raised (not one already pending), then restores its mask. */
struct pipe_guard {
    bool on, was_pending;
    sigset_t old;
};

static void pipe_hold(struct pipe_guard *g, const struct coru_tls *t)
{
    g->on = t->kmode && !coru_self();
    if (!g->on) return;
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pend);
    g->was_pending = sigismember(&pend, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void pipe_release(struct pipe_guard *g)
{
    if (!g->on) return;
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    if (!g->was_pending && sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE) == 1) {
        struct timespec zero = {0, 0};
        sigtimedwait(&set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

enum op { OP_HANDSHAKE, OP_READ, OP_WRITE, OP_SHUTDOWN };

/* Makes one SSL call of kind op until it completes: returns its positive
 * result (bytes; 1 for handshake and shutdown), 0 for a read that met
 * close_notify, or -errno. buf and n are the same on every retry. */
static int call(struct coru_tls *t, enum op op, void *buf, int n, int64_t deadline)
{
    for (;;) {
        struct pipe_guard g;
        pipe_hold(&g, t);
        ERR_clear_error();
        errno_clear();
        int r;
        switch (op) {
        case OP_HANDSHAKE: r = SSL_do_handshake(t->ssl); break;
        case OP_READ: r = SSL_read(t->ssl, buf, n); break;
        case OP_WRITE: r = SSL_write(t->ssl, buf, n); break;
        default:
            r = SSL_shutdown(t->ssl);
            if (r == 0) r = 1; /* sent; the peer's is not awaited */
            break;
        }
        int en = errno_get();
        pipe_release(&g);
        int e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
        int rc = 0;
        if (e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL) rc = fatal(t, e, en);
        /* Parking is allowed from here on. What the call produced goes
         * out first: on a failure that is the alert telling the peer
         * why, tried once (a peer that stopped reading must not hold a
         * failed stream until the caller's deadline). */
        int fr = t->kmode ? 0 : flush(t, rc ? coru_now() : deadline);
        if (rc) return rc;
        if (fr) {
            transport(t, "write", fr, false);
            if (r > 0 && op == OP_READ) return r; /* the bytes are good; the error waits */
            return fr;
        }
        if (r > 0) return r;
        switch (e) {
        case SSL_ERROR_ZERO_RETURN:
            if (op == OP_READ) return 0;
            snprintf(t->reason, sizeof t->reason, "the peer sent close_notify");
            return t->err = -EPIPE;
        case SSL_ERROR_WANT_READ:
            if ((rc = wait_read(t, deadline))) return rc;
            continue;
        case SSL_ERROR_WANT_WRITE:
            if ((rc = wait_write(t, deadline))) return rc;
            continue;
        default:
            snprintf(t->reason, sizeof t->reason, "unexpected SSL_get_error %d", e);
            return t->err = -EPROTO;
        }
    }
}

static int handshake(struct coru_tls *t, int64_t deadline)
{
    if (t->hs_done) return 0;
    t->started = true;
    int r = call(t, OP_HANDSHAKE, NULL, 0, deadline);
    if (r < 0) return r;
    t->hs_done = true;
    const unsigned char *p;
    unsigned len;
    SSL_get0_alpn_selected(t->ssl, &p, &len);
    if (len >= sizeof t->alpn) len = sizeof t->alpn - 1;
    if (len) memcpy(t->alpn, p, len);
    t->alpn[len] = 0;
    return 0;
}

/* ---------------------------------------------------------------- public */

/* Whether streams use OpenSSL's socket BIO: where kTLS is there. In test
 * builds CORU_TLS_SOCKET_BIO=1 forces it without kTLS, so that the path
 * (coru_poll on WANT_READ and WANT_WRITE, retried writes) runs where the
 * kernel has no tls module. */
static bool socket_bio(const struct coru_tls_config *cfg)
{
    if (!cfg->ktls) return false;
#ifdef CORU_TESTING
    const char *e = getenv("CORU_TLS_SOCKET_BIO");
    if (e && !strcmp(e, "1")) return true;
#endif
    return coru_tls_ktls_available();
}

static int make(coru_tls **out, coru_tls_config *cfg, int fd, bool server)
{
    int rc = -ENOMEM;
    struct coru_tls *t = NULL;
    pthread_once(&bio_once, bio_init);
    if (!bio_method || !(t = calloc(1, sizeof *t))) goto fail;
    t->fd = fd;
    t->server = server;
    /* A reference to the current context under the lock (against a
     * reload's swap), the SSL made outside it. */
    pthread_mutex_lock(&cfg->lock);
    SSL_CTX *ctx = cfg->ctx;
    SSL_CTX_up_ref(ctx);
    pthread_mutex_unlock(&cfg->lock);
    t->ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL holds its own */
    if (!t->ssl) goto fail;
    if (socket_bio(cfg)) {
        /* kTLS needs OpenSSL's socket BIO; the socket must not block. */
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || SSL_set_fd(t->ssl, fd) != 1) goto fail;
        SSL_set_options(t->ssl, SSL_OP_ENABLE_KTLS);
        t->kmode = true;
    } else {
        BIO *b = BIO_new(bio_method);
        if (!b) goto fail;
        BIO_set_data(b, t);
        SSL_set_bio(t->ssl, b, b); /* one reference, taken by the SSL */
        /* Read-ahead: OpenSSL takes whole buffers of t->in at a time
         * rather than a record header and a body. */
        SSL_set_read_ahead(t->ssl, 1);
    }
    if (server)
        SSL_set_accept_state(t->ssl);
    else
        SSL_set_connect_state(t->ssl);
    coru__tls_config_ref(cfg);
    t->cfg = cfg;
    *out = t;
    ERR_clear_error();
    return 0;
fail:
    ERR_clear_error();
    if (t) SSL_free(t->ssl);
    free(t);
    coru_close(fd);
    return rc;
}

int coru_tls_client(coru_tls **out, coru_tls_config *cfg, int fd, const char *host)
{
    if (!out || !cfg || fd < 0 || cfg->server || (cfg->verify && (!host || !*host))) {
        if (fd >= 0) coru_close(fd);
        return -EINVAL;
    }
    int rc = make(out, cfg, fd, false);
    if (rc) return rc;
    struct coru_tls *t = *out;
    if (host && *host) {
        unsigned char a[16];
        bool ip = inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
        bool ok = true;
        ERR_clear_error();
        if (ip) { /* no SNI for an address (RFC 6066, 3) */
            if (cfg->verify) ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) == 1;
        } else {
            ok = SSL_set_tlsext_host_name(t->ssl, host) == 1;
            if (ok && cfg->verify) {
                SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                ok = SSL_set1_host(t->ssl, host) == 1;
            }
        }
        ERR_clear_error();
        if (!ok) {
            coru_tls_close(t);
            *out = NULL;
            return -EINVAL;
        }
    }
    return 0;
}

int coru_tls_server(coru_tls **out, coru_tls_config *cfg, int fd)
{
    if (!out || !cfg || fd < 0 || !cfg->server) {
        if (fd >= 0) coru_close(fd);
        return -EINVAL;
    }
    return make(out, cfg, fd, true);
}

int coru_tls_set_session(coru_tls *t, const coru_tls_session *s)
{
    if (!t || !s || t->server || t->started) return -EINVAL;
    ERR_clear_error();
    int ok = SSL_set_session(t->ssl, (SSL_SESSION *)s);
    ERR_clear_error();
    return ok == 1 ? 0 : -EINVAL;
}

coru_tls_session *coru_tls_get_session(coru_tls *t)
{
    if (!t || t->server || !t->hs_done) return NULL;
    /* A copy, not the connection's own session: OpenSSL marks a session
     * not resumable when its connection later fails (an EOF without
     * close_notify is a failure), which would spoil what the caller
     * kept. */
    SSL_SESSION *live = SSL_get0_session(t->ssl);
    if (!live || !SSL_SESSION_is_resumable(live)) return NULL;
    ERR_clear_error();
    SSL_SESSION *s = SSL_SESSION_dup(live);
    ERR_clear_error();
    return (coru_tls_session *)s;
}

void coru_tls_session_free(coru_tls_session *s)
{
    SSL_SESSION_free((SSL_SESSION *)s);
}

int coru_tls_handshake(coru_tls *t, int64_t deadline)
{
    if (!t) return -EINVAL;
    if (t->err) return t->err;
    return handshake(t, deadline);
}

ssize_t coru_tls_read(coru_tls *t, void *buf, size_t n, int64_t deadline)
{
    if (!t || (!buf && n)) return -EINVAL;
    if (t->err) return t->err;
    int rc = handshake(t, deadline);
    if (rc) return rc;
    if (n == 0) return 0;
    return call(t, OP_READ, buf, n > INT_MAX ? INT_MAX : (int)n, deadline);
}

ssize_t coru_tls_write(coru_tls *t, const void *buf, size_t n, int64_t deadline)
{
    if (!t || (!buf && n) || n > SSIZE_MAX) return -EINVAL;
    if (t->err) return t->err;
    if (t->shut) return -EPIPE;
    int rc = handshake(t, deadline);
    if (rc) return rc;
    size_t done = 0;
    while (done < n) {
        int chunk = n - done > WRITE_CHUNK ? WRITE_CHUNK : (int)(n - done);
        int r = call(t, OP_WRITE, (char *)buf + done, chunk, deadline);
        if (r < 0) {
            t->err = r; /* part of the bytes may be out: the stream is done */
            return r;
        }
        done += (size_t)r;
    }
    return (ssize_t)n;
}

int coru_tls_shutdown(coru_tls *t, int64_t deadline)
{
    if (!t) return -EINVAL;
    if (t->shut) return 0;
    t->shut = true;
    int rc = 0;
    if (t->hs_done && !t->err) rc = call(t, OP_SHUTDOWN, NULL, 0, deadline);
    int sr = coru_shutdown(t->fd, SHUT_WR);
    return rc < 0 ? rc : sr;
}

int coru_tls_close(coru_tls *t)
{
    if (!t) return -EINVAL;
    SSL_free(t->ssl);
    ERR_clear_error();
    int rc = coru_close(t->fd);
    coru_tls_config_free(t->cfg);
    free(t->in);
    free(t->out);
    free(t);
    return rc;
}

const char *coru_tls_reason(const coru_tls *t)
{
    return t ? t->reason : "";
}

int coru_tls_fd(const coru_tls *t)
{
    return t ? t->fd : -EINVAL;
}

const char *coru_tls_alpn(const coru_tls *t)
{
    return t ? t->alpn : "";
}

const char *coru_tls_version(const coru_tls *t)
{
    return t && t->hs_done ? SSL_get_version(t->ssl) : "";
}

const char *coru_tls_cipher(const coru_tls *t)
{
    return t && t->hs_done ? SSL_get_cipher_name(t->ssl) : "";
}

int coru_tls_resumed(const coru_tls *t)
{
    return t && t->hs_done && SSL_session_reused(t->ssl) ? 1 : 0;
}

int coru_tls_ktls(const coru_tls *t)
{
    if (!t || !t->kmode) return 0;
    return (BIO_get_ktls_send(SSL_get_wbio(t->ssl)) ? 1 : 0) | (BIO_get_ktls_recv(SSL_get_rbio(t->ssl)) ? 2 : 0);
}
