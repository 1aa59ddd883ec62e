"""Run a model in the TFLite Micro Python interpreter, safely, in a child process.

The `tflite_micro` interpreter runs the same reference kernels a TFLM firmware compiles, so its
outputs are what a device computes. It can also abort the whole process (SIGABRT, no message) on
some models, so it never runs in the caller's process: a crash becomes an `InterpreterCrash`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.artifact import ModelArtifact, arena_with_margin
from pipeline.errors import InterpreterCrash

# Big enough for any model tinypipe targets; the recording allocator reports what is really used.
DEFAULT_ARENA = 32 * 1024 * 1024
_ALLOC_RE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_ARENAS: dict[str, int | None] = {}  # sha256 -> measured TFLM arena


@dataclass
class TflmResult:
    """Outputs (one array per output tensor, first axis = sample) and the arena actually used."""

    outputs: list[np.ndarray]
    arena: dict[str, int] = field(default_factory=dict)  # total, head, tail
    log: str = ""


def run_tflm(
    model: ModelArtifact | bytes | str | Path,
    inputs: np.ndarray | list[np.ndarray] | None = None,
    arena_size: int = DEFAULT_ARENA,
    timeout: float = 3600.0,
) -> TflmResult:
    """Invoke the TFLM interpreter once per sample.

    Args:
        model: a ModelArtifact, or .tflite bytes or path.
        inputs: one array per model input, first axis = sample, remaining axes = the tensor shape
            (a leading batch dimension of 1 may be left out). None measures the arena only.
        arena_size: arena given to the interpreter.
        timeout: seconds before the child is killed.

    Returns:
        TflmResult with outputs shaped (N, *tensor_shape_without_batch_1).
    """
    art = ModelArtifact.load(model)
    data, name = art.data, art.name
    if inputs is None:
        inputs = []
    elif isinstance(inputs, np.ndarray):
        inputs = [inputs]
    with tempfile.TemporaryDirectory(prefix="tinypipe-tflm-") as tmp:
        mpath, ipath, opath = (Path(tmp) / n for n in ("m.tflite", "in.npz", "out.npz"))
        mpath.write_bytes(data)
        np.savez(ipath, *inputs)
        cmd = [sys.executable, "-m", "pipeline.tflm", str(mpath), str(ipath), str(opath),
               str(arena_size)]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise InterpreterCrash(f"{name}: TFLM interpreter timed out after {timeout:.0f} s") \
                from None
        if proc.returncode != 0:
            if proc.returncode < 0:
                sig = signal.Signals(-proc.returncode).name
                raise InterpreterCrash(
                    f"{name}: TFLM interpreter crashed ({sig}); the model is not runnable by "
                    "TFLite Micro's reference kernels")
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise InterpreterCrash(f"{name}: TFLM interpreter failed: {last}")
        log = proc.stdout + proc.stderr
        arena = {k: int(v) for k, v in _ALLOC_RE.findall(log)}
        with np.load(opath) as z:
            outs = [z[f"arr_{i}"] for i in range(len(z.files))]
    return TflmResult(outputs=outs, arena=arena, log=log)


def _worker(mpath: str, ipath: str, opath: str, arena_size: int) -> None:
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_file(mpath, arena_size=arena_size)
    with np.load(ipath) as z:
        inputs = [z[f"arr_{i}"] for i in range(len(z.files))]
    n = len(inputs[0]) if inputs else 0
    in_shapes = [tuple(interp.get_input_details(k)["shape"]) for k in range(len(inputs))]
    outs: list[list[np.ndarray]] = []
    k_out = 0
    while True:
        try:
            interp.get_output_details(k_out)
        except Exception:
            break
        k_out += 1
    outs = [[] for _ in range(k_out)]
    for i in range(n):
        for k, arr in enumerate(inputs):
            interp.set_input(np.asarray(arr[i]).reshape(in_shapes[k]), k)
        interp.invoke()
        for k in range(k_out):
            o = np.array(interp.get_output(k))
            outs[k].append(o[0] if o.ndim > 0 and o.shape[0] == 1 else o)
    np.savez(opath, *[np.stack(o) if o else np.zeros((0,)) for o in outs])
    sys.stdout.flush()
    interp.print_allocations()


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))


def tflm_arena(model: ModelArtifact | bytes | str | Path) -> int | None:
    """Arena bytes the TFLM interpreter really uses (measured once per model, in a child)."""
    art = ModelArtifact.load(model)
    if art.sha256 not in _ARENAS:
        _ARENAS[art.sha256] = run_tflm(art).arena.get("total")
    return _ARENAS[art.sha256]


def tflm_arena_with_margin(model: ModelArtifact | bytes | str | Path) -> int | None:
    """The measured arena plus the margin that firmware reserves (kTensorArenaSize)."""
    a = tflm_arena(model)
    return arena_with_margin(a) if a is not None else None
