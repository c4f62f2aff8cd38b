/*
 * qtests: ivshmem-doorbell (and the legacy ivshmem) through restarts of
 * the ivshmem server, with a chardev that reconnects (reconnect-ms=)
 *
 * The server is the test's own (ivsh-rserver.h): it goes down as a
 * killed server does (the connection closes without a word, the socket
 * goes), comes back on the same path, and sends the set-up each case
 * asks for.  The rules are those of docs/specs/ivsh-spec.rst,
 * "Reconnection": a new set-up is taken only with the same ID and the
 * same shared memory object; each peer announced again gets its new
 * eventfds swapped in and the old ones closed (QEMU's fd count returns
 * to what it was); peers not announced again keep theirs; a refused
 * set-up closes the connection for good (no redial), with one error and
 * the reason in the "connection" property.
 *
 * "No redial" is observed as no connection on the server's socket
 * during QUIET_PERIODS reconnect periods: an absence can only be watched
 * for a while.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/ioctl.h>
#include <linux/kvm.h>
#include "qobject/qdict.h"
#include "hw/misc/ivsh-regs.h"
#include "hw/misc/ivsh-proto.h"
#include "ivsh-qtest.h"
#include "ivsh-rserver.h"

#define VECTORS 2
#define VM_ID 3
#define HOST 7              /* host peers of the test */
#define HOST2 9
#define SYNC_PEER 11        /* announced last, to know all came before */
#define RECONNECT_MS 50
#define QUIET_PERIODS 10
#define QUIET_MS (QUIET_PERIODS * RECONNECT_MS)
#define SHM_SIZE (1024 * 1024)

typedef struct Rt {
    char *dir;
    char *sock;
    char *err;              /* QEMU's stderr */
    IvshRsrv r;
    IvshVm vm;
    QTestState *qts;
    int own[VECTORS];       /* the VM's own eventfds, this run */
    int host[VECTORS];      /* HOST's */
    int host2[VECTORS];     /* HOST2's, with .two_hosts */
    bool two_hosts;
    int sync_efd;           /* SYNC_PEER's */
    unsigned base_fds;
} Rt;

/* ---- the connection property ---- */

static char *conn_state(QTestState *qts)
{
    QDict *rsp = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments': "
                           "{'path': '/machine/peripheral/dut', "
                           "'property': 'connection'}}");
    char *s;

    g_assert(qdict_haskey(rsp, "return"));
    s = g_strdup(qdict_get_str(rsp, "return"));
    qobject_unref(rsp);
    return s;
}

typedef struct StateWait {
    QTestState *qts;
    const char *prefix;
    const char *part;
} StateWait;

static bool state_is(void *opaque)
{
    StateWait *w = opaque;
    g_autofree char *s = conn_state(w->qts);

    return g_str_has_prefix(s, w->prefix) && (!w->part || strstr(s, w->part));
}

/*
 * Wait until the property starts with @prefix and contains @part (unless
 * NULL); return its value
 */
static char *wait_state_part(QTestState *qts, const char *prefix,
                             const char *part)
{
    StateWait w = { qts, prefix, part };
    char *s;

    ivsh_wait_until(state_is, &w, IVSH_WAIT_MS);
    s = conn_state(qts);
    g_test_message("connection: %s", s);
    g_assert_true(state_is(&w));
    return s;
}

static char *wait_state(QTestState *qts, const char *prefix)
{
    return wait_state_part(qts, prefix, NULL);
}

/* Occurrences of @needle in file @path */
static unsigned count_in_file(const char *path, const char *needle)
{
    g_autofree char *s = NULL;
    unsigned n = 0;
    const char *p;

    g_assert_true(g_file_get_contents(path, &s, NULL, NULL));
    for (p = s; (p = strstr(p, needle)); p += strlen(needle)) {
        n++;
    }
    return n;
}

static const char *run_status(QTestState *qts)
{
    static char status[32];
    QDict *rsp = qtest_qmp_assert_success_ref(qts,
                                              "{'execute': 'query-status'}");

    g_strlcpy(status, qdict_get_str(rsp, "status"), sizeof(status));
    qobject_unref(rsp);
    return status;
}

/* ---- a VM and its server ---- */

/* What a server sends a VM (the first time from a thread) */
static void serve(IvshRsrv *r, void *opaque)
{
    Rt *t = opaque;

    ivsh_rsrv_setup(r, VM_ID, r->shm_fd);
    ivsh_rsrv_eventfds(r, HOST, t->host, VECTORS);
    if (t->two_hosts) {
        ivsh_rsrv_eventfds(r, HOST2, t->host2, VECTORS);
    }
    ivsh_rsrv_eventfds(r, VM_ID, t->own, VECTORS);
}

/* The VM rings host peer @peer, whose eventfds are @efd, on all vectors */
static void ring_host(Rt *t, int peer, const int *efd)
{
    unsigned v;

    for (v = 0; v < VECTORS; v++) {
        ivsh_vm_ring(&t->vm, peer, v);
        /* qtest's write returns once QEMU has signalled the eventfd */
        g_assert_cmpuint(ivsh_efd_take(efd[v]), ==, 1);
    }
}

/* The host rings the VM through its own eventfds @efd, on all vectors */
static void ring_vm(Rt *t, const int *efd)
{
    unsigned v;

    for (v = 0; v < VECTORS; v++) {
        ivsh_efd_ring(efd[v]);
        g_assert_true(ivsh_vm_wait_msi(&t->vm, v));
    }
}

static void rt_init(Rt *t, bool two_hosts)
{
    memset(t, 0, sizeof(*t));
    t->dir = ivsh_tmpdir_new();
    t->sock = g_build_filename(t->dir, "server.sock", NULL);
    t->err = g_build_filename(t->dir, "qemu.err", NULL);
    t->two_hosts = two_hosts;
    ivsh_rsrv_init(&t->r, t->sock, SHM_SIZE);
    ivsh_efds_new(t->own, VECTORS);
    ivsh_efds_new(t->host, VECTORS);
    ivsh_efds_new(t->host2, VECTORS);
}

/*
 * Start a VM with device @driver (@opts appended) on a chardev with
 * @chr_opts, served its set-up; check doorbells both ways and take
 * QEMU's fd count.
 */
static void rt_start(Rt *t, const char *driver, const char *chr_opts,
                     const char *opts)
{
    g_autofree char *args = NULL;
    GThread *th;

    th = ivsh_rsrv_serve_async(&t->r, serve, t);
    args = g_strdup_printf("-M pc -chardev socket,id=srv,path=%s,%s "
                           "-device %s,chardev=srv,vectors=%u,addr=04.0,"
                           "id=dut%s%s", t->sock, chr_opts, driver, VECTORS,
                           opts ? "," : "", opts ? opts : "");
    t->qts = ivsh_qtest_init_stderr(t->err, args);
    g_thread_join(th);
    ivsh_vm_open(&t->vm, t->qts, IVSH_DEVFN, VECTORS);
    g_assert_cmpint(t->vm.id, ==, VM_ID);
    ring_vm(t, t->own);
    ring_host(t, HOST, t->host);
    if (t->two_hosts) {
        ring_host(t, HOST2, t->host2);
    }
    t->base_fds = ivsh_count_fds(t->qts);
    g_free(wait_state(t->qts, "connected"));
}

static void rt_free(Rt *t)
{
    if (t->qts) {
        ivsh_dev_close(&t->vm.d);
        qtest_quit(t->qts);
    }
    ivsh_rsrv_free(&t->r);
    ivsh_efds_close(t->own, VECTORS);
    ivsh_efds_close(t->host, VECTORS);
    ivsh_efds_close(t->host2, VECTORS);
    g_free(t->sock);
    g_free(t->err);
    ivsh_tmpdir_free(t->dir);
}

/* The server dies; the VM keeps doorbells both ways on the old eventfds */
static void rt_kill(Rt *t)
{
    g_autofree char *s = NULL;

    ivsh_rsrv_down(&t->r);
    s = wait_state(t->qts, "disconnected since ");
    g_assert_nonnull(strstr(s, ", reconnecting every"));
    ring_host(t, HOST, t->host);
    ring_vm(t, t->own);
}

/* The server comes back on the same path; the VM dials it */
static void rt_restart(Rt *t)
{
    ivsh_rsrv_listen(&t->r);
    g_assert_true(ivsh_rsrv_accept(&t->r, IVSH_WAIT_MS));
}

/*
 * Wait until the VM has taken every message sent so far: announce a peer
 * and ring it until it answers, then let it leave.  (The device reads the
 * server's messages in order, from QEMU's event loop.)
 */
static bool sync_rung(void *opaque)
{
    Rt *t = opaque;

    ivsh_vm_ring(&t->vm, SYNC_PEER, 0);
    return ivsh_efd_take(t->sync_efd) > 0;
}

static void rt_sync(Rt *t)
{
    ivsh_efds_new(&t->sync_efd, 1);
    ivsh_rsrv_send(&t->r, SYNC_PEER, t->sync_efd);
    g_assert_true(ivsh_wait_until(sync_rung, t, IVSH_WAIT_MS));
    ivsh_rsrv_send(&t->r, SYNC_PEER, -1);
    ivsh_efds_close(&t->sync_efd, 1);
}

/* The restarted server sends the set-up; wait until the VM took it */
static void rt_serve(Rt *t)
{
    serve(&t->r, t);
    rt_sync(t);
}

/* A BAR2 pattern, written by the VM, read through the server's memory */
static void check_memory(Rt *t, IvshRsrv *srv, uint32_t pattern)
{
    qpci_io_writel(t->vm.d.dev, t->vm.d.shm, 0x100, pattern);
    g_assert_cmphex(*(uint32_t *)((char *)srv->shm + 0x100), ==, pattern);
}

/* ---- same memory, same ID ---- */

/*
 * The server is down: it comes back with the same memory and ID, and new
 * eventfds for everyone unless @same_efds; the VM is connected again.
 * The eventfds of before go to @own1 and @host1.
 */
static void rt_come_back(Rt *t, bool same_efds, int *own1, int *host1)
{
    memcpy(own1, t->own, sizeof(t->own));
    memcpy(host1, t->host, sizeof(t->host));
    if (!same_efds) {
        ivsh_efds_new(t->own, VECTORS);
        ivsh_efds_new(t->host, VECTORS);
    }
    rt_restart(t);
    rt_serve(t);
    g_free(wait_state(t->qts, "connected"));
}

/*
 * After a swap to new eventfds: the rings went to the new ones only (the
 * host peer's old eventfds hold nothing); close the old ones.
 */
static void old_efds_unrung_close(int *own1, int *host1)
{
    unsigned v;

    for (v = 0; v < VECTORS; v++) {
        g_assert_cmpuint(ivsh_efd_take(host1[v]), ==, 0);
    }
    ivsh_efds_close(own1, VECTORS);
    ivsh_efds_close(host1, VECTORS);
}

/*
 * The server comes back with the same memory and ID and new eventfds for
 * everyone: the VM swaps them in (vector by vector), closes the old ones
 * (fd count as before), and doorbells go through the new ones both ways.
 * @same_efds: the restarted server sends the same eventfd files again, as
 * ivsh-server with systemd's fd store does; they are no duplicates.
 */
static void do_same_memory(bool same_efds)
{
    int own1[VECTORS], host1[VECTORS];
    Rt t;

    rt_init(&t, false);
    rt_start(&t, "ivshmem-doorbell", "reconnect-ms=" stringify(RECONNECT_MS),
             NULL);
    check_memory(&t, &t.r, 0x11223344);
    rt_kill(&t);

    rt_come_back(&t, same_efds, own1, host1);
    ring_vm(&t, t.own);
    ring_host(&t, HOST, t.host);
    if (!same_efds) {
        old_efds_unrung_close(own1, host1);
    }
    ivsh_wait_fds(t.qts, t.base_fds);
    g_assert_cmpuint(qpci_io_readl(t.vm.d.dev, t.vm.d.shm, 0x100), ==,
                     0x11223344);
    check_memory(&t, &t.r, 0x55667788);
    g_assert_cmpuint(ivsh_reg_read(&t.vm.d, IVSH_REG_IV_POSITION), ==,
                     VM_ID);
    /* One warning for the drop, no error */
    g_assert_cmpuint(count_in_file(t.err, "closed the connection"), ==, 1);
    g_assert_cmpuint(count_in_file(t.err, "refused"), ==, 0);
    g_assert_cmpuint(count_in_file(t.err, "reconnected to the ivshmem "
                                   "server"), ==, 1);

    /* And again: a second restart works the same */
    rt_kill(&t);
    rt_restart(&t);
    rt_serve(&t);
    ring_vm(&t, t.own);
    ring_host(&t, HOST, t.host);
    ivsh_wait_fds(t.qts, t.base_fds);
    rt_free(&t);
}

static void test_new_eventfds(void)
{
    do_same_memory(false);
}

static void test_same_eventfds(void)
{
    do_same_memory(true);
}

/*
 * A peer that the restarted server does not announce (it has not come
 * back yet) keeps its old eventfds: the VM still rings it.  A disconnect
 * for it on the new connection is honoured: its eventfds are closed.
 */
static void test_peer_not_announced(void)
{
    int host1[VECTORS];
    Rt t;

    rt_init(&t, true);
    rt_start(&t, "ivshmem-doorbell", "reconnect-ms=" stringify(RECONNECT_MS),
             NULL);
    rt_kill(&t);
    memcpy(host1, t.host, sizeof(host1));
    ivsh_efds_new(t.host, VECTORS);
    rt_restart(&t);
    t.two_hosts = false;
    rt_serve(&t);
    ring_vm(&t, t.own);
    ring_host(&t, HOST, t.host);
    ring_host(&t, HOST2, t.host2);          /* the old ones, kept */
    ivsh_efds_close(host1, VECTORS);
    ivsh_wait_fds(t.qts, t.base_fds);

    ivsh_rsrv_send(&t.r, HOST2, -1);        /* HOST2 left */
    ivsh_wait_fds(t.qts, t.base_fds - VECTORS);
    ivsh_vm_ring(&t.vm, HOST2, 0);
    g_assert_cmpuint(ivsh_efd_take(t.host2[0]), ==, 0);
    g_assert_cmpuint(count_in_file(t.err, "unknown peer"), ==, 0);
    rt_free(&t);
}

/*
 * A set-up cut short (version and ID, then the connection closes): the
 * next connection's set-up is read from its start; the VM was
 * disconnected all along, since the first drop.
 */
static void test_drop_during_setup(void)
{
    g_autofree char *before = NULL, *during = NULL;
    Rt t;

    rt_init(&t, false);
    rt_start(&t, "ivshmem-doorbell", "reconnect-ms=" stringify(RECONNECT_MS),
             NULL);
    rt_kill(&t);
    before = conn_state(t.qts);
    rt_restart(&t);
    ivsh_rsrv_send(&t.r, 0, -1);
    ivsh_rsrv_send(&t.r, VM_ID, -1);
    g_free(wait_state_part(t.qts, "disconnected since",
                           "reading a new set-up"));
    ivsh_rsrv_down(&t.r);
    during = conn_state(t.qts);
    /* The same time: "disconnected since T, ..." */
    g_assert_cmpint(strcspn(before, ","), ==, strcspn(during, ","));
    g_assert_cmpint(strncmp(before, during, strcspn(before, ",")), ==, 0);
    rt_restart(&t);
    rt_serve(&t);
    g_free(wait_state(t.qts, "connected"));
    ring_vm(&t, t.own);
    ring_host(&t, HOST, t.host);
    ivsh_wait_fds(t.qts, t.base_fds);
    rt_free(&t);
}

/*
 * The connection closes in the middle of a message (@with_fd: its fd
 * came with its first bytes): the rest of the old stream is gone, the
 * new set-up is read from its first byte.  Read as a continuation, the
 * five bytes of "peer 7 disconnected" and three of the version would
 * make version 7 (refused); the fd is closed.
 */
static void do_partial(bool with_fd)
{
    static const uint8_t part[5] = { HOST, 0, 0, 0, 0 };
    int efd = -1;
    Rt t;

    rt_init(&t, false);
    rt_start(&t, "ivshmem-doorbell", "reconnect-ms=" stringify(RECONNECT_MS),
             NULL);
    if (with_fd) {
        ivsh_efds_new(&efd, 1);
    }
    ivsh_rsrv_send_raw(&t.r, part, sizeof(part), efd);
    rt_kill(&t);
    ivsh_efds_close(&efd, 1);
    rt_restart(&t);
    rt_serve(&t);
    g_free(wait_state(t.qts, "connected"));
    ring_vm(&t, t.own);
    ring_host(&t, HOST, t.host);
    ivsh_wait_fds(t.qts, t.base_fds);
    g_assert_cmpuint(count_in_file(t.err, "refused"), ==, 0);
    rt_free(&t);
}

static void test_partial(void)
{
    do_partial(false);
}

static void test_partial_fd(void)
{
    do_partial(true);
}

/* ---- refused set-ups ---- */

typedef struct Refusal {
    const char *name;
    const char *reason;         /* in the property and the error */
} Refusal;

static const Refusal refusals[] = {
    { "other-memory", "the server has other shared memory" },
    { "other-id", "the server gave ID 4, this device has ID 3" },
    { "other-size", "the server's shared memory has 2097152 bytes, it had "
      "1048576" },
    { "bad-version", "server speaks protocol version 1" },
};

/*
 * The restarted server has other memory, gives another ID, changed the
 * memory's size or is no ivshmem server: the VM refuses, closes the
 * connection and dials no more; one error; it keeps running with its
 * memory and doorbells on the old eventfds.
 */
static void test_refused(gconstpointer opaque)
{
    const Refusal *c = opaque;
    g_autofree char *s = NULL;
    int other = -1;
    Rt t;

    rt_init(&t, false);
    rt_start(&t, "ivshmem-doorbell", "reconnect-ms=" stringify(RECONNECT_MS),
             NULL);
    check_memory(&t, &t.r, 0xcafe0001);
    rt_kill(&t);
    rt_restart(&t);
    if (!strcmp(c->name, "other-memory")) {
        other = ivsh_rsrv_memfd(SHM_SIZE);
        ivsh_rsrv_setup_refused(&t.r, VM_ID, other);
    } else if (!strcmp(c->name, "other-id")) {
        ivsh_rsrv_setup_refused(&t.r, VM_ID + 1, t.r.shm_fd);
    } else if (!strcmp(c->name, "other-size")) {
        g_assert_cmpint(ftruncate(t.r.shm_fd, 2 * SHM_SIZE), ==, 0);
        ivsh_rsrv_setup_refused(&t.r, VM_ID, t.r.shm_fd);
    } else {
        ivsh_rsrv_send(&t.r, 1, -1);
    }
    s = wait_state(t.qts, "refused: ");
    g_assert_nonnull(strstr(s, c->reason));
    g_assert_true(ivsh_rsrv_wait_eof(&t.r, IVSH_WAIT_MS));
    g_assert_true(ivsh_rsrv_idle(&t.r, QUIET_MS));
    g_assert_cmpuint(count_in_file(t.err, "new set-up is refused"), ==, 1);
    g_assert_cmpuint(count_in_file(t.err, c->reason), ==, 1);
    g_assert_cmpstr(run_status(t.qts), ==, "running");
    g_assert_cmpuint(ivsh_reg_read(&t.vm.d, IVSH_REG_IV_POSITION), ==,
                     VM_ID);
    check_memory(&t, &t.r, 0xcafe0002);
    ring_vm(&t, t.own);
    ring_host(&t, HOST, t.host);
    ivsh_wait_fds(t.qts, t.base_fds - 1);   /* the socket is closed */
    if (other >= 0) {
        close(other);
    }
    rt_free(&t);
}

/* ---- start-up and hot-plug ---- */

/*
 * No server at start-up: realize waits for it within x-setup-timeout,
 * dialling every reconnect-ms, then fails with one clear error (QEMU
 * 10.0's qemu_chr_fe_wait_connected() would dial forever).
 */
static void test_startup_server_down(void)
{
    g_autofree char *dir = ivsh_tmpdir_new();
    g_autofree char *path = g_build_filename(dir, "none.sock", NULL);
    g_autofree char *args = NULL, *err = NULL;
    gint64 t0 = g_get_monotonic_time(), ms;
    int status;

    args = g_strdup_printf("-chardev socket,id=srv,path=%s,reconnect-ms=100 "
                           "-device ivshmem-doorbell,chardev=srv,"
                           "x-setup-timeout=1000", path);
    status = ivsh_run_qemu(NULL, "pc", args, &err);
    ms = (g_get_monotonic_time() - t0) / 1000;
    g_test_message("exit %d after %" PRId64 " ms: %s", status, ms, err);
    g_assert_cmpint(status, ==, 1);
    g_assert_nonnull(strstr(err, "cannot connect to the ivshmem server "
                            "within x-setup-timeout (1000 ms)"));
    g_assert_cmpint(ms, >=, 1000);
    g_assert_cmpint(ms, <, 1000 + 4000);
    ivsh_tmpdir_free(g_steal_pointer(&dir));
}

typedef struct Late {
    IvshRsrv *r;
    Rt *t;
} Late;

/* The server comes up a while after QEMU started: the case's premise */
static gpointer late_thread(gpointer opaque)
{
    Late *l = opaque;

    g_usleep(400 * 1000);
    ivsh_rsrv_listen(l->r);
    g_assert_true(ivsh_rsrv_accept(l->r, IVSH_WAIT_MS));
    serve(l->r, l->t);
    return NULL;
}

/* The server comes up within x-setup-timeout: realize succeeds */
static void test_startup_server_late(void)
{
    g_autofree char *args = NULL;
    Late l;
    GThread *th;
    Rt t;

    rt_init(&t, false);
    ivsh_rsrv_down(&t.r);
    l = (Late) { &t.r, &t };
    th = g_thread_new("late", late_thread, &l);
    args = g_strdup_printf("-M pc -chardev socket,id=srv,path=%s,"
                           "reconnect-ms=100 -device ivshmem-doorbell,"
                           "chardev=srv,vectors=%u,addr=04.0,id=dut",
                           t.sock, VECTORS);
    t.qts = ivsh_qtest_init_stderr(t.err, args);
    g_thread_join(th);
    ivsh_vm_open(&t.vm, t.qts, IVSH_DEVFN, VECTORS);
    g_assert_cmpint(t.vm.id, ==, VM_ID);
    ring_vm(&t, t.own);
    ring_host(&t, HOST, t.host);
    g_free(wait_state(t.qts, "connected"));
    rt_free(&t);
}

static void chardev_add_reconnect(QTestState *qts, const char *path)
{
    qtest_qmp_assert_success(qts, "{'execute': 'chardev-add', "
        "'arguments': {'id': 'srv', 'backend': {'type': 'socket', "
        "'data': {'server': false, 'reconnect-ms': %d, 'addr': "
        "{'type': 'unix', 'data': {'path': %s}}}}}}", RECONNECT_MS, path);
}

static char *device_add_error(QTestState *qts)
{
    QDict *rsp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments': "
                           "{'driver': 'ivshmem-doorbell', 'chardev': 'srv', "
                           "'id': 'dut', 'x-setup-timeout': 300}}");
    char *desc = NULL;

    if (qdict_haskey(rsp, "error")) {
        desc = g_strdup(qdict_get_str(qdict_get_qdict(rsp, "error"),
                                      "desc"));
        g_test_message("device_add: %s", desc);
    }
    qobject_unref(rsp);
    return desc;
}

/*
 * device_add with the server down fails within x-setup-timeout; with a
 * server that sends a bad set-up, it fails and the chardev dials no
 * more: no phantom peer on the server.
 */
static void test_hotplug_failures(void)
{
    g_autofree char *err1 = NULL, *err2 = NULL;
    QTestState *qts;
    Rt t;

    rt_init(&t, false);
    ivsh_rsrv_down(&t.r);
    qts = qtest_init("-M pc");
    chardev_add_reconnect(qts, t.sock);
    err1 = device_add_error(qts);
    g_assert_nonnull(err1);
    g_assert_nonnull(strstr(err1, "cannot connect to the ivshmem server "
                            "within x-setup-timeout (300 ms)"));
    g_assert_cmpstr(run_status(qts), ==, "running");
    qtest_qmp_assert_success(qts, "{'execute': 'chardev-remove', "
                             "'arguments': {'id': 'srv'}}");

    ivsh_rsrv_listen(&t.r);
    chardev_add_reconnect(qts, t.sock);
    g_assert_true(ivsh_rsrv_accept(&t.r, IVSH_WAIT_MS));
    ivsh_rsrv_send(&t.r, 1, -1);
    err2 = device_add_error(qts);
    g_assert_nonnull(err2);
    g_assert_nonnull(strstr(err2, "protocol version 1"));
    g_assert_true(ivsh_rsrv_wait_eof(&t.r, IVSH_WAIT_MS));
    g_assert_true(ivsh_rsrv_idle(&t.r, QUIET_MS));
    qtest_quit(qts);
    rt_free(&t);
}

/*
 * device_add on a reconnect-ms chardev that is connected already (QEMU
 * 10.0's device and earlier versions of this one refused it or misread
 * the next connection), then unplug: the connection closes for good.
 */
static void test_hotplug_unplug(void)
{
    Rt t;

    rt_init(&t, false);
    t.qts = qtest_init("-M pc");
    chardev_add_reconnect(t.qts, t.sock);
    g_assert_true(ivsh_rsrv_accept(&t.r, IVSH_WAIT_MS));
    serve(&t.r, &t);
    qtest_qmp_device_add(t.qts, "ivshmem-doorbell", "dut",
                         "{'chardev': 'srv', 'vectors': %d, "
                         "'addr': '04.0'}", VECTORS);
    ivsh_vm_open(&t.vm, t.qts, IVSH_DEVFN, VECTORS);
    g_assert_cmpint(t.vm.id, ==, VM_ID);
    g_free(wait_state(t.qts, "connected"));
    ring_vm(&t, t.own);
    ring_host(&t, HOST, t.host);

    ivsh_dev_close(&t.vm.d);
    qpci_unplug_acpi_device_test(t.qts, "dut", 4);
    g_assert_true(ivsh_rsrv_wait_eof(&t.r, IVSH_WAIT_MS));
    g_assert_true(ivsh_rsrv_idle(&t.r, QUIET_MS));
    qtest_quit(t.qts);
    t.qts = NULL;
    rt_free(&t);
}

/* ---- other devices and chardevs ---- */

/* The legacy ivshmem with a server follows restarts the same way */
static void test_legacy(void)
{
    Rt t;

    rt_init(&t, false);
    rt_start(&t, "ivshmem", "reconnect-ms=" stringify(RECONNECT_MS),
             "size=1M");
    rt_kill(&t);
    ivsh_efds_close(t.own, VECTORS);
    ivsh_efds_new(t.own, VECTORS);
    rt_restart(&t);
    rt_serve(&t);
    g_free(wait_state(t.qts, "connected"));
    ring_vm(&t, t.own);
    ring_host(&t, HOST, t.host);
    ivsh_wait_fds(t.qts, t.base_fds);
    rt_free(&t);
}

/* reconnect= (seconds, deprecated in QEMU 10.0) works as reconnect-ms= */
static void test_reconnect_seconds(void)
{
    Rt t;

    rt_init(&t, false);
    rt_start(&t, "ivshmem-doorbell", "reconnect=1", NULL);
    rt_kill(&t);
    rt_restart(&t);
    rt_serve(&t);
    g_free(wait_state(t.qts, "connected"));
    ring_vm(&t, t.own);
    ivsh_wait_fds(t.qts, t.base_fds);
    rt_free(&t);
}

/*
 * Without reconnect-ms the device says it does not reconnect; a server
 * that comes back is never dialled.  Without a server (shm=) the
 * property says "none".
 */
static void test_no_reconnect(void)
{
    g_autofree char *s = NULL;
    g_autofree char *shm = g_strdup_printf("/dev/shm/ivsh-rt-%d", getpid());
    QTestState *qts;
    Rt t;

    rt_init(&t, false);
    rt_start(&t, "ivshmem-doorbell", "mux=off", NULL);
    ivsh_rsrv_down(&t.r);
    s = wait_state(t.qts, "disconnected since ");
    g_assert_nonnull(strstr(s, "not reconnecting"));
    ivsh_rsrv_listen(&t.r);
    g_assert_true(ivsh_rsrv_idle(&t.r, QUIET_MS));
    ring_vm(&t, t.own);
    ring_host(&t, HOST, t.host);
    rt_free(&t);

    qts = qtest_initf("-M pc -device ivshmem,shm=ivsh-rt-%d,size=1M,"
                      "id=dut", getpid());
    g_free(wait_state(qts, "none"));
    qtest_quit(qts);
    unlink(shm);
}

/* ---- KVM: ioeventfds and irqfds ---- */

/* NULL if /dev/kvm can create a VM, else why not */
static const char *kvm_unusable(void)
{
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm;

    if (kvm < 0) {
        return "no usable /dev/kvm";
    }
    vm = ioctl(kvm, KVM_CREATE_VM, 0);
    close(kvm);
    if (vm < 0) {
        return "/dev/kvm cannot create a VM";
    }
    close(vm);
    return NULL;
}

/* The host rings the VM's masked vectors; the PBA shows them */
static void ring_vm_pending(Rt *t, const int *efd)
{
    unsigned v;

    for (v = 0; v < VECTORS; v++) {
        g_assert_false(qpci_msix_pending(t->vm.d.dev, v));
        ivsh_efd_ring(efd[v]);
        g_assert_true(ivsh_vm_wait_pending(&t->vm, v));
    }
}

/*
 * Under KVM (vCPUs stopped: -S), with ioeventfds for the peers' doorbells
 * and irqfd routes for our vectors (MSI-X enabled, vectors masked so that
 * doorbells show in the PBA): after the restart, doorbells reach the new
 * eventfds only, in both directions, and the old ones are closed.  With
 * the same eventfd files again (@same_efds, the fd store), an ioeventfd
 * added before the old one is removed makes KVM refuse it and QEMU abort.
 * (QEMU's memory core matches qtest's doorbell writes against the
 * ioeventfds and signals the one registered.)
 */
static void test_kvm(gconstpointer opaque)
{
    bool same_efds = GPOINTER_TO_INT(opaque);
    int own1[VECTORS], host1[VECTORS];
    g_autofree char *args = NULL;
    const char *why = kvm_unusable();
    GThread *th;
    QDict *rsp;
    unsigned v;
    bool kvm;
    Rt t;

    if (why) {
        g_test_skip(why);
        return;
    }
    rt_init(&t, false);
    th = ivsh_rsrv_serve_async(&t.r, serve, &t);
    args = g_strdup_printf("-accel kvm -S -M pc -chardev socket,id=srv,"
                           "path=%s,reconnect-ms=%d -device ivshmem-doorbell,"
                           "chardev=srv,vectors=%u,addr=04.0,id=dut", t.sock,
                           RECONNECT_MS, VECTORS);
    t.qts = ivsh_qtest_init_stderr(t.err, args);
    g_thread_join(th);
    rsp = qtest_qmp_assert_success_ref(t.qts, "{'execute': 'query-kvm'}");
    kvm = qdict_get_bool(rsp, "enabled");
    qobject_unref(rsp);
    if (!kvm) {
        /* QEMU fell back to the qtest accelerator */
        g_test_skip("QEMU cannot use KVM here");
        qtest_quit(t.qts);
        t.qts = NULL;
        rt_free(&t);
        return;
    }
    ivsh_vm_open(&t.vm, t.qts, IVSH_DEVFN, VECTORS);
    for (v = 0; v < VECTORS; v++) {
        ivsh_msix_entry(t.vm.d.dev, v, IVSH_MSI_ADDR(v), IVSH_MSI_DATA(v),
                        true);
    }
    rt_sync(&t);
    ring_vm_pending(&t, t.own);
    ring_host(&t, HOST, t.host);
    t.base_fds = ivsh_count_fds(t.qts);

    ivsh_rsrv_down(&t.r);
    g_free(wait_state(t.qts, "disconnected since "));
    rt_come_back(&t, same_efds, own1, host1);
    /* Clear the PBA: unmask (delivered to the stopped vCPU), mask again */
    for (v = 0; v < VECTORS; v++) {
        ivsh_msix_entry(t.vm.d.dev, v, IVSH_MSI_ADDR(v), IVSH_MSI_DATA(v),
                        false);
        ivsh_msix_entry(t.vm.d.dev, v, IVSH_MSI_ADDR(v), IVSH_MSI_DATA(v),
                        true);
    }
    ring_vm_pending(&t, t.own);
    ring_host(&t, HOST, t.host);
    if (!same_efds) {
        old_efds_unrung_close(own1, host1);
    }
    ivsh_wait_fds(t.qts, t.base_fds);
    g_assert_cmpuint(count_in_file(t.err, "refused"), ==, 0);
    rt_free(&t);
}

int main(int argc, char **argv)
{
    unsigned i;

    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/ivsh/reconnect/same-memory/new-eventfds",
                   test_new_eventfds);
    qtest_add_func("/ivsh/reconnect/same-memory/same-eventfds",
                   test_same_eventfds);
    qtest_add_func("/ivsh/reconnect/peer-not-announced",
                   test_peer_not_announced);
    qtest_add_func("/ivsh/reconnect/drop-during-setup",
                   test_drop_during_setup);
    qtest_add_func("/ivsh/reconnect/partial-message", test_partial);
    qtest_add_func("/ivsh/reconnect/partial-message-fd", test_partial_fd);
    for (i = 0; i < G_N_ELEMENTS(refusals); i++) {
        g_autofree char *path = g_strdup_printf("/ivsh/reconnect/refused/%s",
                                                refusals[i].name);

        qtest_add_data_func(path, &refusals[i], test_refused);
    }
    qtest_add_func("/ivsh/reconnect/startup/server-down",
                   test_startup_server_down);
    qtest_add_func("/ivsh/reconnect/startup/server-late",
                   test_startup_server_late);
    qtest_add_func("/ivsh/reconnect/hotplug/failures", test_hotplug_failures);
    qtest_add_func("/ivsh/reconnect/hotplug/unplug", test_hotplug_unplug);
    qtest_add_func("/ivsh/reconnect/legacy", test_legacy);
    qtest_add_func("/ivsh/reconnect/reconnect-seconds",
                   test_reconnect_seconds);
    qtest_add_func("/ivsh/reconnect/no-reconnect", test_no_reconnect);
    qtest_add_data_func("/ivsh/reconnect/kvm/new-eventfds",
                        GINT_TO_POINTER(false), test_kvm);
    qtest_add_data_func("/ivsh/reconnect/kvm/same-eventfds",
                        GINT_TO_POINTER(true), test_kvm);
    return g_test_run();
}
