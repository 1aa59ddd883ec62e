"""Seeded Keras training on tf.distribute: sharded tf.data input, augmentation and batch mixing,
knowledge distillation, LR schedules, best-checkpoint restore, early stopping and curves.

`train.batch_size` is the global batch: every replica gets an equal share, and in multi-worker
training every worker reads an equal, disjoint shard of each epoch's shuffled order, so a run is
reproducible for a given number of workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import Config
from pipeline.data import Dataset
from pipeline.errors import ConfigError, DataError, ModelError

ProgressFn = Callable[[int, int, dict], None]  # (epoch, epochs, logs)

EVAL_BATCH = 256  # per replica; evaluation batch size does not change the result


@dataclass
class TrainResult:
    model: object  # keras.Model (training batch size), with the restored best weights
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    seconds: float = 0.0
    monitor: str = "val_accuracy"  # what chose the checkpoint (and early stopping)
    workers: int = 1
    replicas: int = 1
    weights_sha256: str = ""  # of the restored weights, to compare workers and runs
    epoch_seconds: list[float] = field(default_factory=list)  # wall time per epoch
    epoch_cpu_seconds: list[float] = field(default_factory=list)  # this process's CPU time


# ---------------------------------------------------------------- cluster and strategy


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return {}
    try:
        tfc = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError("TF_CONFIG: not valid JSON") from None
    if not isinstance(tfc, dict) or not isinstance(tfc.get("cluster", {}), dict):
        raise ConfigError('TF_CONFIG: expected {"cluster": {...}, "task": {...}}')
    return tfc


def is_chief() -> bool:
    """True unless TF_CONFIG makes this process a worker other than the chief."""
    tfc = _tf_config()
    task = tfc.get("task") or {}
    kind, index = task.get("type"), int(task.get("index", 0))
    if "chief" in tfc.get("cluster", {}):
        return kind in (None, "chief")
    return kind in (None, "worker") and index == 0


@contextlib.contextmanager
def output_dir(out: str | Path | None, distribute: str) -> Iterator[Path | None]:
    """`out`, except on the workers of a multi-worker run other than the chief: they write into
    a temporary folder that is removed afterwards (every worker saves, only the chief's files
    are kept)."""
    if out is None or distribute != "multi_worker" or is_chief():
        yield Path(out) if out is not None else None
        return
    tmp = Path(tempfile.mkdtemp(prefix="tinypipe-worker-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_strategy(kind: str):
    """The tf.distribute strategy for `train.distribute` (auto | multi_worker | none)."""
    import tensorflow as tf

    if kind == "multi_worker":
        tfc = _tf_config()
        if not tfc.get("cluster") or not tfc.get("task"):
            raise ConfigError("train.distribute=multi_worker needs TF_CONFIG with the cluster "
                              "and this process's task")
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except (RuntimeError, ValueError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ConfigError(f"train.distribute=multi_worker: {first} (the strategy must be "
                              "created before TensorFlow runs anything in this process)") \
                from None
    if kind == "auto" and tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _num_workers(strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, len(spec.get("worker", [])) + len(spec.get("chief", [])))


# ---------------------------------------------------------------- input pipelines


def _augment_batch(x, seed, cfg: Config):
    """Flip, reflect-padded shift, brightness and contrast, drawn per image (stateless)."""
    import tensorflow as tf

    a, p = cfg.train.augment, cfg.preprocess
    h, w = p.height, p.width
    n = tf.shape(x)[0]
    seeds = tf.random.experimental.stateless_split(seed, 5)
    if a.flip:
        flip = tf.random.stateless_uniform([n], seeds[0]) < 0.5
        x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
    pad_h, pad_w = int(round(h * a.shift)), int(round(w * a.shift))
    if pad_h or pad_w:
        x = tf.pad(x, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]], mode="REFLECT")
        dy = tf.random.stateless_uniform([n], seeds[1], 0, 2 * pad_h + 1, dtype=tf.int32)
        dx = tf.random.stateless_uniform([n], seeds[2], 0, 2 * pad_w + 1, dtype=tf.int32)
        x = tf.gather(x, dy[:, None] + tf.range(h)[None], axis=1, batch_dims=1)
        x = tf.gather(x, dx[:, None] + tf.range(w)[None], axis=2, batch_dims=1)
    # Brightness is applied in pixel units so it means the same whatever the input scaling.
    lo = p.pixel_offset
    hi = 255.0 * p.pixel_scale + p.pixel_offset
    lo, hi = min(lo, hi), max(lo, hi)
    if a.brightness > 0:
        delta = tf.random.stateless_uniform([n], seeds[3], -a.brightness, a.brightness)
        x = x + delta[:, None, None, None] * (hi - lo)
    if a.contrast > 0:
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        f = tf.random.stateless_uniform([n], seeds[4], 1 - a.contrast, 1 + a.contrast)
        x = (x - mean) * f[:, None, None, None] + mean
    return tf.clip_by_value(x, lo, hi)


def _beta(seed, a: float):
    import tensorflow as tf

    s = tf.random.experimental.stateless_split(seed, 2)
    g1 = tf.random.stateless_gamma([], s[0], alpha=a)
    g2 = tf.random.stateless_gamma([], s[1], alpha=a)
    return g1 / (g1 + g2)


def _mix_batch(x, y, seed, cfg: Config):
    """Mixup or CutMix on one batch: pairs each image with a shuffled partner, labels mixed."""
    import tensorflow as tf

    a = cfg.train.augment
    seeds = tf.random.experimental.stateless_split(seed, 5)
    n = tf.shape(x)[0]
    perm = tf.argsort(tf.random.stateless_uniform([n], seeds[0]))
    x2, y2 = tf.gather(x, perm), tf.gather(y, perm)

    def mixup():
        lam = _beta(seeds[1], a.mixup)
        return lam * x + (1 - lam) * x2, lam

    def cutmix():
        h, w = cfg.preprocess.height, cfg.preprocess.width
        lam = _beta(seeds[1], a.cutmix)
        cut = tf.sqrt(1.0 - lam)
        ch, cw = tf.cast(cut * h, tf.int32), tf.cast(cut * w, tf.int32)
        cy = tf.random.stateless_uniform([], seeds[2], 0, h, dtype=tf.int32)
        cx = tf.random.stateless_uniform([], seeds[3], 0, w, dtype=tf.int32)
        y0, y1 = tf.maximum(cy - ch // 2, 0), tf.minimum(cy + ch // 2, h)
        x0, x1 = tf.maximum(cx - cw // 2, 0), tf.minimum(cx + cw // 2, w)
        rows = (tf.range(h) >= y0) & (tf.range(h) < y1)
        cols = (tf.range(w) >= x0) & (tf.range(w) < x1)
        box = tf.cast(rows[:, None] & cols[None, :], x.dtype)[None, :, :, None]
        area = tf.cast((y1 - y0) * (x1 - x0), tf.float32) / float(h * w)
        return x * (1 - box) + x2 * box, 1.0 - area

    u = tf.random.stateless_uniform([2], seeds[4])
    if a.mixup > 0 and a.cutmix > 0:
        xm, lam = tf.cond(u[0] < 0.5, mixup, cutmix)
    else:
        xm, lam = mixup() if a.mixup > 0 else cutmix()
    apply = u[1] < a.mix_prob
    lam = tf.where(apply, lam, 1.0)
    xm = tf.where(apply, xm, x)
    return xm, lam * y + (1 - lam) * y2


def _train_input(x: np.ndarray, y: np.ndarray, cfg: Config, num_classes: int, ctx):
    """One worker's training input: its shard of each epoch's seeded shuffle, in batches."""
    import tensorflow as tf

    t, p = cfg.train, cfg.preprocess
    try:
        per_replica = ctx.get_per_replica_batch_size(t.batch_size)
    except ValueError:
        raise ConfigError(f"train.batch_size {t.batch_size} is not divisible by the "
                          f"{ctx.num_replicas_in_sync} replicas") from None
    workers, index = ctx.num_input_pipelines, ctx.input_pipeline_id
    images, labels = tf.constant(x), tf.constant(y)
    order = tf.data.Dataset.range(len(x)).shuffle(len(x), seed=t.seed,
                                                  reshuffle_each_iteration=True)
    if workers > 1:  # equal shards keep the workers in lockstep
        order = order.take(len(x) - len(x) % workers).shard(workers, index)
    seeds = tf.data.Dataset.random(seed=t.seed, rerandomize_each_iteration=True).batch(2)
    mixing = t.augment.mixup > 0 or t.augment.cutmix > 0

    def make(idx, seed):
        xb = tf.cast(tf.gather(images, idx), tf.float32) * p.pixel_scale + p.pixel_offset
        yb = tf.one_hot(tf.gather(labels, idx), num_classes)
        s = tf.random.experimental.stateless_split(seed, 2)
        xb = _augment_batch(xb, s[0], cfg)
        if mixing:
            xb, yb = _mix_batch(xb, yb, s[1], cfg)
        return xb, yb

    ds = tf.data.Dataset.zip((order.batch(per_replica), seeds))
    ds = ds.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(2)


def _eval_input(x: np.ndarray, y: np.ndarray, cfg: Config, num_classes: int, ctx):
    import tensorflow as tf

    p = cfg.preprocess
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if ctx.num_input_pipelines > 1:
        ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)

    def make(xb, yb):
        xf = tf.cast(xb, tf.float32) * p.pixel_scale + p.pixel_offset
        return xf, tf.one_hot(yb, num_classes)

    return ds.batch(EVAL_BATCH).map(make).prefetch(2)


# ---------------------------------------------------------------- model, loss, schedule


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


def teacher_path(spec: str) -> Path:
    """The .keras file of a teacher given as a run folder, a model folder or the file itself."""
    p = Path(spec)
    if p.is_dir():
        for name in ("model.keras", "teacher.keras"):
            if (p / name).is_file():
                return p / name
        raise ConfigError(f"train.distill.teacher: {p} holds no model.keras")
    if not p.is_file():
        raise ConfigError(f"train.distill.teacher: {p} not found")
    return p


def _logits(model):
    """The same network ending at its logits (shares the layers and weights)."""
    import keras

    try:
        layer = model.get_layer("logits")
    except ValueError:
        raise ModelError(f"{model.name}: no 'logits' layer; teachers must be tinypipe models") \
            from None
    return keras.Model(model.inputs, layer.output, name=f"{model.name}_logits")


def _load_teacher(cfg: Config, input_shape: tuple, num_classes: int):
    import keras

    path = teacher_path(cfg.train.distill.teacher)
    try:
        teacher = keras.saving.load_model(path, compile=False)
    except Exception as e:  # keras raises many types with long messages
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise ModelError(f"{path}: cannot load the teacher ({first})") from None
    if tuple(teacher.input_shape[1:]) != tuple(input_shape):
        raise ModelError(f"{path}: teacher input {teacher.input_shape[1:]} differs from the "
                         f"student's {tuple(input_shape)}")
    if teacher.output_shape[-1] != num_classes:
        raise ModelError(f"{path}: teacher has {teacher.output_shape[-1]} classes, the data "
                         f"{num_classes}")
    teacher.trainable = False
    return _logits(teacher)


def _trainer_class():
    import keras
    from keras import ops

    class Trainer(keras.Model):
        """Trains a network's logits; with a teacher, adds the distillation term."""

        def __init__(self, net, teacher=None, weight: float = 0.0, temperature: float = 1.0):
            super().__init__(name="trainer")
            self.net, self.teacher = net, teacher
            self.kd_weight, self.temperature = weight, temperature
            self.kd_loss = keras.losses.KLDivergence()  # scales itself for tf.distribute
            self.multi_worker = False

        def call(self, x, training=False):
            return self.net(x, training=training)

        # Keras reduces each step's logs across workers with a MEAN over axis 0, which fails
        # on scalars; a length-1 vector reduces to the same mean. Epoch logs are re-read from
        # the metrics, summed over all workers.
        def train_step(self, data):
            return self._vector_logs(super().train_step(data))

        def test_step(self, data):
            return self._vector_logs(super().test_step(data))

        def _vector_logs(self, logs):
            if not self.multi_worker:
                return logs
            return {k: ops.reshape(v, (1,)) for k, v in logs.items()}

        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            # Keras builds from a first batch that it all-reduces, which multi-worker
            # collectives cannot do eagerly; a zero batch of the same structure builds as well.
            if iterator is not None and data_batch is None:
                shape = (1, *self.net.input_shape[1:])
                data_batch = (ops.zeros(shape), ops.zeros((1, self.net.output_shape[-1])))
                iterator = None
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                        training=training)
            if self.teacher is None or not training:
                return loss
            t = self.temperature
            soft = ops.softmax(ops.stop_gradient(self.teacher(x, training=False)) / t)
            kd = self.kd_loss(soft, ops.softmax(y_pred / t)) * (t * t)
            return (1.0 - self.kd_weight) * loss + self.kd_weight * kd

    return Trainer


def checkpoint_split(ds: Dataset) -> str:
    """The split whose accuracy picks the restored epoch (and drives early stopping)."""
    return "val" if len(ds.x_val) else "train"


def weights_digest(weights: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for w in weights:
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- training


def train(cfg: Config, ds: Dataset, out_dir: str | Path | None = None,
          progress: ProgressFn | None = None) -> TrainResult:
    """Train the configured MobileNet on `ds`; restores the best checkpoint.

    The checkpoint (and early stopping) follow validation accuracy when `ds` has a validation
    split, else training accuracy; the test split is never read here.

    Args:
        cfg: full config (model, preprocess and train sections are used).
        ds: dataset already at the model's input size (uint8).
        out_dir: where `model.keras`, `history.csv` and `curves.png` go (None = keep in memory
            only). In multi-worker training only the chief writes here.
        progress: called after every epoch with (epoch, epochs, logs).

    Returns:
        TrainResult with the trained model and the per-epoch history.
    """
    t = cfg.train
    strategy = make_strategy(t.distribute)  # first: multi-worker setup precedes any TF op

    import keras
    import tensorflow as tf

    from pipeline.model import build_model

    if len(ds.x_train) == 0:
        raise DataError(f"{ds.source}: training split is empty")
    keras.utils.set_random_seed(t.seed)
    tf.config.experimental.enable_op_determinism()
    p = cfg.preprocess
    shape = (p.height, p.width, p.channels)
    workers = _num_workers(strategy)
    replicas = strategy.num_replicas_in_sync
    with strategy.scope():
        model = build_model(cfg.model, shape, ds.num_classes, sync_bn=workers > 1)
        teacher = _load_teacher(cfg, shape, ds.num_classes) if t.distill.teacher else None
        trainer = _trainer_class()(_logits(model), teacher, t.distill.weight,
                                   t.distill.temperature)
        # the batches one worker's input yields per epoch (see _train_input)
        steps = math.ceil((len(ds.x_train) // workers) / max(1, t.batch_size // workers))
        opt_kwargs = {"learning_rate": _schedule(cfg, steps)}
        if t.weight_decay > 0:
            opt = keras.optimizers.AdamW(weight_decay=t.weight_decay, **opt_kwargs)
        else:
            opt = keras.optimizers.Adam(**opt_kwargs)
        loss = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                    label_smoothing=t.label_smoothing)
        trainer.compile(optimizer=opt, loss=loss, metrics=["accuracy"])
        trainer.multi_worker = workers > 1
    train_ds = strategy.distribute_datasets_from_function(
        lambda ctx: _train_input(ds.x_train, ds.y_train, cfg, ds.num_classes, ctx))
    has_val = checkpoint_split(ds) == "val"
    val_ds = None
    if has_val:
        val_ds = strategy.distribute_datasets_from_function(
            lambda ctx: _eval_input(ds.x_val, ds.y_val, cfg, ds.num_classes, ctx))
    monitor = "val_accuracy" if has_val else "accuracy"
    best = _Best(monitor)
    callbacks: list = [best, _EpochTime()]
    if t.early_stopping > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode="max",
                                                       patience=t.early_stopping))
    if progress is not None:
        callbacks.append(_Progress(progress, t.epochs))
    with output_dir(out_dir, t.distribute) as out:
        if out is not None:  # per-epoch log on disk, readable while a long run is going
            out.mkdir(parents=True, exist_ok=True)
            callbacks.append(keras.callbacks.CSVLogger(str(out / "history.csv")))
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*shuffle=True.*")  # shuffled above
            hist = trainer.fit(train_ds, validation_data=val_ds, epochs=t.epochs, verbose=0,
                               callbacks=callbacks)
        seconds = time.perf_counter() - start
        if best.weights is not None:
            trainer.set_weights(best.weights)
        history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
        times = {k: history.pop(k, []) for k in _EpochTime.KEYS}
        result = TrainResult(model, history, best.epoch, seconds, monitor, workers, replicas,
                             weights_digest(model.get_weights()), *times.values())
        if out is not None:
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


class _EpochTime(_keras_callback_base()):
    """Adds wall and process CPU seconds of each epoch to the logs (and so to history.csv)."""

    KEYS = ("seconds", "cpu_seconds")

    def on_epoch_begin(self, epoch, logs=None):
        self._t, self._c = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[self.KEYS[0]] = time.perf_counter() - self._t
            logs[self.KEYS[1]] = time.process_time() - self._c


class _Progress(_keras_callback_base()):
    def __init__(self, fn: ProgressFn, epochs: int):
        super().__init__()
        self.fn, self.epochs = fn, epochs

    def on_epoch_end(self, epoch, logs=None):
        self.fn(epoch + 1, self.epochs, dict(logs or {}))
