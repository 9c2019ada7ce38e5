/* Tests for src/sched/stack.c: sizes, pools, the guard budget and slabs,
 * and overflow reports from guard pages and canaries. */
#include "common.h"
#include "sched/slab.h"
#include "sched/stack.h"
#include "emu.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#define KiB ((size_t)1024)

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static size_t max_map_count(void)
{
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    unsigned long v = 65530;
    if (f) {
        if (fscanf(f, "%lu", &v) != 1) v = 65530;
        fclose(f);
    }
    return v;
}

static size_t map_count(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    cr_assert_not_null(f);
    size_t lines = 0;
    int c;
    while ((c = getc(f)) != EOF)
        if (c == '\n') lines++;
    fclose(f);
    return lines;
}

/* Runs fn in a forked child with stderr captured. Returns the wait status;
 * the child's stderr lands in out (NUL-terminated). */
static int run_child(void (*fn)(void), char *out, size_t outlen)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        close(fds[1]);
        fn();
        _exit(0);
    }
    close(fds[1]);
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fds[0], out + got, outlen - 1 - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
        if (got == outlen - 1) break;
    }
    out[got] = '\0';
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0) cr_assert_eq(errno, EINTR);
    return status;
}

static void assert_aborted_with(int status, const char *out, const char *msg)
{
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "child status %#x, stderr: %s", status, out);
    cr_assert_not_null(strstr(out, msg), "stderr was: %s", out);
}

/* The two ways stacks are made (stack.c): with guard markers
 * (MADV_GUARD_INSTALL, Linux 6.13+), every stack is a guard-marked slab
 * slot; in the fallback, stacks get guarded mappings of their own within
 * the budget, canary slab slots past it. Tests of either set the mode
 * first (each test runs in a process of its own). MODE_MARKERS is
 * skipped, with a warning, where the kernel lacks the markers. */
enum { MODE_FALLBACK, MODE_MARKERS };
/* Asks the kernel itself, whatever mode the library is in now. */
static bool have_markers(void)
{
    const char *no = getenv("CORU_NO_GUARD_MADVISE");
    if (no && *no && strcmp(no, "0") != 0) return false;
    size_t pg = page_size();
    char *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(m, MAP_FAILED);
    bool ok = madvise(m, pg, 102 /* MADV_GUARD_INSTALL */) == 0;
    if (ok) { /* and it guards: qemu-user says 0 to advice it ignores */
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        ok = write(fds[1], m, 1) < 0 && errno == EFAULT;
        close(fds[0]);
        close(fds[1]);
    }
    munmap(m, 2 * pg);
    return ok;
}

static bool set_mode(int mode)
{
    if (mode == MODE_MARKERS && !have_markers()) {
        NOTE_MISSING("MADV_GUARD_INSTALL is not available here (Linux 6.13+): guard-marked slabs untested");
        return false;
    }
    coru__stack_use_guard_madvise(mode == MODE_MARKERS);
    return true;
}

/* The flags of a stack from coru__stack_alloc while the guard budget
 * lasts, and of one past it (coru__stack_alloc_unguarded). */
static uint32_t first_flags(void)
{
    return coru__stack_guard_madvise() ? CORU__STACK_SLAB | CORU__STACK_GMARK : CORU__STACK_GUARDED;
}

static uint32_t past_budget_flags(bool dflt)
{
    if (coru__stack_guard_madvise()) return CORU__STACK_SLAB | CORU__STACK_GMARK;
    return dflt ? CORU__STACK_SLAB : 0u;
}

Test(stack, pool_hands_back_the_hottest_stack_without_a_new_mapping)
{
    for (int mode = 0; mode < 2; mode++) {
        if (!set_mode(mode)) continue;
        struct coru__stack_pool p;
        coru__stack_pool_init(&p);
        struct coru__stack *a, *b, *c;
        cr_assert_eq(coru__stack_alloc(&p, 0, &a), 0);
        cr_assert_eq(coru__stack_alloc(&p, 0, &b), 0);
        cr_assert_neq(a, b);
        cr_assert_eq(a->flags, first_flags());
        size_t guarded = coru__stack_guarded_count(), held = p.count; /* markers: the rest of a batch */
        coru__stack_free(&p, a);
        coru__stack_free(&p, b);
        cr_assert_eq(p.count, held + 2);
        /* LIFO: the last freed comes back first, then the one before. */
        cr_assert_eq(coru__stack_alloc(&p, 0, &c), 0);
        cr_assert_eq(c, b);
        cr_assert_eq(coru__stack_alloc(&p, 0, &c), 0);
        cr_assert_eq(c, a);
        cr_assert_eq(p.count, held);
        cr_assert_eq(coru__stack_guarded_count(), guarded);
        coru__stack_free(&p, a);
        coru__stack_free(&p, b);
        coru__stack_pool_fini(&p);
        cr_assert_eq(p.count, 0);
        cr_assert_null(p.free);
        cr_assert_eq(coru__stack_guarded_count(), guarded - (mode == MODE_FALLBACK ? 2 : 0));
    }
}

Test(stack, alloc_resets_owner_id)
{
    struct coru__stack_pool p;
    coru__stack_pool_init(&p);
    struct coru__stack *s;
    cr_assert_eq(coru__stack_alloc(&p, 0, &s), 0);
    s->owner_id = 99;
    coru__stack_free(&p, s);
    cr_assert_eq(coru__stack_alloc(&p, 0, &s), 0);
    cr_assert_eq(s->owner_id, 0);
    coru__stack_free(&p, s);
    coru__stack_pool_fini(&p);
}

static void fill_and_verify(struct coru__stack *s)
{
    struct coru__stack copy = *s;
    memset(s->lo, 0x5a, s->size);
    unsigned char *lo = s->lo;
    cr_assert_eq(lo[0], 0x5a);
    cr_assert_eq(lo[s->size - 1], 0x5a);
    /* The descriptor and (unguarded) the canary are outside the region. */
    cr_assert_eq(memcmp(&copy, s, sizeof copy), 0);
    coru__stack_check(s);
    if (s->flags != (CORU__STACK_SLAB | CORU__STACK_GMARK)) { /* those keep it beside the slab */
        cr_assert((uintptr_t)s >= (uintptr_t)s->lo + s->size);
        cr_assert((uintptr_t)(s + 1) <= (uintptr_t)s->map_base + s->map_len);
    }
    cr_assert_eq(((uintptr_t)s->lo + s->size) % 16, 0);
}

Test(stack, usable_region_is_writable_from_lo_to_the_top)
{
    size_t sizes[] = {0, 16 * KiB, 100 * KiB};
    for (int mode = 0; mode < 2; mode++) { /* every layout */
        if (!set_mode(mode)) continue;
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            struct coru__stack *s;
            cr_assert_eq(coru__stack_alloc(NULL, sizes[i], &s), 0);
            cr_assert_eq(s->flags, first_flags());
            cr_assert_eq((uintptr_t)s->lo % page_size(), 0);
            fill_and_verify(s);
            coru__stack_free(NULL, s);

            cr_assert_eq(coru__stack_alloc_unguarded(sizes[i], &s), 0);
            cr_assert_eq(s->flags, past_budget_flags(sizes[i] == 0));
            if (s->flags & CORU__STACK_GMARK) cr_assert_eq((uintptr_t)s->lo % page_size(), 0);
            fill_and_verify(s);
            coru__stack_free(NULL, s);
        }
    }
}

Test(stack, sizes_round_up_to_pages_with_a_16k_minimum)
{
    size_t pg = page_size();
    cr_assert_eq(coru__stack_round(1), 16 * KiB);
    cr_assert_eq(coru__stack_round(16 * KiB), 16 * KiB);
    cr_assert_eq(coru__stack_round(16 * KiB + 1), 16 * KiB + pg);
    cr_assert_eq(coru__stack_round(0), coru__stack_default());

    struct coru__stack_pool p;
    coru__stack_pool_init(&p);
    struct coru__stack *s;
    cr_assert_eq(coru__stack_alloc(&p, 20000, &s), 0);
    cr_assert_eq(s->size, coru__stack_round(20000));
    cr_assert_eq(s->size % pg, 0);
    /* Not the default size: never pooled. */
    coru__stack_free(&p, s);
    cr_assert_eq(p.count, 0);
    cr_assert_eq(coru__stack_alloc(&p, 1, &s), 0);
    cr_assert_eq(s->size, 16 * KiB);
    coru__stack_free(&p, s);
    cr_assert_eq(coru__stack_alloc(&p, (size_t)1 << 62, &s), -ENOMEM);
    coru__stack_pool_fini(&p);
}

Test(stack, default_is_64k_and_set_default_changes_it)
{
    if (getenv("CORU_STACK_SIZE") == NULL) cr_assert_eq(coru__stack_default(), 64 * KiB);
    size_t builtin = coru__stack_default();

    struct coru__stack_pool p;
    coru__stack_pool_init(&p);
    struct coru__stack *s;
    cr_assert_eq(coru__stack_alloc(&p, 0, &s), 0);
    cr_assert_eq(s->size, builtin);
    size_t held = p.count; /* guard markers: the rest of the batch */
    coru__stack_free(&p, s);
    cr_assert_eq(p.count, held + 1);

    cr_assert_eq(coru__stack_set_default(100000), coru__stack_round(100000));
    cr_assert_eq(coru__stack_default(), coru__stack_round(100000));
    cr_assert_eq(coru__stack_set_default(1), 16 * KiB);
    cr_assert_eq(coru__stack_set_default(128 * KiB), 128 * KiB);
    /* The pool's stack is of the old size: it is dropped, not handed out. */
    cr_assert_eq(coru__stack_alloc(&p, 0, &s), 0);
    cr_assert_eq(s->size, 128 * KiB);
    cr_assert_eq(p.count, 0);
    coru__stack_free(&p, s);
    cr_assert_eq(p.count, 1);
    /* Past the budget, the new default gets slabs of its own. */
    struct coru__stack *u;
    cr_assert_eq(coru__stack_alloc_unguarded(0, &u), 0);
    cr_assert_eq(u->flags, past_budget_flags(true));
    cr_assert_eq(u->size, 128 * KiB);
    fill_and_verify(u);
    coru__stack_free(NULL, u);

    cr_assert_eq(coru__stack_set_default(0), builtin);
    cr_assert_eq(coru__stack_default(), builtin);
    coru__stack_pool_fini(&p);
}

static void env_child(void)
{
    setenv("CORU_STACK_SIZE", "131072", 1);
    if (coru__stack_default() != 128 * KiB) _exit(1);
    if (coru__stack_set_default(64 * KiB) != 64 * KiB) _exit(2);
    /* 0 restores the environment's value, not the built-in one. */
    if (coru__stack_set_default(0) != 128 * KiB) _exit(3);
    _exit(0);
}

static void env_small_child(void)
{
    setenv("CORU_STACK_SIZE", "1000", 1);
    _exit(coru__stack_default() == 16 * KiB ? 0 : 1);
}

Test(stack, env_var_overrides_the_builtin_default, .timeout = 30)
{
    /* In children: the environment is read once per process. */
    char out[256];
    int st = run_child(env_child, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
    st = run_child(env_small_child, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}

Test(stack, freeing_past_high_water_returns_the_extras)
{
    for (int mode = 0; mode < 2; mode++) {
        if (!set_mode(mode)) continue;
        size_t newly = mode == MODE_FALLBACK ? 100 : 0; /* guarded mappings made */
        struct coru__stack_pool p;
        coru__stack_pool_init(&p);
        cr_assert_eq(p.high_water, 64);
        struct coru__stack *s[100];
        size_t before = coru__stack_guarded_count();
        for (int i = 0; i < 100; i++) cr_assert_eq(coru__stack_alloc(&p, 0, &s[i]), 0);
        cr_assert_eq(coru__stack_guarded_count(), before + newly);
        size_t depot0 = coru__stack_depot_count(), held = p.count; /* markers: a batch's rest */
        for (int i = 0; i < 100; i++) coru__stack_free(&p, s[i]);
        /* The pool never holds more than its high-water mark: at the mark
         * it moved half of itself to the depot, still mapped. */
        cr_assert_leq(p.count, 64);
        cr_assert_eq(p.count + coru__stack_depot_count() - depot0, 100 + held);
        cr_assert_eq(coru__stack_guarded_count(), before + newly);
        /* An empty pool refills from the depot without new stacks. */
        struct coru__stack_pool q;
        coru__stack_pool_init(&q);
        struct coru__stack *t;
        size_t depot1 = coru__stack_depot_count();
        cr_assert_eq(coru__stack_alloc(&q, 0, &t), 0);
        cr_assert_eq(coru__stack_depot_count(), depot1 - (q.count + 1));
        cr_assert_eq(coru__stack_guarded_count(), before + newly);
        coru__stack_free(&q, t);
        coru__stack_pool_fini(&q);
        coru__stack_pool_fini(&p);
        coru__stack_depot_trim();
        cr_assert_eq(coru__stack_depot_count(), 0);
        cr_assert_eq(coru__stack_guarded_count(), before);

        p.high_water = 3;
        for (int i = 0; i < 10; i++) cr_assert_eq(coru__stack_alloc(&p, 0, &s[i]), 0);
        for (int i = 0; i < 10; i++) coru__stack_free(&p, s[i]);
        cr_assert_eq(p.count, 3);
        coru__stack_pool_fini(&p);
        coru__stack_depot_trim(); /* the spilled ones: the next mode starts clean */
    }
}

Test(stack, guarded_stacks_come_first_and_never_exceed_the_budget, .timeout = 120)
{
    set_mode(MODE_FALLBACK);
    size_t budget = coru__stack_guard_budget();
    size_t maps = max_map_count();
    cr_assert_gt(budget, 0);
    /* Guarded stacks (two VMAs each) take at most half the VMA limit. */
    cr_assert_leq(2 * budget, maps / 2);

    size_t start = coru__stack_guarded_count();
    size_t room = budget - start, n = room + 200;
    struct coru__stack **s = calloc(n, sizeof *s);
    cr_assert_not_null(s);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(coru__stack_alloc(NULL, 0, &s[i]), 0);
        cr_assert_eq(s[i]->flags, i < room ? CORU__STACK_GUARDED : past_budget_flags(true), "stack %zu", i);
        cr_assert_leq(coru__stack_guarded_count(), budget);
    }
    cr_assert_eq(coru__stack_guarded_count(), budget);
    /* Past the budget, other sizes get mappings of their own. */
    struct coru__stack *odd;
    cr_assert_eq(coru__stack_alloc(NULL, 32 * KiB, &odd), 0);
    cr_assert_eq(odd->flags, past_budget_flags(false));
    fill_and_verify(odd);
    coru__stack_free(NULL, odd);

    for (size_t i = 0; i < n; i++) coru__stack_free(NULL, s[i]);
    cr_assert_eq(coru__stack_guarded_count(), start);
    free(s);
}

static void recycle_round(size_t size)
{
    enum { N = 200 };
    struct coru__stack *s[N], *t[N];
    for (int i = 0; i < N; i++) {
        cr_assert_eq(coru__stack_alloc_unguarded(size, &s[i]), 0);
        ((char *)s[i]->lo)[s[i]->size / 2] = 7;
        ((char *)s[i]->lo)[s[i]->size - 1] = 7;
    }
    /* Freed without a pool: a few stay intact for reuse, the rest give
     * their memory back; trimming (a run's end) gives back the kept ones
     * too. */
    for (int i = 0; i < N; i++) coru__stack_free(NULL, s[i]);
    coru__stack_depot_trim();
    size_t maps = map_count();
    for (int i = 0; i < N; i++) {
        cr_assert_eq(coru__stack_alloc_unguarded(size, &t[i]), 0);
        bool seen = false;
        for (int j = 0; j < N && !seen; j++) seen = t[i] == s[j];
        cr_assert(seen, "stack %d is not a recycled slot", i);
        /* The pages went back to the kernel and read as zero (a canary
         * slot keeps its top page, where the descriptor lives). */
        cr_assert_eq(((char *)t[i]->lo)[t[i]->size / 2], 0);
        if (t[i]->flags & CORU__STACK_GMARK) cr_assert_eq(((char *)t[i]->lo)[t[i]->size - 1], 0);
        coru__stack_check(t[i]);
    }
    cr_assert_leq(map_count(), maps);
    for (int i = 0; i < N; i++) coru__stack_free(NULL, t[i]);
}

Test(stack, released_slab_stacks_are_recycled_and_zeroed, .timeout = 60)
{
    for (int mode = 0; mode < 2; mode++) {
        if (!set_mode(mode)) continue;
        recycle_round(0);
        if (mode == MODE_MARKERS) recycle_round(24 * KiB); /* every size has slabs */
    }
}

Test(stack, a_stack_freed_without_a_pool_is_kept_intact_for_the_next_of_its_size)
{
    for (int mode = 0; mode < 2; mode++) {
        if (!set_mode(mode)) continue;
        size_t size = mode == MODE_MARKERS ? 24 * KiB : 0; /* fallback: slabs for the default only */
        struct coru__stack *a, *b;
        cr_assert_eq(coru__stack_alloc_unguarded(size, &a), 0);
        ((char *)a->lo)[a->size / 2] = 9;
        coru__stack_free(NULL, a);
        cr_assert_eq(coru__stack_alloc_unguarded(size, &b), 0);
        cr_assert_eq(b, a, "the kept stack comes back first");
        cr_assert_eq(((char *)b->lo)[b->size / 2], 9, "its memory was not given back");
        coru__stack_check(b);
        coru__stack_free(NULL, b);
        coru__stack_depot_trim();
    }
}

#ifdef CORU_TSAN
/* TSan maps shadow memory for every mmap, and those mappings count
 * against vm.max_map_count too: at a million stacks its shadow mmap fails
 * with ENOMEM. 100k stacks still cover the move from guarded stacks to
 * slabs (the budget is about 14k at the default limit). ASan copes with
 * the full million (about 5 s, 4 GiB resident, like the plain build). */
#define MANY_STACKS 100000
#else
#define MANY_STACKS 1000000
#endif

static void million_stacks(void)
{
    size_t n = MANY_STACKS, limit = max_map_count(), maps0 = map_count();
    struct coru__stack_pool p;
    coru__stack_pool_init(&p);
    struct coru__stack **s = malloc(n * sizeof *s);
    cr_assert_not_null(s);
    for (size_t i = 0; i < n; i++) {
        int rc = coru__stack_alloc(&p, 0, &s[i]);
        cr_assert_eq(rc, 0, "alloc %zu: %d", i, rc);
        ((volatile char *)s[i]->lo)[s[i]->size - 1] = 1;
    }
    size_t maps = map_count();
    cr_assert_lt(maps, limit - 1000, "%zu maps", maps);
    cr_assert_leq(coru__stack_guarded_count(), coru__stack_guard_budget());
    /* Guard markers: no VMA per stack, so a million cost a few dozen
     * (about 2,000 slabs of 512, adjacent ones merged). */
    if (coru__stack_guard_madvise()) cr_assert_lt(maps - maps0, 2500, "%zu new maps", maps - maps0);
    for (size_t i = 0; i < n; i++) coru__stack_free(&p, s[i]);
    cr_assert_leq(p.count, p.high_water);
    coru__stack_pool_fini(&p);
    coru__stack_depot_trim();
    cr_assert_lt(map_count(), limit - 1000);
    free(s);
}

Test(stack, a_million_default_stacks_fit_under_the_map_limit, .timeout = 300)
{
    set_mode(MODE_FALLBACK);
    million_stacks();
}

Test(stack, a_million_guard_marked_stacks_fit_in_a_few_mappings, .timeout = 300)
{
    if (set_mode(MODE_MARKERS)) million_stacks();
}

#if !defined(CORU_ASAN) && !defined(CORU_TSAN) /* sanitizers reserve terabytes of shadow */
/* Bytes of address space the process has mapped now (VmSize). */
static size_t vm_size(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %zu kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib * 1024;
}

/* Under an address-space limit a 32 MiB slab cannot be mapped: smaller
 * slabs are tried, and once nothing fits, alloc says -ENOMEM; freed
 * stacks are then reused. Exit codes name the step that failed. */
static void exhaustion_child(bool markers)
{
    coru__stack_use_guard_madvise(markers);
    struct coru__stack *first;
    if (coru__stack_alloc(NULL, 0, &first) != 0) _exit(10); /* set-up done before the limit */
    struct rlimit rl = {.rlim_cur = vm_size() + 12 * 1024 * 1024, .rlim_max = RLIM_INFINITY};
    if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(11);
    static struct coru__stack *s[100000];
    int n = 0, rc;
    while ((rc = coru__stack_alloc(NULL, 0, &s[n])) == 0) {
        ((volatile char *)s[n]->lo)[s[n]->size - 1] = 1;
        if (++n == 100000) _exit(12); /* the limit did not bite */
    }
    if (rc != -ENOMEM) _exit(13);
    if (n < 16) _exit(14); /* smaller slabs should have fitted some */
    coru__stack_free(NULL, s[n - 1]);
    if (coru__stack_alloc(NULL, 0, &s[n - 1]) != 0) _exit(15);
    coru__stack_check(s[n - 1]);
    _exit(0);
}

static void exhaustion_marker_child(void) { exhaustion_child(true); }
static void exhaustion_fallback_child(void) { exhaustion_child(false); }

Test(stack, running_out_of_address_space_gives_enomem_and_recovers, .timeout = 60)
{
    SKIP_IF_EMULATED("qemu-user does not apply RLIMIT_AS to the guest's mappings");
    char out[1024];
    int st = run_child(exhaustion_fallback_child, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fallback: status %#x: %s", st, out);
    if (!have_markers()) return;
    st = run_child(exhaustion_marker_child, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "markers: status %#x: %s", st, out);
}
#endif

/* Batched madvise (process_madvise on the process itself) off: each
 * range gets its own madvise, with the same results. */
Test(stack, without_batched_madvise_slabs_work_the_same, .timeout = 60)
{
    coru__slab_use_batching(false);
    for (int mode = 0; mode < 2; mode++) {
        if (!set_mode(mode)) continue;
        recycle_round(0);
    }
}

/* ---- overflow reports ------------------------------------------------ */

static void guard_write_child(void)
{
    coru__stack_use_guard_madvise(false); /* a PROT_NONE guard of its own */
    if (coru__stack_thread_init() != 0) _exit(10);
    struct coru__stack *s;
    if (coru__stack_alloc(NULL, 0, &s) != 0 || s->flags != CORU__STACK_GUARDED) _exit(11);
    s->owner_id = 42;
    coru__stack_set_current(s);
    ((volatile char *)s->lo)[-1] = 1;
    _exit(12);
}

Test(stack, write_to_the_guard_page_reports_the_coroutine_and_aborts, .timeout = 30)
{
    char out[1024];
    int st = run_child(guard_write_child, out, sizeof out);
    assert_aborted_with(st, out, "coru: coroutine 42 overflowed its stack (65536 bytes)\n");
}

#ifndef CORU_TSAN
/* Real overflow: runs a recursion on the coroutine stack through
 * ucontext, so the handler must run on the alternate stack. (Not under
 * TSan, which does not follow swapcontext without its fiber API.) */
static ucontext_t main_uc, co_uc;
static volatile int depth_limit = 1 << 30;

static int recurse(int n)
{
    volatile char frame[256];
    frame[0] = (char)n;
    if (n >= depth_limit) return frame[0];
    return recurse(n + 1) + frame[0];
}

static void co_entry(void) { recurse(0); }

/* Runs entry() on stack s through ucontext and comes back. */
static void run_on_stack(struct coru__stack *s, void (*entry)(void))
{
    getcontext(&co_uc);
    co_uc.uc_stack.ss_sp = s->lo;
    co_uc.uc_stack.ss_size = s->size;
    co_uc.uc_link = &main_uc;
    makecontext(&co_uc, entry, 0);
    coru__stack_set_current(s);
    swapcontext(&main_uc, &co_uc);
    coru__stack_set_current(NULL);
}

static void recursion_child(bool markers)
{
    coru__stack_use_guard_madvise(markers);
    if (coru__stack_thread_init() != 0) _exit(10);
    struct coru__stack *s;
    if (coru__stack_alloc(NULL, 0, &s) != 0) _exit(11);
    if (s->flags != (markers ? CORU__STACK_SLAB | CORU__STACK_GMARK : CORU__STACK_GUARDED)) _exit(13);
    s->owner_id = 77;
    run_on_stack(s, co_entry);
    _exit(12);
}

static void recursion_marker_child(void) { recursion_child(true); }
static void recursion_guard_child(void) { recursion_child(false); }

Test(stack, deep_recursion_on_a_guarded_stack_is_reported, .timeout = 30)
{
    char out[1024];
    int st = run_child(recursion_guard_child, out, sizeof out);
    assert_aborted_with(st, out, "coru: coroutine 77 overflowed its stack (65536 bytes)\n");
    if (!have_markers()) return;
    st = run_child(recursion_marker_child, out, sizeof out);
    assert_aborted_with(st, out, "coru: coroutine 77 overflowed its stack (65536 bytes)\n");
}

/* The outside tester's overflow: frames of about 144 bytes that write
 * nothing but their return address, recursing about 3 KiB past lo on a
 * 16 KiB stack past the guard budget, then returning. A 64-byte canary
 * let most of those through; a guard page (MADV_GUARD_INSTALL) or the
 * 256-byte canary must catch them: the first at the fault, the second
 * at the check that follows (a switch out, or the free). */
static volatile int sparse_depth;
static volatile int sparse_sink;

__attribute__((noinline)) static int sparse(int n)
{
    char frame[128]; /* allocated, never written */
    __asm__ volatile("" : : "r"(frame) : "memory");
    if (n <= 0) return 0;
    return sparse(n - 1) + 1;
}

static void sparse_entry(void) { sparse_sink = sparse(sparse_depth); }

static void sparse_child(bool gm)
{
    if (coru__stack_thread_init() != 0) _exit(10);
    coru__stack_use_guard_madvise(gm);
    struct coru__stack *s;
    if (coru__stack_alloc_unguarded(16 * KiB, &s) != 0) _exit(11);
    if (!!(s->flags & CORU__STACK_GMARK) != gm) _exit(13);
    s->owner_id = 55;
    /* (16 KiB + 3 KiB) / 144 bytes a frame */
    sparse_depth = (int)((16 * KiB + 3 * KiB) / 144);
    run_on_stack(s, sparse_entry);
    coru__stack_check(s);
    _exit(12);
}

static void sparse_gm_child(void) { sparse_child(true); }
static void sparse_canary_child(void) { sparse_child(false); }

Test(stack, sparse_frames_past_the_budget_are_caught, .timeout = 30)
{
    char out[1024];
    int st;
    if (coru__stack_guard_madvise()) {
        st = run_child(sparse_gm_child, out, sizeof out);
        assert_aborted_with(st, out, "coru: coroutine 55 overflowed its stack (16384 bytes)\n");
    } else {
        NOTE_MISSING("MADV_GUARD_INSTALL is not available here: guard-marked stacks untested");
    }
    st = run_child(sparse_canary_child, out, sizeof out);
    assert_aborted_with(st, out, "coru: coroutine 55 overflowed its stack (16384 bytes)\n");
}
#endif

/* A guard-marked stack (past the budget, MADV_GUARD_INSTALL) reports a
 * write just below lo like a guarded one, and adds no mapping. */
static void gmark_write(size_t size, int skip)
{
    if (coru__stack_thread_init() != 0) _exit(10);
    struct coru__stack *s = NULL;
    /* skip slots first: the guard of a slot deep in its slab */
    for (int i = 0; i <= skip; i++)
        if (coru__stack_alloc_unguarded(size, &s) != 0 || s->flags != (CORU__STACK_SLAB | CORU__STACK_GMARK)) _exit(11);
    s->owner_id = 43;
    coru__stack_set_current(s);
    ((volatile char *)s->lo)[-1] = 1;
    _exit(12);
}

static void gmark_write_child(void) { gmark_write(0, 0); }
static void gmark_write_deep_child(void) { gmark_write(20 * KiB, 300); }
static void gmark_write_unbatched_child(void)
{
    coru__slab_use_batching(false); /* guards installed one madvise each */
    gmark_write(0, 77);
}

Test(stack, guard_marked_stacks_report_a_write_below_lo, .timeout = 30)
{
    if (!coru__stack_guard_madvise()) {
        NOTE_MISSING("MADV_GUARD_INSTALL is not available here (Linux 6.13+): skipped");
        return;
    }
    char out[1024];
    int st = run_child(gmark_write_child, out, sizeof out);
    assert_aborted_with(st, out, "coru: coroutine 43 overflowed its stack (65536 bytes)\n");
    st = run_child(gmark_write_deep_child, out, sizeof out);
    assert_aborted_with(st, out, "coru: coroutine 43 overflowed its stack (20480 bytes)\n");
    st = run_child(gmark_write_unbatched_child, out, sizeof out);
    assert_aborted_with(st, out, "coru: coroutine 43 overflowed its stack (65536 bytes)\n");
}

static void canary_slab_child(void)
{
    coru__stack_use_guard_madvise(false);
    struct coru__stack *s;
    if (coru__stack_alloc_unguarded(0, &s) != 0 || s->flags != CORU__STACK_SLAB) _exit(11);
    s->owner_id = 7;
    coru__stack_check(s);
    ((volatile char *)s->lo)[-1] ^= 0x5a;
    coru__stack_check(s);
    _exit(12);
}

static void canary_lone_child(void)
{
    coru__stack_use_guard_madvise(false);
    struct coru__stack *s;
    if (coru__stack_alloc_unguarded(32 * KiB, &s) != 0 || s->flags != 0) _exit(11);
    s->owner_id = 8;
    ((volatile char *)s->lo)[-256] = 0; /* the lowest byte of the canary */
    coru__stack_check(s);
    _exit(12);
}

static void canary_free_child(void)
{
    coru__stack_use_guard_madvise(false);
    struct coru__stack_pool p;
    coru__stack_pool_init(&p);
    struct coru__stack *s;
    if (coru__stack_alloc_unguarded(0, &s) != 0) _exit(11);
    s->owner_id = 9;
    ((volatile char *)s->lo)[-10] ^= 1;
    coru__stack_free(&p, s);
    _exit(12);
}

Test(stack, broken_canary_reports_the_coroutine_and_aborts, .timeout = 30)
{
    char out[1024];
    int st = run_child(canary_slab_child, out, sizeof out);
    assert_aborted_with(st, out, "coru: coroutine 7 overflowed its stack (65536 bytes)\n");
    st = run_child(canary_lone_child, out, sizeof out);
    assert_aborted_with(st, out, "coru: coroutine 8 overflowed its stack (32768 bytes)\n");
    /* Freeing checks too, so a smashed stack never reaches a new owner. */
    st = run_child(canary_free_child, out, sizeof out);
    assert_aborted_with(st, out, "coru: coroutine 9 overflowed its stack (65536 bytes)\n");
}

/* An unmapped address far from any stack; volatile so the compiler
 * cannot see the bad store coming. */
static volatile uintptr_t wild_addr = 64;

static void wild_write_child(void)
{
    if (coru__stack_thread_init() != 0) _exit(10);
    struct coru__stack *s;
    if (coru__stack_alloc(NULL, 0, &s) != 0) _exit(11);
    s->owner_id = 5;
    coru__stack_set_current(s);
    *(volatile int *)wild_addr = 1;
    _exit(12);
}

static void no_current_child(void)
{
    if (coru__stack_thread_init() != 0) _exit(10);
    struct coru__stack *s;
    if (coru__stack_alloc(NULL, 0, &s) != 0) _exit(11);
    s->owner_id = 6;
    coru__stack_set_current(s);
    coru__stack_set_current(NULL);
    ((volatile char *)s->lo)[-1] = 1;
    _exit(12);
}

static void assert_plain_crash(int st, const char *out)
{
    cr_assert_null(strstr(out, "overflowed"), "stderr was: %s", out);
#if defined(CORU_ASAN) || defined(CORU_TSAN)
    /* Chained to the sanitizer's own SEGV handler, which reports and
     * exits, or aborts with abort_on_error=1 (exit codes 10-12 are the
     * child's own failures). */
    bool exited = WIFEXITED(st) && WEXITSTATUS(st) != 0 && (WEXITSTATUS(st) < 10 || WEXITSTATUS(st) > 12);
    bool aborted = WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
    cr_assert(exited || aborted, "status %#x: %s", st, out);
#else
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "status %#x: %s", st, out);
#endif
}

Test(stack, other_faults_keep_their_default_action, .timeout = 30)
{
    char out[4096];
    int st = run_child(wild_write_child, out, sizeof out);
    assert_plain_crash(st, out);
    st = run_child(no_current_child, out, sizeof out);
    assert_plain_crash(st, out);
}

static void user_handler(int sig)
{
    (void)sig;
    _exit(33);
}

static void chain_child(void)
{
    /* A handler installed before ours gets the faults that are not
     * overflows. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = user_handler;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0) _exit(10);
    if (coru__stack_thread_init() != 0) _exit(10);
    *(volatile int *)wild_addr = 1;
    _exit(12);
}

Test(stack, faults_that_are_not_overflows_go_to_the_previous_handler, .timeout = 30)
{
    char out[1024];
    int st = run_child(chain_child, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 33, "status %#x: %s", st, out);
}

Test(stack, thread_init_is_idempotent_and_fini_releases_the_altstack)
{
    stack_t before;
    cr_assert_eq(sigaltstack(NULL, &before), 0);
    cr_assert_eq(coru__stack_thread_init(), 0);
    cr_assert_eq(coru__stack_thread_init(), 0);
    stack_t now;
    cr_assert_eq(sigaltstack(NULL, &now), 0);
    cr_assert_eq(now.ss_flags & SS_DISABLE, 0);
    coru__stack_thread_fini();
    cr_assert_eq(sigaltstack(NULL, &now), 0);
    /* Back to what the thread had (ASan may have installed one). */
    cr_assert_eq(now.ss_flags & SS_DISABLE, before.ss_flags & SS_DISABLE);
    coru__stack_thread_fini();
}

/* ---- threads --------------------------------------------------------- */

static void *churn(void *arg)
{
    (void)arg;
    cr_assert_eq(coru__stack_thread_init(), 0);
    struct coru__stack_pool p;
    coru__stack_pool_init(&p);
    struct coru__stack *s[96];
    for (int round = 0; round < 100; round++) {
        /* 80 default (past high water, so some go back), 12 slab, 4 odd. */
        for (int i = 0; i < 96; i++) {
            int rc = i < 80   ? coru__stack_alloc(&p, 0, &s[i])
                     : i < 92 ? coru__stack_alloc_unguarded(0, &s[i])
                              : coru__stack_alloc(NULL, 24 * KiB, &s[i]);
            cr_assert_eq(rc, 0);
            coru__stack_set_current(s[i]);
            ((char *)s[i]->lo)[s[i]->size - 1] = (char)i;
            s[i]->owner_id = (uint64_t)i;
        }
        coru__stack_set_current(NULL);
        for (int i = 0; i < 96; i++) {
            cr_assert_eq(((char *)s[i]->lo)[s[i]->size - 1], (char)i);
            coru__stack_free(i < 92 ? &p : NULL, s[i]);
        }
    }
    coru__stack_pool_fini(&p);
    coru__stack_thread_fini();
    return NULL;
}

Test(stack, threads_share_the_global_sources_safely, .timeout = 120)
{
    enum { T = 4 };
    pthread_t th[T];
    size_t before = coru__stack_guarded_count();
    for (int i = 0; i < T; i++) cr_assert_eq(pthread_create(&th[i], NULL, churn, NULL), 0);
    for (int i = 0; i < T; i++) cr_assert_eq(pthread_join(th[i], NULL), 0);
    coru__stack_depot_trim();
    cr_assert_eq(coru__stack_guarded_count(), before);
}
