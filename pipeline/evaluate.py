"""Accuracy of the float model, the int8 model (TFLite) and the int8 model on TFLM's kernels."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.artifact import ModelArtifact
from pipeline.quantize import quantize_input


@dataclass
class Accuracy:
    accuracy: float
    per_class: list[float]
    confusion: list[list[int]]
    predictions: list[int] = field(repr=False, default_factory=list)


@dataclass
class Evaluation:
    n: int
    class_names: list[str]
    float: Accuracy | None = None
    int8: Accuracy | None = None
    tflm: Accuracy | None = None
    agreement_predictions: float | None = None  # int8 vs tflm: same top-1
    agreement_exact: float | None = None  # int8 vs tflm: byte-identical output tensor
    tflm_outputs: np.ndarray | None = field(default=None, repr=False)  # host TFLM, per sample

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("tflm_outputs", None)
        for k in ("float", "int8", "tflm"):
            if d[k] is not None:
                d[k].pop("predictions", None)
        return d


def score(y: np.ndarray, pred: np.ndarray, num_classes: int) -> Accuracy:
    """Top-1 accuracy, per-class recall and the confusion matrix (rows = true class)."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (y.astype(np.int64), pred.astype(np.int64)), 1)
    totals = cm.sum(axis=1)
    per = [float(cm[i, i] / totals[i]) if totals[i] else float("nan") for i in range(num_classes)]
    acc = float(np.mean(y == pred)) if len(y) else float("nan")
    return Accuracy(acc, per, cm.tolist(), pred.astype(int).tolist())


def io_params(model_bytes: bytes) -> dict:
    """Input/output dtype, shape, scale and zero point of a .tflite model."""
    art = ModelArtifact.load(model_bytes)
    tin, tout = art.inputs[0], art.outputs[0]
    return {
        "input": {"dtype": tin.dtype, "shape": list(tin.shape),
                  "scale": tin.scale,
                  "zero_point": tin.zero_point},
        "output": {"dtype": tout.dtype, "shape": list(tout.shape),
                   "scale": tout.scale,
                   "zero_point": tout.zero_point},
    }


def model_inputs(x_float: np.ndarray, model_bytes: bytes) -> np.ndarray:
    """Float model inputs -> what the .tflite input tensor takes (quantized if int8)."""
    p = io_params(model_bytes)["input"]
    if p["dtype"] == "int8":
        return quantize_input(x_float, p["scale"], p["zero_point"])
    return x_float.astype(np.float32)


def run_tflite(model_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    """Run the TFLite (LiteRT) interpreter on every sample; outputs stacked (N, ...)."""
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice; this interpreter is still shipped
        # no XNNPACK: deterministic builtin kernels, comparable run to run
        interp = tf.lite.Interpreter(
            model_content=model_bytes, num_threads=1,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType
            .BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    i_det, o_det = interp.get_input_details()[0], interp.get_output_details()[0]
    outs = []
    for x in inputs:
        interp.set_tensor(i_det["index"], x.reshape(i_det["shape"]))
        interp.invoke()
        o = interp.get_tensor(o_det["index"])
        outs.append(o[0] if o.shape[0] == 1 else o)
    return np.stack(outs) if outs else np.zeros((0,))


def evaluate(x_float: np.ndarray, y: np.ndarray, class_names: list[str],
             keras_model=None, tflite_bytes: bytes | None = None, tflm: bool = True,
             limit: int | None = None) -> Evaluation:
    """Evaluate every available form of the model on the same samples.

    Args:
        x_float: preprocessed float inputs (N, H, W, C).
        y: integer labels.
        class_names: names for reports.
        keras_model: float model (optional).
        tflite_bytes: the int8 model (optional).
        tflm: also run the TFLM interpreter (child process).
        limit: evaluate only the first N samples.
    """
    if limit is not None:
        x_float, y = x_float[:limit], y[:limit]
    k = len(class_names)
    ev = Evaluation(len(y), list(class_names))
    if keras_model is not None:
        probs = keras_model.predict(x_float, batch_size=256, verbose=0)
        ev.float = score(y, probs.argmax(-1), k)
    if tflite_bytes is not None:
        xin = model_inputs(x_float, tflite_bytes)
        out_int8 = run_tflite(tflite_bytes, xin)
        ev.int8 = score(y, out_int8.reshape(len(y), -1).argmax(-1), k)
        if tflm:
            from pipeline.tflm import run_tflm

            out_tflm = run_tflm(tflite_bytes, xin).outputs[0]
            ev.tflm_outputs = out_tflm
            ev.tflm = score(y, out_tflm.reshape(len(y), -1).argmax(-1), k)
            a = out_int8.reshape(len(y), -1)
            b = out_tflm.reshape(len(y), -1)
            ev.agreement_predictions = float(np.mean(a.argmax(-1) == b.argmax(-1)))
            ev.agreement_exact = float(np.mean(np.all(a == b, axis=1)))
    return ev


def plot_confusion(acc: Accuracy, class_names: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(acc.confusion)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * max(n, 4), 0.8 + 0.6 * max(n, 4)))
    ax.imshow(cm, cmap="Blues")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=8)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: {acc.accuracy:.1%}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(ev: Evaluation, out_dir: Path) -> dict[str, str]:
    """confusion.png (of the most device-like result) and evaluation.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    best = ev.tflm or ev.int8 or ev.float
    label = "TFLM int8" if ev.tflm else "int8" if ev.int8 else "float"
    if best is not None:
        plot_confusion(best, ev.class_names, out_dir / "confusion.png", label)
        files["confusion_png"] = "confusion.png"
    (out_dir / "evaluation.json").write_text(json.dumps(ev.to_dict(), indent=1))
    files["evaluation_json"] = "evaluation.json"
    return files


def evaluate_file(model_path: str | Path, data_path: str | Path | None, config: str | None,
                  overrides: list[str], out: str | Path | None = None) -> dict:
    """Evaluate a .tflite (or a model folder) on every image of a dataset.

    Preprocessing comes from, in order: --config, the folder's card.json (`preprocess`), the
    folder's config.yaml, else defaults; the image size comes from the model's input tensor.
    """
    from pipeline.config import PreprocessConfig, load_config
    from pipeline.data import scale_pixels
    from pipeline.errors import DataError

    path = Path(model_path)
    folder = path if path.is_dir() else path.parent
    tfl = path / "model.tflite" if path.is_dir() else path
    if not tfl.is_file():
        raise DataError(f"{path}: no model.tflite in this folder")
    data = tfl.read_bytes()
    if data_path is None:
        raise DataError("evaluate --model needs --data (image folder or .npz)")
    card = folder / "card.json"
    if config is None and (folder / "config.yaml").exists() and not card.exists():
        config = str(folder / "config.yaml")
    cfg = load_config(config, overrides)
    pre = cfg.preprocess
    if config is None and card.exists():
        cp = json.loads(card.read_text()).get("preprocess", {})
        pre = PreprocessConfig(**{**pre.__dict__, **{k: v for k, v in cp.items()
                                                     if k in pre.__dict__}})
    shape = io_params(data)["input"]["shape"]
    h, w, c = (shape[1:] if len(shape) == 4 else shape)[:3]
    pre = PreprocessConfig(**{**pre.__dict__, "height": h, "width": w, "channels": c})
    x, y, names = _all_images(Path(data_path), pre, cfg)
    ev = evaluate(scale_pixels(x, pre), y, names, None, data, tflm=True, limit=cfg.evaluate.limit)
    if out is not None:
        write_outputs(ev, Path(out))
    return ev.to_dict()


def _all_images(path: Path, pre, cfg):
    """Every image of a folder or .npz (no split), at the model's input size."""
    from pipeline.config import DataConfig
    from pipeline.data import load_dataset

    src = "npz" if path.suffix == ".npz" else "folder"
    ds = load_dataset(DataConfig(source=src, path=str(path), val_split=0.0, test_split=0.0,
                                 seed=cfg.data.seed), pre)
    x = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    return x, y, ds.class_names
