"""A person steering a running swarm: `pause`, `resume`, `boost`, `cancel`, `inject`."""

from __future__ import annotations

from typing import Any

import click

from swarm.board import InvalidRequest, check_boost
from swarm.cli.helpers import open_board, redis_option, swarm_option, user_errors, who
from swarm.display import safe_line
from swarm.pheromone import MAX_LEVEL
from swarm.requirements import MAX_STRENGTH, Requirements


@click.command()
@redis_option
@swarm_option
@user_errors
def pause(redis_url: str | None, swarm_id: str | None) -> None:
    """Workers finish what they hold and claim nothing new."""
    board = open_board(redis_url, swarm_id)
    if not board.pause(who()):
        raise click.ClickException(f"swarm {board.id} is {board.state().value}, not running")
    click.echo(f"paused {board.id}")


@click.command()
@redis_option
@swarm_option
@user_errors
def resume(redis_url: str | None, swarm_id: str | None) -> None:
    """Undo `swarm pause`."""
    board = open_board(redis_url, swarm_id)
    if not board.resume(who()):
        raise click.ClickException(f"swarm {board.id} is {board.state().value}, not paused")
    click.echo(f"resumed {board.id}")


def _checked_amount(_ctx: Any, _param: Any, value: float | None) -> float | None:
    try:
        return None if value is None else check_boost(value)
    except InvalidRequest as exc:
        raise click.ClickException(f"--amount: {exc}") from None


@click.command()
@click.argument("task_id")
@click.option(
    "--amount",
    type=float,
    callback=_checked_amount,
    help=f"Pheromone to deposit, at most {MAX_LEVEL:g} (default: 100 times all the top "
    "candidates hold, so it is next).",
)
@redis_option
@swarm_option
@user_errors
def boost(task_id: str, amount: float | None, redis_url: str | None, swarm_id: str | None) -> None:
    """Deposit pheromone on an open task so the swarm takes it sooner."""
    board = open_board(redis_url, swarm_id)
    if amount is None:
        amount = board.default_boost()
    if not board.boost(task_id, amount, who()):
        raise click.ClickException(f"task {task_id} is not open")
    click.echo(f"boosted {task_id} by {amount:.4g}")


@click.command()
@click.argument("task_id", required=False)
@click.option(
    "--all", "--swarm-too", "whole", is_flag=True, help="Cancel the whole swarm (see --swarm)."
)
@redis_option
@swarm_option
@user_errors
def cancel(task_id: str | None, whole: bool, redis_url: str | None, swarm_id: str | None) -> None:
    """Cancel TASK_ID and everything under it, or the whole swarm with --all.

    `--swarm ID` picks which swarm (default: the newest): `swarm cancel --all --swarm ID`.
    """
    if task_id and whole:
        raise click.UsageError("name a TASK_ID or pass --all, not both")
    if not task_id and not whole:
        raise click.UsageError("name a TASK_ID, or pass --all to cancel the whole swarm")
    board = open_board(redis_url, swarm_id)
    n = board.cancel(None if whole else task_id, who())
    click.echo(f"cancelled {n} task(s)" if not whole else f"cancelled swarm {board.id}")


@click.command()
@click.argument("text")
@click.option("--parent", default="0", show_default=True, help="A waiting task to add it under.")
@click.option(
    "--tags", default="", help="Comma-separated tags (workers with these skills prefer it)."
)
@click.option(
    "--detail", default="", help="More about the task, shown to the worker that takes it."
)
@click.option(
    "--min-strength",
    type=click.IntRange(0, MAX_STRENGTH),
    default=0,
    help="Only workers at least this strong take it (and what it splits into).",
)
@click.option(
    "--needs-code",
    is_flag=True,
    help="Only workers that can run code take it (and what it splits into).",
)
@redis_option
@swarm_option
@user_errors
def inject(
    text: str,
    parent: str,
    tags: str,
    detail: str,
    min_strength: int,
    needs_code: bool,
    redis_url: str | None,
    swarm_id: str | None,
) -> None:
    """Add a task to the running swarm, under the root or another waiting task.

    The parent must be waiting on its children (split, not yet synthesising); it then waits
    for the new task too, whose answer reaches the final one. The task budget applies; the
    max_children limit of a split does not (a person may add more).
    """
    board = open_board(redis_url, swarm_id)
    need = Requirements(min_strength=min_strength, needs_code=needs_code)
    tid = board.inject(
        text, who(), parent=parent, detail=detail, tags=tags.split(","), requires=need
    )
    click.echo(safe_line(f"injected task {tid} under {parent} in {board.id}"))
