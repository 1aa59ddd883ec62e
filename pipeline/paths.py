"""Where tinypipe's non-Python parts live: firmware sources, kernels, the PlatformIO project.

Every module that needs a file outside the Python package asks here, so the layout is one fact.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
KERNELS = FIRMWARE / "lib" / "tinykernels"
BENCH = FIRMWARE / "bench"
PIO_INI = ROOT / "platformio.ini"
SCRIPTS = ROOT / "scripts"


def rel(path: str | Path) -> Path:
    """A path from the registry or platformio.ini (relative to the project) made absolute."""
    p = Path(path)
    return p if p.is_absolute() else ROOT / p
