/*
 * Helpers shared by the ivshmem qtests
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/mman.h>
#include "qobject/qdict.h"
#include "hw/pci/pci_regs.h"
#include "hw/misc/ivsh-regs.h"
#include "ivsh-qtest.h"

static void dev_open(IvshDev *d, int devfn)
{
    d->dev = qpci_device_find(d->bus, devfn);
    g_assert(d->dev);
    g_assert_cmphex(qpci_config_readw(d->dev, PCI_VENDOR_ID), ==,
                    IVSH_PCI_VENDOR_ID);
    qpci_device_enable(d->dev);
    d->regs = qpci_iomap(d->dev, IVSH_BAR_REGS, &d->regs_size);
    d->shm = qpci_iomap(d->dev, IVSH_BAR_SHM, &d->shm_size);
}

void ivsh_dev_open(IvshDev *d, QTestState *qts, int devfn)
{
    memset(d, 0, sizeof(*d));
    d->qts = qts;
    d->bus = qpci_new_pc(qts, NULL);
    d->own_bus = true;
    dev_open(d, devfn);
}

void ivsh_dev_open_on(IvshDev *d, IvshDev *other, int devfn)
{
    memset(d, 0, sizeof(*d));
    d->qts = other->qts;
    d->bus = other->bus;
    dev_open(d, devfn);
}

void ivsh_dev_close(IvshDev *d)
{
    g_free(d->dev);
    if (d->own_bus) {
        qpci_free_pc(d->bus);
    }
    memset(d, 0, sizeof(*d));
}

uint32_t ivsh_reg_read(IvshDev *d, uint64_t reg)
{
    return qpci_io_readl(d->dev, d->regs, reg);
}

void ivsh_reg_write(IvshDev *d, uint64_t reg, uint32_t val)
{
    qpci_io_writel(d->dev, d->regs, reg, val);
}

char *ivsh_tmpdir_new(void)
{
    g_autoptr(GError) err = NULL;
    char *dir = g_dir_make_tmp("ivsh-test-XXXXXX", &err);

    g_assert_no_error(err);
    return dir;
}

void ivsh_tmpdir_free(char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(dir, name, NULL);

        unlink(path);
    }
    rmdir(dir);
    g_free(dir);
}

void *ivsh_map_file(const char *path, size_t size)
{
    int fd = open(path, O_RDWR);
    void *p;

    g_assert(fd >= 0);
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    g_assert(p != MAP_FAILED);
    close(fd);
    return p;
}

int ivsh_run_qemu(const char *env_var, const char *machine, const char *args,
                  char **err)
{
    const char *qemu = g_getenv(env_var ? env_var : "QTEST_QEMU_BINARY");
    g_autofree char *cmd = NULL;
    g_autoptr(GError) gerr = NULL;
    char *argv[] = { (char *)"/bin/sh", (char *)"-c", NULL, NULL };
    int status;

    g_assert(qemu);
    cmd = g_strdup_printf("printf '%%s' '{\"execute\":\"qmp_capabilities\"}"
                          "{\"execute\":\"quit\"}' | "
                          "exec timeout -k 1 10 %s -M %s -nodefaults -display none -S "
                          "-qmp stdio %s", qemu, machine, args);
    argv[2] = cmd;
    g_assert(g_spawn_sync(NULL, argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL,
                          NULL, NULL, NULL, err, &status, &gerr));
    g_assert_no_error(gerr);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static const char *migration_status(QTestState *qts)
{
    QDict *rsp = qtest_qmp_assert_success_ref(qts,
                                              "{'execute': 'query-migrate'}");
    static char status[32];

    g_strlcpy(status, qdict_get_try_str(rsp, "status") ?: "none",
              sizeof(status));
    qobject_unref(rsp);
    return status;
}

/* Wait for a MIGRATION event with a final status; return that status. */
static const char *wait_migration_end(QTestState *qts)
{
    for (;;) {
        QDict *ev = qtest_qmp_eventwait_ref(qts, "MIGRATION");
        QDict *data = qdict_get_qdict(ev, "data");
        const char *st = qdict_get_str(data, "status");
        bool done = !strcmp(st, "completed") || !strcmp(st, "failed") ||
                    !strcmp(st, "cancelled");

        qobject_unref(ev);
        if (done) {
            return migration_status(qts);
        }
    }
}

static void migrate_start(QTestState *from, const char *uri)
{
    qtest_qmp_assert_success(from,
        "{'execute': 'migrate-set-capabilities', 'arguments': "
        "{'capabilities': [{'capability': 'events', 'state': true}]}}");
    qtest_qmp_assert_success(from,
        "{'execute': 'migrate', 'arguments': {'uri': %s}}", uri);
}

void ivsh_migrate(QTestState *from, QTestState *to, const char *uri)
{
    migrate_start(from, uri);
    g_assert_cmpstr(wait_migration_end(from), ==, "completed");
    qtest_qmp_eventwait(to, "RESUME");
}

char *ivsh_migrate_error(QTestState *from, const char *uri)
{
    QDict *rsp;
    char *desc;

    qtest_qmp_assert_success(from,
        "{'execute': 'migrate-set-capabilities', 'arguments': "
        "{'capabilities': [{'capability': 'events', 'state': true}]}}");
    rsp = qtest_qmp(from, "{'execute': 'migrate', 'arguments': {'uri': %s}}",
                    uri);
    g_assert(qdict_haskey(rsp, "error"));
    desc = g_strdup(qdict_get_str(qdict_get_qdict(rsp, "error"), "desc"));
    qobject_unref(rsp);
    return desc;
}

const char *ivsh_upstream_qemu(void)
{
    const char *p = g_getenv(IVSH_UPSTREAM_ENV);

    return p && *p && access(p, X_OK) == 0 ? p : NULL;
}

const IvshMigPair ivsh_mig_pairs[3] = {
    { "master", "QTEST_QEMU_BINARY", "QTEST_QEMU_BINARY" },
    { "to-upstream", "QTEST_QEMU_BINARY", IVSH_UPSTREAM_ENV },
    { "from-upstream", IVSH_UPSTREAM_ENV, "QTEST_QEMU_BINARY" },
};

bool ivsh_mig_pair_ready(const IvshMigPair *p)
{
    if ((!strcmp(p->src_env, IVSH_UPSTREAM_ENV) ||
         !strcmp(p->dst_env, IVSH_UPSTREAM_ENV)) && !ivsh_upstream_qemu()) {
        g_test_skip("no upstream QEMU ($" IVSH_UPSTREAM_ENV " not set)");
        return false;
    }
    return true;
}
