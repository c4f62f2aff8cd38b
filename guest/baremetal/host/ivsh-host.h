/*
 * ivshmem test guest: host-side helpers of the driver
 *
 * Child processes watched through pidfds, an ivshmem server client (the
 * driver joins the server as a peer: it gets the shared memory, its own
 * eventfds, and every guest's eventfds, so it can ring guests and be
 * rung by them), and a minimal QMP client for query-stats.  Plain libc;
 * every blocking call takes an absolute CLOCK_MONOTONIC deadline.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef IVSH_HOST_H
#define IVSH_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IVH_MAX_PEERS       64
#define IVH_MAX_VECTORS     64

int64_t ivh_now_ms(void);
bool ivh_parse_u64(const char *s, uint64_t *v);

/* Child processes */

typedef struct IvhProc {
    char name[32];
    pid_t pid;                  /* 0: not running */
    int pidfd;
    bool exited;
    int status;                 /* exit status, 128 + signal if killed */
    char log[256];              /* stdout and stderr */
} IvhProc;

bool ivh_spawn(IvhProc *p, const char *name, char *const argv[],
               const char *log);
/* Reap @p if it has exited; true if it has */
bool ivh_reap(IvhProc *p);
bool ivh_wait_exit(IvhProc *p, int64_t deadline);
/* SIGTERM, then SIGKILL after @grace_ms; always reaps */
void ivh_stop(IvhProc *p, int grace_ms);
/* Print the last @lines lines of the process log to stderr */
void ivh_dump_log(const char *what, const char *path, int lines);
/*
 * A KVM failure QEMU reported in its log @path (it then stops the VM
 * without exiting): one line with the error, the reason, the guest's
 * instruction pointer and mode and the failing instruction's bytes
 */
bool ivh_kvm_error(const char *path, char *buf, size_t size);

/* ivshmem server client */

typedef struct IvhPeer {
    bool present;
    unsigned nfds;
    int fds[IVH_MAX_VECTORS];
} IvhPeer;

typedef struct IvhClient {
    int sock;
    int id;
    int shm_fd;
    void *shm;
    size_t shm_size;
    IvhPeer peers[IVH_MAX_PEERS];
    int joined[IVH_MAX_PEERS];  /* IDs in order of arrival */
    unsigned njoined;
} IvhClient;

/* Connect (retrying until @deadline while the server starts up) */
bool ivh_client_connect(IvhClient *c, const char *path, unsigned vectors,
                        int64_t deadline);
/* Read the messages waiting on the socket; false on EOF or bad input */
bool ivh_client_pump(IvhClient *c);
bool ivh_client_ring(IvhClient *c, int id, unsigned vector);
void ivh_client_close(IvhClient *c);

/* QMP */

typedef struct IvhQmp {
    int fd;
    char buf[65536];
    size_t len;
} IvhQmp;

typedef struct IvhStats {
    bool valid;                 /* false: no KVM statistics (TCG) */
    uint64_t exits, mmio_exits, io_exits, halt_exits, irq_injections;
    uint64_t insn_emulation, halt_wakeup, halt_successful_poll;
    uint64_t wakeups;           /* of QEMU's threads other than the vCPU */
} IvhStats;

bool ivh_qmp_open(IvhQmp *q, const char *path, int64_t deadline);
bool ivh_qmp_stats(IvhQmp *q, IvhStats *st, int64_t deadline);
/* Run a QMP command (JSON text); true if it returned; reply in @reply */
bool ivh_qmp_exec(IvhQmp *q, const char *cmd, char *reply, size_t size,
                  int64_t deadline);
void ivh_qmp_close(IvhQmp *q);

/*
 * Context switches (voluntary and not) of the threads of process @pid
 * other than @skip_tid: how often they were woken
 */
uint64_t ivh_thread_wakeups(pid_t pid, pid_t skip_tid);

#endif
