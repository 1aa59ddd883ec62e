"""Striped ranges and quantize-on-write inputs on QEMU Cortex-M with the DSP (M4, M7) and
Helium (M55) kernels.

The kernels see bands (small heights, top padding only where the band touches the
tensor's top, pointers into line buffers) and must stay bit-exact with the TFLM interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest
from aot_models import converted, mobilenet_v1
from arm_harness import check_arm_bit_exact, needs_arm
from stripe_models import CHAINS, build, stripe_range

from pipeline.aot import compile_model

pytestmark = needs_arm


@pytest.mark.parametrize("name,band,mode,envs", [
    ("chain_odd_valid", 2, "step", ("qemu-m4", "qemu-m55")),
    ("chain_same_s2", 1, "pull", ("qemu-m4", "qemu-m55")),
    ("residual", 1, "pull", ("qemu-m4", "qemu-m7", "qemu-m55")),
    ("gated", 3, "step", ("qemu-m4", "qemu-m55")),
])
def test_forced_stripes_dsp(keras, tmp_path, name, band, mode, envs):
    model, _ = build(keras, CHAINS[name], seed=5)
    first, last = stripe_range(model)
    res, ref, _ = check_arm_bit_exact(model, tmp_path, envs=envs, n=8, seed=2,
                                      stripe=[(first, last, band, mode)])
    assert res.striped == [(first, last)]
    assert any(len(np.unique(o)) > 2 for o in ref.outputs)


def test_float_io_vww_striped_m4_m55(keras, tmp_path):
    """MobileNet v1 0.25 on a 96x96x3 float input, float output (the VWW shape): the input is
    quantized as it is written, the high-resolution layers run band by band."""
    shape = (96, 96, 3)
    model = converted(mobilenet_v1(keras, shape, alpha=0.25, classes=2), shape, int8_io=False)
    c = compile_model(model)
    assert c.quantized_inputs and c.groups
    rng = np.random.default_rng(4)
    rep = rng.uniform(-1, 1, size=(4, *shape)).astype(np.float32)
    res, ref, runs = check_arm_bit_exact(model, tmp_path, envs=("qemu-m4", "qemu-m55"),
                                         inputs=[rep])
    print(f"\nfloat-I/O VWW shape: AOT arena {res.arena_bytes} B (op by op "
          f"{res.per_op_arena_bytes} B), TFLM {ref.arena['total']} B, "
          f"{runs['qemu-m4'].ticks[0]:,} instructions")
    assert res.arena_bytes <= 0.5 * ref.arena["total"]
