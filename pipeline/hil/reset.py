"""Reset strategies: how the host restarts a board through its serial port, then waits for it.

Every board names one in the registry (`BoardSpec.reset`); `--reset NAME` overrides it.

- `dtr-rts`: ESP32 behind a USB-UART bridge. App: an EN pulse with IO0 high; bootloader:
  esptool's classic sequence.
- `usb-jtag-serial`: ESP32-S3 on its native USB. App: a slower EN pulse (the USB stack has to
  come back); bootloader: esptool's USB-JTAG sequence.
- `1200bps`: nano33ble, pico (USB CDC in the app). App: the protocol's RESET frame;
  bootloader: the 1200-baud touch.
- `none`: ST-LINK boards, emulators. Nothing is toggled; the host just handshakes.

On the ESP32 auto-reset circuit two transistors cross DTR and RTS: asserting RTS alone pulls
EN (reset) low, asserting DTR alone pulls IO0 (boot mode) low, both or neither leave the pins
high. So the line sequences below are the esptool ones (`reset.py` there), written as data so
tests can check them step by step. The 1200-baud touch only ever enters the bootloader, which
then waits for a flasher; that is why those boards restart their app with the protocol's
RESET frame, which every tinypipe firmware answers.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from pipeline.errors import ConfigError, DeviceError
from pipeline.hil import protocol as P

# A line step: ("D", bool) sets DTR, ("R", bool) sets RTS, ("W", seconds) waits.
Step = tuple[str, float | bool]

# esptool's own notation for its sequences (its CustomReset help), kept for the tests.
ESPTOOL_CLASSIC = "D0|R1|W0.1|D1|R0|W0.05|D0"
ESPTOOL_HARD_RESET = "R1|W0.1|R0"
ESPTOOL_USB_JTAG = "R0|D0|W0.1|D1|R0|W0.1|R1|D0|R1|W0.1|D0|R0"
ESPTOOL_HARD_RESET_USB = "R1|W0.2|R0|W0.2"

# errors a port raises when it has no modem lines at all (ptys, some USB CDC stacks)
_NO_LINES = (errno.ENOTTY, errno.EINVAL)


def parse_steps(text: str) -> list[Step]:
    """'D0|R1|W0.1' -> [("D", False), ("R", True), ("W", 0.1)]."""
    steps: list[Step] = []
    for cmd in text.split("|"):
        code, arg = cmd[:1], cmd[1:]
        if code in "DR" and arg in ("0", "1"):
            steps.append((code, arg == "1"))
        elif code == "W":
            steps.append((code, float(arg)))
        else:
            raise ConfigError(f"bad reset step {cmd!r} in {text!r} (D0/D1, R0/R1, Wseconds)")
    return steps


def lines_supported(ser) -> bool:
    """False for ports that silently ignore DTR/RTS (raw TCP, loop://)."""
    module = type(ser).__module__
    return not module.endswith(("protocol_socket", "protocol_loop"))


def port_name(ser) -> str:
    """The name a serial object was opened with."""
    return str(getattr(ser, "portstr", None) or getattr(ser, "port", None) or ser)


@dataclass
class ResetStrategy:
    """One way of resetting a board; `restart` runs the app, `bootloader` the ROM loader."""

    name: ClassVar[str] = "none"
    restart_steps: ClassVar[str] = ""      # empty: no line-level restart
    bootloader_steps: ClassVar[str] = ""   # empty: no line-level way into the bootloader
    attempts: int = 3                      # a USB port may drop out while the chip resets
    retry_wait: float = 0.5
    sleep: Callable[[float], None] = time.sleep

    @property
    def restarts_by_lines(self) -> bool:
        """True when `restart` toggles lines; otherwise the host sends the RESET frame."""
        return bool(self.restart_steps)

    def restart(self, ser) -> None:
        """Restart the application on the board (a no-op for line-less strategies)."""
        if self.restart_steps:
            self._run(ser, parse_steps(self.restart_steps))

    def bootloader(self, ser) -> None:
        """Put the board into its bootloader for flashing."""
        if not self.bootloader_steps:
            raise DeviceError(f"{port_name(ser)}: reset strategy {self.name} has no way into "
                              "the bootloader")
        self._run(ser, parse_steps(self.bootloader_steps))

    def _run(self, ser, steps: list[Step]) -> None:
        if not lines_supported(ser):
            raise DeviceError(f"{port_name(ser)}: reset {self.name} needs DTR/RTS, which a raw "
                              "TCP port does not carry; export it as RFC 2217 or use --reset none")
        for left in reversed(range(self.attempts)):
            try:
                if not ser.is_open:
                    ser.open()
                self._apply(ser, steps)
                return
            except OSError as e:
                if e.errno in _NO_LINES:
                    raise DeviceError(f"{port_name(ser)}: reset {self.name} needs DTR/RTS and "
                                      f"this port has none ({e.strerror}); use --reset none"
                                      ) from None
                if not left:
                    raise DeviceError(f"{port_name(ser)}: reset {self.name} failed after "
                                      f"{self.attempts} attempts ({e})") from None
                # the port vanished while the chip reset (native USB): reopen and start over
                ser.close()
                self.sleep(self.retry_wait)

    def _apply(self, ser, steps: Iterable[Step]) -> None:
        for code, arg in steps:
            if code == "D":
                ser.dtr = bool(arg)
            elif code == "R":
                ser.rts = bool(arg)
                # usbser.sys only sends RTS along with a DTR change: repeat DTR (a no-op here)
                ser.dtr = ser.dtr
            else:
                self.sleep(float(arg))


class NoReset(ResetStrategy):
    """Touch nothing: the board is already running (ST-LINK boards, emulators)."""

    name = "none"


class ClassicReset(ResetStrategy):
    """ESP32 through a USB-UART bridge and the two auto-reset transistors."""

    name = "dtr-rts"
    # EN low with IO0 high (DTR released first), then EN high: the app boots
    restart_steps = "D0|" + ESPTOOL_HARD_RESET
    bootloader_steps = ESPTOOL_CLASSIC


class USBJTAGSerialReset(ResetStrategy):
    """ESP32-S3 (and C3/C6/H2) on the chip's own USB-Serial/JTAG peripheral."""

    name = "usb-jtag-serial"
    restart_steps = "D0|" + ESPTOOL_HARD_RESET_USB
    bootloader_steps = ESPTOOL_USB_JTAG


@dataclass
class Touch1200(ResetStrategy):
    """Arduino USB CDC boards: opening the port at 1200 baud with DTR low enters the bootloader.

    The app restarts through the protocol's RESET frame (see the module docstring).
    """

    name: ClassVar[str] = "1200bps"
    settle: float = 0.1  # the core acts on the line coding once the port is closed

    def bootloader(self, ser) -> None:
        """1200 baud, DTR low, close: the board re-enumerates as its bootloader."""
        for left in reversed(range(self.attempts)):
            try:
                if not ser.is_open:
                    ser.open()
                ser.baudrate = 1200
                try:
                    ser.dtr = False
                except OSError as e:  # a CDC port without modem lines still sees the baud
                    if e.errno not in _NO_LINES:
                        raise
                self.sleep(self.settle)
                ser.close()
                return
            except OSError as e:
                if not left:
                    raise DeviceError(f"{port_name(ser)}: 1200-baud touch failed ({e})") from None
                ser.close()
                self.sleep(self.retry_wait)


STRATEGIES: dict[str, type[ResetStrategy]] = {
    cls.name: cls for cls in (NoReset, ClassicReset, USBJTAGSerialReset, Touch1200)}
# the registry's emulator values: QEMU and Renode have no modem lines; a fresh process is reset
ALIASES = {"qemu": "none", "renode": "none"}
NAMES = tuple(STRATEGIES)
# USB-Serial/JTAG peripheral of the ESP32-S3/C3/C6 (what esptool checks to pick its sequence)
ESPRESSIF_USB_JTAG = (0x303A, 0x1001)


def strategy(name: str) -> ResetStrategy:
    """The strategy called `name` (registry aliases accepted)."""
    key = ALIASES.get(name, name)
    if key not in STRATEGIES:
        raise ConfigError(f"unknown reset strategy {name!r} (choose from {', '.join(NAMES)})")
    return STRATEGIES[key]()


def for_board(spec, override: str | None = None,
              usb_id: tuple[int, int] | None = None) -> ResetStrategy:
    """The board's strategy, `override` first; like esptool, an ESP32-S3 seen through a
    USB-UART bridge (not the Espressif USB-JTAG id) gets the classic sequence."""
    if override:
        return strategy(override)
    name = ALIASES.get(spec.reset, spec.reset)
    if name == "usb-jtag-serial" and usb_id is not None and usb_id != ESPRESSIF_USB_JTAG:
        name = "dtr-rts"
    return strategy(name)


class Tap:
    """`Link(open_fn=tap.open)`: remembers the last bytes read, for diagnostics."""

    def __init__(self, keep: int = 48) -> None:
        self.keep = keep
        self.seen = bytearray()
        self.ser = None

    def open(self, url: str, **kw):
        """Open like serial.serial_for_url and wrap the port."""
        import serial

        self.ser = serial.serial_for_url(url, **kw)
        return _Tapped(self.ser, self)

    def last(self) -> str:
        """The last bytes seen, hex, or 'nothing'."""
        return self.seen.hex(" ") if self.seen else "nothing"


class _Tapped:
    def __init__(self, ser, tap: Tap) -> None:
        self.__dict__["_ser"], self.__dict__["_tap"] = ser, tap

    def read(self, n: int = 1) -> bytes:
        data = self._ser.read(n)
        if data:
            seen = self._tap.seen
            seen += data
            del seen[:-self._tap.keep]
        return data

    def __getattr__(self, name: str):
        return getattr(self._ser, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._ser, name, value)


def reset_and_wait(link, strat: ResetStrategy, timeout: float = 10.0,
                   tap: Tap | None = None) -> str:
    """Reset the board behind an open `link`, then wait for its BOOT frame or a HELLO answer.

    Returns "BOOT" or "HELLO". Raises DeviceError naming the port, the strategy and the last
    bytes seen when neither arrives within `timeout` seconds.
    """
    ser = link._ser  # noqa: SLF001 - the link owns the port; lines are toggled on it
    assert ser is not None, "link not open"
    if strat.restarts_by_lines:
        ser.reset_input_buffer()
        strat.restart(ser)
    elif strat.name != "none":
        try:  # no line-level restart: the firmware resets itself on RESET
            link.request(P.Msg.RESET, timeout=min(1.0, timeout), retries=1)
        except DeviceError:
            pass  # an app that does not answer may still be booting; the wait below decides
    deadline = time.monotonic() + timeout
    boots = link.stats.boots
    while time.monotonic() < deadline:
        left = deadline - time.monotonic()
        got = link.wait_frame(lambda f: f.type == P.Msg.BOOT, min(0.5, max(left, 0.01)))
        if got is not None:
            link.stats.boots += 1
            return "BOOT"
        try:  # a BOOT frame may be gone before the port opened (USB CDC, ptys): ask instead
            link.request(P.Msg.HELLO, timeout=min(0.5, max(deadline - time.monotonic(), 0.05)),
                         retries=0)
        except DeviceError:
            continue
        # the link counts a BOOT that arrived while it waited for the HELLO answer
        return "BOOT" if link.stats.boots > boots else "HELLO"
    seen = tap.last() if tap else "unknown"
    raise DeviceError(f"{link.url}: no BOOT or HELLO within {timeout:g} s after reset "
                      f"{strat.name}; last bytes seen: {seen}")
