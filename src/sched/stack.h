/* Coroutine stacks: allocation, per-worker pools, guard pages or canaries,
 * overflow reporting.
 *
 * Layout (addresses grow upward; the stack grows down from lo + size):
 *
 *   with MADV_GUARD_INSTALL (Linux 6.13+; probed once, CORU_NO_GUARD_MADVISE=1
 *   turns it off): every stack is a slot of a slab (slab.h: slots back to
 *   back, page aligned, up to 512 in one mapping), its guard page a marker
 *   in the page tables that costs no VMA:
 *   | guard page (marker) | usable stack ...     | next slot's guard
 *                        ^ lo (page aligned)    ^ lo+size
 *   (the slot's struct coru__stack lives in an array beside the slab, so a
 *   coroutine that parks at once keeps one page resident: its top page)
 *
 *   older kernels, within the guard budget: one mapping per stack:
 *   map_base                                                  map_base+map_len
 *   | guard page PROT_NONE | usable stack ...    | unused | struct coru__stack |
 *                         ^ lo (page aligned)   ^ lo+size (page aligned)
 *
 *   older kernels, past the budget: a slot of a slab (slots packed back to
 *   back; default size) or a mapping of its own (other sizes):
 *   map_base
 *   | canary (256 bytes) | usable stack ...    | struct coru__stack | next slot
 *                        ^ lo (64-byte aligned) ^ lo+size
 *
 * The coroutine's first frame starts at lo + size (16-byte aligned). In a
 * canary slab the top of one slot's stack, its descriptor and the next
 * slot's canary share a page, so an idle slab stack keeps about one
 * resident page.
 *
 * The guard budget (older kernels): a PROT_NONE guard page splits the
 * mapping into two VMAs, and vm.max_map_count (65530 by default) caps VMAs
 * per process. Stacks get one while the number of guarded stacks stays
 * under a budget derived from vm.max_map_count (read once: a quarter of
 * what is left after a reserve of 8192, so guarded stacks take at most
 * half the limit); past it they carry a canary just below `lo` that
 * coru__stack_check verifies (the scheduler calls it on every switch out).
 *
 * What an overflow can get past: a frame larger than the guard page
 * (4 KiB) or, on the canary path, than the canary (256 bytes) may land
 * below it without touching it. A guard page catches the first touch; a
 * canary only a write into it, seen at the next switch out or free.
 *
 * Ownership: a stack belongs to exactly one of: a pool's free list (only
 * that pool's owner thread touches it), the depot, its slab (slab.h), or
 * one coroutine/generator. Pools are per worker and single-threaded; a
 * stack freed on another worker than it was allocated on simply joins
 * that worker's pool.
 */
#ifndef CORU_STACK_H
#define CORU_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct coru__stack {
    void *lo;               /* lowest usable byte (above guard or canary) */
    size_t size;            /* usable bytes: [lo, lo + size) */
    void *map_base;         /* whole mapping or slab slot start */
    size_t map_len;
    struct coru__stack *next; /* free-list link; owner: the list holding it */
    uint64_t owner_id;      /* id of the coroutine using it (0: none), for
                               overflow messages; written by the user */
    const _Atomic uint64_t *owner_name; /* its registry name (4 words,
                               registry.h) or NULL; written by the user */
    uint32_t flags;         /* CORU__STACK_GUARDED, CORU__STACK_SLAB, or
                               neither: an unguarded mapping of its own */
    uint32_t vg_id;         /* valgrind stack id while registered, else 0 */
};
#define CORU__STACK_GUARDED 1u /* own PROT_NONE guard page, in the budget */
#define CORU__STACK_SLAB 2u    /* a slot of a slab */
#define CORU__STACK_GMARK 4u   /* guard page by MADV_GUARD_INSTALL (no VMA) */

/* Fills a descriptor (stack.c's mappings, slab.c's slots). */
static inline struct coru__stack *coru__stack_desc_init(struct coru__stack *s, char *lo, size_t size, void *map_base,
                                                        size_t map_len, uint32_t flags)
{
    s->lo = lo;
    s->size = size;
    s->map_base = map_base;
    s->map_len = map_len;
    s->next = NULL;
    s->owner_id = 0;
    s->owner_name = NULL;
    s->flags = flags;
    s->vg_id = 0;
    return s;
}

/* Prints "coru: coroutine <id> overflowed its stack (<size> bytes)" with
 * write(2) only and aborts. Async-signal-safe (stack_fault.c). */
__attribute__((noreturn, cold)) void coru__stack_report_overflow(const struct coru__stack *s);

/* A per-thread cache of free stacks of the default size. */
struct coru__stack_pool {
    struct coru__stack *free; /* LIFO: the hottest stack first */
    size_t count;             /* stacks on `free` */
    size_t high_water;        /* above this, frees give memory back */
};

/* Process-wide default usable size (bytes, page multiple). Set once by
 * coru_run before workers start; 0 restores the built-in default (64 KiB,
 * or CORU_STACK_SIZE from the environment). Returns the size now in use. */
size_t coru__stack_set_default(size_t size);
size_t coru__stack_default(void);
/* Rounds a requested size up to a page multiple, minimum 16 KiB; 0 means
 * the default. */
size_t coru__stack_round(size_t size);

void coru__stack_pool_init(struct coru__stack_pool *p);
/* Frees every cached stack (returns memory/mappings to the OS). */
void coru__stack_pool_fini(struct coru__stack_pool *p);

/* Gets a stack with at least `size` usable bytes (0: default), owner_id 0.
 * Pool hits are O(1) and make no syscall. pool may be NULL (generators,
 * plain threads). Returns 0 and *out, or -ENOMEM. Any thread; a pool only
 * from its owner thread. */
int coru__stack_alloc(struct coru__stack_pool *p, size_t size, struct coru__stack **out);
/* Returns a stack to the pool (or to the OS above the high-water mark).
 * pool may be NULL. Checks the canary first (see coru__stack_check).
 * s may be NULL. */
void coru__stack_free(struct coru__stack_pool *p, struct coru__stack *s);

/* Canary check, called on every switch out of a coroutine. For an
 * unguarded stack whose canary is broken it prints
 *   "coru: coroutine <id> overflowed its stack (<size> bytes)"
 * and aborts. Cheap (eight word compares, no branch per word) and a no-op
 * for guarded stacks. Any thread. */
void coru__stack_check(const struct coru__stack *s);

/* Per-thread setup of the overflow reporter: installs (once per process)
 * a SIGSEGV/SIGBUS handler and gives the calling thread a 64 KiB alternate
 * signal stack (unless it already has one, e.g. from ASan). The handler,
 * when the faulting address lies in the guard page of the thread's current
 * stack or up to 64 KiB below its lo, prints the same message as
 * coru__stack_check and aborts; other faults go to the handler that was
 * installed before, or get the default action. Idempotent. Returns 0 or
 * -errno (-ENOMEM). thread_fini releases the alternate stack and clears
 * the current stack. */
int coru__stack_thread_init(void);
void coru__stack_thread_fini(void);
/* Tells the overflow reporter which stack the thread now runs on (NULL:
 * its own thread stack). Called by the context-switch layer. */
void coru__stack_set_current(struct coru__stack *s);

/* The depot: a process-wide cache between the per-worker pools and the
 * OS. A pool past its high-water mark moves half of itself there; an
 * empty pool refills from it. It holds at most 2^21 stacks (beyond that
 * a free goes back to the OS at once); trim_to(keep, most) gives back up
 * to `most` of those above `keep` (idle workers call it, paced, before
 * sleeping), trim() all of them (coru_run, when a run ends). */
#define CORU__STACK_DEPOT_KEEP 2048
void coru__stack_depot_trim(void);
void coru__stack_depot_trim_to(size_t keep, size_t most);
size_t coru__stack_depot_count(void);

/* Counters for tests: stacks mapped with guard pages now, and the budget. */
size_t coru__stack_guarded_count(void);
size_t coru__stack_guard_budget(void);

/* Tests only: allocates as if the guard budget were used up (with guard
 * markers, the same slab stack as any other; else a canary slab stack for
 * the default size, a canary mapping of its own otherwise). */
int coru__stack_alloc_unguarded(size_t size, struct coru__stack **out);
/* Whether stacks come from guard-marked slabs (MADV_GUARD_INSTALL); tests
 * turn it off to exercise the fallback (single-threaded, before
 * allocating). */
bool coru__stack_guard_madvise(void);
void coru__stack_use_guard_madvise(bool on);

#endif
