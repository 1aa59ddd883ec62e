"""Helium (MVE) kernels on QEMU Cortex-M55 (mps3-an547), bit-exact with the TFLM interpreter.

Each model bundles several ops of one kind as separate outputs, so one conversion, one TFLM run
and one QEMU build cover many shapes: channel counts that are not multiples of 16 (nor of 4),
strides, SAME and VALID padding, dilations, per-channel weights, fused activations, and the
shapes the fast paths leave to the reference kernels (grouped convolution, depth multiplier 2,
dilation sharing a factor with the kernel height, broadcasting ADD). Cloned ops with random
output scales reach the general requantization (left shifts, large right shifts). Every test
also checks in the disassembly that the M55 image runs the MVE kernels, so a build that fell
back to the DSP or portable kernels cannot pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from aot_helpers import convert, mutate, replicate_last_op, set_quant
from aot_models import converted, mobilenet_v1, resnet8
from arm_harness import check_arm_bit_exact, needs_arm

pytestmark = needs_arm
ENV = ("qemu-m55",)
OBJDUMP = "arm-none-eabi-objdump"
N = 12

# Public kernel of each op with an MVE version, and the assembly loops it must reach.
KERNELS = {
    "CONV_2D": ("tk_conv2d_s8", ("tk_mve_conv2_t0g0", "tk_mve_conv2_t1g1")),
    "DEPTHWISE_CONV_2D": ("tk_depthwise_conv2d_s8", ("tk_mve_dw_n1s3", "tk_mve_dw_n2")),
    "FULLY_CONNECTED": ("tk_fully_connected_s8", ()),
    "ADD": ("tk_add_s8", ()),
    "AVERAGE_POOL_2D": ("tk_avg_pool_s8", ()),
    "MAX_POOL_2D": ("tk_max_pool_s8", ()),
}
_QREG = re.compile(r"^\s*[0-9a-f]+:\s+v\S+\s.*\bq[0-7]\b", re.M)
_CALL = re.compile(r"\sb(?:l|\.w|\.n)?\s+[0-9a-f]+ <(\w+)>")


def _reaches_mve(bodies: dict, fn: str) -> bool:
    """Whether fn or a function it branches to (the reference fallbacks aside) uses Q registers."""
    seen, todo = set(), [fn]
    while todo:
        f = todo.pop()
        if f in seen or f not in bodies or f.endswith("_ref"):
            continue
        seen.add(f)
        if _QREG.search(bodies[f]):
            return True
        todo += _CALL.findall(bodies[f])
    return False


def assert_runs_mve(elf, ops) -> None:
    """The image's kernels for `ops` are the MVE ones: they use Q registers (the DSP and portable
    kernels never do) and the assembly loops are linked in."""
    if shutil.which(OBJDUMP) is None:
        pytest.fail(f"{OBJDUMP} not found; it ships with gcc-arm-none-eabi")
    text = subprocess.run([OBJDUMP, "-d", "--no-show-raw-insn", "-marmv8.1-m.main", str(elf)],
                          capture_output=True, text=True, check=True).stdout
    bodies = dict(re.findall(r"^[0-9a-f]+ <(\w+)>:\n(.*?)(?:\n\n|\Z)", text, re.S | re.M))
    for op in sorted(set(ops) & set(KERNELS)):
        fn, loops = KERNELS[op]
        assert fn in bodies, f"{op}: {fn} is not in {elf.name}"
        assert _reaches_mve(bodies, fn), f"{op}: {fn} runs no MVE instruction"
        for loop in loops:
            assert "vmlav" in bodies.get(loop, ""), f"{op}: {loop} missing from {elf.name}"


def _multi(keras, shape, layers, inputs=1):
    """A model applying each layer to the input(s), every result an output."""
    ins = [keras.Input(shape, batch_size=1) for _ in range(inputs)]
    x = ins[0] if inputs == 1 else ins
    return keras.Model(ins if inputs > 1 else ins[0], [layer(x) for layer in layers])


def _check(keras, build, tmp_path, seed, n=N, reps=1):
    rng = np.random.default_rng(seed)
    model = build(keras)
    rep = [rng.normal(size=(16, *t.shape[1:])).astype(np.float32) * (k + 1)
           for k, t in enumerate(model.inputs)]
    b = convert(model, rep if len(rep) > 1 else rep[0])
    res, ref, runs = check_arm_bit_exact(b, tmp_path, envs=ENV, n=n, seed=seed + reps)
    assert_runs_mve(tmp_path / ENV[0] / "model.elf", res.ops)
    assert any(len(np.unique(o)) > 2 for o in ref.outputs)
    return res


def test_conv_mve(keras, tmp_path):
    L = keras.layers
    res = _check(keras, lambda k: _multi(k, (13, 11, 19), [
        L.Conv2D(21, 1, activation="relu6"),
        L.Conv2D(5, 1, strides=2),
        L.Conv2D(10, 3, strides=2, padding="same"),
        L.Conv2D(7, 3, dilation_rate=2),
        L.Conv2D(33, 5, padding="same", activation="relu"),
        L.Conv2D(6, (2, 3), strides=(2, 1), use_bias=False),
        L.Conv2D(3, (1, 4), dilation_rate=(1, 3), padding="same"),
    ]), tmp_path, 0)
    assert res.ops.count("CONV_2D") == 7


def test_conv_wide_patch_and_grouped_mve(keras, tmp_path):
    """K = 3 * 3 * 40 = 360 (22 chunks and a tail), 16 x 16 pointwise (no tail), and a grouped
    convolution (reference kernel)."""
    L = keras.layers
    _check(keras, lambda k: _multi(k, (9, 8, 40), [
        L.Conv2D(9, 3, padding="same", activation="relu6"),
        L.Conv2D(16, 1),
        L.Conv2D(8, 3, groups=4, padding="same"),
    ]), tmp_path, 1)


def test_conv_rgb_stem_mve(keras, tmp_path):
    L = keras.layers
    _check(keras, lambda k: _multi(k, (29, 31, 3), [
        L.Conv2D(8, 3, strides=2, padding="same", activation="relu6"),
        L.Conv2D(16, 3, strides=2),
        L.Conv2D(13, 3, padding="same"),
    ]), tmp_path, 2)


def test_depthwise_mve(keras, tmp_path):
    L = keras.layers
    res = _check(keras, lambda k: _multi(k, (14, 13, 19), [
        L.DepthwiseConv2D(3, padding="same"),
        L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6"),
        L.DepthwiseConv2D(5),
        L.DepthwiseConv2D(3, dilation_rate=2, padding="same"),
        L.DepthwiseConv2D(2, strides=2, use_bias=False),
        L.DepthwiseConv2D((1, 7), padding="same", activation="relu"),
        L.DepthwiseConv2D((3, 7), strides=(1, 2)),
        L.DepthwiseConv2D(4, padding="same"),
        L.DepthwiseConv2D(3, dilation_rate=(3, 1)),               # reference kernel
        L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),  # reference kernel
    ]), tmp_path, 3)
    assert res.ops.count("DEPTHWISE_CONV_2D") == 10


def test_depthwise_wide_mve(keras, tmp_path):
    """40 and 130 channels (one and more scatter groups, partial last group), narrow rows."""
    L = keras.layers
    _check(keras, lambda k: _multi(k, (6, 5, 40), [
        L.DepthwiseConv2D(3, padding="same", activation="relu6"),
        L.DepthwiseConv2D(3, strides=2, padding="same"),
    ]), tmp_path, 4)
    _check(keras, lambda k: _multi(k, (3, 3, 130), [
        L.DepthwiseConv2D(3, padding="same"),
    ]), tmp_path / "c130", 5)


def test_depthwise_one_channel_mve(keras, tmp_path):
    """One input channel with depth multipliers 8 and 3 (grayscale first layers, as in
    person_detect): a convolution on the transposed filter."""
    L = keras.layers
    _check(keras, lambda k: _multi(k, (29, 31, 1), [
        L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=8, activation="relu6"),
        L.DepthwiseConv2D(3, depth_multiplier=3),
    ]), tmp_path, 9)


def test_fully_connected_mve(keras, tmp_path):
    L = keras.layers

    def build(k):
        # One input (the converter orders several by name): rows of 23 (five batches) and the
        # 115 values flattened.
        b = k.Input((5, 23), batch_size=1)
        a = L.Flatten()(b)
        return k.Model(b, [L.Dense(10)(a), L.Dense(3, activation="relu")(a), L.Dense(300)(a),
                           L.Dense(17)(b)])

    res = _check(keras, build, tmp_path, 6)
    assert res.ops.count("FULLY_CONNECTED") == 4


def test_pooling_mve(keras, tmp_path):
    L = keras.layers
    res = _check(keras, lambda k: _multi(k, (13, 11, 19), [
        L.AveragePooling2D(2),
        L.AveragePooling2D(3, strides=1, padding="same"),
        L.AveragePooling2D((13, 11)),
        L.MaxPooling2D(3, strides=2, padding="same"),
        L.MaxPooling2D(2),
    ]), tmp_path, 7)
    assert res.ops.count("AVERAGE_POOL_2D") == 3 and res.ops.count("MAX_POOL_2D") == 2


@pytest.mark.parametrize("seed", [0, 1])
def test_add_mve(keras, tmp_path, seed):
    """Odd element count, ReLU fused, random input and output quantization on cloned ops."""
    rng = np.random.default_rng(50 + seed)
    a, b_ = keras.Input((7, 9, 5), batch_size=1), keras.Input((7, 9, 5), batch_size=1)
    s = keras.layers.Add()([a, b_])
    r = keras.layers.ReLU()(keras.layers.Add()([s, b_]))
    model = keras.Model([a, b_], [r, s])
    reps = [rng.normal(size=(16, *t.shape[1:])).astype(np.float32) * (k + 1)
            for k, t in enumerate(model.inputs)]
    base = convert(model, reps)

    def edit(m):
        sg = m.subgraphs[0]
        for t in sg.inputs:
            set_quant(sg.tensors[t], float(np.exp(rng.uniform(-5, 0))),
                      int(rng.integers(-100, 100)))

        def each(j, t, _op):
            set_quant(t, float(np.exp(rng.uniform(-4, 1))), int(rng.integers(-128, 128)))
        replicate_last_op(m, 6, each)

    res, _, _ = check_arm_bit_exact(mutate(base, edit), tmp_path, envs=ENV, n=8, seed=seed)
    assert_runs_mve(tmp_path / ENV[0] / "model.elf", res.ops)


@pytest.mark.parametrize("op", ["conv", "pointwise", "dw", "fc"])
def test_requant_fuzz_mve(keras, tmp_path, op):
    """Cloned op with random output scales: multipliers > 1 (left shifts), right shift 0 and
    shifts beyond 23 take the general requantization."""
    L = keras.layers
    shape = (7, 7, 20)
    layer = {"conv": L.Conv2D(9, 3, padding="same"), "pointwise": L.Conv2D(16, 1),
             "dw": L.DepthwiseConv2D(3, padding="same"), "fc": L.Dense(11)}[op]
    rng = np.random.default_rng(8)
    inp = keras.Input(shape, batch_size=1)
    x = keras.layers.Flatten()(inp) if op == "fc" else inp
    base = convert(keras.Model(inp, layer(x)), rng.normal(size=(16, *shape)).astype(np.float32))
    scales = [3e-4, 1e-3, 0.01, 0.05, 0.2, 0.9, 4.0, 60.0]

    def edit(m):
        def each(j, t, _op):
            set_quant(t, scales[j], int(rng.integers(-128, 128)))
        replicate_last_op(m, len(scales), each)

    res, _, _ = check_arm_bit_exact(mutate(base, edit), tmp_path, envs=ENV, n=N, seed=3)
    assert_runs_mve(tmp_path / ENV[0] / "model.elf", res.ops)


@pytest.mark.parametrize("op", ["conv", "dw"])
def test_wide_accumulators_mve(keras, tmp_path, op):
    """Biases beyond 2^30 with an output scale that keeps them inside int8: the MVE
    requantization is exact for every int32 accumulator."""
    shape = (6, 6, 8)
    layer = (keras.layers.Conv2D(6, 3, padding="same") if op == "conv"
             else keras.layers.DepthwiseConv2D(3, padding="same"))
    rng = np.random.default_rng(11)
    inp = keras.Input(shape, batch_size=1)
    base = convert(keras.Model(inp, layer(inp)), rng.normal(size=(16, *shape)).astype(np.float32))

    def edit(m):
        sg = m.subgraphs[0]
        o = sg.operators[-1]
        bias = m.buffers[sg.tensors[o.inputs[2]].buffer]
        vals = np.frombuffer(bytes(bias.data), np.int32).copy()
        big = rng.integers(1 << 30, (1 << 31) - (1 << 26), size=vals[::2].size)
        vals[::2] = big * rng.choice([-1, 1], size=big.size)
        bias.data = np.frombuffer(vals.tobytes(), np.uint8)
        out = sg.tensors[o.outputs[0]]
        set_quant(out, float(np.float32(out.quantization.scale[0])) * 1e7, 0)

    res, _, _ = check_arm_bit_exact(mutate(base, edit), tmp_path, envs=ENV, n=8, seed=4)
    assert_runs_mve(tmp_path / ENV[0] / "model.elf", res.ops)


def test_vww_mobilenet_mve(keras, tmp_path):
    model = converted(mobilenet_v1(keras, (96, 96, 3), alpha=0.25, classes=2), (96, 96, 3))
    res, _, _ = check_arm_bit_exact(model, tmp_path, envs=ENV, n=3, seed=6)
    assert_runs_mve(tmp_path / ENV[0] / "model.elf", res.ops)
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(res.ops)


def test_resnet8_mve(keras, tmp_path):
    model = converted(resnet8(keras), (32, 32, 3), seed=1)
    res, _, _ = check_arm_bit_exact(model, tmp_path, envs=ENV, n=4, seed=7)
    assert_runs_mve(tmp_path / ENV[0] / "model.elf", res.ops)
    assert res.ops.count("ADD") == 3 and "AVERAGE_POOL_2D" in res.ops
