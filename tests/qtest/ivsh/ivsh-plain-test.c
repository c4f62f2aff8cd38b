/*
 * qtests for ivshmem-plain
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qobject/qdict.h"
#include "qapi/error.h"
#include "qobject/qjson.h"
#include "qobject/qlist.h"
#include "hw/pci/pci_regs.h"
#include "hw/misc/ivsh-regs.h"
#include "ivsh-qtest.h"

#define SHM_SIZE (1 * 1024 * 1024)
#define DEVFN QPCI_DEVFN(4, 0)

typedef struct Fixture {
    char *dir;
    char *shm_path;
} Fixture;

static void fixture_init(Fixture *f)
{
    f->dir = ivsh_tmpdir_new();
    f->shm_path = g_build_filename(f->dir, "shm", NULL);
}

static void fixture_free(Fixture *f)
{
    g_free(f->shm_path);
    ivsh_tmpdir_free(f->dir);
}

static QTestState *start_vm(Fixture *f, const char *machine,
                            const char *dev_opts, const char *extra)
{
    return qtest_initf("-M %s -object memory-backend-file,id=m0,size=%d,"
                       "share=on,mem-path=%s -device ivshmem-plain,memdev=m0,"
                       "addr=04.0%s%s %s", machine, SHM_SIZE, f->shm_path,
                       dev_opts ? "," : "", dev_opts ? dev_opts : "",
                       extra ? extra : "");
}

/* One pc VM with the device at DEVFN, opened */
static void plain_start(Fixture *f, IvshDev *d)
{
    fixture_init(f);
    ivsh_dev_open(d, start_vm(f, "pc", NULL, NULL), DEVFN);
}

static void plain_stop(Fixture *f, IvshDev *d)
{
    QTestState *qts = d->qts;

    ivsh_dev_close(d);
    qtest_quit(qts);
    fixture_free(f);
}

static void test_ids(void)
{
    Fixture f;
    IvshDev d;
    uint32_t bar;

    plain_start(&f, &d);

    g_assert_cmphex(qpci_config_readw(d.dev, PCI_DEVICE_ID), ==,
                    IVSH_PCI_DEVICE_ID);
    g_assert_cmphex(qpci_config_readb(d.dev, PCI_REVISION_ID), ==,
                    IVSH_PCI_REVISION);
    g_assert_cmphex(qpci_config_readw(d.dev, PCI_CLASS_DEVICE), ==,
                    IVSH_PCI_CLASS);
    g_assert_cmphex(qpci_config_readb(d.dev, PCI_INTERRUPT_PIN), ==, 0);
    /* No capabilities: no MSI-X on the plain device */
    g_assert_false(qpci_config_readw(d.dev, PCI_STATUS) & PCI_STATUS_CAP_LIST);

    g_assert_cmpuint(d.regs_size, ==, IVSH_REGS_SIZE);
    g_assert_cmpuint(d.shm_size, ==, SHM_SIZE);
    bar = qpci_config_readl(d.dev, PCI_BASE_ADDRESS_2);
    g_assert_cmphex(bar & PCI_BASE_ADDRESS_SPACE, ==,
                    PCI_BASE_ADDRESS_SPACE_MEMORY);
    g_assert_cmphex(bar & PCI_BASE_ADDRESS_MEM_TYPE_MASK, ==,
                    PCI_BASE_ADDRESS_MEM_TYPE_64);
    g_assert_true(bar & PCI_BASE_ADDRESS_MEM_PREFETCH);
    /* BAR1 (MSI-X) is not implemented */
    g_assert_cmphex(qpci_config_readl(d.dev, PCI_BASE_ADDRESS_1), ==, 0);

    plain_stop(&f, &d);
}

static void test_registers(void)
{
    Fixture f;
    IvshDev d;
    uint64_t off;

    plain_start(&f, &d);

    /* Reset values */
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_MASK), ==, 0);
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_STATUS), ==, 0);
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_IV_POSITION), ==, 0);

    ivsh_reg_write(&d, IVSH_REG_INTR_MASK, 0xffffffff);
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_MASK), ==, 0xffffffff);
    ivsh_reg_write(&d, IVSH_REG_INTR_MASK, 0x12345678);
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_MASK), ==, 0x12345678);

    /* IntrStatus is read-to-clear */
    ivsh_reg_write(&d, IVSH_REG_INTR_STATUS, 0xa5a5a5a5);
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_STATUS), ==, 0xa5a5a5a5);
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_STATUS), ==, 0);

    /* IVPosition is read-only, Doorbell write-only and ignored */
    ivsh_reg_write(&d, IVSH_REG_IV_POSITION, 0x55);
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_IV_POSITION), ==, 0);
    ivsh_reg_write(&d, IVSH_REG_DOORBELL, IVSH_DOORBELL(1, 0));
    ivsh_reg_write(&d, IVSH_REG_DOORBELL, IVSH_DOORBELL(0, 0));
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_DOORBELL), ==, 0);
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_STATUS), ==, 0);

    /* Reserved space reads zero, writes are ignored */
    for (off = 0x10; off < IVSH_REGS_SIZE; off += 4) {
        ivsh_reg_write(&d, off, 0xdeadbeef);
        g_assert_cmphex(ivsh_reg_read(&d, off), ==, 0);
    }
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_MASK), ==, 0x12345678);

    plain_stop(&f, &d);
}

static void test_access_sizes(void)
{
    Fixture f;
    IvshDev d;
    uint64_t off;

    plain_start(&f, &d);

    ivsh_reg_write(&d, IVSH_REG_INTR_MASK, 0xcafef00d);
    ivsh_reg_write(&d, IVSH_REG_INTR_STATUS, 0x0000f00d);
    for (off = 0; off < 0x20; off++) {
        g_assert_cmphex(qpci_io_readb(d.dev, d.regs, off), ==, 0);
        g_assert_cmphex(qpci_io_readw(d.dev, d.regs, off), ==, 0);
        g_assert_cmphex(qpci_io_readq(d.dev, d.regs, off), ==, 0);
        if (off & 3) {
            g_assert_cmphex(qpci_io_readl(d.dev, d.regs, off), ==, 0);
        }
        qpci_io_writeb(d.dev, d.regs, off, 0xff);
        qpci_io_writew(d.dev, d.regs, off, 0xffff);
        qpci_io_writeq(d.dev, d.regs, off, ~0ULL);
        if (off & 3) {
            qpci_io_writel(d.dev, d.regs, off, 0xffffffff);
        }
    }
    /* The last byte of the block, and accesses crossing its end */
    g_assert_cmphex(qpci_io_readb(d.dev, d.regs, IVSH_REGS_SIZE - 1), ==, 0);
    g_assert_cmphex(qpci_io_readl(d.dev, d.regs, IVSH_REGS_SIZE - 2), ==, 0);

    /* None of it changed the registers or cleared IntrStatus */
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_MASK), ==, 0xcafef00d);
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_STATUS), ==, 0xf00d);

    plain_stop(&f, &d);
}

static void test_shared_memory(void)
{
    Fixture f;
    IvshDev d;
    uint32_t *host;
    uint8_t buf[4096], back[4096];
    unsigned i;

    plain_start(&f, &d);
    host = ivsh_map_file(f.shm_path, SHM_SIZE);

    /* Guest writes, host reads */
    for (i = 0; i < sizeof(buf); i++) {
        buf[i] = i * 7 + 3;
    }
    qpci_memwrite(d.dev, d.shm, 0, buf, sizeof(buf));
    g_assert_cmpmem(host, sizeof(buf), buf, sizeof(buf));
    qpci_io_writel(d.dev, d.shm, SHM_SIZE - 4, 0x600dcafe);
    g_assert_cmphex(host[SHM_SIZE / 4 - 1], ==, 0x600dcafe);

    /* Host writes, guest reads */
    for (i = 0; i < sizeof(back) / 4; i++) {
        host[1024 + i] = 0x01010101 * i;
    }
    qpci_memread(d.dev, d.shm, 4096, back, sizeof(back));
    g_assert_cmpmem(back, sizeof(back), &host[1024], sizeof(back));

    munmap(host, SHM_SIZE);
    plain_stop(&f, &d);
}

static void test_two_vms(void)
{
    Fixture f;
    QTestState *qts1, *qts2;
    IvshDev d1, d2;

    fixture_init(&f);
    qts1 = start_vm(&f, "pc", NULL, NULL);
    qts2 = start_vm(&f, "q35", NULL, NULL);
    ivsh_dev_open(&d1, qts1, DEVFN);
    ivsh_dev_open(&d2, qts2, DEVFN);

    qpci_io_writel(d1.dev, d1.shm, 0, 0x11111111);
    g_assert_cmphex(qpci_io_readl(d2.dev, d2.shm, 0), ==, 0x11111111);
    qpci_io_writel(d2.dev, d2.shm, 0x800, 0x22222222);
    g_assert_cmphex(qpci_io_readl(d1.dev, d1.shm, 0x800), ==, 0x22222222);
    qpci_io_writeq(d2.dev, d2.shm, SHM_SIZE - 8, 0x3333444455556666ULL);
    g_assert_cmphex(qpci_io_readq(d1.dev, d1.shm, SHM_SIZE - 8), ==,
                    0x3333444455556666ULL);

    ivsh_dev_close(&d1);
    ivsh_dev_close(&d2);
    qtest_quit(qts1);
    qtest_quit(qts2);
    fixture_free(&f);
}

static void test_reset(void)
{
    Fixture f;
    IvshDev d;
    QTestState *qts;

    plain_start(&f, &d);
    qts = d.qts;
    ivsh_reg_write(&d, IVSH_REG_INTR_MASK, 0xffff);
    ivsh_reg_write(&d, IVSH_REG_INTR_STATUS, 0x1);
    qpci_io_writel(d.dev, d.shm, 0, 0x5a5a5a5a);
    ivsh_dev_close(&d);

    qtest_system_reset(qts);

    /* BARs are unassigned after reset: map them again */
    ivsh_dev_open(&d, qts, DEVFN);
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_MASK), ==, 0);
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_STATUS), ==, 0);
    /* Shared memory is not the device's to clear */
    g_assert_cmphex(qpci_io_readl(d.dev, d.shm, 0), ==, 0x5a5a5a5a);

    plain_stop(&f, &d);
}

/* Check the device at @devfn of @bus works and sees the memory file. */
static void check_plugged(QTestState *qts, QPCIBus *bus, int devfn,
                          uint32_t *host, uint32_t magic)
{
    QPCIDevice *dev = qpci_device_find(bus, devfn);
    QPCIBar shm;

    g_assert(dev);
    qpci_device_enable(dev);
    shm = qpci_iomap(dev, IVSH_BAR_SHM, NULL);
    qpci_io_writel(dev, shm, 16, magic);
    g_assert_cmphex(host[4], ==, magic);
    qpci_iounmap(dev, shm);
    g_free(dev);
}

#define HP_SLOT 6

static void test_hotplug_pc(void)
{
    Fixture f;
    QTestState *qts;
    QPCIBus *bus;
    uint32_t *host;
    int i;

    fixture_init(&f);
    qts = qtest_initf("-M pc -object memory-backend-file,id=hm,size=%d,"
                      "share=on,mem-path=%s", SHM_SIZE, f.shm_path);
    host = ivsh_map_file(f.shm_path, SHM_SIZE);
    bus = qpci_new_pc(qts, NULL);

    for (i = 0; i < 3; i++) {
        qtest_qmp_device_add(qts, "ivshmem-plain", "hp0",
                             "{'addr': %s, 'memdev': 'hm'}",
                             stringify(HP_SLOT));
        check_plugged(qts, bus, QPCI_DEVFN(HP_SLOT, 0), host, 0x1000 + i);
        qpci_unplug_acpi_device_test(qts, "hp0", HP_SLOT);
    }
    /* Unplug released the memdev */
    qtest_qmp_assert_success(qts, "{'execute': 'object-del', "
                             "'arguments': {'id': 'hm'}}");

    qpci_free_pc(bus);
    munmap(host, SHM_SIZE);
    qtest_quit(qts);
    fixture_free(&f);
}

/* The guest side of a native PCIe unplug: power the slot off. */
static void pcie_slot_power_off(QPCIDevice *port)
{
    uint8_t exp = qpci_find_capability(port, PCI_CAP_ID_EXP, 0);
    uint16_t ctl;

    g_assert(exp);
    ctl = qpci_config_readw(port, exp + PCI_EXP_SLTCTL);
    ctl = (ctl & ~PCI_EXP_SLTCTL_PIC) | PCI_EXP_SLTCTL_PWR_IND_OFF |
          PCI_EXP_SLTCTL_PCC;
    qpci_config_writew(port, exp + PCI_EXP_SLTCTL, ctl);
}

static void pcie_slot_power_on(QPCIDevice *port)
{
    uint8_t exp = qpci_find_capability(port, PCI_CAP_ID_EXP, 0);
    uint16_t ctl;

    ctl = qpci_config_readw(port, exp + PCI_EXP_SLTCTL);
    ctl = (ctl & ~(PCI_EXP_SLTCTL_PIC | PCI_EXP_SLTCTL_PCC)) |
          PCI_EXP_SLTCTL_PWR_IND_ON;
    qpci_config_writew(port, exp + PCI_EXP_SLTCTL, ctl);
}

static void test_hotplug_q35(void)
{
    Fixture f;
    QTestState *qts;
    QPCIBus *bus;
    QPCIDevice *port;
    int i;

    fixture_init(&f);
    /* Native PCIe hotplug, so that the test can play the guest's part */
    qts = qtest_initf("-M q35 -global ICH9-LPC.acpi-pci-hotplug-with-bridge-"
                      "support=off -device pcie-root-port,id=rp0,addr=05.0,"
                      "bus-reserve=1,slot=1 "
                      "-object memory-backend-file,id=hm,size=%d,share=on,"
                      "mem-path=%s", SHM_SIZE, f.shm_path);
    bus = qpci_new_pc(qts, NULL);
    port = qpci_device_find(bus, QPCI_DEVFN(5, 0));
    g_assert(port);
    /* Give the port a bus number and memory windows, as firmware would */
    qpci_config_writeb(port, PCI_PRIMARY_BUS, 0);
    qpci_config_writeb(port, PCI_SECONDARY_BUS, 1);
    qpci_config_writeb(port, PCI_SUBORDINATE_BUS, 1);

    for (i = 0; i < 3; i++) {
        QDict *rsp;

        pcie_slot_power_on(port);
        qtest_qmp_device_add(qts, "ivshmem-plain", "hp0",
                             "{'bus': 'rp0', 'memdev': 'hm'}");
        rsp = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments': "
                        "{'path': 'hp0', 'property': 'realized'}}");
        g_assert_true(qdict_get_bool(rsp, "return"));
        qobject_unref(rsp);

        qtest_qmp_device_del_send(qts, "hp0");
        pcie_slot_power_off(port);
        qtest_qmp_eventwait(qts, "DEVICE_DELETED");
    }
    /* Unplug released the memdev */
    qtest_qmp_assert_success(qts, "{'execute': 'object-del', "
                             "'arguments': {'id': 'hm'}}");

    g_free(port);
    qpci_free_pc(bus);
    qtest_quit(qts);
    fixture_free(&f);
}

static void do_migrate(const char *src_env, const char *dst_env)
{
    Fixture f;
    g_autofree char *src_mem = NULL, *dst_mem = NULL, *uri = NULL;
    g_autofree char *src_args = NULL, *dst_args = NULL;
    QTestState *src, *dst;
    IvshDev d;
    uint32_t *dst_host;

    fixture_init(&f);
    src_mem = g_build_filename(f.dir, "src", NULL);
    dst_mem = g_build_filename(f.dir, "dst", NULL);
    uri = g_strdup_printf("unix:%s/mig.sock", f.dir);
    src_args = g_strdup_printf("-M pc -object memory-backend-file,id=m0,"
                               "size=%d,share=on,mem-path=%s -device "
                               "ivshmem-plain,id=iv,memdev=m0,master=on,"
                               "addr=04.0", SHM_SIZE, src_mem);
    dst_args = g_strdup_printf("-M pc -object memory-backend-file,id=m0,"
                               "size=%d,share=on,mem-path=%s -device "
                               "ivshmem-plain,id=iv,memdev=m0,master=on,"
                               "addr=04.0 -incoming %s", SHM_SIZE, dst_mem,
                               uri);
    src = qtest_init_with_env(src_env, src_args, true);
    dst = qtest_init_with_env(dst_env, dst_args, true);

    ivsh_dev_open(&d, src, DEVFN);
    ivsh_reg_write(&d, IVSH_REG_INTR_MASK, 0x0f0f0f0f);
    ivsh_reg_write(&d, IVSH_REG_INTR_STATUS, 0x3);
    qpci_io_writel(d.dev, d.shm, 0x100, 0xfeedface);
    qpci_io_writel(d.dev, d.shm, SHM_SIZE - 4, 0xbaadf00d);
    ivsh_dev_close(&d);

    ivsh_migrate(src, dst, uri);

    /* Registers and shared memory arrived */
    dst_host = ivsh_map_file(dst_mem, SHM_SIZE);
    g_assert_cmphex(dst_host[0x100 / 4], ==, 0xfeedface);
    g_assert_cmphex(dst_host[SHM_SIZE / 4 - 1], ==, 0xbaadf00d);
    ivsh_dev_open(&d, dst, DEVFN);
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_MASK), ==, 0x0f0f0f0f);
    g_assert_cmphex(ivsh_reg_read(&d, IVSH_REG_INTR_STATUS), ==, 0x3);
    ivsh_dev_close(&d);

    munmap(dst_host, SHM_SIZE);
    qtest_quit(src);
    qtest_quit(dst);
    fixture_free(&f);
}

static void test_migrate(gconstpointer opaque)
{
    const IvshMigPair *p = opaque;

    if (ivsh_mig_pair_ready(p)) {
        do_migrate(p->src_env, p->dst_env);
    }
}

static void test_migrate_blocked(void)
{
    Fixture f;
    g_autofree char *uri = NULL, *err = NULL;
    QTestState *qts;

    fixture_init(&f);
    uri = g_strdup_printf("unix:%s/mig.sock", f.dir);
    qts = start_vm(&f, "pc", "id=peer0", NULL);
    err = ivsh_migrate_error(qts, uri);
    g_assert_nonnull(strstr(err, "'peer0' is not the master"));

    /* master=auto: a plain device is ID 0, hence master: no blocker */
    qtest_quit(qts);
    qts = start_vm(&f, "pc", "master=auto", NULL);
    qtest_qmp_assert_success(qts,
        "{'execute': 'migrate-set-capabilities', 'arguments': "
        "{'capabilities': [{'capability': 'events', 'state': true}]}}");
    qtest_quit(qts);
    fixture_free(&f);
}

static QDict *set_postcopy(QTestState *qts)
{
    return qtest_qmp(qts, "{'execute': 'migrate-set-capabilities', "
                     "'arguments': {'capabilities': [{'capability': "
                     "'postcopy-ram', 'state': true}]}}");
}

/*
 * Postcopy would discard the shared memory on the destination, under the
 * other VMs and processes using it: the destination refuses postcopy-ram
 * while a device with shared memory is there.
 */
static void test_postcopy_refused(void)
{
    Fixture f;
    QTestState *qts;
    QDict *rsp;
    const char *desc;

    fixture_init(&f);
    qts = qtest_init("-M pc -incoming defer");
    rsp = set_postcopy(qts);
    if (qdict_haskey(rsp, "error")) {
        g_test_skip("this host cannot do postcopy (userfaultfd)");
        qobject_unref(rsp);
        qtest_quit(qts);
        fixture_free(&f);
        return;
    }
    qobject_unref(rsp);
    qtest_quit(qts);

    qts = start_vm(&f, "pc", "master=on", "-incoming defer");
    rsp = set_postcopy(qts);
    g_assert_true(qdict_haskey(rsp, "error"));
    desc = qdict_get_str(qdict_get_qdict(rsp, "error"), "desc");
    g_test_message("postcopy-ram: %s", desc);
    g_assert_nonnull(strstr(desc, "ivshmem: postcopy would discard the "
                            "shared memory"));
    qobject_unref(rsp);
    qtest_quit(qts);
    fixture_free(&f);
}

typedef struct BadCase {
    const char *name;
    const char *args;
    const char *message;
} BadCase;

static const BadCase bad_cases[] = {
    { "no-memdev", "-device ivshmem-plain",
      "You must specify a 'memdev'" },
    { "memdev-in-use",
      "-object memory-backend-ram,id=m0,size=1M,share=on "
      "-device ivshmem-plain,memdev=m0 -device ivshmem-plain,memdev=m0",
      "memdev 'm0' is already in use" },
    { "size-not-power-of-2",
      "-object memory-backend-ram,id=m0,size=3M,share=on "
      "-device ivshmem-plain,memdev=m0",
      "is not a power of two" },
    { "unknown-memdev", "-device ivshmem-plain,memdev=nope",
      "nope" },
    { "bad-master",
      "-object memory-backend-ram,id=m0,size=1M,share=on "
      "-device ivshmem-plain,memdev=m0,master=maybe",
      "master" },
    { "memdev-not-backend",
      "-object iothread,id=io0 -device ivshmem-plain,memdev=io0",
      "io0" },
};

static void test_bad_startup(gconstpointer opaque)
{
    const BadCase *c = opaque;
    g_autofree char *err = NULL;
    int status;

    status = ivsh_run_qemu(NULL, "pc", c->args, &err);
    g_test_message("%s: exit %d: %s", c->name, status, err);
    g_assert_cmpint(status, ==, 1);
    g_assert_nonnull(strstr(err, c->message));
    /* One clear line, no abort or assertion message */
    g_assert_null(strstr(err, "Assertion"));
    g_assert_null(strstr(err, "abort"));
}

static void test_share_off_warns(void)
{
    g_autofree char *err = NULL;
    int status;

    status = ivsh_run_qemu(NULL, "pc",
                           "-object memory-backend-ram,id=m0,size=1M "
                           "-device ivshmem-plain,memdev=m0", &err);
    g_assert_cmpint(status, ==, 0);
    g_assert_nonnull(strstr(err, "memdev 'm0' has share=off"));
}

static void check_device_add_fails(QTestState *qts, const char *args,
                                   const char *message)
{
    QDict *rsp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments': %p}",
                           qobject_from_json(args, &error_abort));
    const char *desc;

    g_assert(qdict_haskey(rsp, "error"));
    desc = qdict_get_str(qdict_get_qdict(rsp, "error"), "desc");
    g_test_message("device_add %s: %s", args, desc);
    g_assert_nonnull(strstr(desc, message));
    qobject_unref(rsp);
}

static void test_bad_hotplug(void)
{
    QTestState *qts;
    QDict *rsp;

    qts = qtest_init("-M pc -object memory-backend-ram,id=m1,size=1M,share=on"
                     " -object memory-backend-ram,id=m3,size=3M,share=on"
                     " -device ivshmem-plain,memdev=m1,addr=04.0");
    check_device_add_fails(qts, "{'driver': 'ivshmem-plain'}",
                           "You must specify a 'memdev'");
    check_device_add_fails(qts, "{'driver': 'ivshmem-plain', 'memdev': 'm1'}",
                           "memdev 'm1' is already in use");
    check_device_add_fails(qts, "{'driver': 'ivshmem-plain', 'memdev': 'm3'}",
                           "is not a power of two");
    check_device_add_fails(qts, "{'driver': 'ivshmem-plain', 'memdev': 'm1',"
                           " 'master': 'sometimes'}", "master");

    /* The VM is still alive, and m3 is still usable by others */
    rsp = qtest_qmp_assert_success_ref(qts, "{'execute': 'query-status'}");
    qobject_unref(rsp);
    qtest_qmp_assert_success(qts, "{'execute': 'object-del', "
                             "'arguments': {'id': 'm3'}}");
    qtest_quit(qts);
}

static void test_introspect(void)
{
    QTestState *qts = qtest_init("-M pc");
    QDict *rsp;
    QList *props;
    QListEntry *e;
    bool memdev = false, master = false;

    rsp = qtest_qmp(qts, "{'execute': 'device-list-properties', "
                    "'arguments': {'typename': 'ivshmem-plain'}}");
    props = qdict_get_qlist(rsp, "return");
    QLIST_FOREACH_ENTRY(props, e) {
        QDict *p = qobject_to(QDict, qlist_entry_obj(e));
        const char *name = qdict_get_str(p, "name");

        memdev |= !strcmp(name, "memdev");
        master |= !strcmp(name, "master");
    }
    g_assert_true(memdev && master);
    qobject_unref(rsp);
    qtest_quit(qts);
}

int main(int argc, char **argv)
{
    size_t i;

    g_test_init(&argc, &argv, NULL);

    qtest_add_func("/ivsh/plain/ids", test_ids);
    qtest_add_func("/ivsh/plain/registers", test_registers);
    qtest_add_func("/ivsh/plain/access-sizes", test_access_sizes);
    qtest_add_func("/ivsh/plain/shared-memory", test_shared_memory);
    qtest_add_func("/ivsh/plain/two-vms", test_two_vms);
    qtest_add_func("/ivsh/plain/reset", test_reset);
    qtest_add_func("/ivsh/plain/hotplug/pc", test_hotplug_pc);
    qtest_add_func("/ivsh/plain/hotplug/q35", test_hotplug_q35);
    for (i = 0; i < ARRAY_SIZE(ivsh_mig_pairs); i++) {
        g_autofree char *path = g_strdup_printf("/ivsh/plain/migrate/%s",
                                                ivsh_mig_pairs[i].name);

        qtest_add_data_func(path, &ivsh_mig_pairs[i], test_migrate);
    }
    qtest_add_func("/ivsh/plain/migrate/blocked", test_migrate_blocked);
    qtest_add_func("/ivsh/plain/migrate/postcopy-refused",
                   test_postcopy_refused);
    for (i = 0; i < ARRAY_SIZE(bad_cases); i++) {
        g_autofree char *path = g_strdup_printf("/ivsh/plain/bad/%s",
                                                bad_cases[i].name);

        qtest_add_data_func(path, &bad_cases[i], test_bad_startup);
    }
    qtest_add_func("/ivsh/plain/bad/share-off-warns", test_share_off_warns);
    qtest_add_func("/ivsh/plain/bad/hotplug", test_bad_hotplug);
    qtest_add_func("/ivsh/plain/introspect", test_introspect);

    return g_test_run();
}
