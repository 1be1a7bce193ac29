/* A tiny multiboot guest: prints one line on COM1, then halts the CPU forever (idle, ~0 CPU). */
    .set MAGIC, 0x1BADB002
    .set FLAGS, 0
    .section .text
    .globl _start
    .align 4
multiboot_header:
    .long MAGIC
    .long FLAGS
    .long -(MAGIC + FLAGS)
_start:
    mov $message, %esi
1:  lodsb
    test %al, %al
    jz 3f
    mov $0x3fd, %dx          /* line status register: wait for an empty transmitter */
2:  inb %dx, %al
    test $0x20, %al
    jz 2b
    mov -1(%esi), %al
    mov $0x3f8, %dx
    outb %al, %dx
    jmp 1b
3:  cli
4:  hlt
    jmp 4b
message:
    .asciz "compute-units test guest up\r\n"
