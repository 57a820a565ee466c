"""`swarm up`: seed a purpose, run workers on it, print the answer (swarm/up.py does it)."""

from __future__ import annotations

import click

from swarm.cli.helpers import user_errors
from swarm.display import safe_text
from swarm.up import UpError, UpOptions, run_up


@click.command()
@click.argument("purpose", type=click.Path(dir_okay=False, path_type=str))
@click.option("--workers", "-n", default=2, show_default=True, type=click.IntRange(1, 256))
@click.option("--mind", default=None, help="sim:..., onnx[:DIR] or openai:URL#MODEL.")
@click.option("--model", default=None, help="ORT GenAI model folder (default $SWARM_MODEL).")
@click.option(
    "--redis", "redis_url", metavar="URL", help="Use this Redis instead of an embedded Valkey."
)
@click.option("--slots", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--no-code", is_flag=True, help="Do not run model-written code.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@user_errors
def up(
    purpose: str,
    workers: int,
    mind: str | None,
    model: str | None,
    redis_url: str | None,
    slots: int,
    no_code: bool,
    quiet: bool,
) -> None:
    """Seed PURPOSE, run N workers on it, and print the final answer."""
    opts = UpOptions(purpose, workers, mind, model, redis_url, slots, not no_code, not quiet)
    try:
        answer = run_up(opts)
    except UpError as exc:
        raise click.ClickException(safe_text(exc)) from None  # may end with worker log tails
    click.echo(safe_text(answer))
