"""A TCP proxy that drops and corrupts bytes, to prove the link survives a bad line."""

from __future__ import annotations

import queue
import random
import socket
import threading
import time
from dataclasses import dataclass, field

from pipeline.errors import DeviceError


@dataclass
class FaultCounts:
    """Bytes seen, dropped and corrupted, per direction."""

    passed: int = 0
    dropped: int = 0
    corrupted: int = 0


@dataclass(eq=False)
class FaultProxy:
    """Listens on 127.0.0.1:port, forwards to `upstream` (host, port), mangling bytes.

    Each byte is dropped with probability `drop` and has one bit flipped with probability
    `corrupt`, independently in both directions. Seeded, so a failing run can be replayed.
    `latency` delays every byte by that many seconds in each direction without slowing the
    stream, as a USB-serial bridge does (its latency timer: 1 to 16 ms).
    """

    upstream: tuple[str, int]
    drop: float = 0.005
    corrupt: float = 0.005
    seed: int = 0
    latency: float = 0.0
    port: int = 0
    to_device: FaultCounts = field(default_factory=FaultCounts)
    to_host: FaultCounts = field(default_factory=FaultCounts)
    _listener: socket.socket | None = None
    _socks: list[socket.socket] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        """pyserial URL for the harness side."""
        return f"socket://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        """Listen; the first client is connected through to the upstream."""
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(1)
        self.port = self._listener.getsockname()[1]
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            return
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(0.1)
            self._socks.append(s)
        rng = random.Random(self.seed)
        for src, dst, counts in ((client, upstream, self.to_device),
                                 (upstream, client, self.to_host)):
            t = threading.Thread(target=self._pump,
                                 args=(src, dst, counts, random.Random(rng.random())),
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _mangle(self, data: bytes, counts: FaultCounts, rng: random.Random) -> bytes:
        out = bytearray()
        for b in data:
            r = rng.random()
            if r < self.drop:
                counts.dropped += 1
            elif r < self.drop + self.corrupt:
                counts.corrupted += 1
                out.append(b ^ (1 << rng.randrange(8)))
            else:
                counts.passed += 1
                out.append(b)
        return bytes(out)

    def _pump(self, src: socket.socket, dst: socket.socket, counts: FaultCounts,
              rng: random.Random) -> None:
        late: queue.Queue[tuple[float, bytes] | None] = queue.Queue()
        sender = threading.Thread(target=self._deliver, args=(late, dst), daemon=True)
        sender.start()
        while not self._stop.is_set():
            try:
                data = src.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            late.put((time.monotonic() + self.latency, self._mangle(data, counts, rng)))
        late.put(None)
        sender.join(timeout=2 + self.latency)
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _deliver(self, late: queue.Queue, dst: socket.socket) -> None:
        while (item := late.get()) is not None:
            due, data = item
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                dst.sendall(data)
            except OSError:
                return

    def stop(self) -> None:
        """Close everything and join the threads. Idempotent."""
        self._stop.set()
        for s in [*self._socks, *([self._listener] if self._listener else [])]:
            try:
                s.close()
            except OSError:
                pass
        self._listener = None
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> FaultProxy:
        if self._listener is None:
            try:
                self.start()
            except OSError as e:
                raise DeviceError(f"fault proxy cannot listen: {e}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
