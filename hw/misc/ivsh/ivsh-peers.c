/*
 * Inter-VM shared memory: the ivshmem server connection and doorbells
 *
 * Shared by ivshmem-doorbell and the legacy ivshmem device with a
 * chardev.  The protocol itself is decoded by ivsh-proto.c, which checks
 * every message; this file acts on what it accepted:
 *
 *  - set-up (version, own ID, shared memory) is read synchronously in
 *    realize, by polling the socket with a deadline (x-setup-timeout), so
 *    a stalled server fails realize instead of hanging QEMU; a chardev
 *    with reconnect-ms= is waited for (and redialled) within the same
 *    deadline;
 *  - later messages (peers' eventfds, disconnects) arrive through the
 *    chardev handlers; a message the decoder drops is logged (the first
 *    few) and ignored, and after a fatal one, or when the connection
 *    closes, or when QEMU is about to run out of file descriptors, the
 *    device stops reading from the server but keeps its memory and the
 *    peers it knows;
 *  - with reconnect-ms=, the chardev dials again after the connection
 *    closed; the new set-up is read from the event loop and accepted only
 *    with the same ID and the same shared memory object (else the device
 *    hangs up for good, see ivsh_conn_refuse()); each peer announced
 *    again gets its new eventfds swapped in, vector by vector
 *    (ivsh_peer_swap_eventfd()), the others keep theirs;
 *  - a peer's eventfds ring that peer: a Doorbell write to (peer, vector)
 *    is matched in KVM by an ioeventfd within the device's budget, else
 *    handled by ivsh_doorbell_ring();
 *  - our own eventfds become interrupts: MSI-X through KVM irqfds when
 *    the irqchip supports it and MSI-X is enabled, else through a QEMU
 *    fd handler; INTx
 *    (legacy, msi=off) sets IntrStatus bit 0.  A doorbell that arrives
 *    while its vector is masked, MSI-X is disabled or bus mastering is
 *    off becomes pending and is delivered when that changes, on both
 *    paths.  A vector KVM cannot take (no route left, an irqfd refused,
 *    a message KVM would refuse) is delivered through QEMU instead.
 *
 * Every eventfd is shared with the server and the other peers, who can
 * change its flags or counter at will: see ivsh_efd_read() for why no
 * access to one may block.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include "qemu/error-report.h"
#include "qemu/event_notifier.h"
#include "qemu/log.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "qapi/error.h"
#include "chardev/char-socket.h"
#include "io/task.h"
#include "hw/core/cpu.h"
#include "hw/pci/pci.h"
#include "hw/pci/msi.h"
#include "hw/pci/msix.h"
#include "system/kvm.h"
#include "system/runstate.h"
#include "ivsh-internal.h"
#include "hw/misc/ivsh-regs.h"
#include "trace.h"

/*
 * ioeventfds (in KVM only: without KVM, QEMU's memory core would write
 * the peer's eventfd itself, with a plain blocking write).  Linux no
 * longer counts them in its per-bus device limit, but every one is an
 * entry that KVM scans linearly on each doorbell write (they all share
 * the Doorbell register's address) and that QEMU's memory core rebuilds
 * on every change of the address space: keep a budget per device
 * (x-ioeventfd-budget) and one for all devices together.  Doorbells
 * beyond them go through QEMU.
 */
#define IVSH_IOEVENTFD_GLOBAL_MAX 768
static uint32_t ivsh_ioeventfds_in_use;

/*
 * Eventfds.  Each one is a file descriptor of QEMU's: all devices
 * together hold at most half of RLIMIT_NOFILE (own vectors reserved at
 * realize, peers' eventfds as they come), and a device stops reading
 * from its server when the lowest free fd number comes within
 * IVSH_FD_HEADROOM of the limit, because the kernel silently drops an fd
 * it cannot install and the message would then read as a disconnect.
 */
#define IVSH_FD_HEADROOM 64
static uint64_t ivsh_eventfds_all;

/* x-setup-timeout: realize waits for the server with the BQL held */
#define IVSH_SETUP_TIMEOUT_MAX 60000

/* Messages the device drops that are logged; the rest are traced */
#define IVSH_DROPS_REPORTED 10

/* A userspace handler reads an eventfd at most this often per call */
#define IVSH_NOTIFY_READS 16
#define IVSH_THROTTLE_MS 10

#define IVSH_KCMP_FILE 0        /* KCMP_FILE of <linux/kcmp.h> */

struct IvshPeer {
    uint16_t id;
    uint32_t nr;                /* eventfds received, vectors 0..nr-1 */
    uint32_t size;              /* of vec[] */
    uint32_t held;              /* eventfds held (refused ones are not) */
    uint32_t nr_ioeventfd;      /* vectors 0..nr_ioeventfd-1 have one */
    EventNotifier **vec;        /* [size], NULL for a refused eventfd */
};

static const char *ivsh_name(IvshState *s)
{
    DeviceState *dev = DEVICE(s);

    return dev->id ? dev->id : object_get_typename(OBJECT(s));
}

static IvshPeer *ivsh_peer_find(IvshState *s, uint16_t id)
{
    return s->peers ? g_hash_table_lookup(s->peers, GUINT_TO_POINTER(id))
                    : NULL;
}

/*
 * Eventfd I/O that never blocks.  O_NONBLOCK is a flag of the open file
 * description, which every holder of an eventfd shares (the server, each
 * peer): QEMU's socket chardev clears it on every fd it receives, so a
 * peer that drops one of our eventfds leaves it blocking for us, and any
 * holder can clear it at will.  The flag is therefore never trusted:
 *  - reads use preadv2(RWF_NOWAIT), which fails with EAGAIN on an empty
 *    eventfd whatever the flag (Linux 5.12 and later); on older kernels
 *    they poll first and set O_NONBLOCK again just before reading;
 *  - writes poll for room first and set O_NONBLOCK again before writing
 *    (eventfds take no RWF_NOWAIT writes).  Only a holder that saturates
 *    the counter and clears the flag between the two can still block
 *    one, on purpose: docs/specs/ivsh-spec.rst states that residual race.
 */
static bool ivsh_nowait_unsupported;

static void ivsh_fd_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl >= 0 && !(fl & O_NONBLOCK)) {
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
}

/* Read and reset an eventfd's counter; 0 when it was empty */
static uint64_t ivsh_efd_read(int fd)
{
    uint64_t val = 0;
    struct iovec iov = { .iov_base = &val, .iov_len = sizeof(val) };
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    ssize_t ret;

    if (!ivsh_nowait_unsupported) {
        do {
            ret = preadv2(fd, &iov, 1, -1, RWF_NOWAIT);
        } while (ret < 0 && errno == EINTR);
        if (ret >= 0 || (errno != EOPNOTSUPP && errno != EINVAL)) {
            return ret == sizeof(val) ? val : 0;
        }
        ivsh_nowait_unsupported = true;
    }
    if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLIN)) {
        return 0;
    }
    ivsh_fd_set_nonblock(fd);
    do {
        ret = read(fd, &val, sizeof(val));
    } while (ret < 0 && errno == EINTR);
    return ret == sizeof(val) ? val : 0;
}

/* Add one to an eventfd's counter; false if it is full */
static bool ivsh_efd_ring(int fd)
{
    static const uint64_t one = 1;
    struct pollfd pfd = { .fd = fd, .events = POLLOUT };
    ssize_t ret;

    if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLOUT)) {
        return false;
    }
    ivsh_fd_set_nonblock(fd);
    do {
        ret = write(fd, &one, sizeof(one));
    } while (ret < 0 && errno == EINTR);
    return ret == sizeof(one);
}

static void ivsh_conn_report_drop(IvshState *s, const char *msg)
{
    trace_ivsh_conn_drop(msg);
    if (s->drops_logged < IVSH_DROPS_REPORTED) {
        error_report("%s: %s", ivsh_name(s), msg);
    } else if (s->drops_logged == IVSH_DROPS_REPORTED) {
        error_report("%s: %s; further messages dropped by the device are "
                     "only traced (ivsh_conn_drop)", ivsh_name(s), msg);
    }
    if (s->drops_logged < UINT32_MAX) {
        s->drops_logged++;
    }
}

static bool ivsh_bus_master(IvshState *s)
{
    return PCI_DEVICE(s)->config[PCI_COMMAND] & PCI_COMMAND_MASTER;
}

static bool ivsh_msix_pending(PCIDevice *pdev, uint32_t vector)
{
    return pdev->msix_pba[vector / 8] & (1U << (vector % 8));
}

/*
 * Bus mastering is off: a message would be lost.  Keep the doorbell
 * until bus mastering is on again, in the PBA for the guest to see, and
 * in @v->held: msix.c delivers (and clears) a pending vector when the
 * guest unmasks it or enables MSI-X, whatever bus mastering says, and
 * that message is lost too.
 */
static void ivsh_bm_notifiers(IvshState *s);

static void ivsh_vector_hold(IvshState *s, IvshVector *v)
{
    v->held = true;
    msix_set_pending(PCI_DEVICE(s), v->nr);
    ivsh_bm_notifiers(s);
}

/* Raise @v: MSI-X, or INTx on the legacy device with msi=off */
static void ivsh_vector_deliver(IvshState *s, IvshVector *v)
{
    PCIDevice *pdev = PCI_DEVICE(s);

    trace_ivsh_interrupt(s->vm_id, v->nr, s->msi);
    if (!s->msi) {
        s->intrstatus |= IVSH_INTR_DOORBELL;
        ivsh_update_intx(s);
    } else if (!ivsh_bus_master(s)) {
        ivsh_vector_hold(s, v);
    } else {
        /* Pending in the PBA if masked or MSI-X is disabled */
        msix_notify(pdev, v->nr);
    }
}

static void ivsh_vector_notify(void *opaque);

static void ivsh_vector_resume(void *opaque)
{
    IvshVector *v = opaque;

    if (v->throttled) {
        v->throttled = false;
        qemu_set_fd_handler(event_notifier_get_fd(v->notifier),
                            ivsh_vector_notify, NULL, v);
    }
}

/*
 * The eventfd stays readable however often it is read: an EFD_SEMAPHORE
 * eventfd (each read takes one from the counter), or a peer ringing
 * without pause.  Pause the handler for a while: doorbells coalesce, as
 * an eventfd's do anyway.
 */
static void ivsh_vector_pause(IvshState *s, IvshVector *v)
{
    trace_ivsh_vector_throttle(v->nr);
    if (!s->throttle_warned) {
        warn_report("%s: the eventfd of vector %u stays readable after %u "
                    "reads (an EFD_SEMAPHORE eventfd, or a peer ringing "
                    "without pause): its interrupts are coalesced, at most "
                    "one per %u ms", ivsh_name(s), v->nr, IVSH_NOTIFY_READS,
                    IVSH_THROTTLE_MS);
        s->throttle_warned = true;
    }
    if (!v->throttle) {
        v->throttle = timer_new_ms(QEMU_CLOCK_REALTIME, ivsh_vector_resume,
                                   v);
    }
    qemu_set_fd_handler(event_notifier_get_fd(v->notifier), NULL, NULL,
                        NULL);
    v->throttled = true;
    timer_mod(v->throttle,
              qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + IVSH_THROTTLE_MS);
}

/* An eventfd of ours was rung (userspace path) */
static void ivsh_vector_notify(void *opaque)
{
    IvshVector *v = opaque;
    int fd = event_notifier_get_fd(v->notifier);
    unsigned reads = 0;

    while (reads < IVSH_NOTIFY_READS && ivsh_efd_read(fd)) {
        reads++;
    }
    if (reads == IVSH_NOTIFY_READS) {
        ivsh_vector_pause(v->s, v);
    }
    if (reads) {
        ivsh_vector_deliver(v->s, v);
    }
}

static void ivsh_vector_handler_on(IvshVector *v)
{
    if (!v->handler) {
        qemu_set_fd_handler(event_notifier_get_fd(v->notifier),
                            ivsh_vector_notify, NULL, v);
        v->handler = true;
    }
}

static void ivsh_vector_handler_off(IvshVector *v)
{
    if (v->handler && !v->throttled) {
        qemu_set_fd_handler(event_notifier_get_fd(v->notifier), NULL, NULL,
                            NULL);
    }
    v->handler = false;
    v->throttled = false;
    if (v->throttle) {
        timer_del(v->throttle);
    }
}

static bool ivsh_use_irqfd(IvshState *s)
{
    return s->msi && kvm_msi_via_irqfd_enabled();
}

/*
 * Whether KVM takes @msg as an MSI route.  With the x2APIC API (more than
 * 255 APIC IDs, or intel-iommu eim=on), x86 KVM refuses a route whose
 * upper address has any of bits 0-7 set, and QEMU aborts when KVM refuses
 * its routing table.  Such a message, a guest's mistake, goes through
 * QEMU instead, which handles (or drops) it without aborting.
 */
static bool ivsh_msi_routable(MSIMessage msg)
{
    static int x86 = -1;

    if (x86 < 0) {
        x86 = !strcmp(target_name(), "x86_64") ||
              !strcmp(target_name(), "i386");
    }
    return !x86 || !((msg.address >> 32) & 0xff);
}

static void ivsh_vector_detach(IvshVector *v)
{
    if (v->irqfd) {
        kvm_irqchip_remove_irqfd_notifier_gsi(kvm_state, v->notifier,
                                              v->virq);
        v->irqfd = false;
    }
}

/*
 * KVM cannot deliver @v: QEMU does, through an fd handler, until the
 * guest disables MSI-X.  One warning per device, the rest is traced.
 */
static void ivsh_vector_fallback(IvshState *s, IvshVector *v,
                                 const char *why, int err)
{
    trace_ivsh_vector_fallback(v->nr, why, err);
    if (!s->fallback_warned) {
        warn_report("%s: vector %u: %s (%s): its interrupts go through "
                    "QEMU instead of a KVM irqfd; further vectors in this "
                    "case are only traced (ivsh_vector_fallback)",
                    ivsh_name(s), v->nr, why, strerror(-err));
        s->fallback_warned = true;
    }
    ivsh_vector_detach(v);
    ivsh_vector_handler_on(v);
}

/* Attach @v's irqfd to its route, if bus mastering allows a message */
static void ivsh_vector_attach(IvshState *s, IvshVector *v)
{
    int ret;

    if (v->irqfd || !ivsh_bus_master(s)) {
        return;
    }
    ret = kvm_irqchip_add_irqfd_notifier_gsi(kvm_state, v->notifier, NULL,
                                             v->virq);
    if (ret < 0) {
        ivsh_vector_fallback(s, v, "KVM refused its irqfd", ret);
        return;
    }
    v->irqfd = true;
}

/*
 * The vector use notifier of msix.c (MSI-X enabled, vector unmasked).
 * It never fails: msix.c asserts that it does not.
 */
static int ivsh_vector_unmask(PCIDevice *pdev, unsigned vector,
                              MSIMessage msg)
{
    IvshState *s = IVSH_COMMON(pdev);
    IvshVector *v = &s->msi_vectors[vector];
    KVMRouteChange c;
    int ret;

    trace_ivsh_vector_unmask(vector, v->virq);
    if (!v->notifier || v->handler) {
        return 0;   /* no eventfd yet, or delivered by QEMU already */
    }
    if (!ivsh_msi_routable(msg)) {
        ivsh_vector_fallback(s, v, "KVM cannot route its MSI-X message",
                             -EINVAL);
        return 0;
    }
    if (v->virq < 0) {
        c = kvm_irqchip_begin_route_changes(kvm_state);
        ret = kvm_irqchip_add_msi_route(&c, vector, pdev);
        if (ret < 0) {
            ivsh_vector_fallback(s, v, "no KVM MSI route", ret);
            return 0;
        }
        kvm_irqchip_commit_route_changes(&c);
        v->virq = ret;
        v->msg = msg;
    } else if (v->msg.address != msg.address || v->msg.data != msg.data) {
        ret = kvm_irqchip_update_msi_route(kvm_state, v->virq, msg, pdev);
        if (ret < 0) {
            ivsh_vector_fallback(s, v, "KVM refused its MSI route", ret);
            return 0;
        }
        kvm_irqchip_commit_routes(kvm_state);
        v->msg = msg;
    }
    ivsh_vector_attach(s, v);
    return 0;
}

static void ivsh_vector_mask(PCIDevice *pdev, unsigned vector)
{
    IvshState *s = IVSH_COMMON(pdev);

    ivsh_vector_detach(&s->msi_vectors[vector]);
    trace_ivsh_vector_mask(vector);
}

/* The guest reads the PBA: report doorbells latched in masked vectors */
static void ivsh_vector_poll(PCIDevice *pdev, unsigned start, unsigned end)
{
    IvshState *s = IVSH_COMMON(pdev);
    unsigned i;

    for (i = start; i < MIN(end, s->vectors); i++) {
        IvshVector *v = &s->msi_vectors[i];

        if (s->irqfd_active && v->notifier && !v->handler &&
            msix_is_masked(pdev, i) &&
            ivsh_efd_read(event_notifier_get_fd(v->notifier))) {
            if (ivsh_bus_master(s)) {
                msix_set_pending(pdev, i);
            } else {
                ivsh_vector_hold(s, v);
            }
        }
        if (v->held) {
            /* msix.c may have cleared it on unmask: it is still pending */
            msix_set_pending(pdev, i);
        }
    }
}

/* Vector notifiers while doorbells are held without irqfds: no-ops */
static int ivsh_bm_unmask(PCIDevice *pdev, unsigned vector, MSIMessage msg)
{
    return 0;
}

static void ivsh_bm_mask(PCIDevice *pdev, unsigned vector)
{
}

/*
 * While doorbells are held (ivsh_vector_hold()), the PBA must keep
 * showing them, but msix.c clears a vector's bit when the guest unmasks
 * it, clears Function Mask or enables MSI-X.  The poll notifier, called
 * on every PBA read, sets it again (ivsh_vector_poll()).  With irqfds it
 * is installed already; otherwise install it (with no-op vector
 * notifiers) while bus mastering is off and a doorbell is held.
 */
static void ivsh_bm_notifiers(IvshState *s)
{
    PCIDevice *pdev = PCI_DEVICE(s);
    bool want = false;
    uint32_t i;

    if (s->irqfd_active) {
        return;
    }
    for (i = 0; !ivsh_bus_master(s) && i < s->vectors; i++) {
        want |= s->msi_vectors[i].held;
    }
    if (want && !pdev->msix_vector_use_notifier) {
        msix_set_vector_notifiers(pdev, ivsh_bm_unmask, ivsh_bm_mask,
                                  ivsh_vector_poll);
    } else if (!want && pdev->msix_vector_use_notifier) {
        msix_unset_vector_notifiers(pdev);
    }
}

static void ivsh_irqfd_disable(IvshState *s);

/*
 * MSI-X was enabled: give every vector with an eventfd a KVM route, in
 * one update of the routing table, then let msix.c attach the irqfds of
 * the unmasked ones.  A vector without a route is delivered by QEMU.
 */
static void ivsh_irqfd_enable(IvshState *s)
{
    PCIDevice *pdev = PCI_DEVICE(s);
    KVMRouteChange c;
    uint32_t i, routes = 0;
    int ret;

    /* What the handlers set pending, msix.c delivered on enable */
    for (i = 0; i < s->vectors; i++) {
        if (s->msi_vectors[i].notifier) {
            ivsh_vector_handler_off(&s->msi_vectors[i]);
        }
    }
    c = kvm_irqchip_begin_route_changes(kvm_state);
    for (i = 0; i < s->vectors; i++) {
        IvshVector *v = &s->msi_vectors[i];
        MSIMessage msg = msix_get_message(pdev, i);

        if (!v->notifier || v->virq >= 0 || !ivsh_msi_routable(msg)) {
            continue;   /* routed on unmask, if ever */
        }
        ret = kvm_irqchip_add_msi_route(&c, i, pdev);
        if (ret < 0) {
            ivsh_vector_fallback(s, v, "no KVM MSI route", ret);
            continue;
        }
        v->virq = ret;
        v->msg = msg;
        routes++;
    }
    kvm_irqchip_commit_route_changes(&c);
    trace_ivsh_irqfd_enable(routes);

    if (pdev->msix_vector_use_notifier) {
        msix_unset_vector_notifiers(pdev);  /* ivsh_bm_notifiers()' */
    }
    if (msix_set_vector_notifiers(pdev, ivsh_vector_unmask,
                                  ivsh_vector_mask, ivsh_vector_poll) < 0) {
        /* Not expected: ivsh_vector_unmask() never fails */
        error_report("%s: cannot route MSI-X vectors through KVM irqfds",
                     ivsh_name(s));
        ivsh_irqfd_disable(s);      /* QEMU delivers them all */
        return;
    }
    s->irqfd_active = true;
}

/*
 * MSI-X disabled, reset or unplug: detach every irqfd and release every
 * route, whatever state enabling left behind.  While MSI-X is disabled,
 * QEMU fd handlers take the doorbells, which msix.c makes pending in the
 * PBA, as without KVM.
 */
static void ivsh_irqfd_disable(IvshState *s)
{
    uint32_t i;

    trace_ivsh_irqfd_disable(s->irqfd_active);
    if (PCI_DEVICE(s)->msix_vector_use_notifier) {
        /* The irqfd ones, or ivsh_bm_notifiers()' */
        msix_unset_vector_notifiers(PCI_DEVICE(s));
    }
    s->irqfd_active = false;
    for (i = 0; i < s->vectors; i++) {
        IvshVector *v = &s->msi_vectors[i];

        ivsh_vector_detach(v);
        if (v->virq >= 0) {
            kvm_irqchip_release_virq(kvm_state, v->virq);
            v->virq = -1;
        }
        v->msg = (MSIMessage) { 0 };
        if (v->notifier) {
            ivsh_vector_handler_on(v);
        }
    }
}

/* Bus mastering changed: hold or release the interrupts it blocks */
static void ivsh_bus_master_changed(IvshState *s)
{
    PCIDevice *pdev = PCI_DEVICE(s);
    bool on = ivsh_bus_master(s);
    uint32_t i;

    trace_ivsh_bus_master(on);
    for (i = 0; i < s->vectors; i++) {
        IvshVector *v = &s->msi_vectors[i];

        if (!on) {
            /* What is pending now is held too (see ivsh_vector_hold()) */
            v->held |= ivsh_msix_pending(pdev, i);
        } else if (v->held) {
            /* Delivered now, or pending again if masked */
            v->held = false;
            msix_clr_pending(pdev, i);
            msix_notify(pdev, i);
        }
        if (s->irqfd_active && v->virq >= 0 && v->notifier && !v->handler &&
            !msix_is_masked(pdev, i)) {
            if (on) {
                ivsh_vector_attach(s, v);   /* KVM delivers what waits */
            } else {
                ivsh_vector_detach(v);
            }
        }
    }
    ivsh_bm_notifiers(s);
}

void ivsh_peers_write_config(PCIDevice *pdev, uint32_t addr, uint32_t val,
                                int len)
{
    IvshState *s = IVSH_COMMON(pdev);
    bool was_enabled = msix_enabled(pdev);
    bool was_master = ivsh_bus_master(s);

    pci_default_write_config(pdev, addr, val, len);
    if (ivsh_use_irqfd(s) && was_enabled != msix_enabled(pdev)) {
        if (was_enabled) {
            ivsh_irqfd_disable(s);
        } else {
            ivsh_irqfd_enable(s);
        }
    }
    if (s->msi && s->msi_vectors && was_master != ivsh_bus_master(s)) {
        ivsh_bus_master_changed(s);
    } else if (s->msi && s->msi_vectors) {
        ivsh_bm_notifiers(s);       /* after ivsh_irqfd_disable() */
    }
}

/* Our own eventfd for @vector arrived: start delivering it */
static void ivsh_own_vector_ready(IvshState *s, uint32_t vector,
                                  EventNotifier *n)
{
    PCIDevice *pdev = PCI_DEVICE(s);
    IvshVector *v = &s->msi_vectors[vector];

    v->notifier = n;
    if (!ivsh_use_irqfd(s) || !s->irqfd_active) {
        ivsh_vector_handler_on(v);
    } else if (!msix_is_masked(pdev, vector)) {
        ivsh_vector_unmask(pdev, vector, msix_get_message(pdev, vector));
    }
}

static void ivsh_own_vector_release(IvshState *s, uint32_t vector)
{
    IvshVector *v = &s->msi_vectors[vector];

    if (!v->notifier) {
        return;
    }
    ivsh_vector_handler_off(v);
    ivsh_vector_detach(v);
    if (v->throttle) {
        timer_free(v->throttle);
        v->throttle = NULL;
    }
    v->notifier = NULL;
}

/*
 * Files are compared with kcmp(KCMP_FILE), whose results order them
 * consistently: eventfd_files is a search tree of the device's eventfds.
 */
static gint ivsh_file_cmp(gconstpointer a, gconstpointer b, gpointer opaque)
{
    pid_t pid = GPOINTER_TO_INT(opaque);
    int fa = GPOINTER_TO_INT(a), fb = GPOINTER_TO_INT(b);
    long ret = syscall(SYS_kcmp, pid, pid, IVSH_KCMP_FILE, fa, fb);

    if (ret == 0 || fa == fb) {
        return 0;
    }
    if (ret == 1 || ret == 2) {
        return ret == 1 ? -1 : 1;
    }
    return fa < fb ? -1 : 1;    /* not reached: both fds are ours */
}

/*
 * Refuse an eventfd the device already holds under another peer or
 * vector: two consumers of one counter would each take a random share of
 * its doorbells (and KVM refuses a second irqfd on it).  The file that
 * (@id, @vector) itself holds is no duplicate: a server restarted with
 * systemd's fd store sends the same eventfds again.  The caller records
 * the fd in eventfd_files.
 */
static bool ivsh_eventfd_unique(IvshState *s, uint16_t id, uint32_t vector,
                                int fd)
{
    uint32_t slot = (uint32_t)id << 16 | vector, other;
    g_autofree char *msg = NULL;
    gpointer val;

    if (!s->eventfd_files ||
        !g_tree_lookup_extended(s->eventfd_files, GINT_TO_POINTER(fd), NULL,
                                &val) ||
        GPOINTER_TO_UINT(val) == slot) {
        return true;
    }
    other = GPOINTER_TO_UINT(val);
    trace_ivsh_eventfd_dup(id, vector, other >> 16, other & 0xffff);
    msg = g_strdup_printf("server sent the eventfd of peer %u vector %u "
                          "again, as peer %u vector %u: refused",
                          other >> 16, other & 0xffff, id, vector);
    ivsh_conn_report_drop(s, msg);
    return false;
}

static void ivsh_eventfd_record(IvshState *s, uint16_t id, uint32_t vector,
                                EventNotifier *n)
{
    if (s->eventfd_files) {
        g_tree_insert(s->eventfd_files,
                      GINT_TO_POINTER(event_notifier_get_fd(n)),
                      GUINT_TO_POINTER((uint32_t)id << 16 | vector));
    }
}

static void ivsh_eventfd_forget(IvshState *s, EventNotifier *n)
{
    if (s->eventfd_files) {
        g_tree_remove(s->eventfd_files,
                      GINT_TO_POINTER(event_notifier_get_fd(n)));
    }
}

static EventNotifier *ivsh_eventfd_new(int fd)
{
    EventNotifier *n = g_new0(EventNotifier, 1);

    event_notifier_init_fd(n, fd);
    g_unix_set_fd_nonblocking(fd, true, NULL);
    return n;
}

static void ivsh_peer_ioeventfd(IvshState *s, IvshPeer *p, uint32_t vector);

static void ivsh_peer_add_eventfd(IvshState *s, uint16_t id, uint32_t vector,
                                  int fd)
{
    IvshPeer *p = ivsh_peer_find(s, id);
    EventNotifier *n;

    if (!p) {
        p = g_new0(IvshPeer, 1);
        p->id = id;
        g_hash_table_insert(s->peers, GUINT_TO_POINTER(id), p);
    }
    /* The decoder hands out vectors in order, below s->vectors */
    assert(vector == p->nr && vector < s->vectors);
    if (p->nr == p->size) {
        p->size = MIN(MAX(p->size * 2, 4), s->vectors);
        p->vec = g_renew(EventNotifier *, p->vec, p->size);
    }
    p->vec[p->nr++] = NULL;
    if (!ivsh_eventfd_unique(s, id, vector, fd)) {
        close(fd);
        return;
    }
    n = ivsh_eventfd_new(fd);
    ivsh_eventfd_record(s, id, vector, n);
    p->vec[vector] = n;
    trace_ivsh_peer_eventfd(id, vector);

    if (id == s->vm_id) {
        ivsh_own_vector_ready(s, vector, n);
    } else {
        /* Our own are counted from realize on */
        p->held++;
        s->eventfds_counted++;
        ivsh_eventfds_all++;
    }
    ivsh_peer_ioeventfd(s, p, vector);
}

/*
 * After a reconnection: @fd is the new eventfd of @p's @vector, which had
 * one from an earlier connection (or a refused duplicate, NULL).  The new
 * one takes over: the ioeventfd (removed and added in two memory
 * transactions: KVM refuses two ioeventfds for one doorbell, and QEMU
 * aborts then), our own vector's irqfd or fd handler, and a doorbell that
 * reached the old own eventfd but was not delivered yet.  The old fd is
 * closed.  A duplicate of another slot is refused and the old one kept.
 */
static void ivsh_peer_swap_eventfd(IvshState *s, IvshPeer *p,
                                   uint32_t vector, int fd)
{
    EventNotifier *old = p->vec[vector], *n;
    bool own = p->id == s->vm_id;
    bool rewire = old && vector < p->nr_ioeventfd;
    uint64_t pending = 0;

    if (!ivsh_eventfd_unique(s, p->id, vector, fd)) {
        close(fd);
        return;
    }
    n = ivsh_eventfd_new(fd);
    trace_ivsh_peer_eventfd_swap(p->id, vector, !!old);
    if (old) {
        /* While both are open: the same file counts as equal */
        ivsh_eventfd_forget(s, old);
    }
    ivsh_eventfd_record(s, p->id, vector, n);
    if (rewire) {
        memory_region_del_eventfd(&s->mmio, IVSH_REG_DOORBELL, 4, true,
                                  IVSH_DOORBELL(p->id, vector), old);
        memory_region_add_eventfd(&s->mmio, IVSH_REG_DOORBELL, 4, true,
                                  IVSH_DOORBELL(p->id, vector), n);
    }
    if (own) {
        if (old) {
            ivsh_own_vector_release(s, vector);
            pending = ivsh_efd_read(event_notifier_get_fd(old));
        }
        ivsh_own_vector_ready(s, vector, n);
        if (pending) {
            ivsh_vector_deliver(s, &s->msi_vectors[vector]);
        }
    } else if (!old) {
        p->held++;
        s->eventfds_counted++;
        ivsh_eventfds_all++;
    }
    p->vec[vector] = n;
    if (old) {
        event_notifier_cleanup(old);
        g_free(old);
    }
    if (!rewire) {
        ivsh_peer_ioeventfd(s, p, vector);
    }
}

/* Give @p's @vector an ioeventfd if the next one in order is due */
static void ivsh_peer_ioeventfd(IvshState *s, IvshPeer *p, uint32_t vector)
{
    EventNotifier *n = p->vec[vector];

    if (!s->ioeventfd || !kvm_enabled() || !n ||
        p->nr_ioeventfd != vector) {
        return;
    }
    if (s->nr_ioeventfds >= s->ioeventfd_budget ||
        ivsh_ioeventfds_in_use >= IVSH_IOEVENTFD_GLOBAL_MAX) {
        if (!s->ioeventfd_budget_warned) {
            warn_report("%s: ioeventfd budget reached (%u for this device, "
                        "%u for all): doorbells to further peer vectors go "
                        "through QEMU", ivsh_name(s), s->ioeventfd_budget,
                        IVSH_IOEVENTFD_GLOBAL_MAX);
            s->ioeventfd_budget_warned = true;
        }
        return;
    }
    memory_region_add_eventfd(&s->mmio, IVSH_REG_DOORBELL, 4, true,
                              IVSH_DOORBELL(p->id, vector), n);
    p->nr_ioeventfd++;
    s->nr_ioeventfds++;
    ivsh_ioeventfds_in_use++;
}

static void ivsh_peer_free(IvshState *s, IvshPeer *p)
{
    uint32_t i;

    trace_ivsh_peer_gone(p->id, p->nr);
    if (p->id == s->vm_id) {
        for (i = 0; i < p->nr; i++) {
            ivsh_own_vector_release(s, i);
        }
    }
    if (p->nr_ioeventfd) {
        memory_region_transaction_begin();
        for (i = 0; i < p->nr_ioeventfd; i++) {
            memory_region_del_eventfd(&s->mmio, IVSH_REG_DOORBELL, 4, true,
                                      IVSH_DOORBELL(p->id, i), p->vec[i]);
        }
        memory_region_transaction_commit();
        s->nr_ioeventfds -= p->nr_ioeventfd;
        ivsh_ioeventfds_in_use -= p->nr_ioeventfd;
    }
    for (i = 0; i < p->nr; i++) {
        if (!p->vec[i]) {
            continue;
        }
        ivsh_eventfd_forget(s, p->vec[i]);
        event_notifier_cleanup(p->vec[i]);
        g_free(p->vec[i]);
    }
    s->eventfds_counted -= p->held;
    ivsh_eventfds_all -= p->held;
    g_free(p->vec);
    g_free(p);
}

void ivsh_doorbell_ring(IvshState *s, uint16_t peer, uint16_t vector)
{
    IvshPeer *p = ivsh_peer_find(s, peer);
    EventNotifier *n = p && vector < p->nr ? p->vec[vector] : NULL;

    if (!n) {
        qemu_log_mask(LOG_GUEST_ERROR, "%s: doorbell to %s %u vector %u "
                      "ignored\n", ivsh_name(s),
                      p ? "peer" : "unknown peer", peer, vector);
        return;
    }
    trace_ivsh_doorbell(peer, vector);
    if (!ivsh_efd_ring(event_notifier_get_fd(n))) {
        trace_ivsh_doorbell_full(peer, vector);
        if (!s->ring_full_warned) {
            warn_report("%s: doorbell to peer %u vector %u dropped: its "
                        "eventfd's counter is full; further ones are only "
                        "traced (ivsh_doorbell_full)", ivsh_name(s), peer,
                        vector);
            s->ring_full_warned = true;
        }
    }
}

/* Act on one message the decoder accepted after set-up */
static void ivsh_conn_event(IvshState *s, const IvshEvent *ev)
{
    IvshPeer *p;

    switch (ev->kind) {
    case IVSH_EV_EVENTFD:
        p = ivsh_peer_find(s, ev->peer);
        if (ev->replaces) {
            /* The decoder counts what the device received */
            assert(p && ev->vector < p->nr);
            ivsh_peer_swap_eventfd(s, p, ev->vector, ev->fd);
        } else {
            ivsh_peer_add_eventfd(s, ev->peer, ev->vector, ev->fd);
        }
        break;
    case IVSH_EV_PEER_GONE:
        p = ivsh_peer_find(s, ev->peer);
        if (p) {
            g_hash_table_remove(s->peers, GUINT_TO_POINTER(ev->peer));
            ivsh_peer_free(s, p);
        }
        break;
    default:
        break;
    }
}

/* Half of RLIMIT_NOFILE: the eventfds all devices may hold together */
static uint64_t ivsh_eventfd_cap(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) {
        return UINT32_MAX;
    }
    return rl.rlim_cur / 2;
}

/*
 * How many eventfds the decoder may hold: x-max-eventfds, and no more
 * than the room left under the all-devices cap.  Returns true when the
 * cap is what limits it.
 */
static bool ivsh_eventfd_budget(IvshState *s)
{
    uint64_t cap = ivsh_eventfd_cap();
    uint64_t spare = cap > ivsh_eventfds_all ? cap - ivsh_eventfds_all : 0;
    uint32_t own = ivsh_client_own_fds(&s->client);
    uint64_t max = s->client.nr_fds + (s->vectors - MIN(own, s->vectors)) +
                   spare;

    s->client.max_fds = MIN(max, s->max_eventfds);
    return max < s->max_eventfds;
}

static const char *const ivsh_conn_state_names[] = {
    [IVSH_CONN_NONE] = "none",
    [IVSH_CONN_CONNECTED] = "connected",
    [IVSH_CONN_DOWN] = "disconnected",
    [IVSH_CONN_SETUP] = "reading a new set-up",
    [IVSH_CONN_REFUSED] = "refused",
    [IVSH_CONN_STOPPED] = "stopped reading",
};

/* Move to @state; @why says why for IVSH_CONN_REFUSED and _STOPPED */
static void ivsh_conn_set_state(IvshState *s, IvshConnState state,
                                const char *why)
{
    if (state != IVSH_CONN_DOWN && state != IVSH_CONN_SETUP) {
        g_clear_pointer(&s->conn_since, g_date_time_unref);
    } else if (!s->conn_since) {
        s->conn_since = g_date_time_new_now_utc();
    }
    g_free(s->conn_why);
    s->conn_why = g_strdup(why);
    s->conn_state = state;
    trace_ivsh_conn_state(ivsh_conn_state_names[state], why ? why : "");
}

/* Whether messages from the server are read */
static bool ivsh_conn_reading(IvshState *s)
{
    return s->conn_state == IVSH_CONN_CONNECTED ||
           s->conn_state == IVSH_CONN_SETUP;
}

/* The "connection" property */
static char *ivsh_conn_describe(IvshState *s)
{
    g_autofree char *since = NULL;

    switch (s->conn_state) {
    case IVSH_CONN_CONNECTED:
        return g_strdup("connected");
    case IVSH_CONN_DOWN:
    case IVSH_CONN_SETUP:
        since = g_date_time_format_iso8601(s->conn_since);
        if (s->conn_state == IVSH_CONN_SETUP) {
            return g_strdup_printf("disconnected since %s, reading a new "
                                   "set-up", since);
        }
        if (s->reconnect_ms) {
            return g_strdup_printf("disconnected since %s, reconnecting "
                                   "every %" PRId64 " ms", since,
                                   s->reconnect_ms);
        }
        return g_strdup_printf("disconnected since %s, not reconnecting "
                               "(no reconnect-ms on the chardev)", since);
    case IVSH_CONN_REFUSED:
        return g_strdup_printf("refused: %s", s->conn_why);
    case IVSH_CONN_STOPPED:
        return g_strdup_printf("stopped reading: %s", s->conn_why);
    default:
        return g_strdup("none");
    }
}

static char *ivsh_conn_prop_get(Object *obj, Error **errp)
{
    return ivsh_conn_describe(IVSH_COMMON(obj));
}

void ivsh_conn_add_property(ObjectClass *oc)
{
    object_class_property_add_str(oc, "connection", ivsh_conn_prop_get,
                                  NULL);
    object_class_property_set_description(oc, "connection",
        "The ivshmem server connection (read-only): connected, "
        "disconnected since TIME, refused: REASON, stopped reading: "
        "REASON, or none");
}

/* The chardev's socket now, or -1 */
static int ivsh_chr_sock(IvshState *s)
{
    Chardev *chr = qemu_chr_fe_get_driver(&s->server_chr);
    SocketChardev *sc = chr ? (SocketChardev *)object_dynamic_cast(
                                  OBJECT(chr), TYPE_CHARDEV_SOCKET) : NULL;

    return sc && sc->sioc ? sc->sioc->fd : -1;
}

/*
 * A new set-up after a reconnection is refused: close the connection and
 * stop dialling (a server that keeps sending what we refuse would be
 * dialled every reconnect-ms forever).  One error; the device keeps what
 * it has.
 */
static void ivsh_conn_refuse(IvshState *s, const char *why)
{
    ivsh_conn_set_state(s, IVSH_CONN_REFUSED, why);
    memset(&s->reader, 0, sizeof(s->reader));
    error_report("%s: the ivshmem server's new set-up is refused: %s; the "
                 "device stays disconnected (it does not dial again) and "
                 "keeps the shared memory and %u known peers", ivsh_name(s),
                 why, ivsh_client_nr_peers(&s->client));
    ivsh_conn_hangup(s);
}

/*
 * A message of the set-up of a new connection (ivsh_conn_opened()): the
 * same ID and the same shared memory object (device and inode, and size)
 * as at realize, or the set-up is refused.  The memory is not mapped
 * again: the new fd is closed.
 */
static void ivsh_conn_resetup(IvshState *s, IvshVerdict verdict,
                              IvshEvent *ev, GError *err)
{
    g_autofree char *why = NULL;
    struct stat st;

    if (verdict != IVSH_OK) {
        why = g_strdup(err->message);
    } else if (ev->kind == IVSH_EV_OWN_ID && ev->peer != s->vm_id) {
        why = g_strdup_printf("the server gave ID %u, this device has ID %u",
                              ev->peer, s->vm_id);
    } else if (ev->kind == IVSH_EV_SHM) {
        if (fstat(ev->fd, &st) < 0) {
            why = g_strdup_printf("cannot stat its shared memory: %s",
                                  strerror(errno));
        } else if (st.st_dev != s->shm_dev || st.st_ino != s->shm_ino) {
            why = g_strdup("the server has other shared memory (not the "
                           "object this device maps)");
        } else if (ev->size != s->shm_srv_size) {
            why = g_strdup_printf("the server's shared memory has %" PRIu64
                                  " bytes, it had %" PRIu64, ev->size,
                                  s->shm_srv_size);
        }
        close(ev->fd);
        if (!why) {
            ivsh_conn_set_state(s, IVSH_CONN_CONNECTED, NULL);
            trace_ivsh_conn_connected(s->vm_id, ev->size);
            info_report("%s: reconnected to the ivshmem server: ID %u, the "
                        "same shared memory", ivsh_name(s), s->vm_id);
        }
    }
    if (why) {
        ivsh_conn_refuse(s, why);
    }
}

static void ivsh_conn_msg(IvshState *s, int64_t msg, int fd)
{
    g_autoptr(GError) err = NULL;
    bool by_rlimit = ivsh_eventfd_budget(s);
    IvshVerdict verdict;
    IvshEvent ev;

    trace_ivsh_conn_msg(msg, fd);
    verdict = ivsh_client_handle(&s->client, msg, fd, &ev, &err);
    if (s->conn_state == IVSH_CONN_SETUP) {
        ivsh_conn_resetup(s, verdict, &ev, err);
        return;
    }
    switch (verdict) {
    case IVSH_OK:
        ivsh_conn_event(s, &ev);
        break;
    case IVSH_DROP:
        /* A peer refused as a whole: what was accepted of it goes */
        ivsh_conn_event(s, &ev);
        ivsh_conn_report_drop(s, err->message);
        if (by_rlimit && fd >= 0 && !s->rlimit_warned) {
            warn_report("%s: QEMU's file limit (RLIMIT_NOFILE) bounds the "
                        "eventfds: ivshmem devices hold at most %" PRIu64
                        " together, half of it", ivsh_name(s),
                        ivsh_eventfd_cap());
            s->rlimit_warned = true;
        }
        break;
    case IVSH_FATAL:
        error_report("%s: %s; no longer reading from the ivshmem server, "
                     "keeping the shared memory and %u known peers",
                     ivsh_name(s), err->message,
                     ivsh_client_nr_peers(&s->client));
        ivsh_conn_set_state(s, IVSH_CONN_STOPPED, err->message);
        break;
    }
}

/*
 * Whether a message with an fd can be read without losing the fd: the
 * lowest free fd number must stay IVSH_FD_HEADROOM below RLIMIT_NOFILE.
 * QEMU's socket chardev does not report an fd the kernel dropped.
 */
static bool ivsh_fd_headroom(int probe_from, uint64_t *limit)
{
    struct rlimit rl;
    int fd;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur > INT_MAX) {
        return true;
    }
    *limit = rl.rlim_cur;
    fd = fcntl(probe_from, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        return errno != EMFILE;
    }
    close(fd);
    return (uint64_t)fd + IVSH_FD_HEADROOM <= rl.rlim_cur;
}

static int ivsh_conn_can_receive(void *opaque)
{
    IvshState *s = opaque;
    uint64_t limit = 0;

    if (!ivsh_conn_reading(s)) {
        return 0;
    }
    if (!ivsh_fd_headroom(s->server_sock, &limit)) {
        trace_ivsh_conn_stop("no fd headroom");
        error_report("%s: QEMU has fewer than %u file descriptors left "
                     "(RLIMIT_NOFILE %" PRIu64 "); no longer reading from "
                     "the ivshmem server, keeping the shared memory and %u "
                     "known peers", ivsh_name(s), IVSH_FD_HEADROOM, limit,
                     ivsh_client_nr_peers(&s->client));
        ivsh_conn_set_state(s, IVSH_CONN_STOPPED, "QEMU is running out of "
                            "file descriptors");
        return 0;
    }
    return ivsh_reader_want(&s->reader);
}

static void ivsh_conn_read(void *opaque, const uint8_t *buf, int size)
{
    IvshState *s = opaque;
    bool complete;
    int64_t msg;
    size_t n;

    while (size > 0 && ivsh_conn_reading(s)) {
        n = ivsh_reader_feed(&s->reader, buf, size, &complete, &msg);
        buf += n;
        size -= n;
        if (complete) {
            ivsh_conn_msg(s, msg, qemu_chr_fe_get_msgfd(&s->server_chr));
        }
    }
}

/*
 * The connection closed.  Called with the chardev's write lock held: no
 * chardev calls here.  The device keeps its memory and the peers it
 * knows; a message cut short, and the fd that came with it (the chardev
 * closes the fds nobody took), belong to the old connection: whatever
 * comes on another one starts with a new set-up, which must never be
 * read as the rest of the old stream.
 */
static void ivsh_conn_closed(IvshState *s)
{
    bool was_up = s->conn_state == IVSH_CONN_CONNECTED ||
                  s->conn_state == IVSH_CONN_STOPPED;

    memset(&s->reader, 0, sizeof(s->reader));
    if (s->conn_state == IVSH_CONN_NONE ||
        s->conn_state == IVSH_CONN_REFUSED) {
        return;
    }
    trace_ivsh_conn_stop("connection closed");
    ivsh_conn_set_state(s, IVSH_CONN_DOWN, NULL);
    if (!was_up || s->shutting_down) {
        return;
    }
    if (s->reconnect_ms) {
        warn_report("%s: the ivshmem server closed the connection; keeping "
                    "the shared memory and %u known peers, reconnecting "
                    "every %" PRId64 " ms", ivsh_name(s),
                    ivsh_client_nr_peers(&s->client), s->reconnect_ms);
    } else {
        warn_report("%s: the ivshmem server closed the connection; keeping "
                    "the shared memory and %u known peers (not "
                    "reconnecting: the chardev has no reconnect-ms)",
                    ivsh_name(s), ivsh_client_nr_peers(&s->client));
    }
}

/*
 * The chardev connected again (reconnect-ms=): read the new set-up from
 * the event loop, with the decoder restarted (the peers it knew become
 * stale until announced again).  The OPENED event of the connection
 * realize used (sent when the handlers are installed) is ignored.
 */
static void ivsh_conn_opened(IvshState *s)
{
    if (s->conn_state != IVSH_CONN_DOWN) {
        return;
    }
    s->server_sock = ivsh_chr_sock(s);
    memset(&s->reader, 0, sizeof(s->reader));
    ivsh_client_restart(&s->client);
    ivsh_conn_set_state(s, IVSH_CONN_SETUP, NULL);
}

static void ivsh_conn_chr_event(void *opaque, QEMUChrEvent event)
{
    IvshState *s = opaque;

    if (event == CHR_EVENT_CLOSED) {
        ivsh_conn_closed(s);
    } else if (event == CHR_EVENT_OPENED) {
        ivsh_conn_opened(s);
    }
}

/* Read one message during set-up, waiting at most until @deadline (ms). */
static bool ivsh_setup_recv(IvshState *s, int sock, int64_t deadline,
                            int64_t *msg, int *fd, Error **errp)
{
    bool complete = false;
    uint8_t byte;
    int ret;

    while (!complete) {
        int64_t left = deadline - g_get_monotonic_time() / 1000;
        struct pollfd pfd = { .fd = sock, .events = POLLIN };

        if (left <= 0) {
            error_setg(errp, "the ivshmem server did not complete the "
                       "set-up within %u ms", s->setup_timeout_ms);
            return false;
        }
        ret = poll(&pfd, 1, left);
        if (ret < 0 && errno == EINTR) {
            continue;
        }
        if (ret <= 0) {
            continue;   /* the deadline check above reports it */
        }
        /* One byte at a time: never block waiting for more */
        ret = qemu_chr_fe_read_all(&s->server_chr, &byte, 1);
        if (ret <= 0) {
            error_setg(errp, "the ivshmem server closed the connection "
                       "during set-up");
            return false;
        }
        ivsh_reader_feed(&s->reader, &byte, 1, &complete, msg);
    }
    *fd = qemu_chr_fe_get_msgfd(&s->server_chr);
    return true;
}

/*
 * A socket chardev the device cannot use, or NULL: no protocol layer
 * that cannot pass file descriptors.  (A listening one is refused once
 * connected, below: any local process could become the server.)
 * reconnect-ms= is fine: the device reads each new connection's set-up
 * (see ivsh_conn_opened()).
 */
static const char *ivsh_chr_refused(SocketChardev *sc)
{
    if (sc->is_websock) {
        return "is a WebSocket: ivshmem servers pass file descriptors over "
               "a plain socket";
    }
    if (sc->is_telnet || sc->is_tn3270) {
        return "speaks telnet: ivshmem servers pass file descriptors over a "
               "plain socket";
    }
    return NULL;
}

/*
 * Let a connection attempt of a reconnect-ms= chardev that runs in a
 * thread complete, with its completion handler (the state is then
 * CONNECTED, or DISCONNECTED with the redial timer armed).  This is what
 * char-socket.c's tcp_chr_wait_connected() does first.  A UNIX socket
 * connect() returns at once, unless the server's backlog is full.
 */
static void ivsh_chr_settle(Chardev *chr, SocketChardev *sc)
{
    if (sc->state == TCP_CHARDEV_STATE_CONNECTING && sc->connect_task) {
        g_main_context_acquire(chr->gcontext);
        qio_task_wait_thread(sc->connect_task);
        g_main_context_release(chr->gcontext);
    }
}

/*
 * Realize with a reconnect-ms= chardev: it connects asynchronously, and
 * dials again from the event loop, which does not run during realize.
 * Wait for the attempt in flight, then dial synchronously every
 * reconnect-ms until @deadline (ms) through qemu_chr_fe_wait_connected()
 * with the chardev's reconnect-ms set to 0 for the call (with it, that
 * function dials forever while the server is down).
 */
static bool ivsh_chr_wait_connected(IvshState *s, Chardev *chr,
                                    SocketChardev *sc, int64_t deadline,
                                    Error **errp)
{
    int64_t interval = sc->reconnect_time_ms, left;
    g_autofree char *last = NULL;
    Error *err = NULL;
    bool first = true;

    ivsh_chr_settle(chr, sc);
    while (sc->state != TCP_CHARDEV_STATE_CONNECTED) {
        left = deadline - g_get_monotonic_time() / 1000;
        if (left <= 0) {
            error_setg(errp, "cannot connect to the ivshmem server within "
                       "x-setup-timeout (%u ms)%s%s", s->setup_timeout_ms,
                       last ? ": " : "", last ? last : "");
            error_append_hint(errp, "The device needs the server's set-up "
                              "to be created; it follows the server through "
                              "restarts afterwards.\n");
            return false;
        }
        if (!first) {
            g_usleep(MIN(MAX(interval, 10), left) * 1000);
        }
        first = false;
        trace_ivsh_conn_dial(chr->label, left);
        sc->reconnect_time_ms = 0;
        if (qemu_chr_fe_wait_connected(&s->server_chr, &err) < 0) {
            g_free(last);
            last = g_strdup(error_get_pretty(err));
            error_free(err);
            err = NULL;
        }
        sc->reconnect_time_ms = interval;
    }
    return true;
}

static void ivsh_chr_no_fd_pass(Chardev *chr, Error **errp)
{
    error_setg(errp, "chardev '%s' cannot pass file descriptors", chr->label);
    error_append_hint(errp, "Connect to the ivshmem server with "
                      "-chardev socket,path=SOCKET.\n");
}

static bool ivsh_chr_check(IvshState *s, int64_t deadline, int *sock,
                           Error **errp)
{
    Chardev *chr = qemu_chr_fe_get_driver(&s->server_chr);
    SocketChardev *sc;
    const char *why;

    if (!chr) {
        /* Wording expected by scripts/device-crash-test */
        error_setg(errp, "You must specify a 'chardev'");
        return false;
    }
    /*
     * The socket chardev announces fd passing for path= only; fd= (a
     * socket a management layer connected) may be a UNIX socket too,
     * which the channel tells once connected (below).
     */
    if (!object_dynamic_cast(OBJECT(chr), TYPE_CHARDEV_SOCKET) ||
        (!qemu_chr_has_feature(chr, QEMU_CHAR_FEATURE_FD_PASS) &&
         SOCKET_CHARDEV(chr)->addr->type != SOCKET_ADDRESS_TYPE_FD)) {
        ivsh_chr_no_fd_pass(chr, errp);
        return false;
    }
    sc = SOCKET_CHARDEV(chr);
    why = ivsh_chr_refused(sc);
    if (why) {
        error_setg(errp, "chardev '%s' %s", chr->label, why);
        error_append_hint(errp, "Connect to the ivshmem server with "
                          "-chardev socket,path=SOCKET.\n");
        return false;
    }
    if (sc->reconnect_time_ms &&
        !ivsh_chr_wait_connected(s, chr, sc, deadline, errp)) {
        return false;
    }
    if (sc->state != TCP_CHARDEV_STATE_CONNECTED || !sc->sioc) {
        error_setg(errp, "chardev '%s' is not connected to an ivshmem "
                   "server", chr->label);
        return false;
    }
    if (sc->is_listen) {
        error_setg(errp, "chardev '%s' listens for connections "
                   "(server=on): the device is a client of the ivshmem "
                   "server", chr->label);
        error_append_hint(errp, "Connect to the ivshmem server with "
                          "-chardev socket,path=SOCKET.\n");
        return false;
    }
    if (!qio_channel_has_feature(QIO_CHANNEL(sc->sioc),
                                 QIO_CHANNEL_FEATURE_FD_PASS)) {
        ivsh_chr_no_fd_pass(chr, errp);
        return false;
    }
    s->reconnect_ms = sc->reconnect_time_ms;
    *sock = sc->sioc->fd;
    return true;
}

/*
 * Close the server connection for good: a failed realize, an unplug, a
 * refused set-up.  A reconnect-ms= chardev would dial again (the server
 * would get a phantom peer, or a refused server would be dialled every
 * reconnect-ms forever), and QEMU 10.0's socket chardev has no call to
 * stop that: once any attempt in flight has completed (its failure arms
 * the timer), its reconnect-ms is set to 0, so that no disconnect arms
 * the timer again, and an armed redial timer is removed, as
 * char-socket.c's own tcp_chr_reconn_timer_cancel() does.  The chardev
 * stays, unconnected, until chardev-remove.
 */
void ivsh_conn_hangup(IvshState *s)
{
    Chardev *chr = qemu_chr_fe_get_driver(&s->server_chr);
    SocketChardev *sc = chr ? (SocketChardev *)object_dynamic_cast(
                                  OBJECT(chr), TYPE_CHARDEV_SOCKET) : NULL;

    if (sc && sc->reconnect_time_ms) {
        ivsh_chr_settle(chr, sc);
        qemu_mutex_lock(&chr->chr_write_lock);
        sc->reconnect_time_ms = 0;
        if (sc->reconnect_timer) {
            g_source_destroy(sc->reconnect_timer);
            g_source_unref(sc->reconnect_timer);
            sc->reconnect_timer = NULL;
        }
        qemu_mutex_unlock(&chr->chr_write_lock);
        trace_ivsh_conn_no_redial(chr->label);
    }
    qemu_chr_fe_disconnect(&s->server_chr);
}

/* Check the properties of the server connection; nothing allocated */
static bool ivsh_conn_check_props(IvshState *s, Error **errp)
{
    if (s->setup_timeout_ms > IVSH_SETUP_TIMEOUT_MAX) {
        error_setg(errp, "x-setup-timeout=%u is above the maximum of %u ms",
                   s->setup_timeout_ms, IVSH_SETUP_TIMEOUT_MAX);
        return false;
    }
    if (s->max_eventfds < s->vectors) {
        error_setg(errp, "x-max-eventfds=%u is below vectors=%u: the "
                   "device's own eventfds would not fit", s->max_eventfds,
                   s->vectors);
        return false;
    }
    return true;
}

/* Reserve the own eventfds in the all-devices count; the kcmp tree */
static bool ivsh_conn_reserve(IvshState *s, int sock, Error **errp)
{
    uint64_t cap = ivsh_eventfd_cap(), limit = 0;
    pid_t pid = getpid();

    s->fd_check_held = ivsh_fd_check_hold();
    if (!s->fd_check_held) {
        error_setg(errp, "cannot open /proc/self/fd, which the device "
                   "needs to check the eventfds it receives");
        error_append_hint(errp, "After -run-with chroot=, hot-plug works "
                          "while another ivshmem device with a server "
                          "is present.\n");
        return false;
    }
    if (!ivsh_fd_headroom(sock, &limit)) {
        error_setg(errp, "QEMU has fewer than %u file descriptors left "
                   "(RLIMIT_NOFILE %" PRIu64 ")", IVSH_FD_HEADROOM, limit);
        return false;
    }
    if (ivsh_eventfds_all + s->vectors > cap) {
        error_setg(errp, "the %u eventfds of vectors=%u do not fit: ivshmem "
                   "devices hold at most %" PRIu64 " together (half of "
                   "RLIMIT_NOFILE) and %" PRIu64 " are taken", s->vectors,
                   s->vectors, cap, ivsh_eventfds_all);
        return false;
    }
    ivsh_eventfds_all += s->vectors;
    s->eventfds_counted = s->vectors;

    if (syscall(SYS_kcmp, pid, pid, IVSH_KCMP_FILE, sock, sock) == 0) {
        s->eventfd_files = g_tree_new_full(ivsh_file_cmp,
                                           GINT_TO_POINTER(pid), NULL, NULL);
    } else {
        trace_ivsh_conn_no_kcmp(errno);
    }
    return true;
}

/*
 * Connect to the server: read the set-up messages and map the shared
 * memory, @map_size bytes of it (0: all).
 */
bool ivsh_conn_connect(IvshState *s, uint64_t map_size, Error **errp)
{
    int64_t deadline = g_get_monotonic_time() / 1000 + s->setup_timeout_ms;
    g_autoptr(GError) err = NULL;
    int sock, fd, shm_fd = -1;
    uint64_t shm_size = 0;
    struct stat st;
    IvshEvent ev;
    int64_t msg;

    if (!ivsh_conn_check_props(s, errp) ||
        !ivsh_chr_check(s, deadline, &sock, errp)) {
        return false;
    }
    s->server_sock = sock;
    ivsh_client_init(&s->client, s->vectors, s->max_eventfds);
    ivsh_client_reserve_own(&s->client, s->vectors);
    s->peers = g_hash_table_new(g_direct_hash, g_direct_equal);
    if (!ivsh_conn_reserve(s, sock, errp)) {
        return false;
    }

    while (!ivsh_client_ready(&s->client)) {
        if (!ivsh_setup_recv(s, sock, deadline, &msg, &fd, errp)) {
            return false;
        }
        trace_ivsh_conn_msg(msg, fd);
        if (ivsh_client_handle(&s->client, msg, fd, &ev, &err) != IVSH_OK) {
            error_setg(errp, "%s", err->message);
            return false;
        }
        if (ev.kind == IVSH_EV_OWN_ID) {
            s->vm_id = ev.peer;
        } else if (ev.kind == IVSH_EV_SHM) {
            shm_fd = ev.fd;
            shm_size = ev.size;
            if (!ev.sealed) {
                trace_ivsh_shm_unsealed(shm_size);
            }
        }
    }

    /* What a set-up after a reconnection must give again */
    if (fstat(shm_fd, &st) < 0) {
        error_setg_errno(errp, errno, "cannot stat the ivshmem server's "
                         "shared memory");
        close(shm_fd);
        return false;
    }
    s->shm_dev = st.st_dev;
    s->shm_ino = st.st_ino;
    s->shm_srv_size = shm_size;
    if (map_size > shm_size) {
        error_setg(errp, "the ivshmem server's shared memory (%" PRIu64
                   " bytes) is smaller than size (%" PRIu64 " bytes)",
                   shm_size, map_size);
        close(shm_fd);
        return false;
    }
    if (!ivsh_map_fd(s, shm_fd, map_size ? map_size : shm_size, errp)) {
        return false;
    }
    trace_ivsh_conn_connected(s->vm_id, shm_size);
    return true;
}

bool ivsh_interrupts_init(IvshState *s, Error **errp)
{
    PCIDevice *pdev = PCI_DEVICE(s);
    uint32_t i;

    s->msi_vectors = g_new0(IvshVector, s->vectors);
    for (i = 0; i < s->vectors; i++) {
        s->msi_vectors[i].s = s;
        s->msi_vectors[i].nr = i;
        s->msi_vectors[i].virq = -1;
    }
    if (!s->msi) {
        return true;
    }
    if (msix_init_exclusive_bar(pdev, s->vectors, IVSH_BAR_MSIX, errp)) {
        return false;
    }
    for (i = 0; i < s->vectors; i++) {
        msix_vector_use(pdev, i);
    }
    return true;
}

static void ivsh_shutdown_notify(Notifier *n, void *opaque)
{
    IvshState *s = container_of(n, IvshState, shutdown_notifier);

    s->shutting_down = true;
}

/* Start reading the server's messages after set-up. */
void ivsh_conn_start(IvshState *s)
{
    s->shutdown_notifier.notify = ivsh_shutdown_notify;
    qemu_register_shutdown_notifier(&s->shutdown_notifier);
    ivsh_conn_set_state(s, IVSH_CONN_CONNECTED, NULL);
    qemu_chr_fe_set_handlers(&s->server_chr, ivsh_conn_can_receive,
                             ivsh_conn_read, ivsh_conn_chr_event, NULL,
                             s, NULL, true);
}

/*
 * Device reset: forget doorbells not delivered yet (one read each: an
 * EFD_SEMAPHORE eventfd gives one at a time, which is harmless).
 */
void ivsh_interrupts_reset(IvshState *s)
{
    uint32_t i;

    if (!s->msi_vectors) {
        return;
    }
    ivsh_irqfd_disable(s);
    for (i = 0; i < s->vectors; i++) {
        IvshVector *v = &s->msi_vectors[i];

        v->held = false;
        if (v->notifier) {
            ivsh_efd_read(event_notifier_get_fd(v->notifier));
        }
    }
}

int ivsh_peers_post_load(void *opaque, int version_id)
{
    IvshState *s = opaque;
    uint32_t i;

    if (ivsh_use_irqfd(s) && msix_enabled(PCI_DEVICE(s)) &&
        !s->irqfd_active) {
        ivsh_irqfd_enable(s);
    }
    /* Held doorbells travel as pending vectors (ivsh_vector_hold()) */
    if (s->msi && s->msi_vectors) {
        for (i = 0; i < s->vectors; i++) {
            s->msi_vectors[i].held = !ivsh_bus_master(s) &&
                ivsh_msix_pending(PCI_DEVICE(s), i);
        }
        ivsh_bm_notifiers(s);
    }
    ivsh_update_intx(s);
    return 0;
}

/* Undo everything of this file; copes with a half set-up device. */
void ivsh_conn_cleanup(IvshState *s)
{
    GHashTableIter it;
    gpointer value;

    qemu_chr_fe_set_handlers(&s->server_chr, NULL, NULL, NULL, NULL, NULL,
                             NULL, true);
    if (s->shutdown_notifier.notify) {
        notifier_remove(&s->shutdown_notifier);
        s->shutdown_notifier.notify = NULL;
    }
    if (s->msi_vectors) {
        ivsh_irqfd_disable(s);
    }
    if (s->peers) {
        g_hash_table_iter_init(&it, s->peers);
        while (g_hash_table_iter_next(&it, NULL, &value)) {
            ivsh_peer_free(s, value);
            g_hash_table_iter_remove(&it);
        }
        g_hash_table_destroy(s->peers);
        s->peers = NULL;
    }
    if (s->eventfd_files) {
        g_tree_destroy(s->eventfd_files);
        s->eventfd_files = NULL;
    }
    ivsh_eventfds_all -= s->eventfds_counted;
    s->eventfds_counted = 0;
    if (s->fd_check_held) {
        ivsh_fd_check_release();
        s->fd_check_held = false;
    }
    ivsh_client_destroy(&s->client);
    ivsh_conn_set_state(s, IVSH_CONN_NONE, NULL);
    if (msix_present(PCI_DEVICE(s))) {
        msix_uninit_exclusive_bar(PCI_DEVICE(s));
    }
    g_free(s->msi_vectors);
    s->msi_vectors = NULL;
}
