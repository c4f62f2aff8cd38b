#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Print the path of a pristine QEMU 10.0.x source tree, fetching it first
# when needed.  The tree lives in a cache outside the repository and is
# never edited; builds work on copies of it.
#
# Source, in this order:
#   QEMU_SRC=<dir>        used in place (read only)
#   QEMU_SRC=<tarball>    unpacked once into the cache
#   otherwise             Debian's "qemu" source package from trixie

set -euo pipefail

CACHE=${IVSH_CACHE:-$HOME/.cache/ivshmem-project}
mkdir -p "$CACHE"

check_version() {
    local v
    v=$(cat "$1/VERSION" 2>/dev/null || true)
    case "$v" in
    10.0.*) ;;
    *)
        echo "fetch-qemu: $1 is QEMU '${v:-unknown}', this project needs 10.0.x" >&2
        exit 1
        ;;
    esac
    if [ ! -f "$1/configure" ] || [ ! -f "$1/hw/misc/meson.build" ]; then
        echo "fetch-qemu: $1 does not look like a QEMU source tree" >&2
        exit 1
    fi
}

if [ -n "${QEMU_SRC:-}" ]; then
    if [ -d "$QEMU_SRC" ]; then
        src=$(cd "$QEMU_SRC" && pwd)
        check_version "$src"
        echo "$src"
        exit 0
    fi
    if [ ! -f "$QEMU_SRC" ]; then
        echo "fetch-qemu: QEMU_SRC=$QEMU_SRC is neither a directory nor a file" >&2
        exit 1
    fi
    key=$(sha256sum "$QEMU_SRC" | cut -c1-16)
    dest="$CACHE/tarball-$key"
    if [ ! -f "$dest/.complete" ]; then
        echo "fetch-qemu: unpacking $QEMU_SRC" >&2
        rm -rf "$dest" "$dest.tmp"
        mkdir -p "$dest.tmp"
        tar -xf "$QEMU_SRC" -C "$dest.tmp" --strip-components=1
        mv "$dest.tmp" "$dest"
        touch "$dest/.complete"
    fi
    check_version "$dest"
    echo "$dest"
    exit 0
fi

dest="$CACHE/debian-trixie"
if [ ! -f "$dest/.complete" ]; then
    echo "fetch-qemu: fetching Debian's qemu source package (trixie)" >&2
    rm -rf "$dest.dl"
    mkdir -p "$dest.dl"
    if ! (cd "$dest.dl" && apt-get source -qq qemu/trixie >&2); then
        echo "fetch-qemu: 'apt-get source qemu/trixie' failed; is the trixie" \
             "deb-src entry present (scripts/install-deps.sh adds it)?" >&2
        exit 1
    fi
    tree=$(find "$dest.dl" -mindepth 1 -maxdepth 1 -type d -name 'qemu-*' | head -n 1)
    check_version "$tree"
    rm -rf "$dest"
    mv "$tree" "$dest"
    rm -rf "$dest.dl"
    touch "$dest/.complete"
fi
check_version "$dest"
echo "$dest"
