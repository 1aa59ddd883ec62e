"""A labgrid farm on this machine: coordinator, exporter, QEMU M4 boards as places.

Checks that `tinypipe hil --place A --place B` gives the outputs of a single-board run, that a
board killed mid-run leaves every sample done exactly once, that a place held by another client
stops the run with one line, that Ctrl-C releases the places, and that a real tty exported
through labgrid's ser2net (RFC 2217) streams bit-exact.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.boards import board
from pipeline.emulator import Emulator, free_port, make_emulator
from pipeline.hil.runner import run_hil

pytest.importorskip("labgrid", reason="labgrid not installed: pip install 'tinypipe[farm]'")

from pipeline.hil.farm import Farm  # noqa: E402
from pipeline.hil.lab import LocalLab  # noqa: E402
from pipeline.hil.shard import run_sharded  # noqa: E402

ENV = "qemu-m4"
PLACES = ("m4-a", "m4-b")


class Boards:
    """Two QEMU M4 on fixed TCP ports (restarted when a test killed one), one on a pty."""

    def __init__(self, elf: Path, qemu: str) -> None:
        self.elf, self.qemu = elf, qemu
        self.ports = [free_port(), free_port()]
        self.emus: list[Emulator | None] = [None, None]
        self.pty = make_emulator(board(ENV), elf, "qemu", qemu, serial="pty").start()
        self.revive()

    def revive(self) -> None:
        for k, emu in enumerate(self.emus):
            if emu is None or not emu.alive():
                if emu is not None:
                    emu.stop()
                self.emus[k] = make_emulator(board(ENV), self.elf, "qemu", self.qemu,
                                             port=self.ports[k]).start()

    def stop(self) -> None:
        for emu in [*self.emus, self.pty]:
            if emu is not None:
                emu.stop()


@pytest.fixture(scope="module")
def lab(env: str, firmware: Path | None, tmp_path_factory: pytest.TempPathFactory,
        request: pytest.FixtureRequest):
    if env != ENV or request.config.getoption("hil_port") or firmware is None:
        pytest.skip("the farm tests run QEMU M4 boards they start themselves")
    boards = Boards(firmware, request.getfixturevalue("qemu"))
    try:
        with LocalLab(tmp_path_factory.mktemp("lab")) as lab:
            groups = {f"qemu-{p}": {"NetworkSerialPort": {
                "host": "127.0.0.1", "port": port, "protocol": "raw", "speed": 115200}}
                for p, port in zip(PLACES, boards.ports, strict=True)}
            if shutil.which("ser2net"):  # labgrid serves local serial ports through ser2net
                groups["qemu-pty"] = {"RawSerialPort": {"port": boards.pty.url,
                                                        "speed": 115200}}
            lab.export(groups)
            for p in PLACES:
                lab.add_place(p, f"qemu-{p}", env=ENV)
            if "qemu-pty" in groups:
                lab.add_place("m4-pty", "qemu-pty", env=ENV)
            lab.boards = boards
            yield lab
    finally:
        boards.stop()


@pytest.fixture
def farm_lab(lab):
    """The lab with both TCP boards running and no place held."""
    lab.boards.revive()
    yield lab
    assert held(lab) == {}, "a test left places acquired"


def held(lab) -> dict[str, str]:
    """place -> holder (host/user), from `labgrid-client who`."""
    rows = [line.split() for line in lab.client("who").stdout.splitlines()[1:]]
    return {row[2]: f"{row[1]}/{row[0]}" for row in rows if len(row) >= 3}


def tinypipe(*args: str, lab=None, **kw) -> subprocess.Popen:
    env = dict(os.environ, LG_COORDINATOR=lab.address) if lab else None
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, samples: np.ndarray,
         reference: np.ndarray) -> Path:
    labels = reference.reshape(len(samples), -1).argmax(1)
    labels[::3] = (labels[::3] + 1) % reference.shape[-1]
    path = tmp_path_factory.mktemp("farm-data") / "x.npz"
    np.savez(path, x=samples, y=labels)
    return path


def sample_records(path: Path) -> list[dict]:
    return json.loads((path / "hil.json").read_text())["samples"]


def test_two_places_give_the_single_board_outputs(farm_lab, firmware: Path, model_path: Path,
                                                  data: Path, tmp_path: Path) -> None:
    single = tmp_path / "single"
    run_hil(ENV, model_path, data, out_dir=single, elf=firmware)
    proc = tinypipe("hil", "--env", ENV, "--place", PLACES[0], "--place", PLACES[1],
                    "--no-flash", "--model", str(model_path), "--data", str(data),
                    "--out", str(tmp_path / "farm"), lab=farm_lab)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err.strip().splitlines()[-1:]
    want, got = sample_records(single), sample_records(tmp_path / "farm")
    assert [r["index"] for r in got] == list(range(len(want)))
    for w, g in zip(want, got, strict=True):  # byte-identical outputs, same instruction counts
        assert (g["output"], g["instructions"], g["prediction"], g["label"]) == \
            (w["output"], w["instructions"], w["prediction"], w["label"])
    assert {r["board"] for r in got} == set(PLACES)
    report = json.loads((tmp_path / "farm" / "hil.json").read_text())
    per_board = {b["name"]: b for b in report["summary"]["boards"]}
    assert sum(b["samples"] for b in per_board.values()) == len(want)
    assert report["summary"]["bit_exact"] == len(want)
    with np.load(data) as z:  # every input and output crossed one of the two links
        payload = len(want) * (z["x"][0].nbytes + len(want[0]["output"]))
    assert report["summary"]["link"]["payload_bytes"] == payload
    assert report["summary"]["accuracy"] == json.loads(
        (single / "hil.json").read_text())["summary"]["accuracy"]
    md = (tmp_path / "farm" / "hil.md").read_text()
    assert "## Boards" in md and all(f"| {p} |" in md for p in PLACES)
    assert all(f"{p}" in out for p in PLACES)


def test_board_killed_mid_run_every_sample_once(farm_lab, model_path: Path,
                                                samples: np.ndarray, reference: np.ndarray,
                                                tmp_path: Path) -> None:
    victim = farm_lab.boards.emus[1]

    def kill(done: int, _total: int, _msg: str) -> None:
        if done == 10 and victim.alive():
            victim.proc.kill()  # the board vanishes, no goodbye

    with Farm(list(PLACES), coordinator=farm_lab.address, env=ENV) as farm:
        summary = run_sharded(ENV, model_path, farm.targets(), samples=samples,
                              out_dir=tmp_path, progress=kill, batch=4)
    recs = sample_records(tmp_path)
    assert [r["index"] for r in recs] == list(range(len(samples)))  # each exactly once
    got = np.array([r["output"] for r in recs], dtype=np.int8)
    assert np.array_equal(got, reference.reshape(len(samples), -1))
    assert summary["complete"] and summary["bit_exact"] == len(samples)
    lost = {b["name"]: b["lost"] for b in summary["boards"]}
    assert lost[PLACES[0]] is None and "link lost" in lost[PLACES[1]]


def test_every_board_lost_keeps_a_partial_report(farm_lab, model_path: Path,
                                                 samples: np.ndarray, tmp_path: Path) -> None:
    from pipeline.errors import DeviceError

    def kill_all(done: int, _total: int, _msg: str) -> None:
        if done == 6:
            for emu in farm_lab.boards.emus:
                emu.proc.kill()

    with Farm(list(PLACES), coordinator=farm_lab.address, env=ENV) as farm, \
            pytest.raises(DeviceError, match=r"all 2 boards lost .*samples done; partial report"):
        run_sharded(ENV, model_path, farm.targets(), samples=samples, out_dir=tmp_path,
                    progress=kill_all)
    recs = sample_records(tmp_path)
    idx = [r["index"] for r in recs]
    assert len(idx) == len(set(idx)) >= 6 and len(idx) < len(samples)
    assert not json.loads((tmp_path / "hil.json").read_text())["summary"]["complete"]


def test_place_held_by_another_client_is_one_line(farm_lab, model_path: Path, data: Path,
                                                  tmp_path: Path) -> None:
    farm_lab.client("-p", PLACES[1], "acquire", user="alice")
    try:
        proc = tinypipe("hil", "--env", ENV, "--place", PLACES[0], "--place", PLACES[1],
                        "--no-flash", "--model", str(model_path), "--data", str(data),
                        "--out", str(tmp_path), lab=farm_lab)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2
        lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
        assert len(lines) == 1
        assert lines[0].startswith(f"error: place {PLACES[1]} is held by ")
        assert lines[0].endswith("/alice")
        assert held(farm_lab) == {PLACES[1]: lines[0].rsplit(" ", 1)[1]}  # ours released
        assert not (tmp_path / "hil.json").exists()
    finally:
        farm_lab.client("-p", PLACES[1], "release", user="alice")


def test_ctrl_c_releases_the_places_and_keeps_a_partial_report(farm_lab, model_path: Path,
                                                               tmp_path: Path) -> None:
    import tiny_model

    big = tmp_path / "big.npz"
    np.savez(big, x=tiny_model.make_samples(1500))
    proc = tinypipe("hil", "--env", ENV, "--place", PLACES[0], "--place", PLACES[1],
                    "--no-flash", "--model", str(model_path), "--data", str(big),
                    "--out", str(tmp_path / "out"), lab=farm_lab)
    try:
        deadline = time.monotonic() + 90
        while len(held(farm_lab)) < 2 and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.5)
        time.sleep(3)  # streaming by now (the host reference takes a moment)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err.strip().splitlines()[-1:]
    assert held(farm_lab) == {}
    report = json.loads((tmp_path / "out" / "hil.json").read_text())
    assert not report["summary"]["complete"] and 0 < report["summary"]["samples"] < 1500


def test_tty_through_labgrid_ser2net_rfc2217(lab, model_path: Path, samples: np.ndarray,
                                             reference: np.ndarray, tmp_path: Path) -> None:
    if not shutil.which("ser2net"):
        pytest.skip("ser2net not installed (apt-get install ser2net)")
    with Farm(["m4-pty"], coordinator=lab.address, env=ENV) as farm:
        assert farm.places[0].url.startswith("rfc2217://127.0.0.1:")
        summary = run_sharded(ENV, model_path, farm.targets(), samples=samples[:16],
                              out_dir=tmp_path)
    assert summary["bit_exact"] == 16
    assert held(lab) == {}


def test_reservation_token_stands_for_its_places(farm_lab) -> None:
    out = farm_lab.client("reserve", "--wait", "--shell", "env=qemu-m4").stdout
    token = dict(line.split("=", 1) for line in out.split() if "=" in line)["LG_TOKEN"]
    try:
        with Farm([f"+{token}"], coordinator=farm_lab.address, env=ENV) as farm:
            assert len(farm.places) == 1 and farm.places[0].ours
            name = farm.places[0].name
            assert list(held(farm_lab)) == [name]
    finally:
        farm_lab.client("cancel-reservation", token)


def test_place_without_a_labgrid_flasher_asks_for_no_flash(farm_lab) -> None:
    from pipeline.errors import DeviceError

    with Farm([PLACES[0]], coordinator=farm_lab.address, env=ENV) as farm, \
            pytest.raises(DeviceError, match=rf"place {PLACES[0]}: labgrid has no flasher for "
                                             r"qemu-m4 among its resources \(NetworkSerialPort\)"
                                             r"; flash the board beforehand and pass --no-flash"):
        farm.check_flashable(ENV)


def test_place_of_another_env_is_refused(farm_lab) -> None:
    from pipeline.errors import DeviceError

    with pytest.raises(DeviceError, match=rf"place {PLACES[0]} is tagged env=qemu-m4, this run "
                                          r"is for qemu-m7"):
        Farm([PLACES[0]], coordinator=farm_lab.address, env="qemu-m7").__enter__()
