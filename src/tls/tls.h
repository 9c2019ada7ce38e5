/* The TLS layer's internals shared by config.c (configurations, reload,
 * the kTLS probe) and stream.c (streams: the BIO, handshake, read, write,
 * shutdown, errors). Like src/http, this layer uses the runtime through
 * coru.h only.
 */
#ifndef CORU_TLS_INTERNAL_H
#define CORU_TLS_INTERNAL_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "coru.h"
#include "coru/tls.h"

struct coru_tls_config {
    _Atomic long refs;            /* the caller's + one per stream */
    bool server;
    bool verify;                  /* client: certificates checked */
    bool ktls;                    /* kTLS allowed (still probed) */
    bool no_tickets;              /* server */
    int min_version;              /* server: TLS1_2_VERSION, ... */
    unsigned char alpn[256];      /* wire format */
    unsigned alpn_len;
    pthread_mutex_t lock;         /* ctx, cert_file, key_file */
    SSL_CTX *ctx;
    char *cert_file, *key_file;   /* server: what reload reads by default */
    char *client_ca_file;         /* server: client certificates required */
};

void coru__tls_config_ref(struct coru_tls_config *cfg);
/* snprintf into why (NULL or why_len 0: nothing). */
void coru__tls_why(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
