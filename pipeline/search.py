"""Budget-first model search: measure every candidate exactly, then train only those that fit.

1. Enumerate family x alpha x resolution x head width.
2. Build and int8-convert each candidate untrained (calibrated on a few real images), and
   measure flash (.tflite bytes), RAM (TFLM arena from the interpreter, and the AOT plan) and
   MACs exactly.
3. Drop candidates over any budget.
4. Successive halving within the time given: train the largest survivors briefly, keep the
   better half, train those longer, until one remains or time runs out.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import Config, ModelConfig, PreprocessConfig
from pipeline.errors import ConfigError, TinypipeError

FAMILIES = ("mobilenet_v1", "mobilenet_v2", "dense1_mobilenet", "dense2_mobilenet")
ALPHAS = (0.25, 0.35, 0.5, 0.75, 1.0)
RESOLUTIONS = (32, 48, 64, 96)
HEADS = (None, 256)


@dataclass
class Candidate:
    arch: str
    alpha: float
    resolution: int
    head_channels: int | None
    flash_bytes: int | None = None
    ram_bytes: int | None = None  # TFLM arena measured by the interpreter
    aot_ram_bytes: int | None = None
    macs: int | None = None
    fits: bool = False
    reason: str = ""
    accuracy: float | None = None  # best validation accuracy reached
    epochs_trained: int = 0
    train_seconds: float = 0.0

    @property
    def name(self) -> str:
        head = f"-h{self.head_channels}" if self.head_channels else ""
        return f"{self.arch}-{self.alpha:g}-{self.resolution}{head}"


def parse_size(text: str | int | float, what: str) -> int:
    """'128KB' -> 131072, '12.5M' -> 12500000 (K/M/G for counts, KB/MB/KiB for bytes)."""
    if isinstance(text, (int, float)):
        return int(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)(i?[bB])?\s*", str(text))
    if not m:
        raise ConfigError(f"{what}: cannot read {text!r}; use e.g. 128KB, 64KiB or 12.5M")
    value, unit, byte = float(m.group(1)), m.group(2).upper(), m.group(3)
    base = 1024 if byte else 1000
    return int(round(value * base ** {"": 0, "K": 1, "M": 2, "G": 3}[unit]))


def enumerate_candidates(channels: int, families=FAMILIES, alphas=ALPHAS,
                         resolutions=RESOLUTIONS, heads=HEADS) -> list[Candidate]:
    return [Candidate(f, a, r, h) for f, a, r, h in
            itertools.product(families, alphas, resolutions, heads)]


def _model_cfg(base: ModelConfig, c: Candidate) -> ModelConfig:
    first_stride = 1 if c.resolution <= 48 else 2  # small inputs keep their resolution early
    return dataclasses.replace(base, arch=c.arch, alpha=c.alpha, head_channels=c.head_channels,
                               first_stride=first_stride, weights=None)


def measure(c: Candidate, base: Config, calib: np.ndarray, num_classes: int,
            budgets: dict[str, int]) -> Candidate:
    """Build, convert and measure one untrained candidate; sets flash/RAM/MACs and `fits`."""
    from pipeline.aot import export_aot
    from pipeline.data import preprocess, scale_pixels
    from pipeline.model import build_model
    from pipeline.profile import profile_tflite
    from pipeline.quantize import quantize

    p = dataclasses.replace(base.preprocess, height=c.resolution, width=c.resolution)
    mcfg = _model_cfg(base.model, c)
    try:
        model = build_model(mcfg, (c.resolution, c.resolution, p.channels), num_classes,
                            batch_size=1)
        from pipeline.profile import profile_keras

        c.macs = profile_keras(model)["macs"]
        if c.macs > budgets["macs"]:  # no need to convert what is already over budget
            c.reason = "MACs"
            return c
        x = scale_pixels(preprocess(calib, p), p)
        _settle_untrained(model, x)
        data = quantize(model, x)
        c.flash_bytes = len(data)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            c.aot_ram_bytes = export_aot(data, Path(tmp) / "aot").arena_bytes
        try:
            c.ram_bytes = profile_tflite(data).arena_bytes
        except TinypipeError:  # an untrained net can make the interpreter abort
            c.ram_bytes = None
    except TinypipeError as e:
        c.reason = f"error: {e}"
        return c
    ram = c.ram_bytes if c.ram_bytes is not None else c.aot_ram_bytes
    over = [k for k, v in (("flash", c.flash_bytes), ("ram", ram)) if v > budgets[k]]
    c.reason = ", ".join(over)
    c.fits = not over
    return c


def _settle_untrained(model, x: np.ndarray) -> None:
    """Give an untrained net realistic activation ranges before int8 conversion.

    At initialisation BatchNorm's moving statistics are (0, 1), so activations shrink layer
    after layer and the softmax input scale collapses; TFLM then refuses the model (or aborts).
    Sizes do not depend on the values, so fix the statistics from real images and scale the
    logits to a trained-like range.
    """
    import keras

    for _ in range(30):  # BatchNorm updates its moving statistics on training-mode calls
        model(x, training=True)
    logits = model.get_layer("logits")
    feats = keras.Model(model.input, logits.input)(x[:1])
    out = np.asarray(feats) @ np.asarray(logits.kernel)
    spread = float(np.std(out)) or 1.0
    logits.kernel.assign(np.asarray(logits.kernel) * (3.0 / spread))


@dataclass
class SearchResult:
    candidates: list[Candidate]
    budgets: dict[str, int]
    rounds: list[dict] = field(default_factory=list)
    best: Candidate | None = None
    seconds: float = 0.0
    train_samples: int = 0  # training images each candidate saw per epoch


def search(base: Config, budgets: dict[str, int], minutes: float, out_dir: str | Path,
           candidates: list[Candidate] | None = None, start_epochs: int = 2,
           log: Callable[[str], None] = lambda s: None,
           train_samples: int | None = None) -> SearchResult:
    """Measure all candidates, then successive halving on the ones within budget.

    `train_samples` trains the candidates on a seeded random subset of the training split
    (validation stays whole), so a short search can rank more candidates."""
    from pipeline.data import Dataset, load_dataset

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(base.data, base.preprocess)
    if train_samples and train_samples < len(ds.x_train):
        keep = np.sort(np.random.default_rng(base.data.seed).permutation(
            len(ds.x_train))[:train_samples])
        ds = Dataset(ds.x_train[keep], ds.y_train[keep], ds.x_val, ds.y_val, ds.x_test,
                     ds.y_test, ds.class_names, ds.source, ds.digest)
        log(f"training candidates on {train_samples:,} of the training images")
    cands = candidates or enumerate_candidates(base.preprocess.channels)
    calib = ds.x_train[np.random.default_rng(0).permutation(len(ds.x_train))[:16]]
    for i, c in enumerate(cands, 1):
        measure(c, base, calib, ds.num_classes, budgets)
        log(f"[{i}/{len(cands)}] {c.name}: MACs {c.macs or 0:,}, flash {c.flash_bytes or 0:,}, "
            f"RAM {c.ram_bytes or c.aot_ram_bytes or 0:,} -> {'fits' if c.fits else c.reason}")
    res = SearchResult(cands, budgets, train_samples=len(ds.x_train))
    pool = sorted((c for c in cands if c.fits), key=lambda c: -(c.macs or 0))
    epochs = start_epochs
    deadline = t0 + minutes * 60
    # start with as many as the time allows for a first short round (at most 8)
    pool = pool[:8]
    while pool and time.perf_counter() < deadline:
        rnd = {"epochs": epochs, "trained": []}
        for c in pool:
            if time.perf_counter() >= deadline:
                break
            _train_candidate(c, base, ds, epochs)
            rnd["trained"].append({"name": c.name, "accuracy": c.accuracy})
            log(f"round {len(res.rounds) + 1}: {c.name} {epochs} epochs -> val {c.accuracy:.2%}")
        res.rounds.append(rnd)
        trained = [c for c in pool if c.epochs_trained == epochs]
        if len(trained) <= 1:
            break
        pool = sorted(trained, key=lambda c: -(c.accuracy or 0))[: max(1, len(trained) // 2)]
        epochs *= 2
    ranked = [c for c in cands if c.accuracy is not None]
    res.best = max(ranked, key=lambda c: (c.epochs_trained, c.accuracy)) if ranked else None
    res.seconds = time.perf_counter() - t0
    write_outputs(res, out)
    return res


def _train_candidate(c: Candidate, base: Config, ds, epochs: int) -> None:
    from pipeline.data import Dataset, preprocess
    from pipeline.train import train

    p: PreprocessConfig = dataclasses.replace(base.preprocess, height=c.resolution,
                                              width=c.resolution)
    cfg = dataclasses.replace(base, preprocess=p, model=_model_cfg(base.model, c),
                              train=dataclasses.replace(base.train, epochs=epochs))
    if (ds.x_train.shape[1], ds.x_train.shape[2]) != (c.resolution, c.resolution):
        ds = Dataset(preprocess(ds.x_train, p), ds.y_train, preprocess(ds.x_val, p), ds.y_val,
                     ds.x_test, ds.y_test, ds.class_names, ds.source, ds.digest)
    r = train(cfg, ds)
    c.accuracy = max(r.history.get("val_accuracy") or r.history.get("accuracy") or [0.0])
    c.epochs_trained = epochs
    c.train_seconds += r.seconds


def write_outputs(res: SearchResult, out: Path) -> None:
    """search.json, search.md (table) and search.png (accuracy against each budget)."""
    rows = [dataclasses.asdict(c) | {"name": c.name} for c in res.candidates]
    (out / "search.json").write_text(json.dumps(
        {"budgets": res.budgets, "train_samples": res.train_samples, "rounds": res.rounds,
         "seconds": round(res.seconds, 1),
         "best": res.best.name if res.best else None, "candidates": rows}, indent=1))
    lines = ["| candidate | MACs | flash B | TFLM RAM B | AOT RAM B | fits | val acc | epochs |",
             "|---|---:|---:|---:|---:|---|---:|---:|"]
    for c in sorted(res.candidates, key=lambda c: (not c.fits, -(c.accuracy or -1), c.name)):
        acc = f"{c.accuracy:.2%}" if c.accuracy is not None else ""
        lines.append(f"| {c.name} | {c.macs or 0:,} | {c.flash_bytes or 0:,} | "
                     f"{c.ram_bytes or 0:,} | {c.aot_ram_bytes or 0:,} | "
                     f"{'yes' if c.fits else 'no (' + c.reason + ')'} | {acc} | "
                     f"{c.epochs_trained or ''} |")
    b = res.budgets
    head = (f"# Search\n\nBudgets: flash {b['flash']:,} B, RAM {b['ram']:,} B, MACs "
            f"{b['macs']:,}. Best: **{res.best.name if res.best else 'none'}**. "
            f"{res.seconds / 60:.1f} min; candidates trained on {res.train_samples:,} images "
            f"(val acc = best validation accuracy after the epochs shown).\n\n"
            f"![search](search.png)\n\n")
    (out / "search.md").write_text(head + "\n".join(lines) + "\n")
    _plot(res, out / "search.png")


def _plot(res: SearchResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (key, attr, label) in zip(axes, (("flash", "flash_bytes", "flash (bytes)"),
                                             ("ram", "ram_bytes", "TFLM RAM (bytes)"),
                                             ("macs", "macs", "MACs")), strict=True):
        for c in res.candidates:
            x = getattr(c, attr) or (c.aot_ram_bytes if attr == "ram_bytes" else None)
            if x is None:
                continue
            y = c.accuracy if c.accuracy is not None else 0.0
            ax.scatter(x, y, c="tab:blue" if c.fits else "tab:gray", s=14,
                       alpha=0.9 if c.accuracy is not None else 0.4)
        ax.axvline(res.budgets[key], color="tab:red", ls="--", lw=1)
        ax.set_xlabel(label)
        ax.set_ylabel("val accuracy (0 = not trained)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
