/*
 * ivshmem protocol: socket I/O and option helpers for the host tools
 *
 * Used by ivsh-server, ivsh-client, the stress tool, the unit tests and
 * the qtests' in-test server; never by the device, which reads through
 * its chardev.  Plain C and GLib.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef IVSH_IO_H
#define IVSH_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

/*
 * One sendmsg() of @len bytes with @fd attached unless it is negative;
 * retried on EINTR, never SIGPIPE.  Returns the bytes sent or -errno.
 */
ssize_t ivsh_sendmsg(int sock, const void *buf, size_t len, int fd,
                     int flags);

/*
 * Send one message, with @fd attached unless it is negative, on a
 * blocking stream socket.  Returns 0, or a negative errno.
 */
int ivsh_msg_send(int sock, int64_t msg, int fd);

/*
 * A size for the tools' command lines: decimal bytes with an optional K,
 * M, G or T suffix (powers of 1024, "KiB" and "KB" spelled out too).
 */
bool ivsh_parse_size(const char *str, uint64_t *size, GError **errp);

#endif
