/* The I/O engine behind each worker: one io_uring per worker, or epoll +
 * eventfd when io_uring cannot be set up. The scheduler uses it to sleep
 * (the idle wait) and to be woken from other threads; the I/O calls use it
 * to submit operations and receive their completions, so a completion, a
 * wake-up and the nearest timer all end the same wait.
 *
 * Ownership: an engine is created, waited on, submitted to and destroyed by
 * its owner thread only (the ring is IORING_SETUP_SINGLE_ISSUER where the
 * kernel has it). coru__engine_wake is the one call any thread may make on
 * an engine that is not its own.
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

#endif
