/*
 * ivshmem server protocol v0: the server side
 *
 * Plain C and GLib, no QEMU internals: contrib/ivsh-server/ wraps this in
 * an event loop, the unit tests and the fuzzer drive it directly.  The
 * client side is include/hw/misc/ivsh-proto.h.
 *
 * The core keeps the peer table and everything the protocol needs:
 *
 * - IDs: a new client gets the first free ID (0..65535) from a cursor
 *   that only moves forward and wraps, so that a departed peer's ID comes
 *   back as late as possible (QEMU 10.0's device corrupts its heap when
 *   an ID it saw leave connects again; see pick_id()).  The caller can
 *   keep IDs for clients that will come back (ivsh_server_reserve()),
 *   hand them out again (ivsh_server_add_peer_id()) and save and restore
 *   the cursor.  An optional limit on the number of peers.
 * - Eventfds: each peer has one eventfd per vector, created by the core.
 * - Fan-out: on a join, the new client gets the version, its ID, the
 *   shared memory, every other peer's eventfds and then its own; every
 *   other peer gets the new peer's eventfds.  On a leave, every other
 *   peer that knows about it gets the ID without fd.
 * - Send queues: every message goes through a per-client queue and is
 *   sent without blocking when the socket has room; a client that does
 *   not read cannot stall the server or the other clients.  The queue
 *   is bounded: a client whose backlog grows past a full set-up plus
 *   max_queue messages is dropped, and the others are told; so is one
 *   whose socket has been full for a while (ivsh_server_expire()); time
 *   spent throttled by the server (ETOOMANYREFS) does not count.  All
 *   queues together hold at most max_queued messages: beyond, the peer
 *   whose socket has been full the longest is dropped.
 *   Messages about a peer that left before they were sent are
 *   withdrawn, so a slow client never pins a departed peer's eventfds,
 *   and its backlog stays about the size of one set-up.
 *
 * The event loop owns the listening socket and calls in: add a peer for
 * each accepted connection, flush a peer when its socket is writable,
 * drop a peer when it hangs up or sends anything.  The core calls back
 * to ask for writability events and to report removed peers; callbacks
 * must not call back into the core.  Removed peers stay allocated (not
 * alive) until ivsh_server_collect(), so an event loop holding pointers
 * from one batch of events can check ivsh_server_peer_alive() safely.
 *
 * Sending and eventfd creation go through IvshServerOps, so tests can
 * run the core without sockets and inject failures.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef IVSH_SERVER_CORE_H
#define IVSH_SERVER_CORE_H

#include <sys/types.h>
#include "hw/misc/ivsh-proto.h"

typedef struct IvshServer IvshServer;
typedef struct IvshServerPeer IvshServerPeer;

/* Why a peer was removed */
typedef enum IvshServerDrop {
    IVSH_SERVER_LEFT,           /* the client closed its connection */
    IVSH_SERVER_VIOLATION,      /* the client sent data */
    IVSH_SERVER_SEND_ERROR,     /* sending failed: the client vanished */
    IVSH_SERVER_OVERFLOW,       /* the client's queue overflowed */
    IVSH_SERVER_STALLED,        /* the client stopped reading */
    IVSH_SERVER_SHUTDOWN,       /* the server is going away */
} IvshServerDrop;

typedef struct IvshServerOps {
    /*
     * Send @len bytes of a message without blocking, with @fd attached
     * unless it is negative.  Returns the number of bytes sent, or a
     * negative errno (-EAGAIN: no room now, -ETOOMANYREFS: too many fds
     * in flight, retry later).  NULL: sendmmsg(MSG_DONTWAIT) on the
     * socket, several messages per call.
     */
    ssize_t (*send)(void *opaque, int sock, const void *buf, size_t len,
                    int fd);
    /* Create an eventfd; the fd or a negative errno.  NULL: eventfd() */
    int (*new_eventfd)(void *opaque);
    /* @peer's socket should (not) be watched for writability */
    void (*want_write)(void *opaque, IvshServerPeer *peer, bool on);
    /* @peer was removed; its socket is closed right after this */
    void (*removed)(void *opaque, IvshServerPeer *peer, IvshServerDrop why);
    /*
     * @peer got its ID, which is not sent yet (e.g. to save it first).
     * @reused: no ID was free that no connected peer saw leave.
     */
    void (*assigned)(void *opaque, IvshServerPeer *peer, bool reused);
} IvshServerOps;

typedef struct IvshServerConfig {
    uint32_t vectors;       /* eventfds per peer, 1..IVSH_MAX_VECTORS */
    uint32_t max_peers;     /* 0: IVSH_MAX_PEER_ID + 1 */
    uint32_t max_queue;     /* backlog allowed beyond a full set-up */
    size_t max_queued;      /* all peers' queues together, 0: default */
    int sndbuf;             /* SO_SNDBUF of client sockets, 0: as is */
    int shm_fd;             /* sent to every client; stays the caller's */
    const IvshServerOps *ops;
    void *opaque;
} IvshServerConfig;

#define IVSH_SERVER_DEFAULT_MAX_QUEUE 65536
#define IVSH_SERVER_DEFAULT_MAX_QUEUED (8 * 1024 * 1024)

IvshServer *ivsh_server_new(const IvshServerConfig *cfg);
/* Close every peer's socket and eventfds; nothing is sent */
void ivsh_server_free(IvshServer *s);

/*
 * Register a connected client socket (the core owns it from now on,
 * also on failure, and makes it non-blocking) and queue its set-up.
 * Returns NULL with @errp set when the client is refused: no free ID,
 * the peer limit is reached, or its eventfds cannot be created.  The
 * peer returned is already gone (not alive) if sending to it failed.
 */
IvshServerPeer *ivsh_server_add_peer(IvshServer *s, int sock, GError **errp);
/* The same with the reserved ID @id (or a new one if @id is negative) */
IvshServerPeer *ivsh_server_add_peer_id(IvshServer *s, int sock, int id,
                                        GError **errp);

/* The ID cursor: where the search for a free ID starts */
unsigned ivsh_server_cursor(const IvshServer *s);
void ivsh_server_set_cursor(IvshServer *s, unsigned id);
/* Keep a free ID out of use (@on), or release it; false if in use */
bool ivsh_server_reserve(IvshServer *s, unsigned id, bool on);
bool ivsh_server_reserved(const IvshServer *s, unsigned id);

/* Remove a peer and tell the others */
void ivsh_server_drop_peer(IvshServer *s, IvshServerPeer *p,
                           IvshServerDrop why);

/* The peer's socket is writable: send what is queued */
void ivsh_server_flush_peer(IvshServer *s, IvshServerPeer *p);

/*
 * Some peers hit ETOOMANYREFS; the event loop should call
 * ivsh_server_retry() after a short delay.
 */
bool ivsh_server_throttled(const IvshServer *s);
void ivsh_server_retry(IvshServer *s);

/* Drop the peers whose socket has been full for @max_stall_us or more */
void ivsh_server_expire(IvshServer *s, int64_t max_stall_us);

/*
 * Start a shutdown: tell every peer that every other peer is gone.
 * Later removals send nothing.  The event loop may flush until
 * ivsh_server_queued() is 0, then call ivsh_server_free().
 */
void ivsh_server_announce_shutdown(IvshServer *s);

/* Free the peers removed so far (pointers to them become invalid) */
void ivsh_server_collect(IvshServer *s);

/* Introspection */
unsigned ivsh_server_nr_peers(const IvshServer *s);
uint32_t ivsh_server_vectors(const IvshServer *s);
size_t ivsh_server_queued(const IvshServer *s);   /* all peers */
IvshServerPeer *ivsh_server_lookup(const IvshServer *s, unsigned id);
/* Peers in ID order: pass NULL for the first one */
IvshServerPeer *ivsh_server_next_peer(const IvshServer *s,
                                      const IvshServerPeer *prev);

uint16_t ivsh_server_peer_id(const IvshServerPeer *p);
int ivsh_server_peer_sock(const IvshServerPeer *p);
int ivsh_server_peer_eventfd(const IvshServerPeer *p, uint32_t vector);
size_t ivsh_server_peer_queued(const IvshServerPeer *p);
bool ivsh_server_peer_alive(const IvshServerPeer *p);
void *ivsh_server_peer_data(const IvshServerPeer *p);
void ivsh_server_peer_set_data(IvshServerPeer *p, void *data);

const char *ivsh_server_drop_str(IvshServerDrop why);

#endif
