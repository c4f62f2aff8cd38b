#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Fuzz the project's devices with build/qemu-asan/qemu-fuzz-x86_64
# (scripts/build-qemu.sh asan: clang-14, libFuzzer, ASan, UBSan).
#
#   fuzz-ivsh.sh ivsh SECONDS [LIBFUZZER-ARGS...]
#       the project's target (tests/qtest/fuzz/ivsh_fuzz.c): guest accesses,
#       server messages, resets and hot-plug on the three device types,
#       from tests/fuzz/ivsh/seeds plus the work corpus
#   fuzz-ivsh.sh generic plain|doorbell|legacy SECONDS [LIBFUZZER-ARGS...]
#       QEMU's generic-fuzz on one device type (QEMU_FUZZ_ARGS and
#       QEMU_FUZZ_OBJECTS set here; doorbell and legacy talk to an
#       ivsh-server started here, with an ivsh-client as a second peer
#       that the fuzzed device can ring; $IVSH_SERVER and $IVSH_CLIENT
#       name them, default build/tools/)
#   fuzz-ivsh.sh replay FILE|DIR...
#       run inputs of the ivsh target once (crash reproducers, regressions)
#
# SECONDS 0 means no limit.  New corpus entries go to $IVSH_FUZZ_WORK
# (default build/fuzz/<target>/corpus), crashing inputs to
# build/fuzz/<target>/crash-*; a crash is kept as a regression input by
# copying it to tests/fuzz/ivsh/regressions/.  Exit status: libFuzzer's
# (0: nothing found).

set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
qemu_dir=$top/build/qemu-asan
fuzzer=$qemu_dir/qemu-fuzz-x86_64
seeds=$top/tests/fuzz/ivsh/seeds

if [ ! -x "$fuzzer" ]; then
    echo "fuzz-ivsh: $fuzzer missing: run scripts/build-qemu.sh asan" >&2
    exit 2
fi

# QEMU leaks at exit by design; any other report stops the run.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:halt_on_error=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# The limits of one input: 20 s (a hang), 4 GiB (ASan's shadow included).
common=(-timeout=20 -rss_limit_mb=4096 -print_final_stats=1 -detect_leaks=0)


mode=${1:?usage: fuzz-ivsh.sh ivsh|generic|replay ...}
shift
case "$mode" in
ivsh)
    secs=${1:?fuzz-ivsh.sh ivsh SECONDS}
    shift
    work=${IVSH_FUZZ_WORK:-$top/build/fuzz/ivsh}
    mkdir -p "$work/corpus"
    echo "fuzz-ivsh: target ivsh for ${secs}s, corpus $work/corpus + $seeds"
    exec "$fuzzer" --fuzz-target=ivsh "${common[@]}" -max_total_time="$secs" \
        -artifact_prefix="$work/" "$@" "$work/corpus" "$seeds"
    ;;
replay)
    [ $# -gt 0 ] || { echo "fuzz-ivsh: replay FILE|DIR..." >&2; exit 2; }
    files=()
    for f in "$@"; do
        if [ -d "$f" ]; then
            for g in "$f"/*; do
                if [ -f "$g" ]; then
                    files+=("$g")
                fi
            done
        elif [ -e "$f" ]; then
            files+=("$f")
        fi
    done
    if [ ${#files[@]} -eq 0 ]; then
        echo "fuzz-ivsh: no input to replay"
        exit 0
    fi
    # Files, not directories: libFuzzer runs each once
    exec "$fuzzer" --fuzz-target=ivsh "${common[@]}" "${files[@]}"
    ;;
generic)
    type=${1:?fuzz-ivsh.sh generic plain|doorbell|legacy SECONDS}
    secs=${2:?fuzz-ivsh.sh generic TYPE SECONDS}
    shift 2
    work=${IVSH_FUZZ_WORK:-$top/build/fuzz/generic-$type}
    mkdir -p "$work/corpus"
    tmp=$(mktemp -d /tmp/ivsh-fuzz-XXXXXX)
    pids=()
    cleanup() {
        local p
        for p in "${pids[@]}"; do
            kill "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        done
        rm -rf "$tmp"
    }
    trap cleanup EXIT
    start_server() {
        local server=${IVSH_SERVER:-$top/build/tools/ivsh-server}
        local client=${IVSH_CLIENT:-$top/build/tools/ivsh-client} i
        if [ ! -x "$server" ] || [ ! -x "$client" ]; then
            echo "fuzz-ivsh: $server or $client missing: run make tools" >&2
            exit 2
        fi
        "$server" -S "$tmp/sock" -l 1M -n "$1" -q &
        pids+=($!)
        for i in $(seq 200); do
            if [ -S "$tmp/sock" ]; then
                break
            fi
            sleep 0.05
        done
        # Peer 0, rung by the fuzzed device (peer 1) at random
        "$client" -S "$tmp/sock" -n "$1" wait 0 --count 1000000000 \
            --timeout 86400000 > /dev/null &
        pids+=($!)
        if [ ! -S "$tmp/sock" ]; then
            echo "fuzz-ivsh: ivsh-server did not start" >&2
            exit 2
        fi
    }
    case "$type" in
    plain)
        QEMU_FUZZ_ARGS="-M pc -nodefaults -object memory-backend-memfd,id=m,size=1M,share=on -device ivshmem-plain,memdev=m"
        ;;
    doorbell)
        start_server 4
        QEMU_FUZZ_ARGS="-M pc -nodefaults -chardev socket,id=c,path=$tmp/sock -device ivshmem-doorbell,chardev=c,vectors=4"
        ;;
    legacy)
        start_server 1
        QEMU_FUZZ_ARGS="-M pc -nodefaults -chardev socket,id=c,path=$tmp/sock -device ivshmem,chardev=c,msi=off,size=1M"
        ;;
    *)
        echo "fuzz-ivsh: unknown type '$type' (plain, doorbell, legacy)" >&2
        exit 2
        ;;
    esac
    # The device (its type names all start so) and its memory regions.
    export QEMU_FUZZ_ARGS QEMU_FUZZ_OBJECTS='ivshmem*'
    echo "fuzz-ivsh: generic-fuzz of $type for ${secs}s: $QEMU_FUZZ_ARGS"
    # Not exec: the server is stopped afterwards.
    rc=0
    "$fuzzer" --fuzz-target=generic-fuzz "${common[@]}" \
        -max_total_time="$secs" -artifact_prefix="$work/" "$@" \
        "$work/corpus" || rc=$?
    exit $rc
    ;;
*)
    echo "fuzz-ivsh: unknown mode '$mode' (ivsh, generic, replay)" >&2
    exit 2
    ;;
esac
