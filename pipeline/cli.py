"""Thin click layer: parse options, call the library, print. Errors are caught once, in main()."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from pipeline import __version__
from pipeline.errors import TinypipeError

DEFAULT_CONFIG = "models/demo.yaml"


class Console:
    """Stage messages and an epoch progress bar on stderr; results go to stdout."""

    def __init__(self):
        from rich.console import Console as RichConsole

        self.err = RichConsole(stderr=True, highlight=False)
        self._progress = None
        self._task = None

    def log(self, msg: str) -> None:
        self.err.print(f"[dim]>[/dim] {msg}")

    def epoch(self, epoch: int, epochs: int, logs: dict) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        if self._progress is None:
            self._progress = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.description}"), console=self.err)
            self._progress.start()
            self._task = self._progress.add_task("", total=epochs)
        desc = " ".join(f"{k}={v:.3f}" for k, v in logs.items() if k in
                        ("loss", "accuracy", "val_loss", "val_accuracy"))
        self._progress.update(self._task, completed=epoch, description=desc)
        if epoch >= epochs:
            self.close()

    def samples(self, done: int, total: int, desc: str = "") -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        if self._progress is None:
            self._progress = Progress(TextColumn("on device"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.description}"), console=self.err)
            self._progress.start()
            self._task = self._progress.add_task("", total=total)
        self._progress.update(self._task, completed=done, description=desc)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def config_options(f):
    """--config/--out/--set plus the overrides most people reach for."""
    opts = [
        click.option("--config", "config", type=click.Path(dir_okay=False),
                     help=f"YAML config (default: the run folder's, else {DEFAULT_CONFIG})."),
        click.option("--out", "out", type=click.Path(file_okay=False), required=True,
                     help="Run folder."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override any config key, e.g. --set train.epochs=5."),
        click.option("--epochs", type=int, help="Shortcut for --set train.epochs=N."),
        click.option("--alpha", type=float, help="Shortcut for --set model.alpha=A."),
        click.option("--data", "data_path", type=click.Path(),
                     help="Image folder or .npz (sets data.source and data.path)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _stages(config, out, overrides, epochs=None, alpha=None, data_path=None, console=None):
    from pipeline.run import RunDir, Stages, resolve_config

    ov = list(overrides)
    if epochs is not None:
        ov.append(f"train.epochs={epochs}")
    if alpha is not None:
        ov.append(f"model.alpha={alpha}")
    if data_path is not None:
        src = "npz" if str(data_path).endswith(".npz") else "folder"
        ov += [f"data.source={src}", f"data.path={data_path}"]
    fresh = not (Path(out) / "config.yaml").exists()
    if config is None and fresh and Path(DEFAULT_CONFIG).exists():
        config = DEFAULT_CONFIG
    cfg = resolve_config(config, Path(out), ov)
    console = console or Console()
    return Stages(cfg, RunDir(out), console.log, console.epoch), console


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tinypipe")
@click.pass_context
def cli(ctx):
    """tinypipe: images -> int8 MobileNet -> C for microcontrollers, proven bit-exact on the host.

    \b
    Example:
      tinypipe run --config models/demo.yaml --out runs/demo
    """
    if ctx.invoked_subcommand not in (None, "init") and "--help" not in sys.argv \
            and "-h" not in sys.argv:  # init writes files only: no TensorFlow to start
        from pipeline._native import import_tensorflow_quietly

        import_tensorflow_quietly()


@cli.command()
@config_options
def train(config, out, overrides, epochs, alpha, data_path):
    """Train the float model into the run folder (model.keras, curves.png).

    \b
    Example:
      tinypipe train --config models/demo.yaml --out runs/demo --epochs 5
    """
    from pipeline.run import RunDir
    from pipeline.train import output_dir, weights_digest

    st, con = _stages(config, out, overrides, epochs, alpha, data_path)
    with output_dir(out, st.cfg.train.distribute) as here:  # only the chief keeps files
        st.run = RunDir(here)
        try:
            model, _ = st.train()
        finally:
            con.close()
    click.echo(f"trained model: {st.run.keras}" if here == Path(out) else
               "trained (worker: the chief writes the run folder)")
    click.echo(f"weights sha256: {weights_digest(model.get_weights())}")


@cli.command()
@config_options
def quantize(config, out, overrides, epochs, alpha, data_path):
    """Full-integer int8 quantization of the run's model (model.tflite), then lint it.

    \b
    Example:
      tinypipe quantize --out runs/demo
    """
    st, _ = _stages(config, out, overrides, epochs, alpha, data_path)
    art, q = st.quantize()
    click.echo(f"int8 model: {st.run.tflite} ({art.size:,} bytes, hash {art.hash}, {q.method})")


@cli.command()
@click.option("--config", type=click.Path(dir_okay=False), help="YAML config.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder to evaluate.")
@click.option("--model", "model_path", type=click.Path(exists=True),
              help="A .tflite, or a folder holding model.tflite (instead of --out).")
@click.option("--data", "data_path", type=click.Path(),
              help="Image folder or .npz; with --model every image is evaluated.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
@click.option("--limit", type=int, help="Evaluate at most N samples.")
def evaluate(config, out, model_path, data_path, overrides, limit):
    """Accuracy of float, int8 (TFLite) and int8 on TFLite Micro's kernels, plus agreement.

    \b
    Examples:
      tinypipe evaluate --out runs/demo
      tinypipe evaluate --model runs/demo/model.tflite --data images.npz
    """
    ov = list(overrides) + ([f"evaluate.limit={limit}"] if limit else [])
    if model_path is not None:
        from pipeline.evaluate import evaluate_file

        res = evaluate_file(model_path, data_path, config, ov, out)
        _print_eval(res)
        return
    if out is None:
        raise click.UsageError("give --out RUN_DIR or --model M.tflite --data DATA")
    st, _ = _stages(config, out, ov, data_path=data_path)
    _print_eval(st.evaluate().evaluation)


def _print_eval(d: dict) -> None:
    from pipeline.evaluate import summary_lines

    for line in summary_lines(d):
        click.echo(line)


@cli.command()
@click.option("--config", type=click.Path(dir_okay=False), help="YAML config.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False),
              help="Any .tflite (instead of --out).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write JSON here.")
@click.option("--board", "board_env", metavar="ENV",
              help="Check the arena and flash against this board's budgets (docs/boards.md).")
def profile(config, out, model_path, overrides, json_out, board_env):
    """Per-layer MACs, parameter and activation bytes; TFLM arena; flash.

    \b
    Examples:
      tinypipe profile --out runs/demo
      tinypipe profile --model person_detect.tflite --board nano33ble
    """
    import json

    from pipeline.profile import format_table, profile_tflite

    if model_path is not None:
        prof = profile_tflite(model_path)
    elif out is not None:
        st, _ = _stages(config, out, overrides)
        prof = st.profile()
    else:
        raise click.UsageError("give --out RUN_DIR or --model M.tflite")
    click.echo(format_table(prof))
    if board_env:
        from pipeline.boards import print_fit

        print_fit(prof, board_env, click.echo)
    if json_out:
        Path(json_out).write_text(json.dumps(prof.to_dict(), indent=1))


@cli.command()
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Run folder, or the output folder when --model is given.")
@click.option("--model", "model_path", type=click.Path(exists=True),
              help="Any int8 .tflite, or a run or model folder (instead of the run folder's "
                   "model).")
@click.option("--backend", type=click.Choice(["tflm", "aot", "both"]),
              help="tflm: C array + resolver + settings; aot: dependency-free C.")
@click.option("--format", "fmt", metavar="FORMAT",
              help="A deployable of the AOT engine: arduino (library .zip), platformio "
                   "(library.json), esp-idf (component), cmake (static library). Goes to --out "
                   "with --model, else to RUN/deploy/FORMAT; the folder must be new or empty.")
@click.option("--prefix", default=None, help="C symbol prefix for the AOT backend (default tp).")
@click.option("--stripe/--no-stripe", default=None,
              help="AOT arena: run ranges of ops row by row where that lowers it (default, "
                   "export.stripe), or plan op by op (fewer instructions, more RAM).")
@click.option("--config", type=click.Path(dir_okay=False), help="YAML config.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
def export(out, model_path, backend, fmt, prefix, stripe, config, overrides):
    """Generate C sources for TFLite Micro (tflm) or the ahead-of-time engine (aot), or a
    deployable library (--format).

    \b
    Examples:
      tinypipe export --out runs/demo --backend both
      tinypipe export --backend aot --model model.tflite --out build/model
      tinypipe export --format arduino --model runs/demo --out dist/arduino
      tinypipe export --format cmake --out runs/demo        # -> runs/demo/deploy/cmake
    """
    if fmt is not None:
        from pipeline.deploy import export_deployable

        if backend not in (None, "aot"):
            raise click.UsageError("--format packages the AOT engine; drop --backend")
        src = model_path or _run_folder(out)
        dest = Path(out) if model_path else Path(out) / "deploy" / fmt
        dep = export_deployable(src, fmt, dest, prefix=prefix or "tp",
                                stripe=stripe is not False)
        click.echo(f"{fmt}: {dep.path} ({dep.name}, model hash {dep.model_hash}, "
                   f"settings from {dep.settings.source})")
        return
    if model_path is not None:
        from pipeline.export import export_file

        for line in export_file(model_path, out, backend or "tflm", prefix or "tp",
                                stripe=stripe is not False):
            click.echo(line)
        return
    ov = list(overrides) + ([f"export.prefix={prefix}"] if prefix else []) + \
        ([f"export.stripe={str(stripe).lower()}"] if stripe is not None else [])
    st, _ = _stages(config, out, ov)
    res = st.export(backend=backend)
    for k, v in vars(res).items():
        if v is not None:
            click.echo(f"{k}: {v}")


def _run_folder(out: str) -> Path:
    """The run folder `out`, checked to hold a quantized model."""
    from pipeline.run import RunDir

    run_dir = RunDir(out)
    run_dir.require(run_dir.tflite, "quantize")
    return run_dir.root


@cli.command()
@config_options
def run(config, out, overrides, epochs, alpha, data_path):
    """Every stage into the run folder: train, quantize, evaluate, profile, export, report.

    \b
    Example:
      tinypipe run --config models/demo.yaml --out runs/demo
    """
    from pipeline.run import run_all

    st, con = _stages(config, out, overrides, epochs, alpha, data_path)
    try:
        report = run_all(st.cfg, out, con.log, con.epoch, con.samples)
    finally:
        con.close()
    print_summary(report)


@cli.command()
@config_options
@click.option("--budget-flash", default="128KB", show_default=True, help="Max .tflite bytes.")
@click.option("--budget-ram", default="64KB", show_default=True, help="Max arena bytes.")
@click.option("--budget-macs", default="12.5M", show_default=True, help="Max MACs.")
@click.option("--minutes", type=float, default=30.0, show_default=True,
              help="Time for training candidates.")
@click.option("--family", "families", multiple=True,
              type=click.Choice(["mobilenet_v1", "mobilenet_v2", "dense1_mobilenet",
                                 "dense2_mobilenet"]), help="Restrict families (repeatable).")
@click.option("--alphas", default="0.25,0.35,0.5,0.75,1.0", show_default=True)
@click.option("--resolutions", default="32,48,64,96", show_default=True)
@click.option("--heads", default="0,256", show_default=True, help="Head widths (0 = none).")
@click.option("--train-samples", type=int, help="Train candidates on a seeded subset of this "
              "many training images (default: all).")
@click.option("--start-epochs", type=int, default=2, show_default=True,
              help="Epochs of ASHA's first rung (doubled at each rung).")
@click.option("--max-epochs", type=int, help="Epochs of a trial never stopped (default: "
              "enough rungs to halve the trials to one, at most three halvings).")
@click.option("--address", metavar="ADDR", help="Join this Ray cluster (e.g. 10.0.0.5:6379 or "
              "ray://host:10001); default: a local Ray on this machine's CPUs.")
@click.option("--cpus-per-trial", type=float, default=1.0, show_default=True,
              help="CPUs Ray reserves for each trial.")
@click.option("--gpus-per-trial", type=float, default=0.0, show_default=True,
              help="GPUs Ray reserves for each trial (fractions share a GPU).")
def search(config, out, overrides, epochs, alpha, data_path, budget_flash, budget_ram,
           budget_macs, minutes, families, alphas, resolutions, heads, train_samples,
           start_epochs, max_epochs, address, cpus_per_trial, gpus_per_trial):
    """Budget-first model search: measure every candidate exactly, train those that fit as
    Ray Tune trials under the ASHA scheduler (needs the `distributed` extra).

    \b
    Examples:
      tinypipe search --data cifar10_train.npz --budget-flash 128KB --budget-ram 64KB \\
        --budget-macs 12.5M --minutes 60 --out runs/search
      tinypipe search --config models/cifar10.yaml --address 10.0.0.5:6379 \\
        --cpus-per-trial 4 --gpus-per-trial 0.5 --out runs/search
    """
    from pipeline.search import FAMILIES, enumerate_candidates, parse_size
    from pipeline.search import search as run_search

    st, con = _stages(config, out, overrides, epochs, alpha, data_path)
    budgets = {"flash": parse_size(budget_flash, "--budget-flash"),
               "ram": parse_size(budget_ram, "--budget-ram"),
               "macs": parse_size(budget_macs, "--budget-macs")}
    cands = enumerate_candidates(
        st.cfg.preprocess.channels, families or FAMILIES,
        [float(a) for a in alphas.split(",")], [int(r) for r in resolutions.split(",")],
        [int(h) or None for h in heads.split(",")])
    res = run_search(st.cfg, budgets, minutes, out, cands, start_epochs=start_epochs,
                     log=con.log, train_samples=train_samples, max_epochs=max_epochs,
                     address=address, cpus_per_trial=cpus_per_trial,
                     gpus_per_trial=gpus_per_trial)
    click.echo(f"candidates: {len(res.candidates)}, within budget: "
               f"{sum(c.fits for c in res.candidates)}")
    click.echo(f"best: {res.best.name if res.best else 'none'}"
               + (f" (val {res.best.accuracy:.2%})" if res.best else ""))
    click.echo(f"table: {Path(out) / 'search.md'}")


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, exists=True), required=True,
              help="A finished run folder.")
@click.option("--dest", type=click.Path(file_okay=False), required=True,
              help="Where the model, card.json and README.md go.")
def card(out, dest):
    """Publish a run as a model folder: model.tflite, card.json, README.md and plots.

    \b
    Example:
      tinypipe card --out runs/cifar10 --dest models/cifar10
    """
    from pipeline.card import publish

    c = publish(out, dest)
    a = c["accuracy"]
    click.echo(f"model card: {Path(dest) / 'README.md'} (TFLM accuracy {a['tflm']:.2%} on the "
               f"{a['split']} split)")


def print_summary(r: dict) -> None:
    a, m = r["accuracy"], r["model"]

    def pct(v):
        return f"{v:.2%}" if v is not None else "n/a"

    click.echo("")
    click.echo(f"accuracy float / int8 / TFLM : {pct(a['float'])} / {pct(a['int8'])} / "
               f"{pct(a['tflm'])}")
    click.echo(f"agreement int8 vs TFLM       : {pct(r['agreement']['int8_vs_tflm'])}")
    click.echo(f"model bytes (.tflite)        : {m['tflite_bytes']:,}")
    click.echo(f"TFLM arena bytes             : {m['arena_bytes']:,}")
    if m.get("aot_arena_bytes"):
        click.echo(f"AOT arena bytes              : {m['aot_arena_bytes']:,}")
    click.echo(f"MACs                         : {m['macs']:,}")
    d = r.get("device")
    if d:
        kind = d["counter"]
        click.echo(f"{'on-device accuracy (' + d['env'] + ')':<29}: {pct(d['accuracy'])} "
                   f"(host TFLM {pct(d['host_tflm_accuracy'])}), byte-identical outputs "
                   f"{pct(d['bit_exact_rate'])}")
        click.echo(f"{kind + ' per inference':<29}: {round(d[kind + '_per_inference']):,}")
    click.echo(f"run folder                   : {r['run_dir']}")


def _register_optional() -> None:
    """Commands that live in their own modules (device side, bench); each lists COMMANDS."""
    import importlib

    for mod in ("pipeline.cli_device", "pipeline.cli_bench", "pipeline.cli_project"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        for name in getattr(m, "COMMANDS", ()):
            cli.add_command(getattr(m, name))


_register_optional()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors, non-zero exit, no tracebacks."""
    try:
        cli.main(args=argv, prog_name="tinypipe", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except TinypipeError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # a bug: still one line unless asked for the traceback
        if os.environ.get("TINYPIPE_DEBUG"):
            raise
        click.echo(f"error: internal {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                   " (set TINYPIPE_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
