"""QEMU as a board: start an ELF with deterministic timing and its UART on a local TCP port."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import DeviceError

_LIVE: set[Emulator] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: QEMU ends if we do


@dataclass(eq=False)
class Emulator:
    """A running QEMU; use as a context manager. Always stopped, also at interpreter exit."""

    machine: str
    elf: Path
    port: int = 0
    qemu: str = "qemu-system-arm"
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    _log: object = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """pyserial URL of the emulated UART."""
        return f"socket://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The QEMU command line."""
        return [self.qemu, "-M", self.machine, "-nographic", "-monitor", "none",
                "-icount", "shift=0",
                "-serial", f"tcp:127.0.0.1:{self.port},server=on,nodelay=on",
                "-kernel", str(self.elf), *self.extra_args]

    def start(self) -> Emulator:
        """Launch QEMU; it waits for the first TCP client before the CPU starts."""
        if shutil.which(self.qemu) is None:
            raise DeviceError(f"{self.qemu} not found; install qemu-system-arm")
        if not Path(self.elf).is_file():
            raise DeviceError(f"{self.elf}: no such firmware ELF; run `tinypipe build` first")
        self.port = self.port or free_port()
        self._log = tempfile.NamedTemporaryFile(prefix="tinypipe-qemu-", suffix=".log",
                                                delete=False)
        self.log_path = Path(self._log.name)
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        _LIVE.add(self)
        self._wait_listening()
        return self

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise DeviceError(f"QEMU {self.machine} exited at start: {self.log_tail()}")
            if self.log_path and b"waiting for connection" in self.log_path.read_bytes():
                return
            time.sleep(0.02)
        self.stop()
        raise DeviceError(f"QEMU {self.machine} did not open its UART port in {timeout:.0f} s")

    def log_tail(self) -> str:
        """Last line QEMU printed."""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except (OSError, AttributeError):
            return "no output"
        return lines[-1] if lines else "no output"

    def alive(self) -> bool:
        """True while QEMU runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Terminate QEMU (only the process we started) and remove its log. Idempotent."""
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Emulator:
        return self if self.alive() else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    for emu in list(_LIVE):
        emu.stop()
