/* The HTTP client's internals shared by client.c (sessions, the pool,
 * names) and client_body.c (one exchange, bodies, the public response
 * calls). Everything here uses the runtime through coru.h only.
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
#include "buf.h"
#include "parse.h"
#include "url.h"

#define SEC INT64_C(1000000000)
#define CORU__HDNS_MAX 8

struct coru__hhost;

struct coru__hconn {
    int fd;
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
