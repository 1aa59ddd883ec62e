"""Request/response link to a device over pyserial (a real port or `socket://host:port`)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import serial

from pipeline.errors import DeviceError
from pipeline.hil import protocol as P

MIN_CHUNK = 32


class NakError(DeviceError):
    """The device refused a request."""


@dataclass
class LinkStats:
    """What the host saw on the link."""

    requests: int = 0
    retries: int = 0
    timeouts: int = 0
    stray_frames: int = 0
    torn: int = 0      # answers that arrived with a bad CRC (resent at once)
    nak_crc: int = 0   # requests the device saw with a bad CRC (resent at once)
    boots: int = 0
    bytes_out: int = 0  # on the wire, host -> device (frames, resends, garbage injected)
    bytes_in: int = 0   # on the wire, device -> host


@dataclass
class Link:
    """One device link: framing, sequence numbers, timeouts and retries."""

    url: str
    baud: int = 115200
    timeout: float = 1.0          # seconds to wait for an answer before resending
    retries: int = 4              # resends before giving up
    connect_timeout: float = 10.0
    first_infer_timeout: float = 30.0
    open_fn: Callable[..., serial.SerialBase] = serial.serial_for_url
    stats: LinkStats = field(default_factory=LinkStats)
    hello_info: P.Hello | None = None
    _ser: serial.SerialBase | None = None
    _dec: P.Decoder = field(default_factory=P.Decoder)
    _seq: int = 0
    _chunk: int = 0
    _infer_rtt: float | None = None
    _clean: int = 0

    def open(self) -> Link:
        """Open the port; socket URLs are retried until the emulator listens."""
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                self._ser = self.open_fn(self.url, baudrate=self.baud, timeout=0.02)
                sock = getattr(self._ser, "_socket", None)
                if sock is not None:  # small frames, one at a time: no Nagle delay
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return self
            except (serial.SerialException, OSError) as e:
                if not self.url.startswith("socket://") or time.monotonic() > deadline:
                    raise DeviceError(f"{self.url}: cannot open ({e})") from None
                time.sleep(0.05)

    def close(self) -> None:
        """Close the port (idempotent)."""
        if self._ser is not None:
            try:
                self._ser.close()
            finally:
                self._ser = None

    def __enter__(self) -> Link:
        return self.open() if self._ser is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transport -------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        try:
            assert self._ser is not None, "link not open"
            self._ser.write(data)
            self.stats.bytes_out += len(data)
        except (serial.SerialException, OSError) as e:
            raise DeviceError(f"{self.url}: link lost while writing ({e})") from None

    def _read(self) -> bytes:
        try:
            assert self._ser is not None, "link not open"
            data = self._ser.read(max(1, self._ser.in_waiting or 1))
            self.stats.bytes_in += len(data)
            return data
        except (serial.SerialException, OSError) as e:
            raise DeviceError(f"{self.url}: link lost while reading ({e})") from None

    def write_raw(self, data: bytes) -> None:
        """Send raw bytes (tests use it to inject garbage)."""
        self._write(data)

    def wait_frame(self, accept: Callable[[P.Frame], bool], timeout: float,
                   torn_seq: int | None = None) -> P.Frame | None:
        """Read until a frame passes `accept`, or None after `timeout` seconds.

        Also returns None at once when a frame with seq `torn_seq` arrives corrupted.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frames = self._dec.feed(self._read())
            if self._dec.torn:
                torn, self._dec.torn = self._dec.torn, []
                if torn_seq is not None and any(seq == torn_seq for _, seq in torn) \
                        and not frames:
                    self.stats.torn += 1
                    return None
            for f in frames:
                if accept(f):
                    return f
                if f.type == P.Msg.BOOT:
                    self.stats.boots += 1
                else:
                    self.stats.stray_frames += 1
        return None

    def request(self, msg: P.Msg | int, payload: bytes = b"", timeout: float | None = None,
                retries: int | None = None) -> bytes:
        """Send a request and return the response payload; resend the same frame on timeout."""
        name = P.Msg(msg).name if msg in P.Msg._value2member_map_ else f"0x{msg:02x}"
        self._seq = (self._seq + 1) & 0xFF
        seq = self._seq
        frame = P.encode(msg, seq, payload)
        want = (msg | P.RESPONSE, P.Msg.NAK)
        tries = 1 + (self.retries if retries is None else retries)
        self.stats.requests += 1
        for attempt in range(tries):
            if attempt:
                self.stats.retries += 1
            self._write(frame)
            torn = self.stats.torn
            got = self.wait_frame(lambda f: f.seq == seq and f.type in want,
                                  self.timeout if timeout is None else timeout, torn_seq=seq)
            if got is None:
                if self.stats.torn == torn:
                    self.stats.timeouts += 1
                    self._dec.buf.clear()  # a torn frame must not swallow the next answer
                continue
            if got.type == P.Msg.NAK:
                req, code, detail = P.decode_nak(got.payload)
                if code == P.Nak.BAD_CRC:  # our request arrived damaged: send it again
                    self.stats.nak_crc += 1
                    continue
                reason = P.Nak(code).name if code in P.Nak._value2member_map_ else str(code)
                raise NakError(f"{self.url}: device refused {name}: {reason} ({detail})")
            return got.payload
        raise DeviceError(
            f"{self.url}: no answer to {name} after {tries} tries; check the cable, "
            "the baud rate and that the tinypipe firmware is flashed (try --flash)")

    # ---- commands --------------------------------------------------------------------------

    def hello(self, timeout: float | None = None) -> P.Hello:
        """Handshake; remembers and returns the device description."""
        info = P.decode_hello(self.request(P.Msg.HELLO, timeout=timeout))
        if info.version != P.VERSION:
            raise DeviceError(f"{self.url}: device speaks protocol v{info.version}, host "
                              f"v{P.VERSION}; reflash the firmware")
        self.hello_info = info
        return info

    def set_baud(self, baud: int) -> None:
        """Switch both ends to a faster rate, falling back if the new rate does not work."""
        old = self.baud
        self.request(P.Msg.SET_BAUD, P.struct.pack("<I", baud))
        assert self._ser is not None
        self._ser.baudrate = self.baud = baud
        try:
            self.hello()
        except DeviceError:
            self._ser.baudrate = self.baud = old
            time.sleep(2.5)  # the device reverts after 2 s without a valid frame
            self.hello()

    def _max_chunk(self) -> int:
        return (self.hello_info.max_payload if self.hello_info else P.MAX_PAYLOAD) - 8

    def load_input(self, index: int, data: bytes) -> None:
        """Write one input tensor in acknowledged, offset-addressed chunks.

        Chunks shrink when requests need resending (a noisy line) and grow back when clean.
        """
        off = 0
        while off < len(data):
            self._chunk = min(self._chunk or self._max_chunk(), self._max_chunk())
            part = data[off:off + self._chunk]
            retries_before = self.stats.retries
            ack = self.request(P.Msg.LOAD_INPUT, P.load_input(index, off, part))
            tensor, _, aoff, alen = P.struct.unpack_from("<BBIH", ack, 0)
            if (tensor, aoff, alen) != (index, off, len(part)):
                raise DeviceError(f"{self.url}: LOAD_INPUT acknowledged the wrong chunk")
            off += len(part)
            if self.stats.retries > retries_before:
                self._chunk = max(MIN_CHUNK, self._chunk // 2)
                self._clean = 0
            else:
                self._clean += 1
                if self._clean >= 8:
                    self._chunk, self._clean = self._chunk * 2, 0

    def read_output(self, index: int, nbytes: int) -> bytes:
        """Read one output tensor in chunks."""
        chunk = self._max_chunk()
        out = bytearray()
        while len(out) < nbytes:
            n = min(chunk, nbytes - len(out))
            p = self.request(P.Msg.READ_OUTPUT, P.read_output(index, len(out), n))
            out += p[6:6 + n]
        return bytes(out)

    def infer(self, runs: int = 1, timeout: float | None = None
              ) -> tuple[P.InferResult, list[np.ndarray]]:
        """Run the model `runs` times on the loaded input; returns counters and outputs.

        The first INFER may take up to `first_infer_timeout`; later ones wait the link
        timeout plus twice the slowest clean round trip seen per run.
        """
        info = self.hello_info or self.hello()
        if timeout is None:
            timeout = self.first_infer_timeout if self._infer_rtt is None \
                else self.timeout + 2 * self._infer_rtt * runs
        t0, retries = time.monotonic(), self.stats.retries
        res = P.decode_infer(self.request(P.Msg.INFER, P.infer(runs), timeout=timeout))
        if self.stats.retries == retries:
            rtt = (time.monotonic() - t0) / runs
            self._infer_rtt = max(rtt, self._infer_rtt or 0.0)
        outs, off = [], 0
        for k, t in enumerate(info.outputs):
            raw = res.output_bytes[off:off + t.bytes] if res.outputs_inline \
                else self.read_output(k, t.bytes)
            off += t.bytes
            arr = np.frombuffer(raw, dtype=t.np_dtype)
            shape = t.shape[1:] if len(t.shape) > 1 and t.shape[0] == 1 else t.shape
            outs.append(arr.reshape(shape))
        return res, outs

    def stats_device(self) -> dict:
        """Device-side counters (frames, CRC errors, NAKs, replays, ...)."""
        return P.decode_stats(self.request(P.Msg.STATS))

    def reset(self, wait_boot: float = 10.0) -> str:
        """Reset the device and wait for its BOOT frame; returns the reset reason."""
        self.request(P.Msg.RESET)
        boot = self.wait_frame(lambda f: f.type == P.Msg.BOOT, wait_boot)
        if boot is None:
            raise DeviceError(f"{self.url}: device did not come back after RESET")
        self.stats.boots += 1
        return P.decode_boot(boot.payload)[1]
