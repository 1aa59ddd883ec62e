"""Small int8 CNNs for the HIL tests, converted with TF, and the same models with float32, uint8
or int16 inputs and outputs (QUANTIZE/DEQUANTIZE at their ends)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SHAPE = (16, 16, 1)
CLASSES = 4
IO_TYPES = ("int8", "uint8", "int16", "float32")


def make_tflite(seed: int = 0, shape: tuple[int, int, int] = SHAPE) -> bytes:
    """Build a random-weight Keras CNN and convert it to full-int8 (int8 in and out)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    k = tf.keras.layers
    inp = tf.keras.Input(shape, batch_size=1)
    x = k.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = k.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = k.Conv2D(16, 1, activation="relu")(x)
    x = k.MaxPooling2D()(x)
    x = k.GlobalAveragePooling2D()(x)
    out = k.Dense(CLASSES)(x)  # logits: more varied int8 outputs than softmax
    model = tf.keras.Model(inp, out)
    rng = np.random.default_rng(seed)
    from pipeline.quantize import quantize

    return quantize(model, rng.uniform(0, 1, (32, *shape)).astype(np.float32))


def with_io_type(tflite: bytes, dtype: str) -> bytes:
    """The int8 model `tflite` with `dtype` inputs and outputs, int8 inside.

    A QUANTIZE goes in front of every input and a QUANTIZE (DEQUANTIZE for float32) behind
    every output, as converters emit them. The new tensors' scales are not the int8 ones, so the
    requantization rounds and saturates (uint8: 0.77 x the int8 scale, zero point + 128; int16:
    1/520 of it, zero point 0)."""
    if dtype not in IO_TYPES:
        raise ValueError(f"dtype {dtype!r} not in {IO_TYPES}")
    if dtype == "int8":
        return tflite
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fu

    model = fu.convert_bytearray_to_object(bytearray(tflite))
    sg = model.subgraphs[0]
    ttype = {"uint8": schema.TensorType.UINT8, "int16": schema.TensorType.INT16,
             "float32": schema.TensorType.FLOAT32}[dtype]

    def opcode(builtin: int) -> int:
        for k, c in enumerate(model.operatorCodes):
            if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin:
                return k
        c = schema.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = builtin, min(builtin, 127), 2
        model.operatorCodes.append(c)
        return len(model.operatorCodes) - 1

    def twin(tid: int) -> int:
        """A new tensor shaped like `tid`, of type `dtype`; returns its index."""
        old = sg.tensors[tid]
        t = schema.TensorT()
        t.name = old.name + f"_{dtype}".encode()
        t.shape, t.type = list(old.shape), ttype
        if old.shapeSignature is not None:
            t.shapeSignature = list(old.shapeSignature)
        buf = schema.BufferT()
        model.buffers.append(buf)
        t.buffer = len(model.buffers) - 1
        if dtype != "float32":
            s, z = float(old.quantization.scale[0]), int(old.quantization.zeroPoint[0])
            q = schema.QuantizationParametersT()
            q.scale, q.zeroPoint = ([s * 0.77], [z + 128]) if dtype == "uint8" else ([s / 520], [0])
            t.quantization = q
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def op(code: int, src: int, dst: int) -> schema.OperatorT:
        o = schema.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = opcode(code), [src], [dst]
        return o

    new_inputs, front = [], []
    for tid in sg.inputs:
        nid = twin(tid)
        front.append(op(schema.BuiltinOperator.QUANTIZE, nid, tid))
        new_inputs.append(nid)
    new_outputs, back = [], []
    for tid in sg.outputs:
        nid = twin(tid)
        code = schema.BuiltinOperator.DEQUANTIZE if dtype == "float32" \
            else schema.BuiltinOperator.QUANTIZE
        back.append(op(code, tid, nid))
        new_outputs.append(nid)
    renamed = dict(zip(list(sg.inputs) + list(sg.outputs), new_inputs + new_outputs,
                       strict=True))
    sg.operators = front + list(sg.operators) + back
    sg.inputs, sg.outputs = new_inputs, new_outputs
    for sig in model.signatureDefs or []:
        for io in list(sig.inputs or []) + list(sig.outputs or []):
            io.tensorIndex = renamed.get(io.tensorIndex, io.tensorIndex)
    return bytes(fu.convert_object_to_bytearray(model))


def make_samples(n: int, seed: int = 1, dtype: str = "int8",
                 shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """Random input tensors shaped like the model input (without batch), of `dtype`."""
    rng = np.random.default_rng(seed)
    if dtype == "float32":  # the int8 input's real range, with some values beyond it
        return rng.uniform(-0.2, 1.2, (n, *shape)).astype(np.float32)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, (n, *shape), dtype=dtype, endpoint=True)


def cached_tflite(cache_dir: Path, dtype: str = "int8") -> Path:
    """The test model with `dtype` inputs and outputs, converted once per cache folder."""
    base = cache_dir / "tiny_cnn.tflite"
    if not base.exists():
        base.write_bytes(make_tflite())
    if dtype == "int8":
        return base
    path = cache_dir / f"tiny_cnn_{dtype}.tflite"
    if not path.exists():
        path.write_bytes(with_io_type(base.read_bytes(), dtype))
    return path
