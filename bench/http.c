/* B9: `coru-bench http <port>` serves the B9 routes on 127.0.0.1:<port>
 * (and `coru-bench https <port> <cert> <key>` the same over TLS: B9
 * https and httpsnew, a coru_tls_server_config with the PEM files)
 * until SIGTERM or SIGINT, with coru's HTTP server (include/coru/http.h):
 *   GET /              200 text/plain "Hello, World!"
 *   GET /hello/{name}  200 text/html  "<h1>hello, NAME</h1>"
 *   anything else      404
 * Keep-alive, pipelining, the default timeouts (a keep-alive connection
 * idle for 60 s is closed: wrk's never are). The load generator (wrk, run by
 * ../shared/peers/run.sh) prints the RESULT lines. 2 workers
 * (CORU_BENCH_WORKERS=n for experiments); CORU_BENCH_LISTENERS=n sets the
 * number of listener sockets (default: one per worker). */
#include <coru.h>
#include <coru/http.h>
#include <coru/tls.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

static int root(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    (void)arg;
    (void)rq;
    return coru_http_resp_send(rs, 200, "text/plain", "Hello, World!", 13);
}

static int hello(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    (void)arg;
    char body[300];
    const char *name = coru_http_req_param(rq, "name");
    size_t nl = strlen(name);
    if (nl > 256) nl = 256;
    memcpy(body, "<h1>hello, ", 11);
    memcpy(body + 11, name, nl);
    memcpy(body + 11 + nl, "</h1>", 5);
    return coru_http_resp_send(rs, 200, "text/html", body, 16 + nl);
}

static void *serve(void *arg)
{
    bench_check(coru_http_server_serve(arg), "coru_http_server_serve");
    return NULL;
}

static int run_server(int port, coru_tls_config *tls)
{
    bench_server_setup();
    const char *nl = getenv("CORU_BENCH_LISTENERS");
    struct coru_http_opts ho = {
        .backlog = 4096,
        /* the default timeouts stay on (a 60 s idle timeout: the bench's
         * connections never idle that long, so it never closes one) */
        .max_conns = 100000,
        .listeners = nl ? (unsigned)atoi(nl) : 0,
        .tls = tls,
    };
    coru_http_server *srv;
    bench_check(coru_http_server_create(&srv, "127.0.0.1", (uint16_t)port, &ho), "coru_http_server_create");
    bench_check(coru_http_route(srv, "GET", "/", root, NULL), "route /");
    bench_check(coru_http_route(srv, "GET", "/hello/{name}", hello, NULL), "route /hello/{name}");
    const char *nw = getenv("CORU_BENCH_WORKERS");
    struct coru_opts opts = {.workers = nw ? (unsigned)atoi(nw) : 2};
    bench_check(coru_run(serve, srv, &opts), "coru_run");
    return 0;
}

int bench_http(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: coru-bench http <port>\n");
        return 2;
    }
    return run_server(atoi(argv[1]), NULL);
}

int bench_https(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: coru-bench https <port> <cert> <key>\n");
        return 2;
    }
    char why[512];
    coru_tls_config *tls;
    struct coru_tls_server_opts to = {.cert_file = argv[2], .key_file = argv[3]};
    int rc = coru_tls_server_config(&tls, &to, why, sizeof why);
    if (rc) {
        fprintf(stderr, "FAIL: coru_tls_server_config: %s (%s)\n", why, strerror(-rc));
        return 1;
    }
    return run_server(atoi(argv[1]), tls);
}
