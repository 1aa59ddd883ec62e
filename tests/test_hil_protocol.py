"""Protocol v2 codec and link: CRCs, framing, strict decoders, one dtype table, windows, retries.

The link tests talk to `fake_device.FakeDevice` over a real `socket://` port.
"""

from __future__ import annotations

import re
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from fake_device import FakeDevice, hello_payload, tensor_payload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import DeviceError
from pipeline.hil import protocol as P
from pipeline.hil.link import LineQuality, Link, NakError

REPO = Path(__file__).resolve().parents[1]


def test_crc_check_values() -> None:
    assert P.crc32(b"123456789") == 0xCBF43926  # CRC-32/ISO-HDLC
    assert P.crc8(b"123456789") == 0xF4         # CRC-8/SMBUS


def test_encode_layout() -> None:
    f = P.encode(P.Msg.INFER, 0x1234, b"\x02\x00")
    assert f[:2] == P.SYNC and f[2] == P.Msg.INFER and f[3] == 0x34
    assert struct.unpack_from("<H", f, 4)[0] == 2
    assert f[6] == P.crc8(f[2:6])
    assert struct.unpack_from("<I", f, len(f) - 4)[0] == P.crc32(f[2:-4])
    assert len(f) == P.frame_bytes(2)
    with pytest.raises(ValueError):
        P.encode(P.Msg.LOAD_INPUT, 1, bytes(P.MAX_PAYLOAD + 1))


def test_dtype_table_matches_the_firmware() -> None:
    """INFER_DTYPES in firmware/src/infer.h and protocol.DTYPES are one table."""
    header = (REPO / "firmware/src/infer.h").read_text()
    body = re.search(r"#define INFER_DTYPES\(X\)((?:.*\\\n)*.*\n)", header).group(1)
    rows = re.findall(r"X\((\w+),\s*(\d+),\s*(\d+)\)", body)
    assert rows, "no X(name, code, size) rows in INFER_DTYPES"
    firmware = {int(code): (name.lower(), int(size)) for name, code, size in rows}
    host = {d.code: (d.name, d.itemsize) for d in P.DTYPES.values()}
    assert firmware == host
    assert all(np.dtype(d.name).itemsize == d.itemsize for d in P.DTYPES.values())


def test_backends_map_their_types_to_the_table() -> None:
    """Both backends name every INFER_DTYPE_* and none sends its own type codes."""
    for src in ("infer_aot.c", "infer_tflm.cc"):
        text = (REPO / "firmware/src/backends" / src).read_text()
        for d in P.DTYPES.values():
            assert f"INFER_DTYPE_{d.name.upper()}" in text, (src, d.name)
        assert "INFER_ERR_IO_TYPE" in text, src
        assert not re.search(r"dtype\s*=\s*\(uint8_t\)\s*x->type", text), src


def test_decoder_roundtrip_byte_by_byte() -> None:
    frames = [P.encode(P.Msg.HELLO, 1), P.encode(P.Msg.LOAD_INPUT, 2, bytes(range(200)))]
    d = P.Decoder()
    got = [f for b in b"".join(frames) for f in d.feed(bytes([b]))]
    assert got == [P.Frame(P.Msg.HELLO, 1, b""), P.Frame(P.Msg.LOAD_INPUT, 2, bytes(range(200)))]


def test_decoder_resyncs_after_garbage_and_corruption() -> None:
    rng = np.random.default_rng(0)
    good = P.encode(P.Msg.STATS, 7, b"abc")
    bad = bytearray(P.encode(P.Msg.INFER, 8, b"\x01\x00"))
    bad[-5] ^= 0xFF  # payload corrupt, header intact
    torn = P.encode(P.Msg.LOAD_INPUT, 9, bytes(100))[:40]
    stream = rng.integers(0, 256, 500, dtype=np.uint8).tobytes() + P.SYNC + bytes(bad) + torn \
        + b"\xa5" + good
    d = P.Decoder()
    frames = d.feed(stream)
    frames += d.feed(bytes(80)) + d.feed(good)  # the torn frame completes with junk, then fails
    assert frames.count(P.Frame(P.Msg.STATS, 7, b"abc")) >= 1
    assert d.bad_crc >= 1 and (P.Msg.INFER, 8, P.frame_bytes(2)) in d.torn and d.dropped > 500


def test_decoder_rejects_oversized_length_and_abandons_a_stalled_frame() -> None:
    head = struct.pack("<BBH", 1, 1, P.MAX_PAYLOAD + 1)
    d = P.Decoder()
    assert d.feed(P.SYNC + head + bytes([P.crc8(head)]) + P.encode(P.Msg.HELLO, 3)) == \
        [P.Frame(P.Msg.HELLO, 3, b"")]
    assert d.bad_header == 1
    half = P.encode(P.Msg.READ_OUTPUT | P.RESPONSE, 5, bytes(50))[:30]
    assert d.feed(half) == [] and d.pending() == (P.Msg.READ_OUTPUT | P.RESPONSE, 5, 61)
    d.abandon()
    assert d.torn[-1] == (P.Msg.READ_OUTPUT | P.RESPONSE, 5, 61) and d.pending() is None
    assert d.feed(P.encode(P.Msg.STATS, 6)) == [P.Frame(P.Msg.STATS, 6, b"")]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=60),
                          st.tuples(st.integers(0, 255), st.integers(0, 255),
                                    st.binary(max_size=300))), max_size=12))
def test_decoder_finds_every_intact_frame_between_garbage(parts) -> None:
    stream, want = b"", []
    for part in parts:
        if isinstance(part, tuple):
            stream += P.encode(*part)
            want.append(P.Frame(*part))
        else:
            stream += part.replace(b"\xa5", b"\x00")  # garbage without sync bytes
    d = P.Decoder()
    got = [f for k in range(0, len(stream), 7) for f in d.feed(stream[k:k + 7])]
    assert got == want


# ---- strict decoders ----------------------------------------------------------------------------


def _tensor_answer(kind: int = 0, index: int = 0, dtype: int = 9) -> bytes:
    return bytes([kind, index]) + tensor_payload(dtype, (1, 16, 16, 1), 0.5, -3)


DECODERS = [
    ("HELLO answer", lambda p: P.decode_hello(p), hello_payload()),
    ("TENSOR answer for input 0", lambda p: P.decode_tensor(p, 0, 0), _tensor_answer()),
    ("BURST_ACK answer", lambda p: P.decode_burst_ack(p, 7, 3, 0, True),
     bytes([7, 3, 1, 0, 0b101]) + struct.pack("<I", 1234)),
    ("INFER answer", lambda p: P.decode_infer(p, 2, 2),
     struct.pack("<HBBiI2I", 2, 1, 1, 0, 99, 100, 120) + b"\x01\x02"),
    ("READ_OUTPUT answer", lambda p: P.decode_read_output(p, 0, 8, 3),
     struct.pack("<BBI", 0, 0, 8) + b"abc"),
    ("LOAD_INPUT answer", P.decode_load_ack, struct.pack("<BBIH", 0, 0, 64, 32)),
    ("STATS answer", P.decode_stats, bytes(37)),
    ("NAK", P.decode_nak, struct.pack("<BBI", 3, 4, 9)),
    ("BOOT frame", P.decode_boot, struct.pack("<BBi", 2, 1, 0)),
    ("SET_BAUD answer", P.decode_set_baud, struct.pack("<I", 921600)),
]


@pytest.mark.parametrize("what,decode,good", DECODERS, ids=[d[0] for d in DECODERS])
def test_every_decoder_refuses_short_and_long_payloads(what, decode, good) -> None:
    decode(good)  # the well-formed payload parses
    for n in range(len(good)):
        with pytest.raises(DeviceError, match=f"^{what}: ") as e:
            decode(good[:n])
        assert "\n" not in str(e.value)
    if what not in ("INFER answer", "READ_OUTPUT answer"):  # these carry data to the end
        with pytest.raises(DeviceError, match=rf"^{what}: 1 unexpected bytes"):
            decode(good + b"\0")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(DECODERS), st.binary(max_size=80), st.integers(0, 80))
def test_decoders_raise_only_device_errors(dec, noise, cut) -> None:
    _, decode, good = dec
    for p in (noise, good[:cut] + noise, bytes(b ^ n for b, n in zip(good, noise + good,
                                                                     strict=False))):
        try:
            decode(p)
        except DeviceError as e:
            assert "\n" not in str(e)


def test_decode_hello_and_tensor() -> None:
    h = P.decode_hello(hello_payload(window=8))
    assert (h.version, h.counter_kind, h.board, h.backend, h.window) == \
        (2, "instructions", "fake-board", "aot", 8)
    assert h.reset_reason == "software" and h.model_hash == "c8830183054c92d8"
    t = P.decode_tensor(_tensor_answer(), 0, 0)
    assert t.shape == (1, 16, 16, 1) and t.np_dtype == np.int8 and t.bytes == 256
    assert t.to_dict()["dtype"] == "int8"
    with pytest.raises(DeviceError, match="describes output 0"):
        P.decode_tensor(_tensor_answer(kind=1), 0, 0)


def test_inconsistent_answers_are_named() -> None:
    with pytest.raises(DeviceError, match="^HELLO answer: window 0 outside 1..64$"):
        P.decode_hello(hello_payload(window=0))
    with pytest.raises(DeviceError, match=r"device speaks protocol v1, host v2; reflash"):
        P.decode_hello(b"\x01" + hello_payload()[1:])
    bad = bytes([0, 0]) + tensor_payload(9, (1, 10), 1.0, 0, nbytes=11)
    with pytest.raises(DeviceError, match=r"11 bytes, but int8 \[1, 10\] needs 10"):
        P.decode_tensor(bad, 0, 0)
    with pytest.raises(DeviceError, match="INFER answer: 3 runs, asked for 1"):
        P.decode_infer(struct.pack("<HBBiI3I", 3, 1, 0, 0, 0, 1, 2, 3), 1)
    with pytest.raises(DeviceError, match="output 1 at offset 8, asked for output 0 at 8"):
        P.decode_read_output(struct.pack("<BBI", 1, 0, 8) + b"abc", 0, 8, 3)
    with pytest.raises(DeviceError, match="2 bytes of output 0 at offset 8, asked for 3"):
        P.decode_read_output(struct.pack("<BBI", 0, 0, 8) + b"ab", 0, 8, 3)
    with pytest.raises(DeviceError, match="mask 0x10 has bits past 3 frames"):
        P.decode_burst_ack(bytes([7, 3, 0, 0, 16]), 7, 3, 0, False)


def test_unknown_dtype_code_is_one_line() -> None:
    """TFLM's kTfLiteFloat32 (1) is not a protocol code: never silently uint8."""
    with pytest.raises(DeviceError) as e:
        P.decode_tensor(_tensor_answer(dtype=1), 0, 0)
    msg = str(e.value)
    assert msg.startswith("TENSOR answer for input 0: unknown dtype code 1 (known: 0 float32,")
    assert "reflash" in msg and "\n" not in msg


# ---- chunk sizes --------------------------------------------------------------------------------


def test_line_quality_picks_chunks_for_the_error_rate() -> None:
    clean = LineQuality()
    for _ in range(100):
        clean.observe(1000, True)
    assert clean.best_payload(17, 16, 1018) == 1018
    noisy = LineQuality()
    rng = np.random.default_rng(0)
    for _ in range(4000):  # frames of 60 bytes on a line losing 1 % of bytes
        noisy.observe(60, bool(rng.random() < 0.99 ** 60))
    assert noisy.error_rate == pytest.approx(0.01, rel=0.3)
    assert 25 <= noisy.best_payload(17, 16, 1018) <= 45  # the optimum for p = 1 % is 34


# ---- the link, against a fake device on a socket ------------------------------------------------


def _link(dev: FakeDevice, **kw) -> Link:
    kw.setdefault("timeout", 0.2)
    return Link(dev.url, **kw).open()


def test_link_streams_a_window_with_one_ack() -> None:
    with FakeDevice(in_bytes=3000, out_bytes=2000) as dev, _link(dev) as link:
        info = link.hello()
        assert info.inputs[0].bytes == 3000 and info.window == 64
        x = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
        link.load_input(0, x)
        res, outs = link.infer(1)
        assert bytes(dev.staged) == x
        assert outs[0].tobytes() == (bytes(reversed(x)) * 2)[:2000]
        assert not res.outputs_inline  # 2000 bytes: read back in chunks
    types = [f.type for f in dev.requests]
    assert types.count(P.Msg.BURST_ACK) == link.stats.windows
    assert types.count(P.Msg.LOAD_BURST) == link.stats.chunks
    assert types.count(P.Msg.READ_OUTPUT) == 2
    assert link.stats.resent_chunks == 0 and link.stats.retries == 0


def test_link_resends_only_the_chunks_the_device_missed() -> None:
    seen = {"n": 0}

    def lose_some(f: P.Frame) -> bool:  # the 2nd and 5th LOAD_BURST never arrive
        if f.type != P.Msg.LOAD_BURST:
            return True
        seen["n"] += 1
        return seen["n"] not in (2, 5)

    with FakeDevice(in_bytes=2000, on_request=lose_some) as dev, _link(dev) as link:
        link.hello()
        link.load_input(0, bytes(range(250)) * 8)
        assert bytes(dev.staged) == bytes(range(250)) * 8
    assert link.stats.resent_chunks == 2 and link.stats.input_reloads == 0


def test_link_retries_lost_answers_without_redoing_work() -> None:
    lost = set()

    def lose_first(f: P.Frame, out: bytes) -> bytes:  # first answer to INFER and BURST_ACK
        if f.type in (P.Msg.INFER, P.Msg.BURST_ACK) and f.type not in lost:
            lost.add(f.type)
            return b""
        return out

    with FakeDevice(on_answer=lose_first) as dev, _link(dev) as link:
        link.hello()
        link.load_input(0, bytes(256))
        res, outs = link.infer(1, timeout=0.2)
        assert res.counters == (4242,) and outs[0].tolist() == [0, 0, 0, 0]
    assert link.stats.timeouts == 2
    assert dev.executed[P.Msg.INFER] == 1 and dev.executed[P.Msg.BURST_ACK] == 1  # replays


def test_link_resends_at_once_on_bad_crc_nak_and_torn_answers() -> None:
    state = {"n": 0}

    def damage(f: P.Frame, out: bytes) -> bytes:
        state["n"] += 1
        if state["n"] == 2:  # the first TENSOR answer: flip a payload bit
            return out[:8] + bytes([out[8] ^ 1]) + out[9:]
        return out

    def damaged_hello(f: P.Frame) -> bool | str:
        state["hello"] = state.get("hello", 0) + (f.type == P.Msg.HELLO)
        return "damaged" if f.type == P.Msg.HELLO and state["hello"] == 1 else True

    with FakeDevice(on_answer=damage, on_request=damaged_hello) as dev, \
            _link(dev, timeout=5.0) as link:
        t0 = time.monotonic()
        link.hello()
        assert time.monotonic() - t0 < 2.0  # no 5 s timeout was waited out
    assert (link.stats.nak_crc, link.stats.torn, link.stats.timeouts) == (1, 1, 0)
    assert link.stats.retries == 2


def test_link_read_output_checks_the_echo() -> None:
    def wrong_offset(f: P.Frame, out: bytes) -> bytes:
        if f.type != P.Msg.READ_OUTPUT:
            return out
        p = P.Decoder().feed(out)[0].payload
        return P.encode(f.type | P.RESPONSE, f.seq, p[:2] + struct.pack("<I", 999) + p[6:])

    with FakeDevice(out_bytes=3000, on_answer=wrong_offset) as dev, _link(dev) as link:
        link.hello()
        link.load_input(0, bytes(256))
        with pytest.raises(DeviceError, match="READ_OUTPUT answer: output 0 at offset 999, "
                                              "asked for output 0 at 0"):
            link.infer(1)


def test_link_read_output_refuses_a_short_answer_at_once() -> None:
    def short(f: P.Frame, out: bytes) -> bytes:
        if f.type != P.Msg.READ_OUTPUT:
            return out
        p = P.Decoder().feed(out)[0].payload
        return P.encode(f.type | P.RESPONSE, f.seq, p[:-1])

    with FakeDevice(out_bytes=3000, on_answer=short) as dev, _link(dev) as link:
        link.hello()
        link.load_input(0, bytes(256))
        t0 = time.monotonic()
        with pytest.raises(DeviceError, match=r"bytes of output 0 at offset 0, asked for"):
            link.infer(1)
        assert time.monotonic() - t0 < 2.0


def test_link_reports_nak_and_unknown_dtype() -> None:
    with FakeDevice() as dev, _link(dev) as link:
        link.hello()
        with pytest.raises(NakError, match="BAD_TENSOR"):
            link.request(P.Msg.LOAD_INPUT, P.load_input(3, 0, b"x"))
        with pytest.raises(NakError, match="UNKNOWN_TYPE"):
            link.request(0x42)
    with FakeDevice(input_dtype=1) as dev, _link(dev) as link:
        with pytest.raises(DeviceError) as e:
            link.hello()
        assert re.fullmatch(r"socket://127\.0\.0\.1:\d+: TENSOR answer for input 0: unknown dtype "
                            r"code 1 \(known: .*\); host and firmware disagree, reflash the "
                            r"firmware", str(e.value))


def test_timeout_gives_up_on_time_and_quotes_the_last_bytes() -> None:
    def garbage(f: P.Frame, out: bytes) -> bytes:
        return b"\xde\xad\xbe\xef" * 20  # never a frame

    with FakeDevice(on_answer=garbage) as dev, _link(dev, budget=1.0) as link:
        t0 = time.monotonic()
        with pytest.raises(DeviceError) as e:
            link.hello()
        took = time.monotonic() - t0
    msg = str(e.value)
    assert 1.0 <= took < 2.0, took
    assert re.search(r"no answer to HELLO in 1\.\d s \(\d+ tries; last 32 of [\d,]+ bytes "
                     r"received: (de ad be ef ?){8}\)", msg), msg
    assert "\n" not in msg


def test_silent_device_says_nothing_received() -> None:
    with FakeDevice(on_answer=lambda f, out: b"") as dev, _link(dev, budget=0.5) as link, \
            pytest.raises(DeviceError, match=r"no answer to HELLO in 0\.\d s \(\d+ tries; "
                                             r"nothing received\)"):
        link.hello()


def test_chunks_shrink_on_a_noisy_line_and_grow_back() -> None:
    rng = np.random.default_rng(3)

    def noisy(f: P.Frame) -> bool:  # a LOAD_BURST frame survives with 0.99 ** bytes
        return f.type != P.Msg.LOAD_BURST or rng.random() < 0.99 ** P.frame_bytes(len(f.payload))

    data = rng.integers(0, 256, 20000, dtype=np.uint8).tobytes()
    with FakeDevice(in_bytes=20000, on_request=noisy) as dev, _link(dev) as link:
        link.hello()
        link.load_input(0, data)
        assert bytes(dev.staged) == data
        assert link.input_chunk() < 80 and link.stats.resent_chunks > 0
        dev.on_request = None
        for _ in range(3):
            link.load_input(0, data)
        assert link.input_chunk() == 1018


class _TracedLink(Link):
    """A Link that logs the frames it writes and the answers it takes, in order."""

    events: list[tuple[str, int, int]]

    def _write(self, data: bytes) -> None:
        self.events += [("out", f.type, f.seq) for f in P.Decoder().feed(data)]
        super()._write(data)

    def _await(self, r, want, deadline):
        got, why = super()._await(r, want, deadline)
        if got is not None:
            self.events.append(("in", r.msg, r.seq))
        return got, why


def test_unbuffered_device_gets_one_window_at_a_time() -> None:
    """HELLO says whether the device can take frames while it answers; if not, the host sends
    no LOAD_BURST between a BURST_ACK request and its answer."""
    data = bytes(range(256)) * 40
    for pipeline in (True, False):
        with FakeDevice(in_bytes=len(data), pipeline=pipeline) as dev:
            link = _TracedLink(dev.url, timeout=0.2)
            link.events = []
            link.open()
            assert link.hello().pipeline is pipeline
            link.load_input(0, data)
            link.close()
            assert bytes(dev.staged) == data
        overlaps = 0
        for k, (way, msg, seq) in enumerate(link.events):
            if way == "out" and msg == P.Msg.BURST_ACK:
                answered = link.events.index(("in", P.Msg.BURST_ACK, seq), k)
                overlaps += any(m == P.Msg.LOAD_BURST for _, m, _ in link.events[k:answered])
        assert link.stats.windows >= 2
        assert (overlaps > 0) is pipeline
