/* The canary below a stack that has no guard page (older kernels, past
 * the guard budget; see stack.h), and the descriptor footprint shared by
 * the stack layouts of stack.c and slab.c.
 *
 * Each canary word mixes in its own address, so a canary copied from
 * elsewhere (or a stale slot) does not pass. */
#ifndef CORU_CANARY_H
#define CORU_CANARY_H

#include <stdbool.h>
#include <stdint.h>

/* A frame of up to this many bytes cannot step over the canary without
 * writing into it (its call pushes a return address somewhere in every
 * span this long). */
#define CORU__CANARY_LEN 256
/* The descriptor's footprint at the top of a canary stack; a multiple of
 * 64 so that slab slots keep lo and lo + size 64-byte aligned. */
#define CORU__DESC_SPACE 64

static inline uint64_t coru__canary_word(const uint64_t *at)
{
    return 0xc0c0a5a55a5ac0deull ^ ((uint64_t)(uintptr_t)at * 0x9e3779b97f4a7c15ull);
}

/* Writes the canary into [lo - CORU__CANARY_LEN, lo). */
static inline void coru__canary_set(void *lo)
{
    uint64_t *w = (uint64_t *)((char *)lo - CORU__CANARY_LEN);
    for (int i = 0; i < CORU__CANARY_LEN / 8; i++) w[i] = coru__canary_word(&w[i]);
}

/* Eight-word-wide compare, no branch per word. */
static inline bool coru__canary_ok(const void *lo)
{
    const uint64_t *w = (const uint64_t *)((const char *)lo - CORU__CANARY_LEN);
    uint64_t diff = 0;
    for (int i = 0; i < CORU__CANARY_LEN / 8; i++) diff |= w[i] ^ coru__canary_word(&w[i]);
    return diff == 0;
}

#endif
