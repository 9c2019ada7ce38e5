/* A depot: a process-wide, mutex-guarded LIFO store of free objects that
 * per-worker caches spill into and refill from in batches, so objects
 * move between workers without malloc or system calls. Intrusive: objects
 * are linked through a pointer field at `link` bytes into them. Used for
 * coroutine structs (coro.c) and stacks (stack.c).
 *
 * Ownership: the list and count belong to the depot (under its lock);
 * lists handed in or out belong to the caller. */
#ifndef CORU_DEPOT_H
#define CORU_DEPOT_H

#include <pthread.h>
#include <stddef.h>

struct coru__depot {
    pthread_mutex_t lock;
    void *head;  /* guarded by lock */
    size_t n;    /* guarded by lock */
    size_t max;  /* capacity, fixed */
    size_t link; /* offset of the link field in an object */
};

#define CORU__DEPOT_INIT(type, field, capacity) \
    {PTHREAD_MUTEX_INITIALIZER, NULL, 0, (capacity), offsetof(type, field)}

/* The link field of an object. */
static inline void **coru__depot_link(const struct coru__depot *d, void *obj)
{
    return (void **)((char *)obj + d->link);
}

/* Takes up to `want` objects; returns them as a NULL-terminated list. */
void *coru__depot_take(struct coru__depot *d, size_t want);
/* Stores a NULL-terminated list; returns the objects that did not fit
 * (the caller frees them). */
void *coru__depot_put(struct coru__depot *d, void *list);
/* Detaches the first n objects of a cache list (*head, with *count
 * objects) and stores them as coru__depot_put does; returns the objects
 * that did not fit. */
void *coru__depot_spill(struct coru__depot *d, void *head_ptr, size_t *count, size_t n);
/* Empties the depot; returns everything it held. */
void *coru__depot_drain(struct coru__depot *d);
/* Objects held now. */
size_t coru__depot_count(struct coru__depot *d);

#endif
