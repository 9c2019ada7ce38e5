/* Helpers shared by the test programs: the two I/O engines every
 * engine-sensitive test runs on, and running a main coroutine on one. */
#ifndef CORU_TEST_HELPERS_H
#define CORU_TEST_HELPERS_H

#include "coru.h"
#include "emu.h"

#include <stdio.h>

/* Under emulation io_uring_setup is ENOSYS, so every run a test asks to
 * make on CORU_IO_URING is made on CORU_IO_AUTO instead: the io_uring half
 * of each engine loop then checks the fallback to epoll. Natively this is
 * coru_run itself. */
__attribute__((unused)) static int test_coru_run(coru_fn fn, void *arg, const struct coru_opts *opts)
{
    if (!opts || opts->io != CORU_IO_URING || !test_emulated()) return coru_run(fn, arg, opts);
    static int noted;
    if (!noted++)
        fprintf(stderr, "tests: under qemu-user (no io_uring) CORU_IO_URING runs use CORU_IO_AUTO\n");
    struct coru_opts o = *opts;
    o.io = CORU_IO_AUTO;
    return coru_run(fn, arg, &o);
}
#define coru_run test_coru_run

/* The engine a run on io ends up with: "io_uring" or "epoll". */
__attribute__((unused)) static const char *expected_engine(enum coru_io io)
{
    return io == CORU_IO_URING && !test_emulated() ? "io_uring" : "epoll";
}

__attribute__((unused)) static const enum coru_io engines[] = {CORU_IO_URING, CORU_IO_EPOLL};

/* for each engine: FOR_EACH_ENGINE(io) { ... io ... } */
#define FOR_EACH_ENGINE(var) for (size_t var##_i = 0; var##_i < 2; var##_i++) \
    for (enum coru_io var = engines[var##_i], *var##_once = (void *)1; var##_once; var##_once = NULL)

/* coru_run(fn, arg) with `workers` workers on engine io. */
__attribute__((unused)) static int run_on(enum coru_io io, unsigned workers, coru_fn fn, void *arg)
{
    struct coru_opts o = {.workers = workers, .io = io};
    return coru_run(fn, arg, &o);
}

#endif
