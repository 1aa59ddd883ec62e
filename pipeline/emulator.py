"""Emulators as boards: the one place that starts QEMU or Renode, and always stops them.

    with make_emulator(board("qemu-m4"), elf) as emu:        # UART on a local TCP port
        Link(emu.url)
    make_emulator(spec, elf, serial="pty")                    # UART on /dev/pts/N (termios)
    make_emulator(spec, elf, serial="none", semihosting=True, cwd=d).run(timeout)   # bench

QEMU (`Emulator`) runs with `-icount shift=N` from the board registry, so its counters count
instructions. Renode (`RenodeEmulator`) emulates boards QEMU lacks (the STM32F4 Discovery)
through a .resc that serves the UART on a raw socket. Every emulator started here is stopped on
exit, and dies with this process.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.boards import QEMU_ICOUNT_SHIFT, BoardSpec
from pipeline.errors import DeviceError
from pipeline.paths import ROOT, rel

_LIVE: set[Emulator] = set()
SERIALS = ("tcp", "pty", "none")
RENODE_MISSING = "renode not found: install Renode or use --emulator qemu"
_PTY = re.compile(rb"char device redirected to (/dev/pts/\d+)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the emulator ends if we do


def _new_group_dying_with_parent() -> None:
    os.setsid()  # the `renode` launcher starts the runtime as a child: stop both together
    _die_with_parent()


@dataclass(eq=False)
class Emulator:
    """A QEMU running one ELF; use as a context manager. Always stopped, also at exit.

    `serial`: "tcp" (UART on socket://127.0.0.1:port, QEMU waits for the first client),
    "pty" (UART on a pseudo-terminal, a real tty for pyserial) or "none" (semihosting runs).
    """

    machine: str
    elf: Path
    port: int = 0
    qemu: str = "qemu-system-arm"
    serial: str = "tcp"
    semihosting: bool = False
    cwd: Path | None = None
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    pty: str | None = None
    _log: object = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return "qemu"

    @property
    def url(self) -> str:
        """pyserial URL (or tty path) of the emulated UART."""
        if self.serial == "pty":
            if self.pty is None:
                raise DeviceError(f"QEMU {self.machine}: no pseudo-terminal yet (not started)")
            return self.pty
        return f"socket://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The QEMU command line."""
        serial = {"tcp": f"tcp:127.0.0.1:{self.port},server=on,nodelay=on", "pty": "pty",
                  "none": "none"}[self.serial]
        cmd = [self.qemu, "-M", self.machine, "-nographic", "-monitor", "none",
               "-icount", f"shift={QEMU_ICOUNT_SHIFT}", "-serial", serial]
        if self.semihosting:
            cmd += ["-semihosting-config", "enable=on,target=native"]
        return [*cmd, "-kernel", str(Path(self.elf).resolve()), *self.extra_args]

    @property
    def binary(self) -> str:
        return self.qemu

    def check_installed(self) -> None:
        """DeviceError when the emulator's program is not on PATH (checked before builds)."""
        if shutil.which(self.binary) is None:
            raise DeviceError(f"{self.binary} not found; install qemu-system-arm"
                              if self.kind == "qemu" else RENODE_MISSING)

    def _check_start(self) -> None:
        if self.serial not in SERIALS:
            raise DeviceError(f"serial {self.serial!r}: choose one of {', '.join(SERIALS)}")
        self.check_installed()
        if not Path(self.elf).is_file():
            raise DeviceError(f"{self.elf}: no such firmware ELF; run `tinypipe build` first")

    def _open_log(self) -> None:
        self._log = tempfile.NamedTemporaryFile(prefix=f"tinypipe-{self.kind}-", suffix=".log",
                                                delete=False)
        self.log_path = Path(self._log.name)

    def start(self) -> Emulator:
        """Launch QEMU; with a TCP UART it waits for the first client before the CPU starts."""
        self._check_start()
        if self.serial == "tcp":
            self.port = self.port or free_port()
        self._open_log()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.cwd, preexec_fn=_die_with_parent)
        _LIVE.add(self)
        if self.serial == "tcp":
            self._wait_log(lambda log: b"waiting for connection" in log, "open its UART port")
        elif self.serial == "pty":
            self._wait_log(self._find_pty, "open its pseudo-terminal")
        return self

    def _find_pty(self, log: bytes) -> bool:
        m = _PTY.search(log)
        if m:
            self.pty = m.group(1).decode()
        return m is not None

    def _wait_log(self, ready, what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise DeviceError(f"QEMU {self.machine} exited at start: {self.log_tail()}")
            if self.log_path and ready(self.log_path.read_bytes()):
                return
            time.sleep(0.02)
        self.stop()
        raise DeviceError(f"QEMU {self.machine} did not {what} in {timeout:.0f} s")

    def run(self, timeout: float = 600.0) -> str:
        """Start, wait for the program to exit (semihosting SYS_EXIT), return its output.

        A non-zero exit or a timeout is a DeviceError naming the ELF; QEMU always ends."""
        if not self.alive():
            self.start()
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise DeviceError(f"QEMU {self.machine} did not finish {Path(self.elf).name} in "
                              f"{timeout:.0f} s") from None
        code = self.proc.returncode
        out = self.log_path.read_text(errors="replace") if self.log_path else ""
        self.stop()
        if code:
            tail = out.strip().splitlines()
            raise DeviceError(f"QEMU {self.machine} run of {Path(self.elf).name} failed "
                              f"(exit {code}): {tail[-1] if tail else 'no output'}")
        return out

    def log_tail(self) -> str:
        """Last line the emulator printed."""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except (OSError, AttributeError):
            return "no output"
        return lines[-1] if lines else "no output"

    def alive(self) -> bool:
        """True while the emulator runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Terminate the emulator (only the process we started) and remove its log."""
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

    script: Path = field(default_factory=lambda: ROOT / "firmware/renode/stm32f4_discovery.resc")
    renode: str = "renode"
    ready_timeout: float = 60.0  # Renode's runtime takes seconds to start

    @property
    def kind(self) -> str:
        return "renode"

    @property
    def binary(self) -> str:
        return self.renode

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
        if self.serial != "tcp":
            raise DeviceError("Renode serves its UART on a TCP socket only (serial='tcp')")
        self._check_start()
        if not Path(self.script).is_file():
            raise DeviceError(f"{self.script}: no such Renode script")
        self.port = self.port or free_port()
        self._open_log()
        # stdin stays open (a pipe we never write): --console would quit on end of input.
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_new_group_dying_with_parent, cwd=ROOT)
        _LIVE.add(self)
        self._wait_accepting(self.ready_timeout)
        return self

    def _wait_accepting(self, timeout: float) -> None:
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


def make_emulator(spec: BoardSpec, elf: str | Path, kind: str | None = None,
                  binary: str | None = None, *, serial: str = "tcp", semihosting: bool = False,
                  cwd: str | Path | None = None, port: int = 0) -> Emulator:
    """The only way to get an emulator: an (unstarted) one for a `BoardSpec`.

    `kind` is "qemu" or "renode" (default: the board's own); `port` fixes the UART's TCP port
    (default: a free one). Raises DeviceError when the board cannot run under that emulator."""
    kind = kind or spec.default_emulator
    if kind is None:
        raise DeviceError(f"{spec.env} is a real board; no emulator runs it")
    if kind not in spec.emulators:
        can = ", ".join(spec.emulators) or "none"
        raise DeviceError(f"{spec.env} does not run under {kind} (emulators: {can})")
    opts = {"serial": serial, "semihosting": semihosting, "port": port,
            "cwd": Path(cwd) if cwd is not None else None}
    if kind == "qemu":
        return Emulator(spec.machine, Path(elf), **opts,
                        **({"qemu": binary} if binary else {}))
    if semihosting:
        raise DeviceError(f"{spec.env}: semihosting runs need QEMU")
    return RenodeEmulator(Path(spec.renode_script).stem, Path(elf), **opts,
                          script=rel(spec.renode_script),
                          **({"renode": binary} if binary else {}))


@atexit.register
def _stop_all() -> None:
    for emu in list(_LIVE):
        emu.stop()
