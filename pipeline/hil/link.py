"""Request/response link to a device over pyserial (a real port or `socket://host:port`).

The link adapts to the line it runs on:

- Inputs go out in windows of LOAD_BURST frames with one BURST_ACK per window, so a round trip
  is paid per window, not per chunk; frames the device missed are sent again.
- Chunk sizes (both directions) follow the byte error rate learnt from the frames that made it
  or not, so a noisy line gets frames short enough to get through.
- Resend timeouts follow the measured round trip and bytes-per-second of the line, and a request
  gives up after a time budget without an answer, not after a count of tries.
"""

from __future__ import annotations

import math
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import serial

from pipeline.errors import DeviceError
from pipeline.hil import protocol as P

MIN_CHUNK = 16      # smallest payload chunk (input or output) the link shrinks to
MIN_RTO = 0.05      # seconds: never resend sooner, whatever the measured round trip
GAP_MIN = 0.05      # seconds of silence after which a half-received answer counts as lost
TAIL_BYTES = 32     # received bytes quoted when a request gets no answer
EMULATED = ("socket://", "rfc2217://", "loop://")


class NakError(DeviceError):
    """The device refused a request."""


@dataclass
class LinkStats:
    """What the host saw on the link."""

    requests: int = 0
    retries: int = 0        # requests sent again (timeouts, torn answers, NAK BAD_CRC)
    timeouts: int = 0
    stray_frames: int = 0
    torn: int = 0           # answers that arrived damaged (resent at once)
    nak_crc: int = 0        # requests the device saw with a bad CRC (resent at once)
    boots: int = 0
    bytes_out: int = 0      # on the wire, host -> device (frames, resends, garbage injected)
    bytes_in: int = 0       # on the wire, device -> host
    windows: int = 0        # BURST_ACK rounds
    chunks: int = 0         # LOAD_BURST frames sent, resends included
    resent_chunks: int = 0  # of them, chunks the device had missed
    input_reloads: int = 0  # inputs sent again after their CRC-32 disagreed
    output_rereads: int = 0  # outputs read again after their CRC-32 disagreed


@dataclass
class LineQuality:
    """Byte error rate of one direction, learnt from frames that made it through or not."""

    ok: float = 1.0        # moving average of frame success
    length: float = 64.0   # moving average of frame length, bytes
    alpha: float = 1 / 16  # weight of one frame

    def observe(self, nbytes: int, ok: bool) -> None:
        """Record one frame of `nbytes` that arrived intact or not."""
        self.ok += self.alpha * (float(ok) - self.ok)
        self.length += self.alpha * (nbytes - self.length)

    @property
    def error_rate(self) -> float:
        """Estimated probability that a byte is lost or damaged."""
        return -math.log(max(self.ok, 0.02)) / max(self.length, 1.0)

    def best_payload(self, overhead: int, lo: int, hi: int) -> int:
        """Payload size with the most good bytes per byte sent.

        A frame of c + overhead bytes gets through with probability (1-p)^(c+overhead); the
        goodput c/(c+overhead) * (1-p)^(c+overhead) peaks where c(c+overhead) = overhead/q,
        q = -ln(1-p)."""
        p = self.error_rate
        if p <= 1e-7:
            return hi
        q = -math.log1p(-min(p, 0.5))
        c = (-overhead + math.sqrt(overhead * overhead + 4 * overhead / q)) / 2
        return int(min(hi, max(lo, c)))


@dataclass
class Link:
    """One device link: framing, sequence numbers, windows, adaptive timeouts and chunks."""

    url: str
    baud: int = 115200
    timeout: float = 1.0          # seconds: first resend timeout, and cap of the measured one
    budget: float = 10.0          # seconds without an answer before a request gives up
    connect_timeout: float = 10.0
    first_infer_timeout: float = 30.0
    window: int = P.MAX_WINDOW    # LOAD_BURST frames per BURST_ACK (capped by the device's)
    window_bytes: int = 16384     # and bytes per window
    open_fn: Callable[..., serial.SerialBase] = serial.serial_for_url
    stats: LinkStats = field(default_factory=LinkStats)
    hello_info: P.Hello | None = None
    to_device: LineQuality = field(default_factory=LineQuality)
    to_host: LineQuality = field(default_factory=LineQuality)
    _ser: serial.SerialBase | None = None
    _dec: P.Decoder = field(default_factory=P.Decoder)
    _seq: int = 0
    _srtt: float | None = None    # smoothed round trip, without the bytes' time on the wire
    _rttvar: float = 0.0
    _byte_time: float | None = None  # seconds per byte on the wire
    _chunk: int = 128             # last input chunk; the next is at most twice as big
    _infer_rtt: float | None = None
    _tail: deque = field(default_factory=lambda: deque(maxlen=TAIL_BYTES))
    _last_rx: float = 0.0

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

    @property
    def emulated(self) -> bool:
        """True when the port is a socket (no baud limit), not a UART."""
        return self.url.startswith(EMULATED)

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
        except (serial.SerialException, OSError) as e:
            raise DeviceError(f"{self.url}: link lost while reading ({e})") from None
        if data:
            self.stats.bytes_in += len(data)
            self._tail.extend(data)
            self._last_rx = time.monotonic()
        return data

    def write_raw(self, data: bytes) -> None:
        """Send raw bytes (tests use it to inject garbage)."""
        self._write(data)

    def tail(self) -> str:
        """The last bytes received, in hex, for error messages."""
        if not self.stats.bytes_in:
            return "nothing received"
        shown = " ".join(f"{b:02x}" for b in self._tail)
        return f"last {len(self._tail)} of {self.stats.bytes_in:,} bytes received: {shown}"

    def _decode(self, fn: Callable, *args):
        """Run a protocol decoder; its DeviceError gets the port in front."""
        try:
            return fn(*args)
        except DeviceError as e:
            raise DeviceError(f"{self.url}: {e}") from None

    # ---- timing ----------------------------------------------------------------------------

    def byte_time(self) -> float:
        """Seconds per byte on the wire: measured, else from the baud rate (sockets: a guess)."""
        if self._byte_time is not None:
            return self._byte_time
        return 1e-4 if self.emulated else 10.0 / self.baud

    def rto(self, nbytes: int = 0) -> float:
        """How long to wait for the answer to a request that moves `nbytes` over the wire."""
        base = self.timeout if self._srtt is None else \
            min(self.timeout, max(MIN_RTO, self._srtt + 4 * self._rttvar))
        return base + 2 * nbytes * self.byte_time()

    def _sample_rtt(self, elapsed: float, nbytes: int) -> None:
        r = max(0.0, elapsed - nbytes * self.byte_time())
        if self._srtt is None:
            self._srtt, self._rttvar = r, r / 2
        else:
            self._rttvar += 0.25 * (abs(self._srtt - r) - self._rttvar)
            self._srtt += 0.125 * (r - self._srtt)

    def _sample_byte_time(self, elapsed: float, nbytes: int) -> None:
        if nbytes < 512:
            return
        floor = 0.0 if self.emulated else 10.0 / self.baud
        sample = max(floor, (elapsed - (self._srtt or 0.0)) / nbytes)
        self._byte_time = sample if self._byte_time is None \
            else self._byte_time + 0.25 * (sample - self._byte_time)

    def _gap(self) -> float:
        return max(GAP_MIN, 50 * self.byte_time())

    # ---- requests --------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def wait_frame(self, accept: Callable[[P.Frame], bool], timeout: float,
                   torn_seq: int | None = None) -> P.Frame | None:
        """Read until a frame passes `accept`, or None after `timeout` seconds.

        Also returns None as soon as the answer with seq `torn_seq` is known to be lost: it
        arrived with a bad CRC, or it stopped arriving half-way (its rest was dropped).
        """
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            frames = self._dec.feed(self._read())
            for f in frames:
                if accept(f):
                    self._dec.torn.clear()
                    return f
                if f.type == P.Msg.BOOT:
                    self.stats.boots += 1
                else:
                    self.stats.stray_frames += 1
            head = self._dec.pending()
            if head is not None and now - self._last_rx > self._gap():
                self._dec.abandon()
            torn, self._dec.torn = self._dec.torn, []
            for _type, seq, nbytes in torn:
                if seq == torn_seq:
                    self.stats.torn += 1
                    self.to_host.observe(nbytes, False)
                    return None
            if now >= deadline:
                return None

    def request(self, msg: P.Msg | int, payload: bytes = b"", timeout: float | None = None,
                first_timeout: float | None = None, answer_bytes: int = 0,
                budget: float | None = None) -> bytes:
        """Send a request and return the answer's payload; resend the same frame until then.

        Each try waits `timeout` (default: the measured round trip for this many bytes; the
        first try `first_timeout` if given). NAK BAD_CRC and torn answers resend at once.
        Raises DeviceError after `budget` seconds (default self.budget) without an answer."""
        name = P.msg_name(msg)
        seq = self._next_seq()
        frame = P.encode(msg, seq, payload)
        want = (msg | P.RESPONSE, P.Msg.NAK)
        start = time.monotonic()
        wire = len(frame) + P.frame_bytes(answer_bytes)
        per_try = timeout if timeout is not None else self.rto(wire)
        give_up = start + max(self.budget if budget is None else budget, 2 * per_try,
                              first_timeout or 0.0)
        self.stats.requests += 1
        tries = 0
        while True:
            tries += 1
            if tries > 1:
                self.stats.retries += 1
            sent, torn = time.monotonic(), self.stats.torn
            self._write(frame)
            wait = first_timeout if tries == 1 and first_timeout is not None else \
                (timeout if timeout is not None else self.rto(wire))
            got = self.wait_frame(lambda f: f.seq == seq and f.type in want, wait, torn_seq=seq)
            now = time.monotonic()
            if got is not None and got.type == P.Msg.NAK:
                req, code, detail = self._decode(P.decode_nak, got.payload)
                if code == P.Nak.BAD_CRC and req == (msg & 0xFF):  # damaged on the way: again
                    self.stats.nak_crc += 1
                    self.to_device.observe(len(frame), False)
                    got = None
                else:
                    reason = P.Nak(code).name if code in P.Nak._value2member_map_ else str(code)
                    raise NakError(f"{self.url}: device refused {name}: {reason} ({detail})")
            elif got is None and self.stats.torn == torn:
                self.stats.timeouts += 1
            if got is not None:
                nbytes = len(frame) + P.frame_bytes(len(got.payload))
                if tries == 1:  # Karn: a resent request's round trip is ambiguous
                    self._sample_rtt(now - sent, nbytes)
                self.to_device.observe(len(frame), True)
                self.to_host.observe(P.frame_bytes(len(got.payload)), True)
                return got.payload
            if now >= give_up:
                raise DeviceError(
                    f"{self.url}: no answer to {name} in {now - start:.1f} s ({tries} tries; "
                    f"{self.tail()}); check the cable, the baud rate and that the tinypipe "
                    "firmware is flashed (try --flash)")

    # ---- commands --------------------------------------------------------------------------

    def hello(self, timeout: float | None = None) -> P.Hello:
        """Handshake and read the tensor table; remembers and returns the device description.

        `timeout` bounds the wait for the first answer (a board may still be booting); resends
        then follow the measured round trip."""
        p = self.request(P.Msg.HELLO, first_timeout=timeout, answer_bytes=80)
        info = self._decode(P.decode_hello, p)
        tensors: list[list[P.TensorInfo]] = [[], []]
        if info.model_status == 0:
            for kind, count in enumerate((info.num_inputs, info.num_outputs)):
                for k in range(count):
                    a = self.request(P.Msg.TENSOR, P.tensor_request(kind, k), answer_bytes=40)
                    tensors[kind].append(self._decode(P.decode_tensor, a, kind, k))
        self.hello_info = replace(info, inputs=tuple(tensors[0]), outputs=tuple(tensors[1]))
        return self.hello_info

    def set_baud(self, baud: int) -> None:
        """Switch both ends to a faster rate, falling back if the new rate does not work."""
        old = self.baud
        got = self._decode(P.decode_set_baud,
                           self.request(P.Msg.SET_BAUD, P.struct.pack("<I", baud)))
        if got != baud:
            raise DeviceError(f"{self.url}: asked for {baud} baud, the device set {got}")
        assert self._ser is not None
        self._ser.baudrate = self.baud = baud
        self._byte_time = None
        try:
            self.hello()
        except DeviceError:
            self._ser.baudrate = self.baud = old
            time.sleep(2.5)  # the device reverts after 2 s without a valid frame
            self.hello()

    def _info(self) -> P.Hello:
        return self.hello_info or self.hello()

    def _max_data(self) -> int:
        return self._info().max_payload - P.CHUNK_HEADER

    def input_chunk(self) -> int:
        """Bytes of input per LOAD_BURST frame for the line as it is now."""
        best = self.to_device.best_payload(P.HEADER_BYTES + P.CHUNK_HEADER + P.TRAILER_BYTES,
                                           MIN_CHUNK, self._max_data())
        return min(best, 2 * self._chunk)  # grow gently: one clean window is thin evidence

    def output_chunk(self) -> int:
        """Bytes of output per READ_OUTPUT answer (and inline in INFER) for the line now."""
        return self.to_host.best_payload(P.HEADER_BYTES + P.READ_HEADER + P.TRAILER_BYTES,
                                         MIN_CHUNK, self._info().max_payload - P.READ_HEADER)

    def load_input(self, index: int, data: bytes) -> None:
        """Write one input tensor in windows of LOAD_BURST frames, each window acknowledged.

        Frames the device missed are sent again (with the chunk size of the moment); the last
        acknowledgement carries the CRC-32 of the whole tensor as the device holds it, which
        must equal the host's."""
        info = self._info()
        frames_max = max(1, min(self.window, info.window, P.MAX_WINDOW))
        want = P.crc32(data)
        for _ in range(3):
            todo: deque[tuple[int, int]] = deque([(0, len(data))])  # byte ranges not confirmed
            crc = None
            while todo:
                self._chunk = self.input_chunk()
                window, nbytes = [], 0
                while todo and len(window) < frames_max and nbytes < self.window_bytes:
                    off, end = todo.popleft()
                    n = min(self._chunk, end - off)
                    window.append((off, n))
                    nbytes += P.frame_bytes(P.CHUNK_HEADER + n)
                    if off + n < end:
                        todo.appendleft((off + n, end))
                ack = self._send_window(index, data, window, nbytes, final=not todo)
                missed = [(off, off + n) for k, (off, n) in enumerate(window)
                          if not ack.received(k)]
                for k, (_, n) in enumerate(window):
                    self.to_device.observe(P.frame_bytes(P.CHUNK_HEADER + n), ack.received(k))
                self.stats.resent_chunks += len(missed)
                todo.extendleft(reversed(missed))
                crc = ack.tensor_crc if not todo else None
            if crc == want:
                return
            self.stats.input_reloads += 1
        raise DeviceError(f"{self.url}: input {index} arrives corrupted: its CRC-32 on the device "
                          f"is {crc:08x}, the host's {want:08x}")

    def _send_window(self, index: int, data: bytes, window: list[tuple[int, int]], nbytes: int,
                     final: bool) -> P.BurstAck:
        first = (self._seq + 1) & 0xFF
        frames = b"".join(P.encode(P.Msg.LOAD_BURST, self._next_seq(),
                                   P.load_input(index, off, data[off:off + n]))
                          for off, n in window)
        self.stats.chunks += len(window)
        self.stats.windows += 1
        sent = time.monotonic()
        self._write(frames)
        retries = self.stats.retries
        # The first try waits for the whole window to cross the line; resends only for the ack.
        p = self.request(P.Msg.BURST_ACK, P.burst_ack(first, len(window), index, final),
                         first_timeout=self.rto(nbytes + 40), answer_bytes=12)
        if self.stats.retries == retries:
            self._sample_byte_time(time.monotonic() - sent, nbytes + 40)
        return self._decode(P.decode_burst_ack, p, first, len(window), index, final)

    def read_output(self, index: int, nbytes: int) -> bytes:
        """Read one output tensor in READ_OUTPUT chunks sized for the line."""
        out = bytearray()
        while len(out) < nbytes:
            n = min(self.output_chunk(), nbytes - len(out))
            p = self.request(P.Msg.READ_OUTPUT, P.read_output(index, len(out), n),
                             answer_bytes=P.READ_HEADER + n)
            out += self._decode(P.decode_read_output, p, index, len(out), n)
        return bytes(out)

    def infer(self, runs: int = 1, timeout: float | None = None
              ) -> tuple[P.InferResult, list[np.ndarray]]:
        """Run the model `runs` times on the loaded input; returns counters and outputs.

        The first INFER may take up to `first_infer_timeout`; later ones wait the link
        timeout plus twice the slowest clean round trip seen per run. Outputs are checked
        against the CRC-32 the device computed (and read again on a mismatch)."""
        info = self._info()
        if timeout is None:
            timeout = self.first_infer_timeout if self._infer_rtt is None \
                else self.timeout + 2 * self._infer_rtt * runs
        total = sum(t.bytes for t in info.outputs)
        max_inline = min(self.output_chunk(), 0xFFFF)
        t0, retries = time.monotonic(), self.stats.retries
        p = self.request(P.Msg.INFER, P.infer(runs, max_inline), timeout=timeout,
                         answer_bytes=12 + 4 * runs + (total if total <= max_inline else 0))
        res = self._decode(P.decode_infer, p, runs, total)
        if self.stats.retries == retries:
            rtt = (time.monotonic() - t0) / runs
            self._infer_rtt = max(rtt, self._infer_rtt or 0.0)
        raw = res.output_bytes if res.outputs_inline else self._read_outputs(info)
        for _ in range(2):
            if P.crc32(raw) == res.outputs_crc:
                break
            self.stats.output_rereads += 1
            raw = self._read_outputs(info)
        else:
            raise DeviceError(f"{self.url}: outputs arrive corrupted: CRC-32 {P.crc32(raw):08x}, "
                              f"the device's {res.outputs_crc:08x}")
        outs, off = [], 0
        for t in info.outputs:
            arr = np.frombuffer(raw[off:off + t.bytes], dtype=t.np_dtype)
            off += t.bytes
            shape = t.shape[1:] if len(t.shape) > 1 and t.shape[0] == 1 else t.shape
            outs.append(arr.reshape(shape))
        return res, outs

    def _read_outputs(self, info: P.Hello) -> bytes:
        return b"".join(self.read_output(k, t.bytes) for k, t in enumerate(info.outputs))

    def stats_device(self) -> dict:
        """Device-side counters (frames, CRC errors, NAKs, replays, ...)."""
        return self._decode(P.decode_stats, self.request(P.Msg.STATS, answer_bytes=37))

    def reset(self, wait_boot: float = 10.0) -> str:
        """Reset the device and wait for its BOOT frame; returns the reset reason."""
        self.request(P.Msg.RESET)
        boot = self.wait_frame(lambda f: f.type == P.Msg.BOOT, wait_boot)
        if boot is None:
            raise DeviceError(f"{self.url}: device did not come back after RESET ({self.tail()})")
        self.stats.boots += 1
        self.hello_info = None
        return self._decode(P.decode_boot, boot.payload)[1]
