/* TCP and byte-stream I/O on top of the I/O core (io.h): listen, accept,
 * connect, read, write and their helpers, on io_uring, epoll, or a plain
 * thread. Each call has one shape: io_uring ops go to the ring; epoll and
 * plain threads try the non-blocking system call and wait for readiness
 * after EAGAIN. Sockets are written with MSG_NOSIGNAL, so a reset peer is
 * -EPIPE or -ECONNRESET, never SIGPIPE. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fail.h"
#include "io/io.h"
#include "sched/sched.h"

/* ---------------------------------------------------------------- addresses */

/* Parses a numeric host into *ss; NULL or "" is the IPv6 wildcard. */
static int parse_addr(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (!host || !*host) {
        a6->sin6_family = AF_INET6;
        a6->sin6_addr = in6addr_any;
        a6->sin6_port = htons(port);
        *len = sizeof *a6;
        return 0;
    }
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        *len = sizeof *a4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        *len = sizeof *a6;
        return 0;
    }
    return -EINVAL;
}

/* A non-blocking, close-on-exec socket of `type` for host:port, whose
 * address is left in *ss. The wildcard host is dual-stack (IPv6 with IPv4
 * mapped). Returns the fd or -errno. */
static int open_socket(const char *host, uint16_t port, int type, struct sockaddr_storage *ss, socklen_t *len)
{
    int rc = parse_addr(host, port, ss, len);
    if (rc) return rc;
    int fd = coru__socket(ss->ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    coru__io_forget_fd(fd); /* a reused number: drop stale state */
    int zero = 0;
    if (ss->ss_family == AF_INET6 && (!host || !*host)) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    return fd;
}

int coru_tcp_listen(const char *host, uint16_t port, int backlog, int flags)
{
    if (flags & ~CORU_REUSEPORT) return -EINVAL;
    struct sockaddr_storage ss;
    socklen_t len;
    int rc, fd = open_socket(host, port, SOCK_STREAM, &ss, &len);
    if (fd < 0) return fd;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) goto fail;
    if ((flags & CORU_REUSEPORT) && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) goto fail;
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) goto fail;
    if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0) goto fail;
    return fd;
fail:
    rc = -errno;
    close(fd);
    return rc;
}

int coru_local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -errno;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}

int coru_tcp_nodelay(int fd, int on)
{
    on = !!on;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) < 0 ? -errno : 0;
}

/* ---------------------------------------------------------------- ops */

/* One operation in both shapes: prep fills an SQE (io_uring); sys runs
 * the non-blocking call (epoll, plain threads) and returns -errno. */
struct op {
    int fd;
    int dir;
    void *buf;
    size_t n;
    struct sockaddr *addr;
    socklen_t *alen;
    socklen_t alen_val;
    bool sock;
    bool probe;         /* sock is to be looked up (run(), under the use) */
    const struct iovec *iov;
    int iovcnt;
    struct msghdr msg;
};

static long sys_write(struct op *o);
static long sys_read(struct op *o);
static long sys_writev(struct op *o);

/* SIGPIPE. A write to a pipe or FIFO whose reader has gone raises
 * SIGPIPE on the writing thread (sockets are written with MSG_NOSIGNAL
 * and never do). Workers run with SIGPIPE blocked (run.c), so there it
 * stays pending on the thread, harmlessly, and the write returns -EPIPE;
 * io-wq threads block every signal. A plain thread is the application's:
 * its write of a non-socket blocks SIGPIPE around the one system call
 * and takes back a SIGPIPE that call raised (not one already pending), as
 * libpq does; its mask is restored before returning. */
static long plain_write_nosigpipe(long (*sys)(struct op *), struct op *o)
{
    struct coru__sigpipe g;
    coru__sigpipe_hold(&g);
    long r = sys(o);
    coru__sigpipe_release(&g, r == -EPIPE);
    return r;
}

static int run_once(struct op *o, coru__prep_fn prep, long (*sys)(struct op *), int64_t deadline);

/* One call. The socket-or-not fact is cached per fd number; a number
 * closed with a plain close(2) and reused for a pipe would make a socket
 * call fail with -ENOTSOCK: then it is looked up again and the call
 * retried as the file it is. */
static int run(struct op *o, coru__prep_fn prep, long (*sys)(struct op *), int64_t deadline)
{
    if (o->fd < 0) return -EBADF;
    /* A coroutine's call holds a use of the fd throughout (io.h); a plain
     * thread's holds one around each system call (sys_use), not across
     * poll(2), which a close could not interrupt. */
    bool co = coru__io_engine() != NULL;
    int rc;
    if (co && (rc = coru__fd_use(o->fd))) return rc;
    if (o->probe) { /* fstat(2) under the use too: never against a closing fd */
        if (!co && (rc = coru__fd_use(o->fd))) return rc;
        o->sock = coru__fd_is_socket(o->fd);
        if (!co) coru__fd_unuse(o->fd);
    }
    int r = run_once(o, prep, sys, deadline);
    if (r == -ENOTSOCK && o->sock && (sys == sys_read || sys == sys_write || sys == sys_writev) &&
        !coru__fd_reprobe(o->fd)) {
        o->sock = false;
        r = run_once(o, prep, sys, deadline);
    }
    if (co) coru__fd_unuse(o->fd);
    return r;
}

/* A plain thread's system call, under a use of the fd. */
static long sys_use(long (*sys)(struct op *), struct op *o)
{
    int rc = coru__fd_use(o->fd);
    if (rc) return rc;
    long r = sys(o);
    coru__fd_unuse(o->fd);
    return r;
}

static int run_once(struct op *o, coru__prep_fn prep, long (*sys)(struct op *), int64_t deadline)
{
    struct coru__engine *e = coru__io_engine();
    if (coru__gen_depth > 0) return -EPERM;
    if (!e && !o->sock && (sys == sys_write || sys == sys_writev)) {
        /* A plain thread: the non-blocking-then-poll loop below, with
         * each write guarded against SIGPIPE. */
        for (;;) {
            int rc = coru__fd_use(o->fd);
            if (rc) return rc;
            long r = plain_write_nosigpipe(sys, o);
            coru__fd_unuse(o->fd);
            if (r != -EAGAIN) return (int)r;
            rc = coru__io_wait_fd(NULL, o->fd, o->dir, deadline);
            if (rc) return rc;
        }
    }
    if (e && e->head.kind == CORU__ENGINE_URING) {
        /* Try the system call first where that is the whole job or the
         * only chance: a socket write usually fits the send buffer (one
         * non-blocking send saves a trip through the ring and a park); a
         * deadline already past or a cancelled caller means "try once",
         * as on epoll (what can complete at once still does; the ring
         * path alone would return -ETIMEDOUT or -ECANCELED untried). */
        if ((o->sock && o->dir == CORU__IO_WRITE && sys == sys_write) || coru__dl_passed(deadline) ||
            coru__self_cancelled()) {
            long r = sys(o);
            if (r != -EAGAIN) return (int)r;
        }
        return coru__io_uring_op(e, o->fd, prep, o, deadline);
    }
    /* A socket whose last read came back short was drained then, and
     * edge-triggered epoll reports any byte that arrived since (as a wake
     * or as rd_ready, which makes the wait return at once): wait first
     * and save the read that would only say EAGAIN. Not once EOF or an
     * error was seen (rd_hup): those stay pending in the socket and no
     * later edge reports them again, so the read must be tried (a reader
     * parked here would wait forever for the 0 of EOF). A relaxed load
     * suffices: the edge that set rd_hup either woke this reader (the
     * wake's release/acquire publishes it) or left rd_ready set, which
     * the wait below finds at once. Nor when the call may not wait (a
     * past deadline, a cancelled caller): it tries once. */
    struct coru__fdstate *fs = NULL;
    bool wait_first = false;
    if (e && o->sock && sys == sys_read && (fs = coru__fdstate(o->fd)))
        wait_first = atomic_load_explicit(&fs->rd_drained, memory_order_relaxed) &&
                     !atomic_load_explicit(&fs->rd_hup, memory_order_relaxed) && !coru__dl_passed(deadline) &&
                     !coru__self_cancelled();
    for (;;) {
        if (!wait_first) {
            long r = e ? sys(o) : sys_use(sys, o);
            if (r != -EAGAIN) {
                if (fs) atomic_store_explicit(&fs->rd_drained, r > 0 && (size_t)r < o->n, memory_order_relaxed);
                return (int)r;
            }
        }
        wait_first = false;
        int rc = coru__io_wait_fd(e, o->fd, o->dir, deadline);
        if (rc) return rc;
    }
}

static void prep_read(struct io_uring_sqe *sqe, void *ctx)
{
    struct op *o = ctx;
    if (o->sock)
        io_uring_prep_recv(sqe, o->fd, o->buf, o->n, 0);
    else
        io_uring_prep_read(sqe, o->fd, o->buf, (unsigned)o->n, (uint64_t)-1);
}

static long sys_read(struct op *o)
{
    ssize_t r = o->sock ? recv(o->fd, o->buf, o->n, 0) : read(o->fd, o->buf, o->n);
    return r < 0 ? -errno : r;
}

static void prep_write(struct io_uring_sqe *sqe, void *ctx)
{
    struct op *o = ctx;
    if (o->sock)
        io_uring_prep_send(sqe, o->fd, o->buf, o->n, MSG_NOSIGNAL);
    else
        io_uring_prep_write(sqe, o->fd, o->buf, (unsigned)o->n, (uint64_t)-1);
}

static long sys_write(struct op *o)
{
    ssize_t r = o->sock ? send(o->fd, o->buf, o->n, MSG_NOSIGNAL | MSG_DONTWAIT) : write(o->fd, o->buf, o->n);
    return r < 0 ? -errno : r;
}

static size_t clamp(size_t n)
{
    return n > 0x7ffff000 ? 0x7ffff000 : n; /* what read(2) transfers at most */
}

ssize_t coru_read_dl(int fd, void *buf, size_t n, int64_t deadline)
{
    if (!buf && n) return -EFAULT;
    if (fd < 0) return -EBADF;
    /* As read(2): a zero-length read returns 0 (or the fd's error) at
     * once, without waiting for readiness; read(2) with 0 bytes never
     * blocks, whatever the fd. */
    if (n == 0) return read(fd, buf, 0) < 0 ? -errno : 0;
    struct op o = {.fd = fd, .dir = CORU__IO_READ, .buf = buf, .n = clamp(n), .probe = true};
    return run(&o, prep_read, sys_read, deadline);
}

ssize_t coru_read(int fd, void *buf, size_t n)
{
    return coru_read_dl(fd, buf, n, CORU_NEVER);
}

ssize_t coru_write_dl(int fd, const void *buf, size_t n, int64_t deadline)
{
    if (!buf && n) return -EFAULT;
    struct op o = {.fd = fd, .dir = CORU__IO_WRITE, .buf = (void *)buf, .n = clamp(n), .probe = true};
    /* Zero bytes: one attempt (never waits), as write(2) does. */
    if (n == 0 && fd >= 0) {
        if (coru__gen_depth > 0) return -EPERM;
        int rc = coru__fd_use(fd);
        if (rc) return rc;
        o.sock = coru__fd_is_socket(fd);
        long r = coru__io_engine() || o.sock ? sys_write(&o) : plain_write_nosigpipe(sys_write, &o);
        coru__fd_unuse(fd);
        return r;
    }
    return run(&o, prep_write, sys_write, deadline);
}

ssize_t coru_write(int fd, const void *buf, size_t n)
{
    return coru_write_dl(fd, buf, n, CORU_NEVER);
}

ssize_t coru_read_full(int fd, void *buf, size_t n, int64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = coru_read_dl(fd, (char *)buf + got, n - got, deadline);
        if (r < 0) return r;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

ssize_t coru_write_all(int fd, const void *buf, size_t n, int64_t deadline)
{
    size_t put = 0;
    while (put < n) {
        ssize_t r = coru_write_dl(fd, (const char *)buf + put, n - put, deadline);
        if (r < 0) return r;
        put += (size_t)r;
    }
    return (ssize_t)put;
}

static void prep_accept(struct io_uring_sqe *sqe, void *ctx)
{
    struct op *o = ctx;
    io_uring_prep_accept(sqe, o->fd, o->addr, o->alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

static long sys_accept(struct op *o)
{
    int r = coru__accept4(o->fd, o->addr, o->alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return r < 0 ? -errno : r;
}

int coru_tcp_accept_dl(int lfd, struct sockaddr *peer, unsigned *peerlen, int64_t deadline)
{
    struct sockaddr_storage tmp;
    struct op o = {.fd = lfd, .dir = CORU__IO_READ};
    if (peer && peerlen) {
        o.addr = peer;
        o.alen_val = *peerlen;
    } else {
        o.addr = (struct sockaddr *)&tmp;
        o.alen_val = sizeof tmp;
    }
    o.alen = &o.alen_val;
    struct coru__engine *e = coru__io_engine();
    if (e && e->head.kind == CORU__ENGINE_URING && e->u.multishot_accept && lfd >= 0) {
        /* One multishot per listener (accept.c); it gives no addresses. */
        int fd = coru__msa_accept(e, lfd, deadline);
        if (fd != -ENOSYS) {
            if (fd >= 0) {
                coru__io_forget_fd(fd);
                if (peer && peerlen) {
                    socklen_t len = *peerlen;
                    *peerlen = getpeername(fd, peer, &len) == 0 ? len : 0;
                }
            }
            return fd;
        }
    }
    int fd = run(&o, prep_accept, sys_accept, deadline);
    if (fd >= 0) {
        coru__io_forget_fd(fd); /* a reused number: drop any stale state */
        if (peer && peerlen) *peerlen = o.alen_val;
    }
    return fd;
}

int coru_tcp_accept(int lfd, struct sockaddr *peer, unsigned *peerlen)
{
    return coru_tcp_accept_dl(lfd, peer, peerlen, CORU_NEVER);
}

static void prep_connect(struct io_uring_sqe *sqe, void *ctx)
{
    struct op *o = ctx;
    io_uring_prep_connect(sqe, o->fd, o->addr, o->alen_val);
}

/* epoll: the first call starts the connect, later ones read its result. */
static long sys_connect(struct op *o)
{
    if (o->n == 0) {
        o->n = 1;
        if (connect(o->fd, o->addr, o->alen_val) == 0) return 0;
        return errno == EINPROGRESS ? -EAGAIN : -errno;
    }
    int err = 0;
    socklen_t l = sizeof err;
    if (getsockopt(o->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0) return -errno;
    if (err == 0) {
        /* writable with no error: connected, unless still in progress */
        struct sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        if (getpeername(o->fd, (struct sockaddr *)&peer, &pl) == 0) return 0;
        return errno == ENOTCONN ? -EAGAIN : -errno;
    }
    return -err;
}

int coru_tcp_connect(const char *host, uint16_t port, int64_t deadline)
{
    if (!host || !*host) return -EINVAL;
    struct sockaddr_storage ss;
    socklen_t len;
    int rc, fd = open_socket(host, port, SOCK_STREAM, &ss, &len);
    if (fd < 0) return fd;
    struct op o = {.fd = fd, .dir = CORU__IO_WRITE, .addr = (struct sockaddr *)&ss, .alen_val = len};
    rc = run(&o, prep_connect, sys_connect, deadline);
    if (rc < 0) {
        coru_close(fd);
        return rc;
    }
    return fd;
}

/* ---------------------------------------------------------------- vectors */

static void prep_readv(struct io_uring_sqe *sqe, void *ctx)
{
    struct op *o = ctx;
    io_uring_prep_readv(sqe, o->fd, o->iov, (unsigned)o->iovcnt, (uint64_t)-1);
}

static long sys_readv(struct op *o)
{
    ssize_t r = readv(o->fd, o->iov, o->iovcnt);
    return r < 0 ? -errno : r;
}

/* Sockets go through sendmsg, so that MSG_NOSIGNAL applies. */
static void prep_writev(struct io_uring_sqe *sqe, void *ctx)
{
    struct op *o = ctx;
    if (o->sock)
        io_uring_prep_sendmsg(sqe, o->fd, &o->msg, MSG_NOSIGNAL);
    else
        io_uring_prep_writev(sqe, o->fd, o->iov, (unsigned)o->iovcnt, (uint64_t)-1);
}

static long sys_writev(struct op *o)
{
    ssize_t r = o->sock ? sendmsg(o->fd, &o->msg, MSG_NOSIGNAL | MSG_DONTWAIT) : writev(o->fd, o->iov, o->iovcnt);
    return r < 0 ? -errno : r;
}

static int vec_op(int fd, const struct iovec *iov, int iovcnt, int dir, int64_t deadline)
{
    if ((!iov && iovcnt) || iovcnt < 0 || iovcnt > IOV_MAX) return -EINVAL;
    struct op o = {.fd = fd, .dir = dir, .iov = iov, .iovcnt = iovcnt, .probe = true};
    o.msg.msg_iov = (struct iovec *)iov;
    o.msg.msg_iovlen = (size_t)iovcnt;
    return dir == CORU__IO_READ ? run(&o, prep_readv, sys_readv, deadline) : run(&o, prep_writev, sys_writev, deadline);
}

ssize_t coru_readv(int fd, const struct iovec *iov, int iovcnt, int64_t deadline)
{
    return vec_op(fd, iov, iovcnt, CORU__IO_READ, deadline);
}

ssize_t coru_writev(int fd, const struct iovec *iov, int iovcnt, int64_t deadline)
{
    return vec_op(fd, iov, iovcnt, CORU__IO_WRITE, deadline);
}

/* ---------------------------------------------------------------- poll */

static void prep_poll(struct io_uring_sqe *sqe, void *ctx)
{
    struct op *o = ctx;
    io_uring_prep_poll_add(sqe, o->fd, o->dir == CORU__IO_READ ? POLLIN : POLLOUT);
}

/* Readiness now, without waiting: the revents mask or -EAGAIN. */
static long sys_poll(struct op *o)
{
    struct pollfd p = {.fd = o->fd, .events = (short)(o->dir == CORU__IO_READ ? POLLIN : POLLOUT)};
    int r = poll(&p, 1, 0);
    if (r < 0) return -errno;
    if (r == 0) return -EAGAIN;
    if (p.revents & POLLNVAL) return -EBADF;
    return p.revents;
}

int coru_poll(int fd, short events, int64_t deadline)
{
    if (events != POLLIN && events != POLLOUT) return -EINVAL;
    struct op o = {.fd = fd, .dir = events == POLLIN ? CORU__IO_READ : CORU__IO_WRITE};
    return run(&o, prep_poll, sys_poll, deadline);
}

/* ---------------------------------------------------------------- UDP */

int coru_udp_bind(const char *host, uint16_t port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc, fd = open_socket(host, port, SOCK_DGRAM, &ss, &len);
    if (fd < 0) return fd;
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

static void prep_sendmsg(struct io_uring_sqe *sqe, void *ctx)
{
    struct op *o = ctx;
    io_uring_prep_sendmsg(sqe, o->fd, &o->msg, MSG_NOSIGNAL);
}

static long sys_sendmsg(struct op *o)
{
    ssize_t r = sendmsg(o->fd, &o->msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    return r < 0 ? -errno : r;
}

static void prep_recvmsg(struct io_uring_sqe *sqe, void *ctx)
{
    struct op *o = ctx;
    io_uring_prep_recvmsg(sqe, o->fd, &o->msg, 0);
}

static long sys_recvmsg(struct op *o)
{
    ssize_t r = recvmsg(o->fd, &o->msg, MSG_DONTWAIT);
    return r < 0 ? -errno : r;
}

ssize_t coru_sendto(int fd, const void *buf, size_t n, const struct sockaddr *addr, unsigned addrlen,
                    int64_t deadline)
{
    if (!buf && n) return -EFAULT;
    struct iovec v = {.iov_base = (void *)buf, .iov_len = n};
    struct op o = {.fd = fd, .dir = CORU__IO_WRITE, .sock = true};
    o.msg.msg_name = (void *)addr;
    o.msg.msg_namelen = addr ? addrlen : 0;
    o.msg.msg_iov = &v;
    o.msg.msg_iovlen = 1;
    return run(&o, prep_sendmsg, sys_sendmsg, deadline);
}

ssize_t coru_recvfrom(int fd, void *buf, size_t n, struct sockaddr *addr, unsigned *addrlen, int64_t deadline)
{
    if (!buf && n) return -EFAULT;
    struct iovec v = {.iov_base = buf, .iov_len = n};
    struct op o = {.fd = fd, .dir = CORU__IO_READ, .sock = true};
    if (addr && addrlen) {
        o.msg.msg_name = addr;
        o.msg.msg_namelen = *addrlen;
    }
    o.msg.msg_iov = &v;
    o.msg.msg_iovlen = 1;
    int r = run(&o, prep_recvmsg, sys_recvmsg, deadline);
    if (r >= 0 && addr && addrlen) *addrlen = o.msg.msg_namelen;
    return r;
}

int coru_shutdown(int fd, int how)
{
    return shutdown(fd, how) < 0 ? -errno : 0;
}

int coru_close(int fd)
{
    if (fd < 0) return -EBADF;
    return coru__io_close_fd(fd);
}
