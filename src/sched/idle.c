/* Idling and waking: spinners, sleepers, the idle list and the watchdog.
 *
 * Invariants:
 *   - A worker is on the idle list (idle_listed) from I1 until a waker or
 *     it itself unlists it, all under idle_lock; nidle counts the list.
 *     Only the worker itself sleeps on its engine, and a waker wakes it
 *     under idle_lock, so the worker cannot leave its wait and destroy
 *     its engine while a wake is being posted.
 *   - nspinning counts workers that search for others' work (spinning).
 *     A woken worker was counted by its waker; a worker unlisted by
 *     coru__inbox_give (handed) is not counted: it has work of its own.
 *   - A sleeping worker's idle_at is INT64_MAX (it is not saturated).
 *
 * Idling (no lost wake-up). A worker out of work first spins (steals,
 * polls the global queue) if fewer than half the busy workers already
 * spin; then it goes idle:
 *   I1. lists itself idle and nidle++ (under idle_lock),
 *   I2. if it was spinning, nspinning-- (seq_cst),
 *   I3. seq_cst fence, then checks every queue once more,
 *   I4. sleeps in its engine until a waker unlists it.
 * Whoever makes work runnable where another worker could take it:
 *   S1. publishes it (deque push or global queue),
 *   S2. seq_cst fence, then reads nidle and nspinning,
 *   S3. if nidle > 0 and nspinning == 0, claims the one spinner slot
 *       (CAS nspinning 0 -> 1), unlists an idle worker and wakes it.
 * The fences order I1/I2 before I3's loads and S1 before S2's loads, so
 * either I3 sees the work or S2 sees the idle worker with no spinner. A
 * woken worker starts spinning (the waker counted it); a spinner that
 * finds work stops spinning and, if it was the last, wakes another
 * (S3), so bursts fan out one worker at a time, never a thundering herd.
 */
#include <errno.h>
#include <pthread.h>

#include "io/engine.h"
#include "sched/rt.h"

#define TRIM_PERIOD_NS 10000000 /* idle stack trimming: at most every 10 ms */
#define TRIM_BATCH 256

/* S2-S3 of the idling protocol: wake one idle worker if nobody spins. */
void coru__notify(void)
{
    atomic_thread_fence(memory_order_seq_cst); /* S2: orders the publish (S1)
                                                  before the loads below;
                                                  pairs with the fence in I3 */
    if (atomic_load_explicit(&coru__rt.nidle, memory_order_relaxed) == 0) return;
    if (atomic_load_explicit(&coru__rt.nspinning, memory_order_relaxed) != 0) return;
    unsigned zero = 0;
    if (!atomic_compare_exchange_strong_explicit(&coru__rt.nspinning, &zero, 1,
                                                 memory_order_seq_cst, memory_order_relaxed))
        return; /* someone else is already searching */
    pthread_mutex_lock(&coru__rt.idle_lock);
    struct coru__worker *t = coru__rt.idle_head;
    if (t) {
        coru__rt.idle_head = t->idle_next;
        t->idle_listed = false;
        atomic_fetch_sub_explicit(&coru__rt.nidle, 1, memory_order_seq_cst);
        /* Wake under the lock: t cannot leave its wait (it re-checks
         * idle_listed under this lock) and so cannot destroy its engine
         * before this wake is posted. */
        coru__engine_wake(t->eng);
    }
    pthread_mutex_unlock(&coru__rt.idle_lock);
    if (!t) atomic_fetch_sub_explicit(&coru__rt.nspinning, 1, memory_order_seq_cst);
}

void coru__stop_spinning(struct coru__worker *w)
{
    w->spinning = false;
    /* seq_cst: part of the idling protocol; if we were the last spinner,
     * hand the search on (there may be more work than we took). */
    if (atomic_fetch_sub_explicit(&coru__rt.nspinning, 1, memory_order_seq_cst) == 1) coru__notify();
}

/* A spinner found work of its own (its engine completed something): it
 * stops spinning without waking the next worker, since what it found is
 * not more work for others (end_batch already woke one if the batch left
 * a backlog). The global queue, which plain threads fill and whose S3 may
 * have relied on this spinner, still gets its searcher. */
void coru__stop_spinning_local(struct coru__worker *w)
{
    w->spinning = false;
    if (atomic_fetch_sub_explicit(&coru__rt.nspinning, 1, memory_order_seq_cst) == 1 &&
        atomic_load_explicit(&coru__rt.gq_len, memory_order_relaxed) != 0)
        coru__notify();
}

/* The run is over (coru__try_stop): every worker sees `stop`, and every
 * sleeper is unlisted and woken to see it. */
void coru__stop_all(void)
{
    atomic_store_explicit(&coru__rt.stop, true, memory_order_seq_cst); /* read by
        every worker before and after it sleeps (under idle_lock) */
    pthread_mutex_lock(&coru__rt.idle_lock);
    for (struct coru__worker *t = coru__rt.idle_head; t; t = t->idle_next) {
        t->idle_listed = false;
        coru__engine_wake(t->eng);
    }
    coru__rt.idle_head = NULL;
    atomic_store_explicit(&coru__rt.nidle, 0, memory_order_seq_cst);
    pthread_mutex_unlock(&coru__rt.idle_lock);
}

/* I3's re-check, for w: 0 no work, 1 work of its own (its inbox or
 * queues; it runs it without searching further), 2 work elsewhere (it
 * searches, as a spinner). A FIFO queue is work for others only when its
 * owner is saturated (see steal): an unsaturated owner is awake and runs
 * it soon. A packing worker gave its work away and must not steal it
 * back: it takes others' deques only from a saturated owner too; other
 * work of an awake owner reaches it through coru__notify() or the
 * watchdog (coru__go_idle). */
static int any_work(struct coru__worker *w)
{
    if (atomic_load_explicit(&w->inbox_n, memory_order_relaxed)) return 1;
    if (w->lifo || coru__deque_size(&w->dq) || coru__deque_size(&w->yq)) return 1;
    if (atomic_load_explicit(&coru__rt.gq_len, memory_order_relaxed)) return 2;
    int64_t now = coru__now_ns();
    for (unsigned i = 0; i < coru__rt.n; i++) {
        struct coru__worker *v = &coru__rt.w[i];
        if (v == w) continue;
        bool sat = saturated(v, now);
        if (coru__deque_size(&v->dq) && (sat || !w->packing)) return 2;
        if ((coru__deque_size(&v->yq) || atomic_load_explicit(&v->inbox_n, memory_order_relaxed)) && sat)
            return 2;
    }
    return 0;
}

/* The watchdog's look at the other workers (coru__go_idle, every
 * SATURATED_NS while some worker is awake). A worker is stuck when it is saturated and
 * has not switched since our last look (SATURATED_NS ago): a coroutine
 * computes for long without yielding. What is queued behind it is work
 * for us (*stuck, taken by a search), and so are its due timers: a stuck
 * worker fires none, so we fire them here, and the coroutines they wake
 * run on w (only waiter timers: an io_uring op's deadline needs its own
 * ring, see timer.h). A busy worker that keeps switching is not stuck: it
 * runs its queue and its timers itself, and taking from it would only
 * split its sockets over two workers. Returns how many timers it fired;
 * w is inside a batch (wake_fifo). */
static int watch_others(struct coru__worker *w, bool *stuck)
{
    int64_t now = coru__now_ns();
    int fired = 0;
    *stuck = false;
    for (unsigned i = 0; i < coru__rt.n; i++) {
        struct coru__worker *v = &coru__rt.w[i];
        if (v == w) continue;
        uint64_t t = atomic_load_explicit(&v->tick_pub, memory_order_relaxed);
        uint64_t seen = atomic_exchange_explicit(&v->tick_mark, t, memory_order_relaxed);
        if (t != seen || !saturated(v, now)) continue;
        if (coru__deque_size(&v->dq) || coru__deque_size(&v->yq) ||
            atomic_load_explicit(&v->inbox_n, memory_order_relaxed))
            *stuck = true;
        if (coru__theap_next(&v->timers) <= now) {
            int n = coru__theap_fire(&v->timers, now, false);
            coru__stat_add(&w->st.timer_steals, (uint64_t)n);
            fired += n;
        }
    }
    return fired;
}

/* Removes w from the idle list. Caller holds idle_lock; w is listed. */
void coru__idle_unlist(struct coru__worker *w)
{
    struct coru__worker **pp = &coru__rt.idle_head;
    while (*pp != w) pp = &(*pp)->idle_next;
    *pp = w->idle_next;
    w->idle_listed = false;
    atomic_fetch_sub_explicit(&coru__rt.nidle, 1, memory_order_seq_cst);
}

/* Leaves the idle state without sleeping (more): unlists w unless a
 * waker did, and sets whether it spins. search: the work is elsewhere
 * (w looks for it as a spinner), not w's own. Unlisted by ourselves: we
 * spin, counted now, only to search. Unlisted by a notify: it already
 * counted us (its wake-up stays pending in our engine and only shortens
 * our next sleep). Unlisted by coru__inbox_give: not counted and not
 * spinning (our inbox has work). A search also ends packing: w takes others' work
 * again. */
static void leave_idle(struct coru__worker *w, bool search)
{
    pthread_mutex_lock(&coru__rt.idle_lock);
    bool listed = w->idle_listed, handed = w->handed;
    w->handed = false;
    if (listed) coru__idle_unlist(w);
    pthread_mutex_unlock(&coru__rt.idle_lock);
    bool spin = listed ? search : !handed;
    if (listed && spin) atomic_fetch_add_explicit(&coru__rt.nspinning, 1, memory_order_seq_cst);
    w->spinning = spin;
    if (search) w->packing = false;
    int64_t now = coru__now_ns();
    w->coarse_now = now;
    atomic_store_explicit(&w->idle_at, now, memory_order_relaxed);
}

/* I1-I4 of the idling protocol. Returns when there may be work: either a
 * waker unlisted us (and counted us as spinning), or the re-check in I3
 * found work, or the run is stopping. On return the worker spins. */
void coru__go_idle(struct coru__worker *w)
{
    /* Memory a burst of exits left in the stack depot goes back to the
     * OS while there is nothing else to do, a little at a time (munmap
     * and madvise stall the other workers on the mm lock): at most
     * TRIM_BATCH stacks per TRIM_PERIOD_NS per worker, when no timer of
     * this worker is armed. */
    int64_t now = coru__now_ns();
    /* Not while this worker has timers armed: sleepers about to wake will
     * want those stacks back (a burst of timers would otherwise pay for
     * munmap and then mmap again). */
    if (now - w->last_trim >= TRIM_PERIOD_NS && coru__theap_next(&w->timers) == INT64_MAX) {
        w->last_trim = now;
        coru__stack_depot_trim_to(CORU__STACK_DEPOT_KEEP, TRIM_BATCH);
    }
    pthread_mutex_lock(&coru__rt.idle_lock);
    w->idle_listed = true;
    w->idle_next = coru__rt.idle_head;
    coru__rt.idle_head = w;
    atomic_fetch_add_explicit(&coru__rt.nidle, 1, memory_order_seq_cst); /* I1 */
    pthread_mutex_unlock(&coru__rt.idle_lock);
    if (w->spinning) {
        w->spinning = false;
        atomic_fetch_sub_explicit(&coru__rt.nspinning, 1, memory_order_seq_cst); /* I2 */
    }
    atomic_thread_fence(memory_order_seq_cst); /* I3: pairs with S2 in notify */
    int work = any_work(w);
    if (!work && coru__quiescent()) coru__try_stop(); /* the last coroutine finished */
    if (work || atomic_load_explicit(&coru__rt.stop, memory_order_seq_cst)) {
        leave_idle(w, work == 2);
        return;
    }
    atomic_store_explicit(&w->idle_at, INT64_MAX, memory_order_relaxed); /* asleep: not saturated */
    for (;;) {
        /* I4: sleep until woken, or until our nearest timer. Only this
         * worker arms timers on its heap, so the deadline cannot move
         * earlier while we sleep. */
        int64_t next = coru__theap_next(&w->timers), timeout = -1;
        if (next != INT64_MAX) {
            timeout = next - coru__now_ns();
            if (timeout < 0) timeout = 0;
        }
        /* The watchdog: while another worker is awake, wake up every
         * SATURATED_NS to see whether it got stuck with work queued (a
         * coroutine computing for long delays what is queued behind it,
         * and a stuck worker polls nothing, fires no timer and notifies
         * nobody; see watch_others). Costs about a thousand wake-ups a second, only
         * while others run. */
        bool watch = atomic_load_explicit(&coru__rt.nidle, memory_order_relaxed) < coru__rt.n;
        if (watch && (timeout < 0 || timeout > SATURATED_NS)) timeout = SATURATED_NS;
        coru__stat_inc(&w->st.sleeps);
        if (!watch) atomic_fetch_add_explicit(&coru__rt.nunwatched, 1, memory_order_relaxed);
        begin_batch(w);
        int rc = coru__engine_wait(w->eng, timeout);
        if (!watch) atomic_fetch_sub_explicit(&coru__rt.nunwatched, 1, memory_order_relaxed);
        if (rc < 0) CORU_PANIC("engine wait failed: %d", rc);
        coru__engine_service(w->eng);
        /* I/O or timers made work: ours, or a stuck worker's due ones */
        int fired = rc + (next != INT64_MAX ? coru__theap_fire(&w->timers, coru__now_ns(), true) : 0);
        bool stuck = false;
        if (watch) fired += watch_others(w, &stuck);
        w->wake_fifo = false;
        bool owed = w->wake_pending; /* the batch's S2-S3, done below */
        w->wake_pending = false;
        pthread_mutex_lock(&coru__rt.idle_lock);
        bool listed = w->idle_listed, handed = w->handed;
        w->handed = false;
        if (listed && fired) {
            coru__idle_unlist(w); /* our own timers or I/O made work */
        }
        pthread_mutex_unlock(&coru__rt.idle_lock);
        if (!listed || fired) atomic_store_explicit(&w->idle_at, coru__now_ns(), memory_order_relaxed);
        if (handed) { /* unlisted by coru__inbox_give: its work is in our inbox */
            w->packing = false;
            return;
        }
        if (!listed) {
            w->spinning = true; /* counted by the notify that unlisted us;
                                   finding work, we hand the search on */
            w->packing = false;
            return;
        }
        if (fired) {
            /* Woken by our own completions: we run them, not as a spinner
             * (a spinner that finds work wakes the next worker: for a
             * server whose each worker wakes for its own sockets that
             * would be a wake-up chain per request), or pack them onto a
             * lower worker. Another worker is woken only if the batch
             * left a backlog. */
            if (coru__pack_handoff(w)) return; /* pack.c: now packing */
            w->packing = false;
            if (owed && batch_wants_help(w, coru__deque_size(&w->yq))) coru__notify();
            return;
        }
        if (stuck) {
            leave_idle(w, true);
            return;
        }
        /* Still listed: a stale wake-up, or a timer another worker's
         * coroutine disarmed. Sleep again. */
    }
}
