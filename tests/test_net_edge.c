/* Edges of the I/O contract in coru.h, each once a bug an outside tester
 * found (issue 8): any number of cancels from any threads end a parked
 * call with -ECANCELED; EOF right after data is not lost; writes to a
 * pipe whose reader has gone never raise SIGPIPE; a cancelled coroutine
 * still reads what is already there; coru_close ends calls parked on the
 * fd with -EBADF; zero-length reads and writes return at once. Every
 * scenario runs on both engines, over a unix socketpair and TCP where
 * both apply. */
#include <sys/uio.h>

#include "net_helpers.h"

/* ------------------------------------------------------------ fd pairs */

enum pair_kind { PAIR_UNIX, PAIR_TCP };

static const char *pname(enum pair_kind k)
{
    return k == PAIR_UNIX ? "unix socketpair" : "TCP";
}

/* A connected, non-blocking pair (from a coroutine). */
static void make_pair(enum pair_kind k, int *a, int *b)
{
    if (k == PAIR_TCP) {
        tcp_pair(a, b);
        return;
    }
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    *a = sv[0];
    *b = sv[1];
}

/* Fills fd's send path until a write would block. */
static void fill_up(int fd)
{
    static char junk[65536];
    while (coru_write_dl(fd, junk, sizeof junk, 0) > 0) {
    }
}

/* ------------------------------------------------------------ cancel, many times */

enum op_kind { OP_READ, OP_READV, OP_READ_FULL, OP_WRITE, OP_RECVFROM, OP_KINDS };

static const char *opname(enum op_kind k)
{
    static const char *n[] = {"coru_read", "coru_readv", "coru_read_full", "coru_write", "coru_recvfrom"};
    return n[k];
}

struct victim {
    enum op_kind op;
    int fd;
    _Atomic int started;
};

static void *victim_body(void *arg)
{
    struct victim *v = arg;
    char buf[256];
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
    atomic_store(&v->started, 1);
    ssize_t r;
    switch (v->op) {
    case OP_READ: r = coru_read(v->fd, buf, sizeof buf); break;
    case OP_READV: r = coru_readv(v->fd, &iov, 1, CORU_NEVER); break;
    case OP_READ_FULL: r = coru_read_full(v->fd, buf, sizeof buf, CORU_NEVER); break;
    case OP_WRITE: r = coru_write(v->fd, buf, sizeof buf); break;
    default: r = coru_recvfrom(v->fd, buf, sizeof buf, NULL, NULL, CORU_NEVER); break;
    }
    return (void *)(intptr_t)r;
}

struct canceller {
    coru_t *h;
    int times;
    _Atomic int *go;
};

/* A plain thread cancelling `times` times once *go is set. */
static void *thread_canceller(void *arg)
{
    struct canceller *c = arg;
    while (!atomic_load(c->go)) {
    }
    for (int i = 0; i < c->times; i++) cr_assert_eq(coru_cancel(c->h), 0);
    return NULL;
}

static void *co_canceller(void *arg)
{
    struct canceller *c = arg;
    while (!atomic_load(c->go)) coru_yield();
    for (int i = 0; i < c->times; i++) cr_assert_eq(coru_cancel(c->h), 0);
    return NULL;
}

/* style: 0 twice in a row from the parent coroutine; 1 a plain thread and a
 * coroutine at the same moment; 2 a hundred times from three parties. */
static void cancel_victim(enum op_kind op, int fd, int style, const char *what)
{
    struct victim v = {.op = op, .fd = fd};
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, victim_body, &v, NULL), 0);
    while (!atomic_load(&v.started)) coru_yield();
    coru_sleep(10 * MS); /* parked in the kernel (io_uring) or on readiness */
    if (style == 0) {
        cr_assert_eq(coru_cancel(h), 0);
        cr_assert_eq(coru_cancel(h), 0);
    } else {
        _Atomic int go = 0;
        int times = style == 1 ? 1 : 100;
        struct canceller tc = {h, times, &go}, cc = {h, times, &go};
        pthread_t t;
        coru_t *ch;
        cr_assert_eq(pthread_create(&t, NULL, thread_canceller, &tc), 0);
        cr_assert_eq(coru_spawn(&ch, co_canceller, &cc, NULL), 0);
        atomic_store(&go, 1);
        for (int i = 0; i < (style == 1 ? 0 : times); i++) cr_assert_eq(coru_cancel(h), 0);
        cr_assert_eq(coru_join(ch, NULL), 0);
        cr_assert_eq(pthread_join(t, NULL), 0);
    }
    void *res;
    int64_t t0 = coru_now();
    cr_assert_eq(coru_join_dl(h, &res, t0 + 5 * SEC), 0, "%s %s never returned after its cancels", what,
                 opname(op));
    cr_assert_eq((int)(intptr_t)res, -ECANCELED, "%s %s: %d", what, opname(op), (int)(intptr_t)res);
}

static void *cancel_many_main(void *arg)
{
    (void)arg;
    for (int style = 0; style < 3; style++) {
        for (enum op_kind op = 0; op < OP_KINDS; op++) {
            if (op == OP_RECVFROM) {
                int u = coru_udp_bind("127.0.0.1", 0);
                cr_assert_geq(u, 0);
                cancel_victim(op, u, style, "UDP");
                coru_close(u);
                continue;
            }
            for (enum pair_kind k = PAIR_UNIX; k <= PAIR_TCP; k++) {
                int a, b;
                make_pair(k, &a, &b);
                if (op == OP_WRITE) fill_up(a);
                cancel_victim(op, a, style, pname(k));
                /* The connection still works after the cancels. */
                if (op != OP_WRITE) bounce(b, a, "after the cancels");
                coru_close(a);
                coru_close(b);
            }
        }
    }
    return NULL;
}

Test(net_edge, any_number_of_cancels_from_any_threads_end_a_parked_call_with_ecanceled, .timeout = 120)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, cancel_many_main, NULL), 0, "%s", ename(io));
}

/* ------------------------------------------------------------ EOF right after data */

struct eof_reader {
    int fd;
    _Atomic int parked;
    ssize_t first, second, full;
    char buf[16];
    int64_t second_ns;
};

static void *eof_read_body(void *arg)
{
    struct eof_reader *r = arg;
    atomic_store(&r->parked, 1);
    r->first = coru_read_dl(r->fd, r->buf, sizeof r->buf, coru_now() + 5 * SEC);
    int64_t t0 = coru_now();
    r->second = coru_read_dl(r->fd, r->buf + 3, sizeof r->buf - 3, coru_now() + 5 * SEC);
    r->second_ns = coru_now() - t0;
    return NULL;
}

static void *eof_full_body(void *arg)
{
    struct eof_reader *r = arg;
    atomic_store(&r->parked, 1);
    r->full = coru_read_full(r->fd, r->buf, 10, coru_now() + 5 * SEC);
    return NULL;
}

/* The reader parks first; the peer then writes 3 bytes and shuts down
 * writing at once, so data and FIN arrive together. */
static void *eof_main(void *arg)
{
    (void)arg;
    for (enum pair_kind k = PAIR_UNIX; k <= PAIR_TCP; k++) {
        for (int round = 0; round < 20; round++) {
            for (int full = 0; full < 2; full++) {
                int a, b;
                make_pair(k, &a, &b);
                struct eof_reader r = {.fd = a};
                coru_t *h;
                cr_assert_eq(coru_spawn(&h, full ? eof_full_body : eof_read_body, &r, NULL), 0);
                while (!atomic_load(&r.parked)) coru_yield();
                coru_sleep(round % 2 ? 2 * MS : 0); /* parked, or about to */
                cr_assert_eq(write(b, "abc", 3), 3);
                cr_assert_eq(shutdown(b, SHUT_WR), 0);
                cr_assert_eq(coru_join(h, NULL), 0);
                if (full) {
                    cr_assert_eq(r.full, 3, "%s: read_full(10) gave %zd, not the 3 bytes before EOF", pname(k),
                                 r.full);
                } else {
                    cr_assert_eq(r.first, 3, "%s: first read %zd", pname(k), r.first);
                    cr_assert_eq(r.second, 0, "%s: the read after the data gave %zd, not EOF", pname(k), r.second);
                    cr_assert_lt(r.second_ns, 1 * SEC, "%s: EOF took %lld ms", pname(k),
                                 (long long)(r.second_ns / MS));
                }
                cr_assert(memcmp(r.buf, "abc", 3) == 0);
                coru_close(a);
                coru_close(b);
            }
        }
    }
    return NULL;
}

Test(net_edge, eof_right_after_data_is_seen_by_the_next_read, .timeout = 60)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, eof_main, NULL), 0, "%s", ename(io));
}

/* ------------------------------------------------------------ pipes and SIGPIPE */

static bool sigpipe_pending(void)
{
    sigset_t p;
    cr_assert_eq(sigpending(&p), 0);
    return sigismember(&p, SIGPIPE);
}

static bool sigpipe_blocked(void)
{
    sigset_t m;
    cr_assert_eq(pthread_sigmask(SIG_BLOCK, NULL, &m), 0);
    return sigismember(&m, SIGPIPE);
}

struct pipe_writer {
    int fd;
    _Atomic int parked;
};

static void *parked_pipe_writer(void *arg)
{
    struct pipe_writer *w = arg;
    static char buf[4096];
    atomic_store(&w->parked, 1);
    return (void *)(intptr_t)coru_write_all(w->fd, buf, sizeof buf, coru_now() + 10 * SEC);
}

static void *pipe_main(void *arg)
{
    (void)arg;
    /* The reader closed before the write. */
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    cr_assert_eq(close(p[0]), 0);
    cr_assert_eq(coru_write(p[1], "x", 1), -EPIPE);
    cr_assert_eq(coru_write_all(p[1], "xyz", 3, coru_now() + SEC), -EPIPE);
    struct iovec iov = {.iov_base = "v", .iov_len = 1};
    cr_assert_eq(coru_writev(p[1], &iov, 1, CORU_NEVER), -EPIPE);
    cr_assert_eq(coru_close(p[1]), 0);

    /* The reader closes while a write is parked on the full pipe. */
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    fill_up(p[1]);
    struct pipe_writer w = {.fd = p[1]};
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, parked_pipe_writer, &w, NULL), 0);
    while (!atomic_load(&w.parked)) coru_yield();
    coru_sleep(10 * MS);
    cr_assert_eq(close(p[0]), 0);
    void *res;
    cr_assert_eq(coru_join(h, &res), 0);
    cr_assert_eq((int)(intptr_t)res, -EPIPE, "parked write: %d", (int)(intptr_t)res);
    cr_assert_eq(coru_close(p[1]), 0);
    return NULL;
}

/* With SIGPIPE's default action (which kills), on both engines, from a
 * coroutine and from a plain thread; the caller's mask comes back as it
 * was and no SIGPIPE is left pending. */
Test(net_edge, writes_to_a_pipe_without_reader_fail_with_epipe_and_raise_no_sigpipe, .timeout = 60)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL}, old;
    sigemptyset(&dfl.sa_mask);
    cr_assert_eq(sigaction(SIGPIPE, &dfl, &old), 0);
    cr_assert(!sigpipe_blocked());
    FOR_EACH_ENGINE(io) {
        cr_assert_eq(net_run(io, pipe_main, NULL), 0, "%s", ename(io));
        cr_assert(!sigpipe_blocked(), "coru_run left SIGPIPE blocked (%s)", ename(io));
        cr_assert(!sigpipe_pending(), "coru_run left a SIGPIPE pending (%s)", ename(io));
    }
    /* A plain thread (this one): the write blocks SIGPIPE only around
     * itself. */
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    cr_assert_eq(close(p[0]), 0);
    cr_assert_eq(coru_write(p[1], "x", 1), -EPIPE);
    struct iovec iov = {.iov_base = "v", .iov_len = 1};
    cr_assert_eq(coru_writev(p[1], &iov, 1, CORU_NEVER), -EPIPE);
    cr_assert(!sigpipe_blocked());
    cr_assert(!sigpipe_pending());
    close(p[1]);

    /* A caller that blocks SIGPIPE itself keeps it blocked, and finds no
     * SIGPIPE of the run's pending. */
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    cr_assert_eq(pthread_sigmask(SIG_BLOCK, &pipe_set, NULL), 0);
    FOR_EACH_ENGINE(io) {
        cr_assert_eq(net_run(io, pipe_main, NULL), 0);
        cr_assert(sigpipe_blocked());
        cr_assert(!sigpipe_pending(), "coru_run left a SIGPIPE pending (%s)", ename(io));
    }
    cr_assert_eq(pthread_sigmask(SIG_UNBLOCK, &pipe_set, NULL), 0);
    sigaction(SIGPIPE, &old, NULL);
}

/* ------------------------------------------------------------ cancelled, data waiting */

struct late {
    int fd;
    _Atomic int cancelled;
    ssize_t got, again, wrote;
    char buf[16];
};

static void *late_body(void *arg)
{
    struct late *l = arg;
    while (!atomic_load(&l->cancelled)) coru_yield(); /* not a cancellation point */
    l->got = coru_read(l->fd, l->buf, sizeof l->buf);
    l->again = coru_read(l->fd, l->buf, sizeof l->buf); /* nothing left: would park */
    l->wrote = coru_write(l->fd, "back", 4);            /* room: completes at once */
    return NULL;
}

static void *late_main(void *arg)
{
    (void)arg;
    for (enum pair_kind k = PAIR_UNIX; k <= PAIR_TCP; k++) {
        int a, b;
        make_pair(k, &a, &b);
        /* A short read first: on epoll it marks the socket drained, so
         * that the next read would wait for an edge before trying. */
        char z[16];
        cr_assert_eq(coru_write_all(b, "z", 1, coru_now() + SEC), 1);
        cr_assert_eq(coru_read_dl(a, z, sizeof z, coru_now() + SEC), 1);
        cr_assert_eq(coru_write_all(b, "data", 4, coru_now() + SEC), 4);
        struct pollfd p = {.fd = a, .events = POLLIN};
        while (poll(&p, 1, 0) == 0) coru_sleep(MS);
        struct late l = {.fd = a};
        coru_t *h;
        cr_assert_eq(coru_spawn(&h, late_body, &l, NULL), 0);
        cr_assert_eq(coru_cancel(h), 0);
        atomic_store(&l.cancelled, 1);
        cr_assert_eq(coru_join(h, NULL), 0);
        cr_assert_eq(l.got, 4, "%s: a cancelled coroutine's read of waiting data gave %zd", pname(k), l.got);
        cr_assert(memcmp(l.buf, "data", 4) == 0);
        cr_assert_eq(l.again, -ECANCELED, "%s: %zd", pname(k), l.again);
        cr_assert_eq(l.wrote, 4, "%s: %zd", pname(k), l.wrote);
        char in[4];
        cr_assert_eq(coru_read_full(b, in, 4, coru_now() + SEC), 4);
        coru_close(a);
        coru_close(b);
    }
    return NULL;
}

Test(net_edge, a_cancelled_coroutine_still_reads_data_already_waiting, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, late_main, NULL), 0, "%s", ename(io));
}

/* ------------------------------------------------------------ close under a parked call */

static void *close_main(void *arg)
{
    (void)arg;
    enum op_kind ops[] = {OP_READ, OP_WRITE, OP_READV};
    for (enum pair_kind k = PAIR_UNIX; k <= PAIR_TCP; k++) {
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
            int a, b;
            make_pair(k, &a, &b);
            if (ops[i] == OP_WRITE) fill_up(a);
            struct victim v = {.op = ops[i], .fd = a};
            coru_t *h;
            cr_assert_eq(coru_spawn(&h, victim_body, &v, NULL), 0);
            while (!atomic_load(&v.started)) coru_yield();
            coru_sleep(10 * MS);
            cr_assert_eq(coru_close(a), 0);
            void *res;
            cr_assert_eq(coru_join_dl(h, &res, coru_now() + 5 * SEC), 0, "%s %s stayed parked after close",
                         pname(k), opname(ops[i]));
            cr_assert_eq((int)(intptr_t)res, -EBADF, "%s %s: %d", pname(k), opname(ops[i]), (int)(intptr_t)res);
            coru_close(b);
        }
    }
    return NULL;
}

Test(net_edge, closing_the_fd_ends_a_parked_call_with_ebadf, .timeout = 60)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, close_main, NULL), 0, "%s", ename(io));
}

/* ------------------------------------------------------------ zero lengths */

static void *zero_main(void *arg)
{
    (void)arg;
    for (enum pair_kind k = PAIR_UNIX; k <= PAIR_TCP; k++) {
        int a, b;
        make_pair(k, &a, &b);
        char c;
        int64_t t0 = coru_now();
        cr_assert_eq(coru_read(a, &c, 0), 0, "%s", pname(k)); /* nothing there: still at once */
        cr_assert_eq(coru_read_dl(a, NULL, 0, coru_now() + 5 * SEC), 0);
        cr_assert_eq(coru_write(a, &c, 0), 0);
        cr_assert_lt(coru_now() - t0, SEC / 2);
        coru_close(a);
        coru_close(b);
    }
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    char c;
    cr_assert_eq(coru_read(p[0], &c, 0), 0);
    cr_assert_eq(coru_write(p[1], &c, 0), 0);
    cr_assert_eq(coru_read(p[1], &c, 0), -EBADF, "the write end of a pipe is not readable");
    close(p[0]);
    close(p[1]);
    cr_assert_eq(coru_read(-1, &c, 0), -EBADF);
    cr_assert_eq(coru_write(-1, &c, 0), -EBADF);
    return NULL;
}

Test(net_edge, zero_length_reads_and_writes_return_at_once, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, zero_main, NULL), 0, "%s", ename(io));
}

/* ------------------------------------------------------------ close racing a call */

/* Two coroutines enter coru_read (or coru_write on a full socket) on one
 * fd just as another closes it: however the calls and the close
 * interleave, each call ends (-EBADF, or its result) instead of parking
 * on a registration the close dropped. The code before the fix left one
 * parked in about one of 20,000 rounds on epoll. */
#if defined(CORU_TSAN) || defined(CORU_ASAN)
enum { RACE_ROUNDS = 3000 };
#else
enum { RACE_ROUNDS = 50000 };
#endif

struct racer {
    int fd;
    bool read;
    ssize_t rc;
};

static void *racer_body(void *arg)
{
    struct racer *r = arg;
    static char big[1 << 16];
    char b[64];
    r->rc = r->read ? coru_read(r->fd, b, sizeof b) : coru_write(r->fd, big, sizeof big);
    return NULL;
}

static void *close_race_main(void *arg)
{
    unsigned seed = 12345;
    for (int read = 0; read < 2; read++) {
        for (int it = 0; it < RACE_ROUNDS; it++) {
            int sv[2];
            cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
            if (!read) fill_up(sv[0]);
            struct racer r[2] = {{sv[0], read, 1}, {sv[0], read, 1}};
            coru_t *h[2];
            for (int k = 0; k < 2; k++) cr_assert_eq(coru_spawn(&h[k], racer_body, &r[k], NULL), 0);
            int spin = rand_r(&seed) % 3000;
            for (volatile int i = 0; i < spin; i++) {
            }
            if (rand_r(&seed) % 2) coru_yield();
            cr_assert_eq(coru_close(sv[0]), 0);
            for (int k = 0; k < 2; k++) {
                int rc = coru_join_dl(h[k], NULL, coru_now() + 5 * SEC);
                if (rc) {
                    coru_cancel(h[k]);
                    coru_join(h[k], NULL);
                }
                cr_assert_eq(rc, 0, "round %d: a %s stayed parked after coru_close", it, read ? "read" : "write");
                cr_assert(r[k].rc == -EBADF || r[k].rc > 0, "round %d: %zd", it, r[k].rc);
            }
            close(sv[1]);
        }
    }
    return NULL;
}

Test(net_edge, a_call_racing_coru_close_on_its_fd_ends_and_never_parks, .timeout = 120)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, close_race_main, NULL), 0, "%s", ename(io));
}

/* ------------------------------------------------------------ an fd number reused after close(2) */

/* coru caches per fd number whether it is a socket. A socket closed with
 * a plain close(2), whose number then goes to a pipe: calls on the pipe
 * still work (they used to fail with -ENOTSOCK). */
static void *reuse_main(void *arg)
{
    for (int round = 0; round < 3; round++) {
        int sv[2], p[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        cr_assert_eq(coru_write(sv[0], "abc", 3), 3);
        char b[8];
        cr_assert_eq(coru_read(sv[1], b, sizeof b), 3);
        close(sv[0]); /* plain close(2), on purpose */
        close(sv[1]);
        cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
        cr_assert(p[0] == sv[0] || p[0] == sv[1] || p[1] == sv[0] || p[1] == sv[1], "the numbers were not reused");
        cr_assert_eq(coru_write(p[1], "xyz", 3), 3);
        struct iovec iov = {.iov_base = "w", .iov_len = 1};
        cr_assert_eq(coru_writev(p[1], &iov, 1, CORU_NEVER), 1);
        cr_assert_eq(coru_read(p[0], b, sizeof b), 4, "a pipe on a socket's old number");
        cr_assert(memcmp(b, "xyzw", 4) == 0);
        close(p[0]);
        close(p[1]);
    }
    return NULL;
}

Test(net_edge, an_fd_number_reused_after_a_plain_close_works_as_its_new_file, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, reuse_main, NULL), 0, "%s", ename(io));
}
