"""Model inputs and outputs of every protocol type: int8 inside, QUANTIZE/DEQUANTIZE at the ends.

The compiled C must equal the TFLM interpreter bit for bit, requantization rounding and
saturation included (uint8 <-> int8 and int16 <-> int8 at non-trivial scale ratios)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from aot_helpers import check_bit_exact, io_specs

from pipeline.aot import check_supported
from pipeline.errors import UnsupportedOpError

# The HIL suite builds these models; one builder serves both suites.
_spec = importlib.util.spec_from_file_location(
    "tiny_model", Path(__file__).resolve().parents[2] / "hil_tests" / "tiny_model.py")
tiny_model = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("tiny_model", tiny_model)
_spec.loader.exec_module(tiny_model)

N = 64


@pytest.fixture(scope="module")
def base_model() -> bytes:
    return tiny_model.make_tflite(seed=3)


@pytest.mark.parametrize("dtype", tiny_model.IO_TYPES)
def test_io_dtype_bit_exact_with_tflm(base_model: bytes, tmp_path: Path, dtype: str) -> None:
    model = tiny_model.with_io_type(base_model, dtype)
    spec, ospec, g = io_specs(model)
    assert [d for _, d in spec] == [dtype] and [d for _, d in ospec] == [dtype]
    ops = [op.name for op in g.ops]
    if dtype != "int8":
        assert ops[0] == "QUANTIZE" and ops[-1] == ("DEQUANTIZE" if dtype == "float32"
                                                    else "QUANTIZE")
    x = tiny_model.make_samples(N, seed=9, dtype=dtype)
    res, ref = check_bit_exact(model, tmp_path, inputs=[x])
    out = ref.outputs[0]
    assert out.dtype == np.dtype(dtype)
    assert len(np.unique(out)) > 8
    if dtype == "uint8":  # the output QUANTIZE widens (scale 0.77x): it saturates
        assert (out == 0).any() or (out == 255).any()
    if dtype == "int16":  # the input QUANTIZE narrows 520x: past int8 with the zero point added
        q = g.tensors[g.ops[0].outputs[0]]
        assert (np.round(x / 520) + q.zero_point < -128).any()
    assert "tk_quantize" in res.kernels or dtype == "int8"


def test_unsupported_io_type_names_the_tensor(base_model: bytes) -> None:
    """int32 is a protocol type, but no AOT model may take or give it."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fu

    m = fu.convert_bytearray_to_object(bytearray(base_model))
    sg = m.subgraphs[0]
    sg.tensors[sg.inputs[0]].type = schema.TensorType.INT32
    bad = bytes(fu.convert_object_to_bytearray(m))
    with pytest.raises(UnsupportedOpError, match=r"model input '.*' \(int32 \[1, 16, 16, 1\]\) is "
                                                 r"not supported by the AOT backend"):
        check_supported(bad)
