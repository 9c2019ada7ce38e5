/* epoll backend, for when io_uring cannot be set up (or CORU_IO=epoll):
 * an epoll fd per worker with the wake eventfd registered level-triggered.
 *
 * Invariants:
 *   - Only the owner thread waits on epfd or changes its interest list.
 *   - An entry whose epoll_event.data.u64 is below CORU__TAG_LIMIT is an
 *     internal one (today only the wake eventfd, CORU__TAG_WAKE_READ);
 *     any other entry's data.ptr is a struct coru__engine_op *, and a
 *     ready event calls op->complete(op, events). The I/O code that adds
 *     such entries decides on EPOLLONESHOT and re-arming.
 *   - Wakes from any thread write the eventfd (engine.c); the wait that
 *     sees it readable reads it back to zero.
 *
 * Callers: the owner thread, for every function here.
 */
#include "fail.h"
#include "io/engine_impl.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441 /* the same number on every architecture */
#endif

#define MAX_EVENTS 128

/* 0: epoll_pwait2 may work; 1: this kernel (or its seccomp filter) lacks
 * it. relaxed: a cached fact about the kernel; a thread that reads a stale
 * 0 just finds out again. */
static _Atomic int no_pwait2;

int coru__epoll_create(struct coru__engine *e)
{
    int epfd = coru__epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = CORU__TAG_WAKE_READ};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, e->wake_fd, &ev) < 0) {
        int err = -errno;
        close(epfd);
        return err;
    }
    e->ep.epfd = epfd;
    return 0;
}

void coru__epoll_destroy(struct coru__engine *e)
{
    close(e->ep.epfd);
    e->ep.epfd = -1;
}

/* One epoll wait: -1 blocks, 0 polls, > 0 waits that many ns (epoll_pwait2
 * when available, else epoll_wait with the time rounded up to whole ms, so
 * a short timeout sleeps instead of spinning). Returns count or -errno. */
static int wait_once(int epfd, struct epoll_event *evs, int64_t timeout_ns)
{
    if (timeout_ns > 0 && !atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        struct timespec ts = {
            .tv_sec = timeout_ns / 1000000000,
            .tv_nsec = timeout_ns % 1000000000,
        };
        long n = syscall(SYS_epoll_pwait2, epfd, evs, MAX_EVENTS, &ts, NULL, (size_t)(_NSIG / 8));
        if (n >= 0) return (int)n;
        /* EPERM: container seccomp profiles answer unknown syscalls so. */
        if (errno != ENOSYS && errno != EPERM) return -errno;
        atomic_store_explicit(&no_pwait2, 1, memory_order_relaxed);
    }
    int ms = -1;
    if (timeout_ns == 0)
        ms = 0;
    else if (timeout_ns > 0)
        ms = timeout_ns >= (int64_t)INT_MAX * 1000000 ? INT_MAX : (int)((timeout_ns + 999999) / 1000000);
    int n = epoll_wait(epfd, evs, MAX_EVENTS, ms);
    return n >= 0 ? n : -errno;
}

/* Resets the wake eventfd to zero after epoll reported it readable. Only
 * the owner reads it, so EAGAIN should not happen; if it does, the counter
 * is zero already, which is all this wants. */
static void drain_wake_fd(struct coru__engine *e)
{
    uint64_t v;
    for (;;) {
        ssize_t r = read(e->wake_fd, &v, sizeof v);
        if (r == (ssize_t)sizeof v) {
            e->fd_wakes++;
            return;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) return;
        CORU_PANIC("wake eventfd read failed (errno %d)", r < 0 ? errno : 0);
    }
}

int coru__epoll_wait(struct coru__engine *e, int64_t timeout_ns)
{
    struct epoll_event evs[MAX_EVENTS];
    const int64_t deadline = timeout_ns > 0 ? coru__now_ns() + timeout_ns : 0;
    int n;
    for (;;) {
        n = wait_once(e->ep.epfd, evs, timeout_ns);
        if (n >= 0) break;
        if (n != -EINTR) return n;
        if (timeout_ns > 0) { /* a signal: wait out the rest */
            timeout_ns = deadline - coru__now_ns();
            if (timeout_ns < 0) timeout_ns = 0;
        }
    }
    /* One batch per wait: with level-triggered entries a second epoll_wait
     * would report the same fds again, so "every completion present" is
     * what this one call returned. */
    int ops = 0;
    for (int i = 0; i < n; i++) {
        uint64_t data = evs[i].data.u64;
        if (data < CORU__TAG_LIMIT) {
            if (data == CORU__TAG_WAKE_READ) drain_wake_fd(e);
            continue;
        }
        struct coru__engine_op *op = evs[i].data.ptr;
        op->complete(op, (int)evs[i].events);
        ops++;
    }
    return ops;
}
