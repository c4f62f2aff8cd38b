# SPDX-License-Identifier: GPL-2.0-or-later
#
# The doorbell benchmark (bench/); never part of "make check":
#
#   make bench          full run: configurations a b c c' d and the
#                       floors, interleaved 5 times, then the join cost
#                       at N = 1, 16, 64, 256; KVM where it works, TCG
#                       always (about 15 minutes under TCG on 2 CPUs)
#   make bench QUICK=1  the same in under 2 minutes (also: make bench-quick)
#   make bench BENCH_ARGS="--reps 3 --count 20000"
#                       more options: bench/run-bench.py --help
#
# Output: bench/results/bench-<date>-<mode>.json and two PNGs, the
# markdown report on stdout and in docs/benchmarks.md (a quick run does
# not replace the report of a full run).  Targets print PASS/MISS/n/a and
# never fail the build.  The floors alone: make bench-floor (mk/meson.mk).

BENCH_PYTHON ?= /usr/bin/python3
BENCH_ARGS ?=
QUICK ?= 0

.PHONY: bench bench-quick bench-deps

# The project's server when it builds; run-bench.py falls back to QEMU's
# contrib ivshmem-server (and says so) when it does not.  The plots need
# Debian's python3-matplotlib (install-deps.sh --bench).
bench-deps: all upstream testguest bench-floor
	@$(MAKE) --no-print-directory tools || \
	    echo "bench: 'make tools' failed: QEMU's contrib ivshmem-server" \
	         "will feed every configuration" >&2
	@scripts/install-deps.sh --bench || \
	    echo "bench: python3-matplotlib unavailable: no plots" >&2

bench: bench-deps
	@$(BENCH_PYTHON) bench/run-bench.py \
	    $(if $(filter-out 0,$(QUICK)),--quick) $(BENCH_ARGS)

bench-quick: bench-deps
	@$(BENCH_PYTHON) bench/run-bench.py --quick $(BENCH_ARGS)
