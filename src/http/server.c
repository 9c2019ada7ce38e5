/* The server: options and their defaults, listeners and their acceptor
 * coroutines, the registry of open connections, the connection limit, and
 * graceful shutdown.
 *
 * Invariants:
 *   - phase goes NEW -> SERVING -> DRAINING -> DONE, each step once
 *     (DRAINING is entered by coru_http_server_shutdown, or by serve when
 *     its coroutine is cancelled).
 *   - conns lists every connection whose coroutine has started and not yet
 *     unregistered (s->lock); c->h is its handle, set under the lock before
 *     the coroutine can unregister, and detached by the coroutine itself
 *     after it left the list: nobody cancels through a released handle.
 *   - slots holds one unit per connection that may still open: an acceptor
 *     takes one before it accepts and gives it back on failure; a
 *     connection gives it back when it ends.
 *   - live counts the connection coroutines (add before spawn, done at
 *     their very end), so serve's wait covers all of them.
 * Shutdown against idle connections: see conn.c (a seq_cst pair).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define SEC (1000LL * 1000 * 1000)
#define MAX_LISTENERS 64

static void fill_defaults(struct coru_http_opts *o)
{
    if (!o->max_request_line) o->max_request_line = 8 * 1024;
    if (!o->max_header_bytes) o->max_header_bytes = 16 * 1024;
    if (!o->max_headers) o->max_headers = 100;
    if (!o->max_body) o->max_body = 1024 * 1024;
    if (!o->header_timeout) o->header_timeout = 10 * SEC;
    if (!o->body_timeout) o->body_timeout = 30 * SEC;
    if (!o->idle_timeout) o->idle_timeout = 60 * SEC;
    if (!o->write_timeout) o->write_timeout = 30 * SEC;
    if (!o->max_conns) o->max_conns = 10000;
    if (!o->server_name) o->server_name = "coru";
    if (!o->tls_handshake_timeout) o->tls_handshake_timeout = 10 * SEC;
}

int coru_http_server_create(coru_http_server **out, const char *host, uint16_t port,
                            const struct coru_http_opts *opts)
{
    if (!out) return -EINVAL;
    struct coru_http_opts o = {0};
    if (opts) o = *opts;
    /* a timeout is > 0, 0 (the default) or CORU_NEVER (none) */
    if ((o.header_timeout < 0 && o.header_timeout != CORU_NEVER) || (o.body_timeout < 0 && o.body_timeout != CORU_NEVER) ||
        (o.idle_timeout < 0 && o.idle_timeout != CORU_NEVER) || (o.write_timeout < 0 && o.write_timeout != CORU_NEVER) ||
        (o.tls_handshake_timeout < 0 && o.tls_handshake_timeout != CORU_NEVER) ||
        o.listeners > MAX_LISTENERS || o.max_conns > (1u << 31) || o.max_headers > 100000)
        return -EINVAL;
    fill_defaults(&o);
    for (const char *p = o.server_name; *p; p++)
        if (*p == '\r' || *p == '\n') return -EINVAL;
    if (host && strlen(host) >= sizeof ((struct coru_http_server *)0)->host) return -EINVAL;
    struct coru_http_server *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->o = o;
    s->name_len = strlen(o.server_name);
    s->lim = (struct coru__http_limits){
        .max_line = o.max_request_line,
        .max_head = o.max_header_bytes,
        .max_fields = o.max_headers,
        .max_body = o.max_body,
        .max_ext = o.max_header_bytes,
    };
    s->host_any = !host || !*host;
    s->deadline = CORU_NEVER; /* until a shutdown sets one (under s->lock) */
    if (host) strcpy(s->host, host);
    coru__router_init(&s->router);
    pthread_mutex_init(&s->lock, NULL);
    int rc = -ENOMEM;
    if (coru_chan_create(&s->stop, sizeof(int64_t), 1) || coru_sema_create(&s->slots, o.max_conns) ||
        coru_waitgroup_create(&s->live))
        goto fail;
    /* Every listener gets SO_REUSEPORT, so serve can add one per worker
     * on the same port. */
    s->lfd0 = coru_tcp_listen(host, port, o.backlog, CORU_REUSEPORT);
    if (s->lfd0 < 0) {
        rc = s->lfd0;
        goto fail;
    }
    s->port = (uint16_t)coru_local_port(s->lfd0);
    *out = s;
    return 0;
fail:
    coru_chan_destroy(s->stop);
    coru_sema_destroy(s->slots);
    coru_waitgroup_destroy(s->live);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return rc;
}

int coru_http_server_port(const coru_http_server *s)
{
    return s ? s->port : -EINVAL;
}

int coru_http_route(coru_http_server *s, const char *method, const char *pattern, coru_http_handler h, void *arg)
{
    if (!s) return -EINVAL;
    if (atomic_load(&s->phase) != SRV_NEW) return -EBUSY;
    return coru__router_add(&s->router, method, pattern, h, arg);
}

bool coru__http_draining(const struct coru_http_server *s)
{
    return atomic_load_explicit(&((struct coru_http_server *)s)->phase, memory_order_seq_cst) >= SRV_DRAINING;
}

void coru_http_server_destroy(coru_http_server *s)
{
    if (!s) return;
    if (atomic_load(&s->phase) == SRV_SERVING || atomic_load(&s->phase) == SRV_DRAINING) return; /* misuse */
    if (s->lfd0 >= 0) coru_close(s->lfd0);
    coru__router_fini(&s->router);
    coru_chan_destroy(s->stop);
    coru_sema_destroy(s->slots);
    coru_waitgroup_destroy(s->live);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* ---------------------------------------------------------------- connections */

static ssize_t fd_read(void *ctx, void *buf, size_t n, int64_t dl)
{
    return coru_read_dl((int)(intptr_t)ctx, buf, n, dl);
}

static ssize_t fd_write(void *ctx, const void *buf, size_t n, int64_t dl)
{
    return coru_write_all((int)(intptr_t)ctx, buf, n, dl);
}

static ssize_t tls_read(void *ctx, void *buf, size_t n, int64_t dl)
{
    return coru_tls_read(ctx, buf, n, dl);
}

static ssize_t tls_write(void *ctx, const void *buf, size_t n, int64_t dl)
{
    return coru_tls_write(ctx, buf, n, dl);
}

/* HTTPS: the handshake (bounded by tls_handshake_timeout), the
 * connection over the TLS stream, then close_notify (best effort, within
 * a second: a peer that stopped reading does not hold the coroutine).
 * The stream owns the fd: closed here, whatever happened. */
static void run_tls(struct coru__http_conn *c)
{
    struct coru_http_server *s = c->s;
    coru_tls *t;
    if (coru_tls_server(&t, s->o.tls, c->fd) != 0) return;
    if (coru_tls_handshake(t, coru__http_after(s->o.tls_handshake_timeout)) == 0) {
        c->io = (struct coru__http_io){tls_read, tls_write, t};
        coru__http_conn_run(c);
        coru_tls_shutdown(t, coru_now() + SEC);
    }
    coru_tls_close(t);
}

static void unregister(struct coru__http_conn *c)
{
    struct coru_http_server *s = c->s;
    pthread_mutex_lock(&s->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    coru_t *h = c->h;
    pthread_mutex_unlock(&s->lock);
    coru_detach(h);
}

static void *conn_main(void *arg)
{
    struct coru__http_conn *c = arg;
    struct coru_http_server *s = c->s;
    if (s->o.tls) {
        run_tls(c);
    } else {
        coru__http_conn_run(c);
        coru_close(c->fd);
    }
    unregister(c);
    free(c);
    coru_sema_release(s->slots);
    coru_waitgroup_done(s->live);
    return NULL;
}

/* Starts a connection's coroutine for an accepted fd. */
static int start_conn(struct coru_http_server *s, int fd)
{
    struct coru__http_conn *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->s = s;
    c->fd = fd;
    c->io = (struct coru__http_io){fd_read, fd_write, (void *)(intptr_t)fd};
    atomic_init(&c->state, CONN_BUSY);
    coru_tcp_nodelay(fd, 1);
    struct coru_attr attr = {.stack_size = s->o.stack_size, .name = "http conn"};
    coru_waitgroup_add(s->live, 1);
    pthread_mutex_lock(&s->lock);
    int rc = coru_spawn(&c->h, conn_main, c, &attr);
    if (rc == 0) {
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        s->nconns++;
    }
    pthread_mutex_unlock(&s->lock);
    if (rc) {
        coru_waitgroup_done(s->live);
        free(c);
    }
    return rc;
}

struct acceptor {
    struct coru_http_server *s;
    int lfd;
};

/* Takes a connection slot, accepts, hands the fd to a new coroutine.
 * Ends when the listener is closed (-EBADF) or it is cancelled. */
static void *acceptor_main(void *arg)
{
    struct acceptor *a = arg;
    struct coru_http_server *s = a->s;
    for (;;) {
        if (coru_sema_acquire(s->slots) != 0) break; /* cancelled */
        int fd = coru_tcp_accept(a->lfd, NULL, NULL);
        if (fd < 0) {
            coru_sema_release(s->slots);
            if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
                if (coru_sleep(10 * 1000 * 1000) != 0) break; /* back off */
                continue;
            }
            if (fd == -ECONNABORTED || fd == -EINTR || fd == -EAGAIN || fd == -EPROTO) continue;
            break; /* -EBADF (closed), -ECANCELED, ... */
        }
        if (coru__http_draining(s) || start_conn(s, fd) != 0) {
            coru_close(fd);
            coru_sema_release(s->slots);
        }
        /* One accept per turn of the run queue: what is already runnable
         * (requests in flight, handshakes under way) goes before the next
         * connection's work, as nginx's one accept per event-loop pass. */
        coru_yield();
    }
    return NULL;
}

/* Moves every idle connection to CLOSING and cancels it; with `all`,
 * cancels every connection. */
static void cut(struct coru_http_server *s, bool all)
{
    pthread_mutex_lock(&s->lock);
    for (struct coru__http_conn *c = s->conns; c; c = c->next) {
        int idle = CONN_IDLE;
        if (all || atomic_compare_exchange_strong_explicit(&c->state, &idle, CONN_CLOSING, memory_order_seq_cst,
                                                           memory_order_seq_cst))
            coru_cancel(c->h);
    }
    pthread_mutex_unlock(&s->lock);
}

int coru_http_server_shutdown(coru_http_server *s, int64_t deadline)
{
    if (!s) return -EINVAL;
    int serving = SRV_SERVING;
    if (!atomic_compare_exchange_strong_explicit(&s->phase, &serving, SRV_DRAINING, memory_order_seq_cst,
                                                 memory_order_seq_cst)) {
        int ph = atomic_load(&s->phase);
        if (ph == SRV_NEW) { /* not serving yet: serve will return at once */
            int nw = SRV_NEW;
            if (atomic_compare_exchange_strong(&s->phase, &nw, SRV_DRAINING)) return 0;
        }
        /* Already draining: a deadline may only come forward. */
        pthread_mutex_lock(&s->lock);
        bool sooner = deadline != CORU_NEVER && (s->deadline == CORU_NEVER || deadline < s->deadline);
        if (sooner) s->deadline = deadline;
        pthread_mutex_unlock(&s->lock);
        if (sooner) coru_chan_try_send(s->stop, &deadline);
        return -EALREADY;
    }
    pthread_mutex_lock(&s->lock);
    s->deadline = deadline;
    pthread_mutex_unlock(&s->lock);
    /* The phase store above (seq_cst) comes before these loads of each
     * connection's state: see conn.c for the other half. */
    cut(s, false);
    coru_chan_try_send(s->stop, &deadline); /* wakes serve; capacity 1 */
    return 0;
}

int coru_http_server_serve(coru_http_server *s)
{
    if (!s) return -EINVAL;
    if (!coru_self()) return -EPERM;
    int nw = SRV_NEW;
    if (!atomic_compare_exchange_strong(&s->phase, &nw, SRV_SERVING)) {
        if (nw == SRV_DRAINING && s->nconns == 0) { /* shut down before it served */
            atomic_store(&s->phase, SRV_DONE);
            return 0;
        }
        return -EBUSY;
    }
    unsigned n = s->o.listeners;
    if (!n) {
        struct coru_stats st;
        coru_stats(&st);
        n = st.workers ? st.workers : 1;
        if (n > MAX_LISTENERS) n = MAX_LISTENERS;
    }
    int lfds[MAX_LISTENERS];
    struct acceptor acc[MAX_LISTENERS];
    coru_t *ah[MAX_LISTENERS];
    unsigned nl = 0, na = 0;
    int rc = 0;
    lfds[nl++] = s->lfd0;
    s->lfd0 = -1; /* serve owns it now and closes it at the end */
    for (; nl < n; nl++) {
        int fd = coru_tcp_listen(s->host_any ? NULL : s->host, s->port, s->o.backlog, CORU_REUSEPORT);
        if (fd < 0) {
            rc = fd;
            break;
        }
        lfds[nl] = fd;
    }
    for (unsigned i = 0; i < nl && !rc; i++, na++) {
        acc[i] = (struct acceptor){s, lfds[i]};
        rc = coru_spawn(&ah[i], acceptor_main, &acc[i], &(struct coru_attr){.name = "http accept"});
        if (rc) break;
    }
    if (rc) atomic_store(&s->phase, SRV_DRAINING);

    /* Wait for shutdown (or our own cancellation: a shutdown now). */
    int64_t deadline = CORU_NEVER;
    if (!rc) {
        int r = coru_chan_recv(s->stop, &deadline);
        if (r != 0) {
            coru_http_server_shutdown(s, coru_now());
            deadline = coru_now();
        }
    }
    /* Stop accepting: closing a listener ends its parked accept (-EBADF). */
    for (unsigned i = 0; i < nl; i++) coru_close(lfds[i]);
    for (unsigned i = 0; i < na; i++) {
        coru_cancel(ah[i]);
        coru_join(ah[i], NULL);
    }
    /* Idle connections were cut by shutdown; the rest finish their
     * requests and close. At the deadline (which a later shutdown call may
     * bring forward: looked at every 100 ms), or at once if this coroutine
     * is cancelled, cut them all and wait for their end. That last wait
     * cannot be cut short: a connection coroutine still uses s until it
     * is done, so a cancelled serve yields until the count is 0. */
    for (;;) {
        pthread_mutex_lock(&s->lock);
        deadline = s->deadline;
        pthread_mutex_unlock(&s->lock);
        int64_t slice = coru_now() + 100 * 1000 * 1000;
        int r = coru_waitgroup_wait_dl(s->live, deadline == CORU_NEVER || deadline > slice ? slice : deadline);
        if (r == 0) break;
        if (r == -ETIMEDOUT && (deadline == CORU_NEVER || coru_now() < deadline)) continue;
        cut(s, true);
        while (coru_waitgroup_wait(s->live) != 0) coru_yield();
        break;
    }
    atomic_store(&s->phase, SRV_DONE);
    return rc;
}
