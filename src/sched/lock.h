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
    unsigned spins = 0;
    /* acquire: pairs with the release in coru__unlock */
    while (atomic_exchange_explicit(&l->held, true, memory_order_acquire)) {
        /* relaxed: only a hint to retry the exchange */
        while (atomic_load_explicit(&l->held, memory_order_relaxed)) {
            if (++spins > 200) {
                sched_yield();
                spins = 0;
            } else {
#if defined(__x86_64__)
                __builtin_ia32_pause();
#elif defined(__aarch64__)
                __asm__ volatile("yield");
#endif
            }
        }
    }
}

static inline void coru__unlock(struct coru__lock *l)
{
    atomic_store_explicit(&l->held, false, memory_order_release); /* pairs with the acquire in coru__lock */
}

#endif
