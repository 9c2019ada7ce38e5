/* Channels: buffered and unbuffered, many senders and receivers, from
 * coroutines on any worker or from plain threads.
 *
 * Invariants (all under ch->lock):
 *   - recvq non-empty => the buffer is empty (a receiver only waits when
 *     there is nothing to take) and sendq is empty.
 *   - sendq non-empty => the buffer is full (or cap == 0) and recvq is
 *     empty.
 *   - closed => no new waiter is enqueued; close emptied both queues.
 *   - Each element is copied once into the receiver's memory: a sender
 *     that finds a parked receiver writes straight into its buffer; a
 *     receiver that finds a parked sender (unbuffered) reads straight
 *     from the sender's memory. A buffered receiver that frees a slot
 *     refills it from the oldest parked sender, so FIFO order holds.
 *   - A waiter is dequeued by exactly one party (under the lock), which
 *     then wakes it once (waiter.h); the woken coroutine runs next on the
 *     waker's worker (run-next slot).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sched/lock.h"
#include "sched/waiter.h"

struct coru_chan {
    struct coru__lock lock;
    bool closed;
    size_t esz;              /* element size */
    size_t cap;              /* capacity in elements (0: unbuffered) */
    size_t head, count;      /* ring: oldest element at head */
    struct coru__waitq recvq, sendq;
    unsigned char *buf;      /* cap * esz bytes (NULL if cap == 0) */
};

int coru_chan_create(coru_chan **out, size_t elem_size, size_t capacity)
{
    if (!out || elem_size == 0 || elem_size > 65536 || capacity > ((size_t)1 << 31)) return -EINVAL;
    struct coru_chan *ch = calloc(1, sizeof *ch);
    if (!ch) return -ENOMEM;
    if (capacity) {
        ch->buf = malloc(elem_size * capacity);
        if (!ch->buf) {
            free(ch);
            return -ENOMEM;
        }
    }
    coru__lock_init(&ch->lock);
    ch->esz = elem_size;
    ch->cap = capacity;
    *out = ch;
    return 0;
}

void coru_chan_destroy(coru_chan *ch)
{
    if (!ch) return;
    if (ch->recvq.head || ch->sendq.head) CORU_PANIC("channel destroyed while coroutines wait on it");
    free(ch->buf);
    free(ch);
}

static inline unsigned char *slot(struct coru_chan *ch, size_t i)
{
    return ch->buf + ((ch->head + i) % ch->cap) * ch->esz;
}

int coru_chan_send(coru_chan *ch, const void *elem)
{
    if (!ch || !elem) return -EINVAL;
    if (coru__gen_depth > 0) return -EPERM;
    coru__lock(&ch->lock);
    if (ch->closed) {
        coru__unlock(&ch->lock);
        return -EPIPE;
    }
    struct coru__waiter *r = coru__waitq_pop(&ch->recvq);
    if (r) {
        memcpy(r->data, elem, ch->esz);
        coru__unlock(&ch->lock);
        coru__waiter_wake(r, 0);
        return 0;
    }
    if (ch->count < ch->cap) {
        memcpy(slot(ch, ch->count), elem, ch->esz);
        ch->count++;
        coru__unlock(&ch->lock);
        return 0;
    }
    struct coru__waiter w;
    int rc = coru__waiter_init(&w, (void *)elem);
    if (rc) {
        coru__unlock(&ch->lock);
        return rc;
    }
    coru__waitq_push(&ch->sendq, &w);
    coru__unlock(&ch->lock);
    return coru__waiter_block(&w);
}

int coru_chan_recv(coru_chan *ch, void *elem)
{
    if (!ch || !elem) return -EINVAL;
    if (coru__gen_depth > 0) return -EPERM;
    coru__lock(&ch->lock);
    if (ch->count) {
        memcpy(elem, slot(ch, 0), ch->esz);
        ch->head = (ch->head + 1) % ch->cap;
        ch->count--;
        struct coru__waiter *s = coru__waitq_pop(&ch->sendq);
        if (s) {
            memcpy(slot(ch, ch->count), s->data, ch->esz);
            ch->count++;
        }
        coru__unlock(&ch->lock);
        if (s) coru__waiter_wake(s, 0);
        return 0;
    }
    struct coru__waiter *s = coru__waitq_pop(&ch->sendq);
    if (s) {
        memcpy(elem, s->data, ch->esz);
        coru__unlock(&ch->lock);
        coru__waiter_wake(s, 0);
        return 0;
    }
    if (ch->closed) {
        coru__unlock(&ch->lock);
        return -EPIPE;
    }
    struct coru__waiter w;
    int rc = coru__waiter_init(&w, elem);
    if (rc) {
        coru__unlock(&ch->lock);
        return rc;
    }
    coru__waitq_push(&ch->recvq, &w);
    coru__unlock(&ch->lock);
    return coru__waiter_block(&w);
}

int coru_chan_close(coru_chan *ch)
{
    if (!ch) return -EINVAL;
    coru__lock(&ch->lock);
    if (ch->closed) {
        coru__unlock(&ch->lock);
        return -EPIPE;
    }
    ch->closed = true;
    /* Detach both queues under the lock, wake after it. */
    struct coru__waiter *rs = ch->recvq.head, *ss = ch->sendq.head;
    ch->recvq.head = ch->recvq.tail = NULL;
    ch->sendq.head = ch->sendq.tail = NULL;
    coru__unlock(&ch->lock);
    while (rs) {
        struct coru__waiter *nx = rs->next;
        coru__waiter_wake(rs, -EPIPE);
        rs = nx;
    }
    while (ss) {
        struct coru__waiter *nx = ss->next;
        coru__waiter_wake(ss, -EPIPE);
        ss = nx;
    }
    return 0;
}
