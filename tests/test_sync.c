/* test_sync: mutex, condition variable, semaphore and wait group: mutual
 * exclusion, FIFO hand-off, deadlines, cancellation (the cond re-locks its
 * mutex whatever happens), wake-one and wake-all, plain threads on either
 * side, NULL arguments and generator bodies. Each scenario runs with two
 * workers on the default engine and on epoll. A test that must know that
 * coroutines are parked waits for the object's waiter count (sched/sync.h)
 * instead of sleeping. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#include "coru.h"
#include "sched/sync.h"

#define MS 1000000LL

static const enum coru_io engines[] = {CORU_IO_AUTO, CORU_IO_EPOLL};

/* Runs fn(arg) as the main coroutine with two workers on each engine. */
static void run_both(coru_fn fn, void *arg)
{
    for (int e = 0; e < 2; e++) {
        struct coru_opts o = {.workers = 2, .io = engines[e]};
        cr_assert_eq(coru_run(fn, arg, &o), 0, "coru_run on engine %d", (int)engines[e]);
    }
}

static void spawn_ok(coru_t **h, coru_fn fn, void *arg)
{
    cr_assert_eq(coru_spawn(h, fn, arg, NULL), 0);
}

static void *join_ok(coru_t *h)
{
    void *r = (void *)-1;
    cr_assert_eq(coru_join(h, &r), 0);
    return r;
}

/* Yields until cond holds, typically until a known number of waiters is
 * queued on an object (so they are parked, or about to park). */
#define YIELD_UNTIL(cond)                                                     \
    do {                                                                      \
        while (!(cond)) coru_yield();                                         \
    } while (0)

/* ------------------------------------------------------------ arguments */

Test(sync, null_arguments_are_einval)
{
    coru_mutex *m;
    coru_cond *c;
    coru_sema *s;
    coru_waitgroup *wg;
    cr_assert_eq(coru_mutex_create(NULL), -EINVAL);
    cr_assert_eq(coru_cond_create(NULL), -EINVAL);
    cr_assert_eq(coru_sema_create(NULL, 0), -EINVAL);
    cr_assert_eq(coru_waitgroup_create(NULL), -EINVAL);
    cr_assert_eq(coru_sema_create(&s, (1u << 31) + 1), -EINVAL);

    cr_assert_eq(coru_mutex_lock(NULL), -EINVAL);
    cr_assert_eq(coru_mutex_lock_dl(NULL, 0), -EINVAL);
    cr_assert_eq(coru_mutex_trylock(NULL), -EINVAL);
    cr_assert_eq(coru_mutex_unlock(NULL), -EINVAL);
    cr_assert_eq(coru_cond_signal(NULL), -EINVAL);
    cr_assert_eq(coru_cond_broadcast(NULL), -EINVAL);
    cr_assert_eq(coru_sema_acquire(NULL), -EINVAL);
    cr_assert_eq(coru_sema_acquire_dl(NULL, 0), -EINVAL);
    cr_assert_eq(coru_sema_try_acquire(NULL), -EINVAL);
    cr_assert_eq(coru_sema_release(NULL), -EINVAL);
    cr_assert_eq(coru_waitgroup_add(NULL, 1), -EINVAL);
    cr_assert_eq(coru_waitgroup_done(NULL), -EINVAL);
    cr_assert_eq(coru_waitgroup_wait(NULL), -EINVAL);
    cr_assert_eq(coru_waitgroup_wait_dl(NULL, 0), -EINVAL);

    cr_assert_eq(coru_mutex_create(&m), 0);
    cr_assert_eq(coru_cond_create(&c), 0);
    cr_assert_eq(coru_cond_wait(NULL, m), -EINVAL);
    cr_assert_eq(coru_cond_wait(c, NULL), -EINVAL);
    cr_assert_eq(coru_cond_wait_dl(NULL, m, 0), -EINVAL);
    cr_assert_eq(coru_cond_wait_dl(c, NULL, 0), -EINVAL);
    cr_assert_eq(coru_sema_create(&s, 1u << 31), 0);
    cr_assert_eq(coru_waitgroup_create(&wg), 0);

    coru_mutex_destroy(NULL);
    coru_cond_destroy(NULL);
    coru_sema_destroy(NULL);
    coru_waitgroup_destroy(NULL);
    coru_mutex_destroy(m);
    coru_cond_destroy(c);
    coru_sema_destroy(s);
    coru_waitgroup_destroy(wg);
}

/* ------------------------------------------------------------ mutex */

struct mcount {
    coru_mutex *m;
    long counter;      /* guarded by m */
    _Atomic int errors;
    _Atomic long timid_ok, timid_timeout;
};

static void *mc_worker(void *arg)
{
    struct mcount *s = arg;
    for (int i = 0; i < 10000; i++) {
        if (coru_mutex_lock(s->m) != 0) atomic_fetch_add(&s->errors, 1);
        s->counter++;
        if (i % 500 == 0) coru_yield(); /* hold it across a switch: others queue */
        if (coru_mutex_unlock(s->m) != 0) atomic_fetch_add(&s->errors, 1);
    }
    return NULL;
}

static void *mc_main(void *arg)
{
    struct mcount *s = arg;
    s->counter = 0;
    cr_assert_eq(coru_mutex_create(&s->m), 0);
    coru_t *h[16];
    for (int i = 0; i < 16; i++) spawn_ok(&h[i], mc_worker, s);
    for (int i = 0; i < 16; i++) join_ok(h[i]);
    cr_assert_eq(s->counter, 16L * 10000);
    cr_assert_eq(coru_mutex_trylock(s->m), 0); /* free at the end */
    cr_assert_eq(coru_mutex_unlock(s->m), 0);
    coru_mutex_destroy(s->m);
    return NULL;
}

Test(sync, mutex_protects_a_counter_of_16_coroutines, .timeout = 120)
{
    struct mcount s = {0};
    run_both(mc_main, &s);
    cr_assert_eq(atomic_load(&s.errors), 0);
}

/* Lockers with tiny deadlines race with unlock's hand-off: a waiter whose
 * timer won must be skipped, and the mutex must end up free. */
static void *mc_timid(void *arg)
{
    struct mcount *s = arg;
    for (int i = 0; i < 2000; i++) {
        int rc = coru_mutex_lock_dl(s->m, coru_now() + (i % 50) * 1000);
        if (rc == 0) {
            s->counter++;
            atomic_fetch_add(&s->timid_ok, 1);
            if (coru_mutex_unlock(s->m) != 0) atomic_fetch_add(&s->errors, 1);
        } else if (rc == -ETIMEDOUT) {
            atomic_fetch_add(&s->timid_timeout, 1);
        } else {
            atomic_fetch_add(&s->errors, 1);
        }
    }
    return NULL;
}

static void *mc_steady(void *arg)
{
    struct mcount *s = arg;
    for (int i = 0; i < 2000; i++) {
        if (coru_mutex_lock(s->m) != 0) atomic_fetch_add(&s->errors, 1);
        s->counter++;
        if (i % 8 == 0) coru_yield();
        if (coru_mutex_unlock(s->m) != 0) atomic_fetch_add(&s->errors, 1);
    }
    return NULL;
}

static void *timid_main(void *arg)
{
    struct mcount *s = arg;
    s->counter = 0;
    long ok_before = atomic_load(&s->timid_ok); /* s is shared by both engines' runs */
    cr_assert_eq(coru_mutex_create(&s->m), 0);
    coru_t *h[12];
    for (int i = 0; i < 12; i++) spawn_ok(&h[i], i % 3 == 0 ? mc_timid : mc_steady, s);
    for (int i = 0; i < 12; i++) join_ok(h[i]);
    cr_assert_eq(s->counter, 8L * 2000 + (atomic_load(&s->timid_ok) - ok_before));
    cr_assert_eq(coru_mutex_trylock(s->m), 0);
    cr_assert_eq(coru_mutex_unlock(s->m), 0);
    coru_mutex_destroy(s->m);
    return NULL;
}

Test(sync, mutex_timeouts_racing_with_handoff_lose_nothing, .timeout = 120)
{
    struct mcount s = {0};
    run_both(timid_main, &s);
    cr_assert_eq(atomic_load(&s.errors), 0);
    cr_assert_eq(atomic_load(&s.timid_ok) + atomic_load(&s.timid_timeout), 2 * 4L * 2000);
}

static void *trylock_main(void *arg)
{
    coru_mutex *m;
    cr_assert_eq(coru_mutex_create(&m), 0);
    cr_assert_eq(coru_mutex_unlock(m), -EPERM);
    cr_assert_eq(coru_mutex_trylock(m), 0);
    cr_assert_eq(coru_mutex_trylock(m), -EBUSY);
    cr_assert_eq(coru_mutex_lock_dl(m, coru_now() - 1), -ETIMEDOUT); /* past: at once */
    cr_assert_eq(coru_mutex_unlock(m), 0);
    cr_assert_eq(coru_mutex_unlock(m), -EPERM);
    cr_assert_eq(coru_mutex_lock_dl(m, coru_now() - 1), 0); /* free: no wait needed */
    cr_assert_eq(coru_mutex_unlock(m), 0);
    coru_mutex_destroy(m);
    return NULL;
}

Test(sync, mutex_trylock_is_ebusy_and_unlocking_unlocked_is_eperm, .timeout = 30)
{
    run_both(trylock_main, NULL);
}

/* A coru_mutex is not owned by a coroutine (as Go's sync.Mutex): another
 * coroutine, or a plain thread, may unlock it, which hands it to the next
 * waiter. Unlocking it when it is not locked stays -EPERM. */
struct handover {
    coru_mutex *m;
    _Atomic int waiting;
    int order[2];
    _Atomic int n;
};

static void *handover_waiter(void *arg)
{
    struct handover *h = arg;
    atomic_store(&h->waiting, 1);
    cr_assert_eq(coru_mutex_lock(h->m), 0);
    h->order[atomic_fetch_add(&h->n, 1)] = 1;
    cr_assert_eq(coru_mutex_unlock(h->m), 0);
    return NULL;
}

static void *handover_unlocker(void *arg)
{
    struct handover *h = arg;
    h->order[atomic_fetch_add(&h->n, 1)] = 0;
    cr_assert_eq(coru_mutex_unlock(h->m), 0, "a coroutine that does not hold it may unlock it");
    return NULL;
}

static void *thread_unlocker(void *arg)
{
    return (void *)(intptr_t)coru_mutex_unlock(arg);
}

static void *handover_main(void *arg)
{
    struct handover h = {0};
    cr_assert_eq(coru_mutex_create(&h.m), 0);
    cr_assert_eq(coru_mutex_lock(h.m), 0); /* held by main */
    coru_t *w, *u;
    spawn_ok(&w, handover_waiter, &h);
    while (!atomic_load(&h.waiting)) coru_yield();
    coru_sleep(5 * MS);
    spawn_ok(&u, handover_unlocker, &h); /* releases main's lock */
    join_ok(u);
    join_ok(w);
    cr_assert_eq(atomic_load(&h.n), 2);
    cr_assert_eq(h.order[0], 0);
    cr_assert_eq(h.order[1], 1, "the waiter got the mutex the other coroutine released");
    cr_assert_eq(coru_mutex_unlock(h.m), -EPERM, "unlocked already");
    /* A plain thread may release it too. */
    cr_assert_eq(coru_mutex_lock(h.m), 0);
    pthread_t t;
    void *rc;
    cr_assert_eq(pthread_create(&t, NULL, thread_unlocker, h.m), 0);
    cr_assert_eq(pthread_join(t, &rc), 0);
    cr_assert_eq((int)(intptr_t)rc, 0);
    cr_assert_eq(coru_mutex_trylock(h.m), 0);
    cr_assert_eq(coru_mutex_unlock(h.m), 0);
    coru_mutex_destroy(h.m);
    return NULL;
}

Test(sync, mutex_may_be_unlocked_by_a_coroutine_that_does_not_hold_it, .timeout = 30)
{
    run_both(handover_main, NULL);
}

struct dl {
    coru_mutex *m;
    coru_cond *c;
    coru_sema *s;
    coru_waitgroup *wg;
};

static void *mutex_dl_waiter(void *arg)
{
    struct dl *d = arg;
    int64_t t0 = coru_now();
    cr_assert_eq(coru_mutex_lock_dl(d->m, t0 + 20 * MS), -ETIMEDOUT);
    cr_assert_geq(coru_now() - t0, 20 * MS);
    cr_assert_eq(coru_mutex_trylock(d->m), -EBUSY); /* still the main's */
    return NULL;
}


static void *mutex_dl_main(void *arg)
{
    struct dl d;
    cr_assert_eq(coru_mutex_create(&d.m), 0);
    cr_assert_eq(coru_mutex_lock(d.m), 0);
    coru_t *h;
    spawn_ok(&h, mutex_dl_waiter, &d);
    join_ok(h);
    cr_assert_eq(coru__sync_mutex_waiters(d.m), 0);
    cr_assert_eq(coru_mutex_unlock(d.m), 0); /* the timed-out waiter took nothing */
    cr_assert_eq(coru_mutex_trylock(d.m), 0);
    cr_assert_eq(coru_mutex_unlock(d.m), 0);
    coru_mutex_destroy(d.m);
    return NULL;
}

Test(sync, mutex_lock_dl_times_out_while_another_holds_it, .timeout = 30)
{
    run_both(mutex_dl_main, NULL);
}

struct fifo {
    coru_mutex *m;
    int order[3]; /* guarded by m */
    int n;        /* guarded by m */
};
struct fifo_arg {
    struct fifo *f;
    int id;
};

static void *fifo_locker(void *arg)
{
    struct fifo_arg *a = arg;
    cr_assert_eq(coru_mutex_lock(a->f->m), 0);
    a->f->order[a->f->n++] = a->id;
    cr_assert_eq(coru_mutex_unlock(a->f->m), 0);
    return NULL;
}

static void *fifo_main(void *arg)
{
    struct fifo f = {.n = 0};
    struct fifo_arg a[3];
    coru_t *h[3];
    cr_assert_eq(coru_mutex_create(&f.m), 0);
    cr_assert_eq(coru_mutex_lock(f.m), 0);
    for (int i = 0; i < 3; i++) {
        a[i] = (struct fifo_arg){&f, i};
        spawn_ok(&h[i], fifo_locker, &a[i]);
        YIELD_UNTIL(coru__sync_mutex_waiters(f.m) == (size_t)i + 1); /* queued in order i */
    }
    cr_assert_eq(coru_mutex_unlock(f.m), 0);
    for (int i = 0; i < 3; i++) join_ok(h[i]);
    cr_assert_eq(f.n, 3);
    for (int i = 0; i < 3; i++) cr_assert_eq(f.order[i], i, "acquired %d-th: %d", i, f.order[i]);
    coru_mutex_destroy(f.m);
    return NULL;
}

Test(sync, mutex_hands_off_to_waiters_in_fifo_order, .timeout = 30)
{
    run_both(fifo_main, NULL);
}

/* ------------------------------------------------------------ cond */

struct pc {
    coru_mutex *m;
    coru_cond *not_full, *not_empty;
    long q[4];            /* ring; guarded by m */
    int head, count;      /* guarded by m */
    long sum;             /* guarded by m */
    _Atomic int errors;
};
struct pc_arg {
    struct pc *p;
    long base;
};

#define PC_ITEMS 100000

static void *pc_producer(void *arg)
{
    struct pc_arg *a = arg;
    struct pc *p = a->p;
    for (long i = 1; i <= PC_ITEMS / 2; i++) {
        coru_mutex_lock(p->m);
        while (p->count == 4)
            if (coru_cond_wait(p->not_full, p->m) != 0) atomic_fetch_add(&p->errors, 1);
        p->q[(p->head + p->count) % 4] = a->base + i;
        p->count++;
        coru_cond_signal(p->not_empty);
        coru_mutex_unlock(p->m);
    }
    return NULL;
}

static void *pc_consumer(void *arg)
{
    struct pc *p = arg;
    long local = 0;
    for (long i = 0; i < PC_ITEMS / 2; i++) {
        coru_mutex_lock(p->m);
        while (p->count == 0)
            if (coru_cond_wait(p->not_empty, p->m) != 0) atomic_fetch_add(&p->errors, 1);
        local += p->q[p->head];
        p->head = (p->head + 1) % 4;
        p->count--;
        coru_cond_signal(p->not_full);
        coru_mutex_unlock(p->m);
    }
    coru_mutex_lock(p->m);
    p->sum += local;
    coru_mutex_unlock(p->m);
    return NULL;
}

static void *pc_main(void *arg)
{
    struct pc *p = arg;
    p->head = p->count = 0;
    p->sum = 0;
    cr_assert_eq(coru_mutex_create(&p->m), 0);
    cr_assert_eq(coru_cond_create(&p->not_full), 0);
    cr_assert_eq(coru_cond_create(&p->not_empty), 0);
    struct pc_arg a[2] = {{p, 0}, {p, PC_ITEMS / 2}};
    coru_t *h[4];
    spawn_ok(&h[0], pc_consumer, p);
    spawn_ok(&h[1], pc_producer, &a[0]);
    spawn_ok(&h[2], pc_consumer, p);
    spawn_ok(&h[3], pc_producer, &a[1]);
    for (int i = 0; i < 4; i++) join_ok(h[i]);
    cr_assert_eq(p->sum, (long)PC_ITEMS * (PC_ITEMS + 1) / 2);
    cr_assert_eq(p->count, 0);
    coru_cond_destroy(p->not_full);
    coru_cond_destroy(p->not_empty);
    coru_mutex_destroy(p->m);
    return NULL;
}

Test(sync, cond_bounded_queue_of_4_moves_100k_items_exactly, .timeout = 180)
{
    struct pc p = {0};
    run_both(pc_main, &p);
    cr_assert_eq(atomic_load(&p.errors), 0);
}

static void *cond_try_busy(void *arg)
{
    struct dl *d = arg;
    cr_assert_eq(coru_mutex_trylock(d->m), -EBUSY);
    return NULL;
}

static void *cond_dl_main(void *arg)
{
    struct dl d;
    cr_assert_eq(coru_mutex_create(&d.m), 0);
    cr_assert_eq(coru_cond_create(&d.c), 0);
    cr_assert_eq(coru_cond_wait(d.c, d.m), -EPERM); /* m not held */
    cr_assert_eq(coru_mutex_lock(d.m), 0);
    int64_t t0 = coru_now();
    cr_assert_eq(coru_cond_wait_dl(d.c, d.m, t0 + 20 * MS), -ETIMEDOUT);
    cr_assert_geq(coru_now() - t0, 20 * MS);
    coru_t *h;
    spawn_ok(&h, cond_try_busy, &d); /* m is held again */
    join_ok(h);
    cr_assert_eq(coru_cond_wait_dl(d.c, d.m, coru_now() - 1), -ETIMEDOUT); /* past: at once */
    spawn_ok(&h, cond_try_busy, &d);
    join_ok(h);
    cr_assert_eq(coru__sync_cond_waiters(d.c), 0);
    cr_assert_eq(coru_mutex_unlock(d.m), 0);
    cr_assert_eq(coru_mutex_unlock(d.m), -EPERM);
    coru_cond_destroy(d.c);
    coru_mutex_destroy(d.m);
    return NULL;
}

Test(sync, cond_wait_dl_times_out_and_returns_with_the_mutex_held, .timeout = 30)
{
    run_both(cond_dl_main, NULL);
}

struct bc {
    coru_mutex *m;
    coru_cond *c;
    int go, tokens, woken; /* guarded by m */
    _Atomic int errors;
};

static void *bc_waiter(void *arg)
{
    struct bc *b = arg;
    coru_mutex_lock(b->m);
    while (!b->go)
        if (coru_cond_wait(b->c, b->m) != 0) atomic_fetch_add(&b->errors, 1);
    b->woken++;
    coru_mutex_unlock(b->m);
    return NULL;
}

static void *bc_main(void *arg)
{
    struct bc *b = arg;
    b->go = b->woken = 0;
    cr_assert_eq(coru_mutex_create(&b->m), 0);
    cr_assert_eq(coru_cond_create(&b->c), 0);
    coru_t *h[50];
    for (int i = 0; i < 50; i++) spawn_ok(&h[i], bc_waiter, b);
    YIELD_UNTIL(coru__sync_cond_waiters(b->c) == 50);
    coru_mutex_lock(b->m);
    b->go = 1;
    cr_assert_eq(coru_cond_broadcast(b->c), 0);
    cr_assert_eq(coru__sync_cond_waiters(b->c), 0);
    coru_mutex_unlock(b->m);
    for (int i = 0; i < 50; i++) join_ok(h[i]);
    cr_assert_eq(b->woken, 50);
    coru_cond_destroy(b->c);
    coru_mutex_destroy(b->m);
    return NULL;
}

Test(sync, cond_broadcast_wakes_all_50_waiters, .timeout = 30)
{
    struct bc b = {0};
    run_both(bc_main, &b);
    cr_assert_eq(atomic_load(&b.errors), 0);
}

static void *tok_waiter(void *arg)
{
    struct bc *b = arg;
    coru_mutex_lock(b->m);
    while (b->tokens == 0)
        if (coru_cond_wait(b->c, b->m) != 0) atomic_fetch_add(&b->errors, 1);
    b->tokens--;
    b->woken++;
    coru_mutex_unlock(b->m);
    return NULL;
}

static void *signal_main(void *arg)
{
    struct bc *b = arg;
    b->tokens = b->woken = 0;
    cr_assert_eq(coru_mutex_create(&b->m), 0);
    cr_assert_eq(coru_cond_create(&b->c), 0);
    cr_assert_eq(coru_cond_signal(b->c), 0); /* nobody waits: nothing happens */
    coru_t *h[3];
    for (int i = 0; i < 3; i++) spawn_ok(&h[i], tok_waiter, b);
    YIELD_UNTIL(coru__sync_cond_waiters(b->c) == 3);
    coru_mutex_lock(b->m);
    b->tokens = 1;
    cr_assert_eq(coru_cond_signal(b->c), 0);
    cr_assert_eq(coru__sync_cond_waiters(b->c), 2); /* exactly one was taken */
    coru_mutex_unlock(b->m);
    for (;;) { /* until the woken one has taken its token and let go of m */
        if (coru_mutex_trylock(b->m) == 0) {
            if (b->woken == 1) break;
            coru_mutex_unlock(b->m);
        }
        coru_yield();
    }
    cr_assert_eq(b->woken, 1);
    cr_assert_eq(coru__sync_cond_waiters(b->c), 2);
    b->tokens = 2;
    cr_assert_eq(coru_cond_broadcast(b->c), 0);
    coru_mutex_unlock(b->m);
    for (int i = 0; i < 3; i++) join_ok(h[i]);
    cr_assert_eq(b->woken, 3);
    coru_cond_destroy(b->c);
    coru_mutex_destroy(b->m);
    return NULL;
}

Test(sync, cond_signal_wakes_exactly_one_waiter, .timeout = 30)
{
    struct bc b = {0};
    run_both(signal_main, &b);
    cr_assert_eq(atomic_load(&b.errors), 0);
}

/* ------------------------------------------------------------ sema */

struct sl {
    coru_sema *s;
    _Atomic int inside, max, errors;
};

static void *sl_worker(void *arg)
{
    struct sl *l = arg;
    for (int i = 0; i < 200; i++) {
        if (coru_sema_acquire(l->s) != 0) atomic_fetch_add(&l->errors, 1);
        int cur = atomic_fetch_add(&l->inside, 1) + 1;
        int mx = atomic_load(&l->max);
        while (cur > mx && !atomic_compare_exchange_weak(&l->max, &mx, cur)) {
        }
        coru_yield(); /* stay inside while the others run */
        atomic_fetch_sub(&l->inside, 1);
        if (coru_sema_release(l->s) != 0) atomic_fetch_add(&l->errors, 1);
    }
    return NULL;
}

static void *sl_main(void *arg)
{
    struct sl *l = arg;
    cr_assert_eq(coru_sema_create(&l->s, 3), 0);
    coru_t *h[8];
    for (int i = 0; i < 8; i++) spawn_ok(&h[i], sl_worker, l);
    for (int i = 0; i < 8; i++) join_ok(h[i]);
    for (int i = 0; i < 3; i++) cr_assert_eq(coru_sema_try_acquire(l->s), 0); /* all 3 back */
    cr_assert_eq(coru_sema_try_acquire(l->s), -EAGAIN);
    coru_sema_destroy(l->s);
    return NULL;
}

Test(sync, sema_of_3_admits_at_most_3_of_8_coroutines, .timeout = 60)
{
    struct sl l = {0};
    run_both(sl_main, &l);
    cr_assert_eq(atomic_load(&l.errors), 0);
    cr_assert_leq(atomic_load(&l.max), 3);
    cr_assert_geq(atomic_load(&l.max), 1);
}

static void *sema_dl_waiter(void *arg)
{
    struct dl *d = arg;
    int64_t t0 = coru_now();
    cr_assert_eq(coru_sema_acquire_dl(d->s, t0 + 20 * MS), -ETIMEDOUT);
    cr_assert_geq(coru_now() - t0, 20 * MS);
    return NULL;
}

static void *sema_main(void *arg)
{
    struct dl d;
    cr_assert_eq(coru_sema_create(&d.s, 0), 0);
    cr_assert_eq(coru_sema_try_acquire(d.s), -EAGAIN);
    cr_assert_eq(coru_sema_acquire_dl(d.s, coru_now() - 1), -ETIMEDOUT); /* past: at once */
    coru_t *h;
    spawn_ok(&h, sema_dl_waiter, &d);
    join_ok(h);
    cr_assert_eq(coru_sema_release(d.s), 0); /* the timed-out waiter took nothing */
    cr_assert_eq(coru_sema_try_acquire(d.s), 0);
    cr_assert_eq(coru_sema_try_acquire(d.s), -EAGAIN);
    coru_sema_destroy(d.s);

    cr_assert_eq(coru_sema_create(&d.s, (1u << 31) - 1), 0);
    cr_assert_eq(coru_sema_release(d.s), 0);        /* 2^31 */
    cr_assert_eq(coru_sema_release(d.s), -EOVERFLOW);
    cr_assert_eq(coru_sema_try_acquire(d.s), 0);
    cr_assert_eq(coru_sema_release(d.s), 0);
    coru_sema_destroy(d.s);
    return NULL;
}

Test(sync, sema_try_acquire_eagain_acquire_dl_timeout_release_overflow, .timeout = 30)
{
    run_both(sema_main, NULL);
}

/* ------------------------------------------------------------ waitgroup */

struct wgs {
    coru_waitgroup *wg;
    _Atomic int ran;
    _Atomic int waiters_ok;
};

static void *wg_task(void *arg)
{
    struct wgs *w = arg;
    atomic_fetch_add(&w->ran, 1);
    coru_waitgroup_done(w->wg);
    return NULL;
}

static void *wg_waiter(void *arg)
{
    struct wgs *w = arg;
    if (coru_waitgroup_wait(w->wg) == 0 && atomic_load(&w->ran) == 1000)
        atomic_fetch_add(&w->waiters_ok, 1);
    return NULL;
}

static void *wg_main(void *arg)
{
    struct wgs *w = arg;
    atomic_store(&w->ran, 0);
    atomic_store(&w->waiters_ok, 0);
    cr_assert_eq(coru_waitgroup_create(&w->wg), 0);
    cr_assert_eq(coru_waitgroup_wait(w->wg), 0); /* 0: at once */
    cr_assert_eq(coru_waitgroup_add(w->wg, 1000), 0);
    coru_t *h[4];
    for (int i = 0; i < 4; i++) spawn_ok(&h[i], wg_waiter, w);
    YIELD_UNTIL(coru__sync_wg_waiters(w->wg) == 4);
    for (int i = 0; i < 1000; i++) cr_assert_eq(coru_go(wg_task, w, NULL), 0);
    cr_assert_eq(coru_waitgroup_wait(w->wg), 0);
    cr_assert_eq(atomic_load(&w->ran), 1000);
    for (int i = 0; i < 4; i++) join_ok(h[i]);
    cr_assert_eq(atomic_load(&w->waiters_ok), 4);
    cr_assert_eq(coru_waitgroup_wait(w->wg), 0);
    coru_waitgroup_destroy(w->wg);
    return NULL;
}

Test(sync, waitgroup_wait_returns_after_1000_coroutines_are_done, .timeout = 60)
{
    struct wgs w = {0};
    run_both(wg_main, &w);
}

static void *wg_dl_main(void *arg)
{
    coru_waitgroup *wg;
    cr_assert_eq(coru_waitgroup_create(&wg), 0);
    cr_assert_eq(coru_waitgroup_add(wg, 1), 0);
    int64_t t0 = coru_now();
    cr_assert_eq(coru_waitgroup_wait_dl(wg, t0 + 20 * MS), -ETIMEDOUT);
    cr_assert_geq(coru_now() - t0, 20 * MS);
    cr_assert_eq(coru_waitgroup_wait_dl(wg, coru_now() - 1), -ETIMEDOUT); /* past: at once */
    cr_assert_eq(coru_waitgroup_done(wg), 0);
    cr_assert_eq(coru_waitgroup_wait_dl(wg, coru_now() - 1), 0); /* 0: never waits */

    cr_assert_eq(coru_waitgroup_add(wg, -1), -EINVAL);
    cr_assert_eq(coru_waitgroup_done(wg), -EINVAL);
    cr_assert_eq(coru_waitgroup_add(wg, 2), 0);
    cr_assert_eq(coru_waitgroup_add(wg, -3), -EINVAL); /* unchanged: still 2 */
    cr_assert_eq(coru_waitgroup_wait_dl(wg, coru_now() - 1), -ETIMEDOUT);
    cr_assert_eq(coru_waitgroup_add(wg, -2), 0);
    cr_assert_eq(coru_waitgroup_wait(wg), 0);
    cr_assert_eq(coru_waitgroup_add(wg, LONG_MAX), 0);
    cr_assert_eq(coru_waitgroup_add(wg, 1), -EOVERFLOW);
    cr_assert_eq(coru_waitgroup_add(wg, -LONG_MAX), 0);
    cr_assert_eq(coru_waitgroup_wait(wg), 0);
    coru_waitgroup_destroy(wg);
    return NULL;
}

Test(sync, waitgroup_wait_dl_times_out_and_add_below_zero_is_einval, .timeout = 30)
{
    run_both(wg_dl_main, NULL);
}

/* ------------------------------------------------------------ cancellation */

struct cx {
    coru_mutex *m;
    coru_cond *c;
    coru_sema *s;
    coru_waitgroup *wg;
    int rc, rc_later, unlock_rc;
};

static void *cx_mutex(void *arg)
{
    struct cx *x = arg;
    x->rc = coru_mutex_lock(x->m);
    x->rc_later = coru_mutex_lock(x->m); /* sticky: it would park again */
    return NULL;
}

static void *cx_sema(void *arg)
{
    struct cx *x = arg;
    x->rc = coru_sema_acquire(x->s);
    x->rc_later = coru_sema_acquire_dl(x->s, coru_now() + 1000 * MS);
    return NULL;
}

static void *cx_wg(void *arg)
{
    struct cx *x = arg;
    x->rc = coru_waitgroup_wait(x->wg);
    x->rc_later = coru_waitgroup_wait(x->wg);
    return NULL;
}

static void *cx_cond(void *arg)
{
    struct cx *x = arg;
    coru_mutex_lock(x->m);
    x->rc = coru_cond_wait(x->c, x->m);
    x->unlock_rc = coru_mutex_unlock(x->m); /* 0 only if we hold it again */
    coru_mutex_lock(x->m);
    x->rc_later = coru_cond_wait(x->c, x->m); /* cancelled: m never released */
    coru_mutex_unlock(x->m);
    return NULL;
}

static void *cx_main(void *arg)
{
    struct cx x = {.rc = 1, .rc_later = 1, .unlock_rc = 1};
    coru_t *h;
    cr_assert_eq(coru_mutex_create(&x.m), 0);
    cr_assert_eq(coru_cond_create(&x.c), 0);
    cr_assert_eq(coru_sema_create(&x.s, 0), 0);
    cr_assert_eq(coru_waitgroup_create(&x.wg), 0);

    /* mutex */
    cr_assert_eq(coru_mutex_lock(x.m), 0);
    spawn_ok(&h, cx_mutex, &x);
    YIELD_UNTIL(coru__sync_mutex_waiters(x.m) == 1);
    cr_assert_eq(coru_cancel(h), 0);
    join_ok(h);
    cr_assert_eq(x.rc, -ECANCELED);
    cr_assert_eq(x.rc_later, -ECANCELED);
    cr_assert_eq(coru_mutex_unlock(x.m), 0); /* still ours: nothing handed to the victim */
    cr_assert_eq(coru_mutex_trylock(x.m), 0);
    cr_assert_eq(coru_mutex_unlock(x.m), 0);

    /* sema */
    x.rc = x.rc_later = 1;
    spawn_ok(&h, cx_sema, &x);
    YIELD_UNTIL(coru__sync_sema_waiters(x.s) == 1);
    cr_assert_eq(coru_cancel(h), 0);
    join_ok(h);
    cr_assert_eq(x.rc, -ECANCELED);
    cr_assert_eq(x.rc_later, -ECANCELED);
    cr_assert_eq(coru_sema_release(x.s), 0);
    cr_assert_eq(coru_sema_try_acquire(x.s), 0); /* the unit was not given away */

    /* waitgroup */
    x.rc = x.rc_later = 1;
    cr_assert_eq(coru_waitgroup_add(x.wg, 1), 0);
    spawn_ok(&h, cx_wg, &x);
    YIELD_UNTIL(coru__sync_wg_waiters(x.wg) == 1);
    cr_assert_eq(coru_cancel(h), 0);
    join_ok(h);
    cr_assert_eq(x.rc, -ECANCELED);
    cr_assert_eq(x.rc_later, -ECANCELED);
    cr_assert_eq(coru_waitgroup_done(x.wg), 0);

    /* cond, with the mutex held by us when the victim must re-lock it */
    for (int held = 0; held < 2; held++) {
        x.rc = x.rc_later = x.unlock_rc = 1;
        spawn_ok(&h, cx_cond, &x);
        YIELD_UNTIL(coru__sync_cond_waiters(x.c) == 1);
        if (held) cr_assert_eq(coru_mutex_lock(x.m), 0);
        cr_assert_eq(coru_cancel(h), 0);
        if (held) {
            YIELD_UNTIL(coru__sync_mutex_waiters(x.m) == 1); /* re-locking, despite the cancel */
            cr_assert_eq(x.rc, 1);                           /* not returned yet */
            cr_assert_eq(coru_mutex_unlock(x.m), 0);
        }
        join_ok(h);
        cr_assert_eq(x.rc, -ECANCELED);
        cr_assert_eq(x.unlock_rc, 0);
        cr_assert_eq(x.rc_later, -ECANCELED);
        cr_assert_eq(coru__sync_cond_waiters(x.c), 0);
        cr_assert_eq(coru_mutex_trylock(x.m), 0);
        cr_assert_eq(coru_mutex_unlock(x.m), 0);
    }

    coru_waitgroup_destroy(x.wg);
    coru_sema_destroy(x.s);
    coru_cond_destroy(x.c);
    coru_mutex_destroy(x.m);
    return NULL;
}

Test(sync, cancel_ends_parked_lock_acquire_wait_and_cond_wait_with_ecanceled, .timeout = 30)
{
    run_both(cx_main, NULL);
}

/* ------------------------------------------------------------ plain threads */

struct th {
    coru_sema *s;
    coru_waitgroup *wg;
    coru_mutex *m;
    long counter; /* guarded by m */
    _Atomic int ran;
    int rc, rc_dl, ran_seen;
};

static void *th_acquire(void *arg)
{
    struct th *t = arg;
    t->rc = coru_sema_acquire(t->s);
    int64_t t0 = coru_now();
    t->rc_dl = coru_sema_acquire_dl(t->s, t0 + 20 * MS);
    if (coru_now() - t0 < 20 * MS) t->rc_dl = 12345;
    return NULL;
}

static void *th_release_main(void *arg)
{
    struct th *t = arg;
    YIELD_UNTIL(coru__sync_sema_waiters(t->s) == 1); /* the thread is blocked */
    cr_assert_eq(coru_sema_release(t->s), 0);
    return NULL;
}

Test(sync, plain_thread_acquires_a_sema_released_by_a_coroutine, .timeout = 30)
{
    for (int e = 0; e < 2; e++) {
        struct th t = {.rc = 1, .rc_dl = 1};
        cr_assert_eq(coru_sema_create(&t.s, 0), 0);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, th_acquire, &t), 0);
        struct coru_opts o = {.workers = 2, .io = engines[e]};
        cr_assert_eq(coru_run(th_release_main, &t, &o), 0);
        pthread_join(th, NULL);
        cr_assert_eq(t.rc, 0);
        cr_assert_eq(t.rc_dl, -ETIMEDOUT);
        coru_sema_destroy(t.s);
    }
}

static void *th_wait(void *arg)
{
    struct th *t = arg;
    t->rc = coru_waitgroup_wait(t->wg);
    t->ran_seen = atomic_load(&t->ran);
    return NULL;
}

static void *th_task(void *arg)
{
    struct th *t = arg;
    coru_yield();
    atomic_fetch_add(&t->ran, 1);
    coru_waitgroup_done(t->wg);
    return NULL;
}

static void *th_tasks_main(void *arg)
{
    struct th *t = arg;
    YIELD_UNTIL(coru__sync_wg_waiters(t->wg) == 1);
    for (int i = 0; i < 100; i++) cr_assert_eq(coru_go(th_task, t, NULL), 0);
    return NULL;
}

Test(sync, plain_thread_waits_on_a_waitgroup_coroutines_complete, .timeout = 30)
{
    for (int e = 0; e < 2; e++) {
        struct th t = {.rc = 1};
        cr_assert_eq(coru_waitgroup_create(&t.wg), 0);
        cr_assert_eq(coru_waitgroup_add(t.wg, 100), 0);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, th_wait, &t), 0);
        struct coru_opts o = {.workers = 2, .io = engines[e]};
        cr_assert_eq(coru_run(th_tasks_main, &t, &o), 0);
        pthread_join(th, NULL);
        cr_assert_eq(t.rc, 0);
        cr_assert_eq(t.ran_seen, 100);
        coru_waitgroup_destroy(t.wg);
    }
}

static void *th_locker(void *arg)
{
    struct th *t = arg;
    for (int i = 0; i < 5000; i++) {
        if (coru_mutex_lock(t->m) != 0) t->rc = -1;
        t->counter++;
        if (coru_mutex_unlock(t->m) != 0) t->rc = -1;
    }
    return NULL;
}

static void *th_lock_main(void *arg)
{
    struct th *t = arg;
    coru_t *h[4];
    for (int i = 0; i < 4; i++) spawn_ok(&h[i], th_locker, t);
    for (int i = 0; i < 4; i++) join_ok(h[i]);
    return NULL;
}

Test(sync, plain_threads_and_coroutines_share_a_mutex, .timeout = 60)
{
    for (int e = 0; e < 2; e++) {
        struct th t = {.rc = 0};
        cr_assert_eq(coru_mutex_create(&t.m), 0);
        pthread_t th[2];
        for (int i = 0; i < 2; i++) cr_assert_eq(pthread_create(&th[i], NULL, th_locker, &t), 0);
        struct coru_opts o = {.workers = 2, .io = engines[e]};
        cr_assert_eq(coru_run(th_lock_main, &t, &o), 0);
        for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
        cr_assert_eq(t.rc, 0);
        cr_assert_eq(t.counter, 6L * 5000);
        coru_mutex_destroy(t.m);
    }
}

/* ------------------------------------------------------------ generators */

struct gx {
    coru_mutex *m;
    coru_cond *c;
    coru_sema *s;
    coru_waitgroup *wg;
};

static void *gen_body(coru_gen *g, void *arg)
{
    struct gx *x = arg;
    int bad = 0;
    /* may park: -EPERM even when it would not block */
    bad |= coru_mutex_lock(x->m) != -EPERM;
    bad |= coru_mutex_lock_dl(x->m, CORU_NEVER) != -EPERM;
    bad |= coru_sema_acquire(x->s) != -EPERM;
    bad |= coru_waitgroup_wait(x->wg) != -EPERM;
    /* never park: fine in a generator */
    bad |= coru_mutex_trylock(x->m) != 0;
    bad |= coru_cond_wait(x->c, x->m) != -EPERM;
    bad |= coru_cond_signal(x->c) != 0;
    bad |= coru_mutex_unlock(x->m) != 0;
    bad |= coru_sema_try_acquire(x->s) != 0;
    bad |= coru_sema_release(x->s) != 0;
    bad |= coru_waitgroup_add(x->wg, 1) != 0;
    bad |= coru_waitgroup_done(x->wg) != 0;
    return (void *)(intptr_t)bad;
}

Test(sync, blocking_calls_are_eperm_in_a_generator_body)
{
    struct gx x;
    cr_assert_eq(coru_mutex_create(&x.m), 0);
    cr_assert_eq(coru_cond_create(&x.c), 0);
    cr_assert_eq(coru_sema_create(&x.s, 1), 0);
    cr_assert_eq(coru_waitgroup_create(&x.wg), 0);
    coru_gen *g;
    cr_assert_eq(coru_gen_create(&g, gen_body, &x, 0), 0);
    void *out = (void *)-1;
    cr_assert_eq(coru_gen_send(g, NULL, &out), 0);
    cr_assert_eq((intptr_t)out, 0);
    coru_gen_destroy(g);
    coru_waitgroup_destroy(x.wg);
    coru_sema_destroy(x.s);
    coru_cond_destroy(x.c);
    coru_mutex_destroy(x.m);
}
