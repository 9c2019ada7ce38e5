/* A small test-and-test-and-set spinlock for short critical sections that
 * never park (channel and sync state). Workers are at most one per CPU,
 * so the holder is normally running; after a bounded spin the waiter
 * yields the CPU in case the holder was preempted. */
#ifndef CORU_LOCK_H
#define CORU_LOCK_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

struct coru__lock {
    _Atomic bool held;
};

static inline void coru__lock_init(struct coru__lock *l)
{
    atomic_init(&l->held, false);
}

static inline void coru__lock(struct coru__lock *l)
{
    unsigned backoff = 1, rounds = 0;
    /* acquire: pairs with the release in coru__unlock */
    while (atomic_exchange_explicit(&l->held, true, memory_order_acquire)) {
        /* Exponential back-off: under contention, fewer threads hammering
         * the line lets the holder finish sooner. relaxed: only a hint to
         * retry the exchange. */
        do {
            for (unsigned i = 0; i < backoff; i++) {
#if defined(__x86_64__)
                __builtin_ia32_pause();
#elif defined(__aarch64__)
                __asm__ volatile("yield");
#endif
            }
            if (backoff < 64) backoff <<= 1;
            if (++rounds > 1000) { /* the holder was probably preempted */
                sched_yield();
                rounds = 0;
            }
        } while (atomic_load_explicit(&l->held, memory_order_relaxed));
    }
}

/* One attempt; true if it took the lock. */
static inline bool coru__trylock(struct coru__lock *l)
{
    /* acquire: pairs with the release in coru__unlock */
    return !atomic_load_explicit(&l->held, memory_order_relaxed) &&
           !atomic_exchange_explicit(&l->held, true, memory_order_acquire);
}

static inline void coru__unlock(struct coru__lock *l)
{
    atomic_store_explicit(&l->held, false, memory_order_release); /* pairs with the acquire in coru__lock */
}

#endif
