/*
 * ivshmem server protocol v0: decoder, encoder and checks
 *
 * Plain C and GLib, no QEMU internals: the device, the in-test servers,
 * the ivshmem server and client, the unit tests and the fuzzer all use
 * this one implementation.  docs/specs/ivsh-spec.rst describes the
 * protocol.
 *
 * The server sends, to each client, little-endian signed 64-bit messages,
 * some with one file descriptor (SCM_RIGHTS):
 *   1. 0                the protocol version, no fd
 *   2. ID               the client's own peer ID (0..65535), no fd
 *   3. -1 + fd          the shared memory
 *   4. ID + fd          an eventfd of peer ID (ID may be the client's own);
 *                       the n-th one for a peer is its vector n-1
 *   5. ID, no fd        peer ID disconnected
 *
 * The client decoder (IvshClient) checks every message against the state
 * it has seen and says what to do with it: an event to act on, a message
 * to drop (the stream stays in sync, the fd is closed), or a fatal error
 * (during set-up, or when the stream cannot be trusted any more).
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_MISC_IVSH_PROTO_H
#define HW_MISC_IVSH_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

#define IVSH_MSG_SIZE 8
#define IVSH_MSG_SHM  (-1)

#define IVSH_PROTO_ERROR (ivsh_proto_error_quark())
GQuark ivsh_proto_error_quark(void);

/* Reassembles 8-byte messages from a byte stream delivered in any pieces */
typedef struct IvshReader {
    uint8_t buf[IVSH_MSG_SIZE];
    unsigned len;
} IvshReader;

/*
 * Consume bytes of @buf up to the end of the current message.  Returns
 * the number of bytes consumed; when a message is complete, *@msg is set
 * and true is returned in *@complete.
 */
size_t ivsh_reader_feed(IvshReader *r, const void *buf, size_t len,
                        bool *complete, int64_t *msg);
/* Bytes still missing for the current message (1..8) */
static inline size_t ivsh_reader_want(const IvshReader *r)
{
    return IVSH_MSG_SIZE - r->len;
}

void ivsh_msg_encode(int64_t msg, uint8_t out[IVSH_MSG_SIZE]);
int64_t ivsh_msg_decode(const uint8_t in[IVSH_MSG_SIZE]);

/* What a message means to the client */
typedef enum IvshEventKind {
    IVSH_EV_NONE,           /* accepted, nothing to do (version) */
    IVSH_EV_OWN_ID,         /* .peer is our ID */
    IVSH_EV_SHM,            /* .fd (owned by the caller now), .size */
    IVSH_EV_EVENTFD,        /* .peer, .vector, .fd (owned by the caller) */
    IVSH_EV_PEER_GONE,      /* .peer, .nr_vectors eventfds to release */
} IvshEventKind;

typedef struct IvshEvent {
    IvshEventKind kind;
    uint16_t peer;
    uint32_t vector;
    uint32_t nr_vectors;
    int fd;
    uint64_t size;
    bool sealed;            /* IVSH_EV_SHM: the size cannot shrink */
    bool replaces;          /* IVSH_EV_EVENTFD: replaces an older one */
} IvshEvent;

typedef enum IvshVerdict {
    IVSH_OK,                /* act on the event */
    IVSH_DROP,              /* message ignored (error set, fd closed) */
    IVSH_FATAL,             /* stop reading from the server (error set) */
} IvshVerdict;

typedef enum IvshClientState {
    IVSH_WANT_VERSION,
    IVSH_WANT_ID,
    IVSH_WANT_SHM,
    IVSH_RUNNING,
    IVSH_BROKEN,
} IvshClientState;

typedef struct IvshClient {
    IvshClientState state;
    uint16_t own_id;
    uint32_t vectors;       /* eventfds accepted per peer */
    uint32_t max_fds;       /* eventfds held in total, all peers */
    uint32_t reserve_own;   /* of max_fds, kept for our own eventfds */
    uint32_t nr_fds;
    GHashTable *peers;      /* peer ID -> eventfds received (+1 if refused) */
    GHashTable *stale;      /* peer ID -> eventfds held from before */
} IvshClient;

/*
 * @vectors: how many eventfds per peer the client uses (more are dropped)
 * @max_fds: how many eventfds in total the client agrees to hold; a peer
 *           (other than us) with an eventfd that would exceed it is
 *           refused as a whole: the eventfds accepted of it so far are
 *           released (see ivsh_client_handle()), later ones are dropped
 *           until it disconnects
 */
void ivsh_client_init(IvshClient *c, uint32_t vectors, uint32_t max_fds);
void ivsh_client_destroy(IvshClient *c);

/*
 * Keep room for @n eventfds of our own ID within max_fds: servers send a
 * newcomer the other peers' eventfds first and its own last, so without a
 * reservation a client among many peers would refuse its own.  Other
 * peers' eventfds are refused once accepting one would leave less than
 * the own eventfds still missing (@n minus those received).
 */
void ivsh_client_reserve_own(IvshClient *c, uint32_t n);

/*
 * Reconnection: read the set-up of a new connection to a (restarted)
 * server with the same client.  The decoder expects a version message
 * again.  The peers of the previous connections become stale (.stale):
 * their eventfds stay held, and counted in nr_fds, until a disconnect
 * for the peer arrives, or are replaced one by one when the peer is
 * announced again: its n-th new eventfd is vector n-1 again, with
 * .replaces set while vector n-1 had one.  Refused peers are forgotten:
 * when they are announced again they are judged anew.  Checking that the
 * new set-up is acceptable (same ID, same shared memory) is the caller's
 * job.
 */
void ivsh_client_restart(IvshClient *c);

/* Own eventfds received so far (held, after a restart) */
uint32_t ivsh_client_own_fds(const IvshClient *c);

/*
 * Interpret one message.  @fd is the descriptor that came with it, or -1;
 * on IVSH_OK it belongs to the event (ev->fd), otherwise it was closed.
 * After IVSH_FATAL the client stays IVSH_BROKEN and refuses everything.
 * IVSH_DROP comes with no event (IVSH_EV_NONE), except when a peer is
 * refused after some of its eventfds were accepted: IVSH_EV_PEER_GONE,
 * to release them as on a disconnect (which then is a no-op).
 */
IvshVerdict ivsh_client_handle(IvshClient *c, int64_t msg, int fd,
                               IvshEvent *ev, GError **errp);

static inline bool ivsh_client_ready(const IvshClient *c)
{
    return c->state == IVSH_RUNNING;
}

/* Number of peers (other than us) with at least one eventfd */
unsigned ivsh_client_nr_peers(const IvshClient *c);

/*
 * True if @fd is an eventfd.  It reads the fd's link in /proc/self/fd;
 * while a ivsh_fd_check_hold() is in effect, through a directory fd
 * opened by the first one, so the check keeps working after a chroot
 * (QEMU's -run-with chroot=) or an unmount of /proc.  Never reads or
 * writes @fd.
 */
bool ivsh_fd_is_eventfd(int fd);

/*
 * Keep /proc/self/fd open for ivsh_fd_is_eventfd() until the matching
 * ivsh_fd_check_release().  False (and nothing to release) if it cannot
 * be opened.
 */
bool ivsh_fd_check_hold(void);
void ivsh_fd_check_release(void);

/*
 * Check a shared-memory fd: a regular file or memfd whose size is a power
 * of two of at least 4 KiB, writable.  When it supports sealing, seal it
 * against shrinking (*@sealed = true).  Returns the size, or 0 with
 * @errp set.
 */
uint64_t ivsh_shm_check(int fd, bool *sealed, GError **errp);

#endif
