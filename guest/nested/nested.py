# SPDX-License-Identifier: GPL-2.0-or-later
"""Run commands against a real KVM inside a nested-KVM VM.

The VM: build/qemu under TCG with "-cpu max" (AMD SVM with NPT), Debian's
cloud kernel, kvm-amd loaded by guest/nested/init from the initramfs that
guest/nested/build.sh makes (cached).  One boot runs a whole plan: a list
of (key, argv, timeout) commands; their output comes back over the serial
console between "@@ begin KEY" and "@@ end KEY rc=N" lines.

    import nested
    for key, rc, out in nested.run_plan(plan, deadline):
        ...

rc is None when the command did not finish (the VM stopped or the
deadline came first).  Paths inside the VM: see IN_VM.
"""

import os
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "scripts", "lib"))
import ivshtest as it  # noqa: E402

OUT = os.path.join(TOP, "build", "nested")
LABEL = "nested (kvm-amd under TCG)"

# Where guest/nested/build.sh puts things inside the VM
IN_VM = {
    "qemu": "/opt/ivsh/ours/bin/qemu-system-x86_64",
    "upstream": "/opt/ivsh/upstream/bin/qemu-system-x86_64",
    "pingpong": "/opt/ivsh/bin/ivsh-pingpong",
    "guest": "/opt/ivsh/bin/ivsh-guest.bin",
    "guest16": "/opt/ivsh/bin/ivsh-guest16.bin",
    "server": "/opt/ivsh/bin/ivsh-server",
    "floor": "/opt/ivsh/bin/kvm-floor",
    "kvmtest": "/opt/ivsh/bin/ivsh-kvm-test",
}


def build():
    """Build (or find up to date) the kernel and initramfs: (ok, log)."""
    rc, out = it.run([os.path.join(HERE, "build.sh")], 600)
    return rc == 0, out


def contents():
    """What went into the initramfs: kind names of build.sh"""
    for line in it.read_file(os.path.join(OUT, "env")).splitlines():
        if line.startswith("contents="):
            return set(line[9:].split())
    return set()


def _plan_cpio(plan, tmp):
    """A second initramfs archive holding /plan.sh"""
    lines = ["#!/bin/sh"]
    for key, argv, timeout in plan:
        cmd = " ".join(shlex.quote(a) for a in argv)
        lines += [f"echo '@@ begin {key}'",
                  f"timeout {int(timeout)} {cmd} 2>&1",
                  f"echo \"@@ end {key} rc=$?\""]
    root = os.path.join(tmp, "plan")
    os.makedirs(root)
    with open(os.path.join(root, "plan.sh"), "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(os.path.join(root, "plan.sh"), 0o755)
    p = subprocess.run("echo plan.sh | cpio -o -H newc --owner=0:0 --quiet",
                       shell=True, cwd=root, stdout=subprocess.PIPE,
                       check=True)
    img = os.path.join(tmp, "initramfs.img")
    with open(img, "wb") as f:
        with open(os.path.join(OUT, "initramfs.cpio"), "rb") as base:
            while True:
                chunk = base.read(1 << 20)
                if not chunk:
                    break
                f.write(chunk)
        f.write(p.stdout)
    return img


def run_plan(plan, deadline, log=None, qemu=None):
    """Boot once, run @plan; yield (key, rc, output) per command in plan
    order, then ("@@", None, boot_info) once with the VM's own lines
    (boot time, errors).  Commands not finished by @deadline (monotonic)
    yield rc None."""
    qemu = qemu or it.QEMU
    tmp = tempfile.mkdtemp(prefix="ivsh-nested-")
    info = []
    try:
        img = _plan_cpio(plan, tmp)
        # One TCG thread: with thread=multi, TCG's SVM emulation now and
        # then left a vCPU of this VM halted with GIF clear (a hung VM),
        # and nested guests lost interrupts or triple-faulted: 3 failed
        # and 1 hung in 89 runs of the INTx ping-pong; thread=single ran
        # 120 of 120, at about the same speed (2.1 s a run, was 1.9 s).
        argv = [qemu, "-accel", "tcg,thread=single", "-cpu", "max",
                "-smp", "2", "-m", "1536", "-M", "pc", "-nodefaults",
                "-display", "none", "-no-reboot", "-serial", "stdio",
                "-kernel", os.path.join(OUT, "vmlinuz"), "-initrd", img,
                "-append", "console=ttyS0 rdinit=/init quiet loglevel=1 "
                "panic=-1 mitigations=off"]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL,
                             start_new_session=True)
        done = set()
        try:
            for key, rc, out in _read(p, deadline, info, log):
                done.add(key)
                yield key, rc, out
        finally:
            if p.poll() is None:
                it._killpg(p)
            p.wait()
        for key, _argv, _t in plan:
            if key not in done:
                yield key, None, "*** not run: " + (
                    "time budget exhausted" if time.monotonic() > deadline
                    else "the nested VM stopped before it") + "\n" + \
                    "\n".join(info[-20:])
        yield "@@", None, "\n".join(info)
    finally:
        subprocess.run(["rm", "-rf", tmp])


def _read(p, deadline, info, log):
    import select
    buf = b""
    key, out = None, []
    fd = p.stdout.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            info.append("*** deadline reached")
            return
        r, _, _ = select.select([fd], [], [], min(left, 5))
        if not r:
            continue
        data = os.read(fd, 65536)
        if not data:
            if key is not None:
                yield key, None, "\n".join(out) + "\n*** the VM stopped"
            return
        if log:
            log.write(data.decode(errors="replace"))
            log.flush()
        buf += data
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line = raw.decode(errors="replace").rstrip("\r")
            if line.startswith("@@ begin "):
                key, out = line[9:].strip(), []
            elif line.startswith("@@ end ") and key is not None:
                rc = line.rsplit("rc=", 1)[-1]
                yield key, int(rc) if rc.isdigit() else None, \
                    "\n".join(out)
                key = None
            elif line.startswith("@@ "):
                info.append(line[3:])
            elif key is not None:
                out.append(line)
            elif line.strip():
                info.append(line)
