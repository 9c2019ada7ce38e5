/* The scheduler's shared state: the run (struct coru__rt) and its
 * workers (struct coru__worker), with what the scheduler's own files
 * share about them: constants, the small static inline helpers of the hot
 * path, and each file's out-of-line functions. Included by those files
 * only; every other module sees sched.h.
 *
 * The files, each opening with the invariants it owns:
 *   sched.c  the run loop and switching: local run order, finding work,
 *            stealing, the post-switch actions, coru__ready
 *   idle.c   the idle and wake protocol (I1-I4, S1-S3): spinning,
 *            sleeping, the watchdog, the idle list
 *   pack.c   packing and handoff: worker inboxes, woken I/O work moved to
 *            lower workers
 *   gq.c     the global queue
 *   run.c    coru_run and the workers' lifecycle: start, termination,
 *            spawns from plain threads, stats
 *   coro.c   coroutine structs: spawn, join, cancel, their exit
 *   chaos.c  test builds only: the seeded chaos mode (chaos.h), whose
 *            hooks sit in sched.c, run.c and waiter.c
 *
 * Where a runnable coroutine is: in exactly one place, a worker's run-next
 * slot (`lifo`, owner only), one of a worker's two deques (`dq`: new and
 * woken work, run newest first; `yq`: yielded coroutines and batches from
 * the global queue, run oldest first), a worker's inbox (handed to it by
 * packing or a migration), or the global queue. It is taken from there by
 * exactly one worker (a deque grab is a CAS; the inbox and the global
 * queue are under their locks).
 *
 * Ownership map:
 *   coru__rt.n, .w, .start_err, the barriers
 *                        written by coru_run before the workers start
 *                        (thread creation orders them), and by worker
 *                        start-up (start_err, CAS)
 *   coru__rt.stop        any thread (seq_cst); read by every worker
 *   coru__rt.gq_*        gq_lock (a spinlock: never held across a
 *                        syscall); gq_len is also read racily as a hint
 *   coru__rt.idle_head, worker.idle_listed, .idle_next, .handed
 *                        idle_lock
 *   coru__rt.nidle       written under idle_lock, read anywhere (seq_cst)
 *   coru__rt.nspinning   any thread, seq_cst RMW
 *   coru__rt.nunwatched  each worker counts itself in and out (relaxed
 *                        hint)
 *   coru__rt.ext_spawned plain threads and coru_run (seq_cst RMW), summed
 *                        by idle workers
 *   coru__rt.ext_open    ext_lock
 *   coru__rt.w's lifetime, .last
 *                        stats_lock (against coru_stats)
 *   worker.*             its own thread, unless the field says else: dq
 *                        and yq (grab: anyone), the inbox (inbox_lock),
 *                        the idle fields (idle_lock), timers (disarmed by
 *                        anyone), and the counters others read (st,
 *                        spawned/finished, tick_pub/tick_mark, idle_at)
 */
#ifndef CORU_SCHED_RT_H
#define CORU_SCHED_RT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sched/sched.h"

#define DEQUE_CAP 256   /* the work deque */
#define YQ_CAP 4096     /* the FIFO queue: room for a whole batch of completions
                           from a busy engine, which would otherwise spill to
                           the global queue and wait behind newer batches */
#define TIMER_INTERVAL 16  /* ticks between checks for due timers */

/* Packing and helping (see pack.c): a worker that has had no idle moment
 * for SATURATED_NS is saturated; only then do its batches of wake-ups
 * wake another worker and its FIFO queue get stolen from, and only an
 * unsaturated worker with few queued takes the I/O work of higher
 * workers. */
#define SATURATED_NS 1000000

/* Per-worker state. Owner: the worker thread, unless a field says else. */
struct coru__worker {
    struct coru__deque dq;       /* work: push/pop (LIFO) by owner, grab by anyone */
    struct coru__deque yq;       /* yielded: push/grab (FIFO) by owner, grab by anyone */
    unsigned id;
    struct coru_co *lifo;        /* run-next slot, owner only */
    unsigned lifo_streak;        /* consecutive LIFO runs, owner only */
    struct coru_co *cur;         /* coroutine running now, owner only */
    _Atomic(struct coru_co *) cur_pub; /* cur, for the dump and the stall
                                    detector: owner writes (relaxed) at
                                    every switch, anyone reads */
    struct coru_co *prev;        /* coroutine just switched out, owner only */
    int post;                    /* what finish_switch does with `prev` */
    struct coru__ctx *sched_ctx; /* the thread's native context */
    struct coru__stack_pool pool;
    struct coru__engine *eng;    /* created on the worker thread */
    struct coru__theap timers;   /* armed and fired by the owner; disarmed by anyone */
    uint64_t tick;
    int64_t coarse_now;          /* coru__coarse_ns() as of the last
                                    TIMER_INTERVAL round or wake from idle;
                                    stamps parks (registry.h). Owner only */
    int64_t last_trim;           /* when coru__go_idle last trimmed the stack depot */
    uint32_t rng;
    bool spinning;               /* counted in coru__rt.nspinning */
    bool wake_fifo;              /* coru__ready queues FIFO, notify deferred
                                    (timer and I/O completion batches) */
    bool wake_pending;           /* a deferred notify is owed */
    bool packing;                /* handed its I/O work to a lower worker:
                                    neither steals nor spins until it finds
                                    work of its own or is notified */
    _Atomic uint64_t tick_pub;   /* tick, published every TIMER_INTERVAL
                                    ticks (owner) for the watchdog */
    _Atomic uint64_t tick_mark;  /* tick_pub as a watchdog last saw it
                                    (watchers write; a hint) */
    _Atomic int64_t idle_at;     /* when it last ran out of local work;
                                    owner writes, anyone reads (a hint) */
    struct coru__lock inbox_lock;/* guards inbox_head/tail */
    struct coru_co *inbox_head, *inbox_tail; /* coroutines handed to this
                                    worker by packing (linked by next) */
    struct coru__worker *migrate_to; /* POST_MIGRATE's target, owner only */
    _Atomic unsigned inbox_n;    /* their number: written under inbox_lock,
                                    read anywhere as a hint */
    bool idle_listed;            /* guarded by coru__rt.idle_lock */
    bool handed;                 /* unlisted by coru__inbox_give; coru__rt.idle_lock */
    struct coru__worker *idle_next; /* guarded by coru__rt.idle_lock */
    pthread_t thread;
    _Atomic int tid;             /* its kernel thread id, for the stall
                                    detector (monitor.c); 0 until it starts */
    struct coru_co *co_cache;    /* recycled coroutine structs, owner only */
    size_t co_cache_n;
    _Atomic uint64_t spawned, finished; /* termination count: written by the
                                           owner, summed by idle workers */
    struct {
        _Atomic uint64_t switches, spawns, steals, parks, wakeups, sleeps, handoffs, timer_steals, moves;
    } st;                        /* written by the owner only, read by anyone */
} CORU_ALIGNED_CL;

/* The run. One exists (coru_run refuses a second); it is defined in
 * run.c. */
struct coru__rt {
    /* read-mostly */
    _Atomic int state; /* 0 idle, 1 running */
    unsigned n;
    struct coru__worker *w;
    _Atomic bool stop;
    _Atomic int start_err;
    _Atomic bool start_engine_failed; /* start_err is a worker's engine
                                         setup error */
    pthread_barrier_t start_bar, open_bar, stop_bar;

    /* Global queue: a growable ring of pointers (no walking of cold
     * coroutine structs), under gq_lock. */
    CORU_ALIGNED_CL struct coru__lock gq_lock;
    struct coru_co **gq_buf;
    size_t gq_cap, gq_head;
    /* What the ring could not take when it could not grow (no memory),
     * linked through co->next, FIFO; taken once the ring is empty. */
    struct coru_co *gq_spill_head, *gq_spill_tail;
    size_t gq_spill_len;
    _Atomic size_t gq_len; /* written under gq_lock; read racily as a hint */

    CORU_ALIGNED_CL pthread_mutex_t idle_lock;
    struct coru__worker *idle_head;
    _Atomic unsigned nidle;

    CORU_ALIGNED_CL _Atomic unsigned nspinning;
    _Atomic unsigned nunwatched; /* workers asleep without the watchdog;
                                    each counts itself (a hint) */

    /* coroutines spawned from plain threads (and coru_run's main), for
     * the termination count; see coru__quiescent() */
    CORU_ALIGNED_CL _Atomic uint64_t ext_spawned;
    /* Spawns from plain threads against the end of the run (see
     * coru__ext_spawn_begin): ext_open is EXT_NOT_YET until the workers
     * have started, EXT_OPEN while plain threads may spawn, EXT_CLOSED
     * once the run has decided to stop; ext_lock guards it. */
    pthread_mutex_t ext_lock;
    int ext_open;

    pthread_mutex_t stats_lock; /* guards w[] lifetime against coru_stats */
    struct coru_stats last;
};
extern struct coru__rt coru__rt;

/* ---------------------------------------------------------------- shared helpers
 *
 * Static inline: small helpers that more than one of the scheduler's
 * files calls, most of them on the path of every switch, spawn or
 * wake-up, where a call would cost more than they do. The out-of-line
 * part of each (a full deque, a non-empty queue) stays in its file. */

/* Whether w has had no idle moment for SATURATED_NS: then it cannot take
 * more (packing skips it), a small backlog of it is worth another worker
 * (end_batch), and its FIFO queue may be stolen from. idle_at is written
 * by the owner when it runs out of local work and when it wakes, and is
 * INT64_MAX while it sleeps (a sleeping worker is not saturated). */
static inline bool saturated(struct coru__worker *w, int64_t now)
{
    int64_t at = atomic_load_explicit(&w->idle_at, memory_order_relaxed);
    return at != INT64_MAX && now - at > SATURATED_NS;
}

/* Whether some worker sleeps without its watchdog (it went to sleep
 * while every other worker was idle): it would not notice this worker
 * getting stuck behind a long computation. */
static inline bool unwatched_sleeper(void)
{
    return atomic_load_explicit(&coru__rt.nunwatched, memory_order_relaxed) != 0;
}

/* A batch left q coroutines queued on w: wake another worker if w is
 * saturated (it needs help now) or some sleeper has no watchdog (it
 * could not help later). */
static inline bool batch_wants_help(struct coru__worker *w, size_t q)
{
    return q >= 2 && (saturated(w, coru__now_ns()) || unwatched_sleeper());
}

/* gq.c: adds n coroutines, in order, at the tail of the global queue or
 * (front) ahead of everything queued. Any thread. */
void coru__gq_add(struct coru_co **cos, size_t n, bool front);

/* Pushes onto one of w's deques; when full, moves half of it plus co to
 * the global queue (Go's runqputslow): to its tail, except when a batch
 * of wake-ups (timers, completions) overflows the FIFO queue: that goes
 * to the front, as it has waited already. (Not a yield's overflow: a
 * million coroutines yielding in a loop would then keep the front and
 * starve whatever waits at the tail.) Owner only. */
static inline void push_local(struct coru__worker *w, struct coru__deque *d, struct coru_co *co)
{
    if (likely(coru__deque_push(d, co))) return;
    void *batch[DEQUE_CAP / 2 + 1];
    size_t n = coru__deque_grab(d, batch, DEQUE_CAP / 2);
    batch[n++] = co;
    coru__gq_add((struct coru_co **)batch, n, d == &w->yq && w->wake_fifo);
}

/* At the tail of the global queue. Any thread. */
static inline void gq_push(struct coru_co **cos, size_t n)
{
    coru__gq_add(cos, n, false);
}

/* gq.c: a fair share of the global queue (see there). Worker only. */
struct coru_co *coru__gq_take(struct coru__worker *w, size_t most);
/* Its hint test inline: the global queue is mostly empty. */
static inline struct coru_co *gq_take(struct coru__worker *w, size_t most)
{
    if (atomic_load_explicit(&coru__rt.gq_len, memory_order_relaxed) == 0) return NULL;
    return coru__gq_take(w, most);
}

/* pack.c: moves w's inbox to its FIFO queue. Owner only. */
void coru__inbox_drain(struct coru__worker *w);
/* Its hint test inline: the inbox is mostly empty. A give that this
 * racy read misses is seen at the next drain (the giver wakes w if it
 * sleeps). */
static inline void inbox_drain(struct coru__worker *w)
{
    if (atomic_load_explicit(&w->inbox_n, memory_order_relaxed)) coru__inbox_drain(w);
}

/* Batches of wake-ups: due timers, I/O completions. The coroutines they
 * wake go to the FIFO yield queue, not the run-next slot, so timers due
 * together run in deadline order and completions in arrival order (LIFO
 * would let each new batch bury the previous one and starve its oldest
 * entries: the tail latency of a busy server). The notify of the idling
 * protocol (S2-S3) runs once after the batch, which is enough: it follows
 * every push (S1) of the batch. Owner only. */
static inline void begin_batch(struct coru__worker *w)
{
    w->wake_fifo = true;
}

/* ---------------------------------------------------------------- each file's calls */

/* sched.c: the run loop and switching */
void coru__worker_set_self(struct coru__worker *w); /* this thread's worker (NULL: none) */
void coru__sched_loop(struct coru__worker *w);  /* worker w's loop, until the run ends */
void coru__schedule_new(struct coru_co *co);    /* makes a new coroutine runnable (coro.c) */
void coru__co_started(void);                    /* first code of a new coroutine (coro.c) */
void coru__exit_switch(void);                   /* a coroutine's last switch (coro.c) */

/* idle.c: the idle and wake protocol */
void coru__notify(void);                        /* S2-S3: wakes an idle worker if none spins */
void coru__stop_spinning(struct coru__worker *w);       /* a spinner found others' work */
void coru__stop_spinning_local(struct coru__worker *w); /* ... work of its own */
void coru__go_idle(struct coru__worker *w);     /* I1-I4: until there may be work */
void coru__idle_unlist(struct coru__worker *w); /* off the idle list; idle_lock held */
void coru__stop_all(void);                      /* the run ends: wakes every sleeper */

/* pack.c: inboxes and packing */
void coru__inbox_give(struct coru__worker *t, struct coru_co **cos, size_t n); /* any worker */
size_t coru__inbox_take(struct coru__worker *v, void **out, size_t max);       /* owner or thief */
bool coru__pack_handoff(struct coru__worker *w); /* w's woken I/O work to a lower worker */

/* gq.c: the global queue (and coru__gq_add, coru__gq_take above) */
void coru__gq_init(void); /* coru_run, before the workers start */
void coru__gq_drop(void); /* a run that never started: ends what is queued */
void coru__gq_fini(void); /* coru_run, after the workers are joined */

/* run.c: termination and spawns from plain threads */
bool coru__quiescent(void);      /* every coroutine spawned has finished */
void coru__try_stop(void);       /* stops the run if it still is quiescent */
void coru__count_spawn(void);    /* a spawn, before its coroutine is published */
int coru__ext_spawn_begin(void); /* a plain thread's spawn: 0, or -EPERM */
void coru__ext_spawn_end(void);

/* coro.c: coroutine structs */
void coru__co_entry(void *p);
void coru__co_finished(struct coru__worker *w, struct coru_co *co);
void coru__co_cache_drain(struct coru__worker *w);

#endif
