# SPDX-License-Identifier: GPL-2.0-or-later
#
# ivshmem benchmark: the host side
#
# The pieces bench/run-bench.py is made of, in plain Python 3 (Debian's
# /usr/bin/python3, standard library only):
#
#  - child processes that die with the benchmark (PR_SET_PDEATHSIG) and
#    are killed, by their own PID, when it stops for any reason;
#  - an ivshmem peer (protocol 0: version, own ID, shared memory, then
#    eventfds) that rings and is rung like a guest;
#  - a QMP client (vCPU thread IDs for pinning, KVM statistics);
#  - the mailbox protocol of the bare-metal test guest
#    (guest/baremetal/ivsh-guest.h, whose constants are checked against
#    the header at start-up) and its latency histogram;
#  - the host TSC (rdtsc through a 10-byte executable page, calibrated
#    against CLOCK_MONOTONIC_RAW): the guests time with rdtsc and the
#    host tells them its rate, as build/testguest/ivsh-pingpong does.
#
# This reimplements the part of ivsh-pingpong the benchmark needs beyond
# its options (the whole histogram for p90 and the CDF, several copy
# sizes, host<->VM round trips, many runs with one set-up each) without
# touching guest/baremetal.
#
# Copyright (c) 2026 The ivsh authors

import ctypes
import ctypes.util
import errno
import json
import math
import mmap
import os
import re
import resource
import select
import signal
import socket
import struct
import subprocess
import time

# --- layout of the shared memory, from guest/baremetal/ivsh-guest.h -------

IVG_GLOBAL_MAGIC = 0x4c474749
IVG_SLOT_MAGIC = 0x54534749
IVG_VERSION = 1
IVG_SLOT_OFFSET = 0x1000
IVG_SLOT_SIZE = 0x4000
IVG_MAX_SLOTS = 60
IVG_DATA_OFFSET = 0x100000
IVG_NO_PEER = 0xffffffff
IVG_HIST_SUB_BITS = 6
IVG_HIST_SUB = 1 << IVG_HIST_SUB_BITS
IVG_HIST_BUCKETS = (32 - IVG_HIST_SUB_BITS + 1) * IVG_HIST_SUB
IVG_EXIT_OK = 0x10
IVG_STATE_READY = 2

# IvgSlot offsets
S_MAGIC, S_STATE, S_ID, S_FEATURES, S_NVECTORS = 0x00, 0x08, 0x0c, 0x10, 0x14
S_INTX_GSI, S_TSC_KHZ, S_RDTSC, S_BAR2_KIB = 0x18, 0x20, 0x24, 0x28
S_DONE_SEQ, S_STATUS, S_PING, S_PONG, S_BOOT_MS = 0x2c, 0x30, 0x34, 0x38, 0x3c
S_SPURIOUS = 0x48
S_RES = 0x80
S_IRQ_COUNT = 0x100
S_MAILBOX = 0x400
S_HIST = 0x1000

F_MSIX, F_INTX, F_X2APIC, F_BAR2_64, F_KVM = 0x1, 0x2, 0x4, 0x8, 0x100

CMD_RESPOND, CMD_PINGPONG, CMD_BLAST, CMD_COPY, CMD_EXIT = 2, 3, 4, 5, 7
CMD_NAMES = {1: 'nop', 2: 'respond', 3: 'pingpong', 4: 'blast', 5: 'copy',
             6: 'masktest', 7: 'exit', 8: 'selftest'}
R_PP_COUNT, R_PP_SUM_NS, R_PP_MIN_NS, R_PP_MAX_NS, R_PP_TICKS = 0, 1, 2, 3, 4
R_PP_RETRIES = 5
R_BL_COUNT, R_BL_TICKS = 0, 1
R_CP_RAM_TO_BAR2, R_CP_BAR2_TO_RAM, R_CP_RAM_TO_RAM, R_CP_BYTES = 0, 1, 2, 3
GUEST_COPY_MAX = 16 << 20           # RAM_COPY_MAX of guest/main.c
GUEST_TIMER_MAX_MS = 540000         # the APIC timer's 32-bit count


def check_guest_header(path):
    """Fail early if ivsh-guest.h no longer matches the constants above"""
    want = {
        'IVG_GLOBAL_MAGIC': IVG_GLOBAL_MAGIC, 'IVG_SLOT_MAGIC': IVG_SLOT_MAGIC,
        'IVG_VERSION': IVG_VERSION, 'IVG_SLOT_OFFSET': IVG_SLOT_OFFSET,
        'IVG_SLOT_SIZE': IVG_SLOT_SIZE, 'IVG_MAX_SLOTS': IVG_MAX_SLOTS,
        'IVG_DATA_OFFSET': IVG_DATA_OFFSET,
        'IVG_HIST_SUB_BITS': IVG_HIST_SUB_BITS, 'IVG_EXIT_OK': IVG_EXIT_OK,
    }
    with open(path) as f:
        text = f.read()
    for name, value in want.items():
        m = re.search(r'#define\s+%s\s+(0x[0-9a-fA-F]+|\d+)' % name, text)
        if not m or int(m.group(1), 0) != value:
            raise RuntimeError('%s: %s changed; update bench/ivshbench.py'
                               % (path, name))
    for struct_field in ('offsetof(IvgSlot, res) == 0x80',
                         'offsetof(IvgSlot, irq_count) == 0x100',
                         'offsetof(IvgSlot, mailbox) == 0x400',
                         'offsetof(IvgSlot, hist) == 0x1000'):
        if struct_field not in text:
            raise RuntimeError('%s: IvgSlot layout changed (%s)'
                               % (path, struct_field))


# --- log-linear histogram (ivg_hist_* of ivsh-guest.h) ----------------------

def hist_bucket(ns):
    if ns < IVG_HIST_SUB:
        return ns
    if ns >= 1 << 32:
        return IVG_HIST_BUCKETS - 1
    e = ns.bit_length() - 1
    return ((e - IVG_HIST_SUB_BITS + 1) * IVG_HIST_SUB +
            ((ns >> (e - IVG_HIST_SUB_BITS)) & (IVG_HIST_SUB - 1)))


def hist_low(b):
    if b < IVG_HIST_SUB:
        return b
    e = b // IVG_HIST_SUB + IVG_HIST_SUB_BITS - 1
    return (IVG_HIST_SUB + b % IVG_HIST_SUB) << (e - IVG_HIST_SUB_BITS)


def hist_width(b):
    return 1 if b < IVG_HIST_SUB else 1 << (b // IVG_HIST_SUB - 1)


def hist_mid(b):
    return hist_low(b) + hist_width(b) / 2.0


def hist_from_samples(samples_ns):
    h = [0] * IVG_HIST_BUCKETS
    for ns in samples_ns:
        h[hist_bucket(int(ns))] += 1
    return h


def hist_percentile(h, q):
    """Bucket midpoint (ns) below which a fraction q of the samples lie"""
    total = sum(h)
    if not total:
        return None
    want = max(1, math.ceil(total * q - 1e-9))
    acc = 0
    for b, n in enumerate(h):
        acc += n
        if acc >= want:
            return hist_mid(b)
    return hist_mid(len(h) - 1)


def hist_sparse(h):
    """{bucket: count} for the JSON file: the histograms are mostly 0"""
    return {str(b): n for b, n in enumerate(h) if n}


def hist_dense(sparse):
    h = [0] * IVG_HIST_BUCKETS
    for b, n in sparse.items():
        h[int(b)] += n
    return h


def latency_summary(h, min_ns=None, max_ns=None, sum_ns=None):
    """Percentiles in microseconds (bucket midpoints, <= 0.8 % error)"""
    n = sum(h)
    out = {'unit': 'us', 'count': n}
    for key, q in (('p50', 0.50), ('p90', 0.90), ('p99', 0.99),
                   ('p99_9', 0.999)):
        v = hist_percentile(h, q)
        out[key] = None if v is None else round(v / 1e3, 3)
    out['min'] = None if min_ns is None else round(min_ns / 1e3, 3)
    out['max'] = None if max_ns is None else round(max_ns / 1e3, 3)
    out['mean'] = None if (sum_ns is None or not n) else \
        round(sum_ns / n / 1e3, 3)
    return out


# --- host TSC ---------------------------------------------------------------

class Tsc:
    """rdtsc from Python: a 10-byte function in an executable page"""

    CODE = bytes([0x0f, 0x31,                   # rdtsc
                  0x48, 0xc1, 0xe2, 0x20,       # shl rdx, 32
                  0x48, 0x09, 0xd0,             # or rax, rdx
                  0xc3])                        # ret

    def __init__(self):
        self.read = None
        self.khz = None
        try:
            self._page = mmap.mmap(-1, mmap.PAGESIZE,
                                   prot=mmap.PROT_READ | mmap.PROT_WRITE |
                                   mmap.PROT_EXEC)
            self._page.write(self.CODE)
            addr = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
            self.read = ctypes.CFUNCTYPE(ctypes.c_uint64)(addr)
        except (OSError, ValueError, TypeError):
            self.read = None
        self.t0 = self.read() if self.read else None
        self.ns0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)

    def calibrate(self):
        """Host TSC kHz over the time since start-up (>= 0.2 s)"""
        if not self.read:
            return None
        ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW) - self.ns0
        if ns < 200000000:
            time.sleep((200000000 - ns) / 1e9)
        t = self.read()
        ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW) - self.ns0
        self.khz = int((t - self.t0) * 1000000 // ns)
        return self.khz


# --- child processes --------------------------------------------------------

_libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6',
                    use_errno=True)
PR_SET_PDEATHSIG = 1
CHILDREN = []           # every Popen we started, for kill_children()


def _child_setup(nofile):
    def setup():
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if nofile:
            raise_nofile(nofile)
    return setup


def spawn(argv, log_path, nofile=None, stdin=subprocess.DEVNULL,
          stdout=None):
    """Start argv; output to log_path (or stdout=PIPE); dies with us"""
    log = open(log_path, 'wb') if log_path else None
    try:
        p = subprocess.Popen(argv, stdin=stdin,
                             stdout=stdout if stdout else log,
                             stderr=log if log else subprocess.DEVNULL,
                             preexec_fn=_child_setup(nofile),
                             close_fds=True)
    finally:
        if log:
            log.close()
    p.log_path = log_path
    CHILDREN.append(p)
    return p


def stop(p, grace=2.0):
    """SIGTERM, then SIGKILL, this one child; returns its exit status"""
    if p is None:
        return None
    if p.poll() is None:
        try:
            p.terminate()
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in CHILDREN:
        CHILDREN.remove(p)
    return p.returncode


def kill_children():
    for p in list(CHILDREN):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        CHILDREN.remove(p)


def last_lines(path, n=5):
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            lines = f.read().decode(errors='replace').splitlines()
    except OSError:
        return ''
    return ' | '.join(l.strip() for l in lines[-n:] if l.strip())


def raise_nofile(want):
    """Raise our RLIMIT_NOFILE to want (above the hard limit only with
    CAP_SYS_RESOURCE, else to the hard limit); the soft limit now"""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for lim in ((want, max(want, hard)), (min(want, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, lim)
            return lim[0]
        except (ValueError, OSError):
            continue
    return soft


# --- ivshmem peer (protocol 0) ----------------------------------------------

class PeerError(Exception):
    pass


def connect_unix(path, deadline):
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError as e:
            s.close()
            if e.errno not in (errno.ENOENT, errno.ECONNREFUSED) or \
               time.monotonic() > deadline:
                raise PeerError('connect %s: %s' % (path, e.strerror))
            time.sleep(0.005)


def recv_msg(sock):
    """One 8-byte message and its fd (or -1); None on EOF"""
    data = b''
    fd = -1
    while len(data) < 8:
        try:
            part, fds, _, _ = socket.recv_fds(sock, 8 - len(data), 4)
        except BlockingIOError:
            if not data:
                raise
            select.select([sock], [], [], 1.0)
            continue
        if not part:
            for f in fds:
                os.close(f)
            return None
        for f in fds:
            if fd >= 0:
                os.close(fd)
            fd = f
        data += part
    return struct.unpack('<q', data)[0], fd


class Peer:
    """A host-side ivshmem peer: shared memory and everyone's eventfds"""

    def __init__(self, path, vectors, timeout=10.0):
        deadline = time.monotonic() + timeout
        self.sock = connect_unix(path, deadline)
        self.vectors = vectors
        self.fds = {}               # peer ID -> [eventfd per vector]
        self.joined = []            # peer IDs in order of arrival
        self.shm = None
        self.sock.settimeout(timeout)
        try:
            ver = recv_msg(self.sock)
            if ver is None or ver[0] != 0 or ver[1] >= 0:
                raise PeerError('bad protocol version message %r' % (ver,))
            idm = recv_msg(self.sock)
            if idm is None or idm[1] >= 0 or not 0 <= idm[0] <= 0xffff:
                raise PeerError('bad peer ID message %r' % (idm,))
            self.id = idm[0]
            shm = recv_msg(self.sock)
            if shm is None or shm[0] != -1 or shm[1] < 0:
                raise PeerError('no shared memory from the server')
            self.shm_size = os.fstat(shm[1]).st_size
            self.shm = mmap.mmap(shm[1], self.shm_size, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
            os.close(shm[1])
            while len(self.fds.get(self.id, [])) < vectors:
                m = recv_msg(self.sock)
                if m is None:
                    raise PeerError('server closed the connection')
                self._process(*m)
        except socket.timeout:
            raise PeerError('server silent during set-up')
        self.sock.setblocking(False)
        for fd in self.fds[self.id]:
            os.set_blocking(fd, False)

    def _process(self, val, fd):
        if val < 0 or val > 0xffff:
            if fd >= 0:
                os.close(fd)
            raise PeerError('server sent %d' % val)
        if fd < 0:
            for f in self.fds.pop(val, []):
                os.close(f)
            return
        lst = self.fds.setdefault(val, [])
        if not lst and val != self.id:
            self.joined.append(val)
        if len(lst) < self.vectors:
            lst.append(fd)
        else:
            os.close(fd)

    def pump(self):
        """Handle what the server sent since; False if it went away"""
        while True:
            try:
                m = recv_msg(self.sock)
            except BlockingIOError:
                return True
            if m is None:
                return False
            self._process(*m)

    def has(self, pid):
        return len(self.fds.get(pid, [])) >= self.vectors

    def ring(self, pid, vector):
        os.write(self.fds[pid][vector], b'\1\0\0\0\0\0\0\0')

    def own_fd(self, vector):
        return self.fds[self.id][vector]

    def drain(self, vector):
        try:
            os.read(self.own_fd(vector), 8)
        except BlockingIOError:
            pass

    def u32(self, off):
        return struct.unpack_from('<I', self.shm, off)[0]

    def u64(self, off):
        return struct.unpack_from('<Q', self.shm, off)[0]

    def put32(self, off, v):
        struct.pack_into('<I', self.shm, off, v)

    def close(self):
        for lst in self.fds.values():
            for f in lst:
                os.close(f)
        self.fds = {}
        if self.shm is not None:
            self.shm.close()
            self.shm = None
        self.sock.close()


# --- QMP --------------------------------------------------------------------

class Qmp:
    def __init__(self, path, timeout=10.0):
        deadline = time.monotonic() + timeout
        self.sock = connect_unix(path, deadline)
        self.sock.settimeout(timeout)
        self.buf = b''
        greeting = self._line()
        if 'QMP' not in greeting:
            raise PeerError('QMP: no greeting')
        self.cmd('qmp_capabilities')

    def _line(self):
        while b'\n' not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise PeerError('QMP: connection closed')
            self.buf += data
        line, self.buf = self.buf.split(b'\n', 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {'execute': name}
        if args:
            msg['arguments'] = args
        self.sock.sendall(json.dumps(msg).encode() + b'\n')
        while True:
            r = self._line()
            if 'return' in r:
                return r['return']
            if 'error' in r:
                raise PeerError('QMP %s: %s' % (name, r['error'].get('desc')))

    def vcpu_threads(self):
        return [c['thread-id'] for c in self.cmd('query-cpus-fast')]

    KVM_STATS = ('exits', 'mmio_exits', 'io_exits', 'halt_exits',
                 'irq_injections')

    def kvm_stats(self):
        """Per-VM sums of the vCPU KVM statistics; None without KVM"""
        try:
            r = self.cmd('query-stats', target='vcpu',
                         providers=[{'provider': 'kvm',
                                     'names': list(self.KVM_STATS)}])
        except PeerError:
            return None
        out = {}
        for vcpu in r:
            for st in vcpu.get('stats', []):
                if isinstance(st.get('value'), int):
                    out[st['name']] = out.get(st['name'], 0) + st['value']
        return out or None

    def close(self):
        self.sock.close()


def pin_thread(tid, cpu):
    try:
        os.sched_setaffinity(tid, {cpu})
        return True
    except OSError:
        return False


# --- machine ----------------------------------------------------------------

def machine_info():
    info = {'kernel': os.uname().release, 'cpus_online': os.cpu_count()}
    try:
        with open('/proc/cpuinfo') as f:
            cpuinfo = f.read()
        m = re.search(r'^model name\s*:\s*(.*)$', cpuinfo, re.M)
        info['cpu_model'] = m.group(1).strip() if m else None
        fam = re.search(r'^cpu family\s*:\s*(\d+)', cpuinfo, re.M)
        mod = re.search(r'^model\s*:\s*(\d+)', cpuinfo, re.M)
        info['cpu_family_model'] = '%s/%s' % (
            fam.group(1) if fam else '?', mod.group(1) if mod else '?')
        flags = re.search(r'^flags\s*:\s*(.*)$', cpuinfo, re.M)
        fl = flags.group(1).split() if flags else []
        info['cpu_virt_flags'] = [x for x in ('vmx', 'svm', 'hypervisor')
                                  if x in fl]
    except OSError:
        pass
    try:
        with open('/proc/meminfo') as f:
            m = re.search(r'MemTotal:\s*(\d+)', f.read())
            info['mem_gib'] = round(int(m.group(1)) / 1048576, 1)
    except (OSError, AttributeError):
        pass
    try:
        with open('/etc/debian_version') as f:
            info['debian'] = f.read().strip()
    except OSError:
        pass
    mods = []
    try:
        with open('/proc/modules') as f:
            for line in f:
                name = line.split()[0]
                if name.startswith('kvm'):
                    mods.append(name)
    except OSError:
        pass
    info['kvm_modules'] = mods
    info['dev_kvm'] = os.path.exists('/dev/kvm')
    try:
        with open('/sys/module/kvm/parameters/halt_poll_ns') as f:
            info['halt_poll_ns'] = int(f.read())
    except (OSError, ValueError):
        info['halt_poll_ns'] = None
    return info


def loadavg():
    try:
        with open('/proc/loadavg') as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


def qemu_version(qemu):
    try:
        out = subprocess.run([qemu, '--version'], capture_output=True,
                             text=True, timeout=20).stdout
        return out.splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def smaps_rollup(pid):
    """Rss and Pss of a process, kB"""
    out = {}
    try:
        with open('/proc/%d/smaps_rollup' % pid) as f:
            for line in f:
                k, _, rest = line.partition(':')
                if k in ('Rss', 'Pss', 'Pss_Anon', 'Pss_File', 'Pss_Shmem',
                         'Anonymous'):
                    out[k.lower()] = int(rest.split()[0])
    except OSError:
        pass
    return out


def highest_fd(pid, start=0):
    """Highest open descriptor number of pid, or -1, by galloping from
    start: a few lstat() calls where listing /proc/PID/fd with 16k
    entries costs 15 ms.  Descriptors are allocated lowest-free, so
    once the holes left by start-up are filled this grows with every
    new one."""
    d = '/proc/%d/fd/' % pid

    def has(n):
        try:
            os.lstat(d + str(n))
            return True
        except OSError:
            return False
    lo = start if start > 0 and has(start) else -1
    if lo < 0:
        for n in range(0, 64):
            if has(n):
                lo = n
        if lo < 0:
            return -1
    step = 1
    while has(lo + step):
        lo += step
        step *= 2
    hi = lo + step              # lo open, hi closed
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if has(mid):
            lo = mid
        else:
            hi = mid
    return lo


def count_fds(pid, eventfds=False):
    d = '/proc/%d/fd' % pid
    try:
        names = os.listdir(d)
    except OSError:
        return None
    if not eventfds:
        return len(names)
    n = 0
    for name in names:
        try:
            if os.readlink(os.path.join(d, name)) == 'anon_inode:[eventfd]':
                n += 1
        except OSError:
            pass
    return n
