/*
 * libivshmem-guest: use the inter-VM shared memory PCI device from a Linux
 * guest's user space
 *
 * Hazards: BAR0 is mapped as the whole page that holds it (sysfs and the
 * driver both map pages), so the register block starts at the BAR's
 * offset in that page.  Register accesses are 32-bit little-endian only,
 * as the device requires.  The INTx path relies on uio_pci_generic
 * masking INTx in the command register on each interrupt: the library
 * acks the device by reading IntrStatus, then unmasks by writing 1 to
 * /dev/uioN.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <pci/pci.h>

#include "hw/misc/ivsh-regs.h"
#include "ivshmem-guest-uapi.h"
#include "ivshmem-guest.h"

#define SYSFS_PCI           "/sys/bus/pci/devices"
#define IVG_POLL_NS         200000      /* shared memory poll interval */
#define IVG_MSIX_CTRL       2           /* Message Control in the MSI-X cap */
#define IVG_PCI_COMMAND_HI  5           /* high byte of the Command register */
#define IVG_PCI_COMMAND_HI_INTX_DISABLE (PCI_COMMAND_DISABLE_INTx >> 8)

struct IvgDevice {
    IvgInfo info;
    int fd;                     /* /dev/ivshmemN, or -1 */
    int uio_fd;                 /* /dev/uioN, or -1 (opened on demand) */
    int config_fd;              /* its sysfs config space, with uio_fd */
    bool uio_armed;             /* latched IntrStatus taken, INTx unmasked */
    volatile uint8_t *shm;      /* BAR2: shared with other VMs */
    uint64_t shm_size;
    void *regs_map;
    size_t regs_map_len;
    volatile uint32_t *regs;    /* BAR0: device registers */
    bool shm_wb;
    char shm_how[96];
    unsigned nvectors;
    int *vector_fds;            /* ivshmem-guest vector files, -1 if closed */
};

static bool ivg_fail(IvgError *err, IvgErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool ivg_fail(IvgError *err, IvgErrorCode code, const char *fmt, ...)
{
    va_list ap;

    if (err) {
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return false;
}

const char *ivg_mode_name(IvgMode mode)
{
    switch (mode) {
    case IVG_MODE_PLAIN:
        return "plain";
    case IVG_MODE_DOORBELL:
        return "doorbell";
    case IVG_MODE_LEGACY:
        return "legacy";
    case IVG_MODE_LEGACY_INTX:
        return "legacy-intx";
    }
    return "unknown";
}

uint64_t ivg_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * The guest tools do not link QEMU's util library, so this is
 * qemu_real_host_page_size() for them.
 */
static size_t ivg_page_size(void)
{
    return sysconf(_SC_PAGE_SIZE);
}

/*
 * snprintf() that reports truncation; also keeps -Wformat-truncation quiet
 * about sysfs paths, which are short.
 */
static bool ivg_fmt(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool ivg_fmt(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < size;
}

/* Milliseconds left until @deadline_us, -1 for no deadline (UINT64_MAX) */
static int ivg_ms_left(uint64_t deadline_us)
{
    uint64_t now = ivg_now_us();

    if (deadline_us == UINT64_MAX) {
        return -1;
    }
    if (now >= deadline_us) {
        return 0;
    }
    return (deadline_us - now + 999) / 1000;
}

static uint64_t ivg_deadline(int timeout_ms)
{
    return timeout_ms < 0 ? UINT64_MAX
                          : ivg_now_us() + (uint64_t)timeout_ms * 1000;
}

/* The last path component of the symlink @dir/@name, "" if none */
static void ivg_link_name(const char *dir, const char *name, char *buf,
                          size_t size)
{
    char path[PATH_MAX], target[PATH_MAX];
    const char *base;
    ssize_t n;

    buf[0] = '\0';
    ivg_fmt(path, sizeof(path), "%s/%s", dir, name);
    n = readlink(path, target, sizeof(target) - 1);
    if (n <= 0) {
        return;
    }
    target[n] = '\0';
    base = strrchr(target, '/');
    ivg_fmt(buf, size, "%s", base ? base + 1 : target);
}

/* The first entry of directory @path, "" if none */
static void ivg_first_entry(const char *path, char *buf, size_t size)
{
    DIR *d = opendir(path);
    struct dirent *e;

    buf[0] = '\0';
    if (!d) {
        return;
    }
    while ((e = readdir(d))) {
        if (e->d_name[0] != '.') {
            ivg_fmt(buf, size, "%s", e->d_name);
            break;
        }
    }
    closedir(d);
}

static void ivg_fill_driver(IvgInfo *info)
{
    char dir[PATH_MAX], sub[PATH_MAX], node[64];

    snprintf(dir, sizeof(dir), SYSFS_PCI "/%s", info->bdf);
    ivg_link_name(dir, "driver", info->driver, sizeof(info->driver));
    info->devnode[0] = '\0';
    if (!strcmp(info->driver, "ivshmem-guest")) {
        ivg_fmt(sub, sizeof(sub), "%s/misc", dir);
    } else if (!strcmp(info->driver, "uio_pci_generic")) {
        ivg_fmt(sub, sizeof(sub), "%s/uio", dir);
    } else {
        return;
    }
    ivg_first_entry(sub, node, sizeof(node));
    if (node[0]) {
        ivg_fmt(info->devnode, sizeof(info->devnode), "/dev/%s", node);
    }
}

static void ivg_fill_info(struct pci_dev *pd, IvgInfo *info)
{
    struct pci_cap *cap;
    unsigned i;

    memset(info, 0, sizeof(*info));
    snprintf(info->bdf, sizeof(info->bdf), "%04x:%02x:%02x.%d",
             pd->domain, pd->bus, pd->dev, pd->func);
    info->vendor_id = pd->vendor_id;
    info->device_id = pd->device_id;
    info->revision = pci_read_byte(pd, PCI_REVISION_ID);
    info->irq_pin = pci_read_byte(pd, PCI_INTERRUPT_PIN);
    for (i = 0; i < IVG_BARS; i++) {
        info->bar_addr[i] = pd->base_addr[i] & PCI_ADDR_MEM_MASK;
        info->bar_size[i] = pd->size[i];
    }
    cap = pci_find_cap(pd, PCI_CAP_ID_MSIX, PCI_CAP_NORMAL);
    if (cap) {
        info->msix_vectors =
            (pci_read_word(pd, cap->addr + IVG_MSIX_CTRL) &
             PCI_MSIX_TABSIZE) + 1;
    }
    if (info->revision == IVSH_PCI_REVISION_LEGACY) {
        info->mode = cap ? IVG_MODE_LEGACY : IVG_MODE_LEGACY_INTX;
    } else {
        info->mode = cap ? IVG_MODE_DOORBELL : IVG_MODE_PLAIN;
    }
    ivg_fill_driver(info);
}

static int ivg_cmp_bdf(const void *a, const void *b)
{
    return strcmp(((const IvgInfo *)a)->bdf, ((const IvgInfo *)b)->bdf);
}

int ivg_list(IvgInfo *infos, unsigned max, IvgError *err)
{
    struct pci_access *pacc;
    struct pci_dev *pd;
    IvgInfo tmp;
    unsigned n = 0;

    if (access(SYSFS_PCI, R_OK) < 0) {
        ivg_fail(err, IVG_ERR_NODEV, "no PCI devices in %s (sysfs mounted?)",
                 SYSFS_PCI);
        return -1;
    }
    pacc = pci_alloc();
    pacc->method = PCI_ACCESS_SYS_BUS_PCI;
    pci_init(pacc);
    pci_scan_bus(pacc);
    for (pd = pacc->devices; pd; pd = pd->next) {
        pci_fill_info(pd, PCI_FILL_IDENT | PCI_FILL_BASES | PCI_FILL_SIZES |
                      PCI_FILL_CAPS);
        if (pd->vendor_id != IVSH_PCI_VENDOR_ID ||
            pd->device_id != IVSH_PCI_DEVICE_ID) {
            continue;
        }
        ivg_fill_info(pd, n < max ? &infos[n] : &tmp);
        n++;
    }
    pci_cleanup(pacc);
    qsort(infos, n < max ? n : max, sizeof(*infos), ivg_cmp_bdf);
    return n;
}

/* Accept "0000:00:03.0" and "00:03.0" */
static void ivg_normalize_bdf(const char *bdf, char *buf, size_t size)
{
    if (strlen(bdf) == 7) {
        snprintf(buf, size, "0000:%s", bdf);
    } else {
        snprintf(buf, size, "%s", bdf);
    }
}

static void *ivg_map_file(const char *path, off_t off, size_t len,
                          IvgError *err)
{
    int fd = open(path, O_RDWR | O_SYNC | O_CLOEXEC);
    void *p;

    if (fd < 0) {
        ivg_fail(err, IVG_ERR_IO, "cannot open %s: %s", path,
                 strerror(errno));
        return NULL;
    }
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
    close(fd);
    if (p == MAP_FAILED) {
        ivg_fail(err, IVG_ERR_IO, "cannot map %s: %s", path,
                 strerror(errno));
        return NULL;
    }
    return p;
}

/* Memory decoding may be off while no driver is bound */
static void ivg_sysfs_enable(const char *bdf)
{
    char path[PATH_MAX], c = '0';
    int fd;

    snprintf(path, sizeof(path), SYSFS_PCI "/%s/enable", bdf);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    if (read(fd, &c, 1) == 1 && c == '0') {
        if (pwrite(fd, "1", 1, 0) != 1) {
            /* mapping will fail or read all-ones; nothing more to do */
        }
    }
    close(fd);
}

/*
 * Does [@base, @base + @size) overlap a variable MTRR that is not
 * write-back?  Then the x86 PAT code turns the driver's write-back request
 * into uncached-minus, and the MTRR would make it uncached anyway.  With
 * SeaBIOS this is the case for BARs in the 32-bit PCI hole; BARs above
 * 4 GiB are write-back.  /proc/mtrr lines look like
 * "reg00: base=0x0c0000000 ( 3072MB), size= 1024MB, count=1: uncachable".
 */
static bool ivg_mtrr_conflict(uint64_t base, uint64_t size, char *type,
                              size_t type_size)
{
    char line[256], t[32];
    uint64_t rbase, rsize;
    char unit;
    bool hit = false;
    FILE *f = fopen("/proc/mtrr", "r");

    if (!f) {
        return false;
    }
    while (!hit && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "reg%*d: base=0x%" SCNx64 " (%*uMB), size=%"
                   SCNu64 "%cB, count=%*d: %31s", &rbase, &rsize, &unit,
                   t) != 4) {
            continue;
        }
        rsize <<= unit == 'M' ? 20 : 10;
        if (strcmp(t, "write-back") && base < rbase + rsize &&
            rbase < base + size) {
            ivg_fmt(type, type_size, "%s", t);
            hit = true;
        }
    }
    fclose(f);
    return hit;
}

static bool ivg_map_driver(IvgDevice *dev, IvgError *err)
{
    struct ivshmem_guest_info gi;
    char mtrr[32];
    size_t page = ivg_page_size();
    void *p;
    unsigned i;

    dev->fd = open(dev->info.devnode, O_RDWR | O_CLOEXEC);
    if (dev->fd < 0) {
        return ivg_fail(err, IVG_ERR_IO, "cannot open %s: %s",
                        dev->info.devnode, strerror(errno));
    }
    if (ioctl(dev->fd, IVSHMEM_GUEST_GET_INFO, &gi) < 0) {
        return ivg_fail(err, IVG_ERR_IO, "%s: GET_INFO failed: %s",
                        dev->info.devnode, strerror(errno));
    }
    if (gi.api_version != IVSHMEM_GUEST_API_VERSION) {
        return ivg_fail(err, IVG_ERR_NOTSUP,
                        "%s: driver API version %u, expected %u",
                        dev->info.devnode, gi.api_version,
                        IVSHMEM_GUEST_API_VERSION);
    }
    dev->regs_map_len = (gi.regs_offset + gi.regs_size + page - 1) &
                        ~(page - 1);
    p = mmap(NULL, dev->regs_map_len, PROT_READ | PROT_WRITE, MAP_SHARED,
             dev->fd, IVSHMEM_GUEST_MMAP_REGS);
    if (p == MAP_FAILED) {
        return ivg_fail(err, IVG_ERR_IO, "%s: cannot map BAR0: %s",
                        dev->info.devnode, strerror(errno));
    }
    dev->regs_map = p;
    /* device registers */
    dev->regs = (volatile uint32_t *)((uint8_t *)p + gi.regs_offset);

    p = mmap(NULL, gi.shm_size, PROT_READ | PROT_WRITE, MAP_SHARED,
             dev->fd, IVSHMEM_GUEST_MMAP_SHM);
    if (p == MAP_FAILED) {
        return ivg_fail(err, IVG_ERR_IO, "%s: cannot map BAR2: %s",
                        dev->info.devnode, strerror(errno));
    }
    dev->shm = p;
    dev->shm_size = gi.shm_size;
    if (ivg_mtrr_conflict(dev->info.bar_addr[IVSH_BAR_SHM], gi.shm_size,
                          mtrr, sizeof(mtrr))) {
        dev->shm_wb = false;
        ivg_fmt(dev->shm_how, sizeof(dev->shm_how),
                "uncached: the firmware's MTRR says %s (%s)", mtrr,
                dev->info.devnode);
    } else {
        dev->shm_wb = true;
        ivg_fmt(dev->shm_how, sizeof(dev->shm_how), "write-back (%s)",
                dev->info.devnode);
    }

    dev->nvectors = gi.nvectors;
    dev->vector_fds = calloc(gi.nvectors ? gi.nvectors : 1, sizeof(int));
    if (!dev->vector_fds) {
        return ivg_fail(err, IVG_ERR_IO, "out of memory");
    }
    for (i = 0; i < gi.nvectors; i++) {
        dev->vector_fds[i] = -1;
    }
    return true;
}

static bool ivg_map_sysfs(IvgDevice *dev, IvgError *err)
{
    size_t page = ivg_page_size();
    uint64_t in_page = dev->info.bar_addr[IVSH_BAR_REGS] & (page - 1);
    char path[PATH_MAX];
    void *p;

    if (!dev->info.bar_size[IVSH_BAR_REGS] ||
        !dev->info.bar_size[IVSH_BAR_SHM]) {
        return ivg_fail(err, IVG_ERR_NODEV, "%s: BAR0 or BAR2 unassigned",
                        dev->info.bdf);
    }
    ivg_sysfs_enable(dev->info.bdf);

    snprintf(path, sizeof(path), SYSFS_PCI "/%s/resource%d", dev->info.bdf,
             IVSH_BAR_REGS);
    dev->regs_map_len = (in_page + dev->info.bar_size[IVSH_BAR_REGS] +
                         page - 1) & ~(page - 1);
    p = ivg_map_file(path, 0, dev->regs_map_len, err);
    if (!p) {
        return false;
    }
    dev->regs_map = p;
    /* device registers */
    dev->regs = (volatile uint32_t *)((uint8_t *)p + in_page);

    snprintf(path, sizeof(path), SYSFS_PCI "/%s/resource%d", dev->info.bdf,
             IVSH_BAR_SHM);
    p = ivg_map_file(path, 0, dev->info.bar_size[IVSH_BAR_SHM], err);
    if (!p) {
        return false;
    }
    dev->shm = p;
    dev->shm_size = dev->info.bar_size[IVSH_BAR_SHM];
    dev->shm_wb = false;
    snprintf(dev->shm_how, sizeof(dev->shm_how),
             "uncached (sysfs resource%d)", IVSH_BAR_SHM);

    if (!strcmp(dev->info.driver, "uio_pci_generic") && dev->info.irq_pin &&
        dev->info.devnode[0]) {
        dev->nvectors = 1;
    }
    return true;
}

IvgDevice *ivg_open(const char *bdf, IvgError *err)
{
    IvgInfo infos[IVG_MAX_DEVICES];
    char want[32] = "";
    IvgDevice *dev;
    int n, i;
    bool ok;

    n = ivg_list(infos, IVG_MAX_DEVICES, err);
    if (n < 0) {
        return NULL;
    }
    if (n > IVG_MAX_DEVICES) {
        n = IVG_MAX_DEVICES;
    }
    if (bdf) {
        ivg_normalize_bdf(bdf, want, sizeof(want));
    }
    for (i = 0; i < n; i++) {
        if (!bdf || !strcmp(infos[i].bdf, want)) {
            break;
        }
    }
    if (i == n) {
        if (bdf) {
            ivg_fail(err, IVG_ERR_NODEV, "no ivshmem device at %s", want);
        } else {
            ivg_fail(err, IVG_ERR_NODEV, "no ivshmem device found");
        }
        return NULL;
    }

    dev = calloc(1, sizeof(*dev));
    if (!dev) {
        ivg_fail(err, IVG_ERR_IO, "out of memory");
        return NULL;
    }
    dev->info = infos[i];
    dev->fd = -1;
    dev->uio_fd = -1;
    dev->config_fd = -1;
    if (!strcmp(dev->info.driver, "ivshmem-guest") && dev->info.devnode[0]) {
        ok = ivg_map_driver(dev, err);
    } else {
        ok = ivg_map_sysfs(dev, err);
    }
    if (!ok) {
        ivg_close(dev);
        return NULL;
    }
    return dev;
}

void ivg_close(IvgDevice *dev)
{
    unsigned i;

    if (!dev) {
        return;
    }
    if (dev->vector_fds) {
        for (i = 0; i < dev->nvectors; i++) {
            if (dev->vector_fds[i] >= 0) {
                close(dev->vector_fds[i]);
            }
        }
        free(dev->vector_fds);
    }
    if (dev->shm) {
        munmap((void *)dev->shm, dev->shm_size);
    }
    if (dev->regs_map) {
        munmap(dev->regs_map, dev->regs_map_len);
    }
    if (dev->uio_fd >= 0) {
        close(dev->uio_fd);
    }
    if (dev->config_fd >= 0) {
        close(dev->config_fd);
    }
    if (dev->fd >= 0) {
        close(dev->fd);
    }
    free(dev);
}

const IvgInfo *ivg_info(IvgDevice *dev)
{
    return &dev->info;
}

static uint32_t ivg_reg_read(IvgDevice *dev, unsigned off)
{
    return le32toh(dev->regs[off / 4]);
}

static void ivg_reg_write(IvgDevice *dev, unsigned off, uint32_t val)
{
    dev->regs[off / 4] = htole32(val);
}

uint32_t ivg_ivposition(IvgDevice *dev)
{
    return ivg_reg_read(dev, IVSH_REG_IV_POSITION);
}

uint64_t ivg_shm_size(IvgDevice *dev)
{
    return dev->shm_size;
}

/* Shared with other VMs: volatile */
volatile uint8_t *ivg_shm(IvgDevice *dev)
{
    return dev->shm;
}

bool ivg_shm_write_back(IvgDevice *dev)
{
    return dev->shm_wb;
}

const char *ivg_shm_mapping(IvgDevice *dev)
{
    return dev->shm_how;
}

unsigned ivg_vectors(IvgDevice *dev)
{
    return dev->nvectors;
}

static bool ivg_check_range(IvgDevice *dev, uint64_t off, size_t len,
                            IvgError *err)
{
    if (off > dev->shm_size || len > dev->shm_size - off) {
        return ivg_fail(err, IVG_ERR_RANGE,
                        "offset 0x%" PRIx64 " length %zu outside the %"
                        PRIu64 "-byte shared memory", off, len,
                        dev->shm_size);
    }
    return true;
}

bool ivg_read(IvgDevice *dev, uint64_t off, void *buf, size_t len,
              IvgError *err)
{
    if (!ivg_check_range(dev, off, len, err)) {
        return false;
    }
    __sync_synchronize();
    memcpy(buf, (const uint8_t *)dev->shm + off, len);
    return true;
}

bool ivg_write(IvgDevice *dev, uint64_t off, const void *buf, size_t len,
               IvgError *err)
{
    if (!ivg_check_range(dev, off, len, err)) {
        return false;
    }
    memcpy((uint8_t *)dev->shm + off, buf, len);
    __sync_synchronize();
    return true;
}

bool ivg_expect(IvgDevice *dev, uint64_t off, const void *buf, size_t len,
                int timeout_ms, IvgError *err)
{
    uint64_t deadline = ivg_deadline(timeout_ms);
    struct timespec nap = { 0, IVG_POLL_NS };

    if (!ivg_check_range(dev, off, len, err)) {
        return false;
    }
    for (;;) {
        __sync_synchronize();
        if (!memcmp((const uint8_t *)dev->shm + off, buf, len)) {
            return true;
        }
        if (ivg_ms_left(deadline) == 0) {
            return ivg_fail(err, IVG_ERR_TIMEOUT,
                            "timed out after %d ms waiting for %zu bytes "
                            "at 0x%" PRIx64, timeout_ms, len, off);
        }
        nanosleep(&nap, NULL);
    }
}

bool ivg_ring(IvgDevice *dev, unsigned peer, unsigned vector, IvgError *err)
{
    if (dev->info.mode == IVG_MODE_PLAIN) {
        return ivg_fail(err, IVG_ERR_NOTSUP,
                        "%s is ivshmem-plain: it has no doorbell",
                        dev->info.bdf);
    }
    if (peer > IVSH_MAX_PEER_ID) {
        return ivg_fail(err, IVG_ERR_VECTOR, "peer %u out of range (0-%u)",
                        peer, IVSH_MAX_PEER_ID);
    }
    if (dev->info.msix_vectors && vector >= dev->info.msix_vectors) {
        return ivg_fail(err, IVG_ERR_VECTOR,
                        "vector %u out of range: %s has %u vectors",
                        vector, dev->info.bdf, dev->info.msix_vectors);
    }
    if (vector > IVSH_DOORBELL_VECTOR_MASK) {
        return ivg_fail(err, IVG_ERR_VECTOR, "vector %u out of range",
                        vector);
    }
    /* Order earlier shared memory writes before the interrupt */
    __sync_synchronize();
    ivg_reg_write(dev, IVSH_REG_DOORBELL, IVSH_DOORBELL(peer, vector));
    return true;
}

static bool ivg_check_vector(IvgDevice *dev, unsigned vector, IvgError *err)
{
    if (!dev->nvectors) {
        if (dev->info.mode == IVG_MODE_PLAIN) {
            return ivg_fail(err, IVG_ERR_NOTSUP,
                            "%s is ivshmem-plain: it has no interrupts",
                            dev->info.bdf);
        }
        return ivg_fail(err, IVG_ERR_NOTSUP,
                        "no interrupt driver bound to %s (%s): load %s",
                        dev->info.bdf, ivg_mode_name(dev->info.mode),
                        dev->info.mode == IVG_MODE_LEGACY_INTX ?
                        "uio_pci_generic" : "ivshmem-guest");
    }
    if (vector >= dev->nvectors) {
        return ivg_fail(err, IVG_ERR_VECTOR,
                        "vector %u out of range: %s has %u vector%s",
                        vector, dev->info.bdf, dev->nvectors,
                        dev->nvectors == 1 ? "" : "s");
    }
    return true;
}

/*
 * uio_pci_generic masks INTx with the command register's Interrupt Disable
 * bit on each interrupt and leaves unmasking to user space, through config
 * space (Documentation/driver-api/uio-howto.rst): clear the bit again.
 */
static bool ivg_uio_unmask(IvgDevice *dev, IvgError *err)
{
    uint8_t hi;

    if (pread(dev->config_fd, &hi, 1, IVG_PCI_COMMAND_HI) != 1) {
        return ivg_fail(err, IVG_ERR_IO, "%s: cannot read config space: %s",
                        dev->info.bdf, strerror(errno));
    }
    hi &= ~IVG_PCI_COMMAND_HI_INTX_DISABLE;
    if (pwrite(dev->config_fd, &hi, 1, IVG_PCI_COMMAND_HI) != 1) {
        return ivg_fail(err, IVG_ERR_IO, "%s: cannot unmask INTx: %s",
                        dev->info.bdf, strerror(errno));
    }
    return true;
}

int ivg_vector_fd(IvgDevice *dev, unsigned vector, IvgError *err)
{
    int fd;

    if (!ivg_check_vector(dev, vector, err)) {
        return -1;
    }
    if (dev->fd >= 0) {
        if (dev->vector_fds[vector] < 0) {
            fd = ioctl(dev->fd, IVSHMEM_GUEST_VECTOR_FD, vector);
            if (fd < 0) {
                ivg_fail(err, IVG_ERR_IO, "%s: vector %u: %s",
                         dev->info.devnode, vector, strerror(errno));
                return -1;
            }
            /* ivg_consume() must not block */
            if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
                ivg_fail(err, IVG_ERR_IO, "%s: vector %u: %s",
                         dev->info.devnode, vector, strerror(errno));
                close(fd);
                return -1;
            }
            dev->vector_fds[vector] = fd;
        }
        return dev->vector_fds[vector];
    }

    if (dev->uio_fd < 0) {
        char path[PATH_MAX];

        ivg_fmt(path, sizeof(path), SYSFS_PCI "/%s/config", dev->info.bdf);
        dev->config_fd = open(path, O_RDWR | O_CLOEXEC);
        if (dev->config_fd < 0) {
            ivg_fail(err, IVG_ERR_IO, "cannot open %s: %s", path,
                     strerror(errno));
            return -1;
        }
        fd = open(dev->info.devnode, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            ivg_fail(err, IVG_ERR_IO, "cannot open %s: %s",
                     dev->info.devnode, strerror(errno));
            return -1;
        }
        dev->uio_fd = fd;
        /*
         * Let doorbells raise INTx.  INTx may still be masked by an
         * interrupt nobody acked; the first ivg_consume() takes what is
         * latched in IntrStatus and unmasks.
         */
        ivg_reg_write(dev, IVSH_REG_INTR_MASK, IVSH_INTR_DOORBELL);
        dev->uio_armed = false;
    }
    return dev->uio_fd;
}

bool ivg_consume(IvgDevice *dev, unsigned vector, uint64_t *count,
                 IvgError *err)
{
    int fd = ivg_vector_fd(dev, vector, err);
    uint64_t n64;
    uint32_t n32, status;
    ssize_t r;

    *count = 0;
    if (fd < 0) {
        return false;
    }
    if (dev->fd >= 0) {
        r = read(fd, &n64, sizeof(n64));
        if (r == sizeof(n64)) {
            *count = n64;
        } else if (r < 0 && errno != EAGAIN) {
            return ivg_fail(err, IVG_ERR_IO, "%s: vector %u: %s",
                            dev->info.devnode, vector, strerror(errno));
        }
        return true;
    }

    r = read(fd, &n32, sizeof(n32));
    if (r < 0 && errno == EAGAIN) {
        if (dev->uio_armed) {
            return true;
        }
    } else if (r != sizeof(n32)) {
        return ivg_fail(err, IVG_ERR_IO, "%s: read: %s", dev->info.devnode,
                        r < 0 ? strerror(errno) : "short read");
    }
    /*
     * Reading IntrStatus acks the doorbell and lowers INTx.  A doorbell
     * that arrives between the read and the unmask keeps IntrStatus set,
     * so INTx fires again once unmasked: nothing is lost.
     */
    dev->uio_armed = true;
    status = ivg_reg_read(dev, IVSH_REG_INTR_STATUS);
    if (status & IVSH_INTR_DOORBELL) {
        *count = 1;
    }
    return ivg_uio_unmask(dev, err);
}

bool ivg_wait_any(IvgDevice *dev, const unsigned *vectors, unsigned n,
                  int timeout_ms, unsigned *which, uint64_t *count,
                  IvgError *err)
{
    uint64_t deadline = ivg_deadline(timeout_ms);
    struct pollfd *pfds;
    unsigned i;
    int r;
    bool ok = false;

    pfds = calloc(n ? n : 1, sizeof(*pfds));
    if (!pfds) {
        return ivg_fail(err, IVG_ERR_IO, "out of memory");
    }
    for (i = 0; i < n; i++) {
        pfds[i].fd = ivg_vector_fd(dev, vectors[i], err);
        pfds[i].events = POLLIN;
        if (pfds[i].fd < 0) {
            goto out;
        }
    }
    for (;;) {
        /* Pending interrupts first, then sleep until there are some */
        for (i = 0; i < n; i++) {
            if (!ivg_consume(dev, vectors[i], count, err)) {
                goto out;
            }
            if (*count) {
                *which = vectors[i];
                ok = true;
                goto out;
            }
        }
        r = poll(pfds, n, ivg_ms_left(deadline));
        if (r < 0 && errno != EINTR) {
            ivg_fail(err, IVG_ERR_IO, "poll: %s", strerror(errno));
            goto out;
        }
        for (i = 0; r > 0 && i < n; i++) {
            if (pfds[i].revents & (POLLHUP | POLLERR)) {
                ivg_fail(err, IVG_ERR_NODEV, "%s: device gone",
                         dev->info.bdf);
                goto out;
            }
        }
        if (r == 0 && ivg_ms_left(deadline) == 0) {
            ivg_fail(err, IVG_ERR_TIMEOUT,
                     "timed out after %d ms waiting for an interrupt",
                     timeout_ms);
            goto out;
        }
    }
out:
    free(pfds);
    return ok;
}

bool ivg_wait(IvgDevice *dev, unsigned vector, uint64_t want,
              int timeout_ms, uint64_t *got, IvgError *err)
{
    uint64_t deadline = ivg_deadline(timeout_ms);
    uint64_t n;
    unsigned which;

    *got = 0;
    if (!ivg_check_vector(dev, vector, err)) {
        return false;
    }
    /* Interrupts that arrived before the call count too */
    if (!ivg_consume(dev, vector, &n, err)) {
        return false;
    }
    *got += n;
    while (*got < want) {
        if (!ivg_wait_any(dev, &vector, 1, ivg_ms_left(deadline), &which,
                          &n, err)) {
            if (err && err->code == IVG_ERR_TIMEOUT) {
                ivg_fail(err, IVG_ERR_TIMEOUT,
                         "timed out after %d ms waiting for vector %u "
                         "(%" PRIu64 " of %" PRIu64 " interrupts)",
                         timeout_ms, vector, *got, want);
            }
            return false;
        }
        *got += n;
    }
    return true;
}

/* Sum the per-CPU columns of one /proc/interrupts line after "IRQ:" */
static uint64_t ivg_irq_line_sum(const char *p)
{
    uint64_t sum = 0, v;

    for (;;) {
        while (*p == ' ') {
            p++;
        }
        if (*p < '0' || *p > '9') {
            return sum;
        }
        v = 0;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (*p++ - '0');
        }
        sum += v;
    }
}

static int ivg_sysfs_irq(IvgDevice *dev)
{
    char path[PATH_MAX], buf[32];
    int fd, irq = 0;
    ssize_t n;
    char *p;

    snprintf(path, sizeof(path), SYSFS_PCI "/%s/irq", dev->info.bdf);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return -1;
    }
    buf[n] = '\0';
    for (p = buf; *p >= '0' && *p <= '9'; p++) {
        irq = irq * 10 + (*p - '0');
    }
    return irq;
}

int ivg_irq_counts(IvgDevice *dev, uint64_t *counts, unsigned max,
                   IvgError *err)
{
    const char *node = strrchr(dev->info.devnode, '/');
    char line[1024], prefix[64];
    unsigned found = 0, v;
    int irq = -1;
    size_t plen;
    FILE *f;
    char *p, *name;

    if (!dev->nvectors) {
        ivg_check_vector(dev, 0, err);
        return -1;
    }
    if (dev->fd < 0) {
        irq = ivg_sysfs_irq(dev);
    }
    snprintf(prefix, sizeof(prefix), "%s-v", node ? node + 1 : "");
    plen = strlen(prefix);
    memset(counts, 0, max * sizeof(*counts));

    f = fopen("/proc/interrupts", "r");
    if (!f) {
        ivg_fail(err, IVG_ERR_IO, "/proc/interrupts: %s", strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        p = strchr(line, ':');
        if (!p) {
            continue;
        }
        if (irq >= 0) {
            char num[16];

            snprintf(num, sizeof(num), "%d:", irq);
            if (strncmp(line + strspn(line, " "), num, strlen(num))) {
                continue;
            }
            if (max) {
                counts[0] = ivg_irq_line_sum(p + 1);
            }
            found = 1;
            break;
        }
        name = strrchr(line, ' ');
        if (!name || strncmp(name + 1, prefix, plen)) {
            continue;
        }
        v = 0;
        for (name += 1 + plen; *name >= '0' && *name <= '9'; name++) {
            v = v * 10 + (*name - '0');
        }
        if (v < max) {
            counts[v] = ivg_irq_line_sum(p + 1);
        }
        if (v + 1 > found) {
            found = v + 1;
        }
    }
    fclose(f);
    return found;
}
