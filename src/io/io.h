/* The I/O core shared by net.c (and later files, UDP): park a coroutine
 * on one operation of its worker's engine.
 *
 * io_uring: coru__io_uring_op queues one SQE (plus a linked timeout for a
 * deadline) on the calling worker's ring and parks until its CQE; only the
 * CQE wakes the coroutine, so a buffer on its stack stays valid until the
 * kernel is done with it. A deadline is the kernel's linked timeout; a
 * coru_cancel asks the ring's owner worker to submit an async cancel
 * (coru__io_post_cancel), and the op then completes with -ECANCELED.
 *
 * epoll: the caller tries the system call on the non-blocking fd and,
 * after EAGAIN, parks in coru__io_wait_fd until the fd is ready (or the
 * deadline, or a cancel). Each fd has a state record (struct
 * coru__fdstate) registered once, edge-triggered, in the epoll of the
 * first worker that waits on it.
 *
 * Plain threads (no engine) use poll(2).
 */
#ifndef CORU_IO_H
#define CORU_IO_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "io/engine_impl.h"
#include "sched/lock.h"
#include "sched/waiter.h"

struct coru__waiter;
struct coru_co;

/* Per-fd state, created on first use and never freed (fds are reused). */
struct coru__fdstate {
    struct coru__engine_op base;  /* epoll: data.ptr of the registration */
    struct coru__lock lock;
    int fd;
    bool probed, is_sock;         /* lock: whether the fd is a socket */
    struct coru__engine *eng;     /* lock: epoll it is registered in */
    unsigned epoch;               /* lock: coru__io_epoch when registered */
    unsigned wid;                 /* lock: id of the worker owning eng */
    struct coru__waitq rdq, wrq;  /* lock: parked waiters (several may
                                     wait on one fd: acceptors of one
                                     listener); an edge wakes them all */
    _Atomic bool rd_ready, wr_ready; /* edge seen while nobody waited */
    _Atomic bool rd_drained;      /* hint (net.c): the last read was short */
    _Atomic bool rd_hup;          /* epoll reported EOF or an error on fd
                                     (sticky until forgotten): a short
                                     read no longer means "drained" */
    struct coru__msa *msa;        /* lock: multishot accept state (accept.c) */
    struct coru__uop *uops;       /* lock: io_uring ops in flight on fd, so
                                     that coru_close can end them (io.c) */
    _Atomic uint32_t use;         /* bit 0: closing (coru_close began); the
                                     rest, in steps of 2: coroutine calls in
                                     progress on fd (coru__fd_use) */
};

/* Uses of an fd by calls in progress, against coru_close, as Go's fdMutex
 * does: a coroutine's call takes a use before its first system call and
 * gives it back as it returns (a plain thread's, around each system
 * call). coru_close marks the fd closing (no use is taken and no wait
 * begins from then on), wakes what waits on it, and the close(2) itself
 * is made by whoever gives back the last use (coru_close, when there is
 * none). So no system call or io_uring op of coru's ever runs against a
 * closed fd, or lands on its number after another file took it.
 * use: 0, or -EBADF when the fd is closing, or -ENOMEM when its state
 * record cannot be allocated (the call returns that); fds past the state
 * table are not tracked (always 0). Once a use succeeded, the fd's record
 * exists for the rest of the process (coru__fdstate never fails for it). */
int coru__fd_use(int fd);
void coru__fd_unuse(int fd);

/* Bumped at every start of a run (coru__engine_run_begin, from
 * coru_run): a registration made in an earlier run names an engine that
 * no longer exists, so fd states whose epoch is not the current one count
 * as unregistered. */
extern _Atomic unsigned coru__io_epoch;

/* The state record of fd (>= 0); NULL for fd >= 2^20, and when the
 * record's chunk cannot be allocated (see coru__fd_use). */
struct coru__fdstate *coru__fdstate(int fd);
/* Whether fd is a socket (cached). */
bool coru__fd_is_socket(int fd);
/* The same, looked up again: for a socket call that got -ENOTSOCK, when a
 * plain close(2) let the number go to another kind of file. */
bool coru__fd_reprobe(int fd);

/* The calling thread's engine if it is a worker running a coroutine that
 * may park; NULL for plain threads (and generator bodies). */
struct coru__engine *coru__io_engine(void);

typedef void (*coru__prep_fn)(struct io_uring_sqe *sqe, void *ctx);
/* io_uring: runs one op on fd (-1: none, as for open) prepared by
 * prep(sqe, ctx) and returns its CQE result, -ETIMEDOUT (deadline),
 * -ECANCELED (coru_cancel), or -EBADF (coru_close(fd) began before it or
 * while it waited). The caller holds a use of fd. */
int coru__io_uring_op(struct coru__engine *e, int fd, coru__prep_fn prep, void *ctx, int64_t deadline);

enum { CORU__IO_READ = 1, CORU__IO_WRITE = 2 };
/* epoll (or plain thread, e == NULL): waits until fd may be ready for dir.
 * Returns 0 (retry the call), -ETIMEDOUT, -ECANCELED, -EPERM (fd cannot be
 * polled: a regular file), -EBADF (coru_close began), or -errno. */
int coru__io_wait_fd(struct coru__engine *e, int fd, int dir, int64_t deadline);

/* Wakes waiters of fd with -EBADF (epoll), asks the rings of io_uring
 * ops in flight on fd to cancel them (they return -EBADF), and forgets its
 * registration and any multishot accept state; before close(fd), and for
 * a new fd whose number may have been used before. */
void coru__io_forget_fd(int fd);
/* coru_close: marks fd closing, forgets it as above, and closes it now
 * (returning close(2)'s 0 or -errno) or, when calls still use it, lets
 * the last of them close it (returning 0); -EBADF if a coru_close of it
 * is already under way. */
int coru__io_close_fd(int fd);

/* accept.c: multishot accept on io_uring (e->u.multishot_accept). Returns
 * the accepted fd or -errno like accept4 (-ETIMEDOUT, -ECANCELED), or
 * -ENOSYS when lfd is past the fd state table (use a single-shot accept). */
int coru__msa_accept(struct coru__engine *e, int lfd, int64_t deadline);
/* Detaches lfd's multishot state: its parked acceptors get -EBADF, its
 * queued connections are closed, an armed multishot is cancelled. */
void coru__msa_close(int lfd);
/* Owner: submits the cancels other threads posted for closed listeners. */
void coru__msa_drain_cancels(struct coru__engine *e);
/* Owner, at the end of a run, before the engine is destroyed: ends every
 * multishot armed on e and waits for their last completions. */
void coru__io_quiesce(struct coru__engine *e);

/* Cancellation of io_uring ops (the cancel inbox of an engine, io.c).
 * Any thread: asks the owner of co's ring to cancel co's op in flight
 * (coru__engine_cancel_op for coru_cancel; coru_close). */
void coru__io_post_cancel(struct coru_co *co);
/* Owner: submits the cancels posted to e, and those of closed listeners'
 * multishot accepts (coru__engine_service). */
void coru__io_drain_cancels(struct coru__engine *e);

#endif
