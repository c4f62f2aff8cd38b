/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ivshmem-guest: user-space interface of the Linux guest driver for the
 * inter-VM shared memory PCI device (1af4:1110).
 *
 * One character device per bound PCI function, /dev/ivshmemN (its sysfs
 * node is /sys/bus/pci/devices/<BDF>/misc/ivshmemN):
 *
 *  - mmap() at IVSHMEM_GUEST_MMAP_SHM maps BAR2, the shared memory,
 *    write-back cacheable, as far as the MTRRs allow (x86 PAT turns the
 *    request into uncached-minus where an MTRR says uncachable, e.g. in
 *    the 32-bit PCI hole under SeaBIOS).
 *  - mmap() at IVSHMEM_GUEST_MMAP_REGS maps the page holding BAR0, the
 *    registers, uncached; the registers start regs_offset bytes into it.
 *  - IVSHMEM_GUEST_GET_INFO fills struct ivshmem_guest_info.
 *  - IVSHMEM_GUEST_VECTOR_FD (argument: vector number) returns a new file
 *    descriptor for one MSI-X vector.  read() of 8 bytes returns the number
 *    of interrupts on that vector since the previous read by anyone and
 *    resets it to zero; it blocks while the count is zero (unless
 *    O_NONBLOCK).  poll() reports POLLIN while the count is non-zero.  The
 *    count starts when the driver binds, so interrupts that arrive before a
 *    reader opens the vector are not lost.  After the device is unbound,
 *    read() fails with ENODEV and poll() reports POLLHUP.
 */

#ifndef IVSHMEM_GUEST_UAPI_H
#define IVSHMEM_GUEST_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define IVSHMEM_GUEST_API_VERSION   1

#define IVSHMEM_GUEST_MMAP_SHM      0x0ULL
#define IVSHMEM_GUEST_MMAP_REGS     0x10000000000ULL    /* 1 TiB */

struct ivshmem_guest_info {
    __u32 api_version;      /* IVSHMEM_GUEST_API_VERSION */
    __u32 nvectors;         /* MSI-X vectors with an interrupt handler */
    __u64 shm_size;         /* BAR2 size */
    __u64 regs_size;        /* BAR0 size */
    __u32 regs_offset;      /* BAR0 offset in the REGS mapping */
    __u32 ivposition;       /* IVPosition register at GET_INFO time */
};

#define IVSHMEM_GUEST_IOC_MAGIC     0xb9
#define IVSHMEM_GUEST_GET_INFO      _IOR(IVSHMEM_GUEST_IOC_MAGIC, 0x00, \
                                         struct ivshmem_guest_info)
#define IVSHMEM_GUEST_VECTOR_FD     _IO(IVSHMEM_GUEST_IOC_MAGIC, 0x01)

#endif
