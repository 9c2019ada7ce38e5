/* gdb_target.c - the program tests/test_gdb.py debugs with
 * tools/coru-gdb.py: coroutines parked at known places, each in a
 * noinline function with a distinctive name, so that `coru list` and
 * `coru bt all` have something definite to show:
 *   "chan-waiter"  gdbt_wait_on_channel: coru_chan_recv on a channel
 *   "sleeper"      gdbt_sleeping: coru_sleep for an hour
 *   "joiner"       gdbt_joining: coru_join of the chan-waiter
 *   (no name)      gdbt_on_sema: coru_sema_acquire
 * Once coru_dump says all four are parked, the main coroutine calls
 * gdbt_all_parked() (the test's breakpoint), then wakes them all (a send
 * on the channel, a release of the semaphore, a cancel of the sleeper),
 * joins them and exits 0. Run alone, it just does that. */
#include <coru.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MS 1000000LL
#define NPARKED 4

static coru_chan *chan;
static coru_sema *sema;
static int failed;

void *gdbt_main(void *arg);
void *gdbt_wait_on_channel(void *arg);
void *gdbt_sleeping(void *arg);
void *gdbt_joining(void *arg);
void *gdbt_on_sema(void *arg);
void gdbt_all_parked(void);

static void fail(const char *what, int rc)
{
    fprintf(stderr, "gdb_target: %s: %d (%s)\n", what, rc, strerror(rc < 0 ? -rc : rc));
    failed = 1;
}

__attribute__((noinline)) void *gdbt_wait_on_channel(void *arg)
{
    int v = 0;
    int rc = coru_chan_recv(chan, &v);
    if (rc || v != 42) fail("chan-waiter: recv", rc);
    return (void *)(intptr_t)v;
}

__attribute__((noinline)) void *gdbt_sleeping(void *arg)
{
    int rc = coru_sleep(3600 * 1000 * MS);
    if (rc != -ECANCELED) fail("sleeper: sleep not cancelled", rc);
    return NULL;
}

__attribute__((noinline)) void *gdbt_joining(void *arg)
{
    void *r = NULL;
    int rc = coru_join(arg, &r);
    if (rc || (intptr_t)r != 42) fail("joiner: join", rc);
    return NULL;
}

__attribute__((noinline)) void *gdbt_on_sema(void *arg)
{
    int rc = coru_sema_acquire(sema);
    if (rc) fail("sema: acquire", rc);
    return NULL;
}

/* The breakpoint: everything above is parked now. */
__attribute__((noinline)) void gdbt_all_parked(void)
{
    __asm__ volatile("" ::: "memory");
}

/* How many coroutines coru_dump lists as parked. */
static int count_parked(int fd)
{
    char buf[8192];
    if (ftruncate(fd, 0) || lseek(fd, 0, SEEK_SET)) return -1;
    if (coru_dump(fd, 0) < 0) return -1;
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n < 0) return -1;
    buf[n] = 0;
    int k = 0;
    for (char *p = buf; (p = strstr(p, " parked ")); p++) k++;
    return k;
}

void *gdbt_main(void *arg)
{
    coru_t *waiter, *sleeper, *joiner, *on_sema;
    int rc;
    coru_set_name("gdb-main");
    if ((rc = coru_chan_create(&chan, sizeof(int), 0))) return fail("chan_create", rc), NULL;
    if ((rc = coru_sema_create(&sema, 0))) return fail("sema_create", rc), NULL;
    struct coru_attr a = {.name = "chan-waiter"};
    if ((rc = coru_spawn(&waiter, gdbt_wait_on_channel, NULL, &a))) return fail("spawn", rc), NULL;
    a.name = "sleeper";
    if ((rc = coru_spawn(&sleeper, gdbt_sleeping, NULL, &a))) return fail("spawn", rc), NULL;
    a.name = "joiner";
    if ((rc = coru_spawn(&joiner, gdbt_joining, waiter, &a))) return fail("spawn", rc), NULL;
    if ((rc = coru_spawn(&on_sema, gdbt_on_sema, NULL, NULL))) return fail("spawn", rc), NULL;

    int fd = memfd_create("gdb_target-dump", 0);
    if (fd < 0) return fail("memfd_create", -errno), NULL;
    int parked = 0;
    for (int i = 0; i < 5000 && (parked = count_parked(fd)) < NPARKED; i++) coru_sleep(1 * MS);
    close(fd);
    if (parked != NPARKED) fail("not all parked", parked);

    gdbt_all_parked();

    int v = 42;
    if ((rc = coru_chan_send(chan, &v))) fail("send", rc);
    if ((rc = coru_sema_release(sema))) fail("sema_release", rc);
    coru_cancel(sleeper);
    if ((rc = coru_join(joiner, NULL))) fail("join joiner", rc);
    if ((rc = coru_join(sleeper, NULL))) fail("join sleeper", rc);
    if ((rc = coru_join(on_sema, NULL))) fail("join sema", rc);
    coru_chan_destroy(chan);
    coru_sema_destroy(sema);
    return NULL;
}

int main(void)
{
    /* Two workers whatever the machine; no monitor reports while gdb
     * holds the process stopped. */
    struct coru_opts o = {.workers = 2, .stall_ms = -1, .deadlock = CORU_DEADLOCK_OFF};
    int rc = coru_run(gdbt_main, NULL, &o);
    if (rc) fail("coru_run", rc);
    if (!failed) printf("gdb_target: ok\n");
    return failed;
}
