/*
 * Hardware floors for the ivshmem benchmark: shared helpers
 *
 * Copyright (c) 2026 The ivshmem project contributors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/utsname.h>

#include "floor-common.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static double rank(const uint64_t *sorted, uint64_t n, double p)
{
    /* nearest rank: the smallest sample >= p of all samples */
    double r = p * n;
    uint64_t i = (uint64_t)r;

    if ((double)i < r) {
        i++;
    }
    if (i > 0) {
        i--;
    }
    if (i >= n) {
        i = n - 1;
    }
    return (double)sorted[i];
}

void floor_stats_compute(FloorStats *st, uint64_t *samples, uint64_t n,
                         double ns_per_tick)
{
    double k = ns_per_tick / 1000.0;
    long double sum = 0;
    uint64_t i;

    memset(st, 0, sizeof(*st));
    st->count = n;
    if (n == 0) {
        return;
    }
    qsort(samples, n, sizeof(samples[0]), cmp_u64);
    for (i = 0; i < n; i++) {
        sum += samples[i];
    }
    st->min = samples[0] * k;
    st->mean = (double)(sum / n) * k;
    st->p50 = rank(samples, n, 0.50) * k;
    st->p90 = rank(samples, n, 0.90) * k;
    st->p99 = rank(samples, n, 0.99) * k;
    st->p999 = rank(samples, n, 0.999) * k;
    st->max = samples[n - 1] * k;
}

void floor_stats_json(FILE *f, const char *key, const FloorStats *st)
{
    fprintf(f, "\"%s\": {\"unit\": \"us\", \"count\": %llu, "
            "\"min\": %.3f, \"mean\": %.3f, \"p50\": %.3f, "
            "\"p90\": %.3f, \"p99\": %.3f, \"p99_9\": %.3f, "
            "\"max\": %.3f}",
            key, (unsigned long long)st->count, st->min, st->mean,
            st->p50, st->p90, st->p99, st->p999, st->max);
}

void floor_stats_line(FILE *f, const FloorStats *st)
{
    fprintf(f, "p50 %.2f us, p90 %.2f, p99 %.2f, p99.9 %.2f, max %.2f",
            st->p50, st->p90, st->p99, st->p999, st->max);
}

void floor_json_str(FILE *f, const char *key, const char *value)
{
    const unsigned char *p;

    fprintf(f, "\"%s\": \"", key);
    for (p = (const unsigned char *)value; *p; p++) {
        if (*p == '"' || *p == '\\') {
            fprintf(f, "\\%c", *p);
        } else if (*p < 0x20) {
            fprintf(f, "\\u%04x", *p);
        } else {
            fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void cpu_model(char *buf, size_t size)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];

    snprintf(buf, size, "unknown");
    if (!f) {
        return;
    }
    while (fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':');

        if (strncmp(line, "model name", 10) == 0 && colon) {
            colon++;
            while (*colon == ' ' || *colon == '\t') {
                colon++;
            }
            colon[strcspn(colon, "\n")] = '\0';
            snprintf(buf, size, "%s", colon);
            break;
        }
    }
    fclose(f);
}

void floor_host_json(FILE *f)
{
    struct utsname u;
    char model[128];

    if (uname(&u) < 0) {
        snprintf(u.release, sizeof(u.release), "unknown");
    }
    cpu_model(model, sizeof(model));
    fprintf(f, "\"host\": {");
    floor_json_str(f, "kernel", u.release);
    fprintf(f, ", ");
    floor_json_str(f, "cpu", model);
    fprintf(f, ", \"cpus_online\": %ld}", sysconf(_SC_NPROCESSORS_ONLN));
}

uint64_t floor_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t raw_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

uint64_t floor_tsc_khz_calibrate(void)
{
    uint64_t t0, t1, c0, c1;

    t0 = raw_ns();
    c0 = floor_rdtsc();
    do {
        t1 = raw_ns();
    } while (t1 - t0 < 20000000);
    c1 = floor_rdtsc();
    return (c1 - c0) * 1000000ull / (t1 - t0);
}

bool floor_pin(const char *prog, pthread_t thread, int cpu)
{
    cpu_set_t set;
    int err;

    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    err = pthread_setaffinity_np(thread, sizeof(set), &set);
    if (err) {
        fprintf(stderr, "%s: cannot pin a thread to CPU %d: %s\n",
                prog, cpu, strerror(err));
        return false;
    }
    return true;
}

bool floor_cpus_usable(const char *prog, const int cpus[2], bool explicit)
{
    cpu_set_t set;
    int i;

    if (sched_getaffinity(0, sizeof(set), &set) < 0) {
        CPU_ZERO(&set);
    }
    for (i = 0; i < 2; i++) {
        if (!CPU_ISSET(cpus[i], &set)) {
            fprintf(stderr, "%s: %s: CPU %d is not available%s\n", prog,
                    explicit ? "error" : "warning", cpus[i],
                    explicit ? " (--cpus)" : ", not pinning");
            return false;
        }
    }
    return true;
}

bool floor_parse_u64(const char *s, uint64_t *val)
{
    uint64_t v = 0;

    if (!s || !*s) {
        return false;
    }
    for (; *s; s++) {
        unsigned d;

        if (*s < '0' || *s > '9') {
            return false;
        }
        d = *s - '0';
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *val = v;
    return true;
}

bool floor_parse_cpus(const char *s, int cpus[2])
{
    char buf[64];
    char *comma;
    uint64_t a, b;

    if (strlen(s) >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, s, strlen(s) + 1);
    comma = strchr(buf, ',');
    if (!comma) {
        return false;
    }
    *comma = '\0';
    if (!floor_parse_u64(buf, &a) || !floor_parse_u64(comma + 1, &b) ||
        a >= CPU_SETSIZE || b >= CPU_SETSIZE) {
        return false;
    }
    cpus[0] = a;
    cpus[1] = b;
    return true;
}

void floor_progress_init(FloorProgress *p, const char *prog,
                         const char *what, bool quiet)
{
    memset(p, 0, sizeof(*p));
    p->prog = prog;
    p->what = what;
    p->quiet = quiet;
    p->tty = isatty(STDERR_FILENO);
    p->start_ns = floor_now_ns();
    p->last_ns = p->start_ns;
}

void floor_progress(FloorProgress *p, uint64_t done, uint64_t total)
{
    uint64_t now = floor_now_ns();
    uint64_t every = p->tty ? 1000000000ull : 5000000000ull;

    if (p->quiet || now - p->start_ns < 2000000000ull ||
        now - p->last_ns < every) {
        return;
    }
    p->last_ns = now;
    p->shown = true;
    fprintf(stderr, "%s%s: %s: %llu/%llu round trips, %.0f s%s",
            p->tty ? "\r" : "", p->prog, p->what,
            (unsigned long long)done, (unsigned long long)total,
            (now - p->start_ns) / 1e9, p->tty ? "\033[K" : "\n");
}

void floor_progress_end(FloorProgress *p)
{
    if (p->shown && p->tty) {
        fprintf(stderr, "\r\033[K");
    }
    p->shown = false;
}

void floor_opts_init(FloorOpts *o, uint64_t timeout_s)
{
    memset(o, 0, sizeof(*o));
    o->pin = true;
    o->cpus[0] = 0;
    o->cpus[1] = 1;
    o->timeout_s = timeout_s;
}

int floor_opts_take(const char *prog, FloorOpts *o, int c, const char *arg)
{
    switch (c) {
    case FLOOR_OPT_CPUS:
        if (!floor_parse_cpus(arg, o->cpus)) {
            fprintf(stderr, "%s: bad --cpus '%s' (want A,B)\n", prog, arg);
            return -1;
        }
        o->pin = true;
        o->cpus_given = true;
        return 1;
    case FLOOR_OPT_NO_PIN:
        o->pin = false;
        return 1;
    case FLOOR_OPT_TIMEOUT:
        if (!floor_parse_u64(arg, &o->timeout_s) || o->timeout_s == 0 ||
            o->timeout_s > 86400) {
            fprintf(stderr, "%s: bad --timeout '%s'\n", prog, arg);
            return -1;
        }
        return 1;
    case FLOOR_OPT_JSON:
        o->json = true;
        return 1;
    case 'q':
        o->quiet = true;
        return 1;
    default:
        return 0;
    }
}

bool floor_opts_finish(const char *prog, FloorOpts *o)
{
    if (o->pin && !floor_cpus_usable(prog, o->cpus, o->cpus_given)) {
        if (o->cpus_given) {
            return false;
        }
        o->pin = false;
    }
    return true;
}
