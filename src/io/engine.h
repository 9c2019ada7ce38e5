/* The I/O engine behind each worker: one io_uring per worker, or epoll +
 * eventfd when io_uring cannot be set up. The scheduler uses it to sleep
 * (the idle wait) and to be woken from other threads; the I/O calls use it
 * to submit operations and receive their completions, so a completion, a
 * wake-up and the nearest timer all end the same wait.
 *
 * Ownership: an engine is created, waited on, submitted to and destroyed by
 * its owner thread only (the ring is IORING_SETUP_SINGLE_ISSUER where the
 * kernel has it). coru__engine_wake and coru__engine_cancel_op are the
 * calls any thread may make on an engine that is not its own.
 *
 * This header is the whole of what the scheduler (src/sched) knows of the
 * I/O layer: it includes no other src/io header and calls nothing else.
 * The I/O layer calls back into the scheduler (parking, coru__ready); the
 * scheduler reaches the I/O layer only through the functions below, so
 * the dependency between the two has one direction per call, never a
 * cycle through internals.
 */
#ifndef CORU_ENGINE_H
#define CORU_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

enum coru__engine_kind {
    CORU__ENGINE_NONE = 0,
    CORU__ENGINE_URING = 1,
    CORU__ENGINE_EPOLL = 2,
};

struct coru__engine;
struct coru_co;

/* The part of an engine the scheduler reads on its hot path (every
 * TIMER_INTERVAL ticks and before it sleeps, see sched.c's poll_engine):
 * the first member of struct coru__engine (engine_impl.h), so that the
 * inline functions below read it with a few loads, without a call and
 * without the backends' headers (liburing).
 *
 * Invariants:
 *   - kind, sq_khead and sq_tail are written once in coru__engine_create,
 *     before the engine pointer is published, and never change; any
 *     thread may read kind (coru__engine_wake does).
 *   - ops_inflight and the two counters sq_khead and sq_tail point to are
 *     written by the owner thread only, and read by it only (the kernel
 *     advances *sq_khead, but only inside the owner's own io_uring_enter:
 *     coru never sets up SQPOLL), so plain loads see their current value.
 */
struct coru__engine_head {
    enum coru__engine_kind kind; /* immutable */
    uint32_t ops_inflight;       /* owner: io_uring ops queued or in flight,
                                    not yet completed (io.c, accept.c) */
    const unsigned *sq_khead;    /* immutable pointer (io_uring; NULL for
                                    epoll): the SQ ring's head, which the
                                    kernel advances as it consumes SQEs */
    const unsigned *sq_tail;     /* immutable pointer (io_uring; NULL for
                                    epoll): liburing's local SQ tail
                                    (struct io_uring_sq.sqe_tail), which
                                    advances as SQEs are queued. SQEs
                                    queued, not yet submitted: *sq_tail -
                                    *sq_khead, as io_uring_sq_ready */
};

static inline const struct coru__engine_head *coru__engine_head_of(const struct coru__engine *e)
{
    return (const struct coru__engine_head *)(const void *)e; /* the first member */
}

/* Owner: whether a poll of e (coru__engine_wait with timeout 0) may do
 * anything. io_uring: ops in flight or SQEs queued (without either the
 * poll would be a wasted system call); epoll: always, since readiness of
 * every registered fd arrives there. */
static inline bool coru__engine_pending(const struct coru__engine *e)
{
    const struct coru__engine_head *h = coru__engine_head_of(e);
    if (h->kind != CORU__ENGINE_URING) return true;
    return h->ops_inflight != 0 || *h->sq_tail != *h->sq_khead;
}

/* Owner: whether e may complete something soon, so that spinning on
 * polls of it is worth it. io_uring: ops in flight (queued SQEs without
 * an op, a cancel say, complete nothing a coroutine waits for); epoll:
 * always, as above. */
static inline bool coru__engine_inflight(const struct coru__engine *e)
{
    const struct coru__engine_head *h = coru__engine_head_of(e);
    return h->kind != CORU__ENGINE_URING || h->ops_inflight != 0;
}

/* Any thread: whether every poll of e is a system call, pending or not
 * (epoll): its owner polls it less often while it has local work. */
static inline bool coru__engine_poll_costly(const struct coru__engine *e)
{
    return coru__engine_head_of(e)->kind != CORU__ENGINE_URING;
}

/* An operation in flight. The engine calls op->complete(op, res) on the
 * owner thread, from coru__engine_wait, once per operation (res: the CQE
 * result, or for epoll the readiness events / -errno). */
struct coru__engine_op {
    void (*complete)(struct coru__engine_op *op, int res);
};

/* Chooses the engine kind for a run, once, before any worker starts.
 * want: 0 auto (io_uring if a probe ring can be created, else epoll; the
 * environment variable CORU_IO=epoll|uring overrides auto), 1 io_uring
 * (fail with the setup error, e.g. -EPERM, -ENOSYS), 2 epoll.
 * Also probes what the kernel offers (setup flags, IORING_OP_MSG_RING).
 * Returns the kind (> 0) or -errno. */
int coru__engine_select(int want);
/* Whether the last coru__engine_select picked io_uring on its own (want
 * 0 and no CORU_IO): a run that then cannot set up a worker's ring may
 * run on epoll instead. */
bool coru__engine_auto_uring(void);
/* Kind chosen by the last coru__engine_select. */
enum coru__engine_kind coru__engine_kind(void);
/* "io_uring", "epoll" or "none". */
const char *coru__engine_name(enum coru__engine_kind k);

/* Creates the calling thread's engine of the selected kind and records it
 * as this thread's own. Returns 0 and *out, or -errno. */
int coru__engine_create(struct coru__engine **out);
/* Destroys it; owner thread only. */
void coru__engine_destroy(struct coru__engine *e);

/* Owner thread: submits what is queued, then waits until at least one
 * completion or wake-up arrives or timeout_ns passes (-1: no limit; 0: do
 * not block), and dispatches every completion present. Returns the number
 * of operation completions dispatched (wake-ups are not counted), or
 * -errno on an unexpected failure (EINTR is handled inside). */
int coru__engine_wait(struct coru__engine *e, int64_t timeout_ns);

/* Any thread: makes the target's current or next coru__engine_wait return
 * promptly. From a worker thread of an io_uring run where the kernel has
 * IORING_OP_MSG_RING, a message on the caller's own ring; otherwise an
 * eventfd write that the target's ring (or epoll) is waiting on. Several
 * wakes before a wait may collapse into one. */
void coru__engine_wake(struct coru__engine *target);

/* Whether the kernel offered IORING_OP_MSG_RING (false for epoll). */
bool coru__engine_has_msg_ring(void);

/* ---- The scheduler's calls into the I/O layer (implemented in io.c) ---- */

/* Once per run, after coru__engine_select and before any worker starts:
 * what the I/O layer recorded about engines of earlier runs (epoll
 * registrations of fds) is stale from now on. */
void coru__engine_run_begin(void);

/* Owner, once per scheduling round and after every wait: submits the
 * cancels other threads posted to e (coru__engine_cancel_op, and closed
 * listeners' multishot accepts). Cheap when none is posted: two relaxed
 * loads. A post that this call misses wakes e, so the next round sees
 * it. */
void coru__engine_service(struct coru__engine *e);

/* Owner, at the end of a run: its scheduler loop has returned (no
 * coroutine runs on it any more) and e is not yet destroyed. Ends what
 * the I/O layer keeps armed on e by itself (multishot accepts) and waits
 * for their last completions, so that coru__engine_destroy finds no op
 * in flight. Other workers may still be running their own quiesce. */
void coru__engine_quiesce(struct coru__engine *e);

/* Any thread, for coru_cancel: if co is parked in an io_uring op, asks
 * the owner of that op's ring to cancel it (the op then completes with
 * -ECANCELED). Call after setting co->cancelled; a no-op when co has no
 * op in flight. */
void coru__engine_cancel_op(struct coru_co *co);

#endif
