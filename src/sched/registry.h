/* The registry: every coroutine struct lives in a chunk the runtime can
 * walk, so a dump (coru_dump, the deadlock and stall reports, gdb's
 * `coru list`) can list every live coroutine without a list insert on
 * spawn or an unlink on exit.
 *
 * Allocation: structs are carved from 1 MiB chunks; the hot paths (a
 * worker's struct cache and the depot, coro.c) are unchanged, and only
 * their slow paths come here, in batches, under reg_lock. A chunk whose
 * every slot is free again goes back to malloc (one chunk is kept), so
 * the memory of a burst is given back as before.
 *
 * What a slot says (struct coru__reg, inside struct coru_co). Every field
 * a dump reads is an atomic, written relaxed by the coroutine itself (or
 * its spawner before it is published), so a dump from any thread races
 * with nothing:
 *   - co->id != 0: the slot holds a coroutine (spawned, maybe finished
 *     but not yet released); 0: free. Written relaxed at spawn after the
 *     other fields, and reset when the struct is released. A reader loads
 *     id, the fields, then id again after an acquire fence, and drops
 *     the entry if the two differ (the slot was recycled meanwhile): a
 *     seqlock whose data are atomics.
 *   - wait: what the coroutine parks on, set by the parking call before
 *     it parks (coru__reg_wait) and left in place when it wakes: whether
 *     it is parked now is pstate's answer (sched.h), not the wait's.
 *   - since: when it parked, as the worker's clock of its last scheduling
 *     round (coarse, refreshed every 16 switches and on waking from idle:
 *     a clock read per park measured 3% on pingpong), so it may be early
 *     by the time the coroutine ran before parking.
 * Chunks are linked into reg.head; a chunk is only unlinked (and freed)
 * under reg_lock, which the walkers hold too. gdb reads the same list
 * (tools/coru-gdb.py): keep the names of these fields in step with it.
 */
#ifndef CORU_REGISTRY_H
#define CORU_REGISTRY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct coru_co;

/* What a parked coroutine waits for. Keep in step with the names in
 * dump.c (tools/coru-gdb.py reads this enum from the debug info). */
enum coru__wait_kind {
    CORU__W_NONE = 0,
    CORU__W_CHAN_SEND,  /* obj: the channel */
    CORU__W_CHAN_RECV,  /* obj: the channel */
    CORU__W_SELECT,     /* obj: the first case's channel; arg: cases */
    CORU__W_SLEEP,      /* until: the deadline (CORU_NEVER: forever) */
    CORU__W_JOIN,       /* arg: the joined coroutine's id */
    CORU__W_MUTEX,      /* obj: the mutex */
    CORU__W_COND,       /* obj: the condition variable */
    CORU__W_SEMA,       /* obj: the semaphore */
    CORU__W_WAITGROUP,  /* obj: the wait group */
    CORU__W_IO,         /* arg: the fd; obj: the operation's name (a
                           static string) */
    CORU__W_POOL,       /* obj: the function the blocking pool runs */
    CORU__W_EXITED,     /* its function returned (not listed) */
    CORU__W_NKINDS
};

/* The registry's part of a coroutine. */
struct coru__reg {
    /* The wait record, written at every park: first, so that it shares
     * a cache line with the coroutine's other parking state (sched.h). */
    _Atomic int kind;            /* enum coru__wait_kind of the last park */
    _Atomic bool ext;            /* the object has been used by a plain
                                    thread, which may wake it later */
    _Atomic uintptr_t obj;       /* see the kinds */
    _Atomic int64_t arg;         /* see the kinds */
    _Atomic int64_t until;       /* the park's deadline, or -1 */
    _Atomic int64_t since;       /* when it parked (coarse clock, ns) */
    /* Written at spawn. */
    _Atomic uint64_t name[4];    /* up to 31 bytes and a NUL, zero padded */
    _Atomic uint64_t parent;     /* spawner's id; 0: a plain thread */
    _Atomic uintptr_t site;      /* return address of the coru_spawn/coru_go call */
    _Atomic uintptr_t fn;        /* the function it runs */
    struct coru__reg_chunk *chunk; /* owner: the allocator (reg_lock) */
};

/* The coarse monotonic clock, ns (same origin as coru_now). */
int64_t coru__coarse_ns(void);

/* Records what a coroutine is about to park on (called by the parking
 * call on its own coroutine, before it parks; coru__waiter_on skips plain
 * threads). ext: a plain thread has used the object (see the deadlock
 * report). */
static inline void coru__reg_wait(struct coru__reg *r, int kind, const void *obj, int64_t arg, bool ext)
{
    atomic_store_explicit(&r->kind, kind, memory_order_relaxed);
    atomic_store_explicit(&r->obj, (uintptr_t)obj, memory_order_relaxed);
    atomic_store_explicit(&r->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&r->ext, ext, memory_order_relaxed);
}

/* At the park itself: its deadline (the time is set by coru__park). */
static inline void coru__reg_parking(struct coru__reg *r, int64_t until)
{
    atomic_store_explicit(&r->until, until, memory_order_relaxed);
}

/* Sets or reads a name (truncated to 31 bytes; NULL or "" clears it). */
void coru__reg_set_name(struct coru__reg *r, const char *name);
void coru__reg_get_name(const struct coru__reg *r, char out[32]);

/* Allocation (coro.c's slow paths). take: up to n structs linked through
 * their `next`, returns how many (0: no memory). give: a list linked
 * through `next`. Any thread. */
size_t coru__reg_take(struct coru_co **out, size_t n);
void coru__reg_give(struct coru_co *list);

/* One coroutine as a walker sees it (a consistent copy of its slot). */
struct coru__reg_entry {
    uint64_t id, parent;
    int64_t wait_arg;
    uintptr_t site, fn, wait_obj;
    int64_t until, since;
    int kind;
    int pstate;      /* sched.h's CO_* */
    int worker;      /* running on this worker, -1: not running */
    bool ext;
    char name[32];
};

/* Calls fn on every live coroutine, under reg_lock: fn must not take
 * locks or allocate from the registry. workers_cur[i] is worker i's
 * running coroutine (to tell running from runnable). Returns the count
 * of entries visited. */
size_t coru__reg_walk(void (*fn)(const struct coru__reg_entry *e, void *ctx), void *ctx,
                      struct coru_co *const *workers_cur, unsigned nworkers);

#endif
