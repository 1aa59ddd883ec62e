"""Models with float32, int8, uint8 and int16 inputs and outputs on QEMU M4, through each backend.

The board must report the model's own types (HELLO's tensor table uses the protocol's dtype
codes on both backends) and compute outputs byte-identical to the host TFLM interpreter. The
TFLM backend needs a tflite-micro tree in $TFLM_DIR (docs/tflm.md):

    TFLM_DIR=... pytest hil_tests/test_io_dtypes.py
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tiny_model

ENV = "qemu-m4"
N = 16


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny CNN with each I/O type, converted once."""
    return tmp_path_factory.mktemp("io-models")


@pytest.mark.parametrize("backend", ["aot", "tflm"])
@pytest.mark.parametrize("dtype", tiny_model.IO_TYPES)
def test_model_io_type_on_device(dtype: str, backend: str, models: Path,
                                 tmp_path: Path) -> None:
    if backend == "tflm" and not os.environ.get("TFLM_DIR"):
        pytest.skip("TFLM_DIR unset")
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not installed")
    from pipeline.hil.runner import run_hil
    from pipeline.tflm import run_tflm

    model = tiny_model.cached_tflite(models, dtype)
    x = tiny_model.make_samples(N, seed=4, dtype=dtype)
    summary = run_hil(ENV, model, samples=x, out_dir=tmp_path, backend=backend)
    report = json.loads((tmp_path / "hil.json").read_text())
    dev = report["device"]
    assert dev["backend"].startswith(backend)
    assert [t["dtype"] for t in dev["inputs"]] == [dtype]
    assert [t["dtype"] for t in dev["outputs"]] == [dtype]
    assert dev["inputs"][0]["shape"] == [1, *tiny_model.SHAPE]
    assert (summary["samples"], summary["bit_exact"]) == (N, N), summary["mismatched_indices"]
    # The same check by hand, on the bytes: the device's outputs as the model's dtype.
    want = run_tflm(model, [x]).outputs[0].reshape(N, -1)
    got = np.array([r["output"] for r in report["samples"]], dtype=dtype)
    assert got.tobytes() == want.astype(dtype).tobytes()
    assert len(np.unique(want)) > 8  # not a degenerate model
