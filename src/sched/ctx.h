/* Execution contexts and the switch between them.
 *
 * A context is a stack plus the registers saved when it was switched out.
 * Every thread has a native context (its own stack: a worker's scheduler
 * loop, or a plain thread driving a generator); coroutines and generators
 * get one on a coru__stack.
 *
 * coru__ctx_switch is the only way code moves between contexts. Besides
 * the register swap it keeps the tools informed, so sanitizer builds run
 * the real scheduler:
 *   - ASan: __sanitizer_start_switch_fiber before, finish after (a context
 *     that will never run again passes NULL so its fake stack is freed);
 *   - TSan: __tsan_switch_to_fiber before the swap (each context has a
 *     TSan fiber; the native one is the thread's own);
 *   - the overflow reporter learns the stack now running, and the stack
 *     being left has its canary checked (see stack.h).
 */
#ifndef CORU_CTX_H
#define CORU_CTX_H

#include <stddef.h>
#include <stdint.h>
#ifdef CORU_CTX_UCONTEXT
#include <ucontext.h>
#endif

struct coru__stack;

struct coru__ctx {
#ifdef CORU_CTX_UCONTEXT
    ucontext_t uc;
#else
    void *sp;                  /* saved stack pointer while switched out */
#endif
    struct coru__stack *stack; /* NULL for a thread's native context */
    void *stack_lo;            /* ASan: bounds of the stack it runs on */
    size_t stack_size;
    void *asan_fake;           /* ASan: fake-stack handle while switched out */
    void *tsan_fiber;          /* TSan: this context's fiber */
    void (*entry)(void *);     /* first-run function and argument */
    void *entry_arg;
};

/* The calling thread's native context, created on first use. */
struct coru__ctx *coru__ctx_thread(void);
/* The context running on this thread now. */
struct coru__ctx *coru__ctx_current(void);

/* Prepares c to run entry(arg) on stack s when first switched to. entry
 * must never return: it ends with coru__ctx_switch_final. */
void coru__ctx_make(struct coru__ctx *c, struct coru__stack *s, void (*entry)(void *), void *arg);
/* Switches from `from` (the running context) to `to`. Returns when some
 * context switches back to `from`. */
void coru__ctx_switch(struct coru__ctx *from, struct coru__ctx *to);
/* Like coru__ctx_switch for a context that will never run again. */
__attribute__((noreturn)) void coru__ctx_switch_final(struct coru__ctx *from, struct coru__ctx *to);
/* Releases tool state (TSan fiber) of a context that will never run again
 * and is not running now. */
void coru__ctx_release(struct coru__ctx *c);

/* Architecture layer (ctx_<arch>.S or ctx_ucontext.c). */
void coru__ctx_raw_make(struct coru__ctx *c, void *lo, size_t size, void (*start)(void *), void *arg);
void coru__ctx_raw_swap(struct coru__ctx *from, struct coru__ctx *to);

#endif
