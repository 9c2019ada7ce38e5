/* Tests for src/sched/timer.c: the heap and its FIFO lanes, exact firing
 * order, disarm from every position, another worker firing (owner false),
 * and a random model check. Timers here wake plain-thread waiters (no
 * runtime), or record themselves through a `fire` function. */
#include "sched/timer.h"
#include "sched/waiter.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#define MS (1000 * 1000LL)

/* A timer that records the order it fired in. */
struct rec {
    struct coru__timer t;
    int id;
};

static int fired_ids[100000];
static int nfired;

static void record(struct coru__timer *t)
{
    struct rec *r = (struct rec *)(void *)t;
    fired_ids[nfired++] = r->id;
}

static void rec_arm(struct coru__theap *h, struct rec *r, int id, int64_t when, int64_t now)
{
    coru__timer_init(&r->t, NULL, record);
    r->id = id;
    r->t.when = when;
    cr_assert_eq(coru__timer_arm(h, &r->t, now), 0);
}

/* Checks the heap's invariants from the outside: every entry's index, the
 * heap order, and `next`. */
static void check_heap(struct coru__theap *h)
{
    for (size_t i = 0; i < h->n; i++) {
        cr_assert_eq(h->a[i].t->idx, i, "entry %zu", i);
        cr_assert_eq(h->a[i].when, h->a[i].t->when, "entry %zu", i);
        if (i) cr_assert_geq(h->a[i].when, h->a[(i - 1) / 4].when, "heap order at %zu", i);
    }
    cr_assert_eq(coru__theap_next(h), h->n ? h->a[0].when : INT64_MAX);
    for (int l = 0; l < CORU__TLANES; l++) {
        struct coru__tlane *ln = &h->lanes[l];
        int64_t last = INT64_MIN;
        for (struct coru__timer *t = ln->head; t; t = t->lnext) {
            cr_assert_geq(t->when, last, "lane %d out of order", l);
            last = t->when;
            cr_assert(t->armed);
            if (!t->lnext) cr_assert_eq(ln->tail, t);
        }
        if (ln->head) cr_assert_neq(ln->head->idx, SIZE_MAX, "a lane head is a heap entry");
    }
}

Test(timer, equal_spans_share_one_heap_entry_and_fire_in_order)
{
    enum { N = 1000 };
    struct coru__theap h;
    coru__theap_init(&h);
    static struct rec r[N];
    nfired = 0;
    int64_t now = 1000 * MS;
    /* The arms of 100 ms sleeps, each a little later than the last. */
    for (int i = 0; i < N; i++) rec_arm(&h, &r[i], i, now + i * 1000 + 100 * MS, now + i * 1000);
    cr_assert_eq(h.n, 1, "one lane, one heap entry: %zu entries", h.n);
    check_heap(&h);
    cr_assert_eq(coru__theap_fire(&h, now + 100 * MS + 499 * 1000, true), 500);
    cr_assert_eq(nfired, 500);
    check_heap(&h);
    cr_assert_eq(coru__theap_fire(&h, INT64_MAX - 1, true), N - 500);
    for (int i = 0; i < N; i++) cr_assert_eq(fired_ids[i], i, "fire #%d was %d", i, fired_ids[i]);
    for (int i = 0; i < N; i++) cr_assert_null(atomic_load(&r[i].t.heap));
    cr_assert_eq(coru__theap_next(&h), INT64_MAX);
    coru__theap_fini(&h);
}

Test(timer, scrambled_deadlines_fire_in_deadline_order)
{
    enum { N = 10007 };
    struct coru__theap h;
    coru__theap_init(&h);
    static struct rec r[N];
    nfired = 0;
    /* span i*7919 mod N: every key differs, few lanes can help */
    for (int i = 0; i < N; i++) {
        int rank = (int)(((long)i * 7919) % N);
        rec_arm(&h, &r[i], rank, (int64_t)rank * (1 << 17), 0);
    }
    check_heap(&h);
    cr_assert_eq(coru__theap_fire(&h, INT64_MAX - 1, true), N);
    for (int k = 0; k < N; k++) cr_assert_eq(fired_ids[k], k, "fire #%d was rank %d", k, fired_ids[k]);
    coru__theap_fini(&h);
}

Test(timer, a_timer_out_of_order_for_its_lane_goes_to_the_heap_and_still_fires_first)
{
    struct coru__theap h;
    coru__theap_init(&h);
    struct rec a, b, c;
    nfired = 0;
    rec_arm(&h, &a, 1, 100 * MS, 0);
    rec_arm(&h, &b, 2, 100 * MS + 10, 10); /* same span: appended */
    cr_assert_eq(h.n, 1);
    /* same key (span 100 ms - 5 ns), but earlier than the lane's tail */
    rec_arm(&h, &c, 0, 100 * MS + 5, 10);
    cr_assert_eq(h.n, 2);
    cr_assert_null(c.t.lane);
    check_heap(&h);
    cr_assert_eq(coru__theap_fire(&h, 200 * MS, true), 3);
    cr_assert_eq(fired_ids[0], 1);
    cr_assert_eq(fired_ids[1], 0);
    cr_assert_eq(fired_ids[2], 2);
    coru__theap_fini(&h);
}

Test(timer, disarm_takes_a_timer_from_the_head_middle_or_tail_of_its_lane)
{
    enum { N = 10 };
    struct coru__theap h;
    coru__theap_init(&h);
    struct rec r[N];
    nfired = 0;
    for (int i = 0; i < N; i++) rec_arm(&h, &r[i], i, 50 * MS + i, i);
    coru__timer_disarm(&r[0].t); /* head: its successor moves into the heap */
    check_heap(&h);
    coru__timer_disarm(&r[5].t); /* middle */
    check_heap(&h);
    coru__timer_disarm(&r[N - 1].t); /* tail */
    check_heap(&h);
    coru__timer_disarm(&r[5].t); /* twice: a no-op */
    int gone[] = {0, 5, N - 1};
    for (int k = 0; k < 3; k++) {
        cr_assert_not(r[gone[k]].t.armed);
        cr_assert_null(atomic_load(&r[gone[k]].t.heap));
    }
    cr_assert_eq(coru__theap_next(&h), 50 * MS + 1);
    cr_assert_eq(coru__theap_fire(&h, 60 * MS, true), N - 3);
    int want[] = {1, 2, 3, 4, 6, 7, 8};
    for (int k = 0; k < N - 3; k++) cr_assert_eq(fired_ids[k], want[k]);
    /* emptied lane: free for another span */
    struct rec x;
    rec_arm(&h, &x, 99, 7 * MS, 0);
    cr_assert_eq(h.n, 1);
    coru__timer_disarm(&x.t);
    cr_assert_eq(h.n, 0);
    cr_assert_eq(coru__theap_next(&h), INT64_MAX);
    coru__theap_fini(&h);
}

Test(timer, a_fired_waiter_timer_wakes_its_waiter_with_etimedout)
{
    struct coru__theap h;
    coru__theap_init(&h);
    struct coru__waiter w[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(coru__waiter_init(&w[i]), 0); /* a plain thread's waiter */
        w[i].tm.when = 10 * MS + i;
        cr_assert_eq(coru__timer_arm(&h, &w[i].tm, 0), 0);
    }
    /* Another waker claims w[1] first: the timer must not wake it again. */
    cr_assert(coru__waiter_claim(&w[1]));
    cr_assert_eq(coru__theap_fire(&h, 20 * MS, true), 2, "only the unclaimed ones count");
    cr_assert_eq(w[0].code, -ETIMEDOUT);
    cr_assert_eq(atomic_load(&w[0].futex), 1);
    cr_assert_eq(atomic_load(&w[1].futex), 0);
    cr_assert_eq(w[2].code, -ETIMEDOUT);
    for (int i = 0; i < 3; i++) {
        cr_assert_null(atomic_load(&w[i].tm.heap), "the firer is done with it: disarm takes no lock");
        coru__timer_disarm(&w[i].tm);
    }
    coru__theap_fini(&h);
}

Test(timer, another_worker_fires_waiter_timers_and_leaves_fire_timers_to_the_owner)
{
    struct coru__theap h;
    coru__theap_init(&h);
    struct coru__waiter w[2];
    struct rec op;
    nfired = 0;
    cr_assert_eq(coru__waiter_init(&w[0]), 0);
    cr_assert_eq(coru__waiter_init(&w[1]), 0);
    w[0].tm.when = 1 * MS;
    cr_assert_eq(coru__timer_arm(&h, &w[0].tm, 0), 0);
    rec_arm(&h, &op, 7, 2 * MS, 0); /* an io_uring op's deadline, say */
    w[1].tm.when = 3 * MS;
    cr_assert_eq(coru__timer_arm(&h, &w[1].tm, 0), 0);
    /* Not the owner: fires w[0], stops at the op's timer. */
    cr_assert_eq(coru__theap_fire(&h, 10 * MS, false), 1);
    cr_assert_eq(w[0].code, -ETIMEDOUT);
    cr_assert_eq(nfired, 0);
    cr_assert(op.t.armed);
    cr_assert_eq(coru__theap_next(&h), 2 * MS);
    /* The owner fires the rest, in order. */
    cr_assert_eq(coru__theap_fire(&h, 10 * MS, true), 2);
    cr_assert_eq(nfired, 1);
    cr_assert_eq(w[1].code, -ETIMEDOUT);
    coru__theap_fini(&h);
}

/* Random arms (mostly equal spans, some odd ones), disarms and fires,
 * against a model: the set of armed deadlines. Each fire must take exactly
 * the model's due timers, in non-decreasing deadline order. */
Test(timer, random_operations_match_a_model)
{
    enum { N = 4000, ROUNDS = 200000 };
    struct coru__theap h;
    coru__theap_init(&h);
    static struct rec r[N];
    static bool armed[N];
    static int64_t when[N];
    int64_t now = 0;
    unsigned seed = 12345;
    for (int i = 0; i < N; i++) armed[i] = false;
    for (int round = 0; round < ROUNDS; round++) {
        int i = (int)(rand_r(&seed) % N);
        int op = (int)(rand_r(&seed) % 10);
        if (op < 5 && !armed[i]) {
            static const int64_t spans[] = {100 * MS, 5 * MS, 30 * MS};
            int64_t span = op < 4 ? spans[rand_r(&seed) % 3] : (int64_t)(rand_r(&seed) % (200 * MS));
            when[i] = now + span;
            rec_arm(&h, &r[i], i, when[i], now);
            armed[i] = true;
        } else if (op < 8 && armed[i]) {
            coru__timer_disarm(&r[i].t);
            armed[i] = false;
        } else {
            now += (int64_t)(rand_r(&seed) % (2 * MS));
            nfired = 0;
            int want = 0;
            for (int k = 0; k < N; k++) want += armed[k] && when[k] <= now;
            cr_assert_eq(coru__theap_fire(&h, now, true), want, "round %d", round);
            cr_assert_eq(nfired, want);
            int64_t last = INT64_MIN;
            for (int k = 0; k < nfired; k++) {
                int id = fired_ids[k];
                cr_assert(armed[id] && when[id] <= now, "round %d: fired %d", round, id);
                cr_assert_geq(when[id], last, "round %d: out of order", round);
                last = when[id];
                armed[id] = false;
            }
        }
        if (round % 1000 == 0) check_heap(&h);
    }
    check_heap(&h);
    coru__theap_fini(&h);
}
