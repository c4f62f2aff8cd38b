/*
 * kvm-floor: the guest ABI shared by the VMM (kvm-floor.c) and the guest
 * (kvm-floor-guest.S)
 *
 * The guest runs in 16-bit real mode with an x2APIC.  Its memory:
 *
 *   0x00000  real-mode interrupt vector table
 *   0x00500  mailbox (the words below), written by the VMM before start
 *   0x01000  guest code, entered at CS:IP = 0x0100:0x0000
 *   0x07000  top of the stack
 *   0x10000  sample buffer: 16384 round-trip times, 32 bits each, in TSC
 *            cycles; the guest hands a full buffer to the VMM with a PIO
 *            write of the count to KVM_FLOOR_PORT_FLUSH
 *   0x20000  end of RAM
 *   0xe0000  the doorbell, a 4-byte MMIO register outside RAM
 *
 * Copyright (c) 2026 The ivshmem project contributors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef KVM_FLOOR_H
#define KVM_FLOOR_H

#define KVM_FLOOR_MEM_SIZE          0x20000
#define KVM_FLOOR_CODE              0x1000
#define KVM_FLOOR_STACK             0x7000
#define KVM_FLOOR_BUF               0x10000
#define KVM_FLOOR_BUF_SAMPLES       16384
#define KVM_FLOOR_DOORBELL          0xe0000

/* Mailbox: offsets from address 0 (the guest runs with DS = 0) */
#define KVM_FLOOR_MB_MODE           0x500   /* u16: 0 responder, 1 initiator */
#define KVM_FLOOR_MB_DB_SEG         0x502   /* u16: doorbell address >> 4 */
#define KVM_FLOOR_MB_DB_VAL         0x504   /* u32: value written to it */
#define KVM_FLOOR_MB_COUNT          0x508   /* u32: round trips in all */
#define KVM_FLOOR_MB_WARMUP         0x50c   /* u32: of which warm-up */
#define KVM_FLOOR_MB_FLAG           0x510   /* u16: set by the ISR */
#define KVM_FLOOR_MB_SELFTEST       0x512   /* u16: ring by self-IPI */
#define KVM_FLOOR_MB_RDTSC          0x514   /* u32: rdtsc;rdtsc cycles */
#define KVM_FLOOR_MB_ISR_COUNT      0x518   /* u32: interrupts taken */

/* PIO ports the guest writes to talk to the VMM */
#define KVM_FLOOR_PORT_READY        0xe0    /* set up, idling in HLT */
#define KVM_FLOOR_PORT_MARK         0xe1    /* warm-up done */
#define KVM_FLOOR_PORT_FLUSH        0xe2    /* u16: samples in the buffer */
#define KVM_FLOOR_PORT_DONE         0xe4    /* u16: samples in the buffer */

#define KVM_FLOOR_VECTOR            0x40
#define KVM_FLOOR_MSI_ADDR          0xfee00000u

#define KVM_FLOOR_MSR_APIC_BASE     0x1b
#define KVM_FLOOR_MSR_X2APIC_EOI    0x80b
#define KVM_FLOOR_MSR_X2APIC_SVR    0x80f
#define KVM_FLOOR_MSR_X2APIC_SELF   0x83f

#endif
