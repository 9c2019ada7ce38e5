/* inspect.c - looking inside a run, as asyncio's debug tools do:
 * asyncio.all_tasks() and Task.print_stack() become coru_dump, and
 * debug mode's "Executing <Task ...> took 0.150 seconds" (the slow
 * callback warning, 100 ms by default) becomes the stall report.
 *
 * A small pipeline of named coroutines (a source, three workers, a sink)
 * passes numbers over channels. Modes:
 *   inspect            dumps the coroutines while the pipeline runs (one
 *                      line each, then grouped), checks the total, exits 0
 *   inspect --stall    one worker computes for 300 ms without yielding:
 *                      the runtime reports the stall with a backtrace
 *   inspect --deadlock the sink waits on the wrong channel: every
 *                      coroutine ends up parked with nothing to wake
 *                      them, and the runtime reports the deadlock and
 *                      aborts (CORU_DEADLOCK_ABORT)
 *   inspect --wait     parks forever; `kill -QUIT <pid>` (CORU_DUMP_SIGNAL)
 *                      or gdb's `coru list` shows what it waits on
 * Build with -rdynamic (meson does here) so that dumps name functions. */
#include <coru.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL
#define ITEMS 1000
#define WORKERS 3

static const char *mode = "";
static int bad; /* the pipeline's total was wrong */

struct pipeline {
    coru_chan *in, *out, *unused;
    coru_waitgroup *wg;
};

void *source(void *arg);
void *worker(void *arg);
void *sink(void *arg);
void crunch(int64_t ns);

void *source(void *arg)
{
    struct pipeline *p = arg;
    for (int i = 1; i <= ITEMS; i++)
        if (coru_chan_send(p->in, &i)) break;
    coru_chan_close(p->in);
    return NULL;
}

/* A computation that never yields (the --stall mode's culprit). */
__attribute__((noinline)) void crunch(int64_t ns)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000LL + (t.tv_nsec - t0.tv_nsec) < ns);
}

void *worker(void *arg)
{
    struct pipeline *p = arg;
    int v;
    while (coru_chan_recv(p->in, &v) == 0) {
        if (v == ITEMS / 2 && !strcmp(mode, "--stall")) crunch(300 * MS);
        int sq = v * 2;
        coru_sleep(100000); /* 0.1 ms of "I/O" per item */
        if (coru_chan_send(p->out, &sq)) break;
    }
    coru_waitgroup_done(p->wg);
    return NULL;
}

void *sink(void *arg)
{
    struct pipeline *p = arg;
    /* --deadlock: receives from a channel nobody sends on, so the workers
     * block sending to `out` and the source blocks sending to `in` */
    coru_chan *from = !strcmp(mode, "--deadlock") ? p->unused : p->out;
    long total = 0;
    int v;
    while (coru_chan_recv(from, &v) == 0) total += v;
    return (void *)(intptr_t)total;
}

void *closer(void *arg);
void *closer(void *arg)
{
    struct pipeline *p = arg;
    coru_waitgroup_wait(p->wg);
    coru_chan_close(p->out);
    return NULL;
}

void *main_co(void *arg);
void *main_co(void *arg)
{
    (void)arg;
    if (!strcmp(mode, "--wait")) {
        coru_chan *never;
        coru_chan_create(&never, sizeof(int), 0);
        coru_set_name("waits-forever");
        printf("inspect: pid %d waiting; kill -QUIT %d for a dump\n", (int)getpid(), (int)getpid());
        fflush(stdout);
        int v;
        coru_chan_recv_dl(never, &v, coru_now() + 60000 * MS);
        coru_chan_destroy(never);
        return NULL;
    }
    struct pipeline p;
    coru_chan_create(&p.in, sizeof(int), 0);
    coru_chan_create(&p.out, sizeof(int), 16);
    coru_chan_create(&p.unused, sizeof(int), 0);
    coru_waitgroup_create(&p.wg);
    coru_waitgroup_add(p.wg, WORKERS);
    coru_t *hs[WORKERS + 3];
    struct coru_attr a = {.name = "source"};
    coru_spawn(&hs[0], source, &p, &a);
    char names[WORKERS][16];
    for (int i = 0; i < WORKERS; i++) {
        snprintf(names[i], sizeof names[i], "worker-%d", i);
        a.name = names[i];
        coru_spawn(&hs[1 + i], worker, &p, &a);
    }
    a.name = "sink";
    coru_spawn(&hs[WORKERS + 1], sink, &p, &a);
    a.name = "closer";
    coru_spawn(&hs[WORKERS + 2], closer, &p, &a);
    if (!*mode) {
        coru_sleep(20 * MS);
        printf("--- all coroutines (coru_dump) ---\n");
        fflush(stdout);
        coru_dump(1, 0);
        printf("--- grouped (CORU_DUMP_GROUPED) ---\n");
        fflush(stdout);
        coru_dump(1, CORU_DUMP_GROUPED);
    }
    void *total = NULL;
    for (int i = 0; i < WORKERS + 3; i++) coru_join(hs[i], i == WORKERS + 1 ? &total : NULL);
    long want = (long)ITEMS * (ITEMS + 1);
    printf("inspect: total %ld (want %ld)\n", (long)(intptr_t)total, want);
    bad = (long)(intptr_t)total != want;
    coru_chan_destroy(p.in);
    coru_chan_destroy(p.out);
    coru_chan_destroy(p.unused);
    coru_waitgroup_destroy(p.wg);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1) mode = argv[1];
    if (*mode && strcmp(mode, "--stall") && strcmp(mode, "--deadlock") && strcmp(mode, "--wait")) {
        fprintf(stderr, "usage: inspect [--stall | --deadlock | --wait]\n");
        return 2;
    }
    struct coru_opts o = {.workers = 2, .dump_signal = SIGQUIT};
    if (!strcmp(mode, "--deadlock")) o.deadlock = CORU_DEADLOCK_ABORT;
    int rc = coru_run(main_co, NULL, &o);
    if (rc) {
        fprintf(stderr, "coru_run: %s\n", strerror(-rc));
        return 1;
    }
    return bad;
}
