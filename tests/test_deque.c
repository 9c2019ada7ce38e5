/* Tests for the Chase-Lev work-stealing deque (src/sched/deque.c): order at
 * each end, the full and empty cases, the steal-half limit, and a stress run
 * where an owner and 1 or 3 thieves check every item is taken exactly once. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "common.h"
#include "sched/deque.h"

/* Items are distinct odd "pointers", so a slot never holds a real NULL and a
 * torn or stale value is easy to spot. */
static void *tag(size_t i)
{
    return (void *)(uintptr_t)((i << 1) | 1);
}

static size_t untag(void *p)
{
    return (size_t)((uintptr_t)p >> 1);
}

Test(deque, init_rejects_capacity_not_a_power_of_two, .timeout = 60)
{
    struct coru__deque d;
    cr_assert_eq(coru__deque_init(&d, 0), -EINVAL);
    cr_assert_eq(coru__deque_init(&d, 1), -EINVAL);
    cr_assert_eq(coru__deque_init(&d, 3), -EINVAL);
    cr_assert_eq(coru__deque_init(&d, 96), -EINVAL);
    cr_assert_eq(coru__deque_init(&d, (size_t)1 << 63), -EINVAL);
    cr_assert_eq(coru__deque_init(&d, 2), 0);
    coru__deque_fini(&d);
}

Test(deque, empty_deque_returns_null_and_zero, .timeout = 60)
{
    struct coru__deque d;
    void *out[4];
    cr_assert_eq(coru__deque_init(&d, 8), 0);

    cr_assert_null(coru__deque_pop(&d));
    cr_assert_eq(coru__deque_grab(&d, out, 1), 0);
    cr_assert_eq(coru__deque_grab(&d, out, 4), 0);
    cr_assert_eq(coru__deque_size(&d), 0);

    /* Emptied by pop, then by grab: still empty, and still usable. */
    cr_assert(coru__deque_push(&d, tag(1)));
    cr_assert_eq(coru__deque_pop(&d), tag(1));
    cr_assert_null(coru__deque_pop(&d));
    cr_assert_eq(coru__deque_grab(&d, out, 4), 0);
    cr_assert(coru__deque_push(&d, tag(2)));
    cr_assert_eq(coru__deque_grab(&d, out, 4), 1);
    cr_assert_eq(out[0], tag(2));
    cr_assert_null(coru__deque_pop(&d));
    cr_assert_eq(coru__deque_grab(&d, out, 1), 0);
    cr_assert_eq(coru__deque_size(&d), 0);
    coru__deque_fini(&d);
}

Test(deque, pop_returns_items_newest_first, .timeout = 60)
{
    struct coru__deque d;
    cr_assert_eq(coru__deque_init(&d, 8), 0);
    for (size_t i = 0; i < 8; i++) cr_assert(coru__deque_push(&d, tag(i)));
    cr_assert_eq(coru__deque_size(&d), 8);
    for (size_t i = 8; i-- > 0;) cr_assert_eq(coru__deque_pop(&d), tag(i));
    cr_assert_null(coru__deque_pop(&d));
    coru__deque_fini(&d);
}

Test(deque, grab_one_returns_items_oldest_first, .timeout = 60)
{
    struct coru__deque d;
    void *out[1];
    cr_assert_eq(coru__deque_init(&d, 8), 0);
    for (size_t i = 0; i < 8; i++) cr_assert(coru__deque_push(&d, tag(i)));
    for (size_t i = 0; i < 8; i++) {
        cr_assert_eq(coru__deque_grab(&d, out, 1), 1);
        cr_assert_eq(out[0], tag(i));
    }
    cr_assert_eq(coru__deque_grab(&d, out, 1), 0);
    coru__deque_fini(&d);
}

Test(deque, push_returns_false_when_full_and_loses_nothing, .timeout = 60)
{
    struct coru__deque d;
    void *out[4];
    cr_assert_eq(coru__deque_init(&d, 4), 0);

    /* Go round the ring many times so indices wrap: fill, fail, take two
     * from the top and one from the bottom, refill. Track the expected
     * contents as the window [lo, hi) minus the popped newest. */
    size_t next = 0;
    for (size_t i = 0; i < 4; i++) cr_assert(coru__deque_push(&d, tag(next++)));
    for (int round = 0; round < 100; round++) {
        cr_assert_not(coru__deque_push(&d, tag(999999)));
        cr_assert_eq(coru__deque_size(&d), 4);
        size_t oldest = next - 4;
        cr_assert_eq(coru__deque_grab(&d, out, 1), 1);
        cr_assert_eq(out[0], tag(oldest));
        cr_assert_eq(coru__deque_grab(&d, out, 1), 1);
        cr_assert_eq(out[0], tag(oldest + 1));
        cr_assert_eq(coru__deque_pop(&d), tag(next - 1));
        /* Put the popped one back, then two new ones. */
        cr_assert(coru__deque_push(&d, tag(next - 1)));
        cr_assert(coru__deque_push(&d, tag(next)));
        cr_assert(coru__deque_push(&d, tag(next + 1)));
        next += 2;
    }
    cr_assert_not(coru__deque_push(&d, tag(999999)));
    /* The rejected pushes left no trace: the four newest, in order. */
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(coru__deque_grab(&d, out, 1), 1);
        cr_assert_eq(out[0], tag(next - 4 + i));
    }
    cr_assert_eq(coru__deque_grab(&d, out, 1), 0);
    cr_assert_null(coru__deque_pop(&d));
    coru__deque_fini(&d);
}

Test(deque, grab_many_takes_at_most_half_rounded_up, .timeout = 60)
{
    struct coru__deque d;
    void *out[16];
    cr_assert_eq(coru__deque_init(&d, 16), 0);

    for (size_t k = 1; k <= 16; k++) {
        for (size_t i = 0; i < k; i++) cr_assert(coru__deque_push(&d, tag(i)));
        size_t want = (k + 1) / 2;
        cr_assert_eq(coru__deque_grab(&d, out, 16), want, "k=%zu", k);
        for (size_t i = 0; i < want; i++) cr_assert_eq(out[i], tag(i));
        /* The rest is still there, newest at the bottom. */
        cr_assert_eq(coru__deque_size(&d), k - want);
        for (size_t i = k; i-- > want;) cr_assert_eq(coru__deque_pop(&d), tag(i));
        cr_assert_null(coru__deque_pop(&d));
    }

    /* n below half: n wins. */
    for (size_t i = 0; i < 10; i++) cr_assert(coru__deque_push(&d, tag(i)));
    cr_assert_eq(coru__deque_grab(&d, out, 2), 2);
    cr_assert_eq(out[0], tag(0));
    cr_assert_eq(out[1], tag(1));
    cr_assert_eq(coru__deque_size(&d), 8);
    coru__deque_fini(&d);
}

/* ---- Concurrent stress ------------------------------------------------ */

/* 4 million items normally (about 0.3 s per test at -O2 on 2 cores). TSan
 * slows every atomic several times over and CI machines vary, so under
 * CORU_TSAN the count is scaled down to 1 million (about 0.5 s per test
 * here), keeping well inside the 10 s budget. */
#ifdef CORU_TSAN
#define STRESS_ITEMS ((size_t)1 << 20)
#else
#define STRESS_ITEMS ((size_t)4 << 20)
#endif
#define STRESS_CAPACITY 256
#define STRESS_GRAB_MANY 200 /* > capacity / 2, so the half rule bites */

struct stress {
    struct coru__deque d;
    size_t items;
    atomic_uchar *taken;    /* per item: how many times it was taken */
    atomic_size_t dups;     /* items taken more than once */
    atomic_size_t bad;      /* values that are not items at all */
    atomic_size_t too_many; /* grabs returning more than allowed */
    atomic_int done;        /* owner finished and its deque is empty */
};

/* Called by every taker, for every item it got. relaxed everywhere: the
 * counters are read only after pthread_join, which orders them. */
static void record(struct stress *s, void *item)
{
    uintptr_t v = (uintptr_t)item;
    if ((v & 1) == 0 || untag(item) >= s->items) {
        atomic_fetch_add_explicit(&s->bad, 1, memory_order_relaxed);
        return;
    }
    if (atomic_fetch_add_explicit(&s->taken[untag(item)], 1, memory_order_relaxed) != 0)
        atomic_fetch_add_explicit(&s->dups, 1, memory_order_relaxed);
}

struct thief {
    struct stress *s;
    pthread_t tid;
    size_t got;
};

static void *thief_main(void *arg)
{
    struct thief *th = arg;
    struct stress *s = th->s;
    void *out[STRESS_GRAB_MANY];
    unsigned misses = 0;
    bool many = false;

    /* acquire: pairs with the owner's release store of done; after it the
     * deque is empty for good, so nothing is left behind. */
    while (!atomic_load_explicit(&s->done, memory_order_acquire)) {
        size_t n = many ? STRESS_GRAB_MANY : 1;
        many = !many;
        size_t got = coru__deque_grab(&s->d, out, n);
        if (got > STRESS_CAPACITY / 2)
            atomic_fetch_add_explicit(&s->too_many, 1, memory_order_relaxed);
        for (size_t i = 0; i < got; i++) record(s, out[i]);
        th->got += got;
        /* Give the owner the CPU now and then: 2 cores, up to 4 threads. */
        if (got == 0 && ++misses % 64 == 0) sched_yield();
    }
    return NULL;
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void stress_run(int nthieves)
{
    struct stress s = { .items = STRESS_ITEMS };
    struct thief th[3] = { 0 };
    cr_assert_leq(nthieves, 3);
    cr_assert_eq(coru__deque_init(&s.d, STRESS_CAPACITY), 0);
    s.taken = calloc(s.items, sizeof *s.taken);
    cr_assert_not_null(s.taken);

    for (int i = 0; i < nthieves; i++) {
        th[i].s = &s;
        cr_assert_eq(pthread_create(&th[i].tid, NULL, thief_main, &th[i]), 0);
    }

    /* Owner: 60% push, 20% pop, 20% grab(1). On a full deque, pop one and
     * retry the same item. */
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)nthieves;
    size_t owner_got = 0, fulls = 0, next = 0, fulls_in_a_row = 0;
    void *out[1];
    while (next < s.items) {
        unsigned r = (unsigned)(xorshift(&rng) % 10);
        if (r < 6) {
            if (coru__deque_push(&s.d, tag(next))) {
                next++;
                fulls_in_a_row = 0;
                continue;
            }
            fulls++;
            /* A broken deque can end up with top past bottom, where push
             * always fails: stop with a clear failure, not a timeout. */
            if (++fulls_in_a_row > 100000) break;
            void *x = coru__deque_pop(&s.d);
            if (x != NULL) {
                record(&s, x);
                owner_got++;
            }
        } else if (r < 8) {
            void *x = coru__deque_pop(&s.d);
            if (x != NULL) {
                record(&s, x);
                owner_got++;
            }
        } else if (coru__deque_grab(&s.d, out, 1) == 1) {
            record(&s, out[0]);
            owner_got++;
        }
    }
    /* Drain. NULL from pop means empty (a thief may have won the last one);
     * with no more pushes it stays empty. */
    for (void *x; (x = coru__deque_pop(&s.d)) != NULL; owner_got++) record(&s, x);
    /* release: pairs with the acquire load in thief_main. */
    atomic_store_explicit(&s.done, 1, memory_order_release);

    /* Assert only after the join: a failed assert leaves the test, and the
     * thieves must not outlive the state they use. */
    size_t total = owner_got;
    int join_failures = 0;
    for (int i = 0; i < nthieves; i++) {
        join_failures += pthread_join(th[i].tid, NULL) != 0;
        total += th[i].got;
    }
    cr_assert_eq(join_failures, 0);

    size_t bad = atomic_load(&s.bad), dups = atomic_load(&s.dups);
    size_t too_many = atomic_load(&s.too_many);
    cr_assert_eq(bad, 0, "%zu values that were never pushed", bad);
    cr_assert_eq(dups, 0, "%zu items taken more than once", dups);
    cr_assert_eq(too_many, 0, "%zu grabs took more than half", too_many);
    cr_assert_eq(next, s.items, "push kept failing at item %zu", next);
    cr_assert_eq(coru__deque_size(&s.d), 0);
    cr_assert_eq(total, s.items, "taken %zu of %zu", total, s.items);
    size_t missing = 0;
    for (size_t i = 0; i < s.items; i++)
        missing += atomic_load_explicit(&s.taken[i], memory_order_relaxed) != 1;
    cr_assert_eq(missing, 0, "%zu items not taken exactly once", missing);
    cr_assert_null(coru__deque_pop(&s.d));
    cr_assert_eq(coru__deque_grab(&s.d, out, 1), 0);
    cr_log_info("deque stress: %d thieves, %zu items, owner took %zu, push full %zu times",
                nthieves, s.items, owner_got, fulls);

    free(s.taken);
    coru__deque_fini(&s.d);
}

Test(deque, every_item_taken_exactly_once_with_one_thief, .timeout = 60)
{
    stress_run(1);
}

Test(deque, every_item_taken_exactly_once_with_three_thieves, .timeout = 60)
{
    stress_run(3);
}
