/*
 * kvm-floor: the raw-KVM doorbell floor (benchmark floor f1)
 *
 * A minimal VMM that uses nothing but KVM ioctls to run the doorbell
 * ping-pong the ivshmem device is built for, so that the device's numbers
 * can be set against what the kernel alone can do on the same machine.
 *
 * Each VM has one vCPU (one host thread), an in-kernel irqchip, 128 KiB
 * of RAM and a tiny real-mode guest (kvm-floor-guest.S) with an x2APIC.
 * A doorbell is a 4-byte MMIO write to guest-physical 0xe0000, which is
 * not RAM.  An interrupt is an MSI (vector 0x40) raised through an irqfd
 * on a KVM_IRQ_ROUTING_MSI route.  Modes:
 *
 *   vm-vm             VM A's doorbell is a KVM ioeventfd (4 bytes,
 *                     datamatch) whose eventfd is VM B's irqfd, and the
 *                     other way round: no VMM code runs per round trip.
 *                     A's guest times the round trips with rdtsc.
 *   vm-vm-userspace   no ioeventfd: the doorbell write exits to the VMM
 *                     (KVM_EXIT_MMIO), whose vCPU thread writes the
 *                     peer's irqfd eventfd (ioeventfd=off in QEMU).
 *   host-vm           a host thread writes the VM's irqfd eventfd, the
 *                     guest ISR rings back through an ioeventfd, the host
 *                     busy-polls that eventfd; clock_gettime on the host.
 *   host-vm-userspace the same with the doorbell exiting to the VMM.
 *
 * Guests idle in HLT (a spinning guest makes interrupt delivery much
 * slower on nested KVM).  The vCPU threads (host thread and vCPU thread
 * in the host modes) are pinned to CPUs 0 and 1 unless told otherwise.
 *
 * Exit accounting: every KVM_RUN return is counted; the returns that are
 * not the guest's control port writes are "user exits" and are reported
 * per round trip (0 when the doorbell path stays in the kernel).  When
 * the kernel has binary statistics (KVM_GET_STATS_FD), the per-vCPU
 * counters (exits, halt_exits, irq_injections, ...) are reported per
 * round trip as well.
 *
 * Copyright (c) 2026 The ivshmem project contributors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/kvm.h>

#include "floor-common.h"
#include "kvm-floor.h"
#include "kvm-floor-guest.h"

#define PROG "kvm-floor"

/* GSI of the one MSI route of each VM */
#define FLOOR_GSI           24
/* CPUID.1:ECX.x2APIC */
#define CPUID_1_ECX_X2APIC  (1u << 21)

typedef enum FloorMode {
    MODE_VM_VM,
    MODE_VM_VM_USER,
    MODE_HOST_VM,
    MODE_HOST_VM_USER,
} FloorMode;

static const char *const mode_names[] = {
    [MODE_VM_VM] = "vm-vm",
    [MODE_VM_VM_USER] = "vm-vm-userspace",
    [MODE_HOST_VM] = "host-vm",
    [MODE_HOST_VM_USER] = "host-vm-userspace",
};

/* KVM binary statistics reported per round trip, when the kernel has them */
static const char *const stat_names[] = {
    "exits", "io_exits", "mmio_exits", "halt_exits", "halt_wakeup",
    "halt_successful_poll", "irq_injections", "insn_emulation",
};
#define NSTATS FLOOR_ARRAY_SIZE(stat_names)

typedef struct FloorVm {
    const char *name;
    bool initiator;
    bool user_doorbell;         /* doorbell exits to the VMM */
    uint32_t db_val;            /* what this guest writes to its doorbell */
    int cpu;                    /* -1: not pinned */

    int vm_fd;
    int vcpu_fd;
    struct kvm_run *run;
    size_t run_size;
    uint8_t *mem;
    int ring_fd;                /* eventfd signalled by our doorbell */
    int irq_fd;                 /* eventfd raising our MSI (irqfd) */

    int stats_fd;
    int64_t stat_off[NSTATS];   /* file offset of each counter, or -1 */
    uint64_t stat_mark[NSTATS];
    uint64_t stat_done[NSTATS];

    pthread_t thread;
    bool thread_started;
    uint64_t user_exits;        /* atomic */
    uint64_t user_exits_mark;
    uint64_t user_exits_done;
    int ready;                  /* atomic: guest is set up */
    int stop;                   /* atomic: leave the run loop */
    int exited;                 /* atomic: run loop left */
} FloorVm;

typedef struct Bench {
    FloorOpts o;
    FloorMode mode;
    uint64_t n;
    uint64_t warmup;
    int64_t halt_poll_ns;       /* -1: kernel default */

    int kvm_fd;
    bool immediate_exit;
    FloorVm vm[2];              /* [0] initiator (unused in host modes) */
    uint64_t tsc_khz;           /* guest TSC (KVM_GET_TSC_KHZ) */
    uint64_t tsc_khz_host;      /* host TSC, calibrated */

    uint64_t *samples;          /* warm-up + n, raw ticks */
    uint64_t nsamples;          /* atomic */
    uint64_t t_mark_ns;
    uint64_t t_done_ns;
    int done;                   /* atomic */
    int failed;                 /* atomic */
} Bench;

static Bench bench;

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " [options]\n"
"Doorbell ping-pong floor on raw KVM: ioeventfd -> eventfd -> irqfd (MSI).\n"
"\n"
"  -m, --mode MODE      vm-vm (default), vm-vm-userspace, host-vm or\n"
"                       host-vm-userspace\n"
"  -n N                 measured round trips (default 100000)\n"
"  -w, --warmup N       warm-up round trips first (default 10000)\n"
"      --cpus A,B       pin VM A's (or the host's) thread to CPU A and\n"
"                       VM B's vCPU thread to CPU B (default 0,1)\n"
"      --no-pin         do not pin\n"
"      --halt-poll-ns NS  per-VM halt polling (KVM_CAP_HALT_POLL);\n"
"                       default: the kernel's\n"
"      --timeout S      fail when no progress for S seconds (default 10)\n"
"      --json           print one JSON object instead of the summary\n"
"  -q, --quiet          no progress line\n"
"  -h, --help           this help\n"
"\n"
"Exit status: 0 done, 1 failure, 2 usage, 77 KVM cannot run it here.\n");
}

static void __attribute__((noreturn, format(printf, 1, 2)))
skip(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, PROG ": skipped: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(FLOOR_EXIT_SKIP);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, PROG ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);
}

/* A run-time failure in a thread: report once, let main() exit */
static void __attribute__((format(printf, 2, 3)))
fail(FloorVm *v, const char *fmt, ...)
{
    va_list ap;

    if (__atomic_exchange_n(&bench.failed, 1, __ATOMIC_SEQ_CST)) {
        return;
    }
    fprintf(stderr, PROG ": %s%s", v ? v->name : "", v ? ": " : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
}

static bool is_host_mode(void)
{
    return bench.mode == MODE_HOST_VM || bench.mode == MODE_HOST_VM_USER;
}

static bool is_user_mode(void)
{
    return bench.mode == MODE_VM_VM_USER || bench.mode == MODE_HOST_VM_USER;
}

static void put16(uint8_t *mem, uint32_t off, uint16_t v)
{
    mem[off] = v;
    mem[off + 1] = v >> 8;
}

static void put32(uint8_t *mem, uint32_t off, uint32_t v)
{
    put16(mem, off, v);
    put16(mem, off + 2, v >> 16);
}

static uint32_t get32(const uint8_t *mem, uint32_t off)
{
    return mem[off] | mem[off + 1] << 8 | mem[off + 2] << 16 |
           (uint32_t)mem[off + 3] << 24;
}

static int check_cap(int fd, int cap)
{
    int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

    return r < 0 ? 0 : r;
}

static void open_kvm(void)
{
    static const struct {
        int cap;
        const char *name;
    } caps[] = {
        { KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
        { KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
        { KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING" },
        { KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
        { KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD" },
        { KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
    };
    unsigned i;
    int r;

    bench.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (bench.kvm_fd < 0) {
        skip("/dev/kvm: %s", strerror(errno));
    }
    r = ioctl(bench.kvm_fd, KVM_GET_API_VERSION, 0);
    if (r != KVM_API_VERSION) {
        skip("/dev/kvm: API version %d, want %d", r, KVM_API_VERSION);
    }
    for (i = 0; i < FLOOR_ARRAY_SIZE(caps); i++) {
        if (!check_cap(bench.kvm_fd, caps[i].cap)) {
            skip("/dev/kvm lacks %s", caps[i].name);
        }
    }
    if (bench.halt_poll_ns >= 0 &&
        !check_cap(bench.kvm_fd, KVM_CAP_HALT_POLL)) {
        skip("/dev/kvm lacks KVM_CAP_HALT_POLL (--halt-poll-ns)");
    }
    bench.immediate_exit = check_cap(bench.kvm_fd, KVM_CAP_IMMEDIATE_EXIT);
}

static void set_cpuid(FloorVm *v)
{
    struct kvm_cpuid2 *cpuid = NULL;
    unsigned nent = 64, i;
    bool x2apic = false;

    for (;;) {
        free(cpuid);
        cpuid = calloc(1, sizeof(*cpuid) +
                       nent * sizeof(struct kvm_cpuid_entry2));
        if (!cpuid) {
            die("out of memory");
        }
        cpuid->nent = nent;
        if (ioctl(bench.kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0) {
            break;
        }
        if (errno != E2BIG || nent >= 4096) {
            skip("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
        }
        nent *= 2;
    }
    for (i = 0; i < cpuid->nent; i++) {
        if (cpuid->entries[i].function == 1) {
            x2apic = cpuid->entries[i].ecx & CPUID_1_ECX_X2APIC;
        }
    }
    if (!x2apic) {
        skip("KVM does not offer the guest an x2APIC");
    }
    if (ioctl(v->vcpu_fd, KVM_SET_CPUID2, cpuid) < 0) {
        die("%s: KVM_SET_CPUID2: %s", v->name, strerror(errno));
    }
    free(cpuid);
}

static void open_stats(FloorVm *v)
{
    struct kvm_stats_header hdr;
    size_t desc_size, i;
    unsigned j;
    uint8_t *descs;

    for (j = 0; j < NSTATS; j++) {
        v->stat_off[j] = -1;
    }
    v->stats_fd = -1;
    if (!check_cap(bench.kvm_fd, KVM_CAP_BINARY_STATS_FD)) {
        return;
    }
    v->stats_fd = ioctl(v->vcpu_fd, KVM_GET_STATS_FD, NULL);
    if (v->stats_fd < 0 ||
        pread(v->stats_fd, &hdr, sizeof(hdr), 0) != sizeof(hdr)) {
        v->stats_fd = -1;
        return;
    }
    desc_size = sizeof(struct kvm_stats_desc) + hdr.name_size;
    descs = calloc(hdr.num_desc, desc_size);
    if (!descs || pread(v->stats_fd, descs, hdr.num_desc * desc_size,
                        hdr.desc_offset) !=
                  (ssize_t)(hdr.num_desc * desc_size)) {
        free(descs);
        return;
    }
    for (i = 0; i < hdr.num_desc; i++) {
        struct kvm_stats_desc *d = (void *)(descs + i * desc_size);

        if (d->size != 1) {
            continue;
        }
        for (j = 0; j < NSTATS; j++) {
            if (strncmp(d->name, stat_names[j], hdr.name_size) == 0) {
                v->stat_off[j] = hdr.data_offset + d->offset;
            }
        }
    }
    free(descs);
}

static void read_stats(FloorVm *v, uint64_t *out)
{
    unsigned j;

    for (j = 0; j < NSTATS; j++) {
        out[j] = 0;
        if (v->stats_fd >= 0 && v->stat_off[j] >= 0 &&
            pread(v->stats_fd, &out[j], sizeof(out[j]),
                  v->stat_off[j]) != sizeof(out[j])) {
            out[j] = 0;
        }
    }
}

static void create_vm(FloorVm *v)
{
    struct kvm_userspace_memory_region region = { 0 };
    struct {
        struct kvm_irq_routing hdr;
        struct kvm_irq_routing_entry entry[1];
    } routing;
    struct kvm_enable_cap cap = { 0 };
    struct kvm_sregs sregs;
    struct kvm_regs regs;
    size_t code_size = kvm_floor_guest_end - kvm_floor_guest;
    int r;

    v->vm_fd = ioctl(bench.kvm_fd, KVM_CREATE_VM, 0);
    if (v->vm_fd < 0) {
        skip("KVM_CREATE_VM: %s", strerror(errno));
    }
    if (bench.halt_poll_ns >= 0) {
        cap.cap = KVM_CAP_HALT_POLL;
        cap.args[0] = bench.halt_poll_ns;
        if (ioctl(v->vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
            skip("KVM_CAP_HALT_POLL: %s", strerror(errno));
        }
    }
    /* Needed on VMX without unrestricted guest; harmless elsewhere */
    ioctl(v->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul);
    if (ioctl(v->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        skip("KVM_CREATE_IRQCHIP: %s", strerror(errno));
    }

    v->mem = mmap(NULL, KVM_FLOOR_MEM_SIZE, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (v->mem == MAP_FAILED) {
        die("mmap guest RAM: %s", strerror(errno));
    }
    region.slot = 0;
    region.guest_phys_addr = 0;
    region.memory_size = KVM_FLOOR_MEM_SIZE;
    region.userspace_addr = (uintptr_t)v->mem;
    if (ioctl(v->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
        die("%s: KVM_SET_USER_MEMORY_REGION: %s", v->name, strerror(errno));
    }

    /* One MSI route: fixed delivery, vector 0x40, to APIC ID 0 */
    memset(&routing, 0, sizeof(routing));
    routing.hdr.nr = 1;
    routing.entry[0].gsi = FLOOR_GSI;
    routing.entry[0].type = KVM_IRQ_ROUTING_MSI;
    routing.entry[0].u.msi.address_lo = KVM_FLOOR_MSI_ADDR;
    routing.entry[0].u.msi.address_hi = 0;
    routing.entry[0].u.msi.data = KVM_FLOOR_VECTOR;
    if (ioctl(v->vm_fd, KVM_SET_GSI_ROUTING, &routing) < 0) {
        skip("KVM_SET_GSI_ROUTING (MSI): %s", strerror(errno));
    }

    v->vcpu_fd = ioctl(v->vm_fd, KVM_CREATE_VCPU, 0);
    if (v->vcpu_fd < 0) {
        skip("KVM_CREATE_VCPU: %s", strerror(errno));
    }
    r = ioctl(bench.kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (r < (int)sizeof(struct kvm_run)) {
        die("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
    }
    v->run_size = r;
    v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                  v->vcpu_fd, 0);
    if (v->run == MAP_FAILED) {
        die("%s: mmap kvm_run: %s", v->name, strerror(errno));
    }
    set_cpuid(v);
    open_stats(v);

    /* The guest and its mailbox */
    if (code_size > KVM_FLOOR_STACK - 0x100 - KVM_FLOOR_CODE) {
        die("guest code too large (%zu bytes)", code_size);
    }
    memcpy(v->mem + KVM_FLOOR_CODE, kvm_floor_guest, code_size);
    put16(v->mem, KVM_FLOOR_MB_MODE, v->initiator);
    put16(v->mem, KVM_FLOOR_MB_DB_SEG, KVM_FLOOR_DOORBELL >> 4);
    put32(v->mem, KVM_FLOOR_MB_DB_VAL, v->db_val);
    put32(v->mem, KVM_FLOOR_MB_COUNT, bench.warmup + bench.n);
    put32(v->mem, KVM_FLOOR_MB_WARMUP, bench.warmup);

    /* Real mode, CS:IP = 0x0100:0x0000 */
    if (ioctl(v->vcpu_fd, KVM_GET_SREGS, &sregs) < 0) {
        die("%s: KVM_GET_SREGS: %s", v->name, strerror(errno));
    }
    sregs.cs.selector = KVM_FLOOR_CODE >> 4;
    sregs.cs.base = KVM_FLOOR_CODE;
    if (ioctl(v->vcpu_fd, KVM_SET_SREGS, &sregs) < 0) {
        die("%s: KVM_SET_SREGS: %s", v->name, strerror(errno));
    }
    memset(&regs, 0, sizeof(regs));
    regs.rip = 0;
    regs.rflags = 0x2;
    if (ioctl(v->vcpu_fd, KVM_SET_REGS, &regs) < 0) {
        die("%s: KVM_SET_REGS: %s", v->name, strerror(errno));
    }
}

static void add_ioeventfd(FloorVm *v)
{
    struct kvm_ioeventfd io = {
        .datamatch = v->db_val,
        .addr = KVM_FLOOR_DOORBELL,
        .len = 4,
        .fd = v->ring_fd,
        .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
    };

    if (ioctl(v->vm_fd, KVM_IOEVENTFD, &io) < 0) {
        skip("KVM_IOEVENTFD (MMIO, 4 bytes, datamatch): %s",
             strerror(errno));
    }
}

static void add_irqfd(FloorVm *v)
{
    struct kvm_irqfd irqfd = {
        .fd = v->irq_fd,
        .gsi = FLOOR_GSI,
    };

    if (ioctl(v->vm_fd, KVM_IRQFD, &irqfd) < 0) {
        skip("KVM_IRQFD (MSI route): %s", strerror(errno));
    }
}

static int new_eventfd(int flags)
{
    int fd = eventfd(0, EFD_CLOEXEC | flags);

    if (fd < 0) {
        die("eventfd: %s", strerror(errno));
    }
    return fd;
}

/*
 * vm-vm: A (peer 0) rings "peer 1, vector 0", B rings "peer 0, vector 0",
 * as ivshmem doorbells do; ring(A) = irq(B) and ring(B) = irq(A).
 * host-vm: the host is A; the VM (B) rings the host's eventfd.
 */
static void setup(void)
{
    FloorVm *a = &bench.vm[0], *b = &bench.vm[1];
    int ab, ba;

    a->name = is_host_mode() ? "host" : "vm A";
    a->initiator = true;
    a->db_val = 1u << 16;
    a->cpu = bench.o.pin ? bench.o.cpus[0] : -1;
    b->name = "vm B";
    b->db_val = 0;
    b->cpu = bench.o.pin ? bench.o.cpus[1] : -1;
    a->user_doorbell = b->user_doorbell = is_user_mode();

    /* host modes busy-poll the ring eventfd */
    ab = new_eventfd(0);
    ba = new_eventfd(is_host_mode() ? EFD_NONBLOCK : 0);
    a->ring_fd = ab;
    b->irq_fd = ab;
    b->ring_fd = ba;
    a->irq_fd = ba;

    if (!is_host_mode()) {
        create_vm(a);
    }
    create_vm(b);
    if (!is_host_mode()) {
        add_irqfd(a);
        if (!a->user_doorbell) {
            add_ioeventfd(a);
        }
    }
    add_irqfd(b);
    if (!b->user_doorbell) {
        add_ioeventfd(b);
    }

    bench.tsc_khz_host = floor_tsc_khz_calibrate();
    if (!is_host_mode()) {
        int khz = ioctl(a->vcpu_fd, KVM_GET_TSC_KHZ, 0);

        bench.tsc_khz = khz > 0 ? (uint64_t)khz : bench.tsc_khz_host;
        if (!bench.tsc_khz) {
            die("cannot tell the TSC frequency");
        }
    }
    bench.samples = calloc(bench.warmup + bench.n, sizeof(uint64_t));
    if (!bench.samples) {
        die("out of memory");
    }
}

static void wait_peer_ready(FloorVm *v)
{
    FloorVm *peer = &bench.vm[1];
    uint64_t deadline = floor_now_ns() + bench.o.timeout_s * 1000000000ull;

    while (!__atomic_load_n(&peer->ready, __ATOMIC_ACQUIRE)) {
        if (__atomic_load_n(&bench.failed, __ATOMIC_SEQ_CST) ||
            __atomic_load_n(&v->stop, __ATOMIC_SEQ_CST)) {
            return;
        }
        if (floor_now_ns() > deadline) {
            fail(v, "peer guest not ready after %llu s",
                 (unsigned long long)bench.o.timeout_s);
            return;
        }
        sched_yield();
    }
}

static void mark(void)
{
    unsigned i;

    bench.t_mark_ns = floor_now_ns();
    for (i = 0; i < 2; i++) {
        FloorVm *v = &bench.vm[i];

        if (v->run) {
            v->user_exits_mark = __atomic_load_n(&v->user_exits,
                                                 __ATOMIC_RELAXED);
            read_stats(v, v->stat_mark);
        }
    }
}

static void finish(void)
{
    unsigned i;

    bench.t_done_ns = floor_now_ns();
    for (i = 0; i < 2; i++) {
        FloorVm *v = &bench.vm[i];

        if (v->run) {
            v->user_exits_done = __atomic_load_n(&v->user_exits,
                                                 __ATOMIC_RELAXED);
            read_stats(v, v->stat_done);
        }
    }
    __atomic_store_n(&bench.done, 1, __ATOMIC_SEQ_CST);
}

static bool collect(FloorVm *v, unsigned count)
{
    uint64_t have = __atomic_load_n(&bench.nsamples, __ATOMIC_RELAXED);
    unsigned i;

    if (count > KVM_FLOOR_BUF_SAMPLES ||
        have + count > bench.warmup + bench.n) {
        fail(v, "guest reported %u more samples after %llu of %llu",
             count, (unsigned long long)have,
             (unsigned long long)(bench.warmup + bench.n));
        return false;
    }
    for (i = 0; i < count; i++) {
        bench.samples[have + i] = get32(v->mem, KVM_FLOOR_BUF + 4 * i);
    }
    __atomic_store_n(&bench.nsamples, have + count, __ATOMIC_RELEASE);
    return true;
}

/* A write to one of the guest's control ports; false: leave the loop */
static bool handle_pio(FloorVm *v)
{
    struct kvm_run *run = v->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    unsigned val = run->io.size >= 2 ? data[0] | data[1] << 8 : data[0];

    if (run->io.direction != KVM_EXIT_IO_OUT || run->io.count != 1) {
        goto bad;
    }
    if (run->io.port != KVM_FLOOR_PORT_READY && !v->initiator) {
        goto bad;
    }
    switch (run->io.port) {
    case KVM_FLOOR_PORT_READY:
        __atomic_store_n(&v->ready, 1, __ATOMIC_RELEASE);
        if (v->initiator) {
            wait_peer_ready(v);
        }
        return true;
    case KVM_FLOOR_PORT_MARK:
        mark();
        return true;
    case KVM_FLOOR_PORT_FLUSH:
        return collect(v, val);
    case KVM_FLOOR_PORT_DONE:
        if (collect(v, val)) {
            finish();
        }
        return false;
    }
bad:
    fail(v, "unexpected PIO %s port 0x%x size %u",
         run->io.direction == KVM_EXIT_IO_OUT ? "write to" : "read from",
         run->io.port, run->io.size);
    return false;
}

static bool handle_mmio(FloorVm *v)
{
    struct kvm_run *run = v->run;
    uint32_t val = get32(run->mmio.data, 0);
    uint64_t one = 1;

    if (v->user_doorbell && run->mmio.is_write && run->mmio.len == 4 &&
        run->mmio.phys_addr == KVM_FLOOR_DOORBELL && val == v->db_val) {
        if (write(v->ring_fd, &one, sizeof(one)) != sizeof(one)) {
            fail(v, "doorbell eventfd write: %s", strerror(errno));
            return false;
        }
        return true;
    }
    fail(v, "unexpected MMIO %s 0x%llx len %u",
         run->mmio.is_write ? "write to" : "read from",
         (unsigned long long)run->mmio.phys_addr, run->mmio.len);
    return false;
}

static void *vcpu_thread(void *opaque)
{
    FloorVm *v = opaque;
    struct kvm_run *run = v->run;
    bool go = true;

    if (v->cpu >= 0 && !floor_pin(PROG, pthread_self(), v->cpu)) {
        fail(v, "pinning failed (use --no-pin)");
        go = false;
    }
    while (go && !__atomic_load_n(&v->stop, __ATOMIC_SEQ_CST) &&
           !__atomic_load_n(&bench.failed, __ATOMIC_SEQ_CST)) {
        if (ioctl(v->vcpu_fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                run->immediate_exit = 0;
                continue;
            }
            fail(v, "KVM_RUN: %s", strerror(errno));
            break;
        }
        switch (run->exit_reason) {
        case KVM_EXIT_IO:
            go = handle_pio(v);
            break;
        case KVM_EXIT_MMIO:
            __atomic_fetch_add(&v->user_exits, 1, __ATOMIC_RELAXED);
            go = handle_mmio(v);
            break;
        case KVM_EXIT_INTR:
            __atomic_fetch_add(&v->user_exits, 1, __ATOMIC_RELAXED);
            break;
        case KVM_EXIT_INTERNAL_ERROR:
            fail(v, "KVM internal error, suberror %u",
                 run->internal.suberror);
            go = false;
            break;
        case KVM_EXIT_FAIL_ENTRY:
            fail(v, "VM entry failed, reason 0x%llx",
                 (unsigned long long)
                 run->fail_entry.hardware_entry_failure_reason);
            go = false;
            break;
        case KVM_EXIT_SHUTDOWN:
            fail(v, "guest shut down (triple fault)");
            go = false;
            break;
        default:
            fail(v, "unexpected exit reason %u", run->exit_reason);
            go = false;
            break;
        }
    }
    __atomic_store_n(&v->exited, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* host-vm: the host is the initiator and times with clock_gettime */
static void *host_thread(void *opaque)
{
    FloorVm *b = &bench.vm[1];
    uint64_t total = bench.warmup + bench.n;
    uint64_t one = 1, val, i, t0, t1;
    ssize_t r;

    if (bench.o.pin && !floor_pin(PROG, pthread_self(), bench.o.cpus[0])) {
        fail(NULL, "pinning failed (use --no-pin)");
        return NULL;
    }
    wait_peer_ready(&bench.vm[0]);
    for (i = 0; i < total; i++) {
        if (__atomic_load_n(&bench.failed, __ATOMIC_RELAXED)) {
            return NULL;
        }
        if (i == bench.warmup) {
            mark();
        }
        t0 = floor_now_ns();
        if (write(b->irq_fd, &one, sizeof(one)) != sizeof(one)) {
            fail(NULL, "irqfd eventfd write: %s", strerror(errno));
            return NULL;
        }
        do {
            r = read(b->ring_fd, &val, sizeof(val));
        } while (r < 0 && errno == EAGAIN &&
                 !__atomic_load_n(&bench.failed, __ATOMIC_RELAXED));
        if (r != sizeof(val)) {
            fail(NULL, "doorbell eventfd read: %s",
                 r < 0 ? strerror(errno) : "short read");
            return NULL;
        }
        t1 = floor_now_ns();
        bench.samples[i] = t1 - t0;
        __atomic_store_n(&bench.nsamples, i + 1, __ATOMIC_RELEASE);
    }
    finish();
    return NULL;
}

static void kick_handler(int sig)
{
}

static void stop_vcpu(FloorVm *v)
{
    int tries;

    if (!v->thread_started) {
        return;
    }
    __atomic_store_n(&v->stop, 1, __ATOMIC_SEQ_CST);
    for (tries = 0; !__atomic_load_n(&v->exited, __ATOMIC_SEQ_CST);
         tries++) {
        struct timespec ts = { 0, 1000000 };

        if (tries == 5000) {
            fprintf(stderr, PROG ": %s: vCPU thread does not stop\n",
                    v->name);
            exit(1);
        }
        if (bench.immediate_exit) {
            v->run->immediate_exit = 1;
        }
        pthread_kill(v->thread, SIGUSR1);
        nanosleep(&ts, NULL);
    }
    pthread_join(v->thread, NULL);
}

static void start_thread(pthread_t *th, void *(*fn)(void *), void *arg)
{
    int err = pthread_create(th, NULL, fn, arg);

    if (err) {
        die("pthread_create: %s", strerror(err));
    }
}

static double per_rt(uint64_t a, uint64_t b)
{
    return bench.n ? (double)(b - a) / bench.n : 0;
}

static void report_json(const FloorStats *st, double secs, double rate,
                        double user_exits)
{
    FloorVm *a = &bench.vm[0], *b = &bench.vm[1];
    bool host = is_host_mode();
    const char *flavour = "unknown";
    unsigned i, j;

    if (access("/sys/module/kvm_pvm", F_OK) == 0) {
        flavour = "kvm_pvm";
    } else if (access("/sys/module/kvm_intel", F_OK) == 0) {
        flavour = "kvm_intel";
    } else if (access("/sys/module/kvm_amd", F_OK) == 0) {
        flavour = "kvm_amd";
    }
    printf("{\"tool\": \"" PROG "\", \"mode\": \"%s\", \"n\": %llu, "
           "\"warmup\": %llu, \"completed\": %llu, ",
           mode_names[bench.mode], (unsigned long long)bench.n,
           (unsigned long long)bench.warmup,
           (unsigned long long)st->count);
    if (bench.o.pin) {
        printf("\"pinned\": true, \"cpus\": [%d, %d], ",
               bench.o.cpus[0], bench.o.cpus[1]);
    } else {
        printf("\"pinned\": false, \"cpus\": null, ");
    }
    printf("\"doorbell\": \"%s\", \"interrupt\": \"irqfd-msi\", ",
           is_user_mode() ? "userspace" : "ioeventfd");
    if (bench.halt_poll_ns >= 0) {
        printf("\"halt_poll_ns\": %lld, ", (long long)bench.halt_poll_ns);
    } else {
        printf("\"halt_poll_ns\": null, ");
    }
    if (host) {
        printf("\"clock\": \"clock_gettime\", ");
    } else {
        printf("\"clock\": \"guest-rdtsc\", \"tsc_khz\": %llu, "
               "\"guest_rdtsc_cycles\": %u, ",
               (unsigned long long)bench.tsc_khz,
               get32(a->mem, KVM_FLOOR_MB_RDTSC));
    }
    printf("\"tsc_khz_host\": %llu, ",
           (unsigned long long)bench.tsc_khz_host);
    floor_stats_json(stdout, "latency", st);
    printf(", \"rt_per_s\": %.1f, \"wall_s\": %.3f, "
           "\"user_exits_per_rt\": %.4f, ", rate, secs, user_exits);
    printf("\"isr_count\": {");
    if (!host) {
        printf("\"a\": %u, ", get32(a->mem, KVM_FLOOR_MB_ISR_COUNT));
    }
    printf("\"b\": %u}, ", get32(b->mem, KVM_FLOOR_MB_ISR_COUNT));
    printf("\"kvm_stats_per_rt\": ");
    if (b->stats_fd < 0) {
        printf("null, ");
    } else {
        printf("{");
        for (i = host ? 1 : 0; i < 2; i++) {
            FloorVm *v = &bench.vm[i];
            bool first = true;

            printf("%s\"%s\": {", i == (host ? 1u : 0u) ? "" : ", ",
                   i ? "b" : "a");
            for (j = 0; j < NSTATS; j++) {
                if (v->stat_off[j] < 0) {
                    continue;
                }
                printf("%s\"%s\": %.4f", first ? "" : ", ", stat_names[j],
                       per_rt(v->stat_mark[j], v->stat_done[j]));
                first = false;
            }
            printf("}");
        }
        printf("}, ");
    }
    printf("\"kvm_module\": \"%s\", ", flavour);
    floor_host_json(stdout);
    printf("}\n");
}

static void report(void)
{
    FloorVm *a = &bench.vm[0], *b = &bench.vm[1];
    uint64_t total = bench.warmup + bench.n;
    double ns_per_tick = 1.0;
    double secs = (bench.t_done_ns - bench.t_mark_ns) / 1e9;
    double rate = secs > 0 ? bench.n / secs : 0;
    double user_exits;
    FloorStats st;

    if (bench.nsamples != total) {
        die("%llu round trips done, %llu expected",
            (unsigned long long)bench.nsamples, (unsigned long long)total);
    }
    if (!is_host_mode()) {
        ns_per_tick = 1e6 / bench.tsc_khz;
    }
    user_exits = per_rt(b->user_exits_mark, b->user_exits_done);
    if (!is_host_mode()) {
        user_exits += per_rt(a->user_exits_mark, a->user_exits_done);
    }
    floor_stats_compute(&st, bench.samples + bench.warmup, bench.n,
                        ns_per_tick);
    if (bench.o.json) {
        report_json(&st, secs, rate, user_exits);
        return;
    }
    printf(PROG ": %s: %llu round trips, ", mode_names[bench.mode],
           (unsigned long long)bench.n);
    floor_stats_line(stdout, &st);
    printf(" us, %.0f RT/s, %.2f user exits/RT, %s\n", rate, user_exits,
           bench.o.pin ? "pinned" : "not pinned");
}

/* Round trips so far: the responder's interrupt count, live */
static uint64_t progress(void)
{
    const uint32_t *isr_count =
        (const uint32_t *)(bench.vm[1].mem + KVM_FLOOR_MB_ISR_COUNT);

    return __atomic_load_n(isr_count, __ATOMIC_RELAXED);
}

static void run(void)
{
    FloorVm *a = &bench.vm[0], *b = &bench.vm[1];
    uint64_t total = bench.warmup + bench.n;
    uint64_t last = 0, last_change;
    pthread_t host_th;
    struct sigaction sa;
    FloorProgress prog;
    bool failed;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kick_handler;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) < 0) {
        die("sigaction: %s", strerror(errno));
    }

    start_thread(&b->thread, vcpu_thread, b);
    b->thread_started = true;
    if (is_host_mode()) {
        start_thread(&host_th, host_thread, NULL);
    } else {
        start_thread(&a->thread, vcpu_thread, a);
        a->thread_started = true;
    }

    floor_progress_init(&prog, PROG, mode_names[bench.mode],
                        bench.o.quiet || bench.o.json);
    last_change = floor_now_ns();
    while (!__atomic_load_n(&bench.done, __ATOMIC_SEQ_CST) &&
           !__atomic_load_n(&bench.failed, __ATOMIC_SEQ_CST) &&
           !(a->thread_started &&
             __atomic_load_n(&a->exited, __ATOMIC_SEQ_CST))) {
        struct timespec ts = { 0, 50000000 };
        uint64_t have = progress();
        uint64_t now = floor_now_ns();

        nanosleep(&ts, NULL);
        floor_progress(&prog, have, total);
        if (have != last) {
            last = have;
            last_change = now;
        } else if (now - last_change > bench.o.timeout_s * 1000000000ull) {
            fail(NULL, "stalled: no progress for %llu s after %llu of %llu "
                 "round trips (a lost doorbell or interrupt?)",
                 (unsigned long long)bench.o.timeout_s,
                 (unsigned long long)have, (unsigned long long)total);
            break;
        }
    }
    floor_progress_end(&prog);
    failed = __atomic_load_n(&bench.failed, __ATOMIC_SEQ_CST);
    if (failed) {
        exit(1);
    }
    if (is_host_mode()) {
        pthread_join(host_th, NULL);
    }
    stop_vcpu(a);
    stop_vcpu(b);
    if (!__atomic_load_n(&bench.done, __ATOMIC_SEQ_CST)) {
        die("vCPU stopped before the end of the run");
    }
    report();
}

int main(int argc, char **argv)
{
    enum {
        OPT_HALT_POLL = FLOOR_OPT_OWN,
    };
    static const struct option longopts[] = {
        { "mode", required_argument, NULL, 'm' },
        { "warmup", required_argument, NULL, 'w' },
        { "halt-poll-ns", required_argument, NULL, OPT_HALT_POLL },
        { "cpus", required_argument, NULL, FLOOR_OPT_CPUS },
        { "no-pin", no_argument, NULL, FLOOR_OPT_NO_PIN },
        { "timeout", required_argument, NULL, FLOOR_OPT_TIMEOUT },
        { "json", no_argument, NULL, FLOOR_OPT_JSON },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t v;
    unsigned i;
    int c, r;

    floor_opts_init(&bench.o, 10);
    bench.n = 100000;
    bench.warmup = 10000;
    bench.halt_poll_ns = -1;

    while ((c = getopt_long(argc, argv, "m:n:w:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            for (i = 0; i < FLOOR_ARRAY_SIZE(mode_names); i++) {
                if (strcmp(optarg, mode_names[i]) == 0) {
                    break;
                }
            }
            if (i == FLOOR_ARRAY_SIZE(mode_names)) {
                fprintf(stderr, PROG ": unknown mode '%s' (vm-vm, "
                        "vm-vm-userspace, host-vm, host-vm-userspace)\n",
                        optarg);
                return 2;
            }
            bench.mode = i;
            break;
        case 'n':
            /* the guest counts in 32 bits */
            if (!floor_parse_u64(optarg, &bench.n) || bench.n == 0 ||
                bench.n > 0x7fffffff) {
                fprintf(stderr, PROG ": bad -n '%s'\n", optarg);
                return 2;
            }
            break;
        case 'w':
            if (!floor_parse_u64(optarg, &bench.warmup) ||
                bench.warmup > 0x7fffffff) {
                fprintf(stderr, PROG ": bad --warmup '%s'\n", optarg);
                return 2;
            }
            break;
        case OPT_HALT_POLL:
            if (!floor_parse_u64(optarg, &v) || v > 0xffffffffu) {
                fprintf(stderr, PROG ": bad --halt-poll-ns '%s'\n", optarg);
                return 2;
            }
            bench.halt_poll_ns = v;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            r = floor_opts_take(PROG, &bench.o, c, optarg);
            if (r < 0) {
                return 2;
            }
            if (r == 0) {
                usage(stderr);
                return 2;
            }
            break;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (bench.warmup + bench.n > 0x7fffffff) {
        fprintf(stderr, PROG ": -n plus --warmup is too large\n");
        return 2;
    }
    if (!floor_opts_finish(PROG, &bench.o)) {
        return 2;
    }
    open_kvm();
    setup();
    run();
    return 0;
}
