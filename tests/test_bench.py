"""`tinypipe bench` on a small model: JSON fields, determinism, DSP not slower than reference."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "aot"))

pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="bench needs arm-none-eabi-gcc and qemu-system-arm")


@pytest.fixture(scope="module")
def small_tflite(tmp_path_factory):
    import keras
    from aot_models import converted, mobilenet_v1

    m = mobilenet_v1(keras, (32, 32, 3), alpha=0.25, classes=3,
                     blocks=[(64, 1), (128, 2), (128, 1)])
    path = tmp_path_factory.mktemp("bench") / "small.tflite"
    path.write_bytes(converted(m, (32, 32, 3), seed=3))
    return path


def test_bench_json_deterministic_and_faster(small_tflite, tmp_path):
    from pipeline.cli import main

    outs = []
    for k in range(2):
        out = tmp_path / f"b{k}.json"
        main(["bench", "--model", str(small_tflite), "--env", "qemu-m4", "--json", str(out)])
        outs.append(json.loads(out.read_text()))
    a, b = outs
    for key in ("instructions_per_inference", "macs", "arena_bytes", "flash_bytes", "baseline",
                "layers", "tflm_arena_bytes", "macs_per_instruction"):
        assert key in a, key
    assert a["instructions_per_inference"] > 0 and a["macs"] > 0
    assert a["instructions_per_inference"] == b["instructions_per_inference"]
    assert [x["instructions"] for x in a["layers"]] == [x["instructions"] for x in b["layers"]]
    base = a["baseline"]
    assert base["kernels"] == "reference"
    assert a["instructions_per_inference"] <= base["instructions_per_inference"]
    assert a["flash_bytes"] > a["weights_bytes"] > 0
    per_layer = sum(x["instructions"] for x in a["layers"])
    assert abs(per_layer - a["instructions_per_inference"]) < 0.05 * per_layer
    assert np.isclose(a["macs_per_instruction"], a["macs"] / a["instructions_per_inference"],
                      rtol=1e-3)


def test_bench_errors_are_one_line(tmp_path):
    from pipeline.bench import bench
    from pipeline.errors import DeviceError, ModelError

    with pytest.raises(ModelError, match="cannot read model"):
        bench(tmp_path / "missing.tflite")
    with pytest.raises(DeviceError, match="unknown"):
        bench(tmp_path / "missing.tflite", env="qemu-m0")


def test_bench_help_has_example():
    from click.testing import CliRunner

    from pipeline.cli_bench import bench

    r = CliRunner().invoke(bench, ["--help"])
    assert r.exit_code == 0 and "tinypipe bench --model" in r.output
