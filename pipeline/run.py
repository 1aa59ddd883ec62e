"""The run folder and the stages that fill it: train -> quantize -> evaluate -> profile -> export.

Each stage is a plain function reading and writing a run folder, so the CLI commands can run one
stage at a time and `tinypipe run` runs them all.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import __version__
from pipeline.config import Config, load_config, save_config
from pipeline.errors import ModelError

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
    report_json = property(lambda s: s.root / "report.json")
    report_md = property(lambda s: s.root / "report.md")
    state = property(lambda s: s.root / "state.json")

    def load_state(self) -> dict:
        return json.loads(self.state.read_text()) if self.state.exists() else {}

    def update_state(self, **kv) -> dict:
        st = self.load_state()
        st.update(kv)
        self.root.mkdir(parents=True, exist_ok=True)
        self.state.write_text(json.dumps(st, indent=1, default=str))
        return st

    def require(self, path: Path, stage: str) -> Path:
        if not path.exists():
            raise ModelError(f"{path}: missing; run `tinypipe {stage} --out {self.root}` first")
        return path


def resolve_config(config: str | Path | None, out: Path | None, overrides: list[str]) -> Config:
    """Config from --config, else the run folder's saved config, else models/demo.yaml defaults."""
    if config is None and out is not None and (Path(out) / "config.yaml").exists():
        config = Path(out) / "config.yaml"
    return load_config(config, overrides)


@dataclass
class Stages:
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
        from pipeline.train import train

        self.run.root.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.run.config)
        ds = self.dataset
        self.log(f"training {self.cfg.model.arch} alpha={self.cfg.model.alpha:g} for "
                 f"{self.cfg.train.epochs} epochs")
        res = train(self.cfg, ds, self.run.root, progress=self.epoch)
        self.run.update_state(train={"seconds": round(res.seconds, 2), "best_epoch": res.best_epoch,
                                     "history": res.history, "data_digest": ds.digest,
                                     "class_names": ds.class_names})
        return res.model

    def _keras_model(self):
        import keras

        return keras.saving.load_model(self.run.require(self.run.keras, "train"))

    def quantize(self, model=None) -> bytes:
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
        rep_lint = lint(data)
        self.log("ops: " + ", ".join(f"{n} v{v}" for n, v in rep_lint.ops))
        self.run.update_state(quantize={"ops": rep_lint.ops, "tflite_bytes": len(data), **info})
        return data

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

    def evaluate(self, model=None, tflite: bytes | None = None, split: str = "test"):
        from pipeline.data import scale_pixels
        from pipeline.evaluate import evaluate, write_outputs

        model = model or self._keras_model()
        tflite = tflite or self.run.require(self.run.tflite, "quantize").read_bytes()
        ds = self.dataset
        x, y = ds.split(split)
        if len(x) == 0:
            x, y, split = ds.x_val, ds.y_val, "val"
        n = min(len(x), self.cfg.evaluate.limit or len(x))
        self.log(f"evaluating float / int8 / TFLM on {n} {split} samples")
        ev = evaluate(scale_pixels(x, self.cfg.preprocess), y, ds.class_names, model, tflite,
                      tflm=True, limit=self.cfg.evaluate.limit)
        files = write_outputs(ev, self.run.root)
        self.run.update_state(evaluate={"split": split, **ev.to_dict(), "files": files})
        return ev

    def profile(self, tflite: bytes | None = None):
        from pipeline.profile import format_table, profile_tflite

        tflite = tflite or self.run.require(self.run.tflite, "quantize").read_bytes()
        self.log("profiling (MACs, weights, TFLM arena)")
        prof = profile_tflite(tflite)
        aot = self.run.load_state().get("export", {}).get("aot_arena_bytes")
        prof.aot_arena_bytes = aot
        (self.run.root / "profile.md").write_text(format_table(prof) + "\n")
        (self.run.root / "profile.json").write_text(json.dumps(prof.to_dict(), indent=1))
        self.run.update_state(profile={k: v for k, v in prof.to_dict().items() if k != "layers"})
        return prof

    def test_inputs(self, tflite: bytes, split: str = "test"):
        """The evaluation split as the model's input tensors (quantized), with labels."""
        from pipeline.data import scale_pixels
        from pipeline.evaluate import model_inputs

        ds = self.dataset
        x, y = ds.split(split)
        if len(x) == 0:
            x, y = ds.x_val, ds.y_val
        return model_inputs(scale_pixels(x, self.cfg.preprocess), tflite), y

    def hil(self, tflite: bytes | None = None, progress=None) -> dict:
        """Build, flash (or start the emulator), stream the test split, compare with TFLM."""
        from pipeline.hil.runner import run_hil

        h = self.cfg.hil
        if not h.env:
            raise ModelError("no device: set hil.env (e.g. --set hil.env=qemu-m4)")
        tflite = tflite or self.run.require(self.run.tflite, "quantize").read_bytes()
        x, y = self.test_inputs(tflite)
        self.log(f"on-device run on {h.env} ({h.backend} backend)")
        summary = run_hil(h.env, tflite, port=h.port, limit=h.limit, samples=x, labels=y,
                          out_dir=self.run.root / "hil", backend=h.backend, progress=progress,
                          build_progress=self.log)
        self.run.update_state(hil=summary)
        return summary

    def export(self, tflite: bytes | None = None, backend: str | None = None) -> dict:
        from pipeline.export import export_tflm
        from pipeline.profile import arena_with_margin, profile_tflite

        tflite = tflite or self.run.require(self.run.tflite, "quantize").read_bytes()
        backend = backend or self.cfg.export.backend
        st = self.run.load_state()
        names = st.get("train", {}).get("class_names") or self.dataset.class_names
        out = {}
        if backend in ("tflm", "both"):
            arena = st.get("profile", {}).get("arena_bytes")
            arena = arena_with_margin(arena) if arena else \
                profile_tflite(tflite).arena_bytes_with_margin
            res = export_tflm(tflite, self.run.tflm_c, names, self.cfg.preprocess, arena)
            self.log(f"TFLM C sources -> {res.out_dir}")
            out.update(tflm_dir=str(res.out_dir), model_hash=res.model_hash,
                       tflm_arena_bytes=arena)
        if backend in ("aot", "both"):
            from pipeline.aot import export_aot

            res = export_aot(tflite, self.run.aot_c, prefix=self.cfg.export.prefix)
            self.log(f"AOT C sources -> {res.out_dir} (arena {res.arena_bytes:,} B)")
            out.update(aot_dir=str(res.out_dir), aot_arena_bytes=res.arena_bytes)
        self.run.update_state(export=out)
        return out


def run_all(cfg: Config, out: str | Path, log: Log = _quiet,
            epoch: Callable[[int, int, dict], None] | None = None,
            samples: Callable[[int, int, str], None] | None = None) -> dict:
    """Every stage into `out`; returns the report dict (also written as JSON and Markdown)."""
    start = time.perf_counter()
    st = Stages(cfg, RunDir(out), log, epoch)
    model = st.train()
    tflite = st.quantize(model)
    st.evaluate(model, tflite)
    st.profile(tflite)
    st.export(tflite)
    if st.run.load_state().get("export", {}).get("aot_arena_bytes"):
        st.profile(tflite)  # now with the AOT arena beside TFLM's
    if cfg.hil.env:
        st.hil(tflite, progress=samples)
    seconds = time.perf_counter() - start
    return write_report(st.run, cfg, seconds)


def write_report(run: RunDir, cfg: Config | None = None, seconds: float | None = None) -> dict:
    """report.json + report.md from whatever stages the run folder holds."""
    st = run.load_state()
    cfg = cfg or load_config(run.config)
    ev, prof, tr = st.get("evaluate", {}), st.get("profile", {}), st.get("train", {})

    def acc(k):
        return (ev.get(k) or {}).get("accuracy")

    files = {"config": "config.yaml", "keras": "model.keras", "tflite": "model.tflite",
             "curves": "curves.png", "confusion": "confusion.png", "profile": "profile.md",
             "tflm_c": "c/tflm", "aot_c": "c/aot", "report_md": "report.md"}
    files = {k: v for k, v in files.items() if (run.root / v).exists()}
    report = {
        "tinypipe_version": __version__,
        "name": cfg.name,
        "run_dir": str(run.root),
        "data": {"source": cfg.data.source, "digest": tr.get("data_digest"),
                 "class_names": tr.get("class_names"), "split": ev.get("split"),
                 "samples": ev.get("n")},
        "accuracy": {"float": acc("float"), "int8": acc("int8"), "tflm": acc("tflm"),
                     "int8_unavailable": ev.get("int8_unavailable")},
        "agreement": {"int8_vs_tflm": ev.get("agreement_predictions"),
                      "int8_vs_tflm_exact": ev.get("agreement_exact")},
        "model": {"arch": cfg.model.arch, "alpha": cfg.model.alpha,
                  "input": [cfg.preprocess.height, cfg.preprocess.width, cfg.preprocess.channels],
                  "tflite_bytes": prof.get("tflite_bytes"), "arena_bytes": prof.get("arena_bytes"),
                  "arena_bytes_with_margin": prof.get("arena_bytes_with_margin"),
                  "aot_arena_bytes": prof.get("aot_arena_bytes"),
                  "macs": prof.get("macs"), "params": prof.get("params"),
                  "weight_bytes": prof.get("param_bytes"),
                  "ops": st.get("quantize", {}).get("ops")},
        "device": _device(st.get("hil"), cfg),
        "train": {"seconds": tr.get("seconds"), "best_epoch": tr.get("best_epoch"),
                  "epochs": cfg.train.epochs},
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


def _device(h: dict | None, cfg: Config) -> dict | None:
    """The on-device summary in report.json (None when the run had no device stage)."""
    if not h:
        return None
    kind = h.get("counter")
    lat = (h.get("latency") or {}).get(kind) or {}
    return {"env": cfg.hil.env, "backend": cfg.hil.backend, "samples": h.get("samples"),
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
