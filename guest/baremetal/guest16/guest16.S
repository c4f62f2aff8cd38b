/*
 * ivshmem test guest, 16-bit real-mode variant (ivsh-guest16.bin)
 *
 * For KVM hosts that run only real-mode guest code reliably (the
 * paravirtual kvm-pvm, whose instruction emulator stops at a protected-
 * mode iret): the same shared-memory protocol as the 32-bit guest
 * (guest/baremetal/ivsh-guest.h: slots, mailbox, histogram), the
 * commands RESPOND, PINGPONG, BLAST, NOP and EXIT, in real mode:
 *
 *   - machine "pc" (-M pc -nodefaults): the device's BARs go below
 *     1 MiB: BAR0 (registers) at 0xa0000, BAR1 (MSI-X) at 0xa1000, in
 *     the VGA window, and BAR2 (the shared memory, at most 128 KiB) at
 *     0xc0000, where the i440FX's PAM registers still route to PCI;
 *   - MSI-X vector i is interrupt 0x40 + i through the real-mode IVT;
 *     x2APIC (EOI and timer through MSRs), one-shot APIC timer for the
 *     deadlines;
 *   - no device on bus 0: exit 0x10 at once (the driver's KVM probe).
 *
 * Segments: DS = SS = 0 (IVT, variables, stack below 0x7000), FS = BAR0,
 * ES = this guest's slot in BAR2 (never changed once set: the interrupt
 * handler uses it), GS = a peer's slot or the global header.
 *
 * Plain instructions only (no string instructions): on kvm-pvm every
 * real-mode instruction runs in KVM's emulator, so the interrupt
 * handler and the round-trip loop are kept short.
 *
 * Copyright (c) 2026 The ivsh authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

/* IvgSlot / IvgGlobal offsets (ivsh-guest.h, checked there) */
#define S_MAGIC         0x00
#define S_VERSION       0x04
#define S_STATE         0x08
#define S_ID            0x0c
#define S_FEATURES      0x10
#define S_NVECTORS      0x14
#define S_PCI_BDF       0x1c
#define S_RDTSC         0x24
#define S_BAR2_KIB      0x28
#define S_DONE_SEQ      0x2c
#define S_STATUS        0x30
#define S_PING          0x34
#define S_PONG          0x38
#define S_RESP_PEER     0x40
#define S_RESP_VECTOR   0x44
#define S_RES           0x80
#define S_IRQ_COUNT     0x100
#define S_MB_SEQ        0x400
#define S_MB_CMD        0x404
#define S_MB_ARG        0x408
#define S_HIST          0x1000
#define HIST_BUCKETS    1728
#define G_MAGIC         0x00
#define G_HOST_ID       0x08
#define G_HOST_VECTOR   0x0c
#define G_TSC_KHZ       0x10

#define SLOT_MAGIC      0x54534749
#define GLOBAL_MAGIC    0x4c474749
#define NO_PEER         0xffffffff
#define F_MSIX          0x0001
#define F_X2APIC        0x0004
#define F_BAR2_64       0x0008
#define F_HOST          0x0040
#define F_KVM           0x0100

#define ST_OK           0
#define ST_TIMEOUT      1
#define ST_BADARG       2
#define ST_BADCMD       7

/* ivsh-regs.h */
#define REG_IV_POSITION 8
#define REG_DOORBELL    12

#define BAR0_ADDR       0xa0000
#define BAR1_ADDR       0xa1000
#define BAR2_ADDR       0xc0000
#define BAR2_MAX        0x20000
#define BAR2_SEG        (BAR2_ADDR >> 4)
#define SLOT_SEG(id)    (BAR2_SEG + 0x100 + (id) * 0x400)

#define IRQ_TIMER       0x30
#define IRQ_MSIX        0x40
#define MAX_VECTORS     4

#define MSR_APIC_BASE   0x1b
#define MSR_TPR         0x808
#define MSR_EOI         0x80b
#define MSR_SVR         0x80f
#define MSR_LVT_TIMER   0x832
#define MSR_LVT_LINT0   0x835
#define MSR_LVT_LINT1   0x836
#define MSR_LVT_ERROR   0x837
#define MSR_TMICT       0x838
#define MSR_TDCR        0x83e

#define DEBUGCON        0xe9
#define DEBUG_EXIT      0xf4
#define EXIT_OK         0x10
#define EXIT_FAIL       0x11

/* Variables (DS = 0) */
#define V_ID            0x500   /* u32 IVPosition */
#define V_LASTSEQ       0x504   /* u32 */
#define V_RESP_PEER     0x508   /* u32, NO_PEER: not responding */
#define V_RESP_VEC      0x50c   /* u32 */
#define V_RESP_SEG      0x510   /* u16 */
#define V_TFIRED        0x512   /* u16, set by the timer interrupt */
#define V_MULT          0x514   /* u32: ns per TSC tick, 0.32 fixed */
#define V_BDF           0x518   /* u32 */
#define V_CAP           0x51c   /* u32 MSI-X capability offset */
#define V_NVEC          0x520   /* u32 */
#define V_COUNT         0x524   /* u32 */
#define V_SEQ           0x528   /* u32 */
#define V_T0            0x52c   /* u32 */
#define V_START         0x530   /* u64 */
#define V_SUM           0x538   /* u64 */
#define V_MIN           0x540   /* u32 */
#define V_MAX           0x544   /* u32 */
#define V_WAITED        0x548   /* u32 */
#define V_BAR2_SIZE     0x54c   /* u32 */
#define V_CMD           0x550   /* u32: the command being run */
#define V_ARG0          0x554   /* u32: its first argument */
#define V_RESP_DB       0x558   /* u32: doorbell value to ring back */
#define STACK_TOP       0x7000

/* Addresses of labels as CS offsets: no relocations in the image */
#define CS_OFF(label)   ((label) - image_base)

    .text
    .code16
image_base:

/* --- console ------------------------------------------------------------ */

/* print the NUL-terminated string at %cs:%si */
puts:
    push    %ax
1:  mov     %cs:(%si), %al
    test    %al, %al
    jz      2f
    out     %al, $DEBUGCON
    inc     %si
    jmp     1b
2:  pop     %ax
    ret

/* print %eax in hex, then a newline */
puthex:
    pushal
    mov     $8, %cx
1:  rol     $4, %eax
    mov     %al, %bl
    and     $0xf, %bl
    add     $'0', %bl
    cmp     $'9', %bl
    jbe     2f
    add     $('a' - '9' - 1), %bl
2:  xchg    %al, %bl
    out     %al, $DEBUGCON
    xchg    %al, %bl
    loop    1b
    mov     $'\n', %al
    out     %al, $DEBUGCON
    popal
    ret

/* exit QEMU through isa-debug-exit with code %eax */
exit_qemu:
    mov     $CS_OFF(msg_exit), %si
    call    puts
    call    puthex
    mov     $DEBUG_EXIT, %dx
    out     %eax, %dx
1:  cli
    hlt
    jmp     1b

/* --- PCI configuration space (0xcf8 / 0xcfc) ---------------------------- */

/* Select register %bl of function V_BDF; %dx = 0xcfc, %eax clobbered */
pci_select:
    mov     V_BDF, %eax
    shl     $8, %eax
    mov     %bl, %al
    and     $0xfc, %al
    or      $0x80000000, %eax
    mov     $0xcf8, %dx
    out     %eax, %dx
    mov     $0xcfc, %dx
    ret

/* %eax = dword at register %bl of function V_BDF */
pci_read:
    push    %dx
    call    pci_select
    in      %dx, %eax
    pop     %dx
    ret

/* dword %ecx to register %bl of function V_BDF */
pci_write:
    push    %dx
    push    %eax
    call    pci_select
    mov     %ecx, %eax
    out     %eax, %dx
    pop     %eax
    pop     %dx
    ret

/* --- APIC timer ---------------------------------------------------------- */

/* one-shot: V_TFIRED after %eax ms (1 GHz bus, divide by 128) */
timer_start:
    pushal
    mov     $15625, %ecx
    mull    %ecx
    shrd    $1, %edx, %eax
    shr     $1, %edx
    jz      1f
    mov     $0xffffffff, %eax
1:  movw    $0, V_TFIRED
    xor     %edx, %edx
    mov     $MSR_TMICT, %ecx
    wrmsr
    popal
    ret

timer_stop:
    pushal
    xor     %eax, %eax
    xor     %edx, %edx
    mov     $MSR_TMICT, %ecx
    wrmsr
    popal
    ret

/* --- doorbells ----------------------------------------------------------- */

/* ring peer %eax on vector %ebx */
ring:
    push    %eax
    shl     $16, %eax
    or      %bx, %ax
    mov     %eax, %fs:REG_DOORBELL
    pop     %eax
    ret

/* ring the host peer if the global header names one */
notify_host:
    pushal
    push    %gs
    mov     $BAR2_SEG, %ax
    mov     %ax, %gs
    cmpl    $GLOBAL_MAGIC, %gs:G_MAGIC
    jne     1f
    mov     %gs:G_HOST_ID, %eax
    cmp     $NO_PEER, %eax
    je      1f
    mov     %gs:G_HOST_VECTOR, %ebx
    call    ring
1:  pop     %gs
    popal
    ret

/* %ax = segment of the slot of peer %eax */
slot_seg:
    shl     $10, %ax
    add     $SLOT_SEG(0), %ax
    ret

/* --- interrupts ---------------------------------------------------------- */

/*
 * Two handlers per MSI-X vector, kept short (every instruction is
 * emulated on kvm-pvm): isr_plain_N counts the interrupt; isr_resp_N,
 * installed for the vector RESPOND names, first echoes the peer's ping
 * into our pong and rings the peer back, then counts.
 */
    .macro  isr_plain n
isr_plain_\n:
    push    %eax
    push    %ecx
    push    %edx
    incl    %es:(S_IRQ_COUNT + 4 * \n)
    mov     $MSR_EOI, %ecx
    xor     %eax, %eax
    xor     %edx, %edx
    wrmsr
    pop     %edx
    pop     %ecx
    pop     %eax
    iret
    .endm

    .macro  isr_resp n
isr_resp_\n:
    push    %eax
    push    %gs
    mov     V_RESP_SEG, %gs
    mov     %gs:S_PING, %eax
    mov     %eax, %es:S_PONG            /* pong, then ring back */
    mov     V_RESP_DB, %eax
    mov     %eax, %fs:REG_DOORBELL
    incl    %es:(S_IRQ_COUNT + 4 * \n)
    push    %ecx
    push    %edx
    mov     $MSR_EOI, %ecx
    xor     %eax, %eax
    xor     %edx, %edx
    wrmsr
    pop     %edx
    pop     %ecx
    pop     %gs
    pop     %eax
    iret
    .endm

/*
 * The initiator's handler while it times round trips: interrupts are on
 * only in its "sti; hlt", where EAX, ECX and EDX are dead; the loop
 * looks at the peer's pong (written before it rings back)
 */
    .macro  isr_pp n
isr_pp_\n:
    incl    %es:(S_IRQ_COUNT + 4 * \n)
    mov     $MSR_EOI, %ecx
    xor     %eax, %eax
    xor     %edx, %edx
    wrmsr
    iret
    .endm

    isr_pp 0
    isr_pp 1
    isr_pp 2
    isr_pp 3
    isr_plain 0
    isr_plain 1
    isr_plain 2
    isr_plain 3
    isr_resp 0
    isr_resp 1
    isr_resp 2
    isr_resp 3

isr_plain_table:
    .word   CS_OFF(isr_plain_0), CS_OFF(isr_plain_1)
    .word   CS_OFF(isr_plain_2), CS_OFF(isr_plain_3)
isr_pp_table:
    .word   CS_OFF(isr_pp_0), CS_OFF(isr_pp_1)
    .word   CS_OFF(isr_pp_2), CS_OFF(isr_pp_3)
isr_resp_table:
    .word   CS_OFF(isr_resp_0), CS_OFF(isr_resp_1)
    .word   CS_OFF(isr_resp_2), CS_OFF(isr_resp_3)

/* IVT entries of the MSI-X vectors: all plain (interrupts off) */
ivt_plain:
    push    %ebx
    push    %ax
    xor     %ebx, %ebx
1:  mov     %cs:CS_OFF(isr_plain_table)(,%ebx,2), %ax
    mov     %ax, IRQ_MSIX * 4(,%ebx,4)
    movw    $0xf000, IRQ_MSIX * 4 + 2(,%ebx,4)
    inc     %ebx
    cmp     $MAX_VECTORS, %ebx
    jb      1b
    pop     %ax
    pop     %ebx
    ret

isr_timer:
    pushal
    movw    $1, V_TFIRED
    mov     $MSR_EOI, %ecx
    xor     %eax, %eax
    xor     %edx, %edx
    wrmsr
    popal
    iret

isr_spurious:
    iret

/* --- waiting ------------------------------------------------------------- */

/*
 * Wait until the pong of the slot at %gs equals %esi or V_TFIRED; call
 * and return with interrupts off.  ZF set: got it.
 */
wait_pong:
1:  cmp     %gs:S_PONG, %esi
    je      2f
    cmpw    $0, V_TFIRED
    jne     3f
    sti
    hlt
    cli
    jmp     1b
2:  ret
3:  cmp     %gs:S_PONG, %esi            /* last look; sets ZF */
    ret

/* --- commands ------------------------------------------------------------ */

cmd_respond:
    mov     %es:S_MB_ARG, %eax
    cmp     $NO_PEER, %eax
    jne     1f
    cli
    call    ivt_plain
    movl    $NO_PEER, V_RESP_PEER
    sti
    movl    $NO_PEER, %es:S_RESP_PEER
    xor     %eax, %eax
    ret
1:  cmp     $7, %eax
    jae     bad_arg
    mov     %es:S_MB_ARG + 4, %ebx
    cmp     V_NVEC, %ebx
    jae     bad_arg
    cli
    call    ivt_plain
    push    %eax
    call    slot_seg
    mov     %ax, V_RESP_SEG
    mov     %ax, %gs
    pop     %eax
    mov     %ebx, V_RESP_VEC
    mov     %gs:S_PING, %ecx
    mov     %ecx, %es:S_PONG
    mov     %eax, V_RESP_PEER
    mov     %eax, %ecx                  /* the doorbell value */
    shl     $16, %ecx
    or      %bx, %cx
    mov     %ecx, V_RESP_DB
    mov     %cs:CS_OFF(isr_resp_table)(,%ebx,2), %cx
    mov     %cx, IRQ_MSIX * 4(,%ebx,4)
    sti
    mov     %eax, %es:S_RESP_PEER
    mov     %ebx, %es:S_RESP_VECTOR
    xor     %eax, %eax
    ret
bad_arg:
    mov     $ST_BADARG, %eax
    ret

/* peer (arg0) and vector (arg1) -> %gs = peer's slot, %ebx = vector */
peer_args:
    mov     %es:S_MB_ARG, %eax
    cmp     $7, %eax
    jae     1f
    cmp     V_ID, %eax
    je      1f
    mov     %es:S_MB_ARG + 4, %ebx
    cmp     V_NVEC, %ebx
    jae     1f
    push    %eax
    call    slot_seg
    mov     %ax, %gs
    pop     %eax
    clc
    ret
1:  stc
    ret

cmd_pingpong:
    call    peer_args
    jc      bad_arg
    mov     %eax, %edi                  /* peer */
    /* clear the histogram */
    xor     %ecx, %ecx
1:  addr32 movl $0, %es:S_HIST(,%ecx,4)
    inc     %ecx
    cmp     $HIST_BUCKETS, %ecx
    jb      1b
    mov     %es:S_PING, %esi            /* sequence */
    /* warm-up: one round trip at a time, re-sent every 50 ms */
    mov     %es:S_MB_ARG + 12, %ecx
    test    %ecx, %ecx
    jz      warm_done
warm_next:
    inc     %esi
    mov     %esi, %es:S_PING
    movl    $0, V_WAITED
warm_send:
    mov     %edi, %eax
    call    ring
    mov     $50, %eax
    cli
    call    timer_start
    call    wait_pong
    call    timer_stop
    sti
    je      warm_ok
    addr32 incl %es:S_RES + 8 * 5
    addl    $50, V_WAITED
    mov     V_WAITED, %eax
    cmp     %es:S_MB_ARG + 16, %eax
    jb      warm_send
    mov     $ST_TIMEOUT, %eax
    ret
warm_ok:
    loop    warm_next
warm_done:
    /* the measured round trips */
    mov     %es:S_MB_ARG + 8, %eax
    mov     %eax, V_COUNT
    movl    $0, V_SUM
    movl    $0, V_SUM + 4
    movl    $0xffffffff, V_MIN
    movl    $0, V_MAX
    xor     %ecx, %ecx                  /* round trips done */
    cli
    mov     %es:S_MB_ARG + 16, %eax
    call    timer_start
    rdtsc
    mov     %eax, V_START
    mov     %edx, V_START + 4
    mov     %edi, %ebp                  /* the doorbell value */
    shl     $16, %ebp
    or      %bx, %bp
    mov     %cs:CS_OFF(isr_pp_table)(,%ebx,2), %ax
    mov     %ax, IRQ_MSIX * 4(,%ebx,4)
    mov     %ecx, %edi                  /* round trips done */
pp_next:
    cmp     V_COUNT, %edi
    je      pp_end
    inc     %esi
    rdtsc
    mov     %eax, V_T0
    mov     %esi, %es:S_PING
    mov     %ebp, %fs:REG_DOORBELL
pp_wait:
    cmp     %gs:S_PONG, %esi            /* answered already: no halt */
    je      pp_got
    cmpw    $0, V_TFIRED
    jne     pp_timeout
    sti                                 /* "sti; hlt": no lost wake-up */
    hlt
    cli
    jmp     pp_wait
pp_got:
    rdtsc
    sub     V_T0, %eax
    mull    V_MULT
    mov     %edx, %eax                  /* ns */
    add     %eax, V_SUM
    adcl    $0, V_SUM + 4
    cmp     V_MIN, %eax
    jae     1f
    mov     %eax, V_MIN
1:  cmp     V_MAX, %eax
    jbe     2f
    mov     %eax, V_MAX
2:  cmp     $64, %eax                   /* log-linear bucket */
    jb      3f
    bsr     %eax, %edx
    push    %ecx
    mov     %dl, %cl
    sub     $6, %cl
    shr     %cl, %eax
    and     $63, %eax
    movzbl  %dl, %edx
    sub     $5, %edx
    shl     $6, %edx
    add     %edx, %eax
    pop     %ecx
3:  addr32 incl %es:S_HIST(,%eax,4)
    inc     %edi
    jmp     pp_next
pp_timeout:
    mov     $ST_TIMEOUT, %ebp
    jmp     pp_store
pp_end:
    xor     %ebp, %ebp
pp_store:
    mov     %edi, %ecx
    call    ivt_plain
    rdtsc
    sub     V_START, %eax
    sbb     V_START + 4, %edx
    call    timer_stop
    sti
    mov     %eax, %es:S_RES + 8 * 4
    mov     %edx, %es:S_RES + 8 * 4 + 4
    mov     %ecx, %es:S_RES + 8 * 0
    mov     V_SUM, %eax
    mov     %eax, %es:S_RES + 8 * 1
    mov     V_SUM + 4, %eax
    mov     %eax, %es:S_RES + 8 * 1 + 4
    mov     V_MIN, %eax
    test    %ecx, %ecx
    jnz     1f
    xor     %eax, %eax
1:  mov     %eax, %es:S_RES + 8 * 2
    mov     V_MAX, %eax
    mov     %eax, %es:S_RES + 8 * 3
    mov     %ebp, %eax
    ret

cmd_blast:
    call    peer_args
    jc      bad_arg
    mov     %eax, %edi
    mov     %es:S_MB_ARG + 8, %ecx
    mov     %ecx, %es:S_RES
    rdtsc
    mov     %eax, V_START
    mov     %edx, V_START + 4
    test    %ecx, %ecx
    jz      2f
1:  mov     %edi, %eax
    call    ring
    addr32 loop 1b
2:  rdtsc
    sub     V_START, %eax
    sbb     V_START + 4, %edx
    mov     %eax, %es:S_RES + 8
    mov     %edx, %es:S_RES + 12
    /* one round trip flushes the doorbells through the responder */
    mov     %es:S_PING, %esi
    inc     %esi
    mov     %esi, %es:S_PING
    mov     %edi, %eax
    call    ring
    cli
    mov     %es:S_MB_ARG + 16, %eax
    call    timer_start
    call    wait_pong
    call    timer_stop
    sti
    mov     $ST_OK, %eax
    je      3f
    mov     $ST_TIMEOUT, %eax
3:  ret

/* --- boot ---------------------------------------------------------------- */

entry:
    cli
    xor     %ax, %ax
    mov     %ax, %ds
    mov     %ax, %ss
    mov     $STACK_TOP, %sp
    mov     $CS_OFF(msg_start), %si
    call    puts
    mov     $0xff, %al                  /* legacy PICs masked */
    out     %al, $0x21
    out     %al, $0xa1

    /* IVT: MSI-X vectors, timer, spurious */
    call    ivt_plain
    movw    $CS_OFF(isr_timer), IRQ_TIMER * 4
    movw    $0xf000, IRQ_TIMER * 4 + 2
    movw    $CS_OFF(isr_spurious), 0xff * 4
    movw    $0xf000, 0xff * 4 + 2

    /* x2APIC: enabled (SVR) before its LVT entries are written */
    mov     $MSR_APIC_BASE, %ecx
    rdmsr
    or      $0xc00, %eax
    wrmsr
    xor     %edx, %edx
    mov     $MSR_SVR, %ecx
    mov     $0x1ff, %eax
    wrmsr
    mov     $MSR_TPR, %ecx
    xor     %eax, %eax
    wrmsr
    mov     $MSR_LVT_LINT0, %ecx
    mov     $0x10000, %eax
    wrmsr
    mov     $MSR_LVT_LINT1, %ecx
    mov     $0x400, %eax
    wrmsr
    mov     $MSR_LVT_ERROR, %ecx
    mov     $0x10000, %eax
    wrmsr
    mov     $MSR_TDCR, %ecx
    mov     $0xa, %eax
    wrmsr
    mov     $MSR_LVT_TIMER, %ecx
    mov     $IRQ_TIMER, %eax
    wrmsr
    movl    $NO_PEER, V_RESP_PEER
    movl    $0, V_MULT

    /* find 1af4:1110 on bus 0 */
    xorl    %ecx, %ecx
1:  mov     %ecx, V_BDF
    xor     %bl, %bl
    call    pci_read
    cmp     $0x11101af4, %eax
    je      found
    inc     %ecx
    cmp     $256, %ecx
    jb      1b
    mov     $CS_OFF(msg_nodev), %si             /* the KVM probe: all done */
    call    puts
    mov     $EXIT_OK, %eax
    jmp     exit_qemu

found:
    /* BAR2 size: at most 128 KiB fits below the BIOS */
    mov     $0x18, %bl
    mov     $0xffffffff, %ecx
    call    pci_write
    call    pci_read
    and     $0xfffffff0, %eax
    neg     %eax
    mov     %eax, V_BAR2_SIZE
    cmp     $BAR2_MAX, %eax
    jbe     1f
    mov     $CS_OFF(msg_big), %si
    call    puts
    call    puthex
    mov     $EXIT_FAIL, %eax
    jmp     exit_qemu
1:  mov     $0x10, %bl
    mov     $BAR0_ADDR, %ecx
    call    pci_write
    mov     $0x14, %bl
    mov     $BAR1_ADDR, %ecx
    call    pci_write
    mov     $0x18, %bl
    mov     $BAR2_ADDR, %ecx
    call    pci_write
    mov     $0x1c, %bl
    xor     %ecx, %ecx
    call    pci_write
    mov     $0x04, %bl                  /* memory, bus master, no INTx */
    call    pci_read
    or      $0x406, %eax
    mov     %eax, %ecx
    call    pci_write

    /* MSI-X capability */
    mov     $0x34, %bl
    call    pci_read
2:  and     $0xfc, %al
    jz      no_msix
    mov     %al, %bl
    movzbl  %al, %esi
    call    pci_read
    cmp     $0x11, %al
    je      3f
    mov     %ah, %al
    jmp     2b
3:  mov     %esi, V_CAP
    shr     $16, %eax
    and     $0x7ff, %eax
    inc     %eax
    cmp     $MAX_VECTORS, %eax
    jbe     4f
    mov     $MAX_VECTORS, %eax
4:  mov     %eax, V_NVEC
    lea     4(%si), %bx                 /* table: BIR and offset */
    call    pci_read
    and     $0xfffffff8, %eax
    add     $BAR1_ADDR, %eax
    mov     %eax, %edx
    shr     $4, %eax
    mov     %ax, %gs
    and     $0xf, %dx                   /* entries at %gs:%dx */
    mov     %dx, %di
    xor     %ecx, %ecx
5:  movl    $1, %gs:12(%di)
    movl    $0xfee00000, %gs:(%di)
    movl    $0, %gs:4(%di)
    lea     IRQ_MSIX(%ecx), %eax
    mov     %eax, %gs:8(%di)
    movl    $0, %gs:12(%di)
    add     $16, %di
    inc     %ecx
    cmp     V_NVEC, %ecx
    jb      5b
    mov     V_CAP, %ebx                 /* enable, function unmasked */
    call    pci_read
    or      $0x80000000, %eax
    and     $0xbfffffff, %eax
    mov     %eax, %ecx
    call    pci_write

    /* IVPosition and our slot */
    mov     $(BAR0_ADDR >> 4), %ax
    mov     %ax, %fs
    mov     %fs:REG_IV_POSITION, %eax
    mov     %eax, V_ID
    lea     5(%eax), %edx               /* slot id ends at (id+5)*16 KiB */
    shl     $14, %edx
    cmp     V_BAR2_SIZE, %edx
    jbe     6f
    mov     $CS_OFF(msg_noslot), %si
    call    puts
    call    puthex
    mov     $EXIT_FAIL, %eax
    jmp     exit_qemu
6:  call    slot_seg
    mov     %ax, %es

    /* publish: clear the guest part of the slot, fill it, magic last */
    xor     %bx, %bx
7:  movl    $0, %es:(%bx)
    add     $4, %bx
    cmp     $S_MB_SEQ, %bx
    jb      7b
    movl    $1, %es:S_VERSION
    movl    $1, %es:S_STATE
    mov     V_ID, %eax
    mov     %eax, %es:S_ID
    mov     $(F_MSIX | F_X2APIC | F_BAR2_64), %eax
    push    %eax
    mov     $0x40000000, %eax
    cpuid
    pop     %eax
    cmp     $0x4b4d564b, %ebx           /* "KVMK" */
    jne     8f
    or      $F_KVM, %eax
8:  mov     %eax, %es:S_FEATURES
    mov     V_NVEC, %eax
    mov     %eax, %es:S_NVECTORS
    mov     V_BDF, %eax
    mov     %eax, %es:S_PCI_BDF
    rdtsc
    mov     %eax, %ebx
    rdtsc
    sub     %ebx, %eax
    mov     %eax, %es:S_RDTSC
    mov     V_BAR2_SIZE, %eax
    shr     $10, %eax
    mov     %eax, %es:S_BAR2_KIB
    movl    $NO_PEER, %es:S_RESP_PEER
    mov     %es:S_MB_SEQ, %eax
    mov     %eax, V_LASTSEQ
    mov     %eax, %es:S_DONE_SEQ
    movl    $2, %es:S_STATE
    movl    $SLOT_MAGIC, %es:S_MAGIC
    mov     $CS_OFF(msg_ready), %si
    call    puts
    mov     V_ID, %eax
    call    puthex
    call    notify_host

/* serve the mailbox: woken by the commander's doorbell */
serve:
    cli
    mov     %es:S_MB_SEQ, %eax
    cmp     V_LASTSEQ, %eax
    jne     1f
    sti
    hlt
    jmp     serve
1:  mov     %eax, V_LASTSEQ
    sti
    movl    $3, %es:S_STATE
    xor     %bx, %bx
2:  movl    $0, %es:S_RES(%bx)
    add     $4, %bx
    cmp     $128, %bx
    jb      2b
    /* ns per TSC tick (0.32 fixed point) from the host's TSC kHz */
    mov     $BAR2_SEG, %ax
    mov     %ax, %gs
    mov     %gs:G_TSC_KHZ, %ecx
    cmp     $1000000, %ecx              /* a TSC above 1 GHz */
    jbe     3f
    mov     $1000000, %edx
    xor     %eax, %eax
    div     %ecx
    mov     %eax, V_MULT
    /* the mailbox is the commander's again once done_seq is set */
3:  mov     %es:S_MB_ARG, %eax
    mov     %eax, V_ARG0
    mov     %es:S_MB_CMD, %eax
    mov     %eax, V_CMD
    cmp     $1, %eax
    je      c_nop
    cmp     $2, %eax
    je      c_respond
    cmp     $3, %eax
    je      c_pingpong
    cmp     $4, %eax
    je      c_blast
    cmp     $7, %eax
    je      c_nop
    mov     $ST_BADCMD, %eax
    jmp     done
c_nop:
    xor     %eax, %eax
    jmp     done
c_respond:
    call    cmd_respond
    jmp     done
c_pingpong:
    cmpl    $0, V_MULT
    je      1f
    call    cmd_pingpong
    jmp     done
1:  mov     $ST_BADARG, %eax            /* no TSC frequency */
    jmp     done
c_blast:
    call    cmd_blast
done:
    mov     %eax, %es:S_STATUS
    mov     V_LASTSEQ, %eax
    mov     %eax, %es:S_DONE_SEQ
    movl    $2, %es:S_STATE
    call    notify_host
    cmpl    $7, V_CMD
    jne     serve
    mov     V_ARG0, %eax
    jmp     exit_qemu

no_msix:
    mov     $CS_OFF(msg_nomsix), %si
    call    puts
    mov     $EXIT_FAIL, %eax
    jmp     exit_qemu

msg_start:  .asciz "ivsh-guest16: start\n"
msg_nodev:  .asciz "ivsh-guest16: no 1af4:1110 on bus 0\n"
msg_big:    .asciz "ivsh-guest16: BAR2 larger than 128 KiB: "
msg_nomsix: .asciz "ivsh-guest16: no MSI-X capability\n"
msg_noslot: .asciz "ivsh-guest16: no slot in BAR2 for IVPosition "
msg_ready:  .asciz "ivsh-guest16: ready, id "
msg_exit:   .asciz "ivsh-guest16: exit "

    .org    0xfff0
    ljmp    $0xf000, $CS_OFF(entry)
    .org    0x10000
    .section .note.GNU-stack, "", @progbits
