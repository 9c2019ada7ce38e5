/* The HTTP server's internals shared by server.c (lifecycle, listeners,
 * connection registry, shutdown), conn.c (the per-connection loop),
 * resp.c (requests and responses as handlers see them) and date.c.
 * Everything here uses the runtime through coru.h only.
 *
 * Ownership: a struct coru__http_conn belongs to its connection's
 * coroutine; the server reads three fields of it under s->lock (its list
 * links, its handle, its state) to close idle connections and to cut the
 * rest at the shutdown deadline.
 */
#ifndef CORU_HTTP_INTERNAL_H
#define CORU_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "coru.h"
#include "coru/http.h"
#include "buf.h"
#include "parse.h"
#include "router.h"

/* A byte stream the connection loop reads and writes: a socket, or (for
 * the fuzzer and tests) memory. read: up to n bytes, 0 at EOF, or -errno;
 * write: all n bytes or -errno. Both may park until the deadline. */
struct coru__http_io {
    ssize_t (*read)(void *ctx, void *buf, size_t n, int64_t deadline);
    ssize_t (*write)(void *ctx, const void *buf, size_t n, int64_t deadline);
    void *ctx;
};

enum { CONN_BUSY = 0, CONN_IDLE = 1, CONN_CLOSING = 2 };

struct coru__http_conn {
    struct coru_http_server *s;
    struct coru__http_io io;
    int fd;                       /* -1 for memory streams */
    coru_t *h;                    /* its coroutine; s->lock */
    struct coru__http_conn *prev, *next; /* s->conns; s->lock */
    _Atomic int state;            /* CONN_*: idle between requests; see server.c */
    /* input: buf[0..len) received; the current request starts at `start` */
    char *buf;
    size_t cap, len, start;
    /* output: responses queued for the batch's one write */
    char *out;
    size_t olen, ocap;
    bool broken;                  /* a write failed: stop */
    /* the current request's decoded body */
    char *body;
    size_t blen, bcap;
    /* scratch for decoded strings of the current request */
    char *scratch;
    size_t scap, sused;
    void *scratch_extra;          /* blocks past scratch, freed per request */
    struct coru__http_parser parser;
    struct coru__http_field *fields; /* max_headers of them */
};

struct coru_http_server {
    struct coru_http_opts o;      /* with the defaults filled in */
    struct coru__http_limits lim;
    char host[64];
    bool host_any;
    uint16_t port;
    int lfd0;                     /* the first listener, made by create */
    struct coru__router router;
    _Atomic int phase;            /* SRV_* */
    pthread_mutex_t lock;         /* conns, nconns, deadline */
    struct coru__http_conn *conns;
    unsigned nconns;
    int64_t deadline;             /* shutdown's; lock */
    coru_chan *stop;              /* shutdown -> serve: one token */
    coru_sema *slots;             /* max_conns units */
    coru_waitgroup *live;         /* connection coroutines alive */
    size_t name_len;              /* the Server header */
};

enum { SRV_NEW = 0, SRV_SERVING = 1, SRV_DRAINING = 2, SRV_DONE = 3 };

/* conn.c: runs one connection until it closes (the calling coroutine's
 * job; parks). c is filled by the caller (s, io, fd); the loop owns the
 * buffers and frees them before returning. */
void coru__http_conn_run(struct coru__http_conn *c);
/* server.c: whether the server is draining (seq_cst: see server.c). */
bool coru__http_draining(const struct coru_http_server *s);

/* The request and response as a handler sees them (on the connection
 * coroutine's stack for one request). */
struct coru_http_req {
    struct coru__http_conn *c;
    struct coru__http_msg *msg;
    const char *path;             /* decoded */
    const char *query;            /* raw, after '?', or NULL */
    size_t query_len;
    struct coru__route_match *match;
};

struct coru_http_resp {
    struct coru__http_conn *c;
    int status;
    int version;                  /* the request's: 10 or 11 */
    bool head_only;               /* HEAD: no body bytes */
    bool head_sent, ended, answered;
    bool close;                   /* Connection: close after this one */
    bool has_length, chunked, until_close;
    uint64_t length, written;
    char *hdrs;                   /* the handler's header lines, "N: V\r\n" */
    size_t hlen, hcap;
};

/* resp.c */
void coru__http_resp_init(struct coru_http_resp *w, struct coru__http_conn *c, int version, bool head_only);
void coru__http_resp_fini(struct coru_http_resp *w);
/* Finishes what the handler left: an unanswered request gets an empty
 * 200 (rc == 0) or a 500 (rc < 0); an unended stream is ended (rc == 0)
 * or cut (rc < 0: the connection closes). Returns whether the connection
 * may stay open. */
bool coru__http_resp_finish(struct coru_http_resp *w, int rc);
/* A complete error response from the server itself (with "Connection:
 * close" when close). allow: the Allow value for 405, or NULL. */
void coru__http_error(struct coru__http_conn *c, int status, bool close, const char *allow, int version);
/* Queues bytes on the output (growing it); false when out of memory. */
bool coru__http_out(struct coru__http_conn *c, const void *p, size_t n);
/* Writes the queued output; false when the write failed (c->broken). */
bool coru__http_flush(struct coru__http_conn *c);
/* Strings that live until the request ends; NULL when out of memory. */
char *coru__http_scratch(struct coru__http_conn *c, size_t n);
/* Ends the request's scratch strings. */
void coru__http_scratch_reset(struct coru__http_conn *c);

/* The deadline of a timeout option from now: CORU_NEVER for none. */
static inline int64_t coru__http_after(int64_t timeout)
{
    return timeout == CORU_NEVER ? CORU_NEVER : coru_now() + timeout;
}

/* date.c: "Date: <IMF-fixdate>\r\n" of the current second, formatted
 * once a second per worker. Returns its length (37) and copies it to
 * dst. */
size_t coru__http_date(char *dst);

#endif
