"""Ahead-of-time compiler: int8 .tflite -> dependency-free C99, bit-exact with TFLite Micro.

    export_aot(model, out_dir, prefix="tp") -> AotResult    (writes the C folder)
    compile_model(model) -> Compiled                       (lowered + planned, nothing written)
    check_supported(model) -> None                         (raises UnsupportedOpError)

The arena plan stripes ranges of ops where that lowers the peak (`pipeline.aot.stripes`), and a
float input read only by a QUANTIZE op is quantized as it is written (`tp_input_write`), so
only its int8 tensor lives in the arena.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.aot import emit, stripes
from pipeline.aot.graph import Graph
from pipeline.aot.ops import Kernel, Unsupported, lower
from pipeline.aot.planner import Plan, step_tops
from pipeline.artifact import ModelArtifact
from pipeline.errors import ConfigError, ModelError, UnsupportedOpError
from pipeline.paths import KERNELS

__all__ = ["AotResult", "Compiled", "compile_model", "export_aot", "check_supported",
           "KERNELS_DIR"]

KERNELS_DIR = KERNELS  # pipeline.paths: the checkout, or the installed package
_COMMON_FILES = ("tinykernels.h", "tk_fixedpoint.h", "tk_dsp.h", "tk_mve.h")
SCRATCH_BASE = 1 << 24  # pseudo tensor ids of per-op work space in the arena plan
IO_DTYPES = ("int8", "uint8", "int16", "float32")  # model inputs and outputs
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass
class AotResult:
    """What export_aot wrote and measured."""

    out_dir: Path
    files: list[Path]
    arena_bytes: int
    weights_bytes: int
    ops: list[str] = field(default_factory=list)      # op names in execution order
    kernels: list[str] = field(default_factory=list)  # tinykernels sources used (tk_conv, ...)
    per_op_arena_bytes: int = 0                       # the arena without striping
    stripes: list[str] = field(default_factory=list)  # one line per striped range of ops
    striped: list[tuple[int, int]] = field(default_factory=list)  # their first, last op position


def _lower_all(g: Graph) -> list[tuple[int, Kernel]]:
    if getattr(g, "extra_subgraphs", 0):
        raise UnsupportedOpError(f"{g.name}: models with more than one subgraph are not supported "
                                 "by the AOT backend; use --backend tflm")
    for k, tid in enumerate(g.inputs + g.outputs):
        t = g.tensors[tid]
        # The element types the firmware's protocol carries (firmware/src/infer.h), minus int32,
        # which no supported op reads or writes at a model's ends.
        if t.dtype not in IO_DTYPES or any(d <= 0 for d in t.shape):
            what = "input" if k < len(g.inputs) else "output"
            raise UnsupportedOpError(
                f"{g.name}: model {what} '{t.name}' ({t.dtype} {list(t.shape)}) is not supported "
                "by the AOT backend; use --backend tflm")
    out = []
    for op in g.ops:
        try:
            out.append((op.index, lower(g, op)))
        except Unsupported as e:
            why = f" {e}" if str(e) else ""
            raise UnsupportedOpError(f"{g.name}: op #{op.index} {op.name}{why} is not supported by "
                                     "the AOT backend; use --backend tflm") from None
    return out


def check_supported(model: ModelArtifact | bytes | str | Path) -> None:
    """Raise UnsupportedOpError (one line, naming op, index and model) unless fully supported."""
    _lower_all(ModelArtifact.load(model).graph)


def _plan(g: Graph, kernels: list[tuple[int, Kernel]], nbytes: dict[int, int],
          inputs: list[int], stripe: bool | list[tuple[int, ...]]) -> stripes.Choice:
    """Plan the arena: the least memory first, then the fastest kernels that keep it.

    Two choices trade memory for speed: striped ranges (`pipeline.aot.stripes`) and the work
    space of a kernel that offers smaller ones (`scratch_alts`, largest first). The ranges are
    chosen with every kernel at its smallest work space, so they are striped only where that
    lowers the floor of the arena (`stripe` as in `compile_model`). Then each kernel gets the
    largest work space that keeps that arena (the ops of a striped range share one, the largest
    of theirs); its declarations are switched to the chosen one. The op-by-op plan kept for
    comparison gets its work spaces the same way.
    """
    alts = {k.scratch_tid: k for _, k in kernels if k.scratch and k.scratch_alts}
    sizes = {t: [(nbytes[t], k.decls)] + k.scratch_alts for t, k in alts.items()}

    def use(level: dict[int, int]) -> None:
        for t, k in alts.items():
            k.scratch, k.decls = sizes[t][level[t]]
            nbytes[t] = k.scratch

    def fit(groups: list[stripes.Group], floor: Plan,
            step_of: list[int]) -> tuple[dict[int, int], Plan, list[int]]:
        """Work spaces that keep the arena of `floor` (planned with the smallest ones)."""
        smallest = {t: len(c) - 1 for t, c in sizes.items()}
        use({t: 0 for t in sizes})
        p, at = stripes.plan_groups(g, kernels, groups, nbytes, inputs, g.outputs)
        if p.total <= floor.total:
            return {t: 0 for t in sizes}, p, at
        # Per op the largest choice that fits the room above the buffers alive during its step
        # in the floor plan (or half, a quarter of it where the arena still grows: the choices
        # of ops alive at the same time compete for that room). A striped op's work space is
        # its range's, as large as the largest of its ops.
        use(smallest)
        steps, _, sz = stripes.layout(g, kernels, groups, nbytes)
        tops = step_tops(floor, steps, sz, inputs, g.outputs)
        held = {kernels[p][1].scratch_tid: sz[gr.scratch_tid] for gr in groups
                for p in gr.positions if kernels[p][1].scratch}
        room = {k.scratch_tid: floor.total - tops[step_of[pos]]
                for pos, (_, k) in enumerate(kernels) if k.scratch_tid in sizes}
        level, p, at = smallest, floor, step_of
        for share in (1.0, 0.5, 0.25):
            trial = {t: next(j for j, (n, _) in enumerate(c)
                             if n - held.get(t, c[-1][0]) <= share * room[t] or j == len(c) - 1)
                     for t, c in sizes.items()}
            if trial == smallest:
                break
            use(trial)
            pt, att = stripes.plan_groups(g, kernels, groups, nbytes, inputs, g.outputs)
            if pt.total <= floor.total:
                level, p, at = trial, pt, att
                break
        # Then, op by op, the largest choice where the real planner still keeps the arena (the
        # room above is only an estimate: buffers may move). Quick plans try; their orders are
        # a subset of the full plan's, which therefore is not larger.
        raised = False
        for t in sizes:
            if level[t]:
                use({**level, t: 0})
                if stripes.plan_groups(g, kernels, groups, nbytes, inputs, g.outputs,
                                       trials=8)[0].total <= floor.total:
                    level, raised = {**level, t: 0}, True
        if raised:
            use(level)
            p, at = stripes.plan_groups(g, kernels, groups, nbytes, inputs, g.outputs)
        return level, p, at

    use({t: len(c) - 1 for t, c in sizes.items()})
    if stripe is True:
        choice = stripes.choose(g, kernels, nbytes, inputs, g.outputs)
    elif stripe:
        choice = stripes.fixed(g, kernels, nbytes, inputs, g.outputs, list(stripe))
    else:
        p, step_of = stripes.plan_groups(g, kernels, [], nbytes, inputs, g.outputs)
        choice = stripes.Choice([], p, p, step_of, step_of)
    if not alts:
        return choice
    level, base, base_step_of = fit([], choice.base_plan, choice.base_step_of)
    if choice.groups:
        level, p, step_of = fit(choice.groups, choice.plan, choice.step_of)
    else:
        p, step_of = base, base_step_of
    use(level)
    return stripes.Choice(choice.groups, p, base, step_of, base_step_of)


@dataclass
class Compiled:
    """A model lowered to kernels with its arena planned: everything but the C text."""

    graph: Graph
    kernels: list[tuple[int, Kernel]]
    plan: Plan
    const_of: dict[int, int]
    model_hash: str
    choice: stripes.Choice | None = None
    quantized_inputs: dict[int, int] = field(default_factory=dict)  # input index -> int8 tensor

    @property
    def arena_bytes(self) -> int:
        return self.plan.total

    @property
    def per_op_arena_bytes(self) -> int:
        """The arena of the same model planned op by op, without striping."""
        return self.choice.base_plan.total if self.choice else self.plan.total

    @property
    def groups(self) -> list[stripes.Group]:
        return self.choice.groups if self.choice else []

    def stripe_notes(self) -> list[str]:
        """One line per striped range: ops, bands, line buffers and the bytes moved."""
        out = []
        for gr in self.groups:
            a, b = (self.graph.ops[self.kernels[p][0]].index for p in (gr.first, gr.last))
            buf = sum(cap * stripes._row_bytes(self.graph, t) for t, cap in gr.caps.items())
            out.append(f"ops {a}-{b}: {gr.mode} schedule, {gr.calls()} kernel calls of at most "
                       f"{gr.band} row(s), line buffers {buf:,} B, "
                       f"{gr.moved_bytes(self.graph):,} B moved per inference, "
                       "no recomputed MACs")
        return out

    def layer_live_bytes(self) -> list[tuple[int, int]]:
        """Per kernel: arena bytes in use while it runs, planned op by op and as compiled."""
        if self.choice is None:
            live = stripes.live_bytes(self.plan, len(self.kernels))
            return [(v, v) for v in live]
        c = self.choice
        base = stripes.live_bytes(c.base_plan, max(c.base_step_of, default=-1) + 1)
        now = stripes.live_bytes(c.plan, max(c.step_of, default=-1) + 1)
        return [(base[c.base_step_of[p]], now[c.step_of[p]]) for p in range(len(self.kernels))]

    @property
    def op_names(self) -> list[str]:
        return [self.graph.ops[i].name for i, _ in self.kernels]

    @property
    def families(self) -> list[str]:
        fams = {k.family for _, k in self.kernels if k.family}
        if self.quantized_inputs:  # tp_input_write quantizes with tk_quantize_f32_s8
            fams.add("tk_quantize")
        return sorted(fams)


def _fold_float_inputs(g: Graph, kernels: list[tuple[int, Kernel]]) -> dict[int, int]:
    """Float inputs read only by one QUANTIZE to int8: that op becomes quantize-on-write.

    Returns input index -> the int8 tensor that takes the input's place in the arena; the
    QUANTIZE kernel is replaced by a no-op that keeps its position (op indices stay aligned).
    """
    folded = {}
    for i, tid in enumerate(g.inputs):
        if g.tensors[tid].dtype != "float32" or tid in g.outputs or g.inputs.count(tid) > 1:
            continue
        readers = [pos for pos, (_, k) in enumerate(kernels) if tid in k.inputs]
        if len(readers) != 1:
            continue
        pos = readers[0]
        op_index, k = kernels[pos]
        if g.ops[op_index].name != "QUANTIZE" or not k.code[0].startswith("tk_quantize_f32_s8"):
            continue
        q = k.outputs[0]
        if q in g.outputs or q in g.inputs:
            continue
        folded[i] = q
        kernels[pos] = (op_index, Kernel(None, [], [q]))
    return folded


def compile_model(model: ModelArtifact | bytes | str | Path,
                  stripe: bool | list[tuple[int, ...]] = True) -> Compiled:
    """Lower every op and plan the arena (UnsupportedOpError names the first op it cannot).

    stripe: True, the planner runs ranges of ops band by band where that lowers the peak;
    False, op by op; a list of (first, last) or (first, last, rows per band) op positions,
    exactly those ranges (tests and experiments).
    """
    art = ModelArtifact.load(model)
    key = "aot_compiled" if stripe is True else f"aot_compiled_{stripe!r}"
    cached = art.__dict__.get(key)
    if cached is not None:
        return cached
    g = art.graph
    kernels = _lower_all(g)
    folded = _fold_float_inputs(g, kernels)
    # Constants read by kernels become weight arrays; aliases of constants point at them.
    const_of: dict[int, int] = {}
    for _, k in kernels:
        for tid in k.inputs:
            if tid >= 0 and g.tensors[tid].is_const:
                const_of[tid] = tid
        if k.alias and k.inputs[0] in const_of:
            const_of[k.outputs[0]] = const_of[k.inputs[0]]
    nbytes = {}
    for pos, (_, k) in enumerate(kernels):
        if k.scratch:
            k.scratch_tid = SCRATCH_BASE + pos
            nbytes[k.scratch_tid] = k.scratch
    inputs = [folded.get(i, t) for i, t in enumerate(g.inputs)]
    for tid in {t for _, k in kernels for t in k.inputs + k.outputs} | set(inputs + g.outputs):
        if tid >= 0 and tid not in const_of:
            nbytes[tid] = g.tensors[tid].nbytes
    choice = _plan(g, kernels, nbytes, inputs, stripe)
    for gr in choice.groups:  # the ops of a group share its work space
        for pos in gr.positions:
            if kernels[pos][1].scratch:
                kernels[pos][1].scratch_tid = gr.scratch_tid
    compiled = Compiled(g, kernels, choice.plan, const_of, art.hash, choice, folded)
    art.__dict__[key] = compiled  # emitting C does not change it
    return compiled


def _write(c: Compiled, prefix: str, tmp: Path) -> AotResult:
    g, kernels, p = c.graph, c.kernels, c.plan
    names = emit.Names(prefix)
    weight_ids = sorted(set(c.const_of.values()))
    weights, wbytes = emit.weights_source(g, weight_ids, names)
    wbytes += sum(k.const_bytes for _, k in kernels)  # weights prepared at export time
    decls, body = emit.invoke_source(g, kernels, p, c.const_of, names, c.groups)
    op_names, families = c.op_names, c.families
    quant = {i: (q, g.tensors[q]) for i, q in c.quantized_inputs.items()}

    files = []
    hdr = tmp / f"{prefix}_model.h"
    hdr.write_text(emit.header_source(g, p, names, c.model_hash, wbytes, op_names, quant))
    src = tmp / f"{prefix}_model.c"
    src.write_text(emit.model_source(g, p, names, weights, decls, body, True, quant))
    files += [hdr, src]
    sources = [f"{f}.c" for f in families]
    sources += [f"{f}_{isa}.c" for isa in ("dsp", "mve") for f in families
                if (KERNELS_DIR / f"{f}_{isa}.c").is_file()]
    for fname in list(_COMMON_FILES) + sources:
        s = KERNELS_DIR / fname
        if not s.is_file():
            raise ModelError(f"{s}: tinykernels source missing from the installation")
        shutil.copyfile(s, tmp / fname)
        files.append(tmp / fname)
    return AotResult(tmp, files, p.total, wbytes, op_names, families, c.per_op_arena_bytes,
                     c.stripe_notes(), [(gr.first, gr.last) for gr in c.groups])


def export_aot(model: ModelArtifact | bytes | str | Path, out_dir: str | Path,
               prefix: str = "tp", stripe: bool | list[tuple[int, ...]] = True) -> AotResult:
    """Compile `model` to C in `out_dir` (created or updated; nothing is written on failure).

    `stripe` as in `compile_model` (False plans op by op, to compare what striping costs)."""
    if not _IDENT.match(prefix):
        raise ConfigError(f"--prefix {prefix!r}: must be a C identifier")
    compiled = compile_model(model, stripe)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would otherwise become out_dir's mode
    try:
        res = _write(compiled, prefix, tmp)
        if not out_dir.exists():
            os.replace(tmp, out_dir)
        else:
            keep = {f.name for f in res.files}
            # Kernel sources from an earlier export that this model no longer needs.
            for old in out_dir.glob("tk_*.c"):
                if old.name not in keep and (KERNELS_DIR / old.name).is_file():
                    old.unlink()
            for f in res.files:
                os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res.out_dir = out_dir
    res.files = [out_dir / f.name for f in res.files]
    return res
