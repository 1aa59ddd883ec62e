"""Protocol v2 codec: frames, CRCs, message payloads (mirror of firmware/src/proto.h).

Every decoder checks each length and count against the payload it was given: a short, long or
inconsistent answer raises a one-line `DeviceError` naming the message and the field, never an
IndexError or struct.error.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from pipeline.errors import DeviceError

VERSION = 2
SYNC = b"\xa5\x5a"
HEADER_BYTES = 7
TRAILER_BYTES = 4
MAX_PAYLOAD = 1024
RESPONSE = 0x80
MAX_WINDOW = 64  # LOAD_BURST frames one BURST_ACK may cover (two windows in flight < 128 seqs)
CHUNK_HEADER = 6  # u8 tensor, u8 reserved, u32 offset in front of LOAD_INPUT/LOAD_BURST data
READ_HEADER = 6   # u8 tensor, u8 reserved, u32 offset in front of READ_OUTPUT data


class Msg(IntEnum):
    """Frame types; a response is the request type | 0x80."""

    HELLO = 0x01
    SET_BAUD = 0x02
    LOAD_INPUT = 0x03
    INFER = 0x04
    READ_OUTPUT = 0x05
    STATS = 0x06
    RESET = 0x07
    TENSOR = 0x08
    LOAD_BURST = 0x09
    BURST_ACK = 0x0A
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


def msg_name(code: int) -> str:
    """A frame type's name, or its hex code when unknown."""
    return Msg(code).name if code in Msg._value2member_map_ else f"0x{code:02x}"


COUNTER_KINDS = {0: "cycles", 1: "instructions", 2: "micros"}
RESET_REASONS = {0: "unknown", 1: "power-on", 2: "software", 3: "watchdog", 4: "pin",
                 5: "brownout", 6: "fault"}
# infer_init() results (firmware/src/infer.h); backends may add their own codes.
MODEL_STATUS = {1: "schema version mismatch", 2: "op registration failed",
                3: "tensors do not fit the arena", 4: "too many inputs or outputs",
                5: "inputs do not fit the staging buffer",
                6: "an input or output type the protocol does not know"}


@dataclass(frozen=True)
class DType:
    """One element type the protocol can carry."""

    code: int
    name: str
    itemsize: int

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype."""
        return np.dtype(self.name)


# The protocol's element types: code -> DType. The firmware's copy is INFER_DTYPES in
# firmware/src/infer.h (tests/test_hil_protocol.py fails when the two disagree). The codes are
# TFLite's schema TensorType values.
DTYPES: dict[int, DType] = {d.code: d for d in (
    DType(0, "float32", 4), DType(2, "int32", 4), DType(3, "uint8", 1), DType(7, "int16", 2),
    DType(9, "int8", 1))}


def dtype(code: int) -> DType:
    """The DType for a code; DeviceError for a code outside the table."""
    try:
        return DTYPES[code]
    except KeyError:
        known = ", ".join(f"{d.code} {d.name}" for d in DTYPES.values())
        raise DeviceError(f"unknown dtype code {code} (known: {known}); "
                          "host and firmware disagree, reflash the firmware") from None


def crc8(data: bytes) -> int:
    """CRC-8/SMBUS (poly 0x07, init 0) of the header."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC (zlib's, reflected poly 0xEDB88320) of frames and tensors."""
    return zlib.crc32(data) & 0xFFFFFFFF


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
    return SYNC + body + struct.pack("<I", crc32(body))


def frame_bytes(payload_len: int) -> int:
    """Bytes on the wire for a frame with this payload."""
    return HEADER_BYTES + payload_len + TRAILER_BYTES


@dataclass
class Decoder:
    """Incremental frame decoder: feed bytes, get frames; skips garbage and corrupt frames."""

    buf: bytearray = field(default_factory=bytearray)
    torn: list[tuple[int, int, int]] = field(default_factory=list)  # (type, seq, frame bytes)
    bad_header: int = 0
    bad_crc: int = 0
    dropped: int = 0

    def _skip(self) -> None:
        k = self.buf.find(SYNC[:1], 1)
        k = len(self.buf) if k < 0 else k
        self.dropped += k
        del self.buf[:k]

    def pending(self) -> tuple[int, int, int] | None:
        """(type, seq, frame bytes) of the incomplete frame at the head, if its header is good."""
        if len(self.buf) < HEADER_BYTES or self.buf[:2] != SYNC:
            return None
        type_, seq, length = struct.unpack_from("<BBH", self.buf, 2)
        if crc8(bytes(self.buf[2:6])) != self.buf[6] or length > MAX_PAYLOAD:
            return None
        return type_, seq, frame_bytes(length)

    def abandon(self) -> None:
        """Give up on the incomplete frame at the head (its rest was lost); keep what follows."""
        head = self.pending()
        if head is not None:
            self.torn.append(head)
            self.bad_crc += 1
        if self.buf:
            self._skip()

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
            total = frame_bytes(length)
            if len(self.buf) < total:
                break
            body = bytes(self.buf[2:HEADER_BYTES + length])
            (crc,) = struct.unpack_from("<I", self.buf, HEADER_BYTES + length)
            if crc32(body) != crc:
                self.bad_crc += 1
                self.torn.append((type_, seq, total))
                self._skip()
                continue
            out.append(Frame(type_, seq, bytes(self.buf[HEADER_BYTES:HEADER_BYTES + length])))
            del self.buf[:total]
        return out


# ---- strict payload reading -------------------------------------------------------------------


class _Reader:
    """Reads fields off a payload; every shortfall is a DeviceError naming the message and field."""

    def __init__(self, what: str, payload: bytes) -> None:
        self.what, self.p, self.off = what, bytes(payload), 0

    def _need(self, n: int, field_: str) -> None:
        if self.off + n > len(self.p):
            raise DeviceError(f"{self.what}: {len(self.p)}-byte payload ends inside {field_} "
                              f"(needs {self.off + n} bytes)")

    def unpack(self, fmt: str, field_: str) -> tuple:
        """Unpack little-endian `fmt` at the cursor."""
        n = struct.calcsize("<" + fmt)
        self._need(n, field_)
        vals = struct.unpack_from("<" + fmt, self.p, self.off)
        self.off += n
        return vals

    def take(self, n: int, field_: str) -> bytes:
        """The next n raw bytes."""
        self._need(n, field_)
        data = self.p[self.off:self.off + n]
        self.off += n
        return data

    def string(self, field_: str) -> str:
        """u8 length + ASCII."""
        (n,) = self.unpack("B", f"the length of {field_}")
        return self.take(n, field_).decode("ascii", "replace")

    def rest(self) -> bytes:
        """Everything after the cursor."""
        data, self.off = self.p[self.off:], len(self.p)
        return data

    def end(self) -> None:
        """No bytes may be left over."""
        if self.off != len(self.p):
            raise DeviceError(f"{self.what}: {len(self.p) - self.off} unexpected bytes after "
                              f"the last field ({len(self.p)}-byte payload, expected {self.off})")


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
    def np_dtype(self) -> np.dtype:
        """The numpy dtype for this tensor."""
        return dtype(self.dtype).numpy

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return {"dtype": dtype(self.dtype).name, "shape": list(self.shape),
                "scale": self.scale, "zero_point": self.zero_point, "bytes": self.bytes}


@dataclass(frozen=True)
class Hello:
    """The device's answer to HELLO; `inputs`/`outputs` come from TENSOR requests."""

    version: int
    counter_kind: str
    max_payload: int
    cpu_hz: int
    baud: int
    max_baud: int
    arena_bytes: int
    num_inputs: int
    num_outputs: int
    max_runs: int
    reset_reason: str
    model_status: int
    window: int
    pipeline: bool  # the device may answer while the next window arrives (a buffered receiver)
    board: str
    backend: str
    model_hash: str
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()


HELLO_FIXED = "BBHIIIIBBBBiBB"  # the fields before the strings
FLAG_PIPELINE = 1


def decode_hello(p: bytes) -> Hello:
    """Parse a HELLO answer payload (without the tensor table)."""
    r = _Reader("HELLO answer", p)
    (ver,) = r.unpack("B", "the protocol version")
    if ver != VERSION:  # later fields may differ: say so before misreading them
        raise DeviceError(f"device speaks protocol v{ver}, host v{VERSION}; reflash the firmware")
    (kind, max_payload, cpu_hz, baud, max_baud, arena, ni, no, max_runs, reason, status,
     window, flags) = r.unpack(HELLO_FIXED[1:], "the fixed fields")
    board = r.string("the board name")
    backend = r.string("the backend name")
    model_hash = r.string("the model hash")
    r.end()
    if not 1 <= window <= MAX_WINDOW:
        raise DeviceError(f"HELLO answer: window {window} outside 1..{MAX_WINDOW}")
    if not 16 <= max_payload <= MAX_PAYLOAD:
        raise DeviceError(f"HELLO answer: max payload {max_payload} outside 16..{MAX_PAYLOAD}")
    if max_runs < 1:
        raise DeviceError("HELLO answer: max runs is 0")
    return Hello(ver, COUNTER_KINDS.get(kind, str(kind)), max_payload, cpu_hz, baud, max_baud,
                 arena, ni, no, max_runs, RESET_REASONS.get(reason, str(reason)), status, window,
                 bool(flags & FLAG_PIPELINE), board, backend, model_hash)


TENSOR_KINDS = ("input", "output")


def tensor_request(kind: int, index: int) -> bytes:
    """TENSOR request payload: kind 0 = input, 1 = output."""
    return struct.pack("<BB", kind, index)


def decode_tensor(p: bytes, kind: int, index: int) -> TensorInfo:
    """Parse a TENSOR answer and check that it describes the tensor asked for."""
    what = f"TENSOR answer for {TENSOR_KINDS[kind]} {index}"
    r = _Reader(what, p)
    got_kind, got_index, code, rank = r.unpack("BBBB", "the tensor header")
    if (got_kind, got_index) != (kind, index):
        got = TENSOR_KINDS[got_kind] if got_kind < 2 else f"kind {got_kind}"
        raise DeviceError(f"{what}: describes {got} {got_index}")
    dims = r.unpack(f"{rank}i", f"{rank} dims")
    scale, zp, nbytes = r.unpack("fiI", "scale, zero point and bytes")
    r.end()
    try:
        dt = dtype(code)
    except DeviceError as e:
        raise DeviceError(f"{what}: {e}") from None
    if any(d < 0 for d in dims):
        raise DeviceError(f"{what}: negative dimension in {list(dims)}")
    want = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
    if nbytes != want:
        raise DeviceError(f"{what}: {nbytes} bytes, but {dt.name} {list(dims)} needs {want}")
    return TensorInfo(code, tuple(dims), scale, zp, nbytes)


def load_input(tensor: int, offset: int, data: bytes) -> bytes:
    """LOAD_INPUT / LOAD_BURST request payload."""
    return struct.pack("<BBI", tensor, 0, offset) + data


def decode_load_ack(p: bytes) -> tuple[int, int, int]:
    """Parse a LOAD_INPUT answer: (tensor, offset, bytes written)."""
    r = _Reader("LOAD_INPUT answer", p)
    tensor, _, offset, n = r.unpack("BBIH", "the chunk header")
    r.end()
    return tensor, offset, n


BURST_WANT_CRC = 1  # BURST_ACK flag: add the CRC-32 of the whole input tensor


def burst_ack(first_seq: int, count: int, tensor: int, want_crc: bool) -> bytes:
    """BURST_ACK request payload; count 0 asks for the tensor's CRC only."""
    return struct.pack("<BBBB", first_seq & 0xFF, count, BURST_WANT_CRC if want_crc else 0,
                       tensor)


@dataclass(frozen=True)
class BurstAck:
    """Which LOAD_BURST frames of a window the device stored, and the input's CRC if asked."""

    first_seq: int
    count: int
    mask: int
    tensor_crc: int | None

    def received(self, k: int) -> bool:
        """True if frame first_seq + k arrived intact."""
        return bool(self.mask >> k & 1)


def decode_burst_ack(p: bytes, first_seq: int, count: int, tensor: int,
                     want_crc: bool) -> BurstAck:
    """Parse a BURST_ACK answer and check it answers the window asked about."""
    r = _Reader("BURST_ACK answer", p)
    got_first, got_count, flags, got_tensor = r.unpack("BBBB", "the window fields")
    if (got_first, got_count, got_tensor) != (first_seq & 0xFF, count, tensor):
        raise DeviceError(f"BURST_ACK answer: covers seq {got_first} x{got_count} of tensor "
                          f"{got_tensor}, asked seq {first_seq & 0xFF} x{count} of {tensor}")
    mask = int.from_bytes(r.take((count + 7) // 8, f"the mask of {count} frames"), "little")
    crc = r.unpack("I", "the tensor CRC")[0] if flags & BURST_WANT_CRC else None
    r.end()
    if want_crc and crc is None:
        raise DeviceError("BURST_ACK answer: no tensor CRC although one was asked for")
    if mask >> count:
        raise DeviceError(f"BURST_ACK answer: mask 0x{mask:x} has bits past {count} frames")
    return BurstAck(got_first, got_count, mask, crc)


def infer(runs: int, max_inline: int = MAX_PAYLOAD) -> bytes:
    """INFER request payload: runs, and the most output bytes the answer may carry inline."""
    return struct.pack("<HH", runs, max_inline)


INFER_HEAD = "HBBiI"  # runs, counter kind, flags, status, CRC-32 of the outputs


@dataclass(frozen=True)
class InferResult:
    """The device's answer to INFER: per-run counter deltas and, if inline, the outputs."""

    counters: tuple[int, ...]
    counter_kind: str
    outputs_inline: bool
    status: int
    outputs_crc: int
    output_bytes: bytes


def decode_infer(p: bytes, runs: int | None = None, output_bytes: int | None = None
                 ) -> InferResult:
    """Parse an INFER answer; with `runs`/`output_bytes` also check them against the request."""
    r = _Reader("INFER answer", p)
    got_runs, kind, flags, status, out_crc = r.unpack(INFER_HEAD, "the fixed fields")
    if runs is not None and got_runs != runs:
        raise DeviceError(f"INFER answer: {got_runs} runs, asked for {runs}")
    counters = r.unpack(f"{got_runs}I", f"{got_runs} counters")
    inline = bool(flags & 1)
    data = r.rest()
    if not inline and data:
        raise DeviceError(f"INFER answer: {len(data)} bytes after the counters, but no outputs "
                          "inline")
    if inline and output_bytes is not None and len(data) != output_bytes:
        raise DeviceError(f"INFER answer: {len(data)} output bytes inline, the model has "
                          f"{output_bytes}")
    return InferResult(tuple(counters), COUNTER_KINDS.get(kind, str(kind)), inline, status,
                       out_crc, data)


def read_output(tensor: int, offset: int, length: int) -> bytes:
    """READ_OUTPUT request payload."""
    return struct.pack("<BBIH", tensor, 0, offset, length)


def decode_read_output(p: bytes, tensor: int, offset: int, length: int) -> bytes:
    """Parse a READ_OUTPUT answer; the echoed tensor and offset and the length must match."""
    r = _Reader("READ_OUTPUT answer", p)
    got_tensor, _, got_offset = r.unpack("BBI", "the chunk header")
    if (got_tensor, got_offset) != (tensor, offset):
        raise DeviceError(f"READ_OUTPUT answer: output {got_tensor} at offset {got_offset}, "
                          f"asked for output {tensor} at {offset}")
    data = r.rest()
    if len(data) != length:
        raise DeviceError(f"READ_OUTPUT answer: {len(data)} bytes of output {tensor} at offset "
                          f"{offset}, asked for {length}")
    return data


STATS_FIELDS = ("rx_frames", "rx_bad_header", "rx_bad_crc", "rx_dropped_bytes", "tx_frames",
                "naks", "replays", "infer_runs", "uptime_ms")


def decode_stats(p: bytes) -> dict:
    """Parse a STATS answer payload."""
    r = _Reader("STATS answer", p)
    vals = r.unpack(f"{len(STATS_FIELDS)}I", "the counters")
    (reason,) = r.unpack("B", "the reset reason")
    r.end()
    out = dict(zip(STATS_FIELDS, vals, strict=True))
    out["reset_reason"] = RESET_REASONS.get(reason, "unknown")
    return out


def decode_set_baud(p: bytes) -> int:
    """Parse a SET_BAUD answer: the rate the device switches to."""
    r = _Reader("SET_BAUD answer", p)
    (baud,) = r.unpack("I", "the baud rate")
    r.end()
    return baud


def decode_nak(p: bytes) -> tuple[int, int, int]:
    """Parse a NAK payload: (request type, reason code, detail)."""
    r = _Reader("NAK", p)
    req, code, detail = r.unpack("BBI", "the request type, reason and detail")
    r.end()
    return req, code, detail


def decode_boot(p: bytes) -> tuple[int, str, int]:
    """Parse a BOOT payload: (protocol version, reset reason, model status)."""
    r = _Reader("BOOT frame", p)
    ver, reason, status = r.unpack("BBi", "the version, reset reason and model status")
    r.end()
    return ver, RESET_REASONS.get(reason, str(reason)), status
