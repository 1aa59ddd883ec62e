"""Per-layer cost table (MACs, parameter and activation bytes), TFLM arena and flash size."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.artifact import ARENA_MARGIN_BYTES, ARENA_MARGIN_FRACTION, ModelArtifact
from pipeline.errors import UnsupportedOpError
from pipeline.tflm import tflm_arena, tflm_arena_with_margin


@dataclass
class LayerCost:
    index: int
    op: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    macs: int
    param_bytes: int
    activation_bytes: int  # bytes of this layer's output tensor
    aot_live_per_op: int | None = None  # AOT arena bytes in use at this layer, planned op by op
    aot_live: int | None = None         # the same as compiled (striped ranges run band by band)


@dataclass
class Profile:
    layers: list[LayerCost]
    macs: int
    params: int  # number of weight + bias elements
    param_bytes: int
    peak_activation_bytes: int  # largest input + output pair of any single layer
    tflite_bytes: int
    model_hash: str = ""
    arena_bytes: int | None = None  # measured by the TFLM interpreter
    arena_bytes_with_margin: int | None = None
    aot_arena_bytes: int | None = None  # the AOT engine's static plan
    aot_per_op_arena_bytes: int | None = None  # the same planned op by op, without striping
    aot_stripes: list[str] = field(default_factory=list)  # ranges of ops run band by band
    aot_unsupported: str | None = None  # why the AOT engine cannot compile the model
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Profile:
        layers = [LayerCost(**{**lc, "input_shape": tuple(lc["input_shape"]),
                               "output_shape": tuple(lc["output_shape"])})
                  for lc in d.get("layers", [])]
        return cls(**{**d, "layers": layers})


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


def profile_tflite(model: ModelArtifact | bytes | str | Path, measure_arena: bool = True,
                   aot: bool = True) -> Profile:
    """Profile a model: MACs and bytes per layer, the TFLM arena (measured in a child
    interpreter) and the AOT engine's planned arena, each computed once per model."""
    art = ModelArtifact.load(model)
    layers = _layers(art)
    consts = list(_const_tensors(art))
    params = sum(int(np.prod(t.shape)) for t in consts)
    param_bytes = sum(t.nbytes for t in consts)
    peak = 0
    for op in art.ops:
        live = [art.tensors[i] for i in op.inputs + op.outputs
                if i >= 0 and art.tensors[i].data is None]
        peak = max(peak, sum(t.nbytes for t in live))
    prof = Profile(layers, sum(lc.macs for lc in layers), params, param_bytes, peak, art.size,
                   art.hash)
    if measure_arena:
        prof.arena_bytes = tflm_arena(art)
        prof.arena_bytes_with_margin = tflm_arena_with_margin(art)
    if aot:
        from pipeline.aot import compile_model

        try:
            c = compile_model(art)
        except UnsupportedOpError as e:
            prof.aot_unsupported = str(e)
        else:
            prof.aot_arena_bytes = c.arena_bytes
            prof.aot_per_op_arena_bytes = c.per_op_arena_bytes
            prof.aot_stripes = c.stripe_notes()
            by_op = {c.graph.ops[i].index: live for (i, _), live in
                     zip(c.kernels, c.layer_live_bytes(), strict=True)}
            for lc in layers:
                lc.aot_live_per_op, lc.aot_live = by_op.get(lc.index, (None, None))
    return prof


def _const_tensors(info: ModelArtifact):
    seen = set()
    for op in info.ops:
        for i in op.inputs:
            t = info.tensors[i] if i >= 0 else None
            if t is not None and t.data is not None and i not in seen and t.shape and \
                    op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                seen.add(i)
                yield t


def _layers(info: ModelArtifact) -> list[LayerCost]:
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
    live = any(lc.aot_live is not None for lc in prof.layers)
    rows = ["| # | op | input | output | MACs | param B | act B |"
            + (" AOT live B: per-op plan / striped |" if live else ""),
            "|---:|---|---|---|---:|---:|---:|" + ("---:|" if live else "")]
    for lc in prof.layers:
        cell = ""
        if live:
            cell = "" if lc.aot_live is None else f"{lc.aot_live_per_op:,} / {lc.aot_live:,}"
            cell = f" {cell} |"
        rows.append(f"| {lc.index} | {lc.op} | {'x'.join(map(str, lc.input_shape))} | "
                    f"{'x'.join(map(str, lc.output_shape))} | {lc.macs:,} | {lc.param_bytes:,} | "
                    f"{lc.activation_bytes:,} |{cell}")
    rows.append(f"| | **total** | | | **{prof.macs:,}** | **{prof.param_bytes:,}** | |"
                + (" |" if live else ""))
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
        if prof.aot_stripes:
            lines.append(f"- AOT arena planned op by op: {prof.aot_per_op_arena_bytes:,} bytes; "
                         "striped (run band by band, line buffers instead of whole tensors):")
            lines += [f"  - {s}" for s in prof.aot_stripes]
    elif prof.aot_unsupported:
        lines.append(f"- AOT engine: {prof.aot_unsupported}")
    return "\n".join(lines)
