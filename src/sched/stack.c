/* Coroutine stacks: guarded mappings, slabs of unguarded slots, per-worker
 * pools and the SIGSEGV/SIGBUS overflow reporter. Layout: see stack.h.
 *
 * Invariants:
 *   - guarded_count is the number of mapped stacks with CORU__STACK_GUARDED
 *     (pooled or in use) and never exceeds guard_budget.
 *   - Every stack has a guard page below lo: its own PROT_NONE page
 *     (CORU__STACK_GUARDED, counted in the budget) or, where the kernel
 *     has MADV_GUARD_INSTALL (6.13), a guard marker in the page tables
 *     that needs no VMA (CORU__STACK_GMARK: slab slots and lone mappings
 *     past the budget). On older kernels, stacks past the budget carry
 *     instead an intact canary at [lo - CANARY_LEN, lo) from the moment
 *     they are handed out until they are released; a stack whose canary
 *     is broken is never pooled or recycled (free checks first).
 *   - A slab slot belongs to its slab forever. Slabs are never unmapped:
 *     unmapping one would need all 64 slots free at once, and unmapping a
 *     single slot would split the slab's VMA, the very thing slabs avoid.
 *     Released slots give their memory back with MADV_DONTNEED instead.
 *   - The page holding a slot's descriptor (and the next slot's canary)
 *     and the page holding its canary (and the previous slot's
 *     descriptor) are never passed to MADV_DONTNEED.
 *   - A pool holds only stacks of the default size at the time they were
 *     freed; if the default changes, the next default-size alloc that
 *     meets a stale stack drains the pool.
 *
 * Ownership map:
 *   page, builtin_default, guard_budget  written once in global_init
 *                          (pthread_once), read-only afterwards
 *   dflt_size              any thread, atomic
 *   guarded_count          any thread, atomic
 *   classes and each class's free list / carve cursor: slab_lock
 *   depot                  its own lock (depot.h)
 *   struct coru__stack_pool   its owner thread only
 *   tls_current, tls_altstack the thread itself and its signal handler
 *   old_segv, old_bus      written once in install_handlers, then read by
 *                          the handler only
 */
#include "sched/stack.h"

#include "common.h"
#include "sched/depot.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
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
/* The canary below an unguarded stack: a frame of up to this many bytes
 * cannot step over it without writing into it (its call pushes a return
 * address somewhere in every span this long). */
#define CANARY_LEN 256
/* The descriptor's footprint at the top of a stack; a multiple of 64 so
 * that slab slots keep lo and lo + size 64-byte aligned. */
#define DESC_SPACE 64
#define SLAB_SLOTS 64
/* VMAs left to the rest of the process before guarded stacks get any. */
#define VMA_RESERVE 8192
#define DEFAULT_MAX_MAP_COUNT 65530
/* A fault this far below lo on the current stack counts as an overflow:
 * a large frame can jump over a guard page (or, unguarded, run past the
 * neighbouring memory) before it touches anything. */
#define OVERFLOW_WINDOW ((size_t)64 * 1024)
#define ALTSTACK_SIZE ((size_t)64 * 1024)
#define HUGE_PAGE ((size_t)2 * 1024 * 1024)
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13: guard pages without a VMA */
#endif

_Static_assert(sizeof(struct coru__stack) <= DESC_SPACE, "descriptor must fit in DESC_SPACE");

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static size_t page;
static size_t builtin_default;
static size_t guard_budget;
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

/* Stacks of one size carved from slabs. Classes are created on demand
 * (one per default size ever used) and never freed, like the slabs. */
struct slab_class {
    size_t size;              /* usable bytes per slot */
    bool gm;                  /* slots start with a MADV_GUARD_INSTALL page
                                 and keep their descriptors in `descs` */
    struct coru__stack *descs; /* gm: descriptors of the newest slab's slots */
    struct coru__stack *free; /* released slots, LIFO; pages madvised away */
    char *carve;              /* next never-used slot of the newest slab */
    size_t carve_left;        /* never-used slots left there */
    struct slab_class *next;
};
static pthread_mutex_t slab_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slab_class *classes; /* guarded by slab_lock */

/* The depot (depot.h): intact default-size stacks (guarded or slab,
 * memory still mapped) between the per-worker pools and the OS. A pool
 * over its high-water mark hands half of itself here, a pool that runs
 * dry takes a batch back, so stacks move between workers without a
 * system call. Releasing memory is slow (munmap, madvise) and bursts of
 * exits are common, so frees never wait for it: the depot takes up to
 * DEPOT_HARD_MAX stacks, and an idle worker trims it back to
 * CORU__STACK_DEPOT_KEEP before it sleeps (coru__stack_depot_trim_to). */
#define DEPOT_HARD_MAX (1 << 21)
static struct coru__depot depot = CORU__DEPOT_INIT(struct coru__stack, next, DEPOT_HARD_MAX);

static pthread_once_t sig_once = PTHREAD_ONCE_INIT;
static int sig_err; /* install_handlers' result, read after pthread_once */
static struct sigaction old_segv, old_bus;

/* Read by this thread's fault handler. initial-exec so that the handler's
 * access is a plain %fs-relative load, never a call into the dynamic
 * linker's TLS allocator. */
static __thread _Atomic(struct coru__stack *) tls_current __attribute__((tls_model("initial-exec")));
static __thread char *tls_altstack __attribute__((tls_model("initial-exec")));

static size_t round_up(size_t n, size_t to) { return (n + to - 1) & ~(to - 1); }
static size_t round_down(size_t n, size_t to) { return n & ~(to - 1); }

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
    if (maps == 0) maps = DEFAULT_MAX_MAP_COUNT;
    guard_budget = maps > VMA_RESERVE ? (maps - VMA_RESERVE) / 4 : 0;

    /* A guard page installed by madvise lives in the page tables, not in
     * a VMA of its own, so stacks past the budget get one too. */
    const char *no = getenv("CORU_NO_GUARD_MADVISE");
    if (!(no && *no && strcmp(no, "0") != 0)) {
        char *m = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m != MAP_FAILED) {
            atomic_store_explicit(&guard_madv, madvise(m, page, MADV_GUARD_INSTALL) == 0, memory_order_relaxed);
            munmap(m, 2 * page);
        }
    }
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
    return guard_budget;
}

/* ---- canary ---------------------------------------------------------- */

/* Each word mixes in its own address, so a canary copied from elsewhere
 * (or a stale slot) does not pass. */
static uint64_t canary_word(const uint64_t *at)
{
    return 0xc0c0a5a55a5ac0deull ^ ((uint64_t)(uintptr_t)at * 0x9e3779b97f4a7c15ull);
}

static void canary_set(void *lo)
{
    uint64_t *w = (uint64_t *)((char *)lo - CANARY_LEN);
    for (int i = 0; i < CANARY_LEN / 8; i++) w[i] = canary_word(&w[i]);
}

static bool canary_ok(const void *lo)
{
    const uint64_t *w = (const uint64_t *)((const char *)lo - CANARY_LEN);
    uint64_t diff = 0;
    for (int i = 0; i < CANARY_LEN / 8; i++) diff |= w[i] ^ canary_word(&w[i]);
    return diff == 0;
}

/* ---- overflow report (async-signal-safe) ----------------------------- */

static size_t put_str(char *buf, size_t at, const char *s)
{
    while (*s) buf[at++] = *s++;
    return at;
}

static size_t put_u64(char *buf, size_t at, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) buf[at++] = tmp[--n];
    return at;
}

/* Prints the overflow message with write(2) only and aborts. Called from
 * coru__stack_check and from the fault handler. */
__attribute__((noreturn, cold)) static void report_overflow(const struct coru__stack *s)
{
    char msg[128];
    size_t n = put_str(msg, 0, "coru: coroutine ");
    n = put_u64(msg, n, s->owner_id);
    n = put_str(msg, n, " overflowed its stack (");
    n = put_u64(msg, n, s->size);
    n = put_str(msg, n, " bytes)\n");
    for (size_t off = 0; off < n;) {
        ssize_t w = write(2, msg + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    abort();
}

void coru__stack_check(const struct coru__stack *s)
{
    if (s->flags & (CORU__STACK_GUARDED | CORU__STACK_GMARK)) return;
    if (unlikely(!canary_ok(s->lo))) report_overflow(s);
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

/* ---- mappings -------------------------------------------------------- */

static char *map_rw(size_t len)
{
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return NULL;
    /* With THP set to "always", one touch would make 2 MiB resident. Done
     * on the whole fresh mapping, so it adds no VMA. */
    if (len >= HUGE_PAGE) (void)madvise(m, len, MADV_NOHUGEPAGE);
    return m;
}

/* Fills the descriptor at s. */
static struct coru__stack *desc_fill(struct coru__stack *s, char *lo, size_t size, void *map_base, size_t map_len,
                                     uint32_t flags)
{
    s->lo = lo;
    s->size = size;
    s->map_base = map_base;
    s->map_len = map_len;
    s->next = NULL;
    s->owner_id = 0;
    s->flags = flags;
    s->vg_id = 0;
    return s;
}

/* The descriptor in the top DESC_SPACE bytes below `top`. Guarded: the
 * descriptor's page lies above lo + size. Unguarded: the descriptor sits
 * right on lo + size. */
static struct coru__stack *desc_at(char *top, size_t size, void *map_base, size_t map_len, uint32_t flags)
{
    char *lo = top - (flags & (CORU__STACK_GUARDED | CORU__STACK_GMARK) ? page : DESC_SPACE) - size;
    return desc_fill((struct coru__stack *)(void *)(top - DESC_SPACE), lo, size, map_base, map_len, flags);
}

/* Takes one unit of the guard budget; false when it is used up. */
static bool guard_reserve(void)
{
    size_t n = atomic_load_explicit(&guarded_count, memory_order_relaxed);
    do {
        if (n >= guard_budget) return false;
    } while (!atomic_compare_exchange_weak_explicit(&guarded_count, &n, n + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

static void guard_unreserve(void) { atomic_fetch_sub_explicit(&guarded_count, 1, memory_order_relaxed); }

/* guard page | size usable bytes | one page whose top holds the
 * descriptor. lo and lo + size are page aligned, so the descriptor needs
 * a page of its own. The guard is its own PROT_NONE VMA (CORU__STACK_GUARDED)
 * or, gm, a MADV_GUARD_INSTALL marker in the same VMA (CORU__STACK_GMARK). */
static struct coru__stack *map_guarded(size_t size, bool gm)
{
    size_t len = page + size + page;
    char *m = map_rw(len);
    if (!m) return NULL;
    if ((gm ? madvise(m, page, MADV_GUARD_INSTALL) : mprotect(m, page, PROT_NONE)) != 0) {
        munmap(m, len);
        return NULL;
    }
    return desc_at(m + len, size, m, len, gm ? CORU__STACK_GMARK : CORU__STACK_GUARDED);
}

/* A stack of a non-default size past the budget. With MADV_GUARD_INSTALL:
 * laid out as a guarded one, its guard a marker (one VMA). Otherwise
 * canary | usable | descriptor, pushed to the top of its mapping so the
 * descriptor and the stack's top share a page. */
static struct coru__stack *map_lone(size_t size)
{
    if (atomic_load_explicit(&guard_madv, memory_order_relaxed)) return map_guarded(size, true);
    size_t len = round_up(CANARY_LEN + size + DESC_SPACE, page);
    char *m = map_rw(len);
    if (!m) return NULL;
    struct coru__stack *s = desc_at(m + len, size, m, len, 0);
    canary_set(s->lo);
    return s;
}

/* A slot: canary | usable | descriptor, or (gm) guard page | usable,
 * page aligned, its descriptor kept apart so that an idle slot keeps no
 * page resident. */
static size_t slot_len(size_t size, bool gm) { return gm ? page + size : CANARY_LEN + size + DESC_SPACE; }

/* Caller holds slab_lock. NULL only when a new class cannot be
 * allocated. */
static struct slab_class *find_class(size_t size, bool gm)
{
    for (struct slab_class *c = classes; c; c = c->next)
        if (c->size == size && c->gm == gm) return c;
    struct slab_class *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->size = size;
    c->gm = gm;
    c->next = classes;
    classes = c;
    return c;
}

/* A slot of `size` from the global free list, else carved from the newest
 * slab, else from a new slab. The mmap of a new slab happens under
 * slab_lock: once per 64 carves, and it keeps two threads from mapping a
 * slab each. */
static struct coru__stack *slab_get(size_t size)
{
    struct coru__stack *s = NULL, *desc = NULL;
    char *slot = NULL;
    bool gm = atomic_load_explicit(&guard_madv, memory_order_relaxed);
    size_t len = slot_len(size, gm);
    pthread_mutex_lock(&slab_lock);
    struct slab_class *c = find_class(size, gm);
    if (!c) goto out;
    if (c->free) {
        s = c->free;
        c->free = s->next;
        s->next = NULL;
        goto out;
    }
    if (c->carve_left == 0) {
        size_t mlen = round_up(len * SLAB_SLOTS, page);
        char *m = map_rw(mlen);
        if (!m) goto out;
        if (gm && !(c->descs = calloc(SLAB_SLOTS, sizeof *c->descs))) {
            munmap(m, mlen);
            goto out;
        }
        c->carve = m;
        c->carve_left = SLAB_SLOTS;
    }
    slot = c->carve;
    if (gm) desc = &c->descs[SLAB_SLOTS - c->carve_left];
    c->carve += len;
    c->carve_left--;
out:
    pthread_mutex_unlock(&slab_lock);
    if (slot && gm) {
        /* Ours alone now. A failed install (no memory for page tables)
         * leaves the slot unused for good: it cannot go out unguarded. */
        if (madvise(slot, page, MADV_GUARD_INSTALL) != 0) return NULL;
        s = desc_fill(desc, slot + page, size, slot, len, CORU__STACK_SLAB | CORU__STACK_GMARK);
    } else if (slot) {
        /* The slot is ours alone now; fill it in outside the lock. */
        s = desc_at(slot + len, size, slot, len, CORU__STACK_SLAB);
        canary_set(s->lo);
    }
    return s;
}

/* Gives a slab slot's memory back and puts it on the global free list.
 * Only whole pages strictly inside [lo, lo + size) are dropped: the page
 * with the canary and the page with the descriptor stay (see Invariants).
 * A gm slot is page aligned and keeps its descriptor apart, so all of its
 * usable pages go (its guard page survives MADV_DONTNEED). */
static void slab_put(struct coru__stack *s)
{
    bool gm = s->flags & CORU__STACK_GMARK;
    uintptr_t from = round_up((uintptr_t)s->lo, page);
    uintptr_t to = round_down((uintptr_t)s->lo + s->size, page);
    if (to > from) (void)madvise((void *)from, to - from, MADV_DONTNEED);

    pthread_mutex_lock(&slab_lock);
    struct slab_class *c = find_class(s->size, gm); /* exists: s was carved from it */
    CORU_ASSERT(c != NULL);
    s->next = c->free;
    c->free = s;
    pthread_mutex_unlock(&slab_lock);
}

/* Final free: back to the OS, or to the global slab free list. */
static void release(struct coru__stack *s)
{
    vg_deregister(s);
    if (s->flags & CORU__STACK_SLAB) {
        slab_put(s);
        return;
    }
    bool guarded = s->flags & CORU__STACK_GUARDED;
    munmap(s->map_base, s->map_len); /* s itself is gone after this */
    if (guarded) guard_unreserve();
}

static int alloc_global(size_t size, bool allow_guard, struct coru__stack **out)
{
    struct coru__stack *s = NULL;
    if (allow_guard && guard_reserve()) {
        s = map_guarded(size, false);
        /* Out of memory or of VMAs: an unguarded stack may still fit. */
        if (!s) guard_unreserve();
    }
    if (!s) s = size == coru__stack_default() ? slab_get(size) : map_lone(size);
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
    while (p->free) {
        struct coru__stack *s = p->free;
        p->free = s->next;
        p->count--;
        release(s);
    }
}

static void release_list(struct coru__stack *s)
{
    for (struct coru__stack *nx; s; s = nx) {
        nx = s->next;
        release(s);
    }
}

/* Moves up to half a pool's worth of stacks of `size` from the depot. */
static void pool_refill(struct coru__stack_pool *p, size_t size)
{
    for (struct coru__stack *s = coru__depot_take(&depot, p->high_water / 2), *nx; s; s = nx) {
        nx = s->next;
        if (s->size != size) { /* cached under an older default */
            release(s);
            continue;
        }
        s->next = p->free;
        p->free = s;
        p->count++;
    }
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
        s->next = p->free;
        p->free = s;
        p->count++;
        return;
    }
    release(s);
}

/* ---- fault handler --------------------------------------------------- */

static bool is_overflow(const struct coru__stack *s, const void *addr)
{
    uintptr_t a = (uintptr_t)addr, lo = (uintptr_t)s->lo;
    uintptr_t floor = lo > OVERFLOW_WINDOW ? lo - OVERFLOW_WINDOW : 0;
    return a < lo && a >= floor;
}

/* Hands a fault that is not ours to whoever had the signal before us. An
 * old handler is called directly (its sa_mask is not applied). With no
 * old handler the default action is put back: a fault then repeats when
 * the handler returns and kills the process; a signal sent by kill(2)
 * does not repeat, so it is raised again (it stays blocked until the
 * handler returns). */
static void chain(int sig, siginfo_t *si, void *uc)
{
    const struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
    if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        if (old->sa_flags & SA_SIGINFO)
            old->sa_sigaction(sig, si, uc);
        else
            old->sa_handler(sig);
        return;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (si->si_code <= 0) raise(sig);
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    /* Relaxed: written by this very thread (set_current), which the
     * handler interrupts; set_current's signal fence keeps the store ahead
     * of the code that may fault. */
    const struct coru__stack *s = atomic_load_explicit(&tls_current, memory_order_relaxed);
    /* si_code <= 0: sent by a process, si_addr means nothing. */
    if (s && si->si_code > 0 && is_overflow(s, si->si_addr)) report_overflow(s);
    chain(sig, si, uc);
    errno = saved;
}

static void install_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &old_segv) != 0 || sigaction(SIGBUS, &sa, &old_bus) != 0) sig_err = -errno;
}

int coru__stack_thread_init(void)
{
    ensure_init();
    pthread_once(&sig_once, install_handlers);
    if (sig_err) return sig_err;
    if (tls_altstack) return 0;

    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0) return -errno;
    /* Someone (e.g. ASan) already gave this thread an alternate stack. */
    if (!(cur.ss_flags & SS_DISABLE)) return 0;

    /* A guard page below it too: a handler that overruns the alternate
     * stack faults instead of scribbling over a neighbour. */
    size_t len = page + ALTSTACK_SIZE;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return -ENOMEM;
    if (mprotect(m, page, PROT_NONE) != 0) {
        munmap(m, len);
        return -ENOMEM;
    }
    stack_t ss = {.ss_sp = m + page, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        int rc = -errno;
        munmap(m, len);
        return rc;
    }
    tls_altstack = m;
    return 0;
}

void coru__stack_thread_fini(void)
{
    coru__stack_set_current(NULL);
    if (!tls_altstack) return;
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0) return; /* cannot tell: keep it */
    if (!(cur.ss_flags & SS_DISABLE) && cur.ss_sp == tls_altstack + page) {
        stack_t off = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
        if (sigaltstack(&off, NULL) != 0) return; /* running on it: keep it */
    }
    munmap(tls_altstack, page + ALTSTACK_SIZE);
    tls_altstack = NULL;
}

void coru__stack_set_current(struct coru__stack *s)
{
    /* Relaxed: only this thread's fault handler reads it. */
    atomic_store_explicit(&tls_current, s, memory_order_relaxed);
    /* Forbids the compiler from sinking the store below the stack accesses
     * that follow, which are the ones that may fault. */
    atomic_signal_fence(memory_order_seq_cst);
}
