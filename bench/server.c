/* What the server benches (echo, http) share: the fd limit raised to its
 * hard maximum, and SIGTERM/SIGINT ending the process from a thread of
 * their own (blocked before coru_run, so the workers inherit the mask).
 * CORU_BENCH_STATS=1 prints the per-worker scheduler counters on stderr
 * first, for tuning. */
#include <coru.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"

static sigset_t stop_set;

static void *signals(void *arg)
{
    (void)arg;
    int sig;
    sigwait(&stop_set, &sig);
    if (getenv("CORU_BENCH_STATS")) {
        struct coru_stats st;
        coru_stats(&st);
        fprintf(stderr, "stats: engine=%s\n", st.engine);
        for (unsigned i = 0; i < st.workers; i++)
            fprintf(stderr, "  worker %u: switches=%llu steals=%llu sleeps=%llu handoffs=%llu\n", i,
                    (unsigned long long)st.worker[i].switches, (unsigned long long)st.worker[i].steals,
                    (unsigned long long)st.worker[i].sleeps, (unsigned long long)st.worker[i].handoffs);
    }
    _exit(0); /* the load generator has its numbers; nothing to flush */
}

void bench_server_setup(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL); /* inherited by the workers */
    pthread_t t;
    pthread_create(&t, NULL, signals, NULL);
}
