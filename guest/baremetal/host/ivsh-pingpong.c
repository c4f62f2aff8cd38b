/*
 * ivsh-pingpong: drive the ivshmem test guest from the host
 *
 * Starts an ivshmem server, joins it as a peer, starts one or two QEMUs
 * running the bare-metal test guest (guest/baremetal/guest/) and
 * commands them through their mailboxes in the shared memory:
 *
 *   pingpong  (default) two guests: B responds, A runs N round trips and
 *             a doorbell blast, optionally the masked-vector (PBA) case;
 *             prints p50/p99/max round-trip time, doorbells/s and, under
 *             KVM, the vCPU exit counts from QMP query-stats
 *   selftest  one guest rings itself on every vector, then the PBA case
 *   boot      one guest boots and publishes its slot (also ivshmem-plain)
 *   msixtest  one guest: MSI-X disabled, a doorbell stays pending (PBA)
 *             until MSI-X is enabled again
 *   unplug    two guests on "pc": A rings B back to back while B's device
 *             is hot-unplugged (QMP device_del, B's ACPI eject); B must
 *             take no interrupt after the eject
 *   probe     does the test guest run under KVM here?
 *
 * The guests ring the driver's own eventfd when they are ready and when
 * a command is done; the driver sleeps in poll() on it (and on pidfds of
 * its children) with a deadline, re-checking the shared memory on every
 * wake-up.  Every child is killed and the temporary directory removed
 * on exit, also on failure or SIGINT/SIGTERM; children also die with the
 * driver (PR_SET_PDEATHSIG).
 *
 * Exit status: 0 passed, 1 failed, 2 usage, 77 skipped (device type or
 * KVM unavailable).  "RESULT key=value ..." lines are for scripts.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "ivsh-host.h"
#include "ivsh-guest.h"

#define EXIT_SKIP           77

/* The shared memory: guests write it while the driver reads it */
typedef volatile uint8_t SharedU8;          /* see above */
typedef volatile uint32_t SharedU32;        /* see above */
typedef volatile IvgSlot SharedSlot;        /* see above */
typedef volatile IvgGlobal SharedGlobal;    /* see above */
#define JOIN_MS             20000
#define EXIT_MS             10000

typedef struct Options {
    const char *qemu;
    const char *server;
    const char *guest;
    const char *device;
    const char *machine;
    const char *accel;
    const char *cpu;
    const char *ioeventfd;
    const char *device_opts;
    const char *mode;
    const char *server_style;
    uint64_t count;
    uint64_t warmup;
    uint64_t vectors;
    uint64_t blast;
    uint64_t copy;
    uint64_t shm_size;
    uint64_t timeout_s;
    int64_t vector;             /* -1: the last one */
    bool masktest;
    bool reset;
    bool keep;
    int pin[2];                 /* CPUs of vmA's and vmB's vCPU, -1: none */
    const char *qemu_args[8];   /* extra QEMU arguments */
    int nqemu_args;
} Options;

typedef struct Vm {
    char name[8];
    IvhProc proc;
    bool started;
    bool may_exit;
    int id;
    uint32_t seq;
    char qmp_path[128];
    char con_path[128];
    IvhQmp qmp;
    pid_t vcpu_tid;             /* from query-cpus-fast, 0: unknown */
} Vm;

static struct {
    Options o;
    char dir[64];
    bool have_dir;
    IvhProc server;
    bool have_server;
    IvhClient client;
    bool have_client;
    char plain_path[128];
    void *plain_shm;
    Vm vm[2];
    const char *accel;          /* resolved: "kvm" or "tcg" */
    const char *cpu;
    const char *type;           /* QOM type */
    uint32_t tsc_khz;
    uint64_t tsc0;
    int64_t ms0;
    int64_t deadline;
    IvhProc *probe;             /* the KVM probe while it runs */
    volatile sig_atomic_t signal;
} R;

static void usage(void)
{
    printf(
"Usage: ivsh-pingpong [OPTION]...\n"
"  --mode MODE        pingpong (default), selftest, msixtest, boot, unplug,\n"
"                     probe\n"
"  --qemu PATH        qemu-system-x86_64 (default build/qemu/...)\n"
"  --server PATH      ivshmem server (default build/upstream/contrib/...)\n"
"  --server-style S   contrib: QEMU's ivshmem-server (-F, -m /dev/shm);\n"
"                     ivsh: the project's ivsh-server (memfd); default:\n"
"                     contrib if the file is named ivshmem-server\n"
"  --guest PATH       test guest image (default: next to this program)\n"
"  --device TYPE      doorbell (default), legacy-msix, legacy-intx, plain\n"
"  --device-opts STR  appended to the -device option\n"
"  --machine M        pc or q35 (default)\n"
"  --accel A          auto (default), kvm, tcg\n"
"  --cpu MODEL        default: host,-arch-capabilities (KVM), QEMU's (TCG)\n"
"  --vectors N        vectors of device and server (default 4)\n"
"  --vector V         vector for the ping-pong, or 'last' (default 0)\n"
"  --count N          measured round trips (default 1000)\n"
"  --warmup N         warm-up round trips (default 100)\n"
"  --blast N          doorbells for the blast, 0: none (default 10000)\n"
"  --copy BYTES       copy benchmark size, 0: none (default 1M)\n"
"  --masktest         also run the masked-vector (PBA) case\n"
"  --reset            then QMP system_reset of guest A and ping-pong again\n"
"  --pin A,B          pin vmA's vCPU thread to CPU A, vmB's to CPU B\n"
"  --qemu-arg ARG     one more QEMU argument (repeatable, up to 8)\n"
"  --ioeventfd on|off device property (default: the device's default)\n"
"  --shm-size SIZE    shared memory size (default 4M)\n"
"  --timeout SEC      whole run (default 150)\n"
"  --keep             keep the temporary directory (logs)\n");
}

/* Clean-up, also from signal handlers: only async-signal-safe calls */

static void kill_children(void)
{
    int i;

    for (i = 0; i < 2; i++) {
        if (R.vm[i].proc.pid && !R.vm[i].proc.exited) {
            kill(R.vm[i].proc.pid, SIGKILL);
        }
    }
    if (R.server.pid && !R.server.exited) {
        kill(R.server.pid, SIGKILL);
    }
    if (R.probe && R.probe->pid && !R.probe->exited) {
        kill(R.probe->pid, SIGKILL);
    }
    if (R.plain_path[0]) {
        unlink(R.plain_path);
    }
}

/* Kill the children at once; the driver then fails and cleans up */
static void on_signal(int sig)
{
    R.signal = sig;
    kill_children();
}

static void remove_dir(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;

    if (!d) {
        return;
    }
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            unlinkat(dirfd(d), e->d_name, 0);
        }
    }
    closedir(d);
    rmdir(path);
}

static void cleanup(void)
{
    int i;

    for (i = 0; i < 2; i++) {
        ivh_qmp_close(&R.vm[i].qmp);
        ivh_stop(&R.vm[i].proc, 2000);
    }
    if (R.have_client) {
        ivh_client_close(&R.client);
        R.have_client = false;
    }
    if (R.have_server) {
        ivh_stop(&R.server, 2000);
    }
    if (R.plain_path[0]) {
        unlink(R.plain_path);
        R.plain_path[0] = 0;
    }
    if (R.have_dir) {
        if (R.o.keep) {
            fprintf(stderr, "ivsh-pingpong: logs kept in %s\n", R.dir);
        } else {
            remove_dir(R.dir);
        }
        R.have_dir = false;
    }
}

static void dump_logs(void)
{
    char path[160];
    int i;

    for (i = 0; i < 2; i++) {
        if (R.vm[i].started) {
            snprintf(path, sizeof(path), "%s (QEMU)", R.vm[i].name);
            ivh_dump_log(path, R.vm[i].proc.log, 15);
            snprintf(path, sizeof(path), "%s (guest console)", R.vm[i].name);
            ivh_dump_log(path, R.vm[i].con_path, 25);
        }
    }
    if (R.have_server) {
        ivh_dump_log("server", R.server.log, 10);
    }
}

static void __attribute__((noreturn, format(printf, 1, 2)))
fail(const char *fmt, ...)
{
    va_list ap;

    if (R.signal) {
        fprintf(stderr, "ivsh-pingpong: interrupted by signal %d\n",
                R.signal);
        printf("RESULT status=fail\n");
        exit(128 + R.signal);
    }
    fprintf(stderr, "ivsh-pingpong: FAIL: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    dump_logs();
    printf("RESULT status=fail\n");
    fflush(stdout);
    exit(1);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
skip(const char *fmt, ...)
{
    va_list ap;

    printf("SKIP: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\nRESULT status=skip\n");
    fflush(stdout);
    exit(EXIT_SKIP);
}

/* Shared memory */

static SharedU8 *shm(void)
{
    return R.plain_shm ? R.plain_shm : R.client.shm;
}

static SharedGlobal *global(void)
{
    return (SharedGlobal *)(shm() + IVG_GLOBAL_OFFSET);
}

static SharedSlot *slot_of(int id)
{
    return (SharedSlot *)(shm() + IVG_SLOT(id));
}

static void global_init(uint32_t host_id)
{
    SharedGlobal *g = global();

    g->magic = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    g->version = IVG_VERSION;
    g->host_id = host_id;
    g->host_vector = 0;
    g->tsc_khz = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    g->magic = IVG_GLOBAL_MAGIC;
}

/* Host TSC against CLOCK_MONOTONIC_RAW, over the time since start-up */
static uint32_t host_tsc_khz(void)
{
    struct timespec ts;
    int64_t ns;
    uint64_t t;

    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    t = __rdtsc();
    ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - R.ms0;
    return ns > 0 ? (t - R.tsc0) * 1000000 / ns : 0;
}

static void host_tsc_start(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    R.tsc0 = __rdtsc();
    R.ms0 = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waiting */

typedef bool WaitCond(void *arg);

static bool check_children(void)
{
    char err[256];
    int i;

    for (i = 0; i < 2; i++) {
        Vm *vm = &R.vm[i];

        if (vm->started && !vm->may_exit && ivh_reap(&vm->proc)) {
            fprintf(stderr, "ivsh-pingpong: %s: QEMU exited with status "
                    "%d\n", vm->name, vm->proc.status);
            return false;
        }
        if (vm->started && !vm->proc.exited &&
            ivh_kvm_error(vm->proc.log, err, sizeof(err))) {
            fprintf(stderr, "ivsh-pingpong: %s: %s\n", vm->name, err);
            return false;
        }
    }
    if (R.have_server && ivh_reap(&R.server)) {
        fprintf(stderr, "ivsh-pingpong: server exited with status %d\n",
                R.server.status);
        return false;
    }
    return true;
}

/*
 * Sleep in poll() until @cond holds: woken by the driver's eventfd
 * (guests ring it), the server socket and the children's pidfds, and
 * at least every 100 ms.
 */
static bool wait_for(WaitCond *cond, void *arg, int64_t deadline,
                     const char *what)
{
    struct pollfd pfd[5];
    uint64_t junk;
    int n, i, efd = -1, left;

    for (;;) {
        if (R.signal) {
            fail("interrupted");
        }
        if (R.have_client && !ivh_client_pump(&R.client)) {
            fprintf(stderr, "ivsh-pingpong: lost the server connection\n");
            return false;
        }
        if (cond(arg)) {
            return true;
        }
        if (!check_children()) {
            return false;
        }
        left = deadline - ivh_now_ms();
        if (left <= 0) {
            fprintf(stderr, "ivsh-pingpong: timed out waiting for %s\n",
                    what);
            return false;
        }
        n = 0;
        if (R.have_client) {
            pfd[n++] = (struct pollfd) { .fd = R.client.sock,
                                         .events = POLLIN };
            if (R.client.peers[R.client.id].nfds) {
                efd = R.client.peers[R.client.id].fds[0];
                pfd[n++] = (struct pollfd) { .fd = efd, .events = POLLIN };
            }
        }
        for (i = 0; i < 2; i++) {
            if (R.vm[i].started && R.vm[i].proc.pidfd >= 0) {
                pfd[n++] = (struct pollfd) { .fd = R.vm[i].proc.pidfd,
                                             .events = POLLIN };
            }
        }
        if (R.have_server && R.server.pidfd >= 0) {
            pfd[n++] = (struct pollfd) { .fd = R.server.pidfd,
                                         .events = POLLIN };
        }
        poll(pfd, n, left < 100 ? left : 100);
        for (i = 0; i < n; i++) {
            if (pfd[i].fd == efd && (pfd[i].revents & POLLIN)) {
                if (read(efd, &junk, sizeof(junk)) < 0) {
                    /* nothing to clear */
                }
            }
        }
    }
}

static bool cond_joined(void *arg)
{
    return R.client.njoined >= *(unsigned *)arg;
}

static bool cond_ready(void *arg)
{
    Vm *vm = arg;
    SharedSlot *s = slot_of(vm->id);

    return s->magic == IVG_SLOT_MAGIC && s->state == IVG_STATE_READY &&
           s->id == (uint32_t)vm->id;
}

static bool cond_done(void *arg)
{
    Vm *vm = arg;

    return slot_of(vm->id)->done_seq == vm->seq;
}

static bool cond_exited(void *arg)
{
    Vm *vm = arg;

    return ivh_reap(&vm->proc);
}

/* QEMU */

static bool qemu_has_device(const char *type)
{
    char log[128], buf[65536], want[64];
    char *argv[] = { (char *)R.o.qemu, (char *)"-device", (char *)"help",
                     NULL };
    IvhProc p;
    size_t n;
    FILE *f;

    snprintf(log, sizeof(log), "%s/device-help.txt", R.dir);
    if (!ivh_spawn(&p, "device-help", argv, log) ||
        !ivh_wait_exit(&p, ivh_now_ms() + 20000)) {
        ivh_stop(&p, 1000);
        fail("%s -device help did not finish", R.o.qemu);
    }
    f = fopen(log, "r");
    n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f) {
        fclose(f);
    }
    buf[n] = 0;
    snprintf(want, sizeof(want), "name \"%s\"", type);
    return strstr(buf, want) != NULL;
}

static const char *device_type(const char *device)
{
    if (!strcmp(device, "doorbell")) {
        return "ivshmem-doorbell";
    }
    if (!strcmp(device, "legacy-msix") || !strcmp(device, "legacy-intx")) {
        return "ivshmem";
    }
    if (!strcmp(device, "plain")) {
        return "ivshmem-plain";
    }
    return NULL;
}

static void device_string(char *buf, size_t size)
{
    int n;

    if (!strcmp(R.o.device, "plain")) {
        n = snprintf(buf, size, "ivshmem-plain,id=ivsh,memdev=shm");
    } else {
        n = snprintf(buf, size, "%s,id=ivsh,chardev=ivsh,vectors=%llu%s",
                     R.type,
                     (unsigned long long)R.o.vectors,
                     !strcmp(R.o.device, "legacy-msix") ? ",msi=on" :
                     !strcmp(R.o.device, "legacy-intx") ? ",msi=off" : "");
    }
    if (R.o.ioeventfd && strcmp(R.o.device, "plain")) {
        n += snprintf(buf + n, size - n, ",ioeventfd=%s", R.o.ioeventfd);
    }
    if (R.o.device_opts) {
        snprintf(buf + n, size - n, ",%s", R.o.device_opts);
    }
}

/* Start QEMU @vm; @run is the fw_cfg command, @with_dev adds the device */
static void vm_start(Vm *vm, const char *accel, const char *cpu,
                     const char *run, bool with_dev)
{
    char con[160], qmp[160], chr[160], dev[512], obj[256], fwcfg[128];
    char log[160];
    char *argv[48];
    int n = 0, i;

    snprintf(vm->con_path, sizeof(vm->con_path), "%s/%s.con", R.dir,
             vm->name);
    snprintf(vm->qmp_path, sizeof(vm->qmp_path), "%s/%s.qmp", R.dir,
             vm->name);
    snprintf(log, sizeof(log), "%s/%s.log", R.dir, vm->name);
    snprintf(con, sizeof(con), "file:%s", vm->con_path);
    snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", vm->qmp_path);
    vm->qmp.fd = -1;

    argv[n++] = (char *)R.o.qemu;
    argv[n++] = (char *)"-name";
    argv[n++] = vm->name;
    argv[n++] = (char *)"-accel";
    argv[n++] = (char *)accel;
    if (cpu) {
        argv[n++] = (char *)"-cpu";
        argv[n++] = (char *)cpu;
    }
    argv[n++] = (char *)"-M";
    argv[n++] = (char *)R.o.machine;
    argv[n++] = (char *)"-m";
    argv[n++] = (char *)"64";
    argv[n++] = (char *)"-smp";
    argv[n++] = (char *)"1";
    argv[n++] = (char *)"-nodefaults";
    argv[n++] = (char *)"-display";
    argv[n++] = (char *)"none";
    if (!R.o.reset) {
        argv[n++] = (char *)"-no-reboot";
    }
    argv[n++] = (char *)"-bios";
    argv[n++] = (char *)R.o.guest;
    argv[n++] = (char *)"-debugcon";
    argv[n++] = con;
    argv[n++] = (char *)"-device";
    argv[n++] = (char *)"isa-debug-exit,iobase=0xf4,iosize=4";
    argv[n++] = (char *)"-qmp";
    argv[n++] = qmp;
    if (with_dev) {
        if (!strcmp(R.o.device, "plain")) {
            snprintf(obj, sizeof(obj), "memory-backend-file,id=shm,"
                     "size=%llu,mem-path=%s,share=on",
                     (unsigned long long)R.o.shm_size, R.plain_path);
            argv[n++] = (char *)"-object";
            argv[n++] = obj;
        } else {
            snprintf(chr, sizeof(chr), "socket,id=ivsh,path=%s/server.sock",
                     R.dir);
            argv[n++] = (char *)"-chardev";
            argv[n++] = chr;
        }
        device_string(dev, sizeof(dev));
        argv[n++] = (char *)"-device";
        argv[n++] = dev;
    }
    for (i = 0; i < R.o.nqemu_args && n < 44; i++) {
        argv[n++] = (char *)R.o.qemu_args[i];
    }
    if (run) {
        snprintf(fwcfg, sizeof(fwcfg), "name=%s,string=%s", IVG_FWCFG_RUN,
                 run);
        argv[n++] = (char *)"-fw_cfg";
        argv[n++] = fwcfg;
    }
    argv[n] = NULL;
    if (!ivh_spawn(&vm->proc, vm->name, argv, log)) {
        fail("cannot start %s", R.o.qemu);
    }
    vm->started = true;
}

/* ": <last line of @path>" into @buf, if there is one */
static void last_line(const char *path, char *buf, size_t size)
{
    char text[4096], *s, *e;
    FILE *f = fopen(path, "r");
    size_t n = 0;

    if (f) {
        if (fseek(f, -(long)sizeof(text) + 1, SEEK_END) < 0) {
            rewind(f);
        }
        n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
    }
    text[n] = 0;
    while (n && (text[n - 1] == '\n' || text[n - 1] == ' ')) {
        text[--n] = 0;
    }
    e = text + n;
    s = e;
    while (s > text && s[-1] != '\n') {
        s--;
    }
    if (*s && size > 3) {
        snprintf(buf, size, ": %s", s);
    }
}

/*
 * Wait for @vm to exit; a KVM failure (QEMU then stops the VM and stays
 * up) ends the wait early.  True if it exited.
 */
static bool wait_exit_or_kvm_error(Vm *vm, int64_t deadline)
{
    char err[256];

    int64_t step;

    for (;;) {
        step = ivh_now_ms() + 50;
        if (ivh_wait_exit(&vm->proc, step < deadline ? step : deadline)) {
            return true;
        }
        if (ivh_now_ms() >= deadline) {
            return false;
        }
        if (ivh_kvm_error(vm->proc.log, err, sizeof(err)) &&
            strstr(err, "instruction bytes")) {
            return false;           /* the whole report is in the log */
        }
    }
}

/*
 * Why @vm failed under KVM, into @why: QEMU's KVM error or last log
 * line, and the last line of the guest's console
 */
static void kvm_why(Vm *vm, const char *what, char *why, size_t size)
{
    char err[256] = "", log[256] = "", con[160] = "";

    if (ivh_kvm_error(vm->proc.log, err, sizeof(err))) {
        snprintf(log, sizeof(log), ": %s", err);
    } else {
        last_line(vm->proc.log, log, sizeof(log));
        if (strstr(log, "terminating on signal")) {
            log[0] = 0;             /* our own SIGTERM: nothing to say */
        }
    }
    last_line(vm->con_path, con, sizeof(con));
    snprintf(why, size, "%s%s; guest console%s", what, log,
             con[0] ? con : ": (empty)");
}

/* KVM: /dev/kvm usable and the test guest runs under it? */
static bool kvm_probe(char *why, size_t size)
{
    Vm probe = { .name = "probe" };
    bool exited;

    if (access("/dev/kvm", R_OK | W_OK)) {
        snprintf(why, size, "/dev/kvm: %s", strerror(errno));
        return false;
    }
    vm_start(&probe, "kvm", R.o.cpu ? R.o.cpu : "host,-arch-capabilities",
             "probe", false);
    R.probe = &probe.proc;
    exited = wait_exit_or_kvm_error(&probe, ivh_now_ms() + 20000);
    if (!exited) {
        ivh_stop(&probe.proc, 1000);
        R.probe = NULL;
        kvm_why(&probe, "test guest did not finish under KVM within 20 s", why,
                size);
        return false;
    }
    R.probe = NULL;
    if (probe.proc.status != IVG_EXIT_STATUS(IVG_EXIT_OK)) {
        char what[64];

        snprintf(what, sizeof(what), "test guest under KVM exited with "
                 "status %d", probe.proc.status);
        kvm_why(&probe, what, why, size);
        return false;
    }
    return true;
}

static void resolve_accel(void)
{
    char why[256] = "";

    if (!strcmp(R.o.accel, "tcg")) {
        R.accel = "tcg";
        printf("accel: tcg (as requested)\n");
    } else if (kvm_probe(why, sizeof(why))) {
        R.accel = "kvm";
        printf("accel: kvm (probe passed)\n");
    } else if (!strcmp(R.o.accel, "kvm")) {
        skip("KVM unusable here: %s", why);
    } else {
        R.accel = "tcg";
        printf("accel: tcg (KVM unusable: %s)\n", why);
    }
    R.cpu = R.o.cpu;
    if (!R.cpu && !strcmp(R.accel, "kvm")) {
        R.cpu = "host,-arch-capabilities";
    }
}

static void start_server(void)
{
    char sock[128], size[32], vec[32], log[128];
    const char *base = strrchr(R.o.server, '/');
    bool contrib;
    char *argv[12];
    int n = 0;

    base = base ? base + 1 : R.o.server;
    contrib = R.o.server_style ? !strcmp(R.o.server_style, "contrib") :
              !strcmp(base, "ivshmem-server");
    snprintf(sock, sizeof(sock), "%s/server.sock", R.dir);
    snprintf(size, sizeof(size), "%llu", (unsigned long long)R.o.shm_size);
    snprintf(vec, sizeof(vec), "%llu", (unsigned long long)R.o.vectors);
    snprintf(log, sizeof(log), "%s/server.log", R.dir);
    argv[n++] = (char *)R.o.server;
    if (contrib) {
        /* foreground; shared memory in an unlinked file under /dev/shm */
        argv[n++] = (char *)"-F";
        argv[n++] = (char *)"-m";
        argv[n++] = (char *)"/dev/shm";
    }
    argv[n++] = (char *)"-S";
    argv[n++] = sock;
    argv[n++] = (char *)"-l";
    argv[n++] = size;
    argv[n++] = (char *)"-n";
    argv[n++] = vec;
    argv[n] = NULL;
    if (!ivh_spawn(&R.server, "server", argv, log)) {
        fail("cannot start %s", R.o.server);
    }
    R.have_server = true;
    if (!ivh_client_connect(&R.client, sock, R.o.vectors,
                            ivh_now_ms() + 10000)) {
        fail("cannot join the ivshmem server");
    }
    R.have_client = true;
    /* the global header and the slots of the host and two guests */
    if (R.client.shm_size < IVG_SLOT(3)) {
        fail("shared memory of %zu bytes is too small", R.client.shm_size);
    }
    global_init(R.client.id);
}

static void plain_shm_create(void)
{
    int fd;

    snprintf(R.plain_path, sizeof(R.plain_path), "/dev/shm/ivsh-pp-%d",
             (int)getpid());
    fd = open(R.plain_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, R.o.shm_size) < 0) {
        fail("%s: %s", R.plain_path, strerror(errno));
    }
    R.plain_shm = mmap(NULL, R.o.shm_size, PROT_READ | PROT_WRITE,
                       MAP_SHARED, fd, 0);
    close(fd);
    if (R.plain_shm == MAP_FAILED) {
        R.plain_shm = NULL;
        fail("mmap %s: %s", R.plain_path, strerror(errno));
    }
    global_init(IVG_NO_PEER);
}

/* Start @vm with the device and wait until it joined the server */
static void vm_launch(Vm *vm, const char *run)
{
    unsigned want = R.client.njoined + 1;

    vm_start(vm, R.accel, R.cpu, run, true);
    if (!R.have_client) {
        vm->id = 0;                 /* ivshmem-plain: IVPosition 0 */
        return;
    }
    if (!wait_for(cond_joined, &want, ivh_now_ms() + JOIN_MS,
                  "QEMU to join the server")) {
        fail("%s did not join the ivshmem server", vm->name);
    }
    vm->id = R.client.joined[want - 1];
    if (vm->id >= IVG_MAX_SLOTS) {
        fail("%s got peer ID %d, the guest has slots up to %d", vm->name,
             vm->id, IVG_MAX_SLOTS - 1);
    }
}

static void vm_wait_ready(Vm *vm)
{
    SharedSlot *s = slot_of(vm->id);

    if (!wait_for(cond_ready, vm, R.deadline, "the guest to be ready")) {
        fail("%s: guest not ready", vm->name);
    }
    vm->seq = s->done_seq;
    printf("%s: peer %d, pci %02x:%02x.%u, %s%s%s, vectors %u, "
           "intx gsi %u, BAR2 %u KiB%s, guest tsc %u kHz, rdtsc %u ticks, "
           "ready after %u ms\n",
           vm->name, vm->id, s->pci_bdf >> 8, (s->pci_bdf >> 3) & 0x1f,
           s->pci_bdf & 7,
           s->features & IVG_F_MSIX ? "MSI-X" :
           s->features & IVG_F_INTX ? "INTx" : "no interrupts",
           s->features & IVG_F_X2APIC ? ", x2apic" : ", xapic",
           s->features & IVG_F_REV0 ? ", revision 0" : "",
           s->nvectors, s->intx_gsi, s->bar2_kib,
           s->features & IVG_F_BAR2_64 ? " (64-bit)" : "",
           s->tsc_khz, s->rdtsc_ticks, s->boot_ms);
}

static const char *cmd_name(uint32_t cmd)
{
    static const char *const names[] = {
        "none", "nop", "respond", "pingpong", "blast", "copy", "masktest",
        "exit", "selftest", "msixtest", "ring", "unplug",
    };

    return cmd < sizeof(names) / sizeof(names[0]) ? names[cmd] : "?";
}

/* Post a command to @vm and ring it */
static void vm_post(Vm *vm, uint32_t cmd, uint32_t a0, uint32_t a1,
                    uint32_t a2, uint32_t a3)
{
    SharedSlot *s = slot_of(vm->id);
    int64_t left = R.deadline - ivh_now_ms();

    s->mailbox.cmd = cmd;
    s->mailbox.arg[0] = a0;
    s->mailbox.arg[1] = a1;
    s->mailbox.arg[2] = a2;
    s->mailbox.arg[3] = a3;
    s->mailbox.arg[4] = left > 1000 ? left - 500 : 500;
    s->mailbox.arg[5] = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    s->mailbox.seq = ++vm->seq;
    ivh_client_ring(&R.client, vm->id, 0);
}

/* Post a command to @vm, ring it, wait for it; its status */
static uint32_t vm_command(Vm *vm, uint32_t cmd, uint32_t a0, uint32_t a1,
                           uint32_t a2, uint32_t a3)
{
    SharedSlot *s = slot_of(vm->id);
    char what[64];

    vm_post(vm, cmd, a0, a1, a2, a3);
    snprintf(what, sizeof(what), "%s to finish '%s'", vm->name,
             cmd_name(cmd));
    if (!wait_for(cond_done, vm, R.deadline, what)) {
        fail("%s: command '%s' did not finish", vm->name, cmd_name(cmd));
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return s->status;
}

static void vm_command_ok(Vm *vm, uint32_t cmd, uint32_t a0, uint32_t a1,
                          uint32_t a2, uint32_t a3)
{
    uint32_t st = vm_command(vm, cmd, a0, a1, a2, a3);

    if (st != IVG_ST_OK) {
        fail("%s: command '%s' failed with guest status %u", vm->name,
             cmd_name(cmd), st);
    }
}

static void vm_exit(Vm *vm)
{
    vm->may_exit = true;
    vm_command(vm, IVG_CMD_EXIT, IVG_EXIT_OK, 0, 0, 0);
    if (!wait_for(cond_exited, vm, ivh_now_ms() + EXIT_MS,
                  "QEMU to exit")) {
        fail("%s did not exit", vm->name);
    }
    if (vm->proc.status != IVG_EXIT_STATUS(IVG_EXIT_OK)) {
        fail("%s exited with status %d", vm->name, vm->proc.status);
    }
}

static void stats(Vm *vm, IvhStats *st)
{
    memset(st, 0, sizeof(*st));
    if (vm->qmp.fd >= 0) {
        ivh_qmp_stats(&vm->qmp, st, ivh_now_ms() + 5000);
    }
    st->wakeups = ivh_thread_wakeups(vm->proc.pid, vm->vcpu_tid);
}

/* QMP connection and the vCPU thread of @vm */
static void vm_qmp(Vm *vm)
{
    char reply[2048], *p;
    int cpu;

    if (!ivh_qmp_open(&vm->qmp, vm->qmp_path, ivh_now_ms() + 5000)) {
        fail("%s: no QMP", vm->name);
    }
    if (!ivh_qmp_exec(&vm->qmp, "{\"execute\": \"query-cpus-fast\"}",
                      reply, sizeof(reply), ivh_now_ms() + 5000)) {
        return;
    }
    p = strstr(reply, "\"thread-id\":");
    if (p) {
        vm->vcpu_tid = atoi(p + strlen("\"thread-id\":"));
    }
    cpu = R.o.pin[vm == &R.vm[0] ? 0 : 1];
    if (cpu >= 0 && vm->vcpu_tid) {
        cpu_set_t set;

        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(vm->vcpu_tid, sizeof(set), &set)) {
            fail("%s: pinning the vCPU to CPU %d: %s", vm->name, cpu,
                 strerror(errno));
        }
    }
}

/* Bucket midpoint at per-mille @pm of the histogram, in ns */
static uint64_t percentile(const SharedU32 *h, uint64_t total,
                           unsigned pm)
{
    uint64_t want = (total * pm + 999) / 1000, acc = 0;
    uint32_t b;

    for (b = 0; b < IVG_HIST_BUCKETS; b++) {
        acc += h[b];
        if (acc >= want && acc) {
            return ivg_hist_low(b) + ivg_hist_width(b) / 2;
        }
    }
    return 0;
}

static double ticks_per_s(uint64_t events, uint64_t ticks)
{
    return ticks ? (double)events * R.tsc_khz * 1000.0 / ticks : 0;
}

static void print_exits(const char *name, IvhStats *a, IvhStats *b,
                        const char *key)
{
    printf("  %s: QEMU threads other than the vCPU woke %llu times\n", name,
           (unsigned long long)(b->wakeups - a->wakeups));
    printf("RESULT %s_wakeups=%llu\n", key,
           (unsigned long long)(b->wakeups - a->wakeups));
    if (!a->valid || !b->valid) {
        printf("  %s: vCPU exit counts n/a (%s)\n", name,
               strcmp(R.accel, "kvm") ? "TCG has no KVM statistics" :
               "query-stats failed");
        printf("RESULT %s_mmio_exits=na\n", key);
        return;
    }
    printf("  %s: mmio_exits %llu, io_exits %llu, exits %llu, halt_exits "
           "%llu, irq_injections %llu\n", name,
           (unsigned long long)(b->mmio_exits - a->mmio_exits),
           (unsigned long long)(b->io_exits - a->io_exits),
           (unsigned long long)(b->exits - a->exits),
           (unsigned long long)(b->halt_exits - a->halt_exits),
           (unsigned long long)(b->irq_injections - a->irq_injections));
    printf("  %s: insn_emulation %llu, halt_wakeup %llu, "
           "halt_successful_poll %llu\n", name,
           (unsigned long long)(b->insn_emulation - a->insn_emulation),
           (unsigned long long)(b->halt_wakeup - a->halt_wakeup),
           (unsigned long long)(b->halt_successful_poll -
                                a->halt_successful_poll));
    printf("RESULT %s_mmio_exits=%llu %s_exits=%llu %s_halt_exits=%llu "
           "%s_insn_emulation=%llu %s_halt_wakeup=%llu\n", key,
           (unsigned long long)(b->mmio_exits - a->mmio_exits), key,
           (unsigned long long)(b->exits - a->exits), key,
           (unsigned long long)(b->halt_exits - a->halt_exits), key,
           (unsigned long long)(b->insn_emulation - a->insn_emulation), key,
           (unsigned long long)(b->halt_wakeup - a->halt_wakeup));
}

/*
 * QMP system_reset of @a while @b keeps responding: the guest boots
 * again, re-enables MSI-X, and the ping-pong must work as before (with
 * KVM: still no MMIO exit per doorbell)
 */
static void pingpong_after_reset(Vm *a, Vm *b, uint32_t v)
{
    SharedSlot *sa = slot_of(a->id);
    IvhStats sa0, sa1, sb0, sb1;
    char reply[512];

    sa->magic = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!ivh_qmp_exec(&a->qmp, "{\"execute\": \"system_reset\"}", reply,
                      sizeof(reply), ivh_now_ms() + 10000)) {
        fail("%s: system_reset: %s", a->name, reply);
    }
    vm_wait_ready(a);
    vm_command_ok(a, IVG_CMD_PINGPONG, b->id, v, 0,
                  R.o.warmup ? R.o.warmup : 1);
    stats(a, &sa0);
    stats(b, &sb0);
    vm_command_ok(a, IVG_CMD_PINGPONG, b->id, v, R.o.count, 0);
    stats(a, &sa1);
    stats(b, &sb1);
    printf("reset: %s reset by QMP, booted again; %llu round trips after "
           "it\n", a->name, (unsigned long long)sa->res[IVG_R_PP_COUNT]);
    printf("RESULT reset=ok reset_round_trips=%llu\n",
           (unsigned long long)sa->res[IVG_R_PP_COUNT]);
    print_exits("after reset, initiator", &sa0, &sa1, "ra");
    print_exits("after reset, responder", &sb0, &sb1, "rb");
}

static void mode_pingpong(void)
{
    Vm *a = &R.vm[0], *b = &R.vm[1];
    IvhStats sa0, sa1, sb0, sb1;
    SharedSlot *sa, *sb;
    uint32_t v, st, before, idx;
    uint64_t n, p50, p99, p999, max, mean;

    start_server();
    vm_launch(a, NULL);
    vm_launch(b, NULL);
    vm_wait_ready(a);
    vm_wait_ready(b);
    sa = slot_of(a->id);
    sb = slot_of(b->id);
    if (!(sa->features & (IVG_F_MSIX | IVG_F_INTX)) ||
        !(sb->features & (IVG_F_MSIX | IVG_F_INTX))) {
        fail("a guest has no interrupt from the device");
    }
    v = R.o.vector < 0 ? R.o.vectors - 1 : R.o.vector;
    if (v >= R.o.vectors) {
        fail("vector %u out of range (vectors=%llu)", v,
             (unsigned long long)R.o.vectors);
    }
    idx = sb->features & IVG_F_MSIX ? v : 0;
    R.tsc_khz = host_tsc_khz();
    global()->tsc_khz = R.tsc_khz;
    printf("host tsc %u kHz\n", R.tsc_khz);
    vm_qmp(a);
    vm_qmp(b);

    vm_command_ok(b, IVG_CMD_RESPOND, a->id, v, 0, 0);
    if (R.o.warmup) {
        vm_command_ok(a, IVG_CMD_PINGPONG, b->id, v, 0, R.o.warmup);
        if (sa->res[IVG_R_PP_RETRIES]) {
            printf("warm-up: %llu doorbells re-sent\n",
                   (unsigned long long)sa->res[IVG_R_PP_RETRIES]);
        }
    }
    stats(a, &sa0);
    stats(b, &sb0);
    vm_command_ok(a, IVG_CMD_PINGPONG, b->id, v, R.o.count, 0);
    stats(a, &sa1);
    stats(b, &sb1);

    n = sa->res[IVG_R_PP_COUNT];
    p50 = percentile(sa->hist, n, 500);
    p99 = percentile(sa->hist, n, 990);
    p999 = percentile(sa->hist, n, 999);
    max = sa->res[IVG_R_PP_MAX_NS];
    mean = n ? sa->res[IVG_R_PP_SUM_NS] / n : 0;
    printf("ping-pong: %s, %s, %s, vector %u of %llu, ioeventfd %s\n",
           R.type, R.o.machine, R.accel, v,
           (unsigned long long)R.o.vectors,
           R.o.ioeventfd ? R.o.ioeventfd : "default");
    printf("  %llu round trips: p50 %.1f us, p99 %.1f us, p99.9 %.1f us, "
           "max %.1f us, min %.1f us, mean %.1f us\n",
           (unsigned long long)n, p50 / 1e3, p99 / 1e3, p999 / 1e3,
           max / 1e3, sa->res[IVG_R_PP_MIN_NS] / 1e3, mean / 1e3);
    printf("  %.0f round trips/s, %.0f doorbells/s\n",
           ticks_per_s(n, sa->res[IVG_R_PP_TICKS]),
           ticks_per_s(2 * n, sa->res[IVG_R_PP_TICKS]));
    printf("RESULT accel=%s device=%s machine=%s vector=%u round_trips=%llu "
           "rtt_p50_ns=%llu rtt_p99_ns=%llu rtt_max_ns=%llu "
           "rtt_mean_ns=%llu\n", R.accel, R.o.device, R.o.machine, v,
           (unsigned long long)n, (unsigned long long)p50,
           (unsigned long long)p99, (unsigned long long)max,
           (unsigned long long)mean);
    print_exits("initiator", &sa0, &sa1, "a");
    print_exits("responder", &sb0, &sb1, "b");

    if (R.o.blast) {
        before = sb->irq_count[idx];
        vm_command_ok(a, IVG_CMD_BLAST, b->id, v, R.o.blast, 0);
        n = sb->irq_count[idx] - before - 1;       /* minus the round trip */
        printf("blast: %llu doorbells in %.2f ms: %.0f doorbells/s; "
               "receiver took %llu interrupts (eventfds coalesce)\n",
               (unsigned long long)sa->res[IVG_R_BL_COUNT],
               sa->res[IVG_R_BL_TICKS] / (double)R.tsc_khz,
               ticks_per_s(sa->res[IVG_R_BL_COUNT], sa->res[IVG_R_BL_TICKS]),
               (unsigned long long)n);
        printf("RESULT doorbells_per_s=%.0f blast_interrupts=%llu\n",
               ticks_per_s(sa->res[IVG_R_BL_COUNT], sa->res[IVG_R_BL_TICKS]),
               (unsigned long long)n);
    }

    if (R.o.copy) {
        if (IVG_DATA_OFFSET + R.o.copy > R.client.shm_size ||
            R.o.copy > 16 << 20) {
            printf("copy: skipped, %llu bytes do not fit\n",
                   (unsigned long long)R.o.copy);
        } else {
            vm_command_ok(a, IVG_CMD_COPY, R.o.copy, IVG_DATA_OFFSET, 4, 0);
            n = sa->res[IVG_R_CP_BYTES];
            printf("copy %llu KiB x4: RAM->BAR2 %.0f MB/s, BAR2->RAM %.0f "
                   "MB/s, RAM->RAM %.0f MB/s\n",
                   (unsigned long long)R.o.copy >> 10,
                   ticks_per_s(n, sa->res[IVG_R_CP_RAM_TO_BAR2]) / 1e6,
                   ticks_per_s(n, sa->res[IVG_R_CP_BAR2_TO_RAM]) / 1e6,
                   ticks_per_s(n, sa->res[IVG_R_CP_RAM_TO_RAM]) / 1e6);
        }
    }

    if (R.o.masktest) {
        if (!(sa->features & IVG_F_MSIX)) {
            printf("masktest: n/a without MSI-X\nRESULT masktest=na\n");
        } else {
            st = vm_command(a, IVG_CMD_MASKTEST, b->id, v, 0, 0);
            printf("masktest: vector %u masked, peer rang it: pending bit %s,"
                   " %llu early interrupts; unmasked: %llu delivered after "
                   "%.1f us, pending bit now %llu: %s\n", v,
                   sa->res[IVG_R_MT_PBA_SET] ? "set" : "NOT set",
                   (unsigned long long)sa->res[IVG_R_MT_EARLY],
                   (unsigned long long)sa->res[IVG_R_MT_DELIVERED],
                   sa->res[IVG_R_MT_TICKS] * 1000.0 / R.tsc_khz,
                   (unsigned long long)sa->res[IVG_R_MT_PBA_AFTER],
                   st == IVG_ST_OK ? "ok" : "FAILED");
            printf("RESULT masktest=%s\n", st == IVG_ST_OK ? "ok" : "fail");
            if (st != IVG_ST_OK) {
                fail("masktest: guest status %u", st);
            }
        }
    }

    if (R.o.reset) {
        pingpong_after_reset(a, b, v);
    }

    vm_command_ok(b, IVG_CMD_RESPOND, IVG_NO_PEER, 0, 0, 0);
    vm_exit(a);
    vm_exit(b);
}

/* One guest that runs @run by itself and exits */
static void mode_single(const char *run)
{
    Vm *vm = &R.vm[0];
    SharedSlot *s;

    if (!strcmp(R.o.device, "plain")) {
        plain_shm_create();
    } else {
        start_server();
    }
    vm->may_exit = true;
    vm_launch(vm, run);
    if (!wait_for(cond_exited, vm, R.deadline, "the guest to finish")) {
        fail("%s did not finish", vm->name);
    }
    s = slot_of(vm->id);
    if (s->magic != IVG_SLOT_MAGIC || s->id != (uint32_t)vm->id) {
        fail("%s: the guest never published its slot %d (exit status %d)",
             vm->name, vm->id, vm->proc.status);
    }
    printf("%s: peer %d, features 0x%x, vectors %u, intx gsi %u, "
           "BAR2 %u KiB, ready after %u ms\n", vm->name, vm->id, s->features,
           s->nvectors, s->intx_gsi, s->bar2_kib, s->boot_ms);
    if (!strcmp(run, "selftest")) {
        printf("selftest: %llu of %llu vectors delivered a self-doorbell; "
               "status %u\n", (unsigned long long)s->res[IVG_R_ST_OK],
               (unsigned long long)s->res[IVG_R_ST_VECTORS], s->status);
        if (s->features & IVG_F_MSIX) {
            printf("selftest: last vector masked: pending bit %llu, early "
                   "%llu, delivered after unmask %llu\n",
                   (unsigned long long)s->res[IVG_R_MT_PBA_SET],
                   (unsigned long long)s->res[IVG_R_MT_EARLY],
                   (unsigned long long)s->res[IVG_R_MT_DELIVERED]);
        }
    }
    if (!strcmp(run, "msixtest")) {
        printf("msixtest: vector %u, MSI-X disabled: pending bit %llu, "
               "%llu interrupts; enabled: %llu delivered; next doorbell "
               "%s; status %u\n", s->nvectors ? s->nvectors - 1 : 0,
               (unsigned long long)s->res[IVG_R_MT_PBA_SET],
               (unsigned long long)s->res[IVG_R_MT_EARLY],
               (unsigned long long)s->res[IVG_R_MT_DELIVERED],
               s->res[IVG_R_MX_AGAIN] ? "delivered" : "LOST", s->status);
        printf("RESULT msix_pba=%llu msix_early=%llu msix_delivered=%llu "
               "msix_again=%llu\n",
               (unsigned long long)s->res[IVG_R_MT_PBA_SET],
               (unsigned long long)s->res[IVG_R_MT_EARLY],
               (unsigned long long)s->res[IVG_R_MT_DELIVERED],
               (unsigned long long)s->res[IVG_R_MX_AGAIN]);
    }
    if (vm->proc.status != IVG_EXIT_STATUS(IVG_EXIT_OK)) {
        fail("%s exited with status %d (guest status %u)", vm->name,
             vm->proc.status, s->status);
    }
}

static bool cond_armed(void *arg)
{
    Vm *vm = arg;

    return slot_of(vm->id)->res[IVG_R_UP_ARMED] != 0;
}

static bool cond_ringing(void *arg)
{
    Vm *vm = arg;

    return slot_of(vm->id)->res[IVG_R_RG_COUNT] >= 1024;
}

/* The guest console line that starts with "ivsh-guest: @what" */
static bool console_line(Vm *vm, const char *what, char *buf, size_t size)
{
    char line[512], want[64];
    bool found = false;
    FILE *f = fopen(vm->con_path, "r");

    snprintf(want, sizeof(want), "ivsh-guest: %s", what);
    while (f && fgets(line, sizeof(line), f)) {
        if (!strncmp(line, want, strlen(want))) {
            line[strcspn(line, "\n")] = 0;
            snprintf(buf, size, "%.*s", (int)size - 1,
                     line + strlen("ivsh-guest: "));
            found = true;
        }
    }
    if (f) {
        fclose(f);
    }
    return found;
}

/*
 * Hot-unplug of B's device while A rings B back to back: B's guest waits
 * for the ACPI removal request, ejects, counts the interrupts that still
 * come and exits (33 = none after the eject).
 */
static void mode_unplug(void)
{
    Vm *a = &R.vm[0], *b = &R.vm[1];
    SharedSlot *sa, *sb;
    uint64_t at_del, at_exit;
    char reply[512], line[256] = "";
    uint32_t v, after;

    start_server();
    vm_launch(a, NULL);
    vm_launch(b, NULL);
    vm_wait_ready(a);
    vm_wait_ready(b);
    vm_qmp(a);
    vm_qmp(b);
    sa = slot_of(a->id);
    sb = slot_of(b->id);
    if (!(sb->features & IVG_F_MSIX)) {
        fail("%s: no MSI-X", b->name);
    }
    v = R.o.vector < 0 ? R.o.vectors - 1 : R.o.vector;
    vm_post(b, IVG_CMD_UNPLUG, 0, 0, 500, 0);
    if (!wait_for(cond_armed, b, R.deadline, "B to wait for the unplug")) {
        fail("%s did not arm the unplug", b->name);
    }
    sa->stop = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    vm_post(a, IVG_CMD_RING, b->id, v, 0, 0);
    if (!wait_for(cond_ringing, a, R.deadline, "A to ring")) {
        fail("%s does not ring", a->name);
    }
    at_del = sa->res[IVG_R_RG_COUNT];
    b->may_exit = true;
    if (!ivh_qmp_exec(&b->qmp, "{\"execute\": \"device_del\", "
                      "\"arguments\": {\"id\": \"ivsh\"}}", reply,
                      sizeof(reply), ivh_now_ms() + 10000)) {
        fail("%s: device_del: %s", b->name, reply);
    }
    if (!wait_for(cond_exited, b, R.deadline, "B to eject and report")) {
        fail("%s did not finish the unplug", b->name);
    }
    at_exit = sa->res[IVG_R_RG_COUNT];
    sa->stop = 1;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!wait_for(cond_done, a, R.deadline, "A to stop ringing")) {
        fail("%s did not stop ringing", a->name);
    }
    if (!console_line(b, "unplug:", line, sizeof(line))) {
        fail("%s: no unplug report (exit status %d)", b->name,
             b->proc.status);
    }
    after = 0;
    if (strstr(line, "latched, ")) {
        sscanf(strstr(line, "latched, "), "latched, %u", &after);
    }
    printf("unplug: %s rang %s %llu times before the device_del, %llu more "
           "until %s exited\n", a->name, b->name,
           (unsigned long long)at_del,
           (unsigned long long)(at_exit - at_del), b->name);
    printf("unplug: %s: %s\n", b->name, line);
    printf("RESULT unplug_after_eject=%u rings_during=%llu\n", after,
           (unsigned long long)(at_exit - at_del));
    vm_exit(a);
    if (b->proc.status != IVG_EXIT_STATUS(IVG_EXIT_OK)) {
        fail("%s took %u interrupts after the eject (exit status %d)",
             b->name, after, b->proc.status);
    }
}

static void parse_num(const char *opt, const char *arg, uint64_t *v)
{
    if (!ivh_parse_u64(arg, v)) {
        fprintf(stderr, "ivsh-pingpong: bad number for --%s: %s\n", opt,
                arg);
        exit(2);
    }
}

static void default_guest(char *buf, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", buf, size - 32);
    char *slash;

    buf[n > 0 ? n : 0] = 0;
    slash = strrchr(buf, '/');
    snprintf(slash ? slash + 1 : buf, 32, "ivsh-guest.bin");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "mode", required_argument, NULL, 'M' },
        { "qemu", required_argument, NULL, 'q' },
        { "server", required_argument, NULL, 's' },
        { "server-style", required_argument, NULL, 'Y' },
        { "guest", required_argument, NULL, 'g' },
        { "device", required_argument, NULL, 'd' },
        { "device-opts", required_argument, NULL, 'D' },
        { "machine", required_argument, NULL, 'm' },
        { "accel", required_argument, NULL, 'a' },
        { "cpu", required_argument, NULL, 'c' },
        { "vectors", required_argument, NULL, 'V' },
        { "vector", required_argument, NULL, 'v' },
        { "count", required_argument, NULL, 'n' },
        { "warmup", required_argument, NULL, 'w' },
        { "blast", required_argument, NULL, 'b' },
        { "copy", required_argument, NULL, 'C' },
        { "masktest", no_argument, NULL, 'k' },
        { "reset", no_argument, NULL, 'r' },
        { "pin", required_argument, NULL, 'P' },
        { "qemu-arg", required_argument, NULL, 'Q' },
        { "ioeventfd", required_argument, NULL, 'i' },
        { "shm-size", required_argument, NULL, 'S' },
        { "timeout", required_argument, NULL, 't' },
        { "keep", no_argument, NULL, 'K' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static char guest[512];
    struct sigaction sa = { .sa_handler = on_signal };
    uint64_t v;
    int c;

    setvbuf(stdout, NULL, _IOLBF, 0);
    default_guest(guest, sizeof(guest));
    R.o = (Options) {
        .qemu = "build/qemu/qemu-system-x86_64",
        .server = "build/upstream/contrib/ivshmem-server/ivshmem-server",
        .guest = guest,
        .device = "doorbell",
        .machine = "q35",
        .accel = "auto",
        .mode = "pingpong",
        .count = 1000,
        .warmup = 100,
        .vectors = 4,
        .blast = 10000,
        .copy = 1 << 20,
        .shm_size = 4 << 20,
        .timeout_s = 150,
        .pin = { -1, -1 },
    };
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'M':
            R.o.mode = optarg;
            break;
        case 'q':
            R.o.qemu = optarg;
            break;
        case 's':
            R.o.server = optarg;
            break;
        case 'Y':
            R.o.server_style = optarg;
            break;
        case 'g':
            R.o.guest = optarg;
            break;
        case 'd':
            R.o.device = optarg;
            break;
        case 'D':
            R.o.device_opts = optarg;
            break;
        case 'm':
            R.o.machine = optarg;
            break;
        case 'a':
            R.o.accel = optarg;
            break;
        case 'c':
            R.o.cpu = optarg;
            break;
        case 'V':
            parse_num("vectors", optarg, &R.o.vectors);
            break;
        case 'v':
            if (!strcmp(optarg, "last")) {
                R.o.vector = -1;
            } else {
                parse_num("vector", optarg, &v);
                R.o.vector = v;
            }
            break;
        case 'n':
            parse_num("count", optarg, &R.o.count);
            break;
        case 'w':
            parse_num("warmup", optarg, &R.o.warmup);
            break;
        case 'b':
            parse_num("blast", optarg, &R.o.blast);
            break;
        case 'C':
            parse_num("copy", optarg, &R.o.copy);
            break;
        case 'k':
            R.o.masktest = true;
            break;
        case 'r':
            R.o.reset = true;
            break;
        case 'P':
            if (sscanf(optarg, "%d,%d", &R.o.pin[0], &R.o.pin[1]) != 2) {
                usage();
                return 2;
            }
            break;
        case 'Q':
            if (R.o.nqemu_args == 8) {
                usage();
                return 2;
            }
            R.o.qemu_args[R.o.nqemu_args++] = optarg;
            break;
        case 'i':
            R.o.ioeventfd = optarg;
            break;
        case 'S':
            parse_num("shm-size", optarg, &R.o.shm_size);
            break;
        case 't':
            parse_num("timeout", optarg, &R.o.timeout_s);
            break;
        case 'K':
            R.o.keep = true;
            break;
        case 'h':
            usage();
            return 0;
        default:
            usage();
            return 2;
        }
    }
    R.type = device_type(R.o.device);
    if (optind != argc || !R.type ||
        (strcmp(R.o.machine, "pc") && strcmp(R.o.machine, "q35")) ||
        (strcmp(R.o.accel, "auto") && strcmp(R.o.accel, "kvm") &&
         strcmp(R.o.accel, "tcg")) ||
        (R.o.server_style && strcmp(R.o.server_style, "contrib") &&
         strcmp(R.o.server_style, "ivsh")) ||
        (R.o.ioeventfd && strcmp(R.o.ioeventfd, "on") &&
         strcmp(R.o.ioeventfd, "off")) ||
        !R.o.vectors || R.o.vectors > IVH_MAX_VECTORS ||
        R.o.vector >= (int64_t)R.o.vectors ||
        R.o.count > 0xffffffffu || R.o.blast > 0xffffffffu ||
        R.o.warmup > 0xffffffffu) {
        usage();
        return 2;
    }
    if (strcmp(R.o.mode, "pingpong") && strcmp(R.o.mode, "selftest") &&
        strcmp(R.o.mode, "boot") && strcmp(R.o.mode, "probe") &&
        strcmp(R.o.mode, "msixtest") && strcmp(R.o.mode, "unplug")) {
        usage();
        return 2;
    }
    if (access(R.o.qemu, X_OK) || access(R.o.guest, R_OK) ||
        (strcmp(R.o.device, "plain") && strcmp(R.o.mode, "probe") &&
         access(R.o.server, X_OK))) {
        fprintf(stderr, "ivsh-pingpong: need QEMU %s, guest %s and server "
                "%s\n", R.o.qemu, R.o.guest, R.o.server);
        return 2;
    }
    if (!strcmp(R.o.device, "plain") && strcmp(R.o.mode, "boot") &&
        strcmp(R.o.mode, "probe")) {
        fprintf(stderr, "ivsh-pingpong: ivshmem-plain has no doorbells: "
                "use --mode boot\n");
        return 2;
    }

    host_tsc_start();
    R.deadline = ivh_now_ms() + R.o.timeout_s * 1000;
    snprintf(R.dir, sizeof(R.dir), "/tmp/ivsh-pp.XXXXXX");
    if (!mkdtemp(R.dir)) {
        perror("ivsh-pingpong: mkdtemp");
        return 1;
    }
    R.have_dir = true;
    R.vm[0] = (Vm) { .name = "vmA", .qmp.fd = -1 };
    R.vm[1] = (Vm) { .name = "vmB", .qmp.fd = -1 };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    atexit(cleanup);

    if (!strcmp(R.o.mode, "probe")) {
        char why[256] = "";

        if (kvm_probe(why, sizeof(why))) {
            printf("kvm: usable\nRESULT kvm=yes\n");
            return 0;
        }
        printf("kvm: unusable: %s\nRESULT kvm=no\n", why);
        return EXIT_SKIP;
    }
    if (!qemu_has_device(R.type)) {
        skip("%s has no %s", R.o.qemu, R.type);
    }
    resolve_accel();
    printf("qemu: %s, device %s (%s), machine %s, cpu %s\n", R.o.qemu,
           R.type, R.o.device, R.o.machine, R.cpu ? R.cpu : "default");

    if (!strcmp(R.o.mode, "unplug") && strcmp(R.o.machine, "pc")) {
        fprintf(stderr, "ivsh-pingpong: --mode unplug needs --machine pc "
                "(ACPI PCI hotplug)\n");
        return 2;
    }
    if (!strcmp(R.o.mode, "pingpong")) {
        mode_pingpong();
    } else if (!strcmp(R.o.mode, "unplug")) {
        mode_unplug();
    } else {
        mode_single(R.o.mode);
    }
    printf("RESULT status=pass accel=%s\n", R.accel);
    return 0;
}
