#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# make demo: the project's main job, end to end.  Starts the project's
# ivshmem server and Linux guests (the project's image, under TCG) with
# the project's device, and shows them finding it, exchanging messages
# through the shared memory, ringing each other's doorbells on several
# vectors, and the round-trip time.  Everything it starts is stopped and
# removed at the end, also on Ctrl-C.
#
#   make demo [TYPE=doorbell|legacy|legacy-intx|plain] [VMS=2]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
exec python3 "$top/guest/linux/demo.py" --type "${TYPE:-doorbell}" \
    --vms "${VMS:-2}" --qemu "$top/build/qemu/qemu-system-x86_64" "$@"
