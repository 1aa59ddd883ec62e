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
import select
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
class _Pending:
    """A request on its way; resent with the same seq until its answer comes."""

    msg: int
    seq: int
    frame: bytes
    copies: int     # frames written per try
    base: float     # wait of a try after the first, before backing off
    cap: float      # longest wait of a try
    start: float
    give_up: float
    wait: float     # this try's wait
    sent: float     # when this try was written
    tries: int = 1
    timeouts: int = 0
    answered: float = 0.0  # when the answer arrived


@dataclass
class _Window:
    """LOAD_BURST frames in flight and the BURST_ACK request that follows them."""

    chunks: list[tuple[int, int]]  # (offset, bytes) of each frame
    first: int                     # seq of the first frame
    nbytes: int                    # on the wire
    want_crc: bool
    ack: _Pending


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
    _infer_rtt: float | None = None  # average clean INFER round trip per run
    _tail: deque = field(default_factory=lambda: deque(maxlen=TAIL_BYTES))
    # BURST_ACK answers nobody awaits yet: seq -> (frame, arrival time)
    _stash: dict[int, tuple[P.Frame, float]] = field(default_factory=dict)
    _window_cap: int = 4096       # bytes of the next window; doubles per clean window
    _last_rx: float = 0.0

    def open(self) -> Link:
        """Open the port; socket URLs are retried until the emulator listens."""
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                # Non-blocking reads: _read() takes whatever arrived, _idle() waits for more.
                self._ser = self.open_fn(self.url, baudrate=self.baud, timeout=0)
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
            data = self._ser.read(65536)
        except (serial.SerialException, OSError) as e:
            raise DeviceError(f"{self.url}: link lost while reading ({e})") from None
        if data:
            self.stats.bytes_in += len(data)
            self._tail.extend(data)
            self._last_rx = time.monotonic()
        return data

    def _idle(self, seconds: float) -> None:
        """Wait until bytes may have arrived, at most `seconds`."""
        try:
            fd = self._ser.fileno() if self._ser is not None else None
        except (AttributeError, OSError, serial.SerialException):
            fd = None
        if fd is None:  # loop:// and some platforms have no descriptor to wait on
            time.sleep(min(seconds, 0.002))
            return
        try:
            select.select([fd], [], [], seconds)
        except (OSError, ValueError):
            time.sleep(min(seconds, 0.002))

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
        """Seconds per byte of a window, round trip included: measured, else from the baud rate
        (sockets: a guess that fits QEMU)."""
        if self._byte_time is not None:
            return self._byte_time
        return 1e-4 if self.emulated else 10.0 / self.baud

    def rto(self, nbytes: int = 0) -> float:
        """How long to wait for the answer to a request that moves `nbytes` over the wire."""
        base = self.timeout if self._srtt is None else \
            min(self.timeout, max(MIN_RTO, self._srtt + 4 * self._rttvar))
        return base + 1.5 * nbytes * self.byte_time()

    def _sample_rtt(self, elapsed: float) -> None:
        # Small requests only: their few bytes' time is part of the round trip.
        if self._srtt is None:
            self._srtt, self._rttvar = elapsed, elapsed / 2
        else:
            self._rttvar += 0.25 * (abs(self._srtt - elapsed) - self._rttvar)
            self._srtt += 0.125 * (elapsed - self._srtt)

    def _sample_byte_time(self, elapsed: float, nbytes: int) -> None:
        # From whole windows, so the estimate errs long (it holds one round trip per window),
        # never short: a too-short wait resends acks while the window is still on its way.
        if nbytes < 512:
            return
        sample = max(0.0 if self.emulated else 10.0 / self.baud, elapsed / nbytes)
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
        BURST_ACK answers nobody waits for yet are kept for later; a NAK refusing a LOAD_BURST
        frame (which nothing else waits for) raises NakError.
        """
        deadline = time.monotonic() + timeout
        while True:
            data = self._read()
            if not data:
                self._idle(max(0.0, min(deadline - time.monotonic(), 0.02)))
            now = time.monotonic()
            for f in self._dec.feed(data):
                if accept(f):
                    return f
                if f.type == P.Msg.BURST_ACK | P.RESPONSE:
                    self._stash[f.seq] = (f, now)
                elif f.type == P.Msg.BOOT:
                    self.stats.boots += 1
                else:
                    self.stats.stray_frames += 1
                    if f.type == P.Msg.NAK:
                        self._burst_refused(f)
            head = self._dec.pending()
            if head is not None and now - self._last_rx > self._gap():
                self._dec.abandon()
            torn, self._dec.torn = self._dec.torn, []
            for _type, seq, nbytes in torn:
                self.to_host.observe(nbytes, False)
                if seq == torn_seq:
                    self.stats.torn += 1
                    return None
            if now >= deadline:
                return None

    def _burst_refused(self, nak: P.Frame) -> None:
        req, code, detail = self._decode(P.decode_nak, nak.payload)
        if req == P.Msg.LOAD_BURST and code != P.Nak.BAD_CRC:
            reason = P.Nak(code).name if code in P.Nak._value2member_map_ else str(code)
            raise NakError(f"{self.url}: device refused LOAD_BURST: {reason} ({detail})")

    def request(self, msg: P.Msg | int, payload: bytes = b"", timeout: float | None = None,
                first_timeout: float | None = None, answer_bytes: int = 0, work: float = 0.0,
                budget: float | None = None, sample: bool = True) -> bytes:
        """Send a request and return the answer's payload; resend the same frame until then.

        A try waits the measured round trip for the bytes moved (`answer_bytes` back) plus
        `work` seconds of device time, doubling after every try that timed out, up to `timeout`
        (default: the link's timeout, or that first wait if longer); the first try waits
        `first_timeout` if given. NAK BAD_CRC and torn answers resend at once. Raises
        DeviceError after `budget` seconds (default self.budget; at least twice the longest
        wait) without an answer. `sample=False` keeps a slow request (one that includes device
        work or a window's bytes) out of the round-trip estimate."""
        r = self._send(msg, payload, timeout, first_timeout, answer_bytes, work, budget)
        return self._finish(r, sample=sample).payload

    def _send(self, msg: int, payload: bytes, timeout: float | None = None,
              first_timeout: float | None = None, answer_bytes: int = 0, work: float = 0.0,
              budget: float | None = None, before: bytes = b"") -> _Pending:
        """Write a request (after `before`, e.g. a window of frames); `_finish` awaits it."""
        seq = self._next_seq()
        self._stash.pop(seq, None)  # an answer to this seq's previous use
        frame = P.encode(msg, seq, payload)
        base = self.rto(len(frame) + P.frame_bytes(answer_bytes)) + work
        cap = timeout if timeout is not None else max(self.timeout, base)
        now = time.monotonic()
        r = _Pending(msg, seq, frame, self._copies(msg, len(frame), answer_bytes), base, cap,
                     now, now + max(self.budget if budget is None else budget, 2 * cap,
                                    first_timeout or 0.0),
                     first_timeout if first_timeout is not None else base, now)
        self.stats.requests += 1
        self._write(before + frame * r.copies)
        return r

    def _finish(self, r: _Pending, sample: bool = True, queued: int = 0) -> P.Frame:
        """Await the answer to `r`, resending its frame until it comes. A resend waits also for
        the `queued` bytes written after it that the device must take in first."""
        want = (r.msg | P.RESPONSE, P.Msg.NAK)
        while True:
            got, why = self._await(r, want, r.sent + r.wait)
            now = time.monotonic()
            if why == "timeout":
                self.stats.timeouts += 1
                r.timeouts += 1
            if got is not None:
                if r.tries == 1 and sample:  # Karn: a resent request's round trip is ambiguous
                    self._sample_rtt(now - r.sent)
                self.to_device.observe(len(r.frame), True)
                self.to_host.observe(P.frame_bytes(len(got.payload)), True)
                return got
            if now >= r.give_up:
                raise DeviceError(
                    f"{self.url}: no answer to {P.msg_name(r.msg)} in {now - r.start:.1f} s "
                    f"({r.tries} tries; {self.tail()}); check the cable, the baud rate and that "
                    "the tinypipe firmware is flashed (try --flash)")
            r.tries += 1
            self.stats.retries += 1
            r.wait = min(r.cap, r.base * 2 ** r.timeouts) + 1.5 * queued * self.byte_time()
            r.sent = time.monotonic()
            self._write(r.frame * r.copies)

    def _copies(self, msg: int, frame_len: int, answer_bytes: int) -> int:
        """1, or 2 back to back for a short request with a short answer on a line that loses
        one in ten of them: the device answers the second from its memory, and either answer
        will do. Never for requests that must run once per frame (RESET, SET_BAUD, HELLO)."""
        if msg in (P.Msg.RESET, P.Msg.SET_BAUD, P.Msg.HELLO) or answer_bytes > 64:
            return 1
        lost = 1 - (1 - self.to_device.error_rate) ** frame_len * \
            (1 - self.to_host.error_rate) ** P.frame_bytes(answer_bytes)
        return 2 if lost > 0.1 else 1

    def _await(self, r: _Pending, want: tuple[int, int], deadline: float
               ) -> tuple[P.Frame | None, str]:
        """The answer to (any copy of) `r`, or (None, why): "timeout", "torn" (every answer
        arrived damaged) or "nak" (every copy arrived damaged)."""
        naks = torn = 0
        while True:
            stashed, r.answered = self._stash.pop(r.seq, (None, 0.0))
            if stashed is not None and stashed.type in want:
                return stashed, ""
            torn0 = self.stats.torn
            got = self.wait_frame(lambda f: f.seq == r.seq and f.type in want,
                                  max(0.0, deadline - time.monotonic()), torn_seq=r.seq)
            if got is None:
                if self.stats.torn == torn0:
                    return None, "timeout"
                torn += 1
                if torn + naks >= r.copies:
                    return None, "torn"
                continue
            if got.type != P.Msg.NAK:
                r.answered = time.monotonic()
                return got, ""
            req, code, detail = self._decode(P.decode_nak, got.payload)
            if code == P.Nak.BAD_CRC and req == (r.msg & 0xFF):  # damaged on the way
                self.stats.nak_crc += 1
                self.to_device.observe(len(r.frame), False)
                naks += 1
                if torn + naks >= r.copies:
                    return None, "nak"
                continue
            reason = P.Nak(code).name if code in P.Nak._value2member_map_ else str(code)
            raise NakError(f"{self.url}: device refused {P.msg_name(r.msg)}: {reason} "
                           f"({detail})")

    # ---- commands --------------------------------------------------------------------------

    def hello(self, timeout: float | None = None) -> P.Hello:
        """Handshake and read the tensor table; remembers and returns the device description.

        `timeout`: keep asking at least this long (a board may still be booting)."""
        p = self.request(P.Msg.HELLO, answer_bytes=80, budget=max(self.budget, timeout or 0.0))
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
        """Write one input tensor in windows of LOAD_BURST frames, each with one BURST_ACK.

        Two windows are in flight at a time (if the device can take one while it answers the
        other), so the line stays busy while an acknowledgement comes back. Frames the device
        missed go out again (at the chunk size of the moment); the last acknowledgement carries
        the CRC-32 of the whole tensor as the device holds it, which must equal the host's."""
        want = P.crc32(data)
        for _ in range(3):
            crc = self._load_once(index, data)
            if crc == want:
                return
            self.stats.input_reloads += 1
        raise DeviceError(f"{self.url}: input {index} arrives corrupted: its CRC-32 on the device "
                          f"is {crc:08x}, the host's {want:08x}")

    def _load_once(self, index: int, data: bytes) -> int:
        """Stream `data` until the device holds every byte; returns the device's CRC-32 of it."""
        info = self._info()
        frames_max = max(1, min(self.window, info.window, P.MAX_WINDOW))
        in_flight = 2 if info.pipeline else 1
        todo: deque[tuple[int, int]] = deque([(0, len(data))])  # byte ranges not confirmed
        flight: deque[_Window] = deque()
        crc, last_ack = None, time.monotonic()
        while todo or flight:
            while todo and len(flight) < in_flight:
                ahead = sum(x.nbytes for x in flight)
                flight.append(self._start_window(index, data, todo, frames_max, ahead))
            w = flight.popleft()
            # A resent ack queues behind the window sent after this one.
            got = self._finish(w.ack, sample=False, queued=sum(x.nbytes for x in flight))
            ack = self._decode(P.decode_burst_ack, got.payload, w.first, len(w.chunks), index,
                               w.want_crc)
            # The line carried this window from when it went out, or from the previous answer.
            busy = w.ack.answered - max(w.ack.start, last_ack)
            if w.ack.tries == 1 and busy > 0:
                self._sample_byte_time(busy, w.nbytes)
            last_ack = w.ack.answered
            missed = [(off, off + n) for k, (off, n) in enumerate(w.chunks) if not ack.received(k)]
            for k, (_, n) in enumerate(w.chunks):
                self.to_device.observe(P.frame_bytes(P.CHUNK_HEADER + n), ack.received(k))
            self.stats.resent_chunks += len(missed)
            # Start small on an unknown line; a window that got through (all or part: losses are
            # noise, not congestion) lets the next one be twice as big.
            self._window_cap = 4096 if len(missed) == len(w.chunks) else \
                min(self.window_bytes, 2 * max(self._window_cap, w.nbytes))
            todo.extendleft(reversed(missed))
            crc = ack.tensor_crc  # the newest window's ack saw every frame ever sent
        return crc

    def _start_window(self, index: int, data: bytes, todo: deque[tuple[int, int]],
                      frames_max: int, ahead: int) -> _Window:
        """Take chunks off `todo`, write them as LOAD_BURST frames followed by their BURST_ACK
        request (queued behind `ahead` bytes still on their way). The ack asks for the tensor's
        CRC when the window empties `todo`."""
        self._chunk = self.input_chunk()
        chunks, nbytes = [], 0
        while todo and len(chunks) < frames_max and nbytes < self._window_cap:
            off, end = todo.popleft()
            n = min(self._chunk, end - off)
            chunks.append((off, n))
            nbytes += P.frame_bytes(P.CHUNK_HEADER + n)
            if off + n < end:
                todo.appendleft((off + n, end))
        first = (self._seq + 1) & 0xFF
        frames = b"".join(P.encode(P.Msg.LOAD_BURST, self._next_seq(),
                                   P.load_input(index, off, data[off:off + n]))
                          for off, n in chunks)
        self.stats.chunks += len(chunks)
        self.stats.windows += 1
        want_crc = not todo
        ack = self._send(P.Msg.BURST_ACK, P.burst_ack(first, len(chunks), index, want_crc),
                         first_timeout=self.rto(ahead + nbytes + 40),
                         answer_bytes=8 + (len(chunks) + 7) // 8, before=frames)
        return _Window(chunks, first, nbytes, want_crc, ack)

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

        The first INFER may take up to `first_infer_timeout`; later ones expect 1.5 times the
        average clean round trip per run. Outputs are checked against the CRC-32 the
        device computed (and read again on a mismatch)."""
        info = self._info()
        # Unknown run time (the first INFER): start from the round trip and back off to the
        # first-INFER limit; a resend while the device computes is answered from its memory.
        work = 0.0 if self._infer_rtt is None else 1.5 * self._infer_rtt * runs
        if timeout is None:
            timeout = self.first_infer_timeout if self._infer_rtt is None \
                else self.timeout + 2 * work
        total = sum(t.bytes for t in info.outputs)
        max_inline = min(self.output_chunk(), 0xFFFF)
        t0, retries = time.monotonic(), self.stats.retries
        p = self.request(P.Msg.INFER, P.infer(runs, max_inline), timeout=timeout, work=work,
                         answer_bytes=12 + 4 * runs + (total if total <= max_inline else 0),
                         sample=False)
        res = self._decode(P.decode_infer, p, runs, total)
        if self.stats.retries == retries:
            rtt = (time.monotonic() - t0) / runs
            self._infer_rtt = rtt if self._infer_rtt is None else \
                self._infer_rtt + 0.25 * (rtt - self._infer_rtt)
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
