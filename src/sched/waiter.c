/* Blocking and waking one waiter: parks a coroutine, or puts a plain
 * thread to sleep on a futex (so channels work from threads outside the
 * runtime). See waiter.h for the protocol. */
#include "sched/waiter.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

int coru__waiter_init(struct coru__waiter *w, void *data)
{
    if (coru__gen_depth > 0) return -EPERM;
    w->next = w->prev = NULL;
    w->co = coru__co_self();
    atomic_init(&w->futex, 0);
    w->code = 0;
    w->data = data;
    if (w->co) coru__park_prepare(w->co);
    return 0;
}

int coru__waiter_block(struct coru__waiter *w)
{
    if (w->co) {
        coru__park();
    } else {
        /* acquire: pairs with the release store in coru__waiter_wake, so
         * code and data written by the waker are visible. */
        while (atomic_load_explicit(&w->futex, memory_order_acquire) == 0)
            syscall(SYS_futex, &w->futex, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    }
    return w->code;
}

void coru__waiter_wake(struct coru__waiter *w, int code)
{
    w->code = code;
    if (w->co) {
        coru__ready(w->co); /* release inside publishes code and data */
    } else {
        /* Read the address first: once futex is 1 the waiter may return
         * and its stack frame (w) may be reused. The futex syscall on a
         * stale address is harmless (it wakes nobody). */
        _Atomic uint32_t *f = &w->futex;
        atomic_store_explicit(f, 1, memory_order_release); /* pairs with the acquire in block */
        syscall(SYS_futex, f, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
}
