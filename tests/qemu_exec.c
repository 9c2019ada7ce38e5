/* Preloaded into the test programs of a cross build that runs under
 * qemu-user (tests/meson.build): makes execve of a program for this
 * architecture work without binfmt_misc, by running it under the same
 * qemu (CORU_QEMU, a host program that the host kernel can exec).
 * Criterion needs this: BoxFort starts every test by re-executing the
 * test program, and test_debug posix_spawns itself (glibc's posix_spawn
 * calls its internal execve, so it is wrapped too). The environment passes through qemu to the new guest,
 * so LD_PRELOAD and LD_LIBRARY_PATH reach its children too. Everything
 * else (host programs, scripts) is exec'd as it is. */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int is_guest_elf(const char *path)
{
    Elf64_Ehdr h;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, &h, sizeof h);
    close(fd);
    return n == (ssize_t)sizeof h && memcmp(h.e_ident, ELFMAG, SELFMAG) == 0 &&
           h.e_ident[EI_CLASS] == ELFCLASS64 && h.e_machine == EM_AARCH64;
}

/* qemu -0 argv0 path argv[1..]: the guest sees the same argv. NULL (errno
 * set) when out of memory. */
static char **qemu_argv(const char *qemu, const char *path, char *const argv[])
{
    /* The new qemu must be given the program itself: /proc/self/exe,
     * which this qemu shows the guest as the guest program, is qemu there. */
    static __thread char real[4096];
    if (realpath(path, real)) path = real;
    size_t argc = 0;
    while (argv[argc]) argc++;
    char **qv = malloc((argc + 5) * sizeof *qv);
    if (!qv) return NULL;
    size_t k = 0;
    qv[k++] = (char *)qemu;
    qv[k++] = "-0";
    qv[k++] = argc ? argv[0] : (char *)path;
    qv[k++] = (char *)path;
    for (size_t i = 1; i < argc; i++) qv[k++] = argv[i];
    qv[k] = NULL;
    return qv;
}

static const char *qemu_for(const char *path)
{
    const char *qemu = getenv("CORU_QEMU");
    return qemu && *qemu && is_guest_elf(path) ? qemu : NULL;
}

int execve(const char *path, char *const argv[], char *const envp[])
{
    static int (*next)(const char *, char *const[], char *const[]);
    if (!next) next = (int (*)(const char *, char *const[], char *const[]))dlsym(RTLD_NEXT, "execve");
    const char *qemu = qemu_for(path);
    if (!qemu) return next(path, argv, envp);
    char **qv = qemu_argv(qemu, path, argv);
    if (!qv) {
        errno = ENOMEM;
        return -1;
    }
    int rc = next(qemu, qv, envp);
    int e = errno;
    free(qv);
    errno = e;
    return rc;
}

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                            const posix_spawnattr_t *, char *const[], char *const[]);
    static spawn_fn next;
    if (!next) next = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawn");
    const char *qemu = qemu_for(path);
    if (!qemu) return next(pid, path, fa, attr, argv, envp);
    char **qv = qemu_argv(qemu, path, argv);
    if (!qv) return ENOMEM;
    int rc = next(pid, qemu, fa, attr, qv, envp);
    free(qv);
    return rc;
}
