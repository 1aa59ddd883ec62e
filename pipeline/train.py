"""Seeded Keras training with augmentation, LR schedules, early stopping and curves."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import Config
from pipeline.data import Dataset, scale_pixels
from pipeline.errors import DataError

ProgressFn = Callable[[int, int, dict], None]  # (epoch, epochs, logs)


@dataclass
class TrainResult:
    model: object  # keras.Model (training batch size)
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    seconds: float = 0.0


def _augment_fn(cfg: Config):
    import tensorflow as tf

    a = cfg.train.augment
    p = cfg.preprocess
    h, w = p.height, p.width
    pad_h, pad_w = int(round(h * a.shift)), int(round(w * a.shift))
    # Brightness is applied in pixel units so it means the same whatever the input scaling.
    lo = p.pixel_offset
    hi = 255.0 * p.pixel_scale + p.pixel_offset
    lo, hi = min(lo, hi), max(lo, hi)

    def fn(x, y):
        if a.flip:
            x = tf.image.random_flip_left_right(x)
        if pad_h or pad_w:
            x = tf.pad(x, [[pad_h, pad_h], [pad_w, pad_w], [0, 0]], mode="REFLECT")
            x = tf.image.random_crop(x, [h, w, p.channels])
        if a.brightness > 0:
            x = x + tf.random.uniform([], -a.brightness, a.brightness) * (hi - lo)
        if a.contrast > 0:
            mean = tf.reduce_mean(x)
            x = (x - mean) * tf.random.uniform([], 1 - a.contrast, 1 + a.contrast) + mean
        return tf.clip_by_value(x, lo, hi), y

    return fn


def _schedule(cfg: Config, steps_per_epoch: int):
    import keras

    t = cfg.train
    total = max(1, t.epochs * steps_per_epoch)
    if t.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(t.lr, total, alpha=0.01)
    if t.schedule == "step":
        every = t.step_epochs * steps_per_epoch
        bounds = list(range(every, total, every))
        values = [t.lr * (t.step_gamma**i) for i in range(len(bounds) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values) if bounds \
            else t.lr
    return t.lr


def train(cfg: Config, ds: Dataset, out_dir: str | Path | None = None,
          progress: ProgressFn | None = None) -> TrainResult:
    """Train the configured MobileNet on `ds`; restores the best validation checkpoint.

    Args:
        cfg: full config (model, preprocess and train sections are used).
        ds: dataset already at the model's input size (uint8).
        out_dir: where `model.keras` and `curves.png` go (None = keep in memory only).
        progress: called after every epoch with (epoch, epochs, logs).

    Returns:
        TrainResult with the trained model and the per-epoch history.
    """
    import keras
    import tensorflow as tf

    from pipeline.model import build_model

    if len(ds.x_train) == 0:
        raise DataError(f"{ds.source}: training split is empty")
    t = cfg.train
    keras.utils.set_random_seed(t.seed)
    tf.config.experimental.enable_op_determinism()
    p = cfg.preprocess
    model = build_model(cfg.model, (p.height, p.width, p.channels), ds.num_classes)
    steps = math.ceil(len(ds.x_train) / t.batch_size)
    opt_kwargs = {"learning_rate": _schedule(cfg, steps)}
    if t.weight_decay > 0:
        opt = keras.optimizers.AdamW(weight_decay=t.weight_decay, **opt_kwargs)
    else:
        opt = keras.optimizers.Adam(**opt_kwargs)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)
    model.compile(optimizer=opt, loss=loss, metrics=["accuracy"])

    def onehot(x, y):
        return x, tf.one_hot(y, ds.num_classes)

    x_tr = scale_pixels(ds.x_train, p)
    train_ds = (tf.data.Dataset.from_tensor_slices((x_tr, ds.y_train))
                .shuffle(len(x_tr), seed=t.seed, reshuffle_each_iteration=True)
                .map(_augment_fn(cfg), num_parallel_calls=1, deterministic=True)
                .map(onehot).batch(t.batch_size).prefetch(2))
    has_val = len(ds.x_val) > 0
    val_ds = None
    if has_val:
        val_ds = (tf.data.Dataset.from_tensor_slices((scale_pixels(ds.x_val, p), ds.y_val))
                  .map(onehot).batch(256))
    monitor = "val_accuracy" if has_val else "accuracy"
    callbacks: list = [_Best(monitor)]
    if t.early_stopping > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode="max",
                                                       patience=t.early_stopping))
    if progress is not None:
        callbacks.append(_Progress(progress, t.epochs))
    if out_dir is not None:  # per-epoch log on disk, readable while a long run is going
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.CSVLogger(str(Path(out_dir) / "history.csv")))
    start = time.perf_counter()
    warnings.filterwarnings("ignore", message=".*shuffle=True.*")  # tf.data is shuffled above
    hist = model.fit(train_ds, validation_data=val_ds, epochs=t.epochs, verbose=0,
                     callbacks=callbacks)
    seconds = time.perf_counter() - start
    best = callbacks[0]
    if best.weights is not None:
        model.set_weights(best.weights)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    result = TrainResult(model, history, best.epoch, seconds)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / "model.keras")
        plot_curves(history, out / "curves.png")
    return result


def plot_curves(history: dict[str, list[float]], path: Path) -> None:
    """Loss and accuracy per epoch, train vs validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in history:
                ys = history[prefix + key]
                ax.plot(range(1, len(ys) + 1), ys, style, label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _keras_callback_base():
    import keras

    return keras.callbacks.Callback


class _Best(_keras_callback_base()):
    """Keep the weights of the best epoch in memory (best-checkpoint restore)."""

    def __init__(self, monitor: str):
        super().__init__()
        self.monitor, self.best, self.weights, self.epoch = monitor, -np.inf, None, 0

    def on_epoch_end(self, epoch, logs=None):
        v = (logs or {}).get(self.monitor)
        if v is not None and v > self.best:
            self.best, self.epoch = v, epoch + 1
            self.weights = self.model.get_weights()


class _Progress(_keras_callback_base()):
    def __init__(self, fn: ProgressFn, epochs: int):
        super().__init__()
        self.fn, self.epochs = fn, epochs

    def on_epoch_end(self, epoch, logs=None):
        self.fn(epoch + 1, self.epochs, dict(logs or {}))
