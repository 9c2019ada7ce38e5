/* Blocking and waking one waiter: parks a coroutine (with an optional
 * deadline and cancellation), or blocks a plain thread on a futex. See
 * waiter.h for the protocol. */
#include "sched/waiter.h"

#include <errno.h>

#include "sched/chaos.h"
#include "sched/dump.h"
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int coru__waiter_init(struct coru__waiter *w)
{
    if (coru__gen_depth > 0) return -EPERM;
    w->co = coru__co_self();
    atomic_init(&w->done, 0);
    atomic_init(&w->futex, 0);
    w->code = 0;
    w->fired = -1;
    coru__timer_init(&w->tm, w, NULL);
    if (w->co) {
        /* acquire: pairs with the release in coru_cancel */
        if (atomic_load_explicit(&w->co->cancelled, memory_order_acquire)) return -ECANCELED;
        coru__park_prepare(w->co);
    }
    return 0;
}

void coru__waiter_abort(struct coru__waiter *w)
{
    if (w->co) coru__park_cancel(w->co);
}

void coru__waiter_wake(struct coru__waiter *w, int code, int fired)
{
    w->code = code;
    w->fired = fired;
    if (w->co) {
        coru__ready(w->co); /* its release publishes code, fired and data */
    } else {
        /* Take the address first: once futex is 1 the thread may return
         * and its frame be reused; a futex wake on a stale address only
         * causes a spurious wake-up, which every futex waiter tolerates. */
        _Atomic uint32_t *f = &w->futex;
        atomic_store_explicit(f, 1, memory_order_release); /* pairs with the acquire in thread_block */
        syscall(SYS_futex, f, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
}

static int thread_block_(struct coru__waiter *w, int64_t deadline);

/* A plain thread blocked in a coru call: the deadlock report must not
 * fire meanwhile (it may wake coroutines when it returns), and any
 * object a plain thread has blocked on may be woken by one (monitor.c). */
static int thread_block(struct coru__waiter *w, int64_t deadline)
{
    atomic_store_explicit(&coru__ext_waited, true, memory_order_relaxed);
    atomic_fetch_add_explicit(&coru__ext_blocked, 1, memory_order_relaxed);
    int rc = thread_block_(w, deadline);
    atomic_fetch_sub_explicit(&coru__ext_blocked, 1, memory_order_relaxed);
    return rc;
}

static int thread_block_(struct coru__waiter *w, int64_t deadline)
{
    /* acquire: pairs with the release in coru__waiter_wake */
    while (atomic_load_explicit(&w->futex, memory_order_acquire) == 0) {
        struct timespec ts, *tsp = NULL;
        if (coru__dl_set(deadline)) {
            /* (a deadline near INT64_MIN would overflow the subtraction) */
            int64_t left = coru__dl_passed(deadline) ? 0 : deadline - coru__now_ns();
            if (left <= 0) {
                if (coru__waiter_claim(w)) return w->code = -ETIMEDOUT;
                deadline = -1; /* a waker won: wait for its wake */
                continue;
            }
            ts.tv_sec = left / 1000000000;
            ts.tv_nsec = left % 1000000000;
            tsp = &ts;
        }
        syscall(SYS_futex, &w->futex, FUTEX_WAIT_PRIVATE, 0, tsp, NULL, 0);
    }
    return w->code;
}

int coru__waiter_block(struct coru__waiter *w, int64_t deadline)
{
    struct coru_co *co = w->co;
    if (!co) return thread_block(w, deadline);
    if (coru__dl_set(deadline)) {
        int64_t now = coru__now_ns();
        if (deadline <= now) {
            if (coru__waiter_claim(w)) coru__waiter_wake(w, -ETIMEDOUT, -1);
        } else {
            w->tm.when = deadline;
            /* The owner worker fires it; we run on it until we park. */
            if (coru__timer_arm(coru__worker_timers(), &w->tm, now) && coru__waiter_claim(w))
                coru__waiter_wake(w, -ENOMEM, -1);
        }
    }
    coru__lock(&co->wait_lock);
    co->waiting = w;
    if (atomic_load_explicit(&co->cancelled, memory_order_relaxed) && coru__waiter_claim(w))
        coru__waiter_wake(w, -ECANCELED, -1);
    coru__unlock(&co->wait_lock);

    coru__reg_parking(&co->reg, deadline);
    coru__chaos_delay(); /* test builds: registered, not yet parked */
    coru__park();

    coru__lock(&co->wait_lock);
    co->waiting = NULL;
    coru__unlock(&co->wait_lock);
    coru__timer_disarm(&w->tm); /* a no-op unless armed */
    /* test builds: no lock held, RUNNING again. Not after a timer's wake:
     * those resume in deadline order (coru.h, "Time"). */
    if (w->code != -ETIMEDOUT) coru__chaos_yield();
    return w->code;
}

int coru__waiter_block_uncancellable(struct coru__waiter *w)
{
    if (!w->co) return thread_block(w, -1);
    /* No co->waiting, no timer: the one holder of w is the one waker, and
     * coru__park returns only after its coru__ready (whose acq_rel
     * exchange publishes what it wrote before waking us). */
    coru__reg_parking(&w->co->reg, -1);
    coru__park();
    return w->code;
}
