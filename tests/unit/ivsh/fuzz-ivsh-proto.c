/*
 * Fuzz target for the ivshmem protocol module
 *
 * LLVMFuzzerTestOneInput() runs one input against one of two targets,
 * chosen by the first byte:
 *
 * - even: the client decoder.  The input is a configuration (vectors,
 *   fd budget) and a list of messages, each a value and an fd kind
 *   (none, eventfd, memfds of good and bad sizes and seals, a pipe),
 *   delivered through IvshReader in pieces.  Checked: a message is
 *   accepted exactly when no error is set; the fd of a message that is
 *   not accepted is closed, the fd of one that is belongs to the event;
 *   a fatal error is final; the fd accounting matches the peer table
 *   and the events (what the caller holds); a peer refused for the
 *   budget is refused as a whole (nothing of it stays held); nothing
 *   leaks.
 *
 * - odd: the server core.  The input is a configuration (vectors, peer
 *   and queue limits) and a list of operations: joins, leaves, clients
 *   that stop reading, read in pieces, vanish or hit ETOOMANYREFS,
 *   expiry, eventfd exhaustion.  Every client's byte stream is then
 *   replayed into the client decoder, which must accept all of it; the
 *   clients still connected must know exactly the server's peers, and
 *   every new peer must have had the next ID of the cursor.
 *
 * Built with clang -fsanitize=fuzzer (IVSH_LIBFUZZER) it is a libFuzzer
 * target.  Otherwise main() is a replay driver for CI: it runs built-in
 * seeds and the files given, then, with -n, that many inputs mutated
 * from them with a fixed seed (-s); a failing input is saved to
 * fuzz-crash.bin in the current directory.  --write-corpus DIR writes
 * the built-in seeds as a starting corpus.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include "hw/misc/ivsh-regs.h"
#include "hw/misc/ivsh-proto.h"
#include "ivsh-io.h"
#include "server-core.h"
#include "unit-util.h"

#ifndef F_SEAL_WRITE
#define F_ADD_SEALS 1033
#define F_SEAL_WRITE 0x0008
#endif

#define MAX_LIVE 12

/* Input cursor: reads past the end give zeros */
typedef struct Input {
    const uint8_t *data;
    size_t size, pos;
} Input;

static uint8_t next(Input *in)
{
    return in->pos < in->size ? in->data[in->pos++] : (in->pos++, 0);
}

static bool more(const Input *in)
{
    return in->pos < in->size;
}

/* ---- decoder target ---- */

static int64_t pick_value(Input *in, uint8_t sel)
{
    static const int64_t table[] = {
        0, 65535, 65536, -2, G_MAXINT64, G_MININT64, 0x7fffffff, 1 << 20,
    };
    uint8_t raw[IVSH_MSG_SIZE];
    unsigned i;

    if (sel < 16) {
        return (int64_t)sel - 1;            /* -1 .. 14 */
    }
    if (sel < 24) {
        return table[sel - 16];
    }
    for (i = 0; i < IVSH_MSG_SIZE; i++) {
        raw[i] = next(in);
    }
    return ivsh_msg_decode(raw);
}

static int memfd(off_t size, unsigned flags)
{
    int fd = memfd_create("fuzz-ivsh", MFD_CLOEXEC | flags);

    g_assert(fd >= 0);
    g_assert(ftruncate(fd, size) == 0);
    return fd;
}

static int make_fd(Input *in, unsigned kind)
{
    g_autofree char *path = NULL;
    int fd, ro, p[2];

    switch (kind) {
    case 0:
        return -1;
    case 1:
    case 2:
        fd = eventfd(0, EFD_CLOEXEC);
        g_assert(fd >= 0);
        return fd;
    case 3:
        return memfd(4096 << (next(in) % 4), MFD_ALLOW_SEALING);
    case 4:
        return memfd(512 * (off_t)next(in), MFD_ALLOW_SEALING);
    case 5:
        g_assert(pipe2(p, O_CLOEXEC) == 0);
        close(p[1]);
        return p[0];
    case 6:
        fd = memfd(4096, MFD_ALLOW_SEALING);
        path = g_strdup_printf("/proc/self/fd/%d", fd);
        ro = open(path, O_RDONLY | O_CLOEXEC);
        g_assert(ro >= 0);
        close(fd);
        return ro;
    default:
        fd = memfd(8192, MFD_ALLOW_SEALING);
        g_assert(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) == 0);
        return fd;
    }
}

/* The decoder's own accounting: eventfds held, and refused peers */
static uint32_t held_fds(IvshClient *c)
{
    GHashTableIter it;
    gpointer key, value;
    uint32_t n = 0;

    g_hash_table_iter_init(&it, c->peers);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        if (!(GPOINTER_TO_UINT(value) & 0x80000000u)) {
            n += GPOINTER_TO_UINT(value);
        }
    }
    return n;
}

static uint32_t model_fds(GHashTable *model)
{
    GHashTableIter it;
    gpointer key, value;
    uint32_t n = 0;

    g_hash_table_iter_init(&it, model);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        n += GPOINTER_TO_UINT(value);
    }
    return n;
}

static void fuzz_decoder(Input *in)
{
    IvshClient c;
    IvshReader r = { 0 };
    uint32_t vectors = 1 + next(in) % 8, max_fds = next(in) % 32;
    /* peer -> eventfds the events gave the caller */
    g_autoptr(GHashTable) model = g_hash_table_new(g_direct_hash,
                                                   g_direct_equal);
    bool broken = false;

    ivsh_client_init(&c, vectors, max_fds);
    while (more(in)) {
        g_autoptr(GError) err = NULL;
        uint8_t op = next(in), raw[IVSH_MSG_SIZE];
        int64_t value = pick_value(in, op >> 3), msg = 0;
        unsigned chunk = next(in) % IVSH_MSG_SIZE + 1, off = 0;
        bool complete = false;
        int fd = make_fd(in, op & 7);
        IvshVerdict v;
        IvshEvent ev;

        /* Through the reader in pieces: only the last one completes */
        ivsh_msg_encode(value, raw);
        while (off < IVSH_MSG_SIZE) {
            g_assert(!complete);
            off += ivsh_reader_feed(&r, raw + off,
                                    MIN(chunk, IVSH_MSG_SIZE - off),
                                    &complete, &msg);
        }
        g_assert(complete && msg == value);

        v = ivsh_client_handle(&c, msg, fd, &ev, &err);
        g_assert((v == IVSH_OK) == (err == NULL));
        if (broken) {
            g_assert(v == IVSH_FATAL);
        }
        if (v == IVSH_FATAL) {
            broken = true;
            g_assert(c.state == IVSH_BROKEN);
        }
        /* Released with a refusal, or after a disconnect */
        if (ev.kind == IVSH_EV_PEER_GONE) {
            gpointer key = GUINT_TO_POINTER(ev.peer);

            g_assert(v == IVSH_OK || v == IVSH_DROP);
            g_assert_cmpuint(ev.nr_vectors, ==, GPOINTER_TO_UINT(
                                 g_hash_table_lookup(model, key)));
            g_hash_table_remove(model, key);
        } else if (ev.kind == IVSH_EV_EVENTFD && v == IVSH_OK) {
            gpointer key = GUINT_TO_POINTER(ev.peer);
            uint32_t n = GPOINTER_TO_UINT(g_hash_table_lookup(model, key));

            g_assert_cmpuint(ev.vector, ==, n);
            g_hash_table_insert(model, key, GUINT_TO_POINTER(n + 1));
        }
        if (v == IVSH_DROP && fd >= 0 && msg >= 0 && msg != c.own_id &&
            strstr(err->message, "refused: the limit")) {
            g_assert_false(g_hash_table_contains(model,
                                                 GUINT_TO_POINTER(msg)));
        }
        if (v != IVSH_OK) {
            g_assert(ev.fd == -1);
            g_assert(ev.kind == IVSH_EV_NONE ||
                     ev.kind == IVSH_EV_PEER_GONE);
            if (fd >= 0) {
                g_assert(!fd_is_open(fd));
            }
        } else {
            g_assert(ev.fd == fd);
            switch (ev.kind) {
            case IVSH_EV_NONE:
            case IVSH_EV_OWN_ID:
            case IVSH_EV_PEER_GONE:
                g_assert(fd == -1);
                break;
            case IVSH_EV_SHM:
                g_assert(ev.size >= 4096 && !(ev.size & (ev.size - 1)));
                break;
            case IVSH_EV_EVENTFD:
                g_assert(ev.vector < vectors);
                g_assert(ivsh_fd_is_eventfd(fd));
                break;
            }
            if (fd >= 0) {
                close(fd);
            }
        }
        g_assert(c.nr_fds <= max_fds);
        g_assert(c.nr_fds == held_fds(&c));
        g_assert(c.nr_fds == model_fds(model));
        g_assert(ivsh_client_nr_peers(&c) <= g_hash_table_size(c.peers));
    }
    ivsh_client_destroy(&c);
}

/* ---- server target ---- */

typedef struct Sent {
    int64_t msg;
    int dup;
} Sent;

typedef struct FChan {
    int sock;
    GArray *sent;
    int room;                   /* messages accepted before EAGAIN, -1 */
    int error;
    unsigned chunk;
    uint8_t buf[IVSH_MSG_SIZE];
    unsigned len;
    int dup;
    IvshServerPeer *peer;       /* NULL once removed */
    bool gone;
} FChan;

typedef struct FEnv {
    GHashTable *by_sock;        /* sock -> FChan, while connected */
    GPtrArray *chans;           /* every FChan */
    int eventfds_left;
} FEnv;

static ssize_t f_send(void *opaque, int sock, const void *buf, size_t len,
                      int fd)
{
    FEnv *e = opaque;
    FChan *c = g_hash_table_lookup(e->by_sock, GINT_TO_POINTER(sock));
    size_t n;

    g_assert(c && len >= 1 && len <= IVSH_MSG_SIZE - c->len);
    if (c->error) {
        return -c->error;
    }
    if (!c->room) {
        return -EAGAIN;
    }
    if (fd >= 0) {
        g_assert(c->len == 0);
        c->dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        g_assert(c->dup >= 0);
    }
    n = c->chunk ? MIN(len, c->chunk) : len;
    memcpy(c->buf + c->len, buf, n);
    c->len += n;
    if (c->len == IVSH_MSG_SIZE) {
        Sent s = { ivsh_msg_decode(c->buf), c->dup };

        g_array_append_val(c->sent, s);
        c->len = 0;
        c->dup = -1;
        if (c->room > 0) {
            c->room--;
        }
    }
    return n;
}

static int f_eventfd(void *opaque)
{
    FEnv *e = opaque;
    int fd;

    if (!e->eventfds_left) {
        return -EMFILE;
    }
    if (e->eventfds_left > 0) {
        e->eventfds_left--;
    }
    fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    g_assert(fd >= 0);
    return fd;
}

static void f_removed(void *opaque, IvshServerPeer *p, IvshServerDrop why)
{
    FEnv *e = opaque;
    int sock = ivsh_server_peer_sock(p);
    FChan *c = g_hash_table_lookup(e->by_sock, GINT_TO_POINTER(sock));

    g_assert(c);
    c->peer = NULL;
    c->gone = true;
    g_hash_table_remove(e->by_sock, GINT_TO_POINTER(sock));
}

static const IvshServerOps f_ops = {
    .send = f_send,
    .new_eventfd = f_eventfd,
    .removed = f_removed,
};

/* The @sel-th (modulo) connected client, in order of arrival */
static FChan *live_chan(FEnv *e, uint8_t sel)
{
    unsigned i, n = g_hash_table_size(e->by_sock), k;
    FChan *c;

    if (!n) {
        return NULL;
    }
    k = sel % n;
    for (i = 0; i < e->chans->len; i++) {
        c = g_ptr_array_index(e->chans, i);
        if (c->peer && !k--) {
            return c;
        }
    }
    g_assert_not_reached();
}

/* Replay a client's stream into the decoder: everything is accepted */
static void check_stream(IvshServer *s, FChan *c, uint32_t vectors)
{
    IvshClient dec;
    IvshServerPeer *p = NULL;
    unsigned i, n = 0;

    ivsh_client_init(&dec, vectors, G_MAXUINT32);
    for (i = 0; i < c->sent->len; i++) {
        g_autoptr(GError) err = NULL;
        Sent *m = &g_array_index(c->sent, Sent, i);
        IvshEvent ev;

        if (ivsh_client_handle(&dec, m->msg, m->dup, &ev, &err) != IVSH_OK) {
            g_error("client stream, message %u (%" G_GINT64_FORMAT "): %s",
                    i, m->msg, err->message);
        }
        m->dup = -1;                        /* the decoder's now */
        if (ev.fd >= 0) {
            close(ev.fd);
        }
    }
    if (c->peer) {
        /* Connected and drained: it knows exactly the others */
        g_assert(ivsh_client_ready(&dec));
        g_assert(dec.own_id == ivsh_server_peer_id(c->peer));
        while ((p = ivsh_server_next_peer(s, p))) {
            gpointer cnt = g_hash_table_lookup(dec.peers, GUINT_TO_POINTER(
                                               ivsh_server_peer_id(p)));

            g_assert(GPOINTER_TO_UINT(cnt) == vectors);
            n += p != c->peer;
        }
        g_assert(ivsh_client_nr_peers(&dec) == n);
    }
    ivsh_client_destroy(&dec);
}

static void fchan_free(gpointer data)
{
    FChan *c = data;
    guint i;

    for (i = 0; i < c->sent->len; i++) {
        int fd = g_array_index(c->sent, Sent, i).dup;

        if (fd >= 0) {
            close(fd);
        }
    }
    if (c->dup >= 0) {
        close(c->dup);
    }
    g_array_free(c->sent, true);
    g_free(c);
}

static void fuzz_server(Input *in)
{
    FEnv e = { .eventfds_left = -1 };
    IvshServerConfig cfg = { .ops = &f_ops, .opaque = &e };
    IvshServer *s;
    IvshServerPeer *p;
    FChan *c;
    unsigned i, next_id = 0;
    int shm = memfd(4096, MFD_ALLOW_SEALING);

    cfg.vectors = 1 + next(in) % 4;
    cfg.max_peers = next(in) % 10;
    cfg.max_queue = next(in) % 24;
    cfg.shm_fd = shm;
    e.by_sock = g_hash_table_new(g_direct_hash, g_direct_equal);
    e.chans = g_ptr_array_new_with_free_func(fchan_free);
    s = ivsh_server_new(&cfg);

    while (more(in)) {
        uint8_t op = next(in), arg = next(in);

        switch (op % 10) {
        case 0:
        case 1:                             /* join */
            if (g_hash_table_size(e.by_sock) >= MAX_LIVE) {
                break;
            }
            c = g_new0(FChan, 1);
            c->sock = open("/dev/null", O_RDWR | O_CLOEXEC);
            g_assert(c->sock >= 0);
            c->sent = g_array_new(false, false, sizeof(Sent));
            c->room = arg % 4 == 3 ? -1 : arg % 4;
            c->chunk = (arg >> 2) % 3 == 2 ? 1 + (arg >> 4) % 8 : 0;
            c->dup = -1;
            g_ptr_array_add(e.chans, c);
            g_hash_table_insert(e.by_sock, GINT_TO_POINTER(c->sock), c);
            p = ivsh_server_add_peer(s, c->sock, NULL);
            if (!p) {
                g_hash_table_remove(e.by_sock, GINT_TO_POINTER(c->sock));
                g_assert(!fd_is_open(c->sock));
                break;
            }
            /* IDs come from a cursor that only moves forward */
            g_assert(ivsh_server_peer_id(p) == next_id);
            next_id++;
            /* Sending its set-up may already have failed */
            g_assert(ivsh_server_peer_alive(p) == !c->gone);
            if (!c->gone) {
                c->peer = p;
            }
            break;
        case 2:                             /* leave */
            c = live_chan(&e, arg);
            if (c) {
                ivsh_server_drop_peer(s, c->peer, arg & 1 ?
                                      IVSH_SERVER_LEFT :
                                      IVSH_SERVER_VIOLATION);
            }
            break;
        case 3:                             /* reads some, or stops */
            c = live_chan(&e, arg);
            if (c) {
                c->room = (arg >> 4) % 5 == 4 ? -1 : (arg >> 4) % 5;
                ivsh_server_flush_peer(s, c->peer);
            }
            break;
        case 4:                             /* reads in pieces */
            c = live_chan(&e, arg);
            if (c) {
                c->chunk = (arg >> 4) % 9;
            }
            break;
        case 5:                             /* vanishes or is throttled */
            c = live_chan(&e, arg);
            if (c) {
                c->error = arg & 0x10 ? ETOOMANYREFS : EPIPE;
                ivsh_server_flush_peer(s, c->peer);
            }
            break;
        case 6:
            ivsh_server_retry(s);
            break;
        case 7:
            ivsh_server_expire(s, arg & 1 ? 0 : G_MAXINT64);
            break;
        case 8:
            e.eventfds_left = arg % 3 == 2 ? -1 : arg % 8;
            break;
        default:
            ivsh_server_collect(s);
            break;
        }
        g_assert(ivsh_server_nr_peers(s) == g_hash_table_size(e.by_sock));
        g_assert(!cfg.max_peers || ivsh_server_nr_peers(s) <= cfg.max_peers);
    }

    /* Everybody reads everything now */
    for (i = 0; i < e.chans->len; i++) {
        c = g_ptr_array_index(e.chans, i);
        if (c->error == ETOOMANYREFS) {
            c->error = 0;
        }
        c->room = -1;
    }
    ivsh_server_retry(s);
    for (i = 0; i < e.chans->len; i++) {
        c = g_ptr_array_index(e.chans, i);
        if (c->peer) {
            ivsh_server_flush_peer(s, c->peer);
        }
    }
    g_assert(ivsh_server_queued(s) == 0);
    for (i = 0; i < e.chans->len; i++) {
        check_stream(s, g_ptr_array_index(e.chans, i), cfg.vectors);
    }
    ivsh_server_free(s);
    g_assert(g_hash_table_size(e.by_sock) == 0);
    g_hash_table_destroy(e.by_sock);
    g_ptr_array_free(e.chans, true);
    close(shm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned baseline;
    Input in = { .data = data, .size = size };

    if (!baseline) {
        baseline = count_fds();
    }
    if (next(&in) & 1) {
        fuzz_server(&in);
    } else {
        fuzz_decoder(&in);
    }
    g_assert(count_fds() == baseline);
    return 0;
}

#ifndef IVSH_LIBFUZZER

/* ---- the replay driver ---- */

static const uint8_t *crash_data;
static size_t crash_size;

static void on_abort(int sig)
{
    static const char msg[] = "fuzz-ivsh-proto: failing input saved to "
                              "fuzz-crash.bin\n";
    struct sigaction sa = { .sa_handler = SIG_DFL };
    int fd = open("fuzz-crash.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);

    if (fd >= 0) {
        if (write(fd, crash_data, crash_size) == (ssize_t)crash_size) {
            if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
                /* nothing else to do in a signal handler */
            }
        }
        close(fd);
    }
    sigaction(sig, &sa, NULL);
    raise(sig);
}

static void run_one(const uint8_t *data, size_t size)
{
    crash_data = data;
    crash_size = size;
    LLVMFuzzerTestOneInput(data, size);
}

/* A decoder record: the value, the fd kind, the reader's piece size */
static void rec(GByteArray *b, int64_t value, unsigned kind, unsigned chunk,
                uint8_t extra)
{
    uint8_t raw[IVSH_MSG_SIZE], byte;
    bool small = value >= -1 && value <= 14;

    byte = (small ? value + 1 : 24) << 3 | kind;
    g_byte_array_append(b, &byte, 1);
    if (!small) {
        ivsh_msg_encode(value, raw);
        g_byte_array_append(b, raw, sizeof(raw));
    }
    byte = chunk - 1;
    g_byte_array_append(b, &byte, 1);
    if (kind == 3 || kind == 4) {
        g_byte_array_append(b, &extra, 1);
    }
}

static GByteArray *start_input(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
    GByteArray *in = g_byte_array_new();
    uint8_t head[] = { a, b, c, d };

    g_byte_array_append(in, head, a & 1 ? 4 : 3);
    return in;
}

static void sop(GByteArray *b, uint8_t op, uint8_t arg)
{
    uint8_t pair[] = { op, arg };

    g_byte_array_append(b, pair, 2);
}

/* Seeds: inputs that reach the interesting states */
static GPtrArray *builtin_seeds(void)
{
    GPtrArray *seeds = g_ptr_array_new_with_free_func(
        (GDestroyNotify)g_byte_array_unref);
    GByteArray *b;
    unsigned i;

    /* Decoder: a good stream, messages in pieces */
    b = start_input(0, 2, 16, 0);
    rec(b, 0, 0, 8, 0);
    rec(b, 2, 0, 3, 0);
    rec(b, -1, 3, 1, 1);
    for (i = 0; i < 3; i++) {
        rec(b, 0, 1, 8, 0);
        rec(b, 1, 1, 5, 0);
        rec(b, 2, 1, 2, 0);
    }
    rec(b, 1, 0, 8, 0);
    rec(b, 1, 1, 8, 0);
    g_ptr_array_add(seeds, b);

    /* Decoder: an eventfd before the shared memory */
    b = start_input(0, 4, 8, 0);
    rec(b, 0, 0, 8, 0);
    rec(b, 3, 0, 8, 0);
    rec(b, 3, 1, 8, 0);
    rec(b, -1, 3, 8, 0);
    g_ptr_array_add(seeds, b);

    /* Decoder: shared memory of a bad size, read-only, write-sealed */
    for (i = 4; i <= 7; i++) {
        b = start_input(0, 1, 8, 0);
        rec(b, 0, 0, 8, 0);
        rec(b, 0, 0, 8, 0);
        rec(b, -1, i == 5 ? 2 : i, 8, 24);
        g_ptr_array_add(seeds, b);
    }

    /* Decoder: garbage after the set-up, a second shm, wrong fds */
    b = start_input(0, 1, 8, 0);
    rec(b, 0, 0, 8, 0);
    rec(b, 0, 0, 8, 0);
    rec(b, -1, 3, 8, 0);
    rec(b, -1, 3, 8, 0);
    rec(b, 1, 5, 8, 0);
    rec(b, 0, 0, 8, 0);
    rec(b, 9, 0, 8, 0);
    rec(b, 65536, 0, 8, 0);
    rec(b, 1, 1, 8, 0);
    g_ptr_array_add(seeds, b);

    /* Decoder: the fd budget refuses a peer */
    b = start_input(0, 1, 3, 0);
    rec(b, 0, 0, 8, 0);
    rec(b, 5, 0, 8, 0);
    rec(b, -1, 3, 8, 0);
    for (i = 1; i <= 4; i++) {
        rec(b, i, 1, 8, 0);
        rec(b, i, 1, 8, 0);
    }
    rec(b, 1, 0, 8, 0);
    rec(b, 4, 1, 8, 0);
    rec(b, 4, 0, 8, 0);
    rec(b, 4, 1, 8, 0);
    rec(b, 5, 0, 8, 0);
    g_ptr_array_add(seeds, b);

    /* Server: joins, a slow client, pieces, leaves, expiry */
    b = start_input(1, 2, 0, 2);
    sop(b, 0, 3);
    sop(b, 0, 3);
    sop(b, 0, 0);
    sop(b, 0, 0x0b);
    sop(b, 3, 0x10);
    sop(b, 2, 1);
    sop(b, 0, 3);
    sop(b, 4, 0x32);
    sop(b, 7, 1);
    sop(b, 0, 3);
    sop(b, 5, 0x13);
    sop(b, 0, 3);
    sop(b, 6, 0);
    sop(b, 5, 0x02);
    sop(b, 9, 0);
    sop(b, 8, 1);
    sop(b, 0, 3);
    sop(b, 8, 2);
    sop(b, 0, 3);
    g_ptr_array_add(seeds, b);

    /* Server: a client that knew many peers stops reading: overflow */
    b = start_input(1, 0, 0, 0);
    for (i = 0; i < 8; i++) {
        sop(b, 0, 3);
    }
    sop(b, 3, 0x00);
    for (i = 0; i < 7; i++) {
        sop(b, 2, 1);
    }
    g_ptr_array_add(seeds, b);

    /* Server: peer limit and eventfd exhaustion */
    b = start_input(1, 3, 3, 4);
    for (i = 0; i < 5; i++) {
        sop(b, 0, 3);
    }
    sop(b, 8, 3);
    sop(b, 2, 0);
    sop(b, 0, 3);
    sop(b, 0, 3);
    g_ptr_array_add(seeds, b);
    return seeds;
}

static void add_file(GPtrArray *inputs, const char *path)
{
    g_autoptr(GError) err = NULL;
    char *data;
    gsize len;
    GByteArray *b;

    if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
        GDir *dir = g_dir_open(path, 0, &err);
        GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
        const char *name;
        unsigned i;

        if (!dir) {
            g_printerr("fuzz-ivsh-proto: %s\n", err->message);
            exit(2);
        }
        while ((name = g_dir_read_name(dir))) {
            g_ptr_array_add(names, g_build_filename(path, name, NULL));
        }
        g_dir_close(dir);
        g_ptr_array_sort(names, (GCompareFunc)g_strcmp0);
        for (i = 0; i < names->len; i++) {
            add_file(inputs, *(char **)&names->pdata[i]);
        }
        g_ptr_array_free(names, true);
        return;
    }
    if (!g_file_get_contents(path, &data, &len, &err)) {
        g_printerr("fuzz-ivsh-proto: %s\n", err->message);
        exit(2);
    }
    b = g_byte_array_new_take((guint8 *)data, len);
    g_ptr_array_add(inputs, b);
}

static GByteArray *mutate(GRand *rand, GPtrArray *inputs)
{
    GByteArray *src = g_ptr_array_index(inputs,
        g_rand_int_range(rand, 0, inputs->len));
    GByteArray *b = g_byte_array_new();
    unsigned i, n = g_rand_int_range(rand, 1, 8), pos;
    uint8_t byte;

    g_byte_array_append(b, src->data, src->len);
    for (i = 0; i < n; i++) {
        pos = b->len ? g_rand_int_range(rand, 0, b->len) : 0;
        byte = g_rand_int_range(rand, 0, 256);
        switch (g_rand_int_range(rand, 0, 5)) {
        case 0:
            if (b->len) {
                b->data[pos] = byte;
            }
            break;
        case 1:
            if (b->len) {
                b->data[pos] ^= 1 << (byte % 8);
            }
            break;
        case 2:
            if (b->len < 512) {
                g_byte_array_set_size(b, b->len + 1);
                memmove(b->data + pos + 1, b->data + pos, b->len - pos - 1);
                b->data[pos] = byte;
            }
            break;
        case 3:
            if (b->len > 1) {
                g_byte_array_remove_index(b, pos);
            }
            break;
        default:
            {
                GByteArray *o = g_ptr_array_index(inputs,
                    g_rand_int_range(rand, 0, inputs->len));

                if (o->len > 1 && b->len + o->len < 512) {
                    g_byte_array_append(b, o->data + 1, o->len - 1);
                }
            }
            break;
        }
    }
    return b;
}

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) inputs = builtin_seeds();
    g_autofree char *corpus_out = NULL, *iters_str = NULL, *seed_str = NULL;
    const GOptionEntry entries[] = {
        { "iterations", 'n', 0, G_OPTION_ARG_STRING, &iters_str,
          "Also run N mutated inputs (default 0)", "N" },
        { "seed", 's', 0, G_OPTION_ARG_STRING, &seed_str,
          "Seed of the mutations (default 1)", "SEED" },
        { "write-corpus", 0, 0, G_OPTION_ARG_FILENAME, &corpus_out,
          "Write the built-in seeds to DIR and exit", "DIR" },
        { NULL }
    };
    g_autoptr(GOptionContext) ctx =
        g_option_context_new("[FILE|DIR...] - replay fuzz inputs");
    struct sigaction sa = { .sa_handler = on_abort };
    guint64 iters = 0, seed = 1, i;
    unsigned nr_seeds;
    GRand *rand;

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err) ||
        (iters_str && !g_ascii_string_to_unsigned(iters_str, 10, 0,
                                                  G_MAXUINT32, &iters,
                                                  &err)) ||
        (seed_str && !g_ascii_string_to_unsigned(seed_str, 10, 0,
                                                 G_MAXUINT32, &seed, &err))) {
        g_printerr("fuzz-ivsh-proto: %s\n", err->message);
        return 2;
    }
    if (corpus_out) {
        g_mkdir_with_parents(corpus_out, 0755);
        for (i = 0; i < inputs->len; i++) {
            GByteArray *b = g_ptr_array_index(inputs, i);
            g_autofree char *name = g_strdup_printf("%s/seed-%02u", corpus_out,
                                                    (unsigned)i);

            if (!g_file_set_contents(name, (char *)b->data, b->len, &err)) {
                g_printerr("fuzz-ivsh-proto: %s\n", err->message);
                return 1;
            }
        }
        return 0;
    }
    for (i = 1; i < (guint64)argc; i++) {
        add_file(inputs, argv[i]);
    }
    sigaction(SIGABRT, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);

    nr_seeds = inputs->len;
    for (i = 0; i < nr_seeds; i++) {
        GByteArray *b = g_ptr_array_index(inputs, i);

        run_one(b->data, b->len);
    }
    rand = g_rand_new_with_seed(seed);
    for (i = 0; i < iters; i++) {
        GByteArray *b = mutate(rand, inputs);

        run_one(b->data, b->len);
        /* Keep some of them as parents, as a fuzzer keeps new inputs */
        if (inputs->len < 256 && g_rand_int_range(rand, 0, 8) == 0) {
            g_ptr_array_add(inputs, b);
        } else {
            g_byte_array_unref(b);
        }
    }
    g_rand_free(rand);
    printf("fuzz-ivsh-proto: %u inputs replayed, %" G_GUINT64_FORMAT
           " mutated inputs run (seed %" G_GUINT64_FORMAT "), no failure\n",
           nr_seeds, iters, seed);
    return 0;
}

#endif
