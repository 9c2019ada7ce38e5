/* test_chan: channels: rendezvous and buffered handoff, FIFO order, close
 * semantics, no message lost or duplicated under many producers and
 * consumers, and plain threads on either end. Runs on both engines. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "common.h"
#include "coru.h"

static const enum coru_io engines[] = {CORU_IO_URING, CORU_IO_EPOLL};

static int run_on(enum coru_io io, unsigned workers, coru_fn fn, void *arg)
{
    struct coru_opts o = {.workers = workers, .io = io};
    return coru_run(fn, arg, &o);
}

/* ------------------------------------------------------------ basics */

Test(chan, create_rejects_bad_arguments)
{
    coru_chan *ch;
    cr_assert_eq(coru_chan_create(NULL, 8, 0), -EINVAL);
    cr_assert_eq(coru_chan_create(&ch, 0, 0), -EINVAL);
    cr_assert_eq(coru_chan_create(&ch, 65537, 0), -EINVAL);
    cr_assert_eq(coru_chan_create(&ch, 8, ((size_t)1 << 31) + 1), -EINVAL);
    cr_assert_eq(coru_chan_send(NULL, &ch), -EINVAL);
    cr_assert_eq(coru_chan_recv(NULL, &ch), -EINVAL);
    cr_assert_eq(coru_chan_close(NULL), -EINVAL);
    coru_chan_destroy(NULL);
    cr_assert_eq(coru_chan_create(&ch, 8, 4), 0);
    cr_assert_eq(coru_chan_send(ch, NULL), -EINVAL);
    cr_assert_eq(coru_chan_recv(ch, NULL), -EINVAL);
    coru_chan_destroy(ch);
}

Test(chan, buffered_keeps_fifo_order_and_close_drains_then_epipe)
{
    /* Never blocks, so a plain thread can drive it without a runtime. */
    coru_chan *ch;
    cr_assert_eq(coru_chan_create(&ch, sizeof(int), 3), 0);
    for (int i = 1; i <= 3; i++) cr_assert_eq(coru_chan_send(ch, &i), 0);
    cr_assert_eq(coru_chan_close(ch), 0);
    cr_assert_eq(coru_chan_close(ch), -EPIPE);
    int v = 0;
    cr_assert_eq(coru_chan_send(ch, &v), -EPIPE);
    for (int i = 1; i <= 3; i++) {
        cr_assert_eq(coru_chan_recv(ch, &v), 0);
        cr_assert_eq(v, i);
    }
    cr_assert_eq(coru_chan_recv(ch, &v), -EPIPE);
    cr_assert_eq(coru_chan_recv(ch, &v), -EPIPE);
    coru_chan_destroy(ch);
}

/* ------------------------------------------------------------ rendezvous */

struct rv {
    coru_chan *ch;
    _Atomic int received; /* how many the receiver has taken so far */
    int order_ok;
};

static void *rv_sender(void *arg)
{
    struct rv *r = arg;
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(coru_chan_send(r->ch, &i), 0);
        /* unbuffered: the send completed, so the receiver has taken it */
        if (atomic_load(&r->received) < i) r->order_ok = 0;
    }
    return NULL;
}

static void *rv_main(void *arg)
{
    struct rv *r = arg;
    cr_assert_eq(coru_chan_create(&r->ch, sizeof(int), 0), 0);
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, rv_sender, r, NULL), 0);
    for (int i = 0; i < 1000; i++) {
        int v = -1;
        cr_assert_eq(coru_chan_recv(r->ch, &v), 0);
        cr_assert_eq(v, i);
        atomic_store(&r->received, i + 1);
    }
    cr_assert_eq(coru_join(h, NULL), 0);
    coru_chan_destroy(r->ch);
    return NULL;
}

Test(chan, unbuffered_send_completes_only_when_received, .timeout = 60)
{
    for (int e = 0; e < 2; e++)
        for (unsigned w = 1; w <= 2; w++) {
            struct rv r = {.order_ok = 1};
            cr_assert_eq(run_on(engines[e], w, rv_main, &r), 0);
            cr_assert(r.order_ok);
        }
}

/* ------------------------------------------------------------ close wakes */

struct cw {
    coru_chan *ch;
    _Atomic int epipe, parked;
};

static void *cw_recv(void *arg)
{
    struct cw *c = arg;
    int v;
    atomic_fetch_add(&c->parked, 1);
    if (coru_chan_recv(c->ch, &v) == -EPIPE) atomic_fetch_add(&c->epipe, 1);
    return NULL;
}

static void *cw_send(void *arg)
{
    struct cw *c = arg;
    int v = 1;
    atomic_fetch_add(&c->parked, 1);
    if (coru_chan_send(c->ch, &v) == -EPIPE) atomic_fetch_add(&c->epipe, 1);
    return NULL;
}

static void *cw_main(void *arg)
{
    struct cw *c = arg;
    coru_chan *rch, *sch;
    cr_assert_eq(coru_chan_create(&rch, sizeof(int), 0), 0);
    cr_assert_eq(coru_chan_create(&sch, sizeof(int), 2), 0);
    int v = 0;
    cr_assert_eq(coru_chan_send(sch, &v), 0);
    cr_assert_eq(coru_chan_send(sch, &v), 0); /* full: senders will park */
    coru_t *hs[20];
    c->ch = rch;
    for (int i = 0; i < 10; i++) cr_assert_eq(coru_spawn(&hs[i], cw_recv, c, NULL), 0);
    struct cw *c2 = c + 1;
    c2->ch = sch;
    for (int i = 10; i < 20; i++) cr_assert_eq(coru_spawn(&hs[i], cw_send, c2, NULL), 0);
    while (atomic_load(&c->parked) < 10 || atomic_load(&c2->parked) < 10) coru_yield();
    for (int i = 0; i < 50; i++) coru_yield(); /* let them reach the park */
    cr_assert_eq(coru_chan_close(rch), 0);
    cr_assert_eq(coru_chan_close(sch), 0);
    for (int i = 0; i < 20; i++) cr_assert_eq(coru_join(hs[i], NULL), 0);
    /* the buffered values are still there after close */
    cr_assert_eq(coru_chan_recv(sch, &v), 0);
    cr_assert_eq(coru_chan_recv(sch, &v), 0);
    cr_assert_eq(coru_chan_recv(sch, &v), -EPIPE);
    coru_chan_destroy(rch);
    coru_chan_destroy(sch);
    return NULL;
}

Test(chan, close_wakes_parked_senders_and_receivers_with_epipe, .timeout = 60)
{
    for (int e = 0; e < 2; e++) {
        struct cw c[2] = {0};
        cr_assert_eq(run_on(engines[e], 2, cw_main, c), 0);
        cr_assert_eq(atomic_load(&c[0].epipe), 10);
        cr_assert_eq(atomic_load(&c[1].epipe), 10);
    }
}

/* ------------------------------------------------------------ MPMC */

#ifdef CORU_TSAN
#define MPMC_N 200000 /* TSan is ~20x slower; the interleavings are the same */
#else
#define MPMC_N 2000000
#endif
enum { PRODUCERS = 8, CONSUMERS = 8 };

struct mpmc {
    coru_chan *ch;
    _Atomic(uint8_t) *seen; /* per value: times received */
    _Atomic long count, sum;
    int id;
};

struct mp_arg {
    struct mpmc *m;
    long id;
};

static void *producer(void *arg)
{
    struct mp_arg *a = arg;
    for (long v = a->id; v < MPMC_N; v += PRODUCERS) cr_assert_eq(coru_chan_send(a->m->ch, &v), 0);
    return NULL;
}

static void *consumer(void *arg)
{
    struct mpmc *m = arg;
    long v, n = 0, s = 0;
    int rc;
    while ((rc = coru_chan_recv(m->ch, &v)) == 0) {
        atomic_fetch_add(&m->seen[v], 1);
        n++;
        s += v;
    }
    cr_assert_eq(rc, -EPIPE);
    atomic_fetch_add(&m->count, n);
    atomic_fetch_add(&m->sum, s);
    return NULL;
}

static void *mpmc_main(void *arg)
{
    struct mpmc *m = arg;
    coru_t *ps[PRODUCERS], *cs[CONSUMERS];
    struct mp_arg pa[PRODUCERS];
    for (int i = 0; i < CONSUMERS; i++) cr_assert_eq(coru_spawn(&cs[i], consumer, m, NULL), 0);
    for (int i = 0; i < PRODUCERS; i++) {
        pa[i] = (struct mp_arg){m, i};
        cr_assert_eq(coru_spawn(&ps[i], producer, &pa[i], NULL), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) cr_assert_eq(coru_join(ps[i], NULL), 0);
    cr_assert_eq(coru_chan_close(m->ch), 0);
    for (int i = 0; i < CONSUMERS; i++) cr_assert_eq(coru_join(cs[i], NULL), 0);
    return NULL;
}

static void mpmc_check(size_t cap)
{
    for (int e = 0; e < 2; e++) {
        struct mpmc m = {0};
        m.seen = calloc(MPMC_N, 1);
        cr_assert_eq(coru_chan_create(&m.ch, sizeof(long), cap), 0);
        cr_assert_eq(run_on(engines[e], 2, mpmc_main, &m), 0);
        cr_assert_eq(atomic_load(&m.count), MPMC_N);
        cr_assert_eq(atomic_load(&m.sum), (long)MPMC_N * (MPMC_N - 1) / 2);
        for (long v = 0; v < MPMC_N; v++) cr_assert_eq(m.seen[v], 1, "value %ld seen %d times", v, m.seen[v]);
        coru_chan_destroy(m.ch);
        free(m.seen);
    }
}

Test(chan, eight_producers_eight_consumers_buffered_lose_nothing, .timeout = 300)
{
    mpmc_check(64);
}

Test(chan, eight_producers_eight_consumers_unbuffered_lose_nothing, .timeout = 300)
{
    mpmc_check(0);
}

/* ------------------------------------------------------------ plain threads */

struct th {
    coru_chan *in, *out;
};

static void *thread_feeder(void *arg)
{
    struct th *t = arg;
    long sum = 0;
    for (long i = 1; i <= 10000; i++) {
        if (coru_chan_send(t->in, &i)) return (void *)-1;
        long back;
        if (coru_chan_recv(t->out, &back)) return (void *)-1;
        sum += back;
    }
    coru_chan_close(t->in);
    return (void *)sum;
}

static void *doubler(void *arg)
{
    struct th *t = arg;
    long v;
    while (coru_chan_recv(t->in, &v) == 0) {
        v *= 2;
        cr_assert_eq(coru_chan_send(t->out, &v), 0);
    }
    return NULL;
}

static void *thread_main(void *arg)
{
    struct th *t = arg;
    pthread_t th;
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, doubler, t, NULL), 0);
    pthread_create(&th, NULL, thread_feeder, t);
    cr_assert_eq(coru_join(h, NULL), 0); /* returns when the thread closed `in` */
    void *sum;
    pthread_join(th, &sum);
    cr_assert_eq((long)sum, 10000L * 10001);
    return NULL;
}

Test(chan, plain_thread_talks_to_coroutines_through_unbuffered_channels, .timeout = 60)
{
    for (int e = 0; e < 2; e++) {
        struct th t;
        cr_assert_eq(coru_chan_create(&t.in, sizeof(long), 0), 0);
        cr_assert_eq(coru_chan_create(&t.out, sizeof(long), 0), 0);
        cr_assert_eq(run_on(engines[e], 2, thread_main, &t), 0);
        coru_chan_destroy(t.in);
        coru_chan_destroy(t.out);
    }
}
