"""The dashboard's cost per tick: Redis commands (INFO commandstats on a server this script
owns) and read time, for swarms of 70, 600 and 6,000 tasks, side by side in one run.

    python scripts/bench_dashboard.py            # prints a table; --json for one object
    python scripts/bench_dashboard.py --out bench/results/bench_dashboard.json

The trees are grown through the board's own scripts (claim, then split in four), so their
shape is what workers make: waiting inner tasks, open leaves. A tick is one
`swarm.dashboard.view.Reader.read()`, what the server does once a second per watched swarm
whatever the number of pages.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from scripts._servers import start_server
from swarm.board import Board, ClaimStatus, SplitRefused
from swarm.dashboard.view import Reader
from swarm.protocol import Subtask
from swarm.purpose import Budgets, Purpose, RootTask, Tuning

SIZES = (70, 600, 6000)
TICKS = 20


def grow(client: Any, n: int, rng: random.Random) -> Board:
    """A swarm of exactly n tasks: claim an open task and split it in four (or, at the depth
    limit, answer it) until n exist."""
    purpose = Purpose(
        title=f"bench {n}",
        text=f"bench {n}\n\nGrow.",
        name=f"bench-{n}",
        budgets=Budgets(max_tasks=n, max_depth=12, max_children=4, max_tokens=10**12),
        tuning=Tuning(epsilon=0.0),
        tasks=tuple(RootTask(f"part {i}") for i in range(4)),
    )
    board = Board.seed(client, purpose, rng=rng)
    made = 5
    while made < n:
        out = board.claim("grower", lease_s=3600)
        assert out.status is ClaimStatus.OK and out.claim is not None, out
        k = min(4, n - made)
        subtasks = [Subtask(f"{out.claim.task.title}.{i}") for i in range(k)]
        try:
            board.split(out.claim, "grower", subtasks)
            made += k
        except SplitRefused:  # too deep: answer it, as a worker would
            board.complete(out.claim, "grower", "done")
    return board


def commands(client: Any) -> int:
    stats = client.info("commandstats")
    return sum(
        int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config")
    )


def measure(client: Any, board: Board) -> dict[str, Any]:
    reader = Reader(client, board.id)
    reader.read()  # the first tick also reads ten minutes of event history
    client.config_resetstat()
    data = reader.read()
    per_tick = commands(client)
    times = []
    for _ in range(TICKS):
        started = time.perf_counter()
        reader.read()
        times.append(time.perf_counter() - started)
    return {
        "tasks": int(client.hget(board.keys.meta, "tasks")),
        "drawn": len(data["tree"]),
        "commands_per_tick": per_tick,
        "tick_ms_median": round(statistics.median(times) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    server = start_server()
    try:
        client = redis.Redis(port=server.port, decode_responses=True)
        rng = random.Random(1)
        rows = [measure(client, grow(client, n, rng)) for n in SIZES]
    finally:
        server.stop()
    base = rows[1]
    result = {
        "command": "python scripts/bench_dashboard.py",
        "rows": rows,
        "commands_6000_over_600": rows[2]["commands_per_tick"] / base["commands_per_tick"],
        "tick_time_6000_over_600": rows[2]["tick_ms_median"] / base["tick_ms_median"],
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'tasks':>6} {'drawn':>6} {'commands/tick':>14} {'tick ms (median)':>17}")
    for r in rows:
        print(
            f"{r['tasks']:>6} {r['drawn']:>6} {r['commands_per_tick']:>14} "
            f"{r['tick_ms_median']:>17}"
        )
    print(
        f"6000 vs 600 tasks: commands x{result['commands_6000_over_600']:.2f}, "
        f"tick time x{result['tick_time_6000_over_600']:.2f}"
    )


if __name__ == "__main__":
    main()
