/* B1 switch: one worker, two coroutines each call coru_yield 5,000,000
 * times; ns_per_op = time per yield (10,000,000 in all). The clock runs in
 * the main coroutine from before the two spawns to after both joins. */
#include <coru.h>

#include "bench.h"

#define SWITCH_YIELDS 10000000 /* in total, half per coroutine */

struct switch_run {
    int64_t elapsed_ns;
};

static void *yielder(void *arg)
{
    for (int i = 0; i < SWITCH_YIELDS / 2; i++) {
        int rc = coru_yield();
        if (rc != 0) bench_fail("coru_yield: %s", strerror(-rc));
    }
    return NULL;
}

static void *driver(void *arg)
{
    struct switch_run *r = arg;
    coru_t *a, *b;
    int64_t t0 = bench_now_ns();
    bench_check(coru_spawn(&a, yielder, NULL, NULL), "coru_spawn");
    bench_check(coru_spawn(&b, yielder, NULL, NULL), "coru_spawn");
    bench_check(coru_join(a, NULL), "coru_join");
    bench_check(coru_join(b, NULL), "coru_join");
    r->elapsed_ns = bench_now_ns() - t0;
    return NULL;
}

int bench_switch(int argc, char **argv)
{
    if (bench_workers(argc, argv, 1) != 1) {
        fprintf(stderr, "switch: runs on one worker only\n");
        return 2;
    }
    struct coru_opts opts = {.workers = 1};
    struct switch_run r = {0};
    bench_check(coru_run(driver, &r, &opts), "coru_run");
    bench_result("switch", 1, SWITCH_YIELDS, r.elapsed_ns, NULL);
    return 0;
}
