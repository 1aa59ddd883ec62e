"""Emulators as boards: start an ELF with its UART on a local TCP port, always stop it.

QEMU (`Emulator`): deterministic timing with `-icount shift=0`. Renode (`RenodeEmulator`):
boards QEMU lacks, e.g. the STM32F4 Discovery, through a .resc that serves the UART on a raw
socket. Both are used the same way: `with make_emulator(spec, elf) as emu: Link(emu.url)`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
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


REPO = Path(__file__).resolve().parents[2]
RENODE_MISSING = "renode not found: install Renode or use --emulator qemu"


def _renode_path(path: str | Path) -> str:
    """A path as Renode's monitor reads it: @path, with quotes if it has spaces."""
    text = str(path)
    return f'@"{text}"' if " " in text else f"@{text}"


@dataclass(eq=False)
class RenodeEmulator(Emulator):
    """A running Renode; same life cycle and socket URL as the QEMU `Emulator`.

    `script` is a .resc that reads `$elf` and `$port`, creates the machine and connects its
    UART to a raw server socket terminal on `$port` (firmware/renode/*.resc). `machine` is
    only a label for messages.
    """

    script: Path = REPO / "firmware" / "renode" / "stm32f4_discovery.resc"
    renode: str = "renode"
    ready_timeout: float = 60.0  # Renode's runtime takes seconds to start

    def monitor_commands(self) -> str:
        """What Renode's monitor runs at start: variables, the script, `start`."""
        return (f"$elf={_renode_path(Path(self.elf).resolve())}; $port={self.port}; "
                f"include {_renode_path(Path(self.script).resolve())}; start")

    def command(self) -> list[str]:
        """The Renode command line."""
        return [self.renode, "--disable-xwt", "--console", "--plain",
                "-e", self.monitor_commands(), *self.extra_args]

    def start(self) -> RenodeEmulator:
        """Launch Renode and wait until its UART socket accepts connections."""
        if shutil.which(self.renode) is None:
            raise DeviceError(RENODE_MISSING)
        if not Path(self.elf).is_file():
            raise DeviceError(f"{self.elf}: no such firmware ELF; run `tinypipe build` first")
        if not Path(self.script).is_file():
            raise DeviceError(f"{self.script}: no such Renode script")
        self.port = self.port or free_port()
        self._log = tempfile.NamedTemporaryFile(prefix="tinypipe-renode-", suffix=".log",
                                                delete=False)
        self.log_path = Path(self._log.name)
        # stdin stays open (a pipe we never write): --console would quit on end of input.
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_new_group_dying_with_parent, cwd=REPO)
        _LIVE.add(self)
        self._wait_listening(self.ready_timeout)
        return self

    def _wait_listening(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise DeviceError(f"Renode ({self.machine}) exited at start: {self.log_tail()}")
            with contextlib.suppress(OSError), \
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.1)
        self.stop()
        raise DeviceError(f"Renode ({self.machine}) did not open its UART port "
                          f"in {timeout:.0f} s")

    def stop(self) -> None:
        """Terminate Renode's process group (only the one we started). Idempotent."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                if proc.stdin:
                    proc.stdin.close()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        super().stop()


def _new_group_dying_with_parent() -> None:
    os.setsid()  # the `renode` launcher starts the runtime as a child: stop both together
    _die_with_parent()


def make_emulator(spec, elf: str | Path, kind: str | None = None,
                  binary: str | None = None) -> Emulator:
    """An (unstarted) emulator for a `BoardSpec`: `kind` "qemu" or "renode", default the
    board's own. Raises DeviceError when the board cannot run under that emulator."""
    kind = kind or spec.default_emulator
    if kind is None:
        raise DeviceError(f"{spec.env} is a real board; no emulator runs it")
    if kind not in spec.emulators:
        can = ", ".join(spec.emulators) or "none"
        raise DeviceError(f"{spec.env} does not run under {kind} (emulators: {can})")
    if kind == "qemu":
        return Emulator(spec.machine, Path(elf), **({"qemu": binary} if binary else {}))
    return RenodeEmulator(Path(spec.renode_script).stem, Path(elf),
                          script=REPO / spec.renode_script,
                          **({"renode": binary} if binary else {}))


@atexit.register
def _stop_all() -> None:
    for emu in list(_LIVE):
        emu.stop()
