"""Protocol v1 codec: frames, CRCs, message payloads (mirror of firmware/src/proto.h)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

VERSION = 1
SYNC = b"\xa5\x5a"
HEADER_BYTES = 7
TRAILER_BYTES = 2
MAX_PAYLOAD = 1024
RESPONSE = 0x80


class Msg(IntEnum):
    """Frame types; a response is the request type | 0x80."""

    HELLO = 0x01
    SET_BAUD = 0x02
    LOAD_INPUT = 0x03
    INFER = 0x04
    READ_OUTPUT = 0x05
    STATS = 0x06
    RESET = 0x07
    BOOT = 0x70
    NAK = 0x7F


class Nak(IntEnum):
    """NAK reason codes."""

    UNKNOWN_TYPE = 1
    BAD_LENGTH = 2
    BAD_TENSOR = 3
    OUT_OF_RANGE = 4
    BAD_ARG = 5
    INFER_FAILED = 6
    BAUD_UNSUPPORTED = 7
    NOT_READY = 8
    BAD_CRC = 9


COUNTER_KINDS = {0: "cycles", 1: "instructions", 2: "micros"}
RESET_REASONS = {0: "unknown", 1: "power-on", 2: "software", 3: "watchdog", 4: "pin",
                 5: "brownout", 6: "fault"}
# TFLite TensorType codes -> numpy dtypes.
DTYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 7: np.int16, 9: np.int8}


def crc8(data: bytes) -> int:
    """CRC-8/SMBUS (poly 0x07, init 0)."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc16_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return table


_CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF)."""
    crc = 0xFFFF
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ b) & 0xFF]
    return crc


@dataclass(frozen=True)
class Frame:
    """One decoded frame."""

    type: int
    seq: int
    payload: bytes = b""


def encode(type_: int, seq: int, payload: bytes = b"") -> bytes:
    """Frame a payload."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    head = struct.pack("<BBH", type_, seq & 0xFF, len(payload))
    body = head + bytes([crc8(head)]) + payload
    return SYNC + body + struct.pack("<H", crc16(body))


@dataclass
class Decoder:
    """Incremental frame decoder: feed bytes, get frames; skips garbage and corrupt frames."""

    buf: bytearray = field(default_factory=bytearray)
    torn: list[tuple[int, int]] = field(default_factory=list)  # (type, seq): header ok, CRC bad
    bad_header: int = 0
    bad_crc: int = 0
    dropped: int = 0

    def _skip(self) -> None:
        k = self.buf.find(SYNC[:1], 1)
        k = len(self.buf) if k < 0 else k
        self.dropped += k
        del self.buf[:k]

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames completed by them."""
        self.buf += data
        out: list[Frame] = []
        while self.buf:
            if self.buf[0] != SYNC[0] or (len(self.buf) > 1 and self.buf[1] != SYNC[1]):
                self._skip()
                continue
            if len(self.buf) < HEADER_BYTES:
                break
            type_, seq, length = struct.unpack_from("<BBH", self.buf, 2)
            if crc8(bytes(self.buf[2:6])) != self.buf[6] or length > MAX_PAYLOAD:
                self.bad_header += 1
                self._skip()
                continue
            total = HEADER_BYTES + length + TRAILER_BYTES
            if len(self.buf) < total:
                break
            body = bytes(self.buf[2:HEADER_BYTES + length])
            (crc,) = struct.unpack_from("<H", self.buf, HEADER_BYTES + length)
            if crc16(body) != crc:
                self.bad_crc += 1
                self.torn.append((type_, seq))
                self._skip()
                continue
            out.append(Frame(type_, seq, bytes(self.buf[HEADER_BYTES:HEADER_BYTES + length])))
            del self.buf[:total]
        return out


# ---- message payloads -------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """Shape, dtype and quantization of one model input or output."""

    dtype: int
    shape: tuple[int, ...]
    scale: float
    zero_point: int
    bytes: int

    @property
    def np_dtype(self) -> type:
        """The numpy dtype for this tensor."""
        return DTYPES.get(self.dtype, np.uint8)

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return {"dtype": np.dtype(self.np_dtype).name, "shape": list(self.shape),
                "scale": self.scale, "zero_point": self.zero_point, "bytes": self.bytes}


@dataclass(frozen=True)
class Hello:
    """The device's answer to HELLO."""

    version: int
    counter_kind: str
    max_payload: int
    cpu_hz: int
    baud: int
    max_baud: int
    arena_bytes: int
    max_runs: int
    reset_reason: str
    model_status: int
    board: str
    backend: str
    model_hash: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


def _str(p: bytes, off: int) -> tuple[str, int]:
    n = p[off]
    return p[off + 1:off + 1 + n].decode("ascii", "replace"), off + 1 + n


def _tensor(p: bytes, off: int) -> tuple[TensorInfo, int]:
    dtype, rank = p[off], p[off + 1]
    dims = struct.unpack_from(f"<{rank}i", p, off + 2)
    off += 2 + 4 * rank
    scale, zp, nbytes = struct.unpack_from("<fiI", p, off)
    return TensorInfo(dtype, tuple(dims), scale, zp, nbytes), off + 12


def decode_hello(p: bytes) -> Hello:
    """Parse a HELLO response payload."""
    (ver, kind, max_payload, cpu_hz, baud, max_baud, arena, ni, no, max_runs, reason,
     status) = struct.unpack_from("<BBHIIIIBBBBi", p, 0)
    off = 28
    board, off = _str(p, off)
    backend, off = _str(p, off)
    model_hash, off = _str(p, off)
    tensors = []
    for _ in range(ni + no):
        t, off = _tensor(p, off)
        tensors.append(t)
    return Hello(ver, COUNTER_KINDS.get(kind, str(kind)), max_payload, cpu_hz, baud, max_baud,
                 arena, max_runs, RESET_REASONS.get(reason, str(reason)), status, board,
                 backend, model_hash, tuple(tensors[:ni]), tuple(tensors[ni:]))


def load_input(tensor: int, offset: int, data: bytes) -> bytes:
    """LOAD_INPUT request payload."""
    return struct.pack("<BBI", tensor, 0, offset) + data


def infer(runs: int) -> bytes:
    """INFER request payload."""
    return struct.pack("<H", runs)


def read_output(tensor: int, offset: int, length: int) -> bytes:
    """READ_OUTPUT request payload."""
    return struct.pack("<BBIH", tensor, 0, offset, length)


@dataclass(frozen=True)
class InferResult:
    """The device's answer to INFER: per-run counter deltas and, if inline, the outputs."""

    counters: tuple[int, ...]
    counter_kind: str
    outputs_inline: bool
    status: int
    output_bytes: bytes


def decode_infer(p: bytes) -> InferResult:
    """Parse an INFER response payload."""
    runs, kind, flags, status = struct.unpack_from("<HBBi", p, 0)
    counters = struct.unpack_from(f"<{runs}I", p, 8)
    return InferResult(counters, COUNTER_KINDS.get(kind, str(kind)), bool(flags & 1), status,
                       bytes(p[8 + 4 * runs:]))


STATS_FIELDS = ("rx_frames", "rx_bad_header", "rx_bad_crc", "rx_dropped_bytes", "tx_frames",
                "naks", "replays", "infer_runs", "uptime_ms")


def decode_stats(p: bytes) -> dict:
    """Parse a STATS response payload."""
    vals = struct.unpack_from(f"<{len(STATS_FIELDS)}I", p, 0)
    out = dict(zip(STATS_FIELDS, vals, strict=True))
    out["reset_reason"] = RESET_REASONS.get(p[4 * len(STATS_FIELDS)], "unknown")
    return out


def decode_nak(p: bytes) -> tuple[int, int, int]:
    """Parse a NAK payload: (request type, reason code, detail)."""
    req, code, detail = struct.unpack_from("<BBI", p, 0)
    return req, code, detail


def decode_boot(p: bytes) -> tuple[int, str, int]:
    """Parse a BOOT payload: (protocol version, reset reason, model status)."""
    ver, reason, status = struct.unpack_from("<BBi", p, 0)
    return ver, RESET_REASONS.get(reason, str(reason)), status
