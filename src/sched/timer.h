/* Per-worker timers: a 4-ary min-heap of deadlines plus a few FIFO
 * lanes, under a small lock. The owner worker arms timers and fires them;
 * any thread may disarm one (a coroutine woken early disarms its timer
 * from whatever worker it resumed on), and another worker may fire the
 * due ones of an owner stuck in a long computation (coru__theap_fire with
 * owner false).
 *
 * Lanes (libev's trick for equal timeouts): timers armed with the same
 * span (deadline minus now, to LANE_SHIFT granularity) on one worker
 * mostly arrive in deadline order, since its clock only moves forward. A
 * lane holds such a run as a FIFO list whose head alone sits in the heap;
 * a timer that fits at its lane's tail is appended in O(1), one that does
 * not goes into the heap on its own. 100,000 sleepers of 100 ms cost a
 * heap of one entry. Arm, disarm and fire stay exact: a lane is sorted,
 * and timers fire in deadline order.
 *
 * A timer belongs to the waiter that armed it (it lives on the waiter's
 * stack); firing claims the waiter (waiter.h) and wakes it with
 * -ETIMEDOUT, under the heap lock. A timer with a `fire` function calls
 * that instead (the deadline of an io_uring op, io.c, which must not wake
 * its coroutine before the op's completion): only its owner worker fires
 * it, under the heap lock. Either way the firer's last write to the timer
 * clears its `heap` (release), and disarm skips the lock when it reads
 * that (acquire): the firer is done with it. Otherwise disarm takes the
 * lock, so it cannot return while a firing is in progress.
 */
#ifndef CORU_TIMER_H
#define CORU_TIMER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sched/lock.h"

struct coru__waiter;
struct coru__theap;
struct coru__tlane;

struct coru__timer {
    int64_t when;              /* absolute deadline, ns */
    struct coru__waiter *w;    /* whom it wakes (when fire is NULL) */
    void (*fire)(struct coru__timer *t); /* or what it does when due */
    /* The rest belongs to the heap (its lock) while armed: */
    size_t idx;                /* position in heap->a; SIZE_MAX: not there */
    struct coru__tlane *lane;  /* the lane it is in, or NULL */
    struct coru__timer *lnext, *lprev; /* neighbours in the lane */
    bool armed;
    /* Where it was armed; NULL before, and once a disarm or the firer is
     * done with it (see above). */
    _Atomic(struct coru__theap *) heap;
};

/* A FIFO lane: timers with one span key, in deadline order; head is also
 * a heap entry. Empty: head NULL. */
struct coru__tlane {
    int64_t key;
    struct coru__timer *head, *tail;
};

#define CORU__TLANES 8

/* A heap entry: the deadline beside the pointer, so that sifting reads
 * only the dense array, never the timers (each on a page of its own). */
struct coru__hent {
    int64_t when;
    struct coru__timer *t;
};

struct coru__theap {
    struct coru__lock lock;
    struct coru__hent *a;      /* guarded by lock: a 4-ary min-heap */
    size_t n, cap;             /* guarded by lock */
    struct coru__tlane lanes[CORU__TLANES]; /* guarded by lock */
    _Atomic int64_t next;      /* a[0].when, or INT64_MAX: read without
                                  the lock as a hint */
};

/* Prepares t: not armed. */
static inline void coru__timer_init(struct coru__timer *t, struct coru__waiter *w,
                                    void (*fire)(struct coru__timer *t))
{
    t->w = w;
    t->fire = fire;
    t->idx = SIZE_MAX;
    t->lane = NULL;
    t->armed = false;
    atomic_init(&t->heap, NULL);
}

void coru__theap_init(struct coru__theap *h);
void coru__theap_fini(struct coru__theap *h);
/* Arms t (t->when set by the caller) on h, the calling worker's own heap;
 * now is the clock as the caller last read it (it picks the lane).
 * Returns 0 or -ENOMEM. */
int coru__timer_arm(struct coru__theap *h, struct coru__timer *t, int64_t now);
/* Removes t if it is still armed, or waits out its firing. Any thread. */
void coru__timer_disarm(struct coru__timer *t);
/* Fires every timer due at `now`, in deadline order. owner: the calling
 * worker owns h. Another worker (owner false) fires only waiter timers,
 * and stops at the first due `fire` timer, which only the owner may run.
 * Woken coroutines are made ready on the calling worker. Returns how many
 * timers did something (woke their waiter, or ran `fire`). */
int coru__theap_fire(struct coru__theap *h, int64_t now, bool owner);
/* Nearest deadline, INT64_MAX if none: a hint (relaxed), exact for the
 * owner except that a disarm elsewhere may have made it later. */
static inline int64_t coru__theap_next(struct coru__theap *h)
{
    return atomic_load_explicit(&h->next, memory_order_relaxed);
}

#endif
