/*
 * qtests for the legacy "ivshmem" device and libvirt's command lines
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/mman.h>
#include "qemu/units.h"
#include "qobject/qdict.h"
#include "hw/pci/pci_regs.h"
#include "hw/misc/ivsh-regs.h"
#include "ivsh-qtest.h"
#include "ivsh-tserver.h"

/* A POSIX shm name unique to this test process, unlinked by the caller */
static char *shm_name(const char *tag)
{
    return g_strdup_printf("ivsh-test-%d-%s", getpid(), tag);
}

static void shm_unlink_name(const char *name)
{
    g_autofree char *p = g_strdup_printf("/%s", name);

    shm_unlink(p);
}

/* BAR size and type by config-space sizing: works for any size */
static uint64_t bar_size(QPCIDevice *dev, int bar, bool *is64)
{
    uint8_t off = PCI_BASE_ADDRESS_0 + 4 * bar;
    uint32_t lo = qpci_config_readl(dev, off), hi = 0, slo, shi = 0xffffffff;
    uint64_t mask;

    *is64 = (lo & PCI_BASE_ADDRESS_MEM_TYPE_MASK) ==
            PCI_BASE_ADDRESS_MEM_TYPE_64;
    qpci_config_writel(dev, off, 0xffffffff);
    slo = qpci_config_readl(dev, off);
    qpci_config_writel(dev, off, lo);
    if (*is64) {
        hi = qpci_config_readl(dev, off + 4);
        qpci_config_writel(dev, off + 4, 0xffffffff);
        shi = qpci_config_readl(dev, off + 4);
        qpci_config_writel(dev, off + 4, hi);
    }
    mask = ((uint64_t)shi << 32) | (slo & PCI_BASE_ADDRESS_MEM_MASK);
    return ~mask + 1;
}

static void check_bar2(QTestState *qts, int slot, uint64_t size, bool is64)
{
    IvshDev d;
    QPCIDevice *dev;
    bool b64;

    ivsh_dev_find(&d, qts, QPCI_DEVFN(slot, 0));
    dev = d.dev;

    g_assert_cmphex(qpci_config_readb(dev, PCI_REVISION_ID), ==,
                    IVSH_PCI_REVISION_LEGACY);
    g_assert_cmphex(qpci_config_readw(dev, PCI_CLASS_DEVICE), ==,
                    IVSH_PCI_CLASS);
    g_assert_cmphex(qpci_config_readb(dev, PCI_INTERRUPT_PIN), ==, 1);
    g_assert_cmphex(bar_size(dev, IVSH_BAR_SHM, &b64), ==, size);
    g_assert_cmpint(b64, ==, is64);
    g_assert_true(qpci_config_readl(dev, PCI_BASE_ADDRESS_2) &
                  PCI_BASE_ADDRESS_MEM_PREFETCH);
    ivsh_dev_close(&d);
}

/* Write through BAR2 of the device at @slot, read it in @host */
static void check_shared(QTestState *qts, int slot, volatile uint32_t *host)
{
    IvshDev d;

    ivsh_dev_open(&d, qts, QPCI_DEVFN(slot, 0));
    qpci_io_writel(d.dev, d.shm, 128, 0xfeed0000 + slot);
    g_assert_cmphex(host[32], ==, 0xfeed0000 + slot);
    host[33] = 0x1234;
    g_assert_cmphex(qpci_io_readl(d.dev, d.shm, 132), ==, 0x1234);
    ivsh_dev_close(&d);
}

static void *map_shm(const char *name, size_t size)
{
    g_autofree char *path = g_strdup_printf("/dev/shm/%s", name);

    return ivsh_map_file(path, size);
}

static void test_shm_defaults(void)
{
    g_autofree char *name = shm_name("defaults");
    QTestState *qts;
    uint32_t *host;
    struct stat st;
    g_autofree char *path = g_strdup_printf("/dev/shm/%s", name);

    qts = qtest_initf("-M pc -device ivshmem,shm=%s,addr=04.0", name);
    /* Created, sized to the default 4 MiB, mapped as a 64-bit BAR */
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 4 * MiB);
    check_bar2(qts, 4, 4 * MiB, true);
    host = map_shm(name, 4 * MiB);
    check_shared(qts, 4, host);
    munmap(host, 4 * MiB);
    qtest_quit(qts);

    /* An existing, larger object is opened, and BAR2 is its prefix */
    g_assert_cmpint(truncate(path, 16 * MiB), ==, 0);
    qts = qtest_initf("-M pc -device ivshmem,shm=%s,size=8,addr=04.0",
                      name);
    check_bar2(qts, 4, 8 * MiB, true);
    qtest_quit(qts);
    shm_unlink_name(name);
}

typedef struct SizeCase {
    const char *arg;
    uint64_t size;
} SizeCase;

static const SizeCase size_cases[] = {
    { "2", 2 * MiB }, { "8m", 8 * MiB }, { "8M", 8 * MiB },
    { "64k", 64 * 1024 }, { "4096K", 4 * MiB }, { "1g", 1024 * MiB },
    { "1G", 1024 * MiB },
};

static void test_sizes(void)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(size_cases); i++) {
        g_autofree char *name = shm_name("size");
        QTestState *qts;

        qts = qtest_initf("-M pc -device ivshmem,shm=%s,size=%s,addr=04.0",
                          name, size_cases[i].arg);
        check_bar2(qts, 4, size_cases[i].size, true);
        qtest_quit(qts);
        shm_unlink_name(name);
    }
}

/* use64 is a uint32, 1 or 0, as the original's */
static void test_use64(void)
{
    g_autofree char *name = shm_name("use64");
    QTestState *qts;
    QDict *rsp;
    unsigned i;

    for (i = 0; i <= 1; i++) {
        qts = qtest_initf("-M pc -device ivshmem,shm=%s,use64=%u,addr=04.0",
                          name, i);
        check_bar2(qts, 4, 4 * MiB, i);
        qtest_quit(qts);
    }
    /* JSON, at start-up and through QMP on a running VM */
    qts = qtest_initf("-M pc -device '{\"driver\": \"ivshmem\", "
                      "\"shm\": \"%s\", \"use64\": 0, "
                      "\"addr\": \"04.0\"}'", name);
    check_bar2(qts, 4, 4 * MiB, false);
    qtest_qmp_device_add(qts, "ivshmem", "u1", "{'shm': %s, 'use64': 1, "
                         "'addr': '05.0'}", name);
    check_bar2(qts, 5, 4 * MiB, true);
    for (i = 0; i < 2; i++) {
        /* A JSON bool is not a uint32: an error, and the VM lives on */
        rsp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments': "
                        "{'driver': 'ivshmem', 'shm': %s, 'use64': %s, "
                        "'addr': '06.0'}}", name, i ? "true" : "false");
        g_assert_true(qdict_haskey(rsp, "error"));
        qobject_unref(rsp);
    }
    qtest_qmp_assert_success(qts, "{'execute': 'query-status'}");
    qtest_quit(qts);
    shm_unlink_name(name);
}

static void test_memdev(void)
{
    g_autofree char *dir = ivsh_tmpdir_new();
    g_autofree char *file = g_build_filename(dir, "mem", NULL);
    const char *prop[] = { "memdev", "x-memdev" };
    uint32_t *host;
    size_t i;

    for (i = 0; i < ARRAY_SIZE(prop); i++) {
        QTestState *qts;

        qts = qtest_initf("-M pc -object memory-backend-file,id=m,size=2M,"
                          "share=on,mem-path=%s -device ivshmem,%s=m,"
                          "addr=04.0", file, prop[i]);
        check_bar2(qts, 4, 2 * MiB, true);
        host = ivsh_map_file(file, 2 * MiB);
        check_shared(qts, 4, host);
        munmap(host, 2 * MiB);
        qtest_quit(qts);
    }
    ivsh_tmpdir_free(g_steal_pointer(&dir));
}

/*
 * Unplug, or a device_add that fails, gives the backend back exactly once
 * (x-memdev and memdev are one property; as two links on one field they
 * dropped its reference twice: QEMU aborted).
 */
static void test_memdev_hotplug(void)
{
    g_autofree char *dir = ivsh_tmpdir_new();
    g_autofree char *file = g_build_filename(dir, "mem", NULL);
    const char *prop[] = { "memdev", "x-memdev" };
    QTestState *qts;
    QDict *rsp;
    size_t i;

    qts = qtest_init("-M pc");
    for (i = 0; i < ARRAY_SIZE(prop); i++) {
        qtest_qmp_assert_success(qts, "{'execute': 'object-add', "
                                 "'arguments': {'qom-type': "
                                 "'memory-backend-file', 'id': 'm', "
                                 "'size': 2097152, 'share': true, "
                                 "'mem-path': %s}}", file);
        rsp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments': "
                        "{'driver': 'ivshmem', 'id': 'lg', %s: 'm', "
                        "'role': 'boss', 'addr': '06.0'}}", prop[i]);
        g_assert_true(qdict_haskey(rsp, "error"));
        qobject_unref(rsp);
        rsp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments': "
                        "{'driver': 'ivshmem', 'id': 'lg', %s: 'm', "
                        "'use64': 'on', 'addr': '06.0'}}", prop[i]);
        g_assert_true(qdict_haskey(rsp, "error"));
        qobject_unref(rsp);
        qtest_qmp_device_add(qts, "ivshmem", "lg", "{%s: 'm', "
                             "'addr': '06.0'}", prop[i]);
        check_bar2(qts, 6, 2 * MiB, true);
        qpci_unplug_acpi_device_test(qts, "lg", 6);
        qtest_qmp_assert_success(qts, "{'execute': 'object-del', "
                                 "'arguments': {'id': 'm'}}");
    }
    qtest_qmp_assert_success(qts, "{'execute': 'query-status'}");
    qtest_quit(qts);
    ivsh_tmpdir_free(g_steal_pointer(&dir));
}

typedef struct Legacy {
    IvshEnv *e;
    IvshDev *d;
    int host;
} Legacy;

/* IntrStatus got the doorbell; the line must stay low meanwhile */
static bool status_set_line_low(void *opaque)
{
    Legacy *l = opaque;

    g_assert_false(ivsh_intx_level(l->d->dev));
    return ivsh_reg_read(l->d, IVSH_REG_INTR_STATUS) != 0;
}

/* Ring the host peer until it sees it (it may have just joined) */
static bool host_rung(void *opaque)
{
    Legacy *l = opaque;

    ivsh_reg_write(l->d, IVSH_REG_DOORBELL, IVSH_DOORBELL(l->host, 0));
    return ivsh_tserver_wait_rung(l->e->ts, l->host, 0, 10);
}

static void test_intx(void)
{
    IvshEnv t;
    IvshDev d;
    Legacy l = { &t, &d };
    QTestState *qts;

    ivsh_env_init(&t, 4 * MiB, 1);
    qts = qtest_initf("-M pc -chardev socket,id=s,path=%s -device ivshmem,"
                      "chardev=s,size=4m,msi=off,addr=04.0", t.sock);
    ivsh_dev_open(&d, qts, IVSH_DEVFN);
    g_assert_cmphex(qpci_find_capability(d.dev, PCI_CAP_ID_MSIX, 0), ==, 0);
    g_assert_cmpint(ivsh_reg_read(&d, IVSH_REG_IV_POSITION), ==, 0);

    /* Masked: IntrStatus is set, the line stays low */
    ivsh_tserver_ring(t.ts, 0, 0);
    g_assert_true(ivsh_wait_until(status_set_line_low, &l, IVSH_WAIT_MS));

    /* Unmasked: a doorbell raises the line */
    ivsh_reg_write(&d, IVSH_REG_INTR_MASK, IVSH_INTR_DOORBELL);
    g_assert_false(ivsh_intx_level(d.dev));
    ivsh_tserver_ring(t.ts, 0, 0);
    g_assert_true(ivsh_wait_intx(d.dev));
    /* Masking lowers it, unmasking raises it again */
    ivsh_reg_write(&d, IVSH_REG_INTR_MASK, 0);
    g_assert_false(ivsh_intx_level(d.dev));
    ivsh_reg_write(&d, IVSH_REG_INTR_MASK, IVSH_INTR_DOORBELL);
    g_assert_true(ivsh_intx_level(d.dev));
    /* Reading IntrStatus clears it and lowers the line */
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_STATUS), ==,
                    IVSH_INTR_DOORBELL);
    g_assert_false(ivsh_intx_level(d.dev));
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_STATUS), ==, 0);

    /* The VM rings a host peer */
    l.host = ivsh_tserver_add_host_peer(t.ts);
    g_assert_true(ivsh_wait_until(host_rung, &l, IVSH_WAIT_MS));

    ivsh_dev_close(&d);
    qtest_quit(qts);
    ivsh_env_free(&t);
}

/* msi=on (the default): an Interrupt Pin, but INTx is never raised */
static void test_msi_no_intx(void)
{
    g_autofree char *name = shm_name("msi");
    IvshEnv t;
    IvshVm vm = { 0 };
    IvshDev d;
    QTestState *qts;

    ivsh_env_init(&t, 1 * MiB, 1);
    qts = qtest_initf("-M pc -chardev socket,id=s,path=%s -device ivshmem,"
                      "chardev=s,size=1m,addr=04.0 -device ivshmem,shm=%s,"
                      "addr=05.0", t.sock, name);
    ivsh_vm_open(&vm, qts, IVSH_DEVFN, 1);
    g_assert_cmphex(qpci_config_readb(vm.d.dev, PCI_INTERRUPT_PIN), ==, 1);
    ivsh_reg_write(&vm.d, IVSH_REG_INTR_MASK, 0xffffffff);
    ivsh_reg_write(&vm.d, IVSH_REG_INTR_STATUS, IVSH_INTR_DOORBELL);
    g_assert_false(ivsh_intx_level(vm.d.dev));
    /* A doorbell is an MSI-X message, not INTx */
    ivsh_tserver_ring(t.ts, vm.id, 0);
    g_assert_true(ivsh_vm_wait_msi(&vm, 0));
    g_assert_false(ivsh_intx_level(vm.d.dev));
    ivsh_dev_close(&vm.d);

    /* shm= without a server: no MSI-X at all, still no INTx */
    ivsh_dev_open(&d, qts, QPCI_DEVFN(5, 0));
    ivsh_reg_write(&d, IVSH_REG_INTR_MASK, 0xffffffff);
    ivsh_reg_write(&d, IVSH_REG_INTR_STATUS, IVSH_INTR_DOORBELL);
    g_assert_false(ivsh_intx_level(d.dev));
    ivsh_dev_close(&d);

    qtest_quit(qts);
    ivsh_env_free(&t);
    shm_unlink_name(name);
}

typedef struct GuestWord {
    QTestState *qts;
    uint64_t addr;
    uint32_t val;
} GuestWord;

static bool guest_word_is(void *opaque)
{
    GuestWord *w = opaque;

    return qtest_readl(w->qts, w->addr) == w->val;
}

/*
 * MSI-X: host rings vector @v of the device at @slot, seen in guest RAM.
 * BAR2 is not mapped: it can be larger than libqos' PCI window.
 */
static void check_msix_doorbell(QTestState *qts, int slot, unsigned v)
{
    GuestWord w = { qts, IVSH_MSI_ADDR(v), IVSH_MSI_DATA(v) };
    IvshDev d;

    ivsh_dev_find(&d, qts, QPCI_DEVFN(slot, 0));
    qpci_device_enable(d.dev);
    qpci_msix_enable(d.dev);
    qtest_writel(qts, w.addr, 0);
    ivsh_msix_entry(d.dev, v, w.addr, w.val, false);
    g_assert_true(ivsh_wait_until(guest_word_is, &w, IVSH_WAIT_MS));
    ivsh_dev_close(&d);
}

typedef struct LibvirtLine {
    const char *name;
    const char *args;       /* %s: shm name prefix or server socket */
    bool server;
    uint64_t size;
    unsigned vectors;
    int slot;
} LibvirtLine;

/* libvirt tests/qemuxml2argvdata/shmem.args (old libvirt, legacy model) */
static const LibvirtLine libvirt_lines[] = {
    { "shmem0", "-device ivshmem,id=shmem0,size=4m,shm=%s0,bus=pci.0,"
      "addr=0x3", false, 4 * MiB, 0, 3 },
    { "shmem1", "-device ivshmem,id=shmem1,size=128m,shm=%s1,bus=pci.0,"
      "addr=0x5", false, 128 * MiB, 0, 5 },
    { "shmem2", "-device ivshmem,id=shmem2,size=256m,shm=%s2,bus=pci.0,"
      "addr=0x4", false, 256 * MiB, 0, 4 },
    { "shmem3", "-device ivshmem,id=shmem3,size=512m,chardev=charshmem3,"
      "bus=pci.0,addr=0x6 -chardev socket,id=charshmem3,path=%s",
      true, 512 * MiB, 1, 6 },
    { "shmem4", "-device ivshmem,id=shmem4,size=1024m,chardev=charshmem4,"
      "bus=pci.0,addr=0x7 -chardev socket,id=charshmem4,path=%s",
      true, 1024 * MiB, 1, 7 },
    { "shmem5", "-device ivshmem,id=shmem5,size=2048m,chardev=charshmem5,"
      "msi=on,ioeventfd=off,bus=pci.0,addr=0x8 -chardev socket,"
      "id=charshmem5,path=%s", true, 2048 * MiB, 1, 8 },
    { "shmem6", "-device ivshmem,id=shmem6,size=4096m,chardev=charshmem6,"
      "msi=on,vectors=16,bus=pci.0,addr=0x9 -chardev socket,id=charshmem6,"
      "path=%s", true, 4096 * MiB, 16, 9 },
    { "shmem7", "-device ivshmem,id=shmem7,size=8192m,chardev=charshmem7,"
      "msi=on,vectors=32,ioeventfd=on,bus=pci.0,addr=0xa -chardev socket,"
      "id=charshmem7,path=%s", true, 8192 * MiB, 32, 10 },
    /* Current libvirt: JSON -device (and -object) */
    { "json-plain", "-object '{\"qom-type\":\"memory-backend-file\","
      "\"id\":\"shmmem-shmem2\",\"mem-path\":\"/dev/shm/%s2\","
      "\"size\":268435456,\"share\":true}' -device '{\"driver\":"
      "\"ivshmem-plain\",\"id\":\"shmem2\",\"memdev\":\"shmmem-shmem2\","
      "\"master\":\"on\",\"bus\":\"pci.0\",\"addr\":\"0x4\"}'",
      false, 256 * MiB, 0, 4 },
    { "json-doorbell", "-device '{\"driver\":\"ivshmem-doorbell\",\"id\":"
      "\"shmem6\",\"chardev\":\"charshmem6\",\"vectors\":16,\"ioeventfd\":"
      "true,\"bus\":\"pci.0\",\"addr\":\"0x8\"}' -chardev socket,"
      "id=charshmem6,path=%s", true, 1 * MiB, 16, 8 },
    { "json-doorbell-no-ioeventfd", "-device '{\"driver\":"
      "\"ivshmem-doorbell\",\"id\":\"shmem5\",\"chardev\":\"charshmem5\","
      "\"ioeventfd\":false,\"bus\":\"pci.0\",\"addr\":\"0x7\"}' -chardev "
      "socket,id=charshmem5,path=%s", true, 1 * MiB, 1, 7 },
};

static void test_libvirt_line(gconstpointer opaque)
{
    const LibvirtLine *l = opaque;
    g_autofree char *prefix = shm_name("lv");
    g_autofree char *args = NULL;
    QTestState *qts;
    IvshEnv t = { 0 };

    if (l->server) {
        /* The server's memory is exactly what the line asks for */
        ivsh_env_init(&t, l->size, l->vectors);
        args = g_strdup_printf(l->args, t.sock);
    } else {
        args = g_strdup_printf(l->args, prefix);
    }
    qts = qtest_initf("-M pc -nodefaults %s", args);
    if (strstr(l->args, "ivshmem,")) {
        check_bar2(qts, l->slot, l->size, true);
    }
    if (l->server) {
        ivsh_tserver_ring(t.ts, 0, l->vectors - 1);
        check_msix_doorbell(qts, l->slot, l->vectors - 1);
    } else if (l->size <= 256 * MiB) {
        /* The shm object is named after the prefix and the slot */
        g_autofree char *name = g_strdup_printf("%s%d", prefix,
                                                l->slot == 3 ? 0 :
                                                l->slot == 5 ? 1 : 2);
        uint32_t *host = map_shm(name, l->size);

        check_shared(qts, l->slot, host);
        munmap(host, l->size);
        shm_unlink_name(name);
    }
    qtest_quit(qts);
    if (l->server) {
        ivsh_env_free(&t);
    }
}

/* libvirt's hotplug sequences over QMP */
static void test_libvirt_hotplug(void)
{
    g_autofree char *name = shm_name("hp");
    g_autofree char *path = g_strdup_printf("/dev/shm/%s", name);
    QTestState *qts;
    IvshEnv t;
    int i;

    ivsh_env_init(&t, 1 * MiB, 2);
    g_assert_true(g_file_set_contents(path, "", 0, NULL));
    g_assert_cmpint(truncate(path, 1 * MiB), ==, 0);
    qts = qtest_init("-M pc");
    for (i = 0; i < 2; i++) {
        qtest_qmp_assert_success(qts, "{'execute': 'object-add', 'arguments':"
            " {'qom-type': 'memory-backend-file', 'id': 'shmmem-shmem1',"
            " 'mem-path': %s, 'size': 1048576, 'share': true}}", path);
        qtest_qmp_device_add(qts, "ivshmem-plain", "shmem1",
                             "{'memdev': 'shmmem-shmem1', 'master': 'on',"
                             " 'addr': '0x6'}");
        qpci_unplug_acpi_device_test(qts, "shmem1", 6);
        qtest_qmp_assert_success(qts, "{'execute': 'object-del', "
                                 "'arguments': {'id': 'shmmem-shmem1'}}");

        qtest_qmp_assert_success(qts, "{'execute': 'chardev-add', "
            "'arguments': {'id': 'charshmem2', 'backend': {'type': 'socket',"
            " 'data': {'server': false, 'addr': {'type': 'unix', "
            "'data': {'path': %s}}}}}}", t.sock);
        qtest_qmp_device_add(qts, "ivshmem-doorbell", "shmem2",
                             "{'chardev': 'charshmem2', 'vectors': 2, "
                             "'ioeventfd': true, 'addr': '0x7'}");
        qpci_unplug_acpi_device_test(qts, "shmem2", 7);
        qtest_qmp_assert_success(qts, "{'execute': 'chardev-remove', "
                                 "'arguments': {'id': 'charshmem2'}}");
    }
    qtest_quit(qts);
    unlink(path);
    ivsh_env_free(&t);
}

static void test_role(void)
{
    g_autofree char *name = shm_name("role");
    g_autofree char *dir = ivsh_tmpdir_new();
    g_autofree char *uri = g_strdup_printf("unix:%s/m", dir);
    g_autofree char *err = NULL;
    QTestState *qts;

    qts = qtest_initf("-M pc -device ivshmem,id=p,shm=%s,role=peer", name);
    err = ivsh_migrate_error(qts, uri);
    g_assert_nonnull(strstr(err, "'p' is not the master"));
    qtest_quit(qts);
    /* Unset: ID 0, hence master, migratable (role=master the same) */
    qts = qtest_initf("-M pc -device ivshmem,shm=%s -device ivshmem,"
                      "shm=%s,role=master", name, name);
    qtest_quit(qts);
    shm_unlink_name(name);
    ivsh_tmpdir_free(g_steal_pointer(&dir));
}

/* A master migrates registers, memory and the INTx level */
static void test_migrate_intx(void)
{
    IvshEnv t1, t2;
    g_autofree char *uri = NULL;
    QTestState *src, *dst;
    IvshDev d;

    ivsh_env_init(&t1, 1 * MiB, 1);
    ivsh_env_init(&t2, 1 * MiB, 1);
    uri = g_strdup_printf("unix:%s/mig", t1.dir);
    src = qtest_initf("-M pc -chardev socket,id=s,path=%s -device ivshmem,"
                      "chardev=s,size=1m,msi=off,addr=04.0", t1.sock);
    dst = qtest_initf("-M pc -chardev socket,id=s,path=%s -device ivshmem,"
                      "chardev=s,size=1m,msi=off,addr=04.0 -incoming %s",
                      t2.sock, uri);
    ivsh_dev_open(&d, src, IVSH_DEVFN);
    qpci_io_writel(d.dev, d.shm, 0, 0xabcdef01);
    ivsh_reg_write(&d, IVSH_REG_INTR_MASK, IVSH_INTR_DOORBELL);
    ivsh_tserver_ring(t1.ts, 0, 0);
    g_assert_true(ivsh_wait_intx(d.dev));
    ivsh_dev_close(&d);

    ivsh_migrate(src, dst, uri);

    g_assert_cmphex(((uint32_t *)ivsh_tserver_shm(t2.ts))[0], ==, 0xabcdef01);
    ivsh_dev_find(&d, dst, IVSH_DEVFN);
    g_assert_true(ivsh_intx_level(d.dev));
    ivsh_dev_map(&d);
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_STATUS), ==, 1);
    g_assert_false(ivsh_intx_level(d.dev));
    ivsh_dev_close(&d);
    qtest_quit(src);
    qtest_quit(dst);
    ivsh_env_free(&t1);
    ivsh_env_free(&t2);
}

static bool migration_done(void *opaque)
{
    QDict *rsp = qtest_qmp_assert_success_ref(opaque,
                                              "{'execute': 'query-migrate'}");
    const char *st = qdict_get_try_str(rsp, "status");
    bool done = st && (!strcmp(st, "completed") || !strcmp(st, "failed"));

    qobject_unref(rsp);
    return done;
}

static const char *migration_status(QTestState *qts, char *buf, size_t n)
{
    QDict *rsp = qtest_qmp_assert_success_ref(qts,
                                              "{'execute': 'query-migrate'}");

    g_strlcpy(buf, qdict_get_try_str(rsp, "status") ?: "none", n);
    qobject_unref(rsp);
    return buf;
}

/* Load the stream in @file into a new VM; its final migration status */
static const char *load_stream(const char *file, const char *shm,
                               const char *errf, char *buf, size_t n)
{
    g_autofree char *args = g_strdup_printf("-M pc -device ivshmem,shm=%s,"
                                            "size=1m,addr=04.0 -incoming "
                                            "defer", shm);
    g_autofree char *uri = g_strdup_printf("file:%s", file);
    QTestState *qts = ivsh_qtest_init_stderr(errf, args);

    qtest_qmp_assert_success(qts, "{'execute': 'migrate-incoming', "
                             "'arguments': {'uri': %s, "
                             "'exit-on-error': false}}", uri);
    g_assert_true(ivsh_wait_until(migration_done, qts, IVSH_WAIT_MS));
    migration_status(qts, buf, n);
    qtest_quit(qts);
    return buf;
}

/*
 * The legacy vmsd is version 2: a version 1 stream (the layout of QEMU
 * <= 3.1's "ivshmem") is refused by the version check.  Made by patching
 * the section header of a stream of ours.
 */
static void test_migrate_v1_refused(void)
{
    g_autofree char *name = shm_name("v1src");
    g_autofree char *dst = shm_name("v1dst");
    g_autofree char *dir = ivsh_tmpdir_new();
    g_autofree char *file = g_build_filename(dir, "stream", NULL);
    g_autofree char *errf = g_build_filename(dir, "qemu.err", NULL);
    g_autofree char *uri = g_strdup_printf("file:%s", file);
    static const char idstr[] = "/ivshmem";
    g_autofree char *data = NULL;
    char status[32];
    QTestState *src;
    size_t len, i, hits = 0;

    src = qtest_initf("-M pc -device ivshmem,shm=%s,size=1m,addr=04.0", name);
    qtest_qmp_assert_success(src, "{'execute': 'migrate', 'arguments': "
                             "{'uri': %s}}", uri);
    g_assert_true(ivsh_wait_until(migration_done, src, IVSH_WAIT_MS));
    g_assert_cmpstr(migration_status(src, status, sizeof(status)), ==,
                    "completed");
    qtest_quit(src);

    /* As it is, the stream loads */
    g_assert_cmpstr(load_stream(file, dst, errf, status, sizeof(status)),
                    ==, "completed");

    /* "<id>/ivshmem", instance ID (be32), version ID (be32): 2 -> 1 */
    g_assert_true(g_file_get_contents(file, &data, &len, NULL));
    for (i = 0; i + sizeof(idstr) - 1 + 8 <= len; i++) {
        char *v = data + i + sizeof(idstr) - 1 + 4;

        if (!memcmp(data + i, idstr, sizeof(idstr) - 1) &&
            !memcmp(v, "\0\0\0\2", 4)) {
            v[3] = 1;
            hits++;
        }
    }
    g_assert_cmpuint(hits, ==, 1);
    g_assert_true(g_file_set_contents(file, data, len, NULL));
    g_assert_cmpstr(load_stream(file, dst, errf, status, sizeof(status)),
                    ==, "failed");
    g_assert_true(ivsh_wait_file_contains(errf, "ivshmem: incoming "
                                          "version_id 1 is too old"));

    shm_unlink_name(name);
    shm_unlink_name(dst);
    ivsh_tmpdir_free(g_steal_pointer(&dir));
}

typedef struct BadLine {
    const char *name;
    const char *args;
    const char *message;
} BadLine;

static const BadLine bad_lines[] = {
    { "nothing", "-device ivshmem", "exactly one of 'shm', 'chardev' and "
      "'memdev' must be given" },
    { "shm-and-memdev", "-object memory-backend-ram,id=m,size=4M "
      "-device ivshmem,shm=%s,memdev=m", "exactly one of" },
    { "shm-and-chardev", "-chardev null,id=n -device ivshmem,shm=%s,"
      "chardev=n", "exactly one of" },
    { "size-not-power-of-2", "-device ivshmem,shm=%s,size=3m",
      "size 3145728 is not a power of two" },
    { "size-not-a-size", "-device ivshmem,shm=%s,size=big",
      "size 'big' is not a size" },
    { "size-too-small", "-device ivshmem,shm=%s,size=1k",
      "is not a power of two of at least 4096" },
    { "size-with-memdev", "-object memory-backend-ram,id=m,size=4M "
      "-device ivshmem,memdev=m,size=4m", "size cannot be given with memdev" },
    { "bad-role", "-device ivshmem,shm=%s,role=boss",
      "role 'boss' is invalid" },
    { "bad-use64", "-device ivshmem,shm=%s,use64=2",
      "use64=2 is invalid, it must be 1 or 0" },
    { "use64-on", "-device ivshmem,shm=%s,use64=on", "use64" },
    { "use64-off-too-big", "-device ivshmem,shm=%s,size=2g,use64=0",
      "needs a 64-bit BAR" },
    { "ioeventfd-without-msi", "-chardev null,id=n -device ivshmem,"
      "chardev=n,msi=off,ioeventfd=on", "ioeventfd=on requires msi=on" },
    { "bad-vectors", "-chardev null,id=n -device ivshmem,chardev=n,"
      "vectors=0", "vectors=0 is out of range" },
    { "chardev-not-socket", "-chardev null,id=n -device ivshmem,chardev=n",
      "cannot pass file descriptors" },
    { "bad-shm-name", "-device ivshmem,shm=a/b",
      "shm 'a/b' is not a valid shared memory name" },
};

static void test_bad_line(gconstpointer opaque)
{
    const BadLine *b = opaque;
    g_autofree char *name = shm_name("bad");
    g_autofree char *args = g_strdup_printf(b->args, name);
    g_autofree char *err = NULL;

    g_assert_cmpint(ivsh_run_qemu(NULL, "pc", args, &err), ==, 1);
    g_test_message("%s: %s", b->name, err);
    g_assert_nonnull(strstr(err, b->message));
    shm_unlink_name(name);
}

static void test_shm_too_small(void)
{
    g_autofree char *name = shm_name("small");
    g_autofree char *path = g_strdup_printf("/dev/shm/%s", name);
    g_autofree char *args = NULL, *err = NULL;

    g_assert_true(g_file_set_contents(path, "", 0, NULL));
    g_assert_cmpint(truncate(path, 1 * MiB), ==, 0);
    args = g_strdup_printf("-device ivshmem,shm=%s,size=4m", name);
    g_assert_cmpint(ivsh_run_qemu(NULL, "pc", args, &err), ==, 1);
    g_assert_nonnull(strstr(err, "has 1048576 bytes, less than size"));
    unlink(path);
}

/* An shm object of another user: it works, with a warning (F18) */
static void test_shm_foreign_owner(void)
{
    g_autofree char *name = shm_name("owner");
    g_autofree char *path = g_strdup_printf("/dev/shm/%s", name);
    g_autofree char *args = NULL, *err = NULL;

    g_assert_true(g_file_set_contents(path, "", 0, NULL));
    g_assert_cmpint(truncate(path, 1 * MiB), ==, 0);
    if (geteuid() != 0 || chown(path, 65534, 65534) < 0) {
        g_test_skip("needs root to give the object to another user");
        unlink(path);
        return;
    }
    args = g_strdup_printf("-device ivshmem,shm=%s,size=1m", name);
    g_assert_cmpint(ivsh_run_qemu(NULL, "pc", args, &err), ==, 0);
    g_assert_nonnull(strstr(err, "belongs to uid 65534, which can shrink "
                            "it"));
    unlink(path);
}

static void test_server_too_small(void)
{
    g_autofree char *args = NULL, *err = NULL;
    IvshEnv t;

    ivsh_env_init(&t, 1 * MiB, 1);
    args = g_strdup_printf("-chardev socket,id=s,path=%s -device ivshmem,"
                           "chardev=s,size=2m", t.sock);
    g_assert_cmpint(ivsh_run_qemu(NULL, "pc", args, &err), ==, 1);
    g_assert_nonnull(strstr(err, "shared memory (1048576 bytes) is smaller "
                            "than size (2097152 bytes)"));
    ivsh_env_free(&t);
}

int main(int argc, char **argv)
{
    size_t i;

    g_test_init(&argc, &argv, NULL);

    qtest_add_func("/ivsh/legacy/shm-defaults", test_shm_defaults);
    qtest_add_func("/ivsh/legacy/sizes", test_sizes);
    qtest_add_func("/ivsh/legacy/use64", test_use64);
    qtest_add_func("/ivsh/legacy/memdev", test_memdev);
    qtest_add_func("/ivsh/legacy/memdev-hotplug", test_memdev_hotplug);
    qtest_add_func("/ivsh/legacy/intx", test_intx);
    qtest_add_func("/ivsh/legacy/msi-no-intx", test_msi_no_intx);
    qtest_add_func("/ivsh/legacy/role", test_role);
    qtest_add_func("/ivsh/legacy/migrate-intx", test_migrate_intx);
    qtest_add_func("/ivsh/legacy/migrate-v1-refused",
                   test_migrate_v1_refused);
    qtest_add_func("/ivsh/legacy/shm-too-small", test_shm_too_small);
    qtest_add_func("/ivsh/legacy/shm-foreign-owner", test_shm_foreign_owner);
    qtest_add_func("/ivsh/legacy/server-too-small", test_server_too_small);
    for (i = 0; i < ARRAY_SIZE(bad_lines); i++) {
        g_autofree char *p = g_strdup_printf("/ivsh/legacy/bad/%s",
                                             bad_lines[i].name);

        qtest_add_data_func(p, &bad_lines[i], test_bad_line);
    }
    for (i = 0; i < ARRAY_SIZE(libvirt_lines); i++) {
        g_autofree char *p = g_strdup_printf("/ivsh/libvirt/%s",
                                             libvirt_lines[i].name);

        qtest_add_data_func(p, &libvirt_lines[i], test_libvirt_line);
    }
    qtest_add_func("/ivsh/libvirt/hotplug", test_libvirt_hotplug);

    return g_test_run();
}
