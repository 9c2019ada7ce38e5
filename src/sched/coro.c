/* Coroutines: spawn, join, detach, identity, and the end of a coroutine's
 * life.
 *
 * Invariants:
 *   - refs counts the owners of the struct: the coroutine itself until it
 *     has finished switching out for the last time, plus the handle until
 *     coru_join or coru_detach. The last one frees it.
 *   - finished, join_waiter, waiting and the setting of cancelled are
 *     guarded by the coroutine's wait_lock. The exit path sets finished
 *     and wakes a parked joiner under that lock; a joiner checks finished
 *     and registers under it; so exactly one of them sees the other. The
 *     result is written before finished (and read after it), both ordered
 *     by the lock.
 *   - A coroutine gets its stack on its first run (sched.c), so spawning
 *     costs one small allocation and a queue push, and a million spawned
 *     but not yet started coroutines cost no stack memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io/engine.h"
#include "sched/depot.h"
#include "sched/rt.h"
#include "sched/sched.h"
#include "sched/waiter.h"

static _Atomic uint64_t next_id = 1;

/* Coroutine structs are recycled: each worker keeps a small free list
 * (owner only), and a process-wide depot (depot.h) moves them in
 * batches from workers that finish coroutines to workers that spawn them,
 * so a spawn/finish pair on two workers costs no malloc and no cross-thread
 * free. What exceeds the depot's capacity goes back to the registry's
 * chunks (registry.c), which is also where the caches are filled from. */
#define CACHE_MAX 256
#define BATCH 128
static struct coru__depot depot = CORU__DEPOT_INIT(struct coru_co, next, 65536);

static struct coru_co *co_alloc(void)
{
    struct coru__worker *w = coru__worker_self();
    struct coru_co *c;
    if (!w) return coru__reg_take(&c, 1) ? c : NULL;
    if (!w->co_cache) {
        struct coru_co *list = coru__depot_take(&depot, BATCH);
        if (!list) coru__reg_take(&list, BATCH);
        for (struct coru_co *nx; list; list = nx) {
            nx = list->next;
            list->next = w->co_cache;
            w->co_cache = list;
            w->co_cache_n++;
        }
        if (!w->co_cache) return NULL;
    }
    c = w->co_cache;
    w->co_cache = c->next;
    w->co_cache_n--;
    return c;
}

/* The struct is free from now on: a walker skips it (registry.h). */
static void co_release(struct coru_co *co)
{
    atomic_store_explicit(&co->id, 0, memory_order_relaxed);
    struct coru__worker *w = coru__worker_self();
    if (!w) {
        co->next = NULL;
        coru__reg_give(co);
        return;
    }
    if (w->co_cache_n >= CACHE_MAX) coru__reg_give(coru__depot_spill(&depot, &w->co_cache, &w->co_cache_n, BATCH));
    co->next = w->co_cache;
    w->co_cache = co;
    w->co_cache_n++;
}

/* Frees a worker's cached structs and the depot's; called by each worker
 * when a run ends. */
void coru__co_cache_drain(struct coru__worker *w)
{
    if (w) {
        coru__reg_give(w->co_cache);
        w->co_cache = NULL;
        w->co_cache_n = 0;
    }
    coru__reg_give(coru__depot_drain(&depot));
}

uint64_t coru__next_id(void);
uint64_t coru__next_id(void)
{
    return atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed); /* only uniqueness matters */
}

int coru__spawn(struct coru_co **out, coru_fn fn, void *arg, const struct coru_attr *attr, int refs,
                uintptr_t site, const struct coru_co *parent)
{
    size_t ss = attr ? attr->stack_size : 0;
    if (!fn || ss > ((size_t)1 << 30)) return -EINVAL;
    struct coru_co *co = co_alloc();
    if (!co) return -ENOMEM;
    memset(&co->ctx, 0, sizeof co->ctx);
    co->stack = NULL;
    co->fn = fn;
    co->arg = arg;
    co->result = NULL;
    co->stack_size = ss;
    atomic_init(&co->pstate, CO_RUNNING);
    coru__lock_init(&co->wait_lock);
    co->waiting = NULL;
    atomic_init(&co->cancelled, false);
    co->finished = false;
    co->join_waiter = NULL;
    co->io_op = NULL;
    co->io_eng = NULL;
    co->io_cancel_on = NULL;
    co->io_closed = false;
    atomic_init(&co->refs, refs);
    co->next = NULL;
    coru__reg_set_name(&co->reg, attr ? attr->name : NULL);
    atomic_store_explicit(&co->reg.parent, parent ? parent->id : 0, memory_order_relaxed);
    atomic_store_explicit(&co->reg.site, site, memory_order_relaxed);
    atomic_store_explicit(&co->reg.fn, (uintptr_t)fn, memory_order_relaxed);
    atomic_store_explicit(&co->reg.kind, CORU__W_NONE, memory_order_relaxed);
    /* release: a walker that reads the id (acquire) sees the fields above */
    atomic_store_explicit(&co->id, coru__next_id(), memory_order_release);
    if (out) *out = co;
    coru__count_spawn();
    coru__schedule_new(co);
    return 0;
}

/* A coroutine's spawn needs no check: its run cannot end while it lives.
 * A plain thread's is made under the run's ext lock (run.c), so it
 * either runs inside this run or fails with -EPERM. */
static int spawn(coru_t **out, coru_fn fn, void *arg, const struct coru_attr *attr, int refs, uintptr_t site)
{
    struct coru_co *self = coru__co_self();
    if (self) return coru__spawn(out, fn, arg, attr, refs, site, self);
    int rc = coru__ext_spawn_begin();
    if (rc) return rc;
    rc = coru__spawn(out, fn, arg, attr, refs, site, NULL);
    coru__ext_spawn_end();
    return rc;
}

int coru_spawn(coru_t **out, coru_fn fn, void *arg, const struct coru_attr *attr)
{
    if (!out || !fn) return -EINVAL;
    return spawn(out, fn, arg, attr, 2, (uintptr_t)__builtin_return_address(0));
}

int coru_go(coru_fn fn, void *arg, const struct coru_attr *attr)
{
    if (!fn) return -EINVAL;
    return spawn(NULL, fn, arg, attr, 1, (uintptr_t)__builtin_return_address(0));
}

void coru__co_ref(struct coru_co *co)
{
    atomic_fetch_add_explicit(&co->refs, 1, memory_order_relaxed); /* the caller holds a reference already */
}

void coru__co_unref(struct coru_co *co)
{
    /* acq_rel: the last owner sees every write of the others before free */
    if (atomic_fetch_sub_explicit(&co->refs, 1, memory_order_acq_rel) == 1) co_release(co);
}

void coru__co_entry(void *p)
{
    struct coru_co *co = p;
    coru__co_started();
    void *r = co->fn(co->arg);
    atomic_store_explicit(&co->reg.kind, CORU__W_EXITED, memory_order_relaxed);
    coru__lock(&co->wait_lock);
    co->result = r;
    co->finished = true;
    struct coru__waiter *j = co->join_waiter;
    if (j && coru__waiter_claim(j)) coru__waiter_wake(j, 0, 0);
    coru__unlock(&co->wait_lock);
    coru__exit_switch();
}

/* On the scheduler context after the coroutine's last switch out (w may
 * be NULL when a run is abandoned before it started). */
void coru__co_finished(struct coru__worker *w, struct coru_co *co)
{
    if (co->stack) {
        coru__ctx_release(&co->ctx);
        coru__stack_free(w ? &w->pool : NULL, co->stack);
        co->stack = NULL;
    }
    coru__co_unref(co);
}

int coru_join_dl(coru_t *h, void **result, int64_t deadline)
{
    if (!h) return -EINVAL;
    int rc = coru__can_park();
    if (rc) return rc;
    if (h == coru__co_self()) return -EDEADLK;
    struct coru__waiter w;
    coru__lock(&h->wait_lock);
    if (!h->finished) {
        if (h->join_waiter) {
            coru__unlock(&h->wait_lock);
            return -EINVAL; /* another coroutine is joining it */
        }
        if ((rc = coru__waiter_init(&w))) { /* -ECANCELED wins over -ETIMEDOUT */
            coru__unlock(&h->wait_lock);
            return rc;
        }
        if (coru__dl_passed(deadline)) {
            coru__waiter_abort(&w);
            coru__unlock(&h->wait_lock);
            return -ETIMEDOUT;
        }
        h->join_waiter = &w;
        coru__unlock(&h->wait_lock);
        coru__waiter_on(&w, CORU__W_JOIN, NULL, (int64_t)h->id, false);
        rc = coru__waiter_block(&w, deadline);
        coru__lock(&h->wait_lock);
        h->join_waiter = NULL;
        if (rc) {
            coru__unlock(&h->wait_lock);
            return rc; /* -ETIMEDOUT or -ECANCELED: the handle stays valid */
        }
    }
    coru__unlock(&h->wait_lock);
    if (result) *result = h->result;
    coru__co_unref(h);
    return 0;
}

int coru_join(coru_t *h, void **result)
{
    return coru_join_dl(h, result, CORU_NEVER);
}

int coru_cancel(coru_t *h)
{
    if (!h) return -EINVAL;
    coru__lock(&h->wait_lock);
    /* release: a later coru__waiter_init (acquire) on h sees it */
    atomic_store_explicit(&h->cancelled, true, memory_order_release);
    struct coru__waiter *w = h->waiting;
    if (!h->finished && w && coru__waiter_claim(w)) coru__waiter_wake(w, -ECANCELED, -1);
    bool io = h->io_op != NULL; /* parked in an io_uring op: only its ring can end it */
    coru__unlock(&h->wait_lock);
    if (io) coru__engine_cancel_op(h);
    return 0;
}

int coru_detach(coru_t *h)
{
    if (!h) return -EINVAL;
    coru__co_unref(h);
    return 0;
}

coru_t *coru_self(void)
{
    return coru__co_self();
}

int coru_set_name(const char *name)
{
    struct coru_co *co = coru__co_self();
    if (!co) return -EPERM;
    coru__reg_set_name(&co->reg, name);
    return 0;
}

uint64_t coru_id(const coru_t *co)
{
    if (!co) co = coru__co_self();
    return co ? co->id : 0;
}
