"""Per-op bit-exactness of the DSP kernels on QEMU Cortex-M4 (mps2-an386) and M7 (an500).

Each case is converted once, run once in TFLM, and compared on both machines. Shapes cover the
DSP fast paths (channel counts multiple of 4, 3x3 depthwise interior/border, odd pixel and
channel counts, 5x5, dilation) and the fallbacks (grouped conv, depth multiplier 2). A fuzz case
clones a conv with random output scales so that left shifts and large right shifts (the
requantization's reference path) are exercised too.
"""

from __future__ import annotations

import numpy as np
import pytest
from aot_helpers import convert, io_specs, mutate, replicate_last_op, set_quant
from arm_harness import check_arm_bit_exact, needs_arm

pytestmark = needs_arm
N = 24


def _conv(keras, shape, **kw):
    def build():
        inp = keras.Input(shape, batch_size=1)
        return keras.Model(inp, keras.layers.Conv2D(**kw)(inp))
    return build


def _dw(keras, shape, **kw):
    def build():
        inp = keras.Input(shape, batch_size=1)
        return keras.Model(inp, keras.layers.DepthwiseConv2D(**kw)(inp))
    return build


CASES = {
    "pw_16to24_relu6": lambda k: _conv(k, (9, 7, 16), filters=24, kernel_size=1,
                                       activation="relu6"),
    "pw_8to5_odd": lambda k: _conv(k, (5, 5, 8), filters=5, kernel_size=1),
    "conv3x3_s2_rgb": lambda k: _conv(k, (13, 11, 3), filters=8, kernel_size=3, strides=2,
                                      padding="same", activation="relu"),
    "conv3x3_s1_c12": lambda k: _conv(k, (8, 8, 12), filters=7, kernel_size=3,
                                      padding="same"),
    "conv5x5_valid_dil": lambda k: _conv(k, (12, 12, 4), filters=6, kernel_size=3,
                                         dilation_rate=2, use_bias=False),
    "conv_grouped": lambda k: _conv(k, (6, 6, 8), filters=8, kernel_size=3, groups=2,
                                    padding="same"),
    "dw3x3_s1_c8": lambda k: _dw(k, (10, 9, 8), kernel_size=3, padding="same",
                                 activation="relu6"),
    "dw3x3_s2_c5": lambda k: _dw(k, (9, 11, 5), kernel_size=3, strides=2, padding="same"),
    "dw5x5_valid": lambda k: _dw(k, (9, 9, 4), kernel_size=5, use_bias=False),
    "dw3x3_dm2": lambda k: _dw(k, (6, 6, 3), kernel_size=3, depth_multiplier=2,
                               padding="same"),
    # depthwise row kernel (stride 1 along x, range [-128, 127]): even and odd widths, VALID
    # and SAME, stride 2 along y
    "dw3x3_rows_c12_valid": lambda k: _dw(k, (7, 10, 12), kernel_size=3),
    "dw3x3_rows_c20_odd": lambda k: _dw(k, (6, 9, 20), kernel_size=3, padding="same"),
    "dw3x3_rows_s21_c8": lambda k: _dw(k, (9, 6, 8), kernel_size=3, strides=(2, 1),
                                       padding="same"),
    "dw3x3_in1_dm8_s2": lambda k: _dw(k, (13, 12, 1), kernel_size=3, strides=2,
                                      depth_multiplier=8),
    "dw3x3_in1_dm6_same": lambda k: _dw(k, (7, 9, 1), kernel_size=3, depth_multiplier=6,
                                        padding="same", activation="relu"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_dsp_m4_m7(keras, tmp_path, case):
    rng = np.random.default_rng(sorted(CASES).index(case))
    model = CASES[case](keras)()
    shape = tuple(model.inputs[0].shape[1:])
    rep = rng.normal(size=(16, *shape)).astype(np.float32)
    b = convert(model, rep)
    _, ref, _ = check_arm_bit_exact(b, tmp_path, n=N, seed=1)
    assert any(len(np.unique(o)) > 2 for o in ref.outputs)
    if "_rows_" in case:
        # A one-op model's arena has no room for the row kernel's work space, so it runs the
        # per-pixel kernel; run the row kernel too, on a work space of its own.
        f = _fast_path_fields((tmp_path / "gen" / "tp_model.c").read_text())
        assert f["stride_w"] == 1 and f["out_c"] % 4 == 0 and (f["act_min"], f["act_max"]) == (
            -128, 127)
        check_arm_bit_exact(b, tmp_path / "rows", n=N, seed=1,
                            edit=_own_scratch(32768, ".scratch_px = 32768", ".scratch_mode = 1"))


def _fast_path_fields(src: str) -> dict:
    """Op 0's parameters, after checking that its quantization takes the DSP fast paths
    (small accumulators, every channel's multiplier and shift accepted by tk_rq)."""
    import re

    body = re.search(r"tk_conv_params tp_op0_p = \{\.(.*)\};", src).group(1)
    f = {k: v for k, v in (kv.split(" = ") for kv in body.split(", ."))}
    shifts = re.search(r"tp_op0_shift\[\d+\] = \{(.*?)\}", src).group(1).split(", ")
    mults = re.search(r"tp_op0_mult\[\d+\] = \{(.*?)\}", src).group(1).split(", ")
    assert f["small_acc"] == "1"
    assert all(-22 <= int(x) <= -1 for x in shifts) and all(int(m) >= 0 for m in mults)
    return {k: int(v) for k, v in f.items() if re.fullmatch(r"-?\d+", v)}


def _own_scratch(words: int, *fields: str):
    """Edit of the generated code: op 0 works in a static buffer of its own, with `fields`
    (".name = value") replacing the exported ones."""
    import re

    def edit(text: str) -> str:
        assert "tp_op0_p = " in text
        text = text.replace("static const tk_conv_params tp_op0_p",
                            f"static int32_t tp_test_scratch[{words}];\n"
                            "static const tk_conv_params tp_op0_p")
        text = re.sub(r"\.scratch = \(int32_t \*\)\(tp_arena \+ \d+\)",
                      ".scratch = tp_test_scratch", text)
        for f in fields:
            name = f.split(" = ")[0]
            text = re.sub(re.escape(name) + r" = -?\d+", f, text)
        return text
    return edit


@pytest.mark.parametrize("op", ["conv", "dw"])
def test_requant_fuzz_dsp_m4_m7(keras, tmp_path, op):
    """Cloned op with random output scales (some force multipliers > 1 or shifts > 23)."""
    shape = (7, 7, 8)
    build = (_conv(keras, shape, filters=8, kernel_size=3, padding="same") if op == "conv"
             else _dw(keras, shape, kernel_size=3, padding="same"))
    rng = np.random.default_rng(7)
    base = convert(build(), rng.normal(size=(16, *shape)).astype(np.float32))
    scales = [3e-4, 1e-3, 0.01, 0.05, 0.2, 0.9, 4.0, 60.0]

    def edit(m):
        def each(j, t, _op):
            set_quant(t, scales[j], int(rng.integers(-128, 128)))
        replicate_last_op(m, len(scales), each)

    model = mutate(base, edit)
    assert len(io_specs(model)[1]) == len(scales) + 1
    check_arm_bit_exact(model, tmp_path, n=N, seed=3)


@pytest.mark.parametrize("seed", [0, 1])
def test_add_dsp_m4_m7(keras, tmp_path, seed):
    """Table-driven DSP ADD: odd element count (scalar tail), random input and output
    quantization on cloned ops, ReLU fused."""
    rng = np.random.default_rng(40 + seed)
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

    check_arm_bit_exact(mutate(base, edit), tmp_path, n=8, seed=seed)


@pytest.mark.parametrize("op", ["conv", "dw"])
def test_wide_accumulators_dsp_m4_m7(keras, tmp_path, op):
    """Biases beyond 2^30 (so the 64-bit requantization path instead of SMMULR) and an output
    scale that keeps such channels inside int8."""
    shape = (6, 6, 8)
    build = (_conv(keras, shape, filters=6, kernel_size=3, padding="same") if op == "conv"
             else _dw(keras, shape, kernel_size=3, padding="same"))
    rng = np.random.default_rng(11)
    base = convert(build(), rng.normal(size=(16, *shape)).astype(np.float32))

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

    check_arm_bit_exact(mutate(base, edit), tmp_path, n=8, seed=4)
    assert ".small_acc = 0" in (tmp_path / "gen" / "tp_model.c").read_text()


def test_depthwise_one_input_channel_is_a_conv(keras, tmp_path):
    """A depthwise layer over one input channel is exported as a convolution (filter
    transposed at export time), the same size in flash."""
    from pipeline.aot import export_aot

    rng = np.random.default_rng(21)
    b = convert(CASES["dw3x3_in1_dm8_s2"](keras)(), rng.normal(size=(16, 13, 12, 1)))
    res = export_aot(b, tmp_path / "gen")
    src = (tmp_path / "gen" / "tp_model.c").read_text()
    assert "tk_conv2d_s8(" in src and "tk_depthwise_conv2d_s8(" not in src
    assert res.kernels == ["tk_conv"]
    assert res.weights_bytes == 8 * 9 + 8 * 4


@pytest.mark.parametrize("op", ["conv", "dw"])
def test_constant_channels_dsp_m4_m7(keras, tmp_path, op):
    """Channels with all-zero weights, biases near +-2^30 and filter scales near 1e-9 (what
    training leaves in pruned channels): the exporter gives them an equivalent in-range
    requantization, so the layer keeps the fast path and stays exact."""
    shape = (6, 5, 16)
    build = (_conv(keras, shape, filters=12, kernel_size=1, activation="relu6") if op == "conv"
             else _dw(keras, shape, kernel_size=3, padding="same"))
    rng = np.random.default_rng(17)
    base = convert(build(), rng.normal(size=(16, *shape)).astype(np.float32))
    dead = [0, 3, 4, 9, 11]

    def edit(m):
        sg = m.subgraphs[0]
        o = sg.operators[-1]
        ft, bt = sg.tensors[o.inputs[1]], sg.tensors[o.inputs[2]]
        fbuf, bbuf = m.buffers[ft.buffer], m.buffers[bt.buffer]
        w = np.frombuffer(bytes(fbuf.data), np.int8).copy().reshape(ft.shape)
        bias = np.frombuffer(bytes(bbuf.data), np.int32).copy()
        scales = np.asarray(ft.quantization.scale, np.float32).copy()
        for j, c in enumerate(dead):
            if op == "conv":
                w[c] = 0
            else:
                w[..., c] = 0
            # Shifts from -26 to beyond -31 (multiplier 0), biases on both sides of +-2^30.
            scales[c] = [4e-9, 1e-8, 3e-10, 1e-13, 2e-9][j]
            bias[c] = [1 << 30, -(1 << 30), (1 << 30) - 64, -(1 << 30) - 128, 12345][j]
        fbuf.data = np.frombuffer(w.tobytes(), np.uint8)
        bbuf.data = np.frombuffer(bias.tobytes(), np.uint8)
        ft.quantization.scale = [float(x) for x in scales]

    check_arm_bit_exact(mutate(base, edit), tmp_path, n=8, seed=6)
    src = (tmp_path / "gen" / "tp_model.c").read_text()
    assert ".small_acc = 1" in src and "tp_op0_bias" in src


ORDER_CASES = {
    # k = 160 (two chunks of the unrolled body), odd pixel count, ReLU6 range
    "pw_k160_relu6": lambda k: _conv(k, (5, 3, 160), filters=10, kernel_size=1,
                                     activation="relu6"),
    # k = 216 (not a multiple of 32 groups), odd output channels, padding, stride 2
    "conv3x3_k216_s2": lambda k: _conv(k, (9, 7, 24), filters=7, kernel_size=3, strides=2,
                                       padding="same"),
    # 3x3 over 3 channels (the stem path), windows with padded columns and rows
    "conv3x3_rgb_same": lambda k: _conv(k, (11, 10, 3), filters=6, kernel_size=3,
                                        padding="same", activation="relu"),
    # 3x3 over 1 channel (window words of 9 bytes), stride 2, odd width
    "conv3x3_mono_s2": lambda k: _conv(k, (12, 11, 1), filters=8, kernel_size=3, strides=2,
                                       padding="same"),
}


@pytest.mark.parametrize("case", sorted(ORDER_CASES))
def test_conv_orders_dsp_m4_m7(keras, tmp_path, case):
    """Every way the DSP convolution can use its work space on the same layer: int16 weights of
    all channel pairs or of one pair per band, bands of several sizes, and int8 four-pixel
    blocks (the exported choice rewritten in the generated code, with a work space of its
    own)."""
    from pipeline.aot.ops import CONV_B4, CONV_C2_ALL, CONV_C2_PAIR

    rng = np.random.default_rng(30 + sorted(ORDER_CASES).index(case))
    model = ORDER_CASES[case](keras)()
    shape = tuple(model.inputs[0].shape[1:])
    b = convert(model, rng.normal(size=(16, *shape)).astype(np.float32))
    _, ref, _ = check_arm_bit_exact(b, tmp_path / "exported", n=N, seed=5)
    assert any(len(np.unique(o)) > 2 for o in ref.outputs)
    f = _fast_path_fields((tmp_path / "exported" / "gen" / "tp_model.c").read_text())
    npx = f["out_h"] * f["out_w"]
    for px, mode in [(4, CONV_B4), (2, CONV_C2_ALL), (6, CONV_C2_ALL), (4, CONV_C2_PAIR),
                     (npx + (npx & 1), CONV_C2_PAIR), (npx + (npx & 1), CONV_C2_ALL)]:
        edit = _own_scratch(16384, f".scratch_px = {px}", f".scratch_mode = {mode}")
        check_arm_bit_exact(b, tmp_path / f"m{mode}_b{px}", n=N, seed=5, edit=edit)
        assert "tp_test_scratch" in (tmp_path / f"m{mode}_b{px}" / "gen" / "tp_model.c").read_text()
