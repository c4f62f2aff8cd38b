/*
 * Inter-VM shared memory: the ivshmem server connection and doorbells
 *
 * Shared by ivshmem-doorbell and the legacy ivshmem device with a
 * chardev.  The protocol itself is decoded by ivsh-proto.c, which checks
 * every message; this file acts on what it accepted:
 *
 *  - set-up (version, own ID, shared memory) is read synchronously in
 *    realize, by polling the socket with a deadline (x-setup-timeout), so
 *    a stalled server fails realize instead of hanging QEMU;
 *  - later messages (peers' eventfds, disconnects) arrive through the
 *    chardev handlers; a message the decoder drops is logged and ignored,
 *    and after a fatal one the device stops reading from the server but
 *    keeps its memory and the peers it knows;
 *  - a peer's eventfds ring that peer: a Doorbell write to (peer, vector)
 *    is matched by an ioeventfd (in KVM when available) within the
 *    device's budget, else handled by ivsh_doorbell_ring();
 *  - our own eventfds become interrupts: MSI-X through KVM irqfds when
 *    the irqchip supports it, else through a QEMU fd handler; INTx
 *    (legacy, msi=off) sets IntrStatus bit 0.  A doorbell that arrives
 *    while its vector is masked or MSI-X is disabled becomes pending and
 *    is delivered on unmask/enable, on both paths.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include "qemu/error-report.h"
#include "qemu/event_notifier.h"
#include "qemu/log.h"
#include "qemu/main-loop.h"
#include "qapi/error.h"
#include "chardev/char-socket.h"
#include "hw/pci/pci.h"
#include "hw/pci/msi.h"
#include "hw/pci/msix.h"
#include "system/kvm.h"
#include "system/runstate.h"
#include "ivsh-internal.h"
#include "hw/misc/ivsh-regs.h"
#include "trace.h"

/*
 * KVM allows about 1000 ioeventfds per bus, shared by every device, and
 * QEMU aborts when one is refused: stay well below, for all ivshmem
 * devices together.
 */
#define IVSH_IOEVENTFD_GLOBAL_MAX 768
static uint32_t ivsh_ioeventfds_in_use;

struct IvshPeer {
    uint16_t id;
    uint32_t nr;                /* eventfds held, vectors 0..nr-1 */
    uint32_t nr_ioeventfd;      /* vectors 0..nr_ioeventfd-1 have one */
    EventNotifier **vec;        /* [vectors], each allocated on arrival */
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

static EventNotifier *ivsh_own_notifier(IvshState *s, uint32_t vector)
{
    IvshPeer *p = ivsh_peer_find(s, s->vm_id);

    return p && vector < p->nr ? p->vec[vector] : NULL;
}

/* An eventfd of ours was rung (userspace path) */
static void ivsh_vector_notify(void *opaque)
{
    IvshVector *v = opaque;
    IvshState *s = v->s;
    EventNotifier *n = ivsh_own_notifier(s, v->nr);

    if (!n || !event_notifier_test_and_clear(n)) {
        return;
    }
    trace_ivsh_interrupt(s->vm_id, v->nr, s->msi);
    if (s->msi) {
        /* Pending in the PBA if masked or MSI-X is disabled */
        msix_notify(PCI_DEVICE(s), v->nr);
    } else {
        s->intrstatus |= IVSH_INTR_DOORBELL;
        ivsh_update_intx(s);
    }
}

static bool ivsh_use_irqfd(IvshState *s)
{
    return s->msi && kvm_msi_via_irqfd_enabled();
}

static int ivsh_vector_unmask(PCIDevice *pdev, unsigned vector,
                              MSIMessage msg)
{
    IvshState *s = IVSH_COMMON(pdev);
    IvshVector *v = &s->msi_vectors[vector];
    EventNotifier *n = ivsh_own_notifier(s, vector);
    int ret;

    if (!n) {
        return 0;       /* attached when the server sends the eventfd */
    }
    if (v->virq < 0) {
        KVMRouteChange c = kvm_irqchip_begin_route_changes(kvm_state);

        ret = kvm_irqchip_add_msi_route(&c, vector, pdev);
        if (ret < 0) {
            error_report("%s: no KVM MSI route for vector %u: %s",
                         ivsh_name(s), vector, strerror(-ret));
            return ret;
        }
        kvm_irqchip_commit_route_changes(&c);
        v->virq = ret;
    }
    ret = kvm_irqchip_update_msi_route(kvm_state, v->virq, msg, pdev);
    if (ret < 0) {
        return ret;
    }
    kvm_irqchip_commit_routes(kvm_state);
    if (!v->irqfd) {
        ret = kvm_irqchip_add_irqfd_notifier_gsi(kvm_state, n, NULL,
                                                 v->virq);
        if (ret < 0) {
            error_report("%s: no KVM irqfd for vector %u: %s",
                         ivsh_name(s), vector, strerror(-ret));
            return ret;
        }
        v->irqfd = true;
    }
    trace_ivsh_vector_unmask(vector, v->virq);
    return 0;
}

static void ivsh_vector_mask(PCIDevice *pdev, unsigned vector)
{
    IvshState *s = IVSH_COMMON(pdev);
    IvshVector *v = &s->msi_vectors[vector];

    if (v->irqfd) {
        kvm_irqchip_remove_irqfd_notifier_gsi(kvm_state,
                                              ivsh_own_notifier(s, vector),
                                              v->virq);
        v->irqfd = false;
    }
    trace_ivsh_vector_mask(vector);
}

/* The guest reads the PBA: report doorbells latched in masked vectors */
static void ivsh_vector_poll(PCIDevice *pdev, unsigned start, unsigned end)
{
    IvshState *s = IVSH_COMMON(pdev);
    unsigned i;

    for (i = start; i < MIN(end, s->vectors); i++) {
        EventNotifier *n = ivsh_own_notifier(s, i);

        if (n && msix_is_masked(pdev, i) && event_notifier_test_and_clear(n)) {
            msix_set_pending(pdev, i);
        }
    }
}

static void ivsh_irqfd_enable(IvshState *s)
{
    if (msix_set_vector_notifiers(PCI_DEVICE(s), ivsh_vector_unmask,
                                  ivsh_vector_mask, ivsh_vector_poll) < 0) {
        error_report("%s: cannot route MSI-X vectors through KVM irqfds",
                     ivsh_name(s));
        return;
    }
    s->irqfd_active = true;
}

static void ivsh_irqfd_disable(IvshState *s)
{
    uint32_t i;

    if (!s->irqfd_active) {
        return;
    }
    msix_unset_vector_notifiers(PCI_DEVICE(s));
    s->irqfd_active = false;
    for (i = 0; i < s->vectors; i++) {
        IvshVector *v = &s->msi_vectors[i];

        ivsh_vector_mask(PCI_DEVICE(s), i);
        if (v->virq >= 0) {
            kvm_irqchip_release_virq(kvm_state, v->virq);
            v->virq = -1;
        }
    }
}

void ivsh_peers_write_config(PCIDevice *pdev, uint32_t addr, uint32_t val,
                                int len)
{
    IvshState *s = IVSH_COMMON(pdev);
    bool was = msix_enabled(pdev);

    pci_default_write_config(pdev, addr, val, len);
    if (!ivsh_use_irqfd(s) || was == msix_enabled(pdev)) {
        return;
    }
    if (!was) {
        ivsh_irqfd_enable(s);
    } else {
        ivsh_irqfd_disable(s);
    }
}

/* Our own eventfd for @vector arrived: start delivering it */
static void ivsh_own_vector_ready(IvshState *s, uint32_t vector)
{
    PCIDevice *pdev = PCI_DEVICE(s);
    IvshVector *v = &s->msi_vectors[vector];

    if (!ivsh_use_irqfd(s)) {
        qemu_set_fd_handler(event_notifier_get_fd(ivsh_own_notifier(s,
                                                                    vector)),
                            ivsh_vector_notify, NULL, v);
        v->handler = true;
    } else if (s->irqfd_active && !msix_is_masked(pdev, vector)) {
        ivsh_vector_unmask(pdev, vector, msix_get_message(pdev, vector));
    }
}

static void ivsh_own_vector_release(IvshState *s, uint32_t vector)
{
    IvshVector *v = &s->msi_vectors[vector];

    if (v->handler) {
        qemu_set_fd_handler(event_notifier_get_fd(ivsh_own_notifier(s,
                                                                    vector)),
                            NULL, NULL, NULL);
        v->handler = false;
    }
    if (s->msi) {
        ivsh_vector_mask(PCI_DEVICE(s), vector);
    }
}

static void ivsh_peer_add_eventfd(IvshState *s, uint16_t id, uint32_t vector,
                                  int fd)
{
    IvshPeer *p = ivsh_peer_find(s, id);
    EventNotifier *n;

    if (!p) {
        p = g_new0(IvshPeer, 1);
        p->id = id;
        p->vec = g_new0(EventNotifier *, s->vectors);
        g_hash_table_insert(s->peers, GUINT_TO_POINTER(id), p);
    }
    /* The decoder hands out vectors in order, below s->vectors */
    assert(vector == p->nr && vector < s->vectors);
    n = g_new0(EventNotifier, 1);
    event_notifier_init_fd(n, fd);
    g_unix_set_fd_nonblocking(fd, true, NULL);
    p->vec[p->nr++] = n;
    trace_ivsh_peer_eventfd(id, vector);

    if (id == s->vm_id) {
        ivsh_own_vector_ready(s, vector);
    }
    if (!s->ioeventfd || p->nr_ioeventfd != vector) {
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
                              IVSH_DOORBELL(id, vector), n);
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
        event_notifier_cleanup(p->vec[i]);
        g_free(p->vec[i]);
    }
    g_free(p->vec);
    g_free(p);
}

void ivsh_doorbell_ring(IvshState *s, uint16_t peer, uint16_t vector)
{
    IvshPeer *p = ivsh_peer_find(s, peer);

    if (!p || vector >= p->nr) {
        qemu_log_mask(LOG_GUEST_ERROR, "%s: doorbell to %s %u vector %u "
                      "ignored\n", ivsh_name(s),
                      p ? "peer" : "unknown peer", peer, vector);
        return;
    }
    trace_ivsh_doorbell(peer, vector);
    event_notifier_set(p->vec[vector]);
}

/* Act on one message the decoder accepted after set-up */
static void ivsh_conn_event(IvshState *s, const IvshEvent *ev)
{
    IvshPeer *p;

    switch (ev->kind) {
    case IVSH_EV_EVENTFD:
        ivsh_peer_add_eventfd(s, ev->peer, ev->vector, ev->fd);
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

static void ivsh_conn_msg(IvshState *s, int64_t msg, int fd)
{
    g_autoptr(GError) err = NULL;
    IvshEvent ev;

    trace_ivsh_conn_msg(msg, fd);
    switch (ivsh_client_handle(&s->client, msg, fd, &ev, &err)) {
    case IVSH_OK:
        ivsh_conn_event(s, &ev);
        break;
    case IVSH_DROP:
        error_report("%s: %s", ivsh_name(s), err->message);
        break;
    case IVSH_FATAL:
        error_report("%s: %s; no longer reading from the ivshmem server, "
                     "keeping the shared memory and %u known peers",
                     ivsh_name(s), err->message,
                     ivsh_client_nr_peers(&s->client));
        s->server_broken = true;
        break;
    }
}

static int ivsh_conn_can_receive(void *opaque)
{
    IvshState *s = opaque;

    return s->server_broken ? 0 : ivsh_reader_want(&s->reader);
}

static void ivsh_conn_read(void *opaque, const uint8_t *buf, int size)
{
    IvshState *s = opaque;
    bool complete;
    int64_t msg;
    size_t n;

    while (size > 0 && !s->server_broken) {
        n = ivsh_reader_feed(&s->reader, buf, size, &complete, &msg);
        buf += n;
        size -= n;
        if (complete) {
            ivsh_conn_msg(s, msg, qemu_chr_fe_get_msgfd(&s->server_chr));
        }
    }
}

static void ivsh_conn_chr_event(void *opaque, QEMUChrEvent event)
{
    IvshState *s = opaque;

    if (event == CHR_EVENT_CLOSED && !s->server_gone && !s->shutting_down) {
        s->server_gone = true;
        warn_report("%s: the ivshmem server closed the connection; keeping "
                    "the shared memory and %u known peers", ivsh_name(s),
                    ivsh_client_nr_peers(&s->client));
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

static bool ivsh_chr_check(IvshState *s, int *sock, Error **errp)
{
    Chardev *chr = qemu_chr_fe_get_driver(&s->server_chr);
    SocketChardev *sc;

    if (!chr) {
        /* Wording expected by scripts/device-crash-test */
        error_setg(errp, "You must specify a 'chardev'");
        return false;
    }
    if (!object_dynamic_cast(OBJECT(chr), TYPE_CHARDEV_SOCKET) ||
        !qemu_chr_has_feature(chr, QEMU_CHAR_FEATURE_FD_PASS)) {
        error_setg(errp, "chardev '%s' cannot pass file descriptors",
                   chr->label);
        error_append_hint(errp, "Connect to the ivshmem server with "
                          "-chardev socket,path=SOCKET.\n");
        return false;
    }
    sc = SOCKET_CHARDEV(chr);
    if (sc->state != TCP_CHARDEV_STATE_CONNECTED || !sc->sioc) {
        error_setg(errp, "chardev '%s' is not connected to an ivshmem "
                   "server", chr->label);
        return false;
    }
    *sock = sc->sioc->fd;
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
    IvshEvent ev;
    int64_t msg;

    if (!ivsh_chr_check(s, &sock, errp)) {
        return false;
    }
    ivsh_client_init(&s->client, s->vectors, s->max_eventfds);
    s->peers = g_hash_table_new(g_direct_hash, g_direct_equal);

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
    qemu_chr_fe_set_handlers(&s->server_chr, ivsh_conn_can_receive,
                             ivsh_conn_read, ivsh_conn_chr_event, NULL,
                             s, NULL, true);
}

/* Device reset: forget doorbells not delivered yet. */
void ivsh_interrupts_reset(IvshState *s)
{
    uint32_t i;

    if (!s->msi_vectors) {
        return;
    }
    ivsh_irqfd_disable(s);
    for (i = 0; i < s->vectors; i++) {
        EventNotifier *n = ivsh_own_notifier(s, i);

        if (n) {
            event_notifier_test_and_clear(n);
        }
    }
}

int ivsh_peers_post_load(void *opaque, int version_id)
{
    IvshState *s = opaque;

    if (ivsh_use_irqfd(s) && msix_enabled(PCI_DEVICE(s)) &&
        !s->irqfd_active) {
        ivsh_irqfd_enable(s);
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
    ivsh_client_destroy(&s->client);
    if (msix_present(PCI_DEVICE(s))) {
        msix_uninit_exclusive_bar(PCI_DEVICE(s));
    }
    g_free(s->msi_vectors);
    s->msi_vectors = NULL;
}
