"""TFLM backend on QEMU M4: the same model through the AOT engine and the TFLM interpreter.

Needs a tflite-micro source tree in $TFLM_DIR (docs/tflm.md); skipped without one.

    TFLM_DIR=... pytest hil_tests/test_tflm.py
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tiny_model

from pipeline.errors import BuildError

ENV = "qemu-m4"
N = 12

needs_tflm = pytest.mark.skipif(not os.environ.get("TFLM_DIR"), reason="TFLM_DIR unset")


@pytest.fixture(scope="module")
def runs(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """hil.json of one run per backend on the same samples (builds, starts and stops QEMU)."""
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not installed")
    from pipeline.hil.runner import run_hil

    x = tiny_model.make_samples(N, seed=5)
    out = {}
    for backend in ("aot", "tflm"):
        d = tmp_path_factory.mktemp(f"hil-{backend}")
        run_hil(ENV, model_path, samples=x, out_dir=d, backend=backend)
        out[backend] = json.loads((d / "hil.json").read_text())
    return out


@needs_tflm
def test_hello_names_tflm_and_its_kernels(runs: dict[str, dict], model_hash: str) -> None:
    dev = runs["tflm"]["device"]
    assert dev["backend"] in ("tflm-reference", "tflm+cmsis-nn")
    assert dev["model_hash"] == model_hash
    assert 0 < dev["arena_bytes"]
    assert runs["aot"]["device"]["backend"] == "aot"


@needs_tflm
def test_both_backends_bit_exact_with_host(runs: dict[str, dict]) -> None:
    for backend, rep in runs.items():
        s = rep["summary"]
        assert (s["samples"], s["bit_exact"]) == (N, N), (backend, s["mismatched_indices"])


@needs_tflm
def test_tflm_and_aot_outputs_identical(runs: dict[str, dict]) -> None:
    tflm = np.array([r["output"] for r in runs["tflm"]["samples"]])
    aot = np.array([r["output"] for r in runs["aot"]["samples"]])
    assert tflm.shape == (N, tiny_model.CLASSES)
    assert np.array_equal(tflm, aot)
    assert all(r["instructions"] > 0 for r in runs["tflm"]["samples"])


def test_build_without_tflm_dir_says_so(monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    from pipeline.hil.build import build_firmware

    monkeypatch.delenv("TFLM_DIR", raising=False)
    with pytest.raises(BuildError, match="^TFLM_DIR unset: point it at a tflite-micro"):
        build_firmware(ENV, b"unused", backend="tflm", out=tmp_path)
    monkeypatch.setenv("TFLM_DIR", str(tmp_path))
    with pytest.raises(BuildError, match="not a tflite-micro source tree"):
        build_firmware(ENV, b"unused", backend="tflm", out=tmp_path)


@needs_tflm
def test_input_of_odd_byte_count(tmp_path: Path) -> None:
    """A 7x7x1 input (49 bytes) fits the firmware's input staging, which hands out 16-byte slots."""
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not installed")
    import tensorflow as tf

    from pipeline.hil.runner import run_hil
    from pipeline.quantize import quantize

    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((7, 7, 1), batch_size=1)
    x = tf.keras.layers.Conv2D(4, 3, activation="relu")(inp)
    out = tf.keras.layers.Dense(3)(tf.keras.layers.GlobalAveragePooling2D()(x))
    rng = np.random.default_rng(0)
    model = quantize(tf.keras.Model(inp, out), rng.uniform(0, 1, (16, 7, 7, 1)).astype(np.float32))
    s = run_hil(ENV, model, samples=rng.integers(-128, 128, (4, 7, 7, 1), dtype=np.int8),
                out_dir=tmp_path, backend="tflm")
    assert (s["samples"], s["bit_exact"]) == (4, 4)
