/* QEMU mps3-an547 (Cortex-M55): CMSDK UART0 and the FPGAIO free-running up-counter (which QEMU
   clocks apart from the core; the registry gives both rates). The port itself is
   firmware/boards/cmsdk/cmsdk_port.c. */
#include "../cmsdk/cmsdk_port.h"
#include "../cortex_m/cortex_m.h"

#ifndef AN547_PERIPH_BASE
#define AN547_PERIPH_BASE 0x49300000u /* FPGA APB peripherals */
#endif

#define FPGAIO (AN547_PERIPH_BASE + 0x2000u)
#define FPGAIO_COUNTER CM_REG(FPGAIO + 0x18)
#define FPGAIO_PRESCALE CM_REG(FPGAIO + 0x1C)

const cmsdk_board_t cmsdk_board = {
    .uart_base = AN547_PERIPH_BASE + 0x3000u,
    .rx_irqs = {34u, 33u}, /* UART0 interrupt lines 34 and 33: wake on either */
};

void cmsdk_counter_init(void) { FPGAIO_PRESCALE = 0; }

uint32_t cmsdk_ticks(void) { return FPGAIO_COUNTER; }
