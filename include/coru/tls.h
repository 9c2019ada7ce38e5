/*
 * coru/tls.h - TLS streams on coru, over OpenSSL 3: a TLS session wrapped
 * around a connected TCP socket, read and written by coroutines that park
 * on their worker's engine as for plain coru_read and coru_write.
 *
 *     coru_tls_config *cfg;                      // once, shared by all
 *     coru_tls_client_config(&cfg, NULL, NULL, 0); // system CAs, verify on
 *     int fd = coru_tcp_connect("example.org", 443, dl);
 *     coru_tls *t;
 *     coru_tls_client(&t, cfg, fd, "example.org"); // t owns fd now
 *     int rc = coru_tls_handshake(t, dl);
 *     if (rc < 0) fprintf(stderr, "%s\n", coru_tls_reason(t));
 *     coru_tls_write(t, req, len, dl);
 *     ssize_t n = coru_tls_read(t, buf, sizeof buf, dl);
 *     coru_tls_shutdown(t, dl);                  // close_notify
 *     coru_tls_close(t);                         // frees t, closes fd
 *     coru_tls_config_free(cfg);
 *
 * Conventions are those of coru.h: errors are negative errno values,
 * "may park" means the call can suspend the calling coroutine, deadlines
 * are absolute times on coru_now()'s clock (CORU_NEVER: none), a
 * coru_cancel of the caller makes the call return -ECANCELED.
 *
 * How the bytes move. OpenSSL never touches the socket: each stream has
 * a custom BIO whose read side hands OpenSSL ciphertext from a buffer
 * that coru_read_dl filled, and whose write side appends to a buffer that
 * coru_write_all then drains. Every OpenSSL call therefore returns at
 * once (never blocks a worker), and the parking happens between OpenSSL
 * calls, on coru's own I/O calls, so a cancelled or timed-out coroutine
 * leaves OpenSSL in a state it can resume or free. The rules of
 * SSL_get_error(3) are kept: the thread's error queue is cleared before
 * each SSL call and read right after it, with no park in between; a read
 * that needs to write (a TLS 1.3 key update, a post-handshake message)
 * writes, and a write that needs to read reads; a retried SSL_write gets
 * the same arguments.
 *
 * With kTLS (Linux's "tls" module, TCP_ULP) the kernel encrypts and
 * decrypts records after the handshake: then the stream gives OpenSSL the
 * socket itself (non-blocking, SSL_OP_ENABLE_KTLS) and parks in coru_poll
 * when OpenSSL would block. Whether the module is there is probed at run
 * time, once; without it (the common case in containers) the stream uses
 * the BIO above. coru_tls_ktls says which a stream got. (OpenSSL writes
 * such a socket without MSG_NOSIGNAL: on a plain thread the call blocks
 * SIGPIPE around each SSL call and takes back one it raised, as coru's
 * own writes do; workers block it anyway.)
 *
 * Threads. A stream is used by one coroutine at a time (a reader and a
 * writer on two coroutines need a coru_mutex between them, as OpenSSL's
 * SSL objects allow no concurrent calls). It may move between workers
 * between calls: OpenSSL 3 binds nothing of an SSL object to a thread;
 * what is per thread is the error queue (consumed before the call
 * returns, on the thread that filled it) and the random generators
 * (used within one call). A config is shared by any number of streams on
 * any threads (SSL_CTX is thread-safe once set up; reload swaps it under
 * a lock).
 *
 * Errors of the calls below, beyond those of coru_read/coru_write
 * (-ETIMEDOUT, -ECANCELED, -ECONNRESET, -EPIPE, -EBADF):
 *   -EKEYEXPIRED   the peer's certificate has expired or is not yet valid
 *   -EKEYREJECTED  the peer's certificate is not for the host name (or IP)
 *                  asked for, or fails verification otherwise (bad
 *                  signature, wrong purpose, ...)
 *   -ENOKEY        the peer's certificate chain leads to no trusted CA
 *                  (unknown issuer, self-signed), or the peer sent none
 *                  where one is required
 *   -EKEYREVOKED   the peer's certificate is revoked
 *   -EPROTO        a TLS protocol failure: bytes that are not TLS, an
 *                  alert from the peer, no common version, cipher or
 *                  ALPN protocol
 *   -ECONNABORTED  the TCP stream ended without close_notify (the data
 *                  may be truncated: an attacker can cut a connection
 *                  but cannot forge close_notify)
 *   -ENOMEM
 * coru_tls_reason gives the text of the last failure on a stream:
 * "certificate verify failed: certificate has expired", "tlsv1 alert
 * unknown ca (alert from the peer)", "the connection ended without
 * close_notify (unexpected eof while reading)", ...
 */
#ifndef CORU_TLS_H
#define CORU_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <coru.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coru_tls_config coru_tls_config; /* SSL_CTX and options */
typedef struct coru_tls coru_tls;               /* one stream */
typedef struct coru_tls_session coru_tls_session; /* a resumable session */

/* ------------------------------------------------------------------------
 * Configurations. Made once, shared by every stream of one kind; any
 * thread, never park. The file names are PEM files. `why` (may be NULL)
 * receives a readable reason for a failure, NUL-terminated, at most
 * why_len bytes.
 * ------------------------------------------------------------------------ */

struct coru_tls_client_opts {
    const char *ca_file;     /* trusted CAs (PEM bundle); NULL: the system
                                store (OpenSSL's default paths, which
                                honour SSL_CERT_FILE and SSL_CERT_DIR) */
    const char *ca_dir;      /* a hashed directory of CAs (c_rehash); NULL:
                                none beyond the above */
    const char *cert_file;   /* a client certificate chain to present when
                                the server asks, with key_file; NULL: none */
    const char *key_file;
    const char *alpn;        /* protocols offered by ALPN, comma-separated
                                ("h2,http/1.1"); NULL: "http/1.1"; "": no
                                ALPN */
    int min_version;         /* 12 or 13 (TLS 1.2, 1.3); 0: 12 */
    int no_ktls;             /* non-zero: never kTLS */
    /* Non-zero turns certificate verification OFF: any certificate, any
     * name is accepted, and a man in the middle reads everything. For
     * tests against throw-away certificates only. */
    int insecure_skip_verify;
};

/* A client configuration: TLS 1.2 and 1.3, certificates verified against
 * ca_file/ca_dir or the system store, the host name checked, SNI sent.
 * opts NULL: all defaults. Returns 0 and *out, -EINVAL (out NULL, a bad
 * option), -ENOENT (a file is missing), -EACCES (not readable), -EBADMSG
 * (a file is not PEM of the right kind, or a key is encrypted: keys with
 * a pass phrase are not supported, and nothing ever asks for one),
 * -EKEYREJECTED (the key does not match the certificate), -ENOMEM. */
CORU_API int coru_tls_client_config(coru_tls_config **out, const struct coru_tls_client_opts *opts, char *why,
                                    size_t why_len);

struct coru_tls_server_opts {
    const char *cert_file;   /* the certificate chain, leaf first (required) */
    const char *key_file;    /* its private key (required) */
    const char *alpn;        /* protocols accepted, in order of preference,
                                comma-separated; NULL: "http/1.1"; "": no
                                ALPN. A client offering ALPN but none of
                                these fails with an alert
                                (no_application_protocol), as RFC 7301
                                says; a client offering none is served. */
    const char *client_ca_file; /* non-NULL: ask every client for a
                                certificate and require one that chains to
                                these CAs */
    int min_version;         /* 12 or 13; 0: 12 */
    int no_ktls;             /* non-zero: never kTLS */
    int no_tickets;          /* non-zero: no session tickets (a client then
                                cannot resume) */
};

/* A server configuration. Returns 0 and *out, or the errors of
 * coru_tls_client_config (-EINVAL also when cert_file or key_file is
 * NULL). */
CORU_API int coru_tls_server_config(coru_tls_config **out, const struct coru_tls_server_opts *opts, char *why,
                                    size_t why_len);

/* Server: reads the certificate chain and key again (cert_file and
 * key_file; NULL: the same files as before) and serves every later
 * handshake with them; streams already made keep theirs. Nothing changes
 * when the new pair fails to load. Session tickets issued before the
 * reload still resume after it (the ticket keys are kept). Any thread,
 * at any time (for instance on SIGHUP, from a coroutine the handler
 * woke). Returns 0, -EINVAL (a client configuration, or cfg NULL), or the
 * loading errors above (-ENOENT, -EACCES, -EBADMSG, -EKEYREJECTED,
 * -ENOMEM). */
CORU_API int coru_tls_config_reload(coru_tls_config *cfg, const char *cert_file, const char *key_file, char *why,
                                    size_t why_len);

/* Drops the caller's reference; the configuration goes when its last
 * stream is closed too. NULL is ignored. */
CORU_API void coru_tls_config_free(coru_tls_config *cfg);

/* Whether this kernel offers kTLS (the "tls" TCP ULP): 1 or 0, probed
 * once. */
CORU_API int coru_tls_ktls_available(void);

/* ------------------------------------------------------------------------
 * Streams
 * ------------------------------------------------------------------------ */

/* A client stream on a connected socket fd, for host: the name sent by
 * SNI and checked against the certificate (an IP literal is checked as
 * an address and sent no SNI, as RFC 6066 says). host NULL or "" sends
 * no SNI and is allowed only with insecure_skip_verify (a certificate
 * checked against no name proves nothing). The stream owns fd from here
 * on, even on failure (then fd is closed). No I/O yet: the handshake runs
 * in coru_tls_handshake, or in the first read or write. Returns 0 and
 * *out, -EINVAL (NULL out or cfg, fd < 0, a server configuration, no
 * host while verifying), -ENOMEM. */
CORU_API int coru_tls_client(coru_tls **out, coru_tls_config *cfg, int fd, const char *host);
/* A server stream on an accepted socket fd (owned as above). Returns 0
 * and *out, -EINVAL (a client configuration, ...), -ENOMEM. */
CORU_API int coru_tls_server(coru_tls **out, coru_tls_config *cfg, int fd);

/* Client, before the handshake: offers session s for resumption (an
 * abbreviated handshake without certificates, when the server agrees).
 * Returns 0, -EINVAL (NULL, a server stream, after the handshake began). */
CORU_API int coru_tls_set_session(coru_tls *t, const coru_tls_session *s);
/* Client: the session to resume later connections to the same server
 * with, or NULL (none yet: TLS 1.3 servers send their tickets after the
 * handshake, so ask after the first read; or not resumable). The caller
 * owns the reference: coru_tls_session_free. */
CORU_API coru_tls_session *coru_tls_get_session(coru_tls *t);
CORU_API void coru_tls_session_free(coru_tls_session *s);

/* Runs the handshake to its end (a no-op once done). May park. Returns 0,
 * or the errors above. After -ETIMEDOUT or -ECANCELED while it waited for
 * the peer's bytes it may be called again; after any other failure the
 * stream can only be closed. */
CORU_API int coru_tls_handshake(coru_tls *t, int64_t deadline);

/* Reads up to n bytes of plaintext (handshaking first if needed). May
 * park. Returns the count (> 0), 0 once the peer sent close_notify, or
 * -errno (-ECONNABORTED: EOF without close_notify). n 0 returns 0. A read
 * that timed out or was cancelled while waiting took nothing and may be
 * repeated (also in the middle of a record). */
CORU_API ssize_t coru_tls_read(coru_tls *t, void *buf, size_t n, int64_t deadline);
/* Writes all n bytes (handshaking first if needed). May park. Returns n
 * or -errno; after an error part of the bytes may have been sent, and
 * the stream can only be closed. */
CORU_API ssize_t coru_tls_write(coru_tls *t, const void *buf, size_t n, int64_t deadline);
/* Sends close_notify (once; later calls return 0) and shuts the socket's
 * write side; it does not wait for the peer's close_notify (read to 0
 * for that). Before the handshake or after a failure it sends nothing and
 * only shuts the socket's write side. May park. Returns 0 or -errno. */
CORU_API int coru_tls_shutdown(coru_tls *t, int64_t deadline);
/* Frees the stream and closes its socket (no close_notify: call
 * coru_tls_shutdown first for a clean end). Returns coru_close's result.
 * NULL: -EINVAL. Never parks. */
CORU_API int coru_tls_close(coru_tls *t);

/* The text of the stream's last failure, "" if none. Lives as long as
 * the stream. */
CORU_API const char *coru_tls_reason(const coru_tls *t);
/* The socket. */
CORU_API int coru_tls_fd(const coru_tls *t);
/* After the handshake: the ALPN protocol chosen ("" none), the version
 * ("TLSv1.3"), the cipher suite ("TLS_AES_256_GCM_SHA384"), whether the
 * session was resumed (1/0), and kTLS: bit 0 send, bit 1 receive. */
CORU_API const char *coru_tls_alpn(const coru_tls *t);
CORU_API const char *coru_tls_version(const coru_tls *t);
CORU_API const char *coru_tls_cipher(const coru_tls *t);
CORU_API int coru_tls_resumed(const coru_tls *t);
CORU_API int coru_tls_ktls(const coru_tls *t);

#ifdef __cplusplus
}
#endif
#endif /* CORU_TLS_H */
