# SPDX-License-Identifier: GPL-2.0-or-later
#
# The project's own programs, everything not compiled inside QEMU: built
# by meson and ninja from the top-level meson.build in build/meson, then
# linked to the stable paths under build/ that scripts and docs use.
# Each target builds only its own programs:
#
#   make tools           build/tools/: ivsh-server, ivsh-client,
#                        ivsh-stress, the unit tests (test-ivsh-proto,
#                        test-ivsh-server) and the fuzz target's replay
#                        driver (fuzz-ivsh-proto)
#   make testguest       build/testguest/ivsh-guest.bin (the 64 KiB -bios
#                        test guest) and ivsh-pingpong (its host driver)
#   make bench-floor     build/bench/floor/: kvm-floor (floor f1),
#                        eventfd-pingpong (floor f2), kvm-floor-guest.bin
#   make guest-tools     the Linux guest's ivshmem-guest tool and library
#                        (make guest-image puts them into the initramfs)
#   make programs        all of the above, the man page and systemd units
#   make tools-asan      the host programs with clang-14, ASan and UBSan,
#                        in build/meson-asan; "meson test -C
#                        build/meson-asan" runs the unit tests there
#   make fuzz-libfuzzer  build/tools/fuzz-ivsh-proto-libfuzzer (clang's
#                        libFuzzer); run it on tests/unit/ivsh/fuzz-corpus
#   make bench-server    join time of the N-th peer (N = 16, 64, 256),
#                        this server vs QEMU's contrib one
#
# "meson test -C build/meson" runs the suites unit and fuzz.  A new source
# file goes into its area's meson.build only; a new program that scripts
# call gets a LINK=OUTPUT pair below.

MESON_BUILD := build/meson
MESON_ASAN := build/meson-asan

MESON_TOOLS := \
    tools/ivsh-server=contrib/ivsh-server/ivsh-server \
    tools/ivsh-client=contrib/ivsh-client/ivsh-client \
    tools/ivsh-stress=bench/stress/ivsh-stress \
    tools/test-ivsh-proto=tests/unit/ivsh/test-ivsh-proto \
    tools/test-ivsh-server=tests/unit/ivsh/test-ivsh-server \
    tools/fuzz-ivsh-proto=tests/unit/ivsh/fuzz-ivsh-proto
MESON_TESTGUEST := \
    testguest/ivsh-guest.bin=guest/baremetal/ivsh-guest.bin \
    testguest/ivsh-pingpong=guest/baremetal/ivsh-pingpong \
    testguest/ivsh-guest16.bin=guest/baremetal/ivsh-guest16.bin
MESON_BENCH_FLOOR := \
    bench/floor/kvm-floor=bench/floor/kvm-floor \
    bench/floor/eventfd-pingpong=bench/floor/eventfd-pingpong \
    bench/floor/kvm-floor-guest.bin=bench/floor/kvm-floor-guest.bin
MESON_GUEST_TOOLS := \
    guest/bin/ivshmem-guest=guest/linux/ivshmem-guest \
    guest/lib/libivshmem-guest.a=guest/linux/libivshmem-guest.a

.PHONY: tools testguest bench-floor guest-tools programs tools-asan \
        fuzz-libfuzzer bench-server

tools: deps
	@scripts/meson-build.sh $(MESON_BUILD) $(MESON_TOOLS)

testguest: deps
	@scripts/meson-build.sh $(MESON_BUILD) $(MESON_TESTGUEST)

bench-floor: deps
	@scripts/meson-build.sh $(MESON_BUILD) $(MESON_BENCH_FLOOR)

guest-tools: deps
	@scripts/meson-build.sh $(MESON_BUILD) $(MESON_GUEST_TOOLS)

programs: deps
	@scripts/meson-build.sh $(MESON_BUILD)
	@scripts/meson-build.sh $(MESON_BUILD) $(MESON_TOOLS) \
	    $(MESON_TESTGUEST) $(MESON_BENCH_FLOOR) $(MESON_GUEST_TOOLS)

tools-asan: deps
	@scripts/meson-build.sh $(MESON_ASAN)

fuzz-libfuzzer: deps
	@scripts/meson-build.sh $(MESON_ASAN) \
	    tools/fuzz-ivsh-proto-libfuzzer=tests/unit/ivsh/fuzz-ivsh-proto-libfuzzer

bench-server: tools
	@bench/stress/bench-server.py

CHECK_DEPS += tools testguest bench-floor
DEMO_DEPS += tools
