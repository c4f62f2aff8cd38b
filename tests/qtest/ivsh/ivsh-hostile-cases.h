/*
 * A hostile or broken ivshmem server: the cases, shared by the qtests
 * (ivsh-hostile-test.c) and the report-only survey of QEMU's own device
 * (ivsh-hostile-survey.c)
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef IVSH_HOSTILE_CASES_H
#define IVSH_HOSTILE_CASES_H

#include "ivsh-qtest.h"

/* The server's first messages, scripted: realize must fail */
typedef struct IvshSetupCase {
    const char *name;
    IvshTScript *script;
    void *opaque;
    const char *opts;       /* device options, e.g. "master=on" */
    const char *message;    /* our device's error */
    bool master;            /* needs master=on */
    bool hangs_up;          /* the server closes the connection */
} IvshSetupCase;

extern const IvshSetupCase ivsh_setup_cases[];
extern const size_t ivsh_nr_setup_cases;

/* After set-up: a message the device must drop */
typedef struct IvshLateCase {
    const char *name;
    void (*send)(IvshEnv *e, IvshVm *vm);
    const char *message;
    bool fatal;             /* reading from the server stops */
    unsigned kept;          /* eventfds legitimately kept from the case */
} IvshLateCase;

extern const IvshLateCase ivsh_late_cases[];
extern const size_t ivsh_nr_late_cases;

/* A memfd of @size bytes with @seals */
int ivsh_memfd_sized(size_t size, unsigned seals);

/* "-chardev socket,id=srv,... -device ivshmem-doorbell,...,@opts" */
char *ivsh_hostile_device_args(IvshEnv *e, const char *opts);

#endif
