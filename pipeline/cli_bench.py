"""`tinypipe bench`: thin click layer over pipeline.bench."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.aot.arm import ENVS

COMMANDS = ("bench",)


@click.command("bench")
@click.option("--model", "model", required=True, type=click.Path(dir_okay=False),
              help="int8 .tflite model")
@click.option("--env", default="qemu-m4", show_default=True, type=click.Choice(sorted(ENVS)),
              help="QEMU machine to measure on")
@click.option("--backend", default="aot", show_default=True, type=click.Choice(["aot"]),
              help="inference backend")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="also write the full result as JSON")
@click.option("--top", type=int, default=None, help="only the N most expensive layers")
def bench(model: str, env: str, backend: str, json_out: str | None, top: int | None) -> None:
    """Instructions per inference (per layer and total), MACs/instruction, arena and flash.

    Builds the DSP kernels and the portable reference kernels side by side and runs both under
    QEMU with -icount shift=0, so latency is counted in instructions.

    \b
    Example:
      tinypipe bench --model runs/demo/model_int8.tflite --env qemu-m4 --json bench.json
    """
    from pipeline.bench import bench as run_bench
    from pipeline.bench import format_table

    res = run_bench(model, env=env, backend=backend)
    click.echo(format_table(res, top=top))
    if json_out:
        Path(json_out).write_text(json.dumps(res.to_dict(), indent=2) + "\n")
        click.echo(f"JSON written to {json_out}")
