#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The nested-KVM test VM: a Linux guest, run by the project's own QEMU
# under TCG with "-cpu max" (AMD SVM with NPT), that loads kvm-amd and
# runs the project's KVM test cases against that KVM.  See
# guest/nested/README.md.
#
#   guest/nested/build.sh      -> build/nested/vmlinuz
#                                 build/nested/initramfs.cpio
#                                 build/nested/env (what went in)
#
# Contents: busybox-static; irqbypass.ko, kvm.ko, kvm-amd.ko from the
# kernel package of the guest image (Debian's linux-image-cloud-amd64,
# downloaded once into build/guest/cache, shared with guest/linux/image);
# build/qemu and, when built, build/upstream (stripped, with the shared
# libraries ldd lists and the one firmware file the inner runs load); the
# test guest and ivsh-pingpong; ivsh-server; kvm-floor; the KVM qtest
# build/qemu/tests/qtest/ivsh/ivsh-kvm-test when it exists; init.
#
# Cached: build/nested/stamp hashes every input (package versions, the
# binaries, this directory); when it matches, nothing is done.  The
# archive is not compressed: the kernel unpacks it faster under TCG.

set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
out=$top/build/nested
cache=$top/build/guest/cache
say() { echo "nested-build: $*" >&2; }

# --- inputs ------------------------------------------------------------------

bins=(
    "ours:$top/build/qemu/qemu-system-x86_64"
    "upstream:$top/build/upstream/qemu-system-x86_64"
    "bin:$top/build/testguest/ivsh-pingpong"
    "bin:$top/build/testguest/ivsh-guest.bin"
    "bin:$top/build/testguest/ivsh-guest16.bin"
    "bin:$top/build/tools/ivsh-server"
    "bin:$top/build/bench/floor/kvm-floor"
    "bin:$top/build/qemu/tests/qtest/ivsh/ivsh-kvm-test"
)

candidate() {
    apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }'
}

# The guest image's kernel: its resolution when it has one, else apt's
kpkg= kver= bbver=
if [ -f "$top/build/guest/resolved" ]; then
    read -r kpkg kver bbver < <(sed -n 2p "$top/build/guest/resolved")
fi
if [ -z "$bbver" ]; then
    kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
           awk '/Depends: linux-image-/ { print $2; exit }')
    if [ -z "$kpkg" ]; then
        apt-get update -qq
        kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
               awk '/Depends: linux-image-/ { print $2; exit }')
    fi
    kver=$(candidate "$kpkg")
    bbver=$(candidate busybox-static)
fi
if [ -z "$kpkg" ] || [ -z "$kver" ] || [ -z "$bbver" ]; then
    say "cannot resolve linux-image-cloud-amd64 / busybox-static in apt"
    exit 1
fi

inputs() {
    echo "kernel $kpkg=$kver busybox $bbver"
    local b
    for b in "${bins[@]}"; do
        if [ -f "${b#*:}" ]; then
            echo "${b%%:*} $(stat -L -c '%s %Y' "${b#*:}") ${b#*:}"
        fi
    done
    (cd "$top" && sha256sum guest/nested/*)
}
stamp=$(inputs | sha256sum | cut -d' ' -f1)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] &&
   [ -f "$out/initramfs.cpio" ] && [ -f "$out/vmlinuz" ]; then
    exit 0
fi
rm -f "$out/stamp"
mkdir -p "$out" "$cache"

fetch() {
    local pkg=$1 ver=$2 deb
    deb=$(ls "$cache/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        say "downloading $pkg=$ver"
        (cd "$cache" && apt-get download -q -o APT::Sandbox::User=root \
             "$pkg=$ver" >/dev/null) || {
            apt-get update -qq
            (cd "$cache" && apt-get download -q -o APT::Sandbox::User=root \
                 "$pkg" >/dev/null)
        }
        deb=$(ls "$cache/${pkg}_"*.deb | tail -n1)
    fi
    echo "$deb"
}
kdeb=$(fetch "$kpkg" "$kver")
bbdeb=$(fetch busybox-static "$bbver")

say "assembling the initramfs ($kpkg $kver)"
root=$out/root
rm -rf "$root" "$out/kx"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,mods,opt/ivsh/bin} \
         "$root/lib/x86_64-linux-gnu" "$root/lib64" "$out/kx"

# kernel and the KVM modules
dpkg-deb --fsys-tarfile "$kdeb" > "$out/kx/kernel.tar"
tar -tf "$out/kx/kernel.tar" > "$out/kx/list"
for m in irqbypass kvm kvm-amd; do
    p=$(grep -m1 -E "/$m\.ko$" "$out/kx/list" || true)
    if [ -z "$p" ]; then
        say "module $m not in $kpkg"
        exit 1
    fi
    tar -xf "$out/kx/kernel.tar" -C "$out/kx" "$p"
    cp "$out/kx/$p" "$root/mods/$m.ko"
done
vmlinuz=$(grep -m1 -E "boot/vmlinuz-" "$out/kx/list")
tar -xf "$out/kx/kernel.tar" -C "$out/kx" "$vmlinuz"
cp "$out/kx/$vmlinuz" "$out/vmlinuz.new"

dpkg-deb --fsys-tarfile "$bbdeb" | tar -x -C "$out/kx" --wildcards '*/bin/busybox'
cp "$out/kx/bin/busybox" "$root/bin/busybox"
for a in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
done

# binaries, their libraries, QEMU's firmware
libs() {
    ldd "$1" 2>/dev/null | awk '/=> \// { print $3 } /^\t\// { print $1 }'
}
add_libs() {
    local lib real
    while read -r lib; do
        real=$(readlink -f "$lib")
        case $lib in
        */ld-linux*) cp -n "$real" "$root/lib64/$(basename "$lib")" ;;
        *) cp -n "$real" "$root/lib/x86_64-linux-gnu/$(basename "$lib")" ;;
        esac
    done < <(libs "$1")
}
have=()
for b in "${bins[@]}"; do
    kind=${b%%:*} path=${b#*:}
    [ -f "$path" ] || continue
    case $kind in
    ours|upstream)
        mkdir -p "$root/opt/ivsh/$kind/bin" "$root/opt/ivsh/$kind/share/qemu"
        strip -o "$root/opt/ivsh/$kind/bin/qemu-system-x86_64" "$path"
        # QEMU finds ../share/qemu relative to its binary
        fw=$(dirname "$path")/qemu-bundle/usr/share/qemu/kvmvapic.bin
        if [ -f "$fw" ]; then
            cp -L "$fw" "$root/opt/ivsh/$kind/share/qemu/"
        fi
        add_libs "$path"
        have+=("$kind")
        ;;
    *)
        case $path in
        *.bin) cp "$path" "$root/opt/ivsh/bin/" ;;
        *)
            strip -o "$root/opt/ivsh/bin/$(basename "$path")" "$path"
            add_libs "$path"
            ;;
        esac
        have+=("$(basename "$path")")
        ;;
    esac
done
install -m 0755 "$top/guest/nested/init" "$root/init"
{
    echo "kernel=$kpkg $kver"
    echo "busybox=$bbver"
    echo "contents=${have[*]}"
} > "$root/opt/ivsh/contents"
cp "$root/opt/ivsh/contents" "$out/env"
mknod -m 0600 "$root/dev/console" c 5 1 2>/dev/null || true

(cd "$root" && find . -print0 | LC_ALL=C sort -z |
     cpio --null -o -H newc --owner=0:0 --reproducible --quiet) \
    > "$out/initramfs.cpio.new"
mv "$out/vmlinuz.new" "$out/vmlinuz"
mv "$out/initramfs.cpio.new" "$out/initramfs.cpio"
rm -rf "$out/kx" "$root"
echo "$stamp" > "$out/stamp"
say "done: $(du -m "$out/initramfs.cpio" | cut -f1) MiB (${have[*]})"
