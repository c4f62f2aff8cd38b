/*
 * ivsh-server: shared declarations of the server program
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef IVSH_SERVER_H
#define IVSH_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

#define IVSH_SERVER_VERSION "1.0"

/* Logging to stderr; messages have no trailing newline */
typedef enum IvshLogLevel {
    IVSH_LOG_ERROR,
    IVSH_LOG_WARNING,
    IVSH_LOG_INFO,
    IVSH_LOG_DEBUG,
} IvshLogLevel;

extern IvshLogLevel ivsh_log_level;
void ivsh_log(IvshLogLevel level, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* Shared memory backings */
typedef enum IvshShmKind {
    IVSH_SHM_MEMFD,
    IVSH_SHM_POSIX,
    IVSH_SHM_FILE,
} IvshShmKind;

typedef struct IvshShm {
    IvshShmKind kind;
    char *name;             /* POSIX name or file path, NULL for memfd */
    uint64_t size;
    bool sealed;            /* memfd: sealed against shrinking and growing */
    int fd;
} IvshShm;

/* A size that ivshmem accepts: a power of two, at least 4 KiB */
bool ivsh_check_size(uint64_t size, GError **errp);

/*
 * Open or create the shared memory.  @size 0 means "the existing
 * object's size, or the default for a new one".
 */
bool ivsh_shm_open(IvshShm *shm, IvshShmKind kind, const char *name,
                   uint64_t size, GError **errp);
/* Take @fd, a memfd kept by systemd's fd store, as the shared memory */
bool ivsh_shm_adopt(IvshShm *shm, int fd, GError **errp);
void ivsh_shm_close(IvshShm *shm);
const char *ivsh_shm_kind_str(IvshShmKind kind);

#define IVSH_DEFAULT_SHM_SIZE (4 * 1024 * 1024)

#endif
