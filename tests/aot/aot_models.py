"""Small MobileNet v1/v2 and ResNet-style Keras models with batch size 1, built layer by layer."""

from __future__ import annotations

# He initialisation keeps activations from vanishing through an untrained deep ReLU6 stack.
INIT = {"kernel_initializer": "he_normal"}
DW_INIT = {"depthwise_initializer": "he_normal"}


def BN(L):
    """BatchNorm whose moving statistics become the batch statistics of one training pass."""
    return L.BatchNormalization(momentum=0.0)


def calibrate(model, data):
    """Data-dependent init: one training-mode pass sets every BN to normalise its real input."""
    model(data, training=True)
    return model


def mobilenet_v1(keras, shape=(96, 96, 3), alpha=0.25, classes=4, blocks=None):
    """MobileNet v1: conv, depthwise-separable blocks (filters, stride), GAP, dense, softmax."""
    L = keras.layers
    blocks = blocks or [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1),
                        (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
    inp = keras.Input(shape, batch_size=1)
    x = L.Conv2D(int(32 * alpha), 3, strides=2, padding="same", use_bias=False,
                 **INIT)(inp)
    x = BN(L)(x)
    x = L.ReLU(6.0)(x)
    for f, s in blocks:
        x = L.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False, **DW_INIT)(x)
        x = BN(L)(x)
        x = L.ReLU(6.0)(x)
        x = L.Conv2D(int(f * alpha), 1, use_bias=False, **INIT)(x)
        x = BN(L)(x)
        x = L.ReLU(6.0)(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(classes)(x)
    x = L.Softmax()(x)
    return keras.Model(inp, x)


def mobilenet_v2(keras, shape=(64, 64, 3), alpha=0.35, classes=3, blocks=None):
    """MobileNet v2: inverted residuals (expansion, filters, stride), linear bottlenecks."""
    L = keras.layers
    blocks = blocks or [(1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 64, 2),
                        (6, 96, 1)]
    inp = keras.Input(shape, batch_size=1)
    x = L.Conv2D(max(8, int(32 * alpha)), 3, strides=2, padding="same", use_bias=False,
                 **INIT)(inp)
    x = BN(L)(x)
    x = L.ReLU(6.0)(x)
    for t, f, s in blocks:
        c_in = x.shape[-1]
        c_out = max(8, int(f * alpha) // 8 * 8)
        y = x
        if t != 1:
            y = L.Conv2D(c_in * t, 1, use_bias=False, **INIT)(y)
            y = BN(L)(y)
            y = L.ReLU(6.0)(y)
        y = L.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False, **DW_INIT)(y)
        y = BN(L)(y)
        y = L.ReLU(6.0)(y)
        y = L.Conv2D(c_out, 1, use_bias=False, **INIT)(y)
        y = BN(L)(y)
        x = L.Add()([x, y]) if s == 1 and c_in == c_out else y
    x = L.Conv2D(64, 1, use_bias=False, **INIT)(x)
    x = BN(L)(x)
    x = L.ReLU(6.0)(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(classes)(x)
    x = L.Softmax()(x)
    return keras.Model(inp, x)


def resnet_small(keras, shape=(32, 32, 3), classes=5):
    """ResNet-style: conv stem, max pool, two residual stages (one with a projection shortcut)."""
    L = keras.layers
    inp = keras.Input(shape, batch_size=1)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = L.MaxPooling2D(2)(x)
    for f, s in [(8, 1), (16, 2)]:
        y = L.Conv2D(f, 3, strides=s, padding="same", use_bias=False, **INIT)(x)
        y = BN(L)(y)
        y = L.ReLU()(y)
        y = L.Conv2D(f, 3, padding="same", use_bias=False, **INIT)(y)
        y = BN(L)(y)
        sc = x if s == 1 and x.shape[-1] == f else L.Conv2D(f, 1, strides=s)(x)
        x = L.ReLU()(L.Add()([sc, y]))
    x = L.AveragePooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(classes)(x)
    x = L.Softmax()(x)
    return keras.Model(inp, x)


def resnet8(keras, shape=(32, 32, 3), classes=10):
    """MLPerf Tiny ResNet-8 (CIFAR-10): conv16, three residual stages 16/32/64, pool, dense."""
    L = keras.layers
    inp = keras.Input(shape, batch_size=1)
    x = L.Conv2D(16, 3, padding="same", use_bias=False, **INIT)(inp)
    x = BN(L)(x)
    x = L.ReLU()(x)
    for f, s in [(16, 1), (32, 2), (64, 2)]:
        y = L.Conv2D(f, 3, strides=s, padding="same", use_bias=False, **INIT)(x)
        y = BN(L)(y)
        y = L.ReLU()(y)
        y = L.Conv2D(f, 3, padding="same", use_bias=False, **INIT)(y)
        y = BN(L)(y)
        sc = x if s == 1 and x.shape[-1] == f else L.Conv2D(f, 1, strides=s, **INIT)(x)
        x = L.ReLU()(L.Add()([sc, y]))
    x = L.AveragePooling2D(x.shape[1])(x)
    x = L.Flatten()(x)
    x = L.Dense(classes)(x)
    x = L.Softmax()(x)
    return keras.Model(inp, x)


def converted(keras_model, shape, seed=0, n=16, int8_io=True) -> bytes:
    """Calibrate BN on uniform [-1, 1) data and convert to a full-int8 .tflite."""
    import numpy as np
    from aot_helpers import convert

    rng = np.random.default_rng(seed)
    rep = rng.uniform(-1, 1, size=(n, *shape)).astype(np.float32)
    calibrate(keras_model, rep)
    return convert(keras_model, rep, int8_io=int8_io)
