/*
 * ivsh-stress: many ivshmem clients in one process, for load tests and
 * the join-time benchmark
 *
 *   ivsh-stress -S PATH -n VECTORS --clients N [--timeout MS]
 *       N clients connect at once to an empty server; every one must
 *       get a distinct ID in 0..N-1 and all N-1 others with VECTORS
 *       eventfds each.  Then client i rings client i+1 (mod N) on
 *       vector i (mod VECTORS), and every client must see its ring.
 *       Then the even IDs leave, and the odd ones must be told; then
 *       the odd ones leave.  Prints "PASS name detail" or "FAIL name
 *       detail" per phase; exit status 1 if any failed.
 *
 *   ivsh-stress -S PATH -n VECTORS --load N --silent S --joins K
 *       Abuse: N clients that read and S that never read connect
 *       (interleaved); once the N have their set-up, K more clients join
 *       one at a time.  Prints each phase, the join times of the K
 *       (max, median, in ms) as "JOINS K MAX MEDIAN"; fails if a client
 *       that reads is dropped or a join does not complete in time.  With
 *       --hold, everybody stays connected until stdin ends.
 *
 *   ivsh-stress -S PATH -n VECTORS --bench 16,64,256 [--repeat R]
 *       Clients join one at a time, each after the previous join is
 *       complete.  The N-th client joins R times (leaving in between);
 *       prints "BENCH N JOIN ALL JOIN_MIN JOIN_MAX" (ms, medians): the
 *       time from connect() until the N-th client has its own eventfds
 *       (its set-up is complete), and until every other client has its
 *       eventfds too; or "BENCH N FAIL reason".
 *
 * Every message is checked against the protocol's rules, so a server
 * that breaks them (bad order, missing or extra eventfds, unknown
 * disconnects) fails the run.  Only the eventfds the test rings are
 * kept (and checked to be eventfds); the others are closed as they
 * arrive.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "hw/misc/ivsh-regs.h"
#include "hw/misc/ivsh-proto.h"
#include "ivsh-io.h"

typedef struct Conn {
    int sock;
    unsigned state;             /* 0 version, 1 ID, 2 shm, 3 running */
    IvshRecv rx;
    int id;                     /* -1 until known */
    int target;                 /* peer we ring (-1: none) */
    int own_fd;                 /* our vector the previous peer rings */
    int target_fd;              /* the target's vector we ring */
    unsigned nr_own;            /* own eventfds received */
    GHashTable *counts;         /* peer ID -> eventfds received */
    unsigned full_peers;        /* other peers with all their eventfds */
    unsigned gone;              /* disconnects seen */
    int64_t t_start;
    int64_t t_ready;
    bool eof;
    char *error;
} Conn;

static const char *socket_path;
static unsigned vectors;
static int64_t timeout_ms = 60000;
static int epfd;

static int64_t now_us(void)
{
    return g_get_monotonic_time();
}

static void conn_fail(Conn *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void conn_fail(Conn *c, const char *fmt, ...)
{
    va_list ap;

    if (!c->error) {
        va_start(ap, fmt);
        c->error = g_strdup_vprintf(fmt, ap);
        va_end(ap);
    }
}

static Conn *conn_new(bool keep_target, GError **errp)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct epoll_event ev = { .events = EPOLLIN };
    Conn *c = g_new0(Conn, 1);

    ivsh_recv_init(&c->rx);
    c->id = -1;
    c->target = keep_target ? -2 : -1;
    c->own_fd = c->target_fd = -1;
    c->counts = g_hash_table_new(g_direct_hash, g_direct_equal);
    c->t_start = now_us();
    g_strlcpy(sun.sun_path, socket_path, sizeof(sun.sun_path));
    /* Blocking: a full listen backlog makes a non-blocking one fail */
    c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->sock < 0 ||
        connect(c->sock, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot connect to %s: %s", socket_path,
                    g_strerror(errno));
        if (c->sock >= 0) {
            close(c->sock);
        }
        c->sock = -1;
        return c;
    }
    fcntl(c->sock, F_SETFL, O_NONBLOCK);
    ev.data.ptr = c;
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->sock, &ev);
    return c;
}

static void conn_close_fds(Conn *c)
{
    if (c->own_fd >= 0) {
        close(c->own_fd);
    }
    if (c->target_fd >= 0) {
        close(c->target_fd);
    }
    c->own_fd = c->target_fd = -1;
}

static void conn_free(Conn *c)
{
    if (c->sock >= 0) {
        close(c->sock);
    }
    ivsh_recv_reset(&c->rx);
    conn_close_fds(c);
    g_hash_table_destroy(c->counts);
    g_free(c->error);
    g_free(c);
}

/*
 * Check one message against what the protocol allows at this point.
 * This is a stricter, leaner copy of IvshClient's rules (anything the
 * decoder would drop is an error here), without its per-fd eventfd
 * check: at 256 x 64 that readlink() is half the cost of the run, so
 * only the eventfds the test keeps are checked.
 */
static void handle(Conn *c, int64_t msg, int fd, unsigned nr_clients)
{
    gpointer key = GUINT_TO_POINTER((unsigned)msg);
    unsigned n, vector;

    switch (c->state) {
    case 0:
        if (msg != IVSH_PROTOCOL_VERSION || fd >= 0) {
            conn_fail(c, "bad version message %" PRId64, msg);
            break;
        }
        c->state++;
        break;
    case 1:
        if (msg < 0 || msg > IVSH_MAX_PEER_ID || fd >= 0) {
            conn_fail(c, "bad ID message %" PRId64, msg);
            break;
        }
        c->id = msg;
        if (c->target == -2) {
            c->target = (c->id + 1) % nr_clients;
        }
        c->state++;
        break;
    case 2:
        if (msg != IVSH_MSG_SHM || fd < 0) {
            conn_fail(c, "client %d: message %" PRId64 " where the shared "
                      "memory was expected", c->id, msg);
            break;
        }
        c->state++;
        break;
    default:
        if (msg < 0 || msg > IVSH_MAX_PEER_ID) {
            conn_fail(c, "client %d: bad message %" PRId64, c->id, msg);
            break;
        }
        n = GPOINTER_TO_UINT(g_hash_table_lookup(c->counts, key));
        if (fd < 0) {
            if (msg == c->id || !n) {
                conn_fail(c, "client %d: disconnect of %s peer %" PRId64,
                          c->id, msg == c->id ? "its own" : "unknown", msg);
                break;
            }
            if (n == vectors) {
                c->full_peers--;
            }
            g_hash_table_remove(c->counts, key);
            c->gone++;
            break;
        }
        if (n >= vectors) {
            conn_fail(c, "client %d: more than %u eventfds for peer %"
                      PRId64, c->id, vectors, msg);
            break;
        }
        vector = n++;
        g_hash_table_insert(c->counts, key, GUINT_TO_POINTER(n));
        if (msg == c->id) {
            c->nr_own++;
            if (c->nr_own == vectors) {
                c->t_ready = now_us();
            }
        } else if (n == vectors) {
            c->full_peers++;
        }
        if (c->target >= 0 && msg == c->id &&
            vector == ((c->id + nr_clients - 1) % nr_clients) % vectors) {
            c->own_fd = fd;
        } else if (c->target >= 0 && msg == c->target &&
                   vector == c->id % vectors) {
            c->target_fd = fd;
        } else {
            close(fd);
            return;
        }
        if (!ivsh_fd_is_eventfd(fd)) {
            conn_fail(c, "client %d: peer %" PRId64 " vector %u is not an "
                      "eventfd", c->id, msg, vector);
        }
        return;
    }
    if (fd >= 0) {
        close(fd);
    }
}

/* Read the messages a readable connection has, without blocking */
static void conn_read(Conn *c, unsigned nr_clients)
{
    int64_t msg;
    int fd, r;

    while ((r = ivsh_msg_recv(c->sock, &c->rx, &msg, &fd,
                              MSG_DONTWAIT)) > 0) {
        if (c->rx.extra_fds) {
            conn_fail(c, "client %d: two fds for one message", c->id);
        }
        if (c->rx.msg_lost) {
            conn_fail(c, "client %d: fds lost (out of fds?)", c->id);
        }
        handle(c, msg, fd, nr_clients);
    }
    if (r != -EAGAIN) {
        if (r < 0 && r != -EPIPE && r != -ECONNRESET) {
            conn_fail(c, "client %d: recvmsg: %s", c->id, g_strerror(-r));
        }
        c->eof = true;
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->sock, NULL);
    }
}

/* Run the event loop until @done says so or the deadline passes */
static bool loop_until(bool (*done)(gpointer), gpointer opaque,
                       int64_t deadline_us, unsigned nr_clients)
{
    struct epoll_event events[256];
    int i, n, ms;

    while (!done(opaque)) {
        ms = (deadline_us - now_us()) / 1000;
        if (ms <= 0) {
            return false;
        }
        n = epoll_wait(epfd, events, G_N_ELEMENTS(events), MIN(ms, 1000));
        for (i = 0; i < n; i++) {
            conn_read(events[i].data.ptr, nr_clients);
        }
    }
    return true;
}

typedef struct Group {
    GPtrArray *conns;
    unsigned want_peers;        /* complete peers each should see */
    unsigned want_gone;         /* disconnects each should have seen */
    unsigned first;             /* only conns from here ... */
    unsigned step;              /* ... with this stride */
    bool exact;                 /* exactly want_peers, no more */
} Group;

static const char *group_error(Group *g)
{
    unsigned i;

    for (i = g->first; i < g->conns->len; i += g->step) {
        Conn *c = g_ptr_array_index(g->conns, i);

        if (c->error) {
            return c->error;
        }
        if (c->eof) {
            return "the server closed a connection";
        }
    }
    return NULL;
}

static bool group_ready(gpointer opaque)
{
    Group *g = opaque;
    unsigned i;

    if (group_error(g)) {
        return true;
    }
    for (i = g->first; i < g->conns->len; i += g->step) {
        Conn *c = g_ptr_array_index(g->conns, i);

        if (c->nr_own < vectors || c->full_peers < g->want_peers ||
            (g->exact && c->full_peers != g->want_peers) ||
            c->gone < g->want_gone) {
            return false;
        }
    }
    return true;
}

static gint cmp_id(gconstpointer a, gconstpointer b)
{
    const Conn *x = *(Conn * const *)a, *y = *(Conn * const *)b;

    return x->id - y->id;
}

static void report(bool ok, const char *name, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

static void report(bool ok, const char *name, const char *fmt, ...)
{
    g_autofree char *detail = NULL;
    va_list ap;

    va_start(ap, fmt);
    detail = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    printf("%s %s %s\n", ok ? "PASS" : "FAIL", name, detail);
    fflush(stdout);
}

/* Wait until every conn's ring arrived */
static bool rings_arrived(gpointer opaque)
{
    GPtrArray *conns = opaque;
    unsigned i, n = conns->len;
    uint64_t v;

    for (i = 0; i < n; i++) {
        Conn *c = g_ptr_array_index(conns, i);

        if (c->t_ready < 0) {
            continue;
        }
        if (read(c->own_fd, &v, sizeof(v)) == sizeof(v) && v) {
            c->t_ready = -1;            /* reused as "rung" */
        } else {
            return false;
        }
    }
    return true;
}

static int stress(unsigned nr)
{
    g_autoptr(GPtrArray) conns = g_ptr_array_new_with_free_func(
        (GDestroyNotify)conn_free);
    g_autoptr(GError) err = NULL;
    Group g = { 0 };
    int64_t t0, t1;
    unsigned i, failures = 0;
    uint64_t one = 1;

    /* Connect all at once */
    t0 = now_us();
    for (i = 0; i < nr; i++) {
        Conn *c = conn_new(true, &err);

        g_ptr_array_add(conns, c);
        if (c->sock < 0) {
            report(false, "connect", "client %u: %s", i, err->message);
            return 1;
        }
    }
    g.conns = conns;
    g.want_peers = nr - 1;
    g.step = 1;
    if (!loop_until(group_ready, &g, t0 + timeout_ms * 1000, nr) ||
        group_error(&g)) {
        report(false, "connect", "%u clients x %u vectors: %s", nr, vectors,
               group_error(&g) ? group_error(&g) : "timeout");
        return 1;
    }
    t1 = now_us();
    report(true, "connect", "%u clients x %u vectors ready in %" PRId64
           " ms", nr, vectors, (t1 - t0) / 1000);

    /* IDs: 0..N-1, each once (a new server counts from 0) */
    g_ptr_array_sort(conns, cmp_id);
    for (i = 0; i < nr; i++) {
        Conn *c = g_ptr_array_index(conns, i);

        if (c->id != (int)i) {
            report(false, "ids", "sorted client %u has ID %d", i, c->id);
            return 1;
        }
    }
    report(true, "ids", "0..%u, each once", nr - 1);

    /* Client i rings client i+1 on vector i */
    t0 = now_us();
    for (i = 0; i < nr; i++) {
        Conn *c = g_ptr_array_index(conns, i);

        if (c->target_fd < 0 || c->own_fd < 0 ||
            write(c->target_fd, &one, 8) != 8) {
            report(false, "ring", "client %u cannot ring %d", i, c->target);
            return 1;
        }
    }
    if (!loop_until(rings_arrived, conns, t0 + timeout_ms * 1000, nr)) {
        report(false, "ring", "not every ring arrived");
        failures++;
    } else {
        report(true, "ring", "%u rings delivered in %" PRId64 " ms", nr,
               (now_us() - t0) / 1000);
    }

    /* The even IDs leave; the odd ones must be told */
    t0 = now_us();
    for (i = 0; i < nr; i += 2) {
        Conn *c = g_ptr_array_index(conns, i);

        epoll_ctl(epfd, EPOLL_CTL_DEL, c->sock, NULL);
        close(c->sock);
        c->sock = -1;
        conn_close_fds(c);
    }
    if (nr > 1) {
        g.first = 1;
        g.step = 2;
        g.want_gone = (nr + 1) / 2;
        g.want_peers = 0;
        if (!loop_until(group_ready, &g, t0 + timeout_ms * 1000, nr) ||
            group_error(&g)) {
            report(false, "leave", "%s", group_error(&g) ?
                   group_error(&g) : "timeout waiting for disconnects");
            return 1;
        }
        for (i = 1; i < nr; i += 2) {
            Conn *c = g_ptr_array_index(conns, i);

            if (c->full_peers != nr / 2 - 1) {
                report(false, "leave", "client %u sees %u peers, not %u",
                       i, c->full_peers, nr / 2 - 1);
                return 1;
            }
        }
    }
    report(true, "leave", "%u disconnects seen by %u clients in %" PRId64
           " ms", (nr + 1) / 2, nr / 2, (now_us() - t0) / 1000);
    return failures ? 1 : 0;
}

/* Every reading client of @g has its own eventfds (its set-up is done) */
static bool group_setup_done(gpointer opaque)
{
    Group *g = opaque;
    unsigned i;

    if (group_error(g)) {
        return true;
    }
    for (i = 0; i < g->conns->len; i++) {
        Conn *c = g_ptr_array_index(g->conns, i);

        if (c->nr_own < vectors) {
            return false;
        }
    }
    return true;
}

static int cmp_double(gconstpointer a, gconstpointer b);

static int load(unsigned nr, unsigned silent, unsigned joins, bool hold)
{
    g_autoptr(GPtrArray) conns = g_ptr_array_new_with_free_func(
        (GDestroyNotify)conn_free);
    g_autoptr(GArray) quiet = g_array_new(false, false, sizeof(int));
    g_autofree double *t = g_new0(double, MAX(joins, 1));
    g_autoptr(GError) err = NULL;
    Group g = { .conns = conns, .step = 1 };
    unsigned i, every = silent ? (nr + silent) / silent : 0, k;
    int64_t t0 = now_us();
    int fd;

    for (i = 0, k = 0; i < nr + silent; i++) {
        if (every && i % every == every - 1 && quiet->len < silent) {
            struct sockaddr_un sun = { .sun_family = AF_UNIX };

            g_strlcpy(sun.sun_path, socket_path, sizeof(sun.sun_path));
            fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0 || connect(fd, (struct sockaddr *)&sun,
                                  sizeof(sun)) < 0) {
                report(false, "load", "silent client %u: %s", quiet->len,
                       g_strerror(errno));
                return 1;
            }
            g_array_append_val(quiet, fd);
        } else if (k < nr) {
            Conn *c = conn_new(false, &err);

            g_ptr_array_add(conns, c);
            k++;
            if (c->sock < 0) {
                report(false, "load", "client %u: %s", k, err->message);
                return 1;
            }
        }
        if (i % 32 == 31) {
            /* Read what has come so far, so that the queues stay short */
            loop_until(group_setup_done, &g, now_us() + 1000, 0);
        }
    }
    if (!loop_until(group_setup_done, &g, now_us() + timeout_ms * 1000, 0) ||
        group_error(&g)) {
        report(false, "load", "%u clients: %s", nr,
               group_error(&g) ? group_error(&g) : "set-ups not complete");
        return 1;
    }
    report(true, "load", "%u reading and %u silent clients connected in %"
           PRId64 " ms", nr, quiet->len, (now_us() - t0) / 1000);
    printf("LOADED\n");
    fflush(stdout);

    for (i = 0; i < joins; i++) {
        int64_t t1 = now_us();
        Conn *c = conn_new(false, &err);

        g_ptr_array_add(conns, c);
        if (c->sock < 0 ||
            !loop_until(group_setup_done, &g, t1 + timeout_ms * 1000, 0) ||
            group_error(&g)) {
            report(false, "joins", "join %u: %s", i, c->sock < 0 ?
                   err->message : group_error(&g) ? group_error(&g) :
                   "timeout");
            return 1;
        }
        t[i] = (c->t_ready - t1) / 1000.0;
    }
    if (joins) {
        double max = 0;

        for (i = 0; i < joins; i++) {
            max = MAX(max, t[i]);
        }
        qsort(t, joins, sizeof(double), cmp_double);
        report(true, "joins", "%u joins among %u peers: max %.1f ms, "
               "median %.1f ms", joins, conns->len + quiet->len, max,
               t[joins / 2]);
        printf("JOINS %u %.1f %.1f\n", joins, max, t[joins / 2]);
        fflush(stdout);
    }
    if (hold) {
        /* Stay connected (and reading) until stdin ends */
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
        char buf[64];

        epoll_ctl(epfd, EPOLL_CTL_ADD, STDIN_FILENO, &ev);
        while (!group_error(&g)) {
            struct epoll_event events[64];
            int r = epoll_wait(epfd, events, G_N_ELEMENTS(events), 1000);
            bool done = false;

            for (i = 0; i < (unsigned)MAX(r, 0); i++) {
                if (!events[i].data.ptr) {
                    done = read(STDIN_FILENO, buf, sizeof(buf)) <= 0;
                } else {
                    conn_read(events[i].data.ptr, 0);
                }
            }
            if (done) {
                break;
            }
        }
    }
    /* The reading clients are still there */
    loop_until(group_setup_done, &g, now_us() + 100 * 1000, 0);
    if (group_error(&g)) {
        report(false, "kept", "%s", group_error(&g));
        return 1;
    }
    report(true, "kept", "all %u reading clients still connected",
           conns->len);
    for (i = 0; i < quiet->len; i++) {
        close(g_array_index(quiet, int, i));
    }
    return 0;
}

/* Connect one more peer and wait until everybody has everybody */
static bool join_one(Group *g, double *t_join, double *t_all,
                     const char **why)
{
    g_autoptr(GError) err = NULL;
    int64_t t0 = now_us();
    Conn *c = conn_new(false, &err);

    g_ptr_array_add(g->conns, c);
    if (c->sock < 0) {
        *why = "cannot connect";
        return false;
    }
    g->want_peers = g->conns->len - 1;
    g->exact = true;
    if (!loop_until(group_ready, g, t0 + timeout_ms * 1000, 0) ||
        group_error(g)) {
        *why = group_error(g) ? group_error(g) : "timeout (messages lost?)";
        return false;
    }
    *t_join = (c->t_ready - t0) / 1000.0;
    *t_all = (now_us() - t0) / 1000.0;
    return true;
}

/* The last peer leaves; wait until the others know */
static bool leave_one(Group *g, const char **why)
{
    g_ptr_array_remove_index(g->conns, g->conns->len - 1);
    g->want_peers = g->conns->len - 1;
    g->exact = true;
    if (!loop_until(group_ready, g, now_us() + timeout_ms * 1000, 0) ||
        group_error(g)) {
        *why = group_error(g) ? group_error(g) : "timeout";
        return false;
    }
    return true;
}

static int cmp_double(gconstpointer a, gconstpointer b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static int bench(const char *list, unsigned repeat)
{
    g_autoptr(GPtrArray) conns = g_ptr_array_new_with_free_func(
        (GDestroyNotify)conn_free);
    g_auto(GStrv) items = g_strsplit(list, ",", -1);
    g_autofree double *joins = g_new(double, repeat);
    g_autofree double *alls = g_new(double, repeat);
    GArray *want = g_array_new(false, false, sizeof(guint64));
    guint64 n, max = 0;
    Group g = { .conns = conns, .step = 1 };
    const char *why = NULL;
    unsigned i, k, r;
    int rc = 0;

    for (i = 0; items[i]; i++) {
        if (!g_ascii_string_to_unsigned(items[i], 10, 1, 65536, &n, NULL)) {
            fprintf(stderr, "ivsh-stress: bad --bench list '%s'\n", list);
            return 2;
        }
        g_array_append_val(want, n);
        max = MAX(max, n);
    }
    for (k = 1; k <= max && !why; k++) {
        bool listed = false;

        for (i = 0; i < want->len; i++) {
            listed |= g_array_index(want, guint64, i) == k;
        }
        /* The k-th peer joins (and, to measure, leaves and rejoins) */
        for (r = 0; r < (listed ? repeat : 1); r++) {
            if ((r && !leave_one(&g, &why)) ||
                !join_one(&g, &joins[r], &alls[r], &why)) {
                break;
            }
        }
        if (why) {
            for (i = 0; i < want->len; i++) {
                if (g_array_index(want, guint64, i) >= k) {
                    printf("BENCH %u FAIL at peer %u: %s\n",
                           (unsigned)g_array_index(want, guint64, i), k, why);
                }
            }
            rc = 1;
        } else if (listed) {
            qsort(joins, repeat, sizeof(double), cmp_double);
            qsort(alls, repeat, sizeof(double), cmp_double);
            printf("BENCH %u %.2f %.2f %.2f %.2f\n", k, joins[repeat / 2],
                   alls[repeat / 2], joins[0], joins[repeat - 1]);
            fflush(stdout);
        }
    }
    g_array_free(want, true);
    return rc;
}

static void raise_nofile(rlim_t need)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        return;
    }
    if (rl.rlim_max < need) {
        struct rlimit want = { need, need };

        if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
            return;
        }
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

int main(int argc, char **argv)
{
    g_autofree char *vec = NULL, *clients = NULL, *bench_list = NULL;
    g_autofree char *timeout = NULL, *path = NULL, *repeat = NULL;
    g_autofree char *load_n = NULL, *silent = NULL, *joins = NULL;
    gboolean hold = false;
    g_autoptr(GError) err = NULL;
    const GOptionEntry entries[] = {
        { "socket", 'S', 0, G_OPTION_ARG_FILENAME, &path,
          "Server socket", "PATH" },
        { "vectors", 'n', 0, G_OPTION_ARG_STRING, &vec,
          "The server's vectors per peer", "N" },
        { "clients", 'c', 0, G_OPTION_ARG_STRING, &clients,
          "Stress test with N clients", "N" },
        { "bench", 'b', 0, G_OPTION_ARG_STRING, &bench_list,
          "Join times of the N-th peers, e.g. 16,64,256", "LIST" },
        { "repeat", 'r', 0, G_OPTION_ARG_STRING, &repeat,
          "Bench: measure each N-th join this often (default 5)", "R" },
        { "load", 0, 0, G_OPTION_ARG_STRING, &load_n,
          "Abuse test with N reading clients", "N" },
        { "silent", 0, 0, G_OPTION_ARG_STRING, &silent,
          "Load: and S clients that never read", "S" },
        { "joins", 0, 0, G_OPTION_ARG_STRING, &joins,
          "Load: then K clients join one at a time", "K" },
        { "hold", 0, 0, G_OPTION_ARG_NONE, &hold,
          "Load: then stay connected until stdin ends", NULL },
        { "timeout", 't', 0, G_OPTION_ARG_STRING, &timeout,
          "Deadline per phase (default 60000)", "MS" },
        { NULL }
    };
    g_autoptr(GOptionContext) ctx =
        g_option_context_new("- ivshmem server load test");
    guint64 v, nr = 0, t = 0, rep = 5, ln = 0, sl = 0, jn = 0;

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "ivsh-stress: %s\n", err->message);
        return 2;
    }
    if ((load_n &&
         (!g_ascii_string_to_unsigned(load_n, 10, 1, 65536, &ln, NULL) ||
          (silent && !g_ascii_string_to_unsigned(silent, 10, 0, 65536, &sl,
                                                 NULL)) ||
          (joins && !g_ascii_string_to_unsigned(joins, 10, 0, 65536, &jn,
                                                NULL)))) ||
        !path || !vec || (!!clients + !!bench_list + !!load_n != 1) ||
        !g_ascii_string_to_unsigned(vec, 10, 1, IVSH_MAX_VECTORS, &v,
                                    NULL) ||
        (clients && !g_ascii_string_to_unsigned(clients, 10, 1, 65536, &nr,
                                                NULL)) ||
        (timeout && !g_ascii_string_to_unsigned(timeout, 10, 1, G_MAXINT32,
                                                &t, NULL)) ||
        (repeat && !g_ascii_string_to_unsigned(repeat, 10, 1, 1000, &rep,
                                               NULL))) {
        fprintf(stderr, "usage: ivsh-stress -S PATH -n VECTORS "
                "(--clients N | --bench LIST [--repeat R] | --load N "
                "[--silent S] [--joins K]) [--timeout MS]\n");
        return 2;
    }
    socket_path = path;
    vectors = v;
    if (t) {
        timeout_ms = t;
    }
    raise_nofile(MAX(nr * (2 * vectors + 2) + 4096, 1 << 17));
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (load_n) {
        return load(ln, sl, jn, hold);
    }
    return clients ? stress(nr) : bench(bench_list, rep);
}
