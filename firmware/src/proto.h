/* tinypipe serial protocol v2: framing, CRCs and constants (see docs/protocol.md). */
#ifndef TP_PROTO_H
#define TP_PROTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TP_PROTO_VERSION 2
#define TP_SYNC0 0xA5
#define TP_SYNC1 0x5A
#define TP_HEADER_BYTES 7   /* sync0 sync1 type seq len_lo len_hi hcrc8 */
#define TP_TRAILER_BYTES 4  /* CRC-32 (LE) over everything after the sync bytes */
#ifndef TP_MAX_PAYLOAD
#define TP_MAX_PAYLOAD 1024
#endif
#define TP_FRAME_MAX (TP_HEADER_BYTES + TP_MAX_PAYLOAD + TP_TRAILER_BYTES)
/* LOAD_BURST frames one BURST_ACK may cover (1..64: the host keeps two windows in flight and
   their seqs must stay within the 128 the device remembers). A port whose UART cannot take
   back-to-back frames while the app works may define it as 1. */
#ifndef TP_MAX_WINDOW
#define TP_MAX_WINDOW 64
#endif
#define TP_MAX_RUNS 32
/* HELLO flags. A port whose receiver has no buffer (one byte, polled) loses what arrives while
   the app sends; its port_uart_pipelined() returns 0, and the host then waits for each
   window's acknowledgement before it sends more, instead of keeping two windows in flight. */
#define TP_FLAG_PIPELINE 1u /* the device may answer while the next window arrives */

/* Frame types. A response carries the request type | TP_RESPONSE. */
enum {
    TP_HELLO = 0x01,
    TP_SET_BAUD = 0x02,
    TP_LOAD_INPUT = 0x03,
    TP_INFER = 0x04,
    TP_READ_OUTPUT = 0x05,
    TP_STATS = 0x06,
    TP_RESET = 0x07,
    TP_TENSOR = 0x08,
    TP_LOAD_BURST = 0x09, /* LOAD_INPUT without an answer; BURST_ACK reports it */
    TP_BURST_ACK = 0x0A,
    TP_BOOT = 0x70,       /* unsolicited, sent once after every boot */
    TP_NAK = 0x7F,
    TP_RESPONSE = 0x80
};

/* NAK reason codes. */
enum {
    TP_NAK_UNKNOWN_TYPE = 1,
    TP_NAK_BAD_LENGTH = 2,
    TP_NAK_BAD_TENSOR = 3,
    TP_NAK_OUT_OF_RANGE = 4,
    TP_NAK_BAD_ARG = 5,
    TP_NAK_INFER_FAILED = 6,
    TP_NAK_BAUD_UNSUPPORTED = 7,
    TP_NAK_NOT_READY = 8,
    TP_NAK_BAD_CRC = 9 /* header intact, payload corrupt: resend at once */
};

typedef struct {
    uint8_t type;
    uint8_t seq;
    uint16_t len;
    const uint8_t *payload;
} tp_frame_t;

typedef struct {
    uint8_t buf[TP_FRAME_MAX];
    uint16_t n;        /* bytes buffered */
    uint16_t pending;  /* size of the frame handed out last, dropped on the next feed */
    uint16_t crc_n;    /* bytes of the frame at the head folded into crc so far */
    uint32_t crc;      /* running CRC-32 of buf[2 .. 2 + crc_n) */
    uint32_t frames;
    uint32_t bad_header;
    uint32_t bad_crc;
    uint32_t dropped;  /* bytes skipped while hunting for a frame */
} tp_parser_t;

uint8_t tp_crc8(const uint8_t *p, size_t n);
/* CRC-32/ISO-HDLC (zlib's crc32): start with crc = 0, chain calls over consecutive pieces. */
uint32_t tp_crc32(uint32_t crc, const uint8_t *p, size_t n);
void tp_parser_init(tp_parser_t *p);
/* Feed one byte. Returns TP_FEED_FRAME and fills *f when a valid frame completes (f->payload
   stays valid until the next call); TP_FEED_BAD_CRC with f->type/seq set when a frame with an
   intact header failed its CRC; else TP_FEED_NONE. Garbage is skipped (counted), never fatal.
   The CRC is folded in as bytes arrive, so finishing a frame costs no more than any byte. */
enum { TP_FEED_NONE = 0, TP_FEED_FRAME = 1, TP_FEED_BAD_CRC = 2 };
int tp_parser_feed(tp_parser_t *p, uint8_t byte, tp_frame_t *f);
/* Rescan what is buffered without new input; call after any non-NONE result until NONE. */
int tp_parser_poll(tp_parser_t *p, tp_frame_t *f);
/* Bytes of an incomplete frame waiting for more input. */
uint16_t tp_parser_buffered(const tp_parser_t *p);
/* Give up on the incomplete frame at the head (the rest of it was lost): skip to the next
   sync byte. Then poll, since a complete frame may sit behind it. */
void tp_parser_flush(tp_parser_t *p);
/* Write header and CRC around a payload already placed at frame + TP_HEADER_BYTES.
   Returns the total frame size. */
size_t tp_frame_finish(uint8_t *frame, uint8_t type, uint8_t seq, uint16_t len);

static inline void tp_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void tp_put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline uint16_t tp_get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t tp_get32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#ifdef __cplusplus
}
#endif
#endif
