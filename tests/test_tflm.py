import sys

import numpy as np
import pytest

from pipeline import tflm
from pipeline.errors import InterpreterCrash


def test_outputs_and_arena_from_child(tiny_run):
    out, _ = tiny_run
    data = (out / "model.tflite").read_bytes()
    x = np.random.default_rng(0).integers(-128, 128, (3, 32, 32, 3), dtype=np.int8)
    res = tflm.run_tflm(data, x)
    assert res.outputs[0].shape == (3, 3) and res.outputs[0].dtype == np.int8
    assert res.arena["total"] > 0
    again = tflm.run_tflm(data, x)
    np.testing.assert_array_equal(res.outputs[0], again.outputs[0])


def test_abort_becomes_clear_error(monkeypatch):
    real = tflm.subprocess.run

    def aborting(cmd, **kw):
        return real([sys.executable, "-c", "import os; os.abort()"], **kw)

    monkeypatch.setattr(tflm.subprocess, "run", aborting)
    with pytest.raises(InterpreterCrash, match="crashed \\(SIGABRT\\)"):
        tflm.run_tflm(b"TFL3-not-really", None)


def test_garbage_model_fails_cleanly():
    with pytest.raises(InterpreterCrash):
        tflm.run_tflm(b"\x00" * 64, None)
