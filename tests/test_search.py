import json
import os
import signal
import subprocess
import threading
import time

import pytest
from tp_helpers import tiny_config_dict

from pipeline.config import from_dict
from pipeline.errors import ConfigError
from pipeline.search import Candidate, default_max_epochs, parse_size, search


def test_parse_size_units():
    assert parse_size("128KB", "f") == 128 * 1024
    assert parse_size("64KiB", "f") == 65536
    assert parse_size("12.5M", "f") == 12_500_000
    assert parse_size("1000", "f") == 1000
    with pytest.raises(ConfigError, match="--budget-ram"):
        parse_size("lots", "--budget-ram")


def test_default_max_epochs_halves_to_one():
    assert default_max_epochs(2, 1) == 2
    assert default_max_epochs(2, 3) == 8  # rungs 2, 4, 8
    assert default_max_epochs(1, 100) == 8  # at most three halvings


def _ray_daemons() -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,comm="], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in out.splitlines()
            if line.split()[1:] and line.split()[1] in ("raylet", "gcs_server")}


def test_search_on_ray_reports_every_trial(tmp_path):
    pytest.importorskip("ray.tune", reason="Ray Tune is the `distributed` extra")
    from pipeline.model import build_model

    raw = tiny_config_dict(train={"epochs": 1, "distill": {"weight": 0.5}})
    raw["data"]["synthetic"]["samples_per_class"] = 60
    cfg = from_dict(raw)
    # A 32x32 teacher: the 48 px candidate cannot distill from it, so its trial fails.
    teacher = build_model(cfg.model, (32, 32, 3), cfg.data.synthetic.classes)
    teacher.save(tmp_path / "teacher.keras")
    cfg.train.distill.teacher = str(tmp_path / "teacher.keras")
    cands = [Candidate("mobilenet_v1", 0.25, 32, None),
             Candidate("dense2_mobilenet", 0.25, 32, None),
             Candidate("mobilenet_v1", 0.25, 48, None),
             Candidate("mobilenet_v1", 1.0, 32, None)]
    budgets = {"flash": 200_000, "ram": 200_000, "macs": 5_000_000}
    before = _ray_daemons()

    class Console:
        """Kills the first trial worker that reports an epoch: its trial must still be reported.

        Holds a lock, like the CLI's console: Tune pickles its callbacks, the log must survive.
        """

        def __init__(self):
            self.lock, self.killed = threading.Lock(), []

        def log(self, line: str) -> None:
            with self.lock:
                if not self.killed and " epoch 1 " in line and "-32:" in line:
                    pid = int(line.split("(pid ")[1].split()[0])
                    self.killed.append(pid)
                    os.kill(pid, signal.SIGKILL)

    console = Console()
    res = search(cfg, budgets, minutes=8, out_dir=tmp_path / "search", candidates=cands,
                 start_epochs=1, max_epochs=6, log=console.log, train_samples=100)
    killed = console.killed
    small, dense, wide, big = res.candidates
    assert big.macs > budgets["macs"] and not big.fits and big.reason == "MACs"
    assert big.accuracy is None and big.status == ""  # over budget: never a trial
    assert wide.fits and wide.status.startswith("failed: ModelError") and "teacher" in wide.status
    assert killed
    died = [c for c in (small, dense) if c.status == "failed: worker died"]
    survived = [c for c in (small, dense) if c not in died]
    assert len(died) == 1 and len(survived) == 1
    assert died[0].epochs_trained >= 1 and died[0].accuracy is not None  # reported, not lost
    ok = survived[0]
    assert ok.status == "completed" and ok.epochs_trained == 6
    assert ok.fits and ok.ram_bytes and ok.aot_ram_bytes and 0 < ok.flash_bytes <= 200_000
    assert ok.accuracy == max(ok.val_history) and len(ok.val_history) == 6
    out = tmp_path / "search"
    data = json.loads((out / "search.json").read_text())
    assert data["train_samples"] == 100  # the seeded subset, not the whole training split
    assert data["best"] == ok.name and data["max_epochs"] == 6
    assert data["ray"]["address"] == "local" and data["ray"]["resources"]["CPU"] >= 1
    assert [r["epochs"] for r in data["rounds"]][:1] == [1]
    table = (out / "search.md").read_text()
    assert "| mobilenet_v1-1-32 |" in table and "failed: worker died" in table
    assert "failed: ModelError" in table
    assert (out / "search.png").stat().st_size > 0
    deadline = time.monotonic() + 30  # ray.shutdown() stops its daemons; give them a moment
    while _ray_daemons() - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _ray_daemons() - before, "Ray processes left running"
