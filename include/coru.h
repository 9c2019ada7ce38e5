/*
 * coru.h - the whole public API of coru, an M:N work-stealing coroutine
 * runtime for Linux built on io_uring (with an epoll fallback).
 *
 * Conventions (they hold for every call below):
 *   - Errors come back as negative errno values (-EINVAL, -ENOMEM, ...);
 *     success is 0 or a count. coru never sets errno.
 *   - "May park" means the call can suspend the calling coroutine; its
 *     worker thread runs other coroutines meanwhile. Calls that may park
 *     must be made from a coroutine unless they say a plain thread may call
 *     them; from elsewhere they return -EPERM.
 *   - Handles (coru_t, coru_gen, coru_chan, ...) are opaque.
 *   - Deadlines are absolute times on coru_now()'s clock, in nanoseconds.
 *     CORU_NEVER (-1) means no deadline, and only it: any other negative
 *     value is a time long past. A deadline already past makes a call
 *     that would block return -ETIMEDOUT at once (what can complete at
 *     once still does: "try once"). Every call that may
 *     park has a _dl twin taking a deadline, and a try form where that
 *     makes sense (it returns -EAGAIN instead of parking).
 *   - A coroutine cancelled with coru_cancel gets -ECANCELED from its
 *     current blocking call, and from every later call that would have to
 *     park (cancellation is sticky, so a cancelled coroutine cannot block
 *     again by mistake). A call that can complete at once still does: a
 *     cancelled coroutine can drain a channel, take a free mutex or join
 *     a finished coroutine while it cleans up. -ECANCELED wins over
 *     -ETIMEDOUT when both apply.
 *   - A wait with a deadline (a sleep, or a _dl call with a deadline
 *     other than CORU_NEVER) arms a timer in its worker's heap, which
 *     grows as needed: when no memory can be had for that, the call
 *     returns -ENOMEM without having waited (nothing was sent, received
 *     or taken), whatever its own list of errors says.
 *
 * Groups, in this order: runtime (coru_run, options, stats); coroutines
 * (spawn, join, yield, cancel); channels and select (coru_chan_*,
 * coru_select); time (coru_now, coru_sleep); synchronisation (mutex,
 * cond, sema, waitgroup); I/O (TCP, read/write); the blocking pool
 * (coru_blocking, coru_getaddrinfo); generators (coru_gen_*).
 */
#ifndef CORU_H
#define CORU_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CORU_BUILDING)
#define CORU_API __attribute__((visibility("default")))
#else
#define CORU_API
#endif

/* ------------------------------------------------------------------------
 * Runtime
 * ------------------------------------------------------------------------ */

/* The function a coroutine runs. Its return value is what coru_join gives. */
typedef void *(*coru_fn)(void *arg);

/* Which I/O engine the workers sleep and do I/O in. */
enum coru_io {
    CORU_IO_AUTO = 0,  /* io_uring if it can be set up, else epoll. The
                          environment variable CORU_IO=epoll|uring overrides
                          AUTO. */
    CORU_IO_URING = 1, /* io_uring or fail with the setup error. */
    CORU_IO_EPOLL = 2, /* epoll + eventfd. */
};

/* Options for coru_run. Zero-initialise and set what you need; 0 means
 * "the default" for every field. */
struct coru_opts {
    unsigned workers;  /* worker threads; default: CPUs this process may use
                          (sched_getaffinity), at most 256. */
    size_t stack_size; /* default stack size of a coroutine in bytes, rounded
                          up to the page size; default 64 KiB, minimum 16 KiB.
                          The environment variable CORU_STACK_SIZE (bytes)
                          overrides the built-in default. */
    enum coru_io io;   /* I/O engine; default CORU_IO_AUTO. */
    int dump_signal;   /* a signal (SIGQUIT, SIGUSR1, ...) on which the run
                          writes coru_dump to stderr and keeps running (see
                          "Seeing inside a run" below); 0: the environment
                          variable CORU_DUMP_SIGNAL (QUIT, USR1, USR2, or a
                          number), else none. */
    int stall_ms;      /* report a coroutine that runs this long without
                          parking or yielding; 0: CORU_STALL_MS from the
                          environment, else 100; negative (or
                          CORU_STALL_MS=0): no stall reports. */
    enum coru_deadlock {
        CORU_DEADLOCK_DEFAULT = 0, /* CORU_DEADLOCK=report|abort|off from
                                      the environment, else REPORT */
        CORU_DEADLOCK_REPORT = 1,  /* print the report once, keep waiting */
        CORU_DEADLOCK_ABORT = 2,   /* print the report and abort(), as Go */
        CORU_DEADLOCK_OFF = 3,     /* no deadlock detection */
    } deadlock;
    unsigned deadlock_grace_ms; /* how long the run must stay stuck before
                          the report; 0: 1000 ms */
};

/* Starts the runtime: `workers` threads, each with its own run queue and I/O
 * ring, and runs fn(arg) as the first coroutine. The calling thread becomes
 * worker 0. Returns once every coroutine (not just fn) has finished; none is
 * dropped (so a plain thread that keeps spawning keeps the run going).
 * SIGPIPE is blocked on the workers while the run lasts (the calling
 * thread's mask is restored on return), so that a write to a pipe whose
 * reader has gone fails with -EPIPE instead of killing the process; a
 * SIGPIPE raised on a worker meanwhile is discarded. The process's signal
 * dispositions are not touched.
 * Returns 0, or: -EINVAL (fn NULL, bad option), -EBUSY (a runtime is already
 * running in this process, or called from a coroutine), -ENOMEM, -EAGAIN
 * (a worker thread could not be started), -EMFILE or -ENFILE (no fds for
 * a worker's epoll or eventfd), or the I/O engine's setup error
 * (CORU_IO_URING only: -EPERM, -ENOSYS, ...). On such an error nothing
 * ran, and nothing is left behind: a later coru_run starts afresh.
 * CORU_IO_AUTO uses epoll when io_uring cannot be set up, for its probe
 * or for any worker's ring; a lasting refusal (EPERM, ENOSYS) is
 * remembered for the process, a passing one (ENOMEM, EMFILE) is tried
 * again at the next run. */
CORU_API int coru_run(coru_fn fn, void *arg, const struct coru_opts *opts);

/* Per-worker counters. Each worker writes only its own; a read while the
 * runtime runs is a consistent-enough snapshot (each field atomic). */
struct coru_worker_stats {
    uint64_t switches; /* context switches into coroutines */
    uint64_t spawns;   /* coroutines spawned from this worker */
    uint64_t steals;   /* coroutines this worker took from other workers */
    uint64_t parks;    /* coroutines that parked (blocked) on this worker */
    uint64_t wakeups;  /* parked coroutines made runnable by this worker */
    uint64_t sleeps;   /* times this worker slept in its ring/epoll wait */
    uint64_t handoffs; /* I/O-woken coroutines this worker handed to a lower,
                          less busy worker instead of running them (under
                          light load the runtime packs I/O work onto the
                          first workers, so the others can sleep) */
    uint64_t timer_steals; /* due timers this worker fired for another one
                          stuck in a long computation (a coroutine that did
                          not yield for over a millisecond): their
                          coroutines ran here instead of waiting for it */
    uint64_t moves;    /* coroutines that left this worker to join the worker
                          holding a channel they found busy (see
                          coru_worker) */
};

struct coru_stats {
    unsigned workers;                  /* workers of the current or last run */
    const char *engine;                /* "io_uring", "epoll", or "none" */
    struct coru_worker_stats total;    /* sum over the workers */
    struct coru_worker_stats worker[256]; /* worker[i] for i < workers; the
                                          entries past them are zero */
};

/* Fills *out with the counters of the running runtime, or of the last one
 * that ran if none is running. Any thread may call it. Returns 0 or -EINVAL
 * (out NULL). */
CORU_API int coru_stats(struct coru_stats *out);

/* ------------------------------------------------------------------------
 * Coroutines
 * ------------------------------------------------------------------------ */

typedef struct coru_co coru_t;

/* Per-spawn attributes; NULL or zero fields mean the defaults.
 *
 * Stacks: a coroutine gets its stack when it first runs (a spawned but not
 * yet started coroutine costs about 150 bytes), from a per-worker pool.
 * Every stack has a 4 KiB guard page below it: a page of its own while the
 * process's mappings stay well under vm.max_map_count (about 14,300
 * stacks at the default 65,530), and past that a guard installed with
 * MADV_GUARD_INSTALL, which costs no mapping (Linux 6.13 and later). On
 * older kernels the stacks past that budget carry instead a 256-byte
 * canary, checked at every switch out and when the stack is freed. An
 * overflow aborts the process with
 *   coru: coroutine <id> overflowed its stack (<size> bytes)
 * The window: a frame of up to 4 KiB (guard page) or 256 bytes (canary)
 * cannot step over the protection unseen; a single larger frame (a big
 * local array) can land beyond it and corrupt memory: give such
 * coroutines a bigger stack. A guard page stops the overflow at the first
 * touch; a canary only reports it at the next switch out or exit. If no
 * memory can be had for a stack when a coroutine first runs, the process
 * aborts, as Go does, with a message naming it:
 *   coru: prepare: no memory for the stack of coroutine <id> "<name>" (<size> bytes): -12
 * (a kernel that refuses a guard page is no such case: the stack gets a
 * canary instead, and no more guard pages are tried). */
struct coru_attr {
    size_t stack_size; /* bytes; 0 = the runtime's default */
    const char *name;  /* shown by coru_dump, the reports and gdb; copied
                          (up to 31 bytes); NULL: none */
};

/* Creates a coroutine running fn(arg) and makes it runnable; it may run on
 * any worker. Returns 0 and a handle in *out that must be given to
 * coru_join or coru_detach exactly once. Callable from any coroutine, and
 * from a plain thread while the runtime runs: a plain thread's spawn that
 * returns 0 runs to its end inside this run (coru_run waits for it); one
 * that comes too late, as the run is deciding to end, fails with -EPERM
 * and nothing runs.
 * Errors: -EINVAL (fn or out NULL, stack_size above 1 GiB), -EPERM (no
 * runtime is running, not yet started, or ending), -ENOMEM (no memory for
 * the coroutine). Never parks. */
CORU_API int coru_spawn(coru_t **out, coru_fn fn, void *arg, const struct coru_attr *attr);

/* coru_spawn without a handle: fire and forget; the result is discarded.
 * Same errors as coru_spawn except out. Never parks. */
CORU_API int coru_go(coru_fn fn, void *arg, const struct coru_attr *attr);

/* No deadline. */
#define CORU_NEVER ((int64_t)-1)

/* Waits for the coroutine to finish and stores its return value in *result
 * (if result is not NULL), then releases the handle. May park. Only from a
 * coroutine.
 * Errors: -EINVAL (h NULL), -EDEADLK (h is the calling coroutine; the
 * handle stays valid), -EPERM (not called from a coroutine, or from inside
 * a generator body; the handle stays valid). */
CORU_API int coru_join(coru_t *h, void **result);

/* coru_join with a deadline. On -ETIMEDOUT or -ECANCELED the handle stays
 * valid (join or detach it later). Same other errors as coru_join. */
CORU_API int coru_join_dl(coru_t *h, void **result, int64_t deadline);

/* Cancels the coroutine: its current blocking call (if it is parked) and
 * every later call that would park return -ECANCELED, so it can clean up
 * and return.
 * Cancelling a finished coroutine does nothing. Any thread may call it;
 * the handle stays valid. Returns 0 or -EINVAL (h NULL). Never parks. */
CORU_API int coru_cancel(coru_t *h);

/* Releases a handle without waiting; the coroutine runs on. Returns 0 or
 * -EINVAL (h NULL). Never parks. */
CORU_API int coru_detach(coru_t *h);

/* Puts the calling coroutine at the back of its worker's run queue and runs
 * the others that are ready. It never parks, so it is not a cancellation
 * point: it returns 0 in a cancelled coroutine too (use coru_sleep(0) to
 * poll for a cancel). Returns 0, or -EPERM outside a coroutine or inside a
 * generator body. */
CORU_API int coru_yield(void);

/* The running coroutine, or NULL in a plain thread. The pointer is only an
 * identity (it is not a handle to join). */
CORU_API coru_t *coru_self(void);

/* A coroutine's id: unique within the process, starting at 1. coru_id(NULL)
 * is the id of the calling coroutine, 0 in a plain thread. */
CORU_API uint64_t coru_id(const coru_t *co);

/* Index of the worker running the caller (0..workers-1), or -1 outside the
 * runtime. A coroutine may move between workers at any park or yield, and
 * at a blocking channel send or receive that finds the channel in use on
 * another worker (it moves there: coroutines that contend for a channel
 * gather on one worker instead of passing its lock between two). */
CORU_API int coru_worker(void);

/* Names the calling coroutine (copied, up to 31 bytes; NULL or "" clears
 * it), as coru_attr.name does at spawn. Returns 0, or -EPERM outside a
 * coroutine. Never parks. */
CORU_API int coru_set_name(const char *name);

/* ------------------------------------------------------------------------
 * Seeing inside a run
 *
 * The runtime keeps, for every live coroutine, its id, name, parent (the
 * coroutine that spawned it; 0: a plain thread), spawn site (the return
 * address of the coru_spawn or coru_go call, shown as symbol+offset and
 * object through dladdr: build with -rdynamic, or read a binary's own
 * static functions with gdb's `coru list`), its state (running on worker
 * N, runnable, parked) and, when parked, on what and since when: a
 * channel send or receive (the channel's address), a select, a sleep
 * (until when), a join (whose id), a mutex, condition variable,
 * semaphore or wait group, an I/O call (its fd and operation), the
 * blocking pool (the function it runs). Cost: a few stores per spawn and
 * per park, no lock.
 *
 * coru_dump writes it, one line per coroutine, with the function it runs
 * in brackets:
 *   coroutine 7 "conn" [handle] parked 1.20 s: io recv fd 12; parent 3; spawned at serve+0x5e (hello_server)
 * or, with CORU_DUMP_GROUPED, one line per (state, wait, spawn site) with
 * its count, largest first, as Go's goroutine profile does:
 *   9997 x parked: io recv; spawned at serve+0x5e (hello_server); e.g. 12 13 14
 *
 * Signals: with coru_opts.dump_signal (or CORU_DUMP_SIGNAL=QUIT) the run
 * installs a handler for that signal while it lasts (the previous one is
 * restored when coru_run returns) and blocks it on its workers, so that
 * a signal sent to the process (kill -QUIT <pid>) reaches the monitor
 * thread; one sent to a worker thread itself (raise() in a coroutine,
 * pthread_kill) waits there, blocked, and is discarded when the run ends.
 * The handler itself only posts a
 * semaphore (sem_post, async-signal-safe) and returns; the runtime's
 * monitor thread then writes the dump to stderr, with the ordinary
 * (not async-signal-safe) calls: the registry's mutex, malloc, dladdr,
 * stdio-free write(2). So the dump appears a few ms after the signal,
 * it works while every worker is stuck (the monitor is its own thread),
 * and a signal that lands inside malloc or dlopen cannot deadlock it.
 * Up to 1,000 coroutines it is the full list, past that the grouped one.
 *
 * Reports the runtime makes by itself, on stderr, from the monitor
 * thread (started by coru_run unless both are off; if it cannot be
 * started, the run goes on unwatched and says so on stderr: "coru: no
 * monitor thread"):
 *   - Stall: a coroutine that has run for coru_opts.stall_ms (default 100
 *     ms) without parking, yielding or spawning (a loop that starts many
 *     coroutines is not a stall) is reported once per stall, with its
 *     id, name, worker and how long so far, then a backtrace of its worker
 *     taken at that moment (the monitor sends SIGURG to the worker thread;
 *     its handler calls backtrace_symbols_fd. SIGURG is otherwise ignored
 *     by default; a program that has its own SIGURG handler gets no
 *     backtrace, the report says so). Detection granularity: a quarter of
 *     the threshold.
 *   - Deadlock: when every live coroutine is parked on something only
 *     another coroutine can complete (a channel or select without a
 *     deadline, a mutex, cond, sema or wait group, a join, an endless
 *     sleep), none of those objects has been used by a plain thread, no
 *     plain thread is blocked inside a coru call, no coroutine is
 *     runnable, and nothing has run for deadlock_grace_ms (1 s):
 *       coru: deadlock: all N coroutines are parked and nothing can wake them
 *     and the grouped dump. A coroutine with a deadline, in I/O or in the
 *     blocking pool is never part of one. The default is to report once
 *     and keep waiting, not to abort as Go does: coru cannot see what a
 *     plain thread of the program will do (a signal-handling thread that
 *     closes a shutdown channel it never touched before looks exactly
 *     like a deadlock until it does), and killing a service on a guess is
 *     worse than a line on stderr. Choose CORU_DEADLOCK_ABORT (or
 *     CORU_DEADLOCK=abort) where no plain thread ever feeds the run, as
 *     in tests.
 * ------------------------------------------------------------------------ */

/* coru_dump flags. */
#define CORU_DUMP_GROUPED 1 /* one line per (state, wait, site) with counts */

/* Writes every live coroutine of the running runtime to fd (see above).
 * Any thread may call it, while the runtime runs, from a coroutine too
 * (it does not park; it takes the registry's mutex for the copy only).
 * Returns the number of coroutines written, or -EINVAL (bad flags, fd <
 * 0), -EPERM (no runtime is running), -ENOMEM, or write(2)'s error. */
CORU_API int coru_dump(int fd, int flags);

/* ------------------------------------------------------------------------
 * Channels
 *
 * A channel carries fixed-size elements (copied by value) between any
 * coroutines on any workers. Capacity 0 is a rendezvous: a send completes
 * only when a receiver has taken the value. Capacity N buffers N elements.
 * FIFO per channel. Closed: receivers drain what is buffered, then get
 * -EPIPE; senders get -EPIPE at once.
 * Send and receive may also be called from plain threads outside the
 * runtime (they block the thread on a futex), so threaded code can feed
 * coroutines. Not from a generator body (-EPERM), even when the call would
 * not block.
 * A channel may be destroyed once no call on it is in progress: a sender
 * whose value was received never touches the channel again.
 * ------------------------------------------------------------------------ */

typedef struct coru_chan coru_chan;

/* Creates a channel of elements of elem_size bytes (1..65536) holding up to
 * capacity elements (0: unbuffered). Returns 0 and *out, or -EINVAL
 * (out NULL, elem_size 0 or too large, capacity above 2^31), -ENOMEM. */
CORU_API int coru_chan_create(coru_chan **out, size_t elem_size, size_t capacity);

/* Sends the elem_size bytes at elem. May park until a receiver takes it
 * (unbuffered) or there is room (buffered); a plain thread may call it.
 * Returns 0, or -EINVAL (ch or elem NULL), -EPIPE (the channel is closed,
 * before or while waiting: the value was not delivered), -EPERM (in a
 * generator body). */
CORU_API int coru_chan_send(coru_chan *ch, const void *elem);

/* Receives one element into elem (elem_size bytes). May park until one is
 * there; a plain thread may call it. Returns 0, or -EINVAL (ch or elem
 * NULL), -EPIPE (closed and drained), -EPERM (in a generator body). */
CORU_API int coru_chan_recv(coru_chan *ch, void *elem);

/* Closes the channel: parked receivers wake with -EPIPE once the buffer is
 * drained, parked and later senders get -EPIPE. Any thread may call it.
 * Returns 0, or -EINVAL (ch NULL), -EPIPE (already closed). Never parks. */
CORU_API int coru_chan_close(coru_chan *ch);

/* Frees the channel. No coroutine may be using or waiting on it. NULL is
 * ignored. */
CORU_API void coru_chan_destroy(coru_chan *ch);

/* Deadline twins: as send/recv, plus -ETIMEDOUT when the deadline passes
 * first (nothing was sent or received) and -ECANCELED. */
CORU_API int coru_chan_send_dl(coru_chan *ch, const void *elem, int64_t deadline);
CORU_API int coru_chan_recv_dl(coru_chan *ch, void *elem, int64_t deadline);
/* Non-blocking: complete at once or return -EAGAIN (unbuffered: only when
 * a partner is already waiting). Never park; any thread, and generator
 * bodies, may call them. Same other errors as send/recv. */
CORU_API int coru_chan_try_send(coru_chan *ch, const void *elem);
CORU_API int coru_chan_try_recv(coru_chan *ch, void *elem);

/* One case of coru_select. */
enum coru_sel_op { CORU_SEL_SEND = 1, CORU_SEL_RECV = 2 };
struct coru_sel {
    coru_chan *ch;       /* the channel (a NULL channel never becomes ready) */
    enum coru_sel_op op; /* send or receive */
    void *elem;          /* value to send, or buffer to receive into */
    int rc;              /* out: the chosen case's result, 0 or -EPIPE */
};

/* coru_select flags. */
#define CORU_SEL_DEFAULT 1 /* do not park: -EAGAIN when no case is ready */

/* Waits until one of n cases can complete, completes exactly that one and
 * returns its index; cases[i].rc is 0, or -EPIPE for a closed channel (a
 * receive from a closed, drained channel, or a send to a closed one,
 * counts as ready, as in Go). When several are ready at once it picks
 * uniformly at random. Channels are locked in address order, so selects
 * never deadlock each other. May park (not with CORU_SEL_DEFAULT); a plain
 * thread may call it.
 * Returns the index, or -EAGAIN (CORU_SEL_DEFAULT and nothing ready),
 * -ETIMEDOUT, -ECANCELED, -EINVAL (cases NULL with n > 0, n > 1024, an op
 * other than send/recv, elem NULL on a non-NULL channel, a flag other than
 * CORU_SEL_DEFAULT), -EPERM (in a generator body, unless
 * CORU_SEL_DEFAULT), -ENOMEM. n == 0 parks until the deadline
 * (-ETIMEDOUT) or, with CORU_NEVER, until cancelled (a plain thread,
 * which cannot be cancelled, forever). */
CORU_API int coru_select(struct coru_sel *cases, size_t n, int64_t deadline, int flags);

/* ------------------------------------------------------------------------
 * Time
 *
 * Each worker keeps the timers armed on it (every sleep and every
 * deadline of a parked call) in a heap, with FIFO lanes for timers of
 * equal duration: a million sleeps of the same length cost O(1) each to
 * arm, cancel and fire; others O(log n). No system call per timer: a
 * worker with nothing to run sleeps in its ring (or epoll) wait until its
 * nearest timer, and that is the one kernel timeout it has.
 *
 * When a wait ends: never before its deadline. After it, by what the
 * worker's load adds: a busy worker looks for due timers every 16
 * switches, an idle one wakes for them, and timers due together fire in
 * deadline order (per worker; on two workers, deadlines closer than that
 * slack may end in either order). A coroutine that computes for long
 * without parking holds up its worker, but not the timers of the others
 * parked there: once it has not switched for about a millisecond, an idle
 * worker fires their due timers and runs them itself (counted in
 * coru_worker_stats.timer_steals). The deadline of an io_uring operation
 * is the exception: only its own ring can cancel it, so it waits for the
 * computation.
 * ------------------------------------------------------------------------ */

/* Monotonic clock (CLOCK_MONOTONIC) in nanoseconds. Any thread. */
CORU_API int64_t coru_now(void);

/* Parks the caller for ns nanoseconds (ns <= 0: does not park; a
 * coroutine yields to let others run). A plain thread sleeps on a futex.
 * Returns 0, or -ECANCELED (cancelled before or while sleeping; also for
 * ns <= 0, so coru_sleep(0) is a cancellation point, as asyncio.sleep(0)
 * is), -EPERM (in a generator body), -ENOMEM (no memory for the timer:
 * it did not sleep). */
CORU_API int coru_sleep(int64_t ns);
/* Parks until coru_now() >= deadline; a deadline already past (any
 * negative value but CORU_NEVER included) is coru_sleep(0). CORU_NEVER
 * parks until cancelled (-ECANCELED; a plain thread, forever). Same
 * returns as coru_sleep. */
CORU_API int coru_sleep_until(int64_t deadline);

/* ------------------------------------------------------------------------
 * Synchronisation: coroutine-aware versions of the pthread objects. They
 * park the coroutine, never the worker; plain threads may use them too
 * (they block on a futex). Every blocking call has a _dl twin returning
 * -ETIMEDOUT, and returns -ECANCELED when the caller is cancelled, -EPERM
 * in a generator body, -EINVAL for a NULL object.
 * ------------------------------------------------------------------------ */

typedef struct coru_mutex coru_mutex;
typedef struct coru_cond coru_cond;
typedef struct coru_sema coru_sema;
typedef struct coru_waitgroup coru_waitgroup;

/* Mutex: not recursive; hand-off is FIFO among waiters. As Go's
 * sync.Mutex, a locked mutex belongs to no coroutine: any coroutine or
 * plain thread may unlock it (one locks, another releases), which hands
 * it to the next waiter. create returns 0 or -EINVAL/-ENOMEM; destroy of
 * a locked or waited-on mutex is misuse. */
CORU_API int coru_mutex_create(coru_mutex **out);
CORU_API void coru_mutex_destroy(coru_mutex *m);
CORU_API int coru_mutex_lock(coru_mutex *m);
CORU_API int coru_mutex_lock_dl(coru_mutex *m, int64_t deadline);
/* 0, or -EBUSY when held. Never parks. */
CORU_API int coru_mutex_trylock(coru_mutex *m);
/* 0, or -EPERM when the mutex is not locked (by anyone). */
CORU_API int coru_mutex_unlock(coru_mutex *m);

/* Condition variable used with a coru_mutex. wait unlocks m, parks until
 * signalled, and locks m again before returning, whatever it returns
 * (0, -ETIMEDOUT, -ECANCELED). Spurious wake-ups do not happen, but
 * re-check your predicate as with pthreads. wait returns -EPERM, without
 * touching m, when m is not locked; wait_dl with a deadline already past
 * returns -ETIMEDOUT without unlocking m. */
CORU_API int coru_cond_create(coru_cond **out);
CORU_API void coru_cond_destroy(coru_cond *c);
CORU_API int coru_cond_wait(coru_cond *c, coru_mutex *m);
CORU_API int coru_cond_wait_dl(coru_cond *c, coru_mutex *m, int64_t deadline);
CORU_API int coru_cond_signal(coru_cond *c);
CORU_API int coru_cond_broadcast(coru_cond *c);

/* Counting semaphore. create: initial count (0..2^31). */
CORU_API int coru_sema_create(coru_sema **out, unsigned initial);
CORU_API void coru_sema_destroy(coru_sema *s);
CORU_API int coru_sema_acquire(coru_sema *s);
CORU_API int coru_sema_acquire_dl(coru_sema *s, int64_t deadline);
/* 0, or -EAGAIN when the count is 0. Never parks. */
CORU_API int coru_sema_try_acquire(coru_sema *s);
/* 0, or -EOVERFLOW past 2^31. Never parks. */
CORU_API int coru_sema_release(coru_sema *s);

/* Go's WaitGroup: add(n) before starting n tasks, each calls done, wait
 * parks until the count is 0. add with a negative n is allowed; a count
 * going below 0 returns -EINVAL and one above LONG_MAX -EOVERFLOW, both
 * leaving it unchanged. */
CORU_API int coru_waitgroup_create(coru_waitgroup **out);
CORU_API void coru_waitgroup_destroy(coru_waitgroup *wg);
CORU_API int coru_waitgroup_add(coru_waitgroup *wg, long n);
CORU_API int coru_waitgroup_done(coru_waitgroup *wg);
CORU_API int coru_waitgroup_wait(coru_waitgroup *wg);
CORU_API int coru_waitgroup_wait_dl(coru_waitgroup *wg, int64_t deadline);

/* ------------------------------------------------------------------------
 * I/O
 *
 * A coroutine's I/O call queues the operation on its worker's engine and
 * parks until it completes, while the worker runs other coroutines. With
 * io_uring the kernel does the operation (sockets and real async file
 * I/O); with epoll the call tries the system call on the non-blocking fd
 * and parks on readiness after EAGAIN (files go to the blocking pool).
 * Every call returns a count or 0 on success and a negative errno on
 * failure (-EBADF for a bad fd, -ECONNRESET or -EPIPE for a reset peer or
 * a pipe without reader: writes never raise SIGPIPE, whatever the fd, on
 * a worker or from a plain thread). Every call has a _dl twin with a
 * deadline (-ETIMEDOUT) and fails with -ECANCELED when the caller is
 * cancelled and would have to wait: a cancelled coroutine still reads
 * data already there and writes into room already there, as with a past
 * deadline (file calls, which always go to the kernel or the pool, return
 * -ECANCELED without starting). Any number of coru_cancel calls, from any
 * threads, end a parked call once. A timed-out or cancelled call has
 * waited for the kernel to let go of its buffer before it returns.
 * coru_close of an fd ends every coroutine's call parked on it, or
 * entering it while the close runs, with -EBADF, on both engines. Close
 * fds that coru's calls have used with coru_close, not close(2): coru
 * keeps per-fd state (the epoll registration, whether it is a socket)
 * that close(2) does not clear, so an io_uring operation parked on the fd
 * stays parked until it completes, and on epoll a later fd of your own
 * (pipe, socketpair, socket) that gets the same number may never report
 * readiness (fds coru creates reset that state themselves). From a plain
 * thread these calls block the thread (as the plain system calls would).
 * fds given out by coru are non-blocking and close-on-exec; an fd of your
 * own must be non-blocking too (epoll would otherwise block the worker in
 * the system call).
 * ------------------------------------------------------------------------ */

struct sockaddr;

/* coru_tcp_listen flags. */
#define CORU_REUSEPORT 1 /* SO_REUSEPORT: several listeners share the port */

/* Listens on host:port over TCP (host: a numeric IPv4 or IPv6 address, or
 * NULL / "" for all IPv6 and IPv4 addresses; port 0 picks a free port,
 * see coru_local_port). SO_REUSEADDR is set. backlog <= 0 means SOMAXCONN.
 * Returns the listening fd, or -EINVAL (bad host or flags) or the socket
 * calls' errors (-EADDRINUSE, ...). Never parks. */
CORU_API int coru_tcp_listen(const char *host, uint16_t port, int backlog, int flags);
/* The local port of a socket, or -errno. */
CORU_API int coru_local_port(int fd);

/* Accepts one connection; returns its fd (TCP_NODELAY is not set; see
 * coru_tcp_nodelay). May park. peer/peerlen may be NULL. Errors: the
 * accept errors (-EMFILE when out of fds, see below), -EBADF, -EINVAL,
 * -ETIMEDOUT, -ECANCELED.
 * On io_uring with multishot accept (Linux 5.19+; CORU_NO_MULTISHOT=1 in
 * the environment turns it off), the first accept on a listener arms one
 * kernel accept that takes every connection as it arrives, about 64 at most
 * ahead of the accept calls; those wait, already accepted, for the next
 * call, and coru_close of the listener closes them. Such an accept
 * allocates fds under the RLIMIT_NOFILE in force when it was armed.
 * Out of fds: connections already accepted ahead are handed out first,
 * table full or not (their fds were taken before it filled). -EMFILE
 * comes when a connection arrives while the table is full: the multishot
 * then stops, and the next call returns -EMFILE once; the call after that
 * arms it again. On epoll (and without multishot) the accept itself
 * returns -EMFILE. Either way the connection waits in the kernel's
 * backlog and the listener stays usable: back off (sleep, close idle
 * connections) and call again; nothing is lost. (One exception, out of
 * memory: a connection the multishot accepted ahead that finds no memory
 * to be queued in is closed, its client sees a reset, and stderr says
 * "coru: out of memory queueing an accepted connection: closed it".) */
CORU_API int coru_tcp_accept(int lfd, struct sockaddr *peer, unsigned *peerlen);
CORU_API int coru_tcp_accept_dl(int lfd, struct sockaddr *peer, unsigned *peerlen, int64_t deadline);

/* Connects to host:port (numeric address; use coru_getaddrinfo for
 * names). Returns the connected fd, or -ECONNREFUSED, -ETIMEDOUT,
 * -ECANCELED, -EINVAL (bad address), -ENETUNREACH ... May park. */
CORU_API int coru_tcp_connect(const char *host, uint16_t port, int64_t deadline);
/* Sets TCP_NODELAY on (1) or off (0). Returns 0 or -errno. */
CORU_API int coru_tcp_nodelay(int fd, int on);

/* Reads up to n bytes; returns the count (0 at end of file), or -errno.
 * May park; n == 0 returns 0 (or the fd's error) at once, as read(2). */
CORU_API ssize_t coru_read(int fd, void *buf, size_t n);
CORU_API ssize_t coru_read_dl(int fd, void *buf, size_t n, int64_t deadline);
/* Writes up to n bytes; returns the count, or -errno. May park; n == 0
 * returns 0 (or the fd's error) at once. */
CORU_API ssize_t coru_write(int fd, const void *buf, size_t n);
CORU_API ssize_t coru_write_dl(int fd, const void *buf, size_t n, int64_t deadline);
/* Reads until n bytes arrived: returns n, or the shorter count at end of
 * file, or -errno (bytes already read are lost to the caller then). */
CORU_API ssize_t coru_read_full(int fd, void *buf, size_t n, int64_t deadline);
/* Writes all n bytes: returns n or -errno. */
CORU_API ssize_t coru_write_all(int fd, const void *buf, size_t n, int64_t deadline);
struct iovec;
/* Vectored read and write (at most IOV_MAX buffers): count or -errno. */
CORU_API ssize_t coru_readv(int fd, const struct iovec *iov, int iovcnt, int64_t deadline);
CORU_API ssize_t coru_writev(int fd, const struct iovec *iov, int iovcnt, int64_t deadline);

/* Waits until fd is ready: events is POLLIN or POLLOUT (poll.h), one of
 * them. Returns the ready events (a poll(2) revents mask, > 0; POLLERR
 * and POLLHUP may come with it), -ETIMEDOUT, -ECANCELED, -EBADF (fd
 * closed by coru_close meanwhile), -EINVAL (events not one of the two), -EPERM
 * (a regular file, on epoll). May park (io_uring: a poll op on the ring;
 * epoll: the fd's registration). For a library that does its own
 * non-blocking I/O on a socket, such as OpenSSL with kTLS. */
CORU_API int coru_poll(int fd, short events, int64_t deadline);

/* UDP: binds a datagram socket to host:port (numeric; NULL/"" for all
 * addresses, port 0 for any). Returns the fd or -errno. Never parks. */
CORU_API int coru_udp_bind(const char *host, uint16_t port);
/* Sends one datagram to addr (addrlen bytes; NULL on a connected socket).
 * Returns the count or -errno. May park. */
CORU_API ssize_t coru_sendto(int fd, const void *buf, size_t n, const struct sockaddr *addr, unsigned addrlen,
                             int64_t deadline);
/* Receives one datagram; the sender's address in addr/addrlen if not
 * NULL. Returns its length (truncated to n) or -errno. May park. */
CORU_API ssize_t coru_recvfrom(int fd, void *buf, size_t n, struct sockaddr *addr, unsigned *addrlen,
                               int64_t deadline);

/* Files: io_uring does real asynchronous file I/O; the epoll engine runs
 * these in the blocking pool. open returns the fd (opened with
 * O_CLOEXEC added) or -errno. */
CORU_API int coru_file_open(const char *path, int flags, unsigned mode);
/* pread/pwrite at offset off: count or -errno. */
CORU_API ssize_t coru_pread(int fd, void *buf, size_t n, int64_t off);
CORU_API ssize_t coru_pwrite(int fd, const void *buf, size_t n, int64_t off);
/* fsync(2): 0 or -errno. */
CORU_API int coru_fsync(int fd);
/* The same with a deadline (absolute, coru_now() clock; CORU_NEVER for
 * none). Disk I/O cannot always be stopped once started, and the buffer
 * is the caller's, so a deadline ends a call early only where that is
 * safe: a deadline already past returns -ETIMEDOUT without starting the
 * call; on io_uring, one that passes mid-call cancels the operation if
 * the kernel still can (-ETIMEDOUT) and otherwise returns its result; on
 * epoll, one that passes while the call waits for a blocking-pool thread
 * returns -ETIMEDOUT, and a call a thread has started runs to the end.
 * coru_cancel acts the same way with -ECANCELED. In a plain thread the
 * call runs directly (a past deadline still returns -ETIMEDOUT). */
CORU_API int coru_file_open_dl(const char *path, int flags, unsigned mode, int64_t deadline);
CORU_API ssize_t coru_pread_dl(int fd, void *buf, size_t n, int64_t off, int64_t deadline);
CORU_API ssize_t coru_pwrite_dl(int fd, const void *buf, size_t n, int64_t off, int64_t deadline);
CORU_API int coru_fsync_dl(int fd, int64_t deadline);

/* shutdown(2): how is SHUT_RD, SHUT_WR or SHUT_RDWR. Returns 0 or -errno. */
CORU_API int coru_shutdown(int fd, int how);
/* Closes the fd: calls parked on it (or entering it now) end with -EBADF.
 * When another coroutine's call is in the middle of its system call on
 * the fd, the close(2) itself is made as that call returns, microseconds
 * later (as Go's net.FD does), so that no call runs against a closed fd or
 * a number another file has taken; coru_close then returns 0. Returns 0
 * or -errno (-EBADF: not open, or already being closed). Never parks. */
CORU_API int coru_close(int fd);

/* ------------------------------------------------------------------------
 * Blocking pool
 *
 * Calls that would block a worker thread (getaddrinfo, a library without
 * a non-blocking interface, heavy computation) run on a pool of helper
 * threads while the calling coroutine is parked. The pool is process-wide
 * and outlives coru_run. It starts threads lazily, at most 64 (the
 * environment variable CORU_BLOCKING_THREADS overrides this, 1..1024),
 * keeps an idle thread for 10 s before letting it exit, and queues jobs
 * FIFO when every thread is busy. Helper threads block all signals.
 * ------------------------------------------------------------------------ */

struct addrinfo;

/* Runs fn(arg) on a helper thread and parks the calling coroutine until it
 * returns; *result (if result is not NULL) gets fn's return value. fn runs
 * as a plain thread: coru_self() is NULL in it, and coru calls it makes
 * block that thread. From a plain thread, coru_blocking calls fn directly.
 * A cancel can only keep fn from starting: fn may be using memory on the
 * caller's stack (arg often points there), so once a helper thread has
 * taken the job the caller cannot return before fn does. So: a caller
 * already cancelled, or cancelled while the job waits in the pool's queue
 * (every helper busy), gets -ECANCELED and fn never runs; a cancel after
 * a helper took the job waits for fn, the call returns 0 with its result,
 * and the cancel takes effect at the caller's next blocking call.
 * May park. Returns 0, or -EINVAL (fn NULL), -ENOMEM or -EAGAIN (no
 * helper thread exists and none could be started; fn did not run),
 * -ECANCELED (see above), -EPERM (in a generator body). */
CORU_API int coru_blocking(void *(*fn)(void *arg), void *arg, void **result);

/* coru_blocking with a deadline (absolute, coru_now() clock; CORU_NEVER
 * for none) that, like coru_cancel, can only stop fn from starting: while
 * the job waits in the pool's queue (every helper thread busy), the
 * deadline makes it return -ETIMEDOUT, and fn never runs. Once a helper
 * thread has taken the job, fn runs to the end and the call returns 0
 * with its result, however late. A deadline already past returns
 * -ETIMEDOUT at once. Otherwise exactly as coru_blocking (which is this
 * with CORU_NEVER). */
CORU_API int coru_blocking_dl(void *(*fn)(void *arg), void *arg, void **result, int64_t deadline);

/* getaddrinfo(3), run through coru_blocking. Returns 0 and the list in
 * *res (free it with freeaddrinfo), or a negative errno (*res is then
 * NULL): -ENOENT (EAI_NONAME, EAI_NODATA, EAI_ADDRFAMILY: no such name or
 * no address of that family), -EAGAIN (EAI_AGAIN: temporary failure, such
 * as no DNS server reachable), -ENOMEM (EAI_MEMORY), -EINVAL (res NULL;
 * EAI_BADFLAGS, EAI_FAMILY, EAI_SOCKTYPE, EAI_SERVICE), the errno of
 * EAI_SYSTEM, -EIO (any other EAI_* code), or coru_blocking's errors.
 * May park; a plain thread may call it. */
CORU_API int coru_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                              struct addrinfo **res);

/* ------------------------------------------------------------------------
 * Generators
 *
 * A generator is an asymmetric coroutine, as in Python: it runs on the
 * thread of whoever calls coru_gen_send, inside or outside coru_run, and
 * gives control back only at coru_gen_yield or when its function returns.
 * States, as Python's inspect.getgeneratorstate:
 *   CREATED   -> (send NULL)           -> RUNNING
 *   RUNNING   -> (coru_gen_yield)      -> SUSPENDED
 *   SUSPENDED -> (send v)              -> RUNNING
 *   RUNNING   -> (function returns)    -> CLOSED
 *   CREATED or SUSPENDED -> (close)    -> CLOSED
 * A generator body must not park (coru_yield, coru_join, ... return -EPERM
 * inside it). A generator is used by one thread at a time.
 * ------------------------------------------------------------------------ */

typedef struct coru_gen coru_gen;

/* The generator's function. `arg` is coru_gen_create's arg. What it returns
 * is the generator's return value (coru_gen_send gives it with return 0). */
typedef void *(*coru_gen_fn)(coru_gen *g, void *arg);

enum coru_gen_state {
    CORU_GEN_CREATED = 0,
    CORU_GEN_RUNNING = 1,
    CORU_GEN_SUSPENDED = 2,
    CORU_GEN_CLOSED = 3,
};

/* Creates a generator in state CREATED; nothing runs yet. stack_size 0 means
 * the default (64 KiB or CORU_STACK_SIZE). Returns 0 and *out, or -EINVAL
 * (out or fn NULL), -ENOMEM. */
CORU_API int coru_gen_create(coru_gen **out, coru_gen_fn fn, void *arg, size_t stack_size);

/* Resumes the generator with `value` (the first send starts it and must
 * pass NULL) and runs it until it yields or returns.
 * Returns 1 with the yielded value in *out, or 0 when the function returned
 * (its return value in *out; the generator is now CLOSED). out may be NULL.
 * Errors: -EINVAL (g NULL, or a non-NULL value sent to a CREATED generator:
 * it stays CREATED), -EPIPE (the generator is CLOSED), -EBUSY (it is
 * RUNNING: a send from inside itself). */
CORU_API int coru_gen_send(coru_gen *g, void *value, void **out);

/* Inside the generator body: hands `value` to the sender and suspends.
 * Returns 0 with the next sent value in *sent (sent may be NULL), or -EPIPE
 * when the generator is being closed: the body must then clean up and
 * return without yielding again. Errors: -EINVAL (g NULL), -EPERM (g is not
 * the generator running on this thread). */
CORU_API int coru_gen_yield(coru_gen *g, void *value, void **sent);

/* Closes the generator. CREATED: it becomes CLOSED without running.
 * SUSPENDED: its pending coru_gen_yield returns -EPIPE and it runs until
 * its function returns. CLOSED: nothing happens.
 * Returns 0, or -EINVAL (g NULL), -EBUSY (RUNNING), -EPROTO (the body
 * yielded again instead of returning, as Python's "generator ignored
 * GeneratorExit"; it is SUSPENDED and a later close retries). */
CORU_API int coru_gen_close(coru_gen *g);

/* Current state; CORU_GEN_CLOSED for NULL. */
CORU_API enum coru_gen_state coru_gen_state(const coru_gen *g);

/* Closes (as coru_gen_close) and frees the generator. If the body refuses
 * to finish (-EPROTO), its stack is freed without running it further. NULL
 * is ignored. Must not be called from inside the generator itself. */
CORU_API void coru_gen_destroy(coru_gen *g);

#ifdef __cplusplus
}
#endif
#endif /* CORU_H */
