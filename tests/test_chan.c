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
#include "helpers.h"



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

/* Counts every value; and since channels are FIFO and a producer's sends
 * are in program order (whatever worker it runs or moves to), each
 * producer's values arrive in increasing order at every consumer. */
static _Atomic long order_bad;

static void *consumer(void *arg)
{
    struct mpmc *m = arg;
    long last[PRODUCERS], v, n = 0, s = 0;
    for (int i = 0; i < PRODUCERS; i++) last[i] = -1;
    int rc;
    while ((rc = coru_chan_recv(m->ch, &v)) == 0) {
        if (v <= last[v % PRODUCERS]) atomic_fetch_add(&order_bad, 1);
        last[v % PRODUCERS] = v;
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

/* Producers and consumers that contend for one channel gather on one
 * worker (chan.c, chan_lock: a coroutine that finds the lock held on
 * another worker moves there; coru_stats counts it in `moves`), and
 * moving does not reorder a coroutine's own sends (consumer checks). */
Test(chan, contending_coroutines_gather_on_one_worker_and_keep_their_order, .timeout = 300)
{
    for (int e = 0; e < 2; e++) {
        struct mpmc m = {0};
        m.seen = calloc(MPMC_N, 1);
        cr_assert_eq(coru_chan_create(&m.ch, sizeof(long), 1024), 0);
        cr_assert_eq(run_on(engines[e], 2, mpmc_main, &m), 0);
        cr_assert_eq(atomic_load(&m.count), MPMC_N);
        cr_assert_eq(atomic_load(&m.sum), (long)MPMC_N * (MPMC_N - 1) / 2);
        for (long v = 0; v < MPMC_N; v++) cr_assert_eq(m.seen[v], 1, "value %ld seen %d times", v, m.seen[v]);
        cr_assert_eq(atomic_load(&order_bad), 0, "a producer's values arrived out of order");
        struct coru_stats st;
        cr_assert_eq(coru_stats(&st), 0);
        cr_assert_gt(st.total.moves, 0, "nobody moved to the worker holding the channel");
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

/* ------------------------------------------------------------ deadlines */

#define MS (1000 * 1000LL)

static void *recv_dl_times_out(void *arg)
{
    for (size_t cap = 0; cap <= 4; cap += 4) {
        coru_chan *ch;
        cr_assert_eq(coru_chan_create(&ch, sizeof(int), cap), 0);
        int v = 7;
        int64_t dl = coru_now() + 20 * MS;
        cr_assert_eq(coru_chan_recv_dl(ch, &v, dl), -ETIMEDOUT);
        cr_assert_geq(coru_now(), dl, "returned before the deadline");
        cr_assert_eq(v, 7, "nothing was received into elem");
        /* the timed-out waiter left nothing behind: a later send does not
         * hand its value to it */
        if (cap) {
            cr_assert_eq(coru_chan_try_send(ch, &v), 0);
            cr_assert_eq(coru_chan_try_recv(ch, &v), 0);
        } else {
            cr_assert_eq(coru_chan_try_send(ch, &v), -EAGAIN);
        }
        coru_chan_destroy(ch);
    }
    return arg;
}

static void *thread_recv_dl(void *arg)
{
    return recv_dl_times_out(arg);
}

static void *recv_dl_main(void *arg)
{
    recv_dl_times_out(NULL);
    /* a plain thread inside a running runtime: blocks on its futex */
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, thread_recv_dl, NULL), 0);
    pthread_join(t, NULL);
    return arg;
}

Test(chan, recv_dl_on_an_empty_channel_times_out_after_the_deadline, .timeout = 60)
{
    for (int e = 0; e < 2; e++) cr_assert_eq(run_on(engines[e], 2, recv_dl_main, NULL), 0);
    recv_dl_times_out(NULL); /* the test thread, no runtime */
}

static void *send_dl_times_out(void *arg)
{
    /* buffered and full */
    coru_chan *ch;
    cr_assert_eq(coru_chan_create(&ch, sizeof(int), 2), 0);
    for (int i = 1; i <= 2; i++) cr_assert_eq(coru_chan_send(ch, &i), 0);
    int v = 3;
    int64_t dl = coru_now() + 20 * MS;
    cr_assert_eq(coru_chan_send_dl(ch, &v, dl), -ETIMEDOUT);
    cr_assert_geq(coru_now(), dl);
    for (int i = 1; i <= 2; i++) {
        cr_assert_eq(coru_chan_recv(ch, &v), 0);
        cr_assert_eq(v, i);
    }
    cr_assert_eq(coru_chan_try_recv(ch, &v), -EAGAIN, "the timed-out value was delivered");
    coru_chan_destroy(ch);

    /* unbuffered, nobody receiving */
    cr_assert_eq(coru_chan_create(&ch, sizeof(int), 0), 0);
    v = 3;
    dl = coru_now() + 20 * MS;
    cr_assert_eq(coru_chan_send_dl(ch, &v, dl), -ETIMEDOUT);
    cr_assert_geq(coru_now(), dl);
    cr_assert_eq(coru_chan_try_recv(ch, &v), -EAGAIN, "the timed-out value was delivered");
    coru_chan_destroy(ch);
    return arg;
}

Test(chan, send_dl_on_a_full_channel_times_out_and_delivers_nothing, .timeout = 60)
{
    for (int e = 0; e < 2; e++) cr_assert_eq(run_on(engines[e], 2, send_dl_times_out, NULL), 0);
    send_dl_times_out(NULL); /* plain thread */
}

static void *past_deadlines(void *arg)
{
    coru_chan *empty, *full, *rv;
    cr_assert_eq(coru_chan_create(&empty, sizeof(int), 1), 0);
    cr_assert_eq(coru_chan_create(&full, sizeof(int), 1), 0);
    cr_assert_eq(coru_chan_create(&rv, sizeof(int), 0), 0);
    int v = 5;
    cr_assert_eq(coru_chan_send(full, &v), 0);
    int64_t past[] = {0, 1, coru_now() - 1, coru_now() - 1000 * MS};
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < 100; k++) {
            cr_assert_eq(coru_chan_recv_dl(empty, &v, past[i]), -ETIMEDOUT);
            cr_assert_eq(coru_chan_send_dl(full, &v, past[i]), -ETIMEDOUT);
            cr_assert_eq(coru_chan_recv_dl(rv, &v, past[i]), -ETIMEDOUT);
            cr_assert_eq(coru_chan_send_dl(rv, &v, past[i]), -ETIMEDOUT);
        }
        /* a call that need not wait completes whatever its deadline */
        cr_assert_eq(coru_chan_send_dl(empty, &i, past[i]), 0);
        cr_assert_eq(coru_chan_recv_dl(empty, &v, past[i]), 0);
        cr_assert_eq(v, i);
    }
    cr_assert_eq(coru_chan_try_recv(full, &v), 0);
    cr_assert_eq(v, 5, "a timed-out send replaced the buffered value");
    coru_chan_destroy(empty);
    coru_chan_destroy(full);
    coru_chan_destroy(rv);
    return arg;
}

Test(chan, a_past_deadline_returns_etimedout_at_once_without_parking, .timeout = 30)
{
    for (int e = 0; e < 2; e++) {
        cr_assert_eq(run_on(engines[e], 1, past_deadlines, NULL), 0);
        struct coru_stats st;
        cr_assert_eq(coru_stats(&st), 0);
        cr_assert_eq(st.total.parks, 0);
    }
    past_deadlines(NULL); /* plain thread: would hang on its futex if it waited */
}

/* ------------------------------------------------------------ try forms */

static void try_ops_never_block(void)
{
    coru_chan *ch;
    int v = 1;
    cr_assert_eq(coru_chan_try_send(NULL, &v), -EINVAL);
    cr_assert_eq(coru_chan_try_recv(NULL, &v), -EINVAL);

    /* unbuffered, no partner waiting */
    cr_assert_eq(coru_chan_create(&ch, sizeof(int), 0), 0);
    cr_assert_eq(coru_chan_try_send(ch, NULL), -EINVAL);
    cr_assert_eq(coru_chan_try_recv(ch, NULL), -EINVAL);
    cr_assert_eq(coru_chan_try_send(ch, &v), -EAGAIN);
    cr_assert_eq(coru_chan_try_recv(ch, &v), -EAGAIN);
    cr_assert_eq(coru_chan_close(ch), 0);
    cr_assert_eq(coru_chan_try_send(ch, &v), -EPIPE);
    cr_assert_eq(coru_chan_try_recv(ch, &v), -EPIPE);
    coru_chan_destroy(ch);

    /* buffered: 0 while there is room or data, -EAGAIN otherwise */
    cr_assert_eq(coru_chan_create(&ch, sizeof(int), 3), 0);
    cr_assert_eq(coru_chan_try_recv(ch, &v), -EAGAIN);
    for (int i = 1; i <= 3; i++) cr_assert_eq(coru_chan_try_send(ch, &i), 0);
    cr_assert_eq(coru_chan_try_send(ch, &v), -EAGAIN);
    cr_assert_eq(coru_chan_try_recv(ch, &v), 0);
    cr_assert_eq(v, 1);
    v = 4;
    cr_assert_eq(coru_chan_try_send(ch, &v), 0);
    cr_assert_eq(coru_chan_close(ch), 0);
    cr_assert_eq(coru_chan_try_send(ch, &v), -EPIPE);
    for (int i = 2; i <= 4; i++) {
        cr_assert_eq(coru_chan_try_recv(ch, &v), 0, "closed channels drain first");
        cr_assert_eq(v, i);
    }
    cr_assert_eq(coru_chan_try_recv(ch, &v), -EPIPE);
    coru_chan_destroy(ch);
}

static void *try_ops_in_coroutine(void *arg)
{
    try_ops_never_block();
    return arg;
}

Test(chan, try_send_and_try_recv_return_eagain_instead_of_blocking, .timeout = 30)
{
    try_ops_never_block(); /* a plain thread, no runtime */
    cr_assert_eq(run_on(CORU_IO_AUTO, 1, try_ops_in_coroutine, NULL), 0);
    struct coru_stats st;
    cr_assert_eq(coru_stats(&st), 0);
    cr_assert_eq(st.total.parks, 0);
}

struct partner {
    coru_chan *ch;
    int got, rc;
};

static void *parked_receiver(void *arg)
{
    struct partner *p = arg;
    p->rc = coru_chan_recv(p->ch, &p->got);
    return NULL;
}

static void *parked_sender(void *arg)
{
    struct partner *p = arg;
    int v = 77;
    p->rc = coru_chan_send(p->ch, &v);
    return NULL;
}

static void *try_with_partners(void *arg)
{
    struct partner p = {.got = -1, .rc = 1};
    cr_assert_eq(coru_chan_create(&p.ch, sizeof(int), 0), 0);
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, parked_receiver, &p, NULL), 0);
    int v = 66, rc;
    /* -EAGAIN until the receiver is parked, then 0 */
    while ((rc = coru_chan_try_send(p.ch, &v)) == -EAGAIN) {
        cr_assert_eq(coru_sleep(1 * MS), 0);
    }
    cr_assert_eq(rc, 0);
    cr_assert_eq(coru_join(h, NULL), 0);
    cr_assert_eq(p.rc, 0);
    cr_assert_eq(p.got, 66);

    cr_assert_eq(coru_spawn(&h, parked_sender, &p, NULL), 0);
    v = -1;
    while ((rc = coru_chan_try_recv(p.ch, &v)) == -EAGAIN) cr_assert_eq(coru_sleep(1 * MS), 0);
    cr_assert_eq(rc, 0);
    cr_assert_eq(v, 77);
    cr_assert_eq(coru_join(h, NULL), 0);
    cr_assert_eq(p.rc, 0);
    coru_chan_destroy(p.ch);
    return arg;
}

Test(chan, try_ops_pair_with_a_parked_partner_on_an_unbuffered_channel, .timeout = 30)
{
    for (int e = 0; e < 2; e++) cr_assert_eq(run_on(engines[e], 2, try_with_partners, NULL), 0);
}

struct gen_chan {
    coru_chan *ch;
    int try_send, try_recv, try_full, got;
    int send, recv, send_dl, recv_dl;
};

static void *chan_gen_body(coru_gen *g, void *arg)
{
    /* No asserts in a generator body: record, assert outside. */
    struct gen_chan *r = arg;
    int v = 9;
    r->try_send = coru_chan_try_send(r->ch, &v);
    r->try_full = coru_chan_try_send(r->ch, &v); /* capacity 1 */
    r->try_recv = coru_chan_try_recv(r->ch, &r->got);
    /* the blocking forms refuse, even though these would not wait */
    r->send = coru_chan_send(r->ch, &v);
    r->send_dl = coru_chan_send_dl(r->ch, &v, 0);
    r->recv = coru_chan_recv(r->ch, &v);
    r->recv_dl = coru_chan_recv_dl(r->ch, &v, CORU_NEVER);
    return NULL;
}

static void run_chan_gen(struct gen_chan *r)
{
    *r = (struct gen_chan){.got = -1, .try_send = 1, .try_recv = 1, .try_full = 1,
                           .send = 1, .recv = 1, .send_dl = 1, .recv_dl = 1};
    cr_assert_eq(coru_chan_create(&r->ch, sizeof(int), 1), 0);
    coru_gen *g;
    cr_assert_eq(coru_gen_create(&g, chan_gen_body, r, 0), 0);
    cr_assert_eq(coru_gen_send(g, NULL, NULL), 0);
    coru_gen_destroy(g);
    coru_chan_destroy(r->ch);
    cr_assert_eq(r->try_send, 0);
    cr_assert_eq(r->try_full, -EAGAIN);
    cr_assert_eq(r->try_recv, 0);
    cr_assert_eq(r->got, 9);
    cr_assert_eq(r->send, -EPERM);
    cr_assert_eq(r->send_dl, -EPERM);
    cr_assert_eq(r->recv, -EPERM);
    cr_assert_eq(r->recv_dl, -EPERM);
}

static void *chan_gen_in_coroutine(void *arg)
{
    run_chan_gen(arg);
    return NULL;
}

Test(chan, try_ops_work_in_a_generator_body_where_blocking_ones_give_eperm, .timeout = 30)
{
    struct gen_chan r;
    run_chan_gen(&r); /* driven by a plain thread */
    cr_assert_eq(run_on(CORU_IO_AUTO, 2, chan_gen_in_coroutine, &r), 0);
}

/* ------------------------------------------------------------ cancellation */

struct cancel_rx {
    coru_chan *empty, *full;
    _Atomic int started;
    int rc, again, again_dl, try_rc, got;
};

static void *cancelled_receiver(void *arg)
{
    struct cancel_rx *c = arg;
    int v;
    atomic_store(&c->started, 1);
    c->rc = coru_chan_recv(c->empty, &v);
    /* sticky: a later call that would wait fails at once */
    c->again = coru_chan_recv(c->empty, &v);
    c->again_dl = coru_chan_recv_dl(c->empty, &v, coru_now() + 10000 * MS);
    /* while a try form still works */
    c->try_rc = coru_chan_try_recv(c->full, &c->got);
    return NULL;
}

static void *cancel_rx_main(void *arg)
{
    struct cancel_rx *c = arg;
    cr_assert_eq(coru_chan_create(&c->empty, sizeof(int), 0), 0);
    cr_assert_eq(coru_chan_create(&c->full, sizeof(int), 1), 0);
    int v = 31;
    cr_assert_eq(coru_chan_send(c->full, &v), 0);
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, cancelled_receiver, c, NULL), 0);
    while (!atomic_load(&c->started)) cr_assert_eq(coru_sleep(1 * MS), 0);
    cr_assert_eq(coru_sleep(20 * MS), 0); /* let it park */
    cr_assert_eq(coru_cancel(h), 0);
    cr_assert_eq(coru_join(h, NULL), 0);
    /* it left no node behind: a send finds no receiver */
    cr_assert_eq(coru_chan_try_send(c->empty, &v), -EAGAIN);
    coru_chan_destroy(c->empty);
    coru_chan_destroy(c->full);
    return NULL;
}

Test(chan, cancel_wakes_a_parked_receiver_and_later_receives_fail_too, .timeout = 30)
{
    for (int e = 0; e < 2; e++) {
        struct cancel_rx c = {.rc = 1, .again = 1, .again_dl = 1, .try_rc = 1, .got = -1};
        cr_assert_eq(run_on(engines[e], 2, cancel_rx_main, &c), 0);
        cr_assert_eq(c.rc, -ECANCELED);
        cr_assert_eq(c.again, -ECANCELED);
        cr_assert_eq(c.again_dl, -ECANCELED);
        cr_assert_eq(c.try_rc, 0);
        cr_assert_eq(c.got, 31);
    }
}

struct cancel_tx {
    coru_chan *rv, *full;
    _Atomic int started;
    int rc, again;
};

static void *cancelled_sender(void *arg)
{
    struct cancel_tx *c = arg;
    int v = 12;
    atomic_store(&c->started, 1);
    c->rc = coru_chan_send(c->rv, &v); /* unbuffered, nobody receives */
    v = 13;
    c->again = coru_chan_send(c->full, &v);
    return NULL;
}

static void *cancel_tx_main(void *arg)
{
    struct cancel_tx *c = arg;
    cr_assert_eq(coru_chan_create(&c->rv, sizeof(int), 0), 0);
    cr_assert_eq(coru_chan_create(&c->full, sizeof(int), 1), 0);
    int v = 11;
    cr_assert_eq(coru_chan_send(c->full, &v), 0);
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, cancelled_sender, c, NULL), 0);
    while (!atomic_load(&c->started)) cr_assert_eq(coru_sleep(1 * MS), 0);
    cr_assert_eq(coru_sleep(20 * MS), 0); /* let it park */
    cr_assert_eq(coru_cancel(h), 0);
    cr_assert_eq(coru_join(h, NULL), 0);
    /* neither value was delivered */
    cr_assert_eq(coru_chan_try_recv(c->rv, &v), -EAGAIN);
    cr_assert_eq(coru_chan_try_recv(c->full, &v), 0);
    cr_assert_eq(v, 11);
    cr_assert_eq(coru_chan_try_recv(c->full, &v), -EAGAIN);
    coru_chan_destroy(c->rv);
    coru_chan_destroy(c->full);
    return NULL;
}

Test(chan, cancel_wakes_a_parked_sender_and_delivers_nothing, .timeout = 30)
{
    for (int e = 0; e < 2; e++) {
        struct cancel_tx c = {.rc = 1, .again = 1};
        cr_assert_eq(run_on(engines[e], 2, cancel_tx_main, &c), 0);
        cr_assert_eq(c.rc, -ECANCELED);
        cr_assert_eq(c.again, -ECANCELED);
    }
}

/* ------------------------------------------------------------ lifetime */

/* skynet's pattern: a parent receives from its own unbuffered channel
 * and destroys it right after the last value, while the last senders
 * may still be waking up. A sender must not touch the channel once its
 * value was taken (ASan catches a use after free here). */
struct fan {
    coru_chan *ch;
    long v;
};

static void *fan_child(void *arg)
{
    struct fan *f = arg;
    cr_assert_eq(coru_chan_send(f->ch, &f->v), 0);
    return NULL;
}

static void *fan_parent(void *arg)
{
    coru_chan *ch;
    cr_assert_eq(coru_chan_create(&ch, sizeof(long), 0), 0);
    struct fan kids[10];
    for (long i = 0; i < 10; i++) {
        kids[i] = (struct fan){ch, i};
        cr_assert_eq(coru_go(fan_child, &kids[i], NULL), 0);
    }
    long sum = 0, v;
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(coru_chan_recv(ch, &v), 0);
        sum += v;
    }
    coru_chan_destroy(ch);
    /* kids[] lives on this stack: keep it until every child has returned
     * from its send (they only read it before the hand-off) */
    *(long *)arg = sum;
    return NULL;
}

static void *fan_main(void *arg)
{
    enum { PARENTS = 2000 };
    coru_t **hs = calloc(PARENTS, sizeof *hs);
    long *sums = calloc(PARENTS, sizeof *sums);
    for (int i = 0; i < PARENTS; i++) cr_assert_eq(coru_spawn(&hs[i], fan_parent, &sums[i], NULL), 0);
    for (int i = 0; i < PARENTS; i++) {
        cr_assert_eq(coru_join(hs[i], NULL), 0);
        cr_assert_eq(sums[i], 45);
    }
    free(hs);
    free(sums);
    return arg;
}

Test(chan, destroying_a_channel_right_after_the_last_receive_is_safe, .timeout = 120)
{
    for (int e = 0; e < 2; e++) cr_assert_eq(run_on(engines[e], 2, fan_main, NULL), 0);
}
