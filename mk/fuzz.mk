# SPDX-License-Identifier: GPL-2.0-or-later
#
# The sanitizer build and the fuzzers (scripts/tests.d/50-sanitizers runs
# them for a bounded time in "make check"):
#
#   make qemu-asan        build/qemu-asan: the project's devices with
#                         clang-14, ASan, UBSan and libFuzzer
#                         (qemu-system-x86_64, qemu-fuzz-x86_64, qtests)
#   make fuzz             the project's fuzz target for FUZZ_TIME seconds
#                         (default 600, 0: until stopped), corpus kept in
#                         build/fuzz/ivsh/, crashes there too
#   make fuzz-generic     QEMU's generic-fuzz on FUZZ_TYPE (plain, doorbell
#                         or legacy; default all three) for FUZZ_TIME each
#   make fuzz-replay      run the seeds and the regression inputs once

FUZZ_TIME ?= 600
FUZZ_TYPE ?= plain doorbell legacy

.PHONY: qemu-asan fuzz fuzz-generic fuzz-replay

qemu-asan: deps
	@flock /tmp/ivsh-build-asan.lock scripts/build-qemu.sh asan

CHECK_DEPS += qemu-asan

fuzz: qemu-asan
	@scripts/fuzz-ivsh.sh ivsh $(FUZZ_TIME)

fuzz-generic: qemu-asan tools
	@for t in $(FUZZ_TYPE); do \
	    scripts/fuzz-ivsh.sh generic $$t $(FUZZ_TIME) || exit 1; \
	done

fuzz-replay: qemu-asan
	@scripts/fuzz-ivsh.sh replay tests/fuzz/ivsh/seeds tests/fuzz/ivsh/regressions
