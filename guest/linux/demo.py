# SPDX-License-Identifier: GPL-2.0-or-later
"""Demo: Linux guests find their ivshmem device, exchange messages through
the shared memory and ring each other's doorbells.  Run through
make demo (scripts/demo.sh); see --help."""

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True

import ivshvm  # noqa: E402

DEVICE = {"doorbell": "ivshmem-doorbell", "legacy": "ivshmem",
          "legacy-intx": "ivshmem", "plain": "ivshmem-plain"}

# The guest side.  Slots in the shared memory: 0x100 + 0x10 * ID "up"
# markers, 0x1000 + 0x100 * VM index the messages.  Doorbells go round
# the ring of peer IDs: ID 0 pings 1 (which answers), then 1 pings 2, ...,
# and the last pings 0.
SCRIPT = r"""
N={n}; IDX={idx}; VEC={vec}; ROUNDS={rounds}; KIND={kind}
say() {{ echo "DEMO: $*"; }}
t=$(cut -d' ' -f1 /proc/uptime)
info=$(ivshmem-guest info) || {{ say "no device: $info"; exit 1; }}
get() {{ echo "$info" | sed -n "s/^$1: //p"; }}
me=$(ivshmem-guest id)
[ "$KIND" = plain ] && me=$IDX
say "up after $t s; found $(get bdf) $(get mode) (revision $(get revision))," \
    "$(get bar2 | cut -d' ' -f1)-byte shared memory mapped" \
    "$(get shm-mapping | cut -d' ' -f1 | tr -d :)," \
    "interrupt vectors: $(get usable-vectors) via" \
    "$(get driver | cut -d' ' -f1), peer ID $(get ivposition)"
ivshmem-guest write $((0x100 + 0x10 * me)) up
ivshmem-guest write $((0x1000 + 0x100 * IDX)) "hello from vm$IDX (peer $me)"
i=0
while [ $i -lt $N ]; do
    if [ $i != $IDX ]; then
        off=$((0x1000 + 0x100 * i))
        if ivshmem-guest expect $off "hello from vm$i" --timeout 60000 \
               >/dev/null; then
            say "read \"$(ivshmem-guest read $off 64)\""
        else
            say "no message from vm$i"
        fi
    fi
    i=$((i + 1))
done
[ "$KIND" = plain ] && {{ say "ivshmem-plain: no doorbells"; exit 0; }}
next=$(((me + 1) % N)); prev=$(((me + N - 1) % N))
ping() {{
    ivshmem-guest expect $((0x100 + 0x10 * next)) up --timeout 60000 \
        >/dev/null || return 1
    r=$(ivshmem-guest ping $next --vectors $VEC --count $ROUNDS \
        --timeout 10000) || return 1
    say "$r" | sed 's/; replies/\nDEMO:   replies/'
}}
pong() {{
    r=$(ivshmem-guest pong $prev --vectors $VEC --count $ROUNDS \
        --timeout 60000) || return 1
    say "$r" | sed 's/; per vector/\nDEMO:   per vector/'
}}
if [ $me = 0 ]; then ping && pong; else pong && ping; fi || exit 1
say "guest kernel $(ivshmem-guest irqs)"
"""


def main():
    ap = argparse.ArgumentParser(
        prog="guest/linux/demo.py",
        description="Boot VMS Linux guests with an ivshmem device of TYPE "
                    "and show them finding the device, exchanging messages "
                    "through the shared memory and ringing each other's "
                    "doorbells on several vectors, with round-trip times.")
    ap.add_argument("--type", default="doorbell", choices=list(DEVICE))
    ap.add_argument("--vms", type=int, default=2)
    ap.add_argument("--qemu", help="QEMU binary (default: build/qemu if it "
                    "has the device, else build/upstream)")
    ap.add_argument("--server",
                    help="ivshmem server binary (default: $IVSH_SERVER, "
                    "else build/tools/ivsh-server for build/qemu when "
                    "built, else QEMU's contrib server)")
    ap.add_argument("--vectors", type=int, default=4)
    ap.add_argument("--size", default="1M",
                    help="shared memory size, K/M/G suffix (default 1M; "
                    "1G puts BAR2 above 4 GiB, where it is write-back)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--keep", action="store_true",
                    help="keep the serial logs")
    args = ap.parse_args()

    dev = DEVICE[args.type]
    qemu = args.qemu
    if not qemu:
        for q in (ivshvm.QEMU, ivshvm.UPSTREAM_QEMU):
            if dev in ivshvm.device_types(q):
                qemu = q
                break
    if not qemu or dev not in ivshvm.device_types(qemu):
        print(f"demo: no QEMU with {dev} (give --qemu)", file=sys.stderr)
        return 1
    server = args.server or ivshvm.default_server(qemu)
    if args.vms < 1 or (args.type != "plain" and args.vms < 2):
        print("demo: doorbells need at least 2 VMs", file=sys.stderr)
        return 1
    m = re.fullmatch(r"(\d+)([KMG]?)", args.size)
    if not m:
        print(f"demo: bad --size {args.size}", file=sys.stderr)
        return 1
    size = int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]
    vec = "0" if args.type == "legacy-intx" else f"0-{args.vectors - 1}"

    sessions = []
    ivshvm.install_signal_cleanup(sessions)
    start = time.monotonic()
    try:
        s = ivshvm.Session(qemu=qemu, server=server, keep=args.keep)
    except ivshvm.GuestError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    sessions.append(s)
    with s:
        print(f"demo: {args.vms} VMs with {dev}"
              f"{' (msi=off, INTx)' if args.type == 'legacy-intx' else ''},"
              f" QEMU {os.path.relpath(qemu)}, TCG")
        if args.type == "plain":
            shm = s.shm_file(size)
            devargs = ivshvm.plain_args(shm, size)
            print(f"demo: shared memory {shm}")
        else:
            srv = s.start_server(args.size, args.vectors)
            shm = os.path.join("/dev/shm", srv.shm)
            devargs = ivshvm.doorbell_args(args.type, srv.sock, args.vectors,
                                           args.size)
            print(f"demo: server {os.path.relpath(server)}, "
                  f"{args.vectors} vectors, shared memory {shm}")
        vms = []
        for i in range(args.vms):
            script = SCRIPT.format(n=args.vms, idx=i, vec=vec,
                                   rounds=args.rounds, kind=args.type)
            vms.append(s.start_vm(f"vm{i}", script, devargs))
        if args.keep:
            print(f"demo: logs in {s.dir}")

        # Print the guests' DEMO lines as they appear
        deadline = time.monotonic() + ivshvm.BOOT_DEADLINE + 60
        seen = [0] * len(vms)
        while True:
            for i, vm in enumerate(vms):
                lines = re.findall(r"^DEMO: (.*?)\r?$", vm.log(), re.M)
                for line in lines[seen[i]:]:
                    print(f"vm{i}: {line}", flush=True)
                seen[i] = len(lines)
            if all(vm.proc.poll() is not None for vm in vms):
                break
            if time.monotonic() > deadline:
                print("demo: deadline passed", file=sys.stderr)
                break
            time.sleep(0.05)

        ok = True
        for vm in vms:
            out, rc = ivshvm.script_output(vm.log())
            if rc != 0:
                ok = False
                print(f"{vm.name}: script failed (rc {rc}); serial log:")
                print(vm.log()[-2000:])
        with open(shm, "rb") as f:
            f.seek(0x1000)
            msg = f.read(64).split(b"\0")[0].decode(errors="replace")
        print(f"host: reads \"{msg}\" at 0x1000 of {shm}")
    print(f"demo: {'OK' if ok else 'FAILED'} "
          f"({time.monotonic() - start:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
