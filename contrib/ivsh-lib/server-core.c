/*
 * ivshmem server protocol v0: the server side
 *
 * See contrib/ivsh-lib/server-core.h.  Plain C and GLib, built
 * outside QEMU for the server, the unit tests and the fuzzer.
 *
 * A set-up is not copied into the new client's queue at once: a cursor
 * walks the peers that joined before it (IvshServer.live, in join
 * order) and adds their eventfd messages a few at a time, as the client
 * reads (refill()); so a client that does not read holds a few dozen
 * queued messages, not one per peer and vector.
 *
 * Invariant behind the fan-out: while peers X and Y are both in the
 * table, Y's queue receives all of X's eventfd messages exactly once:
 * when Y's set-up cursor passes X (X joined first), or when X joined.
 * Y counts, per peer, its messages still queued (IvshServerPeer.unsent).
 * So when X leaves, the cursor and that count tell whether Y ever saw X:
 * if the cursor has not reached X, or all of X's messages are still
 * queued, Y never heard of X and is not told it left.  X's eventfds are
 * closed at once (a slow client never pins them) and its unsent
 * messages are skipped when they come up; no queue is searched.
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
#include <sys/socket.h>
#include "hw/misc/ivsh-regs.h"
#include "ivsh-io.h"
#include "server-core.h"

#define NR_IDS (IVSH_MAX_PEER_ID + 1)

/* A reference-counted set of fds: a peer's eventfds, or the shm */
typedef struct IvshFdSet {
    unsigned refs;
    bool borrowed;              /* not ours to close */
    bool dead;                  /* its peer left: fds closed, not sent */
    uint32_t n;
    int fd[];
} IvshFdSet;

/* A queued message; @set holds a reference while it is queued */
typedef struct IvshQEntry {
    int64_t msg;
    IvshFdSet *set;
    uint32_t idx;
} IvshQEntry;

struct IvshServerPeer {
    IvshServer *server;
    uint16_t id;
    int sock;
    bool alive;                 /* in the table */
    bool doomed;                /* to be removed (reason in @why) */
    bool dirty;                 /* on the flush list */
    bool throttled;             /* on the retry list */
    bool watching;              /* want_write(true) was called */
    IvshServerDrop why;
    IvshFdSet *fds;             /* our eventfds */
    IvshQEntry *q;              /* ring buffer of queued messages */
    GHashTable *unsent;         /* IvshFdSet -> its messages in @q */
    size_t qcap, qhead, qlen;
    unsigned sent;              /* bytes of the head message sent */
    int64_t blocked;            /* since when its socket is full, or 0 */
    uint64_t join_seq;          /* when it joined (event number) */
    GList live;                 /* in IvshServer.live */
    GList *setup;               /* next peer of its set-up, or NULL */
    void *data;
};

struct IvshServer {
    uint32_t vectors;
    uint32_t max_peers;
    uint32_t max_queue;
    IvshServerOps ops;
    void *opaque;
    IvshFdSet *shm;
    IvshServerPeer **by_id;     /* NR_IDS entries */
    unsigned nr_peers;
    unsigned cursor;            /* the next ID to try */
    unsigned top;               /* every ID from here on is free */
    uint64_t seq;               /* events (joins, leaves) so far */
    uint64_t *left_seq;         /* NR_IDS: when each ID last left, or 0 */
    uint8_t *reserved;          /* NR_IDS: kept for a returning client */
    GQueue live;                /* peers in the order they joined */
    size_t queued;
    size_t max_queued;
    int sndbuf;
    bool shutting_down;
    bool settling;
    GQueue doomed, dirty, throttled, zombies;
};

static ssize_t default_send(void *opaque, int sock, const void *buf,
                            size_t len, int fd)
{
    return ivsh_sendmsg(sock, buf, len, fd, MSG_DONTWAIT);
}

static int default_new_eventfd(void *opaque)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    return fd < 0 ? -errno : fd;
}

static void no_want_write(void *opaque, IvshServerPeer *peer, bool on)
{
}

static void no_removed(void *opaque, IvshServerPeer *peer,
                       IvshServerDrop why)
{
}

static IvshFdSet *fdset_new(uint32_t n)
{
    IvshFdSet *set = g_malloc0(sizeof(*set) + n * sizeof(int));
    uint32_t i;

    set->refs = 1;
    set->n = n;
    for (i = 0; i < n; i++) {
        set->fd[i] = -1;
    }
    return set;
}

static void fdset_kill(IvshFdSet *set)
{
    uint32_t i;

    set->dead = true;
    for (i = 0; i < set->n; i++) {
        if (set->fd[i] >= 0 && !set->borrowed) {
            close(set->fd[i]);
        }
        set->fd[i] = -1;
    }
}

static void fdset_unref(IvshFdSet *set)
{
    uint32_t i;

    g_assert(set->refs > 0);
    if (--set->refs) {
        return;
    }
    if (!set->borrowed) {
        for (i = 0; i < set->n; i++) {
            if (set->fd[i] >= 0) {
                close(set->fd[i]);
            }
        }
    }
    g_free(set);
}

IvshServer *ivsh_server_new(const IvshServerConfig *cfg)
{
    IvshServer *s = g_new0(IvshServer, 1);

    g_assert(cfg->vectors >= 1 && cfg->vectors <= IVSH_MAX_VECTORS);
    s->vectors = cfg->vectors;
    s->max_peers = cfg->max_peers && cfg->max_peers < NR_IDS ?
                   cfg->max_peers : NR_IDS;
    s->max_queue = cfg->max_queue;
    s->max_queued = cfg->max_queued ? cfg->max_queued
                                     : IVSH_SERVER_DEFAULT_MAX_QUEUED;
    s->sndbuf = cfg->sndbuf;
    if (cfg->ops) {
        s->ops = *cfg->ops;
    }
    if (!s->ops.new_eventfd) {
        s->ops.new_eventfd = default_new_eventfd;
    }
    if (!s->ops.want_write) {
        s->ops.want_write = no_want_write;
    }
    if (!s->ops.removed) {
        s->ops.removed = no_removed;
    }
    s->opaque = cfg->opaque;
    s->shm = fdset_new(1);
    s->shm->borrowed = true;
    s->shm->fd[0] = cfg->shm_fd;
    s->by_id = g_new0(IvshServerPeer *, NR_IDS);
    s->left_seq = g_new0(uint64_t, NR_IDS);
    s->reserved = g_new0(uint8_t, NR_IDS);
    g_queue_init(&s->live);
    g_queue_init(&s->doomed);
    g_queue_init(&s->dirty);
    g_queue_init(&s->throttled);
    g_queue_init(&s->zombies);
    return s;
}

/* Largest backlog a peer may have: a full set-up plus max_queue */
static size_t queue_limit(const IvshServer *s)
{
    return (size_t)s->max_queue + 3 + (size_t)s->nr_peers * s->vectors;
}

static void queue_clear(IvshServer *s, IvshServerPeer *p);

/* Remove @p soon; what it has queued is dropped now */
static void doom(IvshServer *s, IvshServerPeer *p, IvshServerDrop why)
{
    if (p->alive && !p->doomed) {
        p->doomed = true;
        p->why = why;
        g_queue_push_tail(&s->doomed, p);
        queue_clear(s, p);
    }
}

static void set_watch(IvshServer *s, IvshServerPeer *p, bool on)
{
    if (p->watching != on) {
        p->watching = on;
        s->ops.want_write(s->opaque, p, on);
    }
}

/*
 * All queues together are full: drop the peer whose socket has been
 * full for the longest time (else the one with the longest queue), so
 * that the peers that read are not the ones to pay.  False if that is
 * @p itself, which then gets nothing more.
 */
static bool relieve(IvshServer *s, IvshServerPeer *p)
{
    IvshServerPeer *q, *worst = NULL;
    GList *l;

    for (l = s->live.head; l; l = l->next) {
        q = l->data;
        if (!q->alive || q->doomed || !q->qlen) {
            continue;
        }
        if (!worst ||
            (q->blocked && (!worst->blocked || q->blocked < worst->blocked)) ||
            (!q->blocked && !worst->blocked && q->qlen > worst->qlen)) {
            worst = q;
        }
    }
    if (!worst) {
        worst = p;
    }
    doom(s, worst, IVSH_SERVER_OVERFLOW);
    return worst != p;
}

static void unsent_add(IvshServerPeer *p, IvshFdSet *set, int n)
{
    guint v;

    if (set->borrowed) {
        return;
    }
    v = GPOINTER_TO_UINT(g_hash_table_lookup(p->unsent, set)) + n;
    if (v) {
        g_hash_table_insert(p->unsent, set, GUINT_TO_POINTER(v));
    } else {
        g_hash_table_remove(p->unsent, set);
    }
}

static IvshQEntry *qentry(IvshServerPeer *p, size_t i)
{
    return &p->q[(p->qhead + i) % p->qcap];
}

static void enqueue(IvshServer *s, IvshServerPeer *p, int64_t msg,
                    IvshFdSet *set, uint32_t idx)
{
    IvshQEntry *e;

    if (!p->alive || p->doomed) {
        return;
    }
    if (p->qlen >= queue_limit(s)) {
        doom(s, p, IVSH_SERVER_OVERFLOW);
        return;
    }
    if (s->queued >= s->max_queued && !relieve(s, p)) {
        return;
    }
    if (p->qlen == p->qcap) {
        size_t cap = MAX(16, p->qcap * 2), i;
        IvshQEntry *q = g_new(IvshQEntry, cap);

        for (i = 0; i < p->qlen; i++) {
            q[i] = *qentry(p, i);
        }
        g_free(p->q);
        p->q = q;
        p->qcap = cap;
        p->qhead = 0;
    }
    e = qentry(p, p->qlen);
    e->msg = msg;
    e->set = set;
    e->idx = idx;
    if (set) {
        set->refs++;
        unsent_add(p, set, 1);
    }
    p->qlen++;
    s->queued++;
    if (!p->dirty) {
        p->dirty = true;
        g_queue_push_tail(&s->dirty, p);
    }
}

static void queue_pop(IvshServer *s, IvshServerPeer *p)
{
    IvshQEntry *e = qentry(p, 0);

    if (e->set) {
        unsent_add(p, e->set, -1);
        fdset_unref(e->set);
    }
    p->qhead = (p->qhead + 1) % p->qcap;
    p->qlen--;
    p->sent = 0;
    s->queued--;
    if (!p->qlen && p->qcap > 1024) {
        /* Give back the memory of a big set-up */
        g_free(p->q);
        p->q = NULL;
        p->qcap = 0;
        p->qhead = 0;
    }
}

static void queue_clear(IvshServer *s, IvshServerPeer *p)
{
    while (p->qlen) {
        queue_pop(s, p);
    }
    g_free(p->q);
    p->q = NULL;
    p->qcap = 0;
}

/* Drop the messages at the head of @p's queue whose peer left */
static void skip_dead(IvshServer *s, IvshServerPeer *p)
{
    while (p->qlen && !p->sent && qentry(p, 0)->set &&
           qentry(p, 0)->set->dead) {
        queue_pop(s, p);
    }
}

/* Tell @p that @gone left, unless @p never heard of it */
static void announce_leave(IvshServer *s, IvshServerPeer *p,
                           IvshServerPeer *gone)
{
    guint unsent = GPOINTER_TO_UINT(g_hash_table_lookup(p->unsent,
                                                        gone->fds));
    IvshQEntry *head = p->qlen ? qentry(p, 0) : NULL;
    IvshServerPeer *next = p->setup ? p->setup->data : NULL;

    if (next && gone->join_seq >= next->join_seq &&
        gone->join_seq < p->join_seq) {
        /* Its set-up has not come to @gone yet, and now never will */
        return;
    }

    if (unsent < gone->fds->n || (head && head->set == gone->fds &&
                                  p->sent)) {
        enqueue(s, p, gone->id, NULL, 0);
    }
    skip_dead(s, p);
}

/* Why a send stopped: -EAGAIN, -ETOOMANYREFS or another error */
static void send_stopped(IvshServer *s, IvshServerPeer *p, ssize_t err)
{
    if (err == -EAGAIN || err == -EWOULDBLOCK) {
        if (!p->blocked) {
            p->blocked = g_get_monotonic_time();
        }
        set_watch(s, p, true);
    } else if (err == -ETOOMANYREFS) {
        if (!p->throttled) {
            p->throttled = true;
            g_queue_push_tail(&s->throttled, p);
        }
    } else {
        doom(s, p, IVSH_SERVER_SEND_ERROR);
    }
}

/*
 * The default transport: up to SEND_BATCH whole messages per
 * sendmmsg(), each with its own fd.  On a unix stream socket an 8-byte
 * message is never sent in part, as it fits in one skb; should it ever
 * happen in the middle of a batch, the stream is out of sync and the
 * client is dropped.
 */
#define SEND_BATCH 64

static bool flush_batch(IvshServer *s, IvshServerPeer *p)
{
    struct mmsghdr mm[SEND_BATCH];
    struct iovec iov[SEND_BATCH];
    uint8_t buf[SEND_BATCH][IVSH_MSG_SIZE];
    IvshFdCmsg control[SEND_BATCH];
    IvshQEntry *e;
    unsigned i, n;
    int r;

    n = MIN(p->qlen, SEND_BATCH);
    for (i = 0; i < n; i++) {
        e = qentry(p, i);
        if (e->set && e->set->dead) {
            n = i;              /* skip_dead() takes it next time */
            break;
        }
    }
    memset(mm, 0, n * sizeof(mm[0]));
    for (i = 0; i < n; i++) {
        e = qentry(p, i);
        ivsh_msg_encode(e->msg, buf[i]);
        ivsh_msghdr_fill(&mm[i].msg_hdr, &iov[i], buf[i], IVSH_MSG_SIZE,
                         e->set ? e->set->fd[e->idx] : -1, &control[i]);
    }
    do {
        r = sendmmsg(p->sock, mm, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        send_stopped(s, p, -errno);
        return false;
    }
    p->blocked = 0;
    for (i = 0; i < (unsigned)r; i++) {
        if (mm[i].msg_len != IVSH_MSG_SIZE) {
            if (i + 1 < (unsigned)r || !mm[i].msg_len) {
                doom(s, p, IVSH_SERVER_SEND_ERROR);
                return false;
            }
            p->sent = mm[i].msg_len;
            return true;
        }
        queue_pop(s, p);
    }
    return true;
}

/* Messages a set-up keeps queued ahead of the client */
#define SETUP_AHEAD 64

/* Add the next peers of @p's set-up to its queue, then its own eventfds */
static void refill(IvshServer *s, IvshServerPeer *p)
{
    IvshServerPeer *q;
    uint32_t v;

    while (p->setup && p->qlen < SETUP_AHEAD && !p->doomed) {
        q = p->setup->data;
        p->setup = p->setup->next;
        for (v = 0; v < s->vectors; v++) {
            enqueue(s, p, q->id, q->fds, v);
        }
        if (q == p) {
            p->setup = NULL;        /* ours come last */
        }
    }
}

static void flush(IvshServer *s, IvshServerPeer *p)
{
    uint8_t buf[IVSH_MSG_SIZE];
    IvshQEntry *e;
    ssize_t n;
    int fd;

    for (;;) {
        refill(s, p);
        skip_dead(s, p);
        if (!p->qlen) {
            break;
        }
        if (!p->sent && !s->ops.send) {
            if (!flush_batch(s, p)) {
                return;
            }
            continue;
        }
        e = qentry(p, 0);
        ivsh_msg_encode(e->msg, buf);
        fd = !p->sent && e->set ? e->set->fd[e->idx] : -1;
        n = (s->ops.send ? s->ops.send : default_send)(
                s->opaque, p->sock, buf + p->sent, sizeof(buf) - p->sent, fd);
        if (n <= 0) {
            send_stopped(s, p, n ? n : -EPIPE);
            return;
        }
        p->sent += MIN((size_t)n, sizeof(buf) - p->sent);
        p->blocked = 0;
        if (p->sent == sizeof(buf)) {
            queue_pop(s, p);
        }
    }
    set_watch(s, p, false);
}

static void remove_peer(IvshServer *s, IvshServerPeer *p, IvshServerDrop why)
{
    IvshServerPeer *q;
    unsigned id;

    if (!p->alive) {
        return;
    }
    p->alive = false;
    p->why = why;
    s->by_id[p->id] = NULL;
    s->nr_peers--;
    s->left_seq[p->id] = ++s->seq;
    fdset_kill(p->fds);
    while (s->top && !s->by_id[s->top - 1]) {
        s->top--;
    }
    for (id = 0; id < s->top; id++) {
        q = s->by_id[id];
        if (!q) {
            continue;
        }
        if (!s->shutting_down) {
            announce_leave(s, q, p);
        }
        if (q->setup == &p->live) {
            q->setup = p->live.next;
        }
    }
    g_queue_unlink(&s->live, &p->live);
    p->setup = NULL;
    s->ops.removed(s->opaque, p, why);
    close(p->sock);
    p->sock = -1;
    queue_clear(s, p);
    fdset_unref(p->fds);
    p->fds = NULL;
    if (p->throttled) {
        g_queue_remove(&s->throttled, p);
        p->throttled = false;
    }
    g_queue_push_tail(&s->zombies, p);
}

/* Remove doomed peers and flush dirty ones until nothing is left to do */
static void settle(IvshServer *s)
{
    IvshServerPeer *p;

    if (s->settling) {
        return;
    }
    s->settling = true;
    for (;;) {
        p = g_queue_pop_head(&s->doomed);
        if (p) {
            remove_peer(s, p, p->why);
            continue;
        }
        p = g_queue_pop_head(&s->dirty);
        if (p) {
            p->dirty = false;
            if (p->alive && !p->doomed && !p->throttled) {
                flush(s, p);
            }
            continue;
        }
        break;
    }
    s->settling = false;
}

/*
 * The ID for a new peer: the first free one from the cursor on, which
 * only moves forward and wraps at 65536, so a departed peer's ID comes
 * back as late as possible.  QEMU 10.0's device frees a departed peer's
 * eventfd array but keeps the pointer, and writes into it when the same
 * ID connects again: an ID must not come back while a peer that was
 * told it left is still connected.  So after a wrap, IDs that left
 * before the oldest connected peer joined come first; only when there
 * is none is another free one taken (and stock peers are at risk).
 */
static int pick_id(IvshServer *s, bool *unsafe)
{
    IvshServerPeer *oldest = s->live.head ? s->live.head->data : NULL;
    int fallback = -1;
    unsigned i, id;

    *unsafe = false;
    for (i = 0; i < NR_IDS; i++) {
        id = (s->cursor + i) % NR_IDS;
        if (s->by_id[id] || s->reserved[id]) {
            continue;
        }
        if (!oldest || s->left_seq[id] < oldest->join_seq) {
            return id;
        }
        if (fallback < 0) {
            fallback = id;
        }
    }
    *unsafe = fallback >= 0;
    return fallback;
}

IvshServerPeer *ivsh_server_add_peer(IvshServer *s, int sock, GError **errp)
{
    return ivsh_server_add_peer_id(s, sock, -1, errp);
}

IvshServerPeer *ivsh_server_add_peer_id(IvshServer *s, int sock, int want,
                                        GError **errp)
{
    IvshServerPeer *p, *q;
    IvshFdSet *fds;
    bool unsafe = false;
    int id;
    uint32_t v;
    int fd, fl;

    if (s->shutting_down) {
        g_set_error(errp, IVSH_PROTO_ERROR, ESHUTDOWN,
                    "the server is shutting down");
        close(sock);
        return NULL;
    }
    if (s->nr_peers >= s->max_peers) {
        g_set_error(errp, IVSH_PROTO_ERROR, EUSERS,
                    "the limit of %u peers is reached", s->max_peers);
        close(sock);
        return NULL;
    }
    if (want >= 0) {
        g_assert(want < NR_IDS && s->reserved[want] && !s->by_id[want]);
        id = want;
    } else {
        id = pick_id(s, &unsafe);
        if (id < 0) {
            g_set_error(errp, IVSH_PROTO_ERROR, EUSERS,
                        "no free peer ID (all are connected or kept for "
                        "returning clients)");
            close(sock);
            return NULL;
        }
    }
    fds = fdset_new(s->vectors);
    for (v = 0; v < s->vectors; v++) {
        fd = s->ops.new_eventfd(s->opaque);
        if (fd < 0) {
            g_set_error(errp, IVSH_PROTO_ERROR, -fd,
                        "cannot create eventfds: %s", g_strerror(-fd));
            fdset_unref(fds);
            close(sock);
            return NULL;
        }
        fds->fd[v] = fd;
    }
    fl = fcntl(sock, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK)) {
        fcntl(sock, F_SETFL, fl | O_NONBLOCK);
    }
    if (s->sndbuf > 0 && !s->ops.send) {
        setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &s->sndbuf,
                   sizeof(s->sndbuf));
    }
    if (want >= 0) {
        s->reserved[want] = 0;
    } else {
        s->cursor = (id + 1) % NR_IDS;
    }
    s->top = MAX(s->top, (unsigned)id + 1);

    p = g_new0(IvshServerPeer, 1);
    p->server = s;
    p->id = id;
    p->sock = sock;
    p->alive = true;
    p->fds = fds;
    p->unsent = g_hash_table_new(g_direct_hash, g_direct_equal);
    p->join_seq = ++s->seq;
    p->live.data = p;
    g_queue_push_tail_link(&s->live, &p->live);
    s->by_id[id] = p;
    s->nr_peers++;
    if (s->ops.assigned) {
        s->ops.assigned(s->opaque, p, unsafe);
    }

    enqueue(s, p, IVSH_PROTOCOL_VERSION, NULL, 0);
    enqueue(s, p, id, NULL, 0);
    enqueue(s, p, IVSH_MSG_SHM, s->shm, 0);
    p->setup = s->live.head;
    refill(s, p);
    for (id = 0; id < (int)s->top; id++) {
        q = s->by_id[id];
        if (q && q != p) {
            for (v = 0; v < s->vectors; v++) {
                enqueue(s, q, p->id, p->fds, v);
            }
        }
    }
    settle(s);
    return p;
}

void ivsh_server_drop_peer(IvshServer *s, IvshServerPeer *p,
                           IvshServerDrop why)
{
    remove_peer(s, p, why);
    settle(s);
}

void ivsh_server_flush_peer(IvshServer *s, IvshServerPeer *p)
{
    if (p->alive && !p->doomed && !p->throttled) {
        flush(s, p);
    }
    settle(s);
}

bool ivsh_server_throttled(const IvshServer *s)
{
    return s->throttled.length > 0;
}

void ivsh_server_retry(IvshServer *s)
{
    GQueue again = s->throttled;
    IvshServerPeer *p;

    /* Those throttled again go back on the (new) list */
    g_queue_init(&s->throttled);
    while ((p = g_queue_pop_head(&again))) {
        p->throttled = false;
        if (p->alive && !p->doomed) {
            flush(s, p);
        }
    }
    settle(s);
}

void ivsh_server_expire(IvshServer *s, int64_t max_stall_us)
{
    int64_t now = g_get_monotonic_time();
    IvshServerPeer *p;
    unsigned id;

    for (id = 0; id < s->top; id++) {
        p = s->by_id[id];
        if (p && p->qlen && p->blocked && now - p->blocked >= max_stall_us) {
            doom(s, p, IVSH_SERVER_STALLED);
        }
    }
    settle(s);
}

void ivsh_server_announce_shutdown(IvshServer *s)
{
    IvshServerPeer *p, *q;
    unsigned i, j;

    if (s->shutting_down) {
        return;
    }
    for (i = 0; i < s->top; i++) {
        p = s->by_id[i];
        if (!p) {
            continue;
        }
        for (j = 0; j < s->top; j++) {
            q = s->by_id[j];
            if (q && q != p) {
                announce_leave(s, p, q);
            }
        }
    }
    s->shutting_down = true;
    settle(s);
}

void ivsh_server_collect(IvshServer *s)
{
    IvshServerPeer *p;

    g_assert(!s->settling);
    while ((p = g_queue_pop_head(&s->zombies))) {
        g_assert(!p->dirty && !p->throttled);
        g_hash_table_destroy(p->unsent);
        g_free(p);
    }
}

void ivsh_server_free(IvshServer *s)
{
    IvshServerPeer *p;
    unsigned id;

    if (!s) {
        return;
    }
    s->shutting_down = true;
    for (id = 0; id < s->top; id++) {
        if (s->by_id[id]) {
            remove_peer(s, s->by_id[id], IVSH_SERVER_SHUTDOWN);
        }
    }
    while ((p = g_queue_pop_head(&s->dirty))) {
        p->dirty = false;
    }
    g_queue_clear(&s->doomed);
    ivsh_server_collect(s);
    fdset_unref(s->shm);
    g_free(s->by_id);
    g_free(s->left_seq);
    g_free(s->reserved);
    g_free(s);
}

unsigned ivsh_server_cursor(const IvshServer *s)
{
    return s->cursor;
}

void ivsh_server_set_cursor(IvshServer *s, unsigned id)
{
    s->cursor = id % NR_IDS;
}

bool ivsh_server_reserve(IvshServer *s, unsigned id, bool on)
{
    if (id >= NR_IDS || (on && s->by_id[id])) {
        return false;
    }
    s->reserved[id] = on;
    return true;
}

bool ivsh_server_reserved(const IvshServer *s, unsigned id)
{
    return id < NR_IDS && s->reserved[id];
}

unsigned ivsh_server_nr_peers(const IvshServer *s)
{
    return s->nr_peers;
}

uint32_t ivsh_server_vectors(const IvshServer *s)
{
    return s->vectors;
}

size_t ivsh_server_queued(const IvshServer *s)
{
    return s->queued;
}

IvshServerPeer *ivsh_server_lookup(const IvshServer *s, unsigned id)
{
    return id < NR_IDS ? s->by_id[id] : NULL;
}

IvshServerPeer *ivsh_server_next_peer(const IvshServer *s,
                                      const IvshServerPeer *prev)
{
    unsigned id;

    for (id = prev ? prev->id + 1 : 0; id < s->top; id++) {
        if (s->by_id[id]) {
            return s->by_id[id];
        }
    }
    return NULL;
}

uint16_t ivsh_server_peer_id(const IvshServerPeer *p)
{
    return p->id;
}

int ivsh_server_peer_sock(const IvshServerPeer *p)
{
    return p->sock;
}

int ivsh_server_peer_eventfd(const IvshServerPeer *p, uint32_t vector)
{
    return p->fds && vector < p->fds->n ? p->fds->fd[vector] : -1;
}

size_t ivsh_server_peer_queued(const IvshServerPeer *p)
{
    return p->qlen;
}

bool ivsh_server_peer_alive(const IvshServerPeer *p)
{
    return p->alive;
}

void *ivsh_server_peer_data(const IvshServerPeer *p)
{
    return p->data;
}

void ivsh_server_peer_set_data(IvshServerPeer *p, void *data)
{
    p->data = data;
}

const char *ivsh_server_drop_str(IvshServerDrop why)
{
    switch (why) {
    case IVSH_SERVER_LEFT:
        return "left";
    case IVSH_SERVER_VIOLATION:
        return "sent data (protocol violation)";
    case IVSH_SERVER_SEND_ERROR:
        return "vanished (send failed)";
    case IVSH_SERVER_OVERFLOW:
        return "did not keep up (send queue full)";
    case IVSH_SERVER_STALLED:
        return "stopped reading";
    case IVSH_SERVER_SHUTDOWN:
        return "server shutdown";
    }
    return "unknown";
}
