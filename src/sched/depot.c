/* The batch depot shared by the coroutine-struct and stack caches; see
 * depot.h. */
#include "sched/depot.h"

void *coru__depot_take(struct coru__depot *d, size_t want)
{
    void *out = NULL;
    pthread_mutex_lock(&d->lock);
    while (want-- && d->head) {
        void *o = d->head;
        d->head = *coru__depot_link(d, o);
        d->n--;
        *coru__depot_link(d, o) = out;
        out = o;
    }
    pthread_mutex_unlock(&d->lock);
    return out;
}

void *coru__depot_put(struct coru__depot *d, void *list)
{
    void *over = NULL;
    pthread_mutex_lock(&d->lock);
    while (list) {
        void *o = list;
        list = *coru__depot_link(d, o);
        if (d->n < d->max) {
            *coru__depot_link(d, o) = d->head;
            d->head = o;
            d->n++;
        } else {
            *coru__depot_link(d, o) = over;
            over = o;
        }
    }
    pthread_mutex_unlock(&d->lock);
    return over;
}

void *coru__depot_spill(struct coru__depot *d, void *head_ptr, size_t *count, size_t n)
{
    void **head = head_ptr; /* the cache's head pointer, whatever its type */
    void *batch = NULL;
    for (; n && *head; n--) {
        void *o = *head;
        *head = *coru__depot_link(d, o);
        (*count)--;
        *coru__depot_link(d, o) = batch;
        batch = o;
    }
    return coru__depot_put(d, batch);
}

void *coru__depot_drain(struct coru__depot *d)
{
    pthread_mutex_lock(&d->lock);
    void *all = d->head;
    d->head = NULL;
    d->n = 0;
    pthread_mutex_unlock(&d->lock);
    return all;
}

size_t coru__depot_count(struct coru__depot *d)
{
    pthread_mutex_lock(&d->lock);
    size_t n = d->n;
    pthread_mutex_unlock(&d->lock);
    return n;
}
