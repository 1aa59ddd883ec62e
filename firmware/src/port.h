/* Board port: the only things the portable app needs from a board. No board headers leak out. */
#ifndef TP_PORT_H
#define TP_PORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What port_counter() counts. */
enum {
    PORT_COUNTER_CYCLES = 0,       /* core clock cycles (DWT, CCOUNT) */
    PORT_COUNTER_INSTRUCTIONS = 1, /* executed instructions (QEMU -icount shift=0) */
    PORT_COUNTER_MICROS = 2        /* microseconds (no cycle counter on this core) */
};

/* Why the board last reset. */
enum {
    PORT_RESET_UNKNOWN = 0,
    PORT_RESET_POWER_ON = 1,
    PORT_RESET_SOFTWARE = 2,
    PORT_RESET_WATCHDOG = 3,
    PORT_RESET_PIN = 4,
    PORT_RESET_BROWNOUT = 5,
    PORT_RESET_FAULT = 6
};

void port_init(void);                  /* clocks, UART at PORT default baud, counter */
uint8_t port_reset_reason(void);       /* PORT_RESET_* */
int port_uart_read(void);              /* next received byte, or -1 if none (never blocks) */
void port_idle(void);                  /* nothing to do: may sleep until a byte or ~10 ms pass */
void port_uart_write(const uint8_t *buf, size_t n); /* blocks until queued */
void port_uart_flush(void);            /* blocks until the last byte left the wire */
uint32_t port_uart_baud(void);
uint32_t port_uart_max_baud(void);
int port_uart_set_baud(uint32_t baud); /* 0 on success, -1 if the board cannot */
uint32_t port_counter(void);           /* free-running, wraps modulo 2^32 */
uint8_t port_counter_kind(void);       /* PORT_COUNTER_* */
uint32_t port_millis(void);            /* wall (or virtual) milliseconds, wraps */
const char *port_board_name(void);
uint32_t port_cpu_hz(void);
void port_reset(void);                 /* software reset; does not return on a board */
/* Optional (the app has a default of 1): 0 when the UART receiver has no buffer, so bytes that
   arrive while the app sends are lost; the host then sends one window at a time. */
int port_uart_pipelined(void);

#ifdef __cplusplus
}
#endif
#endif
