#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Functional check of kvm-floor on a machine without a usable /dev/kvm:
# boots Debian's cloud kernel under QEMU TCG with an emulated AMD SVM CPU,
# loads kvm_amd in it and runs kvm-floor there (nested KVM on software
# emulation).  This proves the VMM, its ioctl sequence and the guest work
# against a real KVM; the latencies it prints mean nothing (everything
# is emulated), only completion and exit counts do.
#
#   bench/floor/nested-kvm-check.sh [kvm-floor options]
#
# Default options: every mode with -n 2000 -w 200 --json.  Downloads the
# kernel and busybox-static packages once with apt-get (into
# build/bench/floor/nested/); set QEMU to choose the emulator.  About 10 s.

set -eu

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SRC=$TOP/bench/floor
WORK=$TOP/build/bench/floor/nested
QEMU=${QEMU:-$TOP/build/qemu/qemu-system-x86_64}
if [ ! -x "$QEMU" ]; then
    QEMU=$(command -v qemu-system-x86_64 || true)
fi
if [ -z "$QEMU" ]; then
    echo "nested-kvm-check: no qemu-system-x86_64 (set QEMU)" >&2
    exit 77
fi

mkdir -p "$WORK/debs"
cd "$WORK/debs"
if ! ls linux-image-*-cloud-amd64_*.deb >/dev/null 2>&1 ||
   ! ls busybox-static_*.deb >/dev/null 2>&1; then
    rm -f ./*.deb
    apt-get download linux-image-cloud-amd64 busybox-static
    dep=$(dpkg-deb -f linux-image-cloud-amd64_*.deb Depends |
          sed 's/[ ,(].*//')
    apt-get download "$dep"
fi
rm -rf "$WORK/root" "$WORK/initrd"
for d in ./*.deb; do
    dpkg-deb -x "$d" "$WORK/root"
done

I=$WORK/initrd
mkdir -p "$I/bin" "$I/proc" "$I/sys" "$I/dev" "$I/mods"
cp "$WORK/root/bin/busybox" "$I/bin/"
for a in sh mount insmod poweroff cat echo; do
    ln -sf busybox "$I/bin/$a"
done
for m in irqbypass kvm kvm-amd; do
    find "$WORK/root/lib/modules" -name "$m.ko*" -exec cp {} "$I/mods/" \;
done
gcc -O2 -static -Wall -Werror -pthread -o "$I/bin/kvm-floor" \
    "$SRC/kvm-floor.c" "$SRC/kvm-floor-guest.S" "$SRC/floor-common.c"

if [ $# -gt 0 ]; then
    runs="kvm-floor $*"
else
    runs=""
    for m in vm-vm vm-vm-userspace host-vm host-vm-userspace; do
        runs+="kvm-floor -m $m -n 2000 -w 200 --json --timeout 60
"
    done
fi
{
    echo '#!/bin/sh'
    echo 'mount -t proc proc /proc'
    echo 'mount -t sysfs sys /sys'
    echo 'mount -t devtmpfs dev /dev'
    # shellcheck disable=SC2016
    echo 'for m in irqbypass kvm kvm-amd; do insmod /mods/$m.ko*; done'
    echo "$runs" | while read -r cmd; do
        [ -n "$cmd" ] || continue
        echo "echo '>>> $cmd'"
        echo "$cmd; echo \"<<< exit status \$?\""
    done
    echo 'poweroff -f'
} >"$I/init"
chmod +x "$I/init"
(cd "$I" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$WORK/initrd.gz"

kernel=$WORK/vmlinuz
cp "$WORK"/root/boot/vmlinuz-* "$kernel"
rm -rf "$WORK/root" "$WORK/initrd"
timeout 600 "$QEMU" -accel tcg,thread=multi -cpu max -smp 2 -m 1G \
    -nodefaults -display none -serial stdio -no-reboot \
    -kernel "$kernel" -initrd "$WORK/initrd.gz" \
    -append "console=ttyS0 rdinit=/init quiet panic=-1" |
    tr -d '\r' | tee "$WORK/log" | sed -n '/^>>> /,/^<<< /p'
status=$(grep -c '^<<< exit status 0$' "$WORK/log" || true)
total=$(grep -c '^<<< exit status' "$WORK/log" || true)
echo "$status of $total kvm-floor runs succeeded"
[ "$total" -gt 0 ] && [ "$status" -eq "$total" ]
