/* test_net_load: TCP under load and faults on both engines: 10,000
 * concurrent connections, an accept loop that survives EMFILE, and light
 * I/O load packing onto the first worker without losing a byte. */
#include "net_helpers.h"

/* Helper processes. Two tests need a second process (the clients of
 * 10,000 connections; a server that lowers its own fd limit). A bare fork
 * would do, but TSan refuses to start threads in the child of a
 * multi-threaded process, and the Criterion worker is one under TSan. So
 * the test re-executes this binary with CORU_TEST_NET_ROLE set, and the
 * constructor net_helper (at the end of this file) runs the role instead
 * of Criterion's main. */
#define ROLE_ENV "CORU_TEST_NET_ROLE"
extern char **environ;

static pid_t spawn_role(const char *role, int close_in_child)
{
    posix_spawn_file_actions_t fa;
    cr_assert_eq(posix_spawn_file_actions_init(&fa), 0);
    if (close_in_child >= 0) cr_assert_eq(posix_spawn_file_actions_addclose(&fa, close_in_child), 0);
    char *argv[] = {(char *)"test_net-helper", NULL};
    cr_assert_eq(setenv(ROLE_ENV, role, 1), 0);
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
    unsetenv(ROLE_ENV);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawn: %s", strerror(rc));
    return pid;
}


/* ------------------------------------------------------------ 10,000 connections */

/* The clients run in a child process: 10,000 connections need
 * 10,000 fds on each side, and the hard RLIMIT_NOFILE of a test machine
 * is often 20,000 (as here), too few for both ends in one process.
 * 10,000 complete in about 1.5 s per engine (plain and ASan builds). */
#ifdef CORU_TSAN
/* Under TSan 10,000 do not complete: after ~80 s ThreadSanitizer fails to
 * map shadow memory (mmap ENOMEM) and a process dies. 5,000 complete in
 * about 13 s per engine, so TSan checks 5,000. */
#define CROWD 5000
#else
#define CROWD 10000
#endif
enum { CROWD_ROUNDS = 5 };

struct crowd {
    uint16_t port;
    int n;
    coru_waitgroup *all_connected;
    _Atomic int rounds, fails;
};

static void *crowd_client(void *arg)
{
    struct crowd *cw = arg;
    int fd = coru_tcp_connect("127.0.0.1", cw->port, coru_now() + 60 * SEC);
    int rounds = 0;
    for (int k = 0; fd >= 0 && k < CROWD_ROUNDS; k++) {
        char out[32], in[32];
        memset(out, '#', sizeof out);
        snprintf(out, sizeof out, "%d:%d", coru_worker(), k);
        if (coru_write_all(fd, out, sizeof out, coru_now() + 60 * SEC) != (ssize_t)sizeof out ||
            coru_read_full(fd, in, sizeof in, coru_now() + 60 * SEC) != (ssize_t)sizeof in ||
            memcmp(in, out, sizeof in) != 0)
            break;
        rounds++;
        if (k == 0) {
            /* hold every connection open until all are established */
            coru_waitgroup_done(cw->all_connected);
            coru_waitgroup_wait_dl(cw->all_connected, coru_now() + 60 * SEC);
        }
    }
    if (rounds == 0) coru_waitgroup_done(cw->all_connected);
    if (rounds != CROWD_ROUNDS) atomic_fetch_add(&cw->fails, 1);
    atomic_fetch_add(&cw->rounds, rounds);
    if (fd >= 0) coru_close(fd);
    return NULL;
}

static void *crowd_clients_main(void *arg)
{
    struct crowd *cw = arg;
    if (coru_waitgroup_create(&cw->all_connected) || coru_waitgroup_add(cw->all_connected, cw->n)) return NULL;
    for (int i = 0; i < cw->n; i++)
        if (coru_go(crowd_client, cw, NULL) != 0) {
            atomic_fetch_add(&cw->fails, cw->n - i);
            coru_waitgroup_add(cw->all_connected, -(cw->n - i));
            break;
        }
    coru_waitgroup_wait(cw->all_connected);
    return NULL; /* coru_run waits for the clients */
}

/* The helper role "crowd <engine> <port> <n>": n clients; exit 0 when
 * every round trip came back. */
static int crowd_child(enum coru_io io, uint16_t port, int n)
{
    struct crowd cw = {.port = port, .n = n};
    int rc = net_run(io, crowd_clients_main, &cw);
    coru_waitgroup_destroy(cw.all_connected);
    if (rc || atomic_load(&cw.fails) || atomic_load(&cw.rounds) != n * CROWD_ROUNDS) {
        fprintf(stderr, "crowd clients (%s): run %d, %d failed, %d of %d rounds\n", ename(io), rc,
                atomic_load(&cw.fails), atomic_load(&cw.rounds), n * CROWD_ROUNDS);
        return 1;
    }
    return 0;
}

static void *crowd_server_main(void *arg)
{
    struct srv *s = arg;
    cr_assert_eq(coru_spawn(&s->acceptor, acceptor, s, NULL), 0);
    cr_assert_eq(coru_join(s->acceptor, NULL), 0);
    return NULL;
}

Test(net, ten_thousand_concurrent_connections_all_echo, .timeout = 240)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    int n = CROWD;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)n + 100) {
        n = (int)rl.rlim_max - 100;
        cr_log_warn("RLIMIT_NOFILE hard limit %lu: %d connections instead of %d", (unsigned long)rl.rlim_max,
                    n, CROWD);
    }
    FOR_EACH_ENGINE(io) {
        struct srv s = {.conns = n};
        s.lfd = coru_tcp_listen("127.0.0.1", 0, 4096, 0);
        cr_assert_geq(s.lfd, 0);
        s.port = (uint16_t)coru_local_port(s.lfd);
        int64_t t0 = coru_now();
        char role[64];
        snprintf(role, sizeof role, "crowd %d %d %d", (int)io, (int)s.port, n);
        pid_t pid = spawn_role(role, -1); /* (the listener is close-on-exec) */
        cr_assert_eq(net_run(io, crowd_server_main, &s), 0);
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_log_info("%d connections, %d round trips each (%s): %.2f s", n, CROWD_ROUNDS, ename(io),
                    (double)(coru_now() - t0) / SEC);
        srv_check(&s);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the client process failed (%s)", ename(io));
        cr_assert_eq(atomic_load(&s.peak), n, "all %d connections were open at once", n);
        cr_assert_eq(atomic_load(&s.bytes), (long)n * CROWD_ROUNDS * 32);
    }
}

/* ------------------------------------------------------------ EMFILE */

/* A server child process runs out of fds (it fills its table up to a
 * limit of EMF_LIMIT, set before the run) so that accept fails with
 * -EMFILE, keeps echoing on the connection it has, backs off 10 ms per
 * failed accept, and frees the fds again; the parent is the client
 * (plain-thread coru calls). Filling the table rather than lowering the
 * limit mid-run: an io_uring accept takes the limit in force when it was
 * submitted, and a multishot accept stays submitted. */
enum { EMF_LIMIT = 256 };

struct emf {
    int lfd, status;
    struct rlimit saved;
    int fill[EMF_LIMIT];
    int nfill;
    _Atomic int attempts, emfile, accepted, other_err, low, a_echoes_low, limiter_err;
    int64_t t_low, t_high;
};

struct emf_report {
    int attempts, emfile, accepted, other_err, a_echoes_low, limiter_err, run_rc;
    int64_t low_ns;
};

struct emf_conn {
    struct emf *e;
    int fd, first;
};

static void *emf_echo(void *arg)
{
    struct emf_conn c = *(struct emf_conn *)arg;
    free(arg);
    char buf[512];
    ssize_t n;
    while ((n = coru_read(c.fd, buf, sizeof buf)) > 0) {
        if (coru_write_all(c.fd, buf, (size_t)n, CORU_NEVER) != n) break;
        if (c.first && atomic_load(&c.e->low)) atomic_fetch_add(&c.e->a_echoes_low, 1);
    }
    coru_close(c.fd);
    return NULL;
}

static void emf_lower(struct emf *e)
{
    /* Take every free fd below the limit: no new fd fits. */
    int fd;
    while (e->nfill < EMF_LIMIT && (fd = dup(0)) >= 0) e->fill[e->nfill++] = fd;
    if (errno != EMFILE) {
        atomic_store(&e->limiter_err, -errno);
        return;
    }
    e->t_low = coru_now();
    atomic_store(&e->low, 1);
    char L = 'L';
    if (write(e->status, &L, 1) != 1) atomic_store(&e->limiter_err, -EIO);
}

/* The accept loop under test: on -EMFILE back off and retry. */
static void *emf_accept(void *arg)
{
    struct emf *e = arg;
    while (atomic_load(&e->accepted) < 2) {
        int fd = coru_tcp_accept_dl(e->lfd, NULL, NULL, coru_now() + 20 * SEC);
        atomic_fetch_add(&e->attempts, 1);
        if (fd == -EMFILE) {
            atomic_fetch_add(&e->emfile, 1);
            coru_sleep(10 * MS);
            continue;
        }
        if (fd < 0) {
            atomic_store(&e->other_err, fd);
            break;
        }
        int k = atomic_fetch_add(&e->accepted, 1);
        struct emf_conn *c = malloc(sizeof *c);
        if (!c) abort();
        *c = (struct emf_conn){e, fd, k == 0};
        if (coru_go(emf_echo, c, NULL) != 0) abort();
        if (k == 0) emf_lower(e);
    }
    return NULL;
}

/* Frees the fds again once accept failed a few times and the first
 * connection was served meanwhile. */
static void *emf_limiter(void *arg)
{
    struct emf *e = arg;
    int64_t end = coru_now() + 20 * SEC;
    while (!(atomic_load(&e->low) && atomic_load(&e->emfile) >= 5 && atomic_load(&e->a_echoes_low) >= 10)) {
        if (coru_now() > end || atomic_load(&e->other_err) || atomic_load(&e->limiter_err)) {
            atomic_store(&e->limiter_err, -ETIMEDOUT);
            break;
        }
        coru_sleep(5 * MS);
    }
    e->t_high = coru_now();
    atomic_store(&e->low, 0);
    while (e->nfill) close(e->fill[--e->nfill]);
    return NULL;
}

static void *emf_main(void *arg)
{
    struct emf *e = arg;
    e->lfd = coru_tcp_listen("127.0.0.1", 0, 0, 0);
    uint16_t port = e->lfd >= 0 ? (uint16_t)coru_local_port(e->lfd) : 0;
    if (write(e->status, &port, sizeof port) != (ssize_t)sizeof port || !port) return NULL;
    coru_t *a, *l;
    if (coru_spawn(&a, emf_accept, e, NULL) || coru_spawn(&l, emf_limiter, e, NULL)) abort();
    coru_join(a, NULL);
    coru_join(l, NULL);
    coru_close(e->lfd);
    return NULL;
}

static bool read_exact(int fd, void *buf, size_t n, int ms)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ms) != 1) return false;
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0) return false;
        got += (size_t)r;
    }
    return true;
}

static void plain_bounce(int fd, const char *msg)
{
    size_t n = strlen(msg);
    char in[64];
    cr_assert_eq(coru_write_all(fd, msg, n, coru_now() + 10 * SEC), (ssize_t)n);
    cr_assert_eq(coru_read_full(fd, in, n, coru_now() + 10 * SEC), (ssize_t)n, "no echo of \"%s\"", msg);
    cr_assert(memcmp(in, msg, n) == 0);
}

/* The helper role "emfile <engine> <status fd>": the server; it writes
 * its port, 'L' once the limit is low, and at the end its report. */
static int emfile_child(enum coru_io io, int status)
{
    struct emf e = {.status = status};
    struct emf_report rep = {0};
    if (getrlimit(RLIMIT_NOFILE, &e.saved) != 0) return 2;
    struct rlimit lim = e.saved;
    if (lim.rlim_max < EMF_LIMIT) return 2;
    lim.rlim_cur = EMF_LIMIT;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) return 2;
    rep.run_rc = net_run(io, emf_main, &e);
    rep.attempts = atomic_load(&e.attempts);
    rep.emfile = atomic_load(&e.emfile);
    rep.accepted = atomic_load(&e.accepted);
    rep.other_err = atomic_load(&e.other_err);
    rep.a_echoes_low = atomic_load(&e.a_echoes_low);
    rep.limiter_err = atomic_load(&e.limiter_err);
    rep.low_ns = e.t_high - e.t_low;
    return write(status, &rep, sizeof rep) == (ssize_t)sizeof rep ? 0 : 2;
}

Test(net, accept_loop_backs_off_on_emfile_keeps_serving_and_recovers, .timeout = 60)
{
    FOR_EACH_ENGINE(io) {
        int pfd[2];
        cr_assert_eq(pipe(pfd), 0); /* not close-on-exec: the child writes to pfd[1] */
        char role[64];
        snprintf(role, sizeof role, "emfile %d %d", (int)io, pfd[1]);
        pid_t pid = spawn_role(role, pfd[0]);
        close(pfd[1]);
        /* The parent is the client, from a plain thread. */
        uint16_t port = 0;
        cr_assert(read_exact(pfd[0], &port, sizeof port, 10000) && port, "no port from the server (%s)",
                  ename(io));
        int a = coru_tcp_connect("127.0.0.1", port, coru_now() + 10 * SEC);
        cr_assert_geq(a, 0, "connect: %s", strerror(-a));
        plain_bounce(a, "first");
        char L = 0;
        cr_assert(read_exact(pfd[0], &L, 1, 10000) && L == 'L', "the server did not lower its limit");
        /* B completes its handshake in the kernel; accept cannot take it. */
        int b = coru_tcp_connect("127.0.0.1", port, coru_now() + 10 * SEC);
        cr_assert_geq(b, 0, "connect: %s", strerror(-b));
        cr_assert_eq(coru_write_all(b, "second", 6, coru_now() + 10 * SEC), 6);
        for (int i = 0; i < 20; i++) {
            char msg[32];
            snprintf(msg, sizeof msg, "while out of fds %d", i);
            plain_bounce(a, msg); /* the existing connection is served */
            usleep(20 * 1000);
        }
        char in[8];
        cr_assert_eq(coru_read_full(b, in, 6, coru_now() + 10 * SEC), 6, "the new connection was not served");
        cr_assert(memcmp(in, "second", 6) == 0);
        coru_close(a);
        coru_close(b);
        struct emf_report rep;
        cr_assert(read_exact(pfd[0], &rep, sizeof rep, 20000), "no report from the server (%s)", ename(io));
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        close(pfd[0]);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server process did not exit cleanly");
        cr_assert_eq(rep.run_rc, 0);
        cr_assert_eq(rep.other_err, 0, "accept: %s", strerror(-rep.other_err));
        cr_assert_eq(rep.limiter_err, 0, "limiter: %s", strerror(-rep.limiter_err));
        cr_assert_eq(rep.accepted, 2);
        cr_assert_geq(rep.emfile, 5);
        cr_assert_geq(rep.a_echoes_low, 10);
        cr_assert_eq(rep.attempts, rep.emfile + rep.accepted);
        /* No spinning: each -EMFILE is followed by a sleep of at least 10 ms. */
        cr_assert_leq(rep.emfile, rep.low_ns / (10 * MS) + 2, "%d failed accepts in %.0f ms (%s)", rep.emfile,
                      (double)rep.low_ns / MS, ename(io));
        cr_log_info("EMFILE (%s): %d failed accepts in %.0f ms", ename(io), rep.emfile, (double)rep.low_ns / MS);
    }
}

/* When exactly -EMFILE comes (coru.h, coru_tcp_accept). With multishot
 * accept on io_uring, connections the kernel accepted ahead of the
 * accept calls, before the fd table filled, are handed out first, table
 * full or not; a connection arriving while the table is full makes the
 * multishot fail, and the next accept returns -EMFILE once. On epoll
 * (and single-shot io_uring) accept itself fails with -EMFILE at once.
 * Either way the connection waits in the kernel's backlog and the accept
 * after the caller freed fds returns it: nothing is lost. */
enum { AHEAD = 3 };

static void *emfile_rule_main(void *arg)
{
    enum coru_io io = *(enum coru_io *)arg;
    bool multishot = false;
    int lfd = coru_tcp_listen("127.0.0.1", 0, 0, 0);
    cr_assert_geq(lfd, 0);
    uint16_t port = (uint16_t)coru_local_port(lfd);
    /* Arms the multishot (io_uring) and times out: nobody connects yet. */
    cr_assert_eq(coru_tcp_accept_dl(lfd, NULL, NULL, coru_now() + 10 * MS), -ETIMEDOUT);
    int cl[AHEAD + 1];
    for (int i = 0; i < AHEAD; i++) {
        cl[i] = coru_tcp_connect("127.0.0.1", port, coru_now() + 10 * SEC);
        cr_assert_geq(cl[i], 0);
    }
    coru_sleep(50 * MS); /* the multishot takes them, on io_uring */
    static int fill[EMF_LIMIT];
    int nfill = 0, fd;
    while (nfill < EMF_LIMIT && (fd = dup(0)) >= 0) fill[nfill++] = fd;
    cr_assert_eq(errno, EMFILE);
    int got = 0;
    for (int i = 0; i < AHEAD; i++) {
        int a = coru_tcp_accept_dl(lfd, NULL, NULL, coru_now() + 2 * SEC);
        /* io_uring: multishot where the kernel has it (5.19+) */
        if (i == 0) multishot = io == CORU_IO_URING && a >= 0;
        if (multishot) {
            cr_assert_geq(a, 0, "accepted ahead, handed out with the table full: %s", strerror(-a));
            coru_close(a);
            fd = dup(0); /* take the fd back */
            cr_assert_geq(fd, 0);
            fill[nfill++] = fd;
            got++;
        } else {
            cr_assert_eq(a, -EMFILE, "accept %d: %d", i, a);
            break;
        }
    }
    /* One more connection while the table is full: its socket takes the
     * one fd freed for it. */
    close(fill[--nfill]);
    cl[AHEAD] = coru_tcp_connect("127.0.0.1", port, coru_now() + 10 * SEC);
    cr_assert_geq(cl[AHEAD], 0);
    int a = coru_tcp_accept_dl(lfd, NULL, NULL, coru_now() + 2 * SEC);
    cr_assert_eq(a, -EMFILE, "a connection arriving with the table full: %d", a);
    /* Back off: free fds; every connection still pending comes out. */
    while (nfill) close(fill[--nfill]);
    for (int i = got; i < AHEAD + 1; i++) {
        a = coru_tcp_accept_dl(lfd, NULL, NULL, coru_now() + 5 * SEC);
        cr_assert_geq(a, 0, "connection %d after the back-off: %s", i, strerror(-a));
        coru_close(a);
    }
    cr_assert_eq(coru_tcp_accept_dl(lfd, NULL, NULL, coru_now() + 20 * MS), -ETIMEDOUT, "none left");
    for (int i = 0; i <= AHEAD; i++) coru_close(cl[i]);
    coru_close(lfd);
    return NULL;
}

Test(net, emfile_comes_after_the_connections_accepted_ahead_and_loses_nothing, .timeout = 60)
{
    struct rlimit lim;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &lim), 0);
    cr_assert_geq(lim.rlim_max, EMF_LIMIT);
    lim.rlim_cur = EMF_LIMIT; /* this test's process only */
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
    FOR_EACH_ENGINE(io) cr_assert_eq(net_run(io, emfile_rule_main, &io), 0, "%s", ename(io));
}

/* ------------------------------------------------------------ helper processes */

/* Runs before Criterion's main in a process started by spawn_role, runs
 * the role and exits; does nothing in the test process itself. */
__attribute__((constructor)) static void net_helper(void)
{
    const char *role = getenv(ROLE_ENV);
    if (!role) return;
    int io, a, b;
    if (sscanf(role, "crowd %d %d %d", &io, &a, &b) == 3) _exit(crowd_child((enum coru_io)io, (uint16_t)a, b));
    if (sscanf(role, "emfile %d %d", &io, &a) == 2) _exit(emfile_child((enum coru_io)io, a));
    fprintf(stderr, "test_net: unknown helper role \"%s\"\n", role);
    _exit(127);
}


/* ------------------------------------------------------------ packing */

/* Light load: 8 clients, each a round trip of 64 bytes every 2 ms against
 * the echo server, 2 workers. Far less than one worker can serve, so the
 * scheduler packs the I/O onto worker 0 (sched/pack.c): in the last
 * third of the run the clients should find themselves there nearly
 * always, while every byte comes back as sent. */
enum { PK_CLIENTS = 8, PK_ROUNDS = 240, PK_TAIL = PK_ROUNDS / 3 };

struct pk {
    struct srv s;
    _Atomic int tail_rounds, tail_on_w0, fails;
};

static void *pk_client(void *arg)
{
    struct pk *p = arg;
    int fd = coru_tcp_connect("127.0.0.1", p->s.port, coru_now() + 10 * SEC);
    if (fd < 0) {
        atomic_fetch_add(&p->fails, 1);
        return NULL;
    }
    char out[64], in[64];
    for (int r = 0; r < PK_ROUNDS; r++) {
        for (size_t i = 0; i < sizeof out; i++) out[i] = (char)(r * 31 + (int)i + fd);
        if (coru_write_all(fd, out, sizeof out, coru_now() + 10 * SEC) != (ssize_t)sizeof out ||
            coru_read_full(fd, in, sizeof in, coru_now() + 10 * SEC) != (ssize_t)sizeof in ||
            memcmp(in, out, sizeof in) != 0) {
            atomic_fetch_add(&p->fails, 1);
            break;
        }
        if (r >= PK_ROUNDS - PK_TAIL) {
            atomic_fetch_add(&p->tail_rounds, 1);
            if (coru_worker() == 0) atomic_fetch_add(&p->tail_on_w0, 1);
        }
        coru_sleep(2 * MS);
    }
    coru_close(fd);
    return NULL;
}

static void *pk_main(void *arg)
{
    struct pk *p = arg;
    srv_start(&p->s, PK_CLIENTS);
    coru_t *c[PK_CLIENTS];
    for (int i = 0; i < PK_CLIENTS; i++) cr_assert_eq(coru_spawn(&c[i], pk_client, p, NULL), 0);
    for (int i = 0; i < PK_CLIENTS; i++) cr_assert_eq(coru_join(c[i], NULL), 0);
    cr_assert_eq(coru_join(p->s.acceptor, NULL), 0);
    return NULL;
}

Test(net, light_io_load_packs_onto_the_first_worker_and_every_byte_arrives, .timeout = 60)
{
    FOR_EACH_ENGINE(io) {
        struct pk p = {0};
        cr_assert_eq(net_run(io, pk_main, &p), 0);
        srv_check(&p.s);
        cr_assert_eq(atomic_load(&p.fails), 0, "%d clients failed (%s)", atomic_load(&p.fails), ename(io));
        int rounds = atomic_load(&p.tail_rounds), on0 = atomic_load(&p.tail_on_w0);
        cr_assert_eq(rounds, PK_CLIENTS * PK_TAIL);
        struct coru_stats st;
        cr_assert_eq(coru_stats(&st), 0);
        cr_log_info("packing (%s): %d of %d late round trips on worker 0, %llu handoffs", ename(io), on0, rounds,
                    (unsigned long long)st.total.handoffs);
        cr_assert_geq(on0 * 10, rounds * 9, "only %d of %d late round trips ran on worker 0 (%s)", on0, rounds,
                      ename(io));
    }
}
