"""Board registry budgets and `tinypipe profile --board`: the fit check, no hardware."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.boards import (
    BOARDS,
    LOCAL_PLATFORM,
    KiB,
    MiB,
    board,
    fit_report,
    fit_summary,
)
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
    from pipeline.project import pio_envs

    return pio_envs()


def test_every_board_has_an_env_and_real_boards_pin_tflm() -> None:
    import re

    envs = _pio_envs()
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


# ---- one registry: everything else is generated from it or checked against it ---------------


def test_platformio_ini_agrees_with_the_registry() -> None:
    envs = _pio_envs()
    assert set(envs) == set(BOARDS), "platformio.ini envs and the registry differ"
    for name, spec in BOARDS.items():
        ini = envs[name]
        assert ini["board"] == spec.pio_board, name
        if spec.local:
            assert ini["platform"] == f"symlink://firmware/platforms/{LOCAL_PLATFORM}", name
            # board facts live in the generated board JSON, never in the ini
            assert not any(k.startswith(("board_build.", "board_upload.")) for k in ini), name
        else:
            assert ini["platform"] == spec.platform, name
        assert "TP_BOARD_NAME" not in ini.get("build_flags", ""), name  # the build adds it
        for d in ini.get("custom_port_dirs", "").split():
            assert (ROOT / d).is_dir(), (name, d)


def test_local_board_json_is_generated_from_the_registry(tmp_path: Path) -> None:
    import json

    from pipeline.boards import write_pio_boards

    files = {p.stem: json.loads(p.read_text()) for p in write_pio_boards(tmp_path)}
    local = {b.pio_board: b for b in BOARDS.values() if b.local}
    assert set(files) == set(local)
    for name, spec in local.items():
        build = files[name]["build"]
        assert build["f_cpu"] == f"{spec.cpu_hz}L" and build["cpu"] == spec.cpu, name
        assert (ROOT / build["ldscript"]).is_file(), name
        assert files[name]["upload"]["maximum_ram_size"] == spec.ram_bytes, name
        if spec.emulated:
            assert f"-DTP_INSNS_PER_TICK={spec.instructions_per_tick}" in build["extra_flags"]
    # nothing committed restates them
    assert not list((ROOT / "firmware/platforms").rglob("*.json"))[1:], \
        "only platform.json may be committed under firmware/platforms"


def test_bench_harness_takes_its_boards_from_the_registry() -> None:
    from pipeline.aot.arm import ENVS, board_cflags

    assert set(ENVS) == {b.env for b in BOARDS.values() if b.emulated}
    for env, spec in ENVS.items():
        flags = board_cflags(spec)
        assert f"-mcpu={spec.cpu}" in flags and f"-DF_CPU={spec.cpu_hz}L" in flags, env
        assert f"-DTP_INSNS_PER_TICK={spec.instructions_per_tick}" in flags, env


def test_docs_board_table_is_the_generated_one() -> None:
    from pipeline.boards import markdown_table

    assert markdown_table() in (ROOT / "docs/boards.md").read_text(), \
        "docs/boards.md is stale: paste `python -m pipeline.boards markdown`"


def _clock_literals(hz: int) -> list[str]:
    import re

    return [re.escape(f"{hz:_}"), rf"\b{hz}[uUlL]*\b"]


def test_board_clocks_are_defined_once() -> None:
    """grep for any board's clock rate finds its one definition, in the registry.

    The Renode platform description (firmware/renode/*.resc) is the emulator's model of the
    board, not a build input: it must state the clock, and tests/test_renode.py checks it
    against the registry."""
    import re
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    files = [f for f in tracked if not f.startswith(("tests/", "models/", "firmware/renode/")) and
             f.endswith((".py", ".c", ".h", ".cc", ".cpp", ".ini", ".json", ".ld", ".sh",
                         ".resc", ".robot", ".yml", ".md"))]
    clocks = {b.cpu_hz for b in BOARDS.values()} | {b.counter_hz for b in BOARDS.values()
                                                   if b.counter_hz}
    for hz in clocks:
        pats = [re.compile(p) for p in _clock_literals(hz)]
        where = [f for f in files if (ROOT / f).is_file() and
                 any(p.search((ROOT / f).read_text(errors="replace")) for p in pats)]
        assert where == ["pipeline/boards.py"], (hz, where)
