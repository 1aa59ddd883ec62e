"""Reset strategies: line sequences against esptool's, timing, retries, the wait for BOOT/HELLO."""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
import threading
import time

import pytest
import serial

from pipeline.boards import BOARDS, board
from pipeline.errors import ConfigError, DeviceError
from pipeline.hil import protocol as P
from pipeline.hil import reset as R
from pipeline.hil.link import Link


class Clock:
    """Virtual time: sleeping advances it, so recorded timings are exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, s: float) -> None:
        self.now += s


class RecordingSerial:
    """Fake port that records every DTR/RTS/baud change and open/close with its time."""

    def __init__(self, clock: Clock, fail_opens: int = 0, no_lines: bool = False) -> None:
        self.clock, self.events = clock, []
        self._dtr = self._rts = True  # pyserial asserts both on open
        self._baud = 115200
        self.is_open = True
        self.port = "/dev/ttyFAKE0"
        self.fail_opens, self.no_lines = fail_opens, no_lines

    def _log(self, what: str, value) -> None:
        self.events.append((round(self.clock.now, 6), what, value))

    def _check(self) -> None:
        if not self.is_open:
            raise OSError(errno.EIO, "port closed")
        if self.no_lines:
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    @property
    def dtr(self) -> bool:
        return self._dtr

    @dtr.setter
    def dtr(self, v: bool) -> None:
        self._check()
        self._dtr = v
        self._log("dtr", v)

    @property
    def rts(self) -> bool:
        return self._rts

    @rts.setter
    def rts(self, v: bool) -> None:
        self._check()
        self._rts = v
        self._log("rts", v)

    @property
    def baudrate(self) -> int:
        return self._baud

    @baudrate.setter
    def baudrate(self, v: int) -> None:
        self._baud = v
        self._log("baud", v)

    def open(self) -> None:
        if self.fail_opens:
            self.fail_opens -= 1
            raise OSError(errno.ENOENT, "no such device")
        self.is_open = True
        self._log("open", True)

    def close(self) -> None:
        self.is_open = False
        self._log("close", True)

    def states(self) -> list[tuple[float, bool, bool]]:
        """(time, DTR, RTS) after every change of either line; repeats dropped."""
        out, (dtr, rts) = [], self._initial
        prev = self._initial
        for t, what, v in self.events:
            if what == "dtr":
                dtr = v
            elif what == "rts":
                rts = v
            else:
                continue
            if (dtr, rts) != prev:
                out.append((t, dtr, rts))
                prev = (dtr, rts)
        return out

    def start(self, dtr: bool, rts: bool) -> RecordingSerial:
        self._dtr, self._rts, self._initial = dtr, rts, (dtr, rts)
        return self


def esptool_states(seq: str, dtr: bool, rts: bool) -> list[tuple[float, bool, bool]]:
    """What esptool's documented sequence does to the lines, in the same form."""
    t, out, prev = 0.0, [], (dtr, rts)
    for code, arg in R.parse_steps(seq):
        if code == "W":
            t += arg
            continue
        dtr, rts = (arg, rts) if code == "D" else (dtr, arg)
        if (dtr, rts) != prev:
            out.append((round(t, 6), dtr, rts))
            prev = (dtr, rts)
    return out


def pins(dtr: bool, rts: bool) -> tuple[int, int]:
    """(EN, IO0) levels behind the ESP32 auto-reset transistors."""
    return (0 if rts and not dtr else 1), (0 if dtr and not rts else 1)


@pytest.mark.parametrize("start", [(True, True), (False, False), (True, False), (False, True)])
@pytest.mark.parametrize("cls, method, seq", [
    (R.ClassicReset, "bootloader", R.ESPTOOL_CLASSIC),
    (R.ClassicReset, "restart", "D0|" + R.ESPTOOL_HARD_RESET),
    (R.USBJTAGSerialReset, "bootloader", R.ESPTOOL_USB_JTAG),
    (R.USBJTAGSerialReset, "restart", "D0|" + R.ESPTOOL_HARD_RESET_USB),
])
def test_sequences_match_esptool(cls, method, seq, start) -> None:
    clock = Clock()
    ser = RecordingSerial(clock).start(*start)
    getattr(cls(sleep=clock.sleep), method)(ser)
    assert ser.states() == esptool_states(seq, *start)


def test_classic_bootloader_holds_io0_low_while_en_rises() -> None:
    clock = Clock()
    ser = RecordingSerial(clock).start(False, False)
    R.ClassicReset(sleep=clock.sleep).bootloader(ser)
    levels = [(t, *pins(d, r)) for t, d, r in ser.states()]
    # EN low for 100 ms; then DTR and RTS both asserted for an instant (neither transistor
    # conducts: the RC on EN is still charging), IO0 low for 50 ms, then everything high
    assert levels == [(0.0, 0, 1), (0.1, 1, 1), (0.1, 1, 0), (0.15, 1, 1)]


def test_classic_restart_never_pulls_io0_low() -> None:
    clock = Clock()
    ser = RecordingSerial(clock).start(True, True)
    R.ClassicReset(sleep=clock.sleep).restart(ser)
    levels = [pins(d, r) for _, d, r in ser.states()]
    assert all(io0 == 1 for _, io0 in levels)
    # from pyserial's open state (both asserted): releasing DTR starts the 100 ms EN pulse
    assert [(t, en) for (t, *_), (en, _) in zip(ser.states(), levels, strict=True)] == \
        [(0.0, 0), (0.1, 1)]


def test_usb_jtag_restart_waits_for_the_usb_stack() -> None:
    clock = Clock()
    ser = RecordingSerial(clock).start(False, False)
    R.USBJTAGSerialReset(sleep=clock.sleep).restart(ser)
    assert [(t, pins(d, r)[0]) for t, d, r in ser.states()] == [(0.0, 0), (0.2, 1)]
    assert clock.now == pytest.approx(0.4)  # 200 ms in reset, 200 ms for USB to come back


def test_touch_1200_sets_baud_then_drops_dtr_and_closes() -> None:
    clock = Clock()
    ser = RecordingSerial(clock).start(True, True)
    R.Touch1200(sleep=clock.sleep).bootloader(ser)
    assert [(what, v) for _, what, v in ser.events] == \
        [("baud", 1200), ("dtr", False), ("close", True)]
    assert ser.events[-1][0] == pytest.approx(0.1)  # the core sees the line coding first


def test_touch_1200_restarts_with_the_reset_frame_not_the_lines() -> None:
    clock = Clock()
    ser = RecordingSerial(clock).start(True, True)
    strat = R.Touch1200(sleep=clock.sleep)
    strat.restart(ser)
    assert not strat.restarts_by_lines and ser.events == []


def test_dropped_usb_port_is_reopened_a_bounded_number_of_times() -> None:
    clock = Clock()
    ser = RecordingSerial(clock, fail_opens=1).start(False, False)
    ser.is_open = False  # the port vanished while the chip reset
    R.USBJTAGSerialReset(sleep=clock.sleep).restart(ser)
    assert [w for _, w, _ in ser.events][:2] == ["close", "open"]
    assert ser.states()[-1][1:] == (False, False)

    ser = RecordingSerial(clock, fail_opens=5).start(False, False)
    ser.is_open = False
    with pytest.raises(DeviceError, match=r"/dev/ttyFAKE0: reset usb-jtag-serial failed after 3"):
        R.USBJTAGSerialReset(sleep=clock.sleep).restart(ser)


def test_port_without_modem_lines_is_one_line_error() -> None:
    ser = RecordingSerial(Clock(), no_lines=True).start(False, False)
    with pytest.raises(DeviceError, match=r"ttyFAKE0: reset dtr-rts needs DTR/RTS and this port "
                                          r"has none .*use --reset none"):
        R.ClassicReset(sleep=lambda s: None).restart(ser)


def test_real_pty_has_no_modem_lines() -> None:
    master, slave = os.openpty()
    try:
        with serial.Serial(os.ttyname(slave), 115200, timeout=0.1) as ser, \
                pytest.raises(DeviceError, match=r"/dev/pts/\d+: reset dtr-rts needs DTR/RTS"):
            R.ClassicReset(sleep=lambda s: None).restart(ser)
    finally:
        os.close(master)
        os.close(slave)


def test_raw_tcp_port_is_refused_for_line_strategies() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    try:
        ser = serial.serial_for_url(f"socket://127.0.0.1:{srv.getsockname()[1]}", timeout=0.1)
        with ser, pytest.raises(DeviceError, match=r"raw TCP port does not carry"):
            R.ClassicReset(sleep=lambda s: None).restart(ser)
    finally:
        srv.close()


def test_registry_and_override() -> None:
    assert R.strategy("dtr-rts").name == "dtr-rts"
    assert R.strategy("qemu").name == "none"  # emulators: a fresh process, no lines
    with pytest.raises(ConfigError, match=r"unknown reset strategy 'jtag' \(choose from"):
        R.strategy("jtag")
    for spec in BOARDS.values():  # every board's value names a strategy
        assert R.for_board(spec).name in R.NAMES
    assert R.for_board(board("esp32dev"), override="none").name == "none"


def test_esp32_s3_behind_a_uart_bridge_gets_the_classic_sequence() -> None:
    spec = dataclasses.replace(board("esp32-s3-devkitc-1"), reset="usb-jtag-serial")
    assert R.for_board(spec, usb_id=(0x303A, 0x1001)).name == "usb-jtag-serial"
    assert R.for_board(spec, usb_id=(0x10C4, 0xEA60)).name == "dtr-rts"


class FakeBoard(threading.Thread):
    """A TCP peer that sends `boot` bytes, then answers HELLO only if `answer`."""

    def __init__(self, boot: bytes, answer: bool) -> None:
        super().__init__(daemon=True)
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.srv.settimeout(5)
        self.boot, self.answer = boot, answer
        self.url = f"socket://127.0.0.1:{self.srv.getsockname()[1]}"
        self.start()

    def run(self) -> None:
        conn, _ = self.srv.accept()
        with conn:
            time.sleep(0.2)  # pyserial flushes a socket's input right after connecting
            conn.sendall(self.boot)
            conn.settimeout(0.1)
            dec = P.Decoder()
            for _ in range(60):
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                for f in dec.feed(data):
                    if self.answer and f.type == P.Msg.HELLO:
                        conn.sendall(P.encode(P.Msg.HELLO | P.RESPONSE, f.seq, b"x"))


def test_wait_gives_up_naming_port_strategy_and_last_bytes() -> None:
    fake = FakeBoard(b"rst:0x1 (POWERON)\r\n", answer=False)
    tap = R.Tap()
    with Link(fake.url, timeout=0.2, open_fn=tap.open) as link, \
            pytest.raises(DeviceError) as e:
        R.reset_and_wait(link, R.strategy("none"), timeout=3.0, tap=tap)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{fake.url}: no BOOT or HELLO within 3 s after reset none")
    assert msg.endswith("0d 0a") and "72 73 74 3a" in msg  # 'rst:' ... '\r\n'
    fake.srv.close()


def test_wait_accepts_a_boot_frame_or_a_hello_answer() -> None:
    boot = P.encode(P.Msg.BOOT, 0, bytes([P.VERSION, 1, 0, 0, 0, 0]))
    fake = FakeBoard(b"noise" + boot, answer=False)
    with Link(fake.url, timeout=0.2) as link:
        assert R.reset_and_wait(link, R.strategy("none"), timeout=2.0) == "BOOT"
    fake.srv.close()
    fake = FakeBoard(b"", answer=True)
    with Link(fake.url, timeout=0.2) as link:
        assert R.reset_and_wait(link, R.strategy("none"), timeout=2.0) == "HELLO"
    fake.srv.close()
