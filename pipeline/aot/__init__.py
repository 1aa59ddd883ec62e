"""Ahead-of-time compiler: int8 .tflite -> dependency-free C99, bit-exact with TFLite Micro.

    export_aot(model, out_dir, prefix="tp") -> AotResult    (writes the C folder)
    compile_model(model) -> Compiled                       (lowered + planned, nothing written)
    check_supported(model) -> None                         (raises UnsupportedOpError)
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.aot import emit
from pipeline.aot.graph import Graph
from pipeline.aot.ops import Kernel, Unsupported, lower
from pipeline.aot.planner import Plan, Step, plan, step_tops
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


def _plan(g: Graph, kernels: list[tuple[int, Kernel]], steps: list[Step],
          nbytes: dict[int, int]) -> Plan:
    """Plan the arena. A kernel may offer smaller work spaces (`scratch_alts`); the largest one
    is kept where that does not grow the arena beyond the plan with the smallest ones (the
    kernel's declarations are switched to the chosen one)."""
    p = plan(steps, nbytes, g.inputs, g.outputs)
    alts = {k.scratch_tid: k for _, k in kernels if k.scratch and k.scratch_alts}
    if not alts:
        return p
    sizes = {t: [(nbytes[t], k.decls)] + k.scratch_alts for t, k in alts.items()}
    small = {**nbytes, **{t: c[-1][0] for t, c in sizes.items()}}
    ps = plan(steps, small, g.inputs, g.outputs)
    if p.total <= ps.total:
        return p
    # Per op the largest choice that fits the room above its live buffers in the small plan
    # (or half, a quarter of it where the arena still grows: the choices of ops alive at the
    # same time compete for that room).
    tops = step_tops(ps, steps, small, g.inputs, g.outputs)
    room = {k.scratch_tid: ps.total - tops[pos] for pos, (_, k) in enumerate(kernels)}
    level = {t: len(c) - 1 for t, c in sizes.items()}
    pm = ps
    for share in (1.0, 0.5, 0.25):
        trial = {t: next(j for j, (n, _) in enumerate(c)
                         if n - c[-1][0] <= share * room[t] or j == len(c) - 1)
                 for t, c in sizes.items()}
        mixed = {**small, **{t: sizes[t][j][0] for t, j in trial.items()}}
        pt = plan(steps, mixed, g.inputs, g.outputs) if mixed != small else ps
        if pt.total <= ps.total:
            level, pm = trial, pt
            break
    for t, k in alts.items():
        k.scratch, k.decls = sizes[t][level[t]]
        nbytes[t] = k.scratch
    return pm


@dataclass
class Compiled:
    """A model lowered to kernels with its arena planned: everything but the C text."""

    graph: Graph
    kernels: list[tuple[int, Kernel]]
    plan: Plan
    const_of: dict[int, int]
    model_hash: str

    @property
    def arena_bytes(self) -> int:
        return self.plan.total

    @property
    def op_names(self) -> list[str]:
        return [self.graph.ops[i].name for i, _ in self.kernels]

    @property
    def families(self) -> list[str]:
        return sorted({k.family for _, k in self.kernels if k.family})


def compile_model(model: ModelArtifact | bytes | str | Path) -> Compiled:
    """Lower every op and plan the arena (UnsupportedOpError names the first op it cannot)."""
    art = ModelArtifact.load(model)
    cached = art.__dict__.get("aot_compiled")
    if cached is not None:
        return cached
    g = art.graph
    kernels = _lower_all(g)
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
    steps = [Step(k.inputs, k.outputs + ([k.scratch_tid] if k.scratch else []), k.alias,
                  k.inplace, k.overlap) for _, k in kernels]
    for tid in {t for _, k in kernels for t in k.inputs + k.outputs} | set(g.inputs + g.outputs):
        if tid >= 0 and tid not in const_of:
            nbytes[tid] = g.tensors[tid].nbytes
    compiled = Compiled(g, kernels, _plan(g, kernels, steps, nbytes), const_of, art.hash)
    art.__dict__["aot_compiled"] = compiled  # emitting C does not change it
    return compiled


def _write(c: Compiled, prefix: str, tmp: Path) -> AotResult:
    g, kernels, p = c.graph, c.kernels, c.plan
    names = emit.Names(prefix)
    weight_ids = sorted(set(c.const_of.values()))
    weights, wbytes = emit.weights_source(g, weight_ids, names)
    wbytes += sum(k.const_bytes for _, k in kernels)  # weights prepared at export time
    decls, body = emit.invoke_source(g, kernels, p, c.const_of, names)
    op_names, families = c.op_names, c.families

    files = []
    hdr = tmp / f"{prefix}_model.h"
    hdr.write_text(emit.header_source(g, p, names, c.model_hash, wbytes, op_names))
    src = tmp / f"{prefix}_model.c"
    src.write_text(emit.model_source(g, p, names, weights, decls, body,
                                     any("memcpy" in line for line in body)))
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
    return AotResult(tmp, files, p.total, wbytes, op_names, families)


def export_aot(model: ModelArtifact | bytes | str | Path, out_dir: str | Path,
               prefix: str = "tp") -> AotResult:
    """Compile `model` to C in `out_dir` (created or updated; nothing is written on failure)."""
    if not _IDENT.match(prefix):
        raise ConfigError(f"--prefix {prefix!r}: must be a C identifier")
    compiled = compile_model(model)
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
