/*
 * kvm-floor: the guest, 16-bit real mode, x2APIC, doorbell ping-pong
 *
 * The same bytes play both roles; the mailbox (kvm-floor.h) says which.
 *
 * Responder: idles in HLT with interrupts on.  Its ISR rings the
 * doorbell (one 4-byte MMIO write), counts, EOIs and returns to HLT.
 *
 * Initiator: for each round trip reads the TSC, rings the doorbell,
 * halts until its ISR has set the flag, reads the TSC again and stores
 * the difference in the sample buffer.  Interrupts are enabled only in
 * the "sti; hlt" window of the wait loop, so the ISR can interrupt
 * nothing but that loop, where EAX, ECX and EDX are dead: neither ISR
 * saves registers, to keep the path as short as the hardware allows.
 *
 * Instruction choice: on the project's machine (nested PVM) a real-mode
 * guest runs in KVM's instruction emulator, so only plain instructions
 * are used (no string ops, no IRET outside real mode).
 *
 * Built twice: linked into kvm-floor (symbols kvm_floor_guest and
 * kvm_floor_guest_end), and with -DKVM_FLOOR_BIOS as a 64 KiB -bios image
 * for a software-emulation self-test, which rings itself with an x2APIC
 * self-IPI instead of a doorbell and reports its sample count through
 * isa-debug-exit on KVM_FLOOR_PORT_DONE.
 *
 * Copyright (c) 2026 The ivshmem project contributors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "kvm-floor.h"

#define IVT_ENTRY(v)    ((v) * 4)

#ifdef KVM_FLOOR_BIOS

#ifndef KVM_FLOOR_BIOS_COUNT
#define KVM_FLOOR_BIOS_COUNT    (KVM_FLOOR_BUF_SAMPLES + 100)
#endif
#ifndef KVM_FLOOR_BIOS_WARMUP
#define KVM_FLOOR_BIOS_WARMUP   10
#endif

    .text
    .code16
guest_base:
bios_entry:
    cli
    xor     %ax, %ax
    mov     %ax, %ds
    movw    $1, KVM_FLOOR_MB_MODE
    movw    $1, KVM_FLOOR_MB_SELFTEST
    movw    $(KVM_FLOOR_DOORBELL >> 4), KVM_FLOOR_MB_DB_SEG
    movl    $0, KVM_FLOOR_MB_DB_VAL
    movl    $KVM_FLOOR_BIOS_COUNT, KVM_FLOOR_MB_COUNT
    movl    $KVM_FLOOR_BIOS_WARMUP, KVM_FLOOR_MB_WARMUP
    movl    $0, KVM_FLOOR_MB_ISR_COUNT
    jmp     guest_start

#else

    .section .rodata.kvm_floor_guest, "a"
    .code16
    .globl  kvm_floor_guest
    .globl  kvm_floor_guest_end
kvm_floor_guest:
guest_base:

#endif

guest_start:
    cli
    xor     %ax, %ax
    mov     %ax, %ds
    mov     %ax, %ss
    mov     $KVM_FLOOR_STACK, %sp
    mov     $(KVM_FLOOR_BUF >> 4), %ax
    mov     %ax, %es
    mov     KVM_FLOOR_MB_DB_SEG, %ax
    mov     %ax, %fs
    movw    $0, KVM_FLOOR_MB_FLAG

    /* The ISR for our role */
    movw    $(isr_responder - guest_base), IVT_ENTRY(KVM_FLOOR_VECTOR)
    cmpw    $0, KVM_FLOOR_MB_MODE
    je      1f
    movw    $(isr_initiator - guest_base), IVT_ENTRY(KVM_FLOOR_VECTOR)
1:  mov     %cs, IVT_ENTRY(KVM_FLOOR_VECTOR) + 2

    /* x2APIC mode (EN | EXTD), then software-enable the APIC */
    mov     $KVM_FLOOR_MSR_APIC_BASE, %ecx
    rdmsr
    or      $0xc00, %eax
    wrmsr
    mov     $KVM_FLOOR_MSR_X2APIC_SVR, %ecx
    mov     $0x1ff, %eax
    xor     %edx, %edx
    wrmsr

    /* Cost of reading the TSC: shows whether rdtsc is trapped */
    rdtsc
    mov     %eax, %ebx
    rdtsc
    sub     %ebx, %eax
    mov     %eax, KVM_FLOOR_MB_RDTSC

    out     %al, $KVM_FLOOR_PORT_READY
    cmpw    $0, KVM_FLOOR_MB_MODE
    jne     initiator

responder:
    sti
1:  hlt
    jmp     1b

initiator:
    xor     %esi, %esi                  /* round trips done */
    xor     %di, %di                    /* byte offset in the buffer */
next:
    cmp     KVM_FLOOR_MB_WARMUP, %esi
    jne     1f
    out     %al, $KVM_FLOOR_PORT_MARK
1:  cmp     KVM_FLOOR_MB_COUNT, %esi
    je      done
    movw    $0, KVM_FLOOR_MB_FLAG
    rdtsc
    mov     %eax, %ebx                  /* t0, low 32 bits */
    cmpw    $0, KVM_FLOOR_MB_SELFTEST
    jne     self_ipi
    mov     KVM_FLOOR_MB_DB_VAL, %eax
    mov     %eax, %fs:0                 /* ring the doorbell */
wait:
    cli
    cmpw    $0, KVM_FLOOR_MB_FLAG
    jne     got
    sti                                 /* one-instruction shadow: */
    hlt                                 /* no wake-up is lost */
    jmp     wait
got:
    rdtsc
    sub     %ebx, %eax
    mov     %eax, %es:(%di)
    inc     %esi
    add     $4, %di
    jnz     next
    mov     $KVM_FLOOR_BUF_SAMPLES, %ax
    out     %ax, $KVM_FLOOR_PORT_FLUSH
    jmp     next
done:
    mov     %di, %ax
    shr     $2, %ax
    out     %ax, $KVM_FLOOR_PORT_DONE
1:  hlt
    jmp     1b

self_ipi:
    mov     $KVM_FLOOR_MSR_X2APIC_SELF, %ecx
    mov     $KVM_FLOOR_VECTOR, %eax
    xor     %edx, %edx
    wrmsr
    jmp     wait

isr_responder:
    mov     KVM_FLOOR_MB_DB_VAL, %eax
    mov     %eax, %fs:0                 /* ring back first */
    incl    KVM_FLOOR_MB_ISR_COUNT
    mov     $KVM_FLOOR_MSR_X2APIC_EOI, %ecx
    xor     %eax, %eax
    xor     %edx, %edx
    wrmsr
    iret

isr_initiator:
    movw    $1, KVM_FLOOR_MB_FLAG
    incl    KVM_FLOOR_MB_ISR_COUNT
    mov     $KVM_FLOOR_MSR_X2APIC_EOI, %ecx
    xor     %eax, %eax
    xor     %edx, %edx
    wrmsr
    iret

#ifdef KVM_FLOOR_BIOS
    .org    0xfff0
    ljmp    $0xf000, $(bios_entry - guest_base)
    .org    0x10000
#else
kvm_floor_guest_end:
    .code64
    .section .note.GNU-stack, "", @progbits
#endif
