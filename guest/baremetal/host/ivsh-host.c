/*
 * ivshmem test guest: host-side helpers of the driver
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "ivsh-host.h"
#include "hw/misc/ivsh-regs.h"

int64_t ivh_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - ivh_now_ms();

    return left < 0 ? 0 : left > 1000000 ? 1000000 : left;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

/* Decimal with an optional K/M/G suffix (powers of 1024) */
bool ivh_parse_u64(const char *s, uint64_t *v)
{
    uint64_t n = 0;
    const char *p = s;

    if (!*p) {
        return false;
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (UINT64_MAX - 9) / 10) {
            return false;
        }
        n = n * 10 + (*p - '0');
    }
    if (p == s) {
        return false;
    }
    switch (*p) {
    case 'K':
    case 'k':
        n <<= 10;
        p++;
        break;
    case 'M':
        n <<= 20;
        p++;
        break;
    case 'G':
        n <<= 30;
        p++;
        break;
    }
    if (*p) {
        return false;
    }
    *v = n;
    return true;
}

/* Child processes */

bool ivh_spawn(IvhProc *p, const char *name, char *const argv[],
               const char *log)
{
    pid_t parent = getpid(), pid;
    int fd;

    memset(p, 0, sizeof(*p));
    p->pidfd = -1;
    snprintf(p->name, sizeof(p->name), "%s", name);
    snprintf(p->log, sizeof(p->log), "%s", log);
    fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "ivsh-pingpong: %s: %s\n", log, strerror(errno));
        return false;
    }
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "ivsh-pingpong: fork: %s\n", strerror(errno));
        close(fd);
        return false;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);

        /* die with the driver, whatever happens to it */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        dup2(null, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd);
    p->pid = pid;
    p->pidfd = syscall(SYS_pidfd_open, pid, 0);
    return true;
}

bool ivh_reap(IvhProc *p)
{
    int st;

    if (!p->pid || p->exited) {
        return p->exited;
    }
    if (waitpid(p->pid, &st, WNOHANG) != p->pid) {
        return false;
    }
    p->exited = true;
    p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (p->pidfd >= 0) {
        close(p->pidfd);
        p->pidfd = -1;
    }
    return true;
}

bool ivh_wait_exit(IvhProc *p, int64_t deadline)
{
    struct pollfd pfd;

    for (;;) {
        if (ivh_reap(p)) {
            return true;
        }
        if (!remaining_ms(deadline)) {
            return false;
        }
        if (p->pidfd >= 0) {
            pfd.fd = p->pidfd;
            pfd.events = POLLIN;
            poll(&pfd, 1, remaining_ms(deadline));
        } else {
            sleep_ms(5);
        }
    }
}

void ivh_stop(IvhProc *p, int grace_ms)
{
    if (!p->pid || ivh_reap(p)) {
        return;
    }
    kill(p->pid, SIGTERM);
    if (!ivh_wait_exit(p, ivh_now_ms() + grace_ms)) {
        kill(p->pid, SIGKILL);
        ivh_wait_exit(p, ivh_now_ms() + 10000);
    }
}

void ivh_dump_log(const char *what, const char *path, int lines)
{
    char buf[16384];
    FILE *f = fopen(path, "r");
    size_t n;
    char *s;

    if (!f) {
        return;
    }
    if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > (long)sizeof(buf) - 1) {
        fseek(f, -(long)sizeof(buf) + 1, SEEK_END);
    } else {
        fseek(f, 0, SEEK_SET);
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    s = buf + n;
    while (s > buf && lines >= 0) {
        s--;
        if (*s == '\n' && s + 1 < buf + n) {
            lines--;
        }
    }
    if (*s == '\n') {
        s++;
    }
    fprintf(stderr, "---- %s (%s) ----\n%s", what, path, s);
    if (n && buf[n - 1] != '\n') {
        fputc('\n', stderr);
    }
}

/*
 * QEMU's report of a KVM failure in its log: the first line naming KVM
 * ("KVM internal error. Suberror: 1", "KVM: entry failed, hardware
 * error 0x...", "error: kvm run failed ..."), the reason line after it
 * ("emulation failure"), the instruction pointer, the code segment's
 * mode and the bytes of the failing instruction (<xx> in "Code=").
 */
static void copy_word(char *dst, size_t size, const char *src,
                      const char *stop)
{
    size_t n = strcspn(src, stop);

    snprintf(dst, size, "%.*s", (int)(n < size ? n : size - 1), src);
}

bool ivh_kvm_error(const char *path, char *buf, size_t size)
{
    static const char *const marks[] = {
        "KVM internal error", "KVM: entry failed", "kvm run failed", NULL,
    };
    char text[16384], first[128] = "", reason[64] = "", ip[32] = "";
    char mode[8] = "", code[48] = "";
    const char *s = NULL, *p, *nl;
    FILE *f = fopen(path, "r");
    size_t n = 0;
    int i;

    if (f) {
        n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
    }
    text[n] = 0;
    for (i = 0; marks[i] && !s; i++) {
        s = strstr(text, marks[i]);
    }
    if (!s) {
        return false;
    }
    while (s > text && s[-1] != '\n') {
        s--;
    }
    copy_word(first, sizeof(first), s, "\n");
    /* the reason: the first line after it that is not "extra data" */
    for (p = strchr(s, '\n'); p && p[1]; p = strchr(p + 1, '\n')) {
        if (strncmp(p + 1, "extra data", 10)) {
            if (strncmp(p + 1, "EAX=", 4) && strncmp(p + 1, "RAX=", 4)) {
                copy_word(reason, sizeof(reason), p + 1, "\n");
            }
            break;
        }
    }
    p = strstr(s, "EIP=");
    p = p ? p : strstr(s, "RIP=");
    if (p) {
        copy_word(ip, sizeof(ip), p, "\n\t ");
    }
    p = strstr(s, "\nCS =");
    nl = p ? strchr(p + 1, '\n') : NULL;
    if (p && nl) {
        const char *m = strstr(p, " CS");   /* " CS16", " CS32", " CS64" */

        if (m && m < nl) {
            copy_word(mode, sizeof(mode), m + 1, "\n\t ");
        }
    }
    p = strstr(s, "Code=");
    p = p ? strchr(p, '<') : NULL;
    if (p) {
        unsigned b[3];
        int k = sscanf(p, "<%2x> %2x %2x", &b[0], &b[1], &b[2]);

        for (i = 0; i < k; i++) {
            n = strlen(code);
            snprintf(code + n, sizeof(code) - n, "%s%02x", i ? " " : "",
                     b[i]);
        }
    }
    snprintf(buf, size, "%s%s%s%s%s%s%s%s", first, reason[0] ? ", " : "",
             reason, ip[0] ? " at " : "", ip, mode[0] ? " (" : "", mode,
             mode[0] ? ")" : "");
    if (code[0]) {
        n = strlen(buf);
        snprintf(buf + n, size - n, ", instruction bytes %s", code);
    }
    return true;
}

/* ivshmem server client */

static bool recv_msg(IvhClient *c, int64_t *val, int *fd, int64_t deadline)
{
    union {
        struct cmsghdr hdr;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct pollfd pfd = { .fd = c->sock, .events = POLLIN };
    char *data = (char *)val;
    size_t got = 0;
    struct cmsghdr *cm;
    struct msghdr msg;
    struct iovec iov;
    ssize_t n;

    *fd = -1;
    while (got < sizeof(*val)) {
        if (poll(&pfd, 1, remaining_ms(deadline)) <= 0) {
            fprintf(stderr, "ivsh-pingpong: server silent\n");
            return false;
        }
        iov.iov_base = data + got;
        iov.iov_len = sizeof(*val) - got;
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof(ctl.buf);
        n = recvmsg(c->sock, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            continue;
        }
        if (n <= 0) {
            fprintf(stderr, "ivsh-pingpong: server connection closed\n");
            return false;
        }
        for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
                cm->cmsg_len == CMSG_LEN(sizeof(int))) {
                if (*fd >= 0) {
                    close(*fd);
                }
                memcpy(fd, CMSG_DATA(cm), sizeof(int));
            }
        }
        got += n;
    }
    *val = le64toh(*val);
    return true;
}

static void drop_peer(IvhClient *c, int id)
{
    IvhPeer *p = &c->peers[id];
    unsigned i;

    for (i = 0; i < p->nfds; i++) {
        close(p->fds[i]);
    }
    p->nfds = 0;
    p->present = false;
}

static bool process_msg(IvhClient *c, int64_t val, int fd)
{
    IvhPeer *p;

    if (val < 0 || val >= IVH_MAX_PEERS) {
        fprintf(stderr, "ivsh-pingpong: server sent peer ID %lld\n",
                (long long)val);
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    p = &c->peers[val];
    if (fd < 0) {
        drop_peer(c, val);
        return true;
    }
    if (!p->present) {
        p->present = true;
        if (val != c->id && c->njoined < IVH_MAX_PEERS) {
            c->joined[c->njoined++] = val;
        }
    }
    if (p->nfds < IVH_MAX_VECTORS) {
        p->fds[p->nfds++] = fd;
    } else {
        close(fd);
    }
    return true;
}

bool ivh_client_connect(IvhClient *c, const char *path, unsigned vectors,
                        int64_t deadline)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int64_t val;
    struct stat st;
    int fd;

    memset(c, 0, sizeof(*c));
    c->shm_fd = -1;
    c->id = -1;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    for (;;) {
        c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->sock < 0) {
            return false;
        }
        if (connect(c->sock, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            break;
        }
        close(c->sock);
        c->sock = -1;
        if ((errno != ENOENT && errno != ECONNREFUSED) ||
            !remaining_ms(deadline)) {
            fprintf(stderr, "ivsh-pingpong: connect %s: %s\n", path,
                    strerror(errno));
            return false;
        }
        sleep_ms(5);            /* the server is still starting up */
    }
    if (!recv_msg(c, &val, &fd, deadline) || fd >= 0 ||
        val != IVSH_PROTOCOL_VERSION) {
        fprintf(stderr, "ivsh-pingpong: bad protocol version\n");
        return false;
    }
    if (!recv_msg(c, &val, &fd, deadline) || fd >= 0 || val < 0 ||
        val >= IVH_MAX_PEERS) {
        fprintf(stderr, "ivsh-pingpong: bad peer ID\n");
        return false;
    }
    c->id = val;
    if (!recv_msg(c, &val, &c->shm_fd, deadline) || val != -1 ||
        c->shm_fd < 0 || fstat(c->shm_fd, &st) < 0) {
        fprintf(stderr, "ivsh-pingpong: no shared memory from server\n");
        return false;
    }
    c->shm_size = st.st_size;
    c->shm = mmap(NULL, c->shm_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                  c->shm_fd, 0);
    if (c->shm == MAP_FAILED) {
        c->shm = NULL;
        fprintf(stderr, "ivsh-pingpong: mmap shared memory: %s\n",
                strerror(errno));
        return false;
    }
    while (c->peers[c->id].nfds < vectors) {
        if (!recv_msg(c, &val, &fd, deadline) || !process_msg(c, val, fd)) {
            return false;
        }
    }
    return true;
}

bool ivh_client_pump(IvhClient *c)
{
    struct pollfd pfd = { .fd = c->sock, .events = POLLIN };
    int64_t val;
    int fd;

    while (poll(&pfd, 1, 0) > 0) {
        if (!recv_msg(c, &val, &fd, ivh_now_ms() + 1000) ||
            !process_msg(c, val, fd)) {
            return false;
        }
    }
    return true;
}

bool ivh_client_ring(IvhClient *c, int id, unsigned vector)
{
    uint64_t one = 1;

    if (id < 0 || id >= IVH_MAX_PEERS || vector >= c->peers[id].nfds) {
        return false;
    }
    return write(c->peers[id].fds[vector], &one, 8) == 8;
}

void ivh_client_close(IvhClient *c)
{
    int i;

    for (i = 0; i < IVH_MAX_PEERS; i++) {
        drop_peer(c, i);
    }
    if (c->shm) {
        munmap(c->shm, c->shm_size);
        c->shm = NULL;
    }
    if (c->shm_fd >= 0) {
        close(c->shm_fd);
        c->shm_fd = -1;
    }
    if (c->sock >= 0) {
        close(c->sock);
        c->sock = -1;
    }
}

/* QMP */

/* Next line from QMP into q->buf (NUL-terminated); its length or -1 */
static int qmp_line(IvhQmp *q, int64_t deadline)
{
    struct pollfd pfd = { .fd = q->fd, .events = POLLIN };
    char *nl;
    ssize_t n;

    for (;;) {
        nl = memchr(q->buf, '\n', q->len);
        if (nl) {
            *nl = 0;
            return nl - q->buf;
        }
        if (q->len >= sizeof(q->buf) - 1 ||
            poll(&pfd, 1, remaining_ms(deadline)) <= 0) {
            return -1;
        }
        n = read(q->fd, q->buf + q->len, sizeof(q->buf) - 1 - q->len);
        if (n <= 0) {
            return -1;
        }
        q->len += n;
    }
}

static void qmp_consume(IvhQmp *q, int len)
{
    memmove(q->buf, q->buf + len + 1, q->len - len - 1);
    q->len -= len + 1;
}

/* Send @cmd; leave the reply (not an event) in q->buf; its length */
static int qmp_cmd(IvhQmp *q, const char *cmd, int64_t deadline)
{
    size_t n = strlen(cmd);
    int len;

    if (write(q->fd, cmd, n) != (ssize_t)n) {
        return -1;
    }
    for (;;) {
        len = qmp_line(q, deadline);
        if (len < 0) {
            return -1;
        }
        if (strstr(q->buf, "\"return\"") || strstr(q->buf, "\"error\"")) {
            return len;
        }
        qmp_consume(q, len);
    }
}

bool ivh_qmp_open(IvhQmp *q, const char *path, int64_t deadline)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int len;

    q->len = 0;
    q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&sa, sizeof(sa))) {
        fprintf(stderr, "ivsh-pingpong: QMP %s: %s\n", path, strerror(errno));
        ivh_qmp_close(q);
        return false;
    }
    len = qmp_line(q, deadline);            /* greeting */
    if (len < 0 || !strstr(q->buf, "QMP")) {
        ivh_qmp_close(q);
        return false;
    }
    qmp_consume(q, len);
    len = qmp_cmd(q, "{\"execute\": \"qmp_capabilities\"}\n", deadline);
    if (len < 0 || !strstr(q->buf, "\"return\"")) {
        ivh_qmp_close(q);
        return false;
    }
    qmp_consume(q, len);
    return true;
}

/* Sum of the values of statistic @name over all vCPUs in @reply */
static bool stat_value(const char *reply, const char *name, uint64_t *sum)
{
    char key[64];
    const char *p = reply, *v;
    bool found = false;
    uint64_t n;

    snprintf(key, sizeof(key), "\"name\": \"%s\"", name);
    *sum = 0;
    while ((p = strstr(p, key))) {
        p += strlen(key);
        v = strstr(p, "\"value\":");
        if (!v) {
            break;
        }
        v += strlen("\"value\":");
        while (*v == ' ') {
            v++;
        }
        for (n = 0; *v >= '0' && *v <= '9'; v++) {
            n = n * 10 + (*v - '0');
        }
        *sum += n;
        found = true;
    }
    return found;
}

bool ivh_qmp_stats(IvhQmp *q, IvhStats *st, int64_t deadline)
{
    static const char cmd[] =
        "{\"execute\": \"query-stats\", \"arguments\": {\"target\": \"vcpu\","
        " \"providers\": [{\"provider\": \"kvm\", \"names\": [\"exits\","
        " \"mmio_exits\", \"io_exits\", \"halt_exits\","
        " \"irq_injections\", \"insn_emulation\", \"halt_wakeup\","
        " \"halt_successful_poll\"]}]}}\n";
    int len;

    memset(st, 0, sizeof(*st));
    if (q->fd < 0) {
        return false;
    }
    len = qmp_cmd(q, cmd, deadline);
    if (len < 0) {
        return false;
    }
    st->valid = stat_value(q->buf, "mmio_exits", &st->mmio_exits);
    stat_value(q->buf, "exits", &st->exits);
    stat_value(q->buf, "io_exits", &st->io_exits);
    stat_value(q->buf, "halt_exits", &st->halt_exits);
    stat_value(q->buf, "irq_injections", &st->irq_injections);
    stat_value(q->buf, "insn_emulation", &st->insn_emulation);
    stat_value(q->buf, "halt_wakeup", &st->halt_wakeup);
    stat_value(q->buf, "halt_successful_poll", &st->halt_successful_poll);
    qmp_consume(q, len);
    return true;
}

bool ivh_qmp_exec(IvhQmp *q, const char *cmd, char *reply, size_t size,
                  int64_t deadline)
{
    char line[1024];
    bool ok;
    int len;

    if (q->fd < 0) {
        return false;
    }
    snprintf(line, sizeof(line), "%s\n", cmd);
    len = qmp_cmd(q, line, deadline);
    if (len < 0) {
        return false;
    }
    ok = strstr(q->buf, "\"return\"") != NULL;
    if (reply) {
        snprintf(reply, size, "%s", q->buf);
    }
    qmp_consume(q, len);
    return ok;
}

uint64_t ivh_thread_wakeups(pid_t pid, pid_t skip_tid)
{
    char path[64], text[4096];
    struct dirent *e;
    unsigned long long v;
    uint64_t sum = 0;
    const char *p;
    DIR *d;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    d = opendir(path);
    if (!d) {
        return 0;
    }
    while ((e = readdir(d))) {
        FILE *f;
        size_t n;

        if (e->d_name[0] == '.' || atoi(e->d_name) == skip_tid) {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid,
                 atoi(e->d_name));
        f = fopen(path, "r");
        if (!f) {
            continue;
        }
        n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
        text[n] = 0;
        p = strstr(text, "\nvoluntary_ctxt_switches:");
        if (p && sscanf(p, "\nvoluntary_ctxt_switches: %llu", &v) == 1) {
            sum += v;
        }
        p = strstr(text, "nonvoluntary_ctxt_switches:");
        if (p && sscanf(p, "nonvoluntary_ctxt_switches: %llu", &v) == 1) {
            sum += v;
        }
    }
    closedir(d);
    return sum;
}

void ivh_qmp_close(IvhQmp *q)
{
    if (q->fd >= 0) {
        close(q->fd);
    }
    q->fd = -1;
}
