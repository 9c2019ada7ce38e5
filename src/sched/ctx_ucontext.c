/* Portable context layer on ucontext, for architectures without a
 * hand-written switch (and to test that path: meson -Dctx=ucontext).
 * swapcontext saves the signal mask with a system call, so this is
 * slower than the assembly versions. */
#include "sched/ctx.h"

#include "common.h"

/* makecontext passes int arguments only: split the pointers. */
static void start_thunk(unsigned fhi, unsigned flo, unsigned ahi, unsigned alo)
{
    void (*fn)(void *) = (void (*)(void *))(((uintptr_t)fhi << 32) | flo);
    void *arg = (void *)(((uintptr_t)ahi << 32) | alo);
    fn(arg);
    CORU_PANIC("context entry returned");
}

void coru__ctx_raw_make(struct coru__ctx *c, void *lo, size_t size, void (*start)(void *), void *arg)
{
    if (getcontext(&c->uc) != 0) CORU_PANIC("getcontext failed");
    c->uc.uc_stack.ss_sp = lo;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = NULL;
    uintptr_t f = (uintptr_t)start, a = (uintptr_t)arg;
    makecontext(&c->uc, (void (*)(void))start_thunk, 4, (unsigned)(f >> 32), (unsigned)f,
                (unsigned)(a >> 32), (unsigned)a);
}

void coru__ctx_raw_swap(struct coru__ctx *from, struct coru__ctx *to)
{
    if (swapcontext(&from->uc, &to->uc) != 0) CORU_PANIC("swapcontext failed");
}
