"""Farm pieces that need no board: the work queue, serial URLs of labgrid resources, errors."""

from __future__ import annotations

import threading

import pytest

from pipeline.errors import ConfigError, DataError, DeviceError
from pipeline.hil.shard import Target, _Queue, run_sharded


def test_queue_hands_out_batches_and_requeues_the_rest_first() -> None:
    q = _Queue(10, 4)
    a, b = q.take(), q.take()
    assert (a, b) == ([0, 1, 2, 3], [4, 5, 6, 7])
    q.finish([2, 3])  # board A lost after two samples
    assert q.take() == [2, 3]  # before the untouched batch
    assert q.take() == [8, 9]
    for _ in range(3):
        q.finish([])
    assert q.take() is None and q.busy == 0


def test_idle_worker_waits_while_another_may_still_fail() -> None:
    q = _Queue(4, 4)
    mine = q.take()
    got: list = []
    t = threading.Thread(target=lambda: got.append(q.take()))
    t.start()
    t.join(0.3)
    assert t.is_alive()  # the queue is empty, but the busy batch could come back
    q.finish(mine[1:])
    t.join(5)
    assert got == [[1, 2, 3]]


def test_run_sharded_refuses_bad_arguments() -> None:
    with pytest.raises(DeviceError, match="no boards to run on"):
        run_sharded("qemu-m4", b"", [])
    twice = [Target("a", "socket://x:1"), Target("a", "socket://x:2")]
    with pytest.raises(DeviceError, match="the same board twice: a, a"):
        run_sharded("qemu-m4", b"", twice)
    with pytest.raises(DataError, match=r"batch must be at least 1 \(got 0\)"):
        run_sharded("qemu-m4", b"", twice[:1], batch=0)


@pytest.fixture
def labgrid():
    return pytest.importorskip("labgrid", reason="labgrid not installed: pip install "
                                                 "'tinypipe[farm]'")


def _port(**kw):
    from labgrid import Target as LgTarget
    from labgrid.factory import target_factory

    args = {"host": "lab.example", "port": 4001, **{k: v for k, v in kw.items() if k != "extra"}}
    res = target_factory.make_resource(LgTarget("t"), "NetworkSerialPort", "hil", args)
    res.extra = kw.get("extra", {})
    return res


def test_serial_urls_of_exported_ports(labgrid) -> None:
    from pipeline.hil.farm import serial_url

    assert serial_url(_port(protocol="raw")) == "socket://lab.example:4001"
    assert serial_url(_port()) == "rfc2217://lab.example:4001"  # labgrid's default
    # a pty behind ser2net has no modem lines: do not wait for DTR/RTS answers
    assert serial_url(_port(extra={"path": "/dev/pts/3"})) == \
        "rfc2217://lab.example:4001?ign_set_control"
    assert serial_url(_port(extra={"path": "/dev/ttyUSB0"})) == "rfc2217://lab.example:4001"
    with pytest.raises(DeviceError, match=r"protocol 'ssh' \(tinypipe opens raw and rfc2217\)"):
        serial_url(_port(protocol="ssh"))


def test_unreachable_coordinator_is_one_line(labgrid) -> None:
    from pipeline.emulator import free_port
    from pipeline.hil.farm import Farm

    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(DeviceError) as e:
        Farm(["a"], coordinator=address, timeout=10).__enter__()
    msg = str(e.value)
    assert msg.startswith(f"labgrid coordinator {address}: cannot connect (")
    assert "\n" not in msg


def test_farm_needs_distinct_places() -> None:
    from pipeline.hil.farm import Farm

    with pytest.raises(ConfigError, match="no places given"):
        Farm([]).__enter__()
    with pytest.raises(ConfigError, match="a place given twice: a, a"):
        Farm(["a", "a"]).__enter__()
