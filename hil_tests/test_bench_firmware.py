"""`tinypipe bench --backend tflm|both`: the firmware measured per backend on the same inputs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None,
                                reason="qemu-system-arm not installed")


def test_firmware_bench_aot(model_path: Path, tmp_path: Path) -> None:
    from pipeline.bench import compare_backends

    c = compare_backends(model_path, "qemu-m4", ("aot",), samples=3, work_dir=tmp_path)
    (r,) = c.runs
    assert (r.backend, r.kernels, r.samples, r.bit_exact_vs_host) == ("aot", "aot", 3, 3)
    assert r.instructions_per_inference > 0 and r.arena_bytes > 0
    assert r.flash_bytes > len(model_path.read_bytes()) // 2  # the weights are in there
    assert c.macs > 0
    assert c.backends_identical is None  # one build: nothing to compare it with


def test_bench_tflm_without_tflm_dir_is_one_line(model_path: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TFLM_DIR"}
    p = subprocess.run([sys.executable, "-m", "pipeline.cli", "bench", "--model",
                        str(model_path), "--backend", "tflm"], capture_output=True, text=True,
                       env=env)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "TFLM_DIR" in p.stderr, p.stderr


@pytest.mark.skipif(not os.environ.get("TFLM_DIR"), reason="TFLM_DIR unset")
def test_bench_both_backends_side_by_side(model_path: Path, tmp_path: Path) -> None:
    from pipeline.cli import main

    out = tmp_path / "b.json"
    main(["bench", "--model", str(model_path), "--backend", "both", "--samples", "4",
          "--json", str(out)])
    j = json.loads(out.read_text())
    assert j["instructions_per_inference"] > 0 and j["baseline"]["kernels"] == "reference"
    fw = j["firmware"]
    assert [r["backend"] for r in fw["runs"]] == ["aot", "tflm"]
    assert fw["runs"][1]["kernels"].startswith("tflm")
    assert all(r["bit_exact_vs_host"] == 4 for r in fw["runs"])
    assert fw["backends_identical"] is True


def test_bench_suite_runs_every_model_of_a_folder(model_path: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cli import main

    monkeypatch.delenv("TFLM_DIR", raising=False)
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copyfile(model_path, suite / "a_tiny.tflite")
    (suite / "b_broken.tflite").write_bytes(b"not a model")
    out = tmp_path / "out"
    main(["bench", "--suite", str(suite), "--env", "qemu-m4", "--samples", "2",
          "--out", str(out)])
    j = json.loads((out / "suite.json").read_text())
    assert j["builds"] == ["aot"] and [Path(e["model"]).name for e in j["entries"]] == \
        ["a_tiny.tflite", "b_broken.tflite"]
    good, bad = j["entries"]
    (run,) = good["comparison"]["runs"]
    assert run["bit_exact_vs_host"] == 2 and run["instructions_per_inference"] > 0
    assert good["aot_arena_bytes"] == run["arena_bytes"]  # the plan is what the board reports
    assert good["tflm_arena_bytes"] > 0 and good["model_hash"]
    assert bad["comparison"] is None and "b_broken.tflite" in bad["error"]
    md = (out / "suite.md").read_text()
    assert "| a_tiny.tflite |" in md and "error:" in md
