/* B8 echo: `coru-bench echo <port>` serves TCP echo on 127.0.0.1:<port>
 * until SIGTERM or SIGINT, one coroutine per connection: read up to
 * 4 KiB, write it all back, TCP_NODELAY on. The load generator
 * (../shared/peers/loadgen) measures it and prints the RESULT line.
 * 2 workers (CORU_BENCH_WORKERS=n for experiments). CORU_BENCH_STATS=1
 * prints the per-worker scheduler counters on stderr at exit. */
#include <coru.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bench.h"

static void *conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = coru_read(fd, buf, sizeof buf);
        if (n <= 0) break;
        if (coru_write_all(fd, buf, (size_t)n, CORU_NEVER) < 0) break;
    }
    coru_close(fd);
    return NULL;
}

static void *acceptor(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = coru_tcp_accept(lfd, NULL, NULL);
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
            coru_sleep(10 * 1000 * 1000); /* out of fds: back off, keep serving */
            continue;
        }
        if (fd < 0) continue;
        coru_tcp_nodelay(fd, 1);
        if (coru_go(conn, (void *)(intptr_t)fd, NULL) < 0) coru_close(fd);
    }
    return NULL;
}

int bench_echo(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: coru-bench echo <port>\n");
        return 2;
    }
    int port = atoi(argv[1]);
    bench_server_setup();
    int lfd = coru_tcp_listen("127.0.0.1", (uint16_t)port, 4096, 0);
    bench_check(lfd, "coru_tcp_listen");
    const char *nw = getenv("CORU_BENCH_WORKERS");
    struct coru_opts opts = {.workers = nw ? (unsigned)atoi(nw) : 2};
    bench_check(coru_run(acceptor, (void *)(intptr_t)lfd, &opts), "coru_run");
    return 0;
}
