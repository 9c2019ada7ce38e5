/* The HTTP client's byte streams: a connection is plain TCP (k->tls NULL)
 * or a TLS stream over its socket (https), and everything above this file
 * reads, writes and closes it through the same calls. This is the one
 * file of the client that uses coru/tls.h (never OpenSSL itself): the
 * default configuration, the handshake at dial, SNI and the host check,
 * and the sessions each host keeps for resumption. See client.h.
 *
 * Sessions: h->session is the newest resumable session a connection of
 * host h had when it went back to the pool or was closed (asked for then,
 * not after the handshake: a TLS 1.3 server sends its tickets after the
 * handshake, and they are read with the first response). A dial to h
 * offers it; a server that no longer takes it makes a full handshake.
 * h->session is replaced and read under the session's lock (the offer,
 * coru_tls_set_session, takes its own reference inside the lock), so the
 * old one can be freed outside it.
 */
#include "client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

ssize_t coru__hconn_read(struct coru__hconn *k, void *buf, size_t n, int64_t deadline)
{
    if (k->tls) return coru_tls_read(k->tls, buf, n, deadline);
    return coru_read_dl(k->fd, buf, n, deadline);
}

int coru__hconn_write(struct coru__hconn *k, const void *buf, size_t n, int64_t deadline)
{
    ssize_t w = k->tls ? coru_tls_write(k->tls, buf, n, deadline) : coru_write_all(k->fd, buf, n, deadline);
    return w < 0 ? (int)w : 0;
}

int coru__hconn_write2(struct coru__hconn *k, const void *a, size_t na, const void *b, size_t nb, int64_t deadline)
{
    if (k->tls) {
        int rc = coru__hconn_write(k, a, na, deadline);
        if (rc == 0 && nb) rc = coru__hconn_write(k, b, nb, deadline);
        return rc;
    }
    struct iovec v[2] = {{(void *)a, na}, {(void *)b, nb}};
    int cnt = nb ? 2 : 1;
    size_t total = na + nb, sent = 0;
    while (sent < total) {
        ssize_t w = coru_writev(k->fd, v, cnt, deadline);
        if (w < 0) return (int)w;
        sent += (size_t)w;
        for (int i = 0; i < cnt && w > 0; i++) { /* step over what went */
            size_t t = (size_t)w < v[i].iov_len ? (size_t)w : v[i].iov_len;
            v[i].iov_base = (char *)v[i].iov_base + t;
            v[i].iov_len -= t;
            w -= (ssize_t)t;
        }
    }
    return 0;
}

/* The configuration for new streams: the caller's, or the default one,
 * made at the first https dial under the lock (so once), freed by
 * coru_http_client_destroy. */
static int config_of(struct coru_http_client *c, coru_tls_config **out)
{
    if (c->o.tls) {
        *out = c->o.tls;
        return 0;
    }
    int rc = 0;
    pthread_mutex_lock(&c->lock);
    if (!c->tls_own) rc = coru_tls_client_config(&c->tls_own, NULL, NULL, 0); /* system CAs, verify on */
    *out = c->tls_own;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int coru__hconn_tls_start(struct coru_http_client *c, struct coru__hhost *h, const struct coru__url *u, int fd,
                          struct coru__hconn *k, int64_t deadline)
{
    coru_tls_config *cfg;
    int rc = config_of(c, &cfg);
    if (rc) {
        coru_close(fd);
        return rc;
    }
    coru_tls *t;
    /* SNI and the certificate check: the URL's host (an IPv6 literal
     * without its brackets, checked as an address and sent no SNI) */
    rc = coru_tls_client(&t, cfg, fd, u->host); /* t owns fd from here on */
    if (rc) return rc;
    pthread_mutex_lock(&c->lock);
    if (h->session) coru_tls_set_session(t, h->session); /* a failure: a full handshake */
    pthread_mutex_unlock(&c->lock);
    rc = coru_tls_handshake(t, coru__hclient_min_dl(deadline, c->o.tls_handshake_timeout));
    /* We speak HTTP/1.1 only: a server that took another protocol of a
     * caller's ALPN list ("h2") would not understand us. */
    const char *alpn = rc ? "" : coru_tls_alpn(t);
    if (*alpn && strcmp(alpn, "http/1.1") != 0) rc = -EPROTO;
    if (rc) {
        coru_tls_close(t);
        return rc;
    }
    k->fd = fd;
    k->tls = t;
    return 0;
}

void coru__hconn_keep_session(struct coru_http_client *c, struct coru__hconn *k)
{
    /* Once per connection (a copy is made each time): the tickets a TLS
     * 1.3 server sends after the handshake come before the first
     * response's bytes, so they are in once that response was read. */
    if (!k->tls || k->session_kept) return;
    coru_tls_session *s = coru_tls_get_session(k->tls);
    if (!s) return; /* none yet, or not resumable: keep the one we have */
    k->session_kept = true;
    pthread_mutex_lock(&c->lock);
    coru_tls_session *old = k->h->session;
    k->h->session = s;
    pthread_mutex_unlock(&c->lock);
    coru_tls_session_free(old);
}

void coru__hconn_free(struct coru__hconn *k)
{
    if (k->tls) {
        /* close_notify, tried once: a deadline already past never parks
         * (this runs from coru_http_response_free and destroy, which
         * never park, and for idle connections the pool drops) */
        coru_tls_shutdown(k->tls, coru_now());
        coru_tls_close(k->tls);
    } else if (k->fd >= 0) {
        coru_close(k->fd);
    }
    free(k->buf);
    free(k);
}

void coru__hhost_free(struct coru__hhost *h)
{
    coru_tls_session_free(h->session);
    free(h);
}

void coru__hclient_tls_free(struct coru_http_client *c)
{
    coru_tls_config_free(c->tls_own); /* NULL: nothing; a caller's o.tls stays theirs */
    c->tls_own = NULL;
}
