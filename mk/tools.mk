# SPDX-License-Identifier: GPL-2.0-or-later
#
# Host tools of the ivshmem protocol module, built standalone with gcc and
# GLib (not through QEMU's meson), straight from the protocol sources the
# device uses:
#
#   make tools            build/tools/: ivsh-server, ivsh-client,
#                         ivsh-stress, the unit tests (test-ivsh-proto,
#                         test-ivsh-server) and the fuzz target's replay
#                         driver (fuzz-ivsh-proto); part of "make check"
#   make bench-server     time for the N-th peer to join (N = 16, 64, 256,
#                         64 vectors), this server vs QEMU's contrib one
#   make fuzz-libfuzzer   the fuzz target with clang + libFuzzer (optional)
#                         -> build/tools/fuzz-ivsh-proto-libfuzzer

IVSH_TOOLS := build/tools
IVSH_TOOLS_OBJ := $(IVSH_TOOLS)/obj
IVSH_TOOLS_CC := gcc
IVSH_TOOLS_GLIB_CFLAGS = $(shell pkg-config --cflags glib-2.0)
IVSH_TOOLS_GLIB_LIBS = $(shell pkg-config --libs glib-2.0)
IVSH_TOOLS_CFLAGS = -std=gnu11 -O2 -g -Wall -Werror -Iinclude -Icontrib/ivsh-lib \
                    $(IVSH_TOOLS_GLIB_CFLAGS)

IVSH_PROTO_SRC := hw/misc/ivsh/ivsh-proto.c contrib/ivsh-lib/ivsh-io.c
IVSH_PSERVER_SRC := contrib/ivsh-lib/server-core.c

ivsh_obj = $(patsubst %.c,$(IVSH_TOOLS_OBJ)/%.o,$(1))

IVSH_SERVER_SRCS := contrib/ivsh-server/main.c contrib/ivsh-server/shm.c \
                    $(IVSH_PSERVER_SRC) $(IVSH_PROTO_SRC)
IVSH_CLIENT_SRCS := contrib/ivsh-client/main.c $(IVSH_PROTO_SRC)
IVSH_STRESS_SRCS := bench/stress/ivsh-stress.c $(IVSH_PROTO_SRC)
IVSH_UNIT_UTIL := tests/unit/ivsh/unit-util.c
IVSH_TPROTO_SRCS := tests/unit/ivsh/test-ivsh-proto.c $(IVSH_UNIT_UTIL) \
                    $(IVSH_PROTO_SRC)
IVSH_TSERVER_SRCS := tests/unit/ivsh/test-ivsh-server.c $(IVSH_UNIT_UTIL) \
                     $(IVSH_PSERVER_SRC) $(IVSH_PROTO_SRC)
IVSH_FUZZ_SRCS := tests/unit/ivsh/fuzz-ivsh-proto.c $(IVSH_UNIT_UTIL) \
                  $(IVSH_PSERVER_SRC) $(IVSH_PROTO_SRC)

IVSH_TOOLS_BINS := $(IVSH_TOOLS)/ivsh-server $(IVSH_TOOLS)/ivsh-client \
                   $(IVSH_TOOLS)/ivsh-stress $(IVSH_TOOLS)/test-ivsh-proto \
                   $(IVSH_TOOLS)/test-ivsh-server \
                   $(IVSH_TOOLS)/fuzz-ivsh-proto

.PHONY: tools bench-server fuzz-libfuzzer

tools: $(IVSH_TOOLS_BINS)

CHECK_DEPS += tools

$(IVSH_TOOLS_OBJ)/%.o: %.c
	@mkdir -p $(@D)
	$(IVSH_TOOLS_CC) $(IVSH_TOOLS_CFLAGS) -MMD -MP -c $< -o $@

$(IVSH_TOOLS)/ivsh-server: $(call ivsh_obj,$(IVSH_SERVER_SRCS))
$(IVSH_TOOLS)/ivsh-client: $(call ivsh_obj,$(IVSH_CLIENT_SRCS))
$(IVSH_TOOLS)/ivsh-stress: $(call ivsh_obj,$(IVSH_STRESS_SRCS))
$(IVSH_TOOLS)/test-ivsh-proto: $(call ivsh_obj,$(IVSH_TPROTO_SRCS))
$(IVSH_TOOLS)/test-ivsh-server: $(call ivsh_obj,$(IVSH_TSERVER_SRCS))
$(IVSH_TOOLS)/fuzz-ivsh-proto: $(call ivsh_obj,$(IVSH_FUZZ_SRCS))

$(IVSH_TOOLS_BINS):
	$(IVSH_TOOLS_CC) -o $@ $^ $(IVSH_TOOLS_GLIB_LIBS)

-include $(wildcard $(IVSH_TOOLS_OBJ)/*/*.d $(IVSH_TOOLS_OBJ)/*/*/*.d \
                    $(IVSH_TOOLS_OBJ)/*/*/*/*.d)

bench-server: tools
	@bench/stress/bench-server.py

# Optional: clang's libFuzzer with ASan and UBSan (Debian's clang package).
# Run: build/tools/fuzz-ivsh-proto-libfuzzer tests/unit/ivsh/fuzz-corpus
$(IVSH_TOOLS)/fuzz-ivsh-proto-libfuzzer: $(IVSH_FUZZ_SRCS) \
        $(wildcard include/hw/misc/ivsh-*.h)
	@mkdir -p $(@D)
	clang -std=gnu11 -g -O1 -Iinclude $(IVSH_TOOLS_GLIB_CFLAGS) \
	    -DIVSH_LIBFUZZER -fsanitize=fuzzer,address,undefined \
	    -o $@ $(IVSH_FUZZ_SRCS) $(IVSH_TOOLS_GLIB_LIBS)

fuzz-libfuzzer: $(IVSH_TOOLS)/fuzz-ivsh-proto-libfuzzer
DEMO_DEPS += tools
