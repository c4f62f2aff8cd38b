/*
 * ivshmem-plain: inter-VM shared memory without interrupts
 *
 * BAR2 is the memory of a host memory backend (property "memdev").  The
 * backend should be shared (share=on, e.g. memory-backend-file on
 * /dev/shm or memory-backend-memfd): with share=off the other processes
 * mapping the same file never see this guest's writes, which is accepted
 * for compatibility with QEMU's own device, with a warning.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "hw/pci/pci.h"
#include "hw/qdev-properties.h"
#include "migration/vmstate.h"
#include "ivsh-internal.h"

static void ivsh_plain_realize(PCIDevice *pdev, Error **errp)
{
    IvshState *s = IVSH_COMMON(pdev);

    if (!s->hostmem) {
        /* Wording expected by scripts/device-crash-test */
        error_setg(errp, "You must specify a 'memdev'");
        return;
    }
    if (!ivsh_use_memdev(s, errp)) {
        return;
    }
    s->vm_id = 0;
    if (!ivsh_realize_common(s, PCI_BASE_ADDRESS_MEM_TYPE_64, errp)) {
        ivsh_release_memdev(s);
    }
}

static void ivsh_plain_exit(PCIDevice *pdev)
{
    IvshState *s = IVSH_COMMON(pdev);

    ivsh_exit_common(s);
    ivsh_release_memdev(s);
}

/* Stream compatible with QEMU 10.0's ivshmem-plain */
static const VMStateDescription ivsh_plain_vmsd = {
    .name = TYPE_IVSHMEM_PLAIN,
    .version_id = 0,
    .minimum_version_id = 0,
    .pre_load = ivsh_pre_load,
    .fields = (const VMStateField[]) {
        VMSTATE_PCI_DEVICE(parent_obj, IvshState),
        VMSTATE_UINT32(intrstatus, IvshState),
        VMSTATE_UINT32(intrmask, IvshState),
        VMSTATE_END_OF_LIST()
    },
};

static const Property ivsh_plain_properties[] = {
    DEFINE_PROP_LINK("memdev", IvshState, hostmem, TYPE_MEMORY_BACKEND,
                     HostMemoryBackend *),
    DEFINE_PROP_ON_OFF_AUTO("master", IvshState, master, ON_OFF_AUTO_OFF),
};

static void ivsh_plain_class_init(ObjectClass *oc, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(oc);
    PCIDeviceClass *k = PCI_DEVICE_CLASS(oc);

    k->realize = ivsh_plain_realize;
    k->exit = ivsh_plain_exit;
    dc->vmsd = &ivsh_plain_vmsd;
    dc->desc = "Inter-VM shared memory (memory only)";
    device_class_set_props(dc, ivsh_plain_properties);
}

static const TypeInfo ivsh_plain_types[] = {
    {
        .name = TYPE_IVSHMEM_PLAIN,
        .parent = TYPE_IVSH_COMMON,
        .instance_size = sizeof(IvshState),
        .class_init = ivsh_plain_class_init,
    },
};

DEFINE_TYPES(ivsh_plain_types)
