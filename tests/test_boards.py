"""Board registry budgets and `tinypipe profile --board`: the fit check, no hardware."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.hil.boards import BOARDS, KiB, MiB, board, fit_report, fit_summary
from pipeline.profile import Profile

ROOT = Path(__file__).resolve().parents[1]


def _profile(tflite: int = 50_000, params: int = 40_000, arena: int | None = 30_000,
             aot: int | None = 20_000) -> Profile:
    return Profile(layers=[], macs=1_000_000, params=params, param_bytes=params,
                   peak_activation_bytes=10_000, tflite_bytes=tflite, arena_bytes=arena,
                   arena_bytes_with_margin=None if arena is None else arena + 4_000,
                   aot_arena_bytes=aot)


def test_every_board_has_budgets_below_its_totals() -> None:
    for spec in BOARDS.values():
        assert spec.mcu and spec.flashed_with, spec.env
        assert spec.counter in {"instructions", "cycles", "micros"}
        assert 0 < spec.arena_budget < spec.ram_bytes, spec.env
        assert 0 < spec.flash_budget < spec.flash_bytes, spec.env


def test_registry_entries_from_the_datasheets() -> None:
    assert board("esp32dev").ram_bytes == 520 * KiB
    assert board("esp32-s3-devkitc-1").ram_bytes == 512 * KiB
    assert (board("nucleo_f746zg").ram_bytes, board("nucleo_f746zg").flash_bytes) == \
        (320 * KiB, 1 * MiB)
    assert (board("nano33ble").ram_bytes, board("nano33ble").flash_bytes) == (256 * KiB, MiB)
    assert (board("pico").ram_bytes, board("pico").flash_bytes) == (264 * KiB, 2 * MiB)
    f4 = board("disco_f407vg")
    assert (f4.ram_bytes, f4.flash_bytes, f4.cpu_hz) == (192 * KiB, 1 * MiB, 168_000_000)
    # the arena lives in the 128 KB main SRAM, never in the CCM
    assert f4.arena_budget <= 128 * KiB
    # counters: DWT on M4/M7, CCOUNT on Xtensa, micros on the M0+
    assert {board(e).counter for e in ("nucleo_f746zg", "nano33ble", "disco_f407vg")} == \
        {"cycles"}
    assert board("esp32dev").counter == "cycles" and board("pico").counter == "micros"


def test_emulators_per_board() -> None:
    assert board("qemu-m4").emulators == ("qemu",) and board("qemu-m4").default_emulator == "qemu"
    assert board("disco_f407vg").emulators == ("renode",)
    assert board("disco_f407vg").default_emulator is None  # a real board unless asked
    assert board("renode-f407").default_emulator == "renode"
    assert board("renode-f407").renode_script == board("disco_f407vg").renode_script
    assert (ROOT / board("disco_f407vg").renode_script).is_file()
    assert board("esp32dev").emulators == ()


def test_fit_report_quiet_when_everything_fits() -> None:
    assert fit_report(_profile(), "nano33ble") == []
    line = fit_summary(_profile(), "nano33ble")
    assert line.startswith("nano33ble:") and "34,000/163,840" in line


def test_fit_report_names_each_budget_exceeded() -> None:
    big = _profile(tflite=2 * MiB, params=1_900_000, arena=200 * KiB, aot=190 * KiB)
    warnings = fit_report(big, board("disco_f407vg"))
    assert len(warnings) == 4
    assert any("TFLM arena (with margin)" in w and "RAM budget of 114,688" in w
               for w in warnings)
    assert any(w.startswith("disco_f407vg: AOT arena 194,560 bytes") for w in warnings)
    assert any("model flash (.tflite" in w for w in warnings)
    assert any("weights (AOT backend)" in w for w in warnings)
    # only the TFLM arena too big: one warning
    only_tflm = _profile(arena=150 * KiB, aot=90 * KiB)
    assert [w.split(" ")[1] for w in fit_report(only_tflm, "disco_f407vg")] == ["TFLM"]


def test_fit_report_skips_what_was_not_measured() -> None:
    assert fit_report(_profile(arena=None, aot=None), "pico") == []


def test_profile_cli_prints_board_warnings(tmp_path: Path, monkeypatch) -> None:
    import pipeline.profile
    from pipeline.cli import cli

    model = tmp_path / "m.tflite"
    model.write_bytes(b"\0" * 16)
    monkeypatch.setattr(pipeline.profile, "profile_tflite",
                        lambda _p: _profile(tflite=1_200_000, params=1_100_000))
    res = CliRunner().invoke(cli, ["profile", "--model", str(model), "--board", "esp32dev"])
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 2 and all("flash budget of 1,048,576" in w for w in warn)
    assert "board esp32dev: arena 34,000/131,072" in res.output
    ok = CliRunner().invoke(cli, ["profile", "--model", str(model), "--board", "qemu-m4"])
    assert ok.exit_code == 0 and "warning:" not in ok.output


@pytest.mark.parametrize("env", ["uno"])
def test_profile_cli_unknown_board(tmp_path: Path, monkeypatch, env: str) -> None:
    import pipeline.profile
    from pipeline.cli import main

    model = tmp_path / "m.tflite"
    model.write_bytes(b"\0" * 16)
    monkeypatch.setattr(pipeline.profile, "profile_tflite", lambda _p: _profile())
    with pytest.raises(SystemExit) as e:
        main(["profile", "--model", str(model), "--board", env])
    assert e.value.code != 0


def _pio_envs() -> dict[str, dict[str, str]]:
    """platformio.ini's envs with `extends` and ${section.option} resolved (as PlatformIO does)."""
    import configparser
    import re

    ini = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    ini.read(ROOT / "platformio.ini")

    def options(section: str) -> dict[str, str]:
        own = dict(ini[section])
        base = options(own.pop("extends")) if "extends" in own else dict(ini["env"])
        return base | own

    def resolve(value: str) -> str:
        return re.sub(r"\$\{(\w+)\.(\w+)\}", lambda m: resolve(ini[m[1]][m[2]]), value)

    return {s.split(":", 1)[1]: {k: resolve(v) for k, v in options(s).items()}
            for s in ini.sections() if s.startswith("env:")}


def test_every_board_has_an_env_and_real_boards_pin_tflm() -> None:
    import re

    envs = _pio_envs()
    assert set(BOARDS) <= set(envs)
    for name in ("esp32dev", "esp32-s3-devkitc-1", "nucleo_f746zg", "nano33ble", "pico"):
        deps = envs[name].get("lib_deps", "")
        # --backend tflm on a board: TFLM from a library pinned to a commit, found by chain+
        assert re.search(r"\.git#[0-9a-f]{40}$", deps.strip()), (name, deps)
        assert envs[name]["lib_ldf_mode"] == "chain+", name
    for name in ("esp32dev", "esp32-s3-devkitc-1"):
        assert "ESP32" in envs[name]["lib_deps"]
    # emulator envs compile TFLM from $TFLM_DIR and take no library
    assert all("lib_deps" not in envs[e] for e in ("qemu-m4", "qemu-m7", "qemu-m55"))
    hint = (ROOT / "firmware/src/tflm_lib.cc").read_text()
    assert "TINYPIPE_TFLM_LIB" in hint and "micro_interpreter.h" in hint
