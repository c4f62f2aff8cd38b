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

/* Environment variable naming QEMU's own emulator, for comparisons */
#define IVSH_UPSTREAM_ENV "IVSH_UPSTREAM_QEMU"

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

/* Find the device at @devfn on bus 0, enable it and map BAR0 and BAR2. */
void ivsh_dev_open(IvshDev *d, QTestState *qts, int devfn);
/* The same for a second device of the VM, on @other's bus */
void ivsh_dev_open_on(IvshDev *d, IvshDev *other, int devfn);
void ivsh_dev_close(IvshDev *d);
uint32_t ivsh_reg_read(IvshDev *d, uint64_t reg);
void ivsh_reg_write(IvshDev *d, uint64_t reg, uint32_t val);

/* A scratch directory, removed with its content by ivsh_tmpdir_free(). */
char *ivsh_tmpdir_new(void);
void ivsh_tmpdir_free(char *dir);

/* Map @size bytes of file @path shared, for the host's view of BAR2. */
void *ivsh_map_file(const char *path, size_t size);

/*
 * Start the emulator from $QTEST_QEMU_BINARY (or $@env_var when not NULL)
 * with "-M @machine -nodefaults -display none -S @args" and a QMP monitor
 * on stdin that quits at once.  Returns the exit status; *@err gets
 * what it printed on stderr.
 */
int ivsh_run_qemu(const char *env_var, const char *machine, const char *args,
                  char **err);

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

#endif
