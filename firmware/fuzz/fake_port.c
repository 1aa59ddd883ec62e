/* Host-side port for fuzzing: UART input comes from the fuzzer, output is checked and dropped. */
#include "fake_port.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

#include "proto.h"

static const uint8_t *rx;
static size_t rx_len, rx_pos;
static uint32_t now_ms, counter, baud = 115200;
static tp_parser_t out_parser;
jmp_buf fake_reset_jmp;

void fake_port_feed(const uint8_t *data, size_t n) {
    rx = data;
    rx_len = n;
    rx_pos = 0;
}

size_t fake_port_left(void) { return rx_len - rx_pos; }

void fake_port_tick(uint32_t ms) { now_ms += ms; }

void port_init(void) {
    baud = 115200;
    tp_parser_init(&out_parser);
}

uint8_t port_reset_reason(void) { return PORT_RESET_POWER_ON; }

int port_uart_read(void) {
    if (rx_pos >= rx_len) return -1;
    return rx[rx_pos++];
}

/* Everything the device sends must be exactly one well-formed frame. With TP_FUZZ_TRACE set,
   each one is listed on stderr (type, seq, payload bytes, first payload bytes) for tests. */
void port_uart_write(const uint8_t *buf, size_t n) {
    static int trace = -1;
    tp_frame_t f;
    int frames = 0;
    if (trace < 0) trace = getenv("TP_FUZZ_TRACE") != NULL;
    if (n < TP_HEADER_BYTES + TP_TRAILER_BYTES || n > TP_FRAME_MAX) abort();
    for (size_t i = 0; i < n; i++) {
        int r = tp_parser_feed(&out_parser, buf[i], &f);
        if (r == TP_FEED_BAD_CRC) abort();
        if (r == TP_FEED_FRAME) {
            if (i != n - 1 || f.len != n - TP_HEADER_BYTES - TP_TRAILER_BYTES) abort();
            frames++;
            if (trace) {
                fprintf(stderr, "tx %02x %u %u", f.type, f.seq, f.len);
                for (unsigned k = 0; k < f.len && k < 8; k++) fprintf(stderr, " %02x", f.payload[k]);
                fputc('\n', stderr);
            }
        }
    }
    if (frames != 1 || out_parser.dropped != 0) abort();
}

void port_uart_flush(void) {}
void port_idle(void) { now_ms += 10; }
uint32_t port_uart_baud(void) { return baud; }
uint32_t port_uart_max_baud(void) { return 2000000; }

int port_uart_set_baud(uint32_t b) {
    if (b == 0 || b > 2000000) return -1;
    baud = b;
    return 0;
}

uint32_t port_counter(void) { return counter += 3; }
uint8_t port_counter_kind(void) { return PORT_COUNTER_CYCLES; }
uint32_t port_millis(void) { return now_ms; }
const char *port_board_name(void) { return "fuzz-host"; }
uint32_t port_cpu_hz(void) { return 1000000; }

void port_reset(void) { longjmp(fake_reset_jmp, 1); }
