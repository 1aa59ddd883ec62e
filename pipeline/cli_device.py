"""Device commands (devices, build, flash, hil): thin click wrappers over pipeline.hil."""

from __future__ import annotations

import time
from pathlib import Path

import click

from pipeline.boards import BOARDS
from pipeline.cli_farm import echo_boards, farm_options, hil_on_places

COMMANDS = ("devices", "build", "flash", "hil")
BACKEND = click.option(
    "--backend", type=click.Choice(["aot", "tflm"]), default="aot", show_default=True,
    help="Inference engine: aot (tinypipe's compiled C) or tflm (TFLite Micro interpreter, "
         "built from the tflite-micro tree in $TFLM_DIR; see docs/tflm.md).")
ENVS = click.Choice(sorted(BOARDS))
PROJECT = click.option(
    "--project", "project", type=click.Path(file_okay=False, exists=True),
    help="A `tinypipe init` project to build in (its platformio.ini, src/ and model/); --env "
         "defaults to its first env.")
EMULATOR = click.option(
    "--emulator", "emulator", type=click.Choice(["qemu", "renode"]),
    help="Run the firmware under this emulator (default: the env's own; QEMU envs use qemu, "
         "renode-f407 renode). disco_f407vg also runs under renode.")


def _need_env(env: str | None, project: str | None) -> None:
    if env is None and project is None:
        raise click.UsageError("give --env ENV (or --project DIR of a `tinypipe init` project)")


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


@click.command("devices")
def devices() -> None:
    """List serial ports and the boards recognized by their USB ids.

    \b
    Example:
      tinypipe devices
    """
    from pipeline.hil.devices import list_devices

    found = list_devices()
    if not found:
        click.echo("no serial ports found")
    for d in found:
        envs = ", ".join(d.envs) or "-"
        click.echo(f"{d.port:<16} {d.usb_id:<10} {envs:<28} {d.description}")


@click.command("build")
@click.option("--env", "env", type=ENVS, help="PlatformIO env (board); required without "
              "--project.")
@click.option("--model", "model", type=click.Path(exists=True),
              help="A .tflite, or a run folder holding model.tflite (default: the test model; "
                   "with --project, the model already in its model/).")
@BACKEND
@click.option("--out", "out", type=click.Path(file_okay=False),
              help="Build folder (default: build/firmware/ENV; with --project, its .pio/build).")
@PROJECT
def build(env: str | None, model: str | None, backend: str, out: str | None,
          project: str | None) -> None:
    """Export the model and build the firmware for one env; prints the ELF path.

    \b
    Examples:
      tinypipe build --env qemu-m4 --model runs/demo
      tinypipe build --project myfw --model model.tflite
    """
    from pipeline.hil.build import build_firmware

    _need_env(env, project)
    con = _console()
    with con.status("building") as status:
        elf = build_firmware(env, model, backend=backend, out=out,
                             progress=lambda m: status.update(m), project=project)
    click.echo(str(elf))


@click.command("flash")
@click.option("--env", "env", type=ENVS, help="PlatformIO env (board); required without "
              "--project.")
@click.option("--elf", "elf", type=click.Path(exists=True, dir_okay=False),
              help="Firmware from `tinypipe build` (with --project: the project's own build).")
@click.option("--port", "port", help="Serial port (default: the board found by USB id).")
@EMULATOR
@PROJECT
def flash(env: str | None, elf: str | None, port: str | None, emulator: str | None,
          project: str | None) -> None:
    """Flash a firmware; for QEMU envs, start the emulator and keep it running (Ctrl-C stops).

    \b
    Examples:
      tinypipe flash --env qemu-m4 --elf build/firmware/qemu-m4/pio/qemu-m4/program.elf
      tinypipe flash --project myfw --port /dev/ttyACM0
    """
    from pipeline.hil.runner import flash_firmware

    _need_env(env, project)
    if project is not None:
        from pipeline.project import load_project

        proj = load_project(project)
        env = proj.env(env)
        elf = elf or str(proj.elf(env))
    if elf is None:
        raise click.UsageError("give --elf (a firmware from `tinypipe build`) or --project")

    emu = flash_firmware(env, Path(elf), port, emulator)
    if emu is None:
        click.echo(f"flashed {env}")
        return
    with emu:
        click.echo(f"{env} running; connect with --port {emu.url} (Ctrl-C stops it)")
        while emu.alive():
            time.sleep(0.5)


@click.command("hil")
@click.option("--env", "env", type=ENVS, help="PlatformIO env (board); required without "
              "--project.")
@click.option("--port", "port", help="Serial port or socket:// URL (default: found by USB id).")
@click.option("--model", "model", type=click.Path(exists=True), required=True,
              help="A .tflite, or a run folder holding model.tflite.")
@click.option("--data", "data", type=click.Path(exists=True, dir_okay=False), required=True,
              help=".npz with x (inputs in the model's dtype and shape) and optional y.")
@click.option("--limit", type=int, help="Only the first N samples.")
@BACKEND
@click.option("--flash/--no-flash", "do_flash", default=True, show_default=True,
              help="Build and flash first (QEMU: start the emulator).")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="Report folder (hil.json, hil.md, latency.png).")
@EMULATOR
@PROJECT
@farm_options
def hil(env: str | None, port: str | None, model: str, data: str, limit: int | None,
        backend: str, do_flash: bool, out: str, emulator: str | None,
        project: str | None, places: tuple[str, ...] = (), coordinator: str | None = None,
        batch: int = 4, reset: str | None = None) -> None:
    """Stream a data set through the board; check every output bit-exactly against the host.

    \b
    Example:
      tinypipe hil --env qemu-m4 --model runs/demo --data test.npz --limit 200 --out runs/demo/hil
      tinypipe hil --env esp32dev --place esp-1 --place esp-2 --no-flash --model m.tflite \
        --data x.npz --out out
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from pipeline.hil.runner import run_hil

    _need_env(env, project)
    if project is not None:
        from pipeline.project import load_project

        env = load_project(project).env(env)
    con = _console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), console=con, transient=False) as bar:
        task = bar.add_task("preparing", total=None, rate="")
        t0 = [time.monotonic()]

        def on_sample(done: int, total: int, _msg: str) -> None:
            if done == 1:
                t0[0] = time.monotonic()
            rate = (done - 1) / max(time.monotonic() - t0[0], 1e-6)
            bar.update(task, description=f"hil {env}", completed=done, total=total,
                       rate=f"{rate:.0f} samples/s")

        say = lambda m: bar.update(task, description=m[:60])  # noqa: E731
        if places:  # labgrid farm (pipeline/cli_farm.py)
            if port or project:
                raise click.UsageError("--place excludes --port and --project")
            summary = hil_on_places(env, model, data, limit, out, places, coordinator, reset,
                                    batch, do_flash, backend, on_sample, say)
        else:
            summary = run_hil(env, model, data, port=port, limit=limit, out_dir=out,
                              flash=do_flash, backend=backend, progress=on_sample,
                              build_progress=say, emulator=emulator, reset=reset,
                              project=project)
    kind = summary["counter"]
    click.echo(f"samples      : {summary['samples']}")
    click.echo(f"bit-exact    : {summary['bit_exact']}/{summary['samples']}")
    if "accuracy" in summary:
        click.echo(f"accuracy     : {100 * summary['accuracy']:.2f} % "
                   f"(host {100 * summary['host_accuracy']:.2f} %)")
    lat = summary["latency"][kind]
    click.echo(f"latency      : {lat['mean']:,.0f} {kind} mean, p99 {lat['p99']:,.0f}")
    click.echo(f"throughput   : {summary['throughput_sps']:.1f} samples/s")
    echo_boards(summary)
    click.echo(f"report       : {Path(out) / 'hil.md'}")
