/*
 * ivshmem test guest: CPU helpers and the pieces shared between its files
 *
 * The guest runs in 32-bit flat protected mode without paging, with
 * interrupts delivered through the local APIC (x2APIC when the CPU has
 * it).  Nothing here allocates; all state lives in .bss.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef IVG_H
#define IVG_H

#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdarg.h>
#include "ivsh-guest.h"

#define barrier() asm volatile("" : : : "memory")

static inline void outb(uint16_t port, uint8_t v)
{
    asm volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
    asm volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
    asm volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;

    asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint16_t inw(uint16_t port)
{
    uint16_t v;

    asm volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint32_t inl(uint16_t port)
{
    uint32_t v;

    asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;

    asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    asm volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v),
                 "d"((uint32_t)(v >> 32)) : "memory");
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;

    asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t *a,
                         uint32_t *b, uint32_t *c, uint32_t *d)
{
    asm volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
                 : "a"(leaf), "c"(sub));
}

static inline void cli(void)
{
    asm volatile("cli" : : : "memory");
}

static inline void sti(void)
{
    asm volatile("sti" : : : "memory");
}

/* Wait for an interrupt; sti's one-instruction shadow closes the race */
static inline void sti_hlt(void)
{
    asm volatile("sti; hlt" : : : "memory");
}

/*
 * Memory that changes behind the compiler's back: device registers,
 * BAR2 (written by peers and the host), and what interrupt handlers
 * share with the code they interrupt.  Accesses through these types are
 * never merged or elided; x86 keeps stores in order, and cli/sti/hlt are
 * compiler barriers.
 */
typedef volatile uint32_t SharedU32;        /* see above */
typedef volatile IvgSlot SharedSlot;        /* see above */
typedef volatile IvgGlobal SharedGlobal;    /* see above */
typedef volatile IvgMailbox SharedMailbox;  /* see above */

static inline uint32_t mmio_read32(uintptr_t addr)
{
    return *(SharedU32 *)addr;
}

static inline void mmio_write32(uintptr_t addr, uint32_t v)
{
    *(SharedU32 *)addr = v;
}

/* 64 / 32 bit division without libgcc */
static inline uint64_t div64(uint64_t n, uint32_t d)
{
    uint32_t hi = n >> 32, lo = n, qhi, qlo, r;

    qhi = hi / d;
    r = hi % d;
    asm("divl %4" : "=a"(qlo), "=d"(r) : "a"(lo), "d"(r), "rm"(d));
    return ((uint64_t)qhi << 32) | qlo;
}

/* Registers saved by the interrupt stubs of start.S */
typedef struct IvgFrame {
    uint32_t edi, esi, ebp, esp, ebx, edx, ecx, eax;
    uint32_t vector, error;
    uint32_t eip, cs, eflags;
} IvgFrame;

/* start.S */
extern const uint8_t ivg_stubs[];
#define IVG_STUB_SIZE 16

/* cpu.c */
void ivg_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int ivg_strcmp(const char *a, const char *b);
void ivg_exit(uint32_t code) __attribute__((noreturn));
void ivg_cpu_init(void);
bool ivg_x2apic(void);
uint32_t ivg_apic_id(void);
void ivg_eoi(void);
void ivg_timer_start(uint32_t ms);
void ivg_timer_stop(void);
extern SharedU32 ivg_timer_fired;
uint32_t ivg_tsc_calibrate(void);
void ivg_mtrr_init(uint64_t ram_size, uint32_t bar2, uint64_t bar2_size);
void ivg_ioapic_route(uint32_t gsi, uint8_t vector, bool level);
uint32_t ivg_fwcfg_file(const char *name, void *buf, uint32_t size);
uint64_t ivg_fwcfg_ram_size(void);
/* Called for every interrupt and exception */
void ivg_trap(IvgFrame *f);
/* main.c: called by start.S with the TSC at reset */
void ivg_main(uint64_t boot_tsc);
void ivg_irq(uint32_t vector);

/* pci.c */
typedef struct IvgDev {
    uint32_t bdf;               /* bus << 8 | devfn */
    uint8_t revision;
    uint8_t pin;                /* interrupt pin, 0: none */
    bool q35;
    uint32_t bar0;              /* registers */
    uint32_t bar1;              /* MSI-X, 0 if absent */
    uint32_t bar2;              /* shared memory */
    uint64_t bar2_size;
    bool bar2_64;
    uint8_t msix_cap;           /* config offset, 0 if absent */
    uint32_t nvectors;          /* MSI-X table size */
    uintptr_t msix_table;
    uintptr_t msix_pba;
    uint32_t intx_gsi;          /* 0: no INTx route */
} IvgDev;

uint32_t ivg_pci_read(uint32_t bdf, uint8_t off, int size);
void ivg_pci_write(uint32_t bdf, uint8_t off, int size, uint32_t val);
bool ivg_pci_find(IvgDev *d);
void ivg_pci_setup(IvgDev *d);
void ivg_msix_setup(IvgDev *d, uint32_t apic_id);
void ivg_msix_mask(IvgDev *d, uint32_t vector, bool mask);
void ivg_msix_enable(IvgDev *d, bool on);
bool ivg_unplug_requested(IvgDev *d);
void ivg_unplug_eject(IvgDev *d);
bool ivg_msix_pending(IvgDev *d, uint32_t vector);
bool ivg_intx_setup(IvgDev *d);

#endif
