/* hello_server.c - the seed's aiohttp server in C:
 *
 *     async def handle(request):
 *         await asyncio.sleep(0.5)
 *         name = request.match_info.get('name', "World")
 *         return web.Response(text=f"<h1>hello, {name}</h1>")
 *
 *     hello_server [port] [--no-sleep] [--cert FILE --key FILE]
 *
 * GET / answers "<h1> Hello, World</h1>" and GET /hello/{name} answers
 * "<h1>hello, NAME</h1>", each after sleeping half a second (the sleep
 * parks only the request's coroutine: 100 concurrent requests take about
 * 0.5 s in all, not 50 s); --no-sleep answers at once. The port defaults
 * to 8000 (0 picks a free one). With --cert and --key (PEM files: the
 * certificate chain and its key) it serves HTTPS instead, and reloads
 * the two files on SIGHUP without dropping a connection. It prints
 *     Server started at http://127.0.0.1:PORT   (https://... with TLS)
 * once it listens, and shuts down gracefully on SIGINT or SIGTERM:
 * requests in flight finish (5 s at most), idle connections close, and
 * the process exits 0.
 *
 * Signals: SIGINT and SIGTERM are blocked before coru_run starts the
 * workers (threads inherit the mask); a plain thread takes them with
 * sigwait() and calls coru_http_server_shutdown, which any thread may
 * call. */
#include <coru.h>
#include <coru/http.h>
#include <coru/tls.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC INT64_C(1000000000)

static int sleep_ns = (int)(SEC / 2);

static int answer(coru_http_resp *rs, const char *name)
{
    char body[512];
    int n = snprintf(body, sizeof body, "<h1>hello, %.400s</h1>", name);
    return coru_http_resp_send(rs, 200, "text/html; charset=utf-8", body, (size_t)n);
}

static int hello(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    (void)arg;
    if (sleep_ns && coru_sleep(sleep_ns) != 0) return -ECANCELED; /* cut at shutdown */
    return answer(rs, coru_http_req_param(rq, "name"));
}

static int root(coru_http_req *rq, coru_http_resp *rs, void *arg)
{
    (void)rq;
    (void)arg;
    if (sleep_ns && coru_sleep(sleep_ns) != 0) return -ECANCELED;
    static const char body[] = "<h1> Hello, World</h1>";
    return coru_http_resp_send(rs, 200, "text/html; charset=utf-8", body, sizeof body - 1);
}

struct app {
    uint16_t port;
    coru_http_server *srv;
    coru_tls_config *tls;
    _Atomic int done;
    sigset_t sigs;
};

static void *signal_thread(void *arg)
{
    struct app *a = arg;
    for (;;) {
        int sig;
        if (sigwait(&a->sigs, &sig) != 0) continue;
        if (atomic_load(&a->done)) return NULL;
        if (sig == SIGHUP) { /* any thread may reload; handshakes after it use the new pair */
            char why[512];
            int rc = a->tls ? coru_tls_config_reload(a->tls, NULL, NULL, why, sizeof why) : 0;
            if (rc) fprintf(stderr, "hello_server: reload: %s\n", why);
            else if (a->tls) fprintf(stderr, "hello_server: certificate reloaded\n");
            continue;
        }
        coru_http_server_shutdown(a->srv, coru_now() + 5 * SEC);
    }
}

static void *start(void *arg)
{
    struct app *a = arg;
    int rc = coru_http_server_serve(a->srv);
    if (rc) fprintf(stderr, "hello_server: serve: %s\n", strerror(-rc));
    return (void *)(intptr_t)rc;
}

int main(int argc, char **argv)
{
    struct app a = {.port = 8000};
    const char *cert = NULL, *key = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-sleep"))
            sleep_ns = 0;
        else if (!strcmp(argv[i], "--cert") && i + 1 < argc)
            cert = argv[++i];
        else if (!strcmp(argv[i], "--key") && i + 1 < argc)
            key = argv[++i];
        else
            a.port = (uint16_t)atoi(argv[i]);
    }
    if (!cert != !key) {
        fprintf(stderr, "usage: hello_server [port] [--no-sleep] [--cert FILE --key FILE]\n");
        return 2;
    }
    struct coru_http_opts ho = {0};
    if (cert) {
        char why[512];
        struct coru_tls_server_opts to = {.cert_file = cert, .key_file = key};
        int rc = coru_tls_server_config(&a.tls, &to, why, sizeof why);
        if (rc) {
            fprintf(stderr, "hello_server: %s\n", why);
            return 1;
        }
        ho.tls = a.tls;
    }
    sigemptyset(&a.sigs);
    sigaddset(&a.sigs, SIGINT);
    sigaddset(&a.sigs, SIGTERM);
    sigaddset(&a.sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &a.sigs, NULL);

    int rc = coru_http_server_create(&a.srv, "127.0.0.1", a.port, &ho);
    if (rc) {
        fprintf(stderr, "hello_server: listen on port %u: %s\n", a.port, strerror(-rc));
        return 1;
    }
    if (coru_http_route(a.srv, "GET", "/", root, NULL) || coru_http_route(a.srv, "GET", "/hello/{name}", hello, NULL))
        return 1;
    printf("Server started at %s://127.0.0.1:%d\n", a.tls ? "https" : "http", coru_http_server_port(a.srv));
    fflush(stdout);

    pthread_t t;
    pthread_create(&t, NULL, signal_thread, &a);
    void *res = NULL;
    rc = coru_run(start, &a, NULL);
    atomic_store(&a.done, 1);
    pthread_kill(t, SIGTERM); /* ends the sigwait */
    pthread_join(t, NULL);
    coru_http_server_destroy(a.srv);
    coru_tls_config_free(a.tls);
    (void)res;
    return rc ? 1 : 0;
}
