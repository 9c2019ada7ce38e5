/* Waiters: the one blocking mechanism under channels, select, join,
 * sleep and the sync objects.
 *
 * A waiter (struct coru__waiter) is one blocked party: a parked coroutine,
 * or a plain thread on a futex. It may be registered in several places at
 * once (the queues of several channels, a timer, the cancellation slot of
 * its coroutine), each through its own node. It lives on the waiter's
 * stack for the duration of the wait.
 *
 * Protocol (no lost wake-up, no double wake, no use after return):
 *   1. coru__waiter_init(): begins the park (pstate PARKING) and fails
 *      with -ECANCELED if the coroutine was cancelled.
 *   2. The waiter enqueues its nodes, each under its queue's lock.
 *   3. coru__waiter_block(deadline): arms the timer, registers for
 *      cancellation, parks; on return it has removed the timer and the
 *      cancellation registration, and returns `code`.
 *   4. The waiter unlinks each node the wait did not complete through,
 *      under that queue's lock (coru__wnode_done), and only then returns
 *      (its stack may go away). The node it completed through was already
 *      unlinked by its claimer, and the waiter must not touch that
 *      object again: its owner may free it as soon as the operation is
 *      done (a skynet parent destroys its channel right after the last
 *      receive, while the last sender is still waking up).
 *   A waker, holding the lock of the queue (or timer heap, or
 *   cancellation slot) through which it found the waiter, calls
 *   coru__waiter_claim(); exactly one claim per wait succeeds. The winner
 *   may write into the node's data, then calls coru__waiter_wake() (under
 *   the lock or after dropping it: the waiter cannot return before it is
 *   woken). A loser must not touch the waiter after dropping the lock;
 *   since step 4 takes that same lock, the waiter is alive while the
 *   loser holds it.
 */
#ifndef CORU_WAITER_H
#define CORU_WAITER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sched/sched.h"
#include "sched/timer.h"

struct coru__waiter {
    struct coru_co *co;      /* NULL: a plain thread */
    _Atomic int done;        /* 0 until one waker claims the wait */
    _Atomic uint32_t futex;  /* threads: 1 once woken */
    int code;                /* result, written by the claimer */
    int fired;               /* idx of the node that fired; -1 timer/cancel */
    struct coru__timer tm;   /* the deadline, while armed */
};

/* One registration of a waiter in one queue. */
struct coru__wnode {
    struct coru__wnode *next, *prev; /* owner: the queue's lock */
    struct coru__waiter *w;
    void *data;                      /* buffer the wait exchanges */
    int idx;                         /* reported as w->fired */
    bool linked;                     /* in the queue; owner: the queue's lock */
};

struct coru__waitq {
    struct coru__wnode *head, *tail;
};

/* Step 1. Returns 0, -EPERM (in a generator body) or -ECANCELED. */
int coru__waiter_init(struct coru__waiter *w);
/* Between steps 1 and 3: records what the wait is on, for the dump and
 * the deadlock report (registry.h's kinds); nothing for a plain thread. */
static inline void coru__waiter_on(struct coru__waiter *w, int kind, const void *obj, int64_t arg, bool ext)
{
    if (w->co) coru__reg_wait(&w->co->reg, kind, obj, arg, ext);
}
/* Undoes step 1 when the caller decides not to block after all. */
void coru__waiter_abort(struct coru__waiter *w);
/* Step 3. deadline: absolute ns, or -1. Returns w->code: what the claimer
 * set, -ETIMEDOUT or -ECANCELED. */
int coru__waiter_block(struct coru__waiter *w, int64_t deadline);
/* Step 3 without a timer and without registering for cancellation: only
 * the party that holds w (the completion of an io_uring op whose buffer
 * and struct are on the waiter's stack) can wake it, so the waiter cannot
 * return while that party still uses it. A coru_cancel meanwhile only
 * sets the sticky flag, which the waiter's next wait sees. Returns
 * w->code as set by the claimer. */
int coru__waiter_block_uncancellable(struct coru__waiter *w);

/* Claims the wait; true for exactly one caller per wait. Call with the
 * lock through which w was found held. */
static inline bool coru__waiter_claim(struct coru__waiter *w)
{
    int zero = 0;
    /* acq_rel: orders the claimer's later writes (code, data) after the
     * claim, and pairs with other claimers */
    return atomic_compare_exchange_strong_explicit(&w->done, &zero, 1, memory_order_acq_rel,
                                                   memory_order_relaxed);
}
/* Wakes a claimed waiter with its result. */
void coru__waiter_wake(struct coru__waiter *w, int code, int fired);

static inline void coru__wnode_init(struct coru__wnode *n, struct coru__waiter *w, void *data, int idx)
{
    n->next = n->prev = NULL;
    n->w = w;
    n->data = data;
    n->idx = idx;
    n->linked = false;
}

static inline void coru__waitq_push(struct coru__waitq *q, struct coru__wnode *n)
{
    n->next = NULL;
    n->prev = q->tail;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    n->linked = true;
}

static inline void coru__waitq_unlink(struct coru__waitq *q, struct coru__wnode *n)
{
    if (!n->linked) return;
    if (n->prev)
        n->prev->next = n->next;
    else
        q->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        q->tail = n->prev;
    n->next = n->prev = NULL;
    n->linked = false;
}

/* Step 4 for node n of queue q, guarded by l. */
static inline void coru__wnode_done(struct coru__lock *l, struct coru__waitq *q, struct coru__wnode *n)
{
    if (n->w->fired == n->idx) return; /* completed through n: unlinked by the claimer */
    coru__lock(l);
    coru__waitq_unlink(q, n);
    coru__unlock(l);
}

/* Pops nodes until one whose waiter this call claims; nodes of waiters
 * already claimed elsewhere are unlinked and skipped. NULL when none. */
static inline struct coru__wnode *coru__waitq_claim(struct coru__waitq *q)
{
    struct coru__wnode *n;
    while ((n = q->head)) {
        coru__waitq_unlink(q, n);
        if (coru__waiter_claim(n->w)) return n;
    }
    return NULL;
}

/* Whether a claimable waiter is queued (skipping claimed ones, without
 * unlinking). */
static inline bool coru__waitq_ready(const struct coru__waitq *q)
{
    for (struct coru__wnode *n = q->head; n; n = n->next)
        if (!atomic_load_explicit(&n->w->done, memory_order_acquire)) return true;
    return false;
}

#endif
