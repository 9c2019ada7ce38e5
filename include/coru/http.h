/*
 * coru/http.h - an HTTP/1.1 server and client on coru. The server: routes
 * in the style of aiohttp's web.Application, one coroutine per connection,
 * handlers that may park. The client (below the server): one session with
 * a pool of keep-alive connections shared by many coroutines.
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
#include <coru/tls.h>

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
    /* HTTPS: a TLS server configuration (coru_tls_server_config) makes
     * every connection TLS; NULL: plain HTTP. The caller keeps it until
     * coru_http_server_destroy, and may coru_tls_config_reload it while
     * serving (new connections get the new certificate). */
    coru_tls_config *tls;
    int64_t tls_handshake_timeout; /* for the whole TLS handshake from
                                  the accept; default 10 s (close, no
                                  response: a slow handshake is a
                                  slowloris too) */
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

/* ------------------------------------------------------------------------
 * Client
 *
 * One session (coru_http_client) is shared by any number of coroutines on
 * any worker, as aiohttp's ClientSession or Go's http.Client:
 *
 *     coru_http_client *cl;
 *     coru_http_client_create(&cl, NULL);
 *     int status; char *body; size_t len;
 *     coru_http_get(cl, "https://example.org/", &status, &body, &len,
 *                   coru_now() + 5000000000LL);
 *     free(body);
 *     coru_http_client_destroy(cl);
 *
 * What it does by itself:
 *   - http:// and https:// alike, everywhere: "https://" is HTTP/1.1 over
 *     TLS (coru/tls.h), port 443 by default. The TLS handshake follows the
 *     TCP connect of each new connection, within tls_handshake_timeout;
 *     the server's certificate is verified against opts.tls's CAs (by
 *     default the system store) and checked for the URL's host, which is
 *     also sent as SNI (an IP literal, IPv6 without its brackets, is
 *     checked as an address and sent no SNI). Never plain text instead:
 *     a handshake that fails fails the request (the TLS errors below).
 *     Each host keeps the TLS session of its latest connection, and a new
 *     connection to it offers that session for resumption (an abbreviated
 *     handshake when the server agrees).
 *   - A pool of keep-alive connections per (scheme, host, port): reused
 *     last-in first-out, closed after idle_timeout (checked whenever the
 *     session is used, so no coroutine is left sleeping to do it: a
 *     session nobody uses keeps its idle connections until its next
 *     request or coru_http_client_destroy), at most max_conns in
 *     all and max_conns_per_host per host; callers that find the limit
 *     reached wait in FIFO order (an idle connection to another host is
 *     closed to make room). A reused connection the server had already
 *     closed (EOF or reset before any byte of the response; over TLS also
 *     close_notify, or an EOF without it) is replaced by a fresh one and
 *     the request sent again, once, for GET, HEAD, OPTIONS, TRACE, PUT and
 *     DELETE, never for others.
 *   - Response bodies by Content-Length, chunked (decoded) or until the
 *     connection closes (over TLS: until close_notify; an EOF without it
 *     is -ECONNABORTED, as the body may have been cut short by someone
 *     else); none for HEAD, 1xx, 204 and 304. Interim 1xx
 *     responses are skipped. "Accept-Encoding: gzip" is sent and a gzip
 *     body decoded (zlib) unless no_gzip; the response then shows neither
 *     Content-Encoding nor Content-Length.
 *   - Redirects (301, 302, 303, 307, 308 with a Location) followed up to
 *     max_redirects: 301, 302 and 303 turn into GET without a body (HEAD
 *     stays HEAD), 307 and 308 keep the method and body. Authorization and
 *     Cookie are dropped once a redirect leaves the origin (scheme, host
 *     and port). A redirect may change the scheme either way: http to
 *     https, and https to http too (as Go's http.Client and curl -L
 *     follow it; the credentials are dropped then, as the origin
 *     changed). coru_http_response_url gives the final URL.
 *   - Host names through coru_getaddrinfo, cached per session for a
 *     minute; each address is tried in turn until one connects.
 *   - The request carries Host and User-Agent: coru unless the caller's
 *     headers set them (a caller's Host is not sent on past a redirect
 *     to another origin), and, with a body, Content-Length (a buffer) or
 *     Transfer-Encoding: chunked (a stream): the framing is the client's,
 *     so a caller's Content-Length or Transfer-Encoding is -EINVAL. A
 *     request with "Connection: close" does not pool its connection.
 *
 * URLs are parsed strictly: ("http://" | "https://") host [":" port]
 * [path] ["?" query] ["#" fragment, dropped]; the scheme in any case; a
 * host is a name, an IPv4 literal or a bracketed IPv6 one; the port
 * defaults to 80 (http) or 443 (https); no user info, no spaces or control
 * bytes. A bad URL is -EINVAL before any connection; a well-formed URL of
 * another scheme ("ftp://...") is -EPROTONOSUPPORT.
 *
 * Errors of a request: -EINVAL (bad URL or request), -EPROTONOSUPPORT (a
 * scheme other than http and https), -ENOENT / -EAGAIN (name resolution),
 * the connect's errors (-ECONNREFUSED, -ENETUNREACH, ...), -ETIMEDOUT (the
 * deadline, the connect timeout, the TLS handshake timeout or the read
 * timeout), -ECANCELED (coru_cancel), -EPIPE / -ECONNRESET (the server
 * went away mid-request), -EPROTO (a malformed response: bad status line,
 * bad chunk size, Content-Length with Transfer-Encoding, a bad header, a
 * gzip body that does not decode, a redirect's Location that is no
 * http(s) URL), -EMSGSIZE (response head over max_header_bytes), -EFBIG
 * (a body read whole over its limit), -ELOOP (more redirects than
 * max_redirects), -ENOMEM. https adds the TLS errors of coru/tls.h:
 *   -EKEYEXPIRED   the server's certificate has expired or is not yet
 *                  valid
 *   -EKEYREJECTED  the certificate is not for the URL's host (or IP), or
 *                  fails verification otherwise
 *   -ENOKEY        the certificate leads to no trusted CA (unknown issuer,
 *                  self-signed)
 *   -EKEYREVOKED   the certificate is revoked
 *   -EPROTO        a TLS failure: the server does not speak TLS, an alert
 *                  from it, no common version or cipher, a protocol
 *                  other than http/1.1 chosen by ALPN
 *   -ECONNABORTED  the server's TLS stream ended without close_notify
 *                  (in the handshake, in a response head, or in a body
 *                  delimited by the connection's end)
 * and, for the default configuration (opts.tls NULL) made at the first
 * https request, coru_tls_client_config's (-ENOENT, -ENOMEM). A
 * connection that failed is closed; the session stays usable. Every call
 * may park; a plain thread may call them too.
 * ------------------------------------------------------------------------ */

typedef struct coru_http_client coru_http_client;
typedef struct coru_http_response coru_http_response;

struct coru_http_client_opts {
    unsigned max_conns;          /* connections open at once, all hosts; 0: 100 */
    unsigned max_conns_per_host; /* 0: no limit below max_conns */
    int64_t idle_timeout;        /* a pooled connection idle this long is closed;
                                    0: 15 s; CORU_NEVER: never */
    int64_t connect_timeout;     /* per connection attempt; 0: 30 s; CORU_NEVER */
    int64_t read_timeout;        /* longest wait for the next bytes of a response;
                                    0: 60 s; CORU_NEVER */
    size_t max_header_bytes;     /* response head; 0: 64 KiB */
    size_t max_body;             /* coru_http_get's and read_all's default limit;
                                    0: 64 MiB */
    unsigned max_redirects;      /* 0: 10 */
    int no_redirects;            /* non-zero: redirects are returned as they are */
    int no_gzip;                 /* non-zero: no Accept-Encoding, no decoding */
    /* https: a client configuration (coru_tls_client_config: CAs, a client
     * certificate, ALPN, ...) for every TLS connection of the session. The
     * caller keeps it until coru_http_client_destroy (the session never
     * frees it) and may share it between sessions. NULL: the session makes
     * its own at its first https request (once; freed by destroy): the
     * system CA store, verification on, ALPN "http/1.1". The client
     * speaks HTTP/1.1 only: a server that picks another protocol of the
     * configuration's ALPN list fails the request with -EPROTO. */
    coru_tls_config *tls;
    int64_t tls_handshake_timeout; /* per connection, for the TLS handshake
                                    after the TCP connect (connect_timeout
                                    bounds the connect alone); 0: 10 s;
                                    CORU_NEVER */
};

/* Creates a session. opts may be NULL (all defaults). Returns 0 and *out,
 * -EINVAL (out NULL), -ENOMEM. Never parks. */
CORU_API int coru_http_client_create(coru_http_client **out, const struct coru_http_client_opts *opts);
/* Closes the idle connections (a TLS one sends close_notify if the socket
 * takes it at once) and frees the session, its TLS sessions and its
 * default TLS configuration (not opts.tls). Call it once no coroutine
 * uses the session any more and every response has been freed. NULL is
 * ignored. Never parks. */
CORU_API void coru_http_client_destroy(coru_http_client *c);

struct coru_http_header {
    const char *name, *value;
};

struct coru_http_request {
    const char *method;                   /* NULL: "GET" */
    const char *url;
    const struct coru_http_header *headers; /* extra fields, sent as given */
    size_t nheaders;
    const void *body;                     /* a body in memory ... */
    size_t body_len;
    /* ... or streamed: called for up to n more bytes, returns how many
     * (0: the end, -errno: fail the request); sent chunked. A streamed
     * body is sent once: such a request is neither retried nor sent
     * again by a 307/308 redirect (-EPROTO then). */
    ssize_t (*body_read)(void *ctx, void *buf, size_t n);
    void *body_ctx;
};

/* Sends req and reads the response's head; the body is then read with
 * coru_http_response_read or _read_all. Returns 0 and *out (free it with
 * coru_http_response_free), or the errors above. The deadline bounds the
 * whole exchange, redirects included (and the body's reads unless they
 * pass their own). */
CORU_API int coru_http_do(coru_http_client *c, const struct coru_http_request *req, coru_http_response **out,
                          int64_t deadline);
/* GET url and read the body whole (up to opts.max_body): *status, and a
 * malloc'd *body (NUL-terminated, *len bytes; free it). status, body and
 * len may be NULL. Returns 0 or the errors above. */
CORU_API int coru_http_get(coru_http_client *c, const char *url, int *status, char **body, size_t *len,
                           int64_t deadline);

/* The response's status code, reason phrase and final URL (after
 * redirects). The strings live as long as the response. */
CORU_API int coru_http_response_status(const coru_http_response *r);
CORU_API const char *coru_http_response_reason(const coru_http_response *r);
CORU_API const char *coru_http_response_url(const coru_http_response *r);
/* The first header field named name (any case), or NULL. */
CORU_API const char *coru_http_response_header(const coru_http_response *r, const char *name);
/* Every field, repeated ones kept, in arrival order: the i-th (i < count)
 * into *name and *value. Returns 0 or -ERANGE. */
CORU_API size_t coru_http_response_header_count(const coru_http_response *r);
CORU_API int coru_http_response_header_at(const coru_http_response *r, size_t i, const char **name,
                                          const char **value);
/* Reads up to n bytes of the (decoded) body: returns the count, 0 at its
 * end, or an error of the list above. May park until the deadline
 * (CORU_NEVER: the request's). */
CORU_API ssize_t coru_http_response_read(coru_http_response *r, void *buf, size_t n, int64_t deadline);
/* Reads the rest of the body into a malloc'd, NUL-terminated *body (*len
 * bytes; free it). limit 0: opts.max_body. Returns 0, -EFBIG (longer than
 * limit: the connection is closed), or the errors above. */
CORU_API int coru_http_response_read_all(coru_http_response *r, char **body, size_t *len, size_t limit,
                                         int64_t deadline);
/* Frees the response. Its connection goes back to the pool if the body
 * was read to its end and the server keeps it alive, else it is closed
 * (TLS: close_notify if the socket takes it at once). NULL is ignored.
 * Never parks. */
CORU_API void coru_http_response_free(coru_http_response *r);

#ifdef __cplusplus
}
#endif
#endif /* CORU_HTTP_H */
