/* The interface between engine.c (kind selection, dispatch, the calling
 * thread's engine) and its two backends, uring.c and epoll.c. Later I/O
 * code includes it to queue operations (coru__uring_get_sqe, or epoll_ctl
 * on ep.epfd). Never installed.
 *
 * Invariants:
 *   - An engine belongs to the thread that created it (its owner). Only the
 *     owner creates, waits on, submits to and destroys it, and only the
 *     owner reads or writes the fields marked "owner".
 *   - head.kind, head's SQ pointers, wake_fd, uring.ring_fd and the
 *     capability bits are written once in create, before the engine
 *     pointer is published, and never change.
 *     Other threads read only those (in coru__engine_wake). The scheduler
 *     publishes the pointer with a release/acquire pair or a lock, which is
 *     what makes those plain reads safe.
 *   - Lifetime: every coru__engine_wake(e) must return before
 *     coru__engine_destroy(e) starts. Both the eventfd and the ring fd are
 *     plain fd numbers; once destroy closes them the number can be reused
 *     by an unrelated file, so a late wake could write into someone else's
 *     fd. A MSG_RING that a wake already submitted but that the kernel has
 *     not yet delivered is fine: the sender's request holds a reference on
 *     the target ring's file, and the kernel drops the message with the
 *     ring (see uring.c, destroy).
 *   - user_data / epoll data: a value below CORU__TAG_LIMIT is one of the
 *     tags below; anything else is a struct coru__engine_op *, whose
 *     complete() the owner calls from coru__engine_wait. liburing's own
 *     LIBURING_UDATA_TIMEOUT (all ones) is ignored too. For io_uring, res
 *     is the CQE's res; for epoll, the ready events (EPOLLIN...; never
 *     negative, epoll does not report EPOLLET/EPOLLONESHOT back).
 *   - complete() may queue and submit more work and may wake engines
 *     (itself included), but must not call coru__engine_wait or destroy.
 *   - Every op must have completed before coru__engine_destroy; destroy
 *     panics if it reaps an op's CQE (io_uring).
 */
#ifndef CORU_ENGINE_IMPL_H
#define CORU_ENGINE_IMPL_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/engine.h"
#include "sched/lock.h"

/* Reserved user_data values. Ops are heap or stack pointers, never below
 * one page, so they cannot collide with these. */
enum {
    CORU__TAG_NONE = 0,
    CORU__TAG_WAKE_READ = 1,  /* the 8-byte read of the wake eventfd */
    CORU__TAG_MSG = 2,        /* a MSG_RING wake received from another ring */
    CORU__TAG_MSG_SEND = 3,   /* our own MSG_RING's completion (errors only
                                 when CQE skipping works) */
    CORU__TAG_MSG_SEEN = 4,   /* a MSG_SEND failure coru__engine_wake
                                 already handled; rewritten in place */
    CORU__TAG_TIMEOUT = 5,    /* reserved for the timer code */
    CORU__TAG_CANCEL = 6,     /* destroy's cancel of the wake read */
    CORU__TAG_NOP = 7,        /* an SQE taken back after a failed submit */
    CORU__TAG_LIMIT = 4096,   /* values below this are tags, not ops */
};

/* What the io_uring probe found; filled once by coru__uring_probe. */
struct coru__uring_caps {
    int err;             /* 0, or why no ring could be created (-EPERM...) */
    unsigned setup_flags;/* IORING_SETUP_* that worked for the probe ring */
    unsigned features;   /* IORING_FEAT_* the kernel reported */
    bool msg_ring;       /* IORING_OP_MSG_RING works (ring to ring) */
    bool msg_skip;       /* IOSQE_CQE_SKIP_SUCCESS verified on MSG_RING */
    bool multishot_accept; /* IORING_ACCEPT_MULTISHOT works (5.19+) */
    bool partial;        /* a feature probe could not run (no fd, no
                            memory): its feature stays off for this run,
                            and the next run probes again */
};

struct coru__uring {
    struct io_uring ring;   /* owner */
    int ring_fd;            /* immutable: MSG_RING target for wakers */
    unsigned setup_flags;   /* immutable */
    bool msg_ring;          /* immutable: this engine wakes others by MSG_RING */
    bool msg_skip;          /* immutable: sends carry IOSQE_CQE_SKIP_SUCCESS */
    bool multishot_accept;  /* immutable: accept.c may arm multishot accepts */
    bool read_armed;        /* owner: the wake read is queued or in flight */
    uint64_t read_buf;      /* kernel writes here while read_armed */
    /* Owner-only counters, for tests and debugging. */
    uint64_t msg_sent;      /* MSG_RING wakes submitted by this engine */
    uint64_t msg_recv;      /* MSG_RING wakes received */
    uint64_t msg_failed;    /* sends that failed and fell back to eventfd */
};

struct coru__epoll {
    int epfd;               /* owner; immutable after create */
};

struct coru_co;
struct coru__msa;

struct coru__engine {
    struct coru__engine_head head; /* first: kind, ops_inflight and the SQ
                                   counters the scheduler's inline checks
                                   read (engine.h, which has their
                                   ownership) */
    struct coru__lock cancel_lock; /* guards cancel_head */
    _Atomic(struct coru_co *) cancel_head; /* coroutines whose op the owner
                                   must cancel (io.c); written under
                                   cancel_lock, read unlocked as a hint */
    _Atomic(struct coru__msa *) msa_cancel_head; /* listeners closed elsewhere whose
                                   multishot accept armed here the owner
                                   must cancel (accept.c); written under
                                   cancel_lock, read unlocked as a hint */
    struct coru__msa *msa_armed; /* owner: multishot accepts armed here */
    unsigned cqe_flags;          /* owner: flags of the CQE being completed */
    int wake_fd;                 /* immutable: eventfd, any thread writes */
    bool self_wake;              /* owner: woken by itself, next wait polls */
    uint64_t fd_wakes;           /* owner: wake eventfd firings seen */
    union {
        struct coru__uring u;    /* kind == CORU__ENGINE_URING */
        struct coru__epoll ep;   /* kind == CORU__ENGINE_EPOLL */
    };
};

/* engine.h's coru__engine_head_of reads the head through the engine
 * pointer itself. */
_Static_assert(offsetof(struct coru__engine, head) == 0, "the engine head must come first");

/* The calling thread's engine (set by create, cleared by destroy). */
extern __thread struct coru__engine *coru__engine_tls;

/* Writes 1 to an eventfd, retrying on EINTR; EAGAIN (counter saturated)
 * means a wake is already pending. Any thread. Panics on EBADF & co, which
 * can only come from a wake racing destroy. */
void coru__engine_fd_wake(int fd);

/* ---- io_uring backend (uring.c) ---- */

/* Creates and tears down probe rings on the calling thread; fills *caps. */
void coru__uring_probe(struct coru__uring_caps *caps);
/* Owner thread. e->head.kind and e->wake_fd are set by the caller; it
 * sets e->head's SQ pointers. */
int coru__uring_create(struct coru__engine *e, const struct coru__uring_caps *caps);
void coru__uring_destroy(struct coru__engine *e);
int coru__uring_wait(struct coru__engine *e, int64_t timeout_ns);
/* Owner of `self` (an io_uring engine with msg_ring): posts a wake on
 * target's ring. Returns 0, or -errno when the message could not be sent
 * and the caller must fall back to the eventfd. */
int coru__uring_send_wake(struct coru__engine *self, struct coru__engine *target);
/* Owner thread: a free SQE of e's ring, never NULL. When the SQ is full it
 * submits what is queued and retries; it panics if the kernel keeps
 * refusing. Fill the SQE completely (user_data: a coru__engine_op * or a
 * tag) before calling anything else of the engine, since any engine call
 * may submit. */
struct io_uring_sqe *coru__uring_get_sqe(struct coru__engine *e);
/* The name of an SQE opcode, as the dump shows an I/O wait ("recv",
 * "connect", ...); a static string. */
const char *coru__uring_op_name(unsigned opcode);

/* ---- epoll backend (epoll.c) ---- */

int coru__epoll_create(struct coru__engine *e);
void coru__epoll_destroy(struct coru__engine *e);
int coru__epoll_wait(struct coru__engine *e, int64_t timeout_ns);

#endif
