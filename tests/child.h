/* Runs this test program again as a child (posix_spawn of /proc/self/exe:
 * TSan refuses threads after a fork of a threaded process) with one more
 * environment variable, which names the scenario its constructor runs.
 * Shared by test_debug and test_fail. */
#ifndef CORU_TEST_CHILD_H
#define CORU_TEST_CHILD_H

#include <criterion/criterion.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* env: "NAME=value", added to this process's environment. The child's
 * stderr (and stdout too, with_stdout) goes into buf, NUL-terminated,
 * the rest read and dropped so the child never blocks on a full pipe.
 * Returns the child's wait status. */
__attribute__((unused)) static int spawn_self(const char *env, bool with_stdout, char *buf, size_t cap)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (with_stdout) posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    extern char **environ;
    size_t ne = 0;
    while (environ[ne]) ne++;
    char **envp = calloc(ne + 2, sizeof *envp);
    cr_assert_not_null(envp);
    memcpy(envp, environ, ne * sizeof *envp);
    envp[ne] = (char *)env;
    char *argv[] = {"test-child", NULL};
    pid_t pid;
    cr_assert_eq(posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, envp), 0);
    free(envp);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    size_t len = 0;
    ssize_t r;
    char sink[4096];
    while ((r = read(fds[0], len < cap - 1 ? buf + len : sink, len < cap - 1 ? cap - 1 - len : sizeof sink)) > 0)
        if (len < cap - 1) len += (size_t)r;
    buf[len] = 0;
    close(fds[0]);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return st;
}

#endif
