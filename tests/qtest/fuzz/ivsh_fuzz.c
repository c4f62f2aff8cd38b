/*
 * Fuzz target for the ivshmem devices: the guest and the server at once
 *
 * Each input builds one device (ivshmem-plain on a memfd or file memdev,
 * ivshmem-doorbell or the legacy ivshmem on a chardev connected to a
 * socket this target holds as the "server"), then interprets the rest of
 * the input as an interleaving of guest accesses (BAR0, the MSI-X table
 * and PBA in BAR1, BAR2, at any width and offset; config space writes:
 * BAR moves, command register, MSI-X enable and function mask), server
 * messages (peers' eventfds, disconnects, garbage, fds of the wrong kind,
 * partial messages, EOF), eventfd signals from peers, device and machine
 * resets, hot-unplug and re-plug.  At the end it unplugs the device,
 * removes the chardev and the memdev, and checks that QEMU holds no more
 * file descriptors than before the input: QEMU 10.0's fuzz loop does not
 * fork, so every input must leave the process as it found it.
 *
 * Input: a 4-byte header, then operations (an opcode byte and fixed-size
 * operands; missing bytes read as zero).  See IvshFuzzHeader and
 * enum IvshFuzzOp; tests/fuzz/ivsh/gen-seeds.py writes the seed corpus.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "qemu/bswap.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/memfd.h"
#include "qemu/module.h"
#include "qemu/rcu.h"
#include "qemu/config-file.h"
#include "qemu/option.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-char.h"
#include "qapi/qapi-commands-qdev.h"
#include "qobject/qdict.h"
#include "qom/object_interfaces.h"
#include "chardev/char.h"
#include "monitor/qdev.h"
#include "hw/qdev-core.h"
#include "hw/pci/pci.h"
#include "hw/sysbus.h"
#include "system/runstate.h"
#include "tests/qtest/libqtest.h"
#include "fuzz.h"

#define IVSH_FUZZ_DEV       "ivsh-fuzz"
#define IVSH_FUZZ_CHR       "ivsh-fuzz-chr"
#define IVSH_FUZZ_MEM       "ivsh-fuzz-mem"
#define IVSH_FUZZ_SLOT      4
#define IVSH_FUZZ_DEVFN     (IVSH_FUZZ_SLOT << 3)

/* Where the MAP operation puts the BARs (the pc machine's PCI hole) */
#define IVSH_FUZZ_BAR0      0xe0000000ULL
#define IVSH_FUZZ_BAR1      0xe0001000ULL
#define IVSH_FUZZ_BAR2      0xe0100000ULL

/* PIIX4's ACPI PCI hotplug: the eject register of bus 0 */
#define IVSH_FUZZ_ACPI_EJ   0xae08

#define IVSH_FUZZ_MAX_FDS   64

/*
 * An input that runs longer than this is a hang.  libFuzzer's -timeout
 * relies on SIGALRM, which QEMU blocks (it reads signals through a
 * signalfd), so the target keeps its own watchdog.
 */
#define IVSH_FUZZ_HANG_S    10

enum IvshFuzzKind {
    KIND_PLAIN_MEMFD,
    KIND_PLAIN_FILE,
    KIND_DOORBELL,
    KIND_LEGACY_INTX,
    KIND_LEGACY_MSI,
    KIND_LEGACY_MEMDEV,
    KIND_MAX
};

enum IvshFuzzOp {
    OP_BAR_READ,        /* bar, offset:4, width */
    OP_BAR_WRITE,       /* bar, offset:4, width, value:8 */
    OP_CFG_READ,        /* offset, width */
    OP_CFG_WRITE,       /* offset, width, value:4 */
    OP_MAP,             /* command register bits */
    OP_MSIX_CTRL,       /* bit 0 enable, bit 1 function mask */
    OP_MSIX_ENTRY,      /* vector, target, data:4, masked */
    OP_SERVER_MSG,      /* kind, id:2, value:8 */
    OP_SIGNAL,          /* fd index, action */
    OP_RESET,           /* kind */
    OP_UNPLUG,
    OP_REPLUG,
    OP_DOORBELL,        /* peer:2, vector:2 */
    OP_REG_WRITE,       /* register, value:4 */
    OP_FLUSH,           /* clock step */
    OP_MAX
};

typedef struct IvshFuzzInput {
    const uint8_t *data;
    size_t size;
} IvshFuzzInput;

typedef struct IvshFuzz {
    QTestState *qts;
    char *listen_name;          /* an abstract UNIX socket */
    int listen_fd;              /* the "server" accepts the chardev here */
    int srv;                    /* the server's end of the connection */
    int fds[IVSH_FUZZ_MAX_FDS]; /* eventfds sent, kept to signal them */
    unsigned nr_fds;
    unsigned baseline_fds;      /* QEMU's fds when the input started */
    bool check_fds;
    /* this input's configuration */
    unsigned kind;
    unsigned vectors;
    unsigned own_id;
    uint64_t shm_size;
    unsigned setup_mode;
    char *dev_opts;
    bool plugged;
    bool have_mem;
    bool have_chr;
} IvshFuzz;

static IvshFuzz ivf = { .listen_fd = -1, .srv = -1 };

/* Start time of the running input (0: none), for the watchdog */
static int64_t ivsh_fuzz_started_ms;
static pthread_t ivsh_fuzz_main_thread;

static void *ivsh_fuzz_watchdog(void *opaque)
{
    int64_t start;

    for (;;) {
        g_usleep(G_USEC_PER_SEC / 2);
        start = qatomic_read(&ivsh_fuzz_started_ms);
        if (start &&
            g_get_monotonic_time() / 1000 - start > IVSH_FUZZ_HANG_S * 1000) {
            fprintf(stderr, "ivsh-fuzz: an input has run for more than %d s: "
                    "a hang; the main thread's stack follows\n",
                    IVSH_FUZZ_HANG_S);
            /* libFuzzer's SIGABRT handler prints it and saves the input */
            pthread_kill(ivsh_fuzz_main_thread, SIGABRT);
            g_usleep(5 * G_USEC_PER_SEC);
            abort();
        }
    }
    return NULL;
}

static void ivsh_fuzz_rcu_nop(struct rcu_head *head)
{
}

/*
 * Run the pending RCU callbacks.  The RCU thread waits up to 50 ms for a
 * batch of 30 callbacks to pile up; queueing that many no-ops first makes
 * each drain take a grace period instead, 10 times faster.
 */
static void drain_rcu(void)
{
    static struct rcu_head nops[32];
    unsigned i;

    for (i = 0; i < ARRAY_SIZE(nops); i++) {
        call_rcu1(&nops[i], ivsh_fuzz_rcu_nop);
    }
    drain_call_rcu();
}

static uint64_t take(IvshFuzzInput *in, unsigned bytes)
{
    uint64_t v = 0;
    unsigned i;

    for (i = 0; i < bytes; i++) {
        if (in->size) {
            v |= (uint64_t)in->data[0] << (8 * i);
            in->data++;
            in->size--;
        }
    }
    return v;
}

/* --- the guest side: config space through 0xcf8/0xcfc, BARs ----------- */

static uint32_t cfg_read(unsigned off, unsigned width)
{
    QTestState *s = ivf.qts;

    qtest_outl(s, 0xcf8, 0x80000000u | (IVSH_FUZZ_DEVFN << 8) | (off & 0xfc));
    switch (width) {
    case 1:
        return qtest_inb(s, 0xcfc + (off & 3));
    case 2:
        return qtest_inw(s, 0xcfc + (off & 2));
    default:
        return qtest_inl(s, 0xcfc);
    }
}

static void cfg_write(unsigned off, unsigned width, uint32_t val)
{
    QTestState *s = ivf.qts;

    qtest_outl(s, 0xcf8, 0x80000000u | (IVSH_FUZZ_DEVFN << 8) | (off & 0xfc));
    switch (width) {
    case 1:
        qtest_outb(s, 0xcfc + (off & 3), val);
        break;
    case 2:
        qtest_outw(s, 0xcfc + (off & 2), val);
        break;
    default:
        qtest_outl(s, 0xcfc, val);
        break;
    }
}

/* The address BAR @bar is mapped at, 0 when it is not */
static uint64_t bar_addr(unsigned bar)
{
    uint32_t lo = cfg_read(PCI_BASE_ADDRESS_0 + 4 * bar, 4);
    uint64_t addr;

    if (lo == 0xffffffff || (lo & PCI_BASE_ADDRESS_SPACE_IO)) {
        return 0;
    }
    addr = lo & PCI_BASE_ADDRESS_MEM_MASK;
    if ((lo & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64
        && bar < 5) {
        addr |= (uint64_t)cfg_read(PCI_BASE_ADDRESS_0 + 4 * bar + 4, 4) << 32;
    }
    return addr;
}

static uint64_t bar_size(unsigned bar)
{
    switch (bar) {
    case 0:
        return 0x100;
    case 1:
        return 0x1000;
    default:
        return ivf.shm_size;
    }
}

static unsigned width_of(uint64_t sel)
{
    return 1u << (sel & 3);
}

static void bar_access(unsigned bar, uint64_t off, unsigned width,
                       uint64_t val, bool write)
{
    QTestState *s = ivf.qts;
    uint64_t base = bar_addr(bar);
    uint64_t addr;

    if (!base) {
        return;
    }
    /* Mostly inside the BAR, sometimes just past its end */
    addr = base + off % (bar_size(bar) + 8);
    switch (width | (write ? 0x10 : 0)) {
    case 1:
        qtest_readb(s, addr);
        break;
    case 2:
        qtest_readw(s, addr);
        break;
    case 4:
        qtest_readl(s, addr);
        break;
    case 8:
        qtest_readq(s, addr);
        break;
    case 0x11:
        qtest_writeb(s, addr, val);
        break;
    case 0x12:
        qtest_writew(s, addr, val);
        break;
    case 0x14:
        qtest_writel(s, addr, val);
        break;
    default:
        qtest_writeq(s, addr, val);
        break;
    }
}

static void map_bars(uint8_t cmd)
{
    cfg_write(PCI_BASE_ADDRESS_0, 4, IVSH_FUZZ_BAR0);
    cfg_write(PCI_BASE_ADDRESS_1, 4, IVSH_FUZZ_BAR1);
    cfg_write(PCI_BASE_ADDRESS_2, 4, IVSH_FUZZ_BAR2);
    cfg_write(PCI_BASE_ADDRESS_3, 4, 0);
    cfg_write(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
              (cmd & (PCI_COMMAND_INTX_DISABLE >> 8)) << 8);
}

/* Offset of the MSI-X capability, 0 if there is none */
static unsigned msix_cap(void)
{
    unsigned pos, n;

    if (!(cfg_read(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST)) {
        return 0;
    }
    pos = cfg_read(PCI_CAPABILITY_LIST, 1) & ~3u;
    for (n = 0; pos && n < 48; n++) {
        if (cfg_read(pos + PCI_CAP_LIST_ID, 1) == PCI_CAP_ID_MSIX) {
            return pos;
        }
        pos = cfg_read(pos + PCI_CAP_LIST_NEXT, 1) & ~3u;
    }
    return 0;
}

static void msix_ctrl(uint8_t bits)
{
    unsigned cap = msix_cap();
    uint16_t ctrl;

    if (!cap) {
        return;
    }
    ctrl = cfg_read(cap + PCI_MSIX_FLAGS, 2);
    ctrl &= ~(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    ctrl |= (bits & 1 ? PCI_MSIX_FLAGS_ENABLE : 0) |
            (bits & 2 ? PCI_MSIX_FLAGS_MASKALL : 0);
    cfg_write(cap + PCI_MSIX_FLAGS, 2, ctrl);
}

static void msix_entry(unsigned vector, uint8_t target, uint32_t data,
                       bool masked)
{
    QTestState *s = ivf.qts;
    uint64_t table = bar_addr(1);
    uint64_t addr;

    if (!table) {
        return;
    }
    table += PCI_MSIX_ENTRY_SIZE * (vector % ivf.vectors);
    switch (target % 5) {
    case 0:                     /* guest RAM, as the qtests do */
        addr = 0x200000 + 4 * (vector % ivf.vectors);
        break;
    case 1:                     /* the local APIC */
        addr = 0xfee00000;
        break;
    case 2:                     /* our own doorbell register */
        addr = bar_addr(0) + 0x0c;
        break;
    case 3:                     /* the shared memory */
        addr = bar_addr(2);
        break;
    default:                    /* the MSI-X table itself */
        addr = table;
        break;
    }
    qtest_writel(s, table + PCI_MSIX_ENTRY_LOWER_ADDR, addr);
    qtest_writel(s, table + PCI_MSIX_ENTRY_UPPER_ADDR, addr >> 32);
    qtest_writel(s, table + PCI_MSIX_ENTRY_DATA, data);
    qtest_writel(s, table + PCI_MSIX_ENTRY_VECTOR_CTRL,
                 masked ? PCI_MSIX_ENTRY_CTRL_MASKBIT : 0);
}

/* --- the server side -------------------------------------------------- */

static void srv_send(int64_t msg, int fd)
{
    struct msghdr mh = { 0 };
    struct iovec iov = { .iov_base = &msg, .iov_len = sizeof(msg) };
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct cmsghdr *c;

    if (ivf.srv < 0) {
        return;
    }
    msg = cpu_to_le64(msg);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (fd >= 0) {
        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = sizeof(u.buf);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    /* The socket buffer is large; a full one drops the message */
    if (sendmsg(ivf.srv, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        return;
    }
}

/* A new eventfd, kept by the target (the peer's side) */
static int new_eventfd(bool nonblock)
{
    int fd;

    if (ivf.nr_fds >= IVSH_FUZZ_MAX_FDS) {
        return -1;
    }
    fd = eventfd(0, EFD_CLOEXEC | (nonblock ? EFD_NONBLOCK : 0));
    if (fd >= 0) {
        ivf.fds[ivf.nr_fds++] = fd;
    }
    return fd;
}

/* An fd that is not an eventfd; the caller closes it after sending */
static int wrong_fd(unsigned sel, int *other)
{
    int p[2];

    *other = -1;
    switch (sel % 4) {
    case 0:
        if (pipe2(p, O_CLOEXEC) < 0) {
            return -1;
        }
        *other = p[1];
        return p[0];
    case 1:
        return qemu_memfd_create("ivsh-fuzz-wrong", 4096, false, 0, 0, NULL);
    case 2:
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0) {
            return -1;
        }
        *other = p[1];
        return p[0];
    default:
        return open("/dev/null", O_RDWR | O_CLOEXEC);
    }
}

static int new_shm(uint64_t size)
{
    return qemu_memfd_create("ivsh-fuzz-shm", size, false, 0, 0, NULL);
}

static void server_msg(uint8_t kind, uint16_t id, uint64_t val)
{
    int fd, other;
    uint8_t buf[8];

    switch (kind % 10) {
    case 0:                     /* a peer's next eventfd */
        srv_send(id % 8, new_eventfd(!(val & 1)));
        break;
    case 1:                     /* our own next eventfd */
        srv_send(ivf.own_id, new_eventfd(!(val & 1)));
        break;
    case 2:                     /* a peer left */
        srv_send(id % 8, -1);
        break;
    case 3:                     /* "we" left */
        srv_send(ivf.own_id, -1);
        break;
    case 4:                     /* any value, no fd */
        srv_send(val, -1);
        break;
    case 5:                     /* a peer ID with an fd of the wrong kind */
        fd = wrong_fd(val, &other);
        srv_send(val & 0x100 ? (int64_t)val : id % 8, fd);
        close(fd);
        if (other >= 0) {
            close(other);
        }
        break;
    case 6:                     /* a second shared memory */
        fd = new_shm(4096);
        srv_send(-1, fd);
        close(fd);
        break;
    case 7:                     /* part of a message */
        if (ivf.srv >= 0) {
            stq_le_p(buf, val);
            if (send(ivf.srv, buf, 1 + id % 7, MSG_DONTWAIT | MSG_NOSIGNAL)) {
                /* nothing to do either way */
            }
        }
        break;
    case 8:                     /* an eventfd we already sent, again */
        if (ivf.nr_fds) {
            srv_send(id % 8, ivf.fds[val % ivf.nr_fds]);
        }
        break;
    default:                    /* the server goes away */
        if (ivf.srv >= 0) {
            close(ivf.srv);
            ivf.srv = -1;
        }
        break;
    }
}

/*
 * Read or write @fd without blocking the target (which is also QEMU's
 * main loop), whatever a fuzz input did to its O_NONBLOCK: the flag is
 * set for the call and restored, with QEMU not running in between.
 */
static void peer_io(int fd, bool write_it, uint64_t v)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0) {
        return;
    }
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if ((write_it ? write(fd, &v, sizeof(v)) : read(fd, &v, sizeof(v))) < 0) {
        /* a full or empty counter: fine */
    }
    fcntl(fd, F_SETFL, flags);
}

static void peer_signal(uint8_t index, uint8_t action)
{
    int fd;

    if (!ivf.nr_fds) {
        return;
    }
    fd = ivf.fds[index % ivf.nr_fds];
    switch (action % 5) {
    case 0:
        peer_io(fd, true, 1);
        break;
    case 1:                     /* a peer drains its eventfd */
        peer_io(fd, false, 0);
        break;
    case 2:                     /* a peer makes the shared file blocking */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        break;
    case 3:
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        break;
    default:                    /* one below saturation */
        peer_io(fd, true, 0xfffffffffffffffdULL);
        break;
    }
}

/* --- building and removing the device --------------------------------- */

static void connect_chardev(void)
{
    g_autofree char *opts = NULL;
    QemuOpts *qo;
    Error *err = NULL;
    Chardev *chr;

    opts = g_strdup_printf("socket,id=%s,path=%s,abstract=on",
                           IVSH_FUZZ_CHR, ivf.listen_name);
    qo = qemu_opts_parse_noisily(qemu_find_opts("chardev"), opts, true);
    g_assert(qo);
    chr = qemu_chr_new_from_opts(qo, NULL, &err);
    qemu_opts_del(qo);
    if (!chr) {
        error_report_err(err);
        abort();
    }
    ivf.have_chr = true;
    ivf.srv = accept4(ivf.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    g_assert(ivf.srv >= 0);
}

static void remove_chardev(void)
{
    if (ivf.have_chr) {
        /*
         * An unplugged device (or one whose realize failed) is freed, and
         * lets go of the chardev, in an RCU callback (bus_remove_child)
         */
        drain_rcu();
        qmp_chardev_remove(IVSH_FUZZ_CHR, &error_abort);
        ivf.have_chr = false;
    }
    if (ivf.srv >= 0) {
        close(ivf.srv);
        ivf.srv = -1;
    }
}

/* The server's set-up messages, valid unless the header says otherwise */
static void server_setup(void)
{
    int fd;

    srv_send(ivf.setup_mode == 7 ? 1 : 0, -1);
    srv_send(ivf.own_id, -1);
    if (ivf.setup_mode == 6) {
        remove_chardev();       /* EOF before the shared memory */
        return;
    }
    fd = new_shm(ivf.shm_size);
    srv_send(-1, fd);
    close(fd);
}

static void plug(void)
{
    g_auto(GStrv) kv = g_strsplit(ivf.dev_opts, ",", -1);
    QDict *opts;
    DeviceState *dev;
    Error *err = NULL;
    char **p;

    if (ivf.kind == KIND_DOORBELL || ivf.kind == KIND_LEGACY_INTX ||
        ivf.kind == KIND_LEGACY_MSI) {
        connect_chardev();
        server_setup();
    }
    opts = qdict_new();
    qdict_put_str(opts, "id", IVSH_FUZZ_DEV);
    qdict_put_str(opts, "addr", stringify(IVSH_FUZZ_SLOT));
    qdict_put_str(opts, "driver", kv[0]);
    for (p = kv + 1; *p; p++) {
        char *eq = strchr(*p, '=');

        *eq = 0;
        qdict_put_str(opts, *p, eq + 1);
    }
    dev = qdev_device_add_from_qdict(opts, false, &err);
    qobject_unref(opts);
    if (dev) {
        object_unref(OBJECT(dev));
        ivf.plugged = true;
    } else {
        error_free(err);
        /* The set-up is consumed or not: a new connection next time */
        remove_chardev();
    }
}

static void unplug(void)
{
    DeviceState *dev;

    if (!ivf.plugged) {
        return;
    }
    /* device_del, then the guest's answer: eject the slot */
    qmp_device_del(IVSH_FUZZ_DEV, NULL);
    qtest_outl(ivf.qts, IVSH_FUZZ_ACPI_EJ, 1u << IVSH_FUZZ_SLOT);
    flush_events(ivf.qts);
    dev = qdev_find_recursive(sysbus_get_default(), IVSH_FUZZ_DEV);
    g_assert(!dev);
    ivf.plugged = false;
    remove_chardev();
}

static void add_memdev(void)
{
    g_autofree char *size = g_strdup_printf("%" PRIu64, ivf.shm_size);
    Error *err = NULL;
    Object *o;

    if (ivf.kind == KIND_PLAIN_FILE) {
        /* A directory: QEMU creates an unlinked file in it */
        o = object_new_with_props("memory-backend-file",
                                  object_get_objects_root(), IVSH_FUZZ_MEM,
                                  &err, "size", size, "share", "on",
                                  "mem-path", g_get_tmp_dir(), NULL);
    } else {
        o = object_new_with_props("memory-backend-memfd",
                                  object_get_objects_root(), IVSH_FUZZ_MEM,
                                  &err, "size", size, "share", "on", NULL);
    }
    if (!o) {
        error_free(err);
        return;
    }
    ivf.have_mem = true;
}

static const char *const ivsh_kind_driver[KIND_MAX] = {
    [KIND_PLAIN_MEMFD] = "ivshmem-plain",
    [KIND_PLAIN_FILE] = "ivshmem-plain",
    [KIND_DOORBELL] = "ivshmem-doorbell",
    [KIND_LEGACY_INTX] = "ivshmem",
    [KIND_LEGACY_MSI] = "ivshmem",
    [KIND_LEGACY_MEMDEV] = "ivshmem",
};

/*
 * Header: kind; flags (vectors, ioeventfd, master/role); own ID and
 * budgets; shared memory size and set-up variant.
 */
static void configure(IvshFuzzInput *in)
{
    static const unsigned vectors[] = { 1, 2, 4, 8 };
    static const uint64_t sizes[] = { 4096, 65536, 1 << 20, 3000 };
    uint8_t kind = take(in, 1), flags = take(in, 1);
    uint8_t id = take(in, 1), shm = take(in, 1);
    GString *o = g_string_new(NULL);

    ivf.kind = kind % KIND_MAX;
    ivf.vectors = vectors[flags & 3];
    ivf.own_id = id & 7;
    ivf.shm_size = sizes[shm & 3];
    if (ivf.kind == KIND_PLAIN_MEMFD || ivf.kind == KIND_PLAIN_FILE ||
        ivf.kind == KIND_LEGACY_MEMDEV) {
        /*
         * Whole pages for a memdev: QEMU 10.0's memory-backend-memfd keeps
         * an fd after refusing a size that is not (not the devices' fault)
         */
        ivf.shm_size = ROUND_UP(ivf.shm_size, qemu_real_host_page_size());
    }
    ivf.setup_mode = (shm >> 2) & 7;

    g_string_append(o, ivsh_kind_driver[ivf.kind]);
    switch (ivf.kind) {
    case KIND_PLAIN_MEMFD:
    case KIND_PLAIN_FILE:
        g_string_append_printf(o, ",memdev=%s", IVSH_FUZZ_MEM);
        if (flags & 0x10) {
            g_string_append(o, ",master=on");
        }
        break;
    case KIND_DOORBELL:
        g_string_append_printf(o, ",chardev=%s,vectors=%u,ioeventfd=%s",
                               IVSH_FUZZ_CHR, ivf.vectors,
                               flags & 8 ? "on" : "off");
        if (flags & 0x10) {
            g_string_append(o, ",master=on");
        }
        break;
    case KIND_LEGACY_INTX:
        g_string_append_printf(o, ",chardev=%s,msi=off", IVSH_FUZZ_CHR);
        break;
    case KIND_LEGACY_MSI:
        g_string_append_printf(o, ",chardev=%s,vectors=%u,ioeventfd=%s",
                               IVSH_FUZZ_CHR, ivf.vectors,
                               flags & 8 ? "on" : "off");
        break;
    default:
        g_string_append_printf(o, ",memdev=%s,msi=%s", IVSH_FUZZ_MEM,
                               flags & 8 ? "on" : "off");
        break;
    }
    if (ivf.kind == KIND_LEGACY_INTX || ivf.kind == KIND_LEGACY_MSI ||
        ivf.kind == KIND_LEGACY_MEMDEV) {
        if (flags & 0x20) {
            g_string_append_printf(o, ",role=%s",
                                   flags & 0x10 ? "master" : "peer");
        }
        if (flags & 0x40) {
            g_string_append(o, ",use64=0");
        }
    }
    if (ivf.kind == KIND_DOORBELL || ivf.kind == KIND_LEGACY_INTX ||
        ivf.kind == KIND_LEGACY_MSI) {
        g_string_append(o, ",x-setup-timeout=200");
        if (id & 0x40) {
            g_string_append(o, ",x-ioeventfd-budget=1");
        }
        if (id & 0x80) {
            g_string_append(o, ",x-max-eventfds=3");
        }
    }
    ivf.vectors = ivf.kind == KIND_LEGACY_INTX ? 1 : ivf.vectors;
    g_free(ivf.dev_opts);
    ivf.dev_opts = g_string_free(o, false);
}

static unsigned count_fds(void)
{
    GDir *d = g_dir_open("/proc/self/fd", 0, NULL);
    unsigned n = 0;

    g_assert(d);
    while (g_dir_read_name(d)) {
        n++;
    }
    g_dir_close(d);
    return n;
}

static void list_fds(void)
{
    GDir *d = g_dir_open("/proc/self/fd", 0, NULL);
    const char *name;

    while ((name = g_dir_read_name(d))) {
        g_autofree char *p = g_strdup_printf("/proc/self/fd/%s", name);
        g_autofree char *t = g_file_read_link(p, NULL);

        fprintf(stderr, "  fd %s -> %s\n", name, t ? t : "?");
    }
    g_dir_close(d);
}

static void teardown(void)
{
    unsigned i, n;

    unplug();
    /* A failed plug leaves no device; remove what the input built */
    remove_chardev();
    if (ivf.have_mem) {
        user_creatable_del(IVSH_FUZZ_MEM, &error_abort);
        ivf.have_mem = false;
    }
    for (i = 0; i < ivf.nr_fds; i++) {
        close(ivf.fds[i]);
    }
    ivf.nr_fds = 0;
    fuzz_reset(ivf.qts);
    flush_events(ivf.qts);
    /*
     * Memory regions and their fds go away in RCU callbacks, which may
     * queue further ones (a RAMBlock after its region)
     */
    drain_rcu();
    drain_rcu();
    n = count_fds();
    if (ivf.check_fds && n > ivf.baseline_fds) {
        fprintf(stderr, "ivsh-fuzz: QEMU holds %u fds after the input, "
                "%u before: a leak\n", n, ivf.baseline_fds);
        list_fds();
        abort();
    }
}

static void ivsh_fuzz(QTestState *s, const unsigned char *data, size_t size)
{
    IvshFuzzInput in = { data, size };
    uint64_t a, b, c, d;

    ivf.qts = s;
    qatomic_set(&ivsh_fuzz_started_ms, g_get_monotonic_time() / 1000);
    /*
     * Between inputs libFuzzer may open fds of its own (the symbolizer's
     * pipes), so the baseline is taken here
     */
    ivf.baseline_fds = count_fds();
    configure(&in);
    if (ivf.kind == KIND_PLAIN_MEMFD || ivf.kind == KIND_PLAIN_FILE ||
        ivf.kind == KIND_LEGACY_MEMDEV) {
        add_memdev();
    }
    plug();
    flush_events(s);

    while (in.size) {
        switch (take(&in, 1) % OP_MAX) {
        case OP_BAR_READ:
            a = take(&in, 1);
            b = take(&in, 4);
            c = take(&in, 1);
            bar_access(a % 3, b, width_of(c), 0, false);
            break;
        case OP_BAR_WRITE:
            a = take(&in, 1);
            b = take(&in, 4);
            c = take(&in, 1);
            d = take(&in, 8);
            bar_access(a % 3, b, width_of(c), d, true);
            break;
        case OP_CFG_READ:
            a = take(&in, 1);
            b = take(&in, 1);
            cfg_read(a, width_of(b));
            break;
        case OP_CFG_WRITE:
            a = take(&in, 1);
            b = take(&in, 1);
            c = take(&in, 4);
            cfg_write(a, width_of(b), c);
            break;
        case OP_MAP:
            map_bars(take(&in, 1));
            break;
        case OP_MSIX_CTRL:
            msix_ctrl(take(&in, 1));
            break;
        case OP_MSIX_ENTRY:
            a = take(&in, 1);
            b = take(&in, 1);
            c = take(&in, 4);
            d = take(&in, 1);
            msix_entry(a, b, c, d & 1);
            break;
        case OP_SERVER_MSG:
            a = take(&in, 1);
            b = take(&in, 2);
            c = take(&in, 8);
            server_msg(a, b, c);
            break;
        case OP_SIGNAL:
            a = take(&in, 1);
            b = take(&in, 1);
            peer_signal(a, b);
            break;
        case OP_RESET:
            if (take(&in, 1) & 1) {
                fuzz_reset(s);
            } else if (ivf.plugged) {
                device_cold_reset(qdev_find_recursive(sysbus_get_default(),
                                                      IVSH_FUZZ_DEV));
            }
            break;
        case OP_UNPLUG:
            unplug();
            break;
        case OP_REPLUG:
            unplug();
            plug();
            break;
        case OP_DOORBELL:
            a = take(&in, 2);
            b = take(&in, 2);
            bar_access(0, 0x0c, 4, (a << 16) | b, true);
            break;
        case OP_REG_WRITE:
            a = take(&in, 1);
            b = take(&in, 4);
            bar_access(0, (a & 3) * 4, 4, b, true);
            break;
        default:
            /* qtest refuses a step of 0 */
            qtest_clock_step(s, (take(&in, 2) + 1) * 1000);
            break;
        }
        flush_events(s);
    }
    teardown();
    qatomic_set(&ivsh_fuzz_started_ms, 0);
}

static void ivsh_fuzz_pre(QTestState *s)
{
    /* ivshmem-doorbell, valid set-up, one own eventfd rung */
    static const uint8_t warmup[] = {
        KIND_DOORBELL, 0, 1, 1, OP_MAP, 0, OP_SERVER_MSG, 1, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, OP_SIGNAL, 0, 0,
    };
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    pthread_t thread;
    size_t len;

    ivf.qts = s;
    ivf.listen_name = g_strdup_printf("ivsh-fuzz-%d-%u", getpid(),
                                      g_random_int());
    len = strlen(ivf.listen_name);
    g_assert(len < sizeof(sa.sun_path) - 1);
    memcpy(sa.sun_path + 1, ivf.listen_name, len);
    ivf.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert(ivf.listen_fd >= 0);
    g_assert(bind(ivf.listen_fd, (struct sockaddr *)&sa,
                  offsetof(struct sockaddr_un, sun_path) + 1 + len) == 0);
    g_assert(listen(ivf.listen_fd, 4) == 0);
    ivsh_fuzz_main_thread = pthread_self();
    g_assert(pthread_create(&thread, NULL, ivsh_fuzz_watchdog, NULL) == 0);
    /*
     * One device first: what QEMU opens once for good (e.g. the protocol
     * module's /proc/self/fd) is part of the baseline.
     */
    ivsh_fuzz(s, warmup, sizeof(warmup));
    ivf.check_fds = true;
}

static GString *ivsh_fuzz_cmdline(FuzzTarget *t)
{
    return g_string_new(TARGET_NAME " -machine pc,accel=qtest -m 64 "
                        "-display none -nodefaults");
}

static void ivsh_fuzz_register(void)
{
    fuzz_add_target(&(FuzzTarget){
        .name = "ivsh",
        .description = "ivshmem-plain, -doorbell and legacy ivshmem: guest "
                       "accesses, server messages, resets, hot-plug",
        .get_init_cmdline = ivsh_fuzz_cmdline,
        .pre_fuzz = ivsh_fuzz_pre,
        .fuzz = ivsh_fuzz,
    });
}

fuzz_target_init(ivsh_fuzz_register);
