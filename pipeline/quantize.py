"""Full-integer int8 post-training quantization and a lint that refuses non-MCU models."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline._native import quiet_native
from pipeline.artifact import ModelArtifact
from pipeline.errors import ModelError

# Ops whose presence means shapes are computed at run time (the Keras include_top pitfall).
DYNAMIC_SHAPE_OPS = {"SHAPE", "STRIDED_SLICE", "PACK", "UNPACK", "GATHER", "BROADCAST_TO",
                     "RANGE", "FILL", "WHILE", "IF", "SLICE", "TILE", "DYNAMIC_UPDATE_SLICE"}
# Ops that legitimately convert at the model boundary when the user asks for float I/O.
BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}


@dataclass
class LintReport:
    ops: list[tuple[str, int]]  # (name, version) in first-use order
    input_dtype: str
    output_dtype: str


def quantize(model, representative: np.ndarray, per_channel: bool = True) -> bytes:
    """Convert a batch-1 Keras model to a full-int8 .tflite (int8 input and output).

    Args:
        model: keras.Model with a fixed batch dimension of 1.
        representative: float32 samples (N, H, W, C) drawn from the training data.
        per_channel: per-channel weight scales (TFLite's default); False = per-tensor.

    Returns:
        The .tflite flatbuffer bytes, already linted.
    """
    import tensorflow as tf

    if len(representative) == 0:
        raise ModelError("quantization needs at least one representative sample")
    if model.input_shape[0] != 1:
        raise ModelError(f"model input must have batch size 1 for export, got {model.input_shape}")
    conv = int8_converter(tf.lite.TFLiteConverter.from_keras_model(model), representative,
                          per_channel)
    try:
        with quiet_native():
            data = conv.convert()
    except Exception as e:
        msg = str(e).strip().splitlines()
        raise ModelError(f"int8 conversion of {model.name} failed: "
                         f"{msg[0] if msg else type(e).__name__}") from None
    lint(data)
    return data


def int8_converter(conv, representative: np.ndarray, per_channel: bool = True):
    """Set a TFLiteConverter up for full-int8 (int8 in and out), calibrated on float samples."""
    import tensorflow as tf

    rep = np.asarray(representative, np.float32)

    def gen() -> Iterator[list[np.ndarray]]:
        for x in rep:
            yield [x[None]]

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if not per_channel:
        conv._experimental_disable_per_channel = True
    return conv


def lint(model: ModelArtifact | bytes | str | Path, allow_float_io: bool = False) -> LintReport:
    """Refuse float/hybrid ops, uint8 tensors and dynamic shapes; return ops and versions."""
    art = ModelArtifact.load(model)
    where = art.name if isinstance(model, (str, Path, ModelArtifact)) else "model"
    problems = _problems(art, allow_float_io)
    if problems:
        raise ModelError(f"{where}: not a full-int8 MCU model: {'; '.join(problems)}")
    return LintReport([(n, art.op_version(n)) for n in art.op_names],
                      art.inputs[0].dtype, art.outputs[0].dtype)


def _problems(info: ModelArtifact, allow_float_io: bool) -> list[str]:
    out = []
    for op in info.ops:
        label = f"op #{op.index} {op.name}"
        if op.name in DYNAMIC_SHAPE_OPS:
            out.append(f"{label} computes shapes at run time")
            continue
        if op.name.startswith("CUSTOM"):
            out.append(f"{label} is a custom op")
            continue
        dts = [info.tensors[i].dtype for i in op.inputs + op.outputs if i >= 0]
        if "uint8" in dts:
            out.append(f"{label} uses uint8 tensors")
        elif op.name in BOUNDARY_OPS and allow_float_io:
            continue
        elif any(d in ("float32", "float16") for d in dts):
            kind = "hybrid" if any(d in ("int8", "int16") for d in dts) else "float"
            out.append(f"{label} is {kind}")
    return out


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """float -> int8 exactly as TFLite's QUANTIZE does: round half away from zero, then clamp."""
    info = np.iinfo(dtype)
    v = np.asarray(x, np.float32) / np.float32(scale)
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)

