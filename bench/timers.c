/* B6 timers: 100,000 coroutines (or the count given after the workers:
 * `timers 2 1000000`) each coru_sleep 100 ms once and exit; the driver
 * waits for all on a coru_waitgroup. wall = from before the first spawn
 * to the return of the wait (ideal: ~100 ms); ns_per_op = (wall - 100 ms)
 * / count, the overhead per timer. Extras, formatted as the Go peer:
 * wall_ms (whole microseconds, one decimal) and rss_kib (peak RSS,
 * getrusage ru_maxrss). Default 2 workers. */
#include <coru.h>
#include <sys/resource.h>

#include "bench.h"

#define TIMERS_N 100000
#define TIMERS_SLEEP_NS INT64_C(100000000) /* 100 ms */

struct timers_run {
    coru_waitgroup *wg;
    long n;
    int64_t elapsed_ns;
};

static void *sleeper(void *arg)
{
    struct timers_run *r = arg;
    bench_check(coru_sleep(TIMERS_SLEEP_NS), "coru_sleep");
    bench_check(coru_waitgroup_done(r->wg), "coru_waitgroup_done");
    return NULL;
}

static void *driver(void *arg)
{
    struct timers_run *r = arg;
    bench_check(coru_waitgroup_add(r->wg, r->n), "coru_waitgroup_add");
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < r->n; i++) bench_check(coru_go(sleeper, r, NULL), "coru_go");
    bench_check(coru_waitgroup_wait(r->wg), "coru_waitgroup_wait");
    r->elapsed_ns = bench_now_ns() - t0;
    return NULL;
}

int bench_timers(int argc, char **argv)
{
    unsigned workers = bench_workers(argc, argv, 2);
    struct coru_opts opts = {.workers = workers};
    struct timers_run r = {.n = bench_count(argc, argv, TIMERS_N)};
    bench_check(coru_waitgroup_create(&r.wg), "coru_waitgroup_create");
    bench_check(coru_run(driver, &r, &opts), "coru_run");
    coru_waitgroup_destroy(r.wg);
    if (r.elapsed_ns < TIMERS_SLEEP_NS)
        bench_fail("timers: all done after %lld ns, before the 100 ms sleep", (long long)r.elapsed_ns);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) bench_fail("getrusage: %s", strerror(errno));
    char extra[96];
    snprintf(extra, sizeof extra, "wall_ms:%.1f,rss_kib:%ld", (double)(r.elapsed_ns / 1000) / 1000.0,
             (long)ru.ru_maxrss);
    bench_result("timers", workers, r.n, r.elapsed_ns - TIMERS_SLEEP_NS, extra);
    return 0;
}
