/* coru__ctx_switch and friends: the register swap plus what the tools
 * (ASan, TSan, the overflow reporter) must be told on every switch.
 * See ctx.h for the contract. */
#include "sched/ctx.h"

#include <pthread.h>
#include <string.h>

#include "common.h"
#include "sched/stack.h"

#ifdef CORU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef CORU_TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

/* Owner: the thread itself. */
static __thread struct coru__ctx tls_native;
static __thread int tls_native_ready;
static __thread struct coru__ctx *tls_current;

struct coru__ctx *coru__ctx_thread(void)
{
    if (!tls_native_ready) {
        memset(&tls_native, 0, sizeof tls_native);
        pthread_attr_t at;
        if (pthread_getattr_np(pthread_self(), &at) == 0) {
            void *lo;
            size_t sz;
            if (pthread_attr_getstack(&at, &lo, &sz) == 0) {
                tls_native.stack_lo = lo;
                tls_native.stack_size = sz;
            }
            pthread_attr_destroy(&at);
        }
#ifdef CORU_TSAN
        tls_native.tsan_fiber = __tsan_get_current_fiber();
#endif
        tls_native_ready = 1;
    }
    return &tls_native;
}

struct coru__ctx *coru__ctx_current(void)
{
    return tls_current ? tls_current : coru__ctx_thread();
}

#ifndef CORU_CTX_UCONTEXT
void coru__ctx_swap(void **save_sp, void *to_sp);
void coru__ctx_start(void);

void coru__ctx_raw_make(struct coru__ctx *c, void *lo, size_t size, void (*start)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* Frame popped by coru__ctx_swap: fpctl, r15, r14, r13, r12, rbx, rbp,
     * return address; after the ret rsp == top (16-aligned). */
    uint64_t *f = (uint64_t *)(top - 64);
    uint32_t mxcsr;
    uint16_t fpcw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpcw));
    f[0] = (uint64_t)mxcsr | ((uint64_t)fpcw << 32);
    f[1] = 0;                /* r15 */
    f[2] = 0;                /* r14 */
    f[3] = (uintptr_t)arg;   /* r13 */
    f[4] = (uintptr_t)start; /* r12 */
    f[5] = 0;                /* rbx */
    f[6] = 0;                /* rbp: ends frame-pointer backtraces */
    f[7] = (uintptr_t)coru__ctx_start;
    c->sp = f;
#elif defined(__aarch64__)
    uint64_t *f = (uint64_t *)(top - 176);
    memset(f, 0, 176);
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    f[0] = (uintptr_t)start; /* x19 */
    f[1] = (uintptr_t)arg;   /* x20 */
    f[10] = 0;               /* x29 */
    f[11] = (uintptr_t)coru__ctx_start; /* x30 */
    f[20] = fpcr;
    c->sp = f;
#else
#error "no hand-written context switch for this architecture: build with -Dctx=ucontext"
#endif
}

void coru__ctx_raw_swap(struct coru__ctx *from, struct coru__ctx *to)
{
    coru__ctx_swap(&from->sp, to->sp);
}
#endif

/* First code to run on a new context. */
static void ctx_entry(void *p)
{
    struct coru__ctx *c = p;
#ifdef CORU_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    c->entry(c->entry_arg);
    CORU_PANIC("context entry returned");
}

void coru__ctx_make(struct coru__ctx *c, struct coru__stack *s, void (*entry)(void *), void *arg)
{
    c->stack = s;
    c->stack_lo = s->lo;
    c->stack_size = s->size;
    c->asan_fake = NULL;
    c->entry = entry;
    c->entry_arg = arg;
#ifdef CORU_ASAN
    /* A reused stack may still carry the poisoned redzones of frames that
     * never returned (a context is abandoned mid-call when it finishes). */
    __asan_unpoison_memory_region(s->lo, s->size);
#endif
#ifdef CORU_TSAN
    c->tsan_fiber = __tsan_create_fiber(0);
#endif
    coru__ctx_raw_make(c, s->lo, s->size, ctx_entry, c);
}

static inline void before_swap(struct coru__ctx *from, struct coru__ctx *to, int final)
{
    if (from->stack) coru__stack_check(from->stack);
    coru__stack_set_current(to->stack);
    tls_current = to;
#ifdef CORU_ASAN
    __sanitizer_start_switch_fiber(final ? NULL : &from->asan_fake, to->stack_lo, to->stack_size);
#else
    (void)final;
#endif
#ifdef CORU_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
}

void coru__ctx_switch(struct coru__ctx *from, struct coru__ctx *to)
{
    before_swap(from, to, 0);
    coru__ctx_raw_swap(from, to);
#ifdef CORU_ASAN
    __sanitizer_finish_switch_fiber(from->asan_fake, NULL, NULL);
#endif
}

void coru__ctx_switch_final(struct coru__ctx *from, struct coru__ctx *to)
{
    before_swap(from, to, 1);
    coru__ctx_raw_swap(from, to);
    CORU_PANIC("a finished context was resumed");
}

void coru__ctx_release(struct coru__ctx *c)
{
#ifdef CORU_TSAN
    if (c->tsan_fiber) __tsan_destroy_fiber(c->tsan_fiber);
#endif
    c->tsan_fiber = NULL;
}
