#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Write the seed corpus of the "ivsh" fuzz target (tests/qtest/fuzz/ivsh_fuzz.c).

    tests/fuzz/ivsh/gen-seeds.py [DIR]      (default: tests/fuzz/ivsh/seeds)

Each seed is one of the qtests' sequences in the target's input format: a
4-byte header (device kind; flags: vectors, ioeventfd, master/role, use64;
own ID and budgets; shared memory size and set-up variant), then
operations, an opcode byte and its operands, little-endian.
"""

import os
import struct
import sys

# Device kinds
PLAIN_MEMFD, PLAIN_FILE, DOORBELL, LEGACY_INTX, LEGACY_MSI, LEGACY_MEMDEV = range(6)
# Opcodes
(BAR_READ, BAR_WRITE, CFG_READ, CFG_WRITE, MAP, MSIX_CTRL, MSIX_ENTRY,
 SERVER_MSG, SIGNAL, RESET, UNPLUG, REPLUG, DOORBELL_OP, REG_WRITE,
 FLUSH) = range(15)
W1, W2, W4, W8 = range(4)
# Registers (BAR0)
INTRMASK, INTRSTATUS, IVPOSITION, DOORBELL_REG = 0, 4, 8, 12
# Server message kinds
PEER_FD, OWN_FD, PEER_GONE, SELF_GONE, RAW, WRONG_FD, SECOND_SHM, \
    PARTIAL, SAME_FD, EOF = range(10)
# Signal actions
RING, DRAIN, MAKE_BLOCKING, MAKE_NONBLOCKING, NEAR_SATURATION = range(5)
# MSI-X entry targets
T_RAM, T_APIC, T_OWN_DOORBELL, T_SHM, T_TABLE = range(5)


def header(kind, vectors=1, ioeventfd=False, master=False, role=None,
           use64=True, own_id=1, small_budget=False, few_eventfds=False,
           size=1, setup=0):
    flags = {1: 0, 2: 1, 4: 2, 8: 3}[vectors]
    flags |= 8 if ioeventfd else 0
    flags |= 0x10 if master or role == "master" else 0
    flags |= 0x20 if role else 0
    flags |= 0 if use64 else 0x40
    ident = own_id | (0x40 if small_budget else 0) | \
        (0x80 if few_eventfds else 0)
    return bytes([kind, flags, ident, size | setup << 2])


def bar_read(bar, off, w):
    return struct.pack("<BBIB", BAR_READ, bar, off, w)


def bar_write(bar, off, w, val):
    return struct.pack("<BBIBQ", BAR_WRITE, bar, off, w, val)


def cfg_read(off, w):
    return bytes([CFG_READ, off, w])


def cfg_write(off, w, val):
    return struct.pack("<BBBI", CFG_WRITE, off, w, val)


def map_bars(cmd=0):
    return bytes([MAP, cmd])


def msix_ctrl(enable=True, maskall=False):
    return bytes([MSIX_CTRL, int(enable) | int(maskall) << 1])


def msix_entry(v, target=T_RAM, data=None, masked=False):
    return struct.pack("<BBBIB", MSIX_ENTRY, v, target,
                       0x4000 + v if data is None else data, int(masked))


def msg(kind, ident=0, val=0):
    return struct.pack("<BBHQ", SERVER_MSG, kind, ident, val)


def signal(index, action=RING):
    return bytes([SIGNAL, index, action])


def reset(system=False):
    return bytes([RESET, int(system)])


def doorbell(peer, vector):
    return struct.pack("<BHH", DOORBELL_OP, peer, vector)


def reg_write(reg, val):
    return struct.pack("<BBI", REG_WRITE, reg // 4, val)


def flush(step=0):
    return struct.pack("<BH", FLUSH, step)


def regs_tour():
    """Every register at every width, as ivsh-plain-test does"""
    out = b""
    for off in range(0, 16):
        for w in (W1, W2, W4, W8):
            out += bar_read(0, off, w)
    out += bar_read(0, 0xfc, W4) + bar_read(0, 0x100, W4)
    return out


def shm_tour():
    return (bar_write(2, 0, W4, 0x12345678) + bar_read(2, 0, W4) +
            bar_write(2, 0xfff, W1, 0xab) + bar_read(2, 0xffe, W2) +
            bar_write(2, 0x1000 - 8, W8, 0x0123456789abcdef) +
            bar_read(2, 0x1000 - 4, W8))


def doorbell_vm(vectors, own=1, peer=0):
    """Own and one peer's eventfds, MSI-X enabled, entries to guest RAM"""
    out = map_bars()
    for _ in range(vectors):
        out += msg(OWN_FD, own)
    for _ in range(vectors):
        out += msg(PEER_FD, peer)
    out += msix_ctrl(True)
    for v in range(vectors):
        out += msix_entry(v)
    return out


def seeds():
    s = {}
    s["plain-memfd-regs-shm"] = (header(PLAIN_MEMFD, size=0) + map_bars() +
                                 regs_tour() + shm_tour() +
                                 reg_write(INTRMASK, 0xffffffff) +
                                 reg_write(DOORBELL_REG, 0x10000) +
                                 reset() + bar_read(0, INTRMASK, W4))
    s["plain-file-master-replug"] = (header(PLAIN_FILE, master=True, size=1) +
                                     map_bars() + shm_tour() + bytes([UNPLUG]) +
                                     bytes([REPLUG]) + map_bars() + shm_tour() +
                                     reset(system=True) + map_bars() +
                                     bar_read(2, 0, W4))
    s["plain-bar-moves"] = (header(PLAIN_MEMFD) + map_bars() +
                            cfg_write(0x10, W4, 0xe0200000) +
                            cfg_write(0x18, W4, 0xffffffff) +
                            cfg_write(0x1c, W4, 0x1) + cfg_read(0x18, W4) +
                            cfg_write(0x04, W2, 0) + bar_read(0, 8, W4) +
                            map_bars() + bar_read(0, 8, W4))
    out = header(DOORBELL, vectors=4, ioeventfd=True, own_id=1)
    out += doorbell_vm(4)
    for v in range(4):
        out += signal(v) + flush()
    for v in range(4):
        out += doorbell(0, v)
    out += msix_entry(2, masked=True) + signal(2) + bar_read(1, 0x800, W8)
    out += msix_entry(2) + msix_ctrl(True, maskall=True) + signal(1)
    out += msix_ctrl(True) + msg(PEER_GONE, 0) + doorbell(0, 1)
    out += reset() + bar_read(0, IVPOSITION, W4) + bytes([REPLUG])
    out += doorbell_vm(4) + signal(0)
    s["doorbell-msix-4-vectors"] = out
    out = header(DOORBELL, vectors=2, own_id=0, master=True)
    out += doorbell_vm(2) + msg(PEER_FD, 3) + msg(PEER_FD, 3)
    out += msg(RAW, 0, 0x7fffffffffffffff) + msg(RAW, 0, 1 << 16)
    out += msg(WRONG_FD, 2, 0) + msg(WRONG_FD, 2, 1) + msg(WRONG_FD, 2, 2)
    out += msg(WRONG_FD, 2, 3) + msg(SECOND_SHM) + msg(SAME_FD, 5, 0)
    out += msg(SELF_GONE) + msg(PEER_GONE, 7) + msg(PARTIAL, 3, 0x0101)
    out += doorbell(3, 1) + doorbell(0xffff, 0xffff) + msg(EOF)
    out += doorbell(0, 0) + signal(0) + reset()
    s["doorbell-hostile-server"] = out
    out = header(DOORBELL, vectors=2, ioeventfd=True, own_id=1)
    out += doorbell_vm(2)
    out += signal(2, MAKE_BLOCKING) + signal(0, MAKE_BLOCKING)
    out += msg(PEER_GONE, 0) + reset() + bar_read(1, 0x800, W8)
    out += doorbell(0, 0) + bytes([UNPLUG])
    s["doorbell-blocking-fds-reset"] = out
    out = header(DOORBELL, vectors=1, ioeventfd=True, own_id=1)
    out += doorbell_vm(1) + msix_entry(0, T_OWN_DOORBELL, data=0x1)
    out += signal(1, NEAR_SATURATION) + signal(0) + doorbell(1, 0)
    out += doorbell(0, 0) + doorbell(0, 0) + signal(1, DRAIN)
    s["doorbell-msi-to-own-doorbell"] = out
    out = header(DOORBELL, vectors=8, own_id=2, small_budget=True,
                 few_eventfds=True)
    out += doorbell_vm(8, own=2, peer=5) + doorbell(5, 7) + reset(True)
    s["doorbell-budgets"] = out
    s["doorbell-bad-setup-eof"] = header(DOORBELL, setup=6) + map_bars()
    s["doorbell-bad-setup-version"] = header(DOORBELL, setup=7) + \
        bytes([REPLUG])
    s["doorbell-bad-size"] = header(DOORBELL, size=3) + map_bars()
    out = header(LEGACY_INTX, own_id=1) + map_bars()
    out += reg_write(INTRMASK, 1) + msg(OWN_FD, 1) + msg(PEER_FD, 0)
    out += signal(0) + flush() + bar_read(0, INTRSTATUS, W4)
    out += cfg_read(0x06, W2) + signal(0) + reg_write(INTRMASK, 0)
    out += reg_write(INTRSTATUS, 1) + doorbell(0, 0)
    out += map_bars(0x04) + signal(0) + reset() + bar_read(0, INTRSTATUS, W4)
    s["legacy-intx"] = out
    out = header(LEGACY_MSI, vectors=2, ioeventfd=True, own_id=1,
                 role="peer")
    out += doorbell_vm(2) + signal(0) + signal(1) + doorbell(0, 1)
    out += reg_write(INTRMASK, 1) + msix_ctrl(False) + signal(0)
    s["legacy-msi-peer"] = out
    out = header(LEGACY_MEMDEV, use64=False, role="master", size=2)
    out += map_bars() + regs_tour() + shm_tour() + reset()
    s["legacy-memdev-32bit"] = out
    return s


def main():
    top = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(top, "seeds")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"gen-seeds: {len(seeds())} seeds in {out}")


if __name__ == "__main__":
    main()
