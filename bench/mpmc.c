/* B5 mpmc: 4 producers and 4 consumers share ONE int64 channel of capacity
 * 1024. Producer p sends p, p+4, p+8, ... below 10,000,000; once every
 * producer has been joined the driver closes the channel, and consumers
 * receive until -EPIPE, each summing and counting what it got. Checks
 * count = 10^7 and sum = 10^7 (10^7 - 1) / 2. The clock runs from before
 * the first spawn to after the last consumer is joined, as the Go peer's.
 * ops = 10,000,000; extra ops_per_s. Default 2 workers. */
#include <coru.h>

#include "bench.h"

#define MPMC_N INT64_C(10000000)
#define MPMC_PRODUCERS 4
#define MPMC_CONSUMERS 4
#define MPMC_CAP 1024

struct mpmc_run {
    coru_chan *ch;
    int64_t sum, count;
    int64_t elapsed_ns;
};

struct producer {
    coru_chan *ch;
    int64_t first;
};

struct consumer {
    coru_chan *ch;
    int64_t sum, count; /* read by the driver after joining */
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int64_t v = p->first; v < MPMC_N; v += MPMC_PRODUCERS)
        bench_check(coru_chan_send(p->ch, &v), "coru_chan_send");
    return NULL;
}

static void *consume(void *arg)
{
    struct consumer *c = arg;
    int64_t s = 0, k = 0;
    for (;;) {
        int64_t v;
        int rc = coru_chan_recv(c->ch, &v);
        if (rc == -EPIPE) break; /* closed and drained */
        bench_check(rc, "coru_chan_recv");
        s += v;
        k++;
    }
    c->sum = s;
    c->count = k;
    return NULL;
}

static void *driver(void *arg)
{
    struct mpmc_run *r = arg;
    struct producer prod[MPMC_PRODUCERS];
    struct consumer cons[MPMC_CONSUMERS];
    coru_t *ph[MPMC_PRODUCERS], *ch[MPMC_CONSUMERS];
    int64_t t0 = bench_now_ns();
    for (int c = 0; c < MPMC_CONSUMERS; c++) {
        cons[c] = (struct consumer){.ch = r->ch};
        bench_check(coru_spawn(&ch[c], consume, &cons[c], NULL), "coru_spawn");
    }
    for (int p = 0; p < MPMC_PRODUCERS; p++) {
        prod[p] = (struct producer){.ch = r->ch, .first = p};
        bench_check(coru_spawn(&ph[p], produce, &prod[p], NULL), "coru_spawn");
    }
    for (int p = 0; p < MPMC_PRODUCERS; p++) bench_check(coru_join(ph[p], NULL), "coru_join");
    bench_check(coru_chan_close(r->ch), "coru_chan_close");
    for (int c = 0; c < MPMC_CONSUMERS; c++) {
        bench_check(coru_join(ch[c], NULL), "coru_join");
        r->sum += cons[c].sum;
        r->count += cons[c].count;
    }
    r->elapsed_ns = bench_now_ns() - t0;
    return NULL;
}

int bench_mpmc(int argc, char **argv)
{
    unsigned workers = bench_workers(argc, argv, 2);
    struct coru_opts opts = {.workers = workers};
    struct mpmc_run r = {0};
    bench_check(coru_chan_create(&r.ch, sizeof(int64_t), MPMC_CAP), "coru_chan_create");
    bench_check(coru_run(driver, &r, &opts), "coru_run");
    coru_chan_destroy(r.ch);
    if (r.count != MPMC_N || r.sum != MPMC_N * (MPMC_N - 1) / 2)
        bench_fail("mpmc checksum: count %lld, sum %lld", (long long)r.count, (long long)r.sum);
    /* As the Go peer: float64(n) / el.Seconds(), no decimals. */
    char extra[64];
    snprintf(extra, sizeof extra, "ops_per_s:%.0f", (double)MPMC_N / ((double)r.elapsed_ns / 1e9));
    bench_result("mpmc", workers, MPMC_N, r.elapsed_ns, extra);
    return 0;
}
