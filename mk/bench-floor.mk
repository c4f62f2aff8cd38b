# SPDX-License-Identifier: GPL-2.0-or-later
#
# Hardware floors for the benchmark (bench/floor/, project issue 8):
#
#   make bench-floor   build/bench/floor/kvm-floor          (floor f1)
#                      build/bench/floor/eventfd-pingpong   (floor f2)
#                      build/bench/floor/kvm-floor-guest.bin, the guest as
#                      a 64 KiB -bios image for a software-emulation
#                      self-test of its code
#
# Plain gcc, no QEMU tree needed; rebuilt only when a source changes.

BENCH_FLOOR_CC ?= gcc
BENCH_FLOOR_OBJCOPY ?= objcopy
BENCH_FLOOR_CFLAGS := -O2 -g -Wall -Werror -pthread
BENCH_FLOOR_SRC := bench/floor
BENCH_FLOOR_OUT := build/bench/floor
BENCH_FLOOR_HDRS := $(wildcard $(BENCH_FLOOR_SRC)/*.h)
BENCH_FLOOR_COMMON := $(BENCH_FLOOR_SRC)/floor-common.c

.PHONY: bench-floor
bench-floor: $(BENCH_FLOOR_OUT)/kvm-floor $(BENCH_FLOOR_OUT)/eventfd-pingpong \
             $(BENCH_FLOOR_OUT)/kvm-floor-guest.bin

$(BENCH_FLOOR_OUT)/kvm-floor: $(BENCH_FLOOR_SRC)/kvm-floor.c \
                             $(BENCH_FLOOR_SRC)/kvm-floor-guest.S \
                             $(BENCH_FLOOR_COMMON) $(BENCH_FLOOR_HDRS)
	@mkdir -p $(@D)
	$(BENCH_FLOOR_CC) $(BENCH_FLOOR_CFLAGS) -o $@ $(filter %.c %.S,$^)

$(BENCH_FLOOR_OUT)/eventfd-pingpong: $(BENCH_FLOOR_SRC)/eventfd-pingpong.c \
                                    $(BENCH_FLOOR_COMMON) $(BENCH_FLOOR_HDRS)
	@mkdir -p $(@D)
	$(BENCH_FLOOR_CC) $(BENCH_FLOOR_CFLAGS) -o $@ $(filter %.c %.S,$^)

$(BENCH_FLOOR_OUT)/kvm-floor-guest.bin: $(BENCH_FLOOR_SRC)/kvm-floor-guest.S \
                                       $(BENCH_FLOOR_HDRS)
	@mkdir -p $(@D)
	$(BENCH_FLOOR_CC) -c -DKVM_FLOOR_BIOS -o $(@:.bin=-bios.o) $<
	$(BENCH_FLOOR_OBJCOPY) -O binary -j .text $(@:.bin=-bios.o) $@

CHECK_DEPS += bench-floor
