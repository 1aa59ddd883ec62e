"""Quantization-aware fine-tuning that works alongside Keras 3.

tensorflow-model-optimization's QAT does not support Keras 3 models, so the fine-tune runs in a
child process with TF_USE_LEGACY_KERAS=1: there the same builder (`pipeline.model`) constructs
the network with tf_keras, the trained float weights are copied in, the model is wrapped with
fake-quant nodes, fine-tuned briefly, and converted to a full-int8 .tflite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from pipeline.config import Config, load_config, save_config
from pipeline.errors import ModelError


def qat_finetune(cfg: Config, float_model, x_train: np.ndarray, y_train: np.ndarray,
                 rep: np.ndarray, num_classes: int, epochs: int = 2, lr: float = 2e-4,
                 timeout: float = 4 * 3600) -> bytes:
    """Fine-tune `float_model` with fake quantization; returns the int8 .tflite bytes.

    Args:
        cfg: the run's config (model and preprocess sections are used).
        float_model: the trained Keras 3 model (training batch size).
        x_train, y_train: float inputs and integer labels for the fine-tune.
        rep: float representative samples for the converter.
        num_classes: classes of the head.
        epochs, lr: fine-tune length and learning rate.
    """
    with tempfile.TemporaryDirectory(prefix="tinypipe-qat-") as tmp:
        t = Path(tmp)
        save_config(cfg, t / "config.yaml")
        np.savez(t / "weights.npz", *float_model.get_weights())
        np.savez(t / "data.npz", x=x_train, y=y_train, rep=rep)
        (t / "args.json").write_text(json.dumps({"epochs": epochs, "lr": lr,
                                                 "num_classes": num_classes}))
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run([sys.executable, "-m", "pipeline.qat", str(t)], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            raise ModelError(f"QAT fine-tune failed: {tail[-1] if tail else proc.returncode}")
        return (t / "model.tflite").read_bytes()


def _worker(folder: str) -> None:
    import tensorflow as tf
    import tf_keras

    sys.modules["keras"] = tf_keras  # the builder imports `keras`; here that means tf_keras
    import tensorflow_model_optimization as tfmot

    from pipeline._native import quiet_native
    from pipeline.model import build_model
    from pipeline.quantize import int8_converter

    t = Path(folder)
    cfg = load_config(t / "config.yaml")
    args = json.loads((t / "args.json").read_text())
    p = cfg.preprocess
    shape = (p.height, p.width, p.channels)
    with np.load(t / "weights.npz") as z:
        weights = [z[f"arr_{i}"] for i in range(len(z.files))]
    with np.load(t / "data.npz") as z:
        x, y, rep = z["x"], z["y"], z["rep"]
    tf_keras.utils.set_random_seed(cfg.train.seed)
    model = build_model(cfg.model, shape, args["num_classes"])
    model.set_weights(weights)
    qmodel = tfmot.quantization.keras.quantize_model(model)
    qmodel.compile(optimizer=tf_keras.optimizers.Adam(args["lr"]),
                   loss=tf_keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    ds = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=cfg.train.seed)
          .batch(cfg.train.batch_size))
    qmodel.fit(ds, epochs=args["epochs"], verbose=0)
    # the export graph has batch 1: wrap a batch-1 twin the same way and copy everything over
    export = tfmot.quantization.keras.quantize_model(
        build_model(cfg.model, shape, args["num_classes"], batch_size=1))
    export.set_weights(qmodel.get_weights())
    qmodel = export

    conv = int8_converter(tf.lite.TFLiteConverter.from_keras_model(qmodel), rep)
    with quiet_native():
        data = conv.convert()
    (t / "model.tflite").write_bytes(data)


if __name__ == "__main__":
    _worker(sys.argv[1])
