/*
 * ivshmem-doorbell: inter-VM shared memory with doorbell interrupts
 *
 * The shared memory, the peer ID and the peers' eventfds come from an
 * ivshmem server over a UNIX socket chardev (ivsh-peers.c).  Guest ABI
 * and migration stream as QEMU 10.0's ivshmem-doorbell, except that the
 * Doorbell register decodes the full 16-bit vector field.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "hw/pci/pci.h"
#include "hw/pci/msix.h"
#include "hw/qdev-properties.h"
#include "hw/qdev-properties-system.h"
#include "chardev/char-fe.h"
#include "migration/vmstate.h"
#include "ivsh-internal.h"
#include "hw/misc/ivsh-regs.h"

static void ivsh_doorbell_realize(PCIDevice *pdev, Error **errp)
{
    IvshState *s = IVSH_COMMON(pdev);

    if (s->vectors < 1 || s->vectors > IVSH_MAX_VECTORS) {
        error_setg(errp, "vectors=%u is out of range, it must be 1 to %u",
                   s->vectors, IVSH_MAX_VECTORS);
        goto fail;
    }
    s->msi = true;
    if (!ivsh_conn_connect(s, 0, errp)) {
        goto fail;
    }
    if (s->master == ON_OFF_AUTO_ON && s->vm_id != 0) {
        error_setg(errp, "master=on, but the ivshmem server gave this "
                   "device ID %u", s->vm_id);
        error_append_hint(errp, "The master must be the first peer of the "
                          "server, ID 0.\n");
        goto fail;
    }
    if (!ivsh_interrupts_init(s, errp) ||
        !ivsh_realize_common(s, PCI_BASE_ADDRESS_MEM_TYPE_64, errp)) {
        goto fail;
    }
    ivsh_conn_start(s);
    return;

fail:
    ivsh_conn_cleanup(s);
    /* The server sees this peer leave: no phantom peer for the others */
    ivsh_conn_hangup(s);
}

static void ivsh_doorbell_exit(PCIDevice *pdev)
{
    IvshState *s = IVSH_COMMON(pdev);

    ivsh_conn_cleanup(s);
    ivsh_conn_hangup(s);
    ivsh_exit_common(s);
}

/* Stream compatible with QEMU 10.0's ivshmem-doorbell */
static const VMStateDescription ivsh_doorbell_vmsd = {
    .name = TYPE_IVSHMEM_DOORBELL,
    .version_id = 0,
    .minimum_version_id = 0,
    .pre_load = ivsh_pre_load,
    .post_load = ivsh_peers_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_PCI_DEVICE(parent_obj, IvshState),
        VMSTATE_MSIX(parent_obj, IvshState),
        VMSTATE_UINT32(intrstatus, IvshState),
        VMSTATE_UINT32(intrmask, IvshState),
        VMSTATE_END_OF_LIST()
    },
};

static const Property ivsh_doorbell_properties[] = {
    DEFINE_PROP_CHR("chardev", IvshState, server_chr),
    DEFINE_PROP_UINT32("vectors", IvshState, vectors, 1),
    DEFINE_PROP_BOOL("ioeventfd", IvshState, ioeventfd, true),
    DEFINE_PROP_ON_OFF_AUTO("master", IvshState, master, ON_OFF_AUTO_OFF),
    DEFINE_PROP_UINT32("x-setup-timeout", IvshState, setup_timeout_ms, 5000),
    DEFINE_PROP_UINT32("x-ioeventfd-budget", IvshState, ioeventfd_budget,
                       512),
    DEFINE_PROP_UINT32("x-max-eventfds", IvshState, max_eventfds, 8192),
};

static void ivsh_doorbell_class_init(ObjectClass *oc, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(oc);
    PCIDeviceClass *k = PCI_DEVICE_CLASS(oc);
    IvshClass *ic = IVSH_COMMON_CLASS(oc);

    k->realize = ivsh_doorbell_realize;
    k->exit = ivsh_doorbell_exit;
    k->config_write = ivsh_peers_write_config;
    ic->doorbell = ivsh_doorbell_ring;
    ic->reset_peers = ivsh_interrupts_reset;
    dc->vmsd = &ivsh_doorbell_vmsd;
    dc->desc = "Inter-VM shared memory with doorbells (ivshmem server)";
    device_class_set_props(dc, ivsh_doorbell_properties);
    ivsh_conn_add_property(oc);
}

static const TypeInfo ivsh_doorbell_types[] = {
    {
        .name = TYPE_IVSHMEM_DOORBELL,
        .parent = TYPE_IVSH_COMMON,
        .instance_size = sizeof(IvshState),
        .class_init = ivsh_doorbell_class_init,
    },
};

DEFINE_TYPES(ivsh_doorbell_types)
