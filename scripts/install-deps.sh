#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Install the Debian packages the project needs, on Debian 12 as root.
# Adds two apt entries when missing, both using the URI of the machine's
# existing Debian entry (no mirror host is named here):
#   - bookworm-backports (deb), for meson >= 1.5
#   - trixie (deb-src), for QEMU 10.0.x source via "apt-get source"
#
# Quiet and fast when everything is already there.
#
#   install-deps.sh           what make, make check and make demo need
#   install-deps.sh --bench   also python3-matplotlib (make bench's plots)

set -euo pipefail

STAMP_PKGS=(ninja-build pkg-config libglib2.0-dev libpixman-1-dev flex bison
            ccache dpkg-dev valgrind seabios ipxe-qemu qemu-system-data python3-venv
            gcc make perl xz-utils bzip2 libpci-dev pciutils busybox-static
            cpio gzip socat rsync python3 clang-14 libclang-rt-14-dev llvm-14
            python3-docutils)
if [ "${1:-}" = --bench ]; then
    STAMP_PKGS+=(python3-matplotlib)
fi
BPO_PKGS=(meson)

need=()
for p in "${STAMP_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
        need+=("$p")
done

meson_ok() {
    local v
    v=$(/usr/bin/meson --version 2>/dev/null) || return 1
    dpkg --compare-versions "$v" ge 1.5
}

srcs_ok() {
    grep -rqs '^Suites:.*trixie' /etc/apt/sources.list.d/ 2>/dev/null ||
        grep -qs '^deb-src .* trixie ' /etc/apt/sources.list 2>/dev/null
}

if [ ${#need[@]} -eq 0 ] && meson_ok && srcs_ok; then
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages (${need[*]:-meson>=1.5}); run as root" >&2
    exit 1
fi

# The URI of the machine's existing Debian entry (deb822 or one-line form).
debian_uri() {
    local u
    u=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '{print $2}' | grep -v -- '-security' | grep -m1 debian || true)
    if [ -z "$u" ]; then
        u=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            2>/dev/null | awk '{print $2}' | grep -v -- '-security' |
            grep -m1 debian || true)
    fi
    echo "$u"
}

uri=$(debian_uri)
if [ -z "$uri" ]; then
    echo "install-deps: cannot find the machine's Debian apt entry to copy" >&2
    exit 1
fi

f=/etc/apt/sources.list.d/ivshmem-project.sources
if [ ! -f "$f" ]; then
    echo "install-deps: adding bookworm-backports and trixie deb-src ($uri) in $f"
    cat > "$f" <<EOS
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
fi

echo "install-deps: apt-get update"
# An install interrupted earlier leaves dpkg half-done: finish it first.
dpkg --configure -a
apt-get update -qq
if [ ${#need[@]} -gt 0 ]; then
    echo "install-deps: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${need[@]}" >/dev/null
fi
if ! meson_ok; then
    echo "install-deps: installing meson from bookworm-backports"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports "${BPO_PKGS[@]}" >/dev/null
fi
