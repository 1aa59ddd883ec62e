"""`tinypipe bench`: thin click layer over pipeline.bench."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.aot.arm import ENVS
from pipeline.bench import BACKENDS

COMMANDS = ("bench",)


@click.command("bench")
@click.option("--model", "model", type=click.Path(dir_okay=False), help="int8 .tflite model")
@click.option("--suite", "suite", type=click.Path(file_okay=False, exists=True),
              help="a folder of .tflite models: each on the AOT firmware and, with TFLM_DIR "
                   "(and CMSIS_NN_DIR) set, on TFLM's (reference and CMSIS-NN) firmware")
@click.option("--out", "out", type=click.Path(file_okay=False),
              help="with --suite: write suite.json and suite.md here")
@click.option("--env", default="qemu-m4", show_default=True, type=click.Choice(sorted(ENVS)),
              help="QEMU machine to measure on")
@click.option("--backend", default="aot", show_default=True,
              type=click.Choice(BACKENDS),
              help="aot: per-layer kernel bench (DSP vs reference kernels); tflm: the TFLM "
                   "firmware (needs TFLM_DIR); both: the kernel bench, then AOT and TFLM "
                   "firmware side by side on the same inputs")
@click.option("--samples", type=int, default=8, show_default=True,
              help="random inputs per firmware run (tflm, both)")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="also write the full result as JSON")
@click.option("--top", type=int, default=None, help="only the N most expensive layers")
def bench(model: str | None, suite: str | None, out: str | None, env: str, backend: str,
          samples: int, json_out: str | None, top: int | None) -> None:
    """Instructions per inference (per layer and total), MACs/instruction, arena and flash.

    The AOT bench builds the DSP kernels and the portable reference kernels side by side and
    runs both under QEMU with -icount shift=0, so latency is counted in instructions. The
    firmware runs (tflm, both) build the real firmware per backend and stream the same inputs
    through it, checking every output against the host interpreter and across backends.

    \b
    Examples:
      tinypipe bench --model runs/demo/model.tflite --env qemu-m4 --json bench.json
      TFLM_DIR=~/src/tflite-micro tinypipe bench --model m.tflite --backend both
      tinypipe bench --suite models/ --env qemu-m55 --samples 2 --out runs/suite
    """
    from pipeline.bench import bench as run_bench
    from pipeline.bench import compare_backends, format_comparison, format_table

    if (model is None) == (suite is None):
        raise click.UsageError("give --model M.tflite or --suite DIR")
    if suite is not None:
        _suite(suite, env, samples, out, json_out)
        return
    result: dict = {}
    if backend in ("aot", "both"):
        res = run_bench(model, env=env, backend="aot")
        click.echo(format_table(res, top=top))
        result = res.to_dict()
    if backend in ("tflm", "both"):
        cmp = compare_backends(model, env, ("aot", "tflm") if backend == "both" else ("tflm",),
                               samples=samples)
        if result:
            click.echo("")
        click.echo(format_comparison(cmp))
        result["firmware"] = cmp.to_dict()
        if backend == "tflm":
            t = cmp.runs[0]
            result |= {"model": model, "env": env, "backend": "tflm", "macs": cmp.macs,
                       "instructions_per_inference": t.instructions_per_inference,
                       "arena_bytes": t.arena_bytes, "flash_bytes": t.flash_bytes}
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=2) + "\n")
        click.echo(f"JSON written to {json_out}")


def _suite(folder: str, env: str, samples: int, out: str | None, json_out: str | None) -> None:
    from rich.console import Console

    from pipeline.bench import bench_suite, format_suite

    con = Console(stderr=True, highlight=False)
    with con.status("bench suite") as status:
        res = bench_suite(folder, env, samples, work_dir=None,
                          progress=lambda m: status.update(m))
    click.echo(format_suite(res))
    paths = []
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        paths = [Path(out) / "suite.json", Path(out) / "suite.md"]
        paths[1].write_text(format_suite(res, markdown=True) + "\n")
    if json_out:
        paths.insert(0, Path(json_out))
    for p in paths:
        if p.suffix == ".json":
            p.write_text(json.dumps(res.to_dict(), indent=2) + "\n")
    if paths:
        click.echo("written: " + ", ".join(map(str, paths)))
