/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ivshmem-guest: Linux guest driver for the inter-VM shared memory PCI
 * device (QEMU's ivshmem-plain, ivshmem-doorbell and legacy ivshmem).
 *
 * Why a driver at all: mainline Linux has none for this device.
 * uio_pci_generic only handles INTx, which the revision-1 devices do not
 * have (Interrupt Pin 0, MSI-X only), and vfio-pci needs an IOMMU (a
 * vIOMMU in the guest) because Debian kernels lack VFIO no-IOMMU.  This
 * driver is the small alternative: it enables MSI-X, gives every vector
 * an eventfd-like file descriptor, and maps BAR2 write-back (sysfs
 * resource2 is mapped uncached).  On x86 the PAT code downgrades the
 * write-back request to uncached-minus where a firmware MTRR marks the
 * range uncachable (SeaBIOS: the 32-bit PCI hole); above 4 GiB it holds.
 *
 * What it binds: every 1af4:1110 function except the legacy INTx-only
 * one (revision 0 without MSI-X), which is left for uio_pci_generic.
 *
 * Hazards:
 *  - The vector counts are per device, not per open file: several readers
 *    of one vector share (and steal) its interrupts, like one eventfd.
 *  - The REGS mapping is a whole page; when BAR0 (256 bytes) shares its
 *    page with another device's registers, those are mapped too.  Only
 *    root may open the device (mode 0600).
 *  - Mappings survive an unbind or hot-unplug of the device and then
 *    point at nothing (as with UIO); vector files report ENODEV.
 *
 * The user-space interface is described in ivshmem-guest-uapi.h.
 * This file follows QEMU's coding style like the rest of the project.
 */

#include <linux/anon_inodes.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/kref.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "ivshmem-guest-uapi.h"

#define DRV_NAME                "ivshmem-guest"

#define IVSH_VENDOR_ID          0x1af4
#define IVSH_DEVICE_ID          0x1110
#define IVSH_BAR_REGS           0
#define IVSH_BAR_SHM            2
#define IVSH_REG_IV_POSITION    0x08

struct ivg_dev;

struct ivg_vector {
    struct ivg_dev *idev;
    unsigned int index;
    wait_queue_head_t wq;   /* wq.lock protects pending */
    u64 pending;
    char name[32];
};

struct ivg_dev {
    struct kref kref;
    struct pci_dev *pdev;
    struct miscdevice misc;
    int id;
    char name[16];
    struct mutex lock;      /* orders ioctl() against remove() */
    bool gone;              /* set under lock and each vector's wq.lock */
    void __iomem *regs;
    resource_size_t regs_start, regs_len;
    resource_size_t shm_start, shm_len;
    unsigned int nvectors;
    struct ivg_vector *vectors;
};

static DEFINE_IDA(ivg_ida);

static void ivg_release_dev(struct kref *kref)
{
    struct ivg_dev *idev = container_of(kref, struct ivg_dev, kref);

    ida_free(&ivg_ida, idev->id);
    kfree(idev->vectors);
    kfree(idev);
}

/* Per-vector file */

static int ivg_vector_release(struct inode *inode, struct file *file)
{
    struct ivg_vector *vec = file->private_data;

    kref_put(&vec->idev->kref, ivg_release_dev);
    return 0;
}

/*
 * __user stands before the type ("__user char *", as in the kernel's own
 * "const __user char *" of struct filename): same meaning for sparse, and
 * QEMU's checkpatch, which does not know the annotation, parses it.
 */
static ssize_t ivg_vector_read(struct file *file, __user char *buf,
                               size_t count, loff_t *ppos)
{
    struct ivg_vector *vec = file->private_data;
    u64 n;
    int ret;

    if (count < sizeof(n)) {
        return -EINVAL;
    }

    spin_lock_irq(&vec->wq.lock);
    if (!vec->pending && !vec->idev->gone) {
        if (file->f_flags & O_NONBLOCK) {
            spin_unlock_irq(&vec->wq.lock);
            return -EAGAIN;
        }
        ret = wait_event_interruptible_locked_irq(
            vec->wq, vec->pending || vec->idev->gone);
        if (ret) {
            spin_unlock_irq(&vec->wq.lock);
            return ret;
        }
    }
    n = vec->pending;
    vec->pending = 0;
    spin_unlock_irq(&vec->wq.lock);

    if (!n) {
        return -ENODEV;
    }
    if (put_user(n, (__user u64 *)buf)) {
        return -EFAULT;
    }
    return sizeof(n);
}

static __poll_t ivg_vector_poll(struct file *file, poll_table *wait)
{
    struct ivg_vector *vec = file->private_data;
    __poll_t mask = 0;

    poll_wait(file, &vec->wq, wait);

    spin_lock_irq(&vec->wq.lock);
    if (vec->pending) {
        mask |= EPOLLIN | EPOLLRDNORM;
    }
    if (vec->idev->gone) {
        mask |= EPOLLHUP | EPOLLERR;
    }
    spin_unlock_irq(&vec->wq.lock);
    return mask;
}

static const struct file_operations ivg_vector_fops = {
    .owner          = THIS_MODULE,
    .release        = ivg_vector_release,
    .read           = ivg_vector_read,
    .poll           = ivg_vector_poll,
    .llseek         = noop_llseek,
};

static irqreturn_t ivg_irq(int irq, void *opaque)
{
    struct ivg_vector *vec = opaque;
    unsigned long flags;

    spin_lock_irqsave(&vec->wq.lock, flags);
    vec->pending++;
    wake_up_locked_poll(&vec->wq, EPOLLIN);
    spin_unlock_irqrestore(&vec->wq.lock, flags);
    return IRQ_HANDLED;
}

/* The device file */

static struct ivg_dev *ivg_from_file(struct file *file)
{
    struct miscdevice *misc = file->private_data;

    return container_of(misc, struct ivg_dev, misc);
}

static int ivg_open(struct inode *inode, struct file *file)
{
    /* misc_open() holds misc_mtx, so remove() cannot run concurrently */
    kref_get(&ivg_from_file(file)->kref);
    return 0;
}

static int ivg_release(struct inode *inode, struct file *file)
{
    kref_put(&ivg_from_file(file)->kref, ivg_release_dev);
    return 0;
}

static int ivg_mmap(struct file *file, struct vm_area_struct *vma)
{
    struct ivg_dev *idev = ivg_from_file(file);
    u64 off = (u64)vma->vm_pgoff << PAGE_SHIFT;
    u64 len = vma->vm_end - vma->vm_start;
    resource_size_t base, size;
    pgprot_t prot;

    if (READ_ONCE(idev->gone)) {
        return -ENODEV;
    }
    if (off >= IVSHMEM_GUEST_MMAP_REGS) {
        off -= IVSHMEM_GUEST_MMAP_REGS;
        base = idev->regs_start & PAGE_MASK;
        size = PAGE_ALIGN((idev->regs_start & ~PAGE_MASK) +
                          idev->regs_len);
        prot = pgprot_noncached(vma->vm_page_prot);
    } else {
        base = idev->shm_start;
        size = idev->shm_len;
        prot = vma->vm_page_prot;       /* write-back */
    }
    if (off > size || len > size - off) {
        return -EINVAL;
    }

    vma->vm_flags |= VM_IO | VM_DONTEXPAND | VM_DONTDUMP;
    vma->vm_page_prot = prot;
    return io_remap_pfn_range(vma, vma->vm_start,
                              (base + off) >> PAGE_SHIFT, len, prot);
}

static long ivg_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
    struct ivg_dev *idev = ivg_from_file(file);
    struct ivshmem_guest_info info;
    struct ivg_vector *vec;
    int fd;

    switch (cmd) {
    case IVSHMEM_GUEST_GET_INFO:
        mutex_lock(&idev->lock);
        if (idev->gone) {
            mutex_unlock(&idev->lock);
            return -ENODEV;
        }
        memset(&info, 0, sizeof(info));
        info.api_version = IVSHMEM_GUEST_API_VERSION;
        info.nvectors = idev->nvectors;
        info.shm_size = idev->shm_len;
        info.regs_size = idev->regs_len;
        info.regs_offset = idev->regs_start & ~PAGE_MASK;
        info.ivposition = readl(idev->regs + IVSH_REG_IV_POSITION);
        mutex_unlock(&idev->lock);
        if (copy_to_user((__user void *)arg, &info, sizeof(info))) {
            return -EFAULT;
        }
        return 0;
    case IVSHMEM_GUEST_VECTOR_FD:
        if (READ_ONCE(idev->gone)) {
            return -ENODEV;
        }
        if (arg >= idev->nvectors) {
            return -EINVAL;
        }
        vec = &idev->vectors[arg];
        kref_get(&idev->kref);
        fd = anon_inode_getfd("[ivshmem-vector]", &ivg_vector_fops, vec,
                              O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            kref_put(&idev->kref, ivg_release_dev);
        }
        return fd;
    default:
        return -ENOTTY;
    }
}

static const struct file_operations ivg_fops = {
    .owner          = THIS_MODULE,
    .open           = ivg_open,
    .release        = ivg_release,
    .mmap           = ivg_mmap,
    .unlocked_ioctl = ivg_ioctl,
    .compat_ioctl   = compat_ptr_ioctl,
    .llseek         = noop_llseek,
};

/* PCI driver */

static void ivg_free_irqs(struct ivg_dev *idev, unsigned int n)
{
    unsigned int i;

    for (i = 0; i < n; i++) {
        free_irq(pci_irq_vector(idev->pdev, i), &idev->vectors[i]);
    }
    pci_free_irq_vectors(idev->pdev);
}

static int ivg_setup_msix(struct ivg_dev *idev, int nvec)
{
    struct pci_dev *pdev = idev->pdev;
    unsigned int i;
    int ret;

    idev->vectors = kcalloc(nvec, sizeof(*idev->vectors), GFP_KERNEL);
    if (!idev->vectors) {
        return -ENOMEM;
    }
    for (i = 0; i < nvec; i++) {
        struct ivg_vector *vec = &idev->vectors[i];

        vec->idev = idev;
        vec->index = i;
        init_waitqueue_head(&vec->wq);
        snprintf(vec->name, sizeof(vec->name), "%s-v%u", idev->name, i);
    }

    /* Take what the guest can give; the rest stay masked in the table */
    ret = pci_alloc_irq_vectors(pdev, 1, nvec, PCI_IRQ_MSIX);
    if (ret < 0) {
        return ret;
    }
    if (ret < nvec) {
        dev_warn(&pdev->dev, "using %d of %d MSI-X vectors\n", ret, nvec);
    }
    nvec = ret;

    for (i = 0; i < nvec; i++) {
        ret = request_irq(pci_irq_vector(pdev, i), ivg_irq, 0,
                          idev->vectors[i].name, &idev->vectors[i]);
        if (ret) {
            ivg_free_irqs(idev, i);
            return ret;
        }
    }
    idev->nvectors = nvec;
    return 0;
}

static int ivg_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
    int nvec = pci_msix_vec_count(pdev);
    struct ivg_dev *idev;
    int ret;

    if (nvec <= 0 && pdev->revision == 0) {
        dev_info(&pdev->dev,
                 "legacy ivshmem without MSI-X, left to uio_pci_generic\n");
        return -ENODEV;
    }

    idev = kzalloc(sizeof(*idev), GFP_KERNEL);
    if (!idev) {
        return -ENOMEM;
    }
    kref_init(&idev->kref);
    mutex_init(&idev->lock);
    idev->pdev = pdev;
    ret = ida_alloc(&ivg_ida, GFP_KERNEL);
    if (ret < 0) {
        kfree(idev);
        return ret;
    }
    idev->id = ret;
    snprintf(idev->name, sizeof(idev->name), "ivshmem%d", idev->id);

    ret = pci_enable_device(pdev);
    if (ret) {
        goto err_put;
    }
    ret = pci_request_regions(pdev, DRV_NAME);
    if (ret) {
        goto err_disable;
    }

    idev->regs_start = pci_resource_start(pdev, IVSH_BAR_REGS);
    idev->regs_len = pci_resource_len(pdev, IVSH_BAR_REGS);
    idev->shm_start = pci_resource_start(pdev, IVSH_BAR_SHM);
    idev->shm_len = pci_resource_len(pdev, IVSH_BAR_SHM);
    if (!idev->regs_len || !idev->shm_len ||
        !(pci_resource_flags(pdev, IVSH_BAR_SHM) & IORESOURCE_MEM)) {
        dev_err(&pdev->dev, "BAR0 or BAR2 missing\n");
        ret = -ENODEV;
        goto err_regions;
    }
    idev->regs = pci_iomap(pdev, IVSH_BAR_REGS, 0);
    if (!idev->regs) {
        ret = -ENOMEM;
        goto err_regions;
    }

    if (nvec > 0) {
        /* MSI-X messages are memory writes: bus mastering is needed */
        pci_set_master(pdev);
        ret = ivg_setup_msix(idev, nvec);
        if (ret) {
            dev_err(&pdev->dev, "MSI-X setup failed: %d\n", ret);
            goto err_unmap;
        }
    }

    idev->misc.minor = MISC_DYNAMIC_MINOR;
    idev->misc.name = idev->name;
    idev->misc.fops = &ivg_fops;
    idev->misc.parent = &pdev->dev;
    idev->misc.mode = 0600;
    ret = misc_register(&idev->misc);
    if (ret) {
        goto err_irqs;
    }

    pci_set_drvdata(pdev, idev);
    dev_info(&pdev->dev, "%s: rev %u, shm %llu bytes, %u MSI-X vectors\n",
             idev->name, pdev->revision, (u64)idev->shm_len,
             idev->nvectors);
    return 0;

err_irqs:
    if (idev->nvectors) {
        ivg_free_irqs(idev, idev->nvectors);
    }
err_unmap:
    pci_clear_master(pdev);
    pci_iounmap(pdev, idev->regs);
err_regions:
    pci_release_regions(pdev);
err_disable:
    pci_disable_device(pdev);
err_put:
    kref_put(&idev->kref, ivg_release_dev);
    return ret;
}

static void ivg_remove(struct pci_dev *pdev)
{
    struct ivg_dev *idev = pci_get_drvdata(pdev);
    unsigned int i;

    misc_deregister(&idev->misc);
    if (idev->nvectors) {
        ivg_free_irqs(idev, idev->nvectors);
    }
    pci_clear_master(pdev);

    mutex_lock(&idev->lock);
    WRITE_ONCE(idev->gone, true);
    mutex_unlock(&idev->lock);
    for (i = 0; i < idev->nvectors; i++) {
        struct ivg_vector *vec = &idev->vectors[i];

        spin_lock_irq(&vec->wq.lock);
        vec->idev->gone = true;
        wake_up_locked_poll(&vec->wq, EPOLLHUP | EPOLLERR);
        spin_unlock_irq(&vec->wq.lock);
    }

    pci_iounmap(pdev, idev->regs);
    pci_release_regions(pdev);
    pci_disable_device(pdev);
    kref_put(&idev->kref, ivg_release_dev);
}

static const struct pci_device_id ivg_ids[] = {
    { PCI_DEVICE(IVSH_VENDOR_ID, IVSH_DEVICE_ID) },
    { 0 }
};
MODULE_DEVICE_TABLE(pci, ivg_ids);

static struct pci_driver ivg_driver = {
    .name           = DRV_NAME,
    .id_table       = ivg_ids,
    .probe          = ivg_probe,
    .remove         = ivg_remove,
};
module_pci_driver(ivg_driver);

MODULE_DESCRIPTION("Inter-VM shared memory (ivshmem) guest driver");
MODULE_LICENSE("GPL");
