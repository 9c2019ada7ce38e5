/* The global queue: where coroutines made runnable off the workers (plain
 * threads' spawns and wake-ups) and the overflow of full worker deques
 * go, and where idle workers look.
 *
 * Invariants:
 *   - A growable ring of pointers (gq_buf, gq_cap, gq_head, gq_len), so
 *     that no cold coroutine struct is walked; everything under gq_lock, a
 *     spinlock held for a few loads and stores (and, rarely, the malloc
 *     that grows the ring), never across a system call of its own.
 *   - gq_len is written under gq_lock and read racily elsewhere as a hint
 *     (gq_take's inline test, any_work): a reader that misses an add is
 *     woken by the S2-S3 of whoever added (idle.c).
 *   - A coroutine is in the ring at most once, and leaves it to exactly
 *     one taker (the lock).
 *   - Adding never fails and never drops a coroutine: when the ring
 *     cannot grow (malloc fails), what does not fit goes on the spill
 *     list, linked through co->next (free while a coroutine is runnable
 *     and in no inbox: it is in the global queue instead). gq_len counts
 *     ring and spill list; takers drain the ring first, then the list.
 *     A tail add that finds the ring empty tries to grow it again, for
 *     the list and itself, and moves the list back in (one walk of cold
 *     structs, after a failed malloc only). Order across the two is only
 *     roughly FIFO, and a front add that finds no room ahead in the ring
 *     goes to the front of the list, behind the ring; nothing waits
 *     forever, since every take moves the list forward once the ring is
 *     empty.
 *   - The ring is set up by coru_run before the workers start and freed
 *     after they have all returned (coru__gq_init, coru__gq_fini).
 */
#include <stdlib.h>

#include "fail.h"
#include "sched/lock.h"
#include "sched/rt.h"

/* Caller holds gq_lock. Makes room for n more in the ring; false when
 * it cannot grow (out of memory). */
static bool ring_reserve(size_t len, size_t n)
{
    if (len + n <= coru__rt.gq_cap) return true;
    size_t cap = coru__rt.gq_cap ? coru__rt.gq_cap : 1024;
    while (cap < len + n) cap *= 2;
    struct coru_co **nb = coru__malloc(cap * sizeof *nb);
    if (!nb) return false;
    for (size_t i = 0; i < len; i++) nb[i] = coru__rt.gq_buf[(coru__rt.gq_head + i) % coru__rt.gq_cap];
    free(coru__rt.gq_buf);
    coru__rt.gq_buf = nb;
    coru__rt.gq_cap = cap;
    coru__rt.gq_head = 0;
    return true;
}

/* Caller holds gq_lock: appends to the spill list (front: ahead of it). */
static void spill(struct coru_co **cos, size_t n, bool front)
{
    struct coru_co *h = NULL, *t = NULL;
    for (size_t i = 0; i < n; i++) {
        cos[i]->next = NULL;
        if (t) t->next = cos[i];
        else h = cos[i];
        t = cos[i];
    }
    if (!coru__rt.gq_spill_head) {
        coru__rt.gq_spill_head = h;
        coru__rt.gq_spill_tail = t;
    } else if (front) {
        t->next = coru__rt.gq_spill_head;
        coru__rt.gq_spill_head = h;
    } else {
        coru__rt.gq_spill_tail->next = h;
        coru__rt.gq_spill_tail = t;
    }
    coru__rt.gq_spill_len += n;
}

/* Any thread. Adds n coroutines, in order, at the tail, or
 * (front) ahead of everything queued: work that was already woken and
 * overflowed a FIFO queue must not wait behind a million spawns (timers
 * firing behind a spawner that had filled the queue woke up to 1.4 s
 * late, and the 300,000 stacks they held were alive at once instead of
 * the 80,000 due). */
void coru__gq_add(struct coru_co **cos, size_t n, bool front)
{
    if (n == 0) return;
    coru__lock(&coru__rt.gq_lock);
    size_t len = atomic_load_explicit(&coru__rt.gq_len, memory_order_relaxed);
    size_t ring = len - coru__rt.gq_spill_len;
    if (coru__rt.gq_spill_len && !front && ring == 0 && ring_reserve(0, coru__rt.gq_spill_len + n)) {
        /* Memory again: the list goes back into the ring, in order. */
        coru__rt.gq_head = 0;
        for (struct coru_co *co = coru__rt.gq_spill_head, *nx; co; co = nx) {
            nx = co->next;
            co->next = NULL;
            coru__rt.gq_buf[ring++] = co;
        }
        coru__rt.gq_spill_head = coru__rt.gq_spill_tail = NULL;
        coru__rt.gq_spill_len = 0;
    }
    /* Behind a spill list, a tail add goes after it (FIFO). */
    if ((coru__rt.gq_spill_len && !front) || !ring_reserve(ring, n)) {
        spill(cos, n, front);
    } else {
        size_t at = coru__rt.gq_head + ring;
        if (front) at = coru__rt.gq_head = (coru__rt.gq_head + coru__rt.gq_cap - n) % coru__rt.gq_cap;
        for (size_t i = 0; i < n; i++) coru__rt.gq_buf[(at + i) % coru__rt.gq_cap] = cos[i];
    }
    /* relaxed: the hint is read racily; the lock orders the ring itself */
    atomic_store_explicit(&coru__rt.gq_len, len + n, memory_order_relaxed);
    coru__unlock(&coru__rt.gq_lock);
}

/* Caller holds gq_lock: the oldest queued coroutine, ring first. */
static struct coru_co *pop(void)
{
    size_t ring = atomic_load_explicit(&coru__rt.gq_len, memory_order_relaxed) - coru__rt.gq_spill_len;
    struct coru_co *co;
    if (ring) {
        co = coru__rt.gq_buf[coru__rt.gq_head];
        coru__rt.gq_head = (coru__rt.gq_head + 1) % coru__rt.gq_cap;
    } else {
        co = coru__rt.gq_spill_head;
        coru__rt.gq_spill_head = co->next;
        if (!co->next) coru__rt.gq_spill_tail = NULL;
        co->next = NULL;
        coru__rt.gq_spill_len--;
    }
    atomic_store_explicit(&coru__rt.gq_len, ring + coru__rt.gq_spill_len - (ring ? 1 : 0), memory_order_relaxed);
    return co;
}

/* Takes a fair share of the global queue, at most `most`: returns one
 * coroutine to run and moves the rest of the batch into w's FIFO queue.
 * Worker only; through gq_take (rt.h), which skips the call when the
 * queue looks empty. */
struct coru_co *coru__gq_take(struct coru__worker *w, size_t most)
{
    struct coru_co *batch[DEQUE_CAP / 2];
    coru__lock(&coru__rt.gq_lock);
    size_t len = atomic_load_explicit(&coru__rt.gq_len, memory_order_relaxed);
    size_t n = len / coru__rt.n + 1;
    if (n > DEQUE_CAP / 2) n = DEQUE_CAP / 2;
    if (n > most) n = most;
    size_t room = YQ_CAP - coru__deque_size(&w->yq); /* owner: exact */
    if (n > room + 1) n = room + 1; /* one is returned, the rest pushed */
    if (n > len) n = len;
    /* The ring's part in one pass (the hot path: no spill list), then
     * the rest from the list. */
    size_t ring = len - coru__rt.gq_spill_len, k = n < ring ? n : ring;
    for (size_t i = 0; i < k; i++) batch[i] = coru__rt.gq_buf[(coru__rt.gq_head + i) % coru__rt.gq_cap];
    if (k) coru__rt.gq_head = (coru__rt.gq_head + k) % coru__rt.gq_cap;
    atomic_store_explicit(&coru__rt.gq_len, len - k, memory_order_relaxed);
    for (size_t i = k; i < n; i++) batch[i] = pop();
    coru__unlock(&coru__rt.gq_lock);
    if (!n) return NULL;
    /* Into the FIFO yield queue: they waited longest, and refilling the
     * LIFO work deque would bury what is already there. */
    for (size_t i = 1; i < n; i++) push_local(w, &w->yq, batch[i]);
    return batch[0];
}

void coru__gq_init(void)
{
    coru__lock_init(&coru__rt.gq_lock);
    coru__rt.gq_buf = NULL;
    coru__rt.gq_cap = coru__rt.gq_head = 0;
    coru__rt.gq_spill_head = coru__rt.gq_spill_tail = NULL;
    coru__rt.gq_spill_len = 0;
    atomic_store(&coru__rt.gq_len, 0);
}

/* A run that never started: its coroutines (the main one) are still
 * queued, and end here without running. */
void coru__gq_drop(void)
{
    while (atomic_load(&coru__rt.gq_len)) coru__co_finished(NULL, pop());
}

void coru__gq_fini(void)
{
    free(coru__rt.gq_buf);
    coru__rt.gq_buf = NULL;
}
