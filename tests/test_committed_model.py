"""The committed CIFAR-10 model: its card describes this very file and says where its accuracy
comes from, it lints, the AOT C runs it bit-exactly with TFLM, and the card's preprocessing turns
pixels into the int8 inputs the model was quantized for."""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from tp_helpers import REPO

from pipeline.artifact import model_hash
from pipeline.card import FIELDS, publish
from pipeline.config import PreprocessConfig
from pipeline.data import scale_pixels
from pipeline.evaluate import io_params, model_inputs
from pipeline.quantize import lint

sys.path.insert(0, str(Path(__file__).parent / "aot"))
from aot_helpers import check_bit_exact  # noqa: E402

FOLDER = REPO / "models" / "cifar10"


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((FOLDER / "card.json").read_text())


@pytest.fixture(scope="module")
def model() -> bytes:
    return (FOLDER / "model.tflite").read_bytes()


def test_card_names_this_model(card, model):
    assert list(card) == list(FIELDS)
    assert card["model_hash"] == model_hash(model)
    assert card["tflite_bytes"] == len(model)


def test_card_says_which_split_the_accuracy_comes_from(card):
    splits, acc = card["splits"], card["accuracy"]
    assert list(splits) == ["train", "val", "test"]
    picked = [s for s, v in splits.items() if "picked the checkpoint" in v["use"]]
    assert len(picked) == 1
    assert acc["samples"] == splits[acc["split"]]["samples"]
    assert acc["split_chose_checkpoint"] == (acc["split"] == picked[0])
    # this model: validation carved from the 50,000 training images, no test split carved,
    # so its figures come from the split that also chose the epoch
    assert {s: v["samples"] for s, v in splits.items()} == {"train": 45000, "val": 5000,
                                                            "test": 0}
    assert acc["split"] == "val" and acc["split_chose_checkpoint"] is True
    assert f"best epoch {card['best_epoch']} of" in splits["val"]["use"]
    (test,) = card["independent_accuracy"]
    assert test["model_hash"] == card["model_hash"] and test["samples"] == 10000
    readme = (FOLDER / "README.md").read_text()
    assert f"`{card['model_hash']}`" in readme and "also picked the checkpoint" in readme
    assert f"{test['accuracy']:.2%}" in readme and f"{acc['tflm']:.2%}" in readme


def test_card_figures_are_this_models(card, model):
    from pipeline.profile import profile_tflite

    prof = profile_tflite(model)
    assert (prof.macs, prof.params, prof.param_bytes, prof.arena_bytes) == (
        card["macs"], card["params"], card["weight_bytes"], card["tflm_arena_bytes"])


def test_model_lints(model):
    rep = lint(model)
    assert rep.input_dtype == rep.output_dtype == "int8"


def test_aot_export_is_bit_exact_with_tflm(card, model, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (6, 32, 32, 3), dtype=np.int8)
    res, ref = check_bit_exact(model, tmp_path, inputs=[x])
    assert res.arena_bytes == card["aot_arena_bytes"]
    assert ref.outputs[0].shape == (6, len(card["class_names"]))


def test_card_preprocessing_gives_the_models_int8_inputs(card, model):
    pre = PreprocessConfig(**{f.name: card["preprocess"][f.name] for f in fields(PreprocessConfig)})
    # every pixel value, then a few random images
    ramp = (np.arange(32 * 32 * 3) % 256).astype(np.uint8).reshape(1, 32, 32, 3)
    rand = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    x = np.concatenate([ramp, rand])
    got = model_inputs(scale_pixels(x, pre), model)
    assert got.dtype == np.int8 and got.shape == x.shape
    # the card's formula with the model's own input quantization, in float64
    q = io_params(model)["input"]
    v = (x * pre.pixel_scale + pre.pixel_offset) / q["scale"]
    want = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + q["zero_point"], -128, 127)
    np.testing.assert_array_equal(got, want.astype(np.int8))
    # for this model that is exactly pixel - 128, what the firmware computes with no floats
    np.testing.assert_array_equal(got, (x.astype(np.int16) - 128).astype(np.int8))


def test_publish_writes_the_fields_of_the_committed_card(card, tiny_run, tmp_path):
    out, report = tiny_run
    dest = tmp_path / "published"
    new = publish(out, dest)
    assert list(new) == list(card)
    for k in ("splits", "accuracy"):
        assert {s: list(v) for s, v in new[k].items() if isinstance(v, dict)} == \
            {s: list(v) for s, v in card[k].items() if isinstance(v, dict)}
        assert list(new[k]) == list(card[k])
    data = (out / "model.tflite").read_bytes()
    assert new["model_hash"] == model_hash(data)
    assert new["data_sha256"] == report["data"]["digest"]
    # the tiny config carves a test split: the figure comes from it, not from the split that
    # picked the checkpoint
    assert sum(v["samples"] for v in new["splits"].values()) == 600
    acc = new["accuracy"]
    assert acc["split"] == "test" and acc["split_chose_checkpoint"] is False
    assert acc["samples"] == new["splits"]["test"]["samples"] == report["data"]["samples"]
    assert "touched only for the final figure" in new["splits"]["test"]["use"]
    # an independent figure survives re-publishing only while it describes the same model
    c = json.loads((dest / "card.json").read_text())
    c["independent_accuracy"] = [{"data": "a", "samples": 1, "accuracy": 1.0,
                                  "model_hash": new["model_hash"]},
                                 {"data": "b", "samples": 1, "accuracy": 1.0,
                                  "model_hash": "0" * 16}]
    (dest / "card.json").write_text(json.dumps(c))
    again = publish(out, dest)
    assert [m["data"] for m in again["independent_accuracy"]] == ["a"]
