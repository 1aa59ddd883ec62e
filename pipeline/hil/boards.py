"""Every board tinypipe knows: PlatformIO env, USB ids, reset style, baud, counter, emulator."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import DeviceError


@dataclass(frozen=True)
class BoardSpec:
    """One PlatformIO env and how to talk to the board it builds for."""

    env: str
    title: str
    counter: str                               # "instructions" | "cycles" | "micros"
    cpu_hz: int
    usb_ids: tuple[tuple[int, int], ...] = ()  # (VID, PID) pairs the board enumerates as
    reset: str = "none"                        # "qemu" | "dtr-rts" | "1200bps" | "none"
    baud: int = 115200
    fast_baud: int | None = None               # negotiated with SET_BAUD for bulk data
    machine: str | None = None                 # QEMU machine for emulator envs
    timeout: float = 1.0                       # seconds before a request is resent
    boot_wait: float = 0.0                     # seconds to wait after opening the port

    @property
    def emulated(self) -> bool:
        """True for QEMU envs."""
        return self.machine is not None


_ESP_USB = ((0x10C4, 0xEA60), (0x1A86, 0x7523), (0x1A86, 0x55D4), (0x0403, 0x6001))

BOARDS: dict[str, BoardSpec] = {b.env: b for b in (
    BoardSpec("qemu-m4", "QEMU mps2-an386 (Cortex-M4)", "instructions", 25_000_000,
              reset="qemu", machine="mps2-an386", timeout=0.5),
    BoardSpec("qemu-m7", "QEMU mps2-an500 (Cortex-M7)", "instructions", 25_000_000,
              reset="qemu", machine="mps2-an500", timeout=0.5),
    BoardSpec("qemu-m55", "QEMU mps3-an547 (Cortex-M55)", "instructions", 25_000_000,
              reset="qemu", machine="mps3-an547", timeout=0.5),
    BoardSpec("esp32dev", "ESP32 DevKit", "cycles", 240_000_000, _ESP_USB, "dtr-rts",
              fast_baud=921_600, boot_wait=1.5),
    BoardSpec("esp32-s3-devkitc-1", "ESP32-S3 DevKitC-1", "cycles", 240_000_000,
              ((0x303A, 0x1001),) + _ESP_USB, "dtr-rts", fast_baud=921_600, boot_wait=1.5),
    BoardSpec("nucleo_f746zg", "ST Nucleo-F746ZG (Cortex-M7)", "cycles", 216_000_000,
              ((0x0483, 0x374B), (0x0483, 0x374E), (0x0483, 0x3752)), fast_baud=921_600,
              boot_wait=0.5),
    BoardSpec("nano33ble", "Arduino Nano 33 BLE (Cortex-M4F)", "cycles", 64_000_000,
              ((0x2341, 0x805A), (0x2341, 0x005A)), "1200bps", boot_wait=1.0),
    BoardSpec("pico", "Raspberry Pi Pico (Cortex-M0+)", "micros", 133_000_000,
              ((0x2E8A, 0x000A), (0x2E8A, 0x00C0), (0x2E8A, 0x0003)), "1200bps",
              boot_wait=1.0),
)}


def board(env: str) -> BoardSpec:
    """The spec for a PlatformIO env name."""
    try:
        return BOARDS[env]
    except KeyError:
        raise DeviceError(f"unknown env {env!r}; known: {', '.join(BOARDS)}") from None


def boards_for_usb(vid: int | None, pid: int | None) -> list[BoardSpec]:
    """Boards that enumerate with this VID:PID."""
    if vid is None or pid is None:
        return []
    return [b for b in BOARDS.values() if (vid, pid) in b.usb_ids]
