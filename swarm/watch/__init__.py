"""`swarm watch`: a live terminal view of one swarm's tasks, pheromone, workers and budgets.

Three parts, each usable alone: `snapshot.py` reads one frame from the board as a
`Snapshot` (bounded by the screen, never by the number of tasks; the dashboard and `swarm up`
read the same), `view.py` draws a snapshot (`render`, a pure function), and `live.py` loops
(redrawn in a terminal, or whole frames printed without one). The command itself is
`swarm/cli/watch.py`.
"""

from swarm.watch.live import live, periodic, resolve_swarm
from swarm.watch.snapshot import (
    BUCKET_S,
    Budget,
    ClassFlow,
    EventRow,
    Plan,
    Snapshot,
    TaskRow,
    WatchState,
    WorkerRow,
    plan,
    snapshot,
    to_json,
)
from swarm.watch.view import heat_fraction, message, render

__all__ = [
    "BUCKET_S",
    "Budget",
    "ClassFlow",
    "EventRow",
    "Plan",
    "Snapshot",
    "TaskRow",
    "WatchState",
    "WorkerRow",
    "heat_fraction",
    "live",
    "message",
    "periodic",
    "plan",
    "render",
    "resolve_swarm",
    "snapshot",
    "to_json",
]
