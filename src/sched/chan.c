/* Channels: buffered and unbuffered, many senders and receivers, from
 * coroutines on any worker or from plain threads; select lives in
 * select.c and uses the locked operations exported here (chan.h).
 *
 * Invariants (all under ch->lock):
 *   - A claimable receiver is queued only while the buffer is empty, and
 *     a claimable sender only while it is full (or cap == 0). Nodes of
 *     waiters already claimed elsewhere (a select that fired on another
 *     channel, a timeout, a cancel) may linger until their owner unlinks
 *     them; every dequeue skips them (coru__waitq_claim).
 *   - closed => no new node is enqueued; close claimed every waiter it
 *     found and wakes them with -EPIPE.
 *   - Each element is copied once into the receiver's memory: a sender
 *     that finds a parked receiver writes straight into its buffer; a
 *     receiver that finds a parked sender (unbuffered) reads straight
 *     from the sender's memory. A buffered receiver that frees a slot
 *     refills it from the oldest parked sender, so FIFO order holds.
 *   - The claimed waiter is woken after the lock is dropped; it cannot
 *     return (and free the node) before that wake, and it runs next on
 *     the waker's worker (run-next slot).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "sched/chan.h"

int coru_chan_create(coru_chan **out, size_t elem_size, size_t capacity)
{
    if (!out || elem_size == 0 || elem_size > 65536 || capacity > ((size_t)1 << 31)) return -EINVAL;
    struct coru_chan *ch = coru__calloc(1, sizeof *ch);
    if (!ch) return -ENOMEM;
    if (capacity) {
        ch->buf = coru__malloc(elem_size * capacity);
        if (!ch->buf) {
            free(ch);
            return -ENOMEM;
        }
    }
    coru__lock_init(&ch->lock);
    atomic_init(&ch->holder, -1);
    ch->esz = elem_size;
    ch->cap = capacity;
    *out = ch;
    return 0;
}

void coru_chan_destroy(coru_chan *ch)
{
    if (!ch) return;
    if (coru__waitq_ready(&ch->recvq) || coru__waitq_ready(&ch->sendq))
        CORU_PANIC("channel destroyed while coroutines wait on it");
    free(ch->buf);
    free(ch);
}

static inline unsigned char *slot(struct coru_chan *ch, size_t i)
{
    return ch->buf + ((ch->head + i) % ch->cap) * ch->esz;
}

int coru__chan_send_locked(struct coru_chan *ch, const void *elem, struct coru__wnode **wake)
{
    *wake = NULL;
    if (ch->closed) return -EPIPE;
    struct coru__wnode *r = coru__waitq_claim(&ch->recvq);
    if (r) {
        memcpy(r->data, elem, ch->esz);
        *wake = r;
        return 0;
    }
    if (ch->count < ch->cap) {
        memcpy(slot(ch, ch->count), elem, ch->esz);
        ch->count++;
        return 0;
    }
    return -EAGAIN;
}

int coru__chan_recv_locked(struct coru_chan *ch, void *elem, struct coru__wnode **wake)
{
    *wake = NULL;
    if (ch->count) {
        memcpy(elem, slot(ch, 0), ch->esz);
        ch->head = (ch->head + 1) % ch->cap;
        ch->count--;
        struct coru__wnode *s = coru__waitq_claim(&ch->sendq);
        if (s) {
            memcpy(slot(ch, ch->count), s->data, ch->esz);
            ch->count++;
            *wake = s;
        }
        return 0;
    }
    struct coru__wnode *s = coru__waitq_claim(&ch->sendq);
    if (s) {
        memcpy(elem, s->data, ch->esz);
        *wake = s;
        return 0;
    }
    return ch->closed ? -EPIPE : -EAGAIN;
}

bool coru__chan_ready(struct coru_chan *ch, enum coru_sel_op op)
{
    if (ch->closed) return true;
    if (op == CORU_SEL_SEND) return ch->count < ch->cap || coru__waitq_ready(&ch->recvq);
    return ch->count > 0 || coru__waitq_ready(&ch->sendq);
}

/* Takes ch->lock. Found taken by another worker, the caller (a coroutine
 * that may switch: not a try operation) first moves to that worker:
 * two workers taking turns at one channel's lock pay a cache-line
 * transfer (and a spin) per message, while its producers and consumers
 * gathered on one worker pay none (B5 mpmc: 68 ns a message with both
 * workers at the lock, 30 ns gathered; one worker alone, 19 ns). What
 * gathers there is only what contends: a consumer that computes between
 * receives rarely finds the lock taken, and stealing spreads coroutines
 * out again when the other worker is idle. relaxed: `holder` is a hint;
 * the lock orders the channel. */
static void chan_lock(struct coru_chan *ch, bool may_move)
{
    int me = coru_worker();
    if (!coru__trylock(&ch->lock)) {
        int h = atomic_load_explicit(&ch->holder, memory_order_relaxed);
        if (may_move && me >= 0 && h >= 0 && h != me && coru__migrate((unsigned)h)) me = coru_worker();
        coru__lock(&ch->lock);
    }
    if (atomic_load_explicit(&ch->holder, memory_order_relaxed) != me)
        atomic_store_explicit(&ch->holder, me, memory_order_relaxed);
    if (me < 0) ch->ext = true;
}

/* One send or receive: the locked fast path, else park on the channel. */
static int op(struct coru_chan *ch, enum coru_sel_op kind, void *elem, int64_t deadline, bool try_only)
{
    if (!ch || !elem) return -EINVAL;
    if (!try_only && coru__gen_depth > 0) return -EPERM;
    struct coru__wnode *wake;
    chan_lock(ch, !try_only);
    int rc = kind == CORU_SEL_SEND ? coru__chan_send_locked(ch, elem, &wake)
                                   : coru__chan_recv_locked(ch, elem, &wake);
    if (rc != -EAGAIN || try_only) {
        coru__unlock(&ch->lock);
        if (wake) coru__waiter_wake(wake->w, 0, wake->idx);
        return rc;
    }
    struct coru__waiter w;
    if ((rc = coru__waiter_init(&w))) { /* -ECANCELED wins over -ETIMEDOUT */
        coru__unlock(&ch->lock);
        return rc;
    }
    if (coru__dl_passed(deadline)) {
        coru__waiter_abort(&w);
        coru__unlock(&ch->lock);
        return -ETIMEDOUT;
    }
    coru__waiter_on(&w, kind == CORU_SEL_SEND ? CORU__W_CHAN_SEND : CORU__W_CHAN_RECV, ch, 0, ch->ext);
    struct coru__wnode node;
    coru__wnode_init(&node, &w, elem, 0);
    struct coru__waitq *q = kind == CORU_SEL_SEND ? &ch->sendq : &ch->recvq;
    coru__waitq_push(q, &node);
    coru__unlock(&ch->lock);
    rc = coru__waiter_block(&w, deadline);
    coru__wnode_done(&ch->lock, q, &node);
    return rc;
}

int coru_chan_send(coru_chan *ch, const void *elem)
{
    return op(ch, CORU_SEL_SEND, (void *)elem, CORU_NEVER, false);
}

int coru_chan_send_dl(coru_chan *ch, const void *elem, int64_t deadline)
{
    return op(ch, CORU_SEL_SEND, (void *)elem, deadline, false);
}

int coru_chan_try_send(coru_chan *ch, const void *elem)
{
    return op(ch, CORU_SEL_SEND, (void *)elem, CORU_NEVER, true);
}

int coru_chan_recv(coru_chan *ch, void *elem)
{
    return op(ch, CORU_SEL_RECV, elem, CORU_NEVER, false);
}

int coru_chan_recv_dl(coru_chan *ch, void *elem, int64_t deadline)
{
    return op(ch, CORU_SEL_RECV, elem, deadline, false);
}

int coru_chan_try_recv(coru_chan *ch, void *elem)
{
    return op(ch, CORU_SEL_RECV, elem, CORU_NEVER, true);
}

int coru_chan_close(coru_chan *ch)
{
    if (!ch) return -EINVAL;
    coru__lock(&ch->lock);
    if (!coru__co_self()) ch->ext = true; /* a plain thread has used it */
    if (ch->closed) {
        coru__unlock(&ch->lock);
        return -EPIPE;
    }
    ch->closed = true;
    /* Claim every parked party under the lock (their nodes stay valid
     * until we wake them), collect them through the now free links, and
     * wake them after the lock. */
    struct coru__wnode *list = NULL, *n;
    while ((n = coru__waitq_claim(&ch->recvq)) || (n = coru__waitq_claim(&ch->sendq))) {
        n->next = list;
        list = n;
    }
    coru__unlock(&ch->lock);
    while (list) {
        n = list;
        list = n->next;
        coru__waiter_wake(n->w, -EPIPE, n->idx);
    }
    return 0;
}
