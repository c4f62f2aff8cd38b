/*
 * qtests for ivshmem-doorbell in the field: mixed peers, eventfds other
 * processes tamper with, file limits, chroot, odd chardevs, floods
 *
 * Every case here was a hang, a crash or a silent loss of interrupts in
 * an earlier version (docs/specs/ivsh-spec.rst, "Differences from QEMU
 * 10.0").  A case that could hang QEMU runs its QMP commands under a
 * deadline (ivsh_guard_start()): a hang fails the test instead of
 * stalling the run.  The KVM-only cases are in ivsh-kvm-test.c.
 *
 * Environment: QTEST_QEMU_BINARY; IVSH_UPSTREAM_QEMU (QEMU 10.0's own
 * device as a peer); IVSH_SERVER (the project's ivsh-server, else
 * build/tools/ivsh-server next to the build tree).
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include "qobject/qdict.h"
#include "hw/pci/pci_regs.h"
#include "hw/misc/ivsh-regs.h"
#include "hw/misc/ivsh-proto.h"
#include "ivsh-io.h"
#include "ivsh-qtest.h"

#define GUARD_S 20
#define LIMITED_ENV "IVSH_FIELD_LIMITED_QEMU"

/* ---- a deadline for QMP commands that a broken device would hang ---- */

/* QMP answers, within the deadline */
static void assert_responsive(QTestState *qts, const char *what)
{
    ivsh_guard_start(what, GUARD_S);
    qtest_qmp_assert_success(qts, "{'execute': 'query-status'}");
    ivsh_guard_stop();
}

static char *errfile(IvshEnv *e, const char *name)
{
    return g_strdup_printf("%s/%s.err", e->dir, name);
}

static unsigned count_lines(const char *path)
{
    g_autofree char *s = NULL;
    unsigned n = 0;
    char *p;

    g_assert_true(g_file_get_contents(path, &s, NULL, NULL));
    for (p = s; *p; p++) {
        n += *p == '\n';
    }
    return n;
}

static bool file_has(const char *path, const char *text)
{
    g_autofree char *s = NULL;

    return g_file_get_contents(path, &s, NULL, NULL) && strstr(s, text);
}

/* Read and reset an eventfd whatever its O_NONBLOCK says; 0 if empty */
static uint64_t efd_take(int fd)
{
    uint64_t val = 0;
    struct iovec iov = { .iov_base = &val, .iov_len = sizeof(val) };

    return preadv2(fd, &iov, 1, -1, RWF_NOWAIT) == sizeof(val) ? val : 0;
}

static void efd_add(int fd, uint64_t val)
{
    g_assert_cmpint(write(fd, &val, sizeof(val)), ==, sizeof(val));
}

static void reopen(IvshVm *vm)
{
    ivsh_dev_close(&vm->d);
    ivsh_vm_open(vm, vm->qts, IVSH_DEVFN, vm->vectors);
}

/* ---- the project's ivsh-server, as users run it ---- */

typedef struct RealServer {
    IvshEnv env;            /* dir and sock only */
    GPid pid;
} RealServer;

static char *server_binary(void)
{
    const char *env = g_getenv("IVSH_SERVER");
    g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
    g_autofree char *dir = exe ? g_path_get_dirname(exe) : NULL;
    char *path;

    if (env && *env) {
        return g_strdup(env);
    }
    if (!dir) {
        return NULL;
    }
    /* build/trees/ours/build/tests/qtest/ivsh -> build/tools */
    path = g_build_filename(dir, "..", "..", "..", "..", "..", "..",
                            "tools", "ivsh-server", NULL);
    if (access(path, X_OK) == 0) {
        return path;
    }
    g_free(path);
    return NULL;
}

static bool sock_exists(void *opaque)
{
    g_usleep(1000);     /* a file, not an event: poll it gently */
    return g_file_test(opaque, G_FILE_TEST_EXISTS);
}

static bool server_start(RealServer *rs, unsigned vectors)
{
    g_autofree char *bin = server_binary();
    g_autofree char *n = g_strdup_printf("%u", vectors);
    g_autofree char *log = NULL;
    g_autoptr(GError) err = NULL;
    char *argv[] = { NULL, (char *)"-S", NULL, (char *)"-n", n,
                     (char *)"-l", (char *)"1M", (char *)"-q", NULL };
    int fd;

    if (!bin) {
        g_test_skip("no ivsh-server: set IVSH_SERVER or run make tools");
        return false;
    }
    memset(rs, 0, sizeof(*rs));
    rs->env.dir = ivsh_tmpdir_new();
    rs->env.sock = g_build_filename(rs->env.dir, "server.sock", NULL);
    log = g_build_filename(rs->env.dir, "server.log", NULL);
    argv[0] = bin;
    argv[2] = rs->env.sock;
    fd = open(log, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    g_assert(fd >= 0);
    g_assert_true(g_spawn_async_with_fds(NULL, argv, NULL,
                                         G_SPAWN_DO_NOT_REAP_CHILD, NULL,
                                         NULL, &rs->pid, -1, fd, fd, &err));
    g_assert_no_error(err);
    close(fd);
    g_assert_true(ivsh_wait_until(sock_exists, rs->env.sock, IVSH_WAIT_MS));
    return true;
}

static void server_stop(RealServer *rs)
{
    int status;

    kill(rs->pid, SIGTERM);
    g_assert_cmpint(waitpid(rs->pid, &status, 0), ==, rs->pid);
    g_spawn_close_pid(rs->pid);
    g_free(rs->env.sock);
    ivsh_tmpdir_free(rs->env.dir);
}

static IvshVm *vm_start_env(const char *env_var, IvshEnv *e,
                            unsigned vectors, const char *opts,
                            const char *errf)
{
    IvshVm *vm = g_new0(IvshVm, 1);
    g_autofree char *args = NULL;
    int fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int saved = dup(STDERR_FILENO);
    QTestState *qts;

    args = g_strdup_printf("-M pc -chardev socket,id=srv,path=%s -device "
                           "ivshmem-doorbell,chardev=srv,vectors=%u,"
                           "addr=04.0%s%s", e->sock, vectors,
                           opts ? "," : "", opts ? opts : "");
    g_assert(fd >= 0 && saved >= 0);
    fflush(stderr);
    g_assert(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    qts = qtest_init_with_env(env_var, args, true);
    fflush(stderr);
    g_assert(dup2(saved, STDERR_FILENO) == STDERR_FILENO);
    close(saved);
    close(fd);
    ivsh_vm_open(vm, qts, IVSH_DEVFN, vectors);
    return vm;
}

/* ---- F1: mixed peers, then a reset ---- */

typedef struct MixedCase {
    const char *name;
    bool upstream;          /* B is QEMU 10.0's own device */
    unsigned b_vectors;
    const char *b_opts;
    bool b_knows_a;         /* B keeps some of A's eventfds */
    const char *b_drops;    /* what B says when it drops A's eventfds */
} MixedCase;

static const MixedCase mixed_cases[] = {
    { "ours-vectors-2", false, 2, NULL, true,
      "more than 2 eventfds for peer" },
    { "upstream-vectors-2", true, 2, NULL, true,
      "Too many eventfd received" },
    { "ours-vectors-1", false, 1, NULL, true,
      "more than 1 eventfds for peer" },
    { "ours-refuses-a", false, 2, "x-max-eventfds=2", false,
      "refused: the limit of" },
};

typedef struct MsiWait {
    IvshVm *from, *to;
    unsigned vector;
} MsiWait;

static bool ring_seen(void *opaque)
{
    MsiWait *w = opaque;

    ivsh_vm_ring(w->from, w->to->id, w->vector);
    if (ivsh_vm_msi_seen(w->to, w->vector)) {
        qtest_writel(w->to->qts, IVSH_MSI_ADDR(w->vector), 0);
        return true;
    }
    return false;
}

/* Ring @to from @from until the interrupt shows */
static bool ring_until_msi(IvshVm *from, IvshVm *to, unsigned vector)
{
    MsiWait w = { from, to, vector };

    return ivsh_wait_until(ring_seen, &w, IVSH_WAIT_MS);
}

/*
 * VM A (vectors=4) shares the server with a VM B that drops some or all
 * of A's eventfds.  QEMU's socket chardev makes every fd it receives
 * blocking, so B leaves A's own eventfds blocking: A's reset must still
 * return, and A must still work.
 */
static void test_mixed(gconstpointer opaque)
{
    const MixedCase *c = opaque;
    const char *benv = c->upstream ? IVSH_UPSTREAM_ENV : NULL;
    g_autofree char *aerr = NULL, *berr = NULL;
    RealServer rs;
    IvshVm *a, *b;

    if (c->upstream && !ivsh_upstream_qemu()) {
        g_test_skip("no upstream QEMU ($" IVSH_UPSTREAM_ENV " not set)");
        return;
    }
    if (!server_start(&rs, 4)) {
        return;
    }
    aerr = errfile(&rs.env, "a");
    berr = errfile(&rs.env, "b");
    /* A first: its own eventfds are set up when B drops them */
    a = vm_start_env(NULL, &rs.env, 4, NULL, aerr);
    b = vm_start_env(benv, &rs.env, c->b_vectors, c->b_opts, berr);
    g_assert_true(ivsh_wait_file_contains(berr, c->b_drops));
    g_assert_true(ring_until_msi(a, b, 0));
    if (c->b_knows_a) {
        g_assert_true(ring_until_msi(b, a, 0));
    }

    ivsh_guard_start("system_reset of A", GUARD_S);
    qtest_system_reset(a->qts);
    ivsh_guard_stop();
    reopen(a);

    /* A rings its own blocking eventfds, and B rings A */
    ivsh_vm_ring(a, a->id, 3);
    g_assert_true(ivsh_vm_wait_msi(a, 3));
    if (c->b_knows_a) {
        ivsh_vm_ring(b, a->id, 0);
        g_assert_true(ivsh_vm_wait_msi(a, 0));
    }
    assert_responsive(a->qts, "query-status after the doorbells");

    ivsh_vm_free(b);
    ivsh_vm_free(a);
    server_stop(&rs);
}

/* ---- F1: a server, or a peer, that tampers with the eventfds ---- */

/* The server clears O_NONBLOCK on every eventfd it hands out */
static void test_blocking_eventfds(void)
{
    g_autofree char *err = NULL;
    IvshEnv e;
    IvshVm *vm;
    int host;

    ivsh_env_init(&e, IVSH_ENV_SHM_SIZE, 2);
    err = errfile(&e, "vm");
    ivsh_tserver_clear_nonblock(e.ts);
    vm = ivsh_vm_start(&e, 2, NULL, err);
    host = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, host));
    /* QEMU set O_NONBLOCK when it took them: clear it again, for all */
    ivsh_tserver_clear_nonblock(e.ts);

    ivsh_guard_start("system_reset with blocking eventfds", GUARD_S);
    qtest_system_reset(vm->qts);
    ivsh_guard_stop();
    reopen(vm);
    ivsh_tserver_ring(e.ts, vm->id, 1);
    g_assert_true(ivsh_vm_wait_msi(vm, 1));
    ivsh_vm_ring(vm, vm->id, 0);
    g_assert_true(ivsh_vm_wait_msi(vm, 0));
    ivsh_guard_start("doorbell to a host peer with blocking eventfds", GUARD_S);
    ivsh_vm_ring(vm, host, 1);
    ivsh_guard_stop();
    g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, host, 1, IVSH_WAIT_MS), ==,
                     1);
    assert_responsive(vm->qts, "query-status");

    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

/*
 * A peer makes its eventfd blocking and saturates the counter: a guest
 * ringing it must not hang QEMU (ioeventfd=on and off: without KVM both
 * go through QEMU).
 */
static void test_peer_saturates(gconstpointer opaque)
{
    g_autofree char *err = NULL;
    IvshEnv e;
    IvshVm *vm;
    int host, fd;

    ivsh_env_init(&e, IVSH_ENV_SHM_SIZE, 2);
    err = errfile(&e, "vm");
    vm = ivsh_vm_start(&e, 2, opaque, err);
    host = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, host));
    ivsh_tserver_clear_nonblock(e.ts);
    fd = ivsh_tserver_eventfd(e.ts, host, 0);
    efd_add(fd, 0xfffffffffffffffeULL);

    ivsh_guard_start("doorbell to a saturated eventfd", GUARD_S);
    ivsh_vm_ring(vm, host, 0);
    ivsh_vm_ring(vm, host, 0);
    qtest_qmp_assert_success(vm->qts, "{'execute': 'query-status'}");
    ivsh_guard_stop();
    g_assert_true(ivsh_wait_file_contains(err, "counter is full"));
    /* Once the peer reads it, doorbells pass again */
    g_assert_cmphex(efd_take(fd), ==, 0xfffffffffffffffeULL);
    ivsh_vm_ring(vm, host, 0);
    g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, host, 0, IVSH_WAIT_MS), ==,
                     1);

    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

typedef struct Drainer {
    int fd;
    unsigned rounds;
    unsigned stolen;
} Drainer;

static gpointer drain_thread(gpointer opaque)
{
    Drainer *d = opaque;
    unsigned i;

    for (i = 0; i < d->rounds; i++) {
        efd_add(d->fd, 1);
        d->stolen += efd_take(d->fd) != 0;
    }
    return NULL;
}

/*
 * A peer rings the VM's own (blocking) eventfd and takes the count back
 * at once, racing QEMU's handler, which must never wait for a count
 * that is gone.
 */
static void test_peer_drains(void)
{
    g_autofree char *err = NULL;
    Drainer d = { .rounds = 20000 };
    GThread *t;
    IvshEnv e;
    IvshVm *vm;

    ivsh_env_init(&e, IVSH_ENV_SHM_SIZE, 2);
    err = errfile(&e, "vm");
    vm = ivsh_vm_start(&e, 2, NULL, err);
    ivsh_tserver_ring(e.ts, vm->id, 1);
    g_assert_true(ivsh_vm_wait_msi(vm, 1));
    ivsh_tserver_clear_nonblock(e.ts);
    d.fd = ivsh_tserver_eventfd(e.ts, vm->id, 0);

    t = g_thread_new("drainer", drain_thread, &d);
    g_thread_join(t);
    g_test_message("the drainer took back %u of %u doorbells", d.stolen,
                   d.rounds);
    assert_responsive(vm->qts, "query-status after the drainer");
    ivsh_tserver_ring(e.ts, vm->id, 1);
    g_assert_true(ivsh_vm_wait_msi(vm, 1));

    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

/* ---- F4: own eventfds come last, and always fit ---- */

static void test_own_reserved(void)
{
    g_autofree char *err = NULL;
    IvshEnv e;
    IvshVm *vm;
    int h0, h1;

    ivsh_env_init(&e, IVSH_ENV_SHM_SIZE, 2);
    err = errfile(&e, "vm");
    h0 = ivsh_tserver_add_host_peer(e.ts);
    h1 = ivsh_tserver_add_host_peer(e.ts);
    /* 4 eventfds: h0's 2 and our own 2; h1, sent before ours, is refused */
    vm = ivsh_vm_start(&e, 2, "x-max-eventfds=4", err);
    ivsh_tserver_ring(e.ts, vm->id, 1);
    g_assert_true(ivsh_vm_wait_msi(vm, 1));
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, h0));
    g_assert_true(ivsh_wait_file_contains(err, "refused: the limit of 4"));
    ivsh_vm_ring(vm, h1, 1);
    g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, h1, 1, 0), ==, 0);

    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

/* Occurrences of @text in the file at @path */
static unsigned count_in_file(const char *path, const char *text)
{
    g_autofree char *s = NULL;
    unsigned n = 0;
    char *p;

    g_assert_true(g_file_get_contents(path, &s, NULL, NULL));
    for (p = strstr(s, text); p; p = strstr(p + 1, text)) {
        n++;
    }
    return n;
}

static bool refused_twice(void *opaque)
{
    g_usleep(1000);     /* a file, not an event: poll it gently */
    return count_in_file(opaque, "refused: the limit") >= 2;
}

/*
 * A budget refusal refuses the whole peer: A (x-max-eventfds=10, 4
 * vectors) has room for its own 4 and B's 4, then 2 of C's 4.  C is
 * refused as a whole, once: A keeps none of C's eventfds, so A's
 * doorbells to C are not delivered, while B's are; A and B still work.
 */
static void test_budget_whole_peer(void)
{
    g_autofree char *aerr = NULL, *berr = NULL, *cerr = NULL;
    RealServer rs;
    IvshVm *a, *b, *c;

    if (!server_start(&rs, 4)) {
        return;
    }
    aerr = errfile(&rs.env, "a");
    berr = errfile(&rs.env, "b");
    cerr = errfile(&rs.env, "c");
    a = vm_start_env(NULL, &rs.env, 4, "x-max-eventfds=10", aerr);
    g_assert_true(ring_until_msi(a, a, 3));
    b = vm_start_env(NULL, &rs.env, 4, NULL, berr);
    g_assert_true(ring_until_msi(a, b, 3));
    c = vm_start_env(NULL, &rs.env, 4, NULL, cerr);
    g_assert_true(ring_until_msi(b, c, 3));
    g_assert_true(ivsh_wait_file_contains(aerr, "refused: the limit of 10"));

    /*
     * A rings C's vectors 0 and 1 (the ones that fitted), then B rings
     * C's vector 2: C's handlers see all three eventfds in one poll.
     */
    ivsh_vm_ring(a, c->id, 0);
    ivsh_vm_ring(a, c->id, 1);
    ivsh_vm_ring(b, c->id, 2);
    g_assert_true(ivsh_vm_wait_msi(c, 2));
    g_assert_false(ivsh_vm_msi_seen(c, 0));
    g_assert_false(ivsh_vm_msi_seen(c, 1));
    g_assert_cmpuint(count_in_file(aerr, "refused: the limit"), ==, 1);
    g_assert_true(file_has(aerr, "its 2 eventfds accepted so far are "
                           "released"));

    /* A keeps its own vectors and B whole */
    g_assert_true(ring_until_msi(b, a, 0));
    g_assert_true(ring_until_msi(c, a, 1));
    g_assert_true(ring_until_msi(a, b, 0));

    /* C's disconnect is nothing to A; a newcomer is judged anew */
    ivsh_vm_free(c);
    c = vm_start_env(NULL, &rs.env, 4, NULL, cerr);
    g_assert_true(ring_until_msi(b, c, 3));
    g_assert_true(ivsh_wait_until(refused_twice, aerr, IVSH_WAIT_MS));
    ivsh_vm_ring(a, c->id, 0);
    ivsh_vm_ring(b, c->id, 1);
    g_assert_true(ivsh_vm_wait_msi(c, 1));
    g_assert_false(ivsh_vm_msi_seen(c, 0));
    assert_responsive(a->qts, "query-status after the refusals");

    ivsh_vm_free(c);
    ivsh_vm_free(b);
    ivsh_vm_free(a);
    server_stop(&rs);
}

/* ---- F5, F20: chardevs and properties the device refuses ---- */

typedef struct ConfigCase {
    const char *name;
    const char *chardev;    /* "%s": the server's socket */
    const char *opts;
    const char *message;
} ConfigCase;

static const ConfigCase config_cases[] = {
    { "websocket", "socket,id=c,path=%s.ws,server=on,wait=off,websocket=on",
      NULL, "chardev 'c' is a WebSocket" },
    { "telnet", "socket,id=c,path=%s,telnet=on", NULL,
      "chardev 'c' speaks telnet" },
    { "telnet-reconnect", "socket,id=c,path=%s,telnet=on,reconnect-ms=100",
      NULL, "chardev 'c' speaks telnet" },
    { "setup-timeout-cap", "socket,id=c,path=%s", "x-setup-timeout=60001",
      "x-setup-timeout=60001 is above the maximum of 60000 ms" },
    { "max-eventfds-below-vectors", "socket,id=c,path=%s",
      "x-max-eventfds=1", "x-max-eventfds=1 is below vectors=2" },
};

static void test_config(gconstpointer opaque)
{
    const ConfigCase *c = opaque;
    g_autofree char *chr = NULL, *args = NULL, *err = NULL;
    IvshEnv e;
    int status;

    ivsh_env_init(&e, IVSH_ENV_SHM_SIZE, 2);
    chr = g_strdup_printf(c->chardev, e.sock);
    args = g_strdup_printf("-chardev %s -device ivshmem-doorbell,chardev=c,"
                           "vectors=2%s%s", chr, c->opts ? "," : "",
                           c->opts ? c->opts : "");
    status = ivsh_run_qemu(NULL, "pc", args, &err);
    g_test_message("%s: exit %d: %s", c->name, status, err);
    g_assert_cmpint(status, ==, 1);
    g_assert_nonnull(strstr(err, c->message));
    ivsh_env_free(&e);
}

typedef struct Connector {
    char *path;
    int sock;
} Connector;

static gpointer connect_thread(gpointer opaque)
{
    Connector *c = opaque;
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    gint64 end = g_get_monotonic_time() + 10 * G_TIME_SPAN_SECOND;

    g_strlcpy(un.sun_path, c->path, sizeof(un.sun_path));
    do {
        c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(c->sock, (struct sockaddr *)&un, sizeof(un)) == 0) {
            return NULL;
        }
        close(c->sock);
        c->sock = -1;
        g_usleep(10000);    /* until QEMU listens: no event to wait on */
    } while (g_get_monotonic_time() < end);
    return NULL;
}

/* server=on, connected (wait=on): the device is a client, not a server */
static void test_chardev_server(void)
{
    g_autofree char *dir = ivsh_tmpdir_new();
    g_autofree char *args = NULL, *err = NULL;
    Connector c = { .sock = -1 };
    GThread *t;
    int status;

    c.path = g_build_filename(dir, "qemu.sock", NULL);
    args = g_strdup_printf("-chardev socket,id=c,path=%s,server=on,wait=on "
                           "-device ivshmem-doorbell,chardev=c,"
                           "x-setup-timeout=400", c.path);
    t = g_thread_new("connector", connect_thread, &c);
    status = ivsh_run_qemu(NULL, "pc", args, &err);
    g_thread_join(t);
    g_test_message("exit %d: %s", status, err);
    g_assert_cmpint(c.sock, >=, 0);
    close(c.sock);
    g_assert_cmpint(status, ==, 1);
    g_assert_nonnull(strstr(err, "chardev 'c' listens for connections "
                            "(server=on)"));
    g_free(c.path);
    ivsh_tmpdir_free(g_steal_pointer(&dir));
}

/* ---- F6: QEMU's file limit ---- */

/* Before any thread: QEMU under RLIMIT_NOFILE @nofile, as $LIMITED_ENV */
static void set_limited_qemu(unsigned nofile)
{
    const char *qemu = g_getenv("QTEST_QEMU_BINARY");
    g_autofree char *cmd = NULL;

    if (qemu) {
        cmd = g_strdup_printf("prlimit --nofile=%u:%u %s", nofile, nofile,
                              qemu);
        g_setenv(LIMITED_ENV, cmd, true);
    }
}

static bool have_prlimit(void)
{
    g_autofree char *p = g_find_program_in_path("prlimit");

    if (!p) {
        g_test_skip("no prlimit (util-linux)");
    }
    return p;
}

/*
 * QEMU under RLIMIT_NOFILE 256, 30 peers of 8 eventfds: more than fit.
 * The devices' eventfds stay within half of the limit; peers beyond are
 * refused as a whole, never half-read ("disconnect" misread from a
 * message whose fd the kernel dropped).
 */
static void test_rlimit_budget(void)
{
    g_autofree char *err = NULL;
    int h[30], i, last = 0, sync;
    IvshEnv e;
    IvshVm *vm;

    if (!have_prlimit()) {
        return;
    }
    ivsh_env_init(&e, IVSH_ENV_SHM_SIZE, 8);
    err = errfile(&e, "vm");
    vm = vm_start_env(LIMITED_ENV, &e, 8, NULL, err);
    for (i = 0; i < G_N_ELEMENTS(h); i++) {
        h[i] = ivsh_tserver_add_host_peer(e.ts);
    }
    g_assert_true(ivsh_wait_file_contains(err, "half of it"));
    /*
     * h[0] leaves and a newcomer takes its room: once the device knows
     * the newcomer, it has read every message before.
     */
    ivsh_tserver_remove_peer(e.ts, h[0]);
    sync = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, sync));
    for (i = 1; i < G_N_ELEMENTS(h); i++) {
        ivsh_vm_ring(vm, h[i], 7);
        if (ivsh_tserver_wait_rung(e.ts, h[i], 7, 100)) {
            g_assert_cmpint(last, ==, i - 1);   /* accepted: a prefix */
            last = i;
        }
    }
    g_test_message("peers accepted: %d of %zu", last + 1, G_N_ELEMENTS(h));
    g_assert_cmpint(last, >, 0);
    g_assert_cmpint(last, <, G_N_ELEMENTS(h) - 1);
    for (i = 0; i < 8; i++) {
        ivsh_vm_ring(vm, h[last], i);
        g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, h[last], i,
                                                IVSH_WAIT_MS), ==, 1);
    }
    g_assert_false(file_has(err, "disconnect"));
    g_assert_false(file_has(err, "no longer reading"));
    g_assert_cmpuint(ivsh_count_fds(vm->qts), <, 256 - 64);
    assert_responsive(vm->qts, "query-status");

    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

/*
 * The limit drops to just above what QEMU holds while it runs: the
 * device stops reading, with one error, before a peer's eventfds could
 * be lost; what it knew keeps working.
 */
static void test_rlimit_headroom(void)
{
    g_autofree char *err = NULL;
    struct rlimit rl;
    unsigned n;
    IvshEnv e;
    IvshVm *vm;
    int h0, h1;

    ivsh_env_init(&e, IVSH_ENV_SHM_SIZE, 4);
    err = errfile(&e, "vm");
    vm = ivsh_vm_start(&e, 4, NULL, err);
    h0 = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, h0));
    n = ivsh_count_fds(vm->qts);
    rl.rlim_cur = rl.rlim_max = n + 2;
    g_assert_cmpint(prlimit(qtest_pid(vm->qts), RLIMIT_NOFILE, &rl, NULL),
                    ==, 0);
    h1 = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_wait_file_contains(err, "no longer reading"));
    g_assert_true(file_has(err, "file descriptors left"));
    ivsh_vm_ring(vm, h1, 3);
    g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, h1, 3, 100), ==, 0);
    ivsh_vm_ring(vm, h0, 3);
    g_assert_cmpuint(ivsh_tserver_wait_rung(e.ts, h0, 3, IVSH_WAIT_MS), ==,
                     1);
    ivsh_tserver_ring(e.ts, vm->id, 2);
    g_assert_true(ivsh_vm_wait_msi(vm, 2));
    g_assert_false(file_has(err, "disconnect"));
    g_assert_cmpuint(count_lines(err), ==, 1);
    assert_responsive(vm->qts, "query-status");

    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

/* ---- F7: -run-with chroot= ---- */

static void test_chroot(void)
{
    g_autofree char *err = NULL, *root = NULL, *opts = NULL;
    IvshEnv e;
    IvshVm *vm;
    int host;

    if (geteuid() != 0) {
        g_test_skip("chroot needs root");
        return;
    }
    ivsh_env_init(&e, IVSH_ENV_SHM_SIZE, 2);
    err = errfile(&e, "vm");
    root = ivsh_tmpdir_new();
    /* ivsh_vm_start()'s options come after the device's */
    opts = g_strdup_printf("id=dut -run-with chroot=%s", root);
    vm = ivsh_vm_start(&e, 2, opts, err);
    host = ivsh_tserver_add_host_peer(e.ts);
    g_assert_true(ivsh_vm_sync_host_peer(&e, vm, host));
    ivsh_tserver_ring(e.ts, vm->id, 1);
    g_assert_true(ivsh_vm_wait_msi(vm, 1));
    g_assert_false(file_has(err, "not an eventfd"));

    ivsh_vm_free(vm);
    ivsh_env_free(&e);
    ivsh_tmpdir_free(g_steal_pointer(&root));
}

/* ---- scripted servers: the test keeps the eventfds it sent ---- */

typedef struct Script {
    GMutex lock;
    int id;
    int own[2];             /* own eventfds sent (the same fd twice: dup) */
    int peer_efd;           /* a peer's eventfd, kept */
    unsigned flood;         /* messages of the flood case */
    bool sparse;            /* flood: new peers, else unknown disconnects */
    bool semaphore;
    bool dup_own, dup_peers;
    bool done;
} Script;

static void script_init(Script *s, int id)
{
    memset(s, 0, sizeof(*s));
    g_mutex_init(&s->lock);
    s->id = id;
    s->own[0] = s->own[1] = s->peer_efd = -1;
}

static void script_free(Script *s)
{
    if (s->own[0] >= 0) {
        close(s->own[0]);
    }
    if (s->own[1] >= 0 && s->own[1] != s->own[0]) {
        close(s->own[1]);
    }
    if (s->peer_efd >= 0) {
        close(s->peer_efd);
    }
    g_mutex_clear(&s->lock);
}

static void send_efd(int sock, int64_t id, int fd)
{
    g_assert_cmpint(ivsh_msg_send(sock, id, fd), ==, 0);
}

static int new_efd(bool semaphore)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK |
                        (semaphore ? EFD_SEMAPHORE : 0));

    g_assert(fd >= 0);
    return fd;
}

/* Set-up, peers (sparse or duplicated), a flood, then our own eventfds */
static void s_script(IvshTServer *ts, int sock, void *opaque)
{
    Script *s = opaque;
    unsigned i;
    int fd;

    ivsh_tserver_send_setup(ts, sock, s->id);
    if (s->dup_peers) {
        s->peer_efd = new_efd(false);
        send_efd(sock, 7, s->peer_efd);
        send_efd(sock, 8, s->peer_efd);
    }
    for (i = 0; i < s->flood; i++) {
        if (!s->sparse) {
            send_efd(sock, 77, -1);             /* unknown peer: dropped */
        } else {
            fd = new_efd(false);                /* one eventfd per peer */
            send_efd(sock, 100 + i, fd);
            close(fd);
        }
    }
    if (!s->dup_peers) {
        s->peer_efd = new_efd(false);
        send_efd(sock, 9, s->peer_efd);
    }
    s->own[0] = new_efd(s->semaphore);
    s->own[1] = s->dup_own ? s->own[0] : new_efd(s->semaphore);
    send_efd(sock, s->id, s->own[0]);
    send_efd(sock, s->id, s->own[1]);
    g_mutex_lock(&s->lock);
    s->done = true;
    g_mutex_unlock(&s->lock);
}

static bool script_done(void *opaque)
{
    Script *s = opaque;
    bool done;

    g_usleep(1000);     /* another thread's flag: poll it gently */
    g_mutex_lock(&s->lock);
    done = s->done;
    g_mutex_unlock(&s->lock);
    return done;
}

static bool efd_rung(void *opaque)
{
    return efd_take(*(int *)opaque);
}

/* A VM on a server running @s; QEMU's stderr goes to *@errf */
static IvshVm *script_vm(IvshEnv *e, Script *s, unsigned vectors,
                         char **errf)
{
    IvshVm *vm;

    ivsh_env_init(e, IVSH_ENV_SHM_SIZE, 2);
    *errf = errfile(e, "vm");
    ivsh_tserver_script(e->ts, s_script, s);
    vm = ivsh_vm_start(e, vectors, NULL, *errf);
    g_assert_true(ivsh_wait_until(script_done, s, 30000));
    /* The own eventfds come last: once they work, all was read */
    efd_add(s->own[1], 1);
    g_assert_true(ivsh_vm_wait_msi(vm, s->dup_own ? 0 : 1));
    return vm;
}

/* ---- F2 (without KVM): one eventfd under two names ---- */

static void test_dup_own(void)
{
    g_autofree char *err = NULL;
    Script s;
    IvshEnv e;
    IvshVm *vm;

    script_init(&s, 5);
    s.dup_own = true;
    vm = script_vm(&e, &s, 2, &err);
    g_assert_true(ivsh_wait_file_contains(err, "server sent the eventfd of "
                                          "peer 5 vector 0 again, as peer 5 "
                                          "vector 1: refused"));
    /* Vector 1 has no eventfd: only vector 0 ever fires */
    efd_add(s.own[0], 1);
    g_assert_true(ivsh_vm_wait_msi(vm, 0));
    g_assert_false(ivsh_vm_msi_seen(vm, 1));
    assert_responsive(vm->qts, "query-status");
    ivsh_vm_free(vm);
    ivsh_env_free(&e);
    script_free(&s);
}

static void test_dup_peers(void)
{
    g_autofree char *err = NULL;
    Script s;
    IvshEnv e;
    IvshVm *vm;

    script_init(&s, 5);
    s.dup_peers = true;
    vm = script_vm(&e, &s, 2, &err);
    g_assert_true(ivsh_wait_file_contains(err, "server sent the eventfd of "
                                          "peer 7 vector 0 again, as peer 8 "
                                          "vector 0: refused"));
    ivsh_vm_ring(vm, 8, 0);
    ivsh_vm_ring(vm, 7, 0);
    g_assert_cmpuint(efd_take(s.peer_efd), ==, 1);
    ivsh_vm_free(vm);
    ivsh_env_free(&e);
    script_free(&s);
}

/* ---- F11: many sparse peers cost what they hold ---- */

static uint64_t rss_kib(QTestState *qts)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/status",
                                            qtest_pid(qts));
    g_autofree char *s = NULL;
    const char *p;

    g_assert_true(g_file_get_contents(path, &s, NULL, NULL));
    p = strstr(s, "VmRSS:");
    g_assert_nonnull(p);
    return g_ascii_strtoull(p + 6, NULL, 10);
}

static void test_sparse_peers(void)
{
    g_autofree char *err = NULL;
    uint64_t before, after;
    Script s;
    IvshEnv e;
    IvshVm *vm;
    QTestState *probe;

    /* The baseline: the same VM without the peers */
    ivsh_env_init(&e, IVSH_ENV_SHM_SIZE, 2);
    probe = qtest_initf("-M pc -chardev socket,id=srv,path=%s -device "
                        "ivshmem-doorbell,chardev=srv,vectors=2048,"
                        "addr=04.0", e.sock);
    assert_responsive(probe, "query-status");
    before = rss_kib(probe);
    qtest_quit(probe);
    ivsh_env_free(&e);

    script_init(&s, 2);
    s.flood = 4000;
    s.sparse = true;
    vm = script_vm(&e, &s, 2048, &err);
    ivsh_vm_ring(vm, 9, 0);
    g_assert_true(ivsh_wait_until(efd_rung, &s.peer_efd, IVSH_WAIT_MS));
    after = rss_kib(vm->qts);
    g_test_message("RSS %" PRIu64 " KiB without peers, %" PRIu64 " KiB "
                   "with 4000 peers of one eventfd (vectors=2048)",
                   before, after);
    g_assert_cmpuint(after, <, before + 16 * 1024);
    ivsh_vm_free(vm);
    ivsh_env_free(&e);
    script_free(&s);
}

/* ---- F12: a flood of bad messages, a few lines of log ---- */

static void test_drop_flood(void)
{
    g_autofree char *err = NULL;
    Script s;
    IvshEnv e;
    IvshVm *vm;

    script_init(&s, 3);
    s.flood = 20000;
    vm = script_vm(&e, &s, 2, &err);
    ivsh_vm_ring(vm, 9, 0);
    g_assert_true(ivsh_wait_until(efd_rung, &s.peer_efd, IVSH_WAIT_MS));
    g_test_message("%u lines of stderr for %u bad messages",
                   count_lines(err), s.flood);
    g_assert_cmpuint(count_lines(err), <=, 12);
    g_assert_true(file_has(err, "only traced"));
    assert_responsive(vm->qts, "query-status");
    ivsh_vm_free(vm);
    ivsh_env_free(&e);
    script_free(&s);
}

/* ---- F15: an EFD_SEMAPHORE eventfd as our own ---- */

static uint64_t cpu_ticks(QTestState *qts)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/stat", qtest_pid(qts));
    g_autofree char *s = NULL;
    g_auto(GStrv) f = NULL;
    const char *p;

    g_assert_true(g_file_get_contents(path, &s, NULL, NULL));
    p = strrchr(s, ')');
    g_assert_nonnull(p);
    f = g_strsplit(p + 2, " ", 0);
    /* utime and stime: fields 14 and 15, 12 and 13 after the name */
    return g_ascii_strtoull(f[11], NULL, 10) +
           g_ascii_strtoull(f[12], NULL, 10);
}

static void test_semaphore(void)
{
    g_autofree char *err = NULL;
    uint64_t t0, t1;
    Script s;
    IvshEnv e;
    IvshVm *vm;

    script_init(&s, 4);
    s.semaphore = true;
    vm = script_vm(&e, &s, 2, &err);
    efd_add(s.own[0], 0xfffffffffffffffeULL);
    g_assert_true(ivsh_vm_wait_msi(vm, 0));
    assert_responsive(vm->qts, "query-status");
    t0 = cpu_ticks(vm->qts);
    g_usleep(G_USEC_PER_SEC);   /* a rate: measured over a second */
    t1 = cpu_ticks(vm->qts);
    g_test_message("QEMU used %" PRIu64 " of %ld CPU ticks in 1 s", t1 - t0,
                   sysconf(_SC_CLK_TCK));
    g_assert_cmpuint(t1 - t0, <, sysconf(_SC_CLK_TCK) / 4);
    g_assert_true(file_has(err, "stays readable"));
    /* Still delivered, coalesced */
    g_assert_true(ivsh_vm_wait_msi(vm, 0));
    ivsh_vm_free(vm);
    ivsh_env_free(&e);
    script_free(&s);
}

/* ---- F16: bus mastering off holds the interrupt ---- */

static void test_bus_master(void)
{
    IvshEnv e;
    IvshVm *vm;
    uint16_t cmd;

    ivsh_env_init(&e, IVSH_ENV_SHM_SIZE, 2);
    vm = ivsh_vm_start(&e, 2, NULL, NULL);
    cmd = qpci_config_readw(vm->d.dev, PCI_COMMAND);
    qpci_config_writew(vm->d.dev, PCI_COMMAND, cmd & ~PCI_COMMAND_MASTER);
    ivsh_tserver_ring(e.ts, vm->id, 1);
    g_assert_true(ivsh_vm_wait_pending(vm, 1));
    g_assert_false(ivsh_vm_msi_seen(vm, 1));
    qpci_config_writew(vm->d.dev, PCI_COMMAND, cmd);
    g_assert_true(ivsh_vm_wait_msi(vm, 1));
    g_assert_false(qpci_msix_pending(vm->d.dev, 1));
    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

/*
 * A doorbell pending while bus mastering is off survives what makes
 * msix.c deliver pending vectors (whose message would be lost then):
 * unmasking its entry, clearing Function Mask, enabling MSI-X.  It is
 * delivered once, when bus mastering comes back.
 */
typedef enum BmUnmask {
    BM_UNMASK_ENTRY,
    BM_UNMASK_FUNCTION,
    BM_UNMASK_ENABLE,
} BmUnmask;

static void msix_flags_set(QPCIDevice *dev, uint16_t clear, uint16_t set)
{
    uint8_t cap = qpci_find_capability(dev, PCI_CAP_ID_MSIX, 0);
    uint16_t val = qpci_config_readw(dev, cap + PCI_MSIX_FLAGS);

    qpci_config_writew(dev, cap + PCI_MSIX_FLAGS, (val & ~clear) | set);
}

static void test_bus_master_unmask(gconstpointer opaque)
{
    BmUnmask how = GPOINTER_TO_INT(opaque);
    IvshEnv e;
    IvshVm *vm;
    uint16_t cmd;

    ivsh_env_init(&e, IVSH_ENV_SHM_SIZE, 2);
    vm = ivsh_vm_start(&e, 2, NULL, NULL);
    switch (how) {
    case BM_UNMASK_ENTRY:
        ivsh_msix_entry(vm->d.dev, 0, IVSH_MSI_ADDR(0), IVSH_MSI_DATA(0),
                        true);
        break;
    case BM_UNMASK_FUNCTION:
        msix_flags_set(vm->d.dev, 0, PCI_MSIX_FLAGS_MASKALL);
        break;
    case BM_UNMASK_ENABLE:
        msix_flags_set(vm->d.dev, PCI_MSIX_FLAGS_ENABLE, 0);
        break;
    }
    cmd = qpci_config_readw(vm->d.dev, PCI_COMMAND);
    qpci_config_writew(vm->d.dev, PCI_COMMAND, cmd & ~PCI_COMMAND_MASTER);
    ivsh_tserver_ring(e.ts, vm->id, 0);
    g_assert_true(ivsh_vm_wait_pending(vm, 0));

    switch (how) {
    case BM_UNMASK_ENTRY:
        ivsh_msix_entry(vm->d.dev, 0, IVSH_MSI_ADDR(0), IVSH_MSI_DATA(0),
                        false);
        break;
    case BM_UNMASK_FUNCTION:
        msix_flags_set(vm->d.dev, PCI_MSIX_FLAGS_MASKALL, 0);
        break;
    case BM_UNMASK_ENABLE:
        msix_flags_set(vm->d.dev, 0, PCI_MSIX_FLAGS_ENABLE);
        break;
    }
    g_assert_false(ivsh_vm_msi_seen(vm, 0));
    g_assert_true(qpci_msix_pending(vm->d.dev, 0));     /* still waiting */

    /* Delivered within the config write, exactly once */
    qpci_config_writew(vm->d.dev, PCI_COMMAND, cmd);
    g_assert_true(ivsh_vm_msi_seen(vm, 0));
    qtest_writel(vm->qts, IVSH_MSI_ADDR(0), 0);
    g_assert_false(qpci_msix_pending(vm->d.dev, 0));
    qpci_config_writew(vm->d.dev, PCI_COMMAND, cmd & ~PCI_COMMAND_MASTER);
    qpci_config_writew(vm->d.dev, PCI_COMMAND, cmd);
    g_assert_false(ivsh_vm_msi_seen(vm, 0));
    g_assert_false(ivsh_vm_msi_seen(vm, 1));

    /* The vector still works */
    ivsh_tserver_ring(e.ts, vm->id, 0);
    g_assert_true(ivsh_vm_wait_msi(vm, 0));
    ivsh_vm_free(vm);
    ivsh_env_free(&e);
}

int main(int argc, char **argv)
{
    size_t i;

    g_test_init(&argc, &argv, NULL);
    set_limited_qemu(256);

    for (i = 0; i < G_N_ELEMENTS(mixed_cases); i++) {
        g_autofree char *path = g_strdup_printf("/ivsh/field/mixed-reset/%s",
                                                mixed_cases[i].name);

        qtest_add_data_func(path, &mixed_cases[i], test_mixed);
    }
    qtest_add_func("/ivsh/field/hostile/blocking-eventfds",
                   test_blocking_eventfds);
    qtest_add_data_func("/ivsh/field/hostile/peer-saturates/ioeventfd-on",
                        "ioeventfd=on", test_peer_saturates);
    qtest_add_data_func("/ivsh/field/hostile/peer-saturates/ioeventfd-off",
                        "ioeventfd=off", test_peer_saturates);
    qtest_add_func("/ivsh/field/hostile/peer-drains", test_peer_drains);
    qtest_add_func("/ivsh/field/own-vectors-reserved", test_own_reserved);
    qtest_add_func("/ivsh/field/budget-whole-peer", test_budget_whole_peer);
    for (i = 0; i < G_N_ELEMENTS(config_cases); i++) {
        g_autofree char *path = g_strdup_printf("/ivsh/field/refused/%s",
                                                config_cases[i].name);

        qtest_add_data_func(path, &config_cases[i], test_config);
    }
    qtest_add_func("/ivsh/field/refused/server-on", test_chardev_server);
    qtest_add_func("/ivsh/field/rlimit/budget", test_rlimit_budget);
    qtest_add_func("/ivsh/field/rlimit/headroom", test_rlimit_headroom);
    qtest_add_func("/ivsh/field/chroot", test_chroot);
    qtest_add_func("/ivsh/field/hostile/dup-eventfd/own", test_dup_own);
    qtest_add_func("/ivsh/field/hostile/dup-eventfd/peers", test_dup_peers);
    qtest_add_func("/ivsh/field/hostile/sparse-peers", test_sparse_peers);
    qtest_add_func("/ivsh/field/hostile/drop-flood", test_drop_flood);
    qtest_add_func("/ivsh/field/hostile/semaphore", test_semaphore);
    qtest_add_func("/ivsh/field/bus-master-off", test_bus_master);
    qtest_add_data_func("/ivsh/field/bus-master-off/unmask-entry",
                        GINT_TO_POINTER(BM_UNMASK_ENTRY),
                        test_bus_master_unmask);
    qtest_add_data_func("/ivsh/field/bus-master-off/function-unmask",
                        GINT_TO_POINTER(BM_UNMASK_FUNCTION),
                        test_bus_master_unmask);
    qtest_add_data_func("/ivsh/field/bus-master-off/msix-enable",
                        GINT_TO_POINTER(BM_UNMASK_ENABLE),
                        test_bus_master_unmask);

    return g_test_run();
}
