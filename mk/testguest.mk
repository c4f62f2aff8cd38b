# SPDX-License-Identifier: GPL-2.0-or-later
#
# The bare-metal ivshmem test guest and its host-side driver
# (guest/baremetal/), built with the host gcc and binutils:
#
#   make testguest    build/testguest/ivsh-guest.bin   (-bios image, 64 KiB)
#                     build/testguest/ivsh-pingpong    (host driver)
#
# scripts/tests.d/40-testguest runs them from "make check".

TG_SRC := guest/baremetal
TG_OUT := build/testguest
TG_CC ?= gcc
TG_OBJCOPY ?= objcopy

TG_GUEST_OBJS := $(addprefix $(TG_OUT)/guest/,start.o cpu.o pci.o main.o)
TG_GUEST_HDRS := $(TG_SRC)/ivsh-guest.h $(TG_SRC)/guest/ivg.h \
                 include/hw/misc/ivsh-regs.h
TG_GUEST_CFLAGS := -m32 -march=i686 -O2 -ffreestanding -fno-pic -fno-pie \
                   -fno-stack-protector -fno-asynchronous-unwind-tables \
                   -mgeneral-regs-only -mpreferred-stack-boundary=2 \
                   -nostdlib -Wall -Werror -I$(TG_SRC) -Iinclude
TG_HOST_SRCS := $(TG_SRC)/host/ivsh-pingpong.c $(TG_SRC)/host/ivsh-host.c
TG_HOST_HDRS := $(TG_SRC)/host/ivsh-host.h $(TG_SRC)/ivsh-guest.h \
                include/hw/misc/ivsh-regs.h
TG_HOST_CFLAGS := -O2 -g -Wall -Werror -I$(TG_SRC) -Iinclude

.PHONY: testguest
testguest: $(TG_OUT)/ivsh-guest.bin $(TG_OUT)/ivsh-pingpong

$(TG_OUT)/guest/%.o: $(TG_SRC)/guest/%.c $(TG_GUEST_HDRS) mk/testguest.mk
	@mkdir -p $(@D)
	$(TG_CC) $(TG_GUEST_CFLAGS) -c -o $@ $<

$(TG_OUT)/guest/%.o: $(TG_SRC)/guest/%.S mk/testguest.mk
	@mkdir -p $(@D)
	$(TG_CC) $(TG_GUEST_CFLAGS) -c -o $@ $<

$(TG_OUT)/ivsh-guest.elf: $(TG_GUEST_OBJS) $(TG_SRC)/guest/guest.ld
	$(TG_CC) $(TG_GUEST_CFLAGS) -static -no-pie -Wl,--build-id=none \
	    -T $(TG_SRC)/guest/guest.ld -o $@ $(TG_GUEST_OBJS)

# objcopy writes from the lowest to the highest load address: exactly
# the 64 KiB from 0xffff0000 to the reset vector's last byte.
$(TG_OUT)/ivsh-guest.bin: $(TG_OUT)/ivsh-guest.elf
	$(TG_OBJCOPY) -O binary $< $@.tmp
	@test "$$(stat -c %s $@.tmp)" = 65536 || \
	    { echo "$@: not 64 KiB" >&2; rm -f $@.tmp; exit 1; }
	@mv $@.tmp $@

$(TG_OUT)/ivsh-pingpong: $(TG_HOST_SRCS) $(TG_HOST_HDRS) mk/testguest.mk
	@mkdir -p $(@D)
	$(TG_CC) $(TG_HOST_CFLAGS) -o $@ $(TG_HOST_SRCS)

CHECK_DEPS += testguest
