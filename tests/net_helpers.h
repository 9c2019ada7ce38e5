/* Shared by the TCP test programs (test_net, test_net_load): both
 * engines with two workers, and a small echo server that counts what it
 * saw. */
#ifndef CORU_TEST_NET_HELPERS_H
#define CORU_TEST_NET_HELPERS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "coru.h"
#include "helpers.h"

#define MS (1000 * 1000LL)
#define SEC (1000 * MS)


/* Every net scenario runs with two workers. */
__attribute__((unused)) static int net_run(enum coru_io io, coru_fn fn, void *arg)
{
    return run_on(io, 2, fn, arg);
}

__attribute__((unused)) static const char *ename(enum coru_io io)
{
    return io == CORU_IO_URING ? "io_uring" : "epoll";
}

/* ------------------------------------------------------------ an echo server */

/* Accepts `conns` connections on 127.0.0.1:<port 0>, one echo coroutine
 * each; the acceptor closes the listener when it has them all. */
struct srv {
    int lfd;
    uint16_t port;
    int conns;
    coru_t *acceptor;
    _Atomic int accepted, live, peak, errors, first_err;
    _Atomic long bytes; /* echoed */
};

struct conn {
    struct srv *s;
    int fd;
};

__attribute__((unused)) static void note_err(struct srv *s, int rc)
{
    int zero = 0;
    atomic_compare_exchange_strong(&s->first_err, &zero, rc);
    atomic_fetch_add(&s->errors, 1);
}

__attribute__((unused)) static void *echo_conn(void *arg)
{
    struct conn c = *(struct conn *)arg;
    free(arg);
    struct srv *s = c.s;
    int live = atomic_fetch_add(&s->live, 1) + 1;
    int peak = atomic_load(&s->peak);
    while (live > peak && !atomic_compare_exchange_weak(&s->peak, &peak, live)) {
    }
    char buf[8192];
    for (;;) {
        ssize_t n = coru_read(c.fd, buf, sizeof buf);
        if (n == 0) break;
        if (n < 0) {
            note_err(s, (int)n);
            break;
        }
        ssize_t w = coru_write_all(c.fd, buf, (size_t)n, CORU_NEVER);
        if (w != n) {
            note_err(s, w < 0 ? (int)w : -EIO);
            break;
        }
        atomic_fetch_add(&s->bytes, (long)n);
    }
    atomic_fetch_sub(&s->live, 1);
    coru_close(c.fd);
    return NULL;
}

__attribute__((unused)) static void *acceptor(void *arg)
{
    struct srv *s = arg;
    while (atomic_load(&s->accepted) < s->conns) {
        int fd = coru_tcp_accept_dl(s->lfd, NULL, NULL, coru_now() + 60 * SEC);
        if (fd < 0) {
            note_err(s, fd);
            break;
        }
        atomic_fetch_add(&s->accepted, 1);
        /* echoes in several pieces: without it Nagle waits for delayed ACKs */
        cr_assert_eq(coru_tcp_nodelay(fd, 1), 0);
        struct conn *c = malloc(sizeof *c);
        cr_assert_not_null(c);
        c->s = s;
        c->fd = fd;
        cr_assert_eq(coru_go(echo_conn, c, NULL), 0);
    }
    cr_assert_eq(coru_close(s->lfd), 0);
    return NULL;
}

/* From a coroutine: listen and start the acceptor. */
__attribute__((unused)) static void srv_start(struct srv *s, int conns)
{
    s->lfd = coru_tcp_listen("127.0.0.1", 0, 0, 0);
    cr_assert_geq(s->lfd, 0, "listen: %s", strerror(-s->lfd));
    int port = coru_local_port(s->lfd);
    cr_assert_gt(port, 0);
    s->port = (uint16_t)port;
    s->conns = conns;
    cr_assert_eq(coru_spawn(&s->acceptor, acceptor, s, NULL), 0);
}

/* After coru_run: everything the server saw went well. */
__attribute__((unused)) static void srv_check(struct srv *s)
{
    cr_assert_eq(atomic_load(&s->errors), 0, "server: %d errors, the first %s", atomic_load(&s->errors),
                 strerror(-atomic_load(&s->first_err)));
    cr_assert_eq(atomic_load(&s->accepted), s->conns);
    cr_assert_eq(atomic_load(&s->live), 0);
}

/* A connected pair on 127.0.0.1: *c the client end, *s the server end. */
__attribute__((unused)) static void tcp_pair(int *c, int *s)
{
    int lfd = coru_tcp_listen("127.0.0.1", 0, 0, 0);
    cr_assert_geq(lfd, 0, "listen: %s", strerror(-lfd));
    int port = coru_local_port(lfd);
    cr_assert_gt(port, 0);
    *c = coru_tcp_connect("127.0.0.1", (uint16_t)port, coru_now() + 10 * SEC);
    cr_assert_geq(*c, 0, "connect: %s", strerror(-*c));
    *s = coru_tcp_accept_dl(lfd, NULL, NULL, coru_now() + 10 * SEC);
    cr_assert_geq(*s, 0, "accept: %s", strerror(-*s));
    cr_assert_eq(coru_close(lfd), 0);
}

/* One message from a to b and back. */
__attribute__((unused)) static void bounce(int a, int b, const char *msg)
{
    size_t n = strlen(msg);
    char buf[256];
    cr_assert_leq(n, sizeof buf);
    cr_assert_eq(coru_write_all(a, msg, n, coru_now() + 10 * SEC), (ssize_t)n);
    cr_assert_eq(coru_read_full(b, buf, n, coru_now() + 10 * SEC), (ssize_t)n);
    cr_assert_eq(coru_write_all(b, buf, n, coru_now() + 10 * SEC), (ssize_t)n);
    memset(buf, 0, sizeof buf);
    cr_assert_eq(coru_read_full(a, buf, n, coru_now() + 10 * SEC), (ssize_t)n);
    cr_assert(memcmp(buf, msg, n) == 0);
}

#endif
