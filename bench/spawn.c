/* B2 spawn: spawn 1,000,000 coroutines that do nothing, then wait until
 * all have finished. As the Go peer does with a sync.WaitGroup: each
 * coroutine (fire and forget, coru_go) counts itself down, the last one
 * wakes the driver through a channel, and the driver parks on it.
 * ns_per_op = (spawn loop + wait) / 1,000,000. Default 2 workers. */
#include <coru.h>
#include <stdatomic.h>

#include "bench.h"

#define SPAWN_N 1000000

struct spawn_run {
    _Atomic long left;   /* coroutines not yet finished */
    coru_chan *done;     /* the last one sends here */
    int64_t elapsed_ns;
};

static void *nothing(void *arg)
{
    struct spawn_run *r = arg;
    if (atomic_fetch_sub_explicit(&r->left, 1, memory_order_acq_rel) == 1) {
        int one = 1;
        bench_check(coru_chan_send(r->done, &one), "coru_chan_send");
    }
    return NULL;
}

static void *driver(void *arg)
{
    struct spawn_run *r = arg;
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < SPAWN_N; i++) bench_check(coru_go(nothing, r, NULL), "coru_go");
    int got;
    bench_check(coru_chan_recv(r->done, &got), "coru_chan_recv");
    r->elapsed_ns = bench_now_ns() - t0;
    if (atomic_load(&r->left) != 0) bench_fail("%ld coroutines did not finish", atomic_load(&r->left));
    return NULL;
}

int bench_spawn(int argc, char **argv)
{
    unsigned workers = bench_workers(argc, argv, 2);
    struct coru_opts opts = {.workers = workers};
    struct spawn_run r = {.left = SPAWN_N};
    bench_check(coru_chan_create(&r.done, sizeof(int), 1), "coru_chan_create");
    bench_check(coru_run(driver, &r, &opts), "coru_run");
    coru_chan_destroy(r.done);
    bench_result("spawn", workers, SPAWN_N, r.elapsed_ns, NULL);
    return 0;
}
