/* Failure injection counters (test builds only): see fail.h.
 *
 * Each site has a call counter, the call number that is to fail (0: none),
 * the errno to fail it with, whether every later call fails too, and a
 * count of failed calls. A worker, the monitor, the blocking pool and a
 * test's plain thread may call a wrapper at once: the counter is one
 * atomic add (relaxed: it orders nothing, it only numbers the calls), so
 * each call gets a number of its own and exactly one call is the nth.
 * Arming happens between runs (no wrapped call in flight); its stores are
 * relaxed too, and published to the threads that later count by the
 * pthread_create or barrier that starts them. */
#include "fail.h"

#ifdef CORU_TESTING
#include <stdatomic.h>

static struct {
    atomic_ulong calls, nth, failed;
    atomic_int err;
    atomic_bool sticky;
} site_state[CORU__FAIL_NSITES];

static const char *const names[CORU__FAIL_NSITES] = {
    [CORU__FAIL_ALLOC] = "alloc",   [CORU__FAIL_MMAP] = "mmap",       [CORU__FAIL_GUARD] = "guard",
    [CORU__FAIL_URING] = "uring",   [CORU__FAIL_EPOLL] = "epoll",     [CORU__FAIL_EVENTFD] = "eventfd",
    [CORU__FAIL_THREAD] = "thread", [CORU__FAIL_SOCKET] = "socket",
};

bool coru__fail_now(enum coru__fail_site site)
{
    typeof(site_state[0]) *s = &site_state[site];
    unsigned long nth = atomic_load_explicit(&s->nth, memory_order_relaxed);
    unsigned long k = atomic_fetch_add_explicit(&s->calls, 1, memory_order_relaxed) + 1;
    if (!nth || k < nth || (k > nth && !atomic_load_explicit(&s->sticky, memory_order_relaxed))) return false;
    atomic_fetch_add_explicit(&s->failed, 1, memory_order_relaxed);
    errno = atomic_load_explicit(&s->err, memory_order_relaxed);
    return true;
}

void coru__fail_arm(enum coru__fail_site site, unsigned long nth, int err, bool sticky)
{
    typeof(site_state[0]) *s = &site_state[site];
    atomic_store_explicit(&s->nth, 0, memory_order_relaxed);
    atomic_store_explicit(&s->calls, 0, memory_order_relaxed);
    atomic_store_explicit(&s->failed, 0, memory_order_relaxed);
    atomic_store_explicit(&s->err, err, memory_order_relaxed);
    atomic_store_explicit(&s->sticky, sticky, memory_order_relaxed);
    atomic_store_explicit(&s->nth, nth, memory_order_relaxed);
}

unsigned long coru__fail_calls(enum coru__fail_site site)
{
    return atomic_load_explicit(&site_state[site].calls, memory_order_relaxed);
}

unsigned long coru__fail_failed(enum coru__fail_site site)
{
    return atomic_load_explicit(&site_state[site].failed, memory_order_relaxed);
}

const char *coru__fail_name(enum coru__fail_site site)
{
    return (unsigned)site < CORU__FAIL_NSITES ? names[site] : NULL;
}
#endif
