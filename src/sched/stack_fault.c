/* The stack overflow reporter: a SIGSEGV/SIGBUS handler, run on a
 * per-thread alternate stack, that turns a fault in or just below the
 * current coroutine's stack into "coru: coroutine <id> overflowed its
 * stack (<size> bytes)" and an abort; other faults go on to whoever
 * handled the signal before. See stack.h.
 *
 * Ownership map:
 *   tls_current, tls_altstack  the thread itself and its signal handler
 *   old_segv, old_bus          written once in install_handlers (under
 *                              pthread_once), then read by the handler
 */
#include "fail.h"
#include "sched/stack.h"

#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A fault this far below lo on the current stack counts as an overflow:
 * a large frame can jump over a guard page (or, unguarded, run past the
 * neighbouring memory) before it touches anything. */
#define OVERFLOW_WINDOW ((size_t)64 * 1024)
#define ALTSTACK_SIZE ((size_t)64 * 1024)

static pthread_once_t sig_once = PTHREAD_ONCE_INIT;
static int sig_err; /* install_handlers' result, read after pthread_once */
static struct sigaction old_segv, old_bus;
static size_t page;

/* Read by this thread's fault handler. initial-exec so that the handler's
 * access is a plain %fs-relative load, never a call into the dynamic
 * linker's TLS allocator. */
static __thread _Atomic(struct coru__stack *) tls_current __attribute__((tls_model("initial-exec")));
static __thread char *tls_altstack __attribute__((tls_model("initial-exec")));

/* ---- overflow report (async-signal-safe) ----------------------------- */

static size_t put_str(char *buf, size_t at, const char *s)
{
    while (*s) buf[at++] = *s++;
    return at;
}

static size_t put_u64(char *buf, size_t at, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) buf[at++] = tmp[--n];
    return at;
}

void coru__stack_report_overflow(const struct coru__stack *s)
{
    char msg[192];
    size_t n = put_str(msg, 0, "coru: coroutine ");
    n = put_u64(msg, n, s->owner_id);
    if (s->owner_name) { /* its name, read word by word as the dump does */
        union {
            uint64_t w[4];
            char c[32];
        } nm;
        for (int i = 0; i < 4; i++) nm.w[i] = atomic_load_explicit(&s->owner_name[i], memory_order_relaxed);
        nm.c[31] = 0;
        if (nm.c[0]) {
            n = put_str(msg, n, " \"");
            n = put_str(msg, n, nm.c);
            n = put_str(msg, n, "\"");
        }
    }
    n = put_str(msg, n, " overflowed its stack (");
    n = put_u64(msg, n, s->size);
    n = put_str(msg, n, " bytes)\n");
    for (size_t off = 0; off < n;) {
        ssize_t w = write(2, msg + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    abort();
}

static bool is_overflow(const struct coru__stack *s, const void *addr)
{
    uintptr_t a = (uintptr_t)addr, lo = (uintptr_t)s->lo;
    uintptr_t floor = lo > OVERFLOW_WINDOW ? lo - OVERFLOW_WINDOW : 0;
    return a < lo && a >= floor;
}

/* Hands a fault that is not ours to whoever had the signal before us. An
 * old handler is called directly (its sa_mask is not applied). With no
 * old handler the default action is put back: a fault then repeats when
 * the handler returns and kills the process; a signal sent by kill(2)
 * does not repeat, so it is raised again (it stays blocked until the
 * handler returns). */
static void chain(int sig, siginfo_t *si, void *uc)
{
    const struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
    if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        if (old->sa_flags & SA_SIGINFO)
            old->sa_sigaction(sig, si, uc);
        else
            old->sa_handler(sig);
        return;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (si->si_code <= 0) raise(sig);
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    /* Relaxed: written by this very thread (set_current), which the
     * handler interrupts; set_current's signal fence keeps the store ahead
     * of the code that may fault. */
    const struct coru__stack *s = atomic_load_explicit(&tls_current, memory_order_relaxed);
    /* si_code <= 0: sent by a process, si_addr means nothing. */
    if (s && si->si_code > 0 && is_overflow(s, si->si_addr)) coru__stack_report_overflow(s);
    chain(sig, si, uc);
    errno = saved;
}

static void install_handlers(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    page = ps > 0 ? (size_t)ps : 4096;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &old_segv) != 0 || sigaction(SIGBUS, &sa, &old_bus) != 0) sig_err = -errno;
}

int coru__stack_thread_init(void)
{
    pthread_once(&sig_once, install_handlers);
    if (sig_err) return sig_err;
    if (tls_altstack) return 0;

    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0) return -errno;
    /* Someone (e.g. ASan) already gave this thread an alternate stack. */
    if (!(cur.ss_flags & SS_DISABLE)) return 0;

    /* A guard page below it too: a handler that overruns the alternate
     * stack faults instead of scribbling over a neighbour. */
    size_t len = page + ALTSTACK_SIZE;
    char *m = coru__mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return -ENOMEM;
    if (coru__guard_protect(m, page) != 0) {
        munmap(m, len);
        return -ENOMEM;
    }
    stack_t ss = {.ss_sp = m + page, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        int rc = -errno;
        munmap(m, len);
        return rc;
    }
    tls_altstack = m;
    return 0;
}

void coru__stack_thread_fini(void)
{
    coru__stack_set_current(NULL);
    if (!tls_altstack) return;
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0) return; /* cannot tell: keep it */
    if (!(cur.ss_flags & SS_DISABLE) && cur.ss_sp == tls_altstack + page) {
        stack_t off = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
        if (sigaltstack(&off, NULL) != 0) return; /* running on it: keep it */
    }
    munmap(tls_altstack, page + ALTSTACK_SIZE);
    tls_altstack = NULL;
}

void coru__stack_set_current(struct coru__stack *s)
{
    /* Relaxed: only this thread's fault handler reads it. */
    atomic_store_explicit(&tls_current, s, memory_order_relaxed);
    /* Forbids the compiler from sinking the store below the stack accesses
     * that follow, which are the ones that may fault. */
    atomic_signal_fence(memory_order_seq_cst);
}
