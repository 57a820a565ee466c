"""`swarm trails`: what each class of worker has made of each kind of task, and forgetting it."""

from __future__ import annotations

import json
import time

import click
from rich.table import Table
from rich.text import Text

from swarm.cli.helpers import client_for, open_board, out, redis_option, user_errors
from swarm.display import json_safe, safe_line
from swarm.keys import check_swarm_id
from swarm.trails import Trail, Trails


@click.command()
@redis_option
@click.option(
    "--swarm",
    "swarm_id",
    metavar="ID",
    help="Show this swarm's own trails (seeded plus its outcomes) instead of the long-lived ones.",
)
@click.option("--class", "worker_class", metavar="CLASS", help="Only this worker class.")
@click.option("--kind", metavar="KIND", help="Only this kind of task (a tag, @work, @synthesize).")
@click.option("--reset", is_flag=True, help="Forget the long-lived trails (those shown).")
@click.option("--json", "as_json", is_flag=True, help="Print the trails as JSON.")
@user_errors
def trails(
    redis_url: str | None,
    swarm_id: str | None,
    worker_class: str | None,
    kind: str | None,
    reset: bool,
    as_json: bool,
) -> None:
    """The trails worker classes leave on kinds of task: successes, failures, time, tokens.

    They outlive swarms on this Redis (decaying, with a half-life of a week) and steer claims
    in every swarm that learns (docs/architecture.md, section 6a)."""
    if reset and swarm_id:
        raise click.ClickException("--reset forgets the long-lived trails; drop --swarm")
    if swarm_id:
        found = open_board(redis_url, check_swarm_id(swarm_id)).own_trails()
    else:
        store = Trails(client_for(redis_url))
        if reset:
            n = store.reset(worker_class, kind)
            click.echo(f"forgot {n} trail{'' if n == 1 else 's'}")
            return
        found = store.read()
    now = int(time.time() * 1000)
    shown = [
        t.decayed(now)
        for t in found
        if (worker_class is None or t.worker_class == worker_class)
        and (kind is None or t.kind == kind)
    ]
    if as_json:
        click.echo(json_safe(json.dumps([t.as_dict() for t in shown], ensure_ascii=False)))
        return
    if not shown:
        out.print(Text("no trails yet: they grow as workers with a class post outcomes"))
        return
    out.print(_table(shown, now))


def _table(shown: list[Trail], now: int) -> Table:
    """Class and kind come from Redis: Text made safe, never markup."""
    table = Table(box=None, pad_edge=False)
    for name in ("class", "kind", "done", "failed", "success", "theta", "mean s", "tokens"):
        table.add_column(name, justify="left" if name in ("class", "kind") else "right")
    table.add_column("updated", justify="right")
    for t in shown:
        table.add_row(
            Text(safe_line(t.worker_class), style="cyan"),
            Text(safe_line(t.kind)),
            f"{t.successes:.1f}",
            f"{t.failures:.1f}",
            f"{t.success_rate:.0%}",
            f"{t.theta:.2f}",
            f"{t.mean_s:.1f}",
            f"{t.mean_tokens:.0f}",
            _ago(now - t.stamp),
        )
    return table


def _ago(ms: int) -> str:
    s = max(ms, 0) / 1000
    if s < 120:
        return f"{s:.0f}s ago"
    if s < 7200:
        return f"{s / 60:.0f}m ago"
    if s < 172800:
        return f"{s / 3600:.0f}h ago"
    return f"{s / 86400:.0f}d ago"
