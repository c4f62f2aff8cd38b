#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""make check: run the project's tests; the closing line
"N passed, N failed[, N skipped]" counts behaviour tests only.

Behaviour tests are the cases of the TAP programs: the project's qtests
(those registered in build/qemu with meson suite "ivsh"), QEMU's own
ivshmem-test and device-introspect-test against build/qemu, and every
driver in scripts/tests.d/ (in name order).

Not counted, each on its own line:
  build checks   build/qemu carries the project's devices and not QEMU's
                 ivshmem-pci.c, build/upstream the reverse; Kconfig gives
                 non-x86 targets QEMU's device; the docs are hooked into
                 QEMU's toctrees
  style          scripts/checkpatch.pl on every C file of ours
  reports        '# report: NAME: OUTCOME' lines (e.g. the survey of QEMU
                 10.0's own device on hostile input), printed as a table
A failing build check or style check still fails make check.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "scripts", "lib"))
sys.dont_write_bytecode = True
import ivshtest as it  # noqa: E402

BUILD = it.BUILD
QEMU_BUILD = os.path.join(BUILD, "qemu")
QEMU = os.path.join(QEMU_BUILD, "qemu-system-x86_64")
UPSTREAM = os.path.join(BUILD, "upstream", "qemu-system-x86_64")
SRC = os.path.join(BUILD, "trees", "ours", "src")
TESTS_D = os.path.join(TOP, "scripts", "tests.d")


class Tally:
    """Results of one kind (behaviour tests, build checks, style)"""

    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.failures = []

    def record(self, name, ok, skip=None, detail=""):
        if skip is not None:
            self.skipped += 1
            print(f"  SKIP {name}: {skip}", flush=True)
        elif ok:
            self.passed += 1
            print(f"  PASS {name}", flush=True)
        else:
            self.failed += 1
            self.failures.append(name)
            print(f"  FAIL {name}", flush=True)
            for line in detail.rstrip().splitlines()[-40:]:
                print(f"       | {line}")


class Results:
    def __init__(self):
        self.tests = Tally()
        self.build = Tally()
        self.style = Tally()
        self.reports = []           # (program, name, outcome)


def run_tap(res, label, argv, env, timeout, cwd=None, survey=False):
    """Run one TAP program; each case is a behaviour test, unless
    @survey (a report-only program: only its reports are kept)."""
    print(f"{label}:", flush=True)
    start = time.monotonic()
    try:
        rc, out = it.run(argv, timeout, env=env, cwd=cwd)
    except OSError as e:
        rc, out = 127, f"{argv[0]}: {e}"
    failed_before = res.tests.failed
    for kind, name, detail in it.parse_tap(out):
        if kind == "report":
            res.reports.append((label, name, detail))
            print(f"  REPORT {name}: {detail}", flush=True)
        elif survey:
            continue
        elif kind == "skip":
            res.tests.record(name, True, skip=detail)
        else:
            res.tests.record(name, kind == "ok", detail=detail)
    tail = out.rstrip().splitlines()[-40:]
    status = "timed out" if rc is None else f"exit status {rc}"
    if survey:
        if rc != 0:
            print(f"  (report-only program: {status})")
            for line in tail:
                print(f"       | {line}")
    elif rc != 0 and res.tests.failed == failed_before:
        res.tests.record(f"{label} ({status})", False, detail="\n".join(tail))
    print(f"  ({time.monotonic() - start:.1f} s)", flush=True)


# --- build checks ------------------------------------------------------------

def link_objects(tree):
    """The object files linked into a tree's qemu-system-x86_64."""
    try:
        with open(os.path.join(BUILD, tree, "build.ninja")) as f:
            for line in f:
                if line.startswith("build qemu-system-x86_64:"):
                    return [os.path.basename(w) for w in line.split()]
    except OSError:
        pass
    return []


def kconfig_devices(target):
    """CONFIG_* of a target's default device set, from QEMU's minikconf
    over the overlaid tree (as QEMU's meson runs it on a Linux host)."""
    dev = os.path.join(SRC, "configs", "devices", f"{target}-softmmu",
                       "default.mak")
    arch = target.upper()
    argv = [sys.executable, os.path.join(SRC, "scripts", "minikconf.py"),
            "--defconfig", "/dev/null", "/dev/null", dev,
            os.path.join(SRC, "Kconfig"), "CONFIG_LINUX=y", "CONFIG_KVM=y",
            "CONFIG_IVSHMEM=y", "CONFIG_FDT=y", "CONFIG_PIXMAN=y",
            f"CONFIG_{arch}=y", "CONFIG_TARGET_BIG_ENDIAN=n"]
    rc, out = it.run(argv, 60)
    return rc, set(re.findall(r"^(CONFIG_\w+)=y$", out, re.M)), out


# (toctree file, entry, document) of each docs hook in build-qemu.sh
DOC_HOOKS = [
    ("docs/system/device-emulation.rst", "devices/ivsh.rst",
     "docs/system/devices/ivsh.rst"),
    ("docs/specs/index.rst", "ivsh-spec", "docs/specs/ivsh-spec.rst"),
    ("docs/tools/index.rst", "ivsh-server", "docs/tools/ivsh-server.rst"),
]


def check_build(res):
    b = res.build
    print("build checks:", flush=True)
    types = it.device_types(QEMU)
    b.record("qemu-offers-ivshmem-plain-doorbell-legacy",
             {"ivshmem-plain", "ivshmem-doorbell", "ivshmem"} <= types,
             detail=" ".join(sorted(types)))
    objs = link_objects("qemu")
    b.record("qemu-links-ivsh-not-ivshmem-pci",
             "hw_misc_ivshmem-pci.c.o" not in objs and
             "hw_misc_ivsh_ivsh-plain.c.o" in objs)
    if os.path.exists(UPSTREAM):
        objs = link_objects("upstream")
        b.record("upstream-links-ivshmem-pci-not-ivsh",
                 "hw_misc_ivshmem-pci.c.o" in objs and
                 "hw_misc_ivsh_ivsh-plain.c.o" not in objs)
    for target, ours in (("x86_64", True), ("aarch64", False)):
        rc, cfg, out = kconfig_devices(target)
        want = ({"CONFIG_IVSH_PCI"} if ours else {"CONFIG_IVSHMEM_DEVICE"})
        never = ({"CONFIG_IVSHMEM_DEVICE"} if ours else {"CONFIG_IVSH_PCI"})
        b.record(f"kconfig-{target}-gets-"
                 f"{'ivsh' if ours else 'qemu-ivshmem-pci'}-only",
                 rc == 0 and want <= cfg and not never & cfg, detail=out)
    for toc, entry, doc in DOC_HOOKS:
        text = it.read_file(os.path.join(SRC, toc))
        b.record(f"docs-toctree-{os.path.basename(doc)}",
                 re.search(rf"^\s+{re.escape(entry)}$", text, re.M)
                 is not None and os.path.exists(os.path.join(SRC, doc)),
                 detail=f"{toc} lacks '{entry}'")


# --- style ---------------------------------------------------------------------

def project_c_files():
    out = subprocess.run(["git", "ls-files", "--cached", "--others",
                          "--exclude-standard", "*.c", "*.h", "*.c.inc"],
                         cwd=TOP, stdout=subprocess.PIPE, text=True).stdout
    return [f for f in out.split() if f.split("/")[0] in
            ("hw", "include", "tests", "contrib", "guest", "bench")]


def check_style(res):
    """scripts/checkpatch.pl from the QEMU tree on every C file of ours,
    named relative to the top (checkpatch's rules depend on the path,
    e.g. tests/ may use g_assert_cmp*); only files with findings are
    listed.  (Run from QEMU's tree, as before, files QEMU's tree lacks
    went unchecked and passed.)"""
    cp = os.path.join(SRC, "scripts", "checkpatch.pl")
    for f in project_c_files():
        if not os.path.exists(os.path.join(TOP, f)):
            continue
        p = subprocess.run(["perl", cp, "--no-tree", "--terse", "-f", f],
                           cwd=TOP, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        bad = [ln for ln in p.stdout.splitlines()
               if "ERROR" in ln or "WARNING" in ln]
        if p.returncode != 0 and not bad:
            bad.append(p.stdout.strip() or f"exit status {p.returncode}")
        if bad:
            res.style.failed += 1
            res.style.failures.append(f)
            print(f"  checkpatch {f}:")
            for ln in bad:
                print(f"       | {ln}")
        else:
            res.style.passed += 1


# --- the programs ------------------------------------------------------------

FALLBACK_QTESTS = ["ivsh-plain-test", "ivsh-doorbell-test",
                   "ivsh-hostile-test", "ivsh-legacy-test", "ivsh-props-test"]


def project_qtests():
    """(name, argv, timeout) of the qtests build/qemu registers with meson
    (suite "ivsh"), else the known list."""
    rc, out = it.run(["meson", "introspect", QEMU_BUILD, "--tests"], 60,
                     stderr=subprocess.DEVNULL)
    tests = []
    if rc == 0:
        try:
            for t in json.loads(out):
                if any(s == "ivsh" or s.endswith(":ivsh") for s in t["suite"]):
                    tests.append((os.path.basename(t["cmd"][0]), t["cmd"],
                                  t.get("timeout") or 300))
        except (ValueError, KeyError):
            tests = []
    if not tests:
        qdir = os.path.join(QEMU_BUILD, "tests", "qtest", "ivsh")
        tests = [(n, [os.path.join(qdir, n), "--tap", "-k"], 300)
                 for n in FALLBACK_QTESTS
                 if os.path.exists(os.path.join(qdir, n))]
    return tests


QEMU_QTESTS = [
    ("qemu/ivshmem-test",
     ["tests/qtest/ivsh/ivshmem-test", "--tap", "-k", "-m", "slow"]),
    ("qemu/device-introspect-test",
     ["tests/qtest/device-introspect-test", "--tap", "-k"]),
]
SURVEY = "tests/qtest/ivsh/ivsh-hostile-survey"


def driver_timeout(path):
    """A driver's own limit ("# run-tests timeout: N" near its top), or
    300 s"""
    with open(path, errors="replace") as f:
        for line in f.readlines()[:20]:
            m = re.match(r"#\s*run-tests timeout:\s*(\d+)", line)
            if m:
                return int(m.group(1))
    return 300


def drivers():
    """Every executable in scripts/tests.d/, in name order.  Each prints
    TAP and exits non-zero only on failure."""
    if not os.path.isdir(TESTS_D):
        return []
    return sorted(os.path.join(TESTS_D, f) for f in os.listdir(TESTS_D)
                  if os.access(os.path.join(TESTS_D, f), os.X_OK) and
                  not f.endswith("~"))


# --- summary -------------------------------------------------------------------

def print_reports(reports):
    if not reports:
        return
    print("\nReport only (never counted):")
    by_prog = {}
    for prog, name, outcome in reports:
        by_prog.setdefault(prog, []).append((name, outcome))
    for prog, rows in by_prog.items():
        w = max(len("Case"), max(len(n) for n, _ in rows))
        print(f"\n  {prog}")
        print(f"  {'Case':<{w}}  Outcome")
        print(f"  {'-' * w}  {'-' * 7}")
        for name, outcome in rows:
            print(f"  {name:<{w}}  {outcome}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-p", "--path", help="run only qtest cases under PATH "
                    "(no checks, no other programs)")
    ap.add_argument("--timeout", type=int, default=None,
                    help="timeout per program in s (default: meson's for "
                    "the qtests, 300 for the others)")
    args = ap.parse_args()

    res = Results()
    env = dict(os.environ)
    env["QTEST_QEMU_BINARY"] = QEMU
    if os.path.exists(UPSTREAM):
        env["IVSH_UPSTREAM_QEMU"] = UPSTREAM
    start = time.monotonic()
    if not args.path:
        check_build(res)
        print("style checks (checkpatch.pl):", flush=True)
        check_style(res)
    for name, argv, timeout in project_qtests():
        if args.path:
            argv = argv + ["-p", args.path]
        run_tap(res, name, argv, env, args.timeout or timeout,
                cwd=QEMU_BUILD)
    if not args.path:
        survey = os.path.join(QEMU_BUILD, SURVEY)
        if os.path.exists(survey):
            run_tap(res, "survey of QEMU 10.0's ivshmem-doorbell", [survey],
                    env, args.timeout or 300, cwd=QEMU_BUILD, survey=True)
        # QEMU's own tests, against our build: its ivshmem qtest (slow
        # cases included: two VMs, its contrib server) and introspection
        # of every device type.
        for name, argv in QEMU_QTESTS:
            run_tap(res, name, [os.path.join(QEMU_BUILD, argv[0])] + argv[1:],
                    env, args.timeout or 300, cwd=QEMU_BUILD)
        for d in drivers():
            run_tap(res, os.path.basename(d), [d], env,
                    args.timeout or driver_timeout(d))

    print_reports(res.reports)
    print(f"\nTotal time {time.monotonic() - start:.0f} s")
    t, b, s = res.tests, res.build, res.style
    if not args.path:
        line = f"build checks: {b.passed} passed, {b.failed} failed"
        print(line + (f" ({', '.join(b.failures)})" if b.failures else ""))
        line = f"style: {s.passed} files clean, {s.failed} not"
        print(line + (f" ({', '.join(s.failures)})" if s.failures else ""))
    if res.reports:
        print(f"reports: {len(res.reports)} (report only, not counted)")
    if t.failures:
        print("Failed: " + ", ".join(t.failures))
    line = f"{t.passed} passed, {t.failed} failed"
    if t.skipped:
        line += f", {t.skipped} skipped"
    print(line)
    bad = t.failed or b.failed or s.failed or t.passed == 0
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
