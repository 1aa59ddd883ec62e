"""HIL test fixtures: env -> firmware -> port (a board or a QEMU we start) -> link -> dut.

    pytest hil_tests                              # QEMU M4 and M7
    pytest hil_tests --env qemu-m7                # one emulator env
    pytest hil_tests --env nucleo_f746zg --port /dev/ttyACM0 --no-flash
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import farm_plugin  # noqa: E402
import tiny_model  # noqa: E402

from pipeline.artifact import ModelArtifact  # noqa: E402
from pipeline.boards import board  # noqa: E402
from pipeline.emulator import Emulator, make_emulator  # noqa: E402
from pipeline.hil.link import Link  # noqa: E402

DEFAULT_ENVS = ["qemu-m4", "qemu-m7"]


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("tinypipe HIL")
    g.addoption("--env", action="append", dest="hil_envs", metavar="ENV",
                help=f"PlatformIO env to test; repeatable (default: {' '.join(DEFAULT_ENVS)}).")
    g.addoption("--port", dest="hil_port", metavar="PORT",
                help="Serial port or socket:// URL of a board already running the firmware "
                     "(default: start QEMU for emulator envs).")
    g.addoption("--emulator", dest="hil_qemu", default="qemu-system-arm", metavar="PATH",
                help="QEMU binary for emulator envs (default: qemu-system-arm).")
    g.addoption("--no-flash", dest="hil_no_flash", action="store_true",
                help="Board at --port already runs the test model's firmware.")
    farm_plugin.add_options(g)  # --place, --coordinator: labgrid boards as --port


# labgrid places (--place, one per xdist worker) or --lg-env become --port --no-flash
pytest_sessionstart = farm_plugin.sessionstart
pytest_sessionfinish = farm_plugin.sessionfinish


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hil: needs a board or an emulator")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "env" in metafunc.fixturenames:
        envs = metafunc.config.getoption("hil_envs") or DEFAULT_ENVS
        metafunc.parametrize("env", envs, scope="session")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.hil)


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny int8 CNN (converted once per session)."""
    return tiny_model.cached_tflite(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def model_hash(model_path: Path) -> str:
    return ModelArtifact.load(model_path).hash


@pytest.fixture(scope="session")
def samples() -> np.ndarray:
    return tiny_model.make_samples(48)


@pytest.fixture(scope="session")
def reference(model_path: Path, samples: np.ndarray) -> np.ndarray:
    """Host TFLM outputs for `samples`."""
    from pipeline.tflm import run_tflm

    return run_tflm(model_path, [samples]).outputs[0]


@pytest.fixture(scope="session")
def firmware(env: str, model_path: Path, tmp_path_factory: pytest.TempPathFactory,
             request: pytest.FixtureRequest) -> Path | None:
    """The ELF for `env` with the test model (None with --no-flash)."""
    if request.config.getoption("hil_no_flash"):
        return None
    from pipeline.hil.build import build_firmware

    return build_firmware(env, model_path.read_bytes(), out=tmp_path_factory.mktemp(env))


@pytest.fixture(scope="session")
def qemu(request: pytest.FixtureRequest) -> str:
    path = request.config.getoption("hil_qemu")
    if shutil.which(path) is None:
        pytest.skip(f"{path} not installed (apt-get install qemu-system-arm)")
    return path


@pytest.fixture(scope="session")
def emulator(env: str, firmware: Path | None, request: pytest.FixtureRequest):
    """A QEMU running the firmware, stopped after the session (None for real boards)."""
    spec = board(env)
    if request.config.getoption("hil_port") or not spec.emulated:
        yield None
        return
    qemu_bin = request.getfixturevalue("qemu")
    assert firmware is not None
    with make_emulator(spec, firmware, "qemu", qemu_bin) as emu:
        yield emu


@pytest.fixture(scope="session")
def port(env: str, emulator: Emulator | None, firmware: Path | None,
         request: pytest.FixtureRequest) -> str:
    """Where the device under test answers."""
    given = request.config.getoption("hil_port")
    if given:
        if firmware is not None and not board(env).emulated:
            from pipeline.hil.runner import flash_firmware

            flash_firmware(env, firmware, given)
        return given
    if emulator is None:
        from pipeline.errors import DeviceError
        from pipeline.hil.devices import find_port

        try:
            return find_port(env)
        except DeviceError as e:
            pytest.skip(str(e))
    return emulator.url


@pytest.fixture(scope="session")
def link(env: str, port: str):
    spec = board(env)
    with Link(port, baud=spec.baud, timeout=spec.timeout) as lk:
        yield lk


@pytest.fixture
def dut(link: Link) -> Link:
    """The link after a fresh handshake."""
    link.hello(timeout=5.0)
    return link
