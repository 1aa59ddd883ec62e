"""The run folder and the stages that fill it: train -> quantize -> evaluate -> profile ->
export -> hil.

Each stage returns a typed record (pipeline.results) that the next stage takes and that is
kept in the run folder's state.json, so the CLI commands can run one stage at a time and
`tinypipe run` runs them all, each once.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import __version__
from pipeline.artifact import ModelArtifact
from pipeline.config import Config, load_config, save_config
from pipeline.errors import ModelError
from pipeline.profile import Profile
from pipeline.results import (
    EvaluateSummary,
    ExportSummary,
    HilSummary,
    QuantizeSummary,
    StateFile,
    TrainSummary,
)

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class RunDir:
    root: Path

    def __post_init__(self):
        self.root = Path(self.root)

    config = property(lambda s: s.root / "config.yaml")
    keras = property(lambda s: s.root / "model.keras")
    tflite = property(lambda s: s.root / "model.tflite")
    curves = property(lambda s: s.root / "curves.png")
    tflm_c = property(lambda s: s.root / "c" / "tflm")
    aot_c = property(lambda s: s.root / "c" / "aot")
    reference = property(lambda s: s.root / "tflm_reference.npz")
    report_json = property(lambda s: s.root / "report.json")
    report_md = property(lambda s: s.root / "report.md")
    state = property(lambda s: StateFile(s.root / "state.json"))

    def load(self, stage: str, model_hash: str | None = None):
        """A stage's typed record from state.json (None if it has not run for this model)."""
        return self.state.load(stage, model_hash)

    def save(self, stage: str, result) -> None:
        self.state.save(stage, result)

    def require(self, path: Path, stage: str) -> Path:
        if not path.exists():
            raise ModelError(f"{path}: missing; run `tinypipe {stage} --out {self.root}` first")
        return path

    def model(self) -> ModelArtifact:
        """The run's int8 model (quantize must have run)."""
        return ModelArtifact.load(self.require(self.tflite, "quantize"))


def resolve_config(config: str | Path | None, out: Path | None, overrides: list[str]) -> Config:
    """Config from --config, else the run folder's saved config, else models/demo.yaml defaults."""
    if config is None and out is not None and (Path(out) / "config.yaml").exists():
        config = Path(out) / "config.yaml"
    return load_config(config, overrides)


@dataclass
class Stages:
    """The stages of one run folder. Each returns a typed record (pipeline.results) that the
    next one takes; run alone, a stage reads its inputs' records back from state.json."""

    cfg: Config
    run: RunDir
    log: Log = _quiet
    epoch: Callable[[int, int, dict], None] | None = None
    _ds: object = field(default=None, repr=False)

    @property
    def dataset(self):
        if self._ds is None:
            from pipeline.data import load_dataset

            self.log(f"loading data ({self.cfg.data.source})")
            self._ds = load_dataset(self.cfg.data, self.cfg.preprocess)
            ds = self._ds
            self.log(f"data: {len(ds.x_train)} train / {len(ds.x_val)} val / {len(ds.x_test)} "
                     f"test, {ds.num_classes} classes, {ds.x_train.shape[1:]}")
        return self._ds

    def train(self):
        """Train the float model; returns (keras model, TrainSummary)."""
        from pipeline.train import train

        self.run.root.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.run.config)
        ds = self.dataset
        self.log(f"training {self.cfg.model.arch} alpha={self.cfg.model.alpha:g} for "
                 f"{self.cfg.train.epochs} epochs")
        res = train(self.cfg, ds, self.run.root, progress=self.epoch)
        summary = TrainSummary(round(res.seconds, 2), res.best_epoch, self.cfg.train.epochs,
                               res.history, ds.digest, list(ds.class_names))
        self.run.save("train", summary)
        return res.model, summary

    def _keras_model(self):
        import keras

        return keras.saving.load_model(self.run.require(self.run.keras, "train"))

    def class_names(self) -> list[str]:
        trained = self.run.load("train")
        return trained.class_names if trained else list(self.dataset.class_names)

    def quantize(self, model=None) -> tuple[ModelArtifact, QuantizeSummary]:
        """Full-int8 model.tflite from the float model (PTQ, QAT if asked and better)."""
        import numpy as np

        from pipeline.data import scale_pixels
        from pipeline.model import export_copy
        from pipeline.quantize import lint, quantize

        model = model or self._keras_model()
        ds = self.dataset
        n = min(self.cfg.quantize.representative_samples, len(ds.x_train))
        idx = np.random.default_rng(self.cfg.data.seed).permutation(len(ds.x_train))[:n]
        rep = scale_pixels(ds.x_train[idx], self.cfg.preprocess)
        self.log(f"int8 quantization with {n} representative samples")
        m1 = export_copy(model, self.cfg.model, ds.num_classes)
        data = quantize(m1, rep, per_channel=self.cfg.quantize.per_channel)
        info = {"method": "ptq"}
        if self.cfg.quantize.qat_epochs > 0:
            data, info = self._maybe_qat(model, data, rep)
        self.run.tflite.write_bytes(data)
        art = ModelArtifact.load(self.run.tflite)
        rep_lint = lint(art)
        self.log("ops: " + ", ".join(f"{n} v{v}" for n, v in rep_lint.ops))
        summary = QuantizeSummary(art.hash, art.size, [list(o) for o in rep_lint.ops], **info)
        self.run.save("quantize", summary)
        return art, summary

    def _maybe_qat(self, model, ptq: bytes, rep) -> tuple[bytes, dict]:
        """QAT fine-tune; keep it only if its int8 validation accuracy beats PTQ's."""
        from pipeline.data import scale_pixels
        from pipeline.evaluate import evaluate
        from pipeline.qat import qat_finetune

        ds, q = self.dataset, self.cfg.quantize
        self.log(f"quantization-aware fine-tune for {q.qat_epochs} epochs")
        qat = qat_finetune(self.cfg, model, scale_pixels(ds.x_train, self.cfg.preprocess),
                           ds.y_train, rep, ds.num_classes, epochs=q.qat_epochs, lr=q.qat_lr)
        x, y = (ds.x_val, ds.y_val) if len(ds.x_val) else (ds.x_train, ds.y_train)
        xf = scale_pixels(x, self.cfg.preprocess)
        a_ptq = evaluate(xf, y, ds.class_names, tflite_bytes=ptq, tflm=False).int8.accuracy
        a_qat = evaluate(xf, y, ds.class_names, tflite_bytes=qat, tflm=False).int8.accuracy
        keep = a_qat > a_ptq
        self.log(f"int8 val accuracy: PTQ {a_ptq:.2%}, QAT {a_qat:.2%} -> keeping "
                 f"{'QAT' if keep else 'PTQ'}")
        return (qat if keep else ptq), {"method": "qat" if keep else "ptq",
                                        "ptq_val_accuracy": a_ptq, "qat_val_accuracy": a_qat}

    def _split(self, split: str = "test"):
        """The evaluation split (the validation split when there is no test split)."""
        ds = self.dataset
        x, y = ds.split(split)
        if len(x) == 0:
            x, y, split = ds.x_val, ds.y_val, "val"
        return x, y, split

    def evaluate(self, model=None, art: ModelArtifact | None = None,
                 split: str = "test") -> EvaluateSummary:
        """Float / int8 / TFLM accuracy; keeps the TFLM outputs for the device stage."""
        import numpy as np

        from pipeline.data import scale_pixels
        from pipeline.evaluate import evaluate, model_inputs, write_outputs

        model = model or self._keras_model()
        art = art or self.run.model()
        x, y, split = self._split(split)
        n = min(len(x), self.cfg.evaluate.limit or len(x))
        self.log(f"evaluating float / int8 / TFLM on {n} {split} samples")
        xf = scale_pixels(x, self.cfg.preprocess)
        ev = evaluate(xf, y, self.dataset.class_names, model, art.data, tflm=True,
                      limit=self.cfg.evaluate.limit)
        files = write_outputs(ev, self.run.root)
        ref = None
        if ev.tflm_outputs is not None:
            np.savez(self.run.reference, x=model_inputs(xf[:n], art.data), outputs=ev.tflm_outputs)
            ref = self.run.reference.name
        summary = EvaluateSummary(art.hash, split, ev.to_dict(), files, ref)
        self.run.save("evaluate", summary)
        return summary

    def profile(self, art: ModelArtifact | None = None) -> Profile:
        """MACs, bytes, the TFLM arena (measured) and the AOT arena (planned), once."""
        from pipeline.profile import format_table, profile_tflite

        art = art or self.run.model()
        self.log("profiling (MACs, weights, TFLM and AOT arenas)")
        prof = profile_tflite(art)
        (self.run.root / "profile.md").write_text(format_table(prof) + "\n")
        (self.run.root / "profile.json").write_text(json.dumps(prof.to_dict(), indent=1))
        self.run.save("profile", prof)
        return prof

    def export(self, art: ModelArtifact | None = None, prof: Profile | None = None,
               backend: str | None = None) -> ExportSummary:
        """C sources for TFLite Micro and/or the AOT engine, from the profiled model."""
        from pipeline.export import export_tflm

        art = art or self.run.model()
        prof = prof or self.run.load("profile", art.hash)
        backend = backend or self.cfg.export.backend
        out = ExportSummary(art.hash)
        if backend in ("tflm", "both"):
            arena = prof.arena_bytes_with_margin if prof else None
            res = export_tflm(art, self.run.tflm_c, self.class_names(), self.cfg.preprocess,
                              arena)
            self.log(f"TFLM C sources -> {res.out_dir}")
            out.tflm_dir, out.tflm_arena_bytes = str(res.out_dir), res.arena_bytes
        if backend in ("aot", "both"):
            from pipeline.aot import export_aot

            res = export_aot(art, self.run.aot_c, prefix=self.cfg.export.prefix,
                             stripe=self.cfg.export.stripe)
            self.log(f"AOT C sources -> {res.out_dir} (arena {res.arena_bytes:,} B)")
            out.aot_dir, out.aot_arena_bytes = str(res.out_dir), res.arena_bytes
        self.run.save("export", out)
        return out

    def test_inputs(self, art: ModelArtifact, split: str = "test"):
        """The evaluation split as the model's input tensors (quantized), with labels."""
        from pipeline.data import scale_pixels
        from pipeline.evaluate import model_inputs

        x, y, _ = self._split(split)
        return model_inputs(scale_pixels(x, self.cfg.preprocess), art.data), y

    def _reference(self, art: ModelArtifact, x, evaluated: EvaluateSummary | None):
        """evaluate's host TFLM outputs for `x`, if it computed them for this model and input."""
        import numpy as np

        evaluated = evaluated or self.run.load("evaluate", art.hash)
        if evaluated is None or evaluated.model_hash != art.hash or not evaluated.reference:
            return None
        path = self.run.root / evaluated.reference
        if not path.exists():
            return None
        with np.load(path) as z:
            rx, out = z["x"], z["outputs"]
        if len(x) > len(rx) or not np.array_equal(rx[:len(x)], x):
            return None
        return out[:len(x)]

    def hil(self, art: ModelArtifact | None = None, exported: ExportSummary | None = None,
            evaluated: EvaluateSummary | None = None, progress=None) -> HilSummary:
        """Build (from c/aot when it holds this model), flash or emulate, stream the test split,
        compare with the host TFLM outputs that evaluate already computed."""
        from pipeline.hil.runner import run_hil

        h = self.cfg.hil
        if not h.env:
            raise ModelError("no device: set hil.env (e.g. --set hil.env=qemu-m4)")
        art = art or self.run.model()
        x, y = self.test_inputs(art)
        if h.limit is not None:
            x, y = x[:h.limit], y[:h.limit]
        exported = exported or self.run.load("export", art.hash)
        c_dir = (exported.aot_dir if h.backend == "aot" else exported.tflm_dir) \
            if exported else None
        reference = self._reference(art, x, evaluated)
        if reference is not None:
            self.log("host reference: the TFLM outputs from evaluate")
        self.log(f"on-device run on {h.env} ({h.backend} backend)")
        summary = run_hil(h.env, art, port=h.port, samples=x, labels=y,
                          out_dir=self.run.root / "hil", backend=h.backend, progress=progress,
                          build_progress=self.log, reference=reference, model_dir=c_dir)
        result = HilSummary(art.hash, h.env, h.backend, summary)
        self.run.save("hil", result)
        return result


def run_all(cfg: Config, out: str | Path, log: Log = _quiet,
            epoch: Callable[[int, int, dict], None] | None = None,
            samples: Callable[[int, int, str], None] | None = None) -> dict:
    """Every stage into `out`; returns the report dict (also written as JSON and Markdown)."""
    start = time.perf_counter()
    st = Stages(cfg, RunDir(out), log, epoch)
    model, _ = st.train()
    art, _ = st.quantize(model)
    evaluated = st.evaluate(model, art)
    prof = st.profile(art)
    exported = st.export(art, prof)
    if cfg.hil.env:
        st.hil(art, exported, evaluated, progress=samples)
    seconds = time.perf_counter() - start
    return write_report(st.run, cfg, seconds)


def write_report(run: RunDir, cfg: Config | None = None, seconds: float | None = None) -> dict:
    """report.json + report.md from the stage records the run folder holds."""
    cfg = cfg or load_config(run.config)
    q = run.load("quantize")
    h = q.model_hash if q else None
    tr, ev = run.load("train"), run.load("evaluate", h)
    prof, hil = run.load("profile", h), run.load("hil", h)

    files = {"config": "config.yaml", "keras": "model.keras", "tflite": "model.tflite",
             "curves": "curves.png", "confusion": "confusion.png", "profile": "profile.md",
             "tflm_c": "c/tflm", "aot_c": "c/aot", "report_md": "report.md"}
    files = {k: v for k, v in files.items() if (run.root / v).exists()}
    e = ev.evaluation if ev else {}
    report = {
        "tinypipe_version": __version__,
        "name": cfg.name,
        "run_dir": str(run.root),
        "data": {"source": cfg.data.source, "digest": tr.data_digest if tr else None,
                 "class_names": tr.class_names if tr else None,
                 "split": ev.split if ev else None, "samples": e.get("n")},
        "accuracy": {**{k: ev.accuracy(k) if ev else None for k in ("float", "int8", "tflm")},
                     "int8_unavailable": e.get("int8_unavailable")},
        "agreement": {"int8_vs_tflm": e.get("agreement_predictions"),
                      "int8_vs_tflm_exact": e.get("agreement_exact")},
        "model": {"arch": cfg.model.arch, "alpha": cfg.model.alpha,
                  "input": [cfg.preprocess.height, cfg.preprocess.width, cfg.preprocess.channels],
                  "model_hash": h,
                  "tflite_bytes": prof.tflite_bytes if prof else None,
                  "arena_bytes": prof.arena_bytes if prof else None,
                  "arena_bytes_with_margin": prof.arena_bytes_with_margin if prof else None,
                  "aot_arena_bytes": prof.aot_arena_bytes if prof else None,
                  "macs": prof.macs if prof else None, "params": prof.params if prof else None,
                  "weight_bytes": prof.param_bytes if prof else None,
                  "ops": q.ops if q else None},
        "device": _device(hil),
        "train": {"seconds": tr.seconds if tr else None,
                  "best_epoch": tr.best_epoch if tr else None, "epochs": cfg.train.epochs},
        "preprocess": {"pixel_scale": cfg.preprocess.pixel_scale,
                       "pixel_offset": cfg.preprocess.pixel_offset,
                       "channels": cfg.preprocess.channels, "resize": cfg.preprocess.resize},
        "wall_seconds": round(seconds, 1) if seconds is not None else None,
        "host": platform.platform(),
        "files": files,
    }
    run.report_json.write_text(json.dumps(report, indent=1))
    run.report_md.write_text(_markdown(report, run))
    return report


def _device(hil: HilSummary | None) -> dict | None:
    """The on-device summary in report.json (None when the run had no device stage)."""
    if not hil:
        return None
    h = hil.summary
    kind = h.get("counter")
    lat = (h.get("latency") or {}).get(kind) or {}
    return {"env": hil.env, "backend": hil.backend, "samples": h.get("samples"),
            "accuracy": h.get("accuracy"), "host_tflm_accuracy": h.get("host_accuracy"),
            "bit_exact_rate": h.get("bit_exact_rate"), "counter": kind,
            f"{kind}_per_inference": lat.get("mean"), "latency": lat,
            "throughput_sps": h.get("throughput_sps"), "report": "hil/hil.md"}


def _pct(v) -> str:
    return f"{v:.2%}" if isinstance(v, (int, float)) else "n/a"


def _num(v) -> str:
    return f"{v:,}" if isinstance(v, int) else "n/a"


def _device_rows(d: dict | None) -> list[str]:
    if not d:
        return []
    kind = d["counter"]
    return [f"| on-device accuracy ({d['env']}, {d['backend']}) | {_pct(d['accuracy'])} |",
            f"| on-device outputs byte-identical to host TFLM | {_pct(d['bit_exact_rate'])} |",
            f"| {kind} per inference (mean) | {_num(round(d[f'{kind}_per_inference']))} |"]


def _markdown(r: dict, run: RunDir) -> str:
    m, a = r["model"], r["accuracy"]
    lines = [
        f"# tinypipe run: {r['name']}",
        "",
        f"{m['arch']} alpha={m['alpha']:g}, input {'x'.join(map(str, m['input']))}, "
        f"{len(r['data']['class_names'] or [])} classes, data `{r['data']['source']}`"
        f" ({r['data']['samples']} {r['data']['split']} samples).",
        "",
        "| metric | value |",
        "|---|---|",
        f"| accuracy, float (Keras) | {_pct(a['float'])} |",
        f"| accuracy, int8 (TFLite) | {a.get('int8_unavailable') or _pct(a['int8'])} |",
        f"| accuracy, int8 (TFLite Micro kernels) | {_pct(a['tflm'])} |",
        f"| top-1 agreement int8 vs TFLM | {_pct(r['agreement']['int8_vs_tflm'])} |",
        f"| byte-identical outputs int8 vs TFLM | {_pct(r['agreement']['int8_vs_tflm_exact'])} |",
        f"| MACs | {_num(m['macs'])} |",
        f"| parameters | {_num(m['params'])} |",
        f"| model flash (.tflite) | {_num(m['tflite_bytes'])} B |",
        f"| TFLM arena (measured) | {_num(m['arena_bytes'])} B |",
        f"| AOT arena (static plan) | {_num(m['aot_arena_bytes'])} B |",
        f"| training time | {r['train']['seconds']} s |",
        *_device_rows(r.get("device")),
        f"| wall time of the run | {r['wall_seconds']} s |",
        "",
    ]
    if (run.root / "curves.png").exists():
        lines += ["## Training curves", "", "![curves](curves.png)", ""]
    if (run.root / "confusion.png").exists():
        lines += ["## Confusion matrix", "", "![confusion](confusion.png)", ""]
    if (run.root / "profile.md").exists():
        lines += ["## Profile", "", (run.root / "profile.md").read_text(), ""]
    return "\n".join(lines)
