/*
 * ivsh-client: a host-side ivshmem peer for scripts and tests
 *
 * Connects to an ivshmem server (ivsh-server, or QEMU's contrib
 * ivshmem-server), takes part as a peer like a QEMU ivshmem-doorbell
 * device would, and runs one command: print its ID and the peers, ring
 * a peer's vector, wait for its own vector to be rung, or read, write or
 * dump the shared memory.  With --stay it then reads further commands
 * from stdin, answering each with "ok" or "error: ...", until EOF.
 * docs/tools/ivsh-server.rst is the manual.
 *
 * Protocol v0 has no "set-up complete" message: a client knows it has
 * all the peers once its own eventfds (sent last) have arrived.  With
 * --vectors N that is exact; otherwise the set-up counts as complete
 * once the server has been quiet for --settle milliseconds after the
 * first of them.
 *
 * Messages are decoded by IvshClient (hw/misc/ivsh/ivsh-proto.c), the
 * decoder QEMU's device in this project uses, so this tool also checks
 * that a server speaks the protocol correctly (--strict turns every
 * message the decoder drops into an error).
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include "hw/misc/ivsh-regs.h"
#include "hw/misc/ivsh-proto.h"
#include "ivsh-io.h"

#define EXIT_ERROR 1
#define EXIT_USAGE 2
#define EXIT_TIMEOUT 3

typedef struct Peer {
    uint16_t id;
    GArray *fds;                /* int, in vector order */
    bool stale;                 /* from before a reconnection */
} Peer;

typedef struct Client {
    /* options */
    char *socket_path;
    int vectors;                /* 0: not known */
    int settle_ms;
    int timeout_ms;
    gboolean stay;
    gboolean verbose;
    gboolean strict;

    int sock;
    IvshClient dec;
    IvshRecv rx;
    bool have_id;
    uint16_t own_id;
    int shm_fd;
    uint64_t shm_size;
    uint8_t *shm;
    GHashTable *peers;          /* ID -> Peer */
    int64_t last_own_ms;        /* when our last own eventfd came */
    bool ready;
    bool eof;

    /* Reconnection (long-running modes) */
    int reconnect_ms;           /* 0: never */
    enum { LINK_UP, LINK_DOWN, LINK_REFUSED } link;
    char *refused;              /* why a new set-up was refused */
    int64_t next_dial;
    struct Client *redial;      /* the new connection, during its set-up */
    dev_t shm_dev;
    ino_t shm_ino;
} Client;

/* Result of a command, for the exit status and the --stay answers */
typedef enum Result {
    RES_OK,
    RES_ERROR,
    RES_USAGE,
    RES_TIMEOUT,
} Result;

static int64_t now_ms(void)
{
    return g_get_monotonic_time() / 1000;
}

static void verbose(Client *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void verbose(Client *c, const char *fmt, ...)
{
    va_list ap;

    if (!c->verbose) {
        return;
    }
    va_start(ap, fmt);
    fprintf(stderr, "ivsh-client: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static void peer_free(gpointer data)
{
    Peer *p = data;
    guint i;

    for (i = 0; i < p->fds->len; i++) {
        close(g_array_index(p->fds, int, i));
    }
    g_array_free(p->fds, true);
    g_free(p);
}

static Peer *peer_get(Client *c, uint16_t id)
{
    Peer *p = g_hash_table_lookup(c->peers, GUINT_TO_POINTER(id));

    if (!p) {
        p = g_new0(Peer, 1);
        p->id = id;
        p->fds = g_array_new(false, false, sizeof(int));
        g_hash_table_insert(c->peers, GUINT_TO_POINTER(id), p);
    }
    return p;
}

static unsigned own_vectors(Client *c)
{
    Peer *p;

    if (!c->have_id) {
        return 0;
    }
    p = g_hash_table_lookup(c->peers, GUINT_TO_POINTER(c->own_id));
    return p ? p->fds->len : 0;
}

static bool connect_server(Client *c, GError **errp)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };

    if (strlen(c->socket_path) >= sizeof(sun.sun_path)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NAMETOOLONG,
                    "socket path '%s' is too long", c->socket_path);
        return false;
    }
    strcpy(sun.sun_path, c->socket_path);
    c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->sock < 0 ||
        connect(c->sock, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot connect to %s: %s", c->socket_path,
                    g_strerror(errno));
        return false;
    }
    return true;
}

/* Act on one decoded message; false on a fatal error */
static bool handle_msg(Client *c, int64_t msg, int fd, GError **errp)
{
    g_autoptr(GError) err = NULL;
    IvshEvent ev;
    Peer *p;

    switch (ivsh_client_handle(&c->dec, msg, fd, &ev, &err)) {
    case IVSH_FATAL:
        g_propagate_prefixed_error(errp, g_steal_pointer(&err),
                                   "protocol error: ");
        return false;
    case IVSH_DROP:
        if (ev.kind == IVSH_EV_PEER_GONE) {
            /* A peer refused as a whole: release what was accepted */
            g_hash_table_remove(c->peers, GUINT_TO_POINTER(ev.peer));
        }
        if (c->strict) {
            g_propagate_prefixed_error(errp, g_steal_pointer(&err),
                                       "protocol error (--strict): ");
            return false;
        }
        verbose(c, "ignored a message: %s", err->message);
        return true;
    case IVSH_OK:
        break;
    }
    switch (ev.kind) {
    case IVSH_EV_NONE:
        break;
    case IVSH_EV_OWN_ID:
        c->have_id = true;
        c->own_id = ev.peer;
        verbose(c, "own ID %u", ev.peer);
        break;
    case IVSH_EV_SHM:
        c->shm_fd = ev.fd;
        c->shm_size = ev.size;
        c->shm = mmap(NULL, ev.size, PROT_READ | PROT_WRITE, MAP_SHARED,
                      ev.fd, 0);
        if (c->shm == MAP_FAILED) {
            c->shm = NULL;
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                        "cannot map %" G_GUINT64_FORMAT " bytes of shared "
                        "memory: %s", ev.size, g_strerror(errno));
            return false;
        }
        verbose(c, "shared memory: %" G_GUINT64_FORMAT " bytes%s", ev.size,
                ev.sealed ? ", sealed" : "");
        break;
    case IVSH_EV_EVENTFD:
        p = peer_get(c, ev.peer);
        if (p->stale) {
            /* Announced again after a reconnection: its new eventfds */
            while (p->fds->len) {
                close(g_array_index(p->fds, int, p->fds->len - 1));
                g_array_set_size(p->fds, p->fds->len - 1);
            }
            p->stale = false;
        }
        g_array_append_val(p->fds, ev.fd);
        if (ev.peer == c->own_id) {
            c->last_own_ms = now_ms();
        }
        verbose(c, "peer %u vector %u", ev.peer, ev.vector);
        break;
    case IVSH_EV_PEER_GONE:
        g_hash_table_remove(c->peers, GUINT_TO_POINTER(ev.peer));
        verbose(c, "peer %u left", ev.peer);
        break;
    }
    return true;
}

/* Read what the server sent, without blocking; false on errors */
static bool pump(Client *c, GError **errp)
{
    unsigned extra = c->rx.extra_fds;
    int64_t msg;
    int fd, r;

    while (!c->eof) {
        r = ivsh_msg_recv(c->sock, &c->rx, &msg, &fd, MSG_DONTWAIT);
        if (c->rx.extra_fds != extra) {
            verbose(c, "closed %u surplus fds from the server",
                    c->rx.extra_fds - extra);
            extra = c->rx.extra_fds;
        }
        if (r == -EAGAIN) {
            return true;
        }
        if (r <= 0) {
            if (r == 0 || r == -EPIPE || r == -ECONNRESET) {
                c->eof = true;
                break;
            }
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(-r),
                        "cannot read from the server: %s", g_strerror(-r));
            return false;
        }
        if (c->rx.msg_lost) {
            verbose(c, "fds lost in transit (out of file descriptors?)");
        }
        if (!handle_msg(c, msg, fd, errp)) {
            return false;
        }
    }
    return true;
}

static bool check_ready(Client *c)
{
    unsigned own = own_vectors(c);

    if (!c->ready && ivsh_client_ready(&c->dec) && own) {
        if ((c->vectors && own >= (unsigned)c->vectors) ||
            now_ms() - c->last_own_ms >= c->settle_ms) {
            c->ready = true;
        }
    }
    return c->ready;
}

/* Wait until the set-up is complete */
static Result setup(Client *c, GError **errp)
{
    int64_t deadline = now_ms() + c->timeout_ms;
    struct pollfd pfd = { .events = POLLIN };
    int64_t left;
    int timeout;

    if (!connect_server(c, errp)) {
        return RES_ERROR;
    }
    pfd.fd = c->sock;
    for (;;) {
        if (!pump(c, errp)) {
            return RES_ERROR;
        }
        if (check_ready(c)) {
            struct stat st;

            if (fstat(c->shm_fd, &st) == 0) {
                c->shm_dev = st.st_dev;
                c->shm_ino = st.st_ino;
            }
            return RES_OK;
        }
        if (c->eof) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                        "the server closed the connection during set-up");
            return RES_ERROR;
        }
        left = deadline - now_ms();
        if (left <= 0) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                        "set-up not complete after %d ms", c->timeout_ms);
            return RES_TIMEOUT;
        }
        timeout = left;
        if (own_vectors(c)) {
            timeout = MIN(timeout, MAX(1, c->last_own_ms + c->settle_ms -
                                          now_ms()));
        }
        poll(&pfd, 1, timeout);
    }
}

/*
 * Reconnection, in the long-running modes (--stay, wait): when the
 * server goes away, dial again every --reconnect ms.  The new set-up is
 * taken only if it gives the same ID and the same shared memory (device
 * and inode) as before, as the spec asks of every client; then the
 * peers and their eventfds are those of the new set-up.  Otherwise the
 * client says why, stays disconnected and stops dialling.  Peers that
 * the new server does not announce keep their old eventfds: rings to
 * them still work (a QEMU 10.0 device cannot reconnect, but stays up).
 */
static void client_clear(Client *c);

static Client *client_clone(Client *c)
{
    Client *n = g_new0(Client, 1);

    n->socket_path = c->socket_path;
    n->vectors = c->vectors;
    n->settle_ms = c->settle_ms;
    n->timeout_ms = c->timeout_ms;
    n->verbose = c->verbose;
    n->strict = c->strict;
    n->sock = -1;
    n->shm_fd = -1;
    ivsh_recv_init(&n->rx);
    ivsh_client_init(&n->dec, c->dec.vectors, c->dec.max_fds);
    n->peers = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                     peer_free);
    return n;
}

static void redial_drop(Client *c)
{
    if (c->redial) {
        client_clear(c->redial);
        g_free(c->redial);
        c->redial = NULL;
    }
    c->next_dial = now_ms() + c->reconnect_ms;
}

/* The connection is gone: dial again, if we do */
static void link_lost(Client *c)
{
    verbose(c, "the server closed the connection");
    if (c->reconnect_ms && c->link == LINK_UP) {
        c->link = LINK_DOWN;
        c->next_dial = now_ms();
    }
}

static void redial_adopt(Client *c)
{
    Client *n = c->redial;
    struct stat st;
    g_autofree char *why = NULL;
    GHashTableIter it;
    gpointer key, value;

    if (fstat(n->shm_fd, &st) < 0 || st.st_dev != c->shm_dev ||
        st.st_ino != c->shm_ino) {
        why = g_strdup("the server has other shared memory");
    } else if (n->own_id != c->own_id) {
        why = g_strdup_printf("the server gave us ID %u, we are %u",
                              n->own_id, c->own_id);
    }
    if (why) {
        fprintf(stderr, "ivsh-client: reconnect refused: %s\n", why);
        c->link = LINK_REFUSED;
        c->refused = g_steal_pointer(&why);
        redial_drop(c);
        return;
    }
    /* Take the new connection and peers; keep our mapping */
    close(c->sock);
    c->sock = n->sock;
    n->sock = -1;
    ivsh_recv_reset(&c->rx);
    c->rx = n->rx;
    ivsh_recv_init(&n->rx);
    ivsh_client_destroy(&c->dec);
    c->dec = n->dec;
    ivsh_client_init(&n->dec, 1, 1);
    /* Peers the new server does not know (yet) keep their old eventfds */
    g_hash_table_iter_init(&it, c->peers);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        if (!g_hash_table_contains(n->peers, key)) {
            g_hash_table_iter_steal(&it);
            ((Peer *)value)->stale = true;
            g_hash_table_insert(n->peers, key, value);
        }
    }
    g_hash_table_destroy(c->peers);
    c->peers = n->peers;
    n->peers = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                     peer_free);
    c->eof = false;
    c->link = LINK_UP;
    redial_drop(c);
    verbose(c, "reconnected: ID %u, the same shared memory", c->own_id);
}

/* One step of the reconnection; the fd to poll (or -1) */
static int redial_step(Client *c)
{
    g_autoptr(GError) err = NULL;
    Client *n;

    if (c->link != LINK_DOWN) {
        return -1;
    }
    if (!c->redial) {
        if (now_ms() < c->next_dial) {
            return -1;
        }
        n = client_clone(c);
        c->redial = n;
        if (!connect_server(n, &err)) {
            redial_drop(c);
            return -1;
        }
    }
    n = c->redial;
    if (!pump(n, &err) || n->eof) {
        verbose(c, "reconnect: %s", err ? err->message : "closed");
        redial_drop(c);
        return -1;
    }
    if (check_ready(n)) {
        redial_adopt(c);
        return -1;
    }
    return n->sock;
}

/* How long a loop may sleep before the next reconnection step */
static int redial_timeout(Client *c, int timeout)
{
    int t;

    if (c->link != LINK_DOWN) {
        return timeout;
    }
    t = c->redial ? MAX(1, c->settle_ms) :
        (int)MAX(0, c->next_dial - now_ms());
    return timeout < 0 ? t : MIN(timeout, t);
}

/* A number: hex with 0x, or decimal with ivsh_parse_size()'s suffixes */
static bool parse_num(const char *str, guint64 max, guint64 *out)
{
    const char *end = NULL;
    guint64 v;

    if (str[0] == '0' && (str[1] == 'x' || str[1] == 'X')) {
        if (!g_ascii_isxdigit(str[2])) {
            return false;
        }
        errno = 0;
        v = g_ascii_strtoull(str + 2, (gchar **)&end, 16);
        if (errno || *end) {
            return false;
        }
    } else if (!ivsh_parse_size(str, &v, NULL)) {
        return false;
    }
    if (v > max) {
        return false;
    }
    *out = v;
    return true;
}

static gint cmp_peer_ids(gconstpointer a, gconstpointer b)
{
    return (gint)GPOINTER_TO_UINT(a) - (gint)GPOINTER_TO_UINT(b);
}

static Result cmd_info(Client *c, int argc, char **argv, GError **errp)
{
    GList *ids, *l;
    Peer *p;

    if (argc != 1) {
        g_set_error(errp, G_OPTION_ERROR, 0, "usage: info");
        return RES_USAGE;
    }
    printf("id %u\nmemory %" G_GUINT64_FORMAT "\nvectors %u\npeers %u\n",
           c->own_id, c->shm_size, own_vectors(c),
           g_hash_table_size(c->peers) - (own_vectors(c) ? 1 : 0));
    ids = g_list_sort(g_hash_table_get_keys(c->peers), cmp_peer_ids);
    for (l = ids; l; l = l->next) {
        p = g_hash_table_lookup(c->peers, l->data);
        if (p->id != c->own_id) {
            printf("peer %u %u\n", p->id, p->fds->len);
        }
    }
    g_list_free(ids);
    if (c->link == LINK_REFUSED) {
        printf("server refused: %s\n", c->refused);
    } else {
        printf("server %s\n", c->eof ? "disconnected" : "connected");
    }
    return RES_OK;
}

/*
 * Eventfds are shared with QEMU, whose chardev clears O_NONBLOCK on
 * every fd it receives (a flag of the open file, which all holders
 * share).  So never count on it: read with RWF_NOWAIT, and poll before
 * a write, which only blocks when the counter is full.
 */
static ssize_t eventfd_take(int fd, uint64_t *v)
{
    struct iovec iov = { .iov_base = v, .iov_len = sizeof(*v) };
    ssize_t n;

    do {
        n = preadv2(fd, &iov, 1, -1, RWF_NOWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EOPNOTSUPP) {
        /* An old kernel: set the flag, and hope nobody clears it now */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        n = read(fd, v, sizeof(*v));
    }
    return n;
}

static Result ring_one(Client *c, Peer *p, guint64 vector, GError **errp)
{
    struct pollfd pfd = { .fd = g_array_index(p->fds, int, vector),
                          .events = POLLOUT };
    int64_t deadline = now_ms() + c->timeout_ms, left;
    uint64_t one = 1;
    ssize_t n;

    for (;;) {
        left = deadline - now_ms();
        if (poll(&pfd, 1, MAX(left, 0)) == 1 && (pfd.revents & POLLOUT)) {
            fcntl(pfd.fd, F_SETFL, fcntl(pfd.fd, F_GETFL) | O_NONBLOCK);
            n = write(pfd.fd, &one, sizeof(one));
            if (n == sizeof(one)) {
                return RES_OK;
            }
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                break;
            }
        } else if (left <= 0) {
            errno = EAGAIN;
            break;
        }
    }
    g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                "cannot ring peer %u vector %u: %s", p->id,
                (unsigned)vector, errno == EAGAIN ?
                "its counter stays full" : g_strerror(errno));
    return errno == EAGAIN ? RES_TIMEOUT : RES_ERROR;
}

static Result cmd_ring(Client *c, int argc, char **argv, GError **errp)
{
    guint64 id, vector;
    Peer *p;
    guint i;

    if (argc != 3 || !parse_num(argv[1], IVSH_MAX_PEER_ID, &id) ||
        (strcmp(argv[2], "all") &&
         !parse_num(argv[2], IVSH_MAX_VECTORS - 1, &vector))) {
        g_set_error(errp, G_OPTION_ERROR, 0, "usage: ring PEER VECTOR|all");
        return RES_USAGE;
    }
    p = g_hash_table_lookup(c->peers, GUINT_TO_POINTER(id));
    if (!p) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                    "no peer %u", (unsigned)id);
        return RES_ERROR;
    }
    if (!strcmp(argv[2], "all")) {
        for (i = 0; i < p->fds->len; i++) {
            if (ring_one(c, p, i, errp) != RES_OK) {
                return RES_ERROR;
            }
        }
        return RES_OK;
    }
    if (vector >= p->fds->len) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                    "peer %u has no vector %u (it has %u)", (unsigned)id,
                    (unsigned)vector, p->fds->len);
        return RES_ERROR;
    }
    return ring_one(c, p, vector, errp);
}

static Result cmd_wait(Client *c, int argc, char **argv, GError **errp)
{
    guint64 vector, count = 1, timeout = c->timeout_ms, got = 0, v;
    struct pollfd pfd[2];
    int64_t deadline, left;
    Peer *self;
    int i;

    if (argc < 2 || !parse_num(argv[1], IVSH_MAX_VECTORS - 1, &vector)) {
        goto usage;
    }
    for (i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--count") && i + 1 < argc &&
            parse_num(argv[i + 1], G_MAXUINT32, &count) && count) {
            i++;
        } else if (!strcmp(argv[i], "--timeout") && i + 1 < argc &&
                   parse_num(argv[i + 1], G_MAXINT32, &timeout)) {
            i++;
        } else {
            goto usage;
        }
    }
    self = g_hash_table_lookup(c->peers, GUINT_TO_POINTER(c->own_id));
    if (!self || vector >= self->fds->len) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                    "we have no vector %u (we have %u)", (unsigned)vector,
                    self ? self->fds->len : 0);
        return RES_ERROR;
    }
    pfd[0].fd = g_array_index(self->fds, int, vector);
    pfd[0].events = POLLIN;
    pfd[1].events = POLLIN;
    deadline = now_ms() + timeout;
    for (;;) {
        int dial = redial_step(c);

        pfd[1].fd = c->eof ? dial : c->sock;
        if (eventfd_take(pfd[0].fd, &v) == sizeof(v)) {
            got += v;
        }
        if (got >= count) {
            break;
        }
        left = deadline - now_ms();
        if (left <= 0) {
            printf("received %" G_GUINT64_FORMAT "\n", got);
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                        "timeout: vector %u rung %" G_GUINT64_FORMAT
                        " of %" G_GUINT64_FORMAT " times",
                        (unsigned)vector, got, count);
            return RES_TIMEOUT;
        }
        if (poll(pfd, pfd[1].fd < 0 ? 1 : 2, redial_timeout(c, left)) > 0 &&
            pfd[1].revents && !c->eof) {
            if (!pump(c, errp)) {
                return RES_ERROR;
            }
            if (c->eof) {
                link_lost(c);
            }
        }
    }
    printf("received %" G_GUINT64_FORMAT "\n", got);
    return RES_OK;

usage:
    g_set_error(errp, G_OPTION_ERROR, 0,
                "usage: wait VECTOR [--count N] [--timeout MS]");
    return RES_USAGE;
}

static bool check_range(Client *c, const char *off_str, const char *len_str,
                        guint64 *off, guint64 *len, GError **errp)
{
    if (!parse_num(off_str, G_MAXUINT64, off) ||
        (len_str && !parse_num(len_str, G_MAXUINT64, len))) {
        g_set_error(errp, G_OPTION_ERROR, 0, "invalid offset or length");
        return false;
    }
    if (*off > c->shm_size || *len > c->shm_size - *off) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%" G_GUINT64_FORMAT " bytes at %" G_GUINT64_FORMAT
                    " are outside the %" G_GUINT64_FORMAT " bytes of shared "
                    "memory", *len, *off, c->shm_size);
        return false;
    }
    return true;
}

static Result cmd_read(Client *c, int argc, char **argv, GError **errp)
{
    guint64 off, len;

    if (argc != 3) {
        g_set_error(errp, G_OPTION_ERROR, 0, "usage: read OFFSET LENGTH");
        return RES_USAGE;
    }
    if (!check_range(c, argv[1], argv[2], &off, &len, errp)) {
        return RES_ERROR;
    }
    if (fwrite(c->shm + off, 1, len, stdout) != len ||
        (c->stay && putchar('\n') == EOF)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_IO,
                    "cannot write to stdout");
        return RES_ERROR;
    }
    return RES_OK;
}

static Result cmd_write(Client *c, int argc, char **argv, GError **errp)
{
    guint64 off, len;

    if (argc != 3) {
        g_set_error(errp, G_OPTION_ERROR, 0, "usage: write OFFSET DATA");
        return RES_USAGE;
    }
    len = strlen(argv[2]);
    if (!check_range(c, argv[1], NULL, &off, &len, errp)) {
        return RES_ERROR;
    }
    memcpy(c->shm + off, argv[2], len);
    return RES_OK;
}

static Result cmd_dump(Client *c, int argc, char **argv, GError **errp)
{
    guint64 off, len, i, j;

    if (argc != 3) {
        g_set_error(errp, G_OPTION_ERROR, 0, "usage: dump OFFSET LENGTH");
        return RES_USAGE;
    }
    if (!check_range(c, argv[1], argv[2], &off, &len, errp)) {
        return RES_ERROR;
    }
    for (i = 0; i < len; i += 16) {
        printf("%08" G_GINT64_MODIFIER "x ", off + i);
        for (j = i; j < i + 16; j++) {
            if (j < len) {
                printf(" %02x", c->shm[off + j]);
            } else {
                printf("   ");
            }
        }
        printf("  |");
        for (j = i; j < i + 16 && j < len; j++) {
            printf("%c", g_ascii_isprint(c->shm[off + j]) ?
                   c->shm[off + j] : '.');
        }
        printf("|\n");
    }
    return RES_OK;
}

static Result run_command(Client *c, int argc, char **argv, GError **errp)
{
    static const struct {
        const char *name;
        Result (*fn)(Client *c, int argc, char **argv, GError **errp);
    } cmds[] = {
        { "info", cmd_info },
        { "ring", cmd_ring },
        { "wait", cmd_wait },
        { "read", cmd_read },
        { "write", cmd_write },
        { "dump", cmd_dump },
    };
    unsigned i;

    for (i = 0; i < G_N_ELEMENTS(cmds); i++) {
        if (!strcmp(argv[0], cmds[i].name)) {
            return cmds[i].fn(c, argc, argv, errp);
        }
    }
    g_set_error(errp, G_OPTION_ERROR, 0, "unknown command '%s' (info, ring, "
                "wait, read, write, dump)", argv[0]);
    return RES_USAGE;
}

/* Report a command's result as the last line of its answer */
static void answer(Result res, GError *err)
{
    if (res == RES_OK) {
        printf("ok\n");
    } else {
        printf("%s: %s\n", res == RES_TIMEOUT ? "timeout" : "error",
               err ? err->message : "failed");
    }
    fflush(stdout);
}

/* --stay: commands from stdin, while following the server */
static Result interactive(Client *c)
{
    struct pollfd pfd[2] = {
        { .fd = STDIN_FILENO, .events = POLLIN },
        { .events = POLLIN },
    };
    GString *line = g_string_new(NULL);
    Result last = RES_OK;
    char buf[4096];
    ssize_t n;

    for (;;) {
        int dial = redial_step(c);

        pfd[1].fd = c->eof ? dial : c->sock;
        pfd[1].revents = 0;
        if (poll(pfd, pfd[1].fd < 0 ? 1 : 2, redial_timeout(c, -1)) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (!c->eof && pfd[1].revents) {
            g_autoptr(GError) err = NULL;

            if (!pump(c, &err)) {
                fprintf(stderr, "ivsh-client: %s\n", err->message);
                last = RES_ERROR;
                break;
            }
            if (c->eof) {
                link_lost(c);
            }
        }
        if (!pfd[0].revents) {
            continue;
        }
        n = read(STDIN_FILENO, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        g_string_append_len(line, buf, n);
        while (strchr(line->str, '\n')) {
            g_autoptr(GError) err = NULL;
            g_auto(GStrv) argv = NULL;
            char *nl = strchr(line->str, '\n');
            g_autofree char *cmd = g_strndup(line->str, nl - line->str);
            int argc;

            g_string_erase(line, 0, nl - line->str + 1);
            g_strstrip(cmd);
            if (!*cmd || cmd[0] == '#') {
                continue;
            }
            if (!strcmp(cmd, "quit")) {
                g_string_free(line, true);
                return last;
            }
            if (!g_shell_parse_argv(cmd, &argc, &argv, &err)) {
                last = RES_USAGE;
            } else {
                last = run_command(c, argc, argv, &err);
            }
            answer(last, err);
        }
    }
    g_string_free(line, true);
    return last;
}

/* Close and free what a connection holds (not the options) */
static void client_clear(Client *c)
{
    g_hash_table_destroy(c->peers);
    ivsh_client_destroy(&c->dec);
    if (c->shm) {
        munmap(c->shm, c->shm_size);
    }
    if (c->shm_fd >= 0) {
        close(c->shm_fd);
    }
    ivsh_recv_reset(&c->rx);
    if (c->sock >= 0) {
        close(c->sock);
    }
}

static int exit_status(Result res)
{
    switch (res) {
    case RES_OK:
        return 0;
    case RES_USAGE:
        return EXIT_USAGE;
    case RES_TIMEOUT:
        return EXIT_TIMEOUT;
    default:
        return EXIT_ERROR;
    }
}

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static uint32_t fd_budget(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < 128) {
        return 64;
    }
    return MIN(rl.rlim_cur - 64, G_MAXUINT32);
}

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *vectors = NULL, *settle = NULL, *timeout = NULL;
    g_autofree char *reconnect = NULL;
    Client c = {
        .sock = -1, .shm_fd = -1,
        .settle_ms = 100, .timeout_ms = 5000, .reconnect_ms = 200,
    };
    const GOptionEntry entries[] = {
        { "socket", 'S', 0, G_OPTION_ARG_FILENAME, &c.socket_path,
          "The server's unix socket", "PATH" },
        { "vectors", 'n', 0, G_OPTION_ARG_STRING, &vectors,
          "The server's vectors per peer, if known (set-up is then "
          "complete as soon as ours have arrived); more are ignored", "N" },
        { "settle", 0, 0, G_OPTION_ARG_STRING, &settle,
          "Without --vectors, set-up is complete MS after our own "
          "eventfds stop coming (default 100)", "MS" },
        { "timeout", 't', 0, G_OPTION_ARG_STRING, &timeout,
          "Deadline for the set-up, and default for wait (default 5000)",
          "MS" },
        { "reconnect", 0, 0, G_OPTION_ARG_STRING, &reconnect,
          "With --stay and wait: when the server goes away, dial again "
          "every MS (default 200; 0: never)", "MS" },
        { "stay", 's', 0, G_OPTION_ARG_NONE, &c.stay,
          "After COMMAND, if any, read commands from stdin", NULL },
        { "strict", 0, 0, G_OPTION_ARG_NONE, &c.strict,
          "Treat any message the decoder ignores as an error", NULL },
        { "verbose", 'v', 0, G_OPTION_ARG_NONE, &c.verbose,
          "Report every message on stderr", NULL },
        { NULL }
    };
    g_autoptr(GOptionContext) ctx =
        g_option_context_new("[COMMAND [ARGS...]] - ivshmem peer");
    guint64 v;
    Result res = RES_OK;

    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_strict_posix(ctx, true);
    g_option_context_set_description(ctx,
        "Commands:\n"
        "  info                     own ID, memory size, peers and their "
        "vectors\n"
        "  ring PEER VECTOR|all     ring a peer's vector (or all of them)\n"
        "  wait VECTOR [--count N] [--timeout MS]\n"
        "                           wait until our VECTOR was rung N times\n"
        "  read OFFSET LENGTH       copy shared memory to stdout (with "
        "--stay,\n"
        "                           a newline follows)\n"
        "  write OFFSET DATA        copy DATA into shared memory\n"
        "  dump OFFSET LENGTH       hex dump of shared memory\n"
        "Numbers take a 0x prefix or a K/M/G suffix.\n"
        "Exit status: 0 success, 1 error, 2 usage, 3 timeout.\n");
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "ivsh-client: %s\n", err->message);
        return EXIT_USAGE;
    }
    if (vectors) {
        if (!g_ascii_string_to_unsigned(vectors, 10, 1, IVSH_MAX_VECTORS,
                                        &v, NULL)) {
            fprintf(stderr, "ivsh-client: invalid --vectors '%s'\n", vectors);
            return EXIT_USAGE;
        }
        c.vectors = v;
    }
    if (settle) {
        if (!g_ascii_string_to_unsigned(settle, 10, 0, 60000, &v, NULL)) {
            fprintf(stderr, "ivsh-client: invalid --settle '%s'\n", settle);
            return EXIT_USAGE;
        }
        c.settle_ms = v;
    }
    if (timeout) {
        if (!g_ascii_string_to_unsigned(timeout, 10, 1, G_MAXINT32, &v,
                                        NULL)) {
            fprintf(stderr, "ivsh-client: invalid --timeout '%s'\n",
                    timeout);
            return EXIT_USAGE;
        }
        c.timeout_ms = v;
    }
    if (reconnect) {
        if (!g_ascii_string_to_unsigned(reconnect, 10, 0, 3600000, &v,
                                        NULL)) {
            fprintf(stderr, "ivsh-client: invalid --reconnect '%s'\n",
                    reconnect);
            return EXIT_USAGE;
        }
        c.reconnect_ms = v;
    }
    if (!c.socket_path) {
        fprintf(stderr, "ivsh-client: --socket is required\n");
        return EXIT_USAGE;
    }
    if (argc < 2 && !c.stay) {
        fprintf(stderr, "ivsh-client: a command is required (or --stay)\n");
        return EXIT_USAGE;
    }

    raise_nofile();
    ivsh_recv_init(&c.rx);
    ivsh_client_init(&c.dec, c.vectors ? c.vectors : IVSH_MAX_VECTORS,
                     fd_budget());
    c.peers = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                    peer_free);
    res = setup(&c, &err);
    if (res == RES_OK) {
        if (argc >= 2) {
            res = run_command(&c, argc - 1, argv + 1, &err);
            if (c.stay) {
                answer(res, err);
                g_clear_error(&err);
            }
        }
        if (c.stay) {
            res = interactive(&c);
        }
    }
    if (err) {
        fprintf(stderr, "ivsh-client: %s\n", err->message);
    }
    fflush(stdout);

    if (c.redial) {
        client_clear(c.redial);
        g_free(c.redial);
    }
    client_clear(&c);
    g_free(c.refused);
    g_free(c.socket_path);
    return exit_status(res);
}
