"""Models that TFLite Micro runs but TensorFlow Lite's interpreter refuses.

TFLM's own person-detection model was written by an old converter that gave every depthwise
bias `quantized_dimension = 3`, an axis a 1-D tensor does not have. TensorFlow Lite now refuses
to load it; TFLite Micro never reads that field for biases and runs it. The model here has the
same defect, made by editing a freshly converted one, so no fetched file is needed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.artifact import ModelArtifact
from pipeline.evaluate import NOT_LOADABLE, TFLiteRefused, evaluate, load_tflite
from pipeline.tflm import run_tflm

sys.path.insert(0, str(Path(__file__).parent / "aot"))
from aot_helpers import check_bit_exact, convert, mutate  # noqa: E402

SIDE = 8
MULT = 4  # depthwise channels: per-channel bias scales, as in person_detect


def _pixels(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bright images (class 0) and dark images (class 1), uint8, (N, 8, 8, 1)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    lo = np.where(y == 0, 160, 0)[:, None, None, None]
    x = rng.integers(0, 96, (n, SIDE, SIDE, 1)) + lo
    return x.astype(np.uint8), y


def _classifier_bytes() -> bytes:
    """A blur-and-threshold classifier: class 0 when the mean pixel is above 0.5 (of 1.0)."""
    import keras

    inp = keras.Input((SIDE, SIDE, 1), batch_size=1)
    dw = keras.layers.DepthwiseConv2D(3, depth_multiplier=MULT, padding="valid")
    gap = keras.layers.GlobalAveragePooling2D()
    dense = keras.layers.Dense(2)
    model = keras.Model(inp, dense(gap(dw(inp))))
    dw.set_weights([np.full((3, 3, 1, MULT), 1 / 9, np.float32), np.zeros(MULT, np.float32)])
    # logit0 - logit1 = 2 * MULT * mean - MULT: positive exactly when mean > 0.5
    kernel = np.tile(np.array([[1.0, -1.0]], np.float32), (MULT, 1))
    dense.set_weights([kernel, np.array([-MULT / 2, MULT / 2], np.float32)])
    x, _ = _pixels(64, seed=1)
    return convert(model, x.astype(np.float32) / 255.0)


def _old_style(model_bytes: bytes) -> bytes:
    """Every depthwise bias with quantized_dimension 3, as the old converter wrote it."""
    info = ModelArtifact.load(model_bytes)
    biases = [op.inputs[2] for op in info.ops if op.name == "DEPTHWISE_CONV_2D"]
    assert biases and all(len(info.tensors[b].shape) == 1 for b in biases)

    def edit(m) -> None:
        for b in biases:
            m.subgraphs[0].tensors[b].quantization.quantizedDimension = 3

    return mutate(model_bytes, edit)


@pytest.fixture(scope="module")
def models() -> tuple[bytes, bytes]:
    good = _classifier_bytes()
    return good, _old_style(good)


def test_tensorflow_refuses_it_and_tflm_runs_it_unchanged(models):
    good, old = models
    load_tflite(good)
    with pytest.raises(TFLiteRefused) as e:
        load_tflite(old)
    msg = str(e.value)
    assert msg.startswith(f"{NOT_LOADABLE}: quantized_dimension must be in range [0, 1). Was 3.")
    assert "\n" not in msg and "1 tensor, first #" in msg
    # the edited field is one TFLM never reads: outputs byte-identical to the unedited model
    x = np.random.default_rng(2).integers(-128, 128, (16, SIDE, SIDE, 1), dtype=np.int8)
    np.testing.assert_array_equal(run_tflm(old, x).outputs[0], run_tflm(good, x).outputs[0])


def test_evaluate_reports_tflite_in_one_line_and_measures_tflm(models, tmp_path):
    from pipeline.cli import cli

    good, old = models
    (tmp_path / "old.tflite").write_bytes(old)
    x, y = _pixels(40, seed=3)
    np.savez(tmp_path / "d.npz", x=x, y=y, class_names=np.array(["bright", "dark"]))
    res = CliRunner().invoke(cli, ["evaluate", "--model", str(tmp_path / "old.tflite"), "--data",
                                   str(tmp_path / "d.npz"), "--out", str(tmp_path / "ev")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    refused = [ln for ln in lines if NOT_LOADABLE in ln]
    assert len(refused) == 1 and refused[0].startswith("accuracy int8 (TFLite)")
    assert "quantized_dimension" in refused[0]
    assert "accuracy int8 (TFLM)    100.00%" in lines and "samples: 40" in lines
    assert not any(ln.startswith("agreement") for ln in lines)
    ev = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert ev["int8"] is None and ev["int8_unavailable"] == refused[0].split(None, 3)[3]
    assert ev["tflm"]["accuracy"] == 1.0 and ev["tflm"]["confusion"] == [[20, 0], [0, 20]]
    # the same data through the unedited model: TensorFlow Lite agrees with TFLM's figure
    xf = x.astype(np.float32) / 255.0
    ref = evaluate(xf, y, ["bright", "dark"], tflite_bytes=good)
    assert ref.int8.accuracy == ref.tflm.accuracy == ev["tflm"]["accuracy"]
    assert ref.int8_unavailable is None


def test_evaluate_without_tflm_has_nothing_to_report(models):
    x, y = _pixels(4, seed=4)
    with pytest.raises(TFLiteRefused):
        evaluate(x.astype(np.float32) / 255.0, y, ["bright", "dark"], tflite_bytes=models[1],
                 tflm=False)


def test_every_other_stage_takes_it(models, tmp_path):
    from pipeline.export import export_file
    from pipeline.profile import profile_tflite
    from pipeline.quantize import lint

    old = models[1]
    lint(old)
    assert profile_tflite(old).arena_bytes > 0
    (tmp_path / "old.tflite").write_bytes(old)
    assert export_file(tmp_path / "old.tflite", tmp_path / "tflm", "tflm", "tp")
    x = np.random.default_rng(5).integers(-128, 128, (32, SIDE, SIDE, 1), dtype=np.int8)
    check_bit_exact(old, tmp_path, inputs=[x])  # AOT C on the host == TFLM, byte for byte
