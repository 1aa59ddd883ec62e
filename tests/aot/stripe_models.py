"""Small Keras chains for striped execution: odd sizes, strides 2, SAME/VALID, residuals."""

from __future__ import annotations

import numpy as np


def chain_odd_valid(keras):
    """Stride-2 VALID stem on odd sizes, depthwise, pointwise, VALID max pool, 3x3 SAME."""
    L = keras.layers
    inp = keras.Input((23, 17, 3), batch_size=1)
    x = L.Conv2D(8, 3, strides=2, padding="valid", activation="relu")(inp)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = L.Conv2D(12, 1)(x)
    x = L.MaxPooling2D(3, strides=2, padding="valid")(x)
    x = L.Conv2D(6, 3, padding="same")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(3)(x))


def chain_same_s2(keras):
    """5x5 depthwise stride 2 SAME, dilated conv, SAME average pool, VALID depth multiplier 2."""
    L = keras.layers
    inp = keras.Input((19, 21, 4), batch_size=1)
    x = L.DepthwiseConv2D(5, strides=2, padding="same")(inp)
    x = L.Conv2D(8, 3, dilation_rate=2, padding="same", activation="relu")(x)
    x = L.AveragePooling2D(2, strides=1, padding="same")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="valid", depth_multiplier=2)(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(4)(x))


def residual(keras):
    """Two residual blocks on odd sizes: an identity ADD, then a stride-2 projection ADD."""
    L = keras.layers
    inp = keras.Input((13, 11, 8), batch_size=1)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    y = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = L.Conv2D(8, 3, padding="same")(y)
    z = L.ReLU()(L.Add()([x, y]))
    w = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(z)
    w = L.Conv2D(16, 3, padding="same")(w)
    s = L.Conv2D(16, 1, strides=2)(z)
    out = L.Add()([w, s])
    out = L.GlobalAveragePooling2D()(out)
    return keras.Model(inp, L.Dense(5)(out))


def gated(keras):
    """A same-shape MUL of a tensor and its own 3x3 convolution."""
    L = keras.layers
    inp = keras.Input((12, 9, 4), batch_size=1)
    x = L.Conv2D(6, 3, padding="same", activation="relu")(inp)
    y = L.Conv2D(6, 3, padding="same", activation="relu")(x)
    x = L.Multiply()([x, y])
    x = L.Conv2D(4, 3, strides=2, padding="same")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(2)(x))


def small_peak_elsewhere(keras):
    """Tiny convolutions, then wide dense layers: the peak is where no op can be striped."""
    L = keras.layers
    inp = keras.Input((8, 8, 4), batch_size=1)
    x = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = L.Flatten()(x)
    x = L.Dense(2000, activation="relu")(x)
    x = L.Dense(3000, activation="relu")(x)
    return keras.Model(inp, L.Dense(3)(x))


CHAINS = {"chain_odd_valid": chain_odd_valid, "chain_same_s2": chain_same_s2,
          "residual": residual, "gated": gated}


def build(keras, fn, seed: int = 0, int8_io: bool = True) -> tuple[bytes, np.ndarray]:
    """Convert with a normal representative set; returns the model and that set. `seed` also
    fixes the Keras weights, so a model does not depend on which tests ran before it."""
    from aot_helpers import convert

    keras.utils.set_random_seed(seed)
    model = fn(keras)
    rng = np.random.default_rng(seed)
    rep = rng.normal(size=(16, *model.inputs[0].shape[1:])).astype(np.float32)
    return convert(model, rep, int8_io=int8_io), rep


def stripe_range(model_bytes: bytes) -> tuple[int, int]:
    """First and last op of the longest run of ops that can run striped."""
    from pipeline.aot import compile_model
    from pipeline.aot.stripes import stripeable

    c = compile_model(model_bytes, stripe=False)
    best, cur = (0, -1), []
    for pos, (_, k) in enumerate(c.kernels):
        cur = cur + [pos] if stripeable(c.graph, k) else []
        if cur and cur[-1] - cur[0] > best[1] - best[0]:
            best = (cur[0], cur[-1])
    return best
