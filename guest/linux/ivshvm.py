# SPDX-License-Identifier: GPL-2.0-or-later
"""Run Linux test guests with ivshmem devices under TCG.

Used by scripts/tests.d/60-guest-e2e and guest/linux/demo.py.  A Session
owns every process, shared-memory object and temporary file it creates and
removes them all in cleanup(), also after a failure or a signal.

Guests boot build/guest/{vmlinuz,initrd.img} (see guest/linux/image/build.sh).
Each gets a shell script through -fw_cfg name=opt/ivsh/script; its output
arrives on the serial console (a file here) between IVSH-SCRIPT-BEGIN and
IVSH-SCRIPT-END rc=N.  Waits are for those markers or process exit, each
with a deadline, never fixed sleeps.

Paths and process handling come from scripts/lib/ivshtest.py.
"""

import ctypes
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "scripts", "lib"))
import ivshtest  # noqa: E402

TOP = ivshtest.TOP
BUILD = ivshtest.BUILD
GUEST_DIR = os.path.join(BUILD, "guest")
QEMU = os.path.join(BUILD, "qemu", "qemu-system-x86_64")
UPSTREAM_QEMU = os.path.join(BUILD, "upstream", "qemu-system-x86_64")
UPSTREAM_SERVER = os.path.join(BUILD, "upstream", "contrib",
                               "ivshmem-server", "ivshmem-server")

PROJECT_SERVER = os.path.join(ivshtest.TOOLS, "ivsh-server")


def default_server(qemu):
    """IVSH_SERVER, else the project's server for the project's QEMU when
    it is built, else QEMU's contrib server."""
    if os.environ.get("IVSH_SERVER"):
        return os.environ["IVSH_SERVER"]
    if (os.path.realpath(qemu) == os.path.realpath(QEMU) and
            os.access(PROJECT_SERVER, os.X_OK)):
        return PROJECT_SERVER
    return UPSTREAM_SERVER


BOOT_DEADLINE = float(os.environ.get("IVSH_GUEST_DEADLINE", "120"))


class GuestError(Exception):
    pass


def _die_with_parent():
    """preexec_fn: SIGTERM the child when we die, even by SIGKILL (as when
    a test runner's timeout kills us), so no QEMU or server outlives us."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)       # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def load_image(guest_dir=GUEST_DIR):
    """The image description written by guest/linux/image/build.sh."""
    env = {}
    path = os.path.join(guest_dir, "image.env")
    if not os.path.exists(path):
        raise GuestError(f"{path} missing: run 'make guest-image'")
    with open(path) as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            if k:
                env[k] = v.strip('"')
    for k in ("KERNEL", "INITRD"):
        if not os.path.exists(env.get(k, "")):
            raise GuestError(f"{env.get(k)} missing: run 'make guest-image'")
    return env


def device_types(qemu):
    """Names of the devices a QEMU binary offers (none if it cannot run)."""
    try:
        return ivshtest.device_types(qemu)
    except OSError:
        return set()


def script_output(log):
    """(text between the script markers, exit status or None)."""
    m = re.search(r"IVSH-SCRIPT-BEGIN\r?\n(.*?)IVSH-SCRIPT-END rc=(\d+)",
                  log, re.S)
    if not m:
        return None, None
    return m.group(1).replace("\r", ""), int(m.group(2))


def parse_interrupts(text):
    """{action name: count summed over CPUs} from /proc/interrupts text,
    plus {"irq:N": count} for every numbered line."""
    counts = {}
    for line in text.splitlines():
        m = re.match(r"\s*(\d+):((?:\s+\d+)+)\s+(.*)$", line)
        if not m:
            continue
        n = sum(int(x) for x in m.group(2).split())
        counts[f"irq:{m.group(1)}"] = n
        for name in m.group(3).split()[-1].split(","):
            counts[name] = counts.get(name, 0) + n
    return counts


class Server:
    def __init__(self, proc, sock, shm, log):
        self.proc, self.sock, self.shm, self.log = proc, sock, shm, log


class VM:
    def __init__(self, name, proc, log, started):
        self.name, self.proc, self.log_path = name, proc, log
        self.started = started
        self.output = None
        self.rc = None

    def log(self):
        return ivshtest.read_file(self.log_path)

    def wait_marker(self, pattern, deadline):
        """Wait until the serial log matches @pattern; returns the match."""
        rx = re.compile(pattern)

        def seen():
            exited = self.proc.poll() is not None
            m = rx.search(self.log())
            if not m and exited:
                raise GuestError(f"{self.name}: QEMU exited "
                                 f"({self.proc.returncode}) before "
                                 f"'{pattern}'")
            return m
        try:
            return ivshtest.wait_for(seen, max(0, deadline - time.monotonic()),
                                     f"'{pattern}'", interval=0.05)
        except ivshtest.Fail:
            raise GuestError(f"{self.name}: no '{pattern}' within "
                             f"the deadline")

    def finish(self, deadline):
        """Wait for the script to end and QEMU to exit; returns the
        script's output."""
        self.wait_marker(r"IVSH-SCRIPT-END rc=\d+", deadline)
        try:
            self.proc.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise GuestError(f"{self.name}: QEMU did not exit after the "
                             f"script ended")
        self.output, self.rc = script_output(self.log())
        return self.output


class Session:
    """Owns the processes, shm objects and files of one test or demo."""

    def __init__(self, qemu=QEMU, server=UPSTREAM_SERVER, image=None,
                 keep=False):
        self.qemu = qemu
        self.server_bin = server
        self.image = image or load_image()
        self.procs = ivshtest.Procs(prefix="ivsh-guest-", keep=keep)
        self.dir = self.procs.tmp
        self.shms = []
        self.keep = keep
        self.tag = f"ivsh-g{os.getpid()}"
        self.count = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    def unique(self, what):
        self.count += 1
        return f"{self.tag}-{what}{self.count}"

    def path(self, name):
        return os.path.join(self.dir, name)

    def start_server(self, size="1M", vectors=4):
        """Start the ivshmem server on a fresh socket and shm object."""
        shm = self.unique("shm")
        sock = self.path(self.unique("sock"))
        log = self.path(self.unique("server") + ".log")
        try:
            rc, helptext = ivshtest.run([self.server_bin, "-h"], 10)
        except OSError as e:
            raise GuestError(f"server {self.server_bin}: {e}")
        if rc is None:
            raise GuestError(f"server {self.server_bin}: -h timed out")
        argv = [self.server_bin]
        if re.search(r"^\s*-F\b", helptext, re.M):
            argv.append("-F")       # QEMU's contrib server daemonizes
        argv += ["-S", sock, "-M", shm, "-l", str(size), "-n", str(vectors)]
        self.shms.append(shm)
        proc = self.procs.spawn(argv, log=log, preexec_fn=_die_with_parent)

        def up():
            if proc.poll() is not None:
                raise GuestError(f"server exited ({proc.returncode}): "
                                 + ivshtest.read_file(log)[-500:])
            return os.path.exists(sock)
        try:
            ivshtest.wait_for(up, 20, f"the server socket {sock}")
        except ivshtest.Fail:
            raise GuestError("server socket did not appear")
        return Server(proc, sock, shm, log)

    def shm_file(self, size=1 << 20, content=b""):
        """A fresh /dev/shm file of @size bytes for memory-backend-file."""
        name = self.unique("mem")
        path = os.path.join("/dev/shm", name)
        self.shms.append(name)
        with open(path, "wb") as f:
            f.truncate(size)
            f.write(content)
        return path

    def start_vm(self, name, script, device_args, extra_args=()):
        """Boot a guest that runs @script (shell text)."""
        spath = self.path(f"{name}.sh")
        with open(spath, "w") as f:
            f.write(script)
        log = self.path(f"{name}.log")
        open(log, "w").close()
        argv = [self.qemu, "-M", "q35", "-accel", "tcg", "-m", "256",
                "-nodefaults", "-no-user-config", "-display", "none",
                "-no-reboot", "-serial", f"file:{log}",
                "-kernel", self.image["KERNEL"],
                "-initrd", self.image["INITRD"],
                "-append", self.image.get(
                    "APPEND", "console=ttyS0 panic=-1 quiet loglevel=3"),
                "-fw_cfg", f"name=opt/ivsh/script,file={spath}"]
        argv += list(device_args) + list(extra_args)
        proc = self.procs.spawn(argv, log=self.path(f"{name}.qemu.log"),
                                preexec_fn=_die_with_parent)
        return VM(name, proc, log, time.monotonic())

    def qemu_log(self, vm):
        return ivshtest.read_file(self.path(f"{vm.name}.qemu.log"))

    def cleanup(self):
        """Kill every process, remove the shm objects and (unless kept)
        the session's directory; safe to call more than once."""
        self.procs.close()
        for name in self.shms:
            try:
                os.unlink(os.path.join("/dev/shm", name))
            except FileNotFoundError:
                pass
        self.shms = []


def install_signal_cleanup(sessions):
    """SIGTERM/SIGINT/SIGHUP end every session in @sessions, then exit."""
    def handler(signum, frame):
        for s in list(sessions):
            s.cleanup()
        os._exit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, handler)


def doorbell_args(kind, sock, vectors=4, size="1M", cid="c0"):
    """-chardev/-device arguments for a device of @kind on server @sock.

    kind: doorbell | legacy (MSI-X) | legacy-intx (msi=off)
    """
    chardev = ["-chardev", f"socket,id={cid},path={sock}"]
    if kind == "doorbell":
        dev = f"ivshmem-doorbell,chardev={cid},vectors={vectors}"
    elif kind == "legacy":
        dev = f"ivshmem,chardev={cid},size={size},vectors={vectors},msi=on"
    elif kind == "legacy-intx":
        dev = f"ivshmem,chardev={cid},size={size},msi=off"
    else:
        raise ValueError(kind)
    return chardev + ["-device", dev]


def plain_args(path, size=1 << 20, mid="m0"):
    return ["-object", f"memory-backend-file,id={mid},size={size},share=on,"
            f"mem-path={path}", "-device", f"ivshmem-plain,memdev={mid}"]
