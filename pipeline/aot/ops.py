"""Lower each TFLite op to one tinykernels call, with TFLM's Prepare() math done here.

A lowering validates the op (types, shapes, options) and returns a `Kernel`: C declarations and
one statement. Operands are written as placeholders (@in0@, @out0@) that the emitter replaces by
arena or weight pointers; @op@ is a per-op name prefix. Anything not handled exactly raises
`Unsupported`, which export turns into a one-line UnsupportedOpError.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.aot import quant as q
from pipeline.aot.graph import Graph, Op, Tensor
from pipeline.aot.planner import window_overlap

MAX_DIMS = 6


class Unsupported(Exception):
    """Reason an op cannot be compiled; the message completes 'op #i NAME ...'."""


@dataclass(frozen=True)
class RowMap:
    """How an op's output rows depend on its input rows, for striped execution.

    "window" ops (convolution, depthwise, pooling) read input rows [y * stride - pad, ... + span)
    for output row y; "elementwise" ops read row y of every input of the output's shape. The
    parameter struct's height fields are patched per band: in_h, out_h and pad_h for windows,
    dims[MAX_DIMS - 3] (the H of NHWC) for tk_binary_params.
    """

    kind: str                   # "window" or "elementwise"
    params: str                 # C type of the op's parameter struct
    stride: int = 1
    pad: int = 0
    span: int = 1               # (k_h - 1) * dil_h + 1


@dataclass
class Kernel:
    """What the emitter needs to generate one op."""

    family: str | None          # tinykernels source stem (tk_conv) or None for no kernel
    inputs: list[int]           # tensors read, in placeholder order (@in0@, @in1@, ...)
    outputs: list[int]
    decls: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)
    alias: bool = False         # output is the input's memory (RESHAPE and friends)
    inplace: bool = False       # output may overwrite input 0 (element i read before written)
    scratch: int = 0            # bytes of arena work space for this op only (@scratch@)
    scratch_tid: int = -1       # pseudo tensor id the planner gives that space (set by export)
    overlap: int | None = None  # output may overlap input 0 when in_off - out_off >= overlap
    const_bytes: int = 0        # constants the decls hold (weights prepared at export time)
    # smaller work spaces the op can run with (bytes, decls), largest first
    scratch_alts: list[tuple[int, list[str]]] = field(default_factory=list)
    rows: RowMap | None = None  # set when the op can run on horizontal bands (pipeline.aot.stripes)


def _c_array(ctype: str, name: str, values) -> str:
    vals = [int(v) for v in np.asarray(values).ravel()]
    body = ", ".join(str(v) for v in vals) if vals else "0"
    return f"static const {ctype} {name}[{max(len(vals), 1)}] = {{{body}}};"


def _act(op: Op) -> int:
    act = int(op.options.get("fusedActivationFunction", 0) or 0)
    if act not in (q.ACT_NONE, q.ACT_RELU, q.ACT_RELU6, q.ACT_RELU_N1_TO_1):
        raise Unsupported(f"with fused activation {act}")
    return act


def _t(g: Graph, op: Op, k: int) -> Tensor:
    if k >= len(op.inputs) or op.inputs[k] < 0:
        raise Unsupported(f"without input {k}")
    return g.tensors[op.inputs[k]]


def _out(g: Graph, op: Op, k: int = 0) -> Tensor:
    return g.tensors[op.outputs[k]]


def _need_int8(*ts: Tensor) -> None:
    for t in ts:
        if t.dtype != "int8":
            raise Unsupported(f"with {t.dtype} tensor '{t.name}'")
        if len(t.scales) == 0:
            raise Unsupported(f"with unquantized int8 tensor '{t.name}'")


def _need_per_tensor(*ts: Tensor) -> None:
    for t in ts:
        if t.per_channel:
            raise Unsupported(f"with per-channel quantized activation '{t.name}'")


def _need_rank(t: Tensor, rank: int) -> None:
    if len(t.shape) != rank:
        raise Unsupported(f"with rank-{len(t.shape)} tensor '{t.name}' (needs rank {rank})")


def _const(t: Tensor, what: str) -> np.ndarray:
    if t.data is None:
        raise Unsupported(f"with a non-constant {what}")
    return t.data


def _out_size(padding: int, size: int, k: int, stride: int, dil: int) -> int:
    eff = (k - 1) * dil + 1
    if padding == 0:  # SAME
        return (size + stride - 1) // stride
    return (size + stride - eff) // stride


def _pad_before(stride: int, dil: int, size: int, k: int, out: int) -> int:
    eff = (k - 1) * dil + 1
    total = max(0, (out - 1) * stride + eff - size)
    return total // 2


def _spatial(op: Op, inp: Tensor, out: Tensor, k_h: int, k_w: int, dil: bool = True) -> dict:
    o = op.options
    sh, sw = int(o.get("strideH", 1)), int(o.get("strideW", 1))
    dh = int(o.get("dilationHFactor", 1) or 1) if dil else 1
    dw = int(o.get("dilationWFactor", 1) or 1) if dil else 1
    padding = int(o.get("padding", 0))
    if sh < 1 or sw < 1 or dh < 1 or dw < 1:
        raise Unsupported("with a zero stride or dilation")
    _, ih, iw, _ = inp.shape
    oh, ow = _out_size(padding, ih, k_h, sh, dh), _out_size(padding, iw, k_w, sw, dw)
    if (oh, ow) != tuple(out.shape[1:3]):
        raise Unsupported(f"whose output shape {out.shape} disagrees with its padding")
    return dict(stride_h=sh, stride_w=sw, dil_h=dh, dil_w=dw,
                pad_h=_pad_before(sh, dh, ih, k_h, oh), pad_w=_pad_before(sw, dw, iw, k_w, ow))


def _channel_multipliers(inp: Tensor, filt: Tensor, out: Tensor, n: int) -> tuple[list, list]:
    """PopulateConvolutionQuantizationParams: one (multiplier, shift) per output channel."""
    if len(filt.scales) not in (1, n):
        raise Unsupported(f"with {len(filt.scales)} filter scales for {n} channels")
    mults, shifts = [], []
    for i in range(n):
        fs = float(filt.scales[i if filt.per_channel else 0])
        m, s = q.quantize_multiplier(float(inp.scale) * fs / float(out.scale))
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def _filter_checks(filt: Tensor, bias: Tensor | None, n: int) -> None:
    if filt.dtype != "int8":
        raise Unsupported(f"with {filt.dtype} weights")
    _const(filt, "filter")
    if np.any(filt.zero_points != 0):
        raise Unsupported("with asymmetric (non-zero zero point) weights")
    if bias is not None:
        if bias.dtype != "int32":
            raise Unsupported(f"with {bias.dtype} bias")
        if _const(bias, "bias").size != n:
            raise Unsupported("with a bias of the wrong length")


def _conv_struct(name: str, dims: dict) -> str:
    fields = ", ".join(f".{k} = {v}" for k, v in dims.items())
    return f"static const tk_conv_params {name} = {{{fields}}};"


def lower_conv(g: Graph, op: Op, depthwise: bool = False) -> Kernel:
    inp, filt, out = _t(g, op, 0), _t(g, op, 1), _out(g, op)
    bias = g.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    _need_int8(inp, out)
    _need_per_tensor(inp, out)
    for t in (inp, filt, out):
        _need_rank(t, 4)
    n_b, ih, iw, ic = inp.shape
    _, oh, ow, oc = out.shape
    _filter_checks(filt, bias, oc)
    if depthwise:
        _, kh, kw, fc = filt.shape
        if fc != oc or oc % ic:
            raise Unsupported(f"with filter {filt.shape} for input {inp.shape}")
        dm = oc // ic
        opt_dm = int(op.options.get("depthMultiplier", 0) or 0)
        if opt_dm not in (0, dm):
            raise Unsupported(f"with depth_multiplier {opt_dm} != {oc}/{ic}")
        filter_in_c = 1
        # Rows of output channels: [oc][kh * kw].
        rows = np.asarray(filt.data).reshape(kh * kw, oc).T
    else:
        fo, kh, kw, filter_in_c = filt.shape
        if fo != oc or ic % filter_in_c or oc % (ic // filter_in_c):
            raise Unsupported(f"with filter {filt.shape} for input {inp.shape}")
        rows = np.asarray(filt.data).reshape(oc, -1)
    act_min, act_max = q.activation_range(_act(op), out.scale, out.zero_point)
    mults, shifts = _channel_multipliers(inp, filt, out, oc)
    b_vals = (np.asarray(bias.data, dtype=np.int64) if bias is not None
              else np.zeros(oc, dtype=np.int64))
    own_bias = _constant_channels(rows, b_vals, mults, shifts, out.zero_point, act_min, act_max)
    # A depthwise layer over one input channel is a convolution with the filter transposed.
    as_conv = depthwise and ic == 1
    sp = _spatial(op, inp, out, kh, kw)
    dw = depthwise and not as_conv
    scratch, scratch_n, mode = _conv_scratch(dw, kh * kw, ic, filter_in_c, oc, oh * ow,
                                             dm if depthwise else 1)
    dw_alt = None
    if dw and scratch and (act_min, act_max) == (-128, 127):
        row_words = _dw_rows_words(kh, kw, oc, ow, sp)
        if row_words:
            # The row kernel; its work space also fits the per-pixel kernel (the fallback).
            dw_alt = (scratch, scratch_n)
            scratch_n, mode = max(row_words, scratch_n), DW_ROWS
            scratch = 4 * scratch_n
    mve = _mve_scratch(dw, kh, kw, ic, filter_in_c, oc, ow, dm if dw else 1, sp)
    dims = dict(batches=n_b, in_h=ih, in_w=iw, in_c=ic, out_h=oh, out_w=ow, out_c=oc, k_h=kh,
                k_w=kw, filter_in_c=filter_in_c, **sp, in_offset=-inp.zero_point,
                out_offset=out.zero_point, act_min=act_min, act_max=act_max,
                mult="@op@mult", shift="@op@shift",
                scratch="@scratch@" if scratch or mve else "NULL", scratch_px=scratch_n,
                small_acc=int(_small_acc(rows, b_vals)), scratch_mode=mode)
    decls = [_c_array("int32_t", "@op@mult", mults), _c_array("int32_t", "@op@shift", shifts)]
    alts = []
    if scratch and not dw:
        alts = [(n, {**dims, "scratch_px": px, "scratch_mode": m})
                for n, px, m in _conv_plans(kh * kw * ic, oc, oh * ow)[1:]]
    elif dw_alt:
        alts = [(dw_alt[0], {**dims, "scratch_px": dw_alt[1], "scratch_mode": 0})]
    scratch, alts = _with_mve(scratch, alts, mve)
    decls.append(_conv_struct("@op@p", dims))
    ins, const_bytes = [op.inputs[0]], 0
    if as_conv:
        decls.insert(0, _c_array("int8_t", "@op@filter", rows))
        w, const_bytes = "@op@filter", rows.size
    else:
        ins.append(op.inputs[1])
        w = "@in1@"
    if own_bias:
        decls.insert(0, _c_array("int32_t", "@op@bias", b_vals))
        b, const_bytes = "@op@bias", const_bytes + 4 * oc
    elif bias is not None:
        ins.append(op.inputs[2])
        b = f"@in{len(ins) - 1}@"
    else:
        b = "NULL"
    if depthwise and not as_conv:
        call = f"tk_depthwise_conv2d_s8(&@op@p, {dm}, @in0@, {w}, {b}, @out0@);"
    else:
        call = f"tk_conv2d_s8(&@op@p, @in0@, {w}, {b}, @out0@);"
    return Kernel("tk_dwconv" if depthwise and not as_conv else "tk_conv", ins, [op.outputs[0]],
                  decls, [call], scratch=scratch, const_bytes=const_bytes,
                  scratch_alts=[(n, decls[:-1] + [_conv_struct("@op@p", d)]) for n, d in alts],
                  overlap=_window_overlap(inp, out, (kh, kw), sp),
                  rows=_window_rows("tk_conv_params", inp, kh, sp))


def _with_mve(scratch: int, alts: list[tuple[int, dict]], mve: int) -> tuple[int, list]:
    """The DSP work space and its smaller choices (largest first) raised to `mve`, the MVE
    kernel's need: one buffer serves whichever of the two is compiled in. A choice that is not
    smaller than the one before it is dropped (that one is as large and faster on the DSP)."""
    scratch = max(scratch, mve)
    kept, last = [], scratch
    for n, d in alts:
        if max(n, mve) < last:
            last = max(n, mve)
            kept.append((last, d))
    return scratch, kept


def _constant_channels(rows: np.ndarray, bias: np.ndarray, mults: list, shifts: list,
                       out_zp: int, act_min: int, act_max: int) -> bool:
    """Give channels whose weights are all zero an equivalent in-range requantization.

    Such a channel outputs the constant clamp(mbqm(bias) + out_zp) whatever the input; trained
    models leave them with biases near 2^30 and scales near 1e-9, outside the DSP kernels' fast
    requantization. Multiplier 2^30 with shift -1 maps 4 * d exactly to d, so bias 4 * (v -
    out_zp) yields the same v. Edits mults, shifts and bias in place; True if any changed.
    """
    changed = False
    for c in np.flatnonzero(~rows.any(axis=1)):
        v = min(max(mbqm(int(bias[c]), mults[c], shifts[c]) + out_zp, act_min), act_max)
        if (mults[c], shifts[c], int(bias[c])) != (1 << 30, -1, 4 * (v - out_zp)):
            mults[c], shifts[c], bias[c] = 1 << 30, -1, 4 * (v - out_zp)
            changed = True
    return changed


def _window_overlap(inp: Tensor, out: Tensor, k: tuple[int, int], sp: dict) -> int | None:
    """How far the output of a windowed op must start before its input to share memory."""
    if inp.shape[0] != 1 or inp.is_const:
        return None
    return window_overlap(tuple(inp.shape[1:3]), tuple(out.shape[1:3]), inp.shape[3],
                          out.shape[3], k, (sp["stride_h"], sp["stride_w"]),
                          (sp.get("dil_h", 1), sp.get("dil_w", 1)), (sp["pad_h"], sp["pad_w"]))


def _window_rows(params: str, inp: Tensor, kh: int, sp: dict) -> RowMap | None:
    if inp.shape[0] != 1 or inp.is_const:
        return None
    return RowMap("window", params, sp["stride_h"], sp["pad_h"],
                  (kh - 1) * sp.get("dil_h", 1) + 1)


DW_MAX_TAPS = 16


def _small_acc(rows: np.ndarray, bias: np.ndarray) -> bool:
    """Whether every accumulator stays below 2^30 in magnitude: |bias| + 255 * sum|w| (inputs
    plus offset lie in [-255, 255]), which lets the DSP kernels requantize with SMMULR.
    `rows` holds the weights of one output channel per row."""
    per_oc = np.abs(rows.astype(np.int64)).sum(axis=1)
    return bool(np.all(np.abs(bias) + 255 * per_oc < (1 << 30)))


# Largest work space the DSP convolution takes for its int16 weights and patches.
CONV_SCRATCH_CAP = 12288


def _conv_scratch(depthwise: bool, taps: int, ic: int, filter_in_c: int, oc: int, npx: int,
                  dm: int) -> tuple[int, int, int]:
    """Work space of the DSP kernels (bytes) and its size and mode fields."""
    if depthwise:
        if dm != 1 or taps > DW_MAX_TAPS:
            return 0, 0, 0
        # per channel bias/mult/rounding/shift, int16 weights of every tap, zero-point row of
        # three pixels
        words = 4 * oc + (taps * oc + 1) // 2 + (3 * oc + 3) // 4
        return 4 * words, words, 0
    if filter_in_c != ic:
        return 0, 0, 0
    return _conv_plans(taps * ic, oc, npx)[0]


CONV_B4, CONV_C2_PAIR, CONV_C2_ALL = 0, 1, 2  # scratch_mode of the DSP convolution
DW_ROWS = 1  # scratch_mode of the DSP depthwise row kernel (0: per pixel)


def _dw_rows_words(kh: int, kw: int, oc: int, ow: int, sp: dict) -> int:
    """Work space words of the DSP depthwise row kernel (tk_dwconv_dsp.c, dw_rows), 0 if it
    does not take the layer: 11 words of table per channel, three widened input rows and a zero
    row of pair words (ceil(ow / 2) + 1 pair positions), 2 * oc bytes."""
    if ((kh, kw) != (3, 3) or oc % 4 or sp["dil_h"] != 1 or sp["dil_w"] != 1
            or sp["stride_w"] != 1):
        return 0
    return 11 * oc + 4 * ((ow + 1) // 2 + 1) * oc + oc // 2


def _conv_options(k: int, oc: int, npx: int) -> list[tuple[int, int, int, int]]:
    """Every way the DSP convolution can use a work space: (estimated instructions, bytes,
    scratch_px, scratch_mode) (tk_conv_dsp.c).

    - CONV_B4: per channel 28 bytes, four int16 patches (scratch_px 4) and one int8 patch; the
      kernel reads int8 weights.
    - CONV_C2_ALL / CONV_C2_PAIR: the int16 weight buffers of every channel pair (40 + 16 *
      groups bytes each, groups = k / 4 rounded up) or of one pair, widened again for each
      band; the int16 patches of a band of scratch_px pixels (even, 16 * groups bytes per
      pixel pair); one int8 patch and 2 spare bytes per weight buffer.
    """
    kp = (k + 3) // 4 * 4
    groups = kp // 4
    pair = 40 + 16 * groups
    pairs = (oc + 1) // 2
    # Estimated instructions, fitted to layers measured on QEMU: per asm block of 2 x 2 outputs
    # (longer rows run the unrolled body in chunks of 32 groups), patches per pixel, widening
    # one pair's weights (with its call), calls per band; conv_b4 per channel and four pixels.
    chunks = -(-groups // 32)
    block = 10 * groups + 31 + (5 * chunks if chunks > 1 else 0)
    blocks = (npx + 1) // 2 * pairs * block + npx * (4 * groups + 30)
    options = [(-(-npx // 4) * oc * (13 * groups + 44) + npx * (6 * groups + 40),
                28 * oc + 9 * kp, 4, CONV_B4)]
    for band in range(2, npx + (npx & 1) + 1, 2):
        bands = -(-npx // band)
        patches = band // 2 * 16 * groups + kp
        options.append((blocks + pairs * (13 * groups + 120) + bands * (50 + 15 * pairs),
                        pairs * pair + patches + (2 * pairs + 3) // 4 * 4, band, CONV_C2_ALL))
        options.append((blocks + bands * pairs * (13 * groups + 170), pair + patches + 4, band,
                        CONV_C2_PAIR))
    return options


def _conv_plans(k: int, oc: int, npx: int) -> list[tuple[int, int, int]]:
    """Work space choices of the DSP convolution, (bytes, scratch_px, scratch_mode), largest
    first: the fewest estimated instructions within CONV_SCRATCH_CAP (less memory when within
    2 %); then, for when the arena has no room for it, the smaller ones that are faster than
    any still smaller one and not slower than CONV_B4 (so the smallest choice takes no more
    memory than CONV_B4 and is not slower)."""
    options = _conv_options(k, oc, npx)
    fits = [o for o in options if o[1] <= CONV_SCRATCH_CAP] or options
    best = min(o[0] for o in fits)
    first = min((o for o in fits if o[0] <= best * 1.02), key=lambda o: (o[1], o[0]))
    plans, fastest = [], options[0][0] + 1
    for o in sorted(fits, key=lambda o: (o[1], o[0])):
        if o[1] < first[1] and o[0] < fastest:
            plans.append(o[1:])
            fastest = o[0]
    return [first[1:]] + plans[::-1]


def _mve_conv_bytes(k: int, oc: int) -> int:
    """Work space of the MVE convolution with filter rows of k bytes (tk_conv_mve.c)."""
    chunks = (k + 15) // 16
    pairs = min(4, max(1, 1024 // (32 * chunks)))  # pixel pairs per assembly call
    # alignment, 96 bytes per block of four output channels, interleaved patches of the pairs,
    # one linear patch and slack
    return 16 + 96 * ((oc + 3) // 4) + 32 * chunks * pairs + 16 * chunks + 16


def _mve_scratch(depthwise: bool, kh: int, kw: int, ic: int, filter_in_c: int, oc: int,
                 ow: int, dm: int, sp: dict) -> int:
    """Work space of the Helium (MVE) kernels in bytes (tk_conv_mve.c, tk_dwconv_mve.c), 0 if
    they do not run."""
    if depthwise:
        span_w = (kw - 1) * sp["dil_w"] + 1
        nvec = (span_w * kh + 15) // 16
        plane = ((ow - 1) * sp["stride_w"] + span_w) * kh
        if dm != 1 or nvec > 2 or kh > 16 or math.gcd(sp["dil_h"], kh) != 1 or 7 * plane > 65535:
            return 0
        # alignment, per channel weights and four words, k_h lane permutations, the rows of
        # every channel, slack for the loads of the last windows
        slack = 4 * sp["stride_w"] * kh + 32
        return 16 + oc * (16 * nvec + 16) + 16 * nvec * kh + oc * plane + slack
    if filter_in_c != ic:
        return 0
    return _mve_conv_bytes(kh * kw * ic, oc)


def lower_fc(g: Graph, op: Op) -> Kernel:
    inp, filt, out = _t(g, op, 0), _t(g, op, 1), _out(g, op)
    bias = g.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    _need_int8(inp, out)
    _need_per_tensor(inp, out)
    if int(op.options.get("weightsFormat", 0) or 0) != 0:
        raise Unsupported("with shuffled weights")
    if op.options.get("quantSpec") is not None:
        raise Unsupported("with blockwise-quantized weights")
    _need_rank(filt, 2)
    n_out, depth = filt.shape
    _filter_checks(filt, bias, n_out)
    out_depth = out.shape[-1] if out.shape else 1
    if out_depth != n_out or inp.size % depth or out.size != inp.size // depth * n_out:
        raise Unsupported(f"with input {inp.shape}, filter {filt.shape}, output {out.shape}")
    act_min, act_max = q.activation_range(_act(op), out.scale, out.zero_point)
    if filt.per_channel:
        mults, shifts = _channel_multipliers(inp, filt, out, n_out)
    else:
        m, s = q.quantize_multiplier(float(inp.scale) * float(filt.scale) / float(out.scale))
        mults, shifts = [m], [s]
    fields = dict(batches=out.size // n_out, accum_depth=depth, out_depth=n_out,
                  in_offset=-inp.zero_point, filter_offset=-int(filt.zero_points[0]),
                  out_offset=out.zero_point, act_min=act_min, act_max=act_max,
                  per_channel=int(filt.per_channel), mult="@op@mult", shift="@op@shift")
    body = ", ".join(f".{k} = {v}" for k, v in fields.items())
    decls = [_c_array("int32_t", "@op@mult", mults), _c_array("int32_t", "@op@shift", shifts),
             f"static const tk_fc_params @op@p = {{{body}}};"]
    ins = [op.inputs[0], op.inputs[1]] + ([op.inputs[2]] if bias is not None else [])
    b = "@in2@" if bias is not None else "NULL"
    return Kernel("tk_fc", ins, [op.outputs[0]], decls,
                  [f"tk_fully_connected_s8(&@op@p, @in0@, @in1@, {b}, @out0@);"])


def _broadcast(a: tuple, b: tuple, o: tuple) -> tuple[list, list, list]:
    if len(o) > MAX_DIMS or len(a) > len(o) or len(b) > len(o):
        raise Unsupported(f"with shapes {a}, {b} -> {o}")
    dims = [1] * (MAX_DIMS - len(o)) + list(o)

    def strides(s: tuple) -> list:
        s6 = [1] * (MAX_DIMS - len(s)) + list(s)
        st, acc = [0] * MAX_DIMS, 1
        for d in range(MAX_DIMS - 1, -1, -1):
            if s6[d] == dims[d]:
                st[d] = acc if s6[d] > 1 else 0
            elif s6[d] == 1:
                st[d] = 0
            else:
                raise Unsupported(f"with shapes {a}, {b} that do not broadcast to {o}")
            acc *= s6[d]
        return st

    return dims, strides(a), strides(b)


def _binary_decl(fields: dict) -> str:
    def fmt(v):
        return "{" + ", ".join(str(x) for x in v) + "}" if isinstance(v, list) else str(v)

    body = ", ".join(f".{k} = {fmt(v)}" for k, v in fields.items())
    return f"static const tk_binary_params @op@p = {{{body}}};"


def lower_binary(g: Graph, op: Op) -> Kernel:
    a, b, out = _t(g, op, 0), _t(g, op, 1), _out(g, op)
    _need_int8(a, b, out)
    _need_per_tensor(a, b, out)
    dims, s1, s2 = _broadcast(a.shape, b.shape, out.shape)
    act_min, act_max = q.activation_range(_act(op), out.scale, out.zero_point)
    f = dict(dims=dims, stride1=s1, stride2=s2, in1_offset=-a.zero_point,
             in2_offset=-b.zero_point, out_offset=out.zero_point, act_min=act_min,
             act_max=act_max)
    if op.name == "ADD":
        # CalculateOpDataAdd: both inputs rescaled to twice the larger scale, 20 bits headroom.
        left_shift = 20
        twice_max = 2 * float(max(a.scales[0], b.scales[0]))
        m1, s1_ = q.quantize_multiplier(float(a.scale) / twice_max)
        m2, s2_ = q.quantize_multiplier(float(b.scale) / twice_max)
        mo, so = q.quantize_multiplier(twice_max / ((1 << left_shift) * float(out.scale)))
        if max(s1_, s2_, so) > 0:
            raise Unsupported("with an output scale too small for TFLM's int8 ADD")
        f.update(left_shift=left_shift, in1_mult=m1, in2_mult=m2, out_mult=mo, in1_shift=s1_,
                 in2_shift=s2_, out_shift=so, lut1="@op@lut1", lut2="@op@lut2")
        call = "tk_add_s8(&@op@p, @in0@, @in1@, @out0@);"
        # Doubled rescaled inputs for every int8 value, indexed by the value's byte.
        vals = [(i ^ 0x80) - 0x80 for i in range(256)]
        luts = [_c_array("int32_t", f"@op@lut{k + 1}",
                         [2 * mbqm((v - t.zero_point) << left_shift, m, s) for v in vals])
                for k, (t, m, s) in enumerate(((a, m1, s1_), (b, m2, s2_)))]
    else:
        m, s = q.quantize_multiplier(float(a.scale) * float(b.scale) / float(out.scale))
        f.update(out_mult=m, out_shift=s)
        call = "tk_mul_s8(&@op@p, @in0@, @in1@, @out0@);"
    inplace = tuple(a.shape) == tuple(out.shape)
    decls = (luts if op.name == "ADD" else []) + [_binary_decl(f)]
    same = tuple(a.shape) == tuple(b.shape) == tuple(out.shape)
    rows = (RowMap("elementwise", "tk_binary_params") if same and len(out.shape) == 4
            and out.shape[0] == 1 and not a.is_const and not b.is_const else None)
    return Kernel("tk_elementwise", [op.inputs[0], op.inputs[1]], [op.outputs[0]], decls,
                  [call], inplace=inplace, rows=rows)


def mbqm(x: int, mult: int, shift: int) -> int:
    """TFLM's MultiplyByQuantizedMultiplier on int32 (as tk_mbqm): x * mult * 2^shift / 2^31."""
    x = q.wrap_int32(x << max(shift, 0))
    if x == mult == -(1 << 31):
        hi = (1 << 31) - 1
    else:
        ab = x * mult
        num = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
        hi = abs(num) >> 31 if num >= 0 else -(abs(num) >> 31)
    right = max(-shift, 0)
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (1 if hi < 0 else 0)
    return (hi >> right) + (1 if (hi & mask) > threshold else 0)


def lower_pool(g: Graph, op: Op) -> Kernel:
    inp, out = _t(g, op, 0), _out(g, op)
    _need_int8(inp, out)
    _need_per_tensor(inp, out)
    _need_rank(inp, 4)
    _need_rank(out, 4)
    if abs(float(inp.scale) - float(out.scale)) > 1e-6 or inp.zero_point != out.zero_point:
        raise Unsupported("with different input and output quantization")
    kh, kw = int(op.options.get("filterHeight", 1)), int(op.options.get("filterWidth", 1))
    sp = _spatial(op, inp, out, kh, kw, dil=False)
    act_min, act_max = q.activation_range(_act(op), out.scale, out.zero_point)
    n_b, ih, iw, c = inp.shape
    fields = dict(batches=n_b, in_h=ih, in_w=iw, channels=c, out_h=out.shape[1],
                  out_w=out.shape[2], k_h=kh, k_w=kw, stride_h=sp["stride_h"],
                  stride_w=sp["stride_w"], pad_h=sp["pad_h"], pad_w=sp["pad_w"],
                  act_min=act_min, act_max=act_max)
    body = ", ".join(f".{k} = {v}" for k, v in fields.items())
    fn = "tk_avg_pool_s8" if op.name == "AVERAGE_POOL_2D" else "tk_max_pool_s8"
    return Kernel("tk_pool", [op.inputs[0]], [op.outputs[0]],
                  [f"static const tk_pool_params @op@p = {{{body}}};"],
                  [f"{fn}(&@op@p, @in0@, @out0@);"],
                  overlap=_window_overlap(inp, out, (kh, kw), sp),
                  rows=_window_rows("tk_pool_params", inp, kh, sp))


def lower_mean(g: Graph, op: Op) -> Kernel:
    inp, axis_t, out = _t(g, op, 0), _t(g, op, 1), _out(g, op)
    _need_int8(inp, out)
    _need_per_tensor(inp, out)
    rank = len(inp.shape)
    if rank > MAX_DIMS:
        raise Unsupported(f"with rank {rank}")
    axes = []
    for a in np.asarray(_const(axis_t, "axis")).ravel().tolist():
        a = int(a) + rank if int(a) < 0 else int(a)
        if not 0 <= a < rank:
            raise Unsupported(f"with axis {a} out of range")
        if a not in axes:
            axes.append(a)
    kept = [d for d in range(rank) if d not in axes]
    count = int(np.prod([inp.shape[d] for d in axes], dtype=np.int64)) if axes else 1
    if count == 0 or out.size != inp.size // count:
        raise Unsupported(f"with input {inp.shape} and output {out.shape}")
    strides = [int(np.prod(inp.shape[d + 1:], dtype=np.int64)) for d in range(rank)]
    order = kept + sorted(axes)
    mult, shift = q.quantize_multiplier(float(inp.scale) / float(out.scale))
    # QuantizedMeanOrSum folds 1/count into the multiplier.
    s = min(count.bit_length() - 1, 32, 31 + shift)
    mult = (mult << s) // count
    shift -= s
    pad = MAX_DIMS - rank
    fields = dict(n_outer=len(kept), dims=[inp.shape[d] for d in order] + [1] * pad,
                  strides=[strides[d] for d in order] + [0] * pad, n_dims=rank, count=count,
                  in_zp=inp.zero_point, out_zp=out.zero_point, mult=mult, shift=shift)
    body = ", ".join(f".{k} = " + ("{" + ", ".join(map(str, v)) + "}" if isinstance(v, list)
                                    else str(v)) for k, v in fields.items())
    return Kernel("tk_mean", [op.inputs[0]], [op.outputs[0]],
                  [f"static const tk_mean_params @op@p = {{{body}}};"],
                  ["tk_mean_s8(&@op@p, @in0@, @out0@);"])


def lower_pad(g: Graph, op: Op) -> Kernel:
    inp, pads_t, out = _t(g, op, 0), _t(g, op, 1), _out(g, op)
    _need_int8(inp, out)
    rank = len(inp.shape)
    if rank > MAX_DIMS:
        raise Unsupported(f"with rank {rank}")
    pads = np.asarray(_const(pads_t, "paddings"), dtype=np.int64).reshape(-1, 2)
    if pads.shape[0] != rank or np.any(pads < 0):
        raise Unsupported(f"with paddings {pads.tolist()}")
    if [int(inp.shape[d] + pads[d].sum()) for d in range(rank)] != list(out.shape):
        raise Unsupported(f"whose output shape {out.shape} disagrees with its paddings")
    value = out.zero_point
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        cv = g.tensors[op.inputs[2]]
        _need_int8(cv)
        value = int(np.asarray(_const(cv, "pad value")).ravel()[0])
    lead = MAX_DIMS - rank
    fields = dict(in_dims=[1] * lead + list(inp.shape),
                  before=[0] * lead + [int(p) for p in pads[:, 0]],
                  after=[0] * lead + [int(p) for p in pads[:, 1]], pad_value=value)
    body = ", ".join(f".{k} = " + ("{" + ", ".join(map(str, v)) + "}" if isinstance(v, list)
                                    else str(v)) for k, v in fields.items())
    return Kernel("tk_shape", [op.inputs[0]], [op.outputs[0]],
                  [f"static const tk_pad_params @op@p = {{{body}}};"],
                  ["tk_pad_s8(&@op@p, @in0@, @out0@);"])


def lower_reshape(g: Graph, op: Op) -> Kernel:
    inp, out = _t(g, op, 0), _out(g, op)
    if inp.dtype != out.dtype or inp.size != out.size:
        raise Unsupported(f"from {inp.dtype}{list(inp.shape)} to {out.dtype}{list(out.shape)}")
    return Kernel(None, [op.inputs[0]], [op.outputs[0]], alias=True)


def lower_softmax(g: Graph, op: Op) -> Kernel:
    inp, out = _t(g, op, 0), _out(g, op)
    _need_int8(inp, out)
    _need_per_tensor(inp, out)
    if out.zero_point != -128 or out.scales[0] != np.float32(1.0 / 256):
        raise Unsupported("with an int8 output not quantized as scale 1/256, zero point -128")
    beta = float(np.float32(op.options.get("beta", 1.0)))
    # PreprocessSoftmaxScaling with 5 integer bits for the scaled difference.
    real = min(beta * float(inp.scale) * (1 << (31 - 5)), (1 << 31) - 1.0)
    if real <= 1.0:
        raise Unsupported("with beta * input scale too small for TFLM's int8 softmax")
    mult, shift = q.quantize_multiplier(real)
    diff_min = -q.input_radius(5, shift)
    depth = inp.shape[-1] if inp.shape else 1
    rows = inp.size // depth
    return Kernel("tk_softmax", [op.inputs[0]], [op.outputs[0]], [],
                  [f"tk_softmax_s8(@in0@, @out0@, {rows}, {depth}, {mult}, {shift}, "
                   f"{diff_min});"], inplace=True)


def lower_logistic(g: Graph, op: Op) -> Kernel:
    inp, out = _t(g, op, 0), _out(g, op)
    _need_int8(inp, out)
    _need_per_tensor(inp, out)
    if out.zero_point != -128:
        raise Unsupported("with an int8 output zero point other than -128")
    # LogisticPrepare: input scaled into Q4.27, multiplier rounded without the 2^31 fix-up.
    frac, shift = math.frexp(float(inp.scale) * float(1 << (31 - 4)))
    mult = q.wrap_int32(q.round_away(frac * (1 << 31)))
    radius = q.input_radius(4, shift, 31)
    return Kernel("tk_logistic", [op.inputs[0]], [op.outputs[0]], [],
                  [f"tk_logistic_s8(@in0@, @out0@, {inp.size}, {inp.zero_point}, {radius}, "
                   f"{mult}, {shift});"], inplace=True)


def lower_hard_swish(g: Graph, op: Op) -> Kernel:
    inp, out = _t(g, op, 0), _out(g, op)
    _need_int8(inp, out)
    _need_per_tensor(inp, out)
    hires = np.float32(1.0 / 128.0) * np.float32(inp.scale)
    reluish_scale = np.float32(3.0) / np.float32(32768.0)
    om, oe = q.quantize_multiplier(float(np.float32(hires / np.float32(out.scale))))
    rm, re_ = q.quantize_multiplier(float(np.float32(hires / reluish_scale)))
    if oe > 0:
        raise Unsupported("with an output scale too small for TFLM's int8 HARD_SWISH")
    fields = dict(in_zp=inp.zero_point, out_zp=out.zero_point, out_mult=q.downscale_to_int16(om),
                  reluish_mult=q.downscale_to_int16(rm), out_exp=oe, reluish_exp=re_)
    body = ", ".join(f".{k} = {v}" for k, v in fields.items())
    return Kernel("tk_hardswish", [op.inputs[0]], [op.outputs[0]],
                  [f"static const tk_hardswish_params @op@p = {{{body}}};"],
                  [f"tk_hard_swish_s8(&@op@p, @in0@, @out0@, {inp.size});"], inplace=True)


def c_float(x: float) -> str:
    """Exact C99 literal for a float32 value."""
    return f"{float(np.float32(x)).hex()}f"


def c_double(x: float) -> str:
    return float(x).hex()


# QUANTIZE between integer types: (input, output) dtype -> kernel. uint8 and int16 appear only
# at a model's ends (inputs and outputs around an int8 graph), as TFLM supports them.
_REQUANTIZE = {("int8", "int8"): "tk_requantize_s8", ("uint8", "int8"): "tk_requantize_u8_s8",
               ("int8", "uint8"): "tk_requantize_s8_u8", ("int16", "int8"): "tk_requantize_s16_s8",
               ("int8", "int16"): "tk_requantize_s8_s16"}


def _need_quantized(*ts: Tensor) -> None:
    for t in ts:
        if len(t.scales) == 0:
            raise Unsupported(f"with unquantized {t.dtype} tensor '{t.name}'")


def lower_quantize(g: Graph, op: Op) -> Kernel:
    inp, out = _t(g, op, 0), _out(g, op)
    if inp.dtype == "float32":
        _need_int8(out)
        _need_per_tensor(out)
        return Kernel("tk_quantize", [op.inputs[0]], [op.outputs[0]], [],
                      [f"tk_quantize_f32_s8(@in0@, @out0@, {inp.size}, {c_float(out.scale)}, "
                       f"{out.zero_point});"])
    fn = _REQUANTIZE.get((inp.dtype, out.dtype))
    if fn is None:
        raise Unsupported(f"from {inp.dtype} to {out.dtype}")
    _need_quantized(inp, out)
    _need_per_tensor(inp, out)
    m, s = q.quantize_multiplier(float(inp.scale) / float(out.scale))
    return Kernel("tk_quantize", [op.inputs[0]], [op.outputs[0]], [],
                  [f"{fn}(@in0@, @out0@, {inp.size}, {inp.zero_point}, {out.zero_point}, "
                   f"{m}, {s});"],
                  inplace=inp.nbytes == out.nbytes)  # element i is read before it is written


def lower_dequantize(g: Graph, op: Op) -> Kernel:
    inp, out = _t(g, op, 0), _out(g, op)
    _need_int8(inp)
    _need_per_tensor(inp)
    if out.dtype != "float32":
        raise Unsupported(f"to {out.dtype}")
    return Kernel("tk_quantize", [op.inputs[0]], [op.outputs[0]], [],
                  [f"tk_dequantize_s8_f32(@in0@, @out0@, {inp.size}, {c_double(inp.scale)}, "
                   f"{inp.zero_point});"])


def lower_concat(g: Graph, op: Op) -> Kernel:
    out = _out(g, op)
    ins = [_t(g, op, k) for k in range(len(op.inputs))]
    _need_int8(out, *ins)
    _need_per_tensor(out, *ins)
    if _act(op) != q.ACT_NONE:
        raise Unsupported("with a fused activation")
    rank = len(out.shape)
    axis = int(op.options.get("axis", 0))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank or any(len(t.shape) != rank for t in ins):
        raise Unsupported(f"with axis {axis} for rank {rank}")
    outer = int(np.prod(out.shape[:axis], dtype=np.int64))
    sizes = [int(np.prod(t.shape[axis:], dtype=np.int64)) for t in ins]
    if sum(sizes) * outer != out.size:
        raise Unsupported(f"with inputs that do not fill the output {out.shape}")
    # TFLM requires equal quantization and copies; differing inputs are requantized here.
    req = [int(t.scales[0] != out.scales[0] or t.zero_point != out.zero_point) for t in ins]
    ms = [q.quantize_multiplier(float(t.scale) / float(out.scale)) for t in ins]
    mults, shifts = [m for m, _ in ms], [s for _, s in ms]
    decls = [_c_array("int", "@op@sizes", sizes)]
    if any(req):
        decls += [_c_array("int32_t", "@op@zp", [t.zero_point for t in ins]),
                  _c_array("int32_t", "@op@mult", mults), _c_array("int32_t", "@op@shift", shifts),
                  _c_array("uint8_t", "@op@req", req)]
        rq = "@op@zp, @op@mult, @op@shift, @op@req"
    else:
        rq = "NULL, NULL, NULL, NULL"
    decls.append(f"static const tk_concat_params @op@p = {{{len(ins)}, {outer}, @op@sizes, {rq}, "
                 f"{out.zero_point}}};")
    ptrs = ", ".join(f"@in{k}@" for k in range(len(ins)))
    code = ["{", f"  const int8_t *const ins[{len(ins)}] = {{{ptrs}}};",
            "  tk_concat_s8(&@op@p, ins, @out0@);", "}"]
    return Kernel("tk_shape", list(op.inputs), [op.outputs[0]], decls, code)


def lower_relu(g: Graph, op: Op) -> Kernel:
    inp, out = _t(g, op, 0), _out(g, op)
    _need_int8(inp, out)
    _need_per_tensor(inp, out)
    if op.name == "RELU6":
        lower = inp.zero_point
        six = q.round_away(float(np.float32(6.0) / np.float32(inp.scale))) + inp.zero_point
        upper = max(-128, min(127, six))
        return Kernel("tk_activation", [op.inputs[0]], [op.outputs[0]], [],
                      [f"tk_clamp_s8(@in0@, @out0@, {inp.size}, {lower}, {upper});"],
                      inplace=True)
    m, s = q.quantize_multiplier(float(np.float32(inp.scale) / np.float32(out.scale)))
    act_min = max(-128, out.zero_point)
    return Kernel("tk_activation", [op.inputs[0]], [op.outputs[0]], [],
                  [f"tk_relu_s8(@in0@, @out0@, {inp.size}, {inp.zero_point}, {out.zero_point}, "
                   f"{m}, {s}, {act_min}, 127);"], inplace=True)


LOWERINGS: dict[str, Callable[[Graph, Op], Kernel]] = {
    "CONV_2D": lower_conv,
    "DEPTHWISE_CONV_2D": lambda g, op: lower_conv(g, op, depthwise=True),
    "FULLY_CONNECTED": lower_fc,
    "ADD": lower_binary,
    "MUL": lower_binary,
    "AVERAGE_POOL_2D": lower_pool,
    "MAX_POOL_2D": lower_pool,
    "MEAN": lower_mean,
    "PAD": lower_pad,
    "PADV2": lower_pad,
    "RESHAPE": lower_reshape,
    "SQUEEZE": lower_reshape,
    "EXPAND_DIMS": lower_reshape,
    "SOFTMAX": lower_softmax,
    "LOGISTIC": lower_logistic,
    "HARD_SWISH": lower_hard_swish,
    "QUANTIZE": lower_quantize,
    "DEQUANTIZE": lower_dequantize,
    "CONCATENATION": lower_concat,
    "RELU": lower_relu,
    "RELU6": lower_relu,
}


def lower(g: Graph, op: Op) -> Kernel:
    """Lower one op or raise Unsupported with the reason."""
    fn = LOWERINGS.get(op.name)
    if fn is None:
        raise Unsupported("")
    for t in op.inputs + op.outputs:
        if t >= 0 and any(d <= 0 for d in g.tensors[t].shape):
            raise Unsupported(f"with dynamic or empty shape {g.tensors[t].shape}")
    return fn(g, op)
