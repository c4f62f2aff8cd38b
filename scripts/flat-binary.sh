#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# flat-binary.sh OBJCOPY IN OUT SIZE [OBJCOPY OPTIONS...]
#
# A raw image of IN (objcopy -O binary), which must be exactly SIZE
# bytes (a -bios image); OUT is written only when it is.
set -eu
objcopy=$1 in=$2 out=$3 size=$4
shift 4
"$objcopy" -O binary "$@" "$in" "$out.tmp"
have=$(stat -c %s "$out.tmp")
if [ "$have" != "$size" ]; then
    echo "flat-binary: $out would be $have bytes, not $size" >&2
    rm -f "$out.tmp"
    exit 1
fi
mv "$out.tmp" "$out"
