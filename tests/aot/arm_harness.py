"""Run generated AOT code on QEMU Cortex-M machines and compare with TFLM byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from aot_helpers import io_specs, random_inputs

from pipeline.aot import export_aot
from pipeline.aot.arm import arm_tools_missing, build_elf, run_elf

MISSING = arm_tools_missing()
needs_arm = pytest.mark.skipif(MISSING is not None,
                               reason=f"Cortex-M QEMU tests need the ARM tool chain: {MISSING}")
ENVS_DSP = ("qemu-m4", "qemu-m7")


def _split(raw: bytes, ospec, n: int) -> list[np.ndarray]:
    dts = [np.dtype(np.int8 if d == "int8" else np.float32) for _, d in ospec]
    per = [int(np.prod(s)) * dt.itemsize for (s, _), dt in zip(ospec, dts, strict=True)]
    arr = np.frombuffer(raw, np.uint8).reshape(n, sum(per))
    outs, off = [], 0
    for dt, nb in zip(dts, per, strict=True):
        outs.append(arr[:, off:off + nb].copy().view(dt).reshape(n, -1))
        off += nb
    return outs


def check_arm_bit_exact(model_bytes: bytes, tmp: Path, envs=ENVS_DSP, n: int = 16,
                        seed: int = 0, reps=None, portable: bool = False, inputs=None,
                        stripe=True, edit=None):
    """Export once, run TFLM once, then build + run on every QEMU env and compare outputs.

    `stripe` goes to export_aot; `edit(source) -> source` rewrites the generated tp_model.c
    before it is built."""
    from pipeline.tflm import run_tflm

    spec, ospec, _ = io_specs(model_bytes)
    res = export_aot(model_bytes, tmp / "gen", stripe=stripe)
    if edit is not None:
        src = tmp / "gen" / "tp_model.c"
        src.write_text(edit(src.read_text()))
    if inputs is None:
        inputs = random_inputs(spec, n, np.random.default_rng(seed), reps)
    n = len(inputs[0])
    blob = b"".join(b"".join(np.ascontiguousarray(x[s]).tobytes() for x in inputs)
                    for s in range(n))
    ref = run_tflm(model_bytes, inputs)
    runs = {}
    for env in envs:
        elf = build_elf(tmp / "gen", tmp / env, env, portable=portable)
        run = run_elf(elf, env, blob, n, tmp / env)
        got = _split(run.out, ospec, n)
        for k, (g, r) in enumerate(zip(got, ref.outputs, strict=True)):
            r = np.asarray(r).reshape(n, -1)
            if g.dtype == np.float32:
                np.testing.assert_array_equal(g.view(np.int32), r.astype(np.float32).view(np.int32),
                                              err_msg=f"{env} output {k}")
            else:
                np.testing.assert_array_equal(g, r, err_msg=f"{env} output {k}")
        runs[env] = run
    return res, ref, runs
