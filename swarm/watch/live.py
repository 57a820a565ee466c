"""The loops of `swarm watch`: a live view redrawn in the alternate screen, or whole frames
printed every few seconds when there is no terminal. Each frame is read (snapshot.py) and
drawn (view.py) anew; the state carried between frames is a `WatchState`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from rich.console import Console, RenderableType
from rich.live import Live

from swarm.board import NoSuchSwarm, list_swarms
from swarm.outage import describe, is_outage
from swarm.watch.snapshot import WatchState, snapshot
from swarm.watch.view import message, render

# -- the command ------------------------------------------------------------------------------


def resolve_swarm(client: Any, swarm_id: str | None) -> str | None:
    """The named swarm, else the newest one on this Redis (None when there is none)."""
    if swarm_id is not None:
        return swarm_id
    ids = list_swarms(client, 1)
    return ids[0] if ids else None


def _frame(
    client: Any, swarm_id: str | None, state: WatchState, console: Console
) -> RenderableType:
    sid = resolve_swarm(client, swarm_id)
    if sid is None:
        return message("no swarm on this Redis yet: run `swarm seed PURPOSE` (waiting...)")
    try:
        snap = snapshot(client, sid, state, height=console.height)
    except NoSuchSwarm as exc:
        return message(f"{exc} (waiting...)")
    return render(snap, console.width, console.height)


def live(client: Any, swarm_id: str | None, refresh: float, console: Console) -> None:
    """Redraw until Ctrl-C; the alternate screen keeps the shell's scrollback untouched."""
    state = WatchState()
    period = 1.0 / refresh
    with Live(console=console, screen=True, auto_refresh=False, redirect_stderr=False) as view:
        while True:
            started = time.monotonic()
            try:
                view.update(_frame(client, swarm_id, state, console), refresh=True)
            except redis.RedisError as exc:  # away, loading, busy with a script...
                if not is_outage(exc):
                    raise
                view.update(message(f"{describe(exc)}; retrying", "red"), refresh=True)
            time.sleep(max(period - (time.monotonic() - started), 0.05))


def periodic(
    client: Any,
    swarm_id: str | None,
    every_s: float,
    console: Console,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Without a terminal (a pipe, a log, `docker compose run -T`) a live view shows nothing
    until it ends: print a whole frame every `every_s` seconds instead, until Ctrl-C."""
    state = WatchState()
    console.print(
        message(f"not a terminal: printing a frame every {every_s:g} s (--once for one frame)")
    )
    while True:
        try:
            console.print(_frame(client, swarm_id, state, console))
        except redis.RedisError as exc:  # as `live`: outages are waited out, the rest ends it
            if not is_outage(exc):
                raise
            console.print(message(f"{describe(exc)}; retrying", "red"))
        console.file.flush()
        sleep(every_s)
