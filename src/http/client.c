/* The HTTP client: sessions, the connection pool (per scheme, host and
 * port), the name cache, and dialling (TCP connect, then for https the
 * TLS handshake, client_io.c). Exchanges and bodies are client_body.c's.
 * Uses the runtime through coru.h only.
 *
 * Invariants (under c->lock):
 *   - c->nconns is the number of open connections of the session (idle
 *     or in use), h->nconns those of host h; both only count connections
 *     whose slot was taken by pool_get (a dial in progress counts).
 *   - An idle connection is on exactly one host's idle list, newest first;
 *     a connection in use belongs to the response or exchange using it.
 *   - A waiter is on the wait list until it is granted (an idle connection
 *     of its host, or a slot to dial: w->conn or w->slot, then its
 *     semaphore is released) or leaves it itself (deadline, cancel). A
 *     grant is made under the lock and taken away from the list in the
 *     same section, so a waiter that wakes finds either its grant or
 *     itself still listed, never both.
 *   - The name cache's entries expire after a minute; each is replaced
 *     whole under the lock.
 *   - A host's TLS session (h->session) and the default TLS
 *     configuration (c->tls_own, made once at the first https dial) are
 *     replaced or made under the lock (client_io.c); a forgotten host's
 *     session is freed with it.
 * The lock is a pthread mutex held for short list operations only, never
 * across a call that may park.
 */
#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define DEF_MAX_CONNS 100
#define DEF_IDLE (15 * SEC)
#define DEF_CONNECT (30 * SEC)
#define DEF_READ (60 * SEC)
#define DEF_HEAD ((size_t)64 * 1024)
#define DEF_BODY ((size_t)64 * 1024 * 1024)
#define DEF_REDIRECTS 10
#define DEF_HANDSHAKE (10 * SEC)
#define DNS_TTL (60 * SEC)

/* ---------------------------------------------------------------- session */

int coru_http_client_create(coru_http_client **out, const struct coru_http_client_opts *opts)
{
    if (!out) return -EINVAL;
    struct coru_http_client *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    if (opts) c->o = *opts;
    if (!c->o.max_conns) c->o.max_conns = DEF_MAX_CONNS;
    if (!c->o.idle_timeout) c->o.idle_timeout = DEF_IDLE;
    if (!c->o.connect_timeout) c->o.connect_timeout = DEF_CONNECT;
    if (!c->o.read_timeout) c->o.read_timeout = DEF_READ;
    if (!c->o.max_header_bytes) c->o.max_header_bytes = DEF_HEAD;
    if (!c->o.max_body) c->o.max_body = DEF_BODY;
    if (!c->o.max_redirects) c->o.max_redirects = DEF_REDIRECTS;
    if (!c->o.tls_handshake_timeout) c->o.tls_handshake_timeout = DEF_HANDSHAKE;
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return 0;
}

void coru_http_client_destroy(coru_http_client *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    c->closing = true;
    pthread_mutex_unlock(&c->lock);
    for (struct coru__hhost *h = c->hosts, *hn; h; h = hn) {
        hn = h->next;
        for (struct coru__hconn *k = h->idle, *kn; k; k = kn) {
            kn = k->next;
            coru__hconn_free(k);
        }
        coru__hhost_free(h); /* and its TLS session */
    }
    for (struct coru__hdns *d = c->dns, *dn; d; d = dn) {
        dn = d->next;
        free(d);
    }
    coru__hclient_tls_free(c);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---------------------------------------------------------------- pool */

/* Caller holds the lock. */
static struct coru__hhost *host_of(struct coru_http_client *c, const struct coru__url *u)
{
    for (struct coru__hhost *h = c->hosts; h; h = h->next)
        if (h->port == u->port && h->https == u->https && strcmp(h->name, u->host) == 0) return h;
    struct coru__hhost *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    snprintf(h->name, sizeof h->name, "%s", u->host);
    h->port = u->port;
    h->https = u->https;
    h->next = c->hosts;
    c->hosts = h;
    return h;
}

/* Whether h may have one more connection. Caller holds the lock. */
static bool room_for(const struct coru_http_client *c, const struct coru__hhost *h)
{
    return c->nconns < c->o.max_conns && (!c->o.max_conns_per_host || h->nconns < c->o.max_conns_per_host);
}

/* Closes the oldest idle connection of a host other than h, making room
 * in the session's total; returns it (the caller closes it outside the
 * lock) or NULL. Caller holds the lock. */
static struct coru__hconn *evict_other(struct coru_http_client *c, const struct coru__hhost *h)
{
    struct coru__hconn *oldest = NULL, **at = NULL;
    for (struct coru__hhost *o = c->hosts; o; o = o->next) {
        if (o == h) continue;
        for (struct coru__hconn **pp = &o->idle; *pp; pp = &(*pp)->next)
            if (!oldest || (*pp)->idle_since < oldest->idle_since) {
                oldest = *pp;
                at = pp;
            }
    }
    if (!oldest) return NULL;
    *at = oldest->next;
    oldest->h->nconns--;
    c->nconns--;
    return oldest;
}

static void wq_remove(struct coru_http_client *c, struct coru__hwaiter *w)
{
    struct coru__hwaiter **pp = &c->wq;
    while (*pp && *pp != w) pp = &(*pp)->next;
    if (*pp) *pp = w->next;
    w->next = NULL;
}

/* Gives what became free to the first waiter that can use it: k, an idle
 * connection of its host (NULL: none), else a slot if the limits now
 * allow. Returns whether k was taken. Caller holds the lock. */
static bool grant(struct coru_http_client *c, struct coru__hconn *k)
{
    for (struct coru__hwaiter *w = c->wq; w; w = w->next) {
        if (k && w->h == k->h && !w->fresh) {
            wq_remove(c, w);
            w->conn = k;
            coru_sema_release(w->sem);
            return true;
        }
        if (room_for(c, w->h)) {
            wq_remove(c, w);
            w->slot = true;
            c->nconns++;
            w->h->nconns++;
            coru_sema_release(w->sem);
            if (!k) return false;
            return grant(c, k); /* k may still suit a later waiter */
        }
    }
    return false;
}

/* Whether closing a connection of host h would let a waiter go on: one
 * that waits only for room in the total (or, fresh, for a new connection
 * to h itself). Caller holds the lock. */
static bool slot_wanted(const struct coru_http_client *c, const struct coru__hhost *h)
{
    for (const struct coru__hwaiter *w = c->wq; w; w = w->next) {
        unsigned on_host = w->h->nconns - (w->h == h);
        if (!c->o.max_conns_per_host || on_host < c->o.max_conns_per_host) return true;
    }
    return false;
}

/* A connection's slot ends (it was closed, or its dial failed). */
static void slot_release(struct coru_http_client *c, struct coru__hhost *h)
{
    pthread_mutex_lock(&c->lock);
    h->nconns--;
    c->nconns--;
    grant(c, NULL);
    pthread_mutex_unlock(&c->lock);
}

void coru__hclient_close_conn(struct coru_http_client *c, struct coru__hconn *k)
{
    struct coru__hhost *h = k->h;
    coru__hconn_keep_session(c, k); /* h lives: k still counts in h->nconns */
    coru__hconn_free(k);
    slot_release(c, h);
}

/* Takes the idle connections past idle_timeout off their lists (onto
 * *dead, for the caller to close outside the lock). Caller holds the lock.
 * Called on every pool operation: a coroutine sleeping until the next
 * expiry would keep coru_run from returning, so idle connections of a
 * session nobody uses are closed at its next use or at destroy. */
static void expire_idle(struct coru_http_client *c, int64_t now, struct coru__hconn **dead)
{
    if (now - c->last_sweep < SEC / 10) return;
    c->last_sweep = now;
    /* Hosts with no connection and nobody waiting for one are forgotten,
     * so a long crawl does not keep (and scan) every host it met. */
    for (struct coru__hhost **hp = &c->hosts; *hp;) {
        struct coru__hhost *h = *hp;
        bool waited = false;
        for (struct coru__hwaiter *w = c->wq; w && !waited; w = w->next) waited = w->h == h;
        if (!h->nconns && !h->idle && !waited) {
            *hp = h->next;
            coru__hhost_free(h);
        } else {
            hp = &h->next;
        }
    }
    if (c->o.idle_timeout == CORU_NEVER) return;
    for (struct coru__hhost *h = c->hosts; h; h = h->next)
        for (struct coru__hconn **pp = &h->idle; *pp;) {
            struct coru__hconn *k = *pp;
            if (now - k->idle_since >= c->o.idle_timeout) {
                *pp = k->next;
                k->next = *dead;
                *dead = k;
            } else {
                pp = &k->next;
            }
        }
}

static void close_list(struct coru_http_client *c, struct coru__hconn *k)
{
    for (struct coru__hconn *kn; k; k = kn) {
        kn = k->next;
        coru__hclient_close_conn(c, k);
    }
}

/* Back to the pool after a complete exchange that keeps it alive. */
void coru__hclient_put_conn(struct coru_http_client *c, struct coru__hconn *k)
{
    k->len = k->start = 0;
    k->uses++;
    coru__hconn_keep_session(c, k); /* after the response: TLS 1.3 tickets came with it */
    k->idle_since = coru_now();
    struct coru__hconn *dead = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->closing) {
        pthread_mutex_unlock(&c->lock);
        coru__hclient_close_conn(c, k);
        return;
    }
    bool close_it = false;
    if (!grant(c, k)) {
        /* Nobody takes it as it is; if a waiter could go on were it closed
         * (another host's, held back by the total; or a retry that wants a
         * new connection), it is closed and its slot granted (in
         * slot_release). Pooled, it would leave that waiter stuck. */
        if (slot_wanted(c, k->h)) {
            close_it = true;
        } else {
            k->next = k->h->idle;
            k->h->idle = k;
        }
    }
    expire_idle(c, k->idle_since, &dead);
    pthread_mutex_unlock(&c->lock);
    if (close_it) coru__hclient_close_conn(c, k);
    close_list(c, dead);
}

/* Whether an idle connection still looks usable: not past idle_timeout,
 * and, if it was idle for a while, the server has not closed it (a peek
 * sees EOF) or sent anything unasked. A connection back in the pool for
 * less than PEEK_AFTER is taken as it is (no system call: under load the
 * peek was one per request); should the server have closed it anyway,
 * the request fails before any response byte and, if idempotent, goes
 * again on a new connection. */
#define PEEK_AFTER (SEC / 2)
static bool idle_ok(const struct coru_http_client *c, const struct coru__hconn *k, int64_t now)
{
    if (c->o.idle_timeout != CORU_NEVER && now - k->idle_since >= c->o.idle_timeout) return false;
    if (now - k->idle_since < PEEK_AFTER) return true;
    char b;
    ssize_t n = recv(k->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static int dial(struct coru_http_client *c, const struct coru__url *u, int64_t deadline);

/* Gets a connection to u's host: an idle one (*reused true) unless fresh,
 * else a new one within the limits, waiting in FIFO order for a slot.
 * Returns 0 and *out, or the dial's and wait's errors. */
int coru__hclient_get_conn(struct coru_http_client *c, const struct coru__url *u, bool fresh, int64_t deadline,
                           struct coru__hconn **out, bool *reused)
{
    *reused = false;
    for (;;) {
        struct coru__hconn *stale = NULL, *evicted = NULL, *k = NULL;
        bool slot = false;
        pthread_mutex_lock(&c->lock);
        int64_t now = coru_now();
        expire_idle(c, now, &stale); /* first: it may forget hosts, h included */
        struct coru__hhost *h = host_of(c, u);
        if (!h) {
            pthread_mutex_unlock(&c->lock);
            close_list(c, stale);
            return -ENOMEM;
        }
        while (!fresh && h->idle && !k) {
            struct coru__hconn *t = h->idle;
            h->idle = t->next;
            if (idle_ok(c, t, now)) {
                k = t;
            } else {
                t->next = stale;
                stale = t;
            }
        }
        if (!k) {
            /* Full because of the total, not this host's own limit: an
             * idle connection to another host gives way (as Go's
             * Transport does). A retry that wants a new connection makes
             * room by closing an idle one of its own host. */
            if (!room_for(c, h) && (!c->o.max_conns_per_host || h->nconns < c->o.max_conns_per_host))
                evicted = evict_other(c, h);
            if (!room_for(c, h) && fresh && h->idle && !evicted) {
                evicted = h->idle;
                h->idle = evicted->next;
                h->nconns--;
                c->nconns--;
            }
            if (room_for(c, h) && !c->wq) {
                c->nconns++;
                h->nconns++;
                slot = true;
            }
        }
        struct coru__hwaiter w = {.h = h, .fresh = fresh};
        bool wait = !k && !slot;
        int rc = 0;
        if (wait) {
            rc = coru_sema_create(&w.sem, 0);
            if (!rc) {
                struct coru__hwaiter **pp = &c->wq;
                while (*pp) pp = &(*pp)->next;
                *pp = &w; /* FIFO: at the tail */
                if (room_for(c, h)) grant(c, NULL); /* room came from evictions */
            }
        }
        pthread_mutex_unlock(&c->lock);
        close_list(c, stale);
        /* Its slot went to us or to a waiter already, and its host may
         * be forgotten from here on: only the connection itself is
         * touched (its session was kept when it went idle). */
        if (evicted) coru__hconn_free(evicted);
        if (k) {
            *reused = true;
            *out = k;
            return 0;
        }
        if (wait) {
            if (rc) return rc;
            rc = coru_sema_acquire_dl(w.sem, deadline);
            pthread_mutex_lock(&c->lock);
            if (!w.conn && !w.slot) wq_remove(c, &w); /* still listed: leaves */
            pthread_mutex_unlock(&c->lock);
            coru_sema_destroy(w.sem);
            if (w.conn) {
                *reused = true;
                *out = w.conn;
                return 0;
            }
            if (!w.slot) return rc ? rc : -EAGAIN;
            slot = true; /* granted even if the deadline passed meanwhile */
        }
        /* A slot: dial (h lives while the slot is held). */
        int fd = dial(c, u, deadline);
        if (fd < 0) {
            slot_release(c, h);
            return fd;
        }
        k = calloc(1, sizeof *k);
        if (k) {
            k->cap = 16384;
            k->buf = malloc(k->cap);
        }
        if (!k || !k->buf) {
            if (k) free(k);
            coru_close(fd);
            slot_release(c, h);
            return -ENOMEM;
        }
        k->fd = fd;
        k->h = h;
        if (u->https && (rc = coru__hconn_tls_start(c, h, u, fd, k, deadline))) { /* fd closed on failure */
            free(k->buf);
            free(k);
            slot_release(c, h);
            return rc;
        }
        *out = k;
        return 0;
    }
}

/* ---------------------------------------------------------------- names */

/* The addresses of u's host as numeric strings (up to CORU__HDNS_MAX),
 * from the literal, the cache, or coru_getaddrinfo. */
static int resolve(struct coru_http_client *c, const struct coru__url *u, char addrs[][INET6_ADDRSTRLEN], int *n)
{
    struct in6_addr a6;
    struct in_addr a4;
    if (u->ipv6 ? inet_pton(AF_INET6, u->host, &a6) == 1 : inet_pton(AF_INET, u->host, &a4) == 1) {
        if (strlen(u->host) >= INET6_ADDRSTRLEN) return -EINVAL;
        strcpy(addrs[0], u->host);
        *n = 1;
        return 0;
    }
    if (u->ipv6) return -EINVAL;
    int64_t now = coru_now();
    pthread_mutex_lock(&c->lock);
    for (struct coru__hdns *d = c->dns; d; d = d->next)
        if (strcmp(d->host, u->host) == 0 && d->expires > now) {
            memcpy(addrs, d->addrs, sizeof d->addrs);
            *n = d->n;
            pthread_mutex_unlock(&c->lock);
            return 0;
        }
    pthread_mutex_unlock(&c->lock);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = coru_getaddrinfo(u->host, NULL, &hints, &res);
    if (rc) return rc;
    struct coru__hdns *e = calloc(1, sizeof *e);
    if (!e) {
        freeaddrinfo(res);
        return -ENOMEM;
    }
    for (struct addrinfo *ai = res; ai && e->n < CORU__HDNS_MAX; ai = ai->ai_next) {
        const void *src = ai->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                                                    : (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        if (inet_ntop(ai->ai_family, src, e->addrs[e->n], INET6_ADDRSTRLEN)) e->n++;
    }
    freeaddrinfo(res);
    if (e->n == 0) {
        free(e);
        return -ENOENT;
    }
    snprintf(e->host, sizeof e->host, "%s", u->host);
    e->expires = now + DNS_TTL;
    memcpy(addrs, e->addrs, sizeof e->addrs);
    *n = e->n;
    pthread_mutex_lock(&c->lock);
    for (struct coru__hdns **pp = &c->dns; *pp;) {
        struct coru__hdns *d = *pp;
        if (strcmp(d->host, u->host) == 0 || d->expires <= now) { /* replaced whole, or stale */
            *pp = d->next;
            free(d);
        } else {
            pp = &d->next;
        }
    }
    e->next = c->dns;
    c->dns = e;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

/* Connects to u's host, each address in turn; returns the fd or the last
 * error. */
static int dial(struct coru_http_client *c, const struct coru__url *u, int64_t deadline)
{
    char addrs[CORU__HDNS_MAX][INET6_ADDRSTRLEN];
    int n = 0;
    int rc = resolve(c, u, addrs, &n);
    if (rc) return rc;
    for (int i = 0; i < n; i++) {
        int64_t dl = coru__hclient_min_dl(deadline, c->o.connect_timeout);
        int fd = coru_tcp_connect(addrs[i], u->port, dl);
        if (fd >= 0) {
            coru_tcp_nodelay(fd, 1);
            return fd;
        }
        rc = fd;
        if (rc == -ECANCELED || (deadline != CORU_NEVER && coru_now() >= deadline)) break;
    }
    return rc;
}
