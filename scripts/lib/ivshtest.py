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
(Qmp), the ivshmem protocol on a raw socket (recv_msg, send_msg),
systemd's side of a restarted unit (FdStore) and the paths of the
build.  Standard library only.
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


# --- systemd's side of a unit, for restarts ------------------------------

class FdStore:
    """What systemd does for a socket-activated Type=notify service with
    a file descriptor store (PID 1 is not systemd here): it holds the
    listening socket (self.sock) and the fds the service stores
    (FDSTORE=1 with FDNAME=, FDSTOREREMOVE=1 takes one out), and passes
    them to each run from fd 3 on (LISTEN_FDS, LISTEN_FDNAMES,
    LISTEN_PID), with NOTIFY_SOCKET set."""

    EXEC = ("import os, sys\n"
            "n = int(sys.argv[1])\n"
            "fds = [os.dup(int(f)) for f in sys.argv[2:2 + n]]\n"
            "for i, fd in enumerate(fds):\n"
            "    os.dup2(fd, 3 + i)\n"
            "os.environ['LISTEN_PID'] = str(os.getpid())\n"
            "os.execv(sys.argv[2 + n], sys.argv[2 + n:])\n")

    def __init__(self, procs, name="unit"):
        self.sock = procs.path(name + ".sock")
        self.listen = socket.socket(socket.AF_UNIX)
        self.listen.bind(self.sock)
        self.listen.listen(128)
        self.notify_path = procs.path(name + ".notify")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.store = {}             # FDNAME -> fd, in the order stored

    def start(self, procs, argv, log, name="service.socket"):
        """Start @argv as the service; wait for its READY=1"""
        fds = [self.listen.fileno()] + list(self.store.values())
        env = dict(os.environ, LISTEN_FDS=str(len(fds)),
                   LISTEN_FDNAMES=":".join([name] + list(self.store)),
                   NOTIFY_SOCKET=self.notify_path)
        p = procs.spawn([sys.executable, "-c", self.EXEC, str(len(fds))] +
                        [str(fd) for fd in fds] + list(argv), log=log,
                        env=env, pass_fds=fds)
        self.pump(b"READY=1")
        return p

    def pump(self, until=None, timeout=10):
        """Take notifications until one is @until; with None, until none
        comes for @timeout s"""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.notify], [], [],
                                              left)[0]:
                if until is None:
                    return
                raise Fail(f"no {until!r} from the service")
            data, fds, _, _ = socket.recv_fds(self.notify, 4096, 16)
            f = dict(ln.split(b"=", 1) for ln in data.split(b"\n")
                     if b"=" in ln)
            name = f.get(b"FDNAME", b"stored").decode()
            if f.get(b"FDSTOREREMOVE") == b"1" and name in self.store:
                os.close(self.store.pop(name))
            for fd in fds:
                if f.get(b"FDSTORE") == b"1" and name not in self.store:
                    self.store[name] = fd
                else:
                    os.close(fd)
            if until is not None and data == until:
                return
            if until is None:
                deadline = time.monotonic() + timeout

    def close(self):
        for fd in self.store.values():
            os.close(fd)
        self.store.clear()
        self.listen.close()
        self.notify.close()


# --- QEMU without a guest: qtest ------------------------------------------

class QtestVm:
    """A QEMU run with "-accel qtest" and driven over its qtest socket
    (memory, port I/O) and a QMP connection kept open (self.qmp), started
    by @procs (a Procs).  @args are the machine's other options, e.g. a
    chardev and an ivshmem-doorbell device."""

    def __init__(self, procs, binary, name, args, machine="pc", mem="64M",
                 timeout=20):
        self.name = name
        self.binary = binary
        qpath = procs.path(name + ".qtest")
        self.qmp_path = procs.path(name + ".qmp")
        self.log = procs.path(name + ".log")
        lsock = socket.socket(socket.AF_UNIX)
        lsock.bind(qpath)
        lsock.listen(1)
        argv = [binary, "-M", machine, "-accel", "qtest", "-m", mem,
                "-qtest", "unix:" + qpath, "-qtest-log", "/dev/null",
                "-nodefaults", "-display", "none",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        self.p = procs.spawn(argv + list(args), log=self.log)
        self.pid = self.p.pid
        try:
            wait_for(lambda: select.select([lsock], [], [], 0.05)[0] or
                     self.p.poll() is not None, timeout,
                     f"{name} to connect to qtest")
            if self.p.poll() is not None:
                raise Fail(f"{name} exited ({self.p.returncode}): " +
                           read_file(self.log)[-2000:])
            self.q, _ = lsock.accept()
        finally:
            lsock.close()
        self.qbuf = b""
        try:
            self.qmp = Qmp(self.qmp_path, timeout=timeout)
        except (OSError, Fail) as e:
            raise Fail(f"{name}: QMP: {e}: " + read_file(self.log)[-2000:])

    def qtest(self, line, timeout=10):
        """One qtest command: the words after "OK"."""
        self.q.sendall(line.encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.qbuf:
                ln, self.qbuf = self.qbuf.split(b"\n", 1)
                ln = ln.decode(errors="replace")
                if ln.startswith("IRQ"):
                    continue
                check(ln.startswith("OK"), f"{self.name}: qtest '{line}': "
                      f"{ln}")
                return ln.split()[1:]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.q], [], [], left)[0]:
                raise Fail(f"{self.name}: no qtest answer to '{line}' "
                           f"within {timeout} s")
            chunk = self.q.recv(65536)
            if not chunk:
                raise Fail(f"{self.name} closed qtest: " +
                           read_file(self.log)[-2000:])
            self.qbuf += chunk

    def readl(self, addr):
        return int(self.qtest(f"readl {addr:#x}")[0], 16)

    def writel(self, addr, val):
        self.qtest(f"writel {addr:#x} {val:#x}")

    def read(self, addr, n):
        return bytes.fromhex(self.qtest(f"read {addr:#x} {n}")[0][2:])

    def write(self, addr, data):
        self.qtest(f"write {addr:#x} {len(data)} 0x{data.hex()}")

    def cfg_read(self, devfn, off, size=4):
        self.qtest(f"outl 0xcf8 {0x80000000 | devfn << 8 | off & 0xfc:#x}")
        op = {1: "inb", 2: "inw", 4: "inl"}[size]
        return int(self.qtest(f"{op} {0xcfc + (off & 3):#x}")[0], 16)

    def cfg_write(self, devfn, off, val, size=4):
        self.qtest(f"outl 0xcf8 {0x80000000 | devfn << 8 | off & 0xfc:#x}")
        op = {1: "outb", 2: "outw", 4: "outl"}[size]
        self.qtest(f"{op} {0xcfc + (off & 3):#x} {val:#x}")

    def cmd(self, name, timeout=2, **args):
        """A QMP command that must answer within @timeout s"""
        return self.qmp.cmd(name, timeout=timeout, **args)

    def wait_event(self, name, timeout=10):
        """Wait for QMP event @name (already received ones count)"""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.qmp.events):
                if ev["event"] == name:
                    return self.qmp.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail(f"{self.name}: no {name} event within {timeout} s")
            try:
                r = self.qmp._recv(left)
            except Fail:
                continue
            if "event" in r:
                self.qmp.events.append(r)

    def fds(self):
        """(open fds, of which eventfds)"""
        n = ev = 0
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            n += 1
            try:
                if os.readlink(f"/proc/{self.pid}/fd/{fd}") == \
                        "anon_inode:[eventfd]":
                    ev += 1
            except OSError:
                pass
        return n, ev

    def rss_kib(self):
        return rss_kib(self.pid)

    def alive(self):
        return self.p.poll() is None

    def kill(self):
        _killpg(self.p)
        self.p.wait()
        self.close_sockets()

    def close_sockets(self):
        for s in (self.q, self.qmp.sock):
            try:
                s.close()
            except OSError:
                pass


class QtestIvsh:
    """An ivshmem PCI function of a QtestVm, set up as a guest driver
    would: BARs assigned, memory and bus mastering on, MSI-X entry v
    writing MSI_DATA + v to MSI_ADDR + 4 * v of guest RAM (the libqos
    way: a fired vector is a non-zero word there), masked ones showing
    up in the PBA."""

    MSI_ADDR = 0x200000
    MSI_DATA = 0x4000

    def __init__(self, vm, slot, bar0=0xfe000000, bar1=0xfe100000,
                 bar2=0xc0000000):
        self.vm, self.devfn = vm, slot << 3
        self.bar0, self.bar1, self.bar2 = bar0, bar1, bar2
        self.cap = self.nvec = None

    def cfg_read(self, off, size=4):
        return self.vm.cfg_read(self.devfn, off, size)

    def cfg_write(self, off, val, size=4):
        self.vm.cfg_write(self.devfn, off, val, size)

    def setup(self):
        """Assign the BARs, enable decoding and bus mastering; find the
        MSI-X capability (None for devices without one)"""
        ids = self.cfg_read(0)
        check(ids == 0x11101af4, f"{self.vm.name}: no ivshmem at devfn "
              f"{self.devfn:#x} ({ids:#x})")
        self.cfg_write(0x10, self.bar0)
        self.cfg_write(0x14, self.bar1)
        self.cfg_write(0x18, self.bar2 | (self.cfg_read(0x18) & 0xf))
        self.cfg_write(0x1c, 0)
        self.cfg_write(0x04, self.cfg_read(0x04, 2) | 0x6, 2)
        cap = self.cfg_read(0x34, 1) if self.cfg_read(0x06, 2) & 0x10 else 0
        while cap and self.cfg_read(cap, 1) != 0x11:
            cap = self.cfg_read(cap + 1, 1)
        self.cap = cap or None
        if cap:
            self.nvec = (self.cfg_read(cap + 2, 2) & 0x7ff) + 1
            table, pba = self.cfg_read(cap + 4), self.cfg_read(cap + 8)
            check(table & 7 == 1 and pba & 7 == 1, "MSI-X not in BAR1")
            self.table = self.bar1 + (table & ~7)
            self.pba_addr = self.bar1 + (pba & ~7)

    def msix_ctrl(self, enable, fmask):
        """MSI-X Enable and Function Mask bits"""
        ctrl = self.cfg_read(self.cap + 2, 2) & ~0xc000
        self.cfg_write(self.cap + 2, ctrl | (0x8000 if enable else 0) |
                       (0x4000 if fmask else 0), 2)

    def bus_master(self, on):
        cmd = self.cfg_read(0x04, 2)
        self.cfg_write(0x04, cmd | 4 if on else cmd & ~4, 2)

    def entry(self, v, masked):
        """Point entry @v at its word of guest RAM, (un)masked"""
        e = self.table + 16 * v
        self.vm.writel(e, self.MSI_ADDR + 4 * v)
        self.vm.writel(e + 4, 0)
        self.vm.writel(e + 8, self.MSI_DATA + v)
        self.vm.writel(e + 12, 1 if masked else 0)

    def mask(self, v, masked):
        self.vm.writel(self.table + 16 * v + 12, 1 if masked else 0)

    def pba(self):
        """The PBA as an integer, bit v = vector v pending"""
        bits = 0
        for w in range((self.nvec + 31) // 32):
            bits |= self.vm.readl(self.pba_addr + 4 * w) << (32 * w)
        return bits

    def fired(self):
        """The set of vectors whose word of guest RAM was written"""
        raw = self.vm.read(self.MSI_ADDR, 4 * self.nvec)
        got = set()
        for v in range(self.nvec):
            word = struct.unpack_from("<I", raw, 4 * v)[0]
            if word:
                check(word == self.MSI_DATA + v, f"{self.vm.name}: vector "
                      f"{v} wrote {word:#x}")
                got.add(v)
        return got

    def clear_fired(self):
        self.vm.write(self.MSI_ADDR, bytes(4 * self.nvec))

    def ivposition(self):
        return self.vm.readl(self.bar0 + 8)

    def doorbell(self, peer, vector):
        self.vm.writel(self.bar0 + 12, peer << 16 | vector)

    def shm_read(self, off, n):
        return self.vm.read(self.bar2 + off, n)

    def shm_write(self, off, data):
        self.vm.write(self.bar2 + off, data)


class HeldEventfds:
    """The eventfds an ivshmem-doorbell device holds, as the spec's
    protocol table says, for a device with @vectors on a server sending
    @server_vectors per peer: of each peer (itself included) the first
    min(vectors, server_vectors); with @budget (x-max-eventfds of the
    project's device), an eventfd of another peer is taken only while
    held + 1 + (own eventfds still to come) <= budget, and a peer whose
    first eventfd does not fit is refused until it leaves.  QEMU 10.0's
    device has no budget (None)."""

    def __init__(self, vectors, server_vectors, budget=None):
        self.vectors, self.nv, self.budget = vectors, server_vectors, budget
        self.held = {}
        self.refused = set()
        self.own_id = None

    def total(self):
        return sum(self.held.values())

    def receive(self, peer, own=False):
        """The server sent all eventfds of @peer (own: our own)"""
        if own:
            self.own_id = peer
        for _ in range(self.nv):
            count = self.held.get(peer, 0)
            if peer in self.refused or count >= self.vectors:
                continue
            room = 1
            if not own:
                room += self.vectors - self.held.get(self.own_id, 0)
            if self.budget is not None and self.total() + room > self.budget:
                if count == 0:
                    self.refused.add(peer)
                continue
            self.held[peer] = count + 1

    def leave(self, peer):
        self.held.pop(peer, None)
        self.refused.discard(peer)

    def can_ring(self, peer, vector):
        return vector < self.held.get(peer, 0)
