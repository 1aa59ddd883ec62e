/* Frame parser and encoder for protocol v2. Bounded buffer, no heap, resyncs after garbage. */
#include "proto.h"

#include <string.h>

uint8_t tp_crc8(const uint8_t *p, size_t n) {
    /* CRC-8, poly 0x07, init 0x00 (CRC-8/SMBUS). */
    uint8_t crc = 0;
    while (n--) {
        crc ^= *p++;
        for (int b = 0; b < 8; b++) crc = (uint8_t)((crc & 0x80) ? (crc << 1) ^ 0x07 : crc << 1);
    }
    return crc;
}

uint32_t tp_crc32(uint32_t crc, const uint8_t *p, size_t n) {
    /* CRC-32/ISO-HDLC: reflected poly 0xEDB88320, init and xorout 0xFFFFFFFF. A nibble table:
       64 bytes of flash, two lookups per byte. */
    static const uint32_t nibble[16] = {
        0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
        0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
        0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        crc = (crc >> 4) ^ nibble[crc & 15u];
        crc = (crc >> 4) ^ nibble[crc & 15u];
    }
    return ~crc;
}

void tp_parser_init(tp_parser_t *p) { memset(p, 0, sizeof(*p)); }

static void drop(tp_parser_t *p, uint16_t k) {
    if (k > p->n) k = p->n;
    memmove(p->buf, p->buf + k, (size_t)(p->n - k));
    p->n = (uint16_t)(p->n - k);
    p->crc_n = 0; /* a new frame (or candidate) starts at the head */
    p->crc = 0;
}

/* Skip to the next possible sync byte after position 0, counting what was skipped. */
static void skip(tp_parser_t *p) {
    const uint8_t *q = p->n > 1 ? memchr(p->buf + 1, TP_SYNC0, (size_t)(p->n - 1)) : NULL;
    uint16_t k = q ? (uint16_t)(q - p->buf) : p->n;
    p->dropped += k;
    drop(p, k);
}

static void release(tp_parser_t *p) {
    if (p->pending) {
        drop(p, p->pending);
        p->pending = 0;
    }
}

int tp_parser_feed(tp_parser_t *p, uint8_t byte, tp_frame_t *f) {
    release(p);
    if (p->n >= TP_FRAME_MAX) skip(p); /* cannot happen with valid headers; stay bounded anyway */
    p->buf[p->n++] = byte;
    return tp_parser_poll(p, f);
}

int tp_parser_poll(tp_parser_t *p, tp_frame_t *f) {
    release(p);
    for (;;) {
        if (p->n == 0) return TP_FEED_NONE;
        if (p->buf[0] != TP_SYNC0) { skip(p); continue; }
        if (p->n < 2) return TP_FEED_NONE;
        if (p->buf[1] != TP_SYNC1) { skip(p); continue; }
        if (p->n < TP_HEADER_BYTES) return TP_FEED_NONE;
        uint16_t len = tp_get16(p->buf + 4);
        if (tp_crc8(p->buf + 2, 4) != p->buf[6] || len > TP_MAX_PAYLOAD) {
            p->bad_header++;
            skip(p);
            continue;
        }
        uint16_t body = (uint16_t)(TP_HEADER_BYTES - 2 + len); /* bytes the CRC covers */
        uint16_t have = (uint16_t)(p->n - 2 < body ? p->n - 2 : body);
        if (p->crc_n < have) {
            p->crc = tp_crc32(p->crc, p->buf + 2 + p->crc_n, (size_t)(have - p->crc_n));
            p->crc_n = have;
        }
        uint16_t total = (uint16_t)(TP_HEADER_BYTES + len + TP_TRAILER_BYTES);
        if (p->n < total) return TP_FEED_NONE;
        if (p->crc != tp_get32(p->buf + TP_HEADER_BYTES + len)) {
            p->bad_crc++;
            f->type = p->buf[2];
            f->seq = p->buf[3];
            f->len = 0;
            f->payload = NULL;
            skip(p);
            return TP_FEED_BAD_CRC; /* the caller polls to rescan the bytes after it */
        }
        f->type = p->buf[2];
        f->seq = p->buf[3];
        f->len = len;
        f->payload = p->buf + TP_HEADER_BYTES;
        p->pending = total;
        p->frames++;
        return TP_FEED_FRAME;
    }
}

uint16_t tp_parser_buffered(const tp_parser_t *p) { return (uint16_t)(p->n - p->pending); }

void tp_parser_flush(tp_parser_t *p) {
    release(p);
    skip(p);
}

size_t tp_frame_finish(uint8_t *frame, uint8_t type, uint8_t seq, uint16_t len) {
    frame[0] = TP_SYNC0;
    frame[1] = TP_SYNC1;
    frame[2] = type;
    frame[3] = seq;
    tp_put16(frame + 4, len);
    frame[6] = tp_crc8(frame + 2, 4);
    tp_put32(frame + TP_HEADER_BYTES + len,
             tp_crc32(0, frame + 2, (size_t)(TP_HEADER_BYTES - 2 + len)));
    return (size_t)(TP_HEADER_BYTES + len + TP_TRAILER_BYTES);
}
