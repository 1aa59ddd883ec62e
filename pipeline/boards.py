"""Every board tinypipe knows, in one registry: the single source of board facts.

A `BoardSpec` holds a PlatformIO env's MCU, clocks, counter, reset style, baud, emulator, build
target and the RAM and flash a model may use. Everything else is generated from it or checked
against it:

- the board JSON files of the project-local PlatformIO platform (`write_pio_boards`, run by the
  bootstrap; clocks, CPU, FPU, linker script and memory sizes);
- the QEMU bench harness (`pipeline.aot.arm`) and the emulator launch (`pipeline.emulator`);
- `platformio.ini` and `docs/boards.md` (checked by `tests/test_boards.py`).

Budgets (`arena_budget`, `flash_budget`) are what is left for the model after the app, the
stack and the framework: the tensor arena must fit in `arena_budget` bytes of RAM, the model
(the .tflite for the TFLM backend, the weights for the AOT backend) in `flash_budget` bytes of
flash. `ram_bytes` / `flash_bytes` are the datasheet (or emulator memory map) totals they were
derived from; docs/boards.md gives the source and the reserve taken off for every board.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import DeviceError

KiB = 1024
MiB = 1024 * KiB
# QEMU runs with `-icount shift=N`: every instruction advances virtual time by 2**N ns. With 0,
# a timer of f Hz ticks once every 1e9 / f instructions.
QEMU_ICOUNT_SHIFT = 0
LOCAL_PLATFORM = "tinyqemu"  # firmware/platforms/tinyqemu: Debian's arm-none-eabi-gcc, offline


@dataclass(frozen=True)
class BoardSpec:
    """One PlatformIO env: the board, how to build for it and how to talk to it."""

    env: str
    title: str
    mcu: str
    counter: str                               # "instructions" | "cycles" | "micros"
    cpu_hz: int                                # core clock (F_CPU)
    counter_hz: int | None = None              # clock of the port's counter, if not the core's
    usb_ids: tuple[tuple[int, int], ...] = ()  # (VID, PID) pairs the board enumerates as
    reset: str = "none"            # pipeline.hil.reset: dtr-rts | usb-jtag-serial | 1200bps | none;
    #                                "qemu" / "renode": started by tinypipe (no line reset)
    baud: int = 115200
    fast_baud: int | None = None               # negotiated with SET_BAUD for bulk data
    timeout: float = 1.0                       # seconds before a request is resent
    boot_wait: float = 0.0                     # seconds to wait after opening the port
    machine: str | None = None                 # QEMU machine for emulator envs
    renode_script: str | None = None           # .resc that emulates this board under Renode
    ram_bytes: int | None = None               # total SRAM (datasheet / emulator memory map)
    flash_bytes: int | None = None             # total flash (or code memory under QEMU)
    arena_budget: int | None = None            # RAM a tensor arena may take
    flash_budget: int | None = None            # flash a model (.tflite or weights) may take
    flashed_with: str = ""                     # how firmware gets onto the board
    # Build target. `platform` is LOCAL_PLATFORM for boards built offline here; then `cpu`,
    # `fpu`, `float_abi` and `ldscript` generate the board JSON and the bench's compiler flags.
    pio_board: str = ""
    platform: str = LOCAL_PLATFORM
    cpu: str | None = None
    fpu: str | None = None
    float_abi: str = "hard"
    ldscript: str | None = None

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

    @property
    def local(self) -> bool:
        """Built offline by the project-local platform with Debian's arm-none-eabi-gcc."""
        return self.platform == LOCAL_PLATFORM

    @property
    def tick_hz(self) -> int:
        """Clock of the counter the port reads (its own, or the core clock)."""
        return self.counter_hz or self.cpu_hz

    @property
    def instructions_per_tick(self) -> int:
        """Under QEMU `-icount`: retired instructions per counter tick (exact)."""
        ns = 10**9 * (1 << QEMU_ICOUNT_SHIFT)
        if ns % self.tick_hz:
            raise ValueError(f"{self.env}: {self.tick_hz} Hz is not a whole number of "
                             "instructions per tick")
        return ns // self.tick_hz

    @property
    def kernel_isa(self) -> str:
        """Which tinykernels fast path the core selects at compile time: "mve" (Helium),
        "dsp" (Armv7E-M / Armv8-M DSP extension) or "portable"."""
        return _KERNEL_ISA.get(self.cpu or "", "portable")

    @property
    def cflags(self) -> tuple[str, ...]:
        """Machine flags for arm-none-eabi-gcc (local-platform boards)."""
        if not self.cpu:
            return ()
        flags = ("-mthumb", f"-mcpu={self.cpu}")
        return flags + ((f"-mfpu={self.fpu}",) if self.fpu else ()) + \
            (f"-mfloat-abi={self.float_abi}",)

    def c_defines(self) -> dict[str, str]:
        """Board facts the C port needs beyond F_CPU (the core clock, which PlatformIO defines
        from the board JSON): the counter's rate and, under QEMU, instructions per tick."""
        out = {"TP_COUNTER_HZ": str(self.tick_hz)}
        if self.emulated:
            out["TP_INSNS_PER_TICK"] = str(self.instructions_per_tick)
        return out

    def pio_board_json(self) -> dict:
        """The PlatformIO board manifest of a local-platform board."""
        build = {"cpu": self.cpu, "mcu": self.cpu, "f_cpu": f"{self.cpu_hz}L",
                 "float_abi": self.float_abi, "ldscript": self.ldscript,
                 "extra_flags": " ".join(f"-D{k}={v}" for k, v in self.c_defines().items())}
        if self.fpu:
            build["fpu"] = self.fpu
        return {"build": build, "frameworks": [], "name": self.title,
                "upload": {"maximum_ram_size": self.ram_bytes,
                           "maximum_size": self.flash_bytes,
                           "protocol": self.reset if self.reset in ("qemu", "renode") else "none"},
                "url": "https://github.com/tinypipe", "vendor": "tinypipe"}


_KERNEL_ISA = {"cortex-m55": "mve", "cortex-m4": "dsp", "cortex-m7": "dsp", "cortex-m33": "dsp"}
_ESP_USB = ((0x10C4, 0xEA60), (0x1A86, 0x7523), (0x1A86, 0x55D4), (0x0403, 0x6001))
_QEMU = {"counter": "instructions", "reset": "qemu", "timeout": 0.5,
         "flashed_with": "started by tinypipe (QEMU -kernel)"}
_MPS2 = {"cpu_hz": 25_000_000, "ram_bytes": 4 * MiB, "flash_bytes": 4 * MiB,
         "arena_budget": 4 * MiB - 128 * KiB, "flash_budget": 4 * MiB - 256 * KiB,
         "ldscript": "firmware/boards/qemu_mps2/mps2.ld"}
_F407_RESC = "firmware/renode/stm32f4_discovery.resc"
# STM32F407: 112 + 16 KB main SRAM (the arena, data and heap) and 64 KB CCM (stack, noinit).
_F407 = {"mcu": "STM32F407VGT6 (Cortex-M4F)", "cpu_hz": 168_000_000, "ram_bytes": 192 * KiB,
         "flash_bytes": 1 * MiB, "arena_budget": 112 * KiB, "flash_budget": 960 * KiB,
         "renode_script": _F407_RESC, "cpu": "cortex-m4", "fpu": "fpv4-sp-d16",
         "ldscript": "firmware/boards/disco_f407vg/f407.ld"}

BOARDS: dict[str, BoardSpec] = {b.env: b for b in (
    BoardSpec("qemu-m4", "QEMU mps2-an386 (Cortex-M4)", "Cortex-M4 (QEMU)", machine="mps2-an386",
              pio_board="qemu_mps2_an386", cpu="cortex-m4", fpu="fpv4-sp-d16", **_MPS2, **_QEMU),
    BoardSpec("qemu-m7", "QEMU mps2-an500 (Cortex-M7)", "Cortex-M7 (QEMU)", machine="mps2-an500",
              pio_board="qemu_mps2_an500", cpu="cortex-m7", fpu="fpv5-d16", **_MPS2, **_QEMU),
    # SSE-300: the core (SysTick) runs at 32 MHz, the FPGAIO counter the port reads at 20 MHz
    # (both measured against a loop of known length, tests/test_counters.py).
    BoardSpec("qemu-m55", "QEMU mps3-an547 (Cortex-M55)", "Cortex-M55 (QEMU)",
              machine="mps3-an547", cpu_hz=32_000_000, counter_hz=20_000_000,
              ram_bytes=4 * MiB, flash_bytes=512 * KiB, arena_budget=4 * MiB - 128 * KiB,
              flash_budget=512 * KiB - 128 * KiB, pio_board="qemu_mps3_an547",
              cpu="cortex-m55", fpu="auto",
              ldscript="firmware/boards/qemu_mps3_an547/an547.ld", **_QEMU),
    BoardSpec("esp32dev", "ESP32 DevKit", "ESP32 (Xtensa LX6)", "cycles", 240_000_000,
              usb_ids=_ESP_USB, reset="dtr-rts", fast_baud=921_600, boot_wait=1.5,
              ram_bytes=520 * KiB, flash_bytes=4 * MiB, arena_budget=128 * KiB,
              flash_budget=1 * MiB, flashed_with="esptool over USB-UART (auto-reset)",
              pio_board="esp32dev", platform="espressif32"),
    BoardSpec("esp32-s3-devkitc-1", "ESP32-S3 DevKitC-1", "ESP32-S3 (Xtensa LX7)", "cycles",
              240_000_000, usb_ids=((0x303A, 0x1001),) + _ESP_USB, reset="usb-jtag-serial",
              fast_baud=921_600, boot_wait=1.5, ram_bytes=512 * KiB, flash_bytes=8 * MiB,
              arena_budget=256 * KiB, flash_budget=1 * MiB,
              flashed_with="esptool over USB (native or USB-UART)",
              pio_board="esp32-s3-devkitc-1", platform="espressif32"),
    BoardSpec("nucleo_f746zg", "ST Nucleo-F746ZG (Cortex-M7)", "STM32F746ZGT6 (Cortex-M7F)",
              "cycles", 216_000_000,
              usb_ids=((0x0483, 0x374B), (0x0483, 0x374E), (0x0483, 0x3752)),
              fast_baud=921_600, boot_wait=0.5, ram_bytes=320 * KiB, flash_bytes=1 * MiB,
              arena_budget=256 * KiB, flash_budget=896 * KiB,
              flashed_with="on-board ST-LINK (mass storage or stlink)",
              pio_board="nucleo_f746zg", platform="ststm32"),
    BoardSpec("nano33ble", "Arduino Nano 33 BLE (Cortex-M4F)", "nRF52840 (Cortex-M4F)", "cycles",
              64_000_000, usb_ids=((0x2341, 0x805A), (0x2341, 0x005A)), reset="1200bps",
              boot_wait=1.0, ram_bytes=256 * KiB, flash_bytes=1 * MiB, arena_budget=160 * KiB,
              flash_budget=640 * KiB, flashed_with="bossac via the 1200-baud-touch bootloader",
              pio_board="nano33ble", platform="nordicnrf52"),
    BoardSpec("pico", "Raspberry Pi Pico (Cortex-M0+)", "RP2040 (dual Cortex-M0+)", "micros",
              133_000_000, usb_ids=((0x2E8A, 0x000A), (0x2E8A, 0x00C0), (0x2E8A, 0x0003)),
              reset="1200bps", boot_wait=1.0, ram_bytes=264 * KiB, flash_bytes=2 * MiB,
              arena_budget=192 * KiB, flash_budget=1536 * KiB,
              flashed_with="UF2 via the 1200-baud-touch bootloader (picotool)",
              pio_board="pico", platform="raspberrypi"),
    BoardSpec("disco_f407vg", "ST STM32F4 Discovery (Cortex-M4F)", counter="cycles",
              usb_ids=((0x0483, 0x3748),), boot_wait=0.5, pio_board="disco_f407vg",
              platform="ststm32",
              flashed_with="on-board ST-LINK/V2 (stlink); UART on PA2/PA3 via a USB-serial "
                           "adapter", **_F407),
    BoardSpec("renode-f407", "STM32F4 Discovery under Renode", counter="cycles",
              reset="renode", timeout=2.0, pio_board="tinypipe_stm32f407",
              flashed_with="started by tinypipe (Renode LoadELF)", **_F407),
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


def emulator_envs() -> list[str]:
    """Envs that run under QEMU (built offline here)."""
    return [b.env for b in BOARDS.values() if b.emulated]


def write_pio_boards(folder: str | Path) -> list[Path]:
    """Write the board JSON of every local-platform board into `folder` (PlatformIO reads
    `$PLATFORMIO_CORE_DIR/boards`); files already up to date are left alone."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in BOARDS.values():
        if not spec.local:
            continue
        path = out / f"{spec.pio_board}.json"
        text = json.dumps(spec.pio_board_json(), indent=2) + "\n"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def _kib(n: int) -> str:
    return f"{n / KiB:,.1f} KiB"


def _size(n: int) -> str:
    if n % MiB == 0:
        return f"{n // MiB} MiB"
    return f"{n // KiB:,} KiB" if n % KiB == 0 else f"{n:,} B"


def _mhz(hz: int) -> str:
    return f"{hz / 1e6:g} MHz"


def markdown_table() -> str:
    """The board table of docs/boards.md, generated from the registry."""
    rows = ["| env | MCU | clock | counter | RAM / flash (total) | arena budget | "
            "model flash budget | reset | baud (fast) | flashed with |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for b in BOARDS.values():
        counter = b.counter
        if b.counter_hz:
            counter += f" ({_mhz(b.counter_hz)} timer)"
        fast = f" ({b.fast_baud})" if b.fast_baud else ""
        rows.append(f"| `{b.env}` | {b.mcu} | {_mhz(b.cpu_hz)} | {counter} | "
                    f"{_size(b.ram_bytes)} / {_size(b.flash_bytes)} | {_size(b.arena_budget)} | "
                    f"{_size(b.flash_budget)} | {b.reset} | {b.baud}{fast} | {b.flashed_with} |")
    return "\n".join(rows)


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


if __name__ == "__main__":  # `python -m pipeline.boards write-pio-boards DIR` (bootstrap)
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "write-pio-boards":
        write_pio_boards(sys.argv[2])
    elif len(sys.argv) == 2 and sys.argv[1] == "markdown":
        print(markdown_table())
    else:
        sys.exit("usage: python -m pipeline.boards write-pio-boards DIR | markdown")
