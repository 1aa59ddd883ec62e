"""Renode path up to (and, with a stand-in binary, through) launching: command line, port
substitution, the .resc and .robot contents, the missing-binary error, start/stop."""

from __future__ import annotations

import os
import re
import shlex
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.boards import board
from pipeline.emulator import (
    RENODE_MISSING,
    Emulator,
    RenodeEmulator,
    free_port,
    make_emulator,
)
from pipeline.errors import DeviceError

ROOT = Path(__file__).resolve().parents[1]
RESC = ROOT / "firmware" / "renode" / "stm32f4_discovery.resc"
ROBOT = ROOT / "firmware" / "renode" / "hello.robot"


def _resc_commands(text: str) -> list[str]:
    """Monitor commands of a .resc: comments and :name: headers dropped, \"\"\" blocks joined."""
    out: list[str] = []
    block: list[str] | None = None
    for line in text.splitlines():
        if block is not None:
            if line.strip() == '"""':
                out[-1] += "\n" + "\n".join(block)
                block = None
            else:
                block.append(line)
            continue
        s = line.strip()
        if not s or s.startswith("#") or s.startswith(":"):
            continue
        if s == '"""':  # a block for the command on the line before
            block = []
        elif s.endswith('"""'):
            out.append(s[:-3].strip())
            block = []
        else:
            out.append(s)
    assert block is None, "unterminated triple-quoted block"
    return out


def test_resc_loads_the_elf_and_serves_usart2_on_port() -> None:
    cmds = _resc_commands(RESC.read_text())
    assert "$elf?=@.pio/build/renode-f407/program.elf" in cmds
    assert "$port?=3456" in cmds
    assert "machine LoadPlatformDescription @platforms/boards/stm32f4_discovery-kit.repl" in cmds
    term = [c for c in cmds if c.startswith("emulation CreateServerSocketTerminal")]
    assert term == ['emulation CreateServerSocketTerminal $port "term" false']  # raw socket
    assert "connector Connect sysbus.usart2 term" in cmds
    reset = next(c for c in cmds if c.startswith("macro reset"))
    assert "sysbus LoadELF $elf" in reset
    assert "start" not in cmds  # the caller starts the emulation
    extra = next(c for c in cmds if c.startswith("machine LoadPlatformDescriptionFromString"))
    assert "Miscellaneous.DWT @ sysbus 0xE0001000" in extra and "0x10000000" in extra
    # the emulated clocks are the registry's
    hz = board("renode-f407").cpu_hz
    assert f"frequency: {hz}" in extra and f"cpu PerformanceInMips {hz // 10**6}" in cmds


def test_resc_matches_the_firmware_port() -> None:
    """USART2 at 0x40004400 in the port is the sysbus.usart2 the script connects."""
    port = (ROOT / "firmware/boards/disco_f407vg/port_f407.c").read_text()
    assert "#define USART2 0x40004400u" in port
    ld = (ROOT / "firmware/boards/disco_f407vg/f407.ld").read_text()
    assert "ORIGIN = 0x10000000, LENGTH = 64K" in ld  # CCM the script adds
    assert "ORIGIN = 0x08000000" in ld and "VectorTableOffset 0x08000000" in RESC.read_text()


def test_robot_waits_for_boot_then_hello_answer() -> None:
    from pipeline.hil import protocol as P

    text = ROBOT.read_text()
    assert "*** Test Cases ***" in text and "Create Terminal Tester" in text
    assert "include @${CURDIR}/stm32f4_discovery.resc" in text
    hello = re.search(r"@\{HELLO_FRAME\}\s+(.*)", text).group(1).split()
    assert bytes(int(b, 16) for b in hello) == P.encode(P.Msg.HELLO, 1)
    boot = re.search(r"\$\{BOOT_HEADER\}\s+(.*)", text).group(1)
    assert bytes.fromhex(boot) == P.encode(P.Msg.BOOT, 0, bytes(6))[:6]
    answer = re.search(r"\$\{HELLO_ANSWER\}\s+(.*)", text).group(1)
    assert bytes.fromhex(answer) == bytes([0xA5, 0x5A, P.Msg.HELLO | 0x80, 1])


def test_command_line_and_port_substitution(tmp_path: Path) -> None:
    elf = tmp_path / "fw.elf"
    emu = RenodeEmulator("stm32f4_discovery", elf, port=40123, script=RESC)
    cmd = emu.command()
    assert cmd[:4] == ["renode", "--disable-xwt", "--console", "--plain"]
    assert cmd[4] == "-e"
    assert cmd[5] == f"$elf=@{elf.resolve()}; $port=40123; include @{RESC}; start"
    assert emu.url == "socket://127.0.0.1:40123"
    spaced = RenodeEmulator("x", tmp_path / "a b" / "fw.elf", port=1, script=RESC)
    assert f'$elf=@"{(tmp_path / "a b" / "fw.elf").resolve()}"' in spaced.command()[5]


def test_make_emulator_picks_by_board() -> None:
    assert type(make_emulator(board("qemu-m4"), "fw.elf")) is Emulator
    emu = make_emulator(board("disco_f407vg"), "fw.elf", "renode", binary="/opt/renode/renode")
    assert isinstance(emu, RenodeEmulator) and emu.renode == "/opt/renode/renode"
    assert emu.script == RESC and emu.machine == "stm32f4_discovery"
    assert isinstance(make_emulator(board("renode-f407"), "fw.elf"), RenodeEmulator)
    with pytest.raises(DeviceError, match="does not run under renode"):
        make_emulator(board("qemu-m7"), "fw.elf", "renode")
    with pytest.raises(DeviceError, match="real board"):
        make_emulator(board("nano33ble"), "fw.elf")


def test_missing_renode_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(DeviceError) as e:
        RenodeEmulator("stm32f4_discovery", elf, script=RESC).start()
    assert str(e.value) == RENODE_MISSING == \
        "renode not found: install Renode or use --emulator qemu"


def test_hil_cli_renode_missing(tmp_path: Path, monkeypatch, capsys) -> None:
    from pipeline.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))
    model, data = tmp_path / "m.tflite", tmp_path / "d.npz"
    model.write_bytes(b"0")
    data.write_bytes(b"0")
    with pytest.raises(SystemExit):
        main(["hil", "--env", "disco_f407vg", "--emulator", "renode", "--model", str(model),
              "--data", str(data), "--out", str(tmp_path / "out")])
    assert RENODE_MISSING in capsys.readouterr().err
    from pipeline.cli import cli

    res = CliRunner().invoke(cli, ["hil", "--env", "qemu-m4", "--emulator", "renode", "--model",
                              str(model), "--data", str(data), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "does not run under renode" in str(res.exception)


FAKE_RENODE = """#!{py}
# Stand-in for renode: checks the flags, takes $port from -e, serves one raw socket.
import re, socket, sys
args = sys.argv[1:]
assert args[:3] == ["--disable-xwt", "--console", "--plain"] and args[3] == "-e", args
port = int(re.search(r"\\$port=(\\d+);", args[4]).group(1))
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(4)
print("fake renode listening", port, flush=True)
while True:
    conn, _ = srv.accept()
    conn.close()
"""


def test_start_and_stop_with_a_stand_in_binary(tmp_path: Path) -> None:
    fake = tmp_path / "renode"
    fake.write_text(FAKE_RENODE.format(py=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    port = free_port()
    with RenodeEmulator("stm32f4_discovery", elf, port=port, script=RESC,
                        renode=str(fake), ready_timeout=10) as emu:
        assert emu.alive() and emu.url == f"socket://127.0.0.1:{port}"
        pid = emu.proc.pid
        assert "fake renode listening" in emu.log_path.read_text()
        log = emu.log_path
    assert not emu.alive() and not log.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_start_reports_an_early_exit(tmp_path: Path) -> None:
    fake = tmp_path / "renode"
    fake.write_text(f"#!{sys.executable}\nprint('There was an error executing command')\n"
                    "raise SystemExit(1)\n")
    fake.chmod(0o755)
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(DeviceError, match="exited at start: There was an error"):
        RenodeEmulator("stm32f4_discovery", elf, script=RESC, renode=str(fake)).start()


def test_command_is_shell_safe(tmp_path: Path) -> None:
    emu = RenodeEmulator("x", tmp_path / "fw.elf", port=5, script=RESC)
    assert shlex.split(shlex.join(emu.command())) == emu.command()
