/*
 * Inter-VM shared memory PCI devices
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

/*
 * QEMU interface, common to all ivshmem device types:
 *  + PCI 1af4:1110, class 0x0500 (include/hw/misc/ivsh-regs.h)
 *  + BAR0: 256-byte register block (IntrMask, IntrStatus, IVPosition,
 *    Doorbell)
 *  + BAR2: the shared memory, 64-bit prefetchable
 *  + QOM property "master" (on/off/auto): only a master migrates its
 *    shared memory; any other device adds a migration blocker
 *
 * ivshmem-plain: QOM property "memdev" links the memory backend that
 * becomes BAR2.  No interrupts, IVPosition reads 0, Doorbell is ignored.
 *
 * ivshmem-doorbell: QOM property "chardev" names a UNIX socket connected
 * to an ivshmem server, which provides BAR2, the peer ID (IVPosition)
 * and the peers' eventfds.  BAR1 is an exclusive MSI-X BAR with
 * "vectors" entries; Doorbell writes ring peers, and eventfds rung by
 * peers become MSI-X interrupts.  Properties "ioeventfd" (doorbell writes
 * handled in KVM) and "master"; "x-setup-timeout" (ms),
 * "x-ioeventfd-budget" and "x-max-eventfds" bound what a server can make
 * the device do.
 *
 * ivshmem: the original (QEMU <= 3.1) interface, revision 0: exactly one
 * of "shm" (POSIX shared memory name), "chardev" (server) or "memdev"
 * (alias "x-memdev"); "size" fixes BAR2; "msi" (MSI-X, or INTx pin A
 * driven by IntrStatus & IntrMask), "vectors", "ioeventfd", "use64"
 * (64-bit BAR2) and "role" (master/peer).
 */

#ifndef HW_MISC_IVSH_H
#define HW_MISC_IVSH_H

#include "hw/pci/pci_device.h"
#include "qom/object.h"
#include "system/hostmem.h"
#include "chardev/char-fe.h"
#include "qapi/qapi-types-common.h"
#include "hw/misc/ivsh-proto.h"

#define TYPE_IVSH_COMMON "ivshmem-common"
OBJECT_DECLARE_TYPE(IvshState, IvshClass, IVSH_COMMON)

#define TYPE_IVSHMEM_PLAIN "ivshmem-plain"
#define TYPE_IVSHMEM_DOORBELL "ivshmem-doorbell"
#define TYPE_IVSHMEM_LEGACY "ivshmem"

typedef struct IvshPeer IvshPeer;

/* One of our own interrupt vectors */
typedef struct IvshVector {
    IvshState *s;
    uint32_t nr;
    int virq;                   /* KVM MSI route, or -1 */
    bool irqfd;                 /* irqfd attached to the route */
    bool handler;               /* userspace fd handler installed */
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
    bool server_broken;         /* stopped reading from the server */
    bool server_gone;
    bool shutting_down;         /* QEMU is exiting: not the server's doing */
    Notifier shutdown_notifier;
    MemoryRegion fd_shm;        /* BAR2 from an fd: server or shm= */
    GHashTable *peers;          /* peer ID -> IvshPeer */
    IvshVector *msi_vectors;    /* [vectors] */
    bool irqfd_active;
    uint32_t nr_ioeventfds;
    bool ioeventfd_budget_warned;
};

struct IvshClass {
    PCIDeviceClass parent_class;

    ResettablePhases parent_phases;
    /* Doorbell register write, NULL when the type has no peers */
    void (*doorbell)(IvshState *s, uint16_t peer, uint16_t vector);
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
bool ivsh_server_connect(IvshState *s, uint64_t map_size, Error **errp);
bool ivsh_interrupts_init(IvshState *s, Error **errp);
void ivsh_server_start(IvshState *s);
void ivsh_server_cleanup(IvshState *s);
void ivsh_interrupts_reset(IvshState *s);
void ivsh_doorbell_ring(IvshState *s, uint16_t peer, uint16_t vector);
void ivsh_doorbell_write_config(PCIDevice *pdev, uint32_t addr, uint32_t val,
                                int len);
int ivsh_doorbell_post_load(void *opaque, int version_id);

#endif
