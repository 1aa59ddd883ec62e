"""Publish a run as a committed model: model.tflite, card.json and a short README model card."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from pipeline import __version__
from pipeline.config import load_config, to_dict
from pipeline.errors import DataError, ModelError


def publish(run_dir: str | Path, dest: str | Path) -> dict:
    """Copy a finished run's int8 model and plots into `dest` with its card; returns the card.

    The card names the model (sha256 of model.tflite), the data (sha256 of images and labels)
    and every split with its size, hash and use, so the accuracy can be traced to a split
    that did or did not also choose the checkpoint. The data is loaded again for that and must
    be the data the run trained on.
    """
    from pipeline.data import load_dataset
    from pipeline.train import checkpoint_split

    run = Path(run_dir)
    state_path = run / "state.json"
    for need in ("model.tflite", "config.yaml", "state.json"):
        if not (run / need).exists():
            raise ModelError(f"{run / need}: missing; run `tinypipe run --out {run}` first")
    st = json.loads(state_path.read_text())
    if "evaluate" not in st or "profile" not in st:
        raise ModelError(f"{run}: evaluate and profile stages have not run")
    cfg = load_config(run / "config.yaml")
    ev, prof, tr = st["evaluate"], st["profile"], st.get("train", {})
    ds = load_dataset(cfg.data, cfg.preprocess)
    if tr.get("data_digest") and tr["data_digest"] != ds.digest:
        raise DataError(f"{cfg.data.path or cfg.data.source}: not the data {run} trained on "
                        f"(sha256 {ds.digest[:12]}…, the run recorded "
                        f"{tr['data_digest'][:12]}…)")
    chose = checkpoint_split(ds)
    tflite = (run / "model.tflite").read_bytes()
    card = {
        "name": cfg.name,
        "tinypipe_version": __version__,
        "model_sha256": hashlib.sha256(tflite).hexdigest(),
        "data_sha256": ds.digest,
        "data": cfg.data.path or cfg.data.source,
        "preprocess": {"pixel_scale": cfg.preprocess.pixel_scale,
                       "pixel_offset": cfg.preprocess.pixel_offset,
                       "channels": cfg.preprocess.channels, "height": cfg.preprocess.height,
                       "width": cfg.preprocess.width, "resize": cfg.preprocess.resize,
                       "input": "RGB uint8 pixels; float = pixel * pixel_scale + pixel_offset, "
                                "then the model's own input quantization"},
        "class_names": tr.get("class_names") or ds.class_names,
        "splits": ds.splits(),
        "checkpoint_split": chose,
        "accuracy": {"split": ev.get("split"), "samples": ev.get("n"),
                     "split_also_chose_checkpoint": ev.get("split") == chose,
                     "float": (ev.get("float") or {}).get("accuracy"),
                     "int8": (ev.get("int8") or {}).get("accuracy"),
                     "tflm": (ev.get("tflm") or {}).get("accuracy")},
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
    (out / "model.tflite").write_bytes(tflite)
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
    a, m = c["accuracy"], c["config"]["model"]
    mins = f"{c['training_seconds'] / 60:.1f} min" if c.get("training_seconds") else "n/a"
    where = (f"{a['split']} split, {a['samples']} samples; "
             + ("it also chose the checkpoint" if a["split_also_chose_checkpoint"] else
                f"held out: the checkpoint was chosen on the {c['checkpoint_split']} split"))
    splits = ["| split | samples | sha256 | use |", "|---|---:|---|---|"]
    for name, s in c["splits"].items():
        splits.append(f"| {name} | {s['samples']:,} | `{s['sha256'][:16]}` | {s['use']} |")
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
        f"| accuracy, float | {_pct(a['float'])} |",
        f"| accuracy, int8 (TFLite) | {_pct(a['int8'])} |",
        f"| accuracy, int8 (TFLite Micro kernels) | {_pct(a['tflm'])} |",
        f"| accuracy measured on | {where} |",
        f"| MACs | {c['macs']:,} |",
        f"| int8 weights + int32 biases | {c['weight_bytes']:,} B |",
        f"| .tflite | {c['tflite_bytes']:,} B |",
        f"| TFLM arena (measured) | {c['tflm_arena_bytes']:,} B |",
        f"| training time | {mins} |",
        f"| model sha256 (`model.tflite`) | `{c['model_sha256']}` |",
        f"| data sha256 (images and labels of `{c['data']}`) | `{c['data_sha256']}` |",
        "",
        "Splits, carved from the data with a seeded, stratified split:",
        "",
        *splits,
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
