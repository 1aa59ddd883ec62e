"""Protocol v1 codec: CRCs, framing, resync after garbage, message payloads, link retries."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from pipeline.errors import DeviceError
from pipeline.hil import protocol as P
from pipeline.hil.link import Link, NakError


def test_crc_check_values() -> None:
    assert P.crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE
    assert P.crc8(b"123456789") == 0xF4     # CRC-8/SMBUS


def test_encode_layout() -> None:
    f = P.encode(P.Msg.INFER, 0x1234, b"\x02\x00")
    assert f[:2] == P.SYNC and f[2] == P.Msg.INFER and f[3] == 0x34
    assert struct.unpack_from("<H", f, 4)[0] == 2
    assert f[6] == P.crc8(f[2:6])
    assert struct.unpack_from("<H", f, len(f) - 2)[0] == P.crc16(f[2:-2])
    with pytest.raises(ValueError):
        P.encode(P.Msg.LOAD_INPUT, 1, bytes(P.MAX_PAYLOAD + 1))


def test_decoder_roundtrip_byte_by_byte() -> None:
    frames = [P.encode(P.Msg.HELLO, 1), P.encode(P.Msg.LOAD_INPUT, 2, bytes(range(200)))]
    d = P.Decoder()
    got = [f for b in b"".join(frames) for f in d.feed(bytes([b]))]
    assert got == [P.Frame(P.Msg.HELLO, 1, b""), P.Frame(P.Msg.LOAD_INPUT, 2, bytes(range(200)))]


def test_decoder_resyncs_after_garbage_and_corruption() -> None:
    rng = np.random.default_rng(0)
    good = P.encode(P.Msg.STATS, 7, b"abc")
    bad = bytearray(P.encode(P.Msg.INFER, 8, b"\x01\x00"))
    bad[-3] ^= 0xFF  # payload corrupt, header intact
    torn = P.encode(P.Msg.LOAD_INPUT, 9, bytes(100))[:40]
    stream = rng.integers(0, 256, 500, dtype=np.uint8).tobytes() + P.SYNC + bytes(bad) + torn \
        + b"\xa5" + good
    d = P.Decoder()
    frames = d.feed(stream)
    frames += d.feed(bytes(80)) + d.feed(good)  # the torn frame completes with junk, then fails
    assert frames.count(P.Frame(P.Msg.STATS, 7, b"abc")) >= 1
    assert d.bad_crc >= 1 and (P.Msg.INFER, 8) in d.torn and d.dropped > 500


def test_decoder_rejects_oversized_length() -> None:
    head = struct.pack("<BBH", 1, 1, P.MAX_PAYLOAD + 1)
    d = P.Decoder()
    assert d.feed(P.SYNC + head + bytes([P.crc8(head)]) + P.encode(P.Msg.HELLO, 3)) == \
        [P.Frame(P.Msg.HELLO, 3, b"")]
    assert d.bad_header == 1


def _hello_payload() -> bytes:
    def s(x: str) -> bytes:
        return bytes([len(x)]) + x.encode()

    def t(dtype: int, shape: tuple[int, ...], scale: float, zp: int, n: int) -> bytes:
        return bytes([dtype, len(shape)]) + struct.pack(f"<{len(shape)}i", *shape) + \
            struct.pack("<fiI", scale, zp, n)

    head = struct.pack("<BBHIIIIBBBBi", 1, 1, 1024, 25_000_000, 115200, 1_562_500, 4032, 1, 1,
                       32, 2, 0)
    return head + s("qemu-mps2-an386") + s("aot") + s("c8830183054c92d8") + \
        t(9, (1, 16, 16, 1), 0.5, -3, 256) + t(9, (1, 4), 0.25, 5, 4)


def test_decode_hello() -> None:
    h = P.decode_hello(_hello_payload())
    assert (h.version, h.counter_kind, h.board, h.backend) == (1, "instructions",
                                                               "qemu-mps2-an386", "aot")
    assert h.reset_reason == "software" and h.model_hash == "c8830183054c92d8"
    assert h.inputs[0].shape == (1, 16, 16, 1) and h.inputs[0].np_dtype is np.int8
    assert h.outputs[0].zero_point == 5 and h.outputs[0].scale == 0.25


def test_decode_infer_and_nak() -> None:
    p = struct.pack("<HBBi", 2, 1, 1, 0) + struct.pack("<2I", 100, 120) + b"\x01\x02"
    r = P.decode_infer(p)
    assert r.counters == (100, 120) and r.outputs_inline and r.output_bytes == b"\x01\x02"
    assert P.decode_nak(struct.pack("<BBI", 3, P.Nak.OUT_OF_RANGE, 9)) == (3, 4, 9)


class FakeDevice:
    """A pyserial stand-in speaking protocol v1; can lose answers and corrupt requests."""

    def __init__(self, lose: set[int] = frozenset(), corrupt: set[int] = frozenset()) -> None:
        self.dec, self.out = P.Decoder(), bytearray()
        self.lose, self.corrupt, self.seen, self.loaded = set(lose), set(corrupt), 0, {}
        self.executed = 0
        self._last: tuple[int, int, bytes] | None = None
        self.timeout = 0.0

    @property
    def in_waiting(self) -> int:
        return len(self.out)

    def read(self, n: int = 1) -> bytes:
        data, self.out = bytes(self.out[:n]), self.out[n:]
        return data

    def write(self, data: bytes) -> int:
        for f in self.dec.feed(data):
            self.seen += 1
            if self.seen in self.corrupt:  # as if the CRC failed on the device
                self.out += P.encode(P.Msg.NAK, f.seq, struct.pack("<BBI", f.type, 9, 0))
                continue
            if self._last and self._last[:2] == (f.type, f.seq):
                answer = self._last[2]
            else:
                answer = self.answer(f)
                self._last = (f.type, f.seq, answer)
            if self.seen not in self.lose:
                self.out += answer
        return len(data)

    def answer(self, f: P.Frame) -> bytes:
        self.executed += 1
        if f.type == P.Msg.HELLO:
            return P.encode(P.Msg.HELLO | P.RESPONSE, f.seq, _hello_payload())
        if f.type == P.Msg.LOAD_INPUT:
            idx, _, off = struct.unpack_from("<BBI", f.payload)
            if idx != 0:
                return P.encode(P.Msg.NAK, f.seq, struct.pack("<BBI", f.type, 3, idx))
            self.loaded[off] = f.payload[6:]
            return P.encode(f.type | P.RESPONSE, f.seq,
                            struct.pack("<BBIH", idx, 0, off, len(f.payload) - 6))
        if f.type == P.Msg.INFER:
            body = struct.pack("<HBBiI", 1, 1, 1, 0, 4242) + bytes([1, 2, 3, 4])
            return P.encode(f.type | P.RESPONSE, f.seq, body)
        return P.encode(P.Msg.NAK, f.seq, struct.pack("<BBI", f.type, 1, f.type))

    def close(self) -> None:
        pass


def _link(dev: FakeDevice, **kw) -> Link:
    return Link("fake://", timeout=0.05, open_fn=lambda *a, **k: dev, **kw).open()


def test_link_retries_lost_answers_without_redoing_work() -> None:
    dev = FakeDevice(lose={2, 4})  # the first LOAD_INPUT answer and the first INFER answer
    link = _link(dev)
    link.hello()
    link.load_input(0, bytes(256))
    res, outs = link.infer(1, timeout=0.05)
    assert res.counters == (4242,) and outs[0].tolist() == [1, 2, 3, 4]
    assert link.stats.timeouts == 2 and dev.executed == 3  # replays, not re-executions


def test_link_resends_at_once_on_bad_crc_nak() -> None:
    dev = FakeDevice(corrupt={2})
    link = _link(dev)
    link.hello()
    link.load_input(0, bytes(16))
    assert link.stats.nak_crc == 1 and link.stats.timeouts == 0


def test_link_raises_nak_and_timeout_errors() -> None:
    link = _link(FakeDevice())
    link.hello()
    with pytest.raises(NakError, match="BAD_TENSOR"):
        link.request(P.Msg.LOAD_INPUT, P.load_input(3, 0, b"x"))
    with pytest.raises(NakError, match="UNKNOWN_TYPE"):
        link.request(0x42)
    silent = _link(FakeDevice(lose=set(range(1, 100))), retries=2)
    with pytest.raises(DeviceError, match="no answer to HELLO after 3 tries"):
        silent.hello()
