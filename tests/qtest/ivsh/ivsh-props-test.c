/*
 * qtests: every property of the ivshmem types with every kind of value
 *
 * The properties come from device-list-properties of each type (not a
 * hand list), so a new property is covered by the time it exists.  Each
 * one gets each JSON kind of value:
 *
 * - through QMP device_add on one long-lived VM: QEMU answers (success or
 *   error), stays up, and after each property a valid device of the same
 *   type still plugs (a failed realize must leave nothing behind, e.g.
 *   its memdev marked in use);
 * - at start-up through -device JSON, -device keyval and -global: QEMU
 *   starts or exits with an error, never crashes or hangs.  These sample
 *   one kind per property and way (every kind is covered for every type
 *   with 16 properties or more), or all of them with IVSH_PROPS_FULL=1.
 *
 * Runs against any emulator given by QTEST_QEMU_BINARY; a type the
 * emulator lacks (QEMU 10.0 has no legacy "ivshmem") is skipped.  Each
 * failed device_add costs QEMU an RCU grace period (about 60 ms): the
 * QMP cases take about a minute.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qobject/qdict.h"
#include "qobject/qjson.h"
#include "qobject/qlist.h"
#include "qobject/qnum.h"
#include "qobject/qstring.h"
#include "hw/misc/ivsh-regs.h"
#include "ivsh-qtest.h"

#define MEM_SIZE (1 * 1024 * 1024)
#define SERVER_SHM_SIZE (4 * 1024 * 1024)
#define SLOT 6

/* A value as JSON, and as text for keyval and -global */
typedef struct Kind {
    const char *json;
    const char *text;
} Kind;

static const Kind kinds[] = {
    { "true", "true" }, { "false", "false" }, { "0", "0" }, { "1", "1" },
    { "-1", "-1" },
    { "9223372036854775808", "9223372036854775808" },
    { "-9223372036854775808", "-9223372036854775808" },
    { "1.5", "1.5" }, { "\"\"", "" }, { "\"x\"", "x" }, { "\"on\"", "on" },
    { "\"1M\"", "1M" }, { "null", "null" }, { "{}", "{}" }, { "[]", "[]" },
    { "[1]", "[1]" },
};

/* A type and the properties that make a valid device of it */
typedef struct Config {
    const char *name;
    const char *type;
    const char *base;       /* JSON object */
    bool server;            /* uses chardev 'c' on the in-test server */
    bool startup_only;      /* a second base of a type the QMP cases cover */
} Config;

static const Config configs[] = {
    { "plain", "ivshmem-plain", "{\"memdev\": \"m0\"}" },
    { "doorbell", "ivshmem-doorbell",
      "{\"chardev\": \"c\", \"vectors\": 2}", true },
    { "legacy-memdev", "ivshmem", "{\"memdev\": \"m0\"}" },
    { "legacy-server", "ivshmem", "{\"chardev\": \"c\", \"vectors\": 2}",
      true, true },
};

static IvshEnv env;
static char *mem_path;
static QTestState *vm;      /* the long-lived VM of the QMP cases */

static QTestState *long_lived_vm(void)
{
    if (!vm) {
        vm = qtest_initf("-M pc -object memory-backend-file,id=m0,size=%d,"
                         "share=on,mem-path=%s", MEM_SIZE, mem_path);
    }
    return vm;
}

/* The names of @type's properties, or NULL if the emulator lacks it */
static GPtrArray *list_properties(const char *type)
{
    QTestState *qts = long_lived_vm();
    GPtrArray *names;
    QListEntry *e;
    QDict *rsp;

    rsp = qtest_qmp(qts, "{'execute': 'device-list-properties', "
                    "'arguments': {'typename': %s}}", type);
    if (qdict_haskey(rsp, "error")) {
        qobject_unref(rsp);
        return NULL;
    }
    names = g_ptr_array_new_with_free_func(g_free);
    QLIST_FOREACH_ENTRY(qdict_get_qlist(rsp, "return"), e) {
        QDict *p = qobject_to(QDict, qlist_entry_obj(e));

        g_ptr_array_add(names, g_strdup(qdict_get_str(p, "name")));
    }
    qobject_unref(rsp);
    g_assert_cmpuint(names->len, >, 0);
    return names;
}

static GPtrArray *config_properties(const Config *c)
{
    GPtrArray *names = list_properties(c->type);

    if (!names) {
        g_test_skip("this emulator has no such device type");
    }
    return names;
}

/* device_add arguments: the base, @prop = @val (NULL: none) */
static QDict *device_args(const Config *c, const char *prop, const Kind *val)
{
    QDict *args = qobject_to(QDict, qobject_from_json(c->base,
                                                      &error_abort));

    qdict_put_str(args, "driver", c->type);
    qdict_put_str(args, "id", "dut");
    qdict_put_str(args, "bus", "pci.0");
    qdict_put_str(args, "addr", stringify(SLOT) ".0");
    if (prop) {
        qdict_put_obj(args, prop, qobject_from_json(val->json, &error_abort));
    }
    return args;
}

static void chardev_add(QTestState *qts)
{
    qtest_qmp_assert_success(qts, "{'execute': 'chardev-add', "
        "'arguments': {'id': 'c', 'backend': {'type': 'socket', "
        "'data': {'server': false, 'addr': {'type': 'unix', "
        "'data': {'path': %s}}}}}}", env.sock);
}

static void chardev_remove(QTestState *qts)
{
    qtest_qmp_assert_success(qts, "{'execute': 'chardev-remove', "
                             "'arguments': {'id': 'c'}}");
}

/*
 * device_add with @prop = @val; unplug what got plugged.  Returns true
 * if QEMU took it; *@desc gets the error otherwise.
 */
static bool try_device_add(const Config *c, const char *prop,
                           const Kind *val, char **desc)
{
    QTestState *qts = long_lived_vm();
    QDict *rsp;
    bool ok;

    if (c->server) {
        chardev_add(qts);
    }
    rsp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments': %p}",
                    device_args(c, prop, val));
    ok = !qdict_haskey(rsp, "error");
    if (!ok && desc) {
        *desc = g_strdup(qdict_get_str(qdict_get_qdict(rsp, "error"),
                                       "desc"));
    }
    qobject_unref(rsp);
    if (ok) {
        QDict *r = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments': "
                             "{'path': '/machine/peripheral/dut', "
                             "'property': 'addr'}}");
        int devfn = qdict_get_int(r, "return");

        qobject_unref(r);
        qpci_unplug_acpi_device_test(qts, "dut", devfn >> 3);
    }
    if (c->server) {
        chardev_remove(qts);
    }
    return ok;
}

static void test_qmp(gconstpointer opaque)
{
    const Config *c = opaque;
    g_autoptr(GPtrArray) names = config_properties(c);
    unsigned taken = 0, refused = 0, i, k;

    if (!names) {
        return;
    }
    for (i = 0; i < names->len; i++) {
        const char *prop = g_ptr_array_index(names, i);
        g_autofree char *desc = NULL;

        for (k = 0; k < ARRAY_SIZE(kinds); k++) {
            if (try_device_add(c, prop, &kinds[k], NULL)) {
                taken++;
            } else {
                refused++;
            }
        }
        /* What the failures left behind does not stop a valid device */
        if (!try_device_add(c, NULL, NULL, &desc)) {
            g_error("%s: a valid device_add fails after the values of "
                    "'%s': %s", c->name, prop, desc);
        }
    }
    qtest_qmp_assert_success(long_lived_vm(), "{'execute': 'query-status'}");
    g_test_message("%s: %u properties x %zu kinds: %u taken, %u refused",
                   c->name, names->len, ARRAY_SIZE(kinds), taken, refused);
}

/* At the end, valid devices of each type still plug and work */
static void test_qmp_still_works(void)
{
    QTestState *qts = long_lived_vm();
    g_autofree char *file = g_build_filename(env.dir, "m1", NULL);
    g_autoptr(GPtrArray) names = NULL;
    IvshDev d;
    IvshVm dvm = { 0 };
    uint32_t *host;

    qtest_qmp_device_add(qts, "ivshmem-plain", "p", "{'memdev': 'm0', "
                         "'addr': '06.0'}");
    ivsh_dev_open(&d, qts, QPCI_DEVFN(6, 0));
    host = ivsh_map_file(mem_path, MEM_SIZE);
    qpci_io_writel(d.dev, d.shm, 64, 0x5a5a0001);
    g_assert_cmphex(host[16], ==, 0x5a5a0001);
    ivsh_dev_close(&d);
    munmap(host, MEM_SIZE);

    chardev_add(qts);
    qtest_qmp_device_add(qts, "ivshmem-doorbell", "db", "{'chardev': 'c', "
                         "'vectors': 2, 'addr': '07.0'}");
    ivsh_vm_open(&dvm, qts, QPCI_DEVFN(7, 0), 2);
    ivsh_tserver_ring(env.ts, dvm.id, 1);
    g_assert_true(ivsh_vm_wait_msi(&dvm, 1));
    ivsh_dev_close(&dvm.d);

    names = list_properties("ivshmem");
    if (names) {
        qtest_qmp_assert_success(qts, "{'execute': 'object-add', "
                                 "'arguments': {'qom-type': "
                                 "'memory-backend-file', 'id': 'm1', "
                                 "'size': %d, 'share': true, "
                                 "'mem-path': %s}}", MEM_SIZE, file);
        qtest_qmp_device_add(qts, "ivshmem", "lg", "{'memdev': 'm1', "
                             "'use64': 1, 'addr': '08.0'}");
        ivsh_dev_open(&d, qts, QPCI_DEVFN(8, 0));
        host = ivsh_map_file(file, MEM_SIZE);
        qpci_io_writel(d.dev, d.shm, 64, 0x5a5a0002);
        g_assert_cmphex(host[16], ==, 0x5a5a0002);
        ivsh_dev_close(&d);
        munmap(host, MEM_SIZE);
    }
    qtest_qmp_assert_success(qts, "{'execute': 'query-status'}");
}

typedef enum Way {
    WAY_JSON,
    WAY_KEYVAL,
    WAY_GLOBAL,
    WAY_N
} Way;

static const char *const way_names[] = { "json", "keyval", "global" };

/* key=value,... of a JSON object without nesting, leaving out @skip */
static void append_keyval(GString *s, QDict *d, const char *skip)
{
    const QDictEntry *e;

    for (e = qdict_first(d); e; e = qdict_next(d, e)) {
        QObject *v = qdict_entry_value(e);
        g_autofree char *num = NULL;

        if (skip && !strcmp(qdict_entry_key(e), skip)) {
            continue;
        }
        if (qobject_type(v) == QTYPE_QNUM) {
            num = qnum_to_string(qobject_to(QNum, v));
        }
        g_string_append_printf(s, ",%s=%s", qdict_entry_key(e),
                               num ? num : qstring_get_str(
                                   qobject_to(QString, v)));
    }
}

/* Start QEMU with @prop = @val given the way @way; it must not crash */
static void check_startup(const Config *c, Way way, const char *prop,
                          const Kind *val)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *err = NULL;
    g_autoptr(GString) dev = g_string_new(c->type);
    QDict *base = device_args(c, NULL, NULL);
    int status;

    g_ptr_array_add(args, g_strdup("-object"));
    g_ptr_array_add(args, g_strdup_printf("memory-backend-file,id=m0,"
                                          "size=%d,share=on,mem-path=%s",
                                          MEM_SIZE, mem_path));
    if (c->server) {
        g_ptr_array_add(args, g_strdup("-chardev"));
        g_ptr_array_add(args, g_strdup_printf("socket,id=c,path=%s",
                                              env.sock));
    }
    qdict_del(base, "driver");
    qdict_del(base, "bus");
    g_ptr_array_add(args, g_strdup("-device"));
    switch (way) {
    case WAY_JSON:
        qobject_unref(base);
        base = device_args(c, prop, val);
        qdict_del(base, "bus");
        g_ptr_array_add(args, g_string_free(qobject_to_json(QOBJECT(base)),
                                            false));
        break;
    case WAY_KEYVAL:
        append_keyval(dev, base, prop);
        g_string_append_printf(dev, ",%s=%s", prop, val->text);
        g_ptr_array_add(args, g_strdup(dev->str));
        break;
    default:
        append_keyval(dev, base, NULL);
        g_ptr_array_add(args, g_strdup(dev->str));
        g_ptr_array_add(args, g_strdup("-global"));
        g_ptr_array_add(args, g_strdup_printf("%s.%s=%s", c->type, prop,
                                              val->text));
        break;
    }
    qobject_unref(base);
    g_ptr_array_add(args, NULL);

    status = ivsh_run_qemu_argv(NULL, "pc", (const char *const *)args->pdata,
                                &err);
    if (status != 0 && status != 1) {
        g_error("%s %s %s=%s: exit status %d: %s", c->name,
                way_names[way], prop, val->json, status, err);
    }
}

static void test_startup(gconstpointer opaque)
{
    const Config *c = opaque;
    g_autoptr(GPtrArray) names = config_properties(c);
    bool full = g_getenv("IVSH_PROPS_FULL");
    unsigned i, k, n = 0;
    Way way;

    if (!names) {
        return;
    }
    for (i = 0; i < names->len; i++) {
        for (way = 0; way < WAY_N; way++) {
            /*
             * QEMU core, not this device: -global of any PCI device's
             * "addr" aborts in the string input visitor (alternates are
             * not supported there), in QEMU 7.2 and 10.0 alike.
             */
            if (way == WAY_GLOBAL &&
                !strcmp(g_ptr_array_index(names, i), "addr")) {
                continue;
            }
            for (k = 0; k < ARRAY_SIZE(kinds); k++) {
                /* Sample: kind i, shifted for each way */
                unsigned off = (k + ARRAY_SIZE(kinds) - 5 * way) %
                               ARRAY_SIZE(kinds);

                if (full || off == i % ARRAY_SIZE(kinds)) {
                    check_startup(c, way, g_ptr_array_index(names, i),
                                  &kinds[k]);
                    n++;
                }
            }
        }
    }
    g_test_message("%s: %u start-ups", c->name, n);
}

int main(int argc, char **argv)
{
    size_t i;
    int ret;

    g_test_init(&argc, &argv, NULL);
    ivsh_env_init(&env, SERVER_SHM_SIZE, 2);
    mem_path = g_build_filename(env.dir, "m0", NULL);

    for (i = 0; i < ARRAY_SIZE(configs); i++) {
        g_autofree char *p = g_strdup_printf("/ivsh/props/qmp/%s",
                                             configs[i].name);

        if (!configs[i].startup_only) {
            qtest_add_data_func(p, &configs[i], test_qmp);
        }
    }
    qtest_add_func("/ivsh/props/qmp/still-works", test_qmp_still_works);
    for (i = 0; i < ARRAY_SIZE(configs); i++) {
        g_autofree char *p = g_strdup_printf("/ivsh/props/startup/%s",
                                             configs[i].name);

        qtest_add_data_func(p, &configs[i], test_startup);
    }

    ret = g_test_run();
    if (vm) {
        qtest_quit(vm);
    }
    g_free(mem_path);
    ivsh_env_free(&env);
    return ret;
}
