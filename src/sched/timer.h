/* Per-worker timer heaps: a binary min-heap of deadlines under a small
 * lock. The owner worker arms timers and fires them; any thread may
 * disarm one (a coroutine woken early disarms its timer from whatever
 * worker it resumed on). Arm and disarm are O(log n), no system call.
 *
 * A timer belongs to the waiter that armed it (it lives on the waiter's
 * stack); firing claims the waiter (waiter.h) and wakes it with
 * -ETIMEDOUT, under the heap lock, so the waiter's disarm (which takes
 * the same lock) cannot return before the firing is over. A timer with a
 * `fire` function calls that instead (the deadline of an io_uring op,
 * io.c, which must not wake its coroutine before the op's completion): it
 * runs on the owner worker, under the heap lock, by the same rule.
 */
#ifndef CORU_TIMER_H
#define CORU_TIMER_H

#include <stddef.h>
#include <stdint.h>

#include "sched/lock.h"

struct coru__waiter;
struct coru__theap;

struct coru__timer {
    int64_t when;              /* absolute deadline, ns */
    size_t idx;                /* position in heap->a; SIZE_MAX: not armed */
    struct coru__theap *heap;  /* where it is armed */
    struct coru__waiter *w;    /* whom it wakes (when fire is NULL) */
    void (*fire)(struct coru__timer *t); /* or what it does when due */
};

struct coru__theap {
    struct coru__lock lock;
    struct coru__timer **a;    /* guarded by lock */
    size_t n, cap;             /* guarded by lock */
    _Atomic int64_t next;      /* a[0]->when, or INT64_MAX: read by the
                                  owner without the lock */
};

void coru__theap_init(struct coru__theap *h);
void coru__theap_fini(struct coru__theap *h);
/* Arms t (when, w set by the caller). Returns 0 or -ENOMEM. */
int coru__timer_arm(struct coru__theap *h, struct coru__timer *t);
/* Removes t if it is still armed. Any thread. */
void coru__timer_disarm(struct coru__timer *t);
/* Owner: fires every timer due at `now`. Returns how many woke a waiter. */
int coru__theap_fire(struct coru__theap *h, int64_t now);
/* Owner: nearest deadline, INT64_MAX if none. */
static inline int64_t coru__theap_next(struct coru__theap *h)
{
    return atomic_load_explicit(&h->next, memory_order_relaxed); /* a hint;
        the lock orders the heap itself */
}

#endif
