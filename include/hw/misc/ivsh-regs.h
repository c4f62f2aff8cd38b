/*
 * Inter-VM shared memory PCI device: guest ABI
 *
 * Plain definitions shared by the device model, its qtests, the ivshmem
 * server and client, and the guest-side tools.  Nothing here depends on
 * QEMU internals.  docs/specs/ivsh-spec.rst is the prose version.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_MISC_IVSH_REGS_H
#define HW_MISC_IVSH_REGS_H

/* PCI identity, compatible with QEMU's ivshmem devices */
#define IVSH_PCI_VENDOR_ID          0x1af4
#define IVSH_PCI_DEVICE_ID          0x1110
#define IVSH_PCI_CLASS              0x0500  /* memory controller, RAM */
#define IVSH_PCI_REVISION           1       /* ivshmem-plain/-doorbell */
#define IVSH_PCI_REVISION_LEGACY    0       /* ivshmem */

/* BARs */
#define IVSH_BAR_REGS               0       /* 256-byte register block */
#define IVSH_BAR_MSIX               1       /* MSI-X table and PBA */
#define IVSH_BAR_SHM                2       /* the shared memory */
#define IVSH_REGS_SIZE              0x100

/* Registers in BAR0; 32-bit little-endian, 4-byte accesses only */
#define IVSH_REG_INTR_MASK          0x00    /* RW */
#define IVSH_REG_INTR_STATUS        0x04    /* RW, read clears */
#define IVSH_REG_IV_POSITION        0x08    /* RO, own peer ID */
#define IVSH_REG_DOORBELL           0x0c    /* WO */

/* Doorbell register fields */
#define IVSH_DOORBELL_VECTOR_SHIFT  0
#define IVSH_DOORBELL_VECTOR_MASK   0x0000ffffu
#define IVSH_DOORBELL_PEER_SHIFT    16
#define IVSH_DOORBELL_PEER_MASK     0xffff0000u
#define IVSH_DOORBELL(peer, vector) \
    ((((unsigned)(peer) & 0xffffu) << IVSH_DOORBELL_PEER_SHIFT) | \
     (((unsigned)(vector) & 0xffffu) << IVSH_DOORBELL_VECTOR_SHIFT))

/* IntrStatus/IntrMask bit set by a doorbell on the legacy INTx path */
#define IVSH_INTR_DOORBELL          0x1

/* Server protocol */
#define IVSH_PROTOCOL_VERSION       0
#define IVSH_MAX_PEER_ID            0xffff
#define IVSH_MAX_VECTORS            2048    /* MSI-X limit */

#endif
