/* test_gen.c - generators (coru_gen_*): every state transition, values in
 * both directions, return values, close (created, suspended, refused),
 * error codes, use from a coroutine inside coru_run, many generators, and
 * resuming on another thread.
 *
 * Generator bodies and coroutines never assert: they record what they saw
 * in a struct and the test thread asserts afterwards (a failed assertion
 * unwinds with longjmp, which must not start on a generator stack or a
 * worker thread). */
#include <criterion/criterion.h>
#include <coru.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define V(x) ((void *)(intptr_t)(x))
#define I(p) ((intptr_t)(p))

/* ------------------------------------------------------------------------
 * States and values
 * ------------------------------------------------------------------------ */

struct states {
    enum coru_gen_state seen[2]; /* coru_gen_state(g) from inside the body */
    int steps;                   /* entries into the body so far */
    int yield_rc;
    void *sent;
};

static void *states_body(coru_gen *g, void *arg)
{
    struct states *s = arg;
    s->seen[s->steps++] = coru_gen_state(g);
    s->yield_rc = coru_gen_yield(g, V(1), &s->sent);
    s->seen[s->steps++] = coru_gen_state(g);
    return V(2);
}

Test(gen, every_state_transition, .timeout = 30)
{
    struct states s = {.yield_rc = 99};
    coru_gen *g;
    void *out = NULL;
    cr_assert_eq(coru_gen_create(&g, states_body, &s, 0), 0);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_CREATED);
    cr_assert_eq(s.steps, 0, "nothing runs before the first send");

    cr_assert_eq(coru_gen_send(g, NULL, &out), 1);
    cr_assert_eq(s.steps, 1);
    cr_assert_eq(s.seen[0], CORU_GEN_RUNNING);
    cr_assert_eq(I(out), 1);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_SUSPENDED);

    cr_assert_eq(coru_gen_send(g, V(7), &out), 0);
    cr_assert_eq(s.steps, 2);
    cr_assert_eq(s.seen[1], CORU_GEN_RUNNING);
    cr_assert_eq(s.yield_rc, 0);
    cr_assert_eq(I(s.sent), 7);
    cr_assert_eq(I(out), 2);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_CLOSED);
    coru_gen_destroy(g);
}

#define FLOW_N 1000

struct flow {
    int bad; /* yields that failed or got the wrong value */
};

/* Yields 0..FLOW_N-1; expects 3i+1 back for yield i; returns FLOW_N. */
static void *flow_body(coru_gen *g, void *arg)
{
    struct flow *f = arg;
    for (int i = 0; i < FLOW_N; i++) {
        void *v = NULL;
        int rc = coru_gen_yield(g, V(i), &v);
        if (rc != 0 || I(v) != 3 * i + 1) f->bad++;
    }
    return V(FLOW_N);
}

Test(gen, values_flow_both_ways_in_order, .timeout = 30)
{
    struct flow f = {0};
    coru_gen *g;
    void *out = NULL;
    cr_assert_eq(coru_gen_create(&g, flow_body, &f, 0), 0);
    cr_assert_eq(coru_gen_send(g, NULL, &out), 1);
    cr_assert_eq(I(out), 0);
    for (int i = 0; i < FLOW_N; i++) {
        int rc = coru_gen_send(g, V(3 * i + 1), &out);
        if (i < FLOW_N - 1) {
            cr_assert_eq(rc, 1, "send %d", i);
            cr_assert_eq(I(out), i + 1, "send %d", i);
            cr_assert_eq(coru_gen_state(g), CORU_GEN_SUSPENDED);
        } else {
            cr_assert_eq(rc, 0, "last send");
            cr_assert_eq(I(out), FLOW_N, "the return value");
        }
    }
    cr_assert_eq(f.bad, 0);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_CLOSED);
    coru_gen_destroy(g);
}

static void *return_at_once(coru_gen *g, void *arg)
{
    return arg;
}

Test(gen, return_value_comes_back_with_rc_0, .timeout = 30)
{
    coru_gen *g;
    void *out = NULL;
    cr_assert_eq(coru_gen_create(&g, return_at_once, V(0xC0FFEE), 0), 0);
    cr_assert_eq(coru_gen_send(g, NULL, &out), 0);
    cr_assert_eq(I(out), 0xC0FFEE);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_CLOSED);
    coru_gen_destroy(g);

    /* out may be NULL. */
    cr_assert_eq(coru_gen_create(&g, return_at_once, V(1), 0), 0);
    cr_assert_eq(coru_gen_send(g, NULL, NULL), 0);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_CLOSED);
    coru_gen_destroy(g);
}

Test(gen, send_after_closed_is_epipe, .timeout = 30)
{
    coru_gen *g;
    void *out = NULL;
    cr_assert_eq(coru_gen_create(&g, return_at_once, V(5), 0), 0);
    cr_assert_eq(coru_gen_send(g, NULL, &out), 0);
    cr_assert_eq(coru_gen_send(g, NULL, &out), -EPIPE);
    cr_assert_eq(coru_gen_send(g, V(1), NULL), -EPIPE);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_CLOSED);
    cr_assert_eq(coru_gen_close(g), 0, "closing a closed generator does nothing");
    cr_assert_eq(coru_gen_state(g), CORU_GEN_CLOSED);
    coru_gen_destroy(g);
}

struct flag {
    int ran;     /* the body started */
    int cleanup; /* the body saw -EPIPE and cleaned up */
    int epipes;  /* -EPIPE results seen by the body */
    int other;   /* any other unexpected result */
    enum coru_gen_state state_in_cleanup;
};

static void *flag_body(coru_gen *g, void *arg)
{
    struct flag *f = arg;
    f->ran = 1;
    for (;;) {
        int rc = coru_gen_yield(g, V(f->ran++), NULL);
        if (rc == -EPIPE) {
            f->epipes++;
            f->state_in_cleanup = coru_gen_state(g);
            f->cleanup = 1;
            return V(-1);
        }
        if (rc != 0) f->other++;
    }
}

Test(gen, non_null_send_to_created_is_einval, .timeout = 30)
{
    struct flag f = {0};
    coru_gen *g;
    void *out = NULL;
    cr_assert_eq(coru_gen_create(&g, flag_body, &f, 0), 0);
    cr_assert_eq(coru_gen_send(g, V(1), &out), -EINVAL);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_CREATED);
    cr_assert_eq(f.ran, 0);
    cr_assert_eq(coru_gen_send(g, NULL, &out), 1, "it can still be started with NULL");
    cr_assert_eq(f.ran, 2);
    cr_assert_eq(I(out), 1);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_SUSPENDED);
    coru_gen_destroy(g);
    cr_assert_eq(f.cleanup, 1, "destroy closes a suspended generator");
    cr_assert_eq(f.other, 0);
}

Test(gen, close_created_does_not_run_body, .timeout = 30)
{
    struct flag f = {0};
    coru_gen *g;
    cr_assert_eq(coru_gen_create(&g, flag_body, &f, 0), 0);
    cr_assert_eq(coru_gen_close(g), 0);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_CLOSED);
    cr_assert_eq(f.ran, 0);
    cr_assert_eq(coru_gen_close(g), 0);
    cr_assert_eq(coru_gen_send(g, NULL, NULL), -EPIPE);
    cr_assert_eq(f.ran, 0);
    coru_gen_destroy(g);
    cr_assert_eq(f.ran, 0);
}

Test(gen, close_suspended_makes_yield_return_epipe, .timeout = 30)
{
    struct flag f = {0};
    coru_gen *g;
    void *out = NULL;
    cr_assert_eq(coru_gen_create(&g, flag_body, &f, 0), 0);
    cr_assert_eq(coru_gen_send(g, NULL, &out), 1);
    cr_assert_eq(coru_gen_send(g, NULL, &out), 1);
    cr_assert_eq(I(out), 2);
    cr_assert_eq(f.cleanup, 0);
    cr_assert_eq(coru_gen_close(g), 0);
    cr_assert_eq(f.epipes, 1);
    cr_assert_eq(f.cleanup, 1);
    cr_assert_eq(f.state_in_cleanup, CORU_GEN_RUNNING);
    cr_assert_eq(f.other, 0);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_CLOSED);
    cr_assert_eq(coru_gen_send(g, NULL, NULL), -EPIPE);
    coru_gen_destroy(g);
    cr_assert_eq(f.epipes, 1, "a closed generator never runs again");
}

struct stubborn {
    int epipes;    /* -EPIPE results seen */
    int give_up;   /* return after this many -EPIPEs (0: never) */
    int returned;
};

static void *stubborn_body(coru_gen *g, void *arg)
{
    struct stubborn *s = arg;
    for (;;) {
        /* Ignores -EPIPE and yields again, like a Python generator that
         * swallows GeneratorExit, until give_up -EPIPEs were seen. */
        if (coru_gen_yield(g, NULL, NULL) == -EPIPE && ++s->epipes == s->give_up) break;
    }
    s->returned = 1;
    return NULL;
}

Test(gen, close_refused_is_eproto_and_destroy_still_frees, .timeout = 30)
{
    struct stubborn s = {0};
    coru_gen *g;
    cr_assert_eq(coru_gen_create(&g, stubborn_body, &s, 0), 0);
    cr_assert_eq(coru_gen_send(g, NULL, NULL), 1);
    cr_assert_eq(coru_gen_close(g), -EPROTO);
    cr_assert_eq(s.epipes, 1);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_SUSPENDED);
    cr_assert_eq(coru_gen_close(g), -EPROTO, "a later close retries");
    cr_assert_eq(s.epipes, 2);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_SUSPENDED);
    /* destroy closes once more (-EPROTO again), then frees the stack
     * without running the body further: under ASan, nothing leaks. */
    coru_gen_destroy(g);
    cr_assert_eq(s.epipes, 3);
    cr_assert_eq(s.returned, 0);
}

Test(gen, close_after_eproto_can_succeed, .timeout = 30)
{
    struct stubborn s = {.give_up = 2};
    coru_gen *g;
    cr_assert_eq(coru_gen_create(&g, stubborn_body, &s, 0), 0);
    cr_assert_eq(coru_gen_send(g, NULL, NULL), 1);
    cr_assert_eq(coru_gen_close(g), -EPROTO);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_SUSPENDED);
    cr_assert_eq(s.returned, 0);
    cr_assert_eq(coru_gen_close(g), 0);
    cr_assert_eq(s.epipes, 2);
    cr_assert_eq(s.returned, 1);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_CLOSED);
    coru_gen_destroy(g);
}

/* ------------------------------------------------------------------------
 * Misuse
 * ------------------------------------------------------------------------ */

struct self_send {
    int send_rc, close_rc;
    enum coru_gen_state state;
};

static void *self_send_body(coru_gen *g, void *arg)
{
    struct self_send *s = arg;
    s->send_rc = coru_gen_send(g, NULL, NULL);
    s->close_rc = coru_gen_close(g);
    s->state = coru_gen_state(g);
    return V(3);
}

Test(gen, send_or_close_from_inside_itself_is_ebusy, .timeout = 30)
{
    struct self_send s = {0};
    coru_gen *g;
    void *out = NULL;
    cr_assert_eq(coru_gen_create(&g, self_send_body, &s, 0), 0);
    cr_assert_eq(coru_gen_send(g, NULL, &out), 0);
    cr_assert_eq(s.send_rc, -EBUSY);
    cr_assert_eq(s.close_rc, -EBUSY);
    cr_assert_eq(s.state, CORU_GEN_RUNNING);
    cr_assert_eq(I(out), 3, "the failed calls did not disturb the body");
    cr_assert_eq(coru_gen_state(g), CORU_GEN_CLOSED);
    coru_gen_destroy(g);
}

struct foreign {
    coru_gen *self;  /* the generator whose body runs */
    coru_gen *other; /* a generator that is not running */
    int other_rc;    /* coru_gen_yield(other) from the body */
    int thread_rc;   /* coru_gen_yield(self) from another thread */
    int thread_err;  /* pthread_create/join failed */
};

static void *yield_from_thread(void *arg)
{
    struct foreign *f = arg;
    f->thread_rc = coru_gen_yield(f->self, NULL, NULL);
    return NULL;
}

static void *foreign_body(coru_gen *g, void *arg)
{
    struct foreign *f = arg;
    f->other_rc = coru_gen_yield(f->other, NULL, NULL);
    /* g is RUNNING, but on this thread, not on the new one. */
    pthread_t t;
    if (pthread_create(&t, NULL, yield_from_thread, f) != 0 || pthread_join(t, NULL) != 0) f->thread_err = 1;
    coru_gen_yield(g, V(1), NULL);
    return NULL;
}

Test(gen, yield_on_a_generator_not_running_here_is_eperm, .timeout = 30)
{
    struct flag fl = {0};
    struct foreign f = {.other_rc = 99, .thread_rc = 99};
    coru_gen *g, *other;
    cr_assert_eq(coru_gen_create(&other, flag_body, &fl, 0), 0);
    cr_assert_eq(coru_gen_create(&g, foreign_body, &f, 0), 0);
    f.self = g;
    f.other = other;

    /* From the test thread, which runs no generator. */
    cr_assert_eq(coru_gen_yield(other, NULL, NULL), -EPERM, "CREATED");
    cr_assert_eq(coru_gen_state(other), CORU_GEN_CREATED);
    cr_assert_eq(coru_gen_send(other, NULL, NULL), 1);
    cr_assert_eq(coru_gen_yield(other, NULL, NULL), -EPERM, "SUSPENDED");
    cr_assert_eq(coru_gen_state(other), CORU_GEN_SUSPENDED);

    /* From inside another generator's body, and from another thread. */
    cr_assert_eq(coru_gen_send(g, NULL, NULL), 1);
    cr_assert_eq(f.other_rc, -EPERM);
    cr_assert_eq(f.thread_err, 0);
    cr_assert_eq(f.thread_rc, -EPERM);
    cr_assert_eq(coru_gen_state(g), CORU_GEN_SUSPENDED);

    /* Neither generator was disturbed. */
    void *out = NULL;
    cr_assert_eq(coru_gen_send(other, NULL, &out), 1);
    cr_assert_eq(I(out), 2);
    cr_assert_eq(coru_gen_send(g, NULL, NULL), 0);
    coru_gen_destroy(g);
    coru_gen_destroy(other);
    cr_assert_eq(fl.cleanup, 1);
    cr_assert_eq(fl.other, 0);
}

struct null_inside {
    int yield_rc;
};

static void *null_inside_body(coru_gen *g, void *arg)
{
    struct null_inside *n = arg;
    n->yield_rc = coru_gen_yield(NULL, NULL, NULL);
    return NULL;
}

Test(gen, null_handles, .timeout = 30)
{
    coru_gen *g = (coru_gen *)V(1);
    void *out = V(5);
    cr_assert_eq(coru_gen_create(NULL, return_at_once, NULL, 0), -EINVAL);
    cr_assert_eq(coru_gen_create(&g, NULL, NULL, 0), -EINVAL);
    cr_assert_eq(coru_gen_send(NULL, NULL, &out), -EINVAL);
    cr_assert_eq(coru_gen_send(NULL, V(1), NULL), -EINVAL);
    cr_assert_eq(I(out), 5);
    cr_assert_eq(coru_gen_yield(NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(coru_gen_close(NULL), -EINVAL);
    cr_assert_eq(coru_gen_state(NULL), CORU_GEN_CLOSED);
    coru_gen_destroy(NULL);

    struct null_inside n = {.yield_rc = 99};
    cr_assert_eq(coru_gen_create(&g, null_inside_body, &n, 0), 0);
    cr_assert_eq(coru_gen_send(g, NULL, NULL), 0);
    cr_assert_eq(n.yield_rc, -EINVAL, "NULL from inside a body");
    coru_gen_destroy(g);
}

/* ------------------------------------------------------------------------
 * Inside coru_run
 * ------------------------------------------------------------------------ */

#define RUN_N 100

struct in_run {
    coru_t *h;      /* a coroutine the body tries to join */
    coru_chan *ch;  /* a channel (capacity 1) the body tries to use */
    int yield_rc, join_rc, send_rc, recv_rc;
    int gen_rc;     /* first unexpected coru_gen_* result in the driver */
    int bad;        /* wrong partial sums */
    intptr_t sum;   /* the generator's return value */
    int join_after_rc;
    void *join_result;
    int setup_rc;
};

static void *forty_two(void *arg)
{
    return V(42);
}

/* Receives RUN_N values; yields the running sum after each but the last;
 * returns the total. Its first step tries every call that may park. */
static void *summer(coru_gen *g, void *arg)
{
    struct in_run *r = arg;
    int64_t x = 1;
    r->yield_rc = coru_yield();
    r->join_rc = coru_join(r->h, NULL);
    r->send_rc = coru_chan_send(r->ch, &x);
    r->recv_rc = coru_chan_recv(r->ch, &x);
    intptr_t sum = 0;
    void *v = NULL;
    if (coru_gen_yield(g, NULL, &v) != 0) return V(-1);
    for (int i = 0; i < RUN_N; i++) {
        sum += I(v);
        if (i == RUN_N - 1) break;
        if (coru_gen_yield(g, V(sum), &v) != 0) return V(-1);
    }
    return V(sum);
}

static void *run_driver(void *arg)
{
    struct in_run *r = arg;
    coru_gen *g;
    void *out = NULL;
    int rc;
    if ((rc = coru_spawn(&r->h, forty_two, NULL, NULL)) != 0 ||
        (rc = coru_chan_create(&r->ch, sizeof(int64_t), 1)) != 0 ||
        (rc = coru_gen_create(&g, summer, r, 0)) != 0) {
        r->setup_rc = rc;
        return NULL;
    }
    if ((rc = coru_gen_send(g, NULL, &out)) != 1) r->gen_rc = rc == 0 ? 1000 : rc;
    intptr_t want = 0;
    for (int i = 1; i <= RUN_N && r->gen_rc == 0; i++) {
        want += i;
        rc = coru_gen_send(g, V(i), &out);
        if (rc != (i < RUN_N ? 1 : 0)) r->gen_rc = rc == 0 ? 1000 + i : rc;
        else if (i < RUN_N && I(out) != want) r->bad++;
        /* Between sends the driver may move to another worker; the
         * generator follows it (one thread at a time). */
        coru_yield();
    }
    r->sum = I(out);
    coru_gen_destroy(g);
    r->join_after_rc = coru_join(r->h, &r->join_result);
    coru_chan_destroy(r->ch);
    return NULL;
}

Test(gen, used_by_a_coroutine_inside_coru_run, .timeout = 30)
{
    struct in_run r = {.yield_rc = 99, .join_rc = 99, .send_rc = 99, .recv_rc = 99, .join_after_rc = 99};
    struct coru_opts opts = {.workers = 2};
    cr_assert_eq(coru_run(run_driver, &r, &opts), 0);
    cr_assert_eq(r.setup_rc, 0);
    cr_assert_eq(r.yield_rc, -EPERM, "coru_yield in a generator body");
    cr_assert_eq(r.join_rc, -EPERM, "coru_join in a generator body");
    cr_assert_eq(r.send_rc, -EPERM, "coru_chan_send in a generator body");
    cr_assert_eq(r.recv_rc, -EPERM, "coru_chan_recv in a generator body");
    cr_assert_eq(r.gen_rc, 0);
    cr_assert_eq(r.bad, 0);
    cr_assert_eq(r.sum, RUN_N * (RUN_N + 1) / 2);
    cr_assert_eq(r.join_after_rc, 0, "the handle stayed valid after -EPERM");
    cr_assert_eq(I(r.join_result), 42);
}

/* ------------------------------------------------------------------------
 * Many generators, stacks, threads
 * ------------------------------------------------------------------------ */

Test(gen, ten_thousand_created_and_destroyed, .timeout = 30)
{
    struct flag f = {0};
    int started = 0;
    for (int i = 0; i < 10000; i++) {
        coru_gen *g;
        cr_assert_eq(coru_gen_create(&g, flag_body, &f, 0), 0, "generator %d", i);
        if (i % 2 == 0) {
            cr_assert_eq(coru_gen_send(g, NULL, NULL), 1);
            started++;
        }
        coru_gen_destroy(g);
    }
    cr_assert_eq(f.epipes, started, "each started one was closed by destroy");
    cr_assert_eq(f.other, 0);

    /* Many alive at once, then all destroyed; ten rounds. */
    enum { LIVE = 1000 };
    static coru_gen *gs[LIVE];
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < LIVE; i++) {
            cr_assert_eq(coru_gen_create(&gs[i], flag_body, &f, 0), 0, "round %d, generator %d", round, i);
            cr_assert_eq(coru_gen_send(gs[i], NULL, NULL), 1);
        }
        for (int i = 0; i < LIVE; i++) coru_gen_destroy(gs[i]);
    }
    cr_assert_eq(f.epipes, started + 10 * LIVE);
}

static void *big_frame_body(coru_gen *g, void *arg)
{
    /* 512 KiB of locals: needs more than the default 64 KiB stack. */
    volatile char buf[512 * 1024];
    for (size_t i = 0; i < sizeof buf; i += 4096) buf[i] = (char)i;
    buf[sizeof buf - 1] = 7;
    return V(buf[sizeof buf - 1] + buf[8192]); /* 7 + (char)8192 == 7 */
}

Test(gen, stack_size_is_honoured, .timeout = 30)
{
    coru_gen *g;
    void *out = NULL;
    cr_assert_eq(coru_gen_create(&g, big_frame_body, NULL, 1024 * 1024), 0);
    cr_assert_eq(coru_gen_send(g, NULL, &out), 0);
    cr_assert_eq(I(out), 7);
    coru_gen_destroy(g);
}

struct nest {
    coru_gen *outer, *inner;
    enum coru_gen_state outer_in_inner; /* outer's state seen by inner */
    int inner_yield_outer_rc;           /* inner yielding the outer one */
    int outer_rc[3];                    /* outer's sends to inner */
    void *outer_out[3];
};

static void *inner_body(coru_gen *g, void *arg)
{
    struct nest *n = arg;
    n->outer_in_inner = coru_gen_state(n->outer);
    n->inner_yield_outer_rc = coru_gen_yield(n->outer, NULL, NULL);
    coru_gen_yield(g, V(10), NULL);
    return V(11);
}

/* A generator that drives another one, as `for x in inner` in Python. */
static void *outer_body(coru_gen *g, void *arg)
{
    struct nest *n = arg;
    for (int i = 0; i < 3; i++) {
        n->outer_rc[i] = coru_gen_send(n->inner, NULL, &n->outer_out[i]);
        if (i == 0) coru_gen_yield(g, V(20), NULL);
    }
    return V(21);
}

Test(gen, a_body_may_drive_another_generator, .timeout = 30)
{
    struct nest n = {.inner_yield_outer_rc = 99};
    void *out = NULL;
    cr_assert_eq(coru_gen_create(&n.outer, outer_body, &n, 0), 0);
    cr_assert_eq(coru_gen_create(&n.inner, inner_body, &n, 0), 0);
    cr_assert_eq(coru_gen_send(n.outer, NULL, &out), 1);
    cr_assert_eq(I(out), 20);
    cr_assert_eq(n.outer_in_inner, CORU_GEN_RUNNING);
    cr_assert_eq(n.inner_yield_outer_rc, -EPERM, "only the innermost body may yield");
    cr_assert_eq(n.outer_rc[0], 1);
    cr_assert_eq(I(n.outer_out[0]), 10);
    cr_assert_eq(coru_gen_state(n.inner), CORU_GEN_SUSPENDED);
    cr_assert_eq(coru_gen_send(n.outer, NULL, &out), 0);
    cr_assert_eq(I(out), 21);
    cr_assert_eq(n.outer_rc[1], 0);
    cr_assert_eq(I(n.outer_out[1]), 11);
    cr_assert_eq(n.outer_rc[2], -EPIPE);
    cr_assert_eq(coru_gen_state(n.inner), CORU_GEN_CLOSED);
    cr_assert_eq(coru_gen_state(n.outer), CORU_GEN_CLOSED);
    coru_gen_destroy(n.inner);
    coru_gen_destroy(n.outer);
}

#define HOP_N 100

struct hop {
    coru_gen *g;
    pthread_t sender;  /* the thread that sends next; set before each send */
    int wrong_thread;  /* steps that ran on another thread than the sender */
    int bad;           /* wrong values */
    int from, to;      /* a hopper thread sends values from..to-1 */
};

/* glibc declares pthread_self const, so the compiler may reuse its value
 * across a coru_gen_yield, after which the body can be on another thread;
 * a load through a volatile pointer forces a fresh call at each step. */
static pthread_t (*volatile self_fn)(void) = pthread_self;

/* Returns the sum of what it received; yields each value doubled. */
static void *hop_body(coru_gen *g, void *arg)
{
    struct hop *h = arg;
    intptr_t sum = 0;
    void *v = NULL;
    if (!pthread_equal(self_fn(), h->sender)) h->wrong_thread++;
    if (coru_gen_yield(g, NULL, &v) != 0) return V(-1);
    for (;;) {
        if (!pthread_equal(self_fn(), h->sender)) h->wrong_thread++;
        if (I(v) < 0) return V(sum);
        sum += I(v);
        if (coru_gen_yield(g, V(2 * I(v)), &v) != 0) return V(-1);
    }
}

static void *hopper(void *arg)
{
    struct hop *h = arg;
    for (int i = h->from; i < h->to; i++) {
        void *out = NULL;
        h->sender = pthread_self();
        if (coru_gen_send(h->g, V(i), &out) != 1 || I(out) != 2 * i) h->bad++;
    }
    return NULL;
}

Test(gen, resumed_on_another_thread, .timeout = 30)
{
    struct hop h = {0};
    void *out = NULL;
    cr_assert_eq(coru_gen_create(&h.g, hop_body, &h, 0), 0);
    h.sender = pthread_self();
    cr_assert_eq(coru_gen_send(h.g, NULL, &out), 1);
    cr_assert_eq(coru_gen_state(h.g), CORU_GEN_SUSPENDED);

    /* Suspended on this thread; resumed on two others in turn, then back
     * here. One thread at a time: each is joined before the next. */
    for (int t = 0; t < 2; t++) {
        pthread_t th;
        h.from = t * HOP_N;
        h.to = (t + 1) * HOP_N;
        cr_assert_eq(pthread_create(&th, NULL, hopper, &h), 0);
        cr_assert_eq(pthread_join(th, NULL), 0);
        cr_assert_eq(coru_gen_state(h.g), CORU_GEN_SUSPENDED);
    }
    h.sender = pthread_self();
    cr_assert_eq(coru_gen_send(h.g, V(-1), &out), 0);
    cr_assert_eq(I(out), (2 * HOP_N) * (2 * HOP_N - 1) / 2);
    cr_assert_eq(h.bad, 0);
    cr_assert_eq(h.wrong_thread, 0);
    coru_gen_destroy(h.g);
}
