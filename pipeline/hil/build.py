"""Firmware builds through PlatformIO: export the model, run `pio run -e ENV`, find the ELF."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.artifact import ModelArtifact
from pipeline.errors import BuildError
from pipeline.paths import CHECKOUT, FIRMWARE, PIO_INI, ROOT, SCRIPTS, cache_dir, core_dir, work_dir
from pipeline.project import (
    build_project,
    ensure_platform,
    find_elf,
    load_project,
    pio_envs,
    refresh_app,
)

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
    """Environment for an offline, quiet PlatformIO with tinypipe's core dir (paths.core_dir)."""
    env = dict(os.environ)
    env["PLATFORMIO_CORE_DIR"] = str(core_dir())
    env.update(PLATFORMIO_DISABLE_UPGRADE_CHECK="true", PLATFORMIO_SETTING_ENABLE_TELEMETRY="no",
               PLATFORMIO_NO_ANSI="true", PLATFORMIO_DISABLE_PROGRESSBAR="true")
    env.update(extra or {})
    return env


def bootstrap() -> None:
    """Seed tool-scons and the board JSON into the core dir and link the local platform there
    (fast no-op when done)."""
    script = SCRIPTS / "pio_bootstrap.sh"
    env = pio_env()
    proc = subprocess.run(["bash", str(script), sys.executable], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise BuildError(f"{script.name} failed: {last}")
    ensure_platform(core_dir(), pio_executable(), env)


def port_dirs(env: str) -> list[Path]:
    """The board-port source folders an env compiles (`custom_port_dirs`)."""
    try:
        dirs = pio_envs()[env]["custom_port_dirs"].split()
    except KeyError:
        raise BuildError(f"{PIO_INI.name}: env {env!r} has no custom_port_dirs") from None
    return [ROOT / d for d in dirs]


_HASH_IN = {"aot": ("tp_model.h", r'#define \w+_MODEL_HASH "([0-9a-f]+)"'),
            "tflm": ("model_settings.h", r'#define TINYPIPE_MODEL_HASH "([0-9a-f]+)"')}


def exported_hash(model_dir: Path, backend: str = "aot") -> str | None:
    """The model hash an exported C folder was generated from (None if it is not one)."""
    name, pattern = _HASH_IN[backend]
    try:
        m = re.search(pattern, (Path(model_dir) / name).read_text())
    except OSError:
        return None
    return m.group(1) if m else None


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


def export_model(model: ModelArtifact | bytes | str | Path, out_dir: Path,
                 backend: str = "aot") -> Path:
    """Write the model's C sources for `backend` into out_dir; returns the folder."""
    if backend not in BACKENDS:
        raise BuildError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    art = ModelArtifact.load(model)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    if backend == "tflm":
        from pipeline.export import export_tflm

        export_tflm(art, out_dir)
        return out_dir
    from pipeline.aot import export_aot

    export_aot(art, out_dir, prefix="tp")
    return out_dir


def build_firmware(env: str | None, model: ModelArtifact | bytes | str | Path | None,
                   backend: str = "aot", out: str | Path | None = None,
                   progress: Progress | None = None, jobs: int | None = None,
                   model_dir: str | Path | None = None, tflm_kernels: str | None = None,
                   project: str | Path | None = None) -> Path:
    """Export `model` (None = firmware/test_model), build env `env`, return the ELF path.

    `model_dir` is a folder already exported for this model and backend (a run folder's
    `c/aot`): used as is when its model hash matches, else the model is exported again.
    `tflm_kernels` ("reference" or "cmsis-nn") picks TFLM's kernel library; by default
    CMSIS-NN is used when $CMSIS_NN_DIR is set.

    The PlatformIO project is the repository in a checkout, else one generated in `out`
    (pipeline.project). `project` is a `tinypipe init` project instead: `env` defaults to its
    first, `model` (when given) is exported into its model/ folder (None: what is there), and
    the ELF lands in its .pio/build (or `out`)."""
    say = progress or (lambda _msg: None)
    extra: dict[str, str] = {}
    proj = None
    if project is not None:
        proj = load_project(project)
        env = proj.env(env)
    if env is None:
        raise BuildError("no env: give --env ENV (or --project DIR)")
    if backend == "tflm":
        check_tflm_dir()
        if model is None and proj is None:
            raise BuildError("the tflm backend needs a model (there is no TFLM test model)")
        if tflm_kernels == "reference":
            extra["CMSIS_NN_DIR"] = ""
        elif tflm_kernels == "cmsis-nn" and not os.environ.get("CMSIS_NN_DIR", "").strip():
            raise BuildError("CMSIS_NN_DIR unset: point it at a CMSIS-NN source tree "
                             "(see docs/tflm.md)")
    if proj is not None:
        out = Path(out).resolve() if out else None
        build_dir = out / "pio" if out else proj.root / ".pio" / "build"
        log_dir = out or proj.root / ".pio"
    else:
        out = Path(out).resolve() if out else work_dir() / "build" / "firmware" / env
        build_dir, log_dir = out / "pio", out
    log_dir.mkdir(parents=True, exist_ok=True)
    extra |= {"PLATFORMIO_BUILD_DIR": str(build_dir.resolve()), "TINYPIPE_BACKEND": backend}
    if backend == "tflm" and "PLATFORMIO_BUILD_CACHE_DIR" not in os.environ:
        # TFLM is ~50 big C++ files: share their objects between build folders.
        cache = ROOT / "build" if CHECKOUT else cache_dir()
        extra["PLATFORMIO_BUILD_CACHE_DIR"] = str(cache / "tflm-cache")
    if proj is not None:
        if model is not None:
            say(f"exporting model ({backend}) into {proj.model_dir}")
            export_model(ModelArtifact.load(model), proj.model_dir, backend)
        say("refreshing lib/tinypipe")
        refresh_app(proj.root)
        project_dir = proj.root
    else:
        if model is not None:
            art = ModelArtifact.load(model)
            if model_dir is not None and exported_hash(Path(model_dir), backend) == art.hash:
                say(f"using the exported model in {model_dir}")
                extra["TINYPIPE_MODEL_DIR"] = str(Path(model_dir).resolve())
            else:
                say(f"exporting model ({backend})")
                extra["TINYPIPE_MODEL_DIR"] = str(export_model(art, out / "model", backend))
        else:
            extra["TINYPIPE_MODEL_DIR"] = str(FIRMWARE / "test_model")
        project_dir = build_project(out)
    project_dir = project_dir.resolve()  # pio runs inside it
    say("preparing PlatformIO")
    bootstrap()
    cmd = [pio_executable(), "run", "-e", env, "-d", str(project_dir)]
    if jobs:
        cmd += ["-j", str(jobs)]
    say(f"building {env}")
    log = log_dir / (f"build-{env}.log" if proj is not None and out is None else "build.log")
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=pio_env(extra), cwd=project_dir)
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            if line.startswith(("Compiling", "Linking", "Archiving")):
                say(line.strip())
        proc.wait()
    if proc.returncode != 0:
        lines = log.read_text().splitlines()
        errors = [ln for ln in lines if "error" in ln.lower()]
        first = errors[0].strip() if errors else "see the log"
        raise BuildError(f"pio run -e {env} failed: {first} (log: {log})")
    return find_elf(build_dir, env)


def project_of(elf: str | Path) -> Path:
    """The PlatformIO project an ELF from build_firmware was built in (for uploads)."""
    build_dir = Path(elf).resolve().parent.parent  # <build dir>/<env>/firmware.elf
    for cand in (build_dir.parent, build_dir.parent.parent):  # <out>/pio, <project>/.pio/build
        if (cand / "platformio.ini").is_file():
            return cand
    return ROOT


build = build_firmware


class _CallableModule(types.ModuleType):
    """`pipeline.hil.build` is both this module and the public build() function: importing the
    submodule rebinds the package attribute to the module, so the module forwards calls."""

    def __call__(self, *args: Any, **kwargs: Any) -> Path:
        return build_firmware(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
