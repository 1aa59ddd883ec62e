"""Read a .tflite flatbuffer into plain dataclasses: ops with versions, tensors with quant."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import ModelError

_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
           6: "bool", 7: "int16", 9: "int8", 10: "float64", 16: "uint32", 17: "uint16",
           18: "int4"}
_NP = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "int64": np.int64,
       "int8": np.int8, "int16": np.int16, "float16": np.float16, "bool": np.bool_,
       "float64": np.float64, "uint32": np.uint32, "uint16": np.uint16}


@dataclass
class TensorInfo:
    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    scales: list[float] = field(default_factory=list)
    zero_points: list[int] = field(default_factory=list)
    quantized_dimension: int = 0
    data: np.ndarray | None = None  # constant data (weights), None for activations

    @property
    def nbytes(self) -> int:
        item = np.dtype(_NP.get(self.dtype, np.uint8)).itemsize
        return int(np.prod(self.shape, dtype=np.int64)) * item if self.shape else item


@dataclass
class OpInfo:
    index: int
    name: str
    version: int
    inputs: list[int]
    outputs: list[int]
    options: object | None = None  # the schema's builtin options object, if any


@dataclass
class ModelInfo:
    ops: list[OpInfo]
    tensors: list[TensorInfo]
    inputs: list[int]
    outputs: list[int]
    size: int

    def tensor(self, i: int) -> TensorInfo | None:
        return self.tensors[i] if i >= 0 else None

    @property
    def op_names(self) -> list[str]:
        """Distinct op names in first-use order."""
        return list(dict.fromkeys(o.name for o in self.ops))


def _schema():
    from tensorflow.lite.python import schema_py_generated as s

    return s


def _builtin_names() -> dict[int, str]:
    s = _schema()
    return {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}


def read_model(model: bytes | str | Path) -> ModelInfo:
    """Parse a .tflite model (bytes or path). Only the first subgraph is read."""
    if isinstance(model, (str, Path)):
        try:
            data = Path(model).read_bytes()
        except OSError as e:
            raise ModelError(f"{model}: cannot read model ({e.strerror})") from None
        where = str(model)
    else:
        data, where = bytes(model), "model"
    s = _schema()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{where}: not a .tflite flatbuffer")
    try:
        m = s.Model.GetRootAsModel(data, 0)
        g = m.Subgraphs(0)
        names = _builtin_names()
        tensors = []
        for i in range(g.TensorsLength()):
            t = g.Tensors(i)
            q = t.Quantization()
            scales = list(q.ScaleAsNumpy()) if q is not None and q.ScaleLength() else []
            zps = list(q.ZeroPointAsNumpy()) if q is not None and q.ZeroPointLength() else []
            qdim = q.QuantizedDimension() if q is not None else 0
            shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
            sig = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() \
                else shape
            dtype = _DTYPES.get(t.Type(), f"type{t.Type()}")
            buf = m.Buffers(t.Buffer())
            arr = None
            if buf is not None and buf.DataLength() and dtype in _NP:
                arr = np.frombuffer(buf.DataAsNumpy().tobytes(), _NP[dtype]).reshape(shape)
            elif buf is not None and buf.Size() and dtype in _NP:  # stored after the flatbuffer
                off, size = int(buf.Offset()), int(buf.Size())
                arr = np.frombuffer(data[off:off + size], _NP[dtype]).reshape(shape)
            tensors.append(TensorInfo(i, (t.Name() or b"").decode(), dtype, shape, sig,
                                      [float(x) for x in scales], [int(z) for z in zps],
                                      int(qdim), arr))
        ops = []
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            code = m.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = names.get(builtin, f"BUILTIN_{builtin}")
            if name == "CUSTOM":
                name = f"CUSTOM:{(code.CustomCode() or b'?').decode()}"
            ops.append(OpInfo(i, name, int(code.Version()),
                              [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else [],
                              [int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else [],
                              _options(s, op)))
        return ModelInfo(ops, tensors, [int(x) for x in g.InputsAsNumpy()],
                         [int(x) for x in g.OutputsAsNumpy()], len(data))
    except ModelError:
        raise
    except Exception as e:  # a truncated or corrupt flatbuffer raises anything
        raise ModelError(f"{where}: corrupt .tflite ({type(e).__name__})") from None


def _options(s, op):
    kind = op.BuiltinOptionsType()
    if not kind:
        return None
    names = {v: k for k, v in vars(s.BuiltinOptions).items() if not k.startswith("_")}
    cls = getattr(s, names.get(kind, ""), None)
    table = op.BuiltinOptions()
    if cls is None or table is None:
        return None
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    return obj
