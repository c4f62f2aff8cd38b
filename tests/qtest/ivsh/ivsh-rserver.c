/*
 * A restartable ivshmem server for the reconnection qtests
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "hw/misc/ivsh-proto.h"
#include "ivsh-io.h"
#include "ivsh-rserver.h"

#define RSRV_THREAD_MS 10000

int ivsh_rsrv_memfd(size_t size)
{
    int fd = memfd_create("ivsh-rserver", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    g_assert(fd >= 0);
    g_assert(ftruncate(fd, size) == 0);
    return fd;
}

void ivsh_rsrv_init(IvshRsrv *r, const char *path, size_t shm_size)
{
    memset(r, 0, sizeof(*r));
    r->path = g_strdup(path);
    r->listen_fd = -1;
    r->sock = -1;
    r->shm_size = shm_size;
    r->shm_fd = ivsh_rsrv_memfd(shm_size);
    r->shm = mmap(NULL, shm_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                  r->shm_fd, 0);
    g_assert(r->shm != MAP_FAILED);
    ivsh_rsrv_listen(r);
}

void ivsh_rsrv_free(IvshRsrv *r)
{
    ivsh_rsrv_down(r);
    munmap(r->shm, r->shm_size);
    close(r->shm_fd);
    g_free(r->path);
    memset(r, 0, sizeof(*r));
}

void ivsh_rsrv_listen(IvshRsrv *r)
{
    struct sockaddr_un un = { .sun_family = AF_UNIX };

    g_assert(r->listen_fd < 0);
    r->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert(r->listen_fd >= 0);
    g_strlcpy(un.sun_path, r->path, sizeof(un.sun_path));
    g_assert(bind(r->listen_fd, (struct sockaddr *)&un, sizeof(un)) == 0);
    g_assert(listen(r->listen_fd, 16) == 0);
}

void ivsh_rsrv_down(IvshRsrv *r)
{
    if (r->sock >= 0) {
        close(r->sock);
        r->sock = -1;
    }
    if (r->listen_fd >= 0) {
        close(r->listen_fd);
        r->listen_fd = -1;
        unlink(r->path);
    }
}

static bool rsrv_poll(int fd, int ms)
{
    gint64 end = g_get_monotonic_time() + ms * G_TIME_SPAN_MILLISECOND;
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int ret;

    for (;;) {
        gint64 left = end - g_get_monotonic_time();

        ret = poll(&pfd, 1, MAX(left, 0) / 1000);
        if (ret >= 0 || errno != EINTR) {
            return ret == 1;
        }
    }
}

bool ivsh_rsrv_accept(IvshRsrv *r, int ms)
{
    g_assert(r->listen_fd >= 0);
    if (!rsrv_poll(r->listen_fd, ms)) {
        return false;
    }
    if (r->sock >= 0) {
        close(r->sock);
    }
    r->sock = accept4(r->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    g_assert(r->sock >= 0);
    return true;
}

bool ivsh_rsrv_idle(IvshRsrv *r, int ms)
{
    g_assert(r->listen_fd >= 0);
    return !rsrv_poll(r->listen_fd, ms);
}

bool ivsh_rsrv_wait_eof(IvshRsrv *r, int ms)
{
    char c;

    g_assert(r->sock >= 0);
    /* Clients never write: readable means EOF (or an error) */
    return rsrv_poll(r->sock, ms) && recv(r->sock, &c, 1, MSG_DONTWAIT) <= 0;
}

void ivsh_rsrv_send(IvshRsrv *r, int64_t msg, int fd)
{
    g_assert(r->sock >= 0);
    g_assert_cmpint(ivsh_msg_send(r->sock, msg, fd), ==, 0);
}

void ivsh_rsrv_send_raw(IvshRsrv *r, const void *buf, size_t len, int fd)
{
    char control[CMSG_SPACE(sizeof(int))] = { 0 };
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    struct cmsghdr *cmsg;

    if (fd >= 0) {
        mh.msg_control = control;
        mh.msg_controllen = sizeof(control);
        cmsg = CMSG_FIRSTHDR(&mh);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    }
    g_assert_cmpint(sendmsg(r->sock, &mh, MSG_NOSIGNAL), ==, len);
}

void ivsh_rsrv_setup(IvshRsrv *r, int64_t id, int shm_fd)
{
    ivsh_rsrv_send(r, 0, -1);
    ivsh_rsrv_send(r, id, -1);
    ivsh_rsrv_send(r, IVSH_MSG_SHM, shm_fd);
}

void ivsh_rsrv_setup_refused(IvshRsrv *r, int64_t id, int shm_fd)
{
    const int64_t msg[] = { 0, id, IVSH_MSG_SHM };
    unsigned i;
    int ret;

    g_assert(r->sock >= 0);
    for (i = 0; i < G_N_ELEMENTS(msg); i++) {
        ret = ivsh_msg_send(r->sock, msg[i], msg[i] == IVSH_MSG_SHM ?
                            shm_fd : -1);
        if (ret == -EPIPE || ret == -ECONNRESET) {
            return;     /* the device refused and closed already */
        }
        g_assert_cmpint(ret, ==, 0);
    }
}

void ivsh_rsrv_eventfds(IvshRsrv *r, int peer, const int *efd, unsigned n)
{
    unsigned i;

    for (i = 0; i < n; i++) {
        ivsh_rsrv_send(r, peer, efd[i]);
    }
}

typedef struct RsrvJob {
    IvshRsrv *r;
    IvshRsrvFn *fn;
    void *opaque;
} RsrvJob;

static gpointer rsrv_thread(gpointer opaque)
{
    RsrvJob *job = opaque;

    g_assert_true(ivsh_rsrv_accept(job->r, RSRV_THREAD_MS));
    job->fn(job->r, job->opaque);
    g_free(job);
    return NULL;
}

GThread *ivsh_rsrv_serve_async(IvshRsrv *r, IvshRsrvFn *fn, void *opaque)
{
    RsrvJob *job = g_new0(RsrvJob, 1);

    job->r = r;
    job->fn = fn;
    job->opaque = opaque;
    return g_thread_new("ivsh-rserver", rsrv_thread, job);
}

void ivsh_efds_new(int *efd, unsigned n)
{
    unsigned i;

    for (i = 0; i < n; i++) {
        efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        g_assert(efd[i] >= 0);
    }
}

void ivsh_efds_close(int *efd, unsigned n)
{
    unsigned i;

    for (i = 0; i < n; i++) {
        if (efd[i] >= 0) {
            close(efd[i]);
            efd[i] = -1;
        }
    }
}

void ivsh_efd_ring(int fd)
{
    uint64_t one = 1;

    g_assert_cmpint(write(fd, &one, sizeof(one)), ==, sizeof(one));
}

uint64_t ivsh_efd_take(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    uint64_t val = 0;

    /* QEMU's chardev made it blocking: read only what is there */
    if (poll(&pfd, 1, 0) != 1 || read(fd, &val, sizeof(val)) != sizeof(val)) {
        return 0;
    }
    return val;
}
