/*
 * An ivshmem server for qtests, scriptable for hostile behaviour
 *
 * It runs in a thread of the test process, so that QEMU can read its
 * set-up messages while the test waits for QEMU in qtest_init().  By
 * default every connection joins as a peer (lowest free ID, shared
 * memory, eventfds fanned out as an ivshmem server does); a script
 * queued with ivsh_tserver_script() replaces that for the next
 * connection.  The test process can also join as a "host peer" with its
 * own eventfds, to see the doorbells a VM rings.  Messages are encoded
 * by the project's protocol module.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef IVSH_TSERVER_H
#define IVSH_TSERVER_H

typedef struct IvshTServer IvshTServer;

/* Called in the server thread with a new connection's socket */
typedef void IvshTScript(IvshTServer *ts, int sock, void *opaque);

IvshTServer *ivsh_tserver_new(const char *path, size_t shm_size,
                              unsigned vectors);
void ivsh_tserver_free(IvshTServer *ts);

/* The next connection runs @fn instead of joining (FIFO) */
void ivsh_tserver_script(IvshTServer *ts, IvshTScript *fn, void *opaque);

/* The shared memory, mapped in the test process; its fd */
void *ivsh_tserver_shm(IvshTServer *ts);
int ivsh_tserver_shm_fd(IvshTServer *ts);

/* Send the standard set-up (version, @id, shared memory) on @sock */
void ivsh_tserver_send_setup(IvshTServer *ts, int sock, int64_t id);

/* Wait until @n connections have joined as peers; false on timeout */
bool ivsh_tserver_wait_peers(IvshTServer *ts, unsigned n);

/* ID of the @i-th peer that joined through a connection */
int ivsh_tserver_peer_id(IvshTServer *ts, unsigned i);

/* Join as a host peer: returns its ID */
int ivsh_tserver_add_host_peer(IvshTServer *ts);
/* A peer leaves: its connection is closed, the others are told */
void ivsh_tserver_remove_peer(IvshTServer *ts, int id);

/* Ring peer @id on @vector, as another peer would */
void ivsh_tserver_ring(IvshTServer *ts, int id, unsigned vector);
/* How many times host peer @id was rung on @vector; wait up to @ms */
uint64_t ivsh_tserver_wait_rung(IvshTServer *ts, int id, unsigned vector,
                                int ms);

/* Send a raw message to the peer with connection @id (-1: no fd) */
void ivsh_tserver_send(IvshTServer *ts, int id, int64_t msg, int fd);

/*
 * The eventfd the server holds for peer @id's @vector (the same file the
 * peers received): a hostile peer's handle on it.
 */
int ivsh_tserver_eventfd(IvshTServer *ts, int id, unsigned vector);

/*
 * Clear O_NONBLOCK on every eventfd the server holds, now and on each one
 * it creates from now on: the open file description is shared, so every
 * peer's copy becomes blocking too.
 */
void ivsh_tserver_clear_nonblock(IvshTServer *ts);

#endif
