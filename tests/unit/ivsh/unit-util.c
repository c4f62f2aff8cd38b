/*
 * Helpers shared by the protocol unit tests and the fuzz driver
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <fcntl.h>
#include <glib.h>
#include "unit-util.h"

unsigned count_fds(void)
{
    GDir *dir = g_dir_open("/proc/self/fd", 0, NULL);
    unsigned n = 0;

    g_assert(dir);
    while (g_dir_read_name(dir)) {
        n++;
    }
    g_dir_close(dir);
    return n;
}

bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}
