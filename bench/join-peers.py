#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# join-peers.py: many host-side ivshmem peers in one process, for the
# join-cost part of "make bench" (bench/run-bench.py starts it).
#
#   join-peers.py SOCKET VECTORS
#
# Commands on stdin, one per line:
#   grow K      connect peers until K are set up; answers
#               "grown K ids=ID,ID,..."
#   quit
# Events on stdout:
#   join ID NS  every peer held here now has all VECTORS eventfds of ID
#               (NS: CLOCK_MONOTONIC in ns, the clock of time.monotonic_ns)
#   left ID NS  every peer here was told that ID disconnected
#   error TEXT
#
# A peer keeps its own eventfds (the server's peer table stays as it
# would be with real peers) and closes everybody else's as they arrive:
# N peers holding each other's fds would need N^2 * VECTORS descriptors.
# Every socket is non-blocking and read from one epoll loop, so a server
# that sends to a slow peer never waits on this process for long.
#
# Copyright (c) 2026 The ivsh authors

import array
import errno
import os
import select
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True     # no bench/__pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ivshbench  # noqa: E402

ANC = socket.CMSG_SPACE(4 * array.array('i').itemsize)


class HPeer:
    def __init__(self, sock):
        self.sock = sock
        self.stage = 0          # 0 version, 1 ID, 2 shm, 3 own fds, 4 ready
        self.id = None
        self.own = []
        self.counts = {}        # other peer ID -> eventfds seen
        self.partial = b''
        self.pfd = -1


class Holder:
    def __init__(self, path, vectors):
        self.path = path
        self.vectors = vectors
        self.ep = select.epoll()
        self.peers = {}         # socket fd -> HPeer
        self.ready = 0
        self.full = {}          # ID -> peers holding all its eventfds
        self.gone = {}          # ID -> peers told it left
        self.want = None
        self.inbuf = b''
        self.ep.register(0, select.EPOLLIN)

    def out(self, line):
        sys.stdout.write(line + '\n')
        sys.stdout.flush()

    def holder_ids(self):
        return sorted(p.id for p in self.peers.values() if p.id is not None)

    def connect_one(self):
        s = ivshbench.connect_unix(self.path, time.monotonic() + 10)
        s.setblocking(False)
        p = HPeer(s)
        self.peers[s.fileno()] = p
        self.ep.register(s.fileno(), select.EPOLLIN)

    def grow_check(self):
        if self.want is not None and self.ready >= self.want and \
           len(self.peers) == self.want:
            self.out('grown %d ids=%s' % (self.want, ','.join(
                str(i) for i in self.holder_ids())))
            self.want = None

    def message(self, p, val, fd):
        v = self.vectors
        if p.stage == 0:
            p.stage = 1
        elif p.stage == 1:
            p.id = val
            p.stage = 2
        elif p.stage == 2:
            if fd >= 0:
                os.close(fd)
            p.stage = 3
        elif fd < 0:
            # a disconnect
            if p.counts.pop(val, 0) >= v:
                self.full[val] = self.full.get(val, 1) - 1
            if p.stage == 4:
                n = self.gone.get(val, 0) + 1
                self.gone[val] = n
                if n == self.ready:
                    self.gone.pop(val, None)
                    self.out('left %d %d' % (val, time.monotonic_ns()))
        elif val == p.id:
            if len(p.own) < v:
                p.own.append(fd)
            else:
                os.close(fd)
            if p.stage == 3 and len(p.own) == v:
                p.stage = 4
                self.ready += 1
                self.grow_check()
        else:
            os.close(fd)
            c = p.counts.get(val, 0) + 1
            p.counts[val] = c
            if c == v:
                n = self.full.get(val, 0) + 1
                self.full[val] = n
                self.gone.pop(val, None)
                if n == self.ready and p.stage == 4:
                    self.out('join %d %d' % (val, time.monotonic_ns()))

    def read_peer(self, p):
        sock = p.sock
        while True:
            try:
                data, anc, flags, _ = sock.recvmsg(8 - len(p.partial), ANC)
            except BlockingIOError:
                return True
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise
            fd = -1
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds = array.array('i')
                    fds.frombytes(cdata[:len(cdata) - len(cdata) %
                                        fds.itemsize])
                    for f in fds:
                        if fd >= 0:
                            os.close(fd)
                        fd = f
            if not data:
                if fd >= 0:
                    os.close(fd)
                return False
            if p.partial or len(data) < 8:
                p.partial += data
                if fd >= 0:
                    p.pfd = fd
                if len(p.partial) < 8:
                    continue
                data, p.partial = p.partial, b''
                fd, p.pfd = (fd if fd >= 0 else p.pfd), -1
            self.message(p, struct.unpack('<q', data)[0], fd)

    def command(self, line):
        words = line.split()
        if not words:
            return True
        if words[0] == 'quit':
            return False
        if words[0] == 'grow' and len(words) == 2:
            k = int(words[1])
            self.want = k
            while len(self.peers) < k:
                self.connect_one()
            self.grow_check()
            return True
        self.out('error unknown command %r' % line)
        return True

    def run(self):
        while True:
            for fd, ev in self.ep.poll(1.0):
                if fd == 0:
                    data = os.read(0, 4096)
                    if not data:
                        return
                    self.inbuf += data
                    while b'\n' in self.inbuf:
                        line, self.inbuf = self.inbuf.split(b'\n', 1)
                        if not self.command(line.decode()):
                            return
                    continue
                p = self.peers[fd]
                if not self.read_peer(p):
                    self.out('error server closed the connection of peer %s'
                             % p.id)
                    return


def main():
    if len(sys.argv) != 3:
        sys.stderr.write('usage: join-peers.py SOCKET VECTORS\n')
        return 2
    ivshbench.raise_nofile(1 << 20)
    try:
        Holder(sys.argv[1], int(sys.argv[2])).run()
    except (OSError, ivshbench.PeerError) as e:
        sys.stdout.write('error %s\n' % e)
        sys.stdout.flush()
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
