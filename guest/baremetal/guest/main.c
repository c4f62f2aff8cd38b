/*
 * ivshmem test guest: boot sequence and commands
 *
 * After reset the guest finds the ivshmem device, maps its BARs, routes
 * its interrupts (MSI-X, or INTx through the IO-APIC), publishes itself
 * in its slot of the shared memory (guest/baremetal/ivsh-guest.h) and
 * then either runs what fw_cfg file IVG_FWCFG_RUN names ("probe",
 * "boot", "selftest") or serves commands from its mailbox forever.
 * Every wait is "sti; hlt" with an APIC timer deadline.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "ivg.h"
#include "hw/misc/ivsh-regs.h"

#define RAM_COPY_SRC        0x1000000u      /* 16 MiB */
#define RAM_COPY_DST        0x2000000u      /* 32 MiB */
#define RAM_COPY_MAX        0x1000000u
#define RAM_COPY_NEEDED     (RAM_COPY_DST + RAM_COPY_MAX)
#define BOOT_WAIT_MS        10000
#define WARMUP_RETRY_MS     50
#define DEFAULT_MS          60000

static IvgDev dev;
static SharedSlot *slot;
static SharedGlobal *glob;
static uint32_t my_id;
static uint32_t tsc_khz;
static uint32_t own_khz;
static uint32_t features;
static uint64_t ram_size;
static uint32_t last_seq;

/* Device interrupts taken, in RAM: BAR2 is gone after an unplug */
static SharedU32 irq_total;

/* Responder mode, read by the interrupt handler */
static SharedU32 resp_peer = IVG_NO_PEER;
static SharedU32 resp_vector;
static SharedSlot *resp_slot;

static SharedSlot *slot_of(uint32_t id)
{
    return (SharedSlot *)(dev.bar2 + IVG_SLOT(id));
}

static void ring(uint32_t peer, uint32_t vector)
{
    mmio_write32(dev.bar0 + IVSH_REG_DOORBELL, IVSH_DOORBELL(peer, vector));
}

static bool vector_ok(uint32_t v)
{
    if (dev.nvectors) {
        return v < dev.nvectors && v < IVG_MAX_VECTORS;
    }
    return dev.intx_gsi && v <= 0xffff;
}

/* Vector whose interrupts count for doorbells rung on @v */
static uint32_t irq_index(uint32_t v)
{
    return dev.nvectors ? v : 0;
}

static uint32_t ticks_to_ns(uint64_t ticks)
{
    uint64_t ns = div64(ticks * 1000000, tsc_khz);

    return ns > 0xffffffffu ? 0xffffffffu : ns;
}

static void notify_host(void)
{
    if (glob->magic == IVG_GLOBAL_MAGIC && glob->host_id != IVG_NO_PEER) {
        ring(glob->host_id, glob->host_vector);
    }
}

void ivg_irq(uint32_t vector)
{
    bool intx = vector == IVG_IDT_INTX;
    uint32_t v, p;

    irq_total++;
    if (!slot) {
        /* too early (no slot yet): quiet the line, drop the doorbell */
        if (intx) {
            mmio_read32(dev.bar0 + IVSH_REG_INTR_STATUS);
        }
        ivg_eoi();
        return;
    }
    if (intx) {
        /* reading IntrStatus clears it and lowers the line */
        if (!(mmio_read32(dev.bar0 + IVSH_REG_INTR_STATUS) &
              IVSH_INTR_DOORBELL)) {
            slot->spurious++;
            ivg_eoi();
            return;
        }
        v = 0;
    } else if (vector >= IVG_IDT_MSIX_BASE &&
               vector < IVG_IDT_MSIX_BASE + IVG_MAX_VECTORS) {
        v = vector - IVG_IDT_MSIX_BASE;
    } else {
        slot->spurious++;
        ivg_eoi();
        return;
    }
    slot->irq_count[v]++;
    if (resp_peer != IVG_NO_PEER && (intx || v == resp_vector)) {
        p = resp_slot->ping;
        if (p != slot->pong) {
            slot->pong = p;
            ring(resp_peer, resp_vector);
        }
    }
    ivg_eoi();
}

/*
 * Waiting: always "sti; hlt", woken by a doorbell or by the APIC timer.
 * A condition no interrupt signals (a PBA bit, a word in shared memory
 * written without a doorbell to us) is "polled": re-checked every
 * millisecond tick.
 */

typedef bool WaitFn(uintptr_t arg);

static SharedU32 *wait_word;
static uint32_t wait_value;

static bool cond_eq(uintptr_t arg)
{
    return *wait_word == wait_value;
}

static bool cond_ne(uintptr_t arg)
{
    return *wait_word != wait_value;
}

static bool cond_pba(uintptr_t vector)
{
    return ivg_msix_pending(&dev, vector);
}

static bool wait_for(WaitFn *fn, uintptr_t arg, uint32_t ms, bool polled)
{
    uint32_t slices = polled ? ms : 1, i;
    bool ok = false;

    cli();
    for (i = 0; i < slices && !ok; i++) {
        ivg_timer_start(polled ? 1 : ms);
        for (;;) {
            if (fn(arg)) {
                ok = true;
                break;
            }
            if (ivg_timer_fired) {
                break;
            }
            sti_hlt();
            cli();
        }
    }
    ivg_timer_stop();
    sti();
    return ok || fn(arg);
}

static bool wait_eq(SharedU32 *word, uint32_t value, uint32_t ms,
                    bool polled)
{
    wait_word = word;
    wait_value = value;
    return wait_for(cond_eq, 0, ms, polled);
}

static bool wait_ne(SharedU32 *word, uint32_t value, uint32_t ms,
                    bool polled)
{
    wait_word = word;
    wait_value = value;
    return wait_for(cond_ne, 0, ms, polled);
}

/* Commands */

static uint32_t cmd_respond(const uint32_t *arg)
{
    uint32_t peer = arg[0], v = arg[1];

    if (peer == IVG_NO_PEER) {
        resp_peer = IVG_NO_PEER;
        slot->respond_peer = IVG_NO_PEER;
        return IVG_ST_OK;
    }
    if (peer >= IVG_MAX_SLOTS || !vector_ok(v)) {
        return IVG_ST_BADARG;
    }
    cli();
    resp_slot = slot_of(peer);
    resp_vector = v;
    slot->pong = resp_slot->ping;
    resp_peer = peer;
    sti();
    slot->respond_peer = peer;
    slot->respond_vector = v;
    return IVG_ST_OK;
}

/* One round trip with re-sends, for warm-up: peer connections settle */
static bool round_trip_retry(uint32_t peer, uint32_t v, uint32_t seq,
                             uint32_t ms)
{
    SharedSlot *ps = slot_of(peer);
    uint32_t waited;

    slot->ping = seq;
    for (waited = 0; waited < ms; waited += WARMUP_RETRY_MS) {
        ring(peer, v);
        if (wait_eq(&ps->pong, seq, WARMUP_RETRY_MS, false)) {
            return true;
        }
        slot->res[IVG_R_PP_RETRIES]++;
    }
    return false;
}

static uint32_t cmd_pingpong(const uint32_t *arg)
{
    uint32_t peer = arg[0], v = arg[1], count = arg[2], warmup = arg[3];
    uint32_t ms = arg[4] ? arg[4] : DEFAULT_MS, seq = slot->ping, i, ns;
    uint32_t min = 0xffffffffu, max = 0;
    SharedU32 *pong;
    uint64_t t0, t1, start, sum = 0;
    bool timeout = false;

    if (peer >= IVG_MAX_SLOTS || peer == my_id || !vector_ok(v)) {
        return IVG_ST_BADARG;
    }
    pong = &slot_of(peer)->pong;
    memset((void *)slot->hist, 0, sizeof(slot->hist));
    for (i = 0; i < warmup; i++) {
        if (!round_trip_retry(peer, v, ++seq, ms)) {
            ivg_printf("ivsh-guest: warm-up round trip %u timed out\n", i);
            return IVG_ST_TIMEOUT;
        }
    }

    cli();
    ivg_timer_start(ms);
    start = rdtsc();
    for (i = 0; i < count; i++) {
        seq++;
        t0 = rdtsc();
        slot->ping = seq;
        ring(peer, v);
        while (*pong != seq && !ivg_timer_fired) {
            sti_hlt();
            cli();
        }
        if (*pong != seq) {
            timeout = true;
            break;
        }
        t1 = rdtsc();
        ns = ticks_to_ns(t1 - t0);
        slot->hist[ivg_hist_bucket(ns)]++;
        sum += ns;
        min = ns < min ? ns : min;
        max = ns > max ? ns : max;
    }
    t1 = rdtsc();
    ivg_timer_stop();
    sti();
    slot->res[IVG_R_PP_COUNT] = i;
    slot->res[IVG_R_PP_SUM_NS] = sum;
    slot->res[IVG_R_PP_MIN_NS] = i ? min : 0;
    slot->res[IVG_R_PP_MAX_NS] = max;
    slot->res[IVG_R_PP_TICKS] = t1 - start;
    if (timeout) {
        ivg_printf("ivsh-guest: round trip %u timed out\n", i);
        return IVG_ST_TIMEOUT;
    }
    return IVG_ST_OK;
}

static uint32_t cmd_blast(const uint32_t *arg)
{
    uint32_t peer = arg[0], v = arg[1], count = arg[2], i;
    uint32_t ms = arg[4] ? arg[4] : DEFAULT_MS, seq = slot->ping + 1;
    SharedSlot *ps;
    uint64_t t0, t1;

    if (peer >= IVG_MAX_SLOTS || peer == my_id || !vector_ok(v)) {
        return IVG_ST_BADARG;
    }
    ps = slot_of(peer);
    t0 = rdtsc();
    for (i = 0; i < count; i++) {
        ring(peer, v);
    }
    t1 = rdtsc();
    slot->res[IVG_R_BL_COUNT] = count;
    slot->res[IVG_R_BL_TICKS] = t1 - t0;
    /* a round trip flushes the doorbells through the responder */
    slot->ping = seq;
    ring(peer, v);
    if (!wait_eq(&ps->pong, seq, ms, false)) {
        return IVG_ST_TIMEOUT;
    }
    return IVG_ST_OK;
}

static void copy32(uint32_t dst, uint32_t src, uint32_t bytes)
{
    uint32_t n = bytes / 4;

    asm volatile("rep movsl" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

static uint32_t cmd_copy(const uint32_t *arg)
{
    uint32_t len = arg[0] & ~3u, off = arg[1], reps = arg[2], i;
    uint32_t bar = dev.bar2 + off;
    SharedU32 *src = (SharedU32 *)RAM_COPY_SRC;
    SharedU32 *dst = (SharedU32 *)RAM_COPY_DST;
    uint64_t t0, t1, t2, t3;

    if (!len || len > RAM_COPY_MAX || off < IVG_DATA_OFFSET ||
        (uint64_t)off + len > dev.bar2_size || ram_size < RAM_COPY_NEEDED ||
        !reps) {
        return IVG_ST_BADARG;
    }
    for (i = 0; i < len / 4; i++) {
        src[i] = i * 0x9e3779b9u;
    }
    t0 = rdtsc();
    for (i = 0; i < reps; i++) {
        copy32(bar, RAM_COPY_SRC, len);
    }
    t1 = rdtsc();
    for (i = 0; i < reps; i++) {
        copy32(RAM_COPY_DST, bar, len);
    }
    t2 = rdtsc();
    for (i = 0; i < reps; i++) {
        copy32(RAM_COPY_DST, RAM_COPY_SRC, len);
    }
    t3 = rdtsc();
    slot->res[IVG_R_CP_RAM_TO_BAR2] = t1 - t0;
    slot->res[IVG_R_CP_BAR2_TO_RAM] = t2 - t1;
    slot->res[IVG_R_CP_RAM_TO_RAM] = t3 - t2;
    slot->res[IVG_R_CP_BYTES] = (uint64_t)len * reps;
    if (dst[len / 4 - 1] != src[len / 4 - 1] || dst[0] != src[0]) {
        return IVG_ST_BADARG;
    }
    return IVG_ST_OK;
}

/*
 * Mask vector @v, get a doorbell on it (from the responding peer, or
 * from ourselves), see its PBA bit set and no interrupt, unmask, and
 * see the interrupt arrive.
 */
static uint32_t cmd_masktest(const uint32_t *arg)
{
    uint32_t peer = arg[0], v = arg[1], c0, seq;
    uint32_t ms = arg[4] ? arg[4] : DEFAULT_MS;
    SharedU32 *count = &slot->irq_count[v];
    SharedSlot *ps;
    bool pba, delivered;
    uint64_t t0, t1;

    if (!dev.nvectors) {
        return IVG_ST_NOIRQ;
    }
    if (peer >= IVG_MAX_SLOTS || !vector_ok(v)) {
        return IVG_ST_BADARG;
    }
    c0 = *count;
    ivg_msix_mask(&dev, v, true);
    if (peer == my_id) {
        ring(my_id, v);
    } else {
        /* the peer responds on v, which is masked here */
        ps = slot_of(peer);
        seq = slot->ping + 1;
        slot->ping = seq;
        ring(peer, v);
        if (!wait_eq(&ps->pong, seq, ms, true)) {
            ivg_msix_mask(&dev, v, false);
            return IVG_ST_TIMEOUT;
        }
    }
    pba = wait_for(cond_pba, v, ms, true);
    slot->res[IVG_R_MT_PBA_SET] = pba;
    slot->res[IVG_R_MT_EARLY] = *count - c0;
    t0 = rdtsc();
    ivg_msix_mask(&dev, v, false);
    delivered = wait_ne(count, c0, ms, false);
    t1 = rdtsc();
    slot->res[IVG_R_MT_DELIVERED] = *count - c0;
    slot->res[IVG_R_MT_PBA_AFTER] = ivg_msix_pending(&dev, v);
    slot->res[IVG_R_MT_TICKS] = t1 - t0;
    ivg_printf("ivsh-guest: masktest vector %u: pba %u early %u "
               "delivered %u\n", v, pba, (uint32_t)slot->res[IVG_R_MT_EARLY],
               delivered);
    if (slot->res[IVG_R_MT_EARLY]) {
        return IVG_ST_EARLY;
    }
    if (!delivered) {
        return IVG_ST_LOST;
    }
    if (!pba) {
        return IVG_ST_NOPBA;
    }
    return IVG_ST_OK;
}

/* Ring ourselves on every vector, then the PBA case on the last one */
static uint32_t cmd_selftest(const uint32_t *arg)
{
    uint32_t ms = arg[4] ? arg[4] : 5000, n, v, c, ok = 0, st;
    uint32_t margs[IVG_NUM_ARGS] = { 0 };

    if (!dev.nvectors && !dev.intx_gsi) {
        return IVG_ST_NOIRQ;
    }
    n = dev.nvectors ? dev.nvectors : 1;
    n = n > IVG_MAX_VECTORS ? IVG_MAX_VECTORS : n;
    for (v = 0; v < n; v++) {
        c = slot->irq_count[irq_index(v)];
        ring(my_id, v);
        if (wait_ne(&slot->irq_count[irq_index(v)], c, ms, false)) {
            ok++;
        } else {
            ivg_printf("ivsh-guest: self doorbell on vector %u lost\n", v);
        }
    }
    if (ok != n) {
        slot->res[IVG_R_ST_VECTORS] = n;
        slot->res[IVG_R_ST_OK] = ok;
        return IVG_ST_LOST;
    }
    st = IVG_ST_OK;
    if (dev.nvectors) {
        margs[0] = my_id;
        margs[1] = n - 1;
        margs[4] = ms;
        st = cmd_masktest(margs);
    }
    slot->res[IVG_R_ST_VECTORS] = n;
    slot->res[IVG_R_ST_OK] = ok;
    return st;
}

/*
 * MSI-X disabled: a doorbell on vector arg1 (rung by ourselves) leaves
 * its PBA bit set and raises no interrupt; enabling MSI-X delivers it;
 * a doorbell after that is delivered as usual.
 */
static uint32_t cmd_msixtest(const uint32_t *arg)
{
    uint32_t v = arg[1], ms = arg[4] ? arg[4] : 5000, c0, c1;
    uint32_t short_ms = ms < 1000 ? ms : 1000;
    SharedU32 *count = &slot->irq_count[v];
    bool pba, delivered, again;

    if (!dev.nvectors) {
        return IVG_ST_NOIRQ;
    }
    if (!vector_ok(v)) {
        return IVG_ST_BADARG;
    }
    c0 = *count;
    ivg_msix_enable(&dev, false);
    ring(my_id, v);
    pba = wait_for(cond_pba, v, short_ms, true);
    c1 = *count;
    ivg_msix_enable(&dev, true);
    delivered = wait_ne(count, c1, short_ms, false);
    slot->res[IVG_R_MT_PBA_SET] = pba;
    slot->res[IVG_R_MT_EARLY] = c1 - c0;
    slot->res[IVG_R_MT_DELIVERED] = *count - c1;
    c1 = *count;
    ring(my_id, v);
    again = wait_ne(count, c1, ms, false);
    slot->res[IVG_R_MX_AGAIN] = again;
    ivg_printf("ivsh-guest: msixtest vector %u: pba %u early %u "
               "delivered %u again %u\n", v, pba,
               (uint32_t)slot->res[IVG_R_MT_EARLY], delivered, again);
    if (slot->res[IVG_R_MT_EARLY]) {
        return IVG_ST_EARLY;
    }
    if (!delivered || !again) {
        return IVG_ST_LOST;
    }
    return pba ? IVG_ST_OK : IVG_ST_NOPBA;
}

/* Doorbells to arg0 on arg1 back to back until the commander says stop */
static uint32_t cmd_ring(const uint32_t *arg)
{
    uint32_t peer = arg[0], v = arg[1], i;

    if (peer >= IVG_MAX_SLOTS || !vector_ok(v)) {
        return IVG_ST_BADARG;
    }
    while (!slot->stop) {
        for (i = 0; i < 64; i++) {
            ring(peer, v);
        }
        slot->res[IVG_R_RG_COUNT] += 64;
    }
    return IVG_ST_OK;
}

static bool cond_unplug(uintptr_t arg)
{
    return ivg_unplug_requested(&dev);
}

static bool cond_never(uintptr_t arg)
{
    return false;
}

/*
 * Hot-unplug as an ACPI OSPM does it on i440FX: wait for the removal
 * request, eject the slot.  Interrupts from the device must stop with
 * the eject; the ones latched in the local APIC before it (one per
 * vector at most) arrive at the sti after it.  Reports on the console
 * and exits: BAR2 is gone.
 */
static uint32_t cmd_unplug(const uint32_t *arg)
{
    uint32_t ms = arg[4] ? arg[4] : DEFAULT_MS, after_ms = arg[2];
    uint32_t n0, n1, n2;

    slot->res[IVG_R_UP_ARMED] = 1;
    if (!wait_for(cond_unplug, 0, ms, true)) {
        return IVG_ST_NOUNPLUG;
    }
    n0 = irq_total;
    cli();
    ivg_unplug_eject(&dev);
    sti();
    wait_for(cond_never, 0, 1, false);      /* latched ones, then */
    n1 = irq_total;
    wait_for(cond_never, 0, after_ms, false);
    n2 = irq_total;
    ivg_printf("ivsh-guest: unplug: slot %u ejected after %u interrupts, "
               "%u latched, %u in the %u ms after the eject\n",
               (dev.bdf >> 3) & 0x1f, n0, n1 - n0, n2 - n1, after_ms);
    ivg_exit(n2 == n1 ? IVG_EXIT_OK : IVG_EXIT_FAIL);
}

static uint32_t run_command(uint32_t cmd, const uint32_t *arg)
{
    switch (cmd) {
    case IVG_CMD_NOP:
        return IVG_ST_OK;
    case IVG_CMD_RESPOND:
        return cmd_respond(arg);
    case IVG_CMD_PINGPONG:
        return cmd_pingpong(arg);
    case IVG_CMD_BLAST:
        return cmd_blast(arg);
    case IVG_CMD_COPY:
        return cmd_copy(arg);
    case IVG_CMD_MASKTEST:
        return cmd_masktest(arg);
    case IVG_CMD_SELFTEST:
        return cmd_selftest(arg);
    case IVG_CMD_MSIXTEST:
        return cmd_msixtest(arg);
    case IVG_CMD_RING:
        return cmd_ring(arg);
    case IVG_CMD_UNPLUG:
        return cmd_unplug(arg);
    case IVG_CMD_EXIT:
        return IVG_ST_OK;
    default:
        return IVG_ST_BADCMD;
    }
}

static void serve(void)
{
    uint32_t arg[IVG_NUM_ARGS], cmd, seq, st, i;
    SharedMailbox *mb = &slot->mailbox;

    for (;;) {
        while (!wait_ne(&mb->seq, last_seq, IVG_POLL_MS, false)) {
            /* poll tick: wait_ne() looked at the mailbox */
        }
        seq = mb->seq;
        barrier();
        cmd = mb->cmd;
        for (i = 0; i < IVG_NUM_ARGS; i++) {
            arg[i] = mb->arg[i];
        }
        last_seq = seq;
        slot->state = IVG_STATE_BUSY;
        memset((void *)slot->res, 0, sizeof(slot->res));
        if (glob->magic == IVG_GLOBAL_MAGIC && glob->tsc_khz) {
            tsc_khz = glob->tsc_khz;        /* the host measures better */
        }
        ivg_printf("ivsh-guest: command %u (%u %u %u %u %u %u)\n", cmd,
                   arg[0], arg[1], arg[2], arg[3], arg[4], arg[5]);
        st = run_command(cmd, arg);
        ivg_printf("ivsh-guest: command %u status %u\n", cmd, st);
        slot->status = st;
        barrier();
        slot->done_seq = seq;
        slot->state = IVG_STATE_READY;
        notify_host();
        if (cmd == IVG_CMD_EXIT) {
            ivg_exit(arg[0]);
        }
    }
}

static uint32_t rdtsc_cost(void)
{
    uint32_t i, d, min = 0xffffffffu;
    uint64_t t0;

    for (i = 0; i < 1000; i++) {
        t0 = rdtsc();
        d = rdtsc() - t0;
        min = d < min ? d : min;
    }
    return min;
}

static void publish(uint64_t boot_tsc)
{
    uint32_t keep = slot->mailbox.seq;

    memset((void *)slot, 0, offsetof(IvgSlot, mailbox));
    last_seq = keep;
    slot->version = IVG_VERSION;
    slot->state = IVG_STATE_BOOT;
    slot->id = my_id;
    slot->features = features;
    slot->nvectors = dev.nvectors;
    slot->intx_gsi = dev.intx_gsi;
    slot->pci_bdf = dev.bdf;
    slot->tsc_khz = own_khz;
    slot->rdtsc_ticks = rdtsc_cost();
    slot->bar2_kib = dev.bar2_size >> 10;
    slot->respond_peer = IVG_NO_PEER;
    slot->done_seq = keep;
    slot->boot_ms = div64(rdtsc() - boot_tsc, tsc_khz);
    barrier();
    slot->state = IVG_STATE_READY;
    barrier();
    slot->magic = IVG_SLOT_MAGIC;
    notify_host();
}

void ivg_main(uint64_t boot_tsc)
{
    char run[32] = "";
    uint32_t a, b, c, d, id, st;
    uint32_t arg[IVG_NUM_ARGS] = { 0 };

    ivg_printf("ivsh-guest: start\n");
    ivg_cpu_init();
    sti();
    ivg_fwcfg_file(IVG_FWCFG_RUN, run, sizeof(run) - 1);
    own_khz = ivg_tsc_calibrate();
    tsc_khz = own_khz ? own_khz : 1000000;
    cpuid(0x40000000, 0, &a, &b, &c, &d);
    if (b == 0x4b4d564b) {              /* "KVMK" of "KVMKVMKVM" */
        features |= IVG_F_KVM;
    }
    ivg_printf("ivsh-guest: %s, tsc %u kHz, run '%s'\n",
               ivg_x2apic() ? "x2apic" : "xapic", tsc_khz, run);
    if (!ivg_strcmp(run, "probe")) {
        ivg_exit(IVG_EXIT_OK);
    }

    if (!ivg_pci_find(&dev)) {
        ivg_printf("ivsh-guest: no 1af4:1110 on bus 0\n");
        ivg_exit(IVG_EXIT_NODEV);
    }
    ivg_pci_setup(&dev);
    ivg_printf("ivsh-guest: device %02x.%u rev %u bar0 0x%x bar1 0x%x "
               "bar2 0x%x size 0x%llx%s msix %u pin %u\n",
               dev.bdf >> 3, dev.bdf & 7, dev.revision, dev.bar0, dev.bar1,
               dev.bar2, dev.bar2_size, dev.bar2_64 ? " (64-bit)" : "",
               dev.nvectors, dev.pin);
    if (!dev.bar0 || !dev.bar2 || dev.bar2_size < IVG_SLOT_OFFSET) {
        ivg_printf("ivsh-guest: BAR0/BAR2 missing or not placeable\n");
        ivg_exit(IVG_EXIT_FAIL);
    }
    ram_size = ivg_fwcfg_ram_size();
    if (!ram_size || ram_size > 0x80000000u) {
        ram_size = ram_size ? 0x80000000u : 0x4000000u;
    }
    ivg_mtrr_init(ram_size, dev.bar2, dev.bar2_size);
    features |= IVG_F_MTRR;
    features |= dev.bar2_64 ? IVG_F_BAR2_64 : 0;
    features |= ivg_x2apic() ? IVG_F_X2APIC : 0;
    features |= dev.revision == 0 ? IVG_F_REV0 : 0;
    features |= dev.q35 ? IVG_F_Q35 : 0;
    if (dev.msix_cap) {
        ivg_msix_setup(&dev, ivg_apic_id());
        features |= IVG_F_MSIX;
    } else if (ivg_intx_setup(&dev)) {
        features |= IVG_F_INTX;
        ivg_printf("ivsh-guest: INTx pin %u -> GSI %u\n", dev.pin,
                   dev.intx_gsi);
    }

    /* a revision 0 device reads -1 until the server has answered */
    id = mmio_read32(dev.bar0 + IVSH_REG_IV_POSITION);
    if ((int32_t)id < 0) {
        wait_ne((SharedU32 *)(dev.bar0 + IVSH_REG_IV_POSITION),
                id, BOOT_WAIT_MS, true);
        id = mmio_read32(dev.bar0 + IVSH_REG_IV_POSITION);
    }
    if (id >= IVG_MAX_SLOTS) {
        ivg_printf("ivsh-guest: IVPosition %d has no slot\n", (int32_t)id);
        ivg_exit(IVG_EXIT_FAIL);
    }
    my_id = id;
    glob = (SharedGlobal *)(dev.bar2 + IVG_GLOBAL_OFFSET);
    slot = slot_of(my_id);
    if (glob->magic == IVG_GLOBAL_MAGIC) {
        features |= IVG_F_HOST;
        if (glob->tsc_khz) {
            tsc_khz = glob->tsc_khz;
        }
    }
    publish(boot_tsc);
    ivg_printf("ivsh-guest: ready, id %u, features 0x%x\n", my_id, features);

    if (!ivg_strcmp(run, "boot")) {
        ivg_exit(IVG_EXIT_OK);
    }
    if (!ivg_strcmp(run, "msixtest")) {
        arg[1] = dev.nvectors ? dev.nvectors - 1 : 0;
        arg[4] = 5000;
        st = cmd_msixtest(arg);
        slot->status = st;
        ivg_printf("ivsh-guest: msixtest: status %u\n", st);
        ivg_exit(st == IVG_ST_OK ? IVG_EXIT_OK : IVG_EXIT_FAIL);
    }
    if (!ivg_strcmp(run, "selftest")) {
        arg[4] = 5000;
        st = cmd_selftest(arg);
        slot->status = st;
        ivg_printf("ivsh-guest: selftest: %u of %u vectors, status %u\n",
                   (uint32_t)slot->res[IVG_R_ST_OK],
                   (uint32_t)slot->res[IVG_R_ST_VECTORS], st);
        ivg_exit(st == IVG_ST_OK ? IVG_EXIT_OK : IVG_EXIT_FAIL);
    }
    serve();
}
