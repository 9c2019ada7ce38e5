/* The M:N scheduler: workers, run queues, stealing, idling and waking.
 *
 * Invariants:
 *   - A runnable coroutine is in exactly one place: a worker's run-next
 *     slot (`lifo`, owner only), one of a worker's two deques (`dq`: new
 *     and woken work, run newest first; `yq`: yielded coroutines and
 *     batches from the global queue, run oldest first), or the global
 *     queue.
 *     It is taken from there by exactly one worker (deque grab is a CAS;
 *     the global queue is under gq_lock).
 *   - A coroutine is enqueued by its own worker only after it switched
 *     out (the post-switch actions in finish_switch), or by a waker after the
 *     park was committed (see sched.h), so no two threads ever run it.
 *   - The run stops when the coroutines spawned equal those finished,
 *     and not before: no coroutine is dropped. Each worker counts its own
 *     spawns and finishes (plain counters, no shared cache line on the
 *     hot path); an idle worker sums them (quiescent()).
 *
 * Ownership map:
 *   rt.gq_*          gq_lock (a spinlock: never held across a syscall)
 *   rt.idle_head, worker.idle_listed, worker.idle_next      idle_lock
 *   rt.nidle         written under idle_lock, read anywhere (seq_cst)
 *   rt.nspinning     any thread, seq_cst RMW
 *   rt.nunwatched    each worker counts itself in and out (relaxed hint)
 *   worker.*         its own thread, except dq/yq (grab: anyone) and st
 *                    (read: anyone)
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
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/engine.h"
#include "sched/lock.h"
#include "sched/sched.h"

#define DEQUE_CAP 256   /* the work deque */
#define YQ_CAP 4096     /* the FIFO queue: room for a whole batch of completions
                           from a busy engine, which would otherwise spill to
                           the global queue and wait behind newer batches */
#define GQ_POLL_INTERVAL 61 /* ticks between global queue checks */
#define LIFO_MAX_STREAK 3   /* run-next uses in a row before the deque */
#define TRIM_PERIOD_NS 10000000 /* idle stack trimming: at most every 10 ms */
#define TRIM_BATCH 256
#define TIMER_INTERVAL 16  /* ticks between checks for due timers */
#define OLDEST_INTERVAL 1024 /* ticks between runs of the oldest deque entry */
#define SPIN_NS 3000      /* how long an idle worker looks for work before sleeping */

/* Packing and helping (see the packing section): a worker that has had no
 * idle moment for SATURATED_NS is saturated; only then do its batches of
 * wake-ups wake another worker and its FIFO queue get stolen from, and
 * only an unsaturated worker with fewer than PACK_MAX queued takes the
 * I/O work of higher workers. */
#define SATURATED_NS 1000000
#define PACK_MAX 64

enum { POST_NONE = 0, POST_YIELD, POST_PARK, POST_EXIT, POST_MIGRATE };
enum { EXT_NOT_YET = 0, EXT_OPEN, EXT_CLOSED };

static struct {
    /* read-mostly */
    _Atomic int state; /* 0 idle, 1 running */
    unsigned n;
    struct coru__worker *w;
    _Atomic bool stop;
    _Atomic int start_err;
    pthread_barrier_t start_bar, open_bar, stop_bar;

    /* Global queue: a growable ring of pointers (no walking of cold
     * coroutine structs), under gq_lock. */
    CORU_ALIGNED_CL struct coru__lock gq_lock;
    struct coru_co **gq_buf;
    size_t gq_cap, gq_head;
    _Atomic size_t gq_len; /* written under gq_lock; read racily as a hint */

    CORU_ALIGNED_CL pthread_mutex_t idle_lock;
    struct coru__worker *idle_head;
    _Atomic unsigned nidle;

    CORU_ALIGNED_CL _Atomic unsigned nspinning;
    _Atomic unsigned nunwatched; /* workers asleep without the watchdog;
                                    each counts itself (a hint) */

    /* coroutines spawned from plain threads (and coru_run's main), for
     * the termination count; see quiescent() */
    CORU_ALIGNED_CL _Atomic uint64_t ext_spawned;
    /* Spawns from plain threads against the end of the run (see
     * coru__ext_spawn_begin): ext_open is EXT_NOT_YET until the workers
     * have started, EXT_OPEN while plain threads may spawn, EXT_CLOSED
     * once the run has decided to stop; ext_lock guards it. */
    pthread_mutex_t ext_lock;
    int ext_open;

    pthread_mutex_t stats_lock; /* guards w[] lifetime against coru_stats */
    struct coru_stats last;
} rt = {
    .idle_lock = PTHREAD_MUTEX_INITIALIZER,
    .ext_lock = PTHREAD_MUTEX_INITIALIZER,
    .stats_lock = PTHREAD_MUTEX_INITIALIZER,
    .last = {.engine = "none"},
};

static __thread struct coru__worker *tls_w __attribute__((tls_model("initial-exec")));

/* Coroutines migrate between threads, so a TLS address must never be
 * reused across a switch. These accessors are out of line and opaque
 * (the empty asm makes them impure), so every call reads the TLS of the
 * thread it runs on. */
__attribute__((noinline)) struct coru__worker *coru__worker_self(void)
{
    struct coru__worker *w = tls_w;
    __asm__ volatile("" ::: "memory");
    return w;
}

__attribute__((noinline)) struct coru_co *coru__co_self(void)
{
    struct coru__worker *w = tls_w;
    __asm__ volatile("" ::: "memory");
    return w ? w->cur : NULL;
}

struct coru__theap *coru__worker_timers(void)
{
    return &coru__worker_self()->timers;
}

int coru__can_park(void)
{
    if (!coru__co_self() || coru__gen_depth > 0) return -EPERM;
    return 0;
}

/* Whether w has had no idle moment for SATURATED_NS: then it cannot take
 * more (packing skips it), a small backlog of it is worth another worker
 * (end_batch), and its FIFO queue may be stolen from. idle_at is written
 * by the owner when it runs out of local work and when it wakes, and is
 * INT64_MAX while it sleeps (a sleeping worker is not saturated). */
static bool saturated(struct coru__worker *w, int64_t now)
{
    int64_t at = atomic_load_explicit(&w->idle_at, memory_order_relaxed);
    return at != INT64_MAX && now - at > SATURATED_NS;
}

/* Whether some worker sleeps without its watchdog (it went to sleep
 * while every other worker was idle): it would not notice this worker
 * getting stuck behind a long computation. */
static bool unwatched_sleeper(void)
{
    return atomic_load_explicit(&rt.nunwatched, memory_order_relaxed) != 0;
}

/* A batch left q coroutines queued on w: wake another worker if w is
 * saturated (it needs help now) or some sleeper has no watchdog (it
 * could not help later). */
static bool batch_wants_help(struct coru__worker *w, size_t q)
{
    return q >= 2 && (saturated(w, coru__now_ns()) || unwatched_sleeper());
}

/* ---------------------------------------------------------------- queues */

static void push_local(struct coru__worker *w, struct coru__deque *d, struct coru_co *co);

/* Global queue; any thread. Adds n coroutines, in order, at the tail, or
 * (front) ahead of everything queued: work that was already woken and
 * overflowed a FIFO queue must not wait behind a million spawns (timers
 * firing behind a spawner that had filled the queue woke up to 1.4 s
 * late, and the 300,000 stacks they held were alive at once instead of
 * the 80,000 due). */
static void gq_add(struct coru_co **cos, size_t n, bool front)
{
    coru__lock(&rt.gq_lock);
    size_t len = atomic_load_explicit(&rt.gq_len, memory_order_relaxed);
    if (len + n > rt.gq_cap) {
        size_t cap = rt.gq_cap ? rt.gq_cap : 1024;
        while (cap < len + n) cap *= 2;
        struct coru_co **nb = malloc(cap * sizeof *nb);
        if (!nb) CORU_PANIC("out of memory growing the global run queue to %zu", cap);
        for (size_t i = 0; i < len; i++) nb[i] = rt.gq_buf[(rt.gq_head + i) % rt.gq_cap];
        free(rt.gq_buf);
        rt.gq_buf = nb;
        rt.gq_cap = cap;
        rt.gq_head = 0;
    }
    size_t at = rt.gq_head + len;
    if (front) at = rt.gq_head = (rt.gq_head + rt.gq_cap - n) % rt.gq_cap;
    for (size_t i = 0; i < n; i++) rt.gq_buf[(at + i) % rt.gq_cap] = cos[i];
    /* relaxed: the hint is read racily; the lock orders the ring itself */
    atomic_store_explicit(&rt.gq_len, len + n, memory_order_relaxed);
    coru__unlock(&rt.gq_lock);
}

static void gq_push(struct coru_co **cos, size_t n) { gq_add(cos, n, false); }

/* Takes a fair share of the global queue, at most `most`: returns one
 * coroutine to run and moves the rest of the batch into w's FIFO queue.
 * Worker only. */
static struct coru_co *gq_take(struct coru__worker *w, size_t most)
{
    if (atomic_load_explicit(&rt.gq_len, memory_order_relaxed) == 0) return NULL;
    struct coru_co *batch[DEQUE_CAP / 2];
    coru__lock(&rt.gq_lock);
    size_t len = atomic_load_explicit(&rt.gq_len, memory_order_relaxed);
    size_t n = len / rt.n + 1;
    if (n > DEQUE_CAP / 2) n = DEQUE_CAP / 2;
    if (n > most) n = most;
    size_t room = YQ_CAP - coru__deque_size(&w->yq); /* owner: exact */
    if (n > room + 1) n = room + 1; /* one is returned, the rest pushed */
    if (n > len) n = len;
    for (size_t i = 0; i < n; i++) batch[i] = rt.gq_buf[(rt.gq_head + i) % rt.gq_cap];
    if (n) rt.gq_head = (rt.gq_head + n) % rt.gq_cap;
    atomic_store_explicit(&rt.gq_len, len - n, memory_order_relaxed);
    coru__unlock(&rt.gq_lock);
    if (!n) return NULL;
    /* Into the FIFO yield queue: they waited longest, and refilling the
     * LIFO work deque would bury what is already there. */
    for (size_t i = 1; i < n; i++) push_local(w, &w->yq, batch[i]);
    return batch[0];
}

/* Pushes onto one of w's deques; when full, moves half of it plus co to
 * the global queue (Go's runqputslow): to its tail, except when a batch
 * of wake-ups (timers, completions) overflows the FIFO queue: that goes
 * to the front, as it has waited already. (Not a yield's overflow: a
 * million coroutines yielding in a loop would then keep the front and
 * starve whatever waits at the tail.) Owner only. */
static void push_local(struct coru__worker *w, struct coru__deque *d, struct coru_co *co)
{
    if (likely(coru__deque_push(d, co))) return;
    void *batch[DEQUE_CAP / 2 + 1];
    size_t n = coru__deque_grab(d, batch, DEQUE_CAP / 2);
    batch[n++] = co;
    gq_add((struct coru_co **)batch, n, d == &w->yq && w->wake_fifo);
}

/* ---------------------------------------------------------------- waking */

/* S2-S3 of the idling protocol: wake one idle worker if nobody spins. */
static void notify(void)
{
    atomic_thread_fence(memory_order_seq_cst); /* S2: orders the publish (S1)
                                                  before the loads below;
                                                  pairs with the fence in I3 */
    if (atomic_load_explicit(&rt.nidle, memory_order_relaxed) == 0) return;
    if (atomic_load_explicit(&rt.nspinning, memory_order_relaxed) != 0) return;
    unsigned zero = 0;
    if (!atomic_compare_exchange_strong_explicit(&rt.nspinning, &zero, 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return; /* someone else is already searching */
    pthread_mutex_lock(&rt.idle_lock);
    struct coru__worker *t = rt.idle_head;
    if (t) {
        rt.idle_head = t->idle_next;
        t->idle_listed = false;
        atomic_fetch_sub_explicit(&rt.nidle, 1, memory_order_seq_cst);
        /* Wake under the lock: t cannot leave its wait (it re-checks
         * idle_listed under this lock) and so cannot destroy its engine
         * before this wake is posted. */
        coru__engine_wake(t->eng);
    }
    pthread_mutex_unlock(&rt.idle_lock);
    if (!t) atomic_fetch_sub_explicit(&rt.nspinning, 1, memory_order_seq_cst);
}

static void stop_spinning(struct coru__worker *w)
{
    w->spinning = false;
    /* seq_cst: part of the idling protocol; if we were the last spinner,
     * hand the search on (there may be more work than we took). */
    if (atomic_fetch_sub_explicit(&rt.nspinning, 1, memory_order_seq_cst) == 1) notify();
}

/* A spinner found work of its own (its engine completed something): it
 * stops spinning without waking the next worker, since what it found is
 * not more work for others (end_batch already woke one if the batch left
 * a backlog). The global queue, which plain threads fill and whose S3 may
 * have relied on this spinner, still gets its searcher. */
static void stop_spinning_local(struct coru__worker *w)
{
    w->spinning = false;
    if (atomic_fetch_sub_explicit(&rt.nspinning, 1, memory_order_seq_cst) == 1 &&
        atomic_load_explicit(&rt.gq_len, memory_order_relaxed) != 0)
        notify();
}

/* ---------------------------------------------------------------- packing
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
 * go_idle), and one that went to sleep with everybody idle is woken by
 * the next batch of two or more (batch_wants_help), so it watches too.
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
 * wake yet another worker). */
static void unlist_self(struct coru__worker *w);

static void inbox_give(struct coru__worker *t, struct coru_co **cos, size_t n)
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
    pthread_mutex_lock(&rt.idle_lock);
    if (t->idle_listed) {
        unlist_self(t);
        t->handed = true; /* not counted as spinning: it has work */
        coru__engine_wake(t->eng); /* under the lock, as in notify() */
    }
    pthread_mutex_unlock(&rt.idle_lock);
}

/* Up to max of v's oldest inbox entries into out[]: a thief's share of a
 * saturated worker's inbox, or the owner draining its own. */
static size_t inbox_take(struct coru__worker *v, void **out, size_t max)
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
 * Owner only. */
static void inbox_drain(struct coru__worker *w)
{
    void *buf[DEQUE_CAP / 2];
    size_t n, pushed = 0;
    while ((n = inbox_take(w, buf, DEQUE_CAP / 2))) {
        for (size_t i = 0; i < n; i++) push_local(w, &w->yq, buf[i]);
        pushed += n;
    }
    if (pushed && batch_wants_help(w, coru__deque_size(&w->yq))) notify();
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
        struct coru__worker *t = &rt.w[i];
        if (saturated(t, now)) continue;
        size_t q = coru__deque_size(&t->yq) + coru__deque_size(&t->dq) +
                   atomic_load_explicit(&t->inbox_n, memory_order_relaxed);
        if (q < PACK_MAX) return t;
    }
    return NULL;
}

static void stop_all(void)
{
    atomic_store_explicit(&rt.stop, true, memory_order_seq_cst); /* read by
        every worker before and after it sleeps (under idle_lock) */
    pthread_mutex_lock(&rt.idle_lock);
    for (struct coru__worker *t = rt.idle_head; t; t = t->idle_next) {
        t->idle_listed = false;
        coru__engine_wake(t->eng);
    }
    rt.idle_head = NULL;
    atomic_store_explicit(&rt.nidle, 0, memory_order_seq_cst);
    pthread_mutex_unlock(&rt.idle_lock);
}

/* Makes co runnable on the calling worker next (run-next slot). The
 * coroutine it displaces becomes stealable, so others may be woken. */
static void schedule_next(struct coru__worker *w, struct coru_co *co)
{
    struct coru_co *prev = w->lifo;
    w->lifo = co;
    if (prev) {
        push_local(w, &w->dq, prev);
        notify();
    }
}

void coru__ready(struct coru_co *co)
{
    /* acq_rel: release publishes what the waker wrote (a result code, a value)
     * to the coroutine; acquire pairs with the commit CAS in finish_switch, so
     * the saved registers are visible before we enqueue co. */
    int old = atomic_exchange_explicit(&co->pstate, CO_WOKEN, memory_order_acq_rel);
    if (old == CO_PARKING) return; /* finish_switch's commit will fail and requeue */
    if (unlikely(old != CO_PARKED))
        CORU_PANIC("coroutine %llu woken while not parked (state %d)", (unsigned long long)co->id, old);
    struct coru__worker *w = coru__worker_self();
    if (w) {
        coru__stat_inc(&w->st.wakeups);
        if (w->wake_fifo) {
            push_local(w, &w->yq, co); /* S1; S2-S3 once per batch: end_batch */
            w->wake_pending = true;
        } else {
            schedule_next(w, co);
        }
    } else {
        gq_push(&co, 1);
        notify();
    }
}

void coru__schedule_new(struct coru_co *co);
void coru__schedule_new(struct coru_co *co)
{
    struct coru__worker *w = coru__worker_self();
    if (w) {
        /* As Go does: the newest spawn runs next, the one it displaces
         * goes to the queue. Spawn trees then run depth first, so few
         * coroutines (and stacks) are alive at once. */
        coru__stat_inc(&w->st.spawns);
        struct coru_co *prev = w->lifo;
        w->lifo = co;
        if (prev) push_local(w, &w->dq, prev);
        notify();
        return;
    } else {
        gq_push(&co, 1);
    }
    notify();
}

/* ---------------------------------------------------------------- finding work */

static inline uint32_t rnd(struct coru__worker *w)
{
    uint32_t x = w->rng; /* xorshift32 */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return w->rng = x;
}

/* Local order: the run-next slot, then the work deque newest first
 * (depth first, as in Cilk: a spawn tree keeps few coroutines and stacks
 * alive, while thieves take the oldest, biggest pieces), then the yield
 * queue oldest first. Every GQ_POLL_INTERVAL ticks the yield queue goes
 * first, every OLDEST_INTERVAL ticks the oldest deque entry does (rarely,
 * so depth-first order mostly holds, but a busy worker's oldest work
 * still runs without a thief), and after LIFO_MAX_STREAK run-next turns
 * in a row the deque does, so two coroutines waking each other cannot
 * starve the rest. */
static struct coru_co *take_local(struct coru__worker *w)
{
    void *co;
    if (w->tick % GQ_POLL_INTERVAL == 0 && coru__deque_grab(&w->yq, &co, 1)) return co;
    if (w->tick % OLDEST_INTERVAL == 0 && coru__deque_grab(&w->dq, &co, 1)) return co;
    if (w->lifo_streak >= LIFO_MAX_STREAK) {
        w->lifo_streak = 0;
        if ((co = coru__deque_pop(&w->dq)) || coru__deque_grab(&w->yq, &co, 1)) return co;
    }
    if (w->lifo) {
        co = w->lifo;
        w->lifo = NULL;
        w->lifo_streak++;
        return co;
    }
    w->lifo_streak = 0;
    if ((co = coru__deque_pop(&w->dq))) return co;
    return coru__deque_grab(&w->yq, &co, 1) ? co : NULL;
}

/* Batches of wake-ups: due timers, I/O completions. The coroutines they
 * wake go to the FIFO yield queue, not the run-next slot, so timers due
 * together run in deadline order and completions in arrival order (LIFO
 * would let each new batch bury the previous one and starve its oldest
 * entries: the tail latency of a busy server). The notify of the idling
 * protocol (S2-S3) runs once after the batch, which is enough: it follows
 * every push (S1) of the batch. Owner only. */
static void begin_batch(struct coru__worker *w)
{
    w->wake_fifo = true;
}

static void end_batch(struct coru__worker *w)
{
    w->wake_fifo = false;
    if (w->wake_pending) {
        w->wake_pending = false;
        if (batch_wants_help(w, coru__deque_size(&w->yq))) notify();
    }
}

/* Fires w's due timers. Owner only. */
static int fire_timers(struct coru__worker *w)
{
    begin_batch(w);
    int n = coru__theap_fire(&w->timers, coru__now_ns(), true);
    end_batch(w);
    return n;
}

/* Once per scheduling round: submits the SQEs coroutines queued, reaps
 * completions and readiness (they make coroutines runnable here), and
 * submits posted cancels. No system call when the engine has nothing in
 * flight (io_uring); epoll is polled every fourth round, or when forced
 * (before the worker spins or sleeps). Owner only. Returns the
 * completions dispatched. */
static int poll_engine(struct coru__worker *w, bool force)
{
    struct coru__engine *e = w->eng;
    coru__engine_service(e);
    if (!coru__engine_pending(e)) return 0; /* io_uring: nothing in flight or queued */
    if (coru__engine_poll_costly(e) && !force && w->tick % (4 * TIMER_INTERVAL) != 0)
        return 0; /* epoll: every registered fd may have news; poll less often */
    begin_batch(w);
    int n = coru__engine_wait(e, 0);
    end_batch(w);
    if (n < 0) CORU_PANIC("engine poll failed: %d", n);
    return n;
}

/* Whether w's engine may complete something soon: io_uring ops in flight,
 * or (epoll) any wait at all, since readiness of every registered fd
 * arrives there. Owner only. */
static bool io_pending(struct coru__worker *w)
{
    return coru__engine_inflight(w->eng);
}

/* The fast path shared by the scheduler loop and direct switches: the
 * global queue now and then (so it never starves), else the run-next
 * slot and the own deque. Owner only. */
static struct coru_co *next_local(struct coru__worker *w)
{
    struct coru_co *co;
    ++w->tick;
    /* Due timers every TIMER_INTERVAL ticks while some are armed: a clock
     * read per switch would cost more than the switch. An idle worker
     * fires them on time from its wait. */
    if (w->tick % TIMER_INTERVAL == 0) {
        atomic_store_explicit(&w->tick_pub, w->tick, memory_order_relaxed);
        if (coru__theap_next(&w->timers) != INT64_MAX) fire_timers(w);
        poll_engine(w, false);
        inbox_drain(w);
    }
    /* One, as Go's schedule() does: a batch each time would fill the FIFO
     * queue with the global queue's backlog (a million spawns) ahead of
     * the coroutines woken here, which then wait behind thousands. */
    if (w->tick % GQ_POLL_INTERVAL == 0 && (co = gq_take(w, 1))) return co;
    return take_local(w);
}

/* Steals half of a random victim's deque. */
static struct coru_co *steal(struct coru__worker *w)
{
    unsigned n = rt.n;
    if (n < 2) return NULL;
    unsigned start = rnd(w) % n;
    int64_t now = coru__now_ns();
    void *buf[DEQUE_CAP / 2];
    for (unsigned i = 0; i < n; i++) {
        struct coru__worker *v = &rt.w[(start + i) % n];
        if (v == w) continue;
        size_t got = coru__deque_grab(&v->dq, buf, DEQUE_CAP / 2);
        /* The FIFO queue holds what I/O, timers and yields woke: its owner
         * is awake (it pushed) and will run it within microseconds, with
         * the socket's state still in its cache. Taking it pays off only
         * from an owner that has had no idle moment for SATURATED_NS. */
        if (!got && saturated(v, now)) got = coru__deque_grab(&v->yq, buf, DEQUE_CAP / 2);
        if (!got && saturated(v, now)) got = inbox_take(v, buf, DEQUE_CAP / 2);
        if (!got) continue;
        for (size_t k = got - 1; k > 0; k--) push_local(w, &w->dq, buf[k]);
        coru__stat_add(&w->st.steals, got);
        return buf[0];
    }
    return NULL;
}

static bool quiescent(void);
static void try_stop(void);

/* I3's re-check, for w: 0 no work, 1 work of its own (its inbox or
 * queues; it runs it without searching further), 2 work elsewhere (it
 * searches, as a spinner). A FIFO queue is work for others only when its
 * owner is saturated (see steal): an unsaturated owner is awake and runs
 * it soon. A packing worker gave its work away and must not steal it
 * back: it takes others' deques only from a saturated owner too; other
 * work of an awake owner reaches it through notify() or the watchdog
 * (go_idle). */
static int any_work(struct coru__worker *w)
{
    if (atomic_load_explicit(&w->inbox_n, memory_order_relaxed)) return 1;
    if (w->lifo || coru__deque_size(&w->dq) || coru__deque_size(&w->yq)) return 1;
    if (atomic_load_explicit(&rt.gq_len, memory_order_relaxed)) return 2;
    int64_t now = coru__now_ns();
    for (unsigned i = 0; i < rt.n; i++) {
        struct coru__worker *v = &rt.w[i];
        if (v == w) continue;
        bool sat = saturated(v, now);
        if (coru__deque_size(&v->dq) && (sat || !w->packing)) return 2;
        if ((coru__deque_size(&v->yq) || atomic_load_explicit(&v->inbox_n, memory_order_relaxed)) && sat)
            return 2;
    }
    return 0;
}

/* The watchdog's look at the other workers (go_idle, every SATURATED_NS
 * while some worker is awake). A worker is stuck when it is saturated and
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
    for (unsigned i = 0; i < rt.n; i++) {
        struct coru__worker *v = &rt.w[i];
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
static void unlist_self(struct coru__worker *w)
{
    struct coru__worker **pp = &rt.idle_head;
    while (*pp != w) pp = &(*pp)->idle_next;
    *pp = w->idle_next;
    w->idle_listed = false;
    atomic_fetch_sub_explicit(&rt.nidle, 1, memory_order_seq_cst);
}

/* Leaves the idle state without sleeping (more): unlists w unless a
 * waker did, and sets whether it spins. search: the work is elsewhere
 * (w looks for it as a spinner), not w's own. Unlisted by ourselves: we
 * spin, counted now, only to search. Unlisted by a notify: it already
 * counted us (its wake-up stays pending in our engine and only shortens
 * our next sleep). Unlisted by inbox_give: not counted and not spinning
 * (our inbox has work). A search also ends packing: w takes others' work
 * again. */
static void leave_idle(struct coru__worker *w, bool search)
{
    pthread_mutex_lock(&rt.idle_lock);
    bool listed = w->idle_listed, handed = w->handed;
    w->handed = false;
    if (listed) unlist_self(w);
    pthread_mutex_unlock(&rt.idle_lock);
    bool spin = listed ? search : !handed;
    if (listed && spin) atomic_fetch_add_explicit(&rt.nspinning, 1, memory_order_seq_cst);
    w->spinning = spin;
    if (search) w->packing = false;
    atomic_store_explicit(&w->idle_at, coru__now_ns(), memory_order_relaxed);
}

/* I1-I4 of the idling protocol. Returns when there may be work: either a
 * waker unlisted us (and counted us as spinning), or the re-check in I3
 * found work, or the run is stopping. On return the worker spins. */
static void go_idle(struct coru__worker *w)
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
    pthread_mutex_lock(&rt.idle_lock);
    w->idle_listed = true;
    w->idle_next = rt.idle_head;
    rt.idle_head = w;
    atomic_fetch_add_explicit(&rt.nidle, 1, memory_order_seq_cst); /* I1 */
    pthread_mutex_unlock(&rt.idle_lock);
    if (w->spinning) {
        w->spinning = false;
        atomic_fetch_sub_explicit(&rt.nspinning, 1, memory_order_seq_cst); /* I2 */
    }
    atomic_thread_fence(memory_order_seq_cst); /* I3: pairs with S2 in notify */
    int work = any_work(w);
    if (!work && quiescent()) try_stop(); /* the last coroutine finished */
    if (work || atomic_load_explicit(&rt.stop, memory_order_seq_cst)) {
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
        bool watch = atomic_load_explicit(&rt.nidle, memory_order_relaxed) < rt.n;
        if (watch && (timeout < 0 || timeout > SATURATED_NS)) timeout = SATURATED_NS;
        coru__stat_inc(&w->st.sleeps);
        if (!watch) atomic_fetch_add_explicit(&rt.nunwatched, 1, memory_order_relaxed);
        begin_batch(w);
        int rc = coru__engine_wait(w->eng, timeout);
        if (!watch) atomic_fetch_sub_explicit(&rt.nunwatched, 1, memory_order_relaxed);
        if (rc < 0) CORU_PANIC("engine wait failed: %d", rc);
        coru__engine_service(w->eng);
        /* I/O or timers made work: ours, or a stuck worker's due ones */
        int fired = rc + (next != INT64_MAX ? coru__theap_fire(&w->timers, coru__now_ns(), true) : 0);
        bool stuck = false;
        if (watch) fired += watch_others(w, &stuck);
        w->wake_fifo = false;
        bool owed = w->wake_pending; /* the batch's S2-S3, done below */
        w->wake_pending = false;
        pthread_mutex_lock(&rt.idle_lock);
        bool listed = w->idle_listed, handed = w->handed;
        w->handed = false;
        if (listed && fired) {
            unlist_self(w); /* our own timers or I/O made work */
        }
        pthread_mutex_unlock(&rt.idle_lock);
        if (!listed || fired) atomic_store_explicit(&w->idle_at, coru__now_ns(), memory_order_relaxed);
        if (handed) { /* unlisted by inbox_give: its work is in our inbox */
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
            struct coru__worker *t = pack_target(w);
            if (t && coru__deque_size(&w->yq)) {
                void *buf[DEQUE_CAP];
                size_t n;
                while ((n = coru__deque_grab(&w->yq, buf, DEQUE_CAP))) {
                    inbox_give(t, (struct coru_co **)buf, n);
                    coru__stat_add(&w->st.handoffs, n);
                }
                w->packing = true;
                return;
            }
            w->packing = false;
            if (owed && batch_wants_help(w, coru__deque_size(&w->yq))) notify();
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

/* Finds the next coroutine to run; NULL when the run is over. */
static struct coru_co *find_work(struct coru__worker *w)
{
    for (;;) {
        struct coru_co *co;
        inbox_drain(w);
        if ((co = next_local(w))) goto found;
        if ((co = gq_take(w, DEQUE_CAP / 2))) goto found;
        if (atomic_load_explicit(&rt.stop, memory_order_relaxed)) return NULL;
        atomic_store_explicit(&w->idle_at, coru__now_ns(), memory_order_relaxed);
        if (w->packing) { /* gave its work away: sleep until more comes */
            if (fire_timers(w)) continue;
            go_idle(w);
            continue;
        }

        if (!w->spinning) {
            unsigned spin = atomic_load_explicit(&rt.nspinning, memory_order_relaxed);
            unsigned busy = rt.n - atomic_load_explicit(&rt.nidle, memory_order_relaxed);
            if (2 * spin < busy) {
                w->spinning = true;
                atomic_fetch_add_explicit(&rt.nspinning, 1, memory_order_seq_cst);
            }
        }
        /* The spin: a spinning worker looks for others' work; any worker
         * with I/O in flight on its own engine polls it, since a
         * completion due within microseconds is far cheaper to catch here
         * than by sleeping in the kernel and being woken (a server whose
         * load arrives every few microseconds would otherwise pay a
         * context switch per request). */
        bool io = io_pending(w), polled = false;
        if (w->spinning || io) {
            int64_t until = coru__now_ns() + SPIN_NS;
            do {
                if (w->spinning && ((co = steal(w)) || (co = gq_take(w, DEQUE_CAP / 2)))) goto found;
                if (io && poll_engine(w, true)) {
                    if (w->spinning) stop_spinning_local(w);
                    polled = true;
                    break;
                }
                for (int i = 0; i < 32; i++) {
#if defined(__x86_64__)
                    __builtin_ia32_pause();
#elif defined(__aarch64__)
                    __asm__ volatile("yield");
#endif
                }
            } while (coru__now_ns() < until && !atomic_load_explicit(&rt.stop, memory_order_relaxed));
        }
        if (polled) continue; /* run what the engine completed */
        if (fire_timers(w)) continue;
        if (poll_engine(w, true)) continue;
        go_idle(w);
        continue;
    found:
        w->packing = false;
        if (w->spinning) stop_spinning(w);
        return co;
    }
}

/* ---------------------------------------------------------------- running
 *
 * Switches go straight from one coroutine to the next when the worker has
 * local work, and through the scheduler context only when it must look
 * further (steal, sleep). Either way, what must happen to the coroutine
 * that switched out (requeue it, commit its park, free it) cannot happen
 * before its registers are saved, so it is recorded in w->prev / w->post
 * and done by finish_switch() in whatever context runs next, right after
 * the switch: in the scheduler loop, in a resumed coroutine, or first
 * thing in a new one.
 */

void coru__co_entry(void *p);
void coru__co_finished(struct coru__worker *w, struct coru_co *co);
void coru__co_cache_drain(struct coru__worker *w);

/* Gives a coroutine that never ran its stack and first frame. */
static void prepare(struct coru__worker *w, struct coru_co *co)
{
    if (likely(co->stack != NULL)) return;
    int rc = coru__stack_alloc(&w->pool, co->stack_size, &co->stack);
    if (rc) CORU_PANIC("no memory for the stack of coroutine %llu (%zu bytes): %d",
                       (unsigned long long)co->id, coru__stack_round(co->stack_size), rc);
    co->stack->owner_id = co->id;
    coru__ctx_make(&co->ctx, co->stack, coru__co_entry, co);
}

/* The post-switch action for w->prev. Owner only, right after a switch. */
static void finish_switch(struct coru__worker *w)
{
    struct coru_co *co = w->prev;
    int post = w->post;
    w->prev = NULL;
    w->post = POST_NONE;
    switch (post) {
    case POST_NONE:
        return;
    case POST_YIELD:
        push_local(w, &w->yq, co);
        return;
    case POST_PARK: {
        coru__stat_inc(&w->st.parks);
        int expect = CO_PARKING;
        /* Step 4: commit. release publishes the saved context to the
         * waker (pairs with the acquire of its exchange); on failure,
         * acquire pairs with the waker's release. */
        if (!atomic_compare_exchange_strong_explicit(&co->pstate, &expect, CO_PARKED,
                                                     memory_order_acq_rel, memory_order_acquire)) {
            if (expect != CO_WOKEN) CORU_PANIC("bad park state %d", expect);
            coru__stat_inc(&w->st.wakeups);
            schedule_next(w, co);
        }
        return;
    }
    case POST_MIGRATE: {
        struct coru__worker *t = w->migrate_to;
        w->migrate_to = NULL;
        inbox_give(t, &co, 1);
        return;
    }
    case POST_EXIT:
        coru__co_finished(w, co);
        /* release: quiescent() reads finished with acquire, and then must
         * see the spawns this coroutine made. */
        atomic_store_explicit(&w->finished, atomic_load_explicit(&w->finished, memory_order_relaxed) + 1,
                              memory_order_release);
        return;
    default:
        CORU_PANIC("coroutine %llu switched out without a reason", (unsigned long long)co->id);
    }
}

/* Called on a coroutine (from) that stops running for `post`: switches to
 * the next local coroutine, or to the scheduler when there is none.
 * Returns when `from` is resumed (maybe on another worker). */
static void switch_out(struct coru__worker *w, struct coru_co *from, int post)
{
    w->prev = from;
    w->post = post;
    struct coru__ctx *to = w->sched_ctx;
    struct coru_co *next = next_local(w);
    if (next) {
        prepare(w, next);
        /* relaxed: we own next (taken from a queue with acquire) */
        atomic_store_explicit(&next->pstate, CO_RUNNING, memory_order_relaxed);
        coru__stat_inc(&w->st.switches);
        to = &next->ctx;
    }
    w->cur = next;
    if (post == POST_EXIT) coru__ctx_switch_final(&from->ctx, to);
    coru__ctx_switch(&from->ctx, to);
    finish_switch(coru__worker_self()); /* maybe another worker now */
}

/* First code a new coroutine runs (see coro.c). */
void coru__co_started(void);
void coru__co_started(void)
{
    finish_switch(coru__worker_self());
}

void coru__park(void)
{
    struct coru__worker *w = coru__worker_self();
    switch_out(w, w->cur, POST_PARK);
}

bool coru__migrate(unsigned to)
{
    struct coru__worker *w = coru__worker_self();
    if (!w || !w->cur || to >= rt.n || to == w->id || coru__gen_depth > 0) return false;
    w->migrate_to = &rt.w[to];
    coru__stat_inc(&w->st.moves);
    switch_out(w, w->cur, POST_MIGRATE);
    return true;
}

void coru__exit_switch(void);
void coru__exit_switch(void)
{
    struct coru__worker *w = coru__worker_self();
    switch_out(w, w->cur, POST_EXIT);
}

int coru_yield(void)
{
    int rc = coru__can_park();
    if (rc) return rc;
    struct coru__worker *w = coru__worker_self();
    switch_out(w, w->cur, POST_YIELD);
    return 0;
}

/* The scheduler loop of one worker, on its native context. */
static void sched_loop(struct coru__worker *w)
{
    struct coru_co *co;
    while ((co = find_work(w))) {
        prepare(w, co);
        atomic_store_explicit(&co->pstate, CO_RUNNING, memory_order_relaxed); /* we own co */
        w->cur = co;
        coru__stat_inc(&w->st.switches);
        coru__ctx_switch(w->sched_ctx, &co->ctx);
        finish_switch(w);
    }
}

int coru_worker(void)
{
    struct coru__worker *w = coru__worker_self();
    return w ? (int)w->id : -1;
}

/* Counts a spawn for the termination check. Before the coroutine is
 * published, so that whoever sees it finish also sees it spawned. */
void coru__count_spawn(void);
void coru__count_spawn(void)
{
    struct coru__worker *w = coru__worker_self();
    if (w)
        atomic_store_explicit(&w->spawned, atomic_load_explicit(&w->spawned, memory_order_relaxed) + 1,
                              memory_order_relaxed); /* owner only; published by the queue push (release) */
    else
        atomic_fetch_add_explicit(&rt.ext_spawned, 1, memory_order_seq_cst);
}

/* Whether every coroutine spawned has finished. Reads all finish counts,
 * then all spawn counts: counts only grow, and a finish is counted after
 * its spawn (happens-before through the queue), so if the sums agree
 * there was a moment between the two passes when none was alive; after
 * that moment none can appear (spawns come from live coroutines, or from
 * plain threads, which try_stop excludes by re-checking under ext_lock). */
static bool quiescent(void)
{
    uint64_t fin = 0, sp = 0;
    for (unsigned i = 0; i < rt.n; i++)
        fin += atomic_load_explicit(&rt.w[i].finished, memory_order_seq_cst); /* pairs with the release in finish_switch */
    for (unsigned i = 0; i < rt.n; i++) sp += atomic_load_explicit(&rt.w[i].spawned, memory_order_seq_cst);
    sp += atomic_load_explicit(&rt.ext_spawned, memory_order_seq_cst);
    return sp == fin;
}

/* The end of the run against spawns from plain threads. A plain thread
 * spawns between coru__ext_spawn_begin and _end, holding ext_lock, and
 * only while ext_open is EXT_OPEN; the run stops only in try_stop, which
 * closes ext_open and raises `stop` under the same lock after finding the
 * run quiescent under it. So a plain thread's spawn either completes (its
 * coroutine counted in ext_spawned and queued) before the terminator's
 * check, which then sees it alive and does not stop, or finds the run
 * closed and fails with -EPERM: no coroutine is queued after the run
 * decided to end (it would be dropped, and the queue it was pushed to is
 * freed when coru_run returns). Coroutines spawned by coroutines need no
 * lock: their parent is alive, so the run cannot be quiescent. */
int coru__ext_spawn_begin(void);
int coru__ext_spawn_begin(void)
{
    pthread_mutex_lock(&rt.ext_lock);
    if (rt.ext_open == EXT_OPEN) return 0;
    pthread_mutex_unlock(&rt.ext_lock);
    return -EPERM;
}

void coru__ext_spawn_end(void);
void coru__ext_spawn_end(void)
{
    pthread_mutex_unlock(&rt.ext_lock);
}

/* Stops the run if it is still quiescent with no plain thread spawning. */
static void try_stop(void)
{
    pthread_mutex_lock(&rt.ext_lock);
    if (quiescent()) {
        rt.ext_open = EXT_CLOSED;
        stop_all();
    }
    pthread_mutex_unlock(&rt.ext_lock);
}

/* Worker 0, once every worker has started and before any runs a
 * coroutine: plain threads may spawn from now on. */
static void ext_open_run(void)
{
    pthread_mutex_lock(&rt.ext_lock);
    rt.ext_open = EXT_OPEN;
    pthread_mutex_unlock(&rt.ext_lock);
}

/* ---------------------------------------------------------------- workers */

static void *worker_main(void *p)
{
    struct coru__worker *w = p;
    tls_w = w;
    int rc = coru__stack_thread_init();
    if (!rc) rc = coru__engine_create(&w->eng);
    if (rc) {
        int z = 0;
        atomic_compare_exchange_strong(&rt.start_err, &z, rc);
    }
    w->sched_ctx = coru__ctx_thread();
    pthread_barrier_wait(&rt.start_bar);
    /* Every worker has started (or the run failed). Plain threads may
     * spawn from now on, and no coroutine runs before that: the main
     * coroutine's threads can spawn as soon as it runs. */
    if (w->id == 0 && !atomic_load(&rt.start_err)) ext_open_run();
    pthread_barrier_wait(&rt.open_bar);
    if (!atomic_load(&rt.start_err)) sched_loop(w);
    if (w->eng) coru__engine_quiesce(w->eng); /* multishots armed on our ring */
    /* All workers agree the run is over before any engine goes away, so
     * no wake can target a destroyed engine. */
    pthread_barrier_wait(&rt.stop_bar);
    if (w->eng) coru__engine_destroy(w->eng);
    w->eng = NULL;
    coru__theap_fini(&w->timers);
    coru__stack_pool_fini(&w->pool);
    coru__co_cache_drain(w);
    coru__stack_thread_fini();
    tls_w = NULL;
    return NULL;
}

static unsigned default_workers(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int c = CPU_COUNT(&set);
        if (c > 0) return (unsigned)c;
    }
    return 1;
}

static void snapshot_stats(struct coru_stats *s)
{
    memset(&s->total, 0, sizeof s->total);
    /* Entries past this run's workers are zero, not an earlier run's. */
    memset(&s->worker[rt.n], 0, sizeof s->worker - rt.n * sizeof s->worker[0]);
    for (unsigned i = 0; i < rt.n; i++) {
        struct coru__worker *w = &rt.w[i];
        struct coru_worker_stats *o = &s->worker[i];
        o->switches = atomic_load_explicit(&w->st.switches, memory_order_relaxed);
        o->spawns = atomic_load_explicit(&w->st.spawns, memory_order_relaxed);
        o->steals = atomic_load_explicit(&w->st.steals, memory_order_relaxed);
        o->parks = atomic_load_explicit(&w->st.parks, memory_order_relaxed);
        o->wakeups = atomic_load_explicit(&w->st.wakeups, memory_order_relaxed);
        o->sleeps = atomic_load_explicit(&w->st.sleeps, memory_order_relaxed);
        o->handoffs = atomic_load_explicit(&w->st.handoffs, memory_order_relaxed);
        o->timer_steals = atomic_load_explicit(&w->st.timer_steals, memory_order_relaxed);
        o->moves = atomic_load_explicit(&w->st.moves, memory_order_relaxed);
        s->total.switches += o->switches;
        s->total.spawns += o->spawns;
        s->total.steals += o->steals;
        s->total.parks += o->parks;
        s->total.wakeups += o->wakeups;
        s->total.sleeps += o->sleeps;
        s->total.handoffs += o->handoffs;
        s->total.timer_steals += o->timer_steals;
        s->total.moves += o->moves;
    }
}

int coru_stats(struct coru_stats *out)
{
    if (!out) return -EINVAL;
    pthread_mutex_lock(&rt.stats_lock);
    if (rt.w) {
        out->workers = rt.n;
        out->engine = coru__engine_name(coru__engine_kind());
        snapshot_stats(out);
    } else {
        *out = rt.last;
    }
    pthread_mutex_unlock(&rt.stats_lock);
    return 0;
}

int coru_run(coru_fn fn, void *arg, const struct coru_opts *opts)
{
    struct coru_opts o = {0};
    if (opts) o = *opts;
    if (!fn || o.workers > 256 || o.io > CORU_IO_EPOLL) return -EINVAL;
    if (o.stack_size > ((size_t)1 << 30)) return -EINVAL;
    if (coru__worker_self()) return -EBUSY;
    int idle = 0;
    if (!atomic_compare_exchange_strong(&rt.state, &idle, 1)) return -EBUSY;

    unsigned n = o.workers ? o.workers : default_workers();
    if (n > 256) n = 256;
    int rc = coru__engine_select((int)o.io);
    if (rc < 0) goto out_state;
    coru__stack_set_default(o.stack_size);
    coru__engine_run_begin(); /* before any worker starts */

    struct coru__worker *ws = aligned_alloc(CORU_CACHELINE, sizeof *ws * n);
    if (!ws) {
        rc = -ENOMEM;
        goto out_state;
    }
    memset(ws, 0, sizeof *ws * n);
    for (unsigned i = 0; i < n; i++) {
        ws[i].id = i;
        coru__lock_init(&ws[i].inbox_lock);
        atomic_init(&ws[i].idle_at, coru__now_ns());
        atomic_init(&ws[i].inbox_n, 0);
        ws[i].rng = 0x9e3779b9u * (i + 1) ^ (uint32_t)coru__now_ns();
        if (!ws[i].rng) ws[i].rng = 1;
        coru__stack_pool_init(&ws[i].pool);
        coru__theap_init(&ws[i].timers);
        if (coru__deque_init(&ws[i].dq, DEQUE_CAP) || coru__deque_init(&ws[i].yq, YQ_CAP)) {
            for (unsigned k = 0; k <= i; k++) {
                coru__deque_fini(&ws[k].dq);
                coru__deque_fini(&ws[k].yq);
            }
            free(ws);
            rc = -ENOMEM;
            goto out_state;
        }
    }
    pthread_mutex_lock(&rt.stats_lock);
    rt.n = n;
    rt.w = ws;
    pthread_mutex_unlock(&rt.stats_lock);
    coru__lock_init(&rt.gq_lock);
    rt.gq_buf = NULL;
    rt.gq_cap = rt.gq_head = 0;
    atomic_store(&rt.gq_len, 0);
    rt.idle_head = NULL;
    atomic_store(&rt.nidle, 0);
    atomic_store(&rt.nspinning, 0);
    atomic_store(&rt.ext_spawned, 0);
    pthread_mutex_lock(&rt.ext_lock);
    rt.ext_open = EXT_NOT_YET;
    pthread_mutex_unlock(&rt.ext_lock);
    atomic_store(&rt.stop, false);
    atomic_store(&rt.start_err, 0);
    pthread_barrier_init(&rt.start_bar, NULL, n);
    pthread_barrier_init(&rt.open_bar, NULL, n);
    pthread_barrier_init(&rt.stop_bar, NULL, n);

    /* SIGPIPE: blocked on every worker for the run (the threads started
     * below inherit the mask), so that a write to a pipe whose reader has
     * gone fails with -EPIPE instead of killing the process (sockets use
     * MSG_NOSIGNAL; pipes have no such flag, and an io_uring write runs
     * on the worker that submits it). The disposition is not touched. */
    struct coru__sigpipe spg;
    coru__sigpipe_hold(&spg);

    struct coru_co *main_co;
    rc = coru__spawn(&main_co, fn, arg, NULL, 1);
    if (rc) {
        atomic_store(&rt.stop, true);
    }
    unsigned started = 1;
    for (unsigned i = 1; i < n && !rc; i++) {
        if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0) {
            /* Cannot start all workers: run with those we have would
             * break the barrier count; give up cleanly. */
            CORU_PANIC("pthread_create failed for worker %u", i);
        }
        started++;
    }
    if (!rc) {
        worker_main(&ws[0]);
        for (unsigned i = 1; i < started; i++) pthread_join(ws[i].thread, NULL);
        rc = atomic_load(&rt.start_err);
        if (rc) {
            /* The run never started: the main coroutine is still queued. */
            for (size_t i = 0; i < atomic_load(&rt.gq_len); i++)
                coru__co_finished(NULL, rt.gq_buf[(rt.gq_head + i) % rt.gq_cap]);
            atomic_store(&rt.gq_len, 0);
        }
    }
    pthread_barrier_destroy(&rt.start_bar);
    pthread_barrier_destroy(&rt.open_bar);
    pthread_barrier_destroy(&rt.stop_bar);
    /* A SIGPIPE a write on this thread raised during the run is pending,
     * blocked: discarded, as the other workers' went with their threads. */
    coru__sigpipe_release(&spg, true);

    pthread_mutex_lock(&rt.stats_lock);
    rt.last.workers = n;
    rt.last.engine = coru__engine_name(coru__engine_kind());
    snapshot_stats(&rt.last);
    for (unsigned i = 0; i < n; i++) {
        coru__deque_fini(&ws[i].dq);
        coru__deque_fini(&ws[i].yq);
    }
    free(rt.gq_buf);
    rt.gq_buf = NULL;
    coru__stack_depot_trim(); /* the run's cached stacks go back to the OS */
    free(ws);
    rt.w = NULL;
    pthread_mutex_unlock(&rt.stats_lock);
out_state:
    atomic_store(&rt.state, 0);
    return rc;
}
