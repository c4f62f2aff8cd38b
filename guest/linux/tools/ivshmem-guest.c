/*
 * ivshmem-guest: command line tool for the inter-VM shared memory device,
 * run inside a Linux guest
 *
 * A thin front end to libivshmem-guest (guest/linux/lib/ivshmem-guest.h): every
 * command opens the device (-d BDF, else the first one), does one thing
 * and reports it in one line or a few; errors are one line on stderr and
 * the exit status says what went wrong (see usage()).
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/misc/ivsh-regs.h"
#include "ivshmem-guest.h"

#define EXIT_USAGE          2
#define EXIT_NODEV          3
#define EXIT_VECTOR         4
#define EXIT_TIMEOUT        5

#define DUMP_DEFAULT_LEN    256

static const char *prog = "ivshmem-guest";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [-d BDF] COMMAND [ARGS]\n"
"\n"
"Commands:\n"
"  list                          ivshmem functions, one per line\n"
"  info                          details of the device\n"
"  id                            own peer ID (IVPosition)\n"
"  read OFF LEN [--hex]          LEN bytes at OFF (text up to a NUL)\n"
"  write OFF STRING              STRING and a NUL at OFF\n"
"  write OFF --hex HEX           bytes given as hex digits at OFF\n"
"  dump [OFF [LEN]]              hex dump (default 256 bytes at 0)\n"
"  expect OFF STRING [--timeout MS]\n"
"                                wait until STRING is at OFF\n"
"  ring PEER VECTOR [--count N]  ring PEER's doorbell on VECTOR\n"
"  wait VECTOR [--timeout MS] [--count N]\n"
"                                wait for N interrupts (default 1)\n"
"  ping PEER [--vectors LIST] [--count N] [--timeout MS]\n"
"                                ring PEER on each vector, time replies\n"
"  pong PEER [--vectors LIST] [--count N] [--timeout MS]\n"
"                                answer N doorbells per vector\n"
"  irqs                          interrupts delivered per vector\n"
"\n"
"Numbers may be hex (0x...) and offsets take K/M suffixes; LIST is like\n"
"0,2-3.  Timeouts are in milliseconds, default: wait forever.\n"
"\n"
"Exit status: 0 success, 1 error, 2 usage, 3 no device, 4 bad vector or\n"
"not supported by the device, 5 timeout.\n", prog);
}

/* One line on stderr, optionally after @ctx; returns the exit status */
static int report_in(const char *ctx, const IvgError *err)
{
    fprintf(stderr, "%s: %s%s%s\n", prog, ctx ? ctx : "", ctx ? ": " : "",
            err->msg);
    switch (err->code) {
    case IVG_ERR_NODEV:
        return EXIT_NODEV;
    case IVG_ERR_VECTOR:
    case IVG_ERR_NOTSUP:
        return EXIT_VECTOR;
    case IVG_ERR_TIMEOUT:
        return EXIT_TIMEOUT;
    case IVG_ERR_RANGE:
        return EXIT_USAGE;
    default:
        return EXIT_FAILURE;
    }
}

static int report(const IvgError *err)
{
    return report_in(NULL, err);
}

static int bad_usage(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static int bad_usage(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try --help)\n");
    return EXIT_USAGE;
}

/* Parse decimal or 0x hex, with an optional K/M/G suffix if @suffix */
static bool parse_u64(const char *s, bool suffix, uint64_t *out)
{
    uint64_t v = 0, base = 10, d, mult = 1;
    const char *p = s;

    if (!*p) {
        return false;
    }
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
        if (!isxdigit((unsigned char)*p)) {
            return false;
        }
    }
    for (; *p; p++) {
        if (isdigit((unsigned char)*p)) {
            d = *p - '0';
        } else if (base == 16 && isxdigit((unsigned char)*p)) {
            d = tolower((unsigned char)*p) - 'a' + 10;
        } else {
            break;
        }
        if (v > (UINT64_MAX - d) / base) {
            return false;
        }
        v = v * base + d;
    }
    if (*p && suffix && !p[1]) {
        switch (toupper((unsigned char)*p)) {
        case 'K':
            mult = 1ULL << 10;
            break;
        case 'M':
            mult = 1ULL << 20;
            break;
        case 'G':
            mult = 1ULL << 30;
            break;
        default:
            return false;
        }
        p++;
    }
    if (*p || v > UINT64_MAX / mult) {
        return false;
    }
    *out = v * mult;
    return true;
}

static bool parse_uint(const char *s, unsigned max, unsigned *out)
{
    uint64_t v;

    if (!parse_u64(s, false, &v) || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* "0,2-3" -> {0, 2, 3} */
static bool parse_list(const char *s, unsigned *out, unsigned max,
                       unsigned *n)
{
    char buf[256], *tok, *save = NULL, *dash;
    unsigned lo, hi, v;

    *n = 0;
    if (strlen(s) >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, s, strlen(s) + 1);
    for (tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        dash = strchr(tok, '-');
        if (dash) {
            *dash = '\0';
        }
        if (!parse_uint(tok, IVSH_DOORBELL_VECTOR_MASK, &lo)) {
            return false;
        }
        hi = lo;
        if (dash && !parse_uint(dash + 1, IVSH_DOORBELL_VECTOR_MASK, &hi)) {
            return false;
        }
        if (hi < lo) {
            return false;
        }
        for (v = lo; v <= hi; v++) {
            unsigned i;

            for (i = 0; i < *n; i++) {
                if (out[i] == v) {
                    return false;       /* each vector once */
                }
            }
            if (*n == max) {
                return false;
            }
            out[(*n)++] = v;
        }
    }
    return *n > 0;
}

/* Options shared by several commands */
typedef struct Opts {
    int timeout_ms;
    uint64_t count;
    bool count_set;
    bool hex;
    const char *hex_arg;
    const char *vectors;
    const char *pos[3];
    unsigned npos;
} Opts;

static int parse_opts(int argc, char **argv, Opts *o)
{
    uint64_t v;
    int i;

    memset(o, 0, sizeof(*o));
    o->timeout_ms = -1;
    o->count = 1;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (!strcmp(a, "--timeout") || !strcmp(a, "--count") ||
            !strcmp(a, "--vectors")) {
            if (!val) {
                return bad_usage("%s needs a value", a);
            }
            i++;
            if (!strcmp(a, "--vectors")) {
                o->vectors = val;
            } else if (!parse_u64(val, false, &v) ||
                       (a[2] == 't' && v > INT32_MAX)) {
                return bad_usage("bad number for %s: '%s'", a, val);
            } else if (a[2] == 't') {
                o->timeout_ms = v;
            } else {
                o->count = v;
                o->count_set = true;
            }
        } else if (!strcmp(a, "--hex")) {
            o->hex = true;
        } else if (a[0] == '-' && a[1] == '-') {
            return bad_usage("unknown option '%s'", a);
        } else if (o->npos < 3) {
            o->pos[o->npos++] = a;
        } else {
            return bad_usage("too many arguments");
        }
    }
    return 0;
}

static void print_size(const char *label, uint64_t size, uint64_t addr)
{
    if (!size) {
        printf("%s: none\n", label);
    } else {
        printf("%s: %" PRIu64 " bytes at 0x%" PRIx64 "\n", label, size, addr);
    }
}

static int cmd_list(void)
{
    IvgInfo infos[IVG_MAX_DEVICES];
    IvgError err;
    int n, i;

    n = ivg_list(infos, IVG_MAX_DEVICES, &err);
    if (n < 0) {
        return report(&err);
    }
    for (i = 0; i < n && i < IVG_MAX_DEVICES; i++) {
        printf("%s %04x:%04x rev %u %-11s shm %" PRIu64 " vectors %u "
               "driver %s\n", infos[i].bdf, infos[i].vendor_id,
               infos[i].device_id, infos[i].revision,
               ivg_mode_name(infos[i].mode), infos[i].bar_size[IVSH_BAR_SHM],
               infos[i].msix_vectors,
               infos[i].driver[0] ? infos[i].driver : "none");
    }
    if (!n) {
        fprintf(stderr, "%s: no ivshmem device found\n", prog);
        return EXIT_NODEV;
    }
    return 0;
}

static int cmd_info(IvgDevice *dev)
{
    const IvgInfo *in = ivg_info(dev);

    printf("bdf: %s\n", in->bdf);
    printf("id: %04x:%04x\n", in->vendor_id, in->device_id);
    printf("revision: %u\n", in->revision);
    printf("mode: %s\n", ivg_mode_name(in->mode));
    print_size("bar0", in->bar_size[IVSH_BAR_REGS],
               in->bar_addr[IVSH_BAR_REGS]);
    print_size("bar1", in->bar_size[IVSH_BAR_MSIX],
               in->bar_addr[IVSH_BAR_MSIX]);
    print_size("bar2", in->bar_size[IVSH_BAR_SHM],
               in->bar_addr[IVSH_BAR_SHM]);
    if (in->msix_vectors) {
        printf("interrupts: msix %u vectors\n", in->msix_vectors);
    } else if (in->irq_pin) {
        printf("interrupts: intx pin %c\n", 'A' + in->irq_pin - 1);
    } else {
        printf("interrupts: none\n");
    }
    printf("driver: %s%s%s\n", in->driver[0] ? in->driver : "none",
           in->devnode[0] ? " " : "", in->devnode);
    printf("usable-vectors: %u\n", ivg_vectors(dev));
    printf("ivposition: %" PRIu32 "\n", ivg_ivposition(dev));
    printf("shm-mapping: %s\n", ivg_shm_mapping(dev));
    return 0;
}

static int cmd_read(IvgDevice *dev, const Opts *o)
{
    uint64_t off, len, i;
    IvgError err;
    uint8_t *buf;
    int ret = 0;

    if (o->npos != 2 || !parse_u64(o->pos[0], true, &off) ||
        !parse_u64(o->pos[1], true, &len)) {
        return bad_usage("usage: read OFF LEN [--hex]");
    }
    if (len > ivg_shm_size(dev)) {
        return bad_usage("length %" PRIu64 " larger than the shared memory",
                         len);
    }
    buf = malloc(len + 1);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return EXIT_FAILURE;
    }
    if (!ivg_read(dev, off, buf, len, &err)) {
        ret = report(&err);
    } else if (o->hex) {
        for (i = 0; i < len; i++) {
            printf("%02x", buf[i]);
        }
        printf("\n");
    } else {
        buf[len] = '\0';
        for (i = 0; i < len && buf[i]; i++) {
            putchar(isprint(buf[i]) || buf[i] == '\n' ? buf[i] : '.');
        }
        printf("\n");
    }
    free(buf);
    return ret;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int cmd_write(IvgDevice *dev, const Opts *o)
{
    const char *data;
    uint64_t off;
    size_t len, i;
    IvgError err;
    uint8_t *buf;
    bool ok;

    if (o->npos != 2 || !parse_u64(o->pos[0], true, &off)) {
        return bad_usage("usage: write OFF STRING | write OFF --hex HEX");
    }
    data = o->pos[1];
    if (!o->hex) {
        ok = ivg_write(dev, off, data, strlen(data) + 1, &err);
        return ok ? 0 : report(&err);
    }
    len = strlen(data);
    if (len % 2) {
        return bad_usage("odd number of hex digits");
    }
    buf = malloc(len / 2 + 1);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return EXIT_FAILURE;
    }
    for (i = 0; i < len / 2; i++) {
        int hi = hex_digit(data[2 * i]), lo = hex_digit(data[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            free(buf);
            return bad_usage("bad hex digits '%.2s'", data + 2 * i);
        }
        buf[i] = hi << 4 | lo;
    }
    ok = ivg_write(dev, off, buf, len / 2, &err);
    free(buf);
    return ok ? 0 : report(&err);
}

static int cmd_dump(IvgDevice *dev, const Opts *o)
{
    uint64_t off = 0, len = DUMP_DEFAULT_LEN, i, j;
    uint8_t line[16];
    IvgError err;

    if ((o->npos >= 1 && !parse_u64(o->pos[0], true, &off)) ||
        (o->npos >= 2 && !parse_u64(o->pos[1], true, &len)) ||
        o->npos > 2) {
        return bad_usage("usage: dump [OFF [LEN]]");
    }
    if (o->npos < 2 && off < ivg_shm_size(dev) &&
        len > ivg_shm_size(dev) - off) {
        len = ivg_shm_size(dev) - off;
    }
    for (i = 0; i < len; i += 16) {
        uint64_t n = len - i < 16 ? len - i : 16;

        if (!ivg_read(dev, off + i, line, n, &err)) {
            return report(&err);
        }
        printf("%08" PRIx64 " ", off + i);
        for (j = 0; j < 16; j++) {
            if (j < n) {
                printf("%s %02x", j == 8 ? " " : "", line[j]);
            } else {
                printf("%s   ", j == 8 ? " " : "");
            }
        }
        printf("  |");
        for (j = 0; j < n; j++) {
            putchar(isprint(line[j]) ? line[j] : '.');
        }
        printf("|\n");
    }
    return 0;
}

static int cmd_expect(IvgDevice *dev, const Opts *o)
{
    uint64_t off;
    IvgError err;

    if (o->npos != 2 || !parse_u64(o->pos[0], true, &off)) {
        return bad_usage("usage: expect OFF STRING [--timeout MS]");
    }
    if (!ivg_expect(dev, off, o->pos[1], strlen(o->pos[1]), o->timeout_ms,
                    &err)) {
        return report(&err);
    }
    printf("found '%s' at 0x%" PRIx64 "\n", o->pos[1], off);
    return 0;
}

static int cmd_ring(IvgDevice *dev, const Opts *o)
{
    unsigned peer, vector;
    uint64_t i;
    IvgError err;

    if (o->npos != 2 || !parse_uint(o->pos[0], UINT32_MAX, &peer) ||
        !parse_uint(o->pos[1], UINT32_MAX, &vector)) {
        return bad_usage("usage: ring PEER VECTOR [--count N]");
    }
    for (i = 0; i < o->count; i++) {
        if (!ivg_ring(dev, peer, vector, &err)) {
            return report(&err);
        }
    }
    printf("rang peer %u vector %u%s\n", peer, vector,
           o->count == 1 ? "" : " repeatedly");
    return 0;
}

static int cmd_wait(IvgDevice *dev, const Opts *o)
{
    unsigned vector;
    uint64_t got;
    IvgError err;

    if (o->npos != 1 || !parse_uint(o->pos[0], UINT32_MAX, &vector)) {
        return bad_usage("usage: wait VECTOR [--timeout MS] [--count N]");
    }
    if (!ivg_wait(dev, vector, o->count, o->timeout_ms, &got, &err)) {
        return report(&err);
    }
    printf("vector %u: %" PRIu64 " interrupt%s\n", vector, got,
           got == 1 ? "" : "s");
    return 0;
}

static int vectors_opt(IvgDevice *dev, const Opts *o, unsigned *vec,
                       unsigned max, unsigned *n)
{
    if (o->vectors) {
        if (!parse_list(o->vectors, vec, max, n)) {
            return bad_usage("bad vector list '%s'", o->vectors);
        }
    } else {
        vec[0] = 0;
        *n = 1;
    }
    return 0;
}

static void print_tally(const unsigned *vec, const uint64_t *tally,
                        unsigned n)
{
    unsigned i;

    for (i = 0; i < n; i++) {
        printf(" %u:%" PRIu64, vec[i], tally[i]);
    }
    printf("\n");
}

static int cmd_ping(IvgDevice *dev, const Opts *o)
{
    static unsigned vec[IVSH_MAX_VECTORS];
    static uint64_t tally[IVSH_MAX_VECTORS];
    uint64_t round, t0, rtt, min = UINT64_MAX, max = 0, sum = 0, got;
    unsigned peer, n, i;
    IvgError err;
    int ret;

    if (o->npos != 1 || !parse_uint(o->pos[0], UINT32_MAX, &peer)) {
        return bad_usage("usage: ping PEER [--vectors LIST] [--count N] "
                         "[--timeout MS]");
    }
    ret = vectors_opt(dev, o, vec, IVSH_MAX_VECTORS, &n);
    if (ret) {
        return ret;
    }
    for (i = 0; i < n; i++) {
        /* Checks the vector, and stale interrupts must not count */
        if (!ivg_consume(dev, vec[i], &got, &err)) {
            return report(&err);
        }
        tally[i] = 0;
    }
    for (round = 0; round < o->count; round++) {
        for (i = 0; i < n; i++) {
            t0 = ivg_now_us();
            if (!ivg_ring(dev, peer, vec[i], &err) ||
                !ivg_wait(dev, vec[i], 1, o->timeout_ms, &got, &err)) {
                char ctx[64];

                snprintf(ctx, sizeof(ctx), "ping round %" PRIu64, round);
                return report_in(ctx, &err);
            }
            rtt = ivg_now_us() - t0;
            min = rtt < min ? rtt : min;
            max = rtt > max ? rtt : max;
            sum += rtt;
            tally[i] += got;
        }
    }
    printf("ping: peer %u, %" PRIu64 " round trips, rtt min/avg/max "
           "%" PRIu64 "/%" PRIu64 "/%" PRIu64 " us; replies per vector:",
           peer, o->count * n, min == UINT64_MAX ? 0 : min,
           o->count ? sum / (o->count * n) : 0, max);
    print_tally(vec, tally, n);
    return 0;
}

static int cmd_pong(IvgDevice *dev, const Opts *o)
{
    static unsigned vec[IVSH_MAX_VECTORS];
    static uint64_t tally[IVSH_MAX_VECTORS];
    unsigned peer, n, i, which, done = 0;
    uint64_t got, k, total = 0;
    IvgError err;
    int ret;

    if (o->npos != 1 || !parse_uint(o->pos[0], UINT32_MAX, &peer)) {
        return bad_usage("usage: pong PEER [--vectors LIST] [--count N] "
                         "[--timeout MS]");
    }
    ret = vectors_opt(dev, o, vec, IVSH_MAX_VECTORS, &n);
    if (ret) {
        return ret;
    }
    memset(tally, 0, sizeof(tally));
    while (done < n) {
        if (!ivg_wait_any(dev, vec, n, o->timeout_ms, &which, &got, &err)) {
            char ctx[64];

            snprintf(ctx, sizeof(ctx), "pong after %" PRIu64 " doorbells",
                     total);
            return report_in(ctx, &err);
        }
        for (i = 0; vec[i] != which; i++) {
            /* find the slot of @which */
        }
        for (k = 0; k < got; k++) {
            if (!ivg_ring(dev, peer, which, &err)) {
                return report(&err);
            }
        }
        if (tally[i] < o->count && tally[i] + got >= o->count) {
            done++;
        }
        tally[i] += got;
        total += got;
    }
    printf("pong: peer %u, answered %" PRIu64 " doorbells; per vector:",
           peer, total);
    print_tally(vec, tally, n);
    return 0;
}

static int cmd_irqs(IvgDevice *dev)
{
    static uint64_t counts[IVSH_MAX_VECTORS];
    IvgError err;
    int n, i;

    n = ivg_irq_counts(dev, counts, IVSH_MAX_VECTORS, &err);
    if (n < 0) {
        return report(&err);
    }
    printf("interrupts per vector:");
    for (i = 0; i < n; i++) {
        printf(" %d:%" PRIu64, i, counts[i]);
    }
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *bdf = NULL, *cmd;
    IvgDevice *dev;
    IvgError err;
    Opts o;
    int i = 1, ret;

    while (i < argc && argv[i][0] == '-') {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "-d") || !strcmp(argv[i], "--device"))
                   && i + 1 < argc) {
            bdf = argv[i + 1];
            i += 2;
        } else {
            return bad_usage("unknown option '%s'", argv[i]);
        }
    }
    if (i == argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    cmd = argv[i++];
    ret = parse_opts(argc - i, argv + i, &o);
    if (ret) {
        return ret;
    }
    if (!strcmp(cmd, "list")) {
        return cmd_list();
    } else if (!strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }

    if (strcmp(cmd, "info") && strcmp(cmd, "id") && strcmp(cmd, "read") &&
        strcmp(cmd, "write") && strcmp(cmd, "dump") &&
        strcmp(cmd, "expect") && strcmp(cmd, "ring") &&
        strcmp(cmd, "wait") && strcmp(cmd, "ping") && strcmp(cmd, "pong") &&
        strcmp(cmd, "irqs")) {
        return bad_usage("unknown command '%s'", cmd);
    }
    dev = ivg_open(bdf, &err);
    if (!dev) {
        return report(&err);
    }
    if (!strcmp(cmd, "info")) {
        ret = cmd_info(dev);
    } else if (!strcmp(cmd, "id")) {
        printf("%" PRIu32 "\n", ivg_ivposition(dev));
        ret = 0;
    } else if (!strcmp(cmd, "read")) {
        ret = cmd_read(dev, &o);
    } else if (!strcmp(cmd, "write")) {
        ret = cmd_write(dev, &o);
    } else if (!strcmp(cmd, "dump")) {
        ret = cmd_dump(dev, &o);
    } else if (!strcmp(cmd, "expect")) {
        ret = cmd_expect(dev, &o);
    } else if (!strcmp(cmd, "ring")) {
        ret = cmd_ring(dev, &o);
    } else if (!strcmp(cmd, "wait")) {
        ret = cmd_wait(dev, &o);
    } else if (!strcmp(cmd, "ping")) {
        ret = cmd_ping(dev, &o);
    } else if (!strcmp(cmd, "pong")) {
        ret = cmd_pong(dev, &o);
    } else {
        ret = cmd_irqs(dev);
    }
    ivg_close(dev);
    return ret;
}
