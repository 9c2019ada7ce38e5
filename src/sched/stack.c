/* Coroutine stacks: where they come from (slabs, or guarded mappings of
 * their own), per-worker pools, the depot between pools, and canary
 * checks. Layout: see stack.h; slabs: slab.c; overflow reports:
 * stack_fault.c.
 *
 * Two modes, fixed at start-up (global_init):
 *   - guard markers (MADV_GUARD_INSTALL works, Linux 6.13+): every stack,
 *     whatever its size, is a slot of a slab (slab.c) with a marker guard
 *     page. No stack costs a VMA, a mapping or an mprotect of its own.
 *   - fallback: default-size stacks get a mapping of their own with a
 *     PROT_NONE guard page while the guard budget lasts (two VMAs each),
 *     then canary slab slots; other sizes get a canary mapping of their
 *     own past the budget.
 *
 * Invariants:
 *   - guarded_count is the number of mapped stacks with CORU__STACK_GUARDED
 *     (pooled or in use); a stack is guarded only if the count was below
 *     guard_budget when it was reserved. The budget starts from
 *     vm.max_map_count and is lowered, once and for good, to the count
 *     in use when the kernel refuses a guard page (ENOMEM: the process
 *     is at its mapping limit, whatever the budget said), so that later
 *     stacks go straight to canary slots instead of paying a failed
 *     mmap and mprotect each.
 *   - Every stack has a guard page below lo (its own PROT_NONE page, or a
 *     marker), or else an intact canary at [lo - CORU__CANARY_LEN, lo)
 *     from the moment it is handed out until it is released; a stack whose
 *     canary is broken is never pooled or recycled (free checks first).
 *   - A pool holds only stacks of the default size at the time they were
 *     freed; if the default changes, the next default-size alloc that
 *     meets a stale stack drains the pool.
 *   - Pooled and depot stacks are intact (memory resident, valgrind
 *     registration held); their memory goes back only through release
 *     (release_list), in batches.
 *
 * Ownership map:
 *   page, builtin_default  written once in global_init
 *                          (pthread_once), read-only afterwards
 *   guard_budget           set in global_init, lowered by any thread,
 *                          atomic (relaxed: a stale read costs one more
 *                          try at a guard page, nothing else)
 *   guard_madv, dflt_size  any thread, atomic settings
 *   guarded_count          any thread, atomic
 *   depot                  its own lock (depot.h)
 *   struct coru__stack_pool   its owner thread only
 */
#include "fail.h"
#include "sched/stack.h"

#include "common.h"
#include "sched/canary.h"
#include "sched/depot.h"
#include "sched/slab.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define CORU_VALGRIND 1
#endif
#endif

#define BUILTIN_DEFAULT ((size_t)64 * 1024)
#define MIN_STACK ((size_t)16 * 1024)
/* Larger requests fail with -ENOMEM; keeps size arithmetic far from
 * overflow. */
#define MAX_STACK ((size_t)1 << 40)
/* VMAs left to the rest of the process before guarded stacks get any. */
#define VMA_RESERVE 8192
#define DEFAULT_MAX_MAP_COUNT 65530

_Static_assert(sizeof(struct coru__stack) <= CORU__DESC_SPACE, "descriptor must fit in CORU__DESC_SPACE");

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static size_t page;
static size_t builtin_default;
static _Atomic size_t guard_budget;
/* Whether MADV_GUARD_INSTALL works here (probed in global_init; off with
 * CORU_NO_GUARD_MADVISE=1 or, in tests, coru__stack_use_guard_madvise).
 * Relaxed: a setting; each slab class and each stack records the layout
 * it was made with. */
static _Atomic bool guard_madv;
/* Relaxed everywhere: the default is a plain setting. A thread that reads
 * a stale value at worst pools a stack of the old size, which the pool
 * drains when it meets it. */
static _Atomic size_t dflt_size;
/* Relaxed everywhere: a counter that publishes no other memory; its RMWs
 * are totally ordered on their own, which is all the budget needs. */
static _Atomic size_t guarded_count;

/* The depot (depot.h): intact default-size stacks between the per-worker
 * pools and the OS. A pool over its high-water mark hands half of itself
 * here, a pool that runs dry takes a batch back, so stacks move between
 * workers without a system call. Releasing memory is slow (madvise,
 * munmap) and bursts of exits are common, so frees never wait for it: the
 * depot takes up to DEPOT_HARD_MAX stacks, and an idle worker trims it
 * back to CORU__STACK_DEPOT_KEEP before it sleeps
 * (coru__stack_depot_trim_to). */
#define DEPOT_HARD_MAX (1 << 21)
static struct coru__depot depot = CORU__DEPOT_INIT(struct coru__stack, next, DEPOT_HARD_MAX);

static size_t round_up(size_t n, size_t to) { return (n + to - 1) & ~(to - 1); }

/* Page-rounds and clamps a size; 0 stays 0. */
static size_t round_size(size_t size)
{
    if (size == 0) return 0;
    if (size > MAX_STACK) size = MAX_STACK;
    size = round_up(size, page);
    return size < MIN_STACK ? MIN_STACK : size;
}

/* Reads a decimal number from a small file; 0 on any failure. */
static size_t read_number(const char *path)
{
    char buf[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    size_t v = 0;
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) v = v * 10 + (size_t)(buf[i] - '0');
    return v;
}

/* Whether a MADV_GUARD_INSTALL marker really guards: madvise must succeed
 * and the kernel must then refuse to read the page (write(2) from it to a
 * pipe fails with EFAULT). The second check is for emulators: qemu-user
 * answers 0 to advice it does not know and installs nothing, which would
 * leave every stack unguarded. m: two fresh pages, the first one probed. */
static bool guard_marker_works(char *m)
{
    if (coru__guard_madvise(m, page) != 0) return false;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return true; /* cannot tell: trust madvise */
    bool guarded = write(fds[1], m, 1) < 0 && errno == EFAULT;
    close(fds[0]);
    close(fds[1]);
    return guarded;
}

static void global_init(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    page = ps > 0 ? (size_t)ps : 4096;

    builtin_default = BUILTIN_DEFAULT;
    const char *env = getenv("CORU_STACK_SIZE");
    if (env && *env) {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (*end == '\0' && v > 0) builtin_default = round_size(v > MAX_STACK ? MAX_STACK : (size_t)v);
    }
    atomic_store_explicit(&dflt_size, builtin_default, memory_order_relaxed);

    size_t maps = read_number("/proc/sys/vm/max_map_count");
#ifdef CORU_TESTING
    /* Test builds: a lowered vm.max_map_count for this process alone (the
     * sysctl is machine-wide); with fail.h's GUARD site the kernel's
     * refusal past it can be played too. */
    const char *lim = getenv("CORU_TEST_MAX_MAP_COUNT");
    if (lim && *lim) maps = strtoul(lim, NULL, 10);
#endif
    if (maps == 0) maps = DEFAULT_MAX_MAP_COUNT;
    atomic_store_explicit(&guard_budget, maps > VMA_RESERVE ? (maps - VMA_RESERVE) / 4 : 0, memory_order_relaxed);

    bool gm = false;
    const char *no = getenv("CORU_NO_GUARD_MADVISE");
    if (!(no && *no && strcmp(no, "0") != 0)) {
        char *m = coru__mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m != MAP_FAILED) {
            gm = guard_marker_works(m);
            munmap(m, 2 * page);
        }
    }
    atomic_store_explicit(&guard_madv, gm, memory_order_relaxed);
    coru__slab_setup(page, gm);
}

static void ensure_init(void) { pthread_once(&init_once, global_init); }

void coru__stack_use_guard_madvise(bool on)
{
    ensure_init();
    atomic_store_explicit(&guard_madv, on, memory_order_relaxed);
}

bool coru__stack_guard_madvise(void)
{
    ensure_init();
    return atomic_load_explicit(&guard_madv, memory_order_relaxed);
}

size_t coru__stack_default(void)
{
    ensure_init();
    return atomic_load_explicit(&dflt_size, memory_order_relaxed);
}

size_t coru__stack_set_default(size_t size)
{
    ensure_init();
    size_t d = size ? round_size(size) : builtin_default;
    atomic_store_explicit(&dflt_size, d, memory_order_relaxed);
    return d;
}

size_t coru__stack_round(size_t size)
{
    ensure_init();
    return size ? round_size(size) : coru__stack_default();
}

size_t coru__stack_guarded_count(void)
{
    return atomic_load_explicit(&guarded_count, memory_order_relaxed);
}

size_t coru__stack_guard_budget(void)
{
    ensure_init();
    return atomic_load_explicit(&guard_budget, memory_order_relaxed);
}

void coru__stack_check(const struct coru__stack *s)
{
    if (s->flags & (CORU__STACK_GUARDED | CORU__STACK_GMARK)) return;
    if (unlikely(!coru__canary_ok(s->lo))) coru__stack_report_overflow(s);
}

/* ---- valgrind -------------------------------------------------------- */

static void vg_register(struct coru__stack *s)
{
#ifdef CORU_VALGRIND
    s->vg_id = VALGRIND_STACK_REGISTER(s->lo, (char *)s->lo + s->size);
#else
    s->vg_id = 0;
#endif
}

static void vg_deregister(struct coru__stack *s)
{
#ifdef CORU_VALGRIND
    VALGRIND_STACK_DEREGISTER(s->vg_id);
#endif
    s->vg_id = 0;
}

/* ---- mappings of their own (fallback mode) ---------------------------- */

/* The descriptor in the top CORU__DESC_SPACE bytes below `top`, lo just
 * below it (a canary mapping) or a page below it (a guarded one, whose lo
 * + size is page aligned). */
static struct coru__stack *desc_at(char *top, size_t size, void *map_base, size_t map_len, uint32_t flags)
{
    return coru__stack_desc_init((struct coru__stack *)(void *)(top - CORU__DESC_SPACE),
                                 top - (flags & CORU__STACK_GUARDED ? page : CORU__DESC_SPACE) - size, size, map_base,
                                 map_len, flags);
}

/* Takes one unit of the guard budget; false when it is used up. */
static bool guard_reserve(void)
{
    size_t n = atomic_load_explicit(&guarded_count, memory_order_relaxed);
    do {
        if (n >= atomic_load_explicit(&guard_budget, memory_order_relaxed)) return false;
    } while (!atomic_compare_exchange_weak_explicit(&guarded_count, &n, n + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

static void guard_unreserve(void) { atomic_fetch_sub_explicit(&guarded_count, 1, memory_order_relaxed); }

/* guard page (PROT_NONE, a VMA of its own) | size usable bytes | one page
 * whose top holds the descriptor. */
static struct coru__stack *map_guarded(size_t size)
{
    size_t len = page + size + page;
    char *m = coru__slab_map(len);
    if (!m) return NULL;
    if (coru__guard_protect(m, page) != 0) {
        munmap(m, len);
        return NULL;
    }
    return desc_at(m + len, size, m, len, CORU__STACK_GUARDED);
}

/* canary | usable | descriptor, pushed to the top of its mapping so the
 * descriptor and the stack's top share a page. */
static struct coru__stack *map_lone(size_t size)
{
    size_t len = round_up(CORU__CANARY_LEN + size + CORU__DESC_SPACE, page);
    char *m = coru__slab_map(len);
    if (!m) return NULL;
    struct coru__stack *s = desc_at(m + len, size, m, len, 0);
    coru__canary_set(s->lo);
    return s;
}

/* ---- getting and giving back ----------------------------------------- */

/* Final free of a list: slab stacks go back to their slabs in batches
 * (slab.c), mappings of their own to the OS. */
static void release_list(struct coru__stack *s)
{
    struct coru__stack *slab = NULL;
    for (struct coru__stack *nx; s; s = nx) {
        nx = s->next;
        vg_deregister(s);
        if (s->flags & CORU__STACK_SLAB) {
            s->next = slab;
            slab = s;
            continue;
        }
        bool guarded = s->flags & CORU__STACK_GUARDED;
        munmap(s->map_base, s->map_len); /* s itself is gone after this */
        if (guarded) guard_unreserve();
    }
    coru__slab_release(slab);
}

static void release(struct coru__stack *s)
{
    s->next = NULL;
    release_list(s);
}

static int alloc_global(size_t size, bool allow_guard, struct coru__stack **out)
{
    struct coru__stack *s = NULL;
    if (atomic_load_explicit(&guard_madv, memory_order_relaxed)) {
        (void)coru__slab_take(size, true, 1, &s);
        /* No marked slab: the kernel refused the markers (no memory for
         * page tables) or no slab could be mapped. A canary stack, as
         * coru.h promises for a refused guard; if there is no memory for
         * that either, -ENOMEM. When the canary stack could be had, the
         * markers were the trouble: they are turned off for the process,
         * so that later stacks take the fallback layout at once instead
         * of paying three refused slabs each. */
        if (!s) {
            if (size == coru__stack_default()) (void)coru__slab_take(size, false, 1, &s);
            if (!s) s = map_lone(size);
            if (s) atomic_store_explicit(&guard_madv, false, memory_order_relaxed);
        }
    } else {
        if (allow_guard && guard_reserve()) {
            s = map_guarded(size);
            /* Out of memory or of VMAs: an unguarded stack may still fit,
             * and no more guard pages are tried (see Invariants). */
            if (!s) {
                guard_unreserve();
                /* lowered, never raised: a CAS, so that two refusals at
                 * once cannot leave the larger count */
                size_t used = atomic_load_explicit(&guarded_count, memory_order_relaxed);
                size_t b = atomic_load_explicit(&guard_budget, memory_order_relaxed);
                while (used < b && !atomic_compare_exchange_weak_explicit(&guard_budget, &b, used, memory_order_relaxed,
                                                                          memory_order_relaxed)) {
                }
            }
        }
        if (!s && size == coru__stack_default()) (void)coru__slab_take(size, false, 1, &s);
        if (!s) s = map_lone(size);
    }
    if (!s) return -ENOMEM;
    vg_register(s);
    *out = s;
    return 0;
}

/* ---- pools ----------------------------------------------------------- */

void coru__stack_pool_init(struct coru__stack_pool *p)
{
    p->free = NULL;
    p->count = 0;
    p->high_water = 64;
}

void coru__stack_pool_fini(struct coru__stack_pool *p)
{
    release_list(p->free);
    p->free = NULL;
    p->count = 0;
}

static void pool_push(struct coru__stack_pool *p, struct coru__stack *s)
{
    s->next = p->free;
    p->free = s;
    p->count++;
}

/* Moves up to half a pool's worth of stacks of `size` from the depot or,
 * with guard markers, straight from the slabs (one lock and one madvise
 * for the batch). */
static void pool_refill(struct coru__stack_pool *p, size_t size)
{
    size_t want = p->high_water / 2 ? p->high_water / 2 : 1;
    struct coru__stack *stale = NULL, *s = coru__depot_take(&depot, want), *nx;
    if (!s && atomic_load_explicit(&guard_madv, memory_order_relaxed)) {
        (void)coru__slab_take(size, true, want, &s);
        for (struct coru__stack *t = s; t; t = t->next) vg_register(t);
    }
    for (; s; s = nx) {
        nx = s->next;
        if (s->size != size) { /* cached under an older default */
            s->next = stale;
            stale = s;
            continue;
        }
        pool_push(p, s);
    }
    release_list(stale);
}

/* Moves half of a full pool to the depot; what it cannot take goes back
 * to the OS. */
static void pool_spill(struct coru__stack_pool *p)
{
    release_list(coru__depot_spill(&depot, &p->free, &p->count, p->count / 2));
}

void coru__stack_depot_trim(void)
{
    release_list(coru__depot_drain(&depot));
    coru__slab_trim_kept();
}

void coru__stack_depot_trim_to(size_t keep, size_t most)
{
    size_t n = coru__depot_count(&depot);
    if (n <= keep) return;
    if (n - keep < most) most = n - keep;
    release_list(coru__depot_take(&depot, most));
}

size_t coru__stack_depot_count(void)
{
    return coru__depot_count(&depot);
}

int coru__stack_alloc(struct coru__stack_pool *p, size_t size, struct coru__stack **out)
{
    ensure_init();
    if (size > MAX_STACK) return -ENOMEM;
    size_t dflt = atomic_load_explicit(&dflt_size, memory_order_relaxed);
    size = size ? round_size(size) : dflt;
    if (p && size == dflt) {
        struct coru__stack *s = p->free;
        if (!s) {
            pool_refill(p, size);
            s = p->free;
        }
        if (likely(s && s->size == size)) {
            p->free = s->next;
            p->count--;
            s->next = NULL;
            s->owner_id = 0;
            s->owner_name = NULL;
            *out = s;
            return 0;
        }
        if (s) coru__stack_pool_fini(p); /* cached under an older default */
    }
    return alloc_global(size, true, out);
}

int coru__stack_alloc_unguarded(size_t size, struct coru__stack **out)
{
    ensure_init();
    if (size > MAX_STACK) return -ENOMEM;
    return alloc_global(coru__stack_round(size), false, out);
}

void coru__stack_free(struct coru__stack_pool *p, struct coru__stack *s)
{
    if (!s) return;
    /* A smashed canary must not travel on to the next owner, who would be
     * blamed for it: report it now, under the id that broke it. */
    coru__stack_check(s);
    /* No ensure_init: a stack exists, so global_init has run. */
    if (p && s->size == atomic_load_explicit(&dflt_size, memory_order_relaxed)) {
        if (p->count >= p->high_water) pool_spill(p);
        pool_push(p, s);
        return;
    }
    /* Other sizes (and frees without a pool): a slab keeps a few intact
     * for the next stack of their size, so that a generator or a coroutine
     * with a stack size of its own costs no system call per life. */
    if (s->flags & CORU__STACK_SLAB) {
        vg_deregister(s);
        if (!coru__slab_keep(s)) {
            s->next = NULL;
            coru__slab_release(s);
        }
        return;
    }
    release(s);
}
