/*
 * ivsh-server: the shared memory
 *
 * Three backings: an anonymous memfd (the default; sealed so that nobody
 * can shrink it under a mapping or grow it), a POSIX shared memory
 * object, or a file, typically on hugetlbfs or tmpfs.  A named object
 * that already exists keeps its content; its size must match --size, if
 * given, and is never changed: truncating memory that guests may have
 * mapped would crash them.  Sizes are exact: QEMU needs a power of two,
 * so anything else is an error, never rounded.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include "ivsh-server.h"

#ifndef F_SEAL_SEAL
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#endif

#define MIN_SIZE 4096

bool ivsh_check_size(uint64_t size, GError **errp)
{
    uint64_t up;

    if (size < MIN_SIZE) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "shared memory size %" G_GUINT64_FORMAT " is smaller "
                    "than 4K", size);
        return false;
    }
    if (size & (size - 1)) {
        up = size;
        while (up & (up - 1)) {
            up &= up - 1;
        }
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "shared memory size %" G_GUINT64_FORMAT " is not a "
                    "power of two (ivshmem needs one; nearest are %"
                    G_GUINT64_FORMAT " and %" G_GUINT64_FORMAT ")",
                    size, up, up << 1);
        return false;
    }
    if (size > (uint64_t)G_MAXINT64) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "shared memory size %" G_GUINT64_FORMAT " is too large",
                    size);
        return false;
    }
    return true;
}

const char *ivsh_shm_kind_str(IvshShmKind kind)
{
    switch (kind) {
    case IVSH_SHM_MEMFD:
        return "memfd";
    case IVSH_SHM_POSIX:
        return "posix-shm";
    case IVSH_SHM_FILE:
        return "file";
    }
    return "unknown";
}

static bool open_memfd(IvshShm *shm, uint64_t size, GError **errp)
{
    int fd = memfd_create("ivsh-server", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    if (fd < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot create a memfd: %s", g_strerror(errno));
        return false;
    }
    if (ftruncate(fd, size) < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot size the memfd to %" G_GUINT64_FORMAT ": %s",
                    size, g_strerror(errno));
        close(fd);
        return false;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
        == 0) {
        shm->sealed = true;
    }
    shm->fd = fd;
    shm->size = size;
    return true;
}

/* A named object: create it, or take it as it is */
static bool open_named(IvshShm *shm, int fd, const char *what,
                       uint64_t size, GError **errp)
{
    struct stat st;

    if (fstat(fd, &st) < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot stat %s: %s", what, g_strerror(errno));
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%s is not a regular file", what);
        return false;
    }
    if (st.st_size == 0) {
        if (!size) {
            size = IVSH_DEFAULT_SHM_SIZE;
        }
        if (ftruncate(fd, size) < 0) {
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                        "cannot size %s to %" G_GUINT64_FORMAT " bytes: %s%s",
                        what, size, g_strerror(errno),
                        errno == EINVAL ? " (on hugetlbfs, the size must "
                        "be a multiple of the huge page size)" : "");
            return false;
        }
    } else if (size && (uint64_t)st.st_size != size) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%s already exists with %lld bytes, not %" G_GUINT64_FORMAT
                    "; remove it or give --size %lld", what,
                    (long long)st.st_size, size, (long long)st.st_size);
        return false;
    } else {
        size = st.st_size;
        if (!ivsh_check_size(size, errp)) {
            g_prefix_error(errp, "%s: ", what);
            return false;
        }
    }
    shm->fd = fd;
    shm->size = size;
    return true;
}

bool ivsh_shm_open(IvshShm *shm, IvshShmKind kind, const char *name,
                   uint64_t size, GError **errp)
{
    g_autofree char *what = NULL;
    int fd;

    memset(shm, 0, sizeof(*shm));
    shm->fd = -1;
    shm->kind = kind;
    if (size && !ivsh_check_size(size, errp)) {
        return false;
    }
    switch (kind) {
    case IVSH_SHM_MEMFD:
        return open_memfd(shm, size ? size : IVSH_DEFAULT_SHM_SIZE, errp);
    case IVSH_SHM_POSIX:
        shm->name = name[0] == '/' ? g_strdup(name)
                                   : g_strconcat("/", name, NULL);
        if (strchr(shm->name + 1, '/') || !shm->name[1]) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                        "invalid POSIX shared memory name '%s'", name);
            return false;
        }
        what = g_strdup_printf("shared memory object %s", shm->name);
        fd = shm_open(shm->name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        break;
    case IVSH_SHM_FILE:
        shm->name = g_strdup(name);
        what = g_strdup_printf("file %s", name);
        fd = open(name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        break;
    default:
        g_assert_not_reached();
    }
    if (fd < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot open %s: %s", what, g_strerror(errno));
        return false;
    }
    if (!open_named(shm, fd, what, size, errp)) {
        close(fd);
        return false;
    }
    return true;
}

bool ivsh_shm_adopt(IvshShm *shm, int fd, GError **errp)
{
    struct stat st;
    int seals;

    memset(shm, 0, sizeof(*shm));
    shm->fd = -1;
    shm->kind = IVSH_SHM_MEMFD;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        !ivsh_check_size(st.st_size, errp)) {
        if (errp && !*errp) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                        "not a memfd or regular file");
        }
        close(fd);
        return false;
    }
    seals = fcntl(fd, F_GET_SEALS);
    shm->sealed = seals >= 0 && (seals & F_SEAL_SHRINK);
    shm->fd = fd;
    shm->size = st.st_size;
    return true;
}

void ivsh_shm_close(IvshShm *shm)
{
    if (shm->fd >= 0) {
        close(shm->fd);
        shm->fd = -1;
    }
    g_free(shm->name);
    shm->name = NULL;
}
