/*
 * A hostile or broken ivshmem server: the cases
 *
 * Set-up cases script the server's first messages on a new connection;
 * late cases send one bad message to a running VM.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/eventfd.h>
#include <sys/socket.h>
#include "hw/misc/ivsh-proto.h"
#include "ivsh-io.h"
#include "ivsh-hostile-cases.h"

int ivsh_memfd_sized(size_t size, unsigned seals)
{
    int fd = memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    g_assert(fd >= 0);
    g_assert(ftruncate(fd, size) == 0);
    if (seals) {
        g_assert(fcntl(fd, F_ADD_SEALS, seals) == 0);
    }
    return fd;
}

static void send_close(int sock, int64_t msg, int fd)
{
    g_assert_cmpint(ivsh_msg_send(sock, msg, fd), ==, 0);
    if (fd >= 0) {
        close(fd);
    }
}

static void s_bad_version(IvshTServer *ts, int sock, void *opaque)
{
    send_close(sock, 1, -1);
}

static void s_version_fd(IvshTServer *ts, int sock, void *opaque)
{
    send_close(sock, 0, eventfd(0, 0));
}

static void s_bad_id(IvshTServer *ts, int sock, void *opaque)
{
    send_close(sock, 0, -1);
    send_close(sock, 70000, -1);
}

static void s_negative_id(IvshTServer *ts, int sock, void *opaque)
{
    send_close(sock, 0, -1);
    send_close(sock, -5, -1);
}

static void s_eventfd_before_shm(IvshTServer *ts, int sock, void *opaque)
{
    send_close(sock, 0, -1);
    send_close(sock, 0, -1);
    send_close(sock, 0, eventfd(0, 0));
}

static void s_shm_fd(int sock, int fd)
{
    send_close(sock, 0, -1);
    send_close(sock, 0, -1);
    send_close(sock, IVSH_MSG_SHM, fd);
}

static void s_shm_not_pow2(IvshTServer *ts, int sock, void *opaque)
{
    s_shm_fd(sock, ivsh_memfd_sized(3 * 4096, 0));
}

static void s_shm_too_small(IvshTServer *ts, int sock, void *opaque)
{
    s_shm_fd(sock, ivsh_memfd_sized(2048, 0));
}

static void s_shm_not_file(IvshTServer *ts, int sock, void *opaque)
{
    s_shm_fd(sock, eventfd(0, 0));
}

static void s_shm_read_only(IvshTServer *ts, int sock, void *opaque)
{
    int fd = ivsh_memfd_sized(4096, 0);
    g_autofree char *path = g_strdup_printf("/proc/self/fd/%d", fd);
    int ro = open(path, O_RDONLY | O_CLOEXEC);

    close(fd);
    s_shm_fd(sock, ro);
}

static void s_shm_write_sealed(IvshTServer *ts, int sock, void *opaque)
{
    s_shm_fd(sock, ivsh_memfd_sized(4096, F_SEAL_WRITE));
}

static void s_shm_no_fd(IvshTServer *ts, int sock, void *opaque)
{
    s_shm_fd(sock, -1);
}

static void s_eof(IvshTServer *ts, int sock, void *opaque)
{
    send_close(sock, 0, -1);
    shutdown(sock, SHUT_RDWR);
}

static void s_stall(IvshTServer *ts, int sock, void *opaque)
{
    send_close(sock, 0, -1);
}

static void s_partial(IvshTServer *ts, int sock, void *opaque)
{
    g_assert(write(sock, "\0\0\0\0", 4) == 4);
    if (opaque) {
        shutdown(sock, SHUT_RDWR);
    }
}

static void s_id3(IvshTServer *ts, int sock, void *opaque)
{
    ivsh_tserver_send_setup(ts, sock, 3);
}

const IvshSetupCase ivsh_setup_cases[] = {
    { "unknown-version", s_bad_version, NULL, NULL,
      "protocol version 1, expected 0" },
    { "version-with-fd", s_version_fd, NULL, NULL,
      "fd with its version message" },
    { "id-out-of-range", s_bad_id, NULL, NULL, "invalid ID message (70000)" },
    { "id-negative", s_negative_id, NULL, NULL, "invalid ID message (-5)" },
    { "eventfd-before-shm", s_eventfd_before_shm, NULL, NULL,
      "where the shared memory was expected" },
    { "shm-not-power-of-2", s_shm_not_pow2, NULL, NULL,
      "size 12288 is not a power of two" },
    { "shm-too-small", s_shm_too_small, NULL, NULL,
      "size 2048 is not a power of two of at least 4096" },
    { "shm-not-a-file", s_shm_not_file, NULL, NULL, "not a file or memfd" },
    { "shm-read-only", s_shm_read_only, NULL, NULL, "not open read-write" },
    { "shm-write-sealed", s_shm_write_sealed, NULL, NULL,
      "sealed against writing" },
    { "shm-without-fd", s_shm_no_fd, NULL, NULL,
      "where the shared memory was expected" },
    { "eof-during-setup", s_eof, NULL, NULL,
      "closed the connection during set-up", .hangs_up = true },
    { "stall-during-setup", s_stall, NULL, "x-setup-timeout=400",
      "did not complete the set-up within 400 ms" },
    { "eof-mid-message", s_partial, (void *)1, NULL,
      "closed the connection during set-up", .hangs_up = true },
    { "stall-mid-message", s_partial, NULL, "x-setup-timeout=400",
      "did not complete the set-up within 400 ms" },
    { "master-not-id-0", s_id3, NULL, "master=on",
      "master=on, but the ivshmem server gave this device ID 3",
      .master = true },
};

const size_t ivsh_nr_setup_cases = ARRAY_SIZE(ivsh_setup_cases);

static void l_second_shm(IvshEnv *e, IvshVm *vm)
{
    int fd = ivsh_memfd_sized(4096, 0);

    ivsh_tserver_send(e->ts, vm->id, IVSH_MSG_SHM, fd);
    close(fd);
}

static void l_shm_no_fd(IvshEnv *e, IvshVm *vm)
{
    ivsh_tserver_send(e->ts, vm->id, IVSH_MSG_SHM, -1);
}

static void l_not_eventfd(IvshEnv *e, IvshVm *vm)
{
    int p[2];

    g_assert(pipe(p) == 0);
    ivsh_tserver_send(e->ts, vm->id, 40, p[0]);
    close(p[0]);
    close(p[1]);
}

static void l_too_many(IvshEnv *e, IvshVm *vm)
{
    int i, fd;

    for (i = 0; i < 3; i++) {
        fd = eventfd(0, 0);
        ivsh_tserver_send(e->ts, vm->id, 41, fd);
        close(fd);
    }
}

static void l_disconnect_own(IvshEnv *e, IvshVm *vm)
{
    ivsh_tserver_send(e->ts, vm->id, vm->id, -1);
}

static void l_disconnect_unknown(IvshEnv *e, IvshVm *vm)
{
    ivsh_tserver_send(e->ts, vm->id, 77, -1);
}

static void l_garbage(IvshEnv *e, IvshVm *vm)
{
    ivsh_tserver_send(e->ts, vm->id, 1LL << 40, -1);
}

const IvshLateCase ivsh_late_cases[] = {
    { "second-shm", l_second_shm, "server sent a second shared memory" },
    { "shm-message-without-fd", l_shm_no_fd,
      "shared memory message without fd" },
    { "not-an-eventfd", l_not_eventfd,
      "fd for peer 40 that is not an eventfd" },
    { "more-eventfds-than-vectors", l_too_many,
      "more than 2 eventfds for peer 41", false, 2 },
    { "disconnect-own-id", l_disconnect_own,
      "disconnect of our own ID 0" },
    { "disconnect-unknown-id", l_disconnect_unknown,
      "disconnect of unknown peer 77" },
    { "garbage", l_garbage, "invalid message 1099511627776", true },
};

const size_t ivsh_nr_late_cases = ARRAY_SIZE(ivsh_late_cases);

char *ivsh_hostile_device_args(IvshEnv *e, const char *opts)
{
    return g_strdup_printf("-chardev socket,id=srv,path=%s -device "
                           "ivshmem-doorbell,chardev=srv,vectors=2%s%s",
                           e->sock, opts ? "," : "", opts ? opts : "");
}
