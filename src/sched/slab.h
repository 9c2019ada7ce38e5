/* Slabs: many coroutine stacks of one size carved from one large mapping,
 * so that a million stacks cost a handful of VMAs (adjacent slabs even
 * merge into one) and a system call per batch, not per stack.
 *
 * A size class holds the slabs of one (usable size, layout) pair. Two
 * slot layouts (drawn in stack.h):
 *   - guard-marked (gm, Linux 6.13+): guard page | usable, page aligned;
 *     the guard is a MADV_GUARD_INSTALL marker in the page tables (no VMA
 *     of its own, and it survives MADV_DONTNEED, so a slot is guarded
 *     once, when its slab is made). Descriptors live in an array beside
 *     the slab, so a slot whose coroutine parks at once keeps exactly one
 *     page resident: the top of its stack.
 *   - canary (older kernels): canary | usable | descriptor, packed.
 *
 * A slot belongs to its slab forever; slabs are never unmapped (unmapping
 * one would need every slot free at once, and unmapping a slot would split
 * the VMA slabs exist to avoid). A slot is in one of: the class's `kept`
 * list (intact, memory resident: a non-default-size stack freed without
 * a pool), its `free` list (memory given back), the never-carved tail of
 * the newest slab, or handed out (a pool, the depot, a coroutine).
 *
 * System calls come in batches: one process_madvise(2) on the caller
 * itself (PIDFD_SELF; Linux 6.13+, probed once) installs the guards of a
 * whole slab, or gives back the memory of a batch of released slots.
 * (Populating the top pages of a batch handed out, MADV_POPULATE_WRITE,
 * measured no faster than the page faults it saves: it drains the LRU
 * batch once per range.) Where it is
 * missing (or CORU_NO_BATCH_MADVISE=1) each range gets its own madvise.
 *
 * Ownership: classes, their lists and carve cursors are under one mutex
 * (slab_lock); a slot handed out is its holder's alone. */
#ifndef CORU_SLAB_H
#define CORU_SLAB_H

#include <stdbool.h>
#include <stddef.h>

struct coru__stack;

/* Once, from stack.c's global init: the page size, and whether the
 * kernel has MADV_GUARD_INSTALL (probed there). Probes batched madvise. */
void coru__slab_setup(size_t page, bool guard_madvise);

/* An anonymous read-write mapping that reserves no swap and never gets
 * transparent huge pages (one touch would make 2 MiB resident). NULL when
 * the kernel refuses. */
char *coru__slab_map(size_t len);

/* Takes up to `want` (at most CORU__SLAB_TAKE_MAX) stacks of `size`
 * usable bytes (a page multiple) in layout gm, linked through their
 * `next`, into *out; returns how many (0: no memory for a new slab).
 * Kept slots come first, then given-back ones, then fresh ones. The
 * stacks carry CORU__STACK_SLAB (and CORU__STACK_GMARK), owner_id 0. Any
 * thread. */
#define CORU__SLAB_TAKE_MAX 32
size_t coru__slab_take(size_t size, bool gm, size_t want, struct coru__stack **out);

/* Keeps an intact slab stack for the next coru__slab_take of its class
 * (at most a few dozen per class); false when full: release it. */
bool coru__slab_keep(struct coru__stack *s);

/* Gives back the memory of a list of slab stacks (linked through next)
 * in batches and files their slots for reuse. Any thread. */
void coru__slab_release(struct coru__stack *list);

/* Releases every kept stack (a run's end). */
void coru__slab_trim_kept(void);

/* Tests: whether process_madvise batching is in use; turning it off
 * exercises the one-madvise-per-range fallback. */
bool coru__slab_batching(void);
void coru__slab_use_batching(bool on);

#endif
