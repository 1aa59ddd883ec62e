"""The whole `tinypipe hil` path on the device, and the link through a faulty line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.boards import board
from pipeline.emulator import make_emulator
from pipeline.errors import DeviceError
from pipeline.hil.faults import FaultProxy
from pipeline.hil.link import Link
from pipeline.hil.runner import run_hil, stream


def test_run_hil_accuracy_equals_host(env: str, model_path: Path, firmware: Path | None,
                                      samples: np.ndarray, reference: np.ndarray,
                                      request: pytest.FixtureRequest, tmp_path: Path) -> None:
    # Labels: the host's predictions with every third one changed, so accuracy is not trivial.
    labels = reference.reshape(len(samples), -1).argmax(1)
    labels[::3] = (labels[::3] + 1) % reference.shape[-1]
    given = request.config.getoption("hil_port")
    if given:
        request.getfixturevalue("link").close()  # the port can only be open once
    summary = run_hil(env, model_path, port=given, out_dir=tmp_path, flash=not given,
                      samples=samples, labels=labels, elf=firmware)
    assert summary["complete"] and summary["samples"] == len(samples)
    assert summary["bit_exact_rate"] == 1.0
    assert summary["accuracy"] == summary["host_accuracy"] == pytest.approx(2 / 3, abs=0.05)
    assert summary["latency"][summary["counter"]]["mean"] > 0
    # link accounting: every input and output crossed the wire, plus framing
    link = summary["link"]
    out_bytes = reference[0].nbytes
    assert link["payload_bytes"] == len(samples) * (samples[0].nbytes + out_bytes)
    assert link["bytes_out"] > len(samples) * samples[0].nbytes
    assert link["bytes_in"] > len(samples) * out_bytes
    assert 0.5 < link["efficiency"] < 1.0
    assert (link["utilisation"] is None) == str(given or "socket://").startswith("socket://")
    report = json.loads((tmp_path / "hil.json").read_text())
    assert [s["index"] for s in report["samples"]] == list(range(len(samples)))
    assert {"index", "output", "label", "prediction", summary["counter"]} <= \
        set(report["samples"][0])
    assert (tmp_path / "hil.md").is_file() and (tmp_path / "latency.png").is_file()
    if given:
        request.getfixturevalue("link").open()


def test_every_sample_once_through_faulty_line(env: str, firmware: Path | None,
                                               samples: np.ndarray, reference: np.ndarray,
                                               request: pytest.FixtureRequest) -> None:
    spec = board(env)
    if not spec.emulated or request.config.getoption("hil_port"):
        pytest.skip("the fault proxy sits between the harness and QEMU's TCP UART")
    qemu = request.getfixturevalue("qemu")
    n = 24
    with make_emulator(spec, firmware, "qemu", qemu) as emu, \
            FaultProxy(("127.0.0.1", emu.port), drop=0.005, corrupt=0.005, seed=11) as proxy, \
            Link(proxy.url, timeout=0.08, retries=60, first_infer_timeout=1.0) as link:
        link.hello(timeout=1.0)
        recs = stream(link, samples[:n], link.hello_info.counter_kind)
        device = link.stats_device()
    assert [r["index"] for r in recs] == list(range(n))
    got = np.array([r["output"] for r in recs], dtype=np.int8)
    assert np.array_equal(got, reference[:n].reshape(n, -1))
    faults = sum(c.dropped + c.corrupted for c in (proxy.to_device, proxy.to_host))
    assert faults > 0 and link.stats.retries > 0
    assert device["infer_runs"] == n  # replays answered lost INFERs without running them again


def test_board_lost_mid_run_keeps_partial_report(env: str, model_path: Path,
                                                 firmware: Path | None, samples: np.ndarray,
                                                 request: pytest.FixtureRequest,
                                                 tmp_path: Path) -> None:
    spec = board(env)
    if not spec.emulated or request.config.getoption("hil_port"):
        pytest.skip("needs an emulator we can pull the plug on")
    qemu = request.getfixturevalue("qemu")
    emu = make_emulator(spec, firmware, "qemu", qemu).start()

    def unplug(done: int, _total: int, _msg: str) -> None:
        if done == 5:
            emu.stop()

    try:
        with pytest.raises(DeviceError, match=r"5/48 samples done; partial report"):
            run_hil(env, model_path, port=emu.url, out_dir=tmp_path, flash=False,
                    samples=samples, progress=unplug)
    finally:
        emu.stop()
    report = json.loads((tmp_path / "hil.json").read_text())
    assert report["summary"]["samples"] == 5 and not report["summary"]["complete"]
    assert "INCOMPLETE" in (tmp_path / "hil.md").read_text()


def test_model_hash_mismatch_suggests_flashing(env: str, model_path: Path,
                                               firmware: Path | None, samples: np.ndarray,
                                               request: pytest.FixtureRequest) -> None:
    spec = board(env)
    if not spec.emulated or request.config.getoption("hil_port"):
        pytest.skip("starts its own emulator")
    other = model_path.read_bytes() + b"\0"  # same graph, different file: different hash
    with make_emulator(spec, firmware, "qemu", request.getfixturevalue("qemu")) as emu, \
            pytest.raises(DeviceError, match=r"board runs model \w{16}, expected \w{16}; flash"):
        run_hil(env, other, port=emu.url, flash=False, samples=samples[:2],
                out_dir=request.getfixturevalue("tmp_path"))
