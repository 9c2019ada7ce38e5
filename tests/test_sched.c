/* test_sched: the scheduler seen from users: coru_run, spawn, join, yield,
 * identity, stats, a million coroutines, and stack overflow reports. The
 * behaviours that depend on the engine run on io_uring and on epoll. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "coru.h"
#include "helpers.h"

#ifdef CORU_ASAN
/* Let coru's overflow reporter own SIGSEGV (ASan ignores a user handler
 * otherwise). */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allow_user_segv_handler=1:detect_leaks=1";
}
#endif

#ifdef CORU_TSAN
/* The overflow test forks a child that starts a runtime (threads); the
 * parent, Criterion's runner, already has threads. TSan refuses that by
 * default; the child only needs to run long enough to overflow. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "die_after_fork=0";
}
#endif


static struct coru_opts opts_for(enum coru_io io, unsigned workers)
{
    struct coru_opts o = {0};
    o.io = io;
    o.workers = workers;
    return o;
}

/* ------------------------------------------------------------ run and join */

static _Atomic long leaf_count;

static void *leaf(void *arg)
{
    atomic_fetch_add(&leaf_count, 1);
    return (void *)((intptr_t)arg * 2);
}

static void *fanout(void *arg)
{
    /* fire-and-forget grandchildren: coru_run must still wait for them */
    for (int i = 0; i < 10; i++) cr_assert_eq(coru_go(leaf, (void *)(intptr_t)i, NULL), 0);
    return arg;
}

static void *main_spawn_join(void *arg)
{
    enum { N = 2000 };
    coru_t **hs = calloc(N, sizeof *hs);
    for (intptr_t i = 0; i < N; i++)
        cr_assert_eq(coru_spawn(&hs[i], i % 2 ? leaf : fanout, (void *)i, NULL), 0);
    long sum = 0;
    for (intptr_t i = 0; i < N; i++) {
        void *r = NULL;
        cr_assert_eq(coru_join(hs[i], &r), 0);
        sum += (long)(intptr_t)r;
        if (i % 2) cr_assert_eq((intptr_t)r, 2 * i);
        else cr_assert_eq((intptr_t)r, i);
    }
    free(hs);
    *(long *)arg = sum;
    return NULL;
}

Test(sched, spawn_and_join_return_each_result_across_workers, .timeout = 60)
{
    FOR_EACH_ENGINE(io) {
        atomic_store(&leaf_count, 0);
        long sum = 0;
        struct coru_opts o = opts_for(io, 2);
        cr_assert_eq(coru_run(main_spawn_join, &sum, &o), 0);
        /* odd i: 2i; even i: i */
        long want = 0;
        for (long i = 0; i < 2000; i++) want += i % 2 ? 2 * i : i;
        cr_assert_eq(sum, want);
        /* 1000 direct leaves + 1000 fanouts * 10 grandchildren, all ran
         * before coru_run returned */
        cr_assert_eq(atomic_load(&leaf_count), 1000 + 1000 * 10);
    }
}

static void *sleepy_child(void *arg)
{
    for (int i = 0; i < 50; i++) coru_yield();
    return arg;
}

static void *join_from_many(void *arg)
{
    /* Children join their own children, from whatever worker they are on. */
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, sleepy_child, arg, NULL), 0);
    void *r;
    cr_assert_eq(coru_join(h, &r), 0);
    return r;
}

static void *main_nested_join(void *arg)
{
    enum { N = 500 };
    coru_t *hs[N];
    for (intptr_t i = 0; i < N; i++) cr_assert_eq(coru_spawn(&hs[i], join_from_many, (void *)i, NULL), 0);
    for (intptr_t i = 0; i < N; i++) {
        void *r;
        cr_assert_eq(coru_join(hs[i], &r), 0);
        cr_assert_eq((intptr_t)r, i);
    }
    return arg;
}

Test(sched, join_parks_until_the_child_finishes_on_any_worker, .timeout = 60)
{
    FOR_EACH_ENGINE(io) {
        struct coru_opts o = opts_for(io, 2);
        cr_assert_eq(coru_run(main_nested_join, NULL, &o), 0);
        struct coru_stats st;
        cr_assert_eq(coru_stats(&st), 0);
        cr_assert_str_eq(st.engine, expected_engine(io));
    }
}

/* ------------------------------------------------------------ errors */

static void *noop(void *arg)
{
    return arg;
}

static void *plain_thread_join(void *h)
{
    return (void *)(intptr_t)coru_join(h, NULL);
}

static void *main_errors(void *arg)
{
    cr_assert_eq(coru_join(NULL, NULL), -EINVAL);
    cr_assert_eq(coru_join(coru_self(), NULL), -EDEADLK);
    cr_assert_eq(coru_spawn(NULL, noop, NULL, NULL), -EINVAL);
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, NULL, NULL, NULL), -EINVAL);
    struct coru_attr big = {.stack_size = (size_t)2 << 30};
    cr_assert_eq(coru_spawn(&h, noop, NULL, &big), -EINVAL);
    cr_assert_eq(coru_go(NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(coru_run(noop, NULL, NULL), -EBUSY);
    cr_assert_eq(coru_detach(NULL), -EINVAL);

    /* a plain thread may not join (it cannot park) */
    cr_assert_eq(coru_spawn(&h, noop, (void *)7, NULL), 0);
    pthread_t t;
    void *trc;
    pthread_create(&t, NULL, plain_thread_join, h);
    pthread_join(t, &trc);
    cr_assert_eq((intptr_t)trc, -EPERM);
    void *r;
    cr_assert_eq(coru_join(h, &r), 0);
    cr_assert_eq((intptr_t)r, 7);
    return arg;
}

Test(sched, misuse_returns_error_codes, .timeout = 30)
{
    cr_assert_eq(coru_run(NULL, NULL, NULL), -EINVAL);
    struct coru_opts bad = {.workers = 1000};
    cr_assert_eq(coru_run(noop, NULL, &bad), -EINVAL);
    bad = (struct coru_opts){.io = 7};
    cr_assert_eq(coru_run(noop, NULL, &bad), -EINVAL);
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, noop, NULL, NULL), -EPERM); /* no runtime */
    cr_assert_eq(coru_go(noop, NULL, NULL), -EPERM);
    cr_assert_eq(coru_yield(), -EPERM);
    cr_assert_eq(coru_join(NULL, NULL), -EINVAL);
    cr_assert_null(coru_self());
    cr_assert_eq(coru_id(NULL), 0);
    cr_assert_eq(coru_worker(), -1);
    cr_assert_eq(coru_stats(NULL), -EINVAL);
    struct coru_opts o = opts_for(CORU_IO_AUTO, 2);
    cr_assert_eq(coru_run(main_errors, NULL, &o), 0);
}

/* ------------------------------------------------------------ identity */

static void *report_id(void *arg)
{
    uint64_t *out = arg;
    *out = coru_id(NULL);
    cr_assert_eq(coru_id(coru_self()), *out);
    int w = coru_worker();
    cr_assert(w >= 0 && w < 2);
    return NULL;
}

static void *main_ids(void *arg)
{
    enum { N = 100 };
    uint64_t ids[N];
    coru_t *hs[N];
    for (int i = 0; i < N; i++) cr_assert_eq(coru_spawn(&hs[i], report_id, &ids[i], NULL), 0);
    for (int i = 0; i < N; i++) {
        uint64_t id = coru_id(hs[i]);
        cr_assert_eq(coru_join(hs[i], NULL), 0);
        cr_assert_eq(ids[i], id);
        cr_assert_neq(id, 0);
        for (int k = 0; k < i; k++) cr_assert_neq(ids[k], ids[i]);
    }
    cr_assert_neq(coru_id(NULL), 0);
    return arg;
}

Test(sched, ids_are_unique_and_self_matches_handle, .timeout = 30)
{
    struct coru_opts o = opts_for(CORU_IO_AUTO, 2);
    cr_assert_eq(coru_run(main_ids, NULL, &o), 0);
}

/* ------------------------------------------------------------ yield fairness */

enum { FAIR_CO = 4, FAIR_ROUNDS = 1000 };
static int fair_log[FAIR_CO * FAIR_ROUNDS];
static int fair_n;

static void *fair_worker(void *arg)
{
    for (int i = 0; i < FAIR_ROUNDS; i++) {
        fair_log[fair_n++] = (int)(intptr_t)arg;
        cr_assert_eq(coru_yield(), 0);
    }
    return NULL;
}

static void *main_fair(void *arg)
{
    coru_t *hs[FAIR_CO];
    for (intptr_t i = 0; i < FAIR_CO; i++) cr_assert_eq(coru_spawn(&hs[i], fair_worker, (void *)i, NULL), 0);
    for (int i = 0; i < FAIR_CO; i++) cr_assert_eq(coru_join(hs[i], NULL), 0);
    return arg;
}

Test(sched, yields_interleave_round_robin_on_one_worker, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        fair_n = 0;
        struct coru_opts o = opts_for(io, 1);
        cr_assert_eq(coru_run(main_fair, NULL, &o), 0);
        cr_assert_eq(fair_n, FAIR_CO * FAIR_ROUNDS);
        /* Every window of FAIR_CO consecutive turns holds each coroutine
         * exactly once: nobody runs twice before the others ran once. */
        for (int start = 0; start + FAIR_CO <= fair_n; start += FAIR_CO) {
            int seen[FAIR_CO] = {0};
            for (int k = 0; k < FAIR_CO; k++) seen[fair_log[start + k]]++;
            for (int k = 0; k < FAIR_CO; k++) cr_assert_eq(seen[k], 1, "window at %d", start);
        }
    }
}

static _Atomic long yield_counts[2];

static void *yield_counter(void *arg)
{
    for (int i = 0; i < 20000; i++) {
        atomic_fetch_add(&yield_counts[(intptr_t)arg], 1);
        coru_yield();
    }
    return NULL;
}

static void *main_two_yielders(void *arg)
{
    coru_t *a, *b;
    cr_assert_eq(coru_spawn(&a, yield_counter, (void *)0, NULL), 0);
    cr_assert_eq(coru_spawn(&b, yield_counter, (void *)1, NULL), 0);
    coru_join(a, NULL);
    coru_join(b, NULL);
    return arg;
}

Test(sched, stats_count_switches_spawns_and_parks, .timeout = 30)
{
    struct coru_opts o = opts_for(CORU_IO_AUTO, 1);
    cr_assert_eq(coru_run(main_two_yielders, NULL, &o), 0);
    struct coru_stats st;
    cr_assert_eq(coru_stats(&st), 0);
    cr_assert_eq(st.workers, 1);
    cr_assert_eq(atomic_load(&yield_counts[0]), 20000);
    cr_assert_eq(atomic_load(&yield_counts[1]), 20000);
    /* main + 2 children spawned; 40000 yields each resume a coroutine */
    cr_assert_eq(st.total.spawns, 2); /* main is queued by coru_run itself */
    cr_assert_geq(st.total.switches, 40000);
    cr_assert_lt(st.total.switches, 40000 + 100);
    /* main parked in join at least once (the children were still running) */
    cr_assert_geq(st.total.parks, 1);
    cr_assert_geq(st.total.wakeups, 1);
    cr_assert_eq(st.worker[0].switches, st.total.switches);
}

/* ------------------------------------------------------------ plain threads */

static _Atomic int from_thread_ran;

static void *thread_ran(void *arg)
{
    atomic_fetch_add(&from_thread_ran, 1);
    return arg;
}

static void *plain_spawner(void *arg)
{
    for (int i = 0; i < 100; i++) cr_assert_eq(coru_go(thread_ran, NULL, NULL), 0);
    atomic_store((_Atomic int *)arg, 1);
    return NULL;
}

static void *main_wait_thread(void *arg)
{
    _Atomic int done = 0;
    pthread_t t;
    pthread_create(&t, NULL, plain_spawner, &done);
    while (!atomic_load(&done)) coru_yield();
    pthread_join(t, NULL);
    return arg;
}

Test(sched, plain_thread_spawns_into_the_running_runtime, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        atomic_store(&from_thread_ran, 0);
        struct coru_opts o = opts_for(io, 2);
        cr_assert_eq(coru_run(main_wait_thread, NULL, &o), 0);
        cr_assert_eq(atomic_load(&from_thread_ran), 100);
    }
}

/* A plain thread spawning in a loop while the run ends: each coru_go
 * either returns 0 and its coroutine runs to the end inside this run, or
 * returns -EPERM; never 0 for a coroutine that is dropped or still
 * running when coru_run returns. The thread starts spawning as the main
 * coroutine returns, so its spawns race the end of the run; they yield
 * and park (a short sleep) so that some are mid-flight at the end. The
 * code before the fix failed within two rounds. */
struct endrace {
    _Atomic int go, stop;
    _Atomic long ok, started, finished, other;
};

static void *endrace_child(void *arg)
{
    struct endrace *e = arg;
    atomic_fetch_add(&e->started, 1);
    coru_yield();
    coru_sleep(20 * 1000);
    atomic_fetch_add(&e->finished, 1);
    return NULL;
}

/* A thread that never pauses keeps the run alive (it ends only when no
 * coroutine is left), so this one pauses up to 40 us between spawns (a
 * busy wait: usleep's slack would make the gaps long and the race rare):
 * the run then ends in one of those pauses, racing the next spawn. Under
 * TSan a coroutine takes a millisecond or more to start, and shorter pauses
 * would pile up coroutines faster than they finish. */
#ifdef CORU_TSAN
#define ENDRACE_PAUSE_US 3000
#else
#define ENDRACE_PAUSE_US 40
#endif
static void *endrace_thread(void *arg)
{
    struct endrace *e = arg;
    unsigned seed = (unsigned)(uintptr_t)e;
    while (!atomic_load(&e->go)) {
    }
    for (;;) {
        int rc = coru_go(endrace_child, e, NULL);
        if (rc == 0) {
            atomic_fetch_add(&e->ok, 1);
            int64_t until = coru_now() + (rand_r(&seed) % ENDRACE_PAUSE_US) * 1000;
            while (coru_now() < until) {
            }
        } else if (rc == -EPERM) {
            if (atomic_load(&e->stop)) break;
        } else {
            atomic_fetch_add(&e->other, 1);
            break;
        }
    }
    return NULL;
}

static void *endrace_main(void *arg)
{
    struct endrace *e = arg;
    coru_sleep(1000 * 1000);
    atomic_store(&e->go, 1);
    return NULL;
}

Test(sched, a_plain_thread_spawn_racing_the_end_of_the_run_runs_or_gets_eperm, .timeout = 120)
{
#ifdef CORU_TSAN
    enum { ROUNDS = 20 }; /* gcc 12's TSan runs out of thread traces: each coroutine is a fiber */
#else
    enum { ROUNDS = 100 };
#endif
    long spawned = 0;
    FOR_EACH_ENGINE(io) {
        for (int round = 0; round < ROUNDS; round++) {
            struct endrace e = {0};
            pthread_t t;
            cr_assert_eq(pthread_create(&t, NULL, endrace_thread, &e), 0);
            struct coru_opts o = opts_for(io, 2);
            cr_assert_eq(coru_run(endrace_main, &e, &o), 0);
            /* What ran in the run, as coru_run returns; then every spawn
             * that returned 0 (some may return just after this) must be
             * among them. */
            long started = atomic_load(&e.started), fin = atomic_load(&e.finished);
            atomic_store(&e.stop, 1);
            cr_assert_eq(pthread_join(t, NULL), 0);
            long ok = atomic_load(&e.ok);
            spawned += ok;
            cr_assert_eq(atomic_load(&e.other), 0);
            cr_assert_eq(started, ok, "round %d: %ld spawns returned 0, %ld started in the run", round, ok,
                         started);
            cr_assert_eq(fin, ok, "round %d: %ld spawns returned 0, %ld finished in the run", round, ok, fin);
        }
    }
    cr_assert_gt(spawned, 0);
    cr_log_info("%ld spawns raced the end of %d runs", spawned, 2 * ROUNDS);
    cr_assert_eq(coru_go(endrace_child, NULL, NULL), -EPERM, "no runtime: -EPERM");
}

/* coru_yield is not a cancellation point: it returns 0 in a cancelled
 * coroutine (coru_sleep(0) is one). */
static void *yield_cancelled_child(void *arg)
{
    _Atomic int *flag = arg;
    while (!atomic_load(flag)) coru_yield();
    int y = coru_yield();
    int s = coru_sleep(0);
    return (void *)(intptr_t)(y == 0 && s == -ECANCELED);
}

static void *yield_cancelled_main(void *arg)
{
    _Atomic int flag = 0;
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, yield_cancelled_child, &flag, NULL), 0);
    cr_assert_eq(coru_cancel(h), 0);
    atomic_store(&flag, 1);
    void *r;
    cr_assert_eq(coru_join(h, &r), 0);
    cr_assert_eq((intptr_t)r, 1, "yield must return 0 and sleep(0) -ECANCELED when cancelled");
    return arg;
}

Test(sched, yield_is_not_a_cancellation_point, .timeout = 30)
{
    struct coru_opts o = opts_for(CORU_IO_AUTO, 2);
    cr_assert_eq(coru_run(yield_cancelled_main, NULL, &o), 0);
}

/* Stats of a run with fewer workers than the one before: the entries
 * past its workers are zero, not the earlier run's. */
static void *spin_a_little(void *arg)
{
    for (int i = 0; i < 100; i++) coru_yield();
    return arg;
}

static void *stats_main(void *arg)
{
    coru_t *h[8];
    for (int i = 0; i < 8; i++) cr_assert_eq(coru_spawn(&h[i], spin_a_little, NULL, NULL), 0);
    for (int i = 0; i < 8; i++) cr_assert_eq(coru_join(h[i], NULL), 0);
    struct coru_stats st;
    cr_assert_eq(coru_stats(&st), 0); /* while running */
    for (unsigned i = st.workers; i < 256; i++) cr_assert_eq(st.worker[i].switches, 0, "worker[%u]", i);
    return arg;
}

Test(sched, stats_past_the_workers_of_this_run_are_zero, .timeout = 30)
{
    struct coru_opts o = opts_for(CORU_IO_AUTO, 4);
    cr_assert_eq(coru_run(stats_main, NULL, &o), 0);
    struct coru_stats st;
    cr_assert_eq(coru_stats(&st), 0);
    cr_assert_eq(st.workers, 4);
    o.workers = 1;
    cr_assert_eq(coru_run(stats_main, NULL, &o), 0);
    cr_assert_eq(coru_stats(&st), 0);
    cr_assert_eq(st.workers, 1);
    cr_assert_gt(st.worker[0].switches, 0);
    for (unsigned i = 1; i < 256; i++) {
        cr_assert_eq(st.worker[i].switches, 0, "worker[%u] kept an earlier run's count", i);
        cr_assert_eq(st.worker[i].spawns, 0);
    }
}

/* ------------------------------------------------------------ stacks */

static void *big_frame(void *arg)
{
    volatile char buf[300 * 1024];
    for (size_t i = 0; i < sizeof buf; i += 4096) buf[i] = (char)i;
    return (void *)(intptr_t)buf[4096];
}

static void *main_big_stack(void *arg)
{
    struct coru_attr a = {.stack_size = 1 << 20};
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, big_frame, NULL, &a), 0);
    void *r;
    cr_assert_eq(coru_join(h, &r), 0);
    cr_assert_eq((intptr_t)r, (char)4096);
    return arg;
}

Test(sched, per_spawn_stack_size_is_honoured, .timeout = 30)
{
    struct coru_opts o = opts_for(CORU_IO_AUTO, 2);
    cr_assert_eq(coru_run(main_big_stack, NULL, &o), 0);
}

static volatile int recurse_limit = 1 << 30; /* never reached: overflow first */

static int recurse(int depth)
{
    volatile char pad[512];
    pad[0] = (char)depth;
    if (depth > recurse_limit) return 0;
    return recurse(depth + 1) + pad[0];
}

static void *overflow_body(void *arg)
{
    *(uint64_t *)arg = coru_id(NULL);
    return (void *)(intptr_t)recurse(0);
}

static uint64_t overflow_id;

static void *main_overflow(void *arg)
{
    coru_t *h;
    struct coru_attr a = {.stack_size = 64 * 1024};
    cr_assert_eq(coru_spawn(&h, overflow_body, &overflow_id, &a), 0);
    coru_join(h, NULL);
    return arg;
}

/* Runs fn in a child process; returns its stderr and termination status. */
static char *run_child(void (*fn)(void), int *status)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        fn();
        _exit(0);
    }
    close(p[1]);
    static char out[8192];
    size_t n = 0;
    ssize_t r;
    while ((r = read(p[0], out + n, sizeof out - 1 - n)) > 0) n += (size_t)r;
    out[n] = 0;
    close(p[0]);
    waitpid(pid, status, 0);
    return out;
}

static void child_overflow(void)
{
    struct coru_opts o = opts_for(CORU_IO_AUTO, 2);
    coru_run(main_overflow, NULL, &o);
}

Test(sched, stack_overflow_names_the_coroutine_and_its_size, .timeout = 60)
{
    int status;
    char *err = run_child(child_overflow, &status);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %#x, stderr: %s", status, err);
    /* the child's ids start where ours were; find the message shape */
    cr_assert(strstr(err, "overflowed its stack (65536 bytes)"), "stderr: %s", err);
    cr_assert(strstr(err, "coru: coroutine "), "stderr: %s", err);
}

/* ------------------------------------------------------------ a million */

#ifdef CORU_TSAN
/* TSan gives every coroutine a fiber, and gcc 12's TSan runtime has a
 * fixed table of about 8k threads+fibers: the full million cannot exist
 * under it. The plain build runs the full count. */
#define MILLION 4000
#elif defined(CORU_ASAN)
/* 40-70 s for the million under ASan, the slowest test of tools/test;
 * what ASan looks for shows at 200,000 as well (and test_stack's million
 * stacks run under ASan in full). */
#define MILLION 200000
#elif defined(CORU_CTX_UCONTEXT)
/* swapcontext makes a system call per switch: 45 s for the million, which
 * the plain and ASan builds run on the assembly switch. */
#define MILLION 100000
#else
#define MILLION 1000000
#endif

/* Under qemu-user (the aarch64 build) a tenth: 47 s there for the
 * million, which the native builds run. */
static long many(void)
{
    return test_emulated() ? MILLION / 10 : MILLION;
}

static _Atomic long alive, peak, finished;
static _Atomic int release_all;

static void *sitter(void *arg)
{
    long now = atomic_fetch_add(&alive, 1) + 1;
    long p = atomic_load(&peak);
    while (now > p && !atomic_compare_exchange_weak(&peak, &p, now)) {
    }
    while (!atomic_load_explicit(&release_all, memory_order_acquire)) coru_yield();
    atomic_fetch_sub(&alive, 1);
    atomic_fetch_add(&finished, 1);
    return arg;
}

static void *main_million(void *arg)
{
    for (long i = 0; i < many(); i++) cr_assert_eq(coru_go(sitter, NULL, NULL), 0);
    while (atomic_load(&peak) < many()) coru_yield();
    atomic_store_explicit(&release_all, 1, memory_order_release);
    return arg;
}

Test(sched, a_million_coroutines_alive_at_once, .timeout = 300)
{
    struct coru_opts o = opts_for(CORU_IO_AUTO, 2);
    cr_assert_eq(coru_run(main_million, NULL, &o), 0);
    cr_assert_eq(atomic_load(&peak), many());
    cr_assert_eq(atomic_load(&finished), many());
    cr_assert_eq(atomic_load(&alive), 0);
}

/* ------------------------------------------------------------ join deadlines */

#define MS (1000 * 1000LL)

static void *wait_for_flag(void *arg)
{
    _Atomic int *flag = arg;
    while (!atomic_load(flag)) coru_sleep(1 * MS);
    return (void *)(intptr_t)42;
}

static void *main_join_dl(void *arg)
{
    _Atomic int flag = 0;
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, wait_for_flag, &flag, NULL), 0);
    void *r = (void *)1;
    int64_t dl = coru_now() + 20 * MS;
    cr_assert_eq(coru_join_dl(h, &r, dl), -ETIMEDOUT);
    cr_assert_geq(coru_now(), dl);
    cr_assert_eq((intptr_t)r, 1, "result written on timeout");
    /* a past deadline: -ETIMEDOUT at once, the handle still valid */
    cr_assert_eq(coru_join_dl(h, &r, 0), -ETIMEDOUT);
    cr_assert_eq(coru_join_dl(h, &r, coru_now() - 1), -ETIMEDOUT);
    atomic_store(&flag, 1);
    cr_assert_eq(coru_join(h, &r), 0);
    cr_assert_eq((intptr_t)r, 42);

    /* deadline 0 polls: -ETIMEDOUT until the coroutine finished, then 0 */
    atomic_store(&flag, 0);
    cr_assert_eq(coru_spawn(&h, wait_for_flag, &flag, NULL), 0);
    cr_assert_eq(coru_join_dl(h, &r, 0), -ETIMEDOUT);
    atomic_store(&flag, 1);
    int rc;
    r = NULL;
    while ((rc = coru_join_dl(h, &r, 0)) == -ETIMEDOUT) cr_assert_eq(coru_sleep(1 * MS), 0);
    cr_assert_eq(rc, 0);
    cr_assert_eq((intptr_t)r, 42);

    /* a deadline not reached: joins as coru_join does */
    cr_assert_eq(coru_spawn(&h, noop, (void *)9, NULL), 0);
    cr_assert_eq(coru_join_dl(h, &r, coru_now() + 10000 * MS), 0);
    cr_assert_eq((intptr_t)r, 9);
    cr_assert_eq(coru_join_dl(NULL, &r, CORU_NEVER), -EINVAL);
    cr_assert_eq(coru_join_dl(coru_self(), &r, CORU_NEVER), -EDEADLK);
    return arg;
}

Test(sched, join_dl_times_out_and_the_handle_stays_joinable, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        struct coru_opts o = opts_for(io, 2);
        cr_assert_eq(coru_run(main_join_dl, NULL, &o), 0);
    }
}

/* ------------------------------------------------------------ cancel */

struct joiner {
    coru_t *target;
    _Atomic int started;
    int rc, again, sleep_rc;
    void *r;
};

static void *cancelled_joiner(void *arg)
{
    struct joiner *j = arg;
    atomic_store(&j->started, 1);
    j->rc = coru_join(j->target, &j->r);
    /* sticky: later blocking calls fail too (the target is still running) */
    j->again = coru_join_dl(j->target, &j->r, coru_now() + 10000 * MS);
    j->sleep_rc = coru_sleep(10000 * MS);
    return NULL;
}

static void *main_cancel_joiner(void *arg)
{
    _Atomic int flag = 0;
    struct joiner j = {.rc = 1, .again = 1, .sleep_rc = 1, .r = (void *)1};
    cr_assert_eq(coru_spawn(&j.target, wait_for_flag, &flag, NULL), 0);
    coru_t *jh;
    cr_assert_eq(coru_spawn(&jh, cancelled_joiner, &j, NULL), 0);
    while (!atomic_load(&j.started)) cr_assert_eq(coru_sleep(1 * MS), 0);
    cr_assert_eq(coru_sleep(20 * MS), 0); /* let it park in the join */
    cr_assert_eq(coru_cancel(jh), 0);     /* the joiner, not the target */
    cr_assert_eq(coru_join(jh, NULL), 0);
    cr_assert_eq(j.rc, -ECANCELED);
    cr_assert_eq(j.again, -ECANCELED);
    cr_assert_eq(j.sleep_rc, -ECANCELED);
    cr_assert_eq((intptr_t)j.r, 1, "result written on cancel");
    /* the target was untouched and its handle is still valid */
    atomic_store(&flag, 1);
    void *r;
    cr_assert_eq(coru_join(j.target, &r), 0);
    cr_assert_eq((intptr_t)r, 42);
    return arg;
}

Test(sched, cancel_wakes_a_parked_joiner_and_the_target_stays_joinable, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        struct coru_opts o = opts_for(io, 2);
        cr_assert_eq(coru_run(main_cancel_joiner, NULL, &o), 0);
    }
}

static void *main_cancel_finished(void *arg)
{
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, noop, (void *)5, NULL), 0);
    /* one worker: yielding runs it (from the run-next slot) to its end;
     * polling with join_dl would consume the handle */
    for (int i = 0; i < 10; i++) cr_assert_eq(coru_yield(), 0);
    cr_assert_eq(coru_cancel(h), 0);
    cr_assert_eq(coru_cancel(h), 0); /* twice is fine */
    void *r;
    cr_assert_eq(coru_join(h, &r), 0, "cancelling a finished coroutine changed its join");
    cr_assert_eq((intptr_t)r, 5);
    /* and the canceller itself is unaffected */
    cr_assert_eq(coru_sleep(1 * MS), 0);
    return arg;
}

Test(sched, cancel_of_a_finished_coroutine_does_nothing, .timeout = 30)
{
    cr_assert_eq(coru_cancel(NULL), -EINVAL); /* plain thread, no runtime */
    struct coru_opts o = opts_for(CORU_IO_AUTO, 1);
    cr_assert_eq(coru_run(main_cancel_finished, NULL, &o), 0);
}

static void *cancel_null_in_coroutine(void *arg)
{
    cr_assert_eq(coru_cancel(NULL), -EINVAL);
    cr_assert_eq(coru_sleep(1 * MS), 0, "coru_cancel(NULL) cancelled the caller");
    return arg;
}

Test(sched, cancel_null_returns_einval, .timeout = 30)
{
    cr_assert_eq(coru_cancel(NULL), -EINVAL);
    struct coru_opts o = opts_for(CORU_IO_AUTO, 1);
    cr_assert_eq(coru_run(cancel_null_in_coroutine, NULL, &o), 0);
}

struct early {
    _Atomic int go;
    int sleep_rc, sleep0_rc, join_rc;
    coru_t *other;
};

static void *cancelled_early(void *arg)
{
    struct early *e = arg;
    /* spin without blocking until the canceller is done */
    while (!atomic_load(&e->go)) coru_yield();
    e->sleep_rc = coru_sleep(10000 * MS);
    e->sleep0_rc = coru_sleep(0);
    e->join_rc = coru_join(e->other, NULL);
    return NULL;
}

static void *main_cancel_early(void *arg)
{
    _Atomic int flag = 0;
    struct early e = {.sleep_rc = 1, .sleep0_rc = 1, .join_rc = 1};
    cr_assert_eq(coru_spawn(&e.other, wait_for_flag, &flag, NULL), 0);
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, cancelled_early, &e, NULL), 0);
    cr_assert_eq(coru_cancel(h), 0);
    atomic_store(&e.go, 1);
    cr_assert_eq(coru_join(h, NULL), 0);
    cr_assert_eq(e.sleep_rc, -ECANCELED);
    cr_assert_eq(e.sleep0_rc, -ECANCELED);
    cr_assert_eq(e.join_rc, -ECANCELED);
    atomic_store(&flag, 1);
    cr_assert_eq(coru_join(e.other, NULL), 0);
    return arg;
}

Test(sched, cancel_before_the_first_block_fails_that_block, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        for (unsigned w = 1; w <= 2; w++) {
            struct coru_opts o = opts_for(io, w);
            cr_assert_eq(coru_run(main_cancel_early, NULL, &o), 0);
        }
    }
}

static void *ten_second_sleeper(void *arg)
{
    atomic_store((_Atomic int *)arg, 1);
    return (void *)(intptr_t)coru_sleep(10000 * MS);
}

static void *plain_canceller(void *h)
{
    return (void *)(intptr_t)coru_cancel(h);
}

static void *main_cancel_from_thread(void *arg)
{
    _Atomic int started = 0;
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, ten_second_sleeper, &started, NULL), 0);
    while (!atomic_load(&started)) cr_assert_eq(coru_sleep(1 * MS), 0);
    cr_assert_eq(coru_sleep(20 * MS), 0);
    pthread_t t;
    void *trc;
    cr_assert_eq(pthread_create(&t, NULL, plain_canceller, h), 0);
    pthread_join(t, &trc);
    cr_assert_eq((intptr_t)trc, 0);
    void *r;
    cr_assert_eq(coru_join(h, &r), 0);
    cr_assert_eq((intptr_t)r, -ECANCELED);
    return arg;
}

Test(sched, a_plain_thread_can_cancel_a_parked_coroutine, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        struct coru_opts o = opts_for(io, 2);
        cr_assert_eq(coru_run(main_cancel_from_thread, NULL, &o), 0);
    }
}
