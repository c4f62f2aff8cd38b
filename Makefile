# SPDX-License-Identifier: GPL-2.0-or-later
#
#   make            install missing Debian packages, fetch QEMU 10.0, build
#                   build/qemu/qemu-system-x86_64 with the project's devices
#                   and the project's own programs (meson.build, build/meson)
#   make upstream   QEMU's own ivshmem from the same source -> build/upstream/
#   make check      build everything, run every test, print
#                   "N passed, N failed" (behaviour tests only)
#   make demo       the main job, end to end (TYPE=doorbell|legacy|
#                   legacy-intx|plain, VMS=2)
#   make install    the emulator as PREFIX/bin/ivsh-qemu-system-x86_64,
#                   ivsh-server, ivsh-client, units, man page, guest files
#                   (PREFIX=/usr/local, DESTDIR honoured)
#   make uninstall  remove exactly what "make install" wrote
#   make clean      remove build/ (the QEMU source cache and ccache stay)
#
# More targets in mk/*.mk: tools, testguest, bench-floor, guest-image,
# bench, ...

SHELL := /bin/bash
.DEFAULT_GOAL := all
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: all deps qemu upstream check demo install uninstall clean

deps:
	@scripts/install-deps.sh

all: qemu programs

qemu: deps
	@scripts/build-qemu.sh ours

upstream: deps
	@scripts/build-qemu.sh upstream

check: all upstream
	@scripts/run-tests.py

demo: all
	@scripts/demo.sh

install: all
	@scripts/install.sh install "$(PREFIX)" "$(DESTDIR)"

uninstall:
	@scripts/install.sh uninstall "$(PREFIX)" "$(DESTDIR)"

clean:
	rm -rf build

# Each area of the project (its programs, the guest side, benchmarks, ...)
# adds its own targets in mk/<area>.mk.  A target that "make check" needs
# is appended to CHECK_DEPS there, one that "make demo" needs to DEMO_DEPS.
CHECK_DEPS :=
DEMO_DEPS :=
-include $(wildcard mk/*.mk)

check: $(CHECK_DEPS)
demo: $(DEMO_DEPS)
