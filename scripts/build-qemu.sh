#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build QEMU 10.0 for x86_64 from a copy of the pristine source.
#
#   build-qemu.sh ours        the project's tree laid over QEMU, with the
#                             hooks applied -> build/qemu/
#   build-qemu.sh upstream    QEMU as it is, for comparisons -> build/upstream/
#   build-qemu.sh asan        the project's tree with clang-14, ASan, UBSan
#                             and libFuzzer (qemu-fuzz-x86_64, the qtests)
#                             -> build/qemu-asan/
#
# Layout (same relative paths for both, so ccache shares objects):
#   build/trees/<flavour>/src     copy of the pristine source (+ overlay)
#   build/trees/<flavour>/build   meson/ninja build directory
#   build/qemu, build/upstream    symlinks to those build directories
#
# The hooks into QEMU's own files are listed in hook_files() below and in
# the README; each is a one-line insertion or append.

set -euo pipefail

# The whole script is one compound command ({ ... exit; }), so bash has
# read all of it before it runs any of it: editing this file (or a git
# pull) while a build runs cannot derail the build.
{
flavour=${1:?usage: build-qemu.sh ours|upstream [ninja targets...]}
shift
top=$(cd "$(dirname "$0")/.." && pwd)
B=$top/build
T=$B/trees/$flavour
mkdir -p "$T" "$B/logs"

case "$flavour" in
ours) link=qemu ;;
upstream) link=upstream ;;
asan) link=qemu-asan ;;
*) echo "build-qemu: unknown flavour '$flavour'" >&2; exit 2 ;;
esac

# One build per tree at a time (two "make" runs in one checkout wait for
# each other instead of interleaving).
exec 9>"$B/trees/.lock-$flavour"
if ! flock -n 9; then
    echo "build-qemu[$flavour]: waiting for another build of this tree"
    flock 9
fi

pristine=$("$top/scripts/fetch-qemu.sh")

# The project's directories that QEMU's build uses: the devices, their
# headers, the qtests (with the host library their in-test server links)
# and the docs.  The tools, guests and benchmarks are built by the
# project's own meson.build, outside QEMU's tree.
OVERLAY_DIRS="hw include tests/qtest/ivsh tests/qtest/fuzz docs contrib/ivsh-lib"

sync_pristine() {
    if [ "$(cat "$T/.pristine" 2>/dev/null)" = "$pristine" ] && [ -d "$T/src" ]; then
        return
    fi
    echo "build-qemu[$flavour]: copying QEMU source from $pristine"
    rm -rf "$T/src" "$T/build" "$T/.overlay-manifest"
    mkdir -p "$T/src"
    rsync -a --exclude=/roms --exclude=/debian --exclude=/.pc \
        "$pristine/" "$T/src/"
    echo "$pristine" > "$T/.pristine"
}

# Replace $2 with the content of $1 only when it differs (keeps mtimes of
# unchanged files, so ninja rebuilds only what an edit touches).
install_if_changed() {
    if ! cmp -s "$1" "$2"; then
        rm -f "$2"
        mkdir -p "$(dirname "$2")"
        cp "$1" "$2"
    fi
}

overlay() {
    local f old new
    old=$T/.overlay-manifest
    new=$(mktemp)
    (cd "$top" && for d in $OVERLAY_DIRS; do
        if [ -d "$d" ]; then
            find "$d" -type f ! -name '*~' ! -name '.*'
        fi
    done | sort) > "$new"
    while read -r f; do
        if [ -e "$pristine/$f" ]; then
            echo "build-qemu: project file $f would overwrite QEMU's own" >&2
            rm -f "$new"
            exit 1
        fi
        install_if_changed "$top/$f" "$T/src/$f"
    done < "$new"
    # Project files removed since the last build.
    if [ -f "$old" ]; then
        comm -23 "$old" "$new" | while read -r f; do rm -f "$T/src/$f"; done
    fi
    mv "$new" "$old"
}

# hook FILE KIND ARG: rebuild FILE from the pristine copy plus one line.
#   append LINE            append LINE at the end
#   after PATTERN LINE     insert LINE after the first line matching PATTERN
hook() {
    local file=$1 kind=$2 tmp
    tmp=$(mktemp)
    case "$kind" in
    append)
        cat "$pristine/$file" > "$tmp"
        printf '%s\n' "$3" >> "$tmp"
        ;;
    after)
        if ! grep -qF -- "$3" "$pristine/$file"; then
            echo "build-qemu: hook anchor '$3' not found in $file" >&2
            exit 1
        fi
        awk -v pat="$3" -v line="$4" \
            'done != 1 && index($0, pat) { print; print line; done = 1; next } { print }' \
            "$pristine/$file" > "$tmp"
        ;;
    esac
    install_if_changed "$tmp" "$T/src/$file"
    rm -f "$tmp"
}

hook_files() {
    # Leave QEMU's own ivshmem-pci.c out of this build.
    hook configs/devices/x86_64-softmmu/default.mak append 'CONFIG_IVSHMEM_DEVICE=n'
    # The project's device, its Kconfig symbol and its trace events.
    hook hw/misc/meson.build append "subdir('ivsh')"
    hook hw/misc/Kconfig append 'source ivsh/Kconfig'
    hook meson.build after 'trace_events_subdirs = [' "  'hw/misc/ivsh',"
    # The project's qtests, registered after QEMU's own test loop.
    hook tests/qtest/meson.build append "subdir('ivsh')"
    # The project's docs in QEMU's manual, each next to its QEMU sibling.
    hook docs/system/device-emulation.rst after '   devices/ivshmem.rst' \
        '   devices/ivsh.rst'
    hook docs/specs/index.rst after '   ivshmem-spec' '   ivsh-spec'
    hook docs/tools/index.rst after '   qemu-img' '   ivsh-server'
    # The project's fuzz target (tests/qtest/fuzz/ivsh_fuzz.c), asan only.
    if [ "$flavour" = asan ]; then
        hook tests/qtest/fuzz/meson.build append \
            "specific_fuzz_ss.add(when: 'CONFIG_IVSH_PCI', if_true: files('ivsh_fuzz.c'))"
    fi
}

# Compile through ccache: QEMU's configure hands meson a plain "cc", so
# put Debian's ccache wrappers first in PATH, for configure and ninja.
if [ -d /usr/lib/ccache ]; then
    export PATH=/usr/lib/ccache:$PATH
fi
export CCACHE_BASEDIR=$B/trees CCACHE_NOHASHDIR=1

CONFIGURE_OPTS=(--target-list=x86_64-softmmu --without-default-features
    --enable-kvm --enable-tools --disable-docs --disable-install-blobs
    --disable-download --enable-werror --python=/usr/bin/python3)
if [ "$flavour" = asan ]; then
    # UBSan aborts on the first report; no tools (the project's own meson
    # builds those with sanitizers).
    CONFIGURE_OPTS=(--target-list=x86_64-softmmu --without-default-features
        --enable-kvm --disable-tools --disable-docs --disable-install-blobs
        --disable-download --disable-werror --python=/usr/bin/python3
        --cc=clang-14 --cxx=clang++-14 --enable-fuzzing --enable-asan
        --enable-ubsan --extra-cflags=-fno-sanitize-recover=undefined)
fi

configure() {
    local want have
    want="${CONFIGURE_OPTS[*]}"
    have=$(cat "$T/.configured" 2>/dev/null || true)
    if [ "$want" = "$have" ] && [ -f "$T/build/build.ninja" ]; then
        return
    fi
    echo "build-qemu[$flavour]: configuring (log: build/logs/configure-$flavour.log)"
    rm -rf "$T/build"
    mkdir -p "$T/build"
    if ! (cd "$T/build" && ../src/configure "${CONFIGURE_OPTS[@]}") \
        > "$B/logs/configure-$flavour.log" 2>&1; then
        tail -n 30 "$B/logs/configure-$flavour.log" >&2
        echo "build-qemu[$flavour]: configure failed" >&2
        exit 1
    fi
    echo "$want" > "$T/.configured"
}

# Firmware from Debian's seabios, ipxe-qemu and qemu-system-data packages,
# linked file by file into the directory the emulator searches when run
# straight from the build directory (see "qemu-system-x86_64 -L help").
firmware() {
    local emu=$T/build/qemu-system-x86_64 dir
    dir=$("$emu" -L help 2>/dev/null | grep '/qemu-bundle/.*/share/qemu$' |
          head -n 1)
    if [ -z "$dir" ]; then
        echo "build-qemu: cannot find the firmware directory of $emu" >&2
        exit 1
    fi
    "$top/scripts/link-firmware.sh" "$dir" >/dev/null
}

build() {
    local log=$B/logs/build-$flavour.log
    echo "build-qemu[$flavour]: ninja $* (log: build/logs/build-$flavour.log)"
    # One progress line for each tenth of the steps, full log in the file.
    if ! (cd "$T/build" && NINJA_STATUS='[%f/%t] ' ninja "$@") 2>&1 |
        tee "$log" | awk -v tag="build-qemu[$flavour]" '
            match($0, /^\[[0-9]+\/[0-9]+\]/) {
                split(substr($0, 2, RLENGTH - 2), n, "/")
                step = int(n[1] * 10 / n[2])
                if (n[2] > 50 && step > last) {
                    printf "%s: %d%% (%d/%d steps)\n", tag, step * 10, n[1], n[2]
                    fflush()
                    last = step
                }
            }'
    then
        grep -A 30 -m 3 '^FAILED:' "$log" >&2 || tail -n 30 "$log" >&2
        echo "build-qemu[$flavour]: build failed" >&2
        exit 1
    fi
}

sync_pristine
if [ "$flavour" != upstream ]; then
    overlay
    hook_files
fi
configure
ln -sfn "trees/$flavour/build" "$B/$link"
if [ $# -eq 0 ]; then
    if [ "$flavour" = ours ]; then
        set -- qemu-system-x86_64 ivsh-all \
            tests/qtest/device-introspect-test
    elif [ "$flavour" = asan ]; then
        set -- qemu-system-x86_64 qemu-fuzz-x86_64 ivsh-all
    else
        set -- qemu-system-x86_64 contrib/ivshmem-server/ivshmem-server \
            contrib/ivshmem-client/ivshmem-client
    fi
fi
start=$SECONDS
build "$@"
firmware
echo "build-qemu[$flavour]: done in $((SECONDS - start)) s"
exit
}
