/* The blocking pool: helper threads that run calls which would block a
 * worker (getaddrinfo, file I/O under epoll, user code), while the
 * calling coroutine is parked.
 *
 * Invariants:
 *   - One process-wide pool; it outlives coru_run (a job holds no pointer
 *     into the runtime other than its waiter's coroutine, which cannot
 *     finish while parked), so a later run reuses its threads.
 *   - A job lives on the caller's stack. The pool thread that pops a job
 *     claims its waiter right then, under pool.mu (waiter.h protocol: the
 *     queue is the job's wait queue and pool.mu its lock). Claimed, the
 *     waiter can be woken by nobody else, so the stack (and fn's
 *     arguments on it) stay valid until that thread's coru__waiter_wake,
 *     after which the thread touches neither the job nor the waiter.
 *   - The caller parks with its deadline and cancellation: if either
 *     claims the waiter first, fn never runs; a thread that pops such a
 *     job loses the claim and drops it without touching it again, and
 *     the caller, before returning, takes pool.mu and unlinks the job if
 *     it is still queued (step 4 of the protocol). Once a thread has
 *     claimed the job, only that thread's wake ends the wait.
 *   - Threads start lazily, one per job that finds no idle thread, up to
 *     `max` (64, or CORU_BLOCKING_THREADS in 1..1024). An idle thread
 *     exits after IDLE_NS without a job. Threads are detached: nothing
 *     joins them, and a process exit with idle threads is fine.
 *   - Every queued job is eventually run: a thread leaves its loop (to
 *     wait or to exit) only after seeing the queue empty under `mu`, and
 *     a push either hands a wake-up to an idle thread, starts a thread,
 *     or finds `max` threads, each running a job or about to look at the
 *     queue.
 *   - idle + wakeups = the threads in (or woken from and not yet out of)
 *     the condition wait. A push that wakes one moves it from idle to
 *     wakeups, so two pushes never count on the same idle thread (two
 *     jobs queued behind one thread could deadlock when one waits for
 *     the other).
 *   - Pool threads block every signal, so process-directed signals go
 *     to the application's threads.
 *
 * Ownership: every field of `pool` is guarded by pool.mu (pthread mutex:
 * the condition variable needs one; it is held only for queue updates,
 * never while a job runs).
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "fail.h"
#include "coru.h"
#include "sched/dump.h"
#include "sched/sched.h"
#include "sched/waiter.h"

#define DEFAULT_THREADS 64
#define MAX_THREADS 1024
#define IDLE_NS (10 * 1000000000LL)

struct job {
    void *(*fn)(void *arg);
    void *arg;
    void *result;             /* written by the pool thread before the wake */
    struct coru__waiter *w;   /* the parked caller */
    struct job *next;         /* FIFO link; pool.mu */
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* CLOCK_MONOTONIC, for the idle timeout */
    struct job *head, *tail;  /* FIFO of jobs no thread has taken yet */
    unsigned nthreads;        /* started and not yet exited */
    unsigned idle;            /* waiting, not yet handed a wake-up */
    unsigned wakeups;         /* wake-ups handed out, not yet taken */
    unsigned max;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* fork: the child has none of the parent's threads, and the parent's
 * queued jobs belong to its coroutines; start the child's pool afresh. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&pool.mu);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&pool.mu);
}

static void fork_child(void)
{
    pool.head = pool.tail = NULL;
    pool.nthreads = pool.idle = pool.wakeups = 0;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pool.cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_unlock(&pool.mu);
}

/* Called once, by the first coru_blocking on a coroutine. */
static void pool_init(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pool.cv, &ca);
    pthread_condattr_destroy(&ca);

    unsigned max = DEFAULT_THREADS;
    const char *env = getenv("CORU_BLOCKING_THREADS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v >= 1 && v <= MAX_THREADS) max = (unsigned)v;
    }
    pool.max = max;
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* Runs one job whose waiter this thread claimed: the caller's fn, then
 * its wake. The job and the waiter are dead to this thread once
 * coru__waiter_wake is called. */
static void run_job(struct job *j)
{
    struct coru__waiter *w = j->w;
    j->result = j->fn(j->arg);
    coru__waiter_wake(w, 0, 0); /* its release orders the result write */
}

static void deadline_in(struct timespec *ts, int64_t ns)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ns / 1000000000;
    ts->tv_nsec += ns % 1000000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* A pool thread: takes jobs in FIFO order; exits after IDLE_NS idle. */
static void *pool_thread(void *unused)
{
    struct timespec until;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        deadline_in(&until, IDLE_NS);
        bool timed_out = false;
        while (!pool.head) {
            if (timed_out) {
                pool.nthreads--;
                pthread_mutex_unlock(&pool.mu);
                return NULL;
            }
            pool.idle++;
            int rc = pthread_cond_timedwait(&pool.cv, &pool.mu, &until);
            /* Leave the wait count: through a wake-up handed to us (the
             * pusher already took us off idle) or on our own (timeout,
             * spurious wake-up). Either way we now look at the queue. */
            if (pool.wakeups)
                pool.wakeups--;
            else
                pool.idle--;
            if (rc == ETIMEDOUT) timed_out = true;
        }
        struct job *j = pool.head;
        pool.head = j->next;
        if (!pool.head) pool.tail = NULL;
        /* Claim under pool.mu: a caller whose deadline or cancel won
         * instead waits for this lock before its stack goes away. */
        bool mine = coru__waiter_claim(j->w);
        pthread_mutex_unlock(&pool.mu);
        if (mine) run_job(j);
        pthread_mutex_lock(&pool.mu);
    }
}

/* Starts one pool thread with every signal blocked. Call with pool.mu
 * held. Returns 0 or -EAGAIN / -ENOMEM. */
static int start_thread(void)
{
    pthread_attr_t attr;
    pthread_t t;
    sigset_t all, old;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the new thread inherits it */
    int rc = coru__pthread_create(&t, &attr, pool_thread, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc) return rc == ENOMEM ? -ENOMEM : -EAGAIN;
    pool.nthreads++;
    return 0;
}

/* Queues j and makes sure a thread will take it. 0, or the error of
 * starting a thread when none exists (j is not queued then). */
static int submit(struct job *j)
{
    pthread_once(&pool_once, pool_init);
    pthread_mutex_lock(&pool.mu);
    j->next = NULL;
    if (pool.tail)
        pool.tail->next = j;
    else
        pool.head = j;
    pool.tail = j;
    int rc = 0;
    if (pool.idle) {
        pool.idle--;
        pool.wakeups++;
        pthread_cond_signal(&pool.cv);
    } else if (pool.nthreads < pool.max) {
        rc = start_thread();
        /* With threads left, one of them will take j when it is free. */
        if (rc && pool.nthreads > 0) rc = 0;
        if (rc) pool.head = pool.tail = NULL; /* no thread: j is alone */
    }
    pthread_mutex_unlock(&pool.mu);
    return rc;
}

/* Removes j from the queue if it is still there. pool.mu held. */
static void unlink_job(struct job *j)
{
    struct job *prev = NULL;
    for (struct job *q = pool.head; q; prev = q, q = q->next) {
        if (q != j) continue;
        if (prev)
            prev->next = j->next;
        else
            pool.head = j->next;
        if (pool.tail == j) pool.tail = prev;
        return;
    }
}

/* coru_blocking and coru_blocking_dl: one rule. The caller parks with its
 * deadline and cancellation; either can only keep fn from starting. */
static int run_blocking(void *(*fn)(void *arg), void *arg, void **result, int64_t deadline)
{
    if (!fn) return -EINVAL;
    if (coru__gen_depth > 0) return -EPERM;
    if (coru__self_cancelled()) return -ECANCELED; /* it wins over -ETIMEDOUT (coru.h) */
    if (coru__dl_passed(deadline)) return -ETIMEDOUT;
    if (!coru__co_self()) { /* a plain thread may block itself */
        atomic_fetch_add_explicit(&coru__ext_blocked, 1, memory_order_relaxed); /* see dump.h */
        void *r = fn(arg);
        atomic_fetch_sub_explicit(&coru__ext_blocked, 1, memory_order_relaxed);
        if (result) *result = r;
        return 0;
    }
    struct coru__waiter w;
    int rc = coru__waiter_init(&w); /* -ECANCELED if already cancelled */
    if (rc) return rc;
    struct job j = {.fn = fn, .arg = arg, .w = &w};
    rc = submit(&j);
    if (rc) {
        coru__waiter_abort(&w);
        return rc;
    }
    coru__waiter_on(&w, CORU__W_POOL, (const void *)(uintptr_t)fn, 0, false);
    rc = coru__waiter_block(&w, deadline);
    if (rc) {
        /* The deadline or a cancel claimed the wait: no thread runs j.
         * Step 4: once we hold pool.mu no thread holds j either. */
        pthread_mutex_lock(&pool.mu);
        unlink_job(&j);
        pthread_mutex_unlock(&pool.mu);
        return rc;
    }
    if (result) *result = j.result;
    return 0;
}

int coru_blocking(void *(*fn)(void *arg), void *arg, void **result)
{
    return run_blocking(fn, arg, result, CORU_NEVER);
}

int coru_blocking_dl(void *(*fn)(void *arg), void *arg, void **result, int64_t deadline)
{
    return run_blocking(fn, arg, result, deadline);
}

/* ---------------------------------------------------------- getaddrinfo */

struct gai_call {
    const char *host, *service;
    const struct addrinfo *hints;
    struct addrinfo *res;
    int rc;   /* getaddrinfo's EAI_* result */
    int err;  /* errno, for EAI_SYSTEM (read on the pool thread) */
};

static void *gai_job(void *p)
{
    struct gai_call *c = p;
    errno = 0; /* the pool thread's own errno; never the caller's */
    c->rc = getaddrinfo(c->host, c->service, c->hints, &c->res);
    c->err = errno;
    return NULL;
}

static int gai_errno(int eai, int err)
{
    switch (eai) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return -ENOENT;
    case EAI_AGAIN: return -EAGAIN;
    case EAI_MEMORY: return -ENOMEM;
    case EAI_SYSTEM: return err > 0 ? -err : -EIO;
    case EAI_BADFLAGS:
    case EAI_FAMILY:
    case EAI_SOCKTYPE:
    case EAI_SERVICE: return -EINVAL;
    default: return -EIO;
    }
}

int coru_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                     struct addrinfo **res)
{
    if (!res) return -EINVAL;
    *res = NULL;
    struct gai_call c = {.host = host, .service = service, .hints = hints};
    int rc = coru_blocking(gai_job, &c, NULL);
    if (rc) return rc;
    if (c.rc) return gai_errno(c.rc, c.err);
    *res = c.res;
    return 0;
}
