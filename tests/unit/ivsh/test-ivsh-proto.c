/*
 * Unit tests for the ivshmem protocol v0 module (client side):
 * IvshReader, message encoding, ivsh_msg_send(), ivsh_shm_check() and
 * the IvshClient decoder, one behaviour per test case.
 *
 * Every case checks that no fd leaked: the decoder closes the fd of any
 * message it does not accept, and the tests close the fds of the ones
 * it does.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include "hw/misc/ivsh-regs.h"
#include "hw/misc/ivsh-proto.h"
#include "ivsh-io.h"
#include "unit-util.h"

#ifndef F_SEAL_WRITE
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_WRITE 0x0008
#endif

/* ---- helpers ---- */

static int new_eventfd(void)
{
    int fd = eventfd(0, EFD_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    return fd;
}

static int new_memfd(off_t size, unsigned flags)
{
    int fd = memfd_create("test-ivsh", MFD_CLOEXEC | flags);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    return fd;
}

/* Fixture: a decoder and an fd count to compare with at the end */
typedef struct Fixture {
    IvshClient c;
    unsigned fds;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    f->fds = count_fds();
    ivsh_client_init(&f->c, 4, 64);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    ivsh_client_destroy(&f->c);
    g_assert_cmpuint(count_fds(), ==, f->fds);
}

/* Hand one message to the decoder; returns the verdict */
static IvshVerdict feed(Fixture *f, int64_t msg, int fd, IvshEvent *ev)
{
    g_autoptr(GError) err = NULL;
    IvshEvent local;
    IvshVerdict v;

    v = ivsh_client_handle(&f->c, msg, fd, ev ? ev : &local, &err);
    if (v == IVSH_OK) {
        g_assert_null(err);
    } else {
        g_assert_nonnull(err);
        g_assert_true(err->domain == IVSH_PROTO_ERROR);
        g_test_message("%s: %s", v == IVSH_DROP ? "drop" : "fatal",
                       err->message);
    }
    return v;
}

/* Version, ID and a 64 KiB memfd; returns the shm fd (the caller's) */
static int setup_client(Fixture *f, uint16_t id)
{
    IvshEvent ev;

    g_assert_cmpint(feed(f, 0, -1, &ev), ==, IVSH_OK);
    g_assert_cmpint(ev.kind, ==, IVSH_EV_NONE);
    g_assert_cmpint(feed(f, id, -1, &ev), ==, IVSH_OK);
    g_assert_cmpint(ev.kind, ==, IVSH_EV_OWN_ID);
    g_assert_cmpuint(ev.peer, ==, id);
    g_assert_cmpint(feed(f, -1, new_memfd(65536, MFD_ALLOW_SEALING), &ev),
                    ==, IVSH_OK);
    g_assert_cmpint(ev.kind, ==, IVSH_EV_SHM);
    g_assert_true(ivsh_client_ready(&f->c));
    return ev.fd;
}

/* Give peer @id @n eventfds; they are closed again (the decoder counts) */
static void give_eventfds(Fixture *f, uint16_t id, unsigned n)
{
    IvshEvent ev;
    unsigned i;

    for (i = 0; i < n; i++) {
        g_assert_cmpint(feed(f, id, new_eventfd(), &ev), ==, IVSH_OK);
        g_assert_cmpint(ev.kind, ==, IVSH_EV_EVENTFD);
        g_assert_cmpuint(ev.peer, ==, id);
        g_assert_cmpuint(ev.vector, ==, i);
        g_assert_true(ivsh_fd_is_eventfd(ev.fd));
        close(ev.fd);
    }
}

/* ---- IvshReader and encoding ---- */

static void test_msg_roundtrip(void)
{
    static const int64_t values[] = {
        0, 1, -1, -2, 255, 256, 65535, 65536, G_MAXINT32, G_MININT32,
        G_MAXINT64, G_MININT64, 0x0102030405060708LL,
    };
    uint8_t buf[IVSH_MSG_SIZE];
    unsigned i;

    for (i = 0; i < G_N_ELEMENTS(values); i++) {
        ivsh_msg_encode(values[i], buf);
        g_assert_cmpint(ivsh_msg_decode(buf), ==, values[i]);
    }
    /* Little-endian on every host */
    ivsh_msg_encode(0x0102030405060708LL, buf);
    for (i = 0; i < IVSH_MSG_SIZE; i++) {
        g_assert_cmpuint(buf[i], ==, 8 - i);
    }
    ivsh_msg_encode(-1, buf);
    for (i = 0; i < IVSH_MSG_SIZE; i++) {
        g_assert_cmpuint(buf[i], ==, 0xff);
    }
    ivsh_msg_encode(-2, buf);
    g_assert_cmpuint(buf[0], ==, 0xfe);
    g_assert_cmpuint(buf[7], ==, 0xff);
}

static void test_reader_byte_at_a_time(void)
{
    static const int64_t values[] = { 0, 7, -1, 65535, G_MININT64 };
    IvshReader r = { 0 };
    uint8_t buf[IVSH_MSG_SIZE];
    bool complete;
    int64_t msg = 42;
    unsigned i, j;

    for (i = 0; i < G_N_ELEMENTS(values); i++) {
        ivsh_msg_encode(values[i], buf);
        for (j = 0; j < IVSH_MSG_SIZE; j++) {
            g_assert_cmpuint(ivsh_reader_want(&r), ==, IVSH_MSG_SIZE - j);
            g_assert_cmpuint(ivsh_reader_feed(&r, buf + j, 1, &complete,
                                              &msg), ==, 1);
            g_assert_true(complete == (j == IVSH_MSG_SIZE - 1));
        }
        g_assert_cmpint(msg, ==, values[i]);
        g_assert_cmpuint(ivsh_reader_want(&r), ==, IVSH_MSG_SIZE);
    }
}

static void test_reader_pieces(void)
{
    uint8_t buf[3 * IVSH_MSG_SIZE];
    IvshReader r = { 0 };
    bool complete;
    int64_t msg;
    size_t off = 0, n;
    unsigned got = 0;
    static const size_t cuts[] = { 3, 7, 1, 13 };
    unsigned i = 0;

    ivsh_msg_encode(-1, buf);
    ivsh_msg_encode(12, buf + 8);
    ivsh_msg_encode(-3, buf + 16);
    while (off < sizeof(buf)) {
        /* Not inside MIN(), which evaluates its arguments twice */
        size_t cut = cuts[i++ % G_N_ELEMENTS(cuts)];
        size_t len = MIN(cut, sizeof(buf) - off);

        /* A feed never goes past the end of the current message */
        while (len) {
            n = ivsh_reader_feed(&r, buf + off, len, &complete, &msg);
            g_assert_cmpuint(n, >=, 1);
            g_assert_cmpuint(n, <=, len);
            off += n;
            len -= n;
            if (complete) {
                g_assert_cmpuint(off % IVSH_MSG_SIZE, ==, 0);
                g_assert_cmpint(msg, ==, got == 0 ? -1 : got == 1 ? 12 : -3);
                got++;
            }
        }
    }
    g_assert_cmpuint(got, ==, 3);
}

/* ---- ivsh_msg_send ---- */

static void recv_one(int sock, int64_t *msg, int *fd)
{
    IvshRecv rx;

    ivsh_recv_init(&rx);
    g_assert_cmpint(ivsh_msg_recv(sock, &rx, msg, fd, 0), ==, 1);
    g_assert_cmpuint(rx.extra_fds, ==, 0);
}

static void test_send_socketpair(void)
{
    unsigned fds = count_fds();
    int sv[2], efd, got;
    uint64_t v = 5;
    int64_t msg;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                    ==, 0);
    efd = new_eventfd();

    g_assert_cmpint(ivsh_msg_send(sv[0], 0, -1), ==, 0);
    g_assert_cmpint(ivsh_msg_send(sv[0], -1, efd), ==, 0);
    g_assert_cmpint(ivsh_msg_send(sv[0], G_MININT64, -1), ==, 0);

    recv_one(sv[1], &msg, &got);
    g_assert_cmpint(msg, ==, 0);
    g_assert_cmpint(got, ==, -1);
    recv_one(sv[1], &msg, &got);
    g_assert_cmpint(msg, ==, -1);
    g_assert_cmpint(got, >=, 0);
    g_assert_cmpint(got, !=, efd);
    /* The same eventfd: what goes in one comes out of the other */
    g_assert_cmpint(write(efd, &v, sizeof(v)), ==, sizeof(v));
    v = 0;
    g_assert_cmpint(read(got, &v, sizeof(v)), ==, sizeof(v));
    g_assert_cmpuint(v, ==, 5);
    close(got);
    recv_one(sv[1], &msg, &got);
    g_assert_cmpint(msg, ==, G_MININT64);
    g_assert_cmpint(got, ==, -1);

    /* The other end gone: an error, not a signal */
    close(sv[1]);
    g_assert_cmpint(ivsh_msg_send(sv[0], 1, -1), ==, -EPIPE);
    g_assert_cmpint(ivsh_msg_send(-1, 1, -1), ==, -EBADF);
    close(sv[0]);
    close(efd);
    g_assert_cmpuint(count_fds(), ==, fds);
}

/* ---- ivsh_shm_check ---- */

static void test_shm_check(void)
{
    g_autoptr(GError) err = NULL;
    unsigned fds = count_fds();
    bool sealed;
    int fd;

    /* A memfd gets sealed against shrinking */
    fd = new_memfd(8192, MFD_ALLOW_SEALING);
    g_assert_cmpuint(ivsh_shm_check(fd, &sealed, &err), ==, 8192);
    g_assert_no_error(err);
    g_assert_true(sealed);
    g_assert_true(fcntl(fd, F_GET_SEALS) & F_SEAL_SHRINK);
    g_assert_cmpint(ftruncate(fd, 4096), <, 0);
    close(fd);

    /* Without sealing support it is accepted unsealed */
    fd = new_memfd(1 << 20, 0);
    g_assert_cmpuint(ivsh_shm_check(fd, &sealed, &err), ==, 1 << 20);
    g_assert_false(sealed);
    close(fd);

    /* Not a file */
    fd = new_eventfd();
    g_assert_cmpuint(ivsh_shm_check(fd, &sealed, &err), ==, 0);
    g_assert_nonnull(err);
    g_clear_error(&err);
    close(fd);
    g_assert_cmpuint(count_fds(), ==, fds);
}

/* ---- the decoder: good sequences ---- */

static void test_client_setup(Fixture *f, gconstpointer data)
{
    IvshEvent ev;
    int shm;

    g_assert_cmpint(f->c.state, ==, IVSH_WANT_VERSION);
    shm = setup_client(f, 3);
    g_assert_cmpuint(f->c.own_id, ==, 3);
    close(shm);

    /* Other peers, then our own eventfds */
    give_eventfds(f, 0, 4);
    give_eventfds(f, 7, 2);
    give_eventfds(f, 3, 4);
    g_assert_cmpuint(ivsh_client_nr_peers(&f->c), ==, 2);
    g_assert_cmpuint(f->c.nr_fds, ==, 10);

    /* A disconnect names the eventfds to release */
    g_assert_cmpint(feed(f, 7, -1, &ev), ==, IVSH_OK);
    g_assert_cmpint(ev.kind, ==, IVSH_EV_PEER_GONE);
    g_assert_cmpuint(ev.peer, ==, 7);
    g_assert_cmpuint(ev.nr_vectors, ==, 2);
    g_assert_cmpuint(ivsh_client_nr_peers(&f->c), ==, 1);
    g_assert_cmpuint(f->c.nr_fds, ==, 8);

    /* The ID comes back with new eventfds, counted from vector 0 */
    give_eventfds(f, 7, 4);
    g_assert_cmpuint(ivsh_client_nr_peers(&f->c), ==, 2);
}

static void test_client_shm_event(Fixture *f, gconstpointer data)
{
    IvshEvent ev;

    g_assert_cmpint(feed(f, 0, -1, NULL), ==, IVSH_OK);
    g_assert_cmpint(feed(f, 65535, -1, &ev), ==, IVSH_OK);
    g_assert_cmpuint(ev.peer, ==, 65535);
    g_assert_cmpint(feed(f, -1, new_memfd(4096, MFD_ALLOW_SEALING), &ev), ==,
                    IVSH_OK);
    g_assert_cmpint(ev.kind, ==, IVSH_EV_SHM);
    g_assert_cmpuint(ev.size, ==, 4096);
    g_assert_true(ev.sealed);
    g_assert_cmpint(ev.fd, >=, 0);
    close(ev.fd);
}

/* ---- the decoder: set-up errors are fatal, and stay so ---- */

static void assert_broken(Fixture *f)
{
    int efd = new_eventfd();

    g_assert_cmpint(f->c.state, ==, IVSH_BROKEN);
    g_assert_cmpint(feed(f, 0, -1, NULL), ==, IVSH_FATAL);
    g_assert_cmpint(feed(f, 1, efd, NULL), ==, IVSH_FATAL);
    g_assert_false(fd_is_open(efd));
    g_assert_false(ivsh_client_ready(&f->c));
}

static void test_client_bad_version(Fixture *f, gconstpointer data)
{
    g_assert_cmpint(feed(f, 1, -1, NULL), ==, IVSH_FATAL);
    assert_broken(f);
}

static void test_client_version_with_fd(Fixture *f, gconstpointer data)
{
    int efd = new_eventfd();

    g_assert_cmpint(feed(f, 0, efd, NULL), ==, IVSH_FATAL);
    g_assert_false(fd_is_open(efd));
    assert_broken(f);
}

static void test_client_bad_id(Fixture *f, gconstpointer data)
{
    static const int64_t bad[] = { -1, -2, 65536, G_MAXINT64, G_MININT64 };
    unsigned i;

    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        ivsh_client_destroy(&f->c);
        ivsh_client_init(&f->c, 4, 64);
        g_assert_cmpint(feed(f, 0, -1, NULL), ==, IVSH_OK);
        g_assert_cmpint(feed(f, bad[i], -1, NULL), ==, IVSH_FATAL);
        assert_broken(f);
    }
}

static void test_client_id_with_fd(Fixture *f, gconstpointer data)
{
    int efd = new_eventfd();

    g_assert_cmpint(feed(f, 0, -1, NULL), ==, IVSH_OK);
    g_assert_cmpint(feed(f, 1, efd, NULL), ==, IVSH_FATAL);
    g_assert_false(fd_is_open(efd));
    assert_broken(f);
}

static void test_client_eventfd_before_shm(Fixture *f, gconstpointer data)
{
    int efd = new_eventfd();

    g_assert_cmpint(feed(f, 0, -1, NULL), ==, IVSH_OK);
    g_assert_cmpint(feed(f, 2, -1, NULL), ==, IVSH_OK);
    /* Our own eventfd before the shared memory (ivshmem-pci.c crashes) */
    g_assert_cmpint(feed(f, 2, efd, NULL), ==, IVSH_FATAL);
    g_assert_false(fd_is_open(efd));
    assert_broken(f);
}

static void test_client_shm_without_fd(Fixture *f, gconstpointer data)
{
    g_assert_cmpint(feed(f, 0, -1, NULL), ==, IVSH_OK);
    g_assert_cmpint(feed(f, 2, -1, NULL), ==, IVSH_OK);
    g_assert_cmpint(feed(f, -1, -1, NULL), ==, IVSH_FATAL);
    assert_broken(f);
}

/* A bad shared memory fd in the set-up */
static void bad_shm(Fixture *f, int fd)
{
    g_assert_cmpint(feed(f, 0, -1, NULL), ==, IVSH_OK);
    g_assert_cmpint(feed(f, 2, -1, NULL), ==, IVSH_OK);
    g_assert_cmpint(feed(f, -1, fd, NULL), ==, IVSH_FATAL);
    g_assert_false(fd_is_open(fd));
    assert_broken(f);
}

static void test_client_shm_not_pow2(Fixture *f, gconstpointer data)
{
    bad_shm(f, new_memfd(3 * 4096, MFD_ALLOW_SEALING));
}

static void test_client_shm_too_small(Fixture *f, gconstpointer data)
{
    bad_shm(f, new_memfd(2048, MFD_ALLOW_SEALING));
}

static void test_client_shm_empty(Fixture *f, gconstpointer data)
{
    bad_shm(f, new_memfd(0, MFD_ALLOW_SEALING));
}

static void test_client_shm_read_only(Fixture *f, gconstpointer data)
{
    g_autofree char *path = NULL;
    int fd = new_memfd(4096, MFD_ALLOW_SEALING), ro;

    path = g_strdup_printf("/proc/self/fd/%d", fd);
    ro = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(ro, >=, 0);
    close(fd);
    bad_shm(f, ro);
}

static void test_client_shm_write_sealed(Fixture *f, gconstpointer data)
{
    int fd = new_memfd(4096, MFD_ALLOW_SEALING);

    g_assert_cmpint(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), ==, 0);
    bad_shm(f, fd);
}

static void test_client_shm_not_a_file(Fixture *f, gconstpointer data)
{
    int sv[2];

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                    ==, 0);
    close(sv[1]);
    bad_shm(f, sv[0]);
}

/* ---- the decoder: errors once running ---- */

static void test_client_second_shm(Fixture *f, gconstpointer data)
{
    int shm = setup_client(f, 0), fd = new_memfd(4096, MFD_ALLOW_SEALING);

    g_assert_cmpint(feed(f, -1, fd, NULL), ==, IVSH_DROP);
    g_assert_false(fd_is_open(fd));
    g_assert_cmpint(feed(f, -1, -1, NULL), ==, IVSH_DROP);
    /* Dropped, not fatal: the stream goes on */
    give_eventfds(f, 1, 2);
    close(shm);
}

static void test_client_not_eventfd(Fixture *f, gconstpointer data)
{
    int shm = setup_client(f, 0), p[2];

    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpint(feed(f, 1, p[0], NULL), ==, IVSH_DROP);
    g_assert_false(fd_is_open(p[0]));
    close(p[1]);
    p[0] = new_memfd(4096, 0);
    g_assert_cmpint(feed(f, 1, p[0], NULL), ==, IVSH_DROP);
    g_assert_false(fd_is_open(p[0]));
    /* Nothing was counted for peer 1 */
    give_eventfds(f, 1, 4);
    close(shm);
}

static void test_client_too_many_eventfds(Fixture *f, gconstpointer data)
{
    int shm = setup_client(f, 0), efd;

    give_eventfds(f, 1, 4);
    efd = new_eventfd();
    g_assert_cmpint(feed(f, 1, efd, NULL), ==, IVSH_DROP);
    g_assert_false(fd_is_open(efd));
    g_assert_cmpuint(f->c.nr_fds, ==, 4);
    close(shm);
}

static void test_client_fd_budget(Fixture *f, gconstpointer data)
{
    IvshEvent ev;
    int shm, efd;

    ivsh_client_destroy(&f->c);
    ivsh_client_init(&f->c, 2, 3);
    shm = setup_client(f, 0);

    give_eventfds(f, 1, 2);             /* 2 of 3 */
    give_eventfds(f, 2, 1);             /* 3 of 3 */
    /* Peer 2's second does not fit: the whole of peer 2 is refused */
    efd = new_eventfd();
    g_assert_cmpint(feed(f, 2, efd, &ev), ==, IVSH_DROP);
    g_assert_false(fd_is_open(efd));
    g_assert_cmpint(ev.kind, ==, IVSH_EV_PEER_GONE);
    g_assert_cmpuint(ev.peer, ==, 2);
    g_assert_cmpuint(ev.nr_vectors, ==, 1);
    g_assert_cmpint(ev.fd, ==, -1);
    g_assert_cmpuint(f->c.nr_fds, ==, 2);
    g_assert_cmpuint(ivsh_client_nr_peers(&f->c), ==, 1);

    /* Peer 3 fits once (3 of 3), then does not: refused too */
    give_eventfds(f, 3, 1);
    efd = new_eventfd();
    g_assert_cmpint(feed(f, 3, efd, &ev), ==, IVSH_DROP);
    g_assert_cmpint(ev.kind, ==, IVSH_EV_PEER_GONE);
    g_assert_cmpuint(ev.nr_vectors, ==, 1);
    g_assert_cmpuint(f->c.nr_fds, ==, 2);

    /* Peer 5 does not fit at all: refused, nothing to release */
    give_eventfds(f, 4, 1);             /* 3 of 3 */
    efd = new_eventfd();
    g_assert_cmpint(feed(f, 5, efd, &ev), ==, IVSH_DROP);
    g_assert_false(fd_is_open(efd));
    g_assert_cmpint(ev.kind, ==, IVSH_EV_NONE);
    efd = new_eventfd();
    g_assert_cmpint(feed(f, 5, efd, NULL), ==, IVSH_DROP);
    g_assert_false(fd_is_open(efd));
    g_assert_cmpuint(ivsh_client_nr_peers(&f->c), ==, 2);
    g_assert_cmpuint(f->c.nr_fds, ==, 3);

    /* Refused ones stay refused even when room appears, until they leave */
    g_assert_cmpint(feed(f, 1, -1, &ev), ==, IVSH_OK);
    g_assert_cmpint(ev.kind, ==, IVSH_EV_PEER_GONE);
    g_assert_cmpuint(f->c.nr_fds, ==, 1);
    efd = new_eventfd();
    g_assert_cmpint(feed(f, 2, efd, &ev), ==, IVSH_DROP);
    g_assert_false(fd_is_open(efd));
    g_assert_cmpint(ev.kind, ==, IVSH_EV_NONE);
    efd = new_eventfd();
    g_assert_cmpint(feed(f, 5, efd, NULL), ==, IVSH_DROP);
    g_assert_false(fd_is_open(efd));
    g_assert_cmpuint(f->c.nr_fds, ==, 1);

    /* Their disconnect is accepted without an event; then they may return */
    g_assert_cmpint(feed(f, 2, -1, &ev), ==, IVSH_OK);
    g_assert_cmpint(ev.kind, ==, IVSH_EV_NONE);
    g_assert_cmpint(feed(f, 5, -1, &ev), ==, IVSH_OK);
    g_assert_cmpint(ev.kind, ==, IVSH_EV_NONE);
    give_eventfds(f, 5, 2);
    g_assert_cmpuint(f->c.nr_fds, ==, 3);
    g_assert_cmpuint(ivsh_client_nr_peers(&f->c), ==, 2);
    close(shm);
}

/*
 * The configuration of the report: budget 10, 4 vectors, our own 4 in
 * first; peer 1 takes 4, peer 2 fits twice and is then refused as a
 * whole, its 2 released; our own vectors are never touched.
 */
static void test_client_budget_whole_peer(Fixture *f, gconstpointer data)
{
    IvshEvent ev;
    int shm, i;

    ivsh_client_destroy(&f->c);
    ivsh_client_init(&f->c, 4, 10);
    ivsh_client_reserve_own(&f->c, 4);
    shm = setup_client(f, 0);
    give_eventfds(f, 0, 4);
    give_eventfds(f, 1, 4);
    give_eventfds(f, 2, 2);             /* 10 of 10 */
    g_assert_cmpint(feed(f, 2, new_eventfd(), &ev), ==, IVSH_DROP);
    g_assert_cmpint(ev.kind, ==, IVSH_EV_PEER_GONE);
    g_assert_cmpuint(ev.peer, ==, 2);
    g_assert_cmpuint(ev.nr_vectors, ==, 2);
    for (i = 0; i < 3; i++) {
        g_assert_cmpint(feed(f, 2, new_eventfd(), &ev), ==, IVSH_DROP);
        g_assert_cmpint(ev.kind, ==, IVSH_EV_NONE);
    }
    g_assert_cmpuint(f->c.nr_fds, ==, 8);
    g_assert_cmpuint(ivsh_client_own_fds(&f->c), ==, 4);
    g_assert_cmpuint(ivsh_client_nr_peers(&f->c), ==, 1);
    g_assert_cmpint(feed(f, 2, -1, &ev), ==, IVSH_OK);
    g_assert_cmpint(ev.kind, ==, IVSH_EV_NONE);
    g_assert_cmpuint(f->c.nr_fds, ==, 8);
    close(shm);
}

/*
 * Own eventfds come last (servers send a newcomer everyone else's first):
 * with a reservation they always fit, and other peers are refused first.
 */
static void test_client_reserve_own(Fixture *f, gconstpointer data)
{
    IvshEvent ev;
    int shm, efd;

    ivsh_client_destroy(&f->c);
    ivsh_client_init(&f->c, 2, 4);
    ivsh_client_reserve_own(&f->c, 2);
    shm = setup_client(f, 5);

    give_eventfds(f, 1, 2);             /* 2 of 4, 2 kept for our own */
    efd = new_eventfd();                /* peer 2 does not fit */
    g_assert_cmpint(feed(f, 2, efd, NULL), ==, IVSH_DROP);
    g_assert_false(fd_is_open(efd));
    give_eventfds(f, 5, 2);             /* our own do */
    g_assert_cmpuint(f->c.nr_fds, ==, 4);
    g_assert_cmpuint(ivsh_client_own_fds(&f->c), ==, 2);
    g_assert_cmpuint(ivsh_client_nr_peers(&f->c), ==, 1);

    /* Peer 1 leaves: room for a peer, our own are all there */
    g_assert_cmpint(feed(f, 1, -1, &ev), ==, IVSH_OK);
    g_assert_cmpint(ev.kind, ==, IVSH_EV_PEER_GONE);
    give_eventfds(f, 3, 2);
    close(shm);
}

/* Without a reservation (the default), first come, first served */
static void test_client_no_reserve(Fixture *f, gconstpointer data)
{
    int shm, efd;

    ivsh_client_destroy(&f->c);
    ivsh_client_init(&f->c, 2, 2);
    shm = setup_client(f, 5);
    give_eventfds(f, 1, 2);
    efd = new_eventfd();
    g_assert_cmpint(feed(f, 5, efd, NULL), ==, IVSH_DROP);
    g_assert_false(fd_is_open(efd));
    g_assert_cmpuint(ivsh_client_own_fds(&f->c), ==, 0);
    close(shm);
}

static void test_client_disconnect_own(Fixture *f, gconstpointer data)
{
    int shm = setup_client(f, 5);

    give_eventfds(f, 5, 4);
    g_assert_cmpint(feed(f, 5, -1, NULL), ==, IVSH_DROP);
    g_assert_cmpuint(f->c.nr_fds, ==, 4);
    g_assert_true(ivsh_client_ready(&f->c));
    close(shm);
}

static void test_client_disconnect_unknown(Fixture *f, gconstpointer data)
{
    int shm = setup_client(f, 0);

    g_assert_cmpint(feed(f, 9, -1, NULL), ==, IVSH_DROP);
    give_eventfds(f, 9, 1);
    g_assert_cmpint(feed(f, 9, -1, NULL), ==, IVSH_OK);
    g_assert_cmpint(feed(f, 9, -1, NULL), ==, IVSH_DROP);
    close(shm);
}

static void test_client_garbage(Fixture *f, gconstpointer data)
{
    static const int64_t bad[] = { -2, 65536, G_MAXINT64, G_MININT64 };
    unsigned i;
    int shm, efd;

    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        ivsh_client_destroy(&f->c);
        ivsh_client_init(&f->c, 4, 64);
        shm = setup_client(f, 0);
        give_eventfds(f, 1, 2);
        efd = i & 1 ? new_eventfd() : -1;
        g_assert_cmpint(feed(f, bad[i], efd, NULL), ==, IVSH_FATAL);
        if (efd >= 0) {
            g_assert_false(fd_is_open(efd));
        }
        assert_broken(f);
        close(shm);
    }
}

static void test_client_no_errp(Fixture *f, gconstpointer data)
{
    IvshEvent ev;
    int efd = new_eventfd();

    g_assert_cmpint(ivsh_client_handle(&f->c, 0, efd, &ev, NULL), ==,
                    IVSH_FATAL);
    g_assert_false(fd_is_open(efd));
    g_assert_cmpint(ivsh_client_handle(&f->c, 0, -1, &ev, NULL), ==,
                    IVSH_FATAL);
}

/* With /proc/self/fd held open, the check does not need the path */
static void test_fd_check_hold(void)
{
    unsigned fds = count_fds();
    int fd = new_eventfd(), p[2];

    g_assert_true(ivsh_fd_check_hold());
    g_assert_true(ivsh_fd_check_hold());
    g_assert_cmpuint(count_fds(), ==, fds + 2);     /* one dir fd */
    g_assert_true(ivsh_fd_is_eventfd(fd));
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_false(ivsh_fd_is_eventfd(p[0]));
    ivsh_fd_check_release();
    g_assert_true(ivsh_fd_is_eventfd(fd));
    ivsh_fd_check_release();
    g_assert_true(ivsh_fd_is_eventfd(fd));
    close(fd);
    close(p[0]);
    close(p[1]);
    g_assert_cmpuint(count_fds(), ==, fds);
}

static void test_fd_is_eventfd(void)
{
    int fd = new_eventfd(), p[2];

    g_assert_true(ivsh_fd_is_eventfd(fd));
    close(fd);
    g_assert_false(ivsh_fd_is_eventfd(fd));
    g_assert_false(ivsh_fd_is_eventfd(-1));
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_false(ivsh_fd_is_eventfd(p[0]));
    close(p[0]);
    close(p[1]);
}

/* ---- a stream, byte by byte, through IvshReader into the decoder ---- */

static void test_stream_byte_at_a_time(Fixture *f, gconstpointer data)
{
    int sv[2], efd[3], fd = -1, n = 0, shm = -1;
    int64_t msgs[] = { 0, 6, -1, 1, 6, 6, 1 };
    int with_fd[] = { -1, -1, 0, 1, 2, -3, -1 };
    IvshReader r = { 0 };
    bool complete;
    int64_t msg;
    unsigned i;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                    ==, 0);
    for (i = 0; i < 3; i++) {
        efd[i] = new_eventfd();
    }
    shm = new_memfd(4096, MFD_ALLOW_SEALING);
    for (i = 0; i < G_N_ELEMENTS(msgs); i++) {
        int sfd = with_fd[i] == 0 ? shm : with_fd[i] > 0 ? efd[with_fd[i] - 1]
                  : with_fd[i] == -3 ? efd[2] : -1;

        g_assert_cmpint(ivsh_msg_send(sv[0], msgs[i], sfd), ==, 0);
    }
    close(sv[0]);
    close(shm);
    for (i = 0; i < 3; i++) {
        close(efd[i]);
    }

    /* One byte per recvmsg: the fd comes with the first byte */
    for (;;) {
        uint8_t byte;
        IvshEvent ev;
        int got;

        if (ivsh_recvmsg(sv[1], &byte, 1, &got, 0, NULL, NULL) <= 0) {
            break;
        }
        if (got >= 0) {
            g_assert_cmpint(fd, ==, -1);
            fd = got;
        }
        ivsh_reader_feed(&r, &byte, 1, &complete, &msg);
        if (!complete) {
            continue;
        }
        g_assert_cmpint(msg, ==, msgs[n]);
        g_assert_cmpint(feed(f, msg, fd, &ev), ==, IVSH_OK);
        if (ev.fd >= 0) {
            close(ev.fd);
        }
        fd = -1;
        n++;
    }
    g_assert_cmpint(n, ==, G_N_ELEMENTS(msgs));
    g_assert_cmpint(fd, ==, -1);
    g_assert_cmpuint(ivsh_client_nr_peers(&f->c), ==, 0);
    g_assert_cmpuint(f->c.nr_fds, ==, 2);
    close(sv[1]);
}

/* ---- Reconnection: ivsh_client_restart() ---- */

/* Give @id @n eventfds, expecting vectors @first.. and .replaces @repl */
static void give_more(Fixture *f, uint16_t id, unsigned first, unsigned n,
                      bool repl)
{
    IvshEvent ev;
    unsigned i;

    for (i = first; i < first + n; i++) {
        g_assert_cmpint(feed(f, id, new_eventfd(), &ev), ==, IVSH_OK);
        g_assert_cmpint(ev.kind, ==, IVSH_EV_EVENTFD);
        g_assert_cmpuint(ev.vector, ==, i);
        g_assert_cmpint(ev.replaces, ==, repl);
        close(ev.fd);
    }
}

/*
 * A peer announced again replaces its eventfds vector by vector (no
 * more held), then adds the ones it did not have; nr_fds counts what is
 * held.  The new set-up starts with a version message again.
 */
static void test_restart_replace(Fixture *f, gconstpointer data)
{
    int shm;

    shm = setup_client(f, 1);
    give_more(f, 2, 0, 2, false);
    give_more(f, 1, 0, 4, false);
    g_assert_cmpuint(f->c.nr_fds, ==, 6);
    close(shm);

    ivsh_client_restart(&f->c);
    g_assert_false(ivsh_client_ready(&f->c));
    g_assert_cmpuint(ivsh_client_nr_peers(&f->c), ==, 1);
    g_assert_cmpuint(ivsh_client_own_fds(&f->c), ==, 4);
    shm = setup_client(f, 1);
    g_assert_cmpuint(f->c.nr_fds, ==, 6);
    give_more(f, 2, 0, 2, true);
    g_assert_cmpuint(f->c.nr_fds, ==, 6);
    give_more(f, 2, 2, 1, false);       /* a third one: held in addition */
    g_assert_cmpuint(f->c.nr_fds, ==, 7);
    give_more(f, 1, 0, 4, true);
    g_assert_cmpuint(f->c.nr_fds, ==, 7);
    g_assert_cmpuint(ivsh_client_nr_peers(&f->c), ==, 1);
    close(shm);
}

/*
 * A peer that is not announced again stays known; a disconnect for it
 * releases what it held.  One announced again with fewer eventfds keeps
 * the rest until its disconnect.
 */
static void test_restart_stale(Fixture *f, gconstpointer data)
{
    IvshEvent ev;
    int shm;

    shm = setup_client(f, 0);
    give_more(f, 3, 0, 2, false);
    give_more(f, 4, 0, 3, false);
    close(shm);
    ivsh_client_restart(&f->c);
    shm = setup_client(f, 0);
    give_more(f, 4, 0, 1, true);
    g_assert_cmpuint(ivsh_client_nr_peers(&f->c), ==, 2);
    g_assert_cmpuint(f->c.nr_fds, ==, 5);

    g_assert_cmpint(feed(f, 3, -1, &ev), ==, IVSH_OK);
    g_assert_cmpint(ev.kind, ==, IVSH_EV_PEER_GONE);
    g_assert_cmpuint(ev.nr_vectors, ==, 2);
    g_assert_cmpint(feed(f, 4, -1, &ev), ==, IVSH_OK);
    g_assert_cmpint(ev.kind, ==, IVSH_EV_PEER_GONE);
    g_assert_cmpuint(ev.nr_vectors, ==, 3);
    g_assert_cmpuint(f->c.nr_fds, ==, 0);
    g_assert_cmpuint(ivsh_client_nr_peers(&f->c), ==, 0);
    /* Gone for good: a second disconnect is for an unknown peer */
    g_assert_cmpint(feed(f, 3, -1, NULL), ==, IVSH_DROP);
    close(shm);
}

/*
 * Replacements need no room under max_fds; a peer refused before the
 * restart is judged anew; a restart in the middle of a renewal keeps
 * the larger count held.
 */
static void test_restart_budget(Fixture *f, gconstpointer data)
{
    int shm, efd;

    ivsh_client_destroy(&f->c);
    ivsh_client_init(&f->c, 2, 4);
    shm = setup_client(f, 0);
    give_more(f, 1, 0, 2, false);
    give_more(f, 0, 0, 2, false);       /* 4 of 4 */
    efd = new_eventfd();
    g_assert_cmpint(feed(f, 2, efd, NULL), ==, IVSH_DROP);  /* refused */
    close(shm);

    ivsh_client_restart(&f->c);
    shm = setup_client(f, 0);
    give_more(f, 1, 0, 1, true);
    close(shm);
    ivsh_client_restart(&f->c);         /* again, half-way through */
    shm = setup_client(f, 0);
    give_more(f, 1, 0, 2, true);
    give_more(f, 0, 0, 2, true);
    g_assert_cmpuint(f->c.nr_fds, ==, 4);
    /* Peer 2 is not refused for ever: it gets room once peer 1 leaves */
    g_assert_cmpint(feed(f, 1, -1, NULL), ==, IVSH_OK);
    give_more(f, 2, 0, 2, false);
    g_assert_cmpuint(f->c.nr_fds, ==, 4);
    close(shm);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

#define ADD_F(path, fn) \
    g_test_add("/ivsh/proto/client/" path, Fixture, NULL, fixture_setup, \
               fn, fixture_teardown)

    g_test_add_func("/ivsh/proto/msg/roundtrip", test_msg_roundtrip);
    g_test_add_func("/ivsh/proto/reader/byte-at-a-time",
                    test_reader_byte_at_a_time);
    g_test_add_func("/ivsh/proto/reader/pieces", test_reader_pieces);
    g_test_add_func("/ivsh/proto/send/socketpair", test_send_socketpair);
    g_test_add_func("/ivsh/proto/shm-check", test_shm_check);
    g_test_add_func("/ivsh/proto/fd-is-eventfd", test_fd_is_eventfd);
    g_test_add_func("/ivsh/proto/fd-check-hold", test_fd_check_hold);
    ADD_F("setup", test_client_setup);
    ADD_F("shm-event", test_client_shm_event);
    ADD_F("bad-version", test_client_bad_version);
    ADD_F("version-with-fd", test_client_version_with_fd);
    ADD_F("bad-id", test_client_bad_id);
    ADD_F("id-with-fd", test_client_id_with_fd);
    ADD_F("eventfd-before-shm", test_client_eventfd_before_shm);
    ADD_F("shm-without-fd", test_client_shm_without_fd);
    ADD_F("shm-not-power-of-two", test_client_shm_not_pow2);
    ADD_F("shm-too-small", test_client_shm_too_small);
    ADD_F("shm-empty", test_client_shm_empty);
    ADD_F("shm-read-only", test_client_shm_read_only);
    ADD_F("shm-write-sealed", test_client_shm_write_sealed);
    ADD_F("shm-not-a-file", test_client_shm_not_a_file);
    ADD_F("second-shm", test_client_second_shm);
    ADD_F("not-eventfd", test_client_not_eventfd);
    ADD_F("too-many-eventfds", test_client_too_many_eventfds);
    ADD_F("fd-budget", test_client_fd_budget);
    ADD_F("budget-whole-peer", test_client_budget_whole_peer);
    ADD_F("reserve-own", test_client_reserve_own);
    ADD_F("no-reserve", test_client_no_reserve);
    ADD_F("disconnect-own", test_client_disconnect_own);
    ADD_F("disconnect-unknown", test_client_disconnect_unknown);
    ADD_F("garbage-after-setup", test_client_garbage);
    ADD_F("no-errp", test_client_no_errp);
    ADD_F("stream-byte-at-a-time", test_stream_byte_at_a_time);
    ADD_F("restart/replace", test_restart_replace);
    ADD_F("restart/stale", test_restart_stale);
    ADD_F("restart/budget", test_restart_budget);

    return g_test_run();
}
