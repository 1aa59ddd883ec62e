"""The held-out test split: carved first, stable, disjoint, and described for model cards."""

from __future__ import annotations

import numpy as np
from tp_helpers import tiny_config_dict

from pipeline.config import from_dict
from pipeline.data import SPLIT_USES, load_dataset


def _load(**data):
    cfg = from_dict(tiny_config_dict(data=data))
    return load_dataset(cfg.data, cfg.preprocess)


def _rows(x: np.ndarray) -> set[bytes]:
    return {bytes(r) for r in x.reshape(len(x), -1)}


def test_test_split_does_not_move_with_the_validation_split():
    a = _load(val_split=0.1, test_split=0.2)
    b = _load(val_split=0.3, test_split=0.2)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert len(a.x_val) < len(b.x_val)
    test = _rows(a.x_test)
    assert not test & _rows(a.x_train) and not test & _rows(a.x_val)
    assert np.bincount(a.y_test).tolist() == [40, 40, 40]  # stratified: 20 % of each class


def test_splits_describe_size_hash_and_use():
    ds = _load(val_split=0.1, test_split=0.2)
    s = ds.splits()
    assert list(s) == ["train", "val", "test"] and s["test"]["use"] == "final accuracy only"
    assert {k: v["samples"] for k, v in s.items()} == {"train": 420, "val": 60, "test": 120}
    assert len({v["sha256"] for v in s.values()}) == 3
    assert s["test"]["sha256"] == _load(val_split=0.3, test_split=0.2).splits()["test"]["sha256"]
    assert set(SPLIT_USES) == set(s)
