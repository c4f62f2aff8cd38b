# SPDX-License-Identifier: GPL-2.0-or-later
#
#   make            install missing Debian packages, fetch QEMU 10.0, build
#                   build/qemu/qemu-system-x86_64 with the project's devices
#   make upstream   QEMU's own ivshmem from the same source -> build/upstream/
#   make check      build both, run every test, print "N passed, N failed"
#   make demo       the main job, end to end (TYPE=doorbell|legacy|
#                   legacy-intx|plain, VMS=2)
#   make clean      remove build/ (the QEMU source cache and ccache stay)

SHELL := /bin/bash
.DEFAULT_GOAL := all

.PHONY: all deps qemu upstream check demo clean

deps:
	@scripts/install-deps.sh

all qemu: deps
	@scripts/build-qemu.sh ours

upstream: deps
	@scripts/build-qemu.sh upstream

check: all upstream
	@scripts/run-tests.py

demo: all
	@scripts/demo.sh

clean:
	rm -rf build

# Each area of the project (guest side, test guest, benchmarks, ...) adds
# its own targets in mk/<area>.mk.  A target that "make check" needs is
# appended to CHECK_DEPS there, one that "make demo" needs to DEMO_DEPS.
CHECK_DEPS :=
DEMO_DEPS :=
-include $(wildcard mk/*.mk)

check: $(CHECK_DEPS)
demo: $(DEMO_DEPS)
