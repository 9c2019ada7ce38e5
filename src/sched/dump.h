/* The dump, the monitor thread and what they need from the scheduler.
 *
 * dump.c writes the registry (registry.h) out; monitor.c runs the
 * monitor thread of a run: the dump signal, the stall detector and the
 * deadlock report (the contract is in coru.h, "Seeing inside a run").
 */
#ifndef CORU_DUMP_H
#define CORU_DUMP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "coru.h"

struct coru_co;
struct coru__worker;

/* Writes the dump (coru_dump's format) to fd, after a line `title` if not
 * NULL. Returns the count or a negative errno (-EPERM: no run). */
int coru__dump_to(int fd, int flags, const char *title);
/* "symbol+0xoff (object)" for a code address, through dladdr. */
void coru__symbolize(uintptr_t pc, char *out, size_t n);

/* sched.c: each worker's running coroutine (cur[i], at most 256) and the
 * engine's name; returns the number of workers, 0 when no run is on.
 * Any thread. */
unsigned coru__sched_current(struct coru_co **cur, const char **engine);
/* sched.c, for the monitor of the run (valid while the run lasts):
 * worker i, the number of workers, and the coroutines alive now (spawned
 * minus finished; a hint when read while they change). */
struct coru__worker *coru__sched_worker(unsigned i);
unsigned coru__sched_nworkers(void);
uint64_t coru__sched_live(void);

/* Plain threads: how many are blocked inside a coru call now, and whether
 * one has blocked on a coru object during this run (waiter.c). Relaxed
 * counters, read by the deadlock check as hints that are stable when it
 * matters (nothing has moved for the grace period). */
extern _Atomic int coru__ext_blocked;
extern _Atomic bool coru__ext_waited;

/* monitor.c: from coru_run, after the workers exist and before worker 0
 * runs; stop after every worker has returned. start returns 0 or a
 * negative errno (the run then goes on without a monitor). */
int coru__monitor_start(const struct coru_opts *o);
/* The run's dump signal (coru_opts.dump_signal or CORU_DUMP_SIGNAL), 0:
 * none. coru_run blocks it on the workers before they start. */
int coru__monitor_signal(const struct coru_opts *o);
void coru__monitor_stop(void);

#endif
