"""A tiny int8 CNN for the HIL tests: 16x16x1 in, 4 classes out, converted with TF."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SHAPE = (16, 16, 1)
CLASSES = 4


def make_tflite(seed: int = 0) -> bytes:
    """Build a random-weight Keras CNN and convert it to full-int8 (int8 in and out)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    k = tf.keras.layers
    inp = tf.keras.Input(SHAPE, batch_size=1)
    x = k.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = k.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = k.Conv2D(16, 1, activation="relu")(x)
    x = k.MaxPooling2D()(x)
    x = k.GlobalAveragePooling2D()(x)
    out = k.Dense(CLASSES)(x)  # logits: more varied int8 outputs than softmax
    model = tf.keras.Model(inp, out)
    rng = np.random.default_rng(seed)
    from pipeline.quantize import quantize

    return quantize(model, rng.uniform(0, 1, (32, *SHAPE)).astype(np.float32))


def make_samples(n: int, seed: int = 1) -> np.ndarray:
    """Random int8 input tensors shaped like the model input (without batch)."""
    return np.random.default_rng(seed).integers(-128, 128, (n, *SHAPE), dtype=np.int8)


def cached_tflite(cache_dir: Path) -> Path:
    """The test model, converted once per cache folder."""
    path = cache_dir / "tiny_cnn.tflite"
    if not path.exists():
        path.write_bytes(make_tflite())
    return path
