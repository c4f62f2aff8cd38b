/*
 * A restartable ivshmem server for the reconnection qtests
 *
 * Driven step by step from the test: it listens on a UNIX socket, takes
 * one client (a VM's chardev) at a time, and sends exactly the messages
 * the test asks for.  "Down" closes the client's connection without a
 * word and removes the socket, as a killed server does; listening again
 * on the same path is the restart.  The shared memory is a memfd that
 * outlives the restarts.  While QEMU starts (and reads its set-up in
 * realize), the first client is served from a thread.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef IVSH_RSERVER_H
#define IVSH_RSERVER_H

typedef struct IvshRsrv {
    char *path;
    int listen_fd;          /* -1 while down */
    int sock;               /* the client, or -1 */
    int shm_fd;
    void *shm;              /* the memory, mapped in the test */
    size_t shm_size;
} IvshRsrv;

/* A memfd of @size, a power of two; the second function maps it */
int ivsh_rsrv_memfd(size_t size);

/* Listening on @path (not yet existing) with a new memfd of @shm_size */
void ivsh_rsrv_init(IvshRsrv *r, const char *path, size_t shm_size);
void ivsh_rsrv_free(IvshRsrv *r);

/* Listen again on the same path (the restart) */
void ivsh_rsrv_listen(IvshRsrv *r);
/* The server dies: the client's connection closes, the socket goes */
void ivsh_rsrv_down(IvshRsrv *r);

/* Accept the next client within @ms; false on timeout */
bool ivsh_rsrv_accept(IvshRsrv *r, int ms);
/* True if no client connects within @ms (the socket must be up) */
bool ivsh_rsrv_idle(IvshRsrv *r, int ms);
/* True once the client closed its end (EOF) within @ms */
bool ivsh_rsrv_wait_eof(IvshRsrv *r, int ms);

/* To the client: version, @id and the shared memory @shm_fd */
void ivsh_rsrv_setup(IvshRsrv *r, int64_t id, int shm_fd);
/*
 * The same for a set-up the device is expected to refuse: it may close
 * the connection before the last message (EPIPE is no error here).
 */
void ivsh_rsrv_setup_refused(IvshRsrv *r, int64_t id, int shm_fd);
/* To the client: @n eventfds of @peer */
void ivsh_rsrv_eventfds(IvshRsrv *r, int peer, const int *efd, unsigned n);
/* To the client: one message; @fd or -1 */
void ivsh_rsrv_send(IvshRsrv *r, int64_t msg, int fd);
/* To the client: @len raw bytes, with @fd or -1 */
void ivsh_rsrv_send_raw(IvshRsrv *r, const void *buf, size_t len, int fd);

/*
 * Accept the first client in a thread and run @fn on it there, while the
 * test waits for QEMU to start; g_thread_join() the result.
 */
typedef void IvshRsrvFn(IvshRsrv *r, void *opaque);
GThread *ivsh_rsrv_serve_async(IvshRsrv *r, IvshRsrvFn *fn, void *opaque);

/* Eventfds: @n new ones; closing them; ringing one; taking its count */
void ivsh_efds_new(int *efd, unsigned n);
void ivsh_efds_close(int *efd, unsigned n);
void ivsh_efd_ring(int fd);
uint64_t ivsh_efd_take(int fd);

#endif
