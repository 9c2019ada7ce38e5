/* coru-bench: the project's side of the peer benchmarks
 * (/work/shared/peers/README.md). Usage: coru-bench <bench> [workers]
 * [count] (count: timers and parked only, run.sh's SCALE_N).
 * Exit status: 0 after a RESULT line, 1 on a failed check (FAIL: ...),
 * 2 on a bad command line. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

struct bench {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *what;
};

static const struct bench benches[] = {
    {"switch", bench_switch, "B1: two coroutines yield 5,000,000 times each (workers=1)"},
    {"spawn", bench_spawn, "B2: spawn and join 1,000,000 empty coroutines (workers=2)"},
    {"skynet", bench_skynet, "B3: skynet, 1,000,000 leaves, unbuffered channels (workers=2)"},
    {"pingpong", bench_pingpong, "B4: 1,000,000 round trips over two unbuffered channels (workers=1 or 2)"},
    {"mpmc", bench_mpmc, "B5: 4 producers, 4 consumers, one channel of 1024, 10,000,000 int64 (workers=2)"},
    {"timers", bench_timers, "B6: 100,000 coroutines each sleep 100 ms once (workers=2)"},
    {"echo", bench_echo, "B8: TCP echo server on 127.0.0.1:<port> until SIGTERM (workers=2)"},
    {"http", bench_http, "B9: HTTP/1.1 server on 127.0.0.1:<port> until SIGTERM: GET / and /hello/{name} (workers=2)"},
    {"https", bench_https, "B9 https/httpsnew: the http server over TLS, <port> <cert> <key> (workers=2)"},
    {"client", bench_client, "B10: HTTP client, <port> <conns> <requests>: GET / on 127.0.0.1:<port> (workers=2)"},
    {"parked", bench_parked, "B6b: RSS of 100,000 coroutines parked on one channel, then release (workers=2)"},
};
#define NBENCHES (sizeof benches / sizeof benches[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: coru-bench <bench> [workers] [count]\n(count: timers and parked, default 100000)\nbenches:\n");
    for (size_t i = 0; i < NBENCHES; i++) fprintf(out, "  %-10s %s\n", benches[i].name, benches[i].what);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < NBENCHES; i++) {
        if (strcmp(argv[1], benches[i].name) == 0) return benches[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "unknown bench: %s\n", argv[1]);
    return 2;
}
