"""Farm options of `tinypipe hil` (--place, --coordinator, --batch, --reset) and the sharded run
they start; `cli_device.hil` applies `farm_options` and calls `hil_on_places`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from pipeline.hil.reset import NAMES as RESET_NAMES

RESET = click.option(
    "--reset", "reset", type=click.Choice(RESET_NAMES),
    help="Reset strategy before the handshake (default: the board's, see docs/farm.md): "
         "dtr-rts (ESP32 auto-reset), usb-jtag-serial (ESP32-S3 native USB), 1200bps "
         "(nano33ble, pico), none.")


def farm_options(f: Callable) -> Callable:
    """Add the farm options to a click command."""
    f = click.option("--batch", "batch", type=click.IntRange(min=1), default=4,
                     show_default=True,
                     help="With --place: samples a board takes from the queue at a time.")(f)
    f = click.option("--coordinator", "coordinator", metavar="HOST:PORT",
                     help="labgrid coordinator (default: $LG_COORDINATOR, else "
                          "127.0.0.1:20408).")(f)
    f = click.option("--place", "places", multiple=True, metavar="NAME",
                     help="labgrid place to run on; repeat to spread the data set over several "
                          "boards (needs tinypipe[farm]; see docs/farm.md).")(f)
    return RESET(f)


def hil_on_places(env: str, model: str, data: str, limit: int | None, out: str,
                  places: tuple[str, ...], coordinator: str | None, reset: str | None,
                  batch: int, do_flash: bool, backend: str, on_sample, say) -> dict:
    """Acquire the places, flash them (where labgrid can), shard the data set, release."""
    from pipeline.hil.build import build_firmware
    from pipeline.hil.farm import Farm, sigterm_as_interrupt
    from pipeline.hil.shard import run_sharded

    with sigterm_as_interrupt():
        say(f"acquiring {', '.join(places)}")
        with Farm(list(places), coordinator=coordinator, env=env) as farm:
            if do_flash:
                farm.check_flashable(env)  # before a build that would be wasted
                elf = build_firmware(env, model, backend=backend,
                                     out=Path(out) / "firmware", progress=say)
                say(f"flashing {len(places)} places")
                farm.flash(env, elf)
            return run_sharded(env, model, farm.targets(), data, limit, out, batch=batch,
                               reset=reset, progress=on_sample, say=say)


def echo_boards(summary: dict) -> None:
    """One line per board of a sharded run."""
    kind = summary["counter"]
    for b in summary.get("boards", []):
        lost = f"  LOST: {b['lost']}" if b["lost"] else ""
        click.echo(f"  {b['name']:<12} {b['samples']:>6} samples  {b['bit_exact']:>6} bit-exact  "
                   f"{b['latency']['mean']:>12,.0f} {kind} mean  "
                   f"{b['throughput_sps']:6.1f} samples/s{lost}")
