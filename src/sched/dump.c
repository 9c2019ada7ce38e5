/* coru_dump: the registry written out, one line per coroutine or grouped
 * by (state, wait, spawn site). Used by coru_dump, the dump signal and
 * the deadlock report (monitor.c).
 *
 * Invariants: the walk copies the registry under its mutex into a private
 * array (no system call, no symbol lookup while it is held), and
 * everything slow (dladdr, formatting, write) happens after, on that
 * copy. A dump never parks and never touches a coroutine's memory beyond
 * its registry slot.
 */

#include <dlfcn.h>
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fail.h"
#include "sched/dump.h"
#include "sched/rt.h"
#include "sched/sched.h"

struct snap {
    struct coru__reg_entry *v;
    size_t n, cap;
    bool oom;
};

static void collect(const struct coru__reg_entry *e, void *ctx)
{
    struct snap *s = ctx;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        struct coru__reg_entry *v = coru__realloc(s->v, cap * sizeof *v);
        if (!v) {
            s->oom = true;
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = *e;
}

/* An output buffer flushed to fd with write(2). */
struct out {
    int fd, err;
    size_t len;
    char buf[8192];
};

static void flush(struct out *o)
{
    size_t off = 0;
    while (off < o->len && !o->err) {
        ssize_t w = write(o->fd, o->buf + off, o->len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            o->err = -errno;
        } else {
            off += (size_t)w;
        }
    }
    o->len = 0;
}

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = sizeof line - 1;
    if (o->len + (size_t)n > sizeof o->buf) flush(o);
    memcpy(o->buf + o->len, line, (size_t)n);
    o->len += (size_t)n;
}

void coru__symbolize(uintptr_t pc, char *out, size_t n)
{
    Dl_info di;
    if (pc && dladdr((void *)pc, &di) && di.dli_fname) {
        const char *obj = strrchr(di.dli_fname, '/');
        obj = obj ? obj + 1 : di.dli_fname;
        if (di.dli_sname)
            snprintf(out, n, "%s+0x%lx (%s)", di.dli_sname, (unsigned long)(pc - (uintptr_t)di.dli_saddr), obj);
        else
            snprintf(out, n, "0x%lx (%s+0x%lx)", (unsigned long)pc, obj,
                     (unsigned long)(pc - (uintptr_t)di.dli_fbase));
    } else {
        snprintf(out, n, "0x%lx", (unsigned long)pc);
    }
}

static const char *const kind_name[CORU__W_NKINDS] = {
    [CORU__W_NONE] = "nothing",   [CORU__W_CHAN_SEND] = "chan send", [CORU__W_CHAN_RECV] = "chan recv",
    [CORU__W_SELECT] = "select",  [CORU__W_SLEEP] = "sleep",         [CORU__W_JOIN] = "join",
    [CORU__W_MUTEX] = "mutex",    [CORU__W_COND] = "cond",           [CORU__W_SEMA] = "sema",
    [CORU__W_WAITGROUP] = "waitgroup", [CORU__W_IO] = "io",          [CORU__W_POOL] = "blocking pool",
    [CORU__W_EXITED] = "exited",
};

enum { ST_RUNNING, ST_RUNNABLE, ST_PARKED };

static int state_of(const struct coru__reg_entry *e)
{
    if (e->worker >= 0) return ST_RUNNING;
    return e->pstate == CO_PARKING || e->pstate == CO_PARKED ? ST_PARKED : ST_RUNNABLE;
}

/* What a parked coroutine waits for, in a few words. grouped: without
 * the addresses and times that differ between members of a group. */
static void wait_text(const struct coru__reg_entry *e, int64_t now, bool grouped, char *b, size_t n)
{
    const char *k = e->kind >= 0 && e->kind < CORU__W_NKINDS ? kind_name[e->kind] : "?";
    char sym[256];
    size_t len = 0;
    switch (e->kind) {
    case CORU__W_SLEEP:
        if (e->until < 0)
            len = (size_t)snprintf(b, n, "sleep forever");
        else if (grouped)
            len = (size_t)snprintf(b, n, "sleep");
        else
            len = (size_t)snprintf(b, n, "sleep, %.3f s left", (double)(e->until - now) / 1e9);
        return;
    case CORU__W_JOIN:
        len = grouped ? (size_t)snprintf(b, n, "join") : (size_t)snprintf(b, n, "join coroutine %lld", (long long)e->wait_arg);
        break;
    case CORU__W_IO:
        len = grouped ? (size_t)snprintf(b, n, "io %s", e->wait_obj ? (const char *)e->wait_obj : "?")
                      : (size_t)snprintf(b, n, "io %s fd %lld", e->wait_obj ? (const char *)e->wait_obj : "?",
                                         (long long)e->wait_arg);
        break;
    case CORU__W_POOL:
        coru__symbolize(e->wait_obj, sym, sizeof sym);
        len = (size_t)snprintf(b, n, "blocking pool running %s", sym);
        break;
    case CORU__W_SELECT:
        len = grouped ? (size_t)snprintf(b, n, "select")
                      : (size_t)snprintf(b, n, "select of %lld cases, first %#lx", (long long)e->wait_arg,
                                         (unsigned long)e->wait_obj);
        break;
    default:
        len = grouped || !e->wait_obj ? (size_t)snprintf(b, n, "%s", k)
                                      : (size_t)snprintf(b, n, "%s %#lx", k, (unsigned long)e->wait_obj);
        break;
    }
    if (!grouped && e->until >= 0 && len < n)
        snprintf(b + len, n - len, ", deadline in %.3f s", (double)(e->until - now) / 1e9);
}

/* The function a coroutine runs: its name alone, or the address. */
static void fn_name(uintptr_t fn, char *out, size_t n)
{
    Dl_info di;
    if (fn && dladdr((void *)fn, &di) && di.dli_sname && (uintptr_t)di.dli_saddr == fn)
        snprintf(out, n, "%s", di.dli_sname);
    else
        coru__symbolize(fn, out, n);
}

static void line(struct out *o, const struct coru__reg_entry *e, int64_t now)
{
    char site[256], wait[320], nm[40 + 256] = "", fn[256];
    coru__symbolize(e->site, site, sizeof site);
    fn_name(e->fn, fn, sizeof fn);
    if (e->name[0])
        snprintf(nm, sizeof nm, " \"%s\" [%s]", e->name, fn);
    else
        snprintf(nm, sizeof nm, " [%s]", fn);
    switch (state_of(e)) {
    case ST_RUNNING:
        put(o, "coroutine %llu%s running on worker %d; parent %llu; spawned at %s\n", (unsigned long long)e->id, nm,
            e->worker, (unsigned long long)e->parent, site);
        break;
    case ST_RUNNABLE:
        put(o, "coroutine %llu%s runnable; parent %llu; spawned at %s\n", (unsigned long long)e->id, nm,
            (unsigned long long)e->parent, site);
        break;
    default:
        wait_text(e, now, false, wait, sizeof wait);
        put(o, "coroutine %llu%s parked %.2f s: %s; parent %llu; spawned at %s\n", (unsigned long long)e->id, nm,
            (double)(now > e->since ? now - e->since : 0) / 1e9, wait, (unsigned long long)e->parent, site);
    }
}

/* Group order: state, kind, the io operation's name, site. */
static int cmp_key(const struct coru__reg_entry *x, const struct coru__reg_entry *y)
{
    int sx = state_of(x), sy = state_of(y);
    if (sx != sy) return sx - sy;
    int kx = sx == ST_PARKED ? x->kind : 0, ky = sy == ST_PARKED ? y->kind : 0;
    if (kx != ky) return kx - ky;
    if (kx == CORU__W_IO && x->wait_obj != y->wait_obj) return x->wait_obj < y->wait_obj ? -1 : 1;
    if (kx == CORU__W_POOL && x->wait_obj != y->wait_obj) return x->wait_obj < y->wait_obj ? -1 : 1;
    if (kx == CORU__W_SLEEP && (x->until < 0) != (y->until < 0)) return x->until < 0 ? -1 : 1;
    if (x->site != y->site) return x->site < y->site ? -1 : 1;
    return 0;
}

/* Within a group, by id. */
static int cmp_group(const void *a, const void *b)
{
    const struct coru__reg_entry *x = a, *y = b;
    int c = cmp_key(x, y);
    return c ? c : x->id < y->id ? -1 : x->id > y->id;
}

struct group {
    size_t first, count;
};

static int cmp_count(const void *a, const void *b)
{
    const struct group *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->first < y->first ? -1 : 1;
}

static void grouped(struct out *o, struct coru__reg_entry *v, size_t n, int64_t now)
{
    qsort(v, n, sizeof *v, cmp_group);
    struct group *g = coru__malloc((n ? n : 1) * sizeof *g);
    if (!g) {
        o->err = -ENOMEM;
        return;
    }
    size_t ng = 0;
    for (size_t i = 0; i < n; i++) {
        if (ng && cmp_key(&v[g[ng - 1].first], &v[i]) == 0) {
            g[ng - 1].count++;
        } else {
            g[ng].first = i;
            g[ng].count = 1;
            ng++;
        }
    }
    qsort(g, ng, sizeof *g, cmp_count);
    for (size_t k = 0; k < ng; k++) {
        const struct coru__reg_entry *e = &v[g[k].first];
        char site[256], wait[320], ids[96];
        coru__symbolize(e->site, site, sizeof site);
        size_t len = 0;
        for (size_t i = 0; i < g[k].count && i < 5 && len < sizeof ids; i++)
            len += (size_t)snprintf(ids + len, sizeof ids - len, " %llu", (unsigned long long)v[g[k].first + i].id);
        const char *more = g[k].count > 5 ? " ..." : "";
        switch (state_of(e)) {
        case ST_RUNNING:
            put(o, "%zu x running; spawned at %s; e.g.%s%s\n", g[k].count, site, ids, more);
            break;
        case ST_RUNNABLE:
            put(o, "%zu x runnable; spawned at %s; e.g.%s%s\n", g[k].count, site, ids, more);
            break;
        default:
            wait_text(e, now, true, wait, sizeof wait);
            put(o, "%zu x parked: %s; spawned at %s; e.g.%s%s\n", g[k].count, wait, site, ids, more);
        }
    }
    free(g);
}

int coru__dump_to(int fd, int flags, const char *title)
{
    struct coru_co *cur[256];
    const char *engine;
    unsigned nw = coru__sched_current(cur, &engine);
    if (!nw) return -EPERM;
    struct snap s = {0};
    coru__reg_walk(collect, &s, cur, nw);
    if (s.oom) {
        free(s.v);
        return -ENOMEM;
    }
    int64_t now = coru__coarse_ns();
    struct out *o = coru__malloc(sizeof *o);
    if (!o) {
        free(s.v);
        return -ENOMEM;
    }
    o->fd = fd;
    o->err = 0;
    o->len = 0;
    size_t parked = 0;
    for (size_t i = 0; i < s.n; i++) parked += state_of(&s.v[i]) == ST_PARKED;
    if (title) put(o, "%s\n", title);
    put(o, "coru: %zu coroutine%s (%zu parked) on %u worker%s (%s)%s\n", s.n, s.n == 1 ? "" : "s", parked, nw,
        nw == 1 ? "" : "s", engine,
        flags & CORU_DUMP_GROUPED ? ", grouped by state, wait and spawn site" : "");
    if (flags & CORU_DUMP_GROUPED) {
        grouped(o, s.v, s.n, now);
    } else {
        for (size_t i = 0; i < s.n; i++) line(o, &s.v[i], now);
    }
    flush(o);
    int rc = o->err ? o->err : (int)(s.n > INT32_MAX ? INT32_MAX : s.n);
    free(o);
    free(s.v);
    return rc;
}

int coru_dump(int fd, int flags)
{
    if (fd < 0 || (flags & ~CORU_DUMP_GROUPED)) return -EINVAL;
    return coru__dump_to(fd, flags, NULL);
}
