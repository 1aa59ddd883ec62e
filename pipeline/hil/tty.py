"""QEMU with its UART on a pseudo-terminal, so the harness opens a real tty (termios, baud,
flush) instead of a TCP socket.

QEMU's `-serial pty` prints `char device redirected to /dev/pts/N (label serial0)`. The CPU
starts at once (there is no client to wait for) and QEMU drops what the UART sends while no one
has the tty open, so the BOOT frame may be gone: `reset.reset_and_wait` then handshakes with
HELLO instead.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from pipeline.errors import DeviceError
from pipeline.hil.emulator import Emulator

_PTY = re.compile(rb"char device redirected to (/dev/\S+)")


@dataclass(eq=False)
class PtyEmulator(Emulator):
    """An `Emulator` whose `url` is a /dev/pts/N path instead of socket://."""

    pty: str | None = None

    @property
    def url(self) -> str:
        """The tty path (pyserial opens it as a serial port)."""
        if self.pty is None:
            raise DeviceError(f"QEMU {self.machine} is not running (no pty yet)")
        return self.pty

    def command(self) -> list[str]:
        """The QEMU command line, serial on a pty."""
        cmd = super().command()
        i = cmd.index("-serial")
        return [*cmd[:i + 1], "pty", *cmd[i + 2:]]

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise DeviceError(f"QEMU {self.machine} exited at start: {self.log_tail()}")
            m = _PTY.search(self.log_path.read_bytes()) if self.log_path else None
            if m:
                self.pty = m.group(1).decode()
                return
            time.sleep(0.02)
        self.stop()
        raise DeviceError(f"QEMU {self.machine} did not report its pty in {timeout:.0f} s")

    def stop(self) -> None:
        """Stop QEMU; the pty disappears with it."""
        super().stop()
        self.pty = None
