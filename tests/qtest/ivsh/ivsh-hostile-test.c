/*
 * qtests for ivshmem-doorbell: a hostile or broken ivshmem server
 *
 * Set-up cases script the server's first messages: realize must fail
 * with one clear error, at start-up and through device_add.  Later cases
 * send a bad message to a running VM: it must be dropped (or, for
 * garbage, reading stops) with an error report, no fd leaked, and the VM
 * keeps working.  The cases are in ivsh-hostile-cases.c; how QEMU's own
 * device fares with them is a report-only survey, ivsh-hostile-survey.c.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qobject/qdict.h"
#include "hw/misc/ivsh-regs.h"
#include "hw/misc/ivsh-proto.h"
#include "ivsh-hostile-cases.h"

#define SHM_SIZE IVSH_ENV_SHM_SIZE

static void test_bad_config(void)
{
    g_autofree char *err = NULL;

    g_assert_cmpint(ivsh_run_qemu(NULL, "pc", "-device ivshmem-doorbell",
                                  &err), ==, 1);
    g_assert_nonnull(strstr(err, "You must specify a 'chardev'"));
    g_free(err);
    g_assert_cmpint(ivsh_run_qemu(NULL, "pc", "-chardev null,id=n -device "
                                  "ivshmem-doorbell,chardev=n", &err), ==, 1);
    g_assert_nonnull(strstr(err, "chardev 'n' cannot pass file descriptors"));
    g_free(err);
    g_assert_cmpint(ivsh_run_qemu(NULL, "pc", "-chardev socket,id=l,path=/"
                                  "nonexistent/x,server=on,wait=off -device "
                                  "ivshmem-doorbell,chardev=l", &err), ==, 1);
    /* The chardev's own error, before the device is created */
    g_assert_nonnull(strstr(err, "Failed to bind socket to /nonexistent/x"));
    g_free(err);
    g_assert_cmpint(ivsh_run_qemu(NULL, "pc", "-chardev null,id=n -device "
                                  "ivshmem-doorbell,chardev=n,vectors=0",
                                  &err), ==, 1);
    g_assert_nonnull(strstr(err, "vectors=0 is out of range"));
    g_free(err);
    g_assert_cmpint(ivsh_run_qemu(NULL, "pc", "-chardev null,id=n -device "
                                  "ivshmem-doorbell,chardev=n,vectors=5000",
                                  &err), ==, 1);
    g_assert_nonnull(strstr(err, "vectors=5000 is out of range"));
}

static void test_not_connected(void)
{
    g_autofree char *dir = ivsh_tmpdir_new();
    g_autofree char *args = g_strdup_printf("-chardev socket,id=l,path=%s/s,"
                                            "server=on,wait=off -device "
                                            "ivshmem-doorbell,chardev=l",
                                            dir);
    g_autofree char *err = NULL;

    g_assert_cmpint(ivsh_run_qemu(NULL, "pc", args, &err), ==, 1);
    g_assert_nonnull(strstr(err, "chardev 'l' is not connected"));
    ivsh_tmpdir_free(g_steal_pointer(&dir));
}

static void test_hostile_setup(gconstpointer opaque)
{
    const IvshSetupCase *c = opaque;
    g_autofree char *args = NULL, *err = NULL;
    IvshEnv e;
    int status;

    ivsh_env_init(&e, SHM_SIZE, 2);
    ivsh_tserver_script(e.ts, c->script, c->opaque);
    args = ivsh_hostile_device_args(&e, c->opts);
    status = ivsh_run_qemu(NULL, "pc", args, &err);
    g_test_message("%s: exit %d: %s", c->name, status, err);
    g_assert_cmpint(status, ==, 1);
    g_assert_nonnull(strstr(err, c->message));
    ivsh_env_free(&e);
}

/* The same, on a running VM through device_add: the VM keeps running */
static void test_hostile_setup_hotplug(void)
{
    IvshEnv e;
    QTestState *qts;
    QDict *rsp;
    unsigned i, base;

    ivsh_env_init(&e, SHM_SIZE, 2);
    qts = qtest_init("-M pc");
    base = ivsh_count_fds(qts);
    for (i = 0; i < ivsh_nr_setup_cases; i++) {
        const IvshSetupCase *c = &ivsh_setup_cases[i];
        const char *desc;

        ivsh_tserver_script(e.ts, c->script, c->opaque);
        qtest_qmp_assert_success(qts, "{'execute': 'chardev-add', "
            "'arguments': {'id': 'srv', 'backend': {'type': 'socket', "
            "'data': {'server': false, 'addr': {'type': 'unix', "
            "'data': {'path': %s}}}}}}", e.sock);
        rsp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments': "
                        "{'driver': 'ivshmem-doorbell', 'chardev': 'srv', "
                        "'x-setup-timeout': 400, "
                        "'master': %s}}",
                        c->master ? "on" : "off");
        g_assert(qdict_haskey(rsp, "error"));
        g_test_message("%s: %s", c->name,
                       qdict_get_str(qdict_get_qdict(rsp, "error"), "desc"));
        desc = qdict_get_str(qdict_get_qdict(rsp, "error"), "desc");
        /*
         * When the server hangs up first, QEMU may notice before
         * device_add: that is a clear error too.
         */
        g_assert_true(strstr(desc, c->message) ||
                      (c->hangs_up &&
                       strstr(desc, "is not connected to an ivshmem server")));
        qobject_unref(rsp);
        qtest_qmp_assert_success(qts, "{'execute': 'chardev-remove', "
                                 "'arguments': {'id': 'srv'}}");
    }
    /* Nothing leaked, the VM is alive */
    ivsh_wait_fds(qts, base);
    qtest_qmp_assert_success(qts, "{'execute': 'query-status'}");
    qtest_quit(qts);
    ivsh_env_free(&e);
}

static void do_hostile_late(const IvshLateCase *c, const char *driver,
                            const char *opts)
{
    g_autofree char *errf = NULL;
    unsigned base;
    IvshEnv e;
    IvshVm *vm;
    int h1, h2;

    ivsh_env_init(&e, SHM_SIZE, 2);
    errf = g_build_filename(e.dir, "qemu.err", NULL);
    vm = ivsh_vm_start_driver(&e, driver, 2, opts, errf);
    h1 = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, h1));
    base = ivsh_count_fds(vm->qts);

    c->send(&e, vm);
    h2 = ivsh_tserver_add_host_peer(e.ts);
    if (!c->fatal) {
        /* Messages after the bad one are still understood */
        g_assert_true(ivsh_vm_sync_host_peer(&e, vm, h2));
        g_assert_cmpuint(ivsh_count_fds(vm->qts), ==, base + 2 + c->kept);
    }
    g_assert_true(ivsh_wait_file_contains(errf, c->message));
    if (c->fatal) {
        /* Reading stopped: h2 is unknown, but h1 and memory still work */
        ivsh_vm_ring(vm, h2, 1);
        g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, h2, 1, 0), ==, 0);
        g_assert_cmpuint(ivsh_count_fds(vm->qts), ==, base);
        g_assert_true(ivsh_wait_file_contains(errf, "no longer reading"));
    }
    ivsh_vm_ring(vm, h1, 1);
    g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, h1, 1, IVSH_WAIT_MS), ==, 1);
    ivsh_tserver_ring(e.ts, vm->id, 1);
    g_assert_true(ivsh_vm_wait_msi(vm, 1));

    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

static void test_hostile_late(gconstpointer opaque)
{
    do_hostile_late(opaque, "ivshmem-doorbell", NULL);
}

/*
 * The legacy device shares the server code, with ioeventfd=off by
 * default: every doorbell goes through QEMU
 */
static void test_hostile_late_legacy(gconstpointer opaque)
{
    do_hostile_late(opaque, "ivshmem", "size=1m");
}

/* Shrinking the memory after hand-over cannot hit QEMU with SIGBUS */
static void test_shrink_sealed(void)
{
    IvshEnv e;
    IvshVm *vm;

    ivsh_env_init(&e, SHM_SIZE, 1);
    vm = ivsh_vm_start(&e, 1, NULL, NULL);
    g_assert_cmpint(ftruncate(ivsh_tserver_shm_fd(e.ts), 4096), ==, -1);
    g_assert_cmpint(errno, ==, EPERM);
    qpci_io_writel(vm->d.dev, vm->d.shm, SHM_SIZE - 4, 0x1234);
    g_assert_cmphex(qpci_io_readl(vm->d.dev, vm->d.shm, SHM_SIZE - 4), ==,
                    0x1234);
    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

/* A server cannot make the device hold more eventfds than its budget */
static void test_fd_budget(void)
{
    g_autofree char *errf = NULL;
    IvshEnv e;
    IvshVm *vm;
    int h1, h2, h3;

    ivsh_env_init(&e, SHM_SIZE, 2);
    errf = g_build_filename(e.dir, "qemu.err", NULL);
    /* Our own 2 + h1's 2 fill the budget of 4: h2 is refused */
    vm = ivsh_vm_start(&e, 2, "x-max-eventfds=4", errf);
    h1 = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, h1));
    h2 = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_wait_file_contains(errf, "peer 2 refused: the limit "
                                          "of 4 eventfds is reached"));
    ivsh_vm_ring(vm, h2, 0);
    g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, h2, 0, 0), ==, 0);
    /* Once h1 leaves, there is room again */
    ivsh_tserver_remove_peer(e.ts, h1);
    h3 = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, h3));
    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

int main(int argc, char **argv)
{
    size_t i;

    g_test_init(&argc, &argv, NULL);

    qtest_add_func("/ivsh/doorbell/bad/config", test_bad_config);
    qtest_add_func("/ivsh/doorbell/bad/not-connected", test_not_connected);
    for (i = 0; i < ivsh_nr_setup_cases; i++) {
        g_autofree char *p = g_strdup_printf("/ivsh/doorbell/hostile/%s",
                                             ivsh_setup_cases[i].name);

        qtest_add_data_func(p, &ivsh_setup_cases[i], test_hostile_setup);
    }
    qtest_add_func("/ivsh/doorbell/hostile/setup-via-device-add",
                   test_hostile_setup_hotplug);
    for (i = 0; i < ivsh_nr_late_cases; i++) {
        g_autofree char *p = g_strdup_printf("/ivsh/doorbell/hostile/%s",
                                             ivsh_late_cases[i].name);

        qtest_add_data_func(p, &ivsh_late_cases[i], test_hostile_late);
    }
    for (i = 0; i < ivsh_nr_late_cases; i++) {
        g_autofree char *p = g_strdup_printf("/ivsh/legacy/hostile/%s",
                                             ivsh_late_cases[i].name);

        qtest_add_data_func(p, &ivsh_late_cases[i],
                            test_hostile_late_legacy);
    }
    qtest_add_func("/ivsh/doorbell/hostile/shrink-after-handover",
                   test_shrink_sealed);
    qtest_add_func("/ivsh/doorbell/hostile/eventfd-budget", test_fd_budget);

    return g_test_run();
}
