#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Where the VM<->VM round trip under KVM goes, against the raw-KVM floor.

Interleaved runs (fresh processes each time) of:
  f1          bench/floor kvm-floor -m vm-vm (raw KVM, vCPUs pinned 0/1)
  ours, QEMU 10.0's device: the test guest's ping-pong under each setting
  (pinning, -overcommit cpu-pm=on, ...), real-mode guest where the host
  KVM runs only real-mode code (kvm-pvm), the 32-bit one elsewhere;
per run the round-trip p50, and per round trip KVM's vCPU statistics:
exits, halt exits, wake-ups, successful halt polls, emulated instructions
(query-stats; kvm-floor reads the same binary statistics), and how often
QEMU's threads other than the vCPU woke.

    bench/kvm-gap.py [--reps 5] [--count 20000] [--json FILE]

Prints a markdown table: median over the repetitions, min-max of p50,
ratios to the floor and ours/QEMU 10.0 per setting (median of the
per-repetition ratios: interleaving cancels slow drifts of the load).
"""

import argparse
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts", "lib"))
import ivshtest as it  # noqa: E402

B = it.BUILD
PINGPONG = os.path.join(B, "testguest", "ivsh-pingpong")
GUEST32 = os.path.join(B, "testguest", "ivsh-guest.bin")
GUEST16 = os.path.join(B, "testguest", "ivsh-guest16.bin")
FLOOR = os.path.join(B, "bench", "floor", "kvm-floor")
SERVER = os.path.join(it.TOOLS, "ivsh-server")

SETTINGS = {
    "unpinned": [],
    "pinned": ["--pin", "0,1"],
    "pinned+cpu-pm": ["--pin", "0,1", "--qemu-arg", "-overcommit",
                      "--qemu-arg", "cpu-pm=on"],
}


def guest_args():
    """The guest the host KVM runs: 32-bit if it can, else real mode"""
    rc, out = it.run([PINGPONG, "--mode", "probe", "--qemu", it.QEMU,
                      "--guest", GUEST32], 40)
    if rc == 0:
        return "32-bit (q35)", ["--guest", GUEST32, "--machine", "q35"]
    return "16-bit real mode (pc)", ["--guest", GUEST16, "--machine", "pc",
                                     "--shm-size", "128K"]


def run_ours(qemu, gargs, extra, count):
    rc, out = it.run([PINGPONG, "--accel", "kvm", "--qemu", qemu,
                      "--server", SERVER, "--vectors", "1", "--copy", "0",
                      "--blast", "0", "--count", str(count), "--warmup",
                      "1000"] + gargs + extra, 300)
    res = {}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            for kv in line.split()[1:]:
                k, _, v = kv.partition("=")
                res[k] = v
    if rc != 0 or res.get("status") != "pass":
        return {"error": (out.strip().splitlines() or ["?"])[-1]}
    n = int(res["round_trips"])

    def per(key):
        try:
            return int(res[key]) / n
        except (KeyError, ValueError):
            return None
    r = {"p50": int(res["rtt_p50_ns"]) / 1000.0}
    for side in "ab":
        r[side] = {k: per(f"{side}_{k}") for k in (
            "exits", "halt_exits", "halt_wakeup", "insn_emulation",
            "wakeups", "mmio_exits")}
    return r


def run_floor(count, pinned):
    rc, out = it.run([FLOOR, "-m", "vm-vm", "-n", str(count), "-w", "1000",
                      "--json", "-q"] + ([] if pinned else ["--no-pin"]),
                     300, stderr=open(os.devnull, "w"))
    if rc != 0:
        return {"error": f"exit status {rc}"}
    d = json.loads(out)
    r = {"p50": d["latency"]["p50"]}
    for side in "ab":
        s = (d.get("kvm_stats_per_rt") or {}).get(side, {})
        r[side] = {"exits": s.get("exits"), "halt_exits":
                   s.get("halt_exits"), "halt_wakeup": s.get("halt_wakeup"),
                   "insn_emulation": s.get("insn_emulation"),
                   "wakeups": 0.0, "mmio_exits": s.get("mmio_exits")}
    return r


def fmt(v, nd=2):
    return "-" if v is None else f"{v:.{nd}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--json")
    o = ap.parse_args()
    why = it.kvm_usable()
    if why:
        print(f"kvm-gap: {why}", file=sys.stderr)
        return 77
    gname, gargs = guest_args()
    settings = o.settings.split(",")
    configs = [("f1 pinned", None, "pinned"),
               ("f1 unpinned", None, "unpinned")]
    for s in settings:
        configs += [(f"ours {s}", it.QEMU, s),
                    (f"qemu-10.0 {s}", it.UPSTREAM_QEMU, s)]
    runs = {c[0]: [] for c in configs}
    for rep in range(o.reps):
        for tag, qemu, s in configs:
            r = run_floor(o.count, s != "unpinned") if qemu is None else \
                run_ours(qemu, gargs, SETTINGS[s], o.count)
            runs[tag].append(r)
            print(f"# rep {rep + 1} {tag}: " + (r.get("error") or
                                                f"p50 {r['p50']:.1f} us"),
                  file=sys.stderr, flush=True)
    print(f"Guest: {gname}; {o.reps} interleaved repetitions of "
          f"{o.count} round trips; load {os.getloadavg()[0]:.1f}\n")
    print("| config | p50 us (median) | p50 min-max | x floor (same pinning) | "
          "exits/RT A+B | halt exits/RT A+B | emulated insns/RT A+B | "
          "QEMU wake-ups/RT |")
    print("|---|---|---|---|---|---|---|---|")
    table = {}
    for tag, _q, _s in configs:
        ok = [r for r in runs[tag] if "error" not in r]

        if not ok:
            print(f"| {tag} | failed: {runs[tag][0]['error']} |||||||")
            continue
        floor = runs["f1 unpinned" if _s == "unpinned" else "f1 pinned"]
        ratios = [r["p50"] / f["p50"] for r, f in zip(runs[tag], floor)
                  if "error" not in r and "error" not in f]

        def both(key):
            vals = [(r["a"][key] or 0) + (r["b"][key] or 0) for r in ok
                    if r["a"][key] is not None]
            return statistics.median(vals) if vals else None
        p50 = statistics.median(r["p50"] for r in ok)
        table[tag] = {"p50": p50, "runs": runs[tag]}
        print(f"| {tag} | {p50:.1f} | {min(r['p50'] for r in ok):.1f}-"
              f"{max(r['p50'] for r in ok):.1f} | "
              f"{fmt(statistics.median(ratios)) if ratios else '-'} | "
              f"{fmt(both('exits'))} | {fmt(both('halt_exits'))} | "
              f"{fmt(both('insn_emulation'), 1)} | {fmt(both('wakeups'), 4)} |")
    print("\nours / QEMU 10.0 (median of the per-repetition p50 ratios):\n")
    for s in settings:
        a, c = runs.get(f"ours {s}", []), runs.get(f"qemu-10.0 {s}", [])
        rs = [x["p50"] / y["p50"] for x, y in zip(a, c)
              if "error" not in x and "error" not in y]
        if rs:
            print(f"- {s}: {statistics.median(rs):.3f} "
                  f"(min {min(rs):.3f}, max {max(rs):.3f}, {len(rs)} pairs)")
    if o.json:
        with open(o.json, "w") as f:
            json.dump({"guest": gname, "runs": runs}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
