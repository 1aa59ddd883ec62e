"""A protocol v2 device written with the host codec, served on a TCP socket for pyserial.

It keeps the firmware's rules (replay of a repeated request, silent LOAD_BURST frames reported by
BURST_ACK, outputs inline up to the host's limit) so the real `Link` can be tested over a real
`socket://` transport; hooks lose, damage or falsify what it says.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.hil import protocol as P

# hook(request frame, answer frame bytes) -> the bytes to send instead (b"" = lose the answer)
AnswerHook = Callable[[P.Frame, bytes], bytes]
# hook(frame) -> True to handle it, False to act as if it never arrived, "damaged" to act as if
# its CRC failed
RequestHook = Callable[[P.Frame], bool | str]


def tensor_payload(dtype: int, shape: tuple[int, ...], scale: float, zp: int,
                   nbytes: int | None = None) -> bytes:
    """The body of a TENSOR answer after kind and index."""
    if nbytes is None:
        size = 1
        for d in shape:
            size *= d
        nbytes = size * (P.DTYPES[dtype].itemsize if dtype in P.DTYPES else 4)
    return bytes([dtype, len(shape)]) + struct.pack(f"<{len(shape)}i", *shape) + \
        struct.pack("<fiI", scale, zp, nbytes)


def hello_payload(window: int = 64, ni: int = 1, no: int = 1, max_payload: int = 1024,
                  board: str = "fake-board", status: int = 0, pipeline: bool = True) -> bytes:
    """A HELLO answer payload."""
    def s(x: str) -> bytes:
        return bytes([len(x)]) + x.encode()

    head = struct.pack("<" + P.HELLO_FIXED, P.VERSION, 1, max_payload, 25_000_000, 115200,
                       1_562_500, 4032, ni, no, 32, 2, status, window, int(pipeline))
    return head + s(board) + s("aot") + s("c8830183054c92d8")


@dataclass(eq=False)
class FakeDevice:
    """One int8 input of `in_bytes`, one output: the input's bytes reversed, cut or repeated to
    `out_bytes`. Use as a context manager; `url` is its socket:// address."""

    in_bytes: int = 256
    out_bytes: int = 4
    window: int = 64
    max_payload: int = 1024
    input_dtype: int = 9
    pipeline: bool = True
    on_answer: AnswerHook | None = None
    on_request: RequestHook | None = None
    executed: dict[int, int] = field(default_factory=dict)   # request type -> times run
    requests: list[P.Frame] = field(default_factory=list)
    staged: bytearray = field(default_factory=bytearray)
    _last: tuple[int, int, bytes] | None = None
    _bursts: set[int] = field(default_factory=set)  # seqs of stored LOAD_BURST frames
    _cursor: int = 0
    _outputs: bytes = b""
    _listener: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeDevice:
        self.staged = bytearray(self.in_bytes)
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()

    def _serve(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
                break
            except TimeoutError:
                continue
        else:
            return
        conn.settimeout(0.05)
        dec = P.Decoder()
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                for f in dec.feed(data):
                    fate = True if self.on_request is None else self.on_request(f)
                    if fate == "damaged":
                        dec.torn.append((f.type, f.seq, P.frame_bytes(len(f.payload))))
                    if fate is not True:
                        continue
                    self.requests.append(f)
                    out = self._handle(f)
                    if out and self.on_answer is not None:
                        out = self.on_answer(f, out)
                    if out:
                        conn.sendall(out)
                for type_, seq, _ in dec.torn:
                    if type_ != P.Msg.LOAD_BURST:
                        conn.sendall(self._nak_frame(type_, seq, P.Nak.BAD_CRC, 0))
                dec.torn.clear()

    @staticmethod
    def _nak_frame(type_: int, seq: int, code: int, detail: int) -> bytes:
        return P.encode(P.Msg.NAK, seq, struct.pack("<BBI", type_, code, detail))

    def _handle(self, f: P.Frame) -> bytes:
        ahead = (f.seq - self._cursor) & 0xFF
        if 0 < ahead < 128:  # as the firmware: slots clear as the seqs move past them
            self._bursts -= {(self._cursor + k) & 0xFF for k in range(1, ahead + 1)}
            self._cursor = f.seq
        if f.type == P.Msg.LOAD_BURST:
            err = self._store(f)
            if err:
                return err
            self._bursts.add(f.seq)
            return b""
        if self._last and self._last[:2] == (f.type, f.seq) and f.type != P.Msg.HELLO:
            return self._last[2]
        self.executed[f.type] = self.executed.get(f.type, 0) + 1
        out = self._answer(f)
        self._last = (f.type, f.seq, out)
        return out

    def _store(self, f: P.Frame) -> bytes:
        idx, _, off = struct.unpack_from("<BBI", f.payload)
        data = f.payload[6:]
        if idx != 0:
            return self._nak_frame(f.type, f.seq, P.Nak.BAD_TENSOR, idx)
        if off + len(data) > self.in_bytes:
            return self._nak_frame(f.type, f.seq, P.Nak.OUT_OF_RANGE, off)
        self.staged[off:off + len(data)] = data
        return b""

    def _answer(self, f: P.Frame) -> bytes:
        ok = f.type | P.RESPONSE
        p = f.payload
        if f.type == P.Msg.HELLO:
            self._bursts.clear()
            self._cursor = f.seq
            return P.encode(ok, f.seq, hello_payload(self.window, max_payload=self.max_payload,
                                                     pipeline=self.pipeline))
        if f.type == P.Msg.TENSOR:
            kind, idx = p[0], p[1]
            if idx != 0:
                return self._nak_frame(f.type, f.seq, P.Nak.BAD_TENSOR, kind << 8 | idx)
            body = tensor_payload(self.input_dtype, (1, self.in_bytes), 0.5, -3) if kind == 0 \
                else tensor_payload(9, (1, self.out_bytes), 0.25, 5)
            return P.encode(ok, f.seq, bytes([kind, idx]) + body)
        if f.type == P.Msg.LOAD_INPUT:
            err = self._store(f)
            return err or P.encode(ok, f.seq, p[:6] + struct.pack("<H", len(p) - 6))
        if f.type == P.Msg.BURST_ACK:
            first, count, flags, tensor = p[0], p[1], p[2], p[3]
            mask = 0
            for k in range(count):
                if (first + k) & 0xFF in self._bursts:
                    mask |= 1 << k
            body = bytes([first, count, flags & 1, tensor]) + \
                mask.to_bytes((count + 7) // 8, "little")
            if flags & 1:
                body += struct.pack("<I", P.crc32(bytes(self.staged)))
            return P.encode(ok, f.seq, body)
        if f.type == P.Msg.INFER:
            runs, max_inline = struct.unpack_from("<HH", p)
            data = bytes(reversed(self.staged)) * (1 + self.out_bytes // max(1, self.in_bytes))
            self._outputs = data[:self.out_bytes]
            inline = 12 + 4 * runs + self.out_bytes <= self.max_payload and \
                self.out_bytes <= max_inline
            body = struct.pack("<HBBiI", runs, 1, int(inline), 0, P.crc32(self._outputs))
            body += struct.pack(f"<{runs}I", *([4242] * runs))
            return P.encode(ok, f.seq, body + (self._outputs if inline else b""))
        if f.type == P.Msg.READ_OUTPUT:
            idx, _, off, n = struct.unpack_from("<BBIH", p)
            return P.encode(ok, f.seq, p[:6] + self._outputs[off:off + n])
        if f.type == P.Msg.STATS:
            return P.encode(ok, f.seq, bytes(37))
        return self._nak_frame(f.type, f.seq, P.Nak.UNKNOWN_TYPE, f.type)
