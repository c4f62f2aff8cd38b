/*
 * Report-only survey: QEMU's own ivshmem-doorbell and a hostile server
 *
 * Runs the cases of ivsh-hostile-cases.c against the emulator named by
 * $IVSH_UPSTREAM_QEMU (QEMU 10.0 with its own device) and prints what it
 * did with each, one TAP comment line per case:
 *
 *   # report: upstream/<case>: <outcome>
 *
 * These are observations of another program, not tests: there is no
 * test case, nothing passes or fails, and the exit status is 0 unless the
 * survey itself could not run.  The test runner shows them as a table.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "ivsh-hostile-cases.h"

/* How long a late case watches the process for a crash */
#define LATE_WATCH_MS 2000

static void report(const char *name, const char *outcome)
{
    printf("# report: upstream/%s: %s\n", name, outcome);
    fflush(stdout);
}

static const char *outcome(int status)
{
    switch (status) {
    case 0:
        return "accepted the server";
    case 1:
        return "refused it with an error";
    case 124:
        return "HUNG (killed after " stringify(IVSH_RUN_QEMU_S) " s)";
    default:
        return status > 128 ? "CRASHED" : "exited oddly";
    }
}

static void survey_setup(const IvshSetupCase *c)
{
    g_autofree char *args = NULL, *err = NULL;
    IvshEnv e;

    ivsh_env_init(&e, IVSH_ENV_SHM_SIZE, 2);
    ivsh_tserver_script(e.ts, c->script, c->opaque);
    /* Its device has no x-setup-timeout */
    args = ivsh_hostile_device_args(&e, c->master ? "master=on" : NULL);
    report(c->name, outcome(ivsh_run_qemu(IVSH_UPSTREAM_ENV, "pc", args,
                                          &err)));
    ivsh_env_free(&e);
}

typedef struct Child {
    GPid pid;
    int status;
} Child;

static bool child_exited(void *opaque)
{
    Child *ch = opaque;

    if (waitpid(ch->pid, &ch->status, WNOHANG) == ch->pid) {
        return true;
    }
    g_usleep(10000);    /* a crash shows only as an exit: poll for it */
    return false;
}

/* The process must survive the message and the next peer's arrival */
static void survey_late(const char *qemu, const IvshLateCase *c)
{
    g_autofree char *cmd = NULL, *dev = NULL;
    g_auto(GStrv) argv = NULL;
    g_autoptr(GError) gerr = NULL;
    IvshVm vm = { 0 };
    Child ch = { 0 };
    IvshEnv e;

    ivsh_env_init(&e, IVSH_ENV_SHM_SIZE, 2);
    dev = ivsh_hostile_device_args(&e, NULL);
    cmd = g_strdup_printf("%s -M pc -nodefaults -display none -S %s", qemu,
                          dev);
    g_assert(g_shell_parse_argv(cmd, NULL, &argv, &gerr));
    g_assert(g_spawn_async(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD |
                           G_SPAWN_STDOUT_TO_DEV_NULL |
                           G_SPAWN_STDERR_TO_DEV_NULL,
                           NULL, NULL, &ch.pid, &gerr));
    g_assert_no_error(gerr);
    if (!ivsh_tserver_wait_peers(e.ts, 1)) {
        report(c->name, "did not connect to the server");
        kill(ch.pid, SIGKILL);
        waitpid(ch.pid, &ch.status, 0);
    } else {
        vm.id = ivsh_tserver_peer_id(e.ts, 0);
        c->send(&e, &vm);
        ivsh_tserver_add_host_peer(e.ts);
        if (!ivsh_wait_until(child_exited, &ch, LATE_WATCH_MS)) {
            report(c->name, "survived");
            kill(ch.pid, SIGKILL);
            waitpid(ch.pid, &ch.status, 0);
        } else {
            report(c->name, WIFSIGNALED(ch.status) ? "CRASHED" : "exited");
        }
    }
    g_spawn_close_pid(ch.pid);
    ivsh_env_free(&e);
}

int main(int argc, char **argv)
{
    const char *qemu = ivsh_upstream_qemu();
    size_t i;

    if (!qemu) {
        printf("1..0 # SKIP no upstream QEMU ($" IVSH_UPSTREAM_ENV
               " not set)\n");
        return 0;
    }
    printf("# report-only: QEMU's own ivshmem-doorbell (%s) and a "
           "hostile ivshmem server\n", qemu);
    for (i = 0; i < ivsh_nr_setup_cases; i++) {
        survey_setup(&ivsh_setup_cases[i]);
    }
    for (i = 0; i < ivsh_nr_late_cases; i++) {
        survey_late(qemu, &ivsh_late_cases[i]);
    }
    printf("1..0\n");
    return 0;
}
