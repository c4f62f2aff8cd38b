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
#include "qemu/error-report.h"
#include "qapi/error.h"
#include "hw/pci/pci.h"
#include "hw/qdev-properties.h"
#include "migration/vmstate.h"
#include "hw/misc/ivsh.h"
#include "trace.h"

static void ivsh_plain_realize(PCIDevice *pdev, Error **errp)
{
    IvshState *s = IVSH_COMMON(pdev);
    g_autofree char *name = NULL, *what = NULL;
    MemoryRegion *mr;

    if (!s->hostmem) {
        /* Wording expected by scripts/device-crash-test */
        error_setg(errp, "You must specify a 'memdev'");
        return;
    }
    name = host_memory_backend_get_name(s->hostmem);
    what = g_strdup_printf("memdev '%s'", name);
    if (host_memory_backend_is_mapped(s->hostmem)) {
        error_setg(errp, "%s is already in use", what);
        return;
    }
    mr = host_memory_backend_get_memory(s->hostmem);
    if (!ivsh_check_shm_size(s, what, memory_region_size(mr), errp)) {
        return;
    }
    if (!s->hostmem->share) {
        warn_report("%s has share=off: other VMs and processes will not "
                    "see this guest's writes", what);
    }

    s->shm = mr;
    s->vm_id = 0;
    if (!ivsh_realize_common(s, PCI_BASE_ADDRESS_MEM_TYPE_64, errp)) {
        s->shm = NULL;
        return;
    }
    host_memory_backend_set_mapped(s->hostmem, true);
}

static void ivsh_plain_exit(PCIDevice *pdev)
{
    IvshState *s = IVSH_COMMON(pdev);

    ivsh_exit_common(s);
    if (s->shm) {
        host_memory_backend_set_mapped(s->hostmem, false);
        s->shm = NULL;
    }
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
