/* Generators: asymmetric coroutines driven by coru_gen_send on the
 * caller's own thread (see coru.h for the state machine).
 *
 * Ownership: a generator is used by one thread at a time; nothing here is
 * shared between threads, so there are no atomics. `caller` is the
 * context that resumed the generator: a plain thread's native context, a
 * coroutine's, or another generator's (generators nest).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "sched/sched.h"

uint64_t coru__next_id(void);

struct coru_gen {
    struct coru__ctx ctx;       /* the generator's own context */
    struct coru__ctx *caller;   /* who to return to; valid while RUNNING */
    struct coru__stack *stack;  /* allocated on the first send */
    coru_gen_fn fn;
    void *arg;
    void *xfer;                 /* value passed by send/yield/return */
    size_t stack_size;
    uint64_t id;
    enum coru_gen_state state;
    bool closing;               /* a close is in progress: yield says -EPIPE */
    struct coru_gen *outer;     /* generator running when this one was resumed */
};

/* Depth of generator bodies running on this thread (coru__can_park). */
__thread int coru__gen_depth;
static __thread struct coru_gen *tls_gen; /* innermost running generator */

static void gen_entry(void *p)
{
    struct coru_gen *g = p;
    g->xfer = g->fn(g, g->arg);
    g->state = CORU_GEN_CLOSED;
    coru__ctx_switch_final(&g->ctx, g->caller);
}

int coru_gen_create(coru_gen **out, coru_gen_fn fn, void *arg, size_t stack_size)
{
    if (!out || !fn || stack_size > ((size_t)1 << 30)) return -EINVAL;
    struct coru_gen *g = coru__calloc(1, sizeof *g);
    if (!g) return -ENOMEM;
    g->fn = fn;
    g->arg = arg;
    g->stack_size = stack_size;
    g->id = coru__next_id();
    g->state = CORU_GEN_CREATED;
    *out = g;
    return 0;
}

/* Runs g until it yields or returns. */
static void resume(struct coru_gen *g)
{
    g->caller = coru__ctx_current();
    g->state = CORU_GEN_RUNNING;
    g->outer = tls_gen;
    tls_gen = g;
    coru__gen_depth++;
    coru__ctx_switch(g->caller, &g->ctx);
    coru__gen_depth--;
    tls_gen = g->outer;
    if (g->state == CORU_GEN_CLOSED) {
        /* The body returned: its context is gone for good. */
        coru__ctx_release(&g->ctx);
        coru__stack_free(NULL, g->stack);
        g->stack = NULL;
    }
}

static int start(struct coru_gen *g)
{
    int rc = coru__stack_alloc(NULL, g->stack_size, &g->stack);
    if (rc) return rc;
    g->stack->owner_id = g->id;
    coru__ctx_make(&g->ctx, g->stack, gen_entry, g);
    return 0;
}

int coru_gen_send(coru_gen *g, void *value, void **out)
{
    if (!g) return -EINVAL;
    switch (g->state) {
    case CORU_GEN_CLOSED:
        return -EPIPE;
    case CORU_GEN_RUNNING:
        return -EBUSY;
    case CORU_GEN_CREATED: {
        if (value) return -EINVAL; /* as Python: can't send non-None to a just-started generator */
        int rc = start(g);
        if (rc) return rc;
        break;
    }
    case CORU_GEN_SUSPENDED:
        break;
    }
    g->xfer = value;
    resume(g);
    if (out) *out = g->xfer;
    return g->state == CORU_GEN_CLOSED ? 0 : 1;
}

int coru_gen_yield(coru_gen *g, void *value, void **sent)
{
    if (!g) return -EINVAL;
    if (g != tls_gen || g->state != CORU_GEN_RUNNING) return -EPERM;
    g->xfer = value;
    g->state = CORU_GEN_SUSPENDED;
    coru__ctx_switch(&g->ctx, g->caller);
    /* resumed by send or close; resume() set RUNNING */
    if (g->closing) return -EPIPE;
    if (sent) *sent = g->xfer;
    return 0;
}

int coru_gen_close(coru_gen *g)
{
    if (!g) return -EINVAL;
    switch (g->state) {
    case CORU_GEN_CLOSED:
        return 0;
    case CORU_GEN_RUNNING:
        return -EBUSY;
    case CORU_GEN_CREATED:
        g->state = CORU_GEN_CLOSED;
        return 0;
    case CORU_GEN_SUSPENDED:
        break;
    }
    g->closing = true;
    g->xfer = NULL;
    resume(g);
    g->closing = false;
    return g->state == CORU_GEN_CLOSED ? 0 : -EPROTO;
}

enum coru_gen_state coru_gen_state(const coru_gen *g)
{
    return g ? g->state : CORU_GEN_CLOSED;
}

void coru_gen_destroy(coru_gen *g)
{
    if (!g) return;
    if (g->state == CORU_GEN_RUNNING)
        CORU_PANIC("generator %llu destroyed while running", (unsigned long long)g->id);
    if (g->state == CORU_GEN_SUSPENDED) (void)coru_gen_close(g);
    if (g->stack) {
        /* The body refused to finish: drop its context without running it. */
        coru__ctx_release(&g->ctx);
        coru__stack_free(NULL, g->stack);
    }
    free(g);
}
