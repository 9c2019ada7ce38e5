/* io_uring backend: one ring per worker, created on the worker thread.
 *
 * Invariants:
 *   - Only the owner thread touches the ring (SQ, CQ, liburing state). The
 *     ring is SINGLE_ISSUER where the kernel has it, so the kernel enforces
 *     this too: io_uring_enter from another task fails with -EEXIST.
 *   - An 8-byte IORING_OP_READ of the wake eventfd is always queued or in
 *     flight (read_armed), except between its completion and the end of
 *     the wait that reaps it, which re-arms it. It is the eventfd half of
 *     the wake protocol in engine.c.
 *   - A wake from another io_uring worker arrives as a CQE tagged
 *     CORU__TAG_MSG, posted by IORING_OP_MSG_RING submitted on the waker's
 *     own ring. The sender's completion carries CORU__TAG_MSG_SEND; with
 *     IOSQE_CQE_SKIP_SUCCESS (when the probe verified it) only failures
 *     produce one.
 *   - No CQE is lost: the kernel has IORING_FEAT_NODROP since 5.5, and the
 *     drain loop flushes the overflow list (IORING_SQ_CQ_OVERFLOW) until
 *     it is empty.
 *
 * Callers of each function: probe, from coru__engine_select (once per
 * process); everything else from the owner thread.
 */
#include "fail.h"
#include "io/engine_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

/* Constants newer than some liburing headers; values from the kernel's
 * include/uapi/linux/io_uring.h. */
#ifndef IORING_SETUP_CQSIZE
#define IORING_SETUP_CQSIZE (1U << 3)
#endif
#ifndef IORING_SETUP_SUBMIT_ALL
#define IORING_SETUP_SUBMIT_ALL (1U << 7)
#endif
#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_TASKRUN_FLAG
#define IORING_SETUP_TASKRUN_FLAG (1U << 9)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif
#ifndef IORING_SQ_CQ_OVERFLOW
#define IORING_SQ_CQ_OVERFLOW (1U << 1)
#endif
#ifndef IORING_SQ_TASKRUN
#define IORING_SQ_TASKRUN (1U << 2)
#endif
#ifndef IORING_FEAT_CQE_SKIP
#define IORING_FEAT_CQE_SKIP (1U << 11)
#endif
#ifndef IOSQE_CQE_SKIP_SUCCESS
#define IOSQE_CQE_SKIP_SUCCESS (1U << 6)
#endif

#define RING_ENTRIES 256
#define CQ_ENTRIES (4 * RING_ENTRIES)
#define DRAIN_BATCH 64

/* Setup flags to try, best first. SUBMIT_ALL (5.18) is added to each and
 * dropped again if the kernel refuses it. */
static const unsigned setup_tries[] = {
    /* 6.1+: task work runs only when we enter to wait, on our thread. */
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
    /* 5.19+: no IPI for task work; IORING_SQ_TASKRUN says when it waits. */
    IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
    IORING_SETUP_COOP_TASKRUN,
    0,
};

static int ring_init(struct io_uring *ring, unsigned flags, unsigned *features)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = flags | IORING_SETUP_CQSIZE;
    p.cq_entries = CQ_ENTRIES;
    int ret = coru__uring_init(RING_ENTRIES, ring, &p);
    if (ret == 0 && features) *features = p.features;
    return ret;
}

/* Sends a MSG_RING from the probe ring to itself and reports whether the
 * message arrives and whether IOSQE_CQE_SKIP_SUCCESS hid the sender's CQE.
 * Caller: coru__uring_probe, on the ring's creating thread. */
/* A feature probe cut short by want of a resource (err: a negative
 * errno): the feature stays off for this run and the next run probes
 * again (caps->partial). Any other error is the kernel's answer. */
static void probe_cut(struct coru__uring_caps *caps, int err)
{
    if (err == -ENOMEM || err == -EAGAIN || err == -EBUSY || err == -EMFILE || err == -ENFILE || err == -ENOBUFS)
        caps->partial = true;
}

static void probe_msg_ring(struct io_uring *ring, struct coru__uring_caps *caps)
{
    struct io_uring_probe *pr = io_uring_get_probe_ring(ring);
    if (!pr) probe_cut(caps, -ENOMEM); /* liburing's malloc, or the register call */
    bool have = pr && io_uring_opcode_supported(pr, IORING_OP_MSG_RING);
    if (pr) io_uring_free_probe(pr);
    if (!have) return;

    bool try_skip = caps->features & IORING_FEAT_CQE_SKIP;
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe) return;
    io_uring_prep_msg_ring(sqe, ring->ring_fd, 0, CORU__TAG_MSG, 0);
    io_uring_sqe_set_data64(sqe, CORU__TAG_MSG_SEND);
    if (try_skip) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;

    bool got_msg = false, got_send = false, send_failed = false;
    /* The message can trail the submit (task work on DEFER_TASKRUN
     * rings): wait for it, a second at most. */
    for (int round = 0; round < 10 && !got_msg && !send_failed; round++) {
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
        struct io_uring_cqe *cqe;
        int ret = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
        if (ret < 0 && ret != -ETIME && ret != -EINTR) {
            probe_cut(caps, ret);
            return;
        }
        unsigned head, n = 0;
        io_uring_for_each_cqe(ring, head, cqe) {
            n++;
            if (cqe->user_data == CORU__TAG_MSG) got_msg = true;
            if (cqe->user_data == CORU__TAG_MSG_SEND) {
                got_send = true;
                if (cqe->res < 0) send_failed = true;
            }
        }
        io_uring_cq_advance(ring, n);
    }
    if (!got_msg || send_failed) return;
    /* With skipping, the sender's CQE is posted inline with the submit, so
     * had it been posted we would have seen it by now. */
    caps->msg_ring = true;
    caps->msg_skip = try_skip && !got_send;
}

/* Multishot accept (IORING_ACCEPT_MULTISHOT, Linux 5.19): armed on a
 * listening socket, it must stay armed (-ECANCELED only when we cancel
 * it); a kernel without it fails the SQE at once with -EINVAL. */
static void probe_multishot_accept(struct io_uring *ring, struct coru__uring_caps *caps)
{
    int lfd = coru__socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        probe_cut(caps, -errno);
        return;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1) < 0) {
        close(lfd);
        return;
    }
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, 1);
    sqe = io_uring_get_sqe(ring);
    io_uring_prep_cancel64(sqe, 1, 0);
    io_uring_sqe_set_data64(sqe, 2);
    bool ok = false, done = false;
    for (int round = 0; round < 10 && !done; round++) {
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
        struct io_uring_cqe *cqe;
        int ret = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
        if (ret < 0 && ret != -ETIME && ret != -EINTR) {
            probe_cut(caps, ret);
            break;
        }
        unsigned head, n = 0;
        io_uring_for_each_cqe(ring, head, cqe) {
            n++;
            if (cqe->user_data != 1) continue;
            if (!(cqe->flags & IORING_CQE_F_MORE)) done = true;
            ok = cqe->res == -ECANCELED;
        }
        io_uring_cq_advance(ring, n);
    }
    close(lfd);
    caps->multishot_accept = ok && done;
}

void coru__uring_probe(struct coru__uring_caps *caps)
{
    memset(caps, 0, sizeof *caps);
    struct io_uring ring;
    int ret = -EINVAL;
    for (size_t i = 0; i < sizeof setup_tries / sizeof setup_tries[0]; i++) {
        unsigned f = setup_tries[i];
        ret = ring_init(&ring, f | IORING_SETUP_SUBMIT_ALL, &caps->features);
        if (ret == 0) {
            caps->setup_flags = f | IORING_SETUP_SUBMIT_ALL;
            break;
        }
        if (ret == -EINVAL) {
            ret = ring_init(&ring, f, &caps->features);
            if (ret == 0) {
                caps->setup_flags = f;
                break;
            }
        }
        /* EINVAL: this kernel lacks a flag; anything else (EPERM from
         * io_uring_disabled or seccomp, ENOSYS, ENOMEM) ends the probe. */
        if (ret != -EINVAL) break;
    }
    if (ret < 0) {
        caps->err = ret;
        caps->features = 0;
        return;
    }
    probe_msg_ring(&ring, caps);
    probe_multishot_accept(&ring, caps);
    io_uring_queue_exit(&ring);
}

struct io_uring_sqe *coru__uring_get_sqe(struct coru__engine *e)
{
    struct io_uring *ring = &e->u.ring;
    for (int fails = 0;;) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        if (likely(sqe)) return sqe;
        /* SQ full: hand what is queued to the kernel. CQEs this produces
         * may overflow the CQ, which the kernel keeps (NODROP). */
        int ret = io_uring_submit(ring);
        if (ret > 0 || ret == -EINTR) continue;
        /* Nothing taken (-EAGAIN/-ENOMEM: no memory for requests, -EBUSY:
         * old kernels with a full overflow list). Let the kernel flush and
         * run task work, then retry; give up loudly if it never moves. */
        if (++fails > 1000) CORU_PANIC("io_uring submit keeps failing: %d", ret);
        (void)io_uring_get_events(ring);
        sched_yield();
    }
}

static void arm_read(struct coru__engine *e)
{
    struct io_uring_sqe *sqe = coru__uring_get_sqe(e);
    io_uring_prep_read(sqe, e->wake_fd, &e->u.read_buf, sizeof e->u.read_buf, 0);
    io_uring_sqe_set_data64(sqe, CORU__TAG_WAKE_READ);
    e->u.read_armed = true;
}

int coru__uring_create(struct coru__engine *e, const struct coru__uring_caps *caps)
{
    struct coru__uring *u = &e->u;
    int ret = ring_init(&u->ring, caps->setup_flags, NULL);
    if (ret < 0) return ret;
    u->ring_fd = u->ring.ring_fd;
    u->setup_flags = caps->setup_flags;
    /* engine.h's coru__engine_pending computes io_uring_sq_ready from
     * these, which is exact without SQPOLL (then only our own submits
     * move the head). */
    CORU_ASSERT(!(u->ring.flags & IORING_SETUP_SQPOLL));
    e->head.sq_khead = u->ring.sq.khead;
    e->head.sq_tail = &u->ring.sq.sqe_tail;
    u->msg_ring = caps->msg_ring;
    u->msg_skip = caps->msg_skip;
    u->multishot_accept = caps->multishot_accept && !getenv("CORU_NO_MULTISHOT");
    /* Submit the wake read now: the first submit of a DEFER_TASKRUN ring
     * must come from its owner, and errors surface here, not in a wait. */
    arm_read(e);
    do {
        ret = io_uring_submit(&u->ring);
    } while (ret == -EINTR);
    if (ret < 0) {
        io_uring_queue_exit(&u->ring);
        return ret;
    }
    return 0;
}

/* One CQE: an op completion (returns 1) or an internal event (returns 0).
 * Caller: the drain loops, on the owner thread. */
static int handle_cqe(struct coru__engine *e, uint64_t ud, int res)
{
    if (ud >= CORU__TAG_LIMIT) {
        if (ud == LIBURING_UDATA_TIMEOUT) return 0; /* liburing's own */
        struct coru__engine_op *op = (struct coru__engine_op *)(uintptr_t)ud;
        op->complete(op, res);
        return 1;
    }
    switch (ud) {
    case CORU__TAG_WAKE_READ:
        e->u.read_armed = false;
        if (res == (int)sizeof e->u.read_buf) {
            e->fd_wakes++;
        } else if (res == -EAGAIN) {
            /* A kernel that does not poll-arm reads on O_NONBLOCK files
             * (no FMODE_NOWAIT for eventfd) hands the EAGAIN back. Make the
             * fd blocking: the read then waits in io-wq. Writers are not
             * affected (they block only at a saturated counter). */
            int fl = fcntl(e->wake_fd, F_GETFL);
            if (fl < 0 || fcntl(e->wake_fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
                CORU_PANIC("cannot make the wake eventfd blocking (errno %d)", errno);
        } else if (res != -EINTR && res != -ECANCELED) {
            CORU_PANIC("wake eventfd read failed: %d", res);
        }
        break; /* re-armed at the end of the drain */
    case CORU__TAG_MSG:
        e->u.msg_recv++;
        break;
    case CORU__TAG_MSG_SEND:
        /* A send failure nobody saw at submit time: it completed later
         * (kernels that finish MSG_RING in the target's task work), which
         * happens when the target thread is exiting. Its wake no longer
         * matters, and the target is not known here anyway. */
        if (res < 0) e->u.msg_failed++;
        break;
    default: /* MSG_SEEN, NOP, CANCEL, future tags: nothing to do */
        break;
    }
    return 0;
}

/* Reaps every CQE present, flushing the overflow list too. Returns the
 * number of op completions. Caller: coru__uring_wait. */
static int drain(struct coru__engine *e)
{
    struct io_uring *ring = &e->u.ring;
    struct io_uring_cqe *cqes[DRAIN_BATCH];
    int ops = 0;
    int idle_flushes = 0;
    for (;;) {
        /* peek_batch itself enters with GETEVENTS once when the CQ is empty
         * and the kernel flags overflow or pending task work. */
        unsigned n = io_uring_peek_batch_cqe(ring, cqes, DRAIN_BATCH);
        if (n == 0) {
            if (!io_uring_cq_has_overflow(ring) || idle_flushes++ > 2) break;
            (void)io_uring_get_events(ring); /* moves overflowed CQEs in */
            continue;
        }
        idle_flushes = 0;
        for (unsigned i = 0; i < n; i++) {
            /* Copy out first: the callback may queue and submit more. The
             * slots stay ours until cq_advance. */
            uint64_t ud = cqes[i]->user_data;
            int res = cqes[i]->res;
            e->cqe_flags = cqes[i]->flags; /* for multishot handlers */
            ops += handle_cqe(e, ud, res);
        }
        io_uring_cq_advance(ring, n);
    }
    if (!e->u.read_armed) arm_read(e);
    return ops;
}

/* Does a non-blocking wait need a syscall to see completions? */
static bool need_enter(const struct coru__engine *e)
{
    const struct io_uring *ring = &e->u.ring;
    if (io_uring_sq_ready(ring)) return true;
    /* relaxed: a hint only. A flag set just after this load belongs to a
     * completion the next wait will see; nothing else is read under it. */
    unsigned kflags = IO_URING_READ_ONCE(*ring->sq.kflags);
    if (kflags & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)) return true;
    /* Deferred or cooperative task work without TASKRUN_FLAG gives no
     * hint: always enter. */
    unsigned f = e->u.setup_flags;
    return (f & (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN)) &&
           !(f & IORING_SETUP_TASKRUN_FLAG);
}

int coru__uring_wait(struct coru__engine *e, int64_t timeout_ns)
{
    struct io_uring *ring = &e->u.ring;
    const int64_t deadline = timeout_ns > 0 ? coru__now_ns() + timeout_ns : 0;
    if (io_uring_cq_ready(ring)) timeout_ns = 0; /* something to reap now */

    for (;;) {
        int ret = 0;
        if (timeout_ns == 0) {
            if (need_enter(e)) ret = io_uring_submit_and_get_events(ring);
        } else if (timeout_ns < 0) {
            ret = io_uring_submit_and_wait(ring, 1);
        } else {
            struct __kernel_timespec ts = {
                .tv_sec = timeout_ns / 1000000000,
                .tv_nsec = timeout_ns % 1000000000,
            };
            struct io_uring_cqe *cqe;
            ret = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
        }
        if (ret == -EINTR) {
            /* A signal: wait out the rest. SQEs already handed over stay
             * handed over (liburing moved the SQ tail before entering). */
            if (timeout_ns > 0) {
                timeout_ns = deadline - coru__now_ns();
                if (timeout_ns < 0) timeout_ns = 0;
            }
            continue;
        }
        /* -ETIME: the timeout passed. -EAGAIN/-EBUSY: the kernel could not
         * take the SQEs now; they stay queued for the next wait, and
         * whatever completed is reaped below. */
        if (ret < 0 && ret != -ETIME && ret != -EAGAIN && ret != -EBUSY) return ret;
        break;
    }
    return drain(e);
}

int coru__uring_send_wake(struct coru__engine *self, struct coru__engine *target)
{
    struct io_uring *ring = &self->u.ring;
    struct io_uring_sqe *sqe = coru__uring_get_sqe(self);
    io_uring_prep_msg_ring(sqe, target->u.ring_fd, 0, CORU__TAG_MSG, 0);
    io_uring_sqe_set_data64(sqe, CORU__TAG_MSG_SEND);
    if (self->u.msg_skip) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;

    /* acquire: pairs with the kernel's release of the CQ tail, so the CQEs
     * below the tail we read after the submit are fully written. */
    const unsigned tail0 = io_uring_smp_load_acquire(ring->cq.ktail);
    int ret;
    do {
        ret = io_uring_submit(ring);
    } while (ret == -EINTR);
    if (io_uring_sq_ready(ring)) {
        /* The kernel did not take our SQE (it is the last one queued, and
         * the kernel consumes in order). Turn it into a NOP so that a later
         * submit cannot deliver a message to a ring fd that may by then be
         * closed, and let the caller use the eventfd. */
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, CORU__TAG_NOP);
        self->u.msg_failed++;
        return ret < 0 ? ret : -EAGAIN;
    }
    self->u.msg_sent++;

    /* MSG_RING to a ring without IOPOLL runs inline in the submit, so its
     * completion (if any) was posted before io_uring_submit returned. Look
     * only at the CQEs that submit posted. A failure is rewritten to
     * MSG_SEEN in place (the slot is ours until cq_advance) so the drain
     * does not count it twice. */
    const unsigned tail = io_uring_smp_load_acquire(ring->cq.ktail);
    const unsigned mask = *ring->cq.kring_mask;
    bool failed = false, seen_ok = false;
    for (unsigned i = tail0; i != tail; i++) {
        struct io_uring_cqe *c = &ring->cq.cqes[i & mask];
        if (c->user_data != CORU__TAG_MSG_SEND) continue;
        c->user_data = CORU__TAG_MSG_SEEN;
        if (c->res < 0)
            failed = true;
        else
            seen_ok = true;
    }
    /* Unsure cases fall back too (an extra wake costs one spurious return;
     * a lost one hangs a worker): a completion that went to the overflow
     * list, or, without CQE skipping, one that has not been posted yet. */
    if (failed || io_uring_cq_has_overflow(ring) || (!self->u.msg_skip && !seen_ok)) {
        self->u.msg_failed++;
        return -EIO;
    }
    return 0;
}

void coru__uring_destroy(struct coru__engine *e)
{
    struct io_uring *ring = &e->u.ring;
    /* The wake read writes into e->u.read_buf, which dies with e. Cancel
     * it and reap its CQE before the ring goes, so that no read can land
     * in freed memory whatever path the kernel takes (poll retry, io-wq).
     * MSG_RING messages still on their way to this ring need nothing: the
     * sender's request holds the ring file, and the kernel discards the
     * message with the ring's memory, which is not ours. */
    if (e->u.read_armed) {
        struct io_uring_sqe *sqe = coru__uring_get_sqe(e);
        io_uring_prep_cancel64(sqe, CORU__TAG_WAKE_READ, 0);
        io_uring_sqe_set_data64(sqe, CORU__TAG_CANCEL);
        for (int rounds = 0; e->u.read_armed; rounds++) {
            if (rounds > 50) CORU_PANIC("wake read not cancelled after 5 s");
            struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
            struct io_uring_cqe *cqe;
            int ret = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
            if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
                CORU_PANIC("wait for the cancel failed: %d", ret);
            unsigned head, n = 0;
            io_uring_for_each_cqe(ring, head, cqe) {
                n++;
                uint64_t ud = cqe->user_data;
                if (ud == CORU__TAG_WAKE_READ)
                    e->u.read_armed = false;
                else if (ud >= CORU__TAG_LIMIT && ud != LIBURING_UDATA_TIMEOUT)
                    CORU_PANIC("operation %p still in flight at destroy", (void *)(uintptr_t)ud);
            }
            io_uring_cq_advance(ring, n);
            if (n == 0 && io_uring_cq_has_overflow(ring)) (void)io_uring_get_events(ring);
        }
    }
    io_uring_queue_exit(ring);
}

const char *coru__uring_op_name(unsigned opcode)
{
    switch (opcode) {
    case IORING_OP_READ: return "read";
    case IORING_OP_WRITE: return "write";
    case IORING_OP_READV: return "readv";
    case IORING_OP_WRITEV: return "writev";
    case IORING_OP_RECV: return "recv";
    case IORING_OP_SEND: return "send";
    case IORING_OP_RECVMSG: return "recvmsg";
    case IORING_OP_SENDMSG: return "sendmsg";
    case IORING_OP_ACCEPT: return "accept";
    case IORING_OP_CONNECT: return "connect";
    case IORING_OP_POLL_ADD: return "poll";
    case IORING_OP_OPENAT: return "openat";
    case IORING_OP_FSYNC: return "fsync";
    default: return "uring op";
    }
}
