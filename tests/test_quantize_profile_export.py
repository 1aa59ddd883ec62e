import re
import shutil
import subprocess

import numpy as np
import pytest

from pipeline.artifact import ModelArtifact, model_hash
from pipeline.errors import ModelError
from pipeline.export import RESOLVER_METHODS, export_tflm
from pipeline.profile import layer_macs, profile_keras, profile_tflite
from pipeline.quantize import lint, quantize_input

ALLOWED = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "MEAN", "AVERAGE_POOL_2D",
           "FULLY_CONNECTED", "RESHAPE", "SOFTMAX"}


def test_int8_model_is_mcu_clean(tiny_run):
    out, _ = tiny_run
    data = (out / "model.tflite").read_bytes()
    rep = lint(data)
    assert rep.input_dtype == "int8" and rep.output_dtype == "int8"
    assert {n for n, _ in rep.ops} <= ALLOWED
    info = ModelArtifact.load(data)
    assert all(t.dtype in ("int8", "int32") for t in info.tensors)


def _float_tflite(model) -> bytes:
    import tensorflow as tf

    from pipeline._native import quiet_native

    with quiet_native():
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def test_lint_refuses_float_and_dynamic_shapes():
    import keras

    inp = keras.Input((8,), batch_size=1)
    data = _float_tflite(keras.Model(inp, keras.layers.Dense(3)(inp)))
    with pytest.raises(ModelError, match="op #0 FULLY_CONNECTED is float"):
        lint(data)
    # The keras.applications head pitfall: a dynamic batch flattens with SHAPE/STRIDED_SLICE/PACK
    inp = keras.Input((4, 4, 2))
    x = keras.layers.Flatten()(inp)
    data = _float_tflite(keras.Model(inp, keras.layers.Dense(2)(x)))
    with pytest.raises(ModelError, match="computes shapes at run time|dynamic shape"):
        lint(data)


def test_quantize_input_rounds_half_away_from_zero():
    q = quantize_input(np.array([0.5, 1.5, -0.5, -1.5, 300, -300], np.float32), 1.0, 0)
    assert q.tolist() == [1, 2, -1, -2, 127, -128]


def test_profile_macs_equal_independent_count(tiny_run):
    import keras

    out, report = tiny_run
    prof = profile_tflite(out / "model.tflite", measure_arena=False)
    keras_count = profile_keras(keras.saving.load_model(out / "model.keras"))
    assert prof.macs == keras_count["macs"] == report["model"]["macs"]
    # params: BatchNorm folds into conv biases, so the int8 model has weights + one bias per
    # output channel; the float count has no conv biases but the dense one.
    assert prof.params > 0 and prof.param_bytes >= prof.params


def test_layer_macs_formulas():
    assert layer_macs("CONV_2D", (1, 8, 8, 3), (1, 4, 4, 16), (16, 3, 3, 3)) == 4 * 4 * 16 * 27
    assert layer_macs("DEPTHWISE_CONV_2D", (1, 8, 8, 6), (1, 8, 8, 12), (1, 3, 3, 12)) == \
        8 * 8 * 12 * 9
    assert layer_macs("FULLY_CONNECTED", (1, 64), (1, 10), (10, 64)) == 640
    assert layer_macs("SOFTMAX", (1, 10), (1, 10), ()) == 0


def test_export_tflm_sources(tiny_run, tmp_path):
    out, report = tiny_run
    data = (out / "model.tflite").read_bytes()
    res = export_tflm(data, tmp_path / "c", ["circle", "square", "triangle"], None, 12345)
    cc = (tmp_path / "c" / "model_data.cc").read_text()
    body = cc[cc.index("{") + 1: cc.index("}")]
    arr = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))
    assert arr == data
    assert f"g_model_data_len = {len(data)};" in cc
    assert "alignas(16) const unsigned char g_model_data[]" in cc
    resolver = (tmp_path / "c" / "op_resolver.h").read_text()
    want = ModelArtifact.load(data).op_names
    assert re.findall(r"r\.(Add\w+)\(\)", resolver) == [RESOLVER_METHODS[o] for o in want]
    assert "MicroMutableOpResolver<kNumModelOps>" in resolver
    assert f"kNumModelOps = {len(want)}" in resolver
    settings = (tmp_path / "c" / "model_settings.h").read_text()
    assert f'"{model_hash(data)}"' in settings and "kTensorArenaSize = 12345" in settings
    assert '"circle", "square", "triangle"' in settings
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not installed")
    (tmp_path / "use.cc").write_text(
        '#include "model_data.h"\n#include "model_settings.h"\n'
        "int main(){return g_model_data_len == kModelBytes ? 0 : 1;}\n")
    exe = tmp_path / "use"
    subprocess.run([gxx, "-std=c++17", "-Wall", "-Werror", "-I", str(tmp_path / "c"),
                    str(tmp_path / "use.cc"), str(tmp_path / "c" / "model_data.cc"), "-o",
                    str(exe)], check=True)
    assert subprocess.run([str(exe)]).returncode == 0
    assert res.model_hash == model_hash(data)


def test_export_is_atomic_on_unknown_op(tmp_path, monkeypatch):
    import keras

    from pipeline import export as ex
    from pipeline.errors import UnsupportedOpError

    inp = keras.Input((8,), batch_size=1)
    data = _float_tflite(keras.Model(inp, keras.layers.Dense(3)(inp)))
    monkeypatch.setattr(ex, "RESOLVER_METHODS", {})
    with pytest.raises(UnsupportedOpError, match="op #0 FULLY_CONNECTED"):
        export_tflm(data, tmp_path / "c", ["a"], None, 1)
    assert not (tmp_path / "c").exists()


def test_qat_is_measured_and_kept_only_if_better(tiny_run, tmp_path):
    import json
    import shutil

    from pipeline.config import load_config
    from pipeline.run import RunDir, Stages

    src, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    cfg = load_config(run / "config.yaml", ["quantize.qat_epochs=1"])
    art, q = Stages(cfg, RunDir(run)).quantize()
    st = json.loads((run / "state.json").read_text())["quantize"]
    assert st["method"] == ("qat" if st["qat_val_accuracy"] > st["ptq_val_accuracy"] else "ptq")
    assert q.method == st["method"] and q.model_hash == art.hash
    assert lint(art).input_dtype == "int8"
    assert (run / "model.tflite").read_bytes() == art.data
