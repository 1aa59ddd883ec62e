"""MobileNet v1/v2 builder with an MCU-friendly head.

After int8 conversion the graph holds only CONV_2D, DEPTHWISE_CONV_2D, ADD, MEAN,
FULLY_CONNECTED and SOFTMAX: stride-2 layers use SAME padding (no PAD op), and the head is
global-average-pool -> dense -> softmax on a batch-1 input (no SHAPE/STRIDED_SLICE/PACK).
Layer names follow keras.applications so local ImageNet weight files can be mapped by name.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from keras import layers  # noqa: E402

from pipeline.config import ModelConfig  # noqa: E402
from pipeline.errors import ModelError  # noqa: E402

V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
             (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
# (expansion, channels, repeats, first stride), expansion None = the configured one
V2_STAGES = ((1, 16, 1, 1), (None, 24, 2, 2), (None, 32, 3, 2), (None, 64, 4, 2),
             (None, 96, 3, 1), (None, 160, 3, 2), (None, 320, 1, 1))


# Set per build (ModelConfig.bn_momentum, build_model's sync_bn); a module-level cell keeps the
# block helpers small.
_BN = {"momentum": 0.9, "synchronized": False}


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never dropping more than 10 %."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


def build_model(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int,
                batch_size: int | None = None, sync_bn: bool = False) -> keras.Model:
    """Build a MobileNet classifier.

    Args:
        cfg: architecture options (arch, alpha, first_stride, blocks, expansion, head, weights).
        input_shape: (height, width, channels), 32..224 px, 1 or 3 channels.
        num_classes: size of the softmax head (>= 2).
        batch_size: fix the batch dimension (1 for export) or None for training.
        sync_bn: BatchNorm statistics over the global batch of all replicas (multi-worker
            training keeps every worker's moving statistics identical).

    Returns:
        An uncompiled keras.Model ending in a softmax.
    """
    h, w, c = input_shape
    if not (32 <= h <= 224 and 32 <= w <= 224):
        raise ModelError(f"input size must be 32..224 px, got {h}x{w}")
    if c not in (1, 3):
        raise ModelError(f"input channels must be 1 or 3, got {c}")
    if not 0.1 <= cfg.alpha <= 1.0:
        raise ModelError(f"alpha must be in 0.1..1.0, got {cfg.alpha}")
    if num_classes < 2:
        raise ModelError(f"need at least 2 classes, got {num_classes}")
    if cfg.first_stride not in (1, 2):
        raise ModelError(f"first_stride must be 1 or 2, got {cfg.first_stride}")
    _BN.update(momentum=cfg.bn_momentum, synchronized=sync_bn)
    inp = keras.Input(shape=input_shape, batch_size=batch_size, name="input")
    if cfg.arch == "mobilenet_v1":
        x = _v1_body(inp, cfg)
    elif cfg.arch == "mobilenet_v2":
        x = _v2_body(inp, cfg)
    elif cfg.arch in ("dense1_mobilenet", "dense2_mobilenet"):
        x = _dense_body(inp, cfg, dense1=cfg.arch.startswith("dense1"))
    else:
        raise ModelError(f"unknown arch {cfg.arch!r}; use mobilenet_v1, mobilenet_v2, "
                         "dense1_mobilenet or dense2_mobilenet")
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    if cfg.dropout > 0:
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    out = layers.Softmax(name="predictions")(x)
    name = f"{cfg.arch}_{cfg.alpha:g}_{h}x{w}x{c}"
    model = keras.Model(inp, out, name=name)
    if cfg.weights:
        load_imagenet_weights(model, cfg, input_shape)
    return model


def _bn(name: str):
    return layers.BatchNormalization(momentum=_BN["momentum"], synchronized=_BN["synchronized"],
                                     name=name)


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, bn: str, relu: bool = True):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      name=name)(x)
    x = _bn(name=bn)(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x


def _dw_bn(x, stride: int, name: str, bn: str):
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = _bn(name=bn)(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x)


def _v1_blocks(cfg: ModelConfig) -> list[tuple[int, int]]:
    """(output channels, stride) of each depthwise-separable block, before alpha."""
    if cfg.layout:
        blocks = [(int(c), int(s)) for c, s in cfg.layout]
    else:
        blocks = list(V1_BLOCKS)
    return blocks[: cfg.blocks] if cfg.blocks else blocks


def _v1_width(filters: int, cfg: ModelConfig) -> int:
    return filters if cfg.layout else int(filters * cfg.alpha)


def _v1_body(x, cfg: ModelConfig):
    x = _conv_bn(x, int(32 * cfg.alpha), 3, cfg.first_stride, "conv1", "conv1_bn")
    blocks = _v1_blocks(cfg)
    for i, (filters, stride) in enumerate(blocks, start=1):
        x = _dw_bn(x, stride, f"conv_dw_{i}", f"conv_dw_{i}_bn")
        x = _conv_bn(x, _v1_width(filters, cfg), 1, 1, f"conv_pw_{i}", f"conv_pw_{i}_bn")
    if cfg.head_channels:
        x = _conv_bn(x, cfg.head_channels, 1, 1, "conv_head", "conv_head_bn")
    return x


def _concat(xs: list, name: str):
    return xs[0] if len(xs) == 1 else layers.Concatenate(name=name)(xs)


def _dense_body(x, cfg: ModelConfig, dense1: bool):
    """Dense-MobileNet: MobileNet v1 blocks with dense connections inside each resolution.

    A "group" is the run of blocks between two stride-2 blocks. Every block reads the
    concatenation of everything its group produced so far and adds `growth` channels.
    Dense1 also connects the two layers of each block (the pointwise conv sees the block input
    beside the depthwise output), and the group's last block is a full-width pointwise conv that
    narrows the concatenation, standing in for DenseNet's transition layer. Dense2 connects
    whole blocks only and needs no narrowing: the stride-2 depthwise conv of the next group
    shrinks the map, and the head pools the last group's concatenation.
    """
    if cfg.growth < 1:
        raise ModelError(f"growth must be >= 1, got {cfg.growth}")
    x = _conv_bn(x, int(32 * cfg.alpha), 3, cfg.first_stride, "conv1", "conv1_bn")
    blocks = _v1_blocks(cfg)
    group = [x]
    for i, (filters, stride) in enumerate(blocks, start=1):
        inp = _concat(group, f"dense_{i}_in")
        last_in_group = i == len(blocks) or blocks[i][1] == 2
        d = _dw_bn(inp, stride, f"conv_dw_{i}", f"conv_dw_{i}_bn")
        if stride == 2 or (dense1 and last_in_group):
            width = _v1_width(filters, cfg)
        else:
            width = cfg.growth
        pw_in = layers.Concatenate(name=f"dense_{i}_pw_in")([inp, d]) \
            if dense1 and stride == 1 else d
        y = _conv_bn(pw_in, width, 1, 1, f"conv_pw_{i}", f"conv_pw_{i}_bn")
        if stride == 2:
            group = [y]
        elif dense1 and last_in_group:
            group = [y]
        else:
            group.append(y)
    x = _concat(group, "dense_out")
    if cfg.head_channels:
        x = _conv_bn(x, cfg.head_channels, 1, 1, "conv_head", "conv_head_bn")
    return x


def _v2_body(x, cfg: ModelConfig):
    x = _conv_bn(x, make_divisible(32 * cfg.alpha), 3, cfg.first_stride, "Conv1", "bn_Conv1")
    block = 0
    for t, ch, n, s in V2_STAGES:
        for r in range(n):
            if cfg.blocks and block >= cfg.blocks:
                break
            x = _inverted_residual(x, cfg.expansion if t is None else t,
                                   make_divisible(ch * cfg.alpha), s if r == 0 else 1, block)
            block += 1
    last = cfg.head_channels or 1280  # the paper keeps 1280 for every alpha <= 1
    return _conv_bn(x, last, 1, 1, "Conv_1", "Conv_1_bn")


def _inverted_residual(x, expansion: int, out_ch: int, stride: int, block: int):
    in_ch = x.shape[-1]
    prefix = f"block_{block}_" if block else "expanded_conv_"
    y = x
    if block:
        y = layers.Conv2D(expansion * in_ch, 1, use_bias=False, name=f"{prefix}expand")(y)
        y = _bn(name=f"{prefix}expand_BN")(y)
        y = layers.ReLU(6.0, name=f"{prefix}expand_relu")(y)
    y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                               name=f"{prefix}depthwise")(y)
    y = _bn(name=f"{prefix}depthwise_BN")(y)
    y = layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(y)
    y = layers.Conv2D(out_ch, 1, use_bias=False, name=f"{prefix}project")(y)
    y = _bn(name=f"{prefix}project_BN")(y)
    if stride == 1 and in_ch == out_ch:
        y = layers.Add(name=f"{prefix}add")([x, y])
    return y


def load_imagenet_weights(model: keras.Model, cfg: ModelConfig, input_shape) -> None:
    """Copy weights from a local keras.applications weights file (no-top), matched by name."""
    path = Path(cfg.weights)
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found (weights are never downloaded)")
    app = keras.applications.MobileNet if cfg.arch == "mobilenet_v1" \
        else keras.applications.MobileNetV2
    try:
        ref = app(input_shape=(input_shape[0], input_shape[1], 3), alpha=cfg.alpha,
                  include_top=False, weights=str(path))
    except Exception as e:  # keras raises ValueError/OSError with long messages
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: does not fit {cfg.arch} alpha={cfg.alpha:g} ({first})") \
            from None
    src = {layer.name: layer for layer in ref.layers}
    copied = 0
    for layer in model.layers:
        if layer.name not in src or not layer.weights:
            continue
        theirs = src[layer.name].get_weights()
        mine = layer.get_weights()
        for a, b in zip(mine, theirs, strict=False):
            if a.shape != b.shape:
                hint = " (ImageNet weights need 3 input channels)" if layer.name in (
                    "conv1", "Conv1") and input_shape[2] != 3 else ""
                raise ModelError(f"{path}: layer {layer.name} has shape {b.shape}, model needs "
                                 f"{a.shape}{hint}")
        layer.set_weights(theirs)
        copied += 1
    if copied == 0:
        raise ModelError(f"{path}: no layer names match {cfg.arch}")


def export_copy(model: keras.Model, cfg: ModelConfig, num_classes: int) -> keras.Model:
    """The same network with batch size 1 (what gets converted) and the trained weights."""
    shape = tuple(model.input_shape[1:])
    cfg1 = ModelConfig(**{**cfg.__dict__, "weights": None})
    m1 = build_model(cfg1, shape, num_classes, batch_size=1)
    m1.set_weights(model.get_weights())
    return m1
