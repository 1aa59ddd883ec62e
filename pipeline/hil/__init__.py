"""Hardware-in-the-loop: build and flash firmware, talk protocol v2, measure on the board.

Public API: build(env, model, backend="aot", out=None) -> ELF path; flash(env, elf, port=None);
run_hil(env, model, data, port=None, limit=None, out_dir=..., flash=True) -> summary dict;
list_devices(). Imported lazily so `tinypipe --help` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {"build": ("pipeline.hil.build", "build_firmware"),
        "flash": ("pipeline.hil.runner", "flash_firmware"),
        "run_hil": ("pipeline.hil.runner", "run_hil"),
        "list_devices": ("pipeline.hil.devices", "list_devices")}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'pipeline.hil' has no attribute {name!r}")
