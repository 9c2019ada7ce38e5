/* fuzz_http_client: a libFuzzer target for the client's response path:
 * the head scanner, llhttp in response mode (status line, fields,
 * framing), interim 1xx responses, bodies by length, chunked or until
 * EOF, and gzip decoding (zlib).
 *
 * Input: 1 byte of flags (bit 0: the request was HEAD), then the bytes a
 * server would send. They go into one end of a socketpair, closed behind
 * them, and the client reads one response from the other end, body and
 * all, through coru__hclient_read_one (src/http/client_body.c), from this
 * plain thread (no runtime: the calls block, and never for long, as the
 * bytes are all there). Checked: the call returns a status (100-999) or
 * one of the errors the header documents; a HEAD, 204 or 304 response
 * has no body; anything else (a crash, a leak, a hang, an undocumented
 * code) is a finding. Seeds: tests/fuzz/corpus-http_client (a 1-byte
 * flags prefix, then a response). */
#include <coru.h>
#include <coru/http.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../src/http/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static coru_http_client *cl;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 100000) return 0;
    if (!cl && coru_http_client_create(&cl, &(struct coru_http_client_opts){.max_header_bytes = 16384}) != 0) abort();
    bool head = data[0] & 1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) abort();
    int big = 1 << 20;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    size_t off = 1;
    while (off < size) {
        ssize_t w = write(sv[1], data + off, size - off);
        if (w <= 0) break; /* the buffer is full: the rest is not sent */
        off += (size_t)w;
    }
    close(sv[1]);
    size_t body = 0;
    int rc = coru__hclient_read_one(cl, sv[0], head, &body);
    if (rc >= 0) {
        if (rc < 100 || rc > 999) abort();
        if ((head || rc == 204 || rc == 304) && body) abort();
        return 0;
    }
    switch (-rc) {
    case EPROTO: case EMSGSIZE: case ECONNRESET: case ENOMEM: case EFBIG:
        return 0;
    default:
        fprintf(stderr, "undocumented error %d (%s)\n", rc, strerror(-rc));
        abort();
    }
}
