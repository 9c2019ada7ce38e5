/* Test runs under emulation (qemu-user): tests/meson.build sets
 * CORU_TEST_EMULATED=1 for a cross build whose tests run through the cross
 * file's exe_wrapper (tools/test aarch64). There io_uring is ENOSYS, and
 * madvise accepts advice it ignores; the few tests that cannot work there
 * skip with a reason, never silently. */
#ifndef CORU_TEST_EMU_H
#define CORU_TEST_EMU_H

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

__attribute__((unused)) static bool test_emulated(void)
{
    const char *e = getenv("CORU_TEST_EMULATED");
    return e && *e && strcmp(e, "0") != 0;
}

/* Skips the calling test under emulation, printing why (the emulated run
 * passes --verbose, which shows the [SKIP] line and its reason). */
#define SKIP_IF_EMULATED(why)                                          \
    do {                                                               \
        if (test_emulated()) cr_skip_test("under qemu-user: %s", why); \
    } while (0)

/* A note about something this machine lacks: a warning natively, an info
 * line under emulation, where it is expected. (Criterion 2.4 exits 1 when
 * any test logs a warning, which would fail the emulated run.) */
#define NOTE_MISSING(...)                                              \
    do {                                                               \
        if (test_emulated())                                           \
            cr_log_info(__VA_ARGS__);                                  \
        else                                                           \
            cr_log_warn(__VA_ARGS__);                                  \
    } while (0)

#endif
