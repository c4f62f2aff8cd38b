/*
 * Inter-VM shared memory PCI devices: internal state and interfaces
 *
 * Shared by the files of hw/misc/ivsh/ only; the QOM type names are in
 * include/hw/misc/ivsh.h.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_MISC_IVSH_INTERNAL_H
#define HW_MISC_IVSH_INTERNAL_H

#include "hw/pci/pci_device.h"
#include "hw/pci/msi.h"
#include "qemu/timer.h"
#include "system/hostmem.h"
#include "chardev/char-fe.h"
#include "qapi/qapi-types-common.h"
#include "hw/misc/ivsh.h"
#include "hw/misc/ivsh-proto.h"

typedef struct IvshPeer IvshPeer;

/* The ivshmem server connection, as the "connection" property shows it */
typedef enum IvshConnState {
    IVSH_CONN_NONE,             /* no server (memdev, shm=), not realized */
    IVSH_CONN_CONNECTED,        /* set-up accepted, reading the server */
    IVSH_CONN_DOWN,             /* connection lost (since conn_since) */
    IVSH_CONN_SETUP,            /* connected again, reading a new set-up */
    IVSH_CONN_REFUSED,          /* new set-up refused (conn_why): closed */
    IVSH_CONN_STOPPED,          /* connected, no longer read (conn_why) */
} IvshConnState;

/* One of our own interrupt vectors */
typedef struct IvshVector {
    IvshState *s;
    uint32_t nr;
    EventNotifier *notifier;    /* our eventfd from the server, or NULL */
    int virq;                   /* KVM MSI route, or -1 */
    MSIMessage msg;             /* the message the route holds */
    bool irqfd;                 /* irqfd attached to the route */
    bool handler;               /* userspace fd handler installed */
    bool throttled;             /* handler paused by @throttle */
    bool held;                  /* pending while bus mastering is off */
    QEMUTimer *throttle;        /* resumes a paused handler */
} IvshVector;

struct IvshState {
    PCIDevice parent_obj;

    /* properties */
    HostMemoryBackend *hostmem;
    CharBackend server_chr;
    OnOffAuto master;
    uint32_t vectors;
    bool ioeventfd;
    bool msi;                   /* MSI-X, or INTx on the legacy device */
    uint32_t setup_timeout_ms;
    char *size_str;             /* legacy: size, shm, role, use64 */
    char *shm_name;
    char *role;
    uint32_t use64;
    uint32_t ioeventfd_budget;
    uint32_t max_eventfds;

    /* guest registers (migrated) */
    uint32_t intrstatus;
    uint32_t intrmask;
    uint32_t vm_id;             /* IVPosition */

    /* host resources */
    MemoryRegion mmio;          /* BAR0 */
    MemoryRegion *shm;          /* BAR2, owned by a backend or the device */
    bool shm_ram_registered;
    Error *migration_blocker;

    /* the ivshmem server connection (doorbell and legacy devices) */
    IvshClient client;
    IvshReader reader;
    int server_sock;            /* the chardev's socket, once connected */
    IvshConnState conn_state;
    char *conn_why;             /* IVSH_CONN_REFUSED, IVSH_CONN_STOPPED */
    GDateTime *conn_since;      /* IVSH_CONN_DOWN, IVSH_CONN_SETUP */
    int64_t reconnect_ms;       /* the chardev's reconnect-ms, or 0 */
    dev_t shm_dev;              /* the server's shared memory: what a */
    ino_t shm_ino;              /* new set-up must give again */
    uint64_t shm_srv_size;
    bool shutting_down;         /* QEMU is exiting: not the server's doing */
    Notifier shutdown_notifier;
    MemoryRegion fd_shm;        /* BAR2 from an fd: server or shm= */
    GHashTable *peers;          /* peer ID -> IvshPeer */
    IvshVector *msi_vectors;    /* [vectors] */
    bool irqfd_active;
    uint32_t nr_ioeventfds;
    bool ioeventfd_budget_warned;
    uint32_t eventfds_counted;  /* in the all-devices eventfd count */
    bool fd_check_held;         /* ivsh_fd_check_hold() in effect */
    GTree *eventfd_files;       /* fd -> peer/vector, ordered by file */
    uint32_t drops_logged;
    bool fallback_warned;
    bool throttle_warned;
    bool ring_full_warned;
    bool rlimit_warned;
};

struct IvshClass {
    PCIDeviceClass parent_class;

    ResettablePhases parent_phases;
    /* Doorbell register write, NULL when the type has no peers */
    void (*doorbell)(IvshState *s, uint16_t peer, uint16_t vector);
    /* Device reset of the interrupt state, NULL when no peers */
    void (*reset_peers)(IvshState *s);
};

/* Shared by the device types (hw/misc/ivsh/ivsh-pci.c) */
bool ivsh_check_shm_size(IvshState *s, const char *what, uint64_t size,
                         Error **errp);
bool ivsh_use_memdev(IvshState *s, Error **errp);
void ivsh_release_memdev(IvshState *s);
bool ivsh_map_fd(IvshState *s, int fd, uint64_t size, Error **errp);
bool ivsh_realize_common(IvshState *s, uint8_t bar2_type, Error **errp);
void ivsh_exit_common(IvshState *s);
int ivsh_pre_load(void *opaque);
void ivsh_update_intx(IvshState *s);

/* The server connection and doorbells (hw/misc/ivsh/ivsh-peers.c) */
bool ivsh_conn_connect(IvshState *s, uint64_t map_size, Error **errp);
bool ivsh_interrupts_init(IvshState *s, Error **errp);
void ivsh_conn_start(IvshState *s);
void ivsh_conn_cleanup(IvshState *s);
void ivsh_conn_hangup(IvshState *s);
void ivsh_conn_add_property(ObjectClass *oc);
void ivsh_interrupts_reset(IvshState *s);
void ivsh_doorbell_ring(IvshState *s, uint16_t peer, uint16_t vector);
void ivsh_peers_write_config(PCIDevice *pdev, uint32_t addr, uint32_t val,
                                int len);
int ivsh_peers_post_load(void *opaque, int version_id);

#endif
