/*
 * ivshmem server protocol v0: decoder, encoder and checks
 *
 * See include/hw/misc/ivsh-proto.h.  Plain C and GLib: this file is also
 * built outside QEMU, for the server, the client and the unit tests.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include "hw/misc/ivsh-proto.h"
#include "hw/misc/ivsh-regs.h"

#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#define F_SEAL_WRITE 0x0008
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

/* Peer table values: eventfds received, plus this flag once refused */
#define PEER_REFUSED 0x80000000u

GQuark ivsh_proto_error_quark(void)
{
    return g_quark_from_static_string("ivsh-proto-error-quark");
}

size_t ivsh_reader_feed(IvshReader *r, const void *buf, size_t len,
                        bool *complete, int64_t *msg)
{
    size_t n = MIN(len, ivsh_reader_want(r));

    memcpy(r->buf + r->len, buf, n);
    r->len += n;
    *complete = r->len == IVSH_MSG_SIZE;
    if (*complete) {
        *msg = ivsh_msg_decode(r->buf);
        r->len = 0;
    }
    return n;
}

void ivsh_msg_encode(int64_t msg, uint8_t out[IVSH_MSG_SIZE])
{
    uint64_t v = (uint64_t)msg;
    int i;

    for (i = 0; i < IVSH_MSG_SIZE; i++) {
        out[i] = v >> (8 * i);
    }
}

int64_t ivsh_msg_decode(const uint8_t in[IVSH_MSG_SIZE])
{
    uint64_t v = 0;
    int i;

    for (i = 0; i < IVSH_MSG_SIZE; i++) {
        v |= (uint64_t)in[i] << (8 * i);
    }
    return (int64_t)v;
}

void ivsh_client_init(IvshClient *c, uint32_t vectors, uint32_t max_fds)
{
    memset(c, 0, sizeof(*c));
    c->state = IVSH_WANT_VERSION;
    c->vectors = vectors;
    c->max_fds = max_fds;
    c->peers = g_hash_table_new(g_direct_hash, g_direct_equal);
    c->stale = g_hash_table_new(g_direct_hash, g_direct_equal);
}

void ivsh_client_destroy(IvshClient *c)
{
    if (c->peers) {
        g_hash_table_destroy(c->peers);
        c->peers = NULL;
    }
    if (c->stale) {
        g_hash_table_destroy(c->stale);
        c->stale = NULL;
    }
}

/* Eventfds of @peer held from before the last restart */
static uint32_t stale_count(const IvshClient *c, gconstpointer peer)
{
    return c->stale ? GPOINTER_TO_UINT(g_hash_table_lookup(c->stale, peer))
                    : 0;
}

void ivsh_client_restart(IvshClient *c)
{
    GHashTableIter it;
    gpointer key, value;

    g_hash_table_iter_init(&it, c->peers);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        uint32_t count = GPOINTER_TO_UINT(value);

        if (!(count & PEER_REFUSED) && count > stale_count(c, key)) {
            g_hash_table_insert(c->stale, key, value);
        }
    }
    g_hash_table_remove_all(c->peers);
    c->state = IVSH_WANT_VERSION;
}

unsigned ivsh_client_nr_peers(const IvshClient *c)
{
    GHashTableIter it;
    gpointer key, value;
    unsigned n = 0;

    g_hash_table_iter_init(&it, c->peers);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        if (GPOINTER_TO_UINT(key) != c->own_id &&
            !(GPOINTER_TO_UINT(value) & PEER_REFUSED)) {
            n++;
        }
    }
    if (!c->stale) {
        return n;
    }
    /* Peers from before a restart that were not announced again */
    g_hash_table_iter_init(&it, c->stale);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        if (GPOINTER_TO_UINT(key) != c->own_id &&
            !g_hash_table_contains(c->peers, key)) {
            n++;
        }
    }
    return n;
}

void ivsh_client_reserve_own(IvshClient *c, uint32_t n)
{
    c->reserve_own = n;
}

uint32_t ivsh_client_own_fds(const IvshClient *c)
{
    gconstpointer key = GUINT_TO_POINTER(c->own_id);
    uint32_t count = GPOINTER_TO_UINT(g_hash_table_lookup(c->peers, key));

    return MAX(count & PEER_REFUSED ? 0 : count, stale_count(c, key));
}

/* /proc/self/fd while ivsh_fd_check_hold() calls are in effect */
static int proc_fd_dir = -1;
static unsigned proc_fd_holds;

bool ivsh_fd_check_hold(void)
{
    if (proc_fd_dir < 0) {
        proc_fd_dir = open("/proc/self/fd",
                           O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (proc_fd_dir < 0) {
            return false;
        }
    }
    proc_fd_holds++;
    return true;
}

void ivsh_fd_check_release(void)
{
    if (proc_fd_holds && !--proc_fd_holds) {
        close(proc_fd_dir);
        proc_fd_dir = -1;
    }
}

bool ivsh_fd_is_eventfd(int fd)
{
    char path[64], target[64];
    ssize_t n;

    if (fd < 0) {
        return false;
    }
    if (proc_fd_dir >= 0) {
        snprintf(path, sizeof(path), "%d", fd);
        n = readlinkat(proc_fd_dir, path, target, sizeof(target) - 1);
    } else {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        n = readlink(path, target, sizeof(target) - 1);
    }
    if (n < 0) {
        return false;
    }
    target[n] = '\0';
    return strcmp(target, "anon_inode:[eventfd]") == 0;
}

uint64_t ivsh_shm_check(int fd, bool *sealed, GError **errp)
{
    struct stat st;
    int seals, fl;

    *sealed = false;
    if (fstat(fd, &st) < 0) {
        g_set_error(errp, IVSH_PROTO_ERROR, errno,
                    "cannot stat the shared memory: %s", g_strerror(errno));
        return 0;
    }
    if (!S_ISREG(st.st_mode)) {
        g_set_error(errp, IVSH_PROTO_ERROR, EINVAL,
                    "the shared memory fd is not a file or memfd");
        return 0;
    }
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (fl & O_ACCMODE) != O_RDWR) {
        g_set_error(errp, IVSH_PROTO_ERROR, EACCES,
                    "the shared memory fd is not open read-write");
        return 0;
    }
    if (st.st_size < 4096 || (st.st_size & (st.st_size - 1))) {
        g_set_error(errp, IVSH_PROTO_ERROR, EINVAL,
                    "the shared memory size %lld is not a power of two of "
                    "at least 4096", (long long)st.st_size);
        return 0;
    }
    seals = fcntl(fd, F_GET_SEALS);
    if (seals >= 0) {
        if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) {
            g_set_error(errp, IVSH_PROTO_ERROR, EPERM,
                        "the shared memory is sealed against writing");
            return 0;
        }
        if (!(seals & F_SEAL_SHRINK) && !(seals & F_SEAL_SEAL)) {
            if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0) {
                seals |= F_SEAL_SHRINK;
            }
        }
        *sealed = seals & F_SEAL_SHRINK;
    }
    return st.st_size;
}

static IvshVerdict refuse(IvshClient *c, IvshVerdict v, int fd,
                          GError **errp, const char *fmt, ...)
    G_GNUC_PRINTF(5, 6);

static IvshVerdict refuse(IvshClient *c, IvshVerdict v, int fd,
                          GError **errp, const char *fmt, ...)
{
    va_list ap;

    if (fd >= 0) {
        close(fd);
    }
    if (v == IVSH_FATAL) {
        c->state = IVSH_BROKEN;
    }
    va_start(ap, fmt);
    if (errp) {
        g_assert(!*errp);
        *errp = g_error_new_valist(IVSH_PROTO_ERROR, v, fmt, ap);
    }
    va_end(ap);
    return v;
}

/*
 * Refuse the whole of @peer, whose eventfd @fd does not fit: the @held
 * eventfds accepted of it so far are released (IVSH_EV_PEER_GONE with
 * IVSH_DROP), and the ones still to come are dropped until it
 * disconnects, which is then a no-op.
 */
static IvshVerdict refuse_peer(IvshClient *c, uint16_t peer, uint32_t held,
                               int fd, IvshEvent *ev, GError **errp,
                               const char *fmt, ...)
    G_GNUC_PRINTF(7, 8);

static IvshVerdict refuse_peer(IvshClient *c, uint16_t peer, uint32_t held,
                               int fd, IvshEvent *ev, GError **errp,
                               const char *fmt, ...)
{
    gpointer key = GUINT_TO_POINTER(peer);
    g_autofree char *why = NULL;
    va_list ap;

    va_start(ap, fmt);
    why = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_hash_table_insert(c->peers, key, GUINT_TO_POINTER(PEER_REFUSED));
    g_hash_table_remove(c->stale, key);
    if (held) {
        c->nr_fds -= held;
        ev->kind = IVSH_EV_PEER_GONE;
        ev->peer = peer;
        ev->nr_vectors = held;
        return refuse(c, IVSH_DROP, fd, errp, "peer %u refused: %s; its %u "
                      "eventfds accepted so far are released", peer, why,
                      held);
    }
    return refuse(c, IVSH_DROP, fd, errp, "peer %u refused: %s", peer, why);
}

static IvshVerdict handle_eventfd(IvshClient *c, uint16_t peer, int fd,
                                  IvshEvent *ev, GError **errp)
{
    gpointer key = GUINT_TO_POINTER(peer), value;
    uint32_t count = 0, room = 1, old = stale_count(c, key);

    if (g_hash_table_lookup_extended(c->peers, key, NULL, &value)) {
        count = GPOINTER_TO_UINT(value);
    }
    if (count & PEER_REFUSED) {
        return refuse(c, IVSH_DROP, fd, errp,
                      "server sent an eventfd for peer %u, which was "
                      "refused", peer);
    }
    if (!ivsh_fd_is_eventfd(fd)) {
        return refuse(c, IVSH_DROP, fd, errp,
                      "server sent an fd for peer %u that is not an "
                      "eventfd", peer);
    }
    if (count >= c->vectors) {
        return refuse(c, IVSH_DROP, fd, errp,
                      "server sent more than %u eventfds for peer %u",
                      c->vectors, peer);
    }
    /* One that replaces an eventfd held from before a restart is no more */
    if (count >= old) {
        if (peer != c->own_id) {
            uint32_t own = ivsh_client_own_fds(c);

            /* Room for the own eventfds still to come */
            if (own < c->reserve_own) {
                room += c->reserve_own - own;
            }
        }
        if ((uint64_t)c->nr_fds + room > c->max_fds) {
            if (peer == c->own_id) {
                /* Our own are never refused as a whole: keep what fits */
                if (count == 0) {
                    g_hash_table_insert(c->peers, key,
                                        GUINT_TO_POINTER(PEER_REFUSED));
                }
                return refuse(c, IVSH_DROP, fd, errp,
                              "our own eventfd for vector %u refused: the "
                              "limit of %u eventfds is reached (%u held)",
                              count, c->max_fds, c->nr_fds);
            }
            return refuse_peer(c, peer, count, fd, ev, errp,
                               "the limit of %u eventfds is reached (%u "
                               "held, %u kept for our own)", c->max_fds,
                               c->nr_fds, room - 1);
        }
        c->nr_fds++;
    }
    g_hash_table_insert(c->peers, key, GUINT_TO_POINTER(count + 1));
    ev->kind = IVSH_EV_EVENTFD;
    ev->peer = peer;
    ev->vector = count;
    ev->fd = fd;
    ev->replaces = count < old;
    return IVSH_OK;
}

static IvshVerdict handle_disconnect(IvshClient *c, uint16_t peer,
                                     IvshEvent *ev, GError **errp)
{
    gpointer key = GUINT_TO_POINTER(peer), value = NULL;
    uint32_t count, old = stale_count(c, key);

    if (peer == c->own_id) {
        return refuse(c, IVSH_DROP, -1, errp,
                      "server announced the disconnect of our own ID %u",
                      peer);
    }
    if (!g_hash_table_lookup_extended(c->peers, key, NULL, &value) &&
        !old) {
        return refuse(c, IVSH_DROP, -1, errp,
                      "server announced the disconnect of unknown peer %u",
                      peer);
    }
    count = GPOINTER_TO_UINT(value);
    g_hash_table_remove(c->peers, key);
    g_hash_table_remove(c->stale, key);
    count = MAX(count & PEER_REFUSED ? 0 : count, old);
    if (!count) {
        return IVSH_OK;                 /* ev->kind stays IVSH_EV_NONE */
    }
    c->nr_fds -= count;
    ev->kind = IVSH_EV_PEER_GONE;
    ev->peer = peer;
    ev->nr_vectors = count;
    return IVSH_OK;
}

IvshVerdict ivsh_client_handle(IvshClient *c, int64_t msg, int fd,
                               IvshEvent *ev, GError **errp)
{
    GError *err = NULL;
    uint64_t size;

    memset(ev, 0, sizeof(*ev));
    ev->fd = -1;

    switch (c->state) {
    case IVSH_WANT_VERSION:
        if (msg != IVSH_PROTOCOL_VERSION) {
            return refuse(c, IVSH_FATAL, fd, errp,
                          "server speaks protocol version %" G_GINT64_FORMAT
                          ", expected %d", msg, IVSH_PROTOCOL_VERSION);
        }
        if (fd >= 0) {
            return refuse(c, IVSH_FATAL, fd, errp,
                          "server sent an fd with its version message");
        }
        c->state = IVSH_WANT_ID;
        return IVSH_OK;

    case IVSH_WANT_ID:
        if (msg < 0 || msg > IVSH_MAX_PEER_ID || fd >= 0) {
            return refuse(c, IVSH_FATAL, fd, errp,
                          "server sent an invalid ID message (%"
                          G_GINT64_FORMAT "%s)", msg,
                          fd >= 0 ? " with an fd" : "");
        }
        c->own_id = msg;
        c->state = IVSH_WANT_SHM;
        ev->kind = IVSH_EV_OWN_ID;
        ev->peer = msg;
        return IVSH_OK;

    case IVSH_WANT_SHM:
        if (msg != IVSH_MSG_SHM || fd < 0) {
            return refuse(c, IVSH_FATAL, fd, errp,
                          "server sent message %" G_GINT64_FORMAT "%s where "
                          "the shared memory was expected", msg,
                          fd >= 0 ? " with an fd" : "");
        }
        size = ivsh_shm_check(fd, &ev->sealed, &err);
        if (!size) {
            close(fd);
            c->state = IVSH_BROKEN;
            g_propagate_error(errp, err);
            return IVSH_FATAL;
        }
        c->state = IVSH_RUNNING;
        ev->kind = IVSH_EV_SHM;
        ev->fd = fd;
        ev->size = size;
        return IVSH_OK;

    case IVSH_RUNNING:
        if (msg < IVSH_MSG_SHM || msg > IVSH_MAX_PEER_ID) {
            return refuse(c, IVSH_FATAL, fd, errp,
                          "server sent invalid message %" G_GINT64_FORMAT
                          ", ignoring the server from now on", msg);
        }
        if (msg == IVSH_MSG_SHM) {
            return refuse(c, IVSH_DROP, fd, errp, fd >= 0 ?
                          "server sent a second shared memory" :
                          "server sent a shared memory message without fd");
        }
        if (fd >= 0) {
            return handle_eventfd(c, msg, fd, ev, errp);
        }
        return handle_disconnect(c, msg, ev, errp);

    case IVSH_BROKEN:
    default:
        return refuse(c, IVSH_FATAL, fd, errp,
                      "server connection is no longer trusted");
    }
}
