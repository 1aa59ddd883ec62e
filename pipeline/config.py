"""YAML config -> validated dataclasses. Unknown keys are rejected with the list of valid ones."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

ARCHS = ("mobilenet_v1", "mobilenet_v2", "dense1_mobilenet", "dense2_mobilenet")
DISTRIBUTE = ("auto", "multi_worker", "none")


@dataclass
class SyntheticConfig:
    classes: int = 4
    samples_per_class: int = 300
    seed: int = 0


@dataclass
class DataConfig:
    source: str = "synthetic"  # synthetic | folder | npz
    path: str | None = None
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    val_split: float = 0.15
    test_split: float = 0.15
    seed: int = 0
    limit: int | None = None  # cap on images loaded (smoke runs)


@dataclass
class PreprocessConfig:
    """How a stored image becomes a model input; exported to the firmware verbatim."""

    height: int = 32
    width: int = 32
    channels: int = 3  # 1 = gray, 3 = RGB
    resize: str = "stretch"  # stretch | crop (center-crop to the aspect ratio, then resize)
    pixel_scale: float = 1.0 / 255.0  # float input = pixel * pixel_scale + pixel_offset
    pixel_offset: float = 0.0


@dataclass
class ModelConfig:
    arch: str = "mobilenet_v1"  # mobilenet_v1 | mobilenet_v2 | dense1_mobilenet | dense2_mobilenet
    growth: int = 16  # dense variants: channels each densely connected block adds
    alpha: float = 0.25
    first_stride: int = 2
    blocks: int | None = None  # keep only the first N blocks (None = all)
    # mobilenet_v1 / dense variants: explicit [channels, stride] per depthwise-separable block,
    # replacing the paper's 13 blocks (channels as given: alpha then only sizes the stem).
    layout: list[list[int]] | None = None
    expansion: int = 6  # v2 only
    head_channels: int | None = None  # 1x1 conv before pooling (v2 default 1280, v1 none)
    dropout: float = 0.0
    # Keras' 0.99 lags far behind on small datasets: validation sits at chance for epochs.
    bn_momentum: float = 0.9
    weights: str | None = None  # local Keras ImageNet weights file, never downloaded


@dataclass
class AugmentConfig:
    flip: bool = True
    shift: float = 0.1  # max translation as a fraction of the image size
    brightness: float = 0.1
    contrast: float = 0.1
    # Batch mixing (labels mixed in proportion): Beta(a, a) concentration, 0 = off. With both
    # on, each mixed batch uses one of the two at random.
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 1.0  # share of batches that are mixed when mixup or cutmix is on


@dataclass
class DistillConfig:
    """Knowledge distillation from a trained teacher that sees the same augmented batch."""

    teacher: str | None = None  # a tinypipe Keras model: run folder, model folder or .keras file
    weight: float = 0.9  # share of the distillation term in the loss (rest: the labels)
    temperature: float = 4.0


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-3
    schedule: str = "cosine"  # cosine | step | constant
    step_epochs: int = 10
    step_gamma: float = 0.1
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    early_stopping: int = 0  # patience in epochs, 0 = off
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # auto: MirroredStrategy over the local GPUs (the default strategy without GPUs);
    # multi_worker: MultiWorkerMirroredStrategy, workers from TF_CONFIG; none: no strategy.
    distribute: str = "auto"
    distill: DistillConfig = field(default_factory=DistillConfig)


@dataclass
class QuantizeConfig:
    representative_samples: int = 200
    per_channel: bool = True
    qat_epochs: int = 0  # > 0: also fine-tune with fake quantization, keep it only if better
    qat_lr: float = 2e-4


@dataclass
class ExportConfig:
    backend: str = "tflm"  # tflm | aot | both
    prefix: str = "tp"
    # AOT: run ranges of ops row by row where that lowers the arena (smallest RAM); false plans
    # op by op (fewer instructions: striping costs about 2-13 % on M4, up to 20 % on M55)
    stripe: bool = True


@dataclass
class HilConfig:
    """On-device stage of `tinypipe run`: build, flash or emulate, stream the test split."""

    env: str | None = None  # e.g. qemu-m4; None skips the stage
    port: str | None = None  # serial port or socket:// URL (boards); emulators need none
    backend: str = "aot"
    limit: int | None = None  # stream at most N test samples


@dataclass
class EvaluateConfig:
    limit: int | None = None  # cap on test samples for the (slow) TFLM pass


@dataclass
class Config:
    name: str = "demo"
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    hil: HilConfig = field(default_factory=HilConfig)

    def validate(self) -> Config:
        """Check value ranges; raise ConfigError naming the key and the value received."""
        _choice("data.source", self.data.source, ("synthetic", "folder", "npz"))
        if self.data.source != "synthetic" and not self.data.path:
            raise ConfigError(f"data.path is required when data.source is "
                              f"{self.data.source!r}")
        if self.data.synthetic.classes < 2:
            raise ConfigError(f"data.synthetic.classes must be >= 2, got "
                              f"{self.data.synthetic.classes}")
        for key in ("val_split", "test_split"):
            v = getattr(self.data, key)
            if not 0.0 <= v < 0.5:
                raise ConfigError(f"data.{key} must be in [0, 0.5), got {v}")
        p = self.preprocess
        for key in ("height", "width"):
            v = getattr(p, key)
            if not 32 <= v <= 224:
                raise ConfigError(f"preprocess.{key} must be in 32..224, got {v}")
        _choice("preprocess.channels", p.channels, (1, 3))
        _choice("preprocess.resize", p.resize, ("stretch", "crop"))
        m = self.model
        _choice("model.arch", m.arch, ARCHS)
        if not 0.1 <= m.alpha <= 1.0:
            raise ConfigError(f"model.alpha must be in 0.1..1.0, got {m.alpha}")
        _choice("model.first_stride", m.first_stride, (1, 2))
        if m.layout is not None:
            _check_layout(m.layout)
            if m.arch == "mobilenet_v2":
                raise ConfigError("model.layout applies to mobilenet_v1 and the dense variants, "
                                  "not mobilenet_v2")
        t = self.train
        _choice("train.schedule", t.schedule, ("cosine", "step", "constant"))
        _choice("train.distribute", t.distribute, DISTRIBUTE)
        if t.batch_size < 1:
            raise ConfigError(f"train.batch_size must be >= 1, got {t.batch_size}")
        for key in ("mixup", "cutmix"):
            if getattr(t.augment, key) < 0:
                raise ConfigError(f"train.augment.{key} must be >= 0, got "
                                  f"{getattr(t.augment, key)}")
        if not 0.0 <= t.augment.mix_prob <= 1.0:
            raise ConfigError(f"train.augment.mix_prob must be in [0, 1], got "
                              f"{t.augment.mix_prob}")
        if not 0.0 <= t.distill.weight <= 1.0:
            raise ConfigError(f"train.distill.weight must be in [0, 1], got {t.distill.weight}")
        if t.distill.temperature <= 0:
            raise ConfigError(f"train.distill.temperature must be > 0, got "
                              f"{t.distill.temperature}")
        _choice("export.backend", self.export.backend, ("tflm", "aot", "both"))
        if self.train.epochs < 1:
            raise ConfigError(f"train.epochs must be >= 1, got {self.train.epochs}")
        return self


def _check_layout(layout: Any) -> None:
    ok = isinstance(layout, list) and layout and all(
        isinstance(b, list) and len(b) == 2 and all(isinstance(v, int) for v in b)
        and b[0] >= 1 and b[1] in (1, 2) for b in layout)
    if not ok:
        raise ConfigError(f"model.layout must be a list of [channels, stride] pairs with "
                          f"stride 1 or 2, e.g. [[64, 1], [128, 2]]; got {layout!r}")


def _choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]}; valid keys"
            f"{' under ' + where if where else ''}: {', '.join(fields)}")
    kwargs = {}
    for name, value in raw.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, key)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(inner, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be {'an integer' if tp is int else 'a number'}, "
                              f"got {value!r}") from None
        if tp is int and float(value) != out:
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    return value


def from_dict(raw: dict | None) -> Config:
    """Build and validate a Config from a plain mapping."""
    return _build(Config, raw or {}, "").validate()


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (None = all defaults) and apply `key.sub=value` overrides."""
    raw: dict = {}
    if path is not None:
        p = Path(path)
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"{p}: cannot read config ({e.strerror})") from None
        except yaml.YAMLError as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            where = f" line {line + 1}" if line is not None else ""
            raise ConfigError(f"{p}:{where} invalid YAML") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: top level must be a mapping")
    for item in overrides or []:
        apply_override(raw, item)
    try:
        return from_dict(raw)
    except ConfigError as e:
        if path is not None:
            raise ConfigError(f"{path}: {e}") from None
        raise


def apply_override(raw: dict, item: str) -> None:
    """Apply one `a.b.c=value` override (value parsed as YAML) to a raw config mapping."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.sub=value")
    key, value = item.split("=", 1)
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
    node[parts[-1]] = yaml.safe_load(value) if value != "" else None


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
