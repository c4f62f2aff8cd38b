#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Install the host packages the guest image build needs, on Debian 12 as
# root (modeled on scripts/install-deps.sh):
#
#   guest/linux/image/install-deps.sh               compiler, libpci, cpio ...
#   guest/linux/image/install-deps.sh KPKG VERSION  also the kernel headers that
#                                             match linux-image KPKG=VERSION
#
# Runs "apt-get update" only when a package is unknown to apt.  Quiet and
# fast when everything is there.

set -euo pipefail

PKGS=(gcc make libc6-dev libpci-dev pkg-config cpio gzip python3 apt)

kpkg=${1:-}
kver=${2:-}
if [ -n "$kpkg" ]; then
    PKGS+=("linux-headers-${kpkg#linux-image-}")
fi

installed() {
    local want=${2:-}
    local v
    v=$(dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null) || return 1
    case $v in
    "install ok installed "*) ;;
    *) return 1 ;;
    esac
    [ -z "$want" ] || [ "${v##* }" = "$want" ]
}

need=()
for p in "${PKGS[@]}"; do
    if [[ $p == linux-headers-* ]]; then
        installed "$p" "$kver" || need+=("$p=$kver")
    else
        installed "$p" || need+=("$p")
    fi
done
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "guest-image: missing packages (${need[*]}); run as root" >&2
    exit 1
fi

known() {
    local p=${1%%=*}
    apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'
}
for p in "${need[@]}"; do
    if ! known "$p"; then
        echo "guest-image: apt-get update"
        apt-get update -qq
        break
    fi
done

echo "guest-image: installing ${need[*]}"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
