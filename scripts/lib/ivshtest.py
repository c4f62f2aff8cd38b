# SPDX-License-Identifier: GPL-2.0-or-later
"""The project's Python test helper: one module for every test driver.

    import os, sys
    sys.path.insert(0, os.path.join(TOP, "scripts", "lib"))
    import ivshtest as it

    tap = it.Tap()                      # TAP writer, counts, exit status
    with it.Procs() as procs:           # every process killed on exit
        p = procs.spawn([...], log=...)
        it.wait_for(lambda: ..., 5, "the socket")
        qmp = it.Qmp(path); qmp.cmd("query-status", timeout=2)
        tap.ok(cond, "area/case", diag="why")
        tap.skip("area/kvm-case", "no /dev/kvm")
        tap.report("name", text)        # report-only, never counted
    sys.exit(tap.finish())

Contents: TAP output (Tap) and parsing (parse_tap), processes with
deadlines (run, Procs, wait_for), fd and memory counters, a QMP client
(Qmp), the ivshmem protocol on a raw socket (recv_msg, send_msg) and the
paths of the build.  Standard library only.
"""

import array
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.path.join(TOP, "build")
QEMU = os.environ.get("IVSH_QEMU",
                      os.path.join(BUILD, "qemu", "qemu-system-x86_64"))
UPSTREAM_QEMU = os.environ.get(
    "IVSH_UPSTREAM_QEMU",
    os.path.join(BUILD, "upstream", "qemu-system-x86_64"))
TOOLS = os.path.join(BUILD, "tools")


class Fail(Exception):
    """A check failed: the message says what was expected"""


def check(cond, what):
    if not cond:
        raise Fail(what)


# --- TAP -----------------------------------------------------------------

class Tap:
    """TAP writer.  Report-only lines are printed as comments and never
    counted; finish() returns the exit status (1 if any case failed)."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.n = self.failed = self.skipped = 0
        self.reports = []

    def _line(self, text):
        print(text, file=self.out, flush=True)

    def comment(self, text):
        for ln in str(text).rstrip().splitlines()[-40:]:
            self._line(f"# {ln}")

    def ok(self, cond, name, diag=""):
        self.n += 1
        if not cond:
            self.failed += 1
            if diag:
                self.comment(diag)
        self._line(f"{'ok' if cond else 'not ok'} {self.n} - {name}")
        return cond

    def skip(self, name, reason):
        self.n += 1
        self.skipped += 1
        self._line(f"ok {self.n} - {name} # SKIP {reason}")

    def case(self, name, fn, *args, **kw):
        """Run fn(); a Fail or any exception fails the case."""
        try:
            fn(*args, **kw)
        except Fail as e:
            return self.ok(False, name, diag=str(e))
        except Exception as e:                  # noqa: BLE001
            import traceback
            return self.ok(False, name, diag=traceback.format_exc() +
                           f"{type(e).__name__}: {e}")
        return self.ok(True, name)

    def report(self, name, outcome):
        """A report-only observation (e.g. QEMU 10.0's own behaviour):
        printed as '# report: NAME: OUTCOME', never a test result."""
        self.reports.append((name, outcome))
        self._line(f"# report: {name}: {outcome}")

    def finish(self):
        self._line(f"1..{self.n}")
        return 1 if self.failed else 0


TAP_RE = re.compile(r"^(ok|not ok) \d+ (?:- )?([^#]*?)\s*(#.*)?$")
REPORT_RE = re.compile(r"^# report: (.*?): (.*)$")


def parse_tap(text):
    """Yield ('ok'|'fail'|'skip', name, detail) for each TAP line and
    ('report', name, outcome) for each report-only line; detail is the
    output since the previous result."""
    log = []
    for line in text.splitlines():
        m = REPORT_RE.match(line)
        if m:
            yield ("report", m.group(1), m.group(2))
            continue
        m = TAP_RE.match(line)
        if not m:
            log.append(line)
            continue
        status, name, directive = m.groups()
        directive = directive or ""
        if directive.upper().startswith("# SKIP"):
            yield ("skip", name, directive[6:].strip() or "skipped")
        elif status == "ok":
            yield ("ok", name, "\n".join(log))
        else:
            yield ("fail", name, "\n".join(log))
        log = []


# --- processes -----------------------------------------------------------

def run(argv, timeout, **kw):
    """Run to completion within @timeout s: (returncode, output).  On a
    timeout the process group is killed and the returncode is None."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    p = subprocess.Popen(argv, start_new_session=True, text=True,
                         errors="replace", **kw)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out or ""
    except subprocess.TimeoutExpired:
        _killpg(p)
        out, _ = p.communicate()
        return None, (out or "") + f"\n*** timed out after {timeout} s\n"


def _killpg(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass


def wait_for(pred, timeout, what, interval=0.01):
    """Poll pred() until it returns a true value, else raise Fail."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Procs:
    """Processes started by a test, each in its own process group; all
    are killed (and a temporary directory removed, unless @keep) on
    exit."""

    def __init__(self, prefix="ivsh-test-", keep=False):
        self.procs = []
        self.keep = keep
        self.tmp = tempfile.mkdtemp(prefix=prefix)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def spawn(self, argv, log=None, **kw):
        if log is not None:
            kw.setdefault("stdout", open(log, "w"))
            kw.setdefault("stderr", subprocess.STDOUT)
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        p.log = log
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=10):
        """Signal @p, wait for it; Fail if it outlives @timeout."""
        if p.poll() is None:
            p.send_signal(sig)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(p)
            p.wait()
            raise Fail(f"pid {p.pid} did not exit within {timeout} s")

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                _killpg(p)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []
        if not self.keep:
            subprocess.run(["rm", "-rf", self.tmp])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_file(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def nfds(pid):
    """Open fds of a process"""
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    for line in read_file(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def listening(path):
    """True when a UNIX stream socket at @path accepts connections."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def unix_listening(path):
    """True when a UNIX socket listens at @path, without connecting to it
    (a connection to an ivshmem server would be a peer): /proc/net/unix."""
    for ln in read_file("/proc/net/unix").splitlines()[1:]:
        f = ln.split(None, 7)
        if len(f) == 8 and f[7] == path and int(f[3], 16) & 0x10000:
            return True
    return False


def device_types(qemu):
    """The device types a QEMU binary offers."""
    rc, out = run([qemu, "-M", "none", "-device", "help"], 30)
    return set(re.findall(r'^name "([^"]+)"', out, re.M))


def kvm_usable():
    """None when /dev/kvm can be opened read-write, else why not."""
    if not os.path.exists("/dev/kvm"):
        return "no /dev/kvm on this machine"
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError as e:
        return f"/dev/kvm: {e.strerror}"
    return None


# --- QMP -----------------------------------------------------------------

class Qmp:
    """A QMP client on a UNIX socket (-qmp unix:PATH,server=on,wait=off).
    Every command has a deadline; events are kept in self.events."""

    def __init__(self, path, timeout=10):
        self.events = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        wait_for(lambda: self._try_connect(path), timeout, f"QMP at {path}")
        self.buf = b""
        self._recv(timeout)                     # greeting
        self.cmd("qmp_capabilities", timeout=timeout)

    def _try_connect(self, path):
        try:
            self.sock.connect(path)
            return True
        except OSError:
            return False

    def _recv(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise Fail(f"QMP: no answer within {timeout} s")
            data = self.sock.recv(65536)
            if not data:
                raise Fail("QMP: connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, timeout=10, **args):
        """Run a command: its "return" value; Fail on an "error"."""
        r = self.cmd_raw(name, timeout=timeout, **args)
        if "error" in r:
            raise Fail(f"QMP {name}: {r['error'].get('desc')}")
        return r["return"]

    def cmd_raw(self, name, timeout=10, **args):
        """Run a command: the whole answer (return or error)."""
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._recv(timeout)
            if "event" in r:
                self.events.append(r)
                continue
            return r

    def close(self):
        self.sock.close()


# --- the ivshmem protocol on a raw socket --------------------------------

def recv_msg(sock, timeout=5):
    """One 8-byte little-endian message and its fd (or -1), or None at
    EOF.  Fail on a timeout."""
    data, fd = b"", -1
    deadline = time.monotonic() + timeout
    while len(data) < 8:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise Fail(f"no message within {timeout} s")
        fds = array.array("i")
        msg, anc, _, _ = sock.recvmsg(8 - len(data),
                                      socket.CMSG_SPACE(4 * 16))
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(cdata[:len(cdata) - len(cdata) % 4])
        for extra in fds[1:] if fd < 0 else fds:
            os.close(extra)
        if fd < 0 and fds:
            fd = fds[0]
        if not msg:
            if fd >= 0:
                os.close(fd)
            return None
        data += msg
    return struct.unpack("<q", data)[0], fd


def send_msg(sock, value, fd=-1):
    anc = []
    if fd >= 0:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                array.array("i", [fd]).tobytes())]
    sock.sendmsg([struct.pack("<q", value)], anc)
