"""`tinypipe init`: a thin click wrapper over pipeline.project."""

from __future__ import annotations

import click

from pipeline.boards import BOARDS

COMMANDS = ("init",)


@click.command("init")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--board", "env", type=click.Choice(sorted(BOARDS)), required=True,
              help="PlatformIO env (board) of the project; run again to add another.")
def init(folder: str, env: str) -> None:
    """Create a firmware project: platformio.ini, tinypipe's app in lib/, your src/main, model/.

    \b
    Examples:
      tinypipe init myfw --board qemu-m4
      tinypipe export --backend aot --model model.tflite --out myfw/model
      tinypipe build --project myfw
    """
    from pipeline.project import init_project

    proj = init_project(folder, env)
    click.echo(f"tinypipe project {proj.root} (envs: {', '.join(proj.envs)})")
    click.echo(f"next: tinypipe build --project {proj.root} --model M.tflite")
