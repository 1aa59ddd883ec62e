"""Firmware builds through PlatformIO: export the model, run `pio run -e ENV`, find the ELF."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.errors import BuildError

REPO = Path(__file__).resolve().parents[2]
Progress = Callable[[str], None]


def pio_executable() -> str:
    """The `pio` next to this Python, else the one on PATH."""
    local = Path(sys.executable).parent / "pio"
    if local.exists():
        return str(local)
    found = shutil.which("pio") or shutil.which("platformio")
    if not found:
        raise BuildError("PlatformIO not found; pip install platformio")
    return found


def pio_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for an offline, quiet, project-local PlatformIO."""
    env = dict(os.environ)
    env.setdefault("PLATFORMIO_CORE_DIR", str(REPO / ".pio-core"))
    env.update(PLATFORMIO_DISABLE_UPGRADE_CHECK="true", PLATFORMIO_SETTING_ENABLE_TELEMETRY="no",
               PLATFORMIO_NO_ANSI="true", PLATFORMIO_DISABLE_PROGRESSBAR="true")
    env.update(extra or {})
    return env


def bootstrap() -> None:
    """Seed tool-scons into the core dir (fast no-op when done)."""
    script = REPO / "scripts" / "pio_bootstrap.sh"
    proc = subprocess.run(["bash", str(script), sys.executable], capture_output=True, text=True,
                          env=pio_env())
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise BuildError(f"{script.relative_to(REPO)} failed: {last}")


def model_hash(model: bytes | str | Path) -> str:
    """First 16 hex chars of the .tflite's sha256 (what the firmware reports)."""
    data = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


BACKENDS = ("aot", "tflm")
TFLM_HINT = "TFLM_DIR unset: point it at a tflite-micro source tree (see docs/tflm.md)"


def check_tflm_dir() -> Path:
    """The tflite-micro source tree named by $TFLM_DIR; BuildError when unset or wrong."""
    root = os.environ.get("TFLM_DIR", "").strip()
    if not root:
        raise BuildError(TFLM_HINT)
    path = Path(root).expanduser()
    if not (path / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file():
        raise BuildError(f"TFLM_DIR={root} is not a tflite-micro source tree "
                         "(no tensorflow/lite/micro/micro_interpreter.h)")
    return path


def export_model(model: bytes | str | Path, out_dir: Path, backend: str = "aot") -> Path:
    """Write the model's C sources for `backend` into out_dir; returns the folder."""
    if backend not in BACKENDS:
        raise BuildError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    data = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    if backend == "tflm":
        from pipeline.export import export_tflm
        from pipeline.profile import profile_tflite
        from pipeline.tflite_info import read_model

        arena = profile_tflite(bytes(data)).arena_bytes_with_margin
        if not arena:
            raise BuildError("could not measure the TFLM arena of this model on the host")
        info = read_model(bytes(data))
        shape = info.tensors[info.outputs[0]].shape
        classes = [str(i) for i in range(int(shape[-1]) if len(shape) else 1)]
        export_tflm(bytes(data), out_dir, classes, None, arena)
        return out_dir
    try:
        from pipeline.aot import export_aot
    except ImportError as e:
        raise BuildError(f"AOT compiler unavailable ({e})") from None
    export_aot(data, out_dir, prefix="tp")
    return out_dir


def find_elf(build_dir: Path, env: str) -> Path:
    """The linked firmware of `env` inside a PlatformIO build dir."""
    for name in ("program.elf", "firmware.elf"):
        elf = build_dir / env / name
        if elf.is_file():
            return elf
    raise BuildError(f"{build_dir / env}: no ELF after the build")


def build_firmware(env: str, model: bytes | str | Path | None, backend: str = "aot",
          out: str | Path | None = None, progress: Progress | None = None,
          jobs: int | None = None) -> Path:
    """Export `model` (None = firmware/test_model), build env `env`, return the ELF path."""
    say = progress or (lambda _msg: None)
    if backend == "tflm":
        check_tflm_dir()
        if model is None:
            raise BuildError("the tflm backend needs a model (there is no TFLM test model)")
    out = Path(out) if out else REPO / "build" / "firmware" / env
    out.mkdir(parents=True, exist_ok=True)
    extra = {"PLATFORMIO_BUILD_DIR": str(out / "pio"), "TINYPIPE_BACKEND": backend}
    if backend == "tflm" and "PLATFORMIO_BUILD_CACHE_DIR" not in os.environ:
        # TFLM is ~50 big C++ files: share their objects between build folders.
        extra["PLATFORMIO_BUILD_CACHE_DIR"] = str(REPO / "build" / "tflm-cache")
    if model is not None:
        say(f"exporting model ({backend})")
        extra["TINYPIPE_MODEL_DIR"] = str(export_model(model, out / "model", backend))
    else:
        extra["TINYPIPE_MODEL_DIR"] = str(REPO / "firmware" / "test_model")
    say("preparing PlatformIO")
    bootstrap()
    cmd = [pio_executable(), "run", "-e", env, "-d", str(REPO)]
    if jobs:
        cmd += ["-j", str(jobs)]
    say(f"building {env}")
    log = out / "build.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=pio_env(extra), cwd=REPO)
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            if line.startswith(("Compiling", "Linking", "Archiving")):
                say(line.strip())
        proc.wait()
    if proc.returncode != 0:
        errors = [ln for ln in log.read_text().splitlines() if "error" in ln.lower()]
        first = errors[0].strip() if errors else "see the log"
        raise BuildError(f"pio run -e {env} failed: {first} (log: {log})")
    return find_elf(out / "pio", env)


build = build_firmware


class _CallableModule(types.ModuleType):
    """`pipeline.hil.build` is both this module and the public build() function: importing the
    submodule rebinds the package attribute to the module, so the module forwards calls."""

    def __call__(self, *args: Any, **kwargs: Any) -> Path:
        return build_firmware(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
