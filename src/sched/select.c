/* coru_select: wait on several channel operations, complete exactly one.
 *
 * Invariants:
 *   - All distinct channels of a select are locked together, in address
 *     order, both to find a ready case and to enqueue the nodes, so two
 *     selects never deadlock and no case can become ready unseen between
 *     the check and the enqueue.
 *   - Once parked, the select is claimed by exactly one party (a partner
 *     on one of the channels, close, the timer, or coru_cancel: waiter.h);
 *     that party completes the one case it found, so at most one case
 *     ever takes effect. Afterwards every other node is unlinked, one
 *     channel at a time (no other lock is held), before returning; the
 *     fired case's channel is not touched again (waiter.h, step 4).
 *   - Among the cases ready at once, the choice is uniform: all ready
 *     indices are collected and one is drawn at random.
 */
#include <errno.h>
#include <stdlib.h>

#include "fail.h"
#include "sched/chan.h"

#define SMALL 8

static __thread uint64_t rng_state;

static uint32_t rnd32(void)
{
    uint64_t x = rng_state;
    if (!x) x = (uint64_t)coru__now_ns() | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return (uint32_t)(x >> 16);
}

static int cmp_chan(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (struct coru_chan *const *)a, y = (uintptr_t) * (struct coru_chan *const *)b;
    return x < y ? -1 : x > y;
}

static void lock_all(struct coru_chan **chs, size_t n)
{
    for (size_t i = 0; i < n; i++) coru__lock(&chs[i]->lock);
}

static void unlock_all(struct coru_chan **chs, size_t n)
{
    for (size_t i = n; i > 0; i--) coru__unlock(&chs[i - 1]->lock);
}

/* With every channel locked: completes one ready case chosen uniformly.
 * Returns its index (rc in cases[i].rc, *wake the partner to wake), or -1
 * when none is ready. */
static int fire_ready(struct coru_sel *cases, size_t n, int *ready, struct coru__wnode **wake)
{
    size_t nready = 0;
    for (size_t i = 0; i < n; i++)
        if (cases[i].ch && coru__chan_ready(cases[i].ch, cases[i].op)) ready[nready++] = (int)i;
    while (nready) {
        size_t k = rnd32() % nready;
        int i = ready[k];
        struct coru_sel *c = &cases[i];
        int rc = c->op == CORU_SEL_SEND ? coru__chan_send_locked(c->ch, c->elem, wake)
                                        : coru__chan_recv_locked(c->ch, c->elem, wake);
        if (rc != -EAGAIN) {
            c->rc = rc;
            return i;
        }
        /* Its partner was claimed elsewhere meanwhile: drop it. */
        ready[k] = ready[--nready];
    }
    return -1;
}

int coru_select(struct coru_sel *cases, size_t n, int64_t deadline, int flags)
{
    if ((!cases && n) || n > 1024 || (flags & ~CORU_SEL_DEFAULT)) return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (cases[i].op != CORU_SEL_SEND && cases[i].op != CORU_SEL_RECV) return -EINVAL;
        if (cases[i].ch && !cases[i].elem) return -EINVAL;
    }
    bool nonblock = flags & CORU_SEL_DEFAULT;
    if (!nonblock && coru__gen_depth > 0) return -EPERM;

    struct coru_chan *chs_small[SMALL];
    int ready_small[SMALL];
    struct coru__wnode nodes_small[SMALL];
    struct coru_chan **chs = chs_small;
    int *ready = ready_small;
    struct coru__wnode *nodes = nodes_small;
    if (n > SMALL) {
        chs = coru__malloc(n * sizeof *chs);
        ready = coru__malloc(n * sizeof *ready);
        nodes = coru__malloc(n * sizeof *nodes);
        if (!chs || !ready || !nodes) {
            free(chs);
            free(ready);
            free(nodes);
            return -ENOMEM;
        }
    }
    size_t nch = 0;
    for (size_t i = 0; i < n; i++)
        if (cases[i].ch) chs[nch++] = cases[i].ch;
    qsort(chs, nch, sizeof *chs, cmp_chan);
    size_t u = 0; /* dedupe: lock each channel once */
    for (size_t i = 0; i < nch; i++)
        if (!u || chs[u - 1] != chs[i]) chs[u++] = chs[i];
    nch = u;

    int rc;
    struct coru__wnode *wake = NULL;
    lock_all(chs, nch);
    int fired = fire_ready(cases, n, ready, &wake);
    if (fired >= 0) {
        unlock_all(chs, nch);
        if (wake) coru__waiter_wake(wake->w, 0, wake->idx);
        rc = fired;
        goto out;
    }
    if (nonblock) {
        unlock_all(chs, nch);
        rc = -EAGAIN;
        goto out;
    }
    struct coru__waiter w;
    if ((rc = coru__waiter_init(&w))) { /* -ECANCELED wins over -ETIMEDOUT */
        unlock_all(chs, nch);
        goto out;
    }
    if (coru__dl_passed(deadline)) {
        coru__waiter_abort(&w);
        unlock_all(chs, nch);
        rc = -ETIMEDOUT;
        goto out;
    }
    const void *first = NULL;
    bool ext = false;
    for (size_t i = 0; i < n; i++)
        if (cases[i].ch) {
            if (!first) first = cases[i].ch;
            ext |= cases[i].ch->ext;
        }
    coru__waiter_on(&w, CORU__W_SELECT, first, (int64_t)n, ext);
    for (size_t i = 0; i < n; i++) {
        coru__wnode_init(&nodes[i], &w, cases[i].elem, (int)i);
        if (!cases[i].ch) continue;
        coru__waitq_push(cases[i].op == CORU_SEL_SEND ? &cases[i].ch->sendq : &cases[i].ch->recvq, &nodes[i]);
    }
    unlock_all(chs, nch);
    rc = coru__waiter_block(&w, deadline);
    for (size_t i = 0; i < n; i++) {
        struct coru_chan *ch = cases[i].ch;
        if (!ch) continue;
        coru__wnode_done(&ch->lock, cases[i].op == CORU_SEL_SEND ? &ch->sendq : &ch->recvq, &nodes[i]);
    }
    if (w.fired >= 0) {
        cases[w.fired].rc = rc; /* 0, or -EPIPE from close */
        rc = w.fired;
    }
out:
    if (n > SMALL) {
        free(chs);
        free(ready);
        free(nodes);
    }
    return rc;
}
