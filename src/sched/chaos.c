/* Chaos mode (test builds only; see chaos.h for what it randomises and
 * how it is enabled): the seed, and one random stream per thread.
 *
 * Invariants:
 *   - The seed and coru__chaos_active change only in coru__chaos_begin,
 *     on coru_run's thread before it starts the workers, so every worker
 *     reads one value for the whole run; relaxed is enough (pthread_create
 *     orders the store before the worker's first load).
 *   - A stream is thread-local and used by its thread only; the hooks
 *     never switch coroutines while they hold its state (the yield hook
 *     draws first and yields last), so a coroutine that migrates never
 *     writes another thread's stream.
 *   - A stream belongs to one run: `gen` tells a thread that kept its
 *     state from an earlier run (worker 0 is coru_run's own thread) to
 *     seed it again.
 */
#include "sched/chaos.h"

#include <stdlib.h>

#include "coru.h"

_Atomic bool coru__chaos_active;

static _Atomic uint64_t forced = CORU__CHAOS_FROM_ENV; /* coru__chaos_set's */
static _Atomic uint64_t seed;                          /* this run's; 0 off */
static _Atomic uint64_t gen;                           /* runs begun */
static _Atomic uint64_t others;                        /* streams of non-workers */

static __thread struct {
    uint64_t gen; /* the run this stream belongs to */
    uint64_t x;   /* xorshift64 state, never 0 */
} tls;

/* splitmix64: spreads a seed and a small index into a full state. */
static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z ? z : 1;
}

static uint64_t stream_seed(unsigned id)
{
    return mix(atomic_load_explicit(&seed, memory_order_relaxed) ^ mix(id));
}

void coru__chaos_set(uint64_t s)
{
    atomic_store_explicit(&forced, s, memory_order_relaxed);
}

uint64_t coru__chaos_seed(void)
{
    return atomic_load_explicit(&seed, memory_order_relaxed);
}

void coru__chaos_begin(void)
{
    uint64_t s = atomic_load_explicit(&forced, memory_order_relaxed);
    if (s == CORU__CHAOS_FROM_ENV) {
        const char *e = getenv("CORU_CHAOS_SEED");
        s = e ? strtoull(e, NULL, 0) : 0;
    }
    atomic_store_explicit(&seed, s, memory_order_relaxed);
    atomic_store_explicit(&coru__chaos_active, s != 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&gen, 1, memory_order_relaxed);
}

void coru__chaos_thread(unsigned id)
{
    tls.gen = atomic_load_explicit(&gen, memory_order_relaxed);
    tls.x = stream_seed(id);
}

uint32_t coru__chaos_worker_rng(unsigned id, uint32_t dflt)
{
    if (!coru__chaos_on()) return dflt;
    uint32_t r = (uint32_t)(stream_seed(id) >> 32); /* not the stream's own first draw */
    return r ? r : 1;
}

/* The calling thread's next draw. A thread that is not one of this run's
 * workers (a plain thread waking a coroutine) gets a stream of its own. */
static uint64_t draw(void)
{
    uint64_t g = atomic_load_explicit(&gen, memory_order_relaxed);
    if (tls.gen != g) {
        tls.gen = g;
        tls.x = stream_seed(1000 + (unsigned)atomic_fetch_add_explicit(&others, 1, memory_order_relaxed));
    }
    uint64_t x = tls.x; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return tls.x = x;
}

bool coru__chaos_one_in_(unsigned n)
{
    return draw() % n == 0;
}

int64_t coru__chaos_spin_ns_(int64_t dflt)
{
    switch (draw() % 4) {
    case 0: return 0; /* straight to sleep: the I1-I4 path every time */
    case 1: return dflt / 4;
    case 2: return dflt;
    default: return 4 * dflt;
    }
}

/* One wake in four leaves the run-next slot: half of those to the work
 * deque, where another worker may steal it, half to the FIFO queue,
 * behind everything already queued. */
int coru__chaos_ready_where_(void)
{
    uint64_t r = draw() % 8;
    return r == 0 ? CORU__CHAOS_DEQUE : r == 1 ? CORU__CHAOS_FIFO : CORU__CHAOS_RUN_NEXT;
}

/* One call in eight pauses for 1..64 spin-loop hints (well under a
 * microsecond to a few): long enough to let the other side of a race
 * move, short enough for a million cycles. */
void coru__chaos_delay_(void)
{
    uint64_t r = draw();
    if (r % 8) return;
    for (unsigned i = 0, n = 1 + (unsigned)((r >> 8) % 64); i < n; i++) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ volatile("yield");
#else
        __asm__ volatile("" ::: "memory");
#endif
    }
}

/* One call in eight yields. The draw comes before the switch: after it
 * the coroutine may run on another thread (see the invariants). */
void coru__chaos_yield_(void)
{
    if (draw() % 8 == 0) coru_yield();
}
