"""Whole models: MobileNet v1/v2 and a small ResNet, bit-exact vs TFLM; arena size vs TFLM."""

from __future__ import annotations

import numpy as np
import pytest
from aot_helpers import SANITIZE, check_bit_exact, convert
from aot_models import calibrate, mobilenet_v1, mobilenet_v2, resnet_small


def _convert(keras_model, shape, seed=0, n=16, int8_io=True):
    rng = np.random.default_rng(seed)
    rep = rng.uniform(-1, 1, size=(n, *shape)).astype(np.float32)
    calibrate(keras_model, rep)
    return convert(keras_model, rep, int8_io=int8_io), rep


@pytest.fixture(scope="module")
def mnv1_96(keras):
    """MobileNet v1, alpha 0.25, 96x96x3: the arena benchmark model."""
    return _convert(mobilenet_v1(keras, (96, 96, 3), alpha=0.25), (96, 96, 3))[0]


def test_mobilenet_v1_025_96_bit_exact_and_arena(mnv1_96, tmp_path):
    res, ref = check_bit_exact(mnv1_96, tmp_path, n=6)
    tflm = ref.arena["total"]
    ratio = res.arena_bytes / tflm
    print(f"\nMobileNetV1 a=0.25 96x96x3: AOT arena {res.arena_bytes} B, TFLM arena {tflm} B, "
          f"ratio {ratio:.1%}")
    assert res.arena_bytes <= tflm
    assert ratio <= 0.60
    assert res.ops.count("DEPTHWISE_CONV_2D") == 13 and res.ops[-1] == "SOFTMAX"


@pytest.mark.parametrize("shape,alpha", [((32, 32, 3), 0.5), ((48, 40, 1), 0.25)])
def test_mobilenet_v1_small(keras, tmp_path, shape, alpha):
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1)]
    b, _ = _convert(mobilenet_v1(keras, shape, alpha=alpha, blocks=blocks), shape, seed=1)
    check_bit_exact(b, tmp_path, n=16, seed=1)


@pytest.mark.parametrize("shape,alpha", [((64, 64, 3), 0.35), ((40, 48, 3), 0.5)])
def test_mobilenet_v2(keras, tmp_path, shape, alpha):
    b, _ = _convert(mobilenet_v2(keras, shape, alpha=alpha), shape, seed=2)
    res, ref = check_bit_exact(b, tmp_path, n=12, seed=2)
    assert "ADD" in res.ops
    print(f"\nMobileNetV2 a={alpha} {shape}: AOT arena {res.arena_bytes} B, "
          f"TFLM {ref.arena['total']} B")


def test_resnet_small(keras, tmp_path):
    b, _ = _convert(resnet_small(keras), (32, 32, 3), seed=3)
    res, _ = check_bit_exact(b, tmp_path, n=16, seed=3)
    assert res.ops.count("ADD") == 2 and "MAX_POOL_2D" in res.ops


def test_resnet_float_io_sanitized(keras, tmp_path):
    """Float in/out ResNet under AddressSanitizer + UBSan (no error may be reported)."""
    b, rep = _convert(resnet_small(keras), (32, 32, 3), seed=4, int8_io=False)
    check_bit_exact(b, tmp_path, n=8, seed=4, reps=rep, flags=SANITIZE)
