"""tinypipe outside its checkout: the wheel, installed into a fresh venv, run from another folder.

The venv reuses the dependencies already installed for this interpreter (a .pth names their
site-packages; no second TensorFlow download) and gets the wheel with `pip install --no-deps`.
Everything then runs from a temporary folder with no PYTHONPATH, so the installed package, not
the checkout, is what runs: export (AOT), a PlatformIO build for qemu-m4, and a HIL run under
QEMU, in a `tinypipe init` project, that must be bit-exact with the host TFLM interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hil_tests"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or
                       shutil.which("qemu-system-arm") is None,
                       reason="arm-none-eabi-gcc or qemu-system-arm not installed"),
]


def _sources(dest: Path) -> None:
    """The checkout's files (tracked and new, not ignored) copied to `dest`, so a stale
    build/ in the checkout cannot leak into the wheel."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True, check=True)
    for rel in filter(None, listed.stdout.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the checkout (no build isolation: nothing downloaded)."""
    tmp = tmp_path_factory.mktemp("wheel")
    _sources(tmp / "src")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          str(tmp / "src"), "-w", str(tmp / "dist")], tmp, dict(os.environ), timeout=300)
    (whl,) = (tmp / "dist").glob("tinypipe-*.whl")
    return whl


def test_wheel_carries_the_whole_firmware_tree(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    share = "pipeline/_share/"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                             "firmware"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    missing = [f for f in listed if share + f not in names]
    assert listed and not missing, missing
    for f in ("platformio.ini", "scripts/pio_bootstrap.sh"):
        assert share + f in names
    assert "pipeline/boards.py" in names  # the registry the board JSON is generated from
    assert not [n for n in names if n.startswith(share) and n.endswith(".json")
                and "/boards/" in n], "board JSON is generated, never shipped"


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory) -> Path:
    """A fresh venv: our dependencies through a .pth, the wheel installed with pip."""
    tmp = tmp_path_factory.mktemp("venv")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_tinypipe_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    env = _clean_env(tmp)
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--force-reinstall",
          str(wheel)], tmp, env)
    # What `pip install platformio` puts in a venv: its console script, for this interpreter.
    pio = venv / "bin" / "pio"
    pio.write_text(f"#!{py}\nimport sys\nfrom platformio.__main__ import main\n"
                   "sys.exit(main())\n")
    pio.chmod(0o755)
    return venv


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PLATFORMIO_CORE_DIR", "VIRTUAL_ENV")}
    env["XDG_CACHE_HOME"] = str(home / "cache")  # the per-user core dir lands here
    return env


def _share_files(venv: Path) -> set[str]:
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import pipeline.paths as p; print(p.ROOT)"],
                         capture_output=True, text=True, check=True,
                         cwd=venv).stdout.strip()  # not the checkout: `-c` puts cwd on sys.path
    root = Path(out)
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if "__pycache__" not in p.parts}


def test_installed_tinypipe_exports_builds_and_runs_hil_from_another_folder(
        venv: Path, tmp_path: Path) -> None:
    import numpy as np
    import tiny_model

    from pipeline.tflm import run_tflm

    work = tmp_path / "work"
    work.mkdir()
    env = _clean_env(tmp_path)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    tinypipe = str(venv / "bin" / "tinypipe")

    where = _run([str(venv / "bin" / "python"), "-c",
                  "import pipeline, pipeline.paths as p; print(pipeline.__file__); "
                  "print(p.CHECKOUT)"], work, env).split()
    assert Path(where[0]).is_relative_to(venv) and where[1] == "False", where
    before = _share_files(venv)

    model = work / "tiny.tflite"
    model.write_bytes(tiny_model.make_tflite())
    x = tiny_model.make_samples(4)
    np.savez(work / "x.npz", x=x)

    _run([tinypipe, "export", "--backend", "aot", "--model", "tiny.tflite", "--out", "c"],
         work, env)
    assert {"tp_model.h", "tp_model.c", "tinykernels.h"} <= {p.name for p in (work / "c").iterdir()}

    elf = Path(_run([tinypipe, "build", "--env", "qemu-m4", "--model", "tiny.tflite"], work,
                    env).strip().splitlines()[-1])
    assert elf.is_file() and elf.is_relative_to(work / "build" / "firmware" / "qemu-m4")
    assert (work / "build/firmware/qemu-m4/platformio.ini").read_text().startswith(
        "; Generated by tinypipe")
    core = tmp_path / "cache" / "tinypipe" / "platformio"
    assert (core / "packages" / "tool-scons" / "package.json").is_file()
    assert (core / "boards" / "qemu_mps2_an386.json").is_file()

    # A user project: tinypipe's app copied from the installed package, built by `hil`.
    _run([tinypipe, "init", "fw", "--board", "qemu-m4"], work, env)
    app = Path(_run([str(venv / "bin" / "python"), "-c", "import pipeline.paths as p; "
                     "print(p.FIRMWARE / 'src' / 'app.c')"], work, env).strip())
    assert (work / "fw/lib/tinypipe/src/app.c").read_bytes() == app.read_bytes()
    _run([tinypipe, "hil", "--project", "fw", "--model", "tiny.tflite", "--data", "x.npz",
          "--out", "hil"], work, env, timeout=600)
    assert (work / "fw/.pio/build/qemu-m4/program.elf").is_file()
    assert (work / "fw/model/tp_model.h").is_file()
    report = json.loads((work / "hil" / "hil.json").read_text())
    assert report["summary"]["samples"] == 4 and report["summary"]["bit_exact"] == 4
    want = run_tflm(model, [x]).outputs[0].reshape(4, -1)
    got = np.array([s["output"] for s in report["samples"]], dtype=np.int8)
    np.testing.assert_array_equal(got, want)
    assert _share_files(venv) == before, "the run wrote into the installed package"
