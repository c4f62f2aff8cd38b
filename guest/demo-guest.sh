#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Demo helper: boot Linux guests with an ivshmem device and show them
# finding it, exchanging messages through the shared memory, ringing each
# other's doorbells on several vectors and the round-trip time.
#
#   guest/demo-guest.sh [--type doorbell|legacy|legacy-intx|plain]
#                       [--vms N] [--qemu QEMU] [--server SERVER]
#                       [--vectors N] [--rounds N] [--size 1M] [--keep]
#
# Needs "make guest-image".  Everything it starts is stopped at the end.
exec python3 "$(dirname "$0")/demo.py" "$@"
