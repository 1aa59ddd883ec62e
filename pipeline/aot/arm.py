"""Build generated AOT code for a QEMU Cortex-M board and run it there through semihosting.

    build_elf(gen_dir, out_dir, env, portable=False, profile=False) -> Path
    run_elf(elf, env, blob, n, work_dir) -> QemuRun
    ENVS / get_env(name) / arm_tools_missing()

The harness (`firmware/bench/tb_main.c`) is linked with the firmware's own start-up code, linker
script and board port (the folders platformio.ini names for the env), so it reads the same
counter the HIL firmware reports: instructions under QEMU `-icount`, at the clock the board
registry gives. It reads `in.bin`, writes `out.bin`, and writes instruction counts to
`ticks.bin`. Boards, clocks and compiler flags come from `pipeline.boards`; QEMU is started
by `pipeline.emulator.make_emulator`, like every emulator.
"""

from __future__ import annotations

import contextlib
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.boards import BOARDS, BoardSpec
from pipeline.errors import BuildError, DeviceError
from pipeline.paths import BENCH, ROOT, rel

GCC = "arm-none-eabi-gcc"
QEMU = "qemu-system-arm"
# Which port sources the harness links: everything but the firmware's own entry point.
_NOT_LINKED = ("main.c",)

ENVS: dict[str, BoardSpec] = {e: b for e, b in BOARDS.items() if b.emulated}

COMMON_CFLAGS = ("-std=c99", "-O2", "-ffp-contract=off", "-ffunction-sections",
                 "-fdata-sections", "-Wall", "-Wextra", "-Werror")


@dataclass
class QemuRun:
    """Raw outputs and per-sample instruction counts of one QEMU run."""

    out: bytes
    ticks: list[int]                 # instructions per sample
    op_ticks: list[list[int]]        # per sample: instructions before each op, then at the end


def arm_tools_missing() -> str | None:
    """Why the Cortex-M tool chain cannot be used here, or None."""
    for tool in (GCC, QEMU):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    return None


def get_env(name: str | BoardSpec) -> BoardSpec:
    """The registry entry of a QEMU env."""
    if isinstance(name, BoardSpec):
        return name
    try:
        return ENVS[name]
    except KeyError:
        raise DeviceError(f"--env {name}: unknown; choose one of {', '.join(ENVS)}") from None


def board_sources(spec: BoardSpec) -> list[Path]:
    """The firmware's port, start-up and reset code for `spec` (no app, no `main`)."""
    from pipeline.hil.build import port_dirs

    return sorted(p for d in port_dirs(spec.env) for p in d.glob("*.c")
                  if p.name not in _NOT_LINKED)


def board_cflags(spec: BoardSpec) -> list[str]:
    """Machine flags and the board facts the port needs, all from the registry."""
    defs = {"F_CPU": f"{spec.cpu_hz}L", "TP_BOARD_NAME": f'"{spec.env}"', **spec.c_defines()}
    return [*spec.cflags, *(f"-D{k}={v}" for k, v in defs.items())]


def link_elf(sources: list[Path], elf: Path, env: str | BoardSpec,
             flags: tuple[str, ...] = ()) -> Path:
    """Compile `sources` with the board's port, start-up code and linker script into `elf`."""
    spec = get_env(env)
    if shutil.which(GCC) is None:
        raise BuildError(f"{GCC} not found; install gcc-arm-none-eabi")
    elf.parent.mkdir(parents=True, exist_ok=True)
    srcs = [*map(str, sources), *map(str, board_sources(spec))]
    from pipeline.hil.build import port_dirs

    # The port folders are the linker's search path: their scripts INCLUDE each other's.
    search = [arg for d in port_dirs(spec.env) for arg in ("-L", str(d))]
    cmd = [GCC, *board_cflags(spec), *COMMON_CFLAGS, *flags, *srcs,
           "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
           *search, "-T", str(rel(spec.ldscript)), "-Wl,--gc-sections",
           "-o", str(elf), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        last = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()] or ["no output"]
        err = next((ln for ln in last if "error" in ln), last[-1])
        raise BuildError(f"{GCC} failed for {spec.env}: {err.strip()}")
    return elf


def build_elf(gen_dir: Path, out_dir: Path, env: str | BoardSpec, portable: bool = False,
              profile: bool = False, prefix: str = "tp") -> Path:
    """Compile the generated folder with the harness into `out_dir`/model.elf."""
    if prefix != "tp":
        raise BuildError("the QEMU harness expects an export with prefix 'tp'")
    defs = (("-DTK_PORTABLE",) if portable else ()) + (("-DTP_PROFILE",) if profile else ())
    srcs = sorted(Path(gen_dir).glob("*.c")) + [BENCH / "tb_main.c"]
    return link_elf(srcs, Path(out_dir) / "model.elf", env, (*defs, "-I", str(gen_dir)))


def run_elf(elf: Path, env: str | BoardSpec, blob: bytes, n: int, work_dir: Path,
            n_ops: int | None = None, timeout: float = 600.0) -> QemuRun:
    """Run `elf` on `n` samples (inputs back to back in `blob`); the QEMU process always ends."""
    from pipeline.emulator import make_emulator

    spec = get_env(env)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "in.bin").write_bytes(struct.pack("<I", n) + blob)
    for name in ("out.bin", "ticks.bin"):
        with contextlib.suppress(FileNotFoundError):
            (work_dir / name).unlink()
    make_emulator(spec, elf, serial="none", semihosting=True, cwd=work_dir).run(timeout)
    raw = (work_dir / "ticks.bin").read_bytes()
    vals = list(struct.unpack(f"<{len(raw) // 8}Q", raw))
    per = 1 + (n_ops + 1 if n_ops is not None else 0)
    if len(vals) != per * n:
        raise DeviceError(f"QEMU {spec.machine}: expected {per * n} counter records, "
                          f"got {len(vals)}")
    ticks = [vals[i * per] for i in range(n)]
    op_ticks = [vals[i * per + 1:(i + 1) * per] for i in range(n)] if n_ops is not None else []
    return QemuRun((work_dir / "out.bin").read_bytes(), ticks, op_ticks)
