/* TLS configurations: one SSL_CTX per configuration (per certificate
 * pair on a server), its options, reload, and the kTLS probe. Uses the
 * runtime through coru.h only.
 *
 * Invariants:
 *   - refs counts the caller's reference (dropped by coru_tls_config_free)
 *     and one per open stream; the last drop frees the configuration.
 *   - cfg->ctx is the SSL_CTX new streams are made from, under cfg->lock
 *     (a server's reload swaps it); a stream's SSL holds its own reference
 *     to the SSL_CTX it was made from (SSL_new takes one), so a swap never
 *     frees a context in use.
 *   - Nothing here parks or does I/O on a coroutine's behalf; the
 *     OpenSSL error queue is emptied before each call that reports
 *     through it and read on the same thread right after.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tls.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

void coru__tls_why(char *why, size_t len, const char *fmt, ...)
{
    if (!why || !len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
}

/* The reason of the oldest error on the queue (the root cause), "" when
 * the queue is empty. */
static const char *queue_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_error();
    if (!e) return "";
    ERR_error_string_n(e, buf, len);
    return buf;
}

/* "h2,http/1.1" -> ALPN wire format (length-prefixed names). Returns the
 * length, 0 for "", or -EINVAL. */
static int alpn_wire(const char *list, unsigned char *out, size_t cap)
{
    size_t n = 0;
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 0 || l > 255 || n + 1 + l > cap) return -EINVAL;
        out[n++] = (unsigned char)l;
        memcpy(out + n, p, l);
        n += l;
        p += l;
        if (*p == ',') p++;
    }
    return (int)n;
}

/* Server ALPN: the first of our protocols the client offers; a client
 * offering ALPN but none of ours gets no_application_protocol (RFC 7301,
 * 3.2). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned inlen, void *arg)
{
    struct coru_tls_config *cfg = arg;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, cfg->alpn, cfg->alpn_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int file_error(const char *what, const char *path, char *why, size_t why_len)
{
    if (access(path, R_OK) != 0) {
        int e = errno;
        coru__tls_why(why, why_len, "%s %s: %s", what, path, strerror(e));
        return e == EACCES ? -EACCES : -ENOENT;
    }
    return 0;
}

/* Loads the chain and key into ctx: 0, -ENOENT, -EBADMSG, -EKEYREJECTED. */
static int load_pair(SSL_CTX *ctx, const char *cert, const char *key, char *why, size_t why_len)
{
    char buf[256];
    int rc = file_error("certificate file", cert, why, why_len);
    if (!rc) rc = file_error("key file", key, why, why_len);
    if (rc) return rc;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        coru__tls_why(why, why_len, "certificate file %s: %s", cert, queue_reason(buf, sizeof buf));
        return ERR_GET_LIB(ERR_peek_error()) == ERR_LIB_SYS ? -ENOENT : -EBADMSG;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_error();
        coru__tls_why(why, why_len, "key file %s: %s%s", key, queue_reason(buf, sizeof buf),
                      ERR_GET_LIB(e) == ERR_LIB_PEM || ERR_GET_LIB(e) == ERR_LIB_UI || ERR_GET_LIB(e) == ERR_LIB_PROV
                          ? " (an encrypted key? keys with a pass phrase are not supported)"
                          : "");
        /* A well-formed key of another certificate fails here already
         * (X509_R_KEY_VALUES_MISMATCH). */
        return ERR_GET_LIB(e) == ERR_LIB_X509 &&
                       (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH || ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH)
                   ? -EKEYREJECTED
                   : -EBADMSG;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        coru__tls_why(why, why_len, "key file %s does not match certificate %s: %s", key, cert,
                      queue_reason(buf, sizeof buf));
        return -EKEYREJECTED;
    }
    ERR_clear_error();
    return 0;
}

/* No pass phrase: an encrypted key fails to load (-EBADMSG) instead of
 * OpenSSL's default of asking the terminal, which would block a worker
 * (or read the process's stdin). */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

static int version_of(int v)
{
    return v == 0 || v == 12 ? TLS1_2_VERSION : v == 13 ? TLS1_3_VERSION : -1;
}

/* A fresh SSL_CTX with what every configuration shares. */
static SSL_CTX *base_ctx(bool server, int min_version)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx) return NULL;
    SSL_CTX_set_min_proto_version(ctx, min_version);
    /* No renegotiation (TLS 1.2): a write never has to wait for a read of
     * a renegotiation, and a classic DoS is gone. Release the record
     * buffers while a connection is idle (as nginx does): 10,000 idle
     * keep-alive connections then hold no 34 KiB of buffers each. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    return ctx;
}

static void drop(struct coru_tls_config *cfg)
{
    SSL_CTX_free(cfg->ctx);
    free(cfg->cert_file);
    free(cfg->key_file);
    free(cfg->client_ca_file);
    pthread_mutex_destroy(&cfg->lock);
    free(cfg);
}

/* What both kinds share: the version floor and the ALPN list, checked.
 * NULL with *rc (and why) when an option is bad or memory is out. */
static struct coru_tls_config *new_config(bool server, int no_ktls, int min_version, const char *alpn, char *why,
                                          size_t why_len, int *rc)
{
    int minv = version_of(min_version);
    if (minv < 0) {
        coru__tls_why(why, why_len, "min_version %d: 12 or 13", min_version);
        *rc = -EINVAL;
        return NULL;
    }
    struct coru_tls_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        *rc = -ENOMEM;
        return NULL;
    }
    atomic_init(&cfg->refs, 1);
    cfg->server = server;
    cfg->ktls = !no_ktls;
    cfg->min_version = minv;
    pthread_mutex_init(&cfg->lock, NULL);
    int n = alpn_wire(alpn ? alpn : "http/1.1", cfg->alpn, sizeof cfg->alpn);
    if (n < 0) {
        coru__tls_why(why, why_len, "bad ALPN list \"%s\"", alpn);
        *rc = -EINVAL;
        drop(cfg);
        return NULL;
    }
    cfg->alpn_len = (unsigned)n;
    return cfg;
}

int coru_tls_client_config(coru_tls_config **out, const struct coru_tls_client_opts *opts, char *why,
                           size_t why_len)
{
    coru__tls_why(why, why_len, "%s", "");
    if (!out) return -EINVAL;
    struct coru_tls_client_opts o = {0};
    if (opts) o = *opts;
    int rc;
    struct coru_tls_config *cfg = new_config(false, o.no_ktls, o.min_version, o.alpn, why, why_len, &rc);
    if (!cfg) return rc;
    rc = -ENOMEM;
    char buf[256];
    ERR_clear_error();
    if (!(cfg->ctx = base_ctx(false, cfg->min_version))) goto fail;
    cfg->verify = !o.insecure_skip_verify;
    if (cfg->verify) {
        SSL_CTX_set_verify(cfg->ctx, SSL_VERIFY_PEER, NULL);
        if (o.ca_file && (rc = file_error("CA file", o.ca_file, why, why_len))) goto fail;
        if (o.ca_dir && (rc = file_error("CA directory", o.ca_dir, why, why_len))) goto fail;
        if (o.ca_file || o.ca_dir) {
            if (SSL_CTX_load_verify_locations(cfg->ctx, o.ca_file, o.ca_dir) != 1) {
                coru__tls_why(why, why_len, "CA file %s: %s", o.ca_file ? o.ca_file : o.ca_dir,
                              queue_reason(buf, sizeof buf));
                rc = -EBADMSG;
                goto fail;
            }
        } else if (SSL_CTX_set_default_verify_paths(cfg->ctx) != 1) {
            coru__tls_why(why, why_len, "system CA store: %s", queue_reason(buf, sizeof buf));
            rc = -ENOENT;
            goto fail;
        }
    } else {
        SSL_CTX_set_verify(cfg->ctx, SSL_VERIFY_NONE, NULL);
    }
    if (o.cert_file || o.key_file) {
        if (!o.cert_file || !o.key_file) {
            coru__tls_why(why, why_len, "a client certificate needs both cert_file and key_file");
            rc = -EINVAL;
            goto fail;
        }
        if ((rc = load_pair(cfg->ctx, o.cert_file, o.key_file, why, why_len))) goto fail;
    }
    if (cfg->alpn_len && SSL_CTX_set_alpn_protos(cfg->ctx, cfg->alpn, cfg->alpn_len) != 0) goto fail;
    ERR_clear_error();
    *out = cfg;
    return 0;
fail:
    if (rc == -ENOMEM && why && !*why) coru__tls_why(why, why_len, "out of memory");
    ERR_clear_error();
    drop(cfg);
    return rc;
}

/* A server SSL_CTX for the pair: 0 and *out, or the loading errors. */
static int server_ctx(struct coru_tls_config *cfg, const char *cert, const char *key, SSL_CTX **out, char *why,
                      size_t why_len)
{
    char buf[256];
    ERR_clear_error();
    SSL_CTX *ctx = base_ctx(true, cfg->min_version);
    if (!ctx) return -ENOMEM;
    int rc = load_pair(ctx, cert, key, why, why_len);
    if (rc) goto fail;
    /* Sessions resumed by ticket (stateless: nothing to share between
     * workers). One ticket per full handshake: enough for the one
     * resumption a pooled client makes per connection, and one
     * encryption less per handshake than OpenSSL's default of two. */
    static const unsigned char sid[] = "coru";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (cfg->no_tickets) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
    } else {
        SSL_CTX_set_num_tickets(ctx, 1);
    }
    if (cfg->alpn_len) SSL_CTX_set_alpn_select_cb(ctx, alpn_select, cfg);
    if (cfg->client_ca_file) {
        if ((rc = file_error("client CA file", cfg->client_ca_file, why, why_len))) goto fail;
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->client_ca_file);
        if (!names || SSL_CTX_load_verify_locations(ctx, cfg->client_ca_file, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            coru__tls_why(why, why_len, "client CA file %s: %s", cfg->client_ca_file,
                          queue_reason(buf, sizeof buf));
            rc = -EBADMSG;
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    ERR_clear_error();
    *out = ctx;
    return 0;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return rc;
}

int coru_tls_server_config(coru_tls_config **out, const struct coru_tls_server_opts *opts, char *why,
                           size_t why_len)
{
    coru__tls_why(why, why_len, "%s", "");
    if (!out || !opts || !opts->cert_file || !opts->key_file) {
        coru__tls_why(why, why_len, "a server configuration needs cert_file and key_file");
        return -EINVAL;
    }
    int rc;
    struct coru_tls_config *cfg =
        new_config(true, opts->no_ktls, opts->min_version, opts->alpn, why, why_len, &rc);
    if (!cfg) return rc;
    cfg->no_tickets = opts->no_tickets != 0;
    rc = -ENOMEM;
    cfg->cert_file = strdup(opts->cert_file);
    cfg->key_file = strdup(opts->key_file);
    if (opts->client_ca_file && !(cfg->client_ca_file = strdup(opts->client_ca_file))) goto fail;
    if (!cfg->cert_file || !cfg->key_file) goto fail;
    if ((rc = server_ctx(cfg, cfg->cert_file, cfg->key_file, &cfg->ctx, why, why_len))) goto fail;
    *out = cfg;
    return 0;
fail:
    drop(cfg);
    return rc;
}

int coru_tls_config_reload(coru_tls_config *cfg, const char *cert_file, const char *key_file, char *why,
                           size_t why_len)
{
    coru__tls_why(why, why_len, "%s", "");
    if (!cfg || !cfg->server) return -EINVAL;
    /* The file names are read and replaced under the lock; the files
     * themselves are loaded outside it (handshakes keep starting from the
     * old context meanwhile). */
    pthread_mutex_lock(&cfg->lock);
    char *cert = strdup(cert_file ? cert_file : cfg->cert_file);
    char *key = strdup(key_file ? key_file : cfg->key_file);
    pthread_mutex_unlock(&cfg->lock);
    SSL_CTX *ctx = NULL;
    int rc = cert && key ? server_ctx(cfg, cert, key, &ctx, why, why_len) : -ENOMEM;
    if (rc) {
        free(cert);
        free(key);
        return rc;
    }
    pthread_mutex_lock(&cfg->lock);
    SSL_CTX *old = cfg->ctx;
    /* The new context keeps the old one's ticket keys, so that clients
     * holding tickets still resume after a certificate change. */
    unsigned char keys[80];
    if (!cfg->no_tickets && SSL_CTX_get_tlsext_ticket_keys(old, keys, sizeof keys) == 1)
        SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof keys);
    OPENSSL_cleanse(keys, sizeof keys);
    cfg->ctx = ctx;
    free(cfg->cert_file);
    free(cfg->key_file);
    cfg->cert_file = cert;
    cfg->key_file = key;
    pthread_mutex_unlock(&cfg->lock);
    SSL_CTX_free(old); /* streams made from it hold their own references */
    return 0;
}

void coru__tls_config_ref(struct coru_tls_config *cfg)
{
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
}

void coru_tls_config_free(coru_tls_config *cfg)
{
    if (!cfg) return;
    /* acq_rel: the last dropper sees every other holder's writes. */
    if (atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) != 1) return;
    drop(cfg);
}

/* kTLS: the "tls" upper-layer protocol answers ENOTCONN on a socket that
 * is not connected yet when the module is there, ENOENT when it is not
 * (ENOPROTOOPT: a kernel without TCP_ULP; EPERM, EOPNOTSUPP: a sandbox):
 * only ENOTCONN counts. An OpenSSL built without kTLS never has it.
 * CORU_TLS_KTLS=0 in the environment turns it off. */
static _Atomic int ktls_state; /* 0 unknown, 1 yes, 2 no */

int coru_tls_ktls_available(void)
{
    int s = atomic_load_explicit(&ktls_state, memory_order_relaxed);
    if (s) return s == 1;
    const char *env = getenv("CORU_TLS_KTLS");
    bool yes = false;
#ifndef OPENSSL_NO_KTLS
    if (!env || strcmp(env, "0") != 0) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
            yes = setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", 3) != 0 && errno == ENOTCONN;
            close(fd);
        }
    }
#else
    (void)env;
#endif
    atomic_store_explicit(&ktls_state, yes ? 1 : 2, memory_order_relaxed);
    return yes;
}
