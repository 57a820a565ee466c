"""What the page shows of a swarm, read in a bounded number of Redis commands.

A tick is one `swarm.watch.snapshot` (the counters, the top of the open set, the workers, the
event tail and a row-budgeted breadth-first slice of the tree), so the dashboard and `swarm
watch` read the board the same way and neither grows with the number of tasks. This module
turns the snapshot into the JSON the page draws.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from swarm.board import NoSuchSwarm, swarm_summaries
from swarm.keys import SwarmKeys
from swarm.watch import BUCKET_S, Snapshot, TaskRow, WatchState, heat_fraction, plan, snapshot

log = logging.getLogger("swarm.dashboard")

TREE_ROWS = 100  # tasks drawn per tick; the rest are counted ("+N") but not read
RESULT_CHARS = 400  # of each drawn task's result (the root's answer is sent whole)
ANSWER_CHARS = 100_000
LIST_LIMIT = 50  # swarms on the list page
LIST_FIELDS = ("state", "title", "tasks", "max_tasks", "created", "outcome", "n_done")

# A swarm id names keys under a hash tag: no braces, nothing a URL or a log line would mangle.
SWARM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


def valid_swarm_id(text: str) -> bool:
    return bool(SWARM_ID.match(text))


def frame_height(rows: int) -> int:
    """The watch frame height whose tree gets at least `rows` rows (plan() shares lines out)."""
    height = rows
    while plan(height).tree < rows:
        height += 1
    return height


@dataclass
class Reader:
    """Reads one swarm tick after tick, carrying the event cursor and throughput between ticks
    (one per swarm in the server, however many browsers watch it)."""

    client: Any
    swarm_id: str
    rows: int = TREE_ROWS
    clock: Callable[[], float] = time.time
    state: WatchState = field(default_factory=WatchState)

    def read(self) -> dict[str, Any]:
        snap = snapshot(
            self.client, self.swarm_id, self.state, height=frame_height(self.rows), now=self.clock()
        )
        return payload(snap)


def _parents(snap: Snapshot) -> list[str]:
    """Each drawn row's parent id (rows come depth first, so a stack of levels gives it)."""
    stack: list[str] = []
    parents = []
    for row in snap.tree:
        del stack[row.level :]
        parents.append(stack[-1] if stack else "")
        stack.append(row.id)
    return parents


def payload(snap: Snapshot) -> dict[str, Any]:
    """The snapshot as the page wants it: tree rows with parents and heat on the log scale."""
    tree = []
    for row, parent in zip(snap.tree, _parents(snap), strict=True):
        item = dataclasses.asdict(row)
        item["parent"] = parent
        item["result"] = row.result[:RESULT_CHARS]
        item["heat_fraction"] = None if row.heat is None else heat_fraction(row.heat, snap.initial)
        tree.append(item)
    root = snap.tree[0] if snap.tree else None
    answer = root.result if root is not None and snap.state == "done" else None
    return {
        "swarm": snap.swarm,
        "title": snap.title,
        "state": snap.state,
        "outcome": snap.outcome,
        "reason": snap.reason,
        "now": snap.now,
        "elapsed_s": snap.elapsed_s,
        "budgets": [dataclasses.asdict(b) for b in snap.budgets],
        "counts": snap.counts,
        "tree": tree,
        "hot": [_hot(t, snap.initial) for t in snap.hot],
        "workers": [dataclasses.asdict(w) for w in snap.workers],
        "workers_alive": snap.workers_alive,
        "workers_total": snap.workers_total,
        "flow": [dataclasses.asdict(f) for f in snap.flow],
        "unmet": snap.unmet,
        "throughput": list(snap.throughput),
        "bucket_s": BUCKET_S,
        "events": [dataclasses.asdict(e) for e in snap.events],
        "answer": None if answer is None else answer[:ANSWER_CHARS],
        "check": snap.check,  # the verdict on the root's latest checked answer, '' for none
        "checks": snap.checks,
    }


def _hot(row: TaskRow, initial: float) -> dict[str, Any]:
    heat = row.heat or 0.0
    return {
        "id": row.id,
        "title": row.title,
        "heat": heat,
        "heat_fraction": heat_fraction(heat, initial),
    }


def encode(data: dict[str, Any]) -> bytes:
    """One line of JSON (an SSE data line may not hold a newline; json escapes those in text)."""
    return json.dumps(data, separators=(",", ":")).encode()


def read_encoded(reader: Reader) -> bytes:
    """A tick for the wire; a missing swarm or an unreachable Redis becomes a message."""
    import redis

    try:
        return encode(reader.read())
    except NoSuchSwarm as exc:
        return encode({"error": str(exc)})
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return encode({"error": f"Redis unavailable ({exc}); retrying"})
    except Exception as exc:  # a malformed board must not stop the feed for every page
        log.exception("reading swarm %s failed", reader.swarm_id)
        return encode({"error": f"cannot read swarm {reader.swarm_id}: {type(exc).__name__}"})


def swarm_list(client: Any, limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
    """The newest swarms with their headline counters, in one round trip after the index."""
    return [
        {"id": sid, **{k: m[k] or "" for k in LIST_FIELDS}}
        for sid, m in swarm_summaries(client, LIST_FIELDS, limit)
    ]


def exists(client: Any, swarm_id: str) -> bool:
    return bool(client.exists(SwarmKeys(swarm_id).meta))
