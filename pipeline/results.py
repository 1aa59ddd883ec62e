"""What each stage hands to the next: small typed records, persisted in the run's state.json.

A stage returns its record; the next stage takes it as an argument. Run one stage at a time
and the record comes back from state.json (`RunDir.load`), typed the same way. Every record that
depends on the model carries its hash, so a stale result is never used for another model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pipeline.errors import ModelError
from pipeline.profile import Profile

R = TypeVar("R")


@dataclass
class TrainSummary:
    """train: how the float model was trained, and on what."""

    seconds: float
    best_epoch: int
    epochs: int
    history: dict[str, list[float]]
    data_digest: str
    class_names: list[str]


@dataclass
class QuantizeSummary:
    """quantize: the int8 model written to model.tflite."""

    model_hash: str
    tflite_bytes: int
    ops: list[list]                      # [name, version] in first-use order
    method: str = "ptq"                  # "ptq" | "qat"
    ptq_val_accuracy: float | None = None
    qat_val_accuracy: float | None = None


@dataclass
class EvaluateSummary:
    """evaluate: accuracies on one split, and where the host TFLM outputs were kept."""

    model_hash: str
    split: str
    evaluation: dict                     # pipeline.evaluate.Evaluation.to_dict()
    files: dict[str, str] = field(default_factory=dict)
    reference: str | None = None         # npz in the run folder: x (model inputs), outputs

    def accuracy(self, kind: str) -> float | None:
        return (self.evaluation.get(kind) or {}).get("accuracy")


@dataclass
class ExportSummary:
    """export: the C folders written for each backend."""

    model_hash: str
    tflm_dir: str | None = None
    aot_dir: str | None = None
    tflm_arena_bytes: int | None = None  # kTensorArenaSize (measured + margin)
    aot_arena_bytes: int | None = None


@dataclass
class HilSummary:
    """hil: the on-device run (the summary dict of pipeline.hil.runner.run_hil)."""

    model_hash: str
    env: str
    backend: str
    summary: dict


STAGE_RESULTS: dict[str, type] = {"train": TrainSummary, "quantize": QuantizeSummary,
                                  "evaluate": EvaluateSummary, "profile": Profile,
                                  "export": ExportSummary, "hil": HilSummary}


def to_dict(result: Any) -> dict:
    return dataclasses.asdict(result)


def from_dict(cls: type[R], d: dict) -> R:
    """A record from its JSON form; keys this version does not know are ignored."""
    if hasattr(cls, "from_dict"):
        return cls.from_dict(d)  # type: ignore[attr-defined]
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in d.items() if k in names})


class StateFile:
    """state.json: one record per stage that has run."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _raw(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            return json.loads(self.path.read_text())
        except json.JSONDecodeError:
            raise ModelError(f"{self.path}: not valid JSON; delete it and re-run") from None

    def save(self, stage: str, result: Any) -> None:
        raw = self._raw()
        raw[stage] = to_dict(result)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(raw, indent=1, default=str))
        tmp.replace(self.path)

    def load(self, stage: str, model_hash: str | None = None):
        """The stage's record, or None if it has not run (or ran for another model)."""
        raw = self._raw().get(stage)
        if raw is None:
            return None
        rec = from_dict(STAGE_RESULTS[stage], raw)
        if model_hash is not None and getattr(rec, "model_hash", model_hash) != model_hash:
            return None
        return rec
