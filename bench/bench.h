/* bench.h - helpers shared by the coru-bench workloads: clock, RESULT line,
 * failure exit, worker-count argument and RSS readings.
 *
 * Output follows /work/shared/peers/README.md ("Output format"): one line
 *   RESULT bench=NAME impl=coru workers=N ops=N ns_per_op=X.XX[ extra=k:v,...]
 * on stdout per measurement, formatted as the Go peer does (ns_per_op with
 * two decimals). A failed check prints "FAIL: ..." on stderr and exits 1;
 * a bad command line exits 2. */
#ifndef CORU_BENCH_H
#define CORU_BENCH_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The workloads. Each gets argv[0] = its name, argv[1] = optional worker
 * count, and returns the process exit status (0: a RESULT line printed). */
int bench_switch(int argc, char **argv);
int bench_spawn(int argc, char **argv);
int bench_skynet(int argc, char **argv);
int bench_pingpong(int argc, char **argv);
int bench_mpmc(int argc, char **argv);
int bench_timers(int argc, char **argv);
int bench_parked(int argc, char **argv);
int bench_echo(int argc, char **argv);
int bench_http(int argc, char **argv);
int bench_https(int argc, char **argv);
int bench_client(int argc, char **argv);

/* Server benches (server.c): raises the fd limit, blocks SIGTERM/SIGINT
 * for the workers to inherit and starts the thread that exits on them.
 * Call before coru_run. */
void bench_server_setup(void);

/* Monotonic clock in nanoseconds. */
static inline int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Prints the RESULT line. extra: NULL or "" for none, else "k:v,k:v". */
static inline void bench_result(const char *name, unsigned workers, uint64_t ops,
                                int64_t elapsed_ns, const char *extra)
{
    double ns = (double)elapsed_ns / (double)ops;
    int has_extra = extra != NULL && extra[0] != '\0';
    printf("RESULT bench=%s impl=coru workers=%u ops=%llu ns_per_op=%.2f%s%s\n", name, workers,
           (unsigned long long)ops, ns, has_extra ? " extra=" : "", has_extra ? extra : "");
    fflush(stdout);
}

/* A failed check or call: "FAIL: msg" on stderr, exit 1. Callable from any
 * thread or coroutine (exit ends the whole process). */
__attribute__((noreturn, format(printf, 1, 2))) static inline void bench_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("FAIL: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    exit(1);
}

/* Fails with the call's name and strerror unless rc is 0 (or a count). */
static inline void bench_check(int rc, const char *what)
{
    if (rc < 0) bench_fail("%s: %s", what, strerror(-rc));
}

/* The worker count: argv[1] if given (1..256), else def. A bad value is a
 * usage error: message on stderr, exit 2. */
static inline unsigned bench_workers(int argc, char **argv, unsigned def)
{
    if (argc < 2) return def;
    char *end;
    errno = 0;
    long v = strtol(argv[1], &end, 10);
    if (errno != 0 || end == argv[1] || *end != '\0' || v < 1 || v > 256) {
        fprintf(stderr, "%s: bad worker count: %s (1..256)\n", argv[0], argv[1]);
        exit(2);
    }
    return (unsigned)v;
}

/* The optional coroutine count after the worker count (run.sh's SCALE_N:
 * `coru-bench timers 2 1000000`), 1..100,000,000. */
static inline long bench_count(int argc, char **argv, long def)
{
    if (argc < 3) return def;
    char *end;
    errno = 0;
    long v = strtol(argv[2], &end, 10);
    if (errno != 0 || end == argv[2] || *end != '\0' || v < 1 || v > 100000000) {
        fprintf(stderr, "%s: bad count: %s (1..100000000)\n", argv[0], argv[2]);
        exit(2);
    }
    return v;
}

/* A "Key:   N kB" field of /proc/self/status in KiB, or -1. */
static inline long bench_status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return -1;
    char line[256];
    size_t klen = strlen(key);
    long v = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* Current resident set (VmRSS) and its peak (VmHWM), KiB, or -1. */
static inline long bench_vmrss_kib(void) { return bench_status_kib("VmRSS"); }
static inline long bench_vmhwm_kib(void) { return bench_status_kib("VmHWM"); }

#endif
