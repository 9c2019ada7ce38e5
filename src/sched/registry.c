/* The registry's chunks: where every coroutine struct comes from, and the
 * walk over them. See registry.h for what a slot says and who writes it.
 *
 * Invariants (all under reg_lock):
 *   - A chunk's slots [0, carved) have been handed out at least once and
 *     have id 0 unless they hold a coroutine; slots past carved were never
 *     touched (the walk stops at carved).
 *   - A slot is in exactly one place: its chunk's free list, a worker's
 *     cache or the depot (coro.c), or a coroutine; nfree counts the first.
 *   - A chunk with every carved slot on its free list is unlinked and
 *     freed, unless it is the only chunk: nobody else can be holding one
 *     of its slots, and the walkers, which hold reg_lock, are not in it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fail.h"
#include "common.h"
#include "sched/lock.h"
#include "sched/registry.h"
#include "sched/sched.h"

#define CHUNK_BYTES ((size_t)1 << 20)

struct coru__reg_chunk {
    struct coru__reg_chunk *next, *prev; /* reg.head's list */
    struct coru_co *free;                /* free slots, linked by next */
    uint32_t nfree, carved, cap;
    struct coru_co slots[]; /* cache-line aligned (struct coru_co is) */
};

/* Not static: tools/coru-gdb.py finds the chunks through this symbol. */
struct coru__registry {
    pthread_mutex_t lock;
    struct coru__reg_chunk *head; /* newest first */
    size_t nchunks;
} coru__registry = {.lock = PTHREAD_MUTEX_INITIALIZER};

int64_t coru__coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void coru__reg_set_name(struct coru__reg *r, const char *name)
{
    union {
        char c[32];
        uint64_t w[4];
    } u;
    memset(&u, 0, sizeof u);
    if (name) {
        size_t n = strnlen(name, sizeof u.c - 1);
        memcpy(u.c, name, n);
    }
    for (int i = 0; i < 4; i++) atomic_store_explicit(&r->name[i], u.w[i], memory_order_relaxed);
}

void coru__reg_get_name(const struct coru__reg *r, char out[32])
{
    uint64_t w[4];
    for (int i = 0; i < 4; i++)
        w[i] = atomic_load_explicit(&((struct coru__reg *)r)->name[i], memory_order_relaxed);
    memcpy(out, w, 32);
    out[31] = 0;
}

static struct coru__reg_chunk *chunk_new(void)
{
    struct coru__reg_chunk *c = coru__aligned_alloc(CORU_CACHELINE, CHUNK_BYTES);
    if (!c) return NULL;
    c->free = NULL;
    c->nfree = c->carved = 0;
    c->cap = (uint32_t)((CHUNK_BYTES - sizeof *c) / sizeof(struct coru_co));
    c->prev = NULL;
    c->next = coru__registry.head;
    if (c->next) c->next->prev = c;
    coru__registry.head = c;
    coru__registry.nchunks++;
    return c;
}

/* Carves up to `want` never-used slots of c onto *list; returns how many. */
static size_t carve(struct coru__reg_chunk *c, struct coru_co **list, size_t want)
{
    size_t got = 0;
    while (c->carved < c->cap && got < want) {
        struct coru_co *co = &c->slots[c->carved++];
        atomic_init(&co->id, 0);
        co->reg.chunk = c;
        co->next = *list;
        *list = co;
        got++;
    }
    return got;
}

size_t coru__reg_take(struct coru_co **out, size_t n)
{
    struct coru_co *list = NULL;
    size_t got = 0;
    pthread_mutex_lock(&coru__registry.lock);
    for (struct coru__reg_chunk *c = coru__registry.head; c && got < n; c = c->next) {
        while (c->free && got < n) {
            struct coru_co *co = c->free;
            c->free = co->next;
            c->nfree--;
            co->next = list;
            list = co;
            got++;
        }
        got += carve(c, &list, n - got);
    }
    while (got < n) {
        struct coru__reg_chunk *c = chunk_new();
        if (!c) break;
        got += carve(c, &list, n - got);
    }
    pthread_mutex_unlock(&coru__registry.lock);
    *out = list;
    return got;
}

void coru__reg_give(struct coru_co *list)
{
    if (!list) return;
    pthread_mutex_lock(&coru__registry.lock);
    for (struct coru_co *co = list, *nx; co; co = nx) {
        nx = co->next;
        struct coru__reg_chunk *c = co->reg.chunk;
        co->next = c->free;
        c->free = co;
        if (++c->nfree < c->carved || coru__registry.nchunks == 1) continue;
        if (c->prev)
            c->prev->next = c->next;
        else
            coru__registry.head = c->next;
        if (c->next) c->next->prev = c->prev;
        coru__registry.nchunks--;
        free(c);
    }
    pthread_mutex_unlock(&coru__registry.lock);
}

static bool read_slot(struct coru_co *co, struct coru__reg_entry *e, struct coru_co *const *cur, unsigned nw)
{
    /* acquire: pairs with nothing in particular; the id check after the
     * fence below is what tells a recycled slot (see registry.h). */
    uint64_t id = atomic_load_explicit(&co->id, memory_order_acquire);
    if (!id) return false;
    struct coru__reg *r = &co->reg;
    e->id = id;
    e->parent = atomic_load_explicit(&r->parent, memory_order_relaxed);
    e->site = atomic_load_explicit(&r->site, memory_order_relaxed);
    e->fn = atomic_load_explicit(&r->fn, memory_order_relaxed);
    e->kind = atomic_load_explicit(&r->kind, memory_order_relaxed);
    e->ext = atomic_load_explicit(&r->ext, memory_order_relaxed);
    e->wait_obj = atomic_load_explicit(&r->obj, memory_order_relaxed);
    e->wait_arg = atomic_load_explicit(&r->arg, memory_order_relaxed);
    e->until = atomic_load_explicit(&r->until, memory_order_relaxed);
    e->since = atomic_load_explicit(&r->since, memory_order_relaxed);
    e->pstate = atomic_load_explicit(&co->pstate, memory_order_relaxed);
    coru__reg_get_name(r, e->name);
    e->worker = -1;
    for (unsigned i = 0; i < nw; i++)
        if (cur[i] == co) e->worker = (int)i;
#ifndef CORU_TSAN /* TSan has no fences; every field is an atomic, so it sees no race */
    atomic_thread_fence(memory_order_acquire); /* the field loads above before the id check */
#endif
    if (atomic_load_explicit(&co->id, memory_order_relaxed) != id) return false;
    return e->kind != CORU__W_EXITED;
}

size_t coru__reg_walk(void (*fn)(const struct coru__reg_entry *e, void *ctx), void *ctx,
                      struct coru_co *const *workers_cur, unsigned nworkers)
{
    size_t n = 0;
    struct coru__reg_entry e;
    pthread_mutex_lock(&coru__registry.lock);
    for (struct coru__reg_chunk *c = coru__registry.head; c; c = c->next)
        for (uint32_t i = 0; i < c->carved; i++)
            if (read_slot(&c->slots[i], &e, workers_cur, nworkers)) {
                fn(&e, ctx);
                n++;
            }
    pthread_mutex_unlock(&coru__registry.lock);
    return n;
}
