/* B6b parked: read VmRSS (rss0), spawn 100,000 coroutines (or the count
 * given after the workers: `parked 2 1000000`) that each count
 * themselves in an atomic counter and then block in coru_chan_recv on ONE
 * shared unbuffered channel. The driver polls the counter every 1 ms
 * (bounded to 30 s), sleeps 10 ms more so the last ones reach the
 * receive, reads VmRSS (rss1), closes the channel (every receiver gets
 * -EPIPE) and waits on a coru_waitgroup until all have exited.
 * ns_per_op = whole run (spawn, park, release, exit) / count; extras, as
 * the Go peer: rss_kib = rss1, kib_per_coroutine = (rss1 - rss0) / count
 * with two decimals. Default 2 workers. */
#include <coru.h>
#include <stdatomic.h>

#include "bench.h"

#define PARKED_N 100000
#define PARKED_POLL_NS INT64_C(1000000)       /* 1 ms */
#define PARKED_SETTLE_NS INT64_C(10000000)    /* 10 ms */
#define PARKED_TIMEOUT_NS INT64_C(30000000000) /* 30 s */

struct parked_run {
    coru_chan *ch;
    coru_waitgroup *wg;
    _Atomic long parked;
    long n;
    long rss0, rss1;
    int64_t elapsed_ns;
};

static void *waiter(void *arg)
{
    struct parked_run *r = arg;
    atomic_fetch_add_explicit(&r->parked, 1, memory_order_relaxed);
    char c;
    int rc = coru_chan_recv(r->ch, &c);
    if (rc != -EPIPE) bench_fail("coru_chan_recv: got %d (%s), want -EPIPE", rc, rc < 0 ? strerror(-rc) : "a value");
    bench_check(coru_waitgroup_done(r->wg), "coru_waitgroup_done");
    return NULL;
}

static void *driver(void *arg)
{
    struct parked_run *r = arg;
    r->rss0 = bench_vmrss_kib();
    if (r->rss0 < 0) bench_fail("cannot read VmRSS");
    bench_check(coru_waitgroup_add(r->wg, r->n), "coru_waitgroup_add");
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < r->n; i++) bench_check(coru_go(waiter, r, NULL), "coru_go");
    int64_t deadline = coru_now() + PARKED_TIMEOUT_NS;
    while (atomic_load_explicit(&r->parked, memory_order_relaxed) < r->n) {
        if (coru_now() >= deadline)
            bench_fail("parked: only %ld of %ld coroutines started within 30 s", atomic_load(&r->parked), r->n);
        bench_check(coru_sleep(PARKED_POLL_NS), "coru_sleep");
    }
    bench_check(coru_sleep(PARKED_SETTLE_NS), "coru_sleep"); /* let the last ones reach the receive */
    r->rss1 = bench_vmrss_kib();
    if (r->rss1 < 0) bench_fail("cannot read VmRSS");
    bench_check(coru_chan_close(r->ch), "coru_chan_close");
    bench_check(coru_waitgroup_wait(r->wg), "coru_waitgroup_wait");
    r->elapsed_ns = bench_now_ns() - t0;
    return NULL;
}

int bench_parked(int argc, char **argv)
{
    unsigned workers = bench_workers(argc, argv, 2);
    struct coru_opts opts = {.workers = workers};
    struct parked_run r = {.parked = 0, .n = bench_count(argc, argv, PARKED_N)};
    bench_check(coru_chan_create(&r.ch, 1, 0), "coru_chan_create");
    bench_check(coru_waitgroup_create(&r.wg), "coru_waitgroup_create");
    bench_check(coru_run(driver, &r, &opts), "coru_run");
    coru_waitgroup_destroy(r.wg);
    coru_chan_destroy(r.ch);
    char extra[96];
    snprintf(extra, sizeof extra, "rss_kib:%ld,kib_per_coroutine:%.2f", r.rss1,
             (double)(r.rss1 - r.rss0) / (double)r.n);
    bench_result("parked", workers, r.n, r.elapsed_ns, extra);
    return 0;
}
