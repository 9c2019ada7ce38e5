/* B4 pingpong: two coroutines and two UNBUFFERED int64 channels, ping and
 * pong. The driver sends the counter on ping, the ponger receives it and
 * sends counter+1 on pong; 1,000,000 round trips, then the final counter
 * must be 1,000,000. As the Go peer: the ponger is started before the
 * clock, the clock covers only the round trips, and the ponger ends when
 * ping is closed. ops = round trips; workers from argv (default 1). */
#include <coru.h>

#include "bench.h"

#define PINGPONG_N 1000000

struct pingpong_run {
    coru_chan *ping, *pong;
    int64_t counter;
    int64_t elapsed_ns;
};

static void *ponger(void *arg)
{
    struct pingpong_run *r = arg;
    for (;;) {
        int64_t v;
        int rc = coru_chan_recv(r->ping, &v);
        if (rc == -EPIPE) return NULL; /* ping closed: done */
        bench_check(rc, "coru_chan_recv(ping)");
        v++;
        bench_check(coru_chan_send(r->pong, &v), "coru_chan_send(pong)");
    }
}

static void *driver(void *arg)
{
    struct pingpong_run *r = arg;
    coru_t *p;
    bench_check(coru_spawn(&p, ponger, r, NULL), "coru_spawn");
    int64_t v = 0;
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < PINGPONG_N; i++) {
        bench_check(coru_chan_send(r->ping, &v), "coru_chan_send(ping)");
        bench_check(coru_chan_recv(r->pong, &v), "coru_chan_recv(pong)");
    }
    r->elapsed_ns = bench_now_ns() - t0;
    r->counter = v;
    bench_check(coru_chan_close(r->ping), "coru_chan_close");
    bench_check(coru_join(p, NULL), "coru_join");
    return NULL;
}

int bench_pingpong(int argc, char **argv)
{
    unsigned workers = bench_workers(argc, argv, 1);
    struct coru_opts opts = {.workers = workers};
    struct pingpong_run r = {0};
    bench_check(coru_chan_create(&r.ping, sizeof(int64_t), 0), "coru_chan_create");
    bench_check(coru_chan_create(&r.pong, sizeof(int64_t), 0), "coru_chan_create");
    bench_check(coru_run(driver, &r, &opts), "coru_run");
    coru_chan_destroy(r.ping);
    coru_chan_destroy(r.pong);
    if (r.counter != PINGPONG_N) bench_fail("pingpong counter %lld, want %d", (long long)r.counter, PINGPONG_N);
    bench_result("pingpong", workers, PINGPONG_N, r.elapsed_ns, NULL);
    return 0;
}
