"""Where tinypipe's non-Python parts live: firmware sources, kernels, the PlatformIO project.

Every module that needs a file outside the Python package asks here, so the layout is one fact.

Two layouts, the same tree:
- a source checkout: the repository itself (`firmware/`, `platformio.ini`, `scripts/` next to
  `pipeline/`);
- an installed package (wheel, pipx): the build copies those files into the package as
  `pipeline/_share/` (see setup.py), found here through `importlib.resources`.

`ROOT` is the top of that tree in either case: read-only sources. Builds, generated PlatformIO
projects and the PlatformIO core are written elsewhere: in a checkout under the repository, as
always (`make demo`, `make test`); installed, in the user's working folder and a per-user cache.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

SHARE = "_share"  # package folder of the installed tree (setup.py writes it)
_PACKAGE = Path(__file__).resolve().parent


def _is_tree(path: Path) -> bool:
    return (path / "firmware" / "src").is_dir() and (path / "platformio.ini").is_file()


def _root() -> tuple[Path, bool]:
    """The source tree and whether it is a checkout (not an installed package)."""
    checkout = _PACKAGE.parent
    if _is_tree(checkout) and (checkout / "pyproject.toml").is_file():
        return checkout, True
    share = resources.files("pipeline").joinpath(SHARE)
    # PlatformIO and the compilers need real files: a zipped install cannot build firmware.
    path = Path(str(share))
    return path, False


ROOT, CHECKOUT = _root()
FIRMWARE = ROOT / "firmware"
KERNELS = FIRMWARE / "lib" / "tinykernels"
BENCH = FIRMWARE / "bench"
PIO_INI = ROOT / "platformio.ini"
SCRIPTS = ROOT / "scripts"


def rel(path: str | Path) -> Path:
    """A path from the registry or platformio.ini (relative to the project) made absolute."""
    p = Path(path)
    return p if p.is_absolute() else ROOT / p


def work_dir() -> Path:
    """Where builds go by default: the repository in a checkout, else the current folder."""
    return ROOT if CHECKOUT else Path.cwd()


def cache_dir() -> Path:
    """tinypipe's per-user cache ($XDG_CACHE_HOME/tinypipe, else ~/.cache/tinypipe)."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "tinypipe"


def core_dir() -> Path:
    """The PlatformIO core dir: $PLATFORMIO_CORE_DIR, else the checkout's `.pio-core`, else a
    per-user one (never inside site-packages, which may be read-only)."""
    given = os.environ.get("PLATFORMIO_CORE_DIR", "").strip()
    if given:
        return Path(given)
    return ROOT / ".pio-core" if CHECKOUT else cache_dir() / "platformio"
