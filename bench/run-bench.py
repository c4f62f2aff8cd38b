#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""make bench: the ivshmem doorbell benchmark.

Compares, on one machine, with one test guest image (the bare-metal
guest of guest/baremetal, as -bios) and one ivshmem server for every
configuration (the project's build/tools/ivsh-server; QEMU's contrib
server if it is missing, and the output says so):

  a    the project's ivshmem-doorbell, ioeventfd=on
  b    the project's ivshmem-doorbell, ioeventfd=off
  c    QEMU 10.0's own ivshmem-doorbell (build/upstream), ioeventfd=on
  c'   the same, ioeventfd=off
  d    the project's legacy ivshmem, msi=off (INTx)
  f1   floor: raw KVM, ioeventfd = peer's irqfd (bench/floor kvm-floor
       vm-vm; also vm-vm-userspace = f1u and host-vm = f1h)
  f2   floor: two host threads, eventfd ping-pong, blocking (f2b) and
       busy-polling (f2p) (bench/floor eventfd-pingpong)

interleaved (a b c c' d f1 f1u f1h f2b f2p, repeated --reps times, fresh
processes every time), under KVM when it works and under TCG always.
Then the join cost: N-1 host peers (bench/join-peers.py) hold their
eventfds, and one QEMU (paused, -S) joins as the N-th peer with 64
vectors; ready = QMP answers, every host peer holds the new peer's 64
eventfds and the QEMU process stopped gaining file descriptors.

Writes bench/results/bench-<date>-<mode>.json and two PNGs, prints a
markdown report and writes it to docs/benchmarks.md (a quick run does
not replace the report of a full run).  Targets print PASS/MISS/n/a;
they never change the exit status.  Exit status: 0 done, 1 could not
run (missing binaries, every run failed), 2 usage.
"""

import argparse
import datetime
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.dont_write_bytecode = True     # no bench/__pycache__ in the tree
sys.path.insert(0, BENCH)
import ivshbench as ib  # noqa: E402
import report  # noqa: E402

OURS = os.path.join(ROOT, 'build/qemu/qemu-system-x86_64')
UPSTREAM = os.path.join(ROOT, 'build/upstream/qemu-system-x86_64')
GUEST = os.path.join(ROOT, 'build/testguest/ivsh-guest.bin')
# The real-mode variant, for KVM hosts that run only real-mode guest code
# (kvm-pvm): -M pc, BARs below 1 MiB, at most 128 KiB of shared memory.
GUEST16 = os.path.join(ROOT, 'build/testguest/ivsh-guest16.bin')
SHM_SIZE16 = 128 << 10
GUEST_H = os.path.join(ROOT, 'guest/baremetal/ivsh-guest.h')
IVSH_SERVER = os.path.join(ROOT, 'build/tools/ivsh-server')
CONTRIB_SERVER = os.path.join(
    ROOT, 'build/upstream/contrib/ivshmem-server/ivshmem-server')
KVM_FLOOR = os.path.join(ROOT, 'build/bench/floor/kvm-floor')
EVENTFD_PP = os.path.join(ROOT, 'build/bench/floor/eventfd-pingpong')
JOIN_PEERS = os.path.join(BENCH, 'join-peers.py')

KVM_CPU = 'host,-arch-capabilities'
SHM_SIZE = 32 << 20
CHILD_NOFILE = 65536            # every QEMU, server and peer process
OURS_MAX_EVENTFDS = 8192        # default of our x-max-eventfds

CONFIGS = [
    {'tag': 'a', 'qemu': 'ours', 'device': 'ivshmem-doorbell',
     'opts': 'ioeventfd=on', 'desc': 'ours, ivshmem-doorbell ioeventfd=on'},
    {'tag': 'b', 'qemu': 'ours', 'device': 'ivshmem-doorbell',
     'opts': 'ioeventfd=off', 'desc': 'ours, ivshmem-doorbell ioeventfd=off'},
    {'tag': 'c', 'qemu': 'upstream', 'device': 'ivshmem-doorbell',
     'opts': 'ioeventfd=on',
     'desc': 'QEMU 10.0 ivshmem-doorbell ioeventfd=on'},
    {'tag': "c'", 'qemu': 'upstream', 'device': 'ivshmem-doorbell',
     'opts': 'ioeventfd=off',
     'desc': 'QEMU 10.0 ivshmem-doorbell ioeventfd=off'},
    {'tag': 'd', 'qemu': 'ours', 'device': 'ivshmem',
     'opts': 'msi=off,size=%dM' % (SHM_SIZE >> 20),
     'desc': 'ours, legacy ivshmem msi=off (INTx)'},
]
FLOORS = [
    {'tag': 'f1', 'tool': KVM_FLOOR, 'mode': 'vm-vm', 'accel': 'kvm',
     'kind': 'vm_vm', 'desc': 'raw KVM, ioeventfd = peer irqfd (MSI)'},
    {'tag': 'f1u', 'tool': KVM_FLOOR, 'mode': 'vm-vm-userspace',
     'accel': 'kvm', 'kind': 'vm_vm',
     'desc': 'raw KVM, MMIO exit, VMM writes peer irqfd'},
    {'tag': 'f1h', 'tool': KVM_FLOOR, 'mode': 'host-vm', 'accel': 'kvm',
     'kind': 'host_vm', 'desc': 'raw KVM, host thread <-> VM'},
    {'tag': 'f2b', 'tool': EVENTFD_PP, 'mode': 'block', 'accel': 'host',
     'kind': 'host', 'desc': 'host threads, eventfd, blocking read'},
    {'tag': 'f2p', 'tool': EVENTFD_PP, 'mode': 'poll', 'accel': 'host',
     'kind': 'host', 'desc': 'host threads, eventfd, busy-poll'},
]

FULL = {'reps': 5, 'count': 100000, 'warmup': 10000, 'host_count': 100000,
        'host_warmup': 2000, 'blast': 100000,
        'copy_sizes': [4 << 10, 64 << 10, 1 << 20, 16 << 20],
        'copy_bytes': 16 << 20, 'join_n': [1, 16, 64, 256], 'join_reps': 3}
QUICK = {'reps': 2, 'count': 2000, 'warmup': 200, 'host_count': 1000,
         'host_warmup': 100, 'blast': 5000,
         'copy_sizes': [4 << 10, 1 << 20], 'copy_bytes': 1 << 20,
         'join_n': [1, 16, 64], 'join_reps': 1}


TMPDIRS = []                    # removed on exit, also on a signal


class RunError(Exception):
    pass


class Progress:
    def __init__(self, total):
        self.total = total
        self.done = 0
        self.t0 = time.monotonic()

    def step(self, what):
        self.done += 1
        el = time.monotonic() - self.t0
        eta = el / (self.done - 1) * (self.total - self.done + 1) \
            if self.done > 1 else None
        sys.stderr.write('bench: [%d/%d %s%s] %s\n' % (
            self.done, self.total, fmt_dur(el),
            ', ~%s left' % fmt_dur(eta) if eta is not None else '', what))
        sys.stderr.flush()

    def note(self, text):
        sys.stderr.write('bench:   %s\n' % text)
        sys.stderr.flush()


def fmt_dur(s):
    s = int(s)
    return '%dm%02ds' % (s // 60, s % 60) if s >= 60 else '%ds' % s


class Bench:
    def __init__(self, opts):
        self.o = opts
        self.tmp = tempfile.mkdtemp(prefix='ivsh-bench.')
        TMPDIRS.append(self.tmp)
        self.tsc = ib.Tsc()
        self.cpus = sorted(os.sched_getaffinity(0))
        self.progress = None
        self.server_path, self.server_style, self.server_note = \
            self.pick_server()
        self.kvm16 = False          # KVM runs use the real-mode guest

    def guest16(self, accel):
        """Whether runs under @accel use the real-mode guest"""
        return self.o.guest16 or (accel == 'kvm' and self.kvm16)

    # --- prerequisites -----------------------------------------------------

    def pick_server(self):
        if self.o.server:
            base = os.path.basename(self.o.server)
            style = 'contrib' if base == 'ivshmem-server' else 'ivsh'
            return self.o.server, style, 'as requested (--server)'
        if os.access(IVSH_SERVER, os.X_OK):
            return IVSH_SERVER, 'ivsh', "the project's server"
        return (CONTRIB_SERVER, 'contrib',
                "FALLBACK: build/tools/ivsh-server is missing (make tools); "
                "QEMU's contrib ivshmem-server feeds every configuration")

    def check(self):
        missing = [p for p in (OURS, UPSTREAM, GUEST, self.server_path,
                               KVM_FLOOR, EVENTFD_PP)
                   if not os.access(p, os.X_OK if p != GUEST else os.R_OK)]
        if missing:
            raise RunError('missing: %s (run make bench, which builds them)'
                           % ', '.join(missing))
        ib.check_guest_header(GUEST_H)

    def kvm_probe(self):
        """(usable, reason): the test guest under KVM, as ivsh-pingpong"""
        if not os.access('/dev/kvm', os.R_OK | os.W_OK):
            return False, '/dev/kvm missing' if not \
                os.path.exists('/dev/kvm') else '/dev/kvm not accessible'
        return self._kvm_guest_run(
            'kvm-probe', 'test guest', ['-M', 'q35', '-bios', GUEST,
                                        '-fw_cfg', 'name=opt/ivsh-guest/run,'
                                        'string=probe'])

    def kvm_probe16(self):
        """The real-mode guest under KVM (no device: it exits at once)"""
        if not os.access(GUEST16, os.R_OK):
            return False, 'no %s' % os.path.relpath(GUEST16, ROOT)
        return self._kvm_guest_run('kvm-probe16', 'the real-mode guest',
                                   ['-M', 'pc', '-bios', GUEST16])

    def _kvm_guest_run(self, name, what, args):
        """(usable, reason): one guest run under KVM that must exit OK"""
        log = os.path.join(self.tmp, name + '.log')
        p = ib.spawn([OURS, '-accel', 'kvm', '-cpu', KVM_CPU, '-m', '64',
                      '-smp', '1', '-nodefaults', '-display', 'none',
                      '-no-reboot', '-device',
                      'isa-debug-exit,iobase=0xf4,iosize=4'] + args, log)
        try:
            rc = p.wait(20)
        except subprocess.TimeoutExpired:
            ib.stop(p)
            return False, '%s did not finish under KVM' % what
        ib.stop(p)
        if rc != ib.IVG_EXIT_OK * 2 + 1:
            return False, '%s under KVM exited with %d: %s' % (
                what, rc, ib.last_lines(log, 1))
        return True, 'probe passed'

    def kvm_probe_any(self):
        """(usable, reason): the 32-bit guest, else the real-mode one"""
        ok, why = self.kvm_probe()
        if ok or not os.path.exists('/dev/kvm'):
            return ok, why
        ok16, why16 = self.kvm_probe16()
        if not ok16:
            return False, '%s; %s' % (why, why16)
        self.kvm16 = True
        return True, ('the 32-bit test guest does not run here (%s): KVM '
                      'rows use the 16-bit real-mode guest, -M pc, 128 KiB '
                      'of shared memory' % why)

    # --- one doorbell configuration ----------------------------------------

    def start_server(self, d, vectors, size=SHM_SIZE):
        sock = os.path.join(d, 'server.sock')
        argv = [self.server_path]
        if self.server_style == 'contrib':
            argv += ['-F', '-m', '/dev/shm']
        argv += ['-S', sock, '-l', str(size), '-n', str(vectors)]
        return ib.spawn(argv, os.path.join(d, 'server.log'),
                        nofile=CHILD_NOFILE), sock

    def qemu_argv(self, binary, accel, name, d, device, extra=()):
        argv = [binary, '-name', name, '-accel', accel]
        real16 = self.guest16(accel)
        if accel == 'kvm':
            argv += ['-cpu', KVM_CPU]
        elif real16:
            argv += ['-cpu', 'max']     # its EOI and timer are x2APIC MSRs
        argv += ['-M', 'pc' if real16 else 'q35', '-m', '64', '-smp', '1',
                 '-nodefaults', '-display', 'none', '-no-reboot', '-bios',
                 GUEST16 if real16 else GUEST,
                 '-debugcon', 'file:%s/%s.con' % (d, name),
                 '-device', 'isa-debug-exit,iobase=0xf4,iosize=4',
                 '-qmp', 'unix:%s/%s.qmp,server=on,wait=off' % (d, name),
                 '-chardev', 'socket,id=ivsh,path=%s/server.sock' % d,
                 '-device', device]
        return argv + list(extra)

    def wait(self, cond, timeout, what, peer=None, procs=()):
        deadline = time.monotonic() + timeout
        while True:
            if peer is not None and not peer.pump():
                raise RunError('lost the server connection')
            if cond():
                return
            for p in procs:
                if p.poll() is not None:
                    raise RunError('%s exited with status %d while waiting '
                                   'for %s: %s' % (
                                       os.path.basename(p.log_path),
                                       p.returncode, what,
                                       ib.last_lines(p.log_path, 3)))
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunError('timed out waiting for %s' % what)
            fds = [peer.sock] if peer is not None else []
            if peer is not None and peer.id in peer.fds:
                fds.append(peer.own_fd(0))
            r, _, _ = select.select(fds, [], [], min(left, 0.05))
            if peer is not None and peer.id in peer.fds and \
               peer.own_fd(0) in r:
                peer.drain(0)

    def slot(self, vid):
        return ib.IVG_SLOT_OFFSET + vid * ib.IVG_SLOT_SIZE

    def command(self, peer, vm, cmd, args, timeout_ms, procs):
        base = self.slot(vm['id'])
        mb = base + ib.S_MAILBOX
        args = list(args) + [0] * (6 - len(args))
        args[4] = min(int(timeout_ms), ib.GUEST_TIMER_MAX_MS)
        peer.put32(mb + 4, cmd)
        for i, a in enumerate(args):
            peer.put32(mb + 8 + 4 * i, a & 0xffffffff)
        vm['seq'] = (vm['seq'] + 1) & 0xffffffff
        peer.put32(mb, vm['seq'])
        peer.ring(vm['id'], 0)
        self.wait(lambda: peer.u32(base + ib.S_DONE_SEQ) == vm['seq'],
                  args[4] / 1000.0 + 15, "%s to finish '%s'" % (
                      vm['name'], ib.CMD_NAMES.get(cmd, cmd)),
                  peer, procs)
        return peer.u32(base + ib.S_STATUS)

    def command_ok(self, peer, vm, cmd, args, timeout_ms, procs):
        st = self.command(peer, vm, cmd, args, timeout_ms, procs)
        if st != 0:
            raise RunError("%s: command '%s' failed with guest status %d: %s"
                           % (vm['name'], ib.CMD_NAMES.get(cmd, cmd), st,
                              ib.last_lines(vm['con'], 2)))

    def run_doorbell(self, cfg, accel):
        o = self.o
        d = tempfile.mkdtemp(dir=self.tmp, prefix='run.')
        binary = OURS if cfg['qemu'] == 'ours' else UPSTREAM
        dev = '%s,chardev=ivsh,vectors=1,%s' % (cfg['device'], cfg['opts'])
        res = {'tag': cfg['tag'], 'accel': accel}
        real16 = self.guest16(accel)
        if real16 and 'msi=off' in cfg['opts']:
            shutil.rmtree(d, ignore_errors=True)
            res.update(status='skipped', reason='the real-mode guest has '
                       'no INTx')
            return res
        server, sock = self.start_server(d, 1, SHM_SIZE16 if real16
                                         else SHM_SIZE)
        procs = [server]
        peer = None
        try:
            peer = ib.Peer(sock, 1)
            if peer.id >= ib.IVG_MAX_SLOTS:
                raise RunError('host peer ID %d has no slot' % peer.id)
            # IvgGlobal: magic last
            peer.put32(0, 0)
            peer.put32(4, ib.IVG_VERSION)
            peer.put32(8, peer.id)
            peer.put32(12, 0)
            peer.put32(16, self.tsc.khz or 0)
            peer.put32(0, ib.IVG_GLOBAL_MAGIC)
            vms = []
            for name in ('vmA', 'vmB'):
                p = ib.spawn(self.qemu_argv(binary, accel, name, d, dev),
                             os.path.join(d, name + '.log'),
                             nofile=CHILD_NOFILE)
                procs.append(p)
                known = len(peer.joined)
                self.wait(lambda: len(peer.joined) > known and
                          peer.has(peer.joined[known]), 30,
                          '%s to join the server' % name, peer, procs)
                vid = peer.joined[known]
                if vid >= ib.IVG_MAX_SLOTS:
                    raise RunError('%s got peer ID %d (no slot)' % (name,
                                                                    vid))
                vms.append({'name': name, 'id': vid, 'proc': p,
                            'con': os.path.join(d, name + '.con'),
                            'qmp_path': os.path.join(d, name + '.qmp')})
            for vm in vms:
                sb = self.slot(vm['id'])
                self.wait(lambda: peer.u32(sb + ib.S_MAGIC) ==
                          ib.IVG_SLOT_MAGIC and
                          peer.u32(sb + ib.S_STATE) == ib.IVG_STATE_READY and
                          peer.u32(sb + ib.S_ID) == vm['id'], 60,
                          '%s guest ready' % vm['name'], peer, procs)
                vm['seq'] = peer.u32(sb + ib.S_DONE_SEQ)
                feat = peer.u32(sb + ib.S_FEATURES)
                if not feat & (ib.F_MSIX | ib.F_INTX):
                    raise RunError('%s: no interrupt from the device'
                                   % vm['name'])
                vm['features'] = feat
                vm['boot_ms'] = peer.u32(sb + ib.S_BOOT_MS)
                vm['qmp'] = ib.Qmp(vm['qmp_path'])
                vm['threads'] = vm['qmp'].vcpu_threads()
            a, b = vms
            res['guest'] = {
                'interrupt': 'MSI-X' if a['features'] & ib.F_MSIX else 'INTx',
                'x2apic': bool(a['features'] & ib.F_X2APIC),
                'kvm_cpuid': bool(a['features'] & ib.F_KVM),
                'boot_ms': [a['boot_ms'], b['boot_ms']],
                'guest_tsc_khz': peer.u32(self.slot(a['id']) + ib.S_TSC_KHZ),
                'rdtsc_ticks': peer.u32(self.slot(a['id']) + ib.S_RDTSC),
            }
            pinned = self.pin(accel)
            if pinned:
                for vm, cpu in zip(vms, self.cpus[:2]):
                    for t in vm['threads']:
                        pinned &= ib.pin_thread(t, cpu)
            res['pinned'] = 'vmA vCPU -> CPU%d, vmB vCPU -> CPU%d, host '\
                'peer -> CPU%d' % (self.cpus[0], self.cpus[1], self.cpus[0]) \
                if pinned else 'no'

            def timeout(n):
                return max(60000, n * 3)    # ms, for the guest's timer

            # VM <-> VM round trips
            self.command_ok(peer, b, ib.CMD_RESPOND, [a['id'], 0], 10000,
                            procs)
            if o.warmup:
                self.command_ok(peer, a, ib.CMD_PINGPONG,
                                [b['id'], 0, 0, o.warmup],
                                timeout(o.warmup), procs)
                res['warmup_retries'] = peer.u64(
                    self.slot(a['id']) + ib.S_RES + 8 * ib.R_PP_RETRIES)
            st0 = [vm['qmp'].kvm_stats() for vm in vms]
            cpu0 = [proc_cpu(vm['proc'].pid, vm['threads']) for vm in vms]
            t0 = time.monotonic()
            self.command_ok(peer, a, ib.CMD_PINGPONG, [b['id'], 0, o.count, 0],
                            timeout(o.count), procs)
            wall = time.monotonic() - t0
            st1 = [vm['qmp'].kvm_stats() for vm in vms]
            cpu1 = [proc_cpu(vm['proc'].pid, vm['threads']) for vm in vms]
            sa = self.slot(a['id'])
            r = [peer.u64(sa + ib.S_RES + 8 * i) for i in range(6)]
            hist = list(struct.unpack_from(
                '<%dI' % ib.IVG_HIST_BUCKETS, peer.shm, sa + ib.S_HIST))
            n = r[ib.R_PP_COUNT]
            khz = self.tsc.khz or res['guest']['guest_tsc_khz']
            res['vm_vm'] = ib.latency_summary(hist, r[ib.R_PP_MIN_NS],
                                              r[ib.R_PP_MAX_NS],
                                              r[ib.R_PP_SUM_NS])
            res['vm_vm']['rt_per_s'] = round(
                n * khz * 1000.0 / r[ib.R_PP_TICKS]) if r[ib.R_PP_TICKS] \
                else None
            res['vm_vm_hist'] = hist
            res['exits'] = exits_per_doorbell(st0, st1, 2 * n)
            res['qemu_cpu'] = cpu_per_rt(cpu0, cpu1, n, wall)

            bar2 = peer.u32(sa + ib.S_BAR2_KIB) * 1024
            res['bar2_bytes'] = bar2
            try:
                self.extras(res, peer, a, b, sa, khz, bar2, procs, accel)
            except (RunError, ib.PeerError, OSError) as e:
                res['extras_error'] = str(e)

            self.command_ok(peer, b, ib.CMD_RESPOND, [ib.IVG_NO_PEER, 0],
                            10000, procs)
            for vm in vms:
                vm['qmp'].close()
                self.command(peer, vm, ib.CMD_EXIT, [ib.IVG_EXIT_OK], 10000,
                             [server])
                try:
                    rc = vm['proc'].wait(10)
                except subprocess.TimeoutExpired:
                    raise RunError('%s did not exit' % vm['name'])
                if rc != ib.IVG_EXIT_OK * 2 + 1:
                    raise RunError('%s exited with status %d' % (vm['name'],
                                                                 rc))
            res['status'] = 'ok'
        except (RunError, ib.PeerError, OSError) as e:
            res['status'] = 'failed'
            res['error'] = str(e)
            for p in procs[1:]:
                res.setdefault('logs', []).append(
                    '%s: %s' % (os.path.basename(p.log_path),
                                ib.last_lines(p.log_path, 3)))
        finally:
            if peer is not None:
                peer.close()
            for p in reversed(procs):
                ib.stop(p)
            shutil.rmtree(d, ignore_errors=True)
        return res

    def pin(self, accel):
        """Pin vCPU threads (and the host peer)?  --pin auto: under KVM
        only.  Under TCG, QEMU's main-loop thread turns eventfds into
        interrupts, and pinning the vCPU threads made round trips 2.5x
        slower on the 2-CPU machine this was written on."""
        if len(self.cpus) < 2 or self.o.pin == 'off':
            return False
        return self.o.pin == 'on' or accel == 'kvm'

    def extras(self, res, peer, a, b, sa, khz, bar2, procs, accel):
        """Blast, BAR2 copy and host<->VM round trips of one run"""
        o = self.o

        def timeout(n):
            return max(60000, n * 3)        # ms

        # doorbell blast
        if o.blast:
            irq = self.slot(b['id']) + ib.S_IRQ_COUNT   # vector 0 / INTx
            before = peer.u32(irq)
            self.command_ok(peer, a, ib.CMD_BLAST, [b['id'], 0, o.blast],
                            timeout(o.blast), procs)
            got = peer.u32(irq) - before - 1    # minus the closing round trip
            cnt = peer.u64(sa + ib.S_RES + 8 * ib.R_BL_COUNT)
            ticks = peer.u64(sa + ib.S_RES + 8 * ib.R_BL_TICKS)
            secs = ticks / (khz * 1000.0) if ticks else None
            res['blast'] = {
                'doorbells': cnt, 'interrupts': got, 'seconds': secs,
                'doorbells_per_s': round(cnt / secs) if secs else None,
                'interrupts_per_s': round(got / secs) if secs else None,
                'interrupts_per_doorbell': round(got / cnt, 4)
                if cnt else None,
            }

        # BAR2 copy bandwidth against RAM -> RAM
        res['copy'] = []
        for size in o.copy_sizes:
            if ib.IVG_DATA_OFFSET + size > bar2 or size > ib.GUEST_COPY_MAX:
                res.setdefault('copy_skipped', []).append(size)
                continue
            reps = max(1, o.copy_bytes // size)
            self.command_ok(peer, a, ib.CMD_COPY,
                            [size, ib.IVG_DATA_OFFSET, reps], 300000, procs)
            cr = [peer.u64(sa + ib.S_RES + 8 * i) for i in range(4)]

            def bw(t):
                return round(cr[ib.R_CP_BYTES] * khz * 1000.0 / t / 1e6,
                             1) if t else None
            res['copy'].append({
                'bytes': size, 'reps': reps,
                'ram_to_bar2_mb_s': bw(cr[ib.R_CP_RAM_TO_BAR2]),
                'bar2_to_ram_mb_s': bw(cr[ib.R_CP_BAR2_TO_RAM]),
                'ram_to_ram_mb_s': bw(cr[ib.R_CP_RAM_TO_RAM]),
            })

        # host <-> VM round trips (vmB responds to the host)
        if o.host_count:
            self.command_ok(peer, b, ib.CMD_RESPOND, [peer.id, 0], 10000,
                            procs)
            samples = self.host_pingpong(peer, b, o.host_warmup,
                                         o.host_count, self.pin(accel))
            h = ib.hist_from_samples(samples)
            res['host_vm'] = ib.latency_summary(
                h, min(samples), max(samples), sum(samples))
            res['host_vm']['rt_per_s'] = round(
                len(samples) / (sum(samples) / 1e9))
            res['host_vm_hist'] = h

    def host_pingpong(self, peer, vm, warmup, count, pin):
        """Host rings vm, vm's handler rings back; host busy-polls"""
        ring_fd = peer.fds[vm['id']][0]
        own = peer.own_fd(0)
        ping = self.slot(peer.id) + ib.S_PING
        pong = self.slot(vm['id']) + ib.S_PONG
        seq = peer.u32(ping)
        one = b'\1\0\0\0\0\0\0\0'
        put = peer.put32
        get = peer.u32
        now = time.perf_counter_ns
        read = os.read
        write = os.write
        samples = []
        old = os.sched_getaffinity(0)
        if pin:
            os.sched_setaffinity(0, {self.cpus[0]})
        peer.drain(0)
        limit = 5 * 10 ** 9
        try:
            for i in range(warmup + count):
                seq = (seq + 1) & 0xffffffff
                put(ping, seq)
                t0 = now()
                write(ring_fd, one)
                while True:
                    try:
                        read(own, 8)
                    except BlockingIOError:
                        if now() - t0 > limit:
                            raise RunError('host round trip %d timed out' % i)
                        continue
                    if get(pong) == seq:
                        break
                t1 = now()
                if i >= warmup:
                    samples.append(t1 - t0)
        finally:
            os.sched_setaffinity(0, old)
        return samples

    # --- floors ------------------------------------------------------------

    def run_floor(self, fl):
        o = self.o
        argv = [fl['tool'], '-m', fl['mode'], '-n', str(o.count), '-w',
                str(o.warmup), '--json', '-q', '--timeout', '30']
        res = {'tag': fl['tag'], 'accel': fl['accel'], 'mode': fl['mode']}
        try:
            p = subprocess.run(argv, capture_output=True, text=True,
                               timeout=max(600, o.count / 1000))
        except subprocess.TimeoutExpired:
            res.update(status='failed', error='timed out')
            return res
        if p.returncode == 77:
            why = (p.stdout + p.stderr).strip().splitlines()
            why = why[-1] if why else 'skipped'
            res.update(status='skipped',
                       reason=why.split('skipped:', 1)[-1].strip())
            return res
        if p.returncode != 0:
            res.update(status='failed', error='exit %d: %s' % (
                p.returncode, (p.stderr or p.stdout).strip()[-300:]))
            return res
        try:
            j = json.loads(p.stdout)
        except ValueError:
            res.update(status='failed', error='bad JSON output')
            return res
        res['status'] = 'ok'
        key = fl['kind'] if fl['kind'] != 'host' else 'host_host'
        lat = dict(j.get('latency', {}))
        lat['rt_per_s'] = j.get('rt_per_s')
        res[key] = lat
        for k in ('user_exits_per_rt', 'kvm_stats_per_rt', 'kvm_module',
                  'halt_poll_ns', 'tsc_khz', 'guest_rdtsc_cycles',
                  'initiator_ctx_switches_per_rt'):
            if k in j:
                res[k] = j[k]
        return res

    # --- join cost ---------------------------------------------------------

    def run_join(self, accel, plan):
        """plan: [(N, [(device tag, rep), ...]), ...] -> list of results"""
        o = self.o
        d = tempfile.mkdtemp(dir=self.tmp, prefix='join.')
        vec = o.join_vectors
        server, sock = self.start_server(d, vec, size=4 << 20)
        holder = ib.spawn([sys.executable, JOIN_PEERS, sock, str(vec)],
                          os.path.join(d, 'holder.log'), nofile=None,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        lines = LineReader(holder.stdout)
        out = []
        holder_ids = set()
        try:
            for n, runs in plan:
                self.progress.note('join: %d host peers for N = %d' % (n - 1,
                                                                      n))
                t0 = time.monotonic()
                holder.stdin.write(b'grow %d\n' % (n - 1))
                holder.stdin.flush()
                while True:
                    line = lines.get(600, [holder, server])
                    if line.startswith('grown'):
                        ids = line.split('ids=', 1)[1]
                        holder_ids = set(int(x) for x in ids.split(',') if x)
                        break
                    if line.startswith('error'):
                        raise RunError('host peers: %s' % line)
                grow_s = time.monotonic() - t0
                for dev, rep in runs:
                    self.progress.step('join %s N=%d %s rep %d' % (
                        accel, n, dev, rep + 1))
                    r = self.join_one(accel, d, n, dev, lines, holder,
                                      server, holder_ids)
                    r['rep'] = rep
                    r['grow_peers_s'] = round(grow_s, 2)
                    out.append(r)
                    self.progress.note(
                        'join N=%d %s: %s' % (n, dev, r['status'] if
                                              r['status'] != 'ok' else
                                              '%.0f ms' % r['ready_ms']))
        except RunError as e:
            out.append({'status': 'failed', 'accel': accel,
                        'error': 'join set-up: %s' % e})
        finally:
            try:
                holder.stdin.write(b'quit\n')
                holder.stdin.flush()
            except OSError:
                pass
            ib.stop(holder)
            ib.stop(server)
            shutil.rmtree(d, ignore_errors=True)
        return out

    def join_one(self, accel, d, n, dev, lines, holder, server, holder_ids):
        o = self.o
        vec = o.join_vectors
        binary = UPSTREAM if dev == 'upstream' else OURS
        devstr = 'ivshmem-doorbell,chardev=ivsh,vectors=%d' % vec
        if dev == 'ours':
            devstr += ',x-max-eventfds=%d' % max(65536, n * vec)
        name = 'join%d' % n
        argv = self.qemu_argv(binary, accel, name, d, devstr, ['-S'])
        res = {'accel': accel, 'n': n, 'device': dev, 'vectors': vec,
               'device_opts': devstr.split(',', 3)[3]
               if devstr.count(',') >= 3 else ''}
        qmp_path = os.path.join(d, name + '.qmp')
        if os.path.exists(qmp_path):
            os.unlink(qmp_path)
        t0 = time.monotonic()
        p = ib.spawn(argv, os.path.join(d, name + '.log'),
                     nofile=CHILD_NOFILE)
        t_qmp = t_peers = None
        new_id = None
        qmp = None
        last_fds, t_fds = None, None
        settle = o.join_settle
        deadline = t0 + o.join_timeout
        try:
            while True:
                now = time.monotonic()
                if p.poll() is not None:
                    raise RunError('QEMU exited with status %d: %s' % (
                        p.returncode, ib.last_lines(p.log_path, 2)))
                if now > deadline:
                    raise RunError('not ready after %d s (QMP %s, host peers '
                                   '%s)' % (o.join_timeout,
                                            'up' if t_qmp else 'silent',
                                            'notified' if t_peers else
                                            'waiting'))
                if t_qmp is None and os.path.exists(qmp_path):
                    try:
                        qmp = ib.Qmp(qmp_path, timeout=o.join_timeout)
                        qmp.cmd('query-status')
                        t_qmp = time.monotonic()
                    except (ib.PeerError, OSError):
                        if qmp:
                            qmp.close()
                        qmp = None
                for line in lines.poll():
                    w = line.split()
                    if w[0] == 'join' and int(w[1]) not in holder_ids and \
                       t_peers is None:
                        new_id = int(w[1])
                        t_peers = int(w[2]) / 1e9
                    elif w[0] == 'error':
                        raise RunError('host peers: %s' % line)
                nfd = ib.highest_fd(p.pid, last_fds or 0)
                now = time.monotonic()
                if nfd != last_fds:
                    last_fds, t_fds = nfd, now
                if t_qmp is not None and (t_peers is not None or n == 1) \
                   and now - t_fds >= settle:
                    break
                time.sleep(0.01)
            ready = max(t_qmp, t_fds, t_peers or 0)
            held = ib.count_fds(p.pid, eventfds=True)
            mem = ib.smaps_rollup(p.pid)
            res.update({
                'status': 'ok' if held >= n * vec else 'partial',
                'peer_id': new_id,
                'qmp_ms': round((t_qmp - t0) * 1e3, 1),
                'peers_notified_ms': round((t_peers - t0) * 1e3, 1)
                if t_peers else None,
                'fds_settled_ms': round((t_fds - t0) * 1e3, 1),
                'ready_ms': round((ready - t0) * 1e3, 1),
                'eventfds_held': held, 'eventfds_expected': n * vec,
                'rss_kb': mem.get('rss'), 'pss_kb': mem.get('pss'),
                'pss_anon_kb': mem.get('pss_anon'),
            })
            if res['status'] == 'partial':
                res['note'] = 'holds %d of %d eventfds: %s' % (
                    held, n * vec, ib.last_lines(p.log_path, 1) or
                    'no message')
        except (RunError, ib.PeerError, OSError) as e:
            res['status'] = 'failed'
            res['error'] = str(e)
        finally:
            if qmp:
                qmp.close()
            ib.stop(p)
        # wait until the host peers heard that it left
        if new_id is not None:
            end = time.monotonic() + 15
            while time.monotonic() < end:
                got = [l for l in lines.poll(0.1)
                       if l.startswith('left %d ' % new_id)]
                if got:
                    break
        else:
            time.sleep(0.5)
        return res


class LineReader:
    """Lines from a child's stdout pipe, without blocking"""

    def __init__(self, f):
        self.fd = f.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b''
        self.lines = []
        self.eof = False

    def _fill(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if r:
            try:
                data = os.read(self.fd, 1 << 16)
                if not data:
                    self.eof = True
                self.buf += data
            except BlockingIOError:
                pass
        while b'\n' in self.buf:
            line, self.buf = self.buf.split(b'\n', 1)
            self.lines.append(line.decode(errors='replace'))

    def poll(self, timeout=0):
        """Every line that arrived (waiting up to timeout for one)"""
        self._fill(0 if self.lines else timeout)
        out, self.lines = self.lines, []
        return out

    def get(self, timeout, procs):
        """The next line"""
        end = time.monotonic() + timeout
        while True:
            if self.lines:
                return self.lines.pop(0)
            self._fill(0.1)
            if self.lines:
                continue
            for p in procs:
                if p.poll() is not None:
                    raise RunError('%s exited (%d): %s' % (
                        os.path.basename(p.log_path), p.returncode,
                        ib.last_lines(p.log_path, 2)))
            if self.eof or time.monotonic() > end:
                raise RunError('host peers silent')


def proc_cpu(pid, vcpu_tids):
    """(total, vCPU threads) CPU seconds of a process"""
    tck = os.sysconf('SC_CLK_TCK')

    def stat(path):
        try:
            with open(path) as f:
                s = f.read()
            w = s[s.rindex(')') + 2:].split()
            return (int(w[11]) + int(w[12])) / tck
        except (OSError, ValueError, IndexError):
            return 0.0
    total = stat('/proc/%d/stat' % pid)
    vcpu = sum(stat('/proc/%d/task/%d/stat' % (pid, t)) for t in vcpu_tids)
    return total, vcpu


def cpu_per_rt(c0, c1, n, wall):
    if not n or not wall:
        return None
    out = {}
    for name, a, b in zip(('vmA', 'vmB'), c0, c1):
        tot, vcpu = b[0] - a[0], b[1] - a[1]
        out[name] = {'vcpu_pct': round(100 * vcpu / wall, 1),
                     'other_threads_pct': round(100 * (tot - vcpu) / wall, 1)}
    return out


def exits_per_doorbell(st0, st1, doorbells):
    if not doorbells or any(s is None for s in st0 + st1):
        return None
    out = {'doorbells': doorbells}
    for name in ib.Qmp.KVM_STATS:
        tot = sum(b.get(name, 0) - a.get(name, 0) for a, b in zip(st0, st1))
        out[name + '_per_doorbell'] = round(tot / doorbells, 4)
    return out


def parse_sizes(s):
    out = []
    for w in s.split(','):
        w = w.strip()
        mult = {'K': 1 << 10, 'M': 1 << 20}.get(w[-1:].upper(), 1)
        out.append(int(w[:-1] if mult > 1 else w) * mult)
    return out


def main():
    ap = argparse.ArgumentParser(
        description='ivshmem doorbell benchmark (make bench)',
        epilog='Defaults are the full run; --quick is the <2 min one.')
    ap.add_argument('--quick', action='store_true',
                    help='fewer repetitions and round trips, N <= 64')
    ap.add_argument('--accel', choices=('auto', 'tcg', 'kvm'),
                    default='auto',
                    help='auto: KVM when it works, and TCG always')
    ap.add_argument('--reps', type=int, help='interleaved repetitions')
    ap.add_argument('--count', type=int, help='measured VM<->VM round trips')
    ap.add_argument('--warmup', type=int, help='warm-up round trips')
    ap.add_argument('--host-count', type=int,
                    help='measured host<->VM round trips (0: none)')
    ap.add_argument('--blast', type=int, help='doorbells in the blast')
    ap.add_argument('--copy-sizes', help='e.g. 4K,64K,1M,16M')
    ap.add_argument('--join-n', help='e.g. 1,16,64,256')
    ap.add_argument('--join-reps', type=int)
    ap.add_argument('--join-vectors', type=int, default=64)
    ap.add_argument('--join-timeout', type=int, default=180,
                    help='seconds for one QEMU to become ready')
    ap.add_argument('--join-settle', type=float, default=1.0,
                    help='seconds without new fds that mean "done"')
    ap.add_argument('--configs', default="a,b,c,c',d",
                    help="doorbell configurations (a,b,c,c',d)")
    ap.add_argument('--pin', choices=('auto', 'on', 'off'), default='auto',
                    help='pin vmA/vmB vCPU threads to CPUs 0/1 and the '
                    'host peer to CPU 0 (auto: under KVM only)')
    ap.add_argument('--guest16', action='store_true',
                    help='the real-mode guest under every accelerator (a '
                    'check of the guest KVM rows use where KVM runs only '
                    'real-mode code)')
    ap.add_argument('--no-floors', action='store_true')
    ap.add_argument('--no-join', action='store_true')
    ap.add_argument('--server', help='ivshmem server (default: '
                    'build/tools/ivsh-server, else the contrib one)')
    ap.add_argument('--out', default=os.path.join(ROOT, 'bench/results'))
    ap.add_argument('--doc', default=os.path.join(ROOT, 'docs/benchmarks.md'))
    ap.add_argument('--no-doc', action='store_true',
                    help='do not write docs/benchmarks.md')
    o = ap.parse_args()
    base = QUICK if o.quick else FULL
    for k, v in base.items():
        if k in ('copy_sizes', 'join_n'):
            continue
        if getattr(o, k, None) is None:
            setattr(o, k, v)
    o.copy_sizes = parse_sizes(o.copy_sizes) if o.copy_sizes else \
        base['copy_sizes']
    o.copy_bytes = base['copy_bytes']
    o.join_n = [int(x) for x in o.join_n.split(',')] if o.join_n else \
        base['join_n']
    o.configs = [c for c in CONFIGS if c['tag'] in o.configs.split(',')]
    o.mode = 'quick' if o.quick else 'full'
    if o.reps < 1 or o.count < 1:
        ap.error('--reps and --count must be positive')

    for sig in (ib.signal.SIGINT, ib.signal.SIGTERM, ib.signal.SIGHUP):
        ib.signal.signal(sig, on_signal)
    o.child_nofile = ib.raise_nofile(CHILD_NOFILE)
    bench = Bench(o)
    try:
        return run(bench, o)
    finally:
        ib.kill_children()
        shutil.rmtree(bench.tmp, ignore_errors=True)


def on_signal(sig, frame):
    ib.kill_children()
    for d in TMPDIRS:
        shutil.rmtree(d, ignore_errors=True)
    sys.stderr.write('bench: interrupted by signal %d\n' % sig)
    os._exit(128 + sig)


def run(bench, o):
    try:
        bench.check()
    except RunError as e:
        sys.stderr.write('bench: %s\n' % e)
        return 1
    started = datetime.datetime.now().astimezone()
    load0 = ib.loadavg()
    child_nofile = o.child_nofile
    sys.stderr.write('bench: %s mode; server: %s (%s)\n' % (
        o.mode, os.path.relpath(bench.server_path, ROOT), bench.server_note))
    kvm_ok, kvm_why = (False, 'not requested (--accel tcg)') \
        if o.accel == 'tcg' else bench.kvm_probe_any()
    if o.accel == 'kvm' and not kvm_ok:
        sys.stderr.write('bench: KVM unusable: %s\n' % kvm_why)
        return 1
    accels = (['kvm'] if kvm_ok else []) + ([] if o.accel == 'kvm'
                                            else ['tcg'])
    sys.stderr.write('bench: accelerators: %s%s\n' % (
        ', '.join(accels), '' if kvm_ok else
        ' (KVM skipped: %s)' % kvm_why))
    bench.tsc.calibrate()

    floors = [] if o.no_floors else FLOORS
    join_plan = []
    if not o.no_join:
        for accel in accels:
            plan = []
            for n in o.join_n:
                runs = []
                for rep in range(o.join_reps):
                    order = ['ours', 'upstream'] if rep % 2 == 0 else \
                        ['upstream', 'ours']
                    runs += [(dev, rep) for dev in order]
                plan.append((n, runs))
            if plan and max(o.join_n) * o.join_vectors > OURS_MAX_EVENTFDS:
                # where ours stops with its default limit
                plan[-1][1].append(('ours-default', 0))
            join_plan.append((accel, plan))
    total = o.reps * (len(o.configs) * len(accels) + len(floors)) + \
        sum(len(r) for _, plan in join_plan for _, r in plan)
    bench.progress = Progress(total)

    runs = []
    for rep in range(o.reps):
        for accel in accels:
            for cfg in o.configs:
                bench.progress.step('rep %d/%d %s %s (%s)' % (
                    rep + 1, o.reps, accel, cfg['tag'], cfg['desc']))
                r = bench.run_doorbell(cfg, accel)
                r['rep'] = rep
                runs.append(r)
                bench.progress.note(short_result(r))
        for fl in floors:
            bench.progress.step('rep %d/%d floor %s (%s %s)' % (
                rep + 1, o.reps, fl['tag'], os.path.basename(fl['tool']),
                fl['mode']))
            r = bench.run_floor(fl)
            r['rep'] = rep
            runs.append(r)
            bench.progress.note(short_result(r))

    joins = []
    for accel, plan in join_plan:
        joins += bench.run_join(accel, plan)

    # Where the KVM round trip goes against the floor (bench/kvm-gap.py)
    kvm_gap = None
    if 'kvm' in accels and not o.no_floors:
        sys.stderr.write('bench: kvm-gap.py (floor vs device under each '
                         'setting, interleaved)\n')
        p = subprocess.run([sys.executable, os.path.join(BENCH,
                                                         'kvm-gap.py'),
                            '--reps', str(min(o.reps, 5)), '--count',
                            str(min(o.count, 20000))],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
        if p.returncode == 0:
            kvm_gap = {'markdown': p.stdout}

    finished = datetime.datetime.now().astimezone()
    result = {
        'schema': 'ivsh-bench/1',
        'mode': o.mode,
        'started': started.isoformat(timespec='seconds'),
        'finished': finished.isoformat(timespec='seconds'),
        'duration_s': round((finished - started).total_seconds()),
        'machine': dict(ib.machine_info(), loadavg_start=load0,
                        loadavg_end=ib.loadavg(),
                        host_tsc_khz=bench.tsc.khz),
        'accelerators': accels,
        'kvm': {'usable': kvm_ok, 'reason': kvm_why},
        'qemu': {'ours': {'path': os.path.relpath(OURS, ROOT),
                          'version': ib.qemu_version(OURS)},
                 'upstream': {'path': os.path.relpath(UPSTREAM, ROOT),
                              'version': ib.qemu_version(UPSTREAM)}},
        'server': {'path': os.path.relpath(bench.server_path, ROOT),
                   'style': bench.server_style, 'note': bench.server_note},
        'guest': (os.path.relpath(GUEST16, ROOT) + ' (real mode, -M pc, '
                  '128 KiB shared memory, --guest16)') if o.guest16 else
                 os.path.relpath(GUEST, ROOT) + (
            ' (TCG), %s (KVM, real mode, -M pc, 128 KiB shared memory)' %
            os.path.relpath(GUEST16, ROOT) if bench.kvm16 else ''),
        'params': {
            'reps': o.reps, 'count': o.count, 'warmup': o.warmup,
            'host_count': o.host_count, 'host_warmup': o.host_warmup,
            'blast': o.blast, 'copy_sizes': o.copy_sizes,
            'copy_bytes_per_size': o.copy_bytes, 'join_n': o.join_n,
            'join_reps': o.join_reps, 'join_vectors': o.join_vectors,
            'join_settle_s': o.join_settle, 'vectors': 1,
            'shm_bytes': SHM_SIZE, 'child_nofile': child_nofile,
            'machine_type': 'q35', 'guest_ram_mb': 64,
            'kvm_cpu': KVM_CPU, 'tcg_cpu': "QEMU's default",
            'pin': o.pin,
            'order': ' '.join([c['tag'] for c in o.configs] +
                              [f['tag'] for f in floors]),
        },
        'configs': {c['tag']: c['desc'] for c in o.configs},
        'floors': {f['tag']: '%s -m %s: %s' % (os.path.basename(f['tool']),
                                               f['mode'], f['desc'])
                   for f in floors},
        'runs': runs,
        'joins': joins,
        'kvm_gap': kvm_gap,
    }
    report.finalize(result)
    os.makedirs(o.out, exist_ok=True)
    stem = 'bench-%s-%s' % (started.strftime('%Y%m%d-%H%M%S'), o.mode)
    json_path = os.path.join(o.out, stem + '.json')
    pngs = report.plots(result, o.out, stem)
    result['files'] = {'json': os.path.relpath(json_path, ROOT),
                       'png': [os.path.relpath(p, ROOT) for p in pngs]}
    with open(json_path, 'w') as f:
        # one top-level key per line, compact values: small and diffable
        f.write('{\n' + ',\n'.join(
            '%s: %s' % (json.dumps(k), json.dumps(v, separators=(',', ':')))
            for k, v in result.items()) + '\n}\n')
    md = report.markdown(result, doc_dir=os.path.dirname(o.doc))
    print(md)
    if not o.no_doc:
        why = report.may_write_doc(o.doc, o.mode)
        if why is None:
            with open(o.doc, 'w') as f:
                f.write(md)
            sys.stderr.write('bench: wrote %s\n' % os.path.relpath(o.doc,
                                                                   ROOT))
        else:
            sys.stderr.write('bench: %s not written: %s\n' % (
                os.path.relpath(o.doc, ROOT), why))
    sys.stderr.write('bench: wrote %s and %s\n' % (
        result['files']['json'], ', '.join(result['files']['png'])))
    ok = [r for r in runs if r.get('status') == 'ok']
    return 0 if ok or not runs else 1


def short_result(r):
    if r.get('status') == 'skipped':
        return '%s: skipped: %s' % (r['tag'], r.get('reason'))
    if r.get('status') != 'ok':
        return '%s: FAILED: %s' % (r['tag'], r.get('error'))
    for key in ('vm_vm', 'host_vm', 'host_host'):
        if key in r:
            lat = r[key]
            s = '%s %s: %s p50 %.1f us, p99 %.1f us' % (
                r['tag'], r['accel'], key.replace('_', '-'), lat['p50'],
                lat['p99'])
            if key == 'vm_vm' and 'host_vm' in r:
                s += '; host-vm p50 %.1f us' % r['host_vm']['p50']
            return s
    return r['tag'] + ': ok'


if __name__ == '__main__':
    sys.exit(main())
