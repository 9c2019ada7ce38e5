/* B10 client: `coru-bench client <port> <conns> <requests>`. One
 * coru_http_client (max_conns = conns, no gzip) shared by `conns`
 * coroutines; each claims one request at a time from a shared counter and
 * GETs http://127.0.0.1:<port>/, reads the whole body and checks status
 * 200 and exactly "Hello, World!". Latency: from the call to the last body
 * byte; wall: from before the spawns to the last finish. Prints the
 * peers' RESULT line (rps, p50_us, p99_us). 2 workers
 * (CORU_BENCH_WORKERS=n for experiments). */
#include <coru.h>
#include <coru/http.h>
#include <stdatomic.h>

#include "bench.h"

struct client_run {
    coru_http_client *cl;
    char url[64];
    long requests;
    _Atomic long next, done;
    int64_t *lat;          /* one slot per request */
    coru_waitgroup *wg;
};

static void *task(void *arg)
{
    struct client_run *r = arg;
    char buf[64];
    for (;;) {
        long i = atomic_fetch_add_explicit(&r->next, 1, memory_order_relaxed);
        if (i >= r->requests) break;
        int64_t t0 = coru_now();
        coru_http_response *rs;
        int rc = coru_http_do(r->cl, &(struct coru_http_request){.url = r->url}, &rs, CORU_NEVER);
        if (rc) bench_fail("client: request %ld: %s", i, strerror(-rc));
        size_t n = 0;
        ssize_t got;
        while ((got = coru_http_response_read(rs, buf + n, sizeof buf - 1 - n, CORU_NEVER)) > 0) n += (size_t)got;
        if (got < 0) bench_fail("client: body of request %ld: %s", i, strerror((int)-got));
        int st = coru_http_response_status(rs);
        coru_http_response_free(rs);
        if (st != 200 || n != 13 || memcmp(buf, "Hello, World!", 13) != 0)
            bench_fail("client: bad response: status %d, %zu bytes", st, n);
        r->lat[i] = coru_now() - t0;
        atomic_fetch_add_explicit(&r->done, 1, memory_order_relaxed);
    }
    bench_check(coru_waitgroup_done(r->wg), "coru_waitgroup_done");
    return NULL;
}

struct driver_arg {
    struct client_run *r;
    unsigned conns;
    int64_t wall;
};

static void *driver(void *arg)
{
    struct driver_arg *d = arg;
    bench_check(coru_waitgroup_add(d->r->wg, d->conns), "coru_waitgroup_add");
    int64_t t0 = coru_now();
    for (unsigned i = 0; i < d->conns; i++) bench_check(coru_go(task, d->r, NULL), "coru_go");
    bench_check(coru_waitgroup_wait(d->r->wg), "coru_waitgroup_wait");
    d->wall = coru_now() - t0;
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int bench_client(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: coru-bench client <port> <conns> <requests>\n");
        return 2;
    }
    long port = strtol(argv[1], NULL, 10), conns = strtol(argv[2], NULL, 10), requests = strtol(argv[3], NULL, 10);
    if (port < 1 || port > 65535 || conns < 1 || conns > 100000 || requests < 1) {
        fprintf(stderr, "coru-bench client: bad arguments\n");
        return 2;
    }
    const char *we = getenv("CORU_BENCH_WORKERS");
    unsigned workers = we ? (unsigned)atoi(we) : 2;
    struct client_run r = {.requests = requests};
    snprintf(r.url, sizeof r.url, "http://127.0.0.1:%ld/", port);
    r.lat = calloc((size_t)requests, sizeof *r.lat);
    if (!r.lat) bench_fail("out of memory");
    struct coru_http_client_opts o = {.max_conns = (unsigned)conns, .no_gzip = 1};
    bench_check(coru_http_client_create(&r.cl, &o), "coru_http_client_create");
    bench_check(coru_waitgroup_create(&r.wg), "coru_waitgroup_create");
    struct driver_arg d = {.r = &r, .conns = (unsigned)conns};
    struct coru_opts opts = {.workers = workers};
    bench_check(coru_run(driver, &d, &opts), "coru_run");
    if (atomic_load(&r.done) != requests) bench_fail("client: %ld of %ld requests completed", atomic_load(&r.done), requests);
    qsort(r.lat, (size_t)requests, sizeof *r.lat, cmp64);
    double p50 = (double)r.lat[(size_t)(0.50 * (double)(requests - 1))] / 1e3;
    double p99 = (double)r.lat[(size_t)(0.99 * (double)(requests - 1))] / 1e3;
    printf("RESULT bench=client impl=coru workers=%u conns=%ld ops=%ld ns_per_op=%.2f extra=rps:%.0f,p50_us:%.0f,p99_us:%.0f\n",
           workers, conns, requests, (double)d.wall / (double)requests, (double)requests / ((double)d.wall / 1e9), p50,
           p99);
    coru_waitgroup_destroy(r.wg);
    coru_http_client_destroy(r.cl);
    free(r.lat);
    return 0;
}
