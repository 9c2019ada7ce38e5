/* spawn_join.c - gevent's spawn and joinall in coru:
 *
 *     def task(n, delay):
 *         print(f"task {n} start")
 *         fetch(delay)                 # a request to a slow local server
 *         print(f"task {n} done")
 *
 *     gevent.joinall([gevent.spawn(task, 1, 0.3),
 *                     gevent.spawn(task, 2, 0.1),
 *                     gevent.spawn(task, 3, 0.2)])
 *     print("all tasks finished")
 *
 * The server is a coroutine too: it listens on 127.0.0.1 (a free port),
 * and a coroutine per connection reads the delay the request names,
 * sleeps that long and answers. The three tasks wait at the same time, so
 * they finish in the order of their delays (2, 3, 1) and the whole run
 * takes about 0.3 s, not 0.6 s. Exits non-zero on an unexpected return
 * code, or if it took 0.55 s or more. */
#include <arpa/inet.h>
#include <coru.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define MS INT64_C(1000000)
#define NTASKS 3

/* ------------------------------------------------------------ the server */

/* One request: a big-endian uint32 delay in ms; the answer is the same
 * four bytes, sent after that delay. */
static void *answer(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint32_t req;
    intptr_t failed = 1;
    if (coru_read_full(fd, &req, sizeof req, coru_now() + 2000 * MS) == (ssize_t)sizeof req &&
        coru_sleep((int64_t)ntohl(req) * MS) == 0 &&
        coru_write_all(fd, &req, sizeof req, coru_now() + 2000 * MS) == (ssize_t)sizeof req)
        failed = 0;
    coru_close(fd);
    return (void *)failed;
}

/* Answers NTASKS connections, each in its own coroutine. */
static void *server(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    coru_t *h[NTASKS];
    int n = 0;
    intptr_t failed = 0;
    while (n < NTASKS) {
        int fd = coru_tcp_accept_dl(lfd, NULL, NULL, coru_now() + 2000 * MS);
        if (fd < 0) {
            fprintf(stderr, "server: accept: %s\n", strerror(-fd));
            failed = 1;
            break;
        }
        int rc = coru_spawn(&h[n], answer, (void *)(intptr_t)fd, NULL);
        if (rc != 0) {
            fprintf(stderr, "server: spawn: %s\n", strerror(-rc));
            coru_close(fd);
            failed = 1;
            break;
        }
        n++;
    }
    for (int i = 0; i < n; i++) {
        void *res = NULL;
        if (coru_join(h[i], &res) != 0 || res != NULL) failed = 1;
    }
    coru_close(lfd);
    return (void *)failed;
}

/* ------------------------------------------------------------ the tasks */

struct task {
    int n;
    uint32_t delay_ms;
    uint16_t port;
};

static void *task(void *arg)
{
    struct task *t = arg;
    printf("task %d start (the server answers in %u ms)\n", t->n, (unsigned)t->delay_ms);
    int64_t t0 = coru_now();
    int fd = coru_tcp_connect("127.0.0.1", t->port, t0 + 1000 * MS);
    if (fd < 0) {
        fprintf(stderr, "task %d: connect: %s\n", t->n, strerror(-fd));
        return (void *)1;
    }
    uint32_t req = htonl(t->delay_ms), reply = 0;
    ssize_t w = coru_write_all(fd, &req, sizeof req, t0 + 1000 * MS);
    ssize_t r = coru_read_full(fd, &reply, sizeof reply, t0 + 1000 * MS);
    coru_close(fd);
    if (w != (ssize_t)sizeof req || r != (ssize_t)sizeof reply || reply != req) {
        fprintf(stderr, "task %d: request/answer failed (write %zd, read %zd)\n", t->n, w, r);
        return (void *)1;
    }
    printf("task %d done after %.0f ms\n", t->n, (double)(coru_now() - t0) / MS);
    return NULL;
}

static void *joinall(void *arg)
{
    int *failed = arg;
    int lfd = coru_tcp_listen("127.0.0.1", 0, 0, 0);
    int port = lfd >= 0 ? coru_local_port(lfd) : lfd;
    if (port < 0) {
        fprintf(stderr, "listen: %s\n", strerror(-port));
        *failed = 1;
        return NULL;
    }
    coru_t *srv;
    int rc = coru_spawn(&srv, server, (void *)(intptr_t)lfd, NULL);
    if (rc != 0) {
        fprintf(stderr, "coru_spawn: %s\n", strerror(-rc));
        *failed = 1;
        return NULL;
    }

    static struct task tasks[NTASKS] = {{1, 300, 0}, {2, 100, 0}, {3, 200, 0}};
    coru_t *h[NTASKS];
    int started = 0;
    int64_t t0 = coru_now();
    for (int i = 0; i < NTASKS; i++) { /* spawn */
        tasks[i].port = (uint16_t)port;
        rc = coru_spawn(&h[i], task, &tasks[i], NULL);
        if (rc != 0) {
            fprintf(stderr, "coru_spawn: %s\n", strerror(-rc));
            *failed = 1;
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++) { /* joinall */
        void *res = NULL;
        rc = coru_join(h[i], &res);
        if (rc != 0 || res != NULL) *failed = 1;
    }
    double elapsed = (double)(coru_now() - t0) / (1000 * MS);
    printf("all %d tasks finished in %.2f s\n", started, elapsed);

    void *res = NULL;
    /* (if a spawn failed, the server's accept deadline ends it) */
    if (coru_join(srv, &res) != 0 || res != NULL) *failed = 1;
    if (elapsed >= 0.55) {
        fprintf(stderr, "the tasks did not wait at the same time (%.2f s >= 0.55 s)\n", elapsed);
        *failed = 1;
    }
    return NULL;
}

int main(void)
{
    int failed = 0;
    int rc = coru_run(joinall, &failed, NULL);
    if (rc != 0) {
        fprintf(stderr, "coru_run: %s\n", strerror(-rc));
        return 1;
    }
    return failed;
}
