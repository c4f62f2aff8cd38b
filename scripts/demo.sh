#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The demo: two VMs share one memory file through ivshmem-plain and see
# each other's writes.  (The full two-guest demo with doorbells arrives
# with the guest image.)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export QTEST_QEMU_BINARY=$top/build/qemu/qemu-system-x86_64
echo "demo: two QEMUs (pc and q35), one shared 1 MiB file, ivshmem-plain in each"
"$top/build/qemu/tests/qtest/ivsh/ivsh-plain-test" --verbose \
    -p /ivsh/plain/two-vms
echo "demo: both VMs read what the other wrote through BAR2: OK"
