/* Fault injection at the C library boundary for the storage-fault tests (LD_PRELOAD).
 *
 * fsync() and fdatasync() fail with EIO, as a failing disk reports a lost write-back, for every
 * file descriptor whose path contains MAINSTEM_FAULT_FSYNC_EIO; every other call goes to the real
 * function. Every process of the pipeline (dvc, the stages, git) inherits the variable.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int path_matches(int fd) {
    const char *needle = getenv("MAINSTEM_FAULT_FSYNC_EIO");
    char link[64];
    char target[4096];
    ssize_t length;

    if (needle == NULL || needle[0] == '\0') {
        return 0;
    }
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    length = readlink(link, target, sizeof target - 1);
    if (length < 0) {
        return 0;
    }
    target[length] = '\0';
    return strstr(target, needle) != NULL;
}

int fsync(int fd) {
    static int (*real_fsync)(int);
    if (path_matches(fd)) {
        errno = EIO;
        return -1;
    }
    if (real_fsync == NULL) {
        real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    }
    return real_fsync(fd);
}

int fdatasync(int fd) {
    static int (*real_fdatasync)(int);
    if (path_matches(fd)) {
        errno = EIO;
        return -1;
    }
    if (real_fdatasync == NULL) {
        real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    }
    return real_fdatasync(fd);
}
