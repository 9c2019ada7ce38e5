/* test_wake: no lost and no double wake-ups. Coroutines on four workers
 * (two cores: most wakes cross workers, or race a worker's sleep) park
 * and are woken through every waking path: channel hand-offs (unbuffered
 * and buffered), select (woken by one of its channels, or by a close),
 * mutex hand-off, cond signal and broadcast, sema, waitgroup, join,
 * timers (sleeps, deadlines, deadlines racing a partner), I/O completion
 * on both engines, and coru_cancel of a coroutine parked in each kind of
 * wait. About three million park/wake cycles in all in a plain build
 * (sanitizer builds run a tenth to a half of that; see SCALE).
 *
 * How a wake is counted exactly once: every wake carries an id. The
 * waker marks it given, the woken marks it received, and after the run
 * every id must be given once and received once (a lost wake shows as a
 * hang, a double one as an id received twice, a wait that returned
 * without a wake as an id nobody gave); each path also checks what its
 * object promises (one owner, a unit per release, one return per
 * broadcast generation, -ECANCELED once). Besides, coru_stats' parks and
 * wakeups of the run must be equal: every park was woken once. A path
 * that hangs is caught by a deadline far in the future on the crew's
 * wait group: the test then fails naming the path and its counts (after
 * a grouped coru_dump on stderr), and cancels the crew to end the run.
 *
 * The same paths run again under the scheduler's chaos mode
 * (sched/chaos.h: seeded steal victims, spin lengths, wake placement,
 * switches through the scheduler, pauses in the park/wake races, yields
 * after waits) with three seeds, or with the one in CORU_CHAOS_SEED.
 * The seeds are printed before the runs and in every failure message:
 *   CORU_CHAOS_SEED=<seed> test_wake --filter 'wake_chaos/<path>'
 * replays one. Each path prints one line with its counts and time. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common.h"
#include "coru.h"
#include "helpers.h" /* coru_run: io_uring runs use AUTO under qemu-user */
#include "sched/chaos.h"
#include "sched/sched.h" /* a coroutine's pstate: wait until it parked */
#include "sched/sync.h"

#define US 1000LL
#define MS (1000 * US)
#define WORKERS 4

/* Sanitizers run every path at a fraction of the plain counts (TSan
 * costs ~10x per synchronising operation), and the paths that spawn a
 * coroutine per wake (join, cancel, select's close rounds) at a quarter
 * of that again (a TSan fiber per coroutine is dear); chaos runs at
 * half, per seed. */
#if defined(CORU_TSAN)
#define SCALE 10
#elif defined(CORU_ASAN)
#define SCALE 2
#else
#define SCALE 1
#endif
#define SPAWN_SCALE (SCALE > 1 ? 4 : 1)
#define CHAOS_DIV 2
#define CHAOS_SEEDS 3

/* Hang detector only: no path comes near it unless it lost a wake. */
#if SCALE > 1
#define HANG_NS (240 * 1000 * MS)
#else
#define HANG_NS (60 * 1000 * MS)
#endif

static const char *ename(enum coru_io io)
{
    return io == CORU_IO_EPOLL ? "epoll" : io == CORU_IO_URING ? "io_uring" : "auto";
}

/* ------------------------------------------------------------ the run's record */

/* What one path's run found. Written by any coroutine; read by the test
 * thread after coru_run returned (thread joins order it). */
static struct {
    const char *path;
    enum coru_io io;
    const char *engine; /* the engine the run chose, once it runs */
    uint64_t seed;
    _Atomic int bad;
    char msg[1024];
} cx;

/* The first failure of a run, with the path, engine and seed. Never
 * asserts on a worker: the run goes on to its end (or its cancel). */
__attribute__((format(printf, 1, 2))) static void flag(const char *fmt, ...)
{
    if (atomic_fetch_add(&cx.bad, 1) != 0) return;
    int k = snprintf(cx.msg, sizeof cx.msg, "path=%s engine=%s seed=%llu: ", cx.path,
                     cx.engine ? cx.engine : ename(cx.io), (unsigned long long)cx.seed);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cx.msg + k, sizeof cx.msg - (size_t)k, fmt, ap);
    va_end(ap);
    fprintf(stderr, "test_wake: %s\n", cx.msg);
}

/* The ledger: per wake id, how often it was given and received. relaxed:
 * counts, read after the run. */
static struct {
    size_t n;
    bool partial; /* ids may go unused (a deadline beat the partner) */
    _Atomic unsigned char *given, *got;
    _Atomic uint64_t ngiven, ngot;
} L;

static void give(size_t id)
{
    if (id >= L.n) {
        flag("wake id %zu given, out of range (%zu)", id, L.n);
        return;
    }
    atomic_fetch_add_explicit(&L.given[id], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&L.ngiven, 1, memory_order_relaxed);
}

static void got(size_t id)
{
    if (id >= L.n) {
        flag("wake id %zu received, out of range (%zu)", id, L.n);
        return;
    }
    atomic_fetch_add_explicit(&L.got[id], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&L.ngot, 1, memory_order_relaxed);
}

static unsigned long long ngiven(void)
{
    return (unsigned long long)atomic_load(&L.ngiven);
}

static unsigned long long ngot(void)
{
    return (unsigned long long)atomic_load(&L.ngot);
}

/* A small per-coroutine generator for the tests' own choices. */
static uint64_t xs(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Yields until cond holds; a cancel (the hang detector's) ends the wait:
 * coru_sleep(0) yields and is a cancellation point. */
#define YIELD_UNTIL(cond, onfail)                                             \
    do {                                                                      \
        while (!(cond))                                                       \
            if (coru_sleep(0)) onfail;                                        \
    } while (0)

/* ------------------------------------------------------------ the crew */

/* The coroutines of one path: the main coroutine spawns them, waits for
 * all with the hang detector's deadline, and joins them. */
enum { CREW_MAX = 64 };
static struct {
    coru_t *h[CREW_MAX];
    struct {
        coru_fn fn;
        void *arg;
    } t[CREW_MAX];
    size_t n;
    coru_waitgroup *wg;
} crew;

/* Member i starts on worker i % WORKERS (stealing, and channels that
 * gather their users on one worker, move them on from there). */
static void *crew_body(void *p)
{
    size_t i = (size_t)(uintptr_t)p;
    coru__migrate((unsigned)(i % WORKERS));
    void *r = crew.t[i].fn(crew.t[i].arg);
    coru_waitgroup_done(crew.wg);
    return r;
}

static void crew_go(coru_fn fn, void *arg)
{
    if (crew.n == CREW_MAX) {
        flag("crew full");
        return;
    }
    size_t i = crew.n++;
    crew.t[i].fn = fn;
    crew.t[i].arg = arg;
    coru_waitgroup_add(crew.wg, 1);
    int rc = coru_spawn(&crew.h[i], crew_body, (void *)(uintptr_t)i, NULL);
    if (rc) {
        flag("spawn: %d", rc);
        coru_waitgroup_done(crew.wg);
        crew.n--;
    }
}

static void crew_wait(void)
{
    int rc = coru_waitgroup_wait_dl(crew.wg, coru_now() + HANG_NS);
    if (rc == -ETIMEDOUT) {
        flag("hung: %llu wakes given, %llu received of %zu ids; cancelling the crew of %zu", ngiven(), ngot(), L.n,
             crew.n);
        coru_dump(2, CORU_DUMP_GROUPED);
        for (size_t i = 0; i < crew.n; i++) coru_cancel(crew.h[i]);
    } else if (rc) {
        flag("crew wait: %d", rc);
    }
    for (size_t i = 0; i < crew.n; i++) coru_join(crew.h[i], NULL);
    crew.n = 0;
}

/* ------------------------------------------------------------ running a path */

typedef void (*path_fn)(size_t n);

struct path {
    const char *name;
    path_fn fn;
    size_t n;     /* wake ids in a plain run */
    bool partial; /* ids may go unused */
    bool engines; /* run on both engines (I/O), else on the default one */
    bool spawns;  /* spawns a coroutine per wake or so: SPAWN_SCALE */
};

static path_fn cur_fn;
static size_t cur_n;

static void *path_main(void *arg)
{
    (void)arg;
    struct coru_stats st;
    if (coru_stats(&st) == 0) cx.engine = st.engine; /* a static string */
    if (coru_waitgroup_create(&crew.wg)) {
        flag("waitgroup_create");
        return NULL;
    }
    cur_fn(cur_n);
    coru_waitgroup_destroy(crew.wg);
    return NULL;
}

/* Runs one path on engine io, with chaos seed `seed` (0: as the
 * environment says), and checks the ledger and the stats. */
static uint64_t env_seed(void)
{
    const char *env = getenv("CORU_CHAOS_SEED");
    return env ? strtoull(env, NULL, 0) : 0;
}

static void run_path(const struct path *p, size_t n, enum coru_io io, uint64_t seed)
{
    memset(&cx, 0, sizeof cx);
    cx.path = p->name;
    cx.io = io;
    cx.seed = seed ? seed : env_seed(); /* what coru_run will take */
    coru__chaos_set(seed ? seed : CORU__CHAOS_FROM_ENV);
    L.n = n;
    L.partial = p->partial;
    L.given = calloc(n, 1);
    L.got = calloc(n, 1);
    cr_assert(L.given && L.got);
    atomic_store(&L.ngiven, 0);
    atomic_store(&L.ngot, 0);
    cur_fn = p->fn;
    cur_n = n;

    struct coru_opts o = {.workers = WORKERS, .io = io};
    int64_t t0 = coru_now();
    int rc = coru_run(path_main, NULL, &o);
    double secs = (double)(coru_now() - t0) / 1e9;
    cr_assert_eq(coru__chaos_seed(), cx.seed);
    cr_assert_eq(rc, 0, "path=%s engine=%s seed=%llu: coru_run: %d", p->name, ename(io),
                 (unsigned long long)cx.seed, rc);
    struct coru_stats st;
    cr_assert_eq(coru_stats(&st), 0);
    char per[64];
    int k = 0;
    for (unsigned i = 0; i < st.workers && k < (int)sizeof per; i++)
        k += snprintf(per + k, sizeof per - (size_t)k, "%s%llu", i ? "/" : "",
                      (unsigned long long)st.worker[i].parks);
    fprintf(stderr,
            "wake: %-15s %-8s seed=%-20llu %7llu wakes given, %7llu received, %7llu parks (%s), %7llu wakeups, "
            "%llu steals, %.2f s\n",
            p->name, st.engine, (unsigned long long)cx.seed, ngiven(), ngot(), (unsigned long long)st.total.parks,
            per, (unsigned long long)st.total.wakeups, (unsigned long long)st.total.steals, secs);
    cr_assert_eq(atomic_load(&cx.bad), 0, "%s", cx.msg);

    /* every id given once and received once (partial: both or neither) */
    for (size_t id = 0; id < n; id++) {
        unsigned g = L.given[id], r = L.got[id];
        bool ok = p->partial ? (g == r && g <= 1) : (g == 1 && r == 1);
        cr_assert(ok, "path=%s engine=%s seed=%llu: wake id %zu given %u times, received %u times "
                      "(%llu given, %llu received of %zu)",
                  p->name, st.engine, (unsigned long long)cx.seed, id, g, r, ngiven(), ngot(), n);
    }
    /* Every wake in these runs comes from a worker (no plain thread
     * wakes anyone), where coru__ready counts it: one wakeup per park. */
    cr_assert_eq(st.total.parks, st.total.wakeups,
                 "path=%s engine=%s seed=%llu: %llu parks but %llu wakeups", p->name, st.engine,
                 (unsigned long long)cx.seed, (unsigned long long)st.total.parks,
                 (unsigned long long)st.total.wakeups);
    cr_assert_gt(st.total.parks, 0, "path=%s: nothing parked", p->name);
    free(L.given);
    free(L.got);
}

static size_t scaled(const struct path *p, unsigned div)
{
    size_t n = p->n / SCALE / (p->spawns ? SPAWN_SCALE : 1) / div;
    return n < 64 ? 64 : n;
}

static void run_plain(const struct path *p)
{
    size_t n = scaled(p, 1);
    if (p->engines) {
        run_path(p, n, CORU_IO_URING, 0);
        run_path(p, n, CORU_IO_EPOLL, 0);
    } else {
        run_path(p, n, CORU_IO_AUTO, 0);
    }
}

/* The chaos seeds: CORU_CHAOS_SEED's alone, else three from the clock,
 * printed before anything runs so that a crash can be replayed too. */
static void run_chaos(const struct path *p)
{
    uint64_t seeds[CHAOS_SEEDS];
    size_t k = CHAOS_SEEDS;
    if (env_seed()) {
        seeds[0] = env_seed();
        k = 1;
    } else {
        uint64_t base = (uint64_t)coru_now() * 2654435761u;
        for (size_t i = 0; i < k; i++) seeds[i] = (base ^ (i * 0x9e3779b97f4a7c15ull)) | 1;
    }
    fprintf(stderr, "wake chaos %s: seed=", p->name);
    for (size_t i = 0; i < k; i++) fprintf(stderr, "%s%llu", i ? ",seed=" : "", (unsigned long long)seeds[i]);
    fprintf(stderr, " (replay: CORU_CHAOS_SEED=<seed> test_wake --filter 'wake_chaos/%s')\n", p->name);
    size_t n = scaled(p, CHAOS_DIV);
    for (size_t i = 0; i < k; i++) {
        if (p->engines) {
            run_path(p, n, CORU_IO_URING, seeds[i]);
            run_path(p, n, CORU_IO_EPOLL, seeds[i]);
        } else {
            /* the default engine, and epoll's eventfd wakes every other seed */
            run_path(p, n, i % 2 ? CORU_IO_EPOLL : CORU_IO_AUTO, seeds[i]);
        }
    }
    coru__chaos_set(CORU__CHAOS_FROM_ENV);
}

/* ------------------------------------------------------------ channels
 *
 * Four channels, two senders and two receivers on each: sender k sends
 * the ids k, k+8, k+16, ... on channel k/2; the last sender of a channel
 * closes it, and its receivers end at -EPIPE. Unbuffered, every hand-off
 * parks one side; buffered (4 slots), receivers park on empty and
 * senders on full. */

static struct {
    coru_chan *ch[4];
    _Atomic int senders_left[4];
    size_t n;
} pc;

static void *chan_sender(void *arg)
{
    size_t k = (size_t)(uintptr_t)arg;
    coru_chan *ch = pc.ch[k / 2];
    for (size_t id = k; id < pc.n; id += 8) {
        give(id);
        int rc = coru_chan_send(ch, &id);
        if (rc) {
            flag("send of %zu: %d", id, rc);
            return NULL;
        }
    }
    if (atomic_fetch_sub(&pc.senders_left[k / 2], 1) == 1) coru_chan_close(ch);
    return NULL;
}

static void *chan_receiver(void *arg)
{
    coru_chan *ch = arg;
    size_t id;
    int rc;
    while ((rc = coru_chan_recv(ch, &id)) == 0) got(id);
    if (rc != -EPIPE) flag("recv: %d", rc);
    return NULL;
}

static void chan_path(size_t n, size_t cap)
{
    pc.n = n;
    for (int c = 0; c < 4; c++) {
        if (coru_chan_create(&pc.ch[c], sizeof(size_t), cap)) flag("chan_create");
        atomic_store(&pc.senders_left[c], 2);
    }
    for (int c = 0; c < 4; c++) {
        crew_go(chan_receiver, pc.ch[c]);
        crew_go(chan_receiver, pc.ch[c]);
    }
    for (size_t k = 0; k < 8; k++) crew_go(chan_sender, (void *)(uintptr_t)k);
    crew_wait();
    for (int c = 0; c < 4; c++) coru_chan_destroy(pc.ch[c]);
}

static void chan_unbuffered_path(size_t n)
{
    chan_path(n, 0);
}

static void chan_buffered_path(size_t n)
{
    chan_path(n, 4);
}

/* ------------------------------------------------------------ select
 *
 * First part: four selectors each wait on all four unbuffered channels
 * (and a NULL case that never fires) while four senders send each id on
 * a channel picked by the id; one select is woken by exactly one of its
 * channels, so every id arrives once. The last sender closes the
 * channels; a selector ends at its first -EPIPE case.
 * Second part (the last eighth of the ids): rounds in which four
 * selectors park on three fresh channels and a closer closes one of them
 * (or, one round in four, all three): each select returns exactly once,
 * with -EPIPE on a closed channel's case. */

static struct {
    size_t n_main, n;
    _Atomic int senders_left;
} ps;

static void *sel_receiver(void *arg)
{
    size_t buf[5];
    struct coru_sel c[5];
    for (int i = 0; i < 4; i++) c[i] = (struct coru_sel){pc.ch[i], CORU_SEL_RECV, &buf[i], 1};
    c[4] = (struct coru_sel){NULL, CORU_SEL_RECV, &buf[4], 1};
    for (;;) {
        int k = coru_select(c, 5, CORU_NEVER, 0);
        if (k < 0 || k >= 4) {
            flag("select returned %d", k);
            return NULL;
        }
        if (c[k].rc == -EPIPE) return NULL;
        if (c[k].rc != 0) {
            flag("select case %d rc %d", k, c[k].rc);
            return NULL;
        }
        got(buf[k]);
    }
}

static void *sel_sender(void *arg)
{
    size_t k = (size_t)(uintptr_t)arg;
    for (size_t id = k; id < ps.n_main; id += 4) {
        give(id);
        int rc = coru_chan_send(pc.ch[(id * 2654435761u >> 7) % 4], &id);
        if (rc) {
            flag("send of %zu: %d", id, rc);
            return NULL;
        }
    }
    if (atomic_fetch_sub(&ps.senders_left, 1) == 1)
        for (int c = 0; c < 4; c++) coru_chan_close(pc.ch[c]);
    return NULL;
}

struct sel_close_arg {
    coru_chan *ch[3];
    size_t id;
};

static void *sel_close_waiter(void *arg)
{
    struct sel_close_arg *a = arg;
    int buf[3];
    struct coru_sel c[3];
    for (int i = 0; i < 3; i++) c[i] = (struct coru_sel){a->ch[i], CORU_SEL_RECV, &buf[i], 1};
    int k = coru_select(c, 3, CORU_NEVER, 0);
    if (k < 0 || c[k].rc != -EPIPE) {
        flag("select woken by close: %d (rc %d)", k, k >= 0 ? c[k].rc : 0);
        return (void *)(intptr_t)-1;
    }
    got(a->id);
    return (void *)(intptr_t)k;
}

static void *sel_closer(void *arg)
{
    uint64_t r = 77;
    enum { S = 4 };
    for (size_t base = ps.n_main; base + S <= ps.n; base += S) {
        struct sel_close_arg a[S];
        coru_chan *ch[3];
        for (int i = 0; i < 3; i++)
            if (coru_chan_create(&ch[i], sizeof(int), 0)) flag("chan_create");
        coru_t *h[S];
        for (int s = 0; s < S; s++) {
            memcpy(a[s].ch, ch, sizeof ch);
            a[s].id = base + (size_t)s;
            if (coru_spawn(&h[s], sel_close_waiter, &a[s], NULL)) flag("spawn");
        }
        for (uint64_t y = xs(&r) % 4; y > 0; y--) coru_yield(); /* mostly parked by now */
        bool all = xs(&r) % 4 == 0;
        int one = (int)(xs(&r) % 3);
        for (int s = 0; s < S; s++) give(base + (size_t)s);
        for (int i = 0; i < 3; i++)
            if (all || i == one) coru_chan_close(ch[i]);
        for (int s = 0; s < S; s++) {
            void *k = NULL;
            int rc = coru_join(h[s], &k);
            if (rc) {
                flag("join: %d", rc);
                return NULL;
            }
            if ((intptr_t)k >= 0 && !all && (intptr_t)k != one) flag("select woke on open channel %d", (int)(intptr_t)k);
        }
        for (int i = 0; i < 3; i++) coru_chan_destroy(ch[i]);
    }
    return NULL;
}

static void select_path(size_t n)
{
    ps.n = n;
    ps.n_main = n - n / 8;
    pc.n = 0;
    atomic_store(&ps.senders_left, 4);
    for (int c = 0; c < 4; c++)
        if (coru_chan_create(&pc.ch[c], sizeof(size_t), 0)) flag("chan_create");
    for (int k = 0; k < 4; k++) crew_go(sel_receiver, NULL);
    for (size_t k = 0; k < 4; k++) crew_go(sel_sender, (void *)(uintptr_t)k);
    crew_go(sel_closer, NULL);
    crew_wait();
    for (int c = 0; c < 4; c++) coru_chan_destroy(pc.ch[c]);
    /* ids of a last, incomplete round of the closer: nobody used them */
    for (size_t id = ps.n_main + (ps.n - ps.n_main) / 4 * 4; id < ps.n; id++) {
        give(id);
        got(id);
    }
}

/* ------------------------------------------------------------ mutex
 *
 * Eight lockers take one mutex until n acquisitions were made, holding it
 * across a yield so that the others queue and each unlock hands it to a
 * parked waiter; two more take it with short deadlines that race the
 * hand-off (a timed-out locker must not own it: the mutex would stay
 * locked and the path hang). Acquisition number s is received by its
 * owner on taking the mutex and given by the unlock that hands it on:
 * two owners at once would receive one number twice. */

static struct {
    coru_mutex *m;
    size_t counter; /* guarded by m */
    int holder;     /* guarded by m: 0, or the owner */
    size_t n;
    _Atomic bool done;
} pm;

/* With m held: one acquisition; false when all n were made. */
static bool mutex_turn(int me)
{
    if (pm.holder) flag("locker %d got the mutex while %d held it", me, pm.holder);
    pm.holder = me;
    if (pm.counter >= pm.n) {
        atomic_store(&pm.done, true);
        pm.holder = 0;
        return false;
    }
    size_t seq = pm.counter++;
    got(seq);
    coru_yield(); /* hold it across a switch: the others queue */
    pm.holder = 0;
    give(seq);
    return true;
}

static void *mutex_locker(void *arg)
{
    int me = (int)(uintptr_t)arg;
    for (;;) {
        int rc = coru_mutex_lock(pm.m);
        if (rc) {
            flag("lock: %d", rc);
            return NULL;
        }
        bool more = mutex_turn(me);
        if (coru_mutex_unlock(pm.m)) flag("unlock");
        if (!more) return NULL;
    }
}

static void *mutex_timid(void *arg)
{
    int me = (int)(uintptr_t)arg;
    uint64_t r = (uint64_t)me;
    while (!atomic_load(&pm.done)) {
        int rc = coru_mutex_lock_dl(pm.m, coru_now() + (int64_t)(xs(&r) % (20 * US)));
        if (rc == -ETIMEDOUT) continue;
        if (rc) {
            flag("lock_dl: %d", rc);
            return NULL;
        }
        bool more = mutex_turn(me);
        if (coru_mutex_unlock(pm.m)) flag("unlock");
        if (!more) return NULL;
    }
    return NULL;
}

static void mutex_path(size_t n)
{
    pm.n = n;
    pm.counter = 0;
    pm.holder = 0;
    atomic_store(&pm.done, false);
    if (coru_mutex_create(&pm.m)) flag("mutex_create");
    for (int k = 1; k <= 8; k++) crew_go(mutex_locker, (void *)(uintptr_t)k);
    for (int k = 9; k <= 10; k++) crew_go(mutex_timid, (void *)(uintptr_t)k);
    crew_wait();
    if (pm.counter != n) flag("%zu acquisitions of %zu", pm.counter, n);
    coru_mutex_destroy(pm.m);
}

/* ------------------------------------------------------------ cond signal
 *
 * Six waiters wait R times each; two signallers send the n = 6R
 * signals. A signal is sent only while some waiter is queued and not yet
 * signalled (nwaiting, counted under m before the wait queues), so each
 * one wakes exactly one waiter; it carries an id through a FIFO under m,
 * and the woken waiter takes one: a wait that returned without a signal
 * finds the FIFO empty, a lost signal leaves a waiter parked. The
 * signallers wait for waiters on a second cond. */

enum { CW = 6 };

static struct {
    coru_mutex *m;
    coru_cond *c, *ready;
    int nwaiting, sig_waiting; /* m */
    size_t fifo[64], head, tail; /* m */
    size_t n;
} pcs;

static void *cond_waiter(void *arg)
{
    size_t rounds = pcs.n / CW;
    coru_mutex_lock(pcs.m);
    for (size_t i = 0; i < rounds; i++) {
        pcs.nwaiting++;
        if (pcs.sig_waiting) coru_cond_signal(pcs.ready);
        int rc = coru_cond_wait(pcs.c, pcs.m);
        if (rc) {
            flag("cond_wait: %d", rc);
            break;
        }
        if (pcs.head == pcs.tail) {
            flag("a waiter woke without a signal");
            break;
        }
        got(pcs.fifo[pcs.head++ % 64]);
    }
    coru_mutex_unlock(pcs.m);
    return NULL;
}

static void *cond_signaller(void *arg)
{
    size_t k = (size_t)(uintptr_t)arg;
    coru_mutex_lock(pcs.m);
    for (size_t id = k; id < pcs.n; id += 2) {
        while (pcs.nwaiting == 0) {
            pcs.sig_waiting++;
            int rc = coru_cond_wait(pcs.ready, pcs.m);
            pcs.sig_waiting--;
            if (rc) {
                flag("cond_wait(ready): %d", rc);
                coru_mutex_unlock(pcs.m);
                return NULL;
            }
        }
        pcs.nwaiting--;
        pcs.fifo[pcs.tail++ % 64] = id;
        give(id);
        coru_cond_signal(pcs.c);
    }
    coru_mutex_unlock(pcs.m);
    return NULL;
}

static void cond_signal_path(size_t n)
{
    pcs.n = n / CW * CW;
    pcs.nwaiting = pcs.sig_waiting = 0;
    pcs.head = pcs.tail = 0;
    if (coru_mutex_create(&pcs.m) || coru_cond_create(&pcs.c) || coru_cond_create(&pcs.ready)) flag("create");
    for (int i = 0; i < CW; i++) crew_go(cond_waiter, NULL);
    for (size_t k = 0; k < 2; k++) crew_go(cond_signaller, (void *)(uintptr_t)k);
    crew_wait();
    if (pcs.head != pcs.tail || pcs.nwaiting) flag("%zu signals not taken, %d waiting", pcs.tail - pcs.head, pcs.nwaiting);
    for (size_t id = pcs.n; id < n; id++) { /* the remainder of n / CW */
        give(id);
        got(id);
    }
    coru_cond_destroy(pcs.c);
    coru_cond_destroy(pcs.ready);
    coru_mutex_destroy(pcs.m);
}

/* ------------------------------------------------------------ cond broadcast
 *
 * Eight waiters and one broadcaster, in generations: the broadcaster
 * waits (on a second cond) until all eight are queued, then bumps the
 * generation and broadcasts. Each waiter's wait must return exactly once
 * per generation, and in the generation after the one it waited in: id
 * g*8+i is given by broadcast g and received by waiter i. */

enum { BW = 8 };

static struct {
    coru_mutex *m;
    coru_cond *c, *ready;
    int nwaiting;  /* m */
    size_t gen;    /* m */
    size_t gens;
} pb;

static void *bc_waiter(void *arg)
{
    size_t i = (size_t)(uintptr_t)arg;
    coru_mutex_lock(pb.m);
    for (size_t g = 0; g < pb.gens; g++) {
        if (pb.gen != g) {
            flag("waiter %zu in generation %zu, expected %zu", i, pb.gen, g);
            break;
        }
        if (++pb.nwaiting == BW) coru_cond_signal(pb.ready);
        int rc = coru_cond_wait(pb.c, pb.m);
        if (rc || pb.gen != g + 1) {
            flag("waiter %zu: wait of generation %zu returned %d in generation %zu", i, g, rc, pb.gen);
            break;
        }
        got(g * BW + i);
    }
    coru_mutex_unlock(pb.m);
    return NULL;
}

static void *bc_broadcaster(void *arg)
{
    coru_mutex_lock(pb.m);
    for (size_t g = 0; g < pb.gens; g++) {
        while (pb.nwaiting < BW) {
            int rc = coru_cond_wait(pb.ready, pb.m);
            if (rc) {
                flag("cond_wait(ready): %d", rc);
                coru_mutex_unlock(pb.m);
                return NULL;
            }
        }
        pb.nwaiting = 0;
        pb.gen = g + 1;
        for (size_t i = 0; i < BW; i++) give(g * BW + i);
        coru_cond_broadcast(pb.c);
    }
    coru_mutex_unlock(pb.m);
    return NULL;
}

static void cond_broadcast_path(size_t n)
{
    pb.gens = n / BW;
    pb.nwaiting = 0;
    pb.gen = 0;
    if (coru_mutex_create(&pb.m) || coru_cond_create(&pb.c) || coru_cond_create(&pb.ready)) flag("create");
    for (size_t i = 0; i < BW; i++) crew_go(bc_waiter, (void *)(uintptr_t)i);
    crew_go(bc_broadcaster, NULL);
    crew_wait();
    for (size_t id = pb.gens * BW; id < n; id++) {
        give(id);
        got(id);
    }
    coru_cond_destroy(pb.c);
    coru_cond_destroy(pb.ready);
    coru_mutex_destroy(pb.m);
}

/* ------------------------------------------------------------ sema
 *
 * Six acquirers take R units each from a semaphore starting at 0; two
 * releasers give the n = 6R units, each mostly after waiting until an
 * acquirer is queued (so the release hands its unit to a parked waiter),
 * sometimes at once (into the count). A release's id goes into a slot
 * before the release; the acquire that returns takes the next slot. At
 * the end the count must be 0. */

enum { SA = 6 };

static struct {
    coru_sema *s;
    _Atomic size_t *slot; /* id + 1, 0 until written */
    _Atomic size_t tail, head;
    size_t n;
} pse;

static void *sema_acquirer(void *arg)
{
    for (size_t i = 0; i < pse.n / SA; i++) {
        int rc = coru_sema_acquire(pse.s);
        if (rc) {
            flag("acquire: %d", rc);
            return NULL;
        }
        size_t h = atomic_fetch_add(&pse.head, 1);
        if (h >= pse.n) {
            flag("acquire %zu of %zu releases", h + 1, pse.n);
            return NULL;
        }
        size_t v;
        /* the release that wrote it may still be between its two steps */
        YIELD_UNTIL((v = atomic_load(&pse.slot[h])) != 0, return NULL);
        got(v - 1);
    }
    return NULL;
}

static void *sema_releaser(void *arg)
{
    size_t k = (size_t)(uintptr_t)arg;
    uint64_t r = k + 5;
    for (size_t id = k; id < pse.n; id += 2) {
        if (xs(&r) % 8) YIELD_UNTIL(coru__sync_sema_waiters(pse.s) > 0, return NULL);
        give(id);
        atomic_store(&pse.slot[atomic_fetch_add(&pse.tail, 1)], id + 1);
        int rc = coru_sema_release(pse.s);
        if (rc) flag("release: %d", rc);
    }
    return NULL;
}

static void sema_path(size_t n)
{
    pse.n = n / SA * SA;
    pse.slot = calloc(pse.n, sizeof *pse.slot);
    atomic_store(&pse.head, 0);
    atomic_store(&pse.tail, 0);
    if (!pse.slot || coru_sema_create(&pse.s, 0)) flag("create");
    for (int i = 0; i < SA; i++) crew_go(sema_acquirer, NULL);
    for (size_t k = 0; k < 2; k++) crew_go(sema_releaser, (void *)(uintptr_t)k);
    crew_wait();
    if (coru_sema_try_acquire(pse.s) != -EAGAIN) flag("a unit was left in the count");
    for (size_t id = pse.n; id < n; id++) {
        give(id);
        got(id);
    }
    coru_sema_destroy(pse.s);
    free(pse.slot);
}

/* ------------------------------------------------------------ waitgroup
 *
 * Eight waiters and a coordinator, in rounds on two wait groups taken in
 * turn (each held at 1 between rounds): once all eight wait on round r's
 * group, the coordinator marks the round and calls done; each waiter's
 * wait must return once, in that round (id r*8+i); then it waits on the
 * other group, which the coordinator already holds at 1, and the
 * coordinator adds 1 back to this one. */

enum { WW = 8 };

static struct {
    coru_waitgroup *wg[2];
    _Atomic size_t round;
    size_t rounds;
} pw;

static void *wg_waiter(void *arg)
{
    size_t i = (size_t)(uintptr_t)arg;
    for (size_t r = 0; r < pw.rounds; r++) {
        int rc = coru_waitgroup_wait(pw.wg[r % 2]);
        size_t cur = atomic_load(&pw.round);
        if (rc || cur != r) {
            flag("waiter %zu: wait of round %zu returned %d in round %zu", i, r, rc, cur);
            return NULL;
        }
        got(r * WW + i);
    }
    return NULL;
}

static void *wg_coordinator(void *arg)
{
    for (size_t r = 0; r < pw.rounds; r++) {
        coru_waitgroup *wg = pw.wg[r % 2];
        YIELD_UNTIL(coru__sync_wg_waiters(wg) == WW, return NULL);
        atomic_store(&pw.round, r);
        for (size_t i = 0; i < WW; i++) give(r * WW + i);
        if (coru_waitgroup_done(wg) || coru_waitgroup_add(wg, 1)) flag("done/add");
    }
    return NULL;
}

static void waitgroup_path(size_t n)
{
    pw.rounds = n / WW;
    atomic_store(&pw.round, SIZE_MAX);
    for (int k = 0; k < 2; k++)
        if (coru_waitgroup_create(&pw.wg[k]) || coru_waitgroup_add(pw.wg[k], 1)) flag("create");
    for (size_t i = 0; i < WW; i++) crew_go(wg_waiter, (void *)(uintptr_t)i);
    crew_go(wg_coordinator, NULL);
    crew_wait();
    for (size_t id = pw.rounds * WW; id < n; id++) {
        give(id);
        got(id);
    }
    for (int k = 0; k < 2; k++) coru_waitgroup_destroy(pw.wg[k]);
}

/* ------------------------------------------------------------ join
 *
 * Eight joiners each spawn children and join them: the child's exit
 * wakes its parked joiner. A child gives its id as it exits (after a
 * yield now and then, so that it may be stolen and end on another
 * worker) and returns it; the joiner receives the id it got back. */

static struct {
    size_t n;
} pj;

static void *join_child(void *arg)
{
    size_t id = (size_t)(uintptr_t)arg;
    if (id % 4 == 1) coru_yield();
    give(id);
    return (void *)(uintptr_t)(id + 1);
}

static void *joiner(void *arg)
{
    size_t k = (size_t)(uintptr_t)arg;
    for (size_t id = k; id < pj.n; id += 8) {
        coru_t *h;
        if (coru_spawn(&h, join_child, (void *)(uintptr_t)id, NULL)) {
            flag("spawn");
            return NULL;
        }
        void *res = NULL;
        int rc = coru_join(h, &res);
        if (rc || (size_t)(uintptr_t)res != id + 1) {
            flag("join of %zu: %d, result %zu", id, rc, (size_t)(uintptr_t)res);
            return NULL;
        }
        got(id);
    }
    return NULL;
}

static void join_path(size_t n)
{
    pj.n = n;
    for (size_t k = 0; k < 8; k++) crew_go(joiner, (void *)(uintptr_t)k);
    crew_wait();
}

/* ------------------------------------------------------------ timers
 *
 * Thirty-two sleepers park on timers only: sleeps of 0-30 us, and waits
 * with such a deadline on a channel, a semaphore and a cond nobody ever
 * wakes; each must return once, -ETIMEDOUT (0 for the sleep), and never
 * before its deadline (id given as the wait starts, received as it
 * returns). The last ids go to pairs racing a deadline against a
 * partner: a send_dl and a recv_dl on one unbuffered channel, both with
 * deadlines of 0-30 us: a value is received exactly when its send
 * returned 0, whichever of the partner and the timer woke each side. */

enum { TS = 32, TPAIRS = 4 };

static struct {
    size_t n_sleep, n;
    coru_chan *dead, *race[TPAIRS];
    coru_sema *dead_s;
    coru_mutex *m;
    coru_cond *dead_c;
} pt;

static void *sleeper(void *arg)
{
    size_t s = (size_t)(uintptr_t)arg;
    uint64_t r = s * 31 + 7;
    for (size_t id = s; id < pt.n_sleep; id += TS) {
        int64_t dl = coru_now() + (int64_t)(xs(&r) % (30 * US));
        give(id);
        int rc, want = -ETIMEDOUT, v;
        switch (id / TS % 4) {
        case 0:
            rc = coru_sleep_until(dl);
            want = 0;
            break;
        case 1: rc = coru_chan_recv_dl(pt.dead, &v, dl); break;
        case 2: rc = coru_sema_acquire_dl(pt.dead_s, dl); break;
        default:
            coru_mutex_lock(pt.m);
            rc = coru_cond_wait_dl(pt.dead_c, pt.m, dl);
            coru_mutex_unlock(pt.m);
            break;
        }
        int64_t now = coru_now();
        if (rc != want || now < dl) {
            flag("timed wait %zu (kind %zu): %d, %lld ns before its deadline", id, id / TS % 4, rc,
                 (long long)(dl - now));
            return NULL;
        }
        got(id);
    }
    return NULL;
}

static void *race_sender(void *arg)
{
    size_t p = (size_t)(uintptr_t)arg;
    uint64_t r = p + 99;
    for (size_t id = pt.n_sleep + p; id < pt.n; id += TPAIRS) {
        int rc = coru_chan_send_dl(pt.race[p], &id, coru_now() + (int64_t)(xs(&r) % (30 * US)));
        if (rc == 0)
            give(id);
        else if (rc != -ETIMEDOUT) {
            flag("send_dl: %d", rc);
            return NULL;
        }
    }
    size_t end = SIZE_MAX;
    if (coru_chan_send(pt.race[p], &end)) flag("send of the end");
    return NULL;
}

static void *race_receiver(void *arg)
{
    size_t p = (size_t)(uintptr_t)arg;
    uint64_t r = p + 1234;
    for (;;) {
        size_t id;
        int rc = coru_chan_recv_dl(pt.race[p], &id, coru_now() + (int64_t)(xs(&r) % (30 * US)));
        if (rc == -ETIMEDOUT) continue;
        if (rc) {
            flag("recv_dl: %d", rc);
            return NULL;
        }
        if (id == SIZE_MAX) return NULL;
        got(id);
    }
}

static void timer_path(size_t n)
{
    pt.n = n;
    pt.n_sleep = n - n / 8;
    if (coru_chan_create(&pt.dead, sizeof(int), 0) || coru_sema_create(&pt.dead_s, 0) ||
        coru_mutex_create(&pt.m) || coru_cond_create(&pt.dead_c))
        flag("create");
    for (int p = 0; p < TPAIRS; p++)
        if (coru_chan_create(&pt.race[p], sizeof(size_t), 0)) flag("create");
    for (size_t s = 0; s < TS; s++) crew_go(sleeper, (void *)(uintptr_t)s);
    for (size_t p = 0; p < TPAIRS; p++) {
        crew_go(race_sender, (void *)(uintptr_t)p);
        crew_go(race_receiver, (void *)(uintptr_t)p);
    }
    crew_wait();
    coru_chan_destroy(pt.dead);
    for (int p = 0; p < TPAIRS; p++) coru_chan_destroy(pt.race[p]);
    coru_sema_destroy(pt.dead_s);
    coru_cond_destroy(pt.dead_c);
    coru_mutex_destroy(pt.m);
}

/* ------------------------------------------------------------ I/O completion
 *
 * Eight socketpairs, a pinger and a ponger on each: the pinger writes an
 * id, the ponger's parked read is woken by it (io_uring: the read's
 * completion; epoll: readiness) and writes id+1 back, which wakes the
 * pinger's read. Id 2k travels out, 2k+1 back. */

enum { IOP = 8 };

static struct {
    int sv[IOP][2];
    size_t n;
} pio;

static void *io_pinger(void *arg)
{
    size_t p = (size_t)(uintptr_t)arg;
    int fd = pio.sv[p][0];
    for (size_t id = 2 * p; id + 1 < pio.n; id += 2 * IOP) {
        uint64_t v = id, back;
        give(id);
        if (coru_write_all(fd, &v, sizeof v, CORU_NEVER) != sizeof v) {
            flag("write of %zu", id);
            return NULL;
        }
        ssize_t rc = coru_read_full(fd, &back, sizeof back, CORU_NEVER);
        if (rc != sizeof back || back != id + 1) {
            flag("read back of %zu: %zd, %llu", id, rc, (unsigned long long)back);
            return NULL;
        }
        got(back);
    }
    coru_shutdown(fd, SHUT_WR);
    return NULL;
}

static void *io_ponger(void *arg)
{
    size_t p = (size_t)(uintptr_t)arg;
    int fd = pio.sv[p][1];
    for (;;) {
        uint64_t v;
        ssize_t rc = coru_read_full(fd, &v, sizeof v, CORU_NEVER);
        if (rc == 0) return NULL; /* the pinger's shutdown */
        if (rc != sizeof v) {
            flag("read: %zd", rc);
            return NULL;
        }
        got(v);
        v++;
        give(v);
        if (coru_write_all(fd, &v, sizeof v, CORU_NEVER) != sizeof v) {
            flag("write back of %llu", (unsigned long long)v);
            return NULL;
        }
    }
}

static void io_path(size_t n)
{
    pio.n = n / (2 * IOP) * (2 * IOP);
    for (int p = 0; p < IOP; p++)
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pio.sv[p])) flag("socketpair");
    for (size_t p = 0; p < IOP; p++) {
        crew_go(io_pinger, (void *)(uintptr_t)p);
        crew_go(io_ponger, (void *)(uintptr_t)p);
    }
    crew_wait();
    for (int p = 0; p < IOP; p++) {
        coru_close(pio.sv[p][0]);
        coru_close(pio.sv[p][1]);
    }
    for (size_t id = pio.n; id < n; id++) { /* the remainder of n / (2 * IOP) */
        give(id);
        got(id);
    }
}

/* ------------------------------------------------------------ cancel
 *
 * Four cancellers each spawn victims, one at a time, parked in every
 * kind of wait in turn: channel receive and send, select, mutex, cond,
 * sema, waitgroup, join, sleep, and a read on a socketpair (an io_uring
 * op, or an epoll readiness wait). The canceller lets the victim park
 * (three rounds in four it waits until the victim's park committed; the
 * fourth it cancels at once, racing the park), cancels it, one round in
 * four from a second coroutine too, and joins it: the wait must have
 * returned -ECANCELED exactly once (id given by the canceller, received
 * by the victim), and a later wait -ECANCELED at once (cancellation is
 * sticky). One round in four of the channel and sema kinds, a partner
 * races the cancel (a try_send, a release): then the victim's wait
 * returns 0 exactly when the partner's value or unit went to it. */

enum { K_RECV, K_SEND, K_SELECT, K_MUTEX, K_COND, K_SEMA, K_WG, K_JOIN, K_SLEEP, K_READ, K_KINDS };
static const char *const kind_name[K_KINDS] = {"chan recv", "chan send", "select", "mutex", "cond",
                                               "sema", "waitgroup", "join", "sleep", "read"};
enum { CC = 4 };

struct victim {
    int kind;
    size_t id;
    bool racing;       /* a partner races the cancel */
    int rc;            /* the wait's result */
    size_t value;      /* what a racing receive got */
    coru_chan *ch;     /* K_RECV, K_SEND, K_SELECT */
    coru_mutex *m;     /* K_MUTEX (held by the canceller), K_COND */
    coru_cond *c;
    coru_sema *s;
    coru_waitgroup *wg;
    int fd;
};

static struct {
    size_t n;
} pk;

static void *forever(void *arg)
{
    return (void *)(intptr_t)coru_sleep_until(CORU_NEVER);
}

static void *victim_body(void *arg)
{
    struct victim *v = arg;
    int rc = -1;
    switch (v->kind) {
    case K_RECV: rc = coru_chan_recv(v->ch, &v->value); break;
    case K_SEND: {
        size_t x = v->id;
        rc = coru_chan_send(v->ch, &x);
        break;
    }
    case K_SELECT: {
        size_t a, b;
        struct coru_sel c[2] = {{v->ch, CORU_SEL_RECV, &a, 1}, {v->ch, CORU_SEL_SEND, &b, 1}};
        b = v->id;
        rc = coru_select(c, 2, CORU_NEVER, 0);
        break;
    }
    case K_MUTEX:
        rc = coru_mutex_lock(v->m);
        if (rc == 0) coru_mutex_unlock(v->m);
        break;
    case K_COND:
        coru_mutex_lock(v->m);
        rc = coru_cond_wait(v->c, v->m);
        coru_mutex_unlock(v->m); /* held again whatever the wait returned */
        break;
    case K_SEMA: rc = coru_sema_acquire(v->s); break;
    case K_WG: rc = coru_waitgroup_wait(v->wg); break;
    case K_JOIN: {
        coru_t *h;
        if (coru_spawn(&h, forever, NULL, NULL)) break;
        rc = coru_join(h, NULL);
        coru_cancel(h);
        /* Cancelled, we may only join it once it has finished: a join
         * that would park fails at once (and the handle stays valid). */
        void *res = NULL;
        int jrc;
        while ((jrc = coru_join(h, &res)) == -ECANCELED) coru_yield();
        if (jrc || (intptr_t)res != -ECANCELED) flag("the joined child: %d, %d", jrc, (int)(intptr_t)res);
        break;
    }
    case K_SLEEP: rc = coru_sleep_until(CORU_NEVER); break;
    case K_READ: {
        char b;
        rc = (int)coru_read(v->fd, &b, 1);
        break;
    }
    }
    v->rc = rc;
    if (rc == -ECANCELED) {
        got(v->id);
        /* sticky: the next wait fails at once */
        int again = coru_sleep(1000 * MS);
        if (again != -ECANCELED) flag("%s: a wait after the cancel returned %d", kind_name[v->kind], again);
    }
    return NULL;
}

static void *second_canceller(void *arg)
{
    coru_cancel(arg);
    return NULL;
}

static void *canceller(void *arg)
{
    size_t k = (size_t)(uintptr_t)arg;
    uint64_t r = k * 17 + 3;
    struct victim v = {0};
    if (coru_chan_create(&v.ch, sizeof(size_t), 0) || coru_mutex_create(&v.m) || coru_cond_create(&v.c) ||
        coru_sema_create(&v.s, 0) || coru_waitgroup_create(&v.wg) || coru_waitgroup_add(v.wg, 1)) {
        flag("create");
        return NULL;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv)) {
        flag("socketpair");
        return NULL;
    }
    v.fd = sv[0];
    size_t round = 0;
    for (size_t id = k; id < pk.n; id += CC, round++) {
        v.kind = (int)(round % K_KINDS);
        v.id = id;
        v.rc = 1;
        v.value = SIZE_MAX;
        uint64_t dice = xs(&r);
        v.racing = (v.kind == K_RECV || v.kind == K_SEMA) && dice % 4 == 0;
        bool at_once = (dice >> 8) % 4 == 0, twice = (dice >> 16) % 4 == 0;
        if (v.kind == K_MUTEX) coru_mutex_lock(v.m);
        coru_t *h, *h2 = NULL;
        if (coru_spawn(&h, victim_body, &v, NULL)) {
            flag("spawn");
            return NULL;
        }
        if (!at_once) /* until its park committed (bounded: it may finish) */
            for (int y = 0; y < 1000 && atomic_load(&h->pstate) != CO_PARKED; y++) coru_yield();
        bool partner = false; /* the racing partner's value or unit went in */
        if (v.racing && v.kind == K_RECV) {
            size_t x = id;
            partner = coru_chan_try_send(v.ch, &x) == 0;
        }
        if (v.racing && v.kind == K_SEMA) coru_sema_release(v.s);
        give(id);
        if (twice && coru_spawn(&h2, second_canceller, h, NULL)) flag("spawn");
        coru_cancel(h);
        if (h2) coru_join(h2, NULL);
        if (coru_join(h, NULL)) {
            flag("join of the victim");
            return NULL;
        }
        if (v.kind == K_MUTEX) coru_mutex_unlock(v.m);
        if (v.racing && v.kind == K_SEMA) /* the unit went to the victim, or is still counted */
            partner = coru_sema_try_acquire(v.s) == -EAGAIN;
        if (v.racing) {
            if (partner ? (v.rc != 0 || (v.kind == K_RECV && v.value != id)) : v.rc != -ECANCELED)
                flag("%s raced by a partner: the partner %s, the wait returned %d", kind_name[v.kind],
                     partner ? "delivered" : "did not deliver", v.rc);
            if (partner) got(id); /* the partner woke it, not the cancel */
        } else if (v.rc != -ECANCELED) {
            flag("%s: a cancelled wait returned %d", kind_name[v.kind], v.rc);
        }
    }
    coru_close(sv[0]);
    coru_close(sv[1]);
    coru_chan_destroy(v.ch);
    coru_mutex_destroy(v.m);
    coru_cond_destroy(v.c);
    coru_sema_destroy(v.s);
    coru_waitgroup_destroy(v.wg);
    return NULL;
}

static void cancel_path(size_t n)
{
    pk.n = n;
    for (size_t k = 0; k < CC; k++) crew_go(canceller, (void *)(uintptr_t)k);
    crew_wait();
}

/* ------------------------------------------------------------ the paths */

/* Wake ids per plain run; the I/O and cancel paths run once per engine. */
static const struct path P_chan_unbuffered = {"chan_unbuffered", chan_unbuffered_path, 400000, false, false, false};
static const struct path P_chan_buffered = {"chan_buffered", chan_buffered_path, 200000, false, false, false};
static const struct path P_select = {"select", select_path, 320000, false, false, true};
static const struct path P_mutex = {"mutex", mutex_path, 200000, false, false, false};
static const struct path P_cond_signal = {"cond_signal", cond_signal_path, 192000, false, false, false};
static const struct path P_cond_broadcast = {"cond_broadcast", cond_broadcast_path, 320000, false, false, false};
static const struct path P_sema = {"sema", sema_path, 192000, false, false, false};
static const struct path P_waitgroup = {"waitgroup", waitgroup_path, 160000, false, false, false};
static const struct path P_join = {"join", join_path, 200000, false, false, true};
static const struct path P_timer = {"timer", timer_path, 128000, true, false, false};
static const struct path P_io = {"io", io_path, 200000, false, true, false};
static const struct path P_cancel = {"cancel", cancel_path, 50000, false, true, true};

#define PATH_TESTS(name, what)                                                                     \
    Test(wake, name##_##what, .timeout = 290) { run_plain(&P_##name); }                            \
    Test(wake_chaos, name, .timeout = 290) { run_chaos(&P_##name); }

PATH_TESTS(chan_unbuffered, handoffs_each_woken_once)
PATH_TESTS(chan_buffered, handoffs_each_woken_once)
PATH_TESTS(select, one_case_or_a_close_wakes_each_select_once)
PATH_TESTS(mutex, handoff_gives_one_owner_per_unlock)
PATH_TESTS(cond_signal, each_signal_wakes_one_waiter_once)
PATH_TESTS(cond_broadcast, each_waiter_woken_once_per_generation)
PATH_TESTS(sema, each_release_wakes_one_acquirer_once)
PATH_TESTS(waitgroup, done_wakes_each_waiter_once)
PATH_TESTS(join, exit_wakes_the_joiner_once)
PATH_TESTS(timer, each_deadline_wakes_its_waiter_once)
PATH_TESTS(io, completions_wake_each_read_once_on_both_engines)
PATH_TESTS(cancel, cancel_ends_each_kind_of_wait_once_with_ecanceled)
