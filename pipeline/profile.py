"""Per-layer cost table (MACs, parameter and activation bytes), TFLM arena and flash size."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.tflite_info import ModelInfo, read_model

# The host interpreter measures the arena with 64-bit pointers, so its bookkeeping structs are
# larger than on a 32-bit MCU; the tensor data itself is identical. The margin covers alignment
# differences between TFLM versions and kernels that request scratch buffers differently.
ARENA_MARGIN_FRACTION = 0.10
ARENA_MARGIN_BYTES = 1024


@dataclass
class LayerCost:
    index: int
    op: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    macs: int
    param_bytes: int
    activation_bytes: int  # bytes of this layer's output tensor


@dataclass
class Profile:
    layers: list[LayerCost]
    macs: int
    params: int  # number of weight + bias elements
    param_bytes: int
    peak_activation_bytes: int  # largest input + output pair of any single layer
    tflite_bytes: int
    arena_bytes: int | None = None  # measured by the TFLM interpreter
    arena_bytes_with_margin: int | None = None
    aot_arena_bytes: int | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def layer_macs(op: str, in_shape, out_shape, weight_shape) -> int:
    """Multiply-accumulates of one TFLite op from its shapes (0 for ops without weights)."""
    out_elems = int(np.prod(out_shape)) if out_shape else 0
    if op == "CONV_2D":  # filter (O, KH, KW, I)
        _, kh, kw, ci = weight_shape
        return out_elems * kh * kw * ci
    if op == "DEPTHWISE_CONV_2D":  # filter (1, KH, KW, O): one tap per output per kernel cell
        _, kh, kw, _ = weight_shape
        return out_elems * kh * kw
    if op == "FULLY_CONNECTED":  # weights (O, I)
        return out_elems * weight_shape[1]
    return 0


def profile_tflite(model: bytes | str | Path, measure_arena: bool = True) -> Profile:
    """Profile a .tflite model; optionally measure the TFLM arena in a child interpreter."""
    info = read_model(model)
    layers = _layers(info)
    params = sum(int(np.prod(t.shape)) for t in _const_tensors(info))
    param_bytes = sum(t.nbytes for t in _const_tensors(info))
    peak = 0
    for op in info.ops:
        live = [info.tensors[i] for i in op.inputs + op.outputs
                if i >= 0 and info.tensors[i].data is None]
        peak = max(peak, sum(t.nbytes for t in live))
    prof = Profile(layers, sum(lc.macs for lc in layers), params, param_bytes, peak, info.size)
    if measure_arena:
        from pipeline.tflm import run_tflm

        data = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
        arena = run_tflm(data).arena.get("total")
        if arena is not None:
            prof.arena_bytes = arena
            prof.arena_bytes_with_margin = arena_with_margin(arena)
    return prof


def arena_with_margin(measured: int) -> int:
    """Measured arena plus the documented margin, rounded up to 16 bytes."""
    raw = measured * (1 + ARENA_MARGIN_FRACTION) + ARENA_MARGIN_BYTES
    return int(math.ceil(raw / 16) * 16)


def _const_tensors(info: ModelInfo):
    seen = set()
    for op in info.ops:
        for i in op.inputs:
            t = info.tensor(i)
            if t is not None and t.data is not None and i not in seen and t.shape and \
                    op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                seen.add(i)
                yield t


def _layers(info: ModelInfo) -> list[LayerCost]:
    out = []
    for op in info.ops:
        ins = [info.tensors[i] for i in op.inputs if i >= 0]
        act_in = next((t for t in ins if t.data is None), ins[0] if ins else None)
        weight = ins[1] if len(ins) > 1 and ins[1].data is not None else None
        outt = info.tensors[op.outputs[0]] if op.outputs else None
        macs = layer_macs(op.name, act_in.shape if act_in else (),
                          outt.shape if outt else (), weight.shape if weight is not None else ())
        pbytes = sum(t.nbytes for t in ins if t.data is not None and t.shape and op.name in
                     ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"))
        out.append(LayerCost(op.index, op.name, act_in.shape if act_in else (),
                             outt.shape if outt else (), macs, pbytes,
                             outt.nbytes if outt is not None else 0))
    return out


def profile_keras(model) -> dict:
    """MACs and weight parameters (BatchNorm excluded) of a Keras model, counted per layer."""
    from keras import layers as L

    macs = params = 0
    for layer in model.layers:
        if isinstance(layer, L.DepthwiseConv2D):
            oh, ow, oc = layer.output.shape[1:]
            kh, kw = layer.kernel_size
            macs += oh * ow * oc * kh * kw
        elif isinstance(layer, L.Conv2D):
            oh, ow, oc = layer.output.shape[1:]
            kh, kw = layer.kernel_size
            macs += oh * ow * oc * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, L.Dense):
            macs += layer.units * layer.input.shape[-1]
        else:
            continue
        params += sum(int(np.prod(w.shape)) for w in layer.weights)
    return {"macs": int(macs), "params": int(params)}


def format_table(prof: Profile) -> str:
    """A Markdown table of the layers and totals."""
    rows = ["| # | op | input | output | MACs | param B | act B |",
            "|---:|---|---|---|---:|---:|---:|"]
    for lc in prof.layers:
        rows.append(f"| {lc.index} | {lc.op} | {'x'.join(map(str, lc.input_shape))} | "
                    f"{'x'.join(map(str, lc.output_shape))} | {lc.macs:,} | {lc.param_bytes:,} | "
                    f"{lc.activation_bytes:,} |")
    rows.append(f"| | **total** | | | **{prof.macs:,}** | **{prof.param_bytes:,}** | |")
    lines = ["\n".join(rows), "",
             f"- MACs: {prof.macs:,}",
             f"- parameters: {prof.params:,} ({prof.param_bytes:,} bytes of weights and biases)",
             f"- model flash (.tflite): {prof.tflite_bytes:,} bytes",
             f"- peak activations of one layer (input + output): {prof.peak_activation_bytes:,} B"]
    if prof.arena_bytes is not None:
        lines.append(f"- TFLM arena (measured): {prof.arena_bytes:,} bytes; with margin "
                     f"(+{ARENA_MARGIN_FRACTION:.0%} + {ARENA_MARGIN_BYTES} B): "
                     f"{prof.arena_bytes_with_margin:,} bytes")
    if prof.aot_arena_bytes is not None:
        ratio = f" ({prof.aot_arena_bytes / prof.arena_bytes:.0%} of TFLM)" \
            if prof.arena_bytes else ""
        lines.append(f"- AOT arena (static plan): {prof.aot_arena_bytes:,} bytes{ratio}")
    return "\n".join(lines)
