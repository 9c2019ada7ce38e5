/* Sync internals: introspection of the objects in sync.c, for tests (a
 * test waits until a known number of waiters is queued instead of
 * sleeping and hoping). Never installed. */
#ifndef CORU_SYNC_H
#define CORU_SYNC_H

#include <stddef.h>

#include "coru.h"

/* How many waiters are queued and not yet claimed (woken, timed out or
 * cancelled). Any thread; takes the object's lock. 0 for NULL. */
size_t coru__sync_mutex_waiters(coru_mutex *m);
size_t coru__sync_cond_waiters(coru_cond *c);
size_t coru__sync_sema_waiters(coru_sema *s);
size_t coru__sync_wg_waiters(coru_waitgroup *wg);

#endif
