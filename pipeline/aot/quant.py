"""TFLM's export-time quantization arithmetic, reproduced in Python.

Multipliers are computed exactly as the interpreter's Prepare() does (double or float32 where
it uses float32), so the generated code can hard-code them.
"""

from __future__ import annotations

import math

import numpy as np

ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6 = 0, 1, 2, 3
INT8_MIN, INT8_MAX = -128, 127


def round_away(x: float) -> int:
    """std::round: nearest integer, halves away from zero."""
    if x < 0:
        return -round_away(-x)
    f = math.floor(x)
    return int(f + 1 if x - f >= 0.5 else f)


def f32(x: float) -> np.float32:
    return np.float32(x)


def quantize_multiplier(m: float) -> tuple[int, int]:
    """QuantizeMultiplier: m ~= q * 2^(shift - 31), q a Q31 integer in [2^30, 2^31)."""
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    q_fixed = round_away(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def wrap_int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def quantize_float(scale: float, zero_point: int, f: float) -> int:
    """kernel_util Quantize(): zp + round(f / scale) in float32."""
    return zero_point + round_away(float(f32(f) / f32(scale)))


def activation_range(act: int, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for an int8 output."""
    lo, hi = INT8_MIN, INT8_MAX
    if act == ACT_RELU:
        lo = max(lo, quantize_float(scale, zero_point, 0.0))
    elif act == ACT_RELU6:
        lo = max(lo, quantize_float(scale, zero_point, 0.0))
        hi = min(hi, quantize_float(scale, zero_point, 6.0))
    elif act == ACT_RELU_N1_TO_1:
        lo = max(lo, quantize_float(scale, zero_point, -1.0))
        hi = min(hi, quantize_float(scale, zero_point, 1.0))
    return lo, hi


def input_radius(int_bits: int, left_shift: int, total_bits: int = 31) -> int:
    """CalculateInputRadius: largest input difference that does not saturate."""
    v = 1.0 * ((1 << int_bits) - 1) * (1 << (total_bits - int_bits)) / (1 << left_shift)
    return int(math.floor(v))


def downscale_to_int16(m: int) -> int:
    """DownScaleInt32ToInt16Multiplier."""
    if m >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1
    return (m + (1 << 15)) >> 16
