/* Engine selection and the calls shared by both backends: which kind a run
 * uses, creating and destroying an engine on its owner thread, the calling
 * thread's engine, and the cross-thread wake.
 *
 * Invariants:
 *   - coru__engine_select runs before any worker thread starts (the
 *     scheduler calls it from coru_run), so `selected` and `caps` are plain
 *     variables: thread creation orders their stores before every worker's
 *     reads. The io_uring probe runs at the first coru_run that may use
 *     io_uring, and its answer is kept when it is a lasting one (io_uring
 *     works, or EPERM / ENOSYS: it is disabled or filtered here); a
 *     passing failure (ENOMEM, EMFILE, ...), of the ring or of a feature
 *     probe (caps.partial), is not kept, and the next run probes again.
 *     Runs never overlap (coru_run's state CAS orders one run's select
 *     after the last one's end), so `probed` needs no lock.
 *   - coru__engine_tls is this thread's engine: set by create, cleared by
 *     destroy, read by wake to pick the MSG_RING path.
 *   - See engine_impl.h for field ownership and the wake/destroy lifetime
 *     rule.
 *
 * The wake protocol, and why no wake is lost (target T, waker W):
 *   1. W publishes its news first, with its own release store (a run-queue
 *      push, a flag), and only then calls coru__engine_wake(T).
 *   2. The wake leaves a durable mark that T's current or next wait finds:
 *      a CQE on T's ring (MSG_RING; the kernel posts it and wakes a waiter)
 *      or a nonzero eventfd counter, which T's armed read (or epoll)
 *      reports. Only T's wait consumes a mark; several marks may merge
 *      into one return, never into none.
 *   3. After every return from wait, T re-checks for news with an acquire
 *      load. If T checked before W's store it then waits, and the mark of
 *      step 2, made after that store, ends the wait; the re-check after it
 *      sees the news. The engine carries no data: the scheduler's
 *      release/acquire pair does.
 *   4. A MSG_RING that the kernel refuses at submit, or whose failure CQE
 *      shows up during that submit, falls back to the eventfd write, so a
 *      mark is always left (see coru__uring_send_wake).
 *   A wake from the owner itself (a completion callback, say) only sets
 *   self_wake: the owner is awake, and its next wait merely polls.
 */
#include "fail.h"
#include "io/engine_impl.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common.h"

__thread struct coru__engine *coru__engine_tls;

static bool probed;
static struct coru__uring_caps caps; /* written by probe(), before workers start */
static enum coru__engine_kind selected = CORU__ENGINE_NONE;
static bool auto_uring; /* selected is io_uring, picked by auto */

static void probe(void)
{
    if (probed) return;
    coru__uring_probe(&caps);
    probed = (caps.err == 0 && !caps.partial) || caps.err == -EPERM || caps.err == -ENOSYS;
}

/* CORU_IO, if set and not empty: 1, 2, or -EINVAL for anything else. */
static int env_kind(void)
{
    const char *v = getenv("CORU_IO");
    if (!v || !*v) return 0;
    if (!strcmp(v, "uring") || !strcmp(v, "io_uring")) return CORU__ENGINE_URING;
    if (!strcmp(v, "epoll")) return CORU__ENGINE_EPOLL;
    return -EINVAL;
}

/* Caller: the scheduler, before starting workers (one thread at a time). */
int coru__engine_select(int want)
{
    if (want < 0 || want > CORU__ENGINE_EPOLL) return -EINVAL;
    bool by_auto = false;
    if (want == 0) {
        want = env_kind();
        if (want < 0) return want;
        by_auto = want == 0;
    }
    selected = CORU__ENGINE_NONE;
    auto_uring = false;
    if (want == CORU__ENGINE_EPOLL) {
        selected = CORU__ENGINE_EPOLL;
        return selected;
    }
    probe();
    if (caps.err == 0) {
        selected = CORU__ENGINE_URING;
        auto_uring = by_auto;
        return selected;
    }
    if (want == CORU__ENGINE_URING) return caps.err;
    selected = CORU__ENGINE_EPOLL; /* auto: io_uring cannot be set up */
    return selected;
}

bool coru__engine_auto_uring(void)
{
    return auto_uring;
}

enum coru__engine_kind coru__engine_kind(void)
{
    return selected;
}

const char *coru__engine_name(enum coru__engine_kind k)
{
    switch (k) {
    case CORU__ENGINE_URING: return "io_uring";
    case CORU__ENGINE_EPOLL: return "epoll";
    default: return "none";
    }
}

bool coru__engine_has_msg_ring(void)
{
    return selected == CORU__ENGINE_URING && caps.msg_ring;
}

/* Caller: the thread that will own the engine (a worker, at start). */
int coru__engine_create(struct coru__engine **out)
{
    if (!out) return -EINVAL;
    if (coru__engine_tls) return -EBUSY; /* one engine per thread */
    enum coru__engine_kind kind = selected;
    if (kind == CORU__ENGINE_NONE) return -EINVAL; /* select not called */

    struct coru__engine *e = coru__calloc(1, sizeof *e);
    if (!e) return -ENOMEM;
    e->head.kind = kind;
    e->wake_fd = coru__eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (e->wake_fd < 0) {
        int err = -errno;
        free(e);
        return err;
    }
    int ret = kind == CORU__ENGINE_URING ? coru__uring_create(e, &caps) : coru__epoll_create(e);
    if (ret < 0) {
        close(e->wake_fd);
        free(e);
        return ret;
    }
    coru__engine_tls = e;
    *out = e;
    return 0;
}

/* Caller: the owner, after every wake aimed at e has returned. */
void coru__engine_destroy(struct coru__engine *e)
{
    if (!e) return;
    CORU_ASSERT(coru__engine_tls == e);
    if (e->head.kind == CORU__ENGINE_URING)
        coru__uring_destroy(e);
    else
        coru__epoll_destroy(e);
    close(e->wake_fd);
    coru__engine_tls = NULL;
    free(e);
}

/* Caller: the owner. */
int coru__engine_wait(struct coru__engine *e, int64_t timeout_ns)
{
    CORU_ASSERT(coru__engine_tls == e);
    if (e->self_wake) {
        /* The owner woke itself (e.g. from a completion callback): it is
         * not asleep, so the mark is a flag and this wait only polls. */
        e->self_wake = false;
        timeout_ns = 0;
    }
    if (e->head.kind == CORU__ENGINE_URING) return coru__uring_wait(e, timeout_ns);
    return coru__epoll_wait(e, timeout_ns);
}

void coru__engine_fd_wake(int fd)
{
    const uint64_t one = 1;
    for (;;) {
        ssize_t n = write(fd, &one, sizeof one);
        if (n == (ssize_t)sizeof one) return;
        if (n < 0 && errno == EINTR) continue;
        /* EAGAIN: the counter is saturated, a wake is already pending. */
        if (n < 0 && errno == EAGAIN) return;
        CORU_PANIC("eventfd %d write failed (errno %d): wake raced destroy?", fd, n < 0 ? errno : 0);
    }
}

/* Caller: any thread. */
void coru__engine_wake(struct coru__engine *target)
{
    struct coru__engine *self = coru__engine_tls;
    if (self == target) {
        target->self_wake = true;
        return;
    }
    /* target->head.kind and the capability bits are immutable after create. */
    if (self && self->head.kind == CORU__ENGINE_URING && self->u.msg_ring &&
        target->head.kind == CORU__ENGINE_URING) {
        if (coru__uring_send_wake(self, target) == 0) return;
    }
    coru__engine_fd_wake(target->wake_fd);
}
