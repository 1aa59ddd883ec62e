"""Publish a run as a committed model: model.tflite, card.json and a short README model card.

A card ties the figures to exactly one model and one data set (`model_hash`, `data_sha256`),
lists every split with its size and what it was used for, and says which split the accuracy
comes from and whether that split also picked the training checkpoint (then the figure is
optimistic: the checkpoint was chosen to score well on it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline import __version__
from pipeline.artifact import model_hash
from pipeline.config import Config, from_dict, load_config, to_dict
from pipeline.errors import DataError, ModelError

SPLITS = ("train", "val", "test")
# Key order of card.json; publish() and update_card() both write exactly these keys.
FIELDS = ("name", "tinypipe_version", "model_hash", "preprocess", "class_names", "data_sha256",
          "splits", "accuracy", "independent_accuracy", "macs", "weight_bytes", "params",
          "tflite_bytes", "tflm_arena_bytes", "aot_arena_bytes", "training_seconds",
          "best_epoch", "config")


def publish(run_dir: str | Path, dest: str | Path) -> dict:
    """Copy a finished run's int8 model and plots into `dest` with its card; returns the card.

    The training data must be readable (from the run's config): the card counts its splits
    and refuses data whose digest differs from the one training recorded.
    """
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
    out = Path(dest)
    old = _read_card(out / "card.json") if (out / "card.json").exists() else {}
    sizes = split_sizes(cfg, tr.get("data_digest"))
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
        **_provenance(cfg, sizes, tr.get("best_epoch"), ev.get("split"), ev.get("n"),
                      {k: (ev.get(k) or {}).get("accuracy") for k in ("float", "int8", "tflm")}),
        # figures measured elsewhere stay only while they describe this very model
        "independent_accuracy": [m for m in old.get("independent_accuracy", [])
                                 if m.get("model_hash") == art.hash],
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
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "model.tflite", out / "model.tflite")
    for png in ("confusion.png", "curves.png"):
        if (run / png).exists():
            shutil.copyfile(run / png, out / png)
    _write(card, out)
    return card


def update_card(folder: str | Path, data_path: str | Path | None = None,
                independent: list[dict] | None = None) -> dict:
    """Bring an existing model folder's card up to the fields publish() writes, without retraining.

    Figures that depend on the model and tinypipe's tools, not on training (MACs, sizes, both
    arenas), are measured again, so the card agrees with what `profile` and `export` give now.

    Args:
        folder: a model folder (model.tflite, card.json).
        data_path: the training data, if not at the path in the card's config.
        independent: accuracy figures measured outside tinypipe's splits, each a dict with
            `data`, `samples` and `accuracy` (and optionally `note`); tied to this model's hash.
    """
    out = Path(folder)
    old = _read_card(out / "card.json")
    try:
        data = (out / "model.tflite").read_bytes()
    except OSError as e:
        raise ModelError(f"{out / 'model.tflite'}: cannot read model ({e.strerror})") from None
    cfg = from_dict(old["config"])
    if data_path is not None:
        cfg.data.path = str(data_path)
    acc = old.get("accuracy") or old.get("validation") or {}
    acc_split = acc.get("split")
    figures = {k: acc.get(k, acc.get(f"accuracy_{k}")) for k in ("float", "int8", "tflm")}
    digest = model_hash(data)
    kept = [m for m in old.get("independent_accuracy", []) if m.get("model_hash") == digest]
    new = [{**m, "model_hash": digest} for m in independent or []]
    card = {**{k: v for k, v in old.items() if k != "validation"},
            "model_hash": digest,
            **_provenance(cfg, split_sizes(cfg, old.get("data_sha256")), old.get("best_epoch"),
                          acc_split, acc.get("samples"), figures),
            "independent_accuracy": kept + new,
            **_measure(data)}
    _write(card, out)
    return card


def _measure(data: bytes) -> dict:
    """The card's figures that come from the model file and tinypipe's own tools."""
    from pipeline.profile import profile_tflite

    prof = profile_tflite(data)
    return {"macs": prof.macs, "weight_bytes": prof.param_bytes, "params": prof.params,
            "tflite_bytes": len(data), "tflm_arena_bytes": prof.arena_bytes,
            "aot_arena_bytes": prof.aot_arena_bytes}


def split_sizes(cfg: Config, digest: str | None) -> dict[str, int]:
    """Samples in each split, counted on the data; refused if it is not the trained-on set."""
    from pipeline.data import load_dataset

    ds = load_dataset(cfg.data, cfg.preprocess)
    if digest and ds.digest != digest:
        raise DataError(f"{cfg.data.path}: data digest {ds.digest[:16]}… is not the "
                        f"{digest[:16]}… the model was trained on")
    return {s: len(ds.split(s)[1]) for s in SPLITS}


def _provenance(cfg: Config, sizes: dict[str, int], best_epoch: int | None,
                acc_split: str | None, acc_samples: int | None, figures: dict) -> dict:
    """`splits` and `accuracy` of a card."""
    # train.train keeps the epoch with the best validation accuracy, or training accuracy
    # when there is no validation split
    chose = "val" if sizes["val"] else "train"
    epoch = f"best epoch {best_epoch} of {cfg.train.epochs}" if best_epoch else "best epoch"
    use = {"train": "training", "val": "validation", "test": "held-out test"}
    splits = {}
    for s in SPLITS:
        u = use[s]
        if s == chose:
            u += f"; picked the checkpoint ({epoch})"
        if s == "test":
            u += "; touched only for the final figure" if sizes[s] else \
                 f"; none carved (data.test_split = {cfg.data.test_split:g})"
        splits[s] = {"samples": sizes[s], "use": u}
    return {"splits": splits,
            "accuracy": {"split": acc_split, "samples": acc_samples,
                         "split_chose_checkpoint": acc_split == chose, **figures}}


def _read_card(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: cannot read card ({e})") from None


def _write(card: dict, out: Path) -> None:
    """card.json in FIELDS order, and README.md (generated part, then the folder's NOTES.md)."""
    missing = [k for k in FIELDS if k not in card]
    if missing:
        raise ModelError(f"{out / 'card.json'}: card lacks {', '.join(missing)}")
    card = {k: card[k] for k in FIELDS}
    (out / "card.json").write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n")
    notes = out / "NOTES.md"  # hand-written context kept across re-publishing
    (out / "README.md").write_text(_readme(card) + (
        "\n" + notes.read_text() if notes.exists() else ""))


def _pct(v) -> str:
    return f"{v:.2%}" if isinstance(v, (int, float)) else "n/a"


def _readme(c: dict) -> str:
    a, m = c["accuracy"], c["config"]["model"]
    mins = f"{c['training_seconds'] / 60:.1f} min" if c.get("training_seconds") else "n/a"
    n = a["samples"]
    src = f"{a['split']} ({n:,} images)" if isinstance(n, int) else str(a["split"])
    src += ("; it also picked the checkpoint, so these figures are optimistic"
            if a["split_chose_checkpoint"] else "; it did not pick the checkpoint")
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
        f"| model hash (`model.tflite`, first 16 hex digits of its sha256) | `{c['model_hash']}` |",
        f"| data (sha256 of the decoded images and labels, not of the file) | "
        f"`{c['data_sha256']}` |",
        *[f"| {s} split | {v['samples']:,} images: {v['use']} |" for s, v in c["splits"].items()],
        f"| split of the next three rows | {src} |",
        f"| accuracy, float | {_pct(a['float'])} |",
        f"| accuracy, int8 (TFLite) | {_pct(a['int8'])} |",
        f"| accuracy, int8 (TFLite Micro kernels) | {_pct(a['tflm'])} |",
        *[f"| accuracy on {i['data']} ({i['samples']:,} images), measured independently | "
          f"{_pct(i['accuracy'])} |" for i in c["independent_accuracy"]],
        f"| MACs | {c['macs']:,} |",
        f"| int8 weights + int32 biases | {c['weight_bytes']:,} B |",
        f"| .tflite | {c['tflite_bytes']:,} B |",
        f"| TFLM arena (measured) | {c['tflm_arena_bytes']:,} B |",
        f"| AOT arena (static plan) | {c['aot_arena_bytes']:,} B |" if c["aot_arena_bytes"]
        else "| AOT arena (static plan) | n/a |",
        f"| training time (2 CPU cores) | {mins} |",
        "",
        *[f"On {i['data']}: {i['note']}\n" for i in c["independent_accuracy"] if i.get("note")],
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
