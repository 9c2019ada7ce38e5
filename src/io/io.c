/* The I/O core: parking a coroutine on one io_uring operation or on fd
 * readiness (epoll), with deadlines and cancellation. See io.h.
 *
 * Invariants:
 *   - io_uring: an op's struct lives on the parked coroutine's stack. Only
 *     its CQE wakes the coroutine (the wait is uncancellable), so the
 *     kernel never writes into a stack that moved on. co->io_op and
 *     co->io_eng (guarded by co->wait_lock) name the op in flight; a
 *     cancel holds a reference on co and, on the ring's owner thread,
 *     re-checks io_op under wait_lock before submitting the async cancel,
 *     so it never cancels by a stale user_data of another coroutine.
 *     The op is also linked into its fd's state (fdstate.uops, under
 *     fdstate.lock, taken before co->wait_lock), so coru_close can ask
 *     the ring to end it; the op then returns -EBADF, as on epoll.
 *     Lock order: fdstate.lock, then co->wait_lock, then an engine's
 *     cancel_lock.
 *   - epoll: fdstate.rdq / .wrq hold the parked waiters (fdstate.lock).
 *     The event handler claims and wakes them all under that lock (each
 *     retries its call; those that lose the race park again); a waiter
 *     woken by its timer or a cancel unlinks its node under the same
 *     lock before it returns. Edges that arrive while nobody waits set rd_ready/wr_ready
 *     (exchange-cleared before each attempt), so no edge is lost between
 *     an EAGAIN and the park.
 */
#include "fail.h"
#include "io/io.h"
#include "sched/dump.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/stat.h>

#include "sched/sched.h"
#include "sched/waiter.h"

/* ---------------------------------------------------------------- fd states */

#define FD_CHUNK 1024
#define FD_CHUNKS 1024 /* fds below 2^20 */
static _Atomic(struct coru__fdstate *) fd_chunks[FD_CHUNKS];
_Atomic unsigned coru__io_epoch;
static pthread_mutex_t fd_chunks_lock = PTHREAD_MUTEX_INITIALIZER;

static void fs_complete(struct coru__engine_op *op, int events);
static void close_uops(struct coru__fdstate *fs);
static bool closing(struct coru__fdstate *fs);

/* Wakes every waiter of q with code; whether there was one. Under the
 * queue's fd state lock. */
static bool wake_all(struct coru__waitq *q, int code)
{
    bool any = false;
    struct coru__wnode *n;
    while ((n = coru__waitq_claim(q))) {
        coru__waiter_wake(n->w, code, n->idx);
        any = true;
    }
    return any;
}

struct coru__fdstate *coru__fdstate(int fd)
{
    if (fd < 0 || fd >= FD_CHUNK * FD_CHUNKS) return NULL;
    size_t c = (size_t)fd / FD_CHUNK;
    /* acquire: pairs with the release publishing a new chunk */
    struct coru__fdstate *chunk = atomic_load_explicit(&fd_chunks[c], memory_order_acquire);
    if (!chunk) {
        pthread_mutex_lock(&fd_chunks_lock);
        chunk = atomic_load_explicit(&fd_chunks[c], memory_order_relaxed);
        if (!chunk) {
            chunk = coru__calloc(FD_CHUNK, sizeof *chunk);
            if (!chunk) { /* the I/O call says -ENOMEM (coru__fd_use) */
                pthread_mutex_unlock(&fd_chunks_lock);
                return NULL;
            }
            for (int i = 0; i < FD_CHUNK; i++) {
                chunk[i].base.complete = fs_complete;
                chunk[i].fd = (int)c * FD_CHUNK + i;
                coru__lock_init(&chunk[i].lock);
            }
            atomic_store_explicit(&fd_chunks[c], chunk, memory_order_release);
        }
        pthread_mutex_unlock(&fd_chunks_lock);
    }
    return &chunk[fd % FD_CHUNK];
}

bool coru__fd_is_socket(int fd)
{
    struct coru__fdstate *fs = coru__fdstate(fd);
    if (!fs) return false;
    coru__lock(&fs->lock);
    if (!fs->probed) {
        struct stat st;
        fs->is_sock = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
        fs->probed = true;
    }
    bool s = fs->is_sock;
    coru__unlock(&fs->lock);
    return s;
}

bool coru__fd_reprobe(int fd)
{
    struct coru__fdstate *fs = coru__fdstate(fd);
    if (!fs) return false;
    coru__lock(&fs->lock);
    fs->probed = false;
    coru__unlock(&fs->lock);
    return coru__fd_is_socket(fd);
}

/* Wakes the fd's waiters with -EBADF, ends its io_uring ops and clears
 * what coru knows of it. */
static void forget(struct coru__fdstate *fs, int fd)
{
    coru__lock(&fs->lock);
    wake_all(&fs->rdq, -EBADF);
    wake_all(&fs->wrq, -EBADF);
    close_uops(fs);
    fs->eng = NULL; /* close(2) drops the epoll registration */
    fs->probed = false;
    atomic_store_explicit(&fs->rd_ready, false, memory_order_relaxed);
    atomic_store_explicit(&fs->wr_ready, false, memory_order_relaxed);
    atomic_store_explicit(&fs->rd_drained, false, memory_order_relaxed);
    atomic_store_explicit(&fs->rd_hup, false, memory_order_relaxed);
    bool msa = fs->msa != NULL;
    coru__unlock(&fs->lock);
    if (msa) coru__msa_close(fd);
}

void coru__io_forget_fd(int fd)
{
    struct coru__fdstate *fs = coru__fdstate(fd);
    if (!fs) return;
    forget(fs, fd);
    /* A new fd from the kernel (callers: socket, accept, open): the
     * number's last coru_close has closed it, whatever its finish_close
     * has yet to clear, so the word starts afresh: without this, a call
     * on the new fd in that window would find the old closing bit. No use
     * of the old fd can be legitimately in progress any more. */
    atomic_store_explicit(&fs->use, 0, memory_order_release);
}

/* ---------------------------------------------------------------- uses and close
 *
 * fs->use: bit 0 closing, then the count of uses in steps of 2. The
 * close(2) happens exactly once, by the one party that sees "closing and
 * no use": coru__io_close_fd when it sets the bit with no use held (its
 * fetch_or returns 0), or the releaser whose fetch_sub takes the count
 * from one to zero with the bit set (it returns 3). A use taken by CAS
 * only while the bit is clear cannot slip in after either. acq_rel on
 * every RMW: the closer sees all the users' writes to the fd's state, and
 * the users see the closer's. Once closed, the word is reset to 0 by CAS
 * from 1, which fails harmlessly if a new fd made by coru (whose creation
 * resets it, coru__io_forget_fd) already took the number. */

int coru__fd_use(int fd)
{
    struct coru__fdstate *fs = coru__fdstate(fd);
    if (!fs) return fd >= 0 && fd < FD_CHUNK * FD_CHUNKS ? -ENOMEM : 0;
    uint32_t v = atomic_load_explicit(&fs->use, memory_order_relaxed);
    do {
        if (v & 1) return -EBADF;
    } while (!atomic_compare_exchange_weak_explicit(&fs->use, &v, v + 2, memory_order_acq_rel,
                                                    memory_order_relaxed));
    return 0;
}

static void finish_close(struct coru__fdstate *fs, int fd, int *rc)
{
    int r = close(fd) < 0 ? -errno : 0;
    if (rc) *rc = r;
    uint32_t one = 1;
    atomic_compare_exchange_strong_explicit(&fs->use, &one, 0, memory_order_acq_rel, memory_order_relaxed);
}

void coru__fd_unuse(int fd)
{
    struct coru__fdstate *fs = coru__fdstate(fd);
    if (!fs) return;
    if (atomic_fetch_sub_explicit(&fs->use, 2, memory_order_acq_rel) == 3) finish_close(fs, fd, NULL);
}

int coru__io_close_fd(int fd)
{
    struct coru__fdstate *fs = coru__fdstate(fd);
    if (!fs) return close(fd) < 0 ? -errno : 0;
    /* The bit first: a wait that begins after forget() has woken the
     * waiters sees it (under fs->lock) and does not park. */
    uint32_t v = atomic_fetch_or_explicit(&fs->use, 1, memory_order_acq_rel);
    if (v & 1) return -EBADF; /* a close of it is already under way */
    forget(fs, fd);
    if (v != 0) return 0; /* the last use closes it */
    int rc = 0;
    finish_close(fs, fd, &rc);
    return rc;
}

static bool closing(struct coru__fdstate *fs)
{
    return atomic_load_explicit(&fs->use, memory_order_acquire) & 1; /* pairs with the fetch_or */
}

/* ---------------------------------------------------------------- engines */

struct coru__engine *coru__io_engine(void)
{
    if (!coru__co_self() || coru__gen_depth > 0) return NULL;
    return coru__engine_tls;
}

/* ---------------------------------------------------------------- io_uring */

/* One io_uring op, on the parked coroutine's stack. */
struct coru__uop {
    struct coru__engine_op base;
    struct coru__waiter w;
    int res;
    struct coru__fdstate *fs;            /* fd's state, or NULL */
    struct coru__uop *fs_next, *fs_prev; /* fs->uops; fs->lock */
    /* The deadline: a timer on the owner worker's heap (not a kernel
     * linked timeout, which costs an hrtimer per op even when it never
     * fires: measured, a quarter of an HTTP server's throughput). When it
     * fires before the completion, it queues an async cancel of the op.
     * Both the completion and the timer run on the ring's owner thread, so
     * `completed` needs no ordering: the timer sees it set if the CQE came
     * first, and then queues nothing. */
    struct coru__timer tm;
    struct coru__engine *e;
    bool completed, timed_out;           /* owner thread */
};

static void uop_complete(struct coru__engine_op *op, int res)
{
    struct coru__uop *u = (struct coru__uop *)op;
    u->res = res;
    u->completed = true;
    coru__engine_tls->head.ops_inflight--;
    if (coru__waiter_claim(&u->w)) coru__waiter_wake(&u->w, 0, 0);
}

/* The op's deadline passed (timer.c, on the owner, under the heap lock,
 * which keeps the coroutine's disarm, and so its stack, waiting). The
 * cancel goes into the SQ behind the op and finds it in flight, or finds
 * nothing (-ENOENT) if the CQE is already posted. */
static void uop_timeout(struct coru__timer *t)
{
    struct coru__uop *u = (struct coru__uop *)((char *)t - offsetof(struct coru__uop, tm));
    if (u->completed) return;
    u->timed_out = true;
    struct io_uring_sqe *sqe = coru__uring_get_sqe(u->e);
    io_uring_prep_cancel(sqe, &u->base, 0);
    io_uring_sqe_set_data64(sqe, CORU__TAG_CANCEL);
}

/* Publishes (on) or withdraws the op as co's op in flight, and links it
 * into (or out of) its fd's list, in one critical section of fs->lock
 * then co->wait_lock, so that coru_close sees either both or neither.
 * Returns, when publishing, 1 if the op must be cancelled at once (co
 * cancelled meanwhile), -EBADF if coru_close began (nothing
 * published), else 0; when withdrawing, whether coru_close asked the
 * ring to end the op (co->io_closed). */
static int uop_publish(struct coru__uop *u, struct coru_co *co, struct coru__engine *e, bool on)
{
    struct coru__fdstate *fs = u->fs;
    if (fs) {
        coru__lock(&fs->lock);
        /* A close that marked the fd before our lock section: its forget
         * (under this lock) may have run already and would not cancel us. */
        if (on && closing(fs)) {
            coru__unlock(&fs->lock);
            return -EBADF;
        }
        if (on) {
            u->fs_prev = NULL;
            u->fs_next = fs->uops;
            if (fs->uops) fs->uops->fs_prev = u;
            fs->uops = u;
        } else {
            if (u->fs_prev)
                u->fs_prev->fs_next = u->fs_next;
            else
                fs->uops = u->fs_next;
            if (u->fs_next) u->fs_next->fs_prev = u->fs_prev;
        }
    }
    coru__lock(&co->wait_lock);
    bool closed = co->io_closed;
    co->io_op = on ? &u->base : NULL;
    co->io_eng = on ? e : NULL;
    co->io_closed = false;
    bool cancel = on && atomic_load_explicit(&co->cancelled, memory_order_relaxed); /* set under wait_lock */
    coru__unlock(&co->wait_lock);
    if (fs) coru__unlock(&fs->lock);
    return on ? cancel : closed;
}

int coru__io_uring_op(struct coru__engine *e, int fd, coru__prep_fn prep, void *ctx, int64_t deadline)
{
    struct coru__uop u;
    u.base.complete = uop_complete;
    u.res = 0;
    u.fs = fd >= 0 ? coru__fdstate(fd) : NULL;
    int rc = coru__waiter_init(&u.w);
    if (rc) return rc;
    if (coru__dl_passed(deadline)) {
        coru__waiter_abort(&u.w);
        return -ETIMEDOUT;
    }
    /* Published before the SQEs are queued: a close from now on finds the
     * op, and its cancel (drained on this thread, after we park) comes
     * after the op in the ring; a close before it fails the publish. */
    struct coru_co *co = u.w.co;
    rc = uop_publish(&u, co, e, true);
    if (rc < 0) {
        coru__waiter_abort(&u.w);
        return rc;
    }
    u.e = e;
    u.completed = u.timed_out = false;
    coru__timer_init(&u.tm, NULL, uop_timeout);
    u.tm.when = deadline;
    /* Our own timer, or (no memory for the heap) a kernel linked timeout. */
    bool linked = coru__dl_set(deadline) && coru__timer_arm(coru__worker_timers(), &u.tm, coru__now_ns()) != 0;
    struct io_uring *ring = &e->u.ring;
    /* The op and its linked timeout must go to the kernel together. */
    if (linked && io_uring_sq_space_left(ring) < 2) io_uring_submit(ring);
    struct io_uring_sqe *sqe = coru__uring_get_sqe(e);
    prep(sqe, ctx);
    io_uring_sqe_set_data(sqe, &u.base);
    coru__waiter_on(&u.w, CORU__W_IO, coru__uring_op_name(sqe->opcode), fd, false);
    struct __kernel_timespec ts; /* read by the kernel at submit time; we
                                    are parked until the CQE */
    if (linked) {
        sqe->flags |= IOSQE_IO_LINK;
        ts.tv_sec = deadline / 1000000000;
        ts.tv_nsec = deadline % 1000000000;
        struct io_uring_sqe *t = coru__uring_get_sqe(e);
        io_uring_prep_link_timeout(t, &ts, IORING_TIMEOUT_ABS);
        io_uring_sqe_set_data64(t, CORU__TAG_TIMEOUT);
    }
    e->head.ops_inflight++;
    if (rc == 1) coru__io_post_cancel(co);
    coru__waiter_block_uncancellable(&u.w);
    coru__timer_disarm(&u.tm); /* waits out a firing in progress */
    bool closed = uop_publish(&u, co, e, false);
    if (u.res == -ECANCELED) {
        if (atomic_load_explicit(&co->cancelled, memory_order_acquire)) return -ECANCELED;
        if (closed) return -EBADF;
        if (coru__dl_set(deadline)) return -ETIMEDOUT;
    }
    return u.res;
}

/* Cancellation requests travel to the ring's owner through the engine's
 * cancel inbox (cancel_lock); the owner drains it in
 * coru__io_drain_cancels. A request means "cancel whatever op co has in
 * flight if co is cancelled or that op's fd was closed"; the drain
 * decides, under co->wait_lock, when it runs, so a stale request is
 * harmless. co sits on at most one inbox, at most once (io_cancel_on):
 * the inbox is a list linked through co->io_cancel_next, and pushing co
 * a second time would make it a cycle that the drain would walk forever
 * (a second coru_cancel did exactly that). A request that finds co in an
 * op on another ring (the op it was posted for ended, and co moved on)
 * is forwarded there.
 *
 * The wake is sent under co->wait_lock: co cannot get past the end of its
 * op (uop_publish takes that lock) while we hold it, so it has not
 * finished, the run cannot end, and the engine still exists. */
void coru__io_post_cancel(struct coru_co *co)
{
    coru__lock(&co->wait_lock);
    struct coru__engine *e = co->io_eng;
    if (e && co->io_op && !co->io_cancel_on) {
        co->io_cancel_on = e;
        coru__co_ref(co);
        coru__lock(&e->cancel_lock);
        co->io_cancel_next = atomic_load_explicit(&e->cancel_head, memory_order_relaxed);
        atomic_store_explicit(&e->cancel_head, co, memory_order_relaxed); /* the lock orders it */
        coru__unlock(&e->cancel_lock);
        coru__engine_wake(e);
    }
    coru__unlock(&co->wait_lock);
}

void coru__io_drain_cancels(struct coru__engine *e)
{
    if (atomic_load_explicit(&e->msa_cancel_head, memory_order_relaxed)) coru__msa_drain_cancels(e); /* racy hint: a post
        missed here is seen at the next drain, which its wake causes */
    /* relaxed: a hint; a post that lands after this check also wakes the
     * engine, so the next poll sees it. The lock orders the list. */
    if (!atomic_load_explicit(&e->cancel_head, memory_order_relaxed)) return;
    coru__lock(&e->cancel_lock);
    struct coru_co *list = atomic_load_explicit(&e->cancel_head, memory_order_relaxed);
    atomic_store_explicit(&e->cancel_head, NULL, memory_order_relaxed);
    coru__unlock(&e->cancel_lock);
    while (list) {
        struct coru_co *co = list;
        list = co->io_cancel_next;
        bool forward = false;
        coru__lock(&co->wait_lock);
        co->io_cancel_on = NULL;
        bool want = co->io_op && (co->io_closed || atomic_load_explicit(&co->cancelled, memory_order_relaxed));
        if (want && co->io_eng == e) {
            struct io_uring_sqe *sqe = coru__uring_get_sqe(e);
            io_uring_prep_cancel(sqe, co->io_op, 0);
            io_uring_sqe_set_data64(sqe, CORU__TAG_CANCEL);
        } else if (want) {
            forward = true;
        }
        coru__unlock(&co->wait_lock);
        if (forward) coru__io_post_cancel(co);
        coru__co_unref(co);
    }
}

/* coru_close: every io_uring op in flight on fs's fd is asked to end;
 * each returns -EBADF (or its own result if it completed first). Caller
 * holds fs->lock (which keeps the ops' coroutines from leaving them). */
static void close_uops(struct coru__fdstate *fs)
{
    for (struct coru__uop *u = fs->uops; u; u = u->fs_next) {
        struct coru_co *co = u->w.co;
        coru__lock(&co->wait_lock);
        co->io_closed = true;
        coru__unlock(&co->wait_lock);
        coru__io_post_cancel(co);
    }
}

/* ---------------------------------------------------------------- the scheduler's calls
 *
 * engine.h's interface for src/sched, which includes no other src/io
 * header: these forward to the I/O core's own functions. */

void coru__engine_run_begin(void)
{
    /* relaxed: the workers read it after their creation, which orders it */
    atomic_fetch_add_explicit(&coru__io_epoch, 1, memory_order_relaxed);
}

void coru__engine_service(struct coru__engine *e)
{
    coru__io_drain_cancels(e);
}

void coru__engine_quiesce(struct coru__engine *e)
{
    coru__io_quiesce(e); /* accept.c: multishots armed on e */
}

void coru__engine_cancel_op(struct coru_co *co)
{
    coru__io_post_cancel(co);
}

/* ---------------------------------------------------------------- epoll */

static void fs_complete(struct coru__engine_op *op, int events)
{
    struct coru__fdstate *fs = (struct coru__fdstate *)op;
    coru__lock(&fs->lock);
    /* EOF or an error is a state, not an edge: no later edge will report
     * it again, so readers must not wait for one after a short read
     * (net.c). Set before the wake, whose release publishes it. */
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        atomic_store_explicit(&fs->rd_hup, true, memory_order_relaxed); /* under lock */
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (!wake_all(&fs->rdq, 0))
            atomic_store_explicit(&fs->rd_ready, true, memory_order_relaxed); /* under lock */
    }
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
        if (!wake_all(&fs->wrq, 0)) atomic_store_explicit(&fs->wr_ready, true, memory_order_relaxed);
    }
    coru__unlock(&fs->lock);
}

static int poll_plain(int fd, int dir, int64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = dir == CORU__IO_READ ? POLLIN : POLLOUT};
    int ms = -1;
    if (coru__dl_set(deadline)) {
        /* dl_passed first: deadline - now would overflow for a deadline
         * near INT64_MIN (a time long past) and look like weeks ahead */
        if (coru__dl_passed(deadline)) return -ETIMEDOUT;
        int64_t left = deadline - coru__now_ns();
        ms = left / 1000000 >= INT_MAX ? INT_MAX : (int)((left + 999999) / 1000000);
    }
    /* a plain thread inside a coru call: no deadlock report meanwhile */
    atomic_fetch_add_explicit(&coru__ext_blocked, 1, memory_order_relaxed);
    int n = poll(&p, 1, ms);
    int err = errno;
    atomic_fetch_sub_explicit(&coru__ext_blocked, 1, memory_order_relaxed);
    if (n < 0) return err == EINTR ? 0 : -err;
    if (n == 0) return -ETIMEDOUT;
    if (p.revents & POLLNVAL) return -EBADF;
    return 0;
}

int coru__io_wait_fd(struct coru__engine *e, int fd, int dir, int64_t deadline)
{
    if (!e) return poll_plain(fd, dir, deadline);
    struct coru__fdstate *fs = coru__fdstate(fd);
    if (!fs) return poll_plain(fd, dir, deadline);
    _Atomic bool *ready = dir == CORU__IO_READ ? &fs->rd_ready : &fs->wr_ready;
    struct coru__waiter w;
    coru__lock(&fs->lock);
    if (closing(fs)) { /* see coru__io_close_fd: the bit comes before the forget's wake */
        coru__unlock(&fs->lock);
        return -EBADF; /* a registration now would be dropped by the close and never fire */
    }
    /* relaxed: written before the workers start (thread creation orders it) */
    unsigned epoch = atomic_load_explicit(&coru__io_epoch, memory_order_relaxed);
    if (fs->eng && fs->epoch != epoch) fs->eng = NULL; /* registered in an earlier run */
    int self = coru_worker(); /* -1 off the workers */
    unsigned wid = self >= 0 ? (unsigned)self : UINT_MAX;
    if (fs->eng && fs->eng != e && wid < fs->wid) {
        /* Readiness goes to the epoll it is registered in, and wakes the
         * coroutine on that worker. When the scheduler packs work onto
         * lower workers (sched/pack.c), the registration follows it down, and
         * only down, so it settles instead of bouncing. Another worker's
         * epoll may be reporting the fd at this moment: fs_complete is
         * indifferent to which one does, under fs->lock. */
        epoll_ctl(fs->eng->ep.epfd, EPOLL_CTL_DEL, fd, NULL);
        fs->eng = NULL;
    }
    if (!fs->eng) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = fs};
        if (epoll_ctl(e->ep.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            int err = errno;
            coru__unlock(&fs->lock);
            return err == EEXIST ? 0 : -err; /* EPERM: a regular file */
        }
        fs->eng = e;
        fs->wid = wid;
        fs->epoch = epoch;
        /* Registered edge-triggered: the current state reports at once. */
    }
    /* An edge since the caller's last attempt: retry instead of parking.
     * relaxed: fs->lock orders it with fs_complete. */
    if (atomic_exchange_explicit(ready, false, memory_order_relaxed)) {
        coru__unlock(&fs->lock);
        return 0;
    }
    int rc = coru__waiter_init(&w);
    if (rc) {
        coru__unlock(&fs->lock);
        return rc;
    }
    if (coru__dl_passed(deadline)) {
        coru__waiter_abort(&w);
        coru__unlock(&fs->lock);
        return -ETIMEDOUT;
    }
    struct coru__waitq *q = dir == CORU__IO_READ ? &fs->rdq : &fs->wrq;
    coru__waiter_on(&w, CORU__W_IO, dir == CORU__IO_READ ? "wait readable" : "wait writable", fd, false);
    struct coru__wnode n;
    coru__wnode_init(&n, &w, NULL, 0);
    coru__waitq_push(q, &n);
    coru__unlock(&fs->lock);
    rc = coru__waiter_block(&w, deadline);
    coru__wnode_done(&fs->lock, q, &n);
    return rc;
}
