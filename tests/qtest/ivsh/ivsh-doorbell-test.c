/*
 * qtests for ivshmem-doorbell
 *
 * An in-test ivshmem server (ivsh-tserver.c) serves one to three VMs and
 * the test process itself, as a "host peer".  Interrupts are observed
 * the libqos way: each MSI-X entry points at a word of guest RAM, and
 * the message data appears there when the vector fires.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <netinet/in.h>
#include "qobject/qdict.h"
#include "hw/pci/pci_regs.h"
#include "hw/misc/ivsh-regs.h"
#include "hw/misc/ivsh-proto.h"
#include "ivsh-qtest.h"
#include "ivsh-tserver.h"

#define SHM_SIZE IVSH_ENV_SHM_SIZE

static void test_ids(void)
{
    IvshEnv e;
    IvshVm *vm0, *vm1;
    uint8_t cap;

    ivsh_env_init(&e, SHM_SIZE, 4);
    vm0 = ivsh_vm_start(&e, 4, NULL, NULL);
    vm1 = ivsh_vm_start(&e, 4, NULL, NULL);

    g_assert_cmpint(vm0->id, ==, 0);
    g_assert_cmpint(vm1->id, ==, 1);
    g_assert_cmphex(qpci_config_readb(vm0->d.dev, PCI_REVISION_ID), ==,
                    IVSH_PCI_REVISION);
    g_assert_cmphex(qpci_config_readw(vm0->d.dev, PCI_CLASS_DEVICE), ==,
                    IVSH_PCI_CLASS);
    g_assert_cmphex(qpci_config_readb(vm0->d.dev, PCI_INTERRUPT_PIN), ==, 0);
    cap = qpci_find_capability(vm0->d.dev, PCI_CAP_ID_MSIX, 0);
    g_assert_cmphex(cap, !=, 0);
    g_assert_cmpuint(qpci_msix_table_size(vm0->d.dev), ==, 4);
    g_assert_cmphex(qpci_config_readl(vm0->d.dev, cap + PCI_MSIX_TABLE) &
                    PCI_MSIX_FLAGS_BIRMASK, ==, IVSH_BAR_MSIX);
    g_assert_cmpuint(vm0->d.regs_size, ==, IVSH_REGS_SIZE);
    g_assert_cmpuint(vm0->d.shm_size, ==, SHM_SIZE);

    /* The server's memory is BAR2 of both */
    qpci_io_writel(vm0->d.dev, vm0->d.shm, 64, 0x0badcafe);
    g_assert_cmphex(qpci_io_readl(vm1->d.dev, vm1->d.shm, 64), ==,
                    0x0badcafe);
    g_assert_cmphex(((uint32_t *)ivsh_tserver_shm(e.ts))[16], ==, 0x0badcafe);

    ivsh_vm_free(vm0);
    ivsh_vm_free(vm1);
    ivsh_env_free(&e);
}

static void do_host_vm(const char *opts)
{
    IvshEnv e;
    IvshVm *vm;
    int host;
    unsigned v;

    ivsh_env_init(&e, SHM_SIZE, 4);
    vm = ivsh_vm_start(&e, 4, opts, NULL);
    host = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, host));

    for (v = 0; v < 4; v++) {
        /* host -> VM */
        ivsh_tserver_ring(e.ts, vm->id, v);
        g_assert_true(ivsh_vm_wait_msi(vm, v));
        /* VM -> host */
        ivsh_vm_ring(vm, host, v);
        g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, host, v, IVSH_WAIT_MS),
                         ==, 1);
    }
    /* A vector or peer that does not exist is ignored */
    ivsh_vm_ring(vm, host, 4);
    ivsh_vm_ring(vm, host + 7, 0);
    g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, host, 0, 0), ==, 0);

    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

static void test_host_vm(void)
{
    do_host_vm(NULL);
}

static void test_host_vm_no_ioeventfd(void)
{
    do_host_vm("ioeventfd=off");
}

/* Vector numbers above 255 reach the right vector (QEMU's own: & 0xff) */
static void test_vector_16bit(void)
{
    IvshEnv e;
    IvshVm *vm;
    int host;

    ivsh_env_init(&e, SHM_SIZE, 300);
    vm = ivsh_vm_start(&e, 300, "ioeventfd=off", NULL);
    host = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, host));

    ivsh_vm_ring(vm, host, 257);
    g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, host, 257, IVSH_WAIT_MS),
                     ==, 1);
    g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, host, 1, 0), ==, 0);
    ivsh_tserver_ring(e.ts, vm->id, 299);
    g_assert_true(ivsh_vm_wait_msi(vm, 299));

    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

typedef struct Ring {
    IvshVm *from, *to;
    unsigned v;
} Ring;

/* Ring until @to fires: @from may not know @to yet (it may have just joined) */
static bool ring_seen(void *opaque)
{
    Ring *r = opaque;

    ivsh_vm_ring(r->from, r->to->id, r->v);
    if (ivsh_vm_msi_seen(r->to, r->v)) {
        qtest_writel(r->to->qts, IVSH_MSI_ADDR(r->v), 0);
        return true;
    }
    return false;
}

static void do_vms(unsigned n, unsigned vectors, const char *opts)
{
    IvshEnv e;
    IvshVm *vm[3];
    unsigned i, j, v;

    ivsh_env_init(&e, SHM_SIZE, vectors);
    for (i = 0; i < n; i++) {
        vm[i] = ivsh_vm_start(&e, vectors, opts, NULL);
    }
    for (i = 0; i < n; i++) {
        for (j = 0; j < n; j++) {
            if (i == j) {
                continue;
            }
            for (v = 0; v < vectors; v += MAX(vectors - 1, 1)) {
                Ring r = { vm[i], vm[j], v };

                g_assert_true(ivsh_wait_until(ring_seen, &r, IVSH_WAIT_MS));
            }
        }
    }
    for (i = 0; i < n; i++) {
        ivsh_vm_free(vm[i]);
    }
    ivsh_env_free(&e);
}

static void test_two_vms(void)
{
    do_vms(2, 4, NULL);
}

static void test_three_vms(void)
{
    do_vms(3, 3, "ioeventfd=off");
}

static void test_masked_pending(void)
{
    IvshEnv e;
    IvshVm *vm;
    uint8_t cap;
    uint16_t flags;

    ivsh_env_init(&e, SHM_SIZE, 2);
    vm = ivsh_vm_start(&e, 2, NULL, NULL);

    /* Masked vector: pending bit, no message, delivered on unmask */
    ivsh_msix_entry(vm->d.dev, 1, IVSH_MSI_ADDR(1), IVSH_MSI_DATA(1), true);
    ivsh_tserver_ring(e.ts, vm->id, 1);
    g_assert_true(ivsh_vm_wait_pending(vm, 1));
    g_assert_false(ivsh_vm_msi_seen(vm, 1));
    ivsh_msix_entry(vm->d.dev, 1, IVSH_MSI_ADDR(1), IVSH_MSI_DATA(1),
                    false);
    g_assert_true(ivsh_vm_wait_msi(vm, 1));
    g_assert_false(qpci_msix_pending(vm->d.dev, 1));

    /* MSI-X disabled: the doorbell is kept and fires on enable */
    cap = qpci_find_capability(vm->d.dev, PCI_CAP_ID_MSIX, 0);
    flags = qpci_config_readw(vm->d.dev, cap + PCI_MSIX_FLAGS);
    qpci_config_writew(vm->d.dev, cap + PCI_MSIX_FLAGS,
                       flags & ~PCI_MSIX_FLAGS_ENABLE);
    ivsh_tserver_ring(e.ts, vm->id, 0);
    /* Wait until QEMU took it: it shows as pending */
    g_assert_true(ivsh_vm_wait_pending(vm, 0));
    g_assert_false(ivsh_vm_msi_seen(vm, 0));
    qpci_config_writew(vm->d.dev, cap + PCI_MSIX_FLAGS, flags);
    g_assert_true(ivsh_vm_wait_msi(vm, 0));

    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

static void test_peers_come_and_go(void)
{
    IvshEnv e;
    IvshVm *vm;
    unsigned base;
    int h1, h2, h3;

    ivsh_env_init(&e, SHM_SIZE, 4);
    vm = ivsh_vm_start(&e, 4, NULL, NULL);
    h1 = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, h1));
    base = ivsh_count_fds(vm->qts);

    h2 = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, h2));
    g_assert_cmpuint(ivsh_count_fds(vm->qts), ==, base + 4);

    /* h1 leaves: its eventfds are released, ringing it does nothing */
    ivsh_tserver_remove_peer(e.ts, h1);
    h3 = ivsh_tserver_add_host_peer(e.ts);
    g_assert_cmpint(h3, ==, h1);            /* the ID is reused */
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, h3));
    g_assert_cmpuint(ivsh_count_fds(vm->qts), ==, base + 4);

    ivsh_tserver_remove_peer(e.ts, h2);
    ivsh_tserver_remove_peer(e.ts, h3);
    h1 = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, h1));
    g_assert_cmpuint(ivsh_count_fds(vm->qts), ==, base);

    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

#define HP_SLOT 6

static void test_hotunplug_frees_all(void)
{
    IvshEnv e;
    QTestState *qts;
    IvshVm vm = { 0 };
    unsigned base;
    int h, i;

    ivsh_env_init(&e, SHM_SIZE, 8);
    qts = qtest_init("-M pc");
    base = ivsh_count_fds(qts);

    for (i = 0; i < 2; i++) {
        qtest_qmp_assert_success(qts, "{'execute': 'chardev-add', "
            "'arguments': {'id': 'srv', 'backend': {'type': 'socket', "
            "'data': {'server': false, 'addr': {'type': 'unix', "
            "'data': {'path': %s}}}}}}", e.sock);
        qtest_qmp_device_add(qts, "ivshmem-doorbell", "db0",
                             "{'chardev': 'srv', 'vectors': 8, "
                             "'addr': %s}", stringify(HP_SLOT));
        vm.qts = qts;
        vm.vectors = 8;
        ivsh_dev_open(&vm.d, qts, QPCI_DEVFN(HP_SLOT, 0));
        vm.id = ivsh_reg_read(&vm.d, IVSH_REG_IV_POSITION);

        /* Peers come and go while the device is there */
        h = ivsh_tserver_add_host_peer(e.ts);
        g_assert_true(ivsh_vm_sync_host_peer(&e, &vm, h));
        ivsh_tserver_remove_peer(e.ts, h);
        h = ivsh_tserver_add_host_peer(e.ts);
        g_assert_true(ivsh_vm_sync_host_peer(&e, &vm, h));
        ivsh_dev_close(&vm.d);

        qpci_unplug_acpi_device_test(qts, "db0", HP_SLOT);
        qtest_qmp_assert_success(qts, "{'execute': 'chardev-remove', "
                                 "'arguments': {'id': 'srv'}}");
        ivsh_tserver_remove_peer(e.ts, h);
        /*
         * Every fd the device held is closed, exactly once.  The shared
         * memory goes with the last reference to the device, which QEMU
         * drops after an RCU grace period: nothing to wait on but time.
         */
        ivsh_wait_fds(qts, base);
    }
    qtest_quit(qts);
    ivsh_env_free(&e);
}

static void test_two_devices(void)
{
    IvshEnv e1, e2;
    QTestState *qts;
    IvshVm a = { 0 }, b = { 0 };
    int h1, h2;

    ivsh_env_init(&e1, SHM_SIZE, 2);
    ivsh_env_init(&e2, SHM_SIZE, 2);
    qts = qtest_initf("-M pc -chardev socket,id=s1,path=%s "
                      "-chardev socket,id=s2,path=%s "
                      "-device ivshmem-doorbell,chardev=s1,vectors=2,addr=04.0"
                      " -device ivshmem-doorbell,chardev=s2,vectors=2,"
                      "addr=05.0", e1.sock, e2.sock);
    ivsh_vm_open(&a, qts, IVSH_DEVFN, 2);
    b.qts = qts;
    b.vectors = 2;
    ivsh_dev_open_on(&b.d, &a.d, QPCI_DEVFN(5, 0));
    h1 = ivsh_tserver_add_host_peer(e1.ts);
    h2 = ivsh_tserver_add_host_peer(e2.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e1, &a, h1));
    g_assert_true(ivsh_vm_sync_host_peer(&e2, &b, h2));

    /* Each device talks to its own server, with its own memory */
    qpci_io_writel(a.d.dev, a.d.shm, 0, 0xaaaa);
    qpci_io_writel(b.d.dev, b.d.shm, 0, 0xbbbb);
    g_assert_cmphex(((uint32_t *)ivsh_tserver_shm(e1.ts))[0], ==, 0xaaaa);
    g_assert_cmphex(((uint32_t *)ivsh_tserver_shm(e2.ts))[0], ==, 0xbbbb);
    ivsh_tserver_ring(e1.ts, a.id, 1);
    g_assert_true(ivsh_vm_wait_msi(&a, 1));

    ivsh_dev_close(&b.d);
    ivsh_dev_close(&a.d);
    qtest_quit(qts);
    ivsh_env_free(&e1);
    ivsh_env_free(&e2);
}

static void test_server_gone(void)
{
    IvshEnv e;
    IvshVm *vm;
    int host;

    ivsh_env_init(&e, SHM_SIZE, 2);
    vm = ivsh_vm_start(&e, 2, NULL, NULL);
    host = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, host));

    /* The server drops the VM's connection; what it had stays usable */
    ivsh_tserver_remove_peer(e.ts, vm->id);
    qpci_io_writel(vm->d.dev, vm->d.shm, 8, 0x600d);
    g_assert_cmphex(((uint32_t *)ivsh_tserver_shm(e.ts))[2], ==, 0x600d);
    ivsh_vm_ring(vm, host, 1);
    g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, host, 1, IVSH_WAIT_MS),
                     ==, 1);

    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

/*
 * Reset clears IntrMask and IntrStatus and forgets doorbells the guest has
 * not taken yet: a masked, pending vector does not fire after reset.
 */
static void test_reset(void)
{
    IvshEnv e;
    IvshVm *vm;
    int host;

    ivsh_env_init(&e, SHM_SIZE, 2);
    vm = ivsh_vm_start(&e, 2, NULL, NULL);
    host = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, host));
    ivsh_reg_write(&vm->d, IVSH_REG_INTR_MASK, 0xff);
    ivsh_reg_write(&vm->d, IVSH_REG_INTR_STATUS, 0x5);
    ivsh_msix_entry(vm->d.dev, 1, IVSH_MSI_ADDR(1), IVSH_MSI_DATA(1), true);
    ivsh_tserver_ring(e.ts, vm->id, 1);
    g_assert_true(ivsh_vm_wait_pending(vm, 1));
    ivsh_dev_close(&vm->d);
    qtest_system_reset(vm->qts);

    /* Unmasks both vectors: a pending doorbell left over would fire */
    ivsh_vm_open(vm, vm->qts, IVSH_DEVFN, 2);
    g_assert_cmphex(ivsh_reg_read(&vm->d, IVSH_REG_INTR_MASK), ==, 0);
    g_assert_cmphex(ivsh_reg_read(&vm->d, IVSH_REG_INTR_STATUS), ==, 0);
    g_assert_cmpint(vm->id, ==, 0);     /* IVPosition survives reset */
    ivsh_tserver_ring(e.ts, vm->id, 0);
    g_assert_true(ivsh_vm_wait_msi(vm, 0));
    g_assert_false(ivsh_vm_msi_seen(vm, 1));
    g_assert_false(qpci_msix_pending(vm->d.dev, 1));
    /* Doorbells work both ways after reset */
    ivsh_tserver_ring(e.ts, vm->id, 1);
    g_assert_true(ivsh_vm_wait_msi(vm, 1));
    ivsh_vm_ring(vm, host, 1);
    g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, host, 1, IVSH_WAIT_MS), ==,
                     1);

    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

typedef struct Probe {
    IvshEnv *e;
    int id;
    unsigned sleep_ms;
} Probe;

/*
 * A new host peer gets ID @id: the peer that had it has left the server.
 * Each probe sends messages to a phantom, which nobody reads: probe with
 * a growing interval, so that they never fill its socket.
 */
static bool id_free(void *opaque)
{
    Probe *p = opaque;
    int id = ivsh_tserver_add_host_peer(p->e->ts);

    ivsh_tserver_remove_peer(p->e->ts, id);
    if (id == p->id) {
        return true;
    }
    /* the server notices the hang-up by itself: nothing to wait on */
    g_usleep(p->sleep_ms * 1000);
    p->sleep_ms = MIN(p->sleep_ms * 2, 500);
    return false;
}

/*
 * A device that fails to realize, or is unplugged, hangs up: the server
 * sees its peer leave, and the other peers do not keep ringing a phantom.
 * @driver: "ivshmem-doorbell" or the legacy "ivshmem".
 */
static void test_no_phantom_peer(gconstpointer opaque)
{
    const char *driver = opaque;
    bool legacy = !strcmp(driver, "ivshmem");
    Probe p;
    IvshEnv e;
    QTestState *qts;
    QDict *rsp;
    int h0;

    ivsh_env_init(&e, SHM_SIZE, 1);
    p.e = &e;
    qts = qtest_init("-M pc");
    h0 = ivsh_tserver_add_host_peer(e.ts);
    g_assert_cmpint(h0, ==, 0);

    /* Realize fails: the server gave ID 1, not the master's 0 */
    qtest_qmp_assert_success(qts, "{'execute': 'chardev-add', "
        "'arguments': {'id': 'srv', 'backend': {'type': 'socket', "
        "'data': {'server': false, 'addr': {'type': 'unix', "
        "'data': {'path': %s}}}}}}", e.sock);
    rsp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments': "
                    "{'driver': %s, 'chardev': 'srv', %s: %s, "
                    "'addr': '06.0'}}", driver, legacy ? "role" : "master",
                    legacy ? "master" : "on");
    g_assert_true(qdict_haskey(rsp, "error"));
    qobject_unref(rsp);
    p.id = 1;
    p.sleep_ms = 1;
    g_assert_true(ivsh_wait_until(id_free, &p, IVSH_WAIT_MS));
    qtest_qmp_assert_success(qts, "{'execute': 'chardev-remove', "
                             "'arguments': {'id': 'srv'}}");

    /* Plugged, then unplugged: the chardev is not removed yet */
    qtest_qmp_assert_success(qts, "{'execute': 'chardev-add', "
        "'arguments': {'id': 'srv', 'backend': {'type': 'socket', "
        "'data': {'server': false, 'addr': {'type': 'unix', "
        "'data': {'path': %s}}}}}}", e.sock);
    if (legacy) {
        qtest_qmp_device_add(qts, driver, "dev", "{'chardev': 'srv', "
                             "'size': '1M', 'addr': '06.0'}");
    } else {
        qtest_qmp_device_add(qts, driver, "dev", "{'chardev': 'srv', "
                             "'addr': '06.0'}");
    }
    g_assert_true(ivsh_tserver_wait_peers(e.ts, 2));
    p.id = ivsh_tserver_peer_id(e.ts, 1);
    p.sleep_ms = 1;
    qpci_unplug_acpi_device_test(qts, "dev", 6);
    g_assert_true(ivsh_wait_until(id_free, &p, IVSH_WAIT_MS));
    qtest_qmp_assert_success(qts, "{'execute': 'chardev-remove', "
                             "'arguments': {'id': 'srv'}}");

    qtest_quit(qts);
    ivsh_env_free(&e);
}

static void do_migrate(const char *src_env, const char *dst_env)
{
    IvshEnv e1, e2;
    g_autofree char *uri = NULL, *args = NULL;
    QTestState *src, *dst;
    IvshVm vm = { 0 };

    ivsh_env_init(&e1, SHM_SIZE, 2);
    ivsh_env_init(&e2, SHM_SIZE, 2);
    uri = g_strdup_printf("unix:%s/mig.sock", e1.dir);
    args = g_strdup_printf("-M pc -chardev socket,id=srv,path=%s -device "
                           "ivshmem-doorbell,chardev=srv,vectors=2,master=on,"
                           "addr=04.0", e1.sock);
    src = qtest_init_with_env(src_env, args, true);
    g_free(args);
    args = g_strdup_printf("-M pc -chardev socket,id=srv,path=%s -device "
                           "ivshmem-doorbell,chardev=srv,vectors=2,master=on,"
                           "addr=04.0 -incoming %s", e2.sock, uri);
    dst = qtest_init_with_env(dst_env, args, true);

    ivsh_vm_open(&vm, src, IVSH_DEVFN, 2);
    ivsh_reg_write(&vm.d, IVSH_REG_INTR_MASK, 0x5);
    qpci_io_writel(vm.d.dev, vm.d.shm, 0x40, 0x12345678);
    ivsh_dev_close(&vm.d);

    ivsh_migrate(src, dst, uri);

    g_assert_cmphex(((uint32_t *)ivsh_tserver_shm(e2.ts))[0x10], ==,
                    0x12345678);
    ivsh_dev_open(&vm.d, dst, IVSH_DEVFN);
    g_assert_cmphex(ivsh_reg_read(&vm.d, IVSH_REG_INTR_MASK), ==, 0x5);
    /* MSI-X state came along: the vectors still fire */
    vm.qts = dst;
    qpci_msix_enable(vm.d.dev);
    ivsh_tserver_ring(e2.ts, 0, 1);
    g_assert_true(ivsh_vm_wait_msi(&vm, 1));
    ivsh_dev_close(&vm.d);

    qtest_quit(src);
    qtest_quit(dst);
    ivsh_env_free(&e1);
    ivsh_env_free(&e2);
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
    IvshEnv e;
    IvshVm *vm0, *vm1;
    g_autofree char *uri = NULL, *err = NULL;

    ivsh_env_init(&e, SHM_SIZE, 1);
    uri = g_strdup_printf("unix:%s/mig.sock", e.dir);
    vm0 = ivsh_vm_start(&e, 1, "master=auto", NULL);
    vm1 = ivsh_vm_start(&e, 1, "master=auto,id=second", NULL);
    g_assert_cmpint(vm1->id, ==, 1);
    err = ivsh_migrate_error(vm1->qts, uri);
    g_assert_nonnull(strstr(err, "'second' is not the master"));
    ivsh_vm_free(vm1);
    ivsh_vm_free(vm0);
    ivsh_env_free(&e);
}

/*
 * 16 peers x 64 vectors, ioeventfd=on: every doorbell arrives.  (Under
 * KVM that is more ioeventfds than the device's budget, 512, and the ones
 * beyond go through QEMU; qtest has no ioeventfds, the KVM suite checks
 * the budget.)
 */
static void test_many_peers(void)
{
    IvshEnv e;
    IvshVm *vm;
    int h[16], i;

    ivsh_env_init(&e, SHM_SIZE, 64);
    vm = ivsh_vm_start(&e, 64, "ioeventfd=on", NULL);
    for (i = 0; i < 16; i++) {
        h[i] = ivsh_tserver_add_host_peer(e.ts);
    }
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, h[15]));
    for (i = 0; i < 16; i += 5) {
        ivsh_vm_ring(vm, h[i], 0);
        ivsh_vm_ring(vm, h[i], 63);
        g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, h[i], 0, IVSH_WAIT_MS),
                         ==, 1);
        g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, h[i], 63, IVSH_WAIT_MS),
                         ==, 1);
    }
    ivsh_tserver_ring(e.ts, vm->id, 63);
    g_assert_true(ivsh_vm_wait_msi(vm, 63));
    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

/*
 * -chardev socket,fd=N: a socket a management layer connected and passed
 * to QEMU.  A UNIX socket serves like path= (QEMU 10.0's device takes it
 * too); a TCP socket cannot carry the server's fds and is refused.
 */
static int connect_unix(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpuint(strlen(path), <, sizeof(sun.sun_path));
    strcpy(sun.sun_path, path);
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), ==, 0);
    return fd;
}

static void test_chardev_fd(void)
{
    IvshEnv e;
    IvshVm *vm = g_new0(IvshVm, 1);
    g_autofree char *args = NULL;
    int fd, host;

    ivsh_env_init(&e, SHM_SIZE, 2);
    fd = connect_unix(e.sock);
    args = g_strdup_printf("-M pc -chardev socket,id=srv,fd=%d -device "
                           "ivshmem-doorbell,chardev=srv,vectors=2,"
                           "addr=04.0", fd);
    ivsh_vm_open(vm, qtest_init(args), IVSH_DEVFN, 2);
    close(fd);
    g_assert_true(ivsh_tserver_wait_peers(e.ts, 1));
    g_assert_cmpint(vm->id, ==, ivsh_tserver_peer_id(e.ts, 0));

    host = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, host));
    ivsh_tserver_ring(e.ts, vm->id, 1);
    g_assert_true(ivsh_vm_wait_msi(vm, 1));
    ivsh_vm_ring(vm, host, 1);
    g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, host, 1, IVSH_WAIT_MS),
                     ==, 1);
    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

static void test_chardev_fd_tcp(void)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    socklen_t len = sizeof(sin);
    g_autofree char *args = NULL;
    QTestState *qts;
    QDict *rsp;
    int lfd, fd;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    g_assert_cmpint(lfd, >=, 0);
    g_assert_cmpint(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), ==, 0);
    g_assert_cmpint(listen(lfd, 1), ==, 0);
    g_assert_cmpint(getsockname(lfd, (struct sockaddr *)&sin, &len), ==, 0);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), ==, 0);

    args = g_strdup_printf("-M pc -chardev socket,id=tcp,fd=%d", fd);
    qts = qtest_init(args);
    close(fd);
    rsp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments': {"
                    "'driver': 'ivshmem-doorbell', 'chardev': 'tcp'}}");
    g_assert_true(qdict_haskey(rsp, "error"));
    g_assert_nonnull(strstr(qdict_get_str(qdict_get_qdict(rsp, "error"),
                                          "desc"),
                            "chardev 'tcp' cannot pass file descriptors"));
    qobject_unref(rsp);
    /* QEMU is still up */
    qtest_qmp_assert_success(qts, "{'execute': 'query-status'}");
    qtest_quit(qts);
    close(lfd);
}

int main(int argc, char **argv)
{
    size_t i;

    g_test_init(&argc, &argv, NULL);

    qtest_add_func("/ivsh/doorbell/ids", test_ids);
    qtest_add_func("/ivsh/doorbell/host-vm", test_host_vm);
    qtest_add_func("/ivsh/doorbell/host-vm-no-ioeventfd",
                   test_host_vm_no_ioeventfd);
    qtest_add_func("/ivsh/doorbell/vector-16bit", test_vector_16bit);
    qtest_add_func("/ivsh/doorbell/two-vms", test_two_vms);
    qtest_add_func("/ivsh/doorbell/three-vms", test_three_vms);
    qtest_add_func("/ivsh/doorbell/masked-pending", test_masked_pending);
    qtest_add_func("/ivsh/doorbell/peers-come-and-go",
                   test_peers_come_and_go);
    qtest_add_func("/ivsh/doorbell/hotunplug-frees-all",
                   test_hotunplug_frees_all);
    qtest_add_func("/ivsh/doorbell/two-devices", test_two_devices);
    qtest_add_func("/ivsh/doorbell/server-gone", test_server_gone);
    qtest_add_func("/ivsh/doorbell/reset", test_reset);
    qtest_add_data_func("/ivsh/doorbell/no-phantom-peer", "ivshmem-doorbell",
                        test_no_phantom_peer);
    qtest_add_data_func("/ivsh/legacy/no-phantom-peer", "ivshmem",
                        test_no_phantom_peer);
    for (i = 0; i < ARRAY_SIZE(ivsh_mig_pairs); i++) {
        g_autofree char *path = g_strdup_printf("/ivsh/doorbell/migrate/%s",
                                                ivsh_mig_pairs[i].name);

        qtest_add_data_func(path, &ivsh_mig_pairs[i], test_migrate);
    }
    qtest_add_func("/ivsh/doorbell/migrate/blocked", test_migrate_blocked);
    qtest_add_func("/ivsh/doorbell/16-peers-64-vectors", test_many_peers);
    qtest_add_func("/ivsh/doorbell/chardev-fd", test_chardev_fd);
    qtest_add_func("/ivsh/doorbell/chardev-fd-tcp", test_chardev_fd_tcp);

    return g_test_run();
}
