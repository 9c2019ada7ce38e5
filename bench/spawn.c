/* B2 spawn: spawn 1,000,000 coroutines that do nothing, then join them all
 * (the Tokio peer's method: keep every handle, await each). ns_per_op =
 * (spawn loop + joins) / 1,000,000. Default 2 workers. */
#include <coru.h>

#include "bench.h"

#define SPAWN_N 1000000

struct spawn_run {
    coru_t **handles;
    int64_t elapsed_ns;
};

static void *nothing(void *arg)
{
    return arg;
}

static void *driver(void *arg)
{
    struct spawn_run *r = arg;
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < SPAWN_N; i++) bench_check(coru_spawn(&r->handles[i], nothing, NULL, NULL), "coru_spawn");
    for (int i = 0; i < SPAWN_N; i++) bench_check(coru_join(r->handles[i], NULL), "coru_join");
    r->elapsed_ns = bench_now_ns() - t0;
    return NULL;
}

int bench_spawn(int argc, char **argv)
{
    unsigned workers = bench_workers(argc, argv, 2);
    struct coru_opts opts = {.workers = workers};
    /* Allocated (and faulted in) before the clock starts. */
    struct spawn_run r = {.handles = calloc(SPAWN_N, sizeof(coru_t *))};
    if (r.handles == NULL) bench_fail("out of memory for %d handles", SPAWN_N);
    bench_check(coru_run(driver, &r, &opts), "coru_run");
    free(r.handles);
    bench_result("spawn", workers, SPAWN_N, r.elapsed_ns, NULL);
    return 0;
}
