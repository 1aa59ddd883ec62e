"""Boards in a labgrid farm: acquire places, find their serial ports, flash, release.

A place is just another way to get a serial URL (and sometimes a flasher): an exporter
publishes each board's UART as a `NetworkSerialPort` (a raw TCP or RFC 2217 port it names, or a
`USBSerialPort`/`RawSerialPort` it serves through its own ser2net), the coordinator hands out
places, and `Farm` holds them for one run:

    with Farm(["m4-a", "m4-b"], coordinator="127.0.0.1:20408") as farm:
        run_sharded("qemu-m4", model, farm.targets(), samples=x)

Places are released on exit, on error and on Ctrl-C. A place that another client holds stops the
run with one line naming the place and its holder; a place this user already holds on this
host (`labgrid-client -p NAME acquire` beforehand) is used and left held. labgrid itself is the
optional extra `tinypipe[farm]`: nothing here is imported without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ConfigError, DeviceError
from pipeline.hil.shard import Target

DEFAULT_COORDINATOR = "127.0.0.1:20408"
# the resource a place's board answers on when a place has several serial ports
SERIAL_NAME = "hil"
# labgrid drivers that can flash a board, by the resource class a place exports
OPENOCD_BOARD_CONFIG = {"nucleo_f746zg": "board/st_nucleo_f7.cfg",
                        "disco_f407vg": "board/stm32f4discovery.cfg"}
FARM_HINT = "labgrid is not installed: pip install 'tinypipe[farm]' (or make)"


def coordinator_address(given: str | None = None) -> str:
    """`given`, else $LG_COORDINATOR, else labgrid's default."""
    return given or os.environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR


def _labgrid():
    try:
        import labgrid.remote.client as client
    except ImportError:
        raise DeviceError(FARM_HINT) from None
    return client


@dataclass
class Place:
    """An acquired place and the serial URL of its board."""

    name: str
    url: str = ""
    env: str | None = None             # the place's `env` tag, if it has one
    resources: tuple[str, ...] = ()    # resource classes, e.g. NetworkSerialPort
    ours: bool = False                 # acquired by this run (released at the end)

    def target(self) -> Target:
        """The place as a board of a sharded run."""
        return Target(self.name, self.url)


class _LastRecord(logging.Handler):
    """Keeps the last warning or error logged (and keeps Python from printing it)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage().splitlines()[0]


class _Session:
    """A labgrid client session whose event loop runs in its own thread, so the coordinator
    keeps hearing from us while the main thread streams samples."""

    def __init__(self, address: str, timeout: float) -> None:
        client = _labgrid()
        self.address, self.timeout = address, timeout
        # labgrid reports connection trouble on the root logger; it becomes our one-line error
        self.log = _LastRecord()
        logging.getLogger().addHandler(self.log)
        self.loop = asyncio.new_event_loop()
        self.session = None
        self.error: BaseException | None = None
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.session = client.start_session(address, loop=self.loop)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                self.error = e
            ready.set()
            if self.session is not None:
                self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="labgrid-session", daemon=True)
        self.thread.start()
        if not ready.wait(timeout) or self.session is None:
            self.close()
            why = self.log.last or self.error or "timed out"
            raise DeviceError(f"labgrid coordinator {address}: cannot connect ({why})")

    def call(self, coro_fn, *args):
        """Run a coroutine on the session's loop and wait for it."""
        fut = asyncio.run_coroutine_threadsafe(coro_fn(*args), self.loop)
        return fut.result(self.timeout)

    def close(self) -> None:
        logging.getLogger().removeHandler(self.log)
        if self.session is not None and self.loop.is_running():
            with contextlib.suppress(Exception):
                self.call(self.session.stop)
            with contextlib.suppress(Exception):
                self.call(self.session.close)
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(self.timeout)
        if not self.loop.is_running():
            self.loop.close()


@dataclass
class Farm:
    """Acquire labgrid places for one run; a context manager that always releases them."""

    names: list[str]
    coordinator: str | None = None
    env: str | None = None          # refuse places tagged with another env
    timeout: float = 20.0           # per coordinator call, and for a port to come up
    places: list[Place] = field(default_factory=list)
    _s: _Session | None = None

    def __enter__(self) -> Farm:
        if not self.names:
            raise ConfigError("no places given (--place NAME)")
        if len(set(self.names)) != len(self.names):
            raise ConfigError(f"a place given twice: {', '.join(self.names)}")
        try:
            self._s = _Session(coordinator_address(self.coordinator), self.timeout)
            for name in self._expand(self.names):
                self.places.append(self._acquire(name))
            for place in self.places:
                self._resolve(place)
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def targets(self) -> list[Target]:
        """Every acquired place as a board of a sharded run."""
        return [p.target() for p in self.places]

    # ---- acquire / release -------------------------------------------------------------------

    def _user(self) -> str:
        s = self._s.session
        return f"{s.gethostname()}/{s.getuser()}"

    def _expand(self, names: list[str]) -> list[str]:
        """Place names; `+TOKEN` stands for the places of a labgrid reservation."""
        out: list[str] = []
        for name in names:
            if not name.startswith("+"):
                out.append(name)
                continue
            try:
                found = self._s.session._match_places(name)  # labgrid's own token lookup
            except Exception as e:  # noqa: BLE001 - labgrid's UserError
                raise DeviceError(f"reservation {name}: {e}") from None
            if not found:
                raise DeviceError(f"reservation {name} has no places allocated yet")
            out += sorted(found)
        return out

    def _acquire(self, name: str) -> Place:
        s = self._s.session
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        if name not in s.places:
            known = ", ".join(sorted(s.places)) or "none"
            raise DeviceError(f"place {name}: no such place on {self._s.address} "
                              f"(places: {known})")
        lg = s.places[name]
        env = lg.tags.get("env")
        if self.env and env and env != self.env:
            raise DeviceError(f"place {name} is tagged env={env}, this run is for {self.env}")
        place = Place(name, env=env)
        if lg.acquired:
            if lg.acquired != self._user():
                raise DeviceError(f"place {name} is held by {lg.acquired}")
            return place  # held by us already: use it, leave it held

        async def acquire() -> str | None:
            import grpc

            try:
                await s.stub.AcquirePlace(pb.AcquirePlaceRequest(placename=name))
            except grpc.aio.AioRpcError as e:
                await s.sync_with_coordinator()
                return s.places[name].acquired or e.details()
            await s.sync_with_coordinator()
            return None

        holder = self._s.call(acquire)
        if holder is not None:  # somebody was faster
            raise DeviceError(f"place {name} is held by {holder}")
        place.ours = True
        return place

    def release(self) -> None:
        """Release the places this run acquired (idempotent), then leave the coordinator."""
        if self._s is None:
            return
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        s = self._s.session
        for place in self.places:
            if not place.ours:
                continue
            with contextlib.suppress(Exception):  # release the others whatever happens

                async def release(name: str = place.name) -> None:
                    await s.stub.ReleasePlace(pb.ReleasePlaceRequest(placename=name))
                    await s.sync_with_coordinator()

                self._s.call(release)
            place.ours = False
        self._s.close()
        self._s = None

    # ---- serial ports ------------------------------------------------------------------------

    def _resolve(self, place: Place) -> None:
        """Find the place's serial port; waits for an exporter's ser2net to come up."""
        s = self._s.session
        lg = s.places[place.name]
        deadline = time.monotonic() + self.timeout
        while True:
            entries = s.get_target_resources(lg)
            place.resources = tuple(sorted({cls for _, cls in entries}))
            serials = {name: e for (name, cls), e in entries.items() if cls == "NetworkSerialPort"}
            if not serials:
                raise DeviceError(f"place {place.name} has no serial port (resources: "
                                  f"{', '.join(place.resources) or 'none'}; matches: "
                                  f"{', '.join(str(m) for m in lg.matches) or 'none'})")
            if len(serials) > 1 and SERIAL_NAME not in serials:
                raise DeviceError(f"place {place.name} has {len(serials)} serial ports "
                                  f"({', '.join(sorted(serials))}); name the board's "
                                  f"'{SERIAL_NAME}' in the place's match (--rename)")
            name, entry = next(iter(serials.items())) if len(serials) == 1 else \
                (SERIAL_NAME, serials[SERIAL_NAME])
            if entry.avail and entry.args.get("port"):
                place.url = _serial_url(place.name, name, entry)
                return
            if time.monotonic() > deadline:
                raise DeviceError(f"place {place.name}: serial port {name} is not available "
                                  "(board unplugged, or the exporter's ser2net did not start)")
            time.sleep(0.1)

    # ---- flashing ----------------------------------------------------------------------------

    def check_flashable(self, env: str) -> None:
        """Raise (before any build) unless labgrid can flash every place."""
        for place in self.places:
            _openocd_config(place, env)

    def flash(self, env: str, elf: str | Path) -> None:
        """Flash every place through the labgrid driver for its board, where labgrid has one."""
        for place in self.places:
            flash_place(place, env, Path(elf), coordinator_address(self.coordinator))


def _serial_url(place: str, name: str, entry) -> str:
    """pyserial URL of a place's exported serial port."""
    from labgrid import Target
    from labgrid.factory import target_factory

    res = target_factory.make_resource(Target(place), "NetworkSerialPort", name,
                                       dict(entry.args))
    res.extra = entry.extra
    return serial_url(res)


def serial_url(res) -> str:
    """pyserial URL of a labgrid serial resource: a local port's path, or raw/RFC 2217 for a
    NetworkSerialPort (through labgrid's SSH proxy when the exporter needs one)."""
    from labgrid.util.proxy import proxymanager

    if not hasattr(res, "protocol"):  # RawSerialPort / USBSerialPort on this host
        return str(res.port)
    host, port = proxymanager.get_host_and_port(res)
    host = f"[{host}]" if ":" in host else host
    if res.protocol == "raw":
        return f"socket://{host}:{port}"
    if res.protocol == "rfc2217":
        # A pseudo-terminal has no modem lines: ser2net never answers pyserial's DTR/RTS
        # requests for one, so do not wait for those answers (the exporter names the path).
        pty = str((res.extra or {}).get("path", "")).startswith("/dev/pts/")
        return f"rfc2217://{host}:{port}" + ("?ign_set_control" if pty else "")
    raise DeviceError(f"{res.name or 'serial port'}: protocol {res.protocol!r} "
                      "(tinypipe opens raw and rfc2217)")


def _openocd_config(place: Place, env: str) -> str:
    """The OpenOCD board config to flash this place with, or a DeviceError saying why not."""
    if any(r.endswith("USBDebugger") for r in place.resources) and env in OPENOCD_BOARD_CONFIG:
        return OPENOCD_BOARD_CONFIG[env]
    raise DeviceError(f"place {place.name}: labgrid has no flasher for {env} among its "
                      f"resources ({', '.join(place.resources) or 'none'}); flash the board "
                      "beforehand and pass --no-flash")


def flash_place(place: Place, env: str, elf: Path, coordinator: str) -> None:
    """Flash one place with labgrid's OpenOCD driver (the place's USBDebugger)."""
    from labgrid import Target
    from labgrid.driver import OpenOCDDriver
    from labgrid.resource.remote import RemotePlace

    config = _openocd_config(place, env)
    os.environ.setdefault("LG_COORDINATOR", coordinator)  # RemotePlace reads it
    target = Target(place.name)
    RemotePlace(target, name=place.name)
    driver = OpenOCDDriver(target, name=None, board_config=config)
    try:
        target.activate(driver)
        driver.load(str(elf))
    except Exception as e:  # noqa: BLE001 - labgrid raises many kinds; one line for them
        raise DeviceError(f"place {place.name}: flashing {env} with OpenOCD failed ({e})"
                          ) from None
    finally:
        target.deactivate_all_drivers()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C (places are released and a partial report kept)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_sig, _frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
