/* producer_consumer.c - the classic producer/consumer, this time as two
 * real coroutines talking over channels (compare producer_consumer_gen.c,
 * where the consumer is a generator driven by send):
 *
 *   Part 1: the producer sends n = 1..5 on an unbuffered channel; the
 *   consumer prints each one and answers "200 OK" on a second channel.
 *   Closing the item channel tells the consumer to stop (-EPIPE).
 *
 *   Part 2: 4 producers and 4 consumers share one buffered channel. A
 *   coru_waitgroup counts the producers; once it reaches 0 the channel is
 *   closed, the consumers drain it and stop, and the totals are checked.
 *
 * Exits non-zero on any unexpected return code or a wrong total. */
#include <coru.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static atomic_int failed; /* set by any coroutine on an unexpected code */

static int check(int rc, const char *what)
{
    if (rc >= 0) return 0;
    fprintf(stderr, "%s: %s\n", what, strerror(-rc));
    atomic_store(&failed, 1);
    return 1;
}

/* ---- Part 1: one producer, one consumer, a reply channel ---- */

struct pair {
    coru_chan *items;   /* int, unbuffered: producer -> consumer */
    coru_chan *replies; /* const char *, unbuffered: consumer -> producer */
};

static void *consumer(void *arg)
{
    struct pair *p = arg;
    for (;;) {
        int n;
        int rc = coru_chan_recv(p->items, &n);
        if (rc == -EPIPE) {
            printf("[CONSUMER] Closed, cleaning up\n");
            return NULL;
        }
        if (check(rc, "consumer: coru_chan_recv")) return NULL;
        printf("[CONSUMER] Consuming %d...\n", n);
        const char *reply = "200 OK";
        if (check(coru_chan_send(p->replies, &reply), "consumer: coru_chan_send")) return NULL;
    }
}

static void *producer(void *arg)
{
    struct pair *p = arg;
    for (int n = 1; n <= 5; n++) {
        printf("[PRODUCER] Producing %d...\n", n);
        if (check(coru_chan_send(p->items, &n), "producer: coru_chan_send")) break;
        const char *reply;
        if (check(coru_chan_recv(p->replies, &reply), "producer: coru_chan_recv")) break;
        printf("[PRODUCER] Consumer return: %s\n", reply);
    }
    /* Tell the consumer we are done (also on an error, so it never hangs). */
    check(coru_chan_close(p->items), "producer: coru_chan_close");
    return NULL;
}

static void part1(void)
{
    struct pair p;
    if (check(coru_chan_create(&p.items, sizeof(int), 0), "coru_chan_create")) return;
    if (check(coru_chan_create(&p.replies, sizeof(const char *), 0), "coru_chan_create")) {
        coru_chan_destroy(p.items);
        return;
    }
    coru_t *c, *pr;
    if (!check(coru_spawn(&c, consumer, &p, NULL), "coru_spawn(consumer)")) {
        if (!check(coru_spawn(&pr, producer, &p, NULL), "coru_spawn(producer)"))
            check(coru_join(pr, NULL), "coru_join(producer)");
        else
            coru_chan_close(p.items); /* let the consumer stop */
        check(coru_join(c, NULL), "coru_join(consumer)");
    }
    coru_chan_destroy(p.items);
    coru_chan_destroy(p.replies);
}

/* ---- Part 2: 4 producers, 4 consumers, one buffered channel ---- */

#define NPROD 4
#define NCONS 4
#define PER_PRODUCER 10000 /* producer p sends p*PER_PRODUCER .. (p+1)*PER_PRODUCER-1 */
#define CAPACITY 64

struct shared {
    coru_chan *ch;      /* int64_t, capacity CAPACITY */
    coru_waitgroup *wg; /* the producers still running */
};

struct prod_arg {
    struct shared *s;
    int64_t first;
};

struct cons_arg {
    struct shared *s;
    int64_t sum, count; /* read after the join */
};

static void *mp_producer(void *arg)
{
    struct prod_arg *a = arg;
    for (int64_t v = a->first; v < a->first + PER_PRODUCER; v++)
        if (check(coru_chan_send(a->s->ch, &v), "mp_producer: coru_chan_send")) break;
    check(coru_waitgroup_done(a->s->wg), "coru_waitgroup_done");
    return NULL;
}

static void *mp_consumer(void *arg)
{
    struct cons_arg *a = arg;
    for (;;) {
        int64_t v;
        int rc = coru_chan_recv(a->s->ch, &v);
        if (rc == -EPIPE) return NULL; /* closed and drained */
        if (check(rc, "mp_consumer: coru_chan_recv")) return NULL;
        a->sum += v;
        a->count++;
    }
}

static void part2(void)
{
    struct shared s;
    if (check(coru_chan_create(&s.ch, sizeof(int64_t), CAPACITY), "coru_chan_create")) return;
    if (check(coru_waitgroup_create(&s.wg), "coru_waitgroup_create")) {
        coru_chan_destroy(s.ch);
        return;
    }
    struct prod_arg pa[NPROD];
    struct cons_arg ca[NCONS];
    coru_t *ch[NCONS];
    int ncons = 0;
    for (int i = 0; i < NCONS; i++) {
        ca[i] = (struct cons_arg){.s = &s};
        if (check(coru_spawn(&ch[i], mp_consumer, &ca[i], NULL), "coru_spawn(consumer)")) break;
        ncons++;
    }
    if (ncons == NCONS && !check(coru_waitgroup_add(s.wg, NPROD), "coru_waitgroup_add")) {
        for (int i = 0; i < NPROD; i++) {
            pa[i] = (struct prod_arg){.s = &s, .first = (int64_t)i * PER_PRODUCER};
            if (check(coru_go(mp_producer, &pa[i], NULL), "coru_go(producer)"))
                coru_waitgroup_done(s.wg); /* never started: count it out */
        }
        check(coru_waitgroup_wait(s.wg), "coru_waitgroup_wait");
    }
    /* Every producer is done: close, and the consumers stop once drained. */
    check(coru_chan_close(s.ch), "coru_chan_close");
    int64_t sum = 0, count = 0;
    for (int i = 0; i < ncons; i++) {
        if (check(coru_join(ch[i], NULL), "coru_join(consumer)")) continue;
        printf("consumer %d received %lld items\n", i, (long long)ca[i].count);
        sum += ca[i].sum;
        count += ca[i].count;
    }
    const int64_t n = (int64_t)NPROD * PER_PRODUCER;
    printf("total received: %lld items, sum %lld (want %lld items, sum %lld)\n", (long long)count,
           (long long)sum, (long long)n, (long long)(n * (n - 1) / 2));
    if (count != n || sum != n * (n - 1) / 2) {
        fprintf(stderr, "wrong total\n");
        atomic_store(&failed, 1);
    }
    coru_waitgroup_destroy(s.wg);
    coru_chan_destroy(s.ch);
}

static void *run(void *arg)
{
    (void)arg;
    part1();
    printf("\n%d producers, %d consumers, one channel of %d:\n", NPROD, NCONS, CAPACITY);
    part2();
    return NULL;
}

int main(void)
{
    struct coru_opts opts = {.workers = 2};
    int rc = coru_run(run, NULL, &opts);
    if (rc != 0) {
        fprintf(stderr, "coru_run: %s\n", strerror(-rc));
        return 1;
    }
    return atomic_load(&failed) ? 1 : 0;
}
