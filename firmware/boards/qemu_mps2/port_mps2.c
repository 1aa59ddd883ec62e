/* QEMU mps2-an386 (Cortex-M4) and mps2-an500 (Cortex-M7): CMSDK UART0 and timer0, counting
   down from 0xFFFFFFFF at the system clock. The port itself is firmware/boards/cmsdk/cmsdk_port.c. */
#include "../cmsdk/cmsdk_port.h"
#include "../cortex_m/cortex_m.h"

#define TIMER0 0x40000000u
#define TIMER_CTRL CM_REG(TIMER0 + 0x00)
#define TIMER_VALUE CM_REG(TIMER0 + 0x04)
#define TIMER_RELOAD CM_REG(TIMER0 + 0x08)

const cmsdk_board_t cmsdk_board = {
    .uart_base = 0x40004000u,
    .rx_irqs = {0u, 0u}, /* UART0 RX */
};

void cmsdk_counter_init(void) {
    TIMER_CTRL = 0;
    TIMER_RELOAD = 0xFFFFFFFFu;
    TIMER_VALUE = 0xFFFFFFFFu;
    TIMER_CTRL = 1u;
}

uint32_t cmsdk_ticks(void) { return ~TIMER_VALUE; }
