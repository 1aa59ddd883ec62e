/* What a QEMU board built on Arm's CMSDK UART supplies to the shared port (cmsdk_port.c).
   Clocks come from the build (the board registry, pipeline/boards.py): F_CPU is the core
   clock, TP_COUNTER_HZ the rate of the counter below. */
#ifndef TP_CMSDK_PORT_H
#define TP_CMSDK_PORT_H

#include <stdint.h>

#ifndef TP_COUNTER_HZ
#define TP_COUNTER_HZ F_CPU
#endif

typedef struct {
    uint32_t uart_base;   /* CMSDK APB UART0 */
    uint32_t rx_irqs[2];  /* NVIC lines that may signal UART0 RX (the same line twice if one) */
} cmsdk_board_t;

extern const cmsdk_board_t cmsdk_board;

/* The board's free-running up-counter at TP_COUNTER_HZ, started by cmsdk_counter_init(). */
void cmsdk_counter_init(void);
uint32_t cmsdk_ticks(void);

#endif
