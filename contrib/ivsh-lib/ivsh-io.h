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
#include <sys/socket.h>
#include <sys/types.h>
#include <glib.h>
#include "hw/misc/ivsh-proto.h"

/* Room for a control message with one fd */
typedef union IvshFdCmsg {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
} IvshFdCmsg;

/*
 * Fill @mh (and @iov) to send @len bytes of @buf, with @fd attached
 * through @control unless @fd is negative.  For sendmsg() and
 * sendmmsg(); @control must live as long as @mh is used.
 */
void ivsh_msghdr_fill(struct msghdr *mh, struct iovec *iov, const void *buf,
                      size_t len, int fd, IvshFdCmsg *control);

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
 * One recvmsg() of up to @len bytes, retried on EINTR; @flags as
 * recvmsg()'s (MSG_CMSG_CLOEXEC is always added).  The first fd that
 * came with the bytes is stored in *@fd (-1: none) and is the caller's;
 * further fds are closed and counted in *@extra.  *@lost is set when
 * the kernel dropped fds (MSG_CTRUNC: the receiver is out of fds).
 * @extra and @lost may be NULL.  Returns the bytes read (0 at EOF) or
 * a negative errno; *@fd is -1 unless bytes were read.
 */
ssize_t ivsh_recvmsg(int sock, void *buf, size_t len, int *fd, int flags,
                     unsigned *extra, bool *lost);

/*
 * A receiving stream: the bytes and the fd of the message being
 * assembled, and what went wrong so far.
 */
typedef struct IvshRecv {
    IvshReader rd;
    int fd;                 /* fd of the message being assembled, or -1 */
    unsigned extra_fds;     /* fds beyond one per message, closed */
    unsigned lost;          /* messages whose fds the kernel dropped */
    bool msg_lost;          /* the message just returned lost its fds */
} IvshRecv;

void ivsh_recv_init(IvshRecv *rx);
/* Forget a partial message (its fd is closed): for a new connection */
void ivsh_recv_reset(IvshRecv *rx);

/*
 * Receive one whole message from @sock, with its fd (or -1, the
 * caller's from now on) in *@fd.  With MSG_DONTWAIT in @flags, returns
 * -EAGAIN when no whole message is there yet; the bytes and fd received
 * so far stay in @rx for the next call.  Returns 1 for a message, 0 at
 * the end of the stream on a message boundary, -EPIPE at an end in the
 * middle of a message, or another negative errno.  An fd that arrives
 * while the message already has one is closed (@rx->extra_fds counts
 * them); when the kernel dropped the message's fds (MSG_CTRUNC: we are
 * out of fds) @rx->msg_lost is set for that message and @rx->lost
 * counts it: the message then comes without its fd.
 */
int ivsh_msg_recv(int sock, IvshRecv *rx, int64_t *msg, int *fd, int flags);

/*
 * A size for the tools' command lines: decimal bytes with an optional K,
 * M, G or T suffix (powers of 1024, "KiB" and "KB" spelled out too).
 */
bool ivsh_parse_size(const char *str, uint64_t *size, GError **errp);

#endif
