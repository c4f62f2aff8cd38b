#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# meson-build.sh BUILDDIR [LINK=OUTPUT]...
#
# Build the project's own programs (the top-level meson.build) in
# BUILDDIR, set up first when needed, and link each LINK (a path under
# build/, the stable name scripts and docs use) to BUILDDIR/OUTPUT.  With
# LINK=OUTPUT pairs, only those outputs are built (so one area's broken
# file does not stop another area's target); without, everything.
#
#   build/meson        gcc, -O2 -g, -Werror (make tools, testguest, ...)
#   build/meson-asan   clang-14, ASan + UBSan, the libFuzzer target
#                      (make tools-asan, make fuzz-libfuzzer)
#
# A set-up that failed or was interrupted is redone from scratch on the
# next run; a meson.build edit is picked up by ninja itself.

set -euo pipefail
{
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
dir=${1:?usage: meson-build.sh BUILDDIR [LINK=OUTPUT]...}
shift

case "${dir%/}" in
build/meson)
    opts=()
    cc=
    ;;
build/meson-asan)
    # clang-only warnings (e.g. GNU extensions in bench/floor) are not
    # what this build is for: -Dwerror=false.
    opts=(-Db_sanitize=address,undefined -Db_lundef=false -Dfuzzer=true
          -Dwerror=false)
    cc=clang-14
    ;;
*)
    echo "meson-build: unknown build directory $dir" >&2
    exit 2
    ;;
esac

mkdir -p build
exec 9>"build/.lock-${dir##*/}"
flock 9

if [ ! -f "$dir/build.ninja" ] || [ ! -f "$dir/meson-private/coredata.dat" ]; then
    echo "meson-build: setting up $dir (log: $dir/meson-logs/meson-log.txt)"
    rm -rf "$dir"
    if ! CC=$cc meson setup "${opts[@]}" "$dir" . > "build/logs-${dir##*/}-setup.log" 2>&1; then
        cat "build/logs-${dir##*/}-setup.log" >&2
        rm -rf "$dir"
        echo "meson-build: meson setup $dir failed" >&2
        exit 1
    fi
    rm -f "build/logs-${dir##*/}-setup.log"
fi

outputs=()
for pair in "$@"; do
    outputs+=("${pair#*=}")
done
if ! ninja -C "$dir" "${outputs[@]}" > "$dir/ninja.log" 2>&1; then
    grep -A 30 -m 3 '^FAILED:' "$dir/ninja.log" >&2 || tail -n 30 "$dir/ninja.log" >&2
    echo "meson-build: build in $dir failed (log: $dir/ninja.log)" >&2
    exit 1
fi
grep -E '^\[[0-9]+/[0-9]+\] (Linking|Generating)' "$dir/ninja.log" |
    sed 's/^/meson-build: /' || true

for pair in "$@"; do
    link=build/${pair%%=*}
    target=$dir/${pair#*=}
    mkdir -p "$(dirname "$link")"
    # A real file of an older build is replaced; a directory never.
    if [ -d "$link" ] && [ ! -L "$link" ]; then
        echo "meson-build: $link is a directory, not linking it" >&2
        exit 1
    fi
    ln -sfnr "$target" "$link"
done
exit
}
