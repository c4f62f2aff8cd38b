# SPDX-License-Identifier: GPL-2.0-or-later
#
# The random-operations soak and the mixed-peer matrix (issue 15); short
# runs are part of "make check" (scripts/tests.d/55-mixed-peers, 56-soak):
#
#   make soak              the soak for SOAK_TIME seconds (default 1800),
#                          seed SOAK_SEED (default: random, printed)
#   make soak SOAK_SEED=S SOAK_STEPS=N
#                          replay a failed run exactly (its first N steps)
#   make mixed-peers       the pairwise matrix; MATRIX_FULL=1 runs the
#                          full product of its factors (hours)

SOAK_TIME ?= 1800
SOAK_SEED ?=
SOAK_STEPS ?=
MATRIX_FULL ?=

.PHONY: soak mixed-peers

soak: all upstream tools
	@IVSH_SOAK_TIME=$(SOAK_TIME) IVSH_SOAK_SEED=$(SOAK_SEED) \
	    IVSH_SOAK_STEPS=$(SOAK_STEPS) scripts/tests.d/56-soak

mixed-peers: all upstream tools
	@IVSH_MATRIX_FULL=$(MATRIX_FULL) scripts/tests.d/55-mixed-peers
