/*
 * coru/http.h - an HTTP/1.1 server on coru: routes in the style of
 * aiohttp's web.Application, one coroutine per connection, handlers that
 * may park.
 *
 *     static int hello(coru_http_req *rq, coru_http_resp *rs, void *arg) {
 *         char body[128];
 *         int n = snprintf(body, sizeof body, "<h1>hello, %s</h1>",
 *                          coru_http_req_param(rq, "name"));
 *         return coru_http_resp_send(rs, 200, "text/html", body, (size_t)n);
 *     }
 *     ...
 *     coru_http_server *srv;
 *     coru_http_server_create(&srv, "127.0.0.1", 8000, NULL);
 *     coru_http_route(srv, "GET", "/hello/{name}", hello, NULL);
 *     coru_http_server_serve(srv);     // in a coroutine, until shut down
 *     coru_http_server_destroy(srv);
 *
 * Conventions are those of coru.h: errors are negative errno values,
 * "may park" means the call can suspend the calling coroutine, deadlines
 * are absolute times on coru_now()'s clock (CORU_NEVER: none). This layer
 * uses only coru.h, as an application would.
 *
 * What the server does by itself (a handler sees none of it):
 *   - HTTP/1.1 and 1.0. Keep-alive by default on 1.1 (on 1.0 only with
 *     "Connection: keep-alive"); "Connection: close" is honoured both
 *     ways. Pipelining: every complete request already received is parsed
 *     and answered in order, and the responses of one batch leave in one
 *     write.
 *   - Request bodies by Content-Length or chunked (decoded), up to
 *     max_body; "Expect: 100-continue" is answered with 100 Continue just
 *     before the body is read (or with 413 when it is too large, without
 *     reading it). HEAD is answered by the GET route: headers, no body.
 *   - Every response carries Date (formatted once a second per worker),
 *     Server, and Content-Length or chunked framing.
 *   - Errors, each a complete response, and a close where the stream can
 *     no longer be trusted: 400 malformed (including request smuggling:
 *     Content-Length with Transfer-Encoding, two Content-Lengths, a line
 *     folded with leading space or tab, a bare CR or LF, a bad chunk size,
 *     a flood of chunk extensions), 404 no route, 405 with Allow, 408 the
 *     head did not arrive in time, 413 body too large, 414 request line
 *     too long, 417 an Expect other than 100-continue, 431 header block
 *     too large or too many fields, 500 the handler failed before
 *     answering, 501 a transfer coding other than chunked, 505 a version
 *     other than 1.0 and 1.1.
 *   - Listening: one listener socket per worker, bound with SO_REUSEPORT,
 *     each with its own acceptor coroutine; the kernel spreads new
 *     connections over them. (Measured against one shared listener with
 *     multishot accept; see README.)
 *   - Above max_conns open connections it stops accepting until one
 *     closes: new connections wait in the kernel's backlog (on io_uring
 *     with multishot accept, up to about 64 per listener are accepted
 *     ahead and wait in coru).
 */
#ifndef CORU_HTTP_H
#define CORU_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <coru.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coru_http_server coru_http_server;
typedef struct coru_http_req coru_http_req;   /* valid during its handler */
typedef struct coru_http_resp coru_http_resp; /* valid during its handler */

/* A handler answers one request. It runs in the connection's coroutine
 * (it may park: sleep, channels, I/O, other HTTP calls), and requests of
 * one connection are handled one after another. Return 0 once it has
 * answered; a negative return before any byte of the answer was sent
 * makes the server answer 500; after, the connection is closed. A handler
 * that returns 0 without answering sends an empty 200, as Go's net/http
 * does. */
typedef int (*coru_http_handler)(coru_http_req *req, coru_http_resp *resp, void *arg);

/* Server options. Zero-initialise and set what you need: 0 means the
 * default given beside each field. Times are durations in nanoseconds;
 * CORU_NEVER turns a timeout off (then no timer is armed for it at all). */
struct coru_http_opts {
    size_t max_request_line;   /* request line bytes; default 8 KiB (414) */
    size_t max_header_bytes;   /* header block after the request line;
                                  default 16 KiB (431) */
    unsigned max_headers;      /* header fields; default 100 (431) */
    size_t max_body;           /* decoded request body; default 1 MiB (413) */
    int64_t header_timeout;    /* from a request's first byte to the end of
                                  its head; default 10 s (408, close) */
    int64_t body_timeout;      /* for the whole body once the head is in;
                                  default 30 s (408, close) */
    int64_t idle_timeout;      /* keep-alive: between requests; default
                                  60 s (close, no response) */
    int64_t write_timeout;     /* for each write of a response; default
                                  30 s (close) */
    unsigned max_conns;        /* open connections; default 10000 */
    unsigned listeners;        /* listener sockets; default one per worker
                                  (at most 64) */
    int backlog;               /* listen backlog; default SOMAXCONN */
    size_t stack_size;         /* connection coroutines' stacks; default the
                                  runtime's (coru_opts.stack_size) */
    const char *server_name;   /* the Server header; default "coru" */
};

/* Creates a server listening on host:port (host as coru_tcp_listen: a
 * numeric address, NULL or "" for all; port 0 picks a free port, see
 * coru_http_server_port). No request is served before
 * coru_http_server_serve. Any thread; never parks.
 * Returns 0 and *out, or -EINVAL (out NULL, a bad option or host),
 * -ENOMEM, or coru_tcp_listen's errors (-EADDRINUSE, ...). */
CORU_API int coru_http_server_create(coru_http_server **out, const char *host, uint16_t port,
                                     const struct coru_http_opts *opts);

/* The port the server listens on, or -EINVAL (s NULL). */
CORU_API int coru_http_server_port(const coru_http_server *s);

/* Adds a route: method (an HTTP token such as "GET"; "*" for any method)
 * and a pattern of '/'-separated segments, each literal, "{name}" (one
 * segment, given to the handler by coru_http_req_param), or, as the last
 * segment only, "{name...}" (the rest of the path, slashes included, at
 * least one character). A literal segment wins over {name}, and {name}
 * over {name...}, segment by segment. A path that matches a pattern but
 * not its method gets 405 with Allow; a GET route answers HEAD too.
 * Before coru_http_server_serve only (not while serving). Any thread.
 * Returns 0, or -EINVAL (NULL argument, pattern not starting with '/',
 * a bad method or segment, {name...} not last), -EEXIST (the same method
 * and pattern again), -EBUSY (serving), -ENOMEM. */
CORU_API int coru_http_route(coru_http_server *s, const char *method, const char *pattern, coru_http_handler h,
                             void *arg);

/* Serves until coru_http_server_shutdown and the end of the drain: starts
 * the listeners' acceptor coroutines, a coroutine per connection, and
 * returns once every connection is closed. From a coroutine; parks.
 * Returns 0 (after a shutdown), -EINVAL (s NULL), -EBUSY (already serving
 * or served once), -EPERM (not in a coroutine), -ENOMEM, or a listen
 * error of the extra listeners. A coru_cancel of the calling coroutine
 * acts as coru_http_server_shutdown(s, now): connections are cut. */
CORU_API int coru_http_server_serve(coru_http_server *s);

/* Graceful shutdown: stops accepting at once and closes the listeners,
 * closes idle keep-alive connections at once, lets requests in flight
 * finish (their connections close after the response), and at the
 * deadline cancels whatever is left (handlers then get -ECANCELED from
 * their blocking calls). coru_http_server_serve returns when the last
 * connection is gone. Any thread, or a signal-handling thread; never
 * parks. Returns 0, -EINVAL (s NULL), -EALREADY (already shutting down:
 * an earlier deadline still holds, a later call may only bring it
 * forward). */
CORU_API int coru_http_server_shutdown(coru_http_server *s, int64_t deadline);

/* Frees the server and closes its listeners. Not while serving. NULL is
 * ignored. */
CORU_API void coru_http_server_destroy(coru_http_server *s);

/* ------------------------------------------------------------------------
 * Requests. Strings are NUL-terminated and live until the handler returns.
 * ------------------------------------------------------------------------ */

/* "GET", "POST", ... as received (case-sensitive, as HTTP methods are). */
CORU_API const char *coru_http_req_method(const coru_http_req *r);
/* The request target as received: "/a%20b?x=1". */
CORU_API const char *coru_http_req_target(const coru_http_req *r);
/* The path, percent-decoded, without the query: "/a b". */
CORU_API const char *coru_http_req_path(const coru_http_req *r);
/* The first query parameter called name, decoded ('+' is a space, %XX a
 * byte), "" for "?name" or "?name=", or NULL when absent. */
CORU_API const char *coru_http_req_query(const coru_http_req *r, const char *name);
/* The route's path parameter called name, percent-decoded, or NULL. */
CORU_API const char *coru_http_req_param(const coru_http_req *r, const char *name);
/* The first header field called name (case-insensitive), its value with
 * surrounding blanks removed, or NULL. */
CORU_API const char *coru_http_req_header(const coru_http_req *r, const char *name);
/* The i-th header field in arrival order (repeated fields kept): 0 with
 * *name and *value, or -ENOENT past the last. */
CORU_API int coru_http_req_header_at(const coru_http_req *r, size_t i, const char **name, const char **value);
/* 10 for HTTP/1.0, 11 for HTTP/1.1. */
CORU_API int coru_http_req_version(const coru_http_req *r);
/* The decoded body (Content-Length or chunked), *len its size; an empty
 * body is a non-NULL pointer with *len 0. len may be NULL. */
CORU_API const void *coru_http_req_body(const coru_http_req *r, size_t *len);

/* ------------------------------------------------------------------------
 * Responses. A handler answers with coru_http_resp_send (the whole body at
 * once), or streams: status and headers first, then coru_http_resp_write
 * as often as needed and coru_http_resp_end. A streamed body is chunked on
 * HTTP/1.1 unless coru_http_resp_length declared its length first (then
 * exactly that many bytes must follow); on HTTP/1.0 it is sent without
 * framing and the connection closes after it. HEAD: the same calls, the
 * body bytes are dropped.
 * ------------------------------------------------------------------------ */

/* Sets the status (200..599; default 200). Before the head is sent only.
 * Returns 0, -EINVAL, -EALREADY (head already sent). */
CORU_API int coru_http_resp_status(coru_http_resp *w, int status);
/* Adds a header field. name must be a token, value free of CR, LF and
 * NUL; Content-Length, Transfer-Encoding, Date and Server are the
 * server's (-EINVAL; see coru_http_resp_length). "Connection: close"
 * makes the connection close after this response. Returns 0, -EINVAL,
 * -EALREADY (head already sent), -ENOMEM. */
CORU_API int coru_http_resp_header(coru_http_resp *w, const char *name, const char *value);
/* The whole response: status, Content-Type (NULL: none) and body (n bytes
 * at body, Content-Length n). Queued for the batch's write; parks only to
 * flush a large batch. Returns 0, -EINVAL (bad status, body NULL with
 * n > 0), -EALREADY (already answered or streaming), -ENOMEM, or the write's
 * errors (-EPIPE, -ECONNRESET, -ETIMEDOUT, -ECANCELED). */
CORU_API int coru_http_resp_send(coru_http_resp *w, int status, const char *content_type, const void *body, size_t n);
/* Declares the length of a streamed body (before the first write).
 * Returns 0, -EALREADY (head sent). */
CORU_API int coru_http_resp_length(coru_http_resp *w, uint64_t n);
/* Streams n bytes of body; the first call sends the head. May park (the
 * bytes go to the socket, not to a buffer that grows). Returns 0,
 * -EMSGSIZE (more than the declared length), -EALREADY (already ended),
 * or the write's errors (-EPIPE, -ECONNRESET, -ETIMEDOUT, -ECANCELED). */
CORU_API int coru_http_resp_write(coru_http_resp *w, const void *data, size_t n);
/* Ends a streamed body (the last chunk). Returns 0, -EALREADY (already
 * ended), -EPROTO (fewer bytes than the declared length were written: the
 * connection is closed), or the write's errors. May park. */
CORU_API int coru_http_resp_end(coru_http_resp *w);

#ifdef __cplusplus
}
#endif
#endif /* CORU_HTTP_H */
