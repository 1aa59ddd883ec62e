"""Helpers shared by the host tests (import as `from tp_helpers import ...`)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_config_dict(**over) -> dict:
    """A config that trains to well above chance in seconds."""
    cfg = {
        "name": "tiny",
        "data": {"source": "synthetic", "synthetic": {"classes": 3, "samples_per_class": 200,
                                                      "seed": 1}, "seed": 0},
        "preprocess": {"height": 32, "width": 32, "channels": 3},
        "model": {"arch": "mobilenet_v1", "alpha": 0.25, "first_stride": 1, "blocks": 4},
        "train": {"epochs": 12, "batch_size": 32, "lr": 0.01, "seed": 0},
        "quantize": {"representative_samples": 64},
    }
    for k, v in over.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return cfg
