"""Publish a run as a committed model: model.tflite, card.json and a short README model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline import __version__
from pipeline.config import load_config, to_dict
from pipeline.errors import ModelError


def publish(run_dir: str | Path, dest: str | Path) -> dict:
    """Copy a finished run's int8 model and plots into `dest` with its card; returns the card."""
    from pipeline.run import RunDir

    run = Path(run_dir)
    for need in ("model.tflite", "config.yaml", "state.json"):
        if not (run / need).exists():
            raise ModelError(f"{run / need}: missing; run `tinypipe run --out {run}` first")
    rd = RunDir(run)
    art = rd.model()
    evaluated, profiled = rd.load("evaluate", art.hash), rd.load("profile", art.hash)
    if evaluated is None or profiled is None:
        raise ModelError(f"{run}: evaluate and profile stages have not run on model.tflite")
    trained = rd.load("train")
    cfg = load_config(run / "config.yaml")
    ev, prof = {"split": evaluated.split, **evaluated.evaluation}, profiled.to_dict()
    tr = vars(trained) if trained else {}
    card = {
        "name": cfg.name,
        "tinypipe_version": __version__,
        "model_hash": art.hash,
        "preprocess": {"pixel_scale": cfg.preprocess.pixel_scale,
                       "pixel_offset": cfg.preprocess.pixel_offset,
                       "channels": cfg.preprocess.channels, "height": cfg.preprocess.height,
                       "width": cfg.preprocess.width, "resize": cfg.preprocess.resize,
                       "input": "RGB uint8 pixels; float = pixel * pixel_scale + pixel_offset, "
                                "then the model's own input quantization"},
        "class_names": tr.get("class_names"),
        "data_sha256": tr.get("data_digest"),
        "validation": {"split": ev.get("split"), "samples": ev.get("n"),
                       "accuracy_float": (ev.get("float") or {}).get("accuracy"),
                       "accuracy_int8": (ev.get("int8") or {}).get("accuracy"),
                       "accuracy_tflm": (ev.get("tflm") or {}).get("accuracy")},
        "macs": prof.get("macs"),
        "weight_bytes": prof.get("param_bytes"),
        "params": prof.get("params"),
        "tflite_bytes": prof.get("tflite_bytes"),
        "tflm_arena_bytes": prof.get("arena_bytes"),
        "aot_arena_bytes": prof.get("aot_arena_bytes"),
        "training_seconds": tr.get("seconds"),
        "best_epoch": tr.get("best_epoch"),
        "config": to_dict(cfg),
    }
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "model.tflite", out / "model.tflite")
    for png in ("confusion.png", "curves.png"):
        if (run / png).exists():
            shutil.copyfile(run / png, out / png)
    (out / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    notes = out / "NOTES.md"  # hand-written context kept across re-publishing
    (out / "README.md").write_text(_readme(card) + (
        "\n" + notes.read_text() if notes.exists() else ""))
    return card


def _pct(v) -> str:
    return f"{v:.2%}" if isinstance(v, (int, float)) else "n/a"


def _readme(c: dict) -> str:
    v, m = c["validation"], c["config"]["model"]
    mins = f"{c['training_seconds'] / 60:.1f} min" if c.get("training_seconds") else "n/a"
    return "\n".join([
        f"# {c['name']}: model card",
        "",
        f"{m['arch']} α={m['alpha']:g}, {c['preprocess']['height']}×{c['preprocess']['width']}×"
        f"{c['preprocess']['channels']}, {len(c['class_names'] or [])} classes, int8 "
        "(int8 input and output). Trained by tinypipe "
        f"{c['tinypipe_version']} from the config in `card.json`.",
        "",
        "| | |",
        "|---|---|",
        f"| validation accuracy, float | {_pct(v['accuracy_float'])} |",
        f"| validation accuracy, int8 (TFLite) | {_pct(v['accuracy_int8'])} |",
        f"| validation accuracy, int8 (TFLite Micro kernels) | {_pct(v['accuracy_tflm'])} |",
        f"| validation samples | {v['samples']} ({v['split']} split carved from train) |",
        f"| MACs | {c['macs']:,} |",
        f"| int8 weights + int32 biases | {c['weight_bytes']:,} B |",
        f"| .tflite | {c['tflite_bytes']:,} B |",
        f"| TFLM arena (measured) | {c['tflm_arena_bytes']:,} B |",
        f"| training time (2 CPU cores) | {mins} |",
        "",
        "Input: RGB uint8 pixels, `float = pixel × "
        f"{c['preprocess']['pixel_scale']:.8g} + {c['preprocess']['pixel_offset']:g}`, then "
        "the model's input quantization.",
        "",
        "Reproduce the accuracy on any split: "
        "`tinypipe evaluate --model <this folder> --data FILE.npz`.",
        "",
        "![confusion matrix](confusion.png)",
        "",
        "![training curves](curves.png)",
        "",
    ])
