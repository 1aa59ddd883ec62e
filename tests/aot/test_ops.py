"""Per-op bit-exactness: tiny converted Keras models, compiled C vs the TFLM interpreter."""

from __future__ import annotations

import numpy as np
import pytest
from aot_helpers import check_bit_exact, convert, io_specs

N = 48  # inputs per model; all run in one binary invocation and one TFLM call


def _model(keras, shape, body, batch=1):
    inp = keras.Input(shape, batch_size=batch)
    return keras.Model(inp, body(inp))


def _rep(rng, shape, n=32, scale=1.0):
    return (rng.normal(size=(n, *shape)) * scale).astype(np.float32)


def _ops(b: bytes) -> list[str]:
    return [op.name for op in io_specs(b)[2].ops]


def _run(keras_model, rep, tmp_path, seed=0, int8_io=True, n=N):
    b = convert(keras_model, rep, int8_io=int8_io)
    res, ref = check_bit_exact(b, tmp_path, n=n, seed=seed, reps=rep)
    # Degenerate outputs would make equality meaningless.
    assert any(len(np.unique(o)) > 2 for o in ref.outputs), "outputs are nearly constant"
    return b, res


@pytest.mark.parametrize("seed", range(8))
def test_conv2d(keras, tmp_path, seed):
    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(1, 6))
    stride = int(rng.integers(1, 4))
    dil = 1 if stride > 1 or k == 1 else int(rng.integers(1, 3))
    pad = str(rng.choice(["same", "valid"]))
    act = str(rng.choice(["linear", "relu", "relu6"]))
    h, w = (int(x) for x in rng.integers(max(k * dil, 3), 14, size=2))
    c, f = int(rng.integers(1, 6)), int(rng.integers(1, 12))
    model = _model(keras, (h, w, c), lambda x: keras.layers.Conv2D(
        f, k, strides=stride, padding=pad, dilation_rate=dil, activation=act,
        use_bias=bool(rng.integers(0, 2)))(x))
    b, _ = _run(model, _rep(rng, (h, w, c)), tmp_path, seed)
    assert _ops(b) == ["CONV_2D"]


@pytest.mark.parametrize("seed", range(6))
def test_depthwise(keras, tmp_path, seed):
    rng = np.random.default_rng(200 + seed)
    k = int(rng.integers(1, 6))
    stride = int(rng.integers(1, 3))
    dil = 1 if stride > 1 or k == 1 else int(rng.integers(1, 3))
    dm = int(rng.integers(1, 4))
    pad = str(rng.choice(["same", "valid"]))
    act = str(rng.choice(["linear", "relu", "relu6"]))
    h, w = (int(x) for x in rng.integers(max(k * dil, 3), 14, size=2))
    c = int(rng.integers(1, 9))
    model = _model(keras, (h, w, c), lambda x: keras.layers.DepthwiseConv2D(
        k, strides=stride, padding=pad, dilation_rate=dil, depth_multiplier=dm, activation=act,
        use_bias=bool(rng.integers(0, 2)))(x))
    b, _ = _run(model, _rep(rng, (h, w, c)), tmp_path, seed)
    assert _ops(b) == ["DEPTHWISE_CONV_2D"]


@pytest.mark.parametrize("seed,shape,bias,act", [
    (0, (16,), True, "linear"), (1, (7,), False, "relu"), (2, (3, 10), True, "relu6"),
    (3, (2, 3, 5), True, "linear")])
def test_fully_connected(keras, tmp_path, seed, shape, bias, act):
    rng = np.random.default_rng(300 + seed)
    model = _model(keras, shape, lambda x: keras.layers.Dense(
        int(rng.integers(1, 20)), use_bias=bias, activation=act)(x))
    b, _ = _run(model, _rep(rng, shape), tmp_path, seed)
    assert "FULLY_CONNECTED" in _ops(b)


@pytest.mark.parametrize("seed,pool,size,stride,pad", [
    (0, "avg", 2, 2, "valid"), (1, "avg", 3, 2, "same"), (2, "max", 3, 1, "same"),
    (3, "max", 2, 2, "valid"), (4, "avg", (3, 2), (1, 2), "same"), (5, "max", 3, 3, "same")])
def test_pooling(keras, tmp_path, seed, pool, size, stride, pad):
    rng = np.random.default_rng(400 + seed)
    layer = keras.layers.AveragePooling2D if pool == "avg" else keras.layers.MaxPooling2D
    shape = (int(rng.integers(5, 12)), int(rng.integers(5, 12)), int(rng.integers(1, 6)))
    model = _model(keras, shape, lambda x: layer(size, strides=stride, padding=pad)(x))
    b, _ = _run(model, _rep(rng, shape), tmp_path, seed)
    assert _ops(b) == ["AVERAGE_POOL_2D" if pool == "avg" else "MAX_POOL_2D"]


@pytest.mark.parametrize("keepdims", [False, True])
def test_mean_spatial(keras, tmp_path, keepdims):
    rng = np.random.default_rng(500 + keepdims)
    shape = (7, 5, 6)
    model = _model(keras, shape, lambda x: keras.layers.GlobalAveragePooling2D(
        keepdims=keepdims)(keras.layers.Conv2D(6, 1)(x)))
    b, _ = _run(model, _rep(rng, shape), tmp_path)
    assert "MEAN" in _ops(b)


def test_mean_other_axes(keras, tmp_path):
    rng = np.random.default_rng(510)
    shape = (4, 6, 5)
    model = _model(keras, shape, lambda x: keras.ops.mean(
        keras.layers.Conv2D(5, 1)(x), axis=(2,), keepdims=False))
    b, _ = _run(model, _rep(rng, shape), tmp_path)
    assert "MEAN" in _ops(b)


def test_add_mul_two_inputs(keras, tmp_path):
    rng = np.random.default_rng(600)
    a, b_ = keras.Input((6, 5, 4), batch_size=1), keras.Input((6, 5, 4), batch_size=1)
    s = keras.layers.Add()([a, b_])
    p = keras.layers.Multiply()([a, b_])
    model = keras.Model([a, b_], [s, p])
    reps = [_rep(rng, (6, 5, 4)), _rep(rng, (6, 5, 4), scale=3.0)]
    b = convert(model, reps)
    check_bit_exact(b, tmp_path, n=N, reps=reps)
    assert sorted(_ops(b)) == ["ADD", "MUL"]


def test_broadcast_mul_logistic(keras, tmp_path):
    """Squeeze-and-excite: MUL with a broadcast (1,1,C) operand, LOGISTIC, MEAN."""
    rng = np.random.default_rng(610)

    def se(x):
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        g = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
        g = keras.layers.Conv2D(8, 1, activation="sigmoid")(g)
        return keras.layers.Multiply()([x, g])

    model = _model(keras, (6, 6, 3), se)
    b, _ = _run(model, _rep(rng, (6, 6, 3)), tmp_path)
    assert {"MUL", "LOGISTIC", "MEAN"} <= set(_ops(b))


def test_broadcast_add(keras, tmp_path):
    rng = np.random.default_rng(620)
    model = _model(keras, (5, 4, 6), lambda x: keras.layers.Conv2D(6, 1)(x) + keras.ops.mean(
        x, axis=(1,), keepdims=True))
    b, _ = _run(model, _rep(rng, (5, 4, 6)), tmp_path)
    assert "ADD" in _ops(b)


def test_pad_reshape_concat(keras, tmp_path):
    rng = np.random.default_rng(700)

    def body(x):
        a = keras.layers.Conv2D(3, 1)(x)
        a = keras.layers.ZeroPadding2D(((1, 2), (0, 1)))(a)
        a = keras.layers.Conv2D(4, 3, activation="relu")(a)
        c = keras.layers.Conv2D(3, 2, padding="same")(x)
        c = keras.layers.Concatenate()([c, x])
        return [keras.layers.Flatten()(a), keras.layers.Reshape((-1, 5))(c)]

    model = _model(keras, (6, 5, 2), body)
    b, _ = _run(model, _rep(rng, (6, 5, 2)), tmp_path)
    assert {"PAD", "CONCATENATION", "RESHAPE"} <= set(_ops(b))


@pytest.mark.parametrize("seed,scale", [(0, 0.5), (1, 4.0), (2, 20.0)])
def test_softmax(keras, tmp_path, seed, scale):
    rng = np.random.default_rng(800 + seed)
    shape = (3, int(rng.integers(2, 40)))
    model = _model(keras, shape, lambda x: keras.layers.Softmax()(x))
    b, _ = _run(model, _rep(rng, shape, scale=scale), tmp_path, seed, n=96)
    assert _ops(b) == ["SOFTMAX"]


@pytest.mark.parametrize("act,op", [("relu", "RELU"), ("relu6", "RELU6"),
                                    ("sigmoid", "LOGISTIC"), ("hard_swish", "HARD_SWISH")])
def test_activations(keras, tmp_path, act, op):
    rng = np.random.default_rng(900)
    shape = (9, 11)
    model = _model(keras, shape, lambda x: keras.layers.Activation(act)(x))
    b, _ = _run(model, _rep(rng, shape, scale=4.0), tmp_path, n=96)
    assert op in _ops(b)


def test_float_io(keras, tmp_path):
    """Float32 in/out models: QUANTIZE at the start and DEQUANTIZE at the end."""
    rng = np.random.default_rng(1000)
    model = _model(keras, (8, 8, 3), lambda x: keras.layers.Dense(4)(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, strides=2)(x))))
    b, _ = _run(model, _rep(rng, (8, 8, 3)), tmp_path, int8_io=False)
    assert _ops(b)[0] == "QUANTIZE" and _ops(b)[-1] == "DEQUANTIZE"


def test_grouped_conv(keras, tmp_path):
    rng = np.random.default_rng(1100)
    model = _model(keras, (7, 6, 4), lambda x: keras.layers.Conv2D(
        6, 3, groups=2, padding="same", activation="relu")(x))
    b, _ = _run(model, _rep(rng, (7, 6, 4)), tmp_path)
    assert _ops(b) == ["CONV_2D"]


def test_concat_requantizes_differing_inputs(keras, tmp_path):
    """TFLM refuses CONCATENATION with mixed scales; the AOT backend requantizes (within 1 LSB)."""
    from aot_helpers import compile_c, mutate, run_c, set_quant

    from pipeline.aot import export_aot
    from pipeline.errors import InterpreterCrash
    from pipeline.tflm import run_tflm

    rng = np.random.default_rng(1200)
    a, c = keras.Input((3, 4), batch_size=1), keras.Input((3, 2), batch_size=1)
    model = keras.Model([a, c], keras.layers.Concatenate()([a, c]))
    reps = [_rep(rng, (3, 4)), _rep(rng, (3, 2))]
    base = convert(model, reps)

    def skew(m):
        sg = m.subgraphs[0]
        set_quant(sg.tensors[sg.inputs[1]], 0.037, 11)

    b = mutate(base, skew)
    with pytest.raises(InterpreterCrash):
        run_tflm(b, [x[:1] for x in reps])
    spec, ospec, g = io_specs(b)
    export_aot(b, tmp_path / "gen")
    exe = compile_c(tmp_path / "gen", tmp_path / "m.exe")
    xs = [rng.integers(-128, 128, size=(32, *s), dtype=np.int8) for s, _ in spec]
    got = run_c(exe, xs, ospec, tmp_path)[0]
    # The converter may list the model inputs in another order than the concatenation's.
    cat = next(o for o in g.ops if o.name == "CONCATENATION")
    order = [g.inputs.index(t) for t in cat.inputs]
    ins = [g.tensors[g.inputs[j]] for j in order]
    out = g.tensors[g.outputs[0]]
    want = np.concatenate([(xs[j].astype(np.float64) - t.zero_point) * t.scale / out.scale
                           + out.zero_point for j, t in zip(order, ins, strict=True)], axis=-1)
    want = np.clip(np.round(want), -128, 127).reshape(got.shape)
    assert np.abs(got.astype(np.int32) - want).max() <= 1
