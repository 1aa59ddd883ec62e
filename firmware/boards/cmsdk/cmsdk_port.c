/* The port interface for QEMU's Arm MPS2/MPS3 boards: CMSDK UART0 for the link, the board's
   free-running counter for time. Under `-icount` every instruction advances virtual time by a
   fixed step, so one counter tick is TP_INSNS_PER_TICK instructions exactly (the build defines
   it from the board registry). Board files (qemu_mps2/, qemu_mps3_an547/) supply the addresses
   and the counter (cmsdk_port.h). */
#include "cmsdk_port.h"

#include "../../src/port.h"
#include "../cortex_m/cortex_m.h"

#ifndef TP_INSNS_PER_TICK
#error "TP_INSNS_PER_TICK must come from the build (pipeline/boards.py)"
#endif
#define SYSCLK_HZ ((uint32_t)F_CPU)

#define UART_DATA CM_REG(cmsdk_board.uart_base + 0x00)
#define UART_STATE CM_REG(cmsdk_board.uart_base + 0x04)
#define UART_CTRL CM_REG(cmsdk_board.uart_base + 0x08)
#define UART_INTCLEAR CM_REG(cmsdk_board.uart_base + 0x0C)
#define UART_BAUDDIV CM_REG(cmsdk_board.uart_base + 0x10)
#define STATE_TX_FULL 1u
#define STATE_RX_FULL 2u
#define CTRL_TX_RX 3u
#define CTRL_RX_INTEN 8u

static uint32_t baud = 115200;
static uint8_t reason;

void port_init(void) {
    reason = cm_take_reset_reason();
    __asm volatile("cpsid i"); /* interrupts only ever wake WFI, no handler runs */
    UART_BAUDDIV = SYSCLK_HZ / baud;
    UART_CTRL = CTRL_TX_RX;
    cm_nvic_enable(cmsdk_board.rx_irqs[0]);
    cm_nvic_enable(cmsdk_board.rx_irqs[1]);
    cmsdk_counter_init();
}

uint8_t port_reset_reason(void) { return reason; }

int port_uart_read(void) {
    return (UART_STATE & STATE_RX_FULL) ? (int)(UART_DATA & 0xFFu) : -1;
}

void port_idle(void) {
    UART_CTRL = CTRL_TX_RX | CTRL_RX_INTEN;
    if (!(UART_STATE & STATE_RX_FULL))
        cm_sleep_until_irq(cmsdk_board.rx_irqs[0], SYSCLK_HZ / 100u);
    UART_CTRL = CTRL_TX_RX;
    UART_INTCLEAR = 2u;
    cm_nvic_clear(cmsdk_board.rx_irqs[0]);
    cm_nvic_clear(cmsdk_board.rx_irqs[1]);
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

uint32_t port_counter(void) { return cmsdk_ticks() * (uint32_t)TP_INSNS_PER_TICK; }
uint8_t port_counter_kind(void) { return PORT_COUNTER_INSTRUCTIONS; }

uint32_t port_millis(void) { return cm_millis(cmsdk_ticks(), (uint32_t)TP_COUNTER_HZ / 1000u); }

const char *port_board_name(void) { return TP_BOARD_NAME; }
uint32_t port_cpu_hz(void) { return SYSCLK_HZ; }

void port_reset(void) {
    cm_set_next_reset_reason(PORT_RESET_SOFTWARE);
    cm_system_reset();
}
