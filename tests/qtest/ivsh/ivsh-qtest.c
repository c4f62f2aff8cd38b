/*
 * Helpers shared by the ivshmem qtests
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/mman.h>
#include <poll.h>
#include "qobject/qdict.h"
#include "hw/pci/pci_regs.h"
#include "hw/misc/ivsh-regs.h"
#include "ivsh-qtest.h"

bool ivsh_wait_until(IvshCond *cond, void *opaque, unsigned ms)
{
    gint64 end = g_get_monotonic_time() + ms * G_TIME_SPAN_MILLISECOND;

    do {
        if (cond(opaque)) {
            return true;
        }
    } while (g_get_monotonic_time() < end);
    return false;
}

static void dev_find(IvshDev *d, int devfn)
{
    d->dev = qpci_device_find(d->bus, devfn);
    g_assert(d->dev);
    g_assert_cmphex(qpci_config_readw(d->dev, PCI_VENDOR_ID), ==,
                    IVSH_PCI_VENDOR_ID);
    g_assert_cmphex(qpci_config_readw(d->dev, PCI_DEVICE_ID), ==,
                    IVSH_PCI_DEVICE_ID);
}

void ivsh_dev_map(IvshDev *d)
{
    qpci_device_enable(d->dev);
    d->regs = qpci_iomap(d->dev, IVSH_BAR_REGS, &d->regs_size);
    d->shm = qpci_iomap(d->dev, IVSH_BAR_SHM, &d->shm_size);
}

void ivsh_dev_find(IvshDev *d, QTestState *qts, int devfn)
{
    memset(d, 0, sizeof(*d));
    d->qts = qts;
    d->bus = qpci_new_pc(qts, NULL);
    d->own_bus = true;
    dev_find(d, devfn);
}

void ivsh_dev_open(IvshDev *d, QTestState *qts, int devfn)
{
    ivsh_dev_find(d, qts, devfn);
    ivsh_dev_map(d);
}

void ivsh_dev_open_on(IvshDev *d, IvshDev *other, int devfn)
{
    memset(d, 0, sizeof(*d));
    d->qts = other->qts;
    d->bus = other->bus;
    dev_find(d, devfn);
    ivsh_dev_map(d);
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

/* Read @fd to EOF into @out until @deadline (monotonic us); false on timeout */
static bool read_all_until(int fd, GString *out, gint64 deadline)
{
    char buf[4096];

    for (;;) {
        gint64 left = deadline - g_get_monotonic_time();
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        ssize_t n;
        int ret;

        if (left <= 0) {
            return false;
        }
        ret = poll(&pfd, 1, left / 1000 + 1);
        if (ret < 0 && errno == EINTR) {
            continue;
        }
        g_assert(ret >= 0);
        if (ret == 0) {
            continue;
        }
        n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return true;
        }
        g_string_append_len(out, buf, n);
    }
}

int ivsh_run_qemu_argv(const char *env_var, const char *machine,
                       const char *const *args, char **err)
{
    static const char qmp[] = "{\"execute\":\"qmp_capabilities\"}"
                              "{\"execute\":\"quit\"}";
    const char *qemu = g_getenv(env_var ? env_var : "QTEST_QEMU_BINARY");
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) gerr = NULL;
    GString *out = g_string_new("");
    int in_fd, err_fd, status;
    bool done;
    GPid pid;

    g_assert(qemu);
    g_ptr_array_add(argv, (char *)qemu);
    g_ptr_array_add(argv, (char *)"-M");
    g_ptr_array_add(argv, (char *)machine);
    g_ptr_array_add(argv, (char *)"-nodefaults");
    g_ptr_array_add(argv, (char *)"-display");
    g_ptr_array_add(argv, (char *)"none");
    g_ptr_array_add(argv, (char *)"-S");
    g_ptr_array_add(argv, (char *)"-qmp");
    g_ptr_array_add(argv, (char *)"stdio");
    for (; *args; args++) {
        g_ptr_array_add(argv, (char *)*args);
    }
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_async_with_pipes(NULL, (char **)argv->pdata, NULL,
                                  G_SPAWN_DO_NOT_REAP_CHILD |
                                  G_SPAWN_STDOUT_TO_DEV_NULL,
                                  NULL, NULL, &pid, &in_fd, NULL,
                                  &err_fd, &gerr)) {
        g_error("cannot run %s: %s", qemu, gerr->message);
    }
    /* Fits in the pipe; QEMU may be gone already (EPIPE, not SIGPIPE) */
    signal(SIGPIPE, SIG_IGN);
    if (write(in_fd, qmp, strlen(qmp)) < 0) {
        g_assert_cmpint(errno, ==, EPIPE);
    }
    close(in_fd);
    done = read_all_until(err_fd, out, g_get_monotonic_time() +
                          IVSH_RUN_QEMU_S * G_TIME_SPAN_SECOND);
    close(err_fd);
    if (!done) {
        kill(pid, SIGKILL);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_spawn_close_pid(pid);
    *err = g_string_free(out, false);
    if (!done) {
        return 124;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int ivsh_run_qemu(const char *env_var, const char *machine, const char *args,
                  char **err)
{
    g_auto(GStrv) argv = NULL;
    g_autoptr(GError) gerr = NULL;

    if (!*args) {
        argv = g_new0(char *, 1);
    } else {
        g_assert(g_shell_parse_argv(args, NULL, &argv, &gerr));
    }
    return ivsh_run_qemu_argv(env_var, machine, (const char *const *)argv,
                              err);
}

QTestState *ivsh_qtest_init_stderr(const char *errfile, const char *args)
{
    int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int saved = dup(STDERR_FILENO);
    QTestState *qts;

    /* QEMU inherits our stderr: point it at the file while it starts */
    g_assert(fd >= 0 && saved >= 0);
    fflush(stderr);
    g_assert(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    qts = qtest_init(args);
    fflush(stderr);
    g_assert(dup2(saved, STDERR_FILENO) == STDERR_FILENO);
    close(saved);
    close(fd);
    return qts;
}

typedef struct FileText {
    const char *path;
    const char *text;
} FileText;

static bool file_contains(void *opaque)
{
    FileText *ft = opaque;
    g_autofree char *s = NULL;

    if (g_file_get_contents(ft->path, &s, NULL, NULL) &&
        strstr(s, ft->text)) {
        return true;
    }
    g_usleep(1000);     /* polling a file: there is no event to wait on */
    return false;
}

bool ivsh_wait_file_contains(const char *path, const char *text)
{
    FileText ft = { path, text };

    return ivsh_wait_until(file_contains, &ft, IVSH_WAIT_MS);
}

unsigned ivsh_count_fds(QTestState *qts)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/fd", qtest_pid(qts));
    g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
    g_autoptr(GString) list = g_string_new("");
    const char *name;
    unsigned n = 0;

    g_assert(dir);
    while ((name = g_dir_read_name(dir))) {
        g_autofree char *fd = g_build_filename(path, name, NULL);
        g_autofree char *target = g_file_read_link(fd, NULL);

        g_string_append_printf(list, " %s=%s", name, target);
        n++;
    }
    g_test_message("QEMU fds:%s", list->str);
    return n;
}

typedef struct FdCount {
    QTestState *qts;
    unsigned want;
} FdCount;

static bool fds_are(void *opaque)
{
    FdCount *fc = opaque;

    if (ivsh_count_fds(fc->qts) == fc->want) {
        return true;
    }
    g_usleep(1000);     /* QEMU closes some fds after an RCU grace period */
    return false;
}

void ivsh_wait_fds(QTestState *qts, unsigned want)
{
    FdCount fc = { qts, want };

    ivsh_wait_until(fds_are, &fc, IVSH_WAIT_MS);
    g_assert_cmpuint(ivsh_count_fds(qts), ==, want);
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

void ivsh_msix_entry(QPCIDevice *dev, unsigned v, uint64_t addr,
                     uint32_t data, bool masked)
{
    uint64_t off = dev->msix_table_off + v * PCI_MSIX_ENTRY_SIZE;

    qpci_io_writel(dev, dev->msix_table_bar, off + PCI_MSIX_ENTRY_LOWER_ADDR,
                   addr);
    qpci_io_writel(dev, dev->msix_table_bar, off + PCI_MSIX_ENTRY_UPPER_ADDR,
                   addr >> 32);
    qpci_io_writel(dev, dev->msix_table_bar, off + PCI_MSIX_ENTRY_DATA, data);
    qpci_io_writel(dev, dev->msix_table_bar, off + PCI_MSIX_ENTRY_VECTOR_CTRL,
                   masked ? PCI_MSIX_ENTRY_CTRL_MASKBIT : 0);
}

bool ivsh_intx_level(QPCIDevice *dev)
{
    return qpci_config_readw(dev, PCI_STATUS) & PCI_STATUS_INTERRUPT;
}

static bool intx_high(void *opaque)
{
    return ivsh_intx_level(opaque);
}

bool ivsh_wait_intx(QPCIDevice *dev)
{
    return ivsh_wait_until(intx_high, dev, IVSH_WAIT_MS);
}

void ivsh_env_init(IvshEnv *e, size_t shm_size, unsigned vectors)
{
    e->dir = ivsh_tmpdir_new();
    e->sock = g_build_filename(e->dir, "server.sock", NULL);
    e->ts = ivsh_tserver_new(e->sock, shm_size, vectors);
}

void ivsh_env_free(IvshEnv *e)
{
    ivsh_tserver_free(e->ts);
    g_free(e->sock);
    ivsh_tmpdir_free(e->dir);
    memset(e, 0, sizeof(*e));
}

void ivsh_vm_open(IvshVm *vm, QTestState *qts, int devfn, unsigned vectors)
{
    unsigned v;

    vm->qts = qts;
    vm->vectors = vectors;
    ivsh_dev_open(&vm->d, qts, devfn);
    vm->id = ivsh_reg_read(&vm->d, IVSH_REG_IV_POSITION);
    qpci_msix_enable(vm->d.dev);
    for (v = 0; v < vectors; v++) {
        qtest_writel(qts, IVSH_MSI_ADDR(v), 0);
        ivsh_msix_entry(vm->d.dev, v, IVSH_MSI_ADDR(v), IVSH_MSI_DATA(v),
                        false);
    }
}

IvshVm *ivsh_vm_start(IvshEnv *e, unsigned vectors, const char *opts,
                      const char *errfile)
{
    return ivsh_vm_start_driver(e, "ivshmem-doorbell", vectors, opts,
                                errfile);
}

IvshVm *ivsh_vm_start_driver(IvshEnv *e, const char *driver,
                             unsigned vectors, const char *opts,
                             const char *errfile)
{
    IvshVm *vm = g_new0(IvshVm, 1);
    g_autofree char *args = NULL;
    QTestState *qts;

    args = g_strdup_printf("-M pc -chardev socket,id=srv,path=%s -device "
                           "%s,chardev=srv,vectors=%u,addr=04.0%s%s",
                           e->sock, driver, vectors,
                           opts ? "," : "", opts ? opts : "");
    qts = errfile ? ivsh_qtest_init_stderr(errfile, args) : qtest_init(args);
    ivsh_vm_open(vm, qts, IVSH_DEVFN, vectors);
    return vm;
}

void ivsh_vm_free(IvshVm *vm)
{
    ivsh_dev_close(&vm->d);
    qtest_quit(vm->qts);
    g_free(vm);
}

void ivsh_vm_ring(IvshVm *vm, unsigned peer, unsigned vector)
{
    ivsh_reg_write(&vm->d, IVSH_REG_DOORBELL, IVSH_DOORBELL(peer, vector));
}

bool ivsh_vm_msi_seen(IvshVm *vm, unsigned v)
{
    return qtest_readl(vm->qts, IVSH_MSI_ADDR(v)) == IVSH_MSI_DATA(v);
}

typedef struct VmVector {
    IvshVm *vm;
    unsigned v;
} VmVector;

static bool msi_seen(void *opaque)
{
    VmVector *vv = opaque;

    return ivsh_vm_msi_seen(vv->vm, vv->v);
}

bool ivsh_vm_wait_msi(IvshVm *vm, unsigned v)
{
    VmVector vv = { vm, v };

    if (!ivsh_wait_until(msi_seen, &vv, IVSH_WAIT_MS)) {
        return false;
    }
    qtest_writel(vm->qts, IVSH_MSI_ADDR(v), 0);
    return true;
}

static bool msi_pending(void *opaque)
{
    VmVector *vv = opaque;

    return qpci_msix_pending(vv->vm->d.dev, vv->v);
}

bool ivsh_vm_wait_pending(IvshVm *vm, unsigned v)
{
    VmVector vv = { vm, v };

    return ivsh_wait_until(msi_pending, &vv, IVSH_WAIT_MS);
}

typedef struct HostSync {
    IvshEnv *e;
    IvshVm *vm;
    int host;
} HostSync;

static bool host_rung(void *opaque)
{
    HostSync *hs = opaque;
    unsigned v = hs->vm->vectors - 1;

    ivsh_vm_ring(hs->vm, hs->host, v);
    return ivsh_tserver_wait_rung(hs->e->ts, hs->host, v, 10);
}

bool ivsh_vm_sync_host_peer(IvshEnv *e, IvshVm *vm, int host)
{
    HostSync hs = { e, vm, host };

    return ivsh_wait_until(host_rung, &hs, IVSH_WAIT_MS);
}

/* ---- a deadline for commands a broken device would hang ---- */

static const char *guard_what;

static void guard_fire(int sig)
{
    static const char msg[] = "\n# deadline reached, QEMU hangs: ";

    if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0 ||
        write(STDERR_FILENO, guard_what, strlen(guard_what)) < 0 ||
        write(STDERR_FILENO, "\n", 1) < 0) {
        /* nothing more to say */
    }
    abort();            /* libqtest's abort hook kills QEMU */
}

void ivsh_guard_start(const char *what, unsigned seconds)
{
    struct sigaction sa = { .sa_handler = guard_fire };

    guard_what = what;
    sigaction(SIGALRM, &sa, NULL);
    alarm(seconds);
}

void ivsh_guard_stop(void)
{
    alarm(0);
}
