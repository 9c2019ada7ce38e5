/* Scheduler internals shared by the scheduler (sched.c, idle.c, pack.c,
 * gq.c, run.c: see rt.h), coroutines (coro.c), generators and every
 * module that parks a coroutine (channels, sync, I/O).
 *
 * Glossary: a worker is an OS thread running a scheduler loop on its
 * native context; a coroutine (struct coru_co) runs on its own stack and
 * returns to its worker's scheduler context whenever it yields, parks or
 * finishes. The scheduler context performs the "post-switch" action for
 * the coroutine it just left (requeue it, commit its park, or free it):
 * anything that lets another thread resume a coroutine must happen after
 * the coroutine's registers are saved, that is, on the scheduler context.
 *
 * Parking protocol (the one mechanism under every blocking call):
 *   1. The coroutine calls coru__park_prepare(): pstate = PARKING.
 *   2. It registers itself with what it waits for (a channel's wait
 *      queue, a join slot, a timer, an I/O op), making itself findable by
 *      wakers, and releases any lock it holds.
 *   3. It calls coru__park(): switches to the scheduler context.
 *   4. The scheduler, now that the registers are saved, commits the park:
 *      CAS pstate PARKING -> PARKED (acq_rel).
 *   A waker calls coru__ready(co): exchange pstate -> WOKEN (acq_rel).
 *     - old == PARKED: the park is committed and the context saved; the
 *       waker owns co and makes it runnable.
 *     - old == PARKING: the coroutine has not finished switching out; the
 *       waker does nothing more, and step 4's CAS fails (it sees WOKEN),
 *       so the scheduler makes co runnable itself.
 *   Either way co becomes runnable exactly once, and never before its
 *   registers are saved. The exchange/CAS pair is acq_rel on both sides,
 *   so whatever the waker wrote before coru__ready (a value, a result
 *   code) is visible to co when it resumes. One wait must be woken at
 *   most once: whoever removes co from what it waits for (under that
 *   structure's lock, or by winning a CAS) is the one waker.
 */
#ifndef CORU_SCHED_H
#define CORU_SCHED_H

#include <pthread.h>
#include <stdbool.h>

#include "coru.h"
#include "common.h"
#include "sched/ctx.h"
#include "sched/deque.h"
#include "sched/lock.h"
#include "sched/registry.h"
#include "sched/stack.h"
#include "sched/timer.h"

enum {
    CO_RUNNING = 0, /* running, runnable, or not yet started */
    CO_PARKING = 1, /* step 1 done, not yet committed */
    CO_PARKED = 2,  /* committed: only a waker may touch it */
    CO_WOKEN = 3,   /* a waker claimed it */
};

struct coru__worker;
struct coru__engine_op;

struct coru_co {
    struct coru__ctx ctx;       /* owner: whoever runs or resumes it */
    struct coru__stack *stack;  /* NULL until its first run */
    coru_fn fn;
    void *arg;
    void *result;               /* written at exit under wait_lock */
    _Atomic uint64_t id;        /* written once at spawn (release), read
                                   anywhere; 0 while the struct is free
                                   (registry.h) */
    size_t stack_size;          /* requested usable size, 0 = default */
    _Atomic int pstate;         /* parking protocol, see above */
    _Atomic int refs;           /* 1 for the running coroutine + 1 per handle */
    struct coru_co *next;       /* link in a free-struct cache or the depot
                                   (coro.c), or, while runnable, in a
                                   worker's inbox (pack.c); owner: that
                                   list's owner */
    /* Offset 128, the second line a park touches (with pstate's): what
     * a park writes is here, the wait record first in reg. */
    struct coru__lock wait_lock; /* guards waiting, and joins/cancels */
    _Atomic bool cancelled;     /* sticky; set under wait_lock */
    bool finished;              /* set at exit under wait_lock */
    bool io_closed;             /* coru_close of the op's fd asked the ring
                                   to cancel it (io.c); wait_lock */
    struct coru__waiter *waiting; /* the wait coru_cancel can end; wait_lock */
    struct coru__reg reg;       /* what it waits for, name, parent, spawn
                                   site (registry.h) */
    struct coru__waiter *join_waiter; /* a coru_join parked on it; wait_lock */
    struct coru__engine_op *io_op; /* io_uring op in flight; wait_lock */
    struct coru__engine *io_eng;  /* its ring; wait_lock */
    struct coru_co *io_cancel_next; /* link in a cancel inbox: the one of
                                   io_cancel_on; that engine's cancel_lock */
    struct coru__engine *io_cancel_on; /* engine whose cancel inbox holds co
                                   (NULL: none), so that co sits on at most
                                   one inbox, once; wait_lock */
} CORU_ALIGNED_CL; /* cache-line slots in the registry's chunks */

/* struct coru__worker, a worker's state, is the scheduler's own
 * (sched/rt.h); other modules reach their worker through the calls
 * below. */

/* The worker running on this thread, NULL elsewhere. */
struct coru__worker *coru__worker_self(void);
/* The running coroutine, NULL when not in one (a worker's scheduler context
 * or a plain thread). Inside a generator body this is still the coroutine
 * that drives the generator. */
struct coru_co *coru__co_self(void);

/* The calling worker's timer heap (callers run on a worker). */
struct coru__theap *coru__worker_timers(void);

/* Can the caller park? 0, or -EPERM (no coroutine, or in a generator). */
int coru__can_park(void);

/* Whether the calling coroutine has been cancelled (false off coroutines).
 * acquire: pairs with the release in coru_cancel. */
static inline bool coru__self_cancelled(void)
{
    struct coru_co *co = coru__co_self();
    return co && atomic_load_explicit(&co->cancelled, memory_order_acquire);
}

/* Parking protocol, see the top of this file. */
static inline void coru__park_prepare(struct coru_co *co)
{
    /* relaxed: the registration of step 2 (a lock release or a release
     * CAS) publishes this store to any waker that finds co. */
    atomic_store_explicit(&co->pstate, CO_PARKING, memory_order_relaxed);
}
/* Undo step 1 when step 2 found nothing to wait for. */
static inline void coru__park_cancel(struct coru_co *co)
{
    atomic_store_explicit(&co->pstate, CO_RUNNING, memory_order_relaxed);
}
void coru__park(void);
/* Moves the calling coroutine to worker `to`: it switches out and runs
 * next from that worker's inbox. false (nothing happens) outside a
 * coroutine, in a generator body, or when `to` is its worker or no
 * worker. */
bool coru__migrate(unsigned to);
/* Makes a parked (or parking) coroutine runnable; any thread. On a worker
 * it goes to the worker's run-next slot, elsewhere to the global queue. */
void coru__ready(struct coru_co *co);

/* References on a coroutine struct (coro.c). */
void coru__co_ref(struct coru_co *co);
void coru__co_unref(struct coru_co *co);

/* Spawn internals, also used by coru_run for the main coroutine. site: the
 * spawn call's return address; parent: the spawning coroutine (NULL: a
 * plain thread, or coru_run). */
int coru__spawn(struct coru_co **out, coru_fn fn, void *arg, const struct coru_attr *attr, int refs,
                uintptr_t site, const struct coru_co *parent);

/* Generators: depth of generator bodies running on this thread. */
extern __thread int coru__gen_depth;

/* Stats helpers: owner-only increments (plain load + store, no lock prefix;
 * relaxed is enough: readers only want a recent value). */
static inline void coru__stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void coru__stat_inc(_Atomic uint64_t *c)
{
    coru__stat_add(c, 1);
}

#endif
