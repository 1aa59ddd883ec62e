"""Read a .tflite flatbuffer into plain dataclasses (first subgraph only)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import ModelError

try:  # the tflite_micro wheel ships the schema without pulling in TensorFlow
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
except ImportError:  # pragma: no cover - fallback for environments with TensorFlow only
    from tensorflow.lite.python import schema_py_generated as schema

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_NP_TYPES = {"float32": np.float32, "int8": np.int8, "uint8": np.uint8, "int16": np.int16,
             "int32": np.int32, "int64": np.int64, "bool": np.bool_, "float16": np.float16}
_ITEMSIZE = {"float32": 4, "int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8, "bool": 1,
             "float16": 2, "float64": 8}


@dataclass
class Tensor:
    """One tensor: shape, element type, quantization and (for constants) its data."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None = None
    scales: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    zero_points: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    quantized_dim: int = 0

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * _ITEMSIZE.get(self.dtype, 4)

    @property
    def scale(self) -> float:
        """Per-tensor scale as float32 (0.0 when unquantized)."""
        return float(self.scales[0]) if len(self.scales) else 0.0

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0]) if len(self.zero_points) else 0

    @property
    def per_channel(self) -> bool:
        return len(self.scales) > 1


@dataclass
class Op:
    """One operator: builtin name, version, tensor indices (-1 = omitted) and options."""

    index: int
    name: str
    version: int
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class Graph:
    """The first subgraph of a model, with its source name for error messages."""

    name: str
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]


def _options(obj) -> dict:
    if obj is None:
        return {}
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(obj).items()}


def _tensor(i: int, t, buffers: list, data: bytes) -> Tensor:
    dtype = _TYPE_NAMES.get(t.type, f"type{t.type}")
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
    arr = None
    buf = buffers[t.buffer] if 0 < t.buffer < len(buffers) else None
    if buf is not None:
        raw = None
        if buf.data is not None and len(buf.data):
            raw = np.asarray(buf.data, dtype=np.uint8).tobytes()
        elif buf.offset and buf.offset > 1:  # large models keep buffers after the flatbuffer
            raw = data[buf.offset:buf.offset + buf.size]
        if raw is not None and dtype in _NP_TYPES:
            arr = np.frombuffer(raw, dtype=_NP_TYPES[dtype]).copy()
            if arr.size == int(np.prod(shape, dtype=np.int64)):
                arr = arr.reshape(shape)
    q = t.quantization
    scales = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float32)
    zps = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64)
    qdim = int(q.quantizedDimension) if q is not None else 0
    name = t.name.decode() if isinstance(t.name, bytes) else str(t.name or "")
    return Tensor(i, name, shape, dtype, arr, scales, zps, qdim)


def load_graph(data: bytes, name: str) -> Graph:
    """Parse model bytes; raise ModelError naming `name` if they are not a usable .tflite."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{name}: not a TFLite flatbuffer (missing TFL3 identifier)")
    try:
        m = schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as e:  # a corrupt flatbuffer raises anything from struct to IndexError
        raise ModelError(f"{name}: cannot parse flatbuffer ({type(e).__name__})") from None
    if not m.subgraphs:
        raise ModelError(f"{name}: model has no subgraph")
    sg = m.subgraphs[0]
    buffers = m.buffers or []
    tensors = [_tensor(i, t, buffers, data) for i, t in enumerate(sg.tensors or [])]
    codes = m.operatorCodes or []
    ops = []
    for i, o in enumerate(sg.operators or []):
        code = codes[o.opcodeIndex]
        builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
        opname = _OP_NAMES.get(builtin, f"BUILTIN_{builtin}")
        if builtin == schema.BuiltinOperator.CUSTOM:
            cc = code.customCode
            opname = f"CUSTOM({cc.decode() if isinstance(cc, bytes) else cc})"
        ops.append(Op(i, opname, int(code.version or 1),
                      [int(x) for x in (o.inputs if o.inputs is not None else [])],
                      [int(x) for x in (o.outputs if o.outputs is not None else [])],
                      _options(o.builtinOptions)))
    g = Graph(name, tensors, ops, [int(x) for x in sg.inputs], [int(x) for x in sg.outputs])
    g.extra_subgraphs = len(m.subgraphs) - 1  # type: ignore[attr-defined]
    return g
