/* Tests for the per-worker I/O engine (src/io/engine.c, uring.c, epoll.c):
 * kind selection, timed and untimed waits, wakes from plain threads and
 * from engine-owning threads (MSG_RING where the kernel has it), no lost
 * wake over 100k ping-pongs, op dispatch and CQ overflow, and teardown
 * with the wake read still armed. Every behaviour runs on both engines. */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "io/engine.h"
#include "io/engine_impl.h"
#include "emu.h"

#define MS (1000 * 1000LL)

/* Runs body(kind) with kind selected, for io_uring then epoll. io_uring
 * that cannot be set up here is reported and skipped, not failed. */
static void on_both(void (*body)(int kind))
{
    for (int kind = CORU__ENGINE_URING; kind <= CORU__ENGINE_EPOLL; kind++) {
        int k = coru__engine_select(kind);
        if (k < 0) {
            cr_assert_eq(kind, CORU__ENGINE_URING, "epoll select failed: %d", k);
            NOTE_MISSING("io_uring unavailable here (%d): its half skipped", k);
            continue;
        }
        cr_assert_eq(k, kind);
        cr_assert_eq((int)coru__engine_kind(), kind);
        body(kind);
    }
}

static struct coru__engine *make(void)
{
    struct coru__engine *e = NULL;
    int rc = coru__engine_create(&e);
    cr_assert_eq(rc, 0, "coru__engine_create: %d", rc);
    cr_assert_not_null(e);
    return e;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * MS};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    int n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------------
 * Selection
 * ------------------------------------------------------------------------ */

Test(engine, select_honours_want_and_coru_io, .timeout = 20)
{
    unsetenv("CORU_IO");
    int autok = coru__engine_select(0);
    cr_assert(autok == CORU__ENGINE_URING || autok == CORU__ENGINE_EPOLL, "auto: %d", autok);
    bool uring_ok = autok == CORU__ENGINE_URING;
    cr_assert_eq(coru__engine_select(1) == CORU__ENGINE_URING, uring_ok);

    cr_assert_eq(coru__engine_select(2), CORU__ENGINE_EPOLL);
    cr_assert_eq(coru__engine_kind(), CORU__ENGINE_EPOLL);
    cr_assert_not(coru__engine_has_msg_ring());

    setenv("CORU_IO", "epoll", 1);
    cr_assert_eq(coru__engine_select(0), CORU__ENGINE_EPOLL);
    /* The variable overrides auto only. */
    if (uring_ok) cr_assert_eq(coru__engine_select(1), CORU__ENGINE_URING);
    setenv("CORU_IO", "uring", 1);
    if (uring_ok)
        cr_assert_eq(coru__engine_select(0), CORU__ENGINE_URING);
    else
        cr_assert_lt(coru__engine_select(0), 0); /* forced, so the error */
    cr_assert_eq(coru__engine_select(2), CORU__ENGINE_EPOLL);
    setenv("CORU_IO", "kqueue", 1);
    cr_assert_eq(coru__engine_select(0), -EINVAL);
    setenv("CORU_IO", "", 1);
    cr_assert_eq(coru__engine_select(0), autok);
    unsetenv("CORU_IO");

    cr_assert_eq(coru__engine_select(3), -EINVAL);
    cr_assert_eq(coru__engine_select(-1), -EINVAL);

    cr_assert_str_eq(coru__engine_name(CORU__ENGINE_URING), "io_uring");
    cr_assert_str_eq(coru__engine_name(CORU__ENGINE_EPOLL), "epoll");
    cr_assert_str_eq(coru__engine_name(CORU__ENGINE_NONE), "none");
    if (uring_ok) {
        coru__engine_select(1);
        cr_log_info("io_uring MSG_RING: %s", coru__engine_has_msg_ring() ? "yes" : "no");
    }
}

Test(engine, create_needs_select_and_allows_one_engine_per_thread, .timeout = 20)
{
    struct coru__engine *e = NULL;
    cr_assert_eq(coru__engine_create(&e), -EINVAL); /* nothing selected */
    cr_assert_null(e);
    cr_assert_eq(coru__engine_create(NULL), -EINVAL);
    cr_assert_eq(coru__engine_select(2), CORU__ENGINE_EPOLL);
    e = make();
    struct coru__engine *e2 = NULL;
    cr_assert_eq(coru__engine_create(&e2), -EBUSY);
    coru__engine_destroy(e);
    e = make(); /* the slot is free again */
    coru__engine_destroy(e);
}

/* ------------------------------------------------------------------------
 * Timed waits
 * ------------------------------------------------------------------------ */

static void zero_timeout_body(int kind)
{
    (void)kind;
    struct coru__engine *e = make();
    for (int i = 0; i < 100; i++) cr_assert_eq(coru__engine_wait(e, 0), 0);
    coru__engine_destroy(e);
}

Test(engine, wait_with_zero_timeout_returns_at_once, .timeout = 10)
{
    on_both(zero_timeout_body);
}

static void timed_body(int kind)
{
    (void)kind;
    struct coru__engine *e = make();
    int64_t t0 = coru__now_ns();
    cr_assert_eq(coru__engine_wait(e, 20 * MS), 0);
    int64_t dt = coru__now_ns() - t0;
    cr_assert_geq(dt, 20 * MS, "returned after %lld ns", (long long)dt);

    /* Sub-millisecond: must still sleep (epoll rounds up, never to 0). */
    t0 = coru__now_ns();
    cr_assert_eq(coru__engine_wait(e, 100 * 1000), 0);
    dt = coru__now_ns() - t0;
    cr_assert_geq(dt, 100 * 1000, "returned after %lld ns", (long long)dt);
    coru__engine_destroy(e);
}

Test(engine, wait_with_timeout_sleeps_at_least_that_long, .timeout = 10)
{
    on_both(timed_body);
}

/* ------------------------------------------------------------------------
 * Wakes
 * ------------------------------------------------------------------------ */

struct waker {
    struct coru__engine *target;
    bool own_engine;  /* create an engine first (the MSG_RING path) */
    int delay_ms;     /* sleep before waking, so the target is asleep */
    int wakes;        /* how many wakes to send */
    _Atomic int news; /* what the wake announces; set before waking */
    uint64_t msg_sent, msg_failed; /* the waker engine's counters */
};

static void *waker_main(void *arg)
{
    struct waker *w = arg;
    struct coru__engine *own = NULL;
    if (w->own_engine) own = make();
    if (w->delay_ms) sleep_ms(w->delay_ms);
    /* The news first, then the wake (the order every waker must keep):
     * a target that consumes the wake before the news is visible would
     * otherwise go back to sleep for good. */
    atomic_store_explicit(&w->news, 1, memory_order_release); /* pairs with acquire in wait_for_wake */
    for (int i = 0; i < w->wakes; i++) coru__engine_wake(w->target);
    if (own) {
        if (own->head.kind == CORU__ENGINE_URING) {
            w->msg_sent = own->u.msg_sent;
            w->msg_failed = own->u.msg_failed;
        }
        coru__engine_destroy(own);
    }
    return NULL;
}

/* Owner side: waits with no timeout until the news is visible and the wake
 * has been seen on the path expected. A lost wake hangs here until the
 * test's timeout. */
static void wait_for_wake(struct coru__engine *e, struct waker *w, bool via_msg)
{
    while (!atomic_load_explicit(&w->news, memory_order_acquire)) /* pairs with release in waker_main */
        cr_assert_geq(coru__engine_wait(e, -1), 0);
    if (via_msg) {
        while (e->u.msg_recv == 0) cr_assert_eq(coru__engine_wait(e, -1), 0);
    } else {
        while (e->fd_wakes == 0) cr_assert_eq(coru__engine_wait(e, -1), 0);
    }
}

static void plain_wake_body(int kind)
{
    (void)kind;
    struct coru__engine *e = make();
    struct waker w = {.target = e, .delay_ms = 20, .wakes = 1};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, waker_main, &w), 0);
    wait_for_wake(e, &w, false);
    pthread_join(t, NULL);
    if (kind == CORU__ENGINE_URING) cr_assert_eq(e->u.msg_recv, 0);
    coru__engine_destroy(e);
}

Test(engine, wake_from_plain_thread_ends_blocking_wait, .timeout = 20)
{
    on_both(plain_wake_body);
}

static void engine_wake_body(int kind)
{
    bool via_msg = kind == CORU__ENGINE_URING && coru__engine_has_msg_ring();
    struct coru__engine *e = make();
    struct waker w = {.target = e, .own_engine = true, .delay_ms = 20, .wakes = 1};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, waker_main, &w), 0);
    wait_for_wake(e, &w, via_msg);
    pthread_join(t, NULL);
    if (via_msg) {
        cr_assert_eq(w.msg_sent, 1);
        cr_assert_eq(w.msg_failed, 0);
        cr_assert_eq(e->u.msg_recv, 1);
        cr_assert_eq(e->fd_wakes, 0);
    }
    coru__engine_destroy(e);
}

Test(engine, wake_from_engine_thread_ends_blocking_wait, .timeout = 20)
{
    on_both(engine_wake_body);
}

static void early_wake_body(int kind)
{
    struct coru__engine *e = make();

    /* Several wakes from a plain thread, all sent before the wait. */
    struct waker w = {.target = e, .wakes = 3};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, waker_main, &w), 0);
    pthread_join(t, NULL);
    cr_assert_eq(coru__engine_wait(e, -1), 0);
    /* They may merge; a poll afterwards must still work. */
    cr_assert_eq(coru__engine_wait(e, 0), 0);

    /* From an engine-owning thread. */
    struct waker w2 = {.target = e, .own_engine = true, .wakes = 1};
    cr_assert_eq(pthread_create(&t, NULL, waker_main, &w2), 0);
    pthread_join(t, NULL);
    uint64_t before = kind == CORU__ENGINE_URING ? e->u.msg_recv + e->fd_wakes : e->fd_wakes;
    cr_assert_eq(coru__engine_wait(e, -1), 0);
    uint64_t after = kind == CORU__ENGINE_URING ? e->u.msg_recv + e->fd_wakes : e->fd_wakes;
    cr_assert_gt(after, before);

    /* From the owner itself. */
    coru__engine_wake(e);
    cr_assert_eq(coru__engine_wait(e, -1), 0);
    coru__engine_destroy(e);
}

Test(engine, wakes_sent_before_the_wait_make_it_return_at_once, .timeout = 20)
{
    on_both(early_wake_body);
}

/* Two engine-owning threads take turns: each waits until it is its turn,
 * then hands the turn over and wakes the other. One lost wake leaves both
 * asleep for good, which the timeout reports. */
#define PING_PONG_ROUNDS 100000

struct pp {
    _Atomic(struct coru__engine *) eng[2];
    _Atomic int turn;
    long rounds[2];
    uint64_t msg_sent[2], msg_failed[2];
    pthread_barrier_t done;
};

struct pp_arg {
    struct pp *pp;
    int me;
};

static void *pp_side(void *arg)
{
    struct pp_arg *a = arg;
    struct pp *pp = a->pp;
    const int me = a->me, other = 1 - me;
    struct coru__engine *e = make();
    atomic_store_explicit(&pp->eng[me], e, memory_order_release); /* pairs with acquire below */
    struct coru__engine *peer;
    while (!(peer = atomic_load_explicit(&pp->eng[other], memory_order_acquire))) sched_yield();

    for (long i = 0; i < PING_PONG_ROUNDS; i++) {
        /* acquire: pairs with the release store of the turn by the peer. */
        while (atomic_load_explicit(&pp->turn, memory_order_acquire) != me)
            cr_assert_geq(coru__engine_wait(e, -1), 0);
        pp->rounds[me]++;
        atomic_store_explicit(&pp->turn, other, memory_order_release);
        coru__engine_wake(peer);
    }
    /* Every wake aimed at e has returned once both pass the barrier. The
     * peer's last message may still be on its way: destroy copes. */
    pthread_barrier_wait(&pp->done);
    if (e->head.kind == CORU__ENGINE_URING) {
        pp->msg_sent[me] = e->u.msg_sent;
        pp->msg_failed[me] = e->u.msg_failed;
    }
    coru__engine_destroy(e);
    return NULL;
}

static void ping_pong_body(int kind)
{
    static struct pp pp;
    memset(&pp, 0, sizeof pp);
    cr_assert_eq(pthread_barrier_init(&pp.done, NULL, 2), 0);
    struct pp_arg args[2] = {{&pp, 0}, {&pp, 1}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) cr_assert_eq(pthread_create(&t[i], NULL, pp_side, &args[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&pp.done);
    cr_assert_eq(pp.rounds[0], PING_PONG_ROUNDS);
    cr_assert_eq(pp.rounds[1], PING_PONG_ROUNDS);
    if (kind == CORU__ENGINE_URING && coru__engine_has_msg_ring()) {
        cr_assert_eq(pp.msg_sent[0], PING_PONG_ROUNDS);
        cr_assert_eq(pp.msg_sent[1], PING_PONG_ROUNDS);
        cr_log_info("io_uring ping-pong: MSG_RING fallbacks %llu + %llu",
                    (unsigned long long)pp.msg_failed[0], (unsigned long long)pp.msg_failed[1]);
    }
}

Test(engine, wakes_ping_ponged_100k_times_between_engines_lose_none, .timeout = 60)
{
    on_both(ping_pong_body);
}

/* ------------------------------------------------------------------------
 * Operations
 * ------------------------------------------------------------------------ */

struct count_op {
    struct coru__engine_op op;
    int calls;
    int last_res;
};

static void count_complete(struct coru__engine_op *op, int res)
{
    struct count_op *c = (struct count_op *)op;
    c->calls++;
    c->last_res = res;
}

static void op_body(int kind)
{
    struct coru__engine *e = make();
    struct count_op c = {.op.complete = count_complete};
    int fds[2] = {-1, -1};
    if (kind == CORU__ENGINE_URING) {
        struct io_uring_sqe *sqe = coru__uring_get_sqe(e);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data(sqe, &c.op);
    } else {
        cr_assert_eq(pipe(fds), 0);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c.op};
        cr_assert_eq(epoll_ctl(e->ep.epfd, EPOLL_CTL_ADD, fds[0], &ev), 0);
        cr_assert_eq(write(fds[1], "x", 1), 1);
    }
    int n;
    while ((n = coru__engine_wait(e, -1)) == 0) {
    }
    cr_assert_eq(n, 1);
    cr_assert_eq(c.calls, 1);
    if (kind == CORU__ENGINE_URING)
        cr_assert_eq(c.last_res, 0);
    else
        cr_assert_eq(c.last_res, EPOLLIN);
    if (fds[0] >= 0) {
        cr_assert_eq(epoll_ctl(e->ep.epfd, EPOLL_CTL_DEL, fds[0], NULL), 0);
        close(fds[0]);
        close(fds[1]);
    }
    coru__engine_destroy(e);
}

Test(engine, op_completion_calls_complete_from_wait, .timeout = 20)
{
    on_both(op_body);
}

/* More completions than the CQ holds (1024): the kernel parks the rest on
 * its overflow list, and one wait must still deliver all of them. */
Test(engine, overflowing_the_cq_loses_no_completion, .timeout = 20)
{
    if (coru__engine_select(CORU__ENGINE_URING) < 0) {
        NOTE_MISSING("io_uring unavailable here: skipped");
        return;
    }
    enum { N = 3000 };
    struct coru__engine *e = make();
    struct count_op c = {.op.complete = count_complete};
    for (int i = 0; i < N; i++) {
        struct io_uring_sqe *sqe = coru__uring_get_sqe(e);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data(sqe, &c.op);
    }
    cr_assert_eq(coru__engine_wait(e, 0), N);
    cr_assert_eq(c.calls, N);
    cr_assert_not(io_uring_cq_has_overflow(&e->u.ring));
    cr_assert_eq(coru__engine_wait(e, 0), 0);
    coru__engine_destroy(e);
}

/* ------------------------------------------------------------------------
 * Teardown
 * ------------------------------------------------------------------------ */

static void destroy_body(int kind)
{
    (void)kind;
    int fds0 = count_fds();
    for (int i = 0; i < 50; i++) {
        struct coru__engine *e = make();
        switch (i % 3) {
        case 0: /* never waited: the read is armed and in flight */
            break;
        case 1: /* waited once: re-armed and submitted */
            cr_assert_eq(coru__engine_wait(e, 0), 0);
            break;
        case 2: /* a wake pending on the eventfd, not yet reaped */
            coru__engine_fd_wake(e->wake_fd);
            break;
        }
        coru__engine_destroy(e);
    }
    cr_assert_eq(count_fds(), fds0);
}

Test(engine, destroy_with_an_armed_read_leaks_nothing, .timeout = 30)
{
    on_both(destroy_body);
}
