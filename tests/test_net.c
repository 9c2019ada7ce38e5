/* test_net: TCP on both engines: port 0, echo round trips of 1 B..64 KiB,
 * IPv6 and the dual-stack wildcard, many concurrent clients, the error
 * codes (refused, bad host, bad flags, bad fd, reset peer without
 * SIGPIPE), EOF after a half close, deadlines and "try once", cancelling
 * parked reads and accepts, plain-thread clients, an fd used across two
 * runs, UDP and vectored I/O, several acceptors on one listener and what
 * its close does to them and to connections nobody accepted. Load and
 * fault tests: test_net_load.c. */
#include <poll.h>
#include <stdint.h>

#include "net_helpers.h"
/* ------------------------------------------------------------ listen, port 0 */

static void *port_zero_main(void *arg)
{
    int lfd = coru_tcp_listen("127.0.0.1", 0, 0, 0);
    cr_assert_geq(lfd, 0, "listen: %s", strerror(-lfd));
    int port = coru_local_port(lfd);
    cr_assert_gt(port, 0);
    cr_assert_leq(port, 65535);
    int fl = fcntl(lfd, F_GETFL);
    cr_assert(fl & O_NONBLOCK, "coru's fds are non-blocking");
    cr_assert(fcntl(lfd, F_GETFD) & FD_CLOEXEC, "and close-on-exec");
    cr_assert_eq(coru_close(lfd), 0);
    cr_assert_eq(coru_close(lfd), -EBADF);
    return NULL;
}

Test(net, listen_on_port_zero_picks_a_free_port, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, port_zero_main, NULL), 0);
}

/* ------------------------------------------------------------ echo, varied sizes */

enum { VARIED_MSGS = 1000, VARIED_MAX = 64 * 1024 };

static size_t varied_size(int i)
{
    if (i == 0) return 1;
    if (i == 1) return VARIED_MAX;
    return 1 + (size_t)((uint32_t)i * 2654435761u % VARIED_MAX);
}

static void varied_fill(unsigned char *p, size_t n, int i)
{
    uint32_t x = (uint32_t)i * 0x9e3779b9u + 1;
    for (size_t j = 0; j < n; j++) {
        x = x * 1103515245u + 12345u;
        p[j] = (unsigned char)(x >> 16);
    }
}

struct wjob {
    int fd;
    const void *buf;
    size_t n;
};

static void *write_all_co(void *arg)
{
    struct wjob *w = arg;
    return (void *)(intptr_t)coru_write_all(w->fd, w->buf, w->n, coru_now() + 30 * SEC);
}

static void *varied_main(void *arg)
{
    struct srv *s = arg;
    srv_start(s, 1);
    int fd = coru_tcp_connect("127.0.0.1", s->port, coru_now() + 10 * SEC);
    cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
    cr_assert_eq(coru_tcp_nodelay(fd, 1), 0);
    unsigned char *out = malloc(VARIED_MAX), *in = malloc(VARIED_MAX);
    cr_assert(out && in);
    for (int i = 0; i < VARIED_MSGS; i++) {
        size_t n = varied_size(i);
        varied_fill(out, n, i);
        memset(in, 0, n);
        /* The writer is its own coroutine, so a 64 KiB message never waits
         * for socket buffers that only our own read would drain. */
        struct wjob w = {fd, out, n};
        coru_t *h;
        cr_assert_eq(coru_spawn(&h, write_all_co, &w, NULL), 0);
        ssize_t r = coru_read_full(fd, in, n, coru_now() + 30 * SEC);
        void *wr = NULL;
        cr_assert_eq(coru_join(h, &wr), 0);
        cr_assert_eq((ssize_t)(intptr_t)wr, (ssize_t)n, "message %d: write_all returned %zd", i,
                     (ssize_t)(intptr_t)wr);
        cr_assert_eq(r, (ssize_t)n, "message %d: read_full returned %zd of %zu", i, r, n);
        cr_assert(memcmp(in, out, n) == 0, "message %d (%zu bytes) came back different", i, n);
    }
    cr_assert_eq(coru_close(fd), 0);
    cr_assert_eq(coru_join(s->acceptor, NULL), 0);
    free(out);
    free(in);
    return NULL;
}

Test(net, echo_round_trips_of_1000_messages_from_1_byte_to_64_kib_come_back_identical, .timeout = 120)
{
    long total = 0;
    for (int i = 0; i < VARIED_MSGS; i++) total += (long)varied_size(i);
    FOR_EACH_ENGINE(io) {
        struct srv s = {0};
        cr_assert_eq(net_run(io, varied_main, &s), 0);
        srv_check(&s);
        cr_assert_eq(atomic_load(&s.bytes), total, "%s", ename(io));
    }
}

/* ------------------------------------------------------------ IPv6 */

static bool have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void *ipv6_main(void *arg)
{
    int lfd = coru_tcp_listen("::1", 0, 0, 0);
    cr_assert_geq(lfd, 0, "listen ::1: %s", strerror(-lfd));
    int port = coru_local_port(lfd);
    cr_assert_gt(port, 0);
    int c = coru_tcp_connect("::1", (uint16_t)port, coru_now() + 10 * SEC);
    cr_assert_geq(c, 0, "connect ::1: %s", strerror(-c));
    struct sockaddr_in6 peer;
    unsigned plen = sizeof peer;
    int s = coru_tcp_accept_dl(lfd, (struct sockaddr *)&peer, &plen, coru_now() + 10 * SEC);
    cr_assert_geq(s, 0, "accept: %s", strerror(-s));
    cr_assert_eq(plen, sizeof(struct sockaddr_in6));
    cr_assert_eq(peer.sin6_family, AF_INET6);
    cr_assert(IN6_IS_ADDR_LOOPBACK(&peer.sin6_addr));
    bounce(c, s, "hello over IPv6");
    coru_close(c);
    coru_close(s);
    coru_close(lfd);

    /* NULL (and "") listen on every address, IPv4 included. */
    for (int k = 0; k < 2; k++) {
        lfd = coru_tcp_listen(k ? "" : NULL, 0, 0, 0);
        cr_assert_geq(lfd, 0, "listen wildcard: %s", strerror(-lfd));
        port = coru_local_port(lfd);
        cr_assert_gt(port, 0);
        static const char *const hosts[] = {"127.0.0.1", "::1"};
        for (int h = 0; h < 2; h++) {
            c = coru_tcp_connect(hosts[h], (uint16_t)port, coru_now() + 10 * SEC);
            cr_assert_geq(c, 0, "connect %s: %s", hosts[h], strerror(-c));
            s = coru_tcp_accept_dl(lfd, NULL, NULL, coru_now() + 10 * SEC);
            cr_assert_geq(s, 0, "accept: %s", strerror(-s));
            bounce(c, s, hosts[h]);
            coru_close(c);
            coru_close(s);
        }
        coru_close(lfd);
    }
    return NULL;
}

Test(net, ipv6_loopback_listen_connect_and_dual_stack_wildcard_work, .timeout = 30)
{
    if (!have_ipv6_loopback()) cr_skip_test("no IPv6 loopback here");
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, ipv6_main, NULL), 0);
}

/* ------------------------------------------------------------ many clients */

enum { MANY_CLIENTS = 200, MANY_ROUNDS = 50 };

struct many {
    struct srv s;
    _Atomic int rounds, fails;
};

struct many_arg {
    struct many *m;
    int id;
};

static void *many_client(void *arg)
{
    struct many_arg *a = arg;
    struct many *m = a->m;
    int fd = coru_tcp_connect("127.0.0.1", m->s.port, coru_now() + 30 * SEC);
    if (fd < 0) {
        atomic_fetch_add(&m->fails, 1);
        return NULL;
    }
    for (int k = 0; k < MANY_ROUNDS; k++) {
        char out[64], in[64];
        memset(out, '.', sizeof out);
        snprintf(out, sizeof out, "client %d round %d", a->id, k);
        if (coru_write_all(fd, out, sizeof out, coru_now() + 30 * SEC) != (ssize_t)sizeof out ||
            coru_read_full(fd, in, sizeof in, coru_now() + 30 * SEC) != (ssize_t)sizeof in ||
            memcmp(in, out, sizeof in) != 0) {
            atomic_fetch_add(&m->fails, 1);
            break;
        }
        atomic_fetch_add(&m->rounds, 1);
    }
    coru_close(fd);
    return NULL;
}

static void *many_main(void *arg)
{
    struct many *m = arg;
    srv_start(&m->s, MANY_CLIENTS);
    static struct many_arg args[MANY_CLIENTS];
    coru_t *h[MANY_CLIENTS];
    for (int i = 0; i < MANY_CLIENTS; i++) {
        args[i] = (struct many_arg){m, i};
        cr_assert_eq(coru_spawn(&h[i], many_client, &args[i], NULL), 0);
    }
    for (int i = 0; i < MANY_CLIENTS; i++) cr_assert_eq(coru_join(h[i], NULL), 0);
    cr_assert_eq(coru_join(m->s.acceptor, NULL), 0);
    return NULL;
}

Test(net, two_hundred_concurrent_clients_each_complete_fifty_round_trips, .timeout = 120)
{
    FOR_EACH_ENGINE(io) {
        struct many m = {0};
        cr_assert_eq(net_run(io, many_main, &m), 0);
        srv_check(&m.s);
        cr_assert_eq(atomic_load(&m.fails), 0, "%s", ename(io));
        cr_assert_eq(atomic_load(&m.rounds), MANY_CLIENTS * MANY_ROUNDS, "%s", ename(io));
        cr_assert_eq(atomic_load(&m.s.bytes), (long)MANY_CLIENTS * MANY_ROUNDS * 64);
    }
}

/* ------------------------------------------------------------ error codes */

static void *refused_main(void *arg)
{
    int lfd = coru_tcp_listen("127.0.0.1", 0, 0, 0);
    cr_assert_geq(lfd, 0);
    int port = coru_local_port(lfd);
    cr_assert_gt(port, 0);
    cr_assert_eq(coru_close(lfd), 0); /* nobody listens there now */
    cr_assert_eq(coru_tcp_connect("127.0.0.1", (uint16_t)port, CORU_NEVER), -ECONNREFUSED);
    cr_assert_eq(coru_tcp_connect("127.0.0.1", (uint16_t)port, coru_now() + 10 * SEC), -ECONNREFUSED);
    return NULL;
}

Test(net, connect_to_a_closed_port_is_refused, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, refused_main, NULL), 0);
}

static void *bad_host_main(void *arg)
{
    static const char *const bad[] = {"not-an-address", "localhost", "256.0.0.1", "127.0.0.1:80",
                                      "::1::2", "", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(coru_tcp_connect(bad[i], 80, coru_now() + 10 * SEC), -EINVAL, "host \"%s\"",
                     bad[i] ? bad[i] : "(null)");
        if (bad[i] && *bad[i]) cr_assert_eq(coru_tcp_listen(bad[i], 0, 0, 0), -EINVAL, "host \"%s\"", bad[i]);
    }
    return NULL;
}

Test(net, connect_and_listen_reject_a_host_that_is_not_a_numeric_address, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, bad_host_main, NULL), 0);
}

static void *bad_flags_main(void *arg)
{
    static const int bad[] = {2, 4, 0x100, -1, CORU_REUSEPORT | 2, INT32_MIN};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(coru_tcp_listen("127.0.0.1", 0, 0, bad[i]), -EINVAL, "flags %#x", bad[i]);
    return NULL;
}

Test(net, listen_rejects_unknown_flags, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, bad_flags_main, NULL), 0);
}

/* ------------------------------------------------------------ SO_REUSEPORT */

struct rp {
    int lfd;
    coru_chan *got; /* the accepted fd */
};

static void *rp_accept(void *arg)
{
    struct rp *r = arg;
    int fd = coru_tcp_accept(r->lfd, NULL, NULL);
    if (fd >= 0) cr_assert_eq(coru_chan_send(r->got, &fd), 0);
    return (void *)(intptr_t)fd;
}

static void *reuseport_main(void *arg)
{
    int l1 = coru_tcp_listen("127.0.0.1", 0, 0, CORU_REUSEPORT);
    cr_assert_geq(l1, 0, "listen: %s", strerror(-l1));
    int port = coru_local_port(l1);
    cr_assert_gt(port, 0);
    int l2 = coru_tcp_listen("127.0.0.1", (uint16_t)port, 0, CORU_REUSEPORT);
    cr_assert_geq(l2, 0, "second listener on port %d: %s", port, strerror(-l2));
    cr_assert_eq(coru_local_port(l2), port);
    /* without the flag the port is taken */
    cr_assert_eq(coru_tcp_listen("127.0.0.1", (uint16_t)port, 0, 0), -EADDRINUSE);

    /* One connection lands on exactly one of them. */
    coru_chan *got;
    cr_assert_eq(coru_chan_create(&got, sizeof(int), 2), 0);
    struct rp r1 = {l1, got}, r2 = {l2, got};
    coru_t *h1, *h2;
    cr_assert_eq(coru_spawn(&h1, rp_accept, &r1, NULL), 0);
    cr_assert_eq(coru_spawn(&h2, rp_accept, &r2, NULL), 0);
    int c = coru_tcp_connect("127.0.0.1", (uint16_t)port, coru_now() + 10 * SEC);
    cr_assert_geq(c, 0, "connect: %s", strerror(-c));
    int s = -1;
    cr_assert_eq(coru_chan_recv_dl(got, &s, coru_now() + 10 * SEC), 0);
    bounce(c, s, "reuseport");
    cr_assert_eq(coru_cancel(h1), 0);
    cr_assert_eq(coru_cancel(h2), 0);
    void *r1v, *r2v;
    cr_assert_eq(coru_join(h1, &r1v), 0);
    cr_assert_eq(coru_join(h2, &r2v), 0);
    int a = (int)(intptr_t)r1v, b = (int)(intptr_t)r2v;
    cr_assert((a == s && b == -ECANCELED) || (b == s && a == -ECANCELED), "acceptors returned %d and %d", a, b);
    coru_chan_destroy(got);
    coru_close(c);
    coru_close(s);
    coru_close(l1);
    coru_close(l2);
    return NULL;
}

Test(net, reuseport_lets_two_listeners_share_a_port, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, reuseport_main, NULL), 0);
}

static void *ebadf_main(void *arg)
{
    char b[16] = {0};
    int64_t dl = coru_now() + 10 * SEC;
    cr_assert_eq(coru_read(-1, b, sizeof b), -EBADF);
    cr_assert_eq(coru_read_dl(-1, b, sizeof b, dl), -EBADF);
    cr_assert_eq(coru_read_full(-1, b, sizeof b, dl), -EBADF);
    cr_assert_eq(coru_write(-1, b, sizeof b), -EBADF);
    cr_assert_eq(coru_write_dl(-1, b, sizeof b, dl), -EBADF);
    cr_assert_eq(coru_write_all(-1, b, sizeof b, dl), -EBADF);
    cr_assert_eq(coru_tcp_accept(-1, NULL, NULL), -EBADF);
    cr_assert_eq(coru_tcp_accept_dl(-1, NULL, NULL, dl), -EBADF);
    cr_assert_eq(coru_shutdown(-1, SHUT_WR), -EBADF);
    cr_assert_eq(coru_tcp_nodelay(-1, 1), -EBADF);
    cr_assert_eq(coru_local_port(-1), -EBADF);
    cr_assert_eq(coru_close(-1), -EBADF);
    return NULL;
}

Test(net, calls_on_fd_minus_one_return_ebadf, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, ebadf_main, NULL), 0);
}

/* ------------------------------------------------------------ reset peer, no SIGPIPE */

static _Atomic int sigpipes;

static void on_sigpipe(int sig)
{
    (void)sig;
    atomic_fetch_add(&sigpipes, 1);
}

static void reset_peer(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    cr_assert_eq(coru_close(fd), 0); /* sends RST */
}

#define cr_assert_reset(r) \
    cr_assert((r) == -EPIPE || (r) == -ECONNRESET, #r " = %zd (%s), want -EPIPE or -ECONNRESET", (ssize_t)(r), \
              strerror((int)-(r)))

struct hog {
    int fd;
    _Atomic int parked;
};

/* Writes until the peer's buffers are full and the write parks. */
static void *hog_writer(void *arg)
{
    struct hog *g = arg;
    size_t n = 1 << 20;
    char *buf = calloc(1, n);
    cr_assert_not_null(buf);
    ssize_t r;
    for (;;) {
        r = coru_write_dl(g->fd, buf, n, coru_now() + 100 * MS);
        if (r == -ETIMEDOUT) break; /* the buffers are full */
        cr_assert_gt(r, 0, "%zd", r);
    }
    atomic_store(&g->parked, 1);
    r = coru_write_all(g->fd, buf, n, coru_now() + 30 * SEC); /* parks until the reset */
    free(buf);
    return (void *)(intptr_t)r;
}

static void *reset_main(void *arg)
{
    /* reset while idle: both writes fail, neither raises SIGPIPE */
    int c, s;
    tcp_pair(&c, &s);
    reset_peer(s);
    coru_sleep(20 * MS); /* loopback delivers the RST at once; a margin */
    char buf[1024] = {0};
    ssize_t r1 = coru_write(c, buf, sizeof buf);
    ssize_t r2 = coru_write(c, buf, sizeof buf);
    cr_assert_reset(r1);
    cr_assert_reset(r2);
    ssize_t r3 = coru_write_all(c, buf, sizeof buf, coru_now() + 10 * SEC);
    cr_assert_reset(r3);
    cr_assert_eq(coru_close(c), 0);

    /* reset while a write is parked on a full send buffer */
    tcp_pair(&c, &s);
    struct hog g = {.fd = c};
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, hog_writer, &g, NULL), 0);
    while (!atomic_load(&g.parked)) coru_sleep(5 * MS);
    coru_sleep(20 * MS);
    reset_peer(s);
    void *res;
    cr_assert_eq(coru_join(h, &res), 0);
    cr_assert_reset((ssize_t)(intptr_t)res);
    r1 = coru_write(c, buf, sizeof buf);
    cr_assert_reset(r1);
    cr_assert_eq(coru_close(c), 0);
    return NULL;
}

Test(net, write_to_a_reset_peer_fails_with_epipe_or_econnreset_and_raises_no_sigpipe, .timeout = 60)
{
    struct sigaction sa = {.sa_handler = on_sigpipe}, old;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGPIPE, &sa, &old), 0);
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, reset_main, NULL), 0);
    cr_assert_eq(atomic_load(&sigpipes), 0, "SIGPIPE was raised %d times", atomic_load(&sigpipes));
    sigaction(SIGPIPE, &old, NULL);
}

/* ------------------------------------------------------------ EOF */

static void *eof_main(void *arg)
{
    int c, s;
    tcp_pair(&c, &s);
    cr_assert_eq(coru_write_all(s, "bye", 3, coru_now() + 10 * SEC), 3);
    cr_assert_eq(coru_shutdown(s, SHUT_WR), 0);
    char b[16] = {0};
    /* read_full stops short at EOF */
    cr_assert_eq(coru_read_full(c, b, sizeof b, coru_now() + 10 * SEC), 3);
    cr_assert(memcmp(b, "bye", 3) == 0);
    cr_assert_eq(coru_read(c, b, sizeof b), 0);
    cr_assert_eq(coru_read_dl(c, b, sizeof b, coru_now() + 10 * SEC), 0);
    /* half closed: the other direction still works */
    cr_assert_eq(coru_write_all(c, "ok", 2, coru_now() + 10 * SEC), 2);
    cr_assert_eq(coru_read_full(s, b, 2, coru_now() + 10 * SEC), 2);
    cr_assert(memcmp(b, "ok", 2) == 0);
    cr_assert_eq(coru_shutdown(c, SHUT_WR), 0);
    cr_assert_eq(coru_read(s, b, sizeof b), 0);
    coru_close(c);
    coru_close(s);
    return NULL;
}

Test(net, read_returns_0_at_eof_after_the_peer_shuts_down_writing, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, eof_main, NULL), 0);
}

/* ------------------------------------------------------------ coru_poll */

static void *poll_parked(void *arg)
{
    return (void *)(intptr_t)coru_poll(*(int *)arg, POLLIN, coru_now() + 10 * SEC);
}

static void *poll_main(void *arg)
{
    int c, s;
    tcp_pair(&c, &s);
    /* nothing to read: times out; writable at once */
    int64_t t0 = coru_now();
    cr_assert_eq(coru_poll(c, POLLIN, t0 + 50 * MS), -ETIMEDOUT);
    cr_assert_geq(coru_now() - t0, 50 * MS);
    int r = coru_poll(c, POLLOUT, coru_now() + SEC);
    cr_assert(r > 0 && (r & POLLOUT), "POLLOUT: %d", r);
    cr_assert_eq(coru_poll(c, 0, CORU_NEVER), -EINVAL);
    cr_assert_eq(coru_poll(c, POLLIN | POLLOUT, CORU_NEVER), -EINVAL);
    cr_assert_eq(coru_poll(-1, POLLIN, CORU_NEVER), -EBADF);
    /* a parked poll wakes when bytes arrive, and takes none of them */
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, poll_parked, &c, NULL), 0);
    coru_sleep(20 * MS);
    cr_assert_eq(coru_write_all(s, "x", 1, coru_now() + SEC), 1);
    void *res;
    cr_assert_eq(coru_join(h, &res), 0);
    cr_assert((intptr_t)res > 0 && ((intptr_t)res & POLLIN), "POLLIN: %ld", (long)(intptr_t)res);
    char b[4];
    cr_assert_eq(coru_read(c, b, sizeof b), 1);
    /* cancelled while parked */
    cr_assert_eq(coru_spawn(&h, poll_parked, &c, NULL), 0);
    coru_sleep(20 * MS);
    coru_cancel(h);
    cr_assert_eq(coru_join(h, &res), 0);
    cr_assert_eq((intptr_t)res, -ECANCELED);
    /* EOF is readable */
    coru_shutdown(s, SHUT_WR);
    r = coru_poll(c, POLLIN, coru_now() + SEC);
    cr_assert(r > 0, "POLLIN at EOF: %d", r);
    cr_assert_eq(coru_read(c, b, sizeof b), 0);
    /* coru_close of the fd ends a parked poll with -EBADF */
    cr_assert_eq(coru_spawn(&h, poll_parked, &s, NULL), 0);
    coru_sleep(20 * MS);
    coru_close(s);
    cr_assert_eq(coru_join(h, &res), 0);
    cr_assert_eq((intptr_t)res, -EBADF);
    coru_close(c);
    return NULL;
}

Test(net, poll_waits_for_readiness_times_out_is_cancelled_and_ends_at_close, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, poll_main, NULL), 0);
}

/* ------------------------------------------------------------ deadlines */

static void *read_dl_main(void *arg)
{
    int c, s;
    tcp_pair(&c, &s);
    char b[16];
    int64_t t0 = coru_now();
    cr_assert_eq(coru_read_dl(c, b, sizeof b, t0 + 100 * MS), -ETIMEDOUT);
    cr_assert_geq(coru_now() - t0, 100 * MS);
    t0 = coru_now();
    cr_assert_eq(coru_read_full(c, b, sizeof b, t0 + 50 * MS), -ETIMEDOUT);
    cr_assert_geq(coru_now() - t0, 50 * MS);
    /* the timed-out reads took nothing: the connection still works */
    bounce(s, c, "still there");
    coru_close(c);
    coru_close(s);
    return NULL;
}

Test(net, read_dl_on_a_silent_connection_times_out_after_the_deadline, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, read_dl_main, NULL), 0);
}

static void *accept_dl_main(void *arg)
{
    int lfd = coru_tcp_listen("127.0.0.1", 0, 0, 0);
    cr_assert_geq(lfd, 0);
    int port = coru_local_port(lfd);
    int64_t t0 = coru_now();
    cr_assert_eq(coru_tcp_accept_dl(lfd, NULL, NULL, t0 + 100 * MS), -ETIMEDOUT);
    cr_assert_geq(coru_now() - t0, 100 * MS);
    /* the listener still works */
    int c = coru_tcp_connect("127.0.0.1", (uint16_t)port, coru_now() + 10 * SEC);
    cr_assert_geq(c, 0);
    int s = coru_tcp_accept_dl(lfd, NULL, NULL, coru_now() + 10 * SEC);
    cr_assert_geq(s, 0, "accept: %s", strerror(-s));
    bounce(c, s, "after a timeout");
    coru_close(c);
    coru_close(s);
    coru_close(lfd);
    return NULL;
}

Test(net, accept_dl_with_nobody_connecting_times_out_after_the_deadline, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, accept_dl_main, NULL), 0);
}

/* A deadline already past means "try once": what can complete at once
 * does, on both engines; what would block is -ETIMEDOUT. */
static void *past_dl_main(void *arg)
{
    int c, s;
    tcp_pair(&c, &s);
    char b[16] = {0};
    cr_assert_eq(coru_read_dl(c, b, sizeof b, 0), -ETIMEDOUT);
    cr_assert_eq(coru_write_all(s, "ready", 5, coru_now() + 10 * SEC), 5);
    int64_t end = coru_now() + 10 * SEC; /* wait (politely) until it arrived */
    struct pollfd p = {.fd = c, .events = POLLIN};
    while (poll(&p, 1, 0) == 0 && coru_now() < end) coru_sleep(1 * MS);
    cr_assert_eq(coru_read_dl(c, b, sizeof b, 0), 5, "data is there: a past deadline still reads it");
    cr_assert(memcmp(b, "ready", 5) == 0);
    cr_assert_eq(coru_write_dl(c, "x", 1, 0), 1, "room in the send buffer: a past deadline still writes");
    cr_assert_eq(coru_read_full(s, b, 1, coru_now() + 10 * SEC), 1);
    coru_close(c);
    coru_close(s);
    return NULL;
}

Test(net, a_past_deadline_tries_once_and_times_out_only_if_it_would_block, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, past_dl_main, NULL), 0);
}

/* ------------------------------------------------------------ cancellation */

struct parked {
    int fd;
    _Atomic int started;
};

static void *park_read(void *arg)
{
    struct parked *p = arg;
    char b[64];
    atomic_store(&p->started, 1);
    return (void *)(intptr_t)coru_read(p->fd, b, sizeof b);
}

static void *park_accept(void *arg)
{
    struct parked *p = arg;
    atomic_store(&p->started, 1);
    return (void *)(intptr_t)coru_tcp_accept(p->fd, NULL, NULL);
}

static void cancel_parked(coru_fn fn, int fd)
{
    struct parked p = {.fd = fd};
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, fn, &p, NULL), 0);
    while (!atomic_load(&p.started)) coru_yield();
    coru_sleep(50 * MS); /* let it park in the kernel / on readiness */
    cr_assert_eq(coru_cancel(h), 0);
    void *res = NULL;
    cr_assert_eq(coru_join(h, &res), 0);
    cr_assert_eq((int)(intptr_t)res, -ECANCELED, "got %d", (int)(intptr_t)res);
}

static void *cancel_read_main(void *arg)
{
    int c, s;
    tcp_pair(&c, &s);
    cancel_parked(park_read, c);
    /* The cancelled read took nothing: the connection still works. */
    bounce(s, c, "after the cancel");
    coru_close(c);
    coru_close(s);
    return NULL;
}

Test(net, cancel_ends_a_read_parked_on_a_silent_connection_with_ecanceled, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, cancel_read_main, NULL), 0);
}

static void *cancel_accept_main(void *arg)
{
    int lfd = coru_tcp_listen("127.0.0.1", 0, 0, 0);
    cr_assert_geq(lfd, 0);
    int port = coru_local_port(lfd);
    cancel_parked(park_accept, lfd);
    /* The listener still works. */
    int c = coru_tcp_connect("127.0.0.1", (uint16_t)port, coru_now() + 10 * SEC);
    cr_assert_geq(c, 0);
    int s = coru_tcp_accept_dl(lfd, NULL, NULL, coru_now() + 10 * SEC);
    cr_assert_geq(s, 0, "accept: %s", strerror(-s));
    bounce(c, s, "after the cancel");
    coru_close(c);
    coru_close(s);
    coru_close(lfd);
    return NULL;
}

Test(net, cancel_ends_a_parked_accept_with_ecanceled, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, cancel_accept_main, NULL), 0);
}

/* ------------------------------------------------------------ plain threads */

struct plain {
    uint16_t port;
    coru_chan *done; /* the thread's verdict: 0 or a negative step number */
};

static void *plain_client(void *arg)
{
    struct plain *p = arg;
    int verdict = 0;
    char out[4096], in[4096];
    int fd = coru_tcp_connect("127.0.0.1", p->port, coru_now() + 10 * SEC);
    if (fd < 0) {
        verdict = -1;
        goto out;
    }
    for (int i = 0; i < 20 && !verdict; i++) {
        size_t n = 1 + (size_t)i * 200;
        memset(out, 'a' + i, n);
        if (coru_write_all(fd, out, n, coru_now() + 10 * SEC) != (ssize_t)n) verdict = -2;
        else if (coru_read_full(fd, in, n, coru_now() + 10 * SEC) != (ssize_t)n) verdict = -3;
        else if (memcmp(in, out, n) != 0) verdict = -4;
    }
    /* a silent connection times out here too (poll(2)) */
    if (!verdict && coru_read_dl(fd, in, sizeof in, coru_now() + 50 * MS) != -ETIMEDOUT) verdict = -5;
    if (coru_close(fd) != 0 && !verdict) verdict = -6;
out:
    coru_chan_send(p->done, &verdict);
    return NULL;
}

static void *plain_main(void *arg)
{
    struct srv *s = arg;
    srv_start(s, 1);
    struct plain p = {.port = s->port};
    cr_assert_eq(coru_chan_create(&p.done, sizeof(int), 0), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, plain_client, &p), 0);
    int verdict = 1;
    cr_assert_eq(coru_chan_recv(p.done, &verdict), 0);
    cr_assert_eq(pthread_join(t, NULL), 0); /* it is returning already */
    cr_assert_eq(verdict, 0, "the plain thread failed at step %d", -verdict);
    cr_assert_eq(coru_join(s->acceptor, NULL), 0);
    coru_chan_destroy(p.done);
    return NULL;
}

Test(net, a_plain_thread_can_connect_write_and_read_against_a_coroutine_server, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        struct srv s = {0};
        cr_assert_eq(net_run(io, plain_main, &s), 0);
        srv_check(&s);
    }
}

/* ------------------------------------------------------------ across runs */

/* A listener made before coru_run and used in two runs: the second run's
 * engines are new, and the fd's registration from the first must not be
 * mistaken for a live one (it was, on epoll: the accept never woke). */
struct two_runs {
    int lfd, port;
};

static void *connect_once(void *arg)
{
    struct two_runs *t = arg;
    int fd = coru_tcp_connect("127.0.0.1", (uint16_t)t->port, coru_now() + 5000000000LL);
    cr_assert_geq(fd, 0, "connect: %d", fd);
    coru_close(fd);
    return NULL;
}

static void *accept_one(void *arg)
{
    struct two_runs *t = arg;
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, connect_once, t, NULL), 0);
    int fd = coru_tcp_accept_dl(t->lfd, NULL, NULL, coru_now() + 5000000000LL);
    cr_assert_geq(fd, 0, "accept: %d", fd);
    coru_close(fd);
    cr_assert_eq(coru_join(h, NULL), 0);
    return NULL;
}

Test(net, an_fd_kept_across_two_runs_still_wakes_in_the_second, .timeout = 60)
{
    FOR_EACH_ENGINE(io) {
        struct two_runs t;
        t.lfd = coru_tcp_listen("127.0.0.1", 0, 16, 0);
        cr_assert_geq(t.lfd, 0);
        t.port = coru_local_port(t.lfd);
        cr_assert_eq(net_run(io, accept_one, &t), 0);
        cr_assert_eq(net_run(io, accept_one, &t), 0);
        coru_close(t.lfd);
    }
}

/* ------------------------------------------------------------ UDP, vectors */

static void *udp_main(void *arg)
{
    int a = coru_udp_bind("127.0.0.1", 0), b = coru_udp_bind("127.0.0.1", 0);
    cr_assert_geq(a, 0);
    cr_assert_geq(b, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)coru_local_port(b))};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < 100; i++) {
        char msg[32], got[64];
        int n = snprintf(msg, sizeof msg, "datagram %d", i);
        cr_assert_eq(coru_sendto(a, msg, (size_t)n, (struct sockaddr *)&to, sizeof to, CORU_NEVER), n);
        struct sockaddr_in from;
        unsigned fl = sizeof from;
        cr_assert_eq(coru_recvfrom(b, got, sizeof got, (struct sockaddr *)&from, &fl, CORU_NEVER), n);
        cr_assert_eq(memcmp(got, msg, (size_t)n), 0);
        cr_assert_eq(ntohs(from.sin_port), coru_local_port(a));
    }
    char x;
    int64_t t0 = coru_now();
    cr_assert_eq(coru_recvfrom(b, &x, 1, NULL, NULL, t0 + 20 * MS), -ETIMEDOUT);
    cr_assert_geq(coru_now() - t0, 20 * MS);
    cr_assert_eq(coru_close(a), 0);
    cr_assert_eq(coru_close(b), 0);
    return arg;
}

Test(net, udp_datagrams_arrive_whole_with_the_sender_address, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, udp_main, NULL), 0);
}

static void *vec_main(void *arg)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    char a[] = "hello, ", b[] = "vectored ", c[] = "world";
    struct iovec out[3] = {{a, 7}, {b, 9}, {c, 5}};
    cr_assert_eq(coru_writev(sv[0], out, 3, CORU_NEVER), 21);
    char x[10] = {0}, y[11] = {0};
    struct iovec in[2] = {{x, 10}, {y, 11}};
    /* one writev of 21 bytes on an AF_UNIX stream arrives as one unit */
    cr_assert_eq(coru_readv(sv[1], in, 2, CORU_NEVER), 21);
    cr_assert_eq(memcmp(x, "hello, vec", 10), 0);
    cr_assert_eq(memcmp(y, "tored world", 11), 0);
    cr_assert_eq(coru_readv(sv[1], NULL, 1, CORU_NEVER), -EINVAL);
    coru_close(sv[0]);
    coru_close(sv[1]);
    return arg;
}

Test(net, writev_and_readv_move_the_bytes_in_order, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, vec_main, NULL), 0);
}


/* ------------------------------------------------------------ shared listener, close */

/* Four acceptors on one listener (on io_uring, one multishot accept feeds
 * them all): 100 clients are each accepted exactly once, with the right
 * peer address; closing the listener wakes the idle acceptors with
 * -EBADF. Then connections that arrived with nobody accepting (on
 * io_uring already accepted ahead, on epoll in the backlog) are not left
 * hanging when the listener is closed: their clients see EOF or a reset. */
enum { SH_CLIENTS = 100, SH_ACCEPTORS = 4 };

struct shared {
    int lfd;
    uint16_t port;
    _Atomic int accepted, ebadf, other;
    _Atomic int seen[SH_CLIENTS];      /* accepts per client id */
    _Atomic int peer_port[SH_CLIENTS]; /* as the acceptor saw it */
    int local_port[SH_CLIENTS];        /* as the client saw it */
};

static struct shared *sh;

static void *sh_acceptor(void *arg)
{
    (void)arg;
    for (;;) {
        struct sockaddr_in peer;
        unsigned len = sizeof peer;
        int fd = coru_tcp_accept_dl(sh->lfd, (struct sockaddr *)&peer, &len, coru_now() + 20 * SEC);
        if (fd == -EBADF) {
            atomic_fetch_add(&sh->ebadf, 1);
            return NULL;
        }
        if (fd < 0) {
            atomic_fetch_add(&sh->other, 1);
            return NULL;
        }
        atomic_fetch_add(&sh->accepted, 1);
        uint32_t id;
        if (coru_read_full(fd, &id, sizeof id, coru_now() + 10 * SEC) == sizeof id && id < SH_CLIENTS) {
            atomic_fetch_add(&sh->seen[id], 1);
            if (len == sizeof peer && peer.sin_family == AF_INET)
                atomic_store(&sh->peer_port[id], ntohs(peer.sin_port));
            coru_write_all(fd, &id, sizeof id, coru_now() + 10 * SEC);
        }
        coru_close(fd);
    }
}

static void *sh_client(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    int fd = coru_tcp_connect("127.0.0.1", sh->port, coru_now() + 10 * SEC);
    cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
    sh->local_port[id] = coru_local_port(fd);
    uint32_t back = ~id;
    cr_assert_eq(coru_write_all(fd, &id, sizeof id, coru_now() + 10 * SEC), (ssize_t)sizeof id);
    cr_assert_eq(coru_read_full(fd, &back, sizeof back, coru_now() + 10 * SEC), (ssize_t)sizeof back);
    cr_assert_eq(back, id);
    coru_close(fd);
    return NULL;
}

static void *shared_main(void *arg)
{
    (void)arg;
    sh->lfd = coru_tcp_listen("127.0.0.1", 0, 0, 0);
    cr_assert_geq(sh->lfd, 0);
    sh->port = (uint16_t)coru_local_port(sh->lfd);
    coru_t *a[SH_ACCEPTORS], *c[SH_CLIENTS];
    for (int i = 0; i < SH_ACCEPTORS; i++) cr_assert_eq(coru_spawn(&a[i], sh_acceptor, NULL, NULL), 0);
    for (int i = 0; i < SH_CLIENTS; i++) cr_assert_eq(coru_spawn(&c[i], sh_client, (void *)(uintptr_t)i, NULL), 0);
    for (int i = 0; i < SH_CLIENTS; i++) cr_assert_eq(coru_join(c[i], NULL), 0);
    coru_sleep(20 * MS); /* the acceptors park again */
    cr_assert_eq(coru_close(sh->lfd), 0);
    for (int i = 0; i < SH_ACCEPTORS; i++) cr_assert_eq(coru_join(a[i], NULL), 0);

    /* Connections nobody accepts, then the listener goes. */
    int lfd = coru_tcp_listen("127.0.0.1", 0, 0, 0);
    cr_assert_geq(lfd, 0);
    uint16_t port = (uint16_t)coru_local_port(lfd);
    int first = coru_tcp_connect("127.0.0.1", port, coru_now() + 10 * SEC);
    cr_assert_geq(first, 0);
    int s = coru_tcp_accept_dl(lfd, NULL, NULL, coru_now() + 10 * SEC); /* arms the multishot */
    cr_assert_geq(s, 0);
    int late[3];
    for (int i = 0; i < 3; i++) {
        late[i] = coru_tcp_connect("127.0.0.1", port, coru_now() + 10 * SEC);
        cr_assert_geq(late[i], 0);
    }
    coru_sleep(50 * MS);
    cr_assert_eq(coru_close(lfd), 0);
    for (int i = 0; i < 3; i++) {
        char b;
        ssize_t r = coru_read_dl(late[i], &b, 1, coru_now() + 5 * SEC);
        cr_assert(r == 0 || r == -ECONNRESET, "a connection left behind by a closed listener: read gave %zd", r);
        coru_close(late[i]);
    }
    coru_close(s);
    coru_close(first);
    return NULL;
}

Test(net, acceptors_share_a_listener_and_its_close_leaves_nothing_hanging, .timeout = 60)
{
    FOR_EACH_ENGINE(io) {
        sh = calloc(1, sizeof *sh);
        cr_assert_eq(net_run(io, shared_main, NULL), 0);
        cr_assert_eq(atomic_load(&sh->other), 0, "(%s)", ename(io));
        cr_assert_eq(atomic_load(&sh->accepted), SH_CLIENTS, "(%s)", ename(io));
        cr_assert_eq(atomic_load(&sh->ebadf), SH_ACCEPTORS, "(%s)", ename(io));
        for (int i = 0; i < SH_CLIENTS; i++) {
            cr_assert_eq(atomic_load(&sh->seen[i]), 1, "client %d accepted %d times (%s)", i,
                         atomic_load(&sh->seen[i]), ename(io));
            cr_assert_eq(atomic_load(&sh->peer_port[i]), sh->local_port[i], "peer port of client %d (%s)", i,
                         ename(io));
        }
        free(sh);
    }
}
