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
#include <sys/socket.h>
#include "hw/misc/ivsh-proto.h"
#include "ivsh-io.h"

ssize_t ivsh_sendmsg(int sock, const void *buf, size_t len, int fd,
                     int flags)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t n;

    if (fd >= 0) {
        struct cmsghdr *cmsg;

        memset(&control, 0, sizeof(control));
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof(control.buf);
        cmsg = CMSG_FIRSTHDR(&mh);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    }
    do {
        n = sendmsg(sock, &mh, flags | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
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
