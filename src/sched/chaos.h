/* Chaos: a seeded randomisation of the scheduler's free choices, for test
 * builds only (CORU_TESTING, meson -Dtesting=true), as Go's race builds
 * randomise scheduling: so that tests cannot rely on one order, and so
 * that the windows where a park and a wake meet open wider and in more
 * combinations than an ordinary run ever shows.
 *
 * Enabled for a run by CORU_CHAOS_SEED=<n> in the environment (n != 0,
 * decimal or 0x hex), read by coru_run, or by coru__chaos_set() before
 * coru_run (tests; it overrides the environment). The same seed gives
 * every worker the same random stream (worker i's stream depends on the
 * seed and i only); the threads' interleaving is still the machine's, so
 * a seed replays the choices, not the whole run.
 *
 * What it randomises, each a choice the scheduler is free to make either
 * way (no invariant depends on which), at these hooks:
 *   - steal victims: each worker's xorshift state (sched.c's rnd) comes
 *     from the seed instead of the clock;           coru__chaos_worker_rng
 *   - how long an idle worker spins before it sleeps: 0, a quarter, one
 *     or four times SPIN_NS (0 sends it straight to the I1-I4 path of
 *     idle.c);                                      coru__chaos_spin_ns
 *   - where coru__ready puts a coroutine it wakes: the run-next slot (the
 *     default), the work deque (stealable: the wake crosses workers) or
 *     the FIFO queue, each followed by the S2-S3 notify; not within a
 *     batch of wake-ups (timers, I/O completions), which keeps its FIFO
 *     order;                                        coru__chaos_ready_where
 *   - a switch through the scheduler context instead of straight to the
 *     next local coroutine, and the FIFO queue's oldest run before the
 *     run-next slot and the work deque (as every GQ_POLL_INTERVAL ticks);
 *                                  coru__chaos_via_sched, coru__chaos_fifo_first
 *     (Not a steal while the worker has work of its own: stolen work goes
 *     to the work deque, ahead of the FIFO queue, and a worker stealing
 *     over and over starved its own timer wake-ups for seconds, a
 *     schedule the real scheduler never makes.)
 *   - short random pauses where park and wake race: before the park's
 *     commit CAS (finish_switch), before a wake's exchange (coru__ready),
 *     and between a waiter's registration and its park (waiter.c);
 *                                                   coru__chaos_delay
 *   - a yield right after a wait returns (no lock held, the coroutine
 *     RUNNING again: an ordinary yield point), which delays the woken
 *     coroutine's next step (its unlink, its unlock); not after a wait
 *     its deadline ended, since timers due together resume in deadline
 *     order (coru.h, "Time");                        coru__chaos_yield
 *
 * Release builds compile none of it: every hook below is then a static
 * inline constant (or empty), and chaos.c is not built.
 *
 * Threads: coru__chaos_set and coru__chaos_begin run before a run's
 * workers start (thread creation orders them); the hooks run on workers
 * (each with its own random stream, thread-local) or, for the delay, on
 * any thread.
 */
#ifndef CORU_SCHED_CHAOS_H
#define CORU_SCHED_CHAOS_H

#include <stdbool.h>
#include <stdint.h>

#ifdef CORU_TESTING

#include <stdatomic.h>

/* Whether the current run has chaos on (written by coru__chaos_begin
 * before the workers start; relaxed: thread creation publishes it). */
extern _Atomic bool coru__chaos_active;

static inline bool coru__chaos_on(void)
{
    return atomic_load_explicit(&coru__chaos_active, memory_order_relaxed);
}

/* Tests: the seed of the runs that follow (0: chaos off), overriding
 * CORU_CHAOS_SEED; CORU__CHAOS_FROM_ENV goes back to the environment. */
#define CORU__CHAOS_FROM_ENV UINT64_MAX
void coru__chaos_set(uint64_t seed);
/* The seed of the current run, or of the last one if none runs; 0: off. */
uint64_t coru__chaos_seed(void);

/* coru_run, before the workers start: reads the seed for this run. */
void coru__chaos_begin(void);
/* A worker thread, first thing: seeds its stream from the seed and id. */
void coru__chaos_thread(unsigned id);
/* The initial state of worker id's steal rng: dflt with chaos off. */
uint32_t coru__chaos_worker_rng(unsigned id, uint32_t dflt);

/* The out-of-line halves of the hooks below (chaos on only). */
int64_t coru__chaos_spin_ns_(int64_t dflt);
int coru__chaos_ready_where_(void);
bool coru__chaos_one_in_(unsigned n);
void coru__chaos_delay_(void);
void coru__chaos_yield_(void);

static inline int64_t coru__chaos_spin_ns(int64_t dflt)
{
    return coru__chaos_on() ? coru__chaos_spin_ns_(dflt) : dflt;
}

enum { CORU__CHAOS_RUN_NEXT = 0, CORU__CHAOS_DEQUE = 1, CORU__CHAOS_FIFO = 2 };
static inline int coru__chaos_ready_where(void)
{
    return coru__chaos_on() ? coru__chaos_ready_where_() : CORU__CHAOS_RUN_NEXT;
}

static inline bool coru__chaos_via_sched(void)
{
    return coru__chaos_on() && coru__chaos_one_in_(16);
}

static inline bool coru__chaos_fifo_first(void)
{
    return coru__chaos_on() && coru__chaos_one_in_(32);
}

static inline void coru__chaos_delay(void)
{
    if (coru__chaos_on()) coru__chaos_delay_();
}

static inline void coru__chaos_yield(void)
{
    if (coru__chaos_on()) coru__chaos_yield_();
}

#else /* release: nothing */

static inline void coru__chaos_begin(void) {}
static inline void coru__chaos_thread(unsigned id) { (void)id; }
static inline uint32_t coru__chaos_worker_rng(unsigned id, uint32_t dflt)
{
    (void)id;
    return dflt;
}
static inline int64_t coru__chaos_spin_ns(int64_t dflt) { return dflt; }
enum { CORU__CHAOS_RUN_NEXT = 0, CORU__CHAOS_DEQUE = 1, CORU__CHAOS_FIFO = 2 };
static inline int coru__chaos_ready_where(void) { return CORU__CHAOS_RUN_NEXT; }
static inline bool coru__chaos_via_sched(void) { return false; }
static inline bool coru__chaos_fifo_first(void) { return false; }
static inline void coru__chaos_delay(void) {}
static inline void coru__chaos_yield(void) {}

#endif
#endif
