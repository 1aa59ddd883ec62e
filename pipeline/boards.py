"""Every board tinypipe knows: PlatformIO env, USB ids, reset style, baud, counter, emulator,
and how much RAM and flash a model may use on it.

Budgets (`arena_budget`, `flash_budget`) are what is left for the model after the app, the
stack and the framework: the tensor arena must fit in `arena_budget` bytes of RAM, the model
(the .tflite for the TFLM backend, the weights for the AOT backend) in `flash_budget` bytes of
flash. `ram_bytes` / `flash_bytes` are the datasheet (or emulator memory map) totals they were
derived from; docs/boards.md gives the source and the reserve taken off for every board.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import DeviceError

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class BoardSpec:
    """One PlatformIO env and how to talk to the board it builds for."""

    env: str
    title: str
    counter: str                               # "instructions" | "cycles" | "micros"
    cpu_hz: int
    usb_ids: tuple[tuple[int, int], ...] = ()  # (VID, PID) pairs the board enumerates as
    reset: str = "none"                        # "qemu" | "renode" | "dtr-rts" | "1200bps" | "none"
    baud: int = 115200
    fast_baud: int | None = None               # negotiated with SET_BAUD for bulk data
    machine: str | None = None                 # QEMU machine for emulator envs
    timeout: float = 1.0                       # seconds before a request is resent
    boot_wait: float = 0.0                     # seconds to wait after opening the port
    mcu: str = ""
    ram_bytes: int | None = None               # total SRAM (datasheet / emulator memory map)
    flash_bytes: int | None = None             # total flash (or code memory under QEMU)
    arena_budget: int | None = None            # RAM a tensor arena may take
    flash_budget: int | None = None            # flash a model (.tflite or weights) may take
    renode_script: str | None = None           # .resc that emulates this board under Renode
    flashed_with: str = ""                     # how firmware gets onto the board

    @property
    def emulated(self) -> bool:
        """True for QEMU envs (the firmware only runs under QEMU)."""
        return self.machine is not None

    @property
    def emulators(self) -> tuple[str, ...]:
        """Emulators this env's firmware can run under ("qemu", "renode")."""
        return (("qemu",) if self.machine else ()) + (("renode",) if self.renode_script else ())

    @property
    def default_emulator(self) -> str | None:
        """The emulator `tinypipe hil` starts without --emulator (None: a real board)."""
        if self.machine:
            return "qemu"
        return "renode" if self.reset == "renode" else None


_ESP_USB = ((0x10C4, 0xEA60), (0x1A86, 0x7523), (0x1A86, 0x55D4), (0x0403, 0x6001))
_QEMU = {"reset": "qemu", "timeout": 0.5, "flashed_with": "started by tinypipe (QEMU -kernel)"}
_F407_RESC = "firmware/renode/stm32f4_discovery.resc"
# STM32F407: 112 + 16 KB main SRAM (the arena, data and heap) and 64 KB CCM (stack, noinit).
_F407 = {"mcu": "STM32F407VGT6 (Cortex-M4F)", "ram_bytes": 192 * KiB, "flash_bytes": 1 * MiB,
         "arena_budget": 112 * KiB, "flash_budget": 960 * KiB, "renode_script": _F407_RESC}

BOARDS: dict[str, BoardSpec] = {b.env: b for b in (
    BoardSpec("qemu-m4", "QEMU mps2-an386 (Cortex-M4)", "instructions", 25_000_000,
              machine="mps2-an386", mcu="Cortex-M4 (QEMU)", ram_bytes=4 * MiB,
              flash_bytes=4 * MiB, arena_budget=4 * MiB - 128 * KiB,
              flash_budget=4 * MiB - 256 * KiB, **_QEMU),
    BoardSpec("qemu-m7", "QEMU mps2-an500 (Cortex-M7)", "instructions", 25_000_000,
              machine="mps2-an500", mcu="Cortex-M7 (QEMU)", ram_bytes=4 * MiB,
              flash_bytes=4 * MiB, arena_budget=4 * MiB - 128 * KiB,
              flash_budget=4 * MiB - 256 * KiB, **_QEMU),
    BoardSpec("qemu-m55", "QEMU mps3-an547 (Cortex-M55)", "instructions", 25_000_000,
              machine="mps3-an547", mcu="Cortex-M55 (QEMU)", ram_bytes=4 * MiB,
              flash_bytes=512 * KiB, arena_budget=4 * MiB - 128 * KiB,
              flash_budget=512 * KiB - 128 * KiB, **_QEMU),
    BoardSpec("esp32dev", "ESP32 DevKit", "cycles", 240_000_000, _ESP_USB, "dtr-rts",
              fast_baud=921_600, boot_wait=1.5, mcu="ESP32 (Xtensa LX6)",
              ram_bytes=520 * KiB, flash_bytes=4 * MiB, arena_budget=128 * KiB,
              flash_budget=1 * MiB, flashed_with="esptool over USB-UART (auto-reset)"),
    BoardSpec("esp32-s3-devkitc-1", "ESP32-S3 DevKitC-1", "cycles", 240_000_000,
              ((0x303A, 0x1001),) + _ESP_USB, "dtr-rts", fast_baud=921_600, boot_wait=1.5,
              mcu="ESP32-S3 (Xtensa LX7)", ram_bytes=512 * KiB, flash_bytes=8 * MiB,
              arena_budget=256 * KiB, flash_budget=1 * MiB,
              flashed_with="esptool over USB (native or USB-UART)"),
    BoardSpec("nucleo_f746zg", "ST Nucleo-F746ZG (Cortex-M7)", "cycles", 216_000_000,
              ((0x0483, 0x374B), (0x0483, 0x374E), (0x0483, 0x3752)), fast_baud=921_600,
              boot_wait=0.5, mcu="STM32F746ZGT6 (Cortex-M7F)", ram_bytes=320 * KiB,
              flash_bytes=1 * MiB, arena_budget=256 * KiB, flash_budget=896 * KiB,
              flashed_with="on-board ST-LINK (mass storage or stlink)"),
    BoardSpec("nano33ble", "Arduino Nano 33 BLE (Cortex-M4F)", "cycles", 64_000_000,
              ((0x2341, 0x805A), (0x2341, 0x005A)), "1200bps", boot_wait=1.0,
              mcu="nRF52840 (Cortex-M4F)", ram_bytes=256 * KiB, flash_bytes=1 * MiB,
              arena_budget=160 * KiB, flash_budget=640 * KiB,
              flashed_with="bossac via the 1200-baud-touch bootloader"),
    BoardSpec("pico", "Raspberry Pi Pico (Cortex-M0+)", "micros", 133_000_000,
              ((0x2E8A, 0x000A), (0x2E8A, 0x00C0), (0x2E8A, 0x0003)), "1200bps",
              boot_wait=1.0, mcu="RP2040 (dual Cortex-M0+)", ram_bytes=264 * KiB,
              flash_bytes=2 * MiB, arena_budget=192 * KiB, flash_budget=1536 * KiB,
              flashed_with="UF2 via the 1200-baud-touch bootloader (picotool)"),
    BoardSpec("disco_f407vg", "ST STM32F4 Discovery (Cortex-M4F)", "cycles", 168_000_000,
              ((0x0483, 0x3748),), boot_wait=0.5,
              flashed_with="on-board ST-LINK/V2 (stlink); UART on PA2/PA3 via a USB-serial "
                           "adapter", **_F407),
    BoardSpec("renode-f407", "STM32F4 Discovery under Renode", "cycles", 168_000_000,
              reset="renode", timeout=2.0, flashed_with="started by tinypipe (Renode LoadELF)",
              **_F407),
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


def _kib(n: int) -> str:
    return f"{n / KiB:,.1f} KiB"


def fit_report(profile, spec: BoardSpec | str) -> list[str]:
    """Warnings for what in a `pipeline.profile.Profile` does not fit the board's budgets.

    RAM: the TFLM arena with its margin and the AOT arena, each against `arena_budget`.
    Flash: the .tflite (TFLM backend) and the weights (AOT backend) against `flash_budget`.
    An empty list means everything that was measured fits.
    """
    spec = board(spec) if isinstance(spec, str) else spec
    out: list[str] = []

    def check(what: str, need: int | None, budget: int | None, kind: str) -> None:
        if need is None or budget is None or need <= budget:
            return
        out.append(f"{spec.env}: {what} {need:,} bytes ({_kib(need)}) exceeds the board's "
                   f"{kind} budget of {budget:,} bytes ({_kib(budget)}) by {need - budget:,}")

    check("TFLM arena (with margin)", getattr(profile, "arena_bytes_with_margin", None),
          spec.arena_budget, "RAM")
    check("AOT arena", getattr(profile, "aot_arena_bytes", None), spec.arena_budget, "RAM")
    check("model flash (.tflite, TFLM backend)", getattr(profile, "tflite_bytes", None),
          spec.flash_budget, "flash")
    check("weights (AOT backend)", getattr(profile, "param_bytes", None), spec.flash_budget,
          "flash")
    return out


def fit_summary(profile, spec: BoardSpec | str) -> str:
    """One line: the board's budgets and how much of them the model uses."""
    spec = board(spec) if isinstance(spec, str) else spec
    arenas = [a for a in (getattr(profile, "arena_bytes_with_margin", None),
                          getattr(profile, "aot_arena_bytes", None)) if a is not None]
    parts = [f"{spec.env}:"]
    if spec.arena_budget and arenas:
        parts.append(f"arena {max(arenas):,}/{spec.arena_budget:,} bytes "
                     f"({max(arenas) / spec.arena_budget:.0%})")
    if spec.flash_budget:
        parts.append(f"flash {profile.tflite_bytes:,}/{spec.flash_budget:,} bytes "
                     f"({profile.tflite_bytes / spec.flash_budget:.0%})")
    return " ".join(parts)


def print_fit(profile, env: str, echo=print) -> list[str]:
    """Print the budget line and one `warning:` line per budget the model exceeds."""
    spec = board(env)
    warnings = fit_report(profile, spec)
    echo(f"board {fit_summary(profile, spec)}")
    for w in warnings:
        echo(f"warning: {w}")
    return warnings
