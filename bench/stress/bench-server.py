#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""make bench-server: how long the N-th peer takes to join.

Peers join one at a time (each once the previous join is complete) and
stay; for N = 16, 64 and 256 at 64 vectors, ivsh-stress reports the time
from connect() until the N-th peer has its own eventfds (its set-up is
complete, "join"), and until every other peer also has its eventfds
("all told").  Run against build/tools/ivsh-server and, when built,
QEMU's contrib ivshmem-server (which uses select() and aborts once it
holds more than 1024 fds, and drops messages when a socket is full).
Prints one table.  Not part of make check.
"""

import os
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
TOOLS = os.path.join(TOP, "build", "tools")
CONTRIB = os.path.join(TOP, "build", "upstream", "contrib",
                       "ivshmem-server", "ivshmem-server")
NS = [16, 64, 256]
VECTORS = 64
REPEAT = 5


def bench(argv, sock, log, timeout_ms):
    """Start a server, run the benchmark; {N: (join, all) or reason}"""
    results = {}
    with open(log, "w") as f:
        srv = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                               stderr=f)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            if srv.poll() is not None or time.monotonic() > deadline:
                return {n: "server did not start" for n in NS}
            time.sleep(0.01)
        p = subprocess.run([os.path.join(TOOLS, "ivsh-stress"), "-S", sock,
                            "-n", str(VECTORS), "--timeout", str(timeout_ms),
                            "--repeat", str(REPEAT),
                            "--bench", ",".join(map(str, NS))],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=900)
        died = srv.poll()
        for ln in p.stdout.splitlines():
            f = ln.split(None, 3)
            if len(f) < 3 or f[0] != "BENCH":
                continue
            n = int(f[1])
            if f[2] == "FAIL":
                why = f[3] if len(f) > 3 else "failed"
                if died is not None:
                    why = f"server died (exit {died}) - {why}"
                results[n] = why
            else:
                results[n] = tuple(float(x) for x in ln.split()[2:6])
        for n in NS:
            results.setdefault(n, "no result")
        return results
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait()


def main():
    if not os.access(os.path.join(TOOLS, "ivsh-stress"), os.X_OK):
        print("bench-server: run 'make tools' first", file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="ivsh-bench-")
    runs = []
    sock = os.path.join(tmp, "ivsh.sock")
    runs.append(("ivsh-server", bench(
        [os.path.join(TOOLS, "ivsh-server"), "-S", sock, "-n", str(VECTORS),
         "--quiet"], sock, os.path.join(tmp, "ivsh.log"), 60000)))
    if os.access(CONTRIB, os.X_OK):
        sock = os.path.join(tmp, "contrib.sock")
        name = f"ivsh-bench-{os.getpid()}"
        try:
            runs.append(("contrib ivshmem-server", bench(
                [CONTRIB, "-F", "-S", sock, "-n", str(VECTORS), "-l", "4M",
                 "-M", name, "-p", os.path.join(tmp, "contrib.pid")],
                sock, os.path.join(tmp, "contrib.log"), 10000)))
        finally:
            if os.path.exists("/dev/shm/" + name):
                os.unlink("/dev/shm/" + name)
    else:
        runs.append(("contrib ivshmem-server", {n: "not built" for n in NS}))

    print(f"\nTime for the N-th peer to join, {VECTORS} vectors per peer, "
          f"ms, median of {REPEAT} (min-max)\n"
          f"join: until its set-up is complete; all told: until every "
          f"other peer has its eventfds\n")
    head = f"{'N':>5}"
    for name, _ in runs:
        head += f" | {name + ': join':>34} {'all told':>9}"
    print(head)
    print("-" * len(head))
    notes = []
    for n in NS:
        row = f"{n:>5}"
        for name, res in runs:
            r = res[n]
            if isinstance(r, tuple):
                join = f"{r[0]:.2f} ({r[2]:.2f}-{r[3]:.2f})"
                row += f" | {join:>34} {r[1]:>9.2f}"
            else:
                notes.append(f"{name}, N={n}: {r}")
                row += f" | {'-':>34} {'-':>9}"
        print(row)
    for note in notes:
        print("  " + note)
    if any("contrib" in n and "timeout" in n for n in notes):
        print("  (QEMU's contrib server sends without blocking and ignores "
              "EAGAIN: once a client's\n   socket buffer is full, about 270 "
              "messages with fds, the rest of its set-up is lost)")
    subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
