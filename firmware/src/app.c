/* The HIL firmware: answers protocol v2 frames from the host; see docs/protocol.md. */
#include "app.h"

#include <string.h>

#include "infer.h"
#include "port.h"
#include "proto.h"

#define BAUD_FALLBACK_MS 2000u  /* no valid frame after SET_BAUD: return to the old rate */
#define RX_IDLE_MS 100u         /* a partial frame this old is dropped (lost bytes) */

/* Ports whose receiver buffers what arrives while the app sends (all but a polled one-byte
   receiver) need not say so. */
__attribute__((weak)) int port_uart_pipelined(void) { return 1; }

static tp_parser_t parser;
static uint8_t tx[TP_FRAME_MAX];
static size_t tx_len;        /* last response, replayed if the host repeats the request */
static int last_valid;
static uint8_t last_type, last_seq;
static int model_status;     /* infer_init() result */
static uint8_t reset_reason;
static uint32_t tx_frames, naks, replays, infer_runs;
static uint32_t baud_prev, baud_switched_at;
static int baud_probation;
static uint32_t last_rx_ms;
/* One bit per seq: the LOAD_BURST frame with that seq was stored. A slot is cleared when the
   seqs of arriving frames move past it, so it always describes the latest use of its seq and
   any BURST_ACK about the last 128 seqs, repeated or late, gets the same answer. */
static uint8_t burst_seen[32];
static uint8_t seq_cursor; /* seq of the newest frame that arrived intact */

static void seq_advance(uint8_t seq) {
    uint8_t ahead = (uint8_t)(seq - seq_cursor);
    if (ahead == 0 || ahead >= 128) return; /* the same frame again, or a resend of an old one */
    for (uint8_t s = (uint8_t)(seq_cursor + 1);; s++) {
        burst_seen[s >> 3] &= (uint8_t)~(1u << (s & 7));
        if (s == seq) break;
    }
    seq_cursor = seq;
}

static uint8_t *payload(void) { return tx + TP_HEADER_BYTES; }

static void send(uint8_t type, uint8_t seq, uint16_t len) {
    tx_len = tp_frame_finish(tx, type, seq, len);
    port_uart_write(tx, tx_len);
    tx_frames++;
}

static void nak(const tp_frame_t *f, uint8_t code, uint32_t detail) {
    uint8_t *p = payload();
    p[0] = f->type;
    p[1] = code;
    tp_put32(p + 2, detail);
    naks++;
    send(TP_NAK, f->seq, 6);
}

/* A NAK that must not replace the cached answer to the last request (which a repeated request
   gets again): for frames that are never answered otherwise, and for damaged frames. */
static void nak_aside(const tp_frame_t *f, uint8_t code, uint32_t detail) {
    uint8_t frame[TP_HEADER_BYTES + 6 + TP_TRAILER_BYTES];
    uint8_t *p = frame + TP_HEADER_BYTES;
    p[0] = f->type;
    p[1] = code;
    tp_put32(p + 2, detail);
    port_uart_write(frame, tp_frame_finish(frame, TP_NAK, f->seq, 6));
    naks++;
    tx_frames++;
}

static uint8_t *put_str(uint8_t *p, const char *s) {
    size_t n = strlen(s);
    if (n > 32) n = 32;
    *p++ = (uint8_t)n;
    memcpy(p, s, n);
    return p + n;
}

/* u8 dtype, u8 rank, i32 dims[rank], f32 scale, i32 zero point, u32 bytes */
static uint8_t *put_tensor(uint8_t *p, const infer_tensor_t *t) {
    *p++ = t->dtype;
    *p++ = t->rank;
    for (int d = 0; d < t->rank; d++, p += 4) tp_put32(p, (uint32_t)t->dims[d]);
    uint32_t scale_bits;
    memcpy(&scale_bits, &t->scale, 4);
    tp_put32(p, scale_bits);
    tp_put32(p + 4, (uint32_t)t->zero_point);
    tp_put32(p + 8, t->bytes);
    return p + 12;
}

/* The board and model in one short frame; the tensor table follows one TENSOR at a time, so no
   answer grows with the model and every one stays small enough for a noisy line. */
static void on_hello(const tp_frame_t *f) {
    uint8_t *p = payload();
    memset(burst_seen, 0, sizeof burst_seen); /* a new session */
    seq_cursor = f->seq;
    p[0] = TP_PROTO_VERSION;
    p[1] = port_counter_kind();
    tp_put16(p + 2, TP_MAX_PAYLOAD);
    tp_put32(p + 4, port_cpu_hz());
    tp_put32(p + 8, port_uart_baud());
    tp_put32(p + 12, port_uart_max_baud());
    tp_put32(p + 16, infer_arena_bytes());
    p[20] = (uint8_t)(model_status == 0 ? infer_num_inputs() : 0);
    p[21] = (uint8_t)(model_status == 0 ? infer_num_outputs() : 0);
    p[22] = TP_MAX_RUNS;
    p[23] = reset_reason;
    tp_put32(p + 24, (uint32_t)model_status);
    p[28] = TP_MAX_WINDOW;
    p[29] = port_uart_pipelined() ? TP_FLAG_PIPELINE : 0u;
    uint8_t *q = p + 30;
    q = put_str(q, port_board_name());
    q = put_str(q, infer_backend());
    q = put_str(q, infer_model_hash());
    send(TP_HELLO | TP_RESPONSE, f->seq, (uint16_t)(q - p));
}

/* Request: u8 kind (0 input, 1 output), u8 index. Response: kind, index, then the tensor. */
static void on_tensor(const tp_frame_t *f) {
    if (model_status != 0) { nak(f, TP_NAK_NOT_READY, (uint32_t)model_status); return; }
    if (f->len != 2) { nak(f, TP_NAK_BAD_LENGTH, f->len); return; }
    int kind = f->payload[0], idx = f->payload[1];
    infer_tensor_t t;
    int ok = kind == 0 ? idx < infer_num_inputs() && infer_input_info(idx, &t) == 0
           : kind == 1 ? idx < infer_num_outputs() && infer_output_info(idx, &t) == 0 : 0;
    if (!ok) { nak(f, TP_NAK_BAD_TENSOR, (uint32_t)(kind << 8 | idx)); return; }
    uint8_t *p = payload();
    p[0] = (uint8_t)kind;
    p[1] = (uint8_t)idx;
    send(TP_TENSOR | TP_RESPONSE, f->seq, (uint16_t)(put_tensor(p + 2, &t) - p));
}

static void on_set_baud(const tp_frame_t *f) {
    if (f->len != 4) { nak(f, TP_NAK_BAD_LENGTH, f->len); return; }
    uint32_t baud = tp_get32(f->payload);
    uint32_t old = port_uart_baud();
    if (baud == 0 || baud > port_uart_max_baud()) { nak(f, TP_NAK_BAUD_UNSUPPORTED, baud); return; }
    tp_put32(payload(), baud);
    send(TP_SET_BAUD | TP_RESPONSE, f->seq, 4);
    port_uart_flush();
    if (baud != old && port_uart_set_baud(baud) == 0) {
        baud_prev = old;
        baud_switched_at = port_millis();
        baud_probation = 1;
    }
}

/* u8 tensor, u8 reserved, u32 offset, data: copy into the staged input. Writing the same chunk
   twice is harmless. Returns the bytes written, or -(NAK code) with *detail set. */
static int store_chunk(const tp_frame_t *f, uint32_t *detail) {
    if (model_status != 0) { *detail = (uint32_t)model_status; return -TP_NAK_NOT_READY; }
    if (f->len < 6) { *detail = f->len; return -TP_NAK_BAD_LENGTH; }
    int idx = f->payload[0];
    uint32_t off = tp_get32(f->payload + 2);
    uint32_t n = (uint32_t)f->len - 6;
    infer_tensor_t t;
    if (idx >= infer_num_inputs() || infer_input_info(idx, &t) != 0) {
        *detail = (uint32_t)idx;
        return -TP_NAK_BAD_TENSOR;
    }
    if (off > t.bytes || n > t.bytes - off) { *detail = off; return -TP_NAK_OUT_OF_RANGE; }
    memcpy(infer_input(idx) + off, f->payload + 6, n);
    return (int)n;
}

/* Acknowledged chunk: the answer echoes u8 tensor, u8 0, u32 offset, u16 bytes written. */
static void on_load_input(const tp_frame_t *f) {
    uint32_t detail;
    int n = store_chunk(f, &detail);
    if (n < 0) { nak(f, (uint8_t)-n, detail); return; }
    uint8_t *p = payload();
    p[0] = f->payload[0];
    p[1] = 0;
    memcpy(p + 2, f->payload + 2, 4);
    tp_put16(p + 6, (uint16_t)n);
    send(TP_LOAD_INPUT | TP_RESPONSE, f->seq, 8);
}

/* A chunk of a window: stored and remembered by seq, reported by BURST_ACK. Silence keeps the
   UART free for the next frame, which boards with polled receivers need. Only a request that
   can never succeed (bad tensor, offset) is refused at once. */
static void on_load_burst(const tp_frame_t *f) {
    uint32_t detail;
    int n = store_chunk(f, &detail);
    if (n < 0)
        nak_aside(f, (uint8_t)-n, detail);
    else
        burst_seen[f->seq >> 3] |= (uint8_t)(1u << (f->seq & 7));
}

/* Request: u8 first seq, u8 count, u8 flags, u8 tensor. Response: the same four bytes, a mask of
   (count + 7) / 8 bytes (bit k, LSB first: the LOAD_BURST with seq first + k was stored), then
   with flags bit 0 the CRC-32 of the whole staged input `tensor`. count 0 asks for the CRC
   only. Nothing changes on the device, so asking again is harmless. */
static void on_burst_ack(const tp_frame_t *f) {
    if (f->len != 4) { nak(f, TP_NAK_BAD_LENGTH, f->len); return; }
    uint8_t first = f->payload[0], count = f->payload[1], flags = f->payload[2];
    int idx = f->payload[3];
    if (count > TP_MAX_WINDOW || (count == 0 && !(flags & 1))) {
        nak(f, TP_NAK_BAD_ARG, count);
        return;
    }
    infer_tensor_t t;
    if ((flags & 1) && (model_status != 0 || idx >= infer_num_inputs() ||
                        infer_input_info(idx, &t) != 0)) {
        nak(f, TP_NAK_BAD_TENSOR, (uint32_t)idx);
        return;
    }
    uint8_t *p = payload();
    memcpy(p, f->payload, 4);
    p[2] = flags & 1;
    uint8_t *mask = p + 4;
    uint16_t len = (uint16_t)(4 + (count + 7) / 8);
    memset(mask, 0, (size_t)(len - 4));
    for (unsigned k = 0; k < count; k++) {
        uint8_t s = (uint8_t)(first + k);
        if (burst_seen[s >> 3] & (1u << (s & 7))) mask[k >> 3] |= (uint8_t)(1u << (k & 7));
    }
    if (flags & 1) {
        tp_put32(p + len, tp_crc32(0, infer_input(idx), t.bytes));
        len += 4;
    }
    send(TP_BURST_ACK | TP_RESPONSE, f->seq, len);
}

static uint32_t outputs_total(void) {
    uint32_t total = 0;
    infer_tensor_t t;
    for (int i = 0; i < infer_num_outputs(); i++)
        if (infer_output_info(i, &t) == 0) total += t.bytes;
    return total;
}

/* Request: u16 runs [, u16 most output bytes to send inline]. Response: u16 runs, u8 counter
   kind, u8 flags, i32 status, u32 CRC-32 of all outputs back to back, u32 counter delta per run,
   then all outputs if they fit and the host allows it (flags bit 0). */
static void on_infer(const tp_frame_t *f) {
    if (model_status != 0) { nak(f, TP_NAK_NOT_READY, (uint32_t)model_status); return; }
    if (f->len != 2 && f->len != 4) { nak(f, TP_NAK_BAD_LENGTH, f->len); return; }
    uint16_t runs = tp_get16(f->payload);
    uint32_t max_inline = f->len == 4 ? tp_get16(f->payload + 2) : TP_MAX_PAYLOAD;
    if (runs == 0 || runs > TP_MAX_RUNS) { nak(f, TP_NAK_BAD_ARG, runs); return; }
    uint32_t deltas[TP_MAX_RUNS];
    int status = 0;
    port_uart_flush(); /* the timed window must not overlap UART traffic */
    for (uint16_t r = 0; r < runs && status == 0; r++) {
        /* Start on a counter edge so coarse counters (timer ticks, micros) quantize the same
           way every time. Free-running cycle counters change at once. */
        infer_prepare();
        uint32_t t0, edge = port_counter();
        while ((t0 = port_counter()) == edge) {
        }
        status = infer_run();
        deltas[r] = port_counter() - t0;
        infer_runs++;
    }
    if (status != 0) { nak(f, TP_NAK_INFER_FAILED, (uint32_t)status); return; }
    uint8_t *p = payload();
    uint32_t head = 12u + 4u * runs, total = outputs_total(), crc = 0;
    int inline_out = head + total <= TP_MAX_PAYLOAD && total <= max_inline;
    infer_tensor_t t;
    for (int i = 0; i < infer_num_outputs(); i++)
        if (infer_output_info(i, &t) == 0) crc = tp_crc32(crc, infer_output(i), t.bytes);
    tp_put16(p, runs);
    p[2] = port_counter_kind();
    p[3] = inline_out ? 1 : 0;
    tp_put32(p + 4, 0);
    tp_put32(p + 8, crc);
    for (uint16_t r = 0; r < runs; r++) tp_put32(p + 12 + 4 * r, deltas[r]);
    uint8_t *q = p + head;
    if (inline_out) {
        for (int i = 0; i < infer_num_outputs(); i++) {
            if (infer_output_info(i, &t) != 0) continue;
            memcpy(q, infer_output(i), t.bytes);
            q += t.bytes;
        }
    }
    send(TP_INFER | TP_RESPONSE, f->seq, (uint16_t)(q - p));
}

/* Request: u8 tensor, u8 reserved, u32 offset, u16 len. Response: u8, u8, u32 offset, data. */
static void on_read_output(const tp_frame_t *f) {
    if (model_status != 0) { nak(f, TP_NAK_NOT_READY, (uint32_t)model_status); return; }
    if (f->len != 8) { nak(f, TP_NAK_BAD_LENGTH, f->len); return; }
    int idx = f->payload[0];
    uint32_t off = tp_get32(f->payload + 2);
    uint32_t n = tp_get16(f->payload + 6);
    infer_tensor_t t;
    if (idx >= infer_num_outputs() || infer_output_info(idx, &t) != 0) {
        nak(f, TP_NAK_BAD_TENSOR, (uint32_t)idx);
        return;
    }
    if (n > TP_MAX_PAYLOAD - 6 || off > t.bytes || n > t.bytes - off) {
        nak(f, TP_NAK_OUT_OF_RANGE, off);
        return;
    }
    uint8_t *p = payload();
    p[0] = (uint8_t)idx;
    p[1] = 0;
    tp_put32(p + 2, off);
    memcpy(p + 6, infer_output(idx) + off, n);
    send(TP_READ_OUTPUT | TP_RESPONSE, f->seq, (uint16_t)(6 + n));
}

static void on_stats(const tp_frame_t *f) {
    uint32_t v[] = {parser.frames, parser.bad_header, parser.bad_crc, parser.dropped,
                    tx_frames, naks, replays, infer_runs, port_millis()};
    uint8_t *p = payload();
    for (unsigned i = 0; i < sizeof v / sizeof v[0]; i++) tp_put32(p + 4 * i, v[i]);
    p[4 * (sizeof v / sizeof v[0])] = reset_reason;
    send(TP_STATS | TP_RESPONSE, f->seq, (uint16_t)(4 * (sizeof v / sizeof v[0]) + 1));
}

static void on_reset(const tp_frame_t *f) {
    send(TP_RESET | TP_RESPONSE, f->seq, 0);
    port_uart_flush();
    port_reset();
}

static void handle(const tp_frame_t *f) {
    if (baud_probation) baud_probation = 0; /* the new rate works */
    seq_advance(f->seq);
    if (f->type == TP_LOAD_BURST) { /* never answered: leaves the replay memory alone */
        on_load_burst(f);
        return;
    }
    /* A repeated request (same type and seq as the last one) means our answer got lost:
       send it again instead of doing the work twice. HELLO and RESET always run. */
    if (last_valid && f->type == last_type && f->seq == last_seq && f->type != TP_HELLO &&
        f->type != TP_RESET && tx_len) {
        port_uart_write(tx, tx_len);
        replays++;
        tx_frames++;
        return;
    }
    last_valid = 1;
    last_type = f->type;
    last_seq = f->seq;
    switch (f->type) {
        case TP_HELLO: on_hello(f); break;
        case TP_SET_BAUD: on_set_baud(f); break;
        case TP_LOAD_INPUT: on_load_input(f); break;
        case TP_INFER: on_infer(f); break;
        case TP_READ_OUTPUT: on_read_output(f); break;
        case TP_STATS: on_stats(f); break;
        case TP_RESET: on_reset(f); break;
        case TP_TENSOR: on_tensor(f); break;
        case TP_BURST_ACK: on_burst_ack(f); break;
        default: nak(f, TP_NAK_UNKNOWN_TYPE, f->type); break;
    }
}

void app_setup(void) {
    port_init();
    reset_reason = port_reset_reason();
    tp_parser_init(&parser);
    last_valid = 0;
    tx_len = 0;
    tx_frames = naks = replays = infer_runs = 0;
    baud_probation = 0;
    memset(burst_seen, 0, sizeof burst_seen);
    seq_cursor = 0;
    model_status = infer_init();
    uint8_t *p = payload();
    p[0] = TP_PROTO_VERSION;
    p[1] = reset_reason;
    tp_put32(p + 2, (uint32_t)model_status);
    send(TP_BOOT, 0, 6);
    tx_len = 0;
}

/* Act on a parser result, then keep rescanning the buffer until it has nothing more. */
static void dispatch(int r, tp_frame_t *f) {
    for (; r != TP_FEED_NONE; r = tp_parser_poll(&parser, f)) {
        if (r == TP_FEED_FRAME)
            handle(f);
        else if (f->type != TP_LOAD_BURST) /* a lost burst frame shows in its BURST_ACK */
            nak_aside(f, TP_NAK_BAD_CRC, 0);
    }
}

void app_loop(void) {
    tp_frame_t f;
    int c;
    int got = 0;
    while ((c = port_uart_read()) >= 0) {
        got = 1;
        dispatch(tp_parser_feed(&parser, (uint8_t)c, &f), &f);
    }
    uint32_t now = port_millis();
    if (got) {
        last_rx_ms = now;
    } else if (tp_parser_buffered(&parser) && now - last_rx_ms > RX_IDLE_MS) {
        tp_parser_flush(&parser);
        last_rx_ms = now;
        dispatch(tp_parser_poll(&parser, &f), &f);
    } else {
        port_idle();
    }
    if (baud_probation && now - baud_switched_at > BAUD_FALLBACK_MS) {
        baud_probation = 0;
        port_uart_set_baud(baud_prev);
    }
}
