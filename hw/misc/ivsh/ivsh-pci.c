/*
 * Inter-VM shared memory PCI devices: the part common to all types
 *
 * The register block (BAR0), the shared memory BAR (BAR2), reset and the
 * master/peer migration rule.  The types themselves live in
 * ivsh-plain.c (and the doorbell/legacy files): each one validates its own
 * properties, finds its shared memory and then calls
 * ivsh_realize_common().
 *
 * The guest may access BAR0 with any size at any offset; only aligned
 * 4-byte accesses to the four registers do anything.  Everything else reads
 * as zero, ignores writes and is logged as a guest error.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "qemu/log.h"
#include "qemu/module.h"
#include "qapi/error.h"
#include "hw/pci/pci.h"
#include "hw/registerfields.h"
#include "exec/cpu-common.h"
#include "migration/blocker.h"
#include "migration/postcopy-ram.h"
#include "migration/vmstate.h"
#include "ivsh-internal.h"
#include "hw/misc/ivsh-regs.h"
#include "trace.h"

REG32(INTR_MASK, IVSH_REG_INTR_MASK)
REG32(INTR_STATUS, IVSH_REG_INTR_STATUS)
REG32(IV_POSITION, IVSH_REG_IV_POSITION)
REG32(DOORBELL, IVSH_REG_DOORBELL)
    FIELD(DOORBELL, VECTOR, IVSH_DOORBELL_VECTOR_SHIFT, 16)
    FIELD(DOORBELL, PEER, IVSH_DOORBELL_PEER_SHIFT, 16)

static bool ivsh_access_ok(const char *func, hwaddr addr, unsigned size)
{
    if (size == 4 && !(addr & 3)) {
        return true;
    }
    qemu_log_mask(LOG_GUEST_ERROR,
                  "%s: %u-byte access at offset 0x%" HWADDR_PRIx
                  " ignored, registers take aligned 4-byte accesses\n",
                  func, size, addr);
    return false;
}

static uint64_t ivsh_mmio_read(void *opaque, hwaddr addr, unsigned size)
{
    IvshState *s = opaque;
    uint32_t val = 0;

    if (ivsh_access_ok(__func__, addr, size)) {
        switch (addr) {
        case A_INTR_MASK:
            val = s->intrmask;
            break;
        case A_INTR_STATUS:
            val = s->intrstatus;
            s->intrstatus = 0;      /* reading clears it */
            ivsh_update_intx(s);
            break;
        case A_IV_POSITION:
            val = s->vm_id;
            break;
        case A_DOORBELL:
            break;                  /* write-only */
        default:
            qemu_log_mask(LOG_GUEST_ERROR,
                          "%s: read of reserved offset 0x%" HWADDR_PRIx "\n",
                          __func__, addr);
            break;
        }
    }
    trace_ivsh_mmio_read(addr, val, size);
    return val;
}

static void ivsh_mmio_write(void *opaque, hwaddr addr, uint64_t val,
                            unsigned size)
{
    IvshState *s = opaque;
    IvshClass *ic = IVSH_COMMON_GET_CLASS(s);

    trace_ivsh_mmio_write(addr, val, size);
    if (!ivsh_access_ok(__func__, addr, size)) {
        return;
    }
    switch (addr) {
    case A_INTR_MASK:
        s->intrmask = val;
        ivsh_update_intx(s);
        break;
    case A_INTR_STATUS:
        s->intrstatus = val;
        ivsh_update_intx(s);
        break;
    case A_DOORBELL:
        if (ic->doorbell) {
            ic->doorbell(s, FIELD_EX32(val, DOORBELL, PEER),
                         FIELD_EX32(val, DOORBELL, VECTOR));
        } else {
            trace_ivsh_doorbell_ignored(FIELD_EX32(val, DOORBELL, PEER),
                                        FIELD_EX32(val, DOORBELL, VECTOR));
        }
        break;
    case A_IV_POSITION:
        qemu_log_mask(LOG_GUEST_ERROR,
                      "%s: IVPosition is read-only\n", __func__);
        break;
    default:
        qemu_log_mask(LOG_GUEST_ERROR,
                      "%s: write to reserved offset 0x%" HWADDR_PRIx "\n",
                      __func__, addr);
        break;
    }
}

static const MemoryRegionOps ivsh_mmio_ops = {
    .read = ivsh_mmio_read,
    .write = ivsh_mmio_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    /* Anything goes on the bus; the callbacks sort out what is valid. */
    .valid = {
        .min_access_size = 1,
        .max_access_size = 8,
        .unaligned = true,
    },
    .impl = {
        .min_access_size = 1,
        .max_access_size = 8,
        .unaligned = true,
    },
};

/*
 * The legacy device's INTx line follows IntrStatus & IntrMask, with
 * msi=off only: with MSI-X it has an Interrupt Pin but never raises it,
 * as the original.
 */
void ivsh_update_intx(IvshState *s)
{
    PCIDevice *pdev = PCI_DEVICE(s);

    if (pdev->config[PCI_INTERRUPT_PIN] && !s->msi) {
        pci_set_irq(pdev, (s->intrstatus & s->intrmask) != 0);
    }
}

bool ivsh_check_shm_size(IvshState *s, const char *what, uint64_t size,
                         Error **errp)
{
    if (size < 4096 || !is_power_of_2(size)) {
        error_setg(errp, "%s size %" PRIu64 " is not a power of two of at "
                   "least 4096", what, size);
        error_append_hint(errp, "A PCI BAR must be a power of two in size.\n");
        return false;
    }
    return true;
}

/*
 * BAR2 from s->hostmem.  It should be shared (share=on, e.g.
 * memory-backend-file on /dev/shm or memory-backend-memfd): with
 * share=off other processes mapping the same file never see this guest's
 * writes, which is accepted for compatibility with QEMU's own device,
 * with a warning.
 */
bool ivsh_use_memdev(IvshState *s, Error **errp)
{
    g_autofree char *name = host_memory_backend_get_name(s->hostmem);
    g_autofree char *what = g_strdup_printf("memdev '%s' size", name);
    MemoryRegion *mr = host_memory_backend_get_memory(s->hostmem);

    if (host_memory_backend_is_mapped(s->hostmem)) {
        error_setg(errp, "memdev '%s' is already in use", name);
        return false;
    }
    if (!ivsh_check_shm_size(s, what, memory_region_size(mr), errp)) {
        return false;
    }
    if (!s->hostmem->share) {
        warn_report("memdev '%s' has share=off: other VMs and processes "
                    "will not see this guest's writes", name);
    }
    host_memory_backend_set_mapped(s->hostmem, true);
    s->shm = mr;
    return true;
}

void ivsh_release_memdev(IvshState *s)
{
    if (s->hostmem && s->shm) {
        host_memory_backend_set_mapped(s->hostmem, false);
        s->shm = NULL;
    }
}

/* Map @size bytes of @fd as BAR2; the RAM block owns @fd from here on. */
bool ivsh_map_fd(IvshState *s, int fd, uint64_t size, Error **errp)
{
    if (!memory_region_init_ram_from_fd(&s->fd_shm, OBJECT(s), "ivshmem.bar2",
                                        size, RAM_SHARED, fd, 0, errp)) {
        close(fd);
        return false;
    }
    s->shm = &s->fd_shm;
    return true;
}

static bool ivsh_is_master(IvshState *s)
{
    return s->master == ON_OFF_AUTO_ON;
}

/*
 * Postcopy is refused on the destination while a device's BAR2 is shared
 * memory: postcopy first discards every RAM block there (a hole punched
 * into the file), i.e. the memory the server and the other peers are
 * using, and their writes then make the page copies fail.  The probe runs
 * when the destination sets the postcopy-ram capability, and again when
 * the source advises postcopy.
 */
static unsigned ivsh_shared_devices;
static NotifierWithReturn ivsh_postcopy_notifier;

static int ivsh_postcopy_notify(NotifierWithReturn *n, void *data,
                                Error **errp)
{
    struct PostcopyNotifyData *pnd = data;

    if (pnd->reason != POSTCOPY_NOTIFY_PROBE) {
        return 0;
    }
    error_setg(errp, "ivshmem: postcopy would discard the shared memory "
               "that other VMs and processes use on the destination");
    error_append_hint(errp, "Migrate without postcopy-ram.\n");
    return -ENOTSUP;
}

static bool ivsh_shm_is_shared(IvshState *s)
{
    return s->shm && s->shm->ram_block &&
           qemu_ram_is_shared(s->shm->ram_block);
}

static void ivsh_postcopy_refuse(IvshState *s)
{
    if (ivsh_shm_is_shared(s) && ivsh_shared_devices++ == 0) {
        ivsh_postcopy_notifier.notify = ivsh_postcopy_notify;
        postcopy_add_notifier(&ivsh_postcopy_notifier);
    }
}

static void ivsh_postcopy_allow(IvshState *s)
{
    if (ivsh_shm_is_shared(s) && --ivsh_shared_devices == 0) {
        postcopy_remove_notifier(&ivsh_postcopy_notifier);
    }
}

/*
 * Register BAR0 and BAR2 (s->shm, set up by the type) and apply the
 * master rule.  On failure nothing is left registered.
 */
bool ivsh_realize_common(IvshState *s, uint8_t bar2_type, Error **errp)
{
    PCIDevice *pdev = PCI_DEVICE(s);
    DeviceState *dev = DEVICE(s);

    if (s->master == ON_OFF_AUTO_AUTO) {
        s->master = s->vm_id == 0 ? ON_OFF_AUTO_ON : ON_OFF_AUTO_OFF;
    }
    if (!ivsh_is_master(s)) {
        error_setg(&s->migration_blocker,
                   "%s '%s' is not the master (master=%s): only a master "
                   "migrates its shared memory",
                   object_get_typename(OBJECT(s)),
                   dev->id ? dev->id : "(no id)",
                   s->master == ON_OFF_AUTO_OFF ? "off" : "auto");
        if (migrate_add_blocker(&s->migration_blocker, errp) < 0) {
            return false;
        }
    }

    memory_region_init_io(&s->mmio, OBJECT(s), &ivsh_mmio_ops, s,
                          "ivshmem-mmio", IVSH_REGS_SIZE);
    pci_register_bar(pdev, IVSH_BAR_REGS, PCI_BASE_ADDRESS_SPACE_MEMORY,
                     &s->mmio);

    vmstate_register_ram(s->shm, dev);
    s->shm_ram_registered = true;
    ivsh_postcopy_refuse(s);
    pci_register_bar(pdev, IVSH_BAR_SHM,
                     PCI_BASE_ADDRESS_SPACE_MEMORY |
                     PCI_BASE_ADDRESS_MEM_PREFETCH | bar2_type,
                     s->shm);
    trace_ivsh_realize(s->vm_id, memory_region_size(s->shm),
                       ivsh_is_master(s));
    return true;
}

/* Undo ivsh_realize_common(); copes with a half set-up device. */
void ivsh_exit_common(IvshState *s)
{
    migrate_del_blocker(&s->migration_blocker);
    if (s->shm_ram_registered) {
        ivsh_postcopy_allow(s);
        vmstate_unregister_ram(s->shm, DEVICE(s));
        s->shm_ram_registered = false;
    }
}

int ivsh_pre_load(void *opaque)
{
    IvshState *s = opaque;

    if (!ivsh_is_master(s)) {
        error_report("%s: incoming migration refused, this device is not "
                     "the master", object_get_typename(OBJECT(s)));
        return -EINVAL;
    }
    return 0;
}

static void ivsh_reset_hold(Object *obj, ResetType type)
{
    IvshState *s = IVSH_COMMON(obj);
    IvshClass *ic = IVSH_COMMON_GET_CLASS(obj);

    if (ic->parent_phases.hold) {
        ic->parent_phases.hold(obj, type);
    }
    s->intrstatus = 0;
    s->intrmask = 0;
    ivsh_update_intx(s);
    if (ic->reset_peers) {
        ic->reset_peers(s);
    }
    trace_ivsh_reset(s->vm_id);
}

static void ivsh_common_class_init(ObjectClass *oc, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(oc);
    PCIDeviceClass *k = PCI_DEVICE_CLASS(oc);
    ResettableClass *rc = RESETTABLE_CLASS(oc);
    IvshClass *ic = IVSH_COMMON_CLASS(oc);

    k->vendor_id = IVSH_PCI_VENDOR_ID;
    k->device_id = IVSH_PCI_DEVICE_ID;
    k->class_id = IVSH_PCI_CLASS;
    k->revision = IVSH_PCI_REVISION;
    resettable_class_set_parent_phases(rc, NULL, ivsh_reset_hold, NULL,
                                       &ic->parent_phases);
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);
    dc->desc = "Inter-VM shared memory";
}

static const TypeInfo ivsh_types[] = {
    {
        .name = TYPE_IVSH_COMMON,
        .parent = TYPE_PCI_DEVICE,
        .instance_size = sizeof(IvshState),
        .class_size = sizeof(IvshClass),
        .class_init = ivsh_common_class_init,
        .abstract = true,
        .interfaces = (InterfaceInfo[]) {
            { INTERFACE_CONVENTIONAL_PCI_DEVICE },
            { },
        },
    },
};

DEFINE_TYPES(ivsh_types)
