/* test_blocking: the blocking pool: coru_blocking keeps the worker free
 * for other coroutines, returns each caller its own result under 200
 * concurrent calls, respects the thread cap, survives across runs, calls
 * fn directly on plain threads, refuses NULL fn and generator bodies, and
 * is not cancellable (the cancel lands at the next blocking call), while
 * coru_blocking_dl drops a job still queued at its deadline or cancel;
 * coru_getaddrinfo resolves localhost offline and maps EAI_* codes.
 * Runtime behaviours run on both engines. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "coru.h"
#include "helpers.h"

#define MS (1000 * 1000LL)



/* ------------------------------------------------------------ the worker stays free */

struct progress {
    _Atomic long count;  /* increments by the busy coroutine */
    _Atomic int stop;
};

static void *busy_body(void *arg)
{
    struct progress *p = arg;
    while (!atomic_load(&p->stop)) {
        atomic_fetch_add(&p->count, 1);
        cr_assert_eq(coru_yield(), 0);
    }
    return NULL;
}

static void *sleep_50ms_fn(void *arg)
{
    cr_assert_null(coru_self(), "fn runs on a helper thread, not in a coroutine");
    usleep(50 * 1000);
    return (char *)arg + 1;
}

static void *blocking_with_a_busy_neighbour(void *arg)
{
    struct progress *p = arg;
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, busy_body, p, NULL), 0);
    char x;
    void *res = NULL;
    long before = atomic_load(&p->count);
    int64_t t0 = coru_now();
    cr_assert_eq(coru_blocking(sleep_50ms_fn, &x, &res), 0);
    cr_assert_geq(coru_now() - t0, 50 * MS);
    long during = atomic_load(&p->count) - before;
    cr_assert_eq(res, &x + 1);
    atomic_store(&p->stop, 1);
    cr_assert_eq(coru_join(h, NULL), 0);
    /* one worker: the neighbour ran only because we were parked */
    cr_assert_gt(during, 0, "the busy coroutine made no progress during the blocking call");
    return NULL;
}

Test(blocking, call_parks_the_coroutine_not_its_only_worker, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        struct progress p = {0};
        cr_assert_eq(run_on(io, 1, blocking_with_a_busy_neighbour, &p), 0);
    }
}

/* ------------------------------------------------------------ many callers */

enum { MANY = 200 };

struct peak {
    _Atomic int now, max;
};
static struct peak many_peak;

static void *double_it(void *arg)
{
    int n = atomic_fetch_add(&many_peak.now, 1) + 1;
    int m = atomic_load(&many_peak.max);
    while (n > m && !atomic_compare_exchange_weak(&many_peak.max, &m, n)) {
    }
    usleep(2000);
    atomic_fetch_sub(&many_peak.now, 1);
    return (void *)(2 * (intptr_t)arg);
}

static void *many_one(void *arg)
{
    void *res = NULL;
    cr_assert_eq(coru_blocking(double_it, arg, &res), 0);
    cr_assert_eq((intptr_t)res, 2 * (intptr_t)arg, "caller %ld got %ld", (long)(intptr_t)arg,
                 (long)(intptr_t)res);
    return res;
}

static void *many_callers(void *arg)
{
    coru_t *h[MANY];
    for (intptr_t i = 0; i < MANY; i++) cr_assert_eq(coru_spawn(&h[i], many_one, (void *)(i + 1), NULL), 0);
    for (intptr_t i = 0; i < MANY; i++) {
        void *r;
        cr_assert_eq(coru_join(h[i], &r), 0);
        cr_assert_eq((intptr_t)r, 2 * (i + 1));
    }
    return NULL;
}

Test(blocking, two_hundred_concurrent_calls_each_get_their_own_result, .timeout = 60)
{
    FOR_EACH_ENGINE(io) {
        atomic_store(&many_peak.max, 0);
        cr_assert_eq(run_on(io, 2, many_callers, NULL), 0);
        int peak = atomic_load(&many_peak.max);
        cr_assert(peak >= 1 && peak <= 64, "%d jobs ran at once (cap 64)", peak);
    }
}

Test(blocking, thread_cap_comes_from_the_environment, .timeout = 60)
{
    /* read once, at the first call: each test is its own process */
    cr_assert_eq(setenv("CORU_BLOCKING_THREADS", "3", 1), 0);
    atomic_store(&many_peak.max, 0);
    cr_assert_eq(run_on(CORU_IO_AUTO, 2, many_callers, NULL), 0);
    int peak = atomic_load(&many_peak.max);
    cr_assert(peak >= 1 && peak <= 3, "%d jobs ran at once (cap 3)", peak);
}

/* ------------------------------------------------------------ arguments and callers */

static _Atomic int ran;

static void *count_run(void *arg)
{
    atomic_fetch_add(&ran, 1);
    return arg;
}

static void *args_body(void *arg)
{
    cr_assert_eq(coru_blocking(count_run, arg, NULL), 0, "result NULL is allowed");
    cr_assert_eq(atomic_load(&ran), 1);
    void *res = &res;
    cr_assert_eq(coru_blocking(NULL, arg, &res), -EINVAL);
    cr_assert_eq(res, &res, "a failed call leaves *result alone");
    cr_assert_eq(coru_blocking(NULL, arg, NULL), -EINVAL);
    cr_assert_eq(atomic_load(&ran), 1);
    return NULL;
}

Test(blocking, null_result_is_allowed_and_null_fn_is_einval, .timeout = 30)
{
    atomic_store(&ran, 0);
    cr_assert_eq(run_on(CORU_IO_AUTO, 2, args_body, NULL), 0);
    /* and from a plain thread */
    cr_assert_eq(coru_blocking(NULL, NULL, NULL), -EINVAL);
}

static void *self_thread(void *arg)
{
    *(pthread_t *)arg = pthread_self();
    return (char *)arg + 1;
}

Test(blocking, plain_thread_calls_fn_directly, .timeout = 30)
{
    pthread_t t;
    void *res = NULL;
    cr_assert_eq(coru_blocking(self_thread, &t, &res), 0);
    cr_assert(pthread_equal(t, pthread_self()), "fn ran on another thread");
    cr_assert_eq(res, (char *)&t + 1);
    atomic_store(&ran, 0);
    cr_assert_eq(coru_blocking(count_run, NULL, NULL), 0);
    cr_assert_eq(atomic_load(&ran), 1);
}

static void *elsewhere_body(void *arg)
{
    pthread_t t;
    cr_assert_eq(coru_blocking(self_thread, &t, NULL), 0);
    cr_assert_not(pthread_equal(t, pthread_self()), "fn ran on the worker");
    return NULL;
}

static void *pool_runs_nothing_at_once(void *arg)
{
    return arg;
}

Test(blocking, pool_serves_a_later_run, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        cr_assert_eq(run_on(io, 2, elsewhere_body, NULL), 0);
        cr_assert_eq(run_on(io, 1, elsewhere_body, NULL), 0);
    }
    /* a run that never uses the pool still finishes with idle helpers around */
    cr_assert_eq(run_on(CORU_IO_AUTO, 2, pool_runs_nothing_at_once, NULL), 0);
}

static void *gen_body(coru_gen *g, void *arg)
{
    intptr_t rc = coru_blocking(count_run, NULL, NULL);
    coru_gen_yield(g, (void *)rc, NULL);
    return NULL;
}

static void *gen_driver(void *arg)
{
    coru_gen *g;
    void *out;
    cr_assert_eq(coru_gen_create(&g, gen_body, NULL, 0), 0);
    cr_assert_eq(coru_gen_send(g, NULL, &out), 1);
    cr_assert_eq((intptr_t)out, -EPERM);
    coru_gen_destroy(g);
    return NULL;
}

Test(blocking, generator_body_gets_eperm, .timeout = 30)
{
    atomic_store(&ran, 0);
    cr_assert_eq(run_on(CORU_IO_AUTO, 2, gen_driver, NULL), 0);
    gen_driver(NULL); /* a generator on a plain thread too */
    cr_assert_eq(atomic_load(&ran), 0);
}

/* ------------------------------------------------------------ cancellation */

struct gate {
    _Atomic int started, open, finished;
};

static void *gated_fn(void *arg)
{
    struct gate *g = arg;
    atomic_store(&g->started, 1);
    while (!atomic_load(&g->open)) usleep(1000);
    atomic_store(&g->finished, 1);
    return (void *)(intptr_t)42;
}

static void *cancelled_caller(void *arg)
{
    struct gate *g = arg;
    void *res = NULL;
    /* the cancel arrives while parked here: the call still completes */
    cr_assert_eq(coru_blocking(gated_fn, g, &res), 0);
    cr_assert_eq(atomic_load(&g->finished), 1);
    cr_assert_eq((intptr_t)res, 42);
    cr_assert_eq(coru_sleep(0), -ECANCELED, "the cancel lands at the next blocking call");
    atomic_store(&ran, 0);
    cr_assert_eq(coru_blocking(count_run, NULL, NULL), -ECANCELED);
    cr_assert_eq(atomic_load(&ran), 0, "fn ran for a cancelled caller");
    return (void *)(intptr_t)7;
}

static void *cancel_body(void *arg)
{
    struct gate g = {0};
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, cancelled_caller, &g, NULL), 0);
    while (!atomic_load(&g.started)) cr_assert_eq(coru_sleep(1 * MS), 0);
    cr_assert_eq(coru_cancel(h), 0);
    cr_assert_eq(coru_sleep(20 * MS), 0);
    cr_assert_eq(atomic_load(&g.finished), 0);
    atomic_store(&g.open, 1);
    void *r;
    cr_assert_eq(coru_join(h, &r), 0);
    cr_assert_eq((intptr_t)r, 7);
    return NULL;
}

Test(blocking, cancel_waits_for_fn_and_lands_at_the_next_blocking_call, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        cr_assert_eq(run_on(io, 2, cancel_body, NULL), 0);
    }
}

/* ------------------------------------------------------------ getaddrinfo */

static bool has_loopback_v4(const struct addrinfo *ai)
{
    for (; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET) continue;
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
        if (sin->sin_addr.s_addr == htonl(INADDR_LOOPBACK) && sin->sin_port == htons(80)) return true;
    }
    return false;
}

static void check_localhost(void)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    cr_assert_eq(coru_getaddrinfo("localhost", "80", &hints, &res), 0);
    cr_assert_not_null(res);
    cr_assert(has_loopback_v4(res), "localhost:80 did not resolve to 127.0.0.1:80");
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) cr_assert_eq(ai->ai_family, AF_INET);
    freeaddrinfo(res);
}

static void check_failures(void)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = (struct addrinfo *)&hints;
    /* no DNS here: -ENOENT or -EAGAIN (or another error), never a crash */
    int rc = coru_getaddrinfo("nonexistent.invalid", "80", &hints, &res);
    cr_assert_lt(rc, 0, "nonexistent.invalid resolved (%d)", rc);
    cr_assert_null(res, "*res is NULL after a failure");
    cr_assert_eq(coru_getaddrinfo("localhost", "80", &hints, NULL), -EINVAL);
    struct addrinfo bad_family = {.ai_family = 12345};
    cr_assert_eq(coru_getaddrinfo("localhost", "80", &bad_family, &res), -EINVAL);
    struct addrinfo bad_flags = {.ai_flags = 0x7fff0000};
    cr_assert_eq(coru_getaddrinfo("localhost", "80", &bad_flags, &res), -EINVAL);
    /* a numeric host with AI_NUMERICHOST needs no lookup at all */
    struct addrinfo num = {.ai_family = AF_INET, .ai_flags = AI_NUMERICHOST};
    cr_assert_eq(coru_getaddrinfo("127.0.0.1", "80", &num, &res), 0);
    freeaddrinfo(res);
    cr_assert_eq(coru_getaddrinfo("localhost", "80", &num, &res), -ENOENT,
                 "a name with AI_NUMERICHOST is EAI_NONAME");
}

static void *gai_body(void *arg)
{
    check_localhost();
    check_failures();
    return NULL;
}

Test(blocking, getaddrinfo_resolves_localhost_in_a_coroutine, .timeout = 60)
{
    FOR_EACH_ENGINE(io) {
        cr_assert_eq(run_on(io, 2, gai_body, NULL), 0);
    }
}

Test(blocking, getaddrinfo_works_from_a_plain_thread, .timeout = 60)
{
    check_localhost();
    check_failures();
}

/* ------------------------------------------------------------ deadlines */

/* With the pool capped at 2 threads and both held by gate jobs, a
 * coru_blocking_dl job waits in the queue: its deadline returns
 * -ETIMEDOUT and a cancel -ECANCELED, and fn never runs. A job a thread
 * has started runs to the end whatever its deadline. */
static _Atomic int gate_open, gate_in;

static void *gate_job(void *arg)
{
    atomic_fetch_add(&gate_in, 1);
    while (!atomic_load(&gate_open)) usleep(1000);
    return arg;
}

static void *gate_holder(void *arg)
{
    void *res = NULL;
    cr_assert_eq(coru_blocking(gate_job, arg, &res), 0);
    cr_assert_eq(res, arg);
    return NULL;
}

static void *slow_job(void *arg)
{
    usleep(100 * 1000);
    atomic_fetch_add(&ran, 1);
    return arg;
}

static void *queued_for_ever(void *arg)
{
    return (void *)(intptr_t)coru_blocking_dl(count_run, arg, NULL, CORU_NEVER);
}

/* coru_blocking follows the same rule as coru_blocking_dl: a cancel while
 * the job is queued drops it (fn never runs). */
static void *queued_plain(void *arg)
{
    return (void *)(intptr_t)coru_blocking(count_run, arg, NULL);
}

static void *dl_body(void *arg)
{
    (void)arg;
    coru_t *h[2];
    for (int i = 0; i < 2; i++) cr_assert_eq(coru_spawn(&h[i], gate_holder, &h[i], NULL), 0);
    while (atomic_load(&gate_in) < 2) coru_sleep(MS);

    int64_t t0 = coru_now();
    cr_assert_eq(coru_blocking_dl(count_run, NULL, NULL, t0 + 50 * MS), -ETIMEDOUT);
    cr_assert_geq(coru_now() - t0, 50 * MS);
    cr_assert_eq(coru_blocking_dl(count_run, NULL, NULL, coru_now() - 1), -ETIMEDOUT, "a past deadline");
    cr_assert_eq(coru_blocking_dl(NULL, NULL, NULL, CORU_NEVER), -EINVAL);

    coru_t *q;
    cr_assert_eq(coru_spawn(&q, queued_for_ever, NULL, NULL), 0);
    coru_sleep(20 * MS);
    cr_assert_eq(coru_cancel(q), 0);
    void *qrc;
    cr_assert_eq(coru_join(q, &qrc), 0);
    cr_assert_eq((int)(intptr_t)qrc, -ECANCELED);
    cr_assert_eq(atomic_load(&ran), 0, "no dropped job ran");
    cr_assert_eq(coru_spawn(&q, queued_plain, NULL, NULL), 0);
    coru_sleep(20 * MS);
    cr_assert_eq(coru_cancel(q), 0);
    cr_assert_eq(coru_join(q, &qrc), 0);
    cr_assert_eq((int)(intptr_t)qrc, -ECANCELED, "coru_blocking cancelled while queued");
    cr_assert_eq(atomic_load(&ran), 0, "no dropped job ran");

    atomic_store(&gate_open, 1);
    for (int i = 0; i < 2; i++) cr_assert_eq(coru_join(h[i], NULL), 0);

    /* Started before its deadline passed: it finishes and reports. */
    void *res = NULL;
    t0 = coru_now();
    cr_assert_eq(coru_blocking_dl(slow_job, &res, &res, t0 + 20 * MS), 0);
    cr_assert_eq(res, &res);
    cr_assert_geq(coru_now() - t0, 100 * MS);
    cr_assert_eq(atomic_load(&ran), 1);
    return NULL;
}

Test(blocking, deadline_or_cancel_drops_a_queued_job_but_a_started_one_finishes, .timeout = 30)
{
    cr_assert_eq(setenv("CORU_BLOCKING_THREADS", "2", 1), 0);
    FOR_EACH_ENGINE(io) {
        atomic_store(&gate_open, 0);
        atomic_store(&gate_in, 0);
        atomic_store(&ran, 0);
        cr_assert_eq(run_on(io, 2, dl_body, NULL), 0);
    }
}
