/* generator.c - Python's two-line generator, in C with coru_gen:
 *
 *     def hello():
 *         yield "Hello"
 *         yield "World"
 *
 * Generators run on the thread that sends to them, so no coru_run is
 * needed. Prints each value and the generator's state after every step,
 * then shows that a closed generator answers -EPIPE. Exits non-zero on any
 * unexpected return code. */
#include <coru.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gen_state.h"

static void *hello(coru_gen *g, void *arg)
{
    static const char *const words[] = {"Hello", "World"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        /* -EPIPE: someone closed us; there is nothing to clean up. */
        if (coru_gen_yield(g, (void *)words[i], NULL) != 0) return NULL;
    }
    return NULL;
}

static int expect(const char *what, int rc, int want)
{
    if (rc == want) return 0;
    fprintf(stderr, "%s: got %d (%s), want %d\n", what, rc, rc < 0 ? strerror(-rc) : "ok", want);
    return 1;
}

int main(void)
{
    coru_gen *g;
    int rc = coru_gen_create(&g, hello, NULL, 0);
    if (expect("coru_gen_create", rc, 0)) return 1;
    printf("state: %s\n", state_name(coru_gen_state(g)));

    /* Each send(NULL) runs the body to its next yield (rc 1) or to its
     * return (rc 0), like next() in Python. */
    void *out;
    while ((rc = coru_gen_send(g, NULL, &out)) == 1) {
        printf("value: %s\n", (const char *)out);
        printf("state: %s\n", state_name(coru_gen_state(g)));
    }
    if (expect("coru_gen_send", rc, 0)) goto fail;
    printf("returned; state: %s\n", state_name(coru_gen_state(g)));
    if (coru_gen_state(g) != CORU_GEN_CLOSED) goto fail;

    /* Python raises StopIteration here; coru answers -EPIPE. */
    rc = coru_gen_send(g, NULL, &out);
    printf("send to a closed generator: %d (%s)\n", rc, rc < 0 ? strerror(-rc) : "?");
    if (expect("coru_gen_send after close", rc, -EPIPE)) goto fail;

    coru_gen_destroy(g);
    return 0;
fail:
    coru_gen_destroy(g);
    return 1;
}
