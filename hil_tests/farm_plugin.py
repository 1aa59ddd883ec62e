"""HIL tests on labgrid boards: `--place NAME` (one place per pytest-xdist worker) or
labgrid's own pytest plugin (`--lg-env env.yaml`, place acquired beforehand).

Either way the board's serial URL becomes `--port` with `--no-flash` (the place runs the test
model's firmware), so every fixture and test works unchanged:

    pytest hil_tests --env qemu-m4 -n 2 --place m4-a --place m4-b
    labgrid-client -p m4-a acquire && pytest hil_tests --env qemu-m4 --lg-env m4-a.yaml
"""

from __future__ import annotations

import os

import pytest


def add_options(group) -> None:
    """Options in the tinypipe HIL group."""
    group.addoption("--place", action="append", dest="hil_places", metavar="NAME",
                    help="labgrid place with a board running the test firmware; repeat with "
                         "-n N (pytest-xdist): worker K takes the K-th place.")
    group.addoption("--coordinator", dest="hil_coordinator", metavar="HOST:PORT",
                    help="labgrid coordinator for --place (default: $LG_COORDINATOR).")


def _worker_index(config: pytest.Config) -> int | None:
    """This process's xdist worker number; None for the controller of a distributed run."""
    wid = os.environ.get("PYTEST_XDIST_WORKER")
    if wid:
        return int(wid.removeprefix("gw"))
    return None if getattr(config.option, "numprocesses", None) else 0


def sessionstart(session: pytest.Session) -> None:
    """Acquire this worker's place (or resolve labgrid's target) and use it as --port."""
    config = session.config
    places = config.getoption("hil_places")
    lg_env = getattr(config.option, "lg_env", None)
    if not places and not lg_env:
        return
    k = _worker_index(config)
    if k is None:
        return  # the xdist controller runs no tests
    envs = config.getoption("hil_envs") or []
    if len(envs) != 1:
        raise pytest.UsageError("--place / --lg-env: give exactly one --env")
    if places:
        if k >= len(places):
            raise pytest.UsageError(f"worker {k} has no place: give one --place per worker "
                                    f"({len(places)} places)")
        from pipeline.hil.farm import Farm

        farm = Farm([places[k]], coordinator=config.getoption("hil_coordinator"), env=envs[0])
        farm.__enter__()
        config.stash[_FARM] = farm
        url = farm.places[0].url
    else:
        url = _lg_env_url(config)
    config.option.hil_port = url
    config.option.hil_no_flash = True


def _lg_env_url(config: pytest.Config) -> str:
    from labgrid.pytestplugin.hooks import LABGRID_ENV_KEY
    from labgrid.resource import NetworkSerialPort, SerialPort

    from pipeline.hil.farm import serial_url

    target = config.stash[LABGRID_ENV_KEY].get_target()
    if target is None:
        raise pytest.UsageError("--lg-env: the config has no 'main' target")
    for cls in (NetworkSerialPort, SerialPort):
        try:
            return serial_url(target.get_resource(cls))
        except Exception:  # noqa: BLE001 - labgrid's NoResourceFoundError and friends
            continue
    raise pytest.UsageError(f"--lg-env: target {target.name} has no serial port")


def sessionfinish(session: pytest.Session) -> None:
    """Release the place acquired at the start."""
    farm = session.config.stash.get(_FARM, None)
    if farm is not None:
        farm.release()


_FARM = pytest.StashKey()
