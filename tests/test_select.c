/* test_select: coru_select: uniform choice among ready cases, the default
 * flag, deadlines, send and receive cases completed by partners, closed
 * channels, NULL channels, a channel on both sides of one select, many
 * selects matching each other without loss or deadlock, plain threads,
 * generator bodies, cancellation and argument errors. Parking behaviours
 * run on both engines. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "common.h"
#include "coru.h"
#include "helpers.h"

#define MS (1000 * 1000LL)



static coru_chan *mkchan(size_t cap)
{
    coru_chan *ch;
    cr_assert_eq(coru_chan_create(&ch, sizeof(int), cap), 0);
    return ch;
}

/* ------------------------------------------------------------ fairness */

enum { FAIR_N = 100000 };

static void *fair_two(void *arg)
{
    long *count = arg;
    coru_chan *a = mkchan(1), *b = mkchan(1);
    int one = 1, two = 2, va, vb;
    cr_assert_eq(coru_chan_send(a, &one), 0);
    cr_assert_eq(coru_chan_send(b, &two), 0);
    struct coru_sel c[2] = {{a, CORU_SEL_RECV, &va, 9}, {b, CORU_SEL_RECV, &vb, 9}};
    for (int i = 0; i < FAIR_N; i++) {
        int k = coru_select(c, 2, CORU_NEVER, 0);
        cr_assert(k == 0 || k == 1, "select returned %d", k);
        cr_assert_eq(c[k].rc, 0);
        cr_assert_eq(k ? vb : va, k ? 2 : 1);
        count[k]++;
        /* refill: both stay ready */
        cr_assert_eq(coru_chan_try_send(k ? b : a, k ? &two : &one), 0);
    }
    coru_chan_destroy(a);
    coru_chan_destroy(b);
    return NULL;
}

Test(select, two_ready_cases_are_chosen_about_equally_often, .timeout = 60)
{
    long count[2] = {0};
    cr_assert_eq(run_on(CORU_IO_AUTO, 2, fair_two, count), 0);
    cr_assert_eq(count[0] + count[1], FAIR_N);
    for (int k = 0; k < 2; k++)
        cr_assert(count[k] >= FAIR_N * 45 / 100 && count[k] <= FAIR_N * 55 / 100,
                  "case %d chosen %ld times of %d", k, count[k], FAIR_N);
}

static void *fair_three(void *arg)
{
    long *count = arg;
    /* two receives that stay ready and a send with room */
    coru_chan *a = mkchan(1), *b = mkchan(1), *s = mkchan(1);
    int one = 1, two = 2, three = 3, va, vb, vs;
    cr_assert_eq(coru_chan_send(a, &one), 0);
    cr_assert_eq(coru_chan_send(b, &two), 0);
    struct coru_sel c[3] = {
        {a, CORU_SEL_RECV, &va, 9}, {b, CORU_SEL_RECV, &vb, 9}, {s, CORU_SEL_SEND, &three, 9}};
    for (int i = 0; i < FAIR_N; i++) {
        int k = coru_select(c, 3, CORU_NEVER, 0);
        cr_assert(k >= 0 && k < 3, "select returned %d", k);
        cr_assert_eq(c[k].rc, 0);
        count[k]++;
        if (k == 0) cr_assert_eq(coru_chan_try_send(a, &one), 0);
        if (k == 1) cr_assert_eq(coru_chan_try_send(b, &two), 0);
        if (k == 2) {
            cr_assert_eq(coru_chan_try_recv(s, &vs), 0);
            cr_assert_eq(vs, 3);
        }
    }
    coru_chan_destroy(a);
    coru_chan_destroy(b);
    coru_chan_destroy(s);
    return NULL;
}

Test(select, three_ready_cases_are_chosen_about_a_third_each, .timeout = 60)
{
    long count[3] = {0};
    cr_assert_eq(run_on(CORU_IO_AUTO, 2, fair_three, count), 0);
    cr_assert_eq(count[0] + count[1] + count[2], FAIR_N);
    for (int k = 0; k < 3; k++)
        cr_assert(count[k] >= FAIR_N * 300 / 1000 && count[k] <= FAIR_N * 367 / 1000,
                  "case %d chosen %ld times of %d", k, count[k], FAIR_N);
}

/* ------------------------------------------------------------ default flag */

static void *default_flag(void *arg)
{
    coru_chan *rv = mkchan(0), *full = mkchan(1), *empty = mkchan(1);
    int v = 4, w = -1;
    cr_assert_eq(coru_chan_send(full, &v), 0);
    struct coru_sel c[3] = {
        {rv, CORU_SEL_RECV, &w, 9}, {rv, CORU_SEL_SEND, &v, 9}, {full, CORU_SEL_SEND, &v, 9}};
    for (int i = 0; i < 100; i++) cr_assert_eq(coru_select(c, 3, CORU_NEVER, CORU_SEL_DEFAULT), -EAGAIN);
    /* the deadline does not matter with the flag */
    cr_assert_eq(coru_select(c, 3, coru_now() + 10000 * MS, CORU_SEL_DEFAULT), -EAGAIN);
    cr_assert_eq(coru_select(c, 3, 0, CORU_SEL_DEFAULT), -EAGAIN);
    cr_assert_eq(coru_select(NULL, 0, CORU_NEVER, CORU_SEL_DEFAULT), -EAGAIN);
    cr_assert_eq(w, -1, "nothing was received");
    /* a ready case is still completed */
    c[1] = (struct coru_sel){empty, CORU_SEL_SEND, &v, 9};
    cr_assert_eq(coru_select(c, 3, CORU_NEVER, CORU_SEL_DEFAULT), 1);
    cr_assert_eq(c[1].rc, 0);
    cr_assert_eq(coru_chan_try_recv(empty, &w), 0);
    cr_assert_eq(w, 4);
    coru_chan_destroy(rv);
    coru_chan_destroy(full);
    coru_chan_destroy(empty);
    return arg;
}

Test(select, default_flag_returns_eagain_when_nothing_is_ready, .timeout = 30)
{
    default_flag(NULL); /* plain thread, no runtime */
    cr_assert_eq(run_on(CORU_IO_AUTO, 1, default_flag, NULL), 0);
    struct coru_stats st;
    cr_assert_eq(coru_stats(&st), 0);
    cr_assert_eq(st.total.parks, 0);
}

/* ------------------------------------------------------------ deadlines */

static void *deadline_main(void *arg)
{
    coru_chan *a = mkchan(0), *b = mkchan(1);
    int va = -1, vb = -1;
    struct coru_sel c[2] = {{a, CORU_SEL_RECV, &va, 9}, {b, CORU_SEL_RECV, &vb, 9}};
    int64_t dl = coru_now() + 20 * MS;
    cr_assert_eq(coru_select(c, 2, dl, 0), -ETIMEDOUT);
    cr_assert_geq(coru_now(), dl);
    cr_assert_eq(va, -1);
    cr_assert_eq(vb, -1);
    /* n == 0 with a deadline just waits for it */
    dl = coru_now() + 10 * MS;
    cr_assert_eq(coru_select(NULL, 0, dl, 0), -ETIMEDOUT);
    cr_assert_geq(coru_now(), dl);
    /* the timed-out select left nothing behind */
    int v = 1;
    cr_assert_eq(coru_chan_try_send(a, &v), -EAGAIN);
    coru_chan_destroy(a);
    coru_chan_destroy(b);
    return arg;
}

Test(select, a_deadline_ends_the_wait_with_etimedout, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        cr_assert_eq(run_on(io, 2, deadline_main, NULL), 0);
    }
}

static void *past_deadline(void *arg)
{
    coru_chan *a = mkchan(0), *b = mkchan(1);
    int va, vb = 3;
    struct coru_sel c[2] = {{a, CORU_SEL_SEND, &va, 9}, {b, CORU_SEL_RECV, &vb, 9}};
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(coru_select(c, 2, 0, 0), -ETIMEDOUT);
        cr_assert_eq(coru_select(c, 2, coru_now() - 1, 0), -ETIMEDOUT);
        cr_assert_eq(coru_select(NULL, 0, 0, 0), -ETIMEDOUT);
    }
    /* a ready case completes whatever the deadline */
    cr_assert_eq(coru_chan_send(b, &vb), 0);
    vb = -1;
    cr_assert_eq(coru_select(c, 2, 0, 0), 1);
    cr_assert_eq(c[1].rc, 0);
    cr_assert_eq(vb, 3);
    coru_chan_destroy(a);
    coru_chan_destroy(b);
    return arg;
}

Test(select, a_past_deadline_returns_etimedout_without_parking, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        cr_assert_eq(run_on(io, 1, past_deadline, NULL), 0);
        struct coru_stats st;
        cr_assert_eq(coru_stats(&st), 0);
        cr_assert_eq(st.total.parks, 0);
    }
    past_deadline(NULL); /* plain thread */
}

/* ------------------------------------------------------------ partners */

struct partner {
    coru_chan *ch;
    int v, rc;
};

static void *late_sender(void *arg)
{
    struct partner *p = arg;
    coru_sleep(10 * MS);
    p->rc = coru_chan_send(p->ch, &p->v);
    return NULL;
}

static void *late_receiver(void *arg)
{
    struct partner *p = arg;
    coru_sleep(10 * MS);
    p->rc = coru_chan_recv(p->ch, &p->v);
    return NULL;
}

static void *late_closer(void *arg)
{
    struct partner *p = arg;
    coru_sleep(10 * MS);
    p->rc = coru_chan_close(p->ch);
    return NULL;
}

static void *recv_case_main(void *arg)
{
    for (size_t cap = 0; cap <= 2; cap += 2) {
        coru_chan *a = mkchan(cap), *b = mkchan(cap);
        int va = -1, vb = -1;
        struct partner p = {b, 42, 1};
        coru_t *h;
        cr_assert_eq(coru_spawn(&h, late_sender, &p, NULL), 0);
        struct coru_sel c[2] = {{a, CORU_SEL_RECV, &va, 9}, {b, CORU_SEL_RECV, &vb, 9}};
        cr_assert_eq(coru_select(c, 2, CORU_NEVER, 0), 1);
        cr_assert_eq(c[1].rc, 0);
        cr_assert_eq(vb, 42);
        cr_assert_eq(va, -1);
        cr_assert_eq(coru_join(h, NULL), 0);
        cr_assert_eq(p.rc, 0);
        cr_assert_eq(coru_chan_try_recv(b, &vb), -EAGAIN, "the value arrived twice");
        coru_chan_destroy(a);
        coru_chan_destroy(b);
    }
    return arg;
}

Test(select, a_receive_case_completes_when_another_coroutine_sends, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        cr_assert_eq(run_on(io, 2, recv_case_main, NULL), 0);
    }
}

static void *send_case_main(void *arg)
{
    coru_chan *a = mkchan(0), *b = mkchan(0);
    int va = 7, vb = -1;
    struct partner p = {a, -1, 1};
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, late_receiver, &p, NULL), 0);
    struct coru_sel c[2] = {{b, CORU_SEL_RECV, &vb, 9}, {a, CORU_SEL_SEND, &va, 9}};
    cr_assert_eq(coru_select(c, 2, CORU_NEVER, 0), 1);
    cr_assert_eq(c[1].rc, 0);
    cr_assert_eq(vb, -1);
    cr_assert_eq(coru_join(h, NULL), 0);
    cr_assert_eq(p.rc, 0);
    cr_assert_eq(p.v, 7);
    coru_chan_destroy(a);
    coru_chan_destroy(b);
    return arg;
}

Test(select, a_send_case_completes_when_another_coroutine_receives, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        cr_assert_eq(run_on(io, 2, send_case_main, NULL), 0);
    }
}

/* ------------------------------------------------------------ closed channels */

static void *closed_main(void *arg)
{
    int v = 5, w = -1;
    /* already closed: ready at once */
    coru_chan *open = mkchan(0), *closed = mkchan(1);
    cr_assert_eq(coru_chan_send(closed, &v), 0);
    cr_assert_eq(coru_chan_close(closed), 0);
    struct coru_sel c[2] = {{open, CORU_SEL_RECV, &w, 9}, {closed, CORU_SEL_RECV, &w, 9}};
    cr_assert_eq(coru_select(c, 2, CORU_NEVER, 0), 1);
    cr_assert_eq(c[1].rc, 0, "buffered values drain first");
    cr_assert_eq(w, 5);
    cr_assert_eq(coru_select(c, 2, CORU_NEVER, 0), 1);
    cr_assert_eq(c[1].rc, -EPIPE);
    c[1].op = CORU_SEL_SEND;
    c[1].rc = 9;
    cr_assert_eq(coru_select(c, 2, CORU_NEVER, 0), 1);
    cr_assert_eq(c[1].rc, -EPIPE);
    /* with the default flag too */
    c[1].rc = 9;
    cr_assert_eq(coru_select(c, 2, CORU_NEVER, CORU_SEL_DEFAULT), 1);
    cr_assert_eq(c[1].rc, -EPIPE);
    coru_chan_destroy(closed);

    /* closed while the select waits: a receive case, then a send case */
    for (int op = CORU_SEL_SEND; op <= CORU_SEL_RECV; op++) {
        coru_chan *ch = mkchan(0);
        struct partner p = {ch, 0, 1};
        coru_t *h;
        cr_assert_eq(coru_spawn(&h, late_closer, &p, NULL), 0);
        struct coru_sel d[2] = {{open, CORU_SEL_RECV, &w, 9}, {ch, op, &v, 9}};
        cr_assert_eq(coru_select(d, 2, CORU_NEVER, 0), 1);
        cr_assert_eq(d[1].rc, -EPIPE);
        cr_assert_eq(coru_join(h, NULL), 0);
        cr_assert_eq(p.rc, 0);
        coru_chan_destroy(ch);
    }
    coru_chan_destroy(open);
    return arg;
}

Test(select, closed_channel_cases_complete_with_epipe, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        cr_assert_eq(run_on(io, 2, closed_main, NULL), 0);
    }
}

/* ------------------------------------------------------------ one channel, both sides */

static void *self_match_main(void *arg)
{
    coru_chan *ch = mkchan(0);
    int out = 8, in = -1;
    struct coru_sel c[2] = {{ch, CORU_SEL_SEND, &out, 9}, {ch, CORU_SEL_RECV, &in, 9}};
    cr_assert_eq(coru_select(c, 2, CORU_NEVER, CORU_SEL_DEFAULT), -EAGAIN);
    int64_t dl = coru_now() + 20 * MS;
    cr_assert_eq(coru_select(c, 2, dl, 0), -ETIMEDOUT, "the select matched itself");
    cr_assert_eq(in, -1);
    /* an outside partner matches one side */
    struct partner p = {ch, -1, 1};
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, late_receiver, &p, NULL), 0);
    cr_assert_eq(coru_select(c, 2, CORU_NEVER, 0), 0);
    cr_assert_eq(c[0].rc, 0);
    cr_assert_eq(coru_join(h, NULL), 0);
    cr_assert_eq(p.rc, 0);
    cr_assert_eq(p.v, 8);
    cr_assert_eq(in, -1);
    p = (struct partner){ch, 21, 1};
    cr_assert_eq(coru_spawn(&h, late_sender, &p, NULL), 0);
    cr_assert_eq(coru_select(c, 2, CORU_NEVER, 0), 1);
    cr_assert_eq(c[1].rc, 0);
    cr_assert_eq(in, 21);
    cr_assert_eq(coru_join(h, NULL), 0);
    cr_assert_eq(p.rc, 0);
    coru_chan_destroy(ch);
    return arg;
}

Test(select, send_and_receive_on_one_channel_do_not_match_each_other, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        cr_assert_eq(run_on(io, 2, self_match_main, NULL), 0);
    }
}

/* ------------------------------------------------------------ many selects */

#ifdef CORU_TSAN
#define MANY_K 5000 /* TSan is ~20x slower; the interleavings are the same */
#else
#define MANY_K 25000 /* selects per coroutine: 4 * 25000 = 100k transfers */
#endif
enum { SIDE = 4 };

struct many {
    coru_chan *a, *b;
    _Atomic(uint8_t) *seen_a, *seen_b; /* per value: times received */
    _Atomic long sent_a, sent_b, got_a, got_b;
};

struct side {
    struct many *m;
    int id, x; /* x: sends on a and receives on b; else the mirror */
};

static void *many_selector(void *arg)
{
    struct side *s = arg;
    struct many *m = s->m;
    int nsent = 0, nrecv = 0;
    int out, in;
    coru_chan *to = s->x ? m->a : m->b, *from = s->x ? m->b : m->a;
    for (int i = 0; i < MANY_K; i++) {
        out = s->id * MANY_K + nsent;
        struct coru_sel c[2] = {{to, CORU_SEL_SEND, &out, 9}, {from, CORU_SEL_RECV, &in, 9}};
        int k = coru_select(c, 2, CORU_NEVER, 0);
        cr_assert(k == 0 || k == 1, "select returned %d", k);
        cr_assert_eq(c[k].rc, 0);
        if (k == 0) {
            nsent++;
        } else {
            cr_assert(in >= 0 && in < SIDE * MANY_K, "received %d", in);
            atomic_fetch_add(s->x ? &m->seen_b[in] : &m->seen_a[in], 1);
            nrecv++;
        }
    }
    atomic_fetch_add(s->x ? &m->sent_a : &m->sent_b, nsent);
    atomic_fetch_add(s->x ? &m->got_b : &m->got_a, nrecv);
    return NULL;
}

static void *many_main(void *arg)
{
    struct many *m = arg;
    struct side sides[2 * SIDE];
    coru_t *hs[2 * SIDE];
    for (int i = 0; i < 2 * SIDE; i++) {
        sides[i] = (struct side){m, i % SIDE, i < SIDE};
        cr_assert_eq(coru_spawn(&hs[i], many_selector, &sides[i], NULL), 0);
    }
    for (int i = 0; i < 2 * SIDE; i++) cr_assert_eq(coru_join(hs[i], NULL), 0);
    return NULL;
}

Test(select, many_selects_match_each_other_without_loss_or_deadlock, .timeout = 300)
{
    FOR_EACH_ENGINE(io) {
        struct many m = {0};
        m.a = mkchan(0);
        m.b = mkchan(0);
        m.seen_a = calloc(SIDE * MANY_K, 1);
        m.seen_b = calloc(SIDE * MANY_K, 1);
        cr_assert_eq(run_on(io, 2, many_main, &m), 0);
        /* every transfer is one select of each side */
        cr_assert_eq(m.sent_a + m.sent_b, SIDE * MANY_K);
        cr_assert_eq(m.got_a + m.got_b, SIDE * MANY_K);
        cr_assert_eq(m.sent_a, m.got_a);
        cr_assert_eq(m.sent_b, m.got_b);
        long ones_a = 0, ones_b = 0;
        for (long v = 0; v < SIDE * MANY_K; v++) {
            cr_assert_leq(m.seen_a[v], 1, "value %ld received %d times on a", v, m.seen_a[v]);
            cr_assert_leq(m.seen_b[v], 1, "value %ld received %d times on b", v, m.seen_b[v]);
            ones_a += m.seen_a[v];
            ones_b += m.seen_b[v];
        }
        cr_assert_eq(ones_a, m.sent_a);
        cr_assert_eq(ones_b, m.sent_b);
        /* the values each sender sent are exactly 0..nsent-1 of its range */
        for (int id = 0; id < SIDE; id++)
            for (int j = 1; j < MANY_K; j++) {
                long v = (long)id * MANY_K + j;
                cr_assert(m.seen_a[v] <= m.seen_a[v - 1] && m.seen_b[v] <= m.seen_b[v - 1],
                          "value %ld received but an earlier one of its sender was not", v);
            }
        coru_chan_destroy(m.a);
        coru_chan_destroy(m.b);
        free(m.seen_a);
        free(m.seen_b);
    }
}

/* ------------------------------------------------------------ plain threads */

struct thread_sel {
    coru_chan *a, *b;
    int r_idx, r_rc, r_val; /* select 1: receives 33 on b */
    int s_idx, s_rc;        /* select 2: sends 44 on a */
    int t_rc, d_rc;         /* timeout, default */
};

static void *thread_selector(void *arg)
{
    struct thread_sel *t = arg;
    int va = -1, vb = -1, out = 44;
    struct coru_sel c[2] = {{t->a, CORU_SEL_RECV, &va, 9}, {t->b, CORU_SEL_RECV, &vb, 9}};
    t->r_idx = coru_select(c, 2, CORU_NEVER, 0); /* blocks on the futex */
    t->r_rc = c[1].rc;
    t->r_val = vb;
    struct coru_sel d[2] = {{t->b, CORU_SEL_RECV, &vb, 9}, {t->a, CORU_SEL_SEND, &out, 9}};
    t->s_idx = coru_select(d, 2, CORU_NEVER, 0);
    t->s_rc = d[1].rc;
    int64_t dl = coru_now() + 20 * MS;
    t->t_rc = coru_select(c, 2, dl, 0);
    if (t->t_rc == -ETIMEDOUT && coru_now() < dl) t->t_rc = 1; /* woke early */
    t->d_rc = coru_select(c, 2, CORU_NEVER, CORU_SEL_DEFAULT);
    return NULL;
}

static void *thread_sel_main(void *arg)
{
    struct thread_sel *t = arg;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, thread_selector, t), 0);
    cr_assert_eq(coru_sleep(10 * MS), 0);
    int v = 33;
    cr_assert_eq(coru_chan_send(t->b, &v), 0);
    cr_assert_eq(coru_chan_recv(t->a, &v), 0);
    cr_assert_eq(v, 44);
    pthread_join(th, NULL);
    return arg;
}

Test(select, a_plain_thread_can_select, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        struct thread_sel t = {.r_idx = 9, .s_idx = 9, .t_rc = 9, .d_rc = 9, .r_rc = 9, .s_rc = 9};
        t.a = mkchan(0);
        t.b = mkchan(0);
        cr_assert_eq(run_on(io, 2, thread_sel_main, &t), 0);
        cr_assert_eq(t.r_idx, 1);
        cr_assert_eq(t.r_rc, 0);
        cr_assert_eq(t.r_val, 33);
        cr_assert_eq(t.s_idx, 1);
        cr_assert_eq(t.s_rc, 0);
        cr_assert_eq(t.t_rc, -ETIMEDOUT);
        cr_assert_eq(t.d_rc, -EAGAIN);
        coru_chan_destroy(t.a);
        coru_chan_destroy(t.b);
    }
}

/* ------------------------------------------------------------ NULL channels */

static void *null_cases(void *arg)
{
    coru_chan *a = mkchan(1);
    int v = 1, w;
    struct coru_sel nulls[2] = {{NULL, CORU_SEL_RECV, NULL, 9}, {NULL, CORU_SEL_SEND, NULL, 9}};
    cr_assert_eq(coru_select(nulls, 2, CORU_NEVER, CORU_SEL_DEFAULT), -EAGAIN);
    int64_t dl = coru_now() + 10 * MS;
    cr_assert_eq(coru_select(nulls, 2, dl, 0), -ETIMEDOUT);
    cr_assert_geq(coru_now(), dl);
    cr_assert_eq(nulls[0].rc, 9);
    cr_assert_eq(nulls[1].rc, 9);
    struct coru_sel c[3] = {{NULL, CORU_SEL_RECV, &w, 9}, {a, CORU_SEL_RECV, &w, 9}, {NULL, CORU_SEL_SEND, &v, 9}};
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(coru_chan_try_send(a, &i), 0);
        cr_assert_eq(coru_select(c, 3, CORU_NEVER, 0), 1);
        cr_assert_eq(w, i);
    }
    coru_chan_destroy(a);
    return arg;
}

Test(select, a_null_channel_case_never_fires, .timeout = 30)
{
    null_cases(NULL); /* plain thread */
    FOR_EACH_ENGINE(io) {
        cr_assert_eq(run_on(io, 2, null_cases, NULL), 0);
    }
}

/* ------------------------------------------------------------ many cases */

enum { MAXCASES = 1024 };

static void *big_main(void *arg)
{
    coru_chan **chs = malloc(MAXCASES * sizeof *chs);
    struct coru_sel *c = malloc(MAXCASES * sizeof *c);
    int *vals = malloc(MAXCASES * sizeof *vals);
    for (int i = 0; i < MAXCASES; i++) {
        chs[i] = mkchan(1);
        vals[i] = -1;
        c[i] = (struct coru_sel){chs[i], CORU_SEL_RECV, &vals[i], 9};
    }
    /* one ready case among 1024 */
    int v = 55;
    cr_assert_eq(coru_chan_send(chs[777], &v), 0);
    cr_assert_eq(coru_select(c, MAXCASES, CORU_NEVER, 0), 777);
    cr_assert_eq(vals[777], 55);
    /* parked on 1024 channels, woken through one of them */
    struct partner p = {chs[1000], 66, 1};
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, late_sender, &p, NULL), 0);
    cr_assert_eq(coru_select(c, MAXCASES, CORU_NEVER, 0), 1000);
    cr_assert_eq(c[1000].rc, 0);
    cr_assert_eq(vals[1000], 66);
    cr_assert_eq(coru_join(h, NULL), 0);
    for (int i = 0; i < MAXCASES; i++) {
        if (i != 777 && i != 1000) cr_assert_eq(vals[i], -1);
        cr_assert_eq(coru_chan_try_recv(chs[i], &v), -EAGAIN);
        coru_chan_destroy(chs[i]);
    }
    free(chs);
    free(c);
    free(vals);
    return arg;
}

Test(select, a_select_of_1024_cases_works, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        cr_assert_eq(run_on(io, 2, big_main, NULL), 0);
    }
}

/* ------------------------------------------------------------ errors */

Test(select, invalid_arguments_return_einval_and_complete_nothing)
{
    coru_chan *a = mkchan(1);
    int v = 3, w = -1;
    cr_assert_eq(coru_chan_send(a, &v), 0);
    struct coru_sel c[2] = {{a, CORU_SEL_RECV, &w, 9}, {a, CORU_SEL_RECV, &w, 9}};
    c[1].op = 0;
    cr_assert_eq(coru_select(c, 2, CORU_NEVER, 0), -EINVAL);
    c[1].op = 3;
    cr_assert_eq(coru_select(c, 2, CORU_NEVER, CORU_SEL_DEFAULT), -EINVAL);
    c[1].op = CORU_SEL_SEND;
    c[1].elem = NULL;
    cr_assert_eq(coru_select(c, 2, CORU_NEVER, 0), -EINVAL);
    cr_assert_eq(coru_select(NULL, 1, CORU_NEVER, 0), -EINVAL);
    cr_assert_eq(w, -1, "a case completed despite the error");
    cr_assert_eq(c[0].rc, 9);

    struct coru_sel *big = malloc((MAXCASES + 1) * sizeof *big);
    for (int i = 0; i <= MAXCASES; i++) big[i] = (struct coru_sel){a, CORU_SEL_RECV, &w, 9};
    cr_assert_eq(coru_select(big, MAXCASES + 1, CORU_NEVER, 0), -EINVAL);
    cr_assert_eq(w, -1);
    /* 1024 is allowed */
    int k = coru_select(big, MAXCASES, CORU_NEVER, 0);
    cr_assert(k >= 0 && k < MAXCASES, "select returned %d", k);
    cr_assert_eq(w, 3);
    free(big);
    coru_chan_destroy(a);
}

struct gen_sel {
    coru_chan *ch;
    int blocking, blocking_ready, dflt, dflt_ready, got;
};

static void *select_gen_body(coru_gen *g, void *arg)
{
    /* No asserts in a generator body: record, assert outside. */
    struct gen_sel *r = arg;
    int w = -1;
    struct coru_sel c[1] = {{r->ch, CORU_SEL_RECV, &w, 9}};
    r->blocking = coru_select(c, 1, CORU_NEVER, 0);
    r->dflt = coru_select(c, 1, CORU_NEVER, CORU_SEL_DEFAULT);
    int v = 6;
    coru_chan_try_send(r->ch, &v);
    r->blocking_ready = coru_select(c, 1, 0, 0); /* refused although ready */
    r->dflt_ready = coru_select(c, 1, CORU_NEVER, CORU_SEL_DEFAULT);
    r->got = w;
    return NULL;
}

static void *run_select_gen(void *arg)
{
    struct gen_sel *r = arg;
    *r = (struct gen_sel){mkchan(1), 9, 9, 9, 9, -1};
    coru_gen *g;
    cr_assert_eq(coru_gen_create(&g, select_gen_body, r, 0), 0);
    cr_assert_eq(coru_gen_send(g, NULL, NULL), 0);
    coru_gen_destroy(g);
    coru_chan_destroy(r->ch);
    cr_assert_eq(r->blocking, -EPERM);
    cr_assert_eq(r->blocking_ready, -EPERM);
    cr_assert_eq(r->dflt, -EAGAIN);
    cr_assert_eq(r->dflt_ready, 0);
    cr_assert_eq(r->got, 6);
    return NULL;
}

Test(select, a_generator_body_may_only_select_with_the_default_flag, .timeout = 30)
{
    struct gen_sel r;
    run_select_gen(&r); /* driven by a plain thread */
    cr_assert_eq(run_on(CORU_IO_AUTO, 2, run_select_gen, &r), 0);
}

/* ------------------------------------------------------------ cancellation */

struct cancel_sel {
    coru_chan *a, *b, *full;
    _Atomic int started;
    int rc, again, empty_rc, dflt, got;
};

static void *cancelled_selector(void *arg)
{
    struct cancel_sel *s = arg;
    int va = -1, out = 1;
    struct coru_sel c[2] = {{s->a, CORU_SEL_RECV, &va, 9}, {s->b, CORU_SEL_SEND, &out, 9}};
    atomic_store(&s->started, 1);
    s->rc = coru_select(c, 2, CORU_NEVER, 0);
    /* sticky */
    s->again = coru_select(c, 2, coru_now() + 10000 * MS, 0);
    s->empty_rc = coru_select(NULL, 0, CORU_NEVER, 0);
    /* a ready case still completes without waiting */
    struct coru_sel d[1] = {{s->full, CORU_SEL_RECV, &s->got, 9}};
    s->dflt = coru_select(d, 1, CORU_NEVER, CORU_SEL_DEFAULT);
    return NULL;
}

static void *empty_selector(void *arg)
{
    atomic_store((_Atomic int *)arg, 1);
    return (void *)(intptr_t)coru_select(NULL, 0, CORU_NEVER, 0); /* waits for the cancel */
}

static void *cancel_sel_main(void *arg)
{
    struct cancel_sel *s = arg;
    s->a = mkchan(0);
    s->b = mkchan(0);
    s->full = mkchan(1);
    int v = 17;
    cr_assert_eq(coru_chan_send(s->full, &v), 0);
    coru_t *h, *e;
    _Atomic int e_started = 0;
    cr_assert_eq(coru_spawn(&h, cancelled_selector, s, NULL), 0);
    cr_assert_eq(coru_spawn(&e, empty_selector, &e_started, NULL), 0);
    while (!atomic_load(&s->started) || !atomic_load(&e_started)) cr_assert_eq(coru_sleep(1 * MS), 0);
    cr_assert_eq(coru_sleep(20 * MS), 0); /* let them park */
    cr_assert_eq(coru_cancel(h), 0);
    cr_assert_eq(coru_cancel(e), 0);
    void *r;
    cr_assert_eq(coru_join(h, NULL), 0);
    cr_assert_eq(coru_join(e, &r), 0);
    cr_assert_eq((intptr_t)r, -ECANCELED);
    /* no case took effect and no node was left behind */
    cr_assert_eq(coru_chan_try_send(s->a, &v), -EAGAIN);
    cr_assert_eq(coru_chan_try_recv(s->b, &v), -EAGAIN);
    coru_chan_destroy(s->a);
    coru_chan_destroy(s->b);
    coru_chan_destroy(s->full);
    return NULL;
}

Test(select, cancel_wakes_a_parked_select_with_ecanceled, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        struct cancel_sel s = {.rc = 9, .again = 9, .empty_rc = 9, .dflt = 9, .got = -1};
        cr_assert_eq(run_on(io, 2, cancel_sel_main, &s), 0);
        cr_assert_eq(s.rc, -ECANCELED);
        cr_assert_eq(s.again, -ECANCELED);
        cr_assert_eq(s.empty_rc, -ECANCELED);
        cr_assert_eq(s.dflt, 0);
        cr_assert_eq(s.got, 17);
    }
}
