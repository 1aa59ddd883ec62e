"""Fixtures for the AOT tests (helpers live in aot_helpers.py)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def keras():
    import keras as k

    return k
