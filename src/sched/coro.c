/* Coroutines: spawn, join, detach, identity, and the end of a coroutine's
 * life.
 *
 * Invariants:
 *   - refs counts the owners of the struct: the coroutine itself until it
 *     has finished switching out for the last time, plus the handle until
 *     coru_join or coru_detach. The last one frees it.
 *   - joiner goes NULL -> (joining coroutine) -> JOIN_DONE, or NULL ->
 *     JOIN_DONE. The coroutine writes `result` before its exchange to
 *     JOIN_DONE (release), and the joiner reads it only after seeing
 *     JOIN_DONE (acquire) or being woken by that exchange's owner, so the
 *     result is never read early. Exactly one side wakes: the exit path
 *     wakes the joiner it swapped out; a joiner that finds JOIN_DONE
 *     never parks.
 *   - A coroutine gets its stack on its first run (sched.c), so spawning
 *     costs one small allocation and a queue push, and a million spawned
 *     but not yet started coroutines cost no stack memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sched/depot.h"
#include "sched/sched.h"

#define JOIN_DONE ((struct coru_co *)(uintptr_t)1)

void coru__schedule_new(struct coru_co *co);
void coru__count_spawn(void);
void coru__co_started(void);
int coru__running(void);
void coru__exit_switch(void);
void coru__co_entry(void *p);
void coru__co_finished(struct coru__worker *w, struct coru_co *co);

static _Atomic uint64_t next_id = 1;

/* Coroutine structs are recycled: each worker keeps a small free list
 * (owner only), and a process-wide depot (depot.h) moves them in
 * batches from workers that finish coroutines to workers that spawn them,
 * so a spawn/finish pair on two workers costs no malloc and no cross-thread
 * free. What exceeds the depot's capacity goes back to malloc. */
#define CACHE_MAX 256
#define BATCH 128
static struct coru__depot depot = CORU__DEPOT_INIT(struct coru_co, next, 65536);

static struct coru_co *co_alloc(void)
{
    struct coru__worker *w = coru__worker_self();
    if (!w) return malloc(sizeof(struct coru_co));
    if (!w->co_cache) {
        for (struct coru_co *c = coru__depot_take(&depot, BATCH), *nx; c; c = nx) {
            nx = c->next;
            c->next = w->co_cache;
            w->co_cache = c;
            w->co_cache_n++;
        }
        if (!w->co_cache) return malloc(sizeof(struct coru_co));
    }
    struct coru_co *c = w->co_cache;
    w->co_cache = c->next;
    w->co_cache_n--;
    return c;
}

static void free_list(struct coru_co *c)
{
    for (struct coru_co *nx; c; c = nx) {
        nx = c->next;
        free(c);
    }
}

static void co_release(struct coru_co *co)
{
    struct coru__worker *w = coru__worker_self();
    if (!w) {
        free(co);
        return;
    }
    if (w->co_cache_n >= CACHE_MAX) free_list(coru__depot_spill(&depot, &w->co_cache, &w->co_cache_n, BATCH));
    co->next = w->co_cache;
    w->co_cache = co;
    w->co_cache_n++;
}

/* Frees a worker's cached structs and the depot's; called by each worker
 * when a run ends. */
void coru__co_cache_drain(struct coru__worker *w);
void coru__co_cache_drain(struct coru__worker *w)
{
    if (w) {
        free_list(w->co_cache);
        w->co_cache = NULL;
        w->co_cache_n = 0;
    }
    free_list(coru__depot_drain(&depot));
}

uint64_t coru__next_id(void);
uint64_t coru__next_id(void)
{
    return atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed); /* only uniqueness matters */
}

int coru__spawn(struct coru_co **out, coru_fn fn, void *arg, const struct coru_attr *attr, int refs)
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
    co->id = coru__next_id();
    co->stack_size = ss;
    atomic_init(&co->pstate, CO_RUNNING);
    atomic_init(&co->joiner, NULL);
    atomic_init(&co->refs, refs);
    co->next = NULL;
    if (out) *out = co;
    coru__count_spawn();
    coru__schedule_new(co);
    return 0;
}

int coru_spawn(coru_t **out, coru_fn fn, void *arg, const struct coru_attr *attr)
{
    if (!out || !fn) return -EINVAL;
    if (!coru__running()) return -EPERM;
    return coru__spawn(out, fn, arg, attr, 2);
}

int coru_go(coru_fn fn, void *arg, const struct coru_attr *attr)
{
    if (!fn) return -EINVAL;
    if (!coru__running()) return -EPERM;
    return coru__spawn(NULL, fn, arg, attr, 1);
}

static void co_unref(struct coru_co *co)
{
    /* acq_rel: the last owner sees every write of the others before free */
    if (atomic_fetch_sub_explicit(&co->refs, 1, memory_order_acq_rel) == 1) co_release(co);
}

void coru__co_entry(void *p)
{
    struct coru_co *co = p;
    coru__co_started();
    void *r = co->fn(co->arg);
    co->result = r;
    /* acq_rel: release publishes result to the joiner (pairs with the
     * acquire in coru_join); acquire makes the joiner's PARKING store,
     * published by its release CAS, visible before coru__ready. */
    struct coru_co *j = atomic_exchange_explicit(&co->joiner, JOIN_DONE, memory_order_acq_rel);
    if (j) coru__ready(j);
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
    co_unref(co);
}

int coru_join(coru_t *h, void **result)
{
    if (!h) return -EINVAL;
    int rc = coru__can_park();
    if (rc) return rc;
    struct coru_co *self = coru__co_self();
    if (h == self) return -EDEADLK;
    struct coru_co *j = atomic_load_explicit(&h->joiner, memory_order_acquire); /* pairs with the exit exchange */
    if (j != JOIN_DONE) {
        coru__park_prepare(self);
        struct coru_co *expect = NULL;
        /* release: publishes our PARKING state to the exit path; acquire
         * on failure: pairs with the exit exchange (result visible). */
        if (atomic_compare_exchange_strong_explicit(&h->joiner, &expect, self, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            coru__park();
        } else {
            coru__park_cancel(self);
            if (expect != JOIN_DONE) return -EINVAL; /* another coroutine joins it */
        }
    }
    if (result) *result = h->result;
    co_unref(h);
    return 0;
}

int coru_detach(coru_t *h)
{
    if (!h) return -EINVAL;
    co_unref(h);
    return 0;
}

coru_t *coru_self(void)
{
    return coru__co_self();
}

uint64_t coru_id(const coru_t *co)
{
    if (!co) co = coru__co_self();
    return co ? co->id : 0;
}
