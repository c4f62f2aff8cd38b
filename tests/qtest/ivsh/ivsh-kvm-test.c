/*
 * qtests for ivshmem-doorbell under KVM: irqfds, MSI routes and their
 * error paths
 *
 * QEMU runs with -accel kvm and an in-kernel irqchip; the test drives
 * config space and MSI-X through qtest.  Interrupts reach the in-kernel
 * local APIC, not RAM, so the VM runs a 37-byte -bios that enables the
 * x2APIC and halts with interrupts off: every MSI then stays in the
 * APIC's IRR, which "info lapic" shows.  Route leaks are counted from
 * QEMU's own trace events (kvm_irqchip_add_msi_route and
 * kvm_irqchip_release_virq, log backend, -D file).
 *
 * Every case is skipped, with the reason, where /dev/kvm cannot create a
 * VM; scripts/tests.d/45-kvm runs this program on the host's KVM or in a
 * nested one.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>
#include "qobject/qdict.h"
#include "hw/pci/pci_regs.h"
#include "hw/misc/ivsh-regs.h"
#include "hw/misc/ivsh-proto.h"
#include "ivsh-io.h"
#include "ivsh-qtest.h"

#define GUARD_S 60
#define KVM_WAIT_MS 20000           /* nested KVM under TCG is slow */
#define APIC_MSI_ADDR 0xfee00000ULL
#define VEC(v) (0x30 + (v))         /* APIC vector of MSI-X vector v */

static const char *kvm_skip;

/* NULL if /dev/kvm can create a VM, else why not */
static const char *kvm_unusable(void)
{
    static char why[128];
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm;

    if (kvm < 0) {
        snprintf(why, sizeof(why), "no usable /dev/kvm (%s)",
                 strerror(errno));
        return why;
    }
    vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
        snprintf(why, sizeof(why), "/dev/kvm cannot create a VM (%s)",
                 strerror(errno));
        close(kvm);
        return why;
    }
    close(vm);
    close(kvm);
    return NULL;
}

static bool skip_without_kvm(void)
{
    if (kvm_skip) {
        g_test_skip(kvm_skip);
        return true;
    }
    return false;
}

/*
 * The -bios: enable the x2APIC (IA32_APIC_BASE bits 10-11), software-
 * enable it (SPIV 0x1ff), then cli; hlt forever.  Real mode, at the reset
 * vector's short jump back.
 */
static char *write_bios(const char *dir)
{
    static const uint8_t code[] = {
        0x66, 0xb9, 0x1b, 0x00, 0x00, 0x00,     /* mov ecx, 0x1b */
        0x0f, 0x32,                             /* rdmsr */
        0x66, 0x0d, 0x00, 0x0c, 0x00, 0x00,     /* or eax, 0xc00 */
        0x0f, 0x30,                             /* wrmsr */
        0x66, 0xb9, 0x0f, 0x08, 0x00, 0x00,     /* mov ecx, 0x80f */
        0x66, 0xb8, 0xff, 0x01, 0x00, 0x00,     /* mov eax, 0x1ff */
        0x66, 0x31, 0xd2,                       /* xor edx, edx */
        0x0f, 0x30,                             /* wrmsr */
        0xfa,                                   /* cli */
        0xf4,                                   /* hlt */
        0xeb, 0xfd,                             /* jmp hlt */
    };
    g_autofree uint8_t *img = g_malloc(65536);
    char *path = g_build_filename(dir, "bios.bin", NULL);

    memset(img, 0xf4, 65536);
    memcpy(img + 0xff80, code, sizeof(code));
    img[0xfff0] = 0xeb;                         /* jmp 0xff80 */
    img[0xfff1] = (uint8_t)(0xff80 - 0xfff2);
    g_assert_true(g_file_set_contents(path, (char *)img, 65536, NULL));
    return path;
}

typedef struct KvmVm {
    IvshEnv env[3];
    unsigned nr_env;
    QTestState *qts;
    IvshVm vm[3];
    char *err;
    char *trace;
} KvmVm;

/* On a failed assertion: what QEMU said, into the test's log */
static void dump_err(void *opaque)
{
    KvmVm *k = opaque;
    g_autofree char *s = NULL;

    if (k->err && g_file_get_contents(k->err, &s, NULL, NULL)) {
        fprintf(stderr, "# QEMU's stderr:\n%s\n", s);
    }
}

static char *hmp(QTestState *qts, const char *cmd)
{
    return qtest_hmp(qts, "%s", cmd);
}

static bool apic_ready(void *opaque)
{
    g_autofree char *s = hmp(opaque, "info lapic");

    return strstr(s, "APIC enabled");
}

/* Whether APIC vector @vec is in the IRR */
static bool irr_has(QTestState *qts, unsigned vec)
{
    g_autofree char *s = hmp(qts, "info lapic");
    g_auto(GStrv) lines = g_strsplit(s, "\n", 0);
    char **l, **t;

    for (l = lines; *l; l++) {
        if (g_str_has_prefix(*l, "IRR")) {
            g_auto(GStrv) tok = g_strsplit_set(*l + 3, " \t\r", 0);

            for (t = tok; *t; t++) {
                if (**t && g_ascii_strtoull(*t, NULL, 10) == vec) {
                    return true;
                }
            }
        }
    }
    return false;
}

typedef struct IrrWait {
    QTestState *qts;
    unsigned vec;
} IrrWait;

static bool irr_seen(void *opaque)
{
    IrrWait *w = opaque;

    return irr_has(w->qts, w->vec);
}

static bool wait_irr(QTestState *qts, unsigned vec)
{
    IrrWait w = { qts, vec };

    return ivsh_wait_until(irr_seen, &w, KVM_WAIT_MS);
}

/* Map the MSI-X table and PBA for qtest, without enabling MSI-X */
static void msix_map(IvshVm *vm)
{
    QPCIDevice *dev = vm->d.dev;
    uint8_t cap = qpci_find_capability(dev, PCI_CAP_ID_MSIX, 0);
    uint32_t table = qpci_config_readl(dev, cap + PCI_MSIX_TABLE);
    uint32_t pba = qpci_config_readl(dev, cap + PCI_MSIX_PBA);

    g_assert_cmphex(table & PCI_MSIX_FLAGS_BIRMASK, ==, IVSH_BAR_MSIX);
    g_assert_cmphex(pba & PCI_MSIX_FLAGS_BIRMASK, ==, IVSH_BAR_MSIX);
    dev->msix_table_bar = qpci_iomap(dev, IVSH_BAR_MSIX, NULL);
    dev->msix_table_off = table & ~PCI_MSIX_FLAGS_BIRMASK;
    dev->msix_pba_bar = dev->msix_table_bar;
    dev->msix_pba_off = pba & ~PCI_MSIX_FLAGS_BIRMASK;
    dev->msix_enabled = true;      /* libqos: the table is mapped */
}

/* MSI-X entries of @vm at the APIC, masked or not, MSI-X not enabled */
static void msix_program(IvshVm *vm, uint64_t addr_hi, bool masked)
{
    unsigned v;

    for (v = 0; v < vm->vectors; v++) {
        ivsh_msix_entry(vm->d.dev, v, (addr_hi << 32) | APIC_MSI_ADDR,
                        VEC(v % 200), masked);
    }
}

static uint16_t msix_flags(IvshVm *vm)
{
    uint8_t cap = qpci_find_capability(vm->d.dev, PCI_CAP_ID_MSIX, 0);

    return qpci_config_readw(vm->d.dev, cap + PCI_MSIX_FLAGS);
}

static void msix_set_flags(IvshVm *vm, uint16_t flags)
{
    uint8_t cap = qpci_find_capability(vm->d.dev, PCI_CAP_ID_MSIX, 0);

    qpci_config_writew(vm->d.dev, cap + PCI_MSIX_FLAGS, flags);
}

/*
 * Start a KVM VM with @n doorbell devices (slots 4, 5, 6), each on its
 * own in-test server with @vectors, whose first connection runs
 * @script(@opaque[i]) when @script is set; @machine options and @extra
 * args.  The devices are found and mapped; MSI-X untouched.
 */
static void kvm_start_with(KvmVm *k, unsigned n, unsigned vectors,
                           IvshTScript *script, void *const *opaque,
                           const char *machine, const char *extra)
{
    g_autofree char *bios = NULL;
    g_autoptr(GString) args = g_string_new("");
    unsigned i;

    memset(k, 0, sizeof(*k));
    k->nr_env = n;
    for (i = 0; i < n; i++) {
        ivsh_env_init(&k->env[i], IVSH_ENV_SHM_SIZE, vectors);
        if (script) {
            ivsh_tserver_script(k->env[i].ts, script, opaque[i]);
        }
    }
    bios = write_bios(k->env[0].dir);
    k->err = g_build_filename(k->env[0].dir, "qemu.err", NULL);
    k->trace = g_build_filename(k->env[0].dir, "trace.log", NULL);
    g_string_append_printf(args, "-accel kvm -M %s -nodefaults "
                           "-global apic-common.vapic=off -bios %s -D %s "
                           "-trace kvm_irqchip_add_msi_route "
                           "-trace kvm_irqchip_release_virq "
                           "-trace kvm_irqchip_commit_routes %s",
                           machine, bios, k->trace, extra ? extra : "");
    for (i = 0; i < n; i++) {
        g_string_append_printf(args, " -chardev socket,id=s%u,path=%s "
                               "-device ivshmem-doorbell,chardev=s%u,"
                               "vectors=%u,addr=%u.0,id=db%u", i,
                               k->env[i].sock, i, vectors, 4 + i, i);
    }
    g_string_append_printf(args, " 2>%s", k->err);
    qtest_add_abrt_handler(dump_err, k);
    k->qts = qtest_init(args->str);
    qtest_qmp_assert_success(k->qts, "{'execute': 'cont'}");
    g_assert_true(ivsh_wait_until(apic_ready, k->qts, KVM_WAIT_MS));
    for (i = 0; i < n; i++) {
        IvshVm *vm = &k->vm[i];

        vm->qts = k->qts;
        vm->vectors = vectors;
        if (i == 0) {
            ivsh_dev_open(&vm->d, k->qts, QPCI_DEVFN(4, 0));
        } else {
            ivsh_dev_open_on(&vm->d, &k->vm[0].d, QPCI_DEVFN(4 + i, 0));
        }
        vm->id = ivsh_reg_read(&vm->d, IVSH_REG_IV_POSITION);
        msix_map(vm);
    }
}

static void kvm_start(KvmVm *k, unsigned n, unsigned vectors,
                      const char *machine, const char *extra)
{
    kvm_start_with(k, n, vectors, NULL, NULL, machine, extra);
}

static void kvm_stop(KvmVm *k)
{
    int i;

    for (i = k->nr_env - 1; i >= 0; i--) {
        ivsh_dev_close(&k->vm[i].d);
    }
    qtest_quit(k->qts);
    qtest_remove_abrt_handler(k);
    for (i = 0; i < k->nr_env; i++) {
        ivsh_env_free(&k->env[i]);
    }
    g_free(k->err);
    g_free(k->trace);
}

static unsigned trace_count(KvmVm *k, const char *event)
{
    g_autofree char *s = NULL;
    g_autofree char *prefix = g_strdup_printf("%s ", event);
    g_auto(GStrv) lines = NULL;
    unsigned n = 0;
    char **l;

    if (!g_file_get_contents(k->trace, &s, NULL, NULL)) {
        return 0;
    }
    lines = g_strsplit(s, "\n", 0);
    for (l = lines; *l; l++) {
        /* the log backend: "event args", maybe after "pid@time:" */
        const char *colon = strchr(*l, ':');
        const char *ev = colon && colon < strchr(*l, ' ') ? colon + 1 : *l;

        n += g_str_has_prefix(ev, prefix);
    }
    return n;
}

static bool file_has(const char *path, const char *text)
{
    g_autofree char *s = NULL;

    return g_file_get_contents(path, &s, NULL, NULL) && strstr(s, text);
}

static void assert_alive(KvmVm *k, const char *what)
{
    ivsh_guard_start(what, GUARD_S);
    qtest_qmp_assert_success(k->qts, "{'execute': 'query-status'}");
    ivsh_guard_stop();
}

/* irqfd delivery, a masked vector's PBA bit, delivery on unmask */
static void test_irqfd(void)
{
    KvmVm k;
    IvshVm *vm;

    if (skip_without_kvm()) {
        return;
    }
    kvm_start(&k, 1, 2, "pc,kernel-irqchip=on", NULL);
    vm = &k.vm[0];
    msix_program(vm, 0, false);
    ivsh_msix_entry(vm->d.dev, 1, APIC_MSI_ADDR, VEC(1), true);
    msix_set_flags(vm, msix_flags(vm) | PCI_MSIX_FLAGS_ENABLE);
    ivsh_tserver_ring(k.env[0].ts, vm->id, 0);
    g_assert_true(wait_irr(k.qts, VEC(0)));
    ivsh_tserver_ring(k.env[0].ts, vm->id, 1);
    g_assert_true(ivsh_vm_wait_pending(vm, 1));
    g_assert_false(irr_has(k.qts, VEC(1)));
    ivsh_msix_entry(vm->d.dev, 1, APIC_MSI_ADDR, VEC(1), false);
    g_assert_true(wait_irr(k.qts, VEC(1)));
    g_assert_cmpuint(trace_count(&k, "kvm_irqchip_add_msi_route"), ==, 2);
    g_assert_false(file_has(k.err, "go through QEMU"));
    kvm_stop(&k);
}

/* Whether @fd's counter is non-zero (no irqfd took it); nothing read */
static bool efd_readable(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };

    return poll(&pfd, 1, 0) == 1;
}

static IvshEnv *self_env;

static bool self_rung(void *opaque)
{
    IvshVm *vm = opaque;
    int fd = ivsh_tserver_eventfd(self_env->ts, vm->id, 1);
    uint64_t v;

    ivsh_vm_ring(vm, vm->id, 1);
    return efd_readable(fd) && read(fd, &v, 8) == 8;
}

/* MSI-X disabled: a doorbell shows in the PBA and fires on enable */
static void test_msix_disabled_pba(void)
{
    KvmVm k;
    IvshVm *vm;

    if (skip_without_kvm()) {
        return;
    }
    kvm_start(&k, 1, 2, "pc,kernel-irqchip=on", NULL);
    vm = &k.vm[0];
    msix_program(vm, 0, false);
    ivsh_tserver_ring(k.env[0].ts, vm->id, 1);
    g_assert_true(ivsh_vm_wait_pending(vm, 1));
    msix_set_flags(vm, msix_flags(vm) | PCI_MSIX_FLAGS_ENABLE);
    g_assert_true(wait_irr(k.qts, VEC(1)));
    g_assert_false(qpci_msix_pending(vm->d.dev, 1));
    /* and the irqfd path works after it */
    ivsh_tserver_ring(k.env[0].ts, vm->id, 0);
    g_assert_true(wait_irr(k.qts, VEC(0)));
    kvm_stop(&k);
}

/*
 * The server makes our own eventfds blocking: enabling MSI-X (msix.c
 * polls every masked vector) and reading the PBA must not hang.
 */
static void test_blocking_pba(void)
{
    KvmVm k;
    IvshVm *vm;

    if (skip_without_kvm()) {
        return;
    }
    kvm_start(&k, 1, 2, "pc,kernel-irqchip=on", NULL);
    vm = &k.vm[0];
    self_env = &k.env[0];
    /* Once the device rings itself, it holds its eventfds */
    g_assert_true(ivsh_wait_until(self_rung, vm, IVSH_WAIT_MS));
    ivsh_tserver_ring(k.env[0].ts, vm->id, 1);
    ivsh_tserver_clear_nonblock(k.env[0].ts);
    msix_program(vm, 0, true);
    ivsh_guard_start("MSI-X enable with blocking eventfds", GUARD_S);
    msix_set_flags(vm, msix_flags(vm) | PCI_MSIX_FLAGS_ENABLE |
                   PCI_MSIX_FLAGS_MASKALL);
    qpci_msix_pending(vm->d.dev, 0);
    qtest_qmp_assert_success(k.qts, "{'execute': 'query-status'}");
    ivsh_guard_stop();
    g_assert_true(ivsh_vm_wait_pending(vm, 1));
    msix_set_flags(vm, (msix_flags(vm) | PCI_MSIX_FLAGS_ENABLE) &
                   ~PCI_MSIX_FLAGS_MASKALL);
    ivsh_msix_entry(vm->d.dev, 1, APIC_MSI_ADDR, VEC(1), false);
    g_assert_true(wait_irr(k.qts, VEC(1)));
    kvm_stop(&k);
}

typedef struct DupScript {
    int efd;
    int id;
} DupScript;

/* Set-up, then the same eventfd as own vectors 0 and 1 */
static void s_dup_own(IvshTServer *ts, int sock, void *opaque)
{
    DupScript *d = opaque;

    ivsh_tserver_send_setup(ts, sock, d->id);
    g_assert_cmpint(ivsh_msg_send(sock, d->id, d->efd), ==, 0);
    g_assert_cmpint(ivsh_msg_send(sock, d->id, d->efd), ==, 0);
}

/* Set-up, then @efd as own vector 0 and a fresh one as vector 1 */
static void s_shared_own(IvshTServer *ts, int sock, void *opaque)
{
    DupScript *d = opaque;
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    ivsh_tserver_send_setup(ts, sock, d->id);
    g_assert_cmpint(ivsh_msg_send(sock, d->id, d->efd), ==, 0);
    g_assert_cmpint(ivsh_msg_send(sock, d->id, fd), ==, 0);
    close(fd);
}

/* Enable MSI-X with every vector unmasked behind MASKALL, then clear it */
static void enable_via_maskall(IvshVm *vm, uint64_t addr_hi)
{
    msix_program(vm, addr_hi, false);
    msix_set_flags(vm, msix_flags(vm) | PCI_MSIX_FLAGS_ENABLE |
                   PCI_MSIX_FLAGS_MASKALL);
    msix_set_flags(vm, (msix_flags(vm) | PCI_MSIX_FLAGS_ENABLE) &
                   ~PCI_MSIX_FLAGS_MASKALL);
}

/* Start a KVM VM whose devices' servers run @script (one per device) */
static void kvm_start_scripted(KvmVm *k, unsigned n, unsigned vectors,
                               IvshTScript *script, DupScript *d,
                               const char *machine, const char *extra)
{
    g_autofree void **opaque = g_new(void *, n);
    unsigned i;

    for (i = 0; i < n; i++) {
        opaque[i] = &d[i];
    }
    kvm_start_with(k, n, vectors, script, opaque, machine, extra);
    for (i = 0; i < n; i++) {
        g_assert_cmpint(k->vm[i].id, ==, d[i].id);
    }
}

/*
 * A hostile server sends one eventfd as two own vectors: refused when
 * the duplicate arrives (KVM would refuse its second irqfd, -EBUSY, and
 * QEMU 10.0's msix.c asserts on the error).
 */
static void test_dup_own_vectors(void)
{
    DupScript d[1] = { { .id = 3 } };
    KvmVm k;

    if (skip_without_kvm()) {
        return;
    }
    d[0].efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    kvm_start_scripted(&k, 1, 2, s_dup_own, d, "pc,kernel-irqchip=on",
                       NULL);
    g_assert_true(ivsh_wait_file_contains(k.err, "server sent the eventfd "
                                          "of peer 3 vector 0 again, as "
                                          "peer 3 vector 1: refused"));
    ivsh_guard_start("unmasking two vectors on one eventfd", GUARD_S);
    enable_via_maskall(&k.vm[0], 0);
    qtest_qmp_assert_success(k.qts, "{'execute': 'query-status'}");
    ivsh_guard_stop();
    g_assert_cmpint(write(d[0].efd, &(uint64_t){ 1 }, 8), ==, 8);
    g_assert_true(wait_irr(k.qts, VEC(0)));
    g_assert_false(irr_has(k.qts, VEC(1)));
    kvm_stop(&k);
    close(d[0].efd);
}

/*
 * Two devices of one VM get the same eventfd as their own vector 0 (two
 * hostile servers): KVM refuses the second irqfd (-EBUSY), and that
 * vector is delivered through QEMU, with one warning.
 */
static void test_shared_across_devices(void)
{
    DupScript d[2] = { { .id = 0 }, { .id = 0 } };
    KvmVm k;

    if (skip_without_kvm()) {
        return;
    }
    d[0].efd = d[1].efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    kvm_start_scripted(&k, 2, 2, s_shared_own, d, "pc,kernel-irqchip=on",
                       NULL);
    /* Both devices hold their eventfds once vector 1 rings through */
    ivsh_guard_start("unmasking a shared eventfd on two devices", GUARD_S);
    enable_via_maskall(&k.vm[0], 0);
    enable_via_maskall(&k.vm[1], 0);
    qtest_qmp_assert_success(k.qts, "{'execute': 'query-status'}");
    ivsh_guard_stop();
    g_assert_true(ivsh_wait_file_contains(k.err, "KVM refused its irqfd"));
    g_assert_cmpint(write(d[0].efd, &(uint64_t){ 1 }, 8), ==, 8);
    g_assert_true(wait_irr(k.qts, VEC(0)));
    kvm_stop(&k);
    close(d[0].efd);
}

/*
 * Two devices with 2048 vectors want more MSI routes than KVM has (4096,
 * shared with the irqchip's own): the vectors beyond fall back to QEMU
 * delivery, and disabling MSI-X releases every route that was taken.
 * Only the vector control words are written (messages stay 0, which KVM
 * routes as well), to stay fast under nested KVM.
 */
static void unmask_all_via_maskall(IvshVm *vm)
{
    QPCIDevice *dev = vm->d.dev;
    unsigned v;

    msix_set_flags(vm, msix_flags(vm) | PCI_MSIX_FLAGS_ENABLE |
                   PCI_MSIX_FLAGS_MASKALL);
    for (v = 0; v < vm->vectors; v++) {
        qpci_io_writel(dev, dev->msix_table_bar, dev->msix_table_off +
                       v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL,
                       0);
    }
    ivsh_msix_entry(dev, vm->vectors - 1, APIC_MSI_ADDR, VEC(7), false);
    msix_set_flags(vm, (msix_flags(vm) | PCI_MSIX_FLAGS_ENABLE) &
                   ~PCI_MSIX_FLAGS_MASKALL);
}

static void test_routes_exhausted(void)
{
    unsigned i, adds, releases;
    KvmVm k;

    if (skip_without_kvm()) {
        return;
    }
    kvm_start(&k, 2, 2048, "pc,kernel-irqchip=on", NULL);
    ivsh_guard_start("enabling 2 x 2048 vectors", GUARD_S);
    for (i = 0; i < 2; i++) {
        unmask_all_via_maskall(&k.vm[i]);
    }
    qtest_qmp_assert_success(k.qts, "{'execute': 'query-status'}");
    ivsh_guard_stop();
    g_assert_true(ivsh_wait_file_contains(k.err, "no KVM MSI route"));
    /* The last device's last vector still delivers (through QEMU) */
    ivsh_tserver_ring(k.env[1].ts, k.vm[1].id, 2047);
    g_assert_true(wait_irr(k.qts, VEC(7)));

    for (i = 0; i < 2; i++) {
        msix_set_flags(&k.vm[i], msix_flags(&k.vm[i]) &
                       ~PCI_MSIX_FLAGS_ENABLE);
    }
    assert_alive(&k, "query-status after MSI-X disable");
    /*
     * Every route came back: the device that fell back gets all 2048
     * now.  (The trace cannot count them directly: a failed add also
     * traces a release.)
     */
    adds = trace_count(&k, "kvm_irqchip_add_msi_route");
    releases = trace_count(&k, "kvm_irqchip_release_virq");
    ivsh_guard_start("enabling 2048 vectors again", GUARD_S);
    unmask_all_via_maskall(&k.vm[1]);
    ivsh_guard_stop();
    assert_alive(&k, "query-status after MSI-X enable");
    g_test_message("%u routes added before, %u releases; %u added on "
                   "re-enable", adds, releases,
                   trace_count(&k, "kvm_irqchip_add_msi_route") - adds);
    g_assert_cmpuint(trace_count(&k, "kvm_irqchip_add_msi_route") - adds, ==,
                     2048);
    kvm_stop(&k);
}

/* Toggling MASKALL with unchanged messages commits no routing table */
static void test_maskall_commits(void)
{
    unsigned before, after, i;
    KvmVm k;
    IvshVm *vm;

    if (skip_without_kvm()) {
        return;
    }
    kvm_start(&k, 1, 512, "pc,kernel-irqchip=on", NULL);
    vm = &k.vm[0];
    ivsh_tserver_ring(k.env[0].ts, vm->id, 511);
    enable_via_maskall(vm, 0);
    g_assert_true(wait_irr(k.qts, VEC(511 % 200)));
    before = trace_count(&k, "kvm_irqchip_commit_routes");
    for (i = 0; i < 3; i++) {
        msix_set_flags(vm, msix_flags(vm) | PCI_MSIX_FLAGS_MASKALL);
        msix_set_flags(vm, msix_flags(vm) & ~PCI_MSIX_FLAGS_MASKALL);
    }
    assert_alive(&k, "query-status");
    after = trace_count(&k, "kvm_irqchip_commit_routes");
    g_test_message("%u routing-table commits for 3 MASKALL toggles of "
                   "512 vectors", after - before);
    g_assert_cmpuint(after - before, <, 8);
    kvm_stop(&k);
}

/*
 * With the x2APIC API (more than 255 APIC IDs), KVM refuses an MSI route
 * whose upper address has bits 32-39 set, and QEMU would abort on the
 * refused routing table: such a vector goes through QEMU.
 */
static void test_address_hi(void)
{
    KvmVm k;

    if (skip_without_kvm()) {
        return;
    }
    kvm_start(&k, 1, 2, "q35,kernel-irqchip=on", "-smp 1,maxcpus=288");
    ivsh_tserver_ring(k.env[0].ts, k.vm[0].id, 1);
    ivsh_guard_start("unmasking a vector with address_hi 1", GUARD_S);
    enable_via_maskall(&k.vm[0], 1);
    qtest_qmp_assert_success(k.qts, "{'execute': 'query-status'}");
    ivsh_guard_stop();
    g_assert_true(ivsh_wait_file_contains(k.err, "KVM cannot route its "
                                          "MSI-X message"));
    /* A correct message afterwards is routed again after re-enable */
    msix_set_flags(&k.vm[0], msix_flags(&k.vm[0]) & ~PCI_MSIX_FLAGS_ENABLE);
    enable_via_maskall(&k.vm[0], 0);
    ivsh_tserver_ring(k.env[0].ts, k.vm[0].id, 0);
    g_assert_true(wait_irr(k.qts, VEC(0)));
    kvm_stop(&k);
}

/* Bus mastering off: the irqfd is detached, the interrupt waits */
static void test_bus_master(void)
{
    KvmVm k;
    IvshVm *vm;
    uint16_t cmd;

    if (skip_without_kvm()) {
        return;
    }
    kvm_start(&k, 1, 2, "pc,kernel-irqchip=on", NULL);
    vm = &k.vm[0];
    msix_program(vm, 0, false);
    msix_set_flags(vm, msix_flags(vm) | PCI_MSIX_FLAGS_ENABLE);
    ivsh_tserver_ring(k.env[0].ts, vm->id, 0);
    g_assert_true(wait_irr(k.qts, VEC(0)));
    cmd = qpci_config_readw(vm->d.dev, PCI_COMMAND);
    qpci_config_writew(vm->d.dev, PCI_COMMAND, cmd & ~PCI_COMMAND_MASTER);
    ivsh_tserver_ring(k.env[0].ts, vm->id, 1);
    /* An attached irqfd takes the count within the write itself */
    g_assert_true(efd_readable(ivsh_tserver_eventfd(k.env[0].ts, vm->id,
                                                    1)));
    g_assert_false(irr_has(k.qts, VEC(1)));
    qpci_config_writew(vm->d.dev, PCI_COMMAND, cmd);
    g_assert_true(wait_irr(k.qts, VEC(1)));
    kvm_stop(&k);
}

/*
 * Bus mastering off, vector 0 masked: a doorbell read into the PBA by a
 * PBA read (vector 0), or left in the eventfd (vector 1), survives the
 * guest unmasking while bus mastering is still off (QEMU's MSI-X core
 * would send a pending vector into the disabled bus-master address
 * space); bus mastering on delivers each.
 */
static void test_bus_master_unmask(void)
{
    KvmVm k;
    IvshVm *vm;
    uint16_t cmd;

    if (skip_without_kvm()) {
        return;
    }
    kvm_start(&k, 1, 2, "pc,kernel-irqchip=on", NULL);
    vm = &k.vm[0];
    msix_program(vm, 0, true);
    msix_set_flags(vm, msix_flags(vm) | PCI_MSIX_FLAGS_ENABLE);
    cmd = qpci_config_readw(vm->d.dev, PCI_COMMAND);
    qpci_config_writew(vm->d.dev, PCI_COMMAND, cmd & ~PCI_COMMAND_MASTER);
    ivsh_tserver_ring(k.env[0].ts, vm->id, 0);
    ivsh_tserver_ring(k.env[0].ts, vm->id, 1);
    g_assert_true(ivsh_vm_wait_pending(vm, 0));     /* the PBA read */
    ivsh_msix_entry(vm->d.dev, 0, APIC_MSI_ADDR, VEC(0), false);
    ivsh_msix_entry(vm->d.dev, 1, APIC_MSI_ADDR, VEC(1), false);
    g_assert_true(qpci_msix_pending(vm->d.dev, 0));
    g_assert_false(irr_has(k.qts, VEC(0)));
    g_assert_false(irr_has(k.qts, VEC(1)));
    qpci_config_writew(vm->d.dev, PCI_COMMAND, cmd);
    g_assert_true(wait_irr(k.qts, VEC(0)));
    g_assert_true(wait_irr(k.qts, VEC(1)));
    g_assert_false(qpci_msix_pending(vm->d.dev, 0));
    kvm_stop(&k);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    kvm_skip = kvm_unusable();

    qtest_add_func("/ivsh/kvm/irqfd", test_irqfd);
    qtest_add_func("/ivsh/kvm/msix-disabled-pba", test_msix_disabled_pba);
    qtest_add_func("/ivsh/kvm/blocking-eventfds-pba", test_blocking_pba);
    qtest_add_func("/ivsh/kvm/dup-eventfd-own", test_dup_own_vectors);
    qtest_add_func("/ivsh/kvm/shared-eventfd-two-devices",
                   test_shared_across_devices);
    qtest_add_func("/ivsh/kvm/routes-exhausted", test_routes_exhausted);
    qtest_add_func("/ivsh/kvm/maskall-commits", test_maskall_commits);
    qtest_add_func("/ivsh/kvm/address-hi", test_address_hi);
    qtest_add_func("/ivsh/kvm/bus-master-off", test_bus_master);
    qtest_add_func("/ivsh/kvm/bus-master-off-unmask",
                   test_bus_master_unmask);

    return g_test_run();
}
