/*
 * ivshmem test guest: console, IDT, local APIC, IO-APIC, MTRRs, fw_cfg
 *
 * Console output goes to the debugcon port 0xe9 (QEMU -debugcon), the
 * exit status to isa-debug-exit at 0xf4.  Both are plain port writes
 * that do nothing when the device is absent.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "ivg.h"

#define DEBUGCON_PORT       0xe9
#define DEBUG_EXIT_PORT     0xf4

#define PIC1_DATA           0x21
#define PIC2_DATA           0xa1

#define FWCFG_SEL           0x510
#define FWCFG_DATA          0x511
#define FWCFG_SIGNATURE     0x00
#define FWCFG_RAM_SIZE      0x03
#define FWCFG_FILE_DIR      0x19

#define MSR_APIC_BASE       0x1b
#define APIC_BASE_EN        (1u << 11)
#define APIC_BASE_EXTD      (1u << 10)
#define MSR_X2APIC_FIRST    0x800
#define MSR_MTRRCAP         0xfe
#define MSR_MTRR_BASE(n)    (0x200 + 2 * (n))
#define MSR_MTRR_MASK(n)    (0x201 + 2 * (n))
#define MSR_MTRR_DEF_TYPE   0x2ff
#define MTRR_ENABLE         (1u << 11)
#define MTRR_MASK_VALID     (1u << 11)
#define MTRR_UC             0
#define MTRR_WB             6

#define APIC_MMIO           0xfee00000u
#define APIC_ID             0x20
#define APIC_TPR            0x80
#define APIC_EOI            0xb0
#define APIC_SVR            0xf0
#define APIC_SVR_ENABLE     0x100
#define APIC_LVT_TIMER      0x320
#define APIC_LVT_LINT0      0x350
#define APIC_LVT_LINT1      0x360
#define APIC_LVT_ERROR      0x370
#define APIC_LVT_MASKED     (1u << 16)
#define APIC_LVT_NMI        (4u << 8)
#define APIC_TMICT          0x380
#define APIC_TDCR           0x3e0
#define APIC_TDCR_DIV128    0xa

#define IOAPIC_MMIO         0xfec00000u
#define IOAPIC_VER          0x01
#define IOAPIC_RTE(n)       (0x10 + 2 * (n))
#define IOAPIC_LEVEL        (1u << 15)
#define IOAPIC_MASKED       (1u << 16)

#define CPUID1_EDX_MTRR     (1u << 12)
#define CPUID1_ECX_X2APIC   (1u << 21)
#define CPUID1_ECX_HYPERV   (1u << 31)

typedef struct IdtGate {
    uint16_t off_lo;
    uint16_t sel;
    uint8_t zero;
    uint8_t type;
    uint16_t off_hi;
} __attribute__((packed)) IdtGate;

static IdtGate idt[256] __attribute__((aligned(8)));
static bool x2apic;
SharedU32 ivg_timer_fired;

/* Console */

static void con_putc(char c)
{
    outb(DEBUGCON_PORT, c);
}

static void con_puts(const char *s)
{
    while (*s) {
        con_putc(*s++);
    }
}

static void con_num(uint64_t v, unsigned base, int width, char pad)
{
    char buf[24];
    int n = 0;

    do {
        uint64_t q = div64(v, base);

        buf[n++] = "0123456789abcdef"[v - q * base];
        v = q;
    } while (v);
    while (n < width) {
        buf[n++] = pad;
    }
    while (n) {
        con_putc(buf[--n]);
    }
}

/* A printf for %s %c %d %u %x with width, zero pad and l/ll */
void ivg_printf(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    for (; *fmt; fmt++) {
        char pad = ' ';
        int width = 0, longs = 0;
        uint64_t v;
        int64_t sv;

        if (*fmt != '%') {
            con_putc(*fmt);
            continue;
        }
        fmt++;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9') {
            width = width * 10 + *fmt++ - '0';
        }
        while (*fmt == 'l') {
            longs++;
            fmt++;
        }
        switch (*fmt) {
        case 's':
            con_puts(va_arg(ap, const char *));
            break;
        case 'c':
            con_putc(va_arg(ap, int));
            break;
        case 'd':
            if (longs >= 2) {
                sv = va_arg(ap, int64_t);
            } else {
                sv = va_arg(ap, int32_t);
            }
            if (sv < 0) {
                con_putc('-');
                sv = -sv;
            }
            con_num(sv, 10, width, pad);
            break;
        case 'u':
        case 'x':
            if (longs >= 2) {
                v = va_arg(ap, uint64_t);
            } else {
                v = va_arg(ap, uint32_t);
            }
            con_num(v, *fmt == 'x' ? 16 : 10, width, pad);
            break;
        case '%':
            con_putc('%');
            break;
        default:
            con_putc('?');
            break;
        }
    }
    va_end(ap);
}

void *memset(void *d, int c, size_t n)
{
    uint8_t *p = d;

    while (n--) {
        *p++ = c;
    }
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    uint8_t *p = d;
    const uint8_t *q = s;

    while (n--) {
        *p++ = *q++;
    }
    return d;
}

int ivg_strcmp(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return (uint8_t)*a - (uint8_t)*b;
}

void ivg_exit(uint32_t code)
{
    ivg_printf("ivsh-guest: exit 0x%x\n", code);
    outl(DEBUG_EXIT_PORT, code);
    for (;;) {
        asm volatile("cli; hlt");
    }
}

/* Local APIC */

bool ivg_x2apic(void)
{
    return x2apic;
}

static void apic_write(uint32_t reg, uint32_t v)
{
    if (x2apic) {
        wrmsr(MSR_X2APIC_FIRST + (reg >> 4), v);
    } else {
        mmio_write32(APIC_MMIO + reg, v);
    }
}

static uint32_t apic_read(uint32_t reg)
{
    if (x2apic) {
        return rdmsr(MSR_X2APIC_FIRST + (reg >> 4));
    }
    return mmio_read32(APIC_MMIO + reg);
}

uint32_t ivg_apic_id(void)
{
    uint32_t id = apic_read(APIC_ID);

    return x2apic ? id : id >> 24;
}

void ivg_eoi(void)
{
    apic_write(APIC_EOI, 0);
}

static void apic_init(void)
{
    uint32_t a, b, c, d;
    uint64_t base;

    cpuid(1, 0, &a, &b, &c, &d);
    x2apic = c & CPUID1_ECX_X2APIC;
    base = rdmsr(MSR_APIC_BASE) | APIC_BASE_EN;
    wrmsr(MSR_APIC_BASE, base);
    if (x2apic) {
        wrmsr(MSR_APIC_BASE, base | APIC_BASE_EXTD);
    }
    /*
     * Software-enable the APIC first: while SVR bit 8 is clear, the LVT
     * entries written stay masked (on hardware and under KVM), so the
     * timer would never fire.
     */
    apic_write(APIC_SVR, APIC_SVR_ENABLE | IVG_IDT_SPURIOUS);
    apic_write(APIC_TPR, 0);
    apic_write(APIC_LVT_LINT0, APIC_LVT_MASKED);
    apic_write(APIC_LVT_LINT1, APIC_LVT_NMI);
    apic_write(APIC_LVT_ERROR, APIC_LVT_MASKED);
    apic_write(APIC_TDCR, APIC_TDCR_DIV128);
    apic_write(APIC_LVT_TIMER, IVG_IDT_TIMER);
    apic_write(APIC_TMICT, 0);
}

/*
 * One-shot timer that sets ivg_timer_fired after @ms milliseconds.  QEMU
 * and KVM run the APIC timer at 1 GHz, so one tick at divide-by-128 is
 * 128 ns; the longest wait is about 549 s.
 */
void ivg_timer_start(uint32_t ms)
{
    uint64_t count = (uint64_t)ms * 15625 / 2;

    ivg_timer_fired = 0;
    apic_write(APIC_TMICT, count > 0xffffffffu ? 0xffffffffu : count);
}

void ivg_timer_stop(void)
{
    apic_write(APIC_TMICT, 0);
}

/* TSC kHz measured against a 20 ms APIC timer */
uint32_t ivg_tsc_calibrate(void)
{
    uint64_t t0, t1;

    cli();
    ivg_timer_start(20);
    t0 = rdtsc();
    while (!ivg_timer_fired) {
        sti_hlt();
        cli();
    }
    t1 = rdtsc();
    sti();
    return div64(t1 - t0, 20);
}

/* IO-APIC */

static void ioapic_write(uint32_t reg, uint32_t v)
{
    mmio_write32(IOAPIC_MMIO, reg);
    mmio_write32(IOAPIC_MMIO + 0x10, v);
}

static uint32_t ioapic_read(uint32_t reg)
{
    mmio_write32(IOAPIC_MMIO, reg);
    return mmio_read32(IOAPIC_MMIO + 0x10);
}

static void ioapic_init(void)
{
    uint32_t n = ((ioapic_read(IOAPIC_VER) >> 16) & 0xff) + 1;
    uint32_t i;

    for (i = 0; i < n; i++) {
        ioapic_write(IOAPIC_RTE(i), IOAPIC_MASKED);
        ioapic_write(IOAPIC_RTE(i) + 1, 0);
    }
}

/* Route @gsi, active high, to @vector on this CPU */
void ivg_ioapic_route(uint32_t gsi, uint8_t vector, bool level)
{
    ioapic_write(IOAPIC_RTE(gsi) + 1, ivg_apic_id() << 24);
    ioapic_write(IOAPIC_RTE(gsi), vector | (level ? IOAPIC_LEVEL : 0));
}

/* IDT */

static void idt_init(void)
{
    struct {
        uint16_t limit;
        uint32_t base;
    } __attribute__((packed)) desc = { sizeof(idt) - 1, (uintptr_t)idt };
    int i;

    for (i = 0; i < 256; i++) {
        uintptr_t stub = (uintptr_t)ivg_stubs + i * IVG_STUB_SIZE;

        idt[i].off_lo = stub;
        idt[i].sel = 0x08;
        idt[i].zero = 0;
        idt[i].type = 0x8e;         /* present, DPL 0, interrupt gate */
        idt[i].off_hi = stub >> 16;
    }
    asm volatile("lidt %0" : : "m"(desc));
}

void ivg_trap(IvgFrame *f)
{
    if (f->vector < 32) {
        ivg_printf("ivsh-guest: exception %u error 0x%x at eip 0x%x\n",
                   f->vector, f->error, f->eip);
        ivg_exit(IVG_EXIT_FATAL);
    }
    if (f->vector == IVG_IDT_SPURIOUS) {
        return;                     /* no EOI for spurious interrupts */
    }
    if (f->vector == IVG_IDT_TIMER) {
        ivg_timer_fired = 1;
        ivg_eoi();
        return;
    }
    ivg_irq(f->vector);
}

/* MTRRs: memory and BAR2 write-back, the rest (MMIO) uncached */

static uint32_t mtrr_next;
static uint32_t mtrr_count;
static uint64_t mtrr_phys_mask;

static void mtrr_add(uint64_t base, uint64_t size, uint32_t type)
{
    while (size && mtrr_next < mtrr_count) {
        /* largest naturally aligned power of two at base */
        uint64_t chunk = 1ull << 63;

        while (chunk > size || (base & (chunk - 1))) {
            chunk >>= 1;
        }
        wrmsr(MSR_MTRR_BASE(mtrr_next), base | type);
        wrmsr(MSR_MTRR_MASK(mtrr_next),
              (~(chunk - 1) & mtrr_phys_mask) | MTRR_MASK_VALID);
        mtrr_next++;
        base += chunk;
        size -= chunk;
    }
}

void ivg_mtrr_init(uint64_t ram_size, uint32_t bar2, uint64_t bar2_size)
{
    uint32_t a, b, c, d, bits = 36, cr0;

    cpuid(1, 0, &a, &b, &c, &d);
    if (!(d & CPUID1_EDX_MTRR)) {
        return;
    }
    cpuid(0x80000000, 0, &a, &b, &c, &d);
    if (a >= 0x80000008) {
        cpuid(0x80000008, 0, &a, &b, &c, &d);
        bits = a & 0xff;
    }
    mtrr_phys_mask = (1ull << bits) - 1;
    mtrr_count = rdmsr(MSR_MTRRCAP) & 0xff;
    mtrr_next = 0;

    /* SDM 12.11.7.2: caches off and flushed while MTRRs change */
    asm volatile("mov %%cr0, %0" : "=r"(cr0));
    asm volatile("mov %0, %%cr0; wbinvd" : : "r"(cr0 | (1u << 30)));
    wrmsr(MSR_MTRR_DEF_TYPE, 0);
    mtrr_add(0, ram_size, MTRR_WB);
    if (bar2_size) {
        mtrr_add(bar2, bar2_size, MTRR_WB);
    }
    while (mtrr_next < mtrr_count) {
        wrmsr(MSR_MTRR_MASK(mtrr_next++), 0);
    }
    wrmsr(MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_UC);
    asm volatile("wbinvd; mov %0, %%cr0" : : "r"(cr0 & ~(3u << 29)));
}

/* fw_cfg (port interface) */

static void fwcfg_select(uint16_t key)
{
    outw(FWCFG_SEL, key);
}

static void fwcfg_read(void *buf, uint32_t n)
{
    uint8_t *p = buf;

    while (n--) {
        *p++ = inb(FWCFG_DATA);
    }
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

static bool fwcfg_present(void)
{
    char sig[4];

    fwcfg_select(FWCFG_SIGNATURE);
    fwcfg_read(sig, 4);
    return sig[0] == 'Q' && sig[1] == 'E' && sig[2] == 'M' && sig[3] == 'U';
}

/* Read fw_cfg file @name into @buf; its size, 0 if absent */
uint32_t ivg_fwcfg_file(const char *name, void *buf, uint32_t size)
{
    uint8_t ent[64];
    uint32_t n, i, len;

    if (!fwcfg_present()) {
        return 0;
    }
    fwcfg_select(FWCFG_FILE_DIR);
    fwcfg_read(ent, 4);
    n = be32(ent);
    for (i = 0; i < n; i++) {
        fwcfg_read(ent, 64);
        ent[63] = 0;
        if (!ivg_strcmp((const char *)ent + 8, name)) {
            len = be32(ent);
            fwcfg_select(ent[4] << 8 | ent[5]);
            fwcfg_read(buf, len < size ? len : size);
            return len;
        }
    }
    return 0;
}

uint64_t ivg_fwcfg_ram_size(void)
{
    uint64_t v = 0;

    if (fwcfg_present()) {
        fwcfg_select(FWCFG_RAM_SIZE);
        fwcfg_read(&v, 8);
    }
    return v;
}

void ivg_cpu_init(void)
{
    /* legacy PICs fully masked: interrupts come through the (IO-)APIC */
    outb(PIC1_DATA, 0xff);
    outb(PIC2_DATA, 0xff);
    idt_init();
    apic_init();
    ioapic_init();
}
