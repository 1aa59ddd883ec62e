/* Port for QEMU mps3-an547 (Cortex-M55): CMSDK UART0 and the FPGAIO cycle counter.
   Under `-icount shift=0` the 25 MHz FPGAIO counter advances once per 40 instructions. */
#include <stdint.h>

#include "../../src/port.h"
#include "../cortex_m/cortex_m.h"

#ifndef TP_QEMU_MACHINE
#define TP_QEMU_MACHINE "mps3-an547"
#endif
#ifndef AN547_PERIPH_BASE
#define AN547_PERIPH_BASE 0x49300000u /* FPGA APB peripherals */
#endif
#define SYSCLK_HZ 25000000u
#define INSNS_PER_TICK 40u

#define UART0 (AN547_PERIPH_BASE + 0x3000u)
#define UART_DATA CM_REG(UART0 + 0x00)
#define UART_STATE CM_REG(UART0 + 0x04)
#define UART_CTRL CM_REG(UART0 + 0x08)
#define UART_INTCLEAR CM_REG(UART0 + 0x0C)
#define UART_BAUDDIV CM_REG(UART0 + 0x10)
#define STATE_TX_FULL 1u
#define STATE_RX_FULL 2u
#define CTRL_TX_RX 3u
#define CTRL_RX_INTEN 8u
#define UART0_RX_IRQ 34u

#define FPGAIO (AN547_PERIPH_BASE + 0x2000u)
#define FPGAIO_COUNTER CM_REG(FPGAIO + 0x18)
#define FPGAIO_PRESCALE CM_REG(FPGAIO + 0x1C)

static uint32_t baud = 115200;
static uint8_t reason;

void port_init(void) {
    reason = cm_take_reset_reason();
    __asm volatile("cpsid i");
    UART_BAUDDIV = SYSCLK_HZ / baud;
    UART_CTRL = CTRL_TX_RX;
    cm_nvic_enable(UART0_RX_IRQ - 1u);
    cm_nvic_enable(UART0_RX_IRQ);
    FPGAIO_PRESCALE = 0;
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
    cm_nvic_clear(UART0_RX_IRQ - 1u);
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

uint32_t port_counter(void) { return FPGAIO_COUNTER * INSNS_PER_TICK; }
uint8_t port_counter_kind(void) { return PORT_COUNTER_INSTRUCTIONS; }

uint32_t port_millis(void) {
    static uint32_t last;
    static uint64_t total;
    uint32_t t = FPGAIO_COUNTER;
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
