"""Swarms as a whole: `seed`, `status`, `result`, `ls`, `export`, `rm`."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import click
from rich.text import Text

from swarm import keys
from swarm.board import Board, BoardError, swarm_summaries
from swarm.cli.helpers import (
    checked_swarm_id,
    checked_swarm_ids,
    client_for,
    open_board,
    out,
    redis_option,
    swarm_option,
    user_errors,
    who,
)
from swarm.display import json_safe, safe_line, safe_text
from swarm.purpose import load_purpose
from swarm.trace import LIVE_STATES, delete_swarm, export_swarm, to_markdown


@click.command()
@click.argument("purpose", type=click.Path(dir_okay=False, path_type=str))
@redis_option
@click.option(
    "--id",
    "swarm_id",
    callback=checked_swarm_id,
    help="Choose the swarm id (default: from the purpose's name).",
)
@click.option(
    "--no-learning",
    is_flag=True,
    help="Claims ignore worker classes: no trails, no escalation (the purpose's "
    "pheromone: learning: 0).",
)
@user_errors
def seed(purpose: str, redis_url: str | None, swarm_id: str | None, no_learning: bool) -> None:
    """Put PURPOSE (a purpose.md file) on the blackboard; prints the swarm id."""
    parsed = load_purpose(purpose)  # validate before touching Redis: bad input changes nothing
    if no_learning:
        parsed = replace(parsed, tuning=replace(parsed.tuning, learning=0.0))
    board = Board.seed(client_for(redis_url), parsed, swarm_id=swarm_id)
    click.echo(board.id)


@click.command()
@redis_option
@swarm_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@user_errors
def status(redis_url: str | None, swarm_id: str | None, as_json: bool) -> None:
    """Counters of one swarm: state, tasks by state, tokens, live workers."""
    board = open_board(redis_url, swarm_id)
    st = board.status()
    if as_json:
        click.echo(json_safe(json.dumps(st, indent=2, ensure_ascii=False)))
        return
    states = "  ".join(f"{k} {v}" for k, v in st["by_state"].items() if v)
    # Everything here came from Redis: Text, never markup, and made safe to show.
    out.print(Text.assemble((safe_line(st["id"]), "bold"), "  ", safe_line(st["title"])))
    budgets = st["budgets"]
    tasks = f"tasks {st['tasks']}/{budgets['max_tasks']}"
    out.print(Text(safe_line(f"state {st['state']}  {tasks}  {states}")))
    out.print(Text(f"tokens {st['tokens']}/{budgets['max_tokens']}  workers {st['workers_alive']}"))
    if st["unmet"]:
        unmet = f"{st['unmet']} open task(s) no live worker meets the requirements of"
        out.print(Text(f"{unmet} (they die after {st['budgets']['unmet_s']:g} s)", style="red"))
    check = st["check"]
    if check["verdict"]:  # the root's answer was checked (the purpose has a check)
        said = f"check {check['verdict']} after {check['checks']} check(s): {check['output']}"
        out.print(Text(safe_line(said)))


@click.command()
@redis_option
@swarm_option
@click.option("--json", "as_json", is_flag=True)
@user_errors
def result(redis_url: str | None, swarm_id: str | None, as_json: bool) -> None:
    """The root's answer (exit status 2 while the swarm is still working)."""
    board = open_board(redis_url, swarm_id)
    st = board.status()
    answer = board.answer()
    if as_json:
        data = {
            "id": board.id,
            "state": st["state"],
            "outcome": st["outcome"],
            "answer": answer,
            "check": st["check"]["verdict"] or None,  # pass | fail | error; None: not checked
        }
        click.echo(json_safe(json.dumps(data, indent=2, ensure_ascii=False)))
    elif answer is not None:
        click.echo(safe_text(answer))
    else:
        click.echo(safe_line(f"swarm {board.id} is {st['state']}: no answer yet"), err=True)
    if answer is None:
        sys.exit(2)


@click.command("ls")
@redis_option
@user_errors
def ls_(redis_url: str | None) -> None:
    """List swarms, newest first."""
    for sid, m in swarm_summaries(client_for(redis_url), ("tasks", "title"), 1000):
        # one safe line per swarm: a tab or newline in a title cannot forge a row
        state, tasks, title = (safe_line(m[k] or "") for k in ("state", "tasks", "title"))
        click.echo(f"{sid}\t{state}\t{tasks} tasks\t{title}")


@click.command()
@click.option(
    "--format", "fmt", type=click.Choice(["json", "md"]), help="Default: from -o, else json."
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout."
)
@redis_option
@swarm_option
@user_errors
def export(
    fmt: str | None, output: Path | None, redis_url: str | None, swarm_id: str | None
) -> None:
    """Write a swarm's whole trace: purpose, task tree, every result, events, budgets spent."""
    board = open_board(redis_url, swarm_id)
    data = export_swarm(board.client, board.id)
    fmt = fmt or (
        "md" if output is not None and output.suffix.lower() in (".md", ".markdown") else "json"
    )
    text = (
        to_markdown(data)
        if fmt == "md"
        else json_safe(json.dumps(data, indent=2, ensure_ascii=False)) + "\n"
    )
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(
        f"wrote {output} ({data['task_count']} tasks, {len(data['events'])} events)", err=True
    )


@click.command()
@click.argument("swarm_ids", metavar="ID...", nargs=-1, required=True, callback=checked_swarm_ids)
@click.option(
    "--force", is_flag=True, help="Also remove a swarm that is still running (cancels it first)."
)
@redis_option
@user_errors
def rm(swarm_ids: tuple[str, ...], force: bool, redis_url: str | None) -> None:
    """Delete swarms and everything they left on Redis (see `swarm ls`)."""
    client = client_for(redis_url)
    for sid in swarm_ids:
        board = Board(client, sid)
        state = client.hget(board.keys.meta, "state")
        if state is None and client.zscore(keys.INDEX, sid) is None:
            raise BoardError(f"no swarm {sid!r} on this Redis")
        if state in LIVE_STATES:
            if not force:
                raise BoardError(
                    f"swarm {sid} is {state}: cancel it first (swarm cancel --all --swarm {sid})"
                    " or pass --force"
                )
            # Cancel first, so workers serving it see it closed and stop claiming.
            board.cancel(None, who(), reason="removed")
        n = delete_swarm(client, sid)
        click.echo(f"removed {sid} ({n} keys)")
