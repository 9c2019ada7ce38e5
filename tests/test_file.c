/* test_file: files through the engines (io_uring: async file I/O; epoll:
 * the blocking pool; plain threads: direct calls): data written comes
 * back byte for byte, the error codes, and the deadline variants. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "coru.h"
#include "helpers.h"

enum { FILE_SIZE = 1 << 20, CHUNK = 64 * 1024 };

struct file_run {
    char path[64];
    unsigned char *data;
};

static void *write_read_back(void *arg)
{
    struct file_run *r = arg;
    int fd = coru_file_open(r->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "open: %d", fd);
    for (int64_t off = 0; off < FILE_SIZE; off += CHUNK)
        cr_assert_eq(coru_pwrite(fd, r->data + off, CHUNK, off), CHUNK);
    cr_assert_eq(coru_fsync(fd), 0);
    unsigned char *back = malloc(FILE_SIZE);
    /* read back in a different chunking, last chunk first */
    for (int64_t off = FILE_SIZE - 4096; off >= 0; off -= 4096)
        cr_assert_eq(coru_pread(fd, back + off, 4096, off), 4096);
    cr_assert_eq(memcmp(back, r->data, FILE_SIZE), 0, "data differs");
    cr_assert_eq(coru_pread(fd, back, 100, FILE_SIZE), 0); /* at end of file */
    free(back);
    cr_assert_eq(coru_close(fd), 0);
    return NULL;
}

static struct file_run *new_run(void)
{
    struct file_run *r = calloc(1, sizeof *r);
    strcpy(r->path, "/tmp/coru-test-file-XXXXXX");
    int fd = mkstemp(r->path);
    cr_assert_geq(fd, 0);
    close(fd);
    r->data = malloc(FILE_SIZE);
    for (int i = 0; i < FILE_SIZE; i++) r->data[i] = (unsigned char)(i * 131 + (i >> 9));
    return r;
}

static void free_run(struct file_run *r)
{
    unlink(r->path);
    free(r->data);
    free(r);
}

Test(file, written_data_reads_back_byte_for_byte_on_both_engines, .timeout = 60)
{
    FOR_EACH_ENGINE(io) {
        struct file_run *r = new_run();
        cr_assert_eq(run_on(io, 2, write_read_back, r), 0);
        free_run(r);
    }
}

Test(file, a_plain_thread_uses_the_system_calls_directly, .timeout = 60)
{
    struct file_run *r = new_run();
    write_read_back(r);
    free_run(r);
}

static void *errors(void *arg)
{
    cr_assert_eq(coru_file_open("/nonexistent/dir/file", O_RDONLY, 0), -ENOENT);
    cr_assert_eq(coru_file_open(NULL, O_RDONLY, 0), -EINVAL);
    char b[8];
    cr_assert_eq(coru_pread(-1, b, sizeof b, 0), -EBADF);
    cr_assert_eq(coru_pwrite(-1, b, sizeof b, 0), -EBADF);
    cr_assert_eq(coru_fsync(-1), -EBADF);
    cr_assert_eq(coru_pread(0, b, sizeof b, -5), -EINVAL);
    /* a closed, never reused fd number */
    int fd = coru_file_open("/dev/null", O_RDONLY, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(coru_close(fd), 0);
    cr_assert_eq(coru_pread(fd, b, sizeof b, 0), -EBADF);
    return arg;
}

Test(file, errors_come_back_as_negative_errno, .timeout = 30)
{
    FOR_EACH_ENGINE(io) cr_assert_eq(run_on(io, 2, errors, NULL), 0);
}

/* ------------------------------------------------------------ deadlines */

static void *deadlines(void *arg)
{
    struct file_run *r = arg;
    int64_t far = coru_now() + 10 * 1000 * 1000 * 1000LL;
    int fd = coru_file_open_dl(r->path, O_RDWR | O_CREAT | O_TRUNC, 0600, far);
    cr_assert_geq(fd, 0, "open_dl: %d", fd);
    cr_assert_eq(coru_pwrite_dl(fd, r->data, CHUNK, 0, far), CHUNK);
    cr_assert_eq(coru_fsync_dl(fd, CORU_NEVER), 0);
    /* A deadline already past: -ETIMEDOUT, and nothing was done. */
    int64_t past = coru_now() - 1;
    static const unsigned char junk[16] = {1, 2, 3};
    cr_assert_eq(coru_pwrite_dl(fd, junk, sizeof junk, 0, past), -ETIMEDOUT);
    unsigned char *back = malloc(CHUNK);
    cr_assert_eq(coru_pread_dl(fd, back, 16, 0, past), -ETIMEDOUT);
    cr_assert_eq(coru_fsync_dl(fd, past), -ETIMEDOUT);
    cr_assert_eq(coru_file_open_dl(r->path, O_RDONLY, 0, past), -ETIMEDOUT);
    cr_assert_eq(coru_pread_dl(fd, back, CHUNK, 0, far), CHUNK);
    cr_assert_eq(memcmp(back, r->data, CHUNK), 0, "the timed-out write changed the file");
    cr_assert_eq(coru_pread_dl(-1, back, 1, 0, far), -EBADF);
    free(back);
    cr_assert_eq(coru_close(fd), 0);
    return NULL;
}

Test(file, deadline_variants_work_and_a_past_deadline_does_nothing, .timeout = 60)
{
    FOR_EACH_ENGINE(io) {
        struct file_run *r = new_run();
        cr_assert_eq(run_on(io, 2, deadlines, r), 0);
        free_run(r);
    }
}

/* epoll: a file call waits for a blocking-pool thread; with the only
 * thread (CORU_BLOCKING_THREADS=1) held, its deadline ends the wait. */
static _Atomic int hold_open, hold_in;

static void *hold_job(void *arg)
{
    atomic_store(&hold_in, 1);
    while (!atomic_load(&hold_open)) usleep(1000);
    return arg;
}

static void *holder(void *arg)
{
    cr_assert_eq(coru_blocking(hold_job, arg, NULL), 0);
    return NULL;
}

static void *pool_busy(void *arg)
{
    struct file_run *r = arg;
    int fd = coru_file_open(r->path, O_RDONLY, 0);
    cr_assert_geq(fd, 0);
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, holder, NULL, NULL), 0);
    while (!atomic_load(&hold_in)) coru_sleep(1000 * 1000);
    unsigned char b[64];
    int64_t t0 = coru_now();
    cr_assert_eq(coru_pread_dl(fd, b, sizeof b, 0, t0 + 30 * 1000 * 1000), -ETIMEDOUT);
    cr_assert_geq(coru_now() - t0, 30 * 1000 * 1000);
    atomic_store(&hold_open, 1);
    cr_assert_eq(coru_join(h, NULL), 0);
    cr_assert_eq(coru_pread_dl(fd, b, sizeof b, 0, CORU_NEVER), 0, "an empty file");
    cr_assert_eq(coru_close(fd), 0);
    return NULL;
}

Test(file, on_epoll_a_deadline_ends_the_wait_for_a_pool_thread, .timeout = 60)
{
    cr_assert_eq(setenv("CORU_BLOCKING_THREADS", "1", 1), 0);
    struct file_run *r = new_run();
    cr_assert_eq(run_on(CORU_IO_EPOLL, 2, pool_busy, r), 0);
    free_run(r);
}

/* -ECANCELED wins over -ETIMEDOUT: a cancelled coroutine's file calls and
 * blocking-pool calls return -ECANCELED without starting, whatever their
 * deadline (they returned -ETIMEDOUT for a past one). */
static _Atomic int fcancel_go;

static void *noop_fn(void *a)
{
    return a;
}

static void *fcancel_body(void *arg)
{
    const char *path = arg;
    while (!atomic_load(&fcancel_go)) coru_yield();
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    char b[4];
    const int64_t dls[] = {-2, 0, INT64_MIN, coru_now() - 1, CORU_NEVER, coru_now() + 1000000000};
    for (size_t i = 0; i < sizeof dls / sizeof dls[0]; i++) {
        int64_t d = dls[i];
        cr_assert_eq(coru_pread_dl(fd, b, 1, 0, d), -ECANCELED, "pread_dl(%lld)", (long long)d);
        cr_assert_eq(coru_pwrite_dl(fd, "x", 1, 0, d), -ECANCELED, "pwrite_dl(%lld)", (long long)d);
        cr_assert_eq(coru_fsync_dl(fd, d), -ECANCELED);
        cr_assert_eq(coru_file_open_dl(path, O_RDONLY, 0, d), -ECANCELED);
        cr_assert_eq(coru_blocking_dl(noop_fn, NULL, NULL, d), -ECANCELED, "blocking_dl(%lld)", (long long)d);
    }
    cr_assert_eq(coru_blocking(noop_fn, NULL, NULL), -ECANCELED);
    close(fd);
    return NULL;
}

static void *fcancel_main(void *arg)
{
    atomic_store(&fcancel_go, 0);
    coru_t *h;
    cr_assert_eq(coru_spawn(&h, fcancel_body, arg, NULL), 0);
    cr_assert_eq(coru_cancel(h), 0);
    atomic_store(&fcancel_go, 1);
    cr_assert_eq(coru_join(h, NULL), 0);
    return NULL;
}

Test(file, a_cancelled_coroutine_gets_ecanceled_whatever_the_deadline, .timeout = 30)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/coru-test-fcancel-%d", (int)getpid());
    FOR_EACH_ENGINE(io) cr_assert_eq(run_on(io, 2, fcancel_main, path), 0);
    unlink(path);
}
