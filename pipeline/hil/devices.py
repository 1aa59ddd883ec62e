"""Serial ports on this machine, with the boards recognized from their USB ids."""

from __future__ import annotations

from dataclasses import dataclass

from serial.tools import list_ports

from pipeline.boards import BoardSpec, board, boards_for_usb
from pipeline.errors import DeviceError


@dataclass(frozen=True)
class Device:
    """One serial port and the envs that may sit behind it."""

    port: str
    description: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    envs: tuple[str, ...]

    @property
    def usb_id(self) -> str:
        """"VID:PID" or "-" for non-USB ports."""
        return f"{self.vid:04X}:{self.pid:04X}" if self.vid is not None else "-"


def list_devices(ports: list | None = None) -> list[Device]:
    """Serial ports (from pyserial unless given) with matching board envs."""
    found = list_ports.comports() if ports is None else ports
    out = []
    for p in sorted(found, key=lambda p: p.device):
        envs = tuple(b.env for b in boards_for_usb(p.vid, p.pid))
        out.append(Device(p.device, p.description or "", p.vid, p.pid, p.serial_number, envs))
    return out


def find_port(env: str, port: str | None = None, ports: list | None = None) -> str:
    """The port to use for `env`: the given one, else the single port matching its USB ids."""
    spec: BoardSpec = board(env)
    if port:
        return port
    devices = list_devices(ports)
    matches = [d for d in devices if env in d.envs]
    if len(matches) == 1:
        return matches[0].port
    seen = ", ".join(f"{d.port} ({d.usb_id})" for d in devices) or "none"
    if not matches:
        raise DeviceError(f"no {spec.title} found; serial ports seen: {seen}; pass --port")
    raise DeviceError(f"several ports match {env}: {seen}; pass --port")
