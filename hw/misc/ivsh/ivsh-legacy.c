/*
 * ivshmem: the original inter-VM shared memory interface
 *
 * QEMU <= 3.1 had a single "ivshmem" device; 4.0 removed it in favour of
 * ivshmem-plain and ivshmem-doorbell.  This brings its command line back
 * on the same core, with revision 0 and its properties:
 *
 *   shm=NAME      POSIX shared memory object, created and sized to "size"
 *                 if missing; an existing one must be at least "size"
 *   chardev=ID    ivshmem server; BAR2 is the first "size" bytes of its
 *                 memory (which must not be smaller)
 *   memdev=ID     a memory backend (also "x-memdev")
 *   size          BAR2 size: a plain number is MiB, K/M/G suffixes, power
 *                 of two, default 4 MiB (not with memdev: its own size)
 *   msi           on: MSI-X in BAR1; off: INTx pin A driven by
 *                 IntrStatus & IntrMask, a doorbell sets IntrStatus bit 0
 *   vectors, ioeventfd (off by default, needs msi=on), use64 (64-bit BAR2:
 *   1, the default, or 0; a uint32 as the original's), role=master|peer
 *   (unset: master if the ID is 0)
 *
 * Unlike the original, bad input is an error, never exit(); the server
 * is checked as for ivshmem-doorbell.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/mman.h>
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/units.h"
#include "qapi/error.h"
#include "hw/pci/pci.h"
#include "hw/pci/msix.h"
#include "hw/qdev-properties.h"
#include "hw/qdev-properties-system.h"
#include "migration/vmstate.h"
#include "ivsh-internal.h"
#include "hw/misc/ivsh-regs.h"

#define IVSH_LEGACY_DEFAULT_SIZE (4 * MiB)

static bool ivsh_legacy_size(IvshState *s, uint64_t *size, Error **errp)
{
    const char *end;

    *size = IVSH_LEGACY_DEFAULT_SIZE;
    if (!s->size_str) {
        return true;
    }
    if (qemu_strtosz_MiB(s->size_str, &end, size) < 0 || *end) {
        error_setg(errp, "size '%s' is not a size", s->size_str);
        error_append_hint(errp, "A number of MiB, or a number with a K, M "
                          "or G suffix.\n");
        return false;
    }
    return ivsh_check_shm_size(s, "size", *size, errp);
}

/* shm=NAME: open or create the POSIX shared memory object and map it */
static bool ivsh_legacy_shm(IvshState *s, uint64_t size, Error **errp)
{
    g_autofree char *name = g_strdup_printf("/%s", s->shm_name);
    struct stat st;
    int fd;

    if (!*s->shm_name || strchr(s->shm_name, '/')) {
        error_setg(errp, "shm '%s' is not a valid shared memory name",
                   s->shm_name);
        return false;
    }
    fd = shm_open(name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot open shm '%s'", s->shm_name);
        return false;
    }
    if (fstat(fd, &st) < 0) {
        error_setg_errno(errp, errno, "cannot stat shm '%s'", s->shm_name);
        close(fd);
        return false;
    }
    if (st.st_uid != geteuid()) {
        /* POSIX shm cannot be sealed: its owner can always shrink it */
        warn_report("shm '%s' belongs to uid %u, which can shrink it and "
                    "crash this VM (SIGBUS)", s->shm_name,
                    (unsigned)st.st_uid);
    }
    if (st.st_size == 0 && ftruncate(fd, size) < 0) {
        error_setg_errno(errp, errno, "cannot size shm '%s' to %" PRIu64
                         " bytes", s->shm_name, size);
        close(fd);
        return false;
    }
    if (st.st_size != 0 && st.st_size < size) {
        error_setg(errp, "shm '%s' has %" PRIu64 " bytes, less than size (%"
                   PRIu64 " bytes)", s->shm_name, (uint64_t)st.st_size, size);
        close(fd);
        return false;
    }
    return ivsh_map_fd(s, fd, size, errp);
}

static bool ivsh_legacy_check(IvshState *s, uint64_t *size, Error **errp)
{
    bool chr = qemu_chr_fe_backend_connected(&s->server_chr);

    if (!!s->shm_name + chr + !!s->hostmem != 1) {
        error_setg(errp, "exactly one of 'shm', 'chardev' and 'memdev' "
                   "must be given");
        return false;
    }
    if (s->role && strcmp(s->role, "master") && strcmp(s->role, "peer")) {
        error_setg(errp, "role '%s' is invalid, it must be 'master' or "
                   "'peer'", s->role);
        return false;
    }
    s->master = !s->role ? ON_OFF_AUTO_AUTO :
                !strcmp(s->role, "master") ? ON_OFF_AUTO_ON : ON_OFF_AUTO_OFF;
    if (s->vectors < 1 || s->vectors > IVSH_MAX_VECTORS) {
        error_setg(errp, "vectors=%u is out of range, it must be 1 to %u",
                   s->vectors, IVSH_MAX_VECTORS);
        return false;
    }
    if (s->use64 > 1) {
        error_setg(errp, "use64=%u is invalid, it must be 1 or 0", s->use64);
        return false;
    }
    if (s->ioeventfd && !s->msi) {
        error_setg(errp, "ioeventfd=on requires msi=on");
        return false;
    }
    if (s->hostmem && s->size_str) {
        error_setg(errp, "size cannot be given with memdev, BAR2 is the "
                   "memdev's size");
        return false;
    }
    if (!ivsh_legacy_size(s, size, errp)) {
        return false;
    }
    if (!s->use64 && *size > 1 * GiB) {
        error_setg(errp, "size %" PRIu64 " needs a 64-bit BAR (use64=1)",
                   *size);
        return false;
    }
    return true;
}

static void ivsh_legacy_realize(PCIDevice *pdev, Error **errp)
{
    IvshState *s = IVSH_COMMON(pdev);
    uint64_t size;
    bool chr;

    if (!ivsh_legacy_check(s, &size, errp)) {
        /* The server sees this peer leave: no phantom peer */
        ivsh_conn_hangup(s);
        return;
    }
    chr = qemu_chr_fe_backend_connected(&s->server_chr);
    /* As the original, even with MSI-X (which never raises INTx) */
    pdev->config[PCI_INTERRUPT_PIN] = 1;

    if (s->hostmem) {
        if (!ivsh_use_memdev(s, errp)) {
            return;
        }
    } else if (chr) {
        if (!ivsh_conn_connect(s, size, errp)) {
            goto fail;
        }
    } else if (!ivsh_legacy_shm(s, size, errp)) {
        return;
    }
    if (s->master == ON_OFF_AUTO_ON && s->vm_id != 0) {
        error_setg(errp, "role=master, but the ivshmem server gave this "
                   "device ID %u", s->vm_id);
        goto fail;
    }
    if ((chr && !ivsh_interrupts_init(s, errp)) ||
        !ivsh_realize_common(s, s->use64 ? PCI_BASE_ADDRESS_MEM_TYPE_64 :
                             PCI_BASE_ADDRESS_MEM_TYPE_32, errp)) {
        goto fail;
    }
    if (chr) {
        ivsh_conn_start(s);
    }
    return;

fail:
    ivsh_conn_cleanup(s);
    ivsh_conn_hangup(s);
    ivsh_release_memdev(s);
}

static void ivsh_legacy_exit(PCIDevice *pdev)
{
    IvshState *s = IVSH_COMMON(pdev);

    ivsh_conn_cleanup(s);
    ivsh_conn_hangup(s);
    ivsh_exit_common(s);
    ivsh_release_memdev(s);
}

static bool ivsh_legacy_has_msix(void *opaque, int version_id)
{
    IvshState *s = opaque;

    return msix_present(PCI_DEVICE(s));
}

/*
 * The INTx level is IntrStatus & IntrMask, restored by post_load.
 * Version 2: QEMU <= 3.1's "ivshmem" sent version 1 with another layout
 * (IntrStatus and IntrMask only without MSI-X); its streams fail the
 * version check instead of loading garbage.
 */
static const VMStateDescription ivsh_legacy_vmsd = {
    .name = TYPE_IVSHMEM_LEGACY,
    .version_id = 2,
    .minimum_version_id = 2,
    .pre_load = ivsh_pre_load,
    .post_load = ivsh_peers_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_PCI_DEVICE(parent_obj, IvshState),
        VMSTATE_MSIX_TEST(parent_obj, IvshState, ivsh_legacy_has_msix),
        VMSTATE_UINT32(intrstatus, IvshState),
        VMSTATE_UINT32(intrmask, IvshState),
        VMSTATE_END_OF_LIST()
    },
};

static const Property ivsh_legacy_properties[] = {
    DEFINE_PROP_CHR("chardev", IvshState, server_chr),
    DEFINE_PROP_STRING("size", IvshState, size_str),
    DEFINE_PROP_STRING("shm", IvshState, shm_name),
    DEFINE_PROP_LINK("memdev", IvshState, hostmem, TYPE_MEMORY_BACKEND,
                     HostMemoryBackend *),
    DEFINE_PROP_STRING("role", IvshState, role),
    DEFINE_PROP_UINT32("vectors", IvshState, vectors, 1),
    DEFINE_PROP_BOOL("msi", IvshState, msi, true),
    DEFINE_PROP_BOOL("ioeventfd", IvshState, ioeventfd, false),
    DEFINE_PROP_UINT32("use64", IvshState, use64, 1),
    DEFINE_PROP_UINT32("x-setup-timeout", IvshState, setup_timeout_ms, 5000),
    DEFINE_PROP_UINT32("x-ioeventfd-budget", IvshState, ioeventfd_budget,
                       512),
    DEFINE_PROP_UINT32("x-max-eventfds", IvshState, max_eventfds, 8192),
};

/*
 * "x-memdev" (the original's name) is an alias of "memdev": two link
 * properties on one field would each drop the backend's reference when
 * the device goes, once too many.
 */
static void ivsh_legacy_instance_init(Object *obj)
{
    object_property_add_alias(obj, "x-memdev", obj, "memdev");
}

static void ivsh_legacy_class_init(ObjectClass *oc, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(oc);
    PCIDeviceClass *k = PCI_DEVICE_CLASS(oc);
    IvshClass *ic = IVSH_COMMON_CLASS(oc);

    k->realize = ivsh_legacy_realize;
    k->exit = ivsh_legacy_exit;
    k->config_write = ivsh_peers_write_config;
    k->revision = IVSH_PCI_REVISION_LEGACY;
    ic->doorbell = ivsh_doorbell_ring;
    ic->reset_peers = ivsh_interrupts_reset;
    dc->vmsd = &ivsh_legacy_vmsd;
    dc->desc = "Inter-VM shared memory (original interface)";
    device_class_set_props(dc, ivsh_legacy_properties);
    ivsh_conn_add_property(oc);
}

static const TypeInfo ivsh_legacy_types[] = {
    {
        .name = TYPE_IVSHMEM_LEGACY,
        .parent = TYPE_IVSH_COMMON,
        .instance_size = sizeof(IvshState),
        .instance_init = ivsh_legacy_instance_init,
        .class_init = ivsh_legacy_class_init,
    },
};

DEFINE_TYPES(ivsh_legacy_types)
