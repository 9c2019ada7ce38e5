/* Files: with io_uring, real asynchronous open, pread, pwrite and fsync
 * on the worker's ring (deadlines as linked timeouts); with epoll
 * (regular files are never "ready"), the same system calls in the
 * blocking pool (a deadline only while the call waits for a thread); in
 * a plain thread, the system calls themselves. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "io/io.h"
#include "sched/sched.h"

enum { F_OPEN, F_PREAD, F_PWRITE, F_FSYNC };

struct fop {
    int kind;
    int fd;
    const char *path;
    int flags;
    unsigned mode;
    void *buf;
    size_t n;
    int64_t off;
    long res;
};

static void prep_fop(struct io_uring_sqe *sqe, void *ctx)
{
    struct fop *f = ctx;
    switch (f->kind) {
    case F_OPEN:
        io_uring_prep_openat(sqe, AT_FDCWD, f->path, f->flags, f->mode);
        break;
    case F_PREAD:
        io_uring_prep_read(sqe, f->fd, f->buf, (unsigned)f->n, (uint64_t)f->off);
        break;
    case F_PWRITE:
        io_uring_prep_write(sqe, f->fd, f->buf, (unsigned)f->n, (uint64_t)f->off);
        break;
    default:
        io_uring_prep_fsync(sqe, f->fd, 0);
        break;
    }
}

/* The plain system call; also what the blocking pool runs. */
static void *sys_fop(void *ctx)
{
    struct fop *f = ctx;
    long r;
    switch (f->kind) {
    case F_OPEN:
        r = open(f->path, f->flags, (mode_t)f->mode);
        break;
    case F_PREAD:
        r = pread(f->fd, f->buf, f->n, (off_t)f->off);
        break;
    case F_PWRITE:
        r = pwrite(f->fd, f->buf, f->n, (off_t)f->off);
        break;
    default:
        r = fsync(f->fd);
        break;
    }
    f->res = r < 0 ? -errno : r;
    return NULL;
}

static long run_fop(struct fop *f, int64_t deadline)
{
    if (coru__gen_depth > 0) return -EPERM;
    if (coru__self_cancelled()) return -ECANCELED; /* it wins over -ETIMEDOUT (coru.h) */
    if (coru__dl_passed(deadline)) return -ETIMEDOUT;
    /* A use of the fd for the whole call (io.h): a coru_close meanwhile
     * waits for it before close(2). */
    bool use = f->kind != F_OPEN;
    int rc;
    if (use && (rc = coru__fd_use(f->fd))) return rc;
    long r;
    struct coru__engine *e = coru__io_engine();
    if (e && e->head.kind == CORU__ENGINE_URING) {
        r = coru__io_uring_op(e, use ? f->fd : -1, prep_fop, f, deadline);
    } else if (e) {
        int brc = coru_blocking_dl(sys_fop, f, NULL, deadline);
        r = brc ? brc : f->res;
    } else {
        sys_fop(f);
        r = f->res;
    }
    if (use) coru__fd_unuse(f->fd);
    return r;
}

static size_t clamp(size_t n)
{
    return n > 0x7ffff000 ? 0x7ffff000 : n;
}

int coru_file_open_dl(const char *path, int flags, unsigned mode, int64_t deadline)
{
    if (!path) return -EINVAL;
    struct fop f = {.kind = F_OPEN, .path = path, .flags = flags | O_CLOEXEC, .mode = mode};
    long fd = run_fop(&f, deadline);
    if (fd >= 0) coru__io_forget_fd((int)fd); /* a reused number: drop stale state */
    return (int)fd;
}

ssize_t coru_pread_dl(int fd, void *buf, size_t n, int64_t off, int64_t deadline)
{
    if (fd < 0) return -EBADF;
    if ((!buf && n) || off < 0) return -EINVAL;
    struct fop f = {.kind = F_PREAD, .fd = fd, .buf = buf, .n = clamp(n), .off = off};
    return run_fop(&f, deadline);
}

ssize_t coru_pwrite_dl(int fd, const void *buf, size_t n, int64_t off, int64_t deadline)
{
    if (fd < 0) return -EBADF;
    if ((!buf && n) || off < 0) return -EINVAL;
    struct fop f = {.kind = F_PWRITE, .fd = fd, .buf = (void *)buf, .n = clamp(n), .off = off};
    return run_fop(&f, deadline);
}

int coru_fsync_dl(int fd, int64_t deadline)
{
    if (fd < 0) return -EBADF;
    struct fop f = {.kind = F_FSYNC, .fd = fd};
    return (int)run_fop(&f, deadline);
}

int coru_file_open(const char *path, int flags, unsigned mode)
{
    return coru_file_open_dl(path, flags, mode, CORU_NEVER);
}

ssize_t coru_pread(int fd, void *buf, size_t n, int64_t off)
{
    return coru_pread_dl(fd, buf, n, off, CORU_NEVER);
}

ssize_t coru_pwrite(int fd, const void *buf, size_t n, int64_t off)
{
    return coru_pwrite_dl(fd, buf, n, off, CORU_NEVER);
}

int coru_fsync(int fd)
{
    return coru_fsync_dl(fd, CORU_NEVER);
}
