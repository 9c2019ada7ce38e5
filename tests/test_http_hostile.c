/* test_http_hostile: the HTTP server against hostile clients, on both
 * engines: request smuggling shapes (each refused with 400, or the
 * matching status, and a close, and nothing reaches a handler, not even
 * a request hidden behind it), slow clients that send a header byte at
 * a time, and ten thousand idle keep-alive connections. */
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "http_helpers.h"

#ifdef CORU_TSAN
enum { SLOW_CLIENTS = 100, IDLE_CONNS = 1000 }; /* gcc 12's TSan: fewer live coroutines */
#else
enum { SLOW_CLIENTS = 1000, IDLE_CONNS = 10000 };
#endif

static void raise_nofile(rlim_t need)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    cr_assert_geq(rl.rlim_cur, need, "RLIMIT_NOFILE (hard) %llu is below the %llu this test needs",
                  (unsigned long long)rl.rlim_cur, (unsigned long long)need);
}

/* ------------------------------------------------------------ smuggling */

struct bad {
    const char *what;
    const char *req;
    int status;
};

/* Each is followed on the wire by a second, harmless request: if the
 * server were fooled about where the first ends, it would answer that one
 * ("hello smuggled"). It must answer the first with its status and close. */
static const struct bad bads[] = {
    {"Content-Length with Transfer-Encoding",
     "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
    {"Transfer-Encoding with Content-Length",
     "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400},
    {"two different Content-Lengths",
     "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde", 400},
    {"two equal Content-Lengths", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
     400},
    {"a list in Content-Length", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", 400},
    {"a sign in Content-Length", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400},
    {"obs-fold (space)", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n", 400},
    {"obs-fold (tab)", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\tx\r\n\r\n", 400},
    {"a bare CR in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\rTransfer-Encoding: chunked\r\n\r\n", 400},
    {"a bare CR ending a line", "GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400},
    {"a bare LF", "GET / HTTP/1.1\nHost: x\n\n", 400},
    {"a bare LF in the fields", "GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 400},
    {"a NUL in a value", "GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n", 400},
    {"a space before the colon", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc", 400},
    {"a bad byte in a field name", "GET / HTTP/1.1\r\nHost: x\r\nX@Y: 1\r\n\r\n", 400},
    {"two spaces in the request line", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
    {"a chunk size that is not hex", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
     400},
    {"a negative chunk size", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nab\r\n0\r\n\r\n",
     400},
    {"an overflowing chunk size",
     "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nab\r\n0\r\n\r\n", 400},
    {"chunk data longer than its size",
     "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", 400},
    {"Transfer-Encoding chunked, then gzip",
     "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400},
    {"an unknown transfer coding", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501},
    {"HTTP/1.0 with chunked",
     "POST /echo HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400},
};

static const char behind[] = "GET /hello/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

static void *smuggling_main(void *arg)
{
    struct fx f;
    fx_start(&f, NULL);
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        const struct bad *b = &bads[i];
        struct cl *c = cl_open(f.port);
        size_t n = strlen(b->req);
        if (!strcmp(b->what, "a NUL in a value")) n = strlen(b->req) + 1 + strlen(b->req + strlen(b->req) + 1);
        cl_send(c, b->req, n);
        cl_send(c, behind, sizeof behind - 1);
        struct resp r;
        cr_assert(cl_resp(c, &r, false), "%s: no response", b->what);
        cr_assert_eq(r.status, b->status, "%s: %d, want %d", b->what, r.status, b->status);
        char v[32];
        cr_assert_str_eq(hdr(&r, "Connection", v, sizeof v), "close", "%s", b->what);
        resp_free(&r);
        cr_assert(cl_closed(c), "%s: the connection stayed open (and could carry a smuggled request)", b->what);
        cl_close(c);
        cr_assert_eq(atomic_load(&handled), 0, "%s: a handler ran", b->what);
    }
    /* a flood of chunk extensions */
    struct cl *c = cl_open(f.port);
    cl_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1");
    static char ext[4096];
    for (size_t i = 0; i < sizeof ext; i += 4) memcpy(ext + i, ";a=b", 4);
    bool refused = false;
    for (int i = 0; i < 64 && !refused; i++)
        refused = coru_write_all(c->fd, ext, sizeof ext, coru_now() + 5 * SEC) < 0;
    struct resp r;
    cr_assert(cl_resp(c, &r, false), "no response to a chunk extension flood");
    cr_assert_eq(r.status, 400);
    resp_free(&r);
    cr_assert(cl_closed(c));
    cl_close(c);
    cr_assert_eq(atomic_load(&handled), 0);
    /* the server is still fine */
    one(f.port, "GET /hello/after HTTP/1.1\r\nHost: x\r\n\r\n", &r, NULL);
    cr_assert_str_eq(r.body, "hello after");
    resp_free(&r);
    fx_stop(&f, SEC);
    return NULL;
}

Test(http_hostile, smuggling_shapes_get_400_and_a_close_and_reach_no_handler, .timeout = 60)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(run_on(io, 2, smuggling_main, NULL), 0);
}

/* ------------------------------------------------------------ slow clients */

struct slow {
    uint16_t port;
    _Atomic int got408, other, ready;
};

/* Sends a request's head one byte at a time, 300 ms apart, and expects
 * a 408 and a close when the header timeout passes. */
static void *slow_client(void *arg)
{
    struct slow *s = arg;
    int fd = coru_tcp_connect("127.0.0.1", s->port, coru_now() + 30 * SEC);
    if (fd < 0) {
        atomic_fetch_add(&s->other, 1);
        atomic_fetch_add(&s->ready, 1);
        return NULL;
    }
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: yes\r\n\r\n";
    atomic_fetch_add(&s->ready, 1);
    char buf[512];
    size_t got = 0;
    for (const char *p = req; *p; p++) {
        if (coru_write_all(fd, p, 1, coru_now() + 5 * SEC) != 1) break;
        ssize_t n = coru_read_dl(fd, buf + got, sizeof buf - 1 - got, coru_now() + 300 * MS);
        if (n == -ETIMEDOUT) continue;
        if (n > 0) {
            got += (size_t)n;
            while ((n = coru_read_dl(fd, buf + got, sizeof buf - 1 - got, coru_now() + 5 * SEC)) > 0)
                got += (size_t)n;
        }
        break; /* the server answered or closed */
    }
    buf[got] = '\0';
    if (!strncmp(buf, "HTTP/1.1 408 ", 13) && strstr(buf, "Connection: close"))
        atomic_fetch_add(&s->got408, 1);
    else
        atomic_fetch_add(&s->other, 1);
    coru_close(fd);
    return NULL;
}

static void *slow_main(void *arg)
{
    struct coru_http_opts o = {.header_timeout = 1500 * MS, .max_conns = 4 * SLOW_CLIENTS};
    struct fx f;
    fx_start(&f, &o);
    struct slow s = {.port = f.port};
    static coru_t *hs[SLOW_CLIENTS];
    for (int i = 0; i < SLOW_CLIENTS; i++) cr_assert_eq(coru_spawn(&hs[i], slow_client, &s, NULL), 0);
    while (atomic_load(&s.ready) < SLOW_CLIENTS) coru_sleep(MS);
    /* A normal client meanwhile: twenty requests, each on a new
     * connection, all served while the slow ones still dribble. */
    int64_t t0 = coru_now();
    for (int i = 0; i < 20; i++) {
        struct resp r;
        one(f.port, "GET /hello/normal HTTP/1.1\r\nHost: x\r\n\r\n", &r, NULL);
        cr_assert_str_eq(r.body, "hello normal");
        resp_free(&r);
    }
    int64_t took = coru_now() - t0;
    for (int i = 0; i < SLOW_CLIENTS; i++) cr_assert_eq(coru_join(hs[i], NULL), 0);
    cr_assert_lt(took, o.header_timeout, "the normal client waited behind the slow ones (%lld ms)",
                 (long long)(took / MS));
    cr_assert_eq(atomic_load(&s.other), 0, "%d slow clients did not get 408 and a close", atomic_load(&s.other));
    cr_assert_eq(atomic_load(&s.got408), SLOW_CLIENTS);
    cr_assert_eq(atomic_load(&handled), 20);
    fx_stop(&f, SEC);
    return NULL;
}

Test(http_hostile, slow_clients_get_408_at_the_header_timeout_and_delay_nobody, .timeout = 120)
{
    raise_nofile(2 * SLOW_CLIENTS + 200);
    FOR_EACH_ENGINE(io) cr_assert_eq(run_on(io, 2, slow_main, NULL), 0);
}

/* ------------------------------------------------------------ many idle connections */

/* The clients run in a second process (two fds a connection in one
 * process would need twice the fd limit). Not a bare fork: TSan refuses
 * to start threads in the child of a multi-threaded process, and
 * Criterion's worker is one under TSan. The test re-executes this binary
 * with CORU_TEST_HTTP_ROLE set, and the constructor at the end of this
 * file runs the clients instead of Criterion's main. They report through
 * a pipe: "R" once every connection was served, then their counts. */
#define ROLE_ENV "CORU_TEST_HTTP_ROLE"
extern char **environ;

struct idle {
    uint16_t port;
    _Atomic int served, closed, failed, ready;
    int report;
};

struct idle_report {
    int served, closed, failed;
};

static void *idle_client(void *arg)
{
    struct idle *x = arg;
    int fd = coru_tcp_connect("127.0.0.1", x->port, coru_now() + 60 * SEC);
    if (fd < 0) {
        atomic_fetch_add(&x->failed, 1);
        atomic_fetch_add(&x->ready, 1);
        return NULL;
    }
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    char buf[512];
    ssize_t n = -1;
    if (coru_write_all(fd, req, sizeof req - 1, coru_now() + 30 * SEC) == sizeof req - 1)
        n = coru_read_dl(fd, buf, sizeof buf, coru_now() + 30 * SEC);
    if (n > 12 && !memcmp(buf, "HTTP/1.1 200", 12)) atomic_fetch_add(&x->served, 1);
    atomic_fetch_add(&x->ready, 1);
    /* Then idle: the server closes at its idle timeout. */
    n = coru_read_dl(fd, buf, sizeof buf, coru_now() + 60 * SEC);
    if (n == 0 || n == -ECONNRESET)
        atomic_fetch_add(&x->closed, 1);
    else
        atomic_fetch_add(&x->failed, 1);
    coru_close(fd);
    return NULL;
}

static void *idle_clients_main(void *arg)
{
    struct idle *x = arg;
    static coru_t *hs[IDLE_CONNS];
    for (int i = 0; i < IDLE_CONNS; i++)
        if (coru_spawn(&hs[i], idle_client, x, NULL)) abort();
    while (atomic_load(&x->ready) < IDLE_CONNS) coru_sleep(10 * MS);
    if (write(x->report, "R", 1) != 1) abort();
    for (int i = 0; i < IDLE_CONNS; i++) coru_join(hs[i], NULL);
    return NULL;
}

/* The helper role "idle <engine> <port> <report fd>". */
static int idle_child(enum coru_io io, uint16_t port, int report)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct idle x = {.port = port, .report = report};
    if (run_on(io, 2, idle_clients_main, &x) != 0) return 4;
    struct idle_report rep = {atomic_load(&x.served), atomic_load(&x.closed), atomic_load(&x.failed)};
    return write(report, &rep, sizeof rep) == (ssize_t)sizeof rep ? 0 : 5;
}

struct idle_server {
    enum coru_io io;
    int up[2]; /* the child's reports: [0] here (non-blocking), [1] inherited */
    pid_t pid;
    struct idle_report rep;
    int64_t held_ns;
};

/* Reads exactly n bytes of the pipe from a coroutine. */
static void pipe_read(int fd, void *buf, size_t n)
{
    cr_assert_eq(coru_read_full(fd, buf, n, coru_now() + 120 * SEC), (ssize_t)n, "the client process died");
}

static void *idle_server_main(void *arg)
{
    struct idle_server *is = arg;
    struct coru_http_opts o = {.idle_timeout = 2 * SEC, .max_conns = 2 * IDLE_CONNS, .backlog = 4096};
    struct fx f;
    fx_start(&f, &o);
    char role[64];
    snprintf(role, sizeof role, "idle %d %d %d", (int)is->io, f.port, is->up[1]);
    posix_spawn_file_actions_t fa;
    cr_assert_eq(posix_spawn_file_actions_init(&fa), 0);
    cr_assert_eq(posix_spawn_file_actions_addclose(&fa, is->up[0]), 0);
    char *argv[] = {(char *)"test_http_hostile-helper", NULL};
    cr_assert_eq(setenv(ROLE_ENV, role, 1), 0);
    int rc = posix_spawn(&is->pid, "/proc/self/exe", &fa, NULL, argv, environ);
    unsetenv(ROLE_ENV);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawn: %s", strerror(rc));
    close(is->up[1]);
    char r0;
    pipe_read(is->up[0], &r0, 1);
    int64_t t0 = coru_now();
    /* All held: a new request is still served at once. */
    struct resp r;
    one(f.port, "GET /hello/fresh HTTP/1.1\r\nHost: x\r\n\r\n", &r, NULL);
    cr_assert_str_eq(r.body, "hello fresh");
    resp_free(&r);
    pipe_read(is->up[0], &is->rep, sizeof is->rep);
    is->held_ns = coru_now() - t0;
    fx_stop(&f, SEC);
    return NULL;
}

Test(http_hostile, ten_thousand_idle_keep_alive_connections_are_held_and_closed_at_the_idle_timeout,
     .timeout = 240)
{
    raise_nofile(IDLE_CONNS + 200);
    FOR_EACH_ENGINE(io) {
        struct idle_server is = {.io = io};
        cr_assert_eq(pipe(is.up), 0); /* [1] is inherited by the child */
        cr_assert_eq(fcntl(is.up[0], F_SETFL, O_NONBLOCK), 0);
        cr_assert_eq(run_on(io, 2, idle_server_main, &is), 0);
        int st;
        cr_assert_eq(waitpid(is.pid, &st, 0), is.pid);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the client process failed: %#x", st);
        close(is.up[0]);
        cr_assert_eq(is.rep.failed, 0);
        cr_assert_eq(is.rep.served, IDLE_CONNS);
        cr_assert_eq(is.rep.closed, IDLE_CONNS, "closed at the idle timeout");
        cr_log_info("%d idle connections held, closed %lld ms after the last was served (%s)", IDLE_CONNS,
                    (long long)(is.held_ns / MS), io == CORU_IO_URING ? "io_uring" : "epoll");
    }
}

/* Runs before Criterion's main in a process started with ROLE_ENV set,
 * runs the role and exits; does nothing in the test process itself. */
__attribute__((constructor)) static void http_helper(void)
{
    const char *role = getenv(ROLE_ENV);
    if (!role) return;
    int io, port, fd;
    if (sscanf(role, "idle %d %d %d", &io, &port, &fd) == 3) _exit(idle_child((enum coru_io)io, (uint16_t)port, fd));
    fprintf(stderr, "test_http_hostile: unknown helper role \"%s\"\n", role);
    _exit(127);
}
