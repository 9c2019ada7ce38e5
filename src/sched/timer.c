/* Per-worker timers: heap plus FIFO lanes; see timer.h.
 *
 * Invariants (under heap->lock):
 *   - a[0..n) is a 4-ary min-heap on `when`; a[i].when == a[i].t->when
 *     and a[i].t->idx == i for each entry, and idx == SIZE_MAX for a timer
 *     that is not an entry.
 *   - The entries are the armed timers with lane == NULL (standalone) and
 *     the heads of the non-empty lanes. A lane's timers are linked
 *     head..tail through lnext/lprev in non-decreasing `when`, so its
 *     head is its earliest and the heap minimum is the earliest armed
 *     timer overall.
 *   - armed is true exactly for timers that are an entry or in a lane.
 *   - next == a[0].when, or INT64_MAX when n == 0. Relaxed: the owner
 *     reads it as a hint to skip the lock; only the owner arms, so a
 *     stale value can only be later than the truth by a disarm, which is
 *     harmless (the owner then finds nothing due). Another worker reading
 *     it to find a stuck owner's due timers may see an old value and look
 *     a round later.
 *   - A timer's `heap` goes from h (arm, by the owner) to NULL: by the
 *     firer, as its last access to the timer (release, pairs with the
 *     acquire in disarm), or by the disarm itself.
 */
#include "fail.h"
#include "sched/timer.h"

#include <errno.h>
#include <stdlib.h>

#include "sched/waiter.h"

/* Spans within 2^16 ns (65 us) of each other share a lane key. */
#define LANE_SHIFT 16

void coru__theap_init(struct coru__theap *h)
{
    coru__lock_init(&h->lock);
    h->a = NULL;
    h->n = h->cap = 0;
    for (int i = 0; i < CORU__TLANES; i++) h->lanes[i] = (struct coru__tlane){0, NULL, NULL};
    atomic_init(&h->next, INT64_MAX);
}

void coru__theap_fini(struct coru__theap *h)
{
    free(h->a);
    h->a = NULL;
    h->n = h->cap = 0;
}

/* 4-ary, as Go's timer heap: half the depth of a binary one, and the four
 * children of a node share a cache line or two of the array. */
#define ARITY 4

static inline void place(struct coru__theap *h, size_t i, struct coru__hent e)
{
    h->a[i] = e;
    e.t->idx = i; /* a store to the timer; the compares never load one */
}

static void sift_up(struct coru__theap *h, size_t i)
{
    struct coru__hent e = h->a[i];
    while (i > 0) {
        size_t p = (i - 1) / ARITY;
        if (h->a[p].when <= e.when) break;
        place(h, i, h->a[p]);
        i = p;
    }
    place(h, i, e);
}

static void sift_down(struct coru__theap *h, size_t i)
{
    struct coru__hent e = h->a[i];
    for (;;) {
        size_t c = ARITY * i + 1;
        if (c >= h->n) break;
        size_t end = c + ARITY < h->n ? c + ARITY : h->n, m = c;
        for (size_t k = c + 1; k < end; k++)
            if (h->a[k].when < h->a[m].when) m = k;
        if (e.when <= h->a[m].when) break;
        place(h, i, h->a[m]);
        i = m;
    }
    place(h, i, e);
}

static void update_next(struct coru__theap *h)
{
    atomic_store_explicit(&h->next, h->n ? h->a[0].when : INT64_MAX, memory_order_relaxed);
}

static int heap_insert(struct coru__theap *h, struct coru__timer *t)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        struct coru__hent *na = coru__realloc(h->a, cap * sizeof *na);
        if (!na) return -ENOMEM;
        h->a = na;
        h->cap = cap;
    }
    place(h, h->n++, (struct coru__hent){t->when, t});
    sift_up(h, t->idx);
    return 0;
}

static void heap_remove(struct coru__theap *h, size_t i)
{
    struct coru__timer *t = h->a[i].t;
    t->idx = SIZE_MAX;
    h->n--;
    if (i < h->n) {
        struct coru__timer *moved = h->a[h->n].t;
        place(h, i, h->a[h->n]);
        sift_down(h, i);
        sift_up(h, moved->idx);
    }
}

/* Takes an armed t out of the heap or its lane. A lane head's successor
 * takes its place in the heap: it is due no earlier, so it only sinks. */
static void unlink_timer(struct coru__theap *h, struct coru__timer *t)
{
    struct coru__tlane *l = t->lane;
    if (!l) {
        heap_remove(h, t->idx);
    } else if (l->head == t) {
        struct coru__timer *nx = t->lnext;
        if (nx) {
            nx->lprev = NULL;
            l->head = nx;
            place(h, t->idx, (struct coru__hent){nx->when, nx});
            t->idx = SIZE_MAX;
            sift_down(h, nx->idx);
        } else {
            l->head = l->tail = NULL;
            heap_remove(h, t->idx);
        }
    } else {
        t->lprev->lnext = t->lnext;
        if (t->lnext)
            t->lnext->lprev = t->lprev;
        else
            l->tail = t->lprev;
    }
    t->lane = NULL;
    t->lnext = t->lprev = NULL;
    t->armed = false;
}

static struct coru__tlane *lane_for(struct coru__theap *h, int64_t key)
{
    uint64_t x = (uint64_t)key * 0x9e3779b97f4a7c15ull;
    return &h->lanes[x >> (64 - 3)];
}
_Static_assert(CORU__TLANES == 8, "lane_for takes the top 3 bits");

int coru__timer_arm(struct coru__theap *h, struct coru__timer *t, int64_t now)
{
    int64_t span = t->when > now ? t->when - now : 0;
    int64_t key = span >> LANE_SHIFT;
    coru__lock(&h->lock);
    struct coru__tlane *l = lane_for(h, key);
    t->lnext = t->lprev = NULL;
    if (l->head && l->key == key && l->tail->when <= t->when) {
        t->lane = l;
        t->idx = SIZE_MAX;
        t->lprev = l->tail;
        l->tail->lnext = t;
        l->tail = t;
    } else {
        if (heap_insert(h, t)) {
            coru__unlock(&h->lock);
            return -ENOMEM;
        }
        if (!l->head) { /* a free lane: t opens it */
            l->key = key;
            l->head = l->tail = t;
            t->lane = l;
        } else {
            t->lane = NULL;
        }
    }
    t->armed = true;
    /* Relaxed: read by this same waiter's disarm (program order, or the
     * park/wake hand-off if it migrates) and by firers under the lock. */
    atomic_store_explicit(&t->heap, h, memory_order_relaxed);
    update_next(h);
    coru__unlock(&h->lock);
    return 0;
}

void coru__timer_disarm(struct coru__timer *t)
{
    /* acquire: pairs with the firer's release; NULL means it is done */
    struct coru__theap *h = atomic_load_explicit(&t->heap, memory_order_acquire);
    if (!h) return;
    coru__lock(&h->lock);
    if (t->armed) {
        unlink_timer(h, t);
        update_next(h);
    }
    coru__unlock(&h->lock);
    atomic_store_explicit(&t->heap, NULL, memory_order_relaxed); /* ours alone now */
}

int coru__theap_fire(struct coru__theap *h, int64_t now, bool owner)
{
    if (coru__theap_next(h) > now) return 0;
    int fired = 0;
    coru__lock(&h->lock);
    while (h->n && h->a[0].when <= now) {
        struct coru__timer *t = h->a[0].t;
        if (t->fire && !owner) break; /* the owner's ring must run it */
        /* Each timer lives on its own coroutine's stack, a page of its
         * own: the walk along a lane is a chain of cache and TLB misses.
         * Start on the next one now; the unlink that touches it comes
         * after this one's wake. */
        struct coru__timer *nx = t->lnext;
        if (nx) {
            __builtin_prefetch(nx, 1);
            __builtin_prefetch((char *)nx + sizeof *nx - 1, 1);
        }
        if (t->fire) {
            unlink_timer(h, t);
            t->fire(t); /* what it did (a cancel queued) wants the engine polled */
            fired++;
        } else {
            /* We hold the lock, so a waiter woken here (and resumed at
             * once elsewhere) waits in its disarm until we are done. */
            if (coru__waiter_claim(t->w)) {
                coru__waiter_wake(t->w, -ETIMEDOUT, -1);
                fired++;
            }
            unlink_timer(h, t);
        }
        /* release: our last touch of t; pairs with disarm's acquire, which
         * may then return without the lock. */
        atomic_store_explicit(&t->heap, NULL, memory_order_release);
    }
    update_next(h);
    coru__unlock(&h->lock);
    return fired;
}
