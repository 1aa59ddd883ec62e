"""CLI: --help examples, one-line errors with non-zero exits, and the end-to-end run."""

import json
import re
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner
from tp_helpers import REPO, tiny_config_dict

from pipeline.artifact import ModelArtifact, model_hash
from pipeline.cli import cli

COMMANDS = ["train", "quantize", "evaluate", "profile", "export", "run"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_shows_an_example(cmd):
    res = CliRunner().invoke(cli, [cmd, "--help"])
    assert res.exit_code == 0
    assert "Example" in res.output and f"tinypipe {cmd}" in res.output


def _tinypipe(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def _one_line_error(proc, *needles):
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], err


def test_unknown_config_key_is_one_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model:\n  alhpa: 0.5\n")
    proc = _tinypipe("train", "--config", str(cfg), "--out", str(tmp_path / "r"))
    _one_line_error(proc, "bad.yaml", "model.alhpa", "first_stride")
    assert proc.returncode == 2


def test_corrupt_image_is_one_line(tmp_path):
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        (tmp_path / "imgs" / c / "x.png").write_bytes(b"not a png at all")
    proc = _tinypipe("train", "--data", str(tmp_path / "imgs"), "--out", str(tmp_path / "r"))
    _one_line_error(proc, "x.png", "cannot read image")


def test_missing_stage_input_is_one_line(tmp_path):
    proc = _tinypipe("quantize", "--out", str(tmp_path / "empty"))
    _one_line_error(proc, "model.keras", "tinypipe train")


def test_not_a_tflite_is_one_line(tmp_path):
    bad = tmp_path / "m.tflite"
    bad.write_bytes(b"\x00" * 100)
    proc = _tinypipe("profile", "--model", str(bad))
    _one_line_error(proc, "m.tflite")


def test_run_end_to_end(tmp_path, monkeypatch):
    """The whole pipeline on a tiny synthetic config, through the CLI, with real outcomes."""
    import keras

    import pipeline.tflm
    from pipeline.profile import profile_keras

    calls = []  # every host TFLM run: (model hash, with inputs?)
    real_run_tflm = pipeline.tflm.run_tflm

    def counting_run_tflm(model, inputs=None, *a, **kw):
        calls.append((ModelArtifact.load(model).hash, inputs is not None))
        return real_run_tflm(model, inputs, *a, **kw)

    monkeypatch.setattr(pipeline.tflm, "run_tflm", counting_run_tflm)

    cfg = tmp_path / "tiny.yaml"
    # the device stage too: offline firmware build, QEMU Cortex-M4, 40 test samples streamed
    cfg.write_text(yaml.safe_dump(tiny_config_dict(hil={"env": "qemu-m4", "limit": 40},
                                                   export={"backend": "both"})))
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--config", str(cfg), "--out", str(out)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "accuracy float / int8 / TFLM" in res.output
    report = json.loads((out / "report.json").read_text())
    chance = 1 / 3
    for k in ("float", "int8", "tflm"):
        assert report["accuracy"][k] > chance + 0.3, report["accuracy"]
    assert abs(report["accuracy"]["int8"] - report["accuracy"]["tflm"]) <= 0.05
    assert report["agreement"]["int8_vs_tflm"] >= 0.9
    data = (out / "model.tflite").read_bytes()
    assert report["model"]["tflite_bytes"] == len(data)
    assert report["model"]["arena_bytes"] > 0
    # exported C array == the .tflite bytes
    cc = (out / "c" / "tflm" / "model_data.cc").read_text()
    arr = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", cc))
    assert arr == data
    # op list in the resolver == the model's ops
    resolver = (out / "c" / "tflm" / "op_resolver.h").read_text()
    n_ops = len(ModelArtifact.load(data).op_names)
    assert len(re.findall(r"r\.Add\w+\(\)", resolver)) == n_ops
    assert model_hash(data) in (out / "c" / "tflm" / "model_settings.h").read_text()
    # MACs == an independent count on the float Keras graph
    assert report["model"]["macs"] == profile_keras(
        keras.saving.load_model(out / "model.keras"))["macs"]
    dev = report["device"]
    assert dev["samples"] == 40 and dev["bit_exact_rate"] == 1.0
    assert dev["accuracy"] == dev["host_tflm_accuracy"]
    assert dev["instructions_per_inference"] > report["model"]["macs"] / 4
    assert "on-device accuracy (qemu-m4)" in res.output
    for f in ("report.md", "curves.png", "confusion.png", "profile.md", "evaluation.json",
              "hil/hil.json"):
        assert (out / f).stat().st_size > 0, f
    # each stage ran once and handed its result on: the arena was measured once (profile),
    # the host TFLM outputs computed once (evaluate) and reused by the device stage, which
    # built from c/aot instead of exporting the model again
    h = model_hash(data)
    assert sorted(c for c in calls if c[0] == h) == [(h, False), (h, True)], calls
    assert not (out / "hil" / "firmware" / "model").exists()
    state = json.loads((out / "state.json").read_text())
    assert {st["model_hash"] for k, st in state.items() if k != "train"} == {h}
    # a stage re-run from the run folder reuses its saved config
    res = CliRunner().invoke(cli, ["evaluate", "--out", str(out), "--limit", "20"],
                             catch_exceptions=False)
    assert res.exit_code == 0 and "samples: 20" in res.output
    # evaluating the bare .tflite on an npz reproduces the int8 accuracy path
    import numpy as np

    from pipeline.data import synthetic

    x, y = synthetic(3, 20, 32, 32, 3, seed=9)
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    res = CliRunner().invoke(cli, ["evaluate", "--model", str(out), "--data",
                                   str(tmp_path / "eval.npz")], catch_exceptions=False)
    assert res.exit_code == 0 and "samples: 60" in res.output, res.output


def test_card_publishes_a_run(tiny_run, tmp_path):
    out, report = tiny_run
    dest = tmp_path / "published"
    res = CliRunner().invoke(cli, ["card", "--out", str(out), "--dest", str(dest)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    card = json.loads((dest / "card.json").read_text())
    assert (dest / "model.tflite").read_bytes() == (out / "model.tflite").read_bytes()
    assert card["macs"] == report["model"]["macs"]
    assert card["accuracy"]["tflm"] == report["accuracy"]["tflm"]
    assert card["preprocess"]["pixel_scale"] == pytest.approx(1 / 255)
    assert card["config"]["model"]["arch"] == "mobilenet_v1"
    assert "confusion.png" in (dest / "README.md").read_text()
    # hand-written notes in the destination survive re-publishing, appended to the card
    (dest / "NOTES.md").write_text("## How it compares\n\nkept\n")
    CliRunner().invoke(cli, ["card", "--out", str(out), "--dest", str(dest)],
                       catch_exceptions=False)
    readme = (dest / "README.md").read_text()
    assert readme.endswith("## How it compares\n\nkept\n") and "confusion.png" in readme
