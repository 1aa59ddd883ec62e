/* libFuzzer target: the whole device app (parser + command handlers) on the host.
 *
 * Input byte 0 picks the mode. Raw (even): the rest goes to the UART as is. Framed (odd): the
 * rest is a list of [type, seq, len, payload[len]] records, each sent as a correctly framed
 * request (so handlers past the CRC are reached), with every 7th frame's payload bit-flipped.
 * Types 0xFF and 0xFE stand for LOAD_INPUT and LOAD_BURST with 8 x len payload bytes, so
 * chunks as long as real ones are reached.
 * The fake port aborts if the device ever emits anything but single well-formed frames;
 * ASan/UBSan catch memory errors.
 */
#include <stdint.h>
#include <string.h>

#include "app.h"
#include "fake_port.h"
#include "proto.h"

static uint8_t framed[1 << 16];

static void run(const uint8_t *data, size_t n) {
    fake_port_feed(data, n);
    if (setjmp(fake_reset_jmp)) return; /* RESET: the device "reboots" on the next input */
    while (fake_port_left()) {
        app_loop();
        fake_port_tick(1);
    }
    fake_port_tick(500); /* silence on the line: stale partial frames get dropped */
    app_loop();
    fake_port_tick(3000); /* and a SET_BAUD probation runs out */
    app_loop();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    app_setup();
    if ((data[0] & 1) == 0) {
        run(data + 1, size - 1);
        return 0;
    }
    size_t out = 0, i = 1;
    unsigned k = 0;
    while (i + 3 <= size && out + TP_FRAME_MAX <= sizeof framed) {
        uint8_t type = data[i], seq = data[i + 1];
        size_t len = data[i + 2];
        i += 3;
        int chunk = type == 0xFF || type == 0xFE;
        if (chunk) len *= 8; /* reach long payloads too */
        if (len > size - i) len = size - i;
        if (len > TP_MAX_PAYLOAD) len = TP_MAX_PAYLOAD;
        uint8_t *f = framed + out;
        memcpy(f + TP_HEADER_BYTES, data + i, len);
        i += len;
        out += tp_frame_finish(f, chunk ? (type == 0xFF ? TP_LOAD_INPUT : TP_LOAD_BURST) : type,
                               seq, (uint16_t)len);
        if (++k % 7 == 0 && len) f[TP_HEADER_BYTES] ^= 0x10;
    }
    run(framed, out);
    return 0;
}
