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

#include "qom/object.h"

#define TYPE_IVSH_COMMON "ivshmem-common"
OBJECT_DECLARE_TYPE(IvshState, IvshClass, IVSH_COMMON)

#define TYPE_IVSHMEM_PLAIN "ivshmem-plain"
#define TYPE_IVSHMEM_DOORBELL "ivshmem-doorbell"
#define TYPE_IVSHMEM_LEGACY "ivshmem"

#endif
