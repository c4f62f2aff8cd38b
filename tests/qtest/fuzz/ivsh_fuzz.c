/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Fuzz target for the ivshmem devices (skeleton).
 */

#include "qemu/osdep.h"

#include "tests/qtest/libqtest.h"
#include "fuzz.h"

static GString *ivsh_fuzz_cmdline(FuzzTarget *t)
{
    return g_string_new(TARGET_NAME " -machine q35,accel=qtest -m 64 "
                        "-display none -nodefaults");
}

static void ivsh_fuzz(QTestState *s, const unsigned char *data, size_t size)
{
    fuzz_reset(s);
}

static void ivsh_fuzz_register(void)
{
    fuzz_add_target(&(FuzzTarget){
        .name = "ivsh",
        .description = "ivshmem devices: guest accesses and server messages",
        .get_init_cmdline = ivsh_fuzz_cmdline,
        .fuzz = ivsh_fuzz,
    });
}

fuzz_target_init(ivsh_fuzz_register);
