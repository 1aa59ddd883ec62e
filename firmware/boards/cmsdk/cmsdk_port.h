/* What a QEMU board built on Arm's CMSDK UART supplies to the shared port (cmsdk_port.c). */
#ifndef TP_CMSDK_PORT_H
#define TP_CMSDK_PORT_H

#include <stdint.h>

typedef struct {
    uint32_t uart_base;   /* CMSDK APB UART0 */
    uint32_t rx_irqs[2];  /* NVIC lines that may signal UART0 RX (the same line twice if one) */
    uint32_t sysclk_hz;   /* UART clock; the counter ticks at this rate too */
    const char *name;     /* port_board_name() */
} cmsdk_board_t;

extern const cmsdk_board_t cmsdk_board;

/* The board's free-running up-counter at sysclk_hz, started by cmsdk_counter_init(). */
void cmsdk_counter_init(void);
uint32_t cmsdk_ticks(void);

#endif
