"""Training options: batch mixing, distillation from a teacher, explicit block layouts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tp_helpers import tiny_config_dict

from pipeline.config import from_dict
from pipeline.data import Dataset, load_dataset
from pipeline.errors import ConfigError, ModelError
from pipeline.model import build_model
from pipeline.profile import profile_keras
from pipeline.train import _mix_batch, train


def _flat_batch(n: int = 64, classes: int = 4):
    """Images of one grey level per class, so every pixel says which label it came from."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, n)
    x = np.broadcast_to((y / classes).astype(np.float32)[:, None, None, None],
                        (n, 32, 32, 3)).copy()
    return x, np.eye(classes, dtype=np.float32)[y], np.arange(classes) / classes


@pytest.mark.parametrize("mix", [{"mixup": 0.4}, {"cutmix": 1.0}, {"mixup": 0.4, "cutmix": 1.0}])
def test_mixed_images_and_labels_agree(mix):
    import tensorflow as tf

    cfg = from_dict(tiny_config_dict(train={"augment": mix}))
    x, y, level = _flat_batch()
    mixed = 0
    for s in range(5):
        xm, ym = (np.asarray(v) for v in _mix_batch(tf.constant(x), tf.constant(y),
                                                    tf.constant([s, 7]), cfg))
        np.testing.assert_allclose(ym.sum(axis=1), 1.0, rtol=1e-6)
        # each image's mean grey level is its label mixture: cutmix pastes exactly the
        # label's share of the area, mixup blends exactly the label's weights
        np.testing.assert_allclose(xm.mean(axis=(1, 2, 3)), ym @ level, atol=1e-5)
        mixed += int(np.any(ym.max(axis=1) < 1.0))
    assert mixed >= 3  # labels really are mixed, in most batches


def test_mix_prob_zero_leaves_the_batch_alone():
    import tensorflow as tf

    cfg = from_dict(tiny_config_dict(train={"augment": {"mixup": 0.4, "mix_prob": 0.0}}))
    x, y, _ = _flat_batch()
    xm, ym = _mix_batch(tf.constant(x), tf.constant(y), tf.constant([1, 2]), cfg)
    np.testing.assert_array_equal(np.asarray(xm), x)
    np.testing.assert_array_equal(np.asarray(ym), y)


def test_student_learns_from_the_teacher_alone(tmp_path):
    raw = tiny_config_dict(data={"val_split": 0.2, "test_split": 0.2})
    cfg = from_dict(raw)
    ds = load_dataset(cfg.data, cfg.preprocess)
    teacher = train(cfg, ds, out_dir=tmp_path / "teacher")
    # The student's labels are noise; with weight 1 it only sees the teacher's soft targets.
    noise = np.random.default_rng(5).permutation(ds.y_train)
    noisy = Dataset(ds.x_train, noise, ds.x_val, ds.y_val, ds.x_test, ds.y_test,
                    ds.class_names, ds.source, ds.digest)
    student_cfg = from_dict({**raw, "train": {**raw["train"], "seed": 1, "distill": {
        "teacher": str(tmp_path / "teacher"), "weight": 1.0, "temperature": 2.0}}})
    student = train(student_cfg, noisy)
    xt = ds.x_test.astype(np.float32) / 255.0
    acc = float(np.mean(np.argmax(student.model.predict(xt, verbose=0), 1) == ds.y_test))
    t_acc = float(np.mean(np.argmax(teacher.model.predict(xt, verbose=0), 1) == ds.y_test))
    assert t_acc > 0.8
    assert acc > 0.7, (acc, t_acc)  # chance is 1/3 and the labels it saw were shuffled


def test_teacher_must_match_the_student(tmp_path):
    cfg = from_dict(tiny_config_dict(train={"epochs": 1}))
    ds = load_dataset(cfg.data, cfg.preprocess)
    build_model(cfg.model, (48, 48, 3), ds.num_classes).save(tmp_path / "t48.keras")
    bad = dataclasses.replace(cfg.train, distill=dataclasses.replace(
        cfg.train.distill, teacher=str(tmp_path / "t48.keras")))
    with pytest.raises(ModelError, match="teacher input"):
        train(dataclasses.replace(cfg, train=bad), ds)
    missing = dataclasses.replace(bad, distill=dataclasses.replace(
        bad.distill, teacher=str(tmp_path / "nothing")))
    with pytest.raises(ConfigError, match="train.distill.teacher"):
        train(dataclasses.replace(cfg, train=missing), ds)


def test_layout_sets_every_block():
    raw = tiny_config_dict(model={"alpha": 0.75, "layout": [[48, 1], [96, 2], [96, 1]]})
    cfg = from_dict(raw)
    m = build_model(cfg.model, (32, 32, 3), 10)
    widths = [m.get_layer(f"conv_pw_{i}").output.shape[-1] for i in (1, 2, 3)]
    assert widths == [48, 96, 96] and m.get_layer("conv1").output.shape[-1] == 24
    assert m.get_layer("conv_pw_3").output.shape[1:3] == (16, 16)
    # stem 3x3x3x24 at 32x32, then each block's depthwise 3x3 and pointwise conv, then the head
    macs = (32 * 32 * 24 * 27 + 32 * 32 * 24 * 9 + 32 * 32 * 24 * 48 + 16 * 16 * 48 * 9
            + 16 * 16 * 48 * 96 + 16 * 16 * 96 * 9 + 16 * 16 * 96 * 96 + 96 * 10)
    assert profile_keras(m)["macs"] == macs


@pytest.mark.parametrize("layout, msg", [
    ([[48, 3]], "model.layout must be"), ([48, 96], "model.layout must be"),
    ([], "model.layout must be"), ([[0, 1]], "model.layout must be")])
def test_layout_is_validated(layout, msg):
    with pytest.raises(ConfigError, match=msg):
        from_dict(tiny_config_dict(model={"layout": layout}))
    with pytest.raises(ConfigError, match="not mobilenet_v2"):
        from_dict(tiny_config_dict(model={"arch": "mobilenet_v2", "layout": [[16, 1]]}))


@pytest.mark.parametrize("key, value, msg", [
    ("distribute", "everywhere", "train.distribute must be one of"),
    ("augment", {"mixup": -1}, "train.augment.mixup must be >= 0"),
    ("augment", {"mix_prob": 2}, "train.augment.mix_prob"),
    ("distill", {"weight": 1.5}, "train.distill.weight"),
    ("distill", {"temperature": 0}, "train.distill.temperature")])
def test_train_options_are_validated(key, value, msg):
    with pytest.raises(ConfigError, match=msg):
        from_dict(tiny_config_dict(train={key: value}))
