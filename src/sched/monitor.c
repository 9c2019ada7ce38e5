/* The monitor thread of a run: writes the dump when the dump signal
 * comes, reports stalls and deadlocks (the contract: coru.h, "Seeing
 * inside a run").
 *
 * Invariants:
 *   - The monitor only reads the scheduler: each worker's st.switches and
 *     cur_pub (relaxed atomics its owner writes), the spawn/finish
 *     counts, and the registry through its walk. It never touches a
 *     queue, a coroutine's memory or a worker's engine, so it cannot
 *     change what it watches, and it works while every worker is stuck.
 *   - It lives strictly inside the run: coru_run starts it once the
 *     worker structs exist and joins it before they are freed.
 *   - The dump signal's handler only sets dump_req and posts sem (both
 *     async-signal-safe); the monitor does the rest on its own thread.
 *   - The stall backtrace: the monitor sets bt_req, then sends SIGURG to
 *     the stalled worker; that worker's handler (on its signal stack)
 *     writes the backtrace only if bt_req is set, and sets bt_done. The
 *     monitor waits for bt_done (at most 200 ms) before it goes on, so
 *     reports do not interleave. A SIGURG from anyone else finds bt_req
 *     clear and does nothing (SIGURG is ignored by default anyway).
 */

#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fail.h"
#include "sched/dump.h"
#include "sched/rt.h"
#include "sched/sched.h"

#define DEFAULT_STALL_MS 100
#define DEFAULT_GRACE_MS 1000
#define MAX_PERIOD_NS 250000000 /* the deadlock check's own pace */

/* The semaphore outlives every run (initialised once, never destroyed):
 * a dump signal's handler may still be posting it as a run ends. */
static sem_t sem;
static pthread_once_t sem_once = PTHREAD_ONCE_INIT;
static void sem_setup(void)
{
    sem_init(&sem, 0, 0);
}

static struct {
    pthread_t th;
    bool running;
    _Atomic bool stop;
    _Atomic bool dump_req;
    int dump_sig;
    struct sigaction old_dump;
    int64_t stall_ns; /* 0: off */
    bool urg_ours;    /* our SIGURG handler is installed */
    struct sigaction old_urg;
    int deadlock;     /* CORU_DEADLOCK_REPORT/ABORT/OFF */
    int64_t grace_ns;
} mon;

static _Atomic bool bt_req, bt_done;

_Atomic int coru__ext_blocked;
_Atomic bool coru__ext_waited;

/* ------------------------------------------------------------ options */

static int env_signal(void)
{
    const char *v = getenv("CORU_DUMP_SIGNAL");
    if (!v || !*v) return 0;
    if (!strncmp(v, "SIG", 3)) v += 3;
    if (!strcmp(v, "QUIT")) return SIGQUIT;
    if (!strcmp(v, "USR1")) return SIGUSR1;
    if (!strcmp(v, "USR2")) return SIGUSR2;
    if (!strcmp(v, "HUP")) return SIGHUP;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n <= 0 || n >= NSIG) {
        fprintf(stderr, "coru: CORU_DUMP_SIGNAL=%s is not QUIT, USR1, USR2, HUP or a signal number: ignored\n", v);
        return 0;
    }
    return (int)n;
}

static int64_t stall_ns_of(int opt)
{
    if (opt < 0) return 0;
    if (opt > 0) return (int64_t)opt * 1000000;
    const char *v = getenv("CORU_STALL_MS");
    if (v && *v) {
        char *end;
        long n = strtol(v, &end, 10);
        if (!*end && n >= 0) return (int64_t)n * 1000000;
        if (!strcmp(v, "off")) return 0;
        fprintf(stderr, "coru: CORU_STALL_MS=%s is not a number of ms: using %d\n", v, DEFAULT_STALL_MS);
    }
    return (int64_t)DEFAULT_STALL_MS * 1000000;
}

static int deadlock_of(enum coru_deadlock opt)
{
    if (opt != CORU_DEADLOCK_DEFAULT) return (int)opt;
    const char *v = getenv("CORU_DEADLOCK");
    if (!v || !*v || !strcmp(v, "report")) return CORU_DEADLOCK_REPORT;
    if (!strcmp(v, "abort")) return CORU_DEADLOCK_ABORT;
    if (!strcmp(v, "off")) return CORU_DEADLOCK_OFF;
    fprintf(stderr, "coru: CORU_DEADLOCK=%s is not report, abort or off: using report\n", v);
    return CORU_DEADLOCK_REPORT;
}

/* ------------------------------------------------------------ signals */

static void on_dump_signal(int sig)
{
    (void)sig;
    int e = errno;
    atomic_store_explicit(&mon.dump_req, true, memory_order_relaxed);
    sem_post(&sem); /* async-signal-safe; orders dump_req before the wake */
    errno = e;
}

static void on_urg(int sig)
{
    (void)sig;
    int e = errno;
    if (atomic_exchange_explicit(&bt_req, false, memory_order_acq_rel)) {
        void *pcs[64];
        int n = backtrace(pcs, 64);
        /* pcs[0] is this handler, pcs[1] the signal trampoline */
        backtrace_symbols_fd(pcs + 2 < pcs + n ? pcs + 2 : pcs, n > 2 ? n - 2 : n, 2);
        atomic_store_explicit(&bt_done, true, memory_order_release);
    }
    errno = e;
}

/* SIGURG for stall backtraces, unless the program handles SIGURG itself. */
static void urg_install(void)
{
    struct sigaction cur;
    if (sigaction(SIGURG, NULL, &cur) != 0) return;
    if (cur.sa_handler != SIG_DFL && cur.sa_handler != SIG_IGN) return;
    /* backtrace() loads libgcc's unwinder on first use (dlopen, malloc):
     * do that here, not in a signal handler. */
    void *pcs[4];
    backtrace(pcs, 4);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_urg;
    sa.sa_flags = SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGURG, &sa, &mon.old_urg) == 0) mon.urg_ours = true;
}

/* ------------------------------------------------------------ stalls */

struct wstate {
    uint64_t switches;
    struct coru_co *cur;
    int64_t seen;   /* when the monitor first saw this (switches, cur) */
    int64_t cpu;    /* the worker thread's CPU time then */
    bool reported;
};

/* A worker thread's CPU time, ns (-1: unknown). */
static int64_t thread_cpu(struct coru__worker *w)
{
    clockid_t cid;
    struct timespec ts;
    if (pthread_getcpuclockid(w->thread, &cid) != 0 || clock_gettime(cid, &ts) != 0) return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Whether the worker thread is waiting for a CPU (state R in its
 * /proc stat) rather than in a system call. */
static bool thread_runnable(struct coru__worker *w)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", atomic_load_explicit(&w->tid, memory_order_relaxed));
    FILE *f = fopen(path, "re");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* after the command name */
    return p && p[1] == ' ' && p[2] == 'R';
}
static struct wstate *ws;

static void stall_report(unsigned i, struct coru__worker *w, struct coru_co *co, int64_t ran)
{
    char name[32], nm[40] = "", site[256];
    uint64_t id = atomic_load_explicit(&co->id, memory_order_relaxed);
    coru__reg_get_name(&co->reg, name);
    if (name[0]) snprintf(nm, sizeof nm, " \"%s\"", name);
    coru__symbolize(atomic_load_explicit(&co->reg.site, memory_order_relaxed), site, sizeof site);
    char buf[768];
    int n = snprintf(buf, sizeof buf,
                     "coru: stall: coroutine %llu%s has run for %lld ms on worker %u without parking or "
                     "yielding (threshold %lld ms); spawned at %s\n",
                     (unsigned long long)id, nm, (long long)(ran / 1000000), i, (long long)(mon.stall_ns / 1000000),
                     site);
    if (n > 0 && write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1) < 0) return;
    if (!mon.urg_ours) {
        static const char no[] = "coru: stall: no backtrace (the program has its own SIGURG handler)\n";
        if (write(2, no, sizeof no - 1) < 0) return;
        return;
    }
    n = snprintf(buf, sizeof buf, "coru: stall: backtrace of worker %u:\n", i);
    if (write(2, buf, (size_t)n) < 0) return;
    atomic_store_explicit(&bt_done, false, memory_order_relaxed);
    atomic_store_explicit(&bt_req, true, memory_order_release);
    if (pthread_kill(w->thread, SIGURG) != 0) {
        atomic_store_explicit(&bt_req, false, memory_order_relaxed);
        return;
    }
    for (int k = 0; k < 200 && !atomic_load_explicit(&bt_done, memory_order_acquire); k++) usleep(1000);
    /* Not taken in time (the worker has SIGURG blocked): a late one must
     * not print into the next report. */
    if (atomic_exchange_explicit(&bt_req, false, memory_order_acq_rel)) {
        static const char late[] = "coru: stall: the worker did not take the backtrace signal in 200 ms\n";
        if (write(2, late, sizeof late - 1) < 0) return;
    }
}

static void stall_check(int64_t now)
{
    unsigned n = coru__sched_nworkers();
    for (unsigned i = 0; i < n; i++) {
        struct coru__worker *w = coru__sched_worker(i);
        /* Spawning counts as activity: a loop that starts a million
         * coroutines (which other workers take) is the run's way to get
         * going, not a computation hiding from the scheduler. */
        uint64_t sw = atomic_load_explicit(&w->st.switches, memory_order_relaxed) +
                      atomic_load_explicit(&w->st.spawns, memory_order_relaxed);
        struct coru_co *cur = atomic_load_explicit(&w->cur_pub, memory_order_relaxed);
        struct wstate *s = &ws[i];
        if (!cur || sw != s->switches || cur != s->cur) {
            s->switches = sw;
            s->cur = cur;
            s->seen = now;
            s->cpu = cur ? thread_cpu(w) : -1;
            s->reported = false;
            continue;
        }
        if (!s->reported && now - s->seen >= mon.stall_ns) {
            /* A thread the OS kept off the CPU (a loaded machine) is not
             * a stalled coroutine: it got less than half the time and is
             * waiting to run, not in a system call. Start over. */
            int64_t cpu = thread_cpu(w);
            if (s->cpu >= 0 && cpu >= 0 && cpu - s->cpu < (now - s->seen) / 2 && thread_runnable(w)) {
                s->seen = now;
                s->cpu = cpu;
                continue;
            }
            s->reported = true;
            stall_report(i, w, cur, now - s->seen);
        }
    }
}

/* ------------------------------------------------------------ deadlock */

static uint64_t progress_mark(void)
{
    uint64_t m = coru__sched_live() * 0x9e3779b97f4a7c15ull;
    unsigned n = coru__sched_nworkers();
    for (unsigned i = 0; i < n; i++) {
        struct coru__worker *w = coru__sched_worker(i);
        m += atomic_load_explicit(&w->st.switches, memory_order_relaxed);
        m += atomic_load_explicit(&w->st.wakeups, memory_order_relaxed) << 20;
    }
    return m;
}

struct stuck_count {
    size_t all, stuck;
};

/* Whether e waits for something only another coroutine can give. */
static bool only_coroutines(const struct coru__reg_entry *e, bool sync_ext)
{
    if (e->worker >= 0 || (e->pstate != CO_PARKED && e->pstate != CO_PARKING)) return false;
    switch (e->kind) {
    case CORU__W_SLEEP:
        return e->until < 0;
    case CORU__W_CHAN_SEND:
    case CORU__W_CHAN_RECV:
    case CORU__W_SELECT:
        return e->until < 0 && !e->ext;
    case CORU__W_JOIN:
        return e->until < 0;
    case CORU__W_MUTEX:
    case CORU__W_COND:
    case CORU__W_SEMA:
    case CORU__W_WAITGROUP:
        return e->until < 0 && !sync_ext;
    default:
        return false; /* I/O, the pool, or not parked on anything */
    }
}

static void count_stuck(const struct coru__reg_entry *e, void *ctx)
{
    struct stuck_count *c = ctx;
    c->all++;
    c->stuck += only_coroutines(e, atomic_load_explicit(&coru__ext_waited, memory_order_relaxed));
}

static uint64_t dl_mark;
static int64_t dl_since;
static bool dl_reported;

static void deadlock_check(int64_t now)
{
    uint64_t m = progress_mark();
    if (m != dl_mark) {
        dl_mark = m;
        dl_since = now;
        dl_reported = false;
        return;
    }
    if (dl_reported || now - dl_since < mon.grace_ns) return;
    if (atomic_load_explicit(&coru__ext_blocked, memory_order_relaxed) > 0) return;
    uint64_t live = coru__sched_live();
    if (!live) return;
    struct coru_co *cur[256];
    const char *engine;
    unsigned nw = coru__sched_current(cur, &engine);
    struct stuck_count c = {0, 0};
    coru__reg_walk(count_stuck, &c, cur, nw);
    if (c.all == 0 || c.stuck != c.all || c.all != live || progress_mark() != m) return;
    dl_reported = true;
    char title[160];
    snprintf(title, sizeof title, "coru: deadlock: all %zu coroutines are parked and nothing can wake them", c.all);
    coru__dump_to(2, CORU_DUMP_GROUPED, title);
    if (mon.deadlock == CORU_DEADLOCK_ABORT) {
        static const char ab[] = "coru: deadlock: aborting (CORU_DEADLOCK_ABORT)\n";
        if (write(2, ab, sizeof ab - 1) < 0) abort();
        abort();
    }
    static const char kw[] = "coru: deadlock: keeping on waiting (CORU_DEADLOCK=abort to abort instead)\n";
    if (write(2, kw, sizeof kw - 1) < 0) return;
}

/* ------------------------------------------------------------ thread */

static void *monitor_main(void *arg)
{
    (void)arg;
    int64_t period = MAX_PERIOD_NS;
    if (mon.stall_ns && mon.stall_ns / 4 < period) period = mon.stall_ns / 4;
    if (period < 1000000) period = 1000000;
    int64_t start = coru__now_ns();
    dl_mark = 0;
    dl_since = start;
    dl_reported = false;
    while (!atomic_load_explicit(&mon.stop, memory_order_acquire)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + period;
        ts.tv_sec = t / 1000000000;
        ts.tv_nsec = t % 1000000000;
        sem_clockwait(&sem, CLOCK_MONOTONIC, &ts);
        if (atomic_load_explicit(&mon.stop, memory_order_acquire)) break;
        if (atomic_exchange_explicit(&mon.dump_req, false, memory_order_relaxed))
            coru__dump_to(2, coru__sched_live() > 1000 ? CORU_DUMP_GROUPED : 0, "coru: dump (signal)");
        int64_t now = coru__now_ns();
        if (mon.stall_ns) stall_check(now);
        if (mon.deadlock != CORU_DEADLOCK_OFF) deadlock_check(now);
    }
    return NULL;
}

static int run_sig; /* the run's dump signal, as coru_run resolved it */

int coru__monitor_signal(const struct coru_opts *o)
{
    return run_sig = o->dump_signal > 0 ? o->dump_signal : env_signal();
}

int coru__monitor_start(const struct coru_opts *o)
{
    memset(&mon, 0, sizeof mon);
    mon.dump_sig = run_sig; /* coru__monitor_signal ran first */
    mon.stall_ns = stall_ns_of(o->stall_ms);
    mon.deadlock = deadlock_of(o->deadlock);
    mon.grace_ns = (int64_t)(o->deadlock_grace_ms ? o->deadlock_grace_ms : DEFAULT_GRACE_MS) * 1000000;
    atomic_store(&coru__ext_blocked, 0);
    atomic_store(&coru__ext_waited, false);
    if (!mon.dump_sig && !mon.stall_ns && mon.deadlock == CORU_DEADLOCK_OFF) return 0;
    pthread_once(&sem_once, sem_setup);
    while (sem_trywait(&sem) == 0) {
    } /* posts left by an earlier run */
    ws = coru__calloc(coru__sched_nworkers(), sizeof *ws);
    if (!ws) return -ENOMEM;
    if (mon.stall_ns) urg_install();
    if (mon.dump_sig) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_dump_signal;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(mon.dump_sig, &sa, &mon.old_dump) != 0) mon.dump_sig = 0;
    }
    /* The monitor blocks every signal but the dump signal (which the
     * workers block): its handler then runs here, or on a plain thread
     * of the program, and only posts the semaphore. */
    sigset_t all, old;
    sigfillset(&all);
    if (mon.dump_sig) sigdelset(&all, mon.dump_sig);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = coru__pthread_create(&mon.th, NULL, monitor_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        coru__monitor_stop();
        return -rc;
    }
    pthread_setname_np(mon.th, "coru-monitor");
    mon.running = true;
    return 0;
}

void coru__monitor_stop(void)
{
    if (mon.running) {
        atomic_store_explicit(&mon.stop, true, memory_order_release);
        sem_post(&sem);
        pthread_join(mon.th, NULL);
        mon.running = false;
    }
    if (mon.dump_sig) sigaction(mon.dump_sig, &mon.old_dump, NULL);
    if (mon.urg_ours) sigaction(SIGURG, &mon.old_urg, NULL);
    mon.dump_sig = 0;
    mon.urg_ours = false;
    free(ws);
    ws = NULL;
}
