/* TCP accept on io_uring through one multishot accept per listener
 * (IORING_ACCEPT_MULTISHOT, Linux 5.19; probed, see uring.c). One SQE
 * then accepts every connection that arrives, instead of one SQE, one
 * poll arming and one park per connection. The accepted fds go to parked
 * acceptors, or wait in the listener's queue for the next coru_tcp_accept.
 *
 * State: a struct coru__msa per listener, made at its first accept and
 * hung on its fd state (fdstate.msa, under fdstate.lock). Everything in
 * it is guarded by msa.lock, except `next` (the owner engine's armed list,
 * owner only) and `cancel_next` (that engine's inbox, cancel_lock).
 *
 * Invariants:
 *   - At most one multishot is armed per listener, on the ring of `eng`
 *     (NULL: none). Only that ring's owner handles its CQEs and clears
 *     `eng`, when the last CQE (no IORING_CQE_F_MORE) arrives. While
 *     armed it counts in eng->head.ops_inflight and sits in eng->msa_armed.
 *   - No fd is lost: each accepted fd goes to exactly one claimed waiter
 *     (waiter.h protocol, msa.lock as the queue lock) or into `q`, which
 *     grows as needed. At Q_HIGH queued fds the owner cancels the
 *     multishot, so the kernel's backlog, not our queue, holds the
 *     surplus until acceptors catch up; the next accept re-arms.
 *   - Errors (-EMFILE...) end the multishot. The error goes to one parked
 *     acceptor, or is kept for the next accept; either way nothing
 *     re-arms until an acceptor asks again, so an out-of-fds listener
 *     cannot spin.
 *   - Close (coru__msa_close): the msa is detached from the fd state, its
 *     waiters get -EBADF and its queued fds are closed. If a multishot is
 *     still armed, the closer posts a cancel to the owner (inbox, as for
 *     coroutine cancels) while holding msa.lock, so the owner, which
 *     needs that lock to finish the msa, cannot destroy its engine before
 *     the closer's wake returns. The owner frees the msa once the last
 *     CQE has come and no posted cancel is pending.
 *   - End of a run: each worker, before its engine goes away, cancels the
 *     multishots armed on its ring and drains their last CQEs
 *     (coru__io_quiesce). The msa stays with the listener (with any
 *     queued fds) for a later run.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fail.h"
#include "io/io.h"
#include "sched/sched.h"
#include "sched/waiter.h"

#define Q_HIGH 64 /* queued fds at which the multishot is paused */
#define Q_INIT (2 * Q_HIGH) /* the queue's room from the start */

struct coru__msa {
    struct coru__engine_op base; /* user_data of the multishot SQE */
    struct coru__lock lock;
    int lfd;
    struct coru__engine *eng;    /* ring it is armed on; NULL: not armed */
    bool cancel_sent;            /* a cancel of the armed multishot is
                                    queued on the owner's ring (at most
                                    one per multishot; cancel_on_owner) */
    bool closing;                /* the listener was closed */
    bool cancel_posted;          /* in eng's inbox, not yet drained */
    int err;                     /* an error no acceptor took yet */
    int *q;                      /* accepted fds no acceptor took yet */
    size_t qhead, qlen, qcap;
    struct coru__waitq waiters;  /* parked acceptors; node data: int * */
    struct coru__msa *next;      /* eng->msa_armed list; owner */
    struct coru__msa *cancel_next; /* eng->msa_cancel_head; cancel_lock */
};

static void msa_complete(struct coru__engine_op *op, int res);

static void q_push(struct coru__msa *m, int fd)
{
    if (m->qlen == m->qcap) {
        size_t cap = m->qcap ? 2 * m->qcap : 16;
        int *nq = coru__malloc(cap * sizeof *nq);
        if (!nq) {
            /* The queue holds Q_INIT from the start (msa_of), and the
             * multishot is paused at Q_HIGH: growing means CQEs kept
             * coming after the pause was asked for. Without memory for
             * them the connection is closed (its client sees a reset and
             * may retry), which beats aborting every other one; said on
             * stderr, never silently. */
            static const char msg[] = "coru: out of memory queueing an accepted connection: closed it\n";
            if (write(2, msg, sizeof msg - 1) < 0) { /* nothing more to do */
            }
            close(fd);
            return;
        }
        for (size_t i = 0; i < m->qlen; i++) nq[i] = m->q[(m->qhead + i) % m->qcap];
        free(m->q);
        m->q = nq;
        m->qcap = cap;
        m->qhead = 0;
    }
    m->q[(m->qhead + m->qlen++) % m->qcap] = fd;
}

static int q_pop(struct coru__msa *m)
{
    int fd = m->q[m->qhead];
    m->qhead = (m->qhead + 1) % m->qcap;
    m->qlen--;
    return fd;
}

static void msa_free(struct coru__msa *m)
{
    while (m->qlen) close(q_pop(m));
    free(m->q);
    free(m);
}

/* Hands fd or an error (res < 0) to the first parked acceptor that can
 * still be claimed. msa.lock held. false: nobody waits. */
static bool give(struct coru__msa *m, int res)
{
    struct coru__wnode *n = coru__waitq_claim(&m->waiters);
    if (!n) return false;
    *(int *)n->data = res;
    coru__waiter_wake(n->w, 0, n->idx);
    return true;
}

/* Queues the multishot SQE on e's ring. Owner of e; msa.lock held. */
static void arm(struct coru__msa *m, struct coru__engine *e)
{
    struct io_uring_sqe *sqe = coru__uring_get_sqe(e);
    io_uring_prep_multishot_accept(sqe, m->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, &m->base);
    m->eng = e;
    m->next = e->msa_armed;
    e->msa_armed = m;
    e->head.ops_inflight++;
}

/* Queues a cancel of m's multishot on its owner's ring, once: for a
 * long queue or an error, a closed listener, or the end of a run. Owner
 * only; msa.lock held. */
static void cancel_on_owner(struct coru__msa *m)
{
    if (m->cancel_sent) return;
    m->cancel_sent = true;
    struct io_uring_sqe *sqe = coru__uring_get_sqe(m->eng);
    io_uring_prep_cancel(sqe, &m->base, 0);
    io_uring_sqe_set_data64(sqe, CORU__TAG_CANCEL);
}

static void unlist_armed(struct coru__engine *e, struct coru__msa *m)
{
    struct coru__msa **pp = &e->msa_armed;
    while (*pp != m) pp = &(*pp)->next;
    *pp = m->next;
    m->next = NULL;
}

/* A CQE of m's multishot, on the owner of m->eng. */
static void msa_complete(struct coru__engine_op *op, int res)
{
    struct coru__msa *m = (struct coru__msa *)op;
    struct coru__engine *e = coru__engine_tls;
    bool more = e->cqe_flags & IORING_CQE_F_MORE;
    coru__lock(&m->lock);
    if (res >= 0) {
        if (m->closing)
            close(res);
        else if (!give(m, res))
            q_push(m, res);
    } else if (res != -ECANCELED && !m->closing) {
        if (!give(m, res)) m->err = res;
    }
    if (more) {
        /* Stop it after an error (some kernels keep a multishot armed
         * through -EMFILE, and its connection then sits in the backlog
         * with no new event to retry it), or when the queue is long. */
        if ((res < 0 || m->qlen >= Q_HIGH) && !m->closing) cancel_on_owner(m);
        coru__unlock(&m->lock);
        return;
    }
    /* The multishot is over. */
    unlist_armed(e, m);
    e->head.ops_inflight--;
    m->eng = NULL;
    m->cancel_sent = false;
    if (m->closing) {
        bool free_it = !m->cancel_posted; /* else the inbox drain frees it */
        coru__unlock(&m->lock);
        if (free_it) msa_free(m);
        return;
    }
    /* Acceptors still parked (they park only with the queue empty): arm
     * again for them, whatever ended this one: a pause that was overtaken
     * by acceptors, the kernel ending it, or an error, which went to one
     * acceptor and goes to the next if it persists (each gets it once;
     * nothing re-arms once none waits). */
    if (m->waiters.head && !m->qlen) arm(m, e);
    coru__unlock(&m->lock);
}

/* lfd's multishot state, made on first use, returned with m->lock held
 * (taken under fs->lock: coru__msa_close detaches it under fs->lock and
 * frees it only under m->lock, so it cannot go away in between). NULL
 * when lfd is past the fd table or coru_close has begun on it (the
 * caller's fallback then fails with -EBADF), or when there is no memory
 * for the state (the fallback needs none). */
static struct coru__msa *msa_of(int lfd)
{
    struct coru__fdstate *fs = coru__fdstate(lfd);
    if (!fs) return NULL;
    coru__lock(&fs->lock);
    /* acquire: pairs with coru__io_close_fd's fetch_or */
    if (atomic_load_explicit(&fs->use, memory_order_acquire) & 1) {
        coru__unlock(&fs->lock);
        return NULL;
    }
    struct coru__msa *m = fs->msa;
    if (!m) {
        /* Without memory for it the caller falls back to single-shot
         * accepts, which need none. */
        m = coru__calloc(1, sizeof *m);
        int *q = m ? coru__malloc(Q_INIT * sizeof *q) : NULL;
        if (!q) {
            free(m);
            coru__unlock(&fs->lock);
            return NULL;
        }
        m->q = q;
        m->qcap = Q_INIT;
        m->base.complete = msa_complete;
        coru__lock_init(&m->lock);
        m->lfd = lfd;
        fs->msa = m;
    }
    coru__lock(&m->lock);
    coru__unlock(&fs->lock);
    return m;
}

int coru__msa_accept(struct coru__engine *e, int lfd, int64_t deadline)
{
    struct coru__msa *m = msa_of(lfd); /* locked */
    if (!m) return -ENOSYS; /* caller falls back to a single-shot accept */
    int fd = -1;
    struct coru__waiter w;
    struct coru__wnode n;
    if (m->qlen) {
        fd = q_pop(m);
        coru__unlock(&m->lock);
        return fd;
    }
    if (m->err) {
        int err = m->err;
        m->err = 0;
        coru__unlock(&m->lock);
        return err;
    }
    bool cancelled = coru__self_cancelled();
    if (cancelled || coru__dl_passed(deadline)) {
        coru__unlock(&m->lock);
        int r = coru__accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); /* try once */
        return r >= 0 ? r : errno != EAGAIN ? -errno : cancelled ? -ECANCELED : -ETIMEDOUT;
    }
    int rc = coru__waiter_init(&w);
    if (rc) {
        coru__unlock(&m->lock);
        return rc;
    }
    if (!m->eng) arm(m, e);
    coru__waiter_on(&w, CORU__W_IO, "accept", lfd, false);
    coru__wnode_init(&n, &w, &fd, 0);
    coru__waitq_push(&m->waiters, &n);
    coru__unlock(&m->lock);
    rc = coru__waiter_block(&w, deadline);
    coru__wnode_done(&m->lock, &m->waiters, &n);
    return rc ? rc : fd;
}

void coru__msa_close(int lfd)
{
    struct coru__fdstate *fs = coru__fdstate(lfd);
    if (!fs) return;
    coru__lock(&fs->lock);
    struct coru__msa *m = fs->msa;
    fs->msa = NULL;
    coru__unlock(&fs->lock);
    if (!m) return;
    coru__lock(&m->lock);
    m->closing = true;
    while (give(m, -EBADF)) {
    }
    while (m->qlen) close(q_pop(m));
    struct coru__engine *e = m->eng;
    if (!e) {
        coru__unlock(&m->lock);
        msa_free(m);
        return;
    }
    /* Armed: only the owner can cancel it. Post and wake under m->lock
     * (see the invariants: the engine outlives this wake). */
    m->cancel_posted = true;
    coru__lock(&e->cancel_lock);
    m->cancel_next = atomic_load_explicit(&e->msa_cancel_head, memory_order_relaxed);
    atomic_store_explicit(&e->msa_cancel_head, m, memory_order_relaxed); /* the lock orders it */
    coru__unlock(&e->cancel_lock);
    coru__engine_wake(e);
    coru__unlock(&m->lock);
}

void coru__msa_drain_cancels(struct coru__engine *e)
{
    coru__lock(&e->cancel_lock);
    struct coru__msa *list = atomic_load_explicit(&e->msa_cancel_head, memory_order_relaxed);
    atomic_store_explicit(&e->msa_cancel_head, NULL, memory_order_relaxed);
    coru__unlock(&e->cancel_lock);
    while (list) {
        struct coru__msa *m = list;
        list = m->cancel_next;
        coru__lock(&m->lock);
        m->cancel_posted = false;
        if (!m->eng) { /* its last CQE came first */
            coru__unlock(&m->lock);
            msa_free(m);
            continue;
        }
        cancel_on_owner(m);
        coru__unlock(&m->lock);
    }
}

void coru__io_quiesce(struct coru__engine *e)
{
    if (e->head.kind != CORU__ENGINE_URING) return;
    for (int rounds = 0;; rounds++) {
        coru__msa_drain_cancels(e);
        for (struct coru__msa *m = e->msa_armed; m; m = m->next) {
            coru__lock(&m->lock);
            cancel_on_owner(m);
            coru__unlock(&m->lock);
        }
        coru__lock(&e->cancel_lock);
        bool posted = atomic_load_explicit(&e->msa_cancel_head, memory_order_relaxed) != NULL;
        coru__unlock(&e->cancel_lock);
        if (!e->msa_armed && !posted) return;
        if (rounds > 10000) CORU_PANIC("multishot accepts did not end at shutdown");
        int rc = coru__engine_wait(e, 1000000);
        if (rc < 0) CORU_PANIC("engine wait failed at shutdown: %d", rc);
    }
}
