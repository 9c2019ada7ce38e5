/* Failure injection, in test builds only (-Dtesting=true, CORU_TESTING):
 * the calls through which the runtime (src/sched, src/io) asks the system
 * for memory, mappings, rings, descriptors and threads go through the
 * wrappers below, which a test can make fail on the Nth call with a
 * chosen errno, as neco's fail counters do. In other builds the wrappers
 * are the plain calls, inlined, and nothing is counted.
 *
 * The sites, and what a failure there looks like to the caller of the
 * wrapper (what the real call would do):
 *   ALLOC    malloc, calloc, realloc, aligned_alloc: NULL (realloc leaves
 *            the old block alone), errno = the chosen error
 *   MMAP     mmap of stacks, slabs and probes: MAP_FAILED
 *   GUARD    mprotect(PROT_NONE) of a guard page, MADV_GUARD_INSTALL: -1
 *   URING    io_uring_queue_init_params: -err (liburing's convention)
 *   EPOLL    epoll_create1: -1
 *   EVENTFD  eventfd: -1
 *   THREAD   pthread_create: err (pthread's convention)
 *   SOCKET   socket, accept4 (the accept of the epoll engine and of the
 *            first try of coru_tcp_accept): -1
 *
 * Counting: every wrapped call of a site adds one to the site's counter
 * (atomic: any thread may be calling). coru__fail_arm(site, n, err,
 * sticky) resets the counter and makes the nth call from then on (1 = the
 * next one) fail with err; with sticky, every later call fails too (a
 * limit reached: no more mappings). n = 0 disarms. Counters and arming
 * are process-wide, not per run: a test arms before coru_run. The calls
 * of the failure path itself (munmap, close, free) are never failed. */
#ifndef CORU_FAIL_H
#define CORU_FAIL_H

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13: guard pages without a VMA */
#endif

enum coru__fail_site {
    CORU__FAIL_ALLOC,
    CORU__FAIL_MMAP,
    CORU__FAIL_GUARD,
    CORU__FAIL_URING,
    CORU__FAIL_EPOLL,
    CORU__FAIL_EVENTFD,
    CORU__FAIL_THREAD,
    CORU__FAIL_SOCKET,
    CORU__FAIL_NSITES
};

#ifdef CORU_TESTING
/* Counts a call of the site; true (with errno set to the armed error)
 * when this call is to fail. */
bool coru__fail_now(enum coru__fail_site site);
void coru__fail_arm(enum coru__fail_site site, unsigned long nth, int err, bool sticky);
/* Calls of the site since the last arm (or since the process started). */
unsigned long coru__fail_calls(enum coru__fail_site site);
/* How many calls of the site were failed since the last arm. */
unsigned long coru__fail_failed(enum coru__fail_site site);
/* "alloc", "mmap", ...; NULL past the last site. */
const char *coru__fail_name(enum coru__fail_site site);
#else
static inline bool coru__fail_now(enum coru__fail_site site)
{
    (void)site;
    return false;
}
#endif

static inline void *coru__malloc(size_t n)
{
    return coru__fail_now(CORU__FAIL_ALLOC) ? NULL : malloc(n);
}

static inline void *coru__calloc(size_t n, size_t size)
{
    return coru__fail_now(CORU__FAIL_ALLOC) ? NULL : calloc(n, size);
}

static inline void *coru__realloc(void *p, size_t n)
{
    return coru__fail_now(CORU__FAIL_ALLOC) ? NULL : realloc(p, n);
}

static inline void *coru__aligned_alloc(size_t align, size_t n)
{
    return coru__fail_now(CORU__FAIL_ALLOC) ? NULL : aligned_alloc(align, n);
}

static inline void *coru__mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return coru__fail_now(CORU__FAIL_MMAP) ? MAP_FAILED : mmap(addr, len, prot, flags, fd, off);
}

/* The guard page of a stack mapping of its own: PROT_NONE. */
static inline int coru__guard_protect(void *p, size_t len)
{
    return coru__fail_now(CORU__FAIL_GUARD) ? -1 : mprotect(p, len, PROT_NONE);
}

/* A guard marker (MADV_GUARD_INSTALL, Linux 6.13): costs no mapping. */
static inline int coru__guard_madvise(void *p, size_t len)
{
    return coru__fail_now(CORU__FAIL_GUARD) ? -1 : madvise(p, len, MADV_GUARD_INSTALL);
}

static inline int coru__uring_init(unsigned entries, struct io_uring *ring, struct io_uring_params *p)
{
    return coru__fail_now(CORU__FAIL_URING) ? -errno : io_uring_queue_init_params(entries, ring, p);
}

static inline int coru__epoll_create1(int flags)
{
    return coru__fail_now(CORU__FAIL_EPOLL) ? -1 : epoll_create1(flags);
}

static inline int coru__eventfd(unsigned initval, int flags)
{
    return coru__fail_now(CORU__FAIL_EVENTFD) ? -1 : eventfd(initval, flags);
}

static inline int coru__pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    return coru__fail_now(CORU__FAIL_THREAD) ? errno : pthread_create(t, attr, fn, arg);
}

static inline int coru__socket(int domain, int type, int protocol)
{
    return coru__fail_now(CORU__FAIL_SOCKET) ? -1 : socket(domain, type, protocol);
}

static inline int coru__accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    return coru__fail_now(CORU__FAIL_SOCKET) ? -1 : accept4(fd, addr, len, flags);
}

#endif
