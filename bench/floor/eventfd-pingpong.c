/*
 * eventfd-pingpong: the host notification floor (benchmark floor f2)
 *
 * Two threads (or, with --fork, two processes) bounce a token through a
 * pair of eventfds: the initiator writes "ping", the responder reads it
 * and writes "pong", the initiator reads that.  The initiator times each
 * round trip with clock_gettime(CLOCK_MONOTONIC).  This is what any
 * doorbell path that crosses host threads costs at least, in two modes:
 *
 *   block  blocking read(): the reader sleeps and is woken; on a nested
 *          hypervisor an idle-CPU wake-up costs tens of microseconds
 *   poll   non-blocking read() in a loop: the syscall cost only
 *
 * The two sides are pinned to CPUs 0 and 1 unless told otherwise.
 *
 * Copyright (c) 2026 The ivshmem project contributors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "floor-common.h"

#define PROG "eventfd-pingpong"

#define TOKEN_PING  1
#define TOKEN_STOP  2

typedef struct Bench {
    FloorOpts o;
    bool poll;
    bool fork;
    uint64_t n;
    uint64_t warmup;

    int ping_fd;
    int pong_fd;
    uint64_t *samples;
    uint64_t done;              /* round trips so far (atomic) */
    int finished;               /* atomic */
    int error;                  /* errno of a failed read/write, atomic */
    uint64_t t_start_ns;
    uint64_t t_end_ns;
    long ctxsw;                 /* initiator context switches, measured */
} Bench;

static Bench bench;

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " [options]\n"
"Host-only eventfd ping-pong between two threads (or processes).\n"
"\n"
"  -m, --mode MODE      block (blocking read) or poll (busy-polling\n"
"                       non-blocking read); default block\n"
"  -n N                 measured round trips (default 100000)\n"
"  -w, --warmup N       warm-up round trips first (default 10000)\n"
"      --fork           two processes instead of two threads\n"
"      --cpus A,B       pin initiator to CPU A, responder to B (default 0,1)\n"
"      --no-pin         do not pin\n"
"      --timeout S      fail when no round trip completes for S seconds\n"
"                       (default 10)\n"
"      --json           print one JSON object instead of the summary\n"
"  -q, --quiet          no progress line\n"
"  -h, --help           this help\n");
}

static bool wait_token(int fd, bool poll, uint64_t *val)
{
    for (;;) {
        ssize_t r = read(fd, val, sizeof(*val));

        if (r == sizeof(*val)) {
            return true;
        }
        if (r < 0 && errno == EAGAIN && poll) {
            continue;
        }
        if (r < 0 && errno == EINTR) {
            continue;
        }
        return false;
    }
}

static bool send_token(int fd, uint64_t val)
{
    ssize_t r;

    do {
        r = write(fd, &val, sizeof(val));
    } while (r < 0 && errno == EINTR);
    return r == sizeof(val);
}

static void set_error(int err)
{
    __atomic_store_n(&bench.error, err ? err : EIO, __ATOMIC_SEQ_CST);
}

static long ctx_switches(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_THREAD, &ru) < 0) {
        return 0;
    }
    return ru.ru_nvcsw + ru.ru_nivcsw;
}

static void responder(void)
{
    uint64_t val;

    if (bench.o.pin) {
        floor_pin(PROG, pthread_self(), bench.o.cpus[1]);
    }
    for (;;) {
        if (!wait_token(bench.ping_fd, bench.poll, &val)) {
            set_error(errno);
            return;
        }
        if (val != TOKEN_PING) {
            return;
        }
        if (!send_token(bench.pong_fd, TOKEN_PING)) {
            set_error(errno);
            return;
        }
    }
}

static void *responder_thread(void *opaque)
{
    responder();
    return NULL;
}

static void *initiator_thread(void *opaque)
{
    uint64_t total = bench.warmup + bench.n;
    uint64_t i, t0, t1, val;
    long cs0 = 0;

    if (bench.o.pin) {
        floor_pin(PROG, pthread_self(), bench.o.cpus[0]);
    }
    for (i = 0; i < total; i++) {
        if (i == bench.warmup) {
            bench.t_start_ns = floor_now_ns();
            cs0 = ctx_switches();
        }
        t0 = floor_now_ns();
        if (!send_token(bench.ping_fd, TOKEN_PING) ||
            !wait_token(bench.pong_fd, bench.poll, &val)) {
            set_error(errno);
            goto out;
        }
        t1 = floor_now_ns();
        if (i >= bench.warmup) {
            bench.samples[i - bench.warmup] = t1 - t0;
        }
        __atomic_store_n(&bench.done, i + 1, __ATOMIC_RELAXED);
    }
    bench.t_end_ns = floor_now_ns();
    bench.ctxsw = ctx_switches() - cs0;
    send_token(bench.ping_fd, TOKEN_STOP);
out:
    __atomic_store_n(&bench.finished, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void report(void)
{
    FloorStats st;
    double secs = (bench.t_end_ns - bench.t_start_ns) / 1e9;
    double rate = secs > 0 ? bench.n / secs : 0;
    const char *mode = bench.poll ? "poll" : "block";

    floor_stats_compute(&st, bench.samples, bench.n, 1.0);
    if (!bench.o.json) {
        printf(PROG ": %s%s: %llu round trips, ", mode,
               bench.fork ? " (processes)" : "",
               (unsigned long long)bench.n);
        floor_stats_line(stdout, &st);
        printf(" us, %.0f RT/s, %s\n", rate,
               bench.o.pin ? "pinned" : "not pinned");
        return;
    }
    printf("{\"tool\": \"" PROG "\", \"mode\": \"%s\", "
           "\"sides\": \"%s\", \"n\": %llu, \"warmup\": %llu, "
           "\"completed\": %llu, ",
           mode, bench.fork ? "processes" : "threads",
           (unsigned long long)bench.n, (unsigned long long)bench.warmup,
           (unsigned long long)bench.n);
    if (bench.o.pin) {
        printf("\"pinned\": true, \"cpus\": [%d, %d], ",
               bench.o.cpus[0], bench.o.cpus[1]);
    } else {
        printf("\"pinned\": false, \"cpus\": null, ");
    }
    printf("\"clock\": \"clock_gettime\", ");
    floor_stats_json(stdout, "latency", &st);
    printf(", \"rt_per_s\": %.1f, \"wall_s\": %.3f, "
           "\"initiator_ctx_switches_per_rt\": %.3f, ",
           rate, secs, bench.n ? (double)bench.ctxsw / bench.n : 0.0);
    floor_host_json(stdout);
    printf("}\n");
}

static int run(void)
{
    pthread_t init_th, resp_th;
    pid_t child = -1;
    FloorProgress prog;
    uint64_t last_done = 0, last_change;
    int flags = bench.poll ? EFD_NONBLOCK : 0;
    int err;

    bench.ping_fd = eventfd(0, flags | EFD_CLOEXEC);
    bench.pong_fd = eventfd(0, flags | EFD_CLOEXEC);
    if (bench.ping_fd < 0 || bench.pong_fd < 0) {
        fprintf(stderr, PROG ": eventfd: %s\n", strerror(errno));
        return 1;
    }
    bench.samples = calloc(bench.n ? bench.n : 1, sizeof(uint64_t));
    if (!bench.samples) {
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }

    if (bench.fork) {
        fflush(NULL);
        child = fork();
        if (child < 0) {
            fprintf(stderr, PROG ": fork: %s\n", strerror(errno));
            return 1;
        }
        if (child == 0) {
            responder();
            _exit(bench.error ? 1 : 0);
        }
    } else {
        err = pthread_create(&resp_th, NULL, responder_thread, NULL);
        if (err) {
            fprintf(stderr, PROG ": pthread_create: %s\n", strerror(err));
            return 1;
        }
    }
    err = pthread_create(&init_th, NULL, initiator_thread, NULL);
    if (err) {
        fprintf(stderr, PROG ": pthread_create: %s\n", strerror(err));
        return 1;
    }

    floor_progress_init(&prog, PROG, bench.poll ? "poll" : "block",
                        bench.o.quiet || bench.o.json);
    last_change = floor_now_ns();
    while (!__atomic_load_n(&bench.finished, __ATOMIC_SEQ_CST)) {
        struct timespec ts = { 0, 50000000 };
        uint64_t done = __atomic_load_n(&bench.done, __ATOMIC_RELAXED);
        uint64_t now = floor_now_ns();

        nanosleep(&ts, NULL);
        floor_progress(&prog, done, bench.warmup + bench.n);
        if (done != last_done) {
            last_done = done;
            last_change = now;
        } else if (now - last_change > bench.o.timeout_s * 1000000000ull) {
            floor_progress_end(&prog);
            fprintf(stderr, PROG ": stalled: no round trip for %llu s "
                    "after %llu of %llu\n",
                    (unsigned long long)bench.o.timeout_s,
                    (unsigned long long)done,
                    (unsigned long long)(bench.warmup + bench.n));
            if (child > 0) {
                kill(child, SIGKILL);
            }
            return 1;
        }
    }
    floor_progress_end(&prog);
    pthread_join(init_th, NULL);
    if (bench.error) {
        /* the responder may be blocked for good: exit() ends it */
        fprintf(stderr, PROG ": eventfd read/write failed: %s\n",
                strerror(bench.error));
        if (child > 0) {
            kill(child, SIGKILL);
        }
        return 1;
    }
    if (child > 0) {
        int status;

        if (waitpid(child, &status, 0) < 0 || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0) {
            fprintf(stderr, PROG ": responder process failed\n");
            return 1;
        }
    } else {
        pthread_join(resp_th, NULL);
    }
    report();
    return 0;
}

int main(int argc, char **argv)
{
    enum {
        OPT_FORK = FLOOR_OPT_OWN,
    };
    static const struct option longopts[] = {
        { "mode", required_argument, NULL, 'm' },
        { "warmup", required_argument, NULL, 'w' },
        { "fork", no_argument, NULL, OPT_FORK },
        { "cpus", required_argument, NULL, FLOOR_OPT_CPUS },
        { "no-pin", no_argument, NULL, FLOOR_OPT_NO_PIN },
        { "timeout", required_argument, NULL, FLOOR_OPT_TIMEOUT },
        { "json", no_argument, NULL, FLOOR_OPT_JSON },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c, r;

    floor_opts_init(&bench.o, 10);
    bench.n = 100000;
    bench.warmup = 10000;

    while ((c = getopt_long(argc, argv, "m:n:w:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            if (strcmp(optarg, "block") == 0) {
                bench.poll = false;
            } else if (strcmp(optarg, "poll") == 0) {
                bench.poll = true;
            } else {
                fprintf(stderr, PROG ": unknown mode '%s' "
                        "(block or poll)\n", optarg);
                return 2;
            }
            break;
        case 'n':
            if (!floor_parse_u64(optarg, &bench.n) || bench.n == 0 ||
                bench.n > (1ull << 32)) {
                fprintf(stderr, PROG ": bad -n '%s'\n", optarg);
                return 2;
            }
            break;
        case 'w':
            if (!floor_parse_u64(optarg, &bench.warmup) ||
                bench.warmup > (1ull << 32)) {
                fprintf(stderr, PROG ": bad --warmup '%s'\n", optarg);
                return 2;
            }
            break;
        case OPT_FORK:
            bench.fork = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            r = floor_opts_take(PROG, &bench.o, c, optarg);
            if (r < 0) {
                return 2;
            }
            if (r == 0) {
                usage(stderr);
                return 2;
            }
            break;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!floor_opts_finish(PROG, &bench.o)) {
        return 2;
    }
    return run();
}
