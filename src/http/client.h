/* The HTTP client's internals shared by client.c (sessions, the pool,
 * names), client_io.c (the byte stream of a connection: plain TCP or TLS
 * over it) and client_body.c (one exchange, bodies, the public response
 * calls). Everything here uses the runtime through coru.h only, and TLS
 * through coru/tls.h only (client_io.c is the one file that calls it).
 *
 * Ownership: a session's hosts, idle lists, wait list and name cache are
 * under its lock (client.c, Invariants). A connection in use belongs to
 * the exchange or response using it, and a response to its caller.
 */
#ifndef CORU_HTTP_CLIENT_H
#define CORU_HTTP_CLIENT_H

#include <arpa/inet.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "coru.h"
#include "coru/http.h"
#include "coru/tls.h"
#include "buf.h"
#include "parse.h"
#include "url.h"

#define SEC INT64_C(1000000000)
#define CORU__HDNS_MAX 8

struct coru__hhost;

/* A connection's byte stream is its socket (tls NULL: plain TCP) or a TLS
 * stream over it (https: tls owns fd, and fd is kept for the idle check).
 * Every read, write and close goes through client_io.c, which picks
 * coru_read_dl / coru_write_all or coru_tls_read / coru_tls_write. */
struct coru__hconn {
    int fd;
    coru_tls *tls;
    bool session_kept;           /* its session went to h->session once */
    struct coru__hhost *h;
    struct coru__hconn *next;    /* idle list; the session's lock */
    int64_t idle_since;
    unsigned uses;               /* exchanges completed on it */
    char *buf;                   /* received bytes: [start, len) not yet used */
    size_t cap, len, start;
};

struct coru__hhost {
    char name[256];
    uint16_t port;
    bool https;
    coru_tls_session *session;   /* https: the latest resumable session of
                                    its connections, offered by the next
                                    dial; the session's lock */
    unsigned nconns;             /* open, idle or in use */
    struct coru__hconn *idle;    /* newest first */
    struct coru__hhost *next;
};

struct coru__hwaiter {
    struct coru__hwaiter *next;
    struct coru__hhost *h;
    bool fresh;                  /* wants a new connection, not an idle one */
    coru_sema *sem;
    struct coru__hconn *conn;    /* granted: an idle connection */
    bool slot;                   /* granted: room to dial */
};

struct coru__hdns {
    char host[256];
    char addrs[CORU__HDNS_MAX][INET6_ADDRSTRLEN];
    int n;
    int64_t expires;
    struct coru__hdns *next;
};

struct coru_http_client {
    struct coru_http_client_opts o; /* defaults filled in */
    pthread_mutex_t lock;
    struct coru__hhost *hosts;
    unsigned nconns;
    struct coru__hwaiter *wq;    /* FIFO */
    struct coru__hdns *dns;
    int64_t last_sweep;          /* of expire_idle, at most 10 a second */
    bool closing;
    coru_tls_config *tls_own;    /* the default TLS configuration, made at
                                    the first https dial when o.tls is NULL;
                                    the lock; freed by destroy */
};

#define CORU__HMAX_FIELDS 128

struct coru_http_response {
    struct coru_http_client *c;
    struct coru__hconn *conn;    /* NULL once given back or closed */
    int64_t deadline;            /* the request's */
    char *head;                  /* the head's bytes: the spans point here */
    bool head_only;              /* no body to read */
    bool done;                   /* the body was read to its end */
    bool reusable;               /* and the connection may be pooled */
    bool req_close;              /* the request said "Connection: close" */
    int err;                     /* a body error, sticky */
    /* decoded body bytes not yet handed out */
    char *pend;
    size_t plen, pcap, ppos;
    /* gzip */
    bool gzip;
    bool z_init, z_end;
    z_stream z;
    struct coru__http_msg msg;
    struct coru__http_limits lim;
    struct coru__http_parser parser;
    /* Large, and filled before use (not zeroed at allocation): */
    struct coru__url url;        /* the final one */
    struct coru__http_field fields[CORU__HMAX_FIELDS];
};

/* client.c */
int coru__hclient_get_conn(struct coru_http_client *c, const struct coru__url *u, bool fresh, int64_t deadline,
                           struct coru__hconn **out, bool *reused);
void coru__hclient_put_conn(struct coru_http_client *c, struct coru__hconn *k);
void coru__hclient_close_conn(struct coru_http_client *c, struct coru__hconn *k);

/* client_io.c: a connection's stream. read: up to n bytes, 0 at EOF
 * (TLS: close_notify), or -errno (TLS: -ECONNABORTED for an EOF without
 * close_notify); write: all n bytes or -errno; write2: a then b (plain:
 * one writev loop; TLS: two records, so callers put a small body into a
 * single buffer). All may park until the deadline. */
ssize_t coru__hconn_read(struct coru__hconn *k, void *buf, size_t n, int64_t deadline);
int coru__hconn_write(struct coru__hconn *k, const void *buf, size_t n, int64_t deadline);
int coru__hconn_write2(struct coru__hconn *k, const void *a, size_t na, const void *b, size_t nb, int64_t deadline);
/* Starts TLS on a connected socket fd for u's host h (a slot of h is
 * held): the configuration (o.tls, or the default made once), SNI and the
 * host check for u->host, h's session offered, the handshake within
 * tls_handshake_timeout. Returns 0 and k->tls (k->fd is fd), or -errno
 * with fd closed. */
int coru__hconn_tls_start(struct coru_http_client *c, struct coru__hhost *h, const struct coru__url *u, int fd,
                          struct coru__hconn *k, int64_t deadline);
/* Keeps k's TLS session as its host's latest (nothing for plain ones).
 * k->h must be alive: call it while k still counts in h->nconns. */
void coru__hconn_keep_session(struct coru_http_client *c, struct coru__hconn *k);
/* Closes k's stream (TLS: a close_notify tried once, never parking, then
 * the stream freed) and frees k. Never parks. */
void coru__hconn_free(struct coru__hconn *k);
/* Frees the session's TLS state: h's session (when its host is
 * forgotten), the default configuration (at destroy). */
void coru__hhost_free(struct coru__hhost *h);
void coru__hclient_tls_free(struct coru_http_client *c);

/* client_body.c, for the fuzzer and tests: reads one response from fd (its
 * own, closed on return) as a pooled connection of c would, body and all.
 * Returns the status (>= 100) or a negative errno; *body_len: the decoded
 * body bytes read. */
int coru__hclient_read_one(struct coru_http_client *c, int fd, bool head_request, size_t *body_len);

/* The earlier of a deadline and now + timeout (CORU_NEVER: none). */
static inline int64_t coru__hclient_min_dl(int64_t deadline, int64_t timeout)
{
    if (timeout == CORU_NEVER) return deadline;
    int64_t t = coru_now() + timeout;
    return deadline == CORU_NEVER || t < deadline ? t : deadline;
}

#endif
