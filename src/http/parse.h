/* The request (and, for the client, response) parser: a head scanner of
 * our own in front of llhttp, behind one small interface that knows nothing of sockets (so that llhttp can be
 * replaced, and a fuzzer can drive it from memory).
 *
 * A request goes through it in two steps:
 *   1. coru__http_scan, called as bytes arrive, finds the end of the head
 *      (the empty line) and enforces what llhttp 8.1 as shipped by Debian
 *      does not: no bare CR, no bare LF, no obsolete line folding (a field
 *      line starting with a space or tab: CVE-2023-30589, CVE-2024-27982),
 *      no NUL; and the limits on the request line, the header block and
 *      the number of fields. It is incremental: each byte is looked at
 *      once, however the head is split across reads.
 *   2. coru__http_parse runs llhttp (strict mode) over the complete head,
 *      which fills a coru__http_msg with spans into the caller's buffer,
 *      then over the body bytes, which it hands to the message's body
 *      sink (chunked bodies decoded).
 * The caller keeps the head's bytes in place until it is done with the
 * message: spans point into them.
 */
#ifndef CORU_HTTP_PARSE_H
#define CORU_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llhttp.h"

struct coru__http_limits {
    size_t max_line;     /* request line, without CRLF */
    size_t max_head;     /* header block after the request line */
    unsigned max_fields; /* header fields */
    size_t max_body;     /* decoded body */
    size_t max_ext;      /* chunk extension bytes in one message */
};

/* Scanner state for the head of one request; zero it before each. */
struct coru__http_scan {
    size_t pos;        /* next byte to look at, from the buffer start */
    size_t line_start; /* start of the current line */
    size_t head_start; /* the request line's start (after leading CRLFs) */
    size_t line_len;   /* the request line's length, once complete */
    unsigned fields;   /* field lines seen */
    bool in_fields;    /* past the request line */
};

/* Looks at buf[0..n) (the bytes of this request so far; the same prefix
 * on every call, more of it each time). Returns the length of the head
 * through its empty line (> 0) once complete, 0 when more bytes are
 * needed, or -status: -400 (bare CR or LF, folding, NUL, an empty request
 * line), -414 (request line too long), -431 (header block too long or
 * too many fields). sc->head_start says where the request line begins
 * (empty lines before it are skipped, as RFC 9112 allows). */
long coru__http_scan(struct coru__http_scan *sc, const char *buf, size_t n, const struct coru__http_limits *lim);

/* Whether c is a tchar of RFC 9110 (the bytes of methods and field
 * names). */
bool coru__http_is_tchar(unsigned char c);

/* The request line: 0 for "METHOD SP target SP HTTP/1.x" with x 0 or 1,
 * -505 for another well-formed HTTP/d.d, -400 for anything else (extra
 * spaces, control bytes in the target, a missing version). line: the
 * request line without CRLF. */
int coru__http_check_version(const char *line, size_t len);

struct coru__http_field {
    const char *name, *value; /* spans in the head; NUL-terminated by
                                 coru__http_terminate */
    uint32_t nlen, vlen;
};

struct coru__http_msg {
    const char *method, *target;
    size_t method_len, target_len;
    struct coru__http_field *fields; /* caller's array of max_fields */
    unsigned nfields;
    int version;                 /* 10 or 11 */
    bool keep_alive;             /* final after DONE (llhttp's verdict) */
    bool has_body;               /* Content-Length > 0 or chunked */
    bool chunked;
    uint64_t content_length;     /* when !chunked */
    bool expect_continue;        /* Expect: 100-continue */
    bool expect_other;           /* another Expect value (417) */
    bool te_unknown;             /* a transfer coding other than chunked */
    bool upgrade;                /* Upgrade or CONNECT: close after it */
    /* responses (coru__http_parser_init_response) */
    int status;                  /* the status code */
    const char *reason;          /* the reason phrase (a span) */
    size_t reason_len;
    bool no_body;                /* set by the caller before the head: the
                                    request was HEAD, so no body follows */
    bool until_eof;              /* the body runs until the connection closes */
    /* Body bytes as they are decoded; returns 0, or -status to stop. */
    int (*on_body)(void *ctx, const char *at, size_t n);
    void *body_ctx;
};

struct coru__http_parser {
    llhttp_t ll;
    struct coru__http_msg *m;
    const struct coru__http_limits *lim;
    int status;        /* a status a callback decided on (-413, ...) */
    size_t ext_bytes;  /* chunk extension bytes so far */
    int field_state;   /* 0 none, 1 in a name, 2 in a value */
    int event;         /* the step a pausing callback ended */
};

enum {
    CORU__HTTP_NEED = 0, /* every byte consumed; feed more */
    CORU__HTTP_HEAD = 1, /* the head of a message with a body is parsed
                            (msg filled); feed the body */
    CORU__HTTP_DONE = 2, /* the message is complete */
};

/* Prepares p for a connection's requests (llhttp strict mode). */
void coru__http_parser_init(struct coru__http_parser *p, const struct coru__http_limits *lim);
/* The same for the responses a client reads (the status line instead of
 * the request line; bodies until EOF allowed: end them with
 * coru__http_parse_eof). Statuses are the server's: -400 means malformed. */
void coru__http_parser_init_response(struct coru__http_parser *p, const struct coru__http_limits *lim);
/* The connection closed: completes a body that runs until EOF (returns
 * CORU__HTTP_DONE), or returns -400 for a message cut short. */
int coru__http_parse_eof(struct coru__http_parser *p);
/* Starts the next message: m is filled from now on. */
void coru__http_parser_begin(struct coru__http_parser *p, struct coru__http_msg *m);
/* Feeds data[0..n): the head (complete, as the scanner found it) first,
 * then body bytes. Returns an event above and *used, the bytes consumed
 * (the rest belongs to the next step or the next request), or -status
 * (-400, -413, -501, ...) on an error: the connection must close. */
int coru__http_parse(struct coru__http_parser *p, const char *data, size_t n, size_t *used);
/* After HEAD: NUL-terminates every span of m in place (the bytes after
 * them are separators llhttp no longer reads) and trims field values. */
void coru__http_terminate(struct coru__http_msg *m);

#endif
