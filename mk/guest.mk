# SPDX-License-Identifier: GPL-2.0-or-later
#
# The Linux guest side (guest/):
#
#   make guest-image   the Linux test guest: build/guest/vmlinuz and
#                      build/guest/initrd.img with the ivshmem-guest tool
#                      (make guest-tools), its shared libraries and the
#                      ivshmem-guest module (guest/linux/image/build.sh;
#                      installs the Debian packages it needs; cached:
#                      rebuilt only when a package version or an input
#                      changes)
#   make guest-demo    python3 guest/linux/demo.py with its defaults: two
#                      guests ringing each other's doorbells
#
# "make check" runs scripts/tests.d/60-guest-e2e, which boots the image.

.PHONY: guest-image guest-demo

guest-image: guest-tools
	@guest/linux/image/build.sh

guest-demo: all guest-image
	@python3 guest/linux/demo.py

CHECK_DEPS += guest-image
DEMO_DEPS += guest-image
