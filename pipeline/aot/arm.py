"""Build generated AOT code for a Cortex-M QEMU machine and run it there through semihosting.

    build_elf(gen_dir, out_dir, env, portable=False, profile=False) -> Path
    run_elf(elf, env, blob, n, work_dir) -> QemuRun
    ArmEnv / ENVS / arm_tools_missing()

The harness in firmware/bench reads `in.bin`, writes `out.bin` and SysTick ticks to `ticks.bin`;
with `-icount shift=0` QEMU retires one instruction per nanosecond of virtual time, so ticks
convert to instruction counts exactly up to the timer resolution (ns per tick).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import BuildError, DeviceError

BENCH_DIR = Path(__file__).resolve().parents[2] / "firmware" / "bench"
GCC = "arm-none-eabi-gcc"
QEMU = "qemu-system-arm"


@dataclass(frozen=True)
class ArmEnv:
    """One QEMU target: machine, compiler flags, linker script and timer clock."""

    name: str
    machine: str
    cflags: tuple[str, ...]
    ldscript: str
    clock_hz: int

    @property
    def ns_per_tick(self) -> float:
        """Instructions per SysTick tick under -icount shift=0."""
        return 1e9 / self.clock_hz


ENVS: dict[str, ArmEnv] = {
    "qemu-m4": ArmEnv("qemu-m4", "mps2-an386",
                      ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
                      "tb_mps2.ld", 25_000_000),
    "qemu-m7": ArmEnv("qemu-m7", "mps2-an500",
                      ("-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard"),
                      "tb_mps2.ld", 25_000_000),
    "qemu-m55": ArmEnv("qemu-m55", "mps3-an547", ("-mcpu=cortex-m55", "-mfloat-abi=hard"),
                       "tb_mps3.ld", 32_000_000),
}

COMMON_CFLAGS = ("-mthumb", "-std=c99", "-O2", "-ffp-contract=off", "-ffunction-sections",
                 "-fdata-sections", "-Wall", "-Wextra", "-Werror")


@dataclass
class QemuRun:
    """Raw outputs and per-sample tick counts of one QEMU run."""

    out: bytes
    ticks: list[int]                 # total per sample
    op_ticks: list[list[int]]        # per sample: timestamp before each op, then at the end


def arm_tools_missing() -> str | None:
    """Why the Cortex-M tool chain cannot be used here, or None."""
    for tool in (GCC, QEMU):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    return None


def get_env(name: str) -> ArmEnv:
    try:
        return ENVS[name]
    except KeyError:
        raise DeviceError(f"--env {name}: unknown; choose one of {', '.join(ENVS)}") from None


def build_elf(gen_dir: Path, out_dir: Path, env: str | ArmEnv, portable: bool = False,
              profile: bool = False, prefix: str = "tp") -> Path:
    """Compile the generated folder with the harness into `out_dir`/model.elf."""
    e = env if isinstance(env, ArmEnv) else get_env(env)
    if prefix != "tp":
        raise BuildError("the QEMU harness expects an export with prefix 'tp'")
    if shutil.which(GCC) is None:
        raise BuildError(f"{GCC} not found; install gcc-arm-none-eabi")
    out_dir.mkdir(parents=True, exist_ok=True)
    elf = out_dir / "model.elf"
    defs = (["-DTK_PORTABLE"] if portable else []) + (["-DTP_PROFILE"] if profile else [])
    srcs = sorted(str(p) for p in Path(gen_dir).glob("*.c"))
    srcs += [str(BENCH_DIR / "tb_main.c"), str(BENCH_DIR / "tb_startup.c")]
    cmd = [GCC, *e.cflags, *COMMON_CFLAGS, *defs, "-I", str(gen_dir), *srcs,
           "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
           "-L", str(BENCH_DIR), "-T", str(BENCH_DIR / e.ldscript), "-Wl,--gc-sections",
           "-o", str(elf), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        last = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()] or ["no output"]
        err = next((ln for ln in last if "error" in ln), last[-1])
        raise BuildError(f"{GCC} failed for {e.name}: {err.strip()}")
    return elf


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_elf(elf: Path, env: str | ArmEnv, blob: bytes, n: int, work_dir: Path,
            n_ops: int | None = None, timeout: float = 600.0) -> QemuRun:
    """Run `elf` on `n` samples (inputs back to back in `blob`); the QEMU process always ends."""
    e = env if isinstance(env, ArmEnv) else get_env(env)
    if shutil.which(QEMU) is None:
        raise DeviceError(f"{QEMU} not found; install qemu-system-arm")
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "in.bin").write_bytes(struct.pack("<I", n) + blob)
    for name in ("out.bin", "ticks.bin"):
        with contextlib.suppress(FileNotFoundError):
            (work_dir / name).unlink()
    cmd = [QEMU, "-M", e.machine, "-nographic", "-monitor", "none", "-serial", "none",
           "-icount", "shift=0", "-semihosting-config", "enable=on,target=native",
           "-kernel", str(Path(elf).resolve())]
    proc = subprocess.Popen(cmd, cwd=work_dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"QEMU {e.machine} did not finish {Path(elf).name} in "
                          f"{timeout:.0f} s") from None
    finally:
        _stop(proc)
    if proc.returncode:
        tail = (out or b"").decode(errors="replace").strip().splitlines()
        raise DeviceError(f"QEMU {e.machine} run of {Path(elf).name} failed "
                          f"(exit {proc.returncode}): {tail[-1] if tail else 'no output'}")
    raw = (work_dir / "ticks.bin").read_bytes()
    vals = list(struct.unpack(f"<{len(raw) // 8}Q", raw))
    per = 1 + (n_ops + 1 if n_ops is not None else 0)
    if len(vals) != per * n:
        raise DeviceError(f"QEMU {e.machine}: expected {per * n} tick records, got {len(vals)}")
    ticks = [vals[i * per] for i in range(n)]
    op_ticks = [vals[i * per + 1:(i + 1) * per] for i in range(n)] if n_ops is not None else []
    return QemuRun((work_dir / "out.bin").read_bytes(), ticks, op_ticks)
