/* Context switch for x86-64 System V.
 *
 * coru__ctx_swap(void **save_sp, void *to_sp)
 *   Pushes the callee-saved registers (rbp, rbx, r12-r15) and the FP
 *   control words (MXCSR, x87 CW), stores rsp in *save_sp, loads to_sp,
 *   pops the same frame from it and returns into the other context. No
 *   system call. Saved frame, from the saved sp upward:
 *     [0] mxcsr (4 bytes) + x87 cw (2 bytes) + pad
 *     [8] r15  [16] r14  [24] r13  [32] r12  [40] rbx  [48] rbp  [56] ret
 *
 * coru__ctx_start: where a new context first "returns" to. The frame built
 * by coru__ctx_raw_make puts the entry function in r12 and its argument in
 * r13; the stack pointer is 16-byte aligned here, as a call requires.
 */
    .text
    .globl coru__ctx_swap
    .hidden coru__ctx_swap
    .type coru__ctx_swap,@function
    .p2align 4
coru__ctx_swap:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size coru__ctx_swap,.-coru__ctx_swap

    .globl coru__ctx_start
    .hidden coru__ctx_start
    .type coru__ctx_start,@function
    .p2align 4
coru__ctx_start:
    .cfi_startproc
    .cfi_undefined rip
    movq %r13, %rdi
    callq *%r12
    ud2               /* the entry function never returns */
    .cfi_endproc
    .size coru__ctx_start,.-coru__ctx_start

    .section .note.GNU-stack,"",@progbits
