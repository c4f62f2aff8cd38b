/*
 * ivshmem protocol: socket I/O and option helpers for the host tools
 *
 * See ivsh-io.h.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include "hw/misc/ivsh-proto.h"
#include "ivsh-io.h"

void ivsh_msghdr_fill(struct msghdr *mh, struct iovec *iov, const void *buf,
                      size_t len, int fd, IvshFdCmsg *control)
{
    struct cmsghdr *cmsg;

    memset(mh, 0, sizeof(*mh));
    iov->iov_base = (void *)buf;
    iov->iov_len = len;
    mh->msg_iov = iov;
    mh->msg_iovlen = 1;
    if (fd < 0) {
        return;
    }
    memset(control, 0, sizeof(*control));
    mh->msg_control = control->buf;
    mh->msg_controllen = sizeof(control->buf);
    cmsg = CMSG_FIRSTHDR(mh);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
}

ssize_t ivsh_sendmsg(int sock, const void *buf, size_t len, int fd,
                     int flags)
{
    IvshFdCmsg control;
    struct iovec iov;
    struct msghdr mh;
    ssize_t n;

    ivsh_msghdr_fill(&mh, &iov, buf, len, fd, &control);
    do {
        n = sendmsg(sock, &mh, flags | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

/* A server sends one fd per message; room for a few more, to close them */
#define RECV_MAX_FDS 8

ssize_t ivsh_recvmsg(int sock, void *buf, size_t len, int *fd, int flags,
                     unsigned *extra, bool *lost)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(RECV_MAX_FDS * sizeof(int))];
    } control;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr mh;
    struct cmsghdr *cmsg;
    size_t i, k;
    ssize_t n;
    int one;

    *fd = -1;
    if (lost) {
        *lost = false;
    }
    do {
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof(control.buf);
        n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return -errno;
    }
    for (cmsg = CMSG_FIRSTHDR(&mh); cmsg; cmsg = CMSG_NXTHDR(&mh, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET ||
            cmsg->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        k = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (i = 0; i < k; i++) {
            memcpy(&one, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
            if (*fd < 0) {
                *fd = one;
                continue;
            }
            close(one);
            if (extra) {
                (*extra)++;
            }
        }
    }
    if ((mh.msg_flags & MSG_CTRUNC) && lost) {
        *lost = true;
    }
    return n;
}

void ivsh_recv_init(IvshRecv *rx)
{
    memset(rx, 0, sizeof(*rx));
    rx->fd = -1;
}

void ivsh_recv_reset(IvshRecv *rx)
{
    if (rx->fd >= 0) {
        close(rx->fd);
    }
    rx->fd = -1;
    rx->rd.len = 0;
    rx->msg_lost = false;
}

int ivsh_msg_recv(int sock, IvshRecv *rx, int64_t *msg, int *fd, int flags)
{
    uint8_t buf[IVSH_MSG_SIZE];
    bool complete = false, lost;
    ssize_t n;
    int got;

    *fd = -1;
    if (!rx->rd.len) {
        rx->msg_lost = false;
    }
    while (!complete) {
        n = ivsh_recvmsg(sock, buf, ivsh_reader_want(&rx->rd), &got, flags,
                         &rx->extra_fds, &lost);
        if (n < 0) {
            return n;
        }
        if (got >= 0) {
            if (rx->fd < 0) {
                rx->fd = got;
            } else {
                close(got);
                rx->extra_fds++;
            }
        }
        if (lost && !rx->msg_lost) {
            rx->msg_lost = true;
            rx->lost++;
        }
        if (n == 0) {
            return rx->rd.len || rx->fd >= 0 ? -EPIPE : 0;
        }
        ivsh_reader_feed(&rx->rd, buf, n, &complete, msg);
    }
    *fd = rx->fd;
    rx->fd = -1;
    return 1;
}

int ivsh_msg_send(int sock, int64_t msg, int fd)
{
    uint8_t data[IVSH_MSG_SIZE];
    size_t done = 0;
    ssize_t n;

    ivsh_msg_encode(msg, data);
    while (done < sizeof(data)) {
        /* The fd goes with the first byte */
        n = ivsh_sendmsg(sock, data + done, sizeof(data) - done,
                         done ? -1 : fd, 0);
        if (n < 0) {
            return n;
        }
        done += n;
    }
    return 0;
}

bool ivsh_parse_size(const char *str, uint64_t *size, GError **errp)
{
    const char *end = NULL;
    guint64 v;
    unsigned shift = 0;

    if (!g_ascii_isdigit(str[0])) {
        goto bad;
    }
    errno = 0;
    v = g_ascii_strtoull(str, (gchar **)&end, 10);
    if (errno || end == str) {
        goto bad;
    }
    switch (g_ascii_toupper(*end)) {
    case '\0':
        break;
    case 'K':
        shift = 10;
        break;
    case 'M':
        shift = 20;
        break;
    case 'G':
        shift = 30;
        break;
    case 'T':
        shift = 40;
        break;
    default:
        goto bad;
    }
    if (*end) {
        end++;
        if (*end == 'i' && end[1] == 'B') {
            end += 2;
        } else if (*end == 'B') {
            end++;
        }
    }
    if (*end) {
        goto bad;
    }
    if (shift && v > (G_MAXUINT64 >> shift)) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "size '%s' is too large", str);
        return false;
    }
    *size = v << shift;
    return true;

bad:
    g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                "invalid size '%s' (a number of bytes, or with a K, M, "
                "G or T suffix)", str);
    return false;
}
