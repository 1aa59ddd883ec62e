import json

import pytest
from tp_helpers import tiny_config_dict

from pipeline.config import from_dict
from pipeline.errors import ConfigError
from pipeline.search import Candidate, parse_size, search


def test_parse_size_units():
    assert parse_size("128KB", "f") == 128 * 1024
    assert parse_size("64KiB", "f") == 65536
    assert parse_size("12.5M", "f") == 12_500_000
    assert parse_size("1000", "f") == 1000
    with pytest.raises(ConfigError, match="--budget-ram"):
        parse_size("lots", "--budget-ram")


def test_search_measures_filters_and_trains(tmp_path):
    raw = tiny_config_dict(train={"epochs": 1})
    raw["data"]["synthetic"]["samples_per_class"] = 60
    cfg = from_dict(raw)
    cands = [Candidate("mobilenet_v1", 0.25, 32, None),
             Candidate("dense2_mobilenet", 0.25, 32, None),
             Candidate("mobilenet_v1", 1.0, 32, None)]
    budgets = {"flash": 200_000, "ram": 200_000, "macs": 5_000_000}
    res = search(cfg, budgets, minutes=3, out_dir=tmp_path, candidates=cands, start_epochs=1,
                 train_samples=100)
    small, dense, big = res.candidates
    assert big.macs > budgets["macs"] and not big.fits and big.reason == "MACs"
    for c in (small, dense):
        assert c.fits and c.macs <= budgets["macs"] and 0 < c.flash_bytes <= budgets["flash"]
        assert c.ram_bytes and c.aot_ram_bytes
        assert c.accuracy is not None and c.epochs_trained >= 1
    assert big.accuracy is None  # over budget: never trained
    data = json.loads((tmp_path / "search.json").read_text())
    assert data["train_samples"] == 100  # the seeded subset, not the whole training split
    assert data["best"] in (small.name, dense.name)
    assert (tmp_path / "search.png").stat().st_size > 0
    assert "| mobilenet_v1-1-32 |" in (tmp_path / "search.md").read_text()
