"""Hardware-in-the-loop: build and flash firmware, talk protocol v1, measure on the board."""

from pipeline.hil.build import build_firmware as build
from pipeline.hil.devices import list_devices
from pipeline.hil.runner import flash, run_hil

__all__ = ["build", "flash", "list_devices", "run_hil"]
