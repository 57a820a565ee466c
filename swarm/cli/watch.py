"""`swarm watch`: the live view of swarm/watch.py in a terminal, or frames, or one JSON."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console

from swarm.cli.helpers import client_for, redis_option, swarm_option, user_errors
from swarm.watch import live, periodic, render, resolve_swarm, snapshot, to_json


@click.command()
@redis_option
@swarm_option
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print one snapshot as JSON and exit.")
@click.option(
    "--refresh",
    default=3.0,
    show_default=True,
    type=click.FloatRange(2, 4),
    help="Frames per second.",
)
@click.option(
    "--every",
    "every_s",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1, None),
    help="Without a terminal: seconds between the frames printed.",
)
@user_errors
def watch(
    redis_url: str | None,
    swarm_id: str | None,
    once: bool,
    as_json: bool,
    refresh: float,
    every_s: float,
) -> None:
    """Live view of a swarm: tasks, pheromone, workers, throughput, budgets, events."""
    try:
        client = client_for(redis_url)
        if once or as_json:
            _print_once(client, swarm_id, as_json)
            return
        console = Console()
        if console.is_terminal:
            live(client, swarm_id, refresh, console)
        else:
            periodic(client, swarm_id, every_s, Console(highlight=False))
    except KeyboardInterrupt:
        pass  # Live has restored the screen and the cursor on its way out


def _print_once(client: Any, swarm_id: str | None, as_json: bool) -> None:
    sid = resolve_swarm(client, swarm_id)
    if sid is None:
        raise click.ClickException("no swarm on this Redis yet: run `swarm seed PURPOSE`")
    console = Console(highlight=False)
    # One line short of the terminal, so the prompt after the frame does not scroll it away.
    snap = snapshot(client, sid, height=max(console.height - 1, 12))
    if as_json:
        click.echo(to_json(snap))
    else:
        console.print(render(snap, console.width))
