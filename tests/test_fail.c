/* Failure injection (src/fail.h, test builds): a small program that
 * spawns and joins, passes messages over an unbuffered and a buffered
 * channel, selects over forty cases, sleeps, and echoes 64 KiB over TCP
 * runs with the Nth call of one site (malloc and friends, mmap, guard
 * install, io_uring setup, epoll_create1, eventfd, pthread_create, socket
 * and accept) failing, for every N the program reaches, on both engines.
 *
 * Each run is a child process (this program again, posix_spawn: TSan
 * refuses threads after a fork of a threaded process), which checks what
 * a user relies on:
 *   - every call returns success or an error its header documents (the
 *     program retries the calls the header says to retry: a select or an
 *     accept that failed for want of memory or fds loses nothing);
 *   - nothing is lost: every message arrives once and in order, every
 *     joined coroutine's result is there, every echoed byte comes back;
 *   - coru_run returns 0 or a documented error, and a second run right
 *     after, with nothing failing, works in full (the failure left no
 *     broken state behind);
 *   - nothing leaks: in the ASan build LeakSanitizer checks at exit;
 * and prints an OUTCOME line: the error codes the calls returned. The
 * parent tallies the outcomes per site, so a changed behaviour shows in
 * the log. A child may also end in an abort that the header promises (no
 * memory for a coroutine's stack when it first runs), with its message;
 * any other abort, a hang (alarm) or a sanitizer report fails the test. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "coru.h"
#include "child.h"
#include "fail.h"
#include "helpers.h"
#include "sched/sched.h"
#include "sched/stack.h"

#define MS (1000 * 1000LL)
#define NMSG 200
#define NSEL 40
#define SEL_MSG 3 /* per channel: each select allocates three arrays, the same three every time */
#define ECHO_BYTES (64 * 1024)

/* ------------------------------------------------------------ the child */

static _Atomic int nbad;
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static char seen_buf[1024]; /* "call=-ERR," for each distinct pair */

__attribute__((format(printf, 1, 2))) static void bad(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    printf("BAD: %s\n", line);
    fflush(stdout);
    atomic_fetch_add(&nbad, 1);
}

static const char *ename(long e)
{
    switch (e) {
    case ENOMEM: return "ENOMEM";
    case EMFILE: return "EMFILE";
    case EAGAIN: return "EAGAIN";
    case EPERM: return "EPERM";
    case ECANCELED: return "ECANCELED";
    default: return "E?";
    }
}

/* Notes that `call` returned -err (once per distinct pair). */
static void seen(const char *call, long err)
{
    char item[64];
    snprintf(item, sizeof item, "%s=-%s,", call, ename(err));
    pthread_mutex_lock(&seen_lock);
    if (!strstr(seen_buf, item) && strlen(seen_buf) + strlen(item) < sizeof seen_buf)
        strcat(seen_buf, item);
    pthread_mutex_unlock(&seen_lock);
}

/* rc of `call` is a success (>= 0), or -e for e one of the allowed
 * errors (0-terminated): noted. Anything else is bad. True on success. */
static bool ok_or(const char *call, long rc, const int *allowed)
{
    if (rc >= 0) return true;
    for (const int *a = allowed; *a; a++)
        if (-rc == *a) {
            seen(call, -rc);
            return false;
        }
    bad("%s returned %ld (%s), which its header does not promise here", call, rc, strerror((int)-rc));
    return false;
}

static const int NOMEM[] = {ENOMEM, 0};
/* The socket calls' errors: as injected (EMFILE) or for want of memory. */
static const int SOCKERR[] = {EMFILE, ENOMEM, 0};
/* An I/O call on epoll may need memory for the fd's state. */
static const int IOERR[] = {ENOMEM, 0};

/* ---- spawn and join */

static void *twice(void *a) { return (void *)((uintptr_t)a * 2); }

static void step_spawn(void)
{
    coru_t *h[8];
    bool made[8];
    for (uintptr_t i = 0; i < 8; i++) made[i] = ok_or("coru_spawn", coru_spawn(&h[i], twice, (void *)i, NULL), NOMEM);
    for (uintptr_t i = 0; i < 8; i++) {
        if (!made[i]) continue;
        void *r = NULL;
        int rc = coru_join(h[i], &r);
        if (rc != 0 || (uintptr_t)r != 2 * i) bad("join %zu: rc %d result %p", (size_t)i, rc, r);
    }
}

/* ---- channels */

struct prod {
    coru_chan *ch;
    long first, n;
};

static void *producer(void *a)
{
    struct prod *p = a;
    for (long i = 0; i < p->n; i++) {
        long v = p->first + i;
        int rc = coru_chan_send(p->ch, &v);
        if (rc != 0) bad("send %ld: %d", v, rc);
    }
    int rc = coru_chan_close(p->ch);
    if (rc != 0) bad("close: %d", rc);
    return NULL;
}

static void step_chan(size_t cap)
{
    coru_chan *ch;
    if (!ok_or("coru_chan_create", coru_chan_create(&ch, sizeof(long), cap), NOMEM)) return;
    struct prod p = {ch, 1, NMSG};
    coru_t *h;
    if (ok_or("coru_spawn", coru_spawn(&h, producer, &p, NULL), NOMEM)) {
        long v, next = 1;
        int rc;
        while ((rc = coru_chan_recv(ch, &v)) == 0)
            if (v != next++) bad("channel (cap %zu): got %ld, expected %ld", cap, v, next - 1);
        if (rc != -EPIPE || next != NMSG + 1) bad("channel (cap %zu): rc %d after %ld messages", cap, rc, next - 1);
        if (coru_join(h, NULL) != 0) bad("join producer");
    }
    coru_chan_destroy(ch);
}

/* ---- select: forty cases (the arrays no longer fit on the stack), two
 * of them live, each fed by a producer; -ENOMEM completes no case, so
 * the select is simply called again. */

static void step_select(void)
{
    coru_chan *ch[2] = {NULL, NULL};
    struct prod p[2];
    coru_t *h[2];
    bool made[2] = {false, false};
    for (int k = 0; k < 2; k++) {
        if (!ok_or("coru_chan_create", coru_chan_create(&ch[k], sizeof(long), (size_t)k), NOMEM)) continue;
        p[k] = (struct prod){ch[k], 1000 * (k + 1), SEL_MSG};
        made[k] = ok_or("coru_spawn", coru_spawn(&h[k], producer, &p[k], NULL), NOMEM);
    }
    struct coru_sel cases[NSEL];
    long val[2], next[2] = {1000, 2000};
    memset(cases, 0, sizeof cases);
    for (int i = 0; i < NSEL; i++) cases[i].op = CORU_SEL_RECV;
    int live = 0;
    for (int k = 0; k < 2; k++) {
        cases[k].elem = &val[k];
        if (made[k]) {
            cases[k].ch = ch[k];
            live++;
        }
    }
    int nomem = 0;
    while (live > 0) {
        int i = coru_select(cases, NSEL, coru_now() + 10000 * MS, 0);
        if (i == -ENOMEM && ++nomem < 100) {
            seen("coru_select", ENOMEM);
            continue;
        }
        if (i < 0 || i > 1) {
            bad("select returned %d", i);
            break;
        }
        if (cases[i].rc == -EPIPE) {
            cases[i].ch = NULL;
            live--;
        } else if (val[i] != next[i]++) {
            bad("select case %d: got %ld, expected %ld", i, val[i], next[i] - 1);
        }
    }
    for (int k = 0; k < 2; k++) {
        if (!made[k]) continue;
        if (next[k] != 1000 * (k + 1) + SEL_MSG) bad("select case %d: %ld messages", k, next[k] - 1000 * (k + 1));
        if (coru_join(h[k], NULL) != 0) bad("join select producer");
    }
    for (int k = 0; k < 2; k++) coru_chan_destroy(ch[k]);
}

/* ---- sleep: eight sleepers of different lengths (the timer heap, not
 * one lane) */

static void *sleeper(void *a)
{
    int64_t ns = MS + (int64_t)(uintptr_t)a * 200 * 1000, t0 = coru_now();
    int rc;
    /* -ENOMEM: no memory for the timer (coru.h), it did not sleep */
    while ((rc = coru_sleep(ns)) == -ENOMEM) {
        seen("coru_sleep", ENOMEM);
        t0 = coru_now();
    }
    if (rc != 0) bad("sleep: %d", rc);
    if (coru_now() - t0 < ns) bad("sleep ended early");
    return NULL;
}

static void step_sleep(void)
{
    coru_t *h[8];
    bool made[8];
    for (uintptr_t i = 0; i < 8; i++) made[i] = ok_or("coru_spawn", coru_spawn(&h[i], sleeper, (void *)i, NULL), NOMEM);
    for (int i = 0; i < 8; i++)
        if (made[i] && coru_join(h[i], NULL) != 0) bad("join sleeper");
}

/* ---- TCP echo */

static void *echo_server(void *a)
{
    int lfd = (int)(intptr_t)a, fd = -1;
    for (int tries = 0; tries < 200; tries++) {
        fd = coru_tcp_accept(lfd, NULL, NULL);
        if (fd >= 0 || fd == -ECANCELED) break;
        if (fd != -EMFILE && fd != -ENOMEM) {
            ok_or("coru_tcp_accept", fd, SOCKERR); /* reports it */
            break;
        }
        seen("coru_tcp_accept", -fd);
        coru_sleep(MS); /* the header: back off and call again, nothing is lost */
    }
    if (fd < 0) return (void *)(intptr_t)fd;
    char buf[8192];
    ssize_t n;
    while ((n = coru_read(fd, buf, sizeof buf)) > 0)
        if (coru_write_all(fd, buf, (size_t)n, CORU_NEVER) != n) {
            bad("echo write");
            break;
        }
    if (n < 0 && n != -ECANCELED) ok_or("coru_read (server)", n, IOERR); /* cancelled: no client */
    coru_close(fd);
    return NULL;
}

static void step_tcp(void)
{
    int lfd = coru_tcp_listen("127.0.0.1", 0, 16, 0);
    if (!ok_or("coru_tcp_listen", lfd, SOCKERR)) return;
    int port = coru_local_port(lfd);
    coru_t *srv;
    if (!ok_or("coru_spawn", coru_spawn(&srv, echo_server, (void *)(intptr_t)lfd, NULL), NOMEM)) {
        coru_close(lfd);
        return;
    }
    int fd = coru_tcp_connect("127.0.0.1", (uint16_t)port, coru_now() + 5000 * MS);
    if (ok_or("coru_tcp_connect", fd, SOCKERR)) {
        static char out[ECHO_BYTES], in[ECHO_BYTES];
        for (size_t i = 0; i < sizeof out; i++) out[i] = (char)(i * 7 + 3);
        ssize_t w = coru_write_all(fd, out, sizeof out, CORU_NEVER);
        if (w == (ssize_t)sizeof out) {
            coru_shutdown(fd, SHUT_WR);
            ssize_t r = coru_read_full(fd, in, sizeof in, coru_now() + 5000 * MS);
            if (r != (ssize_t)sizeof in || memcmp(in, out, sizeof in))
                bad("echo: %zd bytes back, or different bytes", r);
        } else {
            ok_or("coru_write_all", w, IOERR);
        }
        coru_close(fd);
    } else {
        coru_cancel(srv); /* no client: its accept ends with -ECANCELED */
    }
    void *r;
    coru_join(srv, &r);
    if ((intptr_t)r < 0 && (intptr_t)r != -ECANCELED) ok_or("coru_tcp_accept", (intptr_t)r, SOCKERR);
    coru_close(lfd);
}

/* ---- spawns from a plain thread: they go through the global queue,
 * whose ring grows past 1,024 here (and, when it cannot, spills) */

#define THREAD_SPAWNS 3000
static _Atomic long ran_from_thread;
static _Atomic int spawner_done;
static long spawned_from_thread;

static void *count_run(void *a)
{
    atomic_fetch_add(&ran_from_thread, 1);
    return a;
}

static void *spawner(void *a)
{
    long ok = 0;
    for (int i = 0; i < THREAD_SPAWNS; i++) {
        int rc = coru_go(count_run, NULL, NULL);
        if (rc == 0) ok++;
        else ok_or("coru_go (plain thread)", rc, NOMEM);
    }
    spawned_from_thread = ok;
    atomic_store(&spawner_done, 1);
    return a;
}

__attribute__((unused)) static void step_thread_spawn(void)
{
    atomic_store(&ran_from_thread, 0);
    atomic_store(&spawner_done, 0);
    pthread_t t;
    if (pthread_create(&t, NULL, spawner, NULL) != 0) {
        bad("test thread");
        return;
    }
    while (!atomic_load(&spawner_done)) coru_sleep(MS);
    pthread_join(t, NULL);
    int64_t end = coru_now() + 10000 * MS;
    while (atomic_load(&ran_from_thread) < spawned_from_thread && coru_now() < end) coru_sleep(MS);
    if (atomic_load(&ran_from_thread) != spawned_from_thread)
        bad("%ld of %ld coroutines spawned from a plain thread ran", atomic_load(&ran_from_thread), spawned_from_thread);
}

static void *program(void *arg)
{
    (void)arg;
    step_sleep(); /* first: its timers are the first of the run */
    step_spawn();
    step_chan(0);
    step_chan(4);
    step_select();
#ifndef CORU_TSAN
    step_thread_spawn();
#else
    /* 1.6 s a child under TSan (3,000 fibers), so 300 s a sweep: the plain
     * and ASan builds run it. */
#endif
    step_tcp();
    return NULL;
}

/* The errors the faulted run itself may end with. */
static const int RUNERR[] = {ENOMEM, EAGAIN, EPERM, EMFILE, 0};

/* ---- a million coroutines under a lowered mapping limit */

#if defined(CORU_TSAN)
/* gcc 12's TSan has a fixed table of about 8k threads and fibers. */
#define MILLION 4000
#elif defined(CORU_ASAN)
/* The plain build runs the full million (about 10 s); under ASan the
 * canary path costs two minutes at that count, and what ASan looks for
 * (leaks, bad accesses on that path) shows as well at 100,000, fifty
 * times the guard budget. */
#define MILLION 100000
#else
#define MILLION 1000000
#endif

static _Atomic long alive, peak, canaries;
static _Atomic int release_all;

static void *sitter(void *arg)
{
    const struct coru__stack *st = coru__co_self()->stack;
    if (!(st->flags & (CORU__STACK_GUARDED | CORU__STACK_GMARK))) atomic_fetch_add(&canaries, 1);
    long now = atomic_fetch_add(&alive, 1) + 1, p = atomic_load(&peak);
    while (now > p && !atomic_compare_exchange_weak(&peak, &p, now)) {
    }
    while (!atomic_load_explicit(&release_all, memory_order_acquire)) coru_yield();
    atomic_fetch_sub(&alive, 1);
    return arg;
}

static size_t map_count(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    size_t lines = 0;
    int ch;
    while (f && (ch = getc(f)) != EOF) lines += ch == '\n';
    if (f) fclose(f);
    return lines;
}

static long count; /* coroutines to run: MILLION, or a tenth of it */

static void *million(void *arg)
{
    size_t *maps_at_peak = arg;
    for (long i = 0; i < count; i++)
        if (coru_go(sitter, NULL, NULL) != 0) {
            bad("spawn %ld failed", i);
            break;
        }
    while (atomic_load(&peak) < count && !atomic_load(&nbad)) coru_yield();
    *maps_at_peak = map_count();
    atomic_store_explicit(&release_all, 1, memory_order_release);
    return NULL;
}

/* TEST_FAIL_CHILD="maps LIMIT FROM MARKERS": vm.max_map_count played as
 * LIMIT, guard markers off (kernels before 6.13) unless MARKERS, and from
 * guard install FROM on
 * (0: never) every install refused with ENOMEM, as the kernel refuses an
 * mprotect that would pass the limit; a tenth of MILLION then (what it
 * checks, one refusal and canaries after it, shows as well). */
static void maps_child(const char *args)
{
    unsigned long limit, from;
    int markers;
    if (sscanf(args, "%lu %lu %d", &limit, &from, &markers) != 3) _exit(99);
    char lim[32];
    snprintf(lim, sizeof lim, "%lu", limit);
    setenv("CORU_TEST_MAX_MAP_COUNT", lim, 1);
    if (!markers) setenv("CORU_NO_GUARD_MADVISE", "1", 1);
    if (from) coru__fail_arm(CORU__FAIL_GUARD, from, ENOMEM, true);
    count = from ? MILLION / 10 : MILLION;
    size_t maps = 0;
    struct coru_opts o = {.workers = 2};
    int rc = coru_run(million, &maps, &o);
    printf("MAPS rc=%d peak=%ld canaries=%ld maps=%zu guarded_now=%zu budget=%zu refused=%lu\n", rc,
           atomic_load(&peak), atomic_load(&canaries), maps, coru__stack_guarded_count(),
           coru__stack_guard_budget(), coru__fail_failed(CORU__FAIL_GUARD));
    if (rc != 0 || atomic_load(&peak) != count || atomic_load(&alive) != 0) bad("the %ld did not all run", count);
#ifdef CORU_TSAN
    /* TSan maps shadow memory for the stacks, and those mappings count
     * too (test_stack.c): only the run itself is checked here. */
    printf("TSan build: the mapping count (%zu) is not checked\n", maps);
#else
    if (maps >= limit) bad("%zu mappings at the peak, the limit is %lu", maps, limit);
#endif
    /* Every stack past the guard budget (or past the refusals) is a canary one. */
    /* (with markers: a slab of 512 per install that worked) */
    size_t guarded_max = markers ? (from - 1) * 512 : from ? from - 1 : coru__stack_guard_budget();
    /* A refused guard page lowers the budget: no try after that one, but
     * for the other worker's, under way at the same moment. */
    if (from && !markers && coru__fail_failed(CORU__FAIL_GUARD) > 2)
        bad("%lu guard pages tried after the first refusal", coru__fail_failed(CORU__FAIL_GUARD) - 1);
    /* With markers: the first slab refused turns them off (its three
     * tries, on each worker at once at worst), then the fallback's guard
     * page, refused once per worker: a bounded few (10 here, 13 under
     * ASan, which makes no alternate signal stacks), not one per stack. */
    if (from && markers && coru__fail_failed(CORU__FAIL_GUARD) > 32)
        bad("%lu guard installs refused: markers were not turned off", coru__fail_failed(CORU__FAIL_GUARD));
    if ((size_t)atomic_load(&canaries) + guarded_max < (size_t)count)
        bad("%ld canary stacks, expected at least %zu", atomic_load(&canaries), (size_t)count - guarded_max);
    fflush(stdout);
    exit(atomic_load(&nbad) ? 1 : 0);
}

/* TEST_FAIL_CHILD="io site nth err sticky": site -1 counts the calls of
 * every site and prints them ("CALLS 12 3 ..."); sticky 1: every call
 * from the nth on fails. */
__attribute__((constructor)) static void child_main(void)
{
    const char *c = getenv("TEST_FAIL_CHILD");
    if (!c) return;
    if (!strncmp(c, "maps ", 5)) maps_child(c + 5);
    int io, site, err, sticky;
    unsigned long nth;
    if (sscanf(c, "%d %d %lu %d %d", &io, &site, &nth, &err, &sticky) != 5) _exit(99);
    alarm(60); /* a hang ends in SIGALRM, which the parent reports */
    for (int s = 0; s < CORU__FAIL_NSITES; s++) coru__fail_arm(s, s == site ? nth : 0, err, sticky);
    struct coru_opts o = {.workers = 2, .io = io};
    int rc = coru_run(program, NULL, &o);
    if (site < 0) {
        printf("CALLS");
        for (int s = 0; s < CORU__FAIL_NSITES; s++) printf(" %lu", coru__fail_calls(s));
        printf("\n");
    }
    /* AUTO runs on epoll whenever io_uring cannot be set up (coru.h) */
    if (rc != 0 && io == CORU_IO_AUTO && site == CORU__FAIL_URING) bad("an AUTO run failed with %d", rc);
    if (rc != 0) {
        ok_or("coru_run", rc, RUNERR);
        pthread_mutex_lock(&seen_lock);
        if (!strstr(seen_buf, "coru_run=")) {
            strcat(seen_buf, "coru_run=-");
            strcat(seen_buf, ename(-rc));
            strcat(seen_buf, ",");
        }
        pthread_mutex_unlock(&seen_lock);
    }
    unsigned long failed = site >= 0 ? coru__fail_failed(site) : 0;
    printf("OUTCOME failed=%lu %s\n", failed, seen_buf[0] ? seen_buf : "all-ok");
    /* Nothing failing now: the same program works in full (on epoll
     * after a refused io_uring: the runtime remembers a lasting EPERM). */
    for (int s = 0; s < CORU__FAIL_NSITES; s++) coru__fail_arm(s, 0, 0, false);
    if (site == CORU__FAIL_URING && err == EPERM) o.io = CORU_IO_AUTO;
    seen_buf[0] = 0;
    rc = coru_run(program, NULL, &o);
    if (rc != 0 || seen_buf[0]) bad("the run after the failure: rc %d, errors %s", rc, seen_buf);
    fflush(stdout);
    exit(atomic_load(&nbad) ? 1 : 0);
}

/* ----------------------------------------------------------- the parent */

struct child_out {
    int status;
    char text[16384]; /* stdout and stderr */
};

static void spawn_child(const char *arg, struct child_out *out)
{
    char env[128];
    snprintf(env, sizeof env, "TEST_FAIL_CHILD=%s", arg);
    out->status = spawn_self(env, true, out->text, sizeof out->text);
}

static void run_child(int io, int site, unsigned long nth, int err, bool sticky, struct child_out *out)
{
    char arg[96];
    snprintf(arg, sizeof arg, "%d %d %lu %d %d", io, site, nth, err, sticky);
    spawn_child(arg, out);
}

/* The aborts the header promises, by their messages. */
static bool promised_abort(const char *text)
{
    if (strstr(text, "Sanitizer")) return false;
    const char *m = strstr(text, "coru: prepare: no memory for the stack of coroutine ");
    /* the main coroutine, named "main", or one of the program's */
    return m && (strstr(m, "\"main\" (65536 bytes): -12") || strstr(m, " (65536 bytes): -12"));
}

#define MAX_OUTCOMES 32
struct tally {
    char what[MAX_OUTCOMES][256];
    unsigned count[MAX_OUTCOMES];
    int n;
};

static void tally_add(struct tally *t, const char *what)
{
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->what[i], what)) {
            t->count[i]++;
            return;
        }
    if (t->n == MAX_OUTCOMES) return;
    snprintf(t->what[t->n], sizeof t->what[0], "%s", what);
    t->count[t->n++] = 1;
}

static const char *io_name(int io)
{
    return io == CORU_IO_URING ? "io_uring" : io == CORU_IO_EPOLL ? "epoll" : "auto";
}

/* How many calls of each site the program makes on engine io. */
static void count_calls(int io, unsigned long calls[CORU__FAIL_NSITES])
{
    static struct child_out out;
    run_child(io, -1, 0, 0, false, &out);
    cr_assert(WIFEXITED(out.status) && WEXITSTATUS(out.status) == 0, "counting run on %s: status %#x\n%s", io_name(io),
              out.status, out.text);
    const char *p = strstr(out.text, "CALLS");
    cr_assert_not_null(p, "%s", out.text);
    p += 5;
    for (int s = 0; s < CORU__FAIL_NSITES; s++) calls[s] = strtoul(p, (char **)&p, 10);
}

/* Fails, one run each, every call of `site` the program makes on io
 * (sticky: that call and every later one). */
static void sweep_calls(int io, enum coru__fail_site site, int err, bool sticky)
{
    unsigned long calls[CORU__FAIL_NSITES];
    count_calls(io, calls);
    unsigned long n = calls[site] + 2; /* and a little past the end: counts vary by a few */
    struct tally t = {.n = 0};
    static struct child_out out;
    for (unsigned long k = 1; k <= n; k++) {
        run_child(io, site, k, err, sticky, &out);
        const char *o = strstr(out.text, "OUTCOME ");
        char what[256];
        if (WIFEXITED(out.status) && WEXITSTATUS(out.status) == 0 && o) {
            snprintf(what, sizeof what, "%.*s", (int)strcspn(o + 8, "\n"), o + 8);
        } else if (WIFSIGNALED(out.status) && WTERMSIG(out.status) == SIGABRT && promised_abort(out.text)) {
            snprintf(what, sizeof what, "aborted: no memory for a stack");
        } else {
            cr_assert_fail("%s, %s call %lu of %lu failing with %s: status %#x\n%s", io_name(io), coru__fail_name(site), k,
                    calls[site], strerror(err), out.status, out.text);
            return;
        }
        tally_add(&t, what);
    }
    fprintf(stderr, "fail: %s, %s (%lu calls, each failed %s with %s):\n", io_name(io), coru__fail_name(site),
            calls[site], sticky ? "with all after it" : "once", strerror(err));
    for (int i = 0; i < t.n; i++) fprintf(stderr, "  %4u x %s\n", t.count[i], t.what[i]);
}

static void sweep(int io, enum coru__fail_site site, int err)
{
    sweep_calls(io, site, err, false);
}

static void sweep_engines(enum coru__fail_site site, int err)
{
    sweep(CORU_IO_URING, site, err);
    sweep(CORU_IO_EPOLL, site, err);
}

Test(fail, every_allocation, .timeout = 600) { sweep_engines(CORU__FAIL_ALLOC, ENOMEM); }
Test(fail, every_mapping, .timeout = 300) { sweep_engines(CORU__FAIL_MMAP, ENOMEM); }
/* Out of address space for good from the Nth mapping on: the run fails
 * with -ENOMEM while it starts, or, once a coroutine needs a stack it
 * cannot have, aborts naming it (coru.h). */
Test(fail, every_mapping_and_all_after_it, .timeout = 300)
{
    sweep_calls(CORU_IO_URING, CORU__FAIL_MMAP, ENOMEM, true);
    sweep_calls(CORU_IO_EPOLL, CORU__FAIL_MMAP, ENOMEM, true);
}
Test(fail, every_guard_install, .timeout = 300) { sweep_engines(CORU__FAIL_GUARD, ENOMEM); }
Test(fail, every_ring_setup, .timeout = 300)
{
    sweep(CORU_IO_URING, CORU__FAIL_URING, EPERM);
    sweep(CORU_IO_AUTO, CORU__FAIL_URING, EPERM);
    sweep(CORU_IO_URING, CORU__FAIL_URING, ENOMEM);
    sweep(CORU_IO_AUTO, CORU__FAIL_URING, ENOMEM);
}
Test(fail, every_epoll_create, .timeout = 300) { sweep_engines(CORU__FAIL_EPOLL, EMFILE); }
Test(fail, every_eventfd, .timeout = 300) { sweep_engines(CORU__FAIL_EVENTFD, EMFILE); }
Test(fail, every_thread_start, .timeout = 300) { sweep_engines(CORU__FAIL_THREAD, EAGAIN); }
Test(fail, every_socket_and_accept, .timeout = 300) { sweep_engines(CORU__FAIL_SOCKET, EMFILE); }

/* coru.h: past a budget derived from vm.max_map_count, stacks carry a
 * canary instead of a guard page of their own, so that a million
 * coroutines fit under the limit on kernels without guard markers. Here
 * the limit is 16,384 (a budget of 2,048 guarded stacks), and then the
 * kernel also refuses every guard page from the 100th on (for a tenth as
 * many). */
static void million_under(unsigned long limit, unsigned long refuse_from, bool markers)
{
    static struct child_out out;
    char arg[64];
    snprintf(arg, sizeof arg, "maps %lu %lu %d", limit, refuse_from, markers);
    spawn_child(arg, &out);
    cr_assert(WIFEXITED(out.status) && WEXITSTATUS(out.status) == 0, "limit %lu, refusals from %lu: status %#x\n%s",
              limit, refuse_from, out.status, out.text);
    fprintf(stderr, "%s", out.text);
}

Test(fail, a_million_coroutines_fit_under_a_lowered_map_limit, .timeout = 300) { million_under(16384, 0, false); }
Test(fail, coroutines_run_on_canaries_when_the_kernel_refuses_guard_pages, .timeout = 300)
{
    million_under(16384, 100, false);
}

/* With guard markers (Linux 6.13+) a refused install fails the slab it
 * was for: the stacks then come from canary slabs (coru.h), from the
 * fifth install on here (the probe, the two workers' alternate signal
 * stacks and one slab of 512 came before). */
Test(fail, coroutines_run_on_canaries_when_the_kernel_refuses_guard_markers, .timeout = 300)
{
    if (!coru__stack_guard_madvise()) cr_skip_test("no MADV_GUARD_INSTALL on this kernel");
    million_under(1 << 20, 5, true);
}
