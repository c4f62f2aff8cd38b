/*
 * ivshmem test guest: layout of the shared memory it works in
 *
 * Shared by the bare-metal test guest (guest/baremetal/guest/) and the
 * host-side driver (guest/baremetal/host/).  The guest is 32-bit and
 * the host 64-bit, so every field is a fixed-width integer at an offset
 * checked below, and 64-bit fields sit at 8-byte aligned offsets.
 *
 * BAR2 (the shared memory) is laid out as:
 *
 *   0x000000  IvgGlobal      written by the host driver, read by guests
 *   0x001000  IvgSlot[0]     one 16 KiB slot per peer ID (IVPosition)
 *   0x005000  IvgSlot[1]
 *   ...
 *   0x100000  scratch area for the copy benchmark (IVG_DATA_OFFSET)
 *
 * A slot belongs to the guest whose IVPosition indexes it: only that
 * guest writes it, except the mailbox, which only the commander (the
 * host driver, or a peer) writes.  A command is posted by filling
 * mailbox.cmd and mailbox.arg[], then bumping mailbox.seq, then
 * (optionally) ringing the guest on vector 0.  The guest runs it and
 * sets done_seq = seq and status, then rings the host if IvgGlobal
 * names one.  Guests also poll the mailbox every IVG_POLL_MS while
 * idle, so a commander that cannot ring still gets through.
 *
 * Ping-pong: the initiator stores a new sequence number in its own
 * slot's "ping" and rings the responder; the responder's interrupt
 * handler copies the initiator's ping into its own "pong" and rings
 * back on the same vector.  Sequence numbers make the exchange immune
 * to eventfd coalescing and to stray interrupts.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef IVSH_GUEST_H
#define IVSH_GUEST_H

#include <stdint.h>
#include <stddef.h>

#define IVG_GLOBAL_MAGIC    0x4c474749u     /* "IGGL" */
#define IVG_SLOT_MAGIC      0x54534749u     /* "IGST" */
#define IVG_VERSION         1

#define IVG_GLOBAL_OFFSET   0x0
#define IVG_SLOT_OFFSET     0x1000
#define IVG_SLOT_SIZE       0x4000
#define IVG_MAX_SLOTS       60
#define IVG_DATA_OFFSET     0x100000
#define IVG_SLOT(id)        (IVG_SLOT_OFFSET + (id) * IVG_SLOT_SIZE)

#define IVG_NO_PEER         0xffffffffu
#define IVG_POLL_MS         100

/* Interrupt vectors of the guest: MSI-X vector i is IDT vector BASE + i */
#define IVG_IDT_TIMER       0x30
#define IVG_IDT_INTX        0x38
#define IVG_IDT_MSIX_BASE   0x40
#define IVG_MAX_VECTORS     176             /* 0x40..0xef */
#define IVG_IDT_SPURIOUS    0xff

/* isa-debug-exit codes (QEMU exits with status code * 2 + 1) */
#define IVG_EXIT_OK         0x10
#define IVG_EXIT_FAIL       0x11
#define IVG_EXIT_FATAL      0x12            /* CPU exception */
#define IVG_EXIT_NODEV      0x13            /* no 1af4:1110 found */
#define IVG_EXIT_STATUS(code) ((code) * 2 + 1)

/* fw_cfg file naming what the guest runs after boot */
#define IVG_FWCFG_RUN       "opt/ivsh-guest/run"

/* IvgSlot.state */
enum {
    IVG_STATE_OFF = 0,
    IVG_STATE_BOOT = 1,
    IVG_STATE_READY = 2,                    /* idle, takes commands */
    IVG_STATE_BUSY = 3,
    IVG_STATE_DEAD = 4,                     /* fatal error, see status */
};

/* IvgSlot.features */
#define IVG_F_MSIX          0x0001
#define IVG_F_INTX          0x0002
#define IVG_F_X2APIC        0x0004
#define IVG_F_BAR2_64       0x0008
#define IVG_F_MTRR          0x0010
#define IVG_F_REV0          0x0020          /* legacy device, revision 0 */
#define IVG_F_HOST          0x0040          /* IvgGlobal was valid */
#define IVG_F_Q35           0x0080
#define IVG_F_KVM           0x0100          /* CPUID shows a KVM hypervisor */

/* Commands (mailbox.cmd) and their arguments */
enum {
    IVG_CMD_NONE = 0,
    IVG_CMD_NOP = 1,
    /* arg0 peer, arg1 vector (IVG_NO_PEER: stop responding) */
    IVG_CMD_RESPOND = 2,
    /* arg0 peer, arg1 vector, arg2 round trips, arg3 warm-up, arg4 ms */
    IVG_CMD_PINGPONG = 3,
    /* arg0 peer, arg1 vector, arg2 doorbells, arg4 ms */
    IVG_CMD_BLAST = 4,
    /* arg0 bytes, arg1 BAR2 offset, arg2 repetitions */
    IVG_CMD_COPY = 5,
    /* arg0 peer (own ID: ring itself), arg1 vector, arg4 ms */
    IVG_CMD_MASKTEST = 6,
    /* arg0 exit code */
    IVG_CMD_EXIT = 7,
    /* every vector rings itself, then MASKTEST on itself; arg4 ms */
    IVG_CMD_SELFTEST = 8,
    /*
     * MSI-X off, ring itself on arg1, see the PBA bit and no interrupt,
     * MSI-X on, see the interrupt; then ring again; arg4 ms
     */
    IVG_CMD_MSIXTEST = 9,
    /* ring arg0 on arg1 until IvgSlot.stop is set (count in res[0]) */
    IVG_CMD_RING = 10,
    /*
     * wait up to arg4 ms for a hot-unplug request for the device (ACPI
     * PCI hotplug of i440FX), eject it, count the interrupts of the
     * next arg2 ms, report on the console and exit: never returns
     */
    IVG_CMD_UNPLUG = 11,
};

/* IvgSlot.status */
enum {
    IVG_ST_OK = 0,
    IVG_ST_TIMEOUT = 1,
    IVG_ST_BADARG = 2,
    IVG_ST_NOIRQ = 3,                       /* device has no interrupt */
    IVG_ST_NOPBA = 4,                       /* PBA bit never set */
    IVG_ST_EARLY = 5,                       /* delivered while masked */
    IVG_ST_LOST = 6,                        /* not delivered on unmask */
    IVG_ST_BADCMD = 7,
    IVG_ST_EXCEPTION = 8,
    IVG_ST_NOUNPLUG = 9,                    /* no unplug request came */
};

/* Results of IVG_CMD_PINGPONG (IvgSlot.res[]) */
enum {
    IVG_R_PP_COUNT,                         /* measured round trips */
    IVG_R_PP_SUM_NS,
    IVG_R_PP_MIN_NS,
    IVG_R_PP_MAX_NS,
    IVG_R_PP_TICKS,                         /* TSC ticks for all of them */
    IVG_R_PP_RETRIES,                       /* warm-up doorbells re-sent */
};

/* Results of IVG_CMD_BLAST */
enum {
    IVG_R_BL_COUNT,
    IVG_R_BL_TICKS,                         /* doorbell writes only */
};

/* Results of IVG_CMD_COPY: TSC ticks for arg2 copies of arg0 bytes */
enum {
    IVG_R_CP_RAM_TO_BAR2,
    IVG_R_CP_BAR2_TO_RAM,
    IVG_R_CP_RAM_TO_RAM,
    IVG_R_CP_BYTES,
};

/* Results of IVG_CMD_MASKTEST and IVG_CMD_SELFTEST */
enum {
    IVG_R_MT_PBA_SET,                       /* pending bit seen, masked */
    IVG_R_MT_EARLY,                         /* interrupts while masked */
    IVG_R_MT_DELIVERED,                     /* interrupts after unmask */
    IVG_R_MT_PBA_AFTER,                     /* pending bit after unmask */
    IVG_R_MT_TICKS,                         /* unmask to interrupt */
    IVG_R_ST_VECTORS,                       /* SELFTEST: vectors rung */
    IVG_R_ST_OK,                            /* SELFTEST: vectors delivered */
    IVG_R_MX_AGAIN,                         /* MSIXTEST: ring after enable */
};

/* Results of IVG_CMD_RING and IVG_CMD_UNPLUG */
enum {
    IVG_R_RG_COUNT,                         /* RING: doorbells so far */
    IVG_R_UP_ARMED = 1,                     /* UNPLUG: waiting for it */
};

#define IVG_NUM_RESULTS     16
#define IVG_NUM_ARGS        6

/*
 * Log-linear latency histogram in nanoseconds: values below 64 have a
 * bucket each; above, every power of two is split into 64 buckets, so a
 * bucket is at most 1/64 of its value wide (<= 0.8 % error at the
 * midpoint).  Values of 2^32 ns and more land in the last bucket.
 */
#define IVG_HIST_SUB_BITS   6
#define IVG_HIST_SUB        (1u << IVG_HIST_SUB_BITS)
#define IVG_HIST_BUCKETS    ((32 - IVG_HIST_SUB_BITS + 1) * IVG_HIST_SUB)

static inline uint32_t ivg_hist_bucket(uint32_t ns)
{
    uint32_t e;

    if (ns < IVG_HIST_SUB) {
        return ns;
    }
    e = 31 - __builtin_clz(ns);
    return (e - IVG_HIST_SUB_BITS + 1) * IVG_HIST_SUB +
           ((ns >> (e - IVG_HIST_SUB_BITS)) & (IVG_HIST_SUB - 1));
}

/* Smallest value that lands in bucket @b */
static inline uint64_t ivg_hist_low(uint32_t b)
{
    uint32_t e, sub;

    if (b < IVG_HIST_SUB) {
        return b;
    }
    e = b / IVG_HIST_SUB + IVG_HIST_SUB_BITS - 1;
    sub = b % IVG_HIST_SUB;
    return (uint64_t)(IVG_HIST_SUB + sub) << (e - IVG_HIST_SUB_BITS);
}

/* Width of bucket @b */
static inline uint64_t ivg_hist_width(uint32_t b)
{
    if (b < IVG_HIST_SUB) {
        return 1;
    }
    return 1ull << (b / IVG_HIST_SUB - 1);
}

typedef struct IvgGlobal {
    uint32_t magic;             /* IVG_GLOBAL_MAGIC, written last */
    uint32_t version;
    uint32_t host_id;           /* peer ID of the host driver or NO_PEER */
    uint32_t host_vector;       /* vector to ring the host on */
    uint32_t tsc_khz;           /* host TSC frequency, 0 if unknown */
    uint32_t reserved[11];
} IvgGlobal;

typedef struct IvgMailbox {
    uint32_t seq;
    uint32_t cmd;
    uint32_t arg[IVG_NUM_ARGS];
} IvgMailbox;

typedef struct IvgSlot {
    /* 0x000: written by the owning guest */
    uint32_t magic;             /* IVG_SLOT_MAGIC once booted */
    uint32_t version;
    uint32_t state;             /* IVG_STATE_* */
    uint32_t id;                /* IVPosition */
    uint32_t features;          /* IVG_F_* */
    uint32_t nvectors;          /* MSI-X table size (0: none) */
    uint32_t intx_gsi;          /* IO-APIC input of INTx (0: none) */
    uint32_t pci_bdf;           /* bus << 8 | devfn */
    uint32_t tsc_khz;           /* guest's own calibration */
    uint32_t rdtsc_ticks;       /* back-to-back rdtsc, minimum */
    uint32_t bar2_kib;          /* BAR2 size in KiB */
    uint32_t done_seq;          /* mailbox.seq of the finished command */
    uint32_t status;            /* IVG_ST_* of that command */
    uint32_t ping;              /* initiator: sequence number sent */
    uint32_t pong;              /* responder: last ping echoed */
    uint32_t boot_ms;           /* reset to ready, by the guest TSC */
    uint32_t respond_peer;      /* responder mode: peer or NO_PEER */
    uint32_t respond_vector;
    uint32_t spurious;          /* interrupts nobody expected */
    uint32_t stop;              /* commander: end IVG_CMD_RING */
    uint32_t reserved0[12];
    /* 0x080 */
    uint64_t res[IVG_NUM_RESULTS];
    /* 0x100: interrupts taken per MSI-X vector (INTx counts as 0) */
    uint32_t irq_count[192];
    /* 0x400: written by the commander */
    IvgMailbox mailbox;
    uint32_t reserved1[(0x1000 - 0x420) / 4];
    /* 0x1000: latency histogram of the last IVG_CMD_PINGPONG */
    uint32_t hist[IVG_HIST_BUCKETS];
    uint32_t reserved2[(IVG_SLOT_SIZE - 0x1000) / 4 - IVG_HIST_BUCKETS];
} IvgSlot;

_Static_assert(sizeof(IvgGlobal) == 64, "IvgGlobal layout");
_Static_assert(offsetof(IvgSlot, res) == 0x80, "IvgSlot layout");
_Static_assert(offsetof(IvgSlot, irq_count) == 0x100, "IvgSlot layout");
_Static_assert(offsetof(IvgSlot, mailbox) == 0x400, "IvgSlot layout");
_Static_assert(offsetof(IvgSlot, hist) == 0x1000, "IvgSlot layout");
_Static_assert(sizeof(IvgSlot) == IVG_SLOT_SIZE, "IvgSlot layout");
_Static_assert(IVG_SLOT(IVG_MAX_SLOTS) <= IVG_DATA_OFFSET, "BAR2 layout");

#endif
