/* Context switch for AArch64 (AAPCS64).
 *
 * coru__ctx_swap(void **save_sp, void *to_sp)
 *   Saves x19-x28, fp (x29), lr (x30), d8-d15 and FPCR on the current
 *   stack, stores sp in *save_sp, switches to to_sp, restores the same
 *   frame and returns (to the restored lr). No system call. Frame (176 bytes,
 *   16-aligned), from the saved sp upward:
 *     [0] x19 x20 [16] x21 x22 [32] x23 x24 [48] x25 x26 [64] x27 x28
 *     [80] x29 x30 [96] d8 d9 [112] d10 d11 [128] d12 d13 [144] d14 d15
 *     [160] fpcr [168] pad
 *
 * coru__ctx_start: the first return of a new context lands here with the
 * entry function in x19 and its argument in x20 (set by
 * coru__ctx_raw_make).
 */
    .text
    .globl coru__ctx_swap
    .hidden coru__ctx_swap
    .type coru__ctx_swap,%function
    .p2align 4
coru__ctx_swap:
    sub sp, sp, #176
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mrs x9, fpcr
    str x9, [sp, #160]
    mov x9, sp
    str x9, [x0]
    mov sp, x1
    ldr x9, [sp, #160]
    msr fpcr, x9
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #176
    ret
    .size coru__ctx_swap,.-coru__ctx_swap

    .globl coru__ctx_start
    .hidden coru__ctx_start
    .type coru__ctx_start,%function
    .p2align 4
coru__ctx_start:
    mov x0, x20
    blr x19
    brk #0            /* the entry function never returns */
    .size coru__ctx_start,.-coru__ctx_start

    .section .note.GNU-stack,"",%progbits
