/* Slabs of coroutine stacks and the batched madvise under them; see
 * slab.h for the model and stack.h for the slot layouts.
 *
 * Invariants (under slab_lock unless noted):
 *   - Every slot of a gm slab has its guard marker from the moment the
 *     slab is published (slab_new installs all of them first, or unmaps
 *     the slab); MADV_DONTNEED keeps markers, so no slot ever needs one
 *     again.
 *   - A slot on `kept` is intact (its memory resident, its canary, if
 *     any, whole); a slot on `free` has had the pages of its usable
 *     range given back, except, in the canary layout, the page holding
 *     its canary (and the previous slot's descriptor) and the one holding
 *     its descriptor (and the next slot's canary), which are never passed
 *     to MADV_DONTNEED.
 *   - A gm slot's descriptor lives in its slab's `descs` array, never in
 *     slot memory, so giving back the whole usable range keeps it; a
 *     canary slot's descriptor lives in the top page that is never given
 *     back. Either way `next` survives on the free list.
 *   - nkept <= KEEP_MAX.
 *
 * Ownership map:
 *   page, batch_ok      written once by coru__slab_setup (stack.c's
 *                       pthread_once), then read-only (batch_ok: tests
 *                       flip it, single-threaded, between allocations)
 *   classes and every field of a class, guard_iov   slab_lock
 *   a slot handed out   its holder
 */
#include "fail.h"
#include "sched/slab.h"

#include "common.h"
#include "sched/canary.h"
#include "sched/stack.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef SYS_process_madvise
#define SYS_process_madvise 440 /* the same number on x86-64 and aarch64 */
#endif
/* pidfd.h's PIDFD_SELF_PROCESS: "the calling process", no fd to hold
 * (an fd would outlive a fork and point at the parent). */
#define SELF_PROCESS (-10001)

/* A slab is about SLAB_BYTES of address space (reserved, not committed:
 * MAP_NORESERVE), between 1 and SLAB_MAX_SLOTS slots. */
#define SLAB_BYTES ((size_t)32 << 20)
#define SLAB_MAX_SLOTS 512
/* Intact stacks a class keeps for reuse (see coru__slab_keep). */
#define KEEP_MAX 64
/* Ranges per process_madvise in take and release (arrays on the caller's
 * stack, which may be a coroutine's: 64 ranges are 1 KiB). */
#define IOV_BATCH 64
#define HUGE_PAGE ((size_t)2 * 1024 * 1024)

static size_t page;
/* Relaxed: a setting, fixed before the first slab (tests excepted). */
static _Atomic bool batch_ok;

struct slab_class {
    size_t size;               /* usable bytes per slot */
    bool gm;                   /* guard-marked layout, else canary */
    size_t len;                /* bytes per slot */
    size_t per_slab;           /* slots per slab */
    size_t cur_slots;          /* slots of the newest slab (fewer when
                                  memory was short, see slab_new) */
    struct coru__stack *kept;  /* intact slots, LIFO */
    size_t nkept;
    struct coru__stack *free;  /* given-back slots, LIFO */
    char *carve;               /* next never-used slot of the newest slab */
    size_t carve_left;         /* never-used slots left there */
    struct coru__stack *descs; /* gm: descriptors of the newest slab */
    struct slab_class *next;
};
static pthread_mutex_t slab_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slab_class *classes;
static struct iovec guard_iov[SLAB_MAX_SLOTS];

static size_t round_up(size_t n, size_t to) { return (n + to - 1) & ~(to - 1); }
static size_t round_down(size_t n, size_t to) { return n & ~(to - 1); }

/* Applies `advice` to n ranges: one process_madvise where the kernel
 * takes it on the caller itself, else (or if it stopped part way) one
 * madvise per range; every advice used here may be repeated harmlessly.
 * Returns 0 or -errno of a range that failed. */
static int madv_ranges(struct iovec *v, size_t n, int advice)
{
    if (n == 0) return 0;
    if (atomic_load_explicit(&batch_ok, memory_order_relaxed)) {
        size_t want = 0;
        for (size_t i = 0; i < n; i++) want += v[i].iov_len;
        long r = syscall(SYS_process_madvise, SELF_PROCESS, v, n, advice, 0);
        if (r >= 0 && (size_t)r == want) return 0;
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        if (madvise(v[i].iov_base, v[i].iov_len, advice) != 0) rc = -errno;
    return rc;
}

/* Whether process_madvise(SELF_PROCESS) takes `advice` on one page of m. */
static bool probe(char *m, int advice)
{
    struct iovec v = {.iov_base = m, .iov_len = page};
    return syscall(SYS_process_madvise, SELF_PROCESS, &v, 1, advice, 0) == (long)page;
}

void coru__slab_setup(size_t pg, bool guard_madvise)
{
    page = pg;
    const char *no = getenv("CORU_NO_BATCH_MADVISE");
    if (no && *no && strcmp(no, "0") != 0) return;
    char *m = coru__mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return;
    bool ok = probe(m + page, MADV_DONTNEED) &&
              (!guard_madvise || probe(m, MADV_GUARD_INSTALL));
    munmap(m, 2 * page);
    atomic_store_explicit(&batch_ok, ok, memory_order_relaxed);
}

bool coru__slab_batching(void) { return atomic_load_explicit(&batch_ok, memory_order_relaxed); }
void coru__slab_use_batching(bool on) { atomic_store_explicit(&batch_ok, on, memory_order_relaxed); }

char *coru__slab_map(size_t len)
{
    void *m = coru__mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return NULL;
    /* Done on the whole fresh mapping, so it adds no VMA (and adjacent
     * slabs, all flagged alike, still merge). */
    if (len >= HUGE_PAGE) (void)madvise(m, len, MADV_NOHUGEPAGE);
    return m;
}

/* Caller holds slab_lock. NULL only when a new class cannot be
 * allocated. */
static struct slab_class *find_class(size_t size, bool gm)
{
    for (struct slab_class *c = classes; c; c = c->next)
        if (c->size == size && c->gm == gm) return c;
    struct slab_class *c = coru__calloc(1, sizeof *c);
    if (!c) return NULL;
    c->size = size;
    c->gm = gm;
    c->len = gm ? page + size : CORU__CANARY_LEN + size + CORU__DESC_SPACE;
    size_t per = SLAB_BYTES / c->len;
    c->per_slab = per < 1 ? 1 : per > SLAB_MAX_SLOTS ? SLAB_MAX_SLOTS : per;
    c->next = classes;
    classes = c;
    return c;
}

/* Maps a new slab for c and makes it the one carved from; gm: with every
 * slot's guard installed (one batch). When the full size cannot be mapped
 * (an address-space limit, RLIMIT_AS), tries an eighth, then a single
 * slot, before giving up. Caller holds slab_lock: a new slab is due once
 * per per_slab carves, and the lock keeps two threads from mapping one
 * each. */
static bool slab_new(struct slab_class *c)
{
    size_t tries[] = {c->per_slab, c->per_slab / 8, 1};
    for (size_t k = 0; k < sizeof tries / sizeof tries[0]; k++) {
        size_t slots = tries[k];
        if (slots == 0 || (k && slots >= tries[k - 1])) continue;
        size_t mlen = round_up(c->len * slots, page);
        char *m = coru__slab_map(mlen);
        if (!m) continue;
        struct coru__stack *descs = NULL;
        if (c->gm) {
            if (!(descs = coru__calloc(slots, sizeof *descs))) goto fail;
            for (size_t i = 0; i < slots; i++) guard_iov[i] = (struct iovec){m + i * c->len, page};
            /* A failed install (no memory for page tables) must not let
             * a slot out unguarded. */
            if (coru__fail_now(CORU__FAIL_GUARD) || madv_ranges(guard_iov, slots, MADV_GUARD_INSTALL) != 0) goto fail;
        }
        c->carve = m;
        c->carve_left = c->cur_slots = slots;
        c->descs = descs; /* the previous slab's array stays: its slots live on */
        return true;
    fail:
        free(descs);
        munmap(m, mlen);
    }
    return false;
}

size_t coru__slab_take(size_t size, bool gm, size_t want, struct coru__stack **out)
{
    char *fresh[CORU__SLAB_TAKE_MAX];
    struct coru__stack *fdesc[CORU__SLAB_TAKE_MAX], *list = NULL;
    size_t n = 0, nf = 0, len = 0;
    if (want > CORU__SLAB_TAKE_MAX) want = CORU__SLAB_TAKE_MAX;
    pthread_mutex_lock(&slab_lock);
    struct slab_class *c = find_class(size, gm);
    if (c) len = c->len;
    while (c && n < want) {
        struct coru__stack *s;
        if ((s = c->kept)) {
            c->kept = s->next;
            c->nkept--;
        } else if ((s = c->free)) {
            c->free = s->next;
        } else {
            if (!c->carve_left && !slab_new(c)) break;
            fresh[nf] = c->carve;
            fdesc[nf++] = gm ? &c->descs[c->cur_slots - c->carve_left] : NULL;
            c->carve += c->len;
            c->carve_left--;
            n++;
            continue;
        }
        s->next = list;
        list = s;
        n++;
    }
    pthread_mutex_unlock(&slab_lock);
    /* Fresh slots are ours alone now: lay them out outside the lock (a
     * canary slot's descriptor and canary are first touches). */
    for (size_t i = 0; i < nf; i++) {
        struct coru__stack *s;
        if (gm) {
            s = coru__stack_desc_init(fdesc[i], fresh[i] + page, size, fresh[i], len,
                                      CORU__STACK_SLAB | CORU__STACK_GMARK);
        } else {
            char *top = fresh[i] + len;
            s = coru__stack_desc_init((struct coru__stack *)(void *)(top - CORU__DESC_SPACE),
                                      top - CORU__DESC_SPACE - size, size, fresh[i], len, CORU__STACK_SLAB);
            coru__canary_set(s->lo);
        }
        s->next = list;
        list = s;
    }
    for (struct coru__stack *s = list; s; s = s->next) s->owner_id = 0, s->owner_name = NULL;
    *out = list;
    return n;
}

bool coru__slab_keep(struct coru__stack *s)
{
    bool kept = false;
    pthread_mutex_lock(&slab_lock);
    struct slab_class *c = find_class(s->size, s->flags & CORU__STACK_GMARK);
    if (c && c->nkept < KEEP_MAX) {
        s->next = c->kept;
        c->kept = s;
        c->nkept++;
        kept = true;
    }
    pthread_mutex_unlock(&slab_lock);
    return kept;
}

/* The part of s's usable range that may go back to the kernel: all of it
 * for a gm slot; for a canary slot, the whole pages strictly inside, so
 * that the canary's page and the descriptor's stay (see Invariants). */
static bool give_back_range(const struct coru__stack *s, struct iovec *v)
{
    uintptr_t from = round_up((uintptr_t)s->lo, page);
    uintptr_t to = round_down((uintptr_t)s->lo + s->size, page);
    if (to <= from) return false;
    *v = (struct iovec){(void *)from, to - from};
    return true;
}

void coru__slab_release(struct coru__stack *list)
{
    while (list) {
        struct iovec v[IOV_BATCH];
        struct coru__stack *batch[IOV_BATCH];
        size_t k = 0, nv = 0;
        for (; list && k < IOV_BATCH; list = list->next) {
            batch[k++] = list;
            if (give_back_range(list, &v[nv])) nv++;
        }
        (void)madv_ranges(v, nv, MADV_DONTNEED); /* cannot fail on a mapped range */
        pthread_mutex_lock(&slab_lock);
        for (size_t i = 0; i < k; i++) {
            struct coru__stack *s = batch[i];
            struct slab_class *c = find_class(s->size, s->flags & CORU__STACK_GMARK);
            CORU_ASSERT(c != NULL); /* exists: s was carved from it */
            s->next = c->free;
            c->free = s;
        }
        pthread_mutex_unlock(&slab_lock);
    }
}

void coru__slab_trim_kept(void)
{
    struct coru__stack *all = NULL;
    pthread_mutex_lock(&slab_lock);
    for (struct slab_class *c = classes; c; c = c->next) {
        while (c->kept) {
            struct coru__stack *s = c->kept;
            c->kept = s->next;
            s->next = all;
            all = s;
        }
        c->nkept = 0;
    }
    pthread_mutex_unlock(&slab_lock);
    coru__slab_release(all);
}
