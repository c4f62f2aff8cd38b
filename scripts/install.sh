#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# install.sh install|uninstall PREFIX [DESTDIR]      (make install/uninstall)
#
# install writes, under DESTDIR/PREFIX:
#   bin/ivsh-qemu-system-x86_64       link to the emulator with the project's
#                                     devices, which lives in a private tree:
#   libexec/ivsh/qemu/bin/qemu-system-x86_64
#   libexec/ivsh/qemu/share/qemu/     its data: links to the firmware of
#                                     Debian's packages, keymaps
#     (QEMU is relocatable: it looks for its data in ../share/qemu from
#     where its binary really is, so it never reads PREFIX/share/qemu, and
#     no file of Debian's QEMU, nor any qemu-* name, is written or shadowed)
#   bin/ivsh-server, bin/ivsh-client
#   lib/systemd/system/ivsh-server.{service,socket}   ExecStart=PREFIX/bin/...
#   share/man/man1/ivsh-server.1, ivsh-client.1
#   share/ivsh/guest/                 the guest tool, library, headers and
#                                     the kernel module's sources
#   share/ivsh/install-manifest       every file, link and directory written
#
# The project's programs are installed by "meson install" (build/meson,
# configured with prefix=PREFIX); the emulator by this script.  A second
# install first removes the first one.  uninstall removes exactly what the
# manifest lists: files and links (a file changed since, e.g. an edited
# unit, is kept and named), then the directories install created, if
# empty.

set -euo pipefail
{
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
action=${1:?usage: install.sh install|uninstall PREFIX [DESTDIR]}
prefix=${2:?usage: install.sh install|uninstall PREFIX [DESTDIR]}
destdir=${3:-}
case "$prefix" in
/*) ;;
*) echo "install: PREFIX must be an absolute path, not '$prefix'" >&2; exit 2 ;;
esac
prefix=${prefix%/}
destdir=${destdir%/}
manifest=$prefix/share/ivsh/install-manifest
say() { echo "install: $*"; }

# --- uninstall --------------------------------------------------------------

uninstall() {
    local m=$destdir$manifest kind a b path kept=0 dirs=()
    if [ ! -f "$m" ]; then
        say "nothing to uninstall: $m does not exist"
        return 0
    fi
    while read -r kind a b; do
        case "$kind" in
        f)  # f SHA256 PATH
            path=$destdir$b
            if [ -f "$path" ] && [ ! -L "$path" ]; then
                if [ "$(sha256sum < "$path" | cut -d' ' -f1)" = "$a" ]; then
                    rm -f "$path"
                else
                    echo "install: keeping $path: changed since install" >&2
                    kept=1
                fi
            fi
            ;;
        l)  # l PATH -> TARGET
            path=$destdir$a
            if [ -L "$path" ]; then
                rm -f "$path"
            fi
            ;;
        d)  dirs+=("$destdir$a") ;;
        esac
    done < <(grep -v '^#' "$m")
    rm -f "$m"
    # Deepest first; a directory someone else put files in stays.
    printf '%s\n' "${dirs[@]}" | awk '{ print length($0) "\t" $0 }' |
        sort -rn | cut -f2- | while read -r path; do
            rmdir "$path" 2>/dev/null || true
        done
    if [ "$kept" = 1 ]; then
        say "removed what $manifest listed, except the files named above"
    else
        say "removed what $manifest listed"
    fi
}

# --- install ----------------------------------------------------------------

# Directories this script creates, for the manifest.
created_dirs=()
mkdir_p() {
    local d=$1 missing=()
    while [ ! -d "$destdir$d" ]; do
        missing=("$d" "${missing[@]}")
        d=$(dirname "$d")
    done
    for d in "${missing[@]}"; do
        mkdir "$destdir$d"
        created_dirs+=("$d")
    done
}

entries=()
put_file() {            # put_file SRC DEST MODE
    mkdir_p "$(dirname "$2")"
    install -m "$3" "$1" "$destdir$2"
    entries+=("f $(sha256sum < "$destdir$2" | cut -d' ' -f1) $2")
}
put_link() {            # put_link TARGET DEST
    mkdir_p "$(dirname "$2")"
    ln -sfn "$1" "$destdir$2"
    entries+=("l $2 $1")
}

install_all() {
    local emu=build/qemu/qemu-system-x86_64 priv=$prefix/libexec/ivsh/qemu
    local have f name line
    for f in "$emu" build/meson/build.ninja; do
        if [ ! -e "$f" ]; then
            echo "install: $f missing: run make first" >&2
            exit 1
        fi
    done
    if [ -n "$destdir" ]; then
        mkdir -p "$destdir"
    fi
    if [ -f "$destdir$manifest" ]; then
        say "replacing the earlier install"
        uninstall
    fi

    # The project's programs, through meson, at this prefix.
    have=$(meson introspect build/meson --buildoptions |
           python3 -c 'import json, sys
print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
    if [ "$have" != "$prefix" ]; then
        say "build/meson: prefix $have -> $prefix"
        meson configure build/meson -Dprefix="$prefix" >/dev/null
    fi
    if ! meson install -C build/meson ${destdir:+--destdir "$destdir"} \
            --quiet > build/meson/install.log 2>&1; then
        cat build/meson/install.log >&2
        echo "install: meson install failed" >&2
        exit 1
    fi
    # meson's log lists what it installed, and the directories it created
    while read -r line; do
        f=${line#"$destdir"}
        if [ -L "$line" ]; then
            entries+=("l $f $(readlink "$line")")
        elif [ -d "$line" ]; then
            created_dirs+=("$f")
        else
            entries+=("f $(sha256sum < "$line" | cut -d' ' -f1) $f")
        fi
    done < <(grep -v '^#' build/meson/meson-logs/install-log.txt)

    # The emulator, in its private tree, and its firmware.
    put_file "$emu" "$priv/bin/qemu-system-x86_64" 0755
    mkdir_p "$priv/share/qemu/keymaps"
    for f in build/qemu/qemu-bundle/*/*/share/qemu/keymaps/*; do
        if [ -f "$f" ]; then
            put_file "$f" "$priv/share/qemu/keymaps/${f##*/}" 0644
        fi
    done
    while read -r name; do
        entries+=("l $priv/share/qemu/$name $(readlink "$destdir$priv/share/qemu/$name")")
    done < <(scripts/link-firmware.sh "$destdir$priv/share/qemu")
    put_link ../libexec/ivsh/qemu/bin/qemu-system-x86_64 \
        "$prefix/bin/ivsh-qemu-system-x86_64"

    mkdir_p "$(dirname "$manifest")"
    {
        echo "# ivsh install manifest, PREFIX=$prefix; make uninstall reads it"
        echo "# f SHA256 PATH | l PATH TARGET | d PATH (created by install)"
        printf '%s\n' "${entries[@]}"
        for f in "${created_dirs[@]}"; do
            echo "d $f"
        done
    } > "$destdir$manifest"
    say "installed under ${destdir}${prefix} (${#entries[@]} files and links;" \
        "emulator: $prefix/bin/ivsh-qemu-system-x86_64)"
}

case "$action" in
install) install_all ;;
uninstall) uninstall ;;
*) echo "usage: install.sh install|uninstall PREFIX [DESTDIR]" >&2; exit 2 ;;
esac
exit
}
