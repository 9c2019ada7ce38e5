/* Helpers shared by the test programs: the two I/O engines every
 * engine-sensitive test runs on, and running a main coroutine on one. */
#ifndef CORU_TEST_HELPERS_H
#define CORU_TEST_HELPERS_H

#include "coru.h"

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
