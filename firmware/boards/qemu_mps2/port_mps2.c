/* Port for QEMU mps2-an386 (Cortex-M4) and mps2-an500 (Cortex-M7): CMSDK UART0 and timer0.
   Under `-icount shift=0` the 25 MHz timer advances one tick per 40 executed instructions. */
#include <stdint.h>

#include "../../src/port.h"
#include "../cortex_m/cortex_m.h"

#ifndef TP_QEMU_MACHINE
#define TP_QEMU_MACHINE "mps2-an386"
#endif
#define SYSCLK_HZ 25000000u
#define INSNS_PER_TICK 40u /* 1 instruction = 1 ns of virtual time; 1 tick = 40 ns */

#define UART0 0x40004000u
#define UART_DATA CM_REG(UART0 + 0x00)
#define UART_STATE CM_REG(UART0 + 0x04)
#define UART_CTRL CM_REG(UART0 + 0x08)
#define UART_INTCLEAR CM_REG(UART0 + 0x0C)
#define UART_BAUDDIV CM_REG(UART0 + 0x10)
#define CTRL_TX_RX 3u
#define CTRL_RX_INTEN 8u
#define UART0_RX_IRQ 0u
#define STATE_TX_FULL 1u
#define STATE_RX_FULL 2u

#define TIMER0 0x40000000u
#define TIMER_CTRL CM_REG(TIMER0 + 0x00)
#define TIMER_VALUE CM_REG(TIMER0 + 0x04)
#define TIMER_RELOAD CM_REG(TIMER0 + 0x08)

static uint32_t baud = 115200;
static uint8_t reason;

void port_init(void) {
    reason = cm_take_reset_reason();
    UART_BAUDDIV = SYSCLK_HZ / baud;
    __asm volatile("cpsid i"); /* interrupts only ever wake WFI, no handler runs */
    UART_CTRL = CTRL_TX_RX;
    cm_nvic_enable(UART0_RX_IRQ);
    TIMER_CTRL = 0;
    TIMER_RELOAD = 0xFFFFFFFFu;
    TIMER_VALUE = 0xFFFFFFFFu;
    TIMER_CTRL = 1u;
}

uint8_t port_reset_reason(void) { return reason; }

int port_uart_read(void) {
    return (UART_STATE & STATE_RX_FULL) ? (int)(UART_DATA & 0xFFu) : -1;
}

void port_idle(void) {
    UART_CTRL = CTRL_TX_RX | CTRL_RX_INTEN;
    if (!(UART_STATE & STATE_RX_FULL)) cm_sleep_until_irq(UART0_RX_IRQ, SYSCLK_HZ / 100u);
    UART_CTRL = CTRL_TX_RX;
    UART_INTCLEAR = 2u;
    cm_nvic_clear(UART0_RX_IRQ);
}

void port_uart_write(const uint8_t *buf, size_t n) {
    while (n--) {
        while (UART_STATE & STATE_TX_FULL) {
        }
        UART_DATA = *buf++;
    }
}

void port_uart_flush(void) {
    while (UART_STATE & STATE_TX_FULL) {
    }
}

uint32_t port_uart_baud(void) { return baud; }
uint32_t port_uart_max_baud(void) { return SYSCLK_HZ / 16u; }

int port_uart_set_baud(uint32_t b) {
    if (b == 0 || b > port_uart_max_baud()) return -1;
    baud = b;
    UART_BAUDDIV = SYSCLK_HZ / b;
    return 0;
}

static uint32_t ticks(void) { return ~TIMER_VALUE; }

uint32_t port_counter(void) { return ticks() * INSNS_PER_TICK; }
uint8_t port_counter_kind(void) { return PORT_COUNTER_INSTRUCTIONS; }
uint32_t port_millis(void) {
    static uint32_t last;
    static uint64_t total; /* ticks since boot, immune to the 32-bit wrap */
    uint32_t t = ticks();
    total += (uint32_t)(t - last);
    last = t;
    return (uint32_t)(total / (SYSCLK_HZ / 1000u));
}
const char *port_board_name(void) { return "qemu-" TP_QEMU_MACHINE; }
uint32_t port_cpu_hz(void) { return SYSCLK_HZ; }

void port_reset(void) {
    cm_set_next_reset_reason(PORT_RESET_SOFTWARE);
    cm_system_reset();
}
