"""Whole models on QEMU Cortex-M4/M7/M55 with the DSP kernels, bit-exact vs the TFLM interpreter."""

from __future__ import annotations

import numpy as np
import pytest
from aot_models import converted, mobilenet_v1, resnet8
from arm_harness import check_arm_bit_exact, needs_arm

pytestmark = needs_arm


@pytest.fixture(scope="module")
def vww(keras):
    """MobileNet v1 alpha 0.25, 96x96x3, 2 classes: the MLPerf Tiny VWW shape."""
    return converted(mobilenet_v1(keras, (96, 96, 3), alpha=0.25, classes=2), (96, 96, 3))


@pytest.fixture(scope="module")
def rn8(keras):
    """MLPerf Tiny ResNet-8 for CIFAR-10."""
    return converted(resnet8(keras), (32, 32, 3), seed=1)


def test_vww_mobilenet_dsp_m4_m7_m55(vww, tmp_path):
    res, ref, runs = check_arm_bit_exact(vww, tmp_path, envs=("qemu-m4", "qemu-m7", "qemu-m55"),
                                         n=4, seed=0)
    assert res.ops.count("DEPTHWISE_CONV_2D") == 13
    assert res.striped  # the high-resolution layers ran band by band
    assert all(t > 0 for r in runs.values() for t in r.ticks)


def test_resnet8_dsp_m4_m7_m55(rn8, tmp_path):
    res, _, _ = check_arm_bit_exact(rn8, tmp_path, envs=("qemu-m4", "qemu-m7", "qemu-m55"),
                                    n=6, seed=1)
    assert res.ops.count("ADD") == 3
    assert res.striped  # the residual stages ran band by band


def test_resnet8_portable_kernels_m4(rn8, tmp_path):
    """The portable reference kernels built for the same core (-DTK_PORTABLE) stay exact too."""
    check_arm_bit_exact(rn8, tmp_path, envs=("qemu-m4",), n=2, seed=2, portable=True)


def test_vww_realistic_inputs_m4(vww, tmp_path):
    """Image-like inputs (smooth gradients, saturated patches) besides uniform noise."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:96, 0:96]
    base = ((yy + xx) % 256 - 128).astype(np.int8)
    imgs = np.stack([np.repeat(base[:, :, None], 3, axis=2),
                     np.full((96, 96, 3), 127, np.int8), np.full((96, 96, 3), -128, np.int8),
                     rng.integers(-20, 20, size=(96, 96, 3), dtype=np.int8)])
    check_arm_bit_exact(vww, tmp_path, envs=("qemu-m4",), inputs=[imgs])
