"""Shared fixtures: a tiny trained model and its int8 conversion, built once per session."""

from __future__ import annotations

import os

import pytest
from tp_helpers import tiny_config_dict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Run every stage once on the tiny config; tests read the run folder."""
    from pipeline.config import from_dict
    from pipeline.run import run_all

    out = tmp_path_factory.mktemp("tiny_run")
    report = run_all(from_dict(tiny_config_dict()), out)
    return out, report
