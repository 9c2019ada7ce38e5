/* The clock and sleeping: a sleep is a wait with only a deadline. */
#include <errno.h>

#include "sched/waiter.h"

int64_t coru_now(void)
{
    return coru__now_ns();
}

int coru_sleep_until(int64_t deadline)
{
    /* CORU_NEVER: parks until cancelled (a plain thread, forever). */
    if (deadline != CORU__NEVER && deadline <= coru__now_ns()) {
        if (coru__gen_depth > 0) return -EPERM;
        /* A zero or past sleep is still a cancellation point, as
         * asyncio.sleep(0) is: a loop can poll for coru_cancel with it. */
        if (coru__self_cancelled()) return -ECANCELED;
        if (coru__co_self()) coru_yield(); /* let others run, as a zero sleep does in Go */
        return 0;
    }
    struct coru__waiter w;
    int rc = coru__waiter_init(&w);
    if (rc) return rc;
    coru__waiter_on(&w, CORU__W_SLEEP, NULL, 0, false);
    rc = coru__waiter_block(&w, deadline);
    return rc == -ETIMEDOUT ? 0 : rc;
}

int coru_sleep(int64_t ns)
{
    return coru_sleep_until(ns > 0 ? coru__now_ns() + ns : 0);
}
