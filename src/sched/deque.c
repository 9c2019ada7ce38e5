/* Bounded Chase-Lev work-stealing deque of non-NULL pointers, with the C11
 * memory orders of Lê, Pop, Cohen, Zappa Nardelli, "Correct and efficient
 * work-stealing for weak memory models" (PPoPP 2013). push and pop are the
 * paper's push and take; grab is its steal, repeated up to n times.
 *
 * Invariants:
 *  1. Ownership map.
 *       top       written only by CAS (thieves in grab, the owner in pop
 *                 when it takes the last item, the owner in grab); it only
 *                 ever grows. Read by everyone.
 *       bottom    written only by the owner (push, pop). Read by everyone.
 *       buf[i]    written only by the owner, in push, and only at index
 *                 bottom. Read by the owner (pop) and by any grab.
 *       mask, buf written by init/fini only, while no other thread can see
 *                 the deque.
 *     Indices top and bottom are free-running size_t counters (64 bits do
 *     not wrap in practice); slot of index i is buf[i & mask]. The items are
 *     the indices [top, bottom). Differences are taken as ptrdiff_t because
 *     pop lowers bottom to top - 1 for a moment when the deque is empty.
 *  2. Outside pop, top <= bottom <= top + capacity. pop may briefly store
 *     bottom = top - 1 and restores it before returning.
 *  3. Each item is taken exactly once. An item leaves the deque either by a
 *     CAS that moves top past its index (grab, or pop on the last item), or
 *     by pop without a CAS when, after lowering bottom to its index b and a
 *     seq_cst fence, pop still reads top < b. Take a grab that read top = t,
 *     then (after its fence) bottom > t, and whose CAS t -> t+1 won; could
 *     pop have taken index t without a CAS? That pop stored bottom = t, ran
 *     its fence and read top < t. The two seq_cst fences are totally
 *     ordered. If the grab's fence came first, pop's later top read sees t
 *     or newer, never < t. If pop's fence came first, the grab's bottom read
 *     sees bottom = t or a later store, so bottom > t means the owner pushed
 *     a new item at index t afterwards, and the grab (reading the slot after
 *     that acquire) takes the new item, not the popped one. When pop and a
 *     grab both want the last item (top == b) both CAS top from b to b + 1
 *     and exactly one wins. top never goes back, so a CAS with a stale top
 *     simply fails (no ABA).
 *  4. A grab returns a value only if it read the slot BEFORE winning the
 *     CAS: once top has moved past an index, push may reuse that slot at
 *     once (the buffer is bounded and never resized). A grab that loses the
 *     CAS may have read a slot push was overwriting; it discards the value.
 *  5. The full check in push reads top with acquire. If push sees
 *     bottom - top < capacity, the item that used to live in slot
 *     bottom & mask (index bottom - capacity) has been taken; the acquire
 *     reads the CAS that took it, which the taker sequenced after its read
 *     of that slot, so that read happens before push's overwrite and cannot
 *     return the new item. (If the owner took it in pop without a CAS, the
 *     read and the overwrite are in the same thread.)
 *
 * Why grab(n) takes items one CAS at a time: a single CAS from t to t + k
 * for k > 1 is not safe with the paper's pop, which takes index j without
 * any CAS whenever it reads top < j. Example, under plain sequential
 * consistency: items 0..3, a thief reads top 0 and bottom 4 and picks k = 2;
 * the owner pops 3, 2 and then 1, each time reading top = 0 (no CAS); the
 * thief's CAS 0 -> 2 now succeeds and item 1 is taken twice. (Go's runqgrab
 * can take half with one CAS only because its owner also takes with a CAS
 * on the same end.) So grab repeats the paper's one-item steal, each step
 * proven on its own; the half limit comes from the size the first steal
 * saw. A thief stealing half pays one CAS per item, all on top's line.
 *
 * Why the owner may call grab(d, out, 1) to take in FIFO order: grab never
 * assumes its caller is not the owner. It is an ordinary steal that happens
 * to run on the owner's thread, where the owner is, by program order, not
 * inside push or pop at the same time; the protocol only gets easier (the
 * slot it reads was written by the same thread). Against real thieves it
 * races exactly like one more thief.
 */
#include "fail.h"
#include "sched/deque.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "common.h"

int coru__deque_init(struct coru__deque *d, size_t capacity)
{
    if (capacity < 2 || (capacity & (capacity - 1)) != 0) return -EINVAL;
    /* Sizes are compared as ptrdiff_t, so the capacity must fit in one. */
    if (capacity > PTRDIFF_MAX / sizeof(_Atomic(void *))) return -EINVAL;

    _Atomic(void *) *buf = coru__malloc(capacity * sizeof *buf);
    if (buf == NULL) return -ENOMEM;
    for (size_t i = 0; i < capacity; i++) atomic_init(&buf[i], NULL);

    atomic_init(&d->top, 0);
    atomic_init(&d->bottom, 0);
    d->mask = capacity - 1;
    d->buf = buf;
    return 0;
}

/* Caller: the owner, once no other thread can reach the deque. Items still
 * inside are dropped (they are only pointers). */
void coru__deque_fini(struct coru__deque *d)
{
    free(d->buf);
    d->buf = NULL;
    d->mask = 0;
}

/* Caller: the owner only. Returns false, changing nothing, when full. */
bool coru__deque_push(struct coru__deque *d, void *item)
{
    CORU_ASSERT(item != NULL);

    /* relaxed: bottom is written only by this thread. */
    size_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    /* acquire: pairs with the seq_cst CAS on top in grab/pop, so the taker's
     * read of the slot we may reuse happens before our store to it (inv. 5). */
    size_t t = atomic_load_explicit(&d->top, memory_order_acquire);
    if (b - t > d->mask) return false;

    /* relaxed: published by the release fence below; see inv. 4 for the
     * readers that race with this store and discard what they read. */
    atomic_store_explicit(&d->buf[b & d->mask], item, memory_order_relaxed);
    /* release: the slot store above (and everything the owner wrote into
     * the item before pushing it) is visible to a thief whose acquire load
     * of bottom reads this value. Lê et al. use a release fence plus a
     * relaxed store; a release store orders the same (it is a plain mov on
     * x86-64) and, unlike a fence, ThreadSanitizer sees it. */
    atomic_store_explicit(&d->bottom, b + 1, memory_order_release);
    return true;
}

/* Caller: the owner only. Takes the newest item (LIFO), or returns NULL
 * when empty (including when a grab won the race for the last item). */
void *coru__deque_pop(struct coru__deque *d)
{
    /* relaxed: bottom is ours. */
    size_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    /* Fast empty check without the fence. relaxed: top never decreases and
     * top <= bottom outside pop (inv. 2), so even a stale top equal to b
     * proves the real top is b. A stale smaller top just takes the slow
     * path, which decides correctly. */
    if (atomic_load_explicit(&d->top, memory_order_relaxed) == b) return NULL;

    b--;
    /* relaxed: ordered before the top load by the seq_cst fence below. */
    atomic_store_explicit(&d->bottom, b, memory_order_release); /* release: keeps
        grab's acquire of bottom synchronising with earlier pushes (a
        relaxed store would end their release sequence) */
    /* seq_cst fence: forbids the top load below from moving before the
     * bottom store above (StoreLoad); pairs with the seq_cst fence in grab,
     * between its top and bottom loads (inv. 3). */
    atomic_thread_fence(memory_order_seq_cst);
    /* relaxed: the fence above orders it; the slot we read next was written
     * by this thread, so no acquire is needed. */
    size_t t = atomic_load_explicit(&d->top, memory_order_relaxed);

    void *item = NULL;
    if ((ptrdiff_t)(b - t) >= 0) {
        /* relaxed: we wrote this slot ourselves. */
        item = atomic_load_explicit(&d->buf[b & d->mask], memory_order_relaxed);
        if (b != t) return item; /* more than one left: no thief can reach b */

        /* Last item: race the thieves for it. seq_cst on success: it is one
         * of the CASes on top that grab's fence argument relies on (inv. 3);
         * relaxed on failure: we learn only that a thief won. */
        if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1,
                memory_order_seq_cst, memory_order_relaxed))
            item = NULL;
    }
    /* The deque is now empty with top == b + 1 (moved by our CAS, a
     * thief's, or already there): restore bottom to match. relaxed: a grab
     * that reads it finds bottom == top and takes nothing; one that read
     * the lowered bottom backed off, which was right since index b is
     * taken either way. */
    atomic_store_explicit(&d->bottom, b + 1, memory_order_release); /* release: as above */
    return item;
}

/* One steal of the paper. Returns the size it saw (bottom - top) on its
 * last attempt: <= 0 means empty and *item is untouched; > 0 means the
 * oldest item was taken into *item. Retries when it loses the CAS, since a
 * lost CAS means someone else took an item, not that the deque is empty
 * (returning "empty" would make the owner's FIFO take report a non-empty
 * queue as empty). Lock-free: each retry follows another thread's success. */
static ptrdiff_t steal_one(struct coru__deque *d, void **item)
{
    for (;;) {
        /* acquire: pairs with the seq_cst CAS of the previous taker, so our
         * view of the deque is at least as new as that take. */
        size_t t = atomic_load_explicit(&d->top, memory_order_acquire);
        /* seq_cst fence: forbids the bottom load below from moving before
         * the top load above; pairs with the seq_cst fence in pop, so a pop
         * that took index t without a CAS is seen here (inv. 3). */
        atomic_thread_fence(memory_order_seq_cst);
        /* acquire: pairs with the release fence in push, making the slot
         * stores for indices below this bottom visible. */
        size_t b = atomic_load_explicit(&d->bottom, memory_order_acquire);
        ptrdiff_t size = (ptrdiff_t)(b - t);
        if (size <= 0) return size;

        /* relaxed: ordered after the bottom acquire; must come before the
         * CAS (inv. 4). If the CAS fails the value may be garbage and is
         * dropped. */
        void *x = atomic_load_explicit(&d->buf[t & d->mask], memory_order_relaxed);
        /* seq_cst on success: orders against pop's fence and its last-item
         * CAS (inv. 3), and releases our slot read to push's acquire load of
         * top (inv. 5). relaxed on failure: we start over. */
        if (atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1,
                memory_order_seq_cst, memory_order_relaxed)) {
            *item = x;
            return size;
        }
    }
}

/* Caller: any thread, including the owner (see the top of the file). The
 * half limit comes from the size seen by the first successful steal, so a
 * grab never needs a separate look (and its extra fence). */
size_t coru__deque_grab(struct coru__deque *d, void **out, size_t n)
{
    CORU_ASSERT(n >= 1);

    ptrdiff_t size = steal_one(d, &out[0]);
    if (size <= 0) return 0;
    size_t half = (size_t)size - (size_t)size / 2;
    if (n > half) n = half;

    size_t got = 1;
    while (got < n && steal_one(d, &out[got]) > 0) got++;
    return got;
}

/* Caller: any thread. Exact only while no other thread is active. */
size_t coru__deque_size(const struct coru__deque *d)
{
    /* relaxed: an estimate. Read top first: it only grows, so an older top
     * can only overstate the size, which the clamp below bounds. */
    size_t t = atomic_load_explicit(&d->top, memory_order_relaxed);
    size_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    ptrdiff_t size = (ptrdiff_t)(b - t);
    if (size <= 0) return 0;
    if ((size_t)size > d->mask + 1) return d->mask + 1;
    return (size_t)size;
}
