"""The HIL stream through a real tty: QEMU's UART on a pseudo-terminal, opened by pyserial."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import serial

from pipeline.boards import board
from pipeline.emulator import Emulator, make_emulator
from pipeline.errors import DeviceError
from pipeline.hil import reset as R
from pipeline.hil.link import Link
from pipeline.hil.runner import stream


@pytest.fixture
def pty_qemu(env: str, firmware: Path | None, request: pytest.FixtureRequest):
    spec = board(env)
    if not spec.emulated or request.config.getoption("hil_port"):
        pytest.skip("QEMU's -serial pty needs an emulator env")
    with make_emulator(spec, firmware, "qemu", request.getfixturevalue("qemu"),
                       serial="pty") as emu:
        yield emu


def test_stream_over_pty_bit_exact(env: str, pty_qemu: Emulator, samples: np.ndarray,
                                   reference: np.ndarray) -> None:
    assert pty_qemu.url.startswith("/dev/pts/")
    tap = R.Tap()
    with Link(pty_qemu.url, baud=board(env).baud, timeout=0.5, open_fn=tap.open) as link:
        assert isinstance(tap.ser, serial.Serial)  # a posix tty, not a socket
        link._ser.reset_input_buffer()  # termios flush works on a tty
        assert R.reset_and_wait(link, R.strategy("none"), 10.0, tap) in ("BOOT", "HELLO")
        info = link.hello()
        assert link._ser.baudrate == 115200
        recs = stream(link, samples, info.counter_kind)
    got = np.array([r["output"] for r in recs], dtype=np.int8)
    assert np.array_equal(got, reference.reshape(len(samples), -1))
    assert [r["index"] for r in recs] == list(range(len(samples)))


def test_pty_reset_via_frame_then_boot(pty_qemu: Emulator) -> None:
    # 1200bps boards restart their app with the RESET frame; QEMU's firmware answers it too
    tap = R.Tap()
    with Link(pty_qemu.url, timeout=0.5, open_fn=tap.open) as link:
        link.hello(timeout=5.0)
        # BOOT can come in the same read as the RESET answer, where the link does not look
        # for it: the reset reason is the proof
        assert R.reset_and_wait(link, R.strategy("1200bps"), timeout=10.0, tap=tap) in \
            ("BOOT", "HELLO")
        info = link.hello()
        assert info.model_status == 0 and info.reset_reason == "software"


def test_pty_lost_when_qemu_dies(pty_qemu: Emulator, samples: np.ndarray) -> None:
    with Link(pty_qemu.url, timeout=0.3, retries=1) as link:
        link.hello(timeout=5.0)
        pty_qemu.stop()
        with pytest.raises(DeviceError, match=r"/dev/pts/\d+: (link lost|no answer)"):
            stream(link, samples[:2], "instructions")
