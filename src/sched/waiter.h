/* A waiter: one blocked party (a parked coroutine, or a plain thread on a
 * futex) in a wait queue. It lives on the waiter's own stack for the
 * duration of the wait.
 *
 * Protocol: the waiter fills the record, enqueues it under the queue
 * owner's lock and calls coru__waiter_block after unlocking. Exactly one
 * waker dequeues it (under the same lock), writes `code` (and whatever
 * data the wait exchanges) and then calls coru__waiter_wake; after that
 * call the waker must not touch the record, which may be gone.
 */
#ifndef CORU_WAITER_H
#define CORU_WAITER_H

#include <stdatomic.h>
#include <stdint.h>

#include "sched/sched.h"

struct coru__waiter {
    struct coru__waiter *next, *prev; /* queue links; owner: queue's lock */
    struct coru_co *co;               /* NULL: a plain thread */
    _Atomic uint32_t futex;           /* threads: 0 waiting, 1 woken */
    int code;                         /* result for the waiter, set by the waker */
    void *data;                       /* element buffer being exchanged */
};

struct coru__waitq {
    struct coru__waiter *head, *tail;
};

/* Prepares w for the current context: a coroutine (parking) or a plain
 * thread. Returns 0, or -EPERM inside a generator body. Call before
 * enqueueing (it begins the park, step 1). */
int coru__waiter_init(struct coru__waiter *w, void *data);
/* Blocks until woken; returns w->code. */
int coru__waiter_block(struct coru__waiter *w);
/* Wakes w with code. */
void coru__waiter_wake(struct coru__waiter *w, int code);

static inline void coru__waitq_push(struct coru__waitq *q, struct coru__waiter *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
}

static inline struct coru__waiter *coru__waitq_pop(struct coru__waitq *q)
{
    struct coru__waiter *w = q->head;
    if (!w) return NULL;
    q->head = w->next;
    if (q->head)
        q->head->prev = NULL;
    else
        q->tail = NULL;
    w->next = w->prev = NULL;
    return w;
}

static inline void coru__waitq_remove(struct coru__waitq *q, struct coru__waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->next = w->prev = NULL;
}

#endif
