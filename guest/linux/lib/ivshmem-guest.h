/*
 * libivshmem-guest: use the inter-VM shared memory PCI device from a Linux
 * guest's user space
 *
 * Discovery goes through libpci: every 1af4:1110 function, its revision,
 * BARs, MSI-X capability and Interrupt Pin, from which the mode follows:
 *
 *   revision 1, no MSI-X   plain        memory only
 *   revision 1, MSI-X      doorbell     one interrupt per MSI-X vector
 *   revision 0, MSI-X      legacy       legacy ivshmem with msi=on
 *   revision 0, no MSI-X   legacy-intx  legacy ivshmem with msi=off, INTx
 *
 * Access depends on the driver bound to the function:
 *
 *   ivshmem-guest     BAR2 mapped write-back and one pollable file per
 *                     MSI-X vector, both from /dev/ivshmemN.  On x86 the
 *                     firmware's MTRRs can still make the mapping
 *                     uncached: SeaBIOS marks the 32-bit PCI hole
 *                     uncachable, so only a BAR2 above 4 GiB is really
 *                     write-back there; ivg_shm_mapping() tells which.
 *   uio_pci_generic   INTx through /dev/uioN (vector 0 only); the library
 *                     sets IntrMask bit 0 and acks by reading IntrStatus
 *   none              sysfs resource0/resource2 only, no interrupts
 *
 * Without the ivshmem-guest driver BAR2 comes from sysfs resource2, which
 * the kernel maps uncached.
 *
 * Nothing here is thread-safe; one IvgDevice belongs to one thread.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef IVSHMEM_GUEST_H
#define IVSHMEM_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum IvgMode {
    IVG_MODE_PLAIN,
    IVG_MODE_DOORBELL,
    IVG_MODE_LEGACY,
    IVG_MODE_LEGACY_INTX,
} IvgMode;

typedef enum IvgErrorCode {
    IVG_OK,
    IVG_ERR_IO,             /* a system call failed */
    IVG_ERR_NODEV,          /* no such ivshmem device */
    IVG_ERR_VECTOR,         /* vector or peer out of range */
    IVG_ERR_NOTSUP,         /* the device or its driver cannot do it */
    IVG_ERR_RANGE,          /* offset/length outside the shared memory */
    IVG_ERR_TIMEOUT,        /* the deadline passed */
} IvgErrorCode;

typedef struct IvgError {
    IvgErrorCode code;
    char msg[256];
} IvgError;

#define IVG_BARS            3
#define IVG_MAX_DEVICES     32

typedef struct IvgInfo {
    char bdf[16];               /* "0000:00:03.0" */
    uint16_t vendor_id;
    uint16_t device_id;
    uint8_t revision;
    uint8_t irq_pin;            /* 0: none, 1: INTA# ... */
    IvgMode mode;
    uint64_t bar_addr[IVG_BARS];
    uint64_t bar_size[IVG_BARS];
    unsigned msix_vectors;      /* MSI-X table size, 0 without MSI-X */
    char driver[32];            /* bound driver, "" if none */
    char devnode[32];           /* /dev/ivshmemN, /dev/uioN or "" */
} IvgInfo;

typedef struct IvgDevice IvgDevice;

const char *ivg_mode_name(IvgMode mode);

/*
 * ivg_list: fill @infos with up to @max ivshmem functions in bus order.
 * Returns how many there are (possibly more than @max), or -1 on error.
 */
int ivg_list(IvgInfo *infos, unsigned max, IvgError *err);

/*
 * ivg_open: open the function at @bdf ("0000:00:03.0" or "00:03.0"), or
 * the first one if @bdf is NULL, and map its BAR0 and BAR2.
 */
IvgDevice *ivg_open(const char *bdf, IvgError *err);
void ivg_close(IvgDevice *dev);

const IvgInfo *ivg_info(IvgDevice *dev);
uint32_t ivg_ivposition(IvgDevice *dev);
uint64_t ivg_shm_size(IvgDevice *dev);
/* The shared memory: other VMs change it, hence volatile */
volatile uint8_t *ivg_shm(IvgDevice *dev);
bool ivg_shm_write_back(IvgDevice *dev);
const char *ivg_shm_mapping(IvgDevice *dev);

/* Vectors that can interrupt this guest: 0 when none can */
unsigned ivg_vectors(IvgDevice *dev);

bool ivg_read(IvgDevice *dev, uint64_t off, void *buf, size_t len,
              IvgError *err);
bool ivg_write(IvgDevice *dev, uint64_t off, const void *buf, size_t len,
               IvgError *err);

/*
 * ivg_expect: wait until the shared memory at @off holds @len bytes equal
 * to @buf.  @timeout_ms < 0 waits forever.
 */
bool ivg_expect(IvgDevice *dev, uint64_t off, const void *buf, size_t len,
                int timeout_ms, IvgError *err);

/* ivg_ring: write the Doorbell register for @peer and @vector */
bool ivg_ring(IvgDevice *dev, unsigned peer, unsigned vector, IvgError *err);

/*
 * ivg_vector_fd: a file descriptor that polls readable (POLLIN) when
 * @vector has interrupts to consume.  Owned by @dev.
 */
int ivg_vector_fd(IvgDevice *dev, unsigned vector, IvgError *err);

/* ivg_consume: take the interrupts pending on @vector, without blocking */
bool ivg_consume(IvgDevice *dev, unsigned vector, uint64_t *count,
                 IvgError *err);

/*
 * ivg_wait_any: wait until one of the @n vectors in @vectors has
 * interrupts, consume them and return which and how many.  @timeout_ms < 0
 * waits forever.
 */
bool ivg_wait_any(IvgDevice *dev, const unsigned *vectors, unsigned n,
                  int timeout_ms, unsigned *which, uint64_t *count,
                  IvgError *err);

/*
 * ivg_wait: wait until @vector has seen at least @want interrupts (counted
 * from the last consumer); *@got receives the total consumed, also on
 * timeout.
 */
bool ivg_wait(IvgDevice *dev, unsigned vector, uint64_t want,
              int timeout_ms, uint64_t *got, IvgError *err);

/*
 * ivg_irq_counts: interrupts delivered per vector, from /proc/interrupts
 * (summed over CPUs); @counts has room for @max vectors.  Returns the
 * number of vectors found, or -1.
 */
int ivg_irq_counts(IvgDevice *dev, uint64_t *counts, unsigned max,
                   IvgError *err);

/* Monotonic clock in microseconds */
uint64_t ivg_now_us(void);

#endif
