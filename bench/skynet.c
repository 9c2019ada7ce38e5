/* B3 skynet: the canonical Go version. Each node of a 10-ary tree, 6
 * levels deep (1,111,111 coroutines, 1,000,000 leaves), makes an
 * UNBUFFERED int64 channel, starts its 10 children with coru_go, receives
 * their 10 values, adds them and sends the sum to its parent. A leaf sends
 * its number. The root's result must be 499999500000. ops = 1,000,000
 * leaves; extra total_ms. Default 2 workers. */
#include <coru.h>

#include "bench.h"

#define SKYNET_SIZE 1000000
#define SKYNET_DIV 10
#define SKYNET_SUM INT64_C(499999500000)

/* A node's arguments; malloc'd by the parent, freed by the node. */
struct node {
    coru_chan *parent; /* where this node sends its sum */
    int64_t num;       /* first leaf number under this node */
    int64_t size;      /* leaves under this node */
    int64_t div;       /* children per inner node */
};

static void start(coru_chan *parent, int64_t num, int64_t size, int64_t div);

static void *skynet(void *arg)
{
    struct node n = *(struct node *)arg;
    free(arg);
    if (n.size == 1) {
        bench_check(coru_chan_send(n.parent, &n.num), "coru_chan_send");
        return NULL;
    }
    coru_chan *rc;
    bench_check(coru_chan_create(&rc, sizeof(int64_t), 0), "coru_chan_create");
    for (int64_t i = 0; i < n.div; i++) start(rc, n.num + i * (n.size / n.div), n.size / n.div, n.div);
    int64_t sum = 0;
    for (int64_t i = 0; i < n.div; i++) {
        int64_t v;
        bench_check(coru_chan_recv(rc, &v), "coru_chan_recv");
        sum += v;
    }
    bench_check(coru_chan_send(n.parent, &sum), "coru_chan_send");
    /* Every child's send completed (the rendezvous took its value), so no
     * coroutine uses rc any more. */
    coru_chan_destroy(rc);
    return NULL;
}

static void start(coru_chan *parent, int64_t num, int64_t size, int64_t div)
{
    struct node *n = malloc(sizeof *n);
    if (n == NULL) bench_fail("skynet: out of memory");
    *n = (struct node){.parent = parent, .num = num, .size = size, .div = div};
    bench_check(coru_go(skynet, n, NULL), "coru_go");
}

struct skynet_run {
    int64_t sum;
    int64_t elapsed_ns;
};

static void *driver(void *arg)
{
    struct skynet_run *r = arg;
    int64_t t0 = bench_now_ns();
    coru_chan *c;
    bench_check(coru_chan_create(&c, sizeof(int64_t), 0), "coru_chan_create");
    start(c, 0, SKYNET_SIZE, SKYNET_DIV);
    bench_check(coru_chan_recv(c, &r->sum), "coru_chan_recv");
    r->elapsed_ns = bench_now_ns() - t0;
    coru_chan_destroy(c);
    return NULL;
}

int bench_skynet(int argc, char **argv)
{
    unsigned workers = bench_workers(argc, argv, 2);
    struct coru_opts opts = {.workers = workers};
    struct skynet_run r = {0};
    bench_check(coru_run(driver, &r, &opts), "coru_run");
    if (r.sum != SKYNET_SUM) bench_fail("skynet sum %lld", (long long)r.sum);
    /* As the Go peer: whole microseconds, printed as ms with one decimal. */
    char extra[64];
    snprintf(extra, sizeof extra, "total_ms:%.1f", (double)(r.elapsed_ns / 1000) / 1000.0);
    bench_result("skynet", workers, SKYNET_SIZE, r.elapsed_ns, extra);
    return 0;
}
