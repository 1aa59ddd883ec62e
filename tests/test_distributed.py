"""Multi-worker training: two real worker processes on 127.0.0.1 train the same model."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest
import yaml
from tp_helpers import REPO, tiny_config_dict

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.train import is_chief, make_strategy, output_dir

WORKER_TIMEOUT = 300  # seconds; one tiny epoch takes a few seconds once TensorFlow is up


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_two_workers_end_with_identical_weights(tmp_path):
    raw = tiny_config_dict(train={"epochs": 1, "batch_size": 32, "distribute": "multi_worker"})
    raw["data"]["synthetic"]["samples_per_class"] = 100
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs, tmpdirs = [], []
    try:
        for i in range(2):
            tmpdir = tmp_path / f"tmp{i}"  # each worker's temporary files, checked below
            tmpdir.mkdir()
            tmpdirs.append(tmpdir)
            env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmpdir),
                       TF_CPP_MIN_LOG_LEVEL="3",
                       TF_CONFIG=json.dumps({"cluster": cluster,
                                             "task": {"type": "worker", "index": i}}))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "train", "--config", str(cfg_path),
                 "--out", str(out)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True))
        results = [p.communicate(timeout=WORKER_TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    digests = []
    for p, (stdout, stderr) in zip(procs, results, strict=True):
        assert p.returncode == 0, stderr[-2000:]
        m = re.search(r"weights sha256: ([0-9a-f]{64})", stdout)
        assert m, stdout
        digests.append(m.group(1))
    assert digests[0] == digests[1]  # the replicas stayed in sync
    for name in ("config.yaml", "model.keras", "curves.png", "history.csv", "state.json"):
        assert (out / name).stat().st_size > 0, name
    state = json.loads((out / "state.json").read_text())
    assert state["train"]["best_epoch"] == 1 and len(state["train"]["history"]["loss"]) == 1
    assert load_config(out / "config.yaml").train.distribute == "multi_worker"
    for tmpdir in tmpdirs:  # the non-chief's run folder was temporary and is gone
        assert not [q.name for q in tmpdir.iterdir() if q.name.startswith("tinypipe-worker")]


def test_chief_and_worker_roles(monkeypatch, tmp_path):
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert is_chief()
    for index, chief in ((0, True), (1, False)):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                    "task": {"type": "worker", "index": index}}))
        assert is_chief() is chief
        with output_dir(tmp_path / "run", "multi_worker") as here:
            assert (here == tmp_path / "run") is chief
            here.mkdir(exist_ok=True)
        assert here.exists() is chief  # a worker's folder is removed
        with output_dir(tmp_path / "run", "auto") as here:  # single process: always `out`
            assert here == tmp_path / "run"
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {**cluster, "chief": ["h:3"]},
                                                "task": {"type": "worker", "index": 0}}))
    assert not is_chief()


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="needs TF_CONFIG"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG: not valid JSON"):
        make_strategy("multi_worker")
