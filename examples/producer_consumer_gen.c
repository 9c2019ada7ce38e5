/* producer_consumer_gen.c - a producer driving a consumer generator with
 * send, after the classic Python example:
 *
 *     def consumer():
 *         r = ''
 *         while True:
 *             n = yield r
 *             print('[CONSUMER] Consuming %s...' % n)
 *             r = '200 OK'
 *
 * The first send(NULL) starts the consumer and runs it to its first yield;
 * every later send hands it an item and returns its response. Closing the
 * generator makes its pending yield return -EPIPE, so it cleans up and
 * returns. No coru_run: a generator runs on the sender's thread. */
#include <coru.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "gen_state.h"

static int consumer_failed; /* set by the body on an unexpected code */

static void *consumer(coru_gen *g, void *arg)
{
    const char *response = "";
    for (;;) {
        void *item;
        int rc = coru_gen_yield(g, (void *)response, &item);
        if (rc == -EPIPE) {
            printf("[CONSUMER] Closed, cleaning up\n");
            return NULL;
        }
        if (rc != 0) {
            fprintf(stderr, "coru_gen_yield: %s\n", strerror(-rc));
            consumer_failed = 1;
            return NULL;
        }
        printf("[CONSUMER] Consuming %ld...\n", (long)(intptr_t)item);
        response = "200 OK";
    }
}

static int produce(coru_gen *c)
{
    void *out;
    int rc = coru_gen_send(c, NULL, &out); /* start: runs to the first yield */
    if (rc != 1) {
        fprintf(stderr, "start: %d (%s)\n", rc, rc < 0 ? strerror(-rc) : "returned");
        return 1;
    }
    for (intptr_t n = 1; n <= 5; n++) {
        printf("[PRODUCER] Producing %ld...\n", (long)n);
        rc = coru_gen_send(c, (void *)n, &out);
        if (rc != 1) {
            fprintf(stderr, "send %ld: %d (%s)\n", (long)n, rc, rc < 0 ? strerror(-rc) : "returned");
            return 1;
        }
        printf("[PRODUCER] Consumer return: %s\n", (const char *)out);
    }
    rc = coru_gen_close(c);
    if (rc != 0) {
        fprintf(stderr, "coru_gen_close: %s\n", strerror(-rc));
        return 1;
    }
    printf("[PRODUCER] Consumer state: %s\n", state_name(coru_gen_state(c)));
    return coru_gen_state(c) == CORU_GEN_CLOSED ? 0 : 1;
}

int main(void)
{
    coru_gen *c;
    int rc = coru_gen_create(&c, consumer, NULL, 0);
    if (rc != 0) {
        fprintf(stderr, "coru_gen_create: %s\n", strerror(-rc));
        return 1;
    }
    int failed = produce(c);
    coru_gen_destroy(c);
    return failed || consumer_failed ? 1 : 0;
}
