/* echo_server.c - a TCP echo server, one coroutine per connection, that
 * shuts down cleanly on SIGINT or SIGTERM:
 *
 *     echo_server [port]       listens on 127.0.0.1:port (0, the default,
 *                              picks a free port) until SIGINT/SIGTERM
 *     echo_server --selftest   the same on a free port, plus a client
 *                              coroutine that echoes a few messages, keeps
 *                              its connection open, sends the process
 *                              SIGTERM and checks that the server closes it
 *
 * Shutdown: SIGINT and SIGTERM are blocked before coru_run starts the
 * workers (threads inherit the mask), and a plain thread takes them with
 * sigwait(). That thread cannot cancel coroutines it has no handle to,
 * but channels work from plain threads: it sends the signal number to a
 * 'shutdown' coroutine, which cancels the acceptor and then every
 * connection coroutine (their parked coru_read or coru_tcp_accept returns
 * -ECANCELED), joins them, closes the listener and returns. coru_run then
 * returns, and main exits 0. Exits 1 on an unexpected error. */
#include <coru.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MS INT64_C(1000000)

struct conn {
    coru_t *h;         /* the coroutine serving it */
    struct conn *next; /* owner: the acceptor, then (once it is joined) shutdown */
};

struct server {
    int lfd;
    uint16_t port;
    coru_chan *signals; /* int: a signal number, from the signal thread */
    coru_t *acceptor;
    struct conn *conns; /* connection coroutines not joined yet */
    int failed;
};

/* One connection: echo until the client closes it or we are cancelled. */
static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = coru_read(fd, buf, sizeof buf);
        if (n <= 0) break; /* 0: the client closed; -ECANCELED: shutdown */
        if (coru_write_all(fd, buf, (size_t)n, CORU_NEVER) < 0) break;
    }
    coru_close(fd);
    return NULL;
}

/* Joins the connection coroutines that have finished (a deadline already
 * past: join only what can be joined at once). */
static void reap(struct server *s)
{
    for (struct conn **p = &s->conns; *p;) {
        struct conn *c = *p;
        if (coru_join_dl(c->h, NULL, 0) == 0) {
            *p = c->next;
            free(c);
        } else {
            p = &c->next;
        }
    }
}

static void *acceptor(void *arg)
{
    struct server *s = arg;
    for (;;) {
        reap(s);
        int fd = coru_tcp_accept(s->lfd, NULL, NULL);
        if (fd == -ECANCELED) break; /* shutdown */
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
            /* out of fds or memory: back off; the connections we have go on */
            if (coru_sleep(100 * MS) == -ECANCELED) break;
            continue;
        }
        if (fd == -ECONNABORTED || fd == -EINTR) continue;
        if (fd < 0) {
            fprintf(stderr, "echo_server: accept: %s\n", strerror(-fd));
            s->failed = 1;
            break;
        }
        struct conn *c = malloc(sizeof *c);
        int rc = c ? coru_spawn(&c->h, serve, (void *)(intptr_t)fd, NULL) : -ENOMEM;
        if (rc != 0) {
            fprintf(stderr, "echo_server: spawn: %s\n", strerror(-rc));
            free(c);
            coru_close(fd);
            continue;
        }
        c->next = s->conns;
        s->conns = c;
    }
    return NULL;
}

static void *shutdown_on_signal(void *arg)
{
    struct server *s = arg;
    int sig = 0;
    int rc = coru_chan_recv(s->signals, &sig);
    if (rc == 0)
        printf("caught %s, shutting down\n", strsignal(sig));
    else
        fprintf(stderr, "echo_server: signal channel: %s\n", strerror(-rc));
    coru_cancel(s->acceptor);
    coru_join(s->acceptor, NULL); /* from here on the list is ours */
    int n = 0;
    for (struct conn *c = s->conns; c; c = c->next, n++) coru_cancel(c->h);
    while (s->conns) {
        struct conn *c = s->conns;
        s->conns = c->next;
        coru_join(c->h, NULL);
        free(c);
    }
    coru_close(s->lfd);
    printf("closed the listener; cancelled and joined %d connection coroutine%s\n", n, n == 1 ? "" : "s");
    return NULL;
}

/* --selftest: a client of our own server. */
static void *selftest(void *arg)
{
    struct server *s = arg;
    int fd = coru_tcp_connect("127.0.0.1", s->port, coru_now() + 5000 * MS);
    if (fd < 0) {
        fprintf(stderr, "selftest: connect: %s\n", strerror(-fd));
        s->failed = 1;
        kill(getpid(), SIGTERM);
        return NULL;
    }
    static const char *const msgs[] = {"hello", "echo", "from a coroutine", "bye"};
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        size_t n = strlen(msgs[i]);
        char buf[64] = {0};
        ssize_t w = coru_write_all(fd, msgs[i], n, coru_now() + 5000 * MS);
        ssize_t r = coru_read_full(fd, buf, n, coru_now() + 5000 * MS);
        if (w != (ssize_t)n || r != (ssize_t)n || memcmp(buf, msgs[i], n) != 0) {
            fprintf(stderr, "selftest: \"%s\" did not come back (write %zd, read %zd)\n", msgs[i], w, r);
            s->failed = 1;
            break;
        }
        printf("selftest: echoed \"%s\"\n", buf);
    }
    /* The connection stays open: shutting down must end its coroutine. */
    printf("selftest: sending SIGTERM\n");
    fflush(stdout);
    kill(getpid(), SIGTERM);
    char c;
    ssize_t r = coru_read_dl(fd, &c, 1, coru_now() + 5000 * MS);
    if (r != 0) {
        fprintf(stderr, "selftest: want EOF from the server's shutdown, got %zd\n", r);
        s->failed = 1;
    }
    coru_close(fd);
    return NULL;
}

static sigset_t stop_signals; /* SIGINT, SIGTERM */

/* A plain thread: takes SIGINT/SIGTERM and hands it to the shutdown
 * coroutine through the channel (a plain thread may send). */
static void *signal_thread_fn(void *arg)
{
    struct server *s = arg;
    int sig;
    if (sigwait(&stop_signals, &sig) == 0) coru_chan_send(s->signals, &sig);
    return NULL;
}

struct start {
    struct server *s;
    int selftest;
};

static void *server_main(void *arg)
{
    struct start *st = arg;
    struct server *s = st->s;
    int port = coru_local_port(s->lfd);
    if (port < 0) {
        fprintf(stderr, "echo_server: local port: %s\n", strerror(-port));
        s->failed = 1;
        return NULL;
    }
    s->port = (uint16_t)port;
    printf("listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    coru_t *down, *client = NULL;
    int rc = coru_spawn(&s->acceptor, acceptor, s, NULL);
    if (rc == 0) rc = coru_spawn(&down, shutdown_on_signal, s, NULL);
    if (rc == 0 && st->selftest) rc = coru_spawn(&client, selftest, s, NULL);
    if (rc != 0) { /* only the acceptor can be running: let the process end */
        fprintf(stderr, "echo_server: spawn: %s\n", strerror(-rc));
        exit(1);
    }
    coru_join(down, NULL);
    if (client) coru_join(client, NULL);
    return NULL;
}

int main(int argc, char **argv)
{
    int port = 0, self = 0;
    if (argc > 1 && strcmp(argv[1], "--selftest") == 0) {
        self = 1;
    } else if (argc > 1) {
        char *end;
        long p = strtol(argv[1], &end, 10);
        if (*end || end == argv[1] || p < 0 || p > 65535) {
            fprintf(stderr, "usage: echo_server [port | --selftest]\n");
            return 2;
        }
        port = (int)p;
    }

    struct server s = {0};
    s.lfd = coru_tcp_listen("127.0.0.1", (uint16_t)port, 0, 0);
    if (s.lfd < 0) {
        fprintf(stderr, "echo_server: listen on port %d: %s\n", port, strerror(-s.lfd));
        return 1;
    }
    int rc = coru_chan_create(&s.signals, sizeof(int), 1);
    if (rc != 0) {
        fprintf(stderr, "echo_server: channel: %s\n", strerror(-rc));
        return 1;
    }

    /* Block the signals in this thread before any other starts: the
     * workers and the signal thread inherit the mask, so only sigwait()
     * ever takes them. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    pthread_t sig_thread;
    if ((rc = pthread_create(&sig_thread, NULL, signal_thread_fn, &s)) != 0) {
        fprintf(stderr, "echo_server: pthread_create: %s\n", strerror(rc));
        return 1;
    }

    struct start st = {&s, self};
    rc = coru_run(server_main, &st, NULL);
    if (rc != 0) {
        fprintf(stderr, "echo_server: coru_run: %s\n", strerror(-rc));
        pthread_kill(sig_thread, SIGTERM); /* ends its sigwait */
        s.failed = 1;
    }
    pthread_join(sig_thread, NULL);
    coru_chan_destroy(s.signals);
    return s.failed;
}
