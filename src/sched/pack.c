/* Packing and handoff: worker inboxes, and woken I/O work moved to lower
 * workers.
 *
 * A worker that sleeps and wakes for a handful of completions at a time
 * pays a context switch for each, and when two such workers share a light
 * load they pay twice and also take the CPU from whatever else runs on
 * the machine. So a worker woken by its own I/O hands that work to a
 * lower-numbered worker that is not saturated and has little queued (into
 * its inbox); the coroutines' next operations then go to that worker's
 * engine (io_uring: the op is queued where the coroutine runs; epoll: the
 * registration moves down, io.c), and the giver goes back to sleep with
 * less and less in flight. Light load packs onto the first workers. Once
 * one of them is saturated, its batches wake the others (end_batch),
 * which steal and keep what they stole.
 *
 * Work woken by I/O thus stays where it was woken unless its worker is
 * saturated. A coroutine that computes for long without yielding leaves
 * its worker saturated after SATURATED_NS, and what is queued behind it
 * (FIFO queue, inbox) is then taken by another worker: one that sleeps
 * while others are awake wakes every SATURATED_NS to look (the watchdog,
 * coru__go_idle), and one that went to sleep with everybody idle is woken
 * by the next batch of two or more (batch_wants_help), so it watches too.
 * Its due timers are fired by that watchdog too (watch_others), so a
 * sleeper does not oversleep behind the computation. What such a worker
 * cannot give away is what only it can reap: the completions on its ring
 * and the deadlines of its io_uring ops wait for the computation.
 *
 * Inbox protocol (no lost work): the giver appends under the target's
 * inbox_lock and then, under idle_lock, wakes the target if it is listed
 * idle. The target lists itself idle under idle_lock before its I3
 * re-check, which reads its inbox_n. Either the giver's idle_lock section
 * comes first, and the target's later re-check sees the entries the giver
 * appended before it; or the target's comes first and the giver sees it
 * listed and wakes it. A target unlisted this way is marked `handed` and
 * not counted as spinning (it has work; a spinner that finds work would
 * wake yet another worker).
 *
 * Other invariants:
 *   - An inbox (inbox_head/tail, linked through co->next) is under its
 *     worker's inbox_lock; inbox_n is written under it and read racily as
 *     a hint (a thief's look, the owner's inline drain test, any_work).
 *   - Only the owner drains its inbox into its own queues; a thief takes
 *     from it only when its owner is saturated (sched.c, steal).
 *   - A packing worker (packing, owner only) gave its work away: it
 *     neither steals nor spins until it finds work of its own or is
 *     notified (sched.c, idle.c).
 */
#include <pthread.h>

#include "io/engine.h"
#include "sched/lock.h"
#include "sched/rt.h"

#define PACK_MAX 64 /* a pack target has fewer than this queued */

/* Appends cos[0..n) to t's inbox, in order, and wakes t if it sleeps
 * (the inbox protocol above). Any worker: packing (coru__pack_handoff)
 * and migrations (sched.c). */
void coru__inbox_give(struct coru__worker *t, struct coru_co **cos, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) cos[i]->next = cos[i + 1];
    cos[n - 1]->next = NULL;
    coru__lock(&t->inbox_lock);
    if (t->inbox_tail)
        t->inbox_tail->next = cos[0];
    else
        t->inbox_head = cos[0];
    t->inbox_tail = cos[n - 1];
    atomic_store_explicit(&t->inbox_n, atomic_load_explicit(&t->inbox_n, memory_order_relaxed) + n,
                          memory_order_relaxed);
    coru__unlock(&t->inbox_lock);
    pthread_mutex_lock(&coru__rt.idle_lock);
    if (t->idle_listed) {
        coru__idle_unlist(t);
        t->handed = true; /* not counted as spinning: it has work */
        coru__engine_wake(t->eng); /* under the lock, as in coru__notify() */
    }
    pthread_mutex_unlock(&coru__rt.idle_lock);
}

/* Up to max of v's oldest inbox entries into out[]: a thief's share of a
 * saturated worker's inbox, or the owner draining its own. */
size_t coru__inbox_take(struct coru__worker *v, void **out, size_t max)
{
    if (!atomic_load_explicit(&v->inbox_n, memory_order_relaxed)) return 0;
    size_t got = 0;
    coru__lock(&v->inbox_lock);
    while (got < max && v->inbox_head) {
        struct coru_co *co = v->inbox_head;
        v->inbox_head = co->next;
        co->next = NULL;
        out[got++] = co;
    }
    if (!v->inbox_head) v->inbox_tail = NULL;
    atomic_store_explicit(&v->inbox_n, atomic_load_explicit(&v->inbox_n, memory_order_relaxed) - got,
                          memory_order_relaxed);
    coru__unlock(&v->inbox_lock);
    return got;
}

/* Moves w's inbox to its yield queue (FIFO: they are already late).
 * Owner only; inbox_drain (rt.h) calls it when inbox_n says there is
 * something. */
void coru__inbox_drain(struct coru__worker *w)
{
    void *buf[DEQUE_CAP / 2];
    size_t n, pushed = 0;
    while ((n = coru__inbox_take(w, buf, DEQUE_CAP / 2))) {
        for (size_t i = 0; i < n; i++) push_local(w, &w->yq, buf[i]);
        pushed += n;
    }
    if (pushed && batch_wants_help(w, coru__deque_size(&w->yq))) coru__notify();
}

/* The worker w's woken I/O work should go to: the lowest-numbered worker
 * below it that is not saturated and has fewer than PACK_MAX queued, or
 * NULL. A sleeping target is woken (one context switch, which w's own run
 * would have cost too), so the work converges on the lowest workers.
 * Racy reads: a wrong answer costs speed, never work. */
static struct coru__worker *pack_target(struct coru__worker *w)
{
    int64_t now = coru__now_ns();
    for (unsigned i = 0; i < w->id; i++) {
        struct coru__worker *t = &coru__rt.w[i];
        if (saturated(t, now)) continue;
        size_t q = coru__deque_size(&t->yq) + coru__deque_size(&t->dq) +
                   atomic_load_explicit(&t->inbox_n, memory_order_relaxed);
        if (q < PACK_MAX) return t;
    }
    return NULL;
}

/* Hands w's FIFO queue (what its own I/O and timers just woke) to
 * pack_target's worker: whether it did; w is then packing. Owner only,
 * from coru__go_idle once its own completions woke it. */
bool coru__pack_handoff(struct coru__worker *w)
{
    struct coru__worker *t = pack_target(w);
    if (!t || !coru__deque_size(&w->yq)) return false;
    void *buf[DEQUE_CAP];
    size_t n;
    while ((n = coru__deque_grab(&w->yq, buf, DEQUE_CAP))) {
        coru__inbox_give(t, (struct coru_co **)buf, n);
        coru__stat_add(&w->st.handoffs, n);
    }
    w->packing = true;
    return true;
}
