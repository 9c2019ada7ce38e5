/* Per-worker timer heaps; see timer.h.
 *
 * Invariants (under heap->lock): a[0..n) is a binary min-heap on `when`;
 * a[i]->idx == i for every armed timer, and idx == SIZE_MAX for one that
 * is not armed; next == a[0]->when or INT64_MAX when empty (relaxed: the
 * owner reads it as a hint to skip the lock, and only the owner arms, so
 * a stale value can only be later than the truth by a disarm, which is
 * harmless: the owner then finds nothing due).
 */
#include "sched/timer.h"

#include <errno.h>
#include <stdlib.h>

#include "sched/waiter.h"

void coru__theap_init(struct coru__theap *h)
{
    coru__lock_init(&h->lock);
    h->a = NULL;
    h->n = h->cap = 0;
    atomic_init(&h->next, INT64_MAX);
}

void coru__theap_fini(struct coru__theap *h)
{
    free(h->a);
    h->a = NULL;
    h->n = h->cap = 0;
}

static inline void place(struct coru__theap *h, size_t i, struct coru__timer *t)
{
    h->a[i] = t;
    t->idx = i;
}

static void sift_up(struct coru__theap *h, size_t i)
{
    struct coru__timer *t = h->a[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->a[p]->when <= t->when) break;
        place(h, i, h->a[p]);
        i = p;
    }
    place(h, i, t);
}

static void sift_down(struct coru__theap *h, size_t i)
{
    struct coru__timer *t = h->a[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && h->a[c + 1]->when < h->a[c]->when) c++;
        if (t->when <= h->a[c]->when) break;
        place(h, i, h->a[c]);
        i = c;
    }
    place(h, i, t);
}

static void update_next(struct coru__theap *h)
{
    atomic_store_explicit(&h->next, h->n ? h->a[0]->when : INT64_MAX, memory_order_relaxed);
}

/* Caller holds the lock. */
static void remove_at(struct coru__theap *h, size_t i)
{
    struct coru__timer *t = h->a[i];
    t->idx = SIZE_MAX;
    h->n--;
    if (i < h->n) {
        struct coru__timer *moved = h->a[h->n];
        place(h, i, moved);
        sift_down(h, i);
        sift_up(h, moved->idx);
    }
    update_next(h);
}

int coru__timer_arm(struct coru__theap *h, struct coru__timer *t)
{
    coru__lock(&h->lock);
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        struct coru__timer **na = realloc(h->a, cap * sizeof *na);
        if (!na) {
            coru__unlock(&h->lock);
            return -ENOMEM;
        }
        h->a = na;
        h->cap = cap;
    }
    t->heap = h;
    h->a[h->n] = t;
    t->idx = h->n++;
    sift_up(h, t->idx);
    update_next(h);
    coru__unlock(&h->lock);
    return 0;
}

void coru__timer_disarm(struct coru__timer *t)
{
    struct coru__theap *h = t->heap;
    if (!h) return;
    coru__lock(&h->lock);
    if (t->idx != SIZE_MAX) remove_at(h, t->idx);
    coru__unlock(&h->lock);
    t->heap = NULL;
}

int coru__theap_fire(struct coru__theap *h, int64_t now)
{
    if (coru__theap_next(h) > now) return 0;
    int woke = 0;
    coru__lock(&h->lock);
    while (h->n && h->a[0]->when <= now) {
        struct coru__timer *t = h->a[0];
        remove_at(h, 0);
        /* Claim and wake under the lock: the waiter's disarm waits for
         * the lock, so it is alive until we are done with it. */
        if (t->fire) {
            t->fire(t);
            woke++; /* what it did (a cancel queued) wants the engine polled */
        } else if (coru__waiter_claim(t->w)) {
            coru__waiter_wake(t->w, -ETIMEDOUT, -1);
            woke++;
        }
    }
    coru__unlock(&h->lock);
    return woke;
}
