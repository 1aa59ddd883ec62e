"""Budget-first model search: measure every candidate exactly, then train only those that fit.

1. Enumerate family x alpha x resolution x head width.
2. Build and int8-convert each candidate untrained (calibrated on a few real images), and
   measure flash (.tflite bytes), RAM (TFLM arena from the interpreter, and the AOT plan) and
   MACs exactly.
3. Drop candidates over any budget.
4. Train the survivors as Ray Tune trials under the ASHA scheduler (asynchronous successive
   halving): every trial reports validation accuracy after each epoch; at 2, 4, 8 ... times the
   first rung's epochs a trial continues only if it is in the better half of those that reached
   that rung. Trials run in parallel on a local Ray or on a cluster (`address`); the test split
   is never used.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import re
import shutil
import tempfile
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
    status: str = ""  # trial outcome: completed, stopped at N epochs, failed: ..., not started
    val_history: list[float] = field(default_factory=list)  # validation accuracy per epoch

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
    max_epochs: int = 0
    ray: dict = field(default_factory=dict)  # cluster the trials ran on


def default_max_epochs(start_epochs: int, trials: int) -> int:
    """Enough rungs to halve `trials` down to one, at most three halvings."""
    halvings = min(3, max(0, math.ceil(math.log2(max(1, trials)))))
    return start_epochs * 2**halvings


def search(base: Config, budgets: dict[str, int], minutes: float, out_dir: str | Path,
           candidates: list[Candidate] | None = None, start_epochs: int = 2,
           log: Callable[[str], None] = lambda s: None,
           train_samples: int | None = None, max_epochs: int | None = None,
           address: str | None = None, cpus_per_trial: float = 1.0,
           gpus_per_trial: float = 0.0) -> SearchResult:
    """Measure all candidates, then train the ones within budget as Ray Tune trials under ASHA.

    Args:
        base: config every candidate starts from (data, recipe, stem stride, blocks).
        budgets: `flash`, `ram` and `macs` limits.
        minutes: wall time for the whole search, measuring included.
        out_dir: where search.md, search.json and search.png go.
        candidates: the space (default: every family x alpha x resolution x head).
        start_epochs: epochs of ASHA's first rung (grace period); each rung doubles them.
        train_samples: train the candidates on a seeded subset of the training split
            (validation stays whole), so a short search can rank more of them.
        max_epochs: epochs of a trial that is never stopped (default: enough rungs to halve
            the trials to one, at most three halvings).
        address: an existing Ray cluster to join (None = start a local Ray on this machine's
            CPUs and stop it afterwards).
        cpus_per_trial, gpus_per_trial: resources Ray reserves for each trial.
    """
    from pipeline.data import Dataset, load_dataset

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cpus_per_trial <= 0 or gpus_per_trial < 0:
        raise ConfigError(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0; got "
                          f"{cpus_per_trial:g} and {gpus_per_trial:g}")
    ds = load_dataset(base.data, base.preprocess)
    if train_samples and train_samples < len(ds.x_train):
        keep = np.sort(np.random.default_rng(base.data.seed).permutation(
            len(ds.x_train))[:train_samples])
        ds = Dataset(ds.x_train[keep], ds.y_train[keep], ds.x_val, ds.y_val, ds.x_test,
                     ds.y_test, ds.class_names, ds.source, ds.digest)
        log(f"training candidates on {train_samples:,} of the training images")
    # The test split is never used to rank candidates: trials see train and validation only.
    ds = Dataset(ds.x_train, ds.y_train, ds.x_val, ds.y_val, ds.x_test[:0], ds.y_test[:0],
                 ds.class_names, ds.source, ds.digest)
    cands = candidates or enumerate_candidates(base.preprocess.channels)
    calib = ds.x_train[np.random.default_rng(0).permutation(len(ds.x_train))[:16]]
    for i, c in enumerate(cands, 1):
        measure(c, base, calib, ds.num_classes, budgets)
        log(f"[{i}/{len(cands)}] {c.name}: MACs {c.macs or 0:,}, flash {c.flash_bytes or 0:,}, "
            f"RAM {c.ram_bytes or c.aot_ram_bytes or 0:,} -> {'fits' if c.fits else c.reason}")
    pool = sorted((c for c in cands if c.fits), key=lambda c: -(c.macs or 0))
    epochs = max_epochs or default_max_epochs(start_epochs, len(pool))
    if epochs < start_epochs:
        raise ConfigError(f"--max-epochs {epochs} is below --start-epochs {start_epochs}")
    res = SearchResult(cands, budgets, train_samples=len(ds.x_train), max_epochs=epochs)
    remaining = minutes * 60 - (time.perf_counter() - t0)
    if pool and remaining > 0:
        res.ray = run_trials(pool, base, ds, epochs, start_epochs, remaining, log, address,
                             cpus_per_trial, gpus_per_trial)
    for c in pool:
        c.status = c.status or "not started (time)"
    res.rounds = _rounds(pool, start_epochs, epochs)
    ranked = [c for c in cands if c.accuracy is not None]
    res.best = max(ranked, key=lambda c: (c.epochs_trained, c.accuracy)) if ranked else None
    res.seconds = time.perf_counter() - t0
    write_outputs(res, out)
    return res


def _rounds(pool: list[Candidate], start: int, end: int) -> list[dict]:
    """ASHA's rungs as rounds: every trial that reached a rung, with its accuracy there."""
    rounds, e = [], start
    while e <= end:
        trained = [{"name": c.name, "accuracy": c.val_history[e - 1]} for c in pool
                   if len(c.val_history) >= e]
        if not trained:
            break
        rounds.append({"epochs": e, "trained": trained})
        e *= 2
    return rounds


def _ray_init(address: str | None, log: Callable[[str], None]) -> tuple[bool, str | None]:
    """Join `address`, or start a local Ray; returns (started here, its temp folder)."""
    import logging

    import ray

    for name in ("ray", "ray.tune", "ray.air", "ray.train"):  # Tune's own tables and errors:
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the table here reports them
    common = {"include_dashboard": False, "log_to_driver": False, "logging_level": "error"}
    if address:
        try:
            ray.init(address=address, **common)
        except (ConnectionError, ValueError, RuntimeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            hint = "" if os.environ.get("RAY_AUTH_MODE") else \
                "; a cluster with token authentication also needs RAY_AUTH_MODE=token"
            raise ConfigError(f"--address {address}: cannot join the Ray cluster ({first}"
                              f"{hint})") from None
        log(f"joined the Ray cluster at {address}")
        return False, None
    # a temp folder of its own, so that nothing of this Ray outlives the search
    tmp = tempfile.mkdtemp(prefix="tinypipe-ray-")
    ray.init(_temp_dir=tmp, **common)
    log(f"started a local Ray with {int(ray.cluster_resources().get('CPU', 0))} CPUs")
    return True, tmp


def run_trials(pool: list[Candidate], base: Config, ds, max_epochs: int, grace: int,
               seconds: float, log: Callable[[str], None], address: str | None = None,
               cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0) -> dict:
    """Train `pool` as Ray Tune trials under ASHA; fills accuracy, epochs and status in place."""
    try:
        import ray
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
    except ImportError:
        raise ConfigError("tinypipe search trains on Ray Tune, which is not installed: "
                          "pip install 'tinypipe[distributed]'") from None
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no progress tables on the terminal
    started, ray_tmp = _ray_init(address, log)
    by_name = {c.name: c for c in pool}
    try:
        info = {"address": address or "local", "resources": {
            k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")},
            "cpus_per_trial": cpus_per_trial, "gpus_per_trial": gpus_per_trial}
        specs = {c.name: (c.arch, c.alpha, c.resolution, c.head_channels) for c in pool}
        trainable = tune.with_resources(
            tune.with_parameters(_trial, base=base, ds=ds, specs=specs, epochs=max_epochs,
                                 cpus=cpus_per_trial),
            {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
        scheduler = ASHAScheduler(time_attr="training_iteration", metric="val_accuracy",
                                  mode="max", max_t=max_epochs, grace_period=grace,
                                  reduction_factor=2)
        with tempfile.TemporaryDirectory(prefix="tinypipe-tune-") as storage:
            tuner = tune.Tuner(
                trainable,
                param_space={"candidate": tune.grid_search(list(specs))},
                tune_config=tune.TuneConfig(scheduler=scheduler, time_budget_s=seconds,
                                            trial_name_creator=_trial_name,
                                            trial_dirname_creator=_trial_name),
                run_config=tune.RunConfig(
                    name="search", storage_path=storage, verbose=0,
                    failure_config=tune.FailureConfig(max_failures=0),
                    callbacks=[_log_callback(log)]))
            grid = tuner.fit()
            for r in grid:
                c = by_name[r.config["candidate"]]
                df = r.metrics_dataframe
                if df is not None and "val_accuracy" in df:
                    c.val_history = [float(v) for v in df["val_accuracy"].dropna()]
                    c.train_seconds = float(df["epoch_seconds"].sum())
                if c.val_history:
                    c.accuracy, c.epochs_trained = max(c.val_history), len(c.val_history)
                c.status = _status(r.error, c.epochs_trained, max_epochs)
    finally:
        if started:
            ray.shutdown()
            shutil.rmtree(ray_tmp, ignore_errors=True)
    return info


def _trial_name(trial) -> str:
    return str(trial.config["candidate"])


def _status(error: BaseException | None, epochs: int, max_epochs: int) -> str:
    if error is None:
        if epochs >= max_epochs:
            return "completed"
        return f"stopped at {epochs} epochs" if epochs else "not started (time)"
    cause = getattr(error, "cause", None) or error
    if type(cause).__name__ in ("ActorDiedError", "RayActorError", "WorkerCrashedError",
                                "ActorUnavailableError", "NodeDiedError"):
        return "failed: worker died"
    text = (str(cause).strip().splitlines() or [""])[0][:160]
    return f"failed: {type(cause).__name__}: {text}" if text else \
        f"failed: {type(cause).__name__}"


def _log_callback(log: Callable[[str], None]):
    from ray import tune

    class Progress(tune.Callback):
        """One line per reported epoch and per failed trial (runs in the driver)."""

        def __init__(self, log: Callable[[str], None]):
            self.log = log

        # Tune pickles its run config to resume experiments; a console is not picklable, and
        # a resumed copy has nobody to print to.
        def __getstate__(self):
            return {"log": None}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if self.log is not None:
                self.log(f"{trial.config['candidate']}: epoch "
                         f"{result.get('training_iteration')} -> val "
                         f"{result.get('val_accuracy', 0.0):.2%} (pid {result.get('pid')} on "
                         f"{result.get('hostname')})")

        def on_trial_error(self, iteration, trials, trial, **info):
            if self.log is not None:
                self.log(f"{trial.config['candidate']}: trial failed")

    return Progress(log)


def _trial(config: dict, base: Config, ds, specs: dict, epochs: int, cpus: float) -> None:
    """One Ray Tune trial: train a candidate, report validation accuracy after every epoch."""
    import tensorflow as tf
    from ray import tune

    # TensorFlow would use every core of the node; the trial holds only `cpus` of them.
    tf.config.threading.set_intra_op_parallelism_threads(max(1, int(cpus)))
    tf.config.threading.set_inter_op_parallelism_threads(max(1, int(cpus)))
    from pipeline.data import Dataset, preprocess
    from pipeline.train import train

    arch, alpha, resolution, head = specs[config["candidate"]]
    c = Candidate(arch, alpha, resolution, head)
    p: PreprocessConfig = dataclasses.replace(base.preprocess, height=resolution,
                                              width=resolution)
    cfg = dataclasses.replace(base, preprocess=p, model=_model_cfg(base.model, c),
                              train=dataclasses.replace(base.train, epochs=epochs))
    if (ds.x_train.shape[1], ds.x_train.shape[2]) != (resolution, resolution):
        ds = Dataset(preprocess(ds.x_train, p), ds.y_train, preprocess(ds.x_val, p), ds.y_val,
                     ds.x_test, ds.y_test, ds.class_names, ds.source, ds.digest)

    def report(epoch: int, _epochs: int, logs: dict) -> None:
        acc = logs.get("val_accuracy", logs.get("accuracy", 0.0))
        tune.report({"val_accuracy": float(acc), "epoch_seconds": float(logs.get("seconds", 0))})

    train(cfg, ds, progress=report)


def write_outputs(res: SearchResult, out: Path) -> None:
    """search.json, search.md (table) and search.png (accuracy against each budget)."""
    rows = [dataclasses.asdict(c) | {"name": c.name} for c in res.candidates]
    (out / "search.json").write_text(json.dumps(
        {"budgets": res.budgets, "train_samples": res.train_samples, "rounds": res.rounds,
         "max_epochs": res.max_epochs, "scheduler": "ASHA (reduction factor 2)",
         "ray": res.ray, "seconds": round(res.seconds, 1),
         "best": res.best.name if res.best else None, "candidates": rows}, indent=1))
    lines = ["| candidate | MACs | flash B | TFLM RAM B | AOT RAM B | fits | val acc | epochs "
             "| trial |",
             "|---|---:|---:|---:|---:|---|---:|---:|---|"]
    for c in sorted(res.candidates, key=lambda c: (not c.fits, -(c.accuracy or -1), c.name)):
        acc = f"{c.accuracy:.2%}" if c.accuracy is not None else ""
        lines.append(f"| {c.name} | {c.macs or 0:,} | {c.flash_bytes or 0:,} | "
                     f"{c.ram_bytes or 0:,} | {c.aot_ram_bytes or 0:,} | "
                     f"{'yes' if c.fits else 'no (' + c.reason + ')'} | {acc} | "
                     f"{c.epochs_trained or ''} | {c.status.replace('|', '/')} |")
    b = res.budgets
    head = (f"# Search\n\nBudgets: flash {b['flash']:,} B, RAM {b['ram']:,} B, MACs "
            f"{b['macs']:,}. Best: **{res.best.name if res.best else 'none'}**. "
            f"{res.seconds / 60:.1f} min; candidates trained on {res.train_samples:,} images "
            f"as Ray Tune trials under ASHA, up to {res.max_epochs} epochs (val acc = best "
            f"validation accuracy after the epochs shown).\n\n"
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
