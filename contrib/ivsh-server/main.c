/*
 * ivsh-server: ivshmem server for QEMU's ivshmem-doorbell devices
 *
 * Speaks protocol v0 (docs/specs/ivshmem-spec.rst, "Server protocol")
 * to QEMU's ivshmem-doorbell, QEMU's contrib ivshmem-client and
 * ivsh-client.  The protocol logic (peer table, eventfds, fan-out, send
 * queues) is in contrib/ivsh-lib/server-core.c; this file is the
 * program around it: options, shared memory, the listening socket,
 * an epoll loop, signals and the status socket.  docs/tools/ivsh-server.rst
 * is the manual.
 *
 * Hazards, and what is done about them:
 * - A client that does not read must not stall the others: sockets are
 *   non-blocking and each client has a bounded queue (the core).
 * - A client may send anything: one byte is a protocol violation and
 *   the client is dropped; nothing from a client is ever parsed.
 * - Running out of fds must not take the server down: RLIMIT_NOFILE is
 *   raised at start-up, a spare fd lets accept() refuse a client when
 *   the limit is reached, and a client whose eventfds cannot be created
 *   is refused while the others carry on.
 * - A second server on the same path would steal the socket from a
 *   running one: a path that a live server listens on is refused, a
 *   stale one (nobody listening) is replaced, anything else is left
 *   alone.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <linux/sockios.h>
#include "hw/misc/ivsh-regs.h"
#include "ivsh-io.h"
#include "server-core.h"
#include "ivsh-server.h"

#define MAX_VECTORS 1024
#define MAX_STATUS_CONN 16
#define SHUTDOWN_DRAIN_MS 2000
#define RETRY_MS 10
#define EXPIRE_MS 1000
#define DEFAULT_STALL_TIMEOUT 60
#define DEFAULT_RECLAIM_TIMEOUT 60
#define SD_LISTEN_FDS_START 3
#define FDSTORE_SHM "ivsh-shm"
#define FDSTORE_EVENTFD "ivsh-ev."       /* + "ID.VECTOR" */
/* Messages in flight per client, at least (see choose_sndbuf()) */
#define MIN_WINDOW 8
/* Fds kept for the server itself: epoll, signalfd, sockets, readers */
#define RESERVED_FDS 32

IvshLogLevel ivsh_log_level = IVSH_LOG_INFO;

void ivsh_log(IvshLogLevel level, const char *fmt, ...)
{
    static const char *const names[] = {
        [IVSH_LOG_ERROR] = "error",
        [IVSH_LOG_WARNING] = "warning",
        [IVSH_LOG_INFO] = "info",
        [IVSH_LOG_DEBUG] = "debug",
    };
    g_autofree char *msg = NULL;
    va_list ap;

    if (level > ivsh_log_level) {
        return;
    }
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fprintf(stderr, "ivsh-server: %s: %s\n", names[level], msg);
}

typedef enum WatchKind {
    WATCH_LISTEN,
    WATCH_STATUS_LISTEN,
    WATCH_SIGNAL,
    WATCH_PEER,
    WATCH_STATUS,
} WatchKind;

/* What an epoll event is about */
typedef struct Watch {
    WatchKind kind;
    int fd;
    IvshServerPeer *peer;       /* WATCH_PEER */
    GString *out;               /* WATCH_STATUS: the document */
    size_t done;                /* WATCH_STATUS: bytes written */
    bool dead;
    bool broken;                /* could not be added to the epoll set */
} Watch;

typedef struct Options {
    char *socket;
    char *mode;
    char *group;
    char *size;
    char *shm;
    char *file;
    char *pidfile;
    char *status_socket;
    int vectors;
    int max_peers;
    int max_queue;
    int stall_timeout;
    char *state;
    int reclaim_timeout;
    int max_queued;
    gboolean verbose;
    gboolean quiet;
    gboolean version;
} Options;

typedef struct Server {
    Options opt;
    IvshShm shm;
    IvshServer *core;
    int epfd;
    Watch listen;
    Watch status_listen;
    Watch signal;
    char *socket_path;          /* unlinked at exit when set */
    dev_t socket_dev;
    ino_t socket_ino;
    char *status_path;
    dev_t status_dev;
    ino_t status_ino;
    bool activated;             /* systemd socket activation */
    int spare_fd;               /* closed to refuse a client at EMFILE */
    unsigned nr_status;
    GPtrArray *dead;            /* watches to free after this batch */
    bool quit;
    int exit_code;
    rlim_t nofile;
    unsigned window;            /* messages in flight per client */
    unsigned room;              /* peers that the fd limit allows */
    int fdstore_shm;            /* the memfd from systemd's fd store */
    /* --state: who had which ID, to give it back after a restart */
    int state_fd;               /* the journal, O_APPEND */
    unsigned state_lines;
    GHashTable *kept;           /* "pid:start" -> GQueue of kept IDs */
    GHashTable *owner;          /* ID -> "pid:start" (this run and kept) */
    int64_t reclaim_until;      /* kept IDs are released then (ms) */
    char *accepting;            /* identity of the client being added */
    /* systemd's fd store: eventfds kept across a restart */
    bool fdstore;               /* store eventfds (--state, NOTIFY_SOCKET) */
    GHashTable *stored;         /* ID -> int[vectors] from the last run */
    int *restore;               /* eventfds for the peer being added */
    unsigned restore_next;
} Server;

static void state_gone(Server *s, unsigned id);
static bool sd_notify_fd(const char *msg, int fd);
static void fdstore_forget(Server *s, unsigned id);

/* ---- event registration ---- */

static bool watch_add(Server *s, Watch *w, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = w };

    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, w->fd, &ev) < 0) {
        ivsh_log(IVSH_LOG_ERROR, "cannot watch fd %d: %s", w->fd,
                 g_strerror(errno));
        return false;
    }
    return true;
}

static void watch_kill(Server *s, Watch *w)
{
    w->dead = true;
    g_ptr_array_add(s->dead, w);
}

static Watch *peer_watch(Server *s, IvshServerPeer *p, bool out)
{
    Watch *w = ivsh_server_peer_data(p);

    if (!w) {
        w = g_new0(Watch, 1);
        w->kind = WATCH_PEER;
        w->fd = ivsh_server_peer_sock(p);
        w->peer = p;
        ivsh_server_peer_set_data(p, w);
        w->broken = !watch_add(s, w, EPOLLIN | (out ? EPOLLOUT : 0));
    }
    return w;
}

static void cb_want_write(void *opaque, IvshServerPeer *p, bool on)
{
    Server *s = opaque;
    Watch *w = ivsh_server_peer_data(p);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };

    if (on) {
        ivsh_log(IVSH_LOG_DEBUG, "peer %u: socket full, %zu messages queued",
                 ivsh_server_peer_id(p), ivsh_server_peer_queued(p));
    } else {
        ivsh_log(IVSH_LOG_DEBUG, "peer %u: queue sent",
                 ivsh_server_peer_id(p));
    }
    if (!w) {
        peer_watch(s, p, on);
        return;
    }
    if (on) {
        ev.events |= EPOLLOUT;
    }
    if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0) {
        ivsh_log(IVSH_LOG_ERROR, "cannot watch peer %u: %s",
                 ivsh_server_peer_id(p), g_strerror(errno));
    }
}

static void cb_removed(void *opaque, IvshServerPeer *p, IvshServerDrop why)
{
    Server *s = opaque;
    Watch *w = ivsh_server_peer_data(p);
    IvshLogLevel level = IVSH_LOG_INFO;

    if (why == IVSH_SERVER_VIOLATION || why == IVSH_SERVER_OVERFLOW ||
        why == IVSH_SERVER_STALLED) {
        level = IVSH_LOG_WARNING;
    } else if (why == IVSH_SERVER_SHUTDOWN) {
        level = IVSH_LOG_DEBUG;
    }
    ivsh_log(level, "peer %u %s (%u connected)", ivsh_server_peer_id(p),
             ivsh_server_drop_str(why), ivsh_server_nr_peers(s->core));
    if (why != IVSH_SERVER_SHUTDOWN) {
        state_gone(s, ivsh_server_peer_id(p));
        fdstore_forget(s, ivsh_server_peer_id(p));
    }
    if (w) {
        /* Closing the socket removes it from the epoll set */
        ivsh_server_peer_set_data(p, NULL);
        watch_kill(s, w);
    }
}

static void cb_assigned(void *opaque, IvshServerPeer *p, bool reused);

/* A peer's eventfds: those of the previous run when it comes back */
static int cb_new_eventfd(void *opaque)
{
    Server *s = opaque;
    int fd;

    if (s->restore && s->restore_next < (unsigned)s->opt.vectors) {
        fd = s->restore[s->restore_next];
        s->restore[s->restore_next++] = -1;
        return fd;
    }
    fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

static const IvshServerOps server_ops = {
    .want_write = cb_want_write,
    .removed = cb_removed,
    .assigned = cb_assigned,
    .new_eventfd = cb_new_eventfd,
};

/*
 * Peers' eventfds in systemd's fd store, one fd per name
 * "ivsh-ev.ID.VECTOR": a peer that comes back after a restart gets the
 * eventfds it had, so that the peers that cannot reconnect (QEMU 10.0's
 * device) and those that have not yet still reach it, and it them.
 */
static void fdstore_put(Server *s, IvshServerPeer *p)
{
    unsigned id = ivsh_server_peer_id(p);
    uint32_t v;

    for (v = 0; s->fdstore && v < (uint32_t)s->opt.vectors; v++) {
        g_autofree char *msg = g_strdup_printf(
            "FDSTORE=1\nFDNAME=" FDSTORE_EVENTFD "%u.%u\nFDPOLL=0", id, v);

        if (!sd_notify_fd(msg, ivsh_server_peer_eventfd(p, v))) {
            ivsh_log(IVSH_LOG_WARNING, "cannot put peer %u's eventfds "
                     "into systemd's fd store: %s", id, g_strerror(errno));
            return;
        }
    }
}

/* The eventfds of @id are no more: out of the store (and ours) */
static void fdstore_forget(Server *s, unsigned id)
{
    int *fds = s->stored ? g_hash_table_lookup(s->stored,
                                               GUINT_TO_POINTER(id)) : NULL;
    uint32_t v;

    for (v = 0; s->fdstore && v < (uint32_t)s->opt.vectors; v++) {
        g_autofree char *msg = g_strdup_printf(
            "FDSTOREREMOVE=1\nFDNAME=" FDSTORE_EVENTFD "%u.%u", id, v);

        sd_notify_fd(msg, -1);
    }
    for (v = 0; fds && v < (uint32_t)s->opt.vectors; v++) {
        if (fds[v] >= 0) {
            close(fds[v]);
        }
    }
    if (fds) {
        g_hash_table_remove(s->stored, GUINT_TO_POINTER(id));
    }
}

/* ---- status ---- */

static void json_string(GString *out, const char *str)
{
    const unsigned char *c;

    if (!str) {
        g_string_append(out, "null");
        return;
    }
    g_string_append_c(out, '"');
    for (c = (const unsigned char *)str; *c; c++) {
        if (*c == '"' || *c == '\\') {
            g_string_append_printf(out, "\\%c", *c);
        } else if (*c < 0x20) {
            g_string_append_printf(out, "\\u%04x", *c);
        } else {
            g_string_append_c(out, *c);
        }
    }
    g_string_append_c(out, '"');
}

static GString *status_json(Server *s)
{
    GString *out = g_string_new("{");
    IvshServerPeer *p = NULL;
    bool first = true;

    g_string_append_printf(out, "\"server\": \"ivsh-server\", "
                           "\"version\": \"%s\", \"protocol\": %d, "
                           "\"pid\": %d, \"socket\": ",
                           IVSH_SERVER_VERSION, IVSH_PROTOCOL_VERSION,
                           (int)getpid());
    json_string(out, s->opt.socket);
    g_string_append_printf(out, ", \"socket-activated\": %s, "
                           "\"vectors\": %u, \"max-peers\": %d, "
                           "\"memory\": {\"backing\": \"%s\", "
                           "\"size\": %" G_GUINT64_FORMAT ", \"name\": ",
                           s->activated ? "true" : "false",
                           ivsh_server_vectors(s->core), s->opt.max_peers,
                           ivsh_shm_kind_str(s->shm.kind), s->shm.size);
    json_string(out, s->shm.name);
    g_string_append_printf(out, ", \"sealed\": %s}, \"fd-limit\": %llu, "
                           "\"room\": %u, \"window\": %u, "
                           "\"next-id\": %u, \"kept-ids\": %u, "
                           "\"nr-peers\": %u, \"queued\": %zu, "
                           "\"peers\": [",
                           s->shm.sealed ? "true" : "false",
                           (unsigned long long)s->nofile, s->room, s->window,
                           ivsh_server_cursor(s->core),
                           s->opt.state ? g_hash_table_size(s->owner) -
                           ivsh_server_nr_peers(s->core) : 0,
                           ivsh_server_nr_peers(s->core),
                           ivsh_server_queued(s->core));
    while ((p = ivsh_server_next_peer(s->core, p))) {
        g_string_append_printf(out, "%s{\"id\": %u, \"vectors\": %u, "
                               "\"queued\": %zu}", first ? "" : ", ",
                               ivsh_server_peer_id(p),
                               ivsh_server_vectors(s->core),
                               ivsh_server_peer_queued(p));
        first = false;
    }
    g_string_append(out, "]}\n");
    return out;
}

static void status_write(Server *s, Watch *w)
{
    ssize_t n;

    while (w->done < w->out->len) {
        n = send(w->fd, w->out->str + w->done, w->out->len - w->done,
                 MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        if (n <= 0) {
            break;
        }
        w->done += n;
    }
    close(w->fd);
    g_string_free(w->out, true);
    w->out = NULL;
    s->nr_status--;
    watch_kill(s, w);
}

/*
 * Accept, then refuse, a connection when no fd is left for it, using
 * the spare fd; otherwise it would stay in the backlog and the listening
 * socket would report it again and again.
 */
static void refuse_one(Server *s, int listen_fd, const char *what)
{
    int fd;

    if (s->spare_fd >= 0) {
        close(s->spare_fd);
        s->spare_fd = -1;
    }
    fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        ivsh_log(IVSH_LOG_WARNING, "refused a %s: out of file "
                 "descriptors (limit %llu)", what,
                 (unsigned long long)s->nofile);
    }
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void status_accept(Server *s)
{
    Watch *w;
    int fd;

    fd = accept4(s->status_listen.fd, NULL, NULL,
                 SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
            refuse_one(s, s->status_listen.fd, "status reader");
        } else if (errno != EAGAIN && errno != EINTR) {
            ivsh_log(IVSH_LOG_WARNING, "status socket: accept: %s",
                     g_strerror(errno));
        }
        return;
    }
    if (s->nr_status >= MAX_STATUS_CONN) {
        ivsh_log(IVSH_LOG_WARNING, "status socket: too many readers");
        close(fd);
        return;
    }
    w = g_new0(Watch, 1);
    w->kind = WATCH_STATUS;
    w->fd = fd;
    w->out = status_json(s);
    s->nr_status++;
    if (!watch_add(s, w, EPOLLOUT)) {
        close(fd);
        g_string_free(w->out, true);
        g_free(w);
        s->nr_status--;
        return;
    }
    status_write(s, w);
}

/* ---- who had which ID: --state ---- */

/*
 * A client is the process at the other end of its socket: SO_PEERCRED's
 * pid and the process's start time (field 22 of /proc/PID/stat), so that
 * a recycled pid is a different client.  "PID:START", or NULL.
 */
static char *proc_start(pid_t pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/stat", (int)pid);
    g_autofree char *text = NULL;
    g_auto(GStrv) f = NULL;
    char *end;

    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        return NULL;
    }
    /* The command name may hold spaces and parentheses: skip past it */
    end = strrchr(text, ')');
    if (!end) {
        return NULL;
    }
    f = g_strsplit(g_strstrip(end + 1), " ", 0);
    /* f[0] is field 3 (the state); the start time is field 22 */
    return g_strv_length(f) > 19 ? g_strdup(f[19]) : NULL;
}

static char *peer_identity(int sock)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    g_autofree char *start = NULL;

    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
        cred.pid <= 0) {
        return NULL;
    }
    start = proc_start(cred.pid);
    return start ? g_strdup_printf("%d:%s", (int)cred.pid, start) : NULL;
}

/* Is the process of identity @who still there (the same one)? */
static bool identity_alive(const char *who)
{
    g_autofree char *start = NULL, *num = NULL;
    const char *colon = strchr(who, ':');
    guint64 pid;

    if (!colon) {
        return false;
    }
    num = g_strndup(who, colon - who);
    if (!g_ascii_string_to_unsigned(num, 10, 1, G_MAXINT, &pid, NULL)) {
        return false;
    }
    start = proc_start(pid);
    return start && !strcmp(start, colon + 1);
}

static char *shm_identity(int fd)
{
    struct stat st;

    if (fstat(fd, &st) < 0) {
        return g_strdup("unknown");
    }
    return g_strdup_printf("%llu:%llu", (unsigned long long)st.st_dev,
                           (unsigned long long)st.st_ino);
}

static void state_append(Server *s, const char *line)
{
    size_t len = strlen(line);

    if (s->state_fd < 0) {
        return;
    }
    /* One write per record: a crash leaves whole lines, or a torn last */
    if (write(s->state_fd, line, len) != (ssize_t)len) {
        ivsh_log(IVSH_LOG_WARNING, "cannot write the state file %s: %s",
                 s->opt.state, g_strerror(errno));
    }
    s->state_lines++;
}

static gint cmp_ids(gconstpointer a, gconstpointer b)
{
    return (gint)GPOINTER_TO_UINT(a) - (gint)GPOINTER_TO_UINT(b);
}

/* Rewrite the journal with what is true now, atomically (rename) */
static bool state_compact(Server *s, GError **errp)
{
    g_autoptr(GString) out = g_string_new("ivsh-server-state 1\n");
    g_autofree char *tmp = g_strconcat(s->opt.state, ".new", NULL);
    g_autofree char *shm = shm_identity(s->shm.fd);
    g_autoptr(GList) ids = g_hash_table_get_keys(s->owner);
    GList *l;
    int fd;

    g_string_append_printf(out, "vectors %d\ncursor %u\nshm %s\n",
                           s->opt.vectors, ivsh_server_cursor(s->core), shm);
    ids = g_list_sort(ids, cmp_ids);
    for (l = ids; l; l = l->next) {
        g_string_append_printf(out, "peer %u %s\n", GPOINTER_TO_UINT(l->data),
                               (char *)g_hash_table_lookup(s->owner,
                                                           l->data));
    }
    if (!g_file_set_contents_full(tmp, out->str, out->len,
                                  G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                  errp) ||
        rename(tmp, s->opt.state) < 0) {
        if (errp && !*errp) {
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                        "cannot replace %s: %s", s->opt.state,
                        g_strerror(errno));
        }
        unlink(tmp);
        return false;
    }
    fd = open(s->opt.state, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot open %s: %s", s->opt.state, g_strerror(errno));
        return false;
    }
    if (s->state_fd >= 0) {
        close(s->state_fd);
    }
    s->state_fd = fd;
    s->state_lines = 4 + g_hash_table_size(s->owner);
    return true;
}

static void state_maybe_compact(Server *s)
{
    g_autoptr(GError) err = NULL;

    if (s->state_fd >= 0 &&
        s->state_lines > 2 * g_hash_table_size(s->owner) + 256 &&
        !state_compact(s, &err)) {
        ivsh_log(IVSH_LOG_WARNING, "%s", err->message);
    }
}

/* The core gave @p its ID: write it down before it is sent */
static void cb_assigned(void *opaque, IvshServerPeer *p, bool reused)
{
    Server *s = opaque;
    unsigned id = ivsh_server_peer_id(p);
    g_autofree char *line = NULL;
    const char *who = s->accepting ? s->accepting : "unknown";

    if (reused) {
        ivsh_log(IVSH_LOG_WARNING, "peer ID %u is used again while peers "
                 "that saw it leave are connected: QEMU 10.0's own "
                 "ivshmem-doorbell corrupts its heap then", id);
    }
    g_hash_table_insert(s->owner, GUINT_TO_POINTER(id), g_strdup(who));
    line = g_strdup_printf("peer %u %s\ncursor %u\n", id, who,
                           ivsh_server_cursor(s->core));
    state_append(s, line);
    if (!s->restore) {
        fdstore_put(s, p);
    }
}

static void state_gone(Server *s, unsigned id)
{
    g_autofree char *line = NULL;

    if (!g_hash_table_remove(s->owner, GUINT_TO_POINTER(id))) {
        return;
    }
    line = g_strdup_printf("gone %u\n", id);
    state_append(s, line);
    state_maybe_compact(s);
}

/*
 * Read the journal of the previous run: the cursor, and the IDs that
 * were connected, kept for their processes for --reclaim-timeout.
 * Unknown or torn lines are ignored.
 */
static bool state_load(Server *s, GError **errp)
{
    g_autofree char *text = NULL, *shm = shm_identity(s->shm.fd);
    g_autofree char *old_shm = NULL;
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) lines = NULL;
    GPtrArray *order = g_ptr_array_new();
    guint64 v, vectors = s->opt.vectors, cursor = 0;
    unsigned i, kept = 0;
    bool have_cursor = false;

    if (!g_file_get_contents(s->opt.state, &text, NULL, &err)) {
        if (!g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
            g_propagate_error(errp, g_steal_pointer(&err));
            g_ptr_array_free(order, true);
            return false;
        }
        text = g_strdup("");
    }
    lines = g_strsplit(text, "\n", -1);
    for (i = 0; lines[i] && lines[i + 1]; i++) {   /* whole lines only */
        g_auto(GStrv) f = g_strsplit(lines[i], " ", 3);
        guint n = g_strv_length(f);

        if (n == 2 && !strcmp(f[0], "cursor") &&
            g_ascii_string_to_unsigned(f[1], 10, 0, IVSH_MAX_PEER_ID, &v,
                                       NULL)) {
            cursor = v;
            have_cursor = true;
        } else if (n == 2 && !strcmp(f[0], "vectors")) {
            g_ascii_string_to_unsigned(f[1], 10, 1, MAX_VECTORS, &vectors,
                                       NULL);
        } else if (n == 2 && !strcmp(f[0], "shm")) {
            g_free(old_shm);
            old_shm = g_strdup(f[1]);
        } else if (n == 3 && !strcmp(f[0], "peer") &&
                   g_ascii_string_to_unsigned(f[1], 10, 0, IVSH_MAX_PEER_ID,
                                              &v, NULL)) {
            if (!g_hash_table_contains(s->owner, GUINT_TO_POINTER(v))) {
                g_ptr_array_add(order, GUINT_TO_POINTER(v));
            }
            g_hash_table_insert(s->owner, GUINT_TO_POINTER(v),
                                g_strdup(f[2]));
        } else if (n == 2 && !strcmp(f[0], "gone") &&
                   g_ascii_string_to_unsigned(f[1], 10, 0, IVSH_MAX_PEER_ID,
                                              &v, NULL)) {
            g_hash_table_remove(s->owner, GUINT_TO_POINTER(v));
        }
    }
    if (have_cursor) {
        ivsh_server_set_cursor(s->core, cursor);
    }
    /* Keep each ID for its process, in the order they had connected */
    for (i = 0; i < order->len; i++) {
        gpointer id = g_ptr_array_index(order, i);
        const char *who = g_hash_table_lookup(s->owner, id);
        GQueue *q;

        if (!who) {
            continue;
        }
        if (!strcmp(who, "unknown") || !identity_alive(who)) {
            g_hash_table_remove(s->owner, id);
            continue;
        }
        q = g_hash_table_lookup(s->kept, who);
        if (!q) {
            q = g_queue_new();
            g_hash_table_insert(s->kept, g_strdup(who), q);
        }
        g_queue_push_tail(q, id);
        ivsh_server_reserve(s->core, GPOINTER_TO_UINT(id), true);
        kept++;
    }
    g_ptr_array_free(order, true);
    s->reclaim_until = g_get_monotonic_time() / 1000 +
                       (int64_t)s->opt.reclaim_timeout * 1000;
    if (text[0]) {
        ivsh_log(IVSH_LOG_INFO, "state %s: next ID %u, %u IDs kept for "
                 "returning clients for %d s", s->opt.state,
                 ivsh_server_cursor(s->core), kept, s->opt.reclaim_timeout);
    }
    if (kept && old_shm && strcmp(old_shm, shm)) {
        ivsh_log(IVSH_LOG_WARNING, "the shared memory is not the one of "
                 "the previous run: reconnecting VMs will refuse it");
    }
    if (kept && vectors != (guint64)s->opt.vectors) {
        ivsh_log(IVSH_LOG_WARNING, "the previous run had %u vectors, this "
                 "one %d", (unsigned)vectors, s->opt.vectors);
    }
    return state_compact(s, errp);
}

/* Release the IDs kept for processes that are gone or too late */
static void state_reclaim(Server *s)
{
    GHashTableIter it;
    gpointer key, value;
    bool late = g_get_monotonic_time() / 1000 >= s->reclaim_until;

    g_hash_table_iter_init(&it, s->kept);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        GQueue *q = value;
        gpointer id;

        if (!late && identity_alive(key)) {
            continue;
        }
        while (!g_queue_is_empty(q)) {
            id = g_queue_pop_head(q);          /* ID 0 is NULL */
            ivsh_log(IVSH_LOG_INFO, "peer ID %u released: process %s %s",
                     GPOINTER_TO_UINT(id), (char *)key,
                     late ? "did not come back in time" : "is gone");
            ivsh_server_reserve(s->core, GPOINTER_TO_UINT(id), false);
            state_gone(s, GPOINTER_TO_UINT(id));
            fdstore_forget(s, GPOINTER_TO_UINT(id));
        }
        g_hash_table_iter_remove(&it);
    }
}

/* An ID kept for the process behind @who, or -1 */
static int state_take(Server *s, const char *who)
{
    GQueue *q = who ? g_hash_table_lookup(s->kept, who) : NULL;
    int id;

    if (!q || g_queue_is_empty(q)) {
        return -1;
    }
    id = GPOINTER_TO_INT(g_queue_pop_head(q));
    g_hash_table_remove(s->owner, GINT_TO_POINTER(id));
    if (g_queue_is_empty(q)) {
        g_hash_table_remove(s->kept, who);
    }
    return id;
}

/* ---- clients ---- */

static void client_accept(Server *s)
{
    g_autoptr(GError) err = NULL;
    IvshServerPeer *p;
    unsigned i;
    int fd, id;

    for (i = 0; i < 64; i++) {
        fd = accept4(s->listen.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                refuse_one(s, s->listen.fd, "client");
                continue;
            }
            if (errno != EAGAIN && errno != EINTR &&
                errno != ECONNABORTED) {
                ivsh_log(IVSH_LOG_WARNING, "accept: %s", g_strerror(errno));
            }
            return;
        }
        g_free(s->accepting);
        s->accepting = peer_identity(fd);
        id = state_take(s, s->accepting);
        s->restore = id >= 0 && s->stored ?
                     g_hash_table_lookup(s->stored, GINT_TO_POINTER(id)) :
                     NULL;
        s->restore_next = 0;
        p = ivsh_server_add_peer_id(s->core, fd, id, &err);
        if (s->restore) {
            /* Taken by the core (or closed on failure) */
            g_hash_table_remove(s->stored, GINT_TO_POINTER(id));
            s->restore = NULL;
        }
        if (!p) {
            ivsh_log(IVSH_LOG_WARNING, "refused a client: %s",
                     err->message);
            g_clear_error(&err);
            if (id >= 0) {
                ivsh_server_reserve(s->core, id, false);
            }
            continue;
        }
        if (!ivsh_server_peer_alive(p)) {
            continue;
        }
        ivsh_log(IVSH_LOG_INFO, "peer %u %s (%u connected)",
                 ivsh_server_peer_id(p), id >= 0 ? "is back" : "joined",
                 ivsh_server_nr_peers(s->core));
        if (peer_watch(s, p, false)->broken) {
            /* We would never hear from it: better gone than stuck */
            ivsh_server_drop_peer(s->core, p, IVSH_SERVER_SEND_ERROR);
        }
    }
}

static void client_event(Server *s, Watch *w, uint32_t events)
{
    IvshServerPeer *p = w->peer;
    char byte;
    ssize_t n;

    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        n = recv(w->fd, &byte, 1, MSG_DONTWAIT);
        if (n > 0) {
            ivsh_log(IVSH_LOG_WARNING, "peer %u sent data; clients must "
                     "not send anything", ivsh_server_peer_id(p));
            ivsh_server_drop_peer(s->core, p, IVSH_SERVER_VIOLATION);
            return;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            ivsh_server_drop_peer(s->core, p, IVSH_SERVER_LEFT);
            return;
        }
    }
    if (events & EPOLLOUT) {
        ivsh_server_flush_peer(s->core, p);
    }
}

static void signal_event(Server *s)
{
    struct signalfd_siginfo si;

    while (read(s->signal.fd, &si, sizeof(si)) == sizeof(si)) {
        ivsh_log(IVSH_LOG_INFO, "%s, shutting down",
                 strsignal(si.ssi_signo));
        s->quit = true;
    }
}

static void dispatch(Server *s, Watch *w, uint32_t events)
{
    if (w->dead) {
        return;
    }
    switch (w->kind) {
    case WATCH_LISTEN:
        client_accept(s);
        break;
    case WATCH_STATUS_LISTEN:
        status_accept(s);
        break;
    case WATCH_SIGNAL:
        signal_event(s);
        break;
    case WATCH_PEER:
        client_event(s, w, events);
        break;
    case WATCH_STATUS:
        status_write(s, w);
        break;
    }
}

static void end_of_batch(Server *s)
{
    ivsh_server_collect(s->core);
    g_ptr_array_set_size(s->dead, 0);
}

static int64_t now_ms(void)
{
    return g_get_monotonic_time() / 1000;
}

static void run(Server *s, int64_t deadline)
{
    struct epoll_event events[64];
    int64_t last_expire = now_ms();
    int i, n, timeout;

    for (;;) {
        if (deadline < 0 ? s->quit : !ivsh_server_queued(s->core)) {
            return;
        }
        timeout = -1;
        if (deadline >= 0) {
            timeout = MAX(0, deadline - now_ms());
            if (!timeout) {
                return;
            }
        }
        if (ivsh_server_throttled(s->core)) {
            timeout = timeout < 0 ? RETRY_MS : MIN(timeout, RETRY_MS);
        }
        if ((s->opt.stall_timeout && ivsh_server_queued(s->core)) ||
            g_hash_table_size(s->kept)) {
            timeout = timeout < 0 ? EXPIRE_MS : MIN(timeout, EXPIRE_MS);
        }
        n = epoll_wait(s->epfd, events, G_N_ELEMENTS(events), timeout);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            ivsh_log(IVSH_LOG_ERROR, "epoll_wait: %s", g_strerror(errno));
            s->exit_code = 1;
            return;
        }
        for (i = 0; i < n; i++) {
            dispatch(s, events[i].data.ptr, events[i].events);
        }
        if (ivsh_server_throttled(s->core)) {
            ivsh_server_retry(s->core);
        }
        if (deadline < 0 && now_ms() - last_expire >= EXPIRE_MS) {
            last_expire = now_ms();
            if (s->opt.stall_timeout) {
                ivsh_server_expire(s->core, (int64_t)s->opt.stall_timeout *
                                            G_USEC_PER_SEC);
            }
            if (g_hash_table_size(s->kept)) {
                state_reclaim(s);
            }
        }
        end_of_batch(s);
    }
}

/* ---- set-up ---- */

/* Is a process listening on the unix socket @path?  -1: cannot tell */
static int listening_on(const char *path)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    const char *c, *field[8];
    unsigned i, k;

    if (!g_file_get_contents("/proc/net/unix", &text, NULL, NULL)) {
        return -1;
    }
    lines = g_strsplit(text, "\n", -1);
    for (i = 1; lines[i]; i++) {
        /* Num RefCount Protocol Flags Type St Inode Path */
        c = lines[i];
        for (k = 0; k < 8; k++) {
            while (*c == ' ') {
                c++;
            }
            field[k] = c;
            if (k < 7) {
                while (*c && *c != ' ') {
                    c++;
                }
            }
        }
        if (*field[7] && !strcmp(field[7], path) &&
            (g_ascii_strtoull(field[3], NULL, 16) & 0x10000)) {
            return 1;
        }
    }
    return 0;
}

static bool unix_address(struct sockaddr_un *sun, const char *path,
                         GError **errp)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun->sun_path)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NAMETOOLONG,
                    "socket path '%s' is too long", path);
        return false;
    }
    strcpy(sun->sun_path, path);
    return true;
}

/* Make way for a new socket at @path, unless a live server uses it */
static bool clear_stale(const char *path, GError **errp)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd, live, ret;

    if (lstat(path, &st) < 0) {
        return true;
    }
    if (!S_ISSOCK(st.st_mode)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                    "%s exists and is not a socket", path);
        return false;
    }
    live = listening_on(path);
    if (live < 0 || live == 0) {
        /* Not in the table (or no table): ask the socket itself */
        if (!unix_address(&sun, path, errp)) {
            return false;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                        "socket: %s", g_strerror(errno));
            return false;
        }
        ret = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
        live = ret == 0 || (errno != ECONNREFUSED && errno != ENOENT);
        close(fd);
    }
    if (live) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                    "%s is in use by a running server", path);
        return false;
    }
    ivsh_log(IVSH_LOG_INFO, "replacing stale socket %s", path);
    if (unlink(path) < 0 && errno != ENOENT) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot remove stale socket %s: %s", path,
                    g_strerror(errno));
        return false;
    }
    return true;
}

static int listen_unix(const char *path, mode_t mode, gid_t gid,
                       dev_t *dev, ino_t *ino, GError **errp)
{
    struct sockaddr_un sun;
    struct stat st;
    mode_t old;
    int fd, ret;

    if (!unix_address(&sun, path, errp) || !clear_stale(path, errp)) {
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "socket: %s", g_strerror(errno));
        return -1;
    }
    old = umask(0177);
    ret = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (ret < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot bind %s: %s", path, g_strerror(errno));
        close(fd);
        return -1;
    }
    if (stat(path, &st) == 0) {
        *dev = st.st_dev;
        *ino = st.st_ino;
    }
    if ((gid != (gid_t)-1 && chown(path, -1, gid) < 0) ||
        chmod(path, mode) < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot set the owner or mode of %s: %s", path,
                    g_strerror(errno));
        unlink(path);
        close(fd);
        return -1;
    }
    if (listen(fd, 128) < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot listen on %s: %s", path, g_strerror(errno));
        unlink(path);
        close(fd);
        return -1;
    }
    return fd;
}

/* Remove the socket we created, unless somebody replaced it since */
static void unlink_ours(const char *path, dev_t dev, ino_t ino)
{
    struct stat st;

    if (path && lstat(path, &st) == 0 && st.st_dev == dev &&
        st.st_ino == ino) {
        unlink(path);
    }
}

/* An eventfd "ID.VECTOR" from the fd store; false if it is not one */
static bool stored_add(Server *s, const char *idv, int fd)
{
    g_auto(GStrv) f = g_strsplit(idv, ".", 3);
    guint64 id, v;
    int *fds;
    unsigned i;

    if (g_strv_length(f) != 2 ||
        !g_ascii_string_to_unsigned(f[0], 10, 0, IVSH_MAX_PEER_ID, &id,
                                    NULL) ||
        !g_ascii_string_to_unsigned(f[1], 10, 0, s->opt.vectors - 1, &v,
                                    NULL) ||
        !ivsh_fd_is_eventfd(fd)) {
        return false;
    }
    fds = g_hash_table_lookup(s->stored, GUINT_TO_POINTER(id));
    if (!fds) {
        fds = g_new(int, s->opt.vectors);
        for (i = 0; i < (unsigned)s->opt.vectors; i++) {
            fds[i] = -1;
        }
        g_hash_table_insert(s->stored, GUINT_TO_POINTER(id), fds);
    }
    if (fds[v] >= 0) {
        close(fds[v]);
    }
    fds[v] = fd;
    return true;
}

/* Close the eventfds from the fd store that nobody took */
static void stored_close(Server *s)
{
    GHashTableIter it;
    gpointer value;
    int i;

    g_hash_table_iter_init(&it, s->stored);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        for (i = 0; i < s->opt.vectors; i++) {
            if (((int *)value)[i] >= 0) {
                close(((int *)value)[i]);
            }
        }
    }
    g_hash_table_destroy(s->stored);
}

/*
 * After the state is loaded: keep the stored eventfds of the IDs kept
 * for returning clients, when complete; forget the others.
 */
static void stored_check(Server *s)
{
    g_autoptr(GList) ids = g_hash_table_get_keys(s->stored);
    unsigned n = 0, i;
    GList *l;

    for (l = ids; l; l = l->next) {
        unsigned id = GPOINTER_TO_UINT(l->data);
        int *fds = g_hash_table_lookup(s->stored, l->data);
        bool whole = true;

        for (i = 0; i < (unsigned)s->opt.vectors; i++) {
            whole &= fds[i] >= 0;
        }
        if (whole && ivsh_server_reserved(s->core, id)) {
            n++;
        } else {
            fdstore_forget(s, id);
        }
    }
    if (n) {
        ivsh_log(IVSH_LOG_INFO, "eventfds of %u peers from systemd's fd "
                 "store", n);
    }
}

/*
 * Fds from systemd (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, from fd 3
 * on): a listening socket (socket activation) and what we put into the
 * fd store before a restart (FDSTORE_SHM: the memfd).  Returns the
 * listening socket, -1 if none, -2 on errors.
 */
static int activated_socket(Server *s, GError **errp)
{
    const char *pid = g_getenv("LISTEN_PID");
    const char *fds = g_getenv("LISTEN_FDS");
    g_auto(GStrv) names = NULL;
    guint64 v, n, i;
    int val, fd, listen_fd = -1;
    socklen_t len;

    if (!pid || !fds) {
        return -1;
    }
    names = g_strsplit(g_getenv("LISTEN_FDNAMES") ?
                       g_getenv("LISTEN_FDNAMES") : "", ":", -1);
    g_unsetenv("LISTEN_PID");
    g_unsetenv("LISTEN_FDS");
    g_unsetenv("LISTEN_FDNAMES");
    if (!g_ascii_string_to_unsigned(pid, 10, 1, G_MAXINT, &v, NULL) ||
        v != (guint64)getpid()) {
        return -1;
    }
    if (!g_ascii_string_to_unsigned(fds, 10, 0, 4096, &n, NULL)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "LISTEN_FDS=%s is not a number of fds", fds);
        return -2;
    }
    for (i = 0; i < n; i++) {
        const char *name = i < g_strv_length(names) ? names[i] : "";

        fd = SD_LISTEN_FDS_START + i;
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        val = 0;
        len = sizeof(val);
        if (!strcmp(name, FDSTORE_SHM) && s->fdstore_shm < 0) {
            s->fdstore_shm = fd;
        } else if (g_str_has_prefix(name, FDSTORE_EVENTFD) &&
                   stored_add(s, name + strlen(FDSTORE_EVENTFD), fd)) {
            continue;
        } else if (listen_fd < 0 &&
                   getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &val,
                              &len) == 0 && val) {
            listen_fd = fd;
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        } else {
            ivsh_log(IVSH_LOG_WARNING, "closing fd %d ('%s') from systemd: "
                     "not ours", fd, name);
            close(fd);
        }
    }
    return listen_fd;
}

/*
 * A message to systemd (NOTIFY_SOCKET), with @fd attached unless it is
 * negative: sd_notify() without libsystemd.  False if there is no
 * NOTIFY_SOCKET or the message could not be sent.
 */
static bool sd_notify_fd(const char *msg, int fd)
{
    const char *path = g_getenv("NOTIFY_SOCKET");
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = 1 };
    IvshFdCmsg control;
    struct iovec iov;
    struct msghdr mh;
    int sock;
    bool ok;

    if (!path || (path[0] != '/' && path[0] != '@') ||
        strlen(path) >= sizeof(sun.sun_path)) {
        return false;
    }
    strcpy(sun.sun_path, path);
    if (path[0] == '@') {
        sun.sun_path[0] = '\0';
    }
    sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) {
        return false;
    }
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ivsh_msghdr_fill(&mh, &iov, msg, strlen(msg), fd, &control);
    mh.msg_name = &sun;
    mh.msg_namelen = offsetof(struct sockaddr_un, sun_path) + strlen(path);
    ok = sendmsg(sock, &mh, MSG_NOSIGNAL) >= 0;
    close(sock);
    return ok;
}

/*
 * Tell systemd (Type=notify) that we are ready; first, put a memfd into
 * its fd store (FileDescriptorStoreMax=), so that the next run of the
 * unit serves the same memory and VMs can reconnect.
 */
static void notify_ready(Server *s)
{
    if (s->shm.kind == IVSH_SHM_MEMFD && g_getenv("NOTIFY_SOCKET")) {
        if (sd_notify_fd("FDSTORE=1\nFDNAME=" FDSTORE_SHM "\nFDPOLL=0",
                         s->shm.fd)) {
            ivsh_log(IVSH_LOG_INFO, "shared memory in systemd's fd store");
        } else {
            ivsh_log(IVSH_LOG_WARNING, "cannot put the shared memory into "
                     "systemd's fd store: %s", g_strerror(errno));
        }
    }
    sd_notify_fd("READY=1", -1);
}

/*
 * Messages with fds that one client may have in flight: the kernel
 * charges every fd sent and not yet received to our user, and refuses
 * more (ETOOMANYREFS) beyond RLIMIT_NOFILE.  Each message is one skb;
 * SO_SNDBUF decides how many fit.  Try @sndbuf on a socketpair: the
 * messages that fit, and the bytes each takes (*@truesize).
 */
static unsigned probe_window(int sndbuf, unsigned *truesize)
{
    uint8_t msg[IVSH_MSG_SIZE] = { 0 };
    unsigned n = 0;
    int sv[2], outq = 0;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return 0;
    }
    if (sndbuf > 0) {
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    }
    while (n < 100000 &&
           send(sv[0], msg, sizeof(msg), MSG_DONTWAIT | MSG_NOSIGNAL) ==
           sizeof(msg)) {
        n++;
    }
    if (truesize && n && ioctl(sv[0], SIOCOUTQ, &outq) == 0) {
        *truesize = outq / n;
    }
    close(sv[0]);
    close(sv[1]);
    return n;
}

/*
 * Size the client sockets so that a client has at most about one message
 * in flight per fd it costs us (its socket and eventfds), and at least
 * MIN_WINDOW (fewer make a set-up slow: the kernel wakes the writer when
 * a quarter of the window is left); raise_nofile() then makes room for
 * as many peers as the fds in flight and in our table allow.
 */
static int choose_sndbuf(Server *s)
{
    unsigned want = MAX(s->opt.vectors + 1, MIN_WINDOW), truesize = 0, min;
    int sndbuf = 1;

    min = probe_window(1, &truesize);
    if (want > min && truesize) {
        sndbuf = (want * truesize + 1) / 2;
    }
    s->window = probe_window(sndbuf, NULL);
    if (!s->window) {
        s->window = want;
        return 0;
    }
    return sndbuf;
}

/*
 * Raise the soft fd limit to the hard one, and the hard one too when
 * --max-peers asks for more and we may.
 */
static unsigned count_fds(void)
{
    GDir *dir = g_dir_open("/proc/self/fd", 0, NULL);
    unsigned n = 0;

    if (dir) {
        while (g_dir_read_name(dir)) {
            n++;
        }
        g_dir_close(dir);
    }
    return n;
}

static void raise_nofile(Server *s)
{
    struct rlimit rl;
    rlim_t need = 0, used;
    g_autofree char *nr_open = NULL;
    guint64 max;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        return;
    }
    if (s->opt.max_peers) {
        need = (rlim_t)s->opt.max_peers *
               MAX(s->opt.vectors + 1, (int)s->window) + RESERVED_FDS;
    }
    if (need > rl.rlim_max && rl.rlim_max != RLIM_INFINITY &&
        g_file_get_contents("/proc/sys/fs/nr_open", &nr_open, NULL, NULL) &&
        g_ascii_string_to_unsigned(g_strstrip(nr_open), 10, 1,
                                   G_MAXUINT64, &max, NULL)) {
        struct rlimit want = { MIN(need, max), MIN(need, max) };

        if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
            rl = want;
        }
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    s->nofile = rl.rlim_cur;
    /*
     * Each peer costs its socket and eventfds in our fd table, and up to
     * a window of messages with fds in flight, which the kernel counts
     * against the same limit: refuse peers beyond what both allow.
     */
    used = count_fds() + RESERVED_FDS;
    s->room = MIN(rl.rlim_cur > used ?
                  (rl.rlim_cur - used) / MAX(s->opt.vectors + 1,
                                             (int)s->window) : 0,
                  IVSH_MAX_PEER_ID + 1);
    ivsh_log(IVSH_LOG_INFO, "fd limit %llu: room for %u peers with %d "
             "vectors, at most %u messages in flight each",
             (unsigned long long)rl.rlim_cur, s->room, s->opt.vectors,
             s->window);
    if (need && rl.rlim_cur < need) {
        ivsh_log(IVSH_LOG_WARNING, "%d peers need about %llu fds, the "
                 "limit is %llu", s->opt.max_peers,
                 (unsigned long long)need, (unsigned long long)rl.rlim_cur);
    }
}

static bool write_pidfile(const char *path, GError **errp)
{
    g_autofree char *text = g_strdup_printf("%d\n", (int)getpid());

    return g_file_set_contents(path, text, -1, errp);
}

static bool parse_int(const char *what, const char *str, guint64 min,
                      guint64 max, int *out, GError **errp)
{
    guint64 v;

    if (!g_ascii_string_to_unsigned(str, 10, min, max, &v, NULL)) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "%s must be a number from %" G_GUINT64_FORMAT " to %"
                    G_GUINT64_FORMAT ", not '%s'", what, min, max, str);
        return false;
    }
    *out = v;
    return true;
}

static bool parse_group(const char *str, gid_t *gid, GError **errp)
{
    struct group *gr;
    guint64 v;

    if (g_ascii_string_to_unsigned(str, 10, 0, G_MAXUINT32 - 1, &v, NULL)) {
        *gid = v;
        return true;
    }
    gr = getgrnam(str);
    if (!gr) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "unknown group '%s'", str);
        return false;
    }
    *gid = gr->gr_gid;
    return true;
}

static bool parse_options(Server *s, int argc, char **argv, GError **errp)
{
    g_autofree char *vectors = NULL, *max_peers = NULL, *max_queue = NULL;
    g_autofree char *stall = NULL, *reclaim = NULL, *max_queued = NULL;
    Options *o = &s->opt;
    const GOptionEntry entries[] = {
        { "socket", 'S', 0, G_OPTION_ARG_FILENAME, &o->socket,
          "Listen on unix socket PATH", "PATH" },
        { "mode", 0, 0, G_OPTION_ARG_STRING, &o->mode,
          "Permissions of the socket (octal, default 0600)", "MODE" },
        { "group", 0, 0, G_OPTION_ARG_STRING, &o->group,
          "Group of the socket", "GROUP" },
        { "size", 'l', 0, G_OPTION_ARG_STRING, &o->size,
          "Shared memory size, a power of two (K/M/G/T suffixes; "
          "default 4M, or the size of an existing --shm/--file)", "SIZE" },
        { "shm", 'M', 0, G_OPTION_ARG_STRING, &o->shm,
          "Use POSIX shared memory object NAME (default: a memfd)",
          "NAME" },
        { "file", 'm', 0, G_OPTION_ARG_FILENAME, &o->file,
          "Use the file PATH, e.g. on hugetlbfs (default: a memfd)",
          "PATH" },
        { "vectors", 'n', 0, G_OPTION_ARG_STRING, &vectors,
          "Interrupt vectors per peer, 1..1024 (default 1)", "N" },
        { "max-peers", 0, 0, G_OPTION_ARG_STRING, &max_peers,
          "Refuse clients beyond N peers (default 65536)", "N" },
        { "max-queue", 0, 0, G_OPTION_ARG_STRING, &max_queue,
          "Drop a client whose queue exceeds a full set-up by N "
          "messages (default 65536)", "N" },
        { "stall-timeout", 0, 0, G_OPTION_ARG_STRING, &stall,
          "Drop a client that reads nothing queued for it for SEC "
          "seconds (default 60, 0: never)", "SEC" },
        { "max-queued", 0, 0, G_OPTION_ARG_STRING, &max_queued,
          "Messages queued for all clients together; beyond, the client "
          "whose socket has been full the longest is dropped (default "
          "8388608)", "N" },
        { "state", 0, 0, G_OPTION_ARG_FILENAME, &o->state,
          "Keep the next peer ID and who had which ID in FILE, to give "
          "reconnecting clients their IDs after a restart", "FILE" },
        { "reclaim-timeout", 0, 0, G_OPTION_ARG_STRING, &reclaim,
          "With --state: keep the IDs of the previous run SEC seconds for "
          "their processes (default 60)", "SEC" },
        { "pidfile", 'p', 0, G_OPTION_ARG_FILENAME, &o->pidfile,
          "Write the process ID to PATH", "PATH" },
        { "status-socket", 0, 0, G_OPTION_ARG_FILENAME, &o->status_socket,
          "Serve a JSON status document on unix socket PATH", "PATH" },
        { "verbose", 'v', 0, G_OPTION_ARG_NONE, &o->verbose,
          "Log debug messages", NULL },
        { "quiet", 'q', 0, G_OPTION_ARG_NONE, &o->quiet,
          "Log warnings and errors only", NULL },
        { "version", 'V', 0, G_OPTION_ARG_NONE, &o->version,
          "Print the version and exit", NULL },
        { NULL }
    };
    g_autoptr(GOptionContext) ctx =
        g_option_context_new("- ivshmem server (protocol 0)");

    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_description(ctx,
        "Serves shared memory and interrupts to QEMU ivshmem-doorbell\n"
        "devices and other ivshmem clients.  See ivsh-server(1).\n");
    if (!g_option_context_parse(ctx, &argc, &argv, errp)) {
        return false;
    }
    if (argc > 1) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                    "unexpected argument '%s'", argv[1]);
        return false;
    }
    o->vectors = 1;
    o->max_queue = IVSH_SERVER_DEFAULT_MAX_QUEUE;
    o->stall_timeout = DEFAULT_STALL_TIMEOUT;
    o->reclaim_timeout = DEFAULT_RECLAIM_TIMEOUT;
    if ((vectors && !parse_int("--vectors", vectors, 1, MAX_VECTORS,
                               &o->vectors, errp)) ||
        (max_peers && !parse_int("--max-peers", max_peers, 1,
                                 IVSH_MAX_PEER_ID + 1, &o->max_peers,
                                 errp)) ||
        (max_queue && !parse_int("--max-queue", max_queue, 0, G_MAXINT32,
                                 &o->max_queue, errp)) ||
        (stall && !parse_int("--stall-timeout", stall, 0, 86400,
                             &o->stall_timeout, errp)) ||
        (reclaim && !parse_int("--reclaim-timeout", reclaim, 0, 86400,
                               &o->reclaim_timeout, errp)) ||
        (max_queued && !parse_int("--max-queued", max_queued, 1024,
                                  G_MAXINT32, &o->max_queued, errp))) {
        return false;
    }
    if (o->shm && o->file) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                    "--shm and --file exclude each other");
        return false;
    }
    if (o->verbose && o->quiet) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                    "--verbose and --quiet exclude each other");
        return false;
    }
    return true;
}

static bool setup(Server *s, GError **errp)
{
    IvshServerConfig cfg = { 0 };
    gid_t gid = -1;
    mode_t mode = 0600;
    uint64_t size = 0;
    sigset_t sigs;
    guint64 v;
    int fd;

    if (s->opt.size && !ivsh_parse_size(s->opt.size, &size, errp)) {
        return false;
    }
    if (s->opt.mode) {
        if (!g_ascii_string_to_unsigned(s->opt.mode, 8, 0, 0777, &v, NULL)) {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "--mode must be octal permissions, not '%s'",
                        s->opt.mode);
            return false;
        }
        mode = v;
    }
    if (s->opt.group && !parse_group(s->opt.group, &gid, errp)) {
        return false;
    }
    s->listen.fd = activated_socket(s, errp);
    if (s->listen.fd == -2) {
        return false;
    }
    if (s->fdstore_shm >= 0 && (s->opt.shm || s->opt.file)) {
        close(s->fdstore_shm);
        s->fdstore_shm = -1;
    }
    if (s->fdstore_shm >= 0) {
        if (!ivsh_shm_adopt(&s->shm, s->fdstore_shm, errp)) {
            g_prefix_error(errp, "the shared memory from the fd store: ");
            return false;
        }
        s->fdstore_shm = -1;
        if (size && size != s->shm.size) {
            ivsh_log(IVSH_LOG_WARNING, "--size %" G_GUINT64_FORMAT " ignored:"
                     " the VMs map the %" G_GUINT64_FORMAT " bytes from "
                     "before the restart", size, s->shm.size);
        }
        ivsh_log(IVSH_LOG_INFO, "shared memory from systemd's fd store");
    } else if (!ivsh_shm_open(&s->shm, s->opt.shm ? IVSH_SHM_POSIX :
                              s->opt.file ? IVSH_SHM_FILE : IVSH_SHM_MEMFD,
                              s->opt.shm ? s->opt.shm : s->opt.file, size,
                              errp)) {
        return false;
    }
    ivsh_log(IVSH_LOG_INFO, "shared memory: %s%s%s, %" G_GUINT64_FORMAT
             " bytes%s", ivsh_shm_kind_str(s->shm.kind),
             s->shm.name ? " " : "", s->shm.name ? s->shm.name : "",
             s->shm.size, s->shm.sealed ? ", sealed" : "");

    cfg.sndbuf = choose_sndbuf(s);
    raise_nofile(s);
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "epoll_create1: %s", g_strerror(errno));
        return false;
    }

    /* Signals arrive as events; SIGPIPE is ignored (MSG_NOSIGNAL anyway) */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    s->signal.kind = WATCH_SIGNAL;
    s->signal.fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s->signal.fd < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "signalfd: %s", g_strerror(errno));
        return false;
    }
    {
        struct sigaction sa = { .sa_handler = SIG_IGN };

        sigaction(SIGPIPE, &sa, NULL);
    }

    fd = s->listen.fd;
    if (fd >= 0) {
        s->activated = true;
        ivsh_log(IVSH_LOG_INFO, "listening on the socket from systemd");
    } else {
        if (!s->opt.socket) {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                        "--socket is required (or systemd socket "
                        "activation)");
            return false;
        }
        if (!g_path_is_absolute(s->opt.socket)) {
            char *abs = g_canonicalize_filename(s->opt.socket, NULL);

            g_free(s->opt.socket);
            s->opt.socket = abs;
        }
        fd = listen_unix(s->opt.socket, mode, gid, &s->socket_dev,
                         &s->socket_ino, errp);
        if (fd < 0) {
            return false;
        }
        s->socket_path = g_strdup(s->opt.socket);
        ivsh_log(IVSH_LOG_INFO, "listening on %s, %d vectors per peer",
                 s->opt.socket, s->opt.vectors);
    }
    s->listen.kind = WATCH_LISTEN;
    s->listen.fd = fd;

    if (s->opt.status_socket) {
        if (!g_path_is_absolute(s->opt.status_socket)) {
            char *abs = g_canonicalize_filename(s->opt.status_socket, NULL);

            g_free(s->opt.status_socket);
            s->opt.status_socket = abs;
        }
        fd = listen_unix(s->opt.status_socket, mode, gid, &s->status_dev,
                         &s->status_ino, errp);
        if (fd < 0) {
            return false;
        }
        s->status_path = g_strdup(s->opt.status_socket);
        s->status_listen.kind = WATCH_STATUS_LISTEN;
        s->status_listen.fd = fd;
    }

    cfg.vectors = s->opt.vectors;
    cfg.max_peers = s->opt.max_peers ? MIN((unsigned)s->opt.max_peers,
                                           s->room) : s->room;
    if (!cfg.max_peers) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_MFILE,
                    "the fd limit (%llu) leaves no room for peers",
                    (unsigned long long)s->nofile);
        return false;
    }
    cfg.max_queue = s->opt.max_queue;
    cfg.max_queued = s->opt.max_queued;
    cfg.shm_fd = s->shm.fd;
    cfg.ops = &server_ops;
    cfg.opaque = s;
    s->core = ivsh_server_new(&cfg);
    if (s->opt.state) {
        if (!g_path_is_absolute(s->opt.state)) {
            char *abs = g_canonicalize_filename(s->opt.state, NULL);

            g_free(s->opt.state);
            s->opt.state = abs;
        }
        if (!state_load(s, errp)) {
            return false;
        }
        s->fdstore = g_getenv("NOTIFY_SOCKET") != NULL;
    }
    stored_check(s);

    if (!watch_add(s, &s->listen, EPOLLIN) ||
        !watch_add(s, &s->signal, EPOLLIN) ||
        (s->status_path && !watch_add(s, &s->status_listen, EPOLLIN))) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                    "cannot set up the event loop");
        return false;
    }

    if (s->opt.pidfile && !write_pidfile(s->opt.pidfile, errp)) {
        return false;
    }
    return true;
}

static void cleanup(Server *s)
{
    if (s->socket_path) {
        unlink_ours(s->socket_path, s->socket_dev, s->socket_ino);
    }
    if (s->status_path) {
        unlink_ours(s->status_path, s->status_dev, s->status_ino);
    }
}

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    Server s = { .epfd = -1, .spare_fd = -1, .fdstore_shm = -1,
                 .state_fd = -1 };

    s.dead = g_ptr_array_new_with_free_func(g_free);
    s.kept = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                   (GDestroyNotify)g_queue_free);
    s.owner = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                    g_free);
    s.stored = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                     g_free);
    s.listen.fd = s.status_listen.fd = s.signal.fd = -1;
    if (!parse_options(&s, argc, argv, &err)) {
        fprintf(stderr, "ivsh-server: %s\n", err->message);
        fprintf(stderr, "Try 'ivsh-server --help' for more information.\n");
        return 2;
    }
    if (s.opt.version) {
        printf("ivsh-server %s (ivshmem protocol %d)\n",
               IVSH_SERVER_VERSION, IVSH_PROTOCOL_VERSION);
        return 0;
    }
    if (s.opt.verbose) {
        ivsh_log_level = IVSH_LOG_DEBUG;
    } else if (s.opt.quiet) {
        ivsh_log_level = IVSH_LOG_WARNING;
    }
    if (!setup(&s, &err)) {
        ivsh_log(IVSH_LOG_ERROR, "%s", err->message);
        cleanup(&s);
        return 1;
    }
    notify_ready(&s);

    run(&s, -1);

    /* Shut down: no new clients, every peer learns the others are gone */
    close(s.listen.fd);
    if (s.status_path) {
        close(s.status_listen.fd);
    }
    cleanup(&s);
    if (s.state_fd < 0) {
        /* Nobody comes back: tell every peer that the others are gone */
        ivsh_server_announce_shutdown(s.core);
        run(&s, now_ms() + SHUTDOWN_DRAIN_MS);
    }
    if (ivsh_server_queued(s.core)) {
        ivsh_log(IVSH_LOG_WARNING, "%zu messages not delivered at shutdown",
                 ivsh_server_queued(s.core));
    }
    end_of_batch(&s);
    ivsh_server_free(s.core);
    /* Watches of the peers removed just now (the core is gone) */
    g_ptr_array_free(s.dead, true);
    if (s.opt.pidfile) {
        unlink(s.opt.pidfile);
    }
    if (s.state_fd >= 0) {
        close(s.state_fd);
    }
    g_hash_table_destroy(s.kept);
    g_hash_table_destroy(s.owner);
    stored_close(&s);
    g_free(s.accepting);
    g_free(s.socket_path);
    g_free(s.status_path);
    g_free(s.opt.socket);
    g_free(s.opt.mode);
    g_free(s.opt.group);
    g_free(s.opt.size);
    g_free(s.opt.shm);
    g_free(s.opt.file);
    g_free(s.opt.pidfile);
    g_free(s.opt.status_socket);
    g_free(s.opt.state);
    ivsh_shm_close(&s.shm);
    ivsh_log(IVSH_LOG_INFO, "stopped");
    return s.exit_code;
}
