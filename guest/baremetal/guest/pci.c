/*
 * ivshmem test guest: PCI discovery, BARs, MSI-X and INTx routing
 *
 * Config space goes through the 0xcf8/0xcfc mechanism, which both
 * i440FX ("pc") and Q35 decode.  Only bus 0 is scanned: with
 * -nodefaults the device sits there.  BARs are placed in a window below
 * 4 GiB that avoids Q35's MMCONFIG (0xb0000000) and the APICs.
 *
 * INTx (legacy device with msi=off): the device's pin goes through the
 * chipset to an IO-APIC input.  On i440FX the slot swizzle picks PIRQ
 * A-D, which the PIIX3 routes to an ISA IRQ set in its config registers
 * 0x60-0x63.  On Q35 QEMU's ICH9 wires PIRQ A-H to GSI 16-23 directly;
 * devices in slots 0-24 use PIRQ E-H by (slot + pin - 1) % 4.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "ivg.h"
#include "hw/misc/ivsh-regs.h"

#define PCI_CONF_ADDR       0xcf8
#define PCI_CONF_DATA       0xcfc

#define PCI_ID              0x00
#define PCI_COMMAND         0x04
#define PCI_CMD_MEM         0x0002
#define PCI_CMD_MASTER      0x0004
#define PCI_CMD_INTX_OFF    0x0400
#define PCI_STATUS          0x06
#define PCI_STATUS_CAPS     0x0010
#define PCI_REVISION        0x08
#define PCI_BAR(n)          (0x10 + 4 * (n))
#define PCI_CAPS            0x34
#define PCI_INT_LINE        0x3c
#define PCI_INT_PIN         0x3d

#define PCI_CAP_MSIX        0x11
#define MSIX_CTRL           2
#define MSIX_CTRL_ENABLE    0x8000
#define MSIX_CTRL_FMASK     0x4000
#define MSIX_TABLE          4
#define MSIX_PBA            8
#define MSIX_ENTRY_SIZE     16
#define MSIX_ENTRY_CTRL     12

#define ID_I440FX           0x12378086u
#define ID_Q35_MCH          0x29c08086u
#define ID_PIIX3_ISA        0x70008086u
#define ID_PIIX4_ISA        0x71108086u
#define ID_ICH9_LPC         0x29188086u

#define BDF(bus, dev, fn)   ((bus) << 8 | (dev) << 3 | (fn))
#define PIIX_PIRQ_ROUTE     0x60
#define ICH9_PIRQA_ROUTE    0x60
#define ICH9_PIRQE_ROUTE    0x68
#define PIRQ_DISABLE        0x80
#define INTX_ISA_IRQ        11

#define BAR_WINDOW_START    0x80000000u
#define BAR_WINDOW_END      0xb0000000u

uint32_t ivg_pci_read(uint32_t bdf, uint8_t off, int size)
{
    outl(PCI_CONF_ADDR, 0x80000000u | bdf << 8 | (off & 0xfc));
    switch (size) {
    case 1:
        return inb(PCI_CONF_DATA + (off & 3));
    case 2:
        return inw(PCI_CONF_DATA + (off & 2));
    default:
        return inl(PCI_CONF_DATA);
    }
}

void ivg_pci_write(uint32_t bdf, uint8_t off, int size, uint32_t val)
{
    outl(PCI_CONF_ADDR, 0x80000000u | bdf << 8 | (off & 0xfc));
    switch (size) {
    case 1:
        outb(PCI_CONF_DATA + (off & 3), val);
        break;
    case 2:
        outw(PCI_CONF_DATA + (off & 2), val);
        break;
    default:
        outl(PCI_CONF_DATA, val);
        break;
    }
}

bool ivg_pci_find(IvgDev *d)
{
    uint32_t devfn;
    uint32_t want = IVSH_PCI_DEVICE_ID << 16 | IVSH_PCI_VENDOR_ID;

    memset(d, 0, sizeof(*d));
    d->q35 = ivg_pci_read(BDF(0, 0, 0), PCI_ID, 4) == ID_Q35_MCH;
    for (devfn = 0; devfn < 256; devfn++) {
        if (ivg_pci_read(devfn, PCI_ID, 4) == want) {
            d->bdf = devfn;
            d->revision = ivg_pci_read(devfn, PCI_REVISION, 1);
            d->pin = ivg_pci_read(devfn, PCI_INT_PIN, 1);
            return true;
        }
    }
    return false;
}

/* Size of BAR @n (0 if absent); *is64 tells whether it takes two slots */
static uint64_t bar_size(uint32_t bdf, int n, bool *is64)
{
    uint32_t lo, hi = 0xffffffffu, orig = ivg_pci_read(bdf, PCI_BAR(n), 4);
    uint64_t mask;

    *is64 = (orig & 0x7) == 0x4;
    if (orig & 1) {
        return 0;                   /* I/O BAR: ivshmem has none */
    }
    ivg_pci_write(bdf, PCI_BAR(n), 4, 0xffffffffu);
    lo = ivg_pci_read(bdf, PCI_BAR(n), 4);
    ivg_pci_write(bdf, PCI_BAR(n), 4, orig);
    if (*is64) {
        orig = ivg_pci_read(bdf, PCI_BAR(n + 1), 4);
        ivg_pci_write(bdf, PCI_BAR(n + 1), 4, 0xffffffffu);
        hi = ivg_pci_read(bdf, PCI_BAR(n + 1), 4);
        ivg_pci_write(bdf, PCI_BAR(n + 1), 4, orig);
    }
    mask = (uint64_t)hi << 32 | (lo & ~0xfu);
    if (!(lo & ~0xfu)) {
        return 0;
    }
    return ~mask + 1;
}

static uint32_t bar_place(uint32_t bdf, int n, uint64_t size, bool is64,
                          uint32_t *next)
{
    uint32_t align = size < 4096 ? 4096 : size;
    uint32_t addr = (*next + align - 1) & ~(align - 1);

    if (!size || size > BAR_WINDOW_END - BAR_WINDOW_START ||
        addr + size > BAR_WINDOW_END || addr < *next) {
        return 0;
    }
    ivg_pci_write(bdf, PCI_BAR(n), 4, addr);
    if (is64) {
        ivg_pci_write(bdf, PCI_BAR(n + 1), 4, 0);
    }
    *next = addr + size;
    return addr;
}

static uint8_t find_cap(uint32_t bdf, uint8_t id)
{
    uint8_t pos;
    int guard = 48;

    if (!(ivg_pci_read(bdf, PCI_STATUS, 2) & PCI_STATUS_CAPS)) {
        return 0;
    }
    pos = ivg_pci_read(bdf, PCI_CAPS, 1) & 0xfc;
    while (pos && guard--) {
        if (ivg_pci_read(bdf, pos, 1) == id) {
            return pos;
        }
        pos = ivg_pci_read(bdf, pos + 1, 1) & 0xfc;
    }
    return 0;
}

/* Assign BAR0/1/2 (largest first), enable memory decoding and mastering */
void ivg_pci_setup(IvgDev *d)
{
    uint32_t cmd = ivg_pci_read(d->bdf, PCI_COMMAND, 2);
    uint32_t next = BAR_WINDOW_START, addr[6] = { 0 }, v;
    uint64_t size0, size1;
    bool b0_64, b1_64;

    ivg_pci_write(d->bdf, PCI_COMMAND, 2,
                  cmd & ~(PCI_CMD_MEM | PCI_CMD_MASTER));
    d->bar2_size = bar_size(d->bdf, 2, &d->bar2_64);
    size0 = bar_size(d->bdf, 0, &b0_64);
    size1 = bar_size(d->bdf, 1, &b1_64);
    addr[2] = bar_place(d->bdf, 2, d->bar2_size, d->bar2_64, &next);
    addr[0] = bar_place(d->bdf, 0, size0, b0_64, &next);
    addr[1] = b0_64 ? 0 : bar_place(d->bdf, 1, size1, b1_64, &next);
    d->bar0 = addr[0];
    d->bar1 = addr[1];
    d->bar2 = addr[2];
    if (!d->bar2) {
        d->bar2_size = 0;
    }

    d->msix_cap = find_cap(d->bdf, PCI_CAP_MSIX);
    if (d->msix_cap) {
        d->nvectors = (ivg_pci_read(d->bdf, d->msix_cap + MSIX_CTRL, 2) &
                       0x7ff) + 1;
        v = ivg_pci_read(d->bdf, d->msix_cap + MSIX_TABLE, 4);
        d->msix_table = addr[v & 7] ? addr[v & 7] + (v & ~7u) : 0;
        v = ivg_pci_read(d->bdf, d->msix_cap + MSIX_PBA, 4);
        d->msix_pba = addr[v & 7] ? addr[v & 7] + (v & ~7u) : 0;
        if (!d->msix_table || !d->msix_pba) {
            d->msix_cap = 0;
            d->nvectors = 0;
        }
    }
    ivg_pci_write(d->bdf, PCI_COMMAND, 2,
                  cmd | PCI_CMD_MEM | PCI_CMD_MASTER | PCI_CMD_INTX_OFF);
}

/* Vector i -> IDT vector IVG_IDT_MSIX_BASE + i on this CPU, unmasked */
void ivg_msix_setup(IvgDev *d, uint32_t apic_id)
{
    uint32_t i, ctrl;

    for (i = 0; i < d->nvectors; i++) {
        uintptr_t e = d->msix_table + i * MSIX_ENTRY_SIZE;

        mmio_write32(e + MSIX_ENTRY_CTRL, 1);
        if (i >= IVG_MAX_VECTORS) {
            continue;               /* no IDT vector left: stays masked */
        }
        mmio_write32(e, 0xfee00000u | (apic_id & 0xff) << 12);
        mmio_write32(e + 4, 0);
        mmio_write32(e + 8, IVG_IDT_MSIX_BASE + i);
        mmio_write32(e + MSIX_ENTRY_CTRL, 0);
    }
    ctrl = ivg_pci_read(d->bdf, d->msix_cap + MSIX_CTRL, 2);
    ivg_pci_write(d->bdf, d->msix_cap + MSIX_CTRL, 2,
                  (ctrl | MSIX_CTRL_ENABLE) & ~MSIX_CTRL_FMASK);
}

/* MSI-X Enable bit of the Message Control register */
void ivg_msix_enable(IvgDev *d, bool on)
{
    uint32_t ctrl = ivg_pci_read(d->bdf, d->msix_cap + MSIX_CTRL, 2);

    ctrl = on ? ctrl | MSIX_CTRL_ENABLE : ctrl & ~MSIX_CTRL_ENABLE;
    ivg_pci_write(d->bdf, d->msix_cap + MSIX_CTRL, 2, ctrl);
}

/*
 * ACPI PCI hotplug of the i440FX machine (PIIX4 PM, I/O ports at
 * 0xae00): the bus select register, the bitmap of slots with a pending
 * removal request and the eject register an OSPM writes to finish one
 */
#define PCIHP_DOWN          0xae04
#define PCIHP_EJECT         0xae08
#define PCIHP_SELECT        0xae10

bool ivg_unplug_requested(IvgDev *d)
{
    if (d->q35) {
        return false;
    }
    outl(PCIHP_SELECT, 0);
    return (inl(PCIHP_DOWN) >> ((d->bdf >> 3) & 0x1f)) & 1;
}

void ivg_unplug_eject(IvgDev *d)
{
    outl(PCIHP_SELECT, 0);
    outl(PCIHP_EJECT, 1u << ((d->bdf >> 3) & 0x1f));
}

void ivg_msix_mask(IvgDev *d, uint32_t vector, bool mask)
{
    uintptr_t e = d->msix_table + vector * MSIX_ENTRY_SIZE;

    mmio_write32(e + MSIX_ENTRY_CTRL, mask ? 1 : 0);
    (void)mmio_read32(e + MSIX_ENTRY_CTRL);
}

bool ivg_msix_pending(IvgDev *d, uint32_t vector)
{
    return (mmio_read32(d->msix_pba + vector / 32 * 4) >> (vector % 32)) & 1;
}

/* Route INTx to IVG_IDT_INTX through the IO-APIC; false if impossible */
bool ivg_intx_setup(IvgDev *d)
{
    uint32_t slot = (d->bdf >> 3) & 0x1f, pirq, gsi, id, i, cmd;

    if (!d->pin || d->pin > 4 || (d->bdf >> 8)) {
        return false;
    }
    if (d->q35) {
        if (slot > 24 || ivg_pci_read(BDF(0, 31, 0), PCI_ID, 4) !=
            ID_ICH9_LPC) {
            return false;
        }
        /* keep PIRQs off the 8259: the IO-APIC sees them as GSI 16-23 */
        for (i = 0; i < 4; i++) {
            ivg_pci_write(BDF(0, 31, 0), ICH9_PIRQA_ROUTE + i, 1,
                          PIRQ_DISABLE);
            ivg_pci_write(BDF(0, 31, 0), ICH9_PIRQE_ROUTE + i, 1,
                          PIRQ_DISABLE);
        }
        pirq = (slot + d->pin - 1) % 4 + 4;
        gsi = 16 + pirq;
    } else {
        id = ivg_pci_read(BDF(0, 1, 0), PCI_ID, 4);
        if (id != ID_PIIX3_ISA && id != ID_PIIX4_ISA) {
            return false;
        }
        pirq = (d->pin - 1 + slot - 1) & 3;
        ivg_pci_write(BDF(0, 1, 0), PIIX_PIRQ_ROUTE + pirq, 1,
                      INTX_ISA_IRQ);
        gsi = INTX_ISA_IRQ;
    }
    ivg_pci_write(d->bdf, PCI_INT_LINE, 1, gsi);
    ivg_ioapic_route(gsi, IVG_IDT_INTX, true);
    d->intx_gsi = gsi;
    mmio_write32(d->bar0 + IVSH_REG_INTR_MASK, IVSH_INTR_DOORBELL);
    cmd = ivg_pci_read(d->bdf, PCI_COMMAND, 2);
    ivg_pci_write(d->bdf, PCI_COMMAND, 2, cmd & ~PCI_CMD_INTX_OFF);
    return true;
}
