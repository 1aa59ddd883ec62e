"""Build step: the wheel carries the repository's non-Python tree as package data.

Everything tinypipe needs outside `pipeline/` (the firmware sources and kernels in `firmware/`,
the PlatformIO project `platformio.ini`, the offline bootstrap `scripts/pio_bootstrap.sh`) stays
where it is in the repository and is copied into the built package as `pipeline/_share/`, with
the same layout, so `pipeline.paths` finds one tree in a checkout and in an installed package.
`firmware/` is copied whole (a glob, not a list), so files added there are shipped without
touching this script. Editable installs use the checkout directly and copy nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHARE = "_share"  # pipeline.paths.SHARE
TREES = ("firmware",)
FILES = ("platformio.ini", "scripts/pio_bootstrap.sh")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".pio", ".DS_Store")


class build_py_with_share(build_py):
    """build_py, then the non-Python tree into pipeline/_share (not for editable installs)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "pipeline" / SHARE
        if dest.exists():
            shutil.rmtree(dest)
        for tree in TREES:
            shutil.copytree(HERE / tree, dest / tree, ignore=SKIP)
        for name in FILES:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(HERE / name, dest / name)


setup(cmdclass={"build_py": build_py_with_share})
