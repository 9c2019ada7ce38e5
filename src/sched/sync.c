/* Synchronisation objects: mutex, condition variable, semaphore and wait
 * group. They park the calling coroutine (never its worker), or block a
 * plain thread on a futex, through the one blocking mechanism of
 * waiter.h.
 *
 * Invariants:
 *   - Every field of an object is guarded by its `lock`, a spinlock that
 *     is never held across a park. Queue nodes live on the waiters'
 *     stacks; a node stays linked at most until its waiter's call
 *     returns (waiter.h, step 4), and the waiter unlinks it under the
 *     same lock, so a waker holding the lock never sees a dead node.
 *   - Mutex: `locked` is true while someone owns it. Unlock with a
 *     claimable waiter queued passes ownership straight to it (`locked`
 *     stays true; the woken waiter returns 0 owning the mutex), so there
 *     is no barging and hand-off is FIFO. A waiter queues only while the
 *     mutex is locked, and unlock clears `locked` only when
 *     coru__waitq_claim found no claimable waiter (having emptied the
 *     queue), hence: !locked => no claimable waiter is queued.
 *   - Semaphore: a release hands its unit to a claimable waiter if there
 *     is one, else increments `count`; a waiter queues only while
 *     count == 0. Hence: count > 0 => no claimable waiter is queued.
 *   - Wait group: the add that brings `count` to 0 claims every queued
 *     waiter; a waiter queues only while count != 0. Hence:
 *     count == 0 => no claimable waiter is queued.
 *   - Lock order: cond_wait holds c->lock, then m->lock (to queue on c
 *     and release m in one step). Nothing takes a cond's lock while
 *     holding a mutex's, so the nesting cannot deadlock.
 *
 * No lost wake-up, no double wake:
 *   1. A waiter checks the state (locked, count) and queues its node in
 *      one critical section of the object's lock. A waker changes the
 *      state and looks for a waiter in one critical section of the same
 *      lock. So either the waker ran first (the waiter sees the new
 *      state and does not park) or the waiter's node is there to be
 *      found.
 *   2. Exactly one of the waker, the deadline timer and coru_cancel
 *      claims a waiter (coru__waiter_claim). A waker whose claim fails
 *      skips that node (coru__waitq_claim), so ownership, a unit or a
 *      signal is never given to a waiter that is leaving with -ETIMEDOUT
 *      or -ECANCELED; it goes to the next waiter, or back to the object.
 *   3. The winner wakes the waiter once, after the state change; the
 *      wake's release (coru__ready's exchange, or the futex store)
 *      publishes everything written before it, including the data the
 *      previous owner of a mutex wrote under it.
 *   4. Wakes happen after the object's lock is dropped: the woken waiter
 *      cannot return (and free its node) before it is woken, and the
 *      waker never touches the object after its unlock, so a woken
 *      waiter may destroy the object at once.
 *   For a cond, the waiter queues on c before it releases m (step
 *   "lock order" above), so a signal sent by anyone who changed the
 *   predicate under m after the waiter released it finds the waiter.
 *
 * Cancellation and generator bodies: the calls that may park return
 * -EPERM in a generator body even when they would not block, as channels
 * do. Cancellation is checked only when a call would actually park
 * (coru__waiter_init): a cancelled coroutine never parks again, but can
 * still take a free mutex or an available unit to clean up.
 */
#include "fail.h"
#include "sched/sync.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common.h"
#include "sched/lock.h"
#include "sched/sched.h"
#include "sched/waiter.h"

struct coru_mutex {
    struct coru__lock lock;
    bool locked;          /* owned by someone; lock */
    struct coru__waitq q; /* lockers, FIFO; lock */
};

struct coru_cond {
    struct coru__lock lock;
    struct coru__waitq q; /* waiters, FIFO; lock */
};

#define SEMA_MAX (1u << 31)

struct coru_sema {
    struct coru__lock lock;
    unsigned count;       /* 0..SEMA_MAX; lock */
    struct coru__waitq q; /* acquirers, FIFO; lock */
};

struct coru_waitgroup {
    struct coru__lock lock;
    long count;           /* >= 0; lock */
    struct coru__waitq q; /* waiters; lock */
};

/* ------------------------------------------------------------ helpers */

/* The slow path of every blocking call. The caller holds `l` (the lock
 * guarding q) and has found that it must wait; this releases `l`, parks
 * until a waker claims the wait (its code, 0), the deadline passes
 * (-ETIMEDOUT) or the coroutine is cancelled (-ECANCELED), and unlinks
 * the node before returning. Also -ECANCELED at once for a coroutine
 * already cancelled. */
static int wait_on(struct coru__lock *l, struct coru__waitq *q, int64_t deadline, int kind, const void *obj)
{
    struct coru__waiter w;
    struct coru__wnode n;
    int rc = coru__waiter_init(&w);
    if (rc) {
        coru__unlock(l);
        return rc;
    }
    if (coru__dl_passed(deadline)) {
        coru__waiter_abort(&w);
        coru__unlock(l);
        return -ETIMEDOUT;
    }
    coru__waiter_on(&w, kind, obj, 0, false);
    coru__wnode_init(&n, &w, NULL, 0);
    coru__waitq_push(q, &n);
    coru__unlock(l);
    rc = coru__waiter_block(&w, deadline);
    coru__wnode_done(l, q, &n); /* still linked if the timer or a cancel won */
    return rc;
}

/* With the lock of q held: claims every claimable waiter, unlinking them,
 * and returns them as a list through `next` (the waiters are blocked until
 * woken, so nobody else reads their nodes meanwhile). */
static struct coru__wnode *claim_all(struct coru__waitq *q)
{
    struct coru__wnode *list = NULL, *n;
    while ((n = coru__waitq_claim(q))) {
        n->next = list;
        list = n;
    }
    return list;
}

/* After dropping the lock: wakes a claim_all list with `code`. Each
 * node's fields are read before its waiter is woken (it may return and
 * free the node right after). */
static void wake_all(struct coru__wnode *n, int code)
{
    while (n) {
        struct coru__wnode *next = n->next;
        coru__waiter_wake(n->w, code, n->idx);
        n = next;
    }
}

/* Wakes one claimed node (or none) after the lock is dropped. */
static void wake_one(struct coru__wnode *n, int code)
{
    if (n) coru__waiter_wake(n->w, code, n->idx);
}

static size_t count_ready(struct coru__lock *l, const struct coru__waitq *q)
{
    size_t k = 0;
    coru__lock(l);
    for (const struct coru__wnode *n = q->head; n; n = n->next)
        /* relaxed: a snapshot count for tests; nothing is read through it */
        if (!atomic_load_explicit(&n->w->done, memory_order_relaxed)) k++;
    coru__unlock(l);
    return k;
}

/* A destroyed object must have no call in progress: a linked node means
 * one (its waiter has not returned), and it would touch freed memory. */
static void check_idle(struct coru__lock *l, const struct coru__waitq *q, const char *func)
{
    coru__lock(l);
    bool busy = q->head != NULL;
    coru__unlock(l);
    if (busy) coru__panic(func, "destroyed while a coroutine or thread waits on it");
}

/* ------------------------------------------------------------ mutex */

int coru_mutex_create(coru_mutex **out)
{
    if (!out) return -EINVAL;
    struct coru_mutex *m = coru__calloc(1, sizeof *m);
    if (!m) return -ENOMEM;
    coru__lock_init(&m->lock);
    *out = m;
    return 0;
}

void coru_mutex_destroy(coru_mutex *m)
{
    if (!m) return;
    check_idle(&m->lock, &m->q, __func__);
    free(m);
}

int coru_mutex_lock_dl(coru_mutex *m, int64_t deadline)
{
    if (!m) return -EINVAL;
    if (coru__gen_depth > 0) return -EPERM;
    coru__lock(&m->lock);
    if (!m->locked) {
        m->locked = true;
        coru__unlock(&m->lock);
        return 0;
    }
    /* 0 means unlock handed us the mutex: `locked` stayed true for us */
    return wait_on(&m->lock, &m->q, deadline, CORU__W_MUTEX, m);
}

int coru_mutex_lock(coru_mutex *m)
{
    return coru_mutex_lock_dl(m, CORU_NEVER);
}

int coru_mutex_trylock(coru_mutex *m)
{
    if (!m) return -EINVAL;
    coru__lock(&m->lock);
    int rc = -EBUSY;
    if (!m->locked) {
        m->locked = true;
        rc = 0;
    }
    coru__unlock(&m->lock);
    return rc;
}

/* With m->lock held and m locked: passes ownership to the first claimable
 * waiter (returned, to be woken with 0 after the unlock), or frees m. */
static struct coru__wnode *release_locked(coru_mutex *m)
{
    struct coru__wnode *n = coru__waitq_claim(&m->q);
    if (!n) m->locked = false;
    return n;
}

int coru_mutex_unlock(coru_mutex *m)
{
    if (!m) return -EINVAL;
    coru__lock(&m->lock);
    if (!m->locked) {
        coru__unlock(&m->lock);
        return -EPERM;
    }
    struct coru__wnode *n = release_locked(m);
    coru__unlock(&m->lock);
    wake_one(n, 0);
    return 0;
}

/* Takes m for coru_cond_wait's return, which must hold m whatever the
 * wait returned: no deadline, and cancellation ignored. Going through
 * coru__waiter_block would not do: it registers the wait with
 * coru_cancel, and for a coroutine already cancelled it claims the wait
 * itself with -ECANCELED. So a coroutine parks here directly with the
 * parking protocol of sched.h, findable only through m's queue; the
 * only waker is an unlock, which hands m over with code 0. (A plain
 * thread cannot be cancelled and blocks as usual.) The cost: a cancelled
 * coroutine can stay parked here as long as someone else holds m, as
 * with pthread_cond_wait's reacquire. */
static void relock(coru_mutex *m)
{
    coru__lock(&m->lock);
    if (!m->locked) {
        m->locked = true;
        coru__unlock(&m->lock);
        return;
    }
    struct coru__waiter w;
    struct coru__wnode n;
    /* coru__waiter_init fills w completely before it checks for
     * cancellation; on -ECANCELED only the park_prepare is left to do. */
    int rc = coru__waiter_init(&w);
    if (rc == -ECANCELED)
        coru__park_prepare(w.co);
    else if (rc)
        CORU_PANIC("waiter_init: %d", rc); /* cond_wait checked for -EPERM */
    coru__waiter_on(&w, CORU__W_MUTEX, m, 0, false);
    coru__wnode_init(&n, &w, NULL, 0);
    coru__waitq_push(&m->q, &n);
    coru__unlock(&m->lock);
    if (w.co) {
        coru__reg_parking(&w.co->reg, -1);
        coru__park();
        rc = w.code; /* coru__ready's acq_rel made the unlocker's write visible */
    } else {
        rc = coru__waiter_block(&w, CORU_NEVER);
    }
    if (rc != 0) CORU_PANIC("relock woken with %d", rc);
    /* n was unlinked by the unlocker's claim (no deadline, no cancel). */
}

/* ------------------------------------------------------------ cond */

int coru_cond_create(coru_cond **out)
{
    if (!out) return -EINVAL;
    struct coru_cond *c = coru__calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    coru__lock_init(&c->lock);
    *out = c;
    return 0;
}

void coru_cond_destroy(coru_cond *c)
{
    if (!c) return;
    check_idle(&c->lock, &c->q, __func__);
    free(c);
}

int coru_cond_wait_dl(coru_cond *c, coru_mutex *m, int64_t deadline)
{
    if (!c || !m) return -EINVAL;
    struct coru__waiter w;
    struct coru__wnode n;
    coru__lock(&c->lock);
    int rc = coru__waiter_init(&w);
    if (rc) { /* -EPERM or -ECANCELED: m was never released */
        coru__unlock(&c->lock);
        return rc;
    }
    /* Queue on c and release m in one critical section of c->lock (lock
     * order c, then m): a signal can only come after we are queued. */
    coru__lock(&m->lock);
    if (!m->locked) {
        coru__unlock(&m->lock);
        coru__unlock(&c->lock);
        coru__waiter_abort(&w);
        return -EPERM; /* misuse: the caller does not hold m */
    }
    bool expired = coru__dl_passed(deadline);
    if (!expired) {
        coru__waiter_on(&w, CORU__W_COND, c, 0, false);
        coru__wnode_init(&n, &w, NULL, 0);
        coru__waitq_push(&c->q, &n);
    }
    coru__unlock(&c->lock);
    if (expired) {
        /* past deadline: nothing to wait for, and m is still ours */
        coru__unlock(&m->lock);
        coru__waiter_abort(&w);
        return -ETIMEDOUT;
    }
    struct coru__wnode *h = release_locked(m);
    coru__unlock(&m->lock);
    wake_one(h, 0);

    rc = coru__waiter_block(&w, deadline);
    coru__wnode_done(&c->lock, &c->q, &n); /* still linked if the timer or a cancel won */
    relock(m);
    return rc;
}

int coru_cond_wait(coru_cond *c, coru_mutex *m)
{
    return coru_cond_wait_dl(c, m, CORU_NEVER);
}

int coru_cond_signal(coru_cond *c)
{
    if (!c) return -EINVAL;
    coru__lock(&c->lock);
    struct coru__wnode *n = coru__waitq_claim(&c->q);
    coru__unlock(&c->lock);
    wake_one(n, 0);
    return 0;
}

int coru_cond_broadcast(coru_cond *c)
{
    if (!c) return -EINVAL;
    coru__lock(&c->lock);
    struct coru__wnode *list = claim_all(&c->q);
    coru__unlock(&c->lock);
    wake_all(list, 0);
    return 0;
}

/* ------------------------------------------------------------ sema */

int coru_sema_create(coru_sema **out, unsigned initial)
{
    if (!out || initial > SEMA_MAX) return -EINVAL;
    struct coru_sema *s = coru__calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    coru__lock_init(&s->lock);
    s->count = initial;
    *out = s;
    return 0;
}

void coru_sema_destroy(coru_sema *s)
{
    if (!s) return;
    check_idle(&s->lock, &s->q, __func__);
    free(s);
}

int coru_sema_acquire_dl(coru_sema *s, int64_t deadline)
{
    if (!s) return -EINVAL;
    if (coru__gen_depth > 0) return -EPERM;
    coru__lock(&s->lock);
    if (s->count > 0) { /* then nobody claimable is queued: no overtaking */
        s->count--;
        coru__unlock(&s->lock);
        return 0;
    }
    /* 0 means a release handed its unit to us without counting it */
    return wait_on(&s->lock, &s->q, deadline, CORU__W_SEMA, s);
}

int coru_sema_acquire(coru_sema *s)
{
    return coru_sema_acquire_dl(s, CORU_NEVER);
}

int coru_sema_try_acquire(coru_sema *s)
{
    if (!s) return -EINVAL;
    coru__lock(&s->lock);
    int rc = -EAGAIN;
    if (s->count > 0) {
        s->count--;
        rc = 0;
    }
    coru__unlock(&s->lock);
    return rc;
}

int coru_sema_release(coru_sema *s)
{
    if (!s) return -EINVAL;
    coru__lock(&s->lock);
    struct coru__wnode *n = coru__waitq_claim(&s->q);
    int rc = 0;
    if (!n) {
        if (s->count < SEMA_MAX)
            s->count++;
        else
            rc = -EOVERFLOW;
    }
    coru__unlock(&s->lock);
    wake_one(n, 0);
    return rc;
}

/* ------------------------------------------------------------ waitgroup */

int coru_waitgroup_create(coru_waitgroup **out)
{
    if (!out) return -EINVAL;
    struct coru_waitgroup *wg = coru__calloc(1, sizeof *wg);
    if (!wg) return -ENOMEM;
    coru__lock_init(&wg->lock);
    *out = wg;
    return 0;
}

void coru_waitgroup_destroy(coru_waitgroup *wg)
{
    if (!wg) return;
    check_idle(&wg->lock, &wg->q, __func__);
    free(wg);
}

int coru_waitgroup_add(coru_waitgroup *wg, long n)
{
    if (!wg) return -EINVAL;
    long next;
    coru__lock(&wg->lock);
    if (__builtin_add_overflow(wg->count, n, &next)) {
        coru__unlock(&wg->lock);
        return -EOVERFLOW;
    }
    if (next < 0) {
        coru__unlock(&wg->lock);
        return -EINVAL;
    }
    wg->count = next;
    struct coru__wnode *list = next == 0 ? claim_all(&wg->q) : NULL;
    coru__unlock(&wg->lock);
    wake_all(list, 0);
    return 0;
}

int coru_waitgroup_done(coru_waitgroup *wg)
{
    return coru_waitgroup_add(wg, -1);
}

int coru_waitgroup_wait_dl(coru_waitgroup *wg, int64_t deadline)
{
    if (!wg) return -EINVAL;
    if (coru__gen_depth > 0) return -EPERM;
    coru__lock(&wg->lock);
    if (wg->count == 0) {
        coru__unlock(&wg->lock);
        return 0;
    }
    return wait_on(&wg->lock, &wg->q, deadline, CORU__W_WAITGROUP, wg);
}

int coru_waitgroup_wait(coru_waitgroup *wg)
{
    return coru_waitgroup_wait_dl(wg, CORU_NEVER);
}

/* ------------------------------------------------------------ tests */

size_t coru__sync_mutex_waiters(coru_mutex *m)
{
    return m ? count_ready(&m->lock, &m->q) : 0;
}

size_t coru__sync_cond_waiters(coru_cond *c)
{
    return c ? count_ready(&c->lock, &c->q) : 0;
}

size_t coru__sync_sema_waiters(coru_sema *s)
{
    return s ? count_ready(&s->lock, &s->q) : 0;
}

size_t coru__sync_wg_waiters(coru_waitgroup *wg)
{
    return wg ? count_ready(&wg->lock, &wg->q) : 0;
}
