"""Device commands (devices, build, flash, hil): thin click wrappers over pipeline.hil."""

from __future__ import annotations

import time
from pathlib import Path

import click

from pipeline.hil.boards import BOARDS

COMMANDS = ("devices", "build", "flash", "hil")
BACKEND = click.option(
    "--backend", type=click.Choice(["aot", "tflm"]), default="aot", show_default=True,
    help="Inference engine: aot (tinypipe's compiled C) or tflm (TFLite Micro interpreter, "
         "built from the tflite-micro tree in $TFLM_DIR; see docs/tflm.md).")
ENVS = click.Choice(sorted(BOARDS))
EMULATOR = click.option(
    "--emulator", "emulator", type=click.Choice(["qemu", "renode"]),
    help="Run the firmware under this emulator (default: the env's own; QEMU envs use qemu, "
         "renode-f407 renode). disco_f407vg also runs under renode.")


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
@click.option("--env", "env", type=ENVS, required=True, help="PlatformIO env (board).")
@click.option("--model", "model", type=click.Path(exists=True),
              help="A .tflite, or a run folder holding model.tflite (default: the test model).")
@BACKEND
@click.option("--out", "out", type=click.Path(file_okay=False),
              help="Build folder (default: build/firmware/ENV).")
def build(env: str, model: str | None, backend: str, out: str | None) -> None:
    """Export the model and build the firmware for one env; prints the ELF path.

    \b
    Example:
      tinypipe build --env qemu-m4 --model runs/demo
    """
    from pipeline.hil.build import build as do_build
    from pipeline.hil.runner import model_bytes

    con = _console()
    with con.status("building") as status:
        elf = do_build(env, model_bytes(model) if model else None, backend=backend, out=out,
                       progress=lambda m: status.update(m))
    click.echo(str(elf))


@click.command("flash")
@click.option("--env", "env", type=ENVS, required=True, help="PlatformIO env (board).")
@click.option("--elf", "elf", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Firmware from `tinypipe build`.")
@click.option("--port", "port", help="Serial port (default: the board found by USB id).")
@EMULATOR
def flash(env: str, elf: str, port: str | None, emulator: str | None) -> None:
    """Flash a firmware; for QEMU envs, start the emulator and keep it running (Ctrl-C stops).

    \b
    Example:
      tinypipe flash --env qemu-m4 --elf build/firmware/qemu-m4/pio/qemu-m4/program.elf
    """
    from pipeline.hil.boards import board
    from pipeline.hil.emulator import make_emulator
    from pipeline.hil.runner import flash_firmware

    spec = board(env)
    if emulator or spec.default_emulator == "renode":
        emu = make_emulator(spec, Path(elf), emulator).start()
    else:
        emu = flash_firmware(env, Path(elf), port)
    if emu is None:
        click.echo(f"flashed {env}")
        return
    with emu:
        click.echo(f"{env} running; connect with --port {emu.url} (Ctrl-C stops it)")
        while emu.alive():
            time.sleep(0.5)


@click.command("hil")
@click.option("--env", "env", type=ENVS, required=True, help="PlatformIO env (board).")
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
def hil(env: str, port: str | None, model: str, data: str, limit: int | None, backend: str,
        do_flash: bool, out: str, emulator: str | None) -> None:
    """Stream a data set through the board; check every output bit-exactly against the host.

    \b
    Example:
      tinypipe hil --env qemu-m4 --model runs/demo --data test.npz --limit 200 --out runs/demo/hil
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from pipeline.hil.boards import board
    from pipeline.hil.runner import run_hil

    spec = board(env)
    if emulator == "qemu" and not spec.emulated:
        raise click.UsageError(f"{env} does not run under qemu (emulators: "
                               f"{', '.join(spec.emulators) or 'none'})")
    renode = do_flash and not port and (emulator or spec.default_emulator) == "renode"
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
        if renode:
            summary = _hil_renode(env, model, data, limit, out, on_sample, say, emulator,
                                  backend)
        else:
            summary = run_hil(env, model, data, port=port, limit=limit, out_dir=out,
                              flash=do_flash, backend=backend, progress=on_sample,
                              build_progress=say)
    kind = summary["counter"]
    click.echo(f"samples      : {summary['samples']}")
    click.echo(f"bit-exact    : {summary['bit_exact']}/{summary['samples']}")
    if "accuracy" in summary:
        click.echo(f"accuracy     : {100 * summary['accuracy']:.2f} % "
                   f"(host {100 * summary['host_accuracy']:.2f} %)")
    lat = summary["latency"][kind]
    click.echo(f"latency      : {lat['mean']:,.0f} {kind} mean, p99 {lat['p99']:,.0f}")
    click.echo(f"throughput   : {summary['throughput_sps']:.1f} samples/s")
    if summary.get("link"):
        from pipeline.hil.report import link_line

        click.echo(f"link         : {link_line(summary['link'])}")
    click.echo(f"report       : {Path(out) / 'hil.md'}")


def _hil_renode(env: str, model: str, data: str, limit: int | None, out: str, on_sample,
                say, emulator: str | None, backend: str = "aot") -> dict:
    """Build, start Renode, run the data set through its UART socket, stop Renode."""
    import shutil

    from pipeline.errors import DeviceError
    from pipeline.hil.boards import board
    from pipeline.hil.build import build_firmware
    from pipeline.hil.emulator import RENODE_MISSING, make_emulator
    from pipeline.hil.runner import model_bytes, run_hil

    spec = board(env)
    emu = make_emulator(spec, "unbuilt.elf", emulator)  # fails early if Renode can't run it
    if shutil.which(emu.renode) is None:  # before the slow build
        raise DeviceError(RENODE_MISSING)
    emu.elf = build_firmware(env, model_bytes(model), backend=backend, out=Path(out) / "firmware",
                             progress=say)
    say(f"starting Renode ({env})")
    with emu.start():
        return run_hil(env, model, data, port=emu.url, limit=limit, out_dir=out, flash=False,
                       progress=on_sample, build_progress=say, timeout=spec.timeout)
