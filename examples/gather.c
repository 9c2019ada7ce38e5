/* gather.c - asyncio's gather in coru:
 *
 *     async def hello(name):
 *         print(f"Hello world! ({name})")
 *         await asyncio.sleep(1)
 *         print(f"Hello again! ({name})")
 *
 *     await asyncio.gather(hello("one"), hello("two"))
 *
 * Both coroutines sleep at the same time, so the whole thing takes about
 * 1 s, not 2. Exits non-zero on an unexpected return code or if it took
 * 1.9 s or more. */
#include <coru.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define SECOND INT64_C(1000000000)

static void *hello(void *arg)
{
    const char *name = arg;
    printf("Hello world! (%s)\n", name);
    int rc = coru_sleep(1 * SECOND);
    if (rc != 0) {
        fprintf(stderr, "coru_sleep (%s): %s\n", name, strerror(-rc));
        return (void *)1;
    }
    printf("Hello again! (%s)\n", name);
    return NULL;
}

static void *gather(void *arg)
{
    int *failed = arg;
    static const char *const names[] = {"one", "two"};
    coru_t *h[2];
    int started = 0;
    int64_t t0 = coru_now();
    for (int i = 0; i < 2; i++) {
        int rc = coru_spawn(&h[i], hello, (void *)names[i], NULL);
        if (rc != 0) {
            fprintf(stderr, "coru_spawn: %s\n", strerror(-rc));
            *failed = 1;
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++) {
        void *res;
        int rc = coru_join(h[i], &res);
        if (rc != 0) {
            fprintf(stderr, "coru_join: %s\n", strerror(-rc));
            *failed = 1;
        } else if (res != NULL) {
            *failed = 1;
        }
    }
    int64_t elapsed = coru_now() - t0;
    printf("elapsed: %.3f s\n", (double)elapsed / SECOND);
    if (elapsed >= 19 * SECOND / 10) {
        fprintf(stderr, "the two sleeps did not overlap (%.3f s >= 1.9 s)\n", (double)elapsed / SECOND);
        *failed = 1;
    }
    return NULL;
}

int main(void)
{
    int failed = 0;
    int rc = coru_run(gather, &failed, NULL);
    if (rc != 0) {
        fprintf(stderr, "coru_run: %s\n", strerror(-rc));
        return 1;
    }
    return failed;
}
