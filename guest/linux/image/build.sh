#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build the Linux test guest for the inter-VM shared memory device:
#
#   build/guest/vmlinuz         Debian's linux-image-cloud-amd64 kernel
#   build/guest/initrd.img      gzip'd initramfs: busybox-static, the
#                               ivshmem-guest tool and the shared libraries
#                               it needs, the ivshmem-guest, uio,
#                               uio_pci_generic and qemu_fw_cfg modules,
#                               and guest/linux/image/init
#   build/guest/module/ivshmem-guest.ko
#   build/guest/image.env       KERNEL=, INITRD=, KERNEL_PKG=, ... for tests
#
# The tool comes from the project's meson build ("make guest-tools":
# build/guest/bin/ivshmem-guest, IVSH_GUEST_TOOL overrides); the module
# is built here, by kbuild.
#
# The kernel and busybox come from Debian packages downloaded with
# "apt-get download" (kept in build/guest/cache); the libraries are those
# of the host's installed Debian packages the tool was linked against.
# The module is built against the linux-headers package of that exact
# kernel, installed on the host.
#
# Cached: build/guest/stamp is a hash of every input (package versions,
# compiler version, source files); when it matches, nothing is rebuilt.
# IVSH_GUEST_KERNEL=linux-image-ABI=VERSION pins another kernel.

set -euo pipefail

top=$(cd "$(dirname "$0")/../../.." && pwd)
out=${IVSH_GUEST_OUT:-$top/build/guest}
tool=${IVSH_GUEST_TOOL:-$top/build/guest/bin/ivshmem-guest}
cache=$out/cache
say() { echo "guest-image: $*"; }

if [ ! -x "$tool" ]; then
    say "$tool missing: run 'make guest-tools' (make guest-image does)" >&2
    exit 1
fi

"$top/guest/linux/image/install-deps.sh"

# --- the kernel and busybox packages ---------------------------------------

candidate() {
    apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }'
}

resolve_kernel() {
    local meta=linux-image-cloud-amd64
    kpkg=$(apt-cache depends "$meta" 2>/dev/null |
           awk '/Depends: linux-image-/ { print $2; exit }')
    kver=$(candidate "$kpkg")
}

# apt-cache takes a second per call: reuse the last answer while apt's
# package lists are unchanged.
lists_key=$( (ls -l --time-style=+%s /var/lib/apt/lists/ /etc/apt/preferences* \
                 2>/dev/null; echo "${IVSH_GUEST_KERNEL:-}") | sha256sum |
            cut -d' ' -f1)
kpkg= kver= bbver=
if [ -f "$out/resolved" ] && [ "$(sed -n 1p "$out/resolved")" = "$lists_key" ]; then
    read -r kpkg kver bbver < <(sed -n 2p "$out/resolved")
fi
if [ -z "$bbver" ]; then
    if [ -n "${IVSH_GUEST_KERNEL:-}" ]; then
        kpkg=${IVSH_GUEST_KERNEL%%=*}
        kver=${IVSH_GUEST_KERNEL#*=}
    else
        resolve_kernel
        if [ -z "$kpkg" ] || [ -z "$kver" ] || [ "$kver" = "(none)" ]; then
            say "apt-get update (linux-image-cloud-amd64 unknown)"
            apt-get update -qq
            resolve_kernel
        fi
    fi
    if [ -z "$kpkg" ] || [ -z "$kver" ] || [ "$kver" = "(none)" ]; then
        say "cannot resolve linux-image-cloud-amd64 in apt" >&2
        exit 1
    fi
    bbver=$(candidate busybox-static)
    if [ -z "$bbver" ] || [ "$bbver" = "(none)" ]; then
        say "cannot resolve busybox-static in apt" >&2
        exit 1
    fi
    mkdir -p "$out"
    printf '%s\n%s %s %s\n' "$lists_key" "$kpkg" "$kver" "$bbver" \
        > "$out/resolved"
fi
kabi=${kpkg#linux-image-}

# --- is the image up to date? ----------------------------------------------

srcs=()
while IFS= read -r f; do
    srcs+=("$f")
done < <(cd "$top" && find guest/linux/module guest/linux/image \
             -type f ! -name '*~' | LC_ALL=C sort)

libpkgs=$(cat "$out/libpkgs" 2>/dev/null || echo "libc6 libpci3")
inputs() {
    echo "kernel $kpkg=$kver"
    echo "busybox busybox-static=$bbver"
    echo "gcc $(gcc -dumpfullversion)"
    for p in $libpkgs; do
        echo "lib $p=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null)"
    done
    (cd "$top" && sha256sum "${srcs[@]}")
    sha256sum < "$tool"
}
stamp=$(inputs | sha256sum | cut -d' ' -f1)

if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] &&
   [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ]; then
    say "up to date ($kpkg $kver)"
    exit 0
fi
rm -f "$out/stamp"
mkdir -p "$out" "$cache"

# apt's lists may name versions the archive no longer has (the security
# suite keeps only the newest kernel): on an apt failure, update the lists
# and start over once.
apt_retry() {
    if [ -n "${IVSH_GUEST_APT_RETRY:-}" ]; then
        say "$1 failed" >&2
        exit 1
    fi
    say "$1 failed: apt-get update and retry"
    apt-get update -qq
    rm -f "$out/resolved"
    IVSH_GUEST_APT_RETRY=1 exec "$0"
}

"$top/guest/linux/image/install-deps.sh" "$kpkg" "$kver" ||
    apt_retry "installing linux-headers-$kabi=$kver"
hdrs=/usr/src/linux-headers-$kabi
if [ ! -f "$hdrs/Makefile" ]; then
    say "kernel headers missing in $hdrs" >&2
    exit 1
fi

# --- module ----------------------------------------------------------------

say "building ivshmem-guest.ko against linux-headers-$kabi"
rm -rf "$out/module"
mkdir -p "$out/module"
cp "$top/guest/linux/module/Kbuild" "$top/guest/linux/module/ivshmem-guest.c" \
   "$top/guest/linux/module/ivshmem-guest-uapi.h" "$out/module/"
make -s -C "$hdrs" M="$out/module" modules >"$out/module/build.log" 2>&1 || {
    cat "$out/module/build.log" >&2
    exit 1
}

# --- Debian packages for the guest -----------------------------------------

fetch() {
    local pkg=$1 ver=$2 deb
    deb=$(ls "$cache/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        say "downloading $pkg=$ver" >&2
        (cd "$cache" && apt-get download -q -o APT::Sandbox::User=root \
             "$pkg=$ver" >/dev/null) || return 1
        deb=$(ls "$cache/${pkg}_${ver//:/%3a}_"*.deb | head -n1)
    fi
    echo "$deb"
}

kdeb=$(fetch "$kpkg" "$kver") || apt_retry "downloading $kpkg=$kver"
bbdeb=$(fetch busybox-static "$bbver") ||
    apt_retry "downloading busybox-static=$bbver"

say "assembling the initramfs"
root=$out/rootfs
rm -rf "$root" "$out/kx"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc/ivsh} \
         "$root"/lib/modules/ivsh "$root/lib/x86_64-linux-gnu" "$root/lib64" \
         "$out/kx"

# Kernel and the modules we load, with their dependencies
dpkg-deb --fsys-tarfile "$kdeb" > "$out/kx/kernel.tar"
tar -tf "$out/kx/kernel.tar" > "$out/kx/list"
ko_path() {
    grep -m1 -E "/$1\.ko$" "$out/kx/list" || true
}
ko_depends() {
    tr '\0' '\n' < "$1" | sed -n 's/^depends=//p' | tr ',' ' '
}
order=()
add_module() {
    local m=$1 p d
    for d in "${order[@]}"; do
        [ "$d" = "$m" ] && return 0
    done
    if [ "$m" = ivshmem-guest ]; then
        cp "$out/module/ivshmem-guest.ko" "$root/lib/modules/ivsh/"
    else
        p=$(ko_path "$m")
        if [ -z "$p" ]; then
            say "module $m not in $kpkg" >&2
            exit 1
        fi
        tar -xf "$out/kx/kernel.tar" -C "$out/kx" "$p"
        cp "$out/kx/$p" "$root/lib/modules/ivsh/$m.ko"
    fi
    for d in $(ko_depends "$root/lib/modules/ivsh/$m.ko"); do
        add_module "$d"
    done
    order+=("$m")
}
# ivshmem-guest first: it must claim its functions before uio_pci_generic
for m in qemu_fw_cfg ivshmem-guest uio uio_pci_generic; do
    add_module "$m"
done
printf '%s\n' "${order[@]}" > "$root/etc/ivsh/modules"
vmlinuz=$(grep -m1 -E "boot/vmlinuz-$kabi$" "$out/kx/list")
tar -xf "$out/kx/kernel.tar" -C "$out/kx" "$vmlinuz"
cp "$out/kx/$vmlinuz" "$out/vmlinuz.new"

# busybox and its applets
dpkg-deb --fsys-tarfile "$bbdeb" | tar -x -C "$out/kx" --wildcards '*/bin/busybox'
cp "$out/kx/bin/busybox" "$root/bin/busybox"
for a in $("$root/bin/busybox" --list-full); do
    [ -e "$root/$a" ] || ln -s /bin/busybox "$root/$a"
done

# The tool and the shared libraries it needs, from the host's packages
cp "$tool" "$root/usr/bin/ivshmem-guest"
pkg_of() {
    local f g alt p
    for f in "$@"; do
        case $f in
        /usr/*) alt=${f#/usr} ;;
        *) alt=/usr$f ;;
        esac
        for g in "$f" "$alt"; do
            p=$(dpkg -S "$g" 2>/dev/null | head -n1 | cut -d: -f1) || true
            if [ -n "$p" ]; then
                echo "$p"
                return
            fi
        done
    done
}
pkgs=()
while read -r lib; do
    real=$(readlink -f "$lib")
    p=$(pkg_of "$lib" "$real")
    if [ -z "$p" ]; then
        say "$lib belongs to no Debian package" >&2
        exit 1
    fi
    pkgs+=("$p")
    case $lib in
    */ld-linux*) cp "$real" "$root/lib64/$(basename "$lib")" ;;
    *) cp "$real" "$root/lib/x86_64-linux-gnu/$(basename "$lib")" ;;
    esac
done < <(ldd "$tool" | awk '/=> \// { print $3 } /^\t\// { print $1 }')
printf '%s\n' "${pkgs[@]}" | LC_ALL=C sort -u | tr '\n' ' ' > "$out/libpkgs"
libpkgs=$(cat "$out/libpkgs")

install -m 0755 "$top/guest/linux/image/init" "$root/init"
{
    echo "kernel: $kpkg $kver"
    echo "busybox: busybox-static $bbver"
    for p in $libpkgs; do
        echo "lib: $p $(dpkg-query -W -f='${Version}' "$p")"
    done
} > "$root/etc/ivsh/packages"
mknod -m 0600 "$root/dev/console" c 5 1 2>/dev/null || true

(cd "$root" && find . -print0 | LC_ALL=C sort -z |
     cpio --null -o -H newc --owner=0:0 --reproducible --quiet) |
    gzip -9n > "$out/initrd.img.new"
mv "$out/vmlinuz.new" "$out/vmlinuz"
mv "$out/initrd.img.new" "$out/initrd.img"
rm -rf "$out/kx"

cat > "$out/image.env" <<EOF
KERNEL=$out/vmlinuz
INITRD=$out/initrd.img
KERNEL_PKG=$kpkg
KERNEL_VERSION=$kver
KERNEL_RELEASE=$kabi
APPEND="console=ttyS0 panic=-1 quiet loglevel=3"
EOF

# The library package list may have changed: hash again
inputs | sha256sum | cut -d' ' -f1 > "$out/stamp"
say "done: $out/vmlinuz ($kpkg $kver), $out/initrd.img" \
    "($(du -k "$out/initrd.img" | cut -f1) KiB)"
