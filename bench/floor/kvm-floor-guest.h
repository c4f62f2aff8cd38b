/*
 * kvm-floor: the guest image linked into the VMM
 *
 * Copyright (c) 2026 The ivshmem project contributors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef KVM_FLOOR_GUEST_H
#define KVM_FLOOR_GUEST_H

#include <stdint.h>

/* The guest's bytes (kvm-floor-guest.S), loaded at KVM_FLOOR_CODE */
extern const uint8_t kvm_floor_guest[];
extern const uint8_t kvm_floor_guest_end[];

#endif
