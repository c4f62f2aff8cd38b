#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# link-firmware.sh DIR
#
# Link the firmware of Debian's seabios, ipxe-qemu and qemu-system-data
# packages, file by file, into DIR: the data directory of a QEMU built
# with --disable-install-blobs (build-qemu.sh: the build's qemu-bundle;
# install.sh: the installed emulator's private share/qemu).  Prints the
# name of every link it creates (install.sh records them).
#
# Only the files those three packages own are linked, so other things in
# /usr/share/qemu (e.g. qemu-system-common's trace-events-all, its
# firmware/ descriptors) never reach DIR.  A name DIR already has is left
# alone, whatever it is (even a dangling link, as meson puts there for
# trace-events-all), except a link into the firmware directories, which
# is renewed, and such links to files the packages no longer own are
# removed.  Re-running is always safe.

set -euo pipefail

dir=${1:?usage: link-firmware.sh DIR}
PKGS=(seabios ipxe-qemu qemu-system-data)
DIRS_RE='^(/usr/share/seabios|/usr/lib/ipxe/qemu|/usr/share/qemu)/[^/]+$'

for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        echo "link-firmware: Debian package $p missing (make deps installs it)" >&2
        exit 1
    fi
done

mkdir -p "$dir"
declare -A seen=()
while read -r f; do
    name=${f##*/}
    if [ -n "${seen[$name]:-}" ] || [ -d "$f" ] || [ ! -e "$f" ]; then
        continue
    fi
    seen[$name]=1
    dest=$dir/$name
    if [ -L "$dest" ]; then
        if [[ "$(readlink "$dest")" =~ ^(/usr/share/seabios|/usr/lib/ipxe/qemu|/usr/share/qemu)/ ]]; then
            ln -sfn "$f" "$dest"
        fi
        continue
    fi
    if [ -e "$dest" ]; then
        continue
    fi
    ln -s "$f" "$dest"
    echo "$name"
done < <(dpkg-query -L "${PKGS[@]}" | grep -E "$DIRS_RE")

# Links into those directories to anything the packages do not own (left
# by older versions of this script, or a removed package) go.
for dest in "$dir"/*; do
    if [ -L "$dest" ] && [ -z "${seen[${dest##*/}]:-}" ] &&
       [[ "$(readlink "$dest")" =~ ^(/usr/share/seabios|/usr/lib/ipxe/qemu|/usr/share/qemu)/ ]]; then
        rm -f "$dest"
    fi
done
