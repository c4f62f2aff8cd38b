/*
 * Helpers shared by the ivshmem qtests
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef IVSH_QTEST_H
#define IVSH_QTEST_H

#include "libqtest.h"
#include "libqos/pci.h"
#include "libqos/pci-pc.h"
#include "ivsh-tserver.h"

/* Environment variable naming QEMU's own emulator, for comparisons */
#define IVSH_UPSTREAM_ENV "IVSH_UPSTREAM_QEMU"

/* How long any wait for QEMU lasts before the test fails */
#define IVSH_WAIT_MS 5000

/*
 * Interrupts are observed the libqos way: MSI-X entry @v points at a word
 * of guest RAM, and the message data appears there when the vector fires.
 */
#define IVSH_MSI_BASE 0x200000ULL
#define IVSH_MSI_ADDR(v) (IVSH_MSI_BASE + 4 * (v))
#define IVSH_MSI_DATA(v) (0x4000 + (v))

/* Where the tests put the device unless they say otherwise */
#define IVSH_DEVFN QPCI_DEVFN(4, 0)

/*
 * Call @cond until it returns true, for at most @ms milliseconds; true if
 * it did.  @cond is called at least once.  Conditions that ask QEMU
 * (qtest reads) are themselves round trips and are called back to back;
 * others should sleep a little inside.
 */
typedef bool IvshCond(void *opaque);
bool ivsh_wait_until(IvshCond *cond, void *opaque, unsigned ms);

typedef struct IvshDev {
    QTestState *qts;
    QPCIBus *bus;
    QPCIDevice *dev;
    QPCIBar regs;
    QPCIBar shm;
    uint64_t regs_size;
    uint64_t shm_size;
    bool own_bus;
} IvshDev;

/* Find the device at @devfn on bus 0 of @qts; BARs untouched. */
void ivsh_dev_find(IvshDev *d, QTestState *qts, int devfn);
/* Enable a device found so, and map BAR0 and BAR2 */
void ivsh_dev_map(IvshDev *d);
/* Find the device at @devfn on bus 0, enable it and map BAR0 and BAR2. */
void ivsh_dev_open(IvshDev *d, QTestState *qts, int devfn);
/* The same for a second device of the VM, on @other's bus */
void ivsh_dev_open_on(IvshDev *d, IvshDev *other, int devfn);
void ivsh_dev_close(IvshDev *d);
uint32_t ivsh_reg_read(IvshDev *d, uint64_t reg);
void ivsh_reg_write(IvshDev *d, uint64_t reg, uint32_t val);

/* Program MSI-X table entry @v to write @data at @addr */
void ivsh_msix_entry(QPCIDevice *dev, unsigned v, uint64_t addr,
                     uint32_t data, bool masked);

/* The INTx line as the PCI status register shows it; wait for it high */
bool ivsh_intx_level(QPCIDevice *dev);
bool ivsh_wait_intx(QPCIDevice *dev);

/* A scratch directory, removed with its content by ivsh_tmpdir_free(). */
char *ivsh_tmpdir_new(void);
void ivsh_tmpdir_free(char *dir);

/* Map @size bytes of file @path shared, for the host's view of BAR2. */
void *ivsh_map_file(const char *path, size_t size);

/*
 * Start the emulator from $QTEST_QEMU_BINARY (or $@env_var when not NULL)
 * with "-M @machine -nodefaults -display none -S @args" (split as a shell
 * would, without running one) and a QMP monitor on stdin that quits at
 * once.  Returns the exit status (128 + signal, or 124 when it had to be
 * killed after @IVSH_RUN_QEMU_S seconds); *@err gets what it printed on
 * stderr.
 */
#define IVSH_RUN_QEMU_S 10
int ivsh_run_qemu(const char *env_var, const char *machine, const char *args,
                  char **err);
/* The same with the arguments as a NULL-terminated array */
int ivsh_run_qemu_argv(const char *env_var, const char *machine,
                       const char *const *args, char **err);

/* qtest_init(@args), with QEMU's stderr going to file @errfile */
QTestState *ivsh_qtest_init_stderr(const char *errfile, const char *args);
/* Wait until file @path contains @text; false on timeout */
bool ivsh_wait_file_contains(const char *path, const char *text);

/* Count QEMU's open fds (listed in the test log); wait for a count */
unsigned ivsh_count_fds(QTestState *qts);
void ivsh_wait_fds(QTestState *qts, unsigned want);

/* Migrate @from to @to (started with "-incoming @uri") and wait. */
void ivsh_migrate(QTestState *from, QTestState *to, const char *uri);
/* Start a migration expected to fail; return the error description. */
char *ivsh_migrate_error(QTestState *from, const char *uri);

/* The upstream emulator when the environment names one, else NULL */
const char *ivsh_upstream_qemu(void);

/* Migration source and destination emulators, by environment variable */
typedef struct IvshMigPair {
    const char *name;
    const char *src_env;
    const char *dst_env;
} IvshMigPair;

/* ours -> ours, ours -> upstream, upstream -> ours */
extern const IvshMigPair ivsh_mig_pairs[3];

/* False (and the test skipped) when @p needs an absent upstream QEMU */
bool ivsh_mig_pair_ready(const IvshMigPair *p);

/*
 * An in-test ivshmem server (ivsh-tserver.h) on a socket in a scratch
 * directory.
 */
typedef struct IvshEnv {
    char *dir;
    char *sock;
    IvshTServer *ts;
} IvshEnv;

#define IVSH_ENV_SHM_SIZE (1 * 1024 * 1024)

void ivsh_env_init(IvshEnv *e, size_t shm_size, unsigned vectors);
void ivsh_env_free(IvshEnv *e);

/* A VM with an ivshmem-doorbell (or legacy msi=on) device, opened */
typedef struct IvshVm {
    QTestState *qts;
    IvshDev d;
    int id;
    unsigned vectors;
} IvshVm;

/*
 * Open the device at @devfn of @qts, read its ID, enable MSI-X and point
 * its @vectors entries at IVSH_MSI_ADDR(v), unmasked.
 */
void ivsh_vm_open(IvshVm *vm, QTestState *qts, int devfn, unsigned vectors);
/*
 * Start a pc VM with "-device ivshmem-doorbell,chardev=...,vectors=@vectors,
 * @opts" at IVSH_DEVFN on @e's server, and open it.  With @errfile, QEMU's
 * stderr goes there.
 */
IvshVm *ivsh_vm_start(IvshEnv *e, unsigned vectors, const char *opts,
                      const char *errfile);
/* The same with device @driver, e.g. the legacy "ivshmem" (msi=on) */
IvshVm *ivsh_vm_start_driver(IvshEnv *e, const char *driver,
                             unsigned vectors, const char *opts,
                             const char *errfile);
void ivsh_vm_free(IvshVm *vm);
void ivsh_vm_ring(IvshVm *vm, unsigned peer, unsigned vector);
/* Wait until vector @v fires, then re-arm it; false on timeout */
bool ivsh_vm_wait_msi(IvshVm *vm, unsigned v);
/* Wait until vector @v is pending in the PBA; false on timeout */
bool ivsh_vm_wait_pending(IvshVm *vm, unsigned v);
/* True if vector @v fired (no waiting) */
bool ivsh_vm_msi_seen(IvshVm *vm, unsigned v);
/*
 * Ring host peer @host from @vm until it sees it: the device learns of a
 * new peer asynchronously, and this is how a test waits for that.  The
 * last vector arrives last, so once it works all of them do.
 */
bool ivsh_vm_sync_host_peer(IvshEnv *e, IvshVm *vm, int host);

/*
 * A deadline for a command a broken device would hang (e.g. a blocking
 * read with the big lock held): past @seconds the test aborts, naming
 * @what, and libqtest's abort hook kills QEMU.
 */
void ivsh_guard_start(const char *what, unsigned seconds);
void ivsh_guard_stop(void);

#endif
