#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Run the project's tests and print one closing 'N passed, N failed' line.

Each test program speaks TAP (GLib's --tap); every test case counts once.
Checks of the build itself (the device comes from the project's files,
QEMU's own ivshmem-pci.c is not compiled in, checkpatch is clean) are
counted as test cases too.
"""

import argparse
import os
import re
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(TOP, "build")
QEMU = os.path.join(BUILD, "qemu", "qemu-system-x86_64")
UPSTREAM = os.path.join(BUILD, "upstream", "qemu-system-x86_64")


class Results:
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
            if detail:
                for line in detail.rstrip().splitlines()[-40:]:
                    print(f"       | {line}")


TAP_RE = re.compile(r"^(ok|not ok) \d+ (?:- )?([^#]*?)\s*(#.*)?$")


def run_tap(res, name, argv, env, timeout):
    """Run one TAP-speaking program; record each of its test cases."""
    print(f"{name}:", flush=True)
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout,
                              text=True, errors="replace")
        out, rc = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") \
            if isinstance(e.stdout, bytes) else (e.stdout or "")
        out += f"\n*** {name}: timed out after {timeout} s\n"
        rc = -1
    failed_before = res.failed
    log = []
    for line in out.splitlines():
        m = TAP_RE.match(line)
        if not m:
            log.append(line)
            continue
        status, case, directive = m.groups()
        directive = directive or ""
        if directive.upper().startswith("# SKIP"):
            res.record(case, True, skip=directive[6:].strip() or "skipped")
        else:
            res.record(case, status == "ok", detail="\n".join(log))
        log = []
    if rc != 0 and res.failed == failed_before:
        res.record(f"{name} (exit status {rc})", False, detail="\n".join(log))
    print(f"  ({time.monotonic() - start:.1f} s)", flush=True)


def check_build(res):
    """The emulator carries the project's devices, not QEMU's own."""
    print("build checks:", flush=True)
    out = subprocess.run([QEMU, "-device", "help"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True).stdout
    res.record("build/device-help-lists-ivshmem-plain",
               re.search(r'name "ivshmem-plain".*memory only', out)
               is not None, detail=out)
    objs = link_objects("qemu")
    res.record("build/qemu-links-ivsh-not-ivshmem-pci",
               "hw_misc_ivshmem-pci.c.o" not in objs and
               "hw_misc_ivsh_ivsh-plain.c.o" in objs)
    if os.path.exists(UPSTREAM):
        objs = link_objects("upstream")
        res.record("build/upstream-links-ivshmem-pci",
                   "hw_misc_ivshmem-pci.c.o" in objs and
                   "hw_misc_ivsh_ivsh-plain.c.o" not in objs)


def link_objects(tree):
    """The object files linked into a tree's qemu-system-x86_64."""
    with open(os.path.join(BUILD, tree, "build.ninja")) as f:
        for line in f:
            if line.startswith("build qemu-system-x86_64:"):
                return [os.path.basename(w) for w in line.split()]
    return []


def project_c_files():
    out = subprocess.run(["git", "ls-files", "--cached", "--others",
                          "--exclude-standard", "*.c", "*.h", "*.c.inc"], cwd=TOP,
                         stdout=subprocess.PIPE, text=True).stdout
    return [f for f in out.split() if f.split("/")[0] in
            ("hw", "include", "tests", "contrib", "guest", "bench")]


def check_style(res):
    """scripts/checkpatch.pl from the QEMU tree on every C file of ours."""
    print("style checks:", flush=True)
    src = os.path.join(BUILD, "trees", "ours", "src")
    cp = os.path.join(src, "scripts", "checkpatch.pl")
    for f in project_c_files():
        p = subprocess.run(["perl", cp, "--no-tree", "--terse", "-f", f],
                           cwd=src, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        bad = [l for l in p.stdout.splitlines()
               if "ERROR" in l or "WARNING" in l]
        res.record(f"checkpatch/{f}", not bad, detail="\n".join(bad))


QTESTS = ["ivsh-plain-test", "ivsh-doorbell-test", "ivsh-hostile-test",
          "ivsh-legacy-test", "ivsh-hostile-survey"]

QEMU_QTESTS = [
    ("qemu/ivshmem-test",
     ["tests/qtest/ivsh/ivshmem-test", "--tap", "-k", "-m", "slow"]),
    ("qemu/device-introspect-test",
     ["tests/qtest/device-introspect-test", "--tap", "-k"]),
]

# Further test drivers: every executable in scripts/tests.d/, run in name
# order.  Each prints TAP ("ok N - name", "not ok N - name",
# "ok N - name # SKIP reason") and exits non-zero only on failure.
TESTS_D = os.path.join(TOP, "scripts", "tests.d")


def drivers():
    if not os.path.isdir(TESTS_D):
        return []
    return sorted(os.path.join(TESTS_D, f) for f in os.listdir(TESTS_D)
                  if os.access(os.path.join(TESTS_D, f), os.X_OK) and
                  not f.endswith("~"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-p", "--path", help="run only qtest cases under PATH")
    ap.add_argument("--timeout", type=int, default=300)
    args = ap.parse_args()

    res = Results()
    env = dict(os.environ)
    env["QTEST_QEMU_BINARY"] = QEMU
    if os.path.exists(UPSTREAM):
        env["IVSH_UPSTREAM_QEMU"] = UPSTREAM
    start = time.monotonic()
    if not args.path:
        check_build(res)
        check_style(res)
    for t in QTESTS:
        argv = [os.path.join(BUILD, "qemu", "tests", "qtest", "ivsh", t),
                "--tap", "-k"]
        if args.path:
            argv += ["-p", args.path]
        run_tap(res, t, argv, env, args.timeout)
    if not args.path:
        # QEMU's own tests, against our build: its ivshmem qtest (slow
        # cases included: two VMs, its contrib server) and introspection
        # of every device type.
        for name, argv in QEMU_QTESTS:
            run_tap(res, name, [os.path.join(BUILD, "qemu", argv[0])] +
                    argv[1:], env, args.timeout)
    if not args.path:
        for d in drivers():
            run_tap(res, os.path.basename(d), [d], env, args.timeout)

    print(f"\nTotal time {time.monotonic() - start:.0f} s")
    if res.failures:
        print("Failed: " + ", ".join(res.failures))
    line = f"{res.passed} passed, {res.failed} failed"
    if res.skipped:
        line += f", {res.skipped} skipped"
    print(line)
    return 1 if res.failed or res.passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
