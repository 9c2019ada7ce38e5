/* coru_run and the workers' lifecycle: start, termination, spawns from
 * plain threads against the end of the run, and stats.
 *
 * Invariants:
 *   - The run stops when the coroutines spawned equal those finished,
 *     and not before: no coroutine is dropped. Each worker counts its own
 *     spawns and finishes (plain counters, no shared cache line on the
 *     hot path); an idle worker sums them (coru__quiescent()).
 *   - No coroutine is queued after the run decided to end: a plain
 *     thread spawns only while ext_open is EXT_OPEN, under ext_lock, and
 *     coru__try_stop closes it under the same lock (see
 *     coru__ext_spawn_begin).
 *   - No coroutine runs before every worker has started (start_bar), and
 *     no engine is destroyed before every worker has left its scheduler
 *     loop and quiesced its engine (stop_bar), so no wake targets a
 *     destroyed engine.
 *   - coru__rt's per-run state is set up here before the workers start
 *     and torn down after they are joined; coru__rt.w and coru__rt.last
 *     change under stats_lock, against coru_stats from any thread.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "io/engine.h"
#include "sched/chaos.h"
#include "sched/dump.h"
#include "sched/lock.h"
#include "sched/rt.h"

enum { EXT_NOT_YET = 0, EXT_OPEN, EXT_CLOSED };

struct coru__rt coru__rt = {
    .idle_lock = PTHREAD_MUTEX_INITIALIZER,
    .ext_lock = PTHREAD_MUTEX_INITIALIZER,
    .stats_lock = PTHREAD_MUTEX_INITIALIZER,
    .last = {.engine = "none"},
};

/* Counts a spawn for the termination check. Before the coroutine is
 * published, so that whoever sees it finish also sees it spawned. */
void coru__count_spawn(void)
{
    struct coru__worker *w = coru__worker_self();
    if (w)
        atomic_store_explicit(&w->spawned, atomic_load_explicit(&w->spawned, memory_order_relaxed) + 1,
                              memory_order_relaxed); /* owner only; published by the queue push (release) */
    else
        atomic_fetch_add_explicit(&coru__rt.ext_spawned, 1, memory_order_seq_cst);
}

/* Whether every coroutine spawned has finished. Reads all finish counts,
 * then all spawn counts: counts only grow, and a finish is counted after
 * its spawn (happens-before through the queue), so if the sums agree
 * there was a moment between the two passes when none was alive; after
 * that moment none can appear (spawns come from live coroutines, or from
 * plain threads, which coru__try_stop excludes by re-checking under
 * ext_lock). */
bool coru__quiescent(void)
{
    uint64_t fin = 0, sp = 0;
    for (unsigned i = 0; i < coru__rt.n; i++)
        fin += atomic_load_explicit(&coru__rt.w[i].finished,
                                    memory_order_seq_cst); /* pairs with the release in finish_switch */
    for (unsigned i = 0; i < coru__rt.n; i++)
        sp += atomic_load_explicit(&coru__rt.w[i].spawned, memory_order_seq_cst);
    sp += atomic_load_explicit(&coru__rt.ext_spawned, memory_order_seq_cst);
    return sp == fin;
}

/* The end of the run against spawns from plain threads. A plain thread
 * spawns between coru__ext_spawn_begin and _end, holding ext_lock, and
 * only while ext_open is EXT_OPEN; the run stops only in coru__try_stop,
 * which closes ext_open and raises `stop` under the same lock after
 * finding the run quiescent under it. So a plain thread's spawn either completes (its
 * coroutine counted in ext_spawned and queued) before the terminator's
 * check, which then sees it alive and does not stop, or finds the run
 * closed and fails with -EPERM: no coroutine is queued after the run
 * decided to end (it would be dropped, and the queue it was pushed to is
 * freed when coru_run returns). Coroutines spawned by coroutines need no
 * lock: their parent is alive, so the run cannot be quiescent. */
int coru__ext_spawn_begin(void)
{
    pthread_mutex_lock(&coru__rt.ext_lock);
    if (coru__rt.ext_open == EXT_OPEN) return 0;
    pthread_mutex_unlock(&coru__rt.ext_lock);
    return -EPERM;
}

void coru__ext_spawn_end(void)
{
    pthread_mutex_unlock(&coru__rt.ext_lock);
}

/* Stops the run if it is still quiescent with no plain thread spawning. */
void coru__try_stop(void)
{
    pthread_mutex_lock(&coru__rt.ext_lock);
    if (coru__quiescent()) {
        coru__rt.ext_open = EXT_CLOSED;
        coru__stop_all();
    }
    pthread_mutex_unlock(&coru__rt.ext_lock);
}

/* Worker 0, once every worker has started and before any runs a
 * coroutine: plain threads may spawn from now on. */
static void ext_open_run(void)
{
    pthread_mutex_lock(&coru__rt.ext_lock);
    coru__rt.ext_open = EXT_OPEN;
    pthread_mutex_unlock(&coru__rt.ext_lock);
}

/* ---------------------------------------------------------------- workers */

/* The launch gate: coru_run holds it (write) while it starts the worker
 * threads, and each started thread passes it (read) before anything
 * else, so that the barriers can be set up for the threads that did
 * start once their number is known (a pthread_create may fail). */
static pthread_rwlock_t launch_gate = PTHREAD_RWLOCK_INITIALIZER;

static void *worker_main(void *p)
{
    struct coru__worker *w = p;
    if (w->id != 0) {
        pthread_rwlock_rdlock(&launch_gate);
        pthread_rwlock_unlock(&launch_gate);
    }
    coru__worker_set_self(w);
    coru__chaos_thread(w->id);
    atomic_store_explicit(&w->tid, (int)gettid(), memory_order_relaxed);
    int rc = coru__stack_thread_init();
    bool eng = false;
    if (!rc) eng = (rc = coru__engine_create(&w->eng)) != 0;
    if (rc) {
        int z = 0;
        if (atomic_compare_exchange_strong(&coru__rt.start_err, &z, rc) && eng)
            atomic_store(&coru__rt.start_engine_failed, true);
    }
    w->sched_ctx = coru__ctx_thread();
    pthread_barrier_wait(&coru__rt.start_bar);
    /* Every worker has started (or the run failed). Plain threads may
     * spawn from now on, and no coroutine runs before that: the main
     * coroutine's threads can spawn as soon as it runs. */
    if (w->id == 0 && !atomic_load(&coru__rt.start_err)) ext_open_run();
    pthread_barrier_wait(&coru__rt.open_bar);
    if (!atomic_load(&coru__rt.start_err)) coru__sched_loop(w);
    if (w->eng) coru__engine_quiesce(w->eng); /* multishots armed on our ring */
    /* All workers agree the run is over before any engine goes away, so
     * no wake can target a destroyed engine. */
    pthread_barrier_wait(&coru__rt.stop_bar);
    if (w->eng) coru__engine_destroy(w->eng);
    w->eng = NULL;
    coru__theap_fini(&w->timers);
    coru__stack_pool_fini(&w->pool);
    coru__co_cache_drain(w);
    coru__stack_thread_fini();
    coru__worker_set_self(NULL);
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
    memset(&s->worker[coru__rt.n], 0, sizeof s->worker - coru__rt.n * sizeof s->worker[0]);
    for (unsigned i = 0; i < coru__rt.n; i++) {
        struct coru__worker *w = &coru__rt.w[i];
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

unsigned coru__sched_current(struct coru_co **cur, const char **engine)
{
    pthread_mutex_lock(&coru__rt.stats_lock);
    unsigned n = coru__rt.w ? coru__rt.n : 0;
    for (unsigned i = 0; i < n; i++) cur[i] = atomic_load_explicit(&coru__rt.w[i].cur_pub, memory_order_relaxed);
    *engine = coru__engine_name(coru__engine_kind());
    pthread_mutex_unlock(&coru__rt.stats_lock);
    return n;
}

struct coru__worker *coru__sched_worker(unsigned i)
{
    return &coru__rt.w[i];
}

unsigned coru__sched_nworkers(void)
{
    return coru__rt.n;
}

uint64_t coru__sched_live(void)
{
    uint64_t fin = 0, sp = atomic_load_explicit(&coru__rt.ext_spawned, memory_order_relaxed);
    for (unsigned i = 0; i < coru__rt.n; i++) fin += atomic_load_explicit(&coru__rt.w[i].finished, memory_order_relaxed);
    for (unsigned i = 0; i < coru__rt.n; i++) sp += atomic_load_explicit(&coru__rt.w[i].spawned, memory_order_relaxed);
    return sp > fin ? sp - fin : 0;
}

int coru_stats(struct coru_stats *out)
{
    if (!out) return -EINVAL;
    pthread_mutex_lock(&coru__rt.stats_lock);
    if (coru__rt.w) {
        out->workers = coru__rt.n;
        out->engine = coru__engine_name(coru__engine_kind());
        snapshot_stats(out);
    } else {
        *out = coru__rt.last;
    }
    pthread_mutex_unlock(&coru__rt.stats_lock);
    return 0;
}

int coru_run(coru_fn fn, void *arg, const struct coru_opts *opts)
{
    struct coru_opts o = {0};
    if (opts) o = *opts;
    if (!fn || o.workers > 256 || o.io > CORU_IO_EPOLL) return -EINVAL;
    if (o.stack_size > ((size_t)1 << 30)) return -EINVAL;
    if (o.deadlock > CORU_DEADLOCK_OFF || o.dump_signal < 0 || o.dump_signal >= NSIG) return -EINVAL;
    if (coru__worker_self()) return -EBUSY;
    int idle = 0;
    if (!atomic_compare_exchange_strong(&coru__rt.state, &idle, 1)) return -EBUSY;
again:
    atomic_store(&coru__rt.start_engine_failed, false);

    unsigned n = o.workers ? o.workers : default_workers();
    if (n > 256) n = 256;
    int rc = coru__engine_select((int)o.io);
    if (rc < 0) goto out_state;
    coru__stack_set_default(o.stack_size);
    coru__engine_run_begin(); /* before any worker starts */
    coru__chaos_begin();      /* test builds: this run's chaos seed, if any */

    struct coru__worker *ws = coru__aligned_alloc(CORU_CACHELINE, sizeof *ws * n);
    if (!ws) {
        rc = -ENOMEM;
        goto out_state;
    }
    memset(ws, 0, sizeof *ws * n);
    for (unsigned i = 0; i < n; i++) {
        ws[i].id = i;
        coru__lock_init(&ws[i].inbox_lock);
        atomic_init(&ws[i].idle_at, coru__now_ns());
        ws[i].coarse_now = coru__coarse_ns(); /* parks before its first round */
        atomic_init(&ws[i].inbox_n, 0);
        /* steal victims: from the clock, or (test builds) the chaos seed */
        ws[i].rng = coru__chaos_worker_rng(i, 0x9e3779b9u * (i + 1) ^ (uint32_t)coru__now_ns());
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
    pthread_mutex_lock(&coru__rt.stats_lock);
    coru__rt.n = n;
    coru__rt.w = ws;
    pthread_mutex_unlock(&coru__rt.stats_lock);
    coru__gq_init();
    coru__rt.idle_head = NULL;
    atomic_store(&coru__rt.nidle, 0);
    atomic_store(&coru__rt.nspinning, 0);
    atomic_store(&coru__rt.ext_spawned, 0);
    pthread_mutex_lock(&coru__rt.ext_lock);
    coru__rt.ext_open = EXT_NOT_YET;
    pthread_mutex_unlock(&coru__rt.ext_lock);
    atomic_store(&coru__rt.stop, false);
    atomic_store(&coru__rt.start_err, 0);

    /* SIGPIPE: blocked on every worker for the run (the threads started
     * below inherit the mask), so that a write to a pipe whose reader has
     * gone fails with -EPIPE instead of killing the process (sockets use
     * MSG_NOSIGNAL; pipes have no such flag, and an io_uring write runs
     * on the worker that submits it). The disposition is not touched. */
    struct coru__sigpipe spg;
    coru__sigpipe_hold(&spg);
    /* The dump signal, blocked on every worker for the run (inherited as
     * SIGPIPE's is): the kernel gives it to the monitor thread, which has
     * it unblocked, instead of a worker asleep in its engine (monitor.c). */
    int dump_sig = coru__monitor_signal(&o);
    sigset_t dump_set, dump_old;
    sigemptyset(&dump_set);
    if (dump_sig) sigaddset(&dump_set, dump_sig);
    pthread_sigmask(SIG_BLOCK, &dump_set, &dump_old);

    struct coru_co *main_co;
    struct coru_attr main_attr = {.name = "main"};
    rc = coru__spawn(&main_co, fn, arg, &main_attr, 1, (uintptr_t)__builtin_return_address(0), NULL);
    unsigned started = 1;
    ws[0].thread = pthread_self();
    pthread_rwlock_wrlock(&launch_gate);
    for (unsigned i = 1; i < n && !rc; i++) {
        /* A thread that cannot be started fails the run (-EAGAIN, as
         * pthread_create says): the ones started see start_err and end
         * without running anything. */
        int e = coru__pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]);
        if (e) {
            int z = 0;
            atomic_compare_exchange_strong(&coru__rt.start_err, &z, -(e == EAGAIN || e == ENOMEM ? EAGAIN : e));
            break;
        }
        started++;
    }
    if (rc) started = 0; /* no main coroutine: no worker runs */
    else {
        pthread_barrier_init(&coru__rt.start_bar, NULL, started);
        pthread_barrier_init(&coru__rt.open_bar, NULL, started);
        pthread_barrier_init(&coru__rt.stop_bar, NULL, started);
    }
    pthread_rwlock_unlock(&launch_gate);
    if (!rc) {
        /* Without a monitor the run goes on, only unwatched. */
        int mrc = coru__monitor_start(&o);
        if (mrc) fprintf(stderr, "coru: no monitor thread (%d): no stall or deadlock reports\n", mrc);
        worker_main(&ws[0]);
        for (unsigned i = 1; i < started; i++) pthread_join(ws[i].thread, NULL);
        coru__monitor_stop();
        rc = atomic_load(&coru__rt.start_err);
        if (rc) {
            coru__gq_drop(); /* the run never started: the main coroutine is still queued */
        }
    }
    if (started) {
        pthread_barrier_destroy(&coru__rt.start_bar);
        pthread_barrier_destroy(&coru__rt.open_bar);
        pthread_barrier_destroy(&coru__rt.stop_bar);
    }
    if (dump_sig && !sigismember(&dump_old, dump_sig)) {
        /* One sent to this thread itself (raise) is pending here: the run
         * is over and the handler gone, so it is discarded, not acted on. */
        struct timespec zero = {0, 0};
        sigset_t pend;
        while (!sigpending(&pend) && sigismember(&pend, dump_sig) && sigtimedwait(&dump_set, NULL, &zero) > 0) {
        }
        pthread_sigmask(SIG_UNBLOCK, &dump_set, NULL);
    }
    /* A SIGPIPE a write on this thread raised during the run is pending,
     * blocked: discarded, as the other workers' went with their threads.
     * This gives the thread its whole mask back: after the drain above. */
    coru__sigpipe_release(&spg, true);

    pthread_mutex_lock(&coru__rt.stats_lock);
    coru__rt.last.workers = n;
    coru__rt.last.engine = coru__engine_name(coru__engine_kind());
    snapshot_stats(&coru__rt.last);
    for (unsigned i = 0; i < n; i++) {
        coru__deque_fini(&ws[i].dq);
        coru__deque_fini(&ws[i].yq);
    }
    coru__gq_fini();
    coru__stack_depot_trim(); /* the run's cached stacks go back to the OS */
    free(ws);
    coru__rt.w = NULL;
    pthread_mutex_unlock(&coru__rt.stats_lock);
out_state:
    /* CORU_IO_AUTO picked io_uring (the probe ring worked), but a worker
     * could not set up its own ring (no memory, no fd, a per-user limit
     * of rings): nothing ran, so the run starts again on epoll, as AUTO
     * promises, still holding the runtime (state) so that no other
     * coru_run slips in between. */
    if (rc < 0 && atomic_load(&coru__rt.start_engine_failed) && coru__engine_auto_uring()) {
        o.io = CORU_IO_EPOLL;
        goto again;
    }
    atomic_store(&coru__rt.state, 0);
    return rc;
}
