/*
 * An ivshmem server for qtests, scriptable for hostile behaviour
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "hw/misc/ivsh-proto.h"
#include "ivsh-io.h"
#include "ivsh-tserver.h"

#define TS_MAX_PEERS 64
#define TS_WAIT_MS 10000

typedef struct TPeer {
    int sock;               /* -1 for a host peer */
    int *efd;               /* [vectors] */
} TPeer;

typedef struct TScript {
    IvshTScript *fn;
    void *opaque;
} TScript;

struct IvshTServer {
    char *path;
    int listen_fd;
    int wake[2];
    int shm_fd;
    void *shm;
    size_t shm_size;
    unsigned vectors;
    bool blocking;          /* eventfds without O_NONBLOCK */

    GThread *thread;
    GMutex lock;
    GCond cond;
    bool stop;
    TPeer *peers[TS_MAX_PEERS];
    int joined[TS_MAX_PEERS];   /* IDs in the order connections joined */
    unsigned nr_joined;
    GQueue scripts;
    GPtrArray *script_socks;
};

static void ts_send(int sock, int64_t msg, int fd)
{
    int ret = ivsh_msg_send(sock, msg, fd);

    /* A peer that went away is noticed by the poll loop */
    g_assert(ret == 0 || ret == -EPIPE || ret == -ECONNRESET);
}

void ivsh_tserver_send_setup(IvshTServer *ts, int sock, int64_t id)
{
    ts_send(sock, 0, -1);
    ts_send(sock, id, -1);
    ts_send(sock, IVSH_MSG_SHM, ts->shm_fd);
}

static void ts_send_eventfds(IvshTServer *ts, int sock, int id)
{
    unsigned v;

    for (v = 0; v < ts->vectors; v++) {
        ts_send(sock, id, ts->peers[id]->efd[v]);
    }
}

/* Add peer @id and fan out its eventfds; with ts->lock held. */
static void ts_join(IvshTServer *ts, int id, int sock)
{
    TPeer *p = g_new0(TPeer, 1);
    unsigned v;
    int i;

    p->sock = sock;
    p->efd = g_new(int, ts->vectors);
    for (v = 0; v < ts->vectors; v++) {
        p->efd[v] = eventfd(0, (ts->blocking ? 0 : EFD_NONBLOCK) |
                               EFD_CLOEXEC);
        g_assert(p->efd[v] >= 0);
    }
    ts->peers[id] = p;
    if (sock >= 0) {
        ivsh_tserver_send_setup(ts, sock, id);
    }
    for (i = 0; i < TS_MAX_PEERS; i++) {
        if (i == id || !ts->peers[i]) {
            continue;
        }
        if (sock >= 0) {
            ts_send_eventfds(ts, sock, i);
        }
        if (ts->peers[i]->sock >= 0) {
            ts_send_eventfds(ts, ts->peers[i]->sock, id);
        }
    }
    if (sock >= 0) {
        ts_send_eventfds(ts, sock, id);
        /* The first TS_MAX_PEERS joins are kept; all are counted */
        if (ts->nr_joined < TS_MAX_PEERS) {
            ts->joined[ts->nr_joined] = id;
        }
        ts->nr_joined++;
    }
    g_cond_broadcast(&ts->cond);
}

static int ts_free_id(IvshTServer *ts)
{
    int id;

    for (id = 0; id < TS_MAX_PEERS; id++) {
        if (!ts->peers[id]) {
            return id;
        }
    }
    g_assert_not_reached();
}

static void ts_leave(IvshTServer *ts, int id)
{
    TPeer *p = ts->peers[id];
    unsigned v;
    int i;

    ts->peers[id] = NULL;
    if (p->sock >= 0) {
        close(p->sock);
    }
    for (v = 0; v < ts->vectors; v++) {
        close(p->efd[v]);
    }
    g_free(p->efd);
    g_free(p);
    for (i = 0; i < TS_MAX_PEERS; i++) {
        if (ts->peers[i] && ts->peers[i]->sock >= 0) {
            ts_send(ts->peers[i]->sock, id, -1);
        }
    }
    g_cond_broadcast(&ts->cond);
}

static void ts_accept(IvshTServer *ts)
{
    int sock = accept4(ts->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    TScript *script;

    if (sock < 0) {
        return;
    }
    g_mutex_lock(&ts->lock);
    script = g_queue_pop_head(&ts->scripts);
    if (script) {
        g_ptr_array_add(ts->script_socks, GINT_TO_POINTER(sock));
        g_mutex_unlock(&ts->lock);
        script->fn(ts, sock, script->opaque);
        g_free(script);
        return;
    }
    ts_join(ts, ts_free_id(ts), sock);
    g_mutex_unlock(&ts->lock);
}

static gpointer ts_thread(gpointer opaque)
{
    IvshTServer *ts = opaque;

    for (;;) {
        struct pollfd pfd[TS_MAX_PEERS + 2];
        int ids[TS_MAX_PEERS + 2];
        int n = 0, i;

        g_mutex_lock(&ts->lock);
        if (ts->stop) {
            g_mutex_unlock(&ts->lock);
            return NULL;
        }
        pfd[n++] = (struct pollfd) { .fd = ts->wake[0], .events = POLLIN };
        pfd[n++] = (struct pollfd) { .fd = ts->listen_fd, .events = POLLIN };
        for (i = 0; i < TS_MAX_PEERS; i++) {
            if (ts->peers[i] && ts->peers[i]->sock >= 0) {
                ids[n] = i;
                pfd[n++] = (struct pollfd) { .fd = ts->peers[i]->sock,
                                             .events = POLLIN };
            }
        }
        g_mutex_unlock(&ts->lock);

        if (poll(pfd, n, -1) < 0) {
            g_assert(errno == EINTR);
            continue;
        }
        if (pfd[0].revents) {
            char c;

            g_assert(read(ts->wake[0], &c, 1) >= 0);
            continue;       /* peers changed, or stop */
        }
        if (pfd[1].revents & POLLIN) {
            ts_accept(ts);
        }
        for (i = 2; i < n; i++) {
            if (pfd[i].revents) {
                /* Clients never talk: anything here is a hang-up */
                g_mutex_lock(&ts->lock);
                if (ts->peers[ids[i]] &&
                    ts->peers[ids[i]]->sock == pfd[i].fd) {
                    ts_leave(ts, ids[i]);
                }
                g_mutex_unlock(&ts->lock);
            }
        }
    }
}

static void ts_wake(IvshTServer *ts)
{
    g_assert(write(ts->wake[1], "x", 1) == 1);
}

IvshTServer *ivsh_tserver_new(const char *path, size_t shm_size,
                              unsigned vectors)
{
    IvshTServer *ts = g_new0(IvshTServer, 1);
    struct sockaddr_un un = { .sun_family = AF_UNIX };

    ts->path = g_strdup(path);
    ts->shm_size = shm_size;
    ts->vectors = vectors;
    ts->shm_fd = memfd_create("ivsh-tserver", MFD_CLOEXEC |
                              MFD_ALLOW_SEALING);
    g_assert(ts->shm_fd >= 0);
    g_assert(ftruncate(ts->shm_fd, shm_size) == 0);
    ts->shm = mmap(NULL, shm_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   ts->shm_fd, 0);
    g_assert(ts->shm != MAP_FAILED);

    ts->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert(ts->listen_fd >= 0);
    g_strlcpy(un.sun_path, path, sizeof(un.sun_path));
    g_assert(bind(ts->listen_fd, (struct sockaddr *)&un, sizeof(un)) == 0);
    g_assert(listen(ts->listen_fd, 16) == 0);
    g_assert(pipe2(ts->wake, O_CLOEXEC) == 0);

    g_mutex_init(&ts->lock);
    g_cond_init(&ts->cond);
    g_queue_init(&ts->scripts);
    ts->script_socks = g_ptr_array_new();
    ts->thread = g_thread_new("ivsh-tserver", ts_thread, ts);
    return ts;
}

void ivsh_tserver_free(IvshTServer *ts)
{
    int i;

    g_mutex_lock(&ts->lock);
    ts->stop = true;
    g_mutex_unlock(&ts->lock);
    ts_wake(ts);
    g_thread_join(ts->thread);

    for (i = 0; i < TS_MAX_PEERS; i++) {
        if (ts->peers[i]) {
            ts_leave(ts, i);
        }
    }
    for (i = 0; i < ts->script_socks->len; i++) {
        close(GPOINTER_TO_INT(g_ptr_array_index(ts->script_socks, i)));
    }
    g_ptr_array_free(ts->script_socks, true);
    g_queue_clear_full(&ts->scripts, g_free);
    close(ts->listen_fd);
    close(ts->wake[0]);
    close(ts->wake[1]);
    unlink(ts->path);
    munmap(ts->shm, ts->shm_size);
    close(ts->shm_fd);
    g_mutex_clear(&ts->lock);
    g_cond_clear(&ts->cond);
    g_free(ts->path);
    g_free(ts);
}

void ivsh_tserver_script(IvshTServer *ts, IvshTScript *fn, void *opaque)
{
    TScript *s = g_new0(TScript, 1);

    s->fn = fn;
    s->opaque = opaque;
    g_mutex_lock(&ts->lock);
    g_queue_push_tail(&ts->scripts, s);
    g_mutex_unlock(&ts->lock);
}

void *ivsh_tserver_shm(IvshTServer *ts)
{
    return ts->shm;
}

int ivsh_tserver_shm_fd(IvshTServer *ts)
{
    return ts->shm_fd;
}

bool ivsh_tserver_wait_peers(IvshTServer *ts, unsigned n)
{
    gint64 end = g_get_monotonic_time() + TS_WAIT_MS * G_TIME_SPAN_MILLISECOND;
    bool ok = true;

    g_mutex_lock(&ts->lock);
    while (ts->nr_joined < n && ok) {
        ok = g_cond_wait_until(&ts->cond, &ts->lock, end);
    }
    ok = ts->nr_joined >= n;
    g_mutex_unlock(&ts->lock);
    return ok;
}

int ivsh_tserver_peer_id(IvshTServer *ts, unsigned i)
{
    int id;

    g_mutex_lock(&ts->lock);
    g_assert(i < MIN(ts->nr_joined, TS_MAX_PEERS));
    id = ts->joined[i];
    g_mutex_unlock(&ts->lock);
    return id;
}

int ivsh_tserver_add_host_peer(IvshTServer *ts)
{
    int id;

    g_mutex_lock(&ts->lock);
    id = ts_free_id(ts);
    ts_join(ts, id, -1);
    g_mutex_unlock(&ts->lock);
    return id;
}

void ivsh_tserver_remove_peer(IvshTServer *ts, int id)
{
    g_mutex_lock(&ts->lock);
    g_assert(ts->peers[id]);
    ts_leave(ts, id);
    g_mutex_unlock(&ts->lock);
    ts_wake(ts);
}

void ivsh_tserver_ring(IvshTServer *ts, int id, unsigned vector)
{
    uint64_t one = 1;

    g_mutex_lock(&ts->lock);
    g_assert(ts->peers[id] && vector < ts->vectors);
    g_assert(write(ts->peers[id]->efd[vector], &one, 8) == 8);
    g_mutex_unlock(&ts->lock);
}

uint64_t ivsh_tserver_wait_rung(IvshTServer *ts, int id, unsigned vector,
                                int ms)
{
    struct pollfd pfd = { .events = POLLIN };
    uint64_t count = 0;

    g_mutex_lock(&ts->lock);
    g_assert(ts->peers[id] && ts->peers[id]->sock < 0);
    pfd.fd = ts->peers[id]->efd[vector];
    g_mutex_unlock(&ts->lock);
    if (poll(&pfd, 1, ms) == 1 && read(pfd.fd, &count, 8) != 8) {
        count = 0;
    }
    return count;
}

void ivsh_tserver_send(IvshTServer *ts, int id, int64_t msg, int fd)
{
    g_mutex_lock(&ts->lock);
    g_assert(ts->peers[id] && ts->peers[id]->sock >= 0);
    ts_send(ts->peers[id]->sock, msg, fd);
    g_mutex_unlock(&ts->lock);
}

int ivsh_tserver_eventfd(IvshTServer *ts, int id, unsigned vector)
{
    int fd;

    g_mutex_lock(&ts->lock);
    g_assert(id >= 0 && id < TS_MAX_PEERS && ts->peers[id] &&
             vector < ts->vectors);
    fd = ts->peers[id]->efd[vector];
    g_mutex_unlock(&ts->lock);
    return fd;
}

void ivsh_tserver_clear_nonblock(IvshTServer *ts)
{
    unsigned v;
    int i;

    g_mutex_lock(&ts->lock);
    ts->blocking = true;
    for (i = 0; i < TS_MAX_PEERS; i++) {
        for (v = 0; ts->peers[i] && v < ts->vectors; v++) {
            int fd = ts->peers[i]->efd[v];

            g_assert(fcntl(fd, F_SETFL,
                           fcntl(fd, F_GETFL) & ~O_NONBLOCK) == 0);
        }
    }
    g_mutex_unlock(&ts->lock);
}
