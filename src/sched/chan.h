/* Channel internals shared by chan.c and select.c. */
#ifndef CORU_CHAN_H
#define CORU_CHAN_H

#include <stdbool.h>

#include "sched/lock.h"
#include "sched/waiter.h"

struct coru_chan {
    struct coru__lock lock;
    _Atomic int holder;      /* worker that took the lock last, -1: a
                                plain thread (a hint, relaxed) */
    bool closed;             /* lock */
    bool ext;                /* a plain thread has used it (the deadlock
                                report's hint); lock */
    size_t esz;              /* element size, fixed */
    size_t cap;              /* capacity in elements (0: unbuffered), fixed */
    size_t head, count;      /* ring: oldest element at head; lock */
    struct coru__waitq recvq, sendq; /* lock */
    unsigned char *buf;      /* cap * esz bytes (NULL if cap == 0) */
};

/* With ch->lock held: completes a send or receive if it can without
 * waiting. Returns 0 (and *wake: a claimed waiter to wake with 0 after
 * unlocking, or NULL), -EPIPE (closed; for receive: and drained), or
 * -EAGAIN (it would have to wait). */
int coru__chan_send_locked(struct coru_chan *ch, const void *elem, struct coru__wnode **wake);
int coru__chan_recv_locked(struct coru_chan *ch, void *elem, struct coru__wnode **wake);
/* With ch->lock held: whether an op of this kind would complete now. */
bool coru__chan_ready(struct coru_chan *ch, enum coru_sel_op op);

#endif
