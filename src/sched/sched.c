/* The M:N scheduler's run loop: the local run order, finding work,
 * stealing, and switching from one coroutine to the next.
 *
 * Invariants:
 *   - A coroutine is enqueued by its own worker only after it switched
 *     out (the post-switch actions in finish_switch), or by a waker after
 *     the park was committed (see sched.h), so no two threads ever run it.
 *   - Only a worker's owner pushes to its deques, pops its work deque and
 *     uses its run-next slot; other workers grab from its work deque
 *     (steal), and from its FIFO queue and inbox only once it is
 *     saturated: an awake owner runs those soon, with their sockets still
 *     in its cache.
 *   - Only the owner polls its engine (poll_engine: every TIMER_INTERVAL
 *     ticks, and before it spins or sleeps), through io/engine.h alone.
 *
 * See rt.h for the state this shares with the other scheduler files and
 * its ownership map.
 */
#include <errno.h>

#include "io/engine.h"
#include "sched/chaos.h"
#include "sched/rt.h"

#define GQ_POLL_INTERVAL 61 /* ticks between global queue checks */
#define LIFO_MAX_STREAK 3   /* run-next uses in a row before the deque */
#define OLDEST_INTERVAL 1024 /* ticks between runs of the oldest deque entry */
#define SPIN_NS 3000      /* how long an idle worker looks for work before sleeping */

enum { POST_NONE = 0, POST_YIELD, POST_PARK, POST_EXIT, POST_MIGRATE };

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

void coru__worker_set_self(struct coru__worker *w)
{
    tls_w = w;
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

/* ---------------------------------------------------------------- making runnable */

/* Makes co runnable on the calling worker next (run-next slot). The
 * coroutine it displaces becomes stealable, so others may be woken. */
static void schedule_next(struct coru__worker *w, struct coru_co *co)
{
    struct coru_co *prev = w->lifo;
    w->lifo = co;
    if (prev) {
        push_local(w, &w->dq, prev);
        coru__notify();
    }
}

void coru__ready(struct coru_co *co)
{
    coru__chaos_delay(); /* test builds: let the park's commit race us */
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
        int where = w->wake_fifo ? CORU__CHAOS_RUN_NEXT : coru__chaos_ready_where();
        if (w->wake_fifo) {
            push_local(w, &w->yq, co); /* S1; S2-S3 once per batch: end_batch */
            w->wake_pending = true;
        } else if (where == CORU__CHAOS_RUN_NEXT) {
            schedule_next(w, co);
        } else { /* test builds (chaos.h): stealable, or behind the queue */
            push_local(w, where == CORU__CHAOS_DEQUE ? &w->dq : &w->yq, co); /* S1 */
            coru__notify();                                                  /* S2-S3 */
        }
    } else {
        gq_push(&co, 1);
        coru__notify();
    }
}

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
        coru__notify();
        return;
    } else {
        gq_push(&co, 1);
    }
    coru__notify();
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
    /* (test builds: now and then at random, see chaos.h) */
    if ((w->tick % GQ_POLL_INTERVAL == 0 || coru__chaos_fifo_first()) && coru__deque_grab(&w->yq, &co, 1))
        return co;
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

/* Ends a batch of wake-ups (begin_batch, rt.h): the S2-S3 of all its
 * pushes at once, and only if it left w a backlog worth another worker.
 * Owner only. */
static void end_batch(struct coru__worker *w)
{
    w->wake_fifo = false;
    if (w->wake_pending) {
        w->wake_pending = false;
        if (batch_wants_help(w, coru__deque_size(&w->yq))) coru__notify();
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
        w->coarse_now = coru__coarse_ns();
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
    unsigned n = coru__rt.n;
    if (n < 2) return NULL;
    unsigned start = rnd(w) % n;
    int64_t now = coru__now_ns();
    void *buf[DEQUE_CAP / 2];
    for (unsigned i = 0; i < n; i++) {
        struct coru__worker *v = &coru__rt.w[(start + i) % n];
        if (v == w) continue;
        size_t got = coru__deque_grab(&v->dq, buf, DEQUE_CAP / 2);
        /* The FIFO queue holds what I/O, timers and yields woke: its owner
         * is awake (it pushed) and will run it within microseconds, with
         * the socket's state still in its cache. Taking it pays off only
         * from an owner that has had no idle moment for SATURATED_NS. */
        if (!got && saturated(v, now)) got = coru__deque_grab(&v->yq, buf, DEQUE_CAP / 2);
        if (!got && saturated(v, now)) got = coru__inbox_take(v, buf, DEQUE_CAP / 2);
        if (!got) continue;
        for (size_t k = got - 1; k > 0; k--) push_local(w, &w->dq, buf[k]);
        coru__stat_add(&w->st.steals, got);
        return buf[0];
    }
    return NULL;
}

/* Finds the next coroutine to run; NULL when the run is over. */
static struct coru_co *find_work(struct coru__worker *w)
{
    for (;;) {
        struct coru_co *co;
        inbox_drain(w);
        if ((co = next_local(w))) goto found;
        if ((co = gq_take(w, DEQUE_CAP / 2))) goto found;
        if (atomic_load_explicit(&coru__rt.stop, memory_order_relaxed)) return NULL;
        atomic_store_explicit(&w->idle_at, coru__now_ns(), memory_order_relaxed);
        if (w->packing) { /* gave its work away: sleep until more comes */
            if (fire_timers(w)) continue;
            coru__go_idle(w);
            continue;
        }

        if (!w->spinning) {
            unsigned spin = atomic_load_explicit(&coru__rt.nspinning, memory_order_relaxed);
            unsigned busy = coru__rt.n - atomic_load_explicit(&coru__rt.nidle, memory_order_relaxed);
            if (2 * spin < busy) {
                w->spinning = true;
                atomic_fetch_add_explicit(&coru__rt.nspinning, 1, memory_order_seq_cst);
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
            int64_t until = coru__now_ns() + coru__chaos_spin_ns(SPIN_NS);
            do {
                if (w->spinning && ((co = steal(w)) || (co = gq_take(w, DEQUE_CAP / 2)))) goto found;
                if (io && poll_engine(w, true)) {
                    if (w->spinning) coru__stop_spinning_local(w);
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
            } while (coru__now_ns() < until && !atomic_load_explicit(&coru__rt.stop, memory_order_relaxed));
        }
        if (polled) continue; /* run what the engine completed */
        if (fire_timers(w)) continue;
        if (poll_engine(w, true)) continue;
        coru__go_idle(w);
        continue;
    found:
        w->packing = false;
        if (w->spinning) coru__stop_spinning(w);
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

/* Gives a coroutine that never ran its stack and first frame. */
static void prepare(struct coru__worker *w, struct coru_co *co)
{
    if (likely(co->stack != NULL)) return;
    int rc = coru__stack_alloc(&w->pool, co->stack_size, &co->stack);
    if (rc) {
        union {
            uint64_t w[4];
            char c[32];
        } nm;
        for (int i = 0; i < 4; i++) nm.w[i] = atomic_load_explicit(&co->reg.name[i], memory_order_relaxed);
        nm.c[31] = 0;
        CORU_PANIC("no memory for the stack of coroutine %llu%s%s%s (%zu bytes): %d", (unsigned long long)co->id,
                   nm.c[0] ? " \"" : "", nm.c, nm.c[0] ? "\"" : "", coru__stack_round(co->stack_size), rc);
    }
    co->stack->owner_id = co->id;
    co->stack->owner_name = co->reg.name;
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
        coru__chaos_delay(); /* test builds: let a waker race the commit */
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
        coru__inbox_give(t, &co, 1);
        return;
    }
    case POST_EXIT:
        coru__co_finished(w, co);
        /* release: coru__quiescent() reads finished with acquire, and
         * then must see the spawns this coroutine made. */
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
    /* test builds: now and then through the scheduler's find_work */
    struct coru_co *next = coru__chaos_via_sched() ? NULL : next_local(w);
    if (next) {
        prepare(w, next);
        /* relaxed: we own next (taken from a queue with acquire) */
        atomic_store_explicit(&next->pstate, CO_RUNNING, memory_order_relaxed);
        coru__stat_inc(&w->st.switches);
        to = &next->ctx;
    }
    w->cur = next;
    atomic_store_explicit(&w->cur_pub, next, memory_order_relaxed);
    if (post == POST_EXIT) coru__ctx_switch_final(&from->ctx, to);
    coru__ctx_switch(&from->ctx, to);
    finish_switch(coru__worker_self()); /* maybe another worker now */
}

/* First code a new coroutine runs (see coro.c). */
void coru__co_started(void)
{
    finish_switch(coru__worker_self());
}

void coru__park(void)
{
    struct coru__worker *w = coru__worker_self();
    atomic_store_explicit(&w->cur->reg.since, w->coarse_now, memory_order_relaxed);
    switch_out(w, w->cur, POST_PARK);
}

bool coru__migrate(unsigned to)
{
    struct coru__worker *w = coru__worker_self();
    if (!w || !w->cur || to >= coru__rt.n || to == w->id || coru__gen_depth > 0) return false;
    w->migrate_to = &coru__rt.w[to];
    coru__stat_inc(&w->st.moves);
    switch_out(w, w->cur, POST_MIGRATE);
    return true;
}

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
void coru__sched_loop(struct coru__worker *w)
{
    struct coru_co *co;
    while ((co = find_work(w))) {
        prepare(w, co);
        atomic_store_explicit(&co->pstate, CO_RUNNING, memory_order_relaxed); /* we own co */
        w->cur = co;
        atomic_store_explicit(&w->cur_pub, co, memory_order_relaxed);
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
