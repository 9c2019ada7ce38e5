/* Growable byte buffers of the HTTP layer (server and client): one rule
 * for making room, so every buffer grows the same way. */
#ifndef CORU_HTTP_BUF_H
#define CORU_HTTP_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

/* Makes room for n more bytes after len in *buf (capacity *cap): the
 * capacity starts at `first` and doubles until it fits. Returns false,
 * leaving the buffer as it was, when out of memory. */
static inline bool coru__http_reserve(char **buf, size_t *cap, size_t len, size_t n, size_t first)
{
    if (len + n <= *cap) return true;
    size_t c = *cap ? *cap : first;
    while (c < len + n) c *= 2;
    char *b = realloc(*buf, c);
    if (!b) return false;
    *buf = b;
    *cap = c;
    return true;
}

#endif
