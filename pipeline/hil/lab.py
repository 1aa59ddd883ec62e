"""A labgrid lab on this machine: coordinator, one exporter and places, all on 127.0.0.1.

For the farm tests, `scripts/bench_farm.py` and trying a farm out without a lab:

    with LocalLab(tmp) as lab:
        lab.export({"m4-a": {"NetworkSerialPort": {"host": "127.0.0.1", "port": 4321,
                                                   "protocol": "raw"}}})
        lab.add_place("a", "m4-a", env="qemu-m4")
        ... Farm(["a"], coordinator=lab.address) ...

Every process it starts is stopped on exit (by its pid), also when a start fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.emulator import _die_with_parent, free_port
from pipeline.errors import DeviceError


def _own_group() -> None:
    os.setsid()  # the exporter starts ser2net per serial port: stop them together
    _die_with_parent()


def labgrid_tool(name: str) -> str:
    """Path of a labgrid command (next to this Python first)."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise DeviceError(f"{name} not found: pip install 'tinypipe[farm]'")
    return found


@dataclass
class LocalLab:
    """Coordinator + exporter on free 127.0.0.1 ports, state in `workdir`."""

    workdir: Path
    exporter_name: str = "tinypipe-lab"
    timeout: float = 30.0
    address: str = ""
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __enter__(self) -> LocalLab:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _env(self, user: str | None = None) -> dict[str, str]:
        env = dict(os.environ, LG_COORDINATOR=self.address)
        if user:
            env["LG_USERNAME"] = user
        return env

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(cmd, cwd=self.workdir, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self._env(), preexec_fn=_own_group)
        log.close()

    def log(self, name: str) -> str:
        """The last line a lab process printed."""
        path = self.workdir / f"{name}.log"
        lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        return lines[-1] if lines else "no output"

    def start(self) -> None:
        """Start the coordinator and wait until it listens."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self._spawn("coordinator", [labgrid_tool("labgrid-coordinator"), "-l", self.address])
        deadline = time.monotonic() + self.timeout
        while True:
            if self.procs["coordinator"].poll() is not None:
                raise DeviceError(f"labgrid-coordinator exited: {self.log('coordinator')}")
            with contextlib.suppress(OSError), \
                    socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
            if time.monotonic() > deadline:
                raise DeviceError(f"labgrid-coordinator did not listen on {self.address}")
            time.sleep(0.1)

    def export(self, groups: dict[str, dict[str, dict]]) -> None:
        """Start the exporter with these resource groups and wait until all are published."""
        config = self.workdir / "exporter.yaml"
        config.write_text(yaml.safe_dump(groups, sort_keys=False))
        self._spawn("exporter", [labgrid_tool("labgrid-exporter"), "-c", self.address,
                                 "--name", self.exporter_name, "--hostname", "127.0.0.1",
                                 str(config)])
        # local serial ports are published as NetworkSerialPort: wait for the groups
        want = {f"{self.exporter_name}/{g}" for g in groups}
        deadline = time.monotonic() + self.timeout
        while True:
            if self.procs["exporter"].poll() is not None:
                raise DeviceError(f"labgrid-exporter exited: {self.log('exporter')}")
            out = self.client("resources", check=False).stdout.split()
            seen = {line.rsplit("/", 1)[0] for line in out}
            if want <= seen:
                return
            if time.monotonic() > deadline:
                raise DeviceError(f"labgrid-exporter did not publish {sorted(want - seen)}")
            time.sleep(0.3)

    def client(self, *args: str, user: str | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
        """Run labgrid-client against this lab (as `user` if given)."""
        proc = subprocess.run([labgrid_tool("labgrid-client"), *args], capture_output=True,
                              text=True, env=self._env(user), timeout=self.timeout)
        if check and proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise DeviceError(f"labgrid-client {' '.join(args)}: {last}")
        return proc

    def add_place(self, name: str, group: str, env: str | None = None) -> None:
        """Create a place matching every resource of `group`, tagged with the env."""
        self.client("-p", name, "create")
        self.client("-p", name, "add-match", f"{self.exporter_name}/{group}/*")
        if env:
            self.client("-p", name, "set-tags", f"env={env}")

    def stop(self) -> None:
        """Stop the exporter, then the coordinator (only the processes started here)."""
        for name in ("exporter", "coordinator"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextlib.contextmanager
def qemu_farm(workdir: Path, env: str, elf: Path, boards: int,
              prefix: str = "") -> Iterator[tuple[LocalLab, list[str]]]:
    """A local lab exporting `boards` QEMU boards running `elf` as places (tagged with the
    env); yields the lab and the place names. Everything is stopped on exit."""
    from pipeline.boards import board
    from pipeline.emulator import make_emulator

    spec = board(env)
    if not spec.emulated:
        raise DeviceError(f"{env} is not a QEMU env")
    names = [f"{prefix or env}-{k}" for k in range(boards)]
    with contextlib.ExitStack() as stack:
        emus = [stack.enter_context(make_emulator(spec, Path(elf), "qemu")) for _ in names]
        lab = stack.enter_context(LocalLab(Path(workdir)))
        lab.export({f"board-{n}": {"NetworkSerialPort": {
            "host": "127.0.0.1", "port": e.port, "protocol": "raw", "speed": spec.baud}}
            for n, e in zip(names, emus, strict=True)})
        for n in names:
            lab.add_place(n, f"board-{n}", env=env)
        yield lab, names
