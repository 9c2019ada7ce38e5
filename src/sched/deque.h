/* A bounded lock-free work-stealing deque (Chase-Lev, with the C11 memory
 * orders of Lê, Pop, Cohen, Zappa Nardelli, PPoPP 2013), holding pointers.
 *
 * One owner thread pushes at the bottom; anyone takes from the top.
 *   push   owner only; false when full (the caller moves half elsewhere)
 *   pop    owner only, LIFO end (Lê et al.'s take)
 *   grab   any thread, FIFO end: up to n items from the top, one CAS per
 *          item (the owner uses grab(…,1) to run its queue in FIFO order; a
 *          thief uses it to steal half). A single CAS for several items
 *          would race with pop's CAS-free path; deque.c explains.
 * Capacity is fixed at init (a power of two); items are never NULL.
 */
#ifndef CORU_DEQUE_H
#define CORU_DEQUE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct coru__deque {
    _Atomic(size_t) top __attribute__((aligned(64)));    /* thieves' end */
    _Atomic(size_t) bottom __attribute__((aligned(64))); /* owner's end */
    size_t mask;                                         /* capacity - 1 */
    _Atomic(void *) *buf;                                /* capacity slots */
};

/* capacity: power of two >= 2. Returns 0 or -ENOMEM / -EINVAL. */
int coru__deque_init(struct coru__deque *d, size_t capacity);
void coru__deque_fini(struct coru__deque *d);

/* Owner only. item != NULL. Returns false, changing nothing, when full. */
bool coru__deque_push(struct coru__deque *d, void *item);
/* Owner only. Newest item, or NULL when empty. */
void *coru__deque_pop(struct coru__deque *d);
/* Takes up to n (>= 1) items from the top into out[0..], oldest first.
 * Returns how many (0 when empty). With n > 1 it takes at most half of
 * what it first saw, rounded up, so a thief does not empty a busy owner.
 * Losing a race to another taker is retried, not reported as empty. */
size_t coru__deque_grab(struct coru__deque *d, void **out, size_t n);
/* Approximate number of items (exact when only the owner is active). */
size_t coru__deque_size(const struct coru__deque *d);

#endif
