/*
 * Hardware floors for the ivshmem benchmark: helpers shared by kvm-floor
 * and eventfd-pingpong (statistics, JSON, pinning, clocks, options)
 *
 * Copyright (c) 2026 The ivshmem project contributors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef FLOOR_COMMON_H
#define FLOOR_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>

#define FLOOR_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Exit status of a run that could not happen here (automake's SKIP) */
#define FLOOR_EXIT_SKIP 77

/* Latency statistics, in microseconds */
typedef struct FloorStats {
    uint64_t count;
    double min;
    double mean;
    double p50;
    double p90;
    double p99;
    double p999;
    double max;
} FloorStats;

/*
 * Sort @samples (@n raw ticks) in place and fill @st; one tick lasts
 * @ns_per_tick nanoseconds.  Percentiles are nearest-rank.
 */
void floor_stats_compute(FloorStats *st, uint64_t *samples, uint64_t n,
                         double ns_per_tick);

/* Print @st as a JSON object member "key": {...} (no trailing comma) */
void floor_stats_json(FILE *f, const char *key, const FloorStats *st);

/* "p50 1.234 us, p90 ..., max ... us" */
void floor_stats_line(FILE *f, const FloorStats *st);

/* Print "key": "value" with JSON escaping (no trailing comma) */
void floor_json_str(FILE *f, const char *key, const char *value);

/* "host": {"kernel": ..., "cpu": ..., "cpus_online": ...} */
void floor_host_json(FILE *f);

/* CLOCK_MONOTONIC in nanoseconds */
uint64_t floor_now_ns(void);

static inline uint64_t floor_rdtsc(void)
{
    uint32_t lo, hi;

    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/* Host TSC frequency in kHz, measured against CLOCK_MONOTONIC_RAW */
uint64_t floor_tsc_khz_calibrate(void);

/* Pin @thread to @cpu; false (with a message) when that fails */
bool floor_pin(const char *prog, pthread_t thread, int cpu);

/*
 * Whether this process may run on both @cpus.  With @explicit (the user
 * chose them) a missing CPU is an error, else a warning; either way the
 * caller then does not pin.
 */
bool floor_cpus_usable(const char *prog, const int cpus[2], bool explicit);

/* Parse a decimal unsigned number; false on junk or overflow */
bool floor_parse_u64(const char *s, uint64_t *val);

/* Parse "A,B" into two CPU numbers */
bool floor_parse_cpus(const char *s, int cpus[2]);

/* The options both floors take: --cpus, --no-pin, --timeout, --json, -q */
typedef struct FloorOpts {
    bool pin;
    bool json;
    bool quiet;
    bool cpus_given;
    int cpus[2];
    uint64_t timeout_s;
} FloorOpts;

enum {
    FLOOR_OPT_CPUS = 256,       /* getopt_long values of the long options */
    FLOOR_OPT_NO_PIN,
    FLOOR_OPT_TIMEOUT,
    FLOOR_OPT_JSON,
    FLOOR_OPT_OWN,              /* a program's own long options from here */
};

/* Defaults: pinned to CPUs 0 and 1, @timeout_s */
void floor_opts_init(FloorOpts *o, uint64_t timeout_s);

/*
 * Take getopt's @c (with @arg): 1 if it was one of FLOOR_OPT_* or 'q',
 * 0 if it is not, -1 for a bad value (after a message on stderr).
 */
int floor_opts_take(const char *prog, FloorOpts *o, int c, const char *arg);

/*
 * After the options: drop pinning when the CPUs are not ours (a warning),
 * or fail when the user chose them (an error).  False: exit with 2.
 */
bool floor_opts_finish(const char *prog, FloorOpts *o);

/*
 * Progress on stderr at most once a second, once a run has lasted
 * @after_ns: "\r"-updated on a terminal, one line per 5 s otherwise.
 * floor_progress_end() clears a terminal line.
 */
typedef struct FloorProgress {
    const char *prog;
    const char *what;
    uint64_t start_ns;
    uint64_t last_ns;
    bool tty;
    bool shown;
    bool quiet;
} FloorProgress;

void floor_progress_init(FloorProgress *p, const char *prog,
                         const char *what, bool quiet);
void floor_progress(FloorProgress *p, uint64_t done, uint64_t total);
void floor_progress_end(FloorProgress *p);

#endif
