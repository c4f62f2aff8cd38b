/*
 * ivshmem test guest: reset vector, protected mode entry, interrupt stubs
 *
 * The image is mapped just below 4 GiB (-bios).  The CPU starts in real
 * mode at 0xfffffff0 with a CS base of 0xffff0000, so everything the
 * 16-bit code touches sits in the image's last 64 KiB.  It loads a flat
 * GDT, sets CR0.PE with caching enabled (CD = NW = 0) and jumps to
 * 32-bit code, which copies .data to RAM, clears .bss and calls
 * ivg_main(boot TSC).
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define SEL_CODE    0x08
#define SEL_DATA    0x10

    .section .text16, "ax"
    .code16
ivg_start16:
    cli
    cld
    lgdtl %cs:ivg_gdt_desc_cs      /* offset from CS base, see guest.ld */
    movl %cr0, %eax
    andl $0x9fffffff, %eax          /* CD = NW = 0 */
    orl $1, %eax                    /* PE */
    movl %eax, %cr0
    ljmpl $SEL_CODE, $ivg_start32

    .balign 8
ivg_gdt:
    .quad 0
    /*
     * Accessed bits pre-set (types 0x9b, 0x93): the GDT sits in the
     * read-only image, where the CPU's write of that bit on the first
     * segment load never completes under hardware virtualization (KVM
     * re-runs the instruction forever).
     */
    .quad 0x00cf9b000000ffff        /* 0x08: code, flat 4 GiB */
    .quad 0x00cf93000000ffff        /* 0x10: data, flat 4 GiB */
    .globl ivg_gdt_desc
ivg_gdt_desc:
    .word ivg_gdt_desc - ivg_gdt - 1
    .long ivg_gdt

    .section .reset, "ax"
    .code16
    .globl ivg_reset
ivg_reset:
    jmp ivg_start16
    .balign 16, 0xf4

    .section .text.start, "ax"
    .code32
ivg_start32:
    movw $SEL_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl $ivg_stack_top, %esp
    rdtsc
    movl %eax, %ebx
    movl %edx, %ebp
    movl $__data_load, %esi
    movl $__data_start, %edi
    movl $__data_end, %ecx
    subl %edi, %ecx
    rep movsb
    xorl %eax, %eax
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    rep stosb
    pushl %ebp
    pushl %ebx
    call ivg_main
1:
    cli
    hlt
    jmp 1b

/*
 * 256 interrupt stubs, 16 bytes apart (IVG_STUB_SIZE): each pushes a
 * dummy error code where the CPU pushes none, then its vector number.
 */
    .macro ivg_stub vec
    .balign 16
    .if (\vec == 8) || (\vec == 17) || (\vec == 21) || (\vec == 29)
    .elseif ((\vec >= 10) && (\vec <= 14)) || (\vec == 30)
    .else
    pushl $0
    .endif
    pushl $\vec
    jmp ivg_trap_common
    .endm

    .text
    .balign 16
    .globl ivg_stubs
ivg_stubs:
    .altmacro
    .set vec, 0
    .rept 256
    ivg_stub %vec
    .set vec, vec + 1
    .endr
    .noaltmacro

ivg_trap_common:
    pushal
    cld
    pushl %esp                      /* IvgFrame * */
    call ivg_trap
    addl $4, %esp
    popal
    addl $8, %esp                   /* vector, error code */
    iretl
    .section .note.GNU-stack, "", @progbits
