/* test_debug: seeing inside a run. coru_dump's lines (names, parents,
 * spawn sites, every kind of wait, on both engines) and its grouped form;
 * coru_set_name and the errors; the dump signal; the stall report (once
 * per stall, with the name and a backtrace; none when off); the deadlock
 * report (a two-coroutine channel deadlock, abort in a child) and the
 * waits that must never be reported: a timer, an fd, the blocking pool,
 * a plain thread blocked in coru, a plain thread that fed the channel
 * before and sends again later. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coru.h"
#include "child.h"
#include "helpers.h"

#define MS (1000 * 1000LL)

/* ------------------------------------------------------------ capture */

/* Everything written to fd (a memfd) from offset 0, NUL-terminated. */
static char *slurp(int fd)
{
    off_t n = lseek(fd, 0, SEEK_END);
    char *s = malloc((size_t)n + 1);
    cr_assert(s);
    cr_assert_eq(pread(fd, s, (size_t)n, 0), n);
    s[n] = 0;
    return s;
}

/* Redirects stderr to a memfd until capture_end, which returns it. */
static int saved_err = -1, cap_fd = -1;
static void capture_begin(void)
{
    fflush(stderr);
    cap_fd = memfd_create("stderr", 0);
    cr_assert_geq(cap_fd, 0);
    saved_err = dup(2);
    dup2(cap_fd, 2);
}
static char *capture_end(void)
{
    fflush(stderr);
    dup2(saved_err, 2);
    close(saved_err);
    char *s = slurp(cap_fd);
    close(cap_fd);
    return s;
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* The dump line of coroutine id, copied (NULL if absent). */
static char *line_of(const char *dump, uint64_t id)
{
    char key[48];
    snprintf(key, sizeof key, "coroutine %llu ", (unsigned long long)id);
    for (const char *p = dump; (p = strstr(p, key)); p++) {
        if (p != dump && p[-1] != '\n') continue;
        const char *e = strchr(p, '\n');
        return strndup(p, e ? (size_t)(e - p) : strlen(p));
    }
    return NULL;
}

#define EXPECT_IN(line, needle) \
    cr_expect(line && strstr(line, needle), "expected \"%s\" in: %s", needle, line ? line : "(no line)")

/* ------------------------------------------------------------ the dump */

struct parkers {
    coru_chan *ch, *full;
    coru_mutex *m;
    coru_cond *c;
    coru_sema *s;
    coru_waitgroup *wg;
    int pipe[2];
    _Atomic int parked;
    coru_t *recv, *send, *sel, *sleeper, *forever, *joiner, *locker, *waiter, *sema, *wg_waiter, *reader,
        *pooled, *spin;
    _Atomic bool stop_pool;
};

static void *on_recv(void *a)
{
    struct parkers *p = a;
    int v;
    atomic_fetch_add(&p->parked, 1);
    return (void *)(intptr_t)coru_chan_recv(p->ch, &v);
}
static void *on_send(void *a)
{
    struct parkers *p = a;
    int v = 1;
    atomic_fetch_add(&p->parked, 1);
    return (void *)(intptr_t)coru_chan_send(p->full, &v);
}
static void *on_select(void *a)
{
    struct parkers *p = a;
    int v;
    struct coru_sel cs[2] = {{.ch = p->ch, .op = CORU_SEL_RECV, .elem = &v}, {.ch = p->ch, .op = CORU_SEL_RECV, .elem = &v}};
    atomic_fetch_add(&p->parked, 1);
    return (void *)(intptr_t)coru_select(cs, 2, CORU_NEVER, 0);
}
static void *on_sleep(void *a)
{
    struct parkers *p = a;
    atomic_fetch_add(&p->parked, 1);
    return (void *)(intptr_t)coru_sleep(60000 * MS);
}
static void *on_forever(void *a)
{
    struct parkers *p = a;
    coru_set_name("sleeps-forever");
    atomic_fetch_add(&p->parked, 1);
    return (void *)(intptr_t)coru_sleep_until(CORU_NEVER);
}
static void *on_join(void *a)
{
    struct parkers *p = a;
    atomic_fetch_add(&p->parked, 1);
    return (void *)(intptr_t)coru_join(p->recv, NULL);
}
static void *on_lock(void *a)
{
    struct parkers *p = a;
    atomic_fetch_add(&p->parked, 1);
    int rc = coru_mutex_lock(p->m);
    if (!rc) coru_mutex_unlock(p->m);
    return (void *)(intptr_t)rc;
}
static void *on_cond(void *a)
{
    struct parkers *p = a;
    coru_mutex *m2;
    coru_mutex_create(&m2);
    coru_mutex_lock(m2);
    atomic_fetch_add(&p->parked, 1);
    int rc = coru_cond_wait(p->c, m2);
    coru_mutex_unlock(m2);
    coru_mutex_destroy(m2);
    return (void *)(intptr_t)rc;
}
static void *on_sema(void *a)
{
    struct parkers *p = a;
    atomic_fetch_add(&p->parked, 1);
    return (void *)(intptr_t)coru_sema_acquire(p->s);
}
static void *on_wg(void *a)
{
    struct parkers *p = a;
    atomic_fetch_add(&p->parked, 1);
    return (void *)(intptr_t)coru_waitgroup_wait(p->wg);
}
static void *on_read(void *a)
{
    struct parkers *p = a;
    char b;
    atomic_fetch_add(&p->parked, 1);
    return (void *)(intptr_t)coru_read(p->pipe[0], &b, 1);
}
void *test_debug_pool_job(void *a);
void *test_debug_pool_job(void *a)
{
    struct parkers *p = a;
    while (!atomic_load(&p->stop_pool)) usleep(1000);
    return NULL;
}
static void *on_pool(void *a)
{
    struct parkers *p = a;
    atomic_fetch_add(&p->parked, 1);
    return (void *)(intptr_t)coru_blocking(test_debug_pool_job, p, NULL);
}

/* Not static, and the program is linked with -rdynamic: dladdr names
 * only exported symbols. */
coru_t *test_debug_go(coru_fn fn, void *arg, const char *name);
coru_t *test_debug_go(coru_fn fn, void *arg, const char *name)
{
    coru_t *h;
    struct coru_attr at = {.name = name};
    cr_assert_eq(coru_spawn(&h, fn, arg, &at), 0);
    return h;
}

static void *dump_main(void *arg)
{
    (void)arg;
    struct parkers p = {0};
    cr_assert_eq(coru_chan_create(&p.ch, sizeof(int), 0), 0);
    cr_assert_eq(coru_chan_create(&p.full, sizeof(int), 0), 0);
    cr_assert_eq(coru_mutex_create(&p.m), 0);
    cr_assert_eq(coru_cond_create(&p.c), 0);
    cr_assert_eq(coru_sema_create(&p.s, 0), 0);
    cr_assert_eq(coru_waitgroup_create(&p.wg), 0);
    cr_assert_eq(coru_waitgroup_add(p.wg, 1), 0);
    cr_assert_eq(pipe2(p.pipe, O_NONBLOCK | O_CLOEXEC), 0);
    cr_assert_eq(coru_mutex_lock(p.m), 0);
    p.recv = test_debug_go(on_recv, &p, "receiver");
    p.send = test_debug_go(on_send, &p, "sender");
    p.sel = test_debug_go(on_select, &p, "selector");
    p.sleeper = test_debug_go(on_sleep, &p, "sleeper");
    p.forever = test_debug_go(on_forever, &p, NULL);
    p.joiner = test_debug_go(on_join, &p, "joiner");
    p.locker = test_debug_go(on_lock, &p, "locker");
    p.waiter = test_debug_go(on_cond, &p, "cond-waiter");
    p.sema = test_debug_go(on_sema, &p, "sema-waiter");
    p.wg_waiter = test_debug_go(on_wg, &p, "a-name-that-is-longer-than-thirty-one-bytes");
    p.reader = test_debug_go(on_read, &p, "reader");
    p.pooled = test_debug_go(on_pool, &p, "pooled");
    while (atomic_load(&p.parked) < 12) coru_sleep(1 * MS);
    coru_sleep(20 * MS); /* all parked by now */

    int fd = memfd_create("dump", 0);
    int n = coru_dump(fd, 0);
    cr_assert_eq(n, 13, "dumped %d", n); /* 12 and main */
    char *d = slurp(fd);
    close(fd);
    cr_expect(strstr(d, "coru: 13 coroutines (12 parked) on 2 workers ("), "%s", d);
    char *l;
    l = line_of(d, coru_id(NULL));
    EXPECT_IN(l, "\"main\" [");
    EXPECT_IN(l, "] running on worker ");
    free(l);
    struct {
        coru_t *h;
        const char *a, *b;
    } want[] = {
        {p.recv, "\"receiver\" [", ": chan recv 0x"},
        {p.send, "\"sender\" [", ": chan send 0x"},
        {p.sel, "\"selector\" [", ": select of 2 cases, first 0x"},
        {p.sleeper, "\"sleeper\" [", ": sleep, 59."},
        {p.forever, "\"sleeps-forever\" [", ": sleep forever"},
        {p.joiner, "\"joiner\" [", ": join coroutine "},
        {p.locker, "\"locker\" [", ": mutex 0x"},
        {p.waiter, "\"cond-waiter\" [", ": cond 0x"},
        {p.sema, "\"sema-waiter\" [", ": sema 0x"},
        {p.wg_waiter, "\"a-name-that-is-longer-than-thir\" [", ": waitgroup 0x"},
        {p.reader, "\"reader\" [", ": io "},
        {p.pooled, "\"pooled\" [", ": blocking pool running test_debug_pool_job+0x0 ("},
    };
    char parent[48];
    snprintf(parent, sizeof parent, "; parent %llu; spawned at ", (unsigned long long)coru_id(NULL));
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        l = line_of(d, coru_id(want[i].h));
        EXPECT_IN(l, want[i].a);
        EXPECT_IN(l, want[i].b);
        EXPECT_IN(l, "] parked 0."); /* for under a second: parked ~20 ms ago */
        EXPECT_IN(l, parent);
        EXPECT_IN(l, "spawned at test_debug_go+0x"); /* symbolised */
        free(l);
    }
    char jid[48];
    snprintf(jid, sizeof jid, "join coroutine %llu;", (unsigned long long)coru_id(p.recv));
    l = line_of(d, coru_id(p.joiner));
    EXPECT_IN(l, jid);
    free(l);
    char rfd[48];
    snprintf(rfd, sizeof rfd, " fd %d;", p.pipe[0]);
    l = line_of(d, coru_id(p.reader));
    EXPECT_IN(l, rfd);
    cr_expect(l && (strstr(l, "io read fd") || strstr(l, "io wait readable fd")), "%s", l);
    free(l);
    free(d);

    /* Grouped: one line per (state, wait, site). */
    fd = memfd_create("dump", 0);
    cr_assert_eq(coru_dump(fd, CORU_DUMP_GROUPED), 13);
    d = slurp(fd);
    close(fd);
    cr_expect(strstr(d, "grouped by state, wait and spawn site"), "%s", d);
    cr_expect(strstr(d, "1 x parked: chan recv; spawned at "), "%s", d);
    cr_expect(strstr(d, "1 x running; spawned at "), "%s", d);
    free(d);

    /* Release everyone. */
    int v = 7;
    cr_assert_eq(coru_chan_send(p.ch, &v), 0);
    cr_assert_eq(coru_chan_send(p.ch, &v), 0);
    cr_assert_eq(coru_chan_recv(p.full, &v), 0);
    coru_cancel(p.sleeper);
    coru_cancel(p.forever);
    coru_mutex_unlock(p.m);
    coru_cond_signal(p.c);
    coru_sema_release(p.s);
    coru_waitgroup_done(p.wg);
    cr_assert_eq(write(p.pipe[1], "x", 1), 1);
    atomic_store(&p.stop_pool, true);
    coru_t *rest[] = {p.send, p.sel, p.sleeper, p.forever, p.joiner, p.locker, p.waiter, p.sema, p.wg_waiter,
                      p.reader, p.pooled};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) cr_assert_eq(coru_join(rest[i], NULL), 0);
    coru_close(p.pipe[0]);
    close(p.pipe[1]);
    coru_chan_destroy(p.ch);
    coru_chan_destroy(p.full);
    coru_mutex_destroy(p.m);
    coru_cond_destroy(p.c);
    coru_sema_destroy(p.s);
    coru_waitgroup_destroy(p.wg);
    return NULL;
}

Test(debug, dump_shows_every_coroutine_with_its_name_parent_site_and_wait, .timeout = 60)
{
    FOR_EACH_ENGINE(io) {
        cr_assert_eq(run_on(io, 2, dump_main, NULL), 0);
    }
}

static void *park_on(void *a)
{
    int v;
    coru_chan_recv(a, &v);
    return NULL;
}

static void *grouped_main(void *arg)
{
    (void)arg;
    coru_chan *ch;
    cr_assert_eq(coru_chan_create(&ch, sizeof(int), 0), 0);
    enum { N = 5000 };
    for (int i = 0; i < N; i++) cr_assert_eq(coru_go(park_on, ch, NULL), 0);
    int fd;
    char *d = NULL;
    for (int k = 0; k < 2000; k++) { /* until all have parked (slow under TSan) */
        coru_sleep(10 * MS);
        free(d);
        fd = memfd_create("dump", 0);
        cr_assert_eq(coru_dump(fd, CORU_DUMP_GROUPED), N + 1);
        d = slurp(fd);
        close(fd);
        if (strstr(d, "5000 x parked")) break;
    }
    cr_expect(strstr(d, "5000 x parked: chan recv; spawned at "), "%s", d);
    cr_expect(strstr(d, "; e.g. "), "%s", d);
    cr_expect_eq(count_of(d, "\n"), 3, "%s", d); /* title, the group, main */
    free(d);
    cr_assert_eq(coru_chan_close(ch), 0);
    coru_sleep(20 * MS);
    while (1) {
        fd = memfd_create("dump", 0);
        int n = coru_dump(fd, 0);
        close(fd);
        if (n == 1) break;
        coru_sleep(5 * MS);
    }
    coru_chan_destroy(ch);
    return NULL;
}

Test(debug, grouped_dump_counts_thousands_in_one_line, .timeout = 60)
{
    cr_assert_eq(run_on(CORU_IO_AUTO, 2, grouped_main, NULL), 0);
}

static void *errors_main(void *arg)
{
    (void)arg;
    cr_expect_eq(coru_dump(-1, 0), -EINVAL);
    cr_expect_eq(coru_dump(1, 2), -EINVAL);
    cr_expect_eq(coru_dump(1000000, 0), -EBADF);
    cr_expect_eq(coru_set_name(NULL), 0);
    return NULL;
}

Test(debug, errors)
{
    cr_expect_eq(coru_dump(1, 0), -EPERM); /* no run */
    cr_expect_eq(coru_set_name("x"), -EPERM);
    struct coru_opts o = {.workers = 1, .deadlock = 7};
    cr_expect_eq(coru_run(errors_main, NULL, &o), -EINVAL);
    o.deadlock = 0;
    o.dump_signal = -1;
    cr_expect_eq(coru_run(errors_main, NULL, &o), -EINVAL);
    o.dump_signal = 0;
    cr_expect_eq(coru_run(errors_main, NULL, &o), 0);
}

/* ------------------------------------------------------------ dump signal */

static void *signal_main(void *arg)
{
    (void)arg;
    coru_set_name("signaller");
    kill(getpid(), SIGUSR1); /* to the process: the monitor takes it */
    raise(SIGUSR1); /* to this worker thread: blocked there, and discarded
                       when the run ends (the test would die of it else) */
    coru_sleep(200 * MS); /* the monitor writes it meanwhile */
    return NULL;
}

Test(debug, dump_signal_writes_the_dump_and_the_run_goes_on, .timeout = 30)
{
    capture_begin();
    struct coru_opts o = {.workers = 2, .dump_signal = SIGUSR1};
    int rc = coru_run(signal_main, NULL, &o);
    char *err = capture_end();
    cr_assert_eq(rc, 0);
    cr_expect(strstr(err, "coru: dump (signal)\ncoru: 1 coroutine ("), "%s", err);
    cr_expect(strstr(err, "\"signaller\""), "%s", err);
    /* the handler is gone with the run: SIGUSR1 is back to its default */
    struct sigaction sa;
    sigaction(SIGUSR1, NULL, &sa);
    cr_expect(sa.sa_handler == SIG_DFL);
    free(err);
}

/* ------------------------------------------------------------ stalls */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void test_debug_spin_here(int64_t ns);
__attribute__((noinline)) void test_debug_spin_here(int64_t ns)
{
    int64_t t0 = now_ns();
    while (now_ns() - t0 < ns) __asm__ volatile("" ::: "memory");
}

static void *spinner(void *arg)
{
    test_debug_spin_here((int64_t)(intptr_t)arg);
    return NULL;
}

static void *stall_main(void *arg)
{
    struct coru_attr at = {.name = "spinner"};
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, spinner, arg, &at), 0);
    cr_assert_eq(coru_join(h, NULL), 0);
    /* ordinary switching and parking, far below the threshold */
    for (int i = 0; i < 200; i++) coru_sleep(1 * MS);
    return NULL;
}

Test(debug, a_coroutine_spinning_300ms_is_reported_once_with_name_and_backtrace, .timeout = 30)
{
    capture_begin();
    struct coru_opts o = {.workers = 2};
    int rc = coru_run(stall_main, (void *)(intptr_t)(300 * MS), &o);
    char *err = capture_end();
    cr_assert_eq(rc, 0);
    cr_expect_eq(count_of(err, "coru: stall: coroutine "), 1, "%s", err);
    cr_expect(strstr(err, "\"spinner\" has run for 1"), "%s", err); /* 100-199 ms */
    cr_expect(strstr(err, "without parking or yielding (threshold 100 ms)"), "%s", err);
    cr_expect(strstr(err, "coru: stall: backtrace of worker "), "%s", err);
    cr_expect(strstr(err, "test_debug_spin_here"), "%s", err); /* needs -rdynamic */
    free(err);
}

static void *sleeps_in_syscall(void *arg)
{
    (void)arg;
    coru_set_name("blocker");
    usleep(300 * 1000); /* blocks the worker thread, not just the coroutine */
    return NULL;
}

Test(debug, a_coroutine_blocking_its_worker_in_a_system_call_is_a_stall, .timeout = 30)
{
    capture_begin();
    struct coru_opts o = {.workers = 2};
    int rc = coru_run(sleeps_in_syscall, NULL, &o);
    char *err = capture_end();
    cr_assert_eq(rc, 0);
    cr_expect_eq(count_of(err, "coru: stall: coroutine "), 1, "%s", err);
    cr_expect(strstr(err, "\"blocker\" has run for "), "%s", err);
    free(err);
}

Test(debug, stall_threshold_option_and_off, .timeout = 30)
{
    capture_begin();
    struct coru_opts o = {.workers = 2, .stall_ms = -1};
    cr_assert_eq(coru_run(stall_main, (void *)(intptr_t)(300 * MS), &o), 0);
    o.stall_ms = 500;
    cr_assert_eq(coru_run(stall_main, (void *)(intptr_t)(300 * MS), &o), 0);
    setenv("CORU_STALL_MS", "0", 1);
    o.stall_ms = 0;
    cr_assert_eq(coru_run(stall_main, (void *)(intptr_t)(300 * MS), &o), 0);
    setenv("CORU_STALL_MS", "50", 1);
    cr_assert_eq(coru_run(stall_main, (void *)(intptr_t)(120 * MS), &o), 0);
    unsetenv("CORU_STALL_MS");
    char *err = capture_end();
    cr_expect_eq(count_of(err, "coru: stall: coroutine "), 1, "%s", err);
    cr_expect(strstr(err, "(threshold 50 ms)"), "%s", err);
    free(err);
}

/* ------------------------------------------------------------ deadlock */

static coru_chan *dl_a, *dl_b;

static void *dl_left(void *arg)
{
    (void)arg;
    int v;
    coru_chan_recv(dl_a, &v); /* waits for right, which waits for us */
    coru_chan_send(dl_b, &v);
    return NULL;
}

static void *dl_main(void *arg)
{
    (void)arg;
    coru_chan_create(&dl_a, sizeof(int), 0);
    coru_chan_create(&dl_b, sizeof(int), 0);
    coru_t *h;
    struct coru_attr at = {.name = "left"};
    coru_spawn(&h, dl_left, NULL, &at);
    int v;
    coru_chan_recv(dl_b, &v);
    coru_join(h, NULL);
    return NULL;
}

static void *dl_report_main(void *arg);

static int deep(int n)
{
    volatile char frame[512];
    frame[0] = (char)n;
    return n > 100000 ? 0 : deep(n + 1) + frame[0];
}

static void *overflow_co(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)deep(0);
}

static void *overflow_main(void *arg)
{
    (void)arg;
    struct coru_attr at = {.stack_size = 16384, .name = "deep"};
    coru_t *h;
    coru_spawn(&h, overflow_co, NULL, &at);
    coru_join(h, NULL);
    return NULL;
}

/* The runs that abort or never end run in a child: this program again
 * (posix_spawn: TSan refuses threads after a fork of a threaded process),
 * which runs the scenario named by TEST_DEBUG_CHILD before main. */
__attribute__((constructor)) static void child_scenario(void)
{
    const char *c = getenv("TEST_DEBUG_CHILD");
    if (!c) return;
    if (!strncmp(c, "abort-", 6)) {
        struct coru_opts o = {.workers = 2, .io = atoi(c + 6), .deadlock = CORU_DEADLOCK_ABORT,
                              .deadlock_grace_ms = 300};
        coru_run(dl_main, NULL, &o);
    } else if (!strcmp(c, "overflow")) {
        struct coru_opts o = {.workers = 1};
        coru_run(overflow_main, NULL, &o);
    } else if (!strcmp(c, "report")) {
        alarm(2); /* the run keeps waiting: SIGALRM ends it after the report */
        struct coru_opts o = {.workers = 1, .deadlock_grace_ms = 300};
        coru_run(dl_report_main, NULL, &o);
    }
    _exit(0);
}

/* Runs the child scenario; its stderr in buf, its wait status returned. */
static int run_child(const char *scenario, char *buf, size_t cap)
{
    char env[64];
    snprintf(env, sizeof env, "TEST_DEBUG_CHILD=%s", scenario);
    return spawn_self(env, false, buf, cap);
}

Test(debug, a_two_coroutine_channel_deadlock_is_reported_and_aborts_when_asked, .timeout = 30)
{
    FOR_EACH_ENGINE(io) {
        char buf[8192], sc[32];
        snprintf(sc, sizeof sc, "abort-%d", (int)io);
        int st = run_child(sc, buf, sizeof buf);
        cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x: %s", st, buf);
        cr_expect(strstr(buf, "coru: deadlock: all 2 coroutines are parked and nothing can wake them\n"), "%s", buf);
        cr_expect(strstr(buf, "1 x parked: chan recv; spawned at "), "%s", buf);
        cr_expect(strstr(buf, "coru: deadlock: aborting"), "%s", buf);
    }
}

static void *dl_report_main(void *arg)
{
    (void)arg;
    coru_chan *ch;
    coru_chan_create(&ch, sizeof(int), 0);
    int v;
    /* the default: reported once, the run keeps waiting; the deadline
     * (the only way out here) is not armed until after the report */
    coru_chan_recv_dl(ch, &v, CORU_NEVER);
    return NULL;
}

/* Not reported: each of these has a way out that is not a coroutine. */
static _Atomic int plain_sent;

static void *plain_sends_later(void *arg)
{
    coru_chan *ch = arg;
    int v = 1;
    coru_chan_send(ch, &v); /* used the channel before */
    usleep(700 * 1000);
    coru_chan_send(ch, &v); /* and sends again, much later */
    atomic_store(&plain_sent, 1);
    return NULL;
}

static coru_chan *pb_feed;
static void *plain_blocks_then_feeds(void *arg)
{
    (void)arg;
    coru_sleep(700 * MS); /* a plain thread inside a coru call */
    int v = 2;
    coru_chan_send(pb_feed, &v);
    return NULL;
}

static void *blocking_sleep(void *arg)
{
    (void)arg;
    usleep(700 * 1000);
    return NULL;
}

static void *never_main(void *arg)
{
    (void)arg;
    int v;
    /* a timer */
    cr_assert_eq(coru_sleep(700 * MS), 0);
    /* an fd: a plain thread writes it later */
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, blocking_sleep, NULL), 0);
    pthread_detach(t);
    char b;
    cr_assert_eq(coru_read_dl(p[0], &b, 1, coru_now() + 700 * MS), -ETIMEDOUT);
    coru_close(p[0]);
    close(p[1]);
    /* the blocking pool */
    cr_assert_eq(coru_blocking(blocking_sleep, NULL, NULL), 0);
    /* a channel a plain thread fed before and feeds again later */
    coru_chan *ch;
    coru_chan_create(&ch, sizeof(int), 0);
    cr_assert_eq(pthread_create(&t, NULL, plain_sends_later, ch), 0);
    cr_assert_eq(coru_chan_recv(ch, &v), 0);
    cr_assert_eq(coru_chan_recv(ch, &v), 0);
    pthread_join(t, NULL);
    coru_chan_destroy(ch);
    /* a plain thread blocked inside coru (coru_sleep), which then sends
     * on a channel it never touched before */
    coru_chan_create(&pb_feed, sizeof(int), 0);
    cr_assert_eq(pthread_create(&t, NULL, plain_blocks_then_feeds, NULL), 0);
    cr_assert_eq(coru_chan_recv(pb_feed, &v), 0);
    cr_assert_eq(v, 2);
    pthread_join(t, NULL);
    coru_chan_destroy(pb_feed);
    return NULL;
}

Test(debug, timers_fds_the_pool_and_plain_threads_are_never_a_deadlock, .timeout = 60)
{
    FOR_EACH_ENGINE(io) {
        capture_begin();
        struct coru_opts o = {.workers = 2, .io = io, .deadlock = CORU_DEADLOCK_ABORT, .deadlock_grace_ms = 200};
        int rc = coru_run(never_main, NULL, &o);
        char *err = capture_end();
        cr_assert_eq(rc, 0);
        cr_expect(!strstr(err, "deadlock"), "%s", err);
        free(err);
    }
}

Test(debug, the_default_reports_once_and_keeps_waiting, .timeout = 30)
{
    char buf[8192];
    int st = run_child("report", buf, sizeof buf);
    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM, "status %#x: %s", st, buf);
    cr_expect_eq(count_of(buf, "coru: deadlock: all 1 coroutines are parked"), 1, "%s", buf);
    cr_expect(strstr(buf, "keeping on waiting"), "%s", buf);
}

Test(debug, a_stack_overflow_names_the_coroutine, .timeout = 30)
{
    char buf[8192];
    int st = run_child("overflow", buf, sizeof buf);
    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x: %s", st, buf);
    cr_expect(strstr(buf, "coru: coroutine 2 \"deep\" overflowed its stack (16384 bytes)\n"), "%s", buf);
}
