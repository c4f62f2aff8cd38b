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
 */

#ifndef HW_MISC_IVSH_H
#define HW_MISC_IVSH_H

#include "hw/pci/pci_device.h"
#include "qom/object.h"
#include "system/hostmem.h"
#include "qapi/qapi-types-common.h"

#define TYPE_IVSH_COMMON "ivshmem-common"
OBJECT_DECLARE_TYPE(IvshState, IvshClass, IVSH_COMMON)

#define TYPE_IVSHMEM_PLAIN "ivshmem-plain"

struct IvshState {
    PCIDevice parent_obj;

    /* properties */
    HostMemoryBackend *hostmem;
    OnOffAuto master;

    /* guest registers (migrated) */
    uint32_t intrstatus;
    uint32_t intrmask;
    uint32_t vm_id;             /* IVPosition */

    /* host resources */
    MemoryRegion mmio;          /* BAR0 */
    MemoryRegion *shm;          /* BAR2, owned by a backend or the device */
    bool shm_ram_registered;
    Error *migration_blocker;
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
bool ivsh_realize_common(IvshState *s, uint8_t bar2_type, Error **errp);
void ivsh_exit_common(IvshState *s);
int ivsh_pre_load(void *opaque);

#endif
