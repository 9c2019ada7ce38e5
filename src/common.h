/* Internal helpers shared by every module: export macro, branch hints,
 * sanitizer detection and the "broken invariant" abort. Never installed. */
#ifndef CORU_COMMON_H
#define CORU_COMMON_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define CORU_CACHELINE 64
#define CORU_ALIGNED_CL __attribute__((aligned(CORU_CACHELINE)))

/* Sanitizer detection, for gcc (__SANITIZE_*__) and clang (__has_feature). */
#if defined(__SANITIZE_ADDRESS__)
#define CORU_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define CORU_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#undef CORU_ASAN
#define CORU_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#undef CORU_TSAN
#define CORU_TSAN 1
#endif
#endif

/* coru__panic: a broken internal invariant or an unrecoverable condition.
 * Prints "coru: <func>: <message>" to stderr with write(2) only and aborts.
 * Async-signal-safe. */
__attribute__((noreturn, format(printf, 2, 3))) void coru__panic(const char *func, const char *fmt, ...);
#define CORU_PANIC(...) coru__panic(__func__, __VA_ARGS__)
#define CORU_ASSERT(cond)                                                     \
    do {                                                                      \
        if (unlikely(!(cond))) CORU_PANIC("invariant failed: %s", #cond);     \
    } while (0)

/* Monotonic clock in nanoseconds. */
int64_t coru__now_ns(void);

/* SIGPIPE held off the calling thread for a stretch of code (a worker's
 * run, a plain thread's pipe write): hold blocks it; release discards a
 * SIGPIPE raised meanwhile (when `raised` says one may have been; one
 * that was already pending at hold is the caller's and stays) and gives
 * back the thread's mask. The process's disposition is never touched. */
struct coru__sigpipe {
    sigset_t old;      /* the thread's mask before hold */
    bool was_pending;  /* a SIGPIPE was pending at hold */
};
void coru__sigpipe_hold(struct coru__sigpipe *g);
void coru__sigpipe_release(struct coru__sigpipe *g, bool raised);

/* Deadlines (coru.h): only CORU_NEVER (-1) means "none"; every other
 * value is an absolute time, and any other negative one is long past. */
#define CORU__NEVER ((int64_t)-1)
static inline int coru__dl_set(int64_t deadline)
{
    return deadline != CORU__NEVER;
}
/* Whether a deadline is set and has passed (reads the clock only then). */
static inline int coru__dl_passed(int64_t deadline)
{
    return deadline != CORU__NEVER && (deadline < 0 || deadline <= coru__now_ns());
}

#endif
