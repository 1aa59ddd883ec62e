"""Accuracy of the float model, the int8 model (TFLite) and the int8 model on TFLM's kernels."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.artifact import ModelArtifact
from pipeline.errors import ModelError
from pipeline.quantize import quantize_input

NOT_LOADABLE = "not loadable by TensorFlow Lite"
# TensorFlow's loader repeats one complaint per tensor; this names the tensor in each repeat.
_BAD_TENSOR_RE = re.compile(r"Tensor (\d+) has invalid quantization parameters\.?")


class TFLiteRefused(ModelError):
    """TensorFlow Lite's interpreter will not load a model that TFLite Micro may still run."""


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
    int8_unavailable: str | None = None  # why there is no TFLite column (one line)
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
    if p["dtype"] in ("int8", "uint8", "int16"):
        return quantize_input(x_float, p["scale"], p["zero_point"], np.dtype(p["dtype"]))
    return x_float.astype(np.float32)


def load_tflite(model_bytes: bytes):
    """TensorFlow Lite's interpreter for a model, tensors allocated; TFLiteRefused if it won't."""
    import tensorflow as tf

    from pipeline._native import quiet_native

    try:
        with quiet_native():  # also hides the interpreter's deprecation notice
            # no XNNPACK: deterministic builtin kernels, comparable run to run
            interp = tf.lite.Interpreter(
                model_content=model_bytes, num_threads=1,
                experimental_op_resolver_type=tf.lite.experimental.OpResolverType
                .BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise TFLiteRefused(f"{NOT_LOADABLE}: {refusal_reason(str(e), model_bytes)}") from None
    return interp


def refusal_reason(message: str, model_bytes: bytes | None = None) -> str:
    """TensorFlow's load error as one short line: each complaint once, the tensors counted."""
    bad = [int(i) for i in _BAD_TENSOR_RE.findall(message)]
    parts = [p.strip() for p in _BAD_TENSOR_RE.sub("\n", message).splitlines()]
    reason = "; ".join(dict.fromkeys(p for p in parts if p)) or "no reason given"
    if bad:
        first = f"#{bad[0]}"
        tensors = ModelArtifact.load(model_bytes).tensors if model_bytes is not None else []
        if bad[0] < len(tensors):
            first += f" {tensors[bad[0]].name!r} {list(tensors[bad[0]].shape)}"
        reason += (f" (invalid quantization parameters in {len(bad)} tensor"
                   f"{'s' if len(bad) > 1 else ''}, first {first})")
    return reason


def run_tflite(model_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    """Run the TFLite (LiteRT) interpreter on every sample; outputs stacked (N, ...)."""
    interp = load_tflite(model_bytes)
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

    A model that TensorFlow Lite's interpreter refuses but TFLite Micro runs (older converters
    wrote quantization parameters it now rejects) gets no int8 column: `int8_unavailable` says
    why, and the TFLM column is still measured.

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
    if tflite_bytes is None:
        return ev
    check_classifier(tflite_bytes, k)
    xin = model_inputs(x_float, tflite_bytes)
    a = None
    try:
        a = run_tflite(tflite_bytes, xin).reshape(len(y), -1)
        ev.int8 = score(y, a.argmax(-1), k)
    except TFLiteRefused as e:
        if not tflm:
            raise
        ev.int8_unavailable = str(e)
    if tflm:
        from pipeline.tflm import run_tflm

        out_tflm = run_tflm(tflite_bytes, xin).outputs[0]
        ev.tflm_outputs = out_tflm
        b = out_tflm.reshape(len(y), -1)
        ev.tflm = score(y, b.argmax(-1), k)
        if a is not None:
            ev.agreement_predictions = float(np.mean(a.argmax(-1) == b.argmax(-1)))
            ev.agreement_exact = float(np.mean(np.all(a == b, axis=1)))
    return ev


def check_classifier(model_bytes: bytes, num_classes: int, where: str = "model") -> None:
    """Top-1 scoring needs one output value per class of the data."""
    shape = io_params(model_bytes)["output"]["shape"]
    n = int(np.prod(shape[1:] if len(shape) > 1 else shape))
    if n != num_classes:
        raise ModelError(f"{where}: output {shape} holds {n} class scores but the data has "
                         f"{num_classes} classes (a .npz can name all {n} in class_names)")


def summary_lines(d: dict) -> list[str]:
    """An evaluation (as `Evaluation.to_dict()`) in the few lines the CLI prints."""
    lines = []
    for k, label in (("float", "float"), ("int8", "int8 (TFLite)"), ("tflm", "int8 (TFLM)")):
        if d.get(k):
            lines.append(f"accuracy {label:<14} {d[k]['accuracy']:.2%}")
        elif k == "int8" and d.get("int8_unavailable"):
            lines.append(f"accuracy {label:<14} {d['int8_unavailable']}")
    if d.get("agreement_predictions") is not None:
        lines.append(f"agreement int8 vs TFLM: {d['agreement_predictions']:.2%} top-1, "
                     f"{d['agreement_exact']:.2%} byte-identical")
    lines.append(f"samples: {d['n']}")
    return lines


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
    if len(shape) not in (3, 4):
        raise ModelError(f"{tfl}: input {shape} is not an image (1,H,W,C); evaluate scores image "
                         "classifiers (profile, export, bench and hil take any model)")
    h, w, c = shape[-3:]
    pre = PreprocessConfig(**{**pre.__dict__, "height": h, "width": w, "channels": c})
    x, y, names = _all_images(Path(data_path), pre, cfg)
    check_classifier(data, len(names), str(tfl))
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
