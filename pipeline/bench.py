"""Benchmark an int8 .tflite with the AOT backend on a QEMU Cortex-M machine.

    bench(model, env="qemu-m4") -> BenchResult;  format_table(result) -> str

One call exports the model, builds the DSP kernels and the portable reference kernels side by
side (each once plain, once with the per-op profiling hook), runs all four under
`qemu-system-arm -icount shift=0` and reports instructions per inference (total and per layer),
MACs per instruction, the AOT arena next to the TFLM arena and the flash taken by the ELF.
Under QEMU latency is counted in instructions, never in seconds.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.artifact import ModelArtifact
from pipeline.errors import ConfigError, ModelError

BACKENDS = ("aot", "tflm", "both")
# Firmware builds a comparison can ask for: the AOT engine, TFLM as the environment gives it
# (CMSIS-NN when $CMSIS_NN_DIR is set), or TFLM with a fixed kernel library.
FIRMWARE_BUILDS = {"aot": ("aot", None), "tflm": ("tflm", None),
                   "tflm-reference": ("tflm", "reference"), "tflm+cmsis-nn": ("tflm", "cmsis-nn")}
_FLASH_SECTIONS = (".vectors", ".text", ".rodata", ".ARM.exidx", ".data")


@dataclass
class LayerBench:
    """One op: MACs and instructions with the fast (DSP or MVE) and the reference kernels."""

    index: int
    op: str
    macs: int
    instructions: int
    ref_instructions: int
    striped: str = ""                 # "a-b" when the op runs in a striped range (time on op a)


@dataclass
class VariantBench:
    """Totals of one kernel build."""

    kernels: str                      # "dsp", "mve" or "reference"
    instructions_per_inference: int
    macs_per_instruction: float
    flash_bytes: int


@dataclass
class BenchResult:
    """Everything one `tinypipe bench` run measured."""

    model: str
    env: str
    machine: str
    backend: str
    macs: int
    instructions_per_inference: int
    kernels: str                      # the fast path the core compiles: "dsp" or "mve"
    macs_per_instruction: float
    arena_bytes: int
    tflm_arena_bytes: int | None
    arena_ratio: float | None
    flash_bytes: int
    weights_bytes: int
    baseline: VariantBench
    layers: list[LayerBench] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    per_op_arena_bytes: int | None = None     # the AOT arena planned op by op (no striping)
    stripes: list[str] = field(default_factory=list)  # ranges of ops run band by band
    striping_instructions: int | None = None  # DSP instructions striped minus planned op by op

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FirmwareBench:
    """One backend measured in the real firmware (app + protocol + port), through the link."""

    backend: str                      # as built: "aot" or "tflm"
    kernels: str                      # what the board reports in HELLO (aot, tflm+cmsis-nn, ...)
    instructions_per_inference: int   # mean of the board's counter over the samples
    arena_bytes: int                  # HELLO: the AOT static arena / TFLM arena_used_bytes()
    flash_bytes: int                  # firmware ELF
    samples: int
    bit_exact_vs_host: int            # samples whose outputs equal the host interpreter's


@dataclass
class Comparison:
    """The same model and samples on several backends, all checked against the host."""

    model: str
    env: str
    macs: int
    runs: list[FirmwareBench]
    backends_identical: bool | None   # every backend produced the same bytes (None: one backend)

    def to_dict(self) -> dict:
        return asdict(self)


def firmware_bench(model: ModelArtifact | str | Path, env: str, backend: str, samples: int = 8,
                   seed: int = 0, work_dir: str | Path | None = None
                   ) -> tuple[FirmwareBench, list]:
    """Build the firmware with `backend` (a FIRMWARE_BUILDS key), run `samples` random inputs
    through it in QEMU, and return the measurement with the raw outputs (to compare)."""
    import json

    from pipeline.hil.build import build_firmware
    from pipeline.hil.runner import run_hil

    try:
        engine, kernels = FIRMWARE_BUILDS[backend]
    except KeyError:
        raise ConfigError(f"firmware build {backend!r}: choose one of "
                          f"{', '.join(FIRMWARE_BUILDS)}") from None
    art = ModelArtifact.load(model)
    if len(art.inputs) != 1:
        raise ModelError(f"{art.name}: firmware bench takes models with one input")
    blob = b"".join(_input_blob(art, seed + i) for i in range(samples))
    t = art.inputs[0]
    dtype = np.int8 if t.dtype == "int8" else np.float32
    x = np.frombuffer(blob, dtype=dtype).reshape((samples, *t.shape[1:]))
    own = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="tinypipe-fwbench-")) if own else Path(work_dir)
    try:
        elf = build_firmware(env, art, backend=engine, out=work / backend / "firmware",
                             tflm_kernels=kernels)
        summary = run_hil(env, art, samples=x, out_dir=work / backend, flash=True, elf=elf,
                          backend=engine)
        report = json.loads((work / backend / "hil.json").read_text())
        flash = flash_bytes(elf)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    dev = report["device"]
    counter = summary["counter"]
    return FirmwareBench(
        backend=engine, kernels=dev.get("backend", backend),
        instructions_per_inference=round(summary["latency"][counter]["mean"]),
        arena_bytes=int(dev.get("arena_bytes") or 0), flash_bytes=flash, samples=samples,
        bit_exact_vs_host=int(summary.get("bit_exact", 0)),
    ), [r.get("outputs", [r["output"]]) for r in report["samples"]]


def compare_backends(model: ModelArtifact | str | Path, env: str, backends=("aot", "tflm"),
                     samples: int = 8, seed: int = 0, work_dir: str | Path | None = None,
                     progress=None) -> Comparison:
    """`firmware_bench` for each build on the same samples; are the outputs identical?"""
    from pipeline.profile import profile_tflite

    runs, outputs = [], []
    for b in backends:
        if progress:
            progress(f"{Path(str(model)).name}: {b} firmware on {env}")
        fb, outs = firmware_bench(model, env, b, samples, seed,
                                  None if work_dir is None else Path(work_dir) / b)
        runs.append(fb)
        outputs.append(outs)
    macs = profile_tflite(model, measure_arena=False, aot=False).macs
    same = all(o == outputs[0] for o in outputs[1:]) if len(outputs) > 1 else None
    return Comparison(model=str(model), env=env, macs=macs, runs=runs, backends_identical=same)


def format_comparison(c: Comparison) -> str:
    """Side-by-side table of the backends."""
    lines = [f"{c.model} on {c.env}: firmware per backend, {c.runs[0].samples} random inputs",
             f"{'backend':<8} {'kernels':<22} {'instr/inference':>16} {'MAC/instr':>9} "
             f"{'arena B':>10} {'flash B':>10} {'= host':>8}"]
    for r in c.runs:
        lines.append(f"{r.backend:<8} {r.kernels:<22} {r.instructions_per_inference:>16,} "
                     f"{c.macs / max(r.instructions_per_inference, 1):>9.3f} "
                     f"{r.arena_bytes:>10,} {r.flash_bytes:>10,} "
                     f"{r.bit_exact_vs_host:>4}/{r.samples:<3}")
    if c.backends_identical is not None:
        lines.append("outputs identical across backends: "
                     f"{'yes' if c.backends_identical else 'NO'}")
    return "\n".join(lines)


def flash_bytes(elf: Path) -> int:
    """Bytes the ELF places in flash: vectors, code, constants and the .data load image."""
    from elftools.elf.elffile import ELFFile

    with open(elf, "rb") as f:
        e = ELFFile(f)
        return sum(s["sh_size"] for s in e.iter_sections() if s.name in _FLASH_SECTIONS)


def _input_blob(art: ModelArtifact, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    parts = []
    for t in art.inputs:
        if t.dtype == "int8":
            parts.append(rng.integers(-128, 128, size=t.shape, dtype=np.int8).tobytes())
        else:
            parts.append(rng.uniform(-1, 1, size=t.shape).astype(np.float32).tobytes())
    return b"".join(parts)


def _measure(gen: Path, work: Path, env, portable: bool, blob: bytes, n_ops: int):
    from pipeline.aot.arm import build_elf, run_elf

    tag = "ref" if portable else "dsp"
    elf = build_elf(gen, work / tag, env, portable=portable)
    total = run_elf(elf, env, blob, 1, work / tag).ticks[0]
    pelf = build_elf(gen, work / f"{tag}_prof", env, portable=portable, profile=True)
    stamps = run_elf(pelf, env, blob, 1, work / f"{tag}_prof", n_ops=n_ops).op_ticks[0]
    per_op = [stamps[i + 1] - stamps[i] for i in range(n_ops)]
    return total, per_op, flash_bytes(elf)


def bench(model: str | Path, env: str = "qemu-m4", backend: str = "aot",
          work_dir: str | Path | None = None, seed: int = 0,
          measure_tflm_arena: bool = True) -> BenchResult:
    """Measure `model` on QEMU `env`; the DSP build is the result, the reference the baseline."""
    from pipeline.aot import export_aot
    from pipeline.aot.arm import get_env
    from pipeline.profile import profile_tflite

    if backend != "aot":
        raise ConfigError(f"--backend {backend}: the kernel bench is for aot; use "
                          "compare_backends for tflm")
    e = get_env(env)
    art = ModelArtifact.load(model)
    prof = profile_tflite(art, measure_arena=measure_tflm_arena)
    own = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="tinypipe-bench-")) if own else Path(work_dir)
    try:
        res = export_aot(art, work / "gen")
        n_ops = len(res.ops)
        blob = _input_blob(art, seed)
        dsp_total, dsp_ops, dsp_flash = _measure(work / "gen", work, e, False, blob, n_ops)
        ref_total, ref_ops, ref_flash = _measure(work / "gen", work, e, True, blob, n_ops)
        striping = None
        if res.striped:  # what running ranges band by band costs: the op-by-op build
            from pipeline.aot.arm import build_elf, run_elf

            export_aot(art, work / "gen_per_op", stripe=False)
            elf = build_elf(work / "gen_per_op", work / "per_op", e)
            striping = dsp_total - run_elf(elf, e, blob, 1, work / "per_op").ticks[0]
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    k = e.instructions_per_tick
    macs = prof.macs
    macs_by_index = {lc.index: lc.macs for lc in prof.layers}
    label = {p: f"{a}-{b}" for a, b in res.striped for p in range(a, b + 1)}
    layers = [LayerBench(i, op, macs_by_index.get(i, 0), dsp_ops[i], ref_ops[i],
                         label.get(i, "")) for i, op in enumerate(res.ops)]
    ipi, ref_ipi = dsp_total, ref_total
    tflm = prof.arena_bytes
    notes = [f"instructions: the board port's counter under QEMU -icount ({e.machine}, "
             f"{k} instructions per tick), the same counter the HIL firmware reports",
             "flash = .vectors+.text+.rodata+.ARM.exidx+.data of the bench ELF (model, kernels, "
             "harness, board port, libc helpers)"]
    return BenchResult(
        model=str(model), env=e.env, machine=e.machine, backend=backend, macs=macs,
        instructions_per_inference=ipi, kernels=e.kernel_isa,
        macs_per_instruction=round(macs / max(ipi, 1), 4),
        arena_bytes=res.arena_bytes, tflm_arena_bytes=tflm,
        arena_ratio=round(res.arena_bytes / tflm, 4) if tflm else None,
        flash_bytes=dsp_flash, weights_bytes=res.weights_bytes,
        baseline=VariantBench("reference", ref_ipi, round(macs / max(ref_ipi, 1), 4), ref_flash),
        layers=layers, notes=notes, per_op_arena_bytes=res.per_op_arena_bytes,
        stripes=res.stripes, striping_instructions=striping)


def format_table(r: BenchResult, top: int | None = None) -> str:
    """Plain-text report: per-layer table, then totals."""
    rows = r.layers
    if top:
        rows = sorted(rows, key=lambda lb: -lb.instructions)[:top]
    lines = [f"{r.model} on {r.env} ({r.machine}), backend {r.backend}",
             f"{'#':>3} {'op':<18} {'MACs':>11} {'instr (' + r.kernels.upper() + ')':>13} "
             f"{'MAC/instr':>9} "
             f"{'instr (ref)':>13} {'speed-up':>8}"]
    for lb in rows:
        mpi = f"{lb.macs / lb.instructions:.2f}" if lb.macs and lb.instructions else "-"
        sp = f"{lb.ref_instructions / lb.instructions:.1f}x" if lb.instructions else "-"
        tail = ""
        if lb.striped:  # a striped range is timed as a whole, on its first op
            first = lb.striped.split("-")[0] == str(lb.index)
            mpi, sp = "-", "-"
            tail = f"  striped ops {lb.striped}" + (" (all of them)" if first else "")
        lines.append(f"{lb.index:>3} {lb.op:<18} {lb.macs:>11,} {lb.instructions:>13,} {mpi:>9} "
                     f"{lb.ref_instructions:>13,} {sp:>8}{tail}")
    b = r.baseline
    arena = (f"{r.arena_bytes:,} B (TFLM {r.tflm_arena_bytes:,} B, {r.arena_ratio:.1%})"
             if r.tflm_arena_bytes else f"{r.arena_bytes:,} B")
    lines += [
        "",
        f"MACs per inference          : {r.macs:,}",
        f"instructions per inference  : {r.instructions_per_inference:,} ({r.kernels.upper()} "
        "kernels), "
        f"{b.instructions_per_inference:,} (reference kernels)",
        f"MACs per instruction        : {r.macs_per_instruction:.3f} ({r.kernels.upper()}), "
        f"{b.macs_per_instruction:.3f} (reference)",
        f"peak RAM (AOT arena)        : {arena}",
        *([f"  planned op by op           : {r.per_op_arena_bytes:,} B; striped ranges cost "
           f"{r.striping_instructions:+,} instructions ({r.kernels.upper()})"] if r.stripes and
          r.striping_instructions is not None else []),
        *(f"  striped {s}" for s in r.stripes),
        f"flash (ELF)                 : {r.flash_bytes:,} B ({r.kernels.upper()}), "
        f"{b.flash_bytes:,} B "
        f"(reference); weights {r.weights_bytes:,} B",
    ]
    return "\n".join(lines)


# ---- a suite of real models -------------------------------------------------------------------


@dataclass
class SuiteEntry:
    """One model of a suite: every firmware build on the same inputs."""

    model: str
    model_hash: str = ""
    macs: int = 0
    tflm_arena_bytes: int | None = None      # measured by the host TFLM interpreter
    aot_arena_bytes: int | None = None       # the AOT engine's static plan
    comparison: Comparison | None = None
    speedup: dict[str, float] = field(default_factory=dict)  # build: its instructions / AOT's
    error: str | None = None                 # why the model could not be measured


@dataclass
class SuiteResult:
    """`tinypipe bench --suite`: every .tflite of a folder on one env."""

    folder: str
    env: str
    builds: list[str]
    samples: int
    entries: list[SuiteEntry]

    def to_dict(self) -> dict:
        return asdict(self)


def suite_builds() -> list[str]:
    """The firmware builds this machine can make: AOT, and TFLM (reference, and with CMSIS-NN)
    when $TFLM_DIR (and $CMSIS_NN_DIR) point at source trees."""
    import os

    builds = ["aot"]
    if os.environ.get("TFLM_DIR", "").strip():
        builds.append("tflm-reference")
        if os.environ.get("CMSIS_NN_DIR", "").strip():
            builds.append("tflm+cmsis-nn")
    return builds


def bench_suite(folder: str | Path, env: str, samples: int = 2, builds: list[str] | None = None,
                work_dir: str | Path | None = None, progress=None) -> SuiteResult:
    """Every .tflite in `folder`: each firmware build, the same random inputs, QEMU `env`.

    A model some build cannot handle is reported with the reason, and the suite goes on."""
    from pipeline.errors import TinypipeError
    from pipeline.profile import profile_tflite

    models = sorted(Path(folder).glob("*.tflite"))
    if not models:
        raise ConfigError(f"--suite {folder}: no .tflite files in this folder")
    builds = builds or suite_builds()
    entries = []
    for path in models:
        entry = SuiteEntry(str(path))
        try:
            art = ModelArtifact.load(path)
            prof = profile_tflite(art)
            entry.model_hash, entry.macs = art.hash, prof.macs
            entry.tflm_arena_bytes, entry.aot_arena_bytes = prof.arena_bytes, prof.aot_arena_bytes
            sub = None if work_dir is None else Path(work_dir) / path.stem
            cmp = compare_backends(art, env, builds, samples, work_dir=sub, progress=progress)
            cmp.model = str(path)
            entry.comparison = cmp
            aot = next((r for r in cmp.runs if r.backend == "aot"), None)
            if aot is not None:
                entry.speedup = {b: round(r.instructions_per_inference /
                                          max(aot.instructions_per_inference, 1), 3)
                                 for b, r in zip(builds, cmp.runs, strict=True) if b != "aot"}
        except TinypipeError as e:
            entry.error = str(e)
        entries.append(entry)
    return SuiteResult(str(folder), env, list(builds), samples, entries)


def format_suite(r: SuiteResult, markdown: bool = False) -> str:
    """The suite as a table (plain text, or Markdown for suite.md and the README)."""
    head = ["model", "MACs", "build", "kernels", "instr/inference", "MAC/instr", "AOT speed-up",
            "arena B", "flash B", "= host"]
    rows = []
    for e in r.entries:
        name = Path(e.model).name
        if e.error or e.comparison is None:
            rows.append([name, f"{e.macs:,}", "-", "-", "-", "-", "-", "-", "-",
                         f"error: {e.error}"])
            continue
        for b, run in zip(r.builds, e.comparison.runs, strict=True):
            sp = "" if b == "aot" else f"{e.speedup.get(b, 0):.2f}x"
            rows.append([name, f"{e.macs:,}", b, run.kernels,
                         f"{run.instructions_per_inference:,}",
                         f"{e.macs / max(run.instructions_per_inference, 1):.3f}", sp,
                         f"{run.arena_bytes:,}", f"{run.flash_bytes:,}",
                         f"{run.bit_exact_vs_host}/{run.samples}"])
            name = ""
        if e.comparison.backends_identical is not None:
            rows.append(["", "", "", "all builds byte-identical:", "yes" if
                         e.comparison.backends_identical else "NO", "", "", "", "", ""])
    title = (f"{len(r.entries)} models from {r.folder} on {r.env}, {r.samples} random inputs "
             f"each (instructions: QEMU -icount; AOT speed-up = the build's instructions / "
             f"AOT's)")
    if markdown:
        lines = [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([title, fmt.format(*head), *(fmt.format(*row) for row in rows)])
