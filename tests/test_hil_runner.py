"""HIL runner statistics, reports and device listing (no board needed)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipeline.boards import BOARDS, board, boards_for_usb
from pipeline.errors import DataError, DeviceError
from pipeline.hil.devices import find_port, list_devices
from pipeline.hil.report import write_report
from pipeline.hil.runner import load_npz
from pipeline.hil.stats import confusion_matrix, latency_stats, summarize, to_ms


def _records(outputs: np.ndarray, counters: list[int], labels: list[int] | None) -> list[dict]:
    return [{"index": i, "output": o.tolist(), "instructions": c,
             "label": None if labels is None else labels[i], "prediction": int(np.argmax(o))}
            for i, (o, c) in enumerate(zip(outputs, counters, strict=True))]


def test_latency_stats() -> None:
    s = latency_stats(list(range(1, 101)))
    assert s["mean"] == 50.5 and s["p50"] == 50.5 and s["min"] == 1 and s["max"] == 100
    assert s["p99"] == pytest.approx(99.01)
    assert latency_stats([])["mean"] == 0.0


def test_confusion_matrix_and_ms() -> None:
    assert confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3) == \
        [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert to_ms(25_000, "cycles", 25_000_000) == 1.0
    assert to_ms(1500, "micros", 0) == 1.5
    with pytest.raises(ValueError, match="not a time"):
        to_ms(1000, "instructions", 25_000_000)


def test_summarize_counts_mismatches_and_accuracy() -> None:
    ref = np.array([[9, 1, 0], [0, 9, 1], [1, 0, 9], [9, 0, 0]], dtype=np.int8)
    dev = ref.copy()
    dev[3] = [0, 0, 9]  # one sample differs on the device
    labels = [0, 1, 2, 2]
    s = summarize(_records(dev, [400, 400, 440, 400], labels), ref, np.array(labels),
                  "instructions", 25_000_000, wall_s=2.0, total=5)
    assert s["bit_exact"] == 3 and s["mismatched_indices"] == [3]
    assert s["accuracy"] == 1.0 and s["host_accuracy"] == 0.75
    assert s["agreement_top1"] == 0.75
    assert s["confusion_matrix"][2] == [0, 0, 2]
    assert s["latency"]["instructions"]["max"] == 440
    assert "ms" not in s["latency"]  # under an emulator latency is instructions, never time
    assert s["throughput_sps"] == 2.0 and not s["complete"]


def test_report_files(tmp_path: Path) -> None:
    ref = np.eye(3, dtype=np.int8) * 100
    recs = _records(ref, [10, 20, 30], [0, 1, 2])
    s = summarize(recs, ref, np.array([0, 1, 2]), "instructions", 25_000_000, 1.0, 3)
    write_report(tmp_path, recs, s, {"env": "qemu-m4", "board": "qemu-mps2-an386"})
    data = json.loads((tmp_path / "hil.json").read_text())
    assert data["summary"]["bit_exact_rate"] == 1.0 and len(data["samples"]) == 3
    assert set(data["samples"][0]) == {"index", "output", "instructions", "label", "prediction"}
    md = (tmp_path / "hil.md").read_text()
    assert "3/3 (100.0 %)" in md and "Confusion matrix" in md
    assert (tmp_path / "latency.png").stat().st_size > 1000


def test_load_npz(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4), np.int8), y=np.arange(3))
    x, y = load_npz(tmp_path / "d.npz")
    assert x.shape == (3, 4) and y.tolist() == [0, 1, 2]
    np.savez(tmp_path / "bad.npz", images=np.zeros(2))
    with pytest.raises(DataError, match="no array 'x'"):
        load_npz(tmp_path / "bad.npz")


@dataclass
class FakePort:
    device: str
    vid: int | None
    pid: int | None
    description: str = ""
    serial_number: str | None = None


PORTS = [FakePort("/dev/ttyUSB0", 0x10C4, 0xEA60, "CP2102"),
         FakePort("/dev/ttyACM0", 0x0483, 0x374B, "STM32 STLink"),
         FakePort("/dev/ttyS0", None, None, "n/a")]


def test_list_devices_recognizes_boards() -> None:
    devs = {d.port: d for d in list_devices(PORTS)}
    assert "esp32dev" in devs["/dev/ttyUSB0"].envs
    assert devs["/dev/ttyACM0"].envs == ("nucleo_f746zg",)
    assert devs["/dev/ttyS0"].envs == () and devs["/dev/ttyS0"].usb_id == "-"
    assert devs["/dev/ttyACM0"].usb_id == "0483:374B"


def test_find_port_errors_list_what_was_seen() -> None:
    assert find_port("nucleo_f746zg", ports=PORTS) == "/dev/ttyACM0"
    assert find_port("pico", port="/dev/ttyACM9", ports=PORTS) == "/dev/ttyACM9"
    with pytest.raises(DeviceError, match=r"no Raspberry Pi Pico .*/dev/ttyUSB0 \(10C4:EA60\)"):
        find_port("pico", ports=PORTS)
    with pytest.raises(DeviceError, match="unknown env"):
        board("uno")


def test_board_registry() -> None:
    assert {"qemu-m4", "qemu-m7", "qemu-m55", "esp32dev", "esp32-s3-devkitc-1",
            "nucleo_f746zg", "nano33ble", "pico"} <= set(BOARDS)
    assert board("qemu-m7").machine == "mps2-an500" and board("qemu-m4").emulated
    assert [b.env for b in boards_for_usb(0x2E8A, 0x000A)] == ["pico"]
    ini = (Path(__file__).resolve().parents[1] / "platformio.ini").read_text()
    for env in BOARDS:
        assert f"[env:{env}]" in ini


def test_link_usage() -> None:
    from pipeline.hil.stats import link_usage

    u = link_usage(1100, 200, 1000, 100, 1.0, None)
    assert u["efficiency"] == pytest.approx(1100 / 1300) and u["utilisation"] is None
    # 8N1: 921600 baud moves 92,160 bytes/s; the busier direction sets the use
    u = link_usage(73_728, 9_000, 70_000, 8_000, 1.0, 921_600)
    assert u["utilisation"] == pytest.approx(0.8)


def test_report_link_line_names_rate_and_resends(tmp_path: Path) -> None:
    from pipeline.hil.stats import link_usage

    ref = np.eye(3, dtype=np.int8) * 100
    recs = _records(ref, [10, 20, 30], [0, 1, 2])
    s = summarize(recs, ref, np.array([0, 1, 2]), "instructions", 25_000_000, 2.0, 3)
    s["link"] = link_usage(92_160, 9_000, 90_000, 300, 2.0, 921_600)
    write_report(tmp_path, recs, s, {"env": "nucleo_f746zg",
                                     "link_stats": {"resent_chunks": 7, "retries": 2}})
    md = (tmp_path / "hil.md").read_text()
    assert "throughput over the link: 1.5 samples/s" in md
    assert "50.0 % of the UART's raw rate; 7 input chunks and 2 requests sent again" in md
    s["link"] = link_usage(20_000, 1_000, 19_000, 300, 2.0, None)
    write_report(tmp_path, recs, s, {"env": "qemu-m4"})
    assert "10,500 B/s, emulated link (no baud limit)" in (tmp_path / "hil.md").read_text()
