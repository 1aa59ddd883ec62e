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
    assert c.macs > 0 and c.backends_identical


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
